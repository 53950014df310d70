"""`tui-tuner check`: offline answers from the catalog, bad input, no torch, measured runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tui_tuner.fit.estimate import GIB

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "tui_tuner", *args], capture_output=True, text=True,
                          cwd=cwd or REPO, env=env, timeout=60)


NO_TORCH_SNIPPET = """
import sys
from tui_tuner.cli import main
rc = main(sys.argv[1:])
heavy = sorted(m for m in ("torch", "transformers", "peft", "trl", "bitsandbytes", "unsloth", "datasets", "textual")
               if m in sys.modules)
print("HEAVY=" + ",".join(heavy), file=sys.stderr)
raise SystemExit(rc)
"""


@pytest.mark.parametrize("model", ["TinyLlama/TinyLlama-1.1B-Chat-v1.0", "meta-llama/Llama-3.1-8B"])
def test_check_answers_offline_from_the_catalog_without_heavy_imports(model, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", NO_TORCH_SNIPPET, "check", model, "--vram", "16", "--json"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY=\n" in proc.stderr or proc.stderr.rstrip().endswith("HEAVY="), proc.stderr
    out = json.loads(proc.stdout)
    target = out["targets"][0]
    assert target["model"]["source"] == "catalog"
    assert out["checked_against"]["vram_bytes"] == 16 * GIB
    rec = target["recommendations"]["transformers"]["recommended"]
    assert rec["method"] == ("lora" if "TinyLlama" in model else "qlora")
    assert rec["max_batch_size"] >= 1 and rec["max_seq_len"] >= 128


def test_check_without_argument_reports_hardware_and_presets(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "quickstart.yaml").write_text(
        "model:\n  name_or_path: HuggingFaceTB/SmolLM2-135M\n  max_seq_length: 512\nmethod: lora\n")
    (tmp_path / "configs" / "qlora-8b.yaml").write_text(
        "model:\n  name_or_path: meta-llama/Llama-3.1-8B\nmethod: qlora\ntraining:\n  batch_size: 1\n")
    (tmp_path / "configs" / "broken.yaml").write_text("method: dora\n")
    proc = run_cli("check", "--json", "--gpu", "T4", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert "gpus" in out["hardware"] and "packages" in out["hardware"]
    configs = [Path(t["config"]).name for t in out["targets"]]
    assert configs == ["quickstart.yaml", "qlora-8b.yaml"]  # quickstart first
    assert out["targets"][1]["estimates"][0]["method"] == "qlora"
    assert any("broken.yaml" in p for p in out["problems"])


def test_check_human_output_without_gpu_explains_how_to_pick_one(tmp_path):
    proc = run_cli("check", "HuggingFaceTB/SmolLM2-360M", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    if "No GPU" in proc.stdout:  # on a machine without NVIDIA GPUs
        assert "--vram" in proc.stdout
    assert "Where the memory goes" in proc.stdout


def test_check_a_config_file_with_overrides(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("model:\n  name_or_path: Qwen/Qwen2.5-0.5B\nmethod: lora\n")
    proc = run_cli("check", str(cfg), "--set", "lora.r=64", "--seq-len", "4096", "--json", "--vram", "12")
    assert proc.returncode == 0, proc.stderr
    t = json.loads(proc.stdout)["targets"][0]
    assert t["settings"]["lora_r"] == 64 and t["settings"]["seq_len"] == 4096


@pytest.mark.parametrize("args,words", [
    (["check", "no-such/model-xyz"], "not in the built-in catalog"),
    (["check", "TinyLlama/TinyLlama-1.1B-Chat-v1.0", "--gpu", "voodoo5"], "not a GPU tui-tuner knows"),
    (["check", "TinyLlama/TinyLlama-1.1B-Chat-v1.0", "--vram", "-3"], "give the GPU memory"),
    (["check", "missing.yaml"], "file not found"),
    (["check", "TinyLlama/TinyLlama-1.1B-Chat-v1.0", "--seq-len", "0"], "--seq-len 0: must be at least 1"),
    (["check", "TinyLlama/TinyLlama-1.1B-Chat-v1.0", "--batch", "-1"], "--batch -1: must be at least 1"),
])
def test_bad_input_is_one_clear_error_with_status_2(args, words, tmp_path):
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert words in proc.stderr and "Traceback" not in proc.stderr


def test_list_models_and_gpus():
    models = json.loads(run_cli("check", "--list-models", "--json").stdout)
    assert any(m["name"] == "google/gemma-2-2b" for m in models)
    gpus = json.loads(run_cli("check", "--list-gpus", "--json").stdout)
    assert any(g["name"] == "H100 80GB" for g in gpus)


def _write_run(runs: Path, name: str, *, peak: int | None, model="TinyLlama/TinyLlama-1.1B-Chat-v1.0",
               r=16, status_text: str | None = None) -> Path:
    run = runs / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"model:\n  name_or_path: {model}\nmethod: lora\nlora:\n  r: {r}\n")
    if status_text is not None:
        (run / "status.json").write_text(status_text)
    elif peak is not None:
        import dataclasses

        from tui_tuner.rundir.status import ProbeResult  # the worker's own record of its preflight probe

        probe = ProbeResult(device="cuda", measured_peak_bytes=peak, estimate_bytes=4_000_000_000,
                            optimizer_state_bytes=100 * 1024**2, projected_peak_bytes=peak + 100 * 1024**2,
                            capacity_bytes=24 * GIB, fits=True, seq_len=700, batch_size=2)
        (run / "status.json").write_text(json.dumps({"state": "finished", "backend": "transformers",
                                                     "probe": dataclasses.asdict(probe)}))
    return run


def test_measured_peak_of_a_matching_run_is_shown_beside_the_estimate(tmp_path):
    runs = tmp_path / "runs"
    _write_run(runs, "match-1", peak=4 * GIB)
    _write_run(runs, "other-rank", peak=9 * GIB, r=64)
    _write_run(runs, "other-model", peak=9 * GIB, model="Qwen/Qwen2.5-0.5B")
    _write_run(runs, "torn", peak=None, status_text='{"state": "running", "probe": {"measured_pe')
    _write_run(runs, "no-probe-yet", peak=None, status_text='{"state": "queued"}')
    (runs / "empty-dir").mkdir()
    proc = run_cli("check", "TinyLlama/TinyLlama-1.1B-Chat-v1.0", "--method", "lora", "--backend", "transformers",
                   "--runs-dir", str(runs), "--json")
    assert proc.returncode == 0, proc.stderr
    measured = json.loads(proc.stdout)["targets"][0]["measured"]
    assert [m["run_name"] for m in measured] == ["match-1"]
    m = measured[0]
    assert m["measured_peak_bytes"] == 4 * GIB and m["device"] == "cuda"
    assert m["training_peak_bytes"] == 4 * GIB + 100 * 1024**2
    assert (m["probe_batch_size"], m["probe_seq_len"]) == (2, 700)
    # the estimate is made for the batch the probe ran (2 x 700 tokens), without the CUDA context
    from tui_tuner.fit.estimate import estimate_memory
    from tui_tuner.models.spec import model_spec

    expected = estimate_memory(model_spec("TinyLlama/TinyLlama-1.1B-Chat-v1.0"), "lora", seq_len=700, batch_size=2,
                               on_gpu=False).total_bytes
    assert m["estimate_bytes"] == expected and m["estimate_at_run_bytes"] == 4_000_000_000
    assert m["error"] == pytest.approx(expected / m["training_peak_bytes"] - 1, abs=1e-4)
    human = run_cli("check", "TinyLlama/TinyLlama-1.1B-Chat-v1.0", "--method", "lora", "--backend", "transformers",
                    "--runs-dir", str(runs))
    assert "measured on cuda in run match-1 (batch 2 x 700 tokens)" in human.stdout
    assert "estimator error" in human.stdout


def test_missing_runs_dir_is_not_an_error(tmp_path):
    from tui_tuner.fit.measured import find_measurements

    assert find_measurements(tmp_path / "nope", {"model": "x"}) == []
