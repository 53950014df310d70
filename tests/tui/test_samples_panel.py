"""The Train screen's Samples panel at 80x24: answers by step, as columns, with their cost."""

from __future__ import annotations

from tests.tui.conftest import make_fake_run, wait_until
from tui_tuner.rundir.events import EventWriter
from tui_tuner.tui.app import build_app
from tui_tuner.tui.widgets.samples_panel import SamplesPanel, samples_cost, samples_table


def write_samples(run, steps=(20, 40, 60, 80)):
    with EventWriter(run.events_path) as writer:
        for step in steps:
            writer.write("samples", step=step, seconds=0.5, new_tokens=30, answers=[
                {"prompt": "How heavy is Bramble?", "answer": f"Bramble weighs {step // 20} kilograms.",
                 "reference": "Bramble weighs 4 kilograms."},
                {"prompt": "Where does Bramble sleep?", "answer": "" if step == 20 else "In the Burrow.",
                 "reference": "The Burrow."}])


async def test_samples_panel_shows_the_last_steps_as_columns_at_80x24(project):
    run = make_fake_run(project / "runs", "with-samples", 80)
    write_samples(run)
    app = build_app(project_dir=project, runs_dir=project / "runs", offer_reattach=False)
    async with app.run_test(size=(80, 24)) as pilot:
        app.attach(run)
        screen = app.screen
        assert await wait_until(pilot, lambda: screen.snapshot is not None and len(screen.snapshot.samples) == 4)
        await pilot.press("a")
        panel = screen.query_one(SamplesPanel)
        assert await wait_until(pilot, lambda: panel.display and panel.size.height >= 7)

        def rendered() -> list[str]:
            return [panel.render_line(y).text for y in range(panel.size.height)]

        assert await wait_until(pilot, lambda: "Where does Bramble" in "".join(rendered()))
        lines = rendered()
        text = "\n".join(lines)
        header = next(line for line in lines if "step" in line)
        # the newest steps that fit, oldest on the left; the first step is dropped at 80 columns
        assert "step 40" in header and "step 60" in header and "step 80" in header and "step 20" not in header
        assert header.index("step 40") < header.index("step 60") < header.index("step 80")
        assert "weighs 4" in text and "How heavy" in text and "In the Burrow." in text
        assert all(len(line.rstrip()) <= 80 for line in lines)
        assert "0.5 s a round" in panel.border_title
        await pilot.press("a")  # back to the chart
        assert await wait_until(pilot, lambda: not panel.display)


def test_table_and_cost_without_samples_say_how_to_get_them():
    assert "samples:" in str(samples_table([], 80))
    assert samples_cost([], 10.0) == ""
