"""The raw-YAML editor of the Config screen: a code `TextArea` that marks lines with errors.

Tab leaves the editor like every other field (a newcomer tabbing through the screen must not
indent the config into an invalid one); `ctrl+]` indents and `ctrl+\\` dedents the cursor's
line or the selected lines by two spaces, and Enter keeps the current line's indent.
"""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.widgets import TextArea


class YamlEditor(TextArea):
    """YAML with syntax highlighting; lines holding an error are underlined in red."""

    BINDINGS = [
        Binding("ctrl+right_square_bracket", "indent", "Indent", show=False),
        Binding("ctrl+backslash", "dedent", "Dedent", show=False),
    ]

    def __init__(self, text: str = "", *, id: str | None = None, classes: str | None = None) -> None:
        # Plain text first: the YAML grammar is loaded by `highlight()` after the first frame.
        super().__init__(text, id=id, classes=classes, show_line_numbers=True, tab_behavior="focus",
                         soft_wrap=False)
        self.indent_width = 2
        self._error_lines: frozenset[int] = frozenset()
        self._warning_lines: frozenset[int] = frozenset()

    def highlight(self) -> None:
        """Turn on YAML syntax highlighting (needs tree-sitter-yaml; without it, stays plain)."""
        if "yaml" in self.available_languages:
            self.language = "yaml"

    def mark_lines(self, errors: set[int], warnings: set[int] | None = None) -> None:
        """Mark 1-based line numbers as holding an error (red) or a warning (yellow)."""
        errors_0 = frozenset(n - 1 for n in errors)
        warnings_0 = frozenset(n - 1 for n in (warnings or set())) - errors_0
        if (errors_0, warnings_0) == (self._error_lines, self._warning_lines):
            return
        self._error_lines, self._warning_lines = errors_0, warnings_0
        self._line_cache.clear()  # rendered lines are cached by position, not by our marks
        self.refresh()

    def get_line(self, line_index: int) -> Text:
        line = super().get_line(line_index)
        if line_index in self._error_lines:
            line.stylize(Style(underline=True, color="red"))
        elif line_index in self._warning_lines:
            line.stylize(Style(underline=True))
        return line

    def go_to_line(self, line: int, *, focus: bool = True) -> None:
        """Put the cursor at the start of a 1-based line and scroll it into view (and focus the editor)."""
        row = max(0, min(line - 1, self.document.line_count - 1))
        self.move_cursor((row, 0), center=True)
        if focus:
            self.focus()

    def _selected_rows(self) -> range:
        start, end = sorted((self.selection.start, self.selection.end))
        last = end[0] - 1 if end[0] > start[0] and end[1] == 0 else end[0]
        return range(start[0], last + 1)

    def action_indent(self) -> None:
        """Indent the cursor's line (or every selected line) by one level."""
        pad = " " * self.indent_width
        for row in self._selected_rows():
            self.insert(pad, (row, 0), maintain_selection_offset=True)

    def action_dedent(self) -> None:
        """Remove up to one level of indent from the cursor's line (or every selected line)."""
        for row in self._selected_rows():
            line = self.document.get_line(row)
            n = min(self.indent_width, len(line) - len(line.lstrip(" ")))
            if n:
                self.delete((row, 0), (row, n), maintain_selection_offset=True)

    async def _on_key(self, event) -> None:
        # Enter keeps the indent of the line it splits, so a new key lands in its section.
        if event.key == "enter" and not self.read_only:
            row, col = self.cursor_location
            line = self.document.get_line(row)
            indent = line[: len(line) - len(line.lstrip(" "))][:col]
            event.stop()
            event.prevent_default()
            self.replace("\n" + indent, *self.selection, maintain_selection_offset=False)
            return
        await super()._on_key(event)
