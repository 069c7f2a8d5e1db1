import torch.nn.functional as F

INPUTS = [{"x": ("f32", [1, 4, 5, 7]), "one": ("f32", [1, 4, 1, 1])},
          {"x": ("f32", [2, 4, 5, 7]), "one": ("f32", [2, 4, 1, 1])}]


def reference(p, i):
    x, one = i["x"], i["one"]
    return {
        "plain": F.conv_transpose2d(x, p["t.weight"], p["t.bias"]),
        "up2": F.conv_transpose2d(x, p["t.weight"], p["t.bias"], stride=2, padding=1, output_padding=1),
        "rect": F.conv_transpose2d(x, p["r.weight"], p["r.bias"], stride=(2, 3), padding=(1, 2),
                                   output_padding=(0, 2)),
        "grouped": F.conv_transpose2d(x, p["g.weight"], p["g.bias"], 2, 1, 0, 2),
        "dil": F.conv_transpose2d(x, p["t.weight"], None, stride=2, padding=2, output_padding=1,
                                  dilation=(2, 1)),
        "tiny": F.conv_transpose2d(one, p["t.weight"], p["t.bias"], stride=3),
    }
