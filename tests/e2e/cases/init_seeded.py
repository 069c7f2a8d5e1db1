# Property checks (the generator is mlc's own, so values can't be compared
# with torch): ranges and moments of each initialiser, determinism per seed.
import math

import numpy as np
import torch.nn.functional as F
import torch

WEIGHTS = False
INPUTS = [{"x": ("f32", [2, 64])}] * 3
RUN_ARGS = [[], ["--seed", "0"], ["--seed", "5"]]  # default seed is 0
runs = []


def uniform_like(a, lo, hi, name):
    assert a.min() >= lo and a.max() <= hi, "%s outside [%g, %g]" % (name, lo, hi)
    width = hi - lo
    assert a.min() < lo + 0.1 * width and a.max() > hi - 0.1 * width, "%s does not fill its range" % name
    assert abs(a.mean() - (lo + hi) / 2) < 0.1 * width, "%s mean %g" % (name, a.mean())


def check(outputs, inputs):
    w = outputs["w"]
    bound = 1 / math.sqrt(64)  # kaiming_uniform(a=sqrt(5)), as nn.Linear
    uniform_like(w, -bound, bound, "fc.weight")
    uniform_like(outputs["cw"], -1 / math.sqrt(36), 1 / math.sqrt(36), "conv.weight")
    xb = math.sqrt(6 / (24 + 40))
    uniform_like(outputs["xav"], -xb, xb, "xav")
    uniform_like(outputs["uni"], -3.0, -1.0, "uni")
    nrm = outputs["nrm"]
    assert abs(nrm.mean() - 0.5) < 0.1 and abs(nrm.std() - 2.0) < 0.1, \
        "normal(0.5, 2.0): mean %g std %g" % (nrm.mean(), nrm.std())
    assert (outputs["b"] == 0).all() and (outputs["dflt"] == 0).all(), "zeros"
    assert (outputs["one"] == 1).all(), "ones"
    want_y = F.linear(inputs["x"], torch.from_numpy(w), torch.from_numpy(outputs["b"]))
    assert np.allclose(outputs["y"], want_y.numpy(), rtol=1e-4, atol=1e-5), "y"
    assert len(np.unique(w)) > w.size * 0.9, "fc.weight values repeat"
    assert not np.array_equal(w.ravel()[:64], outputs["cw"].ravel()[:64]), "two params got the same stream"
    runs.append(outputs)
    if len(runs) == 2:
        for k in outputs:
            if k != "y":
                assert np.array_equal(runs[0][k], runs[1][k]), "--seed 0 is not the default for %s" % k
    if len(runs) == 3:
        assert not np.array_equal(runs[0]["w"], runs[2]["w"]), "--seed 5 gives the weights of seed 0"
