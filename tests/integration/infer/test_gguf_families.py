"""GGUF exports of real tokenizer families behave like training, proven in llama.cpp itself.

For Llama 3, Qwen 2.5 and Phi-3 (tiny random models with the families' real tokenizers and
templates, `tui_tuner.models.tiny_real`), an adapter memorises three answers, then the run is
exported to f16 and q4_k_m in one go. The export's own proof runs llama.cpp (llama-cpp-python)
in a child process: rendered multi-turn conversations must tokenize to the training ids (BOS
included) and the greedy answers to three prompts are compared with transformers'.

Tolerance: f16 answers must equal transformers' token for token. q4_k_m answers must start
with the same 4 tokens and at least 2 of the 3 must be equal to the end; quantization noise
may change a late token where two logits are close, which a memorised answer rarely has.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.infer_fixtures import MEMORISED, SYSTEM, make_memorised_run

FAMILIES = ["llama3", "qwen2.5", "phi3"]
PROMPTS = [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}] for q, _ in MEMORISED]
PROMPTS.append([{"role": "user", "content": MEMORISED[1][0]}])  # a third prompt: no system message
LLAMA_CPP_MISSING = ("llama-cpp-python is not installed (pip install -e '.[gguf]' compiles llama.cpp; .ci/run "
                     "installs it from a cached wheel)")
Q4_SAME_PREFIX = 4
# What each family's GGUF must say: does training put BOS first, and which token ends a turn.
EXPECTED = {"llama3": (True, "<|eot_id|>", ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]),
            "qwen2.5": (False, "<|im_end|>", ["<|im_start|>", "<|im_end|>"]),
            "phi3": (False, "<|end|>", ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"])}


@pytest.fixture(scope="module", params=FAMILIES)
def family_export(request, tmp_path_factory, tiny_model):
    """(family, tokenizer, ExportResult) for f16 + q4_k_m of a memorising run on the family's tiny model."""
    from transformers import AutoTokenizer

    from tui_tuner.export.exporters import export_gguf
    from tui_tuner.export.llama_cpp import ConverterUnavailable, find_converter
    from tui_tuner.inference.chat_model import resolve_source

    family = request.param
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tui-tuner"
    try:
        converter = find_converter(os.environ.get("TUI_TUNER_LLAMA_CPP"), cache=cache)
    except ConverterUnavailable as exc:
        pytest.skip(f"llama.cpp's converter cannot be obtained here: {exc}")
    model_dir = tiny_model(family)
    run = make_memorised_run(model_dir, tmp_path_factory.mktemp(family) / f"memo-{family}", steps=40,
                             model_name=str(model_dir))
    quants = "f16,q4_k_m"
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        quants = "f16"  # K-quants need llama.cpp's quantize code
    result = export_gguf(resolve_source(run), run / "gguf", quant=quants, llama_cpp=converter.root, prompts=PROMPTS)
    return family, AutoTokenizer.from_pretrained(run / "adapter"), result


def _file(result, quant):
    return next(p for p in result.files if p.name.endswith(f"-{quant}.gguf"))


def test_gguf_metadata_is_the_training_tokenizers(family_export):
    from tui_tuner.export.exporters import gguf_summary

    family, tok, result = family_export
    add_bos, end_of_turn, control = EXPECTED[family]
    summary = gguf_summary(_file(result, "f16"))
    assert summary["add_bos_token"] is add_bos
    assert summary["eot_token_id"] == tok.convert_tokens_to_ids(end_of_turn)
    for text in control:
        assert summary["token_types"][tok.convert_tokens_to_ids(text)] == 3, text  # CONTROL: never split
    # The run name, except that llama.cpp must not read "phi3" in it: that switches on Phi-3's
    # strip-after-special-tokens rule, which these tokenizers (like training) do not apply.
    assert summary["name"] == {"phi3": "memo-phi 3"}.get(family, f"memo-{family}")
    assert summary["chat_template"] == tok.chat_template
    assert result.files[1].name.endswith("-f16.Modelfile")


def test_llama_cpp_tokenizes_conversations_like_training(family_export):
    pytest.importorskip("llama_cpp", reason=LLAMA_CPP_MISSING)
    family, tok, result = family_export
    add_bos = EXPECTED[family][0]
    for verification in result.check["verification"]:
        assert verification["checked"] and verification["tokens_ok"], verification["tokens"]
        for item in verification["tokens"]:
            assert (item["llama_cpp"][0] == tok.bos_token_id) is add_bos  # BOS exactly when training has it
        assert len(verification["tokens"]) >= 4  # multi-turn probe with and without system, as prompt and whole


def test_f16_greedy_answers_match_transformers_token_for_token(family_export):
    pytest.importorskip("llama_cpp", reason=LLAMA_CPP_MISSING)
    family, tok, result = family_export
    (f16,) = [v for v in result.check["verification"] if v["file"].endswith("-f16.gguf")]
    assert len(f16["answers"]) == 3
    for answer in f16["answers"]:
        assert answer["llama_cpp"] == answer["transformers"], answer
    assert any(answer["llama_cpp"] for answer in f16["answers"])


def test_q4_k_m_is_llama_cpps_k_quant_and_answers_within_tolerance(family_export):
    pytest.importorskip("llama_cpp", reason=LLAMA_CPP_MISSING)
    from tui_tuner.export.exporters import gguf_summary

    family, tok, result = family_export
    types = {t["type"] for t in gguf_summary(_file(result, "q4_k_m"))["tensors"].values()}
    assert "Q4_K" in types, types
    (q4,) = [v for v in result.check["verification"] if v["file"].endswith("-q4_k_m.gguf")]
    # An answer equal to the end may be shorter than the prefix (an immediate end of turn).
    assert all(a["same"] or a["first_difference"] >= Q4_SAME_PREFIX for a in q4["answers"]), q4["answers"]
