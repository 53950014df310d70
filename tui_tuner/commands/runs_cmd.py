"""`tui-tuner runs ls|show|attach|stop|resume|rm`: list and manage run directories.

    tui-tuner runs                     # same as `runs ls`
    tui-tuner runs show quickstart     # RUN is a name or a unique prefix
    tui-tuner runs resume quickstart   # continue from the newest complete checkpoint
    tui-tuner runs ls --runs-dir /data/runs
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tui_tuner.commands.options import exit_status
from tui_tuner.rundir.files import ADAPTER_DIR, GGUF_DIR, MERGED_DIR


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="list, follow, stop, resume or delete training runs")
    p.add_argument("--runs-dir", default="runs", help="folder holding the runs (default: ./runs)")
    # Given after the subcommand too; SUPPRESS keeps a value given before it from being reset.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--runs-dir", default=argparse.SUPPRESS, help="folder holding the runs (default: ./runs)")
    p.set_defaults(handler=run_ls, json=False)
    rsub = p.add_subparsers(dest="runs_command", metavar="SUBCOMMAND")
    ls = rsub.add_parser("ls", help="table of runs: state, model, method, step, loss, duration", parents=[common])
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(handler=run_ls)
    show = rsub.add_parser("show", help="one run: config changes, loss summary, artefacts, errors", parents=[common])
    show.add_argument("run", help="run name or unique prefix")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=run_show)
    attach = rsub.add_parser("attach", help="follow a run's progress (Ctrl+C stops following, not the run)",
                             parents=[common])
    attach.add_argument("run")
    attach.add_argument("--stop-on-ctrl-c", action="store_true", help="Ctrl+C stops the run, as in `train`")
    attach.set_defaults(handler=run_attach)
    stop = rsub.add_parser("stop", help="stop a run gracefully (checkpoint + adapter saved)", parents=[common])
    stop.add_argument("run")
    stop.add_argument("--now", action="store_true", help="terminate at once; progress since the last checkpoint is lost")
    stop.set_defaults(handler=run_stop)
    resume = rsub.add_parser("resume", help="continue a stopped, failed or crashed run from its last checkpoint",
                             parents=[common])
    resume.add_argument("run")
    resume.add_argument("--detach", action="store_true", help="return at once instead of following")
    resume.set_defaults(handler=run_resume)
    rm = rsub.add_parser("rm", help="delete a run directory (asks first)", parents=[common])
    rm.add_argument("run")
    rm.add_argument("-y", "--yes", action="store_true", help="do not ask")
    rm.set_defaults(handler=run_rm)
    from tui_tuner.commands.runs_table import add_table_command

    add_table_command(rsub, common)


def _find(args: argparse.Namespace):
    from tui_tuner.rundir.runs import RunLookupError, find_run

    try:
        return find_run(args.runs_dir, args.run)
    except RunLookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def _raw_config(run) -> dict[str, Any]:
    import yaml

    from tui_tuner.rundir.runs import load_yaml

    try:
        data = load_yaml(run.config_path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, yaml.YAMLError):
        return {}


def run_row(run) -> dict[str, Any]:
    """One `runs ls` row (also the JSON form); a run that cannot be read gets a row saying why."""
    try:
        return _run_row(run)
    except Exception as exc:  # one broken run must never hide the others
        from tui_tuner.rundir.status import UNREADABLE

        return {"name": run.name, "state": UNREADABLE, "model": "?", "objective": "?", "method": "?", "r": None, "step": 0,
                "max_steps": None, "loss": None, "duration_s": None, "queued_after": None,
                "error": f"{run.path}: {type(exc).__name__}: {exc}"[:300], "stalled": None}


def _run_row(run) -> dict[str, Any]:
    from tui_tuner.rundir.runs import run_summary, stall_note

    st = run.status()
    summary = run_summary(run, st)
    return {
        "name": run.name, "state": st.state, "model": summary["model"], "objective": summary["objective"],
        "method": summary["method"], "r": summary["r"],
        "step": st.step, "max_steps": st.max_steps, "loss": st.loss, "duration_s": st.duration_s,
        "queued_after": st.queued_after, "error": st.error, "stalled": stall_note(run, st),
    }


LS_COLUMNS = ("name", "state", "model", "objective", "method", "r", "step", "loss", "duration")
_RIGHT = ("r", "step", "loss", "duration")


def ls_cells(row: dict[str, Any]) -> list[str]:
    """One `runs ls` row as the text of each column."""
    from tui_tuner.core.units import format_duration

    state = str(row["state"]) + (" (stalled)" if row.get("stalled") else "")
    return [row["name"], state, str(row["model"]), str(row.get("objective", "?")), str(row["method"]),
            "-" if row["r"] is None else str(row["r"]), f"{row['step']}/{row['max_steps'] or '?'}",
            f"{row['loss']:.4f}" if isinstance(row["loss"], (int, float)) else "-", format_duration(row["duration_s"])]


def plain_table(rows: list[list[str]]) -> str:
    """Columns aligned with spaces, nothing cut and no colour: for pipes, files, grep and awk."""
    table = [list(LS_COLUMNS)] + rows
    widths = [max(len(r[i]) for r in table) for i in range(len(LS_COLUMNS))]
    lines = []
    for r in table:
        cells = [c.rjust(w) if col in _RIGHT else c.ljust(w) for c, w, col in zip(r, widths, LS_COLUMNS)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def run_ls(args: argparse.Namespace) -> int:
    from rich.console import Console

    from tui_tuner.rundir.runs import list_runs, start_ready_queued

    runs = list_runs(args.runs_dir)
    rows = [run_row(r) for r in runs]
    # A queue whose supervisor died moves on; only a listing with a queued run needs the check.
    if any(row["state"] == "queued" for row in rows) and start_ready_queued(args.runs_dir, runs):
        rows = [run_row(r) for r in list_runs(args.runs_dir)]
    rows.reverse()  # newest first, as in the TUI
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    console = Console(highlight=False)
    if not rows:
        console.print(f"no runs in {args.runs_dir}. Start one: tui-tuner train configs/quickstart.yaml")
        return 0
    from rich.markup import escape

    stalled_or_unreadable = [row for row in rows if row["state"] == "unreadable" or row.get("stalled")]
    if not console.is_terminal:
        print(plain_table([ls_cells(row) for row in rows]))
        for row in stalled_or_unreadable:
            print(f"stalled {row['name']}: {row['stalled']}" if row.get("stalled")
                  else f"unreadable {row['name']}: {row['error']}")
        return 0
    colours = {"running": "cyan", "stopping": "cyan", "finished": "green", "stopped": "yellow",
               "failed": "red", "crashed": "red", "queued": "dim", "unreadable": "red"}
    cells = [ls_cells(row) for row in rows]
    styles = [colours.get(str(row["state"])) for row in rows]
    console.print(aligned_table(cells, styles, console.width), soft_wrap=True)
    hidden = [name for i, name in enumerate(LS_COLUMNS) if i not in ls_layout(cells, console.width)[0]]
    if hidden:
        console.print(f"[dim]hidden at {console.width} columns: {', '.join(hidden)} (runs ls | cat shows all)[/]")
    for row in stalled_or_unreadable:
        if row.get("stalled"):
            console.print(f"[yellow]stalled[/] {escape(row['name'])}: {escape(row['stalled'])}")
        elif row["state"] == "unreadable":
            console.print(f"[red]unreadable[/] {escape(row['name'])}: {escape(str(row['error']))}")
    return 0




LS_MODEL, LS_NAME = LS_COLUMNS.index("model"), LS_COLUMNS.index("name")
LS_GIVE_WAY = ("objective", "method", "model", "duration", "r", "loss", "step")
"""Columns `runs ls` hides, in this order, when the terminal is too narrow for whole run names."""


def ls_layout(cells: list[list[str]], width: int) -> tuple[list[int], list[int], list[list[str]]]:
    """Which `runs ls` columns to show in `width` terminal columns, their widths, and the cells to show.

    The run name is what the other commands take, so it is the last to give way: first the model
    loses its organisation (`Qwen/Qwen2.5-0.5B` -> `Qwen2.5-0.5B`), then it is cut with an ellipsis
    down to 8 columns, then columns are hidden (`LS_GIVE_WAY`); only a terminal too narrow for the
    name and state alone cuts the name.
    """
    from rich.cells import cell_len

    def total(shown: list[int], widths: list[int]) -> int:
        return sum(widths[i] for i in shown) + 2 * (len(shown) - 1)

    header = list(LS_COLUMNS)
    shown = list(range(len(LS_COLUMNS)))
    widths = [max(cell_len(r[i]) for r in [header, *cells]) for i in shown]
    if total(shown, widths) > width:
        cells = [[*r[:LS_MODEL], r[LS_MODEL].rstrip("/").split("/")[-1], *r[LS_MODEL + 1:]] for r in cells]
        widths[LS_MODEL] = max(cell_len(r[LS_MODEL]) for r in [header, *cells])
    widths[LS_MODEL] -= min(max(0, total(shown, widths) - width), max(0, widths[LS_MODEL] - 8))
    for name in LS_GIVE_WAY:
        if total(shown, widths) > width:
            shown.remove(LS_COLUMNS.index(name))
    widths[LS_NAME] -= min(max(0, total(shown, widths) - width), max(0, widths[LS_NAME] - 8))
    return shown, widths, cells


def aligned_table(cells: list[list[str]], state_styles: list[str | None], width: int):
    """The runs table as one rich `Text`: columns aligned, the state coloured, fitted to `width` (`ls_layout`).

    rich's `Table` measures and wraps every cell, which took seconds for 1,000 runs; plain
    columns cost a few milliseconds.
    """
    from rich.cells import cell_len, set_cell_size
    from rich.text import Text

    shown, widths, cells = ls_layout(cells, width)
    align = ["right" if name in _RIGHT else "left" for name in LS_COLUMNS]

    def fit(value: str, i: int) -> str:
        w = widths[i]
        if cell_len(value) > w:
            value = set_cell_size(value, w - 1) + "…"
        pad = " " * (w - cell_len(value))
        return pad + value if align[i] == "right" else value + pad

    text = Text(no_wrap=True)
    text.append("  ".join(fit(LS_COLUMNS[i], i) for i in shown).rstrip() + "\n", "bold")
    state = LS_COLUMNS.index("state")
    for row, style in zip(cells, state_styles):
        for n, i in enumerate(shown):
            text.append(fit(row[i], i), style if i == state else None)
            text.append("  " if n < len(shown) - 1 else "\n")
    text.rstrip()
    return text


def config_changes(run) -> dict[str, Any]:
    """Dotted keys whose value differs from the defaults: what makes this run this run."""
    from tui_tuner.config.schema import RunConfig

    def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            if isinstance(v, dict) and v:
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[prefix + k] = v
        return out

    defaults = flat(RunConfig().model_dump(mode="json"))
    actual = flat(_raw_config(run))
    return {k: v for k, v in actual.items() if defaults.get(k, object()) != v}


def sample_events(run) -> list[dict[str, Any]]:
    """The run's `samples` events (answers to the sample prompts by step), oldest first."""
    from tui_tuner.rundir.events import read_events

    out, offset = [], 0
    while True:
        events, new_offset = read_events(run.events_path, offset)
        out += [e for e in events if e.get("kind") == "samples" and isinstance(e.get("answers"), list)]
        if new_offset == offset or not events:
            return out
        offset = new_offset


