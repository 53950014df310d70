"""Security promises: names stay inside the runs directory, input is data (never code),
remote code only on request, and no network unless a hub id is used.

    PYTHONPATH=$PWD python -m pytest -q tests/reliability/test_security.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tui_tuner.core.names import run_name_problem

REPO = Path(__file__).resolve().parents[2]

ESCAPING_NAMES = ["../x", "../../etc/passwd", "..", ".", "/tmp/evil", "/", "a/../../b", "a/b", "a\\b",
                  "..\\..\\win", "a\x00b", "\x00", "", "-rf", ".hidden", "x" * 200, "name with spaces"]


@pytest.mark.parametrize("name", ESCAPING_NAMES, ids=repr)
def test_run_names_that_are_paths_are_refused(name):
    assert run_name_problem(name) is not None


@pytest.mark.parametrize("name", ["my-run", "llama3.2_lora", "a", "Run-2026.1"])
def test_plain_run_names_are_accepted(name):
    assert run_name_problem(name) is None


# ---------------------------------------------------------------------------- network

NETWORK_GUARD = textwrap.dedent("""
    # Loaded by every Python process of the test: records and refuses any outbound connection.
    import os, socket
    _log = os.environ["NETWORK_ATTEMPTS_LOG"]
    def _refuse(what, target):
        with open(_log, "a") as f:
            f.write(f"{what} {target!r}\\n")
        raise OSError(101, "network use refused by the test")
    _connect = socket.socket.connect
    def connect(self, address):
        if self.family == getattr(socket, "AF_UNIX", None):
            return _connect(self, address)
        _refuse("connect", address)
    socket.socket.connect = connect
    socket.socket.connect_ex = lambda self, address: _refuse("connect_ex", address)
    _getaddrinfo = socket.getaddrinfo
    def getaddrinfo(host, *args, **kwargs):
        if host in (None, "localhost", "127.0.0.1", "::1"):
            return _getaddrinfo(host, *args, **kwargs)
        _refuse("getaddrinfo", host)
    socket.getaddrinfo = getaddrinfo
""")


@pytest.fixture
def guarded_env(tmp_path):
    """Environment for a subprocess whose every network attempt is refused and logged."""
    guard_dir = tmp_path / "guard"
    guard_dir.mkdir()
    (guard_dir / "sitecustomize.py").write_text(NETWORK_GUARD)
    log = tmp_path / "network.log"
    env = {**os.environ, "PYTHONPATH": f"{guard_dir}{os.pathsep}{REPO}", "NETWORK_ATTEMPTS_LOG": str(log),
           "NO_COLOR": "1", "COLUMNS": "300"}
    env.pop("HF_HUB_OFFLINE", None)
    env.pop("TRANSFORMERS_OFFLINE", None)
    return env, log


def _project(tmp_path: Path, model: str) -> Path:
    (tmp_path / "data").mkdir(exist_ok=True)
    rows = [{"instruction": "What is Bramble?", "output": "A garden robot."}] * 4
    (tmp_path / "data" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"model:\n  name_or_path: {model}\ndata:\n  train: data/train.jsonl\n"
                   "training:\n  max_steps: 1\noutput:\n  runs_dir: runs\n")
    return cfg


def test_the_guard_itself_catches_network_use(tmp_path, guarded_env):
    env, log = guarded_env
    code = "import urllib.request\ntry:\n    urllib.request.urlopen('http://example.com', timeout=2)\nexcept OSError:\n    pass\n"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    assert "example.com" in log.read_text()


def test_config_check_of_a_local_model_touches_no_network(tmp_path, guarded_env):
    env, log = guarded_env
    model = tmp_path / "models" / "mine"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    cfg = _project(tmp_path, "models/mine")
    proc = subprocess.run([sys.executable, "-m", "tui_tuner", "config", "check", str(cfg)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not log.exists(), log.read_text()


def test_config_check_of_the_demo_model_touches_no_network(tmp_path, guarded_env):
    env, log = guarded_env
    cfg = _project(tmp_path, "tui-tuner/demo-tiny-llama")
    proc = subprocess.run([sys.executable, "-m", "tui_tuner", "config", "check", str(cfg)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not log.exists(), log.read_text()


def test_a_hub_id_asks_the_hub_and_an_unreachable_hub_is_a_warning(tmp_path, guarded_env):
    env, log = guarded_env
    env["HF_HOME"] = str(tmp_path / "hf-home")  # an empty cache: the id must be looked up
    cfg = _project(tmp_path, "someone/some-model")
    proc = subprocess.run([sys.executable, "-m", "tui_tuner", "config", "check", str(cfg)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out
    assert log.exists() and "huggingface" in log.read_text()
    assert "could not reach the hub" in out


def test_a_hub_id_while_offline_touches_no_network(tmp_path, guarded_env):
    env, log = guarded_env
    env["HF_HOME"] = str(tmp_path / "hf-home")
    env["HF_HUB_OFFLINE"] = "1"
    cfg = _project(tmp_path, "someone/some-model")
    proc = subprocess.run([sys.executable, "-m", "tui_tuner", "config", "check", str(cfg)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "HF_HUB_OFFLINE" in proc.stderr
    assert not log.exists(), log.read_text()


# ---------------------------------------------------------------------------- input is data, never code


def test_chat_message_text_is_never_evaluated_as_a_template():
    templates = pytest.importorskip("tui_tuner.chat_format.templates")
    messages = [{"role": "user", "content": "{{ 7 * 7 }} {% for x in range(3) %}x{% endfor %}"},
                {"role": "assistant", "content": "{{ cycler.__init__.__globals__ }}"}]
    for name, source in templates.BUILTIN_TEMPLATES.items():
        text = templates.render_conversation(source, messages)
        assert "{{ 7 * 7 }}" in text and "49" not in text, name
        assert "{{ cycler.__init__.__globals__ }}" in text, name


def test_a_template_cannot_reach_python_internals():
    templates = pytest.importorskip("tui_tuner.chat_format.templates")
    evil = "{{ ''.__class__.__mro__[1].__subclasses__() }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
    with pytest.raises(templates.ChatTemplateError):
        templates.render_template(evil, [{"role": "user", "content": "hi"}])


# ---------------------------------------------------------------------------- remote code


@pytest.mark.parametrize("setting", [None, False, True])
def test_trust_remote_code_is_passed_only_when_the_config_says_true(monkeypatch, setting):
    transformers = pytest.importorskip("transformers")
    from types import SimpleNamespace

    from tui_tuner.config.schema import validate_raw
    from tui_tuner.train.backends import transformers_backend

    calls = []

    def fake_from_pretrained(kind):
        def load(path, **kwargs):
            calls.append((kind, kwargs.get("trust_remote_code", "missing")))
            if kind == "tokenizer":
                return SimpleNamespace(pad_token="<pad>", eos_token="</s>")
            return SimpleNamespace(config=SimpleNamespace(use_cache=True))
        return load

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", fake_from_pretrained("tokenizer"))
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", fake_from_pretrained("model"))
    raw = {"method": "full", "training": {"learning_rate": 1e-5}}
    if setting is not None:
        raw["model"] = {"trust_remote_code": setting}
    cfg = validate_raw(raw).config
    transformers_backend.load_model(cfg, "/nonexistent/model", "cpu")
    assert calls == [("tokenizer", bool(setting)), ("model", bool(setting))]
    assert all(value is bool(setting) for _, value in calls)
