"""Make it fit: the config changes that bring a run under the GPU's memory, ranked by what they cost.

When the estimate is over the budget (the memory free on the GPU, or a card given by
--vram/--gpu), each change is estimated on its own, applied to the current settings, and
ranked from the cheapest (no cost to quality, a little speed) to the dearest (quality or
a backend change). `check` prints them; the Hardware screen lists them and carries the one
picked into the config (each change knows its config keys). Pure arithmetic, no torch.

    changes = fit_changes(spec, "lora", settings, budget_bytes=16 * GIB)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tui_tuner.core.units import format_bytes
from tui_tuner.fit.estimate import estimate_memory, max_seq_len


@dataclass
class FitChange:
    """One change to the config, its estimated peak and what it costs."""

    title: str
    cost: str
    """What it costs in speed or quality, in words."""
    settings: dict[tuple[str, ...], Any]
    """Config keys (as paths) and values that make the change."""
    method: str
    backend: str
    estimate_bytes: int
    fits: bool
    rank: int = 0
    """0 costs least; higher ranks cost more speed or quality."""
    applies: list[str] = field(default_factory=list)
    """The titles of the changes combined in this one (for the combined row)."""

    def as_dict(self) -> dict[str, Any]:
        return {"title": self.title, "cost": self.cost, "method": self.method, "backend": self.backend,
                "estimate_bytes": self.estimate_bytes, "fits": self.fits, "rank": self.rank,
                "settings": {".".join(k): v for k, v in self.settings.items()}}

    def line(self) -> str:
        mark = "fits" if self.fits else "still over"
        return f"{self.title}: {format_bytes(self.estimate_bytes)} ({mark}); {self.cost}"


def _candidates(method: str, backend: str, s: dict[str, Any], unsloth_ok: bool) -> list[tuple[str, str, dict, dict]]:
    """(title, cost, estimate_memory overrides, config settings), cheapest first."""
    out: list[tuple[str, str, dict, dict]] = []
    if not s.get("gradient_checkpointing", True):
        out.append(("turn on gradient checkpointing", "about 20-30% slower; no effect on quality",
                    {"gradient_checkpointing": True}, {("training", "gradient_checkpointing"): True}))
    if s.get("batch_size", 1) > 1:
        b = s["batch_size"]
        out.append((f"batch 1 with gradient accumulation x{b}", "same effective batch, fewer tokens per second",
                    {"batch_size": 1}, {("training", "batch_size"): 1, ("training", "grad_accumulation"): b}))
    if backend != "mlx" and s.get("optimizer") not in ("adamw_8bit", "paged_adamw_8bit", "adafactor", "sgd"):
        out.append(("8-bit paged AdamW optimizer", "optimizer state 4x smaller; quality practically the same",
                    {"optimizer": "paged_adamw_8bit"}, {("training", "optimizer"): "paged_adamw_8bit"}))
    if method == "full":
        out.append(("LoRA instead of full fine-tuning", "trains an adapter only; usually close in quality",
                    {"method": "lora"}, {("method",): "lora"}))
    if method in ("lora", "full") and backend == "mlx":
        out.append(("QLoRA (MLX 4-bit affine base weights)", "a small quality cost; MLX multiplies the packed 4-bit weights directly (no dequantization buffer)",
                    {"method": "qlora"}, {("method",): "qlora"}))
    elif method in ("lora", "full"):
        out.append(("QLoRA (4-bit base weights)", "about 30% slower (dequantization); a small quality cost",
                    {"method": "qlora"}, {("method",): "qlora"}))
    if unsloth_ok and backend not in ("unsloth", "mlx"):
        out.append(("Unsloth backend", "faster and leaner kernels; one GPU only, needs `pip install -e '.[gpu]'`",
                    {"backend": "unsloth"}, {("backend",): "unsloth"}))
    return out


def fit_changes(spec: Any, method: str, settings: dict[str, Any], budget_bytes: int, *,
                backend: str = "transformers", unsloth_ok: bool = True) -> list[FitChange]:
    """Ranked changes for a run estimated over `budget_bytes`; [] when it already fits.

    Each change is estimated alone on top of `settings` (the keyword arguments of
    `estimate_memory`). A shorter sequence is offered when that alone can fit (the longest
    that does), and when no single change fits, a last row combines the cheapest changes
    until it does.
    """
    base = estimate_memory(spec, method, backend=backend, **settings)
    if base.total_bytes <= budget_bytes:
        return []
    out: list[FitChange] = []
    candidates = _candidates(method, backend, settings, unsloth_ok)
    for rank, (title, cost, over, cfg) in enumerate(candidates):
        m, b = over.get("method", method), over.get("backend", backend)
        kw = {**settings, **{k: v for k, v in over.items() if k not in ("method", "backend")}}
        total = estimate_memory(spec, m, backend=b, **kw).total_bytes
        out.append(FitChange(title, cost, cfg, m, b, total, total <= budget_bytes, rank))
    longest = max_seq_len(spec, budget_bytes, method, backend=backend,
                          **{k: v for k, v in settings.items() if k != "seq_len"})
    if 0 < longest < settings.get("seq_len", 0):
        total = estimate_memory(spec, method, backend=backend, **{**settings, "seq_len": longest}).total_bytes
        out.append(FitChange(f"shorter sequences: max_seq_length {longest}",
                             "longer examples are truncated: check `tui-tuner data check` for how many",
                             {("model", "max_seq_length"): longest}, method, backend, total,
                             total <= budget_bytes, len(candidates)))
    if out and not any(c.fits for c in out):
        m, b, kw, cfg, titles = method, backend, dict(settings), {}, []
        for title, _, over, cfg_change in candidates:
            m, b = over.get("method", m), over.get("backend", b)
            kw.update({k: v for k, v in over.items() if k not in ("method", "backend")})
            cfg.update(cfg_change)
            titles.append(title)
            total = estimate_memory(spec, m, backend=b, **kw).total_bytes
            if total <= budget_bytes:
                break
        if total > budget_bytes:  # the sequence length last: it is the one that costs quality
            longest = max_seq_len(spec, budget_bytes, m, backend=b, **{k: v for k, v in kw.items() if k != "seq_len"})
            if 0 < longest < kw.get("seq_len", 0):
                kw["seq_len"] = longest
                cfg[("model", "max_seq_length")] = longest
                titles.append(f"max_seq_length {longest}")
                total = estimate_memory(spec, m, backend=b, **kw).total_bytes
        fits = total <= budget_bytes
        out.append(FitChange("all of: " + ", ".join(titles), "the costs of each combined", cfg, m, b, total, fits,
                             len(candidates) + 1, titles))
    return sorted(out, key=lambda c: (not c.fits, c.rank))
