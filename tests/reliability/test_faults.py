"""Faults: a training run survives being killed, its viewers dying, full disks and Ctrl+C.

Real workers train the tiny demo model on CPU (6 steps, a checkpoint every step). Faults
are injected by `fault_injection/sitecustomize.py` (put first on the workers'
PYTHONPATH) at exact points - half a checkpoint file or half an event line written,
then SIGKILL - or from outside (SIGKILL, SIGHUP, SIGINT at a random moment).

    PYTHONPATH=$PWD python -m pytest -q -s tests/reliability/test_faults.py

The 20 seeded kill trials run 4 at a time; `-s` prints the lost steps of each trial.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tui_tuner.rundir.events import EventTail
from tui_tuner.rundir.runs import RunDir, _safetensors_complete, checkpoint_problem, checkpoint_step, list_runs, process_alive
from tui_tuner.rundir.status import RAM_OOM_HINT

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
INJECTOR = Path(__file__).resolve().parent / "fault_injection"
MAX_STEPS = 6
TRIALS = 20
PARALLEL = 4
RUN_TIMEOUT_S = 300

CONFIG = f"""\
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
  max_steps: {MAX_STEPS}
  batch_size: 1
  grad_accumulation: 1
  save_steps: 1
  save_total_limit: 3
  logging_steps: 1
  warmup_ratio: 0.0
  gradient_checkpointing: false
output:
  runs_dir: runs
"""


# ---------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    from tui_tuner.models.demo import ensure_demo_model

    ensure_demo_model()  # once, before workers race to build it
    root = tmp_path_factory.mktemp("faults")
    (root / "data").mkdir()
    shutil.copy(REPO / "data" / "sample.jsonl", root / "data" / "sample.jsonl")
    (root / "configs").mkdir()
    (root / "configs" / "run.yaml").write_text(CONFIG)
    return root


def env_for(fault: dict | None = None, **extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(INJECTOR), str(REPO)]), "HF_HUB_OFFLINE": "1",
           "NO_COLOR": "1", "COLUMNS": "200", **extra}
    env.pop("TUI_TUNER_TEST_FAULT", None)
    if fault is not None:
        env["TUI_TUNER_TEST_FAULT"] = json.dumps(fault)
    return env


def default_signals() -> None:
    """In a child before exec: SIGINT and SIGHUP as a terminal gives them, whatever this test process inherited.

    A library loaded earlier in the test session may leave them blocked or ignored, and a child
    inherits both; a user's shell starts `tui-tuner` with them delivered."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGHUP})
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def cli(project: Path, *args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "tui_tuner", *args], cwd=project, env=env or env_for(),
                          capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc


def start(project: Path, name: str, fault: dict | None = None, *overrides: str, **extra: str) -> RunDir:
    """`train --detach`; `overrides` are `--set` values (e.g. more steps, so a request lands mid-run)."""
    sets = [arg for value in overrides for arg in ("--set", value)]
    proc = cli(project, "train", "configs/run.yaml", "--detach", "--name", name, *sets, env=env_for(fault, **extra))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = [r for r in list_runs(project / "runs") if r.name.startswith(name + "-")]
    assert len(runs) == 1, runs
    return runs[0]


