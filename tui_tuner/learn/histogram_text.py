"""A histogram as lines of text (block characters), with the NF4 and FP4 levels marked below it.

Shared by `tui-tuner learn quant` and the TUI's Learn screen, so both show the same picture.
"""

from __future__ import annotations

from dataclasses import dataclass

_EIGHTHS = " ▁▂▃▄▅▆▇█"


@dataclass
class HistogramText:
    bars: list[str]          # top row first, one character per bin
    nf4_marks: str           # "▲" under each bin holding an NF4 level
    fp4_marks: str
    axis: str                # min, 0 and max under the bars


def level_columns(levels: list[float], lo: float, hi: float, bins: int) -> list[int]:
    """The bin index each level falls in (levels on the outer edges go to the outer bins)."""
    cols = []
    span = (hi - lo) or 1.0
    for v in levels:
        col = int((v - lo) / span * bins)
        cols.append(min(max(col, 0), bins - 1))
    return cols


def render_histogram(edges: list[float], counts: list[int], nf4_levels: list[float], fp4_levels: list[float],
                     height: int = 8, fmt: str = "{:.3g}") -> HistogramText:
    """Vertical bars `height` rows tall, one column per bin; level markers and an axis under them."""
    bins = len(counts)
    top = max(counts) if counts and max(counts) > 0 else 1
    eighths = [round(c / top * height * 8) for c in counts]
    bars = []
    for row in range(height):
        floor = (height - 1 - row) * 8
        line = "".join(_EIGHTHS[min(8, max(0, e - floor))] for e in eighths)
        bars.append(line)
    lo, hi = edges[0], edges[-1]

    def marks(levels: list[float]) -> str:
        cells = [" "] * bins
        for col in level_columns(levels, lo, hi, bins):
            cells[col] = "▲"
        return "".join(cells)

    left, right = fmt.format(lo), fmt.format(hi)
    middle = "0"
    mid_col = level_columns([0.0], lo, hi, bins)[0]
    axis = [" "] * bins
    for i, ch in enumerate(left):
        if i < bins:
            axis[i] = ch
    for i, ch in enumerate(right):
        pos = bins - len(right) + i
        if 0 <= pos < bins:
            axis[pos] = ch
    if lo < 0 < hi and len(left) < mid_col < bins - len(right) - 1:
        axis[mid_col] = middle
    return HistogramText(bars, marks(nf4_levels), marks(fp4_levels), "".join(axis))


def histogram_lines(hist, height: int = 8, label_width: int = 5) -> list[str]:
    """Plain lines for a `quant_lab.Histogram`: bars, then 'NF4' and 'FP4' marker rows, then the axis."""
    fmt = "{:.2g}" if hist.scale == "block-absmax" else "{:.3g}"
    text = render_histogram(hist.edges, hist.counts, hist.nf4_levels, hist.fp4_levels, height, fmt)
    pad = " " * label_width
    lines = [pad + row for row in text.bars]
    lines.append("NF4".ljust(label_width) + text.nf4_marks)
    lines.append("FP4".ljust(label_width) + text.fp4_marks)
    lines.append(pad + text.axis)
    return lines
