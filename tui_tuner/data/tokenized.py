"""A dataset file tokenized once: streamed, summarised, and cached for the worker and resumes.

    from tui_tuner.data.tokenized import tokenize_file
    result = tokenize_file("data/train.jsonl", cfg, tokenizer, template, cache=True)
    result.tokens            # TokenStats for data check / config check / train's preflight
    result.arrow_path        # input_ids, labels, ... one row per usable example (datasets.Dataset.from_file)

The file is read as a stream (`load_dataset_file(keep_examples=False)`) and tokenized in
batches as it is read, so memory holds token lengths, not conversations. With `cache=True`
the token ids go to an Arrow file under `$TUI_TUNER_CACHE/tokenized/<key>/`, where `key`
hashes everything the ids depend on: the data file's bytes, the tokenizer (its full
serialized form), the chat template, `max_seq_length`, `completion_only_loss`, the data
settings that change the examples (format, fields, system_prompt, max_samples) and the
source of the code that reads, renders and tokenizes. `train`'s preflight writes it; the
worker and every resume of the run read it instead of tokenizing again. The newest
`KEEP_ENTRIES` entries are kept.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tui_tuner.data.loader import DatasetLoad, load_dataset_file
from tui_tuner.data.report import TokenStats, template_refusal, tokenize_many_within_budget

KEEP_ENTRIES = 8
"""Tokenized datasets kept in the cache (least recently used go first)."""
BATCH_ROWS = 1000
"""Examples per Arrow record batch (and per progress report)."""
TOKENIZE_BATCH = 256
"""Examples tokenized per batched tokenizer call (small enough that memory holds only lengths)."""
PARALLEL_MIN_ROWS = 50_000
"""Files with fewer rows are tokenized in the reading process (starting others costs seconds)."""
MAX_PROCESSES = 8
CACHE_FORMAT = 1
"""Bump when the cached files' layout changes."""
ARROW_FILE = "data.arrow"
META_FILE = "meta.json"

Progress = Callable[[str, int, int | None], None]
"""`progress(what, done, total)`: e.g. ("tokenizing", 12000, 100000); total None when unknown."""


@dataclass
class TokenizedFile:
    """One dataset file, tokenized (or found in the cache)."""

    load: DatasetLoad
    """Format, counts, duplicates and issues; `examples` is left empty."""
    tokens: TokenStats | None
    """None when the file has no usable example."""
    arrow_path: Path | None
    """The cached Arrow file (columns `input_ids`, `labels`, `line`, `length`, `trained`), or None."""
    from_cache: bool = False


def tokenized_cache_dir() -> Path:
    from tui_tuner.models.demo import cache_root

    return cache_root() / "tokenized"


def _code_fingerprint() -> str:
    """The source of every module that turns a file into token ids: a change there is a new key."""
    from tui_tuner.chat_format import templates
    from tui_tuner.data import formats, hub, loader, readers, tokenize

    h = hashlib.blake2b(digest_size=16)
    for module in (readers, formats, loader, templates, tokenize, hub):
        h.update(Path(module.__file__).read_bytes())
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """What a tokenizer's ids depend on: its full serialized form when it is a fast tokenizer."""
    h = hashlib.blake2b(digest_size=16)
    h.update(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode("utf-8"))
    else:  # slow tokenizers: the vocabulary and the files it was loaded from
        h.update(json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False).encode("utf-8"))
        h.update(str(getattr(tokenizer, "name_or_path", "")).encode())
    for name in ("bos_token", "eos_token", "pad_token", "unk_token"):
        h.update(f"{name}={getattr(tokenizer, name, None)}".encode())
    return h.hexdigest()


def file_digest(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, lambda: hashlib.blake2b(digest_size=16)).hexdigest()


def source_digest(source: Any) -> str:
    """What a data source's records depend on: a local file's bytes; a hub dataset's fingerprint (`datasets`')."""
    from tui_tuner.data.hub import HubDataError, HubSource, hub_fingerprint

    if isinstance(source, HubSource):
        try:
            return hub_fingerprint(source)
        except HubDataError:
            return f"unavailable:{source.url}"  # the load reports why; nothing is tokenized under this key
    return file_digest(source)


def cache_key(path: Any, data_cfg: Any, tokenizer: Any, template: str | None, max_seq_length: int,
              completion_only_loss: bool) -> str:
    """`path`: a local file, or a `HubSource` (keyed by its dataset fingerprint, subset and split)."""
    parts = {
        "cache_format": CACHE_FORMAT, "code": _code_fingerprint(), "file": source_digest(path),
        "suffix": path.suffix.lower(), "tokenizer": tokenizer_fingerprint(tokenizer), "template": template,
        "max_seq_length": max_seq_length, "completion_only_loss": completion_only_loss,
        "format": getattr(data_cfg, "format", "auto"), "fields": dict(getattr(data_cfg, "fields", None) or {}),
        "system_prompt": getattr(data_cfg, "system_prompt", None), "max_samples": getattr(data_cfg, "max_samples", None),
    }
    return hashlib.blake2b(json.dumps(parts, sort_keys=True).encode(), digest_size=20).hexdigest()


