"""Memory by precision and LoRA arithmetic: the course's figures, reproduced from real architectures."""

import json

import pytest

from tui_tuner.cli import main
from tui_tuner.learn.layout import model_layout
from tui_tuner.learn.lora_math import TargetModulesError, lora_report, lora_scaling
from tui_tuner.learn.memory import GB, memory_by_precision, nominal_size

LLAMA2_7B = "meta-llama/Llama-2-7b-hf"


def test_seed_table_7b_is_reproduced_then_corrected():
    report = memory_by_precision(model_layout(LLAMA2_7B))
    thumb = [round(report.row(k).rule_of_thumb_bytes / GB, 2) for k in ("fp32", "bf16", "int8", "nf4-dq")]
    assert thumb == [28.0, 14.0, 7.0, 3.5]
    assert report.params == 6_738_415_616
    assert report.row("fp32").exact_bytes == report.params * 4
    assert report.row("bf16").exact_bytes == report.params * 2
    # embeddings + LM head stay 16-bit and every block of 64 carries a scale: NF4 is well above 3.5 GB
    nf4 = report.row("nf4-dq")
    assert 3.8 < nf4.exact_bytes / GB < 3.95
    assert nf4.kept_bytes == report.kept_params * 2
    assert report.kept_params == 2 * 32000 * 4096 + 4096 * (2 * 32 + 1)
    assert report.row("nf4").exact_bytes > nf4.exact_bytes     # double quant saves ~0.37 bit
    assert any("7B" in line for line in report.gap_explanation)
    assert any("16 bit" in line for line in report.gap_explanation)


@pytest.mark.parametrize("name,params,expected", [
    ("meta-llama/Llama-2-7b-hf", 6.7e9, (7e9, "7B")),
    ("TinyLlama/TinyLlama-1.1B-Chat-v1.0", 1.1e9, (1.1e9, "1.1B")),
    ("Qwen/Qwen2.5-0.5B", 4.9e8, (0.5e9, "0.5B")),
    ("HuggingFaceTB/SmolLM2-135M", 1.35e8, (135e6, "135M")),
    ("my-model", 1_000_576, (1.0e6, "1M")),
])
def test_nominal_size_comes_from_the_name_when_it_has_one(name, params, expected):
    value, label, _ = nominal_size(name, int(params))
    assert (value, label) == expected


def test_lora_counts_follow_r_times_in_plus_out():
    layout = model_layout("TinyLlama/TinyLlama-1.1B-Chat-v1.0")
    report = lora_report(layout, r=16, alpha=32, target_modules=["q_proj", "v_proj"])
    q = next(m for m in report.modules if m.name == "q_proj")
    assert (q.a_shape, q.b_shape) == ([16, 2048], [2048, 16])
    assert report.trainable == 22 * 16 * ((2048 + 2048) + (2048 + 256))
    assert report.percent_of_base == pytest.approx(100 * report.trainable / 1_100_048_384)
    by_r = {row.r: row for row in report.rank_table}
    assert sorted(by_r) == [4, 8, 16, 32, 64]
    assert by_r[32].trainable == 2 * by_r[16].trainable
    assert 0 < by_r[32].adapter_bytes - by_r[32].trainable * 4 < 50_000   # data plus the safetensors header
    assert report.adapter_bytes["float32"] > report.trainable * 4 > report.adapter_bytes["bfloat16"]


def test_scaling_and_rslora():
    assert lora_scaling(32, 16) == 2
    assert lora_scaling(32, 16, use_rslora=True) == 8
    layout = model_layout(LLAMA2_7B)
    assert lora_report(layout, r=64, alpha=16, use_rslora=True).scaling == 2
    assert lora_report(layout, r=64, alpha=16).scaling == 0.25


def test_unknown_target_module_lists_the_real_ones():
    with pytest.raises(TargetModulesError, match="q_proj, k_proj"):
        lora_report(model_layout(LLAMA2_7B), target_modules=["query_key_value"])


def test_cli_memory_and_lora_json(capsys):
    assert main(["learn", "memory", LLAMA2_7B, "--json"]) == 0
    memory = json.loads(capsys.readouterr().out)
    assert memory["rows"][0]["rule_of_thumb_gb"] == 28.0
    assert main(["learn", "lora", LLAMA2_7B, "--r", "8", "--target-modules", "q_proj,v_proj", "--json"]) == 0
    lora = json.loads(capsys.readouterr().out)
    assert lora["trainable"] == 32 * 8 * 2 * (4096 + 4096) == 4_194_304


def test_cli_bad_input_exits_2_with_one_paragraph(capsys):
    assert main(["learn", "lora", LLAMA2_7B, "--target-modules", "nope"]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "Traceback" not in err
    assert main(["learn", "memory", "./no/such/folder"]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["learn", "lora", LLAMA2_7B, "--r", "0"]) == 2


def test_a_run_stands_for_its_base_model(demo_model_dir, tmp_path, capsys):
    from tests.tui.conftest import make_fake_run

    run = make_fake_run(tmp_path / "runs", "base-of-run", 3)   # the default config: the demo model
    assert main(["learn", "quant", run.name, "--runs-dir", str(tmp_path / "runs"), "--list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert "base model of run" in listing["model"]
    by_name = {t["name"]: t for t in listing["tensors"]}
    assert by_name["model.layers.0.self_attn.q_proj.weight"]["qlora_quantized"]
    assert not by_name["model.embed_tokens.weight"]["qlora_quantized"]
    assert not by_name["lm_head.weight"]["qlora_quantized"]
    assert main(["learn", "memory", str(run.path), "--json"]) == 0
    memory = json.loads(capsys.readouterr().out)
    quantized = sum(t["numel"] for t in listing["tensors"] if t["qlora_quantized"])
    assert memory["quantized_params"] == quantized        # the architecture and the checkpoint agree
    assert memory["params"] == sum(t["numel"] for t in listing["tensors"])
