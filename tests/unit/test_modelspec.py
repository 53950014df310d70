"""Model size without weights: catalog counts, config.json sources and LoRA-relevant shapes."""

from __future__ import annotations

import json

import pytest

from tui_tuner.models.spec import (
    ModelSpecError,
    catalog_entry,
    load_catalog,
    linear_modules,
    model_spec,
    spec_from_config,
)

REQUIRED = [
    "TinyLlama/TinyLlama-1.1B-Chat-v1.0", "meta-llama/Llama-3.2-1B", "meta-llama/Llama-3.2-3B",
    "meta-llama/Llama-3.1-8B", "mistralai/Mistral-7B-v0.1", "HuggingFaceH4/zephyr-7b-beta", "Qwen/Qwen2.5-0.5B",
    "Qwen/Qwen2.5-1.5B", "Qwen/Qwen2.5-7B", "google/gemma-2-2b", "microsoft/Phi-3-mini-4k-instruct",
    "HuggingFaceTB/SmolLM2-135M", "HuggingFaceTB/SmolLM2-360M", "HuggingFaceTB/SmolLM2-1.7B",
    "deepseek-ai/DeepSeek-R1-Distill-Llama-8B",
]


def test_catalog_covers_the_popular_models():
    names = {e["name"] for e in load_catalog()}
    assert set(REQUIRED) <= names


@pytest.mark.parametrize("entry", load_catalog(), ids=[e["name"] for e in load_catalog()])
def test_computed_parameter_count_within_1_percent_of_published(entry):
    spec = spec_from_config(entry, entry["name"], "catalog")
    published = entry["published_params"]
    assert abs(spec.param_count / published - 1) < 0.01, (spec.param_count, published)


def test_tied_embeddings_are_counted_once():
    tied = model_spec("meta-llama/Llama-3.2-1B")
    assert tied.tie_embeddings and tied.lm_head_params == 0
    untied = model_spec("meta-llama/Llama-3.1-8B")
    assert untied.lm_head_params == untied.embedding_params == 128256 * 4096


def test_grouped_query_attention_shapes():
    mods = linear_modules(model_spec("meta-llama/Llama-3.1-8B"))
    assert mods == {"q_proj": (4096, 4096), "k_proj": (4096, 1024), "v_proj": (4096, 1024), "o_proj": (4096, 4096),
                    "gate_proj": (4096, 14336), "up_proj": (4096, 14336), "down_proj": (14336, 4096)}


def test_gemma2_head_dim_differs_from_hidden_over_heads():
    spec = model_spec("google/gemma-2-2b")
    assert spec.q_dim == 8 * 256 and spec.hidden_size == 2304
    assert linear_modules(spec)["o_proj"] == (2048, 2304)
    assert spec.norms_per_layer == 4


def test_qwen2_has_qkv_biases_and_phi3_fuses_matrices():
    assert model_spec("Qwen/Qwen2.5-0.5B").attention_bias
    assert set(linear_modules(model_spec("microsoft/Phi-3-mini-4k-instruct"))) == {
        "qkv_proj", "o_proj", "gate_up_proj", "down_proj"}


@pytest.mark.parametrize("alias,expected", [
    ("meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-8B"),
    ("unsloth/Llama-3.2-1B-Instruct-bnb-4bit", "meta-llama/Llama-3.2-1B"),
    ("tinyllama/tinyllama-1.1b-chat-v1.0", "TinyLlama/TinyLlama-1.1B-Chat-v1.0"),
    ("Qwen/Qwen2.5-7B-Instruct", "Qwen/Qwen2.5-7B"),
])
def test_aliases_and_quantized_repacks_resolve_to_the_same_architecture(alias, expected):
    assert catalog_entry(alias)["name"] == expected
    assert model_spec(alias).param_count == model_spec(expected).param_count


