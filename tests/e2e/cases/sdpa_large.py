import math

import torch

INPUTS = [{"q": ("f32", [1, 2, 67, 16]), "k": ("f32", [1, 2, 67, 16]), "v": ("f32", [1, 2, 67, 9]),
           "fm": ("f32", [67, 67]), "h": ("f16", [1, 2, 67, 16]), "bm": ("bool", [1, 1, 67, 67])},
          {"q": ("f32", [2, 2, 67, 16]), "k": ("f32", [2, 2, 67, 16]), "v": ("f32", [2, 2, 67, 9]),
           "fm": ("f32", [67, 67]), "h": ("f16", [2, 2, 67, 16]), "bm": ("bool", [2, 1, 67, 67])}]
TOL = (2e-3, 1e-3)  # the f16 output: one rounding step


def make_inputs(shapes, gen):
    x = {n: torch.randn(s, generator=gen) for n, (dt, s) in shapes.items() if dt == "f32"}
    fm = x["fm"] * 3
    fm[torch.rand(fm.shape, generator=gen) < 0.3] = float("-inf")
    fm[:, 0] = 0.0  # every row keeps a key
    x["fm"] = fm
    x["h"] = torch.randn(shapes["h"][1], generator=gen).half()
    bm = torch.rand(shapes["bm"][1], generator=gen) < 0.7
    bm[..., 0] = True
    x["bm"] = bm
    return x


def sdpa(q, k, v, attn_mask=None, is_causal=False, scale=None):
    L, S = q.size(-2), k.size(-2)
    scale = 1 / math.sqrt(q.size(-1)) if scale is None else scale
    bias = torch.zeros(L, S)
    if is_causal:
        bias.masked_fill_(torch.ones(L, S, dtype=torch.bool).tril(0).logical_not(), float("-inf"))
    if attn_mask is not None:
        bias = bias.masked_fill(attn_mask.logical_not(), float("-inf")) if attn_mask.dtype == torch.bool \
            else attn_mask + bias
    return torch.softmax(q @ k.transpose(-2, -1) * scale + bias, dim=-1) @ v


def reference(p, i):
    q, k, v, h = i["q"], i["k"], i["v"], i["h"].float()
    return {
        "causal": sdpa(q * 4.0, k * 4.0, v, is_causal=True),
        "masked": sdpa(q * 4.0, k, v, i["fm"]),
        "half": sdpa(h, h, h, attn_mask=i["bm"], scale=0.125).half(),
    }
