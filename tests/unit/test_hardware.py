"""The hardware probe with NVML absent, failing, and mocked to report a 24 GB and a 16 GB card.

Only the `pynvml` module is replaced (by `FakeNvml` below, which mimics its functions and
errors); the probe, sampler, recommendation and `check` code under it run for real.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from types import SimpleNamespace

import pytest

from tui_tuner.fit import hardware
from tui_tuner.fit.estimate import GIB

MIB = 1024**2


class NVMLError(Exception):
    def __init__(self, value):
        self.value = value
        super().__init__(f"NVML error {value}")


def fake_pynvml(cards: list[dict], init_error: int | None = None, count_error: int | None = None) -> types.ModuleType:
    """A stand-in for the pynvml module reporting `cards` (name, total, used, cc, ...)."""
    m = types.ModuleType("pynvml")
    m.NVMLError = NVMLError
    m.NVML_ERROR_LIBRARY_NOT_FOUND = 12
    m.NVML_ERROR_DRIVER_NOT_LOADED = 9
    m.NVML_ERROR_NO_PERMISSION = 4
    m.NVML_ERROR_NOT_SUPPORTED = 3
    m.NVML_TEMPERATURE_GPU = 0
    m.calls = {"init": 0}

    def init():
        m.calls["init"] += 1
        if init_error is not None:
            raise NVMLError(init_error)

    def count():
        if count_error is not None:
            raise NVMLError(count_error)
        return len(cards)

    def card(h):
        return cards[h]

    def power(h):
        if card(h).get("power_w") is None:
            raise NVMLError(m.NVML_ERROR_NOT_SUPPORTED)
        return int(card(h)["power_w"] * 1000)

    m.nvmlInit = init
    m.nvmlShutdown = lambda: None
    m.nvmlDeviceGetCount = count
    m.nvmlDeviceGetHandleByIndex = lambda i: i
    m.nvmlDeviceGetName = lambda h: card(h)["name"]
    m.nvmlDeviceGetUUID = lambda h: f"GPU-{h:04d}"
    m.nvmlDeviceGetMemoryInfo = lambda h: SimpleNamespace(
        total=card(h)["total"], used=card(h)["used"], free=card(h)["total"] - card(h)["used"])
    m.nvmlDeviceGetUtilizationRates = lambda h: SimpleNamespace(gpu=card(h).get("util", 0), memory=0)
    m.nvmlDeviceGetTemperature = lambda h, sensor: card(h).get("temp", 40)
    m.nvmlDeviceGetPowerUsage = power
    m.nvmlDeviceGetEnforcedPowerLimit = lambda h: int(card(h).get("limit_w", 300) * 1000)
    m.nvmlDeviceGetCudaComputeCapability = lambda h: card(h)["cc"]
    m.nvmlDeviceGetComputeRunningProcesses = lambda h: [
        SimpleNamespace(pid=p, usedGpuMemory=u) for p, u in card(h).get("procs", [])]
    m.nvmlSystemGetDriverVersion = lambda: "550.54.15"
    m.nvmlSystemGetCudaDriverVersion = lambda: 12040
    return m


CARD_24GB = {"name": "NVIDIA GeForce RTX 4090", "total": 24564 * MIB, "used": 1200 * MIB, "cc": (8, 9),
             "util": 37, "temp": 61, "power_w": 215.5, "limit_w": 450, "procs": [(4242, 1100 * MIB)]}
CARD_16GB = {"name": "Tesla T4", "total": 15360 * MIB, "used": 300 * MIB, "cc": (7, 5), "util": 0, "temp": 35,
             "power_w": None, "limit_w": 70}


@pytest.fixture
def nvml(monkeypatch):
    """Install a fake pynvml: call it with the cards (and errors) it should report."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)  # the fake cards, all visible

    def install(module):
        monkeypatch.setitem(sys.modules, "pynvml", module)
        hardware.reset_nvml()
        return module

    yield install
    hardware.reset_nvml()


