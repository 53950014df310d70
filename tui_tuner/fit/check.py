"""The fit check: this machine's hardware joined with the memory estimate of a model or configs.

One function, `check_fit`, serves `tui-tuner check` and the TUI's Hardware screen alike: it
probes the GPUs, finds the model's architecture, estimates every method and backend asked
for, recommends one for the GPU (the detected one, a common card, or a given size), and puts
earlier runs' measured peaks beside the estimates. On an Apple Silicon Mac the GPU is the
Metal working-set limit of its unified memory and the backend is MLX. No torch is imported.

    from tui_tuner.fit.check import FitOptions, check_fit
    report = check_fit("meta-llama/Llama-3.1-8B", FitOptions(gpu="4090", method="qlora"))
    print(report.targets[0].recommendations["transformers"].reason)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tui_tuner.core.units import format_bytes
from tui_tuner.fit.estimate import MemoryEstimate, Recommendation
from tui_tuner.fit.hardware import GpuInfo, HardwareReport
from tui_tuner.models.spec import ModelSpec


class FitCheckError(Exception):
    """Bad input (unknown model or GPU, invalid config, impossible setting): a message for the user."""


@dataclass
class FitOptions:
    """What to check; None means "from the config, else tui-tuner's defaults"."""

    method: str | None = None
    """full, lora or qlora; None: all three for a model, the config's method for a config."""
    seq_len: int | None = None
    batch_size: int | None = None
    lora_r: int | None = None
    target_modules: str | list[str] | None = None
    optimizer: str | None = None
    gradient_checkpointing: bool | None = None
    backend: str = "auto"
    """auto (mlx on an Apple Silicon Mac; both when the GPU could run Unsloth or the card is hypothetical),
    transformers, unsloth, mlx or both."""
    vram_gb: float | None = None
    """Check against a GPU of this size in GiB (a "24 GB" card is 24) instead of the detected one."""
    gpu: str | None = None
    """Check against a common GPU by name (T4, 4090, A100-80, ...)."""
    runs_dir: str | None = None
    """Where earlier runs' measured peaks are looked up; None: the config's runs folder, else `runs`."""
    overrides: list[str] = field(default_factory=list)
    """`--set key=value` overrides applied to configs."""


@dataclass
class TargetFit:
    """One model (or config) checked: its architecture, estimates, recommendations, measurements."""

    spec: ModelSpec
    settings: dict[str, Any]
    estimates: list[MemoryEstimate]
    recommendations: dict[str, Recommendation]
    """Per backend; empty when there is no GPU to check against."""
    measured: list[dict[str, Any]]
    config: str | None = None
    changes: list[Any] = field(default_factory=list)
    """When the one method checked does not fit: `make_fit.FitChange`s that make it fit, best first."""
    metal: dict[str, Any] | None = None
    """On a Mac: {"method", "needed_bytes", "fits", "line" naming the Metal limit, "advice" on LoRA vs QLoRA}."""

    def as_dict(self) -> dict[str, Any]:
        return {"config": self.config, "model": self.spec.as_dict(), "settings": self.settings,
                "estimates": [e.as_dict() for e in self.estimates],
                "recommendations": {b: r.as_dict() for b, r in self.recommendations.items()},
                "measured": self.measured, "changes": [c.as_dict() for c in self.changes], "metal": self.metal}


