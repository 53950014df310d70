"""Reusable widgets of the tui-tuner app (charts, meters, issue lists, the YAML editor)."""
