"""What the Train and Runs screens show of a run, folded from its events as they arrive.

`RunView.poll()` reads only the bytes appended to `events.jsonl` since the last call
(`tui_tuner.rundir.events.read_events`), folds them into fixed-size series, and returns a
`TrainSnapshot`: plain, immutable data a screen can draw in one go. Series are kept
decimated (`DecimatedSeries`) so a run of 100,000 steps costs the same to draw as one of
100 steps. No Textual here: a thread worker calls `poll()`, the screen draws the result.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from tui_tuner.rundir.events import PREPARE_ENDS, PREPARE_KIND, prepare_text, read_events
from tui_tuner.rundir.objective_curves import tracked
from tui_tuner.rundir.runs import RunDir
from tui_tuner.tui.widgets.meters import GpuReading

SERIES_CAPACITY = 512
"""Points kept per series; two chart columns' worth for a 256-column-wide chart."""


class DecimatedSeries:
    """An (x, y) series that never holds more than 2 x `capacity` points.

    When full, neighbouring points are averaged in pairs and each later point averages
    twice as many raw points, so the series always spans the whole history at an even
    resolution. Appending is amortised O(1).
    """

    def __init__(self, capacity: int = SERIES_CAPACITY):
        self.capacity = capacity
        self.points: list[tuple[float, float]] = []
        self.stride = 1
        self._pending: list[tuple[float, float]] = []
        self.count = 0
        self.last: tuple[float, float] | None = None

    def append(self, x: float, y: float) -> None:
        if y is None or not math.isfinite(y):
            return
        self.count += 1
        self.last = (x, y)
        self._pending.append((x, y))
        if len(self._pending) >= self.stride:
            self.points.append(_mean(self._pending))
            self._pending = []
            if len(self.points) >= 2 * self.capacity:
                self.points = [_mean(self.points[i:i + 2]) for i in range(0, len(self.points), 2)]
                self.stride *= 2

    def view(self) -> list[tuple[float, float]]:
        """The points to draw (the partly filled last group included, so the newest shows)."""
        return self.points + ([_mean(self._pending)] if self._pending else [])

    def drop_after(self, x: float) -> None:
        """Forget points past `x` (a resumed run re-logs those steps)."""
        self.points = [p for p in self.points if p[0] <= x]
        self._pending = [p for p in self._pending if p[0] <= x]
        if self.last and self.last[0] > x:
            self.last = self.points[-1] if self.points else None


def _mean(points: list[tuple[float, float]]) -> tuple[float, float]:
    n = len(points)
    return (sum(p[0] for p in points) / n, sum(p[1] for p in points) / n)


def gpu_reading(event: dict[str, Any]) -> GpuReading:
    """A worker `gpu` event (or a hardware sample dict) as a meter reading."""
    def num(*keys: str) -> float | None:
        for k in keys:
            v = event.get(k)
            if isinstance(v, (int, float)):
                return float(v)
        return None

    return GpuReading(index=int(event.get("index", 0) or 0), name=str(event.get("name") or ""),
                      mem_used=num("mem_used", "memory_used", "mem_used_bytes"),
                      mem_total=num("mem_total", "memory_total", "mem_total_bytes"),
                      util=num("util", "utilization", "util_pct", "util_percent"),
                      temp_c=num("temp", "temp_c", "temperature", "temperature_c"), power_w=num("power", "power_w"))


@dataclass(frozen=True)
class TrainSnapshot:
    """Everything the Train screen draws, as of one poll."""

    run_name: str
    status: Any
    """The run's `RunStatus` (state, step, max_steps, backend, error, hint, ...)."""
    loss: list[tuple[float, float]]
    eval_loss: list[tuple[float, float]]
    learning_rate: list[tuple[float, float]]
    grad_norm: list[tuple[float, float]]
    last_log: dict[str, Any]
    gpus: list[GpuReading]
    log_tail: list[str]
    checkpoints: int
    new_events: int
    prepare: str | None = None
    """What the worker is doing before its first step (tokenizing N rows, loading the model), as text."""
    samples: list[dict[str, Any]] = field(default_factory=list)
    """The `samples` events (answers to the sample prompts by step), oldest first."""
    taken_at: float = field(default_factory=time.time)
    objective: str = "sft"
    metrics: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    """The objective's own curves by event key (see `tui_tuner.rundir.objective_curves`)."""
    completions: list[dict[str, Any]] = field(default_factory=list)
    """GRPO: the latest sampled completions with each reward function's score."""
    completions_step: int | None = None
    stalled: str | None = None
    """Why the run looks stalled (no step for a while, the worker's process state), or None."""
    warnings: list[str] = field(default_factory=list)
    """The worker's latest warnings (another process grabbing memory on the run's GPU), newest last."""

    @property
    def elapsed_s(self) -> float | None:
        return self.status.duration_s


MAX_SAMPLE_STEPS = 50
"""Sample rounds kept in memory (the panel shows the last few that fit its width)."""


