"""Preflight: what a valid config still needs from the world before a run can start.

The schema (`tui_tuner.config.schema`) checks that values are well formed; preflight checks
that they point at something real, so a typo fails in a second instead of after a model
download or an hour of queueing:

- the model is the built-in demo model, an existing local folder with a `config.json`,
  or a hub id that is in the local cache (offline) or known to the hub (online);
- the training and eval files exist and are files;
- the hub cache has room for a model that still has to be downloaded (the hub's file sizes
  online, the catalog's parameter count offline);
- the chat template renders a sample conversation (in Jinja's sandbox: a template
  cannot run code);
- `lora.target_modules` names layers the model has (from its config.json, no weights);
- `backend: unsloth` can run here (installed, and an NVIDIA GPU is visible);
- the runs folder can be created and written, and its disk has room for the run's
  checkpoints and final model (estimated from the architecture and the method);
- on a GPU machine, the GPUs agree with reality: torch's CUDA build runs on the driver NVML
  reports, CUDA_VISIBLE_DEVICES leaves enough GPUs (MIG slices counted as CUDA sees them), and
  the estimate fits in the memory free now on the GPU the run will get (other processes'
  memory and a MIG slice's size taken into account).

    from tui_tuner.train.preflight import preflight_issues
    issues = preflight_issues(load_config("configs/quickstart.yaml"))

`tui-tuner config check` and `tui-tuner train` run it after the schema check. Only a
hub id ever touches the network, and only when the hub is not switched off with
`HF_HUB_OFFLINE=1`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from tui_tuner.config.schema import DEMO_MODEL_ID, ConfigIssue, _line_for, yaml_positions
from tui_tuner.config.starter import missing_quickstart_data_fix

if TYPE_CHECKING:
    from tui_tuner.config.schema import LoadedConfig, RunConfig
    from tui_tuner.fit.hardware import HardwareReport

_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
_HUB_TIMEOUT_S = 10.0


def hub_offline() -> bool:
    """True when the user switched the hub off (`HF_HUB_OFFLINE` / `TRANSFORMERS_OFFLINE`)."""
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
               for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def looks_like_hub_id(value: str) -> bool:
    """`owner/name` with the characters the hub allows (and no `..`): could be a hub repository."""
    return bool(_HUB_ID.fullmatch(value)) and ".." not in value and not value.startswith((".", "~"))


def model_location(name_or_path: str, base_dir: Path) -> tuple[Literal["demo", "local", "hub", "missing"], Path | None]:
    """Classify `model.name_or_path`: the demo model, an existing local path, a hub id, or a missing path."""
    from tui_tuner.models.demo import is_builtin_model

    if name_or_path == DEMO_MODEL_ID or is_builtin_model(name_or_path):
        return "demo", None
    path = Path(name_or_path).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    if path.exists():
        return "local", path
    if looks_like_hub_id(name_or_path):
        return "hub", None
    return "missing", path


def _tracker_issues(cfg: "RunConfig") -> list[ConfigIssue]:
    """A tracker named in report_to but not installed: a warning (the run goes on without it)."""
    from tui_tuner.config.trackers import missing_problem

    return [ConfigIssue("report_to", problem, severity="warning")
            for problem in map(missing_problem, cfg.tracker_names) if problem]


def preflight_issues(loaded: "LoadedConfig", hardware: "HardwareReport | None" = None) -> list[ConfigIssue]:
    """Problems that stop `loaded` (a valid config) from starting a run; [] when it can start.

    Returns nothing for an invalid config: fix the schema issues first. `hardware`: a probe
    already taken (else NVML is read here, without torch).
    """
    cfg = loaded.config
    if cfg is None:
        return []
    if hardware is None:
        from tui_tuner.fit.hardware import probe

        hardware = probe(loaded.base_dir / cfg.output.runs_dir)
    file = str(loaded.path) if loaded.path is not None else None
    positions = {}
    if loaded.path is not None:
        try:
            positions = yaml_positions(Path(loaded.path).read_text(encoding="utf-8-sig"))
        except (OSError, UnicodeDecodeError):
            positions = {}
    base = loaded.base_dir
    issues = [*_model_issues(cfg, base), *_data_issues(cfg, base), *_template_issues(cfg, base)]
    if not any(i.severity == "error" and i.key == "model.name_or_path" for i in issues):
        issues += _target_module_issues(cfg, base)
    issues += [*_backend_issues(cfg), *_output_issues(cfg, base), *_download_space_issues(cfg, base),
               *gpu_issues(cfg, hardware), *_objective_issues(cfg, base), *_tracker_issues(cfg)]
    for issue in issues:
        issue.file = file
        issue.line, issue.column = _line_for(positions, tuple(issue.key.split(".")))
    return issues


def _objective_issues(cfg, base: Path) -> list[ConfigIssue]:
    """GRPO reward files (read, never run), reward columns the dataset lacks, and a chained adapter that is missing."""
    out: list[ConfigIssue] = []
    if cfg.objective == "grpo":
        from tui_tuner.data.rewards import reward_columns, reward_spec_problems

        for index, problem in reward_spec_problems(cfg.grpo.rewards, base):
            out.append(ConfigIssue(f"grpo.rewards.{index}", problem))
        from tui_tuner.data.hub import data_source

        train = data_source(cfg.data.train, base, cfg.data)
        if isinstance(train, Path) and train.is_file():
            from tui_tuner.data.preference import load_objective_file

            load = load_objective_file(train, "grpo", cfg.data)
            if load.examples:
                for name, column in reward_columns(cfg.grpo.rewards).items():
                    if column not in load.extra_columns:
                        have = ", ".join(load.extra_columns) or "none besides the prompt"
                        index = next(i for i, s in enumerate(cfg.grpo.rewards)
                                     if (s if isinstance(s, str) else s.function) == name)
                        out.append(ConfigIssue(f"grpo.rewards.{index}", f"reward `{name}` compares against the "
                                               f"dataset column `{column}`, which {cfg.data.train} does not have "
                                               f"(columns: {have}). Add the column or set `column:` on the reward."))
    if cfg.init_adapter:
        p = cfg.resolve_path(cfg.init_adapter, base)
        from tui_tuner.rundir.files import ADAPTER_DIR

        if p.exists() and not any((d / "adapter_config.json").is_file() for d in (p, p / ADAPTER_DIR)):
            out.append(ConfigIssue("init_adapter", f"{p} holds no adapter (adapter_config.json): name a finished "
                                   "run, its folder, or an adapter folder.", value=cfg.init_adapter))
        elif not p.exists():
            from tui_tuner.rundir.runs import RunLookupError, find_run

            try:
                run = find_run(cfg.resolve_path(cfg.output.runs_dir, base), cfg.init_adapter)
            except RunLookupError as exc:
                out.append(ConfigIssue("init_adapter", str(exc), value=cfg.init_adapter))
            else:
                if not (run.adapter_dir / "adapter_config.json").is_file():
                    out.append(ConfigIssue("init_adapter", f"run {run.name} has no final adapter yet "
                                           f"(state {run.status().state}): let it finish, or name another run.",
                                           value=cfg.init_adapter))
    return out


def _model_issues(cfg, base: Path) -> list[ConfigIssue]:
    name = cfg.model.name_or_path
    kind, path = model_location(name, base)
    key = "model.name_or_path"
    if kind == "demo":
        return []
    if kind == "missing":
        return [ConfigIssue(key, f"model folder {str(path)!r} does not exist. Give an existing folder "
                            "with the model's config.json and weights, a hub id such as "
                            f"TinyLlama/TinyLlama-1.1B-Chat-v1.0, or `{DEMO_MODEL_ID}`.", value=name)]
    if kind == "local":
        if path.is_file():
            return [ConfigIssue(key, f"{str(path)!r} is a file; point `model.name_or_path` at the model's "
                                "folder (the one holding config.json).", value=name)]
        if not (path / "config.json").is_file():
            return [ConfigIssue(key, f"{str(path)!r} has no config.json, so it is not a model folder. "
                                "Point at the folder that holds config.json and the weights "
                                "(e.g. a `save_pretrained` output or a hub snapshot).", value=name)]
        return []
    return _hub_issues(name, cfg.model.revision)


def _hub_issues(repo_id: str, revision: str | None) -> list[ConfigIssue]:
    from huggingface_hub import try_to_load_from_cache

    key = "model.name_or_path"
    cached = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    if isinstance(cached, str):
        return []
    if hub_offline():
        return [ConfigIssue(key, f"{repo_id!r} is not in the local hub cache and the hub is switched off "
                            "(HF_HUB_OFFLINE=1). Download it first on a connected machine "
                            f"(`hf download {repo_id}`), point at a local folder instead, or unset "
                            "HF_HUB_OFFLINE. Check the spelling of the id.", value=repo_id)]
    from huggingface_hub import model_info
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        model_info(repo_id, revision=revision, timeout=_HUB_TIMEOUT_S)
    except GatedRepoError:
        return [ConfigIssue(key, f"{repo_id!r} is gated: accept its licence on huggingface.co and log in "
                            "(`hf auth login`) before training.", value=repo_id)]
    except RepositoryNotFoundError:
        return [ConfigIssue(key, f"{repo_id!r} is not a model on the hub (or it is private and you are "
                            "not logged in). Check the spelling, e.g. TinyLlama/TinyLlama-1.1B-Chat-v1.0.",
                            value=repo_id)]
    except RevisionNotFoundError:
        return [ConfigIssue("model.revision", f"revision {revision!r} does not exist in {repo_id!r}; use a "
                            "branch, tag or commit of that repository, or null.", value=revision)]
    except Exception as exc:  # network down, DNS, proxy: say so, but let the run try its own download
        return [ConfigIssue(key, f"could not reach the hub to check {repo_id!r} ({type(exc).__name__}); "
                            "the run will try to download it. Set HF_HUB_OFFLINE=1 to train only from "
                            "the local cache.", value=repo_id, severity="warning")]
    return []


def _data_issues(cfg, base: Path) -> list[ConfigIssue]:
    from tui_tuner.data.hub import HubSource, data_source

    out = []
    for key, value in (("data.train", cfg.data.train), ("data.eval", cfg.data.eval)):
        if value is None:
            continue
        path = data_source(value, base, cfg.data, role=key.removeprefix("data."))
        if isinstance(path, HubSource):
            out.extend(_hub_dataset_issues(key, path, value))
        elif not path.exists():
            out.append(ConfigIssue(key, f"dataset file {str(path)!r} does not exist (relative paths are "
                                   f"read from {str(base)!r}). " + (missing_quickstart_data_fix(value) or
                                   "Fix the path, or run `tui-tuner data check FILE` on the file you mean."),
                                   value=value))
        elif path.is_dir():
            out.append(ConfigIssue(key, f"{str(path)!r} is a folder; `{key}` needs one .jsonl, .json, .csv "
                                   "or .parquet file.", value=value))
    return out


def _hub_dataset_issues(key: str, source, value: str) -> list[ConfigIssue]:
    """A hub dataset that training cannot get: not cached and offline, missing, gated; never downloads."""
    from tui_tuner.data.hub import cached_here, not_here_message
    from tui_tuner.data.hub import hub_offline as datasets_offline

    if cached_here(source):
        return []
    if datasets_offline():
        return [ConfigIssue(key, not_here_message(source, "the hub is switched off (HF_HUB_OFFLINE=1)"), value=value)]
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        info = HfApi().dataset_info(source.repo_id, revision=source.revision, timeout=_HUB_TIMEOUT_S)
    except GatedRepoError:
        return [ConfigIssue(key, f"hub dataset {source.repo_id!r} is gated: accept its terms on "
                            f"https://huggingface.co/datasets/{source.repo_id} and log in (`hf auth login`).",
                            value=value)]
    except RepositoryNotFoundError:
        return [ConfigIssue(key, f"{value!r} is neither a local file or folder nor a dataset on the hub (or it is "
                            "private and you are not logged in: `hf auth login`). Check the path or the spelling "
                            "of the id, e.g. yahma/alpaca-cleaned.", value=value)]
    except RevisionNotFoundError:
        return [ConfigIssue(key, f"hub dataset {source.repo_id!r} has no revision {source.revision!r}: use a "
                            "branch, tag or commit of it.", value=value)]
    except Exception as exc:  # network down, DNS, proxy: say so, but let the run try its own download
        return [ConfigIssue(key, f"could not reach the hub to check dataset {source.repo_id!r} "
                            f"({type(exc).__name__}); the run will try to download it. Set HF_HUB_OFFLINE=1 to "
                            "train only from the local cache.", value=value, severity="warning")]
    files = {s.rfilename for s in (info.siblings or [])}
    if source.file and files and source.file not in files:
        return [ConfigIssue(key, f"hub dataset {source.repo_id!r} has no file {source.file!r}: check the path on "
                            f"https://huggingface.co/datasets/{source.repo_id}/tree/main.", value=value)]
    return []


def _free_bytes(path: Path) -> tuple[Path, int] | None:
    """(the nearest existing folder at or above `path`, its free bytes), or None when unreadable."""
    import shutil

    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return probe, shutil.disk_usage(probe).free
    except OSError:
        return None


def model_download_bytes(name: str) -> int | None:
    """What downloading `name`'s weights takes (16-bit safetensors), for catalog models; else None."""
    from tui_tuner.models.spec import catalog_entry

    entry = catalog_entry(name)
    params = entry.get("published_params") if entry else None
    return int(params) * 2 if params else None


