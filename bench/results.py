#!/usr/bin/python3
"""bench/results.py — runs every CPU benchmark of this folder and writes
bench/RESULTS.md: the machine, the date, the load when each ran, and each
script's table as it printed it.

usage: /usr/bin/python3 bench/results.py [--quick] [--out bench/RESULTS.md]
  --quick   fewer repetitions (bench/gemm --quick, bench/infer.py --quick)
Builds build/ first if needed.  This is a benchmark run, not a test.
"""
import argparse, time, datetime, os, platform, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = "/usr/bin/python3"


def sh(cmd):
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}")
    return r.stdout.strip()


def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "RESULTS.md"))
    a = ap.parse_args()
    if not os.path.exists(os.path.join(ROOT, "build", "mlc")):
        sh(["cmake", "-S", ".", "-B", "build"])
        sh(["cmake", "--build", "build", "-j2"])
    q = ["--quick"] if a.quick else []
    runs = [
        ("GEMM: `bench/gemm`", "mlc's GEMM against OpenBLAS `cblas_sgemm`, GFLOP/s (median of 9 alternating samples), 1 and 2 threads; "
         "ratio = mlc / OpenBLAS throughput (above 1: mlc faster). Target: at least 0.9 for n >= 256. "
         "Both sides' idle threads spin ~0.2 ms after a call (OPENBLAS_THREAD_TIMEOUT=19, set by bench/gemm): by "
         "default OpenBLAS's busy-wait ~0.1 s and, on 2 cores, take the core from mlc's worker in the next sample.",
         [os.path.join(ROOT, "bench", "gemm")] + q),
        ("Training: `bench/train_fashion.py`", "one Fashion-MNIST epoch, batch 64, SGD(lr=0.05, momentum=0.9), "
         "1 and 2 threads on each side; ratio = mlc time / PyTorch time at each side's best thread count (PyTorch's "
         "is one thread: two are slower for these models). Target: at most 0.5.",
         [PY, os.path.join(ROOT, "bench", "train_fashion.py")]),
        ("Inference: `bench/infer.py`", "median latency of the generated `<model>_run` (`mlc run --repeat`) and of "
         "the same network in PyTorch under `torch.no_grad()`, 1 and 2 threads each; ratio = mlc / PyTorch at each "
         "side's best thread count (below 1: mlc faster). Targets: every model faster than PyTorch; MLP batch 1 at "
         "most 0.3.",
         [PY, os.path.join(ROOT, "bench", "infer.py")] + q),
        ("Fusion and planning: `bench/fusion.py`", "-O0 (no fusion, no buffer reuse) against -O2 for LeNet-5 and "
         "ResNet-18 at batch 64 and GPT-2 small at 4 x 64 tokens, 1 thread: kernels, arena bytes, the sum of all "
         "intermediate tensors, bytes the kernels move, median run time. Aims: arena at least 3x smaller than the "
         "intermediates, -O2 faster than -O0 on every model.",
         [PY, os.path.join(ROOT, "bench", "fusion.py")]),
    ]
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = ["# Benchmark results", "",
           f"Regenerate with `/usr/bin/python3 bench/results.py` (this file was written by it on {when}).",
           f"Machine: {cpu_model()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}; "
           f"mlc built {sh(['sh', '-c', 'grep CMAKE_BUILD_TYPE: build/CMakeCache.txt | cut -d= -f2'])}, "
           f"GEMM kernels chosen at run time.",
           "The machine is shared: the load average before each run is given, and a loaded machine slows "
           "both sides of a comparison (two-thread figures suffer most).", ""]
    # the GPU section (bench/gpu_bench.py, run on a GPU machine) is kept as it is
    old = open(a.out).read() if os.path.exists(a.out) else ""
    gpu = old[old.find("## GPU: "):] if "## GPU: " in old else ""
    for n, (title, what, cmd) in enumerate(runs):
        # A pause between benchmarks: after one that touches gigabytes (GPT-2 at batch 256),
        # this VM's second CPU ran slow for tens of seconds (the host taking the memory back,
        # we think): the MLP's epoch at 2 threads took 0.51 s right after it, 0.34 s 30 s later.
        if n and not a.quick:
            time.sleep(60)
        load = open("/proc/loadavg").read().split()[0]
        print(f"running {' '.join(os.path.relpath(c, ROOT) if c.startswith(ROOT) else c for c in cmd)} ...",
              flush=True)
        text = sh(cmd)
        out += [f"## {title}", "", what, f"Load average before the run: {load}.", "", "```", text, "```", ""]
        with open(a.out, "w") as f:  # written after each run, so a long run leaves what it has
            f.write("\n".join(out) + ("\n" + gpu if gpu else ""))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
