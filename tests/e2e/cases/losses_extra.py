import torch
import torch.nn.functional as F

INPUTS = [{"z": ("f32", [1, 7]), "y8": ("u8", [1]), "y64": ("i64", [1]), "t": ("f32", [1, 7])},
          {"z": ("f32", [13, 7]), "y8": ("u8", [13]), "y64": ("i64", [13]), "t": ("f32", [13, 7])}]


def make_inputs(shapes, gen):
    n = shapes["z"][1][0]
    return {"z": torch.randn(n, 7, generator=gen),
            "y8": torch.randint(0, 7, (n,), generator=gen).to(torch.uint8),
            "y64": torch.randint(0, 7, (n,), generator=gen),
            "t": torch.rand(n, 7, generator=gen)}


def reference(params, inputs):
    z, t = inputs["z"], inputs["t"]
    lp = F.log_softmax(z, dim=1)
    return {"nll8": F.nll_loss(lp, inputs["y8"].long()), "nll64": F.nll_loss(lp, inputs["y64"]),
            "bce": F.binary_cross_entropy_with_logits(z * 3.0, t),
            "ce": F.cross_entropy(z, inputs["y64"], label_smoothing=0.1)}
