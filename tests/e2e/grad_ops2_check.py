#!/usr/bin/python3
"""Gradient checks against torch.autograd for attention, convolutions
(conv1d, conv2d with dilation/groups, conv_transpose2d), index_select,
gather, cumsum, interpolate and max/min/prod reductions; and one adamw step
of GPT-2 (tests/gpt2_train.mdl) against the same model in PyTorch.

Each case is a model whose params feed the op under test; the train section's
loss is mean(y * r) with r a random input (so dy is not uniform) and the
optimizer sgd(lr=1): one `mlc train` step over the whole (tiny) dataset gives
w1 = w0 - dL/dw for every param, compared with PyTorch's gradients.

usage: /usr/bin/python3 tests/e2e/grad_ops2_check.py --mlc build/mlc [--filter S]
Prints PASS/FAIL per case and `N passed, M failed`; exit 1 on failure.
"""
import argparse, math, os, re, subprocess, sys, tempfile
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run_e2e import read_safetensors, safetensors_bytes  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
N = 3  # samples = one batch


def sdpa_math(q, k, v, attn_mask=None, is_causal=False, scale=None):
    """torch 2.x F.scaled_dot_product_attention, math definition (torch 1.13 has none)."""
    L, S = q.size(-2), k.size(-2)
    scale = 1 / math.sqrt(q.size(-1)) if scale is None else scale
    bias = torch.zeros(L, S, dtype=q.dtype, device=q.device)
    if is_causal:
        bias.masked_fill_(torch.ones(L, S, dtype=torch.bool, device=q.device).tril(0).logical_not(), float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            bias = bias.masked_fill(attn_mask.logical_not(), float("-inf"))
        else:
            bias = attn_mask + bias
    w = q @ k.transpose(-2, -1) * scale + bias
    return torch.softmax(w, dim=-1) @ v


# PyTorch's own where it has one (2.x: fused kernels on a GPU, as bench/gpu_bench.py's
# GPT-2 should be timed against), else the math definition
sdpa = getattr(F, "scaled_dot_product_attention", sdpa_math)


def randn(*shape, g):
    return torch.randn(*shape, generator=g)


def ties(*shape, g):
    """Small integers: many ties for max/min."""
    return torch.randint(-2, 3, shape, generator=g).float()


def bool_mask(shape, g):
    m = torch.rand(*shape, generator=g) < 0.5
    m[..., 0] = True  # no fully masked row
    return m


def float_mask(shape, g):
    m = torch.randn(*shape, generator=g)
    m[torch.rand(*shape, generator=g) < 0.3] = float("-inf")
    m[..., -1] = 0.5  # no fully masked row
    return m


def zeros_rows(s):
    """Rows of s [4, 5] with no, one and two zeros (prod's special cases)."""
    s[1, 2] = 0
    s[2, 0] = 0
    s[2, 3] = 0


def attn_case(Tq, Tk, D, Dv, call, fn, mask=None, heads=2):
    """q, k, v = linear projections (params wq, wk, wv) of inputs; y = attention."""
    H = f"{heads}, " if heads else ""
    hs = [heads] if heads else []
    ins = {"xq": ("f32", hs + [Tq, D], randn), "xk": ("f32", hs + [Tk, D], randn), "xv": ("f32", hs + [Tk, D], randn)}
    if mask:
        ins["m"] = mask
    body = "q = linear(xq, wq)\n  k = linear(xk, wk)\n  v = linear(xv, wv)\n  y = " + call
    return dict(inputs=ins, params={"wq": [D, D], "wk": [D, D], "wv": [Dv, D]}, body=body,
                fn=lambda p, i: fn(i["xq"] @ p["wq"].t(), i["xk"] @ p["wk"].t(), i["xv"] @ p["wv"].t(), i))


def x_times(shape, body, fn, init=randn, extra=None, params=None):
    """x = xin * s (s a param of one sample's shape); y = body over x."""
    ins = {"xin": ("f32", shape, init)}
    ins.update(extra or {})
    ps = {"s": shape}
    ps.update(params or {})
    return dict(inputs=ins, params=ps, body="x = xin * s\n  y = " + body,
                fn=lambda p, i: fn(i["xin"] * p["s"], p, i))


CASES = {
    "sdpa_plain": attn_case(5, 5, 4, 4, "scaled_dot_product_attention(q, k, v)", lambda q, k, v, i: sdpa(q, k, v)),
    "sdpa_causal": attn_case(5, 5, 4, 4, "scaled_dot_product_attention(q, k, v, causal=true)",
                             lambda q, k, v, i: sdpa(q, k, v, is_causal=True)),
    "sdpa_scale": attn_case(4, 4, 4, 4, "scaled_dot_product_attention(q, k, v, scale=0.3)",
                            lambda q, k, v, i: sdpa(q, k, v, scale=0.3)),
    "sdpa_cross": attn_case(3, 6, 4, 5, "scaled_dot_product_attention(q, k, v)", lambda q, k, v, i: sdpa(q, k, v)),
    "sdpa_cross_causal": attn_case(3, 6, 4, 5, "scaled_dot_product_attention(q, k, v, causal=true)",
                                   lambda q, k, v, i: sdpa(q, k, v, is_causal=True)),
    "sdpa_causal_tq_gt_tk": attn_case(6, 4, 4, 3, "scaled_dot_product_attention(q, k, v, causal=true)",
                                      lambda q, k, v, i: sdpa(q, k, v, is_causal=True)),
    "sdpa_bool_mask": attn_case(4, 6, 4, 4, "scaled_dot_product_attention(q, k, v, attn_mask=m)",
                                lambda q, k, v, i: sdpa(q, k, v, attn_mask=i["m"]),
                                mask=("bool", [1, 4, 6], lambda *s, g: bool_mask(s, g))),
    "sdpa_float_mask": attn_case(5, 3, 4, 2, "scaled_dot_product_attention(q, k, v, attn_mask=m, scale=0.7)",
                                 lambda q, k, v, i: sdpa(q, k, v, attn_mask=i["m"], scale=0.7),
                                 mask=("f32", [2, 5, 3], lambda *s, g: float_mask(s, g))),
    "sdpa_rank3": attn_case(5, 5, 3, 3, "scaled_dot_product_attention(q, k, v, causal=true)",
                            lambda q, k, v, i: sdpa(q, k, v, is_causal=True), heads=0),
    "conv1d": x_times([4, 11], "conv1d(x, w, b, stride=2, padding=1, dilation=2, groups=2)",
                      lambda x, p, i: F.conv1d(x, p["w"], p["b"], stride=2, padding=1, dilation=2, groups=2),
                      params={"w": [6, 2, 3], "b": [6]}),
    "conv1d_plain": x_times([3, 8], "conv1d(x, w)", lambda x, p, i: F.conv1d(x, p["w"]), params={"w": [5, 3, 3]}),
    "conv2d_dil_groups": x_times([4, 7, 7], "conv2d(x, w, b, padding=2, dilation=2, groups=2)",
                                 lambda x, p, i: F.conv2d(x, p["w"], p["b"], padding=2, dilation=2, groups=2),
                                 params={"w": [6, 2, 3, 3], "b": [6]}),
    "conv2d_depthwise": x_times([4, 8, 7], "conv2d(x, w, stride=[2, 1], padding=[1, 0], dilation=[1, 2], groups=4)",
                                lambda x, p, i: F.conv2d(x, p["w"], stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=4),
                                params={"w": [8, 1, 3, 2]}),
    "conv_t2d": x_times([4, 5, 5], "conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1)",
                        lambda x, p, i: F.conv_transpose2d(x, p["w"], p["b"], stride=2, padding=1, output_padding=1),
                        params={"w": [4, 3, 3, 3], "b": [3]}),
    "conv_t2d_groups_dil": x_times([4, 4, 3], "conv_transpose2d(x, w, b, stride=[2, 1], padding=[0, 1], output_padding=[1, 0], groups=2, dilation=2)",
                                   lambda x, p, i: F.conv_transpose2d(x, p["w"], p["b"], stride=(2, 1), padding=(0, 1),
                                                                      output_padding=(1, 0), groups=2, dilation=2),
                                   params={"w": [4, 3, 2, 3], "b": [6]}),
    "index_select": x_times([5, 6], "index_select(x, 2, ix)",
                            lambda x, p, i: torch.index_select(x, 2, i["ix"].reshape(-1)[:N]),
                            extra={"ix": ("i64", [], lambda *s, g: torch.tensor([4, 1, 4][:N]))}),
    "index_select_rows": x_times([5, 6], "index_select(x, 1, ix)",
                                 lambda x, p, i: torch.index_select(x, 1, i["ix"]),
                                 extra={"ix": ("i64", [], lambda *s, g: torch.tensor([3, 0, 3][:N]))}),
    "gather_dim1": x_times([5, 6], "gather(x, 1, ix)", lambda x, p, i: torch.gather(x, 1, i["ix"]),
                           extra={"ix": ("i64", [7, 6], lambda *s, g: torch.randint(0, 5, s, generator=g))}),
    "gather_last_small": x_times([5, 6], "gather(x, -1, ix)", lambda x, p, i: torch.gather(x, -1, i["ix"].long()),
                                 extra={"ix": ("i32", [4, 3], lambda *s, g: torch.randint(0, 6, s, generator=g).int())}),
    "cumsum": x_times([5, 6], "cumsum(x, 1) + cumsum(x, -1)", lambda x, p, i: torch.cumsum(x, 1) + torch.cumsum(x, -1)),
    "interp2d": x_times([2, 3, 4], "interpolate(x, scale_factor=2)",
                        lambda x, p, i: F.interpolate(x, scale_factor=2, mode="nearest")),
    "interp1d_s3": x_times([2, 5], "interpolate(x, scale_factor=3)",
                           lambda x, p, i: F.interpolate(x, scale_factor=3, mode="nearest")),
    "interp3d": x_times([1, 2, 3, 2], "interpolate(x, scale_factor=2)",
                        lambda x, p, i: F.interpolate(x, scale_factor=2, mode="nearest")),
    "max_dim": x_times([5, 6], "max(x, 1)", lambda x, p, i: torch.max(x, 1).values, init=ties),
    "min_dim_keep": x_times([5, 6], "min(x, -1, keepdim=true)", lambda x, p, i: torch.min(x, -1, keepdim=True).values,
                            init=ties),
    "max_all": x_times([5, 6], "max(x) * xin", lambda x, p, i: torch.max(x) * i["xin"], init=ties),
    "min_all": x_times([5, 6], "min(x) * xin", lambda x, p, i: torch.min(x) * i["xin"], init=ties),
    "max_dims": x_times([5, 6], "max(x, [1, 2])", lambda x, p, i: torch.amax(x, [1, 2]), init=ties),
    "prod_dim": dict(x_times([4, 5], "prod(x, 2)", lambda x, p, i: torch.prod(x, 2),
                             init=lambda *s, g: torch.rand(*s, generator=g) + 0.5), prep=lambda p, i: zeros_rows(p["s"])),
    "prod_all": x_times([2, 3], "prod(x) * xin", lambda x, p, i: torch.prod(x) * i["xin"],
                        init=lambda *s, g: torch.rand(*s, generator=g) + 0.5),
    # x = xin + s with a single exact zero (xin = -s there): only that element gets a gradient
    "prod_all_one_zero": dict(inputs={"xin": ("f32", [2, 3], lambda *s, g: torch.rand(*s, generator=g) + 0.5)},
                              params={"s": [2, 3]}, body="x = xin + s\n  y = prod(x) * xin",
                              fn=lambda p, i: torch.prod(i["xin"] + p["s"]) * i["xin"],
                              prep=lambda p, i: i["xin"].__setitem__((1, 0, 2), -float(p["s"][0, 2]))),
    "argmax_no_grad": x_times([5, 6], "max(x, 1) + to_f32(argmax(x, 1)) + to_f32(argmin(x, 2))[:, 0:1] * 0.0",
                              lambda x, p, i: torch.max(x, 1).values + torch.argmax(x, 1).float()
                              + torch.argmin(x, 2).float()[:, 0:1] * 0.0),
}
# MDL has no Python-style indexing: use slice()
CASES["argmax_no_grad"] = x_times([5, 6], "max(x, 1) + to_f32(argmax(x, 1)) + slice(to_f32(argmin(x, 2)), 1, 0, 1) * 0.0",
                                  lambda x, p, i: torch.max(x, 1).values + torch.argmax(x, 1).float()
                                  + torch.argmin(x, 2).float()[:, 0:1] * 0.0)

MDL_DT = {"f32": "f32", "i64": "i64", "i32": "i32", "bool": "bool"}


def mdl_type(dt, shape):
    return f"{dt}[{', '.join(['B'] + [str(d) for d in shape])}]"


def run_case(name, case, args, td):
    g = torch.Generator().manual_seed(sum(map(ord, name)))
    inputs = {}
    for n, (dt, shape, init) in case["inputs"].items():
        t = init(*([N] + shape), g=g)
        inputs[n] = t
    params = {n: torch.randn(*s, generator=g) * 0.5 for n, s in case["params"].items()}
    if "prep" in case:
        case["prep"](params, inputs)
    if name.startswith(("max", "min")):
        params["s"] = torch.ones_like(params["s"])  # keep the ties of the integer inputs
    with torch.no_grad():
        y = case["fn"](params, inputs)
    yshape = list(y.shape[1:]) if y.dim() > 0 else []
    r = torch.randn(N, *yshape, generator=g) if y.dim() > 0 else torch.randn(N, generator=g)
    lines = ["model g {"]
    for n, (dt, shape, _) in case["inputs"].items():
        lines.append(f"  input {n}: {mdl_type(dt, shape)}")
    for n, s in case["params"].items():
        lines.append(f"  param {n}: f32[{', '.join(map(str, s))}]")
    lines.append("  " + case["body"])
    lines.append("  output y\n}")
    lines.append("train g {")
    lines.append(f"  input r: {mdl_type('f32', yshape)}")
    lines.append("  loss = mean(y * r)")
    lines.append("  optimizer = sgd(lr=1.0)\n}\n")
    mdl = os.path.join(td, name + ".mdl")
    with open(mdl, "w") as f:
        f.write("\n".join(lines))
    data = []
    for n, t in list(inputs.items()) + [("r", r)]:
        path = os.path.join(td, f"{name}_{n}.npy")
        np.save(path, t.numpy())
        data += ["--data", f"{n}={path}"]
    w0 = os.path.join(td, name + "_w0.safetensors")
    with open(w0, "wb") as f:
        f.write(safetensors_bytes(params))
    out = os.path.join(td, name + ".safetensors")
    res = subprocess.run([args.mlc, "train", mdl, *data, "--epochs", "1", "--batch", str(N), "--weights", w0,
                          "--save", out], capture_output=True, text=True)
    if res.returncode != 0:
        return f"mlc train exited {res.returncode}\n    " + res.stderr.strip().replace("\n", "\n    ")
    got = read_safetensors(out)[0]
    pt = {n: t.clone().requires_grad_(True) for n, t in params.items()}
    y = case["fn"](pt, inputs)
    rr = r if y.dim() > 1 else r.reshape(-1)
    (y * rr).mean().backward() if y.dim() > 0 else (y * r).mean().backward()
    worst = 0.0
    for n in params:
        if not pt[n].grad.abs().max().item() > 0:
            return f"param {n}: torch's gradient is zero (a weak test)"
        want = (params[n] - pt[n].grad).numpy()
        err = float(np.abs(got[n] - want).max())
        tol = 1e-5 + 1e-4 * float(np.abs(want).max())
        if not err <= tol:
            return f"param {n}: max error {err:.3e} > {tol:.1e}\n    mlc   {got[n].ravel()[:8]}\n    torch {want.ravel()[:8]}"
        worst = max(worst, err)
    return worst


# ---- GPT-2: one adamw step ---------------------------------------------------
class GPT2(torch.nn.Module):
    """examples/gpt2.mdl (nanoGPT) in PyTorch, with the same parameter names."""

    def __init__(self, V=101, BLOCK=32, LAYERS=2, HEADS=4, C=64):
        super().__init__()
        self.heads = HEADS
        nn = torch.nn
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(V, C), wpe=nn.Embedding(BLOCK, C), ln_f=nn.LayerNorm(C),
            h=nn.ModuleList([nn.ModuleDict(dict(
                ln_1=nn.LayerNorm(C), ln_2=nn.LayerNorm(C),
                attn=nn.ModuleDict(dict(c_attn=nn.Linear(C, 3 * C), c_proj=nn.Linear(C, C))),
                mlp=nn.ModuleDict(dict(c_fc=nn.Linear(C, 4 * C), c_proj=nn.Linear(4 * C, C))))) for _ in range(LAYERS)])))
        self.lm_head = nn.Linear(C, V, bias=False)

    def forward(self, idx):
        B, T = idx.shape
        x = self.transformer.wte(idx) + self.transformer.wpe.weight[:T]
        for blk in self.transformer.h:
            h = blk.ln_1(x)
            C = h.shape[-1]
            q, k, v = blk.attn.c_attn(h).split(C, -1)
            q, k, v = [t.reshape(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v)]
            a = sdpa(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
            x = x + blk.attn.c_proj(a)
            h = blk.ln_2(x)
            x = x + blk.mlp.c_proj(F.gelu(blk.mlp.c_fc(h), approximate="tanh"))
        return self.lm_head(self.transformer.ln_f(x))


def run_gpt2(args, td, sgd=False):
    """One adamw step of tests/gpt2_train.mdl (or, with sgd, the same model with
    sgd(lr=1): the weights then move by exactly the gradient)."""
    mdl = os.path.join(os.path.dirname(HERE), "gpt2_train.mdl")
    if sgd:
        with open(mdl) as f:
            text = f.read()
        text, k = re.subn(r"optimizer = adamw\([^)]*\)", "optimizer = sgd(lr=1.0)", text)
        assert k == 1, "no adamw optimizer line in " + mdl
        mdl = os.path.join(td, "gpt2_sgd.mdl")
        with open(mdl, "w") as f:
            f.write(text)
    torch.manual_seed(0)
    model = GPT2()
    with torch.no_grad():  # non-trivial norms and biases
        for n, p in model.named_parameters():
            p.add_(torch.randn_like(p) * (0.05 if p.dim() == 1 else 0.02))
    B, T, V = 3, 9, 101
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, V, (B, T), generator=g)
    tgt = torch.randint(0, V, (B, T), generator=g)
    w0 = os.path.join(td, "gpt2_w0.safetensors")
    sd = {n: p.detach().clone() for n, p in model.named_parameters()}
    with open(w0, "wb") as f:
        f.write(safetensors_bytes(sd))
    np.save(os.path.join(td, "idx.npy"), idx.numpy())
    np.save(os.path.join(td, "tgt.npy"), tgt.numpy())
    out = os.path.join(td, "gpt2_w1.safetensors")
    res = subprocess.run([args.mlc, "train", mdl, "--data", "idx=" + os.path.join(td, "idx.npy"), "--data",
                          "targets=" + os.path.join(td, "tgt.npy"), "--epochs", "1", "--batch", str(B), "--weights", w0,
                          "--save", out], capture_output=True, text=True)
    if res.returncode != 0:
        return f"mlc train exited {res.returncode}\n    " + res.stderr.strip().replace("\n", "\n    ")
    m = re.search(r"train loss ([0-9.eE+-]+)", res.stdout)
    if not m:
        return "no train loss in the output:\n    " + res.stdout.strip()
    lr = 1.0 if sgd else 1e-3
    opt = (torch.optim.SGD(model.parameters(), lr=lr) if sgd else
           torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1))
    logits = model(idx)
    loss = F.cross_entropy(logits.reshape(-1, V), tgt.reshape(-1))
    opt.zero_grad()
    loss.backward()
    grads = {n: p.grad.detach().clone().numpy() for n, p in model.named_parameters()}
    opt.step()
    if abs(float(m.group(1)) - loss.item()) > 1e-4 * abs(loss.item()) + 6e-5:
        return f"loss {m.group(1)} vs torch {loss.item():.6f}"
    got = read_safetensors(out)[0]
    worst = 0.0
    for n, p in model.named_parameters():
        want = p.detach().numpy()
        err = np.abs(got[n] - want)
        if sgd:  # w1 = w0 - g: the gradient within rtol 1e-4 of its largest entry
            tol = 1e-6 + 1e-4 * np.abs(grads[n]).max() + 1e-7 * np.abs(want)
        else:
            # Adam's first step is lr * g / (|g| + eps): where the true gradient is
            # zero up to rounding (the key bias: softmax ignores a constant added
            # to every score of a row) it moves by +-lr either way.
            tol = 1e-6 + 1e-4 * np.abs(want) + np.where(np.abs(grads[n]) < 1e-7, lr, 0.0)
        if not (err <= tol).all():
            k = int(np.argmax(err - tol))
            return f"param {n}: error {err.ravel()[k]:.3e} at {k} (mlc {got[n].ravel()[k]}, torch {want.ravel()[k]})"
        worst = max(worst, float(err.max()))
    return worst


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mlc", required=True)
    ap.add_argument("--filter", default="")
    args = ap.parse_args()
    passed = failed = 0
    with tempfile.TemporaryDirectory() as td:
        todo = [(n, c) for n, c in CASES.items()] + [("gpt2_sgd_grads", None), ("gpt2_adamw", None)]
        for name, case in todo:
            if args.filter not in name:
                continue
            try:
                r = run_gpt2(args, td, "sgd" in name) if case is None else run_case(name, case, args, td)
            except Exception as e:  # a broken case is a failure, not a crash
                r = f"{type(e).__name__}: {e}"
            if isinstance(r, float):
                print(f"PASS {name} (max error {r:.2e})")
                passed += 1
            else:
                print(f"FAIL {name}: {r}")
                failed += 1
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
