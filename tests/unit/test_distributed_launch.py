"""The multi-GPU launch plan: which command starts the worker, and which process writes."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from tui_tuner.train import distributed as d


def _cfg(gpus=1, strategy="ddp", method="lora", gc=True):
    return SimpleNamespace(distributed=SimpleNamespace(gpus=gpus, strategy=strategy), method=method,
                           training=SimpleNamespace(gradient_checkpointing=gc))


def test_one_gpu_runs_the_worker_directly(tmp_path):
    argv = d.worker_argv(tmp_path, d.plan_for(_cfg()))
    assert argv == [sys.executable, "-m", "tui_tuner.train", "--worker", str(tmp_path)]


def test_several_gpus_launch_through_torchrun_standalone(tmp_path):
    argv = d.worker_argv(tmp_path, d.plan_for(_cfg(gpus=1), gpus=4))
    assert argv[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert argv[argv.index("--nproc-per-node") + 1] == "4"
    assert "--standalone" in argv and argv[argv.index("--max-restarts") + 1] == "0"
    assert argv[-4:] == ["-m", "tui_tuner.train", "--worker", str(tmp_path)]


def test_config_gpus_are_used_unless_the_flag_overrides():
    assert d.plan_for(_cfg(gpus=2)).gpus == 2
    assert d.plan_for(_cfg(gpus=2), gpus=1).gpus == 1


def test_multi_node_uses_the_c10d_rendezvous(tmp_path):
    plan = d.LaunchPlan(gpus=8, nnodes=2, rdzv_endpoint="node0:29500", rdzv_id="job7")
    argv = d.worker_argv(tmp_path, plan)
    assert "--standalone" not in argv
    for flag, value in (("--nnodes", "2"), ("--rdzv-backend", "c10d"), ("--rdzv-endpoint", "node0:29500"),
                        ("--rdzv-id", "job7")):
        assert argv[argv.index(flag) + 1] == value
    assert plan.world_size == 16


@pytest.mark.parametrize("plan,words", [
    (d.LaunchPlan(gpus=0), "at least 1"),
    (d.LaunchPlan(gpus=2, nnodes=2), "--rdzv-endpoint"),
    (d.LaunchPlan(gpus=2, nnodes=2, rdzv_endpoint="node0"), "port"),
])
def test_plans_that_cannot_launch_say_why(plan, words):
    assert words in plan.problem()


def test_plan_round_trips_through_the_run_directory(tmp_path):
    plan = d.LaunchPlan(gpus=2, strategy="fsdp")
    d.save_plan(tmp_path, plan)
    assert d.load_plan(tmp_path) == plan
    assert d.load_plan(tmp_path / "missing") == d.LaunchPlan()


def test_only_rank_zero_writes(monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert not d.is_main_process() and not d.writes_status()
    assert d.device_map_for_rank(cuda=True) == {"": 1}
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert d.is_main_process() and d.writes_status()


def test_trainer_arguments(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert d.trainer_arguments(_cfg(), cuda=True) == {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert d.trainer_arguments(_cfg(), cuda=False)["ddp_backend"] == "gloo"
    ddp = d.trainer_arguments(_cfg(strategy="fsdp", method="lora"), cuda=True)
    assert ddp["ddp_backend"] == "nccl" and "fsdp" not in ddp  # adapters stay on DDP
    fsdp = d.trainer_arguments(_cfg(strategy="fsdp", method="full"), cuda=True, layer_classes=["LlamaDecoderLayer"])
    assert fsdp["fsdp"] == "full_shard auto_wrap"
    assert fsdp["fsdp_config"]["transformer_layer_cls_to_wrap"] == ["LlamaDecoderLayer"]
    assert fsdp["gradient_checkpointing"] is False and fsdp["fsdp_config"]["activation_checkpointing"] is True