def test_nvml_package_missing(monkeypatch, nvml):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    hardware.reset_nvml()
    report = hardware.probe()
    assert report.gpus == [] and "nvidia-ml-py package is not installed" in report.gpu_unavailable_reason
    assert hardware.sample_gpus() == []


@pytest.mark.parametrize("code,words", [(12, "no NVIDIA driver"), (9, "not loaded"), (4, "no permission")])
def test_nvml_init_failures_give_one_line_reasons(nvml, code, words):
    nvml(fake_pynvml([CARD_24GB], init_error=code))
    report = hardware.probe()
    assert report.gpus == [] and words in report.gpu_unavailable_reason
    assert "\n" not in report.gpu_unavailable_reason
    assert hardware.sample_gpus() == []


def test_driver_without_gpus(nvml):
    nvml(fake_pynvml([]))
    assert hardware.probe().gpu_unavailable_reason == "the NVIDIA driver is loaded but reports no GPU."


def test_real_machine_without_driver_never_raises():
    hardware.reset_nvml()
    report = hardware.probe()
    assert isinstance(report.gpus, list)
    assert (report.gpus == []) == (report.gpu_unavailable_reason is not None)
    json.dumps(report.as_dict())


def test_probe_reports_a_24gb_and_a_16gb_card(nvml, tmp_path):
    fake = nvml(fake_pynvml([CARD_24GB, CARD_16GB]))
    report = hardware.probe(tmp_path / "runs-not-created-yet")
    assert report.gpu_unavailable_reason is None
    assert report.driver_version == "550.54.15" and report.cuda_driver_version == "12.4"
    big, small = report.gpus
    assert big.name == "NVIDIA GeForce RTX 4090" and big.memory_total == 24564 * MIB
    assert big.bf16 and big.unsloth_capable and big.utilization_pct == 37 and big.temperature_c == 61
    assert big.power_w == pytest.approx(215.5) and big.power_limit_w == 450
    assert [(p.pid, p.used_bytes) for p in big.processes] == [(4242, 1100 * MIB)]
    assert not small.bf16 and small.unsloth_capable and small.power_w is None  # power unsupported: still reported
    assert report.disk_path == str(tmp_path)  # the nearest existing folder of the runs dir
    assert set(hardware.PACKAGES) == set(report.packages)
    d = json.loads(json.dumps(report.as_dict()))
    assert d["gpus"][0]["compute_capability"] == "8.9" and d["gpus"][1]["bf16"] is False
    assert fake.calls["init"] == 1


def test_sampler_initialises_nvml_once(nvml):
    fake = nvml(fake_pynvml([CARD_24GB, CARD_16GB]))
    for _ in range(5):
        samples = hardware.sample_gpus()
    assert fake.calls["init"] == 1
    assert [s.mem_total for s in samples] == [24564 * MIB, 15360 * MIB]
    assert samples[0].util == 37 and samples[0].temp_c == 61 and samples[0].power_w == pytest.approx(215.5)
    assert samples[1].power_w is None
    assert json.dumps([s.as_dict() for s in samples])


def test_sampler_survives_a_gpu_falling_off(nvml):
    fake = nvml(fake_pynvml([CARD_24GB]))
    assert len(hardware.sample_gpus()) == 1

    def gone(h):
        raise NVMLError(15)  # NVML_ERROR_GPU_IS_LOST

    fake.nvmlDeviceGetMemoryInfo = gone
    assert hardware.sample_gpus() == []


def _check_args(**kw) -> argparse.Namespace:
    base = dict(target=None, method=None, seq_len=None, batch=None, lora_r=None, target_modules=None,
                optimizer=None, no_gradient_checkpointing=False, backend="auto", vram=None, gpu=None,
                runs_dir=None, list_models=False, list_gpus=False, overrides=[], json=True)
    base.update(kw)
    return argparse.Namespace(**base)


