"""Following a run in the terminal: progress from the run directory, Ctrl+C once = graceful, twice = now."""

from __future__ import annotations

import io
import os
import subprocess

from rich.console import Console

from tui_tuner.commands import run_progress
from tui_tuner.config.schema import RunConfig
from tui_tuner.rundir.events import EventWriter
from tui_tuner.rundir.runs import create_run, process_start_time
from tui_tuner.rundir.status import write_status


def _run(tmp_path):
    cfg = RunConfig()
    cfg.output.runs_dir = str(tmp_path / "runs")
    return create_run(cfg, tmp_path, "follow")


def test_ctrl_c_asks_for_a_graceful_stop_then_terminates(tmp_path, monkeypatch):
    run = _run(tmp_path)
    worker = subprocess.Popen(["sleep", "60"])  # stands in for the worker process
    # this test process plays the supervisor, which records the end after the worker is gone
    write_status(run.path, {"state": "running", "pid": worker.pid, "pid_started": process_start_time(worker.pid),
                            "supervisor_pid": os.getpid(), "step": 3, "max_steps": 10})
    calls = []

    def fake_sleep(_):
        calls.append(1)
        if len(calls) <= 2:
            raise KeyboardInterrupt
        write_status(run.path, {"state": "stopped", "step": 3, "max_steps": 10, "message": "stopped immediately"})

    monkeypatch.setattr(run_progress.time, "sleep", fake_sleep)
    out = io.StringIO()
    st = run_progress.follow_run(run, Console(file=out, width=200))
    text = out.getvalue()
    assert st.state == "stopped"
    assert "stop requested" in text and "Ctrl+C again" in text
    assert "warning" in text and "terminated" in text
    assert run.read_control()["request"] == "stop_now"
    assert worker.wait(timeout=10) == -15


def test_plain_output_prints_each_logged_step_and_the_failure(tmp_path, monkeypatch):
    run = _run(tmp_path)
    with EventWriter(run.events_path) as w:
        w.write("log", step=1, loss=2.5, lr=1e-4, tokens_per_s=900.0, eta_s=30)
        w.write("eval", step=1, eval_loss=2.75)
    run.log_path.write_text("Traceback (most recent call last):\nRuntimeError: boom\n")
    write_status(run.path, {"state": "failed", "step": 1, "max_steps": 10, "error": "RuntimeError: boom",
                            "hint": "See train.log"})
    out = io.StringIO()
    st = run_progress.follow_run(run, Console(file=out, width=200))
    text = out.getvalue()
    assert st.state == "failed"
    assert "step 1/10 loss 2.5000 lr 1.00e-04 900 tok/s" in text
    assert text.count("eval at step 1: loss 2.7500") == 1
    assert "RuntimeError: boom" in text and "hint: See train.log" in text and "last lines of" in text


def test_preflight_progress_piped_prints_a_line_per_step_not_per_row():
    out = io.StringIO()
    with run_progress.PreflightProgress(out) as progress:
        progress("loading the tokenizer")
        for done in range(0, 5000, 100):
            progress("tokenizing", done, 5000)
    lines = out.getvalue().splitlines()
    assert lines[0] == "loading the tokenizer" and lines[1].startswith("tokenizing")
    assert len(lines) == 2  # piped output (CI logs) is not flooded with progress


def test_runs_ls_table_aligns_colours_states_and_fits_the_width():
    from tui_tuner.commands.runs_cmd import LS_COLUMNS, aligned_table

    cells = [["a-run", "finished", "org/" + "m" * 40, "sft", "lora", "16", "10/10", "1.2000", "1:00"],
             ["b", "failed", "x", "dpo", "full", "-", "1/?", "-", "0:01"]]
    text = aligned_table(cells, ["green", "red"], 75)
    lines = text.plain.splitlines()
    assert len(lines) == 3 and all(len(line) <= 75 for line in lines)
    assert lines[0].split() == list(LS_COLUMNS)
    assert "…" in lines[1] and lines[2].startswith("b ")
    assert lines[1].index("10/10") + len("10/10") == lines[2].index("1/?") + len("1/?")  # right-aligned
    styled = {text.plain[span.start:span.end]: span.style for span in text.spans}
    assert styled["finished"] == "green" and styled["failed  "] == "red"
