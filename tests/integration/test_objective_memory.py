"""The estimate's reference-model and generation terms against what trl really holds in memory.

DPO with full fine-tuning loads a frozen second copy of the model as its reference; with LoRA,
trl keeps a frozen copy of the starting adapter instead and no second base model. Measured
here on CPU by summing the tensors trl's `DPOTrainer` actually holds (storages not shared with
the policy), for a 26M-parameter random Llama. GRPO's generation KV cache is measured at its
largest during a real trl step (the model's own cache object at the last decoding step). Resident
memory is no measure here: safetensors are memory-mapped, so pages come and go with use.
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


def _cache_bytes(cache) -> tuple[int, int]:
    """(bytes, cached tokens) of a transformers KV cache: keys and values of every layer."""
    total, length = 0, 0
    for layer in getattr(cache, "layers", []):
        keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
        if keys is None or values is None or keys.numel() == 0:
            continue
        total += keys.nbytes + values.nbytes
        length = max(length, keys.shape[-2])
    return total, length


def test_grpo_generation_cache_and_reference_match_the_estimate(llama_26m, tmp_path):
    # One real GRPO step through trl (full fine-tuning, beta > 0): the generation KV cache is
    # measured at its largest (the last decoding step, read from the model's own cache object),
    # the reference model as the tensors trl holds beside the policy.
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from tui_tuner.fit.estimate import estimate_memory
    from tui_tuner.models.spec import model_spec

    batch, accumulation, generations, completion = 4, 2, 4, 24
    model = AutoModelForCausalLM.from_pretrained(llama_26m, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(llama_26m)
    prompts = Dataset.from_list([{"prompt": f"Question {i}: what is {i} plus {i}?"} for i in range(8)])
    args = GRPOConfig(output_dir=str(tmp_path / "out"), use_cpu=True, report_to=[], disable_tqdm=True,
                      per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation,
                      num_generations=generations, max_completion_length=completion, beta=0.04, max_steps=1,
                      generation_kwargs={"min_new_tokens": completion}, save_strategy="no", logging_steps=1,
                      bf16=False)  # a float32 run, as the worker trains one on CPU (autocast would store bf16 values)
    trainer = GRPOTrainer(model=model, reward_funcs=lambda completions, **_: [float(len(c)) for c in completions],
                          args=args, train_dataset=prompts, processing_class=tokenizer)
    peak = {"bytes": 0, "tokens": 0, "rows": 0, "prompt": 0}

    def record(module, args_, kwargs, output):
        cache = getattr(output, "past_key_values", None)
        if cache is None:
            return
        ids = kwargs.get("input_ids")
        if ids is not None and ids.shape[-1] > 1:  # the prefill: the whole (left-padded) prompt
            peak["prompt"] = max(peak["prompt"], ids.shape[-1])
        size, tokens = _cache_bytes(cache)
        if size > peak["bytes"]:
            peak.update(bytes=size, tokens=tokens, rows=ids.shape[0] if ids is not None else 0)

    hook = model.register_forward_hook(record, with_kwargs=True)
    try:
        trainer.train()
    finally:
        hook.remove()

    policy = {p.untyped_storage().data_ptr() for p in model.parameters()}
    reference = _bytes(trainer.ref_model.parameters(), exclude=policy)
    # Completions are forced to full length, so a sequence is the padded prompt plus the completion.
    seq = peak["prompt"] + completion
    est = estimate_memory(model_spec(str(llama_26m)), "full", seq_len=seq, batch_size=batch, dtype="float32",
                          objective="grpo", num_generations=generations, generation_batch=batch * accumulation,
                          max_completion_length=completion, kl_beta=0.04, on_gpu=False)
    kv, ref = est.line("kv_cache").bytes, est.line("reference").bytes
    print(f"\nGRPO generation KV cache ({peak['rows']} x {peak['tokens']} tokens): estimated {kv / 2**20:.2f} MiB, "
          f"measured {peak['bytes'] / 2**20:.2f} MiB; reference: estimated {ref / 2**20:.1f} MiB, "
          f"measured {reference / 2**20:.1f} MiB")
    assert peak["rows"] == batch * accumulation  # every completion of the generation batch at once
    # The last sampled token is never fed back, so the cache holds one token less than the sequence.
    assert peak["tokens"] == seq - 1
    assert abs(peak["bytes"] / kv - 1) < 0.05
    assert abs(reference / ref - 1) < 0.05
