INPUTS = {"a": ("f32", [3, 17]), "b": ("f32", [17, 5]), "c": ("f32", [1, 3])}


def reference(params, inputs):
    a, b, c = inputs["a"], inputs["b"], inputs["c"]
    return {"ab": a @ b, "ab_call": a @ b, "cab": (c @ a) @ b, "at_a": a.t() @ a}
