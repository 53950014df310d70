"""Tiny real-tokenizer model ids and the llama.cpp sdist cache, without building or downloading anything."""

from __future__ import annotations

import io
import tarfile

import pytest

from tui_tuner.models import llama_cpp_sdist as sdist
from tui_tuner.models import tiny_real


def test_ids_name_the_families():
    assert tiny_real.model_ids() == ["tui-tuner/tiny-llama3", "tui-tuner/tiny-qwen2.5", "tui-tuner/tiny-phi3",
                                     "tui-tuner/tiny-gemma"]
    assert tiny_real.family_for_id("tui-tuner/tiny-phi3").architecture == "phi3"
    assert tiny_real.family_for_id("tui-tuner/tiny-mistral") is None
    assert tiny_real.family_for_id("meta-llama/Llama-3.1-8B") is None
    with pytest.raises(tiny_real.TinyModelError, match="families: llama3, qwen2.5, phi3, gemma"):
        tiny_real.tiny_model_dir("mistral")


def test_dimensions_fit_llama_cpp_k_quants():
    assert tiny_real.HIDDEN_SIZE % 256 == 0 and tiny_real.INTERMEDIATE_SIZE % 256 == 0
    assert tiny_real.NUM_HEADS * tiny_real.HEAD_DIM == tiny_real.HIDDEN_SIZE


def test_builtin_ids_are_known_everywhere_without_building(tmp_path, monkeypatch):
    from tui_tuner.models.demo import is_builtin_model
    from tui_tuner.models.spec import model_spec
    from tui_tuner.train.preflight import model_location

    monkeypatch.setenv("TUI_TUNER_CACHE", str(tmp_path))
    assert is_builtin_model("tui-tuner/tiny-llama3") and is_builtin_model("tui-tuner/demo-tiny-llama")
    assert not is_builtin_model("tui-tuner/tiny-nope")
    assert model_location("tui-tuner/tiny-qwen2.5", tmp_path) == ("demo", None)
    spec = model_spec("tui-tuner/tiny-gemma")
    assert spec.hidden_size == 256 and spec.vocab_size == 262144
    assert not any(tmp_path.iterdir())  # sizing a model builds nothing


def test_offline_without_the_cache_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TUI_TUNER_CACHE", str(tmp_path))
    with pytest.raises(sdist.LlamaCppUnavailable) as caught:
        tiny_real.ensure_tiny_model("llama3", fetch=False)
    message = str(caught.value)
    assert "python -m tui_tuner.models.llama_cpp_sdist" in message and str(tmp_path) in message
    assert "copy that folder" in message


def _sdist(path, names):
    with tarfile.open(path, "w:gz") as tar:
        for name in names:
            data = name.encode()
            info = tarfile.TarInfo(f"llama_cpp_python-0.3.36/vendor/llama.cpp/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_only_the_converter_vocabularies_and_templates_are_kept(tmp_path):
    archive = tmp_path / "sdist.tar.gz"
    _sdist(archive, ["convert_hf_to_gguf.py", "gguf-py/gguf/__init__.py", "conversion/llama.py", "LICENSE",
                     "models/ggml-vocab-qwen2.gguf", "models/ggml-vocab-qwen2.gguf.out",
                     "models/templates/Qwen-Qwen2.5-7B-Instruct.jinja", "src/llama.cpp", "models/other.bin"])
    dest = tmp_path / "out"
    sdist.extract_vendored(archive, dest)
    kept = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert kept == ["LICENSE", "conversion/llama.py", "convert_hf_to_gguf.py", "gguf-py/gguf/__init__.py",
                    "models/ggml-vocab-qwen2.gguf", "models/ggml-vocab-qwen2.gguf.out",
                    "models/templates/Qwen-Qwen2.5-7B-Instruct.jinja"]
    assert sdist.converter_problem(dest) is None and sdist.models_problem(dest) is None


def test_a_converter_only_cache_gains_models_without_losing_its_converter(tmp_path):
    archive = tmp_path / "sdist.tar.gz"
    _sdist(archive, ["convert_hf_to_gguf.py", "gguf-py/gguf/__init__.py", "models/ggml-vocab-qwen2.gguf",
                     "models/templates/x.jinja"])
    root = sdist.vendored_root(tmp_path / "cache")
    old = tmp_path / "old"
    sdist.extract_vendored(archive, old)
    import shutil

    shutil.rmtree(old / "models")
    old.rename(root.parent.mkdir(parents=True) or root)  # an older tui-tuner kept the converter only
    script = root / "convert_hf_to_gguf.py"
    inode = script.stat().st_ino
    staging = tmp_path / "staging"
    sdist.extract_vendored(archive, staging)
    sdist._move_into_place(staging, root, tmp_path / "aside")
    assert sdist.models_problem(root) is None and script.stat().st_ino == inode  # converter untouched
