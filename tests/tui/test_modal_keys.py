"""Every dialog shows its own keys in a key bar at 80x24, and those keys do what the bar says."""

from __future__ import annotations

from tests.tui.conftest import wait_until
from tui_tuner.tui.app import build_app
from tui_tuner.tui.screens.modals import ChoiceModal, ConfirmModal, PathModal, TextModal
from tui_tuner.tui.widgets.key_bar import KeyBar


def _app(project):
    return build_app(project_dir=project, offer_reattach=False, offer_quickstart=False)


def _bar(app) -> str:
    return str(app.screen.query_one(KeyBar).render())


async def _open(pilot, app, modal, answers: list) -> None:
    assert await wait_until(pilot, lambda: app.screen.is_current and getattr(app.screen, "ready", True))
    app.push_screen(modal, answers.append)
    assert await wait_until(pilot, lambda: app.screen is modal and app.screen.query(KeyBar))


async def test_confirm_names_its_keys_after_its_buttons(project):
    app = _app(project)
    async with app.run_test(size=(80, 24)) as pilot:
        answers: list = []
        await _open(pilot, app, ConfirmModal("Delete run?", yes="Delete", no="Keep", danger=True), answers)
        assert await wait_until(pilot, lambda: "y Delete" in _bar(app) and "n Keep" in _bar(app))
        await pilot.press("y")
        assert await wait_until(pilot, lambda: answers == [True])
        await _open(pilot, app, ConfirmModal("Delete run?"), answers)
        assert await wait_until(pilot, lambda: "y Yes" in _bar(app) and "n No" in _bar(app))
        await pilot.press("escape")  # not shown (n says it), still cancels
        assert await wait_until(pilot, lambda: answers == [True, False])


async def test_path_shows_enter_in_the_field_and_enter_on_cancel_cancels(project):
    app = _app(project)
    async with app.run_test(size=(80, 24)) as pilot:
        answers: list = []
        await _open(pilot, app, PathModal("Save config as", "configs/mine.yaml"), answers)
        assert await wait_until(pilot, lambda: "Save" in _bar(app) and "esc Cancel" in _bar(app))
        await pilot.press("enter")
        assert await wait_until(pilot, lambda: answers == ["configs/mine.yaml"])
        await _open(pilot, app, PathModal("Export to", "out", action="Export"), answers)
        assert await wait_until(pilot, lambda: "Export" in _bar(app))
        app.screen.query_one("#cancel").focus()
        assert await wait_until(pilot, lambda: "Export" not in _bar(app) and "esc Cancel" in _bar(app))
        await pilot.press("enter")  # presses the focused Cancel button, not save
        assert await wait_until(pilot, lambda: answers == ["configs/mine.yaml", None])


async def test_choice_shows_pick_and_enter_picks(project):
    app = _app(project)
    async with app.run_test(size=(80, 24)) as pilot:
        answers: list = []
        modal = ChoiceModal("Pick a model", [("a", "model a"), ("b", "model b")])
        await _open(pilot, app, modal, answers)
        assert await wait_until(pilot, lambda: "Pick" in _bar(app) and "esc Cancel" in _bar(app))
        await pilot.press("down", "enter")
        assert await wait_until(pilot, lambda: answers == ["b"])
        await _open(pilot, app, ChoiceModal("Open a config", [], empty_text="no configs found"), answers)
        assert await wait_until(pilot, lambda: "esc Cancel" in _bar(app) and "Pick" not in _bar(app))
        await pilot.press("escape")
        assert await wait_until(pilot, lambda: answers == ["b", None])


async def test_text_shows_close(project):
    app = _app(project)
    async with app.run_test(size=(80, 24)) as pilot:
        answers: list = []
        await _open(pilot, app, TextModal("Why", "a long explanation " * 40), answers)
        assert await wait_until(pilot, lambda: "esc Close" in _bar(app))
        bar = app.screen.query_one(KeyBar)
        assert bar.region.y == 23
        await pilot.press("escape")
        assert await wait_until(pilot, lambda: answers == [None])


async def test_reward_picker_shows_tick_and_use(project):
    from textual.widgets import SelectionList

    from tui_tuner.tui.screens.modals import RewardPickerModal

    app = _app(project)
    async with app.run_test(size=(80, 24)) as pilot:
        answers: list = []
        modal = RewardPickerModal([], base_dir=project)
        await _open(pilot, app, modal, answers)
        rewards = modal.query_one(SelectionList)
        assert await wait_until(pilot, lambda: app.focused is rewards and "space Tick" in _bar(app))
        assert "Use" not in _bar(app)  # enter in the list ticks too; "Use" is the field's and the button's
        await pilot.press("space")
        assert await wait_until(pilot, lambda: len(rewards.selected) == 1)
        modal.query_one("#own-rewards").focus()
        assert await wait_until(pilot, lambda: "Use" in _bar(app) and "Tick" not in _bar(app))
        await pilot.press("enter")
        assert await wait_until(pilot, lambda: answers == [list(rewards.selected)])


async def test_publish_shows_enter_publishes_and_esc_cancels(project):
    from tui_tuner.tui.screens.publish import PublishModal

    app = _app(project)
    async with app.run_test(size=(80, 24)) as pilot:
        answers: list = []
        await _open(pilot, app, PublishModal("garden", "alice/garden-lora"), answers)
        assert await wait_until(pilot, lambda: "Publish" in _bar(app) and "esc Cancel" in _bar(app))
        app.screen.query_one("#dry-run").focus()
        assert await wait_until(pilot, lambda: "Publish" not in _bar(app))
        await pilot.press("enter")  # the focused Dry run button, not a real upload
        assert await wait_until(pilot, lambda: len(answers) == 1)
        assert answers[0].repo == "alice/garden-lora" and answers[0].dry_run
