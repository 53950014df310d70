"""Exports read back: merged weights equal base+adapter, GGUF has every tensor and the chat template."""

import os
from pathlib import Path

import pytest

from tests.infer_fixtures import MEMORISED, SYSTEM
from tui_tuner.inference.chat_model import resolve_source


def _prompt_ids(chat, question):
    return chat.encode(chat.render([{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]))


@pytest.fixture(scope="module")
def merged_dir(memorised_run, tmp_path_factory):
    from tui_tuner.export.exporters import export_merged

    out = tmp_path_factory.mktemp("merged") / "merged"
    return export_merged(resolve_source(memorised_run), out, dtype="float32").path


def test_merged_model_gives_the_logits_of_base_plus_adapter(merged_dir, loaded_run):
    import torch
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).eval()
    ids = torch.tensor([_prompt_ids(loaded_run, MEMORISED[0][0])])
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, loaded_run.model(ids).logits, atol=1e-4, rtol=1e-4)
    assert (merged_dir / "tokenizer.model").is_file()  # llama.cpp's converter reads it
    assert (merged_dir / "chat_template.jinja").read_text() == loaded_run.chat_template


def test_merged_folder_loads_as_a_plain_model_and_chats(merged_dir):
    from tui_tuner.inference.chat_model import GenerationSettings, load_chat_model

    source = resolve_source(merged_dir)
    assert source.kind == "model" and source.adapter_dir is None
    chat = load_chat_model(source)
    answer = chat.answer([{"role": "user", "content": MEMORISED[0][0]}],
                         GenerationSettings(temperature=0, max_new_tokens=24, system_prompt=SYSTEM,
                                            repetition_penalty=1.0))
    assert answer.text == MEMORISED[0][1]


LLAMA_CPP_MISSING = ("llama-cpp-python is not installed (pip install -e '.[gguf]' compiles llama.cpp; .ci/run "
                     "installs it from a cached wheel)")


def _converter_root():
    """llama.cpp's converter from $TUI_TUNER_LLAMA_CPP or the user's persistent cache (fetched once)."""
    from tui_tuner.export.llama_cpp import ConverterUnavailable, find_converter

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tui-tuner"
    try:
        return find_converter(os.environ.get("TUI_TUNER_LLAMA_CPP"), cache=cache).root
    except ConverterUnavailable as exc:
        pytest.skip(f"llama.cpp's converter cannot be obtained here: {exc}")


MEMORISED_PROMPTS = [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}] for q, _ in MEMORISED]


@pytest.fixture(scope="module")
def gguf_export(memorised_run, tmp_path_factory):
    from tui_tuner.export.exporters import export_gguf

    out = tmp_path_factory.mktemp("gguf")
    return export_gguf(resolve_source(memorised_run), out, quant="f16", llama_cpp=_converter_root(),
                       prompts=MEMORISED_PROMPTS)


def test_gguf_has_every_tensor_shape_and_the_tokenizer_and_template(gguf_export, merged_dir, loaded_run):
    from safetensors import safe_open

    from tui_tuner.export.exporters import gguf_summary

    summary = gguf_summary(gguf_export.path)
    with safe_open(str(merged_dir / "model.safetensors"), "pt") as f:
        hf = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
    assert len(summary["tensors"]) == len(hf)
    assert summary["tensors"]["token_embd.weight"]["shape"] == hf["model.embed_tokens.weight"]
    assert summary["tensors"]["output.weight"]["shape"] == hf["lm_head.weight"]
    assert summary["tensors"]["blk.3.ffn_down.weight"]["shape"] == hf["model.layers.3.mlp.down_proj.weight"]
    assert summary["tensors"]["blk.0.attn_k.weight"]["shape"] == hf["model.layers.0.self_attn.k_proj.weight"]
    assert summary["architecture"] == "llama"
    assert summary["tokenizer_model"] == "llama"  # SentencePiece vocabulary
    assert summary["vocab_size"] == len(loaded_run.tokenizer)
    assert summary["eos_token_id"] == loaded_run.tokenizer.eos_token_id
    assert summary["chat_template"] == loaded_run.chat_template
    assert gguf_export.check["files"][gguf_export.path.name]["tensors"] == len(hf)  # export_gguf's own check agreed


