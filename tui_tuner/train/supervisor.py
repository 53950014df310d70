"""The supervisor: runs the worker as a child process and records how it ended.

A worker cannot write its own final state when the kernel kills it (SIGKILL from the
out-of-memory killer, `kill -9`) or it exits without one. The supervisor waits for it,
and if `status.json` is not final it writes `crashed` with the exit code or signal,
telling an out-of-memory kill apart (the cgroup's `oom_kill` counter grew, or RAM was
nearly exhausted just before) so the user gets the right hint. Then it releases the
launch lock and starts any queued run that was waiting for this one. No torch here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tui_tuner.rundir.diskspace import RESERVE_BYTES, free_bytes, release_reserve
from tui_tuner.rundir.runs import RunDir, release_launch_lock, start_ready_queued, worker_env
from tui_tuner.rundir.status import FINAL_STATES, RAM_OOM_HINT, read_status, write_status

LOG_PIPE_ENV = "TUI_TUNER_LOG_PIPE"
"""The worker's inherited copy of the read end of its output pipe (a file descriptor number)."""
COPY_DRAIN_S = 5.0
"""How long the end of the worker's output is waited for after it exits."""
LOW_MEMORY_FRACTION = 0.05
"""Available RAM below this share of the total counts as "nearly exhausted"."""


def cgroup_oom_kills() -> int | None:
    """How many processes the OOM killer has ended in this cgroup, when the kernel tells us."""
    for path, key in (("/sys/fs/cgroup/memory.events", "oom_kill"),
                      ("/sys/fs/cgroup/memory/memory.oom_control", "oom_kill")):
        try:
            for line in Path(path).read_text().splitlines():
                name, _, value = line.partition(" ")
                if name == key:
                    return int(value)
        except (OSError, ValueError):
            continue
    return None


def worker_argv(run: RunDir) -> list[str]:
    """The worker command: one process, or torchrun for a multi-GPU launch plan (`launch.json`)."""
    from tui_tuner.train.distributed import load_plan, worker_argv as planned_argv

    return planned_argv(run.path, load_plan(run.path))


def supervise(run_dir: str | Path) -> int:
    """Run the worker for `run_dir` to the end; returns its exit status."""
    run = RunDir(Path(run_dir).resolve())
    os.umask(0o077)  # run files are private to their owner (docs/run-directory.md)
    try:
        return _supervise(run)
    finally:
        release_launch_lock(run)  # never left behind, whatever happened (a full disk included)
        release_reserve(run.path)


def _say(text: str) -> None:
    """One line to train.log (stderr); a full disk must not turn it into a traceback."""
    try:
        print(text, file=sys.stderr, flush=True)
    except OSError:
        pass


