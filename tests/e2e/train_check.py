#!/usr/bin/python3
"""Training tests for mlc: `mlc train` against PyTorch.

Usage:  /usr/bin/python3 tests/e2e/train_check.py --mlc build/mlc [--filter SUBSTR] [--keep]
            [--workdir DIR]

Groups of cases (the name printed starts with the group; --filter matches it):

  traj_*      spec section 5: starting from --weights, without --shuffle, mlc train
              reproduces PyTorch's trajectory.  An MLP with cross_entropy (labels u8,
              i32, i64) on random data, 2 epochs, a batch size that leaves a partial
              last batch, for each optimizer form of spec section 4.  The final
              weights (--save) are compared with torch.optim's (foreach=False, the
              single-tensor formulas) and the per-epoch train losses printed by mlc
              (`epoch N: train loss X`, mean over samples, 4 decimals) with PyTorch's.
  grad_*      one model per group of gradient rules in compiler/autodiff.c.  One
              sgd(lr=1) step over one batch: the implied gradient (W0 - W1) is
              compared with torch.autograd's; then sgd(lr=0.05) over 2 epochs of 3
              batches each: the final weights.
  gap_*       what PyTorch differentiates and autodiff.c does not yet (1-D matmul):
              spec section 3 says every operator is differentiable where PyTorch's is.
  eval_*      --eval: per-epoch eval loss and accuracy against PyTorch.
  idx_*       IDX (.gz) datasets give the same run as the same data in .npy.
  resume_*    --resume from an epoch checkpoint, and after a SIGINT mid-epoch (exit
              status 130), continues bit-identically to a straight run (--shuffle).
  nonfinite_* a diverging run stops with exit status 1 naming epoch and step (as
              PyTorch's first non-finite loss); the previous epoch's checkpoint is
              kept, holds PyTorch's weights and resumes; diverging in epoch 1 claims
              no checkpoint and writes no --save.
  err_*       what must be rejected cleanly (exit status 1 or 2, a message, no crash).
  determinism_* two identical runs write byte-identical weights and checkpoints.

Each case works in a directory under --workdir (default tests/e2e/out/train/NAME;
removed after a pass unless --keep).  The models are written by the cases
themselves (see the MDL strings below).
"""

import argparse
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import traceback
import gzip

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run_e2e as E  # noqa: E402  (safetensors writer, compare, CaseError)

CaseError = E.CaseError
TOL = (1e-4, 1e-5)          # spec section 3
LOSS_PRINT_TOL = 6e-5       # mlc prints the epoch loss with 4 decimals (rounding: 5e-5)
TIMEOUT = 300

MLC = None
ENV = dict(os.environ)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def write_weights(path, params):
    with open(path, "wb") as f:
        f.write(E.safetensors_bytes({k: v.detach().contiguous() for k, v in params.items()}))


def save_npy(path, a):
    np.save(path, np.ascontiguousarray(a))


def run(argv, cwd, timeout=TIMEOUT):
    """(exit status, stdout, stderr); a crash is a failure."""
    try:
        p = subprocess.run(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout, env=ENV)
    except subprocess.TimeoutExpired:
        raise CaseError("timed out after %ds: %s" % (timeout, " ".join(argv)))
    out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
    if p.returncode < 0 or p.returncode >= 128:
        raise CaseError("crashed (exit status %d): %s" % (p.returncode, " ".join(argv[1:])), err)
    if E.SANITIZER.search(err):
        raise CaseError("sanitizer report", err)
    return p.returncode, out, err


def train(wd, mdl, data, epochs, batch, *extra, expect=0):
    """Runs `mlc train`; data: {input: file}. Returns (rc, stdout, stderr)."""
    argv = [MLC, "train", mdl]
    for k, v in data.items():
        argv += ["--data", "%s=%s" % (k, v)]
    argv += ["--epochs", str(epochs), "--batch", str(batch)] + [str(a) for a in extra]
    rc, out, err = run(argv, wd)
    if expect is not None and rc != expect:
        raise CaseError("mlc train exited with %d, want %d: %s" % (rc, expect, " ".join(argv[2:])),
                        err + out)
    return rc, out, err


def epoch_losses(out):
    return [float(v) for v in re.findall(r"^epoch \d+: train loss ([^,\s]+)", out, re.M)]


def check_losses(got, want, what="train loss"):
    if len(got) != len(want):
        raise CaseError("%d epoch loss lines, want %d" % (len(got), len(want)))
    for i, (g, w) in enumerate(zip(got, want)):
        if not abs(g - w) <= LOSS_PRINT_TOL + 2e-5 * abs(w):
            raise CaseError("epoch %d: %s %.6f, PyTorch %.6f" % (i + 1, what, g, w))


def compare_weights(got_path, want, tol=TOL, what=""):
    got, _ = E.read_safetensors(got_path)
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    if missing or extra:
        raise CaseError("%s%s: tensors missing %s, extra %s" % (what, got_path, missing, extra))
    for k, w in want.items():
        E.compare(what + k, got[k], w.detach(), tol)


def write_mdl(wd, name, text):
    path = os.path.join(wd, name + ".mdl")
    with open(path, "w") as f:
        f.write(text)
    return path


def rand_params(shapes, seed):
    g = torch.Generator().manual_seed(seed)
    return {k: E.random_tensor("f32", s, g, kind="param") for k, s in shapes.items()}


def batches(n, b):
    return [(i, min(n, i + b)) for i in range(0, n, b)]


def torch_train(params, inputs, loss_fn, opt_ctor, epochs, batch, order=None):
    """Trains copies of params like mlc train without --shuffle; returns
    (final params, [per-epoch mean loss], [params after each epoch])."""
    ps = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    opt = opt_ctor(list(ps.values()))
    n = next(iter(inputs.values())).shape[0]
    losses, snaps = [], []
    for _ in range(epochs):
        tot = 0.0
        for a, b in batches(n, batch):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(ps, {k: v[a:b] for k, v in inputs.items()})
            loss.backward()
            opt.step()
            tot += float(loss) * (b - a)
        losses.append(tot / n)
        snaps.append({k: v.detach().clone() for k, v in ps.items()})
    return {k: v.detach() for k, v in ps.items()}, losses, snaps


def optim_ctor(spec):
    """MDL optimizer call -> torch.optim constructor (single-tensor path)."""
    m = re.fullmatch(r"(\w+)\((.*)\)", spec)
    kind, args = m.group(1), {}
    for kv in filter(None, [s.strip() for s in m.group(2).split(",")]):
        k, v = [s.strip() for s in kv.split("=")]
        args[k] = {"true": True, "false": False}.get(v, None)
        if args[k] is None:
            args[k] = float(v)
    if kind == "sgd":
        return lambda ps: torch.optim.SGD(ps, lr=args["lr"], momentum=args.get("momentum", 0.0),
                                          weight_decay=args.get("weight_decay", 0.0),
                                          nesterov=args.get("nesterov", False), foreach=False)
    betas = (args.get("beta1", 0.9), args.get("beta2", 0.999))
    cls = torch.optim.Adam if kind == "adam" else torch.optim.AdamW
    wd = args.get("weight_decay", 0.0 if kind == "adam" else 0.01)
    return lambda ps: cls(ps, lr=args.get("lr", 1e-3), betas=betas, eps=args.get("eps", 1e-8),
                          weight_decay=wd, foreach=False)


# ---------------------------------------------------------------------------
# 1. trajectories vs torch.optim
# ---------------------------------------------------------------------------

MLP = """
model mlp {
  input  x: f32[B, 12]
  param  fc1.weight: f32[20, 12] = kaiming_uniform
  param  fc1.bias:   f32[20]     = zeros
  param  fc2.weight: f32[16, 20] = kaiming_uniform
  param  fc2.bias:   f32[16]     = zeros
  param  fc3.weight: f32[5, 16]  = kaiming_uniform
  param  fc3.bias:   f32[5]      = zeros
  h = relu(linear(x, fc1.weight, fc1.bias))
  h = tanh(linear(h, fc2.weight, fc2.bias))
  output logits = linear(h, fc3.weight, fc3.bias)
}

train mlp {
  input  y: %(ldt)s[B]
  loss   = cross_entropy(logits, y)
  optimizer = %(opt)s
}
"""
MLP_SHAPES = {"fc1.weight": [20, 12], "fc1.bias": [20], "fc2.weight": [16, 20], "fc2.bias": [16],
              "fc3.weight": [5, 16], "fc3.bias": [5]}
NPDT = {"u8": np.uint8, "i32": np.int32, "i64": np.int64}


def mlp_loss(p, d):
    h = torch.relu(F.linear(d["x"], p["fc1.weight"], p["fc1.bias"]))
    h = torch.tanh(F.linear(h, p["fc2.weight"], p["fc2.bias"]))
    return F.cross_entropy(F.linear(h, p["fc3.weight"], p["fc3.bias"]), d["y"].long())


