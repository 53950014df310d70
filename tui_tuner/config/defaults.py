"""Config values needed where building the pydantic schema would cost more than the work.

`tui-tuner check MODEL` estimates memory with the config defaults but no config; importing
`tui_tuner.config.schema` (pydantic and every section class) would be most of its start-up.
`tests/unit/test_config.py` proves these equal `RunConfig()`'s, so the schema stays the one
source of the defaults.
"""

from __future__ import annotations

from typing import Any

DEMO_MODEL_ID = "tui-tuner/demo-tiny-llama"
"""A tiny Llama built locally on first use (see `tui_tuner.models.demo`); knows only its training data."""

FIT_DEFAULTS: dict[str, dict[str, Any]] = {
    "model": {"max_seq_length": 1024, "dtype": "auto"},
    "training": {"batch_size": 2, "gradient_checkpointing": True, "optimizer": "adamw_torch"},
    "lora": {"r": 16, "target_modules": "all-linear", "dropout": 0.05},
    "quantization": {"double_quant": True},
}
"""The defaults the fit check reads, by section, exactly as in `RunConfig()`."""
