"""`tui-tuner model pull ID [--revision R]`: download a hub model ahead of time, with size and progress.

    tui-tuner model pull Qwen/Qwen2.5-0.5B-Instruct
    tui-tuner model pull meta-llama/Llama-3.2-1B-Instruct --revision main
    tui-tuner model pull Qwen/Qwen2.5-0.5B-Instruct --dry-run   # what it would download, and the disk it needs

Downloads what `from_pretrained` reads (config, tokenizer, safetensors weights) into the standard
Hugging Face cache, exactly as a run would, so a later run, `chat` or an offline copy of the cache
finds it. An interrupted pull resumes. Exit status 1 when the download fails (gated, missing,
offline, not enough disk), with what to do; 2 for an id that is not `org/name`.
"""

from __future__ import annotations

import argparse
import sys

EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="download hub models ahead of time")
    msub = p.add_subparsers(dest="model_command", metavar="SUBCOMMAND", required=True)
    pull = msub.add_parser("pull", help="download a hub model into the Hugging Face cache (resumes, checks disk)",
                           description="Download a hub model's config, tokenizer and weights into the Hugging Face "
                                       "cache, showing size, progress, rate and ETA.")
    pull.add_argument("model_id", metavar="ID", help="hub model id, e.g. Qwen/Qwen2.5-0.5B-Instruct")
    pull.add_argument("--revision", metavar="R", help="branch, tag or commit (default: main)")
    pull.add_argument("--dry-run", action="store_true",
                      help="list the files and the disk space needed, download nothing")
    pull.set_defaults(handler=run_pull)


def run_pull(args: argparse.Namespace) -> int:
    from tui_tuner.commands.run_progress import DownloadLines
    from tui_tuner.core.units import format_bytes
    from tui_tuner.models.download import (ModelDownloadError, disk_problem, ensure_model, is_hub_model,
                                           plan_download)

    if not is_hub_model(args.model_id):
        print(f"error: {args.model_id!r} is not a hub model id (org/name, e.g. Qwen/Qwen2.5-0.5B-Instruct), or it "
              "is a local path or built-in model, which need no download.", file=sys.stderr)
        return EXIT_BAD_INPUT
    lines = DownloadLines()
    try:
        if args.dry_run:
            plan = plan_download(args.model_id, args.revision)
            for f in plan.files:
                state = ("cached" if f not in plan.missing else
                         f"partial {format_bytes(plan.partial[f.path])}" if f.path in plan.partial else "to download")
                print(f"{format_bytes(f.size):>10}  {f.path}  ({state})")
            print(f"{args.model_id} at {plan.commit[:12]}: {format_bytes(plan.to_fetch_bytes)} to download of "
                  f"{format_bytes(plan.total_bytes)}, into {plan.cache_dir}")
            problem = disk_problem(plan)
            if problem is not None:
                raise problem
            return 0
        folder = ensure_model(args.model_id, args.revision, progress=lines, note=lines.note)
    except ModelDownloadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(f"hint: {exc.hint}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"\ninterrupted: run `tui-tuner model pull {args.model_id}` again to resume.", file=sys.stderr)
        return 130
    print(folder)
    return 0
