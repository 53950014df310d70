"""Hub datasets as data sources: `org/name` ids and `hf://datasets/org/name/path` file URLs.

    tui-tuner data pull yahma/alpaca-cleaned --split "train[:2000]"
    tui-tuner data check yahma/alpaca-cleaned --split "train[:2000]"

`data.train: org/name` is a hub dataset unless a local path of that name exists (axolotl's
convention); `hf://datasets/org/name[@revision]/path/file.jsonl` names one file of a dataset
repository (the URL pandas, polars and duckdb share) and `hf://datasets/org/name` the whole
dataset. A whole dataset is loaded with `datasets.load_dataset` (its subset and split from
`data.subset` / `data.split`), so its files sit in the huggingface_hub cache and its Arrow
tables in the `datasets` cache: the second run and an offline machine reuse them. Offline (or
with the hub unreachable) a snapshot in the hub cache, as `hf download --repo-type dataset`
leaves it, is used without asking. A single file is downloaded into the hub cache and then read
by our own readers, so its issues keep their line numbers.

Heavy imports (datasets, huggingface_hub) happen inside the functions that need them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui_tuner.core.hub_names import (
    HF_URL_PREFIX, SPLIT_EXAMPLES, hub_dataset_url, looks_like_dataset_id, parse_hub_url, split_problem, url_problem,
)

__all__ = ["HubSource", "HubDataError", "data_source", "as_source", "load_hub", "pull", "cached_here",
           "looks_like_dataset_id", "split_problem", "url_problem", "parse_hub_url"]


@dataclass(frozen=True)
class HubSource:
    """A dataset on the hub: a whole dataset (`file` None) or one file of a dataset repository."""

    repo_id: str
    file: str | None = None
    """A path inside the repository (an `hf://` URL with a path); None for the dataset as a whole."""
    revision: str | None = None
    subset: str | None = None
    """The dataset's config name (`load_dataset(repo, name=...)`); whole datasets only."""
    split: str = "train"
    """Split with an optional slice, e.g. `train[:2000]`; whole datasets only."""
    download: bool = True
    """False: use only what is already on this machine (the TUI's live checks never download)."""

    @property
    def url(self) -> str:
        """`hf://datasets/org/name[@revision][/file]`: how a run's frozen config names this source."""
        at = f"@{self.revision}" if self.revision else ""
        return f"{HF_URL_PREFIX}{self.repo_id}{at}" + (f"/{self.file}" if self.file else "")

    @property
    def shown(self) -> str:
        """How issues name the source: the URL of a file, `org/name[:subset][split]` of a dataset."""
        if self.file:
            return self.url
        at = f"@{self.revision}" if self.revision else ""
        subset = f":{self.subset}" if self.subset else ""
        return f"{self.repo_id}{at}{subset}[{self.split}]"

    @property
    def suffix(self) -> str:
        return Path(self.file).suffix.lower() if self.file else ""

    def __str__(self) -> str:
        return self.shown


class HubDataError(Exception):
    """A hub dataset that cannot be loaded: `str(exc)` says why and what to do."""


def hub_offline() -> bool:
    """True when the hub is switched off for datasets (HF_HUB_OFFLINE, HF_DATASETS_OFFLINE, TRANSFORMERS_OFFLINE)."""
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
               for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"))


def data_source(value: str, base_dir: Path | None, data_cfg: Any = None, *, role: str = "train",
                download: bool = True) -> Path | HubSource:
    """What `data.train` / `data.eval` (`role`) names: a local path, or a hub dataset.

    A local path that exists wins over a hub id of the same spelling; a missing `org/name`
    that does not end like a data file is a hub id; `hf://datasets/...` is always the hub.
    """
    subset = getattr(data_cfg, "subset", None)
    split = (getattr(data_cfg, "eval_dataset_split", "test") if role == "eval"
             else getattr(data_cfg, "split", "train")) or "train"
    url = hub_dataset_url(value, base_dir)
    if url is None:
        path = Path(value).expanduser()
        return path if path.is_absolute() or base_dir is None else base_dir / path
    repo_id, revision, file = parse_hub_url(url)
    return HubSource(repo_id, file, revision, None if file else subset, "train" if file else split, download)


