# The spec's example model, examples/fashion_mlp.mdl, on a few batch sizes.
import torch
import torch.nn.functional as F

MDL = "examples/fashion_mlp.mdl"
INPUTS = [{"x": ("u8", [1, 1, 28, 28])}, {"x": ("u8", [3, 1, 28, 28])},
          {"x": ("u8", [17, 1, 28, 28])}]


def reference(params, inputs):
    h = inputs["x"].to(torch.float32) / 255.0
    h = F.relu(F.linear(h.flatten(1), params["fc1.weight"], params["fc1.bias"]))
    return {"logits": F.linear(h, params["fc2.weight"], params["fc2.bias"])}