def wait_for(predicate, timeout: float = RUN_TIMEOUT_S, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def wait_ended(run: RunDir, timeout: float = RUN_TIMEOUT_S, attempt: int = 1):
    """The final status of worker attempt `attempt`, once its supervisor has recorded it and exited."""
    def ended():
        st = run.status()
        return st if st.attempts >= attempt and st.is_final and not process_alive(st.supervisor_pid) else None
    return wait_for(ended, timeout, f"{run.name} to end")


def resume(project: Path, run: RunDir) -> tuple[subprocess.CompletedProcess, int]:
    """`runs resume --detach`; returns the CLI result and the attempt number the resumed worker will have."""
    attempt = run.raw_status().attempts + 1
    return cli(project, "runs", "resume", run.name, "--detach", "--runs-dir", "runs"), attempt


def logged_steps(run: RunDir) -> list[int]:
    """Steps of the complete `log` events in the file, in order (resumes not applied)."""
    steps = []
    for line in run.events_path.read_bytes().split(b"\n"):
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("kind") == "log":
            steps.append(event["step"])
    return steps


def unparseable_lines(run: RunDir) -> list[bytes]:
    out = []
    for line in run.events_path.read_bytes().split(b"\n"):
        if not line.strip():
            continue
        try:
            if not isinstance(json.loads(line), dict):
                out.append(line)
        except ValueError:
            out.append(line)
    return out


def checkpoint_events(run: RunDir) -> list[dict]:
    return [e for e in EventTail(run.events_path).read_all().checkpoints]


def adapter_complete(run: RunDir) -> bool:
    weights = run.adapter_dir / "adapter_model.safetensors"
    return weights.is_file() and _safetensors_complete(weights) and (run.adapter_dir / "adapter_config.json").is_file()


# ---------------------------------------------------------------------------- 20 seeded kills


@dataclass
class Trial:
    seed: int
    how: str
    killed_at_step: int = -1
    resumed_from: int = -1
    newest_complete_at_crash: int = 0
    half_written: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def lost_steps(self) -> int:
        return self.killed_at_step - self.resumed_from


def plan_trial(seed: int) -> tuple[str, dict | None, int, float]:
    """(description, injected fault or None, kill at step, extra delay) for a seed."""
    rng = random.Random(seed)
    where = ("step", "save", "events")[seed % 3]
    if where == "save":
        file = rng.choice(["adapter_model.safetensors", "optimizer.pt", "trainer_state.json"])
        nth = rng.randint(1, MAX_STEPS - 1)
        return f"save {file} #{nth}", {"at": "save", "file": file, "nth": nth, "action": "kill"}, 0, 0.0
    if where == "events":
        nth = rng.randint(1, MAX_STEPS - 1)
        return f"events log #{nth}", {"at": "events", "nth": nth, "action": "kill"}, 0, 0.0
    # A short delay: two steps of a quiet machine take about 0.1 s, and the kill must land before the end.
    step, delay = rng.randint(1, MAX_STEPS - 2), rng.uniform(0.0, 0.05)
    return f"step >= {step} + {delay:.2f}s", None, step, delay


def run_trial(project: Path, seed: int) -> Trial:
    how, fault, kill_step, delay = plan_trial(seed)
    trial = Trial(seed, how)
    run = start(project, f"trial{seed:02d}", fault)
    if fault is None:
        st = wait_for(lambda: (s := run.raw_status()).state == "running" and (s.step or 0) >= kill_step and s,
                      what=f"step {kill_step}")
        time.sleep(delay)
        os.kill(st.pid, signal.SIGKILL)
    st = wait_ended(run)
    if st.state != "crashed":
        trial.problems.append(f"after the kill the run is {st.state!r}, not crashed ({st.error})")
        return trial
    if "SIGKILL" not in (st.error or ""):
        trial.problems.append(f"the crash does not say how the worker died: {st.error!r}")
    # The last step the worker completed: logged, being checkpointed, or being logged when killed.
    reached = [*logged_steps(run), *(checkpoint_step(p) for p in run.all_checkpoints())]
    if fault and fault["at"] == "events":
        reached.append(fault["nth"])  # the n-th log event is step n's
    trial.killed_at_step = max(reached, default=0)
    complete = run.checkpoints()
    trial.newest_complete_at_crash = checkpoint_step(complete[-1]) if complete else 0
    trial.half_written = [p.name for p in run.all_checkpoints() if checkpoint_problem(p) is not None]
    if fault and fault["at"] == "save" and not trial.half_written:
        trial.problems.append("the checkpoint killed mid-save is not detected as half-written")
    for event in checkpoint_events(run):
        path = Path(event["path"])
        if path.exists() and checkpoint_problem(path) is not None:
            trial.problems.append(f"{path.name} has a checkpoint event but is half-written")

    resumed, attempt = resume(project, run)
    if resumed.returncode != 0:
        trial.problems.append(f"resume refused: {resumed.stdout}{resumed.stderr}")
        return trial
    st = wait_ended(run, attempt=attempt)
    if st.state != "finished" or st.step != MAX_STEPS:
        trial.problems.append(f"after resume the run is {st.state} at step {st.step}: {st.error}")
    if not adapter_complete(run):
        trial.problems.append("no complete adapter after the resumed run finished")
    history = EventTail(run.events_path).read_all()
    if not history.resumes:
        trial.problems.append("no resume event")
    else:
        trial.resumed_from = history.resumes[-1]["from_step"]
        if trial.resumed_from != trial.newest_complete_at_crash:
            trial.problems.append(f"resumed from step {trial.resumed_from}, but the newest complete "
                                  f"checkpoint was {trial.newest_complete_at_crash}")
    if [s for s, _ in history.losses] != list(range(1, MAX_STEPS + 1)):
        trial.problems.append(f"steps after resume: {[s for s, _ in history.losses]}")
    torn = unparseable_lines(run)
    if len(torn) > 1 or (torn and fault is None):
        trial.problems.append(f"unparseable event lines: {torn!r}")
    return trial


@pytest.fixture(scope="module")
def trials(project) -> dict[int, Trial | BaseException]:
    results: dict[int, Trial | BaseException] = {}

    def one(seed):
        try:
            results[seed] = run_trial(project, seed)
        except BaseException as exc:  # reported by that trial's test
            results[seed] = exc

    with ThreadPoolExecutor(PARALLEL) as pool:
        list(pool.map(one, range(TRIALS)))
    print("\nseed  kill point                           killed@  resumed@  lost  half-written")
    for seed in range(TRIALS):
        t = results[seed]
        if isinstance(t, Trial):
            print(f"{seed:4d}  {t.how:36s} {t.killed_at_step:7d}  {t.resumed_from:8d}  {t.lost_steps:4d}  "
                  f"{','.join(t.half_written) or '-'}" + (f"  PROBLEMS: {t.problems}" if t.problems else ""))
        else:
            print(f"{seed:4d}  error: {t!r}")
    return results


@pytest.mark.parametrize("seed", range(TRIALS))
def test_killed_worker_is_crashed_then_resumes_from_newest_complete_checkpoint(trials, seed):
    trial = trials[seed]
    if isinstance(trial, BaseException):
        raise trial
    assert trial.problems == []
    # only the steps after the newest complete checkpoint are lost (at most the one being saved)
    assert 0 <= trial.lost_steps <= 2


# ---------------------------------------------------------------------------- viewers and control


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGHUP])
def test_killing_the_attached_cli_leaves_the_run_training(project, sig):
    # Long enough that the signal, sent once step 1 shows, always lands mid-run on a loaded or a quiet machine.
    steps = 30
    proc = subprocess.Popen([sys.executable, "-m", "tui_tuner", "train", "configs/run.yaml", "--name", f"cli{sig}",
                             "--set", f"training.max_steps={steps}"],
                            cwd=project, env=env_for(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True,  # its own process group, as a shell job in a terminal
                            preexec_fn=default_signals)
    run = wait_for(lambda: next(iter(r for r in list_runs(project / "runs") if r.name.startswith(f"cli{sig}-")), None),
                   what="the run directory")
    wait_for(lambda: (run.raw_status().step or 0) >= 1, what="step 1")
    os.killpg(proc.pid, sig)  # what the terminal does to its jobs on SSH disconnect (SIGHUP)
    proc.wait(timeout=30)
    assert proc.returncode == -sig
    st = wait_ended(run)
    assert st.state == "finished" and st.step == steps, st
    assert adapter_complete(run)


def test_a_killed_supervisor_leaves_the_worker_training_and_logging(project):
    """The worker writes through its supervisor's pipe; without the supervisor it keeps train.log itself."""
    run = start(project, "orphan")
    wait_for(lambda: (run.raw_status().step or 0) >= 1, what="step 1")
    st = run.raw_status()
    log = run.path / "train.log"
    os.kill(st.supervisor_pid, signal.SIGKILL)
    wait_for(lambda: not process_alive(st.supervisor_pid), what="the supervisor to die")
    wait_for(lambda: run.raw_status().is_final and not process_alive(st.pid), what="the worker to end")
    final = run.raw_status()
    assert final.state == "finished" and final.step == final.max_steps, final
    text = log.read_text(errors="replace")
    # The worker's last line is written after its supervisor died: only the worker itself can have logged it.
    assert f"tui-tuner worker {st.pid}: finished" in text, text[-2000:]
    assert "BrokenPipe" not in text and "Traceback" not in text, text[-2000:]
    assert "\x1b[" not in text


def test_two_watchers_and_a_cli_stop_twice_and_resume_refused(project):
    run = start(project, "watched", None, "training.max_steps=40")  # the stops land mid-run on a quiet machine too
    seen: dict[str, list[int]] = {"a": [], "b": []}
    done = threading.Event()

    def watch(key):
        tail = EventTail(run.events_path)
        while not done.is_set():
            tail.poll()
            time.sleep(0.1)
        tail.poll()
        seen[key] = [s for s, _ in tail.history.losses]

    watchers = [threading.Thread(target=watch, args=(k,)) for k in seen]
    for w in watchers:
        w.start()
    attach = subprocess.Popen([sys.executable, "-m", "tui_tuner", "runs", "attach", run.name, "--runs-dir", "runs"],
                              cwd=project, env=env_for(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: (run.raw_status().step or 0) >= 2, what="step 2")
    refused = cli(project, "runs", "resume", run.name, "--runs-dir", "runs")
    assert refused.returncode == 2 and "stop it first" in refused.stderr
    first = cli(project, "runs", "stop", run.name, "--runs-dir", "runs")
    second = cli(project, "runs", "stop", run.name, "--runs-dir", "runs")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    st = wait_ended(run)
    out, _ = attach.communicate(timeout=60)
    done.set()
    for w in watchers:
        w.join()
    assert st.state == "stopped", st
    assert "Traceback" not in out and attach.returncode == 0, out
    assert seen["a"] == seen["b"] == list(range(1, st.step + 1))
    assert run.latest_checkpoint() is not None and checkpoint_step(run.latest_checkpoint()) == st.step
    assert adapter_complete(run)
    assert logged_steps(run).count(1) == 1  # one stop, not two: each step logged once


def test_runs_started_in_the_same_second_get_distinct_directories(tmp_path):
    from tui_tuner.config.schema import validate_raw
    from tui_tuner.rundir.runs import create_run

    cfg = validate_raw({"output": {"runs_dir": str(tmp_path / "runs")}}).config
    made: list[RunDir] = []
    lock = threading.Lock()

    def make():
        run = create_run(cfg, tmp_path, "same")
        with lock:
            made.append(run)

    threads = [threading.Thread(target=make) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.path for r in made}) == 8
    assert all(r.exists() for r in made)


# ---------------------------------------------------------------------------- resources


def test_disk_full_while_saving_fails_clearly_and_keeps_the_previous_checkpoint(project):
    run = start(project, "diskfull", {"at": "save", "file": "optimizer.pt", "nth": 3, "action": "enospc"})
    st = wait_ended(run)
    assert st.state == "failed", st
    text = f"{st.error} {st.hint}".lower()
    assert "disk" in text and "space" in text, st
    assert "traceback" not in text
    assert checkpoint_problem(run.checkpoints_dir / "checkpoint-2") is None
    assert checkpoint_problem(run.checkpoints_dir / "checkpoint-3") is not None
    assert run.latest_checkpoint().name == "checkpoint-2"
    resumed, attempt = resume(project, run)
    assert resumed.returncode == 0 and "checkpoint-2" in resumed.stdout
    st = wait_ended(run, attempt=attempt)
    assert st.state == "finished" and adapter_complete(run)


def test_oom_killer_kill_is_reported_with_the_ram_hint(project, tmp_path):
    counter = tmp_path / "memory.events.oom_kill"
    counter.write_text("0")
    run = start(project, "oom", TUI_TUNER_TEST_OOM_COUNTER=str(counter))
    st = wait_for(lambda: (s := run.raw_status()).state == "running" and (s.step or 0) >= 2 and s, what="step 2")
    counter.write_text("1")  # what the kernel's OOM killer does: count the kill, then SIGKILL
    os.kill(st.pid, signal.SIGKILL)
    st = wait_ended(run)
    assert st.state == "crashed"
    assert "out-of-memory" in st.error and st.hint == RAM_OOM_HINT


def test_ctrl_c_twice_stops_now_with_a_warning_and_labels_nothing_half_written_complete(project):
    proc = subprocess.Popen([sys.executable, "-m", "tui_tuner", "train", "configs/run.yaml", "--name", "ctrlc",
                             "--set", "training.max_steps=30"],  # the stop lands mid-run however fast steps are
                            cwd=project, env=env_for(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=default_signals)
    run = wait_for(lambda: next(iter(r for r in list_runs(project / "runs") if r.name.startswith("ctrlc-")), None),
                   what="the run directory")
    wait_for(lambda: (run.raw_status().step or 0) >= 1, what="step 1")
    # Ctrl+C once the CLI follows the run (its first step line), as a person watching it would.
    before = []
    for line in proc.stdout:
        before.append(line)
        if line.startswith("step ") or "finished at step" in line:
            break
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=120)
    out = "".join(before) + rest
    assert "Traceback" not in out, out
    assert "stop requested" in out and "warning" in out.lower(), out
    st = wait_ended(run)
    assert st.state == "stopped", st
    for event in checkpoint_events(run):
        path = Path(event["path"])
        assert not path.exists() or checkpoint_problem(path) is None, f"{path.name} labelled complete but half-written"
    history = EventTail(run.events_path).read_all()
    if any(e.get("kind") == "adapter" for e in history.other):
        assert adapter_complete(run)
    # the run can go on from what was saved
    resumed, attempt = resume(project, run)
    assert resumed.returncode == 0
    st = wait_ended(run, attempt=attempt)
    assert st.state == "finished" and adapter_complete(run)
