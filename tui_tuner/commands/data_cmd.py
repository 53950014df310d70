"""`tui-tuner data check FILE [--config C] [--set k=v] [--json]`: check a dataset file.

Reports the format detected, the example count, token lengths (with the tokenizer of the
model `--config` names, when it is on this machine), how many examples `max_seq_length`
would truncate, duplicates, empty fields and every issue with its line. Exit status 2
when there are errors.
"""

from __future__ import annotations

import argparse
import json
import sys

from tui_tuner.commands.options import add_set_option

PRINTED_ISSUES = 20


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="check dataset files")
    dsub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    check = dsub.add_parser("check", help="detect the format, count examples and tokens, list every error by line")
    check.add_argument("file", help="dataset file: .jsonl, .json, .csv or .parquet")
    check.add_argument("--config", metavar="CONFIG",
                       help="run config whose data settings (format, fields, ...) and model tokenizer to use")
    add_set_option(check)
    check.add_argument("--no-tokenizer", action="store_true",
                       help="skip token-length statistics (no model tokenizer is loaded)")
    check.add_argument("--json", action="store_true", help="print a JSON report (every issue, uncapped)")
    check.set_defaults(handler=run_check)


def _config(args: argparse.Namespace):
    from tui_tuner.config.schema import apply_overrides, load_config, validate_raw

    if args.config:
        return load_config(args.config, args.overrides)
    try:
        raw = apply_overrides({}, args.overrides)
    except ValueError as exc:
        from tui_tuner.config.schema import ConfigIssue, LoadedConfig

        return LoadedConfig(None, [ConfigIssue("", str(exc), file="--set")])
    return validate_raw(raw, file="--set")


def run_check(args: argparse.Namespace) -> int:
    from tui_tuner.commands.console import print_issues
    from tui_tuner.data.report import DataReport, check_file, load_tokenizer_if_local, resolve_template_for_report

    loaded = _config(args)
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
        from pathlib import Path

        template, report.chat_template_name, problem = resolve_template_for_report(cfg, tokenizer)
        report.tokenizer_name = Path(str(tokenizer.name_or_path)).name
        if problem:
            from tui_tuner.config.schema import ConfigIssue

            report.config_issues.append(ConfigIssue("model.chat_template", problem, file=args.config))
            tokenizer = None
    report.files.append(check_file(args.file, cfg, tokenizer, chat_template=template, shown=args.file))

    if args.json:
        print(json.dumps({"file": args.file, **report.as_dict()}, indent=2))
    else:
        print_issues(report.config_issues + report.capped_issues(PRINTED_ISSUES))
        left = report.left_out(PRINTED_ISSUES)
        if left:
            print(f"... and {left} more issue(s); --json lists them all", file=sys.stderr)
        print(report.summary_text())
    return 0 if report.ok else 2
