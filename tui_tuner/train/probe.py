"""The preflight probe: one forward + backward on the longest batch before the real run.

Late out-of-memory after an hour is the most common way a fine-tune is lost. The probe
runs the real model, method and settings (gradient checkpointing, 4-bit, LoRA) on the
`batch_size` longest sequences the trainer will see (after truncation and packing),
measures the peak memory and adds the optimizer state that the first optimizer step will
allocate. If that does not fit the device, the run stops at once with the OOM hint.

GPU: `torch.cuda.max_memory_allocated` / `max_memory_reserved` after a reset, against the
memory free on the device (`mem_get_info`) plus what this process already holds, never the
card's total: on a shared server other processes' memory is not available.
CPU: the process's peak resident set (VmHWM, reset through /proc/self/clear_refs), or a
sampling thread where that is not available.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from tui_tuner.rundir.status import ProbeResult

HEADROOM = 0.95
"""Share of device memory the projected peak may use (allocator fragmentation, other processes)."""


class ProbeDoesNotFit(RuntimeError):
    """The probe's projected peak exceeds the memory available; `.result` has the figures."""

    def __init__(self, message: str, result: ProbeResult):
        super().__init__(message)
        self.result = result


def optimizer_state_bytes(model: Any, optimizer_name: str) -> int:
    """Bytes the optimizer will allocate for its state on the first step (not measured by fwd+bwd)."""
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    per_param = {"adamw_torch": 8, "adamw_torch_fused": 8, "paged_adamw_32bit": 8, "adamw_8bit": 2,
                 "paged_adamw_8bit": 2, "adafactor": 1, "sgd": 0}.get(optimizer_name, 8)
    return n * per_param


def longest_batch(trainer: Any, batch_size: int) -> dict[str, Any]:
    """The collated batch of the `batch_size` longest examples of the trainer's prepared dataset."""
    ds = trainer.train_dataset
    lengths = [len(ids) for ids in ds["input_ids"]]
    order = sorted(range(len(lengths)), key=lengths.__getitem__, reverse=True)[:batch_size]
    batch = trainer.data_collator([ds[i] for i in order])
    return trainer._prepare_inputs(batch)


def _rss_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class _RssSampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = _rss_bytes()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(0.005):
            self.peak = max(self.peak, _rss_bytes())

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return max(self.peak, _rss_bytes())


def gpu_available_bytes(free_now: int, held_by_this_process: int) -> int:
    """Device memory this process can use at its peak: free now plus its own reserved memory.

    Not the card's total: on a shared GPU other processes' memory is not ours to use.
    """
    return int(free_now) + int(held_by_this_process)


def run_probe(trainer: Any, model: Any, *, batch_size: int, optimizer_name: str,
              estimate_bytes: int | None = None) -> ProbeResult:
    """Measure one forward + backward on the longest batch; raises `ProbeDoesNotFit` when it will not fit."""
    import torch

    batch = longest_batch(trainer, batch_size)
    seq_len = int(batch["input_ids"].shape[-1])
    device = "cuda" if next(model.parameters()).is_cuda else "cpu"
    was_training = model.training
    model.train()
    sampler = None
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        # What this step can grow into: the memory free on the device now (other processes' use
        # excluded) plus what this process already holds (the weights, counted in the peak).
        available = gpu_available_bytes(torch.cuda.mem_get_info()[0], torch.cuda.memory_reserved())
    elif not _reset_peak_rss():
        sampler = _RssSampler()
        sampler.start()
    try:
        out = model(**batch)
        out.loss.backward()
        if device == "cuda":
            torch.cuda.synchronize()
            peak = max(torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved())
            capacity = available
        else:
            peak = sampler.stop() if sampler else (_peak_rss_bytes() or _rss_bytes())
            import psutil

            # Capacity on CPU: what this process holds now plus what the system can still give it.
            capacity = _rss_bytes() + psutil.virtual_memory().available
    finally:
        if sampler is not None and sampler.is_alive():
            sampler.stop()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
        if device == "cuda":
            torch.cuda.empty_cache()
    opt_bytes = optimizer_state_bytes(model, optimizer_name)
    projected = peak + opt_bytes
    result = ProbeResult(device=device, measured_peak_bytes=int(peak), estimate_bytes=estimate_bytes,
                         optimizer_state_bytes=int(opt_bytes), projected_peak_bytes=int(projected),
                         capacity_bytes=int(capacity), fits=projected <= HEADROOM * capacity,
                         seq_len=seq_len, batch_size=int(batch["input_ids"].shape[0]))
    if not result.fits:
        from tui_tuner.core.units import format_bytes

        raise ProbeDoesNotFit(
            f"the preflight probe measured {format_bytes(peak)} for one step on the longest batch "
            f"({result.batch_size} x {seq_len} tokens), {format_bytes(projected)} with optimizer state, "
            f"but {device} has {format_bytes(capacity)}", result)
    return result


def estimate_bytes_for(cfg: Any, device: str = "cuda", backend: str = "transformers") -> int | None:
    """The fit estimator's total for this config, when that module is available."""
    try:
        from tui_tuner.fit.estimate import estimate_for_config
    except ImportError:
        return None
    try:
        try:
            est = estimate_for_config(cfg, backend=backend, on_gpu=device == "cuda")
        except TypeError:  # an estimator without those keywords
            est = estimate_for_config(cfg)
    except Exception:  # the estimate is context for the measurement; never block training on it
        return None
    value = getattr(est, "total_bytes", est)
    return int(value) if isinstance(value, (int, float)) else None
