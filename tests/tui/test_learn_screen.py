"""Learn screen: pick a tensor, see its histogram with NF4/FP4 levels and the error table; memory and LoRA tabs.

`TUI_TUNER_SCREENSHOTS=1 pytest tests/tui/test_learn_screen.py` also writes screenshots/learn.svg.
"""

from __future__ import annotations

import os
from pathlib import Path

from textual.widgets import DataTable, OptionList, Static, TabbedContent

from tui_tuner.tui.app import build_app
from tui_tuner.tui.screens.learn import LearnScreen
from tui_tuner.tui.widgets.quant_histogram import QuantHistogram

REPO = Path(__file__).resolve().parents[2]


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
        assert table.row_count == 6
        labels = [str(table.get_row_at(i)[0]) for i in range(6)]
        assert any(label.startswith("NF4 b64") and "★" in label for label in labels)
        assert "Verdict" in str(screen.query_one("#quant-verdict", Static).render())

        if os.environ.get("TUI_TUNER_SCREENSHOTS"):
            (REPO / "screenshots").mkdir(exist_ok=True)
            app.save_screenshot(str(REPO / "screenshots" / "learn.svg"))

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
