import torch.nn.functional as F

INPUTS = [{"x": ("f32", [1, 3, 7, 5])}, {"x": ("f32", [3, 3, 7, 5])}]


def reference(params, inputs):
    x = inputs["x"]
    return {
        "gap": F.adaptive_avg_pool2d(x, 1),
        "pair": F.adaptive_avg_pool2d(x, (3, 2)),
        "same": F.adaptive_avg_pool2d(x, (7, 5)),
        "up": F.adaptive_avg_pool2d(x, 9),
        "gap_flat": F.adaptive_avg_pool2d(x, 1).flatten(1),
    }
