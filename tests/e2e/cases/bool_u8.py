import torch

INPUTS = {"m": ("bool", [3, 17]), "k": ("bool", [17]), "x": ("f32", [3, 17]), "u": ("u8", [3, 17])}


def make_inputs(shapes, gen):
    u = torch.randint(0, 256, [3, 17], generator=gen).to(torch.uint8)
    u[0, :3] = 0  # to_bool and u - 1 see zeros
    return {"m": torch.randint(0, 2, [3, 17], generator=gen).bool(),
            "k": torch.randint(0, 2, [17], generator=gen).bool(),
            "x": torch.randn([3, 17], generator=gen), "u": u}


def reference(params, inputs):
    m, k, x, u = inputs["m"], inputs["k"], inputs["x"], inputs["u"]
    return {"masked": m.float() * x, "same": m == k, "differ": m != k,
            "m_i32": m.to(torch.int32) + 1, "u_wrap": u + u, "u_scaled": u * 3,
            "u_sub": u - 1, "u_pos": u.bool()}
