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

from tui_tuner.inference.chat_model import ModelSource, SourceError, fetch_base_model, load_tokenizer_and_template

GGUF_QUANTS = ("f16", "bf16", "q8_0", "q6_k", "q5_k_m", "q4_k_m")
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
    fetch_base_model(source, progress=_download_log(log), note=log)
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

CONVERTER_TYPES = ("f16", "bf16")
"""Written by llama.cpp's converter directly."""
LLAMA_QUANTS = ("q8_0", "q6_k", "q5_k_m", "q4_k_m")
"""Made by llama.cpp's quantize code (`llama_model_quantize`) from a 16-bit GGUF."""
UNVERIFIED = "UNVERIFIED"


class GGUFVerificationFailed(RuntimeError):
    """llama.cpp tokenizes the training conversations differently; the files are kept, named UNVERIFIED."""

    def __init__(self, message: str, result: "ExportResult"):
        super().__init__(message)
        self.result = result


def parse_quants(value: str | list[str] | tuple[str, ...]) -> list[str]:
    """`"q4_k_m,q8_0"` or a list -> validated, de-duplicated quant names (lower case)."""
    items = value.split(",") if isinstance(value, str) else list(value)
    quants = list(dict.fromkeys(q.strip().lower() for q in items if q.strip()))
    bad = [q for q in quants if q not in GGUF_QUANTS]
    if bad or not quants:
        raise SourceError(f"--quant {','.join(bad) or value!r}: choose from {', '.join(GGUF_QUANTS)} "
                          "(several separated by commas).")
    return quants


def gguf_summary(path: Path) -> dict[str, Any]:
    """Read a GGUF back: architecture, every tensor's name/shape/type, tokenizer and chat template metadata."""
    from gguf import GGUFReader

    from tui_tuner.export.gguf_meta import read_metadata

    reader = GGUFReader(str(path))
    arch_field = reader.fields.get("general.architecture")
    arch = arch_field.contents() if arch_field else None
    meta = read_metadata(path)

    def field_value(name: str) -> Any:
        f = reader.fields.get(name)
        return None if f is None else f.contents()

    return {
        "architecture": arch,
        "name": meta["name"],
        "file_type": field_value("general.file_type"),
        "tensors": {t.name: {"shape": [int(x) for x in reversed(t.shape.tolist())], "type": t.tensor_type.name}
                    for t in reader.tensors},
        "tokenizer_model": meta["model"],
        "vocab_size": len(meta["tokens"]),
        "bos_token_id": meta["bos_id"],
        "eos_token_id": meta["eos_id"],
        "eot_token_id": meta["eot_id"],
        "padding_token_id": meta["pad_id"],
        "add_bos_token": meta["add_bos"],
        "add_eos_token": meta["add_eos"],
        "token_types": meta["token_types"],
        "tokens": meta["tokens"],
        "chat_template": meta["chat_template"],
        "context_length": field_value(f"{arch}.context_length"),
    }


def check_gguf(path: Path, model_dir: Path, expected: Any) -> dict[str, Any]:
    """Compare a GGUF with the HF model and tokenizer it came from; raises RuntimeError listing every mismatch.

    Checks every tensor (present, right shape, nothing extra) and, through
    `gguf_meta.differences`, the vocabulary, every added token's type, add-BOS/EOS, the
    BOS/EOS/EOT/padding ids, the chat template and `general.name`.
    """
    import gguf
    from safetensors import safe_open

    from tui_tuner.export.gguf_meta import differences, read_metadata

    summary = gguf_summary(path)
    arch = summary["architecture"]
    cfg = json.loads((model_dir / "config.json").read_text())
    n_layers = int(cfg.get("num_hidden_layers") or cfg.get("n_layer") or 0)
    arch_enum = next((k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch), None)
    problems = []
    expected_tensors: dict[str, list[int]] = {}
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
                    expected_tensors[gg_name] = list(f.get_slice(hf_name).get_shape())
    tensors = summary["tensors"]
    tied = "output.weight" not in expected_tensors and cfg.get("tie_word_embeddings")
    for name, shape in expected_tensors.items():
        got = tensors.get(name)
        if got is None:
            problems.append(f"tensor {name} missing")
        elif got["shape"] != shape:
            problems.append(f"tensor {name}: shape {got['shape']}, expected {shape}")
    extra = sorted(set(tensors) - set(expected_tensors) - {"rope_freqs.weight"} - ({"output.weight"} if tied else set()))
    if extra:
        problems.append(f"unexpected tensors: {', '.join(extra[:5])}")
    problems += differences(read_metadata(path), expected)
    if problems:
        raise RuntimeError(f"{path.name} does not match the model it was made from: " + "; ".join(problems))
    types = sorted({t["type"] for t in tensors.values()})
    return {"tensors": len(tensors), "vocab_size": summary["vocab_size"], "architecture": arch,
            "tokenizer_model": summary["tokenizer_model"], "tensor_types": types, "chat_template": True,
            "added_tokens_typed": len(expected.added), "add_bos": summary["add_bos_token"]}


