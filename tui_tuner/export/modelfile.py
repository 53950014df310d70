"""The Ollama `Modelfile` for an exported GGUF, with the run's own chat template.

Ollama prompts a model through a Go template, not the Jinja chat template the model was
trained with. Rather than translate Jinja (impossible in general), we *measure* the
template: render probe conversations with marker texts, read off each role's prefix and
suffix, emit an equivalent Go template, and then verify it by rendering several
conversations both ways (Jinja, and the Go template through `render_go_template`, a small
faithful interpreter for the subset we emit). A template that cannot be expressed as
per-role prefix/suffix (e.g. one that changes earlier turns depending on later ones) is
refused with `ModelfileError` instead of being exported wrong.

    fmt = turn_format(render)            # render(messages, add_generation_prompt) -> text
    text = modelfile_text("model-f16.gguf", fmt, eos_token="</s>")
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Callable, Sequence

Render = Callable[[list[dict[str, str]], bool], str]

_MARK = {"system": "qSYSq", "user1": "qUSRaq", "assistant1": "qASTaq", "user2": "qUSRbq",
         "assistant2": "qASTbq", "user3": "qUSRcq"}


class ModelfileError(ValueError):
    """The chat template cannot be written as an Ollama template (says why)."""


@dataclass
class TurnFormat:
    """How a chat template wraps each message: prefix + content + suffix, per role."""

    head: str
    """Text rendered once at the start (the BOS token); llama.cpp adds it itself, so Ollama's template omits it."""
    system: tuple[str, str] | None
    """(prefix, suffix) of a system message, None when the template refuses system messages."""
    user: tuple[str, str]
    assistant: tuple[str, str]
    generation_prompt: str
    """Appended after the last message to cue the assistant's answer."""
    default_system: str | None = None
    """System text the template inserts when the conversation has none (becomes Modelfile SYSTEM)."""
    ending: str = ""
    """Text closing a conversation that asks for no answer (Phi-3.5 writes EOS there); never in a prompt."""

    def render(self, messages: Sequence[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The prompt this format gives (without `head`), the way Ollama renders it."""
        out = []
        msgs = list(messages)
        if self.default_system is not None and not any(m["role"] == "system" for m in msgs):
            msgs.insert(0, {"role": "system", "content": self.default_system})
        for m in msgs:
            prefix, suffix = self.wrapper(m["role"])
            out.append(prefix + m["content"] + suffix)
        out.append(self.generation_prompt if add_generation_prompt else self.ending)
        return "".join(out)

    def wrapper(self, role: str) -> tuple[str, str]:
        if role == "system":
            if self.system is None:
                raise ModelfileError("this chat template does not accept a system message")
            return self.system
        if role == "user":
            return self.user
        if role == "assistant":
            return self.assistant
        raise ModelfileError(f"unknown role {role!r}")

    def stop_sequences(self, eos_token: str | None = None) -> list[str]:
        """Texts that end the assistant's turn: its end-of-turn marker, EOS, and the next user header."""
        stops = []
        for text in (self.assistant[1].strip(), eos_token or "", self.user[0].strip()):
            if text and text not in stops:
                stops.append(text)
        return stops


def _between(text: str, marks: list[str]) -> list[str]:
    """Split `text` at each marker in order; every marker must appear exactly once."""
    pieces = []
    rest = text
    for mark in marks:
        if rest.count(mark) != 1:
            raise ModelfileError("the chat template changes or repeats message text (e.g. trims, "
                                 "capitalizes or duplicates it), so it has no fixed per-message wrapping")
        before, _, rest = rest.partition(mark)
        pieces.append(before)
    pieces.append(rest)
    return pieces


def _try(render: Render, messages: list[dict[str, str]], gen: bool) -> str | None:
    try:
        return render(messages, gen)
    except Exception:  # noqa: BLE001 - a template may refuse a conversation shape (raise_exception)
        return None


def _probe_conversations(with_system: bool) -> list[list[dict[str, str]]]:
    base = [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4."},
            {"role": "user", "content": "Thanks"}]
    shapes = (base[:1], base[:2], base[:3], base[:4], base)
    convs = list(shapes)
    if with_system:
        convs += [[{"role": "system", "content": "You are terse."}] + c for c in shapes]
    return convs


def turn_format(render: Render, bos_token: str = "", eos_token: str = "") -> TurnFormat:
    """Measure a chat template (through `render`) as per-role prefixes and suffixes, then verify.

    Raises `ModelfileError` when no prefix/suffix format reproduces the template exactly.
    """
    for fmt in _candidates(render, bos_token, eos_token):
        if _verifies(fmt, render, with_system=fmt.system is not None):
            return fmt
    raise ModelfileError("the chat template cannot be written as per-message prefixes and suffixes "
                         "(it formats some turns depending on others)")


def _user_suffix_splits(closed: str, opened: str, eos_token: str) -> list[int]:
    """Where the user suffix may end in `closed` (after the last user message, no answer asked for).

    Usually `opened` (the same with the answer cue) starts with all of `closed`. Some templates
    (Phi-3.5) end a conversation that asks for no answer with the EOS token instead: then the
    suffix is shorter and the rest of `closed` is that ending. Every candidate is verified later.
    """
    splits = []
    if opened.startswith(closed):
        splits.append(len(closed))
    if eos_token and closed.endswith(eos_token) and opened.startswith(closed[: len(closed) - len(eos_token)]):
        splits.append(len(closed) - len(eos_token))
    common = 0
    while common < min(len(closed), len(opened)) and closed[common] == opened[common]:
        common += 1
    splits += [n for n in range(common, -1, -1) if n not in splits]
    return splits


def _candidates(render: Render, bos_token: str, eos_token: str):
    m = _MARK
    user1, asst1, user2 = ({"role": "user", "content": m["user1"]}, {"role": "assistant", "content": m["assistant1"]},
                           {"role": "user", "content": m["user2"]})
    only_user = _try(render, [user1], False)
    only_user_gen = _try(render, [user1], True)
    no_sys = _try(render, [user1, asst1, user2], True)
    if only_user is None or only_user_gen is None or no_sys is None:
        raise ModelfileError("the chat template fails to render a plain user/assistant conversation")
    with_sys = _try(render, [{"role": "system", "content": m["system"]}, user1, asst1, user2], True)

    c0, closed = _between(only_user, [m["user1"]])
    d0, opened = _between(only_user_gen, [m["user1"]])
    if d0 != c0:
        raise ModelfileError("the chat template renders the last user message differently when it asks for an answer")
    for n in _user_suffix_splits(closed, opened, eos_token):
        yield from _formats_for(closed[:n], opened[n:], closed[n:], no_sys, with_sys, bos_token)


def _formats_for(user_suffix: str, generation_prompt: str, ending: str, no_sys: str, with_sys: str | None,
                 bos_token: str):
    """Candidate formats given where the user suffix ends (`ending`: text closing an unanswered conversation)."""
    m = _MARK
    b0, b1, b2, b3 = _between(no_sys, [m["user1"], m["assistant1"], m["user2"]])
    if not b1.startswith(user_suffix):
        return
    assistant_prefix = b1[len(user_suffix):]
    head = bos_token if bos_token and b0.startswith(bos_token) else ""

    candidates: list[TurnFormat] = []
    if with_sys is not None:
        a0, a1, a2, a3, a4 = _between(with_sys, [m["system"], m["user1"], m["assistant1"], m["user2"]])
        if a0.startswith(head):
            system_prefix = a0[len(head):]
            # user_prefix ends both a1 (after the system suffix) and a3 (after the assistant suffix);
            # try each common ending, shortest first: the longest would also verify for a template
            # with a default system message, but glue the end-of-turn marker (`<|im_end|>\n`) to the
            # next user header, leaving the assistant no suffix to stop on.
            for n in range(0, min(len(a1), len(a3)) + 1):
                user_prefix = a1[len(a1) - n:]
                if not a3.endswith(user_prefix):
                    continue
                sys_suffix, asst_suffix = a1[: len(a1) - n], a3[: len(a3) - n]
                default_system = None
                rest = b0[len(head):]
                if rest != user_prefix:
                    # A template that writes a default system message when there is none.
                    if rest.startswith(system_prefix) and rest.endswith(sys_suffix + user_prefix):
                        default_system = rest[len(system_prefix): len(rest) - len(sys_suffix + user_prefix)]
                    else:
                        continue
                candidates.append(TurnFormat(head, (system_prefix, sys_suffix), (user_prefix, user_suffix),
                                             (assistant_prefix, asst_suffix), generation_prompt, default_system,
                                             ending))
    if not candidates:
        user_prefix = b0[len(head):]
        if b2.endswith(user_prefix):
            candidates.append(TurnFormat(head, None, (user_prefix, user_suffix),
                                         (assistant_prefix, b2[: len(b2) - len(user_prefix)]), generation_prompt,
                                         None, ending))
    yield from candidates


def _verifies(fmt: TurnFormat, render: Render, *, with_system: bool) -> bool:
    go_template = go_template_for(fmt)
    for conv in _probe_conversations(with_system):
        for gen in (True, False) if conv[-1]["role"] == "assistant" else (True,):
            expected = _try(render, conv, gen)
            if expected is None:
                if not gen:
                    continue  # the template refuses a finished conversation; prompts are what matter
                return False
            if fmt.head + fmt.render(conv, gen) != expected:
                return False
            if gen and fmt.head + render_go_template(go_template, conv, system=fmt.default_system) != expected:
                return False
    return True


# ---------------------------------------------------------------------------- Go template out


def _go_literal(text: str) -> str:
    """Template text for a literal: as is, unless it holds `{{`, then a quoted Go string action."""
    if "{{" in text or "}}" in text:
        return "{{ " + json.dumps(text) + " }}"
    return text


def go_template_for(fmt: TurnFormat) -> str:
    """The Ollama TEMPLATE (Go text/template over `.Messages`) equivalent to `fmt`.

    Written without whitespace-trim markers, because role suffixes often end in a newline
    that `{{-` would swallow.
    """
    branches = []
    roles = [("system", fmt.system), ("user", fmt.user), ("assistant", fmt.assistant)]
    for role, wrap in roles:
        if wrap is None:
            continue
        keyword = "if" if not branches else "else if"
        branches.append(f'{{{{ {keyword} eq .Role "{role}" }}}}{_go_literal(wrap[0])}{{{{ .Content }}}}'
                        f'{_go_literal(wrap[1])}')
    prelude = ""
    if fmt.default_system == "" and fmt.system is not None:
        # The template writes an empty system block when there is no system message (Llama 3.1:
        # its header with the knowledge date). A Modelfile SYSTEM "" would not bring it back, so
        # the Go template writes it itself when .System (the conversation's system text) is empty.
        prelude = "{{ if .System }}{{ else }}" + _go_literal(fmt.system[0] + fmt.system[1]) + "{{ end }}"
    return (prelude + "{{ range .Messages }}" + "".join(branches) + "{{ end }}{{ end }}"
            + _go_literal(fmt.generation_prompt))


def ollama_quote(text: str, what: str = "value") -> str:
    """`text` as a Modelfile value that Ollama's parser reads back exactly.

    Ollama's parser knows no escapes: `"..."` and `\"\"\"...\"\"\"` only strip their quotes (a JSON
    escape such as `\\n` would stay a backslash and an `n`). Plain quotes are used unless the
    text holds a quote or a line break, which only the triple quotes carry safely.
    """
    if '"""' in text:
        raise ModelfileError(f'the {what} contains """, which a Modelfile cannot quote')
    odd = sorted({c for c in text if not c.isprintable() and c not in "\t\n\r"})
    if odd:
        raise ModelfileError(f"the {what} contains unprintable characters ({', '.join(map(repr, odd))}) "
                             "that Ollama's Modelfile parser drops")
    if '"' in text or "\n" in text or "\r" in text:
        return f'"""{text}"""'
    return f'"{text}"'


def modelfile_text(gguf_name: str, fmt: TurnFormat, *, eos_token: str | None = None,
                   note: str = "", parameters: dict[str, float | int] | None = None) -> str:
    """A complete Ollama Modelfile for the GGUF file `gguf_name` (a path relative to the Modelfile)."""
    template = go_template_for(fmt)
    lines = []
    if note:
        lines += [f"# {line}" for line in note.splitlines()]
    lines.append(f"FROM ./{gguf_name}")
    lines.append(f"TEMPLATE {ollama_quote(template, 'chat template')}")
    if fmt.default_system:
        lines.append(f"SYSTEM {ollama_quote(fmt.default_system, 'default system message')}")
    for stop in fmt.stop_sequences(eos_token):
        lines.append(f"PARAMETER stop {ollama_quote(stop, 'stop sequence')}")
    for key, value in (parameters or {}).items():
        lines.append(f"PARAMETER {key} {value}")
    return "\n".join(lines) + "\n"


def _unquote(text: str) -> tuple[str, bool]:
    if text.startswith('"""'):
        return (text[3:-3], True) if len(text) >= 6 and text.endswith('"""') else ("", False)
    if text.startswith('"'):
        return (text[1:-1], True) if len(text) >= 2 and text.endswith('"') else ("", False)
    return text, True


_COMMANDS = {"from", "license", "template", "system", "adapter", "draft", "renderer", "parser", "parameter",
             "message", "requires"}


def parse_modelfile(text: str) -> dict:
    """Read a Modelfile the way Ollama's parser (parser/parser.go `ParseFile`) does.

    A character-level state machine: a command word, then a value that ends at a line break
    once its quotes are closed; quotes are stripped and nothing is unescaped. Returns FROM,
    TEMPLATE, SYSTEM (the last of each) and every PARAMETER as (name, value), in order.
    """
    commands: list[tuple[str, str]] = []
    state, buf, name, line = "nil", [], "", 1
    for ch in text:
        if ch in "\r\n":
            line += 1
        nxt, keep = _next_state(state, ch, line)
        if nxt != state:
            if state == "name":
                word = "".join(buf).lower()
                if word not in _COMMANDS:
                    raise ModelfileError(f"Modelfile line {line}: unknown command {''.join(buf)!r}")
                if word == "parameter":
                    nxt = "parameter"
                elif word == "message":
                    nxt = "message"
                name = "model" if word == "from" else word
            elif state == "parameter":
                name = "".join(buf)
            elif state == "value":
                value, ok = _unquote("".join(buf).strip(" \t\r\n"))
                if not ok or ch in " \t":
                    buf.append(ch)
                    continue
                commands.append((name, value))
            buf, state = [], nxt
        if keep is not None and keep.isprintable():
            buf.append(keep)
    if state == "value":
        value, ok = _unquote("".join(buf).strip(" \t\r\n"))
        if not ok:
            raise ModelfileError("Modelfile ends inside a quoted value")
        commands.append((name, value))
    elif state not in ("nil", "comment"):
        raise ModelfileError("Modelfile ends in the middle of a command")
    out: dict = {"parameters": []}
    for key, value in commands:
        if key in ("model", "template", "system"):
            out["from" if key == "model" else key] = value
        elif key not in _COMMANDS:
            out["parameters"].append((key, value))
    return out


def _next_state(state: str, ch: str, line: int) -> tuple[str, str | None]:
    """(next state, character to keep) for one character, as Ollama's `parseRuneForState`."""
    space, newline = ch in " \t", ch in "\r\n"
    if state == "nil":
        if ch == "#":
            return "comment", None
        return ("nil", None) if space or newline else ("name", ch)
    if state == "name":
        if ch.isascii() and ch.isalpha():
            return "name", ch
        if space:
            return "value", None
        raise ModelfileError(f"Modelfile line {line}: a command word must be followed by a space")
    if state == "value":
        return ("nil", ch) if space or newline else ("value", ch)
    if state in ("parameter", "message"):
        if ch.isascii() and (ch.isalnum() or (ch == "_" and state == "parameter")):
            return state, ch
        if space:
            return "value", None
        raise ModelfileError(f"Modelfile line {line}: bad {state} name")
    return ("nil", None) if newline else ("comment", None)


# ---------------------------------------------------------------------------- Go template interpreter

_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)


@dataclass
class _Node:
    kind: str  # text | field | string | range | if
    value: str = ""
    body: list = field(default_factory=list)
    branches: list = field(default_factory=list)  # for if: [(condition or None, body)]


def _lex(template: str) -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    pos = 0
    for match in _ACTION.finditer(template):
        text = template[pos: match.start()]
        if match.group(1) == "-":
            text = text.rstrip(" \t\r\n")
        if items and items[-1][0] == "trim_next":
            items.pop()
            text = text.lstrip(" \t\r\n")
        if text:
            items.append(("text", text))
        items.append(("action", match.group(2)))
        if match.group(3) == "-":
            items.append(("trim_next", ""))
        pos = match.end()
    tail = template[pos:]
    if items and items[-1][0] == "trim_next":
        items.pop()
        tail = tail.lstrip(" \t\r\n")
    if tail:
        items.append(("text", tail))
    return items


def _parse(items: list[tuple[str, str]], i: int, stop: tuple[str, ...]) -> tuple[list[_Node], int, str]:
    nodes: list[_Node] = []
    while i < len(items):
        kind, value = items[i]
        if kind == "text":
            nodes.append(_Node("text", value))
            i += 1
            continue
        word = value.split()[0] if value else ""
        if value in stop or (word == "else" and "else" in stop):
            return nodes, i, value
        if word == "range":
            body, i, _ = _parse(items, i + 1, ("end",))
            nodes.append(_Node("range", value[len("range"):].strip(), body))
            i += 1
        elif word == "if":
            branches = []
            cond = value[len("if"):].strip()
            while True:
                body, i, ended = _parse(items, i + 1, ("end", "else"))
                branches.append((cond, body))
                if ended == "end":
                    break
                rest = ended[len("else"):].strip()
                cond = rest[len("if"):].strip() if rest.startswith("if") else None
            nodes.append(_Node("if", branches=branches))
            i += 1
        elif value.startswith('"'):
            nodes.append(_Node("string", json.loads(value)))
            i += 1
        elif value.startswith("."):
            nodes.append(_Node("field", value))
            i += 1
        else:
            raise ModelfileError(f"unsupported Go template action {{{{ {value} }}}}")
    if stop:
        raise ModelfileError(f"Go template: missing {{{{ {stop[0]} }}}}")
    return nodes, i, ""


def _lookup(dot: dict, name: str) -> object:
    if name == ".":
        return dot
    value: object = dot
    for part in name.lstrip(".").split("."):
        value = value.get(part.lower()) if isinstance(value, dict) else None
    return value


def _truthy(dot: dict, cond: str) -> bool:
    match = re.fullmatch(r'eq\s+(\.[\w.]*)\s+"([^"]*)"', cond)
    if match:
        return _lookup(dot, match.group(1)) == match.group(2)
    if re.fullmatch(r"\.[\w.]*", cond):
        return bool(_lookup(dot, cond))
    raise ModelfileError(f"unsupported Go template condition {cond!r}")


def _execute(nodes: list[_Node], dot: dict, root: dict) -> str:
    out = []
    for node in nodes:
        if node.kind == "text":
            out.append(node.value)
        elif node.kind == "string":
            out.append(node.value)
        elif node.kind == "field":
            scope = root if node.value.startswith("$.") else dot
            value = _lookup(scope, node.value.replace("$.", ".", 1))
            out.append("" if value is None else str(value))
        elif node.kind == "range":
            for item in _lookup(root if node.value.startswith("$") else dot, node.value.lstrip("$")) or []:
                out.append(_execute(node.body, item, root))
        elif node.kind == "if":
            for cond, body in node.branches:
                if cond is None or _truthy(dot, cond):
                    out.append(_execute(body, dot, root))
                    break
    return "".join(out)


def render_go_template(template: str, messages: Sequence[dict[str, str]], *, system: str | None = None) -> str:
    """Render an Ollama template the way Ollama does for a chat request (the subset we emit).

    Supports text, `{{ .Field }}`, `{{ "string" }}`, `{{ range .Messages }}`,
    `{{ if eq .Role "x" }} / else if / else / end` and `{{-`/`-}}` trimming. Like Ollama, a
    Modelfile SYSTEM is prepended as a system message when the conversation has none.
    """
    msgs = [dict(m) for m in messages]
    if system and not any(m["role"] == "system" for m in msgs):
        msgs.insert(0, {"role": "system", "content": system})
    nodes, _, _ = _parse(_lex(template), 0, ())
    # Like Ollama's template.Execute: .System is the conversation's system text.
    root = {"messages": msgs, "system": "\n\n".join(m["content"] for m in msgs if m["role"] == "system")}
    return _execute(nodes, root, root)
