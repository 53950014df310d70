"""Pilot-test fixtures: a frozen cursor (stable screenshots), a throw-away project and runs dir."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
from textual.css.query import NoMatches
from textual.widgets import Input, TextArea

WAIT_TIMEOUT_S = 60.0
"""How long Pilot tests wait for a condition: generous, because CI runs them on a loaded 2-core box."""


async def wait_until(pilot, predicate, timeout: float = WAIT_TIMEOUT_S, interval: float = 0.05) -> bool:
    """Let the app run until `predicate()` is true or `timeout` seconds have passed; return the last answer.

    A widget that is not composed yet (`NoMatches`) counts as "not yet": screens build their
    children after the first frame, and a loaded machine makes that gap long.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return True
        except NoMatches:
            pass
        if time.monotonic() >= deadline:
            break
        await pilot.pause(interval)
    try:
        return bool(predicate())
    except NoMatches:
        return False


async def set_select(pilot, find_select, value) -> None:
    """Set a Select's value once it is composed: setting it earlier fails inside Textual (its label
    is not mounted yet), which a loaded machine makes likely right after the screen opens."""
    assert await wait_until(pilot, lambda: find_select().query_one("SelectCurrent #label") is not None)
    find_select().value = value


@pytest.fixture(autouse=True)
def frozen_cursor_blink(monkeypatch):
    """A blinking cursor makes two renders of the same state differ; tests never want that."""
    monkeypatch.setattr(Input.cursor_blink, "_default", False)
    monkeypatch.setattr(TextArea.cursor_blink, "_default", False)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """An empty project folder with `configs/` and `data/`, never the developer's own."""
    (tmp_path / "configs").mkdir()
    (tmp_path / "data").mkdir()
    return tmp_path


def make_fake_run(runs_dir: Path, name: str, steps: int, *, state: str = "finished", r: int = 16,
                  error: str | None = None, hint: str | None = None, log: str = "") -> "object":
    """A run directory written through the engine's own writers, with a synthetic loss curve.

    For screens that only read runs (tables, comparison, failed runs); training itself is
    covered by the tests that start a real worker.
    """
    from tui_tuner.config.schema import RunConfig
    from tui_tuner.rundir.events import EventWriter
    from tui_tuner.rundir.runs import create_run
    from tui_tuner.rundir.status import RunStatus, write_status

    cfg = RunConfig()
    cfg.lora.r = r
    cfg.output.runs_dir = str(runs_dir)
    run = create_run(cfg, runs_dir, name=name)
    with EventWriter(run.events_path) as writer:
        for s in range(1, steps + 1):
            writer.write("log", step=s, loss=2.5 * math.exp(-s / 30) + 0.2 + r / 100, learning_rate=2e-4,
                         grad_norm=1.0, tokens_per_s=900.0, eta_s=float(steps - s))
    run.log_path.write_text(log or "".join(f"step {s}\n" for s in range(steps)), encoding="utf-8")
    now = time.time()
    write_status(run.path, RunStatus(state=state, step=steps, max_steps=steps, started=now - 60, ended=now,
                                     loss=2.0, backend="transformers", backend_reason="no CUDA GPU",
                                     error=error, hint=hint))
    return run
