"""Token ids and loss labels for one conversation: what the training engine feeds the model.

The conversation is rendered through the chat template (the same text chat and eval prompt
with) and tokenized once, without extra special tokens (the template places them). Where each
answer lies comes from one rendering with every message's text marked (or from the template's
`{% generation %}` blocks), then token offsets; see `assistant_spans`.
With `completion_only_loss`, labels are -100 except on each assistant answer and the
end-of-turn marker the template writes after it (e.g. `<|im_end|>`), so the model learns
to answer and to stop. A plain-text example is tokenized as-is, every token in the loss.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from functools import lru_cache
from operator import sub
from collections.abc import Callable
from typing import Any

from tui_tuner.chat_format.templates import (
    ChatTemplateError, has_generation_tags, render_conversation, render_conversation_with_spans, render_with_spans,
    resolve_chat_template,
    special_token_kwargs,
)
from tui_tuner.chat_format.templates import PROMPT_ROLE
from tui_tuner.data.formats import NOT_TRAINED, TEXT_ROLE, THINK_CLOSE, THINK_OPEN

IGNORE_INDEX = -100
_END_MARKERS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<turn|>", "<｜end▁of▁sentence｜>",
                "</s>", "<|endoftext|>", "<|end_of_text|>", "<eos>")
# Private-use characters (U+E000..U+F8FF) wrap each message's text in the one marked rendering:
# message i gets three of its own (start, answer start, end). A conversation that already
# contains such characters, or is longer than they allow, is rendered turn by turn instead.
_MARK_BASE, _MARK_LIMIT = 0xE000, 0xF8FF


_MARKS = [(chr(code), chr(code + 1), chr(code + 2)) for code in range(_MARK_BASE, _MARK_LIMIT - 1, 3)]


def _marks(index: int) -> tuple[str, str, str]:
    return _MARKS[index]


_MARK_PATTERN = re.compile(f"[{chr(_MARK_BASE)}-{chr(_MARK_LIMIT)}]")


def _template_for(tokenizer: Any, chat_template: str | None) -> str:
    return chat_template if chat_template else resolve_chat_template("auto", tokenizer)


def _mark(index: int, message: dict[str, Any]) -> dict[str, Any]:
    """The message with its text wrapped in its markers, inside its outer whitespace (templates often trim).

    An assistant answer with a thinking block gets a second start marker before the answer proper,
    for templates that drop the thinking block.
    """
    content = message.get("content")
    if not isinstance(content, str) or not content.strip():
        return message
    start, answer_start, end = _marks(index)
    core = content.strip()
    lead = content[: len(content) - len(content.lstrip())]
    trail = content[len(content.rstrip()):]
    if message.get("role") == "assistant" and THINK_CLOSE in core:
        thought, _, answer = core.rpartition(THINK_CLOSE)
        gap = answer[: len(answer) - len(answer.lstrip())]
        core = thought + THINK_CLOSE + gap + answer_start + answer.lstrip()
    return {**message, "content": lead + start + core + end + trail}


def _strip_marks(text: str) -> tuple[str, dict[str, int]]:
    """`text` without markers, and where each marker was in the stripped text."""
    found: dict[str, int] = {}
    for removed, match in enumerate(_MARK_PATTERN.finditer(text)):
        found.setdefault(match.group(), match.start() - removed)
    return _MARK_PATTERN.sub("", text), found


def _end_of_turn_end(text: str, at: int, tokenizer: Any) -> int:
    """Where the end-of-turn token the template wrote at `at` (spaces allowed before it) ends; `at` if none."""
    start = at
    while start < len(text) and text[start] == " ":
        start += 1
    eos = getattr(tokenizer, "eos_token", None)
    for marker in (eos, *_END_MARKERS) if eos else _END_MARKERS:
        if text.startswith(marker, start):
            return start + len(marker)
    return at


@lru_cache(maxsize=32)
def _generation_prompt(template: str, specials: tuple[tuple[str, str], ...]) -> str | None:
    """What the template adds for `add_generation_prompt` (e.g. `<|im_start|>assistant\\n`), or None."""
    from tui_tuner.chat_format.templates import ChatTemplateError, render_template

    probe = [{"role": "user", "content": "x"}]
    kwargs = dict(specials)
    try:
        without = render_template(template, probe, False, **kwargs)
        with_prompt = render_template(template, probe, True, **kwargs)
    except ChatTemplateError:
        return None
    if not with_prompt.startswith(without) or len(with_prompt) == len(without):
        return None
    return with_prompt[len(without):]


def assistant_spans(template: str, tokenizer: Any, messages: list[dict[str, Any]],
                    specials: dict[str, str] | None = None) -> tuple[str, list[tuple[int, int]]]:
    """The training text of a conversation and the character span of each assistant answer plus its end-of-turn.

    The conversation is rendered once with each message's text marked, which gives where every
    message landed; an assistant span runs from the end of the template's assistant header (its
    generation prompt) to the end of the answer plus the end-of-turn token the template writes.
    Templates with `{% generation %}` blocks give the spans themselves. A reasoning template that
    drops the thinking block of the final answer is trained on the text inference sees: the
    generation prompt followed by the whole answer, thinking included. `specials` is
    `special_token_kwargs(tokenizer)`, read once for many conversations.
    """
    if specials is None:
        specials = special_token_kwargs(tokenizer)  # once: the tokenizer builds its map anew on every read

    def render(conversation: list[dict[str, Any]], add_generation_prompt: bool = False, **extra: Any) -> str:
        return render_with_spans(template, conversation, add_generation_prompt, **{**specials, **extra})[0]

    if has_generation_tags(template):
        text, spans = render_with_spans(template, messages, **specials)
        answers = [m for m in messages if m.get("role") == "assistant"]
        if len(answers) == len(spans):  # one generation block per answer: honour weight 0
            spans = [span for span, m in zip(spans, answers) if m.get(NOT_TRAINED) != 0]
        return text, spans
    full = render(messages)
    if 3 * len(messages) > _MARK_LIMIT - _MARK_BASE or any(
            _MARK_PATTERN.search(m["content"]) for m in messages if isinstance(m.get("content"), str)):
        return full, _spans_by_prefix(render, tokenizer, messages, full)
    marked = render([_mark(i, m) for i, m in enumerate(messages)])
    text, found = _strip_marks(marked)
    if text != full:  # the template reacts to the markers (it inspects the text): do it turn by turn
        return full, _spans_by_prefix(render, tokenizer, messages, full)
    header = _generation_prompt(template, tuple(sorted(specials.items())))
    spans: list[tuple[int, int]] = []
    previous_end = 0
    for index, message in enumerate(messages):
        start_mark, answer_mark, end_mark = _marks(index)
        first = found.get(start_mark, found.get(answer_mark))
        last = found.get(end_mark)
        if first is None or last is None:
            continue  # the template dropped this message's text (or its thinking block and nothing else)
        if message["role"] == "assistant" and message.get(NOT_TRAINED) != 0:
            start = first
            if header:
                at = text.rfind(header, previous_end, first)
                if at >= 0:
                    start = at + len(header)
            end = _end_of_turn_end(text, last, tokenizer)
            spans.append((start, end))
        previous_end = last
    return _as_inference_renders(render, tokenizer, messages, text, spans)


def _as_inference_renders(render: Callable[..., str], tokenizer: Any, messages: list[dict[str, Any]], text: str,
                          spans: list[tuple[int, int]]) -> tuple[str, list[tuple[int, int]]]:
    """Make the final answer follow exactly the prompt inference builds for it.

    Most templates render a finished turn as prompt + answer, and nothing changes. Some do not:
    reasoning templates that drop the final answer's thinking block (DeepSeek-R1 distills), or
    whose generation prompt adds what a finished turn lacks (Gemma 4's empty thought channel).
    Their final answer is trained as the model will produce it: after the inference prompt,
    thinking included (`enable_thinking=True` when the answer has a thinking block).
    """
    final = messages[-1]
    if final.get("role") != "assistant" or not spans or not isinstance(final.get("content"), str) \
            or final.get(NOT_TRAINED) == 0:
        return text, spans
    thinking = THINK_CLOSE in final["content"]
    extra = {"enable_thinking": True} if thinking else {}
    prompt = render(messages[:-1], add_generation_prompt=True, **extra)
    if text[: spans[-1][0]] == prompt and not _drops_final_thinking(final["content"], text):
        return text, spans
    earlier = spans[:-1]
    if earlier and (earlier[-1][1] > len(prompt) or prompt[: earlier[-1][1]] != text[: earlier[-1][1]]):
        return text, spans  # the history renders differently in the prompt: keep the template's own text
    answer = final["content"].strip()
    opened = prompt.rstrip().endswith(THINK_OPEN)  # e.g. DeepSeek-R1 distills end the prompt with "<think>\n"
    if opened and answer.startswith(THINK_OPEN):
        answer = answer[len(THINK_OPEN):].lstrip("\n") if prompt.endswith("\n") else answer[len(THINK_OPEN):]
    ended = text[spans[-1][0]:spans[-1][1]]
    end_text = next((m for m in (getattr(tokenizer, "eos_token", None), *_END_MARKERS) if m and ended.endswith(m)), "")
    full = prompt + answer + end_text
    return full, [*earlier, (len(prompt), len(full))]


def _drops_final_thinking(content: str, text: str) -> bool:
    if THINK_CLOSE not in content:
        return False
    thought = content.rpartition(THINK_CLOSE)[0].replace(THINK_OPEN, "").strip()
    return bool(thought) and thought not in text


def _spans_by_prefix(render: Callable[..., str], tokenizer: Any, messages: list[dict[str, Any]],
                     full: str) -> list[tuple[int, int]]:
    """Spans found by rendering the conversation turn by turn (for templates that inspect message text)."""
    spans: list[tuple[int, int]] = []
    cursor = 0
    for i, message in enumerate(messages):
        if message["role"] != "assistant" or message.get(NOT_TRAINED) == 0:
            continue
        before = render(messages[:i], add_generation_prompt=True)
        through = render(messages[: i + 1])
        if full.startswith(through) and through.startswith(before) and len(before) >= cursor:
            turn = through[len(before):]
            start, end = len(before), len(before) + len(turn.rstrip())
        else:
            content = message["content"].strip()
            start = full.find(content, cursor)
            if start < 0 and THINK_CLOSE in content:
                content = content.split(THINK_CLOSE)[-1].strip()
                start = full.find(content, cursor) if content else -1
            if start < 0:
                continue
            end = start + len(content)
            end = _end_of_turn_end(full, end, tokenizer)
        spans.append((start, end))
        cursor = end
    return spans


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
    elif messages[0]["role"] == PROMPT_ROLE:
        # trl's plain prompt/completion: no chat template; the completion and an EOS are trained
        full, spans = render_conversation_with_spans(tokenizer, messages)
        ids, labels = _encode_with_spans(tokenizer, full, spans)
        eos = getattr(tokenizer, "eos_token_id", None)
        if eos is not None and (not ids or ids[-1] != eos):
            ids, labels = ids + [eos], labels + [eos]
        if not completion_only_loss:
            labels = list(ids)
    else:
        template = _template_for(tokenizer, chat_template)
        full, spans = assistant_spans(template, tokenizer, messages)
        ids, labels = _encode_with_spans(tokenizer, full, spans)
        if not completion_only_loss:
            labels = list(ids)
    return _encoding(ids, labels, max_seq_length)


def tokenize_conversations(tokenizer: Any, conversations: list[list[dict[str, str]]], max_seq_length: int,
                           completion_only_loss: bool, chat_template: str | None = None
                           ) -> list[dict[str, Any] | ChatTemplateError]:
    """`tokenize_conversation` for many conversations, with one batched tokenizer call: the same ids and labels.

    A conversation the chat template refuses to render is returned as its `ChatTemplateError`.
    """
    out: list[dict[str, Any] | ChatTemplateError | None] = [None] * len(conversations)
    template: str | None = None
    pending: list[tuple[int, str, list[tuple[int, int]]]] = []
    specials = special_token_kwargs(tokenizer)
    for index, messages in enumerate(conversations):
        try:
            if messages[0]["role"] in (TEXT_ROLE, PROMPT_ROLE):
                out[index] = tokenize_conversation(tokenizer, messages, max_seq_length, completion_only_loss,
                                                   chat_template)
                continue
            template = template or _template_for(tokenizer, chat_template)
            full, spans = assistant_spans(template, tokenizer, messages, specials)
        except ChatTemplateError as exc:
            out[index] = exc
            continue
        pending.append((index, full, spans))
    encoded = _encode_many_with_spans(tokenizer, [text for _, text, _ in pending], [spans for _, _, spans in pending])
    for (index, _, _), (ids, labels) in zip(pending, encoded):
        out[index] = _encoding(ids, labels if completion_only_loss else list(ids), max_seq_length)
    return out  # type: ignore[return-value]


def _encoding(ids: list[int], labels: list[int], max_seq_length: int) -> dict[str, Any]:
    length = len(ids)
    ids, labels = ids[:max_seq_length], labels[:max_seq_length]
    return {
        "input_ids": ids,
        "labels": labels,
        "attention_mask": [1] * len(ids),
        "length": length,
        "truncated": length > max_seq_length,
        "trained_tokens": len(labels) - labels.count(IGNORE_INDEX),
    }


def _encode_text(tokenizer: Any, text: str) -> list[int]:
    """Plain text: the tokenizer's usual special tokens (e.g. BOS), ending with EOS so the model learns to stop."""
    ids = list(tokenizer(text, add_special_tokens=True)["input_ids"])
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is not None and (not ids or ids[-1] != eos):
        ids.append(eos)
    return ids


def _labels_from_offsets(ids: list[int], offsets: list[tuple[int, int]],
                         spans: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    labels = [IGNORE_INDEX] * len(ids)
    starts, ends = zip(*offsets) if offsets else ((), ())
    # A token is trained when it lies wholly inside a span (and is not zero-width); offsets only
    # grow along the text, so each span's tokens are one slice found by bisection.
    for span_start, span_end in spans:
        first, stop = bisect_left(starts, span_start), bisect_right(ends, span_end)
        labels[first:stop] = ids[first:stop]
        if first < stop and min(map(sub, ends[first:stop], starts[first:stop])) <= 0:  # rare: zero-width tokens
            for k in range(first, stop):
                if starts[k] >= ends[k]:
                    labels[k] = IGNORE_INDEX
    return ids, labels


def _batch_backend(tokenizer: Any) -> Any:
    """The `tokenizers` backend of a transformers fast tokenizer, set as `tokenizer(texts, add_special_tokens=False)`
    sets it before its own `encode_batch` call; None for any other tokenizer.

    Calling the backend directly gives the same encodings without the wrapper's per-call work
    (argument checks, BatchEncoding), which costs as much as tokenizing a short conversation.
    """
    import sys

    module = sys.modules.get("transformers.tokenization_utils_tokenizers")
    base = getattr(module, "TokenizersBackend", None)
    if base is None or not isinstance(tokenizer, base) or type(tokenizer)._encode_plus is not base._encode_plus \
            or hasattr(tokenizer, "_switch_to_input_mode"):
        return None
    backend = tokenizer.backend_tokenizer
    if backend.truncation is not None:
        backend.no_truncation()
    if backend.padding is not None:
        backend.no_padding()
    if backend.encode_special_tokens != tokenizer.split_special_tokens:
        backend.encode_special_tokens = tokenizer.split_special_tokens
    return backend


def _encode_many_with_spans(tokenizer: Any, texts: list[str],
                            spans: list[list[tuple[int, int]]]) -> list[tuple[list[int], list[int]]]:
    backend = _batch_backend(tokenizer) if texts else None
    if backend is None:
        return [_encode_with_spans(tokenizer, text, text_spans) for text, text_spans in zip(texts, spans)]
    return [_labels_from_offsets(enc.ids, enc.offsets, text_spans)
            for enc, text_spans in zip(backend.encode_batch(texts, add_special_tokens=False), spans)]


def _encode_with_spans(tokenizer: Any, text: str, spans: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return _labels_from_offsets(list(enc["input_ids"]), enc["offset_mapping"], spans)
    # Tokenizers without offsets: find each span's token boundaries by tokenizing the text up to it.
    def count(prefix: str) -> int:
        return len(tokenizer(prefix, add_special_tokens=False)["input_ids"]) if prefix else 0

    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    labels = [IGNORE_INDEX] * len(ids)
    for start, end in spans:
        for k in range(count(text[:start]), min(count(text[:end]), len(ids))):
            labels[k] = ids[k]
    return ids, labels


def encode_prompt(tokenizer: Any, messages: list[dict[str, str]], chat_template: str | None = None,
                  **template_kwargs: Any) -> list[int]:
    """Token ids that prompt the model for the next assistant turn, exactly as training rendered them.

    `template_kwargs` are further template variables (e.g. `enable_thinking=True`).
    """
    template = _template_for(tokenizer, chat_template)
    text = render_conversation(tokenizer, messages, add_generation_prompt=True, chat_template=template,
                               **template_kwargs)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def trained_segments(tokenizer: Any, input_ids: list[int], labels: list[int]) -> list[tuple[str, bool]]:
    """The example as text, cut into (text, trained) pieces: what `data check --show` marks."""
    segments: list[tuple[str, bool]] = []
    run: list[int] = []
    trained = None
    for token, label in zip(input_ids, labels):
        flag = label != IGNORE_INDEX
        if trained is not None and flag != trained:
            segments.append((tokenizer.decode(run), trained))
            run = []
        run.append(token)
        trained = flag
    if run:
        segments.append((tokenizer.decode(run), bool(trained)))
    return segments
