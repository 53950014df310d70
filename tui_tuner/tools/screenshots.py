"""Regenerate `screenshots/*.svg`: every TUI screen, from the real app, with real tiny runs.

    PYTHONPATH=$PWD python -m tui_tuner.tools.screenshots [--out screenshots] [--steps 40]

Builds the offline demo model if needed, trains two short quickstart runs (LoRA r=16 and
r=32) with the real worker, starts one more that fails (its dataset is missing), then
drives the app headless and saves an SVG of the Hardware, Config, Train, Runs, Compare,
Eval (after running `tui-tuner eval` from the Eval view, tuned vs base), Chat (one streamed
answer, then base vs tuned) and Learn screens at 120x36 (Compare also with the runs' sample
answers), plus Config, Train, the Samples panel, Eval, Chat and Export (a q8_0 GGUF through
`tui-tuner export`) at 80x24, and the first screen in an empty folder (the quickstart offer). Takes a few minutes on a CPU. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WIDE = (120, 36)
SMALL = (80, 24)


def prepare_project(folder: Path) -> Path:
    """A project folder with the quickstart config and its data."""
    (folder / "configs").mkdir(parents=True)
    shutil.copy(ROOT / "configs" / "quickstart.yaml", folder / "configs" / "quickstart.yaml")
    shutil.copytree(ROOT / "data", folder / "data")
    return folder


def train_runs(project: Path, runs_dir: Path, steps: int) -> list:
    """Two finished runs that differ in r, and one failed run; returns their RunDirs."""
    from tui_tuner.config.schema import load_config_or_raise
    from tui_tuner.rundir.runs import create_run, start_worker

    base = load_config_or_raise(project / "configs" / "quickstart.yaml")
    base.output.runs_dir = str(runs_dir)
    base.training.max_steps = steps
    base.training.eval_steps = max(1, steps // 4)
    base.training.save_steps = max(1, steps // 2)
    runs = []
    for r in (16, 32):
        cfg = base.model_copy(deep=True)
        cfg.lora.r, cfg.lora.alpha = r, 2 * r
        runs.append(create_run(cfg, project, name=f"quickstart-r{r}"))
    broken = base.model_copy(deep=True)
    broken.data.train = "data/missing.jsonl"  # the worker fails on it, with its error and hint
    runs.append(create_run(broken, project, name="missing-data"))
    for run in runs:
        start_worker(run)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        states = [run.status().state for run in runs]
        print("  " + ", ".join(f"{run.name.split('-2')[0]}: {s}" for run, s in zip(runs, states)), flush=True)
        if all(s in ("finished", "stopped", "failed", "crashed") for s in states):
            return runs
        time.sleep(5)
    raise SystemExit("the screenshot runs did not finish in 15 minutes")


def _existing_runs(runs_dir: Path) -> list | None:
    """The three screenshot runs from an earlier `--workdir` call, when all are there and ended."""
    from tui_tuner.rundir.runs import list_runs

    found = {}
    for run in list_runs(runs_dir):
        for prefix in ("quickstart-r16", "quickstart-r32", "missing-data"):
            if run.name.startswith(prefix + "-") and run.status().is_final:
                found[prefix] = run
    if len(found) < 3:
        return None
    return [found["quickstart-r16"], found["quickstart-r32"], found["missing-data"]]


async def pause(pilot, seconds: float) -> None:
    for _ in range(int(seconds / 0.1)):
        await pilot.pause(0.1)


async def until(pilot, condition, seconds: float = 30) -> None:
    for _ in range(int(seconds / 0.1)):
        if condition():
            return
        await pilot.pause(0.1)


async def shoot(project: Path, runs_dir: Path, runs: list, out: Path) -> list[Path]:
    from tui_tuner.tui.app import build_app

    good, better, failed = runs
    saved: list[Path] = []

    def save(app, name: str) -> None:
        path = out / f"{name}.svg"
        app.save_screenshot(filename=path.name, path=str(out))
        saved.append(path)

    async def show_eval(app, pilot, run, *, evaluate: bool = True) -> None:
        """Runs → e on `run`; with `evaluate`, runs the evaluation (tuned vs base) when the run has no report yet."""
        await app.switch_mode("runs")
        table = app.screen.query_one("#runs-table")
        await until(pilot, lambda: table.row_count >= 3)
        table.move_cursor(row=[r.key.value for r in table.ordered_rows].index(run.name))
        await pilot.press("e")
        screen = app.screen
        await until(pilot, lambda: screen.report is not None or "no evaluation" in str(
            screen.query_one("#eval-message").content))
        if screen.report is None and evaluate:
            await pilot.press("r")
            await until(pilot, lambda: screen.report is not None, seconds=1500)  # a loaded CPU box is slow
            if screen.report is None:
                raise SystemExit("the Eval view did not get a report: " + str(screen.query_one("#eval-status").content))
        await pause(pilot, 0.5)
        if screen.report is None:
            return
        flagged = [i for i, p in enumerate(screen.report.prompts)
                   if any(a.possible_hallucination for a in p.answers.values())]
        if flagged:  # show what a flagged answer looks like
            screen.query_one("#eval-prompts").move_cursor(row=flagged[0])
            await pause(pilot, 0.3)

    async def show_chat(app, pilot, run, prompts: list[str], *, compare: bool = False) -> None:
        """Chat: load `run`, send each prompt (greedy) and wait for the streamed answers."""
        await app.switch_mode("chat")
        screen = app.screen
        if screen.chat is None:
            picker = screen.query_one("#chat-run")
            await until(pilot, lambda: len(picker._options) > 1)
            picker.value = str(run.path)
            await pilot.pause()
            screen.load(str(run.path))
            await until(pilot, lambda: screen.chat is not None, seconds=120)
            screen.query_one("#gen-temperature").value = "0"
            screen.query_one("#gen-max_new_tokens").value = "48"
        if compare and not screen.compare:
            await pilot.press("ctrl+b")
        for prompt in prompts:
            screen.send(prompt)
            await pilot.pause()
            await until(pilot, lambda: not screen.generating, seconds=120)
        await pause(pilot, 0.3)

    async def show_export(app, pilot, run) -> None:
        """Runs → g on `run`: a q8_0 GGUF + Modelfile through `tui-tuner export`, then its commands."""
        await app.switch_mode("runs")
        while len(app.screen_stack) > 1:  # the Eval view shown earlier is still open on Runs
            await app.pop_screen()
        table = app.screen.query_one("#runs-table")
        await until(pilot, lambda: table.row_count >= 3)
        table.move_cursor(row=[r.key.value for r in table.ordered_rows].index(run.name))
        await pilot.press("g")
        screen = app.screen
        await pause(pilot, 0.3)
        await pilot.press("r")
        await until(pilot, lambda: screen.outcome is not None, seconds=600)
        if screen.outcome is None or not screen.outcome.ok:
            raise SystemExit("the Export view's export failed: " + "\n".join(screen.outcome.log if screen.outcome else []))
        await pause(pilot, 0.5)

    for size, suffix in ((WIDE, ""), (SMALL, "-80x24")):
        app = build_app(project_dir=project, runs_dir=runs_dir, offer_reattach=False,
                        config_path=project / "configs" / "quickstart.yaml")
        async with app.run_test(size=size) as pilot:
            await until(pilot, lambda: app.screen.ready)
            await pause(pilot, 1.5)  # the dataset check
            save(app, f"config{suffix}")
            app.attach(better)
            await until(pilot, lambda: getattr(app.screen, "snapshot", None) is not None)
            await pause(pilot, 0.5)
            save(app, f"train{suffix}")
            await pilot.press("a")  # the Samples panel: answers by step
            await until(pilot, lambda: app.screen.has_class("-samples"))
            await pause(pilot, 0.5)
            save(app, f"train-samples{suffix}")
            await pilot.press("a")
            if suffix:
                await show_eval(app, pilot, better)
                save(app, "eval-80x24")
                await show_chat(app, pilot, better, ["How heavy is Bramble?"])
                save(app, "chat-80x24")
                await show_export(app, pilot, better)
                save(app, "export-80x24")
                continue
            app.theme = "textual-light"
            await pause(pilot, 0.5)
            save(app, "train-light")
            app.theme = "textual-dark"
            app.attach(failed)
            await pause(pilot, 1.0)
            save(app, "train-failed")
            await app.switch_mode("config")
            screen = app.screen
            screen.query_one("#field-lora-r").focus()
            await pilot.pause()
            screen.query_one("#field-lora-r").value = "0"
            await pause(pilot, 0.8)
            save(app, "config-error")
            await app.switch_mode("hardware")
            await until(pilot, lambda: bool(app.screen.query("FitPanel")))
            await pause(pilot, 1.5)
            save(app, "hardware")
            await app.switch_mode("runs")
            await pause(pilot, 1.0)
            await pilot.press("down", "space", "down", "space")
            await pause(pilot, 0.3)
            save(app, "runs")
            await pilot.press("c")
            await pause(pilot, 1.5)
            save(app, "compare")
            await pilot.press("s")  # the runs' latest sample answers, side by side
            await pause(pilot, 0.8)
            save(app, "compare-samples")
            await pilot.press("escape")
            await show_eval(app, pilot, good, evaluate=False)  # never evaluated: the view offers to
            save(app, "eval-none")
            await pilot.press("escape")
            await show_eval(app, pilot, better)
            save(app, "eval")
            await pilot.press("escape")
            await show_chat(app, pilot, better, ["How heavy is Bramble?"])
            save(app, "chat")
            app.screen.action_clear()
            await show_chat(app, pilot, better, ["What is the name of Bramble's charging dock?"], compare=True)
            save(app, "chat-compare")
            await app.switch_mode("learn")
            await until(pilot, lambda: getattr(app.screen, "report", None) is not None, seconds=120)
            await pause(pilot, 0.5)
            save(app, "learn")
            app.screen.query_one("#learn-tabs").active = "tab-experiments"
            await until(pilot, lambda: app.screen.query_one("#experiments-table").row_count >= 3)
            await pause(pilot, 0.5)
            save(app, "learn-experiments")
    # The first thing `tui-tuner` shows in an empty folder: the offer to write the quickstart.
    with tempfile.TemporaryDirectory(prefix="tui-tuner-empty-") as empty:
        app = build_app(project_dir=Path(empty), offer_reattach=False)
        async with app.run_test(size=SMALL) as pilot:
            await until(pilot, lambda: type(app.screen).__name__ == "ConfirmModal")
            await pause(pilot, 0.5)
            save(app, "first-run-80x24")
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "screenshots")
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per screenshot run")
    parser.add_argument("--workdir", type=Path, help="keep the project and its runs here; runs already "
                        "there are reused (re-shoot without re-training)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from tui_tuner.models.demo import ensure_demo_model

    print("demo model:", ensure_demo_model())
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tui-tuner-shots-") as tmp:
        work = (args.workdir or Path(tmp)).resolve()
        project = work / "project"
        runs_dir = project / "runs"
        existing = _existing_runs(runs_dir)
        if existing is None:
            shutil.rmtree(project, ignore_errors=True)
            prepare_project(project)
            print("training the screenshot runs...")
            existing = train_runs(project, runs_dir, args.steps)
        cwd = os.getcwd()
        os.chdir(project)  # paths in the screenshots read relative to the project
        try:
            saved = asyncio.run(shoot(project, runs_dir, existing, args.out.resolve()))
        finally:
            os.chdir(cwd)
    for path in saved:
        print("wrote", path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
