"""LoRA's target modules and trainable weights, resolved the way PEFT resolves them.

PEFT adapts a module when its full name equals a `target_modules` entry or ends with
`.` + the entry (`q_proj` picks `model.layers.3.self_attn.q_proj`); `all-linear` is every
linear layer except the output layer. Names are never translated: on a model that fuses
q, k and v into `qkv_proj` (Phi-3), `q_proj` matches nothing and PEFT refuses it, so the
estimate, the labs and training agree (tests/integration/test_lora_resolver_vs_peft.py
builds Llama, Phi-3, Gemma and Qwen2 and compares with PEFT's own choice).

    from tui_tuner.fit.lora import resolve_target_modules
    resolve_target_modules(["self_attn.qkv_proj", "mlp.down_proj"], ["q_proj"]).unmatched  # ['q_proj']

No heavy imports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Sequence

if TYPE_CHECKING:
    from tui_tuner.models.spec import ModelSpec

ALL_LINEAR = "all-linear"
ATTENTION_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj")
"""Linear layers that sit in a block's `self_attn`; the others sit in its `mlp`."""
FUSED_INTO = {"q_proj": "qkv_proj", "k_proj": "qkv_proj", "v_proj": "qkv_proj",
              "gate_proj": "gate_up_proj", "up_proj": "gate_up_proj"}
"""Separate projections some architectures (Phi-3) store as one matrix: only used to say what to target."""


def block_path(name: str) -> str:
    """Where a Llama-style linear layer sits inside a decoder block: `q_proj` -> `self_attn.q_proj`."""
    return f"{'self_attn' if name in ATTENTION_MODULES else 'mlp'}.{name}"


def parse_target_modules(text: str | Iterable[str] | None) -> str | list[str]:
    """`all-linear`, or the names of a comma- or space-separated string or a list (None means all-linear)."""
    if text is None:
        return ALL_LINEAR
    if isinstance(text, str):
        if text.strip() == ALL_LINEAR:
            return ALL_LINEAR
        return [t.strip() for t in text.replace(" ", ",").split(",") if t.strip()]
    return [t.strip() for t in text if t.strip()]


def _matches(path: str, target: str) -> bool:
    # PEFT compares against the full name (model.layers.N.<path>): equal to or ending in "." + target.
    return path == target or path.endswith("." + target)


@dataclass
class TargetMatch:
    """What `target_modules` picks among one block's linear layers."""

    chosen: list[str]
    """In-block paths PEFT would adapt (e.g. `self_attn.q_proj`), in the model's order."""
    unmatched: list[str] = field(default_factory=list)
    """Requested names that match no linear layer (PEFT refuses the config when nothing matches)."""
    hint: str = ""
    """What to target instead, when a name is a projection the model fuses (q_proj -> qkv_proj)."""

    @property
    def names(self) -> list[str]:
        """The chosen modules' own names (`q_proj`), as `linear_modules` keys them."""
        return [p.rsplit(".", 1)[-1] for p in self.chosen]

    def problem(self, model: str) -> str | None:
        """Why these targets cannot train `model` (unknown names, or none at all), or None when they can."""
        if not self.unmatched and self.chosen:
            return None
        missing = ", ".join(self.unmatched) or "(none)"
        return f"target_modules {missing} matches no linear layer of {model}.{self.hint and ' ' + self.hint}"


def resolve_target_modules(paths: Sequence[str], target_modules: str | Iterable[str]) -> TargetMatch:
    """The linear layers among `paths` (one block's, e.g. `self_attn.q_proj`) that `target_modules` picks.

    `target_modules` is `all-linear`, a list of names, or a comma-separated string of them. Targets
    that name one layer only (`layers.0.self_attn.q_proj`) are not resolved: LoRA arithmetic
    counts whole blocks.
    """
    targets = parse_target_modules(target_modules)
    if targets == ALL_LINEAR:
        return TargetMatch(list(paths))
    chosen = [p for p in paths if any(_matches(p, t) for t in targets)]
    unmatched = [t for t in targets if not any(_matches(p, t) for p in paths)]
    names = list(dict.fromkeys(p.rsplit(".", 1)[-1] for p in paths))
    fused = sorted({FUSED_INTO[t] for t in unmatched if FUSED_INTO.get(t) in names})
    hint = ""
    if fused:
        parts = [f"{', '.join(t for t in unmatched if FUSED_INTO.get(t) == f)} -> {f}" for f in fused]
        hint = f"It stores those projections fused ({'; '.join(parts)}): target {', '.join(fused)} instead."
    elif unmatched:
        hint = f"Its linear layers are: {', '.join(names)} (or use all-linear)."
    return TargetMatch(chosen, unmatched, hint)


def spec_target_modules(spec: "ModelSpec", target_modules: str | Iterable[str]) -> TargetMatch:
    """`resolve_target_modules` over a `ModelSpec`'s block linear layers."""
    from tui_tuner.models.spec import linear_modules

    return resolve_target_modules([block_path(n) for n in linear_modules(spec)], target_modules)


def lora_params(spec: "ModelSpec", r: int, target_modules: str | Iterable[str] = ALL_LINEAR) -> int:
    """Trainable LoRA parameters: r x (in + out) for each adapted matrix, in every layer."""
    from tui_tuner.models.spec import linear_modules

    modules = linear_modules(spec)
    return spec.num_layers * sum(r * (modules[m][0] + modules[m][1])
                                 for m in spec_target_modules(spec, target_modules).names)