def test_gguf_keeps_the_tokenizers_token_types_bos_rule_and_run_name(gguf_export, loaded_run, memorised_run):
    from tui_tuner.export.exporters import gguf_summary

    summary = gguf_summary(gguf_export.path)
    tok = loaded_run.tokenizer
    types = summary["token_types"]
    # The demo tokenizer: <|im_end|> (EOS) is special, <|im_start|> an added token that is not.
    assert types[tok.convert_tokens_to_ids("<|im_end|>")] == 3  # CONTROL
    assert types[tok.convert_tokens_to_ids("<|im_start|>")] == 4  # USER_DEFINED: matched whole, printed
    assert summary["add_bos_token"] is False  # the template writes no BOS, so training never saw one
    assert summary["eot_token_id"] == tok.convert_tokens_to_ids("<|im_end|>")
    assert summary["padding_token_id"] == tok.pad_token_id
    assert summary["name"] == memorised_run.name


def test_q8_0_export_of_a_checkpoint_keeps_the_other_files_modelfile(memorised_run, tmp_path):
    from tui_tuner.export.exporters import export_gguf, gguf_summary

    source = resolve_source(memorised_run, checkpoint=4)
    first = export_gguf(source, tmp_path, quant="f16", llama_cpp=_converter_root(), verify=False)
    result = export_gguf(source, tmp_path, quant="q8_0", llama_cpp=_converter_root(), verify=False)
    assert result.path.name.endswith("checkpoint-4-q8_0.gguf")
    types = {t["type"] for t in gguf_summary(result.path)["tensors"].values()}
    assert "Q8_0" in types
    modelfiles = sorted(p.name for p in tmp_path.glob("*.Modelfile"))
    assert modelfiles == [first.path.with_suffix(".Modelfile").name, result.path.with_suffix(".Modelfile").name]
    assert f"FROM ./{first.path.name}" in first.path.with_suffix(".Modelfile").read_text()


def test_modelfile_template_and_stops(gguf_export, loaded_run):
    from tui_tuner.export.modelfile import parse_modelfile, render_go_template

    modelfile = gguf_export.path.with_suffix(".Modelfile")
    parsed = parse_modelfile(modelfile.read_text())
    assert parsed["from"] == f"./{gguf_export.path.name}"
    conv = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": MEMORISED[0][0]}]
    assert render_go_template(parsed["template"], conv) == loaded_run.render(conv)
    stops = [v for k, v in parsed["parameters"] if k == "stop"]
    assert "<|im_end|>" in stops


def test_llama_cpp_tokenizes_like_training_and_answers_like_transformers(gguf_export, loaded_run):
    pytest.importorskip("llama_cpp", reason=LLAMA_CPP_MISSING)
    (verification,) = gguf_export.check["verification"]
    assert verification["checked"] and verification["tokens_ok"], verification["tokens"]
    assert all(a["same"] for a in verification["answers"]), verification["answers"]
    first = verification["answers"][0]["llama_cpp"]
    assert loaded_run.tokenizer.decode(first, skip_special_tokens=True).strip() == MEMORISED[0][1]


def test_export_cli_refuses_gguf_offline_without_a_converter(memorised_run, tmp_path):
    import subprocess
    import sys

    env = dict(os.environ, TUI_TUNER_CACHE=str(tmp_path / "empty-cache"))
    env.pop("TUI_TUNER_LLAMA_CPP", None)
    done = subprocess.run([sys.executable, "-m", "tui_tuner", "export", str(memorised_run), "--gguf", "--no-fetch"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2
    assert "--llama-cpp" in done.stderr and "--merged" in done.stderr and "Traceback" not in done.stderr


def test_export_cli_refuses_an_unknown_quant_type_before_any_work(memorised_run):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "tui_tuner", "export", str(memorised_run), "--gguf", "--quant",
                           "q4_k_m,q3_x"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "q3_x" in done.stderr and "q5_k_m" in done.stderr and "Traceback" not in done.stderr
