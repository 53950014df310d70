"""Which GPU a run gets and whether it can use it: CUDA_VISIBLE_DEVICES, MIG, shared cards, driver vs torch.

Mocked at the boundary only: NVML (the `pynvml` stand-in of test_hardware, here with MIG
handles), the environment, torch's CUDA build string and `torch.cuda`'s memory readings.
"""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace

import pytest

from tests.unit.test_hardware import CARD_16GB, CARD_24GB, MIB, fake_pynvml
from tui_tuner.fit import cuda, devices, hardware
from tui_tuner.fit.estimate import GIB

A100 = {"name": "NVIDIA A100-SXM4-80GB", "total": 81920 * MIB, "used": 600 * MIB, "cc": (8, 0)}
BUSY_A100 = {**A100, "used": 70000 * MIB, "procs": [(4242, 69000 * MIB)]}


def with_mig(module, parent: int, slices: list[tuple[int, int]]):
    """Put GPU `parent` of a fake pynvml in MIG mode with `slices` (total MiB, used MiB)."""
    module.NVML_DEVICE_MIG_ENABLE = 1
    module.nvmlDeviceGetMigMode = lambda h: (1, 1) if h == parent else (0, 0)
    module.nvmlDeviceGetMaxMigDeviceCount = lambda h: 7 if h == parent else 0
    handles = {("mig", parent, i): s for i, s in enumerate(slices)}

    def by_index(h, i):
        if ("mig", h, i) not in handles:
            raise Exception("NVML_ERROR_NOT_FOUND")
        return ("mig", h, i)

    base_mem, base_name, base_uuid = module.nvmlDeviceGetMemoryInfo, module.nvmlDeviceGetName, module.nvmlDeviceGetUUID

    def mem(h):
        if isinstance(h, tuple):
            total, used = handles[h]
            return SimpleNamespace(total=total * MIB, used=used * MIB, free=(total - used) * MIB)
        return base_mem(h)

    module.nvmlDeviceGetMigDeviceHandleByIndex = by_index
    module.nvmlDeviceGetMemoryInfo = mem
    module.nvmlDeviceGetName = lambda h: "NVIDIA A100 MIG 3g.40gb" if isinstance(h, tuple) else base_name(h)
    module.nvmlDeviceGetUUID = lambda h: f"MIG-{h[1]}{h[2]}aa-slice" if isinstance(h, tuple) else base_uuid(h)
    return module


@pytest.fixture
def nvml(monkeypatch):
    def install(module):
        monkeypatch.setitem(sys.modules, "pynvml", module)
        hardware.reset_nvml()
        return module

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    yield install
    hardware.reset_nvml()


# ---------------------------------------------------------------------------- CUDA_VISIBLE_DEVICES and MIG


def gpus(*cards):
    return [hardware.GpuInfo(index=i, name=c["name"], memory_total=c["total"], memory_used=c["used"],
                             memory_free=c["total"] - c["used"], uuid=f"GPU-{i:04d}-abcd") for i, c in enumerate(cards)]


@pytest.mark.parametrize("env,expected", [
    (None, [0, 1, 2]), ("", []), ("-1", []), ("2", [2]), ("2,0", [2, 0]), ("1,7,0", [1]),
    ("GPU-0002", [2]), ("GPU-0001-abcd,0", [1, 0]), ("GPU-9999", []), ("0,0", [0])])
def test_cuda_visible_devices_follow_cudas_rules(env, expected):
    found = devices.visible_gpus(gpus(A100, A100, A100), env)
    assert [g.index for g in found] == expected


def test_mig_gpu_shows_its_slices_with_their_own_memory(nvml):
    with_mig(nvml(fake_pynvml([A100, CARD_24GB])), 0, [(40320, 100), (19968, 19000)])
    report = hardware.probe()
    whole = report.gpus[0]
    assert [s.memory_total for s in whole.mig_slices] == [40320 * MIB, 19968 * MIB]
    assert all(s.parent_index == 0 for s in whole.mig_slices)
    visible = report.visible_gpus
    assert [(g.parent_index, g.index) for g in visible] == [(0, 0), (0, 1), (None, 1)]
    assert devices.label(visible[0]) == "GPU 0 MIG slice 0 (NVIDIA A100 MIG 3g.40gb)"
    os.environ["CUDA_VISIBLE_DEVICES"] = "MIG-01aa"
    try:
        assert [g.memory_total for g in hardware.probe().visible_gpus] == [19968 * MIB]
    finally:
        del os.environ["CUDA_VISIBLE_DEVICES"]


