"""tui-tuner's renderer and transformers' `apply_chat_template` render real templates byte for byte.

The templates are the ones model authors ship: trl's copies (in its package) and llama.cpp's
(models/templates in the llama-cpp-python sdist). Every (template, conversation) pair that
transformers renders without tools must render identically here, `{% generation %}` spans included.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tui_tuner.chat_format.templates import ChatTemplateError, has_generation_tags, render_with_spans

SYSTEM = {"role": "system", "content": "You are terse."}
TURNS = [
    {"role": "user", "content": "What is Bramble?"},
    {"role": "assistant", "content": "A garden robot."},
    {"role": "user", "content": "How heavy is it? <b>&</b> \"quotes\""},
    {"role": "assistant", "content": "4 kilograms."},
]
CONVERSATIONS = {
    "system+multi-turn": ([SYSTEM, *TURNS], False),
    "multi-turn": (TURNS, False),
    "prompt": ([SYSTEM, TURNS[0]], True),
    "reasoning": ([TURNS[0], {"role": "assistant", "content": "<think>\nIt is a robot.\n</think>\n\nA robot."},
                   TURNS[2], TURNS[3]], False),
}
SPECIAL = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}


def _trl_templates() -> list[Path]:
    import trl

    return sorted((Path(trl.__file__).parent / "chat_templates").glob("*.jinja"))


def _transformers_render(source: str, messages, add_generation_prompt: bool):
    from transformers.utils.chat_template_utils import render_jinja_template

    tracked = has_generation_tags(source)
    rendered, spans = render_jinja_template(conversations=[messages], chat_template=source,
                                            add_generation_prompt=add_generation_prompt,
                                            return_assistant_tokens_mask=tracked, **SPECIAL)
    return rendered[0], [tuple(s) for s in spans[0]] if tracked else []


def _compare(paths: list[Path]) -> tuple[int, list[str]]:
    compared, failures = 0, []
    for path in paths:
        source = path.read_text(encoding="utf-8")
        for name, (messages, prompt) in CONVERSATIONS.items():
            try:
                expected = _transformers_render(source, messages, prompt)
            except Exception:  # noqa: BLE001 - transformers refuses it too (tools needed, roles rejected, ...)
                continue
            try:
                got = render_with_spans(source, messages, prompt, **SPECIAL)
            except ChatTemplateError as exc:
                failures.append(f"{path.name} [{name}]: only tui-tuner fails: {exc}")
                continue
            compared += 1
            if got != expected:
                at = next((i for i, (a, b) in enumerate(zip(got[0], expected[0])) if a != b),
                          min(len(got[0]), len(expected[0])))
                failures.append(f"{path.name} [{name}]: differs at char {at}: ours {got[0][at:at + 40]!r} vs "
                                f"transformers {expected[0][at:at + 40]!r}; spans {got[1]} vs {expected[1]}")
    return compared, failures


def test_trl_templates_render_identically():
    paths = _trl_templates()
    assert len(paths) >= 60, "trl's chat_templates folder moved"
    compared, failures = _compare(paths)
    assert not failures, "\n".join(failures)
    assert compared >= 4 * 50  # nearly every template renders every conversation


def test_llama_cpp_templates_render_identically(llama_cpp_models):
    paths = sorted((llama_cpp_models / "templates").glob("*.jinja"))
    assert len(paths) >= 60
    compared, failures = _compare(paths)
    assert not failures, "\n".join(failures)
    assert compared >= 2 * 50


def test_generation_tags_give_the_assistant_spans():
    source = ("{% for m in messages %}<{{ m['role'] }}>{% if m['role'] == 'assistant' %}{% generation %}"
              "{{ m['content'] }}</s>{% endgeneration %}{% else %}{{ m['content'] }}{% endif %}{% endfor %}")
    text, spans = render_with_spans(source, TURNS[:2])
    assert [text[a:b] for a, b in spans] == ["A garden robot.</s>"]


def test_compiled_templates_are_reused():
    from tui_tuner.chat_format.templates import compile_template

    source = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    assert compile_template(source) is compile_template(source)


@pytest.mark.parametrize("family", ["llama3", "qwen2.5", "phi3", "gemma"])
def test_real_tokenizers_render_as_apply_chat_template(real_tokenizer, family):
    from tui_tuner.chat_format.templates import render_conversation

    tokenizer = real_tokenizer(family)
    for messages, prompt in CONVERSATIONS.values():
        try:
            expected = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=prompt)
        except Exception:  # noqa: BLE001 - the template refuses this conversation in transformers too
            continue
        assert render_conversation(tokenizer, messages, prompt) == expected
