import torch
import torch.nn.functional as F

INPUTS = [{"x": ("f32", [B, 3, 5, 4]), "s": ("f32", [B, 2, 7]), "u": ("u8", [B, 1, 3, 3])} for B in (1, 2)]


def reference(params, inputs):
    x, s, u = inputs["x"], inputs["s"], inputs["u"]
    return {
        "p1": F.pad(x, [1, 2]), "p2": F.pad(x, [1, 1, 2, 0], value=-1.5), "p3": F.pad(x, [0, 0, 0, 0, 1, 1]),
        "p4": F.pad(x, [-1, 2, 1, -2]), "p5": F.pad(s, [3, 0], value=2.0), "p6": F.pad(s, [0, 0, 0, 0, 2, 1]),
        "pu": F.pad(u, [1, 1, 1, 1], value=7),
        "i2": F.interpolate(x, scale_factor=2), "i3": F.interpolate(x, scale_factor=3),
        "i1": F.interpolate(s, scale_factor=5), "i7": F.interpolate(x, scale_factor=7, mode="nearest"),
        "i11": F.interpolate(s, scale_factor=11), "in1": F.interpolate(s, scale_factor=1),
        "iu": F.interpolate(u, scale_factor=3),
    }
