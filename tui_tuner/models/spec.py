"""Model size without weights: architecture numbers and parameter counts from `config.json`.

`model_spec(name)` finds a model's config.json in a local folder, the local Hugging Face
cache, the built-in catalog (`catalog.yaml`, popular models, works offline) or, for a name
the catalog does not know, the hub (config.json only, never weights; skipped when
HF_HUB_OFFLINE=1). Everything here is arithmetic on those numbers; nothing imports torch.

    python -c "from tui_tuner.models.spec import model_spec; print(model_spec('Qwen/Qwen2.5-0.5B').describe())"
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from tui_tuner.core.units import format_count

CATALOG_PATH = Path(__file__).with_name("catalog.yaml")

LLAMA_STYLE_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""The linear layers of one decoder block of a Llama-style model, in order."""


class ModelSpecError(Exception):
    """The model's architecture could not be found or read; the message says what to do."""


@dataclass
class ModelSpec:
    """The architecture numbers of a decoder-only transformer, as its config.json states them."""

    name: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    tie_embeddings: bool = False
    model_type: str = "llama"
    attention_bias: bool = False
    """Biases on q, k and v (Qwen2)."""
    o_bias: bool = False
    mlp_bias: bool = False
    gated_mlp: bool = True
    """SwiGLU/GeGLU MLP with gate, up and down matrices (else two matrices)."""
    norm_type: str = "rmsnorm"
    """rmsnorm (a weight per channel) or layernorm (weight and bias)."""
    norms_per_layer: int = 2
    qk_norm: bool = False
    """Per-head RMSNorm on queries and keys (Qwen3, Gemma 3)."""
    fused_qkv: bool = False
    fused_gate_up: bool = False
    max_position_embeddings: int | None = None
    torch_dtype: str | None = None
    published_params: int | None = None
    source: str = "catalog"
    """Where the numbers came from: local folder, hf cache, hub, catalog or demo model."""
    source_detail: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def q_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def lm_head_params(self) -> int:
        return 0 if self.tie_embeddings else self.vocab_size * self.hidden_size

    def layer_linear_params(self) -> int:
        """Weights of one block's linear layers (the part QLoRA quantizes), biases excluded."""
        return sum(i * o for i, o in linear_modules(self).values())

    def layer_other_params(self) -> int:
        """Biases and norm weights of one block (kept in 16/32 bit even under QLoRA)."""
        n = 0
        if self.attention_bias:
            n += self.q_dim + 2 * self.kv_dim
        if self.o_bias:
            n += self.hidden_size
        if self.mlp_bias:
            n += (2 * self.intermediate_size if self.gated_mlp else self.intermediate_size) + self.hidden_size
        per_norm = self.hidden_size * (2 if self.norm_type == "layernorm" else 1)
        n += self.norms_per_layer * per_norm
        if self.qk_norm:
            n += 2 * self.head_dim
        return n

    @property
    def final_norm_params(self) -> int:
        return self.hidden_size * (2 if self.norm_type == "layernorm" else 1)

    @property
    def linear_params(self) -> int:
        """All block linear weights: what 4-bit quantization applies to."""
        return self.num_layers * self.layer_linear_params()

    @property
    def unquantized_params(self) -> int:
        """Embeddings, LM head, norms and biases: QLoRA keeps these in 16 bit."""
        return (self.embedding_params + self.lm_head_params + self.final_norm_params
                + self.num_layers * self.layer_other_params())

    @property
    def param_count(self) -> int:
        """Total parameters computed from the architecture (tied embeddings counted once)."""
        return self.linear_params + self.unquantized_params

    def describe(self) -> str:
        """One line a person reads: name, size and the shape that decides memory."""
        gqa = f", {self.num_kv_heads} KV heads" if self.num_kv_heads != self.num_heads else ""
        tied = ", tied embeddings" if self.tie_embeddings else ""
        return (f"{self.name}: {format_count(self.param_count)} parameters, {self.num_layers} layers, "
                f"hidden {self.hidden_size}, {self.num_heads} heads{gqa}, vocab {self.vocab_size:,}{tied} "
                f"(from {self.source})")

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["param_count"] = self.param_count
        d["linear_params"] = self.linear_params
        d["unquantized_params"] = self.unquantized_params
        return d