def mlp_data(wd, n, ldt, seed, prefix=""):
    g = np.random.default_rng(seed)
    x = g.standard_normal((n, 12)).astype(np.float32)
    y = g.integers(0, 5, n).astype(NPDT[ldt])
    save_npy(os.path.join(wd, prefix + "x.npy"), x)
    save_npy(os.path.join(wd, prefix + "y.npy"), y)
    return {"x": torch.from_numpy(x), "y": torch.from_numpy(y.astype(np.int64))}


TRAJ = [
    ("traj_sgd", "u8", "sgd(lr=0.1)"),
    ("traj_sgd_momentum_wd", "i64", "sgd(lr=0.05, momentum=0.9, weight_decay=0.01)"),
    ("traj_sgd_nesterov", "i64", "sgd(lr=0.05, momentum=0.8, nesterov=true)"),
    ("traj_adam", "u8", "adam(lr=0.01)"),
    ("traj_adam_wd", "i64", "adam(lr=0.01, weight_decay=0.05)"),
    ("traj_adam_betas", "i32", "adam(lr=0.005, beta1=0.8, beta2=0.99, eps=1e-6)"),
    ("traj_adamw", "u8", "adamw(lr=0.01, weight_decay=0.1)"),
    ("traj_adamw_default_wd", "i64", "adamw(lr=0.01)"),
]
TRAJ_EXTRA = [  # (name, labels, optimizer, samples, batch, epochs)
    ("traj_batch_above_samples", "i64", "sgd(lr=0.1, momentum=0.5)", 13, 20, 3),
    ("traj_batch_1", "u8", "adam(lr=0.003)", 7, 1, 2),
]


def make_traj(ldt, opt, n=53, batch=16, epochs=2):
    def case(wd):
        mdl = write_mdl(wd, "mlp", MLP % {"ldt": ldt, "opt": opt})
        params = rand_params(MLP_SHAPES, 1)
        write_weights(os.path.join(wd, "init.safetensors"), params)
        data = mlp_data(wd, n, ldt, 2)
        _, out, _ = train(wd, mdl, {"x": "x.npy", "y": "y.npy"}, epochs, batch,
                          "--weights", "init.safetensors", "--save", "w.safetensors")
        want, losses, _ = torch_train(params, data, mlp_loss, optim_ctor(opt), epochs, batch)
        compare_weights(os.path.join(wd, "w.safetensors"), want)
        check_losses(epoch_losses(out), losses)
    return case


# A param that does not reach the loss (used by another output only): torch.optim
# leaves it alone (its .grad is None), also with weight decay.
MLP_UNUSED = MLP.replace("  output logits", "  param  aux.weight: f32[3, 16] = kaiming_uniform\n"
                         "  output aux = linear(h, aux.weight)\n  output logits")


def case_traj_unused_param(wd):
    opt = "adamw(lr=0.01, weight_decay=0.1)"
    mdl = write_mdl(wd, "mlp", MLP_UNUSED % {"ldt": "i64", "opt": opt})
    params = rand_params(dict(MLP_SHAPES, **{"aux.weight": [3, 16]}), 1)
    write_weights(os.path.join(wd, "init.safetensors"), params)
    data = mlp_data(wd, 40, "i64", 2)
    train(wd, mdl, {"x": "x.npy", "y": "y.npy"}, 2, 16, "--weights", "init.safetensors",
          "--save", "w.safetensors")
    want, _, _ = torch_train(params, data, mlp_loss, optim_ctor(opt), 2, 16)
    compare_weights(os.path.join(wd, "w.safetensors"), want)


# ---------------------------------------------------------------------------
# 2. gradient rules vs torch.autograd
# ---------------------------------------------------------------------------

GRAD_MODELS = {}

GRAD_MODELS["grad_cnn"] = dict(
    mdl="""
model cnn {
  input  x: f32[B, 3, 12, 12]
  param  c1.weight: f32[4, 3, 3, 3]
  param  c1.bias:   f32[4]
  param  c2.weight: f32[6, 2, 3, 3]
  param  c2.bias:   f32[6]
  param  c3.weight: f32[6, 6, 1, 1]
  param  fc.weight: f32[5, 24]
  param  fc.bias:   f32[5]
  h = relu(conv2d(x, c1.weight, c1.bias, padding=1))                 # [B, 4, 12, 12]
  h = max_pool2d(h, 2)                                              # [B, 4, 6, 6]
  h = conv2d(h, c2.weight, c2.bias, stride=2, padding=1, groups=2)  # [B, 6, 3, 3]
  h = avg_pool2d(h, 3, stride=1, padding=1)                         # [B, 6, 3, 3]
  h = conv2d(tanh(h), c3.weight)                                    # no bias
  h = adaptive_avg_pool2d(h, 2)                                     # [B, 6, 2, 2]
  output logits = linear(flatten(h), fc.weight, fc.bias)
}
train cnn {
  input  y: i64[B]
  loss   = cross_entropy(logits, y)
  optimizer = %(opt)s
}
""",
    inputs={"x": ("f32", [3, 12, 12]), "y": ("label", 5)},
    loss=lambda p, d: F.cross_entropy(F.linear(torch.flatten(F.adaptive_avg_pool2d(F.conv2d(torch.tanh(
        F.avg_pool2d(F.conv2d(F.max_pool2d(torch.relu(F.conv2d(d["x"], p["c1.weight"], p["c1.bias"], padding=1)), 2),
                              p["c2.weight"], p["c2.bias"], stride=2, padding=1, groups=2), 3, stride=1, padding=1)),
        p["c3.weight"]), 2), 1), p["fc.weight"], p["fc.bias"]), d["y"]))


GRAD_MODELS["grad_cnn_options"] = dict(
    mdl="""
model cnn2 {
  input  x: f32[B, 2, 11, 10]
  param  c1.weight: f32[6, 2, 3, 2]
  param  c1.bias:   f32[6]
  param  c2.weight: f32[6, 1, 3, 3]
  param  fc.weight: f32[4, 54]
  h = conv2d(x, c1.weight, c1.bias, stride=[2, 1], padding=[1, 2], dilation=[1, 2])  # [B, 6, 6, 12]
  h = silu(h)
  h = max_pool2d(h, 3, stride=2, padding=1)                          # [B, 6, 3, 6]
  h = conv2d(h, c2.weight, padding=1, groups=6)                      # depthwise, [B, 6, 3, 6]
  h = avg_pool2d(h, 2, stride=2, padding=1, count_include_pad=false) # [B, 6, 2, 4]
  h = adaptive_avg_pool2d(h, [3, 3])                                 # upsampling windows, [B, 6, 3, 3]
  output logits = linear(flatten(h), fc.weight)
}
train cnn2 {
  input  y: u8[B]
  loss   = cross_entropy(logits, y, label_smoothing=0.1)
  optimizer = %(opt)s
}
""",
    inputs={"x": ("f32", [2, 11, 10]), "y": ("label", 4)},
    loss=lambda p, d: F.cross_entropy(F.linear(torch.flatten(F.adaptive_avg_pool2d(F.avg_pool2d(F.conv2d(
        F.max_pool2d(F.silu(F.conv2d(d["x"], p["c1.weight"], p["c1.bias"], stride=(2, 1), padding=(1, 2),
                                     dilation=(1, 2))), 3, stride=2, padding=1),
        p["c2.weight"], padding=1, groups=6), 2, stride=2, padding=1, count_include_pad=False), (3, 3)), 1),
        p["fc.weight"]), d["y"].long(), label_smoothing=0.1))


GRAD_MODELS["grad_elementwise"] = dict(
    mdl="""
model elem {
  input  x: f32[B, 6]
  param  a: f32[6]
  param  b: f32[1, 6]
  param  s: f32[1]
  param  c: f32[B0, 1]
  u = x * a + b
  v = (u - s) / (abs(b) + 1.0)
  w = sigmoid(v) + tanh(u) - silu(v) * neg(a)
  p = exp(0.3 * w) + log(1.5 + sigmoid(u))
  q = sqrt(p * p + 1.0) + rsqrt(abs(v) + 1.0)
  r = relu(q - 2.0) + x / (a * a + 1.0) - 2.0 / (1.0 + s * s)
  output out = r * c - c / (1.0 + abs(c))
}
train elem {
  input  t: f32[B, 6]
  loss   = sum((out - t) * (out - t)) * 0.1     # mse_loss has its own case (grad_regression)
  optimizer = %(opt)s
}
""",
    const_b=True,
    inputs={"x": ("f32", [6]), "t": ("f32", [6])},
    loss=lambda p, d: _elem_loss(p, d),
)


def _elem_loss(p, d):
    x, a, b, s, c = d["x"], p["a"], p["b"], p["s"], p["c"]
    u = x * a + b
    v = (u - s) / (torch.abs(b) + 1.0)
    w = torch.sigmoid(v) + torch.tanh(u) - F.silu(v) * torch.neg(a)
    pp = torch.exp(0.3 * w) + torch.log(1.5 + torch.sigmoid(u))
    q = torch.sqrt(pp * pp + 1.0) + torch.rsqrt(torch.abs(v) + 1.0)
    r = torch.relu(q - 2.0) + x / (a * a + 1.0) - 2.0 / (1.0 + s * s)
    o = r * c - c / (1.0 + torch.abs(c))
    return ((o - d["t"]) * (o - d["t"])).sum() * 0.1


