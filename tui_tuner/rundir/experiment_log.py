"""The experiment log: one row per run, the table a course asks learners to keep by hand.

    tui-tuner runs table                 # all runs, a rich table
    tui-tuner runs table --markdown      # paste into notes
    tui-tuner runs table --csv RUN1 RUN2

Everything comes from the run directories (config.yaml, status.json, events.jsonl,
adapter/, and the newest report `tui-tuner eval` wrote in eval/), so the table is the
same whether a run was started from the CLI, the TUI or a sweep.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui_tuner.core.units import format_bytes, format_duration
from tui_tuner.rundir.files import EVAL_DIR

"""`tui-tuner eval RUN` writes `<run>/eval/eval-<time>[-checkpoint-N].json` (see tui_tuner.inference.evaluate)."""
SCORE_KEYS = ("exact_match", "token_f1", "rouge_l", "perplexity")

COLUMNS = (
    ("run", "run"), ("model", "model"), ("objective", "objective"), ("method", "method"), ("r", "r"),
    ("alpha", "alpha"),
    ("lr", "lr"), ("epochs_steps", "epochs/steps"), ("batch", "batch"), ("seq_len", "seq len"),
    ("train_loss", "final train loss"), ("objective_metric", "objective metric"), ("eval_loss", "eval loss"),
    ("eval_scores", "eval scores"),
    ("wall_time", "wall time"), ("peak_memory", "peak memory"), ("adapter_size", "adapter"),
    ("state", "state"),
)

@dataclass
class RunRecord:
    """The figures of one run, raw (numbers) for JSON/CSV, formatted by `format_cell` for tables."""

    values: dict[str, Any]
    losses: list[tuple[int, float]]
    eval_losses: list[tuple[int, float]]

    def __getitem__(self, key: str) -> Any:
        return self.values.get(key)


def _short_model(name: str) -> str:
    return name.rstrip("/").split("/")[-1] if "/" in name else name


def adapter_bytes(adapter_dir: Path) -> int | None:
    """Size of the adapter weights (adapter_model.safetensors / .bin), not the tokenizer files saved beside them."""
    weights = [p for p in (adapter_dir / "adapter_model.safetensors", adapter_dir / "adapter_model.bin") if p.is_file()]
    if weights:
        return sum(p.stat().st_size for p in weights)
    return folder_bytes(adapter_dir)


def folder_bytes(path: Path) -> int | None:
    """Total size of the files under `path`, or None when it does not exist."""
    if not path.is_dir():
        return None
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def eval_report(run_path: Path) -> dict[str, Any] | None:
    """The newest eval report of the run's final adapter (else of any checkpoint), when `tui-tuner eval` left one."""
    folder = Path(run_path) / EVAL_DIR
    if not folder.is_dir():
        return None
    reports = sorted(folder.glob("eval-*.json"), key=lambda p: (p.stat().st_mtime, p.name))
    final = [p for p in reports if "-checkpoint-" not in p.name]
    for path in reversed(final or reports):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            return data
    return None


def eval_scores(report: dict[str, Any] | None) -> dict[str, float]:
    """The tuned model's scores in an eval report: eval_loss (held-out loss) and exact_match, token_f1, ..."""
    if not report:
        return {}
    models = report.get("models")
    summary = None
    if isinstance(models, dict) and models:
        summary = models.get("tuned") or next(iter(models.values()))
    if not isinstance(summary, dict):
        return {}
    scores = {k: float(summary[k]) for k in SCORE_KEYS
              if isinstance(summary.get(k), (int, float)) and not isinstance(summary.get(k), bool)}
    if isinstance(summary.get("loss"), (int, float)):
        scores["eval_loss"] = float(summary["loss"])
    return scores


