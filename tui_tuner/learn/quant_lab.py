"""The quantization lab: one real weight matrix through bitsandbytes' own quantizers.

A course says "NF4 suits normally distributed weights" and "4-bit costs a little
accuracy". This lab loads ONE tensor of a real checkpoint (safetensors, lazily),
quantizes it with `bitsandbytes.functional` exactly as QLoRA / LLM.int8() do, and
dequantizes it again, then reports for each format: bytes before and after, bits per
parameter including the constants (absmax, double-quant state, lookup tables), mean /
max absolute error, signal-to-noise ratio, and which format lost least. It also gives
two histograms of the weights with the 16 NF4 and FP4 levels marked. Where `mlx` imports, MLX's
affine 4-bit (what QLoRA uses on the MLX backend) is measured beside them with MLX's own quantizer.

    tui-tuner learn quant tui-tuner/demo-tiny-llama --tensor model.layers.0.self_attn.q_proj.weight

bitsandbytes 0.50 runs all of this on CPU (its CPU library or its pure-torch default
kernels), so no GPU is needed.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any

BLOCKSIZE_4BIT = 64
"""QLoRA's block size: one absmax constant per 64 weights."""
BLOCKSIZE_INT8_DYNAMIC = 256
"""Block size of bitsandbytes' 8-bit dynamic map as used for double quantization's constants."""
NESTED_BLOCKSIZE = 256
"""bitsandbytes quantizes the 4-bit absmax constants in blocks of 256 (`compress_statistics=True`)."""
HISTOGRAM_BINS = 48


class QuantLabUnavailable(RuntimeError):
    """bitsandbytes is missing or broken on this machine; the message says how to install it."""


@dataclass(frozen=True)
class QuantFormat:
    key: str
    label: str
    short: str
    bits: int
    bnb_calls: str
    explanation: str


FORMATS: tuple[QuantFormat, ...] = (
    QuantFormat(
        "int8-rowwise", "INT8 absmax (per row)", "INT8 row", 8,
        "int8_vectorwise_quant / int8_vectorwise_dequant",
        "LLM.int8()'s weight format (load_in_8bit): each output row is scaled by its largest absolute "
        "value to the integers -127..127, with one FP32 scale per row. Evenly spaced levels waste "
        "resolution when a few large weights stretch the row's range."),
    QuantFormat(
        "int8-blockwise", f"INT8 dynamic (block {BLOCKSIZE_INT8_DYNAMIC})", "INT8 dyn b256", 8,
        "quantize_blockwise / dequantize_blockwise",
        "bitsandbytes' 8-bit dynamic data type, used for 8-bit optimizer states and for the constants "
        "of double quantization: blocks of 256 values, each scaled by its absmax, mapped to 256 levels "
        "that are dense near zero and sparse near the ends."),
    QuantFormat(
        "fp4", f"FP4 (block {BLOCKSIZE_4BIT})", "FP4 b64", 4,
        "quantize_4bit(quant_type='fp4') / dequantize_4bit",
        "A tiny float (1 sign, 2 exponent, 1 mantissa bit) scaled per block of 64 by the block's absmax. "
        "Its 15 distinct levels bunch up near zero and leave wide gaps between 0.5 and 1, where a "
        "bell-shaped block still has weights."),
    QuantFormat(
        "fp4-dq", "FP4 + double quant", "FP4 b64 +DQ", 4,
        "quantize_4bit(quant_type='fp4', compress_statistics=True)",
        "FP4 whose per-block FP32 absmax constants are themselves quantized to 8 bits in blocks of 256. "
        "It saves about 0.37 bits per parameter and adds almost no error."),
    QuantFormat(
        "nf4", f"NF4 (block {BLOCKSIZE_4BIT})", "NF4 b64", 4,
        "quantize_4bit(quant_type='nf4') / dequantize_4bit",
        "NormalFloat4 (QLoRA): the 16 levels are quantiles of a normal distribution, so each level "
        "covers about the same share of normally distributed weights. On a bell-shaped tensor it "
        "loses less than FP4 at the same size."),
    QuantFormat(
        "nf4-dq", "NF4 + double quant", "NF4 b64 +DQ", 4,
        "quantize_4bit(quant_type='nf4', compress_statistics=True)",
        "QLoRA's default: NF4 with the absmax constants quantized to 8 bits (blocks of 256, plus one "
        "FP32 offset). About 4.13 bits per parameter instead of 4.5, at an error close to plain NF4."),
    QuantFormat(
        "mlx-affine", "MLX affine 4-bit (group 64)", "MLX aff g64", 4,
        "mlx.core.quantize(mode='affine') / mlx.core.dequantize",
        "What QLoRA trains on with the MLX backend (Apple Silicon): per group of 64 weights, 16 evenly "
        "spaced levels starting at the group's largest-magnitude weight and spanning its range (spaced so "
        "that zero is a level), stored as a scale and a bias in the weight's dtype: 4.5 bits per parameter "
        "for 16-bit weights. The grid follows each group's own range, lopsided or not, but does not crowd "
        "levels near zero as NF4 does. Shown where mlx imports; MLX leaves rows whose length is not a "
        "multiple of 64 unquantized, so this lab does too."),
)
FORMAT_KEYS = tuple(f.key for f in FORMATS)
MLX_GROUP = 64

