INPUTS = [
    {"x": ("f32", [1, 4]), "y": ("f32", [2, 4]), "z": ("f32", [2]), "sq": ("f32", [1, 1])},
    {"x": ("f32", [3, 4]), "y": ("f32", [6, 4]), "z": ("f32", [4]), "sq": ("f32", [5, 5])},
]


def reference(params, inputs):
    x, y, z, sq = inputs["x"], inputs["y"], inputs["z"], inputs["sq"]
    B = x.shape[0]
    return {"pairs": y.reshape(B, 2, 4) + x.reshape(B, 1, 4), "zz": z * 2.0, "tr": sq + sq.t()}
