"""The demo model round-trips through the real `from_pretrained` path, offline."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from tui_tuner.config.schema import DEMO_MODEL_ID


def test_files_and_honest_model_card(demo_model_dir):
    for name in ("config.json", "model.safetensors", "tokenizer.model", "tokenizer.json",
                 "tokenizer_config.json", "README.md", "generation_config.json"):
        assert (demo_model_dir / name).is_file(), name
    card = (demo_model_dir / "README.md").read_text()
    assert "random weights" in card and "knows nothing" in card
    size = (demo_model_dir / "model.safetensors").stat().st_size
    assert 1_000_000 < size < 20_000_000


def test_round_trip_through_from_pretrained(demo_model_dir):
    import sentencepiece as spm
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    tokenizer = AutoTokenizer.from_pretrained(str(demo_model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(demo_model_dir))
    sp = spm.SentencePieceProcessor(model_file=str(demo_model_dir / "tokenizer.model"))

    assert len(tokenizer) == sp.get_piece_size() == model.config.vocab_size
    assert model.config.model_type == "llama"
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token_id is not None and tokenizer.pad_token_id != tokenizer.eos_token_id
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    # The HF tokenizer and the SentencePiece file (what llama.cpp reads) agree token for token.
    text = "Bramble weighs 4 kilograms and costs 349 euros."
    assert tokenizer.encode(text, add_special_tokens=False) == sp.encode(text)
    # Any UTF-8 text encodes (byte fallback) and decodes back unchanged.
    odd = "Grüße ✓ 漢字"
    assert tokenizer.decode(tokenizer.encode(odd, add_special_tokens=False)) == odd
    assert tokenizer.unk_token_id not in tokenizer.encode(odd, add_special_tokens=False)

    # no BOS/EOS around plain text, here and for llama.cpp (which reads tokenizer_config.json)
    assert tokenizer("Bramble")["input_ids"] == tokenizer("Bramble", add_special_tokens=False)["input_ids"]
    tokenizer_config = json.loads((demo_model_dir / "tokenizer_config.json").read_text())
    assert tokenizer_config["add_bos_token"] is False and tokenizer_config["add_eos_token"] is False

    messages = [{"role": "user", "content": "How heavy is Bramble?"}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert prompt == "<|im_start|>user\nHow heavy is Bramble?<|im_end|>\n<|im_start|>assistant\n"
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
    assert ids.input_ids[0, 0].item() == tokenizer.convert_tokens_to_ids("<|im_start|>")
    with torch.no_grad():
        out = model(**ids)
    assert out.logits.shape == (1, ids.input_ids.shape[1], model.config.vocab_size)
    assert torch.isfinite(out.logits).all()


def test_resolve_model_path(demo_model_dir):
    from tui_tuner.models.demo import resolve_model_path

    assert resolve_model_path(DEMO_MODEL_ID) == str(demo_model_dir)
    assert resolve_model_path("TinyLlama/TinyLlama-1.1B-Chat-v1.0") == "TinyLlama/TinyLlama-1.1B-Chat-v1.0"
    assert resolve_model_path("/some/local/folder") == "/some/local/folder"


def _digest(folder):
    h = hashlib.sha256()
    for name in ("model.safetensors", "tokenizer.model", "tokenizer.json"):
        h.update((folder / name).read_bytes())
    return h.hexdigest()


@pytest.mark.slow
def test_rebuild_is_deterministic_and_atomic(demo_model_dir, monkeypatch, tmp_path):
    from tui_tuner.models.demo import ensure_demo_model, is_built

    before = _digest(demo_model_dir)
    monkeypatch.setenv("TUI_TUNER_CACHE", str(tmp_path))
    rebuilt = ensure_demo_model()
    assert rebuilt == tmp_path / "demo-tiny-llama"
    assert _digest(rebuilt) == before
    assert ensure_demo_model(force=True) == rebuilt and is_built(rebuilt)
    assert _digest(rebuilt) == before
    # no temporary build folders are left behind
    assert [p.name for p in tmp_path.iterdir()] == ["demo-tiny-llama"]
    assert json.loads((rebuilt / "tui_tuner_demo.json").read_text())["model_id"] == DEMO_MODEL_ID


@pytest.mark.slow
def test_concurrent_builds_leave_one_good_copy(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from tui_tuner.models.demo import is_built

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "TUI_TUNER_CACHE": str(tmp_path), "PYTHONPATH": str(root)}
    procs = [subprocess.Popen([sys.executable, "-m", "tui_tuner.models.demo"], env=env, cwd=root,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    folder = tmp_path / "demo-tiny-llama"
    assert {out.strip() for out, _ in outs} == {str(folder)}
    assert is_built(folder) and [p.name for p in tmp_path.iterdir()] == ["demo-tiny-llama"]


def test_every_linear_layer_is_a_multiple_of_64_wide(demo_model_dir):
    """bitsandbytes' CPU 4-bit kernels work in blocks of 64 along each weight row."""
    import json

    cfg = json.loads((demo_model_dir / "config.json").read_text())
    for key in ("hidden_size", "intermediate_size"):
        assert cfg[key] % 64 == 0, key
    assert cfg["num_key_value_heads"] * cfg["hidden_size"] // cfg["num_attention_heads"] % 64 == 0


def test_4bit_demo_model_evaluates_on_the_cpu(demo_model_dir):
    """QLoRA's first eval on the CPU: crashed on AVX512-BF16 CPUs with a 352-wide MLP."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32,
                           bnb_4bit_quant_storage=torch.float32)
    model = AutoModelForCausalLM.from_pretrained(demo_model_dir, quantization_config=q, dtype=torch.float32,
                                                 device_map={"": "cpu"}).eval()
    with torch.no_grad():
        logits = model(torch.tensor([[1, 2, 3, 4, 5]])).logits
    assert logits.shape == (1, 5, 1024) and bool(torch.isfinite(logits).all())
