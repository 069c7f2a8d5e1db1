#!/bin/sh
# bench/embed_weights.sh — the cost of --embed-weights for a 100 MB weights
# file (a 5000 x 5000 f32 linear layer): time and peak memory of mlc writing
# the weights translation unit, and of gcc / clang compiling it.
# usage: bench/embed_weights.sh PATH/TO/mlc     (needs /usr/bin/time, numpy)
set -e
mlc=$(cd "$(dirname "${1:?usage: embed_weights.sh PATH/TO/mlc}")" && pwd)/$(basename "$1")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
cat >big.mdl <<'MDL'
model big {
  input x: f32[B, 5000]
  param fc.weight: f32[5000, 5000] = normal
  param fc.bias: f32[5000] = zeros
  output y = linear(x, fc.weight, fc.bias)
}
MDL
/usr/bin/python3 - <<'PY'
import json, struct, numpy as np
rng = np.random.default_rng(0)
t = {"fc.weight": rng.standard_normal((5000, 5000), dtype=np.float32) * 0.01,
     "fc.bias": rng.standard_normal(5000, dtype=np.float32)}
hdr, off = {}, 0
for k, v in t.items():
    hdr[k] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [off, off + v.nbytes]}
    off += v.nbytes
h = json.dumps(hdr).encode()
h += b" " * ((8 - len(h) % 8) % 8)
with open("big.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(v.tobytes() for v in t.values()))
PY
measure() { # LABEL COMMAND...
  label=$1
  shift
  /usr/bin/time -f "%e s, %M KB max RSS" -o t.txt "$@" >/dev/null
  echo "$label: $(cat t.txt)"
}
echo "weights: $(stat -c %s big.safetensors) bytes"
measure "mlc --embed-weights" "$mlc" big.mdl -o big.c --embed-weights big.safetensors
echo "big_weights.c: $(stat -c %s big_weights.c) bytes"
for cc in gcc clang; do
  command -v $cc >/dev/null || continue
  measure "$cc -O2 -c big_weights.c" $cc -std=c11 -O2 -Wall -Wextra -Werror -c big_weights.c -o big_weights.o
done
