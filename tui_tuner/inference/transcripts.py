"""Chat transcripts saved beside the run they were made with: `<run>/chats/chat-<time>.md` and `.jsonl`.

A transcript is the list of turns shown in the chat: user messages and answers, each
answer tagged with the model that gave it (`tuned` or `base`) and how it ended.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from tui_tuner.rundir.files import CHATS_DIR


@dataclass
class Turn:
    """One line of a chat: a user message or an answer."""

    role: Literal["system", "user", "assistant"]
    content: str
    model: str | None = None
    """For answers: `tuned` or `base`."""
    info: dict = field(default_factory=dict)
    """For answers: tokens, tokens/s, finish reason, truncation note."""


def history_for(turns: list[Turn], model: str = "tuned") -> list[dict[str, str]]:
    """The conversation one model sees: every user message and that model's own answers."""
    out = []
    for turn in turns:
        if turn.role == "assistant" and turn.model not in (None, model):
            continue
        out.append({"role": turn.role, "content": turn.content})
    return out


def transcript_markdown(turns: list[Turn], title: str, settings: dict | None = None) -> str:
    lines = [f"# Chat with {title}", "", f"_saved {time.strftime('%Y-%m-%d %H:%M:%S')}_", ""]
    if settings:
        lines += ["Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items() if v is not None), ""]
    for turn in turns:
        who = {"user": "You", "system": "System"}.get(turn.role, f"Model ({turn.model or 'tuned'})")
        lines.append(f"**{who}:**")
        lines.append("")
        lines.append(turn.content)
        if turn.info.get("finish"):
            lines.append("")
            lines.append(f"_{turn.info.get('tokens', '?')} tokens, {turn.info['finish']}_")
        lines.append("")
    return "\n".join(lines)


def save_transcript(folder: Path, turns: list[Turn], title: str, settings: dict | None = None,
                    formats: tuple[str, ...] = ("md", "jsonl")) -> list[Path]:
    """Write the transcript under `folder/chats/`; returns the files written."""
    out_dir = folder / CHATS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / time.strftime("chat-%Y%m%d-%H%M%S")
    n = 1
    while any(stem.with_suffix(f".{f}").exists() for f in formats):
        n += 1
        stem = out_dir / time.strftime(f"chat-%Y%m%d-%H%M%S-{n}")
    written = []
    if "md" in formats:
        path = stem.with_suffix(".md")
        path.write_text(transcript_markdown(turns, title, settings), encoding="utf-8")
        written.append(path)
    if "jsonl" in formats:
        path = stem.with_suffix(".jsonl")
        with path.open("w", encoding="utf-8") as fh:
            for turn in turns:
                fh.write(json.dumps(asdict(turn), ensure_ascii=False) + "\n")
        written.append(path)
    return written
