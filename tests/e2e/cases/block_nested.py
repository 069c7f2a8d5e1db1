import torch

PARAMS = {
    "pre.weight": ("f32", [4, 4]), "pre.bias": ("f32", [4]),
    "m.left.weight": ("f32", [4, 4]), "m.left.bias": ("f32", [4]),
    "m.right.weight": ("f32", [4, 4]), "m.right.bias": ("f32", [4]),
    "features.3.conv.0.weight": ("f32", [7, 4]), "features.3.conv.0.bias": ("f32", [7]),
    "features.3.conv.1.weight": ("f32", [4, 7]), "features.3.conv.1.bias": ("f32", [4]),
}


def affine(p, prefix, x):
    return torch.nn.functional.linear(x, p[prefix + ".weight"], p[prefix + ".bias"])


def reference(params, inputs):
    x, z = inputs["x"], inputs["z"]
    pre = affine(params, "pre", x)
    m = affine(params, "m.left", torch.relu(pre)) + affine(params, "m.right", z)
    h = affine(params, "features.3.conv.0", m)
    t = affine(params, "features.3.conv.1", torch.sigmoid(h))
    return {"m": m, "t": t, "half": x * 0.5, "quarter": x * 0.25}
