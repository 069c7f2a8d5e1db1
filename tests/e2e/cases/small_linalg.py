import torch.nn.functional as F

INPUTS = {"v": ("f32", [17]), "col": ("f32", [3, 1]), "row": ("f32", [1, 4]), "one": ("f32", [1, 1])}


def reference(params, inputs):
    v, col, row, one = inputs["v"], inputs["col"], inputs["row"], inputs["one"]
    return {"lin_vec": F.linear(v, params["w"], params["b"]), "outer": col @ row,
            "tiny": one @ one, "rowdot": row @ row.t()}
