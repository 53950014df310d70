"""llama.cpp's vendored files, taken from the `llama-cpp-python` source distribution on PyPI.

That sdist vendors llama.cpp, which carries what tui-tuner needs and never ships itself:

- `convert_hf_to_gguf.py` with its `conversion/` package and `gguf-py/` (GGUF export);
- `models/ggml-vocab-*.gguf`: vocab-only GGUF files of real tokenizers (Llama 3, Qwen 2,
  Phi-3, Gemma 4, ...), each with tokenization test vectors (`.inp` / `.out`);
- `models/templates/*.jinja`: about 70 chat templates exactly as their model authors ship them.

It is fetched once with pip (`pip download --no-deps --no-binary :all: llama-cpp-python==VERSION`,
~76 MB download) and only those files (~80 MB unpacked, mostly vocabularies) are kept in

    $TUI_TUNER_CACHE/llama.cpp-from-llama-cpp-python-VERSION   (default ~/.cache/tui-tuner/...)

Offline without that folder, `ensure_vendored` raises `LlamaCppUnavailable` saying how to get it:
run once where PyPI is reachable, or copy the folder from a machine that has it.

    python -m tui_tuner.models.llama_cpp_sdist      # fetch now and print the folder
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Callable, Literal

from tui_tuner.models.demo import cache_root

LLAMA_CPP_PYTHON = "llama-cpp-python==0.3.36"
"""The sdist the vendored files come from; this version's converter, vocabularies and templates are tested."""
CONVERTER = "convert_hf_to_gguf.py"
Part = Literal["converter", "models"]


class LlamaCppUnavailable(RuntimeError):
    """llama.cpp's vendored files are not in the cache and could not be fetched; the message says what to do."""


def cache_dir() -> Path:
    """tui-tuner's download cache ($TUI_TUNER_CACHE, else $XDG_CACHE_HOME/tui-tuner, else ~/.cache/tui-tuner)."""
    return cache_root()


def vendored_root(cache: Path | None = None) -> Path:
    """Where the vendored llama.cpp files live in the cache (they may not be there yet)."""
    return (cache or cache_dir()) / ("llama.cpp-from-" + LLAMA_CPP_PYTHON.replace("==", "-"))


def converter_problem(root: Path) -> str | None:
    """Why `root` is not a usable llama.cpp converter folder, or None."""
    if not root.is_dir():
        return f"{root} is not a folder"
    missing = [name for name in (CONVERTER, "gguf-py/gguf") if not (root / name).exists()]
    if missing:
        return f"{root} has no {' or '.join(missing)} (expected a llama.cpp checkout)"
    return None


def models_problem(root: Path) -> str | None:
    """Why `root` has no usable vocabularies and templates (`models/`), or None."""
    models = root / "models"
    if not (models / "templates").is_dir() or not any(models.glob("ggml-vocab-*.gguf")):
        return f"{root} has no models/ggml-vocab-*.gguf and models/templates/"
    return None


def _problem(root: Path, part: Part) -> str | None:
    return converter_problem(root) if part == "converter" else models_problem(root)


def ensure_vendored(part: Part, *, cache: Path | None = None, fetch: bool = True,
                    log: Callable[[str], None] = lambda s: None) -> Path:
    """The cached llama.cpp folder holding `part`, fetched from PyPI when missing and `fetch` allows it."""
    cache = cache or cache_dir()
    root = vendored_root(cache)
    if _problem(root, part) is None:
        return root
    if not fetch:
        raise LlamaCppUnavailable(offline_message(cache, what=_WHAT[part]))
    return fetch_vendored(cache, log=log)


_WHAT = {"converter": "llama.cpp's GGUF converter (convert_hf_to_gguf.py)",
         "models": "llama.cpp's real tokenizer vocabularies and chat templates"}


def offline_message(cache: Path, detail: str = "", *, what: str = "llama.cpp's vendored files") -> str:
    """How to get the vendored files onto this machine."""
    return (f"{what} {'could not be fetched' if detail else 'are not in the cache'}"
            + (f": {detail}" if detail else "") + f". tui-tuner takes them from the {LLAMA_CPP_PYTHON} source "
            f"package on PyPI into {vendored_root(cache)}: run `python -m tui_tuner.models.llama_cpp_sdist` once "
            "where PyPI is reachable, or copy that folder from a machine that has it (set TUI_TUNER_CACHE to "
            "use another cache folder).")