def _download_space_issues(cfg, base: Path) -> list[ConfigIssue]:
    """A hub model not in the cache that its disk has no room to download."""
    from tui_tuner.core.units import format_bytes

    name = cfg.model.name_or_path
    if model_location(name, base)[0] != "hub":
        return []
    from huggingface_hub import constants, try_to_load_from_cache

    if not hub_offline():  # the hub's own file sizes, less what the cache already holds
        from tui_tuner.models.download import ModelDownloadError, disk_problem, plan_download

        try:
            problem = disk_problem(plan_download(name, cfg.model.revision))
        except ModelDownloadError:
            problem = None  # gated, missing, unreachable: the model check says so
        return [ConfigIssue("model.name_or_path", f"{problem} {problem.hint}", value=name)] if problem else []
    if isinstance(try_to_load_from_cache(name, "config.json", revision=cfg.model.revision), str):
        return []
    need = model_download_bytes(name)
    free = _free_bytes(Path(constants.HF_HUB_CACHE))
    if need and free is not None and free[1] < need * 1.1:
        return [ConfigIssue("model.name_or_path", f"downloading {name!r} takes about {format_bytes(need)} but "
                            f"{str(free[0])!r} has {format_bytes(free[1])} free. Free space, or point HF_HOME at "
                            "a bigger disk.", value=name)]
    return []


