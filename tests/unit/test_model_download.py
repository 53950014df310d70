"""Hub model downloads: sizes, disk check, progress (CLI and run directory), resume, and the failure cases.

There is no hub here: the network boundary is faked — the hub's file listing (`HfApi.model_info`)
and the byte transfer (`huggingface_hub.file_download.http_get`, which writes chunks and drives
the progress class it is given, as the real one does). Everything else runs for real: the plan,
the disk check, the cache layout, resume from `.incomplete`, the progress lines and events.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from types import SimpleNamespace

import httpx2
import pytest
from huggingface_hub import HfApi, file_download
from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

from tui_tuner.models import download
from tui_tuner.models.download import ModelDownloadError, ensure_model, plan_download

REPO = "acme/tiny-chat"
COMMIT = "c0ffee" + "0" * 34
CHUNK = 64 * 1024
RATE = 256 * 1024
"""Bytes per second of the fake transfer (its clock advances with each chunk)."""


def _content(name: str, size: int) -> bytes:
    seed = hashlib.sha256(name.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


FILES = {
    "config.json": b'{"model_type": "llama"}',
    "tokenizer.json": _content("tokenizer.json", 3000),
    "model.safetensors": _content("model.safetensors", 1_000_000),
    "pytorch_model.bin": _content("pytorch_model.bin", 900_000),  # the same weights again: never downloaded
    "original/consolidated.pth": _content("original", 500_000),  # another format in a subfolder: skipped
    "README.md": b"# tiny",
}


class FakeHub:
    """The hub's listing and its file transfer, with a clock that advances with each chunk."""

    def __init__(self, monkeypatch, files=FILES, fail_listing: BaseException | None = None):
        self.files, self.fail_listing = dict(files), fail_listing
        self.transfers: list[tuple[str, int]] = []
        self.cut_after: int | None = None
        self.now = 1000.0
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
        monkeypatch.setattr(HfApi, "model_info", self.model_info)
        monkeypatch.setattr(file_download, "http_get", self.http_get)
        monkeypatch.setattr(download, "clock", lambda: self.now)

    def model_info(self, repo_id, *, revision=None, files_metadata=False, timeout=None, **_):
        assert files_metadata, "sizes come from the listing"
        if self.fail_listing is not None:
            raise self.fail_listing
        siblings = []
        for name, data in self.files.items():
            big = len(data) > 10_000
            lfs = SimpleNamespace(sha256=hashlib.sha256(data).hexdigest(), size=len(data)) if big else None
            siblings.append(SimpleNamespace(rfilename=name, size=len(data), lfs=lfs,
                                            blob_id=hashlib.sha1(data).hexdigest()))
        return SimpleNamespace(sha=COMMIT, siblings=siblings)

    def http_get(self, url, temp_file, *, resume_size=0, headers=None, expected_size=None,
                 displayed_filename=None, tqdm_class=None, **_):
        name = url.split(f"/resolve/{COMMIT}/", 1)[1]
        data = self.files[name]
        self.transfers.append((name, resume_size))
        bar = tqdm_class(total=expected_size, initial=resume_size)
        for start in range(resume_size, len(data), CHUNK):
            if self.cut_after is not None and start >= self.cut_after:
                raise httpx2.ReadError("connection reset by peer")
            chunk = data[start:start + CHUNK]
            temp_file.write(chunk)
            temp_file.flush()
            self.now += len(chunk) / RATE
            bar.update(len(chunk))


def _gated() -> GatedRepoError:
    return GatedRepoError("403 Client Error: access to model acme/tiny-chat is restricted",
                          response=httpx2.Response(403, request=httpx2.Request("GET", "https://huggingface.co/x")))


def test_plan_counts_only_what_from_pretrained_reads(tmp_path, monkeypatch):
    FakeHub(monkeypatch)
    plan = plan_download(REPO, cache_dir=tmp_path)
    names = [f.path for f in plan.files]
    assert set(names) == {"config.json", "tokenizer.json", "model.safetensors"}
    assert names[0] == "config.json"  # small files first: a gated repository fails before the weights
    assert plan.to_fetch_bytes == len(FILES["config.json"]) + 3000 + 1_000_000


