import torch

INPUTS = {"x": ("f32", [4, 9]), "keep": ("bool", [4, 9])}


def make_inputs(shapes, gen):
    keep = torch.rand([4, 9], generator=gen) > 0.4
    keep[0, :] = True
    keep[1, :] = False     # all masked: NaN row
    keep[2, :] = False
    keep[2, 4] = True      # a single survivor
    return {"x": torch.randn([4, 9], generator=gen), "keep": keep}


def reference(params, inputs):
    s = inputs["x"] + torch.log(inputs["keep"].float())
    return {"p": torch.softmax(s, -1), "lp": torch.log_softmax(s, -1), "mx": s.amax(-1)}
