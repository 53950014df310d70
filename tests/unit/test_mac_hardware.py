"""The Apple Silicon probe with mocked `sysctl` / `ioreg` / platform readings (as NVML readings are mocked),
and the fit check (`check`, `--json`) against the Metal working-set limit with MLX's memory terms."""

from __future__ import annotations

import json
import sys

import pytest

from tui_tuner.fit.mac import GIB, MIB, default_metal_limit, fit_against_metal, metal_limit, probe_mac

IOREG_M2_PRO = '''+-o AGXAcceleratorG14X  <class AGXAcceleratorG14X, id 0x1000003c1>
    {
      "gpu-core-count" = 19
      "model" = "Apple M2 Pro"
    }
'''


def sysctl_of(values):
    return lambda name: values.get(name)


def mac16(wired=None):
    values = {"hw.memsize": str(16 * GIB), "machdep.cpu.brand_string": "Apple M2 Pro"}
    if wired is not None:
        values["iogpu.wired_limit_mb"] = str(wired)
    return probe_mac(sysctl=sysctl_of(values), ioreg=lambda: IOREG_M2_PRO, system=lambda: "Darwin",
                     machine=lambda: "arm64", free_bytes=lambda: 9 * GIB)


def test_a_16_gb_mac_reads_chip_memory_cores_and_the_default_metal_limit():
    mac = mac16()
    assert mac.chip == "Apple M2 Pro" and mac.memory_bytes == 16 * GIB and mac.memory_free_bytes == 9 * GIB
    assert mac.gpu_cores == 19
    assert mac.metal_limit_bytes == int(16 * GIB * 2 / 3) and "iogpu.wired_limit_mb unset" in mac.metal_limit_source


def test_the_wired_limit_sysctl_overrides_the_default():
    mac = mac16(wired=14336)
    assert mac.metal_limit_bytes == 14336 * MIB and mac.metal_limit_source == "iogpu.wired_limit_mb = 14336"
    assert mac16(wired=0).metal_limit_bytes == int(16 * GIB * 2 / 3)  # 0 means "macOS default"


def test_big_macs_get_three_quarters_and_the_limit_never_exceeds_memory():
    assert default_metal_limit(64 * GIB) == 48 * GIB
    assert metal_limit(16 * GIB, str(64 * 1024))[0] == 16 * GIB
    assert metal_limit(16 * GIB, "garbage")[0] == int(16 * GIB * 2 / 3)


def test_not_a_mac_or_an_intel_mac_or_no_readings_is_none():
    kw = dict(ioreg=lambda: None, free_bytes=lambda: None)
    assert probe_mac(sysctl=sysctl_of({"hw.memsize": "1"}), system=lambda: "Linux", machine=lambda: "x86_64", **kw) is None
    assert probe_mac(sysctl=sysctl_of({"hw.memsize": str(GIB)}), system=lambda: "Darwin", machine=lambda: "x86_64",
                     **kw) is None
    assert probe_mac(sysctl=sysctl_of({}), system=lambda: "Darwin", machine=lambda: "arm64", **kw) is None
    mac = probe_mac(sysctl=sysctl_of({"hw.memsize": str(8 * GIB)}), system=lambda: "Darwin", machine=lambda: "arm64",
                    **kw)
    assert mac.chip == "Apple Silicon" and mac.gpu_cores is None  # what is missing stays unknown, never guessed


def test_the_fit_on_a_16_gb_mac_names_the_metal_limit():
    mac = mac16()
    fits, line = fit_against_metal(8 * GIB, mac)
    assert fits and "Metal working-set limit" in line and "Apple M2 Pro" in line
    fits, line = fit_against_metal(12 * GIB, mac)  # under 16 GB of RAM, over the 10.7 GB the GPU may wire
    assert not fits and "iogpu.wired_limit_mb" in line and "does not fit" in line


# ---------------------------------------------------------------------------- the fit check on a mocked Mac


@pytest.fixture
def mocked_mac(monkeypatch):
    """A 16 GB M2 Pro with no NVIDIA or AMD GPU: the readings replaced where fit/mac.py takes them
    (sysctl, ioreg, platform, free memory); returns the sysctl values for a test to change."""
    from tui_tuner.fit import hardware, mac

    values = {"hw.memsize": str(16 * GIB), "machdep.cpu.brand_string": "Apple M2 Pro"}
    monkeypatch.setattr(mac, "run_sysctl", lambda name: values.get(name))
    monkeypatch.setattr(mac, "run_ioreg", lambda: IOREG_M2_PRO)
    monkeypatch.setattr(mac, "_available_memory", lambda: 9 * GIB)
    monkeypatch.setattr(mac.platform, "system", lambda: "Darwin")
    monkeypatch.setattr(mac.platform, "machine", lambda: "arm64")
    monkeypatch.setitem(sys.modules, "pynvml", None)  # no NVIDIA library on a Mac
    monkeypatch.setitem(sys.modules, "amdsmi", None)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    hardware.reset_nvml()
    yield values
    hardware.reset_nvml()


