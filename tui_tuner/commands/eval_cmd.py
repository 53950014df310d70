"""`tui-tuner eval RUN`: held-out loss, perplexity and answers scored against references.

    tui-tuner eval quickstart                              # the run's eval data, else data/heldout.jsonl
    tui-tuner eval quickstart --compare-base               # base vs tuned side by side
    tui-tuner eval quickstart --data qa.jsonl --checkpoint 50 --json

The report is saved as JSON and markdown in `<run>/eval/` (and shown in the TUI).
"""

from __future__ import annotations

import argparse
import json
import sys

from tui_tuner.commands.options import add_engine_option, add_source_options

EXIT_BAD_INPUT = 2


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="held-out loss/perplexity and answers scored against references")
    add_source_options(p)
    p.add_argument("--data", default=None, metavar="FILE", help="evaluation file (default: the run's eval data, "
                                                                "else data/heldout.jsonl)")
    p.add_argument("--compare-base", action="store_true", help="also evaluate the base model (adapter off)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N examples")
    p.add_argument("--max-new-tokens", type=int, default=128, help="longest generated answer (default 128)")
    add_engine_option(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--progress-lines", action="store_true",
                   help="print progress to stderr as one 'progress DONE/TOTAL WHAT' line per step (for the TUI "
                        "and other programs reading it)")
    p.set_defaults(handler=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from tui_tuner.commands.options import load_for_command
    from tui_tuner.inference.evaluate import EVAL_SETTINGS, eval_examples, evaluate
    from tui_tuner.inference.chat_model import SourceError, resolve_source

    if args.limit is not None and args.limit < 1 or args.max_new_tokens < 1:
        print("error: --limit and --max-new-tokens must be at least 1.", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        source = resolve_source(args.target, runs_dir=args.runs_dir, checkpoint=args.checkpoint)
    except SourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if source.config is not None and source.config.objective != "sft":
        return run_objective_eval(args, source)
    try:  # data problems are found before the model is loaded
        examples, lines, label = eval_examples(source, args.data)
    except SourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    chat = load_for_command(args, need_adapter=args.compare_base)
    if chat is None:
        return EXIT_BAD_INPUT

    progress = _progress_printer(args)
    try:
        report = evaluate(chat, examples, lines, label, compare_base=args.compare_base, limit=args.limit,
                          settings=replace(EVAL_SETTINGS, max_new_tokens=args.max_new_tokens), progress=progress)
    except (SourceError, RuntimeError) as exc:
        _end_progress_line(args)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    _end_progress_line(args)
    return _print_report(args, report, chat.source)


def run_objective_eval(args: argparse.Namespace, source) -> int:
    """Preference accuracy (dpo, orpo), desirability margin (kto), mean reward (grpo), reward accuracy (reward)."""
    from dataclasses import replace

    from tui_tuner.commands.chat_cmd import load_for_command
    from tui_tuner.inference.chat_model import SourceError
    from tui_tuner.inference.evaluate import EVAL_SETTINGS
    from tui_tuner.inference.objective_eval import DEFAULT_LIMIT, evaluate_objective, objective_examples

    try:  # data problems are found before the model is loaded
        examples, label = objective_examples(source, args.data)
    except SourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    examples = examples[: args.limit or DEFAULT_LIMIT]
    chat = None
    if source.config.objective != "reward":
        chat = load_for_command(args, need_adapter=args.compare_base)
        if chat is None:
            return EXIT_BAD_INPUT

    progress = _progress_printer(args)
    try:
        report = evaluate_objective(source, examples, label, chat=chat, compare_base=args.compare_base,
                                    settings=replace(EVAL_SETTINGS, max_new_tokens=args.max_new_tokens),
                                    progress=progress)
    except (SourceError, RuntimeError) as exc:
        _end_progress_line(args)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    _end_progress_line(args)
    return _print_report(args, report, source)


def _progress_printer(args: argparse.Namespace):
    """Machine-readable `progress N/M what` lines with --progress-lines, else one redrawn line on a terminal."""
    def progress(done: int, total: int, what: str) -> None:
        if args.progress_lines:
            print(f"progress {done}/{total} {what}", file=sys.stderr, flush=True)
        elif sys.stderr.isatty():
            print(f"\r{what} ({done}/{total})\033[K", end="", file=sys.stderr, flush=True)

    return progress


def _end_progress_line(args: argparse.Namespace) -> None:
    if sys.stderr.isatty() and not args.progress_lines:
        print(file=sys.stderr)


def _print_report(args: argparse.Namespace, report, source) -> int:
    from tui_tuner.inference.evaluate import report_markdown, save_report

    json_path, md_path = save_report(report, source)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
    else:
        print(report_markdown(report))
    print(f"report saved: {md_path} and {json_path.name}", file=sys.stderr)
    return 0
