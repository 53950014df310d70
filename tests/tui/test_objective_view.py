"""The Train screen shows a GRPO run's own curves and its latest completions with their rewards."""

from __future__ import annotations

import time

from tests.tui.conftest import wait_until
from tui_tuner.tui.app import build_app
from tui_tuner.tui.screens.train import TrainScreen
from tui_tuner.tui.widgets.completions_panel import CompletionsPanel
from tui_tuner.tui.widgets.line_chart import LineChart


def grpo_run(runs_dir, steps: int = 6):
    from tui_tuner.config.schema import RunConfig
    from tui_tuner.rundir.events import EventWriter
    from tui_tuner.rundir.runs import create_run
    from tui_tuner.rundir.status import RunStatus, write_status

    cfg = RunConfig.model_validate({"objective": "grpo", "data": {"train": "data/math_prompts.jsonl"},
                                    "grpo": {"rewards": ["format", "short"]}, "output": {"runs_dir": str(runs_dir)}})
    run = create_run(cfg, runs_dir, name="grpo-view")
    with EventWriter(run.events_path) as writer:
        for s in range(1, steps + 1):
            writer.write("log", step=s, loss=0.0, learning_rate=1e-5, reward=0.2 + 0.1 * s, reward_std=0.3,
                         **{"rewards/format/mean": 0.1 * s, "rewards/short/mean": 0.5,
                            "completions/mean_length": 40.0 - s, "completions/clipped_ratio": 0.5})
        writer.write("completions", step=steps, samples=[
            {"prompt": "What is 2 plus 3?", "completion": "<think>2+3</think> 5", "rewards": {"format": 1.0, "short": 0.9},
             "total": 1.9},
            {"prompt": "What is 2 plus 3?", "completion": "five, I think", "rewards": {"format": 0.0, "short": 0.7},
             "total": 0.7}])
    now = time.time()
    write_status(run.path, RunStatus(state="finished", step=steps, max_steps=steps, started=now - 60, ended=now))
    return run


async def test_grpo_run_shows_reward_curves_and_latest_completions(project):
    run = grpo_run(project / "runs")
    app = build_app(project_dir=project, runs_dir=project / "runs", offer_reattach=False)
    async with app.run_test(size=(100, 34)) as pilot:
        app.attach(run)
        screen = app.screen
        assert isinstance(screen, TrainScreen)
        assert await wait_until(pilot, lambda: screen.snapshot is not None and screen.snapshot.completions)
        await pilot.pause()
        chart = screen.query_one(LineChart)
        assert chart.border_title == "mean reward"
        assert [s.label for s in chart.series] == ["reward"] and len(chart.series[0].points) == 6
        await pilot.press("c")
        assert chart.border_title == "reward per function"
        assert [s.label for s in chart.series] == ["format", "short"]
        titles = []
        for _ in range(6):
            titles.append(chart.border_title)
            await pilot.press("c")
        assert "completion length" in titles and "loss" in titles
        panel = screen.query_one(CompletionsPanel)
        assert panel.display
        text = str(panel.render())
        assert "+1.90" in text and "<think>2+3</think> 5" in text and "format 1" in text
        assert text.index("+1.90") < text.index("+0.70")  # best first
