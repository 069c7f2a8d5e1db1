import torch

INPUTS = [{"a": ("f32", [B, 7]), "b": ("f32", [7]), "i": ("i64", [B, 7]), "j": ("i32", [1, 7]),
           "p": ("bool", [B, 7]), "q": ("bool", [B, 1])} for B in (1, 3, 17)]


def make_inputs(shapes, gen):
    B = shapes["a"][1][0]
    a = torch.randn(B, 7, generator=gen)
    a[0, :3] = torch.tensor([float("nan"), 0.0, -0.0])
    b = torch.randn(7, generator=gen)
    b[1] = float("nan")
    return {"a": a, "b": b,
            "i": torch.randint(-6, 7, (B, 7), generator=gen),
            "j": torch.randint(-6, 7, (1, 7), generator=gen).to(torch.int32),
            "p": torch.randint(0, 2, (B, 7), generator=gen).bool(),
            "q": torch.randint(0, 2, (B, 1), generator=gen).bool()}


def reference(params, inputs):
    a, b, i, j, p, q = (inputs[k] for k in "abijpq")
    return {
        "mx": torch.maximum(a, b), "mn": torch.minimum(b, a),
        "mxi": torch.maximum(i, j), "mni": torch.clamp(i, max=2),
        "mxs": torch.maximum(a, torch.tensor(0.0)), "mxb": torch.maximum(p, q),
        "pw": torch.pow(a.abs() + 0.5, b), "pws": torch.pow(a, 2), "pwf": torch.pow(a, 0.5),
        "pwi": torch.pow(i, 3), "pwii": torch.pow(i, j.abs()), "pwb": torch.pow(2.0, b),
        "pwm": torch.pow(a, -1.5),
        "la": torch.logical_and(p, q), "lo": torch.logical_or(p, a > 0.0),
        "ln": torch.logical_not(p), "lni": torch.logical_not(i), "lf": torch.logical_and(a, i),
    }
