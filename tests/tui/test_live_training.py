"""The TUI with a real training worker: start the quickstart, watch loss points arrive, quit
(the run keeps training), reopen and reattach, then Stop: the run ends `stopped` with a checkpoint,
and the config's `notify.webhook` (a local HTTP server) is told.

One worker process serves the whole story, so the test costs one short CPU training run.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from textual.widgets import Static

from tui_tuner.tui.app import build_app
from tui_tuner.tui.screens.config import ConfigScreen
from tui_tuner.tui.screens.modals import ChoiceModal, ConfirmModal
from tui_tuner.tui.screens.train import TrainScreen
from tui_tuner.tui.widgets.line_chart import LineChart

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "configs" / "quickstart.yaml"

pytestmark = pytest.mark.slow


async def wait_for(pilot, condition, timeout_s: float = 240.0, what: str = "") -> None:
    loops = int(timeout_s / 0.2)
    for _ in range(loops):
        if condition():
            return
        await pilot.pause(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def quickstart_project(tmp_path: Path) -> Path:
    """A copy of the project's quickstart (config + its data) in a throw-away folder."""
    if not QUICKSTART.is_file():
        pytest.fail("configs/quickstart.yaml is missing: the TUI opens on it")
    (tmp_path / "configs").mkdir()
    shutil.copy(QUICKSTART, tmp_path / "configs" / "quickstart.yaml")
    shutil.copytree(REPO / "data", tmp_path / "data")
    return tmp_path


class Hook(BaseHTTPRequestHandler):
    """A local webhook: keeps each POSTed JSON body."""

    posts: list = []

    def do_POST(self):  # noqa: N802 (the stdlib's name)
        type(self).posts.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    Hook.posts = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/hook", Hook.posts
    httpd.shutdown()


async def test_start_watch_quit_reattach_stop_and_be_told(quickstart_project, demo_model_dir, webhook):
    url, posts = webhook
    config = quickstart_project / "configs" / "quickstart.yaml"
    config.write_text(config.read_text() + f"notify:\n  webhook: {url}\n  when: [finished, stopped, failed]\n")
    runs = quickstart_project / "runs"
    app = build_app(project_dir=quickstart_project, runs_dir=runs, offer_reattach=False)
    run = None
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.screen
            assert isinstance(screen, ConfigScreen)
            assert screen.config_path.name == "quickstart.yaml"  # opened on the quickstart
            await wait_for(pilot, lambda: screen.ready, 30, "the config schema")
            await wait_for(pilot, lambda: not screen.errors and not screen.query_one("#start").disabled, 60,
                           "a valid config and dataset")
            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda: isinstance(app.screen, TrainScreen), 30, "the Train screen")
            train = app.screen
            run = app.attached_run
            assert run is not None and run.path.parent == runs
            chart = train.query_one(LineChart)
            await wait_for(pilot, lambda: chart.series and len(chart.series[0].points) >= 2, 240,
                           "two loss points in the chart")
            assert train.snapshot.status.state == "running"
            assert "transformers" in str(train.query_one("#train-backend", Static).render())
            step_before = train.snapshot.status.step
        # The app has quit: the worker is a separate process and keeps training.
        assert run.status().state == "running"

        app2 = build_app(project_dir=quickstart_project, runs_dir=runs, offer_reattach=True)
        async with app2.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app2.screen, ChoiceModal), 30, "the reattach offer")
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app2.screen, TrainScreen), 10, "the Train screen")
            train = app2.screen
            assert app2.attached_run == run
            await wait_for(pilot, lambda: train.snapshot is not None and train.snapshot.status.step > step_before,
                           120, "progress after reattaching")
            assert len(train.query_one(LineChart).series[0].points) >= 2  # the whole history, re-read
            await pilot.press("s")
            await wait_for(pilot, lambda: isinstance(app2.screen, ConfirmModal), 10, "the stop confirmation")
            await pilot.press("y")
            await wait_for(pilot, lambda: train.snapshot.status.state == "stopped", 240, "the run to stop")
            assert "stopped" in str(train.query_one("#train-title", Static).render())
        assert run.status().state == "stopped"
        assert run.checkpoints(), "a stopped run keeps a checkpoint to resume from"
        deadline = time.monotonic() + 120  # the supervisor tells once the worker process has exited
        while not posts and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [(p["run"], p["state"]) for p in posts] == [(run.name, "stopped")]
        assert posts[0]["step"] >= step_before and posts[0]["path"] == str(run.path)
    finally:
        if run is not None and run.status().state in ("running", "stopping", "queued"):
            run.request_stop(now=True)
