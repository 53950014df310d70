"""Read dataset files into records, each with the line it came from.

`.jsonl` is read line by line by our own reader (never the whole file at once), so every
problem carries its line and column; `.json` is parsed element by element for the same
reason; `.csv` through the csv module with line tracking; `.parquet` through pyarrow
(records numbered by row). Nothing here raises on bad input: problems become `DataIssue`s.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui_tuner.core.hub_names import DATA_SUFFIXES
from tui_tuner.core.units import format_bytes

from tui_tuner.data.issues import DataIssue

MAX_LINE_BYTES = 32 * 1024 * 1024
"""A JSONL line longer than this is reported and skipped without being held in memory."""
MAX_ENCODING_ISSUES = 50
SUPPORTED_SUFFIXES = DATA_SUFFIXES
_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_WRAPPER_KEYS = ("data", "train", "examples", "rows", "records", "items")


TOO_DEEP = ("nested too deeply to read (thousands of levels of [ or {): an example is a flat object of "
            "text fields; fix the line or remove it.")
_LONE_SURROGATE = re.compile(r"\\u[dD][89abcdefABCDEF][0-9a-fA-F]{2}")
"""A `\\udXXX` escape: the only way JSON text can smuggle in a surrogate that is not valid Unicode."""


def unicode_problem(value: Any, _depth: int = 0) -> str | None:
    """Why a parsed value holds text that is not valid Unicode (a lone surrogate), or None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            bad = value[exc.start]
            return (f"the text holds a lone surrogate \\u{ord(bad):04x} (half of a UTF-16 pair, not a character): "
                    "remove it or write the character itself.")
        return None
    if _depth > 100:
        return None
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for item in items:
        problem = unicode_problem(item, _depth + 1)
        if problem:
            return problem
    return None


@dataclass
class Record:
    """One example as read from the file: its value and where it starts."""

    value: Any
    line: int
    column: int | None = None


@dataclass
class ReadResult:
    records: list[Record]
    issues: list[DataIssue]
    row_based: bool = False


class _Sink:
    """Collects issues for one file."""

    def __init__(self, shown: str, row_based: bool = False):
        self.shown = shown
        self.row_based = row_based
        self.issues: list[DataIssue] = []

    def error(self, line: int | None, message: str, column: int | None = None) -> None:
        self.issues.append(DataIssue(self.shown, line, message, column, "error", self.row_based))

    def warning(self, line: int | None, message: str, column: int | None = None) -> None:
        self.issues.append(DataIssue(self.shown, line, message, column, "warning", self.row_based))


def read_records(path: Path, shown: str | None = None) -> ReadResult:
    """Read `path` by its suffix; every problem is returned as an issue, never raised."""
    stream = RecordStream(path, shown)
    records = list(stream)
    return ReadResult(records, stream.issues, stream.row_based)


