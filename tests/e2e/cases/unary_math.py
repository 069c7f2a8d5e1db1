import torch

INPUTS = [{"x": ("f32", [3, 17])}]


def reference(params, inputs):
    x = inputs["x"]
    return {
        "n": torch.neg(x),
        "u": -x,
        "a": x.abs(),
        "e": x.exp(),
        "l": (x.abs() + 0.1).log(),
        "s": x.abs().sqrt(),
        "r": torch.rsqrt(x.abs() + 0.5),
        "chain": torch.exp(-x.abs()) * torch.sqrt(x.abs() + 1.0),
    }
