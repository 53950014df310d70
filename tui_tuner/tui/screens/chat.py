"""Chat screen: talk to a run's adapter or any checkpoint, optionally base and tuned side by side.

Pick a run and a checkpoint, Load (a thread worker loads the model; the status line says
what it is doing), type a prompt and press Enter. Answers stream in token by token; in
base-vs-tuned mode each prompt is answered by the base weights (adapter switched off)
and the tuned model, in two columns. Esc stops a generation, ctrl+l clears, ctrl+s
saves the transcript (markdown + JSONL) in the run directory under `chats/`.

Thread workers never touch widgets: they post `ModelLoaded`, `TokensStreamed`, ... and
the handlers on the UI thread update the screen.
"""

from __future__ import annotations

import threading
import time
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
from textual.widget import Widget
from textual.widgets import Button, Input, Select, Static, Switch

from tui_tuner.inference.transcripts import Turn, history_for, save_transcript
from tui_tuner.tui.widgets.chat_log import ChatLog
from tui_tuner.tui.widgets.generation_panel import GenerationPanel
from tui_tuner.tui.widgets.key_bar import KeyBar

STREAM_BATCH_S = 0.05
"""Tokens are posted to the UI at most this often: one repaint per batch, not per token."""
FINAL = "final"
TAB_ORDER = ("#chat-input", "#gen-temperature", "#gen-top_p", "#gen-max_new_tokens", "#gen-repetition_penalty",
             "#gen-system", "#gen-compare", "#chat-run", "#chat-checkpoint", "#chat-load")
"""The Tab stops, in order: the message box, what changes the next answer, then the model to load."""


@dataclass
class ModelLoaded(Message):
    chat: Any


@dataclass
class ModelLoadFailed(Message):
    error: str


@dataclass
class AnswerStarted(Message):
    model: str


@dataclass
class TokensStreamed(Message):
    model: str
    text: str


@dataclass
class AnswerFinished(Message):
    model: str
    result: Any


@dataclass
class GenerationEnded(Message):
    pass


def footer_for(result: Any) -> str:
    parts = [f"{result.new_tokens} tokens", f"{result.tokens_per_s:.1f} tok/s"]
    parts.append({"eos": "end of turn", "length": "max tokens reached", "stopped": "stopped",
                  "error": f"error: {result.error}"}.get(result.finish_reason, result.finish_reason))
    if result.truncation_note:
        parts.append(result.truncation_note)
    return " · ".join(parts)


