INPUTS = [
    {"x": ("f32", [1, 1, 5]), "m": ("f32", [1, 5]), "bias": ("f32", [1, 1])},
    {"x": ("f32", [3, 17, 5]), "m": ("f32", [3, 5]), "bias": ("f32", [17, 1])},
    {"x": ("f32", [17, 3, 5]), "m": ("f32", [17, 5]), "bias": ("f32", [3, 1])},
]


def reference(params, inputs):
    x, m, bias = inputs["x"], inputs["m"], inputs["bias"]
    B, T = x.shape[0], x.shape[1]
    h = x * m.reshape(B, 1, 5) + bias
    return {"h": h, "pooled": h.mean(1), "flat": h.reshape(B * T, 5),
            "tokens": h.reshape(B, T * 5).sum(1)}
