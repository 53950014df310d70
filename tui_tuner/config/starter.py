"""The quickstart project shipped inside the package, written into a folder on request.

`tui-tuner` started in an empty folder offers it, so the first run works with nothing
downloaded: `configs/quickstart.yaml` (the offline demo model, a minute on a CPU) and the
Bramble dataset it trains and evaluates on (`data/sample.jsonl`, `data/heldout.jsonl`).
The repository's own `configs/quickstart.yaml` and `data/` files are the same bytes
(tests/unit/test_starter.py keeps them so).

    written = write_quickstart(Path.cwd())
    print(written.config)        # .../configs/quickstart.yaml
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

QUICKSTART_ROOT = Path(__file__).resolve().parent / "quickstart"
"""The packaged project: its files keep their paths relative to this folder when written."""

QUICKSTART_FILES = ("configs/quickstart.yaml", "data/sample.jsonl", "data/heldout.jsonl")


@dataclass
class QuickstartWritten:
    """What `write_quickstart` did: files written, files already there and left alone."""

    folder: Path
    written: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)

    @property
    def config(self) -> Path:
        return self.folder / "configs" / "quickstart.yaml"

    def describe(self) -> str:
        parts = []
        if self.written:
            parts.append("wrote " + ", ".join(self.written))
        if self.kept:
            parts.append("kept your " + ", ".join(self.kept))
        return "; ".join(parts)


def packaged_file(relative: str) -> Path:
    """A file of the packaged quickstart, e.g. `packaged_file("data/sample.jsonl")`."""
    return QUICKSTART_ROOT / relative


def write_quickstart(folder: Path) -> QuickstartWritten:
    """Copy the quickstart's files into `folder`; a file already there is kept, never overwritten.

    Raises OSError (with the path) when the folder cannot be written.
    """
    folder = Path(folder).resolve()
    result = QuickstartWritten(folder)
    for relative in QUICKSTART_FILES:
        target = folder / relative
        if target.exists():
            result.kept.append(relative)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(packaged_file(relative).read_bytes())
        result.written.append(relative)
    return result


def is_empty_folder(folder: Path) -> bool:
    """True when `folder` holds nothing but hidden entries (a fresh project folder)."""
    try:
        return not any(not p.name.startswith(".") for p in Path(folder).iterdir())
    except OSError:
        return False


def missing_quickstart_data_fix(value: str) -> str | None:
    """What to do when a config names the quickstart's sample data in a folder that lacks it, else None."""
    if value.replace("\\", "/").removeprefix("./") not in QUICKSTART_FILES[1:]:
        return None
    return (f"`{value}` is the quickstart's sample data: `tui-tuner config quickstart` writes it (and "
            "configs/quickstart.yaml) into this folder; or point data.train at your own file.")
