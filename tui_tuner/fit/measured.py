"""Measured beats estimated: peak memory that earlier runs on this machine actually used.

Before training, the worker's preflight probe (`tui_tuner/train/probe.py`) runs one
forward+backward on the longest batch and writes `probe: {measured_peak_bytes,
optimizer_state_bytes, seq_len, batch_size, estimate_bytes, device, ...}` into the run's
`status.json`, beside the run's `config.yaml`. `find_measurements` scans the runs folder for
runs of the same model and settings, so `tui-tuner check` can show the measurement next to
the estimate and the estimator's error on this machine. Every file is read defensively: a run
being written, a torn file or an older layout is skipped, never an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui_tuner.rundir.files import CONFIG_FILE, STATUS_FILE

MATCH_KEYS = ("model", "method", "seq_len", "batch_size", "lora_r", "target_modules",
              "gradient_checkpointing", "optimizer")
"""Settings that must agree for a measured run to stand for an estimate."""


@dataclass
class Measurement:
    """One run's measured peak and what the estimator said for it."""

    run_dir: str
    run_name: str
    measured_peak_bytes: int
    """Peak of one forward + backward on the longest batch (allocator reserved, or RSS on CPU)."""
    estimate_bytes: int | None
    device: str
    backend: str | None
    settings: dict[str, Any]
    optimizer_state_bytes: int = 0
    """Optimizer state the first step adds (the probe computes it; fwd+bwd does not allocate it)."""
    seq_len: int | None = None
    """Tokens per example in the probed batch (the longest; may be shorter than max_seq_length)."""
    batch_size: int | None = None

    @property
    def training_peak_bytes(self) -> int:
        """The measured peak plus the optimizer state: what training itself will hold."""
        return self.measured_peak_bytes + self.optimizer_state_bytes

    def error_vs(self, estimate_bytes: int) -> float:
        """Relative error of `estimate_bytes` against the training peak (+0.1 = 10% over)."""
        return estimate_bytes / self.training_peak_bytes - 1

    def as_dict(self) -> dict[str, Any]:
        return {"run_dir": self.run_dir, "run_name": self.run_name, "measured_peak_bytes": self.measured_peak_bytes,
                "optimizer_state_bytes": self.optimizer_state_bytes,
                "training_peak_bytes": self.training_peak_bytes, "probe_seq_len": self.seq_len,
                "probe_batch_size": self.batch_size, "estimate_bytes": self.estimate_bytes, "device": self.device,
                "backend": self.backend, "settings": self.settings}


def settings_key(*, model: str, method: str, seq_len: int, batch_size: int, lora_r: int | None,
                 target_modules: Any, gradient_checkpointing: bool, optimizer: str) -> dict[str, Any]:
    """The comparable settings of a run or an estimate (LoRA fields blank for full fine-tuning)."""
    lora = method != "full"
    tm = target_modules if isinstance(target_modules, str) or target_modules is None else sorted(target_modules)
    return {"model": model, "method": method, "seq_len": int(seq_len), "batch_size": int(batch_size),
            "lora_r": int(lora_r) if lora and lora_r is not None else None,
            "target_modules": tm if lora else None,
            "gradient_checkpointing": bool(gradient_checkpointing), "optimizer": optimizer}


def settings_from_config(cfg: Any) -> dict[str, Any]:
    """`settings_key` of a `RunConfig`."""
    return settings_key(model=cfg.model.name_or_path, method=cfg.method, seq_len=cfg.model.max_seq_length,
                        batch_size=cfg.training.batch_size, lora_r=cfg.lora.r,
                        target_modules=cfg.lora.target_modules,
                        gradient_checkpointing=cfg.training.gradient_checkpointing,
                        optimizer=cfg.training.optimizer)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) and value > 0:
        return int(value)
    return None


def read_run_measurement(run_dir: Path) -> Measurement | None:
    """The preflight measurement of one run directory, or None when it has none (yet)."""
    status = _read_json(run_dir / STATUS_FILE)
    if status is None:
        return None
    probe = status.get("probe")
    if not isinstance(probe, dict):
        return None
    peak = _int(probe.get("measured_peak_bytes", probe.get("measured_peak")))
    if peak is None:
        return None
    cfg_path = run_dir / CONFIG_FILE
    if not cfg_path.is_file():
        return None
    from tui_tuner.config.schema import load_config

    loaded = load_config(cfg_path)
    if not loaded.ok or loaded.config is None:
        return None
    return Measurement(
        run_dir=str(run_dir), run_name=run_dir.name, measured_peak_bytes=peak,
        estimate_bytes=_int(probe.get("estimate_bytes", probe.get("estimate"))),
        device=str(probe.get("device") or status.get("device") or "?"),
        backend=status.get("backend") if isinstance(status.get("backend"), str) else None,
        settings=settings_from_config(loaded.config),
        optimizer_state_bytes=_int(probe.get("optimizer_state_bytes")) or 0,
        seq_len=_int(probe.get("seq_len")), batch_size=_int(probe.get("batch_size")),
    )


def find_measurements(runs_dir: str | Path, settings: dict[str, Any], backend: str | None = None) -> list[Measurement]:
    """Runs under `runs_dir` whose measured settings match `settings` (newest first)."""
    root = Path(runs_dir)
    try:
        run_dirs = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return []
    out = []
    for run_dir in run_dirs:
        m = read_run_measurement(run_dir)
        if m is None:
            continue
        if any(m.settings.get(k) != settings.get(k) for k in MATCH_KEYS):
            continue
        if backend is not None and m.backend is not None and m.backend != backend:
            continue
        out.append(m)
    return out
