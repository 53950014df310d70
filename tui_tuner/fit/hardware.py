"""What this machine has: NVIDIA GPUs (through NVML), AMD GPUs (through AMD SMI, `fit/amd.py`), an
Apple Silicon Mac's unified memory and Metal limit (`fit/mac.py`), CPU, RAM, disk and installed packages.

`probe()` is the full report for `tui-tuner check` and the Hardware screen; `sample_gpus()`
is the cheap reading (utilisation, memory, temperature, power) that the training worker
calls every few seconds and the TUI's meters show. Neither imports torch, bitsandbytes or
unsloth: package versions come from their installed metadata. NVML (`pynvml`, from the
nvidia-ml-py package) is initialised once; when it cannot be used, the GPU list is empty and
`gpu_unavailable_reason()` says why in one line.

    python -m tui_tuner check          # shows this report
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import sys
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PACKAGES = ("torch", "transformers", "peft", "trl", "accelerate", "bitsandbytes", "unsloth", "datasets",
            "textual", "nvidia-ml-py", "mlx", "mlx-lm", "amdsmi")
"""Packages whose versions the report shows (read from metadata, never imported)."""

_lock = threading.Lock()
_nvml: Any = None          # the pynvml module once initialised
_nvml_reason: str | None = None
_nvml_tried = False


@dataclass
class GpuProcess:
    """A process holding memory on a GPU."""

    pid: int
    name: str
    used_bytes: int | None
    user: str | None = None
    command: str | None = None
    """Its command line (shortened), when this process may read it."""
    elsewhere: bool = False
    """NVML (or AMD SMI) gave a pid this machine's process table does not have: a process outside this
    container (they report host pids), or one that has just ended."""


@dataclass
class GpuInfo:
    """One GPU as NVML (NVIDIA) or AMD SMI (AMD) reports it."""

    index: int
    name: str
    memory_total: int
    memory_used: int
    memory_free: int
    uuid: str = ""
    utilization_pct: int | None = None
    temperature_c: int | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    compute_capability: tuple[int, int] | None = None
    processes: list[GpuProcess] = field(default_factory=list)
    parent_index: int | None = None
    """For a MIG slice: the index of the GPU it is part of (then `index` numbers the slice)."""
    mig_slices: list["GpuInfo"] = field(default_factory=list)
    """A GPU in MIG mode: its slices, each with its own memory; CUDA sees these, not the whole card."""
    vendor: str = "nvidia"
    """nvidia or amd (an AMD GPU trains through a ROCm build of torch, on the transformers backend)."""
    arch: str | None = None
    """An AMD GPU's architecture (e.g. gfx942), when AMD SMI reports it."""

    @property
    def bf16(self) -> bool:
        """bfloat16 needs compute capability 8.0 (Ampere) or newer; on AMD, MI200 / RDNA3 or newer."""
        if self.vendor == "amd":
            from tui_tuner.fit.amd import amd_bf16

            return amd_bf16(self.arch)
        return self.compute_capability is not None and self.compute_capability >= (8, 0)

    @property
    def unsloth_capable(self) -> bool:
        """Unsloth's kernels need compute capability 7.0 (V100, T4) or newer."""
        return self.compute_capability is not None and self.compute_capability >= (7, 0)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["compute_capability"] = (f"{self.compute_capability[0]}.{self.compute_capability[1]}"
                                   if self.compute_capability else None)
        d["bf16"] = self.bf16
        d["mig_slices"] = [s.as_dict() for s in self.mig_slices]
        return d


@dataclass
class GpuSample:
    """A cheap live reading of one GPU (for meters and the training log)."""

    index: int
    name: str
    util: int | None
    """GPU utilisation, percent."""
    mem_used: int
    mem_total: int
    temp_c: int | None
    power_w: float | None
    power_limit_w: float | None

    def as_dict(self) -> dict[str, Any]:
        """Keys as in the worker's `gpu` events (util, mem_used, mem_total, temp_c, power_w)."""
        return asdict(self)