def show_data(run) -> dict[str, Any]:
    from tui_tuner.rundir.events import load_history
    from tui_tuner.rundir.runs import checkpoint_problem

    st = run.status()
    hist = load_history(run.events_path)
    losses = [loss for _, loss in hist.losses]
    from tui_tuner.rundir.runs import stall_note

    data: dict[str, Any] = {"name": run.name, "path": str(run.path), "status": st.as_dict(),
                            "stalled": stall_note(run, st), "config_changes": config_changes(run)}
    data["loss"] = ({"steps_logged": len(losses), "first": losses[0], "last": losses[-1], "min": min(losses)}
                    if losses else None)
    data["evals"] = [{"step": e.get("step"), "eval_loss": e.get("eval_loss")} for e in hist.evals]
    data["checkpoints"] = [{"name": p.name, "complete": checkpoint_problem(p) is None,
                            "problem": checkpoint_problem(p)} for p in run.all_checkpoints()]
    artefacts = {}
    for name in (ADAPTER_DIR, MERGED_DIR, GGUF_DIR):
        p = run.path / name
        if p.is_dir():
            artefacts[name] = str(p)
    data["artefacts"] = artefacts
    data["samples"] = sample_events(run)
    if st.state in ("failed", "crashed"):
        data["log_tail"] = run.log_tail(15)
    return data


