"""The offline demo model: a tiny Llama built locally, for the quickstart and the tests.

No hub access is needed: the first use builds a randomly initialised Llama-architecture
model (~1M parameters, a few MB) and a SentencePiece tokenizer trained on the project's
sample dataset, and saves both with `save_pretrained` into the cache:

    $TUI_TUNER_CACHE/demo-tiny-llama        (default ~/.cache/tui-tuner/demo-tiny-llama)

It is loaded back through the ordinary `from_pretrained` path, like any hub model. It knows
only what it is fine-tuned on. Build it by hand with:

    python -m tui_tuner.models.demo [--force]

The tokenizer is SentencePiece (BPE with byte fallback) and its `tokenizer.model` is kept
in the folder, because llama.cpp's GGUF converter reads that file directly.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tui_tuner.config.defaults import DEMO_MODEL_ID
from tui_tuner.core.folders import build_folder_atomically

DEMO_DIR_NAME = "demo-tiny-llama"
BUILD_VERSION = 3
"""Bump when the recipe below changes: an older cached build is then rebuilt."""
MARKER_FILE = "tui_tuner_demo.json"

VOCAB_SIZE = 1024
HIDDEN_SIZE = 128
INTERMEDIATE_SIZE = 384
"""A multiple of 64: bitsandbytes' CPU 4-bit kernels (AVX512-BF16 CPUs) pack each weight row in
blocks of 64 and fail on any other length, so QLoRA on the demo model would crash on those CPUs."""
NUM_LAYERS = 4
NUM_HEADS = 4
NUM_KV_HEADS = 2
MAX_POSITIONS = 1024
SEED = 1234

BOS, EOS, UNK, PAD = "<s>", "<|im_end|>", "<unk>", "<pad>"
IM_START = "<|im_start|>"

_MODEL_CARD = """\
---
library_name: transformers
tags: [tui-tuner, demo, tiny, llama]
---
# demo-tiny-llama (tui-tuner demo model)

**This is not a useful language model.** It is a tiny Llama-architecture network
({params:,} parameters, {layers} layers, hidden size {hidden}) with **random weights**, built
on this machine by `tui_tuner.models.demo` so the tui-tuner quickstart and tests run
offline on a CPU in about a minute.

- It knows nothing until you fine-tune it, and afterwards only what it was trained on
  (the quickstart trains it on `data/sample.jsonl`, facts about a fictional garden robot).
- Tokenizer: SentencePiece BPE with byte fallback, {vocab} tokens, trained on the sample
  dataset text; `tokenizer.model` is kept so llama.cpp's GGUF converter can read it.
- Chat template: ChatML (`<|im_start|>role ... <|im_end|>`); `<|im_end|>` is the end-of-sequence
  token, so generation stops at the end of the assistant's turn.