@dataclass
class HardwareReport:
    """Everything `check` knows about this machine."""

    gpus: list[GpuInfo]
    gpu_unavailable_reason: str | None
    driver_version: str | None
    cuda_driver_version: str | None
    cpu_model: str
    cpu_cores_logical: int
    cpu_cores_physical: int | None
    ram_total: int | None
    ram_available: int | None
    disk_path: str
    disk_free: int | None
    disk_total: int | None
    python_version: str
    platform: str
    packages: dict[str, str | None]
    cuda_visible_devices: str | None = None
    torch_cuda: str | None = None
    """The CUDA release torch was built for (None: a CPU or ROCm build, or no torch), read without importing it."""
    torch_hip: str | None = None
    """The ROCm (HIP) release torch was built for (None: not a ROCm build)."""
    mac: Any = None
    """The Apple Silicon Mac's chip, unified memory and Metal limit (`fit.mac.MacHardware`), None elsewhere."""
    amd_unavailable_reason: str | None = None
    """Why AMD GPUs cannot be read, when that is worth saying (amdsmi installed or /dev/kfd present)."""

    @property
    def visible_gpus(self) -> list[GpuInfo]:
        """The devices a CUDA process started here sees (CUDA_VISIBLE_DEVICES and MIG applied)."""
        from tui_tuner.fit.devices import visible_gpus

        return visible_gpus(self.gpus, self.cuda_visible_devices)

    @property
    def torch_problem(self) -> str | None:
        """Why torch cannot use the GPUs NVML shows (driver too old for its CUDA build, a CPU build), or None."""
        from tui_tuner.fit.cuda import driver_mismatch

        version = self.packages.get("torch")
        if not self.gpus or version is None:
            return None
        base = version.split("+")[0]
        if any(g.vendor == "amd" for g in self.gpus):
            if self.torch_hip is not None:
                return None
            build = f"built for CUDA {self.torch_cuda}" if self.torch_cuda else "a CPU-only build"
            return (f"torch {version} is {build}, so training here will not use the AMD GPU(s). Fix: install the "
                    f"ROCm build: pip install --force-reinstall torch=={base} --index-url "
                    "https://download.pytorch.org/whl/rocm6.4 (pick the rocm index PyTorch publishes for your "
                    "ROCm release: pytorch.org/get-started/locally).")
        if self.torch_hip is not None:
            return (f"torch {version} is a ROCm (AMD) build, but this machine's GPU(s) are NVIDIA. Fix: "
                    f"pip install --force-reinstall torch=={base} (the PyPI wheel for Linux is the CUDA build).")
        if self.torch_cuda is None:
            return (f"torch {version} is a CPU-only build, so training here will not use the GPU(s). Fix: "
                    f"pip install --force-reinstall torch=={version.split('+')[0]} (the PyPI wheel for Linux is "
                    "the CUDA build).")
        return driver_mismatch(self.cuda_driver_version, self.torch_cuda, version, self.driver_version)

    @property
    def bitsandbytes_installed(self) -> bool:
        return self.packages.get("bitsandbytes") is not None

    @property
    def unsloth_installed(self) -> bool:
        return self.packages.get("unsloth") is not None

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k not in ("gpus", "mac")}
        d["gpus"] = [g.as_dict() for g in self.gpus]
        d["mac"] = None if self.mac is None else self.mac.as_dict()
        d["bitsandbytes_installed"] = self.bitsandbytes_installed
        d["visible_gpus"] = [{"index": g.index, "parent_index": g.parent_index, "uuid": g.uuid}
                             for g in self.visible_gpus]
        d["torch_problem"] = self.torch_problem
        d["unsloth_installed"] = self.unsloth_installed
        return d


# ---------------------------------------------------------------------------- NVML


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _reason_for(exc: Exception, pynvml: Any) -> str:
    code = getattr(exc, "value", None)
    if code == getattr(pynvml, "NVML_ERROR_LIBRARY_NOT_FOUND", object()):
        return "no NVIDIA driver: the NVML library (libnvidia-ml.so) is not on this machine."
    if code == getattr(pynvml, "NVML_ERROR_DRIVER_NOT_LOADED", object()):
        return "the NVIDIA driver is installed but not loaded (nvidia-smi fails too): load the kernel module or reboot."
    if code == getattr(pynvml, "NVML_ERROR_NO_PERMISSION", object()):
        return "no permission to query the NVIDIA driver (check /dev/nvidia* permissions or the container's GPU access)."
    return f"NVML could not start: {_text(exc)}."


