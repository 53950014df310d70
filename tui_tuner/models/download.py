"""Download a hub model into the standard Hugging Face cache, with size, progress and resume.

    from tui_tuner.models.download import ensure_model
    folder = ensure_model("Qwen/Qwen2.5-0.5B-Instruct", progress=print)

`tui-tuner model pull ID`, the training worker (before it loads weights) and `chat`/`eval`
call `ensure_model`. It asks the hub for the file listing with sizes, keeps only what
`from_pretrained` reads (config, tokenizer, and safetensors weights, or `.bin` weights when
the repository has no safetensors), skips what the cache already holds, and refuses before
writing anything when the cache's disk has less room than the rest of the download needs.

Files land where `hf download` puts them (`HF_HUB_CACHE`: `models--org--name/blobs/<hash>`
plus a `snapshots/<commit>/<file>` link and `refs/<revision>`), so transformers, other tools
and offline runs use them. Each file is written to `blobs/<hash>.incomplete` first and kept
there when the transfer stops (Ctrl+C, a dropped connection, a full disk): the next call
continues from its last byte with an HTTP range request and says "resuming".

Failures are `ModelDownloadError` with a `kind` (gated, missing, revision, offline, disk,
no-weights) and a `hint` that says what to do. Only this module touches the hub's files;
`tui-tuner check MODEL` still reads config.json alone (tui_tuner.models.spec).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Callable

LISTING_TIMEOUT_S = 20.0
DISK_MARGIN_BYTES = 256 << 20
"""Left free after the download: a model that fills its disk to the last byte leaves no room for the run."""
clock = time.monotonic
"""Where rates and ETAs read the time."""
PROGRESS_EVERY_S = 0.5
"""Progress callbacks at most this often (and once at the start and end of each file)."""

RATE_AFTER_BYTES = 256 << 10
"""Rate and ETA are shown once this much has moved (and a second has passed)."""

SUPPORT_FILES = ("*.json", "*.model", "*.txt", "*.tiktoken", "*.jinja", "tokenizer*", "*.py")
"""Besides weights, what `from_pretrained` may read: configs, tokenizers, chat templates, remote code."""
SAFETENSORS = "*.safetensors"
BIN_WEIGHTS = ("pytorch_model*.bin", "model*.bin")


class ModelDownloadError(Exception):
    """A model that cannot be downloaded: `kind` says which case, `hint` what to do."""

    def __init__(self, message: str, hint: str, kind: str):
        super().__init__(message)
        self.hint, self.kind = hint, kind


@dataclass
class HubFile:
    """One file of the repository at the resolved commit."""

    path: str
    size: int
    blob: str
    """The cache's blob name: the LFS sha256, else the git blob id (what the hub sends as the ETag)."""


@dataclass
class DownloadPlan:
    """What a download of `repo_id` at `commit` still has to fetch, and how much is already here."""

    repo_id: str
    revision: str
    commit: str
    cache_dir: Path
    files: list[HubFile]
    """Every file the model needs (weights and support files)."""
    missing: list[HubFile] = field(default_factory=list)
    """The files not in the cache yet."""
    partial: dict[str, int] = field(default_factory=dict)
    """Bytes already in `blobs/<hash>.incomplete` from an interrupted download, by file path."""

    @property
    def repo_folder(self) -> Path:
        return self.cache_dir / ("models--" + self.repo_id.replace("/", "--"))

    @property
    def snapshot(self) -> Path:
        return self.repo_folder / "snapshots" / self.commit

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def to_fetch_bytes(self) -> int:
        """Bytes still to transfer: the missing files less what their .incomplete files hold."""
        return sum(f.size - self.partial.get(f.path, 0) for f in self.missing)

    @property
    def resumed_bytes(self) -> int:
        return sum(self.partial.values())


