"""`tui-tuner learn quant|memory|lora`: the learning labs in the terminal.

    tui-tuner learn quant tui-tuner/demo-tiny-llama --list
    tui-tuner learn quant tui-tuner/demo-tiny-llama --tensor model.layers.0.mlp.down_proj.weight
    tui-tuner learn memory meta-llama/Llama-2-7b-hf
    tui-tuner learn lora TinyLlama/TinyLlama-1.1B-Chat-v1.0 --r 16 --alpha 32 --target-modules q_proj,v_proj
"""

from __future__ import annotations

import argparse
import json
import sys

from tui_tuner.core.units import format_bytes


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("learn", help="labs: quantization on real weights, memory by precision, LoRA arithmetic")
    lsub = p.add_subparsers(dest="learn_command", metavar="LAB", required=True)

    quant = lsub.add_parser("quant", help="quantize one real weight matrix with bitsandbytes and compare formats")
    quant.add_argument("model", metavar="MODEL_OR_RUN",
                       help="the demo model id, a local model folder, a run (its base model) or a cached hub id")
    quant.add_argument("--tensor", help="tensor name (default: the first block's q_proj weight); see --list")
    quant.add_argument("--list", action="store_true", help="list the model's tensors and shapes (nothing loaded)")
    quant.add_argument("--bins", type=int, default=48, help="histogram bins (default 48)")
    quant.add_argument("--runs-dir", default="runs", help="where runs are looked up by name (default runs)")
    quant.add_argument("--json", action="store_true", help="print the full report as JSON")
    quant.set_defaults(handler=run_quant)

    memory = lsub.add_parser("memory", help="weight memory in FP32, BF16, INT8 and NF4: rule of thumb vs exact")
    memory.add_argument("model", metavar="MODEL_OR_RUN", help="hub id, local folder, run, or the demo model id")
    memory.add_argument("--runs-dir", default="runs")
    memory.add_argument("--json", action="store_true")
    memory.set_defaults(handler=run_memory)

    lora = lsub.add_parser("lora", help="LoRA shapes, trainable parameters and adapter size")
    lora.add_argument("model", metavar="MODEL_OR_RUN", help="hub id, local folder, run, or the demo model id")
    lora.add_argument("--r", type=int, default=16, help="rank (default 16)")
    lora.add_argument("--alpha", type=float, default=32, help="alpha (default 32)")
    lora.add_argument("--target-modules", default="all-linear",
                      help="all-linear (default) or a comma-separated list, e.g. q_proj,v_proj")
    lora.add_argument("--rslora", action="store_true", help="rank-stabilized scaling alpha/sqrt(r)")
    lora.add_argument("--runs-dir", default="runs")
    lora.add_argument("--json", action="store_true")
    lora.set_defaults(handler=run_lora)


def _fail(message: str) -> int:
    from rich.console import Console
    from rich.markup import escape

    Console(file=sys.stderr, highlight=False, soft_wrap=True).print(f"[red]error[/]: {escape(message)}")
    return 2


def _console():
    from rich.console import Console

    return Console(highlight=False)


# ---------------------------------------------------------------------------- quant


def run_quant(args: argparse.Namespace) -> int:
    from tui_tuner.learn.weights import ModelNotFound, list_tensors, resolve_model

    if args.bins < 4 or args.bins > 400:
        return _fail(f"--bins {args.bins}: use between 4 and 400 bins.")
    try:
        if args.list:
            ref = resolve_model(args.model, args.runs_dir)
            tensors = list_tensors(ref.weights_dir)
            if args.json:
                print(json.dumps({"model": ref.label, "tensors": [t.as_dict() for t in tensors]}, indent=2))
            else:
                _print_tensor_list(ref.label, tensors)
            return 0
        from tui_tuner.learn.quant_lab import run_quant_lab

        report = run_quant_lab(args.model, args.tensor, bins=args.bins, runs_dir=args.runs_dir)
    except (ModelNotFound, ValueError, RuntimeError) as exc:  # RuntimeError: QuantLabUnavailable
        return _fail(str(exc))
    except KeyError as exc:
        return _fail(exc.args[0] if exc.args else str(exc))
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print_quant_report(report)
    return 0