def _ensure_nvml() -> Any:
    """The initialised pynvml module, or None with the reason recorded (initialises once)."""
    global _nvml, _nvml_reason, _nvml_tried
    with _lock:
        if _nvml_tried:
            return _nvml
        _nvml_tried = True
        try:
            import pynvml
        except ImportError:
            _nvml_reason = "the nvidia-ml-py package is not installed (pip install nvidia-ml-py), so GPUs cannot be read."
            return None
        try:
            pynvml.nvmlInit()
        except Exception as exc:  # pynvml raises NVMLError subclasses, or OSError when the library is odd
            _nvml_reason = _reason_for(exc, pynvml)
            return None
        try:
            count = pynvml.nvmlDeviceGetCount()
        except Exception as exc:
            _nvml_reason = _reason_for(exc, pynvml)
            return None
        if count == 0:
            _nvml_reason = "the NVIDIA driver is loaded but reports no GPU."
            return None
        _nvml = pynvml
        _nvml_reason = None
        return _nvml


def gpu_unavailable_reason() -> str | None:
    """Why GPUs cannot be read (one line), or None when NVML works."""
    _ensure_nvml()
    return _nvml_reason


def reset_nvml() -> None:
    """Forget NVML's (and AMD SMI's) state so the next call initialises again (tests; after a driver reload)."""
    global _nvml, _nvml_reason, _nvml_tried
    from tui_tuner.fit.amd import reset_amdsmi

    reset_amdsmi()
    with _lock:
        if _nvml is not None:
            try:
                _nvml.nvmlShutdown()
            except Exception:
                pass
        _nvml, _nvml_reason, _nvml_tried = None, None, False


def _try(fn, *args, default=None):
    try:
        return fn(*args)
    except Exception:  # one unsupported reading (e.g. power on some boards) must not hide the rest
        return default


def _uses_amd(proc: Any) -> bool | None:
    """Whether `proc` has ROCm's compute device (/dev/kfd) or HIP libraries mapped (None: not allowed to look)."""
    try:
        maps = Path(f"/proc/{proc.pid}/maps").read_text(errors="replace")
    except OSError:
        return None
    return "/dev/kfd" in maps or "libamdhip64" in maps or "/dev/dri/renderD" in maps


def _uses_nvidia(proc: Any) -> bool | None:
    """Whether `proc` has NVIDIA's device files or libraries mapped (None: not allowed to look)."""
    try:
        maps = Path(f"/proc/{proc.pid}/maps").read_text(errors="replace")
    except OSError:
        return None
    return "nvidia" in maps or "libcuda" in maps


def gpu_process(pid: int, used: int | None, vendor: str = "nvidia") -> GpuProcess:
    """Who a GPU process is. Inside a container NVML (and AMD SMI) report host pids: a pid missing
    here, or held by a process that has no NVIDIA (AMD) mapping, is marked `elsewhere` rather than misnamed."""
    try:
        import psutil

        proc = psutil.Process(pid)
        name = proc.name()
    except Exception:  # NoSuchProcess: not in this pid namespace (or gone); psutil missing
        return GpuProcess(pid, "(outside this container)", used, elsewhere=True)
    if (_uses_amd(proc) if vendor == "amd" else _uses_nvidia(proc)) is False:
        return GpuProcess(pid, "(outside this container)", used, elsewhere=True)
    user = command = None
    try:
        user = proc.username()
    except Exception:
        pass
    try:
        command = " ".join(proc.cmdline())[:200] or None
    except Exception:
        pass
    return GpuProcess(pid, name, used, user=user, command=command)


def _temperature(nv: Any, h: Any) -> int | None:
    """GPU temperature in C: nvmlDeviceGetTemperatureV (drivers from 2024), else the deprecated call."""
    sensor = getattr(nv, "NVML_TEMPERATURE_GPU", 0)
    if hasattr(nv, "nvmlDeviceGetTemperatureV"):
        value = _try(nv.nvmlDeviceGetTemperatureV, h, sensor)
        if value is not None:
            return int(value)
    value = _try(nv.nvmlDeviceGetTemperature, h, sensor)
    return int(value) if value is not None else None


