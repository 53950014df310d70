"""Bytes per weight by precision, as bitsandbytes stores them: the one NF4 / INT8 formula.

INT8 (LLM.int8) keeps one FP32 scale per output row. NF4 keeps two 4-bit codes per byte,
one FP32 absmax per block of 64 weights and the 16-entry FP32 code map; with double
quantization (QLoRA's default) the absmax constants are themselves quantized to 8 bits in
blocks of 256, each block with an FP32 scale, plus one FP32 offset and the 256-entry map.
Only the linear layers inside the decoder blocks are quantized; everything else stays 16-bit.
Both the fit estimate (`fit/estimate.py`) and the memory lab (`learn/memory.py`) use these.
"""

from __future__ import annotations

import math
from typing import Iterable

NF4_BYTES_PER_WEIGHT = 0.5
"""4-bit NormalFloat: two weights per byte."""
INT8_BYTES_PER_WEIGHT = 1.0
NF4_BLOCKSIZE = 64
"""bitsandbytes 4-bit: one absmax constant per 64 weights (QLoRA paper, section 3)."""
DOUBLE_QUANT_BLOCKSIZE = 256
"""Double quantization: the 64-blocks' constants are quantized to 8 bit in blocks of 256."""
NF4_CODE_MAP_BYTES = 16 * 4
"""The 16-entry FP32 code map each 4-bit weight keeps."""
NESTED_CODE_MAP_BYTES = 256 * 4
"""The 8-bit dynamic map of the double-quantized constants."""
KEPT_BYTES_PER_WEIGHT = 2
"""Weights that are not quantized (embeddings, LM head, norms, biases) stay in BF16/FP16."""

SCHEMES = ("int8", "nf4", "nf4-dq")


def quant_constants_bytes(in_features: int, out_features: int, scheme: str) -> int:
    """Bytes of scales and code maps bitsandbytes keeps beside one quantized matrix (out x in)."""
    if scheme == "int8":
        return out_features * 4                 # SCB: one FP32 scale per output row
    blocks = math.ceil(in_features * out_features / NF4_BLOCKSIZE)
    if scheme == "nf4":
        return blocks * 4 + NF4_CODE_MAP_BYTES
    if scheme == "nf4-dq":
        return (blocks + math.ceil(blocks / DOUBLE_QUANT_BLOCKSIZE) * 4 + 4
                + NF4_CODE_MAP_BYTES + NESTED_CODE_MAP_BYTES)
    raise ValueError(f"quantization {scheme!r}: choose one of {', '.join(SCHEMES)}")


def quantized_bytes(matrices: Iterable[tuple[int, int, int]], scheme: str) -> tuple[float, int]:
    """(codes, constants) in bytes for `(in_features, out_features, count)` matrices under `scheme`."""
    per_weight = INT8_BYTES_PER_WEIGHT if scheme == "int8" else NF4_BYTES_PER_WEIGHT
    codes, constants = 0.0, 0
    for fan_in, fan_out, count in matrices:
        codes += fan_in * fan_out * per_weight * count
        constants += quant_constants_bytes(fan_in, fan_out, scheme) * count
    return codes, constants
