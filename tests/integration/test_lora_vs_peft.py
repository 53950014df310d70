"""LoRA arithmetic against PEFT itself: same counts, same adapter file size, on the demo model."""

import pytest

from tui_tuner.learn.layout import model_layout
from tui_tuner.learn.lora_math import lora_report


@pytest.mark.parametrize("r,targets", [(8, "all-linear"), (4, ["q_proj", "v_proj"]), (16, ["o_proj", "down_proj"])])
def test_counts_and_adapter_size_match_peft(demo_model_dir, tmp_path, r, targets):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    report = lora_report(model_layout(str(demo_model_dir)), r=r, alpha=2 * r, target_modules=targets)
    model = AutoModelForCausalLM.from_pretrained(str(demo_model_dir))
    peft_model = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, target_modules=targets, task_type="CAUSAL_LM"))
    trainable, all_params = peft_model.get_nb_trainable_parameters()
    assert report.trainable == trainable
    assert report.base_params + report.trainable == all_params
    assert report.percent_like_peft == pytest.approx(100 * trainable / all_params)
    peft_model.save_pretrained(str(tmp_path))
    assert (tmp_path / "adapter_model.safetensors").stat().st_size == report.adapter_bytes["float32"]
