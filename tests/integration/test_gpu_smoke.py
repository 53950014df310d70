"""`bench/gpu_smoke.sh --cpu` runs every path of the GPU smoke test on the CPU, so the script does not rot.

The GPU-only lines (torch CUDA, Unsloth) must say SKIP with their reason; the training,
chat, export and all-reduce paths must PASS through the product's own code.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow

STEPS = ["nvml", "torch-cuda", "qlora-bf16", "lora-bf16-weights", "fit-vs-peak", "chat-base-tuned",
         "merged-export-chat", "gguf-export", "unsloth", "all-reduce", "gpu-resolution"]


def test_cpu_dry_run_passes_every_path_it_can():
    env = {**os.environ, "PYTHON": sys.executable, "SMOKE_LIMIT_S": "1500"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    out = subprocess.run(["bash", "bench/gpu_smoke.sh", "--cpu", "--skip", "gpu-resolution"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=1800)
    lines = {line.split()[1]: line.split()[0] for line in out.stdout.splitlines()
             if line.split() and line.split()[0] in ("PASS", "FAIL", "SKIP")}
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    assert list(lines) == STEPS  # one line per path, in order
    for step in ("nvml", "qlora-bf16", "lora-bf16-weights", "fit-vs-peak", "chat-base-tuned",
                 "merged-export-chat", "all-reduce"):
        assert lines[step] == "PASS", step
    assert lines["torch-cuda"] == lines["unsloth"] == lines["gpu-resolution"] == "SKIP"
    assert lines["gguf-export"] in ("PASS", "SKIP")  # SKIP only when llama.cpp's converter is not cached


def test_unknown_path_is_refused_with_the_list():
    out = subprocess.run([sys.executable, "bench/gpu_smoke.py", "--skip", "nccl"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2 and "all-reduce" in out.stderr
