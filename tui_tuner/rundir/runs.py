"""Run directories: create, start, list, find, stop, resume and delete training runs.

This is the Python API the CLI (`tui-tuner train`, `tui-tuner runs ...`) and the TUI
share; both are thin shells over it. A run is a folder (see docs/run-directory.md):

    runs/<name>-<yyyymmdd-hhmmss>/  config.yaml run.json status.json events.jsonl
                                    train.log control.json checkpoints/ adapter/

(the names are spelled once, in `tui_tuner.rundir.files`)

Everything about a run is read from that folder, so a run started from the CLI can be
watched from the TUI and survives both. No heavy imports here.

    from tui_tuner.rundir.runs import create_run, start_worker, list_runs
    run = create_run(cfg, base_dir=Path("."))
    start_worker(run)
    for run in list_runs("runs"): print(run.name, run.status().state)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tui_tuner.rundir.files import (
    ADAPTER_DIR,
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    CONTROL_FILE,
    EVENTS_FILE,
    LAUNCH_LOCK,
    LOG_FILE,
    META_FILE,
    STATUS_FILE,
)
from tui_tuner.rundir.status import (
    ACTIVE_STATES,
    FINAL_STATES,
    RunStatus,
    atomic_write_text,
    open_private,
    read_status,
    write_status,
)

if TYPE_CHECKING:
    from tui_tuner.config.schema import RunConfig

UNCLAIMED_S = 30.0
"""A queued run with no `queued_after` is left to its creator (which starts it at once) this long."""
REMOTE_SILENT_S = 900.0
"""A run whose worker is on another machine is `crashed` after this long without writing (its
status changes every logged step, and its GPU samples every few seconds)."""


def _hostname() -> str:
    import socket

    return socket.gethostname()


RUN_DIR_MODE = 0o700
"""Run folders are private to their owner (see docs/run-directory.md): they hold data and models."""


def _write_failed(where: Path, exc: OSError) -> str:
    """One sentence for a failed write in the runs folder, with what to do."""
    from tui_tuner.rundir.diskspace import free_bytes, is_disk_full

    if is_disk_full(exc):
        from tui_tuner.core.units import format_bytes

        return (f"the disk is full: no space left to write in {where} ({format_bytes(free_bytes(where) or 0)} free). "
                f"Free space (`df -h {where}`; old runs: `tui-tuner runs rm NAME`) or set output.runs_dir to a "
                "bigger disk.")
    return f"cannot write in {where}: {exc.strerror or exc}. Check the folder's permissions and free space."


class RunError(Exception):
    """A run operation that cannot be done; the message says why and what to do."""


class RunLookupError(RunError):
    """No run, or more than one, matches a name or prefix."""


# ---------------------------------------------------------------------------- processes


def process_start_time(pid: int) -> float | None:
    """The start time of process `pid` (seconds since the epoch), or None if it does not exist."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def process_alive(pid: int | None, started: float | None = None) -> bool:
    """Whether `pid` is a live (not zombie) process started at `started` (when given)."""
    import psutil

    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if started is not None and abs(proc.create_time() - started) > 1.0:
            return False  # the pid was reused by another process
        return True
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


STALL_AFTER_S = 600.0
"""An active run whose worker has written no step, event or status for this long is shown as stalled."""
STOPPED_STALL_AFTER_S = 20.0
"""A worker the kernel reports stopped (SIGSTOP, a debugger) is called stalled after this much silence."""
_PROCESS_STATES = {
    "stopped": ("stopped (SIGSTOP or Ctrl+Z)", "`kill -CONT {pid}` lets it continue"),
    "tracing-stop": ("stopped by a debugger or tracer", "detach the debugger to let it continue"),
    "disk-sleep": ("waiting on a disk or network file system (uninterruptible)",
                   "check the storage the run, the model or the data is on (an NFS mount that hung?)"),
    "sleeping": ("waiting (sleeping)", "a data loader or download may be stuck; the end of train.log shows the "
                 "last thing it did. `tui-tuner runs stop --now RUN` ends it"),
    "running": ("busy on the CPU", "a very slow step or a loop; the end of train.log shows the last thing it did"),
}


