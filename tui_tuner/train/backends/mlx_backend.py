"""Train a LoRA adapter with Apple's MLX (`mlx` + `mlx-lm`): Metal on an Apple Silicon Mac, the CPU elsewhere.

The model is loaded from its Hugging Face folder by mlx-lm and the configured linear layers get
mlx-lm's LoRA layers (r, alpha / r as the scale, dropout). The data is tui-tuner's own: the same
`build_datasets` (one chat renderer, one masking rule) as the transformers backend, so the loss
covers exactly the positions whose label is not -100 on every backend. The run directory is the
same too: events and status through `RunTracker` (the logic behind the transformers callback),
`control.json` stop requests, checkpoints every `save_steps`, the final adapter in `adapter/`.

A checkpoint holds the adapter weights, the optimizer state (AdamW moments and step) and the
data position, so a resume continues the same learning-rate schedule and data order; it does not
restore the random state of LoRA dropout. The adapter is saved in mlx-lm's format
(`adapters.safetensors` + `adapter_config.json`) in `adapter/mlx/`, loadable with
`mlx_lm.load(base, adapter_path=...)`, and converted to a PEFT adapter in `adapter/` itself (and in
every checkpoint), so chat, eval and export load it with transformers + peft like any other run.

`method: qlora` quantizes the frozen base with MLX's affine 4-bit scheme (a scale and a bias per
group of 64 weights; not bitsandbytes' NF4) and trains LoRA on top, as QLoRA does with NF4 on CUDA.
Like mlx-lm's own 4-bit models (and the MLX fit estimate), it quantizes the embeddings and the output
head too, which bitsandbytes leaves in 16 bits: on a large vocabulary that is gigabytes of unified memory.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from tui_tuner.models.mlx_model import (  # noqa: F401  (shared with chat and eval on MLX)
    ADAPTER_WEIGHTS, MLX_ADAPTER_DIR, MLX_DTYPES, QUANTIZATION, hf_config_overrides, lora_keys, masked_loss_sum,
    pad_batch, quantize_base, weight_dtype_name,
)
from tui_tuner.rundir.events import EventWriter
from tui_tuner.rundir.runs import RunDir

MLX_STATE_FILE = "mlx_state.json"
"""Marks an MLX checkpoint folder and holds its step, data position and token count."""
OPTIMIZER_STATE = "optimizer.safetensors"
PEFT_WEIGHTS = "adapter_model.safetensors"


def lr_factor(step: int, total: int, warmup: int, scheduler: str) -> float:
    """The learning-rate multiplier for optimizer update `step` (0-based): transformers' schedules."""
    if scheduler != "constant" and step < warmup:
        return step / max(1, warmup)
    if scheduler in ("constant", "constant_with_warmup"):
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    if scheduler == "linear":
        return max(0.0, (total - step) / max(1, total - warmup))
    if scheduler == "cosine":
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
    if scheduler == "cosine_with_restarts":  # one cycle, as transformers' default num_cycles=1
        return 0.0 if progress >= 1.0 else max(0.0, 0.5 * (1.0 + math.cos(math.pi * (progress % 1.0))))
    raise ValueError(f"unknown scheduler {scheduler!r}")


def warmup_steps(ratio: float, total: int) -> int:
    """Warmup updates for `warmup_ratio` (transformers rounds the fraction up)."""
    return math.ceil(total * ratio) if ratio < 1 else int(ratio)


def micro_batches(n_examples: int, batch_size: int, seed: int) -> Iterator[tuple[int, list[int]]]:
    """(epoch, example indices) forever: each epoch a fresh seeded shuffle, so a resume can replay the order."""
    epoch = 0
    while True:
        order = list(range(n_examples))
        random.Random(seed + epoch).shuffle(order)
        for start in range(0, n_examples, batch_size):
            yield epoch, order[start:start + batch_size]
        epoch += 1


def precision_label(cfg: Any) -> str:
    """What the frozen weights are, for the run's status: `float32`, or `4-bit affine (group 64), float32 compute`."""
    dtype = weight_dtype_name(cfg)
    if cfg.method == "qlora":
        return f"4-bit affine (group {QUANTIZATION['group_size']}), {dtype} compute"
    return dtype


