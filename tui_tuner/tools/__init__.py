"""Developer tools that ship with tui-tuner (run with python -m, not part of the CLI)."""
