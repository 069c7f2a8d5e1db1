import torch.nn.functional as F


def reference(params, inputs):
    x = inputs["x"]
    first = x * 2.0
    h = x * 2.0 + x
    return {"h": h, "first": first, "rx": F.relu(x), "later": h - first}