def load_model(cfg: Any, model_path: str) -> tuple[Any, dict[str, Any]]:
    """The mlx-lm model with LoRA on the target modules, base frozen; and the adapter config mlx-lm reads."""
    import mlx.core as mx
    from mlx_lm.tuner.utils import linear_to_lora_layers
    from mlx_lm.utils import load_model as mlx_load_model

    from tui_tuner.train.worker import WorkerError

    try:
        model, _config = mlx_load_model(Path(model_path), model_config=hf_config_overrides(Path(model_path)))
    except ValueError as exc:  # mlx-lm raises ValueError for an architecture it does not implement
        raise WorkerError(f"MLX cannot load {model_path}: {exc}",
                          "Use a model mlx-lm supports (Llama, Qwen, Mistral, Gemma, Phi ...), "
                          "or set `backend: transformers`.") from None
    model.set_dtype(getattr(mx, weight_dtype_name(cfg)))
    quantized = 0
    if cfg.method == "qlora":
        quantized = quantize_base(model)
        if not quantized:
            raise WorkerError(f"none of {model_path}'s linear layers can be quantized in groups of "
                              f"{QUANTIZATION['group_size']} (their input widths are not multiples of it)",
                              "Use `method: lora` for this model, or `backend: transformers` for NF4 QLoRA.")
    model.freeze()
    keys = sorted(lora_keys(model.layers[0], cfg.lora.target_modules))
    if not keys:
        wanted = cfg.lora.target_modules
        raise WorkerError(f"lora.target_modules {wanted} matches no linear layer of {model_path}",
                          "Use `all-linear`, or names such as q_proj, v_proj from the model's layers.")
    r = cfg.lora.r
    scale = cfg.lora.alpha / (math.sqrt(r) if cfg.lora.use_rslora else r)
    params = {"rank": r, "scale": scale, "dropout": cfg.lora.dropout, "keys": keys}
    linear_to_lora_layers(model, len(model.layers), params)
    adapter_config = {"fine_tune_type": "lora", "num_layers": len(model.layers), "lora_parameters": params,
                      "model": str(model_path)}
    if quantized:  # mlx_lm.load(base) gives the 16-bit base: say what the adapter was trained on
        adapter_config["base_quantization"] = {**QUANTIZATION, "layers": quantized}
    return model, adapter_config


def make_optimizer(cfg: Any) -> tuple[Any, str | None]:
    """(the MLX optimizer for training.optimizer, a note when it stands in for one MLX does not have)."""
    import mlx.optimizers as optim

    t = cfg.training
    if t.optimizer == "sgd":
        return optim.SGD(learning_rate=t.learning_rate, weight_decay=t.weight_decay), None
    if t.optimizer == "adafactor":
        return optim.Adafactor(learning_rate=t.learning_rate), None
    note = None
    if t.optimizer != "adamw_torch":
        note = f"{t.optimizer} needs bitsandbytes (CUDA); MLX trains with 32-bit AdamW instead"
    return optim.AdamW(learning_rate=t.learning_rate, weight_decay=t.weight_decay), note


# ---------------------------------------------------------------------------- PEFT adapters


class AdapterConversionError(ValueError):
    """An mlx-lm adapter that cannot be written as a PEFT adapter; the message says why."""


def peft_tensors(mlx_weights: dict[str, Any]) -> dict[str, Any]:
    """mlx-lm LoRA weights as PEFT's: `model.layers.0.self_attn.q_proj.lora_a` (in, r) becomes
    `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight` (r, in); `lora_b` (r, out) becomes
    `lora_B.weight` (out, r). MLX adds `scale * (x @ lora_a) @ lora_b`, PEFT `scaling * B(A(x))`: the
    same product once transposed."""
    out = {}
    for key, value in mlx_weights.items():
        module, _, name = key.rpartition(".")
        if name not in ("lora_a", "lora_b") or not module:
            raise AdapterConversionError(f"{key!r} is not a LoRA weight (lora_a/lora_b); only LoRA adapters "
                                         "convert to PEFT (not DoRA or full fine-tunes)")
        peft_name = "lora_A" if name == "lora_a" else "lora_B"
        out[f"base_model.model.{module}.{peft_name}.weight"] = value.T
    if not out:
        raise AdapterConversionError("the adapter holds no LoRA weights")
    return out


