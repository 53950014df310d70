"""A list of config/data issues; choosing one jumps to its line or field."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from tui_tuner.tui.messages import IssueChosen


class IssueList(OptionList):
    """Errors in red then warnings in yellow, each prefixed with its YAML line."""

    def __init__(self, *, ok_text: str = "no problems", id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.ok_text = ok_text
        self._issues: list = []
        self._shown: tuple = ()

    def show_issues(self, issues: list) -> None:
        """Show `ConfigIssue`s (anything with key, line, message, severity)."""
        key = tuple((i.key, i.line, i.message, i.severity) for i in issues)
        if key == self._shown and self.option_count:
            return
        self._shown = key
        self._issues = list(issues)
        self.clear_options()
        if not issues:
            self.add_option(Option(Text("✓ " + self.ok_text, style="green"), disabled=True))
            return
        options = []
        for n, issue in enumerate(issues):
            text = Text()
            colour = "red" if issue.severity == "error" else "yellow"
            text.append("✗ " if issue.severity == "error" else "! ", style=f"bold {colour}")
            if issue.line is not None:
                text.append(f"line {issue.line}: ", style="bold")
            if issue.key:
                text.append(f"{issue.key} ", style=colour)
            text.append(issue.message)
            options.append(Option(text, id=f"issue-{n}"))
        self.add_options(options)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option_id and event.option_id.startswith("issue-"):
            issue = self._issues[int(event.option_id.removeprefix("issue-"))]
            self.post_message(IssueChosen(issue.key, issue.line))
