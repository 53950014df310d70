"""Datasets: read a file in any accepted format, check it, and turn it into training tokens.

    tui-tuner data check data/sample.jsonl --config configs/quickstart.yaml

Public API (the training engine, chat, eval and the TUI use these):

- `load_dataset_file(path, data_cfg=None) -> DatasetLoad`: conversations + format + issues by line.
- `check_config_dataset(loaded_config, tokenizer=None) -> DataReport`: the report `config check`
  and `data check` print (format, counts, token lengths, duplicates, every issue).
- `tokenize_conversation(tokenizer, messages, max_seq_length, completion_only_loss, chat_template)`:
  input ids and labels with the prompt masked.
- `encode_prompt(tokenizer, messages, chat_template)`: the generation prompt, rendered the same way.
- `tui_tuner.data.tokenized.tokenize_file(path, cfg, tokenizer, template, cache=True)`: a file
  streamed, tokenized once and cached for the worker and resumes (imported on use: pyarrow).

See docs/data.md for the formats, the error messages and how masking works.
"""

from tui_tuner.data.formats import FORMATS, TEXT_ROLE, THINK_CLOSE, THINK_OPEN, thinking_answer
from tui_tuner.data.issues import DataIssue
from tui_tuner.data.loader import DatasetLoad, load_dataset_file
from tui_tuner.data.report import (
    DataReport, FileReport, TokenStats, check_config_dataset, check_file, load_tokenizer_if_local, token_stats,
)
from tui_tuner.data.tokenize import IGNORE_INDEX, encode_prompt, tokenize_conversation

__all__ = [
    "FORMATS", "TEXT_ROLE", "THINK_OPEN", "THINK_CLOSE", "IGNORE_INDEX", "DataIssue", "DatasetLoad",
    "load_dataset_file", "tokenize_conversation", "encode_prompt", "thinking_answer", "DataReport", "FileReport",
    "TokenStats", "check_config_dataset", "check_file", "load_tokenizer_if_local", "token_stats",
]