def peft_config(adapter_config: dict[str, Any], base_model: str, target_names: list[str]) -> dict[str, Any]:
    """PEFT's adapter_config.json for mlx-lm's LoRA parameters: lora_alpha = scale * r, so PEFT's
    alpha / r equals MLX's scale whatever rule (alpha / r, rsLoRA's alpha / sqrt(r)) chose it."""
    params = adapter_config.get("lora_parameters") or {}
    if adapter_config.get("fine_tune_type", "lora") != "lora":
        raise AdapterConversionError(f"fine_tune_type {adapter_config.get('fine_tune_type')!r} is not LoRA")
    try:
        rank, scale = int(params["rank"]), float(params["scale"])
    except (KeyError, TypeError, ValueError):
        raise AdapterConversionError("adapter_config.json has no lora_parameters.rank and .scale") from None
    return {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_model,
            "r": rank, "lora_alpha": scale * rank, "use_rslora": False,
            "lora_dropout": float(params.get("dropout", 0.0)), "target_modules": sorted(target_names),
            "bias": "none", "fan_in_fan_out": False, "inference_mode": True, "modules_to_save": None,
            "init_lora_weights": True}


def write_peft_adapter(out_dir: Path, mlx_weights: dict[str, Any], adapter_config: dict[str, Any],
                       base_model: str) -> None:
    """adapter_config.json + adapter_model.safetensors in PEFT's format (float32) into `out_dir`."""
    import mlx.core as mx

    tensors = {k: v.astype(mx.float32) for k, v in peft_tensors(mlx_weights).items()}
    names = {k.removesuffix(".lora_A.weight").rsplit(".", 1)[-1] for k in tensors if k.endswith("lora_A.weight")}
    config = peft_config(adapter_config, base_model, sorted(names))
    out_dir.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(out_dir / PEFT_WEIGHTS), tensors, metadata={"format": "pt"})
    (out_dir / "adapter_config.json").write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")


def convert_mlx_adapter(mlx_dir: Path, out_dir: Path, base_model: str | None = None) -> Path:
    """Convert an mlx-lm adapter folder (adapters.safetensors + adapter_config.json) into a PEFT adapter."""
    import mlx.core as mx

    mlx_dir, out_dir = Path(mlx_dir), Path(out_dir)
    try:
        adapter_config = json.loads((mlx_dir / "adapter_config.json").read_text(encoding="utf-8"))
        weights = mx.load(str(mlx_dir / ADAPTER_WEIGHTS))
    except (OSError, ValueError, RuntimeError) as exc:
        raise AdapterConversionError(f"{mlx_dir} is not a readable mlx-lm adapter: {exc}") from None
    base = base_model or adapter_config.get("model")
    if not base:
        raise AdapterConversionError(f"{mlx_dir / 'adapter_config.json'} does not name its base model; pass it")
    write_peft_adapter(out_dir, weights, adapter_config, str(base))
    return out_dir


# ---------------------------------------------------------------------------- the training loop


@dataclass
class LoopState:
    """What `RunTracker` reads from a trainer's state, kept by this loop."""

    global_step: int = 0
    max_steps: int = 0
    epoch: float = 0.0
    num_tokens: int = 0


@dataclass
class LoopControl:
    """What `RunTracker` asks of the trainer: save now, stop now."""

    should_save: bool = False
    should_training_stop: bool = False


@dataclass
class LoopArgs:
    output_dir: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class MlxResult:
    state: str
    """`finished`, or `stopped` when a stop was requested."""
    step: int


def total_steps(cfg: Any, n_examples: int) -> int:
    t = cfg.training
    if t.max_steps:
        return t.max_steps
    per_epoch = math.ceil(math.ceil(n_examples / t.batch_size) / t.grad_accumulation)
    return max(1, math.ceil(per_epoch * t.epochs))


