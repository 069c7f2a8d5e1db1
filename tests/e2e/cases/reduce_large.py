import torch

TOL = (1e-3, 1e-4)


def reference(params, inputs):
    x = inputs["x"]
    return {"s": x.sum(1), "m": x.mean(-1), "mx": x.amax(1), "am": x.argmax(1),
            "sm": torch.softmax(x, 1), "lsm": torch.log_softmax(x, 1)}
