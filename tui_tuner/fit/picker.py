"""The model picker's list: the catalog's instruct/chat models first (what a learner fine-tunes),
then the base models, each with its training memory at the default settings.

    for choice in model_choices(): print(choice.name, choice.label())
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tui_tuner.core.units import format_bytes
from tui_tuner.fit.estimate import estimate_memory
from tui_tuner.models.spec import load_catalog, spec_from_config

CHAT_NAME = re.compile(r"(instruct|chat|-it$|zephyr)", re.IGNORECASE)
"""Names of models tuned to follow instructions / chat (the ones a learner picks first)."""

DEFAULTS = {"seq_len": 1024, "batch_size": 2, "lora_r": 16}
"""The config schema's defaults: model.max_seq_length, training.batch_size, lora.r."""


@dataclass(frozen=True)
class ModelChoice:
    """One model in the picker, with the memory LoRA and QLoRA take at the default settings."""

    name: str
    chat: bool
    params: int
    lora_bytes: int
    qlora_bytes: int

    def label(self) -> str:
        kind = "chat" if self.chat else "base"
        return (f"{self.name}  {kind} {self.params / 1e9:.2f}B · LoRA {format_bytes(self.lora_bytes)}"
                f" · QLoRA {format_bytes(self.qlora_bytes)}")


def model_choices() -> list[ModelChoice]:
    """Every catalog model and alias with a hub id (owner/name): chat models first, then base."""
    chat, base = [], []
    for entry in load_catalog():
        spec = spec_from_config(entry, entry["name"], "catalog")
        lora = estimate_memory(spec, "lora", **DEFAULTS).total_bytes
        qlora = estimate_memory(spec, "qlora", **DEFAULTS).total_bytes
        for name in [entry["name"], *entry.get("aliases", [])]:
            if "/" not in name:
                continue  # a short form for typing, not a hub id
            choice = ModelChoice(name, bool(CHAT_NAME.search(name)), spec.param_count, lora, qlora)
            (chat if choice.chat else base).append(choice)
    # Smallest first: what a learner can train on the machine in front of them; mirrors after the originals.
    chat.sort(key=lambda c: (c.params, c.name.startswith("unsloth/")))
    return chat + base
