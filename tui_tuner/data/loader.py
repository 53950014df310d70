"""`load_dataset_file`: a dataset file -> conversations, its format, and every issue by line."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tui_tuner.data.formats import (
    FORMATS, apply_field_mapping, describe_unknown, detect_format, extra_fields, mapping_problems, normalize,
)
from tui_tuner.data.issues import DataIssue
from tui_tuner.data.readers import read_records

_SHOWN_PAIRS = 5


@dataclass
class DatasetLoad:
    """A loaded dataset: conversations ready for a chat template, and what was found on the way."""

    path: Path
    format: str
    """One of formats.FORMATS, or `unknown` when no record could be recognised."""
    examples: list[list[dict[str, str]]] = field(default_factory=list)
    """One conversation per usable record (records with errors are left out)."""
    lines: list[int] = field(default_factory=list)
    """The file line (parquet: row) each example came from."""
    issues: list[DataIssue] = field(default_factory=list)
    records: int = 0
    """Records read from the file, usable or not."""
    format_counts: dict[str, int] = field(default_factory=dict)
    duplicates: list[tuple[int, int]] = field(default_factory=list)
    """(line, line of the first copy) for each repeated example."""
    empty_fields: dict[str, int] = field(default_factory=dict)
    unused_fields: dict[str, int] = field(default_factory=dict)
    limited_to: int | None = None
    """`data.max_samples` when it cut the examples short."""
    row_based: bool = False

    @property
    def errors(self) -> list[DataIssue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[DataIssue]:
        return [i for i in self.issues if i.severity == "warning"]

    @property
    def ok(self) -> bool:
        """True when the file has no errors and at least one usable example."""
        return not self.errors and bool(self.examples)


def load_dataset_file(path: str | Path, data_cfg: Any = None, *, shown: str | None = None,
                      report_mapping: bool = True) -> DatasetLoad:
    """Read, detect and normalize a dataset file; never raises on bad data.

    `data_cfg` (a `DataConfig`) supplies `format` (auto or forced), `fields` (name mapping),
    `system_prompt` and `max_samples`. Without it the format is detected and nothing is mapped.
    `report_mapping=False` leaves bad `data.fields` keys to the caller (config check reports
    them on the config's own line).
    """
    path = Path(path)
    shown = shown or str(path)
    forced = getattr(data_cfg, "format", "auto") or "auto"
    mapping = dict(getattr(data_cfg, "fields", None) or {})
    system_prompt = getattr(data_cfg, "system_prompt", None)
    max_samples = getattr(data_cfg, "max_samples", None)

    read = read_records(path, shown)
    load = DatasetLoad(path=path, format="unknown", issues=list(read.issues), records=len(read.records),
                       row_based=read.row_based)

    def issue(line: int | None, message: str, severity: str = "error") -> None:
        load.issues.append(DataIssue(shown, line, message, None, severity, read.row_based))

    for key, problem in mapping_problems(mapping) if report_mapping else []:
        issue(None, f"`{key}`: {problem}")

    records: list[tuple[int, dict[str, Any]]] = []
    for rec in read.records:
        if not isinstance(rec.value, dict):
            hint = ' e.g. {"text": "..."}' if isinstance(rec.value, str) else ""
            issue(rec.line, f"each record must be a JSON object {{...}} of fields, got {type(rec.value).__name__}{hint}.")
            continue
        records.append((rec.line, apply_field_mapping(rec.value, mapping)))

    detected = {line: detect_format(value) for line, value in records}
    counts = Counter(f for f in detected.values() if f is not None)
    load.format_counts = dict(counts)
    if forced != "auto":
        fmt = forced
    elif counts:
        fmt = _file_format(counts)
    else:
        fmt = "unknown"
    load.format = fmt

    seen: dict[str, int] = {}
    unused: Counter[str] = Counter()
    first_unused_line: int | None = None
    empty: Counter[str] = Counter()
    for line, value in records:
        record_format = detected[line]

        def report(severity: str, message: str, _line: int = line) -> None:
            issue(_line, message, severity)

        if fmt == "unknown" or (forced == "auto" and record_format is None):
            report("error", describe_unknown(value))
            continue
        if forced == "auto" and not _compatible(record_format, fmt):
            report("error", f"mixed formats: this record is {record_format} but the file is {fmt} "
                            f"({counts[fmt]} of {len(records)} records); use one format per file "
                            "(or force one with data.format).")
            continue
        conversation = normalize(value, fmt, report, lambda name: empty.update([name]))
        extras = extra_fields(value, fmt)
        if extras:
            unused.update(extras)
            first_unused_line = first_unused_line or line
        if conversation is None:
            continue
        if system_prompt and conversation[0]["role"] not in ("system", "text", "prompt"):
            conversation.insert(0, {"role": "system", "content": system_prompt})
        key = json.dumps(conversation, sort_keys=True, ensure_ascii=False)
        if key in seen:
            load.duplicates.append((line, seen[key]))
        else:
            seen[key] = line
        load.examples.append(conversation)
        load.lines.append(line)

    load.empty_fields = dict(empty)
    load.unused_fields = dict(unused)
    if unused:
        names = ", ".join(f"`{k}` ({n})" for k, n in unused.most_common(6))
        issue(first_unused_line, f"fields not used by the {fmt} format are ignored: {names}. Map them with "
                                 "data.fields if they hold the prompt or answer.", "warning")
    if load.duplicates:
        pairs = ", ".join(f"line {a} repeats line {b}" for a, b in load.duplicates[:_SHOWN_PAIRS])
        more = f" and {len(load.duplicates) - _SHOWN_PAIRS} more" if len(load.duplicates) > _SHOWN_PAIRS else ""
        issue(load.duplicates[0][0], f"{len(load.duplicates)} duplicate example(s): {pairs}{more}. Duplicates "
                                     "weigh those examples more; remove them unless that is intended.", "warning")
    if not read.records and not read.issues:
        issue(1, "the file has no records (only blank lines): add one example per line.")
    load.issues.sort(key=lambda i: (i.line or 0, i.column or 0))
    if max_samples is not None and len(load.examples) > max_samples:
        load.examples = load.examples[:max_samples]
        load.lines = load.lines[:max_samples]
        load.limited_to = max_samples
    return load


def _compatible(record_format: str, file_format: str) -> bool:
    """Instruction records may sit in a reasoning file (they train without a thinking block)."""
    return record_format == file_format or {record_format, file_format} == {"instruction", "reasoning"}


def _file_format(counts: Counter[str]) -> str:
    if set(counts) <= {"instruction", "reasoning"} and counts.get("reasoning"):
        return "reasoning"
    # the majority format; ties go to the order of FORMATS so the choice is stable
    return max(counts, key=lambda f: (counts[f], -FORMATS.index(f)))
