#!/usr/bin/env bash
# One device call: train a network on the lent GPU and send its checkpoint back in parts.
#   bash tools/gpu_train.sh ea-dk|pefnet|eam-net|microaunet [--minutes 8] [--bench] [-- napari-polyp train args]
#   bash tools/gpu_train.sh collect [--bench]
# Carry: .gpu (tools/pack_data.py), and .whl only if wheels were added. See tools/gpu_train.py.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}
PY=python3
[ -x .venv/bin/python ] && [ "${GPU_TRAIN_DRY_RUN:-}" = 1 ] && PY=.venv/bin/python  # the CPU rehearsal here
if compgen -G ".whl/*.whl" > /dev/null; then  # the device README's recipe; none are needed today
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:${PYTHONPATH:-} || exit 1
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}  # bench_all's subprocesses import the checkout
OUT=${OUT:-/tmp/gpu-train-out}; export OUT; mkdir -p "$OUT"
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY tools/gpu_train.py "$@" 2>&1 | tee "$OUT/log-$1.txt"
