import torch

INPUTS = [{"x": ("f32", [1, 5, 17])}, {"x": ("f32", [3, 5, 17])}]


def reference(params, inputs):
    x = inputs["x"]
    return {
        "mx": x.amax(1),
        "mx_neg_keep": x.amax(-1, keepdim=True),
        "mx_list": x.amax([1, 2]),
        "am": x.argmax(1),
        "am_neg": x.argmax(-1),
        "am_keep": x.argmax(dim=2, keepdim=True),
        "am_first": x.argmax(0),
    }