def test_temperature_uses_the_v_call_and_falls_back_on_old_drivers(nvml):
    fake = nvml(fake_pynvml([CARD_24GB]))
    fake.nvmlDeviceGetTemperatureV = lambda h, sensor: 55
    assert hardware.probe().gpus[0].temperature_c == 55

    def missing(h, sensor):
        raise Exception("NVML_ERROR_FUNCTION_NOT_FOUND")

    fake.nvmlDeviceGetTemperatureV = missing
    hardware.reset_nvml()
    assert hardware.sample_gpus()[0].temp_c == CARD_24GB["temp"]


def test_gpu_processes_are_named_or_marked_outside_this_container(nvml):
    me = os.getpid()
    nvml(fake_pynvml([{**CARD_24GB, "procs": [(me, 500 * MIB), (2**22 + 12345, 700 * MIB)]}]))
    mine, host = hardware.probe().gpus[0].processes
    # this test process maps no NVIDIA library: NVML's pid must then be some other namespace's process
    assert mine.elsewhere and mine.used_bytes == 500 * MIB
    assert host.elsewhere and host.name == "(outside this container)"


def test_a_gpu_process_is_described_with_user_and_command(monkeypatch):
    monkeypatch.setattr(hardware, "_uses_nvidia", lambda proc: True)
    p = hardware.gpu_process(os.getpid(), 123)
    assert not p.elsewhere and p.user and "pytest" in (p.command or "") and p.used_bytes == 123


# ---------------------------------------------------------------------------- check and train use the right GPU


def test_check_picks_the_freest_visible_gpu_and_fits_against_its_free_memory(nvml, tmp_path):
    from tui_tuner.fit.check import FitOptions, check_fit

    nvml(fake_pynvml([BUSY_A100, A100]))
    report = check_fit("TinyLlama/TinyLlama-1.1B-Chat-v1.0", FitOptions(runs_dir=str(tmp_path)))
    assert report.gpu.index == 1 and report.vram_bytes == A100["total"] - A100["used"]
    os.environ["CUDA_VISIBLE_DEVICES"] = "0"
    try:
        busy = check_fit("TinyLlama/TinyLlama-1.1B-Chat-v1.0", FitOptions(runs_dir=str(tmp_path)))
    finally:
        del os.environ["CUDA_VISIBLE_DEVICES"]
    assert busy.gpu.index == 0 and busy.vram_bytes == (81920 - 70000) * MIB
    assert "pid 4242" in busy.busy_warning and "free now" in busy.busy_warning


def test_check_on_a_mig_slice_fits_against_the_slice(nvml, tmp_path):
    from tui_tuner.fit.check import FitOptions, check_fit

    with_mig(nvml(fake_pynvml([A100])), 0, [(9856, 0)])  # a 1g.10gb slice
    report = check_fit("meta-llama/Llama-3.1-8B", FitOptions(runs_dir=str(tmp_path)))
    assert report.vram_bytes == 9856 * MIB and report.gpu.parent_index == 0
    def fits(r):
        return {o["method"]: o["fits"] for o in r.targets[0].recommendations["transformers"].as_dict()["options"]}

    nvml(fake_pynvml([A100]))  # the same card without MIG
    whole = check_fit("meta-llama/Llama-3.1-8B", FitOptions(runs_dir=str(tmp_path)))
    assert fits(whole)["lora"] and not fits(report)["lora"]


def test_train_gpus_counts_what_cuda_will_see(nvml, monkeypatch, tmp_path):
    import argparse

    from tui_tuner.commands.train_cmd import _launch_plan

    nvml(fake_pynvml([A100, A100, A100, A100]))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    loaded = loaded_config(tmp_path, **{"distributed.gpus": 4})
    issues: list = []
    args = argparse.Namespace(nnodes=1, rdzv_endpoint=None, rdzv_id=None, config="c.yaml")
    _launch_plan(args, loaded, issues)
    assert any(i.severity == "error" and "CUDA sees 2" in i.message for i in issues)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    issues.clear()
    _launch_plan(args, loaded, issues)
    assert issues == []


