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
    assert bs.unsloth_importable() == (False, "unsloth is not installed (pip install 'tui-tuner[gpu]')")