def hub_error_hint(exc: BaseException, repo_id: str) -> tuple[str, str] | None:
    """(one-line error, what to do) for a hub failure anywhere in `exc`'s chain; None if it is not one.

    Offline -> how to download it first; gated -> how to log in; missing -> the id to check.
    """
    from huggingface_hub.errors import (GatedRepoError, LocalEntryNotFoundError, OfflineModeIsEnabled,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, GatedRepoError):
            return (f"{repo_id} is gated: you have not been granted access",
                    f"Accept its licence on https://huggingface.co/{repo_id}, then log in here: `hf auth login`.")
        if isinstance(exc, RevisionNotFoundError):
            return (f"that revision does not exist in {repo_id}", "Set model.revision to a branch, tag or commit, or null.")
        if isinstance(exc, RepositoryNotFoundError):
            return (f"{repo_id} is not a model on the hub",
                    f"Check the id {repo_id!r} (e.g. Qwen/Qwen2.5-0.5B-Instruct), or log in if it is private.")
        text = str(exc)
        if isinstance(exc, (LocalEntryNotFoundError, OfflineModeIsEnabled)) or "couldn't connect to" in text.lower():
            return (f"{repo_id} is not downloaded and the hub cannot be reached",
                    f"On a connected machine run `hf download {repo_id}` (or copy its folder here and set "
                    "model.name_or_path to it), then start again.")
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def _template_issues(cfg, base: Path) -> list[ConfigIssue]:
    choice = cfg.model.chat_template
    if choice == "auto":
        return []  # the tokenizer's own template (or chatml), checked once the tokenizer is loaded
    tokenizer = _local_tokenizer_tokens(cfg, base)
    from tui_tuner.chat_format.templates import ChatTemplateError, resolve_chat_template

    try:
        resolve_chat_template(cfg.model, tokenizer)
    except ChatTemplateError as exc:
        return [ConfigIssue("model.chat_template", f"{exc} Use a built-in template (chatml, llama-3, zephyr, "
                            "alpaca), `auto`, or fix the Jinja so it renders every message.",
                            value=choice if len(choice) < 200 else choice[:200] + "...")]
    return []


