"""Experiment trackers for a run: set up from the config, started by the trainer, never fatal.

`report_to` names the trackers (`tui_tuner.config.trackers`). Each becomes transformers'
own callback for it, wrapped in a `TrackerGuard`: a tracker that cannot be built (its
package missing) or raises when it starts or logs (a bad tracking URI, no login, a server
gone) is switched off with a warning, in `train.log` and as a `warning` event the Train
screen shows, and training goes on without it. The trainer itself gets `report_to=[]`,
so transformers never starts a tracker outside a guard.

Settings reach the callbacks the way transformers reads them: environment variables set
in the worker process (`tracker_environment`) and the trainer arguments `run_name`,
`project` and `trackio_space_id` (`tracker_trainer_args`). Once a tracker has started it
also receives tui-tuner's full run config (`send_config`).
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Any

from tui_tuner.config.trackers import TRACKERS, install_hint, is_installed, mlflow_local_path

DEFAULT_PROJECT = "tui-tuner"


def tracker_run_name(cfg: Any, run_name: str) -> str:
    return cfg.trackers.run_name or run_name


def tracker_environment(cfg: Any, run_path: Path, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment variables that carry the config's tracker settings to transformers' callbacks.

    A setting in the config wins over the environment; where the config says nothing, a variable
    already set (`WANDB_PROJECT`, `MLFLOW_TRACKING_URI`...) is kept, else tui-tuner's default applies.
    """
    environ = os.environ if environ is None else environ
    names = cfg.tracker_names
    t = cfg.trackers
    env: dict[str, str] = {}

    def put(key: str, value: str | None, default: str | None = None) -> None:
        if value is not None:
            env[key] = value
        elif default is not None and not environ.get(key):
            env[key] = default

    if "tensorboard" in names:
        put("TENSORBOARD_LOGGING_DIR", t.tensorboard.log_dir, str(run_path / "tensorboard"))
    if "wandb" in names:
        put("WANDB_PROJECT", t.wandb.project, DEFAULT_PROJECT)
        put("WANDB_ENTITY", t.wandb.entity)
        put("WANDB_MODE", t.wandb.mode)
        put("WANDB_RUN_GROUP", t.wandb.group)
        put("WANDB_DIR", None, str(run_path))  # offline runs and wandb's own logs stay with the run
        # A resumed run (a later worker attempt) continues the same W&B run instead of starting another.
        put("WANDB_RUN_ID", None, stable_run_id(run_path))
        put("WANDB_RESUME", None, "allow")
        if t.tags:
            env["WANDB_TAGS"] = ",".join(t.tags)
    if "mlflow" in names:
        runs_store = "file:" + str(run_path.parent / "mlruns")
        put("MLFLOW_TRACKING_URI", t.mlflow.tracking_uri, runs_store)
        put("MLFLOW_EXPERIMENT_NAME", t.mlflow.experiment, DEFAULT_PROJECT)
        uri = env.get("MLFLOW_TRACKING_URI") or environ.get("MLFLOW_TRACKING_URI")
        if mlflow_local_path(uri) is not None:
            # MLflow 3 keeps the file store only on request; a `file:` URI in the config is that request.
            put("MLFLOW_ALLOW_FILE_STORE", None, "true")
        if t.tags:
            env["MLFLOW_TAGS"] = json.dumps({tag: "" for tag in t.tags})
        previous = started_runs(run_path).get("mlflow")
        if previous:  # resumed: MLflow's start_run reattaches to the run the first attempt started
            put("MLFLOW_RUN_ID", None, previous)
    return env


TRACKER_RUNS_FILE = "trackers.json"
"""In the run directory: the tracker runs this run started ({"mlflow": RUN_ID}), for a resume to continue."""


def stable_run_id(run_path: Path) -> str:
    """An id for the run on trackers that take one: the same for every attempt, unique per run directory."""
    import hashlib
    import re

    digest = hashlib.sha1(str(run_path.resolve()).encode()).hexdigest()[:8]
    return re.sub(r"[^A-Za-z0-9_-]", "-", run_path.name)[:48] + "-" + digest


