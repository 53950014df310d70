"""`tui-tuner data check FILE|ORG/NAME [--config C] [--set k=v] [--show N] [--json]`: check a dataset.
`tui-tuner data pull ORG/NAME [--subset S] [--split SPLIT]`: download a hub dataset into the standard caches.

Reports the format detected, the example count, token lengths (with the tokenizer of the
model `--config` names, when it is on this machine), how many examples `max_seq_length`
would truncate, duplicates, empty fields and every issue with its line. Exit status 2
when there are errors.

`--show N` prints the first N examples exactly as the model sees them, the trained tokens
marked: in colour on a terminal, between ⟦ and ⟧ when piped. With `--json`, each shown
example adds its `input_ids` and `labels` (-100 where not trained).
"""

from __future__ import annotations

import argparse
import json
import sys

from tui_tuner.commands.options import add_set_option

PRINTED_ISSUES = 20


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="check dataset files and hub datasets; download hub datasets")
    dsub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    check = dsub.add_parser("check", help="detect the format, count examples and tokens, list every error by line")
    check.add_argument("file", help="dataset file (.jsonl, .json, .csv or .parquet), hub dataset ORG/NAME (a local "
                                    "path of that name wins) or hf://datasets/ORG/NAME/path/file.jsonl")
    check.add_argument("--config", metavar="CONFIG",
                       help="run config whose data settings (format, fields, ...) and model tokenizer to use")
    add_set_option(check)
    check.add_argument("--no-tokenizer", action="store_true",
                       help="skip token-length statistics (no model tokenizer is loaded)")
    check.add_argument("--show", type=int, default=0, metavar="N",
                       help="print the first N examples as the model sees them, trained parts marked (needs the "
                            "model's tokenizer: --config)")
    _add_hub_options(check)
    check.add_argument("--json", action="store_true", help="print a JSON report (every issue, uncapped)")
    check.set_defaults(handler=run_check)
    pull = dsub.add_parser("pull", help="download a hub dataset into the standard caches (for offline machines "
                                        "and later runs)")
    pull.add_argument("dataset", metavar="ID", help="hub dataset ORG/NAME, or hf://datasets/ORG/NAME/path/file.jsonl")
    _add_hub_options(pull)
    pull.set_defaults(handler=run_pull)


def _add_hub_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--subset", metavar="S", help="hub datasets: the subset (config name), as data.subset")
    parser.add_argument("--split", metavar="SPLIT", help="hub datasets: the split with an optional slice, e.g. "
                                                         "'train[:2000]', as data.split (default train)")


def _hub_overrides(args: argparse.Namespace) -> list[str]:
    """--subset / --split as `--set data.subset=...` overrides (validated by the one schema)."""
    import json as _json

    out = []
    if getattr(args, "subset", None) is not None:
        out.append(f"data.subset={_json.dumps(args.subset)}")
    if getattr(args, "split", None) is not None:
        out.append(f"data.split={_json.dumps(args.split)}")
    return out


def run_pull(args: argparse.Namespace) -> int:
    from tui_tuner.commands.console import print_issues
    from tui_tuner.config.schema import ConfigIssue, validate_raw
    from tui_tuner.core.hub_names import looks_like_dataset_id
    from tui_tuner.data.hub import HubDataError, HubSource, data_source, pull

    try:
        raw = apply_hub_overrides({}, args)
    except ValueError as exc:
        print_issues([ConfigIssue("", str(exc), file="--split")])
        return 2
    loaded = validate_raw({"data": {**raw.get("data", {}), "train": args.dataset}}, file="data pull")
    if not loaded.ok:
        print_issues(loaded.issues)
        return 2
    value = args.dataset
    if not value.startswith("hf://") and not looks_like_dataset_id(value):
        print_issues([ConfigIssue("", f"`{value}` is not a hub dataset id: write ORG/NAME (e.g. yahma/alpaca-cleaned) "
                                      "or hf://datasets/ORG/NAME/path/file.jsonl.", file="data pull")])
        return 2
    source = data_source(value, None, loaded.config.data)
    if not isinstance(source, HubSource):  # a local path of that name exists: it would win in a config
        source = HubSource(value, None, None, loaded.config.data.subset, loaded.config.data.split)
    try:
        _, lines = pull(source)
    except HubDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


def apply_hub_overrides(raw: dict, args: argparse.Namespace) -> dict:
    from tui_tuner.config.schema import apply_overrides

    return apply_overrides(raw, _hub_overrides(args))


def _config(args: argparse.Namespace):
    from tui_tuner.config.schema import apply_overrides, load_config, validate_raw

    overrides = [*(args.overrides or []), *_hub_overrides(args)]
    if args.config:
        return load_config(args.config, overrides)
    try:
        raw = apply_overrides({}, overrides)
    except ValueError as exc:
        from tui_tuner.config.schema import ConfigIssue, LoadedConfig

        return LoadedConfig(None, [ConfigIssue("", str(exc), file="--set")])
    return validate_raw(raw, file="--set")


