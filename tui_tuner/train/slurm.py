"""Running a run under SLURM: the sbatch script for a run directory, and submitting it.

    tui-tuner train configs/run.yaml --gpus 4 --slurm            # writes RUN/sbatch.sh
    tui-tuner train configs/run.yaml --gpus 8 --nnodes 2 --slurm --submit --slurm-time 12:00:00

The run directory is created as usual (queued), on a disk the compute nodes share; the
script runs the same supervisor (`python -m tui_tuner.train RUN_DIR`) on the first node and,
with several nodes, torchrun workers joining it on the others, with the rendezvous at the
first node of the allocation. Status, events, stop requests (`control.json`), `runs attach`
and `runs resume` work as for a local run; a queued SLURM run is never started locally.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tui_tuner.train.distributed import LaunchPlan, worker_argv

SCRIPT = "sbatch.sh"
RDZV_PORT = 29500


class SlurmError(RuntimeError):
    """sbatch is missing or refused the job; the message says what to do."""


def sbatch_script(run_dir: Path, plan: LaunchPlan, *, project_dir: Path, python: str | None = None,
                  time_limit: str | None = None, partition: str | None = None,
                  extra_sbatch: list[str] | None = None) -> str:
    """The sbatch script that trains `run_dir` with `plan` (one task per node, `plan.gpus` GPUs each)."""
    python = python or sys.executable
    run_dir = run_dir.resolve()
    lines = ["#!/bin/bash", f"#SBATCH --job-name={run_dir.name[:64]}", f"#SBATCH --nodes={plan.nnodes}",
             "#SBATCH --ntasks-per-node=1", f"#SBATCH --gpus-per-node={plan.gpus}",
             f"#SBATCH --output={run_dir}/slurm-%j.out"]
    if time_limit:
        lines.append(f"#SBATCH --time={time_limit}")
    if partition:
        lines.append(f"#SBATCH --partition={partition}")
    lines += [f"#SBATCH {opt}" for opt in extra_sbatch or []]
    supervisor = shlex.join([python, "-m", "tui_tuner.train", str(run_dir)])
    lines += [
        f"# Written by `tui-tuner train --slurm` for {run_dir.name}; submit with: sbatch {run_dir / SCRIPT}",
        "# Follow it from any machine that sees the run folder: tui-tuner runs attach " + run_dir.name,
        "set -euo pipefail",
        f"cd {shlex.quote(str(project_dir.resolve()))}",
        "export CUDA_DEVICE_ORDER=PCI_BUS_ID",
    ]
    if plan.nnodes == 1:
        # The supervisor starts the worker itself (through torchrun --standalone for several GPUs).
        lines.append(f"srun --ntasks=1 {supervisor}")
    else:
        node_plan = LaunchPlan(gpus=plan.gpus, strategy=plan.strategy, nnodes=plan.nnodes,
                               rdzv_endpoint="HEAD:PORT", rdzv_id="JOB")
        joiner = shlex.join(worker_argv(run_dir, node_plan, python=python))
        joiner = joiner.replace("HEAD:PORT", '"$TUI_TUNER_RDZV_ENDPOINT"').replace(" JOB ", ' "$SLURM_JOB_ID" ')
        lines += [
            'HEAD_NODE=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
            f'export TUI_TUNER_RDZV_ENDPOINT="$HEAD_NODE:${{TUI_TUNER_RDZV_PORT:-{RDZV_PORT}}}" '
            'TUI_TUNER_RDZV_ID="$SLURM_JOB_ID"',
            "# Node 0 runs the supervisor (status, crash records); the others join its rendezvous.",
            "srun --ntasks-per-node=1 bash -c " + shlex.quote(
                f'if [ "$SLURM_NODEID" = 0 ]; then exec {supervisor}; else exec {joiner}; fi'),
        ]
    return "\n".join(lines) + "\n"


def write_script(run_dir: Path, plan: LaunchPlan, **kwargs: Any) -> Path:
    """Write `RUN_DIR/sbatch.sh` and mark the run as scheduled by SLURM (so it is never started locally)."""
    import json

    from tui_tuner.rundir.runs import META_FILE
    from tui_tuner.rundir.status import atomic_write_text

    path = run_dir / SCRIPT
    atomic_write_text(path, sbatch_script(run_dir, plan, **kwargs))
    path.chmod(0o755)
    meta_path = run_dir / META_FILE
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        meta = {}
    meta["scheduler"] = "slurm"
    atomic_write_text(meta_path, json.dumps(meta, indent=1) + "\n")
    return path


def submit(script: Path) -> str:
    """`sbatch --parsable SCRIPT`; returns the job id."""
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise SlurmError(f"sbatch is not on PATH here: submit {script} from a SLURM login node "
                         f"(`sbatch {script}`).")
    out = subprocess.run([sbatch, "--parsable", str(script)], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise SlurmError(f"sbatch refused the job: {(out.stderr or out.stdout).strip()[:400]}")
    return out.stdout.strip().split(";")[0]
