"""Built-in chat templates and `model.chat_template` resolution."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tui_tuner.config.schema import ModelConfig
from tui_tuner.chat_format.templates import (
    BUILTIN_TEMPLATES, CHATML, ChatTemplateError, render_conversation, resolve_chat_template,
)

CONV = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]


class FakeTokenizer(SimpleNamespace):
    """Just what templates read from a tokenizer: chat_template, bos_token, eos_token."""


def test_chatml_renders_exactly():
    assert render_conversation(CHATML, CONV) == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n")
    assert render_conversation(CHATML, CONV[:2], add_generation_prompt=True).endswith("<|im_start|>assistant\n")


def test_llama3_zephyr_alpaca_use_the_tokenizers_special_tokens():
    tok = FakeTokenizer(chat_template=None, bos_token="<|begin_of_text|>", eos_token="</s>")
    llama = render_conversation(tok, CONV, chat_template=BUILTIN_TEMPLATES["llama-3"])
    assert llama.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>")
    assert llama.endswith("<|start_header_id|>assistant<|end_header_id|>\n\nA<|eot_id|>")
    zephyr = render_conversation(tok, CONV, chat_template=BUILTIN_TEMPLATES["zephyr"])
    assert zephyr == "<|system|>\nS</s>\n<|user|>\nQ</s>\n<|assistant|>\nA</s>\n"
    alpaca = render_conversation(tok, CONV, chat_template=BUILTIN_TEMPLATES["alpaca"])
    assert alpaca == "S\n\n### Instruction:\nQ\n\n### Response:\nA</s>\n\n"
    assert render_conversation(tok, CONV[:2], True, chat_template=BUILTIN_TEMPLATES["alpaca"]).endswith(
        "### Response:\n")


def test_plain_text_example_renders_raw():
    assert render_conversation(CHATML, [{"role": "text", "content": "raw"}]) == "raw"


def test_resolve_auto_prefers_the_tokenizers_own_template():
    own = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    assert resolve_chat_template(ModelConfig(), FakeTokenizer(chat_template=own)) == own
    assert resolve_chat_template(ModelConfig(), FakeTokenizer(chat_template=None)) == CHATML
    assert resolve_chat_template(ModelConfig(), None) == CHATML


@pytest.mark.parametrize("name", list(BUILTIN_TEMPLATES))
def test_resolve_builtin_name(name):
    assert resolve_chat_template(ModelConfig(chat_template=name), None) == BUILTIN_TEMPLATES[name]


def test_resolve_custom_jinja_is_validated():
    good = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
    assert resolve_chat_template(ModelConfig(chat_template=good), None) == good
    with pytest.raises(ChatTemplateError, match="not valid Jinja"):
        resolve_chat_template(ModelConfig(chat_template="{% for m in messages %}{{ m['content'] }"), None)
    with pytest.raises(ChatTemplateError, match="failed to render"):
        resolve_chat_template(ModelConfig(chat_template="{{ messages[0]['content'] + 1 }}"), None)
    with pytest.raises(ChatTemplateError, match="drops the assistant message"):
        resolve_chat_template(ModelConfig(chat_template="{% for m in messages %}{% if m['role'] != 'assistant' %}"
                                                        "{{ m['content'] }}{% endif %}{% endfor %}"), None)


def test_template_that_refuses_system_messages_is_still_valid():
    strict = ("{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
              "{% for m in messages %}{{ m['content'] }}{% endfor %}")
    assert resolve_chat_template(ModelConfig(chat_template=strict), None) == strict
    with pytest.raises(ChatTemplateError, match="no system role"):
        render_conversation(strict, CONV)


def test_unknown_template_name_suggests():
    with pytest.raises(ChatTemplateError, match="(?i)did you mean `chatml`"):
        resolve_chat_template(SimpleNamespace(chat_template="chatlm"), None)
