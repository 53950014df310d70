"""Disk space for runs: the up-front check, the reserve that lets a full disk record `failed`.

A run that fills its disk must still end with a readable state. Three things make sure:

- before a run is created or resumed, `space_problem` compares the free space of the runs
  folder with what the run will write (`tui_tuner.fit.disk.run_disk_need`: its checkpoints
  and final adapter, estimated from the model's architecture and the method, without weights);
- the worker keeps a small reserve file (`.disk-reserve`, 1 MiB) in the run folder, and
  deletes it the moment a write fails for lack of space, so the final status and log line fit;
- `write_status` (tui_tuner.rundir.status) falls back to overwriting `status.json` in place,
  which needs no new disk blocks, when even that is not enough.

No heavy imports here.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
RESERVE_FILE = ".disk-reserve"
RESERVE_BYTES = 1 << 20
"""Enough for the final status.json, the last event and log lines, several times over."""
MARGIN_BYTES = 8 << 20
"""Logs, events, status and tokenizer files on top of the checkpoints (and some slack): the least a run needs."""
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether `exc` (or what caused it) is an OSError for a full disk or an exceeded quota."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def make_reserve(run_dir: str | Path, size: int = RESERVE_BYTES) -> bool:
    """Write the reserve file (real blocks, not a sparse hole); False when there is no room for it."""
    path = Path(run_dir) / RESERVE_FILE
    try:
        with open(path, "wb") as fh:
            chunk = b"\0" * 65536
            for _ in range(size // len(chunk)):
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        return True
    except OSError:
        release_reserve(run_dir)
        return False


def release_reserve(run_dir: str | Path) -> bool:
    """Delete the reserve file, freeing its space; True when there was one."""
    try:
        os.unlink(Path(run_dir) / RESERVE_FILE)
        return True
    except OSError:
        return False


def free_bytes(path: str | Path) -> int | None:
    """Free bytes (for this user) on the file system that holds `path` or its nearest existing parent."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def space_problem(where: str | Path, need: int | None, what: str = "this run") -> str | None:
    """A sentence saying the disk at `where` is too full for `need` bytes, or None when it fits."""
    from tui_tuner.core.units import format_bytes

    free = free_bytes(where)
    if free is None:
        return None
    if need is None:
        need = MARGIN_BYTES  # the architecture is unknown here: at least room to record what happens
    if free >= need:
        return None
    return (f"not enough disk space in {where}: {format_bytes(free)} free, {what} needs about "
            f"{format_bytes(need)} (checkpoints and the final model). Free space (`df -h {where}`; old runs: "
            "`tui-tuner runs rm NAME`) or set output.runs_dir to a bigger disk.")