def test_bin_weights_only_when_there_are_no_safetensors(tmp_path, monkeypatch):
    files = {k: v for k, v in FILES.items() if k != "model.safetensors"}
    FakeHub(monkeypatch, files)
    assert "pytorch_model.bin" in [f.path for f in plan_download(REPO, cache_dir=tmp_path).files]


def test_gguf_only_repository_is_refused_with_what_to_pick(tmp_path, monkeypatch):
    FakeHub(monkeypatch, {"config.json": b"{}", "model-q4_k_m.gguf": _content("g", 20_000)})
    with pytest.raises(ModelDownloadError) as err:
        plan_download(REPO, cache_dir=tmp_path)
    assert err.value.kind == "no-weights" and ".gguf" in str(err.value) and "GGUF" in err.value.hint


def test_download_fills_the_standard_cache_with_progress(tmp_path, monkeypatch):
    hub = FakeHub(monkeypatch)
    seen, notes = [], []
    folder = ensure_model(REPO, cache_dir=tmp_path, progress=seen.append, note=notes.append)
    assert folder == tmp_path / "models--acme--tiny-chat" / "snapshots" / COMMIT
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        assert (folder / name).is_symlink() and (folder / name).read_bytes() == FILES[name]
    assert not (folder / "pytorch_model.bin").exists()
    assert (tmp_path / "models--acme--tiny-chat" / "refs" / "main").read_text() == COMMIT
    assert "downloading 979.5 KiB (3 of 3 files" in notes[0]
    total = len(FILES["config.json"]) + 3000 + 1_000_000
    assert all(p.total == total for p in seen)
    dones = [p.done for p in seen]
    assert dones == sorted(dones) and dones[-1] == total and seen[-1].finished
    middle = [p for p in seen if 0 < p.done < total and p.eta_s]
    assert middle, "an ETA while bytes are still to come"
    assert middle[-1].rate == pytest.approx(RATE)
    text = middle[-1].text()
    assert text.startswith("downloading weights ") and " KiB of 979.5 KiB" in text
    assert "256.0 KiB/s" in text and "ETA 0:0" in text
    # the second time nothing is asked of the hub or transferred
    hub.transfers.clear()
    assert ensure_model(REPO, cache_dir=tmp_path) == folder and hub.transfers == []


def test_interrupted_download_keeps_its_bytes_and_resumes(tmp_path, monkeypatch):
    hub = FakeHub(monkeypatch)
    hub.cut_after = 6 * CHUNK
    with pytest.raises(ModelDownloadError) as err:
        ensure_model(REPO, cache_dir=tmp_path)
    assert err.value.kind == "offline"
    assert "lost while downloading" in str(err.value) and "model.safetensors (384.0 KiB of 976.6 KiB kept" in str(err.value)
    assert "resumes" in err.value.hint
    blob = hashlib.sha256(FILES["model.safetensors"]).hexdigest()
    part = tmp_path / "models--acme--tiny-chat" / "blobs" / f"{blob}.incomplete"
    assert part.stat().st_size == 6 * CHUNK

    hub.cut_after, hub.transfers = None, []
    plan = plan_download(REPO, cache_dir=tmp_path)
    assert plan.partial == {"model.safetensors": 6 * CHUNK}
    assert [f.path for f in plan.missing] == ["model.safetensors"]
    notes, seen = [], []
    folder = ensure_model(REPO, cache_dir=tmp_path, note=notes.append, progress=seen.append)
    assert "resuming: 384.0 KiB already here" in notes[0]
    assert hub.transfers == [("model.safetensors", 6 * CHUNK)]  # a range request from the kept bytes
    assert (folder / "model.safetensors").read_bytes() == FILES["model.safetensors"]
    assert not part.exists()
    assert seen[0].done == 6 * CHUNK and "resumed from 384.0 KiB" in seen[-1].text()


