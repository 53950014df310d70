"""Shared fixtures for chat / eval / export tests (a pytest plugin named in tests/conftest.py): a memorised adapter.

The adapter is trained in-process with plain peft (a few dozen steps, high learning rate)
on the demo model, then laid out like a finished tui-tuner run (config.yaml, status.json,
adapter/ with the tokenizer and chat template, checkpoints/checkpoint-N/), and also saved
as a bare PEFT adapter folder that tui-tuner never made.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

MEMORISED = [
    ("What is the secret word?", "The secret word is marmalade."),
    ("Where does Bramble sleep?", "Bramble sleeps in the Burrow."),
]
"""Prompts and answers the test adapter learns by heart."""

SYSTEM = "You are Bramble's helper."


def memorised_conversations():
    return [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": q},
             {"role": "assistant", "content": a}] for q, a in MEMORISED]


def _train_adapter(model_dir: Path, steps: int, save_at: dict[int, Path], seed: int = 0):
    """LoRA on every linear layer plus a trainable lm_head copy: the random demo model memorises in ~60 steps."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tui_tuner.chat_format.templates import render_conversation

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear",
                                             modules_to_save=["lm_head"], task_type="CAUSAL_LM"))
    batches = []
    for conv in memorised_conversations():
        prompt = tokenizer(render_conversation(tokenizer, conv[:-1], True), add_special_tokens=False)["input_ids"]
        full = tokenizer(render_conversation(tokenizer, conv, False), add_special_tokens=False)["input_ids"]
        labels = [-100] * len(prompt) + full[len(prompt):]
        batches.append((torch.tensor([full]), torch.tensor([labels])))
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    model.train()
    for step in range(steps):
        ids, labels = batches[step % len(batches)]
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        optim.step()
        optim.zero_grad()
        if step + 1 in save_at:
            model.save_pretrained(save_at[step + 1])
            tokenizer.save_pretrained(save_at[step + 1])
    model.eval()
    return model, tokenizer


def make_memorised_run(model_dir: Path, run: Path, steps: int = 60, early: int = 4, seed: int = 0,
                       model_name: str | None = None) -> Path:
    """Train the memorising adapter on `model_dir` and lay it out as a finished run in `run`.

    `model_name`: the run's `model.name_or_path` (default: the config's default, the demo model).
    """
    from tui_tuner.config.schema import RunConfig

    (run / "checkpoints").mkdir(parents=True)
    _train_adapter(model_dir, steps, {early: run / "checkpoints" / f"checkpoint-{early}",  # early, half-trained
                                      steps: run / "checkpoints" / f"checkpoint-{steps}"}, seed=seed)
    shutil.copytree(run / "checkpoints" / f"checkpoint-{steps}", run / "adapter")
    cfg = RunConfig()
    if model_name:
        cfg.model.name_or_path = model_name
    cfg.lora.r = 8
    cfg.data.train = str(Path(__file__).resolve().parents[1] / "data" / "sample.jsonl")
    (run / "config.yaml").write_text(cfg.to_yaml())
    (run / "status.json").write_text(json.dumps({"state": "finished", "backend": "transformers",
                                                 "step": steps, "max_steps": steps}))
    heldout = run / "memorised.jsonl"
    heldout.write_text("".join(json.dumps({"messages": c}) + "\n" for c in memorised_conversations()))
    return run


@pytest.fixture(scope="session")
def memorised_run(demo_model_dir, tmp_path_factory) -> Path:
    """A finished run directory whose adapter answers the MEMORISED prompts word for word."""
    return make_memorised_run(demo_model_dir, tmp_path_factory.mktemp("runs") / "memo-20260101-000000")


@pytest.fixture(scope="session")
def external_adapter(memorised_run, tmp_path_factory) -> Path:
    """The same adapter as a bare PEFT folder (no run, no tokenizer), as another tool would leave it."""
    folder = tmp_path_factory.mktemp("external") / "my-adapter"
    folder.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy2(memorised_run / "adapter" / name, folder / name)
    return folder


@pytest.fixture(scope="session")
def loaded_run(memorised_run):
    """The memorised run loaded for chat (once per session)."""
    from tui_tuner.inference.chat_model import load_chat_model, resolve_source

    return load_chat_model(resolve_source(memorised_run))
