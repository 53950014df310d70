"""Telling the user a run ended (or stalled), wherever they are: the config's `notify:` section.

The run's supervisor (`tui_tuner.train.supervisor`) calls `notify_run_end` once the worker has
ended and its final state is written, and `notify_stalled` when a running run has logged nothing
for `notify.stall_minutes`, so the message goes out with the TUI closed and the SSH connection
gone. Each channel is tried once, with a timeout; what happened is appended to the run's events
(`{"kind": "notified", ...}`) and never fails the run.

    webhook: POST application/json  {"run", "state", "step", "max_steps", "final_loss", "eval_loss",
                                      "error", "hint", "path"}
    ntfy:    POST text to the topic URL, with Title / Tags / Priority headers
    command: run with TUI_TUNER_RUN, TUI_TUNER_STATE, TUI_TUNER_LOSS set and the JSON on stdin
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import urllib.error
import urllib.request
from typing import Any

from tui_tuner.rundir.events import EventWriter
from tui_tuner.rundir.runs import RunDir
from tui_tuner.rundir.status import RunStatus

TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 60.0
NTFY_TAGS = {"finished": "white_check_mark", "stopped": "pause_button", "failed": "x", "crashed": "x",
             "stalled": "hourglass"}


def end_payload(run: RunDir, status: RunStatus, state: str | None = None) -> dict[str, Any]:
    """What every channel is told: the run, how it ended and its last losses."""
    return {"run": run.name, "state": state or status.state, "step": status.step, "max_steps": status.max_steps,
            "final_loss": status.loss, "eval_loss": status.eval_loss, "error": status.error, "hint": status.hint,
            "path": str(run.path)}


def summary_line(payload: dict[str, Any]) -> str:
    """One line for a phone or a desktop notification."""
    text = f"{payload['run']} {payload['state']} at step {payload['step']}/{payload['max_steps'] or '?'}"
    if isinstance(payload.get("final_loss"), (int, float)):
        text += f", loss {payload['final_loss']:.4f}"
    if payload.get("error"):
        text += f": {payload['error']}"
    return text


def _post(url: str, body: bytes, headers: dict[str, str]) -> str:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"failed: HTTP {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError) as exc:
        return f"failed: {getattr(exc, 'reason', exc)}"


def send(notify_cfg: Any, payload: dict[str, Any]) -> dict[str, str]:
    """Send `payload` on every configured channel; returns each channel's outcome in words."""
    results: dict[str, str] = {}
    if notify_cfg.webhook:
        results["webhook"] = _post(notify_cfg.webhook, json.dumps(payload).encode("utf-8"),
                                   {"Content-Type": "application/json", "User-Agent": "tui-tuner"})
    if notify_cfg.ntfy:
        state = payload["state"]
        results["ntfy"] = _post(notify_cfg.ntfy, summary_line(payload).encode("utf-8"), {
            "Title": f"tui-tuner: {payload['run']} {state}", "Tags": NTFY_TAGS.get(state, "robot"),
            "Priority": "high" if state in ("failed", "crashed", "stalled") else "default"})
    if notify_cfg.command:
        env = {**os.environ, "TUI_TUNER_RUN": payload["run"], "TUI_TUNER_STATE": payload["state"],
               "TUI_TUNER_LOSS": "" if payload.get("final_loss") is None else str(payload["final_loss"])}
        try:
            done = subprocess.run(shlex.split(notify_cfg.command), input=json.dumps(payload), text=True, env=env,
                                  capture_output=True, timeout=COMMAND_TIMEOUT_S)
            results["command"] = f"exit {done.returncode}" + (f": {done.stderr.strip()[-200:]}" if done.returncode else "")
        except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
            results["command"] = f"failed: {exc}"
    return results


def _notify(run: RunDir, state: str) -> dict[str, str] | None:
    try:
        cfg = run.config().notify
    except Exception:  # an unreadable config has nothing to say about notifications
        return None
    if not cfg.enabled or state not in cfg.when:
        return None
    status = run.status()
    results = send(cfg, end_payload(run, status, state))
    with EventWriter(run.events_path) as events:
        events.write("notified", state=state, results=results)
    return results


def notify_run_end(run: RunDir) -> dict[str, str] | None:
    """Tell the config's channels how the run ended (None when it asks for no notification)."""
    return _notify(run, run.status().state)


def notify_stalled(run: RunDir) -> dict[str, str] | None:
    """Tell the config's channels the run has logged nothing for `notify.stall_minutes`."""
    return _notify(run, "stalled")


def stall_seconds(run: RunDir) -> float | None:
    """How long a quiet run may stay quiet before it counts as stalled (None: notifications are off)."""
    try:
        cfg = run.config().notify
    except Exception:
        return None
    return cfg.stall_minutes * 60 if cfg.enabled and "stalled" in cfg.when else None
