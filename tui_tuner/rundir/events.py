"""A run's `events.jsonl`: append-only training events, and the incremental reader.

One JSON object per line, each flushed as it is written, so a reader sees every
event the moment it is logged. The worker can be killed mid-line, so:

- `read_events(path, offset)` returns only complete lines; an unterminated last line
  is left for the next call (the returned offset stops before it).
- `EventWriter` terminates a torn tail with a newline when it opens the file, so the
  torn fragment becomes one unparseable line that readers skip, and new events start
  on a fresh line.

After a resume the events between the checkpoint and the crash are superseded: the
worker writes `{"kind": "resume", "from_step": N}` and `RunHistory` drops earlier
step-bearing events with `step > N` (see docs/run-directory.md).

    from tui_tuner.rundir.events import EventTail
    tail = EventTail(run.events_path)
    tail.poll()                      # new events since the last call
    tail.history.losses              # [(step, loss), ...] with resumes applied
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tui_tuner.rundir.files import EVENTS_FILE

MAX_READ_BYTES = 4 * 1024 * 1024
"""At most this much is read per call, so one refresh never stalls on a huge backlog."""

STEP_KINDS = frozenset({"log", "eval", "checkpoint"})
"""Event kinds tied to a training step: superseded by a later `resume` to an earlier step."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _well_formed(ev: dict[str, Any]) -> bool:
    """Whether the fields readers compute with have the types the worker writes."""
    if "step" in ev and ev["step"] is not None and not _is_int(ev["step"]):
        return False
    if ev.get("from_step") is not None and not _is_int(ev["from_step"]):
        return False
    for key in ("loss", "eval_loss", "learning_rate", "grad_norm", "epoch"):
        if ev.get(key) is not None and not _is_number(ev[key]):
            return False
    return True


class EventWriter:
    """Appends events to `events.jsonl`, one flushed line each; safe to call from several threads."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._terminate_torn_tail()

    def _terminate_torn_tail(self) -> None:
        size = os.fstat(self._fd).st_size
        if size == 0:
            return
        with open(self.path, "rb") as fh:
            fh.seek(size - 1)
            last = fh.read(1)
        if last != b"\n":
            os.write(self._fd, b"\n")

    def write(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Append one event `{"t": now, "kind": kind, **fields}` and return it."""
        event = {"t": round(time.time(), 3), "kind": kind, **fields}
        line = (json.dumps(event, default=_jsonable, allow_nan=False) + "\n").encode("utf-8")
        with self._lock:
            if self._fd < 0:
                raise ValueError("event writer is closed")
            os.write(self._fd, line)  # O_APPEND + one write: the line lands whole, after every other
        return event

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> "EventWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    return str(value)


def read_events(path: str | Path, offset: int = 0, max_bytes: int = MAX_READ_BYTES) -> tuple[list[dict[str, Any]], int]:
    """Complete events after byte `offset`, and the offset to pass next time.

    Reads only the new bytes. An unterminated last line is not consumed. Lines that are
    not a JSON object (a torn fragment that a restarted writer terminated) are skipped.
    A missing file gives `([], offset)`. A file shorter than `offset` was replaced: it is
    read from the start (callers holding derived state should reset it; `EventTail` does).
    """
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return [], offset
    with fh:
        size = os.fstat(fh.fileno()).st_size
        if size < offset:
            offset = 0
        if size == offset:
            return [], offset
        fh.seek(offset)
        chunk = fh.read(min(max_bytes, size - offset))
    end = chunk.rfind(b"\n")
    if end < 0:
        if len(chunk) >= max_bytes:  # one line longer than a whole read: skip it rather than stall forever
            return [], offset + len(chunk)
        return [], offset
    events = []
    for raw in chunk[: end + 1].splitlines():
        if not raw.strip():
            continue
        try:
            event = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(event, dict):
            events.append(event)
    return events, offset + end + 1


PREPARE_KIND = "prepare"
"""What the worker is doing before the first step: `{"kind": "prepare", "what": "tokenizing",
"done": 1200, "total": 10000, "rate": 850.0, "eta_s": 10.4}` (done/total/rate/eta_s may be null).
A model download counts bytes: `{"kind": "prepare", "what": "downloading weights", "unit": "bytes",
"done": ..., "total": ..., "rate": <bytes/s>, "eta_s": ..., "file": "model.safetensors", "repo": "org/name",
"resumed": <bytes already on disk from an interrupted download>}`."""
PREPARE_ENDS = frozenset({"train_begin", "log", "end"})
"""Events after which the last `prepare` no longer describes what the run is doing."""


