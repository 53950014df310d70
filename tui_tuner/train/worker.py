"""The training worker: trains one run directory and records everything in it.

    python -m tui_tuner.train --worker runs/demo-tiny-llama-lora-20260101-120000

Order matters: the backend is chosen (and Unsloth imported, when chosen) before
transformers, trl or peft are imported. The worker owns `status.json` while it runs;
any exception ends the run `failed` with the message and a hint (the out-of-memory hint
for OOM), and the traceback goes to `train.log` (this process's stderr).
"""

from __future__ import annotations

import os
import random
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui_tuner.rundir.diskspace import is_disk_full, make_reserve, release_reserve
from tui_tuner.rundir.events import PREPARE_KIND, EventWriter, PrepareRate
from tui_tuner.rundir.runs import RunDir, checkpoint_problem, checkpoint_step, process_start_time
from tui_tuner.rundir.status import OOM_HINT, RunStatus, is_oom_message

class WorkerError(RuntimeError):
    """A failure with a known cause: `hint` says what to do."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


def probe_mode(run: RunDir) -> str:
    return str(run.meta().get("probe") or "auto")


# ---------------------------------------------------------------------------- data


def build_datasets(cfg: Any, tokenizer: Any, chat_template: str,
                   progress: Any = None, eval_out: list | None = None) -> tuple[Any, Any, dict[str, Any]]:
    """Tokenized train (and eval) `datasets.Dataset`s with `input_ids` and `labels` (-100 outside answers).

    The token ids come from the tokenized-dataset cache (`tui_tuner.data.tokenized`): written
    by `train`'s preflight, so the worker and every resume only memory-map them; tokenized here
    (and cached) when the preflight did not (a run started from the TUI, a cleared cache).
    The same `tokenize_conversation` and chat template serve training, chat, eval and export.
    `progress(what, done, total)` hears how tokenizing goes.
    `eval_out`, when given, receives the eval conversations (the sample prompts come from them).
    """
    from datasets import Dataset

    from tui_tuner.data.tokenized import tokenize_file

    from tui_tuner.data.hub import data_source

    def tokenized(value: str, role: str = "train") -> tuple[Any, str]:
        # The frozen config holds absolute paths and hf:// URLs; a hub dataset comes from the caches or the hub.
        path = data_source(value, None, cfg.data, role=role)
        hub_flags = "".join(f" --{k} '{v}'" for k, v in (("subset", getattr(path, "subset", None)),
                                                         ("split", getattr(path, "split", None)))
                            if v and not getattr(path, "file", None))
        result = tokenize_file(path, cfg, tokenizer, chat_template, cache=True, progress=progress)
        loaded = result.load
        if not loaded.ok:
            errors = [i for i in loaded.issues if getattr(i, "severity", "error") == "error"]
            first = errors[0] if errors else (loaded.issues[0] if loaded.issues else None)
            text = first.format() if first is not None and hasattr(first, "format") else str(first)
            raise WorkerError(f"the dataset {path} has errors: {text}",
                              f"Run `tui-tuner data check {value}{hub_flags}` to see every problem.")
        if result.tokens is not None and result.tokens.refused:
            line, message = result.tokens.refused[0]
            where = "row" if loaded.row_based else "line"
            raise WorkerError(f"the dataset {path}, {where} {line}: {message}",
                              f"Run `tui-tuner data check {value}{hub_flags} --config CONFIG` to see every such "
                              "example.")
        return Dataset.from_file(str(result.arrow_path)), str(loaded.format)

    train_all, fmt = tokenized(cfg.data.train)
    train_rows = list(range(len(train_all)))
    eval_all, eval_rows = None, []
    if cfg.data.eval:
        eval_all, _ = tokenized(cfg.data.eval, "eval")
        eval_rows = list(range(len(eval_all)))
    elif cfg.data.eval_split > 0 and len(train_rows) > 1:
        order = list(range(len(train_rows)))
        random.Random(cfg.training.seed).shuffle(order)
        n_eval = max(1, int(round(len(order) * cfg.data.eval_split)))
        held = set(order[:n_eval])
        eval_all, eval_rows = train_all, [i for i in train_rows if i in held]
        train_rows = [i for i in train_rows if i not in held]

    max_len = cfg.model.max_seq_length

    if eval_out is not None and eval_rows:
        from tui_tuner.data import load_dataset_file

        # The sample prompts come from the eval conversations: read them back (cheap next to tokenizing).
        conversations = load_dataset_file(data_source(cfg.data.eval or cfg.data.train, None, cfg.data,
                                                      role="eval" if cfg.data.eval else "train"), cfg.data).examples
        eval_out.extend(conversations[i] for i in eval_rows if i < len(conversations))

    def select(ds: Any, rows: list[int]) -> tuple[Any, int, int]:
        """(rows with answer tokens left, as input_ids + labels; truncated count; tokens)."""
        trained, lengths = (ds.data.column(name).to_pylist() for name in ("trained", "length"))
        keep = [i for i in rows if trained[i] > 0]  # nothing to learn from a fully cut answer
        truncated = sum(1 for i in rows if lengths[i] > max_len)
        tokens = sum(min(lengths[i], max_len) for i in keep)
        return ds.select(keep).select_columns(["input_ids", "labels"]), truncated, tokens

    train_ds, truncated, train_tokens = select(train_all, train_rows)
    if len(train_ds) == 0:
        raise WorkerError("no training example has any answer tokens left after tokenization",
                          "Raise model.max_seq_length, or check the dataset with `tui-tuner data check`.")
    eval_ds = select(eval_all, eval_rows)[0] if eval_rows else None
    info = {"format": fmt, "train_examples": len(train_ds), "eval_examples": len(eval_ds) if eval_ds else 0,
            "truncated": truncated, "train_tokens": train_tokens}
    return train_ds, eval_ds, info


# ---------------------------------------------------------------------------- trainer


def sft_config(cfg: Any, run: RunDir, device: str, backend: str, has_eval: bool, precision: str,
               extra: dict[str, Any] | None = None) -> Any:
    """trl `SFTConfig` for this run: checkpoints under the run directory, our own progress logging.

    `precision` ("bf16", "fp16" or "fp32", from `mixed_precision`) is the autocast the trainer runs.
    `extra` (the multi-GPU settings from `tui_tuner.train.distributed.trainer_arguments`) is applied last.
    """
    from trl import SFTConfig

    kwargs, ckpt = common_trainer_args(cfg, run, device, backend, has_eval, precision)
    kwargs.update(max_length=cfg.model.max_seq_length, packing=cfg.training.packing,
                  completion_only_loss=None)  # labels are built by tokenize_conversation
    if not cfg.training.packing:
        # The examples are final: cut to max_seq_length and those with no answer token left dropped
        # (`build_datasets`). trl would map over every row again to do both (14 s on 100k rows).
        kwargs["dataset_kwargs"] = {"skip_prepare_dataset": True}
    extra = dict(extra or {})
    if extra.pop("gradient_checkpointing", None) is False:
        kwargs[ckpt] = False  # FSDP checkpoints activations itself
    kwargs.update(extra)
    return SFTConfig(**kwargs)


def common_trainer_args(cfg: Any, run: RunDir, device: str, backend: str, has_eval: bool,
                        precision: str) -> tuple[dict[str, Any], str]:
    """(the trl config settings every objective shares, the name of the checkpointing flag)."""
    import inspect

    from trl import SFTConfig

    from tui_tuner.train.trackers import tracker_trainer_args

    t = cfg.training
    eval_on = has_eval and t.eval_steps is not None
    on_gpu = device == "cuda"
    # transformers 5.18 renamed gradient_checkpointing to activation_checkpointing; both releases are supported.
    accepted = set(inspect.signature(SFTConfig).parameters)
    ckpt = "activation_checkpointing" if "activation_checkpointing" in accepted else "gradient_checkpointing"
    kwargs = dict(
        output_dir=str(run.checkpoints_dir),
        max_steps=t.max_steps or -1,
        num_train_epochs=t.epochs,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accumulation,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.scheduler,
        warmup_steps=t.warmup_ratio,
        weight_decay=t.weight_decay,
        optim=t.optimizer,
        max_grad_norm=t.max_grad_norm,
        seed=t.seed,
        data_seed=t.seed,
        # Unsloth applies its own (offloading) checkpointing in get_peft_model.
        **{ckpt: t.gradient_checkpointing and backend != "unsloth", f"{ckpt}_kwargs": {"use_reentrant": False}},
        logging_steps=t.logging_steps,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        eval_strategy="steps" if eval_on else "no",
        eval_steps=t.eval_steps if eval_on else None,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not on_gpu,
        # Trackers start through guarded callbacks (`tui_tuner.train.trackers`), never from report_to.
        **tracker_trainer_args(cfg, run.name, accepted),
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    return kwargs, ckpt


def save_final(trainer: Any, tokenizer: Any, run: RunDir, cfg: Any, model_path: str, template: str,
               step: int) -> None:
    """The adapter (or full model) + tokenizer + chat template, loadable without tui-tuner."""
    import json

    out = run.adapter_dir
    trainer.save_model(str(out))  # every rank: FSDP gathers the shards here; only rank 0 writes
    from tui_tuner.train.distributed import is_main_process

    if not is_main_process():
        return
    tokenizer.chat_template = template
    tokenizer.save_pretrained(str(out))
    (out / "chat_template.jinja").write_text(template, encoding="utf-8")
    meta = {"run": run.name, "base_model": cfg.model.name_or_path, "base_model_path": model_path,
            "method": cfg.method, "objective": cfg.objective, "init_adapter": cfg.init_adapter, "step": step, "chat_template": cfg.model.chat_template,
            "max_seq_length": cfg.model.max_seq_length}
    (out / "tui_tuner.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")


@dataclass
class TrainResult:
    state: str
    """`finished`, or `stopped` when a stop was requested."""
    trainer: Any
    tokenizer: Any


def train(run: RunDir, cfg: Any, backend: str, device: str, keeper: Any, events: EventWriter,
          resume_from: Path | None, requests_since: float | None = None,
          extra_callbacks: list[Any] | None = None) -> TrainResult:
    """Load, prepare, probe, train and save the final adapter; the trainer holds the trained model.

    `extra_callbacks` are added after the run's own callback (benchmarks and tests use them).
    """
    download_model(cfg, events)
    if backend == "mlx":  # MLX trains without torch: its own loop, the same run directory
        from tui_tuner.train.backends.mlx_backend import train as mlx_train
        from tui_tuner.train.trackers import TrackerWarnings

        warnings = TrackerWarnings(events)
        for name in cfg.tracker_names:
            warnings.tell(name, "is not used", "the MLX backend reports to no experiment tracker",
                          "The loss curve is in the run directory (events.jsonl); `backend: transformers` "
                          "reports to trackers.")

        result = mlx_train(run, cfg, keeper, events, resume_from, requests_since=requests_since)
        return TrainResult(result.state, None, None)
    from trl import SFTTrainer

    from tui_tuner.train.callback import RunCallback
    from tui_tuner.train.probe import ProbeDoesNotFit, estimate_bytes_for, run_probe

    import datasets
    import transformers

    # Progress bars are for terminals; train.log is read by people after the fact.
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    model_path = _resolve_model_path(cfg.model.name_or_path)
    if backend == "unsloth":
        from tui_tuner.train.backends.unsloth_backend import load_model
    else:
        from tui_tuner.train.backends.transformers_backend import load_model
    from transformers import set_seed

    set_seed(cfg.training.seed)  # the LoRA init follows training.seed (and is the same on every rank)
    rate = PrepareRate()

    def prepare(what: str, done: int | None = None, total: int | None = None) -> None:
        events.write(PREPARE_KIND, **rate.fields(what, done, total))

    if cfg.init_adapter:
        from tui_tuner.train.objectives import resolve_init_adapter

        init_dir = resolve_init_adapter(cfg.init_adapter, Path(cfg.output.runs_dir))
        cfg = cfg.model_copy(update={"init_adapter": str(init_dir)})
        events.write("init_adapter", path=str(init_dir))
    prepare("loading the model")
    model, tokenizer = load_model(cfg, model_path, device)
    template = _resolve_template(cfg, tokenizer)
    tokenizer.chat_template = template  # trl renders non-SFT data with it: the same template as SFT, chat, eval
    eval_conversations: list = []
    if cfg.objective == "sft":
        train_ds, eval_ds, info = build_datasets(cfg, tokenizer, template, progress=prepare,
                                                 eval_out=eval_conversations)
    else:
        from tui_tuner.train.objectives import build_objective_datasets

        train_ds, eval_ds, info = build_objective_datasets(cfg, None)
    events.write("data", **info)
    samples_callbacks = _samples_callbacks(cfg, events, tokenizer, template, eval_conversations)
    prepare("preparing the trainer")
    from tui_tuner.train.backends.transformers_backend import mixed_precision
    from tui_tuner.train.distributed import decoder_layer_classes, trainer_arguments

    precision = mixed_precision(cfg, device)
    multi_gpu = trainer_arguments(cfg, cuda=device == "cuda", layer_classes=decoder_layer_classes(model))
    if cfg.objective == "sft":
        args = sft_config(cfg, run, device, backend, eval_ds is not None, precision, extra=multi_gpu)
    else:
        from tui_tuner.train.objectives import objective_args

        common, ckpt = common_trainer_args(cfg, run, device, backend, eval_ds is not None, precision)
        extra = dict(multi_gpu or {})
        if extra.pop("gradient_checkpointing", None) is False:
            common[ckpt] = False
        common.update(extra)
        args = objective_args(cfg, common)
    precision = "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"  # what the trainer will really run
    keeper.update(precision=precision)

    mode = probe_mode(run)
    # The probe measures one SFT-style forward + backward; the other objectives' steps (pairs, generation)
    # are not what it measures, so it runs for SFT only (the estimate covers the others).
    want_probe = cfg.objective == "sft" and (mode == "on" or (mode == "auto" and device == "cuda"))

    def probe_hook(model: Any, state: Any) -> None:
        if not want_probe:
            return
        try:
            result = run_probe(trainer, model, batch_size=cfg.training.batch_size,
                               optimizer_name=cfg.training.optimizer,
                               estimate_bytes=estimate_bytes_for(cfg, device, backend))
        except ProbeDoesNotFit as exc:
            _record_probe(keeper, events, exc.result)
            raise WorkerError(str(exc), OOM_HINT) from None
        _record_probe(keeper, events, result)

    callback = RunCallback(run.path, events, keeper, on_train_begin_hook=probe_hook, requests_since=requests_since)
    from tui_tuner.train.distributed import is_main_process
    from tui_tuner.train.trackers import tracker_callbacks

    trackers = tracker_callbacks(cfg, events, main_process=is_main_process(), run_path=run.path)
    callbacks = [callback, *samples_callbacks, *trackers, *(extra_callbacks or [])]
    if cfg.objective == "sft":
        trainer = SFTTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                             processing_class=tokenizer, callbacks=callbacks)
    else:
        from tui_tuner.train.objectives import objective_trainer

        trainer = objective_trainer(cfg, model, tokenizer, args, train_ds, eval_ds, callbacks, None, events)
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    step = trainer.state.global_step
    save_final(trainer, tokenizer, run, cfg, model_path, template, step)
    events.write("adapter", step=step, path=str(run.adapter_dir))
    return TrainResult("stopped" if callback.stop_requested else "finished", trainer, tokenizer)


def _samples_callbacks(cfg: Any, events: EventWriter, tokenizer: Any, template: str,
                       eval_conversations: list) -> list[Any]:
    """The callback answering `samples:` prompts during training ([] when the section is off)."""
    if not cfg.samples.enabled:
        return []
    from tui_tuner.train.distributed import world_size

    if world_size() > 1:  # a sharded model generates only with every rank taking part
        events.write("note", message="samples: skipped when training on several GPUs")
        return []
    from tui_tuner.train.samples import SamplesCallback, sample_prompts

    prompts = sample_prompts(cfg.samples, eval_conversations, cfg.data.system_prompt)
    if not prompts:
        events.write("note", message="samples: no prompts (samples.from_eval needs an eval set with answers)")
        return []
    return [SamplesCallback(events, tokenizer, template, prompts, cfg.samples.max_new_tokens)]


def _record_probe(keeper: Any, events: EventWriter, result: Any) -> None:
    import dataclasses

    data = dataclasses.asdict(result)
    keeper.update(probe=data)
    events.write("probe", **data)


def download_model(cfg: Any, events: EventWriter) -> None:
    """Fetch a hub model the cache lacks before anything loads it, as `prepare` events with bytes, rate and ETA.

    A local folder or the demo model needs nothing. The disk is checked against the hub's file sizes
    first; gated, missing, offline and disk-full cases end the run with what to do.
    """
    from tui_tuner.models.download import ModelDownloadError, ensure_model, is_hub_model

    name = cfg.model.name_or_path
    if not is_hub_model(name):
        return

    def note(text: str) -> None:
        _log_line(text)
        events.write("download", repo=name, message=text)

    def progress(p: Any) -> None:
        events.write(PREPARE_KIND, what="downloading weights", **p.fields())

    try:
        folder = ensure_model(name, cfg.model.revision, progress=progress, note=note)
    except ModelDownloadError as exc:
        raise WorkerError(str(exc), exc.hint) from exc
    events.write("download", repo=name, folder=str(folder), finished=True)


def _resolve_model_path(name_or_path: str) -> str:
    try:
        from tui_tuner.models.demo import resolve_model_path
    except ImportError:
        return name_or_path
    return resolve_model_path(name_or_path)


def _resolve_template(cfg: Any, tokenizer: Any) -> str:
    from tui_tuner.chat_format.templates import resolve_chat_template

    return resolve_chat_template(cfg.model, tokenizer)


# ---------------------------------------------------------------------------- entry


DISK_FULL_MARKERS = ("no space left on device", "storagefull", "disk quota exceeded")
"""How a full disk shows in OSError, safetensors (Rust io::Error) and torch's zip writer messages."""


