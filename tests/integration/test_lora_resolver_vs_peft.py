"""The one target-module resolver (tui_tuner.fit.lora) against PEFT's own choice.

Tiny random-weight models of four architectures are built from their transformers config
(no hub, no weights on disk): Llama, Phi-3 (fused qkv_proj and gate_up_proj), Gemma and
Qwen2 (biased q/k/v). For each target list, the modules `get_peft_model` wraps must be the
ones the resolver picks, PEFT must refuse exactly the lists the resolver matches nothing
with, and the trainable count must be `lora_params` of the spec read from the same config.
"""

from __future__ import annotations

import re

import pytest

from tui_tuner.fit.lora import lora_params, resolve_target_modules, spec_target_modules
from tui_tuner.models.spec import spec_from_config

SMALL = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=128)
ARCHITECTURES = {
    "llama": ("LlamaConfig", {}),
    "phi3": ("Phi3Config", {"pad_token_id": 0}),
    "gemma": ("GemmaConfig", {"head_dim": 16}),
    "qwen2": ("Qwen2Config", {}),
}
TARGETS = ["all-linear", ["q_proj", "v_proj"], ["qkv_proj"], ["gate_up_proj", "down_proj"], ["q_proj", "o_proj"],
           ["self_attn.o_proj", "up_proj"], ["query_key_value"]]
LAYER = re.compile(r"\.layers\.\d+\.(.+)$")


@pytest.fixture(scope="module", params=list(ARCHITECTURES))
def tiny_model(request):
    import torch
    import transformers

    cls_name, extra = ARCHITECTURES[request.param]
    config = getattr(transformers, cls_name)(**SMALL, **extra)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config)
    return request.param, config, model


@pytest.mark.parametrize("targets", TARGETS, ids=lambda t: t if isinstance(t, str) else ",".join(t))
def test_resolver_picks_what_peft_wraps(tiny_model, targets):
    import copy

    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora import LoraLayer

    arch, config, model = tiny_model
    spec = spec_from_config(config.to_dict(), f"tiny-{arch}")
    match = spec_target_modules(spec, targets)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=targets, task_type="CAUSAL_LM")
    if not match.chosen:
        with pytest.raises(ValueError, match="not found in the base model|Target modules"):
            get_peft_model(copy.deepcopy(model), lora)
        return
    peft_model = get_peft_model(copy.deepcopy(model), lora)
    wrapped = {name for name, module in peft_model.named_modules() if isinstance(module, LoraLayer)}
    paths = {LAYER.search(name).group(1) for name in wrapped}
    assert all(LAYER.search(name) for name in wrapped), f"{arch}: PEFT adapted a layer outside the blocks"
    assert paths == set(match.chosen), f"{arch} {targets}: PEFT wrapped {sorted(paths)}"
    assert len(wrapped) == len(match.chosen) * config.num_hidden_layers
    trainable, _ = peft_model.get_nb_trainable_parameters()
    assert trainable == lora_params(spec, 4, targets)


def test_the_block_paths_the_spec_names_are_the_models_own(tiny_model):
    """What the resolver matches against is what the model really has inside a block."""
    arch, config, model = tiny_model
    spec = spec_from_config(config.to_dict(), f"tiny-{arch}")
    linear = {LAYER.search(name).group(1) for name, module in model.named_modules()
              if type(module).__name__ == "Linear" and LAYER.search(name)}
    assert set(resolve_target_modules(sorted(linear), "all-linear").chosen) == set(spec_target_modules(
        spec, "all-linear").chosen)
