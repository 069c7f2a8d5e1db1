#!/bin/sh
# tests/cuda/device_run.sh MLC SRC WORKDIR [PYTHON] — `mlc run --device cuda` and
# `mlc train --device cuda` end to end on examples/fashion_mlp.mdl.
#
# What it checks depends on the machine:
#   - no CUDA toolkit (mlc built without libmlcrt_cuda, or no nvcc): both
#     commands fail with exit status 1 and one line saying what is missing;
#   - a toolkit but no GPU (CI): the model builds with nvcc and both commands
#     fail cleanly: exit status 1, exactly one line "...: error: ... no CUDA
#     device ..." on stderr, no crash, no internal error;
#   - a GPU (nvidia-smi -L lists one): run gives the CPU's outputs (to 1e-4),
#     run --jit (the CUDA JIT) gives the nvcc build's exactly,
#     train runs two epochs, and the trained weights give the CPU-trained
#     weights' outputs (to 1e-3).  Needs PYTHON with NumPy (skips without).
set -u
MLC=$1 SRC=$2 W=$3 PY=${4:-/usr/bin/python3}
MDL=$SRC/examples/fashion_mlp.mdl
rm -rf "$W" && mkdir -p "$W" || exit 1
export MLC_CACHE_DIR=${MLC_CACHE_DIR:-$W/cache}
fail=0
bad() { echo "FAIL: $*"; fail=1; }

# inputs: 3 images (raw pixels), their labels; written without NumPy
"$MLC" --version >/dev/null || exit 1
printf '\223NUMPY\001\000\166\000' >"$W/x.npy"
hdr="{'descr': '|u1', 'fortran_order': False, 'shape': (3, 1, 28, 28), }"
printf '%-117s\n' "$hdr" >>"$W/x.npy"
head -c 2352 /dev/urandom >>"$W/x.npy"
printf '\223NUMPY\001\000\166\000' >"$W/y.npy"
printf '%-117s\n' "{'descr': '|u1', 'fortran_order': False, 'shape': (3,), }" >>"$W/y.npy"
printf '\001\007\003' >>"$W/y.npy"

# one command on CUDA: prints its status; stderr in $W/err
cuda() { "$MLC" "$@" --device cuda >"$W/out" 2>"$W/err"; echo $?; }

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
  echo "a CUDA device: comparing with the CPU"
  "$PY" -c 'import numpy' 2>/dev/null || { echo "SKIPPED: $PY has no NumPy"; exit 77; }
  mkdir -p "$W/cpu" "$W/cuda"
  "$MLC" run "$MDL" --input x="$W/x.npy" --seed 3 --out "$W/cpu" || bad "mlc run on the CPU"
  rc=$(cuda run "$MDL" --input x="$W/x.npy" --seed 3 --out "$W/cuda")
  [ "$rc" = 0 ] || { cat "$W/err"; bad "mlc run --device cuda exited with $rc"; }
  mkdir -p "$W/jit"  # the CUDA JIT (NVRTC + driver API, no nvcc) vs the nvcc build
  rc=$(cuda run "$MDL" --input x="$W/x.npy" --seed 3 --out "$W/jit" --jit)
  [ "$rc" = 0 ] || { cat "$W/err"; bad "mlc run --jit --device cuda exited with $rc"; }
  train="--data x=$W/x.npy --data y=$W/y.npy --epochs 2 --batch 2 --seed 1"
  "$MLC" train "$MDL" $train --save "$W/cpu.safetensors" >/dev/null 2>&1 || bad "mlc train on the CPU"
  rc=$(cuda train "$MDL" $train --save "$W/cuda.safetensors")
  [ "$rc" = 0 ] || { cat "$W/err"; bad "mlc train --device cuda exited with $rc"; }
  mkdir -p "$W/tcpu" "$W/tcuda"
  "$MLC" run "$MDL" --input x="$W/x.npy" --weights "$W/cpu.safetensors" --out "$W/tcpu" || bad "run of the CPU weights"
  "$MLC" run "$MDL" --input x="$W/x.npy" --weights "$W/cuda.safetensors" --out "$W/tcuda" || bad "run of the CUDA weights"
  [ $fail = 0 ] || exit 1
  "$PY" - "$W" <<'EOF' || fail=1
import sys, numpy as np
w = sys.argv[1]
for x, y, tol in (("cpu", "cuda", 1e-4), ("tcpu", "tcuda", 1e-3), ("cpu", "jit", 1e-4), ("cuda", "jit", 0)):
    a, b = np.load(f"{w}/{x}/logits.npy"), np.load(f"{w}/{y}/logits.npy")
    err = float(np.max(np.abs(a - b) / (np.abs(a) + 1)))
    print(f"{x} vs {y} logits: max relative difference {err:.2e}")
    if not err <= tol: sys.exit(f"FAIL: above {tol}")
EOF
  [ $fail = 0 ] && echo "PASS: CUDA matches the CPU"
  exit $fail
fi

# no GPU: a clean failure, exit status 1 and a one-line reason
for cmd in run train; do
  if [ $cmd = run ]; then rc=$(cuda run "$MDL" --input x="$W/x.npy" --out "$W/o")
  else rc=$(cuda train "$MDL" --data x="$W/x.npy" --data y="$W/y.npy" --epochs 1 --batch 2); fi
  lines=$(wc -l <"$W/err")
  echo "mlc $cmd --device cuda: exit $rc: $(cat "$W/err")"
  [ "$rc" = 1 ] || bad "mlc $cmd --device cuda: exit status $rc, expected 1"
  [ "$lines" = 1 ] || bad "mlc $cmd --device cuda: $lines lines on stderr, expected one"
  if grep -q 'built without the CUDA runtime\|needs nvcc' "$W/err"; then
    echo "  (this mlc has no CUDA toolkit: the build step was not exercised)"
  else
    grep -q "^mlc $cmd: error: fashion_mlp_create: .*no CUDA device" "$W/err" ||
      bad "mlc $cmd --device cuda: not the 'no CUDA device' message"
  fi
done
[ $fail = 0 ] && echo "PASS: no CUDA device, clean failures"
exit $fail
