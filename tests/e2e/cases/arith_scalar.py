def reference(params, inputs):
    x, y = inputs["x"], inputs["y"]
    return {
        "sub": x - y,
        "mul": x * y,
        "div": x / (y.abs() + 0.5),
        "scalar_right": x * 2.5 + 1 - 0.25,
        "scalar_left": 3 - x,
        "scalar_div": 1.0 / (x.abs() + 1.0),
        "int_scalar": x * 2 / 4,
        "neg_literal": x * -1.5,
    }
