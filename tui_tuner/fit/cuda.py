"""What torch's CUDA can do on this machine, and why it cannot when NVML sees a GPU.

NVML (the driver) and torch (its CUDA build) are two views of the GPU that can disagree:
a driver older than the CUDA release torch was built for makes `torch.cuda.is_available()`
False while `nvidia-smi` shows the card, and a CPU build of torch never sees a GPU. Training
must not then fall back to the CPU in silence: `torch_gpu_problem` names the mismatch and the
fix. `torch_cuda_build` reads torch's build from its files, so `check` stays torch-free.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from pathlib import Path

MIN_DRIVER = {11: "450.80.02", 12: "525.60.13", 13: "580.65.06"}
"""The oldest Linux driver each CUDA major release runs on (NVIDIA's CUDA compatibility table)."""


def _version_tuple(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    parts = re.findall(r"\d+", text)
    return tuple(int(p) for p in parts[:2]) if parts else None


def torch_cuda_build() -> tuple[str | None, str | None]:
    """(torch version, CUDA release it was built for or None for a CPU build), without importing torch.

    (None, None) when torch is not installed.
    """
    try:
        version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None, None
    spec = importlib.util.find_spec("torch")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        try:
            text = (Path(folder) / "version.py").read_text(encoding="utf-8")
        except OSError:
            continue
        m = re.search(r"^cuda(?:\s*:\s*[^=]+)?\s*=\s*['\"]([\d.]+)['\"]", text, re.M)
        return version, (m.group(1) if m else None)
    return version, None


def torch_hip_build() -> str | None:
    """The ROCm (HIP) release torch was built for, e.g. "6.4", or None (not a ROCm build, or no torch);
    read from torch/version.py without importing torch."""
    spec = importlib.util.find_spec("torch")
    for folder in list(spec.submodule_search_locations or []) if spec else []:
        try:
            text = (Path(folder) / "version.py").read_text(encoding="utf-8")
        except OSError:
            continue
        m = re.search(r"^hip(?:\s*:\s*[^=]+)?\s*=\s*['\"]([\d.]+)[^'\"]*['\"]", text, re.M)
        return m.group(1) if m else None
    return None


def driver_mismatch(driver_cuda: str | None, torch_cuda: str | None, torch_version: str | None = None,
                    driver_version: str | None = None) -> str | None:
    """Why torch's CUDA build cannot run on this driver, with the fix; None when they agree.

    `driver_cuda` is the newest CUDA the driver supports (NVML's `nvmlSystemGetCudaDriverVersion`,
    e.g. "12.4"); `torch_cuda` the CUDA release torch was built for (e.g. "13.0"). Within one
    major release CUDA's minor-version compatibility lets an older driver run newer builds.
    """
    have, need = _version_tuple(driver_cuda), _version_tuple(torch_cuda)
    if have is None or need is None or have[0] >= need[0]:
        return None
    torch_text = f"torch {torch_version}" if torch_version else "torch"
    driver_text = f"driver {driver_version} (CUDA {driver_cuda})" if driver_version else f"a driver for CUDA {driver_cuda}"
    minimum = MIN_DRIVER.get(need[0])
    upgrade = f"upgrade the NVIDIA driver to {minimum} or newer" if minimum else "upgrade the NVIDIA driver"
    base = (torch_version or "").split("+")[0] or "<version>"
    return (f"{torch_text} is built for CUDA {torch_cuda} but this machine has NVIDIA {driver_text}, so torch "
            f"cannot use the GPU. Fix: {upgrade}, or install a torch built for CUDA {have[0]}.x: "
            f"pip install torch=={base} --index-url https://download.pytorch.org/whl/cu{have[0]}{have[1] if len(have) > 1 else 0} "
            f"(pick a cu{have[0]}x index PyTorch publishes for {base}: pytorch.org/get-started/previous-versions).")


def torch_gpu_problem(nvml_gpus: int, driver_cuda: str | None, driver_version: str | None = None) -> str | None:
    """Why torch cannot use the `nvml_gpus` GPUs the driver shows (imports torch), or None when it can.

    None as well when NVML shows no GPU: then there is nothing torch is missing.
    """
    if nvml_gpus <= 0:
        return None
    version, build = torch_cuda_build()
    if version is None:
        return "torch is not installed: pip install torch"
    hip = torch_hip_build()
    if build is None and hip is not None:  # ROCm torch: its cuda API runs on AMD GPUs through HIP
        import torch

        if torch.cuda.is_available():
            return None
        return (f"torch {version} (ROCm {hip}) sees no GPU: check `amd-smi list` (or rocm-smi), that your user is in "
                "the `render` and `video` groups, and HIP_VISIBLE_DEVICES / CUDA_VISIBLE_DEVICES.")
    if build is None:
        return (f"torch {version} is a CPU-only build, but NVIDIA's driver shows {nvml_gpus} GPU(s). Fix: install the "
                f"CUDA build (on Linux the plain PyPI wheel is one): pip install --force-reinstall "
                f"torch=={version.split('+')[0]}")
    mismatch = driver_mismatch(driver_cuda, build, version, driver_version)
    if mismatch:
        return mismatch
    import torch

    if torch.cuda.is_available():
        return None
    try:
        torch.cuda.init()
        why = "torch.cuda.is_available() is False"
    except Exception as exc:  # torch's lazy init says why (no kernel image, driver error, ...)
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (f"NVIDIA's driver shows {nvml_gpus} GPU(s) but torch {version} (CUDA {build}) cannot use them: {why}. "
            "Check `nvidia-smi`, CUDA_VISIBLE_DEVICES and the container's GPU access.")


def bf16_supported() -> bool:
    """Whether the current CUDA GPU computes in bfloat16 natively (Ampere and newer).

    torch's default `is_bf16_supported()` also says True on T4/V100, where bf16 is emulated
    (slowly, and without bf16 tensor cores); those cards train in fp16 instead.
    """
    import torch

    if not torch.cuda.is_available():
        return False
    return bool(torch.cuda.is_bf16_supported(including_emulation=False))
