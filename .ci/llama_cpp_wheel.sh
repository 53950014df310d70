#!/usr/bin/env bash
# Install llama-cpp-python (llama.cpp itself, for the GGUF export's quantization and proof).
# PyPI has only its source: compiling it takes ~10-25 min on 2 cores, so the wheel is built
# once into the cache and installed from there afterwards.
#
# GGML_NATIVE=OFF: a cached wheel may run on another CPU than the one that built it; a native
# build (e.g. AVX-512 here) dies with "Illegal instruction" there. Off, ggml still uses
# AVX2/FMA/F16C. LLAVA_BUILD=OFF: the multimodal library is not needed.
set -euo pipefail
VERSION=0.3.36
CACHE="${TUI_TUNER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tui-tuner}"
WHEELS="$CACHE/wheels"
PY="${PYTHON:-python3}"
mkdir -p "$WHEELS"
# The wheel is tagged py3-none-linux_x86_64 (the bindings load the library with ctypes).
if ! ls "$WHEELS"/llama_cpp_python-$VERSION-*.whl >/dev/null 2>&1; then
  echo "building llama-cpp-python $VERSION (llama.cpp, CPU) into $WHEELS, once" >&2
  start=$(date +%s)
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF ${CMAKE_ARGS:-}" \
    CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    "$PY" -m pip wheel -q --no-deps --no-binary llama-cpp-python -w "$WHEELS" "llama-cpp-python==$VERSION"
  echo "built in $(( $(date +%s) - start )) s" >&2
fi
"$PY" -m pip install -q --find-links "$WHEELS" "llama-cpp-python==$VERSION"
