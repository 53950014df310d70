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
import json
import re
from contextvars import ContextVar
from datetime import datetime
from functools import lru_cache
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
_SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")
_PLAIN_KEYS = {"role", "content"}


class ChatTemplateError(ValueError):
    """A chat template that cannot be used: unknown name, Jinja syntax error, or fails to render.

    `raised_by_template` is True when the template itself refused the conversation with
    `raise_exception(...)` (e.g. "System role not supported"); the message is then the template's.
    """

    def __init__(self, message: str, *, raised_by_template: bool = False):
        super().__init__(message)
        self.raised_by_template = raised_by_template


def _raise_exception(message: str) -> None:
    raise ChatTemplateError(str(message), raised_by_template=True)


def _tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None,
            sort_keys: bool = False) -> str:
    # transformers' filter: Jinja's own escapes HTML characters, which no chat template wants
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


@lru_cache(maxsize=1)
def _environment():
    """The Jinja environment transformers' `apply_chat_template` uses, rebuilt here so rendering needs no torch.

    Same settings (sandboxed, trim_blocks, lstrip_blocks, loop controls), globals (`raise_exception`,
    `strftime_now`, a restricted `dict` and `namespace`), `tojson` filter and `{% generation %}` tag;
    tests/integration/test_template_parity.py renders real templates through both, byte for byte.
    """
    import jinja2
    from jinja2.ext import Extension
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationTracker(Extension):
        """`{% generation %}...{% endgeneration %}`: records where each generated (assistant) block lands."""

        tags = {"generation"}

        def __init__(self, environment):
            super().__init__(environment)
            environment.extend(generation_spans=_GENERATION_SPANS)

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_track"), [], [], body).set_lineno(lineno)

        def _track(self, caller):
            text = caller()
            tracking = _GENERATION_SPANS.get()
            if tracking is not None:
                blocks, spans = tracking
                start = sum(len(b) for b in blocks)
                spans.append((start, start + len(text)))
            return text

    class TemplateDict:
        # no attribute access to dict's internals from a template
        def __call__(self, *args, **kwargs):
            return dict(*args, **kwargs)

        def fromkeys(self, *args, **kwargs):
            return dict.fromkeys(*args, **kwargs)

    class TemplateNamespace(jinja2.utils.Namespace):
        # namespaces reject dunder attributes, as in transformers
        def __init__(*args, **kwargs):
            self, args = args[0], args[1:]
            attrs = dict(*args, **kwargs)
            for name in attrs:
                TemplateNamespace._check_name(name)
            jinja2.utils.Namespace.__init__(self, attrs)

        def __setitem__(self, name, value):
            TemplateNamespace._check_name(name)
            jinja2.utils.Namespace.__setitem__(self, name, value)

        @staticmethod
        def _check_name(name):
            if isinstance(name, str) and name.startswith("_"):
                raise jinja2.exceptions.SecurityError(f"a chat template cannot set {name!r} on a namespace")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTracker, "jinja2.ext.loopcontrols"])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["dict"] = TemplateDict()
    env.globals["namespace"] = TemplateNamespace
    return env


_GENERATION_SPANS: ContextVar[tuple[list[str], list[tuple[int, int]]] | None] = ContextVar(
    "tui_tuner_generation_spans", default=None)


@lru_cache(maxsize=64)
def compile_template(source: str):
    """The compiled template for `source`, compiled once per process (compiling costs far more than rendering)."""
    from jinja2.exceptions import TemplateError

    try:
        return _environment().from_string(source)
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)
        where = f" (template line {line})" if line else ""
        raise ChatTemplateError(f"the chat template is not valid Jinja{where}: {exc}") from exc


@lru_cache(maxsize=64)
def _render_parts(source: str) -> tuple[Any, dict[str, Any]]:
    """The compiled template and its globals as one plain dict, built once per template.

    Jinja's own `generate` merges the globals (a ChainMap) into every render's context: for a
    short conversation that merge costs as much as the rendering itself.
    """
    template = compile_template(source)
    return template, dict(template.globals)


@lru_cache(maxsize=1)
def _template_error_class() -> type[Exception]:
    from jinja2.exceptions import TemplateError

    return TemplateError


@lru_cache(maxsize=64)
def has_generation_tags(source: str) -> bool:
    """True when the template marks assistant text with `{% generation %}` (trl's training templates do)."""
    return re.search(r"\{%-?\s*generation\s*-?%\}", source) is not None


def _special(tokenizer: Any, name: str, default: str) -> str:
    value = getattr(tokenizer, name, None) if tokenizer is not None else None
    return str(value) if value else default


def special_token_kwargs(tokenizer: Any) -> dict[str, str]:
    """The special tokens a template sees for `tokenizer`: transformers passes its special_tokens_map."""
    if tokenizer is None:
        return {}
    mapping = getattr(tokenizer, "special_tokens_map", None)
    if isinstance(mapping, dict):
        return {k: str(v) for k, v in mapping.items() if isinstance(v, str)}
    return {name: str(getattr(tokenizer, name)) for name in _SPECIAL_TOKEN_NAMES if getattr(tokenizer, name, None)}