def test_check_on_a_16_gb_mac_names_the_metal_limit_in_text_and_json(mocked_mac, capsys, tmp_path):
    from tui_tuner.cli import main

    limit = int(16 * GIB * 2 / 3)
    assert main(["check", "meta-llama/Llama-3.1-8B", "--runs-dir", str(tmp_path)]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Apple M2 Pro: 16.0 GiB unified memory, 9.00 GiB free, 19 GPU cores" in text
    assert "Metal working-set limit 10.7 GiB" in text and "sudo sysctl iogpu.wired_limit_mb=" in text
    assert "No GPU" not in text  # the Mac's GPU is the one checked against
    assert "qlora (mlx) needs" in text and "4-bit affine" in text and "not bitsandbytes' NF4" in text

    assert main(["check", "meta-llama/Llama-3.1-8B", "--runs-dir", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    against = out["checked_against"]
    assert against["vram_bytes"] == limit and against["gpu"] == "Apple M2 Pro Metal limit"
    assert against["metal_limit"]["bytes"] == limit and "iogpu.wired_limit_mb" in against["metal_limit"]["note"]
    assert out["hardware"]["mac"]["gpu_cores"] == 19 and out["backends"] == ["mlx"]
    (target,) = out["targets"]
    rec = target["recommendations"]["mlx"]
    assert rec["recommended"]["method"] == "qlora"  # 8B LoRA on 16-bit weights is over 10.7 GiB
    assert not next(o for o in rec["options"] if o["method"] == "lora")["fits"]
    assert target["metal"]["fits"] and target["metal"]["method"] == "qlora"
    assert "Metal working-set limit" in target["metal"]["line"]


def test_a_small_model_gets_lora_and_a_raised_limit_is_what_the_fit_uses(mocked_mac, tmp_path):
    from tui_tuner.fit.check import FitOptions, check_fit

    report = check_fit("TinyLlama/TinyLlama-1.1B-Chat-v1.0", FitOptions(runs_dir=str(tmp_path)))
    (t,) = report.targets
    assert t.recommendations["mlx"].recommended.method == "lora"
    assert t.metal["advice"].startswith("On MLX, LoRA")
    mocked_mac["iogpu.wired_limit_mb"] = "14336"
    report = check_fit("TinyLlama/TinyLlama-1.1B-Chat-v1.0", FitOptions(runs_dir=str(tmp_path)))
    assert report.vram_bytes == 14336 * MIB and report.mac.metal_limit_source == "iogpu.wired_limit_mb = 14336"
    # A card given by --gpu is checked as that card, with its backends, not as the Mac.
    hypothetical = check_fit("TinyLlama/TinyLlama-1.1B-Chat-v1.0", FitOptions(gpu="T4", runs_dir=str(tmp_path)))
    assert hypothetical.mac is None and "mlx" not in hypothetical.backends


def test_mlx_memory_terms():
    from tui_tuner.fit.estimate import estimate_memory
    from tui_tuner.models.spec import model_spec

    spec = model_spec("meta-llama/Llama-3.1-8B")
    q = estimate_memory(spec, "qlora", backend="mlx")
    quantized = spec.linear_params + spec.embedding_params + spec.lm_head_params  # mlx_lm quantizes embeddings too
    assert q.line("weights").bytes == quantized // 2
    assert q.line("quant_constants").bytes == round(quantized / 64 * 4)  # 16-bit scale + bias per 64 weights
    assert q.line("dequant") is None and q.line("cuda_context") is None
    assert q.line("logits").bytes == 2 * 1024 * spec.vocab_size * 6
    lora = estimate_memory(spec, "lora", backend="mlx")
    assert lora.line("weights").bytes == spec.param_count * 2
    assert lora.line("optimizer").bytes == 2 * lora.line("adapter").bytes  # AdamW moments in the adapter's fp32
    eight_bit = estimate_memory(spec, "lora", backend="mlx", optimizer="adamw_8bit")
    assert eight_bit.total_bytes == lora.total_bytes and "MLX has no adamw_8bit" in eight_bit.notes[0]


def test_preflight_warns_when_an_mlx_run_is_over_the_metal_limit(mocked_mac, tmp_path):
    from tui_tuner.config.schema import RunConfig
    from tui_tuner.fit.hardware import probe
    from tui_tuner.train.preflight import gpu_issues

    hw = probe(tmp_path)
    cfg = RunConfig(backend="auto", method="lora")
    cfg.model.name_or_path = "meta-llama/Llama-3.1-8B"
    (issue,) = gpu_issues(cfg, hw)  # 8B LoRA on 16-bit weights: over a 16 GB Mac's 10.7 GiB
    assert issue.severity == "warning" and "Metal working-set limit" in issue.message
    assert "iogpu.wired_limit_mb" in issue.message
    cfg.method = "qlora"
    assert gpu_issues(cfg, hw) == []
    cfg.method, cfg.backend = "lora", "transformers"  # not an MLX run: not checked against Metal
    assert gpu_issues(cfg, hw) == []