class _Stats:
    """Token lengths of the examples seen so far: what `TokenStats` needs, in compact arrays."""

    def __init__(self, max_seq_length: int):
        self.max_seq_length = max_seq_length
        self.lengths = array("l")
        self.truncated_lines: list[int] = []
        self.estimated_lines: list[int] = []
        self.refused: list[tuple[int, str]] = []
        self.no_answer = self.total = self.trained = 0

    def add(self, line: int, length: int, truncated: bool, trained: int, estimated: bool = False) -> None:
        self.lengths.append(length)
        if estimated:
            self.estimated_lines.append(line)
        self.total += min(length, self.max_seq_length)
        self.trained += trained
        if truncated:
            self.truncated_lines.append(line)
            if trained == 0:
                self.no_answer += 1

    def result(self) -> TokenStats | None:
        if not self.lengths and not self.refused:
            return None
        ordered = sorted(self.lengths) or [0]
        p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
        return TokenStats(min=ordered[0], mean=round(sum(self.lengths) / max(1, len(self.lengths)), 1), p95=p95, max=ordered[-1],
                          max_seq_length=self.max_seq_length, truncated=len(self.truncated_lines),
                          truncated_lines=self.truncated_lines, no_answer_left=self.no_answer,
                          total_tokens=self.total, trained_tokens=self.trained,
                          estimated_lines=self.estimated_lines, refused=self.refused)


class _ArrowSink:
    """Token ids written batch by batch to an Arrow stream file that `datasets` memory-maps."""

    def __init__(self, path: Path):
        import pyarrow as pa

        self.pa = pa
        self.schema = pa.schema([("input_ids", pa.list_(pa.int32())), ("labels", pa.list_(pa.int32())),
                                 ("line", pa.int64()), ("length", pa.int32()), ("trained", pa.int32())])
        self.file = pa.OSFile(str(path), "wb")
        self.writer = pa.ipc.new_stream(self.file, self.schema)
        self.columns: dict[str, list] = {name: [] for name in self.schema.names}

    def add(self, ids: list[int], labels: list[int], line: int, length: int, trained: int) -> None:
        c = self.columns
        c["input_ids"].append(ids)
        c["labels"].append(labels)
        c["line"].append(line)
        c["length"].append(length)
        c["trained"].append(trained)
        if len(c["line"]) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.columns["line"]:
            self.writer.write_batch(self.pa.record_batch(
                [self.pa.array(self.columns[n], type=self.schema.field(n).type) for n in self.schema.names],
                schema=self.schema))
            self.columns = {name: [] for name in self.schema.names}

    def close(self) -> None:
        self.flush()
        self.writer.close()
        self.file.close()


def tokenize_processes(rows: int | None) -> int:
    """How many processes tokenize a file of `rows` rows (None: unknown).

    One below `PARALLEL_MIN_ROWS` rows or where the machine has 2 cores or fewer; else one per
    core but the one that reads the file, at most `MAX_PROCESSES`. `TUI_TUNER_TOKENIZE_PROCESSES`
    sets the number (1 turns it off).
    """
    chosen = os.environ.get("TUI_TUNER_TOKENIZE_PROCESSES", "").strip()
    if chosen.isdigit():
        return max(1, int(chosen))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if rows is None or rows < PARALLEL_MIN_ROWS or cores <= 2:
        return 1
    return min(MAX_PROCESSES, cores - 1)


_WORKER_SETTINGS: tuple[Any, int, bool, str | None] | None = None
_WORKER_ERROR = ""


def _start_tokenizer_process(tokenizer_state: bytes, max_len: int, completion_only: bool,
                             template: str | None) -> None:
    import pickle

    global _WORKER_SETTINGS, _WORKER_ERROR
    try:
        _WORKER_SETTINGS = (pickle.loads(tokenizer_state), max_len, completion_only, template)
    except Exception as exc:  # noqa: BLE001 - said by the first task (a pool restarts a process that raises here)
        _WORKER_ERROR = f"{type(exc).__name__}: {exc}"


