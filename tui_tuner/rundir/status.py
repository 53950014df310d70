"""A run's `status.json`: the single source of truth for what state a run is in.

Written only by the run's worker (and its supervisor when the worker dies), always
atomically: the new content goes to a temp file in the same folder, is fsynced and
then `os.replace`d over the old one, so a reader never sees half a file.
Readers (CLI, TUI) call `read_status`; `tui_tuner.rundir.runs.RunDir.status()` adds the
liveness check that turns a dead worker into `crashed`.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from tui_tuner.rundir.files import STATUS_FILE

State = Literal["queued", "running", "stopping", "finished", "stopped", "failed", "crashed"]
STATES: tuple[str, ...] = ("queued", "running", "stopping", "finished", "stopped", "failed", "crashed")
UNREADABLE = "unreadable"
"""Shown (never written) for a run whose status.json cannot be understood; `error` says why."""
ACTIVE_STATES = frozenset({"running", "stopping"})
"""States in which a worker process should exist."""
FINAL_STATES = frozenset({"finished", "stopped", "failed", "crashed"})
RESUMABLE_STATES = frozenset({"stopped", "failed", "crashed"})


OOM_HINT = (
    "Out of memory. Try, in order: lower training.batch_size (and raise training.grad_accumulation to keep "
    "the effective batch), set training.gradient_checkpointing: true, lower model.max_seq_length, or switch "
    "to method: qlora (4-bit weights). `tui-tuner check MODEL` shows what fits."
)
RAM_OOM_HINT = (
    "The system ran out of RAM and its out-of-memory killer ended the worker. Close other programs, lower "
    "training.batch_size or model.max_seq_length, or use method: qlora; on a GPU machine make sure training "
    "runs on the GPU. " + "Then `tui-tuner runs resume RUN` continues from the last checkpoint."
)


@dataclass
class ProbeResult:
    """The preflight probe's measurement beside the estimate (bytes)."""

    device: str
    measured_peak_bytes: int
    estimate_bytes: int | None = None
    optimizer_state_bytes: int = 0
    projected_peak_bytes: int | None = None
    capacity_bytes: int | None = None
    fits: bool = True
    seq_len: int | None = None
    batch_size: int | None = None


@dataclass
class RunStatus:
    """What `status.json` holds. Unknown keys in the file are kept in `extra`."""

    state: str = "queued"
    pid: int | None = None
    """The worker process (the one doing the training)."""
    pid_started: float | None = None
    """The worker's process start time (psutil `create_time`), so a reused pid is not mistaken for it."""
    supervisor_pid: int | None = None
    created: float | None = None
    started: float | None = None
    ended: float | None = None
    step: int = 0
    max_steps: int | None = None
    epoch: float | None = None
    loss: float | None = None
    """The last logged training loss."""
    eval_loss: float | None = None
    backend: str | None = None
    backend_reason: str | None = None
    device: str | None = None
    probe: dict[str, Any] | None = None
    last_checkpoint: str | None = None
    resumed_from_step: int | None = None
    attempts: int = 0
    """How many times a worker has been started for this run (1 + resumes)."""
    exit_code: int | None = None
    error: str | None = None
    hint: str | None = None
    message: str | None = None
    """A note for the user that is not an error (e.g. how a stop went)."""
    queued_after: str | None = None
    """For a queued run: the run that must end before this one starts (see docs/run-directory.md)."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def duration_s(self) -> float | None:
        """Seconds between start and end (or now, while running)."""
        if self.started is None:
            return None
        end = self.ended if self.ended is not None else (time.time() if self.is_active else None)
        return None if end is None else max(0.0, end - self.started)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        extra = d.pop("extra")
        return {**extra, **d}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunStatus":
        known = {f.name for f in fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known}
        st = cls(**kwargs)
        st.extra = extra
        return st


_NUMBER_FIELDS = ("pid_started", "created", "started", "ended", "epoch", "loss", "eval_loss")
_INT_FIELDS = ("pid", "supervisor_pid", "step", "max_steps", "resumed_from_step", "attempts", "exit_code")
_TEXT_FIELDS = ("backend", "backend_reason", "device", "last_checkpoint", "error", "hint", "message", "queued_after")


def status_problem(data: dict[str, Any]) -> str | None:
    """What makes a `status.json` mapping unusable (a wrong state or type), or None when it is fine."""
    state = data.get("state", "queued")
    if state not in STATES:
        return f"unknown state {str(state)[:40]!r} (expected one of {', '.join(STATES)})"

    def shown(value: Any) -> str:
        return repr(value)[:40]

    for key in _NUMBER_FIELDS + _INT_FIELDS:
        value = data.get(key)
        if value is None and key not in ("step", "attempts"):
            continue
        if key in ("step", "attempts") and key not in data:
            continue
        ok = isinstance(value, int) if key in _INT_FIELDS else isinstance(value, (int, float))
        if not ok or isinstance(value, bool):
            return f"`{key}` is {shown(value)}, not a number"
    for key in _TEXT_FIELDS:
        if data.get(key) is not None and not isinstance(data[key], str):
            return f"`{key}` is {shown(data[key])}, not text"
    if data.get("probe") is not None and not isinstance(data["probe"], dict):
        return f"`probe` is {shown(data['probe'])}, not an object"
    return None


def unreadable_status(path: Path, why: str) -> RunStatus:
    """The status shown for a run whose `status.json` cannot be used: listings keep the row and say why."""
    return RunStatus(state=UNREADABLE, error=f"{path}: {why}",
                     hint="Fix the file by hand, or delete the run (`tui-tuner runs rm NAME`); other runs are unaffected.")


def open_private(path: str | Path, mode: str = "ab") -> Any:
    """Open a run file for appending, created readable by its owner only (0600, see docs/run-directory.md)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    return os.fdopen(os.open(path, flags, 0o600), mode)