def peak_memory_bytes(status, history) -> int | None:
    """The highest memory figure the run recorded: a worker summary's peak, the probe's, or GPU samples."""
    candidates = []
    for source in (status.extra, history.summary or {}):
        for key in ("peak_memory_bytes", "peak_mem_bytes", "measured_peak_bytes", "max_memory_allocated"):
            if isinstance(source.get(key), (int, float)):
                candidates.append(int(source[key]))
    probe = status.probe or history.probe or {}
    for key in ("measured_peak_bytes", "peak_bytes"):
        if isinstance(probe.get(key), (int, float)):
            candidates.append(int(probe[key]))
    for sample in history.gpu:
        if isinstance(sample.get("mem_used"), (int, float)):
            candidates.append(int(sample["mem_used"]))
    return max(candidates) if candidates else None


OBJECTIVE_METRICS = {
    "dpo": ("rewards/accuracies", "pref acc"), "orpo": ("rewards/accuracies", "pref acc"),
    "kto": ("rewards/margins", "margin"), "reward": ("accuracy", "acc"), "grpo": ("reward", "reward"),
}
"""objective -> (the logged metric that says most about its progress, its short label)."""


def objective_metric(objective: str, logs: list[dict[str, Any]]) -> tuple[str, float] | None:
    """(label, last value) of the objective's headline metric, or None (SFT: the loss column says it)."""
    key, label = OBJECTIVE_METRICS.get(objective, (None, None))
    for event in reversed(logs):
        if key and isinstance(event.get(key), (int, float)):
            return label, float(event[key])
    return None


def run_record(run) -> RunRecord:
    """One experiment-log row for a `tui_tuner.rundir.runs.RunDir`."""
    from tui_tuner.rundir.events import load_history
    from tui_tuner.rundir.sweep import sweep_record

    status = run.status()
    history = load_history(run.events_path)
    try:
        cfg = run.config()
    except Exception:  # an unreadable config still gets a row: what the status says
        cfg = None
    losses = history.losses
    eval_losses = [(int(e.get("step") or 0), float(e["eval_loss"])) for e in history.evals
                   if isinstance(e.get("eval_loss"), (int, float))]
    train_loss = status.loss if status.loss is not None else (losses[-1][1] if losses else None)
    final_eval = eval_losses[-1][1] if eval_losses else status.eval_loss
    report = eval_report(run.path)
    scores = eval_scores(report)
    if final_eval is None and "eval_loss" in scores:
        final_eval = scores["eval_loss"]
    values: dict[str, Any] = {"run": run.name, "state": status.state, "wall_time_s": status.duration_s,
                              "train_loss": train_loss, "eval_loss": final_eval,
                              "eval_scores": {k: v for k, v in scores.items() if k != "eval_loss"},
                              "peak_memory_bytes": peak_memory_bytes(status, history),
                              "adapter_bytes": adapter_bytes(run.adapter_dir), "steps_done": status.step}
    if status.state == "unreadable":
        values["error"] = status.error
    sweep = sweep_record(run.path)
    if sweep and sweep.get("label"):
        values["sweep_label"] = sweep["label"]
    if cfg is not None:
        t = cfg.training
        lora = cfg.method in ("lora", "qlora")
        values.update({
            "model": cfg.model.name_or_path, "method": cfg.method, "objective": cfg.objective,
            "objective_metric": objective_metric(cfg.objective, history.logs),
            "r": cfg.lora.r if lora else None, "alpha": cfg.lora.alpha if lora else None,
            "lr": t.learning_rate, "epochs": t.epochs, "max_steps": t.max_steps,
            "batch_size": t.batch_size, "grad_accumulation": t.grad_accumulation,
            "seq_len": cfg.model.max_seq_length,
        })
    return RunRecord(values, losses, eval_losses)






