#!/usr/bin/python3
"""tests/fuzz/make_corpus.py — writes the seed corpora corpus/NAME/ of the
fuzzing harnesses (checked in; rerun after changing a harness's input format).

  /usr/bin/python3 tests/fuzz/make_corpus.py

mdl: the example models, the e2e model cases and error cases, the golden
diagnostics inputs (only files under 16 KiB, to keep the corpus small).
safetensors / checkpoint: valid files for the harnesses' descriptor tables
(fuzz_safetensors.c, ckpt_model.mdl), with and without __metadata__.
npy: every accepted dtype, ranks 0..3, format versions 1.0, 2.0 and 3.0.
idx: u8 images and labels, i32 and f32 data, plain and gzip-compressed.
diff: a few inputs of fuzz_diff.c's byte layout.
"""
import glob, gzip, json, os, shutil, struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(HERE, "corpus")


def put(name, fname, data):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, fname), "wb") as f:
        f.write(data)


def safetensors(tensors, metadata=None):
    """tensors: [(name, dtype, shape, raw)]; data in reverse order of the header."""
    header, blobs, off = {}, [], 0
    for name, dt, shape, raw in reversed(tensors):
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    header = dict(sorted(header.items()))
    if metadata is not None:
        header = {"__metadata__": metadata, **header}
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    return struct.pack("<Q", len(hb)) + hb + b"".join(blobs)


def f32(n, start=0.5):
    return struct.pack("<%df" % n, *[start + i * 0.25 for i in range(n)])


def npy(descr, shape, raw, version=(1, 0), fortran=False):
    h = "{'descr': '%s', 'fortran_order': %s, 'shape': (%s), }" % (
        descr, fortran, "".join("%d, " % s for s in shape) if len(shape) != 1 else "%d," % shape[0])
    lenfmt = "<H" if version[0] == 1 else "<I"
    pre = 6 + 2 + struct.calcsize(lenfmt)
    h += " " * (-(pre + len(h) + 1) % 64) + "\n"
    return b"\x93NUMPY" + bytes(version) + struct.pack(lenfmt, len(h)) + h.encode("latin1") + raw


def idx(code, shape, raw):
    return bytes([0, 0, code, len(shape)]) + b"".join(struct.pack(">I", s) for s in shape) + raw


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    # ---- mdl
    srcs = sorted(glob.glob(os.path.join(ROOT, "examples", "*.mdl")) +
                  glob.glob(os.path.join(ROOT, "tests", "e2e", "cases", "*.mdl")) +
                  glob.glob(os.path.join(ROOT, "tests", "e2e", "errors", "*.mdl")) +
                  glob.glob(os.path.join(ROOT, "tests", "golden", "*.mdl")) +
                  [os.path.join(HERE, "ckpt_model.mdl")])
    for p in srcs:
        data = open(p, "rb").read()
        if len(data) < 16384:
            put("mdl", os.path.relpath(p, ROOT).replace("/", "_"), data)
    # ---- safetensors (fuzz_safetensors.c's table)
    st = [("fc.weight", "F32", [3, 4], f32(12)), ("fc.bias", "F32", [3], f32(3)),
          ("h", "F16", [2], b"\x00\x3c\x00\xc0"), ("b", "BF16", [2], b"\x80\x3f\x00\x40"),
          ("i", "I32", [1], struct.pack("<i", 7)), ("step", "I64", [], struct.pack("<q", 42)),
          ("u", "U8", [1, 1, 2, 1], b"\x01\xff"), ("mask", "BOOL", [2], b"\x00\x01")]
    put("safetensors", "valid.safetensors", safetensors(st))
    put("safetensors", "metadata.safetensors", safetensors(st, {"format": "pt", "epoch": "3"}))
    put("safetensors", "tied.safetensors", safetensors(st + [("head.bias", "F32", [3], f32(3))]))
    put("safetensors", "empty_header.safetensors", safetensors([]))
    # ---- checkpoint (ckpt_model.mdl: adam, a buffer, a tie)
    ck = [("fc.weight", "F32", [3, 4], f32(12, -1)), ("fc.bias", "F32", [3], f32(3)),
          ("emb.weight", "F32", [5, 4], f32(20)), ("scale", "F32", [3], f32(3, 1)),
          ("optimizer.fc.weight.exp_avg", "F32", [3, 4], f32(12, 0.01)),
          ("optimizer.fc.weight.exp_avg_sq", "F32", [3, 4], f32(12, 0.001)),
          ("optimizer.fc.bias.exp_avg", "F32", [3], f32(3, 0.01)),
          ("optimizer.fc.bias.exp_avg_sq", "F32", [3], f32(3, 0.001)),
          ("optimizer.step", "I64", [], struct.pack("<q", 5))]
    put("checkpoint", "ckpt.safetensors", safetensors(ck))
    put("checkpoint", "ckpt_tied.safetensors", safetensors(ck + [("head.bias", "F32", [3], f32(3))]))
    put("checkpoint", "weights_only.safetensors", safetensors(ck[:4], {"format": "pt"}))
    # ---- npy
    put("npy", "f4_2x3.npy", npy("<f4", [2, 3], f32(6)))
    put("npy", "f2_4.npy", npy("<f2", [4], b"\x00\x3c" * 4))
    put("npy", "i4_scalar.npy", npy("<i4", [], struct.pack("<i", -5)))
    put("npy", "i8_2x1x2.npy", npy("<i8", [2, 1, 2], struct.pack("<4q", 1, 2, 3, 4)))
    put("npy", "u1_v2.npy", npy("|u1", [3], b"\x01\x02\x03", (2, 0)))
    put("npy", "b1_v3.npy", npy("|b1", [2, 2], b"\x00\x01\x01\x00", (3, 0)))
    put("npy", "f4_empty.npy", npy("<f4", [0, 5], b""))
    put("npy", "f4_fortran.npy", npy("<f4", [2, 2], f32(4), fortran=True))
    # ---- idx
    put("idx", "images_u8", idx(0x08, [2, 3, 3], bytes(range(18))))
    put("idx", "labels_u8", idx(0x08, [4], b"\x00\x09\x03\x01"))
    put("idx", "i32", idx(0x0C, [2, 2], struct.pack(">4i", 1, -2, 3, 1 << 20)))
    put("idx", "f32", idx(0x0D, [3], struct.pack(">3f", 0.5, -1.5, 2.0)))
    put("idx", "images_u8.gz", gzip.compress(idx(0x08, [2, 2, 2], bytes(range(8))), mtime=0))
    put("idx", "f32.gz", gzip.compress(idx(0x0D, [1, 2], struct.pack(">2f", 1.0, 2.0)), mtime=0))
    # ---- diff: B, T, seed, then values
    put("diff", "b1t1", bytes([0, 0, 0]) + bytes(range(16)))
    put("diff", "b4t6", bytes([3, 5, 7]) + bytes((i * 37) & 0xff for i in range(2 * 4 * 6 * 8)))
    put("diff", "b2t3_short", bytes([1, 2, 1, 0x10, 0xf0, 0x7f, 0x80]))


main()