class _SpecialTokens:
    """Just the bos/eos strings of a tokenizer, read from a local folder without loading it."""

    def __init__(self, bos: str | None, eos: str | None):
        self.bos_token, self.eos_token, self.chat_template = bos, eos, None


def _local_tokenizer_tokens(cfg, base: Path) -> _SpecialTokens | None:
    import json

    kind, path = model_location(cfg.model.name_or_path, base)
    if kind != "local" or path is None:
        return None
    try:
        tc = json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None

    def token(value):
        return value.get("content") if isinstance(value, dict) else value if isinstance(value, str) else None

    return _SpecialTokens(token(tc.get("bos_token")), token(tc.get("eos_token")))


def gpu_issues(cfg, hw: "HardwareReport") -> list[ConfigIssue]:
    """NVML vs torch, the GPU(s) the run will get after CUDA_VISIBLE_DEVICES, and their free memory.

    Nothing on a machine without GPUs (training on the CPU is then expected), except on an Apple Silicon
    Mac: there an MLX run's estimate is checked against the Metal working-set limit.
    """
    from tui_tuner.core.units import format_bytes
    from tui_tuner.fit.devices import freest, label, visibility_note

    if not hw.gpus:
        return metal_issues(cfg, hw)
    issues: list[ConfigIssue] = []
    if hw.torch_problem:
        issues.append(ConfigIssue("", hw.torch_problem))
    visible = hw.visible_gpus
    note = visibility_note(hw.gpus, hw.cuda_visible_devices)
    if not visible:
        issues.append(ConfigIssue("", f"{note} The run would train on the CPU.", severity="warning"))
        return issues
    wanted = cfg.distributed.gpus
    if wanted > len(visible):
        issues.append(ConfigIssue("distributed.gpus", f"{wanted} GPUs asked for but CUDA sees {len(visible)} here"
                                  + (f" ({note})" if note else "") + ".", value=wanted))
    chosen = sorted(visible, key=lambda g: -g.memory_free)[:wanted] if wanted > 1 else [freest(visible)]
    try:
        from tui_tuner.fit.estimate import estimate_for_config

        backend = "unsloth" if cfg.backend == "unsloth" else "transformers"
        need = estimate_for_config(cfg, backend=backend, on_gpu=True).total_bytes
    except Exception:  # an unknown architecture offline: the probe measures it before training
        return issues
    for g in chosen:
        if need <= g.memory_free:
            continue
        others = [p for p in g.processes if p.used_bytes]
        held = "".join(f"; {p.name} (pid {p.pid}{', ' + p.user if p.user else ''}) holds {format_bytes(p.used_bytes)}"
                       for p in others[:3])
        where = (f"{label(g)} is a MIG slice with {format_bytes(g.memory_total)}" if g.parent_index is not None
                 else f"{label(g)} has {format_bytes(g.memory_total)}")
        issues.append(ConfigIssue(
            "", f"the estimate for this config is {format_bytes(need)} but {where}, {format_bytes(g.memory_free)} free now{held}. "
            f"The preflight probe will stop the run if it does not fit: `tui-tuner check {cfg.model.name_or_path}` "
            "shows what fits (QLoRA, a smaller batch, a shorter max_seq_length).", severity="warning"))
    return issues


