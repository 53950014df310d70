"""Backend choice on CPU: Unsloth only with CUDA and a working import; the reason is always given."""

from __future__ import annotations

import pytest

from tui_tuner.config.schema import RunConfig
from tui_tuner.train import backend_select as bs


def cfg(backend="auto", gpus=1):
    c = RunConfig(backend=backend)
    c.distributed.gpus = gpus
    return c


def test_transformers_when_asked():
    assert bs.select_backend(cfg("transformers"))[0] == "transformers"


def test_auto_without_cuda(monkeypatch):
    monkeypatch.setattr(bs, "cuda_available", lambda: False)
    name, reason = bs.select_backend(cfg())
    assert name == "transformers" and "no CUDA" in reason


def test_unsloth_without_cuda_is_refused_with_what_to_do(monkeypatch):
    monkeypatch.setattr(bs, "cuda_available", lambda: False)
    with pytest.raises(bs.BackendUnavailable, match="backend: auto"):
        bs.select_backend(cfg("unsloth"))


def test_auto_with_cuda_and_unsloth(monkeypatch):
    monkeypatch.setattr(bs, "cuda_available", lambda: True)
    monkeypatch.setattr(bs, "unsloth_importable", lambda: (True, ""))
    assert bs.select_backend(cfg()) == ("unsloth", "CUDA GPU present and unsloth imports")


def test_auto_with_cuda_but_broken_unsloth(monkeypatch):
    monkeypatch.setattr(bs, "cuda_available", lambda: True)
    monkeypatch.setattr(bs, "unsloth_importable", lambda: (False, "unsloth is installed but did not import: boom"))
    name, reason = bs.select_backend(cfg())
    assert name == "transformers" and "did not import" in reason
    with pytest.raises(bs.BackendUnavailable, match="did not import"):
        bs.select_backend(cfg("unsloth"))


def test_rocm_torch_trains_through_transformers_and_never_offers_unsloth(monkeypatch):
    import torch

    monkeypatch.setattr(bs, "cuda_available", lambda: True)  # ROCm torch answers through its cuda API
    monkeypatch.setattr(bs, "unsloth_importable", lambda: (True, ""))
    monkeypatch.setattr(torch.version, "hip", "6.4.43482-0f2d60242")
    name, reason = bs.select_backend(cfg())
    assert name == "transformers" and "ROCm" in reason and "Unsloth is not offered" in reason
    with pytest.raises(bs.BackendUnavailable, match="not offered on AMD GPUs"):
        bs.select_backend(cfg("unsloth"))
    monkeypatch.setattr(torch.version, "hip", None)
    assert bs.select_backend(cfg())[0] == "unsloth"  # the CUDA build still gets Unsloth


def test_multi_gpu_uses_transformers(monkeypatch):
    monkeypatch.setattr(bs, "cuda_available", lambda: True)
    monkeypatch.setattr(bs, "unsloth_importable", lambda: (True, ""))
    assert bs.select_backend(cfg(gpus=2))[0] == "transformers"


def test_unsloth_importable_reports_a_failing_import(monkeypatch):
    import importlib

    monkeypatch.setattr(bs.importlib.util, "find_spec", lambda name: object())

    def fail(name):
        raise NotImplementedError("Unsloth cannot find any torch accelerator? You need a GPU.")

    monkeypatch.setattr(importlib, "import_module", fail)
    ok, why = bs.unsloth_importable()
    assert not ok and "You need a GPU" in why


def test_unsloth_not_installed(monkeypatch):
    monkeypatch.setattr(bs.importlib.util, "find_spec", lambda name: None)
    ok, why = bs.unsloth_importable()
    assert not ok and why.startswith("unsloth is not installed") and "pip install -e '.[gpu]'" in why


def test_unsloth_with_a_transformers_it_does_not_support_is_not_imported(monkeypatch):
    """pip install -U after .[gpu]: say which versions clash and train with transformers instead."""
    import importlib.metadata as md
    import sys

    versions = {"unsloth": "2026.10.9", "transformers": "5.24.0", "trl": "1.15.0", "torch": "2.13.0+cu130"}
    requires = ["transformers<=5.17.0,>=4.52.4,!=5.0.0", "trl<=1.15.0,>=0.18.2", "torch<2.15.0,>=2.4.0",
                'triton>=3.0.0; "linux" in sys_platform', 'boto3>=1.34.0; extra == "s3"']

    def version(name):
        if name in versions:
            return versions[name]
        raise md.PackageNotFoundError(name)

    monkeypatch.setattr(md, "version", version)
    monkeypatch.setattr(md, "requires", lambda name: requires if name == "unsloth" else None)
    monkeypatch.setattr(bs.importlib.util, "find_spec", lambda name: object() if name == "unsloth" else None)
    monkeypatch.delitem(sys.modules, "unsloth", raising=False)
    assert bs.unsloth_conflicts() == ["transformers 5.24.0 installed, unsloth 2026.10.9 needs "
                                      "transformers!=5.0.0,<=5.17.0,>=4.52.4"]
    ok, why = bs.unsloth_importable()
    assert not ok and "transformers 5.24.0" in why and ".[gpu]" in why and "unsloth" not in sys.modules
    monkeypatch.setattr(bs, "cuda_available", lambda: True)
    name, reason = bs.select_backend(cfg())
    assert name == "transformers" and "transformers 5.24.0" in reason