def test_too_little_disk_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    hub = FakeHub(monkeypatch)
    monkeypatch.setattr(download.shutil, "disk_usage", lambda p: SimpleNamespace(total=10 << 30, used=0, free=100 << 10))
    with pytest.raises(ModelDownloadError) as err:
        ensure_model(REPO, cache_dir=tmp_path / "hub")
    message = str(err.value)
    assert err.value.kind == "disk" and hub.transfers == []
    assert "needs 979.5 KiB more" in message and "100.0 KiB free" in message and str(tmp_path) in message
    assert "HF_HUB_CACHE" in err.value.hint
    assert not (tmp_path / "hub").exists()


def test_gated_missing_and_unreachable_are_told_apart(tmp_path, monkeypatch):
    cases = {
        "gated": (_gated(), ["gated"], ["hf auth login", f"https://huggingface.co/{REPO}"]),
        "missing": (RepositoryNotFoundError("404", response=httpx2.Response(
            404, request=httpx2.Request("GET", "https://huggingface.co/x"))), ["not a model on the hub"],
            ["spelling"]),
        "offline": (httpx2.ConnectError("[Errno -2] Name or service not known"),
                    ["cannot be reached", "nothing of it is in"], [f"tui-tuner model pull {REPO}", "HF_HUB_CACHE"]),
    }
    for kind, (exc, in_message, in_hint) in cases.items():
        FakeHub(monkeypatch, fail_listing=exc)
        with pytest.raises(ModelDownloadError) as err:
            ensure_model(REPO, cache_dir=tmp_path)
        assert err.value.kind == kind
        assert all(s in str(err.value) for s in in_message), str(err.value)
        assert all(s in err.value.hint for s in in_hint), err.value.hint


def test_gated_file_after_a_public_listing(tmp_path, monkeypatch):
    hub = FakeHub(monkeypatch)  # the listing of a gated repository is public; its files are not

    def refuse(url, *a, **k):
        raise _gated()

    monkeypatch.setattr(file_download, "http_get", refuse)
    with pytest.raises(ModelDownloadError) as err:
        ensure_model(REPO, cache_dir=tmp_path)
    assert err.value.kind == "gated" and "hf auth login" in err.value.hint and hub.transfers == []


def test_offline_uses_a_complete_cache_and_names_what_a_partial_one_holds(tmp_path, monkeypatch):
    FakeHub(monkeypatch)
    snap = tmp_path / "models--acme--tiny-chat" / "snapshots" / COMMIT
    snap.mkdir(parents=True)
    (tmp_path / "models--acme--tiny-chat" / "refs").mkdir()
    (tmp_path / "models--acme--tiny-chat" / "refs" / "main").write_text(COMMIT)
    (snap / "config.json").write_text("{}")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelDownloadError) as err:
        ensure_model(REPO, cache_dir=tmp_path)
    assert err.value.kind == "offline" and "HF_HUB_OFFLINE" in str(err.value)
    assert "holds only config.json" in str(err.value) and "models--acme--tiny-chat" in err.value.hint
    (snap / "model.safetensors").write_bytes(b"x")
    assert ensure_model(REPO, cache_dir=tmp_path) == snap


