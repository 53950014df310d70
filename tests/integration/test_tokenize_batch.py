"""Batched tokenizing (`tokenize_conversations`, what data check and train's preflight use) gives
exactly the ids and labels of tokenizing each conversation alone, on real tokenizers and the real
chat templates their models ship, whatever state the tokenizer was left in."""

from __future__ import annotations

import random

import pytest

from tui_tuner.chat_format.templates import CHATML, ChatTemplateError
from tui_tuner.data.report import tokenize_many_within_budget, tokenize_within_budget
from tui_tuner.data.tokenize import _batch_backend, tokenize_conversation, tokenize_conversations

SYSTEM = {"role": "system", "content": "Answer briefly."}
PIECES = ["Bramble", " weighs", " 4 kg", ".", " Grüße", " ✓", " 水の量", " 🌱🌱", "\n\n", "  ", "<think>", "</think>",
          " <|im_end|>", "<|eot_id|>", " é", "\t", "0.5", "ĠHello", "▁x"]


def conversations(seed: int, n: int) -> list[list[dict]]:
    rng = random.Random(seed)

    def text() -> str:
        return "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 12))).strip() or "x"

    out = []
    for i in range(n):
        turns = [SYSTEM] if i % 3 == 0 else []
        for _ in range(rng.randint(1, 3)):
            turns += [{"role": "user", "content": text()}, {"role": "assistant", "content": text()}]
        if i % 7 == 0:
            turns[-1] = {**turns[-1], "content": f"<think>\n{text()}\n</think>\n\n{text()}"}
        if i % 11 == 0:
            turns[-1] = {**turns[-1], "content": " " + turns[-1]["content"] + "\n"}
        out.append(turns)
    out.append([{"role": "text", "content": "Plain text, every token trained."}])
    out.append([{"role": "prompt", "content": "Bramble is"}, {"role": "completion", "content": " a garden robot."}])
    out.append([{"role": "user", "content": "A private-use character \ue001 in the text"},
                {"role": "assistant", "content": "is rendered turn by turn."}])
    return out


@pytest.mark.parametrize("family", ["llama3", "qwen2.5", "phi3", "gemma"])
def test_batch_equals_one_by_one_with_the_model_template(real_tokenizer, family):
    tokenizer = real_tokenizer(family)
    assert _batch_backend(tokenizer) is not None  # the batch goes straight to the tokenizers backend
    convs = conversations(seed=len(family), n=60)
    tokenizer(["left with truncation and padding"], truncation=True, max_length=3, padding="max_length")
    batched = tokenize_conversations(tokenizer, convs, 64, completion_only_loss=True)
    alone = [tokenize_conversation(tokenizer, c, 64, completion_only_loss=True) for c in convs]
    assert batched == alone
    assert any(e["truncated"] for e in alone) and any(not e["truncated"] for e in alone)
    assert all(e["trained_tokens"] > 0 for e in alone if not e["truncated"])
    whole = tokenize_conversations(tokenizer, convs[:5], 64, completion_only_loss=False)
    assert [e["labels"] for e in whole] == [e["input_ids"] for e in whole]


def test_a_refused_conversation_is_its_error_and_the_others_are_unchanged(real_tokenizer):
    tokenizer = real_tokenizer("qwen2.5")
    refusing = CHATML.replace(
        "{%- for message in messages %}",
        "{%- for message in messages %}{% if message['content'] == 'refuse' %}{{ raise_exception('no') }}{% endif %}",
        1)
    assert refusing != CHATML
    convs = conversations(seed=3, n=6)
    bad = [{"role": "user", "content": "refuse"}, {"role": "assistant", "content": "x"}]
    batched = tokenize_conversations(tokenizer, [*convs[:3], bad, *convs[3:]], 128, True, refusing)
    assert isinstance(batched[3], ChatTemplateError)
    assert batched[:3] + batched[4:] == [tokenize_conversation(tokenizer, c, 128, True, refusing) for c in convs]


def test_long_messages_are_cut_and_estimated_alike_in_a_batch(real_tokenizer):
    tokenizer = real_tokenizer("llama3")
    long = [{"role": "user", "content": "word " * 30_000}, {"role": "assistant", "content": "short"}]
    short = conversations(seed=5, n=2)
    batched = tokenize_many_within_budget(tokenizer, [short[0], long, short[1]], 256, True, None)
    assert [estimated for _, estimated in batched] == [False, True, False]
    assert batched[1] == tokenize_within_budget(tokenizer, long, 256, True, None)
    assert batched[1][0]["length"] > 20_000 and batched[1][0]["truncated"]
