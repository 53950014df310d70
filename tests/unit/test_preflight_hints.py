"""Hub failures become one line and what to do; a disk too full for a run is caught before it starts."""

from __future__ import annotations

import shutil
from collections import namedtuple

from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

from tui_tuner.config.schema import RunConfig, load_config_text
from tui_tuner.train import preflight
from tui_tuner.train.preflight import hub_error_hint, preflight_issues

REPO = "meta-llama/Llama-3.2-1B-Instruct"


def response(status: int):
    """A real httpx response, as the hub client gets one (the hub errors read its headers)."""
    import httpx2 as httpx  # the HTTP client huggingface_hub is built on

    return httpx.Response(status, request=httpx.Request("GET", f"https://huggingface.co/{REPO}"))


def wrapped(inner: BaseException) -> OSError:
    """How transformers reports a hub failure: an OSError raised from the hub's own error."""
    try:
        try:
            raise inner
        except Exception as exc:
            raise OSError(f"We couldn't load {REPO}: see the error above") from exc
    except OSError as outer:
        return outer


def test_each_hub_failure_gets_its_own_fix():
    message, hint = hub_error_hint(wrapped(GatedRepoError("403 gated", response=response(403))), REPO)
    assert "gated" in message and "hf auth login" in hint and REPO in hint
    message, hint = hub_error_hint(wrapped(RepositoryNotFoundError("404", response=response(404))), REPO)
    assert "not a model on the hub" in message and REPO in hint
    message, hint = hub_error_hint(wrapped(LocalEntryNotFoundError("no cache, offline")), REPO)
    assert "cannot be reached" in message and f"hf download {REPO}" in hint
    assert "\n" not in message + hint
    assert hub_error_hint(ValueError("a bad value"), REPO) is None


def test_worker_reports_a_hub_failure_in_one_line(tmp_path):
    from tui_tuner.rundir.runs import create_run
    from tui_tuner.train.worker import _classify

    cfg = RunConfig()
    cfg.model.name_or_path = REPO
    run = create_run(cfg, tmp_path, name="hub")
    error, hint = _classify(wrapped(LocalEntryNotFoundError("offline")), run)
    assert REPO in error and "hf download" in hint


def test_no_room_to_download_an_uncached_hub_model_is_an_error(tmp_path, monkeypatch):
    Usage = namedtuple("Usage", "total used free")
    real = shutil.disk_usage

    def small_cache(path):  # the hub cache's disk is nearly full; the rest is as it is
        return Usage(10 << 30, (10 << 30) - (200 << 20), 200 << 20) if "hub-cache" in str(path) else real(path)

    monkeypatch.setattr(shutil, "disk_usage", small_cache)
    monkeypatch.setattr(preflight, "hub_offline", lambda: True)
    from huggingface_hub import constants

    (tmp_path / "hub-cache").mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    text = f"model:\n  name_or_path: {REPO}\ndata:\n  train: t.jsonl\n"
    (tmp_path / "t.jsonl").write_text('{"instruction": "a", "output": "b"}\n')
    (tmp_path / "configs").mkdir()
    path = tmp_path / "configs" / "c.yaml"
    path.write_text(text)
    loaded = load_config_text(text, file=str(path))
    loaded.path = path
    issues = [i for i in preflight_issues(loaded) if "downloading" in i.message]
    assert issues and issues[0].key == "model.name_or_path" and "HF_HOME" in issues[0].message
    assert preflight.model_download_bytes(REPO) > 2e9  # 1.24B parameters in 16 bits