EXPLANATIONS = {
    "lab": ("One weight matrix of the model, quantized and dequantized again with bitsandbytes' own "
            "functions. The error is what the model would compute with instead of the original weight."),
    "histogram": ("Raw weights, with the 4-bit levels scaled by the whole tensor's absmax: this is where "
                  "the levels fall in the block holding the largest weight. Every other block of 64 gets "
                  "a narrower copy, scaled by its own absmax."),
    "block_histogram": ("Each weight divided by its own block's absmax, which is exactly what the 4-bit "
                        "quantizer sees: values in [-1, 1] and the 16 levels at fixed places. Notice NF4's "
                        "levels follow the bell shape while FP4's crowd near zero."),
    "errors": ("Bits per parameter count everything stored for this tensor: the codes, one absmax per "
               "block (or per row) and, with double quant, the quantized absmax plus its own constants "
               "and lookup tables. SNR is the weight's energy over the error's energy; higher is better, "
               "each 6 dB is about one bit."),
    "constants": ("The constants explain why 4-bit is not 4.00 bits: an FP32 absmax per 64 weights adds "
                  "32/64 = 0.5 bit; double quant stores it in 8 bits (0.125 bit) plus a little."),
}


@dataclass
class StorageBytes:
    """Bytes one quantized tensor occupies, split by what they hold."""

    codes: int
    constants: int          # absmax (per block or row), nested absmax, offset
    tables: int             # lookup tables (code maps) stored with the tensor's quant state

    @property
    def total(self) -> int:
        return self.codes + self.constants + self.tables


@dataclass
class FormatResult:
    """One format's cost and error on the tensor."""

    key: str
    label: str
    short: str
    bnb_calls: str
    bytes_codes: int
    bytes_constants: int
    bytes_tables: int
    bytes_total: int
    bits_per_param: float            # all bytes, constants and tables included
    bits_per_param_codes_and_constants: float   # without the fixed-size lookup tables
    compression: float               # bytes before / bytes after
    mean_abs_error: float
    max_abs_error: float
    rmse: float
    snr_db: float | None             # None: the error is exactly zero
    explanation: str


@dataclass
class Histogram:
    """Counts per bin; `levels` are the NF4 / FP4 code values in the same units as `edges`."""

    edges: list[float]
    counts: list[int]
    scale: str              # "tensor-absmax" or "block-absmax"
    nf4_levels: list[float]
    fp4_levels: list[float]
    explanation: str


