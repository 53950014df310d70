"""How fast the TUI opens and how much one Train-screen refresh costs on a long run.

    PYTHONPATH=$PWD python bench/tui_startup.py [--repeats 5]

1. Time to first frame (Textual's `Ready` event: the first frame has been displayed) of
   the tui-tuner app vs a minimal Textual app (a Static and a Footer), each in a fresh
   interpreter, measured from process launch, alternating so machine noise hits both alike.
   Printed as medians and a ratio (target <= 1.5x), with the list of heavy modules
   (torch, transformers, ...) the app had imported by its first frame (target: none).
2. One Train-screen refresh (read what was appended, then redraw every widget) on a run
   whose events file has 100,000 lines vs one with 100 lines (target: about equal),
   after the initial catch-up read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "datasets", "peft", "trl", "unsloth", "bitsandbytes")

CHILD_APP = """
import sys, time, json
from tui_tuner.tui.app import TunerApp
class Timed(TunerApp):
    def on_ready(self):
        super().on_ready()
        print(json.dumps({"frame": True, "heavy": sorted(m for m in %r if m in sys.modules)}), flush=True)
        self.exit()
Timed(offer_reattach=False).run(headless=True, size=(80, 24))
""" % (HEAVY,)

CHILD_MINIMAL = """
import json
from textual.app import App
from textual.widgets import Footer, Static
class Minimal(App):
    BINDINGS = [("q", "quit", "Quit")]
    def compose(self):
        yield Static("hello")
        yield Footer()
    def on_ready(self):
        print(json.dumps({"frame": True, "heavy": []}), flush=True)
        self.exit()
Minimal().run(headless=True, size=(80, 24))
"""


def time_to_first_frame(code: str, cwd: Path) -> tuple[float, list[str]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=cwd, env=env)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith('{"frame"'):
            elapsed = time.perf_counter() - start
            proc.wait(timeout=60)
            return elapsed, json.loads(line)["heavy"]
    raise RuntimeError(f"child ended without a first frame: {proc.stderr.read() if proc.stderr else ''}")


def bench_startup(repeats: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        shutil_configs = ROOT / "configs" / "quickstart.yaml"
        if shutil_configs.is_file():  # open on the quickstart, as a user in the project would
            (cwd / "configs").mkdir()
            (cwd / "configs" / "quickstart.yaml").write_text(shutil_configs.read_text())
        time_to_first_frame(CHILD_MINIMAL, cwd)  # warm the file cache for both
        time_to_first_frame(CHILD_APP, cwd)
        app_times, minimal_times, heavy = [], [], set()
        for _ in range(repeats):
            t, _ = time_to_first_frame(CHILD_MINIMAL, cwd)
            minimal_times.append(t)
            t, h = time_to_first_frame(CHILD_APP, cwd)
            app_times.append(t)
            heavy.update(h)
    app_s, minimal_s = statistics.median(app_times), statistics.median(minimal_times)
    print(f"first frame, median of {repeats} (80x24, headless):")
    print(f"  minimal Textual app  {minimal_s * 1000:7.0f} ms")
    print(f"  tui-tuner            {app_s * 1000:7.0f} ms")
    print(f"  ratio                {app_s / minimal_s:7.2f}x   (target <= 1.5x)")
    print(f"  heavy modules imported by the first frame: {sorted(heavy) or 'none'}")


def write_events(run_dir_events: Path, lines: int) -> None:
    with open(run_dir_events, "w", encoding="utf-8") as fh:
        for step in range(1, lines + 1):
            fh.write(json.dumps({"t": step, "kind": "log", "step": step, "loss": 2.0 / (1 + step / 1000),
                                 "learning_rate": 2e-4, "grad_norm": 1.0, "tokens_per_s": 1000.0,
                                 "eta_s": 10.0}) + "\n")


async def refresh_cost(lines: int, refreshes: int) -> float:
    from tui_tuner.config.schema import RunConfig
    from tui_tuner.rundir.events import EventWriter
    from tui_tuner.rundir.runs import create_run
    from tui_tuner.tui.app import build_app

    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        cfg = RunConfig()
        cfg.output.runs_dir = str(runs)
        run = create_run(cfg, tmp, name=f"bench-{lines}")
        write_events(run.events_path, lines)
        app = build_app(project_dir=Path(tmp), runs_dir=runs, offer_reattach=False)
        async with app.run_test(size=(200, 50)) as pilot:
            app.attach(run)
            await pilot.pause()
            screen = app.screen
            while screen._polling or screen.snapshot is None:  # the one-off catch-up read when attaching
                await pilot.pause(0.05)
            screen._polling = True  # hold the screen's own timer off: this loop does the polling now
            timings = []
            with EventWriter(run.events_path) as writer:
                for i in range(refreshes):
                    writer.write("log", step=lines + i + 1, loss=1.0, learning_rate=2e-4)
                    start = time.perf_counter()
                    screen.show_snapshot(screen.view.poll())
                    await pilot.pause()  # lets the compositor repaint the changed widgets
                    timings.append(time.perf_counter() - start)
            return statistics.median(timings)


def bench_refresh(refreshes: int) -> None:
    small = asyncio.run(refresh_cost(100, refreshes))
    large = asyncio.run(refresh_cost(100_000, refreshes))
    print(f"\none Train-screen refresh (read appended events + redraw, 200x50), median of {refreshes}:")
    print(f"  events file of 100 lines      {small * 1000:6.1f} ms")
    print(f"  events file of 100,000 lines  {large * 1000:6.1f} ms")
    print(f"  ratio                         {large / small:6.2f}x   (target: about 1x)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--refreshes", type=int, default=30)
    args = parser.parse_args(argv)
    bench_startup(args.repeats)
    bench_refresh(args.refreshes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
