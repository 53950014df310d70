"""AMD GPUs through AMD SMI: readings from a fake `amdsmi` module, and the "why not" lines when the
package, its library or the driver is missing.

Only the `amdsmi` module is replaced (in sys.modules, as `pynvml` is in test_hardware.py); the
probe, sampler, fit check and `check` output under it run for real. NVML is absent throughout.
"""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import pytest

from tui_tuner.fit import amd, hardware
from tui_tuner.fit.estimate import GIB

MIB = 1024**2
ELSEWHERE_PID = 4_000_000  # beyond pid_max: a host pid this container does not have


class AmdSmiLibraryException(Exception):
    def __init__(self, code):
        self.err_code = code
        super().__init__(f"Error code:\n\t{code} | AMDSMI_STATUS")


def fake_amdsmi(cards: list[dict], init_error: int | None = None) -> types.ModuleType:
    """A stand-in for the amdsmi module reporting `cards` (name, arch, vram MB, util, processes)."""
    m = types.ModuleType("amdsmi")
    m.AmdSmiLibraryException = AmdSmiLibraryException
    m.AmdSmiInitFlags = SimpleNamespace(INIT_AMD_GPUS=2)
    m.AmdSmiTemperatureType = SimpleNamespace(EDGE=0)
    m.AmdSmiTemperatureMetric = SimpleNamespace(CURRENT=0)
    m.calls = {"init": 0, "flags": None}

    def init(flags=None):
        m.calls["init"] += 1
        m.calls["flags"] = flags
        if init_error is not None:
            raise AmdSmiLibraryException(init_error)

    m.amdsmi_init = init
    m.amdsmi_shut_down = lambda: None
    m.amdsmi_get_processor_handles = lambda: [f"handle-{i}" for i in range(len(cards))]

    def card(h):
        return cards[int(h.rsplit("-", 1)[1])]

    m.amdsmi_get_gpu_asic_info = lambda h: {"market_name": card(h)["name"], "target_graphics_version": card(h)["arch"]}
    m.amdsmi_get_gpu_vram_usage = lambda h: {"vram_total": card(h)["total_mb"], "vram_used": card(h)["used_mb"]}
    m.amdsmi_get_gpu_activity = lambda h: {"gfx_activity": card(h)["util"], "umc_activity": 3, "mm_activity": "N/A"}
    m.amdsmi_get_power_info = lambda h: {"current_socket_power": "N/A", "average_socket_power": card(h)["power_w"],
                                         "power_limit": 750}
    m.amdsmi_get_temp_metric = lambda h, kind, metric: card(h)["temp"]
    m.amdsmi_get_gpu_process_list = lambda h: [
        {"name": "python3", "pid": pid, "mem": used, "memory_usage": {"gtt_mem": 0, "cpu_mem": 0, "vram_mem": used}}
        for pid, used in card(h).get("procs", [])]
    return m


MI300X = {"name": "AMD Instinct MI300X", "arch": "gfx942", "total_mb": 196592, "used_mb": 2048, "util": 41,
          "power_w": 310, "temp": 47, "procs": [(ELSEWHERE_PID, 1536 * MIB)]}
MI100 = {"name": "AMD Instinct MI100", "arch": "gfx908", "total_mb": 32752, "used_mb": 16, "util": 0,
         "power_w": 40, "temp": 30}


