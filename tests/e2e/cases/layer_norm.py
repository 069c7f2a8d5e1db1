import torch.nn.functional as F

INPUTS = [
    {"x": ("f32", [1, 1, 17]), "z": ("f32", [1, 3, 5])},
    {"x": ("f32", [3, 13, 17]), "z": ("f32", [3, 3, 5])},
]


def reference(p, i):
    x, z = i["x"], i["z"]
    return {
        "y": F.layer_norm(x, [17], p["ln.weight"], p["ln.bias"]),
        "nob": F.layer_norm(x * 1, [17], p["ln.weight"], None, eps=1e-2),
        "two": F.layer_norm(z, [3, 5], p["ln2.weight"], p["ln2.bias"], eps=1e-6),
        "unit": F.layer_norm(z.reshape(-1, 15, 1), [1], p["one.weight"]),
    }