@pytest.mark.parametrize("card,expected", [(CARD_24GB, "lora"), (CARD_16GB, "lora")])
def test_check_fits_tinyllama_on_the_detected_card(nvml, capsys, tmp_path, card, expected):
    from tui_tuner.commands.check_cmd import run_check

    nvml(fake_pynvml([card]))
    rc = run_check(_check_args(target="TinyLlama/TinyLlama-1.1B-Chat-v1.0", runs_dir=str(tmp_path)))
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    against = out["checked_against"]
    assert against["vram_bytes"] == card["total"] - card["used"] == against["free_bytes"]  # what is free now
    assert against["total_bytes"] == card["total"] and not against["hypothetical"]
    assert out["backends"] == ["transformers", "unsloth"]  # both: the card could run Unsloth
    rec = out["targets"][0]["recommendations"]["transformers"]
    assert rec["recommended"]["method"] == expected


def test_check_8b_on_16gb_card_recommends_qlora(nvml, capsys, tmp_path):
    from tui_tuner.commands.check_cmd import run_check

    nvml(fake_pynvml([CARD_16GB]))
    assert run_check(_check_args(target="meta-llama/Llama-3.1-8B", runs_dir=str(tmp_path))) == 0
    out = json.loads(capsys.readouterr().out)
    recs = out["targets"][0]["recommendations"]
    assert recs["transformers"]["recommended"]["method"] == "qlora"
    fits = {o["method"]: o["fits"] for o in recs["transformers"]["options"]}
    assert fits == {"full": False, "lora": False, "qlora": True}


def test_check_human_output_shows_gpu_table(nvml, capsys, tmp_path):
    from tui_tuner.commands.check_cmd import run_check

    nvml(fake_pynvml([CARD_24GB]))
    assert run_check(_check_args(target="Qwen/Qwen2.5-1.5B", json=False, runs_dir=str(tmp_path))) == 0
    out = capsys.readouterr().out
    assert "RTX 4090" in out and "Where the memory goes" in out and "needs" in out


def test_check_warns_when_other_processes_hold_the_gpu(nvml, capsys, tmp_path):
    from tui_tuner.commands.check_cmd import run_check

    busy = {**CARD_24GB, "used": 20000 * MIB}
    nvml(fake_pynvml([busy]))
    assert run_check(_check_args(target="HuggingFaceTB/SmolLM2-135M", runs_dir=str(tmp_path))) == 0
    against = json.loads(capsys.readouterr().out)["checked_against"]
    assert against["free_bytes"] == (24564 - 20000) * MIB
    assert "already has" in against["warning"] and "pid 4242" in against["warning"]


def test_samples_read_by_the_worker_events_and_the_tui_meters(nvml):
    from tui_tuner.train.gpu_monitor import sample_to_event
    from tui_tuner.tui.run_view import gpu_reading

    nvml(fake_pynvml([CARD_24GB]))
    sample = hardware.sample_gpus()[0]
    event = sample_to_event(sample)
    assert {"util", "mem_used", "mem_total"} <= set(event)
    for reading in (gpu_reading(event), gpu_reading(sample.as_dict())):
        assert reading.util == 37 and reading.temp_c == 61 and reading.power_w == pytest.approx(215.5)
        assert reading.mem_total == 24564 * MIB


@pytest.mark.gpu
def test_real_nvml_reads_this_machines_gpus():
    hardware.reset_nvml()
    gpus = hardware.list_gpus()
    if not gpus:
        pytest.skip(f"needs an NVIDIA GPU with its driver: {hardware.gpu_unavailable_reason()}")
    for g in gpus:
        assert 0 < g.memory_used <= g.memory_total and g.memory_free <= g.memory_total
        assert g.compute_capability is not None and g.name
    samples = hardware.sample_gpus()
    assert [s.index for s in samples] == [g.index for g in gpus]
    assert all(s.mem_total == g.memory_total for s, g in zip(samples, gpus))
    report = hardware.probe()
    assert report.driver_version and report.cuda_driver_version
