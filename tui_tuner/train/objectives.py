"""Trainers for the objectives beyond SFT: DPO, ORPO, KTO, reward models and GRPO.

The worker (`tui_tuner.train.worker.train`) calls `build_objective_datasets` and
`objective_trainer` when `objective` is not `sft`; everything else (backend, model loading,
probe, callback, checkpoints, resume, final adapter) is shared with SFT.

Datasets go to trl as conversations; the tokenizer carries the run's chat template (the one
`resolve_chat_template` picked), so trl renders prompts and answers with the same template
that SFT, chat, eval and export use. With LoRA, trl keeps the reference model as a frozen copy
of the starting adapter inside the same model (equal to the adapter-disabled base for a fresh
adapter; the SFT adapter when chaining with `init_adapter`): no second copy of the base weights.
Full fine-tuning loads a second, frozen copy of the model as the reference (DPO, KTO; GRPO with beta > 0).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from tui_tuner.data.preference import conversational, load_objective_file
from tui_tuner.rundir.files import ADAPTER_DIR


def build_objective_datasets(cfg: Any, base_dir: Path | None) -> tuple[Any, Any, dict[str, Any]]:
    """(train, eval or None, info) `datasets.Dataset`s in trl's conversational form for `cfg.objective`."""
    from datasets import Dataset

    from tui_tuner.train.worker import WorkerError

    from tui_tuner.data.hub import data_source

    def load(path: str, role: str = "train") -> tuple[list, str]:
        resolved = data_source(path, base_dir, cfg.data, role=role)
        loaded = load_objective_file(resolved, cfg.objective, cfg.data)
        errors = [i for i in loaded.issues if i.severity == "error"]
        if errors or not loaded.examples:
            first = errors[0].format() if errors else f"{path}: no usable example"
            raise WorkerError(f"the dataset {path} has errors for objective {cfg.objective}: {first}",
                              f"Run `tui-tuner data check {path} --config CONFIG` to see every problem.")
        return loaded.examples, loaded.kind

    train_examples, kind = load(cfg.data.train)
    eval_examples: list = []
    if cfg.data.eval:
        eval_examples, _ = load(cfg.data.eval, "eval")
    elif cfg.data.eval_split > 0 and len(train_examples) > 1:
        order = list(range(len(train_examples)))
        random.Random(cfg.training.seed).shuffle(order)
        held = set(order[: max(1, int(round(len(order) * cfg.data.eval_split)))])
        eval_examples = [e for i, e in enumerate(train_examples) if i in held]
        train_examples = [e for i, e in enumerate(train_examples) if i not in held]

    def to_dataset(examples: list) -> Any:
        return Dataset.from_list([conversational(e, kind) for e in examples])

    train_ds = to_dataset(train_examples)
    eval_ds = to_dataset(eval_examples) if eval_examples else None
    info = {"format": kind, "objective": cfg.objective, "train_examples": len(train_ds),
            "eval_examples": len(eval_ds) if eval_ds is not None else 0}
    if cfg.objective == "grpo":
        from tui_tuner.data.rewards import reward_columns

        missing = {name: col for name, col in reward_columns(cfg.grpo.rewards).items()
                   if col not in train_ds.column_names}
        if missing:
            name, col = next(iter(missing.items()))
            raise WorkerError(f"reward `{name}` compares against the dataset column `{col}`, which "
                              f"{cfg.data.train} does not have (columns: {', '.join(train_ds.column_names)})",
                              "Add the column to the dataset, or set `column:` on that reward in grpo.rewards.")
    return train_ds, eval_ds, info


def objective_args(cfg: Any, common: dict[str, Any]) -> Any:
    """The trl config object for `cfg.objective`, from the settings every objective shares."""
    kwargs = dict(common)
    max_len = cfg.model.max_seq_length
    objective = cfg.objective
    if objective == "dpo":
        from trl import DPOConfig

        d = cfg.dpo
        return DPOConfig(**kwargs, max_length=max_len, beta=d.beta, loss_type=[d.loss_type],
                         label_smoothing=d.label_smoothing)
    if objective == "orpo":
        from trl.experimental.orpo import ORPOConfig

        return ORPOConfig(**kwargs, max_length=max_len, beta=cfg.orpo.beta)
    if objective == "kto":
        from trl import KTOConfig

        k = cfg.kto
        return KTOConfig(**kwargs, max_length=max_len, beta=k.beta, desirable_weight=k.desirable_weight,
                         undesirable_weight=k.undesirable_weight)
    if objective == "reward":
        from trl import RewardConfig

        return RewardConfig(**kwargs, max_length=max_len,
                            center_rewards_coefficient=cfg.reward.center_rewards_coefficient)
    if objective == "grpo":
        from trl import GRPOConfig

        g = cfg.grpo
        kwargs["per_device_eval_batch_size"] = max(kwargs.get("per_device_eval_batch_size", 1), g.num_generations)
        return GRPOConfig(**kwargs, num_generations=g.num_generations, max_completion_length=g.max_completion_length,
                          temperature=g.temperature, beta=g.beta,
                          reward_weights=[_weight(s) for s in g.rewards], log_completions=False)
    raise ValueError(f"unknown objective {objective!r}")


def _weight(spec: Any) -> float:
    return 1.0 if isinstance(spec, str) else float(spec.weight)


def objective_trainer(cfg: Any, model: Any, tokenizer: Any, args: Any, train_ds: Any, eval_ds: Any,
                      callbacks: list[Any], base_dir: Path | None, events: Any) -> Any:
    """The trl trainer for `cfg.objective`, on the already-loaded (and adapter-wrapped) model."""
    common = dict(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                  processing_class=tokenizer, callbacks=callbacks)
    objective = cfg.objective
    if objective == "dpo":
        from trl import DPOTrainer

        return DPOTrainer(**common)
    if objective == "orpo":
        from trl.experimental.orpo import ORPOTrainer

        return ORPOTrainer(**common)
    if objective == "kto":
        from trl import KTOTrainer

        return KTOTrainer(**common)
    if objective == "reward":
        from trl import RewardTrainer

        return RewardTrainer(**common)
    if objective == "grpo":
        from trl import GRPOTrainer

        from tui_tuner.data.rewards import RewardRecorder, guarded, resolve_rewards

        rewards = resolve_rewards(cfg.grpo.rewards, base_dir)
        recorder = RewardRecorder([r.name for r in rewards], [r.weight for r in rewards], events.write,
                                  cfg.grpo.log_completions)
        funcs = [guarded(r, recorder) for r in rewards]
        return GRPOTrainer(model=model, reward_funcs=funcs, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                           processing_class=tokenizer, callbacks=callbacks)
    raise ValueError(f"unknown objective {objective!r}")


def resolve_init_adapter(value: str, runs_dir: Path) -> Path:
    """The adapter folder `init_adapter` names: a run name, a run folder or an adapter folder."""
    from tui_tuner.train.worker import WorkerError

    p = Path(value).expanduser()
    candidates = [p / ADAPTER_DIR, p] if p.exists() else []
    if not candidates:
        try:
            from tui_tuner.rundir.runs import find_run

            run = find_run(value, runs_dir)
        except Exception:  # noqa: BLE001 - not found is reported below
            run = None
        if run is not None:
            candidates = [run.adapter_dir]
    for c in candidates:
        if (c / "adapter_config.json").is_file():
            return c
    raise WorkerError(f"init_adapter `{value}` is not a run with a finished adapter nor an adapter folder "
                      f"(looked in {', '.join(map(str, candidates)) or runs_dir})",
                      "Name a finished run (`tui-tuner runs ls`) or a folder with adapter_config.json.")