GRAD_MODELS["grad_matmul_shapes"] = dict(
    mdl="""
model mm {
  input  x: f32[B, 3, 4]
  param  w1: f32[4, 5]
  param  w2: f32[1, 5, 2]
  param  w3: f32[3, 3]
  param  g:  f32[5]
  h  = x @ w1                          # [B, 3, 5]: rank 3 @ rank 2
  h2 = matmul(h, w2)                   # [B, 3, 2]: batch dim 1 broadcast
  m  = transpose(h, 1, 2) @ w3         # [B, 5, 3]
  p  = permute(m, [0, 2, 1])           # [B, 3, 5]
  r  = reshape(p, [B, 15])
  s1 = sum(h2, 2, keepdim=true)        # [B, 3, 1]
  s2 = mean(p * g, [1, 2])             # [B]
  z  = h @ transpose(h, -1, -2)        # [B, 3, 3]: both operands depend on w1
  k  = mean(s1 * z, -1, keepdim=true)  # [B, 3, 1]
  output out = sum(r, 1) + s2 + sum(reshape(k, [B, 3]), -1) * 0.1 + mean(tanh(h2), [1, 2])
}
train mm {
  input  t: f32[B]
  loss   = sum((out - t) * (out - t)) * 0.1
  optimizer = %(opt)s
}
""",
    inputs={"x": ("f32", [3, 4]), "t": ("f32", [])},
    loss=lambda p, d: _mm_loss(p, d),
)


def _mm_loss(p, d):
    x = d["x"]
    h = x @ p["w1"]
    h2 = torch.matmul(h, p["w2"])
    m = h.transpose(1, 2) @ p["w3"]
    pp = m.permute(0, 2, 1)
    r = pp.reshape(x.shape[0], 15)
    s1 = h2.sum(2, keepdim=True)
    s2 = (pp * p["g"]).mean([1, 2])
    z = h @ h.transpose(-1, -2)
    k = (s1 * z).mean(-1, keepdim=True)
    out = r.sum(1) + s2 + k.reshape(x.shape[0], 3).sum(-1) * 0.1 + torch.tanh(h2).mean([1, 2])
    return ((out - d["t"]) * (out - d["t"])).sum() * 0.1


GRAD_MODELS["grad_softmax"] = dict(
    mdl="""
model sm {
  input  x: f32[B, 5]
  param  w: f32[4, 5]
  param  b: f32[4]
  param  v: f32[3, 5]
  z = linear(x, w, b)
  output p = softmax(z, dim=1)
  lp = log_softmax(z * 0.5, dim=-1)
  z3 = reshape(linear(x, v), [B, 1, 3]) * reshape(z, [B, 4, 1])   # [B, 4, 3]
  q = softmax(z3, dim=1)                                          # over a middle dim
  lq = log_softmax(z3, 1)
}
train sm {
  input  t: f32[B, 4]
  loss   = sum((p - t) * (p - t)) * 0.2 - sum(lp * t) * 0.05 + sum(abs(q - exp(lq) * 0.5)) * 0.1 - sum(lq) * 0.01
  optimizer = %(opt)s
}
""",
    inputs={"x": ("f32", [5]), "t": ("softmax", [4])},
    loss=lambda p, d: _sm_loss(p, d),
)


def _sm_loss(p, d):
    x, t = d["x"], d["t"]
    z = F.linear(x, p["w"], p["b"])
    pr = torch.softmax(z, dim=1)
    lp = torch.log_softmax(z * 0.5, dim=-1)
    z3 = F.linear(x, p["v"]).reshape(-1, 1, 3) * z.reshape(-1, 4, 1)
    q = torch.softmax(z3, dim=1)
    lq = torch.log_softmax(z3, 1)
    return (((pr - t) * (pr - t)).sum() * 0.2 - (lp * t).sum() * 0.05 + (q - torch.exp(lq) * 0.5).abs().sum() * 0.1
            - lq.sum() * 0.01)


GRAD_MODELS["grad_regression"] = dict(
    mdl="""
model reg {
  input  x: f32[B, 7]
  param  l1.weight: f32[9, 7]
  param  l1.bias:   f32[9]
  param  l2.weight: f32[2, 9]
  param  l2.bias:   f32[2]
  h = tanh(linear(x, l1.weight, l1.bias))
  output y = linear(h, l2.weight, l2.bias)
}
train reg {
  input  t: f32[B, 2]
  loss   = mse_loss(y, t)
  optimizer = %(opt)s
}
""",
    inputs={"x": ("f32", [7]), "t": ("f32", [2])},
    loss=lambda p, d: F.mse_loss(F.linear(torch.tanh(F.linear(d["x"], p["l1.weight"], p["l1.bias"])),
                                          p["l2.weight"], p["l2.bias"]), d["t"]),
)

GRAD_MODELS["grad_param_reused"] = dict(
    mdl="""
model tied {
  input  x: f32[B, 6]
  param  enc.weight: f32[6, 6]
  param  enc.bias:   f32[6]
  h = tanh(linear(x, enc.weight, enc.bias))
  output y = linear(h, enc.weight)        # used twice: the gradients add up
}
train tied {
  input  t: f32[B, 6]
  loss   = sum((y - t) * (y - t)) * 0.1
  optimizer = %(opt)s
}
""",
    inputs={"x": ("f32", [6]), "t": ("f32", [6])},
    loss=lambda p, d: ((F.linear(torch.tanh(F.linear(d["x"], p["enc.weight"], p["enc.bias"])), p["enc.weight"])
                        - d["t"]) ** 2).sum() * 0.1,
)

GRAD_MODELS["grad_tied"] = dict(
    mdl="""
model tied {
  input  x: f32[B, 6]
  param  enc.weight: f32[6, 6]
  param  enc.bias:   f32[6]
  tie    dec.weight = enc.weight          # one tensor, two names: one gradient, summed
  h = tanh(linear(x, enc.weight, enc.bias))
  output y = linear(h, dec.weight)
}
train tied {
  input  t: f32[B, 6]
  loss   = sum((y - t) * (y - t)) * 0.1
  optimizer = %(opt)s
}
""",
    inputs={"x": ("f32", [6]), "t": ("f32", [6])},
    loss=lambda p, d: ((F.linear(torch.tanh(F.linear(d["x"], p["enc.weight"], p["enc.bias"])), p["enc.weight"])
                        - d["t"]) ** 2).sum() * 0.1,
)

# The usual classification loss written by hand: a mean over the (symbolic)
# batch dim.
GRAD_MODELS["grad_loss_mean_over_batch"] = dict(
    mdl="""
model nll {
  input  x: f32[B, 5]
  param  w: f32[4, 5]
  output z = linear(x, w)
}
train nll {
  input  t: f32[B, 4]
  loss   = -mean(sum(log_softmax(z) * t, -1))
  optimizer = %(opt)s
}
""",
    inputs={"x": ("f32", [5]), "t": ("softmax", [4])},
    loss=lambda p, d: -(torch.log_softmax(F.linear(d["x"], p["w"]), -1) * d["t"]).sum(-1).mean(),
)

# A 1-D matmul (matrix @ vector).
GRAD_MODELS["gap_matmul_1d"] = dict(
    mdl="""
model mv {
  input  x: f32[B, 5]
  param  w: f32[5, 3]
  param  v: f32[3]
  h = x @ w          # [B, 3]
  output y = h @ v   # [B]: matrix @ vector
}
train mv {
  input  t: f32[B]
  loss   = sum((y - t) * (y - t))
  optimizer = %(opt)s
}
""",
    inputs={"x": ("f32", [5]), "t": ("f32", [])},
    loss=lambda p, d: (((d["x"] @ p["w"]) @ p["v"] - d["t"]) ** 2).sum(),
)


def grad_param_shapes(mdl, n):
    body = E.model_body(mdl % {"opt": "sgd(lr=1)"})
    shapes = {}
    for m in re.finditer(r"\bparam\s+([\w.]+)\s*:\s*f32\s*\[([^\]]*)\]", body):
        dims = [d.strip() for d in m.group(2).split(",") if d.strip()]
        shapes[m.group(1)] = [n if d == "B0" else int(d) for d in dims]
    return shapes


def grad_data(spec, n, seed):
    g = torch.Generator().manual_seed(seed)
    d = {}
    for k, (kind, shape) in spec.items():
        if kind == "label":
            d[k] = torch.randint(0, shape, (n,), generator=g)
        elif kind == "softmax":
            d[k] = torch.softmax(torch.randn([n] + shape, generator=g) * 2, -1)
        else:
            d[k] = torch.randn([n] + shape, generator=g)
    return d


