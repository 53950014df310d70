"""The README's promises match the code: its install extras exist, its commands parse, and its test
command is the one CI (`.ci/run`) runs, with the extras CI adds named."""

import re
import shlex
import tomllib
from pathlib import Path

from tui_tuner.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")
CI = (REPO / ".ci" / "run").read_text(encoding="utf-8")
EXTRAS = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]


def _options(parser) -> set[str]:
    """Every option string of a command and of its subcommands."""
    found: set[str] = set()
    for action in parser._actions:
        found |= set(action.option_strings)
        if isinstance(getattr(action, "choices", None), dict):
            for sub in action.choices.values():
                found |= _options(sub)
    return found


def _subcommands(parser) -> dict:
    return next(a for a in parser._actions if a.dest in ("command", "subcommand") and a.choices).choices


def test_every_extra_the_readme_installs_is_in_pyproject():
    named = {e.strip() for group in re.findall(r'\[([a-z,]+)\]"', README) for e in group.split(",")}
    assert named and named <= set(EXTRAS), named - set(EXTRAS)


def test_the_readme_test_command_is_what_ci_runs_with_the_extras_it_adds_named():
    assert "python -m pytest -q" in README and "python3 -m pytest -q" in CI
    ci_extras = set(re.search(r'-e "\.\[([a-z,]+)\]"', CI).group(1).split(","))
    development = README.split("## Development", 1)[1]
    assert "bash .ci/run" in development and "lint-imports" in development and "lint-imports" in CI
    assert all(f"`{extra}`" in development for extra in (ci_extras | {"gguf"}) - {"dev"}), ci_extras


def test_every_command_in_the_readme_commands_block_parses():
    block = README.split("## Commands", 1)[1].split("```", 2)[1]
    top = _subcommands(build_parser())
    for line in block.splitlines():
        words = shlex.split(line.split("#", 1)[0])
        if len(words) < 2 or words[0] != "tui-tuner":
            continue
        assert words[1] in top, line
        flags = set(re.findall(r"--[a-z][a-z-]*", line.split("#", 1)[0]))
        assert flags <= _options(top[words[1]]), (line, flags - _options(top[words[1]]))
        nested = [a for a in top[words[1]]._actions if getattr(a, "choices", None) and a.dest != "help"
                  and isinstance(a.choices, dict)]
        if nested and "|" in words[2]:
            # `runs ls|show|...`: the README lists every subcommand there is
            assert set(words[2].split("|")) == set(nested[0].choices), line


def test_every_shipped_config_is_in_the_readme_table():
    table = README.split("## Configs", 1)[1].split("\n## ", 1)[0]
    shipped = {p.name for p in (REPO / "configs").glob("*.yaml")}
    assert shipped and all(f"| `{name}` |" in table for name in shipped), shipped
