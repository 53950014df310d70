"""The `TrainerCallback` that connects a trainer to its run directory.

It appends training logs, evals and checkpoints to `events.jsonl`, keeps `status.json`
current (throttled: at most one write a second between logs) and polls `control.json`
for a stop request, which it turns into "save a checkpoint now, then stop".

Fault injection for reliability tests: `TUI_TUNER_FAULT=oom@N` raises an out-of-memory
error at step N, `exit@N` exits the worker abruptly, `sigkill@N` kills it with SIGKILL.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from tui_tuner.rundir.events import EventWriter
from tui_tuner.rundir.files import CONTROL_FILE
from tui_tuner.rundir.status import StatusKeeper

CONTROL_POLL_S = 0.25


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN; a NaN loss is shown as missing and flagged by `nonfinite`
    return value


def parse_fault(spec: str | None) -> tuple[str, int] | None:
    """`oom@3` -> ("oom", 3); None when unset or malformed."""
    if not spec or "@" not in spec:
        return None
    kind, _, step = spec.partition("@")
    try:
        return kind.strip(), int(step)
    except ValueError:
        return None


class RunTracker:
    """Writes events and status for one run, and honours stop requests: the callback's whole behaviour.

    `RunCallback` is this plus transformers' `TrainerCallback` (the no-op events), built on first
    use so importing this module does not import transformers.
    """

    def __init__(self, run_dir: Path, events: EventWriter, status: StatusKeeper,
                 on_train_begin_hook: Callable[..., None] | None = None, requests_since: float | None = None):
        self.run_dir = Path(run_dir)
        self.control_path = self.run_dir / CONTROL_FILE
        self.events = events
        self.status = status
        self.on_train_begin_hook = on_train_begin_hook
        self.stop_requested = False
        # Requests older than this worker's start belong to an earlier attempt; newer ones (even
        # made while the model was loading) count.
        self.requests_since = time.time() if requests_since is None else requests_since
        self._control_mtime: int | None = None
        self._last_control_check = 0.0
        self._session_start: tuple[float, int] | None = None
        self._last_tokens: tuple[float, float] | None = None
        self._fault = parse_fault(os.environ.get("TUI_TUNER_FAULT"))

    # -- helpers

    def _mtime(self) -> float | None:
        try:
            return os.stat(self.control_path).st_mtime_ns
        except FileNotFoundError:
            return None

    def _read_request(self) -> str | None:
        now = time.monotonic()
        if now - self._last_control_check < CONTROL_POLL_S:
            return None
        self._last_control_check = now
        mtime = self._mtime()
        if mtime is None or mtime == self._control_mtime:
            return None
        self._control_mtime = mtime
        try:
            data = json.loads(self.control_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or float(data.get("t") or 0) < self.requests_since:
            return None
        return data.get("request")

    def _eta(self, step: int, max_steps: int) -> float | None:
        if self._session_start is None:
            return None
        t0, s0 = self._session_start
        done = step - s0
        if done <= 0:
            return None
        return round((time.time() - t0) / done * max(0, max_steps - step), 1)

    # -- trainer events

    def on_train_begin(self, args, state, control, **kwargs):
        self._session_start = (time.time(), state.global_step)
        self.status.update(step=state.global_step, max_steps=state.max_steps)
        if self.on_train_begin_hook is not None:
            self.on_train_begin_hook(model=kwargs.get("model"), state=state)
            # The probe took time: measure throughput from here.
            self._session_start = (time.time(), state.global_step)
        self.events.write("train_begin", step=state.global_step, max_steps=state.max_steps)

    def on_step_end(self, args, state, control, **kwargs):
        step = state.global_step
        self.status.update(force=False, step=step, epoch=_finite(state.epoch))
        if self._fault and step >= self._fault[1]:
            self._inject(self._fault[0])
        from tui_tuner.train.distributed import any_rank

        stop = any_rank(self._read_request() in ("stop", "stop_now"))  # every rank stops at the same step
        if stop and not self.stop_requested:
            self.stop_requested = True
            control.should_save = True
            control.should_training_stop = True
            self.events.write("stop_requested", step=step)
            self.status.update(state="stopping", step=step)
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = dict(logs or {})
        step = state.global_step
        now = time.time()
        if "train_runtime" in logs:
            self.events.write("summary", step=step, **{k: _finite(v) for k, v in logs.items()})
            return
        if any(k.startswith("eval_") for k in logs):
            metrics = {k: _finite(v) for k, v in logs.items() if k != "epoch"}
            self.events.write("eval", step=step, epoch=_finite(state.epoch), **metrics)
            self.status.update(force=False, eval_loss=metrics.get("eval_loss"))
            return
        tokens_per_s = None
        if "num_tokens" in logs:
            tokens = float(logs["num_tokens"])
            if self._last_tokens is not None and tokens > self._last_tokens[1] and now > self._last_tokens[0]:
                tokens_per_s = round((tokens - self._last_tokens[1]) / (now - self._last_tokens[0]), 1)
            self._last_tokens = (now, tokens)
        loss = logs.get("loss")
        event = {
            "step": step, "epoch": _finite(state.epoch), "loss": _finite(loss),
            "lr": logs.get("learning_rate"), "grad_norm": _finite(logs.get("grad_norm")),
            "tokens_per_s": tokens_per_s, "eta_s": self._eta(step, state.max_steps),
        }
        for key in ("mean_token_accuracy", "entropy", "num_tokens"):
            if key in logs:
                event[key] = _finite(logs[key])
        if isinstance(loss, float) and not math.isfinite(loss):
            event["nonfinite"] = True
        self.events.write("log", **event)
        self.status.update(force=False, step=step, loss=_finite(loss), epoch=_finite(state.epoch))

    def on_save(self, args, state, control, **kwargs):
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        self.events.write("checkpoint", step=state.global_step, path=str(path))
        self.status.update(last_checkpoint=str(path), step=state.global_step)

    # -- faults

    def _inject(self, kind: str) -> None:
        self._fault = None
        if kind == "oom":
            import torch

            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB "
                                         "(injected by TUI_TUNER_FAULT)")
        if kind == "exit":
            os._exit(3)
        if kind == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)


if TYPE_CHECKING:
    from transformers import TrainerCallback

    class RunCallback(RunTracker, TrainerCallback):
        ...


def __getattr__(name: str) -> Any:
    # `RunCallback` subclasses transformers' TrainerCallback, so it is made when first asked for.
    if name == "RunCallback":
        from transformers import TrainerCallback

        cls = type("RunCallback", (RunTracker, TrainerCallback),
                   {"__module__": __name__, "__doc__": "`RunTracker` as a transformers `TrainerCallback`."})
        globals()["RunCallback"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
