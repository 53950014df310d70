"""The TUI's first frame must not import the training stack (it would cost seconds over SSH)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HEAVY = ("torch", "transformers", "datasets", "peft", "trl", "unsloth", "bitsandbytes")

PROBE = """
import asyncio, json, sys
from tui_tuner.tui.app import build_app

async def main():
    app = build_app(offer_reattach=False, offer_quickstart=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        shown = type(app.screen).__name__
        first_frame = sorted(m for m in %r if m in sys.modules)
        for _ in range(200):  # then the schema and the form load: still nothing heavy
            if app.screen.ready:
                break
            await pilot.pause(0.05)
        ready = app.screen.ready
        after_ready = sorted(m for m in %r if m in sys.modules)
    print(json.dumps({"screen": shown, "heavy": first_frame, "ready": ready, "heavy_when_ready": after_ready}))

asyncio.run(main())
""" % (HEAVY, HEAVY)


def test_first_frame_imports_no_heavy_module(tmp_path):
    # Run from an empty folder (no configs/, no runs/) with the project importable.
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path, env=env, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"screen": "ConfigScreen", "heavy": [], "ready": True, "heavy_when_ready": []}
