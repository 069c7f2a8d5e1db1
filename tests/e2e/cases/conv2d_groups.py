import torch.nn.functional as F


def reference(params, inputs):
    x = inputs["x"]
    return {
        "grouped": F.conv2d(x, params["g.weight"], params["g.bias"], groups=3),
        "depthwise": F.conv2d(x, params["dw.weight"], padding=1, groups=6),
        "dw_mult": F.conv2d(x, params["dw2.weight"], stride=2, groups=6),
    }
