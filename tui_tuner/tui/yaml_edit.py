"""Set one value in a YAML config's text while keeping its comments and layout.

The Config screen edits the same document two ways (form and raw YAML); the YAML text
stays the source of truth, so a form edit changes only the characters of one value.
ruamel.yaml's round-trip parser finds that value's exact span (plain, quoted, inside a
flow mapping such as `lora: {r: 8}`, or on the line after its key), and the new scalar
replaces just that span: comments, quoting, indentation and every other line stay
byte for byte. A missing key is added under its section with the section's own
indentation; where that is not a plain block section (a flow mapping) ruamel's
round-trip dump adds it. Every result is read back and checked before it is returned.
No Textual here: this is plain text manipulation, unit-tested on its own.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

import yaml

_MISSING = object()


def yaml_scalar(value: Any) -> str:
    """`value` written as a one-line YAML scalar (`null`, `true`, `2.0e-4`, `'a: b'`)."""
    if isinstance(value, float):
        text = repr(value)
        # YAML 1.1 (PyYAML) reads `1e-05` as a string: give it a dot and a signed exponent.
        m = re.fullmatch(r"(-?\d+)(?:\.(\d+))?e([-+]?)(\d+)", text)
        if m:
            whole, frac, sign, exp = m.groups()
            text = f"{whole}.{frac or '0'}e{sign or '+'}{exp}"
        return text
    dumped = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True).strip()
    return dumped.removesuffix("...").strip()


def _scalar_candidates(value: Any, style: str | None) -> list[str]:
    """Ways to write `value`, best first: the old value's quoting when it was a quoted string."""
    plain = yaml_scalar(value)
    if not isinstance(value, str):
        return [plain]
    single = "'" + value.replace("'", "''") + "'"
    double = json.dumps(value, ensure_ascii=False)
    if style == "'":
        return [single, double]
    if style == '"':
        return [double, single]
    return [plain, single, double]


def _lookup(root: Any, path: tuple[str, ...]) -> Any:
    node = root
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _holds(text: str, path: tuple[str, ...], value: Any) -> bool:
    """Whether `text` parses (as the config loader reads it) with `value` at `path`."""
    try:
        got = _lookup(yaml.safe_load(text), path)
    except yaml.YAMLError:
        return False
    return got is not _MISSING and got == value and type(got) is type(value)


def _compose(text: str):
    from ruamel.yaml import YAML

    return YAML(typ="rt").compose(text)


def _child(mapping, key: str):
    from ruamel.yaml.nodes import MappingNode

    if not isinstance(mapping, MappingNode):
        return None
    for k, v in mapping.value:
        if getattr(k, "value", None) == key:
            return v
    return None


def _indent_unit(root) -> int:
    """The document's indentation step: the first nested block mapping's offset from its parent (2 if none)."""
    from ruamel.yaml.nodes import MappingNode

    stack = [root]
    while stack:
        node = stack.pop(0)
        if not isinstance(node, MappingNode) or node.flow_style:
            continue
        for k, v in node.value:
            if isinstance(v, MappingNode) and not v.flow_style and v.value:
                return max(1, v.value[0][0].start_mark.column - k.start_mark.column)
            stack.append(v)
    return 2


def _after_last_content_line(text: str, start: int, end: int) -> int:
    """Index just after the last line in text[start:end] that holds more than blanks or a comment.

    `end` is first moved to the end of its line, so a trailing comment stays with its value.
    """
    newline = text.find("\n", end)
    end = len(text) if newline < 0 or end == 0 else newline + 1
    pos = start
    for line in text[start:end].splitlines(keepends=True):
        start += len(line)
        if line.strip() and not line.strip().startswith("#"):
            pos = start
    return pos


