"""Set one value in a YAML config's text while keeping its comments and layout.

The Config screen edits the same document two ways (form and raw YAML); the YAML text
stays the source of truth, so a form edit rewrites only the line that holds the key.
No Textual here: this is plain text manipulation, unit-tested on its own.
"""

from __future__ import annotations

import re
from typing import Any

import yaml


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


def _value_span(line: str, key_col: int) -> tuple[int, int]:
    """Columns [start, end) of the value after `key:` on `line`, excluding a trailing comment."""
    start = line.index(":", key_col) + 1
    while start < len(line) and line[start] == " ":
        start += 1
    end = len(line)
    comment = re.search(r"\s+#", line[start:])
    if comment and not line[start:].startswith(("'", '"')):
        end = start + comment.start()
    return start, end


def set_yaml_value(text: str, path: tuple[str, ...], value: Any) -> str:
    """`text` with the scalar at `path` (e.g. ("lora", "r")) set to `value`.

    Keeps comments and the order of keys. A key that is missing is added at the end of
    its section (the section is created when absent). When the text does not parse, the
    value is not set and the text is returned unchanged: the user fixes the YAML first.
    """
    from tui_tuner.config.schema import safe_load_guarded, yaml_positions  # pydantic loads after the first frame

    try:
        root = safe_load_guarded(text) if text.strip() else {}
    except yaml.YAMLError:
        return text
    if root is None:
        root = {}
    if not isinstance(root, dict):
        return text
    positions = yaml_positions(text)
    lines = text.split("\n")
    scalar = yaml_scalar(value)
    if path in positions:
        node: Any = root
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, (dict, list)):
            return text  # a section or list, not a scalar: leave it to the YAML editor
        line_no, col = positions[path]
        line = lines[line_no - 1]
        colon = line.index(":", col - 1)
        _, end = _value_span(line, col - 1)
        lines[line_no - 1] = line[: colon + 1] + " " + scalar + line[end:]
        return "\n".join(lines)
    # Missing: find the deepest existing parent section and append below its last line.
    for depth in range(len(path) - 1, -1, -1):
        parent = path[:depth]
        if parent and parent not in positions:
            continue
        node = root
        for part in parent:
            node = node.get(part) if isinstance(node, dict) else None
        if parent and not isinstance(node, dict):
            return text
        indent = "  " * depth
        new_lines = []
        for i, part in enumerate(path[depth:]):
            pad = indent + "  " * i
            is_leaf = i == len(path) - depth - 1
            new_lines.append(f"{pad}{part}: {scalar}" if is_leaf else f"{pad}{part}:")
        if not parent:
            insert_at = len(lines)
            while insert_at > 0 and not lines[insert_at - 1].strip():
                insert_at -= 1
        else:
            insert_at = _end_of_section(lines, positions, parent)
        lines[insert_at:insert_at] = new_lines
        return "\n".join(lines)
    return text


def _end_of_section(lines: list[str], positions: dict, section: tuple[str, ...]) -> int:
    """Index of the line just after the last line belonging to `section`."""
    line_no, col = positions[section]
    section_indent = col - 1
    end = line_no  # index after the section's key line
    for i in range(line_no, len(lines)):
        stripped = lines[i].strip()
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(lines[i]) - len(lines[i].lstrip(" "))
        if indent <= section_indent:
            break
        end = i + 1
    return end


def get_path(raw: Any, path: tuple[str, ...]) -> Any:
    """The value at `path` in a parsed mapping, or None when any part is missing."""
    node = raw
    for part in path:
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node