@dataclass
class DownloadProgress:
    """Where a download stands; `done`/`total` count the bytes of the files being fetched."""

    repo_id: str
    file: str
    done: int
    total: int
    rate: float | None
    """Bytes per second transferred by this process (resumed bytes not counted)."""
    eta_s: float | None
    resumed: int = 0
    finished: bool = False

    def text(self) -> str:
        """`downloading weights 1.20 of 4.50 GiB · 33.4 MiB/s · ETA 1:34` (how the CLI and the TUI say it)."""
        return progress_text({"what": "downloading weights", **self.fields()})

    def fields(self) -> dict[str, Any]:
        """The fields of a run directory's `prepare` event (tui_tuner.rundir.events)."""
        return {"done": self.done, "total": self.total, "rate": round(self.rate, 1) if self.rate else None,
                "eta_s": round(self.eta_s, 1) if self.eta_s is not None else None, "unit": "bytes",
                "file": self.file, "repo": self.repo_id, "resumed": self.resumed}


def progress_text(event: dict[str, Any]) -> str:
    """A byte-counting progress line from a `prepare`-shaped dict (done/total/rate/eta_s in bytes)."""
    from tui_tuner.core.units import format_bytes, format_duration

    done, total, rate, eta = (event.get(k) for k in ("done", "total", "rate", "eta_s"))
    head = str(event.get("what") or "downloading")
    if isinstance(done, int):
        head += f" {format_bytes(done)}" + (f" of {format_bytes(total)}" if isinstance(total, int) else "")
    parts = [head]
    if isinstance(rate, (int, float)) and rate > 0:
        parts.append(f"{format_bytes(rate)}/s")
    if isinstance(eta, (int, float)) and eta >= 0 and isinstance(done, int) and done != total:
        parts.append(f"ETA {format_duration(eta)}")
    if event.get("resumed"):
        parts.append(f"resumed from {format_bytes(event['resumed'])}")
    return " · ".join(parts)


# ---------------------------------------------------------------------------- the cache


_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")


def is_hub_model(name: str, base_dir: Path | None = None) -> bool:
    """Whether `model.name_or_path` names a hub repository: `org/name`, not a built-in model or an existing path."""
    from tui_tuner.config.defaults import DEMO_MODEL_ID
    from tui_tuner.models.demo import is_builtin_model

    if name == DEMO_MODEL_ID or is_builtin_model(name):
        return False
    path = Path(name).expanduser()
    if (path if path.is_absolute() else (base_dir or Path.cwd()) / path).exists():
        return False
    return bool(_HUB_ID.fullmatch(name)) and ".." not in name and not name.startswith((".", "~"))



