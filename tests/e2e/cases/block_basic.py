import torch.nn.functional as F

PARAMS = {}
for prefix, hidden in (("enc.0", 5), ("enc.1", 3), ("named", 4)):
    PARAMS.update({
        prefix + ".fc.weight": ("f32", [hidden, 6]),
        prefix + ".fc.bias": ("f32", [hidden]),
        prefix + ".proj.weight": ("f32", [6, hidden]),
        prefix + ".proj.bias": ("f32", [6]),
    })

INPUTS = [{"x": ("f32", [1, 1, 6])}, {"x": ("f32", [3, 5, 6])}]


def mlp(p, prefix, x):
    h = F.relu(F.linear(x, p[prefix + ".fc.weight"], p[prefix + ".fc.bias"]))
    return F.linear(h, p[prefix + ".proj.weight"], p[prefix + ".proj.bias"])


def reference(params, inputs):
    x = inputs["x"]
    a = x + mlp(params, "enc.0", x)
    b = a + mlp(params, "enc.1", a)
    return {"a": a, "b": b, "named": mlp(params, "named", b)}
