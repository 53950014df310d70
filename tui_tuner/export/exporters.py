"""Take a fine-tuned model elsewhere: merged safetensors, GGUF for llama.cpp, an Ollama Modelfile.

    tui-tuner export RUN --merged                 # runs/<run>/merged/  (base + adapter, 16-bit safetensors)
    tui-tuner export RUN --gguf --quant q8_0      # runs/<run>/gguf/<name>-q8_0.gguf + Modelfile

The merge loads the base model *unquantized* (also for QLoRA runs, whose 4-bit base would
otherwise be baked into the merged weights) and folds the adapter in with PEFT's
`merge_and_unload`. GGUF conversion is llama.cpp's own `convert_hf_to_gguf.py`, run as a
subprocess on the merged folder (see `tui_tuner.export.llama_cpp` for where it comes from). Every
GGUF is read back with the `gguf` package: each tensor present with the right shape, and
the tokenizer and chat template in its metadata.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tui_tuner.inference.chat_model import ModelSource, SourceError, load_tokenizer_and_template

GGUF_QUANTS = ("f16", "q8_0")
MERGED_DTYPES = ("auto", "bfloat16", "float16", "float32")


@dataclass
class ExportResult:
    """What an export wrote."""

    kind: str
    path: Path
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    check: dict[str, Any] = field(default_factory=dict)


def _suffix(source: ModelSource) -> str:
    return f"-{source.checkpoint_name}" if source.checkpoint_name else ""


def default_export_dir(source: ModelSource, kind: str) -> Path:
    """`<run>/merged`, `<run>/gguf` (with `-checkpoint-N` for a checkpoint), or beside an outside adapter."""
    return source.output_dir / f"{kind}{_suffix(source)}"


def _merge_dtype(source: ModelSource, dtype: str):
    import torch

    if dtype != "auto":
        return getattr(torch, dtype)
    try:
        base_cfg = json.loads((Path(source.base_model) / "config.json").read_text())
        declared = base_cfg.get("dtype") or base_cfg.get("torch_dtype")
    except (OSError, ValueError):
        declared = None
    return torch.float16 if declared == "float16" else torch.bfloat16


def _copy_tokenizer_files(source: ModelSource, out_dir: Path) -> None:
    # transformers saves the fast tokenizer only; llama.cpp reads the SentencePiece model when there is one.
    for folder in (Path(source.tokenizer_dir), Path(source.base_model)):
        candidate = folder / "tokenizer.model"
        if candidate.is_file() and not (out_dir / "tokenizer.model").exists():
            shutil.copy2(candidate, out_dir / "tokenizer.model")


def export_merged(source: ModelSource, out_dir: Path | None = None, *, dtype: str = "auto",
                  log: Callable[[str], None] = lambda s: None) -> ExportResult:
    """Merge the adapter into the unquantized base and save safetensors + tokenizer (with its chat template)."""
    from tui_tuner.core.quiet import quiet_library_noise

    quiet_library_noise()
    from transformers import AutoModelForCausalLM

    if source.adapter_dir is None:
        raise SourceError(f"{source.label} is already a full model (no adapter to merge); use it as it is, "
                          "or export it with --gguf.")
    if dtype not in MERGED_DTYPES:
        raise SourceError(f"--dtype {dtype}: choose one of {', '.join(MERGED_DTYPES)}.")
    out_dir = out_dir or default_export_dir(source, "merged")
    torch_dtype = _merge_dtype(source, dtype)
    notes = []
    if source.method == "qlora":
        notes.append("QLoRA run: merged into the unquantized base weights (not the 4-bit ones used in training)")
    trust = bool(source.config and source.config.model.trust_remote_code)
    log(f"loading {source.base_model} unquantized ({str(torch_dtype).removeprefix('torch.')})")
    model = AutoModelForCausalLM.from_pretrained(source.base_model, dtype=torch_dtype, trust_remote_code=trust)
    from peft import PeftModel

    log(f"merging {source.adapter_dir}")
    merged = PeftModel.from_pretrained(model, str(source.adapter_dir)).merge_and_unload()
    tokenizer, template = load_tokenizer_and_template(source)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    merged.save_pretrained(tmp, safe_serialization=True)
    tokenizer.chat_template = template
    tokenizer.save_pretrained(tmp)
    _copy_tokenizer_files(source, tmp)
    (tmp / "tui_tuner_export.json").write_text(json.dumps({
        "from": source.label, "base_model": source.base_model, "adapter": str(source.adapter_dir),
        "dtype": str(torch_dtype).removeprefix("torch."), "exported": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }, indent=2) + "\n")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)  # a half-written export never looks finished
    log(f"merged model written to {out_dir}")
    return ExportResult("merged", out_dir, sorted(out_dir.iterdir()), notes)


# ---------------------------------------------------------------------------- GGUF


def gguf_summary(path: Path) -> dict[str, Any]:
    """Read a GGUF back: architecture, every tensor's name/shape/type, tokenizer and chat template metadata."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))

    def field_value(name: str) -> Any:
        f = reader.fields.get(name)
        if f is None:
            return None
        value = f.contents()
        return value

    tokens = field_value("tokenizer.ggml.tokens") or []
    return {
        "architecture": field_value("general.architecture"),
        "file_type": field_value("general.file_type"),
        "tensors": {t.name: {"shape": [int(x) for x in reversed(t.shape.tolist())], "type": t.tensor_type.name}
                    for t in reader.tensors},
        "tokenizer_model": field_value("tokenizer.ggml.model"),
        "vocab_size": len(tokens),
        "bos_token_id": field_value("tokenizer.ggml.bos_token_id"),
        "eos_token_id": field_value("tokenizer.ggml.eos_token_id"),
        "add_bos_token": field_value("tokenizer.ggml.add_bos_token"),
        "chat_template": field_value("tokenizer.chat_template"),
        "context_length": field_value(f"{field_value('general.architecture')}.context_length"),
    }