def hub_cache_dir() -> Path:
    """The hub cache `hf download` and `from_pretrained` use ($HF_HUB_CACHE, else $HF_HOME/hub, ...)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hub_offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _free(path: Path) -> tuple[Path, int] | None:
    """(the nearest existing folder at or above `path`, its free bytes), or None when unreadable."""
    probe = path.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return probe, shutil.disk_usage(probe).free
    except OSError:
        return None


def cached_snapshot(repo_id: str, revision: str | None = None, cache_dir: Path | None = None) -> Path | None:
    """The cached snapshot folder of `repo_id` at `revision` when it holds config.json and all its weights."""
    folder = (cache_dir or hub_cache_dir()) / ("models--" + repo_id.replace("/", "--"))
    rev = revision or "main"
    commit = rev
    ref = folder / "refs" / rev
    if ref.is_file():
        commit = ref.read_text(encoding="utf-8").strip()
    snap = folder / "snapshots" / commit
    return snap if _complete(snap) else None


def _complete(snap: Path) -> bool:
    """config.json and weights are there; a sharded checkpoint has every shard its index names."""
    import json

    if not (snap / "config.json").is_file():
        return False
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = snap / index_name
        if index.is_file():
            try:
                shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                return False
            return all((snap / s).is_file() for s in shards)
    return any(p.is_file() for pattern in (SAFETENSORS, *BIN_WEIGHTS) for p in snap.glob(pattern))


def cache_contents(repo_id: str, cache_dir: Path | None = None) -> str:
    """What the cache holds of `repo_id`, in words (for the offline message)."""
    folder = (cache_dir or hub_cache_dir()) / ("models--" + repo_id.replace("/", "--"))
    snaps = sorted(p for p in (folder / "snapshots").glob("*") if p.is_dir()) if folder.is_dir() else []
    if not snaps:
        return f"nothing of it is in {folder.parent}"
    names = sorted({p.name for s in snaps for p in s.iterdir()})
    partial = [p for p in (folder / "blobs").glob("*.incomplete")]
    more = f", and {len(partial)} partly downloaded file(s)" if partial else ""
    return f"{folder} holds only {', '.join(names[:6])}{' ...' if len(names) > 6 else ''}{more}"


# ---------------------------------------------------------------------------- the plan


def wanted_files(files: list[HubFile]) -> list[HubFile]:
    """The files `from_pretrained` needs: top-level support files and one weight format (safetensors first)."""
    top = [f for f in files if "/" not in f.path]
    support = [f for f in top if any(fnmatch(f.path, p) for p in SUPPORT_FILES)]
    weights = [f for f in top if fnmatch(f.path, SAFETENSORS)]
    if not weights:
        weights = [f for f in top if any(fnmatch(f.path, p) for p in BIN_WEIGHTS)]
    chosen = {f.path: f for f in [*support, *weights]}
    return sorted(chosen.values(), key=lambda f: (f.size, f.path))  # small first: a gated repo fails on config.json


def _listing(repo_id: str, revision: str | None) -> tuple[str, list[HubFile]]:
    """(commit, files with sizes) from the hub; hub errors are translated by the caller."""
    from huggingface_hub import HfApi

    info = HfApi().model_info(repo_id, revision=revision, files_metadata=True, timeout=LISTING_TIMEOUT_S)
    files = []
    for s in info.siblings or []:
        lfs = getattr(s, "lfs", None)
        sha = getattr(lfs, "sha256", None) if lfs is not None else None
        size = getattr(lfs, "size", None) if lfs is not None else None
        size = size if size is not None else s.size
        blob = sha or s.blob_id
        if size is None or not blob:
            continue  # listing without metadata: nothing to size it by
        files.append(HubFile(s.rfilename, int(size), str(blob)))
    return str(info.sha), files


def plan_download(repo_id: str, revision: str | None = None, cache_dir: Path | None = None) -> DownloadPlan:
    """Ask the hub what `repo_id` holds and what of it the cache lacks; raises `ModelDownloadError`."""
    cache = Path(cache_dir) if cache_dir is not None else hub_cache_dir()
    if hub_offline():
        raise _offline_error(repo_id, revision, cache, "HF_HUB_OFFLINE is set")
    try:
        commit, listing = _listing(repo_id, revision)
    except Exception as exc:
        raise _hub_error(exc, repo_id, revision, cache) from exc
    files = wanted_files(listing)
    if not any(fnmatch(f.path, SAFETENSORS) or any(fnmatch(f.path, p) for p in BIN_WEIGHTS) for f in files):
        kinds = sorted({Path(f.path).suffix for f in listing if Path(f.path).suffix})
        raise ModelDownloadError(
            f"{repo_id} has no transformers weights (.safetensors or .bin) at its top level; it holds "
            f"{', '.join(kinds) or 'no files'}",
            "Pick the repository with the original weights (a GGUF-only repository is for llama.cpp, not for "
            "fine-tuning), or give a local model folder.", "no-weights")
    plan = DownloadPlan(repo_id, revision or "main", commit, cache, files)
    blobs = plan.repo_folder / "blobs"
    for f in files:
        if (plan.snapshot / f.path).is_file() or (blobs / f.blob).is_file():
            continue
        plan.missing.append(f)
        part = blobs / f"{f.blob}.incomplete"
        if part.is_file():
            size = part.stat().st_size
            if 0 < size <= f.size:
                plan.partial[f.path] = size
    return plan


def disk_problem(plan: DownloadPlan) -> ModelDownloadError | None:
    """The refusal to give when the cache's disk has less room than the rest of the download; else None."""
    from tui_tuner.core.units import format_bytes

    need = plan.to_fetch_bytes
    if need == 0:
        return None
    free = _free(plan.cache_dir)
    if free is None or free[1] >= need + DISK_MARGIN_BYTES:
        return None
    where, have = free
    return ModelDownloadError(
        f"not enough disk space to download {plan.repo_id}: it needs {format_bytes(need)} more "
        f"(+{format_bytes(DISK_MARGIN_BYTES)} to spare) in {plan.cache_dir}, and {where} has {format_bytes(have)} free",
        f"Free space there (`df -h {where}`; `hf cache ls` and `hf cache rm` list and remove cached models), or put "
        "the cache on a bigger disk: `export HF_HUB_CACHE=/big/disk/hf-hub` (or HF_HOME) and run again.", "disk")


