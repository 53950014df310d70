"""Experiment trackers, end to end with the real libraries, offline: one short run of the demo model
reports to TensorBoard, MLflow (a local file store), Weights & Biases (offline mode) and Trackio (local),
and each is read back with the library's own reader; a tracker that cannot start warns and the run finishes.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from tui_tuner.rundir.events import load_history, read_events
from tui_tuner.rundir.runs import create_run, start_worker

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # trains the demo model in real worker processes

ALL = ("tensorboard", "mlflow", "wandb", "trackio")
STEPS = 6


def _need(*modules: str) -> None:
    import importlib.util

    for module in modules:  # found, not imported: Trackio fixes its store folder when imported
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (pip install 'tui-tuner[trackers]')")


def _short(make_run_config, runs_dir: Path, **overrides):
    base = {"training.max_steps": STEPS, "training.eval_steps": "null", "training.save_steps": STEPS,
            "samples.from_eval": 0, "data.eval": "null"}
    return make_run_config(runs_dir, **(base | overrides))


@pytest.fixture(scope="module")
def tracked_run(demo_model_dir, tmp_path_factory):
    """One short run reporting to all four trackers (all local, nothing leaves the machine)."""
    _need("tensorboard", "mlflow", "wandb", "trackio")
    from tests.conftest import run_config, wait_for

    root = tmp_path_factory.mktemp("tracked")
    mp = pytest.MonkeyPatch()
    mp.setenv("TRACKIO_DIR", str(root / "trackio"))  # the worker inherits it: Trackio's local store
    for var, folder in (("WANDB_CONFIG_DIR", "wandb-config"), ("WANDB_CACHE_DIR", "wandb-cache"),
                        ("WANDB_DATA_DIR", "wandb-data")):
        mp.setenv(var, str(root / folder))  # nothing lands in the home folder
    for var in ("WANDB_PROJECT", "WANDB_MODE", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "WANDB_API_KEY"):
        mp.delenv(var, raising=False)
    try:
        cfg = run_config(root / "runs", **{
            "training.max_steps": STEPS, "training.eval_steps": "null", "training.save_steps": STEPS,
            "samples.from_eval": 0, "data.eval": "null", "report_to": "[" + ",".join(ALL) + "]",
            "trackers.run_name": "tracked-demo", "trackers.tags": "[smoke]",
            "trackers.mlflow.tracking_uri": f"file:{root / 'mlruns'}", "trackers.mlflow.experiment": "demo-exp",
            "trackers.wandb.mode": "offline", "trackers.wandb.project": "demo-proj",
            "trackers.trackio.project": "demo-proj"})
        run = create_run(cfg, REPO)
        start_worker(run)
        st = wait_for(run, ("finished",))
        assert st.state == "finished"
        yield run, root
    finally:
        mp.undo()


def _losses(run) -> dict[int, float]:
    return dict(load_history(run.events_path).losses)


def test_tensorboard_records_the_loss_curve_and_the_config(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, _ = tracked_run
    acc = EventAccumulator(str(run.path / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    scalars = {e.step: e.value for e in acc.Scalars("train/loss")}
    assert scalars == pytest.approx(_losses(run))
    assert sorted(scalars) == list(range(1, STEPS + 1))
    texts = {tag: acc.Tensors(tag) for tag in acc.Tags()["tensors"]}
    config = [t for tag, t in texts.items() if tag.startswith("tui_tuner/config")]
    assert config and b"max_steps: 6" in config[0][0].tensor_proto.string_val[0]


def test_mlflow_records_the_loss_curve_run_name_and_config(tracked_run, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # as the worker sets it for a `file:` store
    run, root = tracked_run
    client = MlflowClient(tracking_uri=f"file:{root / 'mlruns'}")
    experiment = client.get_experiment_by_name("demo-exp")
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.run_name == "tracked-demo" and found.info.status == "FINISHED"
    history = {m.step: m.value for m in client.get_metric_history(found.info.run_id, "loss")}
    assert history == pytest.approx(_losses(run))
    params = found.data.params
    assert params["tui_tuner.training.max_steps"] == "6" and params["tui_tuner.method"] == "lora"
    assert "smoke" in found.data.tags
    # a resume (the next worker attempt) reattaches to this MLflow run
    assert json.loads((run.path / "trackers.json").read_text()) == {"mlflow": found.info.run_id}


def _wandb_records(path: Path):
    """The records of an offline `.wandb` file: wandb's LevelDB-style log (32 KiB blocks of
    checksummed chunks) holding `wandb_internal_pb2.Record` protobufs."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", "not a wandb transaction log"
    pos, block, record = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:
            break
        record += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            rec = pb.Record()
            rec.ParseFromString(record)
            yield rec
            record = b""


