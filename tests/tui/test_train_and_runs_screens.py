"""Train and Runs screens over runs written by the engine's own writers (no training here)."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable, Static

from tests.tui.conftest import make_fake_run, wait_until
from tui_tuner.rundir.events import EventWriter
from tui_tuner.tui.app import build_app
from tui_tuner.tui.run_view import RunView
from tui_tuner.tui.screens.compare import CompareScreen
from tui_tuner.tui.screens.runs import RunsScreen
from tui_tuner.tui.screens.train import TrainScreen
from tui_tuner.tui.widgets.line_chart import LineChart


def app_for(project, **kw):
    return build_app(project_dir=project, runs_dir=project / "runs", offer_reattach=False, **kw)


async def test_failed_run_shows_error_hint_and_log_tail(project):
    run = make_fake_run(project / "runs", "oom", 3, state="failed", error="CUDA out of memory",
                        hint="lower training.batch_size", log="loading model\nTraceback: OutOfMemoryError\n")
    app = app_for(project)
    async with app.run_test(size=(80, 24)) as pilot:
        app.attach(run)
        screen = app.screen
        assert isinstance(screen, TrainScreen)
        assert await wait_until(pilot, lambda: screen.snapshot is not None)
        await pilot.pause()
        error = screen.query_one("#train-error", Static)
        assert error.display
        assert "CUDA out of memory" in str(error.render()) and "lower training.batch_size" in str(error.render())
        assert "OutOfMemoryError" in str(screen.query_one("#train-log", Static).render())
        assert "failed" in str(screen.query_one("#train-title", Static).render())


async def test_train_screen_reads_only_appended_events(project, monkeypatch):
    # Count every event the screen's reader consumes, whichever poll reads it: the background
    # poll may pick the appended lines up in one read or several.
    consumed: dict[int, int] = {}  # id of a RunView -> events it has read
    read_new = RunView.read_new

    def counting_read_new(view: RunView) -> int:
        count = read_new(view)
        consumed[id(view)] = consumed.get(id(view), 0) + count
        return count

    monkeypatch.setattr(RunView, "read_new", counting_read_new)
    run = make_fake_run(project / "runs", "live", 10, state="finished")
    app = app_for(project)
    async with app.run_test(size=(100, 30)) as pilot:
        app.attach(run)
        screen = app.screen
        assert await wait_until(pilot, lambda: screen.snapshot is not None and len(screen.snapshot.loss) == 10)
        offset = screen.view.offset
        assert offset == run.events_path.stat().st_size
        assert consumed[id(screen.view)] == 10
        with EventWriter(run.events_path) as writer:
            for s in range(11, 16):
                writer.write("log", step=s, loss=1.0, learning_rate=1e-4)
            writer.write("eval", step=15, eval_loss=1.2)
        size = run.events_path.stat().st_size
        assert await wait_until(pilot, lambda: screen.view.offset == size and len(screen.snapshot.loss) == 15
                                and len(screen.snapshot.eval_loss) == 1)
        # Only the appended lines were read: 6 more events, never the first 10 again.
        assert consumed[id(screen.view)] == 16
        assert screen.snapshot.new_events <= 6
        chart = screen.query_one(LineChart)
        assert [s.label for s in chart.series] == ["train loss", "eval loss"]
        assert chart.series[0].points[-1] == (15, 1.0)


async def test_runs_table_colours_states_and_compare_overlays_curves_and_samples(project):
    r16 = make_fake_run(project / "runs", "r16", 40, r=16)
    r32 = make_fake_run(project / "runs", "r32", 60, r=32)
    for run, r, steps in ((r16, 16, (20, 40)), (r32, 32, (20, 40, 60))):
        with EventWriter(run.events_path) as writer:
            for step in steps:
                writer.write("samples", step=step, seconds=0.5, answers=[
                    {"prompt": "How heavy is Bramble?", "answer": f"r{r} {step // 20}kg"}])
    make_fake_run(project / "runs", "broken", 2, state="failed", error="boom")
    app = app_for(project, start_screen="runs")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        table = screen.query_one(DataTable)
        assert await wait_until(pilot, lambda: table.row_count == 3)
        states = {str(table.get_row_at(i)[1]) for i in range(3)}
        assert states == {"finished", "failed"}
        await pilot.press("c")  # nothing selected: refused with a hint
        assert not isinstance(app.screen, CompareScreen)
        # Newest first: broken, r32, r16. Select r32 and r16.
        await pilot.press("down", "space", "down", "space", "c")
        compare = app.screen
        assert isinstance(compare, CompareScreen)
        chart = compare.query_one(LineChart)
        assert await wait_until(pilot, lambda: len(chart.series) == 2)
        assert sorted(len(s.points) for s in chart.series) == [40, 60]
        diff = compare.query_one(DataTable)
        keys = [str(diff.get_row_at(i)[0]) for i in range(diff.row_count)]
        assert "lora.r" in keys and "method" not in keys  # only the differences
        await pilot.press("a")
        keys = [str(diff.get_row_at(i)[0]) for i in range(diff.row_count)]
        assert "method" in keys
        # s swaps the chart for each run's latest sample answers, side by side
        await pilot.press("s")
        samples = compare.query_one("#compare-samples")
        assert await wait_until(pilot, lambda: samples.display and not chart.display and samples.size.height > 2)

        def shown() -> str:
            return "\n".join(samples.render_line(y).text for y in range(samples.size.height))

        assert await wait_until(pilot, lambda: "r32 3kg" in shown() and "r16 2kg" in shown())
        assert "step 60" in shown() and "step 40" in shown() and "How heavy" in shown()
        assert all(len(line.rstrip()) <= 80 for line in shown().splitlines())
        await pilot.press("s")
        assert await wait_until(pilot, lambda: chart.display and not samples.display)
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)


async def test_delete_asks_first(project):
    run = make_fake_run(project / "runs", "old", 3)
    app = app_for(project, start_screen="runs")
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.screen.query_one(DataTable)
        assert await wait_until(pilot, lambda: table.row_count == 1)
        await pilot.press("x")
        await pilot.press("n")
        assert run.path.exists()
        await pilot.press("x")
        await pilot.press("y")
        await pilot.pause()
        assert not run.path.exists()
        assert await wait_until(pilot, lambda: table.row_count == 0)


async def test_open_from_runs_attaches_the_train_screen(project):
    run = make_fake_run(project / "runs", "done", 5)
    app = app_for(project, start_screen="runs")
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.screen.query_one(DataTable)
        assert await wait_until(pilot, lambda: table.row_count == 1)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, TrainScreen)
        assert app.attached_run == run
        assert await wait_until(pilot, lambda: app.screen.snapshot is not None)
        await pilot.press("d")  # detach: back to Runs, the run untouched
        assert isinstance(app.screen, RunsScreen)


@pytest.mark.slow  # trains the shared `finished_run` when no other test has yet
async def test_compare_a_real_run_with_another(finished_run, project):
    # The session's trained quickstart run (real events) beside a second run with r=32.
    import shutil

    runs = project / "runs"
    runs.mkdir()
    real = shutil.copytree(finished_run.path, runs / finished_run.name)
    make_fake_run(runs, "r32", 20, r=32)
    app = app_for(project, start_screen="runs")
    async with app.run_test(size=(120, 36)) as pilot:
        table = app.screen.query_one(DataTable)
        assert await wait_until(pilot, lambda: table.row_count == 2)
        await pilot.press("space", "down", "space", "c")
        compare = app.screen
        assert isinstance(compare, CompareScreen)
        chart = compare.query_one(LineChart)
        assert await wait_until(pilot, lambda: len(chart.series) == 2)
        by_name = {s.label: s.points for s in chart.series}
        assert len(by_name[real.name]) == finished_run.status().step  # one point per logged step
        diff = compare.query_one(DataTable)
        assert "lora.r" in [str(diff.get_row_at(i)[0]) for i in range(diff.row_count)]