def as_source(value: Any, data_cfg: Any = None) -> Path | HubSource:
    """A `HubSource` as it is, an `hf://` string as a hub source, anything else as a path."""
    if isinstance(value, HubSource):
        return value
    if isinstance(value, str) and value.startswith("hf://"):
        return data_source(value, None, data_cfg)
    return Path(value)


# ---------------------------------------------------------------------------- caches and messages


def hub_cache_dir() -> Path:
    """Where huggingface_hub keeps downloaded repositories (`HF_HUB_CACHE`, else `HF_HOME/hub`)."""
    from huggingface_hub import constants

    return Path(os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE).expanduser()


def datasets_cache_dir() -> Path:
    """Where `datasets` keeps prepared Arrow tables (`HF_DATASETS_CACHE`, else `HF_HOME/datasets`)."""
    from huggingface_hub import constants

    return Path(os.environ.get("HF_DATASETS_CACHE") or Path(constants.HF_HOME) / "datasets").expanduser()


def pull_command(source: HubSource) -> str:
    """The command that downloads `source` into the standard caches on a machine with internet."""
    target = source.url if source.file or source.revision else source.repo_id
    command = f"tui-tuner data pull {target}"
    if not source.file:
        if source.subset:
            command += f" --subset {source.subset}"
        if source.split != "train":
            command += f" --split '{source.split}'"
    return command


def not_here_message(source: HubSource, why: str) -> str:
    """`source` is not on this machine and cannot be fetched now: say so, where it was looked for, and how to get it."""
    what = f"`{source.file}` of hub dataset `{source.repo_id}`" if source.file else f"hub dataset `{source.repo_id}`"
    hf = f"hf download --repo-type dataset {source.repo_id}" + (f" {source.file}" if source.file else "")
    then = ("or unset HF_HUB_OFFLINE to download it" if hub_offline()
            else "or check the connection (a proxy goes in HTTPS_PROXY, a mirror in HF_ENDPOINT)")
    return (f"{what} is not on this machine and {why}. Looked in the hub cache {hub_cache_dir()} and the "
            f"datasets cache {datasets_cache_dir()}. On a machine with internet run `{pull_command(source)}` "
            f"(or `{hf}`) and copy the hub cache folder here, {then}. A local file of that name would be used "
            "instead.")


# ---------------------------------------------------------------------------- loading

_LOADED: dict[HubSource, Any] = {}
"""Sources loaded in this process: the loader reads a dataset twice (format, then examples)."""


def load_hub(source: HubSource) -> Any:
    """A local file path (for a file URL) or a `datasets.Dataset` (a whole dataset); raises `HubDataError`."""
    if source not in _LOADED:
        _LOADED[source] = _load_file(source) if source.file else _load_dataset(source)
    return _LOADED[source]


def _load_file(source: HubSource) -> Path:
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    assert source.file is not None
    cached = try_to_load_from_cache(source.repo_id, source.file, revision=source.revision, repo_type="dataset")
    if isinstance(cached, str):
        return Path(cached)
    if hub_offline():
        raise HubDataError(not_here_message(source, "the hub is switched off (HF_HUB_OFFLINE=1)"))
    if not source.download:
        raise HubDataError(not_here_message(source, "it is downloaded when training starts"))
    try:
        return Path(hf_hub_download(source.repo_id, source.file, revision=source.revision, repo_type="dataset"))
    except Exception as exc:  # noqa: BLE001 - every hub failure becomes a message with what to do
        raise HubDataError(_hub_failure(source, exc)) from None