Use a real model (e.g. `TinyLlama/TinyLlama-1.1B-Chat-v1.0`) on a GPU server for anything
beyond trying the tool out.
"""


def cache_root() -> Path:
    """tui-tuner's cache folder: $TUI_TUNER_CACHE, else $XDG_CACHE_HOME/tui-tuner, else ~/.cache/tui-tuner."""
    explicit = os.environ.get("TUI_TUNER_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "tui-tuner"


def demo_model_dir() -> Path:
    """Where the demo model lives (it may not be built yet)."""
    return cache_root() / DEMO_DIR_NAME


def sample_dataset_path() -> Path:
    """The sample dataset the demo tokenizer is trained on: the packaged quickstart's copy, so an
    installed tui-tuner builds the demo model without the repository's `data/` folder."""
    from tui_tuner.config.starter import packaged_file

    return packaged_file("data/sample.jsonl")


def is_built(folder: Path | None = None) -> bool:
    """True when `folder` holds a complete demo model of the current recipe."""
    folder = folder or demo_model_dir()
    try:
        marker = json.loads((folder / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("build_version") == BUILD_VERSION


def ensure_demo_model(force: bool = False) -> Path:
    """Build the demo model if it is missing (or `force`), and return its folder.

    Safe when several processes ask at once: each builds into a private temporary folder
    and renames it into place; a process that loses the race keeps the winner's copy.
    """
    final = demo_model_dir()
    if not force and is_built(final):
        return final
    return build_folder_atomically(final, _build_into, is_built, replace=force or final.exists())


def is_builtin_model(name_or_path: str) -> bool:
    """True for the ids of models tui-tuner builds locally: the demo model and the tiny real-tokenizer models."""
    if name_or_path == DEMO_MODEL_ID:
        return True
    from tui_tuner.models.tiny_real import family_for_id

    return family_for_id(name_or_path) is not None


def resolve_model_path(name_or_path: str) -> str:
    """`model.name_or_path` as `from_pretrained` takes it: a built-in id becomes its folder (built on demand)."""
    if name_or_path == DEMO_MODEL_ID:
        return str(ensure_demo_model())
    from tui_tuner.models.tiny_real import ensure_tiny_model, family_for_id

    if family_for_id(name_or_path) is not None:
        return str(ensure_tiny_model(name_or_path))
    return name_or_path


def _training_texts(sample: Path) -> list[str]:
    from tui_tuner.chat_format.templates import CHATML, render_template

    texts = []
    with sample.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            row = json.loads(line)
            user = row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")
            messages = [{"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}]
            texts.append(render_template(CHATML, messages, eos_token=EOS))
    return texts


def _train_tokenizer(folder: Path, sample: Path) -> None:
    import io

    import sentencepiece as spm

    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_training_texts(sample)), model_writer=buffer,
        model_type="bpe", vocab_size=VOCAB_SIZE, hard_vocab_limit=False,
        # byte fallback: any UTF-8 text (a user's own data) still encodes without <unk>
        byte_fallback=True, character_coverage=1.0, split_digits=True,
        user_defined_symbols=[IM_START],
        unk_id=0, bos_id=1, eos_id=2, pad_id=3,
        unk_piece=UNK, bos_piece=BOS, eos_piece=EOS, pad_piece=PAD,
        normalization_rule_name="identity", remove_extra_whitespaces=False,
        num_threads=1, minloglevel=2,
    )
    (folder / "tokenizer.model").write_bytes(buffer.getvalue())


def _build_into(folder: Path) -> None:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, LlamaTokenizer
    from transformers.utils import logging as hf_logging

    from tui_tuner.chat_format.templates import CHATML

    sample = sample_dataset_path()
    if not sample.is_file():
        raise FileNotFoundError(f"{sample}: the sample dataset the demo tokenizer is trained on is missing; "
                                "run tui-tuner from a clone of the project (data/ is not part of the wheel).")
    _train_tokenizer(folder, sample)
    tokenizer = LlamaTokenizer.from_pretrained(
        str(folder), bos_token=BOS, eos_token=EOS, unk_token=UNK, pad_token=PAD,
        add_bos_token=False, add_eos_token=False, legacy=False,
    )
    tokenizer.chat_template = CHATML
    tokenizer.model_max_length = MAX_POSITIONS
    tokenizer.save_pretrained(str(folder))  # writes tokenizer.json + config; tokenizer.model stays
    # Say explicitly that no BOS/EOS is added around text: the chat template places every special
    # token, and llama.cpp's converter would otherwise default a SentencePiece vocabulary to add BOS.
    config_path = folder / "tokenizer_config.json"
    tokenizer_config = json.loads(config_path.read_text(encoding="utf-8"))
    tokenizer_config.update(add_bos_token=False, add_eos_token=False)
    config_path.write_text(json.dumps(tokenizer_config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    vocab_size = len(tokenizer)

    torch.manual_seed(SEED)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=HIDDEN_SIZE, intermediate_size=INTERMEDIATE_SIZE,
        num_hidden_layers=NUM_LAYERS, num_attention_heads=NUM_HEADS, num_key_value_heads=NUM_KV_HEADS,
        max_position_embeddings=MAX_POSITIONS, rms_norm_eps=1e-5, tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config).to(torch.float32)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, do_sample=False, max_new_tokens=64,
    )
    hf_logging.disable_progress_bar()  # a 4 MB save needs no progress bar in the user's terminal
    try:
        model.save_pretrained(str(folder))
    finally:
        hf_logging.enable_progress_bar()
    params = sum(p.numel() for p in model.parameters())
    (folder / "README.md").write_text(_MODEL_CARD.format(params=params, layers=NUM_LAYERS, hidden=HIDDEN_SIZE,
                                                          vocab=vocab_size), encoding="utf-8")
    # Written last: its presence means the folder is complete.
    (folder / MARKER_FILE).write_text(json.dumps({
        "build_version": BUILD_VERSION, "model_id": DEMO_MODEL_ID, "parameters": params,
        "vocab_size": vocab_size, "trained_on": sample.name,
    }, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """`python -m tui_tuner.models.demo [--force]`: build the demo model and print its folder."""
    argv = sys.argv[1:] if argv is None else argv
    print(ensure_demo_model(force="--force" in argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
