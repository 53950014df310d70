"""GRPO's latest sampled completions, each with its total and per-function reward (Train screen)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static


def _first_line(text: str, width: int = 160) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= width else line[: width - 1] + "…"


def completions_text(samples: list[dict[str, Any]], step: int | None) -> Text:
    """The panel's text: one block per completion, best first."""
    text = Text()
    text.append("latest completions", style="bold")
    text.append(f"  step {step}\n" if step is not None else "\n", style="dim")
    for sample in sorted(samples, key=lambda s: -(s.get("total") or 0.0)):
        total = sample.get("total")
        text.append(f"{total:+.2f} " if isinstance(total, (int, float)) else "  ?   ",
                    style="bold green" if (total or 0) > 0 else "bold red" if (total or 0) < 0 else "bold")
        rewards = sample.get("rewards") or {}
        text.append(" · ".join(f"{k} {v:.2g}" if isinstance(v, (int, float)) else f"{k} -"
                               for k, v in rewards.items()), style="dim")
        text.append("\n   ")
        text.append(_first_line(sample.get("completion", "")) or "(empty)")
        text.append("\n")
    return text


class CompletionsPanel(Static):
    """Hidden until a GRPO run writes its first `completions` event."""

    def show(self, samples: list[dict[str, Any]], step: int | None) -> None:
        self.display = bool(samples)
        if samples:
            self.update(completions_text(samples, step))
