#!/usr/bin/python3
"""bench/gpu_bench.py — the CUDA backend against PyTorch on one GPU, side by side
in one run (issue 8's targets in brackets):

  fashion      one Fashion-MNIST epoch, batch 64, SGD(lr=0.05, momentum=0.9), for
               the MLP and LeNet-5: `mlc train --device cuda` vs PyTorch eager vs
               torch.compile(mode="max-autotune")            [LeNet-5 <= 0.3 s on an H100]
  latency      the MLP at batch 1, host to host (numpy in, numpy out):
               `mlc run --device cuda --repeat` vs the same in PyTorch     [< 20 us]
  gpt2         a GPT-2 small training step (AdamW), batch 8 x 1024 tokens
                                                      [at least as fast as torch.compile]
  elementwise  one fused group of 6 elementwise ops over 2^24..2^26 floats:
               bytes moved / kernel time, against the GPU's peak memory bandwidth
               and a device-to-device copy        [>= 80% of the memory bandwidth]
  gemm         a large f32 GEMM (and TF32 with --precision tf32): mlc's kernel
               time vs torch.matmul (cuBLAS)                   [within 10% of cuBLAS]
  jit          the CUDA JIT's start (issue 9) for GPT-2 small: mlc_model_from_file
               with MLCRT_CUDA on an empty cache (NVRTC compiles) and on a warm
               one (the PTX cached), then create and a first run at 1 x 64
               tokens (tests/cuda/jit_start.c, built as build/tests/cuda/
               mlc_jit_start)                               [warm start < 50 ms]

How each side is timed:
  - training: mlc's epoch is the training loop as `mlc train` reports it (samples
    divided by its samples/s; compiling not counted), the second of two epochs;
    PyTorch's is the wall time of its second epoch with the data already on the
    GPU (torch.compile's compiling happens in the first);
  - latency: the median of `mlc run --repeat N` (host to host: input copy in,
    the CUDA graph, output copy out); PyTorch: median wall time of
    model(x.cuda()).cpu();
  - kernels (elementwise, gemm): the model is built as a shared library and
    called through ctypes in this process, with MLCRT_CUDA_GRAPHS=0, under
    torch.profiler (CUPTI): the device time of mlc's kernels per call against
    the device time of PyTorch's kernels for the same computation (copies are
    not counted on either side).

usage: /usr/bin/python3 bench/gpu_bench.py [--mlc build/mlc] [--only fashion,latency,gpt2,elementwise,gemm,jit]
       [--quick] [--no-compile] [--data DIR] [--jit-probe PATH] [--out bench/RESULTS.md | --no-write]
--no-compile leaves torch.compile out (its max-autotune takes minutes per model:
too long for a short lease of a GPU); its columns then read "-".  --mlc may be a
build tree's mlc or an installed one (PREFIX/bin/mlc, the libraries in PREFIX/lib).
Without a CUDA device (or without a PyTorch that has CUDA) it prints
"no CUDA device: skipped ..." and exits with status 77 (nothing written).
This is a benchmark, not a test: it asserts nothing; it writes the section
"GPU: `bench/gpu_bench.py`" of bench/RESULTS.md (replacing an older one).
"""
import argparse, ctypes, datetime, gzip, os, re, shutil, statistics, subprocess, sys, tempfile, time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
D = os.environ.get("MLC_FASHION_DIR", "/usr/share/datasets/fashion-mnist")  # --data
GPT2_SMALL = dict(V=50257, BLOCK=1024, LAYERS=12, HEADS=12, C=768)
SECTION = "## GPU: `bench/gpu_bench.py`"


NAN = float("nan")


def fmt(v, width, prec):
    """v right-aligned in width, or "-" where it was not measured (NaN)."""
    return f"{'-':>{width}}" if v != v else f"{v:{width}.{prec}f}"


