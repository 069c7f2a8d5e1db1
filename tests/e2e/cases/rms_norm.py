import torch

INPUTS = [{"x": ("f32", [1, 1, 13]), "one": ("f32", [1, 1])},
          {"x": ("f32", [2, 7, 13]), "one": ("f32", [2, 1])}]


def rms_norm(x, w, eps=1e-6):  # torch 2.4's F.rms_norm over the last dim
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def reference(p, i):
    x = i["x"]
    return {"y": rms_norm(x, p["w"]), "e": rms_norm(x * 0.001, p["w"], 1e-2),
            "single": rms_norm(i["one"], p["w1"])}
