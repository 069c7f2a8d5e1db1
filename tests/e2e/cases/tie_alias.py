import torch
import torch.nn.functional as F

PARAMS = {"lm.weight": ("f32", [11, 6])}  # the file holds the tied name only
INPUTS = [{"ids": ("i64", [2, 3])}]


def make_inputs(shapes, gen):
    return {"ids": torch.randint(0, 11, shapes["ids"][1], generator=gen)}


def reference(params, inputs):
    w = params["lm.weight"]
    return {"logits": F.linear(F.embedding(inputs["ids"], w), w)}