@pytest.fixture
def amdsmi(monkeypatch, tmp_path):
    """Install a fake amdsmi (no NVML, no /dev/kfd): call it with the module it should be."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setitem(sys.modules, "pynvml", None)
    monkeypatch.setattr(amd, "KFD_DEVICE", tmp_path / "no-kfd")

    def install(module):
        monkeypatch.setitem(sys.modules, "amdsmi", module)
        hardware.reset_nvml()
        return module

    yield install
    hardware.reset_nvml()


def test_amd_gpus_are_read_with_name_vram_utilisation_and_processes(amdsmi):
    fake = amdsmi(fake_amdsmi([MI300X, MI100]))
    first, second = hardware.list_gpus()
    assert fake.calls["init"] == 1 and fake.calls["flags"] == 2  # AMD GPUs only, initialised once
    assert (first.vendor, first.name, first.index) == ("amd", "AMD Instinct MI300X", 0)
    assert first.memory_total == 196592 * MIB and first.memory_used == 2048 * MIB
    assert first.memory_free == (196592 - 2048) * MIB
    assert first.utilization_pct == 41 and first.temperature_c == 47
    assert first.power_w == 310  # current power "N/A" on this board: the average stands in
    assert first.bf16 and not second.bf16  # gfx942 has bf16; the MI100 (gfx908) does not
    assert not first.unsloth_capable
    (proc,) = first.processes
    assert proc.pid == ELSEWHERE_PID and proc.used_bytes == 1536 * MIB and proc.elsewhere
    samples = hardware.sample_gpus()
    assert [(s.index, s.name, s.util, s.mem_used) for s in samples] == [
        (0, "AMD Instinct MI300X", 41, 2048 * MIB), (1, "AMD Instinct MI100", 0, 16 * MIB)]
    assert [p.pid for p in hardware.sample_processes([0])[0]] == [ELSEWHERE_PID]


def test_the_fit_check_uses_the_amd_gpu_with_transformers_only(amdsmi, capsys, tmp_path):
    from tui_tuner.cli import main
    from tui_tuner.fit.check import FitOptions, check_fit

    amdsmi(fake_amdsmi([MI100]))
    report = check_fit("TinyLlama/TinyLlama-1.1B-Chat-v1.0", FitOptions(runs_dir=str(tmp_path)))
    assert report.hardware.gpu_unavailable_reason is None
    assert report.vram_bytes == (32752 - 16) * MIB and "AMD Instinct MI100" in report.gpu_label
    assert report.backends == ["transformers"]  # Unsloth is not offered on AMD
    if report.hardware.packages.get("torch") and report.hardware.torch_hip is None:
        assert "ROCm build" in report.hardware.torch_problem  # this machine's CUDA/CPU torch cannot drive it
    assert main(["check", "TinyLlama/TinyLlama-1.1B-Chat-v1.0", "--runs-dir", str(tmp_path)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "MI100" in out and "gfx908" in out and "read through AMD SMI" in out


@pytest.mark.parametrize("code, words", [(34, "driver (amdgpu) is not loaded"), (10, "no permission"),
                                         (8, "AMD SMI could not start")])
def test_a_failing_driver_says_why(amdsmi, code, words):
    amdsmi(fake_amdsmi([MI300X], init_error=code))
    assert hardware.list_gpus() == []
    assert words in amd.amd_unavailable_reason()
    report = hardware.probe()
    assert report.gpus == [] and words in report.gpu_unavailable_reason  # amdsmi is installed: its reason shows
    assert report.gpu_unavailable_reason.startswith("the nvidia-ml-py package is not installed")


def test_no_gpu_from_a_loaded_driver(amdsmi):
    amdsmi(fake_amdsmi([]))
    assert hardware.list_gpus() == [] and amd.amd_unavailable_reason() == "the AMD driver is loaded but reports no GPU."


def test_the_package_missing_is_said_only_where_amd_matters(amdsmi, monkeypatch, tmp_path):
    amdsmi(None)  # import amdsmi raises ImportError
    assert "amdsmi package is not installed" in amd.amd_unavailable_reason()
    assert "AMD" not in hardware.probe().gpu_unavailable_reason  # no ROCm driver here: NVIDIA's reason alone
    kfd = tmp_path / "kfd"
    kfd.write_text("")
    monkeypatch.setattr(amd, "KFD_DEVICE", kfd)  # the ROCm compute driver is present
    hardware.reset_nvml()
    reason = hardware.probe().gpu_unavailable_reason
    assert "AMD: the amdsmi package is not installed" in reason


def test_the_library_missing_is_said(amdsmi, monkeypatch, tmp_path):
    package = tmp_path / "site" / "amdsmi"
    package.mkdir(parents=True)
    # What amdsmi's wrapper does on import when ROCm's shared library is absent.
    (package / "__init__.py").write_text(
        "raise OSError('libamd_smi.so: cannot open shared object file: No such file or directory')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "amdsmi", raising=False)
    hardware.reset_nvml()
    reason = amd.amd_unavailable_reason()
    assert reason.startswith("no AMD GPU driver: the AMD SMI library (libamd_smi.so) could not be loaded")
    assert "install ROCm" in reason and amd.amd_relevant()


def test_amd_bf16_by_architecture():
    assert amd.amd_bf16("gfx90a") and amd.amd_bf16("gfx1100") and amd.amd_bf16("gfx950")
    assert not amd.amd_bf16("gfx908") and not amd.amd_bf16("gfx1030") and not amd.amd_bf16(None)
    assert GIB == 1024 * MIB