class ChatScreen(Screen):
    """Chat with a checkpoint; base vs tuned side by side."""

    CSS_PATH = "chat.tcss"
    AUTO_FOCUS = "#chat-input"
    BINDINGS = [
        # `i` is typed into a text field, so ctrl+n is the same jump from the settings fields.
        Binding("i,ctrl+n", "focus_message", "Message"),
        Binding("escape", "stop_generation", "Stop"),
        Binding("ctrl+l", "clear", "Clear"),
        Binding("ctrl+s", "save", "Save transcript"),
        Binding("ctrl+b", "toggle_compare", "Base vs tuned"),
    ]

    def __init__(self, target: str | Path | None = None, checkpoint: int | None = None) -> None:
        super().__init__()
        self.initial = (str(target), checkpoint) if target else None
        self.chat: Any = None
        self.turns: list[Turn] = []
        self.generating = False
        self.loading = False
        self._stop = threading.Event()

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield Static("Chat", id="chat-status", classes="screen-title")
        with Horizontal(id="chat-body"):
            with VerticalScroll(id="chat-side"):  # scrolls on short terminals (80x24)
                yield Static("Model", classes="pane-title")
                yield Select([], prompt="run", id="chat-run", allow_blank=True, compact=True)
                yield Select([(FINAL, FINAL)], value=FINAL, id="chat-checkpoint", allow_blank=False, compact=True)
                yield Button("Load", id="chat-load", variant="primary")
                yield GenerationPanel(id="chat-settings")
            with Vertical(id="chat-main"):
                with Horizontal(id="chat-logs"):
                    yield ChatLog("base", id="chat-log-base")
                    yield ChatLog("tuned", id="chat-log-tuned")
                yield Input(placeholder="Load a model, then type a message and press Enter", id="chat-input")
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#chat-log-base").display = False
        self.list_runs_worker()
        if self.initial:
            self.load(*self.initial)

    @property
    def focus_chain(self) -> list[Widget]:
        """The Tab stops (`TAB_ORDER`) that can take focus now; scrolling panels are left out."""
        chain: list[Widget] = []
        for selector in TAB_ORDER:
            chain.extend(widget for widget in self.query(selector) if widget.focusable)
        return chain

    # ------------------------------------------------------------------ picking a model
    @work(thread=True, group="chat-runs", exit_on_error=False)
    def list_runs_worker(self) -> None:
        from tui_tuner.rundir.runs import list_runs

        runs_dir = getattr(self.app, "runs_dir", Path("runs"))
        names = [(r.name, str(r.path)) for r in reversed(list_runs(runs_dir))]
        self.app.call_from_thread(self._runs_listed, names)

    def _runs_listed(self, names: list[tuple[str, str]]) -> None:
        self.query_one("#chat-run", Select).set_options(names)

    @on(Select.Changed, "#chat-run")
    def _run_chosen(self, event: Select.Changed) -> None:
        if event.value is Select.BLANK:
            return
        from tui_tuner.inference.chat_model import run_checkpoints

        options = [(FINAL, FINAL)] + [(p.name, p.name) for p in reversed(run_checkpoints(Path(str(event.value))))]
        picker = self.query_one("#chat-checkpoint", Select)
        picker.set_options(options)
        picker.value = FINAL

    @on(Button.Pressed, "#chat-load")
    def _load_pressed(self) -> None:
        run = self.query_one("#chat-run", Select).value
        if run is Select.BLANK:
            self.notify("choose a run first", severity="warning")
            return
        checkpoint = self.query_one("#chat-checkpoint", Select).value
        step = None if checkpoint in (FINAL, Select.BLANK) else int(str(checkpoint).rsplit("-", 1)[1])
        self.load(str(run), step)

    def load(self, target: str, checkpoint: int | None = None) -> None:
        if self.loading or self.generating:
            self.notify("wait for the current load or answer to finish", severity="warning")
            return
        self.loading = True
        self.set_status(f"loading {Path(target).name}" + (f" checkpoint {checkpoint}" if checkpoint else "") + " …",
                        "busy")
        self.load_worker(target, checkpoint)

    @work(thread=True, exclusive=True, group="chat-load", exit_on_error=False)
    def load_worker(self, target: str, checkpoint: int | None) -> None:
        from tui_tuner.inference.chat_model import SourceError, load_chat_model, resolve_source

        try:
            runs_dir = getattr(self.app, "runs_dir", Path("runs"))
            source = resolve_source(target, runs_dir=runs_dir, checkpoint=checkpoint)

            def downloading(progress) -> None:  # a base model the cache lacks: bytes, rate and ETA in the status
                self.app.call_from_thread(self.set_status, progress.text(), "busy")

            self.post_message(ModelLoaded(load_chat_model(source, download_progress=downloading)))
        except (SourceError, OSError, ValueError, RuntimeError, ImportError) as exc:
            self.post_message(ModelLoadFailed(str(exc)))

    @on(ModelLoaded)
    def _model_loaded(self, event: ModelLoaded) -> None:
        self.loading = False
        self.chat = event.chat
        if not self.chat.has_adapter and self.compare:
            self.query_one("#gen-compare").value = False
        notes = f"  ({'; '.join(self.chat.notes)})" if self.chat.notes else ""
        self.set_status(f"ready: {self.chat.source.label}{notes}", "ready")
        chat_input = self.query_one("#chat-input", Input)
        chat_input.placeholder = "Type a message and press Enter (Esc stops an answer)"
        chat_input.focus()

    @on(ModelLoadFailed)
    def _model_load_failed(self, event: ModelLoadFailed) -> None:
        self.loading = False
        self.set_status(f"could not load: {event.error}", "error")

    # ------------------------------------------------------------------ chatting
    @property
    def compare(self) -> bool:
        return self.query_one(GenerationPanel).compare

    @on(Input.Submitted, "#chat-input")
    def _submitted(self, event: Input.Submitted) -> None:
        self.send(event.value)

    def send(self, text: str) -> None:
        text = text.strip()
        if not text:
            return
        if self.chat is None:
            self.notify("load a model first", severity="warning")
            return
        if self.generating:
            self.notify("an answer is still being generated (Esc stops it)", severity="warning")
            return
        compare = self.compare and self.chat.has_adapter
        self.query_one("#chat-input", Input).value = ""
        self.turns.append(Turn("user", text))
        for log in self._logs(compare):
            log.add("user", text)
        models = ["base", "tuned"] if compare else ["tuned"]
        histories = {m: history_for(self.turns, m) for m in models}
        self.generating = True
        self._stop = threading.Event()
        self.set_status("generating … (Esc stops)", "busy")
        self.generate_worker(models, histories, self.query_one(GenerationPanel).settings(), self._stop)

    def _logs(self, compare: bool) -> list[ChatLog]:
        tuned = self.query_one("#chat-log-tuned", ChatLog)
        return [self.query_one("#chat-log-base", ChatLog), tuned] if compare else [tuned]

    @work(thread=True, exclusive=True, group="chat-generate", exit_on_error=False)
    def generate_worker(self, models: list[str], histories: dict, settings: Any, stop: threading.Event) -> None:
        try:
            for model in models:
                if stop.is_set():
                    break
                self.post_message(AnswerStarted(model))
                pending: list[str] = []
                last = [0.0]  # the first piece is posted at once

                def on_text(piece: str, model: str = model) -> None:
                    pending.append(piece)
                    if time.monotonic() - last[0] >= STREAM_BATCH_S:
                        self.post_message(TokensStreamed(model, "".join(pending)))
                        pending.clear()
                        last[0] = time.monotonic()

                # Generates on this worker thread: no second thread, tokens handed over in batches.
                result = self.chat.generate(histories[model], settings, use_adapter=model == "tuned",
                                            stop_event=stop, on_text=on_text)
                if pending:
                    self.post_message(TokensStreamed(model, "".join(pending)))
                self.post_message(AnswerFinished(model, result))
        finally:
            self.post_message(GenerationEnded())

    @on(AnswerStarted)
    def _answer_started(self, event: AnswerStarted) -> None:
        self.query_one(f"#chat-log-{event.model}", ChatLog).add(event.model)

    @on(TokensStreamed)
    def _tokens_streamed(self, event: TokensStreamed) -> None:
        self.query_one(f"#chat-log-{event.model}", ChatLog).append(event.text)

    @on(AnswerFinished)
    def _answer_finished(self, event: AnswerFinished) -> None:
        result = event.result
        self.query_one(f"#chat-log-{event.model}", ChatLog).finish(footer_for(result))
        self.turns.append(Turn("assistant", result.text, event.model,
                               {"tokens": result.new_tokens, "finish": result.finish_reason,
                                "truncation": result.truncation_note or None}))

    @on(GenerationEnded)
    def _generation_ended(self) -> None:
        self.generating = False
        stopped = self._stop.is_set()
        self.set_status(("stopped" if stopped else "ready") + f": {self.chat.source.label}", "ready")

    def set_status(self, text: str, state: str) -> None:
        """The status line: `state` is busy, ready or error (a CSS class)."""
        status = self.query_one("#chat-status", Static)
        status.update(Text.assemble(("Chat  ", "bold"), text))
        for name in ("busy", "ready", "error"):
            status.set_class(name == state, f"-{name}")

    # ------------------------------------------------------------------ actions
    def action_focus_message(self) -> None:
        self.query_one("#chat-input", Input).focus()

    def action_stop_generation(self) -> None:
        """Escape: stop the answer being generated; with none, leave the text field (as on every screen)."""
        if self.generating:
            self._stop.set()
            self.set_status("stopping …", "busy")
        elif isinstance(self.focused, Input):
            self.set_focus(None)

    def action_clear(self) -> None:
        if self.generating:
            self.notify("stop the answer first (Esc)", severity="warning")
            return
        self.turns.clear()
        for log in self._logs(True):
            log.clear()

    def action_save(self) -> None:
        if self.chat is None or not self.turns:
            self.notify("nothing to save yet", severity="warning")
            return
        from dataclasses import asdict

        settings = asdict(self.query_one(GenerationPanel).settings())
        try:
            files = save_transcript(self.chat.source.output_dir, self.turns, self.chat.source.label, settings)
        except OSError as exc:
            self.notify(f"could not save: {exc}", severity="error")
            return
        self.notify("saved " + ", ".join(f.name for f in files) + f" in {files[0].parent}")

    def action_toggle_compare(self) -> None:
        switch = self.query_one("#gen-compare")
        switch.value = not switch.value

    @on(Switch.Changed, "#gen-compare")
    def _compare_changed(self, event: Switch.Changed) -> None:
        if event.value and self.chat is not None and not self.chat.has_adapter:
            self.notify("a full model has no adapter to switch off: nothing to compare with", severity="warning")
            event.switch.value = False
            return
        self.query_one("#chat-log-base").display = event.value
