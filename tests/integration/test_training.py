"""The training engine end to end on CPU with the tiny demo model: real worker processes, real files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tui_tuner.rundir.events import load_history, read_events
from tui_tuner.rundir.runs import RunDir, create_run, find_run, start_worker
from tui_tuner.train.resume import resume_run
from tui_tuner.rundir.status import OOM_HINT

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # each trains the demo model in a real worker process


def _steps(run: RunDir) -> list[int]:
    return [s for s, _ in load_history(run.events_path).losses]


def test_quickstart_finishes_and_loss_decreases(finished_run):
    st = finished_run.status()
    assert st.state == "finished" and st.step == st.max_steps == 20 and st.exit_code == 0
    assert st.backend == "transformers" and st.backend_reason
    assert st.extra["precision"] == "fp32" and st.extra["host"]  # the autocast the CPU trainer really ran
    hist = load_history(finished_run.events_path)
    losses = [loss for _, loss in hist.losses]
    assert _steps(finished_run) == list(range(1, 21))
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.1
    assert [e["step"] for e in hist.evals] == [10, 20]
    assert [p.name for p in finished_run.checkpoints()] == ["checkpoint-10", "checkpoint-20"]
    adapter = finished_run.adapter_dir
    for name in ("adapter_config.json", "adapter_model.safetensors", "chat_template.jinja", "tokenizer_config.json"):
        assert (adapter / name).is_file(), name
    assert "<|im_start|>" in (adapter / "chat_template.jinja").read_text()
    # the preflight probe (forced on CPU) measured a real peak and recorded it in both places
    assert st.probe["device"] == "cpu" and st.probe["measured_peak_bytes"] > 10 * 2**20 and st.probe["fits"]
    assert hist.probe["measured_peak_bytes"] == st.probe["measured_peak_bytes"]


def test_adapter_loads_with_plain_peft_and_matches_the_trained_model(demo_model_dir, make_run_config, tmp_path):
    """Train in-process, then reload the saved adapter with nothing but transformers + peft."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tui_tuner.rundir.events import EventWriter
    from tui_tuner.rundir.status import RunStatus, StatusKeeper
    from tui_tuner.train.worker import train

    cfg = make_run_config(tmp_path, **{"training.max_steps": 4, "training.batch_size": 2, "training.eval_steps": "null"})
    run = create_run(cfg, REPO)
    with EventWriter(run.events_path) as events:
        result = train(run, run.config(), "transformers", "cpu", StatusKeeper(run.path, RunStatus()), events, None)
    assert result.state == "finished"
    tok = AutoTokenizer.from_pretrained(run.adapter_dir)
    ids = tok.apply_chat_template([{"role": "user", "content": "What does Bramble water?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    trained = result.trainer.model.eval()
    with torch.no_grad():
        expected = trained(input_ids=ids).logits
    base = AutoModelForCausalLM.from_pretrained(str(demo_model_dir), dtype=torch.float32)
    reloaded = PeftModel.from_pretrained(base, str(run.adapter_dir)).eval()
    with torch.no_grad():
        got = reloaded(input_ids=ids).logits
    assert torch.allclose(expected, got, atol=1e-5)
    with torch.no_grad():
        plain = AutoModelForCausalLM.from_pretrained(str(demo_model_dir), dtype=torch.float32)(input_ids=ids).logits
    assert not torch.allclose(plain, got, atol=1e-3)  # the adapter changed something


def test_qlora_on_cpu_then_full_finetune_from_the_queue(make_run_config, wait_for_run, tmp_path):
    """QLoRA (bitsandbytes NF4 on CPU) trains; a full fine-tune queued after it starts by itself."""
    qcfg = make_run_config(tmp_path, **{"method": "qlora", "training.max_steps": 3, "training.batch_size": 2,
                                        "training.eval_steps": "null", "quantization.compute_dtype": "float32"})
    fcfg = make_run_config(tmp_path, **{"method": "full", "training.max_steps": 3, "training.batch_size": 2,
                                        "training.learning_rate": 5e-5, "training.eval_steps": "null"})
    qlora = create_run(qcfg, REPO, "qlora")
    full = create_run(fcfg, REPO, "full", queued_after=qlora)
    start_worker(qlora)
    assert wait_for_run(qlora, ("finished",)).step == 3
    assert (qlora.adapter_dir / "adapter_model.safetensors").is_file()
    assert wait_for_run(full, ("finished",)).step == 3
    assert (full.adapter_dir / "model.safetensors").is_file()
    assert _steps(qlora) == [1, 2, 3] and _steps(full) == [1, 2, 3]


@pytest.mark.parametrize("method", ["lora", "qlora", "full"])
def test_resume_after_a_crash_continues_from_the_checkpoint(method, make_run_config, wait_for_run, tmp_path, monkeypatch):
    """Killed at step 6 with checkpoints at 2 and 4: resume restarts at 5 with the same weights and data.

    The step-5 loss before the crash and after the resume must agree: that proves the adapter /
    weights, optimizer, scheduler and data position were all restored (HF Trainer + PEFT resume
    has had bugs where the adapter silently was not loaded).
    """
    overrides = {"method": method, "training.max_steps": 8, "training.save_steps": 2, "training.batch_size": 2,
                 "training.eval_steps": "null", "training.save_total_limit": 5}
    if method == "full":
        overrides["training.learning_rate"] = 1e-4
    run = create_run(make_run_config(tmp_path, **overrides), REPO, method)
    monkeypatch.setenv("TUI_TUNER_FAULT", "sigkill@6")
    start_worker(run)
    st = wait_for_run(run, ("crashed",))
    assert "SIGKILL" in st.error
    before = {e["step"]: e["loss"] for e in read_events(run.events_path, 0)[0] if e.get("kind") == "log"}
    assert sorted(before) == [1, 2, 3, 4, 5]
    assert run.latest_checkpoint().name == "checkpoint-4"
    monkeypatch.delenv("TUI_TUNER_FAULT")
    resume_run(run, detach=False)
    st = wait_for_run(run, ("finished",))
    assert st.step == 8 and st.resumed_from_step == 4 and st.attempts == 2
    events = read_events(run.events_path, 0)[0]
    resume = [e for e in events if e["kind"] == "resume"]
    assert resume and resume[0]["from_step"] == 4
    after = [e for e in events[events.index(resume[0]):] if e["kind"] == "log"]
    assert after[0]["step"] == 5  # not from 0
    assert after[0]["loss"] == pytest.approx(before[5], rel=1e-3, abs=1e-3)
    assert _steps(run) == list(range(1, 9))  # no duplicated or lost steps once the resume is applied
    prepared = [e["what"] for e in events if e["kind"] == "prepare"]
    resumed = [e["what"] for e in events[events.index(resume[0]):] if e["kind"] == "prepare"]
    # The first attempt tokenized the data or found it cached (another test may have tokenized the same
    # file); either way it is in the cache now, so the resume reads it instead of tokenizing again.
    assert any(w == "tokenizing" or "from the cache" in w for w in prepared)
    assert "tokenizing" not in resumed and any("from the cache" in w for w in resumed)


def test_stop_request_ends_stopped_with_a_checkpoint(make_run_config, wait_for_run, tmp_path):
    run = create_run(make_run_config(tmp_path, **{"training.max_steps": 500, "training.save_steps": 1000,
                                                  "training.batch_size": 2, "training.eval_steps": "null"}), REPO)
    start_worker(run)
    wait_for_run(run, ("running",), step=2)
    assert "stop requested" in run.request_stop()
    st = wait_for_run(run, ("stopped",))
    ckpt = run.latest_checkpoint()
    assert ckpt is not None and ckpt.name == f"checkpoint-{st.step}" and st.step < 500
    assert (run.adapter_dir / "adapter_model.safetensors").is_file()
    assert any(e["kind"] == "stop_requested" for e in read_events(run.events_path, 0)[0])


def test_kill_9_is_crashed_and_resume_reaches_max_steps(make_run_config, wait_for_run, tmp_path):
    # 36 steps: long enough that the kill lands mid-run on a quiet machine too.
    run = create_run(make_run_config(tmp_path, **{"training.max_steps": 36, "training.save_steps": 3,
                                                  "training.batch_size": 2, "training.eval_steps": "null"}), REPO)
    start_worker(run)
    st = wait_for_run(run, ("running",), step=4)
    os.killpg(os.getpgid(st.pid), signal.SIGKILL)  # worker and supervisor: nobody records the end
    st = wait_for_run(run, ("crashed",))
    assert "without writing a final state" in st.error
    ckpt_step = int(run.latest_checkpoint().name.split("-")[1])
    assert ckpt_step >= 3
    resume_run(run, detach=False)
    st = wait_for_run(run, ("finished",))
    assert st.step == 36 and st.resumed_from_step == ckpt_step
    assert _steps(run) == list(range(1, 37))


def test_forced_out_of_memory_ends_failed_with_the_hint(make_run_config, wait_for_run, tmp_path, monkeypatch):
    run = create_run(make_run_config(tmp_path, **{"training.max_steps": 10, "training.batch_size": 2,
                                                  "training.eval_steps": "null"}), REPO)
    monkeypatch.setenv("TUI_TUNER_FAULT", "oom@2")
    start_worker(run)
    st = wait_for_run(run, ("failed",))
    assert st.error.startswith("out of memory") and st.hint == OOM_HINT and st.exit_code == 1
    # The final state is written first; the traceback and the closing `end` event follow it.
    assert wait_until_true(lambda: "OutOfMemoryError" in run.log_path.read_text()
                           and read_events(run.events_path, 0)[0][-1]["kind"] == "end")


def _write_config(tmp_path: Path, cfg) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(cfg.to_yaml())
    return path


def test_attached_train_survives_its_parent_being_killed(make_run_config, wait_for_run, tmp_path):
    runs = tmp_path / "runs"
    # Enough steps that the CLI is killed mid-run even on a quiet machine (a step takes ~35 ms there).
    cfg = make_run_config(runs, **{"training.max_steps": 120, "training.batch_size": 2, "training.eval_steps": "null"})
    cli = subprocess.Popen([sys.executable, "-m", "tui_tuner", "train", str(_write_config(tmp_path, cfg))],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and not list(runs.glob("*/status.json")):
        time.sleep(0.2)
    run = find_run(runs, "quickstart")
    wait_for_run(run, ("running",), step=1)
    cli.kill()
    cli.wait()
    killed_at = run.status().step
    st = wait_for_run(run, ("finished",))
    assert killed_at < 120, "the run ended before its parent was killed; nothing was proved"
    assert st.step == 120


def test_train_refuses_bad_config_and_leaves_no_run(tmp_path, make_run_config):
    cfg = make_run_config(tmp_path / "runs")
    text = cfg.to_yaml().replace("  r: 16", "  r: -3")
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    out = subprocess.run([sys.executable, "-m", "tui_tuner", "train", str(path)], capture_output=True, text=True)
    assert out.returncode == 2
    line = text.splitlines().index("  r: -3") + 1
    assert f"bad.yaml:{line}" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_train_refuses_bad_data_and_leaves_no_run(tmp_path, make_run_config):
    data = tmp_path / "broken.jsonl"
    data.write_text('{"instruction": "hi", "output": "hello"}\n{"instruction": "x", "output": \n')
    cfg = make_run_config(tmp_path / "runs", **{"data.train": str(data), "data.eval": "null",
                                                   "training.eval_steps": "null"})
    out = subprocess.run([sys.executable, "-m", "tui_tuner", "train", str(_write_config(tmp_path, cfg))],
                         capture_output=True, text=True)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "broken.jsonl:2" in out.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_detach_prints_how_to_reattach_and_runs_commands(make_run_config, wait_for_run, tmp_path):
    runs = tmp_path / "runs"
    cfg = make_run_config(runs, **{"training.max_steps": 2, "training.batch_size": 2, "training.eval_steps": "null"})
    out = subprocess.run([sys.executable, "-m", "tui_tuner", "train", str(_write_config(tmp_path, cfg)), "--detach",
                          "--name", "detached"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "tui-tuner runs attach detached-" in out.stdout
    run = find_run(runs, "detached")
    wait_for_run(run, ("finished",))
    ls = subprocess.run([sys.executable, "-m", "tui_tuner", "runs", "ls", "--runs-dir", str(runs), "--json"],
                        capture_output=True, text=True)
    rows = json.loads(ls.stdout)
    assert rows[0]["name"] == run.name and rows[0]["state"] == "finished" and rows[0]["step"] == 2
    show = subprocess.run([sys.executable, "-m", "tui_tuner", "runs", "show", "det", "--runs-dir", str(runs)],
                          capture_output=True, text=True)
    assert show.returncode == 0 and "training.max_steps = 2" in show.stdout and "adapter/" in show.stdout
    attach = subprocess.run([sys.executable, "-m", "tui_tuner", "runs", "attach", "det", "--runs-dir", str(runs)],
                            capture_output=True, text=True, timeout=600)
    assert attach.returncode == 0 and "finished at step 2" in attach.stdout
    resume = subprocess.run([sys.executable, "-m", "tui_tuner", "runs", "resume", "det", "--runs-dir", str(runs)],
                            capture_output=True, text=True)
    assert resume.returncode == 2 and "nothing to resume" in resume.stderr
    rm = subprocess.run([sys.executable, "-m", "tui_tuner", "runs", "rm", "det", "--yes", "--runs-dir", str(runs)],
                        capture_output=True, text=True)
    assert rm.returncode == 0 and not run.path.exists()


def wait_until_true(predicate, timeout: float = 60.0) -> bool:
    """Poll `predicate` until it holds (True) or `timeout` passes (False)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return bool(predicate())