def make_grad(name):
    spec = GRAD_MODELS[name]

    def case(wd):
        mdl_t = spec["mdl"]
        label_dt = {}
        for m in re.finditer(r"\binput\s+(\w+)\s*:\s*(\w+)", mdl_t):
            label_dt[m.group(1)] = m.group(2)
        # (a) one sgd(lr=1) step on one batch: the implied gradient.  (b) 2 epochs,
        # 3 batches each (the last partial), sgd(lr=0.05).
        for part, opt, n, batch, epochs in (("a", "sgd(lr=1.0)", 6, 6, 1), ("b", "sgd(lr=0.05)", 7, 3, 2)):
            if spec.get("const_b") and part == "b":
                n, batch = 6, 6   # a param shaped by the batch size: full batches only
                epochs = 3
            sub = os.path.join(wd, part)
            os.makedirs(sub)
            mdl_text = mdl_t % {"opt": opt}
            mdl_text = mdl_text.replace("B0", str(n))
            mdl = write_mdl(sub, "m", mdl_text)
            shapes = grad_param_shapes(mdl_t, n)
            params = rand_params(shapes, 11)
            write_weights(os.path.join(sub, "init.safetensors"), params)
            data = grad_data(spec["inputs"], n, 12)
            files = {}
            for k, v in data.items():
                a = v.numpy()
                if label_dt[k] in NPDT:
                    a = a.astype(NPDT[label_dt[k]])
                save_npy(os.path.join(sub, k + ".npy"), a)
                files[k] = k + ".npy"
            _, out, _ = train(sub, mdl, files, epochs, batch, "--weights", "init.safetensors",
                              "--save", "w.safetensors")
            if part == "a":
                ps = {k: v.clone().requires_grad_(True) for k, v in params.items()}
                loss = spec["loss"](ps, data)
                loss.backward()
                got, _ = E.read_safetensors(os.path.join(sub, "w.safetensors"))
                for k, p in ps.items():
                    if k not in got:
                        raise CaseError("w.safetensors has no tensor %s" % k)
                    implied = params[k].numpy().astype(np.float64) - got[k].astype(np.float64)
                    gk = p.grad if p.grad is not None else torch.zeros_like(p)
                    # W0 - W1 loses ~1 ulp of |W| to cancellation: atol 1e-5 covers |W| < 10
                    E.compare("gradient of " + k, implied.astype(np.float32), gk, (1e-4, 1e-5))
                check_losses(epoch_losses(out), [float(loss)])
            else:
                want, losses, _ = torch_train(params, data, spec["loss"], optim_ctor(opt), epochs, batch)
                compare_weights(os.path.join(sub, "w.safetensors"), want, what="after %d epochs: " % epochs)
                check_losses(epoch_losses(out), losses)
    return case


# ---------------------------------------------------------------------------
# eval and IDX data
# ---------------------------------------------------------------------------

def case_eval_loss_accuracy(wd):
    opt = "sgd(lr=0.1, momentum=0.9)"
    mdl = write_mdl(wd, "mlp", MLP % {"ldt": "u8", "opt": opt})
    params = rand_params(MLP_SHAPES, 3)
    write_weights(os.path.join(wd, "init.safetensors"), params)
    data = mlp_data(wd, 45, "u8", 4)
    ev = mlp_data(wd, 23, "u8", 5, prefix="e")
    _, out, _ = train(wd, mdl, {"x": "x.npy", "y": "y.npy"}, 3, 10, "--weights", "init.safetensors",
                      "--eval", "x=ex.npy,y=ey.npy", "--save", "w.safetensors")
    _, losses, snaps = torch_train(params, data, mlp_loss, optim_ctor(opt), 3, 10)
    lines = re.findall(r"^epoch (\d+): train loss (\S+), eval loss (\S+), eval accuracy (\S+)%$", out, re.M)
    if len(lines) != 3:
        raise CaseError("want 3 lines `epoch N: train loss X, eval loss Y, eval accuracy Z%%`, got:\n" + out)
    check_losses([float(l[1]) for l in lines], losses)
    for i, snap in enumerate(snaps):
        with torch.no_grad():
            h = torch.relu(F.linear(ev["x"], snap["fc1.weight"], snap["fc1.bias"]))
            h = torch.tanh(F.linear(h, snap["fc2.weight"], snap["fc2.bias"]))
            logits = F.linear(h, snap["fc3.weight"], snap["fc3.bias"])
            el = float(F.cross_entropy(logits, ev["y"]))
            acc = float((logits.argmax(1) == ev["y"]).double().mean()) * 100
        if abs(float(lines[i][2]) - el) > LOSS_PRINT_TOL + 1e-4 * abs(el):
            raise CaseError("epoch %d: eval loss %s, PyTorch %.6f" % (i + 1, lines[i][2], el))
        if abs(float(lines[i][3]) - acc) > 0.006:
            raise CaseError("epoch %d: eval accuracy %s%%, PyTorch %.2f%%" % (i + 1, lines[i][3], acc))


def idx_bytes(a):
    code = {np.dtype(np.uint8): 0x08}[a.dtype]
    return struct.pack(">BBBB", 0, 0, code, a.ndim) + b"".join(struct.pack(">I", d) for d in a.shape) + a.tobytes()


LENETISH = """
model pix {
  input  x: u8[B, 1, 6, 6]
  param  c.weight: f32[3, 1, 3, 3] = kaiming_uniform
  param  fc.weight: f32[4, 12] = kaiming_uniform
  h = to_f32(x) / 255.0
  h = max_pool2d(relu(conv2d(h, c.weight)), 2)
  output logits = linear(flatten(h), fc.weight)
}
train pix {
  input  y: u8[B]
  loss   = cross_entropy(logits, y)
  optimizer = adam(lr=0.01)
}
"""


def case_idx_gz_matches_npy(wd):
    mdl = write_mdl(wd, "pix", LENETISH)
    g = np.random.default_rng(8)
    x = g.integers(0, 256, (37, 6, 6)).astype(np.uint8)
    y = g.integers(0, 4, 37).astype(np.uint8)
    with gzip.open(os.path.join(wd, "images-idx3-ubyte.gz"), "wb") as f:
        f.write(idx_bytes(x))
    with open(os.path.join(wd, "labels-idx1-ubyte"), "wb") as f:
        f.write(idx_bytes(y))
    save_npy(os.path.join(wd, "x.npy"), x.reshape(37, 1, 6, 6))
    save_npy(os.path.join(wd, "y.npy"), y)
    train(wd, mdl, {"x": "images-idx3-ubyte.gz", "y": "labels-idx1-ubyte"}, 2, 8, "--seed", "3",
          "--save", "idx.safetensors")
    train(wd, mdl, {"x": "x.npy", "y": "y.npy"}, 2, 8, "--seed", "3", "--save", "npy.safetensors")
    same_bytes(os.path.join(wd, "idx.safetensors"), os.path.join(wd, "npy.safetensors"))
    # and against PyTorch (u8 pixels through to_f32, max_pool2d, adam), from --weights
    params = rand_params({"c.weight": [3, 1, 3, 3], "fc.weight": [4, 12]}, 9)
    write_weights(os.path.join(wd, "init.safetensors"), params)
    train(wd, mdl, {"x": "images-idx3-ubyte.gz", "y": "labels-idx1-ubyte"}, 2, 8,
          "--weights", "init.safetensors", "--save", "w.safetensors")

    def loss(p, d):
        h = d["x"].float() / 255.0
        h = F.max_pool2d(torch.relu(F.conv2d(h, p["c.weight"])), 2)
        return F.cross_entropy(F.linear(torch.flatten(h, 1), p["fc.weight"]), d["y"].long())
    want, _, _ = torch_train(params, {"x": torch.from_numpy(x.reshape(37, 1, 6, 6)), "y": torch.from_numpy(y)},
                             loss, optim_ctor("adam(lr=0.01)"), 2, 8)
    compare_weights(os.path.join(wd, "w.safetensors"), want)


# ---------------------------------------------------------------------------
# 3. resume
# ---------------------------------------------------------------------------

def same_bytes(a, b, what=None):
    with open(a, "rb") as f:
        da = f.read()
    with open(b, "rb") as f:
        db = f.read()
    if da != db:
        ta, _ = E.read_safetensors(a)
        tb, _ = E.read_safetensors(b)
        diff = [k for k in sorted(set(ta) | set(tb))
                if k not in ta or k not in tb or ta[k].shape != tb[k].shape or not np.array_equal(ta[k], tb[k])]
        raise CaseError("%s: %s and %s differ (%d vs %d bytes); tensors differing: %s"
                        % (what or "not bit-identical", os.path.basename(a), os.path.basename(b),
                           len(da), len(db), diff[:6]))


RESUME_MLP = """
model big {
  input  x: f32[B, %(d)d]
  param  fc1.weight: f32[%(h)d, %(d)d] = kaiming_uniform
  param  fc1.bias:   f32[%(h)d]        = zeros
  param  fc2.weight: f32[10, %(h)d]    = kaiming_uniform
  param  fc2.bias:   f32[10]           = zeros
  h = relu(linear(x, fc1.weight, fc1.bias))
  output logits = linear(h, fc2.weight, fc2.bias)
}
train big {
  input  y: i64[B]
  loss   = cross_entropy(logits, y)
  optimizer = adam(lr=0.001)
}
"""