def fetch_vendored(cache: Path | None = None, *, log: Callable[[str], None] = lambda s: None) -> Path:
    """Download the sdist with pip and keep the converter, vocabularies and templates; return the folder.

    The folder appears whole or not at all: everything is unpacked beside it and renamed into place.
    """
    cache = cache or cache_dir()
    root = vendored_root(cache)
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".fetch-") as tmp:
        tmp_path = Path(tmp)
        log(f"fetching llama.cpp's files from PyPI ({LLAMA_CPP_PYTHON} source, ~76 MB, once)")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--disable-pip-version-check", "-d", str(tmp_path / "dl"), LLAMA_CPP_PYTHON]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise LlamaCppUnavailable(offline_message(cache, f"pip could not run ({exc})")) from exc
        archives = sorted((tmp_path / "dl").glob("*.tar.gz")) if done.returncode == 0 else []
        if not archives:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no archive downloaded"]
            raise LlamaCppUnavailable(offline_message(cache, f"pip download failed: {last[0]}"))
        staging = tmp_path / "llama.cpp"
        extract_vendored(archives[0], staging)
        problem = converter_problem(staging) or models_problem(staging)
        if problem:
            raise LlamaCppUnavailable(f"{archives[0].name} does not contain llama.cpp's files ({problem}).")
        _move_into_place(staging, root, tmp_path / "old")
    log(f"llama.cpp's files cached in {root}")
    return root


def _move_into_place(staging: Path, root: Path, aside: Path) -> None:
    """Install `staging` as `root` atomically, never deleting files a running export may be using.

    A root whose converter works (from an older tui-tuner that kept only the converter) only
    gains `models/`; a broken root is moved aside whole first (rename is atomic, rmtree is not).
    """
    if root.exists() and converter_problem(root) is None:
        if models_problem(root) is None:
            return  # another process completed it meanwhile
        if (root / "models").exists():
            os.rename(root / "models", aside)
        os.replace(staging / "models", root / "models")
        return
    if root.exists():
        try:
            os.rename(root, aside)
        except OSError:
            pass  # another process replaced it meanwhile
    try:
        os.replace(staging, root)
    except OSError:
        if converter_problem(root) or models_problem(root):  # the copy that won a race is not whole
            raise


def _keep(inner: str) -> bool:
    if inner in (CONVERTER, "LICENSE") or inner.startswith(("conversion/", "gguf-py/", "models/templates/")):
        return True
    return inner.startswith("models/ggml-vocab-")


def extract_vendored(archive: Path, dest: Path) -> None:
    """Copy vendor/llama.cpp/{convert_hf_to_gguf.py, conversion/, gguf-py/, models/ vocabularies and templates, LICENSE}."""
    with tarfile.open(archive, "r:gz") as tar:
        members = []
        for member in tar.getmembers():
            _, sep, inner = member.name.partition("/vendor/llama.cpp/")
            if not sep or not (member.isfile() or member.isdir()) or not _keep(inner):
                continue
            member.name = inner
            members.append(member)
        dest.mkdir(parents=True)
        tar.extractall(dest, members=members, filter="data")


def vocab_path(name: str, *, fetch: bool = True, log: Callable[[str], None] = lambda s: None) -> Path:
    """The vocab-only GGUF `ggml-vocab-{name}.gguf` (e.g. `llama-bpe`, `qwen2`, `phi-3`, `gemma-4`)."""
    path = ensure_vendored("models", fetch=fetch, log=log) / "models" / f"ggml-vocab-{name}.gguf"
    if not path.is_file():
        raise LlamaCppUnavailable(f"{path.name} is not among llama.cpp's vocabularies in {path.parent}.")
    return path


def template_path(name: str, *, fetch: bool = True, log: Callable[[str], None] = lambda s: None) -> Path:
    """The chat template `models/templates/{name}.jinja` as its model's authors ship it."""
    path = ensure_vendored("models", fetch=fetch, log=log) / "models" / "templates" / f"{name}.jinja"
    if not path.is_file():
        raise LlamaCppUnavailable(f"{path.name} is not among llama.cpp's chat templates in {path.parent}.")
    return path


def template_paths(*, fetch: bool = True) -> list[Path]:
    """Every chat template llama.cpp vendors, sorted by name."""
    return sorted((ensure_vendored("models", fetch=fetch) / "models" / "templates").glob("*.jinja"))


def main(argv: list[str] | None = None) -> int:
    """`python -m tui_tuner.models.llama_cpp_sdist`: fetch the files (if missing) and print their folder."""
    del argv
    try:
        root = ensure_vendored("models", log=lambda s: print(s, file=sys.stderr))
    except LlamaCppUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(root)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
