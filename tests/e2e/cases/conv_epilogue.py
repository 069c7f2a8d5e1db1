import torch
import torch.nn.functional as F

INPUTS = [
    {"x": ("f32", [1, 3, 9, 11]), "t": ("f32", [1, 1, 1, 1]), "z": ("f32", [1, 3, 10])},
    {"x": ("f32", [5, 3, 9, 11]), "t": ("f32", [5, 1, 1, 1]), "z": ("f32", [5, 3, 10])},
]


def reference(p, i):
    x, w, b = i["x"], p["conv.weight"], p["conv.bias"]
    z, w1 = i["z"], p["conv1.weight"]
    return {
        "a": F.relu(F.conv2d(x, w, b, padding=1) * p["scale"] + p["shift"]),
        "b": torch.sigmoid(F.conv2d(x, w, padding=1) + i["t"]),
        "c": F.conv2d(x, w, b, padding=1) * p["row"],
        "d": torch.tanh(F.conv1d(z, w1, padding=1) * p["gain"]),
    }