def save_checkpoint(run: RunDir, model: Any, optimizer: Any, state: LoopState, cfg: Any,
                    adapter_config: dict[str, Any]) -> Path:
    """checkpoint-N with adapter, optimizer state and data position; written aside and renamed, so never half there."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    final = run.checkpoints_dir / f"checkpoint-{state.global_step}"
    tmp = run.checkpoints_dir / f".writing-checkpoint-{state.global_step}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = dict(tree_flatten(model.trainable_parameters()))
    mx.save_safetensors(str(tmp / ADAPTER_WEIGHTS), weights)
    mx.save_safetensors(str(tmp / OPTIMIZER_STATE), dict(tree_flatten(optimizer.state)))
    write_peft_adapter(tmp, weights, adapter_config, cfg.model.name_or_path)  # chat/eval --checkpoint N read it
    meta = {"global_step": state.global_step, "max_steps": state.max_steps, "epoch": state.epoch,
            "num_tokens": state.num_tokens, "micro_batches_done": state.global_step * cfg.training.grad_accumulation,
            "backend": "mlx"}
    (tmp / MLX_STATE_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    done = [p for p in run.all_checkpoints() if (p / MLX_STATE_FILE).exists()]
    for old in done[:-cfg.training.save_total_limit]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: Path, model: Any, optimizer: Any, state: LoopState) -> None:
    """Adapter weights, optimizer state, step and token count from checkpoint `path`."""
    import mlx.core as mx
    from mlx.utils import tree_unflatten

    meta = json.loads((path / MLX_STATE_FILE).read_text(encoding="utf-8"))
    model.load_weights(str(path / ADAPTER_WEIGHTS), strict=False)
    optimizer.init(model.trainable_parameters())
    optimizer.state = tree_unflatten(list(mx.load(str(path / OPTIMIZER_STATE)).items()))
    state.global_step = int(meta["global_step"])
    state.epoch = float(meta.get("epoch") or 0.0)
    state.num_tokens = int(meta.get("num_tokens") or 0)


def evaluate(model: Any, ds: Any, batch_size: int, pad_id: int) -> float:
    """Mean next-token loss over the eval set's answer tokens (dropout off)."""
    import mlx.core as mx

    model.eval()
    total, tokens = 0.0, 0
    for start in range(0, len(ds), batch_size):
        rows = ds[start:start + batch_size]
        inputs, targets, mask, _ = pad_batch(rows["input_ids"], rows["labels"], pad_id)
        loss = masked_loss_sum(model, inputs, targets, mask)
        mx.eval(loss)
        total += loss.item()
        tokens += int(mask.sum().item())
    model.train()
    return total / max(1, tokens)


