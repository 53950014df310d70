"""Folders that appear whole or not at all, safe when several processes build the same one."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def build_folder_atomically(final: Path, build: Callable[[Path], None], is_built: Callable[[Path], bool], *,
                            replace: bool) -> Path:
    """Run `build` into a private folder beside `final`, then rename it into place; return `final`.

    With `replace`, an existing `final` is moved aside first (rename is atomic, rmtree of a live
    folder is not). A process that loses the race to another keeps the winner's copy when
    `is_built` accepts it, and raises otherwise.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-build-", dir=final.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; a model cache is readable like any model folder
    try:
        build(tmp)
        if replace and final.exists():
            old = final.parent / f".{final.name}-old-{os.getpid()}"
            try:
                os.rename(final, old)
            except OSError:
                pass  # another process replaced or removed it meanwhile
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.rename(tmp, final)
        except OSError:
            if not is_built(final):  # the folder that won the race is not a good build
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
