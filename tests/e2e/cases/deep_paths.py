import torch
import torch.nn.functional as F


def reference(params, inputs):
    p = params
    h = F.linear(inputs["x"], p["features.3.conv.0.1.weight"], p["features.3.conv.0.1.bias"])
    var = p["layer1.0.downsample.1.running_var"]
    return {"y": (h - p["layer1.0.downsample.1.running_mean"]) * torch.rsqrt(var.abs() + 0.1)}