def run_show(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape

    from tui_tuner.core.units import format_bytes, format_duration

    from tui_tuner.rundir.runs import stall_note

    run = _find(args)
    if run is None:
        return 2
    data = show_data(run)
    if args.json:
        print(json.dumps(data, indent=2, default=str))
        return 0
    st = run.status()
    c = Console(highlight=False)
    c.print(f"[bold]{run.name}[/]  {st.state}  step {st.step}/{st.max_steps or '?'}  "
            f"duration {format_duration(st.duration_s)}")
    c.print(f"  folder   {escape(str(run.path))}")
    stalled = stall_note(run, st)
    if stalled:
        c.print(f"  [yellow]{escape(stalled)}[/]")
    if st.backend:
        precision = st.extra.get("precision")
        c.print(f"  backend  {st.backend} ({escape(st.backend_reason or '')}) on {st.device or '?'}"
                + (f", {precision} precision" if precision else ""))
    if st.probe:
        p = st.probe
        c.print(f"  probe    measured peak {format_bytes(p.get('measured_peak_bytes'))}, with optimizer "
                f"{format_bytes(p.get('projected_peak_bytes'))} of {format_bytes(p.get('capacity_bytes'))}"
                f" (estimate {format_bytes(p.get('estimate_bytes'))})")
    if st.error:
        c.print(f"  [red]error[/]    {escape(st.error)}")
    if st.hint:
        c.print(f"  [yellow]hint[/]     {escape(st.hint)}")
    if st.message:
        c.print(f"  note     {escape(st.message)}")
    c.print("[bold]config[/] (changed from defaults)")
    for k, v in data["config_changes"].items():
        c.print(f"  {k} = {escape(json.dumps(v))}")
    if data["loss"]:
        lo = data["loss"]
        c.print(f"[bold]loss[/]  first {lo['first']:.4f}  last {lo['last']:.4f}  min {lo['min']:.4f} "
                f"({lo['steps_logged']} points)")
    for e in data["evals"]:
        if e["eval_loss"] is not None:
            c.print(f"  eval at step {e['step']}: {e['eval_loss']:.4f}")
    if data["samples"]:
        samples = data["samples"]
        cost = sum(float(e.get("seconds") or 0) for e in samples)
        c.print(f"[bold]samples[/]  {len(samples[-1]['answers'])} prompts at {len(samples)} steps, "
                f"{cost:.1f} s in all")
        for n, answer in enumerate(samples[-1]["answers"]):
            c.print(f"  [bold]{escape(answer['prompt'])}[/]")
            if answer.get("reference"):
                c.print(f"    [green]reference[/]  {escape(answer['reference'])}")
            for ev in samples:
                text = ev["answers"][n]["answer"] if n < len(ev["answers"]) else ""
                c.print(f"    step {ev['step']:>5}  {escape(' '.join(text.split()) or '(empty)')}")
    c.print("[bold]artefacts[/]")
    for ck in data["checkpoints"]:
        c.print(f"  checkpoints/{ck['name']}" + ("" if ck["complete"] else f"  [red](incomplete: {ck['problem']})[/]"))
    for name, path in data["artefacts"].items():
        c.print(f"  {name}/  {path}")
    if not data["checkpoints"] and not data["artefacts"]:
        c.print("  none yet")
    for line in data.get("log_tail", []):
        c.print(f"  [dim]{escape(line)}[/]")
    return 0


def run_attach(args: argparse.Namespace) -> int:
    from tui_tuner.commands.run_progress import follow_run

    run = _find(args)
    if run is None:
        return 2
    st = follow_run(run, interrupt_stops=args.stop_on_ctrl_c)
    return exit_status(st.state) if st.is_final else 0


def run_stop(args: argparse.Namespace) -> int:
    run = _find(args)
    if run is None:
        return 2
    print(f"{run.name}: {run.request_stop(now=args.now)}")
    return 0


def run_resume(args: argparse.Namespace) -> int:
    from tui_tuner.commands.run_progress import follow_run
    from tui_tuner.rundir.runs import RunError
    from tui_tuner.train.resume import resume_run

    run = _find(args)
    if run is None:
        return 2
    ckpt = run.latest_checkpoint()
    try:
        pid = resume_run(run, detach=args.detach)
    except RunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"resuming {run.name} (pid {pid}) from " + (f"{ckpt.name}" if ckpt else "the start (no complete checkpoint)"))
    for name, why in skipped_checkpoints(run, ckpt):
        print(f"  skipped {name}: {why}")
    if args.detach:
        print(f"  follow it: tui-tuner runs attach {run.name}")
        return 0
    return exit_status(follow_run(run).state)


def skipped_checkpoints(run, resume_from) -> list[tuple[str, str]]:
    """(name, why) of the checkpoints newer than `resume_from` that resume passes over."""
    from tui_tuner.rundir.runs import checkpoint_problem, checkpoint_step

    after = checkpoint_step(resume_from) if resume_from is not None else -1
    found = [(p.name, checkpoint_problem(p)) for p in run.all_checkpoints() if checkpoint_step(p) > after]
    return [(name, why) for name, why in found if why]


def run_rm(args: argparse.Namespace) -> int:
    from tui_tuner.rundir.runs import RunError, delete_run

    run = _find(args)
    if run is None:
        return 2
    if not args.yes:
        if not sys.stdin.isatty():
            print(f"error: not deleting {run.name} without confirmation; pass --yes.", file=sys.stderr)
            return 2
        answer = input(f"delete {run.path} and everything in it? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            print("kept.")
            return 1
    try:
        delete_run(run)
    except RunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"deleted {run.name}")
    return 0

