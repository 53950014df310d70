"""A braille line chart: several (x, y) series on shared axes, steps on the x axis.

Each character cell holds 2x4 braille dots, so an 60-column plot has 120 points of
horizontal resolution. Series are binned to that resolution before drawing, and the
canvas is rebuilt only when the data or the widget's size changes, so a refresh costs
the same for a run of 100 steps as for one of 100,000 (callers pass already-decimated
series; see `tui_tuner.tui.run_view.DecimatedSeries`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget

_DOT_BITS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))  # [row][col] within a cell
SERIES_COLOURS = ("primary", "warning", "success", "error", "accent", "secondary")
"""Theme colour names given to series in order; every theme defines them, light or dark."""


@dataclass(frozen=True)
class ChartSeries:
    """One line: a label for the legend and its points in x order."""

    label: str
    points: Sequence[tuple[float, float]]
    colour: str | None = None
    """A theme colour name (`primary`, `warning`, ...); default by position."""


def format_tick(value: float) -> str:
    """A short axis label: 3 significant digits, k/M for large numbers."""
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else str(value)
    a = abs(value)
    if a >= 1e6:
        return f"{value / 1e6:.3g}M"
    if a >= 1e4:
        return f"{value / 1e3:.3g}k"
    if a >= 100:
        return f"{value:.0f}"
    if a >= 0.01:
        return f"{value:.3g}"
    return f"{value:.1e}"


def bin_points(points: Sequence[tuple[float, float]], x0: float, x1: float, columns: int) -> list[tuple[float, float] | None]:
    """Min and max y of the points falling in each of `columns` equal x bins (None when empty)."""
    bins: list[tuple[float, float] | None] = [None] * columns
    span = (x1 - x0) or 1.0
    for x, y in points:
        if not math.isfinite(y):
            continue
        col = min(columns - 1, max(0, int((x - x0) / span * (columns - 1) + 0.5)))
        cur = bins[col]
        bins[col] = (y, y) if cur is None else (min(cur[0], y), max(cur[1], y))
    return bins


class LineChart(Widget):
    """Braille line chart with a y axis on the left, x labels below and a legend on top."""

    DEFAULT_CSS = """
    LineChart { height: 1fr; min-height: 6; }
    """

    def __init__(self, *, empty_text: str = "no data yet", x_label: str = "step",
                 name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._series: list[ChartSeries] = []
        self._rows: list[Strip] | None = None
        self._rows_key: tuple | None = None
        self.empty_text = empty_text
        self.x_label = x_label

    def set_series(self, series: Sequence[ChartSeries]) -> None:
        """Replace the plotted series (one repaint, however many points changed)."""
        self._series = [s for s in series]
        self._rows = None
        self.refresh()

    @property
    def series(self) -> list[ChartSeries]:
        return self._series

    def _style(self, colour_name: str) -> Style:
        theme = self.app.current_theme
        value = getattr(theme, colour_name, None) or theme.primary
        return Style(color=value)

    def render_line(self, y: int) -> Strip:
        width, height = self.size.width, self.size.height
        key = (width, height, self.app.current_theme.name)
        if self._rows is None or self._rows_key != key:
            # Segments carry only colours; the widget's own style supplies the background,
            # so the chart sits on the theme's background, light or dark.
            base = self.rich_style
            self._rows = [row.apply_style(base) for row in self._draw(width, height)]
            self._rows_key = key
        if y < len(self._rows):
            return self._rows[y]
        return Strip.blank(width, self.rich_style)

    def _draw(self, width: int, height: int) -> list[Strip]:
        dim = Style(dim=True)
        series = [s for s in self._series if s.points]
        if not series or width < 12 or height < 4:
            text = self.empty_text[:width]
            rows = [Strip.blank(width) for _ in range(height)]
            if height:
                rows[height // 2] = Strip([Segment(text.center(width), dim)], width)
            return rows
        xs = [p[0] for s in series for p in s.points]
        ys = [p[1] for s in series for p in s.points if math.isfinite(p[1])]
        x0, x1 = min(xs), max(xs)
        y0, y1 = (min(ys), max(ys)) if ys else (0.0, 1.0)
        if y1 - y0 < 1e-12:
            y0, y1 = y0 - 0.5, y1 + 0.5
        labels = [format_tick(v) for v in (y1, (y0 + y1) / 2, y0)]
        axis_w = max(len(t) for t in labels) + 1
        legend_rows = 1
        plot_h = height - legend_rows - 2  # legend, x axis line, x labels
        plot_w = width - axis_w
        if plot_h < 1 or plot_w < 4:
            return [Strip.blank(width) for _ in range(height)]
        dots_w, dots_h = plot_w * 2, plot_h * 4
        cells = [[0] * plot_w for _ in range(plot_h)]
        owner = [[-1] * plot_w for _ in range(plot_h)]

        def to_row(v: float) -> int:
            return int(round((y1 - v) / (y1 - y0) * (dots_h - 1)))

        def plot(dx: int, dy: int, idx: int) -> None:
            cy, cx = dy // 4, dx // 2
            cells[cy][cx] |= _DOT_BITS[dy % 4][dx % 2]
            owner[cy][cx] = idx

        for idx, s in enumerate(series):
            bins = bin_points(s.points, x0, x1, dots_w)
            prev: tuple[int, int] | None = None
            for dx, b in enumerate(bins):
                if b is None:
                    continue
                top, bottom = to_row(b[1]), to_row(b[0])
                mid = to_row((b[0] + b[1]) / 2)
                if prev is not None:  # a straight segment from the previous point, without gaps
                    pdx, py = prev
                    last_y = py
                    for x in range(pdx + 1, dx + 1):
                        y = round(py + (mid - py) * (x - pdx) / (dx - pdx))
                        for dy in range(min(last_y, y), max(last_y, y) + 1):
                            plot(x, min(dots_h - 1, max(0, dy)), idx)
                        last_y = y
                for dy in range(max(0, top), min(dots_h - 1, bottom) + 1):  # the bin's own spread
                    plot(dx, dy, idx)
                prev = (dx, mid)
        styles = [self._style(s.colour or SERIES_COLOURS[i % len(SERIES_COLOURS)]) for i, s in enumerate(series)]
        rows: list[Strip] = []
        legend: list[Segment] = [Segment(" " * axis_w)]
        for i, s in enumerate(series):
            legend += [Segment("━━ ", styles[i]), Segment(s.label + "  ")]
        rows.append(Strip(legend).crop_extend(0, width, None))
        label_rows = {0: labels[0], plot_h // 2: labels[1], plot_h - 1: labels[2]}
        for r in range(plot_h):
            label = label_rows.get(r, "")
            segs = [Segment(label.rjust(axis_w - 1) + ("┤" if label else "│"), dim)]
            for c in range(plot_w):
                bits = cells[r][c]
                if bits:
                    segs.append(Segment(chr(0x2800 + bits), styles[owner[r][c]]))
                else:
                    segs.append(Segment(" "))
            rows.append(Strip(segs, width).simplify())
        rows.append(Strip([Segment(" " * (axis_w - 1) + "└" + "─" * plot_w, dim)], width))
        left, right = format_tick(x0), format_tick(x1)
        mid = f"{self.x_label}"
        gap = plot_w - len(left) - len(right)
        if gap > len(mid) + 2:
            pad = gap - len(mid)
            axis_text = left + " " * (pad // 2) + mid + " " * (pad - pad // 2) + right
        else:
            axis_text = left + " " * max(1, gap) + right
        rows.append(Strip([Segment(" " * axis_w + axis_text, dim)]).crop_extend(0, width, None))
        return rows
