"""`tui-tuner sweep CONFIG --set KEY=V1,V2,... [--set KEY2=...] [--wait]`: one run per value, queued.

    tui-tuner sweep configs/quickstart.yaml --set lora.r=8,16,32
    tui-tuner sweep configs/quickstart.yaml --set lora.r=8,16 --set lora.alpha=16,32 --wait

A --set with several comma-separated values is swept, one with a single value applies to
every run, two swept keys give their cross product. Every combination is checked first
(like `config check`); nothing is created when one fails. The runs train one after another and survive the terminal; `--wait` follows
each in turn and then prints the comparison (loss curves overlaid, final and eval loss,
time, peak memory, adapter size).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tui_tuner.commands.options import add_set_option


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="train one run per value of a setting (e.g. lora.r=8,16,32), one after another",
                       description="\n\n".join(__doc__.split("\n\n")[1:]), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="YAML run config, e.g. configs/quickstart.yaml")
    add_set_option(p)
    p.add_argument("--wait", action="store_true",
                   help="follow the runs until the last ends, then compare them (Ctrl+C stops following only)")
    p.add_argument("--dry-run", action="store_true", help="check and list the runs without creating them")
    p.set_defaults(handler=run_sweep)


def run_sweep(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape

    from tui_tuner.commands.console import print_issues
    from tui_tuner.rundir.sweep import SweepError, create_sweep, plan_sweep, run_names

    console = Console(highlight=False)
    try:
        plan = plan_sweep(args.config, args.overrides)
    except SweepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_issues(plan.issues)
    if not plan.ok:
        print(f"{args.config}: sweep not started; fix the error(s) above (they apply to every run listed).",
              file=sys.stderr)
        return 2
    problems = _dataset_problems(plan)
    if problems:
        print_issues(problems)
        print(f"{args.config}: sweep not started; the dataset has errors.", file=sys.stderr)
        return 2
    names = run_names(plan)
    console.print(f"sweep over {', '.join(plan.keys)}: {len(plan.points)} runs, one after another")
    for name, point in zip(names, plan.points):
        varied = ", ".join(f"{k}={v}" for k, v in point.varied.items())
        console.print(f"  {escape(name)}  ({escape(varied)})")
    if args.dry_run:
        return 0
    from tui_tuner.rundir.runs import RunError

    try:
        runs = create_sweep(plan)
    except (RunError, SweepError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    runs_dir = runs[0].path.parent
    sweep_id = _sweep_id(runs[0])
    console.print(f"sweep [bold]{sweep_id}[/] created in {runs_dir}; {runs[0].name} started, the rest are queued.")
    console.print("The runs go on if this terminal or SSH session closes. Watch them with:")
    for command in watch_commands(runs_dir, runs[0].name, sweep_id):
        console.print(f"  {escape(command)}", soft_wrap=True)  # to copy: never wrapped mid-command
    console.print("  or open `tui-tuner` and compare them on the Runs screen.")
    if not args.wait:
        return 0
    return wait_and_compare(runs, console)


def watch_commands(runs_dir: Path, first_run: str, sweep_id: str) -> list[str]:
    """The commands that follow a sweep; `--runs-dir` only when it is not the default ./runs."""
    where = "" if Path(runs_dir).resolve() == Path("runs").resolve() else f" --runs-dir {runs_dir}"
    return [f"tui-tuner {command}{where}" for command in
            ("runs ls", f"runs attach {first_run}", f"runs table --sweep {sweep_id} --plot")]


def _sweep_id(run) -> str:
    from tui_tuner.rundir.sweep import sweep_record

    return (sweep_record(run.path) or {}).get("sweep", "?")


def _dataset_problems(plan) -> list:
    """Dataset errors of the first point (the dataset is shared unless a data key is swept: check all then)."""
    try:
        from tui_tuner.data import check_config_dataset
    except ImportError:
        return []
    swept_data = any(k.startswith("data.") for k in plan.keys)
    loaded_list = plan.loaded if swept_data else plan.loaded[:1]
    issues = []
    for loaded in loaded_list:
        issues.extend(i for i in check_config_dataset(loaded).issues_as_config_issues() if i.severity == "error")
    return issues


def wait_and_compare(runs, console) -> int:
    """Follow each run in order until it ends, then print the comparison. 0 when every run finished."""
    from tui_tuner.commands.run_progress import follow_run

    for run in runs:
        console.print(f"[bold]{run.name}[/]")
        if run.status().state == "queued":
            console.print("[dim]queued: starts when the previous run ends[/]")
        st = _wait_until_started(run)
        if st is None:
            console.print(f"stopped following; the sweep goes on. Compare later: "
                          f"tui-tuner runs table --sweep {_sweep_id(run)} --plot")
            return 0
        st = follow_run(run, console, interrupt_stops=False)
        if not st.is_final:  # Ctrl+C: stopped following
            return 0
    print_comparison(runs, console)
    states = [r.status().state for r in runs]
    return 0 if all(s == "finished" for s in states) else 1


def _wait_until_started(run):
    """Wait while the run is queued (its predecessor's supervisor starts it); None on Ctrl+C."""
    import time

    from tui_tuner.rundir.runs import start_ready_queued

    try:
        while True:
            st = run.status()
            if st.state != "queued":
                return st
            # a supervisor killed with the machine cannot start its successor: nudge the queue
            start_ready_queued(run.path.parent)
            time.sleep(0.5)
    except KeyboardInterrupt:
        return None


def print_comparison(runs, console) -> None:
    """The sweep's comparison: what was varied, losses, time, peak memory, adapter size, and the loss curves."""
    from rich.table import Table

    from tui_tuner.commands.runs_table import print_loss_plot
    from tui_tuner.rundir.experiment_log import format_cell, records
    from tui_tuner.rundir.sweep import sweep_record

    rows = records(runs)
    table = Table(title="sweep comparison", title_justify="left")
    keys = (sweep_record(runs[0].path) or {}).get("keys", [])
    table.add_column("run", no_wrap=True)
    for key in keys:
        table.add_column(key, justify="right", no_wrap=True, min_width=len(key))
    for title in ("state", "train loss", "eval loss", "time", "peak mem", "adapter"):
        table.add_column(title, justify="right", no_wrap=True)
    for run, row in zip(runs, rows):
        varied = (sweep_record(run.path) or {}).get("varied", {})
        label = (sweep_record(run.path) or {}).get("label", run.name)
        table.add_row(label, *(str(varied.get(k, "-")) for k in keys), row["state"],
                      format_cell(row, "train_loss"), format_cell(row, "eval_loss"), format_cell(row, "wall_time"),
                      format_cell(row, "peak_memory"), format_cell(row, "adapter_size"))
    console.print(table)
    print_loss_plot(rows, console)
