"""The experiment trackers `report_to` can name: what each needs installed, and how to install it.

The names are transformers' own (`transformers.integrations.INTEGRATION_TO_CALLBACK`); the
training worker builds each tracker's callback from them. TensorBoard, Weights & Biases,
MLflow and Trackio take their settings from the config's `trackers:` section; the others
read their own environment variables, as transformers documents for each. No imports of
the trackers here: only whether they are installed (`importlib.util.find_spec`).
"""

from __future__ import annotations

import difflib
import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class Tracker:
    name: str
    """The name in `report_to` (transformers' integration name)."""
    modules: tuple[str, ...]
    """Importable modules it needs: all of them, except that `alternatives` may stand in for each other."""
    pip: str
    """What to `pip install` when it is missing."""
    title: str
    extra: bool = False
    """Installed by tui-tuner's `trackers` extra."""
    alternatives: bool = False
    """Any one of `modules` is enough (TensorBoard: tensorboard or tensorboardX)."""


TRACKERS: dict[str, Tracker] = {t.name: t for t in (
    Tracker("tensorboard", ("tensorboard", "tensorboardX"), "tensorboard", "TensorBoard", extra=True, alternatives=True),
    Tracker("wandb", ("wandb",), "wandb", "Weights & Biases", extra=True),
    Tracker("mlflow", ("mlflow",), "mlflow-skinny", "MLflow", extra=True),
    Tracker("trackio", ("trackio",), "trackio", "Trackio", extra=True),
    Tracker("comet_ml", ("comet_ml",), "comet-ml", "Comet"),
    Tracker("clearml", ("clearml",), "clearml", "ClearML"),
    Tracker("dvclive", ("dvclive",), "dvclive", "DVCLive"),
    Tracker("swanlab", ("swanlab",), "swanlab", "SwanLab"),
    Tracker("neptune", ("neptune",), "neptune", "Neptune"),
    Tracker("codecarbon", ("codecarbon",), "codecarbon", "CodeCarbon (energy use)"),
    Tracker("azure_ml", ("azureml.core",), "azureml-core", "Azure ML"),
    Tracker("dagshub", ("dagshub", "mlflow"), "dagshub mlflow-skinny", "DagsHub"),
    Tracker("flyte", ("flytekit", "flytekitplugins.deck"), "flytekit flytekitplugins-deck-standard", "Flyte Deck"),
)}
"""Every tracker `report_to` accepts; the first four have settings under `trackers:`."""

CONFIGURED = ("tensorboard", "wandb", "mlflow", "trackio")
"""The trackers with their own section under `trackers:`."""


def _found(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a broken leftover install
        return False


def is_installed(name: str) -> bool:
    tracker = TRACKERS[name]
    found = [_found(m) for m in tracker.modules]
    return any(found) if tracker.alternatives else all(found)


def install_hint(name: str) -> str:
    """What to run to install tracker `name`."""
    tracker = TRACKERS[name]
    if tracker.extra:
        return f"`pip install {tracker.pip}` (or all four trackers: `pip install 'tui-tuner[trackers]'`)"
    return f"`pip install {tracker.pip}`"


def missing_problem(name: str) -> str | None:
    """Why tracker `name` cannot start here (its package is missing), or None."""
    if is_installed(name):
        return None
    return (f"report_to names {name} ({TRACKERS[name].title}) but it is not installed: run {install_hint(name)}, "
            f"or remove it from report_to. Training goes on without it (tui-tuner records the loss curve in the "
            f"run directory either way).")


def normalize_report_to(value: object) -> list[str]:
    """`report_to` as a list of tracker names ([] for none); ValueError saying what is wrong and what is allowed."""
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError("use one tracker name or a list of them, e.g. `report_to: wandb` or "
                         "`report_to: [tensorboard, mlflow]`")
    out: list[str] = []
    for raw in names:
        name = raw.strip().lower().replace("-", "_")
        name = {"mlflow_skinny": "mlflow", "comet": "comet_ml", "tensorboardx": "tensorboard"}.get(name, name)
        if name == "none":
            if len(names) > 1:
                raise ValueError("`none` cannot be listed with other trackers: remove it, or use `report_to: none` alone")
            continue
        if name == "all":
            raise ValueError("name the trackers to use (e.g. `[tensorboard, wandb]`): `all` would start every "
                             "tracker that happens to be installed")
        if name not in TRACKERS:
            close = difflib.get_close_matches(name, list(TRACKERS), n=1, cutoff=0.6)
            hint = f" — did you mean `{close[0]}`?" if close else ""
            raise ValueError(f"unknown tracker `{raw}`{hint} Known: none, {', '.join(TRACKERS)}")
        if name not in out:
            out.append(name)
    return out


def mlflow_local_path(uri: str | None) -> str | None:
    """The folder of a local MLflow file store (`file:PATH`, `file:///PATH` or a bare path), else None."""
    if not uri:
        return None
    if uri.startswith("file:"):
        return uri.removeprefix("file://") if uri.startswith("file://") else uri.removeprefix("file:")
    if ":" in uri or uri.startswith("databricks"):
        return None  # a server, databricks, or a database URI
    return uri