def resume_data(wd, n, d):
    g = np.random.default_rng(21)
    save_npy(os.path.join(wd, "x.npy"), g.standard_normal((n, d)).astype(np.float32))
    save_npy(os.path.join(wd, "y.npy"), g.integers(0, 10, n).astype(np.int64))


DATA_XY = {"x": "x.npy", "y": "y.npy"}


def case_resume_epoch_checkpoint(wd):
    mdl = write_mdl(wd, "big", RESUME_MLP % {"d": 16, "h": 24})
    resume_data(wd, 301, 16)
    train(wd, mdl, DATA_XY, 3, 32, "--shuffle", "--seed", "5", "--save", "straight.safetensors")
    train(wd, mdl, DATA_XY, 1, 32, "--shuffle", "--seed", "5", "--save", "split.safetensors",
          "--checkpoint", "ckpt.safetensors")
    ck, _ = E.read_safetensors(os.path.join(wd, "ckpt.safetensors"))
    step = ck.get("optimizer.step")
    if step is None or int(step.reshape(-1)[0]) != 10:
        raise CaseError("the epoch-1 checkpoint's optimizer.step is %r, want 10 (301 samples, batch 32)" % step)
    _, out, err = train(wd, mdl, DATA_XY, 3, 32, "--shuffle", "--seed", "5", "--save", "split.safetensors",
                        "--checkpoint", "ckpt.safetensors", "--resume", "ckpt.safetensors")
    if len(re.findall(r"^epoch \d+: train loss", out, re.M)) != 2:
        raise CaseError("the resumed run should train epochs 2 and 3:\n" + out)
    same_bytes(os.path.join(wd, "straight.safetensors"), os.path.join(wd, "split.safetensors"))
    same_bytes(os.path.join(wd, "straight.ckpt.safetensors"), os.path.join(wd, "ckpt.safetensors"),
               "final checkpoints not bit-identical")


def _pgid_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def _sigint_run(wd, mdl, epochs, delay, to_group):
    argv = [MLC, "train", mdl, "--data", "x=x.npy", "--data", "y=y.npy", "--epochs", str(epochs),
            "--batch", "16", "--shuffle", "--seed", "9", "--save", "cut.safetensors",
            "--checkpoint", "cut.ckpt.safetensors"]
    p = subprocess.Popen(argv, cwd=wd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV,
                         start_new_session=True)
    time.sleep(delay)
    if to_group:   # what Ctrl-C on a terminal does: the whole foreground process group
        os.killpg(p.pid, signal.SIGINT)
    else:
        os.kill(p.pid, signal.SIGINT)
    try:
        out, err = p.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        raise CaseError("did not stop after SIGINT")
    # the generated trainer may outlive mlc: wait for the whole group
    for _ in range(600):
        if not _pgid_alive(p.pid):
            break
        time.sleep(0.05)
    return p.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def make_sigint(to_group):
    def case(wd):
        d, h, n, epochs = 128, 512, 20000, 2
        mdl = write_mdl(wd, "big", RESUME_MLP % {"d": d, "h": h})
        resume_data(wd, n, d)
        t0 = time.time()
        train(wd, mdl, DATA_XY, epochs, 16, "--shuffle", "--seed", "9", "--save", "straight.safetensors")
        t1 = time.time()
        train(wd, mdl, DATA_XY, epochs, 16, "--shuffle", "--seed", "9", "--save", "straight2.safetensors")
        t2 = time.time()
        total = min(t1 - t0, t2 - t1)  # the second run has its build cached
        if total < 0.6:
            raise CaseError("the straight run took only %.2fs: make the data set bigger" % total)
        delay = max(0.3, min(1.0, total * 0.4))
        rc, out, err = _sigint_run(wd, mdl, epochs, delay, to_group)
        problems = []
        if rc != 130:
            problems.append("exit status %d after SIGINT at %.2fs of a %.2fs run, want 130" % (rc, delay, total))
        if not re.search(r"interrupted: checkpoint saved to \S*cut\.ckpt\.safetensors", err):
            problems.append("no `interrupted: checkpoint saved to ...` message")
        ckpt = os.path.join(wd, "cut.ckpt.safetensors")
        if not os.path.exists(ckpt):
            raise CaseError("; ".join(problems + ["no checkpoint written"]), err)
        ck, _ = E.read_safetensors(ckpt)
        step = int(ck["optimizer.step"].reshape(-1)[0])
        nb = (n + 15) // 16
        if step <= 0 or step >= nb * epochs:
            problems.append("the checkpoint is at step %d of %d: the SIGINT did not land mid-run" % (step, nb * epochs))
        rc2, out2, err2 = train(wd, mdl, DATA_XY, epochs, 16, "--shuffle", "--seed", "9",
                                "--save", "cut.safetensors", "--checkpoint", "cut.ckpt.safetensors",
                                "--resume", "cut.ckpt.safetensors", expect=None)
        if rc2 != 0:
            problems.append("--resume exited with %d: %s" % (rc2, E.tail(err2, 3)))
        else:
            try:
                same_bytes(os.path.join(wd, "straight.safetensors"), os.path.join(wd, "cut.safetensors"),
                           "resumed after SIGINT at step %d: not bit-identical to the straight run" % step)
            except CaseError as e:
                problems.append(str(e))
        if problems:
            raise CaseError("; ".join(problems), err)
    return case


# ---------------------------------------------------------------------------
# 4. non-finite loss
# ---------------------------------------------------------------------------

DIVERGE = """
model blowup {
  input  x: f32[B, 2]
  param  w: f32[1, 2] = ones
  param  b: f32[1]    = zeros
  output y = linear(x, w, b)
}
train blowup {
  input  t: f32[B, 1]
  loss   = sum((y - t) * (y - t)) * 0.25
  optimizer = sgd(lr=%s)
}
"""


def blowup_setup(wd, lr, n, batch):
    """The diverging model and data; PyTorch's first non-finite loss as (epoch, global step),
    and PyTorch's weights after each completed epoch."""
    mdl = write_mdl(wd, "blowup", DIVERGE % lr)
    g = np.random.default_rng(3)
    x = (g.random((n, 2)) + 0.5).astype(np.float32)
    t = g.standard_normal((n, 1)).astype(np.float32)
    save_npy(os.path.join(wd, "x.npy"), x)
    save_npy(os.path.join(wd, "t.npy"), t)
    params = {"w": torch.ones(1, 2), "b": torch.zeros(1)}
    write_weights(os.path.join(wd, "init.safetensors"), params)
    ps = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    opt = torch.optim.SGD(list(ps.values()), lr=float(lr), foreach=False)
    nb = len(batches(n, batch))
    bad, snaps = None, []
    for ep in range(40):
        for bi, (a, b) in enumerate(batches(n, batch)):
            opt.zero_grad()
            r = F.linear(torch.from_numpy(x[a:b]), ps["w"], ps["b"]) - torch.from_numpy(t[a:b])
            loss = (r * r).sum() * 0.25
            if not torch.isfinite(loss):
                bad = (ep + 1, ep * nb + bi + 1)
                break
            loss.backward()
            opt.step()
        if bad:
            break
        snaps.append({k: v.detach().clone() for k, v in ps.items()})
    return mdl, x, t, nb, bad, snaps


