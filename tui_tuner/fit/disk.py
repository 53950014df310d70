"""Disk a run will use: checkpoint and final-model sizes from the model's architecture and the method.

`tui-tuner train` and `runs resume` compare `run_disk_need` with the free space of the runs
folder (`tui_tuner.rundir.diskspace.space_problem`) before anything is written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tui_tuner.rundir.diskspace import MARGIN_BYTES

if TYPE_CHECKING:
    from tui_tuner.config.schema import RunConfig


def checkpoint_bytes(cfg: "RunConfig") -> int | None:
    """Bytes of one resumable checkpoint: trainable weights + AdamW's two moments (fp32) + small files.

    From the model's architecture (config.json, catalog or demo; never weights); None when the
    architecture is unknown here.
    """
    from tui_tuner.fit.estimate import lora_params
    from tui_tuner.models.spec import ModelSpecError, model_spec

    try:
        spec = model_spec(cfg.model.name_or_path, cfg.model.revision)
    except (ModelSpecError, OSError, ValueError):
        return None
    if cfg.method == "full":
        weight_bytes = 4 if cfg.model.dtype in ("auto", "float32") else 2
        trainable = spec.param_count
        weights = trainable * weight_bytes
    else:
        trainable = lora_params(spec, cfg.lora.r, cfg.lora.target_modules)
        weights = trainable * 4  # peft keeps and saves adapter weights in float32
    optimizer_bytes = {"sgd": 0, "adafactor": 1}.get(cfg.training.optimizer, 2) * 4 * trainable
    if "8bit" in cfg.training.optimizer:
        optimizer_bytes = 2 * trainable
    return weights + optimizer_bytes + (1 << 20)


def run_disk_need(cfg: "RunConfig") -> int | None:
    """Bytes a run writes at its peak: `save_total_limit` checkpoints, one being written, and the final model."""
    one = checkpoint_bytes(cfg)
    if one is None:
        return None
    final_model = one if cfg.method == "full" else one // 3  # the adapter alone, no optimizer state
    return one * (cfg.training.save_total_limit + 1) + final_model + MARGIN_BYTES


