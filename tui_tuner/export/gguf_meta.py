"""What a GGUF must say about its tokenizer to behave like training, checked and fixed.

llama.cpp's converter guesses some of it: on the SentencePiece path it types only the added
tokens it finds in `tokenizer_config.json`'s `added_tokens_decoder` (which transformers 5 no
longer writes), it reads `add_bos_token` from the tokenizer's post-processor or config and
defaults to adding a BOS, and it names the model after the folder. The source of truth here
is the run's own tokenizer and chat template:

- each added token's type: CONTROL when the tokenizer marks it special, USER_DEFINED when not
  (the unknown token may stay UNKNOWN);
- `add_bos_token`: whether the training tokenization of a rendered conversation starts with
  BOS (llama.cpp and Ollama then add it themselves and the Modelfile template leaves it out);
  `add_eos_token`: whether the tokenizer appends EOS to a text;
- BOS, EOS, padding ids as the tokenizer has them, and EOT: the special token that ends an
  assistant turn in the template (llama.cpp stops generating on it);
- the chat template and `general.name` (the run name).

`prepare_tokenizer_config` writes what the converter can read into the folder it converts;
`differences` lists what the GGUF still gets wrong and `rewrite_metadata` rewrites the file
with gguf-py (llama.cpp's own GGUF library), tensors copied unchanged.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONTROL, USER_DEFINED, UNKNOWN = 3, 4, 2  # gguf.TokenType values
TYPE_NAMES = {1: "NORMAL", 2: "UNKNOWN", 3: "CONTROL", 4: "USER_DEFINED", 5: "UNUSED", 6: "BYTE"}


@dataclass
class GGUFExpectation:
    """The tokenizer metadata a GGUF made from this run must carry."""

    name: str
    chat_template: str
    vocab_size: int
    add_bos: bool
    add_eos: bool
    bos_id: int | None
    eos_id: int | None
    eot_id: int | None
    pad_id: int | None
    unk_id: int | None
    added: dict[int, tuple[str, int]] = field(default_factory=dict)
    """Added token id -> (text, expected GGUF token type)."""
    bos_text: str = ""
    name_note: str = ""
    """Why `name` differs from the run name (llama.cpp reads tokenizer behaviour from it), or empty."""
    space_prefix: bool | None = None
    """SentencePiece: whether training's tokenizer starts the text after an added token with a space
    piece (llama.cpp's `add_space_prefix` does exactly that after every token it matched)."""

    def token_type_ok(self, token_id: int, got: int) -> bool:
        want = self.added[token_id][1]
        return got == want or (token_id == self.unk_id and got == UNKNOWN)


_PHI3 = re.compile(r"phi-?3", re.IGNORECASE)


def llama_cpp_name(run_name: str, rstrip_specials: bool) -> tuple[str, str]:
    """`general.name` for the run, and a note when it had to change.

    llama.cpp strips the whitespace after every special token when `general.name` contains
    "phi3" or "phi-3" (llama-vocab.cpp: the real Phi-3 tokenizer marks them rstrip), and only
    then. The name must say so exactly when the run's tokenizer strips, or llama.cpp tokenizes
    `<|user|>\nHi` differently from training.
    """
    says_phi3 = bool(_PHI3.search(run_name))
    if rstrip_specials and not says_phi3:
        return (f"{run_name} (phi-3 tokenizer)", "general.name gets '(phi-3 tokenizer)' so llama.cpp strips the "
                "whitespace after special tokens, as this tokenizer does")
    if says_phi3 and not rstrip_specials:
        name = _PHI3.sub(lambda m: m.group(0)[:-1] + " 3", run_name)
        return (name, f"general.name is {name!r}: a name containing 'phi3' makes llama.cpp strip the whitespace "
                "after special tokens, which this tokenizer does not do")
    return run_name, ""


def _encode(tokenizer: Any, text: str, special: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


def expected_metadata(tokenizer: Any, chat_template: str, name: str, end_of_turn: str | None = None) -> GGUFExpectation:
    """What the GGUF must say, read off the run's tokenizer and chat template.

    `end_of_turn`: the text that ends an assistant turn in the template (from the measured
    turn format); its token is the EOT id when it is a single added token.
    """
    from tui_tuner.chat_format.templates import render_conversation

    added = {int(i): (tok.content, CONTROL if tok.special else USER_DEFINED)
             for i, tok in tokenizer.added_tokens_decoder.items()}
    bos_id, eos_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    probe = render_conversation(tokenizer, [{"role": "user", "content": "Hi"}], True, chat_template=chat_template)
    prompt_ids = _encode(tokenizer, probe, False)
    plain = _encode(tokenizer, "Hi", True)
    eot_id = None
    if end_of_turn:
        ids = _encode(tokenizer, end_of_turn, False)
        if len(ids) == 1 and ids[0] in added:
            eot_id = ids[0]
    rstrip = any(tok.special and tok.rstrip for tok in tokenizer.added_tokens_decoder.values())
    space_prefix = _space_after_added_token(tokenizer)
    gguf_name, name_note = llama_cpp_name(name, rstrip)
    return GGUFExpectation(
        name=gguf_name, name_note=name_note, chat_template=chat_template, vocab_size=len(tokenizer),
        add_bos=bos_id is not None and bool(prompt_ids) and prompt_ids[0] == bos_id,
        add_eos=eos_id is not None and bool(plain) and plain[-1] == eos_id,
        bos_id=bos_id, eos_id=eos_id, eot_id=eot_id, pad_id=tokenizer.pad_token_id, unk_id=tokenizer.unk_token_id,
        added=added, bos_text=str(tokenizer.bos_token or ""), space_prefix=space_prefix)


def _space_after_added_token(tokenizer: Any) -> bool | None:
    """Whether text right after an added token starts with SentencePiece's space piece (None: not SentencePiece).

    Rendered conversations are text between added tokens, so this, not the start of a plain text,
    is what llama.cpp's `add_space_prefix` has to agree with.
    """
    texts = [tok.content for _, tok in sorted(tokenizer.added_tokens_decoder.items())
             if tok.content and not tok.rstrip and tok.content != tokenizer.unk_token]
    if not texts:
        return None
    pieces = tokenizer.convert_ids_to_tokens(_encode(tokenizer, texts[-1] + "Hi", False))
    if len(pieces) < 2 or not any("\u2581" in str(p) for p in tokenizer.convert_ids_to_tokens(
            _encode(tokenizer, "a b", False))):
        return None  # byte-level BPE (Ġ for spaces) or another scheme: llama.cpp has no such setting
    return str(pieces[1]).startswith("\u2581")


def prepare_tokenizer_config(folder: Path, exp: GGUFExpectation) -> None:
    """Write into `folder/tokenizer_config.json` what llama.cpp's converter reads (types, BOS/EOS rule).

    `tokenizer_config.json` may be a link into the base model's folder: it is replaced by a file.
    """
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text()) if path.is_file() else {}
    config["added_tokens_decoder"] = {str(i): {"content": text, "special": kind == CONTROL, "lstrip": False,
                                               "rstrip": False, "normalized": False, "single_word": False}
                                      for i, (text, kind) in sorted(exp.added.items())}
    config["add_bos_token"] = exp.add_bos
    config["add_eos_token"] = exp.add_eos
    if path.is_symlink():
        path.unlink()
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------------------- reading a GGUF


def read_metadata(path: Path) -> dict[str, Any]:
    """The tokenizer and naming fields of a GGUF (token types as a list)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))

    def value(key: str) -> Any:
        f = reader.fields.get(key)
        return None if f is None else f.contents()

    return {
        "name": value("general.name"),
        "architecture": value("general.architecture"),
        "tokens": value("tokenizer.ggml.tokens") or [],
        "token_types": value("tokenizer.ggml.token_type") or [],
        "add_bos": value("tokenizer.ggml.add_bos_token"),
        "add_eos": value("tokenizer.ggml.add_eos_token"),
        "bos_id": value("tokenizer.ggml.bos_token_id"),
        "eos_id": value("tokenizer.ggml.eos_token_id"),
        "eot_id": value("tokenizer.ggml.eot_token_id"),
        "pad_id": value("tokenizer.ggml.padding_token_id"),
        "chat_template": value("tokenizer.chat_template"),
        "model": value("tokenizer.ggml.model"),
        "space_prefix": value("tokenizer.ggml.add_space_prefix"),
    }


def differences(meta: dict[str, Any], exp: GGUFExpectation) -> list[str]:
    """Every way the GGUF's metadata differs from what the run's tokenizer and template say."""
    problems = []
    if len(meta["tokens"]) != exp.vocab_size:
        problems.append(f"tokenizer has {len(meta['tokens'])} tokens, expected {exp.vocab_size}")
    types = meta["token_types"]
    wrong = []
    for token_id, (text, want) in sorted(exp.added.items()):
        if token_id >= len(types):
            continue
        if not exp.token_type_ok(token_id, types[token_id]):
            wrong.append(f"{text} {TYPE_NAMES.get(types[token_id], types[token_id])} (should be {TYPE_NAMES[want]})")
        elif token_id < len(meta["tokens"]) and meta["tokens"][token_id] != text:
            wrong.append(f"id {token_id} is {meta['tokens'][token_id]!r}, not {text!r}")
    if wrong:
        problems.append(f"{len(wrong)} added token(s) typed wrong: " + ", ".join(wrong[:6]) + (" ..." if len(wrong) > 6 else ""))
    for key, want in (("add_bos", exp.add_bos), ("add_eos", exp.add_eos)):
        if bool(meta[key]) != want:
            problems.append(f"{key}_token is {meta[key]}, training {'adds' if want else 'does not add'} it")
    for key, want in (("bos_id", exp.bos_id), ("eos_id", exp.eos_id), ("eot_id", exp.eot_id), ("pad_id", exp.pad_id)):
        if want is not None and meta[key] != want:
            problems.append(f"{key.replace('_id', '')} token id is {meta[key]}, expected {want}")
    if meta.get("model") == "llama" and exp.space_prefix is not None:
        has = True if meta.get("space_prefix") is None else bool(meta["space_prefix"])  # llama.cpp's default
        if has != exp.space_prefix:
            problems.append(f"add_space_prefix is {has}, training {'puts' if exp.space_prefix else 'puts no'} "
                            "space piece after an added token")
    if meta["chat_template"] != exp.chat_template:
        problems.append("the chat template differs from the run's")
    if meta["name"] != exp.name:
        problems.append(f"general.name is {meta['name']!r}, expected {exp.name!r}")
    return problems


# ---------------------------------------------------------------------------- rewriting a GGUF


def rewrite_metadata(path: Path, exp: GGUFExpectation) -> None:
    """Rewrite `path` in place with the expected tokenizer metadata; tensors are copied byte for byte."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    types = list(reader.fields["tokenizer.ggml.token_type"].contents())
    for token_id, (_text, want) in exp.added.items():
        if token_id < len(types) and not exp.token_type_ok(token_id, types[token_id]):
            types[token_id] = want
    T = gguf.GGUFValueType
    new: dict[str, tuple[Any, Any, Any]] = {
        "general.name": (exp.name, T.STRING, None),
        "tokenizer.ggml.token_type": (types, T.ARRAY, T.INT32),
        "tokenizer.ggml.add_bos_token": (exp.add_bos, T.BOOL, None),
        "tokenizer.ggml.add_eos_token": (exp.add_eos, T.BOOL, None),
        "tokenizer.chat_template": (exp.chat_template, T.STRING, None),
    }
    for key, value in (("bos", exp.bos_id), ("eos", exp.eos_id), ("eot", exp.eot_id), ("padding", exp.pad_id)):
        if value is not None:
            new[f"tokenizer.ggml.{key}_token_id"] = (int(value), T.UINT32, None)
    model = reader.fields.get("tokenizer.ggml.model")
    if exp.space_prefix is not None and model is not None and model.contents() == "llama":
        new["tokenizer.ggml.add_space_prefix"] = (exp.space_prefix, T.BOOL, None)
    arch = reader.fields["general.architecture"].contents()
    tmp = path.with_name(path.name + ".rewrite")
    writer = gguf.GGUFWriter(str(tmp), arch=arch, endianess=reader.endianess)
    for f in reader.fields.values():
        if f.name == "general.architecture" or f.name.startswith("GGUF.") or f.name in new:
            continue
        vtype = f.types[0]
        writer.add_key_value(f.name, f.contents(), vtype, sub_type=f.types[-1] if vtype == T.ARRAY else None)
    for key, (value, vtype, sub) in new.items():
        writer.add_key_value(key, value, vtype, sub_type=sub)
    for t in reader.tensors:
        writer.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t in reader.tensors:
        writer.write_tensor_data(t.data, tensor_endianess=reader.endianess)
    writer.close()
    del reader
    os.replace(tmp, path)
