#!/bin/sh
# Create (or update) the project-local environment .venv. Idempotent: safe to run any number of times.
#   PYTHON=python3.11 sh install/setup.sh     choose the interpreter
#   TORCH_SPEC="torch==2.13.0"               the torch to install when the environment has none
#   FACEGRAPH_GPU=1                           onnxruntime-gpu instead of onnxruntime
# An existing torch (e.g. a CUDA build you installed) is left alone.
set -eu
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
    echo "setup: installing $TORCH_SPEC (CPU build where available)"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "$TORCH_SPEC"
fi
FLAVOUR=cpu
[ "${FACEGRAPH_GPU:-0}" = "1" ] && FLAVOUR=gpu
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[$FLAVOUR,test]"
.venv/bin/python -c "import facegraph.core, torch, cv2, OpenImageIO, onnxruntime; print('setup: ok, torch', torch.__version__)"
