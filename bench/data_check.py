"""`tui-tuner data check --config` against `datasets` + a batched chat-template map, on 1k to 1M rows.

    PYTHONPATH=$PWD python bench/data_check.py [--rows 1000,10000,100000] [--repeats 3] [--with-1m]

For each size, a JSON Lines file of generated instruction/output rows (words from the sample
dataset, 20-120 words each) is checked two ways, each in a fresh process, alternating so
machine load hits both alike:

- ours: `tui-tuner data check FILE --config CONFIG --json` (the demo model's tokenizer, its
  ChatML template, max_seq_length 512): reads, validates, renders, tokenizes with the masks
  and reports token statistics;
- baseline: `datasets.load_dataset("json")` then `Dataset.map(batched=True)` that builds the
  messages, applies the same tokenizer's chat template and tokenizes the batch (its own cache
  in a fresh temp folder, so nothing is reused between runs).

Prints, per size, the median CPU time (user + system of that process alone, from `wait4`) and
peak RSS of each side and their ratios (goal: ours <= 1.2x the baseline's CPU time and peak
memory at 10k, 100k and 1M rows). `--with-1m` adds the 1M-row case (long on a small machine).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BASELINE = r"""
import sys
from datasets import load_dataset
from transformers import AutoTokenizer

tok = AutoTokenizer.from_pretrained(sys.argv[1])
ds = load_dataset("json", data_files=sys.argv[2], split="train", cache_dir=sys.argv[3])

def render(batch):
    convs = [[{"role": "user", "content": i}, {"role": "assistant", "content": o}]
             for i, o in zip(batch["instruction"], batch["output"])]
    texts = tok.apply_chat_template(convs, tokenize=False)
    return tok(texts, add_special_tokens=False, truncation=True, max_length=512)

ds = ds.map(render, batched=True, remove_columns=ds.column_names)
print(len(ds), sum(len(x) for x in ds["input_ids"]))
"""

CONFIG = """model:
  name_or_path: tui-tuner/demo-tiny-llama
  max_seq_length: 512
method: lora
data:
  train: {train}
"""


def words() -> list[str]:
    text = (ROOT / "data" / "sample.jsonl").read_text(encoding="utf-8")
    found = [w.strip('.,!?:;"()[]{}').lower() for w in text.replace("\\n", " ").split()]
    return sorted({w for w in found if w.isalpha()})


def make_rows(path: Path, n: int) -> None:
    rng = random.Random(n)
    vocab = words()
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            instruction = " ".join(rng.choices(vocab, k=rng.randint(10, 60))).capitalize() + f"? ({i})"
            output = " ".join(rng.choices(vocab, k=rng.randint(10, 60))).capitalize() + "."
            fh.write(json.dumps({"instruction": instruction, "output": output}) + "\n")


def measure(cmd: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """(CPU seconds, peak RSS bytes, wall seconds) of one process, alone."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 1):  # data check exits 1 when it finds errors; generated data has none
        raise RuntimeError(f"{cmd[:4]} exited {proc.returncode}: {err[-2000:]}")
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024, wall


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="1000,10000,100000", help="comma-separated sizes")
    ap.add_argument("--repeats", type=int, default=3, help="pairs per size (1 for sizes of 100k and more)")
    ap.add_argument("--with-1m", action="store_true", help="add the 1,000,000-row case")
    ap.add_argument("--processes", type=int, default=1,
                    help="tokenizing processes for ours (TUI_TUNER_TOKENIZE_PROCESSES; default 1, the goal's "
                         "CPU comparison; more trade CPU time for wall time)")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.rows.split(",") if s] + ([1_000_000] if args.with_1m else [])

    from tui_tuner.models.demo import ensure_demo_model

    model_dir = ensure_demo_model()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false",
           "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "TUI_TUNER_TOKENIZE_PROCESSES": str(args.processes)}
    print(f"{'rows':>9}  {'ours CPU':>9} {'base CPU':>9} {'ratio':>6}  {'ours RSS':>9} {'base RSS':>9} {'ratio':>6}"
          f"  {'ours wall':>9} {'base wall':>9}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            data = Path(tmp) / f"rows-{n}.jsonl"
            make_rows(data, n)
            config = Path(tmp) / f"run-{n}.yaml"
            config.write_text(CONFIG.format(train=data), encoding="utf-8")
            ours_cmd = [sys.executable, "-m", "tui_tuner", "data", "check", str(data), "--config", str(config),
                        "--json"]
            results: dict[str, list[tuple[float, float, float]]] = {"ours": [], "base": []}
            repeats = args.repeats if n < 100_000 else 1
            for i in range(repeats):
                order = ["ours", "base"] if i % 2 == 0 else ["base", "ours"]
                for side in order:
                    if side == "ours":
                        results["ours"].append(measure(ours_cmd, env))
                    else:
                        with tempfile.TemporaryDirectory(dir=tmp) as cache:
                            results["base"].append(measure([sys.executable, "-c", BASELINE, str(model_dir),
                                                            str(data), cache], env))
            med = {side: [statistics.median(r[k] for r in rs) for k in range(3)] for side, rs in results.items()}
            (oc, orss, ow), (bc, brss, bw) = med["ours"], med["base"]
            print(f"{n:>9,}  {oc:>8.1f}s {bc:>8.1f}s {oc / bc:>5.2f}x  {orss / 2**20:>7.0f}MB {brss / 2**20:>7.0f}MB "
                  f"{orss / brss:>5.2f}x  {ow:>8.1f}s {bw:>8.1f}s   ({repeats} run(s) each)", flush=True)
    print("goal: ours <= 1.2x the baseline's CPU time and peak RSS at 10k, 100k and 1M rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