@dataclass
class FitReport:
    """The hardware, the GPU checked against, and every target's fit."""

    hardware: HardwareReport
    vram_bytes: int | None
    gpu_label: str
    hypothetical: bool
    """True when checking a card given by --gpu/--vram rather than the one in this machine."""
    backends: list[str]
    targets: list[TargetFit]
    problems: list[str]
    """Presets that could not be checked (invalid, unknown model), one line each."""
    gpu: GpuInfo | None = None
    """The detected device checked against (the freest one CUDA_VISIBLE_DEVICES leaves), when not hypothetical."""
    mac: Any = None
    """The Apple Silicon Mac checked against (its Metal working-set limit), when not hypothetical."""

    @property
    def metal_note(self) -> str | None:
        """What the Metal limit is and how to raise it, when checking against a Mac."""
        from tui_tuner.fit.mac import metal_note

        return None if self.mac is None else metal_note(self.mac)

    @property
    def busy_warning(self) -> str | None:
        """A warning when the GPU checked against is partly taken by other processes."""
        from tui_tuner.fit.devices import label

        g = self.gpu
        if self.hypothetical or g is None or g.memory_used <= 0.05 * g.memory_total:
            return None
        others = ", ".join(f"host pid {p.pid} (outside this container)" if p.elsewhere
                           else f"{p.name} (pid {p.pid}{', ' + p.user if p.user else ''})" for p in g.processes[:3])
        return (f"{label(g)} already has {format_bytes(g.memory_used)} of {format_bytes(g.memory_total)} in use"
                + (f" by {others}" if others else "") + f"; the fit below is against the {format_bytes(g.memory_free)} "
                "free now.")

    def as_dict(self) -> dict[str, Any]:
        against = None
        if self.vram_bytes is not None:
            against = {"gpu": self.gpu_label, "vram_bytes": self.vram_bytes, "hypothetical": self.hypothetical,
                       "free_bytes": None if self.gpu is None else self.gpu.memory_free,
                       "total_bytes": self.vram_bytes if self.gpu is None else self.gpu.memory_total,
                       "index": None if self.gpu is None else self.gpu.index,
                       "mig_parent_index": None if self.gpu is None else self.gpu.parent_index,
                       "warning": self.busy_warning,
                       "metal_limit": None if self.mac is None else {
                           "bytes": self.mac.metal_limit_bytes, "source": self.mac.metal_limit_source,
                           "memory_bytes": self.mac.memory_bytes, "memory_free_bytes": self.mac.memory_free_bytes,
                           "chip": self.mac.chip, "gpu_cores": self.mac.gpu_cores, "note": self.metal_note}}
        return {"hardware": self.hardware.as_dict(), "checked_against": against, "backends": self.backends,
                "targets": [t.as_dict() for t in self.targets], "problems": self.problems}


def project_configs() -> list[Path]:
    """configs/quickstart.yaml first, then the other presets, from the current folder or the project clone."""
    for root in (Path("configs"), Path(__file__).resolve().parents[2] / "configs"):
        if root.is_dir():
            files = sorted(root.glob("*.yaml"))
            return sorted(files, key=lambda p: (p.stem != "quickstart", p.name))
    return []


def _target_vram(opts: FitOptions, hw: HardwareReport) -> tuple[int | None, str, bool]:
    """(bytes, label, hypothetical) of the GPU to check against: a card given by --vram/--gpu (all of
    it), else the freest GPU CUDA_VISIBLE_DEVICES leaves (MIG: the slice), with the memory free now."""
    from tui_tuner.fit.estimate import COMMON_GPUS, GIB, find_gpu

    if opts.vram_gb is not None:
        if opts.vram_gb <= 0:
            raise FitCheckError(f"--vram {opts.vram_gb:g}: give the GPU memory in GiB, e.g. --vram 24.")
        return int(opts.vram_gb * GIB), f"{format_bytes(opts.vram_gb * GIB)} GPU", True
    if opts.gpu:
        gpu = find_gpu(opts.gpu)
        if gpu is None:
            names = ", ".join(g.name for g in COMMON_GPUS)
            raise FitCheckError(f"--gpu {opts.gpu}: not a GPU tui-tuner knows ({names}); "
                                "use --vram GB for any other card.")
        return gpu.memory_bytes, gpu.name, True
    from tui_tuner.fit.devices import freest, label

    g = freest(hw.visible_gpus)
    if g is not None:
        return g.memory_free, f"{label(g)}, free now", False
    if hw.mac is not None:  # unified memory: what counts is how much of it the GPU may wire
        return hw.mac.metal_limit_bytes, f"{hw.mac.chip} Metal limit", False
    return None, "", False


def _backends(opts: FitOptions, hw: HardwareReport, hypothetical: bool) -> list[str]:
    if opts.backend in ("transformers", "unsloth", "mlx"):
        return [opts.backend]
    if opts.backend == "both":
        return ["transformers", "unsloth"]
    if hw.mac is not None and not hypothetical and not hw.gpus:
        return ["mlx"]
    capable = any(g.unsloth_capable for g in hw.gpus)
    return ["transformers", "unsloth"] if (capable or hypothetical) else ["transformers"]


