import torch
import torch.nn.functional as F

INPUTS = [
    {"x2": ("f32", [1, 5]), "x3": ("f32", [1, 7, 1]), "x4": ("f32", [1, 3, 6, 5])},
    {"x2": ("f32", [4, 5]), "x3": ("f32", [4, 7, 11]), "x4": ("f32", [4, 3, 6, 5])},
]


def make_params(gen):
    # variances must be positive; means away from zero
    return {"bn%d.running_var" % k: torch.rand(c, generator=gen) * 2 + 0.05 for k, c in ((2, 5), (3, 7), (4, 3))} | \
           {"bn%d.running_mean" % k: torch.randn(c, generator=gen) for k, c in ((2, 5), (3, 7), (4, 3))}


def reference(p, i):
    def bn(x, k, w=True, b=True, **kw):
        return F.batch_norm(x, p["bn%d.running_mean" % k], p["bn%d.running_var" % k],
                            p["bn%d.weight" % k] if w else None, p["bn%d.bias" % k] if b else None,
                            training=False, **kw)
    return {
        "y2": bn(i["x2"], 2),
        "y3": bn(i["x3"], 3, eps=1e-3),
        "y4": bn(i["x4"], 4, eps=0.1, momentum=0.5),
        "nowb": bn(i["x4"], 4, False, False),
        "onlyb": bn(i["x3"], 3, False, True),
        "onlyw": bn(i["x3"], 3, True, False),
    }
