"""Hub dataset names: `org/name` ids, `hf://datasets/...` URLs and split expressions, checked without the network."""

from __future__ import annotations

import re
from pathlib import Path

DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
"""The dataset file types tui-tuner reads."""
HF_URL_PREFIX = "hf://datasets/"
_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_REPO_ID = re.compile(rf"{_NAME}/{_NAME}")
_SLICE = r"(\[\s*(-?[\d_]+%?)?\s*:\s*(-?[\d_]+%?)?\s*\])?"
_SPLIT = re.compile(rf"[\w-]+{_SLICE}(\s*\+\s*[\w-]+{_SLICE})*")
SPLIT_EXAMPLES = "`train`, `train[:2000]`, `train[10%:20%]`, `train+validation`"


def looks_like_dataset_id(value: str) -> bool:
    """`org/name` (hub characters, no `..`, not a data file name): could be a hub dataset."""
    return (bool(_REPO_ID.fullmatch(value)) and ".." not in value
            and not value.lower().endswith(DATA_SUFFIXES))


def split_problem(value: str) -> str | None:
    """Why `value` is not a split expression `datasets` accepts, or None."""
    if _SPLIT.fullmatch(value.strip()):
        return None
    return f"not a split name with an optional slice: use e.g. {SPLIT_EXAMPLES}"


def parse_hub_url(value: str) -> tuple[str, str | None, str | None]:
    """(repo_id, revision, file in the repo or None) of an `hf://datasets/...` URL; ValueError says what is wrong."""
    if not value.startswith(HF_URL_PREFIX):
        raise ValueError(f"hub URLs start with `{HF_URL_PREFIX}`, e.g. "
                         "hf://datasets/yahma/alpaca-cleaned/alpaca_data_cleaned.json (models are not datasets)")
    parts = value[len(HF_URL_PREFIX):].strip("/").split("/")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ValueError(f"`{value}` names no dataset: write {HF_URL_PREFIX}ORG/NAME[/path/to/file.jsonl]")
    name, _, revision = parts[1].partition("@")
    repo_id = f"{parts[0]}/{name}"
    if not _REPO_ID.fullmatch(repo_id) or ".." in repo_id:
        raise ValueError(f"`{repo_id}` is not a hub dataset id (ORG/NAME of letters, digits, `-`, `_`, `.`)")
    file = "/".join(parts[2:]) or None
    if file is not None and (".." in parts[2:] or not file.lower().endswith(DATA_SUFFIXES)):
        raise ValueError(f"`{file}` is not a .jsonl, .json, .csv or .parquet file; name one such file, or "
                         f"{HF_URL_PREFIX}{repo_id} for the whole dataset (with data.subset / data.split)")
    return repo_id, revision or None, file


def url_problem(value: str) -> str | None:
    """Why an `hf://` value in `data.train` / `data.eval` cannot be a hub dataset, or None."""
    if not value.startswith("hf://"):
        return None
    try:
        parse_hub_url(value)
    except ValueError as exc:
        return str(exc)
    return None


def hub_dataset_url(value: str, base_dir: Path | None) -> str | None:
    """`hf://datasets/...` for a `data.train` / `data.eval` value that names a hub dataset, None for a local path.

    A local path that exists wins over a hub id of the same spelling (axolotl's convention); a
    missing `org/name` that does not end like a data file is a hub id; `hf://` values are the hub.
    """
    if value.startswith("hf://"):
        return value
    path = Path(value).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if path.exists() or not looks_like_dataset_id(value):
        return None
    return HF_URL_PREFIX + value
