"""Experiment trackers without training: the `report_to` and `trackers:` config, the settings handed
to the trackers, the guard that turns a failing tracker into a warning, and train.log's colour stripping."""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path

import pytest

from tui_tuner.config.schema import validate_raw
from tui_tuner.config.trackers import TRACKERS, missing_problem, mlflow_local_path
from tui_tuner.core.ansi import AnsiStripper, strip_ansi
from tui_tuner.rundir.events import EventWriter, read_events
from tui_tuner.train.trackers import TrackerWarnings, guard_for, tracker_callbacks, tracker_environment


def _config(**raw):
    loaded = validate_raw(raw)
    return loaded


@pytest.mark.parametrize("value, names", [
    ("none", []), ("wandb", ["wandb"]), (["mlflow", "trackio"], ["mlflow", "trackio"]),
    (["tensorboard", "TensorBoard"], ["tensorboard"]), ("mlflow-skinny", ["mlflow"]), ([], []),
])
def test_report_to_takes_one_name_or_a_list(value, names):
    loaded = _config(report_to=value)
    assert loaded.ok, [i.format() for i in loaded.issues]
    assert loaded.config.tracker_names == names


@pytest.mark.parametrize("value, says", [
    ("wandbb", "did you mean `wandb`?"),
    (["mlflow", "tensorbord"], "did you mean `tensorboard`?"),
    (["none", "wandb"], "`none` cannot be listed with other trackers"),
    ("all", "name the trackers to use"),
    ({"wandb": True}, "one tracker name or a list"),
])
def test_report_to_rejects_what_it_cannot_start_and_says_what_is_allowed(value, says):
    loaded = _config(report_to=value)
    errors = [i for i in loaded.issues if i.severity == "error"]
    assert [i.key for i in errors] == ["report_to"]
    assert says in errors[0].message


def test_tracker_settings_are_checked_and_unused_ones_warned_about():
    loaded = _config(report_to="mlflow", trackers={"wandb": {"mode": "offline"}, "mlflow": {"experiment": "x"}})
    assert loaded.ok
    assert [(i.key, i.severity) for i in loaded.issues] == [("trackers.wandb", "warning")]
    assert "report_to` does not name wandb" in loaded.issues[0].message
    typo = _config(report_to="wandb", trackers={"wandb": {"mod": "offline"}})
    assert "did you mean `trackers.wandb.mode`?" in typo.issues[0].message
    bad = _config(report_to="wandb", trackers={"wandb": {"mode": "sometimes"}})
    assert bad.issues[0].key == "trackers.wandb.mode" and "'online', 'offline' or 'disabled'" in bad.issues[0].message


def test_a_missing_tracker_names_the_package_to_install():
    if importlib.util.find_spec("swanlab") is not None:
        pytest.skip("swanlab is installed here")
    problem = missing_problem("swanlab")
    assert "`pip install swanlab`" in problem and "Training goes on without it" in problem
    if importlib.util.find_spec("mlflow") is None:
        assert "`pip install mlflow-skinny`" in missing_problem("mlflow")
        assert "tui-tuner[trackers]" in missing_problem("mlflow")


def test_every_tracker_is_a_transformers_integration():
    import ast

    # Read, not imported (that takes seconds): transformers' names are the ones `report_to` must accept.
    source = Path(importlib.util.find_spec("transformers").origin).parent / "integrations" / "integration_utils.py"
    tree = ast.parse(source.read_text())
    mapping = next(n.value for n in ast.walk(tree) if isinstance(n, ast.Assign)
                   and any(getattr(t, "id", None) == "INTEGRATION_TO_CALLBACK" for t in n.targets))
    known = {k.value for k in mapping.keys}
    assert set(TRACKERS) <= known


def test_settings_reach_the_trackers_config_first_then_environment_then_defaults(tmp_path):
    run_path = tmp_path / "runs" / "r1"
    cfg = _config(report_to=["tensorboard", "wandb", "mlflow"], trackers={
        "tags": ["a", "b"], "wandb": {"project": "team-proj", "mode": "offline"}}).config
    env = tracker_environment(cfg, run_path, environ={"WANDB_ENTITY": "mine", "MLFLOW_EXPERIMENT_NAME": "theirs",
                                                      "WANDB_PROJECT": "overridden"})
    assert env["TENSORBOARD_LOGGING_DIR"] == str(run_path / "tensorboard")
    assert env["WANDB_PROJECT"] == "team-proj" and env["WANDB_MODE"] == "offline"
    assert "WANDB_ENTITY" not in env  # the user's own environment is kept
    assert env["WANDB_DIR"] == str(run_path) and env["WANDB_TAGS"] == "a,b"
    assert env["MLFLOW_TRACKING_URI"] == "file:" + str(tmp_path / "runs" / "mlruns")
    assert "MLFLOW_EXPERIMENT_NAME" not in env and env["MLFLOW_ALLOW_FILE_STORE"] == "true"
    server = _config(report_to="mlflow", trackers={"mlflow": {"tracking_uri": "http://mlflow.lan:5000"}}).config
    env = tracker_environment(server, run_path, environ={})
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow.lan:5000" and "MLFLOW_ALLOW_FILE_STORE" not in env
    assert env["MLFLOW_EXPERIMENT_NAME"] == "tui-tuner"
    assert tracker_environment(_config().config, run_path, environ={}) == {}


