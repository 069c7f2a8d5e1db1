import torch

INPUTS = {"v": ("f32", [17]), "m": ("f32", [17, 3]), "n": ("f32", [3, 17]), "t": ("f32", [2, 17, 3])}


def reference(params, inputs):
    v, m, n, t = (inputs[k] for k in "vmnt")
    return {"vm": v @ m, "nv": n @ v, "dot": v @ v, "vt": torch.matmul(v, t),
            "tv": torch.matmul(t.transpose(1, 2), v)}
