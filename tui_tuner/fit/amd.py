"""AMD GPUs through AMD SMI (`amdsmi`, the Python library ROCm ships): name, VRAM, utilisation, processes.

The counterpart of NVML for ROCm machines. `amdsmi` is initialised once; when the package, its
shared library (libamd_smi.so) or the amdgpu driver is missing, no AMD GPU is listed and
`amd_unavailable_reason()` says why in one line, as `gpu_unavailable_reason()` does for NVIDIA.
The readings become the same `GpuInfo` / `GpuSample` / `GpuProcess` records NVIDIA's do (with
`vendor="amd"`), so `check`, the Hardware screen, preflight and the training log show them
alike. No torch: ROCm builds of torch drive these GPUs through torch's `cuda` API.

    from tui_tuner.fit.amd import list_amd_gpus, amd_unavailable_reason
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tui_tuner.fit.hardware import GpuInfo, GpuProcess, GpuSample

MIB = 2**20
STATUS_NO_PERM = 10
STATUS_DRIVER_NOT_LOADED = 34
"""amdsmi_status_t codes (amdsmi.h), used when the module does not name them."""
KFD_DEVICE = Path("/dev/kfd")
"""The ROCm compute driver's device: present where the amdgpu kernel driver can run compute."""
BF16_ARCHS = ("gfx90a", "gfx94", "gfx95", "gfx11", "gfx12")
"""GPU architectures with native bfloat16 matrix instructions (MI200 and newer, RDNA3 and newer)."""

_lock = threading.Lock()
_amdsmi: Any = None
_reason: str | None = None
_tried = False
_installed = False


def _code(amdsmi: Any, name: str, default: int) -> int:
    wrapper = getattr(amdsmi, "amdsmi_wrapper", None)
    return getattr(wrapper, name, getattr(amdsmi, name, default))


def _reason_for(exc: Exception, amdsmi: Any) -> str:
    code = getattr(exc, "err_code", None)
    if code is None and hasattr(exc, "get_error_code"):
        try:
            code = exc.get_error_code()
        except Exception:
            code = None
    if code == _code(amdsmi, "AMDSMI_STATUS_DRIVER_NOT_LOADED", STATUS_DRIVER_NOT_LOADED):
        return "the AMD GPU driver (amdgpu) is not loaded: load the kernel module (modprobe amdgpu) or reboot."
    if code == _code(amdsmi, "AMDSMI_STATUS_NO_PERM", STATUS_NO_PERM):
        return ("no permission to query the AMD driver (add your user to the `render` and `video` groups, or give "
                "the container /dev/kfd and /dev/dri).")
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"AMD SMI could not start: {text}."


def _ensure() -> Any:
    """The initialised amdsmi module, or None with the reason recorded (initialises once)."""
    global _amdsmi, _reason, _tried, _installed
    with _lock:
        if _tried:
            return _amdsmi
        _tried = True
        try:
            import amdsmi
        except ModuleNotFoundError as exc:
            if exc.name not in (None, "amdsmi"):  # the package is there but something it needs is not
                _installed = True
                _reason = f"the amdsmi package did not import: {exc}."
                return None
            _reason = ("the amdsmi package is not installed (ROCm ships it: pip install /opt/rocm/share/amd_smi, "
                       "or pip install amdsmi matching your ROCm release), so AMD GPUs cannot be read.")
            return None
        except (ImportError, OSError) as exc:  # the wrapper loads libamd_smi.so when imported
            _installed = True
            _reason = (f"no AMD GPU driver: the AMD SMI library (libamd_smi.so) could not be loaded ({exc}); "
                       "install ROCm or set LD_LIBRARY_PATH to /opt/rocm/lib.")
            return None
        _installed = True
        try:
            flags = getattr(getattr(amdsmi, "AmdSmiInitFlags", None), "INIT_AMD_GPUS", None)
            amdsmi.amdsmi_init(flags) if flags is not None else amdsmi.amdsmi_init()
        except Exception as exc:  # AmdSmiLibraryException (err_code), or OSError from an odd library
            _reason = _reason_for(exc, amdsmi)
            return None
        try:
            handles = amdsmi.amdsmi_get_processor_handles()
        except Exception as exc:
            _reason = _reason_for(exc, amdsmi)
            return None
        if not handles:
            _reason = "the AMD driver is loaded but reports no GPU."
            return None
        _amdsmi = amdsmi
        _reason = None
        return _amdsmi


def amd_unavailable_reason() -> str | None:
    """Why AMD GPUs cannot be read (one line), or None when AMD SMI works."""
    _ensure()
    return _reason


def amd_relevant() -> bool:
    """Whether AMD's reason is worth showing: `amdsmi` is installed or the ROCm compute driver is present."""
    _ensure()
    return _installed or KFD_DEVICE.exists()


def reset_amdsmi() -> None:
    """Forget AMD SMI's state so the next call initialises again (tests; after a driver reload)."""
    global _amdsmi, _reason, _tried, _installed
    with _lock:
        if _amdsmi is not None:
            try:
                _amdsmi.amdsmi_shut_down()
            except Exception:
                pass
        _amdsmi, _reason, _tried, _installed = None, None, False, False


def _try(fn: Any, *args: Any, default: Any = None) -> Any:
    try:
        return fn(*args)
    except Exception:  # one reading a board does not support must not hide the rest
        return default


