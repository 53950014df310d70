"""Config screen: edit a run config as a form and as raw YAML, validated as you type.

The YAML text is the single source of truth. A form edit rewrites one line of it; a YAML
edit refills the form. Validation (`tui_tuner.config.schema.load_config_text`) runs a moment
after the last keystroke; each error appears under its form field and on its YAML line.
The dataset check runs in a thread worker and posts `DataChecked`.

The first frame shows the YAML at once; the schema (pydantic) is imported in a thread
right after it, then the form is mounted and the text validated (`SchemaLoaded`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Button, Static, TextArea

from tui_tuner.tui.messages import FieldEdited, IssueChosen
from tui_tuner.tui.text import short_path
from tui_tuner.tui.widgets.yaml_editor import YamlEditor
from tui_tuner.tui.yaml_edit import set_yaml_value
from tui_tuner.tui.widgets.key_bar import KeyBar

if TYPE_CHECKING:
    from tui_tuner.config.schema import LoadedConfig, RunConfig
    from tui_tuner.tui.widgets.config_form import ConfigForm
    from tui_tuner.tui.widgets.issue_list import IssueList

VALIDATE_DELAY_S = 0.25
"""Validate this long after the last keystroke, so typing never waits on validation."""


_NOT_YET = object()


class SchemaLoaded(Message):
    """`tui_tuner.config.schema` finished importing (in a thread, after the first frame)."""


@dataclass
class DataChecked(Message):
    """The dataset check for the config text `for_text` finished (report None: no check available)."""

    for_text: str
    summary: str
    issues: list


@dataclass
class RunRequested(Message):
    """The user asked to start a run from a valid config (the app creates and attaches it)."""

    config: RunConfig
    config_path: Path | None


@dataclass
class PreflightChecked(Message):
    """The pre-start check of the config text `for_text` finished with `issues` ([] : it can start)."""

    for_text: str
    issues: list


class ConfigScreen(Screen):
    """Form + YAML editor + issues + dataset summary, with save, save as and start."""

    AUTO_FOCUS = ""
    """Nothing that eats keys has focus at first (so `q` quits, Tab walks the screen); the issue
    list takes focus once it is mounted."""

    BINDINGS = [
        # Open and Save as are on the buttons (with their keys); the footer keeps the frequent ones.
        Binding("ctrl+o", "open", "Open", show=False),
        Binding("ctrl+s", "save", "Save"),
        Binding("f9", "save_as", "Save as", show=False),
        Binding("ctrl+r", "start_run", "Start run"),
    ]

    def __init__(self, config_path: Path | None = None, text: str | None = None) -> None:
        super().__init__()
        self.config_path = config_path
        if text is None and config_path and config_path.is_file():
            text = config_path.read_text(encoding="utf-8")
        self._initial_text = text
        """None: start from the schema's defaults once it has loaded."""
        self.saved_text = text or ""
        self.loaded: LoadedConfig | None = None
        """None until the schema has loaded and validated the text."""
        self.data_issues: list = []
        self.preflight_issues: list = []
        """What the last pre-start check found (cleared when the text changes)."""
        self._preflight_running = False
        self._train_at_load: Any = _NOT_YET
        """The train data of the text as opened: the demo-eval offer follows a change from it."""
        self._asked_about_eval: set[str] = set()
        self._validate_timer: Timer | None = None
        self._defaults: dict[str, Any] = {}
        self._pending_settings: dict[tuple[str, ...], Any] | None = None

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield Static(id="config-title", classes="screen-title")
        # Only the YAML is drawn in the first frame; the form, the issue list and the
        # buttons are mounted once the schema has loaded (`_schema_loaded`).
        with Horizontal(id="config-body"):
            with Vertical(id="yaml-pane"):
                yield YamlEditor(self._initial_text or "", id="yaml-editor")
        yield Static(Text("loading the config schema...", style="dim"), id="data-summary")
        yield KeyBar()

    def on_mount(self) -> None:
        self._update_title()
        self.query_one(YamlEditor).move_cursor((0, 0))
        self.app.after_first_frame(self.load_schema)

    @work(thread=True, exclusive=True, group="schema", exit_on_error=False)
    def load_schema(self) -> None:
        import tui_tuner.config.schema  # noqa: F401  (pydantic: ~0.3 s, kept off the first frame)

        self.post_message(SchemaLoaded())

    @on(SchemaLoaded)
    async def _schema_loaded(self) -> None:
        from tui_tuner.config.schema import RunConfig
        from tui_tuner.tui.widgets.config_form import ConfigForm
        from tui_tuner.tui.widgets.issue_list import IssueList

        if not self.is_attached:
            return  # the app closed before the schema arrived
        self._defaults = RunConfig().model_dump(mode="json")
        self.query_one(YamlEditor).highlight()
        if self._initial_text is None:  # no config file: start from the defaults
            text = RunConfig().to_yaml()
            self.saved_text = text
            self.query_one(YamlEditor).load_text(text)
        await self.query_one("#config-body").mount(ConfigForm(id="config-form"), before="#yaml-pane")
        await self.query_one("#yaml-pane").mount(IssueList(ok_text="config is valid", id="config-issues"))
        await self.mount(Horizontal(Button("Open ^o", id="open"), Button("Save ^s", id="save"),
                                    Button("Save as f9", id="save-as"),
                                    Button("Start run ^r", id="start", variant="success", disabled=True),
                                    id="config-buttons", classes="button-bar"), before=self.query_one(KeyBar))
        if not self.is_attached:
            return
        self.validate_now()
        if self.focused is None:
            self.query_one(IssueList).focus()
        if self._pending_settings:
            self.use_settings(self._pending_settings)
            self._pending_settings = None

    @property
    def ready(self) -> bool:
        """Whether the schema has loaded and the text been validated at least once."""
        return self.loaded is not None

    # ------------------------------------------------------------------ state
    @property
    def text(self) -> str:
        return self.query_one(YamlEditor).text

    @property
    def issues(self) -> list:
        """Every issue shown: config, then dataset, then what the last pre-start check found."""
        issues = list(self.loaded.issues) if self.loaded else []
        return issues + self.data_issues + self.preflight_issues

    @property
    def errors(self) -> list:
        """Every error that blocks starting."""
        return [i for i in self.issues if i.severity == "error"]

    def is_config_issue(self, issue: Any) -> bool:
        """Whether `issue.line` is a line of this config (else it is a line of a dataset file)."""
        return issue.file in (None, self.file_label())

    @property
    def dirty(self) -> bool:
        return self.text != self.saved_text

    def file_label(self) -> str:
        return short_path(self.config_path) if self.config_path else "<unsaved config>"

    def _update_title(self) -> None:
        title = Text()
        title.append("Config ", style="bold")
        title.append(self.file_label())
        if self.is_mounted and self.dirty:
            title.append("  (modified)", style="yellow")
        self.query_one("#config-title", Static).update(title)

    # ------------------------------------------------------------------ editing
    @on(FieldEdited)
    def _field_edited(self, event: FieldEdited) -> None:
        editor = self.query_one(YamlEditor)
        new_text = set_yaml_value(editor.text, event.path, event.value)
        if new_text != editor.text:
            with editor.prevent(TextArea.Changed):
                editor.replace(new_text, editor.document.start, editor.document.end, maintain_selection_offset=False)
        self._schedule_validation()

    @on(TextArea.Changed, "#yaml-editor")
    def _yaml_edited(self) -> None:
        self._schedule_validation()

    def _schedule_validation(self) -> None:
        self.preflight_issues = []  # they were about the text before this edit
        if not self.ready:
            return  # validated as soon as the schema has loaded
        if self._validate_timer is not None:
            self._validate_timer.stop()
        self._validate_timer = self.set_timer(VALIDATE_DELAY_S, self.validate_now)

    def validate_now(self) -> None:
        """Validate the current text and show every issue (tests call this to skip the delay)."""
        from tui_tuner.config.schema import load_config_text

        text = self.text
        self.loaded = load_config_text(text, file=self.file_label())
        self.loaded.path = self.config_path
        from tui_tuner.tui.widgets.config_form import ConfigForm

        if self.loaded.raw:
            self.query_one(ConfigForm).show_values(self.loaded.raw, self._defaults)
        if self._train_at_load is _NOT_YET and self.loaded.config is not None:
            self._train_at_load = self.loaded.config.data.train
        self._show_validation()
        self._offer_to_clear_demo_eval()

    def _show_validation(self) -> None:
        assert self.loaded is not None
        self._show_all_issues()
        self._update_title()
        if self.loaded.ok:
            self.check_dataset(self.text, self.loaded)
        else:
            self.data_issues = []
            self.query_one("#data-summary", Static).update(Text("dataset: checked once the config is valid", style="dim"))

    @work(thread=True, exclusive=True, group="data-check", exit_on_error=False)
    def check_dataset(self, text: str, loaded: LoadedConfig) -> None:
        """Run the dataset check off the UI thread; the result comes back as `DataChecked`."""
        try:
            from tui_tuner.data import check_config_dataset
        except ImportError:
            self.post_message(DataChecked(text, "dataset: the data checker is not available in this build", []))
            return
        from tui_tuner.config.schema import yaml_positions

        report = check_config_dataset(loaded, download=False)  # a hub dataset is checked once on this machine
        issues = list(report.issues_as_config_issues())
        # The checker numbers config lines from the saved file; the editor may hold edits.
        positions = yaml_positions(text)
        for issue in issues:
            path = tuple(issue.key.split(".")) if issue.key else ()
            while path and path not in positions:
                path = path[:-1]
            if path and issue.file in (None, self.file_label()):
                issue.line, issue.column = positions[path]
        self.post_message(DataChecked(text, report.summary_text(), issues))

    @on(DataChecked)
    def _data_checked(self, event: DataChecked) -> None:
        if event.for_text != self.text:
            return  # the config changed meanwhile; a newer check is on its way
        changed = [(i.key, i.message) for i in event.issues] != [(i.key, i.message) for i in self.data_issues]
        self.data_issues = event.issues
        self.query_one("#data-summary", Static).update(Text(event.summary))
        if changed and self.loaded is not None:
            self._show_all_issues()

    def _show_all_issues(self) -> None:
        """Put every issue beside its field, in the list, and on its YAML line; gate Start."""
        from tui_tuner.tui.widgets.config_form import ConfigForm
        from tui_tuner.tui.widgets.issue_list import IssueList

        issues = self.issues
        self.query_one(ConfigForm).show_issues(issues)
        self.query_one(IssueList).show_issues(issues, config_file=self.file_label())
        mine = [i for i in issues if i.line and self.is_config_issue(i)]
        self.query_one(YamlEditor).mark_lines({i.line for i in mine if i.severity == "error"},
                                               {i.line for i in mine if i.severity == "warning"})
        self.query_one("#start", Button).disabled = bool(self.errors) or self._preflight_running

    @on(IssueChosen)
    def _issue_chosen(self, event: IssueChosen) -> None:
        from tui_tuner.config.schema import yaml_positions

        line = event.line
        if not line and event.key:  # a dataset issue: show the config line naming the file
            path = tuple(event.key.split("."))
            positions = yaml_positions(self.text)
            while path and path not in positions:
                path = path[:-1]
            line = positions[path][0] if path else None
        if line:
            self.query_one(YamlEditor).go_to_line(line, focus=event.focus)

    # ------------------------------------------------------------------ actions
    def on_button_pressed(self, event: Button.Pressed) -> None:
        actions = {"open": self.action_open, "save": self.action_save, "save-as": self.action_save_as,
                   "start": self.action_start_run}
        if event.button.id in actions:
            event.stop()
            actions[event.button.id]()
        elif event.button.id == "field-grpo-rewards-pick":
            event.stop()
            self.action_pick_rewards()

    def action_pick_rewards(self) -> None:
        """Open the GRPO reward picker; what it returns replaces `grpo.rewards` in the YAML."""
        from tui_tuner.tui.screens.modals import RewardPickerModal
        from tui_tuner.tui.widgets.config_form import entry_name
        from tui_tuner.tui.yaml_edit import get_path

        if self.loaded is None:
            return
        current = get_path(self.loaded.raw or {}, ("grpo", "rewards"))
        if not isinstance(current, list):
            current = list(self._defaults.get("grpo", {}).get("rewards", []))
        base = self.loaded.base_dir

        def picked(names: list[str] | None) -> None:
            if names is None:
                return
            previous = {entry_name(e): e for e in current}  # keep a reward's weight and column
            self.post_message(FieldEdited(("grpo", "rewards"), [previous.get(n, n) for n in names]))

        self.app.push_screen(RewardPickerModal([entry_name(e) for e in current], base), picked)

    def load_file(self, path: Path) -> None:
        """Replace the editor's content with a config file."""
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            self.notify(f"cannot open {path}: {exc.strerror}", severity="error")
            return
        self.config_path = path
        self.saved_text = text
        self._train_at_load = _NOT_YET
        editor = self.query_one(YamlEditor)
        editor.load_text(text)
        if self.ready:
            self.validate_now()

    def action_open(self) -> None:
        from tui_tuner.tui.screens.modals import ChoiceModal

        choices = [(str(p), label) for p, label in self.app.config_choices()]

        def opened(value: str | None) -> None:
            if value:
                self.load_file(Path(value))

        self.app.push_screen(ChoiceModal("Open a config", choices, empty_text="no configs found"), opened)

    def action_save(self) -> None:
        if self.config_path is None:
            self.action_save_as()
            return
        self._write(self.config_path)

    def action_save_as(self) -> None:
        from tui_tuner.tui.screens.modals import PathModal

        suggestion = str(self.config_path or Path("configs") / "my-run.yaml")

        def chosen(value: str | None) -> None:
            if value:
                self._write(Path(value).expanduser())

        self.app.push_screen(PathModal("Save config as", suggestion), chosen)

    def _write(self, path: Path) -> None:
        text = self.text
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            self.notify(f"cannot save {path}: {exc.strerror}", severity="error")
            return
        self.config_path, self.saved_text = path, text
        if self.loaded is not None:
            self.loaded.path = path
        self._update_title()
        self.notify(f"saved {path}")

    def action_start_run(self) -> None:
        if not self.ready:
            self.notify("still loading the config schema; try again in a moment", severity="warning")
            return
        self.validate_now()
        if self.errors:
            self._refuse(self.errors)
            return
        assert self.loaded is not None and self.loaded.config is not None
        if self._preflight_running:
            return
        self._preflight_running = True
        self.query_one("#start", Button).disabled = True
        self.query_one("#data-summary", Static).update(
            Text("checking the model, the data files and the disk before starting...", style="dim"))
        self.run_preflight(self.text, self.loaded)

    def _refuse(self, errors: list) -> None:
        first = errors[0]
        where = (f"line {first.line}: " if self.is_config_issue(first) else f"{short_path(first.file)}:{first.line}: ") \
            if first.line else ""
        self.notify(f"fix {len(errors)} error(s) before starting — {where}{first.key} {first.message}",
                    title="cannot start", severity="error", timeout=12)

    @work(thread=True, exclusive=True, group="preflight", exit_on_error=False)
    def run_preflight(self, text: str, loaded: LoadedConfig) -> None:
        """The checks `tui-tuner train` makes before it creates a run (model reachable or cached,
        gated, data files, disk space), off the UI thread: a hub lookup can take seconds."""
        from tui_tuner.config.schema import yaml_positions
        from tui_tuner.train.preflight import preflight_issues

        try:
            issues = preflight_issues(loaded)
        except Exception as exc:  # the check itself broke: say so rather than start blind
            from tui_tuner.config.schema import ConfigIssue

            issues = [ConfigIssue("", f"the pre-start check failed: {type(exc).__name__}: {exc}")]
        positions = yaml_positions(text)  # lines of the text being edited, not of the saved file
        for issue in issues:
            path = tuple(issue.key.split(".")) if issue.key else ()
            issue.line, issue.column = positions.get(path, (None, None))
            issue.file = self.file_label()
        self.post_message(PreflightChecked(text, issues))

    @on(PreflightChecked)
    def _preflight_checked(self, event: PreflightChecked) -> None:
        self._preflight_running = False
        self.preflight_issues = event.issues
        self._show_all_issues()
        if event.for_text != self.text:
            self.notify("the config changed while it was being checked: press start again", severity="warning")
            return
        errors = [i for i in event.issues if i.severity == "error"]
        if errors:
            self._refuse(errors)
            return
        for warning in event.issues:
            self.notify(f"{warning.key}: {warning.message}", title="warning", severity="warning", timeout=10)
        assert self.loaded is not None and self.loaded.config is not None
        self.post_message(RunRequested(self.loaded.config, self.config_path))

    def use_settings(self, values: dict[tuple[str, ...], Any]) -> list:
        """Apply settings carried over from the Hardware screen's fit panel.

        Moving to a real model also replaces the demo-only settings still at their demo
        values (`tui_tuner.config.recipe`); returns those `SettingChange`s.
        """
        if not self.ready:
            self._pending_settings = values  # applied once the schema has loaded
            return []
        import yaml

        from tui_tuner.config.recipe import leave_demo_settings

        editor = self.query_one(YamlEditor)
        text = editor.text
        for path, value in values.items():
            text = set_yaml_value(text, path, value)
        changes = []
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError:
            raw = None
        model, method = values.get(("model", "name_or_path")), values.get(("method",), "lora")
        if isinstance(raw, dict) and isinstance(model, str):
            changes = leave_demo_settings(raw, model, str(method))
            for change in changes:
                text = set_yaml_value(text, change.path, change.new)
        editor.replace(text, editor.document.start, editor.document.end, maintain_selection_offset=False)
        self.validate_now()
        return changes

    # ------------------------------------------------------------------ own data
    def _offer_to_clear_demo_eval(self) -> None:
        """After the train data moved off the demo's, offer to drop the demo's eval set (once per file)."""
        from tui_tuner.config.recipe import DEMO_DATA, eval_is_demo

        loaded = self.loaded
        if loaded is None or loaded.config is None or not eval_is_demo(loaded.raw):
            return
        train = loaded.config.data.train
        if train in DEMO_DATA or train == self._train_at_load or train in self._asked_about_eval:
            return
        path = loaded.config.resolve_path(train, loaded.base_dir)
        if path is None or not path.is_file():
            return  # still being typed
        self._asked_about_eval.add(train)
        from tui_tuner.tui.screens.modals import ConfirmModal

        def answered(clear: bool | None) -> None:
            if clear:
                editor = self.query_one(YamlEditor)
                text = set_yaml_value(editor.text, ("data", "eval"), None)
                if not (loaded.raw.get("data") or {}).get("eval_split"):
                    text = set_yaml_value(text, ("data", "eval_split"), 0.1)
                editor.replace(text, editor.document.start, editor.document.end, maintain_selection_offset=False)
                self.validate_now()
                self.notify("data.eval cleared; 10% of your train data is held out for eval loss instead",
                            title="Config")

        self.app.push_screen(ConfirmModal(
            "Clear the demo's eval set?",
            f"data.eval is still {loaded.raw['data']['eval']}: the demo's questions about Bramble, a "
            f"fictional robot. Your eval loss (and the Eval view) would score your model on them. Clear it "
            f"and hold out 10% of {train} instead? (Or set data.eval to your own held-out file.)",
            yes="Clear it", no="Keep it"), answered)