def _supervise(run: RunDir) -> int:
    import psutil

    env = worker_env()
    env["TUI_TUNER_SUPERVISOR_PID"] = str(os.getpid())
    oom_before = cgroup_oom_kills()
    # Ctrl+C in a foreground `python -m tui_tuner.train` reaches the worker too; the supervisor
    # must outlive it to record the result.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The worker's output reaches train.log through this process, without the terminal colour codes
    # that tracker libraries print even into a file.
    # The worker also keeps the pipe's read end: if this process is killed, its writes do not fail
    # (a broken pipe would end the training) and it takes over train.log itself (worker.py).
    read_end, write_end = os.pipe()
    env[LOG_PIPE_ENV] = str(read_end)
    try:
        proc = subprocess.Popen(worker_argv(run), stdin=subprocess.DEVNULL, stdout=write_end, stderr=write_end,
                                pass_fds=(read_end,), cwd=run.path, env=env)
    finally:
        os.close(write_end)
    copier = start_log_copier(os.fdopen(read_end, "rb", buffering=0))
    signal.signal(signal.SIGTERM, lambda *_: proc.send_signal(signal.SIGTERM))
    low_memory = False
    stall_s = _stall_seconds(run)
    stall_told = False
    while True:
        try:
            rc = proc.wait(timeout=0.5)
            break
        except subprocess.TimeoutExpired:
            vm = psutil.virtual_memory()
            if vm.available < LOW_MEMORY_FRACTION * vm.total:
                low_memory = True
            if stall_s is not None and not stall_told and _quiet_for(run) > stall_s:
                stall_told = True  # told once; a run that logs again and stalls again is not re-told
                _tell(run, stalled=True)
    # Everything the worker printed lands before the ending is recorded. A process the worker left
    # behind (a tracker's service) may hold the pipe open: it is not waited for long.
    copier.join(timeout=COPY_DRAIN_S)
    oom_after = cgroup_oom_kills()
    oom_killed = rc == -signal.SIGKILL and (
        (oom_before is not None and oom_after is not None and oom_after > oom_before) or low_memory)
    try:
        record_exit(run, rc, oom_killed=oom_killed)
    except OSError as exc:  # status.json could not be written even in place: say so where we can
        _say(f"tui-tuner supervisor: could not record how the worker ended (exit {rc}): {exc.strerror or exc}")
    _tell(run)
    release_launch_lock(run)
    try:
        start_ready_queued(run.path.parent)
    except Exception as exc:  # the queue is best effort; `runs ls` kicks it again
        _say(f"tui-tuner: could not start the next queued run: {exc}")
    return rc if rc >= 0 else 128 - rc


class LogKeeper:
    """In the worker: when its supervisor dies, stdout/stderr go to train.log itself.

    The worker holds the read end of its output pipe too (`LOG_PIPE_ENV`), so writes made before
    this notices do not fail; what they left in the pipe is appended to the log. A thread checks
    twice a second; `settle()` checks once more as the worker ends, so a run that finishes right
    after its supervisor died still logs its last lines.
    """

    def __init__(self, log_path: Path, read_end: int, supervisor: int):
        self.log_path, self.read_end, self.supervisor = log_path, read_end, supervisor
        self._lock = threading.Lock()
        self._done = False

    def orphaned(self) -> bool:
        return os.getppid() != self.supervisor  # an orphan is adopted by another process

    def settle(self) -> None:
        """Take the log over now if the supervisor is gone (once)."""
        with self._lock:
            if self._done or not self.orphaned():
                return
            self._done = True
            self._take_over()

    def _take_over(self) -> None:
        from tui_tuner.core.ansi import AnsiStripper

        try:
            log = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError:
            return  # nowhere to write: the pipe keeps absorbing output as before
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()  # what Python still buffers goes into the pipe first, then is drained
            except (OSError, ValueError):
                pass
        os.dup2(log, 1)
        os.dup2(log, 2)
        stripper = AnsiStripper()
        os.set_blocking(self.read_end, False)
        try:
            while chunk := os.read(self.read_end, 65536):
                os.write(log, stripper.feed(chunk))
        except OSError:
            pass  # drained (BlockingIOError), or the disk is full
        try:
            os.write(log, stripper.flush())
        except OSError:
            pass
        os.close(log)
        os.close(self.read_end)

    def watch(self, poll_s: float = 0.5) -> None:
        while not self._done:
            if self.orphaned():
                self.settle()
                return
            time.sleep(poll_s)


def keep_the_log_if_orphaned(log_path: Path, poll_s: float = 0.5) -> LogKeeper | None:
    """Start a `LogKeeper` for this worker (None when it does not run under a supervisor)."""
    fd_text, parent_text = os.environ.get(LOG_PIPE_ENV, ""), os.environ.get("TUI_TUNER_SUPERVISOR_PID", "")
    if not (fd_text.isdigit() and parent_text.isdigit()) or os.getppid() != int(parent_text):
        return None
    keeper = LogKeeper(log_path, int(fd_text), int(parent_text))
    threading.Thread(target=keeper.watch, args=(poll_s,), daemon=True, name="log-keeper").start()
    return keeper