def _settings(opts: FitOptions, cfg: Any | None) -> dict[str, Any]:
    """estimate_memory keyword arguments: the config's values (or the defaults), overridden by `opts`."""
    if cfg is None:  # the defaults, without building the pydantic schema (most of `check MODEL`'s start-up)
        from types import SimpleNamespace

        from tui_tuner.config.defaults import FIT_DEFAULTS

        base: Any = SimpleNamespace(**{k: SimpleNamespace(**v) for k, v in FIT_DEFAULTS.items()})
    else:
        base = cfg
    from tui_tuner.fit.lora import parse_target_modules

    tm = parse_target_modules(base.lora.target_modules if opts.target_modules is None else opts.target_modules)
    s = {
        "seq_len": base.model.max_seq_length if opts.seq_len is None else opts.seq_len,
        "batch_size": base.training.batch_size if opts.batch_size is None else opts.batch_size,
        "lora_r": base.lora.r if opts.lora_r is None else opts.lora_r,
        "target_modules": tm,
        "gradient_checkpointing": base.training.gradient_checkpointing
        if opts.gradient_checkpointing is None else opts.gradient_checkpointing,
        "optimizer": opts.optimizer or base.training.optimizer,
        "double_quant": base.quantization.double_quant,
        "lora_dropout": base.lora.dropout,
    }
    for key, flag in (("seq_len", "--seq-len"), ("batch_size", "--batch"), ("lora_r", "--r")):
        if s[key] < 1:
            raise FitCheckError(f"{flag} {s[key]}: must be at least 1.")
    if base.model.dtype == "float32":
        s["dtype"] = "float32"
    return s


def _measured_rows(spec: ModelSpec, est: MemoryEstimate, settings: dict[str, Any], runs_dir: str) -> list[dict]:
    from tui_tuner.fit.estimate import estimate_memory
    from tui_tuner.fit.measured import find_measurements, settings_key

    key = settings_key(model=spec.name, method=est.method, seq_len=settings["seq_len"],
                       batch_size=settings["batch_size"], lora_r=settings["lora_r"],
                       target_modules=settings["target_modules"],
                       gradient_checkpointing=settings["gradient_checkpointing"], optimizer=settings["optimizer"])
    rows = []
    for m in find_measurements(runs_dir, key, est.backend):
        # Estimate the batch the probe ran (its longest sequences), without the CUDA context,
        # which the allocator's peak does not include.
        on_gpu = m.device != "cpu"
        at = estimate_memory(spec, est.method, backend=est.backend, on_gpu=False, **{
            **settings, "seq_len": m.seq_len or settings["seq_len"],
            "batch_size": m.batch_size or settings["batch_size"],
            **({} if on_gpu else {"dtype": "float32"})})
        row = m.as_dict()
        row["estimate_at_run_bytes"] = row.pop("estimate_bytes")  # what the worker's estimate said then
        row.update(method=est.method, backend=est.backend, estimate_bytes=at.total_bytes,
                   error=round(m.error_vs(at.total_bytes), 4))
        rows.append(row)
    return rows


def targets_problem(spec: ModelSpec, methods: list[str], settings: dict[str, Any]) -> str | None:
    """Why LoRA's target modules cannot train `spec` (as PEFT would refuse them), or None."""
    from tui_tuner.fit.lora import spec_target_modules

    if not any(m in ("lora", "qlora") for m in methods):
        return None
    problem = spec_target_modules(spec, settings["target_modules"]).problem(spec.name)
    return problem and f"{problem} (--target-modules, or lora.target_modules in the config)"


def fit_target(spec: ModelSpec, methods: list[str], backends: list[str], settings: dict[str, Any],
               vram_bytes: int | None, gpu_label: str, runs_dir: str, config: str | None = None,
               mac: Any = None) -> TargetFit:
    """Estimate, recommend and look up measurements for one model."""
    from tui_tuner.fit.estimate import estimate_memory, recommend

    estimates = [estimate_memory(spec, m, backend=b, **settings) for m in methods for b in backends]
    recs = {}
    if vram_bytes is not None:
        for b in backends:
            recs[b] = recommend(spec, vram_bytes, gpu_name=gpu_label, backend=b, methods=methods, **settings)
    measured = [row for est in estimates for row in _measured_rows(spec, est, settings, runs_dir)]
    changes = []
    if vram_bytes is not None and len(methods) == 1:
        from tui_tuner.fit.make_fit import fit_changes

        changes = fit_changes(spec, methods[0], settings, vram_bytes, backend=backends[0],
                              unsloth_ok="unsloth" in backends)
    metal = metal_fit(mac, estimates, recs) if mac is not None else None
    return TargetFit(spec, settings, estimates, recs, measured, config, changes, metal)


