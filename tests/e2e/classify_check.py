#!/usr/bin/python3
"""Trains the two example models with PyTorch, then checks that the
examples/classify programs built by CMake reach the same test accuracy with
those weights.

Usage:  /usr/bin/python3 tests/e2e/classify_check.py --build build [--epochs 1] [--models fashion_mlp,lenet5]

For each model: train (SGD, fixed seed, the train section's settings) on the
Fashion-MNIST training set, count correct test predictions in PyTorch, write
the weights as safetensors, run build/examples/classify/classify_<model>
--weights ... with a batch size that leaves a partial last batch, and require
the same count within a few images (argmax ties flip under float rounding).
Also runs each program from --seed and with bad weights (must fail cleanly).
Prints PASS/FAIL lines and `N passed, M failed`; exit status 1 on a failure.
"""

import argparse
import gzip
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run_e2e import safetensors_bytes  # noqa: E402

DATA = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    raw = gzip.open(path).read()
    rank = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(rank)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * rank).reshape(dims)


def fashion_mlp(p, x):
    h = x.float().div(255.0).flatten(1)
    h = F.relu(F.linear(h, p["fc1.weight"], p["fc1.bias"]))
    return F.linear(h, p["fc2.weight"], p["fc2.bias"])


def lenet5(p, x):
    h = x.float() / 255.0
    h = F.max_pool2d(F.relu(F.conv2d(h, p["conv1.weight"], p["conv1.bias"], padding=2)), 2)
    h = F.max_pool2d(F.relu(F.conv2d(h, p["conv2.weight"], p["conv2.bias"])), 2)
    h = F.relu(F.linear(h.flatten(1), p["fc1.weight"], p["fc1.bias"]))
    h = F.relu(F.linear(h, p["fc2.weight"], p["fc2.bias"]))
    return F.linear(h, p["fc3.weight"], p["fc3.bias"])


MODELS = {
    "fashion_mlp": (fashion_mlp, {"fc1": (256, 784), "fc2": (10, 256)}),
    "lenet5": (lenet5, {"conv1": (6, 1, 5, 5), "conv2": (16, 6, 5, 5), "fc1": (120, 400),
                        "fc2": (84, 120), "fc3": (10, 84)}),
}


def train(name, epochs):
    forward, layers = MODELS[name]
    torch.manual_seed(0)
    params = {}
    for layer, shape in layers.items():
        w = torch.empty(shape)
        torch.nn.init.kaiming_uniform_(w, a=5 ** 0.5)
        params[layer + ".weight"] = w.requires_grad_()
        params[layer + ".bias"] = torch.zeros(shape[0], requires_grad=True)
    x = torch.from_numpy(read_idx(DATA + "/train-images-idx3-ubyte.gz").copy())[:, None]
    y = torch.from_numpy(read_idx(DATA + "/train-labels-idx1-ubyte.gz").astype(np.int64))
    opt = torch.optim.SGD(params.values(), lr=0.05, momentum=0.9)
    for _ in range(epochs):
        for i in range(0, len(x), 64):
            loss = F.cross_entropy(forward(params, x[i:i + 64]), y[i:i + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return {k: v.detach() for k, v in params.items()}


def run(exe, *args):
    p = subprocess.run([exe, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def check_model(name, exe, epochs, tmp):
    results = []

    def result(ok, what):
        results.append(("PASS " if ok else "FAIL ") + name + ": " + what)

    if not os.access(exe, os.X_OK):
        return ["FAIL %s: %s not built" % (name, exe)]
    params = train(name, epochs)
    tx = torch.from_numpy(read_idx(DATA + "/t10k-images-idx3-ubyte.gz").copy())[:, None]
    ty = torch.from_numpy(read_idx(DATA + "/t10k-labels-idx1-ubyte.gz").astype(np.int64))
    with torch.no_grad():
        want = int((MODELS[name][0](params, tx).argmax(1) == ty).sum())
    wpath = os.path.join(tmp, name + ".safetensors")
    with open(wpath, "wb") as f:
        f.write(safetensors_bytes(params, {"format": "pt"}))

    rc, out, err = run(exe, "--weights", wpath, "--batch", "64")  # 10000 = 156 * 64 + 16
    m = re.search(r"accuracy:\s*(\d+)/(\d+)", out)
    if rc or not m:
        result(False, "classify with trained weights: exit %d\n%s%s" % (rc, out, err))
    else:
        got = int(m.group(1))
        result(abs(got - want) <= 3 and int(m.group(2)) == 10000,
               "trained weights: %d/10000 correct, PyTorch %d" % (got, want))

    rc, out, err = run(exe, "--seed", "3", "--batch", "1000", "--threads", "1")
    result(rc == 0 and "accuracy:" in out and "images/s" in out, "from --seed: exit %d %s" % (rc, err.strip()))

    bad = os.path.join(tmp, name + "_bad.safetensors")
    with open(bad, "wb") as f:
        f.write(safetensors_bytes({"fc1.weight": torch.zeros(3, 3)}))
    rc, out, err = run(exe, "--weights", bad)
    result(rc == 1 and err.strip() != "", "wrong weights rejected: exit %d: %s" % (rc, err.strip()))

    rc, out, err = run(exe, "--images", os.path.join(tmp, "missing.gz"))
    result(rc == 1 and "missing.gz" in err, "missing image file: exit %d: %s" % (rc, err.strip()))
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", required=True, help="the CMake build directory")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--models", default="fashion_mlp,lenet5")
    args = ap.parse_args()
    torch.set_num_threads(2)
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            exe = os.path.join(args.build, "examples", "classify", "classify_" + name)
            for line in check_model(name, exe, args.epochs, tmp):
                print(line, flush=True)
                lines.append(line)
    failed = sum(l.startswith("FAIL") for l in lines)
    print("%d passed, %d failed" % (len(lines) - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
