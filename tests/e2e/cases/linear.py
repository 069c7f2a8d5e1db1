import torch.nn.functional as F

INPUTS = [
    {"x": ("f32", [1, 17]), "z": ("f32", [2, 3, 17])},
    {"x": ("f32", [3, 17]), "z": ("f32", [2, 3, 17])},
    {"x": ("f32", [64, 17]), "z": ("f32", [2, 3, 17])},
]


def reference(params, inputs):
    x, z = inputs["x"], inputs["z"]
    w, b = params["fc.weight"], params["fc.bias"]
    return {"y": F.linear(x, w, b), "y_nobias": F.linear(x, w), "y3": F.linear(z, w, b),
            "y_one": F.linear(x, params["one.weight"])}
