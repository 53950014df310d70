"""Every file and folder name inside a run directory, spelled once (see docs/run-directory.md).

    runs/<name>-<yyyymmdd-hhmmss>/  config.yaml run.json status.json events.jsonl train.log
                                    control.json launch.json checkpoints/ adapter/ eval/ chats/

Code outside `tui_tuner.rundir` reaches these through `RunDir`'s paths or these names, never
through a literal, so renaming a file is a one-line change. No imports: anything may use it.
"""

from __future__ import annotations

from pathlib import Path

CONFIG_FILE = "config.yaml"
"""The exact, validated config the run was started with."""
META_FILE = "run.json"
"""Static facts: name, created, queued_after, probe mode, source config."""
STATUS_FILE = "status.json"
"""The single source of truth for the run's state, rewritten atomically."""
EVENTS_FILE = "events.jsonl"
"""Append-only training events (log, eval, checkpoint, resume, ...)."""
LOG_FILE = "train.log"
"""What the worker printed."""
CONTROL_FILE = "control.json"
"""Stop requests from the CLI or TUI to the worker."""
LAUNCH_FILE = "launch.json"
"""The multi-GPU launch plan."""
LAUNCH_LOCK = "launch.lock"
"""Held while a queued run is being started, so it starts once."""
CHECKPOINTS_DIR = "checkpoints"
"""`checkpoint-N` folders written by the trainer."""
ADAPTER_DIR = "adapter"
"""The final model: a PEFT adapter (lora/qlora) or full weights (full), plus tokenizer."""
EVAL_DIR = "eval"
"""Evaluation reports (`eval-*.md` / `.json`)."""
CHATS_DIR = "chats"
"""Chat transcripts."""
MERGED_DIR = "merged"
"""`tui-tuner export --merged` output (`merged-checkpoint-N` for a checkpoint)."""
GGUF_DIR = "gguf"
"""`tui-tuner export --gguf` output."""
PUBLISH_DIR = "publish"
"""`tui-tuner publish` output: the folder uploaded to the hub (`publish-checkpoint-N` for a checkpoint)."""


def is_run_folder(path: str | Path) -> bool:
    """Whether `path` holds a run's outputs: its config plus a status, an adapter or checkpoints.

    Looser than `RunDir.exists()` (which needs status.json): a run folder copied to another
    machine without its status still loads for chat, eval and export.
    """
    path = Path(path)
    return (path / CONFIG_FILE).is_file() and ((path / ADAPTER_DIR).is_dir() or (path / CHECKPOINTS_DIR).is_dir()
                                               or (path / STATUS_FILE).is_file())
