"""Finding llama.cpp's own HF-to-GGUF converter for `tui-tuner export --gguf`.

We never write our own GGUF converter: llama.cpp's `convert_hf_to_gguf.py` (with its
`conversion/` package and its own `gguf-py/`) knows every architecture and tokenizer.
It is looked for, in order:

1. `--llama-cpp DIR` (a llama.cpp checkout or any folder holding those files);
2. the environment variable `TUI_TUNER_LLAMA_CPP`;
3. the cache (`$TUI_TUNER_CACHE` or `$XDG_CACHE_HOME/tui-tuner`, default `~/.cache/tui-tuner`),
   filled on first use from the `llama-cpp-python` *source* distribution on PyPI, which
   vendors llama.cpp (`tui_tuner.models.llama_cpp_sdist` fetches and caches it, together with
   llama.cpp's real tokenizer vocabularies and chat templates).

Offline with none of these, `find_converter` raises `ConverterUnavailable` saying what to do;
the merged safetensors export (`--merged`) needs no converter.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tui_tuner.models.llama_cpp_sdist import (
    CONVERTER, LLAMA_CPP_PYTHON, LlamaCppUnavailable, cache_dir, converter_problem, fetch_vendored,
    vendored_root,
)

ENV_DIR = "TUI_TUNER_LLAMA_CPP"
ENV_CACHE = "TUI_TUNER_CACHE"
__all__ = ["CONVERTER", "LLAMA_CPP_PYTHON", "Converter", "ConverterUnavailable", "cache_dir", "converter_problem",
           "convert_to_gguf", "fetch_converter", "find_converter"]


class ConverterUnavailable(LlamaCppUnavailable):
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
    root = vendored_root(cache)
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
    """Download the llama-cpp-python sdist (see `tui_tuner.models.llama_cpp_sdist`) and use its converter."""
    try:
        root = fetch_vendored(cache, log=log)
    except LlamaCppUnavailable as exc:
        raise ConverterUnavailable(_offline_message(cache, str(exc))) from exc
    return Converter(root, f"cache {root} (fetched {LLAMA_CPP_PYTHON})")


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
