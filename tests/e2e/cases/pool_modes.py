import torch.nn.functional as F


def reference(params, inputs):
    x = inputs["x"]
    return {
        "max_ceil": F.max_pool2d(x, 2, ceil_mode=True),
        "max_ceil_pad": F.max_pool2d(x, 3, stride=2, padding=1, ceil_mode=True),
        "avg_ceil": F.avg_pool2d(x, 2, ceil_mode=True),
        "avg_nopad": F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False),
        "avg_ceil_nopad": F.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True,
                                       count_include_pad=False),
    }