def _disk_full(exc: BaseException, run: RunDir | None) -> bool:
    """Whether `exc` (or what caused it) is a write that failed because the disk is full."""
    import errno
    import shutil

    if is_disk_full(exc):
        return True
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(exc).lower()
        if any(marker in text for marker in DISK_FULL_MARKERS):
            return True
        if run is not None and any(m in text for m in ("file write failed", "failed writing file", "unexpected pos")):
            try:  # torch's writer does not say why; a nearly full disk does
                return shutil.disk_usage(run.path).free < 256 * 2**20
            except OSError:
                return False
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    if run is not None:  # any failure on a disk with not even the reserve's worth left: the disk did it
        from tui_tuner.rundir.diskspace import RESERVE_BYTES, free_bytes

        free = free_bytes(run.path)
        return free is not None and free < RESERVE_BYTES
    return False


def _classify(exc: BaseException, run: RunDir | None = None) -> tuple[str, str | None]:
    """(error message, hint) for an exception that ended the run."""
    if run is not None and _disk_full(exc, run):
        release_reserve(run.path)  # so the hint's checkpoint listing and the status below can be written
    text = f"{type(exc).__name__}: {exc}".strip()
    first = text.splitlines()[0][:500]
    from tui_tuner.data.rewards import RewardFunctionError

    if isinstance(exc, (WorkerError, RewardFunctionError)):
        return str(exc), exc.hint
    if _disk_full(exc, run):
        where = run.path if run is not None else "the run directory"
        kept = run.latest_checkpoint() if run is not None else None
        since = f"the last complete checkpoint ({kept.name}, kept intact)" if kept else "the start"
        return (f"the disk is full: no space left to write in {where}",
                f"Free disk space (`df -h {where}`; old runs: `tui-tuner runs rm NAME`), or set output.runs_dir "
                f"to a bigger disk, then `tui-tuner runs resume {run.name if run else 'NAME'}` continues from "
                f"{since}; the half-written checkpoint is skipped.")
    hub = _hub_failure(exc, run)
    if hub is not None:
        return hub
    is_oom = type(exc).__name__ == "OutOfMemoryError" or is_oom_message(text)
    if isinstance(exc, MemoryError) or is_oom:
        return f"out of memory: {first}", OOM_HINT
    return first, "See train.log in the run directory for the full traceback."