def test_a_resumed_run_continues_the_same_tracker_runs(tmp_path):
    run_path = tmp_path / "runs" / "demo-20260101-120000"
    run_path.mkdir(parents=True)
    cfg = _config(report_to=["wandb", "mlflow"]).config
    first = tracker_environment(cfg, run_path, environ={})
    assert "MLFLOW_RUN_ID" not in first and first["WANDB_RESUME"] == "allow"
    assert first["WANDB_RUN_ID"].startswith("demo-20260101-120000-")
    (run_path / "trackers.json").write_text('{"mlflow": "0a1b2c"}')
    again = tracker_environment(cfg, run_path, environ={})
    assert again["MLFLOW_RUN_ID"] == "0a1b2c" and again["WANDB_RUN_ID"] == first["WANDB_RUN_ID"]
    other = tmp_path / "elsewhere" / run_path.name
    other.mkdir(parents=True)
    assert tracker_environment(cfg, other, environ={})["WANDB_RUN_ID"] != first["WANDB_RUN_ID"]
    assert "WANDB_RUN_ID" not in tracker_environment(cfg, run_path, environ={"WANDB_RUN_ID": "mine"})


@pytest.mark.parametrize("uri, local", [
    ("file:/srv/mlruns", "/srv/mlruns"), ("file:///srv/mlruns", "/srv/mlruns"), ("mlruns", "mlruns"),
    ("http://host:5000", None), ("databricks", None), ("sqlite:///m.db", None), (None, None),
])
def test_mlflow_local_stores_are_told_apart_from_servers(uri, local):
    assert mlflow_local_path(uri) == local


def test_a_relative_local_store_is_frozen_to_the_project_folder(tmp_path):
    from tui_tuner.rundir.runs import create_run

    cfg = _config(report_to=["mlflow", "tensorboard"], output={"runs_dir": str(tmp_path / "runs")},
                  trackers={"mlflow": {"tracking_uri": "mlruns"}, "tensorboard": {"log_dir": "tb"}}).config
    run = create_run(cfg, tmp_path / "project")
    frozen = run.config().trackers
    assert frozen.mlflow.tracking_uri == "file:" + str((tmp_path / "project" / "mlruns").resolve())
    assert frozen.tensorboard.log_dir == str((tmp_path / "project" / "tb").resolve())


class _Tracker:
    """A tracker callback as transformers calls them; `broken` names the event that raises."""

    def __init__(self, broken: str | None):
        self.broken = broken
        self.calls: list[str] = []

    def _event(self, event):
        def call(args, state, control, **kwargs):
            self.calls.append(event)
            if event == self.broken:
                raise ConnectionError("API request to endpoint /api/2.0/mlflow/runs/create failed")
        return call

    def __getattr__(self, event):
        if event.startswith("on_"):
            return self._event(event)
        raise AttributeError(event)


def _warnings(path: Path) -> list[dict]:
    return [e for e in read_events(path)[0] if e.get("kind") == "warning"]


@pytest.mark.parametrize("broken, what", [("on_train_begin", "could not start"),
                                          ("on_log", "failed while training (log)")])
def test_a_failing_tracker_warns_once_and_stops_while_training_goes_on(tmp_path, capsys, broken, what):
    events = EventWriter(tmp_path / "events.jsonl")
    inner = _Tracker(broken)
    guard = guard_for("mlflow", inner, TrackerWarnings(events), {"method": "lora"})
    for event in ("on_init_end", "on_train_begin", "on_log", "on_log", "on_save", "on_train_end"):
        assert getattr(guard, event)(None, None, None, model=None) is None
    assert inner.calls[-1] == broken and inner.calls.count(broken) == 1  # nothing after the failure
    (warning,) = _warnings(tmp_path / "events.jsonl")
    assert warning["tracker"] == "mlflow"
    assert warning["message"].startswith(f"MLflow (mlflow) {what}: ConnectionError: API request")
    assert "Training goes on without it" in warning["message"] and "tracking_uri" in warning["message"]
    assert f"tui-tuner: warning: MLflow (mlflow) {what}" in capsys.readouterr().err  # train.log
    assert type(guard).__name__ == "_TrackerGuard"
    with pytest.raises(AttributeError):
        guard.not_an_event  # noqa: B018


