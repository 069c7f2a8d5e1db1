#!/bin/sh
# tests/determinism.sh — the same source and flags give byte-identical
# generated files, and a CPU run gives bit-identical outputs every time
# (spec section 6).   usage: tests/determinism.sh PATH/TO/mlc
mlc=${1:?usage: determinism.sh PATH/TO/mlc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
check() { # NAME COMMAND...: passes when the command succeeds
  name=$1; shift
  if "$@"; then echo "PASS $name"; pass=$((pass + 1)); else echo "FAIL $name"; fail=$((fail + 1)); fi
}
for m in examples/*.mdl; do
  n=$(basename "$m" .mdl)
  mkdir -p "$tmp/a" "$tmp/b"
  "$mlc" "$m" -o "$tmp/a/$n.c" 2>/dev/null && "$mlc" "$m" -o "$tmp/b/$n.c" 2>/dev/null
  check "generate $n" cmp -s "$tmp/a/$n.c" "$tmp/b/$n.c"
  check "header $n" cmp -s "$tmp/a/$n.h" "$tmp/b/$n.h"
done
# two runs of the same model on the same input: identical output bytes
/usr/bin/python3 -c "
import numpy as np
np.save('$tmp/x.npy', (np.random.default_rng(0).random((5, 1, 28, 28)) * 255).astype(np.uint8))" || exit 1
for i in 1 2; do
  "$mlc" run examples/lenet5.mdl --input "x=$tmp/x.npy" --seed 3 --out "$tmp/run$i" >/dev/null || fail=$((fail + 1))
done
check "run lenet5 twice" cmp -s "$tmp/run1/logits.npy" "$tmp/run2/logits.npy"
# ... for a given thread count, also when the threads split the work (a
# batch of 64 conv images over 3 threads; the GEMMs of the linear layers)
/usr/bin/python3 -c "
import numpy as np
np.save('$tmp/x64.npy', (np.random.default_rng(1).random((64, 1, 28, 28)) * 255).astype(np.uint8))" || exit 1
for t in 1 3; do
  for i in 1 2; do
    "$mlc" run examples/lenet5.mdl --input "x=$tmp/x64.npy" --seed 3 --threads $t --out "$tmp/t$t-$i" >/dev/null ||
      fail=$((fail + 1))
  done
  check "run lenet5 twice on $t threads" cmp -s "$tmp/t$t-1/logits.npy" "$tmp/t$t-2/logits.npy"
done
# training: the same weights after the same steps on 2 threads (conv weight
# gradients are summed per thread slot, then in slot order)
/usr/bin/python3 -c "
import numpy as np
g = np.random.default_rng(2)
np.save('$tmp/tx.npy', (g.random((200, 1, 28, 28)) * 255).astype(np.uint8))
np.save('$tmp/ty.npy', g.integers(0, 10, 200).astype(np.uint8))" || exit 1
for i in 1 2; do
  "$mlc" train examples/lenet5.mdl --data "x=$tmp/tx.npy" --data "y=$tmp/ty.npy" --epochs 1 --batch 32 \
    --threads 2 --save "$tmp/w$i.safetensors" >/dev/null 2>&1 || fail=$((fail + 1))
done
check "train lenet5 twice on 2 threads" cmp -s "$tmp/w1.safetensors" "$tmp/w2.safetensors"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
