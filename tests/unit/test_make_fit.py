"""Make it fit: ranked changes with their estimates, checked against the estimator itself."""

from __future__ import annotations

from tui_tuner.fit.estimate import GIB, estimate_memory
from tui_tuner.fit.make_fit import fit_changes
from tui_tuner.models.spec import model_spec

SETTINGS = {"seq_len": 2048, "batch_size": 4, "lora_r": 16, "gradient_checkpointing": False,
            "optimizer": "adamw_torch"}


def test_nothing_to_change_when_it_fits():
    spec = model_spec("TinyLlama/TinyLlama-1.1B-Chat-v1.0")
    assert fit_changes(spec, "lora", SETTINGS, 80 * GIB) == []


def test_8b_lora_on_a_24gb_card_gets_ranked_changes_each_with_its_own_estimate():
    spec = model_spec("meta-llama/Llama-3.1-8B")
    budget = 24 * GIB
    assert estimate_memory(spec, "lora", **SETTINGS).total_bytes > budget
    changes = fit_changes(spec, "lora", SETTINGS, budget)
    titles = [c.title for c in changes]
    assert any("gradient checkpointing" in t for t in titles) and any("QLoRA" in t for t in titles)
    assert any("8-bit" in t for t in titles) and any("batch 1" in t for t in titles)
    fitting = [c for c in changes if c.fits]
    assert fitting and changes[: len(fitting)] == fitting  # what fits comes first, cheapest first
    assert [c.rank for c in fitting] == sorted(c.rank for c in fitting)
    for c in changes:
        assert c.fits == (c.estimate_bytes <= budget)
    ckpt = next(c for c in changes if "checkpointing" in c.title)
    assert ckpt.estimate_bytes == estimate_memory(spec, "lora", **{**SETTINGS, "gradient_checkpointing": True}).total_bytes
    assert ckpt.settings == {("training", "gradient_checkpointing"): True}
    batch = next(c for c in changes if "batch 1" in c.title)
    assert batch.settings == {("training", "batch_size"): 1, ("training", "grad_accumulation"): 4}


def test_when_no_single_change_fits_a_combined_row_does():
    spec = model_spec("meta-llama/Llama-3.1-8B")
    changes = fit_changes(spec, "full", SETTINGS, 10 * GIB, unsloth_ok=False)
    combined = [c for c in changes if c.title.startswith("all of")]
    assert combined and combined[0].fits and combined[0].method == "qlora"
    assert changes[0] is combined[0] or changes[0].fits