def check_gguf(path: Path, model_dir: Path, chat_template: str, vocab_size: int) -> dict[str, Any]:
    """Compare a GGUF with the HF model it came from; raises RuntimeError listing every mismatch."""
    import gguf
    from safetensors import safe_open

    summary = gguf_summary(path)
    arch = summary["architecture"]
    cfg = json.loads((model_dir / "config.json").read_text())
    n_layers = int(cfg.get("num_hidden_layers") or cfg.get("n_layer") or 0)
    arch_enum = next((k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch), None)
    problems = []
    expected: dict[str, list[int]] = {}
    if arch_enum is None:
        problems.append(f"unknown architecture {arch!r}")
    else:
        name_map = gguf.get_tensor_name_map(arch_enum, n_layers)
        for file in sorted(model_dir.glob("*.safetensors")):
            with safe_open(str(file), "pt") as f:
                for hf_name in f.keys():
                    if hf_name.endswith("rotary_emb.inv_freq"):
                        continue
                    gg_name = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
                    if gg_name is None:
                        problems.append(f"no GGUF name for {hf_name}")
                        continue
                    expected[gg_name] = list(f.get_slice(hf_name).get_shape())
    tensors = summary["tensors"]
    for name, shape in expected.items():
        got = tensors.get(name)
        if got is None:
            problems.append(f"tensor {name} missing")
        elif got["shape"] != shape:
            problems.append(f"tensor {name}: shape {got['shape']}, expected {shape}")
    extra = sorted(set(tensors) - set(expected) - {"rope_freqs.weight"})
    if extra:
        problems.append(f"unexpected tensors: {', '.join(extra[:5])}")
    if summary["vocab_size"] != vocab_size:
        problems.append(f"tokenizer has {summary['vocab_size']} tokens, expected {vocab_size}")
    if summary["chat_template"] != chat_template:
        problems.append("the chat template in the GGUF differs from the run's")
    if problems:
        raise RuntimeError(f"{path.name} does not match the model it was made from: " + "; ".join(problems))
    return {"tensors": len(tensors), "vocab_size": summary["vocab_size"], "architecture": arch,
            "tokenizer_model": summary["tokenizer_model"], "chat_template": True}


def export_gguf(source: ModelSource, out_dir: Path | None = None, *, quant: str = "f16",
                llama_cpp: str | Path | None = None, log: Callable[[str], None] = lambda s: None) -> ExportResult:
    """Merge (when needed), convert with llama.cpp's converter, write the Modelfile, and read the GGUF back."""
    from tui_tuner.export.llama_cpp import convert_to_gguf, find_converter
    from tui_tuner.export.modelfile import ModelfileError, modelfile_text, turn_format
    from tui_tuner.chat_format.templates import render_conversation

    if quant not in GGUF_QUANTS:
        raise SourceError(f"--quant {quant}: choose one of {', '.join(GGUF_QUANTS)}.")
    converter = find_converter(llama_cpp, log=log)  # before any heavy work: fail fast when offline
    log(f"converter: {converter.source}")
    out_dir = out_dir or default_export_dir(source, "gguf")
    out_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    staging = out_dir / ".merged-for-gguf"
    if source.adapter_dir is None:
        model_dir = Path(source.base_model)
    else:
        model_dir = export_merged(source, staging, log=log).path
    try:
        tokenizer, template = load_tokenizer_and_template(source)
        name = (source.run_dir.name if source.run_dir else Path(source.base_model).name) + _suffix(source)
        gguf_path = out_dir / f"{name}-{quant}.gguf"
        convert_to_gguf(converter, model_dir, gguf_path, quant, log=log)
        check = check_gguf(gguf_path, model_dir, template, len(tokenizer))
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    files = [gguf_path]
    try:
        fmt = turn_format(lambda m, g: render_conversation(tokenizer, m, g, chat_template=template),
                          bos_token=str(tokenizer.bos_token or ""))
        modelfile = out_dir / "Modelfile"
        modelfile.write_text(modelfile_text(gguf_path.name, fmt, eos_token=tokenizer.eos_token,
                                            note=f"Made by tui-tuner from {source.label}.\n"
                                                 f"ollama create {name.lower()} -f {modelfile}"))
        files.append(modelfile)
    except ModelfileError as exc:
        notes.append(f"no Ollama Modelfile: {exc}. The GGUF still carries the chat template for llama.cpp.")
    log(f"GGUF written to {gguf_path} ({check['tensors']} tensors, checked)")
    return ExportResult("gguf", gguf_path, files, notes, check)
