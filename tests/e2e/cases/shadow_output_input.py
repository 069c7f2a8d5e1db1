import torch.nn.functional as F


def reference(params, inputs):
    return {"x": F.relu(inputs["x"])}
