# examples/lenet5.mdl against the same network written with torch.nn.functional.
import torch
import torch.nn.functional as F

MDL = "examples/lenet5.mdl"
INPUTS = [{"x": ("u8", [1, 1, 28, 28])}, {"x": ("u8", [5, 1, 28, 28])}]


def reference(params, inputs):
    p = params
    h = inputs["x"].to(torch.float32) / 255.0
    h = F.max_pool2d(F.relu(F.conv2d(h, p["conv1.weight"], p["conv1.bias"], padding=2)), 2)
    h = F.max_pool2d(F.relu(F.conv2d(h, p["conv2.weight"], p["conv2.bias"])), 2)
    h = h.flatten(1)
    h = F.relu(F.linear(h, p["fc1.weight"], p["fc1.bias"]))
    h = F.relu(F.linear(h, p["fc2.weight"], p["fc2.bias"]))
    return {"logits": F.linear(h, p["fc3.weight"], p["fc3.bias"])}
