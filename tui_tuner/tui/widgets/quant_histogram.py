"""The quantization lab's histogram: block-character bars with the NF4 and FP4 levels marked under them.

Draws `tui_tuner.learn.quant_lab.Histogram` data with the same text renderer the CLI
uses (`tui_tuner.learn.histogram_text`), coloured by the theme.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from tui_tuner.learn.histogram_text import histogram_lines


class QuantHistogram(Static):
    """Bars of a weight histogram, an NF4 marker row, an FP4 marker row and the value axis."""

    DEFAULT_CSS = """
    QuantHistogram { height: auto; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__("", id=id, classes=classes)
        self.histogram = None

    def show(self, histogram, title: str) -> None:
        """Draw `histogram` (a quant_lab.Histogram) under a one-line title."""
        self.histogram = histogram
        bar_style = self.app.current_theme.primary if self.is_attached else "cyan"
        text = Text(title + "\n", style="bold")
        for line in histogram_lines(histogram, height=7):
            if line.startswith("NF4"):
                text.append(line[:5], style="bold")
                text.append(line[5:] + "\n", style="green")
            elif line.startswith("FP4"):
                text.append(line[:5], style="bold")
                text.append(line[5:] + "\n", style="magenta")
            elif "▲" not in line and any(ch in line for ch in "▁▂▃▄▅▆▇█"):
                text.append(line + "\n", style=bar_style)
            else:
                text.append(line + "\n", style="dim")
        self.update(text)

    def clear_histogram(self, message: str) -> None:
        self.histogram = None
        self.update(Text(message, style="dim"))
