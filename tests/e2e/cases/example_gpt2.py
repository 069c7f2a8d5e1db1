# examples/gpt2.mdl against the same network (nanoGPT's GPT, eval mode) written
# with torch.nn.functional, random weights.
import math

import torch
import torch.nn.functional as F

MDL = "examples/gpt2.mdl"
V, BLOCK, LAYERS, HEADS, C = 101, 32, 2, 4, 64
INPUTS = [{"idx": ("i64", [1, 1])}, {"idx": ("i64", [2, 7])}, {"idx": ("i64", [1, 32])}]


def _params():
    p = {"transformer.wte.weight": ("f32", [V, C]), "transformer.wpe.weight": ("f32", [BLOCK, C])}
    for i in range(LAYERS):
        h = "transformer.h.%d." % i
        p.update({h + "ln_1.weight": ("f32", [C]), h + "ln_1.bias": ("f32", [C]),
                  h + "attn.c_attn.weight": ("f32", [3 * C, C]), h + "attn.c_attn.bias": ("f32", [3 * C]),
                  h + "attn.c_proj.weight": ("f32", [C, C]), h + "attn.c_proj.bias": ("f32", [C]),
                  h + "ln_2.weight": ("f32", [C]), h + "ln_2.bias": ("f32", [C]),
                  h + "mlp.c_fc.weight": ("f32", [4 * C, C]), h + "mlp.c_fc.bias": ("f32", [4 * C]),
                  h + "mlp.c_proj.weight": ("f32", [C, 4 * C]), h + "mlp.c_proj.bias": ("f32", [C])})
    p.update({"transformer.ln_f.weight": ("f32", [C]), "transformer.ln_f.bias": ("f32", [C]),
              "lm_head.weight": ("f32", [V, C])})
    return p


PARAMS = _params()


def make_params(gen):
    # embeddings as N(0, 1) (the runner's default for 2-D params is tiny for them)
    return {"transformer.wte.weight": torch.randn(V, C, generator=gen),
            "transformer.wpe.weight": torch.randn(BLOCK, C, generator=gen) * 0.5}


def make_inputs(shapes, gen):
    return {"idx": torch.randint(0, V, shapes["idx"][1], generator=gen)}


def causal_attention(q, k, v):
    T = q.size(-2)
    w = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    w = w.masked_fill(torch.ones(T, T, dtype=torch.bool).tril().logical_not(), float("-inf"))
    return torch.softmax(w, -1) @ v


def reference(p, i):
    idx = i["idx"]
    B, T = idx.shape
    x = F.embedding(idx, p["transformer.wte.weight"]) + p["transformer.wpe.weight"][:T]
    for l in range(LAYERS):
        h = "transformer.h.%d." % l
        a = F.layer_norm(x, [C], p[h + "ln_1.weight"], p[h + "ln_1.bias"])
        q, k, v = F.linear(a, p[h + "attn.c_attn.weight"], p[h + "attn.c_attn.bias"]).split(C, dim=2)
        q, k, v = (t.view(B, T, HEADS, C // HEADS).transpose(1, 2) for t in (q, k, v))
        y = causal_attention(q, k, v).transpose(1, 2).reshape(B, T, C)
        x = x + F.linear(y, p[h + "attn.c_proj.weight"], p[h + "attn.c_proj.bias"])
        m = F.layer_norm(x, [C], p[h + "ln_2.weight"], p[h + "ln_2.bias"])
        m = F.gelu(F.linear(m, p[h + "mlp.c_fc.weight"], p[h + "mlp.c_fc.bias"]), approximate="tanh")
        x = x + F.linear(m, p[h + "mlp.c_proj.weight"], p[h + "mlp.c_proj.bias"])
    x = F.layer_norm(x, [C], p["transformer.ln_f.weight"], p["transformer.ln_f.bias"])
    return {"logits": F.linear(x, p["lm_head.weight"])}
