import torch

INPUTS = {"x": ("f32", [3, 17]), "u": ("u8", [3, 17]), "i": ("i32", [3, 17])}


def reference(params, inputs):
    x, u, i = inputs["x"], inputs["u"], inputs["i"]
    return {
        "f_to_i32": (x * 10.0).to(torch.int32),
        "f_to_i64": (x * 1000.0).to(torch.int64),
        "f_to_u8": (torch.sigmoid(x) * 255.0).to(torch.uint8),
        "f_to_bool": x.to(torch.int32).to(torch.bool),
        "bool_to_f": (x > 0.0).to(torch.float32),
        "u_to_f": u.to(torch.float32),
        "u_to_i32": u.to(torch.int32),
        "i_to_f": i.to(torch.float32) / 3.0,
        "i_to_i64": i.to(torch.int64),
        "i_to_u8": i.abs().to(torch.uint8),
        "i_to_bool": i.to(torch.bool),
        "to_half": (x * 3.3).to(torch.float16),
        "half_back": (x * 3.3).to(torch.float16).float() - x * 3.3,
        "bf16_back": (x * 3.3).to(torch.bfloat16).float(),
        "f32_id": x.clone(),
    }
