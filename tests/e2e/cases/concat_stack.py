import torch

INPUTS = [{"a": ("f32", [B, 3, 5]), "b": ("f32", [B, 1, 5]), "c": ("f32", [B, 7, 5]), "d": ("i32", [B, 3, 5]),
           "e": ("f32", [B, T, 2])} for B, T in ((1, 1), (2, 3), (5, 17))]


def reference(params, inputs):
    a, b, c, d, e = (inputs[k] for k in "abcde")
    return {
        "c1": torch.cat([a, b, c], 1), "c2": torch.cat([a, a], dim=-1), "c3": torch.cat([a, b, c], dim=-2),
        "c4": torch.cat([a, a, a], 0), "c5": torch.cat([a]), "cm": torch.cat([a, d], 2),
        "ce": torch.cat([e, e, e], 1), "ce2": torch.cat([e, e[:, 0:1]], 1),
        "s0": torch.stack([a, a, d], 0), "s1": torch.stack([a, a], 1), "s3": torch.stack([a, a, a], -1),
        "s4": torch.stack([d, d], dim=3), "se": torch.stack([e, e], 2),
    }
