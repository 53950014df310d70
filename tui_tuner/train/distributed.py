"""Multi-GPU training: how the worker is launched on N GPUs and which process writes what.

One GPU runs the worker directly (`python -m tui_tuner.train --worker RUN_DIR`). More than one
launches the same worker through PyTorch's own launcher, `torchrun`
(`python -m torch.distributed.run`): one process per GPU, DDP by default, FSDP for full
fine-tuning when `distributed.strategy: fsdp`. The HF Trainer reads the launcher's
environment (RANK, LOCAL_RANK, WORLD_SIZE) and wraps the model itself.

Only the global rank 0 process writes events and checkpoints; each node's local rank 0
writes that node's `status.json` (on one machine that is the same process). The
launch settings are kept in the run directory (`launch.json`) so a resume uses the
same layout.

    tui-tuner train configs/run.yaml --gpus 4
    tui-tuner train configs/run.yaml --gpus 8 --nnodes 2 --rdzv-endpoint node0:29500 --rdzv-id run1

No heavy imports here: the launcher is started as a subprocess.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tui_tuner.rundir.files import LAUNCH_FILE



@dataclass
class LaunchPlan:
    """How many processes train a run, on how many machines, and how they find each other."""

    gpus: int = 1
    """Processes (one per GPU) on this machine."""
    strategy: str = "ddp"
    """ddp or fsdp (fsdp only shards full fine-tuning; adapters always use DDP)."""
    nnodes: int = 1
    """Machines taking part; more than 1 needs `rdzv_endpoint`."""
    rdzv_endpoint: str | None = None
    """host:port of the rendezvous (any node reachable by all, usually the first)."""
    rdzv_id: str | None = None
    """A job id shared by every node of the same run."""
    node_rank: int | None = None
    """This machine's rank; None lets the rendezvous assign it."""

    @property
    def world_size(self) -> int:
        return self.gpus * self.nnodes

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def problem(self) -> str | None:
        """Why this plan cannot be launched, or None."""
        if self.gpus < 1:
            return "--gpus must be at least 1."
        if self.nnodes < 1:
            return "--nnodes must be at least 1."
        if self.nnodes > 1 and not self.rdzv_endpoint:
            return ("training on several machines needs --rdzv-endpoint HOST:PORT (a port on the first "
                    "machine that every machine can reach), the same on every machine.")
        if self.rdzv_endpoint and ":" not in self.rdzv_endpoint:
            return f"--rdzv-endpoint {self.rdzv_endpoint!r} needs a port, e.g. {self.rdzv_endpoint}:29500."
        if self.strategy not in ("ddp", "fsdp"):
            return f"unknown strategy {self.strategy!r}: use ddp or fsdp."
        return None


def plan_for(cfg: Any, *, gpus: int | None = None, nnodes: int = 1, rdzv_endpoint: str | None = None,
             rdzv_id: str | None = None, node_rank: int | None = None) -> LaunchPlan:
    """The launch plan for a config: `--gpus` (when given) overrides `distributed.gpus`."""
    dist = getattr(cfg, "distributed", None)
    return LaunchPlan(gpus=gpus if gpus is not None else (dist.gpus if dist else 1),
                      strategy=dist.strategy if dist else "ddp", nnodes=nnodes,
                      rdzv_endpoint=rdzv_endpoint, rdzv_id=rdzv_id, node_rank=node_rank)


def save_plan(run_dir: str | Path, plan: LaunchPlan) -> None:
    """Keep the plan beside the run so a resume launches the same way."""
    path = Path(run_dir) / LAUNCH_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(plan), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def load_plan(run_dir: str | Path) -> LaunchPlan:
    """The plan a run was started with; a single process when it has none."""
    try:
        data = json.loads((Path(run_dir) / LAUNCH_FILE).read_text(encoding="utf-8"))
        fields = LaunchPlan.__dataclass_fields__
        return LaunchPlan(**{k: v for k, v in data.items() if k in fields})
    except (OSError, ValueError, TypeError):
        return LaunchPlan()


def worker_argv(run_dir: str | Path, plan: LaunchPlan | None = None, *, python: str | None = None,
                extra: list[str] | None = None) -> list[str]:
    """The command that runs the training worker for `run_dir` under `plan`.

    One process: `python -m tui_tuner.train --worker RUN_DIR` (the supervisor, `python -m
    tui_tuner.train RUN_DIR`, runs this as its child). Several: torchrun with one process
    per GPU; on one machine with a private rendezvous (`--standalone`, a free port), on
    several with the c10d rendezvous at `rdzv_endpoint`. torchrun never restarts a failed
    worker (`--max-restarts 0`): a crash is reported and resumed from a checkpoint instead.
    """
    python = python or sys.executable
    plan = plan or LaunchPlan()
    tail = ["-m", "tui_tuner.train", "--worker", str(run_dir), *(extra or [])]
    if not plan.distributed:
        return [python, *tail]
    argv = [python, "-m", "torch.distributed.run", "--nproc-per-node", str(plan.gpus), "--max-restarts", "0"]
    if plan.nnodes == 1 and not plan.rdzv_endpoint:
        argv.append("--standalone")
    else:
        # Under a scheduler the rendezvous is only known when the job starts (tui_tuner.train.slurm sets these).
        endpoint = os.environ.get("TUI_TUNER_RDZV_ENDPOINT") or plan.rdzv_endpoint
        job_id = os.environ.get("TUI_TUNER_RDZV_ID") or plan.rdzv_id or Path(run_dir).name
        argv += ["--nnodes", str(plan.nnodes), "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint,
                 "--rdzv-id", job_id]
        if plan.node_rank is not None:
            argv += ["--node-rank", str(plan.node_rank)]
    return [*argv, *tail]


