import torch.nn.functional as F

MODEL = "second"


def reference(params, inputs):
    return {"z": F.linear(inputs["x"], params["w"]) + 1.0}
