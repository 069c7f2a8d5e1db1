import torch
import torch.nn.functional as F

INPUTS = [{"x": ("f32", [B, 13]), "i": ("i32", [B, 13])} for B in (1, 2, 5)]

SPECIAL = [0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.0, -3.0, 20.0, 20.5, -25.0, 0.0, float("nan"),
           float("inf"), float("-inf"), 2.9999, -2.9999, 19.99, 100.0, -0.0]


def make_inputs(shapes, gen):
    B = shapes["x"][1][0]
    x = torch.randn(B * 13, generator=gen) * 4
    n = min(len(SPECIAL), B * 13)
    x[:n] = torch.tensor(SPECIAL[:n])
    return {"x": x.reshape(B, 13), "i": torch.randint(-6, 7, (B, 13), generator=gen).to(torch.int32)}


def gelu(x, approximate="none"):
    """F.gelu, with gelu(+inf) = +inf as PyTorch 1.13 (Debian's) and the CUDA
    kernels give it; PyTorch 2.x's vectorised CPU kernel returns NaN there
    (seen with 2.11 on the GPU machine), which is not the function's limit."""
    return torch.where(x == float("inf"), x, F.gelu(x, approximate=approximate))


def reference(params, inputs):
    x, i = inputs["x"], inputs["i"]
    return {
        "sg": torch.sign(x), "sgi": torch.sign(i), "rc": torch.reciprocal(x), "rci": torch.reciprocal(i),
        "sn": torch.sin(x), "cs": torch.cos(x), "sni": torch.sin(i),
        "fl": torch.floor(x), "ce": torch.ceil(x), "rd": torch.round(x),
        "fli": torch.floor(i), "cei": torch.ceil(i), "rdi": torch.round(i),
        "sp": F.softplus(x), "hs": F.hardsigmoid(x), "hw": F.hardswish(x),
        "el": F.elu(x), "el2": F.elu(x, alpha=0.3),
        "ge": gelu(x), "get": gelu(x, approximate="tanh"), "gen": gelu(x, approximate="none"),
        "lr": F.leaky_relu(x), "lr2": F.leaky_relu(x, 0.2), "lr3": F.leaky_relu(x, negative_slope=-1.5),
        "ef": torch.erf(x), "efi": torch.erf(i),
    }