def _print_tensor_list(label: str, tensors) -> None:
    from rich.table import Table

    table = Table(title=f"{label}: {len(tensors)} tensors", title_justify="left")
    table.add_column("tensor")
    table.add_column("shape", justify="right")
    table.add_column("dtype")
    table.add_column("params", justify="right")
    table.add_column("under QLoRA")
    for t in tensors:
        table.add_row(t.name, " x ".join(map(str, t.shape)), t.dtype, f"{t.numel:,}",
                      "4-bit" if t.qlora_quantized else "[dim]16-bit[/]")
    quantized = sum(t.numel for t in tensors if t.qlora_quantized)
    total = sum(t.numel for t in tensors) or 1
    table.caption = (f"QLoRA quantizes the linear weights inside the blocks: {quantized:,} of {total:,} "
                     f"parameters ({quantized / total:.1%}); embeddings, LM head and norms stay 16-bit")
    _console().print(table)


def print_quant_report(report) -> None:
    """The quantization lab in the terminal: error table, both histograms, the verdict."""
    from rich.markup import escape
    from rich.table import Table

    from tui_tuner.learn.histogram_text import histogram_lines

    console = _console()
    shape = " x ".join(map(str, report.shape))
    console.print(f"[bold]{escape(report.tensor)}[/]  {shape} {report.dtype}, {report.numel:,} weights, "
                  f"{format_bytes(report.bytes_before)} ({report.bits_before} bits each)  — {escape(report.model)}")
    s = report.stats
    console.print(f"mean {s['mean']:.3g}, std {s['std']:.3g}, absmax {s['absmax']:.3g}, "
                  f"excess kurtosis {s['kurtosis']:.2f} (0 = normal)")
    console.print(f"[dim]{report.explanations['lab']}[/]\n")
    table = Table(title="round trip: dequantize(quantize(W)) vs W", title_justify="left")
    for col, justify in (("format", "left"), ("bytes", "right"), ("bits/w", "right"),
                         ("consts", "right"), ("mean|err|", "right"), ("max|err|", "right"), ("SNR dB", "right")):
        table.add_column(col, justify=justify, no_wrap=True)
    for f in report.formats:
        best = " ★" if f.key == report.least_error or f.key == report.least_error_4bit else ""
        constant_bits = (f.bytes_constants + f.bytes_tables) * 8 / report.numel
        snr = "exact" if f.snr_db is None else f"{f.snr_db:.1f}"
        table.add_row(f.short + best, f"{f.bytes_total:,}", f"{f.bits_per_param:.3f}", f"{constant_bits:.3f}",
                      f"{f.mean_abs_error:.3g}", f"{f.max_abs_error:.3g}", snr)
    console.print(table)
    console.print("[dim]bits/w: bits per weight, everything stored included; consts: of which scales and tables.[/]")
    console.print(f"[dim]{report.explanations['errors']}[/]\n")
    for hist, title in ((report.block_histogram, "each weight / its block's absmax (what the 4-bit quantizer sees)"),
                        (report.histogram, "raw weights, levels scaled by the tensor's absmax")):
        console.print(f"[bold]{title}[/]")
        console.print("\n".join(histogram_lines(hist)), markup=False)
        console.print(f"[dim]{hist.explanation}[/]\n")
    console.print(f"[bold]Verdict:[/] {report.verdict}")


# ---------------------------------------------------------------------------- memory


def run_memory(args: argparse.Namespace) -> int:
    from tui_tuner.learn.layout import model_layout
    from tui_tuner.learn.memory import memory_by_precision
    from tui_tuner.learn.weights import ModelNotFound

    try:
        report = memory_by_precision(model_layout(args.model, args.runs_dir))
    except ModelNotFound as exc:
        return _fail(str(exc))
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print_memory_report(report)
    return 0


