import torch.nn.functional as F


def reference(params, inputs):
    x, w, big = inputs["x"], params["w"], params["big"]
    return {"p3": F.conv2d(x, w, padding=3), "s4": F.conv2d(x, w, stride=4, padding=1),
            "cover": F.conv2d(x, big, padding=(1, 1)),
            "dil_pad": F.conv2d(x, w, padding=(4, 2), dilation=(3, 2), stride=(2, 3))}
