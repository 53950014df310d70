"""`check_fit`, the function behind `tui-tuner check` and the TUI's Hardware screen."""

from __future__ import annotations

import json

import pytest

from tui_tuner.fit.estimate import GIB
from tui_tuner.fit.check import FitCheckError, FitOptions, check_fit, project_configs
from tui_tuner.fit.hardware import probe


@pytest.fixture(scope="module")
def machine():
    return probe()


def test_model_against_a_named_card(machine, tmp_path):
    report = check_fit("meta-llama/Llama-3.1-8B", FitOptions(gpu="A10G", runs_dir=str(tmp_path)), hardware=machine)
    assert report.vram_bytes == 24 * GIB and report.hypothetical
    assert report.backends == ["transformers", "unsloth"]
    (t,) = report.targets
    assert {(e.method, e.backend) for e in t.estimates} == {(m, b) for m in ("full", "lora", "qlora")
                                                             for b in ("transformers", "unsloth")}
    assert t.recommendations["unsloth"].recommended.method == "lora"
    assert json.loads(json.dumps(report.as_dict()))["checked_against"]["gpu"] == "A10G"


def test_options_override_and_validate(machine, tmp_path):
    opts = FitOptions(method="qlora", seq_len=4096, batch_size=1, lora_r=8, target_modules="q_proj,v_proj",
                      optimizer="adamw_8bit", backend="transformers", vram_gb=12, runs_dir=str(tmp_path))
    (t,) = check_fit("Qwen/Qwen2.5-7B", opts, hardware=machine).targets
    assert t.settings["target_modules"] == ["q_proj", "v_proj"] and t.settings["optimizer"] == "adamw_8bit"
    assert [(e.method, e.backend) for e in t.estimates] == [("qlora", "transformers")]
    with pytest.raises(FitCheckError, match="--r 0"):
        check_fit("Qwen/Qwen2.5-7B", FitOptions(lora_r=0), hardware=machine)


def test_presets_are_checked_with_their_own_settings(machine):
    configs = project_configs()
    if not configs:
        pytest.skip("this checkout has no configs/ presets")
    report = check_fit(None, FitOptions(gpu="T4"), hardware=machine)
    assert len(report.targets) + len(report.problems) == len(configs)
    for t in report.targets:
        assert len({e.method for e in t.estimates}) == 1  # the config's own method


def test_target_modules_the_model_lacks_are_refused_like_learn_lora(machine):
    with pytest.raises(FitCheckError, match="q_proj, v_proj matches no linear layer.*target qkv_proj"):
        check_fit("microsoft/Phi-3-mini-4k-instruct", FitOptions(target_modules="q_proj,v_proj", vram_gb=24),
                  hardware=machine)
    (t,) = check_fit("microsoft/Phi-3-mini-4k-instruct", FitOptions(target_modules="qkv_proj", vram_gb=24),
                     hardware=machine).targets
    assert {e.method for e in t.estimates} == {"full", "lora", "qlora"}


def test_a_backend_mlx_config_is_checked_with_mlx_memory_terms(machine, tmp_path):
    path = tmp_path / "mlx.yaml"
    path.write_text("model:\n  name_or_path: Qwen/Qwen2.5-7B\nbackend: mlx\n")
    (t,) = check_fit(str(path), FitOptions(vram_gb=24, runs_dir=str(tmp_path)), hardware=machine).targets
    assert [(e.method, e.backend) for e in t.estimates] == [("lora", "mlx")]
    est = t.estimates[0]
    assert est.line("cuda_context") is None and est.line("dequant") is None  # no CUDA on a Mac
    assert t.metal is None  # checked against a card given by --vram, not a Mac
