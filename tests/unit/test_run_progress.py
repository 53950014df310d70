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
    run.log_path.write_text("Traceback (most recent call last):\nRuntimeError: boom\n")
    write_status(run.path, {"state": "failed", "step": 1, "max_steps": 10, "error": "RuntimeError: boom",
                            "hint": "See train.log"})
    out = io.StringIO()
    st = run_progress.follow_run(run, Console(file=out, width=200))
    text = out.getvalue()
    assert st.state == "failed"
    assert "step 1/10 loss 2.5000 lr 1.00e-04 900 tok/s" in text
    assert "RuntimeError: boom" in text and "hint: See train.log" in text and "last lines of" in text
