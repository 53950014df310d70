"""Token ids and loss labels for one conversation: what the training engine feeds the model.

The conversation is rendered once through the chat template (the same text chat and eval
prompt with) and tokenized once, without extra special tokens (the template places them).
With `completion_only_loss`, labels are -100 except on each assistant answer and the
end-of-turn marker the template writes after it (e.g. `<|im_end|>`), so the model learns
to answer and to stop. A plain-text example is tokenized as-is, every token in the loss.
"""

from __future__ import annotations

from typing import Any

from tui_tuner.data.formats import TEXT_ROLE, THINK_CLOSE
from tui_tuner.chat_format.templates import render_conversation, resolve_chat_template

IGNORE_INDEX = -100
_END_MARKERS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "</s>", "<|endoftext|>")


def _template_for(tokenizer: Any, chat_template: str | None) -> str:
    return chat_template if chat_template else resolve_chat_template("auto", tokenizer)


def assistant_spans(template: str, tokenizer: Any, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character span of each assistant answer plus its end-of-turn marker."""
    full = render_conversation(tokenizer, messages, chat_template=template)
    spans: list[tuple[int, int]] = []
    cursor = 0
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render_conversation(tokenizer, messages[:i], add_generation_prompt=True, chat_template=template)
        through = render_conversation(tokenizer, messages[: i + 1], chat_template=template)
        if full.startswith(through) and through.startswith(before) and len(before) >= cursor:
            # The usual case: the template renders each turn the same whatever follows it.
            turn = through[len(before):]
            start, end = len(before), len(before) + len(turn.rstrip())
        else:
            # Templates that rewrite earlier turns (e.g. drop old thinking blocks): find the answer.
            content = message["content"].strip()
            start = full.find(content, cursor)
            if start < 0 and THINK_CLOSE in content:
                # the template dropped this turn's thinking block: train the answer it kept
                content = content.split(THINK_CLOSE)[-1].strip()
                start = full.find(content, cursor) if content else -1
            if start < 0:
                continue
            end = start + len(content)
            rest = full[end:]
            marker = next((m for m in (getattr(tokenizer, "eos_token", None), *_END_MARKERS)
                           if m and rest.lstrip(" ").startswith(m)), None)
            if marker:
                end += rest.index(marker) + len(marker)
        spans.append((start, end))
        cursor = end
    return full, spans


def tokenize_conversation(tokenizer: Any, messages: list[dict[str, str]], max_seq_length: int,
                          completion_only_loss: bool, chat_template: str | None = None) -> dict[str, Any]:
    """Token ids and labels for one conversation (or plain-text example).

    Returns `input_ids`, `labels`, `attention_mask`, `length` (tokens before truncation),
    `truncated` (the example was longer than `max_seq_length` and was cut at the end) and
    `trained_tokens` (labels that are not -100 after truncation; 0 means nothing to learn).
    `chat_template` is the Jinja source (see `resolve_chat_template`); None uses the
    tokenizer's own template, else chatml.
    """
    if len(messages) == 1 and messages[0]["role"] == TEXT_ROLE:
        ids = _encode_text(tokenizer, messages[0]["content"])
        labels = list(ids)
    else:
        template = _template_for(tokenizer, chat_template)
        full, spans = assistant_spans(template, tokenizer, messages)
        ids, labels = _encode_with_spans(tokenizer, full, spans)
        if not completion_only_loss:
            labels = list(ids)
    length = len(ids)
    truncated = length > max_seq_length
    ids, labels = ids[:max_seq_length], labels[:max_seq_length]
    return {
        "input_ids": ids,
        "labels": labels,
        "attention_mask": [1] * len(ids),
        "length": length,
        "truncated": truncated,
        "trained_tokens": sum(1 for x in labels if x != IGNORE_INDEX),
    }


def _encode_text(tokenizer: Any, text: str) -> list[int]:
    """Plain text: the tokenizer's usual special tokens (e.g. BOS), ending with EOS so the model learns to stop."""
    ids = list(tokenizer(text, add_special_tokens=True)["input_ids"])
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is not None and (not ids or ids[-1] != eos):
        ids.append(eos)
    return ids


def _encode_with_spans(tokenizer: Any, text: str, spans: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        labels = [IGNORE_INDEX] * len(ids)
        k = 0
        for index, (start, end) in enumerate(enc["offset_mapping"]):
            while k < len(spans) and start >= spans[k][1]:
                k += 1
            if k < len(spans) and spans[k][0] <= start and end <= spans[k][1] and end > start:
                labels[index] = ids[index]
        return ids, labels
    # Tokenizers without offsets: find each span's token boundaries by tokenizing the text up to it.
    def count(prefix: str) -> int:
        return len(tokenizer(prefix, add_special_tokens=False)["input_ids"]) if prefix else 0

    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    labels = [IGNORE_INDEX] * len(ids)
    for start, end in spans:
        for k in range(count(text[:start]), min(count(text[:end]), len(ids))):
            labels[k] = ids[k]
    return ids, labels


def encode_prompt(tokenizer: Any, messages: list[dict[str, str]], chat_template: str | None = None) -> list[int]:
    """Token ids that prompt the model for the next assistant turn, exactly as training rendered them."""
    template = _template_for(tokenizer, chat_template)
    text = render_conversation(tokenizer, messages, add_generation_prompt=True, chat_template=template)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
