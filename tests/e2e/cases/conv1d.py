import torch.nn.functional as F

INPUTS = [{"x": ("f32", [1, 4, 17]), "one": ("f32", [1, 4, 1])},
          {"x": ("f32", [3, 4, 17]), "one": ("f32", [3, 4, 1])}]


def reference(p, i):
    x, one = i["x"], i["one"]
    return {
        "plain": F.conv1d(x, p["c.weight"], p["c.bias"]),
        "opts": F.conv1d(x, p["c.weight"], p["c.bias"], stride=2, padding=3, dilation=2),
        "grouped": F.conv1d(x, p["g.weight"], p["g.bias"], 3, 2, 1, 2),
        "depthwise": F.conv1d(x, p["dw.weight"], padding=1, groups=4),
        "full": F.conv1d(x, p["full.weight"]),
        "point": F.conv1d(one, p["pt.weight"]),
        "padded": F.conv1d(one, p["c.weight"], p["c.bias"], padding=2),
    }
