"""The Apple Silicon Mac a run would train on: chip, unified memory, GPU cores and the Metal working-set limit.

On these Macs the CPU and GPU share one pool of memory, but macOS lets the GPU wire only part of
it: by default about two thirds of RAM up to 36 GB and three quarters above, unless
`sysctl iogpu.wired_limit_mb` raises it. That limit, not the RAM total, is what a model plus
its training state must fit in. Readings come from `sysctl` and `ioreg` (the boundary tests mock).
"""

from __future__ import annotations

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


def probe_mac(sysctl: Callable[[str], str | None] = run_sysctl, ioreg: Callable[[], str | None] = run_ioreg,
              system: Callable[[], str] = platform.system, machine: Callable[[], str] = platform.machine,
              free_bytes: Callable[[], int | None] | None = None) -> MacHardware | None:
    """This Apple Silicon Mac's readings, or None on anything else (Linux, Windows, an Intel Mac)."""
    if system() != "Darwin" or machine() != "arm64":
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
