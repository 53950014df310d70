"""The tui-tuner Textual app: Hardware, Config, Train and Runs screens over the run directory.

    tui-tuner                     # opens on configs/quickstart.yaml when the project has one

The app is a shell: it starts training workers as separate processes (they outlive it),
and learns everything about a run from its directory through `tui_tuner.rundir.runs`. Quitting
never stops a run; on start the app offers to reattach to runs still running.
Screens are imported when first shown, so the first frame stays light (no torch).
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any, Iterable

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen

SCREENS_IN_ORDER = ("hardware", "config", "train", "runs", "chat", "learn")
WATCH_S = 3.0
"""How often the app looks at the runs it follows, to say when one ends or stalls."""
ENDINGS = ("finished", "stopped", "failed", "crashed")


class TunerApp(App[int]):
    """Six modes, one per screen; F1-F6 switch between them from anywhere."""

    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses elsewhere still find it
    TITLE = "tui-tuner"
    BINDINGS = [
        Binding("f1", "show('hardware')", "Hardware", priority=True),
        Binding("f2", "show('config')", "Config", priority=True),
        Binding("f3", "show('train')", "Train", priority=True),
        Binding("f4", "show('runs')", "Runs", priority=True),
        Binding("f5", "show('chat')", "Chat", priority=True),
        Binding("f6", "show('learn')", "Learn", priority=True),
        Binding("ctrl+t", "toggle_theme", "Light/dark", show=False),
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
        # Leaves a text field, so the keys above (q) work again; screens that use escape
        # themselves (back, cancel) take it first.
        Binding("escape", "leave_field", "Leave field", show=False),
    ]

    attached_run: reactive[Any] = reactive(None, init=False)
    """The `RunDir` the Train screen shows (set by Config's start, Runs' open, reattach)."""

    def __init__(self, *, project_dir: Path | None = None, config_path: Path | None = None,
                 runs_dir: Path | None = None, offer_reattach: bool = True, offer_quickstart: bool = True,
                 start_screen: str = "config") -> None:
        # Building the first frame allocates many long-lived objects; collecting garbage
        # among them before it is drawn is wasted work. Collection resumes right after the
        # first frame (`_resume_gc`).
        self._gc_paused = gc.isenabled()
        gc.disable()
        super().__init__()
        self.project_dir = (project_dir or Path.cwd()).resolve()
        if config_path is None:
            quickstart = self.project_dir / "configs" / "quickstart.yaml"
            config_path = quickstart if quickstart.is_file() else None
        self.config_path = config_path
        self.runs_dir = (runs_dir or self.project_dir / "runs").resolve()
        self.offer_reattach = offer_reattach
        self.offer_quickstart = offer_quickstart and config_path is None
        """Started in an empty folder: offer to write the quickstart project there."""
        self.start_screen = start_screen
        self.watched: dict[Path, tuple[Any, str]] = {}
        """Runs this app started or showed: path -> (RunDir, last state seen), told about when they end."""
        self._watching = False
        self.config_screen: Any = None
        """The Config screen once built: asked whether it holds unsaved edits before quitting."""
        self._first_frame_shown = False
        self._after_first_frame: list[Any] = []
        self.add_mode("hardware", self._make_hardware)
        self.add_mode("config", self._make_config)
        self.add_mode("train", self._make_train)
        self.add_mode("runs", self._make_runs)
        self.add_mode("chat", self._make_chat)
        self.add_mode("learn", self._make_learn)

    # Screens are built on first use; their modules (and the domain modules they use)
    # load then, not before the first frame.
    def _make_hardware(self) -> Screen:
        from tui_tuner.tui.screens.hardware import HardwareScreen
        return HardwareScreen()

    def _make_config(self) -> Screen:
        from tui_tuner.tui.screens.config import ConfigScreen
        self.config_screen = ConfigScreen(self.config_path)
        return self.config_screen

    def _make_train(self) -> Screen:
        from tui_tuner.tui.screens.train import TrainScreen
        return TrainScreen()

    def _make_runs(self) -> Screen:
        from tui_tuner.tui.screens.runs import RunsScreen
        return RunsScreen()

    def _make_chat(self) -> Screen:
        from tui_tuner.tui.screens.chat import ChatScreen
        return ChatScreen()

    def _make_learn(self) -> Screen:
        from tui_tuner.tui.screens.learn import LearnScreen
        return LearnScreen()

    def on_mount(self) -> None:
        self.switch_mode(self.start_screen)
        self.set_timer(5.0, self._resume_gc)  # in case no frame is ever drawn

    def _resume_gc(self) -> None:
        if self._gc_paused:
            self._gc_paused = False
            gc.enable()

    def after_first_frame(self, callback: Any) -> None:
        """Run `callback` once the first frame is on screen (now, if it already is).

        Screens defer their heavier set-up (the config schema, run listings) to here, so
        what the user sees first is drawn before anything else competes for the CPU.
        """
        if self._first_frame_shown:
            callback()
        else:
            self._after_first_frame.append(callback)

    def on_ready(self) -> None:
        self.set_interval(WATCH_S, self.check_watched_runs)
        self._resume_gc()
        self._first_frame_shown = True
        callbacks, self._after_first_frame = self._after_first_frame, []
        for callback in callbacks:
            callback()
        if self.offer_reattach:
            self.find_running_runs()
        if self.offer_quickstart:
            from tui_tuner.config.starter import is_empty_folder

            if is_empty_folder(self.project_dir):
                self._offer_quickstart()

    # ------------------------------------------------------------------ navigation
    def action_show(self, mode: str) -> None:
        if self.current_mode != mode:
            self.switch_mode(mode)

    def action_leave_field(self) -> None:
        from textual.widgets import Input, TextArea

        if isinstance(self.focused, (Input, TextArea)):
            self.screen.set_focus(None)

    async def action_quit(self) -> None:
        """Quit (runs keep training); asks first when the config holds unsaved edits."""
        config = self.config_screen
        if config is None or not config.is_mounted or not config.dirty:
            self.exit()
            return
        from tui_tuner.tui.screens.modals import ConfirmModal

        if any(isinstance(s, ConfirmModal) for s in self.screen_stack):
            return  # already asking

        def answered(quit_anyway: bool | None) -> None:
            if quit_anyway:
                self.exit()

        self.push_screen(ConfirmModal("Quit without saving the config?",
                                      f"{config.file_label()} has unsaved edits. Save with ctrl+s on the Config "
                                      "screen, or quit and lose them. Runs keep training either way.",
                                      yes="Quit", no="Stay", danger=True), answered)

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.current_theme.dark else "textual-dark"

    def attach(self, run: Any) -> None:
        """Show `run` (a `RunDir`) on the Train screen (and tell when it ends)."""
        self.watch_run(run)
        self.attached_run = run
        self.action_show("train")

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for mode in SCREENS_IN_ORDER:
            yield SystemCommand(f"Show {mode}", f"Switch to the {mode.title()} screen",
                                lambda mode=mode: self.action_show(mode))
        yield SystemCommand("Toggle light/dark", "Switch between the light and the dark theme", self.action_toggle_theme)
        yield SystemCommand("Reattach to a running run", "List runs still training and show one",
                            self.find_running_runs)
        yield SystemCommand("Write the quickstart", "configs/quickstart.yaml and its sample data into this folder "
                            "(files already there are kept)", self.write_quickstart)
        yield SystemCommand("Export a run", "GGUF + Ollama Modelfile, or a merged model, from a trained run",
                            self.choose_run_to_export)

    def _offer_quickstart(self) -> None:
        from tui_tuner.tui.screens.modals import ConfirmModal

        def answered(write: bool | None) -> None:
            if write:
                self.write_quickstart()

        self.push_screen(ConfirmModal(
            "This folder is empty: write the quickstart here?",
            "configs/quickstart.yaml and its sample data (data/sample.jsonl, data/heldout.jsonl): LoRA on a "
            "tiny demo model built on this machine, about a minute on a CPU, nothing downloaded. "
            "Then ctrl+r starts it. Or start from a blank config (the palette's \"Write the quickstart\" "
            "does this later).", yes="Write the quickstart", no="Blank config"), answered)

    def write_quickstart(self) -> None:
        """Write the packaged quickstart into the project folder (never over a file) and open its config."""
        from tui_tuner.config.starter import write_quickstart

        try:
            written = write_quickstart(self.project_dir)
        except OSError as exc:
            self.notify(f"cannot write the quickstart into {self.project_dir}: {exc}", severity="error", timeout=10)
            return
        self.config_path = written.config
        config = self.config_screen
        if config is not None and config.is_mounted:
            if config.dirty:
                self.notify(f"{written.describe()}; your unsaved config stays open: open configs/quickstart.yaml "
                            "with ctrl+o", title="Quickstart", timeout=10)
                return
            config.load_file(written.config)
        self.notify(f"{written.describe()}. ctrl+r starts the run.", title="Quickstart", timeout=10)

    def choose_run_to_export(self) -> None:
        """List the runs that saved an adapter or a checkpoint; open the Export view on the one chosen."""
        from tui_tuner.rundir.runs import list_runs
        from tui_tuner.tui.screens.modals import ChoiceModal

        runs = {r.name: r for r in reversed(list_runs(self.runs_dir))
                if r.adapter_dir.is_dir() or r.latest_checkpoint() is not None}

        def chosen(name: str | None) -> None:
            if name:
                self.export_run(runs[name])

        self.push_screen(ChoiceModal("Export which run?", [(n, n) for n in runs],
                                     empty_text="no run has saved an adapter yet"), chosen)

    def export_run(self, run: Any) -> None:
        """Open the Export view on `run` (a `RunDir`)."""
        from tui_tuner.tui.screens.export import ExportScreen

        self.push_screen(ExportScreen(run))

    # ------------------------------------------------------------------ runs
    def config_choices(self) -> list[tuple[Path, str]]:
        """Configs the Open dialog lists: the project's `configs/` and every run's config."""
        out = [(p, f"configs/{p.name}") for p in sorted((self.project_dir / "configs").glob("*.y*ml"))]
        from tui_tuner.rundir.runs import list_runs

        for run in list_runs(self.runs_dir):
            out.append((run.config_path, f"run {run.name}"))
        return out

    @work(thread=True, exclusive=True, group="find-running", exit_on_error=False)
    def find_running_runs(self) -> None:
        """Look for running runs off the UI thread, then offer to reattach."""
        from tui_tuner.rundir.runs import list_runs

        running = [r for r in list_runs(self.runs_dir) if r.status().state in ("running", "stopping", "queued")]
        self.call_from_thread(self._offer_reattach, running)

    def _offer_reattach(self, running: list) -> None:
        if not running:
            return
        from tui_tuner.tui.screens.modals import ChoiceModal

        by_name = {r.name: r for r in running}
        choices = [(r.name, f"{r.name}  step {r.status().step}/{r.status().max_steps or '?'}") for r in running]

        def chosen(name: str | None) -> None:
            if name:
                self.attach(by_name[name])

        self.push_screen(ChoiceModal(f"{len(running)} run(s) still training — reattach?", choices,
                                     body="Choose one to watch it, or Escape to carry on."), chosen)

    def on_run_requested(self, message: Any) -> None:
        """Config's "Start run" (a `RunRequested` message bubbling up from the screen)."""
        self.start_run(message.config, message.config_path)

    def start_run(self, config: Any, config_path: Path | None) -> None:
        """Create a run directory for `config`, start its worker process and attach to it.

        The run goes into this app's runs folder (the one the Runs screen lists), whatever
        `output.runs_dir` the config names; relative data paths resolve against the
        config's project folder.
        """
        from tui_tuner.config.schema import project_dir_for
        from tui_tuner.rundir.runs import create_run, start_worker

        base = project_dir_for(config_path) if config_path else self.project_dir
        config = config.model_copy(deep=True)
        config.output.runs_dir = str(self.runs_dir)
        try:
            run = create_run(config, base, source_config=config_path)
            start_worker(run, detach=True)
        except Exception as exc:  # a refused start is shown in words, never as a traceback
            self.notify(f"could not start the run: {exc}", title="start failed", severity="error", timeout=10)
            return
        self.notify(f"started {run.name}")
        self.attach(run)  # followed from here: told when it ends

    # ------------------------------------------------------------------ told when a run ends
    def watch_run(self, run: Any) -> None:
        """Follow `run` so the app rings and notifies when it ends or stalls (only while it is active)."""
        if run.path not in self.watched:
            self.watched[run.path] = (run, run.status().state)

    def check_watched_runs(self) -> None:
        if self.watched and not self._watching:
            self._watching = True
            self.watch_worker(list(self.watched.values()))

    @work(thread=True, exclusive=True, group="watch-runs", exit_on_error=False)
    def watch_worker(self, watched: list[tuple[Any, str]]) -> None:
        """Read each followed run's state off the UI thread; report endings and stalls."""
        import time

        changes = []
        try:
            for run, seen in watched:
                state = run.status().state
                if state == "running" and seen in ("running", "stalled"):
                    try:
                        quiet = time.time() - run.events_path.stat().st_mtime
                        limit = run.config().notify.stall_minutes * 60
                    except Exception:  # no events yet, or an unreadable config: not a stall
                        quiet, limit = 0.0, 1.0
                    if quiet > limit:
                        state = "stalled"
                if state != seen:
                    changes.append((run, seen, state))
        finally:
            self.call_from_thread(self._watched_read, changes)

    def _watched_read(self, changes: list[tuple[Any, str, str]]) -> None:
        self._watching = False
        for run, seen, state in changes:
            if run.path not in self.watched:
                continue
            self.watched[run.path] = (run, state)
            if state in ENDINGS or state == "stalled":
                if seen in ENDINGS:
                    continue  # already ended when first seen: nothing new to tell
                self.tell_run_ended(run, state)

    def tell_run_ended(self, run: Any, state: str) -> None:
        """Ring the bell, ask the terminal for a desktop notification (OSC 9 / 777) and show a toast."""
        from tui_tuner.tui.terminal_notify import notification_sequences

        st = run.status()
        loss = f", loss {st.loss:.4f}" if isinstance(st.loss, (int, float)) else ""
        body = {"finished": f"finished at step {st.step}{loss}",
                "stopped": f"stopped at step {st.step}{loss}",
                "stalled": f"has logged nothing for a while (step {st.step}): is it stuck?"}.get(
                    state, f"{state}: {st.error or 'see its log'}")
        self.bell()
        driver = self._driver
        if driver is not None:
            driver.write(notification_sequences(f"tui-tuner: {run.name}", body))
            driver.flush()
        hint = {"finished": "  g: export · f5: chat", "stopped": "  g: export · f5: chat"}.get(state, "")
        self.notify(body + hint, title=run.name, severity="error" if state in ("failed", "crashed") else
                    "warning" if state == "stalled" else "information", timeout=30)

    async def carry_settings(self, values: dict[tuple[str, ...], Any]) -> None:
        """Apply settings from the Hardware screen's fit panel to the config being edited."""
        await self.switch_mode("config")
        changes = self.screen.use_settings(values)
        if changes:
            lines = "\n".join(f"• {c.describe()}" for c in changes)
            self.notify(f"settings carried into the config; the demo-only settings became a recipe for "
                        f"this model:\n{lines}\nReview and save it (ctrl+s).", title="Config", timeout=20)
        else:
            self.notify("settings carried into the config: review and save it", title="Config")


def build_app(**kwargs: Any) -> TunerApp:
    """The one factory the CLI, tests and screenshot tool use."""
    return TunerApp(**kwargs)


def run_app() -> int:
    """Run the TUI in this terminal; returns the exit status."""
    app = build_app()
    try:
        result = app.run()
    finally:
        app._resume_gc()
    return int(result or 0)
