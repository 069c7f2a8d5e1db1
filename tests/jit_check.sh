#!/bin/sh
# tests/jit_check.sh MLC BUILD_DIR — the JIT (libmlc, mlc.h) against the
# ahead-of-time path, bit for bit:
#   - mlc train --jit (the training loop in-process over the dlopen'd model)
#     against mlc train (a built executable): fashion_mlp with shuffling and
#     evaluation, lenet5, and a model with dropout and batch_norm trained
#     with Adam; the saved weights and checkpoints must be byte-identical and
#     the per-epoch losses and accuracies the same;
#   - examples/jit (a program that knows nothing of the model) and mlc run
#     --jit against mlc run, on fashion_mlp and lenet5;
#   - cold and warm JIT starts (printed, not checked: this machine is shared);
#   - --device cuda with --jit on a machine without a CUDA driver or GPU
#     fails with a clear message and exit status 1, never a crash; on the
#     recording stub driver (tests/cuda/stub_libcuda.c) mlc run --jit --device
#     cuda runs through the command line: every example at two batch sizes,
#     in bounds, outputs shaped right.
# (mlc run --jit against mlc run for every conformance model: the e2e test.)
set -u
MLC=$1 BUILD=$2
JIT="$BUILD/examples/jit/mlc_jit"
SRC=$(cd "$(dirname "$0")/.." && pwd)
W=$(mktemp -d /tmp/jit_check.XXXXXX)
trap 'rm -rf "$W"' EXIT
export MLC_CACHE_DIR="${MLC_CACHE_DIR:-$W/cache}"
fail=0
ok() { echo "PASS $*"; }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }

/usr/bin/python3 - "$W" <<'PY' || { echo "FAIL making data"; exit 1; }
import sys, numpy as np
d, r = sys.argv[1], np.random.default_rng(7)
np.save(d + "/img.npy", r.integers(0, 256, (300, 1, 28, 28), dtype=np.uint8))
np.save(d + "/lab.npy", r.integers(0, 10, (300,), dtype=np.uint8))
np.save(d + "/img_eval.npy", r.integers(0, 256, (70, 1, 28, 28), dtype=np.uint8))
np.save(d + "/lab_eval.npy", r.integers(0, 10, (70,), dtype=np.uint8))
np.save(d + "/x8.npy", r.standard_normal((200, 8)).astype(np.float32))
np.save(d + "/y8.npy", r.integers(0, 3, (200,), dtype=np.int64))
np.save(d + "/img2.npy", r.integers(0, 256, (3, 1, 28, 28), dtype=np.uint8))
PY
cat >"$W/dn.mdl" <<'MDL'
# dropout and batch_norm in train mode, Adam
model dn {
  input  x: f32[B, 8]
  param  fc1.weight: f32[16, 8] = kaiming_uniform
  param  fc1.bias:   f32[16]    = zeros
  param  bn.weight:  f32[16]    = ones
  param  bn.bias:    f32[16]    = zeros
  buffer bn.running_mean: f32[16] = zeros
  buffer bn.running_var:  f32[16] = ones
  param  fc2.weight: f32[3, 16] = kaiming_uniform
  param  fc2.bias:   f32[3]     = zeros
  h = linear(x, fc1.weight, fc1.bias)
  h = dropout(relu(batch_norm(h, bn.running_mean, bn.running_var, bn.weight, bn.bias)), 0.25)
  output logits = linear(h, fc2.weight, fc2.bias)
}
train dn {
  input  y: i64[B]
  loss   = cross_entropy(logits, y)
  optimizer = adam(lr=0.01)
}
MDL

# train NAME MODEL ARGS...: AOT and JIT, then compare
train() {
  name=$1 mdl=$2
  shift 2
  for mode in aot jit; do
    j=""
    [ $mode = jit ] && j=--jit
    "$MLC" train "$mdl" "$@" --save "$W/$name.$mode.safetensors" $j >"$W/$name.$mode.log" 2>&1 ||
      { cat "$W/$name.$mode.log"; bad "$name: mlc train $j"; return; }
  done
  for f in safetensors ckpt.safetensors; do
    cmp -s "$W/$name.aot.$f" "$W/$name.jit.$f" || { bad "$name: the .$f files differ"; return; }
  done
  grep '^epoch [0-9]*:' "$W/$name.aot.log" >"$W/$name.aot.ep"
  grep '^epoch [0-9]*:' "$W/$name.jit.log" >"$W/$name.jit.ep"
  [ -s "$W/$name.aot.ep" ] && cmp -s "$W/$name.aot.ep" "$W/$name.jit.ep" ||
    { diff "$W/$name.aot.ep" "$W/$name.jit.ep"; bad "$name: epoch summaries differ"; return; }
  ok "$name: mlc train --jit = mlc train, bit for bit ($(tail -n 1 "$W/$name.jit.ep"))"
}
train fashion_mlp "$SRC/examples/fashion_mlp.mdl" --data "x=$W/img.npy" --data "y=$W/lab.npy" \
  --eval "x=$W/img_eval.npy,y=$W/lab_eval.npy" --epochs 2 --batch 32 --shuffle --seed 3
