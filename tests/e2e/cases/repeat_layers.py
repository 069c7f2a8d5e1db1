import torch
import torch.nn.functional as F

PARAMS = {}
for i in range(3):
    PARAMS["layers.%d.weight" % i] = ("f32", [9, 9])
    PARAMS["layers.%d.bias" % i] = ("f32", [9])
for j in (1, 2):
    PARAMS["blocks.%d.lin.weight" % j] = ("f32", [9, 9])
    PARAMS["blocks.%d.lin.bias" % j] = ("f32", [9])

INPUTS = [{"x": ("f32", [1, 9])}, {"x": ("f32", [3, 9])}]


def reference(params, inputs):
    h = inputs["x"]
    for i in range(3):
        h = F.relu(F.linear(h, params["layers.%d.weight" % i], params["layers.%d.bias" % i]))
    g = h
    for j in (1, 2):
        g = g + torch.tanh(F.linear(g, params["blocks.%d.lin.weight" % j],
                                    params["blocks.%d.lin.bias" % j]))
    return {"h": h, "g": g}