def _round_trip_set(text: str, path: tuple[str, ...], value: Any) -> str | None:
    """Set the value with ruamel's round-trip load and dump (used where splicing is not plain)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.util import load_yaml_guess_indent

    try:
        _, indent, block_seq_indent = load_yaml_guess_indent(text)
        rt = YAML(typ="rt")
        rt.preserve_quotes = True
        rt.width = 4096
        rt.indent(mapping=indent or 2, sequence=indent or 2, offset=block_seq_indent or 0)
        root = rt.load(text) if text.strip() else CommentedMap()
        if root is None:
            root = CommentedMap()
        node = root
        for part in path[:-1]:
            if part not in node:
                node[part] = CommentedMap()
            node = node[part]
            if not isinstance(node, dict):
                return None
        node[path[-1]] = value
        out = io.StringIO()
        rt.dump(root, out)
        return out.getvalue()
    except Exception:  # ruamel raises many error types for odd documents; the caller keeps the text
        return None


def _replace_list(text: str, root, path: tuple[str, ...], value: list) -> str | None:
    """`text` with the list at `path` (block or flow) rewritten as one flow-style line, or None."""
    parent = root
    for part in path[:-1]:
        parent = _child(parent, part)
    key = next((k for k, _ in getattr(parent, "value", []) if getattr(k, "value", None) == path[-1]), None)
    node = _child(parent, path[-1])
    if key is None or node is None:
        return None
    start, end = key.end_mark.index, node.end_mark.index
    between = text[start:end]
    # A block list ends where the next key starts: keep that line break and indentation.
    tail = between[between.rindex("\n"):] if "\n" in between else ""
    out = text[:start] + ": " + yaml_scalar(value) + tail + text[end:]
    return out if _holds(out, path, value) else None


def set_yaml_value(text: str, path: tuple[str, ...], value: Any) -> str:
    """`text` with the scalar at `path` (e.g. ("lora", "r")) set to `value`, or a list to a list.

    Keeps comments, quoting, flow style, indentation and the order of keys. A key that is
    missing is added at the end of its section (the section is created when absent). When the
    text does not parse, or `path` names a section (or a list, for a scalar `value`), the text is returned unchanged:
    the user fixes the YAML first (or edits the list in the YAML editor).
    """
    from ruamel.yaml.error import YAMLError as RuamelError
    from ruamel.yaml.nodes import MappingNode, ScalarNode

    from tui_tuner.config.schema import safe_load_guarded  # pydantic loads after the first frame

    try:
        # The guarded load refuses alias bombs and deep nesting before anything walks the tree.
        parsed = safe_load_guarded(text) if text.strip() else {}
        root = _compose(text) if text.strip() else None
    except (RuamelError, yaml.YAMLError):
        return text
    if parsed is None:
        parsed, root = {}, None
    if not isinstance(parsed, dict) or (root is not None and not isinstance(root, MappingNode)):
        return text
    existing = _lookup(parsed, path)
    if isinstance(value, list) and isinstance(existing, list):
        return _replace_list(text, root, path, value) or text  # a whole list, e.g. grpo.rewards from its picker
    if isinstance(existing, (dict, list)):
        return text  # a section or list, not a scalar: leave it to the YAML editor

    if existing is not _MISSING:
        node = root
        for part in path:
            node = _child(node, part)
        if isinstance(node, ScalarNode):
            start, end = node.start_mark.index, node.end_mark.index
            if node.style in ("|", ">"):  # a block scalar runs to its last line: replace it by one line
                end = len(text[:end].rstrip("\n"))
            for scalar in _scalar_candidates(value, node.style):
                out = text[:start] + scalar + text[end:]
                if _holds(out, path, value):
                    return out
        return _round_trip_set(text, path, value) or text

    # Missing: add it under the deepest section that exists.
    depth, parent = 0, root
    while depth < len(path) - 1:
        child = _child(parent, path[depth]) if parent is not None else None
        if child is None:
            break
        parent, depth = child, depth + 1
    if parent is not None and (not isinstance(parent, MappingNode) or parent.flow_style):
        out = _round_trip_set(text, path, value)
        return out if out is not None and _holds(out, path, value) else text
    unit = _indent_unit(root) if root is not None else 2
    if parent is None or not parent.value:
        base, at = 0, _after_last_content_line(text, 0, len(text))
    elif depth == 0:
        base, at = parent.value[0][0].start_mark.column, _after_last_content_line(text, 0, len(text))
    else:
        first_key = parent.value[0][0]
        base = first_key.start_mark.column
        at = _after_last_content_line(text, first_key.start_mark.index, parent.value[-1][1].end_mark.index)
    rest = path[depth:]
    sections = "".join(f"{' ' * (base + unit * i)}{part}:\n" for i, part in enumerate(rest[:-1]))
    leaf_pad = " " * (base + unit * (len(rest) - 1))
    prefix = text[:at]
    if prefix and not prefix.endswith("\n"):
        prefix += "\n"
    for scalar in _scalar_candidates(value, None):
        out = prefix + sections + f"{leaf_pad}{rest[-1]}: {scalar}\n" + text[at:]
        if _holds(out, path, value):
            return out
    out = _round_trip_set(text, path, value)
    return out if out is not None and _holds(out, path, value) else text


def get_path(raw: Any, path: tuple[str, ...]) -> Any:
    """The value at `path` in a parsed mapping, or None when any part is missing."""
    node = raw
    for part in path:
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node
