"""The estimate's reference-model terms against what trl really holds in memory.

DPO with full fine-tuning loads a frozen second copy of the model as its reference; with LoRA,
trl keeps a frozen copy of the starting adapter instead and no second base model. Measured
here on CPU by summing the tensors trl's `DPOTrainer` actually holds (storages not shared with
the policy), for a 26M-parameter random Llama. Resident memory is no measure here: safetensors
are memory-mapped, so pages come and go with use.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

ROWS = [{"prompt": [{"role": "user", "content": f"Question {i}?"}],
         "chosen": [{"role": "assistant", "content": "A good answer."}],
         "rejected": [{"role": "assistant", "content": "A bad one."}]} for i in range(4)]


def _bytes(tensors, exclude=()) -> int:
    seen, total = set(exclude), 0
    for t in tensors:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in seen:
            seen.add(ptr)
            total += t.untyped_storage().nbytes()
    return total


@pytest.fixture(scope="module")
def llama_26m(tmp_path_factory, demo_model_dir):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(demo_model_dir)
    folder = tmp_path_factory.mktemp("models") / "llama-26m"
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=512, intermediate_size=1376,
                                 num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=8,
                                 max_position_embeddings=256)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _trainer(folder, tmp_path, lora: bool):
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"))
    args = DPOConfig(output_dir=str(tmp_path / "out"), use_cpu=True, report_to=[], max_length=64,
                     per_device_train_batch_size=2, disable_tqdm=True)
    return model, DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(ROWS),
                             processing_class=AutoTokenizer.from_pretrained(folder))


def test_full_dpo_reference_copy_matches_the_estimate(llama_26m, tmp_path):
    from tui_tuner.fit.estimate import estimate_memory
    from tui_tuner.models.spec import model_spec

    model, trainer = _trainer(llama_26m, tmp_path, lora=False)
    policy = {p.untyped_storage().data_ptr() for p in model.parameters()}
    measured = _bytes(trainer.ref_model.parameters(), exclude=policy)
    est = estimate_memory(model_spec(str(llama_26m)), "full", seq_len=64, batch_size=2, dtype="float32",
                          objective="dpo", on_gpu=False)
    estimated = est.line("reference").bytes
    print(f"\nfull DPO reference: estimated {estimated / 2**20:.1f} MiB, measured {measured / 2**20:.1f} MiB")
    assert abs(measured / estimated - 1) < 0.05


def test_lora_dpo_reference_is_an_adapter_copy_not_a_second_model(llama_26m, tmp_path):
    from tui_tuner.fit.estimate import estimate_memory
    from tui_tuner.models.spec import model_spec

    model, trainer = _trainer(llama_26m, tmp_path, lora=True)
    assert trainer.ref_model is None  # no second base model
    measured = _bytes(p for n, p in model.named_parameters() if ".ref." in n)
    est = estimate_memory(model_spec(str(llama_26m)), "lora", seq_len=64, batch_size=2, dtype="float32", lora_r=8,
                          objective="dpo", on_gpu=False)
    estimated = est.line("reference").bytes
    print(f"\nLoRA DPO reference adapter: estimated {estimated / 2**20:.2f} MiB, measured {measured / 2**20:.2f} MiB")
    assert abs(measured / estimated - 1) < 0.05