# ---------------------------------------------------------------------------- errors


def _offline_error(repo_id: str, revision: str | None, cache: Path, why: str) -> ModelDownloadError:
    rev = f" --revision {revision}" if revision and revision != "main" else ""
    folder = cache / ("models--" + repo_id.replace("/", "--"))
    return ModelDownloadError(
        f"{repo_id} is not downloaded and the hub cannot be reached ({why}); {cache_contents(repo_id, cache)}",
        f"On a machine with internet run `tui-tuner model pull {repo_id}{rev}` (or `hf download {repo_id}{rev}`), "
        f"then copy {folder} into {cache} here (or point HF_HUB_CACHE at the copy); or set model.name_or_path to a "
        "local model folder.", "offline")


def _hub_error(exc: BaseException, repo_id: str, revision: str | None, cache: Path) -> ModelDownloadError:
    """The hub's exception in words, with what to do; unknown errors keep their own text."""
    from huggingface_hub.errors import (GatedRepoError, LocalEntryNotFoundError, OfflineModeIsEnabled,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    if isinstance(exc, ModelDownloadError):
        return exc
    if isinstance(exc, GatedRepoError):
        return ModelDownloadError(
            f"{repo_id} is gated: this account has not been granted access (or no token is set)",
            f"Accept its licence on https://huggingface.co/{repo_id} with your account, then log in on this "
            "machine: `hf auth login` (or set HF_TOKEN to a read token), and run again.", "gated")
    if isinstance(exc, RevisionNotFoundError):
        return ModelDownloadError(
            f"{repo_id} has no revision {revision!r}",
            "Set model.revision (or --revision) to a branch, tag or commit of that repository, or leave it out "
            "for main.", "revision")
    if isinstance(exc, RepositoryNotFoundError):
        import difflib

        from tui_tuner.models.spec import catalog_names

        close = difflib.get_close_matches(repo_id, catalog_names(), n=2, cutoff=0.5)
        hint = f"Did you mean {' or '.join(close)}? " if close else ""
        return ModelDownloadError(
            f"{repo_id} is not a model on the hub (no such repository, or a private one this account cannot see)",
            f"{hint}Check the spelling of the id (org/name, as on its huggingface.co page); for a private model "
            "log in with `hf auth login`.", "missing")
    if _is_disk_full(exc):
        return ModelDownloadError(
            f"the disk filled up while downloading {repo_id} into {cache}",
            "Free space (`hf cache rm` removes cached models) or set HF_HUB_CACHE to a bigger disk, then run again: "
            "the download resumes where it stopped.", "disk")
    if _is_unreachable(exc) or isinstance(exc, (OfflineModeIsEnabled, LocalEntryNotFoundError)):
        return _offline_error(repo_id, revision, cache, f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
                              if str(exc) else type(exc).__name__)
    return ModelDownloadError(f"downloading {repo_id} failed: {type(exc).__name__}: {str(exc)[:300]}",
                              "Run again (the download resumes); `tui-tuner model pull` shows the progress.", "other")


UNREACHABLE_ERRORS = frozenset({"ConnectError", "ConnectTimeout", "ReadTimeout", "PoolTimeout", "TimeoutException",
                                "NetworkError", "ReadError", "RemoteProtocolError", "ProxyError"})
"""The HTTP client's exceptions (httpx, or the fork huggingface_hub bundles) for a hub out of reach, by name."""


def _is_unreachable(exc: BaseException) -> bool:
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, (ConnectionError, TimeoutError)) or type(exc).__name__ in UNREACHABLE_ERRORS:
            return True
        exc, seen = _cause(exc), seen + 1
    return False


