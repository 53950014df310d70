"""What the quantization lab costs on a realistic weight matrix, against bitsandbytes' own round trip.

    PYTHONPATH=$PWD python bench/quant_lab.py [--rows 4096] [--cols 4096] [--repeats 3]

Times `analyze_tensor` (six formats, errors in float64, two histograms) on a Gaussian
matrix the size of a 7B model's attention projection, and one bare NF4
quantize + dequantize of the same matrix. Prints the medians and their ratio: the lab does
about six round trips plus measuring, so a ratio far above ~10 means the measuring, not
bitsandbytes, dominates.
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--cols", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch

    from tui_tuner.learn.quant_lab import _bnb_functional, analyze_tensor

    F = _bnb_functional()
    torch.manual_seed(0)
    W = torch.randn(args.rows, args.cols) * 0.02

    def bare() -> None:
        codes, state = F.quantize_4bit(W.reshape(1, -1), blocksize=64, quant_type="nf4")
        F.dequantize_4bit(codes, state)

    def lab() -> None:
        analyze_tensor(W, name="bench")

    bare()  # warm up: kernel registration, lazy imports
    timings = {}
    for name, fn in (("nf4 round trip", bare), ("quant lab", lab)):
        runs = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - start)
        timings[name] = statistics.median(runs)
        print(f"{name:>15}: {timings[name]:.3f} s (median of {args.repeats}) for {W.numel():,} weights")
    print(f"ratio lab / one round trip: {timings['quant lab'] / timings['nf4 round trip']:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
