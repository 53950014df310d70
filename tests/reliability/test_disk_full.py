"""A really full disk: a small tmpfs as the runs folder, filled while a real worker trains.

The run must end `failed` with "the disk is full" and where, keep its complete checkpoints,
leave no `launch.lock`, and neither the CLI nor train.log may show an `OSError` traceback;
`train` and `runs resume` on the full disk refuse up front with the free space found and
the space needed, and `train` leaves no run folder behind. Needs `mount -t tmpfs` (root);
skipped with the reason elsewhere.

    PYTHONPATH=$PWD python -m pytest -q tests/reliability/test_disk_full.py
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tui_tuner.rundir.runs import LAUNCH_LOCK, RunDir, checkpoint_problem, list_runs, process_alive

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 300


def config(runs_dir: Path, max_steps: int = 400) -> str:
    return f"""\
model:
  name_or_path: tui-tuner/demo-tiny-llama
  max_seq_length: 64
method: lora
lora:
  r: 4
  alpha: 8
data:
  train: data/sample.jsonl
training:
  max_steps: {max_steps}
  batch_size: 1
  grad_accumulation: 1
  save_steps: 1
  save_total_limit: 2
  logging_steps: 1
  warmup_ratio: 0.0
  gradient_checkpointing: false
output:
  runs_dir: {runs_dir}
"""


@pytest.fixture
def small_disk(tmp_path):
    """A 40 MB tmpfs, unmounted afterwards (the test skips where mounting is not permitted)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({(proc.stderr or proc.stdout).strip() or 'not permitted'}); "
                    "the full-disk test needs root or CAP_SYS_ADMIN")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(disk: Path, name: str = "filler.bin") -> Path:
    """Write a file until the disk refuses another byte."""
    filler = disk / name
    chunk = b"\1" * (1 << 20)
    with open(filler, "wb", buffering=0) as fh:
        for size in (1 << 20, 1 << 14, 1 << 10, 1):
            while True:
                try:
                    fh.write(chunk[:size])
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    return filler


def cli(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "NO_COLOR": "1", "COLUMNS": "300"}
    proc = subprocess.run([sys.executable, "-m", "tui_tuner", *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out and "Errno 28" not in out, out
    return proc


def wait_for(predicate, what: str):
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_full_disk_fails_the_run_clearly_and_train_and_resume_refuse_up_front(small_disk, tmp_path):
    from tui_tuner.models.demo import ensure_demo_model

    ensure_demo_model()
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "configs").mkdir()
    shutil.copy(REPO / "data" / "sample.jsonl", project / "data" / "sample.jsonl")
    runs_dir = small_disk / "runs"
    (project / "configs" / "run.yaml").write_text(config(runs_dir))

    started = cli(project, "train", "configs/run.yaml", "--detach", "--name", "full")
    assert started.returncode == 0, started.stdout + started.stderr
    [run] = list_runs(runs_dir)
    wait_for(lambda: any(checkpoint_problem(p) is None for p in run.all_checkpoints()), "a complete checkpoint")
    filler = fill(small_disk)

    def ended():
        st = run.status()
        return st if st.is_final and not process_alive(st.supervisor_pid) else None

    st = wait_for(ended, "the run to end")
    assert st.state == "failed", st
    assert "the disk is full" in st.error and str(runs_dir) in st.error, st.error
    assert "runs resume" in st.hint, st.hint
    assert not (run.path / LAUNCH_LOCK).exists(), "the launch lock was left behind"
    log = run.log_path.read_text(errors="replace")
    assert "Traceback" not in log and "Errno 28" not in log.replace("[Errno 28] No space left", ""), log[-3000:]
    assert re.search(r"worker \d+: failed: the disk is full", log), log[-2000:]
    kept = run.latest_checkpoint()
    assert kept is not None and checkpoint_problem(kept) is None
    shared = [str(p.relative_to(run.path)) for p in run.path.rglob("*") if p.stat().st_mode & 0o077]
    assert shared == [], f"run files readable by other users: {shared[:5]}"

    # On the still-full disk: resume and a new run are refused before anything is written.
    refused = cli(project, "runs", "resume", run.name, "--runs-dir", str(runs_dir))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert re.search(r"not enough disk space in .*: [\d.]+ \w*B free, .* needs about [\d.]+ \w*B", refused.stderr), \
        refused.stderr
    assert RunDir(run.path).raw_status().state == "failed"
    refused = cli(project, "train", "configs/run.yaml", "--name", "again")
    assert refused.returncode == 2 and "not enough disk space" in refused.stderr, refused.stdout + refused.stderr
    assert [r.name for r in list_runs(runs_dir)] == [run.name], "train left a run folder behind"
    assert sorted(p.name for p in runs_dir.iterdir()) == [run.name]
    # Past the up-front check (another process filled the disk in between): a clear error, no half folder.
    from tui_tuner.config.schema import load_config
    from tui_tuner.rundir.runs import RunError, create_run

    fill(small_disk, "filler-2.bin")  # what the failed run gave back (its reserve) is taken too
    with pytest.raises(RunError, match="the disk is full: no space left to write in"):
        create_run(load_config(project / "configs" / "run.yaml").config, project, name="raced")
    assert sorted(p.name for p in runs_dir.iterdir()) == [run.name], "create_run left a folder behind"

    # With space freed, the run resumes from its complete checkpoint.
    filler.unlink()
    (small_disk / "filler-2.bin").unlink()
    resumed = cli(project, "runs", "resume", run.name, "--detach", "--runs-dir", str(runs_dir))
    assert resumed.returncode == 0 and kept.name in resumed.stdout, resumed.stdout + resumed.stderr
    st = wait_for(lambda: (s := run.raw_status()).state == "running" and s.step > int(kept.name.split("-")[1]) and s,
                  "the resumed run to train")
    cli(project, "runs", "stop", run.name, "--now", "--runs-dir", str(runs_dir))
    wait_for(ended, "the resumed run to stop")
