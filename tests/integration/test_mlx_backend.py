"""The MLX backend end to end on the CPU build of MLX: `tui-tuner train` with `backend: mlx` on the demo model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mlx_lm", reason="the MLX backend needs `pip install -e '.[mlx]'` (CI installs it)")

from tui_tuner.rundir.events import load_history, read_events  # noqa: E402
from tui_tuner.rundir.runs import checkpoint_problem, find_run  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _train_cli(tmp_path: Path, cfg, name: str) -> subprocess.CompletedProcess:
    path = tmp_path / f"{name}.yaml"
    path.write_text(cfg.to_yaml())
    return subprocess.run([sys.executable, "-m", "tui_tuner", "train", str(path), "--name", name],
                          capture_output=True, text=True, timeout=900)


def test_mlx_lora_trains_through_the_cli_and_writes_the_run_directory(make_run_config, tmp_path):
    runs = tmp_path / "runs"
    cfg = make_run_config(runs, backend="mlx", **{"training.max_steps": 12, "training.save_steps": 5,
                                                  "training.eval_steps": 6, "training.save_total_limit": 2})
    out = _train_cli(tmp_path, cfg, "mlx")
    run = find_run(runs, "mlx")
    assert out.returncode == 0, out.stdout + out.stderr + "\n".join(run.log_tail(40))
    st = run.status()
    assert st.state == "finished" and st.step == 12 and st.backend == "mlx" and st.device == "cpu"
    assert st.extra.get("peak_memory_bytes", 0) > 0
    events, _ = read_events(run.events_path, 0)
    logs = [e for e in events if e["kind"] == "log"]
    assert [e["step"] for e in logs] == list(range(1, 13))
    losses = [e["loss"] for e in logs]
    print("mlx losses", [round(x, 3) for x in losses])
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.1, losses  # it learns (the transformers test's bar)
    assert all(e["lr"] > 0 for e in logs[1:]) and all(e["peak_memory_bytes"] > 0 for e in logs)
    assert any(e.get("tokens_per_s") for e in logs)
    evals = [e for e in events if e["kind"] == "eval"]
    assert [e["step"] for e in evals] == [6, 12] and evals[1]["eval_loss"] < evals[0]["eval_loss"] * 1.5
    assert [e["step"] for e in events if e["kind"] == "checkpoint"] == [5, 10, 12]
    kept = run.checkpoints()  # save_total_limit: 2 kept, each complete and resumable
    assert [p.name for p in kept] == ["checkpoint-10", "checkpoint-12"]
    assert all(checkpoint_problem(p) is None for p in kept)
    adapter = run.adapter_dir
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["lora_parameters"]["rank"] == 16 and config["lora_parameters"]["scale"] == 2.0
    assert set(config["lora_parameters"]["keys"]) == {  # all-linear: every projection of the decoder layers
        f"self_attn.{p}_proj" for p in "qkvo"} | {f"mlp.{p}_proj" for p in ("gate", "up", "down")}
    assert json.loads((adapter / "tui_tuner.json").read_text())["backend"] == "mlx"
    assert (adapter / "chat_template.jinja").is_file() and (adapter / "tokenizer_config.json").is_file()

    # chat, eval and export do not read mlx-lm adapters yet, and say so instead of failing inside peft
    from tui_tuner.inference.chat_model import SourceError, resolve_source

    with pytest.raises(SourceError, match="MLX backend.*mlx_lm.generate"):
        resolve_source(run.path)

    # The adapter loads back with mlx-lm and changes the model's output.
    import mlx.core as mx
    from mlx_lm.utils import load_model
    from mlx_lm.tuner.utils import load_adapters

    base, _ = load_model(Path(config["model"]))
    tuned, _ = load_model(Path(config["model"]))
    tuned = load_adapters(tuned, str(adapter))
    ids = mx.array([[1, 5, 9, 12]])
    assert not mx.allclose(base(ids), tuned(ids)).item()


def test_mlx_refuses_what_it_does_not_train_yet_with_what_to_do(make_run_config, tmp_path):
    runs = tmp_path / "runs"
    out = _train_cli(tmp_path, make_run_config(runs, backend="mlx", method="qlora"), "q")
    assert out.returncode != 0
    text = out.stdout + out.stderr
    run = find_run(runs, "q")
    if run is not None:
        text += str(run.status().error) + str(run.status().hint)
    assert "method: lora" in text


def test_mlx_trains_the_same_token_positions_as_the_transformers_backend(make_run_config, tmp_path):
    """The masks each backend really feeds its loss: trl's SFTTrainer dataset + collator vs MLX's batches."""
    import numpy as np
    from transformers import AutoTokenizer
    from trl import SFTTrainer

    from tui_tuner.models.demo import resolve_model_path
    from tui_tuner.rundir.runs import create_run
    from tui_tuner.train.backends import mlx_backend
    from tui_tuner.train.backends.transformers_backend import load_model
    from tui_tuner.train.worker import _resolve_template, build_datasets, sft_config

    cfg = make_run_config(tmp_path / "runs", **{"model.max_seq_length": 48})  # short: some answers get cut
    run = create_run(cfg, REPO)
    path = resolve_model_path(cfg.model.name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    template = _resolve_template(cfg, tokenizer)
    tokenizer.chat_template = template
    train_ds, _, info = build_datasets(cfg, tokenizer, template)
    assert info["truncated"] > 0  # the comparison covers truncated examples too
    model, tok = load_model(cfg, path, "cpu")
    tok.chat_template = template
    trainer = SFTTrainer(model=model, args=sft_config(cfg, run, "cpu", "transformers", False, "fp32"),
                         train_dataset=train_ds, processing_class=tok)
    fed = trainer.train_dataset
    assert len(fed) == len(train_ds)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    compared = 0
    for start in range(0, len(train_ds), 4):
        rows = list(range(start, min(start + 4, len(train_ds))))
        batch = trainer.data_collator([fed[i] for i in rows])
        # transformers' causal LM loss: logits at position t predict labels[t + 1]
        torch_targets = batch["labels"][:, 1:]
        torch_mask = (torch_targets != -100).numpy()
        picked = train_ds.select(rows)
        inputs, targets, mask, _ = mlx_backend.pad_batch(list(picked["input_ids"]), list(picked["labels"]), pad)
        assert (batch["input_ids"][:, :-1].numpy() == np.array(inputs)).all()
        assert (torch_mask == np.array(mask)).all()
        assert (torch_targets.numpy()[torch_mask] == np.array(targets)[torch_mask]).all()
        compared += int(torch_mask.sum())
    assert compared > 100


def _mlx_run(make_run_config, tmp_path, steps):
    from tui_tuner.rundir.runs import create_run

    return create_run(make_run_config(tmp_path, backend="mlx", **{
        "training.max_steps": steps, "training.save_steps": 3, "training.batch_size": 2,
        "training.eval_steps": "null"}), REPO)


def _optimizer_step(checkpoint: Path) -> int:
    import mlx.core as mx

    return int(mx.load(str(checkpoint / "optimizer.safetensors"))["step"].item())


def _resume_when_released(run, timeout=120):
    """Resume once the stopped run's supervisor has exited and let go of the launch lock."""
    import time

    from tui_tuner.rundir.runs import RunError
    from tui_tuner.train.resume import resume_run

    deadline = time.monotonic() + timeout
    while True:
        try:
            return resume_run(run, detach=True)
        except RunError as exc:
            if "being started" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_mlx_stop_request_then_kill_9_then_resume_reaches_max_steps(make_run_config, wait_for_run, tmp_path):
    import os
    import signal

    from tui_tuner.rundir.runs import start_worker
    from tui_tuner.train.resume import resume_run

    run = _mlx_run(make_run_config, tmp_path, 40)
    start_worker(run)
    wait_for_run(run, ("running",), step=2)
    assert "stop requested" in run.request_stop()
    st = wait_for_run(run, ("stopped",))
    assert st.step < 40 and run.latest_checkpoint().name == f"checkpoint-{st.step}"
    assert (run.adapter_dir / "adapters.safetensors").is_file()
    assert any(e["kind"] == "stop_requested" for e in read_events(run.events_path, 0)[0])

    _resume_when_released(run)
    st = wait_for_run(run, ("running",), step=st.step + 4)
    os.killpg(os.getpgid(st.pid), signal.SIGKILL)  # worker and supervisor: nobody records the end
    st = wait_for_run(run, ("crashed",))
    kept = run.latest_checkpoint()
    resume_run(run, detach=False)
    st = wait_for_run(run, ("finished",))
    assert st.step == 40 and st.resumed_from_step == int(kept.name.split("-")[1])
    assert [s for s, _ in load_history(run.events_path).losses if s > st.resumed_from_step] == \
        list(range(st.resumed_from_step + 1, 41))
    # The optimizer state came back: AdamW's step counter ran on through both restarts.
    assert _optimizer_step(run.latest_checkpoint()) == 40
