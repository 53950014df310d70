"""The raw-YAML editor of the Config screen: a code `TextArea` that marks lines with errors."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.widgets import TextArea


class YamlEditor(TextArea):
    """YAML with syntax highlighting; lines holding an error are underlined in red."""

    def __init__(self, text: str = "", *, id: str | None = None, classes: str | None = None) -> None:
        # Plain text first: the YAML grammar is loaded by `highlight()` after the first frame.
        super().__init__(text, id=id, classes=classes, show_line_numbers=True, tab_behavior="indent",
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

    def go_to_line(self, line: int) -> None:
        """Put the cursor at the start of a 1-based line and scroll it into view."""
        row = max(0, min(line - 1, self.document.line_count - 1))
        self.move_cursor((row, 0), center=True)
        self.focus()
