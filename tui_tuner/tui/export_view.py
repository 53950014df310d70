"""What the Export view runs and shows: the `tui-tuner export` command line, and its output read
back into files, the verification result and the commands that use the export.

No textual here, so the reading of the command's output is testable on its own. The TUI runs
the export as a subprocess (`python -m tui_tuner export ...`, as the Eval view runs
`tui-tuner eval`): the TUI process never loads torch. What the command prints is the contract:
the written files on stdout, one a line; its progress, notes, verification and errors on stderr.
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

BASIC_QUANTS = ("f16", "q8_0")
"""GGUF types every version of the exporter writes; `gguf_quants()` adds what this one offers."""

VERIFICATION = re.compile(r"verif|llama\.cpp tokenizes|greedy answers|MISMATCH|\bchecked\b|prompt \d+: first",
                          re.IGNORECASE)
"""Stderr lines that report the export's checks of the file it wrote (shown as the verification result)."""


def gguf_quants() -> tuple[str, ...]:
    """The GGUF types the installed exporter accepts (its `GGUF_QUANTS`), else the basic two.

    Read from the module's source text, not imported, so opening the view loads nothing heavy.
    """
    import importlib.util

    spec = importlib.util.find_spec("tui_tuner.export.exporters")
    try:
        text = Path(spec.origin).read_text(encoding="utf-8") if spec and spec.origin else ""
    except OSError:
        text = ""
    match = re.search(r"^GGUF_QUANTS\s*=\s*\(([^)]*)\)", text, re.MULTILINE)
    if not match:
        return BASIC_QUANTS
    quants = tuple(re.findall(r"['\"]([a-z0-9_]+)['\"]", match[1]))
    return quants or BASIC_QUANTS


def export_command(run_path: Path, runs_dir: Path, *, kind: str, quant: str = "f16") -> list[str]:
    """The `tui-tuner export` command the Export view runs (same Python)."""
    argv = [sys.executable, "-m", "tui_tuner", "export", str(run_path), "--runs-dir", str(runs_dir)]
    return argv + (["--merged"] if kind == "merged" else ["--gguf", "--quant", quant])


def ollama_name(run_name: str) -> str:
    """A model name Ollama accepts (lowercase letters, digits, `.`, `_`, `-`), from the run's name."""
    stem = re.sub(r"-\d{8}-\d{6}(-\d+)?$", "", run_name)
    return re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("-._") or "tuned"


@dataclass
class ExportOutcome:
    """What one `tui-tuner export` run produced, read from its output."""

    returncode: int
    files: list[Path] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    run_name: str = "tuned"

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def ggufs(self) -> list[Path]:
        return [f for f in self.files if f.suffix == ".gguf"]

    @property
    def modelfiles(self) -> list[Path]:
        return [f for f in self.files if f.name == "Modelfile" or f.suffix == ".Modelfile"]

    @property
    def verification(self) -> list[str]:
        """The export's own checks of what it wrote (token-for-token, tensors), as it said them."""
        return [line for line in self.log if VERIFICATION.search(line) and not line.startswith("running ")]

    @property
    def error(self) -> str:
        """The command's error lines (or the tail of its output) when it failed."""
        errors = [line for line in self.log if line.startswith("error:")]
        return "\n".join(errors or self.log[-6:]) or f"exit status {self.returncode}"

    def commands(self) -> list[tuple[str, str]]:
        """(what it does, the exact command) for using the export, ready to copy."""
        out: list[tuple[str, str]] = []
        name = ollama_name(self.run_name)
        for modelfile in self.modelfiles:
            out.append(("import into Ollama, then `ollama run " + name + "`",
                        f"ollama create {name} -f {shlex.quote(str(modelfile))}"))
            break
        for gguf in self.ggufs:
            out.append((f"chat with {gguf.name} in llama.cpp", f"llama-cli -m {shlex.quote(str(gguf))} -cnv"))
        if not self.ggufs and self.files:
            merged = self.files[0] if self.files[0].is_dir() else self.files[0].parent
            out.append(("chat with the merged model", f"tui-tuner chat {shlex.quote(str(merged))}"))
        return out


def read_outcome(returncode: int, stdout: str, stderr_lines: list[str], run_name: str) -> ExportOutcome:
    """An `ExportOutcome` from the command's exit status, stdout (files) and stderr lines."""
    files = [Path(line.strip()) for line in stdout.splitlines() if line.strip() and not line.startswith("error:")]
    return ExportOutcome(returncode, files, [line.rstrip() for line in stderr_lines if line.strip()], run_name)