def _hub_failure(exc: BaseException, run: RunDir | None) -> tuple[str, str] | None:
    """A model download that failed (offline, gated, missing), said in one line with what to do."""
    if run is None:
        return None
    try:
        repo_id = run.config().model.name_or_path
    except Exception:  # an unreadable config: the generic message is all we can give
        return None
    from tui_tuner.train.preflight import hub_error_hint, looks_like_hub_id

    return hub_error_hint(exc, repo_id) if looks_like_hub_id(repo_id) else None


def _launched_at(default: float) -> float:
    try:
        return float(os.environ["TUI_TUNER_LAUNCHED_AT"])
    except (KeyError, ValueError):
        return default


def _peak_memory(previous: Any) -> dict[str, int]:
    """This attempt's peak memory, kept as the run's peak when an earlier attempt's was lower.

    On a GPU the figure is the CUDA allocator's peak (what an OOM is about); on a CPU it is
    the worker's peak resident set size. The experiment log and `runs show` report it.
    """
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    out = {"peak_rss_bytes": int(rss)}
    peak = rss
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        peak = max(torch.cuda.max_memory_allocated(d) for d in range(torch.cuda.device_count()))
        out["peak_cuda_allocated_bytes"] = int(peak)
    if isinstance(previous, (int, float)):
        peak = max(peak, int(previous))
    out["peak_memory_bytes"] = int(peak)
    return out


