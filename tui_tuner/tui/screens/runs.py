"""Runs screen: every run in the runs folder, with open, stop, resume, delete and compare.

A thread worker lists the runs every two seconds (`tui_tuner.rundir.runs.list_runs` and each
run's status) and posts `RunsListed`; the table is updated in place so the cursor and
the selection stay where they were. Select two or more runs (space) and press c to
compare their configs and loss curves; e opens the highlighted run's evaluation report
(or runs `tui-tuner eval` on it); p publishes it to the Hugging Face Hub (a dialog, then
`tui-tuner publish` as a subprocess, its progress on the line under the table).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from datetime import datetime

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Static

from tui_tuner.rundir.runs import RunDir, delete_run, list_runs, run_summary
from tui_tuner.train.resume import resume_run
from tui_tuner.core.units import format_duration
from tui_tuner.tui import publish_view
from tui_tuner.tui.screens.modals import ConfirmModal
from tui_tuner.tui.screens.train import STATE_STYLES
from tui_tuner.tui.text import short_path
from tui_tuner.tui.widgets.key_bar import KeyBar

REFRESH_S = 2.0
COLUMNS = ("run", "state", "model", "method", "progress", "loss", "started", "duration")
NARROW_COLUMNS = ("run", "state", "model", "progress", "loss", "started")
"""Below `WIDE_FROM` terminal columns the run name loses its timestamp (the start time column
says it), the model is cut to `NARROW_MODEL` characters and method and duration move to the
line under the table, so model and state stay in view at 80 columns."""
WIDE_FROM = 110
NARROW_RUN = 18
NARROW_MODEL = 16
_STAMP = re.compile(r"-\d{8}-\d{6}(-\d+)?$")


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def run_stem(name: str) -> str:
    """A run's name without the `-yyyymmdd-hhmmss` it was given at creation."""
    return _STAMP.sub("", name) or name


@dataclass(frozen=True)
class RunRow:
    """One table row, computed off the UI thread."""

    run: RunDir
    state: str
    model: str
    method: str
    progress: str
    loss: str
    started: str
    duration: str
    error: str | None


@dataclass
class RunsListed(Message):
    rows: list[RunRow]


@dataclass
class RunsListFailed(Message):
    error: str


@dataclass
class PublishProgressed(Message):
    line: str


@dataclass
class PublishEnded(Message):
    outcome: publish_view.PublishOutcome


def _started(ts: float | None) -> str:
    if not ts:
        return "-"
    when = datetime.fromtimestamp(ts)
    return when.strftime("%H:%M") if when.date() == datetime.now().date() else when.strftime("%b %d")


def run_row(run: RunDir, config_cache: dict[str, tuple[str, str]]) -> RunRow:
    """Read one run's status (and its config summary, once) into a table row; a broken run gets a row saying why."""
    try:
        return _run_row(run, config_cache)
    except Exception as exc:  # one broken run must never hide the others
        return RunRow(run, "unreadable", "?", "?", "-", "-", "-", "-", f"{type(exc).__name__}: {exc}"[:300])


def _run_row(run: RunDir, config_cache: dict[str, tuple[str, str]]) -> RunRow:
    st = run.status()
    if run.name not in config_cache:
        summary = run_summary(run, st)  # cached in status.json: no config parsing for new runs
        model = str(summary["model"]).rstrip("/").split("/")[-1]
        method = str(summary["method"])
        if method in ("lora", "qlora") and summary["r"] is not None:
            method = f"{method} r{summary['r']}"
        config_cache[run.name] = (model, method)
    model, method = config_cache[run.name]
    progress = f"{st.step}/{st.max_steps or '?'}"
    loss = f"{st.loss:.4f}" if isinstance(st.loss, (int, float)) else "-"
    return RunRow(run, st.state, model, method, progress, loss, _started(st.started or st.created),
                  format_duration(st.duration_s), st.error)


