import torch

INPUTS = [{"x": ("f32", [1, 5, 17])}, {"x": ("f32", [3, 5, 17])}]


def reference(params, inputs):
    x = inputs["x"]
    return {
        "sm": torch.softmax(x, -1),
        "sm1": torch.softmax(x, 1),
        "sm0_kw": torch.softmax(x, dim=0),
        "lsm": torch.log_softmax(x, -1),
        "lsm1": torch.log_softmax(x, dim=-2),
        "big": torch.softmax(x * 100.0, dim=-1),
        "big_log": torch.log_softmax(x * 100.0, -1),
    }
