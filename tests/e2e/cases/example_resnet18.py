# examples/resnet18.mdl against torchvision's ResNet-18 (num_classes=10) in
# eval mode, written out with torch.nn.functional (torchvision is not
# installed here; the names are its state_dict names).
import torch
import torch.nn.functional as F

MDL = "examples/resnet18.mdl"
INPUTS = [{"x": ("f32", [1, 3, 32, 32])}, {"x": ("f32", [3, 3, 32, 32])}]


def _bn_params(prefix, c):
    return {prefix + ".weight": ("f32", [c]), prefix + ".bias": ("f32", [c]),
            prefix + ".running_mean": ("f32", [c]), prefix + ".running_var": ("f32", [c]),
            prefix + ".num_batches_tracked": ("i64", [])}


def _params():
    p = {"conv1.weight": ("f32", [64, 3, 7, 7])}
    p.update(_bn_params("bn1", 64))
    cin = 64
    for li, planes in enumerate([64, 128, 256, 512], start=1):
        for bi in range(2):
            pre = "layer%d.%d" % (li, bi)
            c = cin if bi == 0 else planes
            p[pre + ".conv1.weight"] = ("f32", [planes, c, 3, 3])
            p.update(_bn_params(pre + ".bn1", planes))
            p[pre + ".conv2.weight"] = ("f32", [planes, planes, 3, 3])
            p.update(_bn_params(pre + ".bn2", planes))
            if bi == 0 and li > 1:
                p[pre + ".downsample.0.weight"] = ("f32", [planes, c, 1, 1])
                p.update(_bn_params(pre + ".downsample.1", planes))
        cin = planes
    p["fc.weight"] = ("f32", [10, 512])
    p["fc.bias"] = ("f32", [10])
    return p


PARAMS = _params()


def make_params(gen):
    # plausible trained statistics: positive variances, BN gains near 1
    out = {}
    for name, (dt, shape) in PARAMS.items():
        if name.endswith("running_var"):
            out[name] = torch.rand(shape, generator=gen) * 0.5 + 0.75
        elif name.endswith("running_mean"):
            out[name] = torch.randn(shape, generator=gen) * 0.1
        elif name.endswith("num_batches_tracked"):
            out[name] = torch.tensor(1000, dtype=torch.int64)
        elif ".bn" in name + "." and name.endswith(".weight") or name.endswith("downsample.1.weight") \
                or name == "bn1.weight":
            out[name] = torch.rand(shape, generator=gen) * 0.5 + 0.75
    return out


def reference(p, i):
    def bn(x, pre):
        return F.batch_norm(x, p[pre + ".running_mean"], p[pre + ".running_var"], p[pre + ".weight"],
                            p[pre + ".bias"], training=False, eps=1e-5)

    def block(x, pre, stride, down):
        h = F.relu(bn(F.conv2d(x, p[pre + ".conv1.weight"], stride=stride, padding=1), pre + ".bn1"))
        h = bn(F.conv2d(h, p[pre + ".conv2.weight"], padding=1), pre + ".bn2")
        s = bn(F.conv2d(x, p[pre + ".downsample.0.weight"], stride=stride), pre + ".downsample.1") if down else x
        return F.relu(h + s)

    h = F.relu(bn(F.conv2d(i["x"], p["conv1.weight"], stride=2, padding=3), "bn1"))
    h = F.max_pool2d(h, 3, stride=2, padding=1)
    for li in range(1, 5):
        h = block(h, "layer%d.0" % li, 1 if li == 1 else 2, li > 1)
        h = block(h, "layer%d.1" % li, 1, False)
    h = torch.flatten(F.adaptive_avg_pool2d(h, 1), 1)
    return {"logits": F.linear(h, p["fc.weight"], p["fc.bias"])}
