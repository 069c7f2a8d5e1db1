import torch.nn.functional as F


def reference(p, i):
    x, t = i["x"], i["t"]
    return {
        "m1": F.max_pool2d(x, 2, stride=2, padding=1, ceil_mode=True),
        "m2": F.max_pool2d(x, 3, stride=3, padding=1, ceil_mode=True),
        "m3": F.max_pool2d(x, (3, 2), stride=(4, 3), ceil_mode=True),
        "m4": F.max_pool2d(x, 1, stride=2, ceil_mode=True),
        "a1": F.avg_pool2d(x, 2, stride=2, padding=1, ceil_mode=True),
        "a2": F.avg_pool2d(x, 2, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
        "a3": F.avg_pool2d(x, 3, stride=3, padding=1, ceil_mode=True),
        "a4": F.avg_pool2d(x, 3, stride=3, padding=1, ceil_mode=True, count_include_pad=False),
        "a5": F.avg_pool2d(x, (3, 4), stride=(2, 3), padding=(1, 2), ceil_mode=True),
        "a6": F.avg_pool2d(x, (3, 4), stride=(2, 3), padding=(1, 2), count_include_pad=False),
        "a7": F.avg_pool2d(x, 4, stride=5, ceil_mode=True),
        "tm": F.max_pool2d(t, 1, ceil_mode=True),
        "ta": F.avg_pool2d(t, 3, stride=2, padding=1, ceil_mode=True),
        "tan": F.avg_pool2d(t, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    }
