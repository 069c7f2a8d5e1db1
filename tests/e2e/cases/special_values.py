import torch
import torch.nn.functional as F


def reference(params, inputs):
    x = inputs["x"]
    return {
        "pos_inf": torch.exp(x.abs() * 100.0 + 100.0),
        "neg_inf": torch.log(x - x),
        "nan_out": torch.sqrt(-x.abs() - 1.0),
        "sig_sat": torch.sigmoid(x * 1000.0),
        "tanh_sat": torch.tanh(x * 1000.0),
        "big_exp": torch.exp(x * 50.0),
        "silu_big": F.silu(x * 200.0),
        "relu_nan": F.relu(torch.sqrt(-x.abs() - 1.0)) + F.relu(x),
        "relu_negzero": 1.0 / F.relu(-(x.abs() * 0.0)),
    }
