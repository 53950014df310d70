"""`train --slurm`: the sbatch script for a run, submitting it, and running it on two "nodes".

SLURM itself is the boundary: `sbatch`, `srun` and `scontrol` are small stand-ins on PATH
(srun runs the command once per node of the allocation with SLURM_NODEID set, as
`srun --ntasks-per-node=1` does). The generated script, the supervisor, torchrun's c10d
rendezvous across the two node processes and the training run over gloo are all real.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_distributed import CONFIG, REPO
from tui_tuner.rundir.runs import RunDir, list_runs, queue_ready

pytestmark = pytest.mark.slow

FAKE_SRUN = """#!/usr/bin/env bash
while [[ $# -gt 0 && $1 == --* ]]; do shift; done
pids=()
for ((i = 0; i < ${SLURM_NNODES:-1}; i++)); do SLURM_NODEID=$i "$@" & pids+=($!); done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=$?; done
exit $rc
"""
FAKE_SCONTROL = """#!/usr/bin/env bash
echo "$3" | tr ',' '\\n'
"""
FAKE_SBATCH = """#!/usr/bin/env bash
echo "$@" > "$(dirname "$0")/sbatch.args"
echo "4242;cluster"
"""


def _tool(folder: Path, name: str, text: str) -> None:
    path = folder / name
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def cluster(tmp_path, demo_model_dir):
    """A project with the demo config and fake SLURM tools first on PATH."""
    (tmp_path / "data").mkdir()
    row = {"instruction": "What is Bramble?", "output": "Bramble is a small garden robot."}
    (tmp_path / "data" / "same.jsonl").write_text((json.dumps(row) + "\n") * 16)
    (tmp_path / "run.yaml").write_text(CONFIG)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL), ("sbatch", FAKE_SBATCH)):
        _tool(bin_dir, name, text)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "NO_COLOR": "1", "COLUMNS": "200",
           "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return tmp_path, env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_slurm_script_is_written_submitted_and_never_started_locally(cluster):
    project, env = cluster
    out = subprocess.run([sys.executable, "-m", "tui_tuner", "train", "run.yaml", "--name", "sl", "--gpus", "4",
                          "--nnodes", "2", "--slurm", "--submit", "--slurm-time", "02:00:00"],
                         cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    (run,) = list_runs(project / "runs")
    script = (run.path / "sbatch.sh").read_text()
    for line in ("#SBATCH --nodes=2", "#SBATCH --gpus-per-node=4", "#SBATCH --time=02:00:00",
                 f"#SBATCH --output={run.path.resolve()}/slurm-%j.out", "scontrol show hostnames"):
        assert line in script, line
    assert "--nproc-per-node 4" in script and "--rdzv-backend c10d" in script
    assert (project / "bin" / "sbatch.args").read_text().split() == ["--parsable", str(run.path / "sbatch.sh")]
    st = run.status()
    assert st.state == "queued" and st.extra["slurm_job_id"] == "4242" and "job 4242" in out.stdout
    assert not queue_ready(run, [run])  # `runs ls` and the TUI leave it to SLURM


def test_submit_without_sbatch_says_where_to_submit(cluster):
    project, env = cluster
    (project / "bin" / "sbatch").unlink()
    env["PATH"] = f"{project / 'bin'}{os.pathsep}/usr/bin:/bin"
    out = subprocess.run([sys.executable, "-m", "tui_tuner", "train", "run.yaml", "--slurm", "--submit"],
                         cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "sbatch is not on PATH" in out.stderr and "login node" in out.stderr


def test_two_node_job_trains_over_gloo_and_the_run_folder_reads_as_usual(cluster):
    project, env = cluster
    out = subprocess.run([sys.executable, "-m", "tui_tuner", "train", "run.yaml", "--name", "two", "--gpus", "1",
                          "--nnodes", "2", "--slurm"], cwd=project, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    (run,) = list_runs(project / "runs")
    job_env = {**env, "SLURM_NNODES": "2", "SLURM_JOB_NODELIST": "127.0.0.1,127.0.0.1", "SLURM_JOB_ID": "77",
               "TUI_TUNER_RDZV_PORT": str(_free_port())}
    job = subprocess.run(["bash", str(run.path / "sbatch.sh")], cwd=project, env=job_env, capture_output=True,
                         text=True, timeout=900)
    assert job.returncode == 0, job.stdout + job.stderr + "\n".join(run.log_tail(40))
    st = RunDir(run.path).status()
    assert st.state == "finished" and st.step == 3, (st.error, run.log_tail(40))
    events = [json.loads(line) for line in run.events_path.read_text().splitlines() if line.strip()]
    assert [e["step"] for e in events if e["kind"] == "log"] == [1, 2, 3]  # written once, by global rank 0
    assert (run.adapter_dir / "adapter_config.json").is_file()
    attach = subprocess.run([sys.executable, "-m", "tui_tuner", "runs", "show", run.name], cwd=project, env=env,
                            capture_output=True, text=True, timeout=120)
    assert attach.returncode == 0 and "finished" in attach.stdout