def choose_gpu(world: int) -> str | None:
    """Give a one-GPU run the freest GPU (CUDA_VISIBLE_DEVICES) when the user did not choose; says what it did.

    Also numbers CUDA devices in PCI order, as NVML and `nvidia-smi` do. Several processes
    (torchrun) or a CUDA_VISIBLE_DEVICES already set are left alone.
    """
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    if world > 1 or "CUDA_VISIBLE_DEVICES" in os.environ:
        return None
    from tui_tuner.core.units import format_bytes
    from tui_tuner.fit.devices import cuda_devices, freest, label
    from tui_tuner.fit.hardware import list_gpus

    devices = cuda_devices(list_gpus())
    best = freest(devices)
    if best is None or len(devices) < 2 and best.parent_index is None:
        return None
    os.environ["CUDA_VISIBLE_DEVICES"] = best.uuid or str(best.index)
    return f"training on {label(best)}, the freest ({format_bytes(best.memory_free)} free) of {len(devices)}"


def gpu_torch_cannot_use() -> str | None:
    """Why torch sees no GPU while NVML shows visible ones (driver vs CUDA build, CPU build), or None."""
    from tui_tuner.fit.cuda import torch_gpu_problem
    from tui_tuner.fit.hardware import probe

    hw = probe()
    return torch_gpu_problem(len(hw.visible_gpus), hw.cuda_driver_version, hw.driver_version)