def linear_modules(spec: ModelSpec) -> dict[str, tuple[int, int]]:
    """Per-layer linear modules as {name: (in_features, out_features)}, named as in the model.

    Llama-style models give q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj;
    models that fuse matrices (Phi-3) give qkv_proj and gate_up_proj instead, which is what
    LoRA's `target_modules` sees for them.
    """
    h, i = spec.hidden_size, spec.intermediate_size
    out: dict[str, tuple[int, int]] = {}
    if spec.fused_qkv:
        out["qkv_proj"] = (h, spec.q_dim + 2 * spec.kv_dim)
    else:
        out["q_proj"] = (h, spec.q_dim)
        out["k_proj"] = (h, spec.kv_dim)
        out["v_proj"] = (h, spec.kv_dim)
    out["o_proj"] = (spec.q_dim, h)
    if spec.gated_mlp:
        if spec.fused_gate_up:
            out["gate_up_proj"] = (h, 2 * i)
        else:
            out["gate_proj"] = (h, i)
            out["up_proj"] = (h, i)
    else:
        out["up_proj"] = (h, i)
    out["down_proj"] = (i, h)
    return out


# ---------------------------------------------------------------------------- config.json


def _first(cfg: dict[str, Any], *keys: str, default: Any = None) -> Any:
    for k in keys:
        if cfg.get(k) is not None:
            return cfg[k]
    return default