# ---------------------------------------------------------------------------- preflight: NVML vs torch, free memory


def loaded_config(tmp_path, **overrides):
    from tests.conftest import run_config
    from tui_tuner.config.schema import LoadedConfig

    cfg = run_config(tmp_path, **overrides)
    return LoadedConfig(config=cfg, issues=[], path=None, raw={})


def test_driver_too_old_for_torchs_cuda_build_is_named_with_the_fix():
    text = cuda.driver_mismatch("12.4", "13.0", "2.13.0+cu130", "550.54.15")
    assert "CUDA 13.0" in text and "550.54.15" in text and "580" in text and "cu124" in text
    assert cuda.driver_mismatch("13.1", "13.0") is None
    assert cuda.driver_mismatch("12.2", "12.8") is None  # minor-version compatibility


def test_torch_build_is_read_without_importing_torch():
    version, build = cuda.torch_cuda_build()
    import torch

    assert version == torch.__version__ and build == torch.version.cuda


def test_preflight_names_a_cpu_torch_on_a_gpu_machine_and_a_driver_mismatch(nvml, tmp_path):
    from tui_tuner.train.preflight import gpu_issues

    nvml(fake_pynvml([A100]))
    hw = hardware.probe(tmp_path)
    cfg = loaded_config(tmp_path).config
    hw.packages["torch"], hw.torch_cuda = "2.13.0+cpu", None
    assert any("CPU-only build" in i.message and i.severity == "error" for i in gpu_issues(cfg, hw))
    hw.packages["torch"], hw.torch_cuda = "2.13.0+cu130", "13.0"
    assert any("driver" in i.message and "cu124" in i.message for i in gpu_issues(cfg, hw))
    hw.cuda_driver_version = "13.0"
    assert gpu_issues(cfg, hw) == []


def test_preflight_counts_visible_gpus_and_free_memory(nvml, tmp_path, monkeypatch):
    from tui_tuner.train.preflight import gpu_issues

    nvml(fake_pynvml([BUSY_A100, BUSY_A100]))
    hw = hardware.probe(tmp_path)
    hw.torch_cuda, hw.cuda_driver_version = "12.8", "12.8"
    big = loaded_config(tmp_path, **{"model.name_or_path": "meta-llama/Llama-3.1-8B", "method": "lora"}).config
    issues = gpu_issues(big, hw)
    assert any("free now" in i.message and "pid 4242" in i.message and i.severity == "warning" for i in issues)
    big.distributed.gpus = 4
    hw.cuda_visible_devices = "1"
    assert any(i.key == "distributed.gpus" and "CUDA sees 1" in i.message for i in gpu_issues(big, hw))
    hw.cuda_visible_devices = ""
    assert any("no GPU visible" in i.message for i in gpu_issues(big, hw))


def test_worker_refuses_to_train_on_the_cpu_while_the_driver_shows_a_gpu(nvml, monkeypatch, tmp_path):
    from tui_tuner.train import worker

    nvml(fake_pynvml([A100]))
    monkeypatch.setattr(cuda, "torch_cuda_build", lambda: ("2.13.0+cu130", "13.0"))
    problem = worker.gpu_torch_cannot_use()
    assert "CUDA 13.0" in problem and "580" in problem


def test_worker_gives_a_one_gpu_run_the_freest_gpu(nvml, monkeypatch):
    from tui_tuner.train import worker

    nvml(fake_pynvml([BUSY_A100, A100]))
    for name in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER"):  # set, then removed: restored after the test
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    note = worker.choose_gpu(1)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "GPU-0001" and "GPU 1" in note
    assert os.environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert worker.choose_gpu(1) is None and os.environ["CUDA_VISIBLE_DEVICES"] == "0"  # the user's choice stands


# ---------------------------------------------------------------------------- the probe on a shared GPU


