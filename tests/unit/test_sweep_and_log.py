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
    from tui_tuner.rundir.experiment_log import COLUMNS, RunRecord, to_rich_tables

    rows = [RunRecord({"run": f"sweep-r{r}", "r": r, "method": "lora", "model": "demo"}, [], []) for r in (8, 16)]
    [wide] = to_rich_tables(rows, width=400)
    assert len(wide.columns) == len(COLUMNS) and wide.row_count == 2
    [narrow] = to_rich_tables(rows, width=80)  # short names fit: no labels, no legend
    assert [c.header for c in narrow.columns] == ["", "sweep-r8", "sweep-r16"]
    assert narrow.row_count == len(COLUMNS) - 1


def fake_sweep(runs_dir, rs, sweep_id="20261202-113044", label=True):
    runs = []
    for i, r in enumerate(rs):
        run = make_fake_run(runs_dir, f"quickstart-r{r}", 10, r=r)
        record = {"sweep": sweep_id, "index": i, "of": len(rs), **({"label": f"r{r}"} if label else {})}
        (run.path / "sweep.json").write_text(json.dumps(record), encoding="utf-8")
        runs.append(run)
    return runs


def table_output(monkeypatch, capsys, columns, *args):
    monkeypatch.setenv("COLUMNS", str(columns))
    assert main(["runs", "table", *args]) == 0
    return capsys.readouterr().out


def header_cells(out):
    """The run column headers of each table in `runs table` output."""
    return [[c.strip() for c in line.strip("┃").split("┃")][1:] for line in out.splitlines() if line.startswith("┃")]


@pytest.mark.parametrize("columns, count", [(80, 3), (120, 5)])
def test_runs_table_labels_runs_when_full_names_would_break(tmp_path, monkeypatch, capsys, columns, count):
    runs_dir = tmp_path / "runs"
    runs = fake_sweep(runs_dir, [8, 16, 32, 64, 128][:count])
    out = table_output(monkeypatch, capsys, columns, "--runs-dir", str(runs_dir), "--sweep", "20261202-113044", "--plot")
    lines = out.splitlines()
    assert all(len(line) <= columns for line in lines), out
    labels = [f"r{r}" for r in [8, 16, 32, 64, 128][:count]]
    assert header_cells(out) == [labels]  # one header line, each label whole
    for label, run in zip(labels, runs):  # the legend maps each label to the whole name
        assert f"{label.ljust(max(map(len, labels)))}  {run.name}" in lines
    assert "training loss" in out and all(f"  {run.name}" in out for run in runs)  # the plot's legend


def test_runs_table_keeps_full_names_when_they_fit(tmp_path, monkeypatch, capsys):
    runs_dir = tmp_path / "runs"
    runs = fake_sweep(runs_dir, [8, 16, 32])
    out = table_output(monkeypatch, capsys, 120, "--runs-dir", str(runs_dir), "--sweep", "20261202-113044")
    assert header_cells(out) == [[run.name for run in runs]]
    assert all(len(line) <= 120 for line in out.splitlines())
    assert not any(line.startswith("r8 ") for line in out.splitlines())  # no legend needed


def test_runs_table_continues_in_further_tables_when_many_runs(tmp_path, monkeypatch, capsys):
    runs_dir = tmp_path / "runs"
    fake_sweep(runs_dir, [1, 2, 4, 8, 16, 32, 64])
    out = table_output(monkeypatch, capsys, 80, "--runs-dir", str(runs_dir))
    assert all(len(line) <= 80 for line in out.splitlines()), out
    headers = header_cells(out)
    assert len(headers) > 1 and sum(headers, []) == ["r1", "r2", "r4", "r8", "r16", "r32", "r64"]
    assert out.count("final train loss") == len(headers)


def test_short_labels_without_sweep_labels():
    from tui_tuner.rundir.experiment_log import RunRecord, short_labels

    def rows(*names):
        return [RunRecord({"run": n}, [], []) for n in names]

    assert short_labels(rows("qwen-lora-r8-20261202-113044", "qwen-lora-r16-20261202-113101")) == ["r8", "r16"]
    assert short_labels(rows("a-x-lr1e-4-20261202-113044", "a-y-lr1e-4-20261202-113044-2")) == ["x", "y"]
    assert short_labels(rows("same-20261202-113044", "same-20261202-113044-2")) == ["A", "B"]
    assert short_labels(rows("run-" + "x" * 30 + "-1", "run-" + "y" * 30 + "-1")) == ["A", "B"]


def test_side_table_wraps_long_cells_between_words_to_keep_runs_together():
    from rich.console import Console

    from tui_tuner.rundir.experiment_log import RunRecord, to_rich_tables

    scores = {"exact_match": 0.5, "token_f1": 0.41, "rouge_l": 0.38, "perplexity": 3.49}
    rows = [RunRecord({"run": f"quickstart-r{r}-20261202-113044", "r": r, "model": "demo-tiny-llama",
                       "eval_scores": scores}, [], []) for r in (8, 16, 32)]
    parts = to_rich_tables(rows, width=80)
    assert len(parts) == 2 and [c.header for c in parts[0].columns] == ["", "r8", "r16", "r32"]  # + legend
    console = Console(width=80, file=io.StringIO())
    for part in parts:
        console.print(part)
    out = console.file.getvalue()
    assert all(len(line) <= 80 for line in out.splitlines())
    assert out.count("perplexity=3.49") == 3 and out.count("exact_match=0.5") == 3  # words whole


def test_sweep_watch_commands_name_the_runs_dir_only_when_not_the_default(tmp_path, monkeypatch):
    from tui_tuner.commands.sweep_cmd import watch_commands

    monkeypatch.chdir(tmp_path)
    default = watch_commands(tmp_path / "runs", "exp-r8-1", "20260101-000000")
    assert default == ["tui-tuner runs ls", "tui-tuner runs attach exp-r8-1",
                       "tui-tuner runs table --sweep 20260101-000000 --plot"]
    elsewhere = watch_commands(tmp_path / "other", "exp-r8-1", "20260101-000000")
    assert all(c.endswith(f" --runs-dir {tmp_path / 'other'}") for c in elsewhere)