def _load_dataset(source: HubSource) -> Any:
    """`datasets.load_dataset` from the hub; offline or unreachable, from the caches."""
    import datasets

    quiet = not source.download  # a live check: no progress bars in the TUI's log
    if quiet:
        datasets.disable_progress_bars()
    kwargs = {"name": source.subset, "split": source.split.replace(" ", "")}
    try:
        if source.download and not hub_offline():
            try:
                return datasets.load_dataset(source.repo_id, revision=source.revision, **kwargs)
            except ConnectionError:
                why = "the hub could not be reached"
            except ValueError as exc:
                raise HubDataError(_choice_problem(source, exc)) from None
            except Exception as exc:  # noqa: BLE001 - not found, gated, bad files: say which
                raise HubDataError(_hub_failure(source, exc)) from None
        else:
            why = ("the hub is switched off (HF_HUB_OFFLINE=1)" if hub_offline()
                   else "it is downloaded when training starts")
        return _load_cached(source, kwargs, why)
    finally:
        if quiet:
            datasets.enable_progress_bars()


def _load_cached(source: HubSource, kwargs: dict[str, Any], why: str) -> Any:
    """The dataset from what is on this machine: `datasets`' prepared cache, else a hub-cache snapshot."""
    import datasets
    import datasets.config as dconfig

    was = dconfig.HF_HUB_OFFLINE
    dconfig.HF_HUB_OFFLINE = True  # neither attempt may reach out: an unreachable hub may hang, not refuse
    try:
        try:
            return datasets.load_dataset(source.repo_id, **kwargs)  # prepared by an earlier online load
        except ValueError as exc:
            choice: str | None = _choice_problem(source, exc)
        except Exception:  # noqa: BLE001 - not in that cache: try the snapshot
            choice = None
        snapshot = _snapshot(source)
        if snapshot is None:
            raise HubDataError(choice or not_here_message(source, why))
        try:
            return datasets.load_dataset(str(snapshot), **kwargs)
        except ValueError as exc:
            raise HubDataError(_choice_problem(source, exc)) from None
        except Exception as exc:  # noqa: BLE001 - a partial or broken snapshot
            raise HubDataError(f"hub dataset `{source.shown}`: the copy in {snapshot} cannot be read "
                               f"({_first_line(exc)}). Download it again with `{pull_command(source)}`.") from None
    finally:
        dconfig.HF_HUB_OFFLINE = was


def _snapshot(source: HubSource) -> Path | None:
    """The hub-cache snapshot folder of `source` (refs/<revision> -> snapshots/<sha>), or None."""
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(source.repo_id, repo_type="dataset", revision=source.revision,
                                        local_files_only=True))
    except Exception:  # noqa: BLE001 - LocalEntryNotFoundError and friends: not here
        return None
    return folder if folder.is_dir() and any(folder.iterdir()) else None


def cached_here(source: HubSource) -> bool:
    """Whether `source` can be loaded without the network (hub cache or prepared `datasets` cache); never downloads."""
    if source.file:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(source.repo_id, source.file, revision=source.revision,
                                                 repo_type="dataset"), str)
    if _snapshot(source) is not None:
        return True
    org, _, name = source.repo_id.partition("/")
    return (datasets_cache_dir() / f"{org}___{_snake(name)}").is_dir()


