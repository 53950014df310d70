"""`tui-tuner config check FILE [--set k=v] [--json]`: validate a run config.
`tui-tuner config quickstart [FOLDER]`: write the quickstart project (config + sample data) there."""

from __future__ import annotations

import argparse
import json
import sys

from tui_tuner.commands.options import add_set_option

PRINTED_DATA_ISSUES = 20
"""Data issues printed per file by `config check` (the JSON report has every one)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="validate or show run configs")
    csub = p.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    check = csub.add_parser("check", help="validate a config and the dataset it names")
    check.add_argument("file", help="YAML run config, e.g. configs/quickstart.yaml")
    add_set_option(check)
    check.add_argument("--json", action="store_true", help="print a JSON report")
    check.set_defaults(handler=run_check)
    show = csub.add_parser("show", help="print the full resolved config (every field, defaults included)")
    show.add_argument("file")
    add_set_option(show)
    show.set_defaults(handler=run_show)
    ref = csub.add_parser("reference", help="list every config key with its default and meaning")
    ref.set_defaults(handler=run_reference)
    quick = csub.add_parser("quickstart", help="write configs/quickstart.yaml and its sample data into a folder "
                                               "(a first run that works offline on a CPU)")
    quick.add_argument("folder", nargs="?", default=".", help="project folder (default: this one)")
    quick.set_defaults(handler=run_quickstart)


def run_check(args: argparse.Namespace) -> int:
    from tui_tuner.config.schema import load_config
    from tui_tuner.commands.console import print_issues

    loaded = load_config(args.file, args.overrides)
    issues = list(loaded.issues)
    shown = issues
    data_report = None
    if loaded.ok:
        from tui_tuner.train.preflight import preflight_issues

        preflight = preflight_issues(loaded)
        issues.extend(preflight)
        data_missing = any(i.key.startswith("data.") and i.severity == "error" for i in preflight)
        check_data = None if data_missing else _dataset_checker()
        if check_data is not None:
            data_report = check_data(loaded)
            # a broken dataset can have thousands of issues: print the first ones, JSON has all
            shown = issues + data_report.issues_as_config_issues(limit=PRINTED_DATA_ISSUES)
            issues = issues + data_report.issues_as_config_issues()
    errors = [i for i in issues if i.severity == "error"]
    if args.json:
        out = {"file": args.file, "ok": not errors, "issues": [i.as_dict() for i in issues]}
        if data_report is not None:
            out["data"] = data_report.as_dict()
        print(json.dumps(out, indent=2))
    else:
        print_issues(shown)
        if len(shown) < len(issues):
            print(f"... and {len(issues) - len(shown)} more issue(s); --json lists them all", file=sys.stderr)
        if data_report is not None:
            print(data_report.summary_text())
        if not errors:
            print(f"{args.file}: valid" + (f" ({len(issues)} warning(s))" if issues else ""))
    return 2 if errors else 0


def _dataset_checker():
    """The dataset check for a loaded config, once the data module provides it."""
    try:
        from tui_tuner.data import check_config_dataset
    except ImportError:
        return None
    return check_config_dataset


def run_show(args: argparse.Namespace) -> int:
    from tui_tuner.config.schema import load_config
    from tui_tuner.commands.console import print_issues

    loaded = load_config(args.file, args.overrides)
    if not loaded.ok:
        print_issues(loaded.issues)
        return 2
    sys.stdout.write(loaded.config.to_yaml())
    return 0


def run_reference(args: argparse.Namespace) -> int:
    from tui_tuner.config.schema import field_docs

    for key, default, doc in field_docs():
        if default == "":
            print(f"\n{key}:  {doc}")
        else:
            print(f"  {key} = {default}\n      {doc}")
    return 0


def run_quickstart(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tui_tuner.config.starter import write_quickstart

    try:
        written = write_quickstart(Path(args.folder))
    except OSError as exc:
        print(f"error: cannot write the quickstart into {args.folder}: {exc}", file=sys.stderr)
        return 1
    print(f"{written.folder}: {written.describe()}")
    print("next: tui-tuner train configs/quickstart.yaml   (or `tui-tuner` for the TUI)")
    return 0
