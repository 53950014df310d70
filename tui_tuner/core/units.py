"""How tui-tuner writes sizes, durations and counts for people: one style everywhere."""

from __future__ import annotations

import math


def format_bytes(n: float | None) -> str:
    """The one byte formatter: binary units, as nvidia-smi and nvitop quote memory.

    `577.7 MiB`, `3.87 GiB`, `24.0 GiB`, `512 B`; `-` when unknown. Three significant digits
    below 10 of a unit, so nearby sizes (2.30 vs 2.47 GiB) stay apart.
    """
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            if unit == "B":
                return f"{int(n)} B"
            return f"{n:.2f} {unit}" if abs(n) < 10 else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def format_duration(seconds: float | None) -> str:
    """`1:02:03`, `4:05`, or `-` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    seconds = int(round(max(0.0, seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def format_count(n: float) -> str:
    """A parameter count a person reads at a glance: 1.10B, 350.0M, 12.3K."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}" if unit == "B" else f"{n / size:.1f}{unit}"
    return f"{int(n)}"
