INPUTS = {"x": ("f32", [3, 17]), "s": ("f32", [])}


def reference(params, inputs):
    x, s = inputs["x"], inputs["s"]
    return {"scaled": x * s, "shifted": s - x, "s2": s * s + 1.0}
