"""Config screen: the form and the YAML stay in step, errors sit beside their field and line,
and a config with errors cannot start a run."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Button, Input, Static

from tests.tui.conftest import wait_until
from tui_tuner.tui.app import build_app
from tui_tuner.tui.screens.config import ConfigScreen
from tui_tuner.tui.widgets.issue_list import IssueList
from tui_tuner.tui.widgets.yaml_editor import YamlEditor

GOOD = """# a small run
model:
  name_or_path: tui-tuner/demo-tiny-llama   # built locally
method: lora
lora:
  r: 16
training:
  max_steps: 5
data:
  train: data/train.jsonl
"""


def write_config(project: Path, text: str = GOOD) -> Path:
    path = project / "configs" / "small.yaml"
    path.write_text(text, encoding="utf-8")
    (project / "data" / "train.jsonl").write_text('{"instruction": "hi", "output": "hello"}\n' * 8)
    return path


def app_for(project: Path, config: Path):
    return build_app(project_dir=project, config_path=config, runs_dir=project / "runs", offer_reattach=False)


async def ready(pilot) -> ConfigScreen:
    """The Config screen once its schema has loaded (it loads right after the first frame)."""
    screen = pilot.app.screen
    assert await wait_until(pilot, lambda: screen.ready)
    return screen


async def test_form_error_appears_beside_its_field_and_blocks_start(project):
    app = app_for(project, write_config(project))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        assert isinstance(screen, ConfigScreen)
        r_input = screen.query_one("#field-lora-r", Input)
        r_input.focus()
        # Focus lands first, as when a person clicks or tabs into the field: the form writes
        # back only what is typed in the focused field.
        assert await wait_until(pilot, lambda: r_input.has_focus)
        r_input.value = "-3"
        assert await wait_until(pilot, lambda: "  r: -3" in screen.text)
        screen.validate_now()
        await pilot.pause()
        error = screen.query_one("#field-lora-r-error", Static)
        assert error.display
        assert "-3" in str(error.render())
        assert r_input.has_class("-invalid")
        # The YAML line changed with the form, comment kept, and it is marked.
        editor = screen.query_one(YamlEditor)
        assert "  r: -3" in editor.text
        assert "# built locally" in editor.text
        assert 5 in editor._error_lines  # line 6, 0-based
        assert screen.query_one("#start", Button).disabled
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert not (project / "runs").exists() or not any((project / "runs").iterdir())


async def test_yaml_error_is_listed_with_its_line_and_fills_no_field(project):
    app = app_for(project, write_config(project))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        editor = screen.query_one(YamlEditor)
        editor.load_text(GOOD.replace("  r: 16", "  rank: 16"))
        screen.validate_now()
        await pilot.pause()
        issues = screen.query_one(IssueList)
        texts = [str(issues.get_option_at_index(i).prompt) for i in range(issues.option_count)]
        assert any("line 6" in t and "lora.rank" in t and "unknown key" in t for t in texts), texts
        assert screen.errors and screen.query_one("#start", Button).disabled
        # Fixing the text clears the error.
        editor.load_text(GOOD)
        screen.validate_now()
        await pilot.pause()
        assert not screen.loaded.errors


async def test_yaml_edit_refills_the_form(project):
    app = app_for(project, write_config(project))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        editor = screen.query_one(YamlEditor)
        editor.load_text(GOOD.replace("  r: 16", "  r: 64"))
        screen.validate_now()
        await pilot.pause()
        assert screen.query_one("#field-lora-r", Input).value == "64"
        # A key missing from the YAML shows the schema default.
        assert screen.query_one("#field-training-batch-size", Input).value == "2"


async def test_form_adds_a_missing_key_to_its_section(project):
    app = app_for(project, write_config(project))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        box = screen.query_one("#field-training-learning-rate", Input)
        box.focus()
        assert await wait_until(pilot, lambda: box.has_focus)  # the form writes back only the focused field
        box.value = "1e-4"
        assert await wait_until(pilot, lambda: "learning_rate" in screen.text)
        screen.validate_now()
        assert "training:\n  max_steps: 5\n  learning_rate: 0.0001" in screen.text
        assert screen.loaded.ok and screen.loaded.config.training.learning_rate == 1e-4


async def test_save_as_writes_the_text_and_save_overwrites(project):
    config = write_config(project)
    app = app_for(project, config)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        target = project / "configs" / "copy.yaml"
        await pilot.press("f9")
        await pilot.pause()
        path_box = app.screen.query_one("#path", Input)
        path_box.value = str(target)
        await pilot.press("enter")
        await pilot.pause()
        assert target.read_text() == GOOD
        assert screen.config_path == target
        screen.query_one(YamlEditor).load_text(GOOD.replace("r: 16", "r: 8"))
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "r: 8" in target.read_text()
        assert config.read_text() == GOOD


async def test_open_lists_project_configs(project):
    config = write_config(project)
    (project / "configs" / "other.yaml").write_text(GOOD.replace("r: 16", "r: 4"))
    app = app_for(project, config)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+o")
        await pilot.pause()
        await pilot.press("enter")  # first entry: configs/other.yaml (sorted)
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ConfigScreen)
        assert screen.config_path.name == "other.yaml"
        assert "r: 4" in screen.text


async def test_opening_a_config_changes_nothing_in_it(project):
    # The form is filled from the YAML; filling it must never write back (a Select settling
    # on its first choice once flipped `method: qlora` to lora).
    text = GOOD.replace("method: lora", "method: qlora")
    app = app_for(project, write_config(project, text))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        for _ in range(10):
            await pilot.pause(0.05)
        assert screen.text == text
        assert not screen.dirty
