import math

import torch
import torch.nn.functional as F

INPUTS = [
    {"x": ("f32", [1, 1, 12]), "mem": ("f32", [1, 1, 12]), "bm": ("bool", [1, 1])},
    {"x": ("f32", [2, 7, 12]), "mem": ("f32", [2, 5, 12]), "bm": ("bool", [7, 5])},
    {"x": ("f32", [3, 16, 12]), "mem": ("f32", [3, 9, 12]), "bm": ("bool", [16, 9])},
]


def make_inputs(shapes, gen):
    x = {n: torch.randn(s, generator=gen) for n, (dt, s) in shapes.items() if dt == "f32"}
    T, S = shapes["bm"][1]
    bm = torch.rand(T, S, generator=gen) < 0.6
    bm[:, 0] = True  # no fully masked row
    x["bm"] = bm
    return x


def sdpa(q, k, v, attn_mask=None, is_causal=False):
    L, S = q.size(-2), k.size(-2)
    bias = torch.zeros(L, S)
    if is_causal:
        bias.masked_fill_(torch.ones(L, S, dtype=torch.bool).tril(0).logical_not(), float("-inf"))
    if attn_mask is not None:
        bias = bias.masked_fill(attn_mask.logical_not(), float("-inf"))
    w = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)) + bias
    return torch.softmax(w, dim=-1) @ v


def reference(p, i):
    x, mem = i["x"], i["mem"]
    B, T, _ = x.shape
    S = mem.shape[1]
    q, k, v = F.linear(x, p["wq"], p["bq"]).split([12, 12, 12], -1)
    q, k, v = (t.reshape(B, T, 3, 4).transpose(1, 2) for t in (q, k, v))
    h = sdpa(q, k, v, is_causal=True)
    kc, vc = F.linear(mem, p["wkv"]).split([12, 9], -1)
    kc = kc.reshape(B, S, 3, 4).permute(0, 2, 1, 3)
    vc = vc.reshape(B, S, 3, 3).permute(0, 2, 1, 3)
    return {"self": h.transpose(1, 2).reshape(B, T, 12),
            "cross": sdpa(q, kc, vc, attn_mask=i["bm"]).permute(0, 2, 1, 3)}