def print_memory_report(report) -> None:
    from rich.markup import escape
    from rich.table import Table

    console = _console()
    console.print(f"[bold]{escape(report.model)}[/]: {report.params:,} parameters (from {escape(report.source)})")
    table = Table(title=f"weight memory by precision (rule of thumb: {report.nominal_label} x bytes per weight)",
                  title_justify="left")
    for col, justify in (("precision", "left"), ("rule of thumb", "right"), ("real count", "right"),
                         ("exact", "right"), ("bits/param", "right")):
        table.add_column(col, justify=justify, no_wrap=True)
    for row in report.rows:
        table.add_row(row.label, format_bytes(row.rule_of_thumb_bytes), format_bytes(row.real_count_bytes),
                      format_bytes(row.exact_bytes), f"{row.bits_per_param:.2f}")
    console.print(table)
    for line in report.gap_explanation:
        console.print(f"- {escape(line)}")
    console.print(f"[dim]{report.explanations['weights_only']}[/]")
    for note in report.notes:
        console.print(f"[dim]note: {escape(note)}[/]")


# ---------------------------------------------------------------------------- lora


def run_lora(args: argparse.Namespace) -> int:
    from tui_tuner.learn.layout import model_layout
    from tui_tuner.learn.lora_math import lora_report, parse_target_modules
    from tui_tuner.learn.weights import ModelNotFound

    if args.r < 1 or args.r > 4096:
        return _fail(f"--r {args.r}: the rank must be between 1 and 4096 (4 to 64 is usual).")
    if args.alpha <= 0:
        return _fail(f"--alpha {args.alpha:g}: alpha must be positive (commonly r or 2r).")
    targets = parse_target_modules(args.target_modules)
    if not targets:
        return _fail("--target-modules is empty: name modules (e.g. q_proj,v_proj) or use all-linear.")
    try:
        report = lora_report(model_layout(args.model, args.runs_dir), args.r, args.alpha, targets, args.rslora)
    except (ModelNotFound, ValueError) as exc:
        return _fail(str(exc))
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print_lora_report(report)
    return 0


def print_lora_report(report) -> None:
    from rich.markup import escape
    from rich.table import Table

    console = _console()
    targets = report.target_modules if isinstance(report.target_modules, str) else ",".join(report.target_modules)
    rule = "alpha/sqrt(r)" if report.use_rslora else "alpha/r"
    console.print(f"[bold]{escape(report.model)}[/]: LoRA r={report.r}, alpha={report.alpha:g}, "
                  f"targets {escape(targets)}, scaling {rule} = {report.scaling:.3g}")
    table = Table(title="per targeted module", title_justify="left")
    table.add_column("module", no_wrap=True)
    for col in ("n", "W", "A", "B", "each", "total"):
        table.add_column(col, justify="right", no_wrap=True)
    for m in report.modules:
        table.add_row(m.name, str(m.count), f"{m.out_features}x{m.in_features}", f"{m.a_shape[0]}x{m.a_shape[1]}",
                      f"{m.b_shape[0]}x{m.b_shape[1]}", f"{m.params_each:,}", f"{m.params_total:,}")
    table.caption = "W: out x in, A: r x in, B: out x r; n: how many in the model; each / total: trainable"
    console.print(table)
    console.print(f"trainable {report.trainable:,} of {report.base_params:,} base parameters = "
                  f"[bold]{report.percent_of_base:.3f}%[/] (PEFT prints {report.percent_like_peft:.4f}%, "
                  f"counting the adapter in the total); adapter file "
                  f"{format_bytes(report.adapter_bytes['float32'])} in float32, "
                  f"{format_bytes(report.adapter_bytes['bfloat16'])} in bfloat16")
    ranks = Table(title=f"by rank (alpha = {report.alpha:g})", title_justify="left")
    for col in ("r", "trainable", "% of base", "adapter (fp32)", "alpha/r", "alpha/sqrt(r)"):
        ranks.add_column(col, justify="right")
    for row in report.rank_table:
        mark = " ◀" if row.r == report.r else ""
        ranks.add_row(f"{row.r}{mark}", f"{row.trainable:,}", f"{row.percent_of_base:.3f}%",
                      format_bytes(row.adapter_bytes), f"{row.scaling:.3g}", f"{row.rslora_scaling:.3g}")
    console.print(ranks)
    for key in ("shapes", "percent", "scaling", "disk"):
        console.print(f"[dim]- {report.explanations[key]}[/]")
