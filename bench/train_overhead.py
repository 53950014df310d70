"""Training throughput: raw trl `SFTTrainer` vs tui-tuner's worker path (callback + events + status).

    PYTHONPATH=. python bench/train_overhead.py [--steps 100] [--batch-size 4] [--repeats 5] [--threads 1]

Both sides train the demo model on the sample data with the same tokenized dataset,
SFTConfig, steps and seed, in this one process, alternating raw / ours so that machine
load drifts hit both equally. "Ours" is `tui_tuner.train.worker.train`, exactly what the
worker runs: `RunCallback` writing events.jsonl and status.json every logged step
(logging_steps=1, the worst case) and polling control.json. Throughput is optimizer steps
per second of the training loop (timed from on_train_begin to on_train_end by a callback
added on both sides), in wall time and in this process's CPU time; model loading and the
final adapter save are outside it on both sides. Prints each pair and the median ratios
(target: ours >= 0.98 x raw). On a busy machine the pairs are noisy, so it also measures
the callback's own cost per step in isolation and prints the ratio that cost implies.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def make_config(runs_dir: Path, steps: int, batch_size: int = 4):
    from tui_tuner.config.schema import validate_raw

    raw = {
        "model": {"name_or_path": "tui-tuner/demo-tiny-llama", "dtype": "float32", "max_seq_length": 256},
        "method": "lora", "lora": {"r": 16, "alpha": 32, "dropout": 0.0},
        "data": {"train": str(REPO / "data" / "sample.jsonl")},
        "training": {"max_steps": steps, "batch_size": batch_size, "grad_accumulation": 1, "learning_rate": 3e-3,
                     "scheduler": "constant", "warmup_ratio": 0.0, "gradient_checkpointing": False,
                     "logging_steps": 1, "save_steps": steps * 10, "seed": 42},
        "output": {"runs_dir": str(runs_dir), "run_name": "bench"}, "backend": "transformers",
    }
    loaded = validate_raw(raw)
    assert loaded.ok, [i.format() for i in loaded.issues]
    return loaded.config


def loop_timer():
    """A TrainerCallback that times the training loop: wall clock and this process's CPU time.

    CPU time (user + system, all threads) is what the run-directory bookkeeping costs; on a
    shared machine it is far less disturbed by other processes than wall time.
    """
    from transformers import TrainerCallback

    class LoopTimer(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.begin = (time.perf_counter(), _cpu_s())

        def on_train_end(self, args, state, control, **kwargs):
            self.end = (time.perf_counter(), _cpu_s())

        @property
        def wall_s(self) -> float:
            return self.end[0] - self.begin[0]

        @property
        def cpu_s(self) -> float:
            return self.end[1] - self.begin[1]

    return LoopTimer()


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def raw_loop(cfg, run):
    """Plain SFTTrainer with the same model, data and arguments, and no tui-tuner callback."""
    from trl import SFTTrainer

    from tui_tuner.models.demo import resolve_model_path
    from tui_tuner.chat_format.templates import resolve_chat_template
    from tui_tuner.train.backends.transformers_backend import load_model
    from transformers import set_seed

    from tui_tuner.train.worker import build_datasets, sft_config

    set_seed(cfg.training.seed)
    model, tok = load_model(cfg, resolve_model_path(cfg.model.name_or_path), "cpu")
    template = resolve_chat_template(cfg.model, tok)
    tok.chat_template = template
    train_ds, _, _ = build_datasets(cfg, tok, template)
    args = sft_config(cfg, run, "cpu", "transformers", False, "fp32")
    timer = loop_timer()
    SFTTrainer(model=model, args=args, train_dataset=train_ds, processing_class=tok, callbacks=[timer]).train()
    return timer


def ours_loop(cfg, run):
    """`tui_tuner.train.worker.train`: the worker's path with RunCallback, events and status."""
    from tui_tuner.rundir.events import EventWriter
    from tui_tuner.rundir.status import RunStatus, StatusKeeper
    from tui_tuner.train.worker import train

    timer = loop_timer()
    with EventWriter(run.events_path) as events:
        train(run, cfg, "transformers", "cpu", StatusKeeper(run.path, RunStatus(state="running")), events, None,
              extra_callbacks=[timer])
    return timer