def run_check(args: argparse.Namespace) -> int:
    from tui_tuner.commands.console import print_issues
    from tui_tuner.data.report import DataReport, check_file, load_tokenizer_if_local, resolve_template_for_report

    from pathlib import Path

    from tui_tuner.config.schema import ConfigIssue
    from tui_tuner.core.hub_names import url_problem
    from tui_tuner.data.hub import HubSource, data_source

    loaded = _config(args)
    problem = url_problem(args.file)
    if problem:
        loaded.issues.append(ConfigIssue("", problem, file=args.file))
        loaded.config = None
    if not loaded.ok:
        if args.json:
            print(json.dumps({"file": args.file, "ok": False, "config_issues": [i.as_dict() for i in loaded.issues]},
                             indent=2))
        else:
            print_issues(loaded.issues)
        return 2
    cfg = loaded.config
    report = DataReport()
    tokenizer = None
    if args.config and not args.no_tokenizer:
        tokenizer, report.tokenizer_note = load_tokenizer_if_local(cfg.model)
    elif args.no_tokenizer:
        report.tokenizer_note = "skipped (--no-tokenizer)"
    else:
        report.tokenizer_note = "pass --config CONFIG to measure them with that model's tokenizer"
    template = None
    if tokenizer is not None:
        template, report.chat_template_name, problem = resolve_template_for_report(cfg, tokenizer)
        report.tokenizer_name = Path(str(tokenizer.name_or_path)).name
        if problem:
            report.config_issues.append(ConfigIssue("model.chat_template", problem, file=args.config))
            tokenizer = None
    source = data_source(args.file, Path.cwd(), cfg.data)
    report.files.append(check_file(source, cfg, tokenizer, chat_template=template,
                                   shown=source.shown if isinstance(source, HubSource) else args.file))
    shown = _shown_examples(report.files[0].load, cfg, tokenizer, template, args.show) if args.show > 0 else []
    if args.show > 0 and tokenizer is None:
        why = report.tokenizer_note or "no tokenizer"
        print(f"--show needs the model's tokenizer ({why}); pass --config CONFIG naming a model on this machine.",
              file=sys.stderr)

    if args.json:
        out = {"file": args.file, **report.as_dict()}
        if args.show > 0:
            out["shown"] = shown
        print(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        if shown:
            _print_shown(shown, colour=sys.stdout.isatty())
        print_issues(report.config_issues + report.capped_issues(PRINTED_ISSUES))
        left = report.left_out(PRINTED_ISSUES)
        if left:
            print(f"... and {left} more issue(s); --json lists them all", file=sys.stderr)
        print(report.summary_text())
    return 0 if report.ok else 2


TRAINED_OPEN, TRAINED_CLOSE = "⟦", "⟧"
_GREEN, _DIM, _RESET = "\x1b[1;32m", "\x1b[2m", "\x1b[0m"


def _shown_examples(load, cfg, tokenizer, template, count: int) -> list[dict]:
    """The first `count` examples tokenized as training will: line, segments, input_ids and labels."""
    from tui_tuner.chat_format.templates import ChatTemplateError
    from tui_tuner.data.tokenize import tokenize_conversation, trained_segments

    if tokenizer is None:
        return []
    out = []
    for conversation, line in list(zip(load.examples, load.lines))[:count]:
        try:
            enc = tokenize_conversation(tokenizer, conversation, cfg.model.max_seq_length,
                                        cfg.data.completion_only_loss, template)
        except ChatTemplateError as exc:
            out.append({"line": line, "error": str(exc)})
            continue
        out.append({"line": line, "segments": [{"text": t, "trained": k} for t, k in
                                               trained_segments(tokenizer, enc["input_ids"], enc["labels"])],
                    "truncated": enc["truncated"], "trained_tokens": enc["trained_tokens"],
                    "input_ids": enc["input_ids"], "labels": enc["labels"]})
    return out


def _print_shown(shown: list[dict], *, colour: bool) -> None:
    legend = (f"{_GREEN}trained text in green{_RESET}, {_DIM}the rest dim{_RESET}" if colour
              else f"trained text between {TRAINED_OPEN} and {TRAINED_CLOSE}")
    print(f"examples as the model sees them ({legend}):")
    for example in shown:
        print(f"--- line {example['line']}" + (f": {example['error']}" if "error" in example else
                                                f" ({example['trained_tokens']} trained tokens"
                                                + (", truncated" if example["truncated"] else "") + ")"))
        if "error" in example:
            continue
        parts = []
        for segment in example["segments"]:
            text = segment["text"]
            if colour:
                parts.append(f"{_GREEN if segment['trained'] else _DIM}{text}{_RESET}")
            else:
                parts.append(f"{TRAINED_OPEN}{text}{TRAINED_CLOSE}" if segment["trained"] else text)
        print("".join(parts))
    print("---")
