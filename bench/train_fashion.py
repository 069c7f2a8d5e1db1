#!/usr/bin/python3
"""bench/train_fashion.py — one Fashion-MNIST epoch, batch 64, SGD(lr=0.05,
momentum=0.9), trained by mlc (`mlc train`, generated C) and by PyTorch (CPU)
in one run, each with 1 and 2 threads; prints each side's time per thread
count, the test accuracy, and the ratio mlc / PyTorch at each side's best
thread count (as bench/infer.py: PyTorch trains these small models fastest on
one thread, mlc on two).

usage: /usr/bin/python3 bench/train_fashion.py [--mlc build/mlc] [--models fashion_mlp,lenet5]
       [--threads 1,2] [--epochs 1] [--repeat 5]
The mlc time is the training loop as `mlc train` reports it (samples divided by
its samples/s), so compiling the C is not counted; PyTorch's is the loop's wall
time.  This is a benchmark, not a test: it asserts nothing.
"""
import argparse, gzip, os, re, statistics, subprocess, sys, tempfile, time
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_threads import set_threads  # noqa: E402

D = "/usr/share/datasets/fashion-mnist"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    nd = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * nd).reshape(dims)


def torch_model(name):
    g = torch.Generator().manual_seed(0)
    def p(*shape, fan_in):
        b = 1 / fan_in ** 0.5
        return (torch.rand(*shape, generator=g) * 2 * b - b).requires_grad_(True)
    if name == "fashion_mlp":
        ps = [p(256, 784, fan_in=784), torch.zeros(256, requires_grad=True), p(10, 256, fan_in=256),
              torch.zeros(10, requires_grad=True)]
        def f(x):
            h = F.relu(F.linear(x.flatten(1), ps[0], ps[1]))
            return F.linear(h, ps[2], ps[3])
        return ps, f
    ps = [p(6, 1, 5, 5, fan_in=25), torch.zeros(6, requires_grad=True), p(16, 6, 5, 5, fan_in=150),
          torch.zeros(16, requires_grad=True), p(120, 400, fan_in=400), torch.zeros(120, requires_grad=True),
          p(84, 120, fan_in=120), torch.zeros(84, requires_grad=True), p(10, 84, fan_in=84),
          torch.zeros(10, requires_grad=True)]
    def f(x):
        h = F.max_pool2d(F.relu(F.conv2d(x, ps[0], ps[1], padding=2)), 2)
        h = F.max_pool2d(F.relu(F.conv2d(h, ps[2], ps[3])), 2)
        h = F.relu(F.linear(h.flatten(1), ps[4], ps[5]))
        h = F.relu(F.linear(h, ps[6], ps[7]))
        return F.linear(h, ps[8], ps[9])
    return ps, f


def bench_torch(name, xtr, ytr, xte, yte, epochs):
    ps, f = torch_model(name)
    opt = torch.optim.SGD(ps, lr=0.05, momentum=0.9)
    x = torch.from_numpy(xtr).float().div(255).unsqueeze(1)
    y = torch.from_numpy(ytr).long()
    t0 = time.perf_counter()
    for _ in range(epochs):
        for i in range(0, len(x), 64):
            loss = F.cross_entropy(f(x[i:i + 64]), y[i:i + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
    dt = time.perf_counter() - t0
    with torch.no_grad():
        acc = (f(torch.from_numpy(xte).float().div(255).unsqueeze(1)).argmax(1) == torch.from_numpy(yte).long()).float().mean().item()
    return dt, acc


def bench_mlc(mlc, name, epochs, threads):
    args = [mlc, "train", os.path.join(ROOT, "examples", name + ".mdl"),
            "--data", f"x={D}/train-images-idx3-ubyte.gz", "--data", f"y={D}/train-labels-idx1-ubyte.gz",
            "--eval", f"x={D}/t10k-images-idx3-ubyte.gz,y={D}/t10k-labels-idx1-ubyte.gz",
            "--epochs", str(epochs), "--batch", "64", "--threads", str(threads)]
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as td:
        r = subprocess.run(args + ["--save", os.path.join(td, "w.safetensors")], capture_output=True, text=True, env=env)
    if r.returncode:
        sys.exit("mlc train failed:\n" + r.stderr)
    rates = [float(rate) for _, rate in re.findall(r"batch (\d+)/\1 loss [\d.]+ (\d+) samples/s", r.stderr)]
    acc = float(re.findall(r"eval accuracy ([\d.]+)%", r.stdout)[-1]) / 100
    return 60000 * epochs / (sum(rates) / len(rates)), acc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mlc", default=os.path.join(ROOT, "build", "mlc"))
    ap.add_argument("--models", default="fashion_mlp,lenet5")
    ap.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=5, help="runs per side and thread count (the median is shown)")
    a = ap.parse_args()
    threads = [int(t) for t in a.threads.split(",")]
    xtr, ytr = idx(f"{D}/train-images-idx3-ubyte.gz"), idx(f"{D}/train-labels-idx1-ubyte.gz")
    xte, yte = idx(f"{D}/t10k-images-idx3-ubyte.gz"), idx(f"{D}/t10k-labels-idx1-ubyte.gz")
    print(f"Fashion-MNIST, {a.epochs} epoch(s), batch 64, SGD(lr=0.05, momentum=0.9), PyTorch {torch.__version__} "
          f"and mlc's generated C; seconds (median of {a.repeat} runs); ratio = mlc / PyTorch at each side's best "
          f"thread count")
    cols = [f"mlc {t}t" for t in threads] + [f"torch {t}t" for t in threads]
    print(f"{'model':<12}" + "".join(f" {c:>9}" for c in cols) + f" {'ratio':>6} {'mlc acc':>8} {'torch acc':>9}")
    for name in a.models.split(","):
        tm, tt = {}, {}
        for t in threads:
            rm, rt = [], []
            for _ in range(a.repeat):  # the two sides alternate, so both see the same machine load
                s, am = bench_mlc(a.mlc, name, a.epochs, t)
                rm.append(s)
                set_threads(t)  # PyTorch's pool and its BLAS's (bench/torch_threads.py)
                s, at = bench_torch(name, xtr, ytr, xte, yte, a.epochs)
                rt.append(s)
            tm[t], tt[t] = statistics.median(rm), statistics.median(rt)
        ratio = min(tm.values()) / min(tt.values())
        print(f"{name:<12}" + "".join(f" {tm[t]:9.2f}" for t in threads) + "".join(f" {tt[t]:9.2f}" for t in threads)
              + f" {ratio:6.2f} {am:8.4f} {at:9.4f}")
    print("accuracy: the last thread count's; target: ratio <= 0.5")


if __name__ == "__main__":
    main()
