def reference(params, inputs):
    x, y = inputs["x"], inputs["y"]
    return {
        "t01": x.transpose(0, 1),
        "t_neg": x.transpose(-1, -2),
        "t_same": x.transpose(1, 1),
        "p": x.permute(2, 0, 1),
        "p_id": x.permute(0, 1, 2),
        "p_sum": x.permute(2, 1, 0) + y,
        "p_mm": y.permute(2, 1, 0) @ x.transpose(1, 2),
        "p_reduce": x.permute(1, 2, 0).sum(-1),
        "t_flat": x.transpose(1, 2).flatten(1),
        "t_reshape": x.permute(2, 0, 1).reshape(17, 6),
    }
