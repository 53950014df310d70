"""Own data end to end on the Config screen: train data, eval data and run name in the form;
moving the train data off the demo offers to drop the demo's eval set; moving to a real model
replaces the demo-only settings with a recipe and says what changed."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from textual.widgets import Input

from tests.tui.conftest import wait_until
from tui_tuner.config.recipe import leave_demo_settings, recipe_run_name
from tui_tuner.tui.app import build_app
from tui_tuner.tui.screens.modals import ConfirmModal

REPO = Path(__file__).resolve().parents[2]


def quickstart_app(project: Path):
    shutil.copy(REPO / "configs" / "quickstart.yaml", project / "configs" / "quickstart.yaml")
    for name in ("sample.jsonl", "heldout.jsonl"):
        shutil.copy(REPO / "data" / name, project / "data" / name)
    (project / "data" / "mine.jsonl").write_text('{"instruction": "Capital of France?", "output": "Paris."}\n' * 20)
    return build_app(project_dir=project, runs_dir=project / "runs", offer_reattach=False)


async def test_form_has_eval_data_eval_split_and_run_name(project):
    app = quickstart_app(project)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert await wait_until(pilot, lambda: screen.ready)
        assert screen.query_one("#field-data-eval", Input).value == "data/heldout.jsonl"
        assert screen.query_one("#field-output-run-name", Input).value == "quickstart"
        split = screen.query_one("#field-data-eval-split", Input)
        split.focus()
        assert await wait_until(pilot, lambda: split.has_focus)
        split.value = "0.2"
        assert await wait_until(pilot, lambda: "eval_split: 0.2" in screen.text)


async def test_new_train_data_offers_to_clear_the_demo_eval_set(project):
    app = quickstart_app(project)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert await wait_until(pilot, lambda: screen.ready)
        train = screen.query_one("#field-data-train", Input)
        train.focus()
        assert await wait_until(pilot, lambda: train.has_focus)
        train.value = "data/mine.jsonl"
        assert await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal))
        assert "Bramble" in str(app.screen.body)
        await pilot.press("y")
        assert await wait_until(pilot, lambda: not isinstance(app.screen, ConfirmModal)
                                and yaml.safe_load(screen.text)["data"].get("eval") is None)
        data = yaml.safe_load(screen.text)["data"]
        assert data["train"] == "data/mine.jsonl" and data["eval_split"] == 0.1
        assert screen.loaded.ok


async def test_hardware_model_brings_a_recipe_and_says_what_changed(project):
    app = quickstart_app(project)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert await wait_until(pilot, lambda: screen.ready)
        notes = []
        app.notify = lambda message, **kw: notes.append(message)  # what the user is told
        await app.carry_settings({("model", "name_or_path"): "Qwen/Qwen2.5-0.5B-Instruct", ("method",): "lora",
                                  ("model", "max_seq_length"): 1024, ("training", "batch_size"): 4, ("lora", "r"): 16})
        cfg = yaml.safe_load(screen.text)
        assert cfg["training"]["learning_rate"] == 2e-4
        assert cfg["model"]["dtype"] == "auto"
        assert cfg["output"]["run_name"] == "qwen2.5-0.5b-instruct-lora"
        assert cfg["training"]["gradient_checkpointing"] is True
        assert any("learning_rate: 0.003 -> 0.0002" in n and "run_name: quickstart" in n for n in notes), notes


def test_only_values_still_at_the_demo_value_change():
    raw = {"training": {"learning_rate": 3e-3}, "model": {"dtype": "bfloat16"}, "output": {"run_name": "mine"}}
    changes = leave_demo_settings(raw, "meta-llama/Llama-3.2-1B-Instruct", "full")
    assert [(c.key, c.new) for c in changes] == [("training.learning_rate", 2e-5)]
    assert leave_demo_settings(raw, "tui-tuner/demo-tiny-llama", "lora") == []
    assert recipe_run_name("unsloth/Llama-3.2-1B-Instruct", "qlora") == "llama-3.2-1b-instruct-qlora"


async def test_a_hub_dataset_id_as_train_data_is_checked_without_downloading(project, monkeypatch):
    """A hub id typed into the form: no "file not found", no modal, no download; offline says how to fetch it."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    app = quickstart_app(project)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert await wait_until(pilot, lambda: screen.ready)
        train = screen.query_one("#field-data-train", Input)
        train.focus()
        assert await wait_until(pilot, lambda: train.has_focus)
        train.value = "nobody-at-all/no-such-dataset"
        assert await wait_until(pilot, lambda: any("tui-tuner data pull nobody-at-all/no-such-dataset" in i.message
                                                   for i in screen.data_issues))
        messages = " ".join(i.message for i in screen.data_issues)
        assert "not found" not in messages and not isinstance(app.screen, ConfirmModal)
        assert yaml.safe_load(screen.text)["data"]["train"] == "nobody-at-all/no-such-dataset"
