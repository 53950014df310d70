"""Run directories without training: names, lookup, liveness, checkpoints, stop/resume/rm rules, the queue."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tui_tuner.config.schema import RunConfig
from tui_tuner.rundir.runs import (
    RunDir, RunError, RunLookupError, checkpoint_problem, create_run, delete_run, find_run, list_runs,
    process_start_time, queue_ready, run_summary,
)
from tui_tuner.train.resume import resume_run
from tui_tuner.rundir.status import read_status, write_status
from tui_tuner.train.supervisor import record_exit


@pytest.fixture
def cfg(tmp_path):
    c = RunConfig()
    c.output.runs_dir = str(tmp_path / "runs")
    return c


def test_create_run_layout_and_distinct_names_in_one_second(cfg, tmp_path):
    a = create_run(cfg, tmp_path, "exp")
    b = create_run(cfg, tmp_path, "exp")
    assert a.path != b.path and a.path.parent == b.path.parent == (tmp_path / "runs").resolve()
    assert a.name.startswith("exp-") and a.status().state == "queued"
    frozen = a.config()
    assert os.path.isabs(frozen.data.train)  # the run does not depend on the cwd it started in
    assert a.meta()["probe"] == "auto"
    assert [r.name for r in list_runs(tmp_path / "runs")] == [a.name, b.name]


def test_listing_reads_the_summary_cached_in_status_and_falls_back_to_the_config(cfg, tmp_path):
    cfg.method, cfg.lora.r = "qlora", 32
    run = create_run(cfg, tmp_path, "sum")
    cached = read_status(run.path).summary
    assert cached == {"model": cfg.model.name_or_path, "method": "qlora", "r": 32, "objective": "sft"}
    run.config_path.write_text("method: [unreadable", encoding="utf-8")
    assert run_summary(run) == cached  # the listing does not read config.yaml when status has the summary
    st = read_status(run.path)
    st.summary = None  # a run written before the summary existed
    write_status(run.path, st)
    assert run_summary(run) == {"model": "?", "method": "?", "r": None, "objective": "sft"}  # unreadable config: unknown, no raise
    run.config_path.write_text("model: {name_or_path: m}\nmethod: full\nlora: {r: 8}\n", encoding="utf-8")
    assert run_summary(run) == {"model": "m", "method": "full", "r": None, "objective": "sft"}


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", ".hidden", "x" * 100])
def test_names_cannot_escape_the_runs_dir(cfg, tmp_path, name):
    with pytest.raises(RunError):
        create_run(cfg, tmp_path, name)
    assert not (tmp_path / "evil").exists()


def test_find_run_by_name_prefix_and_errors(cfg, tmp_path):
    runs = tmp_path / "runs"
    a = create_run(cfg, tmp_path, "alpha")
    create_run(cfg, tmp_path, "alps")
    assert find_run(runs, "alpha") == a
    assert find_run(runs, a.name) == a
    assert find_run(runs, str(a.path)) == a
    with pytest.raises(RunLookupError, match="matches 2 runs"):
        find_run(runs, "al")
    with pytest.raises(RunLookupError, match="no run"):
        find_run(runs, "zeta")
    with pytest.raises(RunLookupError, match="no runs in"):
        find_run(tmp_path / "empty", "x")


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_dead_worker_is_reported_crashed(cfg, tmp_path):
    run = create_run(cfg, tmp_path, "r")
    pid = _dead_pid()
    write_status(run.path, {"state": "running", "pid": pid, "pid_started": time.time() - 5, "step": 3})
    st = run.status()
    assert st.state == "crashed" and "without writing a final state" in st.error
    assert "runs resume" in st.hint
    assert run.raw_status().state == "running"  # reading never writes


def test_reused_pid_is_not_mistaken_for_the_worker(cfg, tmp_path):
    run = create_run(cfg, tmp_path, "r")
    write_status(run.path, {"state": "running", "pid": os.getpid(), "pid_started": 1.0})
    assert run.status().state == "crashed"
    write_status(run.path, {"state": "running", "pid": os.getpid(), "pid_started": process_start_time(os.getpid())})
    assert run.status().state == "running"


def test_live_supervisor_keeps_the_state_until_it_records_the_end(cfg, tmp_path):
    run = create_run(cfg, tmp_path, "r")
    write_status(run.path, {"state": "stopping", "pid": _dead_pid(), "supervisor_pid": os.getpid()})
    assert run.status().state == "stopping"


def _fake_checkpoint(path, *, state=True, optimizer=True, truncate_weights=False):
    import torch
    from safetensors.torch import save_file

    path.mkdir(parents=True)
    save_file({"w": torch.zeros(4, 4)}, str(path / "adapter_model.safetensors"))
    if truncate_weights:
        data = (path / "adapter_model.safetensors").read_bytes()
        (path / "adapter_model.safetensors").write_bytes(data[:-10])
    if optimizer:
        torch.save({"state": {}}, path / "optimizer.pt")
    torch.save({"x": 1}, path / "scheduler.pt")
    if state:
        (path / "trainer_state.json").write_text(json.dumps({"global_step": 1}))


def test_half_written_checkpoints_are_skipped(cfg, tmp_path):
    run = create_run(cfg, tmp_path, "r")
    ck = run.checkpoints_dir
    _fake_checkpoint(ck / "checkpoint-10")
    _fake_checkpoint(ck / "checkpoint-20", state=False)
    _fake_checkpoint(ck / "checkpoint-30", optimizer=False)
    _fake_checkpoint(ck / "checkpoint-40", truncate_weights=True)
    (ck / "checkpoint-50").mkdir()
    assert [p.name for p in run.checkpoints()] == ["checkpoint-10"]
    assert run.latest_checkpoint().name == "checkpoint-10"
    assert "trainer_state" in checkpoint_problem(ck / "checkpoint-20")
    assert "optimizer.pt" in checkpoint_problem(ck / "checkpoint-30")
    assert "truncated" in checkpoint_problem(ck / "checkpoint-40")
    # an optimizer file cut short (no zip central directory) is caught too
    opt = ck / "checkpoint-10" / "optimizer.pt"
    opt.write_bytes(opt.read_bytes()[:20])
    assert run.checkpoints() == []


def test_stop_writes_a_control_request(cfg, tmp_path):
    run = create_run(cfg, tmp_path, "r")
    write_status(run.path, {"state": "running", "pid": os.getpid(), "pid_started": process_start_time(os.getpid())})
    said = run.request_stop()
    assert "stop requested" in said and run.read_control()["request"] == "stop"


def test_stopping_a_queued_run_cancels_it(cfg, tmp_path):
    run = create_run(cfg, tmp_path, "r")
    assert "cancelled" in run.request_stop()
    st = read_status(run.path)
    assert st.state == "stopped" and st.error == "cancelled before it started"


def test_resume_and_delete_rules(cfg, tmp_path):
    run = create_run(cfg, tmp_path, "r")
    me = {"pid": os.getpid(), "pid_started": process_start_time(os.getpid())}
    write_status(run.path, {"state": "running", **me})
    with pytest.raises(RunError, match="stop it first"):
        resume_run(run)
    with pytest.raises(RunError, match="stop it first"):
        delete_run(run)
    write_status(run.path, {"state": "finished"})
    with pytest.raises(RunError, match="nothing to resume"):
        resume_run(run)
    delete_run(run)
    assert not run.path.exists()


def test_queue_waits_for_the_run_before(cfg, tmp_path):
    first = create_run(cfg, tmp_path, "first")
    second = create_run(cfg, tmp_path, "second", queued_after=first)
    write_status(first.path, {"state": "running", "pid": os.getpid(), "pid_started": process_start_time(os.getpid())})
    assert not queue_ready(second)
    write_status(first.path, {"state": "failed", "error": "x"})
    assert queue_ready(second)  # a failed run does not block the rest of a sweep
    write_status(second.path, {"state": "running"})
    assert not queue_ready(second)


def test_supervisor_records_how_the_worker_ended(cfg, tmp_path):
    run = create_run(cfg, tmp_path, "r")
    write_status(run.path, {"state": "running", "pid": 1})
    record_exit(run, -signal.SIGKILL, oom_killed=True)
    st = read_status(run.path)
    assert st.state == "crashed" and "out-of-memory killer" in st.error and "RAM" in st.hint
    write_status(run.path, {"state": "running", "pid": 1})
    record_exit(run, -signal.SIGKILL)
    st = read_status(run.path)
    assert st.state == "crashed" and "SIGKILL" in st.error and "runs resume" in st.hint
    write_status(run.path, {"state": "stopping", "pid": 1})
    run.control_path.write_text(json.dumps({"request": "stop_now"}))
    record_exit(run, -signal.SIGTERM)
    st = read_status(run.path)
    assert st.state == "stopped" and "immediately" in st.message
    write_status(run.path, {"state": "finished"})
    record_exit(run, 0)
    st = read_status(run.path)
    assert st.state == "finished" and st.exit_code == 0


@pytest.mark.parametrize("method", ["full", "lora", "qlora"])
def test_a_runs_full_config_loads_back_valid(tmp_path, method):
    c = RunConfig(method=method)
    c.output.runs_dir = str(tmp_path / "runs")
    if method == "full":
        c.training.learning_rate = 2e-5
    run = create_run(c, tmp_path, "r")
    assert run.config().method == method


def test_run_directory_file_names_are_spelled_only_in_rundir():
    """Code outside tui_tuner/rundir reaches a run's files through RunDir or rundir.files, never a literal."""
    import re
    from pathlib import Path

    import tui_tuner
    from tui_tuner.rundir import files

    names = [v for k, v in vars(files).items() if k.endswith(("_FILE", "_DIR", "_LOCK")) and isinstance(v, str)]
    joined = re.compile(r"/\s*[\"'](" + "|".join(re.escape(n) for n in names) + r")[\"']")
    root = Path(tui_tuner.__file__).parent
    offenders = [f"{p.relative_to(root)}:{n}: {line.strip()}"
                 for p in root.rglob("*.py") if "rundir" not in p.relative_to(root).parts
                 for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if joined.search(line)]
    assert offenders == [], "use tui_tuner.rundir.files or RunDir's paths:\n" + "\n".join(offenders)


