import torch

INPUTS = [{"x": ("f32", [1, 7, 7])}, {"x": ("f32", [3, 7, 7])}]


def reference(params, inputs):
    x = inputs["x"]
    B = x.shape[0]
    a = torch.relu(x) + 0.5
    b = a + a.transpose(1, 2)
    c = torch.exp(x * 0.1)
    r = c.reshape(B, 49)
    t = torch.sigmoid(x) * 3.0
    u = torch.tanh(t) + r.reshape(B, 7, 7)
    keep = x * 2.0 - 1.0
    h = x
    for _ in range(6):
        h = torch.sigmoid(h) * 1.5 - 0.25
    m = torch.relu(x - 0.3)
    return {"sym": b * 1.0, "viewed": r * 2.0 + u.reshape(B, 49), "late": keep + h,
            "square": m @ m, "perm_sum": m.permute(0, 2, 1) + m * 0.5}
