INPUTS = {"a": ("f32", [2, 3, 4, 17]), "b": ("f32", [17, 5]), "c": ("f32", [2, 1, 4, 3]),
          "d": ("f32", [5, 3, 6]), "e": ("f32", [3, 17, 1])}


def reference(params, inputs):
    a, b, c, d, e = (inputs[k] for k in "abcde")
    return {"a_b": a @ b, "c_d": c @ d, "a_e": a @ e, "rows": a @ a.transpose(-1, -2)}