def format_cell(record: RunRecord, key: str) -> str:
    """A table cell for `key` (one of COLUMNS)."""
    v = record.values
    if key == "model":
        return _short_model(v.get("model") or "-")
    if key in ("r",):
        return "-" if v.get("r") is None else str(v["r"])
    if key == "alpha":
        return "-" if v.get("alpha") is None else f"{v['alpha']:g}"
    if key == "lr":
        return "-" if v.get("lr") is None else f"{v['lr']:.0e}"
    if key == "epochs_steps":
        if v.get("max_steps"):
            return f"{v['max_steps']} steps"
        return "-" if v.get("epochs") is None else f"{v['epochs']:g} ep"
    if key == "batch":
        if v.get("batch_size") is None:
            return "-"
        acc = v.get("grad_accumulation") or 1
        return f"{v['batch_size']}x{acc}" if acc > 1 else str(v["batch_size"])
    if key in ("train_loss", "eval_loss"):
        return "-" if v.get(key) is None else f"{v[key]:.4f}"
    if key == "objective_metric":
        metric = v.get("objective_metric")
        return "-" if not metric else f"{metric[0]} {metric[1]:.3g}"
    if key == "eval_scores":
        scores = v.get("eval_scores") or {}
        return " ".join(f"{k}={s:.3g}" for k, s in scores.items()) or "-"
    if key == "wall_time":
        return format_duration(v.get("wall_time_s"))
    if key == "peak_memory":
        return format_bytes(v.get("peak_memory_bytes"))
    if key == "adapter_size":
        return format_bytes(v.get("adapter_bytes"))
    if key == "seq_len":
        return "-" if v.get("seq_len") is None else str(v["seq_len"])
    if key == "state" and v.get("state") == "unreadable" and v.get("error"):
        return f"unreadable: {v['error']}"
    value = v.get(key)
    return "-" if value is None else str(value)


def records(runs) -> list[RunRecord]:
    """One record per run; a run that cannot be read gets a row whose state says why."""
    out = []
    for run in runs:
        try:
            out.append(run_record(run))
        except Exception as exc:  # one broken run must never hide the others
            why = f"{type(exc).__name__}: {exc}"[:200]
            out.append(RunRecord({"run": run.name, "state": "unreadable", "error": why}, [], []))
    return out


