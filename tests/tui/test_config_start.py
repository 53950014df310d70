"""Start on the Config screen runs the same pre-start check as `tui-tuner train`: an unreachable
model is refused with its fix and listed in the issue list; dataset issues are labelled with
their dataset file and line, never as config lines; the issue list keeps the YAML line in view."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Button

from tests.tui.conftest import wait_until
from tui_tuner.tui.app import build_app
from tui_tuner.tui.widgets.issue_list import IssueList
from tui_tuner.tui.widgets.yaml_editor import YamlEditor

HUB_CONFIG = """model:
  name_or_path: nobody-here/not-a-real-model-7b
lora:
  r: 8
training:
  max_steps: 5
data:
  train: data/train.jsonl
"""


def app_with(project: Path, text: str, data: str = '{"instruction": "hi", "output": "hello"}\n' * 8):
    config = project / "configs" / "c.yaml"
    config.write_text(text, encoding="utf-8")
    (project / "data" / "train.jsonl").write_text(data, encoding="utf-8")
    return build_app(project_dir=project, config_path=config, runs_dir=project / "runs", offer_reattach=False)


def issue_texts(screen) -> list[str]:
    issues = screen.query_one(IssueList)
    return [str(issues.get_option_at_index(i).prompt) for i in range(issues.option_count)]


async def test_start_refuses_an_uncached_hub_model_offline_with_the_fix(project, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(project / "empty-cache"))
    app = app_with(project, HUB_CONFIG)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert await wait_until(pilot, lambda: screen.ready and not screen.query_one("#start", Button).disabled)
        await pilot.press("ctrl+r")
        assert await wait_until(pilot, lambda: screen.preflight_issues)
        texts = issue_texts(screen)
        assert any("line 2:" in t and "model.name_or_path" in t and "hf download nobody-here/not-a-real-model-7b" in t
                   for t in texts), texts
        assert app.current_mode == "config"
        assert not (project / "runs").exists() or not any((project / "runs").iterdir())
        # Editing the config clears the finding until the next start.
        editor = screen.query_one(YamlEditor)
        editor.load_text(HUB_CONFIG.replace("r: 8", "r: 4"))
        assert await wait_until(pilot, lambda: not screen.preflight_issues)


async def test_dataset_issues_name_the_dataset_file_and_line(project):
    bad = '{"instruction": "hi", "output": "hello"}\n' * 3 + '{"instruction": "no output"\n'
    app = app_with(project, HUB_CONFIG.replace("nobody-here/not-a-real-model-7b", "tui-tuner/demo-tiny-llama"), bad)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert await wait_until(pilot, lambda: screen.ready and screen.data_issues)
        texts = issue_texts(screen)
        data_lines = [t for t in texts if "train.jsonl:4" in t]
        assert data_lines, texts
        assert not any(t.startswith(("✗ line 4", "! line 4")) for t in texts)
        # The config's line 4 is not marked because of the dataset's line 4.
        assert 3 not in screen.query_one(YamlEditor)._error_lines
        # Choosing the dataset issue shows the config line naming the file (data.train: line 8).
        issues = screen.query_one(IssueList)
        issues.focus()
        issues.highlighted = next(i for i, t in enumerate(texts) if "train.jsonl:4" in t)
        await pilot.press("enter")
        editor = screen.query_one(YamlEditor)
        assert await wait_until(pilot, lambda: editor.cursor_location[0] == 7)


async def test_moving_through_issues_keeps_their_yaml_line_in_view(project):
    long = "# padding\n" * 40 + HUB_CONFIG.replace("r: 8", "r: -1").replace("max_steps: 5", "max_steps: 0")
    app = app_with(project, long.replace("nobody-here/not-a-real-model-7b", "tui-tuner/demo-tiny-llama"))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert await wait_until(pilot, lambda: screen.ready and len(screen.errors) >= 2)
        issues = screen.query_one(IssueList)
        issues.focus()
        editor = screen.query_one(YamlEditor)
        await pilot.press("down")
        assert await wait_until(pilot, lambda: editor.cursor_location[0] >= 40)
        row = editor.cursor_location[0]
        top = editor.scroll_offset.y
        assert top <= row < top + editor.size.height
        assert issues.has_focus  # the list keeps the keys
