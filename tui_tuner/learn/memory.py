"""Weight memory by precision: the course's "7B: 28 / 14 / 7 / 3.5 GB", then the exact figure.

Sizes are shown in GiB (`tui_tuner.core.units.format_bytes`), as everywhere in tui-tuner; the
rule of thumb's decimal GB are kept in the JSON (`rule_of_thumb_gb`) and explained in words.

The rule of thumb multiplies the size in the model's name by 4, 2, 1 or 0.5 bytes. The
exact figure starts from the real parameter count (config.json) and adds what
bitsandbytes actually stores: INT8 and NF4 quantize only the linear layers inside the
decoder blocks; embeddings, LM head, norms and biases stay in 16 bit; every quantized
matrix carries its scales (absmax) and, with double quant, their own constants.

    tui-tuner learn memory meta-llama/Llama-2-7b-hf
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from tui_tuner.core.units import format_bytes
from tui_tuner.fit.quant import (
    INT8_BYTES_PER_WEIGHT,
    KEPT_BYTES_PER_WEIGHT,
    NF4_BLOCKSIZE,
    NF4_BYTES_PER_WEIGHT,
    SCHEMES,
    quantized_bytes,
)
from tui_tuner.learn.layout import ModelLayout

GB = 1e9
GIB = 1024 ** 3

PRECISIONS = (
    ("fp32", "FP32", 4.0),
    ("bf16", "BF16/FP16", 2.0),
    ("int8", "INT8", INT8_BYTES_PER_WEIGHT),
    ("nf4", "NF4", NF4_BYTES_PER_WEIGHT),
    ("nf4-dq", "NF4 + DQ (QLoRA)", NF4_BYTES_PER_WEIGHT),
)

EXPLANATIONS = {
    "memory": ("The rule of thumb multiplies the size in the name by the bytes per weight. The exact "
               "column uses the real parameter count and what bitsandbytes stores: only the linear layers "
               "in the blocks are quantized, the rest stays 16-bit, and each block of weights has a scale."),
    "weights_only": ("These are the weights alone. Training also needs gradients and optimizer states for "
                     "what is trained, and activations; `tui-tuner check` estimates the whole."),
}


@dataclass
class PrecisionRow:
    key: str
    label: str
    bytes_per_weight: float          # the rule of thumb's figure
    rule_of_thumb_bytes: float       # nominal size x bytes_per_weight
    real_count_bytes: float          # real parameter count x bytes_per_weight
    exact_bytes: float               # what is actually held, constants included
    quantized_bytes: float           # linear weights' codes (0 for fp32/bf16: nothing quantized)
    constants_bytes: float           # scales / absmax / nested state / lookup tables
    kept_bytes: float                # weights not quantized
    bits_per_param: float            # exact_bytes * 8 / params

    @property
    def exact_gb(self) -> float:
        return self.exact_bytes / GB


@dataclass
class MemoryReport:
    model: str
    source: str
    params: int
    nominal_params: float
    nominal_label: str
    nominal_from: str                # "name" or "rounded count"
    quantized_params: int
    kept_params: int
    linear_tensors: int
    rows: list[PrecisionRow]
    gap_explanation: list[str]
    explanations: dict[str, str] = field(default_factory=lambda: dict(EXPLANATIONS))
    notes: list[str] = field(default_factory=list)

    def row(self, key: str) -> PrecisionRow:
        return next(r for r in self.rows if r.key == key)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for row in d["rows"]:
            row["exact_gb"] = row["exact_bytes"] / GB
            row["exact_gib"] = row["exact_bytes"] / GIB
            row["rule_of_thumb_gb"] = row["rule_of_thumb_bytes"] / GB
        return d


_SIZE_IN_NAME = re.compile(r"(?<![A-Za-z0-9.])(\d+(?:\.\d+)?)\s*([bBmM])(?![A-Za-z])")


def nominal_size(name: str, params: int) -> tuple[float, str, str]:
    """(parameters, label, where from): the size a model's name advertises ("7b" -> 7e9), else the count rounded."""
    tail = name.rstrip("/").split("/")[-1]
    for match in _SIZE_IN_NAME.finditer(tail.replace("_", "-")):
        value = float(match.group(1)) * (1e9 if match.group(2) in "bB" else 1e6)
        if 0.2 <= value / params <= 5:  # a number that is really the size, not a version
            return value, match.group(1) + match.group(2).upper(), "name"
    digits = 2 - int(math.floor(math.log10(params))) - 1
    value = round(params, digits)
    label = f"{value / 1e9:g}B" if value >= 1e9 else f"{value / 1e6:g}M"
    return float(value), label, "rounded count"


