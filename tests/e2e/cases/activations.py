import torch
import torch.nn.functional as F

INPUTS = [{"x": ("f32", [1, 17])}, {"x": ("f32", [3, 17])}, {"x": ("f32", [17, 17])}]


def reference(params, inputs):
    x = inputs["x"]
    return {
        "r": F.relu(x),
        "s": torch.sigmoid(x),
        "t": torch.tanh(x),
        "si": F.silu(x),
        "wide": F.silu(x * 8.0) + torch.sigmoid(x * -8.0) + torch.tanh(x * 8.0),
    }