def atomic_write_text(path: Path, text: str) -> None:
    """Replace `path` with `text` so readers see the old or the new content, never a mix."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_status(run_dir: str | Path, status: RunStatus | dict[str, Any]) -> None:
    """Atomically write `status.json` in `run_dir`, even on a full disk.

    When the disk is full the run's reserve file (see `tui_tuner.rundir.diskspace`) is given
    up and the write retried; failing that, the compact status overwrites the old file in
    place, which needs no new blocks (a status is far smaller than one block).
    """
    from tui_tuner.rundir.diskspace import is_disk_full, release_reserve

    data = status.as_dict() if isinstance(status, RunStatus) else dict(status)
    if data.get("state") not in STATES:
        raise ValueError(f"unknown run state {data.get('state')!r}; expected one of {', '.join(STATES)}")
    path = Path(run_dir) / STATUS_FILE
    try:
        atomic_write_text(path, json.dumps(data, indent=1, default=str) + "\n")
        return
    except OSError as exc:
        if not is_disk_full(exc):
            raise
    compact = json.dumps(data, separators=(",", ":"), default=str) + "\n"
    if release_reserve(run_dir):
        try:
            atomic_write_text(path, compact)
            return
        except OSError as exc:
            if not is_disk_full(exc):
                raise
    _overwrite_in_place(path, compact.encode("utf-8"))


def _overwrite_in_place(path: Path, data: bytes) -> None:
    """Write `data` over the existing file's blocks, then cut it to length (not atomic: the last resort)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
        os.fsync(fd)
    finally:
        os.close(fd)


def read_status(run_dir: str | Path) -> RunStatus | None:
    """The status as written (no liveness check), or None when there is no readable status file."""
    path = Path(run_dir) / STATUS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        return unreadable_status(path, f"cannot be read ({exc.strerror or exc})")
    except (ValueError, RecursionError):
        # Only a non-atomic writer (a person editing it) can leave this; report rather than guess.
        return unreadable_status(path, "not valid JSON")
    if not isinstance(data, dict):
        return unreadable_status(path, "not a JSON object")
    problem = status_problem(data)
    if problem:
        return unreadable_status(path, problem)
    return RunStatus.from_dict(data)

class StatusKeeper:
    """The worker's in-memory status; every write replaces the whole file atomically."""

    def __init__(self, run_dir: Path, status: RunStatus, min_interval_s: float = 1.0, *, persist: bool = True):
        self.run_dir = Path(run_dir)
        self.min_interval_s = min_interval_s
        self.status = status
        self.persist = persist  # False on ranks other than 0 of a multi-GPU run: only rank 0 writes
        self._last_write = 0.0

    def update(self, force: bool = True, **fields: Any) -> None:
        for key, value in fields.items():
            if hasattr(self.status, key) and key != "extra":
                setattr(self.status, key, value)
            else:
                self.status.extra[key] = value
        now = time.monotonic()
        if self.persist and (force or now - self._last_write >= self.min_interval_s):
            write_status(self.run_dir, self.status)
            self._last_write = now


def is_oom_message(text: str) -> bool:
    """Whether an error message says the process ran out of memory (CUDA, CPU allocator or MPS)."""
    t = text.lower()
    return (any(s in t for s in ("out of memory", "cannot allocate memory", "can't allocate memory",
                                 "defaultcpuallocator: can't allocate", "outofmemoryerror"))
            or re.search(r"\boom\b", t) is not None)