@dataclass
class QuantLabReport:
    """Everything the lab shows for one tensor (as_dict() is the --json output)."""

    model: str
    tensor: str
    shape: list[int]
    dtype: str
    numel: int
    bytes_before: int
    bits_before: int
    stats: dict[str, float]
    formats: list[FormatResult]
    histogram: Histogram
    block_histogram: Histogram
    least_error: str
    least_error_4bit: str
    verdict: str
    explanations: dict[str, str] = field(default_factory=lambda: dict(EXPLANATIONS))

    def format(self, key: str) -> FormatResult:
        return next(f for f in self.formats if f.key == key)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------- bitsandbytes


def _bnb_functional():
    """bitsandbytes.functional, without its unrelated warning about optional CPU matmul kernels."""
    cpu_ops_logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    previous = cpu_ops_logger.level
    cpu_ops_logger.setLevel(logging.ERROR)
    try:
        import bitsandbytes.functional as F
    except ImportError as exc:
        raise QuantLabUnavailable(f"the quantization lab runs bitsandbytes' own quantizers, which do not import "
                                  f"here ({exc}). Install them: pip install 'bitsandbytes>=0.49'.") from None
    finally:
        cpu_ops_logger.setLevel(previous)
    return F


def nf4_levels() -> list[float]:
    """The 16 NF4 code values in [-1, 1] (bitsandbytes' own table), sorted."""
    return sorted(float(v) for v in _bnb_functional().get_4bit_type("nf4", device="cpu"))


def fp4_levels() -> list[float]:
    """The FP4 code values in [-1, 1] (bitsandbytes' own table), sorted; +0 and -0 both appear."""
    return sorted(float(v) for v in _bnb_functional().get_4bit_type("fp4", device="cpu"))


def _nbytes(t) -> int:
    return 0 if t is None else int(t.numel() * t.element_size())


def _state_bytes(codes, state) -> StorageBytes:
    """Bytes held by a bitsandbytes QuantState (and its nested state) plus the packed codes."""
    constants = _nbytes(state.absmax)
    tables = _nbytes(state.code)
    if state.nested:
        constants += _nbytes(state.state2.absmax) + _nbytes(state.offset.reshape(1))
        tables += _nbytes(state.state2.code)
    return StorageBytes(codes=_nbytes(codes), constants=constants, tables=tables)


def roundtrip(W, key: str):
    """Quantize `W` with bitsandbytes in format `key` and dequantize it: (W_hat float32, StorageBytes, absmax).

    `absmax` is the per-block (or per-row) scale bitsandbytes chose, dequantized when nested.
    """
    import torch

    F = _bnb_functional()
    if W.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        W = W.float()
    if key == "int8-rowwise":
        # Linear8bitLt / Int8Params quantize the fp16 copy of the weight row by row.
        rows = W.reshape(-1, W.shape[-1]) if W.dim() >= 2 else W.reshape(1, -1)
        codes, row_stats, _ = F.int8_vectorwise_quant(rows.to(torch.float16).contiguous())
        restored = F.int8_vectorwise_dequant(codes, row_stats).float().reshape(W.shape)
        return restored, StorageBytes(_nbytes(codes), _nbytes(row_stats), 0), row_stats.float()
    if key == "int8-blockwise":
        codes, state = F.quantize_blockwise(W.contiguous(), blocksize=BLOCKSIZE_INT8_DYNAMIC)
        restored = F.dequantize_blockwise(codes, state).float()
        return restored, _state_bytes(codes, state), state.absmax.float()
    if key in ("fp4", "fp4-dq", "nf4", "nf4-dq"):
        quant_type, nested = key[:3], key.endswith("-dq")
        # bitsandbytes numbers 4-bit blocks over the flattened tensor. Its native CPU dequantize
        # kernel (0.50) instead restarts blocks at every row, which misreads matrices whose row
        # length is not a multiple of 64 (e.g. 128x352). Quantizing the same values as one row
        # gives identical codes and constants and a correct round trip on every backend.
        flat = W.contiguous().reshape(1, -1)
        codes, state = F.quantize_4bit(flat, blocksize=BLOCKSIZE_4BIT, quant_type=quant_type,
                                       compress_statistics=nested)
        restored = F.dequantize_4bit(codes, state).float().reshape(W.shape)
        if nested:
            absmax = F.dequantize_blockwise(state.absmax, state.state2).float() + state.offset
        else:
            absmax = state.absmax.float()
        return restored, _state_bytes(codes, state), absmax
    if key == "mlx-affine":
        return _mlx_roundtrip(W)
    raise ValueError(f"unknown format {key!r}; one of {', '.join(FORMAT_KEYS)}")


