"""The memory estimate's terms, the recommendation and the largest batch / sequence that fit."""

from __future__ import annotations

import json

import pytest

from tui_tuner.config.schema import RunConfig
from tui_tuner.core.units import format_bytes
from tui_tuner.fit.estimate import (
    COMMON_GPUS,
    GIB,
    estimate_for_config,
    estimate_memory,
    find_gpu,
    max_batch_size,
    max_seq_len,
    recommend,
)
from tui_tuner.fit.lora import lora_params
from tui_tuner.models.spec import model_spec

LLAMA8 = model_spec("meta-llama/Llama-3.1-8B")
TINY = model_spec("TinyLlama/TinyLlama-1.1B-Chat-v1.0")


def test_lora_parameter_count_matches_peft_for_llama3_8b():
    # peft prints "trainable params: 41,943,040" for Llama-3-8B with r=16 on all linear layers
    assert lora_params(LLAMA8, 16, "all-linear") == 41_943_040
    assert lora_params(LLAMA8, 8, ["q_proj", "v_proj"]) == 32 * 8 * ((4096 + 4096) + (4096 + 1024))


def test_qlora_weights_follow_nf4_and_double_quant_constants():
    est = estimate_memory(LLAMA8, "qlora", double_quant=True)
    n = LLAMA8.linear_params
    assert est.line("weights").bytes == n // 2
    bits_per_weight = est.line("quant_constants").bytes * 8 / n
    # 0.127 bits (QLoRA paper), plus each matrix's code maps (1.1 KiB per matrix)
    assert bits_per_weight == pytest.approx(8 / 64 + 32 / (64 * 256), rel=5e-3)
    no_dq = estimate_memory(LLAMA8, "qlora", double_quant=False)
    assert no_dq.line("quant_constants").bytes * 8 / n == pytest.approx(0.5, rel=1e-3)
    assert est.line("weights_unquantized").bytes == LLAMA8.unquantized_params * 2


def test_methods_order_full_over_lora_over_qlora():
    full, lora, qlora = (estimate_memory(LLAMA8, m).total_bytes for m in ("full", "lora", "qlora"))
    assert full > lora > qlora


def test_gradient_checkpointing_cuts_activations():
    on = estimate_memory(TINY, "lora", seq_len=2048, batch_size=8, gradient_checkpointing=True)
    off = estimate_memory(TINY, "lora", seq_len=2048, batch_size=8, gradient_checkpointing=False)
    assert off.total_bytes > on.total_bytes
    assert off.line("checkpoints") is None and on.line("checkpoints") is not None


def test_unsloth_drops_logits_and_offloads_checkpoints_to_cpu():
    hf = estimate_memory(LLAMA8, "qlora", seq_len=4096, batch_size=1)
    us = estimate_memory(LLAMA8, "qlora", seq_len=4096, batch_size=1, backend="unsloth")
    assert us.total_bytes < hf.total_bytes
    assert us.cpu_bytes == 32 * 2 * 4096 * 4096 and hf.cpu_bytes == 0
    assert us.line("logits").bytes < hf.line("logits").bytes / 100


def test_optimizer_choice_changes_state_bytes():
    adam = estimate_memory(LLAMA8, "lora", optimizer="adamw_torch").line("optimizer").bytes
    eight = estimate_memory(LLAMA8, "lora", optimizer="adamw_8bit").line("optimizer").bytes
    sgd = estimate_memory(LLAMA8, "lora", optimizer="sgd").line("optimizer").bytes
    factored = estimate_memory(LLAMA8, "lora", optimizer="adafactor").line("optimizer").bytes
    assert adam == 4 * eight and sgd == 0 and 0 < factored < eight


def test_activations_grow_linearly_with_tokens():
    a = estimate_memory(TINY, "lora", seq_len=512, batch_size=1).line("activations").bytes
    b = estimate_memory(TINY, "lora", seq_len=512, batch_size=4).line("activations").bytes
    assert b == 4 * a


def test_every_line_explains_itself_and_serialises():
    est = estimate_memory(LLAMA8, "qlora")
    assert all(line.explanation.endswith(".") and line.bytes >= 0 for line in est.lines)
    d = json.loads(json.dumps(est.as_dict()))
    assert d["total_bytes"] == sum(line["bytes"] for line in d["lines"])
    assert est.tensor_bytes < est.total_bytes


def test_unknown_target_module_is_reported_not_silently_dropped():
    est = estimate_memory(LLAMA8, "lora", target_modules=["q_proj", "wq"])
    assert any("wq" in n for n in est.notes)
    assert est.trainable_params == lora_params(LLAMA8, 16, ["q_proj"])


@pytest.mark.parametrize("kwargs", [{"method": "dora"}, {"backend": "vllm"}, {"optimizer": "lion"}, {"seq_len": 0}])
def test_bad_arguments_raise_value_error(kwargs):
    method = kwargs.pop("method", "lora")
    with pytest.raises(ValueError):
        estimate_memory(TINY, method, **kwargs)


