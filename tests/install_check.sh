#!/bin/sh
# tests/install_check.sh — mlc as a user meets it (README "Using mlc from
# CMake"), in a temporary directory:
#   install  `cmake --install` into a fresh prefix; check the files; train
#            fashion_mlp for 1 epoch with the installed mlc (which must find
#            the installed runtime); build examples/app against the prefix
#            (find_package(mlc), mlc_add_model with EMBED_WEIGHTS, one static
#            binary) and run it on the Fashion-MNIST test set (accuracy >= 75%);
#            check that touching the weights re-runs mlc and that nothing
#            else does; build a program with pkg-config (mlcrt.pc) and the
#            plain `mlc -o --embed-weights` output; build examples/jit (the
#            JIT of libmlc) against the prefix and compare it with mlc run;
#            build and run tests/install (two threads, libmlc) against the prefix;
#            with CUDA, build examples/app through mlc_add_model(DEVICE cuda)
#            (tests/cuda/app) and run it where there is a GPU.
#   subdir   the same tests/install project with mlc added by add_subdirectory.
# usage: tests/install_check.sh install|subdir SOURCE_DIR BUILD_DIR
# Under the sanitizers ($MLC_CFLAGS set) the projects are built with those
# flags too and the app is not linked -static.
set -eu
mode=$1 src=$(cd "$2" && pwd) build=$(cd "$3" && pwd)
D=/usr/share/datasets/fashion-mnist
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export MLC_CACHE_DIR="$tmp/cache"
flags=${MLC_CFLAGS:-}
static=ON btype=Release
[ -n "$flags" ] && static=OFF btype=Debug # quicker to build; the checks run little code
fail() { echo "FAIL: $*"; exit 1; }

if [ "$mode" = install ]; then
  prefix="$tmp/prefix"
  cmake --install "$build" --prefix "$prefix" >/dev/null
  for f in bin/mlc include/mlcrt.h include/mlc.h lib/libmlcrt.a lib/libmlcrt.so lib/libmlc.a \
           lib/cmake/mlc/mlcConfig.cmake lib/cmake/mlc/mlcConfigVersion.cmake lib/cmake/mlc/mlcTargets.cmake \
           lib/cmake/mlc/mlc.cmake lib/pkgconfig/mlcrt.pc share/man/man1/mlc.1; do
    [ -e "$prefix/$f" ] || [ -e "$prefix/lib/$(uname -m)-linux-gnu/${f#lib/}" ] || fail "not installed: $f"
  done
  echo "PASS installed files"
  mlc="$prefix/bin/mlc"
  "$mlc" --version
else
  mlc="$build/mlc"
fi

# weights: 1 epoch of mlc train on the training set (a few seconds).  Under
# the sanitizers the runtime is an -O0 build, 20x slower: there the epoch is
# the first 6000 training images (77% test accuracy instead of 83%).  subdir
# checks no accuracy: 640 images do.
data_x="$D/train-images-idx3-ubyte.gz" data_y="$D/train-labels-idx1-ubyte.gz"
ntrain=60000
[ -n "$flags" ] && ntrain=6000
[ "$mode" = subdir ] && ntrain=640
if [ $ntrain -lt 60000 ]; then
  /usr/bin/python3 - "$tmp" $ntrain <<'PY' || fail "making the training subset"
import gzip, sys, numpy as np
D, n = "/usr/share/datasets/fashion-mnist/", int(sys.argv[2])
x = np.frombuffer(gzip.open(D + "train-images-idx3-ubyte.gz").read(), np.uint8, offset=16)
y = np.frombuffer(gzip.open(D + "train-labels-idx1-ubyte.gz").read(), np.uint8, offset=8)
np.save(sys.argv[1] + "/x.npy", x.reshape(-1, 1, 28, 28)[:n])
np.save(sys.argv[1] + "/y.npy", y[:n])
PY
  data_x="$tmp/x.npy" data_y="$tmp/y.npy"
fi
"$mlc" train "$src/examples/fashion_mlp.mdl" --data "x=$data_x" --data "y=$data_y" \
  --epochs 1 --batch 64 --shuffle --seed 1 --save "$tmp/w.safetensors" >"$tmp/train.log" 2>&1 ||
  { cat "$tmp/train.log"; fail "mlc train"; }
tail -n 1 "$tmp/train.log"
echo "PASS mlc train ($mode)"
gzip -dc "$D/t10k-images-idx3-ubyte.gz" >"$tmp/images"
gzip -dc "$D/t10k-labels-idx1-ubyte.gz" >"$tmp/labels"
ntest=10000 rounds=20
if [ -n "$flags" ]; then # sanitizers: the first 2000 test images, fewer rounds in threads
  ntest=2000 rounds=3
  /usr/bin/python3 -c "
import struct, sys
for name, head, size in (('images', 16, 784), ('labels', 8, 1)):
    b = open('$tmp/' + name, 'rb').read()
    open('$tmp/' + name, 'wb').write(b[:4] + struct.pack('>I', $ntest) + b[8:head] + b[head:head + $ntest * size])