def mlx_available(W) -> bool:
    """Whether MLX's affine format can be measured on W here: mlx imports and rows split into groups of 64."""
    import importlib.util

    if W.dim() < 1 or W.shape[-1] % MLX_GROUP or importlib.util.find_spec("mlx") is None:
        return False
    try:
        import mlx.core  # noqa: F401
    except Exception:  # a wheel for another platform
        return False
    return True


def _mlx_roundtrip(W):
    """MLX's own affine 4-bit quantize + dequantize, in W's dtype (its scales and biases take that dtype)."""
    import mlx.core as mx
    import numpy as np
    import torch

    dtype = {torch.bfloat16: mx.bfloat16, torch.float16: mx.float16}.get(W.dtype, mx.float32)
    rows = mx.array(W.float().reshape(-1, W.shape[-1]).numpy()).astype(dtype)
    codes, scales, biases = mx.quantize(rows, group_size=MLX_GROUP, bits=4, mode="affine")
    restored = mx.dequantize(codes, scales, biases, group_size=MLX_GROUP, bits=4, mode="affine")
    restored = torch.from_numpy(np.array(restored.astype(mx.float32))).reshape(W.shape)
    storage = StorageBytes(codes=codes.nbytes, constants=scales.nbytes + biases.nbytes, tables=0)
    return restored, storage, None


# ---------------------------------------------------------------------------- measuring


def error_stats(W, W_hat) -> dict[str, float | None]:
    """Mean / max absolute error, RMSE and SNR (dB) of W_hat against W.

    Differences are taken in the weights' own float32 (exact to ~1e-7 relative, far below any
    quantization error) and summed in float64, chunk by chunk, so a large embedding needs no
    float64 copy.
    """
    import torch

    a = W.reshape(-1)
    b = W_hat.reshape(-1)
    n = a.numel()
    abs_sum = sq_err = sq_sig = 0.0
    max_abs = 0.0
    step = 1 << 22
    for start in range(0, n, step):
        x = a[start:start + step].float()
        err = (b[start:start + step].float() - x).abs_()
        abs_sum += float(torch.sum(err, dtype=torch.float64))
        max_abs = max(max_abs, float(err.max()))
        sq_err += float(torch.sum(err.square_(), dtype=torch.float64))
        sq_sig += float(torch.sum(x.square(), dtype=torch.float64))
    snr = None if sq_err == 0 or sq_sig == 0 else 10 * math.log10(sq_sig / sq_err)
    return {"mean_abs_error": abs_sum / n, "max_abs_error": max_abs, "rmse": math.sqrt(sq_err / n),
            "snr_db": snr}


def histogram(values, lo: float, hi: float, bins: int) -> tuple[list[float], list[int]]:
    """(edges, counts) of `values` over [lo, hi] in `bins` equal bins."""
    import torch

    if hi <= lo:
        hi = lo + 1e-12
    counts = torch.histc(values.reshape(-1).float(), bins=bins, min=lo, max=hi)
    edges = [lo + (hi - lo) * i / bins for i in range(bins + 1)]
    return edges, [int(c) for c in counts.tolist()]


