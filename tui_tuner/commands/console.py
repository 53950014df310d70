"""Shared terminal output for the headless commands (rich, no Textual)."""

from __future__ import annotations

import sys
from typing import Iterable


def print_issues(issues: Iterable, file=None) -> None:
    """Print config/data issues one per line, errors in red and warnings in yellow."""
    from rich.console import Console
    from rich.markup import escape

    console = Console(file=file or sys.stderr, highlight=False, soft_wrap=True)
    for issue in issues:
        colour = "red" if issue.severity == "error" else "yellow"
        console.print(f"[{colour}]{issue.severity}[/]: {escape(issue.format())}")
