"""Hardware screen: the machine report, the fit breakdown as settings change, and carrying
the chosen settings into the Config screen."""

from __future__ import annotations

import io

from rich.console import Console
from textual.widgets import Input, Select, Static

from tests.tui.conftest import set_select, wait_until
from tests.unit.test_mac_hardware import mocked_mac  # noqa: F401  (the fixture: a 16 GB M2 Pro, no NVIDIA GPU)
from tui_tuner.fit.estimate import GIB
from tui_tuner.tui.app import build_app
from tui_tuner.tui.screens.config import ConfigScreen
from tui_tuner.tui.widgets.fit_panel import FitPanel


def plain(widget: Static) -> str:
    """What a Static shows, as plain text (works for tables too)."""
    console = Console(width=200, file=io.StringIO(), record=True)
    console.print(widget.content)
    return console.export_text()


async def test_fit_breakdown_follows_the_settings_and_carries_into_config(project):
    config = project / "configs" / "run.yaml"
    config.write_text("model:\n  name_or_path: TinyLlama/TinyLlama-1.1B-Chat-v1.0\nmethod: lora\n")
    app = build_app(project_dir=project, config_path=config, runs_dir=project / "runs", offer_reattach=False,
                    start_screen="hardware")
    async with app.run_test(size=(100, 40)) as pilot:
        screen = app.screen
        # The panel composes its children after it mounts: query them only once they exist.
        assert await wait_until(pilot,
                                lambda: screen.query_one(FitPanel).query_one("#fit-breakdown", Static) is not None)
        panel = screen.query_one(FitPanel)
        breakdown = panel.query_one("#fit-breakdown", Static)
        assert await wait_until(pilot, lambda: "LoRA adapter" in plain(breakdown))
        machine = plain(screen.query_one("#hw-machine", Static))
        assert "CPU" in machine and "torch" in machine
        lora_total = plain(panel.query_one("#fit-total", Static))
        # QLoRA needs less memory than LoRA for the same model: the total follows the method.
        await set_select(pilot, lambda: panel.query_one("#fit-method", Select), "qlora")
        assert await wait_until(pilot, lambda: "qlora needs" in plain(panel.query_one("#fit-total", Static)))
        assert "4-bit" in plain(breakdown)
        assert plain(panel.query_one("#fit-total", Static)) != lora_total
        panel.query_one("#fit-r", Input).value = "64"
        assert await wait_until(pilot, lambda: panel.request is not None and panel.request.lora_r == 64)
        assert await wait_until(pilot, lambda: "LoRA adapter (r=64)" in plain(breakdown))
        await pilot.press("ctrl+g")
        assert await wait_until(pilot, lambda: isinstance(app.screen, ConfigScreen) and app.screen.ready)
        config_screen = app.screen
        assert await wait_until(pilot, lambda: "method: qlora" in config_screen.text)
        assert "  r: 64" in config_screen.text


async def test_unknown_model_says_what_to_do(project):
    app = build_app(project_dir=project, runs_dir=project / "runs", offer_reattach=False, start_screen="hardware")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        # The panel composes its children after it mounts: query them only once they exist.
        assert await wait_until(pilot, lambda: screen.query_one(FitPanel).query_one("#fit-model", Input) is not None)
        panel = screen.query_one(FitPanel)
        panel.query_one("#fit-model", Input).value = "no-such-org/no-such-model-xyz"
        reason = panel.query_one("#fit-reason", Static)
        assert await wait_until(pilot, lambda: "no-such-model-xyz" in plain(reason))
        assert panel.query_one("#fit-use").disabled


async def test_make_it_fit_lists_ranked_changes_and_carries_the_chosen_one_into_the_config(project):
    from textual.widgets import OptionList

    from tui_tuner.tui.screens.modals import ChoiceModal

    config = project / "configs" / "run.yaml"
    config.write_text("model:\n  name_or_path: meta-llama/Llama-3.1-8B\nmethod: lora\n")
    app = build_app(project_dir=project, config_path=config, runs_dir=project / "runs", offer_reattach=False,
                    start_screen="hardware")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        assert await wait_until(pilot, lambda: screen.query_one(FitPanel).query_one("#fit-gpu", Select) is not None)
        panel = screen.query_one(FitPanel)
        t4 = next(i for i, (name, _) in enumerate(panel.gpus) if name.startswith("Tesla T4"))
        await set_select(pilot, lambda: panel.query_one("#fit-gpu", Select), t4)
        assert await wait_until(pilot, lambda: panel.request is not None and panel.request.gpu_name.startswith("Tesla T4"))
        await pilot.press("ctrl+f")
        assert await wait_until(pilot, lambda: isinstance(app.screen, ChoiceModal))
        options = app.screen.query_one(OptionList)
        first = str(options.get_option_at_index(0).prompt)
        assert "fits" in first and "QLoRA" in first  # an 8B model in LoRA on 16 GB: 4-bit is what fits
        options.highlighted = 0
        options.action_select()
        assert await wait_until(pilot, lambda: isinstance(app.screen, ConfigScreen) and app.screen.ready)
        assert await wait_until(pilot, lambda: "method: qlora" in app.screen.text)


async def test_on_a_mac_the_fit_is_against_the_metal_limit_with_mlx_terms(project, mocked_mac):
    app = build_app(project_dir=project, runs_dir=project / "runs", offer_reattach=False, start_screen="hardware")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        assert await wait_until(pilot,
                                lambda: screen.query_one(FitPanel).query_one("#fit-breakdown", Static) is not None)
        machine = plain(screen.query_one("#hw-machine", Static))
        assert "Apple M2 Pro · 16.0 GiB unified memory, 9.00 GiB free · 19 GPU cores" in machine
        assert "Metal working-set limit 10.7 GiB" in " ".join(machine.split())
        assert "sudo sysctl iogpu.wired_limit_mb=" in " ".join(machine.split())
        panel = screen.query_one(FitPanel)
        assert panel.gpus[0][1:] == (int(16 * GIB * 2 / 3), "mlx")  # the Mac first, then the common cards
        assert await wait_until(pilot, lambda: panel.request is not None and panel.request.backend == "mlx")
        breakdown = panel.query_one("#fit-breakdown", Static)
        await set_select(pilot, lambda: panel.query_one("#fit-method", Select), "qlora")
        assert await wait_until(pilot, lambda: "MLX 4-bit affine" in plain(breakdown))
        assert "CUDA context" not in plain(breakdown) and "dequantization" not in plain(breakdown)
        assert "of 10.7 GiB" in plain(panel.query_one("#fit-total", Static))
        reason = " ".join(plain(panel.query_one("#fit-reason", Static)).split())
        assert "Recommended: lora" in reason and "MLX: LoRA trains over the 16-bit model" in reason  # 1.1B fits