def _linear_constants(layout: ModelLayout, key: str) -> float:
    """Bytes of scales and tables bitsandbytes keeps for all quantized linear weights."""
    if key not in SCHEMES:
        return 0.0
    return float(quantized_bytes(((m.in_features, m.out_features, m.count) for m in layout.linear), key)[1])


def memory_by_precision(layout: ModelLayout) -> MemoryReport:
    """The weight memory of `layout` in FP32, BF16, INT8 and NF4, rule of thumb against exact."""
    params = layout.total_params
    nominal, label, source = nominal_size(layout.model, params)
    q_params = layout.linear_params
    kept = params - q_params
    rows = []
    for key, text, bpw in PRECISIONS:
        if key in ("fp32", "bf16"):
            quantized, constants, kept_bytes = 0.0, 0.0, params * bpw
        else:
            quantized = q_params * bpw
            constants = _linear_constants(layout, key)
            kept_bytes = kept * KEPT_BYTES_PER_WEIGHT
        exact = quantized + constants + kept_bytes
        rows.append(PrecisionRow(key, text, bpw, nominal * bpw, params * bpw, exact, quantized, constants,
                                 kept_bytes, exact * 8 / params))
    report = MemoryReport(layout.model, layout.source, params, nominal, label, source, q_params, kept,
                          layout.linear_tensors, rows, [], notes=list(layout.notes))
    report.gap_explanation = _gap_explanation(report, layout)
    return report


def _gap_explanation(r: MemoryReport, layout: ModelLayout) -> list[str]:
    lines = []
    diff = (r.params - r.nominal_params) / r.nominal_params
    if r.nominal_from == "name":
        lines.append(f"Parameter count: the name says {r.nominal_label}, config.json gives {r.params:,} "
                     f"({diff:+.1%}), so even FP32 and BF16 differ from the rule of thumb by that much.")
    else:
        lines.append(f"Parameter count: {r.params:,} (rounded to {r.nominal_label} for the rule of thumb).")
    nf4 = r.row("nf4-dq")
    kept_share = r.kept_params / r.params
    lines.append(
        f"Not everything is quantized: INT8 and NF4 apply to the {r.linear_tensors} linear matrices in the "
        f"blocks ({r.quantized_params / r.params:.1%} of the weights). Embeddings, LM head, norms and biases "
        f"({r.kept_params:,} parameters, {kept_share:.1%}) stay in 16 bit: {format_bytes(nf4.kept_bytes)}.")
    int8, nf4_plain = r.row("int8"), r.row("nf4")
    lines.append(
        f"Constants: INT8 keeps one FP32 scale per output row ({format_bytes(int8.constants_bytes)}); NF4 one "
        f"FP32 absmax per {NF4_BLOCKSIZE} weights, +0.5 bit ({format_bytes(nf4_plain.constants_bytes)}); double "
        f"quant stores them in 8 bits, +0.127 bit ({format_bytes(nf4.constants_bytes)}).")
    lines.append(f"Result: NF4 with double quant holds {format_bytes(nf4.exact_bytes)} ({nf4.bits_per_param:.2f} bits "
                 f"per parameter on average) where the rule of thumb says {format_bytes(nf4.rule_of_thumb_bytes)}.")
    fp32 = r.row("fp32")
    lines.append(f"Units: the rule of thumb counts decimal GB ({r.nominal_label} x 4 bytes = "
                 f"{fp32.rule_of_thumb_bytes / GB:g} GB); sizes here are binary, as nvidia-smi shows memory "
                 f"(1 GiB = 2^30 bytes), so the same {fp32.rule_of_thumb_bytes / GB:g} GB reads "
                 f"{format_bytes(fp32.rule_of_thumb_bytes)}.")
    return lines
