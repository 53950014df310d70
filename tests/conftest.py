"""Shared test fixtures: offline by default, never touching the user's own runs."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


import pytest

pytest_plugins = ["tests.infer_fixtures"]  # memorised-adapter runs for chat, eval and export


@pytest.fixture(scope="session")
def demo_model_dir(tmp_path_factory):
    """The demo model folder, built once per test session.

    Built into a per-session cache (so CI starts clean and the user's own cache is never
    touched) unless TUI_TUNER_CACHE is already set, in which case that cache is reused.
    TUI_TUNER_CACHE is exported for the session so CLI subprocesses find the same build.
    """
    from tui_tuner.demo_model import ensure_demo_model

    mp = pytest.MonkeyPatch()
    if not os.environ.get("TUI_TUNER_CACHE"):
        mp.setenv("TUI_TUNER_CACHE", str(tmp_path_factory.mktemp("tui-tuner-cache")))
    try:
        yield ensure_demo_model()
    finally:
        mp.undo()
