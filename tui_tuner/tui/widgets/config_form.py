"""The form half of the Config screen: the common fields, each with its error beneath it.

The form never owns the config: it posts `FieldEdited` when the user changes a field, the
screen writes that into the YAML text, validates, and hands back values (`show_values`)
and issues (`show_issues`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Input, Label, Select, Static

from tui_tuner.tui.messages import FieldEdited
from tui_tuner.tui.yaml_edit import get_path


@dataclass(frozen=True)
class FormField:
    """One form row: the config key it edits, its label, and a choice list for selects.

    `objective`: the row is shown only for that objective. `names_list`: the value is a list
    typed as comma-separated names (entries given as mappings keep their other settings).
    """

    path: tuple[str, ...]
    label: str
    choices: tuple[str, ...] = ()
    placeholder: str = ""
    objective: str | None = None
    names_list: bool = False

    @property
    def key(self) -> str:
        return ".".join(self.path)

    @property
    def widget_id(self) -> str:
        return "field-" + self.key.replace(".", "-").replace("_", "-")


FORM_FIELDS: tuple[FormField, ...] = (
    FormField(("model", "name_or_path"), "Model", placeholder="hub id, folder or demo"),
    FormField(("method",), "Method", choices=("lora", "qlora", "full")),
    FormField(("objective",), "Objective", choices=("sft", "dpo", "orpo", "kto", "reward", "grpo")),
    FormField(("grpo", "rewards"), "Rewards", placeholder="format, answer_match, file.py:function",
              objective="grpo", names_list=True),
    FormField(("lora", "r"), "LoRA r"),
    FormField(("lora", "alpha"), "LoRA alpha"),
    FormField(("training", "learning_rate"), "Learning rate"),
    FormField(("training", "epochs"), "Epochs"),
    FormField(("training", "max_steps"), "Max steps", placeholder="none: use epochs"),
    FormField(("training", "batch_size"), "Batch size"),
    FormField(("training", "grad_accumulation"), "Grad accum."),
    FormField(("model", "max_seq_length"), "Seq length"),
    FormField(("data", "train"), "Train data", placeholder="data/train.jsonl"),
    FormField(("data", "eval"), "Eval data", placeholder="none: use eval split"),
    FormField(("data", "eval_split"), "Eval split", placeholder="0.1 = hold out 10%"),
    FormField(("output", "run_name"), "Run name", placeholder="none: model-method"),
)


def parse_field_text(text: str) -> Any:
    """What the user typed, read as YAML would read it: `16` -> 16, `2e-4` -> 0.0002, `` -> None."""
    text = text.strip()
    if not text:
        return None
    if re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", text):
        return float(text)
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (int, float, str, bool)) else text


def entry_name(entry: Any) -> str:
    """The name of a list entry: a plain string, or a mapping's `function`."""
    return str(entry.get("function", "")) if isinstance(entry, dict) else str(entry)


def parse_names_text(text: str, shown: Any) -> list:
    """Comma-separated names as a list; an entry of `shown` (the list as it was) with the same name
    is kept as it was, so a reward's weight or column survives editing the names."""
    previous = {entry_name(e): e for e in shown} if isinstance(shown, list) else {}
    names = [n.strip() for n in text.split(",") if n.strip()]
    return [previous.get(n, n) for n in names]


