"""Small self-contained dialogs: confirm, ask for a path, pick one item from a list, pick GRPO rewards.

Each is a typed `ModalScreen[T]`; callers `push_screen(modal, callback)` or, inside a
worker, `await push_screen_wait(modal)`. Styles live in DEFAULT_CSS so a dialog can be
reused anywhere without the app's stylesheet. Each shows its own keys in a `KeyBar` at the
bottom, over the key bar of the screen behind it (whose own keys wait until the dialog closes).
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from tui_tuner.tui.widgets.key_bar import KeyBar

_DIALOG_CSS = """
    {name} {{ align: center middle; }}
    {name} > Vertical {{
        width: 64; max-width: 100%; height: auto; max-height: 90%;
        border: thick $primary; background: $surface; padding: 0 1;
    }}
    {name} .dialog-title {{ text-style: bold; width: 100%; margin-bottom: 1; }}
    {name} .dialog-body {{ width: 100%; height: auto; max-height: 14; margin-bottom: 1; }}
    {name} .dialog-buttons {{ height: auto; align-horizontal: right; width: 100%; }}
    {name} Button {{ margin-left: 1; min-width: 10; }}
    {name} KeyBar {{ dock: bottom; height: 1; }}
"""


class ConfirmModal(ModalScreen[bool]):
    """Yes/No question; y (or Enter on the yes button) confirms, n or Escape cancels."""

    DEFAULT_CSS = _DIALOG_CSS.format(name="ConfirmModal")
    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n", "answer(False)", "No"),
        Binding("escape", "answer(False)", "No", show=False),
    ]

    def __init__(self, title: str, body: str = "", *, yes: str = "Yes", no: str = "No", danger: bool = False) -> None:
        super().__init__()
        self.title_text, self.body, self.yes, self.no, self.danger = title, body, yes, no, danger
        # The key bar names the keys after the buttons ("y Write the quickstart", "n Blank config").
        self._bindings.key_to_bindings["y"] = [Binding("y", "answer(True)", yes)]
        self._bindings.key_to_bindings["n"] = [Binding("n", "answer(False)", no)]

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Text(self.title_text), classes="dialog-title")
            if self.body:
                yield Static(Text(self.body), classes="dialog-body")
            with Horizontal(classes="dialog-buttons"):
                yield Button(self.no, id="no")
                yield Button(self.yes, id="yes", variant="error" if self.danger else "primary")
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#yes" if not self.danger else "#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


class PathModal(ModalScreen[str | None]):
    """Ask for a file path (save as); Enter in the field saves, Escape cancels."""

    DEFAULT_CSS = _DIALOG_CSS.format(name="PathModal")
    BINDINGS = [
        # Priority so the key bar can show it over the field's own (hidden) enter; only while the field has focus.
        Binding("enter", "submit", "Save", priority=True),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, title: str, value: str = "", *, action: str = "Save") -> None:
        super().__init__()
        self.title_text, self.value, self.action_label = title, value, action
        self._bindings.key_to_bindings["enter"] = [Binding("enter", "submit", action, priority=True)]

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Text(self.title_text), classes="dialog-title")
            yield Input(self.value, id="path", classes="dialog-body")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button(self.action_label, id="ok", variant="primary")
        yield KeyBar()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # On a button, enter presses that button (Cancel cancels), so it is not "save" there.
        return action != "submit" or isinstance(self.focused, Input)

    def action_submit(self) -> None:
        self._finish(self.query_one("#path", Input).value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._finish(event.value)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self._finish(self.query_one("#path", Input).value)
        else:
            self.dismiss(None)

    def _finish(self, value: str) -> None:
        self.dismiss(value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ChoiceModal(ModalScreen[str | None]):
    """Pick one of (value, label) choices; Enter picks, Escape cancels."""

    DEFAULT_CSS = _DIALOG_CSS.format(name="ChoiceModal")
    BINDINGS = [
        # Priority so the key bar can show it over the list's own (hidden) enter; only while the list has focus.
        Binding("enter", "pick", "Pick", priority=True),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, title: str, choices: list[tuple[str, str]], *, body: str = "", empty_text: str = "nothing to choose") -> None:
        super().__init__()
        self.title_text, self.choices, self.body, self.empty_text = title, choices, body, empty_text

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Text(self.title_text), classes="dialog-title")
            if self.body:
                yield Static(Text(self.body))
            options = [Option(Text(label), id=str(i)) for i, (_, label) in enumerate(self.choices)]
            if not options:
                options = [Option(Text(self.empty_text, style="dim"), disabled=True)]
            yield OptionList(*options, classes="dialog-body")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")
        yield KeyBar()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        focused = self.focused
        return action != "pick" or (isinstance(focused, OptionList) and focused.highlighted is not None)

    def action_pick(self) -> None:
        self.query_one(OptionList).action_select()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.choices[int(event.option_id)][0])

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class TextModal(ModalScreen[None]):
    """A long explanation in full (wrapped, scrollable); Escape, q or Enter closes it."""

    DEFAULT_CSS = _DIALOG_CSS.format(name="TextModal") + """
    TextModal > Vertical { width: 100; }
    TextModal VerticalScroll { height: auto; max-height: 18; }
    """
    BINDINGS = [Binding("escape,q,enter", "close", "Close")]

    def __init__(self, title: str, body: Text | str) -> None:
        super().__init__()
        self.title_text, self.body = title, body

    def compose(self) -> ComposeResult:
        from textual.containers import VerticalScroll

        with Vertical():
            yield Label(Text(self.title_text), classes="dialog-title")
            with VerticalScroll(can_focus=True):
                yield Static(self.body if isinstance(self.body, Text) else Text(self.body), id="text-body")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Close", id="close", variant="primary")
        yield KeyBar()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)


class RewardPickerModal(ModalScreen[list[str] | None]):
    """Choose GRPO's reward functions: built-ins ticked in a list, your own as `file.py:function`.

    Your own entries are checked as `config check` checks them (the file is read, never run)
    before the dialog closes; it returns the names, built-ins first.
    """

    DEFAULT_CSS = _DIALOG_CSS.format(name="RewardPickerModal") + """
    RewardPickerModal > Vertical { width: 92; }
    RewardPickerModal SelectionList { height: auto; max-height: 9; margin-bottom: 1; }
    RewardPickerModal #reward-problem { color: $error; height: auto; }
    """
    BINDINGS = [
        # Priority so the key bar can show them over the list's and the field's own (hidden) keys;
        # each only where it applies (`check_action`).
        Binding("space", "tick", "Tick", priority=True),
        Binding("enter", "use", "Use", priority=True),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, chosen: list[str], base_dir=None) -> None:
        super().__init__()
        self.chosen, self.base_dir = chosen, base_dir

    def compose(self) -> ComposeResult:
        from textual.widgets import SelectionList

        from tui_tuner.config.schema import BUILTIN_REWARDS
        from tui_tuner.data.rewards import BUILTIN_REWARD_HELP

        own = [n for n in self.chosen if n not in BUILTIN_REWARDS]
        width = max(len(n) for n in BUILTIN_REWARDS) + 2
        with Vertical():
            yield Label(Text("GRPO reward functions"), classes="dialog-title")
            yield SelectionList[str](*[(Text.assemble((name.ljust(width), "bold"), (BUILTIN_REWARD_HELP[name], "dim")),
                                        name, name in self.chosen) for name in BUILTIN_REWARDS],
                                     id="builtin-rewards")
            yield Label(Text("your own, comma-separated: file.py:function (its code runs in the training worker)"))
            yield Input(", ".join(own), placeholder="rewards.py:my_reward", id="own-rewards")
            yield Static("", id="reward-problem")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Use", id="ok", variant="primary")
        yield KeyBar()

    def on_mount(self) -> None:
        from textual.widgets import SelectionList

        self.query_one(SelectionList).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        from textual.widgets import SelectionList

        focused = self.focused
        if action == "tick":
            return isinstance(focused, SelectionList) and focused.highlighted is not None
        if action == "use":
            return isinstance(focused, Input)
        return True

    def action_tick(self) -> None:
        from textual.widgets import SelectionList

        rewards = self.query_one(SelectionList)
        if rewards.highlighted is not None:
            rewards.toggle(rewards.get_option_at_index(rewards.highlighted))

    def action_use(self) -> None:
        self.finish()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.finish()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self.finish()
        else:
            self.dismiss(None)

    def finish(self) -> None:
        """Close with the chosen names, or say what is wrong with them and stay open."""
        from textual.widgets import SelectionList

        from tui_tuner.config.schema import BUILTIN_REWARDS
        from tui_tuner.data.rewards import reward_entry_problem

        selected = set(self.query_one(SelectionList).selected)
        picked = [n for n in BUILTIN_REWARDS if n in selected]
        own = [n.strip() for n in self.query_one("#own-rewards", Input).value.split(",") if n.strip()]
        problems = [p for p in (reward_entry_problem(n, self.base_dir) for n in own) if p]
        if not picked and not own:
            problems.append("GRPO needs at least one reward function: tick a built-in or name your own.")
        if problems:
            self.query_one("#reward-problem", Static).update(Text("✗ " + "\n✗ ".join(problems)))
            return
        self.dismiss(picked + own)

    def action_cancel(self) -> None:
        self.dismiss(None)