def metal_issues(cfg, hw: "HardwareReport") -> list[ConfigIssue]:
    """On an Apple Silicon Mac, a warning when an MLX run's estimate is over the Metal working-set limit."""
    mac = getattr(hw, "mac", None)
    if mac is None or cfg.backend not in ("auto", "mlx"):
        return []
    from tui_tuner.fit.mac import fit_against_metal

    try:
        from tui_tuner.fit.estimate import estimate_for_config

        need = estimate_for_config(cfg, backend="mlx", on_gpu=True).total_bytes
    except Exception:  # an unknown architecture offline
        return []
    fits, line = fit_against_metal(need, mac)
    if fits:
        return []
    return [ConfigIssue("", f"this MLX run {line}. `tui-tuner check {cfg.model.name_or_path}` shows what fits.",
                        severity="warning")]


_PEFT_EXTRA_TARGETS = frozenset({"lm_head", "embed_tokens", "wte", "wpe"})
"""Module names outside the blocks that peft can adapt too."""


def _target_module_issues(cfg, base: Path) -> list[ConfigIssue]:
    """Names in `lora.target_modules` the model has no layer for (Llama-style models, whose names are known)."""
    tm = cfg.lora.target_modules
    if cfg.method == "full" or not isinstance(tm, list) or not tm:
        return []
    from tui_tuner.fit.lora import spec_target_modules
    from tui_tuner.models.spec import ModelSpecError, linear_modules, model_spec

    kind, path = model_location(cfg.model.name_or_path, base)
    try:
        spec = model_spec(str(path) if kind == "local" and path is not None else cfg.model.name_or_path,
                          cfg.model.revision)
    except (ModelSpecError, OSError, ValueError):
        return []  # the model check above says what is wrong with the model itself
    if not spec.gated_mlp:
        return []  # GPT-2 style models name their layers differently; peft checks them at load time
    # peft also takes dotted suffixes (self_attn.q_proj) and regular expressions: judge plain names only
    plain = [name.rsplit(".", 1)[-1] for name in tm if re.fullmatch(r"[A-Za-z0-9_.]+", name)]
    unknown = spec_target_modules(spec, [n for n in plain if n not in _PEFT_EXTRA_TARGETS]).unmatched
    if not unknown:
        return []
    import difflib

    have = list(linear_modules(spec))
    close = [m for n in unknown for m in difflib.get_close_matches(n, have, n=1)]
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return [ConfigIssue("lora.target_modules", f"{spec.name} has no layer named {', '.join(unknown)}; its "
                        f"linear layers are {', '.join(have)} (or use `all-linear`).{hint}", value=unknown)]