def _template_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages as transformers hands them to a template: None values dropped, reasoning under its usual names."""
    if all(m.keys() == _PLAIN_KEYS and m["content"] is not None and m["role"] is not None for m in messages):
        return messages  # nothing to drop or rename (the sandbox keeps the template from changing them)
    out = []
    for message in messages:
        message = {k: v for k, v in message.items() if v is not None}
        reasoning = next((message[k] for k in _REASONING_FIELDS if message.get(k) is not None), None)
        if reasoning is not None:
            message = {"thinking": reasoning, **message, "reasoning_content": reasoning}
        out.append(message)
    return out


def render_with_spans(source: str, messages: list[dict[str, Any]], add_generation_prompt: bool = False,
                      **kwargs: Any) -> tuple[str, list[tuple[int, int]]]:
    """Render like `render_template`, also returning the character spans of `{% generation %}` blocks."""
    template, template_globals = _render_parts(source)
    TemplateError = _template_error_class()
    blocks: list[str] = []
    spans: list[tuple[int, int]] = []
    token = _GENERATION_SPANS.set((blocks, spans))
    variables = {**template_globals, "tools": kwargs.pop("tools", None), "documents": kwargs.pop("documents", None),
                 **kwargs, "messages": _template_messages(messages), "add_generation_prompt": add_generation_prompt}
    # What `Template.generate` does, with the globals merged once (see `_render_parts`)
    environment = template.environment
    context = environment.context_class(environment, variables, template.name, template.blocks,
                                        globals=template_globals)
    try:
        try:
            for block in template.root_render_func(context):
                blocks.append(block)
        except Exception:  # noqa: BLE001 - re-raised by Jinja with the template's own line numbers
            environment.handle_exception()
    except ChatTemplateError:
        raise
    except (TemplateError, TypeError, KeyError, AttributeError, ValueError, IndexError, ArithmeticError,
            RecursionError) as exc:  # ArithmeticError: range(10**8) is an OverflowError in the sandbox
        raise ChatTemplateError(f"the chat template failed to render a conversation: {exc}") from exc
    finally:
        _GENERATION_SPANS.reset(token)
    return "".join(blocks), spans


def render_template(source: str, messages: list[dict[str, Any]], add_generation_prompt: bool = False,
                    *, bos_token: str = _DEFAULT_BOS, eos_token: str = _DEFAULT_EOS, **kwargs: Any) -> str:
    """Render a Jinja chat template string as transformers' `apply_chat_template(tokenize=False)` does.

    `kwargs` are further template variables (other special tokens, `enable_thinking`, `tools`, ...).
    """
    return render_with_spans(source, messages, add_generation_prompt, bos_token=bos_token, eos_token=eos_token,
                             **kwargs)[0]


def _source_for(tokenizer: Any, chat_template: str | None) -> str:
    source = chat_template or getattr(tokenizer, "chat_template", None)
    if not source:
        raise ChatTemplateError("the tokenizer has no chat template; pass one (see resolve_chat_template).")
    if isinstance(source, dict):  # some tokenizers keep several named templates
        source = source.get("default") or next(iter(source.values()))
    return source


PROMPT_ROLE, COMPLETION_ROLE = "prompt", "completion"
"""Roles of a plain-text prompt/completion example (trl's standard, non-conversational form): no chat template."""


def _adds_bos(tokenizer: Any) -> bool:
    """Whether the tokenizer puts BOS before plain text (Llama 3 does through its post-processor, Qwen does not)."""
    bos_id = getattr(tokenizer, "bos_token_id", None)
    if bos_id is None or not callable(tokenizer):
        return False
    try:
        ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    except (TypeError, ValueError, KeyError):
        return False
    return bool(ids) and ids[0] == bos_id


def _render_plain(tokenizer: Any, messages: list[dict[str, Any]], add_generation_prompt: bool) -> tuple[str, list]:
    """A plain prompt/completion example: the prompt, then the completion, as-is.

    The BOS token is written into the text when the tokenizer adds one to plain text, so the
    text tokenized without special tokens (as chat and training do) matches the plain encoding.
    """
    bos = getattr(tokenizer, "bos_token", None) if not isinstance(tokenizer, str) else None
    text = (bos if bos and _adds_bos(tokenizer) else "") + messages[0]["content"]
    completion = next((m["content"] for m in messages[1:] if m.get("role") == COMPLETION_ROLE), None)
    if completion is not None and not add_generation_prompt:
        start = len(text)
        return text + completion, [(start, start + len(completion))]
    return text, []


def render_conversation(tokenizer_or_template: Any, messages: list[dict[str, Any]],
                        add_generation_prompt: bool = False, *, chat_template: str | None = None,
                        **kwargs: Any) -> str:
    """The text a model sees for `messages`.

    `tokenizer_or_template` is a tokenizer (its own template, or `chat_template` when given,
    with its special tokens, exactly as `apply_chat_template` passes them) or a Jinja template
    string. A plain-text example (one message with role `text`, see `tui_tuner.data`) is returned
    as its raw text, and a plain prompt/completion example (roles `prompt`, `completion`) as the
    prompt followed by the completion. `kwargs` are further template variables (e.g. `enable_thinking=False`).
    """
    return render_conversation_with_spans(tokenizer_or_template, messages, add_generation_prompt,
                                          chat_template=chat_template, **kwargs)[0]


def render_conversation_with_spans(tokenizer_or_template: Any, messages: list[dict[str, Any]],
                                   add_generation_prompt: bool = False, *, chat_template: str | None = None,
                                   **kwargs: Any) -> tuple[str, list[tuple[int, int]]]:
    """`render_conversation` plus the spans of the template's `{% generation %}` blocks (empty without them)."""
    if len(messages) == 1 and messages[0].get("role") == "text":
        return messages[0]["content"], []
    if messages and messages[0].get("role") == PROMPT_ROLE:
        return _render_plain(tokenizer_or_template, messages, add_generation_prompt)
    if isinstance(tokenizer_or_template, str):
        return render_with_spans(tokenizer_or_template, messages, add_generation_prompt,
                                 **{"bos_token": _DEFAULT_BOS, "eos_token": _DEFAULT_EOS, **kwargs})
    tokenizer = tokenizer_or_template
    return render_with_spans(_source_for(tokenizer, chat_template), messages, add_generation_prompt,
                             **{**special_token_kwargs(tokenizer), **kwargs})


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