def run_worker(run_dir: str | Path) -> int:
    """Train the run in this process; returns the exit status (0 finished/stopped, 1 failed)."""
    run = RunDir(Path(run_dir).resolve())
    prev = run.raw_status()
    had_events = run.events_path.exists() and run.events_path.stat().st_size > 0
    now = time.time()
    pid = os.getpid()
    sup = os.environ.get("TUI_TUNER_SUPERVISOR_PID")
    status = RunStatus.from_dict({**prev.as_dict(), "state": "running", "pid": pid,
                                  "pid_started": process_start_time(pid),
                                  "supervisor_pid": int(sup) if sup and sup.isdigit() else None,
                                  "started": prev.started or now, "ended": None, "error": None, "hint": None,
                                  "exit_code": None, "message": None,
                                  "attempts": prev.attempts + 1})
    from tui_tuner.train.distributed import SilentEvents, is_main_process, local_rank, status_keeper_for_rank, world_size

    os.umask(0o077)  # everything the run writes is private to its owner (docs/run-directory.md)
    from tui_tuner.rundir.files import LOG_FILE
    from tui_tuner.train.supervisor import keep_the_log_if_orphaned

    log_keeper = keep_the_log_if_orphaned(run.path / LOG_FILE)
    keeper = status_keeper_for_rank(run.path, status)  # under torchrun only rank 0 writes status and events
    keeper.update()
    if is_main_process():
        make_reserve(run.path)  # given up when the disk fills, so the final state can still be written
    events = EventWriter(run.events_path) if is_main_process() else SilentEvents()
    monitor = None
    final, code = "failed", 1
    try:
        cfg = run.config()
        gpu_choice = choose_gpu(world_size())  # before torch reads CUDA_VISIBLE_DEVICES
        if gpu_choice:
            print(f"tui-tuner worker {pid}: {gpu_choice}", flush=True)
        from tui_tuner.train.backend_select import BackendUnavailable, select_backend

        try:
            backend, reason = select_backend(cfg)  # imports unsloth first when it is the choice
        except BackendUnavailable as exc:
            raise WorkerError(str(exc), "Edit `backend:` in the config and start a new run.") from None
        from tui_tuner.core.quiet import quiet_library_noise

        quiet_library_noise()
        import torch

        device = "cuda" if torch.cuda.is_available() and backend != "mlx" else "cpu"
        if backend == "mlx":
            import mlx.core as mx

            device = "metal" if mx.default_device() == mx.gpu else "cpu"  # MLX's device, not torch's
        elif device == "cpu":
            problem = gpu_torch_cannot_use()
            if problem:  # never train on the CPU in silence while the GPU sits there
                raise WorkerError(problem, "To train on the CPU on purpose, start the run with "
                                           "CUDA_VISIBLE_DEVICES= (empty) in the environment.")
        if device == "cuda" and world_size() > 1:
            torch.cuda.set_device(local_rank())  # each process trains on its own GPU
        from tui_tuner.train.trackers import tracker_environment

        os.environ.update(tracker_environment(cfg, run.path))  # read by the trackers' callbacks
        resume_from = run.latest_checkpoint()
        newer_bad = {p.name: checkpoint_problem(p) for p in run.all_checkpoints()
                     if checkpoint_step(p) > checkpoint_step(resume_from or Path("x-0"))}
        skipped = [name for name, why in newer_bad.items() if why is not None]
        from_step = checkpoint_step(resume_from) if resume_from else 0
        if had_events:
            events.write("resume", from_step=from_step, checkpoint=resume_from.name if resume_from else None,
                         skipped_incomplete=skipped, skipped_why={name: newer_bad[name] for name in skipped})
            keeper.status.resumed_from_step = from_step
        import socket

        from tui_tuner.rundir.runs import config_summary

        keeper.update(backend=backend, backend_reason=reason, device=device, step=from_step, host=socket.gethostname(),
                      summary=config_summary(cfg), **({"gpu_choice": gpu_choice} if gpu_choice else {}))
        events.write("start", attempt=status.attempts, backend=backend, backend_reason=reason, device=device,
                     pid=pid)
        print(f"tui-tuner worker {pid}: run {run.name}, backend {backend} ({reason}), device {device}"
              + (f", resuming from {resume_from.name}" if resume_from else ""), flush=True)
        for name in skipped:
            print(f"tui-tuner worker {pid}: skipped {name}, which cannot be resumed from: {newer_bad[name]}",
                  flush=True)
        if device == "cuda" and is_main_process():  # rank 0 samples every GPU of the machine
            from tui_tuner.train.gpu_monitor import GpuMonitor, IntruderWatch, own_pids, run_gpu_indices

            monitor = GpuMonitor(events, watch=IntruderWatch(own_pids()), watch_gpus=run_gpu_indices())
            if monitor.available():
                monitor.start()
            else:
                monitor = None
        final = train(run, cfg, backend, device, keeper, events, resume_from, requests_since=_launched_at(now)).state
        code = 0
        release_reserve(run.path)  # gone before the final state, so a finished run holds only its own files
        note = (f"stopped on request at step {keeper.status.step}; checkpoint and adapter saved"
                if final == "stopped" else None)
        keeper.update(state=final, ended=time.time(), exit_code=0, message=note)
    except KeyboardInterrupt:
        final, code = "stopped", 130
        release_reserve(run.path)
        keeper.update(state="stopped", ended=time.time(), exit_code=code,
                      message="interrupted (Ctrl+C in the worker's terminal); progress after the last "
                              "checkpoint was not saved")
    except BaseException as exc:  # every failure must end in a recorded state, never a silent death
        error, hint = _classify(exc, run)
        full = _disk_full(exc, run)
        release_reserve(run.path)  # on a full disk: room for the status, the last event and the log line below
        # The status first and small: on a full disk it is the one thing that must land.
        keeper.update(state="failed", ended=time.time(), error=error, hint=hint, exit_code=1)
        code = 1
        _log_failure(exc, one_line=full)
    finally:
        if monitor is not None:
            monitor.stop()
        peak = _peak_memory(keeper.status.extra.get("peak_memory_bytes"))
        st = keeper.status
        try:
            keeper.update(**peak)
            events.write("end", state=st.state, step=st.step, error=st.error, hint=st.hint, **peak)
        except OSError as exc:  # a full disk: the final state is written; the summary is a nicety
            _log_line(f"tui-tuner worker {pid}: could not record the run summary: {exc.strerror or exc}")
        finally:
            events.close()
            if is_main_process():
                release_reserve(run.path)
    if log_keeper is not None:
        log_keeper.settle()  # a supervisor that died in the last half second: these lines still reach train.log
    _log_line(f"tui-tuner worker {pid}: {keeper.status.state}"
              + (f": {keeper.status.error}" if keeper.status.error else ""))
    return code


def _log_line(text: str) -> None:
    """One line to train.log (stderr); a full disk must not turn it into a second failure."""
    try:
        print(text, flush=True, file=sys.stderr)
    except OSError:
        pass


def _log_failure(exc: BaseException, one_line: bool) -> None:
    """The failure in train.log: the traceback, or one line when the disk is full (it would not fit)."""
    try:
        if one_line:
            print(f"tui-tuner worker: the disk is full ({type(exc).__name__}: {str(exc)[:200]})",
                  file=sys.stderr, flush=True)
        else:
            traceback.print_exc()
            sys.stderr.flush()
    except OSError:
        pass