def test_resume_right_after_stop_waits_for_the_exiting_supervisor(tmp_path):
    """The worker writes `stopped` before its supervisor exits; that supervisor still holds the launch lock."""
    from tests.tui.conftest import make_fake_run
    from tui_tuner.rundir.runs import LAUNCH_LOCK, wait_for_ended_attempt

    run = make_fake_run(tmp_path / "runs", "stopped-run", 4, state="stopped")
    exiting = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.5)"])
    try:
        write_status(run.path, {**json.loads(run.status_path.read_text()), "supervisor_pid": exiting.pid})
        (run.path / LAUNCH_LOCK).write_text(json.dumps({"supervisor_pid": exiting.pid,
                                                        "supervisor_started": process_start_time(exiting.pid)}))
        with pytest.raises(RunError, match=f"supervisor \\(pid {exiting.pid}\\) has not exited"):
            wait_for_ended_attempt(run, run.status(), timeout_s=0.3)
        assert run.status().state == "stopped"
        wait_for_ended_attempt(run, run.status())  # returns once that process has exited
        assert exiting.poll() is not None
        # a lock held by another process (a concurrent `runs resume`) is not waited for
        (run.path / LAUNCH_LOCK).write_text(json.dumps({"supervisor_pid": os.getpid(),
                                                        "supervisor_started": process_start_time(os.getpid())}))
        wait_for_ended_attempt(run, run.status(), timeout_s=0.3)
    finally:
        exiting.kill()
        exiting.wait()
