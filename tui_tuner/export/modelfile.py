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

The measurement itself (`TurnFormat`, prefix/suffix per role, stop texts) is
`tui_tuner.chat_format.turns`, which chat uses too; this module adds the Go template.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Sequence

from tui_tuner.chat_format.turns import Render, TurnFormat, TurnFormatError
from tui_tuner.chat_format.turns import turn_format as measure_turn_format

# The measured turn format lives with the templates; the Modelfile only writes it as a Go template.
ModelfileError = TurnFormatError
"""The chat template cannot be written as an Ollama template (says why)."""


def turn_format(render: Render, bos_token: str = "") -> TurnFormat:
    """The template's per-role prefixes and suffixes, verified through Jinja and the Go template both.

    Raises `ModelfileError` when no prefix/suffix format reproduces the template exactly.
    """
    def go_renders_the_same(fmt: TurnFormat, conv: list[dict[str, str]], expected: str) -> bool:
        return fmt.head + render_go_template(go_template_for(fmt), conv, system=fmt.default_system) == expected

    return measure_turn_format(render, bos_token, accept=go_renders_the_same)


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
    return "{{ range .Messages }}" + "".join(branches) + "{{ end }}{{ end }}" + _go_literal(fmt.generation_prompt)


def modelfile_text(gguf_name: str, fmt: TurnFormat, *, eos_token: str | None = None,
                   note: str = "", parameters: dict[str, float | int] | None = None) -> str:
    """A complete Ollama Modelfile for the GGUF file `gguf_name` (a path relative to the Modelfile)."""
    template = go_template_for(fmt)
    if '"""' in template or (fmt.default_system and '"""' in fmt.default_system):
        raise ModelfileError('the chat template contains """, which a Modelfile cannot quote')
    lines = []
    if note:
        lines += [f"# {line}" for line in note.splitlines()]
    lines.append(f"FROM ./{gguf_name}")
    lines.append(f'TEMPLATE """{template}"""')
    if fmt.default_system:
        lines.append(f'SYSTEM """{fmt.default_system}"""')
    for stop in fmt.stop_sequences(eos_token):
        lines.append(f"PARAMETER stop {json.dumps(stop)}")
    for key, value in (parameters or {}).items():
        lines.append(f"PARAMETER {key} {value}")
    return "\n".join(lines) + "\n"


def parse_modelfile(text: str) -> dict:
    """Read back FROM, TEMPLATE, SYSTEM and PARAMETER lines of a Modelfile (what we write)."""
    out: dict = {"parameters": []}
    for match in re.finditer(r'^(FROM|TEMPLATE|SYSTEM|PARAMETER)[ \t]+(?:"""(.*?)"""|([^\n]*))$', text, re.M | re.S):
        key, value = match.group(1), match.group(2) if match.group(2) is not None else match.group(3).strip()
        if key == "PARAMETER":
            name, _, raw = value.partition(" ")
            out["parameters"].append((name, json.loads(raw) if raw.startswith('"') else raw))
        else:
            out[key.lower()] = value
    return out


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
    if system is not None and not any(m["role"] == "system" for m in msgs):
        msgs.insert(0, {"role": "system", "content": system})
    nodes, _, _ = _parse(_lex(template), 0, ())
    root = {"messages": msgs, "system": system or ""}
    return _execute(nodes, root, root)
