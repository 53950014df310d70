"""The model picker lists the instruct/chat models a learner picks first, before the base models,
each with its training memory at the default settings."""

from __future__ import annotations

from tui_tuner.fit.estimate import estimate_memory
from tui_tuner.fit.picker import DEFAULTS, model_choices
from tui_tuner.models.spec import model_spec

FIRST_PICKS = (
    "meta-llama/Llama-3.2-1B-Instruct", "meta-llama/Llama-3.2-3B-Instruct", "Qwen/Qwen2.5-0.5B-Instruct",
    "Qwen/Qwen2.5-1.5B-Instruct", "Qwen/Qwen2.5-3B-Instruct", "Qwen/Qwen2.5-7B-Instruct",
    "microsoft/Phi-3.5-mini-instruct", "google/gemma-2-2b-it", "HuggingFaceTB/SmolLM2-135M-Instruct",
    "HuggingFaceTB/SmolLM2-360M-Instruct", "HuggingFaceTB/SmolLM2-1.7B-Instruct",
    "TinyLlama/TinyLlama-1.1B-Chat-v1.0", "mistralai/Mistral-7B-Instruct-v0.3",
)


def test_first_picks_are_listed_as_chat_models_before_any_base_model():
    choices = model_choices()
    names = [c.name for c in choices]
    for name in FIRST_PICKS:
        assert name in names, name
        assert next(c for c in choices if c.name == name).chat
    first_base = next(i for i, c in enumerate(choices) if not c.chat)
    assert all(c.chat for c in choices[:first_base]) and not any(c.chat for c in choices[first_base:])
    assert names.index("HuggingFaceTB/SmolLM2-135M-Instruct") < names.index("Qwen/Qwen2.5-7B-Instruct")


def test_each_shows_its_memory_at_the_default_settings():
    choice = next(c for c in model_choices() if c.name == "Qwen/Qwen2.5-3B-Instruct")
    spec = model_spec("Qwen/Qwen2.5-3B-Instruct")
    assert choice.lora_bytes == estimate_memory(spec, "lora", **DEFAULTS).total_bytes
    assert choice.qlora_bytes < choice.lora_bytes
    assert "QLoRA" in choice.label() and "3.09B" in choice.label()
    assert abs(spec.param_count - 3_085_938_688) / 3_085_938_688 < 0.001  # Qwen's published 3.09B
