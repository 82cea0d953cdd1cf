#!/usr/bin/env bash
# Every GPU check of dynofa_ros in a few minutes, printing figures (dynofa_ros/bench/gpu.py):
# training images/s (CPU, CUDA fp32 / bf16 / fp16), 2 DDP ranks under torchrun, a CUDA profile,
# engine latency per member on CUDA and the CPU, and the backends' agreement.
#
#   tools/gpu_check.sh [FASHION_MNIST_DIR]
#
# Runs with the plain `python3` on PATH (or $PYTHON) and this checkout on PYTHONPATH: no project
# virtual environment, no ROS. Data: the argument, else $DYNOFA_FMNIST_DIR, else the Debian
# package's folder, else a synthetic set of the same shape (said so in the output).
# Figures also go as JSON to $DYNOFA_GPU_CHECK_JSON, else $OUT/gpu_check.json when OUT is set.
# Without a GPU it prints "no GPU here: skipped" and exits 0; DYNOFA_GPU_CHECK_DRYRUN=1 runs
# every check on the CPU with tiny sizes instead (to check this script without a GPU).
set -u
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
cd "$ROOT" || exit 1
DATA="${1:-${DYNOFA_FMNIST_DIR:-}}"
exec "$PY" -m dynofa_ros.bench.gpu ${DATA:+--data "$DATA"}
