"""Background thread in the worker that appends NVML GPU samples to `events.jsonl`.

One `{"kind": "gpu", "index": i, "name": ..., "util": ..., "mem_used": ..., "mem_total": ...,
"temp_c": ..., "power_w": ..., "power_limit_w": ...}` event per GPU every `interval_s`. Silent (no thread) when
there is no NVIDIA GPU or the hardware module cannot read one.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

from tui_tuner.rundir.events import EventWriter

def _sampler():
    try:
        from tui_tuner.fit.hardware import sample_gpus
    except ImportError:
        return None
    return sample_gpus


def sample_to_event(sample: Any) -> dict[str, Any]:
    """`tui_tuner.fit.hardware.GpuSample` fields, as they are (the documented `gpu` event keys)."""
    if hasattr(sample, "as_dict"):
        data = sample.as_dict()
    elif dataclasses.is_dataclass(sample):
        data = dataclasses.asdict(sample)
    elif isinstance(sample, dict):
        data = dict(sample)
    else:
        data = {k: v for k, v in vars(sample).items() if not k.startswith("_")}
    return {k: v for k, v in data.items() if isinstance(v, (int, float, str, bool, type(None)))}


class GpuMonitor(threading.Thread):
    """Samples every GPU each `interval_s` until `stop()`."""

    def __init__(self, events: EventWriter, interval_s: float = 2.0):
        super().__init__(daemon=True, name="gpu-monitor")
        self.events = events
        self.interval_s = interval_s
        self._stop_event = threading.Event()
        self._sample = _sampler()

    def available(self) -> bool:
        if self._sample is None:
            return False
        try:
            return bool(self._sample())
        except Exception:
            return False

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                samples = self._sample() or []
            except Exception:
                return  # NVML went away (driver reset): stop sampling rather than flood the log
            for i, sample in enumerate(samples):
                event = sample_to_event(sample)
                event.setdefault("index", i)
                self.events.write("gpu", **event)
            self._stop_event.wait(self.interval_s)

    def stop(self) -> None:
        self._stop_event.set()
