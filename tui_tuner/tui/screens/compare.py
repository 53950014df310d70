"""Compare screen: two or more runs side by side — config differences and overlaid loss curves.

The "r=16 vs r=32" lab: the table lists every config key whose value differs between the
runs (press a to list all keys, differing ones highlighted), the chart overlays each
run's training loss against steps. Curves are read in a thread worker.
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
from tui_tuner.tui.run_view import loss_curve
from tui_tuner.tui.widgets.line_chart import ChartSeries, LineChart
from tui_tuner.tui.widgets.key_bar import KeyBar


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


class CompareScreen(Screen):
    """Config differences and loss curves of the selected runs (Escape goes back)."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("a", "toggle_all", "All keys"),
    ]

    def __init__(self, runs: list[RunDir]) -> None:
        super().__init__()
        self.runs = runs
        self.show_all = False
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
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one(LineChart).border_title = "training loss"
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

    @work(thread=True, exclusive=True, group="compare-curves", exit_on_error=False)
    def load_curves(self) -> None:
        self.post_message(CurvesLoaded([(run.name, loss_curve(run)) for run in self.runs]))

    @on(CurvesLoaded)
    def _curves_loaded(self, event: CurvesLoaded) -> None:
        chart = self.query_one(LineChart)
        chart.empty_text = "these runs have no loss points yet"
        chart.set_series([ChartSeries(name, points) for name, points in event.curves])


def _fmt(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