def started_runs(run_path: Path) -> dict[str, str]:
    try:
        data = json.loads((run_path / TRACKER_RUNS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}


def _remember_run(run_path: Path | None, name: str, run_id: str) -> None:
    if run_path is None:
        return
    from tui_tuner.rundir.status import atomic_write_text

    runs = started_runs(run_path) | {name: run_id}
    try:
        atomic_write_text(run_path / TRACKER_RUNS_FILE, json.dumps(runs, indent=1) + "\n")
    except OSError:
        pass  # a resume would start a second tracker run: not worth switching the tracker off for


def tracker_trainer_args(cfg: Any, run_name: str, accepted: set[str]) -> dict[str, Any]:
    """Trainer arguments for the trackers (`accepted`: the argument names this transformers release has)."""
    args: dict[str, Any] = {"report_to": [], "run_name": tracker_run_name(cfg, run_name)}
    if "trackio" in cfg.tracker_names:
        extra = {"project": cfg.trackers.trackio.project or DEFAULT_PROJECT,
                 "trackio_space_id": cfg.trackers.trackio.space_id,
                 # no snapshot Space pushed to the hub after training unless a Space was asked for
                 "trackio_static_space_id": None if cfg.trackers.trackio.space_id else False}
        args.update({k: v for k, v in extra.items() if k in accepted})
    return args


def say(text: str) -> None:
    """One line to train.log (stderr); a full disk must not turn it into a failure."""
    try:
        print(text, file=sys.stderr, flush=True)
    except OSError:
        pass


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text.splitlines()[0][:400] if text else type(exc).__name__


class TrackerWarnings:
    """Tells (train.log and a `warning` event) that a tracker is off, once per tracker."""

    def __init__(self, events: Any):
        self.events = events
        self.told: set[str] = set()

    def tell(self, name: str, what: str, why: str, hint: str | None = None) -> None:
        if name in self.told:
            return
        self.told.add(name)
        message = f"{TRACKERS[name].title} ({name}) {what}: {why}. Training goes on without it."
        if hint:
            message += f" {hint}"
        say(f"tui-tuner: warning: {message}")
        self.events.write("warning", tracker=name, message=message)


class TrackerGuard:
    """One tracker's callback, switched off with a warning the first time it raises.

    The trainer calls callbacks by their `on_*` event names; every one is forwarded. Each
    tracker gets its own subclass (`guard_for`): the trainer warns about two callbacks of one class.
    """

    def __init__(self, name: str, inner: Any, warnings: TrackerWarnings, config: dict[str, Any],
                 run_path: Path | None = None):
        self.name = name
        self.run_path = run_path
        self.inner = inner
        self.warnings = warnings
        self.config = config
        self.started = False

    def __getattr__(self, event: str) -> Any:
        if not event.startswith("on_"):
            raise AttributeError(event)
        return functools.partial(self.forward, event)

    def forward(self, event: str, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        method = getattr(self.inner, event, None)  # None once switched off, or an event it does not know
        if method is None:
            return None
        try:
            result = method(args, state, control, **kwargs)
            if event == "on_train_begin" and not self.started:
                self.started = True
                send_config(self.name, self.inner, self.config, self.run_path)
            return result
        except Exception as exc:  # a tracker never ends the run: it stops, the run goes on
            self._fail(event, exc)
            return None

    def _fail(self, event: str, exc: BaseException) -> None:
        what = "could not start" if event in ("on_init_end", "on_train_begin") or not self.started else \
            f"failed while training ({event.removeprefix('on_').replace('_', ' ')})"
        inner, self.inner = self.inner, None
        self.warnings.tell(self.name, what, _one_line(exc), _fix_hint(self.name, exc))
        _close(self.name, inner)


def _fix_hint(name: str, exc: BaseException) -> str | None:
    if isinstance(exc, (ImportError, ModuleNotFoundError)):
        return f"Install it: {install_hint(name)}."
    if name == "wandb":
        return ("Log in with `wandb login`, or set `trackers.wandb.mode: offline` to keep the run on disk "
                "for a later `wandb sync`.")
    if name == "mlflow":
        return "Check `trackers.mlflow.tracking_uri` (a running tracking server, or a `file:` folder you can write)."
    if name == "trackio":
        return "Check `trackers.trackio` (project, space_id); without space_id Trackio logs locally."
    return None


def _close(name: str, inner: Any) -> None:
    """Ends what a failed tracker may have left open, so it does not hold the process at exit."""
    # The tracker's module is looked up, not imported: its callback imported it, if it got that far.
    try:
        if name in ("mlflow", "dagshub") and (mlflow := sys.modules.get("mlflow")) is not None:
            inner._auto_end_run = False  # its __del__ must not end a run it no longer owns
            if mlflow.active_run() is not None:
                mlflow.end_run(status="FAILED")
        elif name == "wandb" and (wandb := sys.modules.get("wandb")) is not None:
            if wandb.run is not None:
                wandb.finish(exit_code=1)
        elif name == "tensorboard" and getattr(inner, "tb_writer", None) is not None:
            inner.tb_writer.close()
    except Exception:  # noqa: BLE001 - closing a broken tracker is best effort
        pass


def send_config(name: str, inner: Any, config: dict[str, Any], run_path: Path | None = None) -> None:
    """tui-tuner's full run config to a started tracker (transformers sends only its own arguments)."""
    import yaml

    if name == "tensorboard" and getattr(inner, "tb_writer", None) is not None:
        text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
        inner.tb_writer.add_text("tui_tuner/config", "```yaml\n" + text + "```")
        inner.tb_writer.flush()
    elif name == "wandb" and (wandb := sys.modules.get("wandb")) is not None:  # imported by its callback
        if wandb.run is not None:
            wandb.config.update({"tui_tuner": config}, allow_val_change=True)
    elif name in ("mlflow", "dagshub") and (mlflow := sys.modules.get("mlflow")) is not None:
        if (active := mlflow.active_run()) is not None:
            _remember_run(run_path, name, active.info.run_id)
            mlflow.log_dict(config, "tui_tuner/config.yaml")
            params = {f"tui_tuner.{k}": v for k, v in _flatten(config).items() if len(v) <= 250}
            items = list(params.items())
            for i in range(0, len(items), 100):  # MLflow takes at most 100 params per call
                mlflow.log_params(dict(items[i:i + 100]))
    elif name == "trackio" and (trackio := sys.modules.get("trackio")) is not None:
        trackio.config.update({"tui_tuner": config}, allow_val_change=True)


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = json.dumps(value) if isinstance(value, (list, bool)) or value is None else str(value)
    return out


def guard_for(name: str, inner: Any, warnings: TrackerWarnings, config: dict[str, Any],
              run_path: Path | None = None) -> TrackerGuard:
    guard = type(f"{type(inner).__name__}Guard", (TrackerGuard,), {})
    return guard(name, inner, warnings, config, run_path)


def tracker_callbacks(cfg: Any, events: Any, *, main_process: bool = True, run_path: Path | None = None) -> list[Any]:
    """A guarded callback for each tracker in `report_to` ([] on other ranks: rank 0 reports).

    A tracker that cannot be built here (not installed, not known to this transformers) is
    told about at once and left out.
    """
    names = cfg.tracker_names
    if not names or not main_process:
        return []
    warnings = TrackerWarnings(events)
    config = cfg.model_dump(mode="json")
    out = []
    for name in names:
        if not is_installed(name):
            warnings.tell(name, "is not installed", f"no module {' / '.join(TRACKERS[name].modules)}",
                          f"Install it: {install_hint(name)}.")
            continue
        from transformers.integrations import INTEGRATION_TO_CALLBACK

        factory = INTEGRATION_TO_CALLBACK.get(name)
        if factory is None:
            warnings.tell(name, "is not supported by this transformers release", "no callback for it",
                          "Upgrade transformers (`pip install -U transformers`).")
            continue
        try:
            inner = factory()
        except Exception as exc:  # its import failed, or it refused to be built
            warnings.tell(name, "could not start", _one_line(exc), _fix_hint(name, exc))
            continue
        out.append(guard_for(name, inner, warnings, config, run_path))
    return out
