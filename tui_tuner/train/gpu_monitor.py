"""Background thread in the worker that appends GPU samples (NVML for NVIDIA, AMD SMI for AMD) to `events.jsonl`.

One `{"kind": "gpu", "index": i, "name": ..., "util": ..., "mem_used": ..., "mem_total": ...,
"temp_c": ..., "power_w": ..., "power_limit_w": ...}` event per GPU every `interval_s`. Silent (no thread) when
there is no GPU or the hardware module cannot read one.
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


GRAB_BYTES = 512 * 2**20
"""Memory another process must take on the run's GPU, after the run started, to be reported."""


class IntruderWatch:
    """Notices other processes taking memory on the run's GPUs after it started.

    Processes already there at the start were counted by the preflight; a new one holding
    `GRAB_BYTES` or more, or an old one growing by that much, is reported once (again only
    after it grows by another `GRAB_BYTES`).
    """

    def __init__(self, own_pids: set[int], grab_bytes: int = GRAB_BYTES):
        self.own_pids = own_pids
        self.grab_bytes = grab_bytes
        self.seen: dict[tuple[int, int], int] | None = None

    def check(self, processes: dict[int, list[Any]]) -> list[dict[str, Any]]:
        """`warning` event fields for what changed since the last call (nothing on the first call)."""
        now = {(gpu, p.pid): int(p.used_bytes or 0) for gpu, procs in processes.items() for p in procs
               if p.pid not in self.own_pids}
        by_key = {(gpu, p.pid): p for gpu, procs in processes.items() for p in procs}
        if self.seen is None:
            self.seen = now
            return []
        out = []
        for key, used in now.items():
            before = self.seen.get(key, 0)
            if used - before < self.grab_bytes:
                continue
            self.seen[key] = used
            gpu, pid = key
            p = by_key[key]
            who = ("a process outside this container" if getattr(p, "elsewhere", False)
                   else f"{p.name}{' of ' + p.user if getattr(p, 'user', None) else ''}")
            from tui_tuner.core.units import format_bytes

            out.append({"gpu": gpu, "pid": pid, "used_bytes": used, "grabbed_bytes": used - before,
                        "message": f"pid {pid} ({who}) took {format_bytes(used - before)} on GPU {gpu} during this "
                                   f"run (now holds {format_bytes(used)}): this run may run out of memory"})
        return out


def own_pids() -> set[int]:
    """This worker and its siblings under the same launcher (torchrun's other ranks)."""
    import os

    pids = {os.getpid()}
    try:
        import psutil

        parent = psutil.Process(os.getppid())
        pids |= {parent.pid, *(c.pid for c in parent.children(recursive=True))}
    except Exception:
        pass
    return pids


def run_gpu_indices() -> list[int] | None:
    """The NVML indices of the GPUs this process may use (CUDA_VISIBLE_DEVICES applied; a MIG
    slice counts as its GPU), or None when NVML cannot say."""
    import os

    try:
        from tui_tuner.fit.devices import visible_gpus
        from tui_tuner.fit.hardware import list_gpus

        gpus = visible_gpus(list_gpus(), os.environ.get("CUDA_VISIBLE_DEVICES"))
    except Exception:
        return None
    return sorted({g.parent_index if g.parent_index is not None else g.index for g in gpus}) or None


class GpuMonitor(threading.Thread):
    """Samples every GPU each `interval_s` until `stop()`; warns when another process grabs
    memory on the run's GPUs (`{"kind": "warning", "message": ...}` events)."""

    def __init__(self, events: EventWriter, interval_s: float = 2.0, watch: IntruderWatch | None = None,
                 watch_gpus: list[int] | None = None):
        super().__init__(daemon=True, name="gpu-monitor")
        self.events = events
        self.interval_s = interval_s
        self._stop_event = threading.Event()
        self._sample = _sampler()
        self.watch = watch
        self.watch_gpus = watch_gpus

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
            if self.watch is not None:
                self._check_intruders()
            self._stop_event.wait(self.interval_s)

    def _check_intruders(self) -> None:
        try:
            from tui_tuner.fit.hardware import sample_processes

            for warning in self.watch.check(sample_processes(self.watch_gpus)):
                self.events.write("warning", **warning)
        except Exception:  # a process list that cannot be read must not end the sampling
            pass

    def stop(self) -> None:
        self._stop_event.set()