def lib_dir(mlc):
    """Where libmlcrt.a and libmlcrt_cuda.a are: beside a build tree's mlc, or
    PREFIX/lib for an installed PREFIX/bin/mlc."""
    bin_dir = os.path.dirname(os.path.abspath(mlc))
    for d in (bin_dir, os.path.join(os.path.dirname(bin_dir), "lib")):
        if os.path.exists(os.path.join(d, "libmlcrt_cuda.a")):
            return d
    sys.exit(f"no libmlcrt_cuda.a beside {mlc} or in ../lib (mlc built without the CUDA toolkit?)")


def skip(why):
    print(f"no CUDA device: skipped ({why})")
    sys.exit(77)


def gpu_name():
    """The first GPU nvidia-smi lists, or None."""
    if not shutil.which("nvidia-smi"):
        return None
    r = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    m = re.search(r"^GPU 0: (.*?)( \(UUID.*)?$", r.stdout, re.M)
    return m.group(1) if r.returncode == 0 and m else None


def run(argv, env=None):
    r = subprocess.run(argv, capture_output=True, text=True, env=env)
    if r.returncode:
        sys.exit(f"{' '.join(argv)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def nvcc_path(mlc):
    if os.environ.get("MLC_NVCC"):
        return os.environ["MLC_NVCC"]
    cache = os.path.join(os.path.dirname(os.path.abspath(mlc)), "CMakeCache.txt")
    if os.path.exists(cache):
        m = re.search(r"^CUDAToolkit_NVCC_EXECUTABLE:FILEPATH=(.*)$", open(cache).read(), re.M)
        if m:
            return m.group(1)
    return shutil.which("nvcc") or "nvcc"


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    nd = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * nd).reshape(dims)


def mdl_with(path, consts, td, name):
    """A copy of an .mdl with some `const NAME = V` lines changed."""
    src = open(path).read()
    for k, v in consts.items():
        src, n = re.subn(rf"const {k} = \d+", f"const {k} = {v}", src)
        assert n == 1, f"no 'const {k} = ...' in {path}"
    out = os.path.join(td, name)
    open(out, "w").write(src)
    return out


def mlc_train_epoch(mlc, mdl, data, batch, epochs=2):
    """mlc train --device cuda: seconds of the last epoch (samples / its samples/s)."""
    argv = [mlc, "train", mdl, "--device", "cuda", "--epochs", str(epochs), "--batch", str(batch)]
    for k, v in data.items():
        argv += ["--data", f"{k}={v}"]
    r = run(argv)
    m = re.findall(r"batch (\d+)/\1 loss [\d.naif-]+ (\d+) samples/s", r.stderr)
    if not m:
        sys.exit(f"no samples/s in the output of {' '.join(argv)}:\n{r.stderr}")
    n = int(re.search(r"training \S+: (\d+) samples", r.stdout + r.stderr).group(1))
    return n / float(m[-1][1])


# ---- PyTorch sides -----------------------------------------------------------------------
def torch_fashion(torch, name, x, y, compiled):
    """Seconds of PyTorch's second epoch (batch 64, SGD with momentum), data on the GPU."""
    import torch.nn.functional as F
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    from train_fashion import torch_model
    ps, f = torch_model(name)
    for i in range(len(ps)):  # f reads the list: move its parameters to the GPU in place
        ps[i] = ps[i].detach().cuda().requires_grad_(True)
    if compiled:
        f = torch.compile(f, mode="max-autotune")
    opt = torch.optim.SGD(ps, lr=0.05, momentum=0.9)
    times = []
    for _ in range(2):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for i in range(0, len(x), 64):
            loss = F.cross_entropy(f(x[i:i + 64]), y[i:i + 64])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times[-1]