def _tokenize_in_process(conversations: list[list[dict[str, str]]]) -> list[tuple[Any, bool]]:
    if _WORKER_SETTINGS is None:
        raise RuntimeError(f"a tokenizing process could not load the tokenizer ({_WORKER_ERROR})")
    tokenizer, max_len, completion_only, template = _WORKER_SETTINGS
    return tokenize_many_within_budget(tokenizer, conversations, max_len, completion_only, template)


class _TokenizerPool:
    """Batches tokenized by other processes, handed back in the order they were given.

    The reading process keeps parsing and checking the file while the others render and
    tokenize; at most `2 x processes` batches are in flight, so memory stays bounded.
    """

    def __init__(self, processes: int, tokenizer: Any, max_len: int, completion_only: bool,
                 template: str | None):
        import multiprocessing
        import pickle
        from collections import deque

        state = pickle.dumps(tokenizer)
        # spawn: forking a process that holds tokenizer or torch threads can deadlock the child
        self.pool = multiprocessing.get_context("spawn").Pool(
            processes, initializer=_start_tokenizer_process, initargs=(state, max_len, completion_only, template))
        self.pending: Any = deque()
        self.limit = 2 * processes
        try:
            self.pool.apply(_tokenize_in_process, ([],))  # the processes can load the tokenizer
        except BaseException:
            self.close()
            raise

    def submit(self, batch: list[Any], conversations: list[list[dict[str, str]]]) -> list[tuple[list[Any], list]]:
        """Queue a batch; returns the (batch, results) pairs done so far, in order."""
        self.pending.append((batch, self.pool.apply_async(_tokenize_in_process, (conversations,))))
        done = []
        while self.pending and (len(self.pending) > self.limit or self.pending[0][1].ready()):
            batch, result = self.pending.popleft()
            done.append((batch, result.get()))
        return done

    def drain(self) -> list[tuple[list[Any], list]]:
        done = [(batch, result.get()) for batch, result in self.pending]
        self.pending.clear()
        return done

    def forget(self) -> None:
        for _, result in self.pending:
            result.wait()
        self.pending.clear()

    def close(self) -> None:
        self.pool.terminate()
        self.pool.join()


def _start_pool(processes: int, tokenizer: Any, max_len: int, completion_only: bool,
                template: str | None) -> _TokenizerPool | None:
    """A pool of tokenizing processes, or None (tokenize here) when the tokenizer cannot be sent to one."""
    import pickle

    try:
        return _TokenizerPool(processes, tokenizer, max_len, completion_only, template)
    except (pickle.PicklingError, TypeError, AttributeError, RuntimeError):
        return None


def _meta_for(load: DatasetLoad, tokens: TokenStats | None) -> dict[str, Any]:
    return {"cache_format": CACHE_FORMAT, "created": time.time(), "format": load.format, "count": load.count,
            "tokens": tokens.as_dict() if tokens else None}


def _stats_from_meta(data: dict[str, Any]) -> TokenStats:
    data = dict(data)
    data["refused"] = [(r["line"], r["message"]) for r in data.get("refused") or []]
    return TokenStats(**data)


