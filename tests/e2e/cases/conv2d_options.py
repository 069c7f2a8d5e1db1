import torch.nn.functional as F


def reference(params, inputs):
    x, w, b = inputs["x"], params["w"], params["b"]
    return {
        "s2": F.conv2d(x, w, b, stride=2, padding=1),
        "pairs": F.conv2d(x, w, b, stride=(2, 1), padding=(1, 2)),
        "dil": F.conv2d(x, w, b, dilation=2),
        "all": F.conv2d(x, w, b, stride=(3, 2), padding=(2, 0), dilation=(2, 3)),
        "nobias_kw": F.conv2d(x, w, stride=2),
    }