def test_wandb_offline_records_the_loss_curve_run_name_and_config(tracked_run):
    run, _ = tracked_run
    (log,) = (run.path / "wandb").glob("offline-run-*/run-*.wandb")
    losses, names, config = {}, set(), {}
    for rec in _wandb_records(log):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            names.add((rec.run.display_name, rec.run.project, tuple(rec.run.tags), rec.run.run_id))
        elif kind == "history":
            items = {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in rec.history.item}
            if "train/loss" in items:
                losses[items["train/global_step"]] = items["train/loss"]
        elif kind == "config":
            config.update({u.key or "/".join(u.nested_key): json.loads(u.value_json) for u in rec.config.update})
    from tui_tuner.train.trackers import stable_run_id

    assert ("tracked-demo", "demo-proj", ("smoke",), stable_run_id(run.path)) in names  # a resume continues it
    assert losses == pytest.approx(_losses(run))
    assert config["tui_tuner"]["training"]["max_steps"] == STEPS


def test_trackio_records_the_loss_curve_run_name_and_config(tracked_run, monkeypatch):
    run, root = tracked_run
    from trackio import sqlite_storage
    from trackio.sqlite_storage import SQLiteStorage

    monkeypatch.setattr(sqlite_storage, "TRACKIO_DIR", root / "trackio")  # read when trackio is imported
    assert SQLiteStorage.get_runs("demo-proj") == ["tracked-demo"]
    logs = SQLiteStorage.get_logs("demo-proj", "tracked-demo")
    losses = {row["train/global_step"]: row["train/loss"] for row in logs if "train/loss" in row}
    assert losses == pytest.approx(_losses(run))
    assert SQLiteStorage.get_run_config("demo-proj", "tracked-demo")["tui_tuner"]["method"] == "lora"


def test_train_log_has_no_terminal_colour_codes(tracked_run):
    run, _ = tracked_run
    log = run.log_path.read_bytes()
    assert b"trackio show" in log  # Trackio prints this command in colour
    assert b"\x1b" not in log
    warnings = [e for e in read_events(run.events_path)[0] if e.get("kind") == "warning"]
    assert warnings == []


def test_a_tracker_that_cannot_start_warns_and_the_run_finishes(demo_model_dir, make_run_config, wait_for_run,
                                                                 tmp_path):
    _need("mlflow", "tensorboard")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the MLflow store should be\n")
    cfg = _short(make_run_config, tmp_path / "runs", **{
        "training.max_steps": 2, "report_to": "[mlflow,tensorboard]",
        "trackers.mlflow.tracking_uri": f"file:{blocker / 'mlruns'}"})
    run = create_run(cfg, REPO)
    start_worker(run)
    st = wait_for_run(run, ("finished",))
    assert st.state == "finished" and st.step == 2
    warnings = [e for e in read_events(run.events_path)[0] if e.get("kind") == "warning"]
    assert [w["tracker"] for w in warnings] == ["mlflow"]
    assert "MLflow (mlflow) could not start" in warnings[0]["message"]
    assert "tracking_uri" in warnings[0]["message"]  # what to check
    assert "MLflow (mlflow) could not start" in run.log_path.read_text()
    assert list((run.path / "tensorboard").glob("events.out.tfevents.*"))  # the other tracker went on