def _download_log(log: Callable[[str], None]) -> Callable[[Any], None]:
    """A base model's download progress as log lines: one as each file starts, and the last."""
    started: set[str] = set()

    def progress(p: Any) -> None:
        if p.finished or p.file not in started:
            started.add(p.file)
            log(p.text() + ("" if p.finished else f" ({p.file})"))

    return progress


def _stage_model(source: ModelSource, staging: Path, log: Callable[[str], None]) -> Path:
    """A folder the converter may read and whose tokenizer config may be edited: merged, or links to the base."""
    if source.adapter_dir is not None:
        return export_merged(source, staging, log=log).path
    base = Path(source.base_model)
    if not (base / "config.json").is_file():
        raise SourceError(f"{source.base_model} is not a local model folder; GGUF export converts a folder "
                          "(download it first, or export a run's adapter).")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    for item in base.iterdir():
        (staging / item.name).symlink_to(item.resolve())
    return staging


def _training_data(source: ModelSource) -> list[list[dict[str, str]]]:
    """The run's first conversations (eval file, else train file), for the proof; empty when unreadable."""
    from tui_tuner.data.loader import load_dataset_file

    cfg = source.config
    for path in ((cfg.data.eval, cfg.data.train) if cfg else ()):
        if path and Path(path).is_file():
            try:
                loaded = load_dataset_file(path, cfg.data)
            except Exception:  # noqa: BLE001 - the proof falls back to fixed prompts
                continue
            examples = [c for c in loaded.examples if not (len(c) == 1 and c[0].get("role") == "text")]
            if examples:
                return examples[:6]
    return []


def _mark_unverified(path: Path) -> Path:
    target = path.with_name(f"{path.stem}.{UNVERIFIED}{path.suffix}")
    path.replace(target)
    return target


