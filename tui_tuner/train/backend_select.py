"""Which training backend a run uses, and why (recorded in status.json and shown in the UI).

`auto` picks MLX on an Apple Silicon Mac (arm64 macOS) where `mlx` and `mlx_lm` import,
Unsloth only when a CUDA GPU is present and `unsloth` imports; otherwise transformers + peft + trl.
A ROCm build of torch (AMD GPUs) trains through transformers, whose `torch.cuda` calls HIP
runs on the AMD GPU; Unsloth is not offered there.
`backend: mlx` is honoured wherever MLX imports (Linux CPU included, which is how it is tested). Call `select_backend` in the worker before transformers, trl
or peft are imported: importing Unsloth patches them, which only works if it comes first.
"""

from __future__ import annotations

import importlib
import importlib.util
import platform
from typing import TYPE_CHECKING

from tui_tuner.fit.mac import MLX_INSTALL, mlx_importable  # noqa: F401  (the backend choice's MLX check)

if TYPE_CHECKING:
    from tui_tuner.config.schema import RunConfig


class BackendUnavailable(RuntimeError):
    """The config asks for a backend this machine cannot run; the message says what to do."""


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def rocm_torch() -> bool:
    """Whether torch is a ROCm (AMD) build: `torch.version.hip` is set, and its cuda API drives AMD GPUs."""
    try:
        import torch
    except ImportError:
        return False
    return bool(getattr(torch.version, "hip", None))


def apple_silicon() -> bool:
    """Whether this is macOS on an Apple chip (arm64), where MLX trains on the GPU through Metal."""
    return platform.system() == "Darwin" and platform.machine() == "arm64"


def mlx_refusal(cfg: "RunConfig") -> str | None:
    """Why the MLX backend cannot train this config (what it does not do yet), or None."""
    if cfg.objective != "sft":
        return (f"the MLX backend trains `objective: sft` only so far (this config has `objective: "
                f"{cfg.objective}`); set `backend: transformers` for {cfg.objective}")
    if cfg.method not in ("lora", "qlora"):
        return (f"the MLX backend trains `method: lora` or `qlora` (this config has `method: {cfg.method}`); "
                "set `method: lora`, or `backend: transformers`")
    if cfg.method == "qlora" and cfg.quantization.quant_type != "nf4":
        return (f"quantization.quant_type: {cfg.quantization.quant_type} is a bitsandbytes 4-bit type; MLX "
                "quantizes with its own affine 4-bit (group size 64) instead. Remove quant_type (or set nf4, "
                "which MLX replaces by affine 4-bit), or set `backend: transformers` for bitsandbytes' "
                f"{cfg.quantization.quant_type}")
    if cfg.lora.bias != "none":
        return (f"the MLX backend trains no biases (lora.bias: {cfg.lora.bias}); set lora.bias: none, "
                "or `backend: transformers`")
    if cfg.init_adapter is not None:
        return ("the MLX backend starts from a fresh adapter (init_adapter is set); remove init_adapter, "
                "or set `backend: transformers`")
    if cfg.distributed.gpus > 1:
        return "the MLX backend trains on one device; set distributed.gpus: 1"
    if cfg.training.packing:
        return "the MLX backend does not pack examples; set training.packing: false"
    return None


CHECKED_REQUIREMENTS = ("torch", "transformers", "trl", "peft", "datasets", "bitsandbytes", "accelerate")
"""Unsloth's requirements that decide whether it works with the rest of the stack."""


def unsloth_conflicts() -> list[str]:
    """Unsloth's declared requirements the installed packages break, e.g.
    `transformers 5.24.0 installed, unsloth 2026.10.9 needs transformers<=5.17.0,...` ([] when none or no unsloth)."""
    import importlib.metadata as md

    try:
        requires = md.requires("unsloth") or []
        unsloth_version = md.version("unsloth")
    except md.PackageNotFoundError:
        return []
    try:
        from packaging.requirements import Requirement
    except ImportError:
        return []
    out = []
    for text in requires:
        try:
            req = Requirement(text)
        except Exception:
            continue
        if req.name.lower() not in CHECKED_REQUIREMENTS or (req.marker and not req.marker.evaluate({"extra": ""})):
            continue
        try:
            have = md.version(req.name)
        except md.PackageNotFoundError:
            continue
        if not req.specifier.contains(have.split("+")[0], prereleases=True):
            out.append(f"{req.name} {have} installed, unsloth {unsloth_version} needs {req.name}{req.specifier}")
    return out