def metal_fit(mac: Any, estimates: list[MemoryEstimate], recs: dict[str, Recommendation]) -> dict[str, Any]:
    """The fit against a Mac's Metal limit: the recommended method's (else the leanest) estimate, one line
    naming the limit, and the advice on LoRA vs QLoRA on MLX."""
    from tui_tuner.fit.mac import fit_against_metal, mlx_advice

    backend = "mlx" if "mlx" in recs else next(iter(recs), None)
    rec = recs.get(backend) if backend else None
    shown = [e for e in estimates if e.backend == backend] or estimates
    est = rec.recommended.estimate if rec is not None and rec.recommended is not None else min(
        shown, key=lambda e: e.total_bytes)
    fits, line = fit_against_metal(est.total_bytes, mac)
    lora = next((e.total_bytes for e in shown if e.method == "lora"), None)
    method = rec.recommended.method if rec is not None and rec.recommended is not None else None
    advice = mlx_advice(method, est.total_bytes, mac, lora) if backend == "mlx" else ""
    return {"method": est.method, "backend": est.backend, "needed_bytes": est.total_bytes, "fits": fits,
            "line": f"{est.method} ({est.backend}) {line}", "advice": advice}


def check_fit(target: str | None = None, options: FitOptions | None = None, *,
              hardware: HardwareReport | None = None) -> FitReport:
    """Check a model id/folder, a run config (.yaml), or (None) the project's presets.

    Raises `FitCheckError` for bad input about the target itself; presets that cannot be
    checked are listed in `problems` instead. `hardware`: a probe already taken (the TUI's).
    """
    from tui_tuner.fit.hardware import probe
    from tui_tuner.models.spec import ModelSpecError, model_spec

    opts = options or FitOptions()
    hw = hardware or probe(opts.runs_dir or "runs")
    vram, gpu_label, hypothetical = _target_vram(opts, hw)
    backends = _backends(opts, hw, hypothetical)
    mac = hw.mac if not hypothetical and not hw.visible_gpus else None
    targets: list[TargetFit] = []
    problems: list[str] = []
    if target is None or target.endswith((".yaml", ".yml")):
        from tui_tuner.config.schema import load_config

        for path in [Path(target)] if target else project_configs():
            loaded = load_config(path, opts.overrides)
            if not loaded.ok or loaded.config is None:
                msgs = "; ".join(i.format() for i in loaded.errors or loaded.issues)
                if target:
                    raise FitCheckError(f"{msgs} Run `tui-tuner config check {path}` for details.")
                problems.append(msgs)
                continue
            cfg = loaded.config
            try:
                spec = model_spec(cfg.model.name_or_path, cfg.model.revision)
            except ModelSpecError as exc:
                if target:
                    raise FitCheckError(str(exc)) from None
                problems.append(f"{path}: {exc}")
                continue
            cfg_backends = backends if cfg.backend == "auto" or opts.backend != "auto" else [cfg.backend]
            runs_dir = opts.runs_dir or str(loaded.base_dir / cfg.output.runs_dir)
            methods, settings = [opts.method or cfg.method], _settings(opts, cfg)
            problem = targets_problem(spec, methods, settings)
            if problem:
                if target:
                    raise FitCheckError(problem)
                problems.append(f"{path}: {problem}")
                continue
            targets.append(fit_target(spec, methods, cfg_backends, settings, vram, gpu_label, runs_dir,
                                      config=str(path), mac=mac))
    else:
        try:
            spec = model_spec(target)
        except ModelSpecError as exc:
            raise FitCheckError(str(exc)) from None
        methods = [opts.method] if opts.method else ["full", "lora", "qlora"]
        settings = _settings(opts, None)
        problem = targets_problem(spec, methods, settings)
        if problem:
            raise FitCheckError(problem)
        targets.append(fit_target(spec, methods, backends, settings, vram, gpu_label, opts.runs_dir or "runs",
                                  mac=mac))
    from tui_tuner.fit.devices import freest

    return FitReport(hw, vram, gpu_label, hypothetical, backends, targets, problems,
                     gpu=None if hypothetical else freest(hw.visible_gpus), mac=mac)
