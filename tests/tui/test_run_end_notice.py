"""Told when a run ends: the open TUI rings the bell and asks the terminal for a desktop
notification (OSC 9 and OSC 777) when a run it follows finishes, fails or stalls."""

from __future__ import annotations

import os
import time

from tests.tui.conftest import make_fake_run, wait_until
from tui_tuner.rundir.status import read_status, write_status
from tui_tuner.tui.app import build_app
from tui_tuner.tui.terminal_notify import notification_sequences


def test_sequences_are_osc_9_and_777_and_pass_through_tmux():
    plain = notification_sequences("tui-tuner: r1", "finished; loss 0.1\x07", tmux=False)
    assert plain == "\x1b]9;tui-tuner: r1: finished; loss 0.1 \x07\x1b]777;notify;tui-tuner: r1;finished; loss 0.1 \x07"
    wrapped = notification_sequences("t", "b", tmux=True)
    assert wrapped.startswith("\x1bPtmux;\x1b\x1b]9;") and wrapped.endswith("\x1b\\")


async def test_bell_and_desktop_notification_when_a_followed_run_finishes_then_stalls(project):
    run = make_fake_run(project / "runs", "watched", 5, state="running")
    stalled = make_fake_run(project / "runs", "quiet", 5, state="running")
    for r in (run, stalled):  # "running" in a live process (this one), so not reported as crashed
        st = read_status(r.path)
        st.pid, st.ended = os.getpid(), None
        write_status(r.path, st)
    app = build_app(project_dir=project, runs_dir=project / "runs", offer_reattach=False)
    async with app.run_test(size=(80, 24)) as pilot:
        rings, written, toasts = [], [], []
        app.bell = lambda: rings.append(1)
        app._driver.write = written.append
        app.notify = lambda message, **kw: toasts.append(message)
        app.attach(run)
        app.watch_run(stalled)
        await pilot.pause()
        st = read_status(run.path)
        st.state, st.ended = "finished", time.time()
        write_status(run.path, st)
        assert await wait_until(pilot, lambda: rings and written)
        sent = "".join(written)
        assert f"\x1b]9;tui-tuner: {run.name}: finished at step 5" in sent
        assert f"\x1b]777;notify;tui-tuner: {run.name};finished at step 5" in sent
        assert any("finished at step 5" in t and "export" in t for t in toasts)
        # A run that logs nothing for longer than notify.stall_minutes (30 by default) is told once.
        old = time.time() - 31 * 60
        os.utime(stalled.events_path, (old, old))
        assert await wait_until(pilot, lambda: len(rings) == 2)
        assert f"tui-tuner: {stalled.name}" in "".join(written)
        await pilot.pause(2 * 3.0)
        assert len(rings) == 2  # not repeated
