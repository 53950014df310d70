"""80x24 first: Runs shows model and state, long explanations open in full."""

from __future__ import annotations

from textual.widgets import DataTable

from tests.tui.conftest import make_fake_run, wait_until
from tui_tuner.tui.app import build_app
from tui_tuner.tui.screens.modals import TextModal
from tui_tuner.tui.screens.runs import run_stem
from tui_tuner.tui.widgets.key_bar import KeyBar


def app_for(project, **kw):
    return build_app(project_dir=project, runs_dir=project / "runs", offer_reattach=False, **kw)


async def test_runs_shows_model_and_state_at_80_columns(project):
    make_fake_run(project / "runs", "first-try", 5)
    app = app_for(project, start_screen="runs")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        table = screen.query_one(DataTable)
        assert await wait_until(pilot, lambda: table.row_count == 1)
        await pilot.pause()
        header = [str(c.label) for c in table.columns.values()]
        assert "model" in header and "state" in header
        assert table.virtual_size.width <= table.size.width  # nothing scrolls sideways
        row = [str(c) for c in table.get_row_at(0)]
        assert "first-try" in row[0] and "finished" in row and "demo-tiny-llama" in row
        entries = [e.description for e in screen.query_one(KeyBar).entries()]
        assert entries[0] == "Open"  # enter: the first thing a newcomer does here
    assert run_stem("quickstart-20261202-074933") == "quickstart"
    assert run_stem("quickstart-20261202-074933-2") == "quickstart"


async def test_failed_run_error_opens_in_full(project):
    long_hint = "lower training.batch_size " + "and then some more words " * 30 + "THE END"
    run = make_fake_run(project / "runs", "oom", 3, state="failed", error="CUDA out of memory",
                        hint=long_hint, log="loading\nTraceback: OutOfMemoryError\n")
    app = app_for(project)
    async with app.run_test(size=(80, 24)) as pilot:
        app.attach(run)
        screen = app.screen
        assert await wait_until(pilot, lambda: screen.snapshot is not None)
        assert await wait_until(pilot, lambda: any(e.key == "f7" for e in screen.query_one(KeyBar).entries()))
        await pilot.press("f7")
        assert await wait_until(pilot, lambda: isinstance(app.screen, TextModal))
        body = str(app.screen.query_one("#text-body").render())
        assert "THE END" in body and "OutOfMemoryError" in body
        await pilot.press("escape")
        assert await wait_until(pilot, lambda: not isinstance(app.screen, TextModal))


async def test_hardware_breakdown_why_opens_in_full(project):
    app = app_for(project, start_screen="hardware")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        from tui_tuner.tui.widgets.fit_panel import FitPanel

        assert await wait_until(pilot, lambda: screen.query(FitPanel) and
                                screen.query_one(FitPanel).explanation() is not None)
        await pilot.press("f7")
        assert await wait_until(pilot, lambda: isinstance(app.screen, TextModal))
        body = str(app.screen.query_one("#text-body").render())
        estimate = screen.query_one(FitPanel).last_fit.estimate
        for term in estimate.lines:  # every explanation whole, none cut with "…"
            assert term.explanation in body.replace("\n", " ").replace("  ", " ") or \
                all(word in body for word in term.explanation.split())


async def test_model_picker_lists_chat_models_first_with_their_memory(project):
    from textual.widgets import OptionList

    from tui_tuner.tui.screens.modals import ChoiceModal
    from tui_tuner.tui.widgets.fit_panel import FitPanel

    app = app_for(project, start_screen="hardware")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert await wait_until(pilot, lambda: screen.query(FitPanel))
        await pilot.press("ctrl+l")
        assert await wait_until(pilot, lambda: isinstance(app.screen, ChoiceModal))
        options = app.screen.query_one(OptionList)
        first = str(options.get_option_at_index(0).prompt)
        assert "chat" in first and "LoRA" in first and "GiB" in first
        labels = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
        assert any(label.startswith("Qwen/Qwen2.5-0.5B-Instruct") for label in labels)


async def test_train_numbers_stay_on_one_line_at_80_columns(project):
    from tui_tuner.rundir.events import EventWriter

    run = make_fake_run(project / "runs", "busy", 5)
    with EventWriter(run.events_path) as writer:  # every number the line can hold, and an eval loss
        writer.write("eval", step=5, eval_loss=2.3456)
        writer.write("log", step=5, loss=2.1234, learning_rate=2.25e-3, grad_norm=0.948, tokens_per_s=25.8,
                     eta_s=790.0)
    app = app_for(project)
    async with app.run_test(size=(80, 24)) as pilot:
        app.attach(run)
        assert await wait_until(pilot, lambda: "2.1234" in str(app.screen.query_one("#train-stats").render()))
        stats = app.screen.query_one("#train-stats")
        assert stats.size.height == 1, str(stats.render())
        shown = str(stats.render())
        assert "loss 2.1234" in shown and "eval 2.3456" in shown and "elapsed" in shown and "ETA" in shown
    async with app_for(project).run_test(size=(160, 30)) as pilot:  # wide: every number
        pilot.app.attach(run)

        def wide() -> str:
            return str(pilot.app.screen.query_one("#train-stats").render())

        assert await wait_until(pilot, lambda: "grad norm 0.948" in wide() and "checkpoints" in wide())