class RecordStream:
    """The records of one file, read while they are iterated; issues gather in `issues`.

    JSON Lines are read one line at a time, so a file of a million rows never sits in memory
    as records (`data check` and the tokenized cache only keep lengths). .json, .csv and
    .parquet are parsed whole first, as before. Iterate once; `count` is the records yielded.
    """

    def __init__(self, path: Any, shown: str | None = None):
        from tui_tuner.data.hub import HubSource

        self.hub = path if isinstance(path, HubSource) else None
        """A hub dataset or file (`tui_tuner.data.hub`): loaded on iteration, through the caches."""
        self.path = Path(path) if self.hub is None else Path(self.hub.file or self.hub.repo_id)
        self.sink = _Sink(shown or str(path))
        self.row_based = False
        self.count = 0

    @property
    def issues(self) -> list[DataIssue]:
        return self.sink.issues

    def __iter__(self):
        for record in self._records():
            self.count += 1
            yield record

    def _records(self):
        if self.hub is not None:
            yield from self._hub_records()
            return
        yield from self._file_records(self.path)

    def _hub_records(self):
        """A hub file is read like a local one (it is in the hub cache); a hub dataset row by row, numbered from 1."""
        from tui_tuner.data.hub import HubDataError, iter_rows, load_hub

        try:
            loaded = load_hub(self.hub)
        except HubDataError as exc:
            self.sink.error(None, str(exc))
            return
        if isinstance(loaded, Path):
            yield from self._file_records(loaded)
            return
        self.row_based = self.sink.row_based = True
        if len(loaded) == 0:
            self.sink.error(None, f"the split `{self.hub.split}` has no rows: check data.split.")
            return
        for index, row in enumerate(iter_rows(loaded)):
            yield Record(row, index + 1)

    def _file_records(self, path: Path):
        sink = self.sink
        suffix = path.suffix.lower()
        if suffix not in SUPPORTED_SUFFIXES:
            sink.error(None, f"unsupported file type `{path.suffix or '(none)'}`: use .jsonl, .json, .csv or .parquet.")
            return
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            sink.error(None, "file not found. Check the path (relative paths in a config resolve against the "
                             "project folder, the parent of configs/).")
            return
        except OSError as exc:
            sink.error(None, f"cannot read: {exc.strerror}.")
            return
        if path.is_dir():
            sink.error(None, "is a folder, not a dataset file: name a .jsonl, .json, .csv or .parquet file.")
            return
        if size == 0:
            sink.error(1, "the file is empty (0 bytes): add one example per line, e.g. "
                          '{"instruction": "...", "input": "", "output": "..."}.')
            return
        try:
            if suffix == ".parquet":
                result = _read_parquet(path, sink.shown)
                self.row_based = sink.row_based = True
                sink.issues.extend(result.issues)
                yield from result.records
                return
            with path.open("rb") as handle:
                head = handle.read(4096)
            if not _check_head(head, sink):
                return
            if suffix == ".jsonl":
                if head.lstrip(_UTF8_BOM).lstrip().startswith(b"["):
                    sink.warning(1, "this .jsonl file holds one JSON array, not one object per line; read as JSON. "
                                    "Rename it to .json, or write one object per line.")
                    yield from _read_json(path, sink).records
                    return
                yield from _iter_jsonl(path, sink)
                return
            if suffix == ".json":
                yield from _read_json(path, sink).records
                return
            yield from _read_csv(path, sink).records
        except OSError as exc:
            sink.error(None, f"cannot read: {exc.strerror or exc}.")


def _check_head(head: bytes, sink: _Sink) -> bool:
    """Reject UTF-16/binary files up front (every line would fail otherwise); note a UTF-8 BOM."""
    if head.startswith(_UTF16_BOMS) or head[:200].count(b"\x00") > 2:
        sink.error(1, "the file is UTF-16 (or binary), not UTF-8 text. Re-save it as UTF-8, e.g. "
                      "`iconv -f UTF-16 -t UTF-8 in.jsonl > out.jsonl`.")
        return False
    if head.startswith(_UTF8_BOM):
        sink.warning(1, "the file starts with a UTF-8 byte-order mark (BOM); it was skipped. Editors such as "
                        "Notepad add it; saving as 'UTF-8' without BOM avoids this warning.", 1)
    return True


STRAY_BOM = ("a UTF-8 byte-order mark (BOM) starts this line, usually left by joining files that each had one "
             "(`cat a.jsonl b.jsonl`): delete it, e.g. `sed -i '2,$s/^\\xEF\\xBB\\xBF//' FILE`, or re-save "
             "each file as UTF-8 without BOM before joining them.")


def _bad_byte_message(raw: bytes, start: int) -> str:
    byte = raw[start]
    hint = ""
    try:
        raw[max(0, start - 8): start + 8].decode("cp1252")
        hint = " It looks like Windows-1252/Latin-1 text."
    except UnicodeDecodeError:
        pass
    return (f"byte 0x{byte:02x} is not valid UTF-8.{hint} Re-save the file as UTF-8, e.g. "
            "`iconv -f WINDOWS-1252 -t UTF-8 in > out`.")


def _decode_line(raw: bytes, line: int, sink: _Sink) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        column = len(raw[: exc.start].decode("utf-8", "replace")) + 1
        sink.error(line, _bad_byte_message(raw, exc.start), column)
        return None


def json_error_hint(message: str) -> str:
    """What usually causes a json module error message, and the fix."""
    if message.startswith("Expecting property name enclosed in double quotes"):
        return "keys need double quotes, and there must be no trailing comma before `}`."
    if message.startswith("Expecting value"):
        return "a value is missing or not JSON: strings need double quotes; use true/false/null, not True/None."
    if message.startswith("Unterminated string"):
        return "a string is not closed; in JSONL each record must be on a single line (write newlines as \\n)."
    if message.startswith("Invalid control character"):
        return "a raw tab or newline inside a string: write it as \\t or \\n."
    if message.startswith("Extra data"):
        return "more than one JSON value on the line: put each record on its own line."
    if message.startswith("Expecting ',' delimiter"):
        return "a comma is missing between two items, or a quote inside a string is not escaped as \\\"."
    if message.startswith("Expecting ':' delimiter"):
        return "a key must be followed by a colon."
    if message.startswith("Invalid \\escape") or message.startswith("Invalid \\u"):
        return "a backslash must be escaped as \\\\ (e.g. Windows paths)."
    return "check the JSON syntax on this line."