" || fail "making the test subset"
fi

if [ "$mode" = install ]; then
  # examples/app, copied with the model it names, built against the prefix
  mkdir -p "$tmp/src/app"
  cp "$src/examples/app/CMakeLists.txt" "$src/examples/app/app.c" "$tmp/src/app/"
  cp "$src/examples/fashion_mlp.mdl" "$tmp/src/"
  cmake -S "$tmp/src/app" -B "$tmp/app" -DCMAKE_PREFIX_PATH="$prefix" -DWEIGHTS="$tmp/w.safetensors" \
    -DAPP_STATIC=$static -DCMAKE_BUILD_TYPE=$btype \
  -DCMAKE_C_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="$flags" >"$tmp/log" 2>&1 || { cat "$tmp/log"; fail "configure examples/app"; }
  cmake --build "$tmp/app" >"$tmp/log" 2>&1 || { cat "$tmp/log"; fail "build examples/app"; }
  if [ $static = ON ]; then
    file "$tmp/app/fashion_app" | grep -q "statically linked" || fail "fashion_app is not a static binary"
  fi
  cp "$tmp/app/fashion_app" "$tmp/fashion_app"
  mv "$tmp/w.safetensors" "$tmp/w.moved" # nothing is read at run time
  (cd "$tmp" && ./fashion_app images labels) >"$tmp/out" || { cat "$tmp/out"; fail "fashion_app"; }
  mv "$tmp/w.moved" "$tmp/w.safetensors"
  cat "$tmp/out"
  grep -Eq '^image 0: (T-shirt/top|Trouser|Pullover|Dress|Coat|Sandal|Shirt|Sneaker|Bag|Ankle boot)$' "$tmp/out" ||
    fail "fashion_app: no valid class for image 0"
  acc=$(sed -n "s/^accuracy: \([0-9.]*\)% of $ntest images\$/\1/p" "$tmp/out")
  [ -n "$acc" ] && awk "BEGIN { exit !($acc >= 75) }" || fail "fashion_app: accuracy '$acc' below 75%"
  echo "PASS examples/app (accuracy $acc%)"

  # mlc re-runs when the weights (or the .mdl) change, and only then
  cmake --build "$tmp/app" >"$tmp/log" 2>&1
  grep -q "mlc: " "$tmp/log" && { cat "$tmp/log"; fail "mlc re-ran with nothing changed"; }
  sleep 1
  touch "$tmp/w.safetensors"
  cmake --build "$tmp/app" >"$tmp/log" 2>&1
  grep -q "mlc: ../fashion_mlp.mdl" "$tmp/log" || { cat "$tmp/log"; fail "mlc did not re-run after the weights changed"; }
  touch "$tmp/src/fashion_mlp.mdl"
  cmake --build "$tmp/app" >"$tmp/log" 2>&1
  grep -q "mlc: ../fashion_mlp.mdl" "$tmp/log" || { cat "$tmp/log"; fail "mlc did not re-run after the .mdl changed"; }
  echo "PASS mlc_add_model dependencies"

  # pkg-config and the plain command line
  mkdir -p "$tmp/pc"
  "$mlc" "$src/examples/fashion_mlp.mdl" -o "$tmp/pc/fashion_mlp.c" --embed-weights "$tmp/w.safetensors"
  pc=$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig:$prefix/lib/$(uname -m)-linux-gnu/pkgconfig" \
       pkg-config --cflags --libs mlcrt)
  ${CC:-cc} -std=c11 -O2 -Wall -Wextra -Werror $flags -I"$tmp/pc" "$src/examples/app/app.c" "$tmp/pc/fashion_mlp.c" \
    "$tmp/pc/fashion_mlp_weights.c" $pc -o "$tmp/pc/app" || fail "build with pkg-config ($pc)"
  # -lmlcrt links the shared runtime where both are installed
  (cd "$tmp" && LD_LIBRARY_PATH="$prefix/lib" ./pc/app images labels) >"$tmp/out2" || fail "the pkg-config build failed to run"
  cmp -s "$tmp/out" "$tmp/out2" || { diff "$tmp/out" "$tmp/out2"; fail "the pkg-config build classifies differently"; }
  echo "PASS pkg-config mlcrt ($pc)"

  # examples/jit against the prefix: libmlc's JIT, a model chosen at run time,
  # classifying as the compiled-in app does (the runtime found beside the
  # installed mlc: MLC_RUNTIME_*)
  mkdir -p "$tmp/src/jit"
  cp "$src/examples/jit/CMakeLists.txt" "$src/examples/jit/jit.c" "$tmp/src/jit/"
  cmake -S "$tmp/src/jit" -B "$tmp/jit" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=$btype \
    -DCMAKE_C_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="$flags" >"$tmp/log" 2>&1 || { cat "$tmp/log"; fail "configure examples/jit"; }
  cmake --build "$tmp/jit" >"$tmp/log" 2>&1 || { cat "$tmp/log"; fail "build examples/jit"; }
  /usr/bin/python3 -c "
