"""Small text helpers shared by the screens."""

from __future__ import annotations

import os
from pathlib import Path


def short_path(path: Path | str) -> str:
    """`path` relative to the working folder when inside it, with `~` for the home folder otherwise."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve())) or "."
    except (ValueError, OSError):
        pass
    home = os.path.expanduser("~")
    text = str(p)
    return "~" + text[len(home):] if home != "/" and text.startswith(home + os.sep) else text
