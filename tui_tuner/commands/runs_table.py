"""`tui-tuner runs table [--markdown|--csv|--json] [--sweep ID] [--plot] [RUN...]`: the experiment log.

Registered under `runs` by `runs_cmd.register` (one line there); the table itself is
`tui_tuner.rundir.experiment_log`.

    tui-tuner runs table --markdown > experiments.md
    tui-tuner runs table --sweep 20261123-181500 --plot
"""

from __future__ import annotations

import argparse
import json
import sys


def add_table_command(rsub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    table = rsub.add_parser("table", parents=[common],
                            help="experiment log: model, method, r, alpha, lr, steps, batch, losses, time, memory")
    table.add_argument("runs", nargs="*", metavar="RUN", help="runs to include (names or prefixes); default all")
    form = table.add_mutually_exclusive_group()
    form.add_argument("--markdown", action="store_true", help="print a Markdown table")
    form.add_argument("--csv", action="store_true", help="print CSV (raw seconds and bytes)")
    form.add_argument("--json", action="store_true", help="print JSON")
    table.add_argument("--sweep", metavar="ID", help="only the runs of this sweep (its id is in each run's sweep.json)")
    table.add_argument("--plot", action="store_true", help="also draw the runs' loss curves overlaid")
    table.set_defaults(handler=run_table)


def selected_runs(args: argparse.Namespace):
    """The runs named on the command line (in that order), else every run; None after printing an error."""
    from tui_tuner.rundir.runs import RunLookupError, find_run, list_runs
    from tui_tuner.rundir.sweep import sweep_runs

    if args.sweep:
        runs = sweep_runs(args.runs_dir, args.sweep)
        if not runs:
            print(f"error: no runs of sweep {args.sweep!r} in {args.runs_dir}; each sweep's id is printed when it "
                  "starts and stored in its runs' sweep.json.", file=sys.stderr)
            return None
        return runs
    if not args.runs:
        return list_runs(args.runs_dir)
    runs = []
    for name in args.runs:
        try:
            runs.append(find_run(args.runs_dir, name))
        except RunLookupError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return None
    return runs


def run_table(args: argparse.Namespace) -> int:
    from tui_tuner.rundir.experiment_log import records, to_csv, to_markdown, to_rich_tables

    runs = selected_runs(args)
    if runs is None:
        return 2
    rows = records(runs)
    if args.json:
        print(json.dumps([r.values for r in rows], indent=2, default=str))
    elif args.csv:
        sys.stdout.write(to_csv(rows))
    elif args.markdown:
        sys.stdout.write(to_markdown(rows))
    else:
        from rich.console import Console
        from rich.text import Text

        console = Console(highlight=False)
        if not rows:
            console.print(f"no runs in {args.runs_dir}. Start one: tui-tuner train configs/quickstart.yaml")
            return 0
        for part in to_rich_tables(rows, title=f"experiments in {args.runs_dir}", width=console.width):
            console.print(part, soft_wrap=isinstance(part, Text))
    if args.plot and not (args.json or args.csv or args.markdown):
        print_loss_plot(rows)
    return 0


def print_loss_plot(rows, console=None) -> None:
    """Overlaid training-loss curves of the runs (one marker each)."""
    from rich.console import Console

    from tui_tuner.core.text_plot import line_plot, rich_plot

    console = console or Console(highlight=False)
    width = max(30, min(90, console.width - 12))
    plot = line_plot({r["run"]: r.losses for r in rows}, width=width, height=12)
    console.print("[bold]training loss[/]")
    console.print(rich_plot(plot), soft_wrap=True)  # a long run name in the legend is never cut