import numpy as np
b = open('$tmp/images', 'rb').read()
np.save('$tmp/x5.npy', np.frombuffer(b, np.uint8, offset=16)[:5 * 784].reshape(5, 1, 28, 28))
" || fail "making the JIT input"
  mkdir -p "$tmp/jo" "$tmp/ro"
  MLC_RUNTIME_INCLUDE="$prefix/include" MLC_RUNTIME_LIB="$(ls "$prefix"/lib*/libmlcrt.a "$prefix"/lib/*/libmlcrt.a 2>/dev/null | head -n 1)" \
    "$tmp/jit/mlc_jit" "$src/examples/fashion_mlp.mdl" --weights "$tmp/w.safetensors" --out "$tmp/jo" "x=$tmp/x5.npy" >"$tmp/log" 2>&1 ||
    { cat "$tmp/log"; fail "examples/jit"; }
  "$mlc" run "$src/examples/fashion_mlp.mdl" --weights "$tmp/w.safetensors" --input "x=$tmp/x5.npy" --out "$tmp/ro" 2>"$tmp/log" ||
    { cat "$tmp/log"; fail "mlc run for examples/jit"; }
  cmp -s "$tmp/jo/logits.npy" "$tmp/ro/logits.npy" || fail "examples/jit and mlc run differ"
  echo "PASS examples/jit (libmlc's JIT against the prefix, = mlc run)"

  # mlc_add_model(... DEVICE cuda): examples/app's classifier as CUDA
  # (tests/cuda/app), when this mlc has the CUDA runtime.  Built here; it runs
  # only where a GPU is (then it must classify as the CPU build did); without
  # one it must fail cleanly with "no CUDA device".  Not under the sanitizers.
  nvcc=$(sed -n 's/^CUDAToolkit_NVCC_EXECUTABLE:FILEPATH=//p' "$build/CMakeCache.txt")
  if [ -z "$flags" ] && [ -x "$nvcc" ] && { [ -e "$prefix/lib/libmlcrt_cuda.a" ] ||
       [ -e "$prefix/lib/$(uname -m)-linux-gnu/libmlcrt_cuda.a" ]; }; then
    cmake -S "$src/tests/cuda/app" -B "$tmp/capp" -DCMAKE_PREFIX_PATH="$prefix" -DWEIGHTS="$tmp/w.safetensors" \
      -DCMAKE_CUDA_COMPILER="$nvcc" -DCMAKE_CUDA_ARCHITECTURES="${MLC_CUDA_ARCH:-80}" -DCMAKE_BUILD_TYPE=Release \
      >"$tmp/log" 2>&1 || { cat "$tmp/log"; fail "configure tests/cuda/app"; }
    cmake --build "$tmp/capp" >"$tmp/log" 2>&1 || { cat "$tmp/log"; fail "build tests/cuda/app (DEVICE cuda)"; }
    crc=0
    (cd "$tmp" && ./capp/fashion_app_cuda images labels) >"$tmp/out3" 2>"$tmp/err3" || crc=$?
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
      [ $crc = 0 ] || { cat "$tmp/err3"; fail "fashion_app_cuda exited with $crc"; }
      cacc=$(sed -n "s/^accuracy: \([0-9.]*\)% of $ntest images\$/\1/p" "$tmp/out3")
      [ -n "$cacc" ] && awk "BEGIN { d = $cacc - $acc; exit !(d < 0.2 && d > -0.2) }" ||
        fail "fashion_app_cuda: accuracy '$cacc', the CPU build's $acc"
      echo "PASS mlc_add_model DEVICE cuda (accuracy $cacc% on the GPU, $acc% on the CPU)"
    else
      [ $crc = 1 ] && grep -q "no CUDA device" "$tmp/err3" ||
        { cat "$tmp/err3"; fail "fashion_app_cuda without a GPU: exit $crc, not a clean 'no CUDA device'"; }
      echo "PASS mlc_add_model DEVICE cuda: built; run SKIPPED (no CUDA device: $(cat "$tmp/err3"))"
    fi
  else
    echo "SKIPPED mlc_add_model DEVICE cuda (no CUDA runtime in this mlc, or the sanitizers)"
  fi
  set -- -DCMAKE_PREFIX_PATH="$prefix"
else
  set -- -DMLC_SOURCE="$src"
fi

# tests/install: two threads and libmlc, via find_package or add_subdirectory
cmake -S "$src/tests/install" -B "$tmp/it" "$@" -DWEIGHTS="$tmp/w.safetensors" -DCMAKE_BUILD_TYPE=$btype \
  -DCMAKE_C_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="$flags" \
  >"$tmp/log" 2>&1 || { cat "$tmp/log"; fail "configure tests/install ($mode)"; }
cmake --build "$tmp/it" -j2 >"$tmp/log" 2>&1 || { cat "$tmp/log"; fail "build tests/install ($mode)"; }
"$tmp/it/threads" $rounds || fail "threads ($mode)"
mkdir -p "$tmp/lib" && (cd "$tmp/lib" && "$tmp/it/libmlc_check") || fail "libmlc_check ($mode)"
echo "PASS tests/install ($mode)"
