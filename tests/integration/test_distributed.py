"""Two training processes on CPU (torchrun + gloo) against one: same losses, events written once.

`tui-tuner train --gpus 2` on a machine without GPUs launches two CPU processes over
gloo - the same launch path as on GPUs, with DDP averaging the gradients. Every example
is the same, so one process with batch 2 and two processes with batch 1 see the same
global batch at every step and must report the same loss.

    PYTHONPATH=$PWD python -m pytest -q tests/integration/test_distributed.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tui_tuner.rundir.runs import list_runs

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
STEPS = 3

CONFIG = f"""\
model:
  name_or_path: tui-tuner/demo-tiny-llama
  max_seq_length: 64
method: lora
lora:
  r: 4
  alpha: 8
  dropout: 0.0
data:
  train: data/same.jsonl
training:
  max_steps: {STEPS}
  batch_size: 2
  grad_accumulation: 1
  save_steps: 100
  logging_steps: 1
  warmup_ratio: 0.0
  gradient_checkpointing: false
output:
  runs_dir: runs
"""


def _train(project: Path, name: str, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "tui_tuner", "train", "run.yaml", "--name", name, *extra],
                          cwd=project, env=env, capture_output=True, text=True, timeout=900)


def _events(project: Path, name: str) -> list[dict]:
    (run,) = [r for r in list_runs(project / "runs") if r.name.startswith(name + "-")]
    return [json.loads(line) for line in run.events_path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    (root / "data").mkdir()
    row = {"instruction": "What is Bramble?", "output": "Bramble is a small garden robot."}
    (root / "data" / "same.jsonl").write_text((json.dumps(row) + "\n") * 16)
    (root / "run.yaml").write_text(CONFIG)
    return root


def test_two_cpu_processes_match_one_on_the_same_global_batch(project):
    single = _train(project, "single")
    assert single.returncode == 0, single.stdout + single.stderr
    double = _train(project, "double", "--gpus", "2", "--set", "training.batch_size=1")
    out = double.stdout + double.stderr
    assert double.returncode == 0, out
    assert "Traceback" not in out
    assert "gloo" in out  # told that there is no GPU and the processes train on CPU

    one, two = _events(project, "single"), _events(project, "double")
    logs = [e for e in two if e["kind"] == "log"]
    assert [e["step"] for e in logs] == list(range(1, STEPS + 1))  # rank 0 only: each step once
    assert [e["kind"] for e in two].count("start") == 1
    assert [e["kind"] for e in two].count("adapter") == 1
    loss_one = [e["loss"] for e in one if e["kind"] == "log"]
    loss_two = [e["loss"] for e in logs]
    assert loss_two == pytest.approx(loss_one, rel=1e-5)
    (run,) = [r for r in list_runs(project / "runs") if r.name.startswith("double-")]
    assert run.status().state == "finished"
    assert json.loads((run.path / "launch.json").read_text())["gpus"] == 2
    started = [line for line in run.log_path.read_text().splitlines() if line.startswith("tui-tuner worker") and ": run " in line]
    assert len(started) == 2  # two processes trained (each prints its start to train.log)
    assert (run.adapter_dir / "adapter_config.json").is_file()
