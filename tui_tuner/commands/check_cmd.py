"""`tui-tuner check [MODEL|CONFIG]`: this machine's GPUs and whether a model fits, and how.

    tui-tuner check                                   # hardware + fit of the quickstart and presets
    tui-tuner check TinyLlama/TinyLlama-1.1B-Chat-v1.0 --vram 16
    tui-tuner check meta-llama/Llama-3.1-8B --gpu 4090 --method qlora --seq-len 2048
    tui-tuner check configs/quickstart.yaml --json

Imports no torch or transformers: it reads config.json numbers (local, cache, catalog) and
does arithmetic, so it answers in well under a second.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

EXIT_BAD_INPUT = 2


def register(sub: argparse._SubParsersAction) -> None:
    from tui_tuner.commands.options import add_set_option

    p = sub.add_parser("check", help="hardware report and whether a model fits this GPU (full / LoRA / QLoRA)",
                       description="Report the GPUs and estimate the memory fine-tuning needs, term by term.")
    p.add_argument("target", nargs="?", metavar="MODEL|CONFIG",
                   help="hub id, local model folder, or a run config (.yaml); none = quickstart and presets")
    p.add_argument("--method", choices=("full", "lora", "qlora"), help="estimate one method (default: all three)")
    p.add_argument("--seq-len", type=int, metavar="N", help="max_seq_length per example (default 1024)")
    p.add_argument("--batch", type=int, metavar="N", help="per-device batch size (default 2)")
    p.add_argument("--r", type=int, metavar="N", dest="lora_r", help="LoRA rank (default 16)")
    p.add_argument("--target-modules", metavar="LIST",
                   help="LoRA modules, comma-separated (e.g. q_proj,v_proj) or all-linear")
    p.add_argument("--optimizer", choices=("adamw_torch", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit",
                                           "adafactor", "sgd"))
    p.add_argument("--no-gradient-checkpointing", action="store_true", help="estimate without checkpointing")
    p.add_argument("--backend", choices=("auto", "transformers", "unsloth", "mlx", "both"), default="auto",
                   help="auto: mlx on an Apple Silicon Mac; both when a GPU could run Unsloth, else transformers")
    p.add_argument("--vram", type=float, metavar="GB", help="check against a GPU with this much memory")
    p.add_argument("--gpu", metavar="NAME", help="check against a common GPU: T4, 3060, 4090, A10G, L4, A100-40, "
                                                 "A100-80, H100")
    p.add_argument("--runs-dir", help="where earlier runs' measured peaks are looked up (default: the config's, "
                                      "else runs)")
    p.add_argument("--list-models", action="store_true", help="list the built-in model catalog and exit")
    p.add_argument("--list-gpus", action="store_true", help="list the common GPUs --gpu knows and exit")
    add_set_option(p)
    p.add_argument("--json", action="store_true", help="print a JSON report")
    p.set_defaults(handler=run_check)


# ---------------------------------------------------------------------------- printing


def _print_hardware(console: Any, hw: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    from tui_tuner.core.units import format_bytes

    if hw.gpus:
        t = Table(title="GPUs", title_justify="left")
        for col in ("#", "name", "memory used / total", "util", "temp", "power", "compute", "processes"):
            t.add_column(col)
        for g in hw.gpus:
            cc = f"{g.compute_capability[0]}.{g.compute_capability[1]}" if g.compute_capability else (g.arch or "?")
            t.add_row(str(g.index), g.name, f"{format_bytes(g.memory_used)} / {format_bytes(g.memory_total)}",
                      f"{g.utilization_pct}%" if g.utilization_pct is not None else "?",
                      f"{g.temperature_c} C" if g.temperature_c is not None else "?",
                      f"{g.power_w:.0f} / {g.power_limit_w:.0f} W" if g.power_w and g.power_limit_w else "?",
                      f"{cc}{' bf16' if g.bf16 else ''}", str(len(g.processes)) if g.processes else "-")
            for s in g.mig_slices:
                t.add_row(f" {g.index}.{s.index}", f"MIG {s.name}", f"{format_bytes(s.memory_used)} / {format_bytes(s.memory_total)}",
                          "", "", "", "", str(len(s.processes)) if s.processes else "-")
        console.print(t)
        _print_gpu_processes(console, hw)
        built = ("ROCm " + hw.torch_hip if hw.torch_hip else "CUDA " + hw.torch_cuda if hw.torch_cuda
                 else "CPU only")
        if any(g.vendor == "nvidia" for g in hw.gpus):
            console.print(f"driver {hw.driver_version}, CUDA {hw.cuda_driver_version}; torch built for {built}")
        else:
            console.print(f"AMD GPU(s) read through AMD SMI; torch built for {built} (ROCm torch trains them through "
                          "its cuda API, on the transformers backend)")
        if hw.torch_problem:
            console.print(f"[red]torch cannot use the GPU:[/] {escape(hw.torch_problem)}")
        from tui_tuner.fit.devices import visibility_note

        note = visibility_note(hw.gpus, hw.cuda_visible_devices)
        if note:
            console.print(f"[yellow]{escape(note)}[/]")
    elif hw.mac is not None:
        _print_mac(console, hw.mac)
    else:
        console.print(f"[yellow]No GPU:[/] {hw.gpu_unavailable_reason}")
    ram = f"{format_bytes(hw.ram_available)} free of {format_bytes(hw.ram_total)}" if hw.ram_total else "?"
    disk = f"{format_bytes(hw.disk_free)} free at {hw.disk_path}" if hw.disk_free is not None else "?"
    console.print(f"CPU {hw.cpu_model}, {hw.cpu_cores_logical} cores; RAM {ram}; disk {disk}")
    pk = hw.packages
    shown = ", ".join(f"{n} {v}" if v else f"{n} [dim]not installed[/]" for n, v in pk.items()
                      if n in ("torch", "transformers", "peft", "trl", "bitsandbytes", "unsloth"))
    console.print(f"Python {hw.python_version}; {shown}")


def _print_mac(console: Any, mac: Any) -> None:
    """The Apple Silicon GPU: chip, unified memory, GPU cores and the Metal working-set limit."""
    from rich.markup import escape

    from tui_tuner.core.units import format_bytes

    free = f", {format_bytes(mac.memory_free_bytes)} free" if mac.memory_free_bytes is not None else ""
    cores = f", {mac.gpu_cores} GPU cores" if mac.gpu_cores else ""
    console.print(f"[bold]{escape(mac.chip)}[/]: {format_bytes(mac.memory_bytes)} unified memory{free}{cores}; "
                  f"Metal working-set limit [bold]{format_bytes(mac.metal_limit_bytes)}[/] "
                  f"({escape(mac.metal_limit_source)})")


def _print_gpu_processes(console: Any, hw: Any) -> None:
    """Who holds memory on each GPU: pid, user, memory, command (host pids outside a container marked)."""
    from rich.markup import escape
    from rich.table import Table

    from tui_tuner.core.units import format_bytes

    rows = [(f"{g.index}" if g.parent_index is None else f"{g.parent_index}.{g.index}", p)
            for whole in hw.gpus for g in [whole, *whole.mig_slices] for p in g.processes]
    if not rows:
        return
    t = Table(title="GPU processes", title_justify="left", show_edge=False)
    for col in ("gpu", "pid", "user", "memory", "command"):
        t.add_column(col, justify="right" if col in ("pid", "memory") else "left")
    for where, p in rows:
        t.add_row(where, str(p.pid), escape(p.user or "?"), format_bytes(p.used_bytes) if p.used_bytes else "?",
                  escape(p.command or p.name)[:80])
    console.print(t)


def _print_target(console: Any, t: Any, report: Any, detailed: bool) -> None:
    from rich.markup import escape
    from rich.table import Table

    from tui_tuner.core.units import format_bytes

    spec = t.spec
    s = t.settings
    head = f"[bold]{escape(t.config)}[/]: " if t.config else ""
    console.print()
    console.print(head + escape(spec.describe()))
    for note in spec.notes:
        console.print(f"  [dim]{escape(note)}[/]")
    tm = s["target_modules"] if isinstance(s["target_modules"], str) else ",".join(s["target_modules"])
    console.print(f"  seq {s['seq_len']}, batch {s['batch_size']}, r {s['lora_r']} on {tm}, "
                  f"{'gradient checkpointing' if s['gradient_checkpointing'] else 'no checkpointing'}, "
                  f"{s['optimizer']}")
    vram = report.vram_bytes
    summary = Table(show_edge=False)
    for col in ("method", "backend", "needs", *(["fits " + report.gpu_label, "max batch", "max seq"] if vram else [])):
        summary.add_column(col, justify="left" if col in ("method", "backend") else "right")
    recs = t.recommendations
    for est in t.estimates:
        row = [est.method, est.backend, format_bytes(est.total_bytes)]
        if vram:
            fit = next((f for f in recs[est.backend].fits if f.method == est.method), None) if est.backend in recs else None
            if fit is not None:
                ok = "[green]yes[/]" if fit.fits else "[red]no[/]"
                row += [f"{ok} ({format_bytes(abs(fit.headroom_bytes))} {'spare' if fit.fits else 'short'})",
                        str(fit.max_batch_size or "-"), f"{fit.max_seq_len:,}" if fit.max_seq_len else "-"]
            else:
                row += ["", "", ""]
        summary.add_row(*row)
    console.print(summary)
    if detailed:
        shown = _breakdown_choice(t)
        b = Table(title=f"Where the memory goes: {shown.method} ({shown.backend})", title_justify="left",
                  show_edge=False)
        b.add_column("term")
        b.add_column("size", justify="right")
        b.add_column("why", overflow="fold")
        for line in shown.lines:
            b.add_row(line.name, format_bytes(line.bytes), escape(line.explanation))
        b.add_row("[bold]total[/]", f"[bold]{format_bytes(shown.total_bytes)}[/]", "")
        console.print(b)
        for note in shown.notes:
            console.print(f"  [yellow]{escape(note)}[/]")
    for backend, rec in recs.items():
        label = f"[bold]{backend}[/]: " if len(recs) > 1 else ""
        colour = "green" if rec.recommended else "red"
        console.print(f"[{colour}]>[/] {label}{escape(rec.reason)}")
    if t.metal:
        colour = "green" if t.metal["fits"] else "red"
        console.print(f"[{colour}]>[/] {escape(t.metal['line'])}")
        if t.metal["advice"]:
            console.print(f"  {escape(t.metal['advice'])}")
    if t.changes:
        console.print(f"[bold]Make it fit[/] in {format_bytes(report.vram_bytes)} ({escape(report.gpu_label)}), "
                      "cheapest first:")
        for c in t.changes:
            colour = "green" if c.fits else "yellow"
            keys = ", ".join(f"{'.'.join(k)}={v}" for k, v in c.settings.items())
            console.print(f"  [{colour}]{format_bytes(c.estimate_bytes):>8}[/] {escape(c.title)} [dim]({escape(keys)}; "
                          f"{escape(c.cost)})[/]")
    for m in t.measured:
        shape = f"batch {m['probe_batch_size']} x {m['probe_seq_len']} tokens" if m["probe_seq_len"] else "its batch"
        console.print(f"  measured on {escape(m['device'])} in run {escape(m['run_name'])} ({shape}): "
                      f"{format_bytes(m['training_peak_bytes'])} peak vs {format_bytes(m['estimate_bytes'])} estimated "
                      f"({m['method']}, {m['backend']}): estimator error {m['error'] * 100:+.0f}% on this machine")


def _breakdown_choice(t: Any) -> Any:
    """The estimate to break down: the recommended method, else the first one."""
    for rec in t.recommendations.values():
        if rec.recommended is not None:
            return rec.recommended.estimate
    return t.estimates[0]


def _list_models(as_json: bool) -> int:
    from tui_tuner.core.units import format_bytes
    from tui_tuner.models.spec import load_catalog, spec_from_config

    rows = []
    for entry in load_catalog():
        spec = spec_from_config(entry, entry["name"], "catalog")
        rows.append({"name": entry["name"], "params": spec.param_count, "aliases": entry.get("aliases", [])})
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['name']:<45} {r['params'] / 1e9:6.2f}B  ({format_bytes(r['params'] * 2)} in 16-bit)")
    return 0


def _list_gpus(as_json: bool) -> int:
    from tui_tuner.core.units import format_bytes
    from tui_tuner.fit.estimate import COMMON_GPUS

    if as_json:
        print(json.dumps([{"name": g.name, "memory_bytes": g.memory_bytes, "aliases": list(g.aliases),
                           "bf16": g.bf16} for g in COMMON_GPUS], indent=2))
    else:
        for g in COMMON_GPUS:
            print(f"{g.name:<12} {format_bytes(g.memory_bytes):>7}  --gpu {g.aliases[0] if g.aliases else g.name}")
    return 0


def options_from_args(args: argparse.Namespace) -> Any:
    """The `FitOptions` that the command line asks for."""
    from tui_tuner.fit.check import FitOptions

    return FitOptions(
        method=args.method, seq_len=args.seq_len, batch_size=args.batch, lora_r=args.lora_r,
        target_modules=args.target_modules, optimizer=args.optimizer,
        gradient_checkpointing=False if args.no_gradient_checkpointing else None, backend=args.backend,
        vram_gb=args.vram, gpu=args.gpu, runs_dir=args.runs_dir, overrides=list(args.overrides or []),
    )


def run_check(args: argparse.Namespace) -> int:
    if args.list_models:
        return _list_models(args.json)
    if args.list_gpus:
        return _list_gpus(args.json)
    from tui_tuner.fit.check import FitCheckError, check_fit

    try:
        report = check_fit(args.target, options_from_args(args))
    except FitCheckError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return 0
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False)
    _print_hardware(console, report.hardware)
    if report.vram_bytes and report.hypothetical:
        console.print(f"Checking against: [bold]{report.gpu_label}[/]")
    if report.busy_warning:
        console.print(f"[yellow]{report.busy_warning}[/]")
    if report.metal_note:
        console.print(f"[dim]{escape(report.metal_note)}[/]")
    detailed = args.target is not None
    for t in report.targets:
        _print_target(console, t, report, detailed)
    if not report.targets and args.target is None:
        console.print("\nNo run configs found (configs/*.yaml); name a model, e.g. "
                      "`tui-tuner check TinyLlama/TinyLlama-1.1B-Chat-v1.0 --vram 16`.")
    for p in report.problems:
        console.print(f"[yellow]skipped:[/] {p}")
    if report.targets and not report.vram_bytes:
        console.print("\n[dim]No GPU here: pass --vram GB or --gpu NAME (e.g. --gpu 4090) to check a card.[/]")
    return 0
