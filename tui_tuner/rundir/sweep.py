"""Sweeps: one run per value (or per combination of values), trained one after another.

    tui-tuner sweep configs/quickstart.yaml --set lora.r=8,16,32
    tui-tuner sweep configs/quickstart.yaml --set lora.r=8,16 --set lora.alpha=16,32   # 4 runs

A `--set KEY=V1,V2,...` with several values is swept; one with a single value is a plain
override for every run. Several swept keys give their cross product. Every combination
is validated before anything is created. The runs go through the engine's queue
(`tui_tuner.rundir.runs`): the first starts at once, each next one is `queued` after the
previous and is started by the previous run's supervisor when it ends, so the sweep goes
on without the terminal or the TUI. Each run folder gets a `sweep.json` saying which
sweep it belongs to and what was varied.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SWEEP_FILE = "sweep.json"
MAX_RUNS = 64

_SHORT_KEYS = {"lora.r": "r", "lora.alpha": "alpha", "training.learning_rate": "lr", "lora.dropout": "drop",
               "training.epochs": "ep", "training.max_steps": "steps", "training.batch_size": "bs",
               "method": "", "lora.target_modules": "tm", "model.max_seq_length": "seq"}


class SweepError(ValueError):
    """The sweep cannot be planned; the message says what to change."""


@dataclass
class SweepPoint:
    """One run of a sweep: the overrides that make it and a short label such as `r8-alpha16`."""

    varied: dict[str, Any]
    overrides: list[str]
    label: str


@dataclass
class SweepPlan:
    config_path: Path
    fixed: list[str]
    keys: list[str]
    points: list[SweepPoint]
    loaded: list[Any] = field(default_factory=list)    # LoadedConfig per point, validated
    issues: list[Any] = field(default_factory=list)    # ConfigIssue, from any point

    @property
    def ok(self) -> bool:
        return bool(self.points) and not any(i.severity == "error" for i in self.issues)


def split_values(text: str) -> list[str]:
    """Split `8,16,32` at commas outside brackets, so `[q_proj,v_proj],all-linear` gives two values."""
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth = max(0, depth - 1)
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p.strip() for p in parts]


def parse_sweep_sets(sets: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """(fixed overrides, {swept key: [value texts]}) from `--set` arguments."""
    from tui_tuner.config.schema import parse_override

    fixed: list[str] = []
    swept: dict[str, list[str]] = {}
    for text in sets:
        if "=" not in text:
            raise SweepError(f"--set {text!r}: expected KEY=VALUE or KEY=V1,V2,..., e.g. --set lora.r=8,16,32")
        key, _, value = text.partition("=")
        key = key.strip()
        values = split_values(value)
        if any(v == "" for v in values) and len(values) > 1:
            raise SweepError(f"--set {text!r}: an empty value between commas; write e.g. lora.r=8,16,32")
        for v in values:
            try:
                parse_override(f"{key}={v}")
            except ValueError as exc:
                raise SweepError(str(exc)) from None
        if len(values) == 1:
            fixed.append(f"{key}={values[0]}")
        else:
            if key in swept:
                raise SweepError(f"--set {key} is swept twice; give all its values in one --set {key}=V1,V2,...")
            if len(set(values)) != len(values):
                raise SweepError(f"--set {text!r}: a value is repeated; each run would train the same config.")
            swept[key] = values
    return fixed, swept


def _label_part(key: str, value: str) -> str:
    short = _SHORT_KEYS.get(key, key.split(".")[-1])
    value_slug = re.sub(r"[^A-Za-z0-9.]+", "_", value).strip("_.") or "x"
    return f"{short}{value_slug}" if short else value_slug


def plan_sweep(config_path: str | Path, sets: list[str]) -> SweepPlan:
    """Every combination of the swept values, each loaded and validated like `config check` would.

    Raises `SweepError` for a malformed `--set`, nothing to sweep, or too many runs; config
    problems are returned as issues so the caller can print them all.
    """
    from tui_tuner.config.schema import load_config, parse_override

    fixed, swept = parse_sweep_sets(sets)
    if not swept:
        raise SweepError("nothing to sweep: give at least one key several values, e.g. --set lora.r=8,16,32 "
                         "(two keys give their cross product).")
    keys = list(swept)
    combos = list(itertools.product(*(swept[k] for k in keys)))
    if len(combos) > MAX_RUNS:
        raise SweepError(f"{len(combos)} runs is more than {MAX_RUNS}; sweep fewer values at a time.")
    plan = SweepPlan(Path(config_path), fixed, keys, [])
    seen: set[str] = set()
    for combo in combos:
        overrides = fixed + [f"{k}={v}" for k, v in zip(keys, combo)]
        loaded = load_config(config_path, overrides)
        label = "-".join(_label_part(k, v) for k, v in zip(keys, combo))
        if label in seen:
            label = f"{label}-{len(seen)}"
        seen.add(label)
        varied = {k: parse_override(f"{k}={v}")[1] for k, v in zip(keys, combo)}
        plan.points.append(SweepPoint(varied, overrides, label))
        plan.loaded.append(loaded)
        for issue in loaded.issues:
            if issue.format() not in {i.format() for i in plan.issues}:
                plan.issues.append(issue)
    return plan


def run_names(plan: SweepPlan) -> list[str]:
    """The run name prefix of each point: the config's run name (or model-method) plus the point's label."""
    from tui_tuner.core.names import run_name_problem, slug
    from tui_tuner.rundir.runs import default_run_name

    names = []
    for point, loaded in zip(plan.points, plan.loaded):
        base = default_run_name(loaded.config)
        name = f"{base}-{point.label}"
        if run_name_problem(name):
            name = slug(name)
        names.append(name[:79])
    return names


def create_sweep(plan: SweepPlan, *, start: bool = True) -> list[Any]:
    """Create one queued run per point, chained so each starts when the previous ends; start the first.

    Returns the RunDirs in order. Raises `tui_tuner.rundir.runs.RunError` when a run cannot be created.
    """
    from tui_tuner.rundir.runs import RunError, create_run, start_worker

    if not plan.ok:
        raise SweepError("the sweep has config errors; fix them first.")
    sweep_id = time.strftime("%Y%m%d-%H%M%S")
    runs = []
    previous = None
    names = run_names(plan)
    for index, (point, loaded, name) in enumerate(zip(plan.points, plan.loaded, names)):
        run = create_run(loaded.config, loaded.base_dir, name, queued_after=previous,
                         source_config=plan.config_path)
        record = {"sweep": sweep_id, "index": index, "of": len(plan.points), "keys": plan.keys,
                  "varied": point.varied, "label": point.label, "fixed": plan.fixed,
                  "config": str(plan.config_path.resolve()), "previous": previous.name if previous else None}
        (run.path / SWEEP_FILE).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        runs.append(run)
        previous = run
    if start and runs:
        try:
            start_worker(runs[0])
        except RunError:
            # another viewer's queue check (`runs ls`, the TUI) may have started it a moment earlier
            if runs[0].status().state not in ("running", "stopping", "finished"):
                raise
    return runs


def sweep_record(run_path: str | Path) -> dict[str, Any] | None:
    """A run's `sweep.json`, or None when it is not part of a sweep."""
    try:
        return json.loads((Path(run_path) / SWEEP_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def sweep_runs(runs_dir: str | Path, sweep_id: str) -> list[Any]:
    """The runs of one sweep, in sweep order."""
    from tui_tuner.rundir.runs import list_runs

    members = []
    for run in list_runs(runs_dir):
        record = sweep_record(run.path)
        if record and record.get("sweep") == sweep_id:
            members.append((record.get("index", 0), run))
    return [run for _, run in sorted(members, key=lambda pair: pair[0])]
