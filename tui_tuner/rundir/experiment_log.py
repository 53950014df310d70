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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui_tuner.core.units import format_bytes, format_duration
from tui_tuner.rundir.files import EVAL_DIR

"""`tui-tuner eval RUN` writes `<run>/eval/eval-<time>[-checkpoint-N].json` (see tui_tuner.inference.evaluate)."""
SCORE_KEYS = ("exact_match", "token_f1", "rouge_l", "perplexity")

COLUMNS = (
    ("run", "run"), ("model", "model"), ("method", "method"), ("r", "r"), ("alpha", "alpha"),
    ("lr", "lr"), ("epochs_steps", "epochs/steps"), ("batch", "batch"), ("seq_len", "seq len"),
    ("train_loss", "final train loss"), ("eval_loss", "eval loss"), ("eval_scores", "eval scores"),
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


def run_record(run) -> RunRecord:
    """One experiment-log row for a `tui_tuner.rundir.runs.RunDir`."""
    from tui_tuner.rundir.events import load_history

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
    if cfg is not None:
        t = cfg.training
        lora = cfg.method in ("lora", "qlora")
        values.update({
            "model": cfg.model.name_or_path, "method": cfg.method,
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


CSV_FIELDS = ("run", "model", "method", "r", "alpha", "lr", "epochs", "max_steps", "batch_size",
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


def to_rich_table(rows: list[RunRecord], title: str = "experiments", width: int | None = None):
    """A rich Table of the runs (the terminal view of `runs table`).

    One row per run when that fits in `width` columns; otherwise turned on its side (one
    column per run, one row per field), which is how a few runs of a sweep fit 80 columns.
    """
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    cells = [[Text(format_cell(r, key)) for key, _ in COLUMNS] for r in rows]
    natural = sum(max([len(t)] + [len(c[i].plain) for c in cells]) + 3 for i, (_, t) in enumerate(COLUMNS)) + 1
    numeric = {"r", "alpha", "lr", "train_loss", "eval_loss", "wall_time", "peak_memory", "adapter_size", "seq_len"}
    table = Table(title=title, title_justify="left")
    if width is None or natural <= width:
        for key, title_text in COLUMNS:
            table.add_column(title_text, justify="right" if key in numeric else "left", overflow="fold")
        for row in cells:
            table.add_row(*row)
        return table
    table.add_column("")
    for row in cells:
        table.add_column(escape(row[0].plain), justify="right", overflow="fold")
    for i, (_, title_text) in enumerate(COLUMNS[1:], start=1):
        table.add_row(title_text, *(row[i] for row in cells))
    return table