# ---------------------------------------------------------------------------- inside the worker


def rank() -> int:
    """This process's global rank (0 without a launcher)."""
    return int(os.environ.get("RANK", "0") or 0)


def local_rank() -> int:
    """This process's rank on its machine (its GPU index; 0 without a launcher)."""
    return int(os.environ.get("LOCAL_RANK", "0") or 0)


def world_size() -> int:
    """Processes taking part in training (1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def is_main_process() -> bool:
    """The one process that writes events, checkpoints and the final adapter."""
    return rank() == 0


def writes_status() -> bool:
    """Whether this process keeps this machine's `status.json` (each machine's local rank 0)."""
    return local_rank() == 0


def device_map_for_rank(cuda: bool) -> dict[str, Any] | None:
    """Where this process puts the model: its own GPU under DDP, else left to the loader."""
    if not cuda or world_size() == 1:
        return None
    return {"": local_rank()}


def trainer_arguments(cfg: Any, *, cuda: bool, layer_classes: list[str] | None = None) -> dict[str, Any]:
    """Extra `TrainingArguments` for a distributed run ({} for one process).

    DDP over NCCL on GPUs and gloo on CPU. `find_unused_parameters` stays off: frozen base
    weights are excluded from DDP's buckets already, and the search costs a pass per step
    (it also breaks gradient checkpointing). FSDP (full fine-tuning only) shards each
    decoder layer (`layer_classes`, e.g. ["LlamaDecoderLayer"]). Apply these last: they
    override `gradient_checkpointing` under FSDP.
    """
    if world_size() == 1:
        return {}
    args: dict[str, Any] = {"ddp_backend": "nccl" if cuda else "gloo", "ddp_find_unused_parameters": False}
    strategy = getattr(getattr(cfg, "distributed", None), "strategy", "ddp")
    if strategy == "fsdp" and getattr(cfg, "method", "lora") == "full":
        fsdp_config: dict[str, Any] = {"version": 2, "auto_wrap_policy": "TRANSFORMER_BASED_WRAP"}
        if layer_classes:
            fsdp_config["transformer_layer_cls_to_wrap"] = list(layer_classes)
        if getattr(getattr(cfg, "training", None), "gradient_checkpointing", False):
            # FSDP checkpoints activations itself; transformers refuses both at once.
            fsdp_config["activation_checkpointing"] = True
            args["gradient_checkpointing"] = False
        args.update(fsdp="full_shard auto_wrap", fsdp_config=fsdp_config)
    return args


def decoder_layer_classes(model: Any) -> list[str]:
    """Class names of the repeated transformer blocks of `model` (what FSDP wraps one by one)."""
    names = getattr(model, "_no_split_modules", None) or []
    return [n for n in names if isinstance(n, str)]


def any_rank(flag: bool) -> bool:
    """True on every process when `flag` is true on any of them (a stop seen by one rank stops all).

    Ranks read `control.json` at slightly different moments; a stop taken by one rank
    alone would leave the others waiting in the next gradient all-reduce forever.
    """
    if world_size() == 1:
        return flag
    import torch
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        return flag
    on_gpu = dist.get_backend() == "nccl"
    value = torch.tensor([1 if flag else 0], device=f"cuda:{torch.cuda.current_device()}" if on_gpu else "cpu")
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def gpu_count_problem(plan: LaunchPlan, available: int) -> tuple[str, str] | None:
    """(severity, message) when `plan.gpus` does not match the GPUs of this machine, else None."""
    if not plan.distributed or plan.gpus == 1:
        return None
    if available == 0:
        return ("warning", f"no NVIDIA GPU here: {plan.gpus} processes will train on the CPU over gloo "
                           "(slow; useful to test a multi-GPU config).")
    if plan.gpus > available:
        return ("error", f"{plan.gpus} GPUs asked for but CUDA sees {available} here (CUDA_VISIBLE_DEVICES and MIG "
                         f"slices counted). Use --gpus {available} (or set distributed.gpus), widen "
                         "CUDA_VISIBLE_DEVICES, or run on a machine with more GPUs.")
    return None


class SilentEvents:
    """The event writer of ranks other than 0: events are written once, by rank 0."""

    def write(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {"kind": kind, **fields}

    def close(self) -> None:
        pass


def status_keeper_for_rank(run_dir: Path, status: Any) -> Any:
    """The `StatusKeeper` of rank 0; on other ranks one that keeps the status in memory only."""
    from tui_tuner.rundir.status import StatusKeeper

    return StatusKeeper(run_dir, status, persist=is_main_process())