def case_nonfinite_loss(wd):
    lr, n, batch = "40.0", 10, 4
    mdl, x, t, nb, bad, snaps = blowup_setup(wd, lr, n, batch)
    if not bad or bad[0] < 2:
        raise CaseError("test setup: PyTorch diverges at %r, want epoch >= 2" % (bad,))
    files = {"x": "x.npy", "t": "t.npy"}
    rc, out, err = train(wd, mdl, files, 40, batch, "--weights", "init.safetensors", "--save", "w.safetensors",
                         expect=1)
    m = re.search(r"epoch (\d+), step (\d+)", err)
    if not m:
        raise CaseError("stderr does not name the epoch and step", err)
    if (int(m.group(1)), int(m.group(2))) != bad:
        raise CaseError("stopped at epoch %s, step %s; PyTorch's loss is first non-finite at epoch %d, step %d"
                        % (m.group(1), m.group(2), bad[0], bad[1]), err)
    if not re.search(r"finite|nan|inf", err, re.I):
        raise CaseError("the message does not say the loss is not finite", err)
    if len(re.findall(r"^epoch \d+: train loss", out, re.M)) != bad[0] - 1:
        raise CaseError("want %d completed epochs on stdout" % (bad[0] - 1), out)
    ckpt = os.path.join(wd, "w.ckpt.safetensors")
    if not os.path.exists(ckpt):
        raise CaseError("no checkpoint kept (w.ckpt.safetensors)", err)
    if "w.ckpt.safetensors" not in err:
        raise CaseError("the message does not name the kept checkpoint", err)
    ck, _ = E.read_safetensors(ckpt)
    step = int(ck["optimizer.step"].reshape(-1)[0])
    if step != (bad[0] - 1) * nb:
        raise CaseError("the kept checkpoint is at step %d, want %d (end of epoch %d)" % (step, (bad[0] - 1) * nb, bad[0] - 1))
    prev = snaps[bad[0] - 2]
    for k in ("w", "b"):
        E.compare("checkpoint " + k, ck[k], prev[k], TOL)
    compare_weights(os.path.join(wd, "w.safetensors"), prev, what="--save after the last good epoch: ")
    # the checkpoint resumes: the same data diverges at the same place ...
    shutil.copy(ckpt, os.path.join(wd, "kept.safetensors"))
    rc, out, err2 = train(wd, mdl, files, 40, batch, "--resume", "kept.safetensors", "--checkpoint", "c2.safetensors",
                          expect=1)
    m2 = re.search(r"epoch (\d+), step (\d+)", err2)
    if not m2 or m2.groups() != m.groups():
        raise CaseError("resumed from the kept checkpoint: stopped at %s, want epoch %s, step %s"
                        % (m2 and m2.group(0), m.group(1), m.group(2)), err2)
    # ... and data that gives zero gradients (x = 0, t = b: y - t is exactly 0)
    # trains to the end from it, leaving the weights as they are
    save_npy(os.path.join(wd, "x0.npy"), np.zeros_like(x))
    save_npy(os.path.join(wd, "t0.npy"), np.full_like(t, ck["b"][0]))
    train(wd, mdl, {"x": "x0.npy", "t": "t0.npy"}, bad[0] + 1, batch, "--resume", "kept.safetensors",
          "--save", "w2.safetensors", "--checkpoint", "c3.safetensors")
    got, _ = E.read_safetensors(os.path.join(wd, "w2.safetensors"))
    for k in ("w", "b"):
        if not np.array_equal(got[k], ck[k]):
            raise CaseError("resumed with zero-gradient data: %s changed from %s to %s" % (k, ck[k], got[k]))


def case_nonfinite_first_epoch(wd):
    """Diverging before the first checkpoint: no checkpoint may be claimed."""
    mdl, _, _, _, bad, _ = blowup_setup(wd, "1e9", 10, 2)
    if not bad or bad[0] != 1:
        raise CaseError("test setup: PyTorch diverges at %r, want epoch 1" % (bad,))
    _, out, err = train(wd, mdl, {"x": "x.npy", "t": "t.npy"}, 3, 2, "--weights", "init.safetensors",
                        "--save", "w.safetensors", expect=1)
    if not re.search(r"epoch 1, step %d\b" % bad[1], err):
        raise CaseError("stderr does not name epoch 1, step %d" % bad[1], err)
    m = re.search(r"checkpoint is kept: (\S+)", err)
    if m and not os.path.exists(os.path.join(wd, m.group(1))):
        raise CaseError("stderr says `the last checkpoint is kept: %s`, but no such file was written" % m.group(1), err)
    if os.path.exists(os.path.join(wd, "w.safetensors")):
        raise CaseError("--save written although no epoch completed")


# ---------------------------------------------------------------------------
# 5. errors
# ---------------------------------------------------------------------------

NO_TRAIN = """
model plain {
  input  x: f32[B, 3]
  param  w: f32[2, 3]
  output y = linear(x, w)
}
"""

SMALL = """
model small {
  input  x: f32[B, 3]
  param  w: f32[4, 3]
  output logits = linear(x, w)
}
train small {
  input  y: %s[B]
  loss   = cross_entropy(logits, y)
  optimizer = %s
}
"""


def expect_error(wd, argv_tail, status, patterns, mdl=None):
    rc, out, err = run([MLC, "train"] + ([mdl] if mdl else []) + argv_tail, wd)
    if rc != status:
        raise CaseError("exit status %d, want %d" % (rc, status), err + out)
    for p in patterns:
        if not re.search(p, err, re.M):
            raise CaseError("stderr does not match %r" % p, err)


def small_setup(wd, ldt="i64", opt="sgd(lr=0.1)", n=10):
    mdl = write_mdl(wd, "small", SMALL % (ldt, opt))
    g = np.random.default_rng(0)
    save_npy(os.path.join(wd, "x.npy"), g.standard_normal((n, 3)).astype(np.float32))
    save_npy(os.path.join(wd, "y.npy"), g.integers(0, 4, n).astype(NPDT[ldt]))
    return mdl


def case_err_no_train_section(wd):
    mdl = write_mdl(wd, "plain", NO_TRAIN)
    save_npy(os.path.join(wd, "x.npy"), np.zeros((4, 3), np.float32))
    expect_error(wd, ["--data", "x=x.npy", "--epochs", "1", "--batch", "2"], 1, [r"no train section"], mdl)


def case_err_data_dtype(wd):
    mdl = small_setup(wd)
    save_npy(os.path.join(wd, "x64.npy"), np.zeros((10, 3), np.float64))
    save_npy(os.path.join(wd, "yf.npy"), np.zeros(10, np.float32))
    expect_error(wd, ["--data", "x=x64.npy", "--data", "y=y.npy", "--epochs", "1", "--batch", "4"], 1,
                 [r"x64\.npy.*(f8|f64|float64)"], mdl)
    expect_error(wd, ["--data", "x=x.npy", "--data", "y=yf.npy", "--epochs", "1", "--batch", "4"], 1,
                 [r"yf\.npy.*'y'", r"i64"], mdl)


def case_err_data_shape(wd):
    mdl = small_setup(wd)
    save_npy(os.path.join(wd, "x5.npy"), np.zeros((10, 5), np.float32))
    save_npy(os.path.join(wd, "y9.npy"), np.zeros(9, np.int64))
    expect_error(wd, ["--data", "x=x5.npy", "--data", "y=y.npy", "--epochs", "1", "--batch", "4"], 1,
                 [r"x5\.npy.*'x'.*5.*3|x5\.npy.*dim 1"], mdl)
    expect_error(wd, ["--data", "x=x.npy", "--data", "y=y9.npy", "--epochs", "1", "--batch", "4"], 1,
                 [r"y9\.npy.*9 samples"], mdl)
    expect_error(wd, ["--data", "x=x.npy", "--data", "y=nonexistent.npy", "--epochs", "1", "--batch", "4"], 1,
                 [r"nonexistent\.npy"], mdl)


def make_label_range(ldt, bad):
    def case(wd):
        mdl = small_setup(wd, ldt)
        y = np.random.default_rng(0).integers(0, 4, 10).astype(NPDT[ldt])
        y[6] = bad
        save_npy(os.path.join(wd, "ybad.npy"), y)
        # the bad label is in the second batch: epoch 1, step 2
        expect_error(wd, ["--data", "x=x.npy", "--data", "y=ybad.npy", "--epochs", "2", "--batch", "4",
                          "--save", "w.safetensors"], 1,
                     [r"label|class|target", r"%d" % bad, r"epoch 1, step 2"], mdl)
    return case


def case_err_eval_label_out_of_range(wd):
    mdl = small_setup(wd)
    y = np.random.default_rng(0).integers(0, 4, 10).astype(np.int64)
    y[8] = 9
    save_npy(os.path.join(wd, "ybad.npy"), y)
    expect_error(wd, ["--data", "x=x.npy", "--data", "y=y.npy", "--eval", "x=x.npy,y=ybad.npy", "--epochs", "2",
                      "--batch", "4"], 1, [r"eval", r"label 9"], mdl)


def case_err_missing_data(wd):
    mdl = small_setup(wd)
    expect_error(wd, ["--data", "x=x.npy", "--epochs", "1", "--batch", "4"], 2, [r"'y'"], mdl)
    expect_error(wd, ["--data", "y=y.npy", "--epochs", "1", "--batch", "4"], 2, [r"'x'"], mdl)
    expect_error(wd, ["--data", "x=x.npy", "--data", "y=y.npy", "--data", "z=y.npy", "--epochs", "1",
                      "--batch", "4"], 2, [r"\bz\b"], mdl)


def case_err_weights_and_resume(wd):
    mdl = small_setup(wd)
    train(wd, mdl, DATA_XY, 1, 4, "--save", "w.safetensors")
    expect_error(wd, ["--data", "x=x.npy", "--data", "y=y.npy", "--epochs", "2", "--batch", "4",
                      "--weights", "w.safetensors", "--resume", "w.ckpt.safetensors"], 2,
                 [r"--weights.*--resume|--resume.*--weights"], mdl)