def _read_jsonl(path: Path, sink: _Sink) -> ReadResult:
    return ReadResult(list(_iter_jsonl(path, sink)), sink.issues)


def _iter_jsonl(path: Path, sink: _Sink):
    """Records of a JSON Lines file, one line at a time."""
    with path.open("rb") as handle:
        line = 0
        while True:
            raw = handle.readline(MAX_LINE_BYTES + 1)
            if not raw:
                break
            line += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                total = len(raw)
                del raw
                while True:  # skip the rest of the line without holding it
                    chunk = handle.readline(1 << 20)
                    total += len(chunk)
                    if not chunk or chunk.endswith(b"\n"):
                        break
                sink.error(line, f"line is {format_bytes(total)} long (limit {format_bytes(MAX_LINE_BYTES)}): "
                                 "is this really JSON Lines (one record per line)? A single JSON array belongs "
                                 "in a .json file.")
                continue
            if line == 1 and raw.startswith(_UTF8_BOM):
                raw = raw[len(_UTF8_BOM):]
            elif raw.startswith(_UTF8_BOM):
                sink.error(line, STRAY_BOM, 1)
                continue
            text = _decode_line(raw, line, sink)
            if text is None:
                continue
            text = text.rstrip("\r\n")
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                sink.error(line, f"broken JSON: {exc.msg} — {json_error_hint(exc.msg)}", exc.colno)
                continue
            except RecursionError:
                sink.error(line, TOO_DEEP)
                continue
            if _LONE_SURROGATE.search(text) and (problem := unicode_problem(value)):
                sink.error(line, problem)
                continue
            column = len(text) - len(text.lstrip()) + 1
            yield Record(value, line, column)


def _decode_whole(raw: bytes, sink: _Sink) -> str:
    """Decode a whole file, reporting every undecodable byte (up to a cap) with its line and column."""
    if raw.startswith(_UTF8_BOM):
        raw = raw[len(_UTF8_BOM):]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    pos, found = 0, 0
    while found < MAX_ENCODING_ISSUES:
        try:
            raw[pos:].decode("utf-8")
            break
        except UnicodeDecodeError as exc:
            start = pos + exc.start
            line_start = raw.rfind(b"\n", 0, start) + 1
            column = len(raw[line_start:start].decode("utf-8", "replace")) + 1
            sink.error(raw.count(b"\n", 0, start) + 1, _bad_byte_message(raw, start), column)
            pos, found = pos + exc.end, found + 1
    return raw.decode("utf-8", "replace")


class _LineIndex:
    """Turns character offsets in a text into 1-based (line, column)."""

    def __init__(self, text: str):
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def at(self, offset: int) -> tuple[int, int]:
        import bisect

        i = bisect.bisect_right(self.starts, offset) - 1
        return i + 1, offset - self.starts[i] + 1


