#!/bin/sh
# .ci/main.sh — the main job: build mlc, train the Fashion-MNIST examples
# with `mlc train` (examples/fashion_mlp.mdl: 3 epochs; examples/lenet5.mdl:
# 1 epoch), then classify the Fashion-MNIST test set with the generated C
# (examples/classify), reporting accuracy and images/s.
# EPOCHS_MLP / EPOCHS_LENET change the number of epochs.
set -e
cd "$(dirname "$0")/.."
sh .ci/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j2
D=/usr/share/datasets/fashion-mnist
train() { # MODEL EPOCHS
  echo "== mlc train examples/$1.mdl ($2 epochs) =="
  ./build/mlc train "examples/$1.mdl" \
    --data "x=$D/train-images-idx3-ubyte.gz" --data "y=$D/train-labels-idx1-ubyte.gz" \
    --eval "x=$D/t10k-images-idx3-ubyte.gz,y=$D/t10k-labels-idx1-ubyte.gz" \
    --epochs "$2" --batch 64 --shuffle --seed 1 --save "build/$1.safetensors"
  echo "== classify the test set with the generated C (examples/classify) =="
  "./build/examples/classify/classify_$1" --weights "build/$1.safetensors" --batch 256
}
train fashion_mlp "${EPOCHS_MLP:-3}"
train lenet5 "${EPOCHS_LENET:-1}"