def case_err_usage(wd):
    mdl = small_setup(wd)
    base = ["--data", "x=x.npy", "--data", "y=y.npy"]
    expect_error(wd, base + ["--batch", "4"], 2, [r"--epochs"], mdl)
    expect_error(wd, base + ["--epochs", "0", "--batch", "4"], 2, [r"--epochs"], mdl)
    expect_error(wd, base + ["--epochs", "1", "--batch", "0"], 2, [r"--batch"], mdl)
    expect_error(wd, base + ["--epochs", "1", "--batch", "4", "--frobnicate", "1"], 2, [r"frobnicate"], mdl)
    expect_error(wd, base + ["--epochs", "1", "--batch", "4", "--device", "tpu"], 2, [r"tpu"], mdl)
    expect_error(wd, base + ["--epochs", "1"], 2, [], None)


def case_err_resume_wrong_file(wd):
    mdl = small_setup(wd)
    train(wd, mdl, DATA_XY, 1, 4, "--save", "w.safetensors")
    # a weights file (no optimizer state) is not a checkpoint
    expect_error(wd, ["--data", "x=x.npy", "--data", "y=y.npy", "--epochs", "2", "--batch", "4",
                      "--resume", "w.safetensors"], 1, [r"optimizer\.step"], mdl)
    # an sgd checkpoint does not hold adam's state
    mdl2 = write_mdl(wd, "small_adam", SMALL % ("i64", "adam(lr=0.01)"))
    expect_error(wd, ["--data", "x=x.npy", "--data", "y=y.npy", "--epochs", "2", "--batch", "4",
                      "--resume", "w.ckpt.safetensors"], 1, [r"optimizer\.w\."], mdl2)
    expect_error(wd, ["--data", "x=x.npy", "--data", "y=y.npy", "--epochs", "2", "--batch", "4",
                      "--resume", "nonexistent.safetensors"], 1, [r"nonexistent"], mdl)


