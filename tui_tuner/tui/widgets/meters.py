"""GPU meters: memory, utilisation, temperature and power as compact text bars.

Used by the Hardware screen (live NVML samples) and the Train screen (the worker's
`gpu` events); both hand over `GpuReading`s, so the widget never knows where they came from.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widgets import Static

from tui_tuner.core.units import format_bytes

_EIGHTHS = " ▏▎▍▌▋▊▉█"


@dataclass(frozen=True)
class GpuReading:
    """One GPU at one moment; any measurement may be unknown (None)."""

    index: int
    name: str = ""
    mem_used: float | None = None
    """Bytes."""
    mem_total: float | None = None
    util: float | None = None
    """Percent, 0-100."""
    temp_c: float | None = None
    power_w: float | None = None


def bar(fraction: float, width: int) -> str:
    """A left-to-right bar `width` cells wide filled to `fraction` (eighth-cell resolution)."""
    fraction = min(1.0, max(0.0, fraction))
    eighths = int(round(fraction * width * 8))
    full, part = divmod(eighths, 8)
    text = "█" * full + (_EIGHTHS[part] if part and full < width else "")
    return text.ljust(width, "·")


def level_style(fraction: float) -> str:
    """Green, then yellow past 75%, red past 90%: the same at a glance in any theme."""
    return "red" if fraction >= 0.9 else "yellow" if fraction >= 0.75 else "green"


def reading_text(r: GpuReading, bar_width: int = 10) -> Text:
    """Three lines for one GPU: name with temperature and power, memory bar, utilisation bar."""
    out = Text()
    out.append(f"GPU {r.index}", style="bold")
    if r.name:
        out.append(f" {r.name}")
    if r.temp_c is not None:
        out.append(f"  {r.temp_c:.0f}°C")
    if r.power_w is not None:
        out.append(f"  {r.power_w:.0f} W")
    out.append("\n")
    if r.mem_used is not None and r.mem_total:
        frac = r.mem_used / r.mem_total
        out.append("mem ")
        out.append(bar(frac, bar_width), style=level_style(frac))
        out.append(f" {format_bytes(r.mem_used)} of {format_bytes(r.mem_total)}")
    elif r.mem_used is not None:
        out.append(f"mem {format_bytes(r.mem_used)}")
    else:
        out.append("mem ?")
    out.append("\n")
    if r.util is not None:
        out.append("gpu ")
        out.append(bar(r.util / 100, bar_width), style=level_style(r.util / 100))
        out.append(f" {r.util:3.0f}% busy")
    else:
        out.append("gpu ?")
    return out


class GpuMeters(Static):
    """All GPUs' meters, or a one-line reason why there are none."""

    def __init__(self, *, empty_text: str = "no GPU readings", id: str | None = None, classes: str | None = None) -> None:
        super().__init__(empty_text, id=id, classes=classes)
        self.empty_text = empty_text
        self._readings: tuple[GpuReading, ...] = ()

    def show(self, readings: list[GpuReading], empty_text: str | None = None) -> None:
        """Replace the readings (skips the repaint when nothing changed)."""
        if empty_text is not None:
            self.empty_text = empty_text
        new = tuple(readings)
        if new == self._readings and new:
            return
        self._readings = new
        if not new:
            self.update(Text(self.empty_text, style="dim"))
            return
        text = Text()
        for i, r in enumerate(new):
            if i:
                text.append("\n")
            text.append_text(reading_text(r))
        self.update(text)
