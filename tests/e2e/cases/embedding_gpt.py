import torch
import torch.nn.functional as F

INPUTS = [{"ids": ("i64", [B, T]), "ids32": ("i32", [B]), "id0": ("i64", [])} for B, T in ((1, 1), (2, 5), (3, 8))]


def make_inputs(shapes, gen):
    B, T = shapes["ids"][1]
    return {"ids": torch.randint(0, 17, (B, T), generator=gen),
            "ids32": torch.randint(0, 17, (B,), generator=gen).to(torch.int32),
            "id0": torch.tensor(16)}


def reference(params, inputs):
    ids, wte, wpe = inputs["ids"], params["wte"], params["wpe"]
    B, T = ids.shape
    x = F.embedding(ids, wte) + wpe[0:T]
    q, k, v = F.linear(x, params["attn.weight"]).split(12, -1)
    return {"q": q.reshape(B, T, 3, 4).transpose(1, 2), "k": k, "v": v, "x": x,
            "e32": F.embedding(inputs["ids32"].long(), wte), "e0": F.embedding(inputs["id0"], wte)}