def case_err_corrupt_checkpoint(wd):
    """A corrupted checkpoint is a clear error and leaves the file alone; the
    good checkpoint written before it still resumes."""
    mdl = small_setup(wd)
    train(wd, mdl, DATA_XY, 1, 4, "--save", "w.safetensors")
    ck = os.path.join(wd, "w.ckpt.safetensors")
    with open(ck, "rb") as f:
        good = f.read()
    for cut in (5, len(good) // 2, len(good) - 3):
        bad = os.path.join(wd, "bad.safetensors")
        with open(bad, "wb") as f:
            f.write(good[:cut])
        expect_error(wd, ["--data", "x=x.npy", "--data", "y=y.npy", "--epochs", "2", "--batch", "4",
                          "--resume", "bad.safetensors"], 1, [r"bad\.safetensors"], mdl)
        with open(bad, "rb") as f:
            if f.read() != good[:cut]:
                raise CaseError("a failed resume modified the checkpoint it read")
    with open(ck, "rb") as f:
        if f.read() != good:
            raise CaseError("the good checkpoint changed")
    train(wd, mdl, DATA_XY, 2, 4, "--resume", "w.ckpt.safetensors", "--save", "w2.safetensors")


def case_err_empty_dataset(wd):
    mdl = small_setup(wd)
    save_npy(os.path.join(wd, "x0.npy"), np.zeros((0, 3), np.float32))
    save_npy(os.path.join(wd, "y0.npy"), np.zeros(0, np.int64))
    expect_error(wd, ["--data", "x=x0.npy", "--data", "y=y0.npy", "--epochs", "1", "--batch", "4"], 1,
                 [r"empty"], mdl)


def case_err_truncated_dataset(wd):
    """A dataset file cut in the middle of a record (.npy, IDX, gzip IDX) is a
    clear error naming the file and how much of it is there."""
    mdl = small_setup(wd)
    raw = open(os.path.join(wd, "x.npy"), "rb").read()
    with open(os.path.join(wd, "xcut.npy"), "wb") as f:
        f.write(raw[:-6])  # 10 records of 12 bytes: the last one cut in half
    expect_error(wd, ["--data", "x=xcut.npy", "--data", "y=y.npy", "--epochs", "1", "--batch", "4"], 1,
                 [r"xcut\.npy: error: truncated: header says 10x3 float32 \(120 bytes\), file has 114"], mdl)
    pix = write_mdl(wd, "pix", LENETISH)
    a = np.arange(5 * 36, dtype=np.uint8).reshape(5, 1, 6, 6)
    cut = idx_bytes(a)[:-20]  # 5 images of 36 bytes: the last one short
    with open(os.path.join(wd, "img.idx"), "wb") as f:
        f.write(cut)
    with gzip.open(os.path.join(wd, "img.idx.gz"), "wb") as f:
        f.write(cut)
    with open(os.path.join(wd, "lab.idx"), "wb") as f:
        f.write(idx_bytes(np.zeros(5, np.uint8)))
    for name in ("img.idx", "img.idx.gz"):
        expect_error(wd, ["--data", "x=" + name, "--data", "y=lab.idx", "--epochs", "1", "--batch", "2"], 1,
                     [re.escape(name) + r": error: truncated: the header says 5 records of 36 bytes, "
                      r"the file holds 160 bytes of data \(4 complete records\)"], pix)


# ---------------------------------------------------------------------------
# 6. determinism
# ---------------------------------------------------------------------------

def case_determinism_two_runs(wd):
    mdl = write_mdl(wd, "big", RESUME_MLP % {"d": 16, "h": 24})
    resume_data(wd, 150, 16)
    for r in ("1", "2"):
        train(wd, mdl, DATA_XY, 2, 16, "--shuffle", "--seed", "4", "--save", "w%s.safetensors" % r)
    same_bytes(os.path.join(wd, "w1.safetensors"), os.path.join(wd, "w2.safetensors"))
    same_bytes(os.path.join(wd, "w1.ckpt.safetensors"), os.path.join(wd, "w2.ckpt.safetensors"))
    # sanity: another seed is another run
    train(wd, mdl, DATA_XY, 2, 16, "--shuffle", "--seed", "5", "--save", "w3.safetensors")
    with open(os.path.join(wd, "w1.safetensors"), "rb") as f1, open(os.path.join(wd, "w3.safetensors"), "rb") as f3:
        if f1.read() == f3.read():
            raise CaseError("--seed 4 and --seed 5 gave the same weights")


def case_determinism_from_weights(wd):
    mdl = write_mdl(wd, "mlp", MLP % {"ldt": "i64", "opt": "adamw(lr=0.01)"})
    write_weights(os.path.join(wd, "init.safetensors"), rand_params(MLP_SHAPES, 6))
    mlp_data(wd, 70, "i64", 7)
    for r in ("1", "2"):
        train(wd, mdl, DATA_XY, 2, 16, "--weights", "init.safetensors", "--save", "w%s.safetensors" % r)
    same_bytes(os.path.join(wd, "w1.safetensors"), os.path.join(wd, "w2.safetensors"))


# ---------------------------------------------------------------------------

# Issue 5's trajectory tests: 50 steps (400 samples, batch 8, one epoch) of SGD
# with momentum and of Adam, for the MLP and for LeNet-5 (the example's
# architecture on 28x28 inputs).
TRAJ_LONG = [
    ("traj50_mlp_sgd_momentum", "u8", "sgd(lr=0.05, momentum=0.9)", 400, 8, 1),
    ("traj50_mlp_adam", "i64", "adam(lr=0.003)", 400, 8, 1),
]

LENET = """
model lenet {
  input  x: f32[B, 1, 28, 28]
  param  conv1.weight: f32[6, 1, 5, 5] = kaiming_uniform
  param  conv1.bias:   f32[6]          = zeros
  param  conv2.weight: f32[16, 6, 5, 5] = kaiming_uniform
  param  conv2.bias:   f32[16]         = zeros
  param  fc1.weight: f32[120, 400] = kaiming_uniform
  param  fc1.bias:   f32[120]      = zeros
  param  fc2.weight: f32[84, 120]  = kaiming_uniform
  param  fc2.bias:   f32[84]       = zeros
  param  fc3.weight: f32[10, 84]   = kaiming_uniform
  param  fc3.bias:   f32[10]       = zeros
  h = max_pool2d(relu(conv2d(x, conv1.weight, conv1.bias, padding=2)), 2)
  h = max_pool2d(relu(conv2d(h, conv2.weight, conv2.bias)), 2)
  h = relu(linear(flatten(h), fc1.weight, fc1.bias))
  h = relu(linear(h, fc2.weight, fc2.bias))
  output logits = linear(h, fc3.weight, fc3.bias)
}
train lenet {
  input y: u8[B]
  loss = cross_entropy(logits, y)
  optimizer = %(opt)s
}
"""
LENET_SHAPES = {"conv1.weight": [6, 1, 5, 5], "conv1.bias": [6], "conv2.weight": [16, 6, 5, 5], "conv2.bias": [16],
                "fc1.weight": [120, 400], "fc1.bias": [120], "fc2.weight": [84, 120], "fc2.bias": [84],
                "fc3.weight": [10, 84], "fc3.bias": [10]}


def lenet_loss(p, d):
    h = F.max_pool2d(F.relu(F.conv2d(d["x"], p["conv1.weight"], p["conv1.bias"], padding=2)), 2)
    h = F.max_pool2d(F.relu(F.conv2d(h, p["conv2.weight"], p["conv2.bias"])), 2)
    h = F.relu(F.linear(h.flatten(1), p["fc1.weight"], p["fc1.bias"]))
    h = F.relu(F.linear(h, p["fc2.weight"], p["fc2.bias"]))
    return F.cross_entropy(F.linear(h, p["fc3.weight"], p["fc3.bias"]), d["y"].long())


def make_traj_lenet(opt, n=400, batch=8):
    def case(wd):
        mdl = write_mdl(wd, "lenet", LENET % {"opt": opt})
        params = rand_params(LENET_SHAPES, 3)
        write_weights(os.path.join(wd, "init.safetensors"), params)
        g = np.random.default_rng(4)
        x = g.random((n, 1, 28, 28)).astype(np.float32)
        y = g.integers(0, 10, n).astype(np.uint8)
        save_npy(os.path.join(wd, "x.npy"), x)
        save_npy(os.path.join(wd, "y.npy"), y)
        data = {"x": torch.from_numpy(x), "y": torch.from_numpy(y.astype(np.int64))}
        _, out, _ = train(wd, mdl, {"x": "x.npy", "y": "y.npy"}, 1, batch,
                          "--weights", "init.safetensors", "--save", "w.safetensors")
        want, losses, _ = torch_train(params, data, lenet_loss, optim_ctor(opt), 1, batch)
        compare_weights(os.path.join(wd, "w.safetensors"), want)
        check_losses(epoch_losses(out), losses)
    return case


# GPT-2 (the small test config of examples/gpt2.mdl, tests/gpt2_train.mdl):
# 50 steps of SGD with momentum and of Adam against the same model in PyTorch.
def make_traj_gpt2(opt):
    def case(wd):
        import grad_ops2_check as G2
        here = os.path.dirname(os.path.abspath(__file__))
        with open(os.path.join(os.path.dirname(here), "gpt2_train.mdl")) as f:
            text = f.read()
        text, k = re.subn(r"optimizer = adamw\([^)]*\)", "optimizer = " + opt, text)
        assert k == 1
        mdl = write_mdl(wd, "gpt2", text)
        torch.manual_seed(0)
        model = G2.GPT2()
        with torch.no_grad():
            for _, p in model.named_parameters():
                p.add_(torch.randn_like(p) * (0.05 if p.dim() == 1 else 0.02))
        params = {n: p.detach().clone() for n, p in model.named_parameters()}
        write_weights(os.path.join(wd, "init.safetensors"), params)
        steps, B, T, V = 50, 2, 9, 101
        g = torch.Generator().manual_seed(1)
        idx = torch.randint(0, V, (steps * B, T), generator=g)
        tgt = torch.randint(0, V, (steps * B, T), generator=g)
        save_npy(os.path.join(wd, "idx.npy"), idx.numpy())
        save_npy(os.path.join(wd, "tgt.npy"), tgt.numpy())
        _, out, _ = train(wd, mdl, {"idx": "idx.npy", "targets": "tgt.npy"}, 1, B,
                          "--weights", "init.safetensors", "--save", "w.safetensors")

        def loss_fn(p, d):  # the model with the trained tensors p (torch 1.13: stateless)
            from torch.nn.utils import stateless
            logits = stateless.functional_call(model, p, (d["idx"],))
            return F.cross_entropy(logits.reshape(-1, V), d["tgt"].reshape(-1))
        want, losses, _ = torch_train(params, {"idx": idx, "tgt": tgt}, loss_fn, optim_ctor(opt), 1, B)
        if opt.startswith("adam"):
            # the attention key bias has a zero gradient in exact arithmetic
            # (softmax ignores a constant added to a row); Adam turns rounding
            # noise there into +-lr steps in both implementations: skip it
            C = want["transformer.wpe.weight"].shape[1]
            for n in list(want):
                if n.endswith("attn.c_attn.bias"):
                    got, _ = E.read_safetensors(os.path.join(wd, "w.safetensors"))
                    keep = torch.ones(3 * C, dtype=torch.bool)
                    keep[C:2 * C] = False
                    E.compare(n + " (q, v parts)", got[n][keep.numpy()], want[n][keep], TOL)
                    del want[n]
            got, _ = E.read_safetensors(os.path.join(wd, "w.safetensors"))
            for n, w in want.items():
                E.compare(n, got[n], w, TOL)
        else:
            compare_weights(os.path.join(wd, "w.safetensors"), want)
        check_losses(epoch_losses(out), losses)
    return case


def all_cases():
    cases = [(n, make_traj(l, o)) for n, l, o in TRAJ]
    cases += [(n, make_traj(l, o, ns, b, e)) for n, l, o, ns, b, e in TRAJ_EXTRA]
    cases += [(n, make_traj(l, o, ns, b, e)) for n, l, o, ns, b, e in TRAJ_LONG]
    cases.append(("traj50_lenet_sgd_momentum", make_traj_lenet("sgd(lr=0.05, momentum=0.9)")))
    # eps=1e-6, not Adam's default 1e-8: with 1e-8, weights whose gradient is
    # at float32's noise floor (|g| ~ 1e-9, sums that cancel) take +-lr steps
    # whose sign is decided by rounding, so any change of summation order (a
    # GEMM's blocking, FMA or not) moves this data's trajectory by ~1e-2 within
    # 50 steps, although every gradient matches PyTorch's to 1e-7.  1e-6 keeps
    # those steps tiny and the comparison about the optimizer, not about noise.
    cases.append(("traj50_lenet_adam", make_traj_lenet("adam(lr=0.001, eps=1e-6)")))
    cases.append(("traj50_gpt2_sgd_momentum", make_traj_gpt2("sgd(lr=0.05, momentum=0.9)")))
    cases.append(("traj50_gpt2_adam", make_traj_gpt2("adam(lr=0.001)")))
    cases.append(("traj_unused_param", case_traj_unused_param))
    cases += [(n, make_grad(n)) for n in GRAD_MODELS]
    cases += [
        ("eval_loss_accuracy", case_eval_loss_accuracy),
        ("idx_gz_matches_npy", case_idx_gz_matches_npy),
        ("resume_epoch_checkpoint", case_resume_epoch_checkpoint),
        ("resume_sigint_ctrl_c", make_sigint(True)),
        ("resume_sigint_to_mlc_only", make_sigint(False)),
        ("nonfinite_loss", case_nonfinite_loss),
        ("nonfinite_first_epoch", case_nonfinite_first_epoch),
        ("err_eval_label_out_of_range", case_err_eval_label_out_of_range),
        ("err_no_train_section", case_err_no_train_section),
        ("err_data_dtype", case_err_data_dtype),
        ("err_data_shape", case_err_data_shape),
        ("err_label_out_of_range_i64", make_label_range("i64", 4)),
        ("err_label_negative_i64", make_label_range("i64", -1)),
        ("err_label_out_of_range_u8", make_label_range("u8", 200)),
        ("err_label_out_of_range_i32", make_label_range("i32", 7)),
        ("err_missing_data", case_err_missing_data),
        ("err_weights_and_resume", case_err_weights_and_resume),
        ("err_usage", case_err_usage),
        ("err_resume_wrong_file", case_err_resume_wrong_file),
        ("err_empty_dataset", case_err_empty_dataset),
        ("err_corrupt_checkpoint", case_err_corrupt_checkpoint),
        ("err_truncated_dataset", case_err_truncated_dataset),
        ("determinism_two_runs", case_determinism_two_runs),
        ("determinism_from_weights", case_determinism_from_weights),
    ]
    return cases


def main():
    global MLC
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mlc", required=True, help="path to the mlc binary")
    ap.add_argument("--filter", default="", help="run only cases whose name contains this")
    ap.add_argument("--keep", action="store_true", help="keep work dirs of passing cases")
    ap.add_argument("--workdir", default=os.path.join(E.OUT, "train"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    MLC = os.path.abspath(args.mlc)
    if not os.access(MLC, os.X_OK):
        print("train_check.py: %s: not an executable" % MLC, file=sys.stderr)
        return 2
    cases = [(n, f) for n, f in all_cases() if args.filter in n]
    passed = failed = 0
    for name, fn in cases:
        wd = os.path.join(os.path.abspath(args.workdir), name)
        shutil.rmtree(wd, ignore_errors=True)
        os.makedirs(wd)
        t0 = time.time()
        try:
            fn(wd)
        except CaseError as e:
            failed += 1
            print("FAIL %s: %s" % (name, e), flush=True)
            if e.detail:
                print("    " + E.tail(e.detail).replace("\n", "\n    "), flush=True)
            continue
        except Exception:
            failed += 1
            print("FAIL %s: test error\n    %s" % (name, traceback.format_exc().replace("\n", "\n    ")), flush=True)
            continue
        passed += 1
        print("PASS %s (%.1fs)" % (name, time.time() - t0), flush=True)
        if not args.keep:
            shutil.rmtree(wd, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed or not cases else 0


if __name__ == "__main__":
    sys.exit(main())
