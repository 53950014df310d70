"""`tui-tuner` in an empty folder: it offers the quickstart, writes it, and the config it opens is
valid and ready to start; declined, the missing sample data says how to get it."""

from __future__ import annotations

from tests.tui.conftest import wait_until
from tui_tuner.tui.app import build_app
from tui_tuner.tui.screens.config import ConfigScreen
from tui_tuner.tui.screens.modals import ConfirmModal


async def test_empty_folder_offers_the_quickstart_and_opens_it_valid(tmp_path):
    app = build_app(project_dir=tmp_path, offer_reattach=False)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal))
        assert "write the quickstart" in app.screen.title_text
        await pilot.press("y")
        assert await wait_until(pilot, lambda: isinstance(app.screen, ConfigScreen))
        screen = app.screen
        assert await wait_until(pilot, lambda: screen.ready and screen.config_path is not None)
        assert screen.config_path == tmp_path / "configs" / "quickstart.yaml"
        assert (tmp_path / "data" / "sample.jsonl").is_file() and (tmp_path / "data" / "heldout.jsonl").is_file()
        # the opened config is the file as written: not dirty, and valid once its data is checked
        summary = screen.query_one("#data-summary")
        assert await wait_until(pilot, lambda: "52 example(s)" in str(summary.render()))
        assert screen.issues == []
        assert not screen.dirty and "quickstart.yaml" in screen.file_label()


async def test_declined_the_missing_sample_data_says_how_to_write_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an unsaved config reads relative paths from the working folder
    app = build_app(project_dir=tmp_path, offer_reattach=False)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal))
        await pilot.press("n")
        assert await wait_until(pilot, lambda: isinstance(app.screen, ConfigScreen))
        screen = app.screen
        assert await wait_until(pilot, lambda: any("data/sample.jsonl" in i.message for i in screen.issues))
        issue = next(i for i in screen.issues if "data/sample.jsonl" in i.message)
        assert "tui-tuner config quickstart" in issue.message
        assert not (tmp_path / "configs").exists()  # nothing written unasked


async def test_a_folder_with_files_is_not_asked(project):
    (project / "notes.txt").write_text("mine")
    app = build_app(project_dir=project, offer_reattach=False)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await wait_until(pilot, lambda: isinstance(app.screen, ConfigScreen) and app.screen.ready)
        await pilot.pause(0.3)
        assert not isinstance(app.screen, ConfirmModal)


async def test_the_offer_shows_its_keys_in_the_key_bar_at_80x24(tmp_path):
    from tui_tuner.tui.widgets.key_bar import KeyBar

    app = build_app(project_dir=tmp_path, offer_reattach=False)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal))
        bar = app.screen.query_one(KeyBar)
        assert await wait_until(pilot, lambda: "y Write the quickstart" in str(bar.render()))
        assert "n Blank config" in str(bar.render())
        assert bar.region.y == 23 and bar.region.width == 80  # the bottom row, over the config screen's keys
        # the keys named are the keys that work
        await pilot.press("n")
        assert await wait_until(pilot, lambda: isinstance(app.screen, ConfigScreen))
        assert not (tmp_path / "configs").exists()
