"""tui-tuner: fine-tune LLMs with LoRA / QLoRA from a terminal, headless or in a TUI."""

__version__ = "0.1.0"