def test_model_pull_prints_size_progress_rate_and_eta(tmp_path, monkeypatch, capsys):
    from huggingface_hub import constants

    from tui_tuner import cli
    from tui_tuner.commands import run_progress

    FakeHub(monkeypatch)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(run_progress, "PLAIN_PREPARE_EVERY_S", 0.0)
    assert cli.main(["model", "pull", REPO, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "976.6 KiB  model.safetensors  (to download)" in out and "pytorch_model.bin" not in out
    assert f"{REPO} at c0ffee000000: 979.5 KiB to download of 979.5 KiB" in out
    assert not (tmp_path / "models--acme--tiny-chat").exists()
    assert cli.main(["model", "pull", REPO]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(tmp_path / "models--acme--tiny-chat" / "snapshots" / COMMIT)
    lines = err.splitlines()
    assert lines[0].startswith(f"{REPO}: downloading 979.5 KiB (3 of 3 files")
    progress = [line for line in lines if line.startswith("downloading weights")]
    assert any(" of 979.5 KiB · 256.0 KiB/s · ETA " in line and "(model.safetensors)" in line for line in progress)
    assert progress[-1].startswith("downloading weights 979.5 KiB of 979.5 KiB")

    assert cli.main(["model", "pull", "not-an-id"]) == 2
    FakeHub(monkeypatch, fail_listing=_gated())
    assert cli.main(["model", "pull", "acme/other"]) == 1
    err = capsys.readouterr().err
    assert "is gated" in err and "hint: Accept its licence" in err


def test_worker_writes_download_progress_the_run_views_show(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from tui_tuner.config.schema import RunConfig
    from tui_tuner.rundir.events import EventWriter, prepare_text
    from tui_tuner.rundir.runs import create_run
    from tui_tuner.train import worker
    from tui_tuner.tui.run_view import RunView

    hub = FakeHub(monkeypatch)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)
    cfg = RunConfig()
    cfg.model.name_or_path = REPO
    cfg.output.runs_dir = str(tmp_path / "runs")
    run = create_run(cfg, tmp_path, "pull")
    view = RunView(run)
    shown = []

    def http_get_seen_by_the_view(*args, **kwargs):  # the Train screen polls while bytes arrive
        FakeHub.http_get(hub, *args, **kwargs)
        shown.append(view.poll().prepare)

    monkeypatch.setattr(file_download, "http_get", http_get_seen_by_the_view)
    worker.download_model(cfg, EventWriter(run.events_path))
    events = [json.loads(line) for line in run.events_path.read_text().splitlines()]
    prepare = [e for e in events if e["kind"] == "prepare"]
    assert prepare and all(e["unit"] == "bytes" and e["repo"] == REPO for e in prepare)
    assert prepare[-1]["done"] == prepare[-1]["total"] == len(FILES["config.json"]) + 3000 + 1_000_000
    assert events[0]["kind"] == "download" and "downloading 979.5 KiB" in events[0]["message"]
    assert events[-1]["kind"] == "download" and events[-1]["finished"] is True
    assert any(t and " of 979.5 KiB · 256.0 KiB/s · ETA 0:0" in t for t in shown), shown
    assert view.poll().prepare.startswith("downloading weights 979.5 KiB of 979.5 KiB · 256.0 KiB/s")
    mid = next(e for e in prepare if e.get("eta_s"))
    assert " KiB of 979.5 KiB · 256.0 KiB/s · ETA 0:0" in prepare_text(mid)

    FakeHub(monkeypatch, fail_listing=_gated())
    cfg.model.name_or_path = "acme/gated"
    with pytest.raises(worker.WorkerError) as err:
        worker.download_model(cfg, EventWriter(run.events_path))
    assert "gated" in str(err.value) and "hf auth login" in err.value.hint


def test_local_folders_and_builtin_models_need_no_download(tmp_path, monkeypatch):
    from tui_tuner.config.defaults import DEMO_MODEL_ID

    (tmp_path / "acme" / "local").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert not download.is_hub_model("acme/local")
    assert not download.is_hub_model(DEMO_MODEL_ID)
    assert download.is_hub_model(REPO)
    assert not download.is_hub_model("../up/there")


def test_download_lines_rewrite_in_place_on_a_terminal():
    from tui_tuner.commands.run_progress import DownloadLines
    from tui_tuner.models.download import DownloadProgress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    out = Tty()
    lines = DownloadLines(out)
    lines(DownloadProgress(REPO, "model.safetensors", 1 << 30, 4 << 30, 35e6, 94.0))
    lines(DownloadProgress(REPO, "model.safetensors", 4 << 30, 4 << 30, 35e6, 0.0, finished=True))
    text = out.getvalue()
    assert text.startswith("\rdownloading weights 1.00 GiB of 4.00 GiB · 33.4 MiB/s · ETA 1:34")
    assert text.endswith("\n") and text.count("\r") == 2


def test_progress_text_before_the_first_byte():
    assert download.progress_text({"what": "downloading weights", "done": 0, "total": 100,
                                   "rate": None, "eta_s": None}) == "downloading weights 0 B of 100 B"


def test_train_preflight_refuses_with_the_hubs_sizes(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from tui_tuner.config.schema import load_config_text
    from tui_tuner.train import preflight

    FakeHub(monkeypatch)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    real = download.shutil.disk_usage
    monkeypatch.setattr(download.shutil, "disk_usage", lambda p: SimpleNamespace(total=1 << 30, used=0, free=1 << 20)
                        if "hub-cache" in str(p) else real(p))
    monkeypatch.setattr(preflight, "_hub_issues", lambda repo, rev: [])  # its own hub call is tested elsewhere
    (tmp_path / "hub-cache").mkdir()
    (tmp_path / "t.jsonl").write_text('{"instruction": "a", "output": "b"}\n')
    text = f"model:\n  name_or_path: {REPO}\ndata:\n  train: t.jsonl\n"
    path = tmp_path / "c.yaml"
    path.write_text(text)
    loaded = load_config_text(text, file=str(path))
    loaded.path = path
    issues = [i for i in preflight.preflight_issues(loaded) if "disk space to download" in i.message]
    assert issues and issues[0].key == "model.name_or_path" and issues[0].severity == "error"
    assert "needs 979.5 KiB more" in issues[0].message and "1.00 MiB free" in issues[0].message


def test_a_new_revision_reuses_the_blobs_it_shares(tmp_path, monkeypatch):
    hub = FakeHub(monkeypatch)
    first = ensure_model(REPO, cache_dir=tmp_path)
    hub.transfers.clear()
    newer = "beef" + "1" * 36
    monkeypatch.setattr(HfApi, "model_info", lambda self, *a, **k: SimpleNamespace(
        sha=newer, siblings=FakeHub.model_info(hub, REPO, files_metadata=True).siblings))
    seen = []
    folder = ensure_model(REPO, "v2", cache_dir=tmp_path, progress=seen.append)
    assert folder == first.parent / newer and hub.transfers == [] and seen == []
    assert (folder / "model.safetensors").read_bytes() == FILES["model.safetensors"]
    assert (tmp_path / "models--acme--tiny-chat" / "refs" / "v2").read_text() == newer


def test_a_disk_that_fills_up_mid_file_keeps_the_bytes_for_later(tmp_path, monkeypatch):
    import errno

    hub = FakeHub(monkeypatch)
    real = hub.http_get

    def fill_up(url, temp_file, **kwargs):
        if url.endswith("model.safetensors"):
            hub.cut_after = 2 * CHUNK
            try:
                real(url, temp_file, **kwargs)
            except httpx2.ReadError:
                raise OSError(errno.ENOSPC, "No space left on device") from None
        else:
            real(url, temp_file, **kwargs)

    monkeypatch.setattr(file_download, "http_get", fill_up)
    with pytest.raises(ModelDownloadError) as err:
        ensure_model(REPO, cache_dir=tmp_path)
    assert err.value.kind == "disk"
    assert "disk filled up" in str(err.value) and "128.0 KiB of 976.6 KiB kept" in str(err.value)
    assert "HF_HUB_CACHE" in err.value.hint and "resumes" in err.value.hint


def test_chat_and_eval_download_the_base_model_with_progress_lines(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from tui_tuner.commands import run_progress
    from tui_tuner.commands.run_progress import DownloadLines
    from tui_tuner.inference.chat_model import ModelSource, SourceError, fetch_base_model

    FakeHub(monkeypatch)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(run_progress, "PLAIN_PREPARE_EVERY_S", 0.0)
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    lines = DownloadLines(out)
    source = ModelSource("adapter", REPO, tmp_path / "adapter", REPO, "adapter")
    fetch_base_model(source, progress=lines, note=lines.note)
    text = out.getvalue()
    assert text.startswith(f"{REPO}: downloading 979.5 KiB") and "· 256.0 KiB/s · ETA " in text
    assert (tmp_path / "hub" / "models--acme--tiny-chat" / "snapshots" / COMMIT / "model.safetensors").is_file()

    FakeHub(monkeypatch, fail_listing=_gated())
    with pytest.raises(SourceError) as err:
        fetch_base_model(ModelSource("adapter", "acme/gated", None, "acme/gated", "x"))
    assert "is gated" in str(err.value) and "hf auth login" in str(err.value)


class LocalHub:
    """A local HTTP server answering the hub's two requests (the listing, file bytes with Range), for the real client."""

    def __init__(self, files: dict[str, bytes]):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.files, self.requests = files, []
        self.cut_after: int | None = None  # send this many bytes of the big file, drop the connection, then fail
        self.failing = False
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                hub.requests.append((self.path, self.headers.get("Range")))
                if self.path.startswith(f"/api/models/{REPO}"):
                    return self._send(200, json.dumps({"id": REPO, "sha": COMMIT, "siblings": hub.siblings()}).encode())
                name = self.path.removeprefix(f"/{REPO}/resolve/{COMMIT}/")
                data = hub.files.get(name)
                if data is None:
                    return self._send(404, b"")
                if hub.failing and len(data) > 10_000:
                    return self._send(500, b"")
                start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                if hub.cut_after is not None and len(data) > 10_000:
                    self.wfile.write(data[start:hub.cut_after])
                    hub.cut_after, hub.failing = None, True
                    self.wfile.flush()
                    self.connection.close()
                    return
                self.wfile.write(data[start:])

            def _send(self, code, body):
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def siblings(self):
        out = []
        for name, data in self.files.items():
            entry = {"rfilename": name, "size": len(data), "blobId": hashlib.sha1(data).hexdigest()}
            if len(data) > 10_000:
                entry["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            out.append(entry)
        return out


@pytest.mark.slow
def test_model_pull_resumes_over_real_http(tmp_path):
    """`tui-tuner model pull` in its own process, huggingface_hub's real HTTP client, a local server as the hub."""
    import os
    import subprocess
    import sys

    big = _content("shard", 24 << 20)  # above the client's 10 MiB read size, so a dropped connection keeps bytes
    hub = LocalHub({"config.json": b'{"model_type": "llama"}', "model.safetensors": big})
    hub.cut_after = 20 << 20
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env = {k: v for k, v in env.items() if k != "TRANSFORMERS_OFFLINE"}  # online, against the local hub
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf"), HF_HUB_CACHE=str(tmp_path / "hub"),
               PYTHONPATH=str(Path(__file__).resolve().parents[2]))

    def pull():
        return subprocess.run([sys.executable, "-m", "tui_tuner", "model", "pull", REPO], env=env,
                              capture_output=True, text=True, timeout=120)

    first = pull()
    assert first.returncode == 1, first.stderr
    assert "the connection to the hub was lost" in first.stderr and "20.0 MiB of 24.0 MiB kept" in first.stderr
    hub.failing, hub.requests = False, []
    second = pull()
    assert second.returncode == 0, second.stderr
    assert "resuming: 20.0 MiB already here" in second.stderr
    assert hub.requests[-1] == (f"/{REPO}/resolve/{COMMIT}/model.safetensors", f"bytes={20 << 20}-")
    assert "downloading weights 24.0 MiB of 24.0 MiB" in second.stderr
    snapshot = Path(second.stdout.strip())
    assert (snapshot / "model.safetensors").read_bytes() == big
    assert snapshot == tmp_path / "hub" / "models--acme--tiny-chat" / "snapshots" / COMMIT
