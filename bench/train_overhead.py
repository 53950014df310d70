"""Training throughput: raw trl `SFTTrainer` vs tui-tuner's worker path (callback + events + status).

    PYTHONPATH=. python bench/train_overhead.py [--steps 40] [--repeats 3]

Both sides train the demo model on the sample data with the same tokenized dataset,
SFTConfig, steps and seed, in this one process, alternating raw / ours so that machine
load drifts hit both equally. "Ours" is `tui_tuner.train.worker.train`, exactly what the
worker runs: `RunCallback` writing events.jsonl and status.json every logged step
(logging_steps=1, the worst case) and polling control.json. Throughput is optimizer steps
per second of the training loop (the trainer's own `train_runtime`); model loading and the
final adapter save are outside it on both sides. Prints each pair and the median ratio
(target: ours >= 0.98 x raw).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def make_config(runs_dir: Path, steps: int):
    from tui_tuner.config import validate_raw

    raw = {
        "model": {"name_or_path": "tui-tuner/demo-tiny-llama", "dtype": "float32", "max_seq_length": 256},
        "method": "lora", "lora": {"r": 16, "alpha": 32, "dropout": 0.0},
        "data": {"train": str(REPO / "data" / "sample.jsonl")},
        "training": {"max_steps": steps, "batch_size": 8, "grad_accumulation": 1, "learning_rate": 3e-3,
                     "scheduler": "constant", "warmup_ratio": 0.0, "gradient_checkpointing": False,
                     "logging_steps": 1, "save_steps": steps * 10, "seed": 42},
        "output": {"runs_dir": str(runs_dir), "run_name": "bench"}, "backend": "transformers",
    }
    loaded = validate_raw(raw)
    assert loaded.ok, [i.format() for i in loaded.issues]
    return loaded.config


def raw_steps_per_s(cfg, run) -> float:
    """Plain SFTTrainer with the same model, data and arguments, and no tui-tuner callback."""
    from trl import SFTTrainer

    from tui_tuner.demo_model import resolve_model_path
    from tui_tuner.templates import resolve_chat_template
    from tui_tuner.train.backends.transformers_backend import load_model
    from tui_tuner.train.worker import build_datasets, sft_config

    model, tok = load_model(cfg, resolve_model_path(cfg.model.name_or_path), "cpu")
    template = resolve_chat_template(cfg.model, tok)
    tok.chat_template = template
    train_ds, _, _ = build_datasets(cfg, tok, template)
    args = sft_config(cfg, run, "cpu", "transformers", False, next(model.parameters()).dtype)
    trainer = SFTTrainer(model=model, args=args, train_dataset=train_ds, processing_class=tok)
    metrics = trainer.train().metrics
    return cfg.training.max_steps / metrics["train_runtime"]


def ours_steps_per_s(cfg, run) -> float:
    from tui_tuner.events import EventWriter
    from tui_tuner.status import RunStatus, StatusKeeper
    from tui_tuner.train.worker import train

    with EventWriter(run.events_path) as events:
        result = train(run, cfg, "transformers", "cpu", StatusKeeper(run.path, RunStatus(state="running")),
                       events, None)
    runtime = next(e["train_runtime"] for e in reversed(result.trainer.state.log_history) if "train_runtime" in e)
    return cfg.training.max_steps / runtime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    import torch

    from tui_tuner.demo_model import ensure_demo_model
    from tui_tuner.runs import create_run

    torch.set_num_threads(max(1, torch.get_num_threads()))
    ensure_demo_model()
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = make_config(Path(tmp) / "runs", args.steps)
        # one untimed warm-up of each path (first-call allocations, lazy imports)
        warm = make_config(Path(tmp) / "runs", 3)
        raw_steps_per_s(warm, create_run(warm, REPO, "warm-raw"))
        ours_steps_per_s(warm, create_run(warm, REPO, "warm-ours"))
        for i in range(args.repeats):
            order = [("raw", raw_steps_per_s), ("ours", ours_steps_per_s)]
            if i % 2:
                order.reverse()
            result = {}
            for name, fn in order:
                result[name] = fn(cfg, create_run(cfg, REPO, f"{name}-{i}"))
            ratio = result["ours"] / result["raw"]
            ratios.append(ratio)
            print(f"pair {i + 1}: raw {result['raw']:.2f} steps/s, ours {result['ours']:.2f} steps/s, "
                  f"ratio {ratio:.3f}", flush=True)
    med = statistics.median(ratios)
    print(f"median throughput ratio (ours / raw) over {args.repeats} pairs of {args.steps} steps: {med:.3f} "
          f"({'meets' if med >= 0.98 else 'below'} the 0.98 target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
