#!/usr/bin/python3
"""Train-mode checks against PyTorch: batch_norm with batch statistics and the
running-statistics update, the gradients of batch_norm / layer_norm /
group_norm / rms_norm (with and without weight and bias), dropout's seeded
masks, and one SGD step of ResNet-18.

Each norm case is a model `m` with input x, output y and a train section with
input t and loss = mean(y * t), optimizer sgd(lr=1): one `mlc train` step over
the whole (tiny) dataset gives w1 = w0 - dL/dw, compared with PyTorch in train
mode (model.train()); the saved buffers must hold PyTorch's updated running
statistics, and the eval loss that `mlc train --eval` prints afterwards must
be PyTorch's in eval mode (running statistics).

usage: /usr/bin/python3 tests/e2e/trainmode_check.py --mlc build/mlc [--filter S]
Prints PASS/FAIL per case and `N passed, M failed`; exit 1 on failure.
"""
import argparse, os, re, subprocess, sys, tempfile
import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from run_e2e import read_safetensors, safetensors_bytes  # noqa: E402

N = 4  # samples = one batch


def bn(h, P, pre, training, momentum=0.1, eps=1e-5, affine=(True, True)):
    """F.batch_norm on the tensors named pre.*; updates P's running stats in place when training."""
    return F.batch_norm(h, P[pre + ".running_mean"], P[pre + ".running_var"],
                        P[pre + ".weight"] if affine[0] else None, P[pre + ".bias"] if affine[1] else None,
                        training, momentum, eps)


