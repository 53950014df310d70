"""mlx-lm adapter -> PEFT adapter naming, orientation and scaling, and the config keys mlx-lm needs spelled out."""

import json

import numpy as np
import pytest

from tui_tuner.train.backends.mlx_backend import (AdapterConversionError, hf_config_overrides, peft_config,
                                                  peft_tensors)


def test_lora_a_and_b_are_transposed_into_peft_names():
    a, b = np.arange(12.0).reshape(4, 3), np.arange(6.0).reshape(3, 2)  # (in=4, r=3), (r=3, out=2)
    out = peft_tensors({"model.layers.0.self_attn.q_proj.lora_a": a, "model.layers.0.self_attn.q_proj.lora_b": b})
    assert set(out) == {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
                        "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"}
    A = out["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"]
    B = out["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"]
    assert A.shape == (3, 4) and B.shape == (2, 3)  # PEFT: lora_A (r, in), lora_B (out, r)
    x = np.ones((1, 4))
    np.testing.assert_allclose(x @ A.T @ B.T, (x @ a) @ b)  # the same update either way


def test_peft_alpha_reproduces_mlx_scale_whatever_rule_chose_it():
    cfg = peft_config({"fine_tune_type": "lora", "lora_parameters": {"rank": 16, "scale": 32 / 4, "dropout": 0.1}},
                      "base", ["q_proj", "v_proj"])  # rsLoRA: alpha / sqrt(r) = 32 / 4
    assert cfg["lora_alpha"] / cfg["r"] == 8.0 and not cfg["use_rslora"]
    assert cfg["peft_type"] == "LORA" and cfg["target_modules"] == ["q_proj", "v_proj"] and cfg["lora_dropout"] == 0.1


def test_what_is_not_a_lora_adapter_is_refused():
    with pytest.raises(AdapterConversionError, match="not a LoRA weight"):
        peft_tensors({"model.layers.0.self_attn.q_proj.m": np.ones(2)})  # DoRA's magnitude
    with pytest.raises(AdapterConversionError, match="not LoRA"):
        peft_config({"fine_tune_type": "dora", "lora_parameters": {"rank": 4, "scale": 1}}, "b", [])
    with pytest.raises(AdapterConversionError, match="rank and .scale"):
        peft_config({"fine_tune_type": "lora", "lora_parameters": {}}, "b", [])


def test_rope_settings_inside_rope_parameters_are_spelled_out_for_mlx_lm(tmp_path):
    """transformers 5 writes rope_theta inside rope_parameters; mlx-lm would take its default 10000 instead."""
    (tmp_path / "config.json").write_text(json.dumps(
        {"rope_parameters": {"rope_theta": 500000.0, "rope_type": "llama3", "factor": 8.0}}))
    over = hf_config_overrides(tmp_path)
    assert over["rope_theta"] == 500000.0
    assert over["rope_scaling"] == {"type": "llama3", "rope_type": "llama3", "factor": 8.0}
    (tmp_path / "config.json").write_text(json.dumps(
        {"rope_theta": 10000.0, "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"}}))
    assert hf_config_overrides(tmp_path) == {}  # an older config already has it at the top level
