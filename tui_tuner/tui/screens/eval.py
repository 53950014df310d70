"""Eval view of one run (Runs → e): its newest `tui-tuner eval` report, or a way to make one.

The summary gives held-out loss, perplexity, mean exact match / token F1 / ROUGE-L and the
count of possible hallucinations, tuned and base side by side when the report compared
them; the table lists every prompt with its scores (flagged answers in red, ⚠), and the
selected prompt's prompt, reference and answers are shown below it.

Runs of the other objectives (DPO, ORPO, KTO, reward models, GRPO) show their objective's own
report instead: what its number means, the scores (tuned vs base when compared), and a row per
held-out example (chosen vs rejected log-probabilities, rewards per answer), detailed below.

Without a report the view offers to run the evaluation: `tui-tuner eval RUN` runs as a
subprocess (the TUI never loads a model for it), read by a thread worker that posts
`EvalProgressed` / `EvalEnded`; when it ends the report is loaded, when it fails its error
is shown. Leaving the view stops an evaluation still running.
"""

from __future__ import annotations

import subprocess
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, DataTable, ProgressBar, Static, Switch

from tui_tuner.rundir.runs import RunDir
from tui_tuner.tui import eval_view
from tui_tuner.tui.widgets.key_bar import KeyBar

CELL_PADDING = 2
"""A DataTable column is its content plus one cell of padding on each side."""
SCROLLBAR = 2


@dataclass
class ReportLoaded(Message):
    report: Any  # EvalReport, or None when the run has none
    path: Path | None
    error: str | None = None


@dataclass
class EvalProgressed(Message):
    done: int | None
    total: int | None
    what: str


@dataclass
class EvalEnded(Message):
    returncode: int
    output: str


