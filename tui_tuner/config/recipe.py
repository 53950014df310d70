"""Leaving the demo: which quickstart settings only make sense for the demo model, and what a real
model wants instead.

The quickstart trains a random ~1M-parameter model on a CPU in a minute, so it uses settings
that would hurt a real model (a learning rate 15x the usual LoRA one, float32 weights, no
gradient checkpointing) and names its runs `quickstart`. When the user moves the config to a
real model (the Hardware screen's "use these settings"), `leave_demo_settings` replaces each
of those that is still at its demo value and says why.

    changes = leave_demo_settings(raw_config, "Qwen/Qwen2.5-0.5B-Instruct", "lora")
    for change in changes: print(change.describe())
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tui_tuner.config.schema import DEMO_MODEL_ID
from tui_tuner.core.names import slug

DEMO_DATA = ("data/sample.jsonl", "data/heldout.jsonl")
"""The demo's dataset files (facts about Bramble, a fictional garden robot)."""


@dataclass(frozen=True)
class SettingChange:
    """One config value replaced: where, from what, to what, and why."""

    path: tuple[str, ...]
    old: Any
    new: Any
    why: str

    @property
    def key(self) -> str:
        return ".".join(self.path)

    def describe(self) -> str:
        return f"{self.key}: {self.old} -> {'null' if self.new is None else self.new} ({self.why})"


def _get(raw: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = raw
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def recipe_run_name(model: str, method: str) -> str:
    """The run name a recipe gives a model: `qwen2.5-0.5b-instruct-lora` for Qwen/Qwen2.5-0.5B-Instruct."""
    return slug(f"{model.rstrip('/').split('/')[-1]}-{method}").lower()


def leave_demo_settings(raw: dict[str, Any], model: str, method: str) -> list[SettingChange]:
    """The demo-only settings in `raw` (a parsed config) to replace for training `model` with `method`.

    Only values still at the quickstart's demo value change; a value the user chose stays.
    Nothing changes when `model` is the demo model itself.
    """
    if model == DEMO_MODEL_ID:
        return []
    lr = 2e-5 if method == "full" else 2e-4
    rules: list[tuple[tuple[str, ...], Any, Any, str]] = [
        (("training", "learning_rate"), 3e-3, lr,
         "the demo's rate is for a random tiny model; " + ("full fine-tuning" if method == "full" else "LoRA")
         + f" of a real model uses about {lr:g}"),
        (("model", "dtype"), "float32", "auto", "auto picks bfloat16/float16 on a GPU: half the memory of float32"),
        (("training", "gradient_checkpointing"), False, True, "saves activation memory on a real model"),
        (("training", "scheduler"), "constant_with_warmup", "cosine", "the usual decay for a real run"),
        (("lora", "dropout"), 0.0, 0.05, "a little dropout against overfitting a small dataset"),
        (("backend",), "transformers", "auto", "auto uses Unsloth when a CUDA GPU has it"),
        (("output", "run_name"), "quickstart", recipe_run_name(model, method),
         "runs of this model get their own name (chat/eval find them by it)"),
    ]
    changes = []
    for path, demo_value, new, why in rules:
        old = _get(raw, path)
        if old == demo_value and type(old) is type(demo_value):
            changes.append(SettingChange(path, old, new, why))
    return changes


def eval_is_demo(raw: dict[str, Any]) -> bool:
    """Whether the config's eval set is the demo's held-out questions (about the demo's robot)."""
    return _get(raw, ("data", "eval")) in DEMO_DATA
