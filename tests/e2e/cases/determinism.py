# Three runs of one input set (the runner draws new inputs per entry, so the
# inputs are fixed by make_inputs): outputs must be equal bit for bit, and
# close to PyTorch.
import numpy as np
import torch
import torch.nn.functional as F

INPUTS = [{"x": ("f32", [64, 300]), "img": ("f32", [4, 16, 20, 20])}] * 3
runs = []


def make_inputs(shapes, gen):
    g = torch.Generator().manual_seed(7)
    return {"x": torch.randn([64, 300], generator=g), "img": torch.randn([4, 16, 20, 20], generator=g)}


def reference(params, inputs):
    y = F.linear(inputs["x"], params["w"])
    return {"y": y, "s": y.sum(0), "c": F.conv2d(inputs["img"], params["k"], padding=1),
            "sm": torch.softmax(y, 0)}


def check(outputs, inputs):
    runs.append(outputs)
    for k, v in outputs.items():
        assert v.tobytes() == runs[0][k].tobytes(), "run %d: %s differs from run 0" % (len(runs) - 1, k)
