"""Export view of one run (Runs → g, or offered when a run ends): a GGUF + Ollama Modelfile, or a
merged model, with progress, the export's verification result and the commands that use it.

The export runs as a subprocess (`tui-tuner export RUN --gguf --quant Q` or `--merged`), read by
a thread worker that posts `ExportProgressed` / `ExportEnded`, as the Eval view runs
`tui-tuner eval`: the TUI never loads torch. When it ends the files, the verification lines and
the exact `ollama create` / `llama-cli` commands are shown; Enter or `y` copies the highlighted
command (to the terminal's clipboard, OSC 52) and shows it for copying by hand. Leaving the view
stops an export still running.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Label, OptionList, ProgressBar, Select, Static
from textual.widgets.option_list import Option

from tui_tuner.rundir.runs import RunDir
from tui_tuner.tui import export_view
from tui_tuner.tui.widgets.key_bar import KeyBar

KINDS = (("GGUF + Modelfile (llama.cpp, Ollama)", "gguf"), ("merged safetensors (transformers)", "merged"))


@dataclass
class ExportProgressed(Message):
    line: str


@dataclass
class ExportEnded(Message):
    outcome: export_view.ExportOutcome


class ExportScreen(Screen):
    """Export one run; Escape goes back (stopping an export still running)."""

    CSS_PATH = "export.tcss"
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("r", "run_export", "Export"),
        Binding("y", "copy_command", "Copy command"),
    ]

    def __init__(self, run: RunDir) -> None:
        super().__init__()
        self.run = run
        self.running = False
        self.outcome: export_view.ExportOutcome | None = None
        self._proc: subprocess.Popen | None = None
        self._log: list[str] = []

    def compose(self) -> ComposeResult:
        yield Static(Text.assemble(("Export ", "bold"), self.run.name), classes="screen-title")
        with Horizontal(id="export-controls"):
            yield Select(KINDS, value="gguf", allow_blank=False, compact=True, id="export-kind")
            yield Label("quant", id="export-quant-label")
            quants = export_view.gguf_quants()
            yield Select([(q, q) for q in quants], value="q8_0" if "q8_0" in quants else quants[0],
                         allow_blank=False, compact=True, id="export-quant")
            yield Button("Export r", id="export-run", variant="primary")
        yield Static(id="export-about")
        yield ProgressBar(id="export-progress", show_eta=False)
        yield Static(id="export-status")
        with VerticalScroll(id="export-result-pane"):
            yield Static(id="export-result")
        yield OptionList(id="export-commands")
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#export-progress").display = False
        self.query_one("#export-commands").display = False
        self._describe_kind()
        state = self.run.status().state
        if not (self.run.adapter_dir.is_dir() or self.run.latest_checkpoint()):
            self._set_status(Text(f"{self.run.name} has no adapter or checkpoint yet ({state}): export it once "
                                  "it has saved one.", style="yellow"))
        self.query_one("#export-run", Button).focus()

    def on_unmount(self) -> None:
        self._stop_process()

    @on(Select.Changed, "#export-kind")
    def _describe_kind(self) -> None:
        gguf = self.query_one("#export-kind", Select).value == "gguf"
        self.query_one("#export-quant").display = gguf
        self.query_one("#export-quant-label").display = gguf
        small = " q4_k_m a quarter, for small machines." if "q4_k_m" in export_view.gguf_quants() else ""
        about = ("One file for llama.cpp and Ollama, with a Modelfile carrying the chat template. f16 keeps "
                 "every weight; q8_0 is half the size and near-lossless." + small
                 if gguf else "The adapter merged into the base weights: a plain transformers model folder.")
        self.query_one("#export-about", Static).update(Text(about, style="dim"))

    # ------------------------------------------------------------------ running tui-tuner export
    @on(Button.Pressed, "#export-run")
    def action_run_export(self) -> None:
        if self.running:
            self.notify("the export is already running", severity="warning")
            return
        if self.run.status().state in ("running", "queued", "stopping"):
            self.notify(f"{self.run.name} is still training: export it when it has ended", severity="warning")
            return
        kind = str(self.query_one("#export-kind", Select).value)
        quant = str(self.query_one("#export-quant", Select).value)
        self.running = True
        self.outcome = None
        self._log = []
        self.query_one("#export-run", Button).disabled = True
        self.query_one("#export-commands").display = False
        self.query_one("#export-result", Static).update("")
        progress = self.query_one("#export-progress", ProgressBar)
        progress.update(total=None, progress=0)
        progress.display = True
        self._set_status(Text("starting tui-tuner export …", style="yellow"))
        argv = export_view.export_command(self.run.path, self.app.runs_dir, kind=kind, quant=quant)
        self.export_worker(argv, Path(self.app.project_dir))

    @work(thread=True, exclusive=True, group="export-run", exit_on_error=False)
    def export_worker(self, argv: list[str], cwd: Path) -> None:
        """Run the command; stderr lines are its progress, stdout the files it wrote."""
        lines: list[str] = []
        try:
            self._proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True, bufsize=1)
        except OSError as exc:
            self.post_message(ExportEnded(export_view.ExportOutcome(-1, [], [f"error: could not start {argv[0]}: {exc}"],
                                                                    self.run.name)))
            return
        assert self._proc.stderr is not None and self._proc.stdout is not None
        for line in self._proc.stderr:
            if line.strip():
                lines.append(line.rstrip())
                self.post_message(ExportProgressed(line.strip()))
        stdout = self._proc.stdout.read()  # only the written files' paths: small
        self.post_message(ExportEnded(export_view.read_outcome(self._proc.wait(), stdout, lines, self.run.name)))

    @on(ExportProgressed)
    def _export_progressed(self, event: ExportProgressed) -> None:
        self._set_status(Text(event.line, style="yellow"))

    @on(ExportEnded)
    def _export_ended(self, event: ExportEnded) -> None:
        self.running = False
        self._proc = None
        self.outcome = outcome = event.outcome
        self.query_one("#export-run", Button).disabled = False
        self.query_one("#export-progress").display = False
        result = Text()
        if outcome.ok:
            self._set_status(Text("export finished", style="bold green"))
            self.notify("export finished", title=self.run.name)
        else:
            self._set_status(Text(f"tui-tuner export failed (exit status {outcome.returncode})", style="bold red"))
            result.append(outcome.error + "\n", style="red")
        if outcome.files:
            result.append("files\n", style="bold")
            for f in outcome.files:
                result.append(f"  {f}\n")
        if outcome.verification:
            result.append("verification\n", style="bold")
            for line in outcome.verification:
                bad = "NOT verified" in line or "MISMATCH" in line
                result.append(f"  {line}\n", style="yellow" if bad else "green")
        self.query_one("#export-result", Static).update(result)
        commands = self.query_one("#export-commands", OptionList)
        commands.clear_options()
        for n, (what, command) in enumerate(outcome.commands() if outcome.ok else []):
            commands.add_option(Option(Text.assemble((command, "bold"), ("   " + what, "dim")), id=str(n)))
        commands.display = commands.option_count > 0
        if commands.option_count:
            commands.highlighted = 0
            commands.focus()

    def _set_status(self, text: Text) -> None:
        self.query_one("#export-status", Static).update(text)

    # ------------------------------------------------------------------ actions
    @on(OptionList.OptionSelected, "#export-commands")
    def action_copy_command(self) -> None:
        if self.outcome is None or not self.outcome.ok:
            return
        commands = self.outcome.commands()
        index = self.query_one("#export-commands", OptionList).highlighted or 0
        if not commands:
            return
        command = commands[min(index, len(commands) - 1)][1]
        self.app.copy_to_clipboard(command)
        self.notify(command, title="copied (if your terminal allows it); or select it here", timeout=15)

    def action_back(self) -> None:
        self._stop_process()
        self.app.pop_screen()

    def _stop_process(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