def _processes(nv: Any, h: Any) -> list[GpuProcess]:
    procs = []
    for p in _try(nv.nvmlDeviceGetComputeRunningProcesses, h, default=[]) or []:
        used = getattr(p, "usedGpuMemory", None)
        procs.append(gpu_process(int(p.pid), int(used) if isinstance(used, int) else None))
    return procs


def _mig_slices(nv: Any, h: Any, parent: int, parent_name: str, cc: Any) -> list[GpuInfo]:
    """A GPU's MIG slices when MIG mode is on ([] otherwise, or when the driver cannot say)."""
    mode = _try(nv.nvmlDeviceGetMigMode, h) if hasattr(nv, "nvmlDeviceGetMigMode") else None
    current = mode[0] if isinstance(mode, (list, tuple)) else mode
    if current != getattr(nv, "NVML_DEVICE_MIG_ENABLE", 1):
        return []
    slices = []
    for i in range(_try(nv.nvmlDeviceGetMaxMigDeviceCount, h, default=0) or 0):
        mh = _try(nv.nvmlDeviceGetMigDeviceHandleByIndex, h, i)
        if mh is None:
            continue  # an unused slot
        mem = _try(nv.nvmlDeviceGetMemoryInfo, mh)
        if mem is None:
            continue
        slices.append(GpuInfo(
            index=len(slices), name=_text(_try(nv.nvmlDeviceGetName, mh, default=f"{parent_name} MIG")),
            memory_total=int(mem.total), memory_used=int(mem.used), memory_free=int(mem.free),
            uuid=_text(_try(nv.nvmlDeviceGetUUID, mh, default="")), compute_capability=tuple(cc) if cc else None,
            processes=_processes(nv, mh), parent_index=parent))
    return slices


def _gpu_info(nv: Any, index: int) -> GpuInfo:
    h = nv.nvmlDeviceGetHandleByIndex(index)
    mem = nv.nvmlDeviceGetMemoryInfo(h)
    util = _try(nv.nvmlDeviceGetUtilizationRates, h)
    power = _try(nv.nvmlDeviceGetPowerUsage, h)
    limit = _try(nv.nvmlDeviceGetEnforcedPowerLimit, h)
    cc = _try(nv.nvmlDeviceGetCudaComputeCapability, h)
    name = _text(nv.nvmlDeviceGetName(h))
    return GpuInfo(
        index=index, name=name,
        memory_total=int(mem.total), memory_used=int(mem.used), memory_free=int(mem.free),
        uuid=_text(_try(nv.nvmlDeviceGetUUID, h, default="")),
        utilization_pct=int(util.gpu) if util is not None else None,
        temperature_c=_temperature(nv, h),
        power_w=power / 1000 if power is not None else None,
        power_limit_w=limit / 1000 if limit is not None else None,
        compute_capability=tuple(cc) if cc else None, processes=_processes(nv, h),
        mig_slices=_mig_slices(nv, h, index, name, cc),
    )


def list_nvidia_gpus() -> list[GpuInfo]:
    """Every NVIDIA GPU with its full details ([] when NVML is unavailable; see `gpu_unavailable_reason`)."""
    global _nvml_reason
    nv = _ensure_nvml()
    if nv is None:
        return []
    try:
        return [_gpu_info(nv, i) for i in range(nv.nvmlDeviceGetCount())]
    except Exception as exc:  # a GPU fell off the bus, the driver was unloaded...
        _nvml_reason = _reason_for(exc, nv)
        return []


def _nvidia_count() -> int:
    nv = _ensure_nvml()
    return 0 if nv is None else int(_try(nv.nvmlDeviceGetCount, default=0) or 0)


def list_gpus() -> list[GpuInfo]:
    """Every GPU: NVIDIA's (NVML) first, then AMD's (AMD SMI) numbered after them; [] when neither can be read."""
    from tui_tuner.fit.amd import list_amd_gpus

    nvidia = list_nvidia_gpus()
    return nvidia + list_amd_gpus(first_index=len(nvidia))


def sample_gpus() -> list[GpuSample]:
    """A cheap reading of every GPU, NVIDIA then AMD; never raises ([] when unavailable, reason in
    `gpu_unavailable_reason`)."""
    from tui_tuner.fit.amd import sample_amd_gpus

    nvidia = _sample_nvidia()
    return nvidia + sample_amd_gpus(first_index=_nvidia_count())