def process_state(pid: int | None) -> str | None:
    """The kernel's state of a process (psutil names: running, sleeping, disk-sleep, stopped, ...), or None."""
    import psutil

    if not pid:
        return None
    try:
        return str(psutil.Process(pid).status())
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def _stall_after() -> float:
    try:
        return float(os.environ.get("TUI_TUNER_STALL_AFTER_S", STALL_AFTER_S))
    except ValueError:
        return STALL_AFTER_S


def stall_note(run: "RunDir", st: RunStatus | None = None, now: float | None = None) -> str | None:
    """"stalled: no step or heartbeat for 12m; the worker (pid N) is stopped (...) - what to do", or None.

    For a running/stopping run whose status.json and events.jsonl have not changed for
    `STALL_AFTER_S` (`TUI_TUNER_STALL_AFTER_S`), or a shorter while when the kernel says the
    worker is stopped. The process state comes from psutil (/proc on Linux).
    """
    st = st if st is not None else run.status()
    if st.state not in ACTIVE_STATES:
        return None
    times = []
    for path in (run.path / "status.json", run.events_path):
        try:
            times.append(path.stat().st_mtime)
        except OSError:
            continue
    if not times:
        return None
    idle = (now if now is not None else time.time()) - max(times)
    state = process_state(st.pid)
    limit = STOPPED_STALL_AFTER_S if state in ("stopped", "tracing-stop", "disk-sleep") else _stall_after()
    if idle < limit:
        return None
    note = f"stalled: no step or heartbeat for {idle / 60:.0f} min" if idle >= 90 else \
        f"stalled: no step or heartbeat for {idle:.0f} s"
    if state in _PROCESS_STATES:
        what, todo = _PROCESS_STATES[state]
        note += f"; the worker (pid {st.pid}) is {what}: {todo.format(pid=st.pid)}"
    elif state:
        note += f"; the worker (pid {st.pid}) is {state}"
    return note


# ---------------------------------------------------------------------------- checkpoints


