import torch

INPUTS = [{"x": ("f32", [B, 1, 5]), "v": ("f32", [5]), "s": ("f32", []), "i": ("i64", [B, 1, 5])} for B in (1, 3, 7)]


def reference(params, inputs):
    x, v, s, i = inputs["x"], inputs["v"], inputs["s"], inputs["i"]
    B = x.shape[0]
    return {
        "u0": x.unsqueeze(0), "u1": x.unsqueeze(-1), "u2": v.unsqueeze(1), "u3": x.unsqueeze(-3),
        "us": s.unsqueeze(0), "q1": x.squeeze(1), "q2": x.squeeze(-1), "q3": v.unsqueeze(0).squeeze(0),
        "qs": s.squeeze(0), "e1": x.expand(B, 4, 5), "e2": x.expand(-1, 3, -1), "e3": v.expand(2, B, 3, 5),
        "e4": v.unsqueeze(0).expand(B, 5) + x.squeeze(1), "e5": s.expand(3, 2), "ei": i.expand(B, 2, 5),
    }
