"""`tui-tuner runs ls`: newest first like the TUI, model and objective columns, nothing cut when piped."""

from __future__ import annotations

from tui_tuner.cli import main
from tui_tuner.config.schema import RunConfig
from tui_tuner.rundir.runs import create_run


def make_run(runs_dir, name, model):
    cfg = RunConfig()
    cfg.model.name_or_path = model
    cfg.output.runs_dir = str(runs_dir)
    return create_run(cfg, runs_dir, name=name)


def test_runs_ls_piped_is_plain_newest_first_with_model_and_objective(tmp_path, capsys):
    runs = tmp_path / "runs"
    old = make_run(runs, "older", "tui-tuner/demo-tiny-llama")
    newer = make_run(runs, "newer-with-a-long-name-that-a-table-would-cut", "Qwen/Qwen2.5-0.5B-Instruct")
    assert main(["runs", "ls", "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["name", "state", "model", "objective", "method", "r", "step", "loss", "duration"]
    assert lines[1].startswith(newer.name) and lines[2].startswith(old.name)  # newest first, names whole
    assert "Qwen/Qwen2.5-0.5B-Instruct" in lines[1] and " sft " in lines[1]
    assert "\x1b[" not in out and "…" not in out  # no colour codes, nothing cut
    cols = [line.split() for line in lines[1:]]
    assert all(len(c) == 9 for c in cols)


def terminal_ls(monkeypatch, capsys, runs, columns):
    import re

    monkeypatch.setenv("FORCE_COLOR", "1")  # rich then renders as for a terminal
    monkeypatch.setenv("COLUMNS", str(columns))
    assert main(["runs", "ls", "--runs-dir", str(runs)]) == 0
    return re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out).splitlines()


def test_runs_ls_in_a_narrow_terminal_hides_columns_before_cutting_names(tmp_path, capsys, monkeypatch):
    runs = tmp_path / "runs"
    made = [make_run(runs, f"quickstart-r{r}", "tui-tuner/demo-tiny-llama") for r in (8, 16, 32)]
    lines = terminal_ls(monkeypatch, capsys, runs, 80)
    assert all(len(line) <= 80 for line in lines)
    assert lines[0].split()[:3] == ["name", "state", "model"] and "objective" not in lines[0]
    assert [line.split()[0] for line in lines[1:4]] == [run.name for run in reversed(made)]  # names whole
    assert lines[4] == "hidden at 80 columns: objective, method (runs ls | cat shows all)"
    lines = terminal_ls(monkeypatch, capsys, runs, 120)  # wide enough: everything, nothing cut or hidden
    assert lines[0].split() == ["name", "state", "model", "objective", "method", "r", "step", "loss", "duration"]
    assert "tui-tuner/demo-tiny-llama" in lines[1] and len(lines) == 4 and "…" not in "".join(lines)
