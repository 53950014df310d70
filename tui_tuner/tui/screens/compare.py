"""Compare screen: two or more runs side by side — config differences, overlaid loss curves and
the runs' latest sample answers.

The "r=16 vs r=32" lab: the table lists every config key whose value differs between the
runs (press a to list all keys, differing ones highlighted), the chart overlays each
run's training loss against steps, and `s` swaps the chart for each run's latest answers
to its sample prompts, side by side. Curves and samples are read in a thread worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Static

from tui_tuner.rundir.runs import RunDir
from tui_tuner.tui.run_view import RunView
from tui_tuner.tui.widgets.line_chart import ChartSeries, LineChart
from tui_tuner.tui.widgets.key_bar import KeyBar
from tui_tuner.tui.widgets.samples_panel import compare_samples_table


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """{"lora": {"r": 16}} -> {"lora.r": 16}."""
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): data}


def config_rows(configs: list[dict[str, Any]]) -> list[tuple[str, list[Any], bool]]:
    """(key, value per run, differs) for every key in any of the configs."""
    flat = [flatten(c) for c in configs]
    keys = sorted(set().union(*flat)) if flat else []
    rows = []
    for key in keys:
        values = [f.get(key) for f in flat]
        rows.append((key, values, any(v != values[0] for v in values[1:])))
    return rows


@dataclass
class CurvesLoaded(Message):
    curves: list[tuple[str, list[tuple[float, float]]]]
    samples: list[tuple[str, list[dict[str, Any]]]]


class CompareScreen(Screen):
    """Config differences and loss curves of the selected runs (Escape goes back)."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("a", "toggle_all", "All keys"),
        Binding("s", "toggle_samples", "Samples"),
    ]

    def __init__(self, runs: list[RunDir]) -> None:
        super().__init__()
        self.runs = runs
        self.show_all = False
        self.samples: list[tuple[str, list[dict[str, Any]]]] | None = None
        """Each run's sample answers by step, once read."""
        self.configs: list[dict[str, Any]] = []
        for run in runs:
            try:
                self.configs.append(run.config().model_dump(mode="json"))
            except Exception:  # an unreadable config compares as empty; its keys show as missing
                self.configs.append({})

    def compose(self) -> ComposeResult:
        names = ", ".join(r.name for r in self.runs)
        yield Static(Text.assemble(("Compare ", "bold"), names), classes="screen-title")
        yield DataTable(id="compare-table", cursor_type="row", zebra_stripes=True)
        yield LineChart(id="compare-chart", empty_text="reading loss curves...")
        yield Static(id="compare-samples")
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one(LineChart).border_title = "training loss"
        panel = self.query_one("#compare-samples", Static)
        panel.border_title = "latest sample answers"
        panel.display = False
        self._fill_table()
        self.load_curves()

    def _fill_table(self) -> None:
        table = self.query_one(DataTable)
        table.clear(columns=True)
        table.add_column("key", key="key")
        for i, run in enumerate(self.runs):
            table.add_column(run.name, key=f"run-{i}")
        rows = config_rows(self.configs)
        shown = [r for r in rows if r[2] or self.show_all]
        for key, values, differs in shown:
            style = "bold yellow" if differs else "dim"
            table.add_row(Text(key, style=style), *[Text(_fmt(v), style=style) for v in values], key=key)
        if not shown:
            table.add_row(Text("the configs are identical (press a to list every key)", style="dim"),
                          *["" for _ in self.runs])

    def action_toggle_all(self) -> None:
        self.show_all = not self.show_all
        self._fill_table()

    def action_toggle_samples(self) -> None:
        """Swap the loss chart for the runs' latest sample answers, and back."""
        panel = self.query_one("#compare-samples", Static)
        panel.display = not panel.display
        self.query_one(LineChart).display = not panel.display
        self._show_samples()

    def _show_samples(self) -> None:
        panel = self.query_one("#compare-samples", Static)
        if not panel.display:
            return
        if self.samples is None:
            panel.update(Text("reading sample answers...", style="dim"))
        else:
            panel.update(compare_samples_table(self.samples, max(40, (panel.size.width or self.size.width) - 2)))

    def on_resize(self) -> None:
        self._show_samples()

    @work(thread=True, exclusive=True, group="compare-curves", exit_on_error=False)
    def load_curves(self) -> None:
        curves, samples = [], []
        for run in self.runs:
            view = RunView(run)
            view.read_new()
            curves.append((run.name, view.loss.view()))
            samples.append((run.name, list(view.samples)))
        self.post_message(CurvesLoaded(curves, samples))

    @on(CurvesLoaded)
    def _curves_loaded(self, event: CurvesLoaded) -> None:
        chart = self.query_one(LineChart)
        chart.empty_text = "these runs have no loss points yet"
        chart.set_series([ChartSeries(name, points) for name, points in event.curves])
        self.samples = event.samples
        self._show_samples()


def _fmt(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
