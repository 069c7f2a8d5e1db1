#!/usr/bin/python3
"""Gradient checks of autodiff rules against torch.autograd.

For each case: a model with params and a train section whose optimizer is
sgd(lr=1); one `mlc train` step over the whole (tiny) dataset gives
w1 = w0 - dL/dw, compared with PyTorch's gradient for the same loss.

usage: /usr/bin/python3 tests/e2e/grad_ops_check.py --mlc build/mlc [--filter S]
Prints PASS/FAIL per case and `N passed, M failed`; exit 1 on failure.
"""
import argparse, os, subprocess, sys, tempfile
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run_e2e import read_safetensors, safetensors_bytes  # noqa: E402

N = 5  # samples = one batch


# name: (mdl body using x: f32[B, 6] and w: f32[6] (param), torch loss fn(x, w))
CASES = {
    "maximum":   ("maximum(x, w)", lambda x, w: torch.maximum(x, w)),
    "minimum":   ("minimum(w, x * 0.5)", lambda x, w: torch.minimum(w, x * 0.5)),
    "pow_base":  ("pow(w * w + 0.5, 1.5)", lambda x, w: torch.pow(w * w + 0.5, 1.5)),
    "pow_exp":   ("pow(x * x + 1.0, w)", lambda x, w: torch.pow(x * x + 1.0, w)),
    "where":     ("where(x > 0.0, w * x, w * 2.0)", lambda x, w: torch.where(x > 0, w * x, w * 2.0)),
    "clamp":     ("clamp(x * w, min=-0.3, max=0.4)", lambda x, w: torch.clamp(x * w, -0.3, 0.4)),
    "clamp_min": ("clamp(x * w, min=-0.1)", lambda x, w: torch.clamp(x * w, min=-0.1)),
    "elu":       ("elu(x * w, alpha=0.7)", lambda x, w: F.elu(x * w, alpha=0.7)),
    "leaky":     ("leaky_relu(x * w, 0.2)", lambda x, w: F.leaky_relu(x * w, 0.2)),
    "gelu":      ("gelu(x * w)", lambda x, w: F.gelu(x * w)),
    "gelu_tanh": ("gelu(x * w, approximate=\"tanh\")", lambda x, w: F.gelu(x * w, approximate="tanh")),
    "erf":       ("erf(x * w)", lambda x, w: torch.erf(x * w)),
    "softplus":  ("softplus(x * w * 10.0)", lambda x, w: F.softplus(x * w * 10.0)),
    "hardsig":   ("hardsigmoid(x * w * 4.0)", lambda x, w: F.hardsigmoid(x * w * 4.0)),
    "hardswish": ("hardswish(x * w * 4.0)", lambda x, w: F.hardswish(x * w * 4.0)),
    "sin_cos":   ("sin(x * w) + cos(w)", lambda x, w: torch.sin(x * w) + torch.cos(w)),
    "recip":     ("reciprocal(w * w + 1.0) * x", lambda x, w: torch.reciprocal(w * w + 1.0) * x),
    "slice_cat": ("concat([slice(x * w, 1, 1, 4), slice(w * 2.0, 0, 0, 2) * x[:,0:2]], 1)", None),
    "unsq_exp":  ("sum(expand(unsqueeze(w, 0), [3, 6]), 0) * x", lambda x, w: w.unsqueeze(0).expand(3, 6).sum(0) * x),
    "pad":       ("pad(x * w, [1, 2], value=0.5)", lambda x, w: F.pad(x * w, [1, 2], value=0.5)),
    "stack":     ("sum(stack([x * w, x + w], 1), 1)", lambda x, w: torch.stack([x * w, x + w], 1).sum(1)),
    "bce":       ("binary_cross_entropy_with_logits(x * w, sigmoid(x))",
                  lambda x, w: F.binary_cross_entropy_with_logits(x * w, torch.sigmoid(x))),
    "nll":       ("nll_loss(log_softmax(x * w, dim=1), argmax(x, dim=1))",
                  lambda x, w: F.nll_loss(F.log_softmax(x * w, dim=1), x.argmax(1))),
}
# slice_cat uses Python-style indexing, not MDL: rewrite it explicitly
CASES["slice_cat"] = ("concat([slice(x * w, 1, 1, 4), slice(x, 1, 0, 2) * slice(w * 2.0, 0, 0, 2)], 1)",
                      lambda x, w: torch.cat([(x * w)[:, 1:4], x[:, 0:2] * (w * 2.0)[0:2]], 1))


def write_model(path, expr):
    with open(path, "w") as f:
        f.write(f"""model g {{
  input x: f32[B, 6]
  param w: f32[6]
  output y = {expr}
}}
train g {{
  input t: f32[B]
  loss = mean(y) + mean(t) * 0.0
  optimizer = sgd(lr=1.0)
}}
""")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mlc", required=True)
    ap.add_argument("--filter", default="")
    args = ap.parse_args()
    passed = failed = 0
    with tempfile.TemporaryDirectory() as td:
        for name, (expr, fn) in CASES.items():
            if args.filter not in name:
                continue
            g = torch.Generator().manual_seed(hash(name) % 1000)
            x = torch.randn(N, 6, generator=g)
            w0 = torch.randn(6, generator=g)
            mdl = os.path.join(td, name + ".mdl")
            write_model(mdl, expr)
            np.save(os.path.join(td, "x.npy"), x.numpy())
            np.save(os.path.join(td, "t.npy"), np.zeros(N, np.float32))
            with open(os.path.join(td, "w0.safetensors"), "wb") as f:
                f.write(safetensors_bytes({"w": w0}))
            out = os.path.join(td, name + ".safetensors")
            r = subprocess.run([args.mlc, "train", mdl, "--data", "x=" + os.path.join(td, "x.npy"), "--data",
                                "t=" + os.path.join(td, "t.npy"), "--epochs", "1", "--batch", str(N),
                                "--weights", os.path.join(td, "w0.safetensors"), "--save", out],
                               capture_output=True, text=True)
            if r.returncode != 0:
                print(f"FAIL {name}: mlc train exited {r.returncode}\n    " + r.stderr.strip().replace("\n", "\n    "))
                failed += 1
                continue
            w1 = torch.from_numpy(read_safetensors(out)[0]["w"])
            wt = w0.clone().requires_grad_(True)
            fn(x, wt).mean().backward()
            want = w0 - wt.grad
            err = (w1 - want).abs().max().item()
            tol = 1e-5 + 1e-4 * want.abs().max().item()
            if err <= tol:
                print(f"PASS {name} (max error {err:.2e})")
                passed += 1
            else:
                print(f"FAIL {name}: max error {err:.3e} > {tol:.1e}\n    mlc   {w1.numpy()}\n    torch {want.numpy()}")
                failed += 1
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
