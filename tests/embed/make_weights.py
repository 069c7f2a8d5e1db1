"""tests/embed/make_weights.py OUT_DIR — the safetensors files of
tests/embed_check.sh: good.safetensors for embed.mdl (every byte value, in
runs that test the escapes of the weights translation unit: NUL before
digits, '?', '"', '\\'), the input x.npy, and broken files, one fault each."""
import json, os, struct, sys
import numpy as np

def save(path, tensors):
    hdr, off, blobs = {}, 0, []
    for k, v in tensors.items():
        b = np.ascontiguousarray(v).tobytes()
        dt = {"float32": "F32", "float16": "F16", "uint8": "U8", "int64": "I64"}[str(v.dtype)]
        hdr[k] = {"dtype": dt, "shape": list(v.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(hdr).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))

out = sys.argv[1]
rng = np.random.default_rng(5)
pattern = bytes(range(256)) + b"\0" + b"0123456789" + b"\1" + b"7" + b"??=??/" + b'"\\' + b"\0\0" + b"8" + b"\377" + b"0"
pattern = (pattern * 3)[:600]
good = {
    "fc.weight": rng.standard_normal((3, 4)).astype(np.float32),
    "fc.bias": rng.standard_normal(3).astype(np.float32),
    "half": rng.standard_normal(5).astype(np.float16),
    "bytes": np.frombuffer(pattern, dtype=np.uint8).copy(),
    "count": np.array([-5, 1 << 40], dtype=np.int64),
}
save(os.path.join(out, "good.safetensors"), good)
tied = dict(good)
tied["head.weight"] = tied.pop("fc.weight")  # the tied name alone is accepted
save(os.path.join(out, "tied.safetensors"), tied)
bad = {
    "shape": dict(good, **{"fc.bias": np.zeros(4, np.float32)}),
    "dtype": dict(good, **{"half": np.zeros(5, np.float32)}),
    "missing": {k: v for k, v in good.items() if k != "count"},
    "extra": dict(good, **{"unexpected": np.zeros(2, np.float32)}),
}
for name, t in bad.items():
    save(os.path.join(out, name + ".safetensors"), t)
np.save(os.path.join(out, "x.npy"), rng.standard_normal((2, 4)).astype(np.float32))
