"""An MLX model as tui-tuner trains and runs it: how its base is loaded and quantized, where LoRA goes,
and the masked loss; shared by the MLX training backend and chat/eval on MLX.

mlx and mlx-lm are imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ADAPTER_WEIGHTS = "adapters.safetensors"
MLX_DTYPES = ("float32", "bfloat16", "float16")
MLX_ADAPTER_DIR = "mlx"
"""The mlx-lm copy of the final adapter, inside the run's adapter/ folder."""
QUANTIZATION = {"mode": "affine", "bits": 4, "group_size": 64}
"""How `method: qlora` quantizes the base on MLX."""


def lora_keys(layer: Any, target_modules: str | list[str]) -> set[str]:
    """Paths of the linear layers inside one decoder layer that get LoRA (`all-linear` or by last name)."""
    import mlx.nn as nn

    keys = set()
    for path, module in layer.named_modules():
        if not isinstance(module, (nn.Linear, nn.QuantizedLinear)):
            continue
        if target_modules == "all-linear" or path.rsplit(".", 1)[-1] in target_modules:
            keys.add(path)
    return keys


def pad_batch(ids: list[list[int]], labels: list[list[int]], pad_id: int) -> tuple[Any, Any, Any, int]:
    """(inputs, targets, mask, real tokens): next-token targets, mask 1 where the label is not -100."""
    import mlx.core as mx

    width = max(len(x) for x in ids)
    padded_ids = [x + [pad_id] * (width - len(x)) for x in ids]
    padded_labels = [y + [-100] * (width - len(y)) for y in labels]
    arr_ids = mx.array(padded_ids, dtype=mx.int32)
    arr_labels = mx.array(padded_labels, dtype=mx.int32)
    targets = arr_labels[:, 1:]
    mask = targets != -100
    return arr_ids[:, :-1], mx.where(mask, targets, 0), mask, sum(len(x) for x in ids)


def masked_loss_sum(model: Any, inputs: Any, targets: Any, mask: Any) -> Any:
    """Sum of the next-token cross-entropy over the positions the mask keeps."""
    import mlx.core as mx
    import mlx.nn as nn

    logits = model(inputs).astype(mx.float32)
    return (nn.losses.cross_entropy(logits, targets) * mask).sum()


def weight_dtype_name(cfg: Any) -> str:
    """The MLX dtype of the frozen weights: `auto` is bfloat16 on the Metal GPU, float32 on a CPU (slow bf16 there).

    For QLoRA, `quantization.compute_dtype` (when set) wins: MLX computes a 4-bit layer in the dtype of its
    scales, which is the dtype the model had when it was quantized."""
    import mlx.core as mx

    if cfg.method == "qlora" and cfg.quantization.compute_dtype != "auto":
        return cfg.quantization.compute_dtype
    if cfg.model.dtype != "auto":
        return cfg.model.dtype
    return "bfloat16" if mx.default_device() == mx.gpu else "float32"


def hf_config_overrides(model_path: Path) -> dict[str, Any]:
    """Config keys mlx-lm reads at the top level that transformers 5 writes inside `rope_parameters`.

    A model saved by transformers 5 has `rope_parameters: {rope_theta: 500000, ...}` and no top-level
    `rope_theta`; mlx-lm would silently take its default (10000) and compute different logits."""
    try:
        config = json.loads((model_path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    rope = config.get("rope_parameters")
    if not isinstance(rope, dict):
        return {}
    out: dict[str, Any] = {}
    if "rope_theta" not in config and "rope_theta" in rope:
        out["rope_theta"] = rope["rope_theta"]
    if "partial_rotary_factor" not in config and "partial_rotary_factor" in rope:
        out["partial_rotary_factor"] = rope["partial_rotary_factor"]
    kind = rope.get("rope_type", "default")
    if config.get("rope_scaling") is None and kind != "default":
        out["rope_scaling"] = {"type": kind, **{k: v for k, v in rope.items() if k != "rope_theta"}}
    return out


def quantize_base(model: Any, quantization: dict[str, Any] | None = None) -> int:
    """Quantize the linear layers and embeddings in place with MLX's affine 4-bit (group 64); returns how many.

    The same layers as mlx-lm's `convert -q`; a layer whose input width is not a multiple of the group size
    stays unquantized (MLX cannot group it). `quantization` (mode, bits, group_size) defaults to
    `QUANTIZATION`; chat and eval pass what a run recorded, to rebuild the base it trained on."""
    import mlx.nn as nn

    q = {**QUANTIZATION, **(quantization or {})}
    group = q["group_size"]
    count = 0

    def predicate(path: str, module: Any) -> bool:
        nonlocal count
        wanted = isinstance(module, (nn.Linear, nn.Embedding)) and module.weight.shape[-1] % group == 0
        count += wanted
        return wanted

    nn.quantize(model, group_size=group, bits=q["bits"], mode=q["mode"], class_predicate=predicate)
    return count
