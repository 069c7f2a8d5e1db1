#!/usr/bin/python3
"""bench/fusion.py — what fusion and memory planning buy: -O0 against -O2, side by
side, for LeNet-5, ResNet-18 (CIFAR size) and GPT-2 small (bench/infer.py's models).

Per model and level: kernels (fusion groups) in run, the arena bytes, the sum of
all intermediate tensors (every value an -O0 run stores), the bytes the kernels
move, and the median run time.  Counts and bytes are exact and come from
`mlc MODEL --report --dim ...` (docs/design.md, "Fusion"); times come from
`mlc run --repeat N --threads T -O0|-O2` (the median of N timed runs of the
generated <model>_run; compiling and file I/O not counted).  -O0 and -O2 runs
alternate, so both see the same machine load.  Timings mean something only on a
quiet machine.

usage: /usr/bin/python3 bench/fusion.py [--mlc build/mlc] [--models lenet5,resnet18,gpt2]
       [--batch 64] [--threads 1] [--no-time]
This is a benchmark, not a test: it asserts nothing.
"""
import argparse, os, re, statistics, subprocess, sys, tempfile
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GPT2_SMALL = dict(V=50257, BLOCK=1024, LAYERS=12, HEADS=12, C=768)


def gpt2_small_mdl(td):
    """examples/gpt2.mdl with GPT-2 small's configuration (as bench/infer.py)."""
    src = open(os.path.join(ROOT, "examples", "gpt2.mdl")).read()
    for k, v in GPT2_SMALL.items():
        src = re.sub(rf"const {k} = \d+", f"const {k} = {v}", src)
    path = os.path.join(td, "gpt2_small.mdl")
    open(path, "w").write(src)
    return path


def models(td, batch):
    """name: (mdl, input name, input array, dims for --report, timed repeats)."""
    rng = np.random.default_rng(0)
    T = 64  # GPT-2: tokens per sequence
    gb = max(1, batch // 16)  # GPT-2: fewer sequences (64 tokens each)
    return {
        "lenet5": (os.path.join(ROOT, "examples", "lenet5.mdl"), "x",
                   rng.integers(0, 256, (batch, 1, 28, 28), dtype=np.uint8), {"B": batch}, 200),
        "resnet18": (os.path.join(ROOT, "examples", "resnet18.mdl"), "x",
                     rng.standard_normal((batch, 3, 32, 32), dtype=np.float32), {"B": batch}, 5),
        "gpt2": (gpt2_small_mdl(td), "idx", rng.integers(0, 50257, (gb, T), dtype=np.int64),
                 {"B": gb, "T": T}, 3),
    }


def report(mlc, mdl, dims):
    """Parses the run section of `mlc --report`."""
    argv = [mlc, "check", mdl, "--report"]
    for k, v in dims.items():
        argv += ["--dim", f"{k}={v}"]
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"mlc --report failed on {mdl}:\n{r.stderr}")
    run = r.stdout.split("\n\n")[0]  # the train step's report follows
    t = re.search(r"totals: (\d+) kernels \((\d+) fused groups\) at -O2, (\d+) at -O0; ([\d.]+) MFLOP; "
                  r"bytes moved (\d+) at -O2, (\d+) at -O0", run)
    a = re.search(r"arena: (\d+) bytes at -O2, (\d+) at -O0; intermediate tensors (\d+) bytes", run)
    if not t or not a:
        sys.exit(f"unexpected --report output:\n{run}")
    return dict(k2=int(t[1]), fused=int(t[2]), k0=int(t[3]), mflop=float(t[4]), mv2=int(t[5]), mv0=int(t[6]),
                a2=int(a[1]), a0=int(a[2]), inter=int(a[3]))


def time_run(mlc, mdl, name, x, level, reps, threads, td):
    xp = os.path.join(td, "x.npy")
    np.save(xp, x)
    r = subprocess.run([mlc, "run", mdl, level, "--input", f"{name}={xp}", "--out", td, "--repeat", str(reps),
                        "--threads", str(threads)], capture_output=True, text=True)
    m = re.search(r"median ([\d.]+) us", r.stderr)
    if r.returncode or not m:
        sys.exit(f"mlc run {level} failed on {mdl}:\n{r.stderr}")
    return float(m.group(1)) * 1e-6


def mb(n):
    return f"{n / 1e6:.2f} MB"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mlc", default=os.path.join(ROOT, "build", "mlc"))
    ap.add_argument("--models", default="lenet5,resnet18,gpt2")
    ap.add_argument("--batch", type=int, default=64, help="images per run (GPT-2: batch/16 sequences of 64 tokens)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3, help="alternating -O0/-O2 timing rounds (median of medians)")
    ap.add_argument("--no-time", action="store_true", help="counts and bytes only")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as td:
        ms = models(td, a.batch)
        print(f"fusion and planning, -O0 vs -O2 (batch {a.batch}; GPT-2 small: {max(1, a.batch // 16)} x 64 tokens; "
              f"{a.threads} thread(s))")
        print(f"{'model':<9} {'level':<5} {'kernels':>8} {'arena':>11} {'intermediates':>14} "
              f"{'inter/arena':>11} {'bytes moved':>12} {'run time':>10}")
        for name in a.models.split(","):
            mdl, iname, x, dims, reps = ms[name]
            r = report(a.mlc, mdl, dims)
            t = {"-O0": [], "-O2": []}
            if not a.no_time:
                for _ in range(a.rounds):
                    for level in ("-O0", "-O2"):
                        t[level].append(time_run(a.mlc, mdl, iname, x, level, reps, a.threads, td))
            for level, k, arena, moved in (("-O0", r["k0"], r["a0"], r["mv0"]), ("-O2", r["k2"], r["a2"], r["mv2"])):
                tm = f"{statistics.median(t[level]) * 1e3:.2f} ms" if t[level] else "-"
                print(f"{name:<9} {level:<5} {k:>8} {mb(arena):>11} {mb(r['inter']):>14} "
                      f"{r['inter'] / arena:>10.2f}x {mb(moved):>12} {tm:>10}")


if __name__ == "__main__":
    main()
