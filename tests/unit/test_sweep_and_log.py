"""Sweep planning (values, cross products, validation) and the experiment log over run directories."""

import csv
import io
import json

import pytest

from tests.tui.conftest import make_fake_run
from tui_tuner.cli import main
from tui_tuner.rundir.experiment_log import records, to_csv, to_markdown
from tui_tuner.rundir.sweep import SweepError, parse_sweep_sets, plan_sweep, split_values


@pytest.fixture
def config(tmp_path):
    (tmp_path / "data.jsonl").write_text('{"instruction": "hi", "output": "hello"}\n', encoding="utf-8")
    path = tmp_path / "cfg.yaml"
    path.write_text("data:\n  train: data.jsonl\ntraining:\n  max_steps: 2\noutput:\n  run_name: exp\n",
                    encoding="utf-8")
    return path


def test_values_split_outside_brackets():
    assert split_values("8,16,32") == ["8", "16", "32"]
    assert split_values("[q_proj,v_proj],all-linear") == ["[q_proj,v_proj]", "all-linear"]


def test_single_values_are_fixed_and_several_are_swept():
    fixed, swept = parse_sweep_sets(["lora.r=8,16", "training.max_steps=5"])
    assert fixed == ["training.max_steps=5"] and swept == {"lora.r": ["8", "16"]}


def test_two_keys_give_the_cross_product(config):
    plan = plan_sweep(config, ["lora.r=8,16", "lora.alpha=16,32"])
    assert plan.ok and len(plan.points) == 4
    assert [p.label for p in plan.points] == ["r8-alpha16", "r8-alpha32", "r16-alpha16", "r16-alpha32"]
    assert [(c.config.lora.r, c.config.lora.alpha) for c in plan.loaded] == [(8, 16), (8, 32), (16, 16), (16, 32)]


def test_a_bad_value_is_reported_before_anything_is_created(config):
    plan = plan_sweep(config, ["lora.r=8,0"])
    assert not plan.ok
    assert any(i.key == "lora.r" for i in plan.issues)


@pytest.mark.parametrize("sets,match", [
    (["lora.r=8"], "nothing to sweep"),
    (["lora.r=8,,16"], "empty value"),
    (["lora.r=8,8"], "repeated"),
    (["lora.r"], "KEY=VALUE"),
])
def test_malformed_sweeps_are_refused(config, sets, match):
    with pytest.raises(SweepError, match=match):
        plan_sweep(config, sets)


def test_sweep_cli_dry_run_and_bad_input(config, capsys):
    assert main(["sweep", str(config), "--set", "lora.r=8,16", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "exp-r8" in out and "exp-r16" in out
    assert main(["sweep", str(config), "--set", "lora.r=8,0"]) == 2
    assert "lora.r" in capsys.readouterr().err
    assert main(["sweep", str(config), "--set", "lora.r=8"]) == 2
    assert "nothing to sweep" in capsys.readouterr().err
    assert not (config.parent / "runs").exists()


def test_experiment_log_rows_markdown_and_csv(tmp_path, capsys):
    runs_dir = tmp_path / "runs"
    a = make_fake_run(runs_dir, "rank16", 10, r=16)
    b = make_fake_run(runs_dir, "rank32", 12, r=32, state="failed", error="boom")
    (a.path / "adapter").mkdir()
    (a.path / "adapter" / "adapter_model.safetensors").write_bytes(b"x" * 2048)
    (a.path / "eval").mkdir()
    report = {"source": "run", "models": {"tuned": {"loss": 1.25, "perplexity": 3.49, "exact_match": 0.5,
                                                    "token_f1": None, "answered": 4}}}
    (a.path / "eval" / "eval-20260101-000000.json").write_text(json.dumps(report))
    (a.path / "eval" / "eval-20260101-000001-checkpoint-5.json").write_text(json.dumps({"models": {"tuned": {"loss": 9}}}))
    rows = records([a, b])
    assert [r["r"] for r in rows] == [16, 32]
    assert rows[0]["adapter_bytes"] == 2048 and rows[0]["eval_loss"] == 1.25
    assert rows[0]["eval_scores"] == {"exact_match": 0.5, "perplexity": 3.49}   # the final adapter's report
    assert rows[0]["train_loss"] == 2.0 and rows[1]["state"] == "failed"
    md = to_markdown(rows)
    assert md.splitlines()[0].startswith("| run | model | objective | method | r | alpha | lr |")
    assert rows[0]["objective"] == "sft" and rows[0]["objective_metric"] is None
    assert "exact_match=0.5" in md and "2.00 KiB" in md and "1.2500" in md
    parsed = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert [p["r"] for p in parsed] == ["16", "32"] and parsed[0]["adapter_bytes"] == "2048"
    assert main(["runs", "table", "--runs-dir", str(runs_dir), "--csv", "rank32"]) == 0
    assert capsys.readouterr().out.count("\n") == 2
    assert main(["runs", "table", "--runs-dir", str(runs_dir), "--plot"]) == 0
    out = capsys.readouterr().out
    assert "rank16" in out and "training loss" in out
    assert main(["runs", "table", "--runs-dir", str(runs_dir), "nosuchrun"]) == 2


def test_rich_table_turns_on_its_side_when_too_wide():
    from tui_tuner.rundir.experiment_log import COLUMNS, RunRecord, to_rich_table

    rows = [RunRecord({"run": f"sweep-r{r}", "r": r, "method": "lora", "model": "demo"}, [], []) for r in (8, 16)]
    wide = to_rich_table(rows, width=400)
    assert len(wide.columns) == len(COLUMNS) and wide.row_count == 2
    narrow = to_rich_table(rows, width=80)
    assert [c.header for c in narrow.columns] == ["", "sweep-r8", "sweep-r16"]
    assert narrow.row_count == len(COLUMNS) - 1


def test_sweep_watch_commands_name_the_runs_dir_only_when_not_the_default(tmp_path, monkeypatch):
    from tui_tuner.commands.sweep_cmd import watch_commands

    monkeypatch.chdir(tmp_path)
    default = watch_commands(tmp_path / "runs", "exp-r8-1", "20260101-000000")
    assert default == ["tui-tuner runs ls", "tui-tuner runs attach exp-r8-1",
                       "tui-tuner runs table --sweep 20260101-000000 --plot"]
    elsewhere = watch_commands(tmp_path / "other", "exp-r8-1", "20260101-000000")
    assert all(c.endswith(f" --runs-dir {tmp_path / 'other'}") for c in elsewhere)
