"""Fault injection for the reliability tests, loaded by every Python process they start.

The tests put this folder first on PYTHONPATH; Python imports `sitecustomize` at start-up.
It does nothing unless the test set one of:

- `TUI_TUNER_TEST_FAULT` (JSON), acted on in the training worker only (`--worker`):
  {"at": "save", "file": "optimizer.pt", "nth": 2, "action": "kill"}
      the 2nd time a file of that name is written (a checkpoint's adapter weights
      `adapter_model.safetensors`, `optimizer.pt`, or `trainer_state.json`), write half of
      it, then SIGKILL this process ("kill") or fail with ENOSPC, disk full ("enospc");
  {"at": "events", "nth": 3, "action": "kill"}
      the 3rd `log` event is written half (no newline), then SIGKILL.
- `TUI_TUNER_TEST_OOM_COUNTER` (a file path), acted on in the supervisor: the cgroup
  `oom_kill` counter is read from that file, so a test can do what the kernel's OOM
  killer does (bump the counter, SIGKILL the worker).
"""

import json
import os
import signal
import sys

_argv = getattr(sys, "orig_argv", sys.argv)
_fault = json.loads(os.environ.get("TUI_TUNER_TEST_FAULT") or "null")
_counts: dict = {}


def _trip(key: str) -> bool:
    _counts[key] = _counts.get(key, 0) + 1
    return _counts[key] == _fault.get("nth", 1)


def _write_half_then_fail(path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
        f.flush()
        os.fsync(f.fileno())
    if _fault.get("action") == "enospc":
        raise OSError(28, "No space left on device", str(path))
    os.kill(os.getpid(), signal.SIGKILL)


def _install_save_faults(name: str) -> None:
    if name == "optimizer.pt":
        import io

        import torch

        real_save = torch.save

        def save(obj, f, *args, **kwargs):
            if isinstance(f, (str, os.PathLike)) and os.path.basename(os.fspath(f)) == name and _trip("save"):
                buf = io.BytesIO()
                real_save(obj, buf, *args, **kwargs)
                _write_half_then_fail(f, buf.getvalue())
            return real_save(obj, f, *args, **kwargs)

        torch.save = save
    elif name == "adapter_model.safetensors":
        import safetensors.torch as st

        real_save_file, real_save = st.save_file, st.save

        def save_file(tensors, filename, metadata=None, *args, **kwargs):
            if os.path.basename(os.fspath(filename)) == name and _trip("save"):
                _write_half_then_fail(filename, real_save(tensors, metadata=metadata))
            return real_save_file(tensors, filename, metadata, *args, **kwargs)

        st.save_file = save_file
    elif name == "trainer_state.json":
        import dataclasses

        from transformers import trainer_callback

        real = trainer_callback.TrainerState.save_to_json

        def save_to_json(self, json_path):
            if _trip("save"):
                text = json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"
                _write_half_then_fail(json_path, text.encode())
            return real(self, json_path)

        trainer_callback.TrainerState.save_to_json = save_to_json


def _install_event_fault() -> None:
    from tui_tuner.rundir import events

    real_write = events.EventWriter.write

    def write(self, kind, **fields):
        if kind == "log" and _trip("events"):
            import time

            line = json.dumps({"t": round(time.time(), 3), "kind": kind, **fields}, default=str) + "\n"
            os.write(self._fd, line.encode()[: len(line) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
        return real_write(self, kind, **fields)

    events.EventWriter.write = write


def _install_oom_counter(path: str) -> None:
    from tui_tuner.train import supervisor

    def cgroup_oom_kills():
        try:
            return int(open(path).read().strip() or 0)
        except (OSError, ValueError):
            return 0

    supervisor.cgroup_oom_kills = cgroup_oom_kills


try:
    if _fault and "--worker" in _argv:
        if _fault["at"] == "save":
            _install_save_faults(_fault["file"])
        elif _fault["at"] == "events":
            _install_event_fault()
    if os.environ.get("TUI_TUNER_TEST_OOM_COUNTER") and "tui_tuner.train" in _argv and "--worker" not in _argv:
        _install_oom_counter(os.environ["TUI_TUNER_TEST_OOM_COUNTER"])
except Exception as exc:  # a broken injector must be loud: the test would otherwise pass vacuously
    print(f"fault injection failed to install: {exc!r}", file=sys.stderr)
    raise
