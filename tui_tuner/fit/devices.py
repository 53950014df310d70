"""The GPUs a run may use: NVML's list narrowed by CUDA_VISIBLE_DEVICES, MIG slices, the freest one.

NVML numbers every physical GPU of the machine; a CUDA process sees only what
CUDA_VISIBLE_DEVICES lists (indices, `GPU-<uuid>` or `MIG-<uuid>`, in that order, up to the
first entry that matches nothing), and on a GPU in MIG mode only its slices, each with its own
memory. `visible_gpus` applies those rules to a `HardwareReport`'s GPUs, so `check`, preflight
and `train --gpus N` count and measure what torch will get. No torch here.

    visible_gpus(report.gpus, os.environ.get("CUDA_VISIBLE_DEVICES"))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tui_tuner.fit.hardware import GpuInfo


def cuda_devices(gpus: list["GpuInfo"]) -> list["GpuInfo"]:
    """What CUDA enumerates with no CUDA_VISIBLE_DEVICES: whole GPUs, and a MIG GPU's slices instead of it."""
    out: list[GpuInfo] = []
    for g in gpus:
        out.extend(g.mig_slices if g.mig_slices else [g])
    return out


def _matches(token: str, g: "GpuInfo") -> bool:
    uuid = g.uuid or ""
    if token.startswith(("GPU-", "MIG-")):
        return bool(uuid) and uuid.startswith(token)  # CUDA accepts any unique uuid prefix
    return False


def visible_gpus(gpus: list["GpuInfo"], env: str | None) -> list["GpuInfo"]:
    """The devices a CUDA process started with CUDA_VISIBLE_DEVICES=`env` sees, in CUDA's order.

    `env` None (unset) means all; "" or "-1" means none. Integer tokens index NVML's order, which
    is CUDA's when CUDA_DEVICE_ORDER=PCI_BUS_ID (the worker sets it). A token matching nothing
    ends the list, as it does for CUDA.
    """
    devices = cuda_devices(gpus)
    if env is None:
        return devices
    out: list[GpuInfo] = []
    for raw in env.split(","):
        token = raw.strip()
        if not token:
            break
        if token.lstrip("-").isdigit():
            i = int(token)
            if i < 0 or i >= len(gpus):
                break
            g = gpus[i]
            found = g.mig_slices[:1] if g.mig_slices else [g]  # CUDA gives a MIG GPU's first slice by index
        else:
            found = [d for d in devices if _matches(token, d)] or [g for g in gpus if _matches(token, g)]
            if found and found[0].mig_slices:
                found = found[0].mig_slices[:1]
        if not found:
            break
        if found[0] not in out:
            out.append(found[0])
    return out


def freest(gpus: list["GpuInfo"]) -> "GpuInfo | None":
    """The device with the most free memory now (ties: the lower number), or None."""
    if not gpus:
        return None
    return max(gpus, key=lambda g: (g.memory_free, -gpus.index(g)))


def label(g: "GpuInfo") -> str:
    """How `check` and the TUI name a device: `GPU 1 (NVIDIA A100 80GB)` or `GPU 0 MIG 3g.40gb slice 1`."""
    if g.parent_index is not None:
        return f"GPU {g.parent_index} MIG slice {g.index} ({g.name})"
    return f"GPU {g.index} ({g.name})"


def visibility_note(gpus: list["GpuInfo"], env: str | None) -> str | None:
    """One line when CUDA_VISIBLE_DEVICES hides GPUs or names ones that do not exist; else None."""
    if env is None:
        return None
    seen = visible_gpus(gpus, env)
    total = len(cuda_devices(gpus))
    if not seen:
        return (f"CUDA_VISIBLE_DEVICES={env!r} leaves no GPU visible to CUDA (of {total} on this machine): "
                "unset it or list a GPU number or uuid from `tui-tuner check`.")
    if len(seen) < total:
        names = ", ".join(label(g) for g in seen)
        return f"CUDA_VISIBLE_DEVICES={env} : runs see {len(seen)} of {total} GPU(s): {names}"
    return None