def torch_latency(torch, x_np, compiled, reps):
    """Median host-to-host seconds of the MLP at batch 1 (uint8 pixels in, logits out)."""
    import torch.nn.functional as F
    lin1, lin2 = torch.nn.Linear(784, 256).cuda(), torch.nn.Linear(256, 10).cuda()

    def f(x):
        return lin2(F.relu(lin1(x.flatten(1).float() / 255)))
    if compiled:
        f = torch.compile(f, mode="max-autotune")
    x = torch.from_numpy(x_np)
    ts = []
    with torch.no_grad():
        for r in range(reps + 50):
            t0 = time.perf_counter()
            f(x.cuda()).cpu()
            if r >= 50:
                ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def torch_gpt2_step(torch, idx_t, tgt_t, compiled, steps):
    """Median seconds of a GPT-2 small AdamW step (after warm-up steps)."""
    import torch.nn.functional as F
    sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
    from grad_ops2_check import GPT2
    torch.manual_seed(0)
    model = GPT2(**GPT2_SMALL).cuda()
    f = torch.compile(model, mode="max-autotune") if compiled else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    ts = []
    for s in range(steps + 3):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = F.cross_entropy(f(idx_t).flatten(0, 1), tgt_t.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        torch.cuda.synchronize()
        if s >= 3:
            ts.append(time.perf_counter() - t0)
    del model, f, opt
    torch.cuda.empty_cache()
    return statistics.median(ts)


# ---- kernel times through the profiler ------------------------------------------------
def device_us(e):
    for attr in ("device_time_total", "cuda_time_total", "device_time", "cuda_time"):
        v = getattr(e, attr, None)
        if v:
            return float(v)
    return 0.0


def kernel_us(torch, fn, reps, copies=False):
    """Device microseconds per call of fn's kernels (copies and memsets not counted
    unless copies), and the kernels' names."""
    from torch.profiler import ProfilerActivity, profile
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            fn()
        torch.cuda.synchronize()
    total, names = 0.0, set()
    for e in prof.events():
        if str(getattr(e, "device_type", "")).endswith("CUDA") and (copies or not re.match(r"(?i)mem(cpy|set)", e.name)):
            total += device_us(e)
            names.add(e.name)
    return total / reps, names


class MlcLib:
    """A generated model (fixed dims, f32 inputs) built as a shared library and
    called through ctypes: create(NULL), init, run(inputs..., outputs...)."""

    def __init__(self, mlc, mdl, td, name, extra=()):
        build = lib_dir(mlc)
        cu, so = os.path.join(td, name + ".cu"), os.path.join(td, name + ".so")
        run([mlc, mdl, "-o", cu, *extra])
        run([nvcc_path(mlc), "-O3", "-std=c++17", "-arch=native", "-shared", "-Xcompiler", "-fPIC",
             "-I", os.path.join(ROOT, "runtime"), "-I", os.path.join(ROOT, "runtime", "cuda"), cu,
             os.path.join(build, "libmlcrt_cuda.a"), os.path.join(build, "libmlcrt.a"), "-lcublas", "-o", so])
        os.environ["MLCRT_CUDA_GRAPHS"] = "0"  # kernels launched one by one (read at create)
        lib = ctypes.CDLL(so)
        model = re.search(r"^model (\w+)", open(mdl).read(), re.M).group(1)
        self.create, self.init, self.run_ = (getattr(lib, f"{model}_{f}") for f in ("create", "init", "run"))
        self.create.restype = ctypes.c_void_p
        self.create.argtypes = [ctypes.c_void_p]
        self.init.argtypes = [ctypes.c_void_p, ctypes.c_uint64]
        self.run_.restype = self.init.restype = ctypes.c_int
        self.last = lib.mlcrt_last_error
        self.last.restype = ctypes.c_char_p
        self.err = getattr(lib, f"{model}_last_error")
        self.err.restype = ctypes.c_char_p
        self.err.argtypes = [ctypes.c_void_p]
        self.m = self.create(None)
        if not self.m:
            sys.exit(f"{name}: create failed: {self.last().decode()}")
        if self.init(self.m, 0):
            sys.exit(f"{name}: init failed: {self.err(self.m).decode()}")

    def __call__(self, *arrays):
        ptrs = [a.ctypes.data_as(ctypes.c_void_p) for a in arrays]
        rc = self.run_(ctypes.c_void_p(self.m), *ptrs)
        if rc:
            sys.exit(f"run failed: {self.err(self.m).decode()}")


def peak_bandwidth():
    """The device's peak memory bandwidth in bytes/s (memory clock x bus width x 2),
    from the CUDA runtime the bench's libraries use, or None."""
    for name in ("libcudart.so", "libcudart.so.13", "libcudart.so.12"):
        try:
            rt = ctypes.CDLL(name)
            break
        except OSError:
            rt = None
    if rt is None:
        return None
    clock, width = ctypes.c_int(0), ctypes.c_int(0)
    # cudaDevAttrMemoryClockRate = 36 (kHz), cudaDevAttrGlobalMemoryBusWidth = 37 (bits)
    if rt.cudaDeviceGetAttribute(ctypes.byref(clock), 36, 0) or rt.cudaDeviceGetAttribute(ctypes.byref(width), 37, 0):
        return None
    return 2.0 * clock.value * 1e3 * width.value / 8 if clock.value and width.value else None


# ---- the benchmarks -------------------------------------------------------------------
def bench_fashion(a, torch, td, lines):
    xtr, ytr = idx(f"{D}/train-images-idx3-ubyte.gz"), idx(f"{D}/train-labels-idx1-ubyte.gz")
    x = torch.from_numpy(xtr.copy()).cuda().float().div(255).unsqueeze(1)
    y = torch.from_numpy(ytr.copy()).cuda().long()
    lines.append("Fashion-MNIST epoch (60000 images), batch 64, SGD(lr=0.05, momentum=0.9); seconds of the second epoch")
    lines.append(f"{'model':<12} {'mlc':>8} {'eager':>8} {'compile':>8} {'mlc/eager':>10} {'mlc/compile':>12}")
    for name in ("fashion_mlp", "lenet5"):
        data = {"x": f"{D}/train-images-idx3-ubyte.gz", "y": f"{D}/train-labels-idx1-ubyte.gz"}
        tm = mlc_train_epoch(a.mlc, os.path.join(ROOT, "examples", name + ".mdl"), data, 64)
        print(f"{name}: mlc {tm:.3f} s per epoch", flush=True)
        te = torch_fashion(torch, name, x, y, False)
        tc = torch_fashion(torch, name, x, y, True) if a.compile else NAN
        lines.append(f"{name:<12} {tm:8.3f} {te:8.3f} {fmt(tc, 8, 3)} {tm / te:10.2f} {fmt(tm / tc, 12, 2)}")
        print(lines[-1], flush=True)
    lines.append("target: LeNet-5 epoch <= 0.3 s (H100)")


def bench_latency(a, torch, td, lines):
    x = np.random.default_rng(0).integers(0, 256, (1, 1, 28, 28), dtype=np.uint8)
    path = os.path.join(td, "x1.npy")
    np.save(path, x)
    reps = 500 if a.quick else 5000
    r = run([a.mlc, "run", os.path.join(ROOT, "examples", "fashion_mlp.mdl"), "--device", "cuda", "--input",
             f"x={path}", "--out", td, "--repeat", str(reps)])
    med = float(re.search(r"median ([\d.]+) us", r.stderr).group(1))
    te = torch_latency(torch, x, False, reps) * 1e6
    tc = torch_latency(torch, x, True, reps) * 1e6 if a.compile else NAN
    lines.append("Fashion MLP at batch 1, host to host (input copy, run, output copy), median microseconds")
    lines.append(f"{'mlc':>8} {'eager':>8} {'compile':>8} {'mlc/eager':>10} {'mlc/compile':>12}")
    lines.append(f"{med:8.1f} {te:8.1f} {fmt(tc, 8, 1)} {med / te:10.2f} {fmt(med / tc, 12, 2)}")
    lines.append("target: mlc < 20 us")
    print(lines[-2], flush=True)


def bench_gpt2(a, torch, td, lines):
    B, T, steps = 8, 1024, 3 if a.quick else 12
    mdl = mdl_with(os.path.join(ROOT, "tests", "gpt2_train.mdl"), GPT2_SMALL, td, "gpt2_small_train.mdl")
    rng = np.random.default_rng(0)
    idx_np = rng.integers(0, GPT2_SMALL["V"], (B * steps, T), dtype=np.int64)
    tgt_np = rng.integers(0, GPT2_SMALL["V"], (B * steps, T), dtype=np.int64)
    np.save(os.path.join(td, "idx.npy"), idx_np)
    np.save(os.path.join(td, "tgt.npy"), tgt_np)
    epoch = mlc_train_epoch(a.mlc, mdl, {"idx": os.path.join(td, "idx.npy"), "targets": os.path.join(td, "tgt.npy")}, B)
    tm = epoch / steps
    print(f"mlc: {tm * 1e3:.1f} ms per step", flush=True)
    it, tt = torch.from_numpy(idx_np[:B]).cuda(), torch.from_numpy(tgt_np[:B]).cuda()
    te = torch_gpt2_step(torch, it, tt, False, steps)
    tc = torch_gpt2_step(torch, it, tt, True, steps) if a.compile else NAN
    lines.append(f"GPT-2 small training step (AdamW), batch {B} x {T} tokens, milliseconds "
                 f"(mlc: its second epoch of {steps} steps / {steps}; PyTorch: median of {steps} steps)")
    lines.append(f"{'mlc':>8} {'eager':>8} {'compile':>8} {'mlc/eager':>10} {'mlc/compile':>12}")
    lines.append(f"{tm * 1e3:8.1f} {te * 1e3:8.1f} {fmt(tc * 1e3, 8, 1)} {tm / te:10.2f} {fmt(tm / tc, 12, 2)}")
    lines.append("target: mlc/compile <= 1")
    print(lines[-2], flush=True)


def bench_elementwise(a, torch, td, lines):
    peak = peak_bandwidth()
    lines.append("one fused elementwise group y = gelu(a * b + sin(a)) * 0.5 + b (f32), kernel time per call; "
                 "GB/s = 12 bytes per element / time")
    lines.append(f"peak memory bandwidth: {peak / 1e9:.0f} GB/s" if peak else "peak memory bandwidth: unknown")
    lines.append(f"{'n':>10} {'mlc us':>9} {'mlc GB/s':>9} {'% peak':>7} {'% copy':>7} {'eager us':>9} {'compile us':>11}")
    F = torch.nn.functional
    for n in ([1 << 24] if a.quick else [1 << 24, 1 << 26]):
        mdl = os.path.join(td, f"ew{n}.mdl")
        open(mdl, "w").write(f"model ew {{\n  input a: f32[{n}]\n  input b: f32[{n}]\n"
                             "  output y = gelu(a * b + sin(a)) * 0.5 + b\n}\n")
        lib = MlcLib(a.mlc, mdl, td, f"ew{n}")
        rng = np.random.default_rng(0)
        an, bn = rng.standard_normal(n, dtype=np.float32), rng.standard_normal(n, dtype=np.float32)
        yn = np.empty(n, np.float32)
        tm, names = kernel_us(torch, lambda: lib(an, bn, yn), 10)
        at, bt = torch.from_numpy(an).cuda(), torch.from_numpy(bn).cuda()
        want = (F.gelu(at * bt + torch.sin(at)) * 0.5 + bt).cpu().numpy()
        err = float(np.max(np.abs(yn - want)))
        f = lambda x, z: F.gelu(x * z + torch.sin(x)) * 0.5 + z  # noqa: E731
        te, _ = kernel_us(torch, lambda: f(at, bt), 10)
        tc = NAN
        if a.compile:
            fc = torch.compile(f, mode="max-autotune")
            tc, _ = kernel_us(torch, lambda: fc(at, bt), 10)
        dst = torch.empty_like(at)
        tcopy, _ = kernel_us(torch, lambda: dst.copy_(at), 10, copies=True)  # a DtoD memcpy: 8 bytes per element
        bw, copy_bw = 12 * n / (tm * 1e-6), 8 * n / (tcopy * 1e-6)
        lines.append(f"{n:>10} {tm:9.1f} {bw / 1e9:9.0f} {100 * bw / peak if peak else float('nan'):7.1f} "
                     f"{100 * bw / copy_bw:7.1f} {te:9.1f} {fmt(tc, 11, 1)}   (mlc kernels: {', '.join(sorted(names))}; "
                     f"max |mlc - torch| {err:.1e})")
        print(lines[-1], flush=True)
    lines.append("% copy: against a device-to-device copy (torch copy_, 8 bytes per element). target: >= 80% of peak")


def bench_gemm(a, torch, td, lines):
    lines.append("f32 GEMM y[n,n] = a[n,n] @ w[n,n], kernel time per call (microseconds); "
                 "ratio = mlc / torch.matmul (cuBLAS)")
    lines.append(f"{'n':>6} {'precision':>9} {'mlc us':>9} {'torch us':>9} {'ratio':>6} {'mlc TFLOP/s':>12}")
    for n in ([4096] if a.quick else [4096, 8192]):
        for prec in ("f32", "tf32"):
            mdl = os.path.join(td, f"gemm{n}.mdl")
            open(mdl, "w").write(f"model gemm {{\n  input a: f32[{n}, {n}]\n  param w: f32[{n}, {n}] = normal(0, 0.02)\n"
                                 "  output y = matmul(a, w)\n}\n")
            lib = MlcLib(a.mlc, mdl, td, f"gemm{n}{prec}", ["--precision", prec])
            an = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
            yn = np.empty((n, n), np.float32)
            tm, _ = kernel_us(torch, lambda: lib(an, yn), 5)
            torch.backends.cuda.matmul.allow_tf32 = prec == "tf32"
            at = torch.from_numpy(an).cuda()
            wt = torch.randn(n, n, device="cuda") * 0.02
            tt, _ = kernel_us(torch, lambda: at @ wt, 5)
            torch.backends.cuda.matmul.allow_tf32 = False
            lines.append(f"{n:>6} {prec:>9} {tm:9.1f} {tt:9.1f} {tm / tt:6.2f} {2 * n ** 3 / (tm * 1e-6) / 1e12:12.1f}")
            print(lines[-1], flush=True)
    lines.append("target: ratio <= 1.1")


def write_results(path, body):
    text = open(path).read() if os.path.exists(path) else "# Benchmark results\n"
    i = text.find(SECTION)
    if i >= 0:
        j = text.find("\n## ", i + len(SECTION))
        text = text[:i] + body + ("\n" + text[j + 1:] if j >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + body
    open(path, "w").write(text)


def bench_jit(a, torch, td, lines):
    """Cold and warm starts of the CUDA JIT for GPT-2 small (seconds per phase,
    medians of 3 warm runs; the driver's own start is reported apart)."""
    probe = a.jit_probe or os.path.join(os.path.dirname(os.path.abspath(a.mlc)), "tests", "cuda", "mlc_jit_start")
    if not os.path.exists(probe):
        lines.append(f"jit: {probe} not built (configure with tests)")
        return
    mdl = mdl_with(os.path.join(ROOT, "tests", "gpt2_train.mdl"), GPT2_SMALL, td, "gpt2_small_jit.mdl")
    cache = os.path.join(td, "jit-cache")
    env = dict(os.environ, MLC_CACHE_DIR=cache, MLC_JIT_TIMING="1")  # phases on stderr
    phases = {}

    def once(name):
        r = run([probe, mdl, "B=1", "T=64"], env=env)
        phases[name] = [ln for ln in r.stderr.splitlines() if ln.startswith("mlc jit:")]
        return {k: float(v) for k, v in (ln.split() for ln in r.stdout.strip().splitlines())}
    cold = once("cold")
    warm = [once("warm") for _ in range(3)]
    med = {k: sorted(w[k] for w in warm)[1] for k in warm[0]}
    lines.append("CUDA JIT start, GPT-2 small (mlc_model_from_file with MLCRT_CUDA: parse, plan, launch "
                 "program, PTX, module load, cuBLAS), milliseconds")
    lines.append(f"{'':>10} {'driver':>8} {'model':>8} {'create':>8} {'first run':>10}")
    for name, t in (("cold", cold), ("warm", med)):
        lines.append(f"{name:>10} {t['driver_init'] * 1e3:8.1f} {t['model_from_file'] * 1e3:8.1f} "
                     f"{t['create'] * 1e3:8.1f} {t['first_run'] * 1e3:10.1f}")
    lines.append("cold: an empty cache (NVRTC compiles the kernels); warm: the PTX cached (median of 3); "
                 "driver: cuInit and the primary context, once per process, not counted in model")
    for name in ("cold", "warm"):
        lines.append(f"phases, {name} (MLC_JIT_TIMING; the last run): " + "; ".join(
            re.sub(r"^mlc jit: *|\s+", " ", ln).strip() for ln in phases[name]))
    lines.append("target: warm model < 50 ms")
    print(lines[-4], lines[-3], sep="\n", flush=True)


def main():
    global D
    ap = argparse.ArgumentParser()
    ap.add_argument("--mlc", default=os.path.join(ROOT, "build", "mlc"))
    ap.add_argument("--only", default="fashion,latency,gpt2,elementwise,gemm,jit")
    ap.add_argument("--quick", action="store_true", help="fewer sizes and repetitions")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "RESULTS.md"))
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--no-compile", dest="compile", action="store_false",
                    help="leave torch.compile(max-autotune) out (minutes of compiling per model)")
    ap.add_argument("--data", help="the Fashion-MNIST IDX folder (default $MLC_FASHION_DIR or " + D + ")")
    ap.add_argument("--jit-probe", help="tests/cuda/mlc_jit_start (default: the build tree's, beside --mlc)")
    a = ap.parse_args()
    D = a.data or D
    name = gpu_name()
    if not name:
        skip("nvidia-smi lists no GPU")
    try:
        import torch
    except ImportError:
        skip("no PyTorch to compare with")
    if not torch.cuda.is_available():
        skip(f"PyTorch {torch.__version__} has no CUDA (torch.cuda.is_available() is False)")
    torch.cuda.init()
    name = torch.cuda.get_device_name(0)
    drv = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                         capture_output=True, text=True).stdout.strip()
    nv = run([nvcc_path(a.mlc), "--version"]).stdout.strip().splitlines()[-1]
    head = (f"{name}, driver {drv}; {nv}; PyTorch {torch.__version__} (CUDA {torch.version.cuda}); "
            f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(head, flush=True)
    lines = []
    benches = dict(fashion=bench_fashion, latency=bench_latency, gpt2=bench_gpt2, elementwise=bench_elementwise,
                   gemm=bench_gemm, jit=bench_jit)
    with tempfile.TemporaryDirectory(prefix="gpu_bench.") as td:
        for b in a.only.split(","):
            if b not in benches:
                sys.exit(f"unknown benchmark '{b}' (choose from {', '.join(benches)})")
            print(f"-- {b}", flush=True)
            benches[b](a, torch, td, lines)
            lines.append("")
    body = (f"{SECTION}\n\nThe CUDA backend against PyTorch eager and torch.compile(mode=\"max-autotune\") "
            f"on one GPU; how each side is timed: the docstring of bench/gpu_bench.py.\n{head}.\n"
            + ("" if a.compile else "torch.compile was left out of this run (--no-compile): its columns read \"-\".\n")
            + ("Quick run (--quick): fewer sizes and repetitions.\n" if a.quick else "")
            + "\n```\n"
            + "\n".join(lines).rstrip() + "\n```\n")
    print(body)
    if not a.no_write:
        write_results(a.out, body)
        print(f"wrote the section to {a.out}")


if __name__ == "__main__":
    main()
