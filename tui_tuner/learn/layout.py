"""Which weights of a model are linear layers (quantized by QLoRA, targeted by LoRA) and which are not.

Built from `tui_tuner.models.spec` (config.json of a local folder, the HF cache, or the
built-in catalog), so a model can be sized without its weights.

    from tui_tuner.learn.layout import model_layout
    layout = model_layout("meta-llama/Llama-2-7b-hf")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

@dataclass(frozen=True)
class LinearModule:
    """One kind of linear layer, repeated once per decoder block."""

    name: str               # as PEFT's target_modules names it, e.g. "q_proj"
    path: str               # inside a block, e.g. "self_attn.q_proj"
    in_features: int
    out_features: int
    count: int              # how many in the model (one per block)

    @property
    def weight_params(self) -> int:
        return self.in_features * self.out_features

    def full_names(self, layer_prefix: str) -> list[str]:
        """The module's names in the model, e.g. model.layers.0.self_attn.q_proj."""
        return [f"{layer_prefix}.{i}.{self.path}" for i in range(self.count)]


@dataclass
class ModelLayout:
    """A model's parameters split into block linear layers and everything else."""

    model: str
    source: str
    total_params: int
    linear: list[LinearModule]
    unquantized_params: int         # embeddings, LM head, norms, biases: kept in 16 bit by QLoRA
    num_layers: int
    embedding_params: int = 0
    lm_head_params: int = 0
    published_params: int | None = None
    layer_prefix: str = "model.layers"
    notes: list[str] = field(default_factory=list)

    @property
    def linear_params(self) -> int:
        return sum(m.weight_params * m.count for m in self.linear)

    @property
    def linear_tensors(self) -> int:
        return sum(m.count for m in self.linear)


def layout_from_spec(spec) -> ModelLayout:
    """A `ModelLayout` from a `tui_tuner.models.spec.ModelSpec`."""
    from tui_tuner.fit.lora import block_path
    from tui_tuner.models.spec import linear_modules

    linear = [LinearModule(name, block_path(name), fan_in, fan_out, spec.num_layers)
              for name, (fan_in, fan_out) in linear_modules(spec).items()]
    return ModelLayout(
        model=spec.name, source=f"{spec.source}" + (f" ({spec.source_detail})" if spec.source_detail else ""),
        total_params=spec.param_count, linear=linear, unquantized_params=spec.unquantized_params,
        num_layers=spec.num_layers, embedding_params=spec.embedding_params,
        lm_head_params=spec.lm_head_params, published_params=spec.published_params, notes=list(spec.notes))


def model_layout(model_or_run: str, runs_dir: str | Path = "runs") -> ModelLayout:
    """The layout of a model named by id, folder or run (its base model); nothing is downloaded.

    Raises `tui_tuner.learn.weights.ModelNotFound` with what to do.
    """
    from tui_tuner.learn.weights import ModelNotFound, resolve_model_name
    from tui_tuner.models.spec import ModelSpecError, model_spec

    name, run_dir = resolve_model_name(model_or_run, runs_dir)
    try:
        spec = model_spec(name)
    except ModelSpecError as exc:
        raise ModelNotFound(str(exc)) from None
    layout = layout_from_spec(spec)
    if run_dir is not None:
        layout.notes.append(f"base model of run {run_dir.name}")
    return layout
