import torch

INPUTS = [{"x": ("f32", [B, 7]), "xi": ("i32", [B, 7]), "idx": ("i64", [B, 4]), "idx0": ("i64", [2, 7]),
           "sel": ("i64", [3]), "sel32": ("i32", [5]), "selb": ("i64", [4])} for B in (1, 3, 13)]


def make_inputs(shapes, gen):
    B = shapes["x"][1][0]
    return {"x": torch.randn(B, 7, generator=gen), "xi": torch.randint(-6, 7, (B, 7), generator=gen).to(torch.int32),
            "idx": torch.randint(0, 7, (B, 4), generator=gen), "idx0": torch.randint(0, B, (2, 7), generator=gen),
            "sel": torch.tensor([6, 0, 6]), "sel32": torch.randint(0, 7, (5,), generator=gen).to(torch.int32),
            "selb": torch.randint(0, B, (4,), generator=gen)}


def reference(params, inputs):
    x, xi, idx, idx0 = inputs["x"], inputs["xi"], inputs["idx"], inputs["idx0"]
    sel, sel32, selb = inputs["sel"], inputs["sel32"], inputs["selb"]
    return {
        "g1": torch.gather(x, 1, idx), "g0": torch.gather(x, 0, idx0), "gn": torch.gather(x, -1, idx),
        "gi": torch.gather(xi, 1, idx), "is0": torch.index_select(x, 1, sel),
        "is1": torch.index_select(x, -1, sel32.long()), "is2": torch.index_select(x, 0, selb),
        "isi": torch.index_select(xi, 1, sel),
    }
