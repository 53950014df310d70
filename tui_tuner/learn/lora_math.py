"""LoRA arithmetic: shapes, trainable parameters and adapter size for r, alpha and target modules.

For each targeted linear layer W (out x in), LoRA trains B (out x r) and A (r x in);
the update B @ A has W's shape but only r * (in + out) numbers. This module counts
them the way PEFT does (tests compare with PEFT's own `get_nb_trainable_parameters`)
and sizes the adapter file PEFT writes (`adapter_model.safetensors`).

    tui-tuner learn lora TinyLlama/TinyLlama-1.1B-Chat-v1.0 --r 16 --alpha 32
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from tui_tuner.fit.lora import parse_target_modules, resolve_target_modules
from tui_tuner.learn.layout import ModelLayout

__all__ = ["parse_target_modules", "targeted", "lora_report", "lora_scaling", "TargetModulesError"]

RANKS = (4, 8, 16, 32, 64)
ADAPTER_DTYPE_BYTES = {"float32": 4, "bfloat16": 2}
SAFETENSORS_DTYPE = {"float32": "F32", "bfloat16": "BF16"}

EXPLANATIONS = {
    "shapes": ("LoRA freezes each targeted weight W (out x in) and trains two thin matrices: A (r x in) and "
               "B (out x r). Their product B·A has W's shape, but costs only r x (in + out) numbers."),
    "percent": ("That is why LoRA trains a small share of the parameters, well under 1% of a billion-weight "
                "model (more of a tiny one, whose matrices are narrow): the count grows with r and with which "
                "modules are targeted, never with in x out."),
    "scaling": ("The update is multiplied by alpha / r. With alpha fixed, doubling r halves that factor, so a "
                "higher rank moves the model less per step unless alpha grows too (alpha = 2r is common). "
                "rsLoRA scales by alpha / sqrt(r) instead, which keeps the update's size steady as r grows."),
    "disk": ("PEFT saves only A and B (adapter_model.safetensors), in float32 by default: tens of MB where "
             "the base model is GB. Merging the adapter into the base gives back a full-size model."),
}


class TargetModulesError(ValueError):
    """target_modules names no linear layer of the model; the message lists the ones it has."""


@dataclass
class LoraModuleRow:
    name: str                    # e.g. q_proj
    path: str                    # e.g. self_attn.q_proj
    count: int                   # how many in the model
    in_features: int
    out_features: int
    a_shape: list[int]           # [r, in]
    b_shape: list[int]           # [out, r]
    params_each: int
    params_total: int
    base_params_total: int       # the frozen weights these adapters sit on


@dataclass
class RankRow:
    r: int
    trainable: int
    percent_of_base: float
    adapter_bytes: int           # float32 safetensors file
    scaling: float               # alpha / r
    rslora_scaling: float        # alpha / sqrt(r)


@dataclass
class LoraReport:
    model: str
    r: int
    alpha: float
    target_modules: str | list[str]
    use_rslora: bool
    scaling: float                      # the factor in effect (alpha/r or alpha/sqrt(r))
    modules: list[LoraModuleRow]
    trainable: int
    base_params: int
    percent_of_base: float              # trainable / base
    percent_like_peft: float            # trainable / (base + trainable), as print_trainable_parameters shows
    adapter_bytes: dict[str, int]       # dtype -> safetensors file size
    rank_table: list[RankRow]
    explanations: dict[str, str] = field(default_factory=lambda: dict(EXPLANATIONS))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def targeted(layout: ModelLayout, target_modules: str | list[str]):
    """The layout's linear modules LoRA targets, resolved as PEFT resolves them (`tui_tuner.fit.lora`).

    `all-linear` is every linear layer except the output layer (the LM head), as in PEFT.
    """
    match = resolve_target_modules([m.path for m in layout.linear], target_modules)
    problem = match.problem(layout.model)
    if problem:
        raise TargetModulesError(problem)
    return [m for m in layout.linear if m.path in match.chosen]


def lora_scaling(alpha: float, r: int, use_rslora: bool = False) -> float:
    """The factor the LoRA update is multiplied by: alpha/r, or alpha/sqrt(r) with rsLoRA."""
    return alpha / math.sqrt(r) if use_rslora else alpha / r


def adapter_file_bytes(layout: ModelLayout, modules, r: int, dtype: str = "float32") -> int:
    """Size of the adapter_model.safetensors PEFT writes: 8-byte length, JSON header, then the data."""
    elem = ADAPTER_DTYPE_BYTES[dtype]
    st_dtype = SAFETENSORS_DTYPE[dtype]
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    tensors = []
    for m in modules:
        for full in m.full_names(layout.layer_prefix):
            tensors.append((f"base_model.model.{full}.lora_A.weight", [r, m.in_features]))
            tensors.append((f"base_model.model.{full}.lora_B.weight", [m.out_features, r]))
    for name, shape in sorted(tensors):
        size = shape[0] * shape[1] * elem
        header[name] = {"dtype": st_dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":"))
    padded = len(text) + (-len(text)) % 8   # safetensors pads the header to 8 bytes
    return 8 + padded + offset


def lora_report(layout: ModelLayout, r: int = 16, alpha: float = 32, target_modules: str | list[str] = "all-linear",
                use_rslora: bool = False, ranks: tuple[int, ...] = RANKS) -> LoraReport:
    """LoRA's shapes, counts and adapter size on `layout`, plus the same figures for each rank in `ranks`."""
    if r < 1:
        raise ValueError(f"r must be at least 1, not {r}.")
    if alpha <= 0:
        raise ValueError(f"alpha must be positive, not {alpha:g}.")
    modules = targeted(layout, target_modules)
    rows = [LoraModuleRow(m.name, m.path, m.count, m.in_features, m.out_features, [r, m.in_features],
                          [m.out_features, r], r * (m.in_features + m.out_features),
                          r * (m.in_features + m.out_features) * m.count, m.weight_params * m.count)
            for m in modules]
    trainable = sum(row.params_total for row in rows)
    base = layout.total_params

    def count_for(rank: int) -> int:
        return sum(rank * (m.in_features + m.out_features) * m.count for m in modules)

    rank_rows = []
    for rank in sorted(set(ranks) | {r}):
        n = count_for(rank)
        rank_rows.append(RankRow(rank, n, 100 * n / base, adapter_file_bytes(layout, modules, rank),
                                 lora_scaling(alpha, rank), lora_scaling(alpha, rank, True)))
    return LoraReport(
        model=layout.model, r=r, alpha=alpha, target_modules=target_modules, use_rslora=use_rslora,
        scaling=lora_scaling(alpha, r, use_rslora), modules=rows, trainable=trainable, base_params=base,
        percent_of_base=100 * trainable / base, percent_like_peft=100 * trainable / (base + trainable),
        adapter_bytes={d: adapter_file_bytes(layout, modules, r, d) for d in ADAPTER_DTYPE_BYTES},
        rank_table=rank_rows)