# name: (x shape, y shape, mdl model body, {param: shape}, {buffer: (shape, kind)}, torch fn(x, P, training))
BN_BUFS = lambda pre, c: {pre + ".running_mean": ((c,), "normal"), pre + ".running_var": ((c,), "positive")}
CASES = {
    "batch_norm_cnn": (
        (N, 3, 6, 6), (N, 4, 6, 6), """
  param c1.weight: f32[5, 3, 3, 3]
  param bn1.weight: f32[5]
  param bn1.bias: f32[5]
  buffer bn1.running_mean: f32[5]
  buffer bn1.running_var: f32[5]
  param c2.weight: f32[4, 5, 3, 3]
  param bn2.weight: f32[4]
  param bn2.bias: f32[4]
  buffer bn2.running_mean: f32[4]
  buffer bn2.running_var: f32[4]
  h = relu(batch_norm(conv2d(x, c1.weight, padding=1), bn1.running_mean, bn1.running_var, bn1.weight, bn1.bias, momentum=0.3))
  output y = batch_norm(conv2d(h, c2.weight, padding=1), bn2.running_mean, bn2.running_var, bn2.weight, bn2.bias)
""", {"c1.weight": (5, 3, 3, 3), "bn1.weight": (5,), "bn1.bias": (5,), "c2.weight": (4, 5, 3, 3),
      "bn2.weight": (4,), "bn2.bias": (4,)}, {**BN_BUFS("bn1", 5), **BN_BUFS("bn2", 4)},
        lambda x, P, tr: bn(F.conv2d(F.relu(bn(F.conv2d(x, P["c1.weight"], padding=1), P, "bn1", tr, momentum=0.3)),
                                     P["c2.weight"], padding=1), P, "bn2", tr)),
    "batch_norm_noaffine": (
        (N, 3, 5, 5), (N, 4, 5, 5), """
  param c.weight: f32[4, 3, 3, 3]
  buffer bn.running_mean: f32[4]
  buffer bn.running_var: f32[4]
  output y = batch_norm(conv2d(x, c.weight, padding=1), bn.running_mean, bn.running_var, eps=1e-3, momentum=0.5)
""", {"c.weight": (4, 3, 3, 3)}, BN_BUFS("bn", 4),
        lambda x, P, tr: bn(F.conv2d(x, P["c.weight"], padding=1), P, "bn", tr, 0.5, 1e-3, (False, False))),
    "batch_norm_1d_weight_only": (
        (N, 6), (N, 8), """
  param fc.weight: f32[8, 6]
  param bn.weight: f32[8]
  buffer bn.running_mean: f32[8]
  buffer bn.running_var: f32[8]
  output y = tanh(batch_norm(linear(x, fc.weight), bn.running_mean, bn.running_var, bn.weight))
""", {"fc.weight": (8, 6), "bn.weight": (8,)}, BN_BUFS("bn", 8),
        lambda x, P, tr: torch.tanh(bn(F.linear(x, P["fc.weight"]), P, "bn", tr, affine=(True, False)))),
    "batch_norm_3d_bias_only": (
        (N, 3, 7), (N, 3, 7), """
  param s: f32[7]
  param bn.bias: f32[3]
  buffer bn.running_mean: f32[3]
  buffer bn.running_var: f32[3]
  output y = batch_norm(x * s, bn.running_mean, bn.running_var, bias=bn.bias)
""", {"s": (7,), "bn.bias": (3,)}, BN_BUFS("bn", 3),
        lambda x, P, tr: bn(x * P["s"], P, "bn", tr, affine=(False, True))),
    "layer_norm": (
        (N, 5, 6), (N, 5, 8), """
  param fc.weight: f32[8, 6]
  param ln.weight: f32[8]
  param ln.bias: f32[8]
  output y = layer_norm(linear(x, fc.weight), ln.weight, ln.bias)
""", {"fc.weight": (8, 6), "ln.weight": (8,), "ln.bias": (8,)}, {},
        lambda x, P, tr: F.layer_norm(F.linear(x, P["fc.weight"]), (8,), P["ln.weight"], P["ln.bias"])),
    "layer_norm_2d_nobias": (
        (N, 5, 6), (N, 5, 6), """
  param s: f32[6]
  param ln.weight: f32[5, 6]
  output y = layer_norm(x * s, ln.weight, eps=1e-3)
""", {"s": (6,), "ln.weight": (5, 6)}, {},
        lambda x, P, tr: F.layer_norm(x * P["s"], (5, 6), P["ln.weight"], None, 1e-3)),
    "layer_norm_2d": (
        (N, 5, 6), (N, 5, 6), """
  param s: f32[6]
  param ln.weight: f32[5, 6]
  param ln.bias: f32[5, 6]
  output y = layer_norm(x * s, ln.weight, ln.bias)
""", {"s": (6,), "ln.weight": (5, 6), "ln.bias": (5, 6)}, {},
        lambda x, P, tr: F.layer_norm(x * P["s"], (5, 6), P["ln.weight"], P["ln.bias"])),
    "rms_norm": (
        (N, 3, 8), (N, 3, 8), """
  param s: f32[8]
  param rms.weight: f32[8]
  output y = rms_norm(x * s, rms.weight)
""", {"s": (8,), "rms.weight": (8,)}, {},
        lambda x, P, tr: (lambda h: h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6) * P["rms.weight"])(x * P["s"])),
    "group_norm": (
        (N, 3, 5, 5), (N, 6, 5, 5), """
  param c.weight: f32[6, 3, 3, 3]
  param gn.weight: f32[6]
  param gn.bias: f32[6]
  output y = group_norm(conv2d(x, c.weight, padding=1), 2, gn.weight, gn.bias)
""", {"c.weight": (6, 3, 3, 3), "gn.weight": (6,), "gn.bias": (6,)}, {},
        lambda x, P, tr: F.group_norm(F.conv2d(x, P["c.weight"], padding=1), 2, P["gn.weight"], P["gn.bias"])),
    "group_norm_noaffine": (
        (N, 6, 7), (N, 6, 7), """
  param s: f32[7]
  output y = group_norm(x * s, 3, eps=1e-4)
""", {"s": (7,)}, {},
        lambda x, P, tr: F.group_norm(x * P["s"], 3, None, None, 1e-4)),
    "dropout_p0_and_bn": (
        (N, 4, 3, 3), (N, 4, 3, 3), """
  param s: f32[3]
  param bn.weight: f32[4]
  buffer bn.running_mean: f32[4]
  buffer bn.running_var: f32[4]
  output y = dropout(batch_norm(x * s, bn.running_mean, bn.running_var, bn.weight), 0.0)
""", {"s": (3,), "bn.weight": (4,)}, BN_BUFS("bn", 4),
        lambda x, P, tr: F.dropout(bn(x * P["s"], P, "bn", tr, affine=(True, False)), 0.0, tr)),
}


def dims(shape):
    return "B, " + ", ".join(str(d) for d in shape[1:])


def mlc_train(mlc, td, mdl, data, extra=()):
    args = [mlc, "train", mdl]
    for k, v in data.items():
        args += ["--data", f"{k}={v}"]
    return subprocess.run(args + list(extra), capture_output=True, text=True)


