"""`DataIssue`: one problem in a dataset file, with where it is and what to do."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

MAX_PRINTED_ISSUES = 20
"""Printed lists stop after this many issues and say how many more there are."""


@dataclass
class DataIssue:
    """A problem in a dataset file. `line` is 1-based (a row number for parquet), `column` 1-based."""

    file: str
    line: int | None
    message: str
    column: int | None = None
    severity: Literal["error", "warning"] = "error"
    row_based: bool = False
    """True for parquet, whose records have row numbers rather than lines."""

    def format(self) -> str:
        """`file:line:col: message` (or `file: row N: message` for parquet)."""
        where = self.file
        if self.line is not None:
            if self.row_based:
                where += f": row {self.line}"
            else:
                where += f":{self.line}"
                if self.column is not None:
                    where += f":{self.column}"
        return f"{where}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "column": self.column, "message": self.message,
                "severity": self.severity, "row_based": self.row_based}


def capped(issues: list[DataIssue], limit: int = MAX_PRINTED_ISSUES) -> tuple[list[DataIssue], int]:
    """The first `limit` issues (errors before warnings, each in file order) and how many were left out."""
    ordered = sorted(issues, key=lambda i: (i.severity != "error", i.line or 0, i.column or 0))
    return ordered[:limit], max(0, len(ordered) - limit)