class RunView:
    """Incremental reader of one run; call `poll()` from one thread only."""

    def __init__(self, run: RunDir, log_lines: int = 12):
        self.run = run
        self.log_lines = log_lines
        self.offset = 0
        self.objective: str | None = None
        self._reset()
        self._log_size = -1
        self._log_tail: list[str] = []

    def _reset(self) -> None:
        self.loss = DecimatedSeries()
        self.eval_loss = DecimatedSeries()
        self.learning_rate = DecimatedSeries()
        self.grad_norm = DecimatedSeries()
        self.last_log: dict[str, Any] = {}
        self.gpus: dict[int, dict[str, Any]] = {}
        self.checkpoints = 0
        self.prepare: dict[str, Any] | None = None
        self.metrics: dict[str, DecimatedSeries] = {}
        self.completions: list[dict[str, Any]] = []
        self.completions_step: int | None = None
        self.warnings: list[str] = []
        self.samples: list[dict[str, Any]] = []

    def fold(self, events: list[dict[str, Any]]) -> None:
        """Fold a batch of events in, in file order."""
        for ev in events:
            kind = ev.get("kind")
            step = ev.get("step")
            if kind in PREPARE_ENDS:
                self.prepare = None
            if kind == PREPARE_KIND:
                self.prepare = ev
            elif kind == "log" and isinstance(step, (int, float)):
                self.last_log = ev
                for series, keys in ((self.loss, ("loss",)), (self.learning_rate, ("learning_rate", "lr")),
                                     (self.grad_norm, ("grad_norm",))):
                    value = next((ev[k] for k in keys if isinstance(ev.get(k), (int, float))), None)
                    if value is not None:
                        series.append(step, float(value))
                for key, value in ev.items():  # DPO/KTO/GRPO/reward-model metrics
                    if isinstance(value, (int, float)) and tracked(key):
                        self.metrics.setdefault(key, DecimatedSeries()).append(step, float(value))
            elif kind == "completions":
                self.completions = list(ev.get("samples") or [])
                self.completions_step = ev.get("step")
            elif kind == "eval" and isinstance(step, (int, float)):
                value = ev.get("eval_loss", ev.get("loss"))
                if isinstance(value, (int, float)):
                    self.eval_loss.append(step, float(value))
            elif kind == "checkpoint":
                self.checkpoints += 1
            elif kind == "samples" and isinstance(step, (int, float)) and isinstance(ev.get("answers"), list):
                self.samples = [e for e in self.samples if e["step"] != step][-(MAX_SAMPLE_STEPS - 1):] + [ev]
            elif kind == "gpu":
                self.gpus[int(ev.get("index", 0) or 0)] = ev
            elif kind == "warning" and ev.get("message"):
                self.warnings = [*self.warnings[-2:], str(ev["message"])]
            elif kind == "resume":
                from_step = float(ev.get("from_step") or 0)
                for series in (self.loss, self.eval_loss, self.learning_rate, self.grad_norm,
                               *self.metrics.values()):
                    series.drop_after(from_step)
                self.samples = [e for e in self.samples if e["step"] <= from_step]

    def read_new(self) -> int:
        """Read and fold what was appended since the last call; returns how many events."""
        total = 0
        while True:
            events, new_offset = read_events(self.run.events_path, self.offset)
            if new_offset < self.offset:  # the file was replaced: start over
                self._reset()
            caught_up = new_offset == self.offset
            self.offset = new_offset
            self.fold(events)
            total += len(events)
            if caught_up or not events:
                return total

    def _tail_log(self) -> list[str]:
        try:
            size = self.run.log_path.stat().st_size
        except OSError:
            return self._log_tail
        if size != self._log_size:  # re-read only when the worker wrote something
            self._log_size = size
            self._log_tail = self.run.log_tail(self.log_lines)
        return self._log_tail

    def poll(self) -> TrainSnapshot:
        """Read new events, the status and the log tail; return what to draw."""
        from tui_tuner.rundir.runs import stall_note

        new = self.read_new()
        if self.objective is None:
            try:
                self.objective = self.run.config().objective
            except Exception:  # noqa: BLE001 - an unreadable config: show what SFT shows
                self.objective = "sft"
        status = self.run.status()
        return TrainSnapshot(
            run_name=self.run.name, status=status, stalled=stall_note(self.run, status),
            loss=self.loss.view(), eval_loss=self.eval_loss.view(),
            learning_rate=self.learning_rate.view(), grad_norm=self.grad_norm.view(),
            last_log=dict(self.last_log), gpus=[gpu_reading(e) for _, e in sorted(self.gpus.items())],
            log_tail=list(self._tail_log()), checkpoints=self.checkpoints, new_events=new,
            objective=self.objective, metrics={k: v.view() for k, v in self.metrics.items()},
            completions=list(self.completions), completions_step=self.completions_step,
            warnings=list(self.warnings), prepare=prepare_text(self.prepare) if self.prepare else None,
            samples=list(self.samples))