def test_local_folder_config_json(tmp_path):
    cfg = {"model_type": "llama", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 176,
           "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "tie_word_embeddings": False}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    spec = model_spec(str(tmp_path))
    assert spec.source == "local folder"
    per_layer = 64 * 64 * 2 + 64 * 32 * 2 + 3 * 64 * 176 + 2 * 64
    assert spec.param_count == 2 * 1000 * 64 + 2 * per_layer + 64


def test_hf_cache_is_read_before_the_catalog(tmp_path, monkeypatch):
    snap = tmp_path / "models--org--cached-model" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps({
        "model_type": "qwen2", "vocab_size": 5000, "hidden_size": 128, "intermediate_size": 256,
        "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "tie_word_embeddings": True}))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    spec = model_spec("org/cached-model")
    assert spec.source == "hf cache" and spec.num_layers == 3 and spec.attention_bias


def test_folder_without_config_json_says_what_to_do(tmp_path):
    with pytest.raises(ModelSpecError, match="no config.json"):
        model_spec(str(tmp_path))


def test_unknown_model_offline_suggests_catalog_names(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelSpecError) as exc:
        model_spec("meta-llama/Llama-3.1-8X")
    assert "HF_HUB_OFFLINE" in str(exc.value) and "Did you mean" in str(exc.value)


def test_broken_config_json_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelSpecError, match="cannot read config.json"):
        model_spec(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ModelSpecError, match="hidden_size"):
        model_spec(str(tmp_path))


def test_demo_model_is_sized_without_building_it(tmp_path, monkeypatch):
    from tui_tuner.config.schema import DEMO_MODEL_ID

    monkeypatch.setenv("TUI_TUNER_CACHE", str(tmp_path))
    try:
        import tui_tuner.models.demo as demo
    except ImportError:
        with pytest.raises(ModelSpecError, match="demo model module"):
            model_spec(DEMO_MODEL_ID)
        return
    spec = model_spec(DEMO_MODEL_ID)
    assert spec.num_layers == demo.NUM_LAYERS and spec.hidden_size == demo.HIDDEN_SIZE
    assert not (tmp_path / demo.DEMO_DIR_NAME).exists(), "sizing must not build the model"


class _Hub:
    """A local HTTP server standing in for the hub: serves config.json for known repos."""

    def __init__(self, repos: dict[str, dict], gated: set[str] = frozenset()):
        import http.server
        import threading

        hub = self
        self.requests: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                hub.requests.append(self.path)
                repo = self.path.split("/resolve/")[0].lstrip("/")
                if repo in gated and self.headers.get("Authorization") != "Bearer hf_test":
                    self.send_response(401)
                    self.end_headers()
                    return
                if repo not in repos or not self.path.endswith("/config.json"):
                    self.send_response(404)
                    self.end_headers()
                    return
                body = json.dumps(repos[repo]).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


HUB_CONFIG = {"model_type": "llama", "vocab_size": 32000, "hidden_size": 256, "intermediate_size": 688,
              "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 8}


@pytest.fixture
def hub(monkeypatch, tmp_path):
    server = _Hub({"someorg/new-model": HUB_CONFIG, "someorg/gated-model": HUB_CONFIG}, gated={"someorg/gated-model"})
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    yield server
    server.close()


def test_hub_config_json_only_for_models_the_catalog_lacks(hub):
    spec = model_spec("someorg/new-model")
    assert spec.source == "hub" and spec.num_layers == 4
    assert hub.requests == ["/someorg/new-model/resolve/main/config.json"]  # config.json only, never weights
    model_spec("meta-llama/Llama-3.1-8B")  # in the catalog: no hub request
    assert len(hub.requests) == 1


def test_hub_errors_say_what_to_do(hub, monkeypatch):
    with pytest.raises(ModelSpecError, match="no such repository"):
        model_spec("someorg/missing")
    with pytest.raises(ModelSpecError, match="gated or private.*HF_TOKEN"):
        model_spec("someorg/gated-model")
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    assert model_spec("someorg/gated-model").source == "hub"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = len(hub.requests)
    with pytest.raises(ModelSpecError, match="HF_HUB_OFFLINE"):
        model_spec("someorg/new-model")
    assert len(hub.requests) == before