def to_markdown(rows: list[RunRecord]) -> str:
    """A GitHub-flavoured Markdown table of the runs."""
    header = "| " + " | ".join(title for _, title in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    body = ["| " + " | ".join(format_cell(r, key).replace("|", "\\|") for key, _ in COLUMNS) + " |" for r in rows]
    return "\n".join([header, rule, *body]) + "\n"


CSV_FIELDS = ("run", "model", "objective", "method", "r", "alpha", "lr", "epochs", "max_steps", "batch_size",
              "grad_accumulation", "seq_len", "train_loss", "eval_loss", "eval_scores", "wall_time_s",
              "peak_memory_bytes", "adapter_bytes", "steps_done", "state")


def to_csv(rows: list[RunRecord]) -> str:
    """CSV with raw numbers (seconds, bytes) for spreadsheets; eval scores as `name=value;...`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for r in rows:
        out = []
        for key in CSV_FIELDS:
            value = r.values.get(key)
            if key == "eval_scores":
                value = ";".join(f"{k}={s:g}" for k, s in (value or {}).items())
            out.append("" if value is None else value)
        writer.writerow(out)
    return buffer.getvalue()


_STAMP = re.compile(r"-\d{8}-\d{6}(-\d+)?$")
"""The `-yyyymmdd-hhmmss[-n]` that `create_run` appends to every run name."""


def _differing_part(names: list[str]) -> list[str]:
    """What tells the names apart: each without its time stamp and the `-`-separated words all share."""
    words = [_STAMP.sub("", n).split("-") for n in names]
    shortest = min(len(w) for w in words)
    head = 0
    while head < shortest - 1 and len({w[head] for w in words}) == 1:
        head += 1
    tail = 0
    while tail < shortest - head - 1 and len({w[-1 - tail] for w in words}) == 1:
        tail += 1
    return ["-".join(w[head:len(w) - tail]) for w in words]


def _letters(n: int) -> list[str]:
    """A, B, ..., Z, AA, AB, ...: labels that say nothing but are short."""
    out = []
    for i in range(n):
        label, i = "", i + 1
        while i:
            i, rem = divmod(i - 1, 26)
            label = chr(65 + rem) + label
        out.append(label)
    return out


SHORT_LABEL_MAX = 16


def short_labels(rows: list[RunRecord]) -> list[str]:
    """A short, unique column label per run: its sweep label (`r8`), else the part of the names that
    differs between the runs, else A, B, C. Full names go in a legend beside the table."""
    def usable(labels: list[Any]) -> bool:
        return (all(isinstance(x, str) and x and len(x) <= SHORT_LABEL_MAX for x in labels)
                and len(set(labels)) == len(labels))

    sweep = [r["sweep_label"] for r in rows]
    if usable(sweep):
        return sweep
    names = [str(r["run"]) for r in rows]
    differing = _differing_part(names) if len(names) > 1 else [_STAMP.sub("", n) for n in names]
    return differing if usable(differing) else _letters(len(rows))


SIDE_CELL_MAX = 16


def _side_cell_width(text: str) -> int:
    """Columns a cell needs on its side: all of it up to SIDE_CELL_MAX, else it wraps between words."""
    if len(text) <= SIDE_CELL_MAX:
        return len(text)
    return max([SIDE_CELL_MAX, *(len(word) for word in text.split())])


def _side_width(label_w: int, column_widths: list[int]) -> int:
    """Width of a rich Table (default box, one space of padding) with these column contents."""
    return sum(w + 3 for w in [label_w, *column_widths]) + 1


def to_rich_tables(rows: list[RunRecord], title: str = "experiments", width: int | None = None) -> list[Any]:
    """What `runs table` prints: rich renderables, never breaking a run name.

    One row per run when that fits in `width` columns. Otherwise turned on its side (one column per
    run, one row per field), which is how a few runs of a sweep fit 80 columns; when the full run names
    make that too wide, the columns get short labels (`short_labels`) and a legend maps each label to
    its run, and runs that still do not fit continue in further tables.
    """
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    cells = [[Text(format_cell(r, key)) for key, _ in COLUMNS] for r in rows]
    natural = sum(max([len(t)] + [len(c[i].plain) for c in cells]) + 3 for i, (_, t) in enumerate(COLUMNS)) + 1
    numeric = {"r", "alpha", "lr", "train_loss", "eval_loss", "wall_time", "peak_memory", "adapter_size", "seq_len"}
    if width is None or natural <= width:
        table = Table(title=title, title_justify="left")
        for key, title_text in COLUMNS:
            table.add_column(title_text, justify="right" if key in numeric else "left", overflow="fold",
                             no_wrap=key == "run")
        for row in cells:
            table.add_row(*row)
        return [table]
    fields = COLUMNS[1:]
    field_w = max(len(t) for _, t in fields)
    names = [row[0].plain for row in cells]
    values_w = [max(_side_cell_width(c.plain) for c in row[1:]) for row in cells]
    labels = names
    if _side_width(field_w, [max(len(n), v) for n, v in zip(names, values_w)]) > width:
        labels = short_labels(rows)
    widths = [max(len(lab), v) for lab, v in zip(labels, values_w)]
    groups: list[list[int]] = [[]]
    for i, w in enumerate(widths):
        if groups[-1] and _side_width(field_w, [widths[j] for j in groups[-1]] + [w]) > width:
            groups.append([])
        groups[-1].append(i)
    out: list[Any] = []
    for n, group in enumerate(groups):
        table = Table(title=title if n == 0 else None, title_justify="left")
        table.add_column("", no_wrap=True)
        for i in group:
            table.add_column(escape(labels[i]), justify="right", min_width=len(labels[i]))
        for f, (_, title_text) in enumerate(fields, start=1):
            table.add_row(title_text, *(cells[i][f] for i in group))
        out.append(table)
    if labels is not names:
        legend = Text(no_wrap=True)
        label_w = max(len(lab) for lab in labels)
        for lab, name in zip(labels, names):
            legend.append(lab.ljust(label_w), "bold")
            legend.append(f"  {name}\n")
        legend.rstrip()
        out.append(legend)
    return out
