import torch.nn.functional as F

INPUTS = [{"x": ("f32", [1, 3, 17, 13])}, {"x": ("f32", [3, 3, 17, 13])}]


def reference(params, inputs):
    x = inputs["x"]
    return {
        "k2": F.max_pool2d(x, 2),
        "k3s2p1": F.max_pool2d(x, 3, stride=2, padding=1),
        "pair": F.max_pool2d(x, (2, 3)),
        "pair_all": F.max_pool2d(x, (3, 2), stride=(1, 2), padding=(1, 0)),
        "k1": F.max_pool2d(x, 1),
        "neg": F.max_pool2d(x - 10.0, 3, padding=1),
    }
