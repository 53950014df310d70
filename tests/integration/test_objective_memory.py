"""The estimate's reference-model term against what trl really allocates on CPU.

DPO with full fine-tuning loads a frozen second copy of the model as its reference; the
estimate says how big that copy is. Measured here as the growth of the process's resident
memory while `DPOTrainer` builds it, for a 26M-parameter random Llama (104 MB in float32,
well above the noise of a few MB that the trainer's dataset preparation adds).
"""

from __future__ import annotations

import gc

import pytest

pytestmark = pytest.mark.slow


def _rss() -> int:
    import psutil

    gc.collect()
    return psutil.Process().memory_info().rss


def test_dpo_reference_copy_matches_the_estimate(tmp_path, demo_model_dir):
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from trl import DPOConfig, DPOTrainer

    from tui_tuner.fit.estimate import estimate_memory
    from tui_tuner.models.spec import model_spec

    tokenizer = AutoTokenizer.from_pretrained(demo_model_dir)
    folder = tmp_path / "llama-26m"
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=512, intermediate_size=1376,
                                 num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=8,
                                 max_position_embeddings=256)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    rows = [{"prompt": [{"role": "user", "content": f"Question {i}?"}],
             "chosen": [{"role": "assistant", "content": "A good answer."}],
             "rejected": [{"role": "assistant", "content": "A bad one."}]} for i in range(4)]
    args = DPOConfig(output_dir=str(tmp_path / "out"), use_cpu=True, report_to=[], max_length=64,
                     per_device_train_batch_size=2, disable_tqdm=True)
    before = _rss()
    trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    grown = _rss() - before
    assert trainer.ref_model is not None  # full fine-tuning: a real second copy

    est = estimate_memory(model_spec(str(folder)), "full", seq_len=64, batch_size=2, dtype="float32",
                          objective="dpo", on_gpu=False)
    reference = est.line("reference").bytes
    assert reference == sum(p.numel() for p in model.parameters()) * 4
    print(f"\nreference copy: estimated {reference / 2**20:.1f} MiB, measured {grown / 2**20:.1f} MiB")
    assert 0.85 * reference <= grown <= 1.3 * reference