def _cause(exc: BaseException) -> BaseException | None:
    return exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)


def _is_disk_full(exc: BaseException) -> bool:
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        exc, seen = _cause(exc), seen + 1
    return False


# ---------------------------------------------------------------------------- the transfer


class _Meter:
    """Turns byte counts from the transfer into throttled `DownloadProgress` callbacks."""

    def __init__(self, plan: DownloadPlan, progress: Callable[[DownloadProgress], None] | None):
        self.plan, self.progress = plan, progress
        self.total = sum(f.size for f in plan.missing)
        self.done = sum(plan.partial.values())
        self.began, self.moved, self.shown = clock(), 0, -PROGRESS_EVERY_S
        self.file = ""

    def add(self, n: int) -> None:
        self.done += n
        self.moved += n
        self.report()

    def report(self, force: bool = False) -> None:
        now = clock()
        if self.progress is None or (not force and now - self.shown < PROGRESS_EVERY_S):
            return
        self.shown = now
        elapsed = now - self.began
        # a rate from the first few kilobytes (config.json) is noise: wait for a second and 256 KiB
        rate = self.moved / elapsed if self.moved >= RATE_AFTER_BYTES and elapsed >= 1.0 else None
        eta = (self.total - self.done) / rate if rate else None
        self.progress(DownloadProgress(self.plan.repo_id, self.file, self.done, self.total, rate, eta,
                                       resumed=self.plan.resumed_bytes, finished=self.done >= self.total))


def _progress_class(meter: _Meter) -> type:
    """A tqdm stand-in for huggingface_hub's `http_get`: it only forwards the byte counts to `meter`."""

    class _Forward:
        def __init__(self, *args: Any, **kwargs: Any):
            pass

        def __enter__(self) -> "_Forward":
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def update(self, n: int | float | None = 1) -> None:
            meter.add(int(n or 0))

        def close(self) -> None:
            pass

        def set_postfix_str(self, *args: Any, **kwargs: Any) -> None:
            pass

    return _Forward


def _fetch(plan: DownloadPlan, f: HubFile, meter: _Meter) -> None:
    """Fetch one file into `blobs/<hash>`, continuing its .incomplete file, then link it into the snapshot."""
    from filelock import FileLock
    from huggingface_hub import file_download, hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    blobs = plan.repo_folder / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    blob, part = blobs / f.blob, blobs / f"{f.blob}.incomplete"
    locks = plan.cache_dir / ".locks" / plan.repo_folder.name  # where huggingface_hub keeps its own locks
    locks.mkdir(parents=True, exist_ok=True)
    with FileLock(str(locks / f"{f.blob}.lock")):  # two runs pulling the same model share each file
        if not blob.is_file():
            have = part.stat().st_size if part.is_file() else 0
            if have > f.size:  # not this file's bytes (a changed file): start over
                part.unlink()
                have = 0
            url = hf_hub_url(plan.repo_id, f.path, revision=plan.commit)
            with open(part, "ab") as fh:
                file_download.http_get(url, fh, resume_size=have, headers=build_hf_headers(),
                                       expected_size=f.size, displayed_filename=f.path,
                                       tqdm_class=_progress_class(meter))
            got = part.stat().st_size
            if got != f.size:
                raise OSError(f"{f.path}: got {got} bytes, the hub lists {f.size}; run again to fetch the rest")
            os.replace(part, blob)
    _link(plan, f)


def _link(plan: DownloadPlan, f: HubFile) -> None:
    """`snapshots/<commit>/<path>` -> `blobs/<hash>` (a relative link, as huggingface_hub makes it)."""
    target = plan.snapshot / f.path
    target.parent.mkdir(parents=True, exist_ok=True)
    blob = plan.repo_folder / "blobs" / f.blob
    if target.is_file():
        return
    if target.is_symlink():
        target.unlink()
    try:
        target.symlink_to(os.path.relpath(blob, target.parent))
    except OSError:  # no symlinks here (some Windows setups): a copy, as huggingface_hub falls back to
        shutil.copy2(blob, target)


