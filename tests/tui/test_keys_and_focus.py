"""Keys a newcomer presses first: focus starts where no key is eaten, Tab leaves the YAML editor,
`q` quits from every screen unless a text field is being edited, unsaved edits are asked about,
and the key bar fits 80 columns with whole keys only."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input

from tests.tui.conftest import wait_until
from tui_tuner.tui.app import build_app
from tui_tuner.tui.screens.modals import ConfirmModal
from tui_tuner.tui.widgets.issue_list import IssueList
from tui_tuner.tui.widgets.key_bar import KeyBar, KeyEntry, fit_entries
from tui_tuner.tui.widgets.yaml_editor import YamlEditor

CONFIG = """model:
  name_or_path: tui-tuner/demo-tiny-llama
lora:
  r: 8
training:
  max_steps: 5
data:
  train: data/train.jsonl
"""


def app_in(project: Path):
    config = project / "configs" / "small.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    (project / "data" / "train.jsonl").write_text('{"instruction": "hi", "output": "hello"}\n' * 8)
    return build_app(project_dir=project, config_path=config, runs_dir=project / "runs", offer_reattach=False)


async def config_ready(pilot):
    screen = pilot.app.screen
    assert await wait_until(pilot, lambda: screen.ready)
    return screen


async def test_opens_with_focus_that_eats_no_key_and_q_quits(project):
    app = app_in(project)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await config_ready(pilot)
        assert await wait_until(pilot, lambda: isinstance(app.focused, IssueList))
        await pilot.press("q")
        assert await wait_until(pilot, lambda: app.return_code is not None or not app.is_running)
        assert "q" not in screen.text.replace("quick", "")


async def test_tab_leaves_the_yaml_editor_and_ctrl_bracket_indents(project):
    app = app_in(project)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await config_ready(pilot)
        editor = screen.query_one(YamlEditor)
        before = editor.text
        editor.focus()
        editor.move_cursor((3, 0))
        await pilot.press("tab")
        assert await wait_until(pilot, lambda: not editor.has_focus)
        assert editor.text == before  # Tab never types into the config
        editor.focus()
        editor.move_cursor((3, 0))
        await pilot.press("ctrl+right_square_bracket")
        assert await wait_until(pilot, lambda: editor.document.get_line(3) == "    r: 8")
        await pilot.press("ctrl+backslash")
        assert await wait_until(pilot, lambda: editor.document.get_line(3) == "  r: 8")
        # Enter keeps the indent of the section it is in.
        editor.move_cursor((3, len("  r: 8")))
        await pilot.press("enter")
        assert await wait_until(pilot, lambda: editor.document.get_line(4) == "  ")
        # Typing q in the editor types it; escape leaves the editor, then q quits (asking first:
        # the config is now modified).
        await pilot.press("q")
        assert await wait_until(pilot, lambda: editor.document.get_line(4) == "  q")
        assert app.is_running
        await pilot.press("escape", "q")
        assert await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal))


@pytest.mark.parametrize("key", ["q", "ctrl+c"])
async def test_unsaved_edits_ask_before_quitting(project, key):
    app = app_in(project)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await config_ready(pilot)
        r_input = screen.query_one("#field-lora-r", Input)
        r_input.focus()
        assert await wait_until(pilot, lambda: r_input.has_focus)
        r_input.value = "16"
        assert await wait_until(pilot, lambda: screen.dirty)
        screen.set_focus(None)
        await pilot.press(key)
        assert await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal))
        await pilot.press("n")  # stay
        assert await wait_until(pilot, lambda: not isinstance(app.screen, ConfirmModal))
        assert app.is_running and screen.dirty
        await pilot.press(key)
        assert await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal))
        await pilot.press("y")
        assert await wait_until(pilot, lambda: not app.is_running)


@pytest.mark.parametrize("mode", ["hardware", "train", "runs", "chat", "learn"])
async def test_q_quits_from_every_screen(project, mode):
    app = app_in(project)
    async with app.run_test(size=(80, 24)) as pilot:
        await config_ready(pilot)
        await pilot.press({"hardware": "f1", "train": "f3", "runs": "f4", "chat": "f5", "learn": "f6"}[mode])
        assert await wait_until(pilot, lambda: app.current_mode == mode)
        await pilot.pause()
        if isinstance(app.focused, Input):  # a text field being edited keeps its keys
            await pilot.press("escape")
        await pilot.press("q")
        assert await wait_until(pilot, lambda: not app.is_running)


@pytest.mark.parametrize("mode", ["hardware", "config", "train", "runs", "chat", "learn"])
async def test_key_bar_fits_80_columns_with_whole_keys(project, mode):
    app = app_in(project)
    async with app.run_test(size=(80, 24)) as pilot:
        await config_ready(pilot)
        await pilot.press({"hardware": "f1", "config": "f2", "train": "f3", "runs": "f4", "chat": "f5",
                           "learn": "f6"}[mode])
        assert await wait_until(pilot, lambda: app.current_mode == mode and app.screen.query(KeyBar))
        await pilot.pause()
        bar = app.screen.query_one(KeyBar)
        line = bar.render_line(0).text
        entries = bar.entries()
        assert len(line.rstrip()) <= 80
        assert any(e.description == "Quit" for e in entries), line
        assert any(e.description in ("screens", "Config") for e in entries), line
        for entry in entries:  # every shown key is whole: its key and its description
            assert f"{entry.display} {entry.description}".strip() in line
        # Nothing but the shown keys: no half-word left over from a key that did not fit.
        rest = line
        for entry in entries:
            rest = rest.replace(f"{entry.display} {entry.description}".strip(), "", 1)
        assert rest.strip() == ""


def test_fit_entries_folds_screen_keys_then_drops_from_the_end():
    local = [KeyEntry("ctrl+s", "^s", "Save"), KeyEntry("ctrl+r", "^r", "Start run")]
    quit_ = [KeyEntry("q", "q", "Quit")]
    screens = [KeyEntry(f"f{n}", f"f{n}", name) for n, name in enumerate(["Hardware", "Config", "Train"], 1)]
    palette = [KeyEntry("ctrl+p", "^p", "palette")]
    assert fit_entries(local, quit_, screens, palette, 200) == local + quit_ + screens + palette
    narrow = fit_entries(local, quit_, screens, palette, 56)
    assert [e.description for e in narrow] == ["Save", "Start run", "Quit", "screens", "palette"]
    assert narrow[3].display == "f1-f3"
    # The palette goes first, then local keys from the end; quit and the screens stay.
    assert [e.description for e in fit_entries(local, quit_, screens, palette, 50)] == \
        ["Save", "Start run", "Quit", "screens"]
    assert [e.description for e in fit_entries(local, quit_, screens, palette, 30)] == ["Save", "Quit", "screens"]