def train(run: RunDir, cfg: Any, keeper: Any, events: EventWriter, resume_from: Path | None,
          requests_since: float | None = None) -> MlxResult:
    """Load, train and save the final adapter with MLX; events and status as the transformers path writes them."""
    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim
    from mlx.utils import tree_map
    from transformers import AutoTokenizer

    from tui_tuner.train.callback import RunTracker
    from tui_tuner.train.worker import _resolve_model_path, _resolve_template, build_datasets

    t = cfg.training
    mx.random.seed(t.seed)  # LoRA init and dropout
    model_path = _resolve_model_path(cfg.model.name_or_path)
    model, adapter_config = load_model(cfg, model_path)
    tokenizer = AutoTokenizer.from_pretrained(model_path)  # the same tokenizer the transformers backend uses
    template = _resolve_template(cfg, tokenizer)
    tokenizer.chat_template = template
    train_ds, eval_ds, info = build_datasets(cfg, tokenizer, template)
    events.write("data", **info)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    optimizer, note = make_optimizer(cfg)
    keeper.update(precision=precision_label(cfg), mlx_device=str(mx.default_device()),
                  **({"quantization": adapter_config["base_quantization"]} if cfg.method == "qlora" else {}),
                  **({"optimizer_note": note} if note else {}))
    if note:
        print(f"tui-tuner worker: {note}", flush=True)

    state = LoopState(max_steps=total_steps(cfg, len(train_ds)))
    if resume_from is not None:
        load_checkpoint(resume_from, model, optimizer, state)
    warmup = warmup_steps(t.warmup_ratio, state.max_steps)
    control = LoopControl()
    args = LoopArgs(output_dir=str(run.checkpoints_dir))
    tracker = RunTracker(run.path, events, keeper, requests_since=requests_since)
    loss_and_grad = nn.value_and_grad(model, masked_loss_sum)
    per_epoch = math.ceil(len(train_ds) / t.batch_size)
    batches = micro_batches(len(train_ds), t.batch_size, t.seed)
    for _ in range(state.global_step * t.grad_accumulation):  # replay the data order up to the checkpoint
        next(batches)
    micro_done = state.global_step * t.grad_accumulation
    model.train()
    mx.reset_peak_memory()
    tracker.on_train_begin(args, state, control)
    stopped = False
    while state.global_step < state.max_steps:
        grads, loss_sum, answer_tokens = None, 0.0, 0
        for _ in range(t.grad_accumulation):
            _epoch, rows = next(batches)
            picked = train_ds.select(rows)
            inputs, targets, mask, real = pad_batch(list(picked["input_ids"]), list(picked["labels"]), pad_id)
            loss, g = loss_and_grad(model, inputs, targets, mask)
            grads = g if grads is None else tree_map(lambda a, b: a + b, grads, g)
            mx.eval(loss, grads)
            loss_sum += loss.item()
            answer_tokens += int(mask.sum().item())
            state.num_tokens += real
            micro_done += 1
        scale = 1.0 / max(1, answer_tokens)  # mean over every answer token of the optimizer step
        grads = tree_map(lambda a: a * scale, grads)
        grad_norm = None
        if t.max_grad_norm > 0:
            grads, norm = optim.clip_grad_norm(grads, t.max_grad_norm)
            grad_norm = norm.item()
        lr = t.learning_rate * lr_factor(state.global_step, state.max_steps, warmup, t.scheduler)
        optimizer.learning_rate = lr
        optimizer.update(model, grads)
        mx.eval(model.trainable_parameters(), optimizer.state)
        state.global_step += 1
        state.epoch = round(micro_done / per_epoch, 4)
        tracker.on_step_end(args, state, control)
        last = state.global_step >= state.max_steps
        if state.global_step % t.logging_steps == 0 or last or control.should_training_stop:
            peak = int(mx.get_peak_memory())
            tracker.on_log(args, state, control, logs={
                "loss": loss_sum * scale, "learning_rate": lr, "grad_norm": grad_norm,
                "num_tokens": float(state.num_tokens), "peak_memory_bytes": peak})
            keeper.update(force=False, peak_memory_bytes=peak)
        if eval_ds is not None and t.eval_steps and (state.global_step % t.eval_steps == 0 or last):
            tracker.on_log(args, state, control, logs={"eval_loss": evaluate(model, eval_ds, t.batch_size, pad_id)})
        if state.global_step % t.save_steps == 0 or last or control.should_save:
            save_checkpoint(run, model, optimizer, state, cfg, adapter_config)
            tracker.on_save(args, state, control)
            control.should_save = False
        if control.should_training_stop:
            stopped = True
            break
    save_adapter(run, model, tokenizer, template, cfg, model_path, adapter_config, state.global_step)
    events.write("adapter", step=state.global_step, path=str(run.adapter_dir))
    return MlxResult("stopped" if stopped or tracker.stop_requested else "finished", state.global_step)


def save_adapter(run: RunDir, model: Any, tokenizer: Any, template: str, cfg: Any, model_path: str,
                 adapter_config: dict[str, Any], step: int) -> None:
    """adapter/: the PEFT adapter, the tokenizer, the chat template and what the run was;
    adapter/mlx/: mlx-lm's own files."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    out = run.adapter_dir
    mlx_dir = out / MLX_ADAPTER_DIR
    mlx_dir.mkdir(parents=True, exist_ok=True)
    weights = dict(tree_flatten(model.trainable_parameters()))
    mx.save_safetensors(str(mlx_dir / ADAPTER_WEIGHTS), weights)
    (mlx_dir / "adapter_config.json").write_text(json.dumps(adapter_config, indent=1) + "\n", encoding="utf-8")
    write_peft_adapter(out, weights, adapter_config, cfg.model.name_or_path)
    tokenizer.save_pretrained(str(out))
    (out / "chat_template.jinja").write_text(template, encoding="utf-8")
    meta = {"run": run.name, "base_model": cfg.model.name_or_path, "base_model_path": model_path,
            "method": cfg.method, "step": step, "chat_template": cfg.model.chat_template,
            "max_seq_length": cfg.model.max_seq_length, "backend": "mlx", "adapter_format": "peft",
            "mlx_adapter": MLX_ADAPTER_DIR}
    if "base_quantization" in adapter_config:
        meta["base_quantization"] = adapter_config["base_quantization"]
    (out / "tui_tuner.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")

