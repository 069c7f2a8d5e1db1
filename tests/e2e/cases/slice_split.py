import torch

INPUTS = [{"x": ("f32", [B, T, 12])} for B, T in ((1, 2), (3, 5), (2, 16))]


def reference(params, inputs):
    x, wpe = inputs["x"], params["wpe"]
    T = x.shape[1]
    q, k, v = torch.split(x, [4, 4, 4], -1)
    a, b = torch.split(x, [5, 7], dim=2)
    c1, c2, c3 = torch.split(x, 5, 2)
    t1, t2 = torch.split(x, [1, T - 1], 1)
    return {
        "p": wpe[0:T], "s1": x[..., 2:7], "s2": x[:, :, -5:-1], "s3": x[:, :, 10:100], "s4": x[:, :, 8:3],
        "s5": x[:, 1:T], "s6": x[:, -2:T], "s7": x[0:1], "s8": x[:, :, -100:3],
        "q": q, "k": k, "v": v, "a": a, "b": b, "c1": c1, "c2": c2, "c3": c3, "t1": t1, "t2": t2,
        "add": wpe[0:T] + x,
    }
