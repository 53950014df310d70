"""Told when a run ends: the run's supervisor posts to a webhook and an ntfy topic and runs a command,
tested against an HTTP server on 127.0.0.1 (no network)."""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tui_tuner.config.schema import NotifyConfig
from tui_tuner.rundir.runs import create_run, start_worker
from tui_tuner.rundir.status import RunStatus, write_status
from tui_tuner.train.notify import end_payload, notify_run_end, send


class Received(BaseHTTPRequestHandler):
    posts: list = []

    def do_POST(self):  # noqa: N802 (the stdlib's name)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).posts.append((self.path, dict(self.headers), body))
        self.send_response(404 if self.path == "/missing" else 200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    Received.posts = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Received)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", Received.posts
    httpd.shutdown()


def test_every_channel_is_told_and_failures_are_reported(server, tmp_path):
    url, posts = server
    out = tmp_path / "told.json"
    command = f"{sys.executable} -c \"import os,sys; open({str(out)!r},'w').write(os.environ['TUI_TUNER_STATE'] + sys.stdin.read())\""
    cfg = NotifyConfig(webhook=f"{url}/hook", ntfy=f"{url}/my-topic", command=command)
    payload = {"run": "r1", "state": "finished", "step": 20, "max_steps": 20, "final_loss": 0.1234,
               "eval_loss": 0.2, "error": None, "hint": None, "path": "/runs/r1"}
    results = send(cfg, payload)
    assert results == {"webhook": "HTTP 200", "ntfy": "HTTP 200", "command": "exit 0"}
    (hook_path, hook_headers, hook_body), (topic_path, topic_headers, topic_body) = posts
    assert hook_path == "/hook" and json.loads(hook_body) == payload
    assert hook_headers["Content-Type"] == "application/json"
    assert topic_path == "/my-topic" and topic_headers["Title"] == "tui-tuner: r1 finished"
    assert topic_body.decode() == "r1 finished at step 20/20, loss 0.1234"
    assert out.read_text().startswith("finished{")
    bad = send(NotifyConfig(webhook=f"{url}/missing", ntfy="http://127.0.0.1:9/closed-port"), payload)
    assert bad["webhook"].startswith("failed: HTTP 404") and bad["ntfy"].startswith("failed")


def test_supervisor_tells_the_webhook_when_a_run_fails(server, make_run_config, wait_for_run, tmp_path):
    url, posts = server
    runs = tmp_path / "runs"
    cfg = make_run_config(runs, **{"data.train": str(tmp_path / "gone.jsonl"), "notify.webhook": f"{url}/hook"})
    run = create_run(cfg, tmp_path, name="doomed")
    start_worker(run)
    st = wait_for_run(run, ("failed", "crashed"))
    assert st.state == "failed"
    deadline = time.monotonic() + 120  # the supervisor tells once the worker process has exited
    while not posts and time.monotonic() < deadline:
        time.sleep(0.1)
    told = [json.loads(body) for path, _, body in posts if path == "/hook"]
    assert len(told) == 1
    assert told[0]["run"] == run.name and told[0]["state"] == "failed" and told[0]["error"]
    while time.monotonic() < deadline and '"notified"' not in run.events_path.read_text():
        time.sleep(0.1)
    events = [json.loads(line) for line in run.events_path.read_text().splitlines()]
    assert any(e["kind"] == "notified" and e["results"] == {"webhook": "HTTP 200"} for e in events)


def test_nothing_is_sent_for_an_ending_the_config_leaves_out(server, tmp_path):
    url, posts = server
    from tui_tuner.config.schema import RunConfig

    cfg = RunConfig()
    cfg.notify.webhook = f"{url}/hook"
    cfg.notify.when = ["failed"]
    run = create_run(cfg, tmp_path, name="fine")
    write_status(run.path, RunStatus(state="finished", step=3, max_steps=3, loss=0.5))
    assert notify_run_end(run) is None and posts == []
    assert end_payload(run, run.status())["final_loss"] == 0.5