class PrepareRate:
    """Rate and ETA of a preparation step, from successive `(what, done, total)` reports."""

    def __init__(self) -> None:
        self.what: str | None = None
        self.began = 0.0

    def fields(self, what: str, done: int | None = None, total: int | None = None) -> dict[str, Any]:
        now = time.monotonic()
        if what != self.what:
            self.what, self.began = what, now
        elapsed = now - self.began
        rate = round(done / elapsed, 1) if done and elapsed > 0.2 else None
        eta = round((total - done) / rate, 1) if rate and total is not None and total >= done else None
        return {"what": what, "done": done, "total": total, "rate": rate, "eta_s": eta}


def prepare_text(event: dict[str, Any]) -> str:
    """`tokenizing 12,000 of 100,000 rows · 3,400 rows/s · ETA 26s` from a `prepare` event."""
    from tui_tuner.core.units import format_duration

    if event.get("unit") == "bytes":
        from tui_tuner.models.download import progress_text

        return progress_text(event)
    what = str(event.get("what") or "preparing")
    done, total, rate, eta = (event.get(k) for k in ("done", "total", "rate", "eta_s"))
    parts = [what]
    if isinstance(done, int) and done > 0:
        parts[0] += f" {done:,}" + (f" of {total:,}" if isinstance(total, int) and total >= done else "") + " rows"
    if isinstance(rate, (int, float)) and rate > 0:
        parts.append(f"{rate:,.0f} rows/s")
    if isinstance(eta, (int, float)) and eta > 0:
        parts.append(f"ETA {format_duration(eta)}")
    return " · ".join(parts)


@dataclass
class RunHistory:
    """Events folded into what a display needs, with resumes applied (no duplicated steps)."""

    logs: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    gpu: deque = field(default_factory=lambda: deque(maxlen=600))
    """The most recent GPU samples (all GPUs interleaved; each has `index`)."""
    probe: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
    resumes: list[dict[str, Any]] = field(default_factory=list)
    prepare: dict[str, Any] | None = None
    """The last `prepare` event while the worker has not started training (None after)."""
    other: list[dict[str, Any]] = field(default_factory=list)
    malformed: int = 0
    """Events skipped because a field had the wrong type (hand-edited or written by another tool)."""

    def add(self, events: list[dict[str, Any]]) -> None:
        """Fold new events in, in file order; a malformed one (a step that is not a number...) is kept aside."""
        for ev in events:
            kind = ev.get("kind") if isinstance(ev, dict) else None
            if kind is None or not _well_formed(ev):
                self.malformed += 1
                continue
            if kind in PREPARE_ENDS:
                self.prepare = None
            if kind == PREPARE_KIND:
                self.prepare = ev
            elif kind == "log":
                self.logs.append(ev)
            elif kind == "eval":
                self.evals.append(ev)
            elif kind == "checkpoint":
                self.checkpoints.append(ev)
            elif kind == "gpu":
                self.gpu.append(ev)
            elif kind == "probe":
                self.probe = ev
            elif kind == "summary":
                self.summary = ev
            elif kind == "resume":
                self.resumes.append(ev)
                self._supersede(int(ev.get("from_step") or 0))
            else:
                self.other.append(ev)

    def _supersede(self, from_step: int) -> None:
        keep = lambda e: (e.get("step") or 0) <= from_step  # noqa: E731
        self.logs = [e for e in self.logs if keep(e)]
        self.evals = [e for e in self.evals if keep(e)]
        self.checkpoints = [e for e in self.checkpoints if keep(e)]
        self.summary = None

    @property
    def losses(self) -> list[tuple[int, float]]:
        return [(e["step"], e["loss"]) for e in self.logs if e.get("loss") is not None and "step" in e]

    @property
    def last_log(self) -> dict[str, Any] | None:
        return self.logs[-1] if self.logs else None

    def latest_gpu(self) -> dict[int, dict[str, Any]]:
        """The newest sample per GPU index."""
        out: dict[int, dict[str, Any]] = {}
        for ev in self.gpu:
            out[int(ev.get("index", 0))] = ev
        return out


class EventTail:
    """Follows one events file: `poll()` reads only what was appended since the last call."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.offset = 0
        self.history = RunHistory()

    def poll(self) -> list[dict[str, Any]]:
        """New complete events (also folded into `history`)."""
        events, new_offset = read_events(self.path, self.offset)
        if new_offset < self.offset:  # the file was replaced: start over
            self.history = RunHistory()
        self.offset = new_offset
        self.history.add(events)
        return events

    def read_all(self) -> RunHistory:
        """Poll until the end of the file; returns the history."""
        while True:
            before = self.offset
            self.poll()
            if self.offset == before:
                return self.history


def load_history(path: str | Path) -> RunHistory:
    """Every complete event of a file, folded (resumes applied)."""
    return EventTail(path).read_all()
