#!/bin/sh
# tests/embed_check.sh — --embed-weights (spec sections 6 and 7): the weights
# translation unit is byte-identical run to run; `mlc run --embed-weights W`
# gives the same output bytes as `mlc run --weights W` (every byte value
# survives the string-literal encoding); the generated files build warning-free
# with gcc and clang; a file that does not fit the model is an error naming
# the tensor, as NAME_load reports it, and writes nothing.
# usage: tests/embed_check.sh PATH/TO/mlc
mlc=${1:?usage: embed_check.sh PATH/TO/mlc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
check() { # NAME COMMAND...: passes when the command succeeds
  name=$1; shift
  if "$@"; then echo "PASS $name"; pass=$((pass + 1)); else echo "FAIL $name"; fail=$((fail + 1)); fi
}
m=tests/embed/embed.mdl
/usr/bin/python3 tests/embed/make_weights.py "$tmp" || exit 1
mkdir -p "$tmp/a" "$tmp/b"
for d in a b; do "$mlc" $m -o "$tmp/$d/embed.c" --embed-weights "$tmp/good.safetensors" || exit 1; done
check "weights TU written" test -s "$tmp/a/embed_weights.c"
check "weights TU deterministic" cmp -s "$tmp/a/embed_weights.c" "$tmp/b/embed_weights.c"
check "model.c deterministic" cmp -s "$tmp/a/embed.c" "$tmp/b/embed.c"
check "create uses the embedded weights" grep -q "memcpy(m->weights, embed_embedded_weights" "$tmp/a/embed.c"
for cc in gcc clang; do
  command -v $cc >/dev/null || continue
  for f in embed embed_weights; do
    check "$cc -Wall -Wextra -Werror $f.c" $cc -std=c11 -O1 -Wall -Wextra -Werror -Iruntime -c "$tmp/a/$f.c" -o "$tmp/$f.o"
  done
done
# the weights compiled in equal the weights loaded from the file, byte for byte
"$mlc" run $m --input "x=$tmp/x.npy" --weights "$tmp/good.safetensors" --out "$tmp/load" >/dev/null
"$mlc" run $m --input "x=$tmp/x.npy" --embed-weights "$tmp/good.safetensors" --out "$tmp/embed" >/dev/null
"$mlc" run $m --input "x=$tmp/x.npy" --embed-weights "$tmp/tied.safetensors" --out "$tmp/tied" >/dev/null
for o in y b h c; do
  check "run output $o: embedded = loaded" cmp -s "$tmp/load/$o.npy" "$tmp/embed/$o.npy"
  check "run output $o: tied name embedded" cmp -s "$tmp/load/$o.npy" "$tmp/tied/$o.npy"
done
check "run output b holds the bytes" /usr/bin/python3 -c "
import numpy as np, sys
b = np.load('$tmp/embed/b.npy'); sys.exit(not (b.shape == (600,) and sorted(set(b.astype(int))) == list(range(256))))"
# files that do not fit: exit 1, PATH: error: naming the tensor, nothing written
expect_error() { # NAME PATTERN
  mkdir -p "$tmp/e_$1"
  "$mlc" $m -o "$tmp/e_$1/embed.c" --embed-weights "$tmp/$1.safetensors" 2>"$tmp/e_$1/err"
  rc=$?
  check "error $1: exit 1" test $rc -eq 1
  check "error $1: message" grep -q "^$tmp/$1.safetensors: error: .*$2" "$tmp/e_$1/err"
  check "error $1: nothing written" test ! -e "$tmp/e_$1/embed.c" -a ! -e "$tmp/e_$1/embed_weights.c"
}
check "check accepts good weights" "$mlc" check $m --embed-weights "$tmp/good.safetensors"
check "check refuses bad weights" sh -c "! '$mlc' check $m --embed-weights '$tmp/shape.safetensors' 2>/dev/null"
expect_error shape "tensor 'fc.bias': shape \[3\] expected"
expect_error dtype "tensor 'half': dtype F16 expected"
expect_error missing "tensor 'count' is missing"
expect_error extra "unexpected"
expect_error nofile "cannot open"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
