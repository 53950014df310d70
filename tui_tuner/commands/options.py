"""Options and helpers several subcommands share, so command modules never import each other.

    --set KEY=VALUE            config, data, train, sweep, check
    RUN|PATH --checkpoint      chat, eval, export (and loading what they name)
    generation flags           chat (sampling settings and their checks)

Nothing heavy at import time: `tui-tuner --help` loads this.
"""

from __future__ import annotations

import argparse
import sys


def add_set_option(parser: argparse.ArgumentParser) -> None:
    """The `--set KEY=VALUE` override shared by every command that takes a config."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set training.learning_rate=1e-4 (repeatable)")


def add_generation_options(p: argparse.ArgumentParser) -> None:
    """Sampling options shared by chat and eval."""
    g = p.add_argument_group("generation")
    g.add_argument("--temperature", type=float, default=0.7, help="0 = greedy (default 0.7)")
    g.add_argument("--top-p", type=float, default=0.9, help="nucleus sampling mass (default 0.9)")
    g.add_argument("--max-new-tokens", type=int, default=256, help="longest answer in tokens (default 256)")
    g.add_argument("--repetition-penalty", type=float, default=1.1, help="above 1 discourages repeats (default 1.1)")
    g.add_argument("--system", default=None, help="system prompt for the conversation")
    g.add_argument("--seed", type=int, default=None, help="sampling seed, for repeatable answers")
    add_engine_option(g)


def add_engine_option(p) -> None:
    """`--engine`: which library loads and runs the model (chat and eval)."""
    p.add_argument("--engine", choices=("auto", "transformers", "mlx"), default="auto",
                   help="what runs the model: auto = MLX for runs trained with MLX where it imports, "
                        "else transformers")


def add_source_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="RUN|PATH", help="run name or prefix, run directory, checkpoint folder, "
                                                      "PEFT adapter folder or model folder")
    p.add_argument("--checkpoint", type=int, default=None, metavar="N", help="use checkpoints/checkpoint-N of the run")
    p.add_argument("--runs-dir", default="runs", help="folder holding the runs (default: ./runs)")


def settings_from(args: argparse.Namespace):
    from tui_tuner.inference.chat_model import GenerationSettings

    return GenerationSettings(temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens,
                              repetition_penalty=args.repetition_penalty, system_prompt=args.system, seed=args.seed)


def settings_problem(args: argparse.Namespace) -> str | None:
    if args.temperature < 0:
        return "--temperature must be 0 (greedy) or more"
    if not 0 < args.top_p <= 1:
        return "--top-p must be above 0 and at most 1"
    if args.max_new_tokens < 1:
        return "--max-new-tokens must be at least 1"
    if args.repetition_penalty <= 0:
        return "--repetition-penalty must be above 0 (1 = off)"
    return None


def load_for_command(args: argparse.Namespace, *, need_adapter: bool = False):
    """Resolve and load the target; prints the problem and returns None on bad input."""
    from tui_tuner.inference.chat_model import SourceError, fetch_base_model, load_chat_model, resolve_source

    try:
        source = resolve_source(args.target, runs_dir=args.runs_dir, checkpoint=args.checkpoint)
    except SourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    if need_adapter and source.adapter_dir is None:
        print(f"error: {source.label} is a full model with no adapter, so there is no base model to compare "
              "with; drop --compare/--compare-base or give a run, checkpoint or adapter.", file=sys.stderr)
        return None
    from tui_tuner.commands.run_progress import DownloadLines

    lines = DownloadLines()
    try:
        fetch_base_model(source, progress=lines, note=lines.note)
    except SourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    print(f"loading {source.label} ...", file=sys.stderr)
    try:
        # this command is a process of its own
        chat = load_chat_model(source, own_process=True, engine=getattr(args, "engine", "auto"))
    except (OSError, SourceError, ValueError) as exc:
        print(f"error: cannot load {source.label}: {exc}", file=sys.stderr)
        return None
    for note in chat.notes:
        print(f"note: {note}", file=sys.stderr)
    return chat


def exit_status(state: str) -> int:
    """0 for finished or stopped on request, 1 for failed or crashed."""
    return 0 if state in ("finished", "stopped") else 1
