import torch

INPUTS = [{"x": ("f32", [B, 5, 3]), "i": ("i32", [B, 5]), "b": ("bool", [B, 5]), "s": ("f32", [])} for B in (1, 2, 7)]


def reference(params, inputs):
    x, i, b, s = inputs["x"], inputs["i"], inputs["b"], inputs["s"]
    return {
        "c0": torch.cumsum(x, 0), "c1": torch.cumsum(x, 1), "c2": torch.cumsum(x, dim=-1),
        "ci": torch.cumsum(i, 1), "cb": torch.cumsum(b, -1), "cs": torch.cumsum(s, 0),
        "p0": torch.prod(x, 1), "p1": x.prod(2, keepdim=True).prod(1, keepdim=True), "pa": torch.prod(x),
        "pi": torch.prod(i, 1), "pb": torch.prod(b, 0),
        "mn": torch.amin(x, -1, keepdim=True), "am": torch.argmax(x, 1, keepdim=True),
        "an": torch.argmin(x, -1, keepdim=True), "anb": torch.argmin(x, keepdim=True), "amall": torch.argmax(x),
    }