def _sample_nvidia() -> list[GpuSample]:
    nv = _ensure_nvml()
    if nv is None:
        return []
    out = []
    try:
        for i in range(nv.nvmlDeviceGetCount()):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            mem = nv.nvmlDeviceGetMemoryInfo(h)
            util = _try(nv.nvmlDeviceGetUtilizationRates, h)
            power = _try(nv.nvmlDeviceGetPowerUsage, h)
            limit = _try(nv.nvmlDeviceGetEnforcedPowerLimit, h)
            out.append(GpuSample(
                index=i, name=_text(_try(nv.nvmlDeviceGetName, h, default="GPU")),
                util=int(util.gpu) if util is not None else None,
                mem_used=int(mem.used), mem_total=int(mem.total),
                temp_c=_temperature(nv, h),
                power_w=power / 1000 if power is not None else None,
                power_limit_w=limit / 1000 if limit is not None else None,
            ))
    except Exception:
        return []
    return out


def sample_processes(indices: list[int] | None = None) -> dict[int, list[GpuProcess]]:
    """The compute processes on each GPU (by NVML index; only `indices` when given), named through
    `gpu_process`; {} when NVML is unavailable. The worker's monitor watches its GPUs with it."""
    from tui_tuner.fit.amd import sample_amd_processes

    nv = _ensure_nvml()
    out: dict[int, list[GpuProcess]] = {}
    if nv is not None:
        try:
            for i in range(nv.nvmlDeviceGetCount()):
                if indices is None or i in indices:
                    out[i] = _processes(nv, nv.nvmlDeviceGetHandleByIndex(i))
        except Exception:
            out = {}
    out.update(sample_amd_processes(indices, first_index=_nvidia_count()))
    return out


# ---------------------------------------------------------------------------- the rest of the machine


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed versions from package metadata (None when not installed); imports nothing."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _existing_parent(path: Path) -> Path:
    path = path.expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def probe(runs_dir: str | Path = "runs") -> HardwareReport:
    """The full hardware report; `runs_dir` is where free disk space matters (runs are written there)."""
    from tui_tuner.fit.amd import amd_relevant, amd_unavailable_reason
    from tui_tuner.fit.cuda import torch_cuda_build, torch_hip_build
    from tui_tuner.fit.mac import probe_mac

    gpus = list_gpus()
    amd_reason = amd_unavailable_reason() if amd_relevant() else None
    reason = None
    if not gpus:
        reason = gpu_unavailable_reason()
        if amd_reason:
            reason = f"{reason} AMD: {amd_reason}"
    driver = cuda = None
    if _nvml is not None:
        driver = _text(_try(_nvml.nvmlSystemGetDriverVersion, default="")) or None
        cv = _try(_nvml.nvmlSystemGetCudaDriverVersion)
        cuda = f"{cv // 1000}.{cv % 1000 // 10}" if isinstance(cv, int) and cv > 0 else None
    ram_total = ram_avail = None
    physical = None
    try:
        import psutil

        vm = psutil.virtual_memory()
        ram_total, ram_avail = int(vm.total), int(vm.available)
        physical = psutil.cpu_count(logical=False)
    except Exception:
        pass
    disk_path = _existing_parent(Path(runs_dir))
    try:
        du = shutil.disk_usage(disk_path)
        disk_free, disk_total = int(du.free), int(du.total)
    except OSError:
        disk_free = disk_total = None
    return HardwareReport(
        gpus=gpus, gpu_unavailable_reason=reason, driver_version=driver, cuda_driver_version=cuda,
        cpu_model=_cpu_model(), cpu_cores_logical=os.cpu_count() or 1, cpu_cores_physical=physical,
        ram_total=ram_total, ram_available=ram_avail, disk_path=str(disk_path), disk_free=disk_free,
        disk_total=disk_total, python_version=platform.python_version(),
        platform=f"{platform.system()} {platform.release()} ({platform.machine()})",
        packages=package_versions(), cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
        torch_cuda=torch_cuda_build()[1], torch_hip=torch_hip_build(), mac=probe_mac(),
        amd_unavailable_reason=amd_reason,
    )


if __name__ == "__main__":  # pragma: no cover - a quick look by hand
    import json

    json.dump(probe().as_dict(), sys.stdout, indent=2)
    print()