class EvalScreen(Screen):
    """One run's evaluation report (Escape goes back)."""

    CSS_PATH = "eval.tcss"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("r", "run_eval", "Run eval"),
        Binding("b", "toggle_base", "With base"),
    ]

    def __init__(self, run: RunDir) -> None:
        super().__init__()
        self.run = run
        self.report: Any = None
        self.report_path: Path | None = None
        self.running = False
        self._proc: subprocess.Popen | None = None

    def compose(self) -> ComposeResult:
        yield Static(Text.assemble(("Eval ", "bold"), self.run.name), id="eval-title", classes="screen-title")
        with Vertical(id="eval-report"):
            yield Static(id="eval-heading")
            yield Static(id="eval-summary")
            yield DataTable(id="eval-prompts", cursor_type="row", zebra_stripes=True)
            with VerticalScroll(id="eval-detail-pane"):
                yield Static(id="eval-detail")
        with Vertical(id="eval-runner"):
            yield Static("reading the run's eval reports …", id="eval-message")
            with Horizontal(id="eval-controls", classes="button-bar"):
                yield Button("Run evaluation", id="eval-run", variant="primary")
                yield Switch(value=True, id="eval-base")
                yield Static("also the base model (adapter off)", id="eval-base-label")
            yield ProgressBar(id="eval-progress", show_eta=False)
            yield Static(id="eval-status")
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#eval-report").display = False
        self.query_one("#eval-progress").display = False
        self.load_report_worker()

    def on_unmount(self) -> None:
        self._stop_process()

    # ------------------------------------------------------------------ the report
    @work(thread=True, exclusive=True, group="eval-report", exit_on_error=False)
    def load_report_worker(self) -> None:
        from tui_tuner.inference.evaluate import latest_report, load_report

        path = latest_report(self.run.path)
        if path is None:
            self.post_message(ReportLoaded(None, None))
            return
        try:
            self.post_message(ReportLoaded(load_report(path), path))
        except (OSError, ValueError, KeyError, TypeError) as exc:  # a damaged file: say which and why
            self.post_message(ReportLoaded(None, path, f"{path.name} cannot be read: {exc}"))

    @on(ReportLoaded)
    def _report_loaded(self, event: ReportLoaded) -> None:
        self.report, self.report_path = event.report, event.path
        message = self.query_one("#eval-message", Static)
        if event.report is None:
            self.query_one("#eval-report").display = False
            self.query_one("#eval-runner").display = True
            text = Text.assemble((event.error or f"{self.run.name} has no evaluation report yet.",
                                  "red" if event.error else "bold"))
            text.append(f"\nRun `tui-tuner eval` on it: {self._what_eval_measures()}. Enter or r starts it; "
                        "b switches the base-model comparison.", style="")
            message.update(text)
            if not self.running:
                self.query_one("#eval-run", Button).focus()
            return
        self.query_one("#eval-report").display = True
        self.query_one("#eval-runner").display = self.running
        message.update(Text("running a new evaluation …", style="bold"))
        self.query_one("#eval-heading", Static).update(eval_view.report_heading(event.report, event.path))
        summary = (eval_view.objective_summary(event.report.objective) if event.report.objective
                   else eval_view.summary_table(event.report))
        self.query_one("#eval-summary", Static).update(summary)
        self._fill_prompts()
        self.query_one("#eval-prompts", DataTable).focus()

    def _what_eval_measures(self) -> str:
        from tui_tuner.rundir.runs import run_summary

        from tui_tuner.inference.objective_eval import HEADLINE, MEANING

        objective = run_summary(self.run).get("objective") or "sft"
        if objective not in MEANING:  # sft (or a config that cannot be read: eval itself will say why)
            return ("held-out loss, perplexity, and each held-out prompt answered and scored against its "
                    "reference (greedy decoding)")
        return f"{objective.upper()}'s {HEADLINE[objective].replace('_', ' ')}, {MEANING[objective]}"

    def _fill_prompts(self) -> None:
        table = self.query_one("#eval-prompts", DataTable)
        table.clear(columns=True)
        report = self.report
        if report is None:
            return
        if report.objective:
            self._fill_objective_rows(table, report.objective)
            return
        columns = eval_view.prompt_columns(report)
        for key, label in columns:
            table.add_column(label, key=key)
        # The prompt gets what the other columns leave (scores are at most 4 cells, "0.85").
        others = sum(max(len(label), 4) + CELL_PADDING for key, label in columns if key not in ("n", "prompt", "flags"))
        others += len(str(len(report.prompts))) + eval_view.flags_width(report) + 3 * CELL_PADDING + SCROLLBAR
        prompt_width = max(16, self.size.width - others)
        for prompt in report.prompts:
            table.add_row(*eval_view.prompt_cells(report, prompt, prompt_width), key=str(prompt.index))
        if not report.prompts:
            self.query_one("#eval-detail", Static).update(Text(
                "No prompt ended with a reference answer, so only the loss was measured.", style="dim"))
        self._show_prompt()

    def _fill_objective_rows(self, table: DataTable, section: dict) -> None:
        labels, rows = eval_view.objective_rows(section, prompt_width=10_000)
        for i, label in enumerate(labels):
            table.add_column(label, key=f"c{i}")
        others = sum(max(len(label), *(len(str(r[i])) for r in rows)) + CELL_PADDING
                     for i, label in enumerate(labels) if i != 1) if rows else 0
        _, rows = eval_view.objective_rows(section, prompt_width=max(16, self.size.width - others - CELL_PADDING
                                                                     - SCROLLBAR))
        for i, row in enumerate(rows):
            table.add_row(*row, key=str(i))
        if not rows:
            self.query_one("#eval-detail", Static).update(Text(
                "This report has no per-example scores (it was written before they were saved): "
                "r re-runs the evaluation.", style="dim"))
        self._show_prompt()

    def on_resize(self) -> None:
        if self.report is not None:
            self._fill_prompts()

    @on(DataTable.RowHighlighted, "#eval-prompts")
    def _show_prompt(self) -> None:
        table = self.query_one("#eval-prompts", DataTable)
        if self.report is None or not table.row_count:
            return
        if self.report.objective:
            self.query_one("#eval-detail", Static).update(
                eval_view.objective_detail(self.report.objective, table.cursor_row))
            self.query_one("#eval-detail-pane").scroll_home(animate=False)
            return
        prompt = self.report.prompts[table.cursor_row]
        self.query_one("#eval-detail", Static).update(eval_view.prompt_detail(self.report, prompt))
        self.query_one("#eval-detail-pane").scroll_home(animate=False)

    # ------------------------------------------------------------------ running tui-tuner eval
    @on(Button.Pressed, "#eval-run")
    def action_run_eval(self) -> None:
        if self.running:
            self.notify("the evaluation is already running", severity="warning")
            return
        if self.run.status().state in ("running", "queued", "stopping"):
            self.notify(f"{self.run.name} is still training: evaluate it when it has ended", severity="warning")
            return
        self.running = True
        compare_base = self.query_one("#eval-base", Switch).value
        self.query_one("#eval-runner").display = True
        self.query_one("#eval-run", Button).disabled = True
        progress = self.query_one("#eval-progress", ProgressBar)
        progress.update(total=None, progress=0)
        progress.display = True
        self._set_status(Text("starting tui-tuner eval …", style="yellow"))
        self.eval_worker(eval_view.eval_command(self.run.path, self.app.runs_dir, compare_base=compare_base),
                         Path(self.app.project_dir))

    def action_toggle_base(self) -> None:
        switch = self.query_one("#eval-base", Switch)
        switch.value = not switch.value
        self.notify("the next evaluation " + ("compares with the base model" if switch.value else "is tuned only"))

    @work(thread=True, exclusive=True, group="eval-run", exit_on_error=False)
    def eval_worker(self, argv: list[str], cwd: Path) -> None:
        """Run the command, posting its progress lines; keeps the other output for the error message."""
        output: deque[str] = deque(maxlen=40)
        try:
            self._proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE, text=True, bufsize=1)
        except OSError as exc:
            self.post_message(EvalEnded(-1, f"could not start {argv[0]}: {exc}"))
            return
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            parsed = eval_view.parse_progress(line)
            if parsed:
                self.post_message(EvalProgressed(*parsed))
            elif line.strip():
                output.append(line.rstrip())
                self.post_message(EvalProgressed(None, None, line.strip()))
        self.post_message(EvalEnded(self._proc.wait(), "\n".join(output)))

    @on(EvalProgressed)
    def _eval_progressed(self, event: EvalProgressed) -> None:
        if event.total:
            self.query_one("#eval-progress", ProgressBar).update(total=event.total, progress=event.done)
        self._set_status(Text(event.what, style="yellow"))

    @on(EvalEnded)
    def _eval_ended(self, event: EvalEnded) -> None:
        self.running = False
        self._proc = None
        self.query_one("#eval-run", Button).disabled = False
        self.query_one("#eval-progress").display = False
        if event.returncode == 0:
            self._set_status(Text("evaluation finished: report saved in the run's eval/ folder", style="green"))
            self.notify("evaluation finished: report saved in the run's eval/ folder", title=self.run.name)
            self.load_report_worker()
            return
        self.query_one("#eval-runner").display = True
        lines = [ln for ln in event.output.splitlines() if not ln.startswith(("loading ", "note: "))]
        error = "\n".join(lines[-6:]) or f"exit status {event.returncode}"
        self._set_status(Text.assemble(("tui-tuner eval failed", "bold red"), f" (exit status {event.returncode})\n",
                                       (error, "red")))

    def _set_status(self, text: Text) -> None:
        self.query_one("#eval-status", Static).update(text)

    def _stop_process(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