def _read_json(path: Path, sink: _Sink) -> ReadResult:
    text = _decode_whole(path.read_bytes(), sink)
    index = _LineIndex(text)
    decoder = json.JSONDecoder()
    pos = _skip_ws(text, 0)
    if pos >= len(text):
        sink.error(1, "the file holds only whitespace: expected a JSON array of examples.")
        return ReadResult([], sink.issues)
    if text[pos] == "[":
        return _read_json_array(text, pos, index, sink)
    try:
        value, end = decoder.raw_decode(text, pos)
    except json.JSONDecodeError as exc:
        line, col = index.at(exc.pos)
        sink.error(line, f"broken JSON: {exc.msg} — {json_error_hint(exc.msg)}", col)
        return ReadResult([], sink.issues)
    except RecursionError:
        sink.error(index.at(pos)[0], TOO_DEEP)
        return ReadResult([], sink.issues)
    rest = _skip_ws(text, end)
    if rest < len(text):
        sink.warning(1, "this .json file holds one JSON object per line (JSON Lines); read as JSONL. "
                        "Rename it to .jsonl to silence this warning.")
        return _read_jsonl(path, sink)
    if isinstance(value, dict):
        for key in _WRAPPER_KEYS:
            if isinstance(value.get(key), list) and len(value) <= 3:
                match = re.search(r'"' + re.escape(key) + r'"\s*:\s*\[', text)
                if match:
                    return _read_json_array(text, match.end() - 1, index, sink)
        line, col = index.at(pos)
        return ReadResult([Record(value, line, col)], sink.issues)
    line, col = index.at(pos)
    sink.error(line, f"the file holds a JSON {type(value).__name__}; expected an array of example objects "
                     '[{"instruction": ..., "output": ...}, ...].', col)
    return ReadResult([], sink.issues)


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _read_json_array(text: str, pos: int, index: _LineIndex, sink: _Sink) -> ReadResult:
    """Parse `[v, v, ...]` starting at `pos`, keeping each element's position."""
    decoder = json.JSONDecoder()
    records: list[Record] = []
    pos = _skip_ws(text, pos + 1)
    if pos < len(text) and text[pos] == "]":
        sink.error(index.at(pos)[0], "the array is empty: add at least one example.")
        return ReadResult([], sink.issues)
    while True:
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            line, col = index.at(exc.pos)
            sink.error(line, f"broken JSON: {exc.msg} — {json_error_hint(exc.msg)} (the records after this "
                             "point were not read)", col)
            break
        except RecursionError:
            sink.error(index.at(pos)[0], TOO_DEEP + " The records after this point were not read.")
            break
        line, col = index.at(pos)
        problem = unicode_problem(value) if _LONE_SURROGATE.search(text, pos, end) else None
        if problem:
            sink.error(line, problem, col)
        else:
            records.append(Record(value, line, col))
        pos = _skip_ws(text, end)
        if pos < len(text) and text[pos] == ",":
            pos = _skip_ws(text, pos + 1)
            if pos < len(text) and text[pos] == "]":
                line, col = index.at(pos)
                sink.error(line, "trailing comma before `]`: JSON does not allow it; remove the comma.", col)
                break
            continue
        if pos < len(text) and text[pos] == "]":
            break
        line, col = index.at(min(pos, len(text) - 1))
        sink.error(line, "expected `,` or `]` after an array element — a comma is probably missing "
                         "(the records after this point were not read).", col)
        break
    return ReadResult(records, sink.issues)


def _read_csv(path: Path, sink: _Sink) -> ReadResult:
    text = _decode_whole(path.read_bytes(), sink)
    csv.field_size_limit(MAX_LINE_BYTES)
    reader = csv.reader(io.StringIO(text, newline=""))
    records: list[Record] = []
    header: list[str] | None = None
    previous_end = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            sink.error(reader.line_num, f"unreadable CSV: {exc}. Quote values that contain commas or newlines.")
            break
        start = previous_end + 1
        previous_end = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        if header is None:
            header = [cell.strip() for cell in row]
            dupes = sorted({h for h in header if header.count(h) > 1})
            if dupes:
                sink.error(start, f"the header names column(s) {', '.join(map(repr, dupes))} more than once.")
            if any(not h for h in header):
                sink.error(start, "the header has an empty column name: every column needs a name "
                                  "(instruction, input, output, ...).")
            continue
        if len(row) != len(header):
            sink.error(start, f"the row has {len(row)} values but the header has {len(header)} columns: quote "
                              'values that contain commas, e.g. "Paris, France".')
            continue
        records.append(Record(dict(zip(header, row)), start))
    if header is None:
        sink.error(1, "the CSV has no header row: the first line must name the columns, e.g. instruction,input,output.")
    return ReadResult(records, sink.issues)


def _read_parquet(path: Path, shown: str) -> ReadResult:
    sink = _Sink(shown, row_based=True)
    try:
        import pyarrow.parquet as pq
    except ImportError:
        sink.error(None, "reading .parquet needs pyarrow (installed with `datasets`): pip install pyarrow.")
        return ReadResult([], sink.issues, True)
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        sink.error(None, f"not a readable parquet file: {exc}. Export it again, or convert to JSONL.")
        return ReadResult([], sink.issues, True)
    rows = table.to_pylist()
    if not rows:
        sink.error(None, "the parquet file has no rows.")
    return ReadResult([Record(row, i + 1) for i, row in enumerate(rows)], sink.issues, True)
