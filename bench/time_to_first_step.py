"""Time to the first training step: `tui-tuner train` against a bare trl script on the same data.

    PYTHONPATH=$PWD python bench/time_to_first_step.py [--rows 100000] [--repeats 1]

Both sides train a LoRA on the demo model (CPU) from the same generated JSON Lines file
(instruction/output rows as in bench/data_check.py), batch size 8. Each is timed from the
moment its process is launched to the end of its first optimizer step:

- ours: `tui-tuner train CONFIG --detach` (config and data checked, the dataset tokenized
  once into the tokenized-dataset cache, the worker started), then the worker's first `log`
  event (logging_steps 1). Also printed: when `train --detach` returned (the foreground
  part), and a second `train` on the same data, which finds the token ids in the cache (what
  a resume or a re-run with other hyperparameters costs);
- bare trl: one Python script: `load_dataset("json")`, a batched map to `messages`, then
  `SFTTrainer(..., peft_config=LoraConfig(...))`, which applies the chat template and
  tokenizes; a callback records its first `on_step_end`.

Prints the medians and the ratio (goal: ours <= 1.2x the bare script's time at 100k rows).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BARE_TRL = r"""
import json, sys, time
from datasets import load_dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from trl import SFTConfig, SFTTrainer
import torch

model_dir, data, work = sys.argv[1:4]
tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
ds = load_dataset("json", data_files=data, split="train", cache_dir=work + "/datasets")
ds = ds.map(lambda b: {"messages": [[{"role": "user", "content": i}, {"role": "assistant", "content": o}]
                                    for i, o in zip(b["instruction"], b["output"])]},
            batched=True, remove_columns=ds.column_names)

class FirstStep(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        print(json.dumps({"first_step": time.time()}), flush=True)
        control.should_training_stop = True

args = SFTConfig(output_dir=work + "/out", max_steps=2, per_device_train_batch_size=8, logging_steps=1,
                 save_strategy="no", report_to=[], use_cpu=True, max_length=512, disable_tqdm=True,
                 learning_rate=3e-3, dataloader_num_workers=0)
SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok,
           peft_config=LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"),
           callbacks=[FirstStep()]).train()
"""

CONFIG = """model:
  name_or_path: tui-tuner/demo-tiny-llama
  dtype: float32
  max_seq_length: 512
method: lora
lora: {{r: 16, alpha: 32, dropout: 0.0}}
data:
  train: {train}
training:
  max_steps: 2
  batch_size: 8
  grad_accumulation: 1
  learning_rate: 3.0e-3
  logging_steps: 1
  save_steps: 1000
  gradient_checkpointing: false
output:
  runs_dir: {runs}
backend: transformers
"""


def ours(config: Path, runs: Path, env: dict[str, str]) -> tuple[float, float]:
    """(seconds until `train --detach` returned, seconds until the first step's log event)."""
    before = set(runs.iterdir()) if runs.exists() else set()
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "tui_tuner", "train", str(config), "--detach", "--no-probe"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
    returned = time.time() - t0
    (run,) = set(runs.iterdir()) - before
    deadline = time.time() + 3600
    while time.time() < deadline:
        try:
            for line in (run / "events.jsonl").read_text().splitlines():
                event = json.loads(line)
                if event.get("kind") == "log":
                    _wait_end(run)
                    return returned, event["t"] - t0
                if event.get("kind") == "end":
                    raise RuntimeError(f"{run.name} ended before its first step: {event}")
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    raise TimeoutError(run.name)


def _wait_end(run: Path) -> None:
    """Let the run finish its two steps, so it does not slow the next measurement."""
    deadline = time.time() + 600
    while time.time() < deadline:
        st = json.loads((run / "status.json").read_text())
        if st.get("state") in ("finished", "stopped", "failed", "crashed"):
            return
        time.sleep(0.5)


def bare(model_dir: Path, data: Path, work: Path, env: dict[str, str]) -> float:
    t0 = time.time()
    out = subprocess.run([sys.executable, "-c", BARE_TRL, str(model_dir), str(data), str(work)], check=True,
                         capture_output=True, text=True, env=env, cwd=ROOT)
    stamp = next(json.loads(line) for line in out.stdout.splitlines() if line.startswith('{"first_step"'))
    return stamp["first_step"] - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args(argv)

    from data_check import make_rows

    from tui_tuner.models.demo import ensure_demo_model

    model_dir = ensure_demo_model()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false",
               "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "TUI_TUNER_CACHE": str(tmp_path / "cache")}
        (tmp_path / "cache").mkdir()
        os.symlink(model_dir, tmp_path / "cache" / model_dir.name)  # the demo model, not the token cache
        data = tmp_path / "train.jsonl"
        make_rows(data, args.rows)
        runs = tmp_path / "runs"
        config = tmp_path / "run.yaml"
        config.write_text(CONFIG.format(train=data, runs=runs), encoding="utf-8")
        cold, warm, returned, base = [], [], [], []
        for i in range(args.repeats):
            for side in (("ours", "bare") if i % 2 == 0 else ("bare", "ours")):
                if side == "ours":
                    for entry in (tmp_path / "cache" / "tokenized").glob("*"):
                        subprocess.run(["rm", "-rf", str(entry)], check=True)  # cold: nothing tokenized yet
                    r, first = ours(config, runs, env)
                    returned.append(r)
                    cold.append(first)
                    warm.append(ours(config, runs, env)[1])  # the same data again: token ids from the cache
                else:
                    work = tmp_path / f"bare-{i}"
                    base.append(bare(model_dir, data, work, env))
                print(f"pair {i + 1}: {side} done", flush=True)
        c, w, r, b = (statistics.median(x) for x in (cold, warm, returned, base))
        print(f"{args.rows:,} rows, time to the first step (median of {args.repeats}):")
        print(f"  bare trl script:                     {b:7.1f} s")
        print(f"  tui-tuner train (nothing cached):    {c:7.1f} s  = {c / b:.2f}x  (train --detach returned after {r:.1f} s)")
        print(f"  tui-tuner train (token ids cached):  {w:7.1f} s  = {w / b:.2f}x")
        print(f"goal: <= 1.2x the bare script: {'met' if c / b <= 1.2 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