train lenet5 "$SRC/examples/lenet5.mdl" --data "x=$W/img.npy" --data "y=$W/lab.npy" --epochs 1 --batch 50 --seed 1
train dn "$W/dn.mdl" --data "x=$W/x8.npy" --data "y=$W/y8.npy" --epochs 3 --batch 16 --shuffle --seed 9

# examples/jit and mlc run --jit against mlc run
for m in fashion_mlp lenet5; do
  "$MLC" run "$SRC/examples/$m.mdl" --input "x=$W/img2.npy" --seed 4 --out "$W/$m.aot" 2>"$W/err" ||
    { cat "$W/err"; bad "$m: mlc run"; continue; }
  "$MLC" run "$SRC/examples/$m.mdl" --input "x=$W/img2.npy" --seed 4 --out "$W/$m.jit" --jit 2>"$W/err" ||
    { cat "$W/err"; bad "$m: mlc run --jit"; continue; }
  mkdir -p "$W/$m.ex"
  "$JIT" "$SRC/examples/$m.mdl" --seed 4 --out "$W/$m.ex" "x=$W/img2.npy" >/dev/null 2>"$W/err" ||
    { cat "$W/err"; bad "$m: examples/jit"; continue; }
  same=1
  for f in "$W/$m.aot"/*.npy; do
    cmp -s "$f" "$W/$m.jit/$(basename "$f")" && cmp -s "$f" "$W/$m.ex/$(basename "$f")" || same=0
  done
  [ $same = 1 ] && ok "$m: examples/jit = mlc run --jit = mlc run" || bad "$m: outputs differ"
done

# cold and warm starts of the JIT (compile + build + load, then load from the cache)
t() { /usr/bin/python3 -c 'import subprocess, sys, time; t = time.time(); r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); print("%.0f ms" % ((time.time() - t) * 1e3)); sys.exit(r.returncode)' "$@"; }
export MLC_CACHE_DIR="$W/cache-timing"
cold=$(t "$JIT" "$SRC/examples/lenet5.mdl" --out "$W" "x=$W/img2.npy") && warm=$(t "$JIT" "$SRC/examples/lenet5.mdl" --out "$W" "x=$W/img2.npy") &&
  echo "INFO lenet5 through examples/jit: cold start $cold, warm start $warm (this machine, not checked)"

# --device cuda without a driver (or a GPU): a clear error, exit 1
if ! [ -e /dev/nvidiactl ]; then
  "$MLC" run "$SRC/examples/fashion_mlp.mdl" --input "x=$W/img2.npy" --out "$W/cu" --jit --device cuda 2>"$W/err"
  rc=$?
  if [ $rc = 1 ] && grep -Eq '^mlc: error: no CUDA (driver|device)' "$W/err"; then ok "--device cuda --jit: $(cat "$W/err")"
  else cat "$W/err"; bad "--device cuda --jit: exit $rc"; fi
  "$MLC" train "$SRC/examples/fashion_mlp.mdl" --data "x=$W/img.npy" --data "y=$W/lab.npy" --epochs 1 --batch 8 \
    --save "$W/cu.safetensors" --jit --device cuda 2>"$W/err"
  rc=$?
  [ $rc = 1 ] && grep -Eq '^mlc: error: no CUDA (driver|device)' "$W/err" && ok "mlc train --jit --device cuda: clear error" ||
    { cat "$W/err"; bad "mlc train --jit --device cuda: exit $rc"; }
fi
# the CUDA JIT through the command line on the recording stub driver
# (tests/cuda/stub_libcuda.c: nothing is computed, the outputs are the
# zeroed device memory's): runs, writes its outputs, trains through the loop
STUB="$BUILD/tests/libmlc_cuda_stub.so"
if [ -e "$STUB" ]; then
  MLC_LIBCUDA=$STUB MLC_LIBCUBLAS=$STUB "$MLC" run "$SRC/examples/lenet5.mdl" --input "x=$W/img2.npy" --out "$W/cus" \
    --jit --device cuda 2>"$W/err"
  rc=$?
  if [ $rc = 0 ] && /usr/bin/python3 -c 'import sys, numpy as np; a = np.load(sys.argv[1]); sys.exit(a.shape != (3, 10))' "$W/cus/logits.npy"
  then ok "mlc run --jit --device cuda on the stub driver: logits f32[3, 10] written"
  else cat "$W/err"; bad "mlc run --jit --device cuda on the stub driver: exit $rc"; fi
  # mlc train --jit --device cuda: libmlcrt's training loop over the CUDA
  # instance (train steps, evaluation, the step counter, save, checkpoint);
  # the stub computes nothing, so this checks the plumbing, not the numbers
  rm -f "$W/stub.report" "$W/cut.safetensors" "$W/cut.ckpt"
  MLC_LIBCUDA=$STUB MLC_LIBCUBLAS=$STUB MLC_CUDA_STUB_REPORT="$W/stub.report" "$MLC" train \
    "$SRC/examples/fashion_mlp.mdl" --data "x=$W/img.npy" --data "y=$W/lab.npy" --eval "x=$W/img.npy" \
    --eval "y=$W/lab.npy" --epochs 1 --batch 8 --jit --device cuda --save "$W/cut.safetensors" \
    --checkpoint "$W/cut.ckpt" >"$W/out" 2>"$W/err"
  rc=$?
  rep=$(cat "$W/stub.report" 2>/dev/null)
  if [ $rc = 0 ] && tr '\r' '\n' <"$W/err" | grep -q 'epoch 1/1 batch 38/38' &&
    cat "$W/out" "$W/err" | grep -q 'eval accuracy' && echo "$rep" | grep -q 'launches [1-9]' &&
    ! echo "$rep" | grep -qv ' bad 0 ' && [ -s "$W/cut.ckpt" ] &&
    "$MLC" run "$SRC/examples/fashion_mlp.mdl" --weights "$W/cut.safetensors" --input "x=$W/img2.npy" \
      --out "$W/cut_run" 2>>"$W/err"; then
    ok "mlc train --jit --device cuda on the stub driver: 38 steps, evaluation, weights the CPU loads, checkpoint ($(echo "$rep" | tr '\n' ' '))"
  else
    cat "$W/err"
    bad "mlc train --jit --device cuda on the stub: exit $rc, stub: $rep"
  fi
  # every example at batch 1 and 5 through the command line on the stub: runs,
  # outputs of the right shapes, kernels launched, and no copy, memset or
  # GEMM outside the device allocation (the stub's MLC_CUDA_STUB_REPORT)
  /usr/bin/python3 - "$W" <<'PY' || bad "making the stub inputs"
import sys, numpy as np
d, r = sys.argv[1], np.random.default_rng(3)
for b in (1, 5):
    np.save(f"{d}/s_img{b}.npy", r.integers(0, 256, (b, 1, 28, 28), dtype=np.uint8))
    np.save(f"{d}/s_rgb{b}.npy", r.standard_normal((b, 3, 32, 32)).astype(np.float32))
    np.save(f"{d}/s_idx{b}.npy", r.integers(0, 64, (b, 16), dtype=np.int64))
PY
  for ex in fashion_mlp:x=s_img lenet5:x=s_img resnet18:x=s_rgb gpt2:idx=s_idx; do
    m=${ex%%:*} in=${ex#*:}
    for b in 1 5; do
      rm -f "$W/stub.report" && rm -rf "$W/so" && mkdir -p "$W/so"
      MLC_LIBCUDA="$STUB" MLC_LIBCUBLAS="$STUB" MLC_CUDA_STUB_REPORT="$W/stub.report" \
        "$MLC" run "$SRC/examples/$m.mdl" --jit --device cuda --seed 1 --input "${in%%=*}=$W/${in#*=}$b.npy" \
        --out "$W/so" 2>"$W/err"
      rc=$?
      shapes=$(/usr/bin/python3 -c 'import glob, sys, numpy as np
print(" ".join(sorted(f.split("/")[-1] + str(np.load(f).shape) for f in glob.glob(sys.argv[1] + "/*.npy"))))' "$W/so")
      want=$(case $m in gpt2) echo "logits.npy($b, 16, 101)" ;; *) echo "logits.npy($b, 10)" ;; esac)
      rep=$(cat "$W/stub.report" 2>/dev/null)
      if [ $rc = 0 ] && [ "$shapes" = "$want" ] && echo "$rep" | grep -q 'launches [1-9]' &&
        ! echo "$rep" | grep -qv ' bad 0 '; then
        ok "stub libcuda: mlc run --jit --device cuda $m B=$b: $(echo "$rep" | tr '\n' ' ')"
      else
        cat "$W/err"
        bad "stub libcuda: $m B=$b: exit $rc, outputs '$shapes' (want '$want'), stub: $rep"
      fi
    done
  done
fi
[ $fail = 0 ] && echo "all passed" || echo "$fail failed"
[ $fail = 0 ]
