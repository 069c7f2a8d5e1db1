import torch


def reference(params, inputs):
    x = inputs["x"]
    return {
        "s1": x.sum(1),
        "s_neg": x.sum(-1),
        "s_keep": x.sum(-1, keepdim=True),
        "s_list": x.sum([0, 2]),
        "s_all": x.sum([0, 1, 2]),
        "s_kw": x.sum(dim=0),
        "m1": x.mean(2),
        "m_list_neg": x.mean([-1, -2]),
        "m_keep": x.mean([0, -1], keepdim=True),
        "m_kw": x.mean(dim=[1], keepdim=False),
    }
