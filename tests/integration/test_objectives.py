"""DPO, ORPO, KTO, reward models and GRPO train through `tui-tuner train` on the demo model.

Each objective trains a few steps in a real worker and writes its own metrics to events;
DPO memorises 16 preference pairs (accuracy >= 0.9), GRPO's mean reward rises on a reward a
tiny model can learn (short answers), every objective resumes after the worker is killed
with SIGKILL, and a reward function that raises fails the run with its traceback and sample.

    python -m pytest -q tests/integration/test_objectives.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tui_tuner.rundir.events import read_events
from tui_tuner.rundir.runs import list_runs

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]

BASE = {
    "model": {"name_or_path": "tui-tuner/demo-tiny-llama", "dtype": "float32", "max_seq_length": 128},
    "method": "lora",
    "lora": {"r": 16, "alpha": 32, "dropout": 0.0},
    "training": {"max_steps": 2, "batch_size": 4, "grad_accumulation": 1, "learning_rate": 3e-3,
                 "scheduler": "constant", "warmup_ratio": 0.0, "gradient_checkpointing": False,
                 "logging_steps": 1, "save_steps": 1, "seed": 42},
    "output": {"runs_dir": "runs"},
    "backend": "transformers",
}


@pytest.fixture(scope="module")
def project(tmp_path_factory, demo_model_dir) -> Path:
    root = tmp_path_factory.mktemp("objectives")
    shutil.copytree(REPO / "data", root / "data")
    (root / "configs").mkdir()
    (root / "rewards.py").write_text(
        "def broken(prompts, completions, **kwargs):\n"
        "    raise ValueError('no answer column here')\n")
    return root


def write_config(project: Path, name: str, objective: str, train: str, **sections) -> str:
    import copy

    cfg = copy.deepcopy(BASE)
    cfg["objective"] = objective
    cfg["data"] = {"train": train}
    cfg["output"]["run_name"] = name
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key].update(value)
        else:
            cfg[key] = value
    path = project / "configs" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return f"configs/{name}.yaml"


def cli(project: Path, *args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1", "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "tui_tuner", *args], cwd=project, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def the_run(project: Path, name: str):
    runs = [r for r in list_runs(project / "runs") if r.name.startswith(name + "-")]
    assert len(runs) == 1, runs
    return runs[0]


def logs(run) -> list[dict]:
    return [e for e in read_events(run.events_path)[0] if e.get("kind") == "log"]


def train_ok(project: Path, config: str, name: str, env: dict | None = None):
    proc = cli(project, "train", config, env=env)
    run = the_run(project, name)
    assert proc.returncode == 0 and run.status().state == "finished", proc.stdout + proc.stderr + "\n".join(run.log_tail(40))
    return run


def test_dpo_memorises_16_pairs(project):
    config = write_config(project, "dpo-learn", "dpo", "data/preference_sample.jsonl",
                          training={"max_steps": 4, "batch_size": 16, "save_steps": 100}, dpo={"beta": 0.1})
    run = train_ok(project, config, "dpo-learn")
    points = logs(run)
    acc = [e["rewards/accuracies"] for e in points]
    assert acc[0] < 0.9 <= acc[-1], acc  # step 1: the policy still equals the reference
    assert points[-1]["rewards/margins"] > points[0]["rewards/margins"]
    assert {"rewards/chosen", "rewards/rejected"} <= set(points[-1])
    meta = json.loads((run.adapter_dir / "tui_tuner.json").read_text())
    assert meta["objective"] == "dpo"


def test_grpo_from_an_sft_adapter_learns_shorter_answers(project, memorised_run):
    # Chaining: GRPO starts from an SFT adapter (the memorised run), whose answers end on their own;
    # the `short` reward (1 for an empty answer, 0 at 40 characters) is then learnable in a few steps.
    # The adapter also trains a full lm_head copy: Adam's first steps move every weight by about the
    # learning rate whatever the gradient's size, so at 5e-3 (even 1e-3 for some seeds) one update
    # flattens the memorised model into 24-token gibberish (reward 0). 5e-4 keeps it and still learns.
    from tests.infer_fixtures import MEMORISED, SYSTEM

    prompts = project / "data" / "memorised_prompts.jsonl"
    prompts.write_text("".join(json.dumps({"system": SYSTEM, "prompt": q, "answer": a}) + "\n"
                               for q, a in MEMORISED * 4))
    config = write_config(project, "grpo-learn", "grpo", "data/memorised_prompts.jsonl",
                          init_adapter=str(memorised_run),
                          training={"max_steps": 10, "batch_size": 8, "learning_rate": 5e-4, "save_steps": 100},
                          grpo={"num_generations": 8, "max_completion_length": 24, "temperature": 1.0,
                                "rewards": [{"function": "short", "target_chars": 40}], "log_completions": 2})
    run = train_ok(project, config, "grpo-learn")
    events = read_events(run.events_path)[0]
    assert [e["path"] for e in events if e.get("kind") == "init_adapter"] == [str(memorised_run / "adapter")]
    points = logs(run)
    rewards = [e["reward"] for e in points]
    assert sum(rewards[-3:]) / 3 > sum(rewards[:3]) / 3 + 0.1, rewards
    assert {"rewards/short/mean", "reward_std", "completions/mean_length"} <= set(points[-1])
    samples = [e for e in events if e.get("kind") == "completions"]
    assert samples and len(samples[-1]["samples"]) == 2
    assert set(samples[-1]["samples"][0]["rewards"]) == {"short"}
    meta = json.loads((run.adapter_dir / "tui_tuner.json").read_text())
    assert meta["objective"] == "grpo" and meta["init_adapter"] == str(memorised_run / "adapter")


@pytest.mark.parametrize("objective, data, extra, metric", [
    ("dpo", "data/preference_sample.jsonl", {}, "rewards/margins"),
    ("orpo", "data/preference_sample.jsonl", {}, "rewards/margins"),
    ("kto", "data/preference_sample.jsonl", {}, "kl"),
    ("reward", "data/preference_sample.jsonl", {}, "accuracy"),
    ("grpo", "data/math_prompts.jsonl", {"grpo": {"num_generations": 4, "max_completion_length": 8,
                                                  "rewards": ["format", "numeric_match"]}}, "rewards/format/mean"),
])
def test_killed_with_sigkill_then_resumes(project, objective, data, extra, metric):
    # Killed at step 2, after the step-1 checkpoint; `runs resume` continues from it. Every step
    # then appears once in the run's history (the killed attempt's step 2, if it was logged, is
    # superseded by the resume event) and each carries the objective's own metric.
    from tui_tuner.rundir.events import RunHistory

    name = f"{objective}-kill"
    config = write_config(project, name, objective, data, training={"max_steps": 3}, **extra)
    proc = cli(project, "train", config, env={"TUI_TUNER_FAULT": "sigkill@2"})
    run = the_run(project, name)
    st = run.status()
    assert st.state == "crashed", (st.state, proc.stdout + proc.stderr)
    resumed = cli(project, "runs", "resume", run.name, "--runs-dir", "runs")
    st = run.status()
    assert st.state == "finished" and st.step == 3, resumed.stdout + resumed.stderr + "\n".join(run.log_tail(30))
    events = read_events(run.events_path)[0]
    assert [e["from_step"] for e in events if e.get("kind") == "resume"] == [1]
    history = RunHistory()
    history.add(events)
    assert [e["step"] for e in history.logs] == [1, 2, 3]
    assert all(metric in e for e in history.logs), [sorted(e) for e in history.logs]
    assert (run.adapter_dir / "adapter_config.json").is_file()


def test_reward_function_that_raises_fails_the_run_with_traceback_and_sample(project):
    config = write_config(project, "grpo-broken", "grpo", "data/math_prompts.jsonl",
                          grpo={"num_generations": 4, "max_completion_length": 4, "rewards": ["rewards.py:broken"]})
    proc = cli(project, "train", config)
    run = the_run(project, "grpo-broken")
    st = run.status()
    assert proc.returncode != 0 and st.state == "failed"
    assert "reward function `broken` raised ValueError: no answer column here" in st.error
    assert "sample:" in st.error and "What is" in st.error and "Traceback" in st.error
    assert "Fix `broken`" in st.hint
