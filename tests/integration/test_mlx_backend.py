"""The MLX backend end to end on the CPU build of MLX: `tui-tuner train` with `backend: mlx`.

Two runs are trained once for the module: LoRA on the demo model (fast, long enough to see it learn)
and QLoRA on a tiny model with a real tokenizer (Phi-3's), which chat, eval and export then read.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mlx_lm", reason="the MLX backend needs `pip install -e '.[mlx]'` (CI installs it)")

from tests.conftest import run_config  # noqa: E402
from tui_tuner.rundir.events import load_history, read_events  # noqa: E402
from tui_tuner.rundir.runs import checkpoint_problem, find_run  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _train_cli(tmp_path: Path, cfg, name: str) -> subprocess.CompletedProcess:
    path = tmp_path / f"{name}.yaml"
    path.write_text(cfg.to_yaml())
    return subprocess.run([sys.executable, "-m", "tui_tuner", "train", str(path), "--name", name],
                          capture_output=True, text=True, timeout=900)


def _tui_tuner(*args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tui_tuner", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def mlx_lora_run(demo_model_dir, tmp_path_factory):
    """(run, CLI result): LoRA on the demo model, 12 steps, checkpoints at 5 and 10, eval at 6 and 12."""
    tmp = tmp_path_factory.mktemp("mlx-lora")
    runs = tmp / "runs"
    cfg = run_config(runs, backend="mlx", **{"training.max_steps": 12, "training.save_steps": 5,
                                             "training.eval_steps": 6, "training.save_total_limit": 2})
    out = _train_cli(tmp, cfg, "mlx")
    run = find_run(runs, "mlx")
    assert out.returncode == 0, out.stdout + out.stderr + "\n".join(run.log_tail(40))
    return run


@pytest.fixture(scope="module")
def mlx_qlora_run(demo_model_dir, tiny_model, tmp_path_factory):
    """QLoRA on the tiny Phi-3 (real tokenizer, 32k vocabulary: the cheapest real one for MLX's CPU build), 4 steps."""
    tmp = tmp_path_factory.mktemp("mlx-qlora")
    runs = tmp / "runs"
    cfg = run_config(runs, backend="mlx", method="qlora", **{
        "model.name_or_path": str(tiny_model("phi3")), "model.max_seq_length": 64, "training.max_steps": 4,
        "training.batch_size": 2, "training.save_steps": 2, "training.eval_steps": "null",
        "training.learning_rate": 1e-2})
    out = _train_cli(tmp, cfg, "q")
    run = find_run(runs, "q")
    assert out.returncode == 0, out.stdout + out.stderr + "\n".join(run.log_tail(40))
    return run


def test_mlx_lora_trains_through_the_cli_and_writes_the_run_directory(mlx_lora_run):
    run = mlx_lora_run
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
    config = json.loads((adapter / "mlx" / "adapter_config.json").read_text())
    assert config["lora_parameters"]["rank"] == 16 and config["lora_parameters"]["scale"] == 2.0
    assert set(config["lora_parameters"]["keys"]) == {  # all-linear: every projection of the decoder layers
        f"self_attn.{p}_proj" for p in "qkvo"} | {f"mlp.{p}_proj" for p in ("gate", "up", "down")}
    peft = json.loads((adapter / "adapter_config.json").read_text())  # the PEFT copy chat/eval/export read
    assert peft["peft_type"] == "LORA" and peft["r"] == 16 and peft["lora_alpha"] == 32.0
    assert set(peft["target_modules"]) == {f"{p}_proj" for p in ("q", "k", "v", "o", "gate", "up", "down")}
    assert all((p / "adapter_model.safetensors").is_file() for p in kept)
    assert json.loads((adapter / "tui_tuner.json").read_text())["backend"] == "mlx"
    assert (adapter / "chat_template.jinja").is_file() and (adapter / "tokenizer_config.json").is_file()


def _mlx_logits(run, ids, *, with_adapter: bool):
    """Logits of the run's base in MLX (16/32-bit, as transformers loads it), with mlx-lm's adapter from adapter/mlx."""
    import mlx.core as mx
    import numpy as np
    from mlx_lm.tuner.utils import load_adapters
    from mlx_lm.utils import load_model

    from tui_tuner.train.backends.mlx_backend import hf_config_overrides

    base = Path(json.loads((run.adapter_dir / "tui_tuner.json").read_text())["base_model_path"])
    model, _ = load_model(base, model_config=hf_config_overrides(base))
    model.set_dtype(mx.float32)
    if with_adapter:
        model = load_adapters(model, str(run.adapter_dir / "mlx"))
    model.eval()
    return np.array(model(mx.array([ids])).astype(mx.float32))[0]


@pytest.mark.parametrize("which", ["mlx_lora_run", "mlx_qlora_run"])
def test_the_peft_copy_of_the_adapter_gives_the_mlx_logits_in_transformers(which, request):
    """lora_A/lora_B orientation, key names and scaling: PEFT on transformers computes what MLX computes."""
    import numpy as np
    import torch

    from tui_tuner.inference.chat_model import load_chat_model, resolve_source

    run = request.getfixturevalue(which)
    chat = load_chat_model(resolve_source(run.path), device="cpu", engine="transformers")  # the PEFT copy
    ids = chat.encode(chat.render([{"role": "user", "content": "What is the capital of France?"}]))[:24]
    with torch.no_grad():
        tuned = chat.model(torch.tensor([ids])).logits[0].float().numpy()
        with chat.model.disable_adapter():
            base = chat.model(torch.tensor([ids])).logits[0].float().numpy()
    mlx_tuned = _mlx_logits(run, ids, with_adapter=True)
    diff = np.abs(tuned - mlx_tuned).max()
    print(which, "max |peft - mlx| logits", diff, "adapter's effect", np.abs(tuned - base).max())
    assert diff < 1e-3
    assert np.abs(tuned - base).max() > 100 * max(diff, 1e-5)  # the adapter really changes the output
    np.testing.assert_allclose(base, _mlx_logits(run, ids, with_adapter=False), atol=1e-3)


def test_mlx_chat_engine_answers_as_transformers_peft_does_and_compares_with_the_adapter_off(mlx_lora_run):
    """Greedy MLX generation (mlx-lm's base + adapter/mlx) gives the tokens transformers + the PEFT copy give,
    from the prompt tokens tui-tuner's renderer builds; the adapter off gives the base's answer; the held-out
    loss is MLX's own and matches transformers'."""
    from tui_tuner.data.tokenize import encode_prompt
    from tui_tuner.inference.chat_model import GenerationSettings, load_chat_model, resolve_source
    from tui_tuner.inference.evaluate import heldout_loss

    source = resolve_source(mlx_lora_run.path)
    chat = load_chat_model(source)  # auto: the run trained with MLX and MLX imports here
    ref = load_chat_model(source, engine="transformers", device="cpu")
    assert chat.engine == "mlx" and "MLX generation" in chat.notes and chat.has_adapter
    assert ref.engine == "transformers" and any("trained with MLX, loaded with transformers" in n for n in ref.notes)
    messages = [{"role": "user", "content": "What is Bramble?"}]
    # a strong repetition penalty: the 12-step demo model would otherwise repeat one token
    greedy = GenerationSettings(temperature=0, max_new_tokens=16, repetition_penalty=1.8)
    assert chat.fit_prompt(chat.prepare(messages, greedy), 16)[0] == encode_prompt(
        chat.tokenizer, messages, chat.chat_template)
    pieces: list[str] = []
    tuned = chat.generate(messages, greedy, on_text=pieces.append)
    base = chat.generate(messages, greedy, use_adapter=False)
    ref_tuned, ref_base = ref.generate(messages, greedy), ref.generate(messages, greedy, use_adapter=False)
    print("mlx tuned", tuned.token_ids, tuned.finish_reason, "| transformers", ref_tuned.token_ids,
          "| base", base.token_ids)
    print("tokens/s on this CPU: mlx", round(tuned.tokens_per_s, 1), "transformers", round(ref_tuned.tokens_per_s, 1))
    assert tuned.error is None and tuned.new_tokens > 0 and tuned.text == "".join(pieces).strip()
    assert tuned.token_ids == ref_tuned.token_ids and tuned.finish_reason == ref_tuned.finish_reason
    assert base.token_ids == ref_base.token_ids
    assert base.token_ids != tuned.token_ids  # the adapter off really is another model
    if tuned.finish_reason == "eos":  # stopped at the end of turn, which is not shown
        assert tuned.token_ids[-1] in chat.stop_token_ids and len(tuned.token_ids) < 16
    stream = chat.stream(messages, greedy)  # on a thread, iterated like the transformers engine's
    assert "".join(stream).strip() == tuned.text and stream.result().token_ids == tuned.token_ids
    sampled = chat.generate(messages, GenerationSettings(temperature=0.8, top_p=0.9, max_new_tokens=6, seed=3))
    assert sampled.error is None and 0 < sampled.new_tokens <= 6
    examples = [[{"role": "user", "content": "Who makes Bramble?"},
                 {"role": "assistant", "content": "Bramble is made by Fernwick Labs in Oxley Vale."}]]
    for use_adapter in (True, False):
        (mlx_loss, n), (torch_loss, m) = (heldout_loss(c, examples, use_adapter=use_adapter) for c in (chat, ref))
        assert n == m > 0 and abs(mlx_loss - torch_loss) < 1e-3 * max(1.0, torch_loss), (mlx_loss, torch_loss)


def test_mlx_qlora_trains_on_affine_4bit_then_chats_evals_and_exports(mlx_qlora_run, tmp_path):
    from tui_tuner.export.exporters import export_gguf, export_merged, gguf_summary
    from tui_tuner.inference.chat_model import resolve_source

    run = mlx_qlora_run
    st = run.status()
    assert st.state == "finished" and st.step == 4 and st.backend == "mlx"
    assert st.extra["precision"].startswith("4-bit affine (group 64)")
    # 2 decoder layers x 4 linear (qkv, o, gate_up, down) + the embeddings, which the tied head reads
    assert st.extra["quantization"] == {"mode": "affine", "bits": 4, "group_size": 64, "layers": 9}
    meta = json.loads((run.adapter_dir / "tui_tuner.json").read_text())
    assert meta["method"] == "qlora" and meta["base_quantization"]["mode"] == "affine"
    assert [p.name for p in run.checkpoints()] == ["checkpoint-2", "checkpoint-4"]

    # chat: MLX generation on the 4-bit affine base the run trained on, base vs tuned with the adapter off
    done = _tui_tuner("chat", run.path, "--prompt", "Hello", "--compare", "--json", "--temperature", "0",
                      "--max-new-tokens", "8")
    assert done.returncode == 0, done.stderr
    answers = json.loads(done.stdout)
    assert set(answers) == {"base", "tuned"} and all(a["tokens"] > 0 for a in answers.values())
    assert "MLX generation" in done.stderr and "base quantized as trained: 4-bit affine, group 64" in done.stderr
    assert answers["base"]["answer"] != answers["tuned"]["answer"], answers
    # --engine transformers still loads it (on the unquantized base, which it says)
    done = _tui_tuner("chat", run.path, "--prompt", "Hello", "--json", "--temperature", "0", "--max-new-tokens", "4",
                      "--engine", "transformers")
    assert done.returncode == 0, done.stderr
    assert "MLX QLoRA run loaded on the unquantized base" in done.stderr

    # eval of a checkpoint: its mlx-lm weights, loss and answers from MLX
    done = _tui_tuner("eval", run.path, "--checkpoint", "2", "--limit", "2", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["source"].endswith("checkpoint-2") and len(report["prompts"]) == 2
    assert "MLX generation" in report["notes"] and report["models"]["tuned"]["loss"] > 0

    merged = export_merged(resolve_source(run.path), tmp_path / "merged", dtype="float32")
    assert (merged.path / "model.safetensors").is_file() and (merged.path / "chat_template.jinja").is_file()
    from tests.integration.infer.test_export import _converter_root

    gguf = export_gguf(resolve_source(run.path), tmp_path / "gguf", quant="f16", llama_cpp=_converter_root(),
                       verify=False)
    summary = gguf_summary(gguf.path)
    assert summary["architecture"] == "phi3" and summary["vocab_size"] == 32064
    assert len(summary["tensors"]) > 10 and summary["chat_template"]


def test_mlx_refuses_what_it_does_not_train_yet_with_what_to_do(make_run_config, tmp_path):
    runs = tmp_path / "runs"
    cfg = make_run_config(runs, backend="mlx", method="qlora", **{"quantization.quant_type": "fp4"})
    out = _train_cli(tmp_path, cfg, "q")
    assert out.returncode != 0
    text = out.stdout + out.stderr
    try:
        run = find_run(runs, "q")
        text += str(run.status().error) + str(run.status().hint)
    except Exception:  # refused before a run directory was made
        pass
    assert "fp4 is a bitsandbytes 4-bit type" in text and "backend: transformers" in text


def test_mlx_trains_the_same_token_positions_as_the_transformers_backend(make_run_config, tiny_model, tmp_path):
    """The masks each backend really feeds its loss: trl's SFTTrainer dataset + collator vs MLX's batches,
    on Llama 3's real tokenizer and chat template (BOS, header tokens, <|eot_id|> as the answer's end)."""
    import numpy as np
    from transformers import AutoTokenizer
    from trl import SFTTrainer

    from tui_tuner.rundir.runs import create_run
    from tui_tuner.train.backends import mlx_backend
    from tui_tuner.train.backends.transformers_backend import load_model
    from tui_tuner.train.worker import _resolve_template, build_datasets, sft_config

    path = str(tiny_model("llama3"))
    cfg = make_run_config(tmp_path / "runs", **{"model.max_seq_length": 64,  # short: some answers get cut
                                                "model.name_or_path": path})
    run = create_run(cfg, REPO)
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

    run = _mlx_run(make_run_config, tmp_path, 40)
    start_worker(run)
    wait_for_run(run, ("running",), step=2)
    assert "stop requested" in run.request_stop()
    st = wait_for_run(run, ("stopped",))
    assert st.step < 40 and run.latest_checkpoint().name == f"checkpoint-{st.step}"
    assert (run.adapter_dir / "adapter_model.safetensors").is_file()
    assert (run.adapter_dir / "mlx" / "adapters.safetensors").is_file()
    assert any(e["kind"] == "stop_requested" for e in read_events(run.events_path, 0)[0])

    _resume_when_released(run)
    st = wait_for_run(run, ("running",), step=st.step + 4)
    os.killpg(os.getpgid(st.pid), signal.SIGKILL)  # worker and supervisor: nobody records the end
    st = wait_for_run(run, ("crashed",))
    kept = run.latest_checkpoint()
    done = _tui_tuner("runs", "--runs-dir", run.path.parent, "resume", run.name, timeout=900)  # follows to the end
    assert done.returncode == 0, done.stdout + done.stderr
    st = wait_for_run(run, ("finished",))
    assert st.step == 40 and st.resumed_from_step == int(kept.name.split("-")[1])
    assert [s for s, _ in load_history(run.events_path).losses if s > st.resumed_from_step] == \
        list(range(st.resumed_from_step + 1, 41))
    # The optimizer state came back: AdamW's step counter ran on through both restarts.
    assert _optimizer_step(run.latest_checkpoint()) == 40