def spec_from_config(cfg: dict[str, Any], name: str, source: str = "local folder", detail: str = "") -> ModelSpec:
    """Build a `ModelSpec` from a config.json mapping (Llama, Mistral, Qwen2/3, Gemma 1-3, Phi-3, GPT-style keys)."""
    if isinstance(cfg.get("text_config"), dict):  # multimodal wrappers keep the language model here
        cfg = {**cfg["text_config"], "architectures": cfg.get("architectures")}
    model_type = str(cfg.get("model_type") or "llama")
    try:
        hidden = int(_first(cfg, "hidden_size", "n_embd", "d_model"))
        layers = int(_first(cfg, "num_hidden_layers", "n_layer", "num_layers"))
        heads = int(_first(cfg, "num_attention_heads", "n_head", "num_heads"))
        vocab = int(_first(cfg, "vocab_size", "padded_vocab_size"))
    except (TypeError, ValueError) as exc:
        raise ModelSpecError(f"{detail or name}: config.json lacks one of hidden_size, num_hidden_layers, "
                             f"num_attention_heads, vocab_size ({exc}); is this a causal language model?") from None
    kv = int(_first(cfg, "num_key_value_heads", "n_head_kv", default=heads) or heads)
    head_dim = int(_first(cfg, "head_dim", default=hidden // heads) or hidden // heads)
    inter = _first(cfg, "intermediate_size", "n_inner", "ffn_hidden_size")
    inter = int(inter) if inter else 4 * hidden
    gated = model_type not in ("gpt2", "gpt_neox", "phi", "falcon", "gpt_bigcode", "opt", "bloom", "stablelm_alpha")
    layernorm = model_type in ("gpt2", "gpt_neox", "phi", "falcon", "gpt_bigcode", "opt", "bloom")
    attention_bias = bool(cfg.get("attention_bias", False)) or model_type == "qwen2" or not gated
    tie_default = model_type in ("gemma", "gemma2", "gemma3", "gemma3_text", "gpt2")
    spec = ModelSpec(
        name=name, vocab_size=vocab, hidden_size=hidden, intermediate_size=inter, num_layers=layers,
        num_heads=heads, num_kv_heads=kv, head_dim=head_dim,
        tie_embeddings=bool(cfg.get("tie_word_embeddings", tie_default)),
        model_type=model_type, attention_bias=attention_bias,
        o_bias=(bool(cfg.get("attention_bias", False)) and model_type != "qwen2") or not gated,
        mlp_bias=bool(cfg.get("mlp_bias", False)) or not gated, gated_mlp=gated,
        norm_type="layernorm" if layernorm else "rmsnorm",
        norms_per_layer=int(cfg.get("norms_per_layer") or (4 if model_type.startswith(("gemma2", "gemma3")) else 2)),
        qk_norm=model_type in ("qwen3", "gemma3", "gemma3_text", "olmo2"),
        fused_qkv=bool(cfg.get("fused_qkv", model_type == "phi3")),
        fused_gate_up=bool(cfg.get("fused_gate_up", model_type == "phi3")),
        max_position_embeddings=_first(cfg, "max_position_embeddings", "n_positions"),
        torch_dtype=_first(cfg, "torch_dtype", "dtype"),
        published_params=cfg.get("published_params"), source=source, source_detail=detail,
    )
    if not gated:
        spec.notes.append(f"{model_type}: non-gated MLP and LayerNorm assumed; counts are approximate.")
    return spec


def _read_config_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelSpecError(f"{path}: cannot read config.json ({exc}).") from None
    if not isinstance(data, dict):
        raise ModelSpecError(f"{path}: config.json is not a JSON object.")
    return data


# ---------------------------------------------------------------------------- sources


@lru_cache(maxsize=1)
def load_catalog() -> list[dict[str, Any]]:
    """The built-in catalog entries (config.json numbers of popular models)."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C parser reads the catalog ~10x faster
    data = yaml.load(CATALOG_PATH.read_text(encoding="utf-8"), Loader=loader) or {}
    return list(data.get("models", []))


def catalog_names() -> list[str]:
    return [m["name"] for m in load_catalog()]


def _norm(name: str) -> str:
    return name.strip().lower()


_SUFFIXES = ("-unsloth-bnb-4bit", "-bnb-4bit", "-instruct", "-chat", "-it", "-hf", "-base")


def _short_forms(name: str) -> set[str]:
    """`org/Model-Instruct-bnb-4bit` -> {'model-instruct-bnb-4bit', 'model-instruct', 'model', ...}."""
    short = _norm(name).rsplit("/", 1)[-1]
    forms = {short}
    changed = True
    while changed:
        changed = False
        for form in list(forms):
            for suffix in _SUFFIXES:
                if form.endswith(suffix) and form[: -len(suffix)] not in forms:
                    forms.add(form[: -len(suffix)])
                    changed = True
    return forms


def catalog_entry(name: str) -> dict[str, Any] | None:
    """The catalog entry for a hub id or alias (case-insensitive; org and -Instruct/-bnb-4bit suffixes optional)."""
    wanted = _norm(name)
    entries = load_catalog()
    for entry in entries:
        if wanted in {_norm(n) for n in [entry["name"], *entry.get("aliases", [])]}:
            return entry
    forms = _short_forms(name)
    for entry in entries:
        for n in [entry["name"], *entry.get("aliases", [])]:
            if forms & _short_forms(n):
                return entry
    return None


def hf_cache_dirs() -> list[Path]:
    """Where the Hugging Face hub cache may be on this machine, in the order the hub library uses."""
    dirs = []
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            dirs.append(Path(os.environ[var]).expanduser())
    if os.environ.get("HF_HOME"):
        dirs.append(Path(os.environ["HF_HOME"]).expanduser() / "hub")
    xdg = os.environ.get("XDG_CACHE_HOME")
    dirs.append((Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "huggingface" / "hub")
    return dirs


def cached_config_path(repo_id: str) -> Path | None:
    """config.json of `repo_id` in the local HF cache (newest snapshot), or None."""
    if repo_id.count("/") != 1:
        return None
    folder = "models--" + repo_id.replace("/", "--")
    for root in hf_cache_dirs():
        snaps = root / folder / "snapshots"
        try:
            found = [p for p in snaps.glob("*/config.json") if p.is_file()]
        except OSError:
            continue
        if found:
            return max(found, key=lambda p: p.stat().st_mtime)
    return None


def hub_offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


HUB_TIMEOUT_S = 4.0
"""One short try: `check` must stay quick when the hub is slow or unreachable."""


def _hub_config(repo_id: str, revision: str | None) -> tuple[dict[str, Any], str]:
    """Fetch only config.json from the hub ($HF_ENDPOINT; $HF_TOKEN for gated repos), one try."""
    import urllib.error
    import urllib.parse
    import urllib.request

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    rev = urllib.parse.quote(revision or "main", safe="")
    url = f"{endpoint}/{repo_id}/resolve/{rev}/config.json"
    headers = {"User-Agent": "tui-tuner"}
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=HUB_TIMEOUT_S) as resp:
            body = resp.read(4_000_000)
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            why = "the repository is gated or private: accept its license on the hub and set HF_TOKEN"
        elif exc.code == 404:
            why = "the hub has no such repository (or it has no config.json)"
        else:
            why = f"the hub answered HTTP {exc.code}"
        raise ModelSpecError(_not_found(repo_id, why)) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ModelSpecError(_not_found(repo_id, f"the hub is unreachable ({reason}); set HF_HUB_OFFLINE=1 "
                                                 "to skip it")) from None
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ModelSpecError(_not_found(repo_id, "the hub's config.json is not valid JSON")) from None
    if not isinstance(data, dict):
        raise ModelSpecError(_not_found(repo_id, "the hub's config.json is not a JSON object"))
    return data, url


def _tiny_spec(family) -> ModelSpec:
    """A tiny real-tokenizer model: its config.json once built, else the numbers it will be built with."""
    from tui_tuner.models import tiny_real

    folder = tiny_real.tiny_model_dir(family.name)
    if tiny_real.is_built(folder) and (folder / "config.json").is_file():
        return spec_from_config(_read_config_json(folder / "config.json"), family.model_id, "tiny model", str(folder))
    cfg = {
        "model_type": family.architecture, "vocab_size": family.vocab_size, "hidden_size": tiny_real.HIDDEN_SIZE,
        "intermediate_size": tiny_real.INTERMEDIATE_SIZE, "num_hidden_layers": tiny_real.NUM_LAYERS,
        "num_attention_heads": tiny_real.NUM_HEADS, "num_key_value_heads": tiny_real.NUM_KV_HEADS,
        "max_position_embeddings": tiny_real.MAX_POSITIONS, "tie_word_embeddings": True,
    }
    spec = spec_from_config(cfg, family.model_id, "tiny model", "recipe (not built yet)")
    spec.notes.append("the tiny model is built on first use from llama.cpp's vocabulary of the family.")
    return spec


def _demo_spec() -> ModelSpec:
    """The built-in demo model: its config.json once built, else the numbers it will be built with."""
    from tui_tuner.config.schema import DEMO_MODEL_ID

    try:
        from tui_tuner.models import demo as demo_model
    except ImportError:
        raise ModelSpecError(f"{DEMO_MODEL_ID}: the demo model module is not part of this installation; "
                             "name a hub model (e.g. TinyLlama/TinyLlama-1.1B-Chat-v1.0) instead.") from None
    folder = demo_model.demo_model_dir()
    if demo_model.is_built(folder) and (folder / "config.json").is_file():
        return spec_from_config(_read_config_json(folder / "config.json"), DEMO_MODEL_ID,
                                "demo model", str(folder))
    cfg = {
        "model_type": "llama", "vocab_size": demo_model.VOCAB_SIZE, "hidden_size": demo_model.HIDDEN_SIZE,
        "intermediate_size": demo_model.INTERMEDIATE_SIZE, "num_hidden_layers": demo_model.NUM_LAYERS,
        "num_attention_heads": demo_model.NUM_HEADS, "num_key_value_heads": demo_model.NUM_KV_HEADS,
        "max_position_embeddings": demo_model.MAX_POSITIONS, "tie_word_embeddings": False,
    }
    spec = spec_from_config(cfg, DEMO_MODEL_ID, "demo model", "recipe (not built yet)")
    spec.notes.append("the demo model is built on first use; its vocabulary may differ slightly from the recipe.")
    return spec


def model_spec(name_or_path: str, revision: str | None = None) -> ModelSpec:
    """The architecture of a model, found without downloading weights.

    Order: the demo model id; a local folder (or config.json file); the local HF cache; the
    built-in catalog; the hub (config.json only) when online. Raises `ModelSpecError` with
    what to do when none has it.
    """
    from tui_tuner.config.schema import DEMO_MODEL_ID

    if name_or_path == DEMO_MODEL_ID:
        return _demo_spec()
    from tui_tuner.models import tiny_real

    family = tiny_real.family_for_id(name_or_path)
    if family is not None:
        return _tiny_spec(family)
    path = Path(name_or_path).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        return spec_from_config(_read_config_json(path / "config.json"), name_or_path, "local folder", str(path))
    if path.is_file() and path.name == "config.json":
        return spec_from_config(_read_config_json(path), name_or_path, "local folder", str(path))
    if path.is_dir():
        raise ModelSpecError(f"{path}: the folder has no config.json; point at a saved model folder "
                             "(the one that holds config.json and the weights).")
    cached = cached_config_path(name_or_path)
    if cached is not None:
        spec = spec_from_config(_read_config_json(cached), name_or_path, "hf cache", str(cached))
        entry = catalog_entry(name_or_path)
        if entry is not None:
            spec.published_params = entry.get("published_params")
        return spec
    entry = catalog_entry(name_or_path)
    if entry is not None:
        spec = spec_from_config(entry, entry["name"], "catalog", str(CATALOG_PATH.name))
        if _norm(entry["name"]) != _norm(name_or_path):
            spec.notes.append(f"{name_or_path} sized as {entry['name']} (same architecture).")
            spec.name = name_or_path
        return spec
    if name_or_path.count("/") == 1 and not hub_offline():
        cfg, where = _hub_config(name_or_path, revision)
        return spec_from_config(cfg, name_or_path, "hub", where)
    reason = "HF_HUB_OFFLINE is set" if hub_offline() else "it is not a hub id (org/name) or a folder"
    raise ModelSpecError(_not_found(name_or_path, reason))


def _not_found(name: str, reason: str) -> str:
    close = difflib.get_close_matches(name, catalog_names(), n=2, cutoff=0.4)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    return (f"{name}: no config.json found locally or in the Hugging Face cache, and not in the built-in "
            f"catalog; {reason}.{hint} Give a local model folder (the one holding config.json) or a hub id "
            f"such as org/name; `tui-tuner check --list-models` shows the catalog.")