def _transfer_error(exc: BaseException, plan: DownloadPlan, f: HubFile) -> ModelDownloadError:
    """A failure in the middle of a file: what is kept, and that running again resumes from there."""
    from tui_tuner.core.units import format_bytes

    err = _hub_error(exc, plan.repo_id, plan.revision, plan.cache_dir)
    part = plan.repo_folder / "blobs" / f"{f.blob}.incomplete"
    kept = part.stat().st_size if part.is_file() else 0
    where = f"{f.path} ({format_bytes(kept)} of {format_bytes(f.size)} kept in {part})" if kept else f.path
    if err.kind == "offline":
        return ModelDownloadError(f"the connection to the hub was lost while downloading {plan.repo_id}: {where}",
                                  "Run again when the network is back: the download resumes where it stopped "
                                  f"(`tui-tuner model pull {plan.repo_id}`).", "offline")
    if err.kind == "disk":
        return ModelDownloadError(f"the disk filled up while downloading {plan.repo_id}: {where}", err.hint, "disk")
    return err


def _write_ref(plan: DownloadPlan) -> None:
    if plan.revision == plan.commit:
        return
    ref = plan.repo_folder / "refs" / plan.revision
    ref.parent.mkdir(parents=True, exist_ok=True)
    tmp = ref.with_name(ref.name + ".tmp")
    tmp.write_text(plan.commit, encoding="utf-8")
    os.replace(tmp, ref)


def download(plan: DownloadPlan, progress: Callable[[DownloadProgress], None] | None = None) -> Path:
    """Fetch what `plan` lacks (checking the disk first) and return the snapshot folder."""
    problem = disk_problem(plan)
    if problem is not None:
        raise problem
    meter = _Meter(plan, progress if plan.missing else None)
    plan.cache_dir.mkdir(parents=True, exist_ok=True)
    _write_ref(plan)
    for f in plan.files:
        if f in plan.missing:
            meter.file = f.path
            meter.report(force=True)
            try:
                _fetch(plan, f, meter)
            except Exception as exc:
                raise _transfer_error(exc, plan, f) from exc
        else:
            _link(plan, f)
    meter.report(force=True)
    return plan.snapshot


def ensure_model(repo_id: str, revision: str | None = None, *,
                 progress: Callable[[DownloadProgress], None] | None = None,
                 note: Callable[[str], None] | None = None, cache_dir: Path | None = None) -> Path:
    """The local snapshot folder of hub model `repo_id`, downloading what the cache lacks.

    `note` receives one-line remarks (the size to download, "resuming", "using the cached copy");
    `progress` byte counts while files transfer. Offline (HF_HUB_OFFLINE, or the hub unreachable) a
    complete cached snapshot is used; otherwise `ModelDownloadError` says what to do.
    """
    from tui_tuner.core.units import format_bytes

    say = note or (lambda s: None)
    cache = Path(cache_dir) if cache_dir is not None else hub_cache_dir()
    cached = cached_snapshot(repo_id, revision, cache)
    if cached is not None:  # complete here: no need to ask the hub (which may be slow or out of reach)
        return cached
    try:
        plan = plan_download(repo_id, revision, cache)
    except ModelDownloadError as exc:
        cached = cached_snapshot(repo_id, revision, cache) if exc.kind == "offline" else None
        if cached is None:
            raise
        say(f"{repo_id}: the hub is not reachable; using the cached copy in {cached}")
        return cached
    if not plan.missing:  # every blob is here (maybe from another revision): link the snapshot
        return download(plan)
    need = plan.to_fetch_bytes
    head = (f"{repo_id}: downloading {format_bytes(need)} ({len(plan.missing)} of {len(plan.files)} files, "
            f"{format_bytes(plan.total_bytes)} in all) into {cache}")
    if plan.resumed_bytes:
        head += f"; resuming: {format_bytes(plan.resumed_bytes)} already here from an interrupted download"
    say(head)
    return download(plan, progress)
