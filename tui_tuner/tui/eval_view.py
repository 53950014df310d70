"""What the Eval view draws from an `EvalReport`: the summary table, prompt rows and the selected prompt.

SFT reports show loss, perplexity and scored answers; reports of the other objectives (DPO, ORPO,
KTO, reward models, GRPO) show the objective's own scores and per-example rows, laid out by
`tui_tuner.inference.objective_eval` (the same rows as the markdown report).

No textual here (rich renderables only), so the formatting is testable on its own and the
screen module stays about widgets and workers. Also the `tui-tuner eval` command line the
screen runs and the parser of its `--progress-lines` output.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from rich.console import Group
from rich.table import Table
from rich.text import Text

from tui_tuner.inference.evaluate import EvalReport, ModelSummary, PromptEval
from tui_tuner.tui.text import short_path

FLAG = "⚠"
FLAG_STYLE = "bold red"
LOWER_IS_BETTER = {"loss", "perplexity", "possible_hallucinations"}
SUMMARY_COLUMNS = (("loss", "loss", 3), ("perplexity", "perplexity", 2), ("exact_match", "exact match", 3),
                   ("token_f1", "token F1", 3), ("rouge_l", "ROUGE-L", 3))
PROGRESS_LINE = re.compile(r"^progress (\d+)/(\d+) (.*)$")


def eval_command(run_path: Path, runs_dir: Path, *, compare_base: bool) -> list[str]:
    """The `tui-tuner eval` command the Eval view runs as a subprocess (same Python, progress as lines)."""
    argv = [sys.executable, "-m", "tui_tuner", "eval", str(run_path), "--runs-dir", str(runs_dir), "--progress-lines"]
    return argv + (["--compare-base"] if compare_base else [])


def parse_progress(line: str) -> tuple[int, int, str] | None:
    """(done, total, what) from one `progress DONE/TOTAL WHAT` line, else None."""
    match = PROGRESS_LINE.match(line.strip())
    return (int(match[1]), int(match[2]), match[3]) if match else None


def _fmt(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _better(key: str, mine: float | None, other: float | None) -> bool:
    if mine is None or other is None or mine == other:
        return False
    return mine < other if key in LOWER_IS_BETTER else mine > other


def summary_table(report: EvalReport) -> Table:
    """One row per model (tuned, base): held-out loss, perplexity, mean scores, answers flagged as possible
    hallucinations; the better value in bold green. Short headers so it fits 80 columns."""
    table = Table(box=None, padding=(0, 1), header_style="bold", expand=False)
    table.add_column("model")
    for _, label, _ in SUMMARY_COLUMNS:
        table.add_column(label, justify="right")
    table.add_column("flagged", justify="right")
    models = report.models
    for name, summary in models.items():
        other = next((s for n, s in models.items() if n != name), None)
        cells: list[Text | str] = [Text(name, style="bold" if name == "tuned" else "")]
        for key, _, digits in SUMMARY_COLUMNS:
            value = getattr(summary, key)
            better = other is not None and _better(key, value, getattr(other, key))
            cells.append(Text(_fmt(value, digits), style="bold green" if better else ""))
        cells.append(_flag_count(summary))
        table.add_row(*cells)
    return table


def _flag_count(summary: ModelSummary) -> Text:
    text = f"{summary.possible_hallucinations} / {summary.answered}"
    return Text(f"{FLAG} {text}" if summary.possible_hallucinations else text,
                style=FLAG_STYLE if summary.possible_hallucinations else "")


def prompt_columns(report: EvalReport) -> list[tuple[str, str]]:
    """(key, label) of the prompts table: #, prompt, then EM / F1 / ROUGE-L per model, then the flags."""
    columns = [("n", "#"), ("prompt", "prompt")]
    for model in report.models:
        columns += [(f"{model}-em", f"{model} EM"), (f"{model}-f1", "F1"), (f"{model}-rl", "R-L")]
    return columns + [("flags", "flag")]


def flags_width(report: EvalReport) -> int:
    """Cells the flag column needs: "⚠ " and the flagged models' names, at least its header."""
    widths = [len(",".join(m for m, a in p.answers.items() if a.possible_hallucination)) for p in report.prompts]
    longest = max(widths, default=0)
    return max(4, longest + 2 if longest else 0)


def prompt_cells(report: EvalReport, prompt: PromptEval, prompt_width: int) -> list[Text | str]:
    """One prompts-table row; the prompt is cut to `prompt_width` cells, flagged models are named in red."""
    one_line = " ".join(prompt.prompt.split())
    if len(one_line) > prompt_width:
        one_line = one_line[: max(1, prompt_width - 1)] + "…"
    flagged = [m for m in report.models if m in prompt.answers and prompt.answers[m].possible_hallucination]
    cells: list[Text | str] = [str(prompt.index + 1), Text(one_line, style=FLAG_STYLE if flagged else "")]
    for model in report.models:
        answer = prompt.answers.get(model)
        if answer is None:
            cells += ["–", "–", "–"]
            continue
        cells += [Text("✓" if answer.exact_match else "·", style="green" if answer.exact_match else "dim"),
                  f"{answer.token_f1:.2f}", f"{answer.rouge_l:.2f}"]
    cells.append(Text(f"{FLAG} " + ",".join(flagged), style=FLAG_STYLE) if flagged else Text(""))
    return cells


