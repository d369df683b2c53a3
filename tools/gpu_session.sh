#!/usr/bin/env bash
# One device call: several training runs side by side on the lent GPU (tools/gpu_session.py).
#   bash tools/gpu_session.sh [--minutes 6.5] [--runs a,b]      carry: .gpu (tools/pack_data.py)
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
PY=python3
[ -x .venv/bin/python ] && [ "${GPU_SESSION_DRY_RUN:-}" = 1 ] && PY=.venv/bin/python  # the CPU rehearsal here
OUT=${OUT:-/tmp/gpu-session-out}; export OUT; mkdir -p "$OUT"
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY tools/gpu_session.py "$@"
