"""`tui-tuner publish RUN --repo ORG/NAME`: a model card and the weights, uploaded to the Hugging Face Hub.

    tui-tuner publish quickstart --repo alice/garden-bot-lora                 # the adapter (default)
    tui-tuner publish quickstart --repo alice/garden-bot --merged --private   # adapter merged into the base
    tui-tuner publish quickstart --repo alice/garden-bot-gguf --gguf q4_k_m q8_0
    tui-tuner publish quickstart --repo alice/garden-bot-lora --dry-run       # write runs/<run>/publish/ only

The folder (README.md model card, loss_curve.png, weights) is written first, in the run
directory (or --out DIR), then uploaded as it is with huggingface_hub's login (`hf auth login`
or HF_TOKEN); the token is never printed or written. See docs/publish.md.
"""

from __future__ import annotations

import argparse
import sys

from tui_tuner.commands.options import add_source_options

EXIT_BAD_INPUT = 2


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("publish", help="write a model card and upload the adapter, merged model or GGUF to the hub")
    add_source_options(p)
    p.add_argument("--repo", required=True, metavar="ORG/NAME", help="hub model repository, e.g. alice/garden-bot")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--adapter", dest="kind", action="store_const", const="adapter",
                      help="the LoRA adapter (a full run: its weights) with the tokenizer (default)")
    kind.add_argument("--merged", dest="kind", action="store_const", const="merged",
                      help="the adapter merged into the base: 16-bit safetensors")
    kind.add_argument("--gguf", nargs="+", metavar="QUANT",
                      help="GGUF file(s) + Ollama Modelfiles: f16, bf16, q8_0, q6_k, q5_k_m, q4_k_m")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--dry-run", action="store_true", help="write the folder that would be uploaded; upload nothing")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="where to write the folder (default: publish/ in the run directory)")
    p.add_argument("--llama-cpp", default=None, metavar="DIR", help="--gguf: llama.cpp checkout with convert_hf_to_gguf.py")
    p.add_argument("--no-verify", action="store_true", help="--gguf: skip the llama.cpp check of the files")
    p.set_defaults(handler=run_publish, kind=None)


def run_publish(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tui_tuner.export.publish import PublishError, build_publish_folder, check_repo_id, upload
    from tui_tuner.inference.chat_model import SourceError, resolve_source

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    kind = "gguf" if args.gguf else (args.kind or "adapter")
    try:
        check_repo_id(args.repo)
        quants = None
        if kind == "gguf":
            from tui_tuner.export.exporters import parse_quants

            quants = parse_quants([q for item in args.gguf for q in item.split(",")])
        source = resolve_source(args.target, runs_dir=args.runs_dir, checkpoint=args.checkpoint)
    except (PublishError, SourceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for note in source.notes:
        log(f"note: {note}")
    from tui_tuner.export.exporters import GGUFVerificationFailed
    from tui_tuner.export.llama_cpp import ConverterUnavailable

    try:
        folder = build_publish_folder(source, Path(args.out) if args.out else None, repo_id=args.repo, kind=kind,
                                      quants=quants, llama_cpp=args.llama_cpp, verify=not args.no_verify, log=log)
    except (PublishError, SourceError, ConverterUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except GGUFVerificationFailed as exc:
        print(f"error: not published: {exc}", file=sys.stderr)
        return 1
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"error: could not write the folder to publish: {exc}", file=sys.stderr)
        return 1
    for note in folder.notes:
        log(f"note: {note}")
    print(folder.path)
    for name in folder.files:
        print(folder.path / name)
    if args.dry_run:
        log(f"dry run: nothing uploaded. {folder.path} is exactly what `tui-tuner publish` would upload to "
            f"{args.repo}.")
        return 0
    try:
        url = upload(folder.path, args.repo, private=args.private, log=log)
    except PublishError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    log(f"published: {url}")
    print(url)
    return 0
