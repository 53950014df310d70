"""Overlaid line plots as text (one marker per series), for comparing loss curves in a terminal.

    from tui_tuner.core.text_plot import line_plot
    lines = line_plot({"r8": [(1, 2.3), (2, 2.1)], "r16": [(1, 2.2), (2, 1.9)]}, width=60, height=12)
"""

from __future__ import annotations

from dataclasses import dataclass

MARKERS = "●▲■◆x+o*"
COLOURS = ("cyan", "magenta", "yellow", "green", "red", "blue", "bright_white", "bright_cyan")


@dataclass
class Plot:
    lines: list[str]                    # the grid rows with a y-axis label, top first, then the x axis
    legend: list[tuple[str, str, str]]  # (marker, colour, series name)


def _interpolate(points: list[tuple[float, float]], x: float) -> float | None:
    if not points or x < points[0][0] or x > points[-1][0]:
        return None
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return points[-1][1] if x == points[-1][0] else None


def line_plot(series: dict[str, list[tuple[float, float]]], width: int = 60, height: int = 12) -> Plot:
    """Each series drawn with its own marker over a shared x (step) and y (loss) range."""
    cleaned = {name: sorted((float(x), float(y)) for x, y in pts) for name, pts in series.items() if pts}
    legend = [(MARKERS[i % len(MARKERS)], COLOURS[i % len(COLOURS)], name) for i, name in enumerate(series)]
    if not cleaned:
        return Plot(["(no loss points yet)"], legend)
    xs = [x for pts in cleaned.values() for x, _ in pts]
    ys = [y for pts in cleaned.values() for _, y in pts]
    x_lo, x_hi = min(xs), max(xs)
    y_lo, y_hi = min(ys), max(ys)
    if y_hi == y_lo:
        y_lo, y_hi = y_lo - 0.5, y_hi + 0.5
    grid = [[" "] * width for _ in range(height)]
    for i, name in enumerate(series):
        pts = cleaned.get(name)
        if not pts:
            continue
        marker = MARKERS[i % len(MARKERS)]
        for col in range(width):
            x = x_lo + (x_hi - x_lo) * col / max(1, width - 1)
            y = _interpolate(pts, x) if len(pts) > 1 else (pts[0][1] if col == 0 else None)
            if y is None:
                continue
            row = round((y_hi - y) / (y_hi - y_lo) * (height - 1))
            grid[row][col] = marker
    label_w = max(len(f"{y_hi:.3g}"), len(f"{y_lo:.3g}"))
    lines = []
    for r, cells in enumerate(grid):
        label = f"{y_hi:.3g}" if r == 0 else (f"{y_lo:.3g}" if r == height - 1 else "")
        lines.append(f"{label:>{label_w}} │" + "".join(cells))
    left, right = f"step {x_lo:g}", f"{x_hi:g}"
    lines.append(" " * label_w + " └" + "─" * width)
    lines.append(" " * (label_w + 2) + left + " " * max(1, width - len(left) - len(right)) + right)
    return Plot(lines, legend)


def rich_plot(plot: Plot):
    """The plot as a rich Text with each series' marker in its colour."""
    from rich.text import Text

    colour_of = {marker: colour for marker, colour, _ in plot.legend}
    text = Text()
    for line in plot.lines:
        for ch in line:
            text.append(ch, style=colour_of.get(ch, ""))
        text.append("\n")
    for marker, colour, name in plot.legend:
        text.append(f"  {marker} ", style=colour)
        text.append(name + "\n")
    return text
