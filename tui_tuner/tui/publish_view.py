"""What the Runs screen's Publish action runs and shows: the `tui-tuner publish` command line, and
its output read back into the folder written, the hub URL and the error.

No textual here. The TUI runs the publish as a subprocess (`python -m tui_tuner publish ...`, as
the Export view runs `tui-tuner export`): the TUI process never loads torch or talks to the hub
itself. What the command prints is the contract: the folder, then its files, then (after an
upload) the repository's URL on stdout; progress, notes and errors on stderr.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

KINDS = ("adapter", "merged", "gguf")


@dataclass(frozen=True)
class PublishRequest:
    """What the Publish dialog asked for."""

    repo: str
    kind: str = "adapter"
    quant: str = "q8_0"
    private: bool = False
    dry_run: bool = False


def publish_command(run_path: Path, runs_dir: Path, request: PublishRequest) -> list[str]:
    """The `tui-tuner publish` command the Runs screen runs (same Python)."""
    argv = [sys.executable, "-m", "tui_tuner", "publish", str(run_path), "--runs-dir", str(runs_dir),
            "--repo", request.repo]
    if request.kind == "gguf":
        argv += ["--gguf", request.quant]
    elif request.kind == "merged":
        argv.append("--merged")
    else:
        argv.append("--adapter")
    if request.private:
        argv.append("--private")
    if request.dry_run:
        argv.append("--dry-run")
    return argv


@dataclass
class PublishOutcome:
    """What one `tui-tuner publish` produced, read from its output."""

    returncode: int
    request: PublishRequest
    folder: Path | None = None
    files: list[Path] = field(default_factory=list)
    url: str | None = None
    log: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def error(self) -> str:
        """The command's error lines (or the tail of its output) when it failed."""
        errors = [line for line in self.log if line.startswith("error:")]
        return "\n".join(errors or self.log[-6:]) or f"exit status {self.returncode}"

    def summary(self) -> str:
        if not self.ok:
            return self.error
        if self.url:
            return f"published {self.request.repo}: {self.url}"
        return f"dry run: {len(self.files)} files written to {self.folder}; nothing uploaded"


def read_outcome(returncode: int, stdout: str, stderr_lines: list[str], request: PublishRequest) -> PublishOutcome:
    """A `PublishOutcome` from the command's exit status, stdout and stderr lines."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    url = next((line for line in lines if line.startswith(("http://", "https://"))), None)
    paths = [Path(line) for line in lines if line != url]
    return PublishOutcome(returncode, request, paths[0] if paths else None, paths[1:], url,
                          [line.rstrip() for line in stderr_lines if line.strip()])
