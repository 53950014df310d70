"""Silence library chatter that a tui-tuner user cannot act on, before heavy libraries load.

Called at the top of every code path that loads a model (the training worker, chat, eval,
export), so terminals, the TUI's log tail and `train.log` show tui-tuner's own messages.
"""

from __future__ import annotations

import logging
import warnings


def quiet_library_noise() -> None:
    """Filter known-harmless warnings and progress bars from transformers, trl, peft and bitsandbytes."""
    # trl and peft still call a transformers API renamed in 5.x.
    warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*deprecated", category=FutureWarning)
    # bitsandbytes on CPUs with AVX512-BF16 tries an optional hub kernel; the built-in one works.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    # "Loading weights" bars for a model that loads in a second break the chat transcript.
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


CHECK_NOISE_LOGGERS = ("transformers.tokenization_utils_base", "bitsandbytes.backends.cpu.ops",
                       "bitsandbytes.cextension")
"""Loggers whose warnings only repeat what a check reports itself ("Token indices sequence length is
longer than ...": data check measures every example against max_seq_length) or concern kernels a
check never runs ("Failed to load CPU gemm_4bit_forward ...")."""


def quiet_check_noise() -> None:
    """Keep library warnings out of `data check`, `config check` and `train`'s own output.

    Only in the commands' process: the training worker keeps them, so they stay in train.log.
    """
    for name in CHECK_NOISE_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
