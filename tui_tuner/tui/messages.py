"""Messages shared between widgets and screens (small dataclasses, named in the past tense).

Kept apart from the widgets so a screen can handle them without importing the widget
modules before it needs them (the first frame stays small).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message


@dataclass
class FieldEdited(Message):
    """The user changed a config form field; `value` is already parsed (number, null or text)."""

    path: tuple[str, ...]
    value: Any


@dataclass
class IssueChosen(Message):
    """The user picked (Enter, click: `focus`) or highlighted an issue: show its config line.

    `line` is a line of the config; None for a dataset issue (its config key is shown instead).
    """

    key: str
    line: int | None
    focus: bool = True
