"""Chat templates: the one place a conversation becomes model text.

Training, chat, eval and export all call `resolve_chat_template` and
`render_conversation`, so a model is always prompted the way it was trained.

    from tui_tuner.chat_format.templates import resolve_chat_template, render_conversation
    template = resolve_chat_template(cfg.model, tokenizer)
    text = render_conversation(template, messages, add_generation_prompt=True)

Built-in templates (for tokenizers that ship none): chatml, llama-3, zephyr, alpaca.
`model.chat_template: auto` uses the tokenizer's own template, else chatml.
"""

from __future__ import annotations

import difflib
from typing import Any

CHATML = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

LLAMA_3 = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + (message['content'] | trim) + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)

ZEPHYR = (
    "{%- for message in messages %}"
    "{{- '<|' + message['role'] + '|>\\n' + message['content'] + eos_token + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|assistant|>\\n' }}{%- endif %}"
)

ALPACA = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' %}{{- message['content'] + '\\n\\n' }}"
    "{%- elif message['role'] == 'user' %}{{- '### Instruction:\\n' + message['content'] + '\\n\\n' }}"
    "{%- elif message['role'] == 'assistant' %}{{- '### Response:\\n' + message['content'] + eos_token + '\\n\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '### Response:\\n' }}{%- endif %}"
)

BUILTIN_TEMPLATES: dict[str, str] = {"chatml": CHATML, "llama-3": LLAMA_3, "zephyr": ZEPHYR, "alpaca": ALPACA}
"""Name -> Jinja source of each built-in template."""

SAMPLE_CONVERSATION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is Bramble?"},
    {"role": "assistant", "content": "A garden robot."},
    {"role": "user", "content": "How heavy is it?"},
    {"role": "assistant", "content": "4 kilograms."},
]
"""Rendered to validate a template before it is used for a whole run."""

_DEFAULT_BOS = "<s>"
_DEFAULT_EOS = "</s>"


class ChatTemplateError(ValueError):
    """A chat template that cannot be used: unknown name, Jinja syntax error, or fails to render."""


def _raise_exception(message: str) -> None:
    raise ChatTemplateError(message)


def _compile(source: str):
    # The same Jinja settings as transformers' apply_chat_template, so a template renders
    # identically with or without a tokenizer.
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = _raise_exception
    try:
        return env.from_string(source)
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)
        where = f" (template line {line})" if line else ""
        raise ChatTemplateError(f"the chat template is not valid Jinja{where}: {exc}") from exc


def _special(tokenizer: Any, name: str, default: str) -> str:
    value = getattr(tokenizer, name, None) if tokenizer is not None else None
    return str(value) if value else default


def render_template(source: str, messages: list[dict[str, str]], add_generation_prompt: bool = False,
                    *, bos_token: str = _DEFAULT_BOS, eos_token: str = _DEFAULT_EOS) -> str:
    """Render a Jinja chat template string without a tokenizer."""
    from jinja2.exceptions import TemplateError

    template = _compile(source)
    try:
        return template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                               bos_token=bos_token, eos_token=eos_token)
    except ChatTemplateError:
        raise
    except (TemplateError, TypeError, KeyError, AttributeError, ValueError, IndexError, ArithmeticError,
            RecursionError) as exc:  # ArithmeticError: range(10**8) is an OverflowError in the sandbox
        raise ChatTemplateError(f"the chat template failed to render a conversation: {exc}") from exc


def render_conversation(tokenizer_or_template: Any, messages: list[dict[str, str]],
                        add_generation_prompt: bool = False, *, chat_template: str | None = None) -> str:
    """The text a model sees for `messages`.

    `tokenizer_or_template` is a tokenizer (its own template, or `chat_template` when given,
    with its bos/eos tokens) or a Jinja template string. A plain-text example (one message
    with role `text`, see `tui_tuner.data`) is returned as its raw text.
    """
    if len(messages) == 1 and messages[0].get("role") == "text":
        return messages[0]["content"]
    if isinstance(tokenizer_or_template, str):
        return render_template(tokenizer_or_template, messages, add_generation_prompt)
    tokenizer = tokenizer_or_template
    source = chat_template or getattr(tokenizer, "chat_template", None)
    if not source:
        raise ChatTemplateError("the tokenizer has no chat template; pass one (see resolve_chat_template).")
    if isinstance(source, dict):  # some tokenizers keep several named templates
        source = source.get("default") or next(iter(source.values()))
    return render_template(source, messages, add_generation_prompt,
                           bos_token=_special(tokenizer, "bos_token", ""),
                           eos_token=_special(tokenizer, "eos_token", _DEFAULT_EOS))


def tokenizer_template(tokenizer: Any) -> str | None:
    """The tokenizer's own chat template source, or None when it has none."""
    source = getattr(tokenizer, "chat_template", None) if tokenizer is not None else None
    if isinstance(source, dict):
        source = source.get("default") or next(iter(source.values()), None)
    return source or None


def resolve_chat_template(model_cfg: Any, tokenizer: Any = None) -> str:
    """The Jinja source to use for a run, from `model.chat_template`.

    `auto` -> the tokenizer's own template, else chatml; a built-in name -> that template;
    anything else is taken as a Jinja template and validated by rendering a sample
    conversation. Raises `ChatTemplateError` with what to do when it cannot be used.
    """
    choice = getattr(model_cfg, "chat_template", model_cfg) if model_cfg is not None else "auto"
    choice = choice or "auto"
    if choice == "auto":
        source = tokenizer_template(tokenizer) or CHATML
    elif choice in BUILTIN_TEMPLATES:
        source = BUILTIN_TEMPLATES[choice]
    elif "{{" in choice or "{%" in choice:
        source = choice
    else:
        close = difflib.get_close_matches(choice, list(BUILTIN_TEMPLATES), n=1)
        hint = f" Did you mean `{close[0]}`?" if close else ""
        raise ChatTemplateError(f"`model.chat_template: {choice}` is neither `auto`, a built-in template "
                                f"({', '.join(BUILTIN_TEMPLATES)}) nor a Jinja template.{hint}")
    validate_template(source, tokenizer)
    return source


def validate_template(source: str, tokenizer: Any = None) -> None:
    """Raise `ChatTemplateError` unless `source` renders a sample conversation with every message's text.

    Templates that refuse a system message (some do, with `raise_exception`) are tried
    again without one.
    """
    kwargs = {"bos_token": _special(tokenizer, "bos_token", _DEFAULT_BOS),
              "eos_token": _special(tokenizer, "eos_token", _DEFAULT_EOS)}
    sample = SAMPLE_CONVERSATION
    try:
        rendered = render_template(source, sample, **kwargs)
    except ChatTemplateError:
        sample = SAMPLE_CONVERSATION[1:]
        rendered = render_template(source, sample, **kwargs)
    for message in sample:
        if message["content"] not in rendered:
            raise ChatTemplateError(f"the chat template drops the {message['role']} message "
                                    f"{message['content']!r} from the rendered text; it must render every "
                                    "message's content.")