def export_gguf(source: ModelSource, out_dir: Path | None = None, *, quant: str | list[str] = "f16",
                llama_cpp: str | Path | None = None, verify: bool = True,
                prompts: list[list[dict[str, str]]] | None = None,
                log: Callable[[str], None] = lambda s: None) -> ExportResult:
    """Merge (when needed), convert with llama.cpp's converter, quantize with llama.cpp, fix and check
    the tokenizer metadata, write one Modelfile per GGUF, and prove the result in llama.cpp.

    `quant`: one type or several (`"q4_k_m,q8_0"`); the model is converted once. Raises
    `GGUFVerificationFailed` (files kept, named UNVERIFIED) when llama.cpp tokenizes the
    training conversations differently.
    """
    from tui_tuner.chat_format.templates import render_conversation
    from tui_tuner.export import gguf_meta, verify as proof
    from tui_tuner.export.llama_cpp import convert_to_gguf, find_converter
    from tui_tuner.export.modelfile import ModelfileError, modelfile_text, turn_format

    quants = parse_quants(quant)
    have_llama_cpp = proof.llama_cpp_python_installed()
    needs_quantizer = [q for q in quants if q in LLAMA_QUANTS and not (q == "q8_0" and not have_llama_cpp)]
    if needs_quantizer and not have_llama_cpp:
        raise SourceError(f"--quant {','.join(needs_quantizer)} is made by llama.cpp's quantize code, which needs "
                          f"llama-cpp-python: {proof.INSTALL_HINT}. f16, bf16 and q8_0 work without it.")
    converter = find_converter(llama_cpp, log=log)  # before any heavy work: fail fast when offline
    log(f"converter: {converter.source}")
    out_dir = out_dir or default_export_dir(source, "gguf")
    out_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    name = (source.run_dir.name if source.run_dir else Path(source.base_model).name) + _suffix(source)
    staging = out_dir / ".staging-for-gguf"
    files: list[Path] = []
    checks: dict[str, Any] = {}
    verifications: list[proof.Verification] = []
    try:
        model_dir = _stage_model(source, staging / "model", log)
        tokenizer, template = load_tokenizer_and_template(source)

        def render(messages: list[dict[str, str]], gen: bool) -> str:
            return render_conversation(tokenizer, messages, gen, chat_template=template)

        try:
            fmt = turn_format(render, bos_token=str(tokenizer.bos_token or ""), eos_token=str(tokenizer.eos_token or ""))
        except ModelfileError as exc:
            fmt = None
            notes.append(f"no Ollama Modelfile: {exc}. The GGUF still carries the chat template for llama.cpp.")
        expected = gguf_meta.expected_metadata(tokenizer, template, name,
                                               end_of_turn=fmt.assistant[1].strip() if fmt else None)
        if expected.name_note:
            notes.append(expected.name_note)
        gguf_meta.prepare_tokenizer_config(model_dir, expected)

        # One 16-bit conversion feeds every quantization; f16/bf16 requested as such are kept.
        sixteen = "bf16" if "bf16" in quants and "f16" not in quants else "f16"
        converted: dict[str, Path] = {}
        for kind in [q for q in CONVERTER_TYPES if q in quants] or [sixteen]:
            target = out_dir / f"{name}-{kind}.gguf" if kind in quants else staging / f"{name}-{kind}.gguf"
            convert_to_gguf(converter, model_dir, target, kind, log=log, model_name=expected.name)
            problems = gguf_meta.differences(gguf_meta.read_metadata(target), expected)
            if problems:
                log("fixing what the converter got wrong: " + "; ".join(problems))
                gguf_meta.rewrite_metadata(target, expected)
            converted[kind] = target
        base16 = converted.get(sixteen) or next(iter(converted.values()))
        for q in quants:
            if q in converted:
                files.append(converted[q])
                continue
            target = out_dir / f"{name}-{q}.gguf"
            if have_llama_cpp:
                proof.quantize(base16, target, q, log=log)
            else:  # q8_0 only: the converter's own Q8_0 writer
                convert_to_gguf(converter, model_dir, target, q, log=log, model_name=expected.name)
                if gguf_meta.differences(gguf_meta.read_metadata(target), expected):
                    gguf_meta.rewrite_metadata(target, expected)
                notes.append("q8_0 written by llama.cpp's converter (llama-cpp-python, which has llama.cpp's "
                             "quantize code, is not installed)")
            files.append(target)
        for path in files:
            checks[path.name] = check_gguf(path, model_dir, expected)
            log(f"{path.name}: {checks[path.name]['tensors']} tensors ({', '.join(checks[path.name]['tensor_types'])}), "
                f"tokenizer metadata checked")

        if verify and have_llama_cpp:
            data = _training_data(source)
            texts = proof.tokenization_texts(render, data)
            training_ids = [list(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
            prompt_convs = prompts or proof.prompts_from_data(data)
            prompt_ids = [list(tokenizer(render(p, True), add_special_tokens=False)["input_ids"]) for p in prompt_convs]
            stop_ids = [i for i in (expected.eos_id, expected.eot_id) if i is not None]
            log(f"answering {len(prompt_ids)} prompt(s) greedily with transformers for the comparison")
            reference = proof.transformers_answers(model_dir, prompt_ids, stop_ids)
            for path in files:
                log(f"checking {path.name} in llama.cpp")
                verifications.append(proof.verify_gguf(path, texts=texts, training_ids=training_ids,
                                                       bos_text=expected.bos_text, prompt_ids=prompt_ids,
                                                       reference=reference, stop_ids=stop_ids))
        else:
            reason = ("--no-verify" if not verify else
                      f"llama-cpp-python is not installed; to verify: {proof.INSTALL_HINT}, then export again")
            verifications = [proof.Verification(path, False, reason) for path in files]
    finally:
        if staging.exists():
            shutil.rmtree(staging)

    failed = [v for v in verifications if v.checked and not v.tokens_ok]
    final: list[Path] = []
    for v in verifications:
        path = _mark_unverified(v.path) if v in failed else v.path
        v.path = path
        final.append(path)
        if fmt is not None:
            modelfile = path.with_suffix(".Modelfile")
            modelfile.write_text(modelfile_text(path.name, fmt, eos_token=tokenizer.eos_token,
                                                note=f"Made by tui-tuner from {source.label}.\n"
                                                     f"ollama create {name.lower()} -f {modelfile}"))
            final.append(modelfile)
    for v in verifications:
        for line in v.lines():
            log(line)
    result = ExportResult("gguf", final[0], final, notes,
                          {"files": checks, "verification": [v.as_dict() for v in verifications]})
    if failed:
        raise GGUFVerificationFailed(
            "llama.cpp tokenizes the training conversations differently from training in "
            + ", ".join(v.path.name for v in failed) + "; the files are kept but named "
            f"{UNVERIFIED}. Details above.", result)
    return result