def callback_cost_s(n: int = 5000) -> tuple[float, float]:
    """(wall, CPU) seconds that RunCallback adds to one logged step, measured alone over `n` steps.

    The same calls the trainer makes each step (on_step_end, on_log with a loss), writing a real
    events.jsonl and status.json in a temp folder: the bookkeeping cost without training noise.
    """
    import types

    from transformers import TrainerControl

    from tui_tuner.rundir.events import EventWriter
    from tui_tuner.rundir.status import RunStatus, StatusKeeper
    from tui_tuner.train.callback import RunCallback

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with EventWriter(folder / "events.jsonl") as events:
            cb = RunCallback(folder, events, StatusKeeper(folder, RunStatus(state="running")))
            state = types.SimpleNamespace(global_step=0, epoch=0.0, max_steps=10 * n)
            control = TrainerControl()
            cb.on_train_begin(None, state, control)
            t0, c0 = time.perf_counter(), _cpu_s()
            for i in range(n):
                state.global_step, state.epoch = i + 1, i / 100
                cb.on_step_end(None, state, control)
                cb.on_log(None, state, control, logs={"loss": 2.0, "grad_norm": 0.5, "learning_rate": 1e-4,
                                                      "num_tokens": 100.0 * i, "mean_token_accuracy": 0.3,
                                                      "entropy": 6.0, "epoch": i / 100})
            return (time.perf_counter() - t0) / n, (_cpu_s() - c0) / n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args(argv)

    import torch

    from tui_tuner.models.demo import ensure_demo_model
    from tui_tuner.rundir.runs import create_run

    torch.set_num_threads(args.threads)  # fewer threads: less disturbed by other processes on the machine
    ensure_demo_model()
    wall, cpu, raw_step_s = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = make_config(Path(tmp) / "runs", args.steps, args.batch_size)
        warm = make_config(Path(tmp) / "runs", 3, args.batch_size)  # first-call allocations, lazy imports
        raw_loop(warm, create_run(warm, REPO, "warm-raw"))
        ours_loop(warm, create_run(warm, REPO, "warm-ours"))
        for i in range(args.repeats):
            order = [("raw", raw_loop), ("ours", ours_loop)]
            if i % 2:
                order.reverse()
            t = {name: fn(cfg, create_run(cfg, REPO, f"{name}-{i}")) for name, fn in order}
            # throughput ratio = raw time / our time (same steps on both sides)
            wall.append(t["raw"].wall_s / t["ours"].wall_s)
            cpu.append(t["raw"].cpu_s / t["ours"].cpu_s)
            raw_step_s.append(t["raw"].wall_s / args.steps)
            print(f"pair {i + 1}: steps/s raw {args.steps / t['raw'].wall_s:.2f} ours {args.steps / t['ours'].wall_s:.2f}"
                  f" (wall ratio {wall[-1]:.3f}); CPU s raw {t['raw'].cpu_s:.1f} ours {t['ours'].cpu_s:.1f}"
                  f" (CPU ratio {cpu[-1]:.3f})", flush=True)
    w, c = statistics.median(wall), statistics.median(cpu)
    print(f"median throughput ratio ours/raw over {args.repeats} pairs of {args.steps} steps: "
          f"wall {w:.3f}, CPU time {c:.3f}")
    step_s = statistics.median(raw_step_s)
    cost_wall, cost_cpu = callback_cost_s()
    implied = step_s / (step_s + cost_wall)
    print(f"callback cost per logged step: {cost_wall * 1e6:.0f} us wall, {cost_cpu * 1e6:.0f} us CPU; "
          f"raw step {step_s * 1e3:.1f} ms -> implied ratio {implied:.4f} (target >= 0.98: "
          f"{'met' if implied >= 0.98 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
