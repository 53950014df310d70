"""A model's weights on disk, read one tensor at a time.

The labs never load a whole model: tensor names, shapes and dtypes come from the
safetensors headers (`safe_open` reads only the header), and a lab loads the one
tensor the learner picked.

    from tui_tuner.learn.weights import resolve_model, list_tensors, load_tensor
    ref = resolve_model("tui-tuner/demo-tiny-llama")      # or a folder, or a run
    names = [t.name for t in list_tensors(ref.weights_dir)]
    W = load_tensor(ref.weights_dir, names[0])
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from math import prod
from pathlib import Path

from tui_tuner.config.schema import DEMO_MODEL_ID
from tui_tuner.rundir.files import CONFIG_FILE

# safetensors dtype names -> bytes per element
DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
    "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8,
}
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")


class ModelNotFound(Exception):
    """MODEL_OR_RUN names nothing whose config or weights can be read here; the message says what to do."""


@dataclass(frozen=True)
class ModelRef:
    """What a MODEL_OR_RUN argument resolved to.

    `name_or_path` is the model as a config would name it; `local_dir` the folder holding its
    config.json (None when only the hub id is known); `run_dir` the run it was taken from.
    """

    name_or_path: str
    local_dir: Path | None
    run_dir: Path | None = None

    @property
    def label(self) -> str:
        base = self.name_or_path
        return f"{base} (base model of run {self.run_dir.name})" if self.run_dir else base

    @property
    def weights_dir(self) -> Path:
        """The folder with the safetensors files; raises ModelNotFound when there is none."""
        if self.local_dir is not None and not weight_files(self.local_dir) and any(self.local_dir.glob("*.bin")):
            raise ModelNotFound(
                f"{self.local_dir} has only PyTorch .bin weights; the lab reads one tensor at a time from "
                "safetensors files. Convert once: AutoModelForCausalLM.from_pretrained(folder)"
                ".save_pretrained(new_folder) writes safetensors.")
        if self.local_dir is None or not weight_files(self.local_dir):
            raise ModelNotFound(
                f"{self.name_or_path}: no .safetensors weights on this machine. The quantization lab reads "
                "real weights: pass a local model folder, the demo model "
                f"({DEMO_MODEL_ID}), or download the model first (e.g. `huggingface-cli download "
                f"{self.name_or_path} --include '*.safetensors' config.json`).")
        return self.local_dir


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a checkpoint, from its safetensors header (nothing loaded)."""

    name: str
    shape: tuple[int, ...]
    dtype: str          # safetensors name: F32, BF16, F16, ...
    file: str           # file name inside the model folder

    @property
    def numel(self) -> int:
        return prod(self.shape) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.numel * DTYPE_BYTES.get(self.dtype, 4)

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_DTYPES

    @property
    def qlora_quantized(self) -> bool:
        """Whether QLoRA / LLM.int8 quantize this tensor: a linear weight inside the blocks.

        Embeddings, the LM head (bitsandbytes skips the output layer), norms and biases stay 16-bit.
        """
        lowered = self.name.lower()
        return (len(self.shape) == 2 and self.is_float and lowered.endswith(".weight")
                and not any(key in lowered for key in ("embed", "lm_head", "wte", "wpe", "norm")))

    def as_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "numel": self.numel,
                "bytes": self.nbytes, "file": self.file, "qlora_quantized": self.qlora_quantized}


def resolve_model_name(model_or_run: str, runs_dir: str | Path = "runs") -> tuple[str, Path | None]:
    """(model name or folder, run dir or None): a run (folder or name under `runs_dir`) gives its base model.

    Builds and downloads nothing, so the memory and LoRA labs can size a model from its name.
    """
    text = str(model_or_run).strip()
    if not text:
        raise ModelNotFound("no model given: name a model folder, a run, a hub id or "
                            f"the demo model ({DEMO_MODEL_ID}).")
    if text == DEMO_MODEL_ID:
        return text, None
    path = Path(text).expanduser()
    if not path.exists() and not path.is_absolute() and "/" not in text:
        candidate = Path(runs_dir) / text
        if (candidate / CONFIG_FILE).is_file():
            path = candidate
    if path.is_dir():
        if (path / "config.json").is_file():
            return str(path), None
        if (path / CONFIG_FILE).is_file():
            return _run_base_model(path), path
        raise ModelNotFound(f"{path}: neither a model folder (no config.json) nor a run (no config.yaml).")
    if path.exists():
        raise ModelNotFound(f"{path} is a file; pass the model folder that holds config.json and the weights.")
    if text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text:
        raise ModelNotFound(f"{text}: no such folder. Pass a model folder (with config.json), a run folder, a "
                            f"hub id such as TinyLlama/TinyLlama-1.1B-Chat-v1.0, or {DEMO_MODEL_ID}.")
    return text, None


