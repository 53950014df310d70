#!/usr/bin/env bash
# The GPU smoke test: every GPU path once, PASS/FAIL per path (details: docs/gpu-validation.md).
#
#     bash bench/gpu_smoke.sh          # on a GPU server, about 5 minutes on one GPU, no hub access
#     bash bench/gpu_smoke.sh --cpu    # the CPU dry run (tests/integration/test_gpu_smoke.py runs it)
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec timeout "${SMOKE_LIMIT_S:-480}" "${PYTHON:-python3}" bench/gpu_smoke.py "$@"
