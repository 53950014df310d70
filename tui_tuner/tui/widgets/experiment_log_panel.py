"""The experiment log in the TUI: every run's row (`tui_tuner.rundir.experiment_log`) and loss curves.

Highlighting a run overlays its training loss with the other runs of its sweep, so the
"r=16 vs r=32" comparison is one keypress away; c opens the Runs comparison (config
differences and curves) for that sweep; r re-reads the runs folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static

from tui_tuner.tui.widgets.line_chart import ChartSeries, LineChart


@dataclass
class ExperimentsRead(Message):
    runs_dir: str
    runs: list[Any]             # RunDir, as list_runs orders them
    records: list[Any]          # experiment_log.RunRecord, same order
    sweeps: list[str | None]    # each run's sweep id


def _shown_path(path: str) -> str:
    """The runs folder relative to the working directory when it is inside it (shorter, and what the user typed)."""
    from pathlib import Path

    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


class ExperimentLogPanel(Vertical):
    """Heading, the experiment-log table and a loss chart for the highlighted run (and its sweep)."""

    BINDINGS = [Binding("r", "refresh_runs", "Refresh runs"), Binding("c", "compare", "Compare sweep")]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.runs_dir: str | None = None
        self.data: ExperimentsRead | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="experiments-heading")
        yield DataTable(id="experiments-table", cursor_type="row", zebra_stripes=True)
        yield LineChart(id="experiments-chart", empty_text="pick a run: its loss curve (and its sweep's) shows here")

    def refresh_runs(self, runs_dir: str | None = None) -> None:
        """Re-read the runs folder (in a thread) and refill the table."""
        self.runs_dir = runs_dir or self.runs_dir
        if self.runs_dir:
            self.read_runs(self.runs_dir)

    def action_refresh_runs(self) -> None:
        self.refresh_runs()

    @work(thread=True, exclusive=True, group="experiment-log", exit_on_error=False)
    def read_runs(self, runs_dir: str) -> None:
        from tui_tuner.rundir.experiment_log import records
        from tui_tuner.rundir.runs import list_runs
        from tui_tuner.rundir.sweep import sweep_record

        runs = list_runs(runs_dir)
        self.post_message(ExperimentsRead(runs_dir, runs, records(runs),
                                          [(sweep_record(r.path) or {}).get("sweep") for r in runs]))

    @on(ExperimentsRead)
    def _runs_read(self, event: ExperimentsRead) -> None:
        from tui_tuner.rundir.experiment_log import COLUMNS, format_cell

        self.data = event
        sweeps = len({s for s in event.sweeps if s})
        self.query_one("#experiments-heading", Static).update(
            f"{len(event.runs)} runs in {_shown_path(event.runs_dir)}" + (f", {sweeps} sweep(s)" if sweeps else "")
            + " — the experiment log (`tui-tuner runs table --markdown` writes it); r refreshes")
        table = self.query_one("#experiments-table", DataTable)
        previous = None
        if table.row_count and 0 <= table.cursor_row < table.row_count:
            previous = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        table.clear(columns=True)
        shown = [(key, title) for key, title in COLUMNS if key not in ("model", "eval_scores")]
        for key, title in shown:
            table.add_column(title, key=key)
        for run, record in zip(event.runs, event.records):
            table.add_row(*(format_cell(record, key) for key, _ in shown), key=run.name)
        names = [run.name for run in event.runs]
        if previous in names:  # a refresh keeps the learner's place
            table.move_cursor(row=names.index(previous))
        if names:
            self.show_curves(table.cursor_row if 0 <= table.cursor_row < len(names) else 0)

    @on(DataTable.RowHighlighted, "#experiments-table")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_curves(event.cursor_row)

    def show_curves(self, index: int) -> None:
        """The run at `index`: its loss curve, overlaid with the other runs of its sweep."""
        data = self.data
        members = self.group(index)
        if data is None or not members:
            return
        sweep = data.sweeps[index]
        chart = self.query_one("#experiments-chart", LineChart)
        chart.border_title = f"training loss, sweep {sweep}" if sweep else "training loss"
        chart.empty_text = "no loss points logged yet"
        chart.set_series([ChartSeries(data.runs[i].name, data.records[i].losses) for i in members])

    def group(self, index: int) -> list[int]:
        """Indexes of the run at `index` and the other runs of its sweep, in name order."""
        data = self.data
        if data is None or not 0 <= index < len(data.runs):
            return []
        sweep = data.sweeps[index]
        members = [i for i, s in enumerate(data.sweeps) if sweep and s == sweep] or [index]
        return sorted(members, key=lambda i: data.runs[i].name)

    def action_compare(self) -> None:
        from tui_tuner.tui.screens.compare import CompareScreen

        table = self.query_one("#experiments-table", DataTable)
        members = self.group(table.cursor_row)
        if len(members) < 2:
            self.app.notify("this run is not part of a sweep; select runs on the Runs screen (space) and "
                            "press c to compare any runs", title="compare")
            return
        self.app.push_screen(CompareScreen([self.data.runs[i] for i in members]))
