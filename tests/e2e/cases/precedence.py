def reference(params, inputs):
    a, b, c = inputs["a"], inputs["b"], inputs["c"]
    return {
        "p1": a + b * 2.0 - a / 4.0,
        "p2": (-a) * b,
        "p3": (a - b) - a,
        "p4": (a / 2.0) / 4.0,
        "p5": a + ((b @ c) * 2.0),
        "p6": (a + b) * (a - b),
        "p7": (a + b) > (a * 2.0),
        "p8": a,
    }
