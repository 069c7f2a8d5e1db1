#!/usr/bin/python3
"""bench/infer.py — inference latency of mlc's generated C against PyTorch (CPU),
side by side in one run: the Fashion-MNIST MLP, LeNet-5, ResNet-18 (CIFAR size)
and GPT-2 small, each at batch 1 and batch 256, with 1 and 2 threads each.

mlc's time is `mlc run --repeat N --threads T` (the median of N timed runs of the
generated <model>_run after one warm-up run; compiling and file I/O not counted).
PyTorch's is the median of as many calls of the same network under
torch.no_grad() with T threads (torch.set_num_threads and, as Debian's PyTorch
multiplies matrices in OpenBLAS, openblas_set_num_threads: bench/torch_threads.py).
The ratio compares each side at its
best thread count: mlc time / PyTorch time (below 1: mlc is faster).

usage: /usr/bin/python3 bench/infer.py [--mlc build/mlc] [--models mlp,lenet5,resnet18,gpt2]
       [--batches 1,256] [--threads 1,2] [--quick]
This is a benchmark, not a test: it asserts nothing.
"""
import argparse, os, re, statistics, subprocess, sys, tempfile, time
import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from trainmode_check import ResNet18  # noqa: E402  (the e2e suite's reference models)
from grad_ops2_check import GPT2  # noqa: E402
sys.path.insert(0, os.path.join(ROOT, "bench"))
from torch_threads import set_threads  # noqa: E402

GPT2_SMALL = dict(V=50257, BLOCK=1024, LAYERS=12, HEADS=12, C=768)


def gpt2_small_mdl(td):
    """examples/gpt2.mdl with GPT-2 small's configuration."""
    src = open(os.path.join(ROOT, "examples", "gpt2.mdl")).read()
    for k, v in GPT2_SMALL.items():
        src = re.sub(rf"const {k} = \d+", f"const {k} = {v}", src)
    path = os.path.join(td, "gpt2_small.mdl")
    open(path, "w").write(src)
    return path


def torch_mlp():
    lin1, lin2 = torch.nn.Linear(784, 256), torch.nn.Linear(256, 10)
    return lambda x: lin2(F.relu(lin1(x.flatten(1).float() / 255)))


def torch_lenet():
    nn = torch.nn
    c1, c2 = nn.Conv2d(1, 6, 5, padding=2), nn.Conv2d(6, 16, 5)
    f1, f2, f3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def f(x):
        h = F.max_pool2d(F.relu(c1(x.float() / 255)), 2)
        h = F.max_pool2d(F.relu(c2(h)), 2)
        return f3(F.relu(f2(F.relu(f1(h.flatten(1))))))
    return f


# name: (mdl path or None for GPT-2, input maker(batch) -> numpy, torch model maker, repeats {batch: n})
def cases(td):
    u8 = lambda b: np.random.default_rng(0).integers(0, 256, (b, 1, 28, 28), dtype=np.uint8)
    return {
        "mlp": (os.path.join(ROOT, "examples", "fashion_mlp.mdl"), u8, torch_mlp, {1: 3000, 256: 200}),
        "lenet5": (os.path.join(ROOT, "examples", "lenet5.mdl"), u8, torch_lenet, {1: 2000, 256: 20}),
        "resnet18": (os.path.join(ROOT, "examples", "resnet18.mdl"),
                     lambda b: np.random.default_rng(0).standard_normal((b, 3, 32, 32), dtype=np.float32),
                     lambda: ResNet18().eval(), {1: 50, 256: 3}),
        # GPT-2 small: 64 tokens at batch 1; 8 tokens per sequence at batch 256
        "gpt2": (None, lambda b: np.random.default_rng(0).integers(0, 50257, (b, 64 if b == 1 else 8), dtype=np.int64),
                 lambda: GPT2(**GPT2_SMALL).eval(), {1: 5, 256: 2}),
    }


def time_mlc(mlc, mdl, x, reps, threads, td):
    xp = os.path.join(td, "x.npy")
    np.save(xp, x)
    name = "idx" if x.dtype == np.int64 else "x"
    r = subprocess.run([mlc, "run", mdl, "--input", f"{name}={xp}", "--out", td, "--repeat", str(reps),
                        "--threads", str(threads)], capture_output=True, text=True)
    m = re.search(r"median ([\d.]+) us", r.stderr)
    if r.returncode or not m:
        sys.exit(f"mlc run failed on {mdl}:\n{r.stderr}")
    return float(m.group(1)) * 1e-6


def time_torch(model, x, reps, threads):
    set_threads(threads)  # PyTorch's pool and its BLAS's
    xt = torch.from_numpy(x)
    with torch.no_grad():
        model(xt)
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            model(xt)
            ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def fmt(s):
    return f"{s * 1e6:.0f} us" if s < 1e-3 else f"{s * 1e3:.2f} ms" if s < 1 else f"{s:.2f} s"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mlc", default=os.path.join(ROOT, "build", "mlc"))
    ap.add_argument("--models", default="mlp,lenet5,resnet18,gpt2")
    ap.add_argument("--batches", default="1,256")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--quick", action="store_true", help="a tenth of the repetitions")
    a = ap.parse_args()
    threads = [int(t) for t in a.threads.split(",")]
    torch.manual_seed(0)
    print(f"inference: mlc generated C vs PyTorch {torch.__version__} (CPU), median times; "
          f"ratio = mlc / PyTorch at each side's best thread count")
    hdr = " ".join(f"{'mlc ' + str(t) + 't':>10}" for t in threads) + " " + \
        " ".join(f"{'torch ' + str(t) + 't':>10}" for t in threads)
    print(f"{'model':<9} {'batch':>5} {hdr} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as td:
        cs = cases(td)
        for name in a.models.split(","):
            mdl, make_x, make_model, reps = cs[name]
            if mdl is None:
                mdl = gpt2_small_mdl(td)
            model = make_model()
            for b in [int(s) for s in a.batches.split(",")]:
                x = make_x(b)
                n = max(1, reps[b] // 10) if a.quick else reps[b]
                tm = [time_mlc(a.mlc, mdl, x, n, t, td) for t in threads]
                tt = [time_torch(model, x, n, t) for t in threads]
                cols = " ".join(f"{fmt(s):>10}" for s in tm + tt)
                print(f"{name:<9} {b:>5} {cols} {min(tm) / min(tt):6.2f}", flush=True)


if __name__ == "__main__":
    main()
