"""The Runs screen when runs are damaged or the runs folder fails: every readable run stays listed."""

from __future__ import annotations

import errno
import json

from textual.widgets import DataTable, Static

from tests.tui.conftest import make_fake_run, wait_until
from tui_tuner.tui.app import build_app
from tui_tuner.tui.screens.runs import RunsScreen


def app_for(project):
    return build_app(project_dir=project, runs_dir=project / "runs", offer_reattach=False, start_screen="runs")


async def test_a_corrupt_run_gets_an_unreadable_row_and_the_others_stay(project):
    runs = project / "runs"
    for i in range(3):
        make_fake_run(runs, f"fine{i}", 5)
    broken = {"created": make_fake_run(runs, "bad-created", 5), "loss": make_fake_run(runs, "bad-loss", 5),
              "state": make_fake_run(runs, "bad-state", 5)}
    for key, value in (("created", "yesterday"), ("loss", "abc"), ("state", "[bold]exploded[/")):
        path = broken[key].path / "status.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), key: value}))
    app = app_for(project)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        table = screen.query_one(DataTable)
        assert await wait_until(pilot, lambda: table.row_count == 6)
        states = sorted(str(table.get_row_at(i)[1]) for i in range(6))
        assert states == ["finished"] * 3 + ["unreadable"] * 3
        names = [row.run.name for row in screen.rows.values()]
        index = names.index(broken["loss"].name)
        table.move_cursor(row=index)
        detail = screen.query_one("#runs-detail", Static)
        assert await wait_until(pilot, lambda: "`loss` is 'abc', not a number" in str(detail.render()))
        await pilot.press("enter")  # opening it says why instead of attaching
        assert isinstance(app.screen, RunsScreen)


async def test_a_failing_runs_folder_is_reported_not_shown_as_empty(project, monkeypatch):
    def io_error(runs_dir):  # the file system failing (an NFS mount gone away), not a bug in the listing
        raise OSError(errno.EIO, "Input/output error", str(runs_dir))

    monkeypatch.setattr("tui_tuner.tui.screens.runs.list_runs", io_error)
    app = app_for(project)
    async with app.run_test(size=(120, 30)) as pilot:
        detail = app.screen.query_one("#runs-detail", Static)
        assert await wait_until(pilot, lambda: "Input/output error" in str(detail.render()))
        assert "No runs yet" not in str(detail.render())


async def test_the_train_screen_says_a_stopped_worker_has_stalled(project):
    import os
    import signal
    import subprocess
    import sys
    import time

    from tui_tuner.rundir.runs import process_start_time, process_state
    from tui_tuner.rundir.status import RunStatus, write_status
    from tui_tuner.tui.screens.train import TrainScreen

    run = make_fake_run(project / "runs", "frozen", 5)
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        os.kill(worker.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 60
        while process_state(worker.pid) != "stopped" and time.monotonic() < deadline:
            time.sleep(0.02)  # the signal is delivered asynchronously
        write_status(run.path, RunStatus(state="running", pid=worker.pid, pid_started=process_start_time(worker.pid),
                                         step=5, max_steps=50, started=time.time() - 600))
        old = time.time() - 1800
        for path in (run.path / "status.json", run.events_path):
            os.utime(path, (old, old))
        app = app_for(project)
        async with app.run_test(size=(100, 30)) as pilot:
            app.attach(run)
            screen = app.screen
            assert isinstance(screen, TrainScreen)
            assert await wait_until(pilot, lambda: screen.snapshot is not None)

            def error() -> Static:
                return screen.query_one("#train-error", Static)

            assert await wait_until(pilot, lambda: error().display and "stalled" in str(error().render()))
            text = str(error().render())
            assert "30 min" in text and f"kill -CONT {worker.pid}" in text, text
    finally:
        worker.kill()
        worker.wait()