def prompt_detail(report: EvalReport, prompt: PromptEval) -> Text:
    """The selected prompt in full: prompt, reference, each model's answer with its scores and flag reason."""
    where = f" (line {prompt.line})" if prompt.line else ""
    text = Text.assemble((f"#{prompt.index + 1}{where}  prompt  ", "bold"), prompt.prompt.strip(), "\n",
                         ("reference  ", "bold"), (prompt.reference.strip(), "green"))
    for model in report.models:
        answer = prompt.answers.get(model)
        if answer is None:
            continue
        text.append(f"\n{model}  ", style="bold")
        text.append(answer.answer.strip() or "(empty answer)")
        text.append(f"\n    EM {answer.exact_match:.0f} · F1 {answer.token_f1:.2f} · ROUGE-L {answer.rouge_l:.2f}"
                    f" · {answer.tokens} tokens, {answer.finish_reason}", style="dim")
        if answer.possible_hallucination:
            text.append(f"\n    {FLAG} possible hallucination: {answer.hallucination_reason}", style=FLAG_STYLE)
    return text


def report_heading(report: EvalReport, path: Path) -> Text:
    """Where the report came from: data, examples, date and file; its notes after."""
    data = short_path(report.data) if Path(report.data).is_file() else report.data
    text = Text.assemble(("held-out data ", "dim"), data, f" ({report.examples} examples)", (" · ", "dim"),
                         report.created.replace("T", " "), (" · ", "dim"), (path.name, "dim"))
    for note in report.notes:
        text.append(f"\nnote: {note}", style="italic dim")
    return text


# ---------------------------------------------------------------------------- objectives beyond SFT


def objective_summary(section: dict) -> Group:
    """What the headline number means (one line), then one row per score with a column per model;
    the better headline value in bold green."""
    from tui_tuner.inference.objective_eval import headline_line, summary_rows

    models, rows = summary_rows(section)
    table = Table(box=None, padding=(0, 1), header_style="bold", expand=False)
    table.add_column(section["objective"].upper())
    for model in models:
        table.add_column(model, justify="right")
    values = section.get("models") or {}
    for key, label, cells in rows:
        headline = key == section.get("headline")
        styled: list[Text | str] = [Text(label, style="bold" if headline else "")]
        for model, cell in zip(models, cells):
            others = [values[m].get(key) for m in models if m != model]
            better = headline and others and all(_higher(values[model].get(key), o) for o in others)
            styled.append(Text(cell, style="bold green" if better else ("bold" if headline else "")))
        table.add_row(*styled)
    return Group(Text(headline_line(section), style="italic"), table)


def _higher(mine, other) -> bool:
    return isinstance(mine, (int, float)) and isinstance(other, (int, float)) and mine > other


def objective_rows(section: dict, prompt_width: int) -> tuple[list[str], list[list[Text | str]]]:
    """(labels, rows) of the per-example table, the prompt cut to `prompt_width` cells and
    a negative margin (the model prefers the rejected answer) in red."""
    from tui_tuner.inference.objective_eval import example_table

    labels, rows = example_table(section)
    styled_rows = []
    for row in rows:
        cells: list[Text | str] = list(row)
        if len(row[1]) > prompt_width:
            cells[1] = row[1][: max(1, prompt_width - 1)] + "…"
        first_score = 3 if section["objective"] == "kto" else 2  # after line, prompt (and KTO's label)
        for i in range(first_score, len(row)):
            negative_margin = labels[i].endswith("margin") and row[i].startswith("-")
            cells[i] = Text(row[i], style="red" if negative_margin else "", justify="right")
        styled_rows.append(cells)
    return labels, styled_rows


def objective_detail(section: dict, index: int) -> Text:
    """One example in full: its prompt, the answers compared (or each model's answer) and each model's scores
    (chosen and rejected log-probabilities and their margin; each reward function's score and the total)."""
    from tui_tuner.inference.objective_eval import format_value

    models = list(section.get("models") or {})
    items = [(m, (section["models"][m].get("items") or [])) for m in models]
    items = [(m, it[index]) for m, it in items if index < len(it)]
    if not items:
        return Text("")
    first = items[0][1]
    text = Text.assemble((f"line {first.get('line')}  prompt  ", "bold"), str(first.get("prompt", "")).strip())
    for key, style in (("chosen", "green"), ("rejected", "red"), ("completion", "")):
        if first.get(key):
            label = f"{key} ({first['label']})" if key == "completion" and first.get("label") else key
            text.append(f"\n{label}  ", style="bold")
            text.append(str(first[key]).strip(), style=style)
    for model, item in items:
        text.append(f"\n{model}  ", style="bold")
        if "answer" in item:
            text.append((str(item["answer"]).strip() or "(empty answer)") + "\n    ")
        scores = [f"{key.replace('_', ' ')} {format_value(value, 2)}" for key, value in item.items()
                  if key != "line" and isinstance(value, (int, float))]
        scores += [f"{name} {format_value(value, 2)}" for name, value in (item.get("rewards") or {}).items()]
        text.append(" · ".join(scores), style="dim")
    return text
