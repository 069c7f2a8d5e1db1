#!/bin/sh
# tests/cuda/nvcc_check.sh MLC NVCC SRC_DIR [FILTER] — the generated .cu of every
# example and of every conformance model (tests/e2e/cases) must compile with
# nvcc for sm_80 and sm_90 without a warning (tests/cuda/*.mdl too) (-Werror all-warnings, host code
# with -Wall -Wextra -Werror).  Needs no GPU.  Exit 77 (ctest: skipped) when
# nvcc is missing.
set -u
MLC=$1 NVCC=$2 SRC=$3 FILTER=${4:-}
[ -x "$NVCC" ] || { echo "SKIPPED: no nvcc at '$NVCC'"; exit 77; }
W=$(mktemp -d /tmp/nvcc_check.XXXXXX)
trap 'rm -rf "$W"' EXIT
fail=0 n=0
for f in "$SRC"/examples/*.mdl "$SRC"/tests/e2e/cases/*.mdl "$SRC"/tests/gpt2_train.mdl "$SRC"/tests/cuda/*.mdl; do
  name=$(basename "$f" .mdl)
  case "$name" in *"$FILTER"*) ;; *) continue ;; esac
  n=$((n + 1))
  if ! "$MLC" "$f" -o "$W/$name.cu" 2>"$W/$name.err"; then
    # a model the C backend rejects too is not a CUDA failure
    if "$MLC" "$f" -o "$W/$name.c" >/dev/null 2>&1; then echo "FAIL $name: mlc -o .cu"; cat "$W/$name.err"; fail=$((fail + 1)); fi
    continue
  fi
  if "$NVCC" -c "$W/$name.cu" -o "$W/$name.o" -I"$SRC/runtime" -I"$SRC/runtime/cuda" \
      -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
      -Werror all-warnings -Xcompiler -Wall,-Wextra,-Werror >"$W/$name.log" 2>&1; then
    echo "PASS $name"
  else
    echo "FAIL $name"; head -30 "$W/$name.log"; fail=$((fail + 1))
  fi
  rm -f "$W/$name.o"
done
echo "$((n - fail)) of $n compiled warning-free"
[ $fail -eq 0 ]
