"""A list of config/data issues; highlighting one shows its config line, choosing one jumps there.

A dataset issue is labelled with its dataset file and line (`data/train.jsonl:8`), never as a
config line.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from tui_tuner.tui.messages import IssueChosen
from tui_tuner.tui.text import short_path


class IssueList(OptionList):
    """Errors in red then warnings in yellow, each prefixed with its YAML line."""

    def __init__(self, *, ok_text: str = "no problems", id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.ok_text = ok_text
        self.config_file: str | None = None
        self._issues: list = []
        self._shown: tuple = ()

    def show_issues(self, issues: list, *, config_file: str | None = None) -> None:
        """Show `ConfigIssue`s (anything with key, line, message, severity, file).

        An issue whose `file` is neither None nor `config_file` is about a dataset file.
        """
        self.config_file = config_file
        key = tuple((i.key, i.line, i.message, i.severity, i.file) for i in issues)
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
            if self.is_data_issue(issue):
                where = short_path(issue.file) + (f":{issue.line}" if issue.line is not None else "")
                text.append(f"{where}: ", style="bold")
            elif issue.line is not None:
                text.append(f"line {issue.line}: ", style="bold")
            if issue.key:
                text.append(f"{issue.key} ", style=colour)
            text.append(issue.message)
            options.append(Option(text, id=f"issue-{n}"))
        self.add_options(options)

    def is_data_issue(self, issue) -> bool:
        return getattr(issue, "file", None) not in (None, self.config_file)

    def _chosen(self, option_id: str | None, focus: bool) -> None:
        if option_id and option_id.startswith("issue-"):
            issue = self._issues[int(option_id.removeprefix("issue-"))]
            self.post_message(IssueChosen(issue.key, None if self.is_data_issue(issue) else issue.line, focus))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self._chosen(event.option_id, True)

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        # Moving through the list keeps the issue's YAML line in view without leaving the list.
        event.stop()
        if self.has_focus:
            self._chosen(event.option_id, False)
