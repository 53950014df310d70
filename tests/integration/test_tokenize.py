"""Loss masking with the real demo tokenizer: only assistant answers (and their end-of-turn) are trained."""

from __future__ import annotations

import pytest

from tui_tuner.data import IGNORE_INDEX, encode_prompt, load_dataset_file, tokenize_conversation
from tui_tuner.chat_format.templates import BUILTIN_TEMPLATES, CHATML, render_conversation

MULTI = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "How heavy is Bramble?"},
    {"role": "assistant", "content": "Bramble weighs 4 kilograms."},
    {"role": "user", "content": "And the tank?"},
    {"role": "assistant", "content": "It holds 2 litres, Grüße ✓."},
]


@pytest.fixture(scope="module")
def tokenizer(demo_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(demo_model_dir))


class NoOffsets:
    """The demo tokenizer without offset mapping, to exercise the piecewise path."""

    is_fast = False

    def __init__(self, tok):
        self._tok = tok

    def __getattr__(self, name):
        return getattr(self._tok, name)

    def __call__(self, text, add_special_tokens=True):
        return self._tok(text, add_special_tokens=add_special_tokens)


def trained_runs(enc):
    """Consecutive runs of trained token ids."""
    runs, current = [], []
    for token, label in zip(enc["input_ids"], enc["labels"]):
        if label != IGNORE_INDEX:
            assert label == token
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return runs


@pytest.mark.parametrize("wrap", [False, True], ids=["offsets", "piecewise"])
def test_only_assistant_answers_and_end_of_turn_are_trained(tokenizer, wrap):
    tok = NoOffsets(tokenizer) if wrap else tokenizer
    enc = tokenize_conversation(tok, MULTI, 512, completion_only_loss=True)
    id_runs = trained_runs(enc)
    runs = [tokenizer.decode(run) for run in id_runs]
    assert runs == ["Bramble weighs 4 kilograms.<|im_end|>", "It holds 2 litres, Grüße ✓.<|im_end|>"]
    assert not enc["truncated"] and enc["length"] == len(enc["input_ids"])
    assert enc["trained_tokens"] == sum(map(len, id_runs))
    # the whole sequence is exactly the rendered template, no extra BOS
    assert tokenizer.decode(enc["input_ids"]) == render_conversation(tokenizer, MULTI)


def test_offsets_path_matches_whole_text_tokenization(tokenizer):
    enc = tokenize_conversation(tokenizer, MULTI, 512, completion_only_loss=True)
    assert enc["input_ids"] == tokenizer(render_conversation(tokenizer, MULTI), add_special_tokens=False)["input_ids"]


def test_prompt_for_generation_is_the_training_prefix(tokenizer):
    enc = tokenize_conversation(tokenizer, MULTI[:3], 512, completion_only_loss=True)
    prompt = encode_prompt(tokenizer, MULTI[:2])
    assert enc["input_ids"][: len(prompt)] == prompt
    assert all(label == IGNORE_INDEX for label in enc["labels"][: len(prompt)])
    assert enc["labels"][len(prompt)] != IGNORE_INDEX


def test_full_loss_trains_every_token(tokenizer):
    enc = tokenize_conversation(tokenizer, MULTI, 512, completion_only_loss=False)
    assert enc["labels"] == enc["input_ids"]


def test_truncation_is_reported(tokenizer):
    full = tokenize_conversation(tokenizer, MULTI, 512, completion_only_loss=True)
    cut = tokenize_conversation(tokenizer, MULTI, 20, completion_only_loss=True)
    assert cut["truncated"] and cut["length"] == full["length"] and len(cut["input_ids"]) == 20
    assert cut["input_ids"] == full["input_ids"][:20] and cut["trained_tokens"] == 0


def test_plain_text_is_trained_whole_and_ends_with_eos(tokenizer):
    enc = tokenize_conversation(tokenizer, [{"role": "text", "content": "Bramble is green."}], 64, True)
    assert enc["input_ids"][-1] == tokenizer.eos_token_id and enc["labels"] == enc["input_ids"]
    assert tokenizer.decode(enc["input_ids"], skip_special_tokens=True) == "Bramble is green."


@pytest.mark.parametrize("name", ["llama-3", "zephyr", "alpaca"])
def test_builtin_templates_mask_exactly(tokenizer, name):
    enc = tokenize_conversation(tokenizer, MULTI, 512, True, chat_template=BUILTIN_TEMPLATES[name])
    runs = [tokenizer.decode(run) for run in trained_runs(enc)]
    end = "<|eot_id|>" if name == "llama-3" else tokenizer.eos_token
    assert runs == ["Bramble weighs 4 kilograms." + end, "It holds 2 litres, Grüße ✓." + end]


def test_template_that_rewrites_earlier_turns(tokenizer):
    # drops earlier assistant turns' thinking blocks, as some reasoning models' templates do
    template = (CHATML.replace("message['content']",
                               "(message['content'].split('</think>')[-1].lstrip() if not loop.last "
                               "else message['content'])"))
    conv = [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "<think>\nr\n</think>\n\nA1"},
            {"role": "user", "content": "Q2"}, {"role": "assistant", "content": "<think>\ns\n</think>\n\nA2"}]
    enc = tokenize_conversation(tokenizer, conv, 512, True, chat_template=template)
    runs = [tokenizer.decode(run) for run in trained_runs(enc)]
    assert runs == ["A1<|im_end|>", "<think>\ns\n</think>\n\nA2<|im_end|>"]


def test_sample_dataset_fits_the_quickstart_length(tokenizer):
    load = load_dataset_file("data/sample.jsonl")
    for conv in load.examples:
        enc = tokenize_conversation(tokenizer, conv, 256, True)
        assert not enc["truncated"] and enc["trained_tokens"] > 0
        answer = tokenizer.decode([t for t, lab in zip(enc["input_ids"], enc["labels"]) if lab != IGNORE_INDEX])
        assert answer == conv[-1]["content"] + "<|im_end|>"
