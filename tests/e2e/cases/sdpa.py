import math

import torch

INPUTS = [
    {"q": ("f32", [1, 3, 1, 8]), "k": ("f32", [1, 3, 1, 8]), "v": ("f32", [1, 3, 1, 8]),
     "kc": ("f32", [1, 3, 1, 8]), "vc": ("f32", [1, 3, 1, 5]), "bm": ("bool", [1, 1]),
     "fm": ("f32", [1, 1, 1, 1]), "q3": ("f32", [1, 1, 7]), "k2": ("f32", [1, 7])},
    {"q": ("f32", [2, 3, 7, 8]), "k": ("f32", [2, 3, 7, 8]), "v": ("f32", [2, 3, 7, 8]),
     "kc": ("f32", [2, 3, 11, 8]), "vc": ("f32", [2, 3, 11, 5]), "bm": ("bool", [7, 11]),
     "fm": ("f32", [2, 1, 7, 11]), "q3": ("f32", [2, 7, 7]), "k2": ("f32", [11, 7])},
    {"q": ("f32", [1, 3, 13, 8]), "k": ("f32", [1, 3, 13, 8]), "v": ("f32", [1, 3, 13, 8]),
     "kc": ("f32", [1, 3, 5, 8]), "vc": ("f32", [1, 3, 5, 5]), "bm": ("bool", [13, 5]),
     "fm": ("f32", [1, 1, 13, 5]), "q3": ("f32", [1, 13, 7]), "k2": ("f32", [5, 7])},
]


def make_inputs(shapes, gen):
    x = {n: torch.randn(s, generator=gen) * 2 for n, (dt, s) in shapes.items() if dt == "f32"}
    T, S = shapes["bm"][1]
    bm = torch.rand(T, S, generator=gen) < 0.6
    if T > 1:
        bm[1] = False  # a fully masked row: NaN
    x["bm"] = bm
    fm = x["fm"].clone()
    fm[..., 0, :] = float("-inf")  # fully masked row via -inf
    if S > 1:
        fm[..., -1, 1::2] = float("-inf")
    x["fm"] = fm
    return x


def sdpa(q, k, v, attn_mask=None, is_causal=False, scale=None):
    """torch 2.x F.scaled_dot_product_attention, math definition (torch 1.13 has none)."""
    L, S = q.size(-2), k.size(-2)
    scale = 1 / math.sqrt(q.size(-1)) if scale is None else scale
    bias = torch.zeros(L, S, dtype=q.dtype)
    if is_causal:
        bias.masked_fill_(torch.ones(L, S, dtype=torch.bool).tril(0).logical_not(), float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            bias = bias.masked_fill(attn_mask.logical_not(), float("-inf"))
        else:
            bias = attn_mask + bias
    w = q @ k.transpose(-2, -1) * scale + bias
    return torch.softmax(w, dim=-1) @ v


def reference(p, i):
    q, k, v, kc, vc = i["q"], i["k"], i["v"], i["kc"], i["vc"]
    return {
        "plain": sdpa(q, k, v),
        "causal": sdpa(q, k, v, is_causal=True),
        "scaled": sdpa(q, k, v, scale=0.3),
        "cross": sdpa(q, kc, vc),
        "cross_causal": sdpa(q, kc, vc, is_causal=True),
        "bool_mask": sdpa(q, kc, vc, attn_mask=i["bm"]),
        "float_mask": sdpa(q, kc, vc, i["fm"], scale=0.5),
        "r3": sdpa(i["q3"], i["q3"], i["q3"] * 2.0, is_causal=True),
        "r2": sdpa(i["k2"], i["k2"], i["k2"]),
    }