def unsloth_importable() -> tuple[bool, str]:
    """(True, "") when `import unsloth` works here, else (False, why)."""
    if importlib.util.find_spec("unsloth") is None:
        return False, "unsloth is not installed (pip install -e '.[gpu]' installs it with the versions it supports)"
    conflicts = unsloth_conflicts()
    if conflicts:  # importing it would patch a transformers/trl it was not written for
        return False, ("unsloth cannot work with the installed packages: " + "; ".join(conflicts)
                       + ". pip install -e '.[gpu]' installs a matching set")
    try:
        importlib.import_module("unsloth")
    except Exception as exc:  # unsloth raises NotImplementedError/ImportError/RuntimeError without a GPU
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return False, f"unsloth is installed but did not import: {first}"
    return True, ""


def select_backend(cfg: "RunConfig") -> tuple[str, str]:
    """(backend name, reason in words). Raises `BackendUnavailable` when `unsloth` or `mlx` is asked for
    but cannot run."""
    wanted = cfg.backend
    if wanted == "transformers":
        return "transformers", "backend: transformers in the config"
    if wanted == "mlx":
        ok, why = mlx_importable()
        if not ok:
            raise BackendUnavailable(f"backend: mlx was asked for, but {why}. Or set `backend: auto`.")
        refusal = mlx_refusal(cfg)
        if refusal:
            raise BackendUnavailable(f"backend: mlx cannot run this config: {refusal}.")
        return "mlx", "backend: mlx in the config"
    if wanted == "auto" and apple_silicon():
        ok, why = mlx_importable()
        refusal = mlx_refusal(cfg) if ok else None
        if ok and refusal is None:
            return "mlx", "Apple Silicon Mac and mlx imports"
        return "transformers", (f"Apple Silicon Mac, but {why or refusal}; using transformers + peft "
                                "(slower: no MLX)")
    multi_gpu = cfg.distributed.gpus > 1
    if cfg.objective == "reward":
        if wanted == "unsloth":
            raise BackendUnavailable("a reward model (objective: reward) needs a sequence-classification head, "
                                     "which the Unsloth backend does not train; set `backend: auto` or `transformers`.")
        return "transformers", "objective: reward needs a sequence-classification head: using transformers + peft"
    if cfg.init_adapter:
        if wanted == "unsloth":
            raise BackendUnavailable("continuing from `init_adapter` runs on the transformers backend; set "
                                     "`backend: auto` or `transformers`.")
        return "transformers", "init_adapter continues a PEFT adapter: using transformers + peft"
    if not cuda_available():
        if wanted == "unsloth":
            raise BackendUnavailable("backend: unsloth needs an NVIDIA GPU with CUDA, and none is visible here. "
                                     "Set `backend: auto` or `backend: transformers` to train on this machine.")
        return "transformers", "no CUDA GPU: Unsloth needs one, using transformers + peft"
    if rocm_torch():
        if wanted == "unsloth":
            raise BackendUnavailable("backend: unsloth is not offered on AMD GPUs (this torch is a ROCm build); set "
                                     "`backend: auto` or `transformers`: transformers + peft train on the AMD GPU "
                                     "through torch's cuda API.")
        return "transformers", ("AMD GPU with a ROCm build of torch: transformers + peft through torch's cuda API "
                                "(Unsloth is not offered there)")
    if multi_gpu:
        if wanted == "unsloth":
            raise BackendUnavailable("the Unsloth backend trains on one GPU; set `backend: transformers` "
                                     "for distributed.gpus > 1.")
        return "transformers", "several GPUs requested: Unsloth trains on one, using transformers + peft"
    ok, why = unsloth_importable()
    if ok:
        return "unsloth", ("backend: unsloth in the config" if wanted == "unsloth"
                           else "CUDA GPU present and unsloth imports")
    if wanted == "unsloth":
        raise BackendUnavailable(f"backend: unsloth was asked for, but {why}. Set `backend: auto` to fall back "
                                 "to transformers.")
    return "transformers", f"{why}; using transformers + peft"