def test_a_tracker_that_is_not_installed_is_left_out_with_a_warning(tmp_path):
    if importlib.util.find_spec("swanlab") is not None:
        pytest.skip("swanlab is installed here")
    cfg = _config(report_to="swanlab").config
    assert tracker_callbacks(cfg, EventWriter(tmp_path / "e.jsonl")) == []
    (warning,) = _warnings(tmp_path / "e.jsonl")
    assert "SwanLab (swanlab) is not installed" in warning["message"] and "pip install swanlab" in warning["message"]
    assert tracker_callbacks(cfg, EventWriter(tmp_path / "f.jsonl"), main_process=False) == []
    assert _warnings(tmp_path / "f.jsonl") == []  # other ranks neither report nor warn


# ---------------------------------------------------------------------------- train.log colours

COLOURED = (b"\x1b[1m\x1b[38;5;208mtrackio show --project \"p\"\x1b[0m\n"
            b"wandb: \x1b[33mWARNING\x1b[0m \x1b]8;;https://wandb.ai/x\x07link\x1b]8;;\x1b\\ ok\n"
            b"\x1b[2K\rstep 1 \xc4\x9b\x1b(B done\n")
PLAIN = b"trackio show --project \"p\"\nwandb: WARNING link ok\n\rstep 1 \xc4\x9b done\n"


def test_escape_codes_are_stripped_wherever_the_stream_is_cut():
    assert strip_ansi(COLOURED.decode()) == PLAIN.decode()
    for cut in range(1, len(COLOURED)):
        for cut2 in range(cut, len(COLOURED), 7):
            s = AnsiStripper()
            out = s.feed(COLOURED[:cut]) + s.feed(COLOURED[cut:cut2]) + s.feed(COLOURED[cut2:]) + s.flush()
            assert out == PLAIN, (cut, cut2)


def test_text_is_not_held_back_behind_something_that_is_no_sequence():
    s = AnsiStripper()
    assert s.feed(b"a lone \x1b\nnext line") == b"a lone \x1b\nnext line"
    assert s.feed(b"waiting \x1b[3") == b"waiting "  # the rest of the colour is still to come
    assert s.feed(b"1mred") == b"red"
    assert s.feed(b"end \x1b") == b"end " and s.flush() == b"\x1b"


def test_the_supervisor_copies_worker_output_to_train_log_without_colours(tmp_path):
    from tui_tuner.train.supervisor import start_log_copier

    read_end, write_end = os.pipe()
    log = open(tmp_path / "train.log", "ab")
    with open(read_end, "rb", buffering=0) as source:
        copier = start_log_copier(source, log.fileno())
        for i in range(0, len(COLOURED), 5):
            os.write(write_end, COLOURED[i:i + 5])
        os.close(write_end)
        copier.join(timeout=30)
    log.close()
    assert not copier.is_alive()
    assert (tmp_path / "train.log").read_bytes() == PLAIN


def test_the_copier_keeps_reading_when_train_log_cannot_be_written(tmp_path):
    """A full disk (here: a file opened read-only) must not block the worker on a full pipe."""
    from tui_tuner.train.supervisor import start_log_copier

    (tmp_path / "train.log").write_text("")
    unwritable = os.open(tmp_path / "train.log", os.O_RDONLY)
    read_end, write_end = os.pipe()
    with open(read_end, "rb", buffering=0) as source:
        copier = start_log_copier(source, unwritable)
        writer = threading.Thread(target=lambda: [os.write(write_end, b"x" * 65536) for _ in range(8)])
        writer.start()
        writer.join(timeout=60)
        assert not writer.is_alive()  # 512 KiB went through a 64 KiB pipe: it was read
        os.close(write_end)
        copier.join(timeout=30)
    os.close(unwritable)
    assert not copier.is_alive()


def test_train_preflight_warns_about_a_tracker_that_is_not_installed_and_still_starts(tmp_path):
    if importlib.util.find_spec("swanlab") is not None:
        pytest.skip("swanlab is installed here")
    from tui_tuner.config.schema import load_config
    from tui_tuner.train.preflight import _tracker_issues, preflight_issues

    config = tmp_path / "c.yaml"
    config.write_text("report_to: [swanlab]\n")
    loaded = load_config(config)
    (issue,) = _tracker_issues(loaded.config)
    assert issue.severity == "warning" and "pip install swanlab" in issue.message
    found = [i for i in preflight_issues(loaded) if i.key == "report_to"]
    assert [(i.line, i.file) for i in found] == [(1, str(config))]
