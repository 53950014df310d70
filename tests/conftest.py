"""Shared test fixtures: offline by default, never touching the user's own runs."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


import pytest

_PERSISTENT_CACHE = os.environ.get("TUI_TUNER_CACHE")
"""The cache as the session started (fixtures below may point TUI_TUNER_CACHE at a per-session folder)."""

pytest_plugins = ["tests.infer_fixtures"]  # memorised-adapter runs for chat, eval and export


@pytest.fixture(scope="session")
def demo_model_dir(tmp_path_factory):
    """The demo model folder, built once per test session.

    Built into a per-session cache (so CI starts clean and the user's own cache is never
    touched) unless TUI_TUNER_CACHE is already set, in which case that cache is reused.
    TUI_TUNER_CACHE is exported for the session so CLI subprocesses find the same build.
    """
    from tui_tuner.models.demo import ensure_demo_model

    mp = pytest.MonkeyPatch()
    if not os.environ.get("TUI_TUNER_CACHE"):
        mp.setenv("TUI_TUNER_CACHE", str(tmp_path_factory.mktemp("tui-tuner-cache")))
    try:
        yield ensure_demo_model()
    finally:
        mp.undo()


@pytest.fixture(scope="session")
def llama_cpp_models():
    """llama.cpp's `models/` folder (real vocabularies and chat templates), fetched once per machine.

    Kept in the persistent cache (TUI_TUNER_CACHE as the session started, else ~/.cache/tui-tuner),
    not a per-session one: fetching it is a 76 MB download. Skips with the reason when offline.
    """
    from tui_tuner.models.llama_cpp_sdist import LlamaCppUnavailable, ensure_vendored

    mp = pytest.MonkeyPatch()
    if _PERSISTENT_CACHE:
        mp.setenv("TUI_TUNER_CACHE", _PERSISTENT_CACHE)
    else:
        mp.delenv("TUI_TUNER_CACHE", raising=False)
    try:
        return ensure_vendored("models") / "models"
    except LlamaCppUnavailable as exc:
        pytest.skip(f"llama.cpp's vocabularies and templates are unavailable: {exc}")
    finally:
        mp.undo()


@pytest.fixture(scope="session")
def tiny_model(llama_cpp_models):
    """`tiny_model("llama3")` -> the folder of that family's tiny real-tokenizer model.

    Built once per machine into the persistent cache (building converts a real vocabulary,
    tens of seconds per family); later sessions reuse it.
    """
    from tui_tuner.models.tiny_real import ensure_tiny_model

    built: dict[str, object] = {}

    def get(family: str):
        if family not in built:
            mp = pytest.MonkeyPatch()
            if _PERSISTENT_CACHE:
                mp.setenv("TUI_TUNER_CACHE", _PERSISTENT_CACHE)
            else:
                mp.delenv("TUI_TUNER_CACHE", raising=False)
            try:
                built[family] = ensure_tiny_model(family)
            finally:
                mp.undo()
        return built[family]

    return get


@pytest.fixture(scope="session")
def real_tokenizer(tiny_model):
    """`real_tokenizer("qwen2.5")` -> that family's real tokenizer (with its real chat template), loaded once."""
    from transformers import AutoTokenizer

    loaded: dict[str, object] = {}

    def get(family: str):
        if family not in loaded:
            loaded[family] = AutoTokenizer.from_pretrained(str(tiny_model(family)))
        return loaded[family]

    return get


# ---------------------------------------------------------------------------- training runs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

QUICK_RUN = {
    "model": {"name_or_path": "tui-tuner/demo-tiny-llama", "dtype": "float32", "max_seq_length": 256},
    "method": "lora",
    "lora": {"r": 16, "alpha": 32, "dropout": 0.0},
    "data": {"train": os.path.join(REPO, "data", "sample.jsonl"), "eval": os.path.join(REPO, "data", "heldout.jsonl")},
    "training": {"max_steps": 20, "batch_size": 8, "grad_accumulation": 1, "learning_rate": 3e-3,
                 "scheduler": "constant_with_warmup", "warmup_ratio": 0.05, "gradient_checkpointing": False,
                 "logging_steps": 1, "save_steps": 10, "eval_steps": 10, "seed": 42},
    "samples": {"from_eval": 2, "max_new_tokens": 16},
    "output": {"run_name": "quickstart"},
    "backend": "transformers",
}
"""The quickstart recipe, shortened to 20 steps for tests."""


def run_config(runs_dir, **overrides):
    """A validated RunConfig: QUICK_RUN with dotted-key overrides, writing runs under `runs_dir`."""
    import copy

    from tui_tuner.config.schema import apply_overrides, validate_raw

    raw = copy.deepcopy(QUICK_RUN)
    raw["output"]["runs_dir"] = str(runs_dir)
    raw = apply_overrides(raw, [f"{k}={v}" for k, v in overrides.items()])
    loaded = validate_raw(raw)
    assert loaded.ok, [i.format() for i in loaded.issues]
    return loaded.config


def wait_for(run, states=("finished", "stopped", "failed", "crashed"), timeout=900, step=None):
    """Poll `run.status()` until its state is in `states` (and `step` reached); returns the status."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = run.status()
        if st.state in states and (step is None or st.step >= step):
            return st
        if st.is_final and st.state not in states:
            raise AssertionError(f"{run.name} ended {st.state}: {st.error}\n" + "\n".join(run.log_tail(30)))
        time.sleep(0.2)
    raise AssertionError(f"{run.name} still {run.status().state} after {timeout}s\n" + "\n".join(run.log_tail(30)))


@pytest.fixture(scope="session")
def finished_run(demo_model_dir, tmp_path_factory):
    """A finished quickstart LoRA run (20 steps, checkpoints at 10 and 20, eval, probe on), trained once per session.

    Other tests (chat, eval, export, TUI) read it; do not modify it — copy it first if you must.
    """
    from tui_tuner.rundir.runs import create_run, start_worker

    runs_dir = tmp_path_factory.mktemp("finished-runs")
    run = create_run(run_config(runs_dir), REPO, probe=True)
    start_worker(run)
    st = wait_for(run, ("finished",))
    assert st.state == "finished"
    return run


@pytest.fixture
def make_run_config(demo_model_dir):
    """`run_config(runs_dir, **dotted_overrides)` with the demo model built."""
    return run_config


@pytest.fixture
def wait_for_run():
    """`wait_for(run, states=final states, timeout=900, step=None)` (generous: CI machines can be busy)."""
    return wait_for