# ---------------------------------------------------------------------------- MLX (Apple Silicon)


def mac(monkeypatch, system="Darwin", machine="arm64"):
    """Platform readings of a Mac (the boundary: what `platform` reports)."""
    monkeypatch.setattr(bs.platform, "system", lambda: system)
    monkeypatch.setattr(bs.platform, "machine", lambda: machine)
    monkeypatch.setattr(bs, "cuda_available", lambda: False)


def test_apple_silicon_reads_the_platform(monkeypatch):
    mac(monkeypatch)
    assert bs.apple_silicon()
    mac(monkeypatch, machine="x86_64")  # an Intel Mac: MLX does not run there
    assert not bs.apple_silicon()
    mac(monkeypatch, system="Linux", machine="aarch64")
    assert not bs.apple_silicon()


def test_auto_picks_mlx_on_an_apple_silicon_mac_with_mlx(monkeypatch):
    mac(monkeypatch)
    monkeypatch.setattr(bs, "mlx_importable", lambda: (True, ""))
    assert bs.select_backend(cfg()) == ("mlx", "Apple Silicon Mac and mlx imports")


def test_auto_on_a_mac_without_mlx_says_how_to_install_it(monkeypatch):
    mac(monkeypatch)
    monkeypatch.setattr(bs, "mlx_importable", lambda: (False, "mlx is not installed (pip install -e '.[mlx]' ...)"))
    name, reason = bs.select_backend(cfg())
    assert name == "transformers" and ".[mlx]" in reason


def test_auto_on_an_intel_mac_or_linux_never_picks_mlx(monkeypatch):
    monkeypatch.setattr(bs, "mlx_importable", lambda: (True, ""))
    for system, machine in (("Darwin", "x86_64"), ("Linux", "x86_64"), ("Linux", "aarch64")):
        mac(monkeypatch, system, machine)
        assert bs.select_backend(cfg())[0] == "transformers"


def test_auto_on_a_mac_falls_back_for_what_mlx_does_not_train_yet(monkeypatch):
    mac(monkeypatch)
    monkeypatch.setattr(bs, "mlx_importable", lambda: (True, ""))
    c = cfg()
    c.method = "qlora"  # MLX's own affine 4-bit
    assert bs.select_backend(c)[0] == "mlx"
    c.method = "full"
    name, reason = bs.select_backend(c)
    assert name == "transformers" and "method: lora" in reason
    c.method, c.objective = "lora", "dpo"
    name, reason = bs.select_backend(c)
    assert name == "transformers" and "objective: sft" in reason


def test_mlx_qlora_refuses_a_bitsandbytes_only_4bit_type(monkeypatch):
    monkeypatch.setattr(bs, "mlx_importable", lambda: (True, ""))
    c = cfg("mlx")
    c.method = "qlora"
    c.quantization.quant_type = "fp4"
    with pytest.raises(bs.BackendUnavailable, match="fp4 is a bitsandbytes 4-bit type.*affine 4-bit"):
        bs.select_backend(c)
    c.quantization.quant_type = "nf4"  # the default: MLX quantizes with affine 4-bit instead
    assert bs.select_backend(c)[0] == "mlx"
    c.lora.bias = "all"
    with pytest.raises(bs.BackendUnavailable, match="lora.bias: none"):
        bs.select_backend(c)


def test_mlx_when_asked_anywhere_it_imports(monkeypatch):
    mac(monkeypatch, system="Linux", machine="x86_64")
    monkeypatch.setattr(bs, "mlx_importable", lambda: (True, ""))
    assert bs.select_backend(cfg("mlx")) == ("mlx", "backend: mlx in the config")


def test_mlx_asked_but_missing_or_unsupported_is_refused_with_what_to_do(monkeypatch):
    monkeypatch.setattr(bs, "mlx_importable", lambda: (False, "mlx-lm is not installed (pip install -e '.[mlx]')"))
    with pytest.raises(bs.BackendUnavailable, match=r"\.\[mlx\]"):
        bs.select_backend(cfg("mlx"))
    monkeypatch.setattr(bs, "mlx_importable", lambda: (True, ""))
    with pytest.raises(bs.BackendUnavailable, match="distributed.gpus: 1"):
        bs.select_backend(cfg("mlx", gpus=2))


def test_mlx_importable_reports_what_is_missing(monkeypatch):
    real = bs.importlib.util.find_spec
    monkeypatch.setattr(bs.importlib.util, "find_spec", lambda name: None if name == "mlx_lm" else real(name))
    ok, why = bs.mlx_importable()
    assert not ok and "mlx-lm is not installed" in why and ".[mlx]" in why


def test_the_config_accepts_backend_mlx():
    from tui_tuner.config.schema import validate_raw

    loaded = validate_raw({"backend": "mlx"})
    assert loaded.ok and loaded.config.backend == "mlx"
