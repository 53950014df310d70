"""Learn screen: pick a tensor, see its histogram with NF4/FP4 levels and the error table; memory, LoRA, experiments.

screenshots/learn.svg and learn-experiments.svg come from `python -m tui_tuner.tools.screenshots`.
"""

from __future__ import annotations

from textual.widgets import DataTable, OptionList, Static, TabbedContent

from tui_tuner.tui.app import build_app
from tui_tuner.tui.screens.learn import LearnScreen
from tui_tuner.tui.widgets.quant_histogram import QuantHistogram


async def wait_for(pilot, condition, tries: int = 300):
    for _ in range(tries):
        if condition():
            return True
        await pilot.pause(0.1)
    return condition()


async def test_pick_a_tensor_and_see_histogram_and_errors(demo_model_dir, project, tmp_path):
    app = build_app(project_dir=project, runs_dir=project / "runs", offer_reattach=False, start_screen="learn")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, LearnScreen)
        tensors = screen.query_one("#tensor-list", OptionList)
        assert await wait_for(pilot, lambda: tensors.option_count > 0)
        # the default tensor is analyzed first; then the learner picks another one
        assert await wait_for(pilot, lambda: screen.report is not None)
        target = "model.layers.1.mlp.down_proj.weight"
        index = next(i for i in range(tensors.option_count) if tensors.get_option_at_index(i).id == target)
        tensors.focus()
        tensors.highlighted = index
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: screen.report is not None and screen.report.tensor == target)
        await pilot.pause()

        hist = screen.query_one("#quant-hist", QuantHistogram)
        rendered = str(hist.render())
        assert "NF4" in rendered and "FP4" in rendered and "▲" in rendered and "█" in rendered
        assert hist.histogram is screen.report.block_histogram
        table = screen.query_one("#quant-table", DataTable)
        assert table.row_count == len(screen.report.formats) >= 6  # +1 for MLX affine where mlx imports
        labels = [str(table.get_row_at(i)[0]) for i in range(6)]
        assert any(label.startswith("NF4 b64") and "★" in label for label in labels)
        assert "Verdict" in str(screen.query_one("#quant-verdict", Static).render())

        await pilot.press("h")  # raw histogram, levels scaled by the tensor's absmax
        assert hist.histogram is screen.report.histogram

        tabs = screen.query_one(TabbedContent)
        tabs.active = "tab-memory"
        memory = screen.query_one("#memory-table", DataTable)
        assert await wait_for(pilot, lambda: memory.row_count == 5)
        tabs.active = "tab-lora"
        modules = screen.query_one("#lora-modules", DataTable)
        assert await wait_for(pilot, lambda: modules.row_count == 7)   # all-linear: 7 kinds of projection
        screen.query_one("#lora-targets").value = "q_proj,v_proj"
        screen.query_one("#lora-targets").focus()
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: modules.row_count == 2)
        assert "%" in str(screen.query_one("#lora-summary", Static).render())


async def test_a_model_without_weights_says_what_to_do(demo_model_dir, project):
    app = build_app(project_dir=project, runs_dir=project / "runs", offer_reattach=False, start_screen="learn")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        screen.load_model("meta-llama/Llama-2-7b-hf")
        hist = screen.query_one("#quant-hist", QuantHistogram)
        assert await wait_for(pilot, lambda: "no .safetensors weights" in str(hist.render()))
        memory = screen.query_one("#memory-table", DataTable)
        assert await wait_for(pilot, lambda: memory.row_count == 5)   # sized from the catalog all the same


async def test_experiments_tab_lists_runs_and_overlays_a_sweep(project):
    import json

    from tests.tui.conftest import make_fake_run
    from tui_tuner.tui.widgets.line_chart import LineChart

    runs = [make_fake_run(project / "runs", f"sw-r{r}", 20, r=r) for r in (8, 16)]
    for i, run in enumerate(runs):
        (run.path / "sweep.json").write_text(json.dumps({"sweep": "S1", "index": i, "keys": ["lora.r"]}))
    make_fake_run(project / "runs", "single", 5)
    app = build_app(project_dir=project, runs_dir=project / "runs", offer_reattach=False, start_screen="learn")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        screen.query_one(TabbedContent).active = "tab-experiments"
        table = screen.query_one("#experiments-table", DataTable)
        assert await wait_for(pilot, lambda: table.row_count == 3)
        names = [str(table.get_row_at(i)[0]) for i in range(3)]
        chart = screen.query_one("#experiments-chart", LineChart)
        table.focus()
        table.move_cursor(row=names.index(runs[0].name))
        assert await wait_for(pilot, lambda: len(chart.series) == 2)      # the run and its sweep sibling
        assert {s.label for s in chart.series} == {r.name for r in runs}
        await pilot.press("c")                                              # the sweep in the Runs comparison
        from tui_tuner.tui.screens.compare import CompareScreen

        assert await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
        assert [r.name for r in app.screen.runs] == sorted(r.name for r in runs)
        await pilot.press("escape")
        assert await wait_for(pilot, lambda: app.screen is screen)
        table.move_cursor(row=names.index(next(n for n in names if n.startswith("single"))))
        assert await wait_for(pilot, lambda: len(chart.series) == 1)
        # typing into the model box types; the screen's one-letter keys do not fire there
        box = screen.query_one("#learn-model")
        box.focus()
        box.value = ""
        await pilot.press("h", "m")
        assert box.value == "hm" and not screen.show_raw
