"""The training worker: `python -m tui_tuner.train RUN_DIR` trains one run directory.

The entry process is a small supervisor (`supervisor.py`, no torch) that runs the
worker (`worker.py`) as its child, records how it ended (exit code, SIGKILL by the
out-of-memory killer) when the worker could not, and then starts the next queued
run. `python -m tui_tuner.train --worker RUN_DIR` runs the worker in-process.
Nothing here imports torch at import time.
"""
