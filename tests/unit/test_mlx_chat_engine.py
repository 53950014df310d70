"""Which engine chats with a run (MLX or transformers), and MLX's repetition penalty following transformers' rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tui_tuner.inference.chat_model import ModelSource, SourceError
from tui_tuner.inference.mlx_chat import ENGINE_ENV, mlx_adapter_files, use_mlx


def _source(tmp_path: Path, backend: str, *, mlx_weights: bool = True, checkpoint: bool = False) -> ModelSource:
    run = tmp_path / "run"
    mlx_dir = run / "adapter" / "mlx"
    mlx_dir.mkdir(parents=True)
    (mlx_dir / "adapter_config.json").write_text(json.dumps({"num_layers": 2, "lora_parameters": {"rank": 8}}))
    if mlx_weights:
        (mlx_dir / "adapters.safetensors").write_bytes(b"")
    folder = run / "adapter"
    if checkpoint:
        folder = run / "checkpoints" / "checkpoint-2"
        folder.mkdir(parents=True)
        (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))  # PEFT's, not mlx-lm's
        (folder / "adapters.safetensors").write_bytes(b"")
    return ModelSource("run", str(tmp_path / "base"), folder, str(folder), "run · final adapter", run, None, backend)


def test_runs_of_other_backends_load_with_transformers_and_mlx_cannot_be_forced_on_them(tmp_path, monkeypatch):
    monkeypatch.delenv(ENGINE_ENV, raising=False)
    source = _source(tmp_path, "transformers")
    assert use_mlx(source) == (False, "run · final adapter did not train with MLX (backend: transformers)")
    with pytest.raises(SourceError, match="--engine mlx cannot be used: .* did not train with MLX.*--engine trans"):
        use_mlx(source, "mlx")
    with pytest.raises(SourceError, match="unknown engine 'jax'"):
        use_mlx(source, "jax")


def test_an_mlx_run_without_mlx_weights_falls_back_and_says_why(tmp_path, monkeypatch):
    monkeypatch.delenv(ENGINE_ENV, raising=False)
    source = _source(tmp_path, "mlx", mlx_weights=False)
    assert mlx_adapter_files(source) is None
    ok, why = use_mlx(source)
    assert not ok and "no mlx-lm adapter" in why


def test_a_checkpoint_reads_its_own_weights_with_the_runs_mlx_config(tmp_path):
    source = _source(tmp_path, "mlx", checkpoint=True)
    weights, config = mlx_adapter_files(source)
    assert weights == source.adapter_dir / "adapters.safetensors"
    assert config == source.run_dir / "adapter" / "mlx" / "adapter_config.json"


def test_the_environment_sets_the_engine_where_no_flag_does(tmp_path, monkeypatch):
    pytest.importorskip("mlx_lm", reason="needs mlx-lm (`pip install -e '.[mlx]'`)")
    source = _source(tmp_path, "mlx")
    monkeypatch.delenv(ENGINE_ENV, raising=False)
    assert use_mlx(source) == (True, "the run trained with MLX")
    monkeypatch.setenv(ENGINE_ENV, "transformers")
    ok, why = use_mlx(source)
    assert not ok and ENGINE_ENV in why
    assert use_mlx(source, "mlx")[0]  # an explicit flag wins over the environment
    monkeypatch.setenv(ENGINE_ENV, "metal")
    with pytest.raises(SourceError, match=f"{ENGINE_ENV}='metal' is not an engine"):
        use_mlx(source)


def test_mlx_repetition_penalty_is_transformers_rule_over_the_whole_sequence():
    pytest.importorskip("mlx_lm", reason="needs mlx-lm (`pip install -e '.[mlx]'`)")
    import mlx.core as mx
    import numpy as np
    import torch
    from transformers import RepetitionPenaltyLogitsProcessor

    from tui_tuner.inference.mlx_chat import repetition_penalty

    logits = np.array([[2.0, -1.0, 0.5, -3.0, 1.0, 4.0]], dtype=np.float32)
    seen = [0, 3, 3, 5, 0]  # repeats, and tokens far back in the "prompt"
    ours = np.array(repetition_penalty(1.3)(mx.array(seen), mx.array(logits)))
    theirs = RepetitionPenaltyLogitsProcessor(1.3)(torch.tensor([seen]), torch.tensor(logits)).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    assert ours[0, 1] == -1.0 and ours[0, 0] == pytest.approx(2.0 / 1.3) and ours[0, 3] == pytest.approx(-3.9)
