"""How long `tui-tuner check --json` takes, against a bare `python -c pass`.

    PYTHONPATH=$PWD python bench/check_startup.py [--repeats 7] [MODEL]

Runs the two commands alternately (so machine load hits both alike), prints the median wall
times and their ratio, and fails if the check imported torch or transformers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "peft", "trl", "bitsandbytes", "unsloth", "datasets")
NO_HEAVY = (
    "import sys\nfrom tui_tuner.cli import main\nrc = main(sys.argv[1:])\n"
    f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
    "assert not heavy, f'check imported {heavy}'\nraise SystemExit(rc)\n"
)


def wall(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env, cwd=REPO)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", default="meta-llama/Llama-3.1-8B")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args(argv)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    check = [sys.executable, "-m", "tui_tuner", "check", args.model, "--vram", "24", "--json"]
    bare = [sys.executable, "-c", "pass"]
    subprocess.run([sys.executable, "-c", NO_HEAVY, *check[3:]], check=True, stdout=subprocess.DEVNULL,
                   env=env, cwd=REPO)  # fails loudly if a heavy library was imported
    wall(check, env)  # warm the file cache
    t_check, t_bare = [], []
    for _ in range(args.repeats):
        t_check.append(wall(check, env))
        t_bare.append(wall(bare, env))
    c, b = statistics.median(t_check), statistics.median(t_bare)
    print(f"tui-tuner check --json ({args.model}): median {c * 1000:.0f} ms over {args.repeats} runs")
    print(f"python -c pass:                     median {b * 1000:.0f} ms")
    print(f"ratio check / bare python: {c / b:.1f}x   (torch and transformers not imported)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
