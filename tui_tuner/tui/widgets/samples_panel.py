"""The Train screen's Samples panel: the sample prompts' answers by step, as columns.

Rows are the prompts (with the reference answer when it came from the eval set), columns the
last steps that fit the width ("step 20", "step 40", ...), so the learner watches the answers
change while the loss falls. The title says what the answers cost.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

PROMPT_WIDTH = 18
MIN_STEP_WIDTH = 18
MAX_CELL_LINES = 4
REFERENCE_MIN_WIDTH = 100
"""From this panel width on, a last column shows the reference answer (at 120 columns the panel is 116 wide)."""


def _cut(text: str, width: int, lines: int = MAX_CELL_LINES) -> str:
    """`text` on one paragraph, cut so it wraps to at most `lines` lines of `width`."""
    flat = " ".join(str(text).split())
    limit = max(1, width * lines - 1)
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def samples_cost(samples: list[dict[str, Any]], elapsed_s: float | None) -> str:
    """"3 prompts · 0.8 s a round · 2% of the run" for the panel's title."""
    if not samples:
        return ""
    seconds = [float(e.get("seconds") or 0.0) for e in samples]
    per_round = sum(seconds) / len(seconds)
    text = f"{len(samples[-1]['answers'])} prompts · {per_round:.1f} s a round"
    if elapsed_s:
        text += f" · {100 * sum(seconds) / elapsed_s:.0f}% of the run"
    return text


def samples_table(samples: list[dict[str, Any]], width: int) -> Table | Text:
    """Prompts down, the last steps that fit `width` across."""
    if not samples:
        return Text("No sample answers yet: they come at each eval and checkpoint step when the config has a "
                    "`samples:` section (prompts, or from_eval: N).", style="dim")
    has_reference = any(a.get("reference") for a in samples[-1]["answers"])
    room = max(MIN_STEP_WIDTH, width - PROMPT_WIDTH - 2)
    columns = max(1, min(len(samples), room // MIN_STEP_WIDTH - (1 if has_reference and width >= REFERENCE_MIN_WIDTH else 0)))
    shown = samples[-columns:]
    show_reference = has_reference and width >= REFERENCE_MIN_WIDTH
    cell = max(8, (room - (MIN_STEP_WIDTH if show_reference else 0)) // columns - 1)
    table = Table(box=None, padding=(0, 1, 0, 0), expand=True, show_header=True, header_style="bold")
    table.add_column("prompt", width=PROMPT_WIDTH, style="dim")
    for ev in shown:
        table.add_column(f"step {ev['step']}", ratio=1)
    if show_reference:
        table.add_column("reference", ratio=1, style="green")
    prompts = [a["prompt"] for a in samples[-1]["answers"]]
    for n, prompt in enumerate(prompts):
        row: list[Any] = [_cut(prompt, PROMPT_WIDTH, 2)]
        for ev in shown:
            answers = ev["answers"]
            answer = answers[n]["answer"] if n < len(answers) else ""
            row.append(Text(_cut(answer, cell) or "(empty)", style="" if answer else "dim"))
        if show_reference:
            row.append(_cut(samples[-1]["answers"][n].get("reference") or "", cell))
        table.add_row(*row)
    return table


def compare_samples_table(runs: list[tuple[str, list[dict[str, Any]]]], width: int) -> Table | Text:
    """Prompts down, each run's latest answers across ("run-a · step 80"), for the Compare screen.

    Prompts are matched by their text, so runs whose sample prompts differ show a blank where a
    run never answered that prompt.
    """
    latest = [(name, samples[-1]) for name, samples in runs if samples]
    if not latest:
        return Text("None of these runs has sample answers: a config's `samples:` section (prompts, or "
                    "from_eval: N) records them at each eval and checkpoint step.", style="dim")
    prompts: list[str] = []
    for _, event in latest:
        for answer in event["answers"]:
            if answer["prompt"] not in prompts:
                prompts.append(answer["prompt"])
    cell = max(8, (width - PROMPT_WIDTH - 2) // max(1, len(runs)) - 1)
    table = Table(box=None, padding=(0, 1, 0, 0), expand=True, show_header=True, header_style="bold")
    table.add_column("prompt", width=PROMPT_WIDTH, style="dim")
    by_run = {name: event for name, event in latest}
    for name, _ in runs:
        event = by_run.get(name)
        table.add_column(f"{name} · step {event['step']}" if event else f"{name} · no samples", ratio=1)
    for prompt in prompts:
        row: list[Any] = [_cut(prompt, PROMPT_WIDTH, 2)]
        for name, _ in runs:
            event = by_run.get(name)
            answer = next((a["answer"] for a in event["answers"] if a["prompt"] == prompt), None) if event else None
            if answer is None:
                row.append(Text("—", style="dim"))
            else:
                row.append(Text(_cut(answer, cell) or "(empty)", style="" if answer else "dim"))
        table.add_row(*row)
    return table


class SamplesPanel(Static):
    """The sample answers table; `show(samples, elapsed_s)` redraws it when they changed."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._shown: tuple = ()
        self._last: tuple[list[dict[str, Any]], float | None] = ([], None)

    def show(self, samples: list[dict[str, Any]], elapsed_s: float | None) -> None:
        self._last = (samples, elapsed_s)
        if not self.size.width:
            return  # hidden: drawn when it gets a size
        key = (tuple(e["step"] for e in samples), self.size.width)
        self.border_title = "samples" + (f" · {samples_cost(samples, elapsed_s)}" if samples else "")
        if key == self._shown:
            return
        self._shown = key
        self.update(samples_table(samples, max(40, self.size.width - 2)))

    def on_resize(self) -> None:
        self._shown = ()
        self.show(*self._last)
