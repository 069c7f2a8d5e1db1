import math

import torch
import torch.nn.functional as F

INPUTS = [{"x": ("f16", [1, 9]), "img": ("f16", [1, 3, 8, 8]), "seq": ("f16", [1, 2, 5, 4])},
          {"x": ("f16", [3, 9]), "img": ("f16", [3, 3, 8, 8]), "seq": ("f16", [3, 2, 5, 4])}]
TOL = (8e-3, 1e-3)  # one f16 rounding step of the result


def sdpa_causal(q, k, v):
    L, S = q.size(-2), k.size(-2)
    w = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    w = w.masked_fill(torch.ones(L, S, dtype=torch.bool).tril(0).logical_not(), float("-inf"))
    return torch.softmax(w, -1) @ v


def reference(p, i):
    f = {n: t.float() for n, t in list(p.items()) + list(i.items())}
    x, img, h = f["x"], f["img"], torch.float16
    bf = torch.bfloat16
    return {
        "lin": F.linear(x, f["fc.weight"], f["fc.bias"]).to(h),
        "mm": (x @ f["fc.weight"].t()).to(h),
        "conv": F.conv2d(img, f["cv.weight"], padding=1).to(h),
        "c1d": F.conv1d(img.reshape(-1, 3, 64), f["c1.weight"], stride=2).to(h),
        "bfl": F.linear(x.to(bf).float(), f["bfw"]).to(bf).float(),
        "mixed": F.linear(x, f["fc.weight"]),
        "ln": F.layer_norm(x, [9], f["lnh"], f["lnh"]).to(h),
        "ln_mixed": F.layer_norm(x, [9], f["lnw"]).to(h),
        "rms": (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * f["lnh"]).to(h),
        "gn": F.group_norm(img, 3).to(h),
        "att": sdpa_causal(f["seq"], f["seq"], f["seq"]).to(h),
        "mp": F.max_pool2d(img, 2).to(h),
        "ap": F.avg_pool2d(img, 3, stride=2, padding=1).to(h),
    }