def _snake(name: str) -> str:
    """`datasets`' camelcase_to_snakecase, which names its cache folders."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z\d])([A-Z])", r"\1_\2", name).lower()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def _choice_problem(source: HubSource, exc: ValueError) -> str:
    """A bad subset or split, with the choices `datasets` listed."""
    text = _first_line(exc)
    if "BuilderConfig" in text or "Config name is missing" in text:
        return (f"hub dataset `{source.repo_id}` has no subset `{source.subset}`: {text} Set `data.subset` "
                "(`--subset`) to one of them.")
    if "split" in text.lower():
        return (f"hub dataset `{source.repo_id}`: split `{source.split}` cannot be read: {text} Set `data.split` "
                f"(or `data.eval_dataset_split` for data.eval; `--split`) to one of them, e.g. {SPLIT_EXAMPLES}.")
    return f"hub dataset `{source.shown}` cannot be loaded: {text}"


def _hub_failure(source: HubSource, exc: BaseException) -> str:
    """A hub error (not found, gated, unreachable, bad revision) as what happened and what to do."""
    from huggingface_hub.errors import (
        EntryNotFoundError, GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError,
    )

    text = _first_line(exc)
    cause = exc.__cause__ or exc.__context__
    kinds = (type(exc), type(cause)) if cause is not None else (type(exc),)
    if issubclass(type(exc), LocalEntryNotFoundError):  # the hub did not answer and the cache lacks it
        return not_here_message(source, "the hub could not be reached")
    if any(issubclass(k, GatedRepoError) for k in kinds) or "gated" in text.lower():
        return (f"hub dataset `{source.repo_id}` is gated: accept its terms on "
                f"https://huggingface.co/datasets/{source.repo_id} and log in (`hf auth login`), then try again.")
    if any(issubclass(k, RevisionNotFoundError) for k in kinds) or "Revision" in text:
        return f"hub dataset `{source.repo_id}` has no revision `{source.revision}`: use a branch, tag or commit of it."
    if any(issubclass(k, EntryNotFoundError) for k in kinds) and source.file:
        return (f"hub dataset `{source.repo_id}` has no file `{source.file}`: check the path on "
                f"https://huggingface.co/datasets/{source.repo_id}/tree/main.")
    if any(issubclass(k, RepositoryNotFoundError) for k in kinds) or "doesn't exist on the Hub" in text:
        return (f"`{source.repo_id}` is neither a local file or folder nor a dataset on the hub (or it is private "
                "and you are not logged in: `hf auth login`). Check the spelling, e.g. yahma/alpaca-cleaned.")
    if isinstance(exc, (ConnectionError, TimeoutError, OSError)) and "connect" in text.lower():
        return not_here_message(source, "the hub could not be reached")
    return f"hub dataset `{source.shown}` cannot be loaded: {text}"


def hub_fingerprint(source: HubSource) -> str:
    """What the rows of `source` depend on, for the tokenized-data cache key (loads it)."""
    loaded = load_hub(source)
    if isinstance(loaded, Path):
        from tui_tuner.data.tokenized import file_digest

        return "file:" + file_digest(loaded)
    return f"dataset:{source.repo_id}:{source.subset}:{source.split}:{loaded._fingerprint}"


def pull(source: HubSource) -> tuple[Any, list[str]]:
    """Download `source` into the standard caches (what training and `data check` read); (dataset or file, lines to print)."""
    if hub_offline():
        raise HubDataError(f"`data pull` downloads from the hub, which is switched off here (HF_HUB_OFFLINE=1): "
                           f"run it on a machine with internet and copy {hub_cache_dir()} here, or unset "
                           "HF_HUB_OFFLINE.")
    _LOADED.pop(source, None)
    loaded = load_hub(source)
    if isinstance(loaded, Path):
        return loaded, [f"{source.url}: {loaded} ({loaded.stat().st_size:,} bytes) in the hub cache {hub_cache_dir()}"]
    lines = [f"{source.shown}: {len(loaded):,} rows, columns {', '.join(loaded.column_names)}",
             f"  files in the hub cache {hub_cache_dir()}",
             f"  Arrow tables in the datasets cache {datasets_cache_dir()}",
             f"  train on it with data.train: {source.repo_id}"
             + (f", data.subset: {source.subset}" if source.subset else "")
             + (f", data.split: '{source.split}'" if source.split != "train" else "")]
    return loaded, lines


def iter_rows(dataset: Any, batch_rows: int = 1000):
    """The rows of a `datasets.Dataset` as dicts, a batch at a time (the table stays memory-mapped)."""
    for batch in dataset.iter(batch_size=batch_rows):
        names = list(batch)
        for values in zip(*(batch[n] for n in names)):
            yield dict(zip(names, values))