def display_value(value: Any) -> str:
    """How a config value appears in its input box."""
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(entry_name(e) for e in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


_UNSET = object()


class ConfigForm(VerticalScroll):
    """Label, input and (when invalid) an error line for each common field."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._shown: dict[str, Any] = {}
        """The value each field was last filled with from the YAML (or edited to)."""

    def compose(self) -> ComposeResult:
        for f in FORM_FIELDS:
            # A row for one objective's setting starts hidden; `show_values` shows it for that objective.
            with Horizontal(classes="form-row -objective-only" if f.objective else "form-row", id=f"{f.widget_id}-row"):
                yield Label(f.label, classes="form-label")
                if f.choices:
                    yield Select([(c, c) for c in f.choices], id=f.widget_id, allow_blank=False,
                                 value=f.choices[0], compact=True)
                else:
                    yield Input(placeholder=f.placeholder, id=f.widget_id, compact=True)
                if f.names_list:
                    yield Button("pick", id=f"{f.widget_id}-pick", compact=True, classes="form-pick")
            yield Static("", id=f"{f.widget_id}-error", classes="form-error")

    def _field_for(self, widget_id: str | None) -> FormField | None:
        return next((f for f in FORM_FIELDS if f.widget_id == widget_id), None)

    def on_input_changed(self, event: Input.Changed) -> None:
        field = self._field_for(event.input.id)
        if field is not None:
            event.stop()
            parsed = (parse_names_text(event.value, self._shown.get(field.key)) if field.names_list
                      else parse_field_text(event.value))
            self._edited(field, event.input, event.value, parsed)

    def on_select_changed(self, event: Select.Changed) -> None:
        field = self._field_for(event.select.id)
        if field is not None and event.value is not Select.NULL:
            event.stop()
            self._edited(field, event.select, event.value, event.value)

    def _edited(self, field: FormField, widget: Input | Select, event_value: Any, parsed: Any) -> None:
        # Only the user's own edits are written back: the user edits the focused field,
        # while the form being filled from the YAML (or a Select settling its initial
        # value after mounting) changes fields that are not focused. A stale event (the
        # widget shows something else by now) or one that repeats the YAML is dropped too.
        if not widget.has_focus_within or event_value != widget.value:
            return
        if parsed == self._shown.get(field.key, _UNSET):
            return
        self._shown[field.key] = parsed
        self.post_message(FieldEdited(field.path, parsed))

    def show_values(self, raw: dict[str, Any], defaults: dict[str, Any]) -> None:
        """Fill each field from the parsed YAML (`raw`), falling back to the schema's defaults.

        A field the user is typing in is left alone so the cursor never jumps. Rows that
        belong to another objective are hidden.
        """
        objective = raw.get("objective") or defaults.get("objective")
        for f in FORM_FIELDS:
            value = get_path(raw, f.path)
            if value is None and not get_path_present(raw, f.path):
                value = get_path(defaults, f.path)
            if f.objective is not None:
                shown = objective == f.objective
                self.query_one(f"#{f.widget_id}-row").display = shown
                if not shown:
                    self.query_one(f"#{f.widget_id}-error").display = False
            widget = self.query_one(f"#{f.widget_id}")
            if widget.has_focus:
                continue
            self._shown[f.key] = value
            if isinstance(widget, Select):
                if value in f.choices and widget.value != value:
                    with widget.prevent(Select.Changed):
                        widget.value = value
            elif isinstance(widget, Input):
                text = display_value(value)
                if widget.value != text:
                    with widget.prevent(Input.Changed):
                        widget.value = text

    def show_issues(self, issues: list) -> list:
        """Put each issue beside its field; returns the issues that belong to no field."""
        unplaced = list(issues)
        for f in FORM_FIELDS:
            mine = [i for i in issues if i.key == f.key or i.key.startswith(f.key + ".")]
            for i in mine:
                if i in unplaced:
                    unplaced.remove(i)
            error_line = self.query_one(f"#{f.widget_id}-error", Static)
            widget = self.query_one(f"#{f.widget_id}")
            worst = next((i for i in mine if i.severity == "error"), mine[0] if mine else None)
            widget.set_class(bool(worst) and worst.severity == "error", "-invalid")
            error_line.set_class(bool(worst) and worst.severity == "warning", "-warning")
            row_shown = self.query_one(f"#{f.widget_id}-row").display
            error_line.display = worst is not None and row_shown
            mark = "✗ " if worst and worst.severity == "error" else "! "
            error_line.update(Text(mark + worst.message) if worst else "")
        return unplaced


def get_path_present(raw: Any, path: tuple[str, ...]) -> bool:
    """Whether `path` is written in the YAML at all (a written `null` counts)."""
    node = raw
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True
