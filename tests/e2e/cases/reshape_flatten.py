import torch

INPUTS = [{"x": ("f32", [1, 3, 4, 5])}, {"x": ("f32", [3, 3, 4, 5])}]


def reference(params, inputs):
    x = inputs["x"]
    B = x.shape[0]
    return {
        "r1": x.reshape(B, -1),
        "r2": x.reshape(-1, 5),
        "r3": x.reshape(B * 3, 20),
        "r4": x.reshape(B, 3, 2, 2, 5),
        "r5": x.reshape(-1).reshape(B, 60) * 2.0,
        "f1": torch.flatten(x, 1),
        "f0": torch.flatten(x, 0),
        "f2": torch.flatten(x, start_dim=2),
        "f_neg": torch.flatten(x, -2),
    }