def _block_normalized(W, absmax, blocksize: int):
    """Each value divided by its block's absmax, as the 4-bit quantizer sees it (values in [-1, 1])."""
    import torch

    flat = W.reshape(-1).float()
    n = flat.numel()
    scale = absmax.float().repeat_interleave(blocksize)[:n]
    return flat / torch.where(scale > 0, scale, torch.ones_like(scale))


def analyze_tensor(W, *, name: str = "tensor", model: str = "", dtype: str | None = None,
                   bins: int = HISTOGRAM_BINS, formats: tuple[str, ...] = FORMAT_KEYS) -> QuantLabReport:
    """Quantize W in every format and measure it: the whole lab for one tensor."""
    import torch

    W_ref = W if W.dtype in (torch.float32, torch.float64) else W.float()
    numel = W.numel()
    bytes_before = numel * W.element_size()
    results: list[FormatResult] = []
    block_absmax = None
    for spec in FORMATS:
        if spec.key not in formats or (spec.key == "mlx-affine" and not mlx_available(W)):
            continue
        restored, storage, absmax = roundtrip(W, spec.key)
        if spec.key == "nf4":
            block_absmax = absmax
        err = error_stats(W_ref, restored)
        results.append(FormatResult(
            key=spec.key, label=spec.label, short=spec.short, bnb_calls=spec.bnb_calls,
            bytes_codes=storage.codes, bytes_constants=storage.constants, bytes_tables=storage.tables,
            bytes_total=storage.total, bits_per_param=storage.total * 8 / numel,
            bits_per_param_codes_and_constants=(storage.codes + storage.constants) * 8 / numel,
            compression=bytes_before / storage.total,
            mean_abs_error=err["mean_abs_error"], max_abs_error=err["max_abs_error"], rmse=err["rmse"],
            snr_db=err["snr_db"], explanation=spec.explanation))
    if block_absmax is None:
        block_absmax = _roundtrip_absmax(W)

    flat = W_ref.reshape(-1)
    tensor_absmax = float(flat.abs().max()) if numel else 0.0
    nf4, fp4 = nf4_levels(), fp4_levels()
    edges, counts = histogram(flat, -tensor_absmax, tensor_absmax, bins)
    raw_hist = Histogram(edges, counts, "tensor-absmax", [v * tensor_absmax for v in nf4],
                         [v * tensor_absmax for v in fp4], EXPLANATIONS["histogram"])
    normalized = _block_normalized(W_ref, block_absmax, BLOCKSIZE_4BIT)
    b_edges, b_counts = histogram(normalized, -1.0, 1.0, bins)
    block_hist = Histogram(b_edges, b_counts, "block-absmax", nf4, fp4, EXPLANATIONS["block_histogram"])

    stats = {
        "mean": float(flat.mean()), "std": float(flat.std()) if numel > 1 else 0.0,
        "absmax": tensor_absmax, "kurtosis": _excess_kurtosis(flat),
    }
    least = min(results, key=lambda r: r.mean_abs_error)
    four_bit = [r for r in results if r.key in ("fp4", "fp4-dq", "nf4", "nf4-dq")]
    least_4 = min(four_bit, key=lambda r: r.mean_abs_error) if four_bit else least
    return QuantLabReport(
        model=model, tensor=name, shape=list(W.shape), dtype=dtype or str(W.dtype).removeprefix("torch."),
        numel=numel, bytes_before=bytes_before, bits_before=W.element_size() * 8, stats=stats,
        formats=results, histogram=raw_hist, block_histogram=block_hist,
        least_error=least.key, least_error_4bit=least_4.key, verdict=_verdict(results, least, least_4, stats))


def _roundtrip_absmax(W):
    return roundtrip(W, "nf4")[2]


