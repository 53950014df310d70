"""The Apple Silicon Mac a run would train on: chip, unified memory, GPU cores and the Metal working-set limit.

On these Macs the CPU and GPU share one pool of memory, but macOS lets the GPU wire only part of
it: by default about two thirds of RAM up to 36 GB and three quarters above, unless
`sysctl iogpu.wired_limit_mb` raises it. That limit, not the RAM total, is what a model plus
its training state must fit in. Readings come from `sysctl` and `ioreg` (the boundary tests mock).
"""

from __future__ import annotations

import importlib
import importlib.util
import platform
import re
import subprocess
from dataclasses import asdict, dataclass
from typing import Any, Callable

MIB = 2**20
GIB = 2**30
SMALL_MAC_BYTES = 36 * GIB
"""Up to this much RAM macOS's default GPU working set is about 2/3 of it; above, about 3/4."""


@dataclass
class MacHardware:
    chip: str
    """e.g. `Apple M2 Pro` (sysctl machdep.cpu.brand_string)."""
    memory_bytes: int
    """Unified memory total (hw.memsize)."""
    memory_free_bytes: int | None
    """Memory available now (psutil), None when unknown."""
    gpu_cores: int | None
    """GPU core count (ioreg's gpu-core-count), None when unknown."""
    metal_limit_bytes: int
    """How much memory the GPU may wire: iogpu.wired_limit_mb when set, else macOS's default share."""
    metal_limit_source: str
    """Where the limit came from, in words."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_sysctl(name: str) -> str | None:
    """`sysctl -n NAME`, or None when it fails (not a Mac, unknown key)."""
    try:
        out = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def run_ioreg() -> str | None:
    """`ioreg -rc AGXAccelerator` (the Apple GPU's registry entry), or None."""
    try:
        out = subprocess.run(["ioreg", "-rc", "AGXAccelerator"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def default_metal_limit(memory_bytes: int) -> int:
    """macOS's default GPU working-set limit for a Mac with this much memory (approximate)."""
    share = 2 / 3 if memory_bytes <= SMALL_MAC_BYTES else 3 / 4
    return int(memory_bytes * share)


def metal_limit(memory_bytes: int, wired_limit_mb: str | None) -> tuple[int, str]:
    """(bytes the GPU may wire, where that comes from): the sysctl override when set (> 0), else the default."""
    try:
        mb = int(wired_limit_mb) if wired_limit_mb is not None else 0
    except ValueError:
        mb = 0
    if mb > 0:
        return min(mb * MIB, memory_bytes), f"iogpu.wired_limit_mb = {mb}"
    share = "2/3" if memory_bytes <= SMALL_MAC_BYTES else "3/4"
    return default_metal_limit(memory_bytes), f"macOS default (about {share} of memory; iogpu.wired_limit_mb unset)"


def probe_mac(sysctl: Callable[[str], str | None] | None = None, ioreg: Callable[[], str | None] | None = None,
              system: Callable[[], str] | None = None, machine: Callable[[], str] | None = None,
              free_bytes: Callable[[], int | None] | None = None) -> MacHardware | None:
    """This Apple Silicon Mac's readings, or None on anything else (Linux, Windows, an Intel Mac).

    The readers default to this module's `run_sysctl`, `run_ioreg` and `platform`'s, looked up at
    call time so that tests replace them where they are defined."""
    sysctl = sysctl or run_sysctl
    ioreg = ioreg or run_ioreg
    if (system or platform.system)() != "Darwin" or (machine or platform.machine)() != "arm64":
        return None
    try:
        memory = int(sysctl("hw.memsize") or 0)
    except ValueError:
        memory = 0
    if memory <= 0:
        return None
    chip = sysctl("machdep.cpu.brand_string") or "Apple Silicon"
    cores = None
    match = re.search(r'"gpu-core-count"\s*=\s*(\d+)', ioreg() or "")
    if match:
        cores = int(match.group(1))
    limit, source = metal_limit(memory, sysctl("iogpu.wired_limit_mb"))
    if free_bytes is None:
        free_bytes = _available_memory
    return MacHardware(chip, memory, free_bytes(), cores, limit, source)


def _available_memory() -> int | None:
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def fit_against_metal(need_bytes: int, mac: MacHardware) -> tuple[bool, str]:
    """(fits, one line naming the Metal limit) for a training run needing `need_bytes` of GPU memory."""
    from tui_tuner.core.units import format_bytes

    fits = need_bytes <= mac.metal_limit_bytes
    line = (f"needs {format_bytes(need_bytes)} of the {format_bytes(mac.metal_limit_bytes)} the GPU may use "
            f"(Metal working-set limit, {mac.metal_limit_source}) on this {format_bytes(mac.memory_bytes)} {mac.chip}")
    if not fits:
        line += ("; it does not fit: use a smaller model or method: qlora, shorter sequences, or raise the limit "
                 "with `sudo sysctl iogpu.wired_limit_mb=N` (leave several GB for macOS)")
    return fits, line


def metal_note(mac: MacHardware) -> str:
    """What the Metal working-set limit is on this Mac and how to raise it, in two sentences."""
    from tui_tuner.core.units import format_bytes

    total = format_bytes(mac.memory_bytes)
    suggested = max(mac.metal_limit_bytes, mac.memory_bytes - 4 * GIB) // MIB
    return (f"The GPU may use at most {format_bytes(mac.metal_limit_bytes)} of this Mac's {total} unified memory "
            f"(the Metal working-set limit, {mac.metal_limit_source}): a training run must fit under it, whatever "
            f"the RAM total. Raise it with `sudo sysctl iogpu.wired_limit_mb={suggested}` (until the next reboot; "
            "leave macOS several GB).")


def mlx_advice(method: str | None, need_bytes: int, mac: MacHardware, lora_bytes: int | None = None) -> str:
    """LoRA or QLoRA on MLX for this Mac, and what free memory says now, in a sentence or two."""
    from tui_tuner.core.units import format_bytes

    if method == "lora":
        text = ("On MLX, LoRA trains over the 16-bit model: no quantization error, and it fits here; "
                "choose QLoRA only to free memory for longer sequences or a bigger batch.")
    elif method == "qlora":
        text = ("On MLX, QLoRA quantizes the base to MLX's 4-bit affine format (a 16-bit scale and bias per 64 "
                "weights, about 4.5 bits per weight; not bitsandbytes' NF4)"
                + (f": LoRA on the 16-bit model would need {format_bytes(lora_bytes)}." if lora_bytes else "."))
    else:
        text = "Neither LoRA nor QLoRA fits under the Metal limit at these settings."
    free = mac.memory_free_bytes
    if free is not None and need_bytes > free:
        text += (f" Only {format_bytes(free)} of memory is free now: close other apps, or macOS compresses and "
                 "swaps memory and training slows sharply.")
    return text


MLX_INSTALL = "pip install -e '.[mlx]' installs it (mlx and mlx-lm)"


def mlx_importable() -> tuple[bool, str]:
    """(True, "") when `mlx.core` and `mlx_lm` import here, else (False, why)."""
    for name in ("mlx", "mlx_lm"):
        if importlib.util.find_spec(name) is None:
            return False, f"{name.replace('_', '-')} is not installed ({MLX_INSTALL})"
    try:
        importlib.import_module("mlx.core")
        importlib.import_module("mlx_lm")
    except Exception as exc:  # a wheel for another platform, or a missing shared library
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return False, f"mlx is installed but did not import: {first}"
    return True, ""