def check_close(name, got, want, rtol=1e-4, atol=1e-5):
    err = float(np.abs(got - want).max()) if got.size else 0.0
    tol = atol + rtol * float(np.abs(want).max() if want.size else 0)
    return err <= tol, f"{name}: max error {err:.2e} (tol {tol:.1e})"


def run_norm_case(mlc, td, name, case):
    xs, ys, body, pshapes, bshapes, fn = case
    g = torch.Generator().manual_seed(sum(map(ord, name)))
    x = torch.randn(*xs, generator=g)
    t = torch.randn(*ys, generator=g)
    P0 = {k: torch.randn(*s, generator=g) * (0.5 if "weight" in k and len(s) > 1 else 1.0) for k, s in pshapes.items()}
    B0 = {}
    for k, (s, kind) in bshapes.items():
        r = torch.randn(*s, generator=g)
        B0[k] = r.abs() + 0.5 if kind == "positive" else r
    mdl = os.path.join(td, name + ".mdl")
    with open(mdl, "w") as f:
        f.write(f"model m {{\n  input x: f32[{dims(xs)}]\n{body}}}\n"
                f"train m {{\n  input t: f32[{dims(ys)}]\n  loss = mean(y * t)\n  optimizer = sgd(lr=1.0)\n}}\n")
    np.save(os.path.join(td, "x.npy"), x.numpy())
    np.save(os.path.join(td, "t.npy"), t.numpy())
    w0 = os.path.join(td, name + ".w0.safetensors")
    with open(w0, "wb") as f:
        f.write(safetensors_bytes({**P0, **B0}))
    out = os.path.join(td, name + ".safetensors")
    xp, tp = os.path.join(td, "x.npy"), os.path.join(td, "t.npy")
    r = mlc_train(mlc, td, mdl, {"x": xp, "t": tp}, ["--epochs", "1", "--batch", str(N), "--weights", w0,
                                                     "--save", out, "--eval", f"x={xp},t={tp}"])
    if r.returncode != 0:
        return False, f"mlc train exited {r.returncode}\n    " + r.stderr.strip().replace("\n", "\n    ")
    got = read_safetensors(out)[0]
    # PyTorch: model.train(), one step of sgd(lr=1), then model.eval() on the same data
    P = {k: v.clone().requires_grad_(True) for k, v in P0.items()}
    Pb = {**P, **{k: v.clone() for k, v in B0.items()}}
    (fn(x, Pb, True) * t).mean().backward()
    msgs, ok = [], True
    with torch.no_grad():
        for k in P0:  # the gradient w0 - w1 (w0 is exact; w1 rounds by an ulp of w)
            good, msg = check_close("grad " + k, P0[k].numpy() - got[k], P[k].grad.numpy(),
                                    atol=1e-6 + 2e-7 * float(P0[k].abs().max()))
            ok &= good
            msgs.append(msg)
        for k in B0:
            good, msg = check_close(k, got[k], Pb[k].numpy())
            ok &= good
            msgs.append(msg)
        Pe = {**{k: P[k] - P[k].grad for k in P0}, **{k: Pb[k] for k in B0}}
        eval_loss = float((fn(x, Pe, False) * t).mean())
    m = re.search(r"eval loss (-?[0-9.]+)", r.stdout + r.stderr)
    if not m:
        return False, "no eval loss printed:\n    " + (r.stdout + r.stderr).strip().replace("\n", "\n    ")
    good = abs(float(m.group(1)) - eval_loss) <= 1.5e-4 + 1e-4 * abs(eval_loss)
    ok &= good
    msgs.append(f"eval loss {m.group(1)} vs torch {eval_loss:.6f}")
    return ok, "; ".join(msgs)


# ---- dropout ----------------------------------------------------------------
DROP_P = 0.3
DROP_N = 4000


def dropout_model(td, p=DROP_P):
    mdl = os.path.join(td, "drop.mdl")
    with open(mdl, "w") as f:
        f.write(f"""model m {{
  input x: f32[B, {DROP_N}]
  param w: f32[{DROP_N}]
  output y = dropout(x + w, {p})
}}
train m {{
  input t: f32[B]
  loss = sum(y) + mean(t) * 0.0
  optimizer = sgd(lr=1.0)
}}
""")
    return mdl