def tokenize_file(path: str | Path, cfg: Any, tokenizer: Any, template: str | None, *, shown: str | None = None,
                  report_mapping: bool = True, cache: bool = False, progress: Progress | None = None) -> TokenizedFile:
    """Load, check and tokenize one dataset file as training will; see the module docstring.

    `cfg` is a `RunConfig` (or None for the defaults). With `cache=True` a cached entry for
    the same key is reused (the file is still read for its issues, but not tokenized) and a
    new one is written otherwise.
    """
    from tui_tuner.chat_format.templates import ChatTemplateError
    from tui_tuner.data.hub import as_source

    data_cfg = getattr(cfg, "data", None)
    path = as_source(path, data_cfg)
    max_len = cfg.model.max_seq_length if cfg is not None else 1024
    completion_only = data_cfg.completion_only_loss if data_cfg is not None else True
    entry = None
    if cache:
        if progress:
            progress(f"hashing {path.name}" if isinstance(path, Path) else f"loading {path.shown} (hub cache, or "
                     "downloading it)", 0, None)
        entry = tokenized_cache_dir() / cache_key(path, data_cfg, tokenizer, template, max_len, completion_only)
        hit = _read_entry(entry)
        if hit is not None:
            if progress:
                progress("checking the data (token ids from the cache)", 0, None)
            load = load_dataset_file(path, data_cfg, shown=shown, report_mapping=report_mapping, keep_examples=False)
            tokens = _stats_from_meta(hit["tokens"]) if hit.get("tokens") else None
            return TokenizedFile(load, tokens, entry / ARROW_FILE, from_cache=True)

    total = _count_lines(path)
    processes = tokenize_processes(total)
    stats = _Stats(max_len)
    tmp_dir = sink = None
    if entry is not None:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp_dir = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
        sink = _ArrowSink(tmp_dir / ARROW_FILE)
    done = 0
    last_report = 0.0
    waiting: list[tuple[int, list[dict[str, str]]]] = []
    pool: _TokenizerPool | None = None

    def take(batch: list[tuple[int, list[dict[str, str]]]], results: list[tuple[Any, bool]]) -> None:
        nonlocal done, last_report
        for (line, conversation), (enc, estimated) in zip(batch, results):
            if isinstance(enc, ChatTemplateError):  # e.g. `raise_exception(...)` for a role the model does not have
                stats.refused.append((line, template_refusal(enc, conversation)))
                continue
            trained = enc["trained_tokens"]
            stats.add(line, enc["length"], enc["truncated"], trained, estimated)
            if sink is not None:
                sink.add(enc["input_ids"], enc["labels"], line, enc["length"], trained)
            done += 1
        if progress and time.monotonic() - last_report > 0.5:
            last_report = time.monotonic()
            progress("tokenizing", done, total)

    def tokenize_waiting() -> None:
        batch = list(waiting)
        waiting.clear()
        conversations = [c for _, c in batch]
        if pool is None:
            take(batch, tokenize_many_within_budget(tokenizer, conversations, max_len, completion_only, template))
            return
        for ready, results in pool.submit(batch, conversations):
            take(ready, results)

    def on_example(line: int, conversation: list[dict[str, str]]) -> None:
        waiting.append((line, conversation))
        if len(waiting) >= TOKENIZE_BATCH:
            tokenize_waiting()

    def on_restart() -> None:  # the file is read again in another format: forget what was tokenized
        nonlocal stats, sink, done
        waiting.clear()
        if pool is not None:
            pool.forget()
        stats, done = _Stats(max_len), 0
        if sink is not None:
            sink.close()
            sink = _ArrowSink(tmp_dir / ARROW_FILE)

    try:
        if processes > 1:
            pool = _start_pool(processes, tokenizer, max_len, completion_only, template)
        load = load_dataset_file(path, data_cfg, shown=shown, report_mapping=report_mapping, keep_examples=False,
                                 on_example=on_example, on_restart=on_restart)
        if waiting:
            tokenize_waiting()
        if pool is not None:
            for ready, results in pool.drain():
                take(ready, results)
        tokens = stats.result()
        if progress:
            progress("tokenizing", done, done)
        if sink is not None:
            sink.close()
            (tmp_dir / META_FILE).write_text(json.dumps(_meta_for(load, tokens)) + "\n", encoding="utf-8")
            try:
                os.replace(tmp_dir, entry)  # complete or absent: never a half-written entry
            except OSError:  # another process wrote the same entry first: use theirs
                shutil.rmtree(tmp_dir, ignore_errors=True)
            tmp_dir = None
            _prune(entry.parent, keep=entry)
    finally:
        if pool is not None:
            pool.close()
        if tmp_dir is not None:
            if sink is not None:
                try:
                    sink.close()
                except Exception:  # noqa: BLE001 - the entry is deleted anyway
                    pass
            shutil.rmtree(tmp_dir, ignore_errors=True)
    return TokenizedFile(load, tokens, entry / ARROW_FILE if entry is not None else None)


def _read_entry(entry: Path) -> dict[str, Any] | None:
    """A complete cache entry's metadata (and its use recorded), or None."""
    try:
        meta = json.loads((entry / META_FILE).read_text(encoding="utf-8"))
        if meta.get("cache_format") != CACHE_FORMAT or not (entry / ARROW_FILE).is_file():
            return None
        os.utime(entry / META_FILE)  # the least recently used entries are pruned first
        return meta
    except (OSError, ValueError, AttributeError):
        return None


def _prune(folder: Path, keep: Path) -> None:
    entries = []
    for child in folder.iterdir():
        if child.name.startswith("."):
            # a temp folder left by a killed process: gone after a day
            try:
                if time.time() - child.stat().st_mtime > 86400:
                    shutil.rmtree(child, ignore_errors=True)
            except OSError:
                pass
            continue
        try:
            entries.append(((child / META_FILE).stat().st_mtime, child))
        except OSError:
            shutil.rmtree(child, ignore_errors=True)
    entries.sort(reverse=True)
    for _, child in entries[KEEP_ENTRIES:]:
        if child != keep:
            shutil.rmtree(child, ignore_errors=True)


def _count_lines(path: Any) -> int | None:
    """Lines of a JSON Lines file (a fast upper bound on its examples, for progress); None for other types."""
    if not isinstance(path, Path) or path.suffix.lower() != ".jsonl":
        return None
    n = 0
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                n += block.count(b"\n")
    except OSError:
        return None
    return n
