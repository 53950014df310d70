"""How `tui-tuner runs ls` and the Runs screen scale with the number of runs.

    PYTHONPATH=$PWD python bench/runs_list.py [--repeats 5] [--counts 1,200,1000]

Builds runs folders of 1, 200 and 1,000 finished runs (one real `create_run` folder with its
config.yaml, run.json and status.json, copied), then:

1. `tui-tuner runs ls` as a user runs it (a fresh process each time), for each count,
   alternating the counts so machine load hits all alike; prints medians and the ratio of
   each to one run (goal: 1,000 runs <= 3x one run). The same for runs written before the
   status summary existed (`--legacy`: the listing then parses each config.yaml).
2. The Runs screen: time from opening the app on it until its table holds every run, for
   200 runs (goal: under a second) and for 1 run (what opening the app itself costs), in this
   process with the real app, headless, after one warm-up open that imports the screens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_runs(folder: Path, count: int, legacy: bool = False) -> Path:
    """`folder/runs` holding `count` finished runs made from one real run folder."""
    from tui_tuner.config.schema import RunConfig
    from tui_tuner.rundir.runs import create_run
    from tui_tuner.rundir.status import read_status, write_status

    runs = folder / "runs"
    cfg = RunConfig()
    cfg.output.runs_dir = str(runs)
    template = create_run(cfg, folder, "bench")
    st = read_status(template.path)
    st.state, st.step, st.max_steps, st.loss, st.started, st.ended = "finished", 100, 100, 1.23, time.time() - 60, time.time()
    if legacy:
        st.summary = None
    write_status(template.path, st)
    for i in range(1, count):
        copy = runs / f"bench-{i:05d}"
        shutil.copytree(template.path, copy)
        meta = json.loads((copy / "run.json").read_text())
        meta.update(name=copy.name, created=meta["created"] + i)
        (copy / "run.json").write_text(json.dumps(meta))
    return runs


def time_ls(runs: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tui_tuner", "runs", "ls", "--runs-dir", str(runs)], check=True,
                   stdout=subprocess.DEVNULL, env=env, cwd=ROOT)
    return time.perf_counter() - start


async def screen_fill_s(runs: Path, expected: int) -> float:
    from textual.widgets import DataTable

    from tui_tuner.tui.app import build_app

    start = time.perf_counter()  # from opening the app on the Runs screen
    app = build_app(project_dir=runs.parent, runs_dir=runs, offer_reattach=False, start_screen="runs")
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one(DataTable)
        while table.row_count < expected:
            await pilot.pause(0.01)
            if time.perf_counter() - start > 120:
                raise TimeoutError(f"the Runs screen showed {table.row_count} of {expected} runs after 120 s")
        return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--counts", default="1,200,1000")
    ap.add_argument("--screen-runs", type=int, default=200)
    args = ap.parse_args(argv)
    counts = [int(c) for c in args.counts.split(",")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        for legacy in (False, True):
            folders = {n: build_runs(Path(tmp) / f"{'legacy' if legacy else 'new'}-{n}", n, legacy) for n in counts}
            for n in counts:
                time_ls(folders[n], env)  # warm the file cache
            times: dict[int, list[float]] = {n: [] for n in counts}
            for i in range(args.repeats):
                for n in (counts if i % 2 == 0 else counts[::-1]):
                    times[n].append(time_ls(folders[n], env))
            label = "runs written before the status summary (config.yaml parsed)" if legacy else "runs"
            base = statistics.median(times[counts[0]])
            for n in counts:
                med = statistics.median(times[n])
                print(f"runs ls, {n:5d} {label}: median {med * 1000:6.0f} ms over {args.repeats}  "
                      f"({med / base:.2f}x {counts[0]} run)", flush=True)
        one = build_runs(Path(tmp) / "screen-1", 1)
        many = build_runs(Path(tmp) / "screen-many", args.screen_runs)
        asyncio.run(screen_fill_s(one, 1))  # imports the screens once
        fills: dict[int, list[float]] = {1: [], args.screen_runs: []}
        for i in range(args.repeats):
            for folder, n in ((one, 1), (many, args.screen_runs))[:: 1 if i % 2 == 0 else -1]:
                fills[n].append(asyncio.run(screen_fill_s(folder, n)))
        fill, base = statistics.median(fills[args.screen_runs]), statistics.median(fills[1])
        print(f"Runs screen, from opening the app to a full table: 1 run {base * 1000:.0f} ms, "
              f"{args.screen_runs} runs {fill * 1000:.0f} ms (median over {args.repeats}; goal < 1000 ms for "
              f"{args.screen_runs} runs: {'met' if fill < 1.0 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
