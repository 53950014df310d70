"""Each objective beyond SFT picked in the Config screen's form and started from the TUI.

The objective is chosen in the form's Objective select (GRPO's reward functions in the reward
picker, which refuses a user function its file does not define), Start runs the checks and the
worker, a separate process, trains two steps; the Train screen follows it to the end and the
run's events hold the objective's own metric. SFT from the TUI is tests/tui/test_live_training.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from textual.widgets import Input, Select, SelectionList, Static

from tests.tui.conftest import wait_until
from tui_tuner.rundir.events import RunHistory, read_events
from tui_tuner.tui.app import build_app
from tui_tuner.tui.screens.config import ConfigScreen
from tui_tuner.tui.screens.modals import RewardPickerModal
from tui_tuner.tui.screens.train import TrainScreen
from tui_tuner.tui.widgets.line_chart import LineChart

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
TRAIN_TIMEOUT_S = 300.0


def write_project(root: Path, objective: str) -> Path:
    """A project whose config trains the demo model two steps on the data `objective` reads (objective not set)."""
    shutil.copytree(REPO / "data", root / "data")
    (root / "configs").mkdir()
    (root / "rewards.py").write_text("def starts_with_think(prompts, completions, **kwargs):\n"
                                     "    return [float(str(c).lstrip().startswith('<think>')) for c in completions]\n")
    grpo = objective == "grpo"
    config = {
        "model": {"name_or_path": "tui-tuner/demo-tiny-llama", "dtype": "float32", "max_seq_length": 128},
        "method": "lora", "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
        "data": {"train": "data/math_prompts.jsonl" if grpo else "data/preference_sample.jsonl"},
        "training": {"max_steps": 2, "batch_size": 4, "learning_rate": 1e-3, "gradient_checkpointing": False,
                     "logging_steps": 1, "save_steps": 100},
        "output": {"run_name": f"tui-{objective}"},
        "backend": "transformers",
    }
    if grpo:
        config["grpo"] = {"num_generations": 4, "max_completion_length": 8}
    path = root / "configs" / "run.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


async def pick_rewards(pilot, screen: ConfigScreen) -> None:
    """In the picker: untick answer_match, name a function the file lacks (refused), then one it has."""
    await pilot.click("#field-grpo-rewards-pick")
    assert await wait_until(pilot, lambda: isinstance(pilot.app.screen, RewardPickerModal))
    modal = pilot.app.screen
    choices = modal.query_one(SelectionList)
    assert set(choices.selected) == {"format", "answer_match"}  # the defaults, ticked
    assert await wait_until(pilot, lambda: choices.has_focus)
    await pilot.press("down", "space")  # the cursor starts on format; answer_match is next
    assert await wait_until(pilot, lambda: set(choices.selected) == {"format"})
    own = modal.query_one("#own-rewards", Input)
    own.value = "rewards.py:no_such_function"
    await pilot.click("#ok")
    problem = modal.query_one("#reward-problem", Static)
    assert await wait_until(pilot, lambda: "defines no function `no_such_function`" in str(problem.render()))
    assert pilot.app.screen is modal  # stays open until the names are usable
    own.value = "rewards.py:starts_with_think"
    own.focus()
    assert await wait_until(pilot, lambda: own.has_focus)
    await pilot.press("enter")
    assert await wait_until(pilot, lambda: pilot.app.screen is screen, timeout=10), str(problem.render())
    assert await wait_until(pilot, lambda: "rewards: [format, 'rewards.py:starts_with_think']" in screen.text)
    field = screen.query_one("#field-grpo-rewards", Input)
    assert await wait_until(pilot, lambda: field.value == "format, rewards.py:starts_with_think")


@pytest.mark.parametrize("objective, metric", [
    ("dpo", "rewards/accuracies"),
    ("orpo", "rewards/margins"),
    ("kto", "kl"),
    ("reward", "accuracy"),
    ("grpo", "rewards/starts_with_think/mean"),
])
async def test_objective_picked_in_the_form_trains_from_the_tui(tmp_path, demo_model_dir, objective, metric):
    config_path = write_project(tmp_path, objective)
    runs = tmp_path / "runs"
    app = build_app(project_dir=tmp_path, runs_dir=runs, config_path=config_path, offer_reattach=False)
    run = None
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            screen = app.screen
            assert isinstance(screen, ConfigScreen)
            assert await wait_until(pilot, lambda: screen.ready)
            rewards_row = screen.query_one("#field-grpo-rewards-row")
            assert not rewards_row.display  # an SFT config: no reward functions to pick
            select = screen.query_one("#field-objective", Select)
            select.focus()
            assert await wait_until(pilot, lambda: select.has_focus)
            select.value = objective
            assert await wait_until(pilot, lambda: f"objective: {objective}" in screen.text)
            assert await wait_until(pilot, lambda: rewards_row.display == (objective == "grpo"))
            if objective == "grpo":
                await pick_rewards(pilot, screen)
            assert await wait_until(pilot, lambda: not screen.errors and not screen.query_one("#start").disabled), \
                [f"{i.key}: {i.message}" for i in screen.errors]
            await pilot.press("ctrl+r")
            assert await wait_until(pilot, lambda: isinstance(app.screen, TrainScreen), timeout=120)
            train = app.screen
            run = app.attached_run
            assert await wait_until(pilot, lambda: train.snapshot is not None
                                    and train.snapshot.status.state in ("finished", "failed", "crashed"),
                                    timeout=TRAIN_TIMEOUT_S)
            assert train.snapshot.status.state == "finished", "\n".join(run.log_tail(30))
            assert train.query_one(LineChart).series  # the objective's curve is drawn
        assert yaml.safe_load((run.path / "config.yaml").read_text())["objective"] == objective
        history = RunHistory()
        history.add(read_events(run.events_path)[0])
        assert [e["step"] for e in history.logs] == [1, 2]
        assert metric in history.logs[-1], sorted(history.logs[-1])
    finally:
        if run is not None and run.status().state in ("running", "stopping", "queued"):
            run.request_stop(now=True)