def safetensors_problem(path: Path) -> str | None:
    """Why a safetensors file cannot be loaded (truncated, or a header that is not a tensor table), or None."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            if n <= 0 or 8 + n > size:
                return "the file is truncated (its header is cut off)"
            header = json.loads(fh.read(n))
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    except (ValueError, RecursionError):
        return "its header is not valid JSON (damaged file)"
    if not isinstance(header, dict):
        return "its header is not a table of tensors (damaged file)"
    try:
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (TypeError, KeyError, IndexError, ValueError):
        return "its header does not describe tensors (damaged file)"
    if 8 + n + end > size:
        return "the file is truncated (tensor data missing)"
    return None


def _safetensors_complete(path: Path) -> bool:
    """A safetensors file whose header parses and whose size covers every tensor it declares."""
    return safetensors_problem(path) is None


def _torch_file_complete(path: Path) -> bool:
    """A torch.save file is a zip whose central directory (written last) is present."""
    try:
        return path.stat().st_size > 0 and zipfile.is_zipfile(path)
    except OSError:
        return False


def checkpoint_problem(path: str | Path) -> str | None:
    """Why a checkpoint folder cannot be resumed from (half-written), or None when it is complete."""
    path = Path(path)
    if (path / "mlx_state.json").exists():  # an MLX checkpoint (tui_tuner.train.backends.mlx_backend)
        return _mlx_checkpoint_problem(path)
    state = path / "trainer_state.json"
    try:
        data = json.loads(state.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return "trainer_state.json is missing or unreadable"
    problem = _trainer_state_problem(data)
    if problem:
        return f"trainer_state.json: {problem}"
    weights = [p for pattern in ("adapter_model.safetensors", "model.safetensors", "model-*.safetensors")
               for p in path.glob(pattern)]
    bins = [p for pattern in ("adapter_model.bin", "pytorch_model.bin") for p in path.glob(pattern)]
    if not weights and not bins:
        return "no model or adapter weights"
    for w in weights:
        if not _safetensors_complete(w):
            return f"{w.name} is truncated"
    for name in ("optimizer.pt", "scheduler.pt"):
        if not _torch_file_complete(path / name):
            return f"{name} is missing or truncated"
    for rng in path.glob("rng_state*.pth"):  # small; resume loads it, so every byte is checked
        if not _zip_intact(rng):
            return f"{rng.name} is damaged (its contents do not match their checksums)"
    return None


def _mlx_checkpoint_problem(path: Path) -> str | None:
    """Why an MLX checkpoint (adapter, optimizer state, mlx_state.json) cannot be resumed from, or None."""
    try:
        data = json.loads((path / "mlx_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return "mlx_state.json is unreadable"
    if not isinstance(data, dict) or isinstance(data.get("global_step"), bool) \
            or not isinstance(data.get("global_step"), int):
        return "mlx_state.json has no whole-number global_step"
    for name in ("adapters.safetensors", "optimizer.safetensors"):
        if not (path / name).is_file():
            return f"{name} is missing"
        if not _safetensors_complete(path / name):
            return f"{name} is truncated"
    return None


_TRAINER_STATE_TYPES: dict[str, tuple[type, ...]] = {
    "global_step": (int,), "max_steps": (int,), "log_history": (list,), "epoch": (int, float),
    "logging_steps": (int,), "save_steps": (int,), "train_batch_size": (int,), "num_train_epochs": (int, float),
    "total_flos": (int, float), "stateful_callbacks": (dict,), "best_metric": (int, float),
    "num_input_tokens_seen": (int,),
}


def _trainer_state_problem(data: Any) -> str | None:
    """Why a parsed trainer_state.json would make transformers fail on resume (wrong types), or None."""
    if not isinstance(data, dict):
        return "not a JSON object"
    if "global_step" not in data:
        return "no global_step"
    for key, types in _TRAINER_STATE_TYPES.items():
        value = data.get(key)
        if value is None and key != "global_step":
            continue
        if isinstance(value, bool) or not isinstance(value, types):
            return f"`{key}` is {repr(value)[:30]}, not {' or '.join(t.__name__ for t in types)}"
    if not all(isinstance(entry, dict) for entry in data.get("log_history") or []):
        return "log_history holds something other than objects"
    return None


def _zip_intact(path: Path) -> bool:
    """A zip (torch.save file) whose every member matches its CRC."""
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.testzip() is None
    except (OSError, zipfile.BadZipFile, ValueError, EOFError, RuntimeError):
        return False


def checkpoint_step(path: Path) -> int:
    try:
        return int(path.name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return -1


# ---------------------------------------------------------------------------- the run directory


class RunDir:
    """One run's folder and everything in it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunDir) and self.path.resolve() == other.path.resolve()

    def __hash__(self) -> int:
        return hash(self.path.resolve())

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def status_path(self) -> Path:
        return self.path / STATUS_FILE

    @property
    def meta_path(self) -> Path:
        return self.path / META_FILE

    @property
    def events_path(self) -> Path:
        return self.path / EVENTS_FILE

    @property
    def log_path(self) -> Path:
        return self.path / LOG_FILE

    @property
    def control_path(self) -> Path:
        return self.path / CONTROL_FILE

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / CHECKPOINTS_DIR

    @property
    def adapter_dir(self) -> Path:
        """The final model: a PEFT adapter (lora/qlora) or full weights (full), plus tokenizer."""
        return self.path / ADAPTER_DIR

    def exists(self) -> bool:
        return self.status_path.is_file() and self.config_path.is_file()

    def meta(self) -> dict[str, Any]:
        """`run.json`: what the run was created with (name, created, queued_after, probe, source config)."""
        try:
            return json.loads(self.meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def raw_status(self) -> RunStatus:
        """`status.json` exactly as written."""
        st = read_status(self.path)
        if st is None:
            return RunStatus(state="failed", error=f"{self.status_path} is missing",
                             hint="This folder is not a complete run directory.")
        return st

    def status(self) -> RunStatus:
        """The run's status, with a dead worker reconciled into `crashed`.

        A run whose status says running/stopping but whose worker process is gone
        (and whose supervisor, which records exit codes, is gone too) died without
        writing a final state: it is reported as `crashed` and can be resumed.
        """
        st = self.raw_status()
        host = st.extra.get("host")
        if st.state in ACTIVE_STATES and host and host != _hostname():
            # The worker runs on another machine (a SLURM compute node): its pid means nothing here,
            # so the sign of life is the run folder being written (GPU samples every few seconds).
            quiet = time.time() - self._last_write()
            if quiet > REMOTE_SILENT_S:
                st.state = "crashed"
                st.error = st.error or (f"no sign of life from the worker on {host} for {quiet / 60:.0f} minutes "
                                        "(the job ended or the node failed)")
                st.hint = st.hint or f"`tui-tuner runs resume {self.name}` continues from the last checkpoint."
            return st
        if st.state in ACTIVE_STATES and not process_alive(st.pid, st.pid_started):
            if process_alive(st.supervisor_pid):
                return st  # the supervisor is about to record how the worker ended
            st.state = "crashed"
            st.error = st.error or (f"the worker (pid {st.pid}) ended without writing a final state "
                                    "(killed, or the machine restarted)")
            st.hint = st.hint or f"`tui-tuner runs resume {self.name}` continues from the last checkpoint."
        return st

    def _last_write(self) -> float:
        """When the worker last wrote status or events (0 when neither exists)."""
        times = []
        for path in (self.path / "status.json", self.events_path):
            try:
                times.append(path.stat().st_mtime)
            except OSError:
                pass
        return max(times, default=0.0)

    def config(self) -> "RunConfig":
        """The exact, validated config the run was started with."""
        from tui_tuner.config.schema import load_config_or_raise

        return load_config_or_raise(self.config_path)

    def all_checkpoints(self) -> list[Path]:
        """Every `checkpoint-N` folder, oldest first (complete or not)."""
        if not self.checkpoints_dir.is_dir():
            return []
        found = [p for p in self.checkpoints_dir.iterdir() if p.is_dir() and p.name.startswith("checkpoint-")
                 and checkpoint_step(p) >= 0]
        return sorted(found, key=checkpoint_step)

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first; half-written ones are left out."""
        return [p for p in self.all_checkpoints() if checkpoint_problem(p) is None]

    def latest_checkpoint(self) -> Path | None:
        done = self.checkpoints()
        return done[-1] if done else None

    def log_tail(self, lines: int = 20) -> list[str]:
        """The last lines of `train.log` (what the worker printed)."""
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - 64 * 1024))
                data = fh.read()
        except OSError:
            return []
        text = data.decode("utf-8", errors="replace").replace("\r", "\n")
        return [s for s in text.splitlines() if s.strip()][-lines:]

    def request_stop(self, now: bool = False) -> str:
        """Ask the worker to stop; returns what was done, in words.

        Graceful (default): the worker saves a checkpoint and the adapter at the next step
        and ends `stopped`. `now=True`: the worker is terminated at once (SIGTERM); work
        since the last checkpoint is lost. A queued run is cancelled (marked `stopped`).
        """
        st = self.status()
        if st.state == "queued":
            with _launch_lock(self) as locked:
                if locked:
                    st = self.raw_status()
                    if st.state == "queued":
                        st.state, st.ended = "stopped", time.time()
                        st.error = "cancelled before it started"
                        write_status(self.path, st)
                        return "cancelled (it had not started)"
            return "it is starting; ask again in a moment"
        if st.state not in ACTIVE_STATES:
            return f"not running (state: {st.state})"
        request = {"request": "stop_now" if now else "stop", "t": time.time()}
        atomic_write_text(self.control_path, json.dumps(request) + "\n")
        if now and process_alive(st.pid, st.pid_started):
            os.kill(st.pid, signal.SIGTERM)
            return "terminated (work since the last checkpoint is lost)"
        return "stop requested: the worker saves a checkpoint and the adapter, then stops"

    def read_control(self) -> dict[str, Any]:
        try:
            data = json.loads(self.control_path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}


# ---------------------------------------------------------------------------- listing


def config_summary(cfg: "RunConfig") -> dict[str, Any]:
    """What a listing shows of a run's config; cached in `status.json` as `summary`."""
    return {"model": cfg.model.name_or_path, "method": cfg.method,
            "r": cfg.lora.r if cfg.method != "full" else None, "objective": cfg.objective}


def load_yaml(text: str) -> Any:
    """`yaml.safe_load` through libyaml's C parser when PyYAML was built with it (~8x faster)."""
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def run_summary(run: "RunDir", status: RunStatus | None = None) -> dict[str, Any]:
    """`{model, method, r, objective}` of a run: the summary cached in `status.json`, else read from config.yaml.

    Runs created before the summary existed (or whose status was rewritten without it) fall
    back to parsing the config; an unreadable config gives `?`.
    """
    st = status if status is not None else run.raw_status()
    if isinstance(st.summary, dict) and {"model", "method"} <= set(st.summary):
        return {"model": st.summary["model"], "method": st.summary["method"], "r": st.summary.get("r"),
                "objective": st.summary.get("objective") or "sft"}
    try:
        import yaml

        raw = load_yaml(run.config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        raw = None
    raw = raw if isinstance(raw, dict) else {}
    model = raw.get("model") if isinstance(raw.get("model"), dict) else {}
    lora = raw.get("lora") if isinstance(raw.get("lora"), dict) else {}
    method = raw.get("method", "?")
    return {"model": model.get("name_or_path", "?"), "method": method,
            "r": lora.get("r") if method != "full" else None, "objective": raw.get("objective") or "sft"}


# ---------------------------------------------------------------------------- finding runs


def list_runs(runs_dir: str | Path) -> list[RunDir]:
    """Every run directory under `runs_dir`, oldest first."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    runs = [RunDir(p) for p in root.iterdir() if p.is_dir() and (p / STATUS_FILE).is_file()]

    def created(run: RunDir) -> tuple[float, str]:
        c = run.meta().get("created")
        return (c if isinstance(c, (int, float)) else run.status_path.stat().st_mtime, run.name)

    return sorted(runs, key=created)


def find_run(runs_dir: str | Path, name_or_prefix: str) -> RunDir:
    """The run named `name_or_prefix`, or the only one starting with it; a path to a run works too."""
    candidate = Path(name_or_prefix).expanduser()
    if (candidate / STATUS_FILE).is_file():
        return RunDir(candidate)
    runs = list_runs(runs_dir)
    for run in runs:
        if run.name == name_or_prefix:
            return run
    matches = [r for r in runs if r.name.startswith(name_or_prefix)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        if not runs:
            raise RunLookupError(f"no runs in {runs_dir}: start one with `tui-tuner train CONFIG`, "
                                 "or pass --runs-dir to look elsewhere.")
        import difflib

        close = difflib.get_close_matches(name_or_prefix, [r.name for r in runs], n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(close)}?" if close else " `tui-tuner runs ls` lists them."
        raise RunLookupError(f"no run in {runs_dir} is named or starts with {name_or_prefix!r}.{hint}")
    names = ", ".join(r.name for r in matches[:8]) + (" ..." if len(matches) > 8 else "")
    raise RunLookupError(f"{name_or_prefix!r} matches {len(matches)} runs ({names}); type more of the name.")


# ---------------------------------------------------------------------------- creating runs


def default_run_name(cfg: "RunConfig") -> str:
    from tui_tuner.core.names import slug

    return cfg.output.run_name or f"{slug(cfg.model.name_or_path)}-{cfg.method}"


def _frozen_config(cfg: "RunConfig", base_dir: Path) -> "RunConfig":
    """A copy whose relative paths are absolute, so the run does not depend on the cwd it started in."""
    from tui_tuner.config.trackers import mlflow_local_path

    frozen = cfg.model_copy(deep=True)
    from tui_tuner.core.hub_names import hub_dataset_url

    for key in ("train", "eval"):  # a hub id becomes its hf:// URL: no local folder can shadow it later
        value = getattr(cfg.data, key)
        if value:
            url = hub_dataset_url(value, base_dir)
            setattr(frozen.data, key, url or str(cfg.resolve_path(value, base_dir).resolve()))
    local_model = cfg.resolve_path(cfg.model.name_or_path, base_dir)
    if not Path(cfg.model.name_or_path).is_absolute() and local_model.is_dir():
        frozen.model.name_or_path = str(local_model.resolve())
    frozen.output.runs_dir = str(cfg.resolve_path(cfg.output.runs_dir, base_dir).resolve())
    rewards = []
    for spec in cfg.grpo.rewards:  # a user reward file, like a data file, is found wherever the run starts from
        name = spec if isinstance(spec, str) else spec.function
        if ":" in name:
            path, _, func = name.rpartition(":")
            name = f"{cfg.resolve_path(path, base_dir).resolve()}:{func}"
            spec = name if isinstance(spec, str) else spec.model_copy(update={"function": name})
        rewards.append(spec)
    frozen.grpo.rewards = rewards
    if cfg.trackers.tensorboard.log_dir:
        frozen.trackers.tensorboard.log_dir = str(cfg.resolve_path(cfg.trackers.tensorboard.log_dir, base_dir).resolve())
    uri = cfg.trackers.mlflow.tracking_uri
    local = mlflow_local_path(uri)
    if local is not None:  # a local store, like a data path, is found wherever the run starts from
        frozen.trackers.mlflow.tracking_uri = "file:" + str(cfg.resolve_path(local, base_dir).resolve())
    if cfg.init_adapter:
        local = cfg.resolve_path(cfg.init_adapter, base_dir)
        if local.exists():
            frozen.init_adapter = str(local.resolve())
        else:  # a run name: freeze the folder it names now, so a later run of the same name cannot change it
            try:
                frozen.init_adapter = str(find_run(frozen.output.runs_dir, cfg.init_adapter).path)
            except RunLookupError:
                pass  # the worker reports the missing adapter with what to do
    return frozen


def run_config_yaml(cfg: "RunConfig") -> str:
    """Every field that applies to the run's method, defaults included.

    Sections the method ignores are left out (`lora` for full, `quantization` unless qlora):
    the config check rightly rejects them, and the file must load back as the same config.
    """
    import yaml

    data = cfg.model_dump(mode="json")
    if cfg.method != "qlora":
        data.pop("quantization", None)
    if cfg.method == "full":
        data.pop("lora", None)
    from tui_tuner.config.schema import OBJECTIVE_SECTIONS

    for section, objective in OBJECTIVE_SECTIONS.items():
        if objective != cfg.objective:
            data.pop(section, None)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def create_run(cfg: "RunConfig", base_dir: str | Path = ".", name: str | None = None, *,
               queued_after: str | RunDir | None = None, probe: bool | None = None,
               source_config: str | Path | None = None) -> RunDir:
    """Create `<runs_dir>/<name>-<yyyymmdd-hhmmss>/` with config.yaml, run.json and a `queued` status.

    `base_dir` resolves relative paths of the config (its project folder). Two runs created
    in the same second get distinct folders (`-2`, `-3`, ...). `queued_after` makes it wait
    for that run to end (see `start_ready_queued`). `probe`: None = on for GPUs only.
    Raises `RunError` for a name that is not a plain name.
    """
    from tui_tuner.core.names import run_name_problem

    base_dir = Path(base_dir)
    base = name or default_run_name(cfg)
    problem = run_name_problem(base)
    if problem:
        raise RunError(problem)
    runs_root = cfg.resolve_path(cfg.output.runs_dir, base_dir).resolve()
    try:
        runs_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"cannot create the runs folder {runs_root}: {exc.strerror or exc}. Set output.runs_dir "
                       "to a folder you can write to.") from None
    if not os.access(runs_root, os.W_OK | os.X_OK):
        raise RunError(f"cannot write in the runs folder {runs_root} (permission denied). Set output.runs_dir "
                       "to a folder you can write to.")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = None
    for n in range(1, 1000):
        candidate = runs_root / (f"{base}-{stamp}" if n == 1 else f"{base}-{stamp}-{n}")
        if candidate.resolve().parent != runs_root:
            raise RunError(f"{base!r} would leave the runs directory; use a plain name.")
        try:
            candidate.mkdir(mode=RUN_DIR_MODE)
        except FileExistsError:
            continue
        except OSError as exc:
            raise RunError(_write_failed(runs_root, exc)) from None
        path = candidate
        break
    if path is None:
        raise RunError(f"could not find a free run folder name for {base!r} in {runs_root}")
    run = RunDir(path)
    after = queued_after.name if isinstance(queued_after, RunDir) else queued_after
    now = time.time()
    try:
        frozen = _frozen_config(cfg, base_dir)
        atomic_write_text(run.config_path, run_config_yaml(frozen))
        meta = {"name": run.name, "created": now, "queued_after": after,
                "probe": {None: "auto", True: "on", False: "off"}[probe],
                "source_config": str(Path(source_config).resolve()) if source_config else None,
                "project_dir": str(base_dir.resolve())}
        atomic_write_text(path / META_FILE, json.dumps(meta, indent=1) + "\n")
        write_status(path, RunStatus(state="queued", created=now, queued_after=after,
                                     summary=config_summary(frozen)))
    except OSError as exc:
        shutil.rmtree(path, ignore_errors=True)  # never leave an empty or half-made run folder behind
        raise RunError(_write_failed(runs_root, exc)) from None
    return run


# ---------------------------------------------------------------------------- launching


class _launch_lock:
    """Exclusive right to launch a run's worker (`launch.lock`, O_EXCL); stale locks are broken.

    The supervisor inherits the lock and removes it when the worker has ended.
    """

    def __init__(self, run: RunDir, keep: bool = False):
        self.path = run.path / LAUNCH_LOCK
        self.keep = keep
        self.locked = False

    def __enter__(self) -> bool:
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                if self._stale():
                    try:
                        os.unlink(self.path)
                    except FileNotFoundError:
                        pass
                    continue
                return False
            try:
                os.write(fd, json.dumps({"pid": os.getpid(), "t": time.time()}).encode())
            except OSError:
                os.unlink(self.path)  # a lock nobody holds must not outlive this failure (full disk)
                raise
            finally:
                os.close(fd)
            self.locked = True
            return True
        return False

    def _stale(self) -> bool:
        try:
            data = json.loads(self.path.read_text() or "{}")
            age = time.time() - self.path.stat().st_mtime
        except (OSError, ValueError):
            return True
        holder = data.get("supervisor_pid") or data.get("pid")
        if holder:
            return not process_alive(holder, data.get("supervisor_started"))
        return age > 2.0  # being written by its creator right now, or left empty by a crash

    def hand_over(self, supervisor_pid: int) -> None:
        """Record the supervisor as the holder; it removes the lock when the worker ends."""
        started = process_start_time(supervisor_pid)
        atomic_write_text(self.path, json.dumps({"supervisor_pid": supervisor_pid,
                                                 "supervisor_started": started, "t": time.time()}))
        self.keep = True

    def __exit__(self, *exc: object) -> None:
        if self.locked and not self.keep:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


EXITING_SUPERVISOR_WAIT_S = 60.0
"""How long a resume waits for the ended attempt's supervisor to exit (torch's teardown takes seconds)."""


def wait_for_ended_attempt(run: RunDir, st: RunStatus, timeout_s: float = EXITING_SUPERVISOR_WAIT_S) -> None:
    """Wait until the supervisor of an attempt that has written its final state has exited.

    A worker writes `stopped` (or `failed`) before its process ends, and its supervisor then
    records the exit, lets go of the launch lock and starts queued runs: `runs resume` typed
    right after `runs stop` must wait for all that, or the old supervisor would record the
    resumed run as crashed and the launch would be refused. Raises `RunError` after `timeout_s`.
    """
    if not st.is_final or not st.supervisor_pid:
        return
    try:
        lock = json.loads((run.path / LAUNCH_LOCK).read_text() or "{}")
    except (OSError, ValueError):
        return  # no lock: that supervisor has let go of the run
    if not isinstance(lock, dict) or lock.get("supervisor_pid") != st.supervisor_pid:
        return
    deadline = time.monotonic() + timeout_s
    while process_alive(st.supervisor_pid, lock.get("supervisor_started")):
        if time.monotonic() > deadline:
            raise RunError(f"{run.name} {st.state}, but its supervisor (pid {st.supervisor_pid}) has not exited "
                           f"after {timeout_s:.0f} s; try again, or `kill {st.supervisor_pid}` if it hangs.")
        time.sleep(0.2)


def release_launch_lock(run: RunDir) -> None:
    """Called by the supervisor when its worker has ended."""
    try:
        os.unlink(run.path / LAUNCH_LOCK)
    except FileNotFoundError:
        pass


def worker_command(run: RunDir) -> list[str]:
    return [sys.executable, "-m", "tui_tuner.train", str(run.path.resolve())]


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if package_root not in parts:
        env["PYTHONPATH"] = os.pathsep.join([package_root, *parts])
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def start_worker(run: RunDir, detach: bool = True, wait_s: float = 60.0) -> int:
    """Start the run's worker in its own session (it outlives this process and the terminal).

    Returns the pid of the supervisor (`python -m tui_tuner.train RUN_DIR`), which runs
    the worker as its child and records how it ended. `detach=False` is for callers that
    attach right away: it waits (up to `wait_s`) until the worker has taken the run
    (`attempts` went up) or the supervisor exited, so launch failures show at once.
    Raises `RunError` when the run is already running or being launched.
    """
    st = run.status()
    if st.state in ACTIVE_STATES:
        raise RunError(f"{run.name} is already {st.state} (pid {st.pid}).")
    attempts_before = run.raw_status().attempts
    wait_for_ended_attempt(run, st)
    lock = _launch_lock(run)
    try:
        locked = lock.__enter__()
    except OSError as exc:
        raise RunError(_write_failed(run.path, exc)) from None
    if not locked:
        raise RunError(f"{run.name} is being started by another process; `tui-tuner runs ls` shows its state.")
    try:
        env = worker_env()
        env["TUI_TUNER_LAUNCHED_AT"] = repr(time.time())  # stop requests from before this launch are old
        try:
            log = open_private(run.log_path, "ab")
        except OSError as exc:
            raise RunError(_write_failed(run.path, exc)) from None
        with log:
            proc = subprocess.Popen(worker_command(run), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    cwd=run.path, env=env, start_new_session=True, close_fds=True)
        try:
            lock.hand_over(proc.pid)
        except OSError:
            lock.keep = True  # the supervisor removes it when the worker ends, as it would the handed-over one
    finally:
        lock.__exit__(None, None, None)
    if not detach:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if run.raw_status().attempts > attempts_before or proc.poll() is not None:
                break
            time.sleep(0.05)
    # Do not leave a zombie when this process lives on (the TUI): reap it in the background.
    import threading

    threading.Thread(target=proc.wait, daemon=True, name=f"reap-{proc.pid}").start()
    return proc.pid


def delete_run(run: RunDir, wait_s: float = 30.0) -> None:
    """Delete a run's folder; refused while its worker runs or is being launched."""
    st = run.status()
    if st.state in ACTIVE_STATES:
        raise RunError(f"{run.name} is {st.state}; stop it first (`tui-tuner runs stop {run.name}`).")
    # A finished worker may still be exiting (its supervisor holds the lock a moment longer).
    deadline = time.monotonic() + (wait_s if st.is_final else 0.0)
    while True:
        with _launch_lock(run) as locked:
            if locked:
                if not run.status_path.exists():
                    raise RunError(f"{run.path} is not a run directory.")
                shutil.rmtree(run.path)
                return
        if time.monotonic() >= deadline:
            raise RunError(f"{run.name} is being started or its worker is still exiting; try again in a moment.")
        time.sleep(0.2)


# ---------------------------------------------------------------------------- the queue


def queue_ready(run: RunDir, runs: list[RunDir] | None = None) -> bool:
    """Whether a queued run may start: its `queued_after` run has ended (or no longer exists)."""
    st = run.raw_status()
    if st.state != "queued" or run.meta().get("scheduler") == "slurm":  # SLURM starts it on a compute node
        return False
    after = st.queued_after
    if not after:
        try:
            age = time.time() - run.status_path.stat().st_mtime
        except OSError:
            return False
        return age > UNCLAIMED_S
    runs = runs if runs is not None else list_runs(run.path.parent)
    before = next((r for r in runs if r.name == after), None)
    return before is None or before.status().state in FINAL_STATES


def start_ready_queued(runs_dir: str | Path, runs: list[RunDir] | None = None) -> list[RunDir]:
    """Launch every queued run whose predecessor has ended; returns those started.

    Called by a supervisor when its worker ends, and by `tui-tuner runs ls` / the TUI so a
    queue whose supervisor died still moves on. The launch lock makes concurrent callers safe.
    `runs`: the listing of `runs_dir` when the caller has just made it.
    """
    runs = list_runs(runs_dir) if runs is None else runs
    started = []
    for run in runs:
        if queue_ready(run, runs):
            try:
                start_worker(run)
            except RunError:
                continue
            started.append(run)
    return started
