import torch.nn.functional as F


def reference(params, inputs):
    x = inputs["x"]
    y = F.linear(x * 3.0 + x * 1e-1, params["layer.0.weight"], params["layer.0.bias"])
    return {"y": y, "r": y.reshape(6)}