def start_log_copier(source: Any, fd: int | None = None) -> threading.Thread:
    """A thread copying `source` (the worker's output pipe) to `fd` (train.log: this process's stdout)
    without escape codes, until the pipe closes. It always reads on, so the worker never blocks on a
    full pipe, even when the file cannot be written (a full disk): then the text is dropped."""
    from tui_tuner.core.ansi import AnsiStripper

    out = sys.stdout.fileno() if fd is None else fd
    stripper = AnsiStripper()

    def write(data: bytes) -> None:
        while data:
            try:
                data = data[os.write(out, data):]
            except OSError:
                return

    def copy() -> None:
        while chunk := os.read(source.fileno(), 65536):
            write(stripper.feed(chunk))
        write(stripper.flush())

    thread = threading.Thread(target=copy, daemon=True, name="train-log")
    thread.start()
    return thread


def _stall_seconds(run: RunDir) -> float | None:
    try:
        from tui_tuner.train.notify import stall_seconds

        return stall_seconds(run)
    except Exception:  # notifications are best effort: never in the way of the run
        return None


def _quiet_for(run: RunDir) -> float:
    """Seconds since the running worker last logged anything (0 while it is not running yet)."""
    st = read_status(run.path)
    if st is None or st.state != "running":
        return 0.0
    try:
        return time.time() - run.events_path.stat().st_mtime
    except OSError:
        return 0.0


def _tell(run: RunDir, *, stalled: bool = False) -> None:
    """Send the config's `notify:` messages (a run ended, or stalled); a failure is printed, never raised."""
    try:
        from tui_tuner.train.notify import notify_run_end, notify_stalled

        results = notify_stalled(run) if stalled else notify_run_end(run)
    except Exception as exc:
        _say(f"tui-tuner: could not send the run's notifications: {exc}")
        return
    if results:
        _say("tui-tuner: notified " + ", ".join(f"{k} ({v})" for k, v in results.items()))


def record_exit(run: RunDir, rc: int, *, oom_killed: bool = False) -> None:
    """Write the final state for a worker that ended without one (and the exit code either way)."""
    st = read_status(run.path)
    if st is None:
        return
    st.exit_code = rc
    if st.state in FINAL_STATES:
        write_status(run.path, st)
        return
    st.ended = time.time()
    ckpt = run.latest_checkpoint()
    since = f"checkpoint {ckpt.name}" if ckpt else "the start"
    resume = f"`tui-tuner runs resume {run.name}` continues from {since}."
    if rc < 0:
        sig = -rc
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else f"signal {sig}"
        if sig == signal.SIGTERM and run.read_control().get("request") == "stop_now":
            st.state, st.error, st.hint = "stopped", None, resume
            st.message = f"stopped immediately on request; progress after {since} was not saved"
        elif oom_killed:
            st.state = "crashed"
            st.error = "the worker was killed by the system's out-of-memory killer (SIGKILL)"
            st.hint = RAM_OOM_HINT
        elif sig == signal.SIGKILL:
            st.state = "crashed"
            st.error = "the worker was killed (SIGKILL)"
            st.hint = ("If nobody killed it, the system may have run out of RAM (see `dmesg`); lower "
                       "training.batch_size or model.max_seq_length. " + resume)
        else:
            st.state, st.error, st.hint = "crashed", f"the worker was ended by {name}", resume
    else:
        st.state = "crashed"
        st.error = f"the worker exited with status {rc} without recording a result"
        st.hint = f"See the end of {run.log_path}. " + resume
    free = free_bytes(run.path)
    if rc != 0 and st.state == "crashed" and free is not None and free < RESERVE_BYTES:
        # A worker that could not even write its failure: the disk filled up under it.
        st.state = "failed"
        st.error = f"the disk is full: no space left to write in {run.path} (the worker ended with {rc})"
        st.hint = (f"Free disk space (`df -h {run.path}`; old runs: `tui-tuner runs rm NAME`), or set "
                   f"output.runs_dir to a bigger disk; then {resume}")
    write_status(run.path, st)
