import torch

INPUTS = {"u": ("u8", [4, 17]), "i": ("i32", [4, 17])}


def make_inputs(shapes, gen):
    return {"u": torch.randint(0, 3, [4, 17], generator=gen).to(torch.uint8),
            "i": torch.randint(-2, 2, [4, 17], generator=gen).to(torch.int32)}


def first_argmax(x, dim):
    # explicit first-occurrence rule, independent of torch's implementation
    m = x.amax(dim, keepdim=True)
    n = x.shape[dim]
    idx = torch.arange(n).view([-1 if d == dim % x.dim() else 1 for d in range(x.dim())])
    return torch.where(x == m, idx, n).amin(dim)


def reference(params, inputs):
    u, i = inputs["u"], inputs["i"]
    return {
        "a_u": first_argmax(u, 1),
        "a_u0": first_argmax(u, 0),
        "a_i": first_argmax(i, -1),
        "m_i": i.amax(1),
        "s_i": i.sum(1),
    }
