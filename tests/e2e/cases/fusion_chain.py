import torch

INPUTS = [
    {"x": ("f32", [1, 7, 17]), "g": ("f32", [17]), "s": ("f32", [1, 7, 1])},
    {"x": ("f32", [3, 7, 17]), "g": ("f32", [17]), "s": ("f32", [3, 7, 1])},
]


def reference(params, inputs):
    x, g, s = inputs["x"], inputs["g"], inputs["s"]
    mu = x.mean(-1, keepdim=True)
    d = x - mu
    var = (d * d).mean(-1, keepdim=True)
    n = d * torch.rsqrt(var + 0.00001) * g
    e = torch.exp(n - n.amax(-1, keepdim=True))
    return {
        "n": n,
        "gated": torch.sigmoid(n * s) * torch.tanh(n + s) - torch.relu(-n) / (s.abs() + 1.0),
        "twice": e / e.sum(-1, keepdim=True),
        "reuse": d * d + d,
    }