class RunsScreen(Screen):
    """The runs table."""

    BINDINGS = [
        # priority: the table would take enter first and hide the key from the key bar
        Binding("enter", "open", "Open", priority=True),
        Binding("space", "toggle_select", "Select"),
        Binding("c", "compare", "Compare"),
        Binding("e", "eval", "Eval"),
        Binding("g", "export", "Export"),
        Binding("s", "stop", "Stop"),
        Binding("r", "resume", "Resume"),
        Binding("x,delete", "delete", "Delete"),
        Binding("p", "publish", "Publish"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, RunRow] = {}
        self.selected: set[str] = set()
        self._config_cache: dict[str, tuple[str, str]] = {}
        self._listing = False
        self._shown_columns: tuple[str, ...] = ()
        self.publishing: str | None = None
        """The run being published (one at a time), None when none is."""
        self.publish_outcome: publish_view.PublishOutcome | None = None
        self._publish_proc: subprocess.Popen | None = None
        self._last_repo = ""

    def compose(self) -> ComposeResult:
        yield Static(id="runs-title", classes="screen-title")
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Static(id="runs-detail")
        yield Static(id="runs-publish")
        yield KeyBar()

    @property
    def columns(self) -> tuple[str, ...]:
        return COLUMNS if self.app.size.width >= WIDE_FROM else NARROW_COLUMNS

    def _build_columns(self) -> None:
        table = self.query_one(DataTable)
        table.clear(columns=True)
        self._shown_columns = self.columns
        for label in self._shown_columns:
            table.add_column(label, key=label)
        rows, self.rows = self.rows, {}
        self._runs_listed(RunsListed(list(rows.values())))

    def on_resize(self) -> None:
        if self.columns != self._shown_columns:
            self._build_columns()

    def on_mount(self) -> None:
        self._build_columns()
        self.query_one("#runs-title", Static).update(Text.assemble(("Runs ", "bold"), short_path(self.app.runs_dir)))
        self.set_interval(REFRESH_S, self.refresh_runs)
        self.refresh_runs()

    def on_screen_resume(self) -> None:
        self.refresh_runs()
        self.query_one(DataTable).focus()

    def refresh_runs(self) -> None:
        if self._listing or not self.is_current:
            return
        self._listing = True
        self.list_runs_worker()

    @work(thread=True, group="runs-list", exit_on_error=False)
    def list_runs_worker(self) -> None:
        try:
            rows = [run_row(run, self._config_cache) for run in reversed(list_runs(self.app.runs_dir))]
            self.post_message(RunsListed(rows))
        except Exception as exc:  # say why the list is not there instead of showing "No runs yet"
            self.post_message(RunsListFailed(f"cannot list {self.app.runs_dir}: {type(exc).__name__}: {exc}"))
        finally:
            self.app.call_from_thread(self._listing_done)

    def _listing_done(self) -> None:
        self._listing = False

    @on(RunsListed)
    def _runs_listed(self, event: RunsListed) -> None:
        table = self.query_one(DataTable)
        new = {row.run.name: row for row in event.rows}
        self.selected &= set(new)
        if list(new) != list(self.rows):
            cursor_key = self._cursor_name()
            table.clear()
            for name, row in new.items():
                table.add_row(*self._cells(row), key=name)
            if cursor_key in new:
                table.move_cursor(row=list(new).index(cursor_key))
        else:
            for name, row in new.items():
                if row != self.rows[name]:
                    for col, cell in zip(self._shown_columns, self._cells(row)):
                        table.update_cell(name, col, cell)
        self.rows = new
        self._show_detail()
        if not new:
            self.query_one("#runs-detail", Static).update(Text(
                "No runs yet. Open a config (F2) and start one with ctrl+r.", style="dim"))

    @on(RunsListFailed)
    def _runs_list_failed(self, event: RunsListFailed) -> None:
        self.query_one("#runs-detail", Static).update(Text(event.error, style="bold red"))

    def _cells(self, row: RunRow) -> list:
        mark = "✓ " if row.run.name in self.selected else "  "
        narrow = self._shown_columns == NARROW_COLUMNS
        name = _cut(run_stem(row.run.name), NARROW_RUN) if narrow else row.run.name
        cells = {"run": Text.assemble((mark, "bold green"), name),
                 "state": Text(row.state, style=STATE_STYLES.get(row.state, "")),
                 "model": _cut(row.model, NARROW_MODEL if narrow else 24),
                 "method": row.method, "progress": row.progress, "loss": row.loss, "started": row.started,
                 "duration": row.duration}
        return [cells[c] for c in self._shown_columns]

    def _cursor_name(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return key.value

    def _cursor_row(self) -> RunRow | None:
        name = self._cursor_name()
        return self.rows.get(name) if name else None

    @on(DataTable.RowHighlighted)
    def _show_detail(self) -> None:
        row = self._cursor_row()
        detail = self.query_one("#runs-detail", Static)
        if row is None:
            return
        text = Text.assemble((row.run.name, "bold"), "  ", (row.state, STATE_STYLES.get(row.state, "")),
                             f"  {row.model} {row.method}  {row.duration}")
        if self.selected:
            text.append(f"   {len(self.selected)} selected", style="bold")
        if row.state == "unreadable":
            text.append(f"\nunreadable: {row.error}", style="red")
        elif row.state in ("failed", "crashed"):
            st = row.run.status()
            text.append(f"\n{st.error or 'no error recorded'}", style="red")
            if st.hint:
                text.append(f"\n{st.hint}", style="italic")
            tail = row.run.log_tail(3)
            if tail:
                text.append("\n" + "\n".join(tail), style="dim")
        detail.update(text)

    # ------------------------------------------------------------------ actions
    @on(DataTable.RowSelected)
    def _row_selected(self) -> None:
        self.action_open()

    def action_open(self) -> None:
        row = self._cursor_row()
        if row is not None and row.state == "unreadable":
            self.notify(f"{row.run.name} cannot be opened: {row.error}", severity="error")
        elif row is not None:
            self.app.attach(row.run)

    def action_toggle_select(self) -> None:
        row = self._cursor_row()
        if row is None:
            return
        self.selected ^= {row.run.name}
        self.query_one(DataTable).update_cell(row.run.name, "run", self._cells(row)[0])
        self._show_detail()

    def action_compare(self) -> None:
        names = [n for n in self.rows if n in self.selected]
        if len(names) < 2:
            self.notify("select two or more runs with space, then press c", severity="warning")
            return
        from tui_tuner.tui.screens.compare import CompareScreen

        self.app.push_screen(CompareScreen([self.rows[n].run for n in names]))

    def action_eval(self) -> None:
        row = self._cursor_row()
        if row is None:
            return
        from tui_tuner.tui.screens.eval import EvalScreen

        self.app.push_screen(EvalScreen(row.run))

    def action_export(self) -> None:
        row = self._cursor_row()
        if row is None:
            return
        self.app.export_run(row.run)

    def action_publish(self) -> None:
        row = self._cursor_row()
        if row is None:
            return
        if self.publishing:
            self.notify(f"{self.publishing} is being published; wait for it to end", severity="warning")
            return
        if row.state in ("running", "queued", "stopping", "unreadable"):
            self.notify(f"{row.run.name} is {row.state}: publish it once it has ended", severity="warning")
            return
        if not (row.run.adapter_dir.is_dir() or row.run.latest_checkpoint()):
            self.notify(f"{row.run.name} has no saved model (no adapter, no checkpoint): nothing to publish",
                        severity="error")
            return
        from tui_tuner.tui.screens.publish import PublishModal

        def answered(request: publish_view.PublishRequest | None) -> None:
            if request is not None:
                self.start_publish(row.run, request)

        self.app.push_screen(PublishModal(row.run.name, self._last_repo), answered)

    def start_publish(self, run: RunDir, request: publish_view.PublishRequest) -> None:
        """Run `tui-tuner publish` for `run` in a thread worker; its progress shows under the table."""
        self._last_repo = request.repo
        self.publishing = run.name
        self.publish_outcome = None
        what = "writing the folder to publish (dry run)" if request.dry_run else f"publishing to {request.repo}"
        line = self.query_one("#runs-publish", Static)
        line.display = True  # hidden until the first publish: the table keeps the row otherwise
        line.update(Text(f"{run.name}: {what} …", style="yellow"))
        argv = publish_view.publish_command(run.path, Path(self.app.runs_dir), request)
        self.publish_worker(argv, Path(self.app.project_dir), request)

    @work(thread=True, exclusive=True, group="publish", exit_on_error=False)
    def publish_worker(self, argv: list[str], cwd: Path, request: publish_view.PublishRequest) -> None:
        lines: list[str] = []
        try:
            self._publish_proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                                  stderr=subprocess.PIPE, text=True, bufsize=1)
        except OSError as exc:
            self.post_message(PublishEnded(publish_view.PublishOutcome(
                -1, request, log=[f"error: could not start {argv[0]}: {exc}"])))
            return
        assert self._publish_proc.stderr is not None and self._publish_proc.stdout is not None
        for line in self._publish_proc.stderr:
            if line.strip():
                lines.append(line.rstrip())
                self.post_message(PublishProgressed(line.strip()))
        stdout = self._publish_proc.stdout.read()  # the folder, its files and the URL: small
        self.post_message(PublishEnded(publish_view.read_outcome(self._publish_proc.wait(), stdout, lines, request)))

    @on(PublishProgressed)
    def _publish_progressed(self, event: PublishProgressed) -> None:
        self.query_one("#runs-publish", Static).update(Text(f"{self.publishing}: {event.line}", style="yellow"))

    @on(PublishEnded)
    def _publish_ended(self, event: PublishEnded) -> None:
        outcome = event.outcome
        name, self.publishing, self._publish_proc = self.publishing, None, None
        self.publish_outcome = outcome
        style = "green" if outcome.ok else "bold red"
        self.query_one("#runs-publish", Static).update(Text(f"{name}: {outcome.summary()}", style=style))
        if outcome.ok:
            self.notify(outcome.summary(), title=f"{name}: published" if outcome.url else f"{name}: dry run",
                        timeout=15)
        else:
            self.notify(outcome.error, title=f"{name}: not published", severity="error", timeout=20)

    def on_unmount(self) -> None:
        proc = self._publish_proc
        if proc is not None and proc.poll() is None:
            proc.terminate()

    def action_stop(self) -> None:
        row = self._cursor_row()
        if row is None:
            return
        if row.state not in ("running", "queued", "stopping"):
            self.notify(f"{row.run.name} is not running ({row.state})", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.notify(row.run.request_stop(), title=row.run.name)
                self.refresh_runs()

        self.app.push_screen(ConfirmModal(f"Stop {row.run.name}?", "It saves a checkpoint and stops; "
                                          "resume it later with r.", yes="Stop", danger=True), answered)

    def action_resume(self) -> None:
        row = self._cursor_row()
        if row is None:
            return
        try:
            resume_run(row.run)
        except Exception as exc:  # RunError says why in words (finished, already running, ...)
            self.notify(str(exc), title="cannot resume", severity="error")
            return
        self.notify(f"resuming {row.run.name}")
        self.app.attach(row.run)

    def action_delete(self) -> None:
        row = self._cursor_row()
        if row is None:
            return

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            try:
                delete_run(row.run)
            except Exception as exc:  # refused while running: say so
                self.notify(str(exc), title="cannot delete", severity="error")
                return
            if self.app.attached_run == row.run:
                self.app.attached_run = None
            self.notify(f"deleted {row.run.name}")
            self.refresh_runs()

        self.app.push_screen(ConfirmModal(f"Delete {row.run.name}?", f"This removes {row.run.path} with its "
                                          "checkpoints and adapter. It cannot be undone.", yes="Delete",
                                          danger=True), answered)