def test_max_batch_and_seq_are_the_largest_that_fit():
    vram = 16 * GIB
    b = max_batch_size(LLAMA8, vram, "qlora", seq_len=1024)
    assert b >= 1
    assert estimate_memory(LLAMA8, "qlora", batch_size=b, seq_len=1024).total_bytes <= vram
    assert estimate_memory(LLAMA8, "qlora", batch_size=b + 1, seq_len=1024).total_bytes > vram
    s = max_seq_len(LLAMA8, vram, "qlora", batch_size=1)
    assert estimate_memory(LLAMA8, "qlora", seq_len=s, batch_size=1).total_bytes <= vram
    assert estimate_memory(LLAMA8, "qlora", seq_len=s + 128, batch_size=1).total_bytes > vram


def test_recommendation_on_24gb_prefers_qlora_for_8b_and_says_why():
    rec = recommend(LLAMA8, 24 * GIB, gpu_name="RTX 4090")
    by = {f.method: f for f in rec.fits}
    assert not by["full"].fits
    assert rec.recommended is not None
    assert rec.recommended.method == ("lora" if by["lora"].fits else "qlora")
    assert f"of your {format_bytes(24 * GIB)}" in rec.reason
    assert "Largest batch" in rec.reason


def test_recommendation_prefers_lora_when_it_fits_and_mentions_qlora_batch():
    rec = recommend(TINY, 24 * GIB)
    assert rec.recommended.method == "lora"
    assert "QLoRA would need" in rec.reason and "leave room for batch" in rec.reason


def test_nothing_fits_says_what_to_do():
    rec = recommend(model_spec("meta-llama/Llama-3.3-70B-Instruct"), 12 * GIB)
    assert rec.recommended is None
    assert rec.reason.startswith("Nothing fits") and "smaller model" in rec.reason


def test_estimate_for_config_uses_the_config_settings():
    cfg = RunConfig.model_validate({"model": {"name_or_path": "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
                                              "max_seq_length": 2048},
                                    "method": "qlora", "lora": {"r": 64}, "training": {"batch_size": 4}})
    est = estimate_for_config(cfg)
    assert est.method == "qlora" and est.settings["seq_len"] == 2048 and est.settings["batch_size"] == 4
    assert est.trainable_params == lora_params(TINY, 64, "all-linear")


def test_common_gpus_are_found_by_loose_names():
    assert find_gpu("4090").memory_bytes == 24 * GIB
    assert find_gpu("A100-80").memory_bytes == 80 * GIB
    assert find_gpu("t4").bf16 is False
    assert find_gpu("rtx 9999") is None
    assert {g.name for g in COMMON_GPUS} >= {"Tesla T4", "RTX 3060", "RTX 4090", "A10G", "L4", "A100 40GB",
                                              "A100 80GB", "H100 80GB"}


def test_adafactor_full_fine_tuning_keeps_row_and_column_averages():
    spec = model_spec("HuggingFaceTB/SmolLM2-135M")  # tied embeddings
    got = estimate_memory(spec, "full", optimizer="adafactor").line("optimizer").bytes
    h, i, L = spec.hidden_size, spec.intermediate_size, spec.num_layers
    per_layer = (h + spec.q_dim) + 2 * (h + spec.kv_dim) + (spec.q_dim + h) + 2 * (h + i) + (i + h)
    vectors = L * 2 * h + h  # two RMSNorms per layer and the final one
    assert got == 4 * (L * per_layer + (spec.vocab_size + h) + vectors)
    assert got < estimate_memory(spec, "full", optimizer="adamw_8bit").line("optimizer").bytes


def test_target_modules_resolve_as_peft_does_for_fused_projections():
    """Phi-3 fuses q/k/v into qkv_proj: `q_proj` matches nothing there (PEFT refuses it), and both
    the estimate and the LoRA lab say so instead of one counting it and the other refusing it."""
    from tui_tuner.learn.layout import layout_from_spec
    from tui_tuner.learn.lora_math import TargetModulesError, lora_report

    phi3 = model_spec("microsoft/Phi-3-mini-4k-instruct")
    assert lora_params(phi3, 8, ["q_proj", "v_proj"]) == 0
    assert lora_params(phi3, 8, ["qkv_proj"]) == 32 * 8 * (3072 + 3 * 3072)
    est = estimate_memory(phi3, "lora", target_modules=["q_proj", "v_proj"])
    assert est.trainable_params == 0 and any("qkv_proj" in n for n in est.notes)
    with pytest.raises(TargetModulesError, match="target qkv_proj instead"):
        lora_report(layout_from_spec(phi3), r=8, target_modules=["q_proj", "v_proj"])
    assert lora_report(layout_from_spec(phi3), r=8, target_modules=["qkv_proj"]).trainable == \
        lora_params(phi3, 8, ["qkv_proj"])


def test_nf4_bytes_are_the_same_in_the_estimate_and_the_memory_lab():
    from tui_tuner.learn.layout import layout_from_spec
    from tui_tuner.learn.memory import memory_by_precision

    spec = model_spec("meta-llama/Llama-3.2-1B")
    est = estimate_memory(spec, "qlora", double_quant=True)
    weights = sum(est.line(k).bytes for k in ("weights", "quant_constants", "weights_unquantized"))
    lab = memory_by_precision(layout_from_spec(spec)).row("nf4-dq")
    assert weights == pytest.approx(lab.exact_bytes, abs=2)   # the estimate rounds each line to whole bytes