def _number(value: Any) -> float | None:
    """A reading as a number; AMD SMI gives "N/A" (or a max-uint) for what a board does not report."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if value >= 0xFFFF_FFFF else float(value)


def _name(sm: Any, h: Any) -> str:
    asic = _try(sm.amdsmi_get_gpu_asic_info, h, default={}) or {}
    name = str(asic.get("market_name") or "").strip()
    if name and name != "N/A":
        return name
    board = _try(getattr(sm, "amdsmi_get_gpu_board_info", lambda _h: {}), h, default={}) or {}
    return str(board.get("product_name") or "AMD GPU").strip()


def _arch(sm: Any, h: Any) -> str | None:
    asic = _try(sm.amdsmi_get_gpu_asic_info, h, default={}) or {}
    arch = str(asic.get("target_graphics_version") or "").strip()
    return arch if arch.startswith("gfx") else None


def _memory(sm: Any, h: Any) -> tuple[int, int]:
    """(total, used) VRAM in bytes: amdsmi_get_gpu_vram_usage reports MB."""
    vram = sm.amdsmi_get_gpu_vram_usage(h)
    return int(vram["vram_total"]) * MIB, int(vram["vram_used"]) * MIB


def _util(sm: Any, h: Any) -> int | None:
    activity = _try(sm.amdsmi_get_gpu_activity, h, default={}) or {}
    value = _number(activity.get("gfx_activity"))
    return int(value) if value is not None else None


def _power(sm: Any, h: Any) -> float | None:
    info = _try(sm.amdsmi_get_power_info, h, default={}) or {}
    for key in ("current_socket_power", "socket_power", "average_socket_power"):
        value = _number(info.get(key))
        if value:
            return value
    return None


def _temperature(sm: Any, h: Any) -> int | None:
    kind = getattr(getattr(sm, "AmdSmiTemperatureType", None), "EDGE", None)
    metric = getattr(getattr(sm, "AmdSmiTemperatureMetric", None), "CURRENT", None)
    if kind is None or metric is None or not hasattr(sm, "amdsmi_get_temp_metric"):
        return None
    value = _number(_try(sm.amdsmi_get_temp_metric, h, kind, metric))
    return int(value) if value is not None else None


def _processes(sm: Any, h: Any) -> list["GpuProcess"]:
    from tui_tuner.fit.hardware import gpu_process

    out = []
    for p in _try(sm.amdsmi_get_gpu_process_list, h, default=[]) or []:
        if not isinstance(p, dict):  # ROCm before 6.2 gave handles to pass to amdsmi_get_gpu_process_info
            p = _try(sm.amdsmi_get_gpu_process_info, h, p, default=None) if hasattr(
                sm, "amdsmi_get_gpu_process_info") else None
            if not isinstance(p, dict):
                continue
        usage = p.get("memory_usage") or {}
        used = _number(usage.get("vram_mem")) or _number(p.get("mem"))
        pid = p.get("pid")
        if not isinstance(pid, int):
            continue
        out.append(gpu_process(pid, int(used) if used else None, vendor="amd"))
    return out


def list_amd_gpus(first_index: int = 0) -> list["GpuInfo"]:
    """Every AMD GPU with its details, numbered from `first_index` ([] when AMD SMI is unavailable)."""
    global _reason
    from tui_tuner.fit.hardware import GpuInfo

    sm = _ensure()
    if sm is None:
        return []
    out = []
    try:
        for i, h in enumerate(sm.amdsmi_get_processor_handles()):
            total, used = _memory(sm, h)
            out.append(GpuInfo(
                index=first_index + i, name=_name(sm, h), memory_total=total, memory_used=used,
                # No uuid: ROCm takes CUDA_VISIBLE_DEVICES / HIP_VISIBLE_DEVICES as device numbers, and AMD
                # SMI's uuid is not a form it accepts, so runs pick AMD GPUs by index.
                memory_free=max(0, total - used),
                utilization_pct=_util(sm, h), temperature_c=_temperature(sm, h), power_w=_power(sm, h),
                processes=_processes(sm, h), vendor="amd", arch=_arch(sm, h)))
    except Exception as exc:  # a GPU fell off the bus, the driver was unloaded...
        _reason = _reason_for(exc, sm)
        return []
    return out


def sample_amd_gpus(first_index: int = 0) -> list["GpuSample"]:
    """A cheap reading of every AMD GPU; never raises ([] when unavailable)."""
    from tui_tuner.fit.hardware import GpuSample

    sm = _ensure()
    if sm is None:
        return []
    out = []
    try:
        for i, h in enumerate(sm.amdsmi_get_processor_handles()):
            total, used = _memory(sm, h)
            out.append(GpuSample(index=first_index + i, name=_name(sm, h), util=_util(sm, h), mem_used=used,
                                 mem_total=total, temp_c=_temperature(sm, h), power_w=_power(sm, h),
                                 power_limit_w=None))
    except Exception:
        return []
    return out


def sample_amd_processes(indices: list[int] | None = None, first_index: int = 0) -> dict[int, list["GpuProcess"]]:
    """The processes on each AMD GPU (by report index; only `indices` when given); {} when unavailable."""
    sm = _ensure()
    if sm is None:
        return {}
    out: dict[int, list[GpuProcess]] = {}
    try:
        for i, h in enumerate(sm.amdsmi_get_processor_handles()):
            index = first_index + i
            if indices is None or index in indices:
                out[index] = _processes(sm, h)
    except Exception:
        return {}
    return out


def amd_bf16(arch: str | None) -> bool:
    """Whether an AMD GPU of this architecture (e.g. gfx942) computes in bfloat16 natively."""
    return bool(arch) and arch.startswith(BF16_ARCHS)  # type: ignore[union-attr]
