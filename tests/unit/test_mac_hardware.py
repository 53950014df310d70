"""The Apple Silicon probe with mocked `sysctl` / `ioreg` / platform readings (as NVML readings are mocked)."""

from __future__ import annotations

from tui_tuner.fit.mac import GIB, MIB, default_metal_limit, fit_against_metal, metal_limit, probe_mac

IOREG_M2_PRO = '''+-o AGXAcceleratorG14X  <class AGXAcceleratorG14X, id 0x1000003c1>
    {
      "gpu-core-count" = 19
      "model" = "Apple M2 Pro"
    }
'''


def sysctl_of(values):
    return lambda name: values.get(name)


def mac16(wired=None):
    values = {"hw.memsize": str(16 * GIB), "machdep.cpu.brand_string": "Apple M2 Pro"}
    if wired is not None:
        values["iogpu.wired_limit_mb"] = str(wired)
    return probe_mac(sysctl=sysctl_of(values), ioreg=lambda: IOREG_M2_PRO, system=lambda: "Darwin",
                     machine=lambda: "arm64", free_bytes=lambda: 9 * GIB)


def test_a_16_gb_mac_reads_chip_memory_cores_and_the_default_metal_limit():
    mac = mac16()
    assert mac.chip == "Apple M2 Pro" and mac.memory_bytes == 16 * GIB and mac.memory_free_bytes == 9 * GIB
    assert mac.gpu_cores == 19
    assert mac.metal_limit_bytes == int(16 * GIB * 2 / 3) and "iogpu.wired_limit_mb unset" in mac.metal_limit_source


def test_the_wired_limit_sysctl_overrides_the_default():
    mac = mac16(wired=14336)
    assert mac.metal_limit_bytes == 14336 * MIB and mac.metal_limit_source == "iogpu.wired_limit_mb = 14336"
    assert mac16(wired=0).metal_limit_bytes == int(16 * GIB * 2 / 3)  # 0 means "macOS default"


def test_big_macs_get_three_quarters_and_the_limit_never_exceeds_memory():
    assert default_metal_limit(64 * GIB) == 48 * GIB
    assert metal_limit(16 * GIB, str(64 * 1024))[0] == 16 * GIB
    assert metal_limit(16 * GIB, "garbage")[0] == int(16 * GIB * 2 / 3)


def test_not_a_mac_or_an_intel_mac_or_no_readings_is_none():
    kw = dict(ioreg=lambda: None, free_bytes=lambda: None)
    assert probe_mac(sysctl=sysctl_of({"hw.memsize": "1"}), system=lambda: "Linux", machine=lambda: "x86_64", **kw) is None
    assert probe_mac(sysctl=sysctl_of({"hw.memsize": str(GIB)}), system=lambda: "Darwin", machine=lambda: "x86_64",
                     **kw) is None
    assert probe_mac(sysctl=sysctl_of({}), system=lambda: "Darwin", machine=lambda: "arm64", **kw) is None
    mac = probe_mac(sysctl=sysctl_of({"hw.memsize": str(8 * GIB)}), system=lambda: "Darwin", machine=lambda: "arm64",
                    **kw)
    assert mac.chip == "Apple Silicon" and mac.gpu_cores is None  # what is missing stays unknown, never guessed


def test_the_fit_on_a_16_gb_mac_names_the_metal_limit():
    mac = mac16()
    fits, line = fit_against_metal(8 * GIB, mac)
    assert fits and "Metal working-set limit" in line and "Apple M2 Pro" in line
    fits, line = fit_against_metal(12 * GIB, mac)  # under 16 GB of RAM, over the 10.7 GB the GPU may wire
    assert not fits and "iogpu.wired_limit_mb" in line and "does not fit" in line