def resolve_model(model_or_run: str, runs_dir: str | Path = "runs") -> ModelRef:
    """Resolve the demo model id (built on first use), a local model folder, a run or a cached hub id."""
    name, run_dir = resolve_model_name(model_or_run, runs_dir)
    if name == DEMO_MODEL_ID:
        from tui_tuner.models.demo import ensure_demo_model

        return ModelRef(DEMO_MODEL_ID, ensure_demo_model(), run_dir)
    path = Path(name).expanduser()
    if path.is_dir():
        return ModelRef(name, path, run_dir)
    return ModelRef(name, _hub_cache_dir(name), run_dir)


def _run_base_model(run_dir: Path) -> str:
    from tui_tuner.config.schema import load_config

    loaded = load_config(run_dir / CONFIG_FILE)
    if not loaded.ok or loaded.config is None:
        raise ModelNotFound(f"{run_dir / CONFIG_FILE}: the run's config does not load "
                            f"({'; '.join(i.format() for i in loaded.errors[:2])}).")
    base = loaded.config.model.name_or_path
    if base != DEMO_MODEL_ID and not Path(base).expanduser().is_absolute() and not Path(base).exists():
        # a relative model folder in a run's config is relative to the project the run belongs to
        candidate = run_dir.parent.parent / base
        if (candidate / "config.json").is_file():
            return str(candidate)
    return base


def _hub_cache_dir(repo_id: str) -> Path | None:
    """The cached snapshot of a hub model when one is on this machine (never downloads)."""
    if repo_id.count("/") != 1:
        return None
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not cached, or not a valid repo id: the caller falls back to a catalog
        return None
    return folder if (folder / "config.json").is_file() else None


def weight_files(folder: Path) -> list[Path]:
    """The folder's safetensors files (all shards; the index file is not needed to find them)."""
    return sorted(p for p in Path(folder).glob("*.safetensors") if p.is_file())


def read_config_json(folder: Path) -> dict:
    """The model's config.json as a dict ({} when missing or unreadable)."""
    try:
        return json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def list_tensors(folder: Path) -> list[TensorInfo]:
    """Every tensor's name, shape and dtype from the safetensors headers, in file order."""
    from safetensors import safe_open

    out: list[TensorInfo] = []
    for file in weight_files(folder):
        # numpy framework: reading headers needs no torch import
        with safe_open(str(file), framework="numpy") as handle:
            for name in handle.keys():
                tslice = handle.get_slice(name)
                out.append(TensorInfo(name, tuple(int(d) for d in tslice.get_shape()),
                                      str(tslice.get_dtype()), file.name))
    return out


def load_tensor(folder: Path, name: str):
    """Load ONE tensor (a torch.Tensor) from the model folder; the rest stays on disk."""
    from safetensors import safe_open

    for file in weight_files(folder):
        with safe_open(str(file), framework="pt") as handle:
            if name in handle.keys():
                return handle.get_tensor(name)
    names = [t.name for t in list_tensors(folder)]
    import difflib

    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else " List them with --list."
    raise KeyError(f"{name!r} is not a tensor of {folder}.{hint}")


def default_tensor(tensors: list[TensorInfo]) -> TensorInfo:
    """The tensor a lab opens on: the first block's attention query projection, else the first 2-D float weight."""
    matrices = [t for t in tensors if len(t.shape) == 2 and t.is_float and t.name.endswith(".weight")]
    for key in ("q_proj", "query", "attn"):
        for t in matrices:
            if key in t.name and "embed" not in t.name:
                return t
    if matrices:
        return matrices[0]
    floats = [t for t in tensors if t.is_float]
    if not floats:
        raise ModelNotFound("the checkpoint holds no floating-point tensors to quantize.")
    return floats[0]
