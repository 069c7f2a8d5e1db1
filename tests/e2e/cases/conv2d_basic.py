import torch.nn.functional as F

INPUTS = [{"x": ("f32", [1, 3, 9, 11])}, {"x": ("f32", [3, 3, 9, 11])}]


def reference(params, inputs):
    x, w, b = inputs["x"], params["conv.weight"], params["conv.bias"]
    return {"same": F.conv2d(x, w, b, padding=1), "valid": F.conv2d(x, w, b),
            "nobias": F.conv2d(x, w)}