def _backend_issues(cfg) -> list[ConfigIssue]:
    """`backend: unsloth` on a machine where it cannot run (checked without importing torch)."""
    if cfg.backend != "unsloth":
        return []
    import importlib.util

    if importlib.util.find_spec("unsloth") is None:
        return [ConfigIssue("backend", "backend: unsloth is not installed here (pip install 'tui-tuner[gpu]' on a "
                            "CUDA machine); set `backend: auto` to train with transformers + peft.")]
    from tui_tuner.fit.hardware import list_gpus

    gpus = list_gpus()
    if not any(g.vendor == "nvidia" for g in gpus):
        amd = " (AMD GPUs train through transformers on a ROCm build of torch)" if gpus else ""
        return [ConfigIssue("backend", "backend: unsloth needs an NVIDIA GPU with CUDA, and none is visible here"
                            f"{amd}; set `backend: auto` or `backend: transformers` to train on this machine.")]
    return []


def _output_issues(cfg, base: Path) -> list[ConfigIssue]:
    """A runs folder that cannot be made or written, or a disk too full for the run's checkpoints."""
    runs_dir = cfg.resolve_path(cfg.output.runs_dir, base)
    existing = runs_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return [ConfigIssue("output.runs_dir", f"{existing} is a file, not a folder; point output.runs_dir at a "
                            "folder (it is created when missing).", value=str(runs_dir))]
    if not os.access(existing, os.W_OK | os.X_OK) or str(existing.resolve()).startswith(("/proc", "/sys")):
        return [ConfigIssue("output.runs_dir", f"cannot create or write {runs_dir} ({existing} is not writable); "
                            "set output.runs_dir to a folder you own.", value=str(runs_dir))]
    from tui_tuner.fit.disk import run_disk_need
    from tui_tuner.rundir.diskspace import space_problem

    problem = space_problem(existing, run_disk_need(cfg))
    return [ConfigIssue("output.runs_dir", problem, value=str(runs_dir))] if problem else []
