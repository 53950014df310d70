"""Hub datasets, offline: a dataset already in the huggingface_hub cache is checked and trained on.

The cache is built here the way `hf download --repo-type dataset org/name` (snapshot_download)
leaves it: `datasets--org--name/refs/main` holding a commit, and the files under
`snapshots/<commit>/`. Every command runs as a real subprocess with HF_HOME pointing at it and
HF_HUB_OFFLINE=1 (no hub is reachable here), so `datasets` and `huggingface_hub` read their
cache locations from the environment as they would on a user's machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMMIT = "3f1c0ffee0d4b5e6a7b8c9d0e1f2a3b4c5d6e7f8"
ROWS = [{"question": f"What is {i} plus {i}?", "answer": f"{2 * i}."} for i in range(40)]
BAD_ROW = 6
"""Row (from 1) whose answer is missing: `datasets` fills the column with null."""


def _snapshot(hub: Path, repo_id: str, files: dict[str, str]) -> Path:
    org, name = repo_id.split("/")
    repo = hub / f"datasets--{org}--{name}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snapshot = repo / "snapshots" / COMMIT
    for rel, text in files.items():
        (snapshot / rel).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / rel).write_text(text, encoding="utf-8")
    return snapshot


@pytest.fixture
def hf_home(tmp_path) -> Path:
    """HF_HOME with `acme/qa` (a bad row included) and `acme/subsets` (two subsets declared in its card)."""
    home = tmp_path / "hf-home"
    rows = [dict(r) for r in ROWS]
    rows[BAD_ROW - 1] = {"question": "What is missing?"}
    _snapshot(home / "hub", "acme/qa", {"data/train.jsonl": "".join(json.dumps(r) + "\n" for r in rows),
                                        "data/test.jsonl": "".join(json.dumps(r) + "\n" for r in ROWS[:4])})
    card = ("---\nconfigs:\n- config_name: short\n  data_files:\n  - split: train\n    path: short/*.jsonl\n"
            "- config_name: long\n  data_files:\n  - split: train\n    path: long/*.jsonl\n---\n# subsets\n")
    _snapshot(home / "hub", "acme/subsets", {
        "README.md": card,
        "short/train.jsonl": "".join(json.dumps({"instruction": f"q{i}", "output": "a"}) + "\n" for i in range(3)),
        "long/train.jsonl": "".join(json.dumps({"instruction": f"q{i}", "output": "a"}) + "\n" for i in range(7)),
    })
    return home


def _cli(args: list[str], cwd: Path, home: Path, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HOME": str(home), "HF_HUB_OFFLINE": "1",
                "NO_COLOR": "1", "COLUMNS": "400", **env}
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_DATASETS_CACHE"):
        full_env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "tui_tuner", *args], cwd=cwd, capture_output=True, text=True,
                          env=full_env, timeout=600)


MAPPED = ["--set", "data.fields.instruction=question", "--set", "data.fields.output=answer"]


def test_data_check_reads_a_cached_hub_dataset_offline_with_row_numbers(tmp_path, hf_home):
    proc = _cli(["data", "check", "acme/qa", *MAPPED, "--json"], tmp_path, hf_home)
    assert "Traceback" not in proc.stderr, proc.stderr
    report = json.loads(proc.stdout)
    file = report["files"][0]
    assert file["file"] == "acme/qa[train]" and file["format"] == "instruction"
    assert file["records"] == 40 and file["examples"] == 39
    [error] = [i for i in file["issues"] if i["severity"] == "error"]
    assert error["row_based"] and error["line"] == BAD_ROW and "output" in error["message"]
    assert proc.returncode == 2  # the bad row is an error, as in a file

    # A split slice reads only those rows; the bad row is outside it.
    proc = _cli(["data", "check", "acme/qa", "--split", "train[:5]", *MAPPED], tmp_path, hf_home)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "dataset acme/qa[train[:5]]: instruction" in proc.stdout and "5 example(s)" in proc.stdout

    # max_samples stops reading once it has enough rows (and says the data was cut).
    proc = _cli(["data", "check", "acme/qa", *MAPPED, "--set", "data.max_samples=3", "--json"], tmp_path, hf_home)
    file = json.loads(proc.stdout)["files"][0]
    assert proc.returncode == 0 and file["examples"] == 3 and file["limited_to"] == 3 and file["records"] == 4

    # One file of the repository by URL: read by the file readers, so issues keep their line numbers.
    proc = _cli(["data", "check", "hf://datasets/acme/qa/data/train.jsonl", *MAPPED], tmp_path, hf_home)
    assert f"hf://datasets/acme/qa/data/train.jsonl:{BAD_ROW}:" in proc.stderr, proc.stderr

    # A subset declared in the dataset card.
    proc = _cli(["data", "check", "acme/subsets", "--subset", "long"], tmp_path, hf_home)
    assert proc.returncode == 0 and "7 example(s)" in proc.stdout, proc.stdout + proc.stderr


def test_a_local_path_of_the_same_name_wins(tmp_path, hf_home):
    local = tmp_path / "acme" / "qa"
    local.parent.mkdir()
    local.write_text(json.dumps({"instruction": "local?", "output": "yes"}) + "\n", encoding="utf-8")
    # `acme/qa` here is a file without a data suffix: read as the local file it is, never as the hub dataset.
    proc = _cli(["data", "check", "acme/qa"], tmp_path, hf_home)
    assert "unsupported file type" in proc.stderr and "acme/qa[train]" not in proc.stdout + proc.stderr


def test_missing_offline_and_bad_choices_say_what_to_do(tmp_path, hf_home):
    proc = _cli(["data", "check", "acme/nothing-here"], tmp_path, hf_home)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "Traceback" not in out
    assert "acme/nothing-here" in out and "not on this machine" in out and "HF_HUB_OFFLINE" in out
    assert str(hf_home / "hub") in out and "tui-tuner data pull acme/nothing-here" in out
    assert "does not exist" not in out and "not found" not in out

    proc = _cli(["data", "check", "acme/subsets", "--subset", "medium"], tmp_path, hf_home)
    assert proc.returncode == 2 and "no subset `medium`" in proc.stderr and "'short'" in proc.stderr

    proc = _cli(["data", "check", "acme/qa", "--split", "validation"], tmp_path, hf_home)
    assert proc.returncode == 2 and "split `validation`" in proc.stderr and "'train'" in proc.stderr

    proc = _cli(["data", "check", "acme/qa", "--split", "train[:5"], tmp_path, hf_home)
    assert proc.returncode == 2 and "data.split" in proc.stderr and "train[:2000]" in proc.stderr

    proc = _cli(["data", "pull", "acme/qa", "--subset", "x"], tmp_path, hf_home)
    assert proc.returncode == 1 and "HF_HUB_OFFLINE" in proc.stderr and str(hf_home / "hub") in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_train_on_a_cached_hub_dataset_offline(tmp_path, hf_home, demo_model_dir):
    """config check reports it, train tokenizes it once (the worker reuses the ids) and finishes."""
    config = {
        "model": {"name_or_path": "tui-tuner/demo-tiny-llama", "max_seq_length": 64},
        "method": "lora", "lora": {"r": 4, "alpha": 8},
        "data": {"train": "acme/qa", "split": "train[10:30]", "eval": "acme/qa",
                 "fields": {"instruction": "question", "output": "answer"}},
        "training": {"max_steps": 2, "batch_size": 2, "grad_accumulation": 1, "save_steps": 100},
        "output": {"runs_dir": "runs"},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    tokenized = Path(os.environ["TUI_TUNER_CACHE"]) / "tokenized"  # the session's, where the demo model is
    before = set(tokenized.iterdir()) if tokenized.is_dir() else set()
    check = _cli(["config", "check", "run.yaml"], tmp_path, hf_home)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "acme/qa[train[10:30]] (data.train): instruction" in check.stdout
    assert "acme/qa[test] (data.eval)" in check.stdout

    proc = _cli(["train", "run.yaml"], tmp_path, hf_home)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [run] = (tmp_path / "runs").iterdir()
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "finished" and status["step"] == 2
    frozen = yaml.safe_load((run / "config.yaml").read_text())["data"]
    assert frozen["train"] == "hf://datasets/acme/qa" and frozen["split"] == "train[10:30]"
    # train's preflight tokenized train and eval; the worker computed the same keys (the datasets'
    # fingerprints are stable across processes) and read them instead of adding entries of its own
    assert len(set(tokenized.iterdir()) - before) == 2