def dropout_cases(mlc, td, results):
    """w0 = 0 and x = 0: one step gives w1 = -mask / (1 - p) (summed over the steps)."""
    mdl = dropout_model(td)
    xp, tp, w0 = os.path.join(td, "dx.npy"), os.path.join(td, "dt.npy"), os.path.join(td, "dw0.safetensors")
    np.save(xp, np.zeros((2, DROP_N), np.float32))
    np.save(tp, np.zeros(2, np.float32))
    with open(w0, "wb") as f:
        f.write(safetensors_bytes({"w": torch.zeros(DROP_N)}))

    def train(seed, batch, tag):
        out = os.path.join(td, f"drop_{tag}.safetensors")
        r = mlc_train(mlc, td, mdl, {"x": xp, "t": tp}, ["--epochs", "1", "--batch", str(batch), "--weights", w0,
                                                         "--save", out, "--seed", str(seed)])
        if r.returncode != 0:
            raise RuntimeError(f"mlc train exited {r.returncode}: {r.stderr.strip()}")
        return read_safetensors(out)[0]["w"]

    scale = np.float32(1.0) / np.float32(1.0 - DROP_P)
    try:
        a = train(5, 1, "a")      # two steps of one sample each
        a2 = train(5, 1, "a2")
        b = train(6, 1, "b")
        one = train(5, 2, "one")  # one step over both samples: one mask per element of [2, N]
    except RuntimeError as e:
        results.append(("dropout", False, str(e)))
        return
    results.append(("dropout_same_seed_same_weights", np.array_equal(a, a2), "two runs with --seed 5"))
    results.append(("dropout_other_seed_differs", not np.array_equal(a, b), f"{int((a != b).sum())} of {DROP_N} differ"))
    # per step the gradient of sum(dropout(w)) is mask * scale: w1 = -(m1 + m2) * scale
    vals = set(np.unique(-a / scale).round(5).tolist())
    results.append(("dropout_values_are_masks", vals <= {0.0, 1.0, 2.0} and 1.0 in vals,
                    f"w1 / -(1/(1-p)) takes the values {sorted(vals)}"))
    # one step with B = 2: w1 = -(mask[0] + mask[1]) * scale; the dropped fraction of 2N draws
    kept = -one / scale
    frac = 1.0 - float(kept.sum()) / (2 * DROP_N)
    sd = (DROP_P * (1 - DROP_P) / (2 * DROP_N)) ** 0.5
    results.append(("dropout_fraction_is_p", abs(frac - DROP_P) < 5 * sd, f"dropped {frac:.4f}, p = {DROP_P}"))
    exact = np.all(np.isin(one, -np.array([0, 1, 2], np.float32) * scale))
    results.append(("dropout_scale_is_1/(1-p)", bool(exact), f"scale {scale!r}"))
    # steps differ: with two one-sample steps some element is kept once only
    results.append(("dropout_masks_differ_per_step", 1.0 in vals and (0.0 in vals or 2.0 in vals), ""))

    # run and evaluate: identity
    g = torch.Generator().manual_seed(3)
    xr = torch.randn(3, DROP_N, generator=g)
    wr = torch.randn(DROP_N, generator=g)
    wp = os.path.join(td, "dwr.safetensors")
    with open(wp, "wb") as f:
        f.write(safetensors_bytes({"w": wr}))
    xrp = os.path.join(td, "dxr.npy")
    np.save(xrp, xr.numpy())
    od = os.path.join(td, "drun")
    os.makedirs(od, exist_ok=True)
    r = subprocess.run([mlc, "run", mdl, "--weights", wp, "--input", f"x={xrp}", "--out", od], capture_output=True, text=True)
    ok = r.returncode == 0 and np.array_equal(np.load(os.path.join(od, "y.npy")), (xr + wr).numpy())
    results.append(("dropout_run_is_identity", ok, r.stderr.strip()))
    # evaluate: eval loss = sum(x + w) per batch, averaged over batches; with lr=0 training leaves w
    mdl0 = os.path.join(td, "drop0.mdl")
    with open(mdl, "r") as f:
        src = f.read().replace("sgd(lr=1.0)", "sgd(lr=0.0)")
    with open(mdl0, "w") as f:
        f.write(src)
    xe = np.ones((1, DROP_N), np.float32)
    xep, tep = os.path.join(td, "dxe.npy"), os.path.join(td, "dte.npy")
    np.save(xep, xe)
    np.save(tep, np.zeros(1, np.float32))
    z = os.path.join(td, "dz.safetensors")
    with open(z, "wb") as f:
        f.write(safetensors_bytes({"w": torch.zeros(DROP_N)}))
    r = mlc_train(mlc, td, mdl0, {"x": xep, "t": tep}, ["--epochs", "1", "--batch", "1", "--weights", z,
                                                        "--save", os.path.join(td, "dz1.safetensors"),
                                                        "--eval", f"x={xep},t={tep}"])
    out = r.stdout + r.stderr
    m = re.search(r"train loss (-?[0-9.]+), eval loss (-?[0-9.]+)", out)
    ok = bool(m) and float(m.group(2)) == float(DROP_N) and float(m.group(1)) != float(DROP_N)
    results.append(("dropout_evaluate_is_identity", ok, m.group(0) if m else out.strip()))


