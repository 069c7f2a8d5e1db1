#!/bin/bash
# tests/cuda/lease.sh — every GPU check in one short lease of the `device`
# machine (not run by CI): correctness first, then benchmarks, everything into
# $OUT (at most 8 files come back).  How the 2026-12-04 H200 runs were made.
#
# Build here, then carry what the script needs (the device machine has nvcc,
# PyTorch and CMake but no flex, bison or cmocka):
#   mkdir -p .dev/lib .dev/fashion && echo /.dev/ >> .git/info/exclude
#   cp -L /usr/lib/x86_64-linux-gnu/libcmocka.so.0 .dev/lib/
#   cp /usr/share/datasets/fashion-mnist/train-*.gz .dev/fashion/
#   run: bash tests/cuda/lease.sh [steps] [benches]
#   carry: .dev build/mlc build/libmlcrt.a build/libmlcrt_cuda.a build/tests/test_jit_cuda
#          build/tests/cuda/mlc_jit_start build/tests/libmlc_cuda_stub.so
# The build tree's absolute paths are kept valid by linking /work/main to the
# copy there.  steps: env,unit,devrun,e2e,bench; benches: gpu_bench.py's.
# Two runs of it took 436 s and 375 s (the second stopped by its limit in gpt2).
STEPS=${1:-env,unit,devrun,e2e,bench}
BENCHES=${2:-latency,fashion,gemm,elementwise,jit,gpt2}
R=$PWD
PY=${PY:-python3}
L=$OUT/log.txt
T0=$(date +%s)
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a "$L"; }
has() { case ",$STEPS," in *",$1,"*) return 0;; esac; return 1; }
mkdir -p /work
[ -e /work/main ] || ln -s "$R" /work/main
cd /work/main || exit 1
export MLC_CACHE_DIR=/tmp/mlc-cache
export LD_LIBRARY_PATH=$R/.dev/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
NVCC=$(readlink -f "$(command -v nvcc)")
CU=$(dirname "$(dirname "$NVCC")")
export MLC_NVCC=$NVCC
# cuBLAS / NVRTC where nvcc's link and dlopen find them
for d in "$CU/lib64" "$CU/targets/x86_64-linux/lib"; do
  [ -e "$d/libcublas.so" ] && export LIBRARY_PATH=$d${LIBRARY_PATH:+:$LIBRARY_PATH} LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$d
done
if ! ls "$CU"/lib64/libcublas.so* >/dev/null 2>&1 && ! ls "$CU"/targets/x86_64-linux/lib/libcublas.so* >/dev/null 2>&1; then
  d=$(python3 -c 'import nvidia.cublas, os; print(os.path.join(list(nvidia.cublas.__path__)[0], "lib"))' 2>/dev/null)
  if [ -n "$d" ]; then
    mkdir -p /tmp/culink && for f in "$d"/libcublas*.so.*; do b=$(basename "$f"); ln -sf "$f" /tmp/culink/"${b%%.so*}".so; done
    export LIBRARY_PATH=/tmp/culink:$d${LIBRARY_PATH:+:$LIBRARY_PATH} LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$d
  fi
fi
if has env; then
  say "env"
  { nvidia-smi; echo "nvcc=$NVCC CU=$CU"; nvcc --version | tail -2; command -v gcc cc clang python3;
    python3 -c 'import torch; print(torch.__version__, torch.cuda.is_available())';
    ls "$CU"/lib64 2>&1 | grep -E 'cublas|nvrtc' | head; ldconfig -p | grep -E 'libcuda\.|cublas|nvrtc' | head;
    echo LIBRARY_PATH=$LIBRARY_PATH; echo LD_LIBRARY_PATH=$LD_LIBRARY_PATH; ldd build/tests/test_jit_cuda; } >"$OUT/env.txt" 2>&1
fi
pids=""
if has unit; then
  say "unit: test_jit_cuda"
  ( timeout 150 build/tests/test_jit_cuda >"$OUT/unit.txt" 2>&1; echo "exit $?" >>"$OUT/unit.txt" ) &
  pids="$pids $!"
fi
if has devrun; then
  say "devrun: tests/cuda/device_run.sh"
  ( timeout 150 sh tests/cuda/device_run.sh build/mlc /work/main /tmp/devrun "$PY" >"$OUT/devrun.txt" 2>&1; echo "exit $?" >>"$OUT/devrun.txt" ) &
  pids="$pids $!"
fi
if has e2e; then
  say "e2e: tests/cuda/gpu_e2e.sh -j 12"
  MLC_CUDA_ARCH=90 timeout 190 sh tests/cuda/gpu_e2e.sh build/mlc "$PY" /work/main /tmp/e2e -j 15 >"$OUT/e2e.txt" 2>&1
  echo "exit $?" >>"$OUT/e2e.txt"
  say "e2e: $(tail -2 "$OUT/e2e.txt" | tr '\n' ' ')"
fi
for p in $pids; do wait "$p"; done
has unit && say "unit: $(tail -1 "$OUT/unit.txt")"
has devrun && say "devrun: $(tail -2 "$OUT/devrun.txt" | tr '\n' ' ')"
if has bench; then
  for b in ${BENCHES//,/ }; do
    case $b in gpt2) t=170;; elementwise) t=40;; *) t=70;; esac
    say "bench $b"
    PYTHONUNBUFFERED=1 timeout $t "$PY" bench/gpu_bench.py --mlc build/mlc --quick --no-compile \
      --data "$R/.dev/fashion" --jit-probe build/tests/cuda/mlc_jit_start --only "$b" \
      --out "$OUT/bench_$b.md" >>"$OUT/bench.txt" 2>&1
    say "bench $b: exit $?"
  done
  cat "$OUT"/bench_*.md >"$OUT/bench.md" 2>/dev/null; rm -f "$OUT"/bench_*.md
fi
say "done"
