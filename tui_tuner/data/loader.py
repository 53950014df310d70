"""`load_dataset_file`: a dataset file -> conversations, its format, and every issue by line."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tui_tuner.data.formats import (
    FORMATS, apply_field_mapping, describe_unknown, detect_format, extra_fields, mapping_problems, normalize,
)
from tui_tuner.data.issues import DataIssue
from tui_tuner.data.readers import RecordStream

_SHOWN_PAIRS = 5
HEAD_KEPT = 100
FORMAT_GUESS_RECORDS = 1000
"""A file with more records is read once, its format guessed from these first ones (and checked)."""
"""Examples a streamed load keeps (the first ones): enough to show, never the whole file."""


@dataclass
class DatasetLoad:
    """A loaded dataset: conversations ready for a chat template, and what was found on the way."""

    path: Any
    """The file (`Path`) or the hub dataset (`tui_tuner.data.hub.HubSource`)."""
    format: str
    """One of formats.FORMATS, or `unknown` when no record could be recognised."""
    examples: list[list[dict[str, str]]] = field(default_factory=list)
    """One conversation per usable record (records with errors are left out)."""
    lines: list[int] = field(default_factory=list)
    """The file line (parquet and hub datasets: row, from 1) each example came from."""
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
    count: int = 0
    """Usable examples (after `data.max_samples`), also when `examples` was not kept."""
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
        return not self.errors and self.count > 0


def load_dataset_file(path: str | Path, data_cfg: Any = None, *, shown: str | None = None,
                      report_mapping: bool = True, keep_examples: bool = True,
                      on_example: Callable[[int, list[dict[str, str]]], None] | None = None,
                      on_restart: Callable[[], None] | None = None) -> DatasetLoad:
    """Read, detect and normalize a dataset file; never raises on bad data.

    `data_cfg` (a `DataConfig`) supplies `format` (auto or forced), `fields` (name mapping),
    `system_prompt` and `max_samples`. Without it the format is detected and nothing is mapped.
    `report_mapping=False` leaves bad `data.fields` keys to the caller (config check reports
    them on the config's own line).

    Big files: with `keep_examples=False` only the first `HEAD_KEPT` conversations are kept
    (`examples` and `lines`, for `data check --show` and how the file was read; `count` says
    how many there are); `on_example(line, conversation)` sees each
    usable example (up to `max_samples`) in file order as it is read. JSON Lines are streamed,
    so memory holds only counts, duplicate fingerprints and issues. The file's format (auto) is its
    records' majority format: a file of over `FORMAT_GUESS_RECORDS` records is read once, with the
    format of its first records, and checked against the majority at the end; in the rare file where
    they differ it is read again with the right one (`on_restart()` first: forget what
    `on_example` saw).
    """
    from tui_tuner.data.hub import HubSource, as_source

    path = as_source(path, data_cfg)
    shown = shown or str(path)
    forced = getattr(data_cfg, "format", "auto") or "auto"
    mapping = dict(getattr(data_cfg, "fields", None) or {})
    system_prompt = getattr(data_cfg, "system_prompt", None)
    max_samples = getattr(data_cfg, "max_samples", None)
    # A hub dataset may hold millions of rows: with max_samples only the rows needed are read.
    early_stop = isinstance(path, HubSource) and not path.file and max_samples is not None

    counts: Counter[str] = Counter()
    guessing = False  # the format comes from the first records only: count them all in pass 2
    if forced == "auto":  # pass 1: the file's format is its records' majority format
        for records, rec in enumerate(RecordStream(path, shown)):
            if early_stop and rec.line > max_samples:
                break
            if records == FORMAT_GUESS_RECORDS and not early_stop:
                guessing = True
                break
            if isinstance(rec.value, dict):
                detected = detect_format(apply_field_mapping(rec.value, mapping))
                if detected is not None:
                    counts[detected] += 1
        fmt = _file_format(counts) if counts else "unknown"
        if guessing:
            counts.clear()
    else:
        fmt = forced
    while True:
        load = _read_examples(path, shown, fmt, forced, guessing, counts, mapping, system_prompt, max_samples,
                              early_stop, keep_examples, on_example, report_mapping)
        if guessing:
            majority = _file_format(counts) if counts else "unknown"
            if majority != fmt:  # the first records were not the file's majority: read it again
                fmt, guessing = majority, False
                if on_restart is not None:
                    on_restart()
                continue
        break
    return load


def _read_examples(path: Any, shown: str, fmt: str, forced: str, guessing: bool, counts: Counter[str],
                   mapping: dict[str, str], system_prompt: str | None, max_samples: int | None, early_stop: bool,
                   keep_examples: bool, on_example: Callable[[int, list[dict[str, str]]], None] | None,
                   report_mapping: bool) -> DatasetLoad:
    """Pass 2 of `load_dataset_file`: normalize every record as `fmt` (and count formats when `guessing`)."""
    load = DatasetLoad(path=path, format=fmt)

    def issue(line: int | None, message: str, severity: str = "error") -> None:
        load.issues.append(DataIssue(shown, line, message, None, severity, load.row_based))

    stream = RecordStream(path, shown)  # the only pass for a forced format
    mixed: list[tuple[int, str]] = []  # (line, format) of records in another format, said once counts are known
    seen: dict[bytes, int] = {}
    unused: Counter[str] = Counter()
    first_unused_line: int | None = None
    empty: Counter[str] = Counter()
    usable = 0
    for rec in stream:
        load.row_based = stream.row_based
        line = rec.line
        if not isinstance(rec.value, dict):
            hint = ' e.g. {"text": "..."}' if isinstance(rec.value, str) else ""
            issue(line, f"each record must be a JSON object {{...}} of fields, got {type(rec.value).__name__}{hint}.")
            continue
        value = apply_field_mapping(rec.value, mapping)
        record_format = detect_format(value)
        if (forced != "auto" or guessing) and record_format is not None:
            counts[record_format] += 1

        def report(severity: str, message: str, _line: int = line) -> None:
            issue(_line, message, severity)

        if fmt == "unknown" or (forced == "auto" and record_format is None):
            report("error", describe_unknown(value))
            continue
        if forced == "auto" and not _compatible(record_format, fmt):
            mixed.append((line, record_format))
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
        if early_stop and usable >= max_samples:
            usable += 1  # one usable row past the limit: enough to know the data was cut
            break
        # A 16-byte fingerprint per example instead of its text: a million rows stay small.
        key = hashlib.blake2b(json.dumps(conversation, sort_keys=True, ensure_ascii=False).encode("utf-8"),
                              digest_size=16).digest()
        if key in seen:
            load.duplicates.append((line, seen[key]))
        else:
            seen[key] = line
        usable += 1
        if max_samples is not None and usable > max_samples:
            continue
        if on_example is not None:
            on_example(line, conversation)
        if keep_examples or len(load.examples) < HEAD_KEPT:
            load.examples.append(conversation)
            load.lines.append(line)
    load.row_based = stream.row_based
    for line, record_format in mixed:
        issue(line, f"mixed formats: this record is {record_format} but the file is {fmt} "
                    f"({counts[fmt]} of {sum(counts.values())} records); use one format per file "
                    "(or force one with data.format).")
    load.records = stream.count
    load.issues = stream.issues + load.issues
    load.format_counts = dict(counts)
    load.count = usable if max_samples is None else min(usable, max_samples)
    if max_samples is not None and usable > max_samples:
        load.limited_to = max_samples

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
    if not stream.count and not stream.issues:
        issue(1, "the file has no records (only blank lines): add one example per line.")
    if mapping and report_mapping:
        for key_name, problem in mapping_problems(mapping):
            issue(None, f"`{key_name}`: {problem}")
    load.issues.sort(key=lambda i: (i.line or 0, i.column or 0))
    return load


def _compatible(record_format: str, file_format: str) -> bool:
    """Instruction records may sit in a reasoning file (they train without a thinking block)."""
    return record_format == file_format or {record_format, file_format} == {"instruction", "reasoning"}


def _file_format(counts: Counter[str]) -> str:
    if set(counts) <= {"instruction", "reasoning"} and counts.get("reasoning"):
        return "reasoning"
    # the majority format; ties go to the order of FORMATS so the choice is stable
    return max(counts, key=lambda f: (counts[f], -FORMATS.index(f)))
