#!/bin/sh
# tests/cuda/gpu_e2e.sh MLC PYTHON SRC WORKDIR — the conformance suite
# (tests/e2e/run_e2e.py) with every `mlc run` on --device cuda, against
# PyTorch, and each case again through the CUDA JIT (mlc run --jit --device
# cuda: NVRTC, the driver API, the launch program), whose outputs must be the
# nvcc build's bit for bit (the same kernel source and cuBLAS calls; both
# compile with FMA contraction on).  Exit 77 (ctest: skipped) on a machine
# without a CUDA device.  (mlc takes `--device cuda` as two words: run_e2e.py
# splits --mlc-args on spaces; `--device=cuda` is an unknown option.)
# Arguments after WORKDIR go to run_e2e.py (e.g. -j 16, --filter NAME).
set -u
MLC=$1 PY=$2 SRC=$3 W=$4
shift 4
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
  echo "SKIPPED: no CUDA device (nvidia-smi -L lists none)"
  exit 77
fi
exec "$PY" "$SRC/tests/e2e/run_e2e.py" --mlc "$MLC" --workdir "$W" "--mlc-args=--device cuda" --same-with-jit "$@"
