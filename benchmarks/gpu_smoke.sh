#!/usr/bin/env bash
# GPU smoke test of every training method on a ChatGLM2-6B-shaped random model (see gpu_smoke.py).
#   bash benchmarks/gpu_smoke.sh            # 6B shape, needs a GPU (well under 10 minutes on one H200)
#   bash benchmarks/gpu_smoke.sh --tiny     # tiny shape, anywhere
# Shape and scope via flags or env: GPU_SMOKE_LAYERS, GPU_SMOKE_HIDDEN, GPU_SMOKE_STEPS, GPU_SMOKE_METHODS.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
else
    echo "note: no nvidia-smi; CUDA-only parts (bf16, DeepSpeed ZeRO-3) are skipped or replaced, as printed below"
fi
exec "$PYTHON" benchmarks/gpu_smoke.py "$@"