def _excess_kurtosis(flat) -> float:
    """0 for a normal distribution; large when a few outliers stretch the range."""
    import torch

    n = flat.numel()
    if n < 2:
        return 0.0
    x = flat.float()
    centred = x - float(torch.sum(x, dtype=torch.float64)) / n
    squared = centred.square_()
    var = float(torch.sum(squared, dtype=torch.float64)) / n
    if var == 0:
        return 0.0
    return float(torch.sum(squared.square_(), dtype=torch.float64)) / n / (var * var) - 3.0


def _verdict(results: list[FormatResult], least: FormatResult, least_4: FormatResult, stats: dict) -> str:
    by_key = {r.key: r for r in results}
    parts = [f"{least.label} lost least on this tensor (mean error {least.mean_abs_error:.3g})."]
    nf4, fp4 = by_key.get("nf4"), by_key.get("fp4")
    if nf4 and fp4 and fp4.mean_abs_error > 0:
        ratio = nf4.mean_abs_error / fp4.mean_abs_error
        better = "below" if ratio < 1 else "above"
        parts.append(f"Among 4-bit formats {least_4.label} did best; NF4's error is {abs(1 - ratio):.0%} "
                     f"{better} FP4's at the same {nf4.bits_per_param:.2f} bits per parameter.")
    mlx = by_key.get("mlx-affine")
    if nf4 and mlx and nf4.mean_abs_error > 0:
        parts.append(f"MLX's affine 4-bit (QLoRA on a Mac) errs {_pct(mlx.mean_abs_error, nf4.mean_abs_error)} "
                     f"against NF4, at {mlx.bits_per_param:.2f} bits per parameter instead of "
                     f"{nf4.bits_per_param:.2f}.")
    dq = by_key.get("nf4-dq")
    if nf4 and dq:
        saved = nf4.bits_per_param_codes_and_constants - dq.bits_per_param_codes_and_constants
        parts.append(f"Double quant saves {saved:.2f} bits per parameter of constants and changes NF4's "
                     f"error by {_pct(dq.mean_abs_error, nf4.mean_abs_error)}.")
        if dq.bits_per_param > nf4.bits_per_param:
            parts.append(f"On a tensor this small its {dq.bytes_tables - nf4.bytes_tables} bytes of extra "
                         "lookup table cost more than that; on a 4096x4096 matrix they are negligible.")
    kurt = stats.get("kurtosis", 0.0)
    if kurt > 3:
        parts.append(f"This tensor has heavy tails (excess kurtosis {kurt:.1f}): outliers stretch each block's "
                     "absmax, so most weights land on few levels.")
    return " ".join(parts)


def _pct(new: float, old: float) -> str:
    if old == 0:
        return "0%"
    change = (new - old) / old
    return f"{change:+.1%}"


# ---------------------------------------------------------------------------- from a model


def run_quant_lab(model_or_run: str, tensor: str | None = None, *, bins: int = HISTOGRAM_BINS,
                  runs_dir: str = "runs") -> QuantLabReport:
    """Load one tensor of a model (or a run's base model) lazily and run the lab on it.

    Raises `ModelNotFound` or `KeyError` (unknown tensor) / `ValueError` (not a float tensor)
    with a message meant for the user.
    """
    from tui_tuner.learn.weights import default_tensor, list_tensors, load_tensor, resolve_model

    ref = resolve_model(model_or_run, runs_dir)
    folder = ref.weights_dir
    infos = list_tensors(folder)
    if tensor is None:
        info = default_tensor(infos)
    else:
        info = next((t for t in infos if t.name == tensor), None)
        if info is None:
            load_tensor(folder, tensor)  # raises KeyError with did-you-mean
            raise KeyError(tensor)
    if not info.is_float:
        raise ValueError(f"{info.name} holds {info.dtype} values, not floating-point weights; pick a weight "
                         "matrix (e.g. one ending in _proj.weight).")
    if info.numel == 0:
        raise ValueError(f"{info.name} is empty.")
    W = load_tensor(folder, info.name)
    return analyze_tensor(W, name=info.name, model=ref.label, dtype=info.dtype, bins=bins)
