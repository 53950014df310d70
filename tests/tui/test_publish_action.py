"""Publish from the Runs screen: p opens the dialog, a bad repository name is refused there, and a dry
run runs `tui-tuner publish --dry-run` as a subprocess and shows the folder it wrote."""

from __future__ import annotations

import shutil

from textual.widgets import Button, Input, Static

from tests.tui.conftest import make_fake_run, wait_until
from tui_tuner.tui import publish_view
from tui_tuner.tui.app import build_app
from tui_tuner.tui.screens.publish import PublishModal

PUBLISH_TIMEOUT_S = 300  # a subprocess reading the run; CI boxes are slow


def test_publish_command_and_outcome(tmp_path):
    request = publish_view.PublishRequest("alice/bot", "gguf", "q4_k_m", private=True, dry_run=True)
    argv = publish_view.publish_command(tmp_path / "run", tmp_path, request)
    assert argv[3:5] == ["publish", str(tmp_path / "run")]
    assert argv[-6:] == ["--repo", "alice/bot", "--gguf", "q4_k_m", "--private", "--dry-run"]
    folder = tmp_path / "run" / "publish"
    done = publish_view.read_outcome(0, f"{folder}\n{folder / 'README.md'}\nhttps://huggingface.co/alice/bot\n",
                                     ["uploading"], request)
    assert done.folder == folder and done.files == [folder / "README.md"] and done.url.endswith("alice/bot")
    failed = publish_view.read_outcome(1, "", ["error: not logged in to the Hugging Face Hub"], request)
    assert not failed.ok and failed.summary() == "error: not logged in to the Hugging Face Hub"


async def test_publish_is_refused_for_a_run_without_a_model(project):
    make_fake_run(project / "runs", "no-adapter", 3)
    app = build_app(project_dir=project, runs_dir=project / "runs", offer_reattach=False, start_screen="runs")
    async with app.run_test(size=(80, 24)) as pilot:
        assert await wait_until(pilot, lambda: app.screen.rows)
        notes = []
        app.notify = lambda message, **kw: notes.append(message)  # what the user is told
        await pilot.press("p")  # no adapter, no checkpoint: said at once, no dialog
        assert await wait_until(pilot, lambda: any("nothing to publish" in str(n) for n in notes))
        assert not isinstance(app.screen, PublishModal)


async def test_dry_run_publish_from_the_runs_screen(finished_run, project):
    runs = project / "runs"
    shutil.copytree(finished_run.path, runs / finished_run.name)  # the shared run stays untouched
    app = build_app(project_dir=project, runs_dir=runs, offer_reattach=False, start_screen="runs")
    async with app.run_test(size=(80, 24)) as pilot:
        assert await wait_until(pilot, lambda: app.screen.rows)
        runs_screen = app.screen
        await pilot.press("p")
        assert await wait_until(pilot, lambda: isinstance(app.screen, PublishModal))
        modal = app.screen
        repo = modal.query_one("#publish-repo", Input)
        assert await wait_until(pilot, lambda: repo.has_focus)
        await pilot.press(*"garden bot")
        # Pressed, not clicked: a notification toast can cover the dialog's buttons at 80x24.
        modal.query_one("#dry-run", Button).press()
        assert await wait_until(pilot, lambda: "ORG/NAME" in str(modal.query_one("#publish-error", Static).render()))
        assert app.screen is modal  # refused in the dialog, nothing started
        repo.value = "alice/garden-bot"
        modal.query_one("#dry-run", Button).press()
        assert await wait_until(pilot, lambda: app.screen is runs_screen)
        assert await wait_until(pilot, lambda: runs_screen.publish_outcome is not None, timeout=PUBLISH_TIMEOUT_S)
        outcome = runs_screen.publish_outcome
        assert outcome.ok, outcome.log
        assert outcome.request.dry_run and outcome.url is None
        assert outcome.folder == runs / finished_run.name / "publish"
        assert (outcome.folder / "README.md").is_file() and (outcome.folder / "loss_curve.png").is_file()
        shown = str(runs_screen.query_one("#runs-publish", Static).render())
        assert "dry run" in shown and "nothing uploaded" in shown
