"""Export from the TUI: `tui-tuner export` runs as a subprocess; the view shows its progress, the
files, the verification result and the exact commands to use them; a failure shows the error."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from textual.widgets import OptionList, Select

from tests.tui.conftest import make_fake_run, set_select, wait_until
from tui_tuner.tui import export_view
from tui_tuner.tui.app import build_app
from tui_tuner.tui.screens.export import ExportScreen
from tui_tuner.tui.widgets.key_bar import KeyBar

EXPORT_TIMEOUT_S = 600  # loads torch and converts in a subprocess; CI boxes are slow


def test_outcome_reads_files_verification_and_commands(tmp_path):
    gguf = tmp_path / "gguf" / "my-run-q8_0.gguf"
    stdout = f"{gguf}\n{gguf.with_suffix('.Modelfile')}\n"
    log = ["converter: cached", "running convert_hf_to_gguf.py ...",
           "my-run-q8_0.gguf: llama.cpp tokenizes 3/3 rendered conversations exactly as training did (BOS included)",
           "to use it with Ollama: ..."]
    outcome = export_view.read_outcome(0, stdout, log, "My_Run-20261202-074933")
    assert outcome.ggufs == [gguf] and outcome.modelfiles == [gguf.with_suffix(".Modelfile")]
    assert outcome.verification == [log[2]]
    commands = dict((c, w) for w, c in outcome.commands())
    assert f"ollama create my_run -f {gguf.with_suffix('.Modelfile')}" in commands
    assert f"llama-cli -m {gguf} -cnv" in commands
    failed = export_view.read_outcome(2, "", ["note: x", "error: no adapter in run"], "r")
    assert not failed.ok and failed.error == "error: no adapter in run" and failed.commands() == []
    argv = export_view.export_command(Path("/r/run"), Path("/r"), kind="gguf", quant="q8_0")
    assert argv[:4] == [sys.executable, "-m", "tui_tuner", "export"] and argv[-3:] == ["--gguf", "--quant", "q8_0"]
    assert "f16" in export_view.gguf_quants() and "q8_0" in export_view.gguf_quants()


async def test_export_failure_shows_the_error(project):
    run = make_fake_run(project / "runs", "no-adapter", 3)  # finished, but no adapter was saved
    app = build_app(project_dir=project, runs_dir=project / "runs", offer_reattach=False, start_screen="runs")
    async with app.run_test(size=(80, 24)) as pilot:
        assert await wait_until(pilot, lambda: app.screen.rows)
        await pilot.press("g")
        assert await wait_until(pilot, lambda: isinstance(app.screen, ExportScreen))
        screen = app.screen
        assert screen.run == run
        await pilot.press("r")
        assert await wait_until(pilot, lambda: screen.outcome is not None, timeout=EXPORT_TIMEOUT_S)
        assert not screen.outcome.ok
        assert "error" in str(screen.query_one("#export-result").render())
        assert not screen.query_one("#export-commands").display


@pytest.mark.slow
async def test_gguf_export_of_a_trained_run_shows_files_verification_and_commands(finished_run, project):
    runs = project / "runs"
    shutil.copytree(finished_run.path, runs / finished_run.name)  # the shared run stays untouched
    app = build_app(project_dir=project, runs_dir=runs, offer_reattach=False, start_screen="runs")
    async with app.run_test(size=(80, 24)) as pilot:
        assert await wait_until(pilot, lambda: app.screen.rows)
        await pilot.press("g")
        assert await wait_until(pilot, lambda: isinstance(app.screen, ExportScreen))
        screen = app.screen
        await set_select(pilot, lambda: screen.query_one("#export-quant", Select), "f16")
        await pilot.press("r")
        assert await wait_until(pilot, lambda: screen.running)
        assert await wait_until(pilot, lambda: screen.outcome is not None, timeout=EXPORT_TIMEOUT_S)
        outcome = screen.outcome
        assert outcome.ok, outcome.log
        assert outcome.ggufs and outcome.ggufs[0].is_file() and outcome.modelfiles
        assert outcome.verification  # the export's own check of the file it wrote
        commands = screen.query_one("#export-commands", OptionList)
        assert commands.display
        assert await wait_until(pilot, lambda: commands.has_focus)  # Widget.focus() lands on the next message-loop turn
        shown = [str(commands.get_option_at_index(i).prompt) for i in range(commands.option_count)]
        assert any(s.startswith("ollama create ") for s in shown) and any(s.startswith("llama-cli -m ") for s in shown)
        copied = []
        app.copy_to_clipboard = copied.append
        await pilot.press("y")
        assert await wait_until(pilot, lambda: copied and copied[0].startswith("ollama create "))


async def test_train_screen_offers_export_once_the_run_has_ended_with_an_adapter(project):
    running = make_fake_run(project / "runs", "busy", 3, state="running")
    done = make_fake_run(project / "runs", "done", 3)
    for run in (running, done):
        run.adapter_dir.mkdir(parents=True)
    app = build_app(project_dir=project, runs_dir=project / "runs", offer_reattach=False)
    async with app.run_test(size=(80, 24)) as pilot:
        app.attach(running)
        train = app.screen
        assert await wait_until(pilot, lambda: train.snapshot is not None and train.snapshot.status.state != "queued")
        bar = train.query_one(KeyBar)
        assert "Export" not in bar.render_line(0).text
        await pilot.press("g")  # not while it trains
        await pilot.pause()
        assert not isinstance(app.screen, ExportScreen)
        app.attach(done)
        assert await wait_until(pilot, lambda: train.snapshot is not None and train.snapshot.status.state == "finished"
                                and "g Export" in bar.render_line(0).text)
        await pilot.press("g")
        assert await wait_until(pilot, lambda: isinstance(app.screen, ExportScreen) and app.screen.run == done)
