"""Resume passes over a checkpoint that looks complete but cannot be loaded, and says so.

A copy of the shared `finished_run` (checkpoints 10 and 20) gets a garbled `rng_state.pth` in
checkpoint-20 - the file is whole, its bytes are not - and is marked stopped. `runs resume`
must name the skipped checkpoint and why, the worker must continue from checkpoint-10 (and
say so in train.log and the `resume` event), and the run must finish.

    PYTHONPATH=$PWD python -m pytest -q tests/reliability/test_resume_fallback.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tui_tuner.rundir.events import load_history
from tui_tuner.rundir.runs import RunDir, checkpoint_problem, process_alive
from tui_tuner.rundir.status import RunStatus, write_status

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def test_resume_falls_back_past_a_checkpoint_it_cannot_load(finished_run, tmp_path):
    deadline = time.monotonic() + 120
    while process_alive(finished_run.raw_status().supervisor_pid) and time.monotonic() < deadline:
        time.sleep(0.1)  # its supervisor releases the launch lock as it exits
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    run = RunDir(shutil.copytree(finished_run.path, runs_dir / finished_run.name))
    assert not (run.path / "launch.lock").exists() and not (run.path / ".disk-reserve").exists()
    newest = run.checkpoints_dir / "checkpoint-20"
    rng = newest / "rng_state.pth"
    raw = bytearray(rng.read_bytes())
    middle = len(raw) // 2
    raw[middle:middle + 16] = bytes(b ^ 0xFF for b in raw[middle:middle + 16])
    rng.write_bytes(bytes(raw))
    assert "rng_state.pth is damaged" in checkpoint_problem(newest)
    write_status(run.path, RunStatus.from_dict({**run.raw_status().as_dict(), "state": "stopped", "ended": None}))
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}
    proc = subprocess.run([sys.executable, "-m", "tui_tuner", "runs", "resume", run.name, "--detach",
                           "--runs-dir", str(runs_dir)], capture_output=True, text=True, env=env, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Traceback" not in out, out
    assert "from checkpoint-10" in out and "skipped checkpoint-20: rng_state.pth is damaged" in out, out
    st = wait_for(run, ("finished",))
    assert st.step == 20 and st.resumed_from_step == 10
    log = run.log_path.read_text(errors="replace")
    assert "resuming from checkpoint-10" in log and "skipped checkpoint-20" in log
    resume = load_history(run.events_path).resumes[-1]
    assert resume["from_step"] == 10 and resume["skipped_incomplete"] == ["checkpoint-20"]
    assert "rng_state.pth" in resume["skipped_why"]["checkpoint-20"]
    assert checkpoint_problem(newest) is None  # saved again, whole, by the resumed run