# ---- ResNet-18 ----------------------------------------------------------------
class BasicBlock(torch.nn.Module):
    def __init__(self, cin, planes, stride):
        super().__init__()
        nn = torch.nn
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return F.relu(h + (self.downsample(x) if self.downsample is not None else x))


class ResNet18(torch.nn.Module):
    """torchvision.models.resnet18(num_classes=10), written out (same state_dict names)."""
    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        chans, cin = [64, 128, 256, 512], 64
        for i, c in enumerate(chans):
            s = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(cin, c, s), BasicBlock(c, c, 1)))
            cin = c
        self.fc = nn.Linear(512, 10)

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        for i in range(4):
            h = getattr(self, f"layer{i + 1}")(h)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


def resnet18_case(mlc, td, results):
    """tests/e2e/train/resnet18_train.mdl: examples/resnet18.mdl with a train
    section (cross_entropy, sgd(lr=0.1, momentum=0.9)); one step on 4 images."""
    torch.manual_seed(0)
    model = ResNet18()
    with torch.no_grad():  # non-trivial affine params and running statistics
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
    sd0 = {k: v.clone() for k, v in model.state_dict().items()}
    w0 = os.path.join(td, "r18.w0.safetensors")
    with open(w0, "wb") as f:
        f.write(safetensors_bytes(sd0))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (4,), generator=g)
    xp, yp = os.path.join(td, "r18x.npy"), os.path.join(td, "r18y.npy")
    np.save(xp, x.numpy())
    np.save(yp, y.numpy())
    out = os.path.join(td, "r18.safetensors")
    r = mlc_train(mlc, td, os.path.join(HERE, "train", "resnet18_train.mdl"), {"x": xp, "y": yp},
                  ["--epochs", "1", "--batch", "4", "--weights", w0, "--save", out])
    if r.returncode != 0:
        results.append(("resnet18_sgd_step", False, f"mlc train exited {r.returncode}: {r.stderr.strip()}"))
        return
    got = read_safetensors(out)[0]
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()
    sd1 = model.state_dict()
    worst, bad = 0.0, []
    for k, v in sd1.items():
        if k.endswith("num_batches_tracked"):
            continue  # a counter PyTorch only reads when momentum=None: mlc leaves it as loaded
        want, have = v.numpy(), got[k]
        if k.endswith("running_mean") or k.endswith("running_var"):
            err, scale = np.abs(have - want).max(), np.abs(want).max()
        else:  # compare the update w1 - w0 (the gradient times lr)
            d = want - sd0[k].numpy()
            err, scale = np.abs((have - sd0[k].numpy()) - d).max(), np.abs(d).max()
        rel = float(err / (scale + 1e-12))
        worst = max(worst, rel)
        if err > 1e-6 + 2e-3 * scale:
            bad.append(f"{k} rel {rel:.1e}")
    results.append(("resnet18_sgd_step", not bad, f"{len(sd1)} tensors, worst relative error {worst:.1e}" +
                    ("; " + ", ".join(bad[:6]) if bad else "")))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mlc", required=True)
    ap.add_argument("--filter", default="")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as td:
        for name, case in CASES.items():
            if args.filter in name:
                ok, msg = run_norm_case(args.mlc, td, name, case)
                results.append((name, ok, msg))
        if args.filter in "dropout":
            dropout_cases(args.mlc, td, results)
        if args.filter in "resnet18":
            resnet18_case(args.mlc, td, results)
    passed = sum(ok for _, ok, _ in results)
    for name, ok, msg in results:
        print(f"{'PASS' if ok else 'FAIL'} {name}" + (f" ({msg})" if ok else f": {msg}"))
    print(f"{passed} passed, {len(results) - passed} failed")
    sys.exit(1 if passed < len(results) else 0)


if __name__ == "__main__":
    main()
