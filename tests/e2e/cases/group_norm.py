import torch.nn.functional as F

INPUTS = [{"x": ("f32", [1, 6, 5, 7]), "s": ("f32", [1, 4, 9])},
          {"x": ("f32", [3, 6, 5, 7]), "s": ("f32", [3, 4, 9])}]


def reference(p, i):
    x, s = i["x"], i["s"]
    return {
        "g1": F.group_norm(x, 1, p["gn.weight"], p["gn.bias"]),
        "g3": F.group_norm(x, 3, p["gn.weight"], p["gn.bias"], eps=1e-3),
        "g6": F.group_norm(x, 6, p["gn.weight"], p["gn.bias"]),
        "plain": F.group_norm(x, 2),
        "seq": F.group_norm(s, 2, p["gs.weight"], p["gs.bias"]),
        "onlyb": F.group_norm(s, 4, None, p["gs.bias"]),
    }