def test_probe_on_a_half_busy_gpu_compares_with_free_memory(monkeypatch):
    import torch

    from tui_tuner.train import probe

    for name in ("synchronize", "empty_cache", "reset_peak_memory_stats"):
        monkeypatch.setattr(torch.cuda, name, lambda *a, **k: None)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (8 * GIB, 80 * GIB))  # 72 GiB held by others
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda *a: 2 * GIB)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a: 20 * GIB)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda *a: 20 * GIB)

    class OnGpu(torch.nn.Module):  # a real module whose parameters say they live on a GPU
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(4))

        def parameters(self, recurse=True):
            yield SimpleNamespace(is_cuda=True, numel=lambda: 4, requires_grad=True)

        def zero_grad(self, set_to_none=True):
            self.w.grad = None

        def forward(self, input_ids, labels=None):
            return SimpleNamespace(loss=(self.w.sum() * 0 + input_ids.float().mean()).requires_grad_())

    ids = torch.ones(1, 16, dtype=torch.long)
    trainer = SimpleNamespace(train_dataset=_Rows([[1] * 16]), data_collator=lambda rows: {"input_ids": ids},
                              _prepare_inputs=lambda b: b)
    with pytest.raises(probe.ProbeDoesNotFit) as err:
        probe.run_probe(trainer, OnGpu(), batch_size=1, optimizer_name="adamw_torch")
    assert err.value.result.capacity_bytes == 10 * GIB  # 8 free + 2 already ours, not the card's 80


class _Rows(list):
    """A list that also answers `ds["input_ids"]`, as a datasets.Dataset does."""

    def __getitem__(self, key):
        if key == "input_ids":
            return list(self)
        return {"input_ids": list.__getitem__(self, key)}


# ---------------------------------------------------------------------------- another process grabs the run's GPU


def test_another_process_grabbing_the_runs_gpu_is_a_warning_event_and_shows_in_the_train_view(nvml, tmp_path):
    import time

    from tui_tuner.rundir.events import EventWriter, read_events
    from tui_tuner.rundir.runs import RunDir
    from tui_tuner.train.gpu_monitor import GpuMonitor, IntruderWatch
    from tui_tuner.tui.run_view import RunView

    me = os.getpid()
    card = {**A100, "procs": [(me, 30000 * MIB), (5555, 1000 * MIB)]}
    other = {**A100, "procs": []}
    nvml(fake_pynvml([card, other]))
    events = EventWriter(tmp_path / "events.jsonl")
    monitor = GpuMonitor(events, interval_s=0.01, watch=IntruderWatch({me}), watch_gpus=[0])
    monitor.start()
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "events.jsonl").exists() or "gpu" not in (tmp_path / "events.jsonl").read_text():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        other["procs"] = [(7777, 40000 * MIB)]      # on a GPU this run does not use: not its business
        card["procs"] = [(me, 30000 * MIB), (5555, 1100 * MIB), (6666, 20000 * MIB)]  # a newcomer grabs 19.5 GiB
        while not any(e["kind"] == "warning" for e in read_events(tmp_path / "events.jsonl")[0]):
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        monitor.stop()
        monitor.join()
        events.close()
    found, _ = read_events(tmp_path / "events.jsonl")
    warnings = [e for e in found if e["kind"] == "warning"]
    assert [(w["gpu"], w["pid"]) for w in warnings] == [(0, 6666)]  # once; the small growth of 5555 is no news
    assert "19.5 GiB on GPU 0" in warnings[0]["message"]
    view = RunView(RunDir(tmp_path))
    view.fold(found)
    assert view.warnings == [warnings[0]["message"]]


# ---------------------------------------------------------------------------- the Hardware screen's shared-server view


def test_hardware_screen_lists_processes_history_and_the_freest_gpu(nvml, monkeypatch):
    from tui_tuner.tui.screens.hardware import GpuHistory, processes_text, sample_reading

    monkeypatch.setattr(hardware, "_uses_nvidia", lambda proc: True)
    nvml(fake_pynvml([{**BUSY_A100, "procs": [(os.getpid(), 69000 * MIB)]}, A100]))
    report = hardware.probe()
    text = processes_text(report).plain
    assert "freest GPU: GPU 1" in text and str(os.getpid()) in text and "67.4 GiB" in text
    history = GpuHistory(size=3)
    for used in (10, 20, 40, 80):  # the live readings the screen samples, through the real sampler
        report.gpus[0].memory_used = used
        history.add([sample_reading(s) for s in hardware.sample_gpus()])
    assert len(history.mem[0]) == 3 and len(history.util[1]) == 3
    line = history.text().plain.splitlines()[0]
    assert line.startswith("GPU 0 util") and "mem" in line
