"""Finding llama.cpp's own HF-to-GGUF converter for `tui-tuner export --gguf`.

We never write our own GGUF converter: llama.cpp's `convert_hf_to_gguf.py` (with its
`conversion/` package and its own `gguf-py/`) knows every architecture and tokenizer.
It is looked for, in order:

1. `--llama-cpp DIR` (a llama.cpp checkout or any folder holding those files);
2. the environment variable `TUI_TUNER_LLAMA_CPP`;
3. the cache (`$TUI_TUNER_CACHE` or `$XDG_CACHE_HOME/tui-tuner`, default `~/.cache/tui-tuner`),
   filled on first use from the `llama-cpp-python` *source* distribution on PyPI, which
   vendors llama.cpp: `pip download --no-deps --no-binary :all: llama-cpp-python==VERSION`,
   then only the converter files are kept (about 2 MB of the 75 MB archive).

Offline with none of these, `find_converter` raises `ConverterUnavailable` saying what to do;
the merged safetensors export (`--merged`) needs no converter.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ENV_DIR = "TUI_TUNER_LLAMA_CPP"
ENV_CACHE = "TUI_TUNER_CACHE"
LLAMA_CPP_PYTHON = "llama-cpp-python==0.3.36"
"""The sdist the converter is taken from; this version's converter is the one tested with tui-tuner."""
CONVERTER = "convert_hf_to_gguf.py"


class ConverterUnavailable(RuntimeError):
    """llama.cpp's converter could not be found or fetched; the message says what to do."""


@dataclass
class Converter:
    """Where llama.cpp's converter is and where it came from."""

    root: Path
    """Folder with convert_hf_to_gguf.py, conversion/ and gguf-py/."""
    source: str

    @property
    def script(self) -> Path:
        return self.root / CONVERTER


def cache_dir() -> Path:
    """tui-tuner's download cache."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "tui-tuner"


def converter_problem(root: Path) -> str | None:
    """Why `root` is not a usable llama.cpp converter folder, or None."""
    if not root.is_dir():
        return f"{root} is not a folder"
    missing = [name for name in (CONVERTER, "gguf-py/gguf") if not (root / name).exists()]
    if missing:
        return f"{root} has no {' or '.join(missing)} (expected a llama.cpp checkout)"
    return None


def _cached_root(cache: Path) -> Path:
    return cache / ("llama.cpp-from-" + LLAMA_CPP_PYTHON.replace("==", "-"))


def find_converter(llama_cpp_dir: str | Path | None = None, *, fetch: bool = True,
                   cache: Path | None = None, log: Callable[[str], None] = lambda s: None) -> Converter:
    """The converter to use: `llama_cpp_dir`, then $TUI_TUNER_LLAMA_CPP, then the cache (fetched if allowed)."""
    for given, source in ((llama_cpp_dir, "--llama-cpp"), (os.environ.get(ENV_DIR), ENV_DIR)):
        if given:
            root = Path(given).expanduser().resolve()
            problem = converter_problem(root)
            if problem:
                raise ConverterUnavailable(f"{source}: {problem}. Point it at a llama.cpp checkout "
                                           f"(git clone of ggml-org/llama.cpp), which has {CONVERTER}.")
            return Converter(root, f"{source} {root}")
    cache = cache or cache_dir()
    root = _cached_root(cache)
    if converter_problem(root) is None:
        return Converter(root, f"cache {root} (from {LLAMA_CPP_PYTHON})")
    if not fetch:
        raise ConverterUnavailable(_offline_message(cache))
    return fetch_converter(cache, log=log)


def _offline_message(cache: Path, detail: str = "") -> str:
    return ("GGUF export needs llama.cpp's converter (convert_hf_to_gguf.py) and none was found"
            + (f": {detail}" if detail else "") + ". Either pass --llama-cpp DIR (or set "
            f"{ENV_DIR}) to a llama.cpp checkout, or run the export once where PyPI is reachable so "
            f"tui-tuner can fetch the converter from the {LLAMA_CPP_PYTHON} source package into {cache} "
            "(on an offline machine, copy that folder over). `tui-tuner export RUN --merged` "
            "works without it.")


def fetch_converter(cache: Path, *, log: Callable[[str], None] = lambda s: None) -> Converter:
    """Download the llama-cpp-python sdist with pip and keep only llama.cpp's converter files."""
    root = _cached_root(cache)
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix="fetch-") as tmp:
        tmp_path = Path(tmp)
        log(f"fetching llama.cpp's GGUF converter from PyPI ({LLAMA_CPP_PYTHON} source, ~75 MB, once)")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--disable-pip-version-check", "-d", str(tmp_path / "dl"), LLAMA_CPP_PYTHON]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ConverterUnavailable(_offline_message(cache, f"pip could not run ({exc})")) from exc
        archives = sorted((tmp_path / "dl").glob("*.tar.gz")) if done.returncode == 0 else []
        if not archives:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no archive downloaded"]
            raise ConverterUnavailable(_offline_message(cache, f"pip download failed: {last[0]}"))
        staging = tmp_path / "llama.cpp"
        _extract_converter(archives[0], staging)
        problem = converter_problem(staging)
        if problem:
            raise ConverterUnavailable(f"{archives[0].name} does not contain llama.cpp's converter ({problem}); "
                                       f"pass --llama-cpp DIR instead.")
        if root.exists():
            shutil.rmtree(root)
        os.replace(staging, root)  # same file system: the cache appears whole or not at all
    log(f"converter cached in {root}")
    return Converter(root, f"cache {root} (fetched {LLAMA_CPP_PYTHON})")


def _extract_converter(archive: Path, dest: Path) -> None:
    """Copy vendor/llama.cpp/{convert_hf_to_gguf.py, conversion/, gguf-py/, LICENSE} out of the sdist."""
    keep = (CONVERTER, "conversion/", "gguf-py/", "LICENSE")
    with tarfile.open(archive, "r:gz") as tar:
        members = []
        for member in tar.getmembers():
            _, sep, inner = member.name.partition("/vendor/llama.cpp/")
            if not sep or not (member.isfile() or member.isdir()):
                continue
            if inner == CONVERTER or inner == "LICENSE" or inner.startswith(keep[1:3]):
                member.name = inner
                members.append(member)
        dest.mkdir(parents=True)
        tar.extractall(dest, members=members, filter="data")


def convert_to_gguf(converter: Converter, model_dir: Path, outfile: Path, outtype: str,
                    log: Callable[[str], None] = lambda s: None, model_name: str | None = None) -> None:
    """Run llama.cpp's converter on a merged HF model folder; raises RuntimeError with its output tail."""
    outfile.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(converter.script), str(model_dir), "--outfile", str(outfile), "--outtype", outtype]
    if model_name:
        cmd += ["--model-name", model_name]
    log("running " + " ".join(cmd[1:]))
    env = dict(os.environ)
    env.pop("NO_LOCAL_GGUF", None)  # the converter must use its own gguf-py, matching its code
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=converter.root)
    if done.returncode != 0 or not outfile.exists():
        tail = "\n".join((done.stderr + done.stdout).strip().splitlines()[-15:])
        raise RuntimeError(f"llama.cpp's converter failed (exit {done.returncode}):\n{tail}")
