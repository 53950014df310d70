"""Which training backend a run uses, and why (recorded in status.json and shown in the UI).

`auto` picks Unsloth only when a CUDA GPU is present and `unsloth` imports; otherwise
transformers + peft + trl. Call `select_backend` in the worker before transformers, trl
or peft are imported: importing Unsloth patches them, which only works if it comes first.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

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
    """(backend name, reason in words). Raises `BackendUnavailable` when `unsloth` is asked for but cannot run."""
    wanted = cfg.backend
    if wanted == "transformers":
        return "transformers", "backend: transformers in the config"
    multi_gpu = cfg.distributed.gpus > 1
    if not cuda_available():
        if wanted == "unsloth":
            raise BackendUnavailable("backend: unsloth needs an NVIDIA GPU with CUDA, and none is visible here. "
                                     "Set `backend: auto` or `backend: transformers` to train on this machine.")
        return "transformers", "no CUDA GPU: Unsloth needs one, using transformers + peft"
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
