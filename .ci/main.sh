#!/bin/sh
# .ci/main.sh — the main job: build mlc, compile the Fashion-MNIST examples
# (examples/fashion_mlp.mdl, examples/lenet5.mdl) to C, and classify the
# Fashion-MNIST test set with them, reporting accuracy and images/s.
# Training is not implemented yet, so the weights are the seeded
# initialisers (expect chance-level accuracy, about 10%) unless WEIGHTS names
# a safetensors file.
set -e
cd "$(dirname "$0")/.."
sh .ci/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j2
for m in fashion_mlp lenet5; do
  echo "== $m =="
  if [ -n "$WEIGHTS" ]; then
    ./build/examples/classify/classify_$m --weights "$WEIGHTS"
  else
    ./build/examples/classify/classify_$m --seed 0
  fi
done
