"""Run names: safe to use as a folder name under the runs directory, never a path."""

from __future__ import annotations

import re

_ALLOWED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")


def run_name_problem(name: str) -> str | None:
    """Why `name` cannot be a run name, or None when it can."""
    if "\x00" in name:
        return "a run name cannot contain a NUL byte."
    if "/" in name or "\\" in name or name in (".", "..") or ".." in name:
        return (f"{name!r} is a path, not a name: run names stay inside the runs directory. "
                "Use letters, digits, '.', '_' and '-' (e.g. my-run).")
    if not _ALLOWED.fullmatch(name):
        return (f"{name!r} is not a valid run name: start with a letter or digit, then up to 79 "
                "letters, digits, '.', '_' or '-'.")
    return None


def slug(text: str) -> str:
    """A run-name-safe slug of free text (e.g. a model id)."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", text.split("/")[-1]).strip("-._")
    return (s or "run")[:48]
