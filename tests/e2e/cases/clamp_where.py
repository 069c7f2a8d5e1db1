import torch
import torch.nn.functional as F

INPUTS = [{"x": ("f32", [B, 5]), "c": ("bool", [B, 1]), "i": ("i64", [B, 5]), "lo": ("f32", [5])}
          for B in (1, 4, 11)]


def make_inputs(shapes, gen):
    B = shapes["x"][1][0]
    x = torch.randn(B, 5, generator=gen)
    x[0, 0] = float("nan")
    return {"x": x, "c": torch.randint(0, 2, (B, 1), generator=gen).bool(),
            "i": torch.randint(-6, 7, (B, 5), generator=gen), "lo": torch.randn(5, generator=gen)}


def reference(params, inputs):
    x, c, i, lo = inputs["x"], inputs["c"], inputs["i"], inputs["lo"]
    return {
        "a": torch.clamp(x, min=-0.5, max=0.5), "b": torch.clamp(x, -1, 1), "c1": torch.clamp(x, min=0),
        "c2": torch.clamp(x, max=0.25), "c3": torch.clamp(x, 1.0, -1.0), "ci": torch.clamp(i, -2, 3),
        "cimax": torch.clamp(i, max=1), "cif": torch.clamp(i, min=-2.5),
        "w1": torch.where(c, x, lo), "w2": torch.where(x > 0.0, x, 0.0), "w3": torch.where(c, 1, 0),
        "w4": torch.where(c, i, x), "w5": torch.where(i > 0, i, -1), "w6": torch.where(c, 2.5, lo),
        "d1": F.dropout(x, 0.3, training=False),
        "d2": F.dropout(x, p=0.0, training=False) + F.dropout(i.float(), training=False).long(),
    }
