"""Precision and Unsloth choices that only matter on a GPU, checked on the CPU.

Mocked only at the boundary: the device's capability (`torch.cuda.is_available`,
`torch.cuda.is_bf16_supported`) and the `unsloth` package (a recording stand-in for
`FastLanguageModel`). The code deciding precision and building Unsloth's arguments runs as is.
"""

from __future__ import annotations

import importlib.abc
import sys
import types

import pytest
import torch

from tui_tuner.config.schema import RunConfig
from tui_tuner.train.backends import transformers_backend as tb


def gpu(monkeypatch, native_bf16: bool) -> None:
    """A CUDA device; bf16 native (A100) or only emulated (T4/V100), as torch 2.13 reports them."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: native_bf16 or including_emulation)


def cfg(method="qlora", dtype="auto", compute="auto") -> RunConfig:
    c = RunConfig(method=method)
    c.model.dtype = dtype
    c.quantization.compute_dtype = compute
    return c


@pytest.mark.parametrize("native,expected", [(True, "bf16"), (False, "fp16")])
@pytest.mark.parametrize("method", ["qlora", "lora"])
def test_auto_precision_is_bf16_only_where_native(monkeypatch, native, expected, method):
    gpu(monkeypatch, native)
    assert tb.mixed_precision(cfg(method), "cuda") == expected
    assert tb.weight_dtype(cfg(method), "cuda") == (torch.bfloat16 if native else torch.float16)


def test_qlora_autocast_follows_the_configured_compute_dtype(monkeypatch):
    gpu(monkeypatch, True)
    # fp32 weights outside the 4-bit layers (what prepare_model_for_kbit_training leaves) do not matter
    assert tb.mixed_precision(cfg("qlora", dtype="float32", compute="bfloat16"), "cuda") == "bf16"
    assert tb.mixed_precision(cfg("qlora", compute="float16"), "cuda") == "fp16"
    assert tb.mixed_precision(cfg("qlora", compute="float32"), "cuda") == "fp32"
    assert tb.mixed_precision(cfg("lora", dtype="float32"), "cuda") == "fp32"


def test_cpu_trains_in_fp32_whatever_the_config():
    assert tb.mixed_precision(cfg("qlora", compute="bfloat16"), "cpu") == "fp32"


def test_chat_loads_fp16_on_a_t4(monkeypatch):
    from tui_tuner.inference.chat_model import _auto_dtype

    gpu(monkeypatch, False)
    assert _auto_dtype("auto") == torch.float16
    gpu(monkeypatch, True)
    assert _auto_dtype("auto") == torch.bfloat16


# ---------------------------------------------------------------------------- Unsloth


@pytest.fixture
def fake_unsloth(monkeypatch):
    """A stand-in `unsloth` package recording what `FastLanguageModel` is asked."""
    calls: dict[str, dict] = {}

    class Tok:
        pad_token = None
        eos_token = "</s>"

    class FastLanguageModel:
        @staticmethod
        def from_pretrained(**kw):
            calls["from_pretrained"] = kw
            return object(), Tok()

        @staticmethod
        def get_peft_model(model, **kw):
            calls["get_peft_model"] = kw
            return model

        @staticmethod
        def for_inference(model):
            calls["for_inference"] = {}

    mod = types.ModuleType("unsloth")
    mod.FastLanguageModel = FastLanguageModel
    monkeypatch.setitem(sys.modules, "unsloth", mod)
    return calls


def test_unsloth_loads_the_named_repository_with_the_configured_quantization(fake_unsloth, monkeypatch):
    from tui_tuner.train.backends import unsloth_backend

    gpu(monkeypatch, True)
    c = cfg("qlora", compute="bfloat16")
    c.model.name_or_path = "TinyLlama/TinyLlama-1.1B-Chat-v1.0"
    c.model.revision = "fe8a4ea1ffedaf415f4da2f062534de366a451e6"
    c.quantization.quant_type = "fp4"
    c.quantization.double_quant = False
    unsloth_backend.load_model(c, c.model.name_or_path, "cuda")
    kw = fake_unsloth["from_pretrained"]
    assert kw["use_exact_model_name"] is True
    assert kw["model_name"] == "TinyLlama/TinyLlama-1.1B-Chat-v1.0" and kw["revision"] == c.model.revision
    q = kw["quantization_config"]
    assert q.bnb_4bit_quant_type == "fp4" and q.bnb_4bit_use_double_quant is False
    assert q.bnb_4bit_compute_dtype == torch.bfloat16
    assert kw["dtype"] == torch.bfloat16 and kw["load_in_4bit"] is True


def test_unsloth_lora_on_a_t4_loads_fp16_weights_the_trainer_autocasts_to(fake_unsloth, monkeypatch):
    from tui_tuner.train.backends import unsloth_backend

    gpu(monkeypatch, False)
    c = cfg("lora")
    unsloth_backend.load_model(c, "some/model", "cuda")
    kw = fake_unsloth["from_pretrained"]
    assert kw["dtype"] == torch.float16 and "quantization_config" not in kw
    assert tb.mixed_precision(c, "cuda") == "fp16"


class _ImportRecorder(importlib.abc.MetaPathFinder):
    def __init__(self) -> None:
        self.asked: list[str] = []

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "unsloth":
            self.asked.append(name)
        return None


def test_chat_in_a_shared_process_never_imports_unsloth(monkeypatch, tmp_path):
    from tui_tuner.inference.chat_model import ModelSource, use_unsloth

    gpu(monkeypatch, True)
    monkeypatch.delitem(sys.modules, "unsloth", raising=False)
    recorder = _ImportRecorder()
    monkeypatch.setattr(sys, "meta_path", [recorder, *sys.meta_path])
    source = ModelSource(kind="run", label="r", base_model="m", adapter_dir=tmp_path, tokenizer_dir=tmp_path,
                         run_dir=tmp_path, config=None, backend="unsloth")
    fast, why = use_unsloth(source)
    assert not fast and "process-wide" in why and recorder.asked == []


def test_chat_command_uses_unsloth_exactly_as_trained(fake_unsloth, monkeypatch, tmp_path):
    from tui_tuner.inference.chat_model import ModelSource, _load_unsloth, use_unsloth

    gpu(monkeypatch, True)
    source = ModelSource(kind="run", label="r", base_model="m", adapter_dir=tmp_path, tokenizer_dir=tmp_path,
                         run_dir=tmp_path, config=None, backend="unsloth")
    assert use_unsloth(source, own_process=True)[0]
    monkeypatch.setattr("tui_tuner.inference.chat_model.load_tokenizer_and_template",
                        lambda s: (types.SimpleNamespace(), "{{ x }}"))
    monkeypatch.setattr("tui_tuner.inference.chat_model._stop_token_ids", lambda tok, tmpl: [])
    _load_unsloth(source)
    assert fake_unsloth["from_pretrained"]["use_exact_model_name"] is True
