#!/usr/bin/python3
"""tests/errors_doc.py — writes docs/errors.md from real runs of mlc.

    /usr/bin/python3 tests/errors_doc.py --mlc build/mlc --update   # rewrite docs/errors.md
    /usr/bin/python3 tests/errors_doc.py --mlc build/mlc            # check: exit 1 if it drifted

Every example message in docs/errors.md is what the command shown printed
when this script last ran with --update: each case below writes its input
files into a scratch directory, runs the command there and records the exit
status and stderr from its first error line (at most MAXLINES lines).  The
ctest test `errors_doc` runs the check mode, so a changed message fails it
until the doc is regenerated.  Edit the prose here, not in the .md.
"""
import argparse
import difflib
import gzip
import json
import re
import os
import shutil
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DOC = os.path.join(ROOT, "docs", "errors.md")
MAXLINES = 4

# ---- input files -------------------------------------------------------------

SMALL = """model small {
  input  x: f32[B, 3]
  param  fc.weight: f32[4, 3] = kaiming_uniform
  param  fc.bias:   f32[4]    = zeros
  output logits = linear(x, fc.weight, fc.bias)
}
train small {
  input  y: i64[B]
  loss   = cross_entropy(logits, y)
  optimizer = %s
}
"""
TWO_INPUTS = """model pair {
  input  a: f32[B, 3]
  input  b: f32[B, 3]
  output y = a + b
}
"""
EMBED = """model emb {
  input  ids: i64[B]
  param  table: f32[5, 2] = normal
  output y = embedding(ids, table)
}
"""


def npy(descr, shape, raw, fortran=False):
    h = "{'descr': '%s', 'fortran_order': %s, 'shape': (%s), }" % (
        descr, fortran, "".join("%d, " % s for s in shape) if len(shape) != 1 else "%d," % shape[0])
    h += " " * (-(10 + len(h) + 1) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h.encode("latin1") + raw


def f32(n, v=0.5):
    return struct.pack("<%df" % n, *([v] * n))


def i64(vals):
    return struct.pack("<%dq" % len(vals), *vals)


def safetensors(tensors, raw_header=None):
    header, blobs, off = {}, [], 0
    for name, dt, shape, raw in tensors:
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    hb = raw_header if raw_header is not None else json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    return struct.pack("<Q", len(hb)) + hb + b"".join(blobs)


GOOD_W = [("fc.bias", "F32", [4], f32(4)), ("fc.weight", "F32", [4, 3], f32(12))]


def idx(code, shape, raw):
    return bytes([0, 0, code, len(shape)]) + b"".join(struct.pack(">I", s) for s in shape) + raw


SMALL_FILES = {"small.mdl": SMALL % "sgd(lr=0.1)", "x.npy": npy("<f4", [4, 3], f32(12)),
               "y.npy": npy("<i8", [4], i64([0, 1, 2, 3]))}
RUN_SMALL = ["run", "small.mdl", "--input", "x=x.npy", "--out", "out"]
TRAIN_SMALL = ["train", "small.mdl", "--data", "x=x.npy", "--data", "y=y.npy", "--epochs", "1", "--batch", "2"]


def mdl(body):
    return {"m.mdl": "model m {\n" + body + "\n}\n"}


# ---- the cases: (title, files, argv) per section --------------------------------

SECTIONS = [
    ("Usage errors (exit status 2)",
     "A command line mlc cannot make sense of: an unknown command or option, a "
     "missing or malformed value.  The message ends with where to find help.",
     [("no arguments", {}, []),
      ("unknown option", {}, ["check", "m.mdl", "--frobnicate"]),
      ("malformed value", {}, ["run", "m.mdl", "--seed", "-1"]),
      ("--input without NAME=FILE", {}, ["run", "m.mdl", "--input", "x.npy"]),
      ("mlc train: incompatible options", SMALL_FILES,
       TRAIN_SMALL + ["--weights", "w.safetensors", "--resume", "c.safetensors"])]),
    ("Model files that cannot be read (exit status 1)",
     "`PATH: error: cannot read file: REASON`.",
     [("missing file", {}, ["check", "nonexistent.mdl"])]),
    ("Lexical errors (exit status 1)",
     "From the scanner (grammar/lexer.l), as `FILE:LINE:COL: error: MESSAGE`, the "
     "source line and a caret.  Limits: identifiers and paths up to 1024 bytes, "
     "integer literals within int64.",
     [("invalid character", mdl("  input x: f32[3]\n  output y = x $ x"), ["check", "m.mdl"]),
      ("unterminated string", mdl('  input x: f32[3]\n  output y = gelu(x, approximate="tanh)'), ["check", "m.mdl"]),
      ("integer literal too large", mdl("  input x: f32[99999999999999999999]\n  output y = x"), ["check", "m.mdl"]),
      ("identifier too long", mdl("  input x: f32[3]\n  " + "h" * 1500 + " = relu(x)\n  output y = x"),
       ["check", "m.mdl"])]),
    ("Syntax errors (exit status 1)",
     "From the parser (grammar/parser.y), which recovers at statement boundaries and "
     "reports several errors per run.  Expressions nest at most 1000 deep (AST_MAX_DEPTH).",
     [("unexpected token", mdl("  input x: f32[3]\n  output y = relu(x))"), ["check", "m.mdl"]),
      ("unexpected end of file", {"m.mdl": "model m {\n  input x: f32[3]\n  output y = relu(x\n"}, ["check", "m.mdl"]),
      ("nesting too deep", mdl("  input x: f32[3]\n  output y = " + "relu(" * 1200 + "x" + ")" * 1200),
       ["check", "m.mdl"])]),
    ("Name and type errors (exit status 1)",
     "From lowering (compiler/lower.c): names that are undefined or defined twice, "
     "unknown operators or keyword arguments, misuse of dtypes.",
     [("undefined name", mdl("  input x: f32[3]\n  output y = relu(z)"), ["check", "m.mdl"]),
      ("declared twice", mdl("  input x: f32[3]\n  param w: f32[3] = zeros\n  param w: f32[3] = zeros\n  output y = x + w"),
       ["check", "m.mdl"]),
      ("unknown operator", mdl("  input x: f32[3]\n  output y = frobnicate(x)"), ["check", "m.mdl"]),
      ("unknown dtype", mdl("  input x: f64[3]\n  output y = x"), ["check", "m.mdl"])]),
    ("Shape errors (exit status 1)",
     "From shape inference (compiler/infer.c), naming both shapes.  Limits: rank at "
     "most 8; a param, buffer or input of at most 2^36 elements; every value's size "
     "in bytes below 2^63.",
     [("broadcast mismatch", mdl("  input a: f32[B, 3]\n  input b: f32[B, 4]\n  output y = a + b"), ["check", "m.mdl"]),
      ("linear mismatch", mdl("  input x: f32[B, 3]\n  param w: f32[4, 5] = zeros\n  output y = linear(x, w)"),
       ["check", "m.mdl"]),
      ("inexact division", mdl("  input x: f32[B, 10]\n  output y = reshape(x, [B, 3, 10 / 3])"), ["check", "m.mdl"]),
      ("rank above the maximum", mdl("  input x: f32[1, 1, 1, 1, 1, 1, 1, 1, 1]\n  output y = x"), ["check", "m.mdl"]),
      ("input too large", mdl("  input x: f32[B, 4294967296, 4294967296]\n  output y = sum(x)"), ["check", "m.mdl"]),
      ("byte count overflows", mdl("  input x: f32[4]\n  output y = sum(relu(expand(reshape(x, [4, 1]), "
                                   "[4, 4611686018427387904])))"), ["check", "m.mdl"])]),
    ("Weights file faults (exit status 1)",
     "From the safetensors reader (runtime/safetensors.c, `NAME_load`, `mlc run "
     "--weights`, `mlc train --weights`), as `PATH: error: MESSAGE`.  The reader checks "
     "the whole file against the model before using it.",
     [("missing file", SMALL_FILES, RUN_SMALL + ["--weights", "nonexistent.safetensors"]),
      ("too short", dict(SMALL_FILES, **{"w.safetensors": b"abc"}), RUN_SMALL + ["--weights", "w.safetensors"]),
      ("header past the end", dict(SMALL_FILES, **{"w.safetensors": struct.pack("<Q", 1 << 40) + b"{}"}),
       RUN_SMALL + ["--weights", "w.safetensors"]),
      ("bad JSON", dict(SMALL_FILES, **{"w.safetensors": safetensors([], b'{"fc.bias": {"dtype": "F32",')}),
       RUN_SMALL + ["--weights", "w.safetensors"]),
      ("missing tensor", dict(SMALL_FILES, **{"w.safetensors": safetensors(GOOD_W[:1])}),
       RUN_SMALL + ["--weights", "w.safetensors"]),
      ("wrong shape", dict(SMALL_FILES, **{"w.safetensors": safetensors([GOOD_W[0], ("fc.weight", "F32", [3, 4], f32(12))])}),
       RUN_SMALL + ["--weights", "w.safetensors"]),
      ("wrong dtype", dict(SMALL_FILES, **{"w.safetensors": safetensors([GOOD_W[0], ("fc.weight", "F16", [4, 3], bytes(24))])}),
       RUN_SMALL + ["--weights", "w.safetensors"]),
      ("extra tensor", dict(SMALL_FILES, **{"w.safetensors": safetensors(GOOD_W + [("fc2.bias", "F32", [1], f32(1))])}),
       RUN_SMALL + ["--weights", "w.safetensors"]),
      ("truncated data", dict(SMALL_FILES, **{"w.safetensors": safetensors(GOOD_W)[:-5]}),
       RUN_SMALL + ["--weights", "w.safetensors"]),
      ("weights larger than memory", mdl("  param w: f32[68719476736] = zeros\n  output y = sum(w)"),
       ["run", "m.mdl", "--out", "out"])]),
    (".npy faults (exit status 1)",
     "From the .npy reader (runtime/npy.c) and the `mlc run` harness that checks each "
     "array against the model's input.",
     [("missing file", SMALL_FILES, ["run", "small.mdl", "--input", "x=nonexistent.npy"]),
      ("not a .npy file", dict(SMALL_FILES, **{"x.npy": b"hello, world"}), RUN_SMALL),
      ("wrong dtype", dict(SMALL_FILES, **{"x.npy": npy("<f8", [4, 3], bytes(96))}), RUN_SMALL),
      ("wrong shape", dict(SMALL_FILES, **{"x.npy": npy("<f4", [4, 5], f32(20))}), RUN_SMALL),
      ("big-endian", dict(SMALL_FILES, **{"x.npy": npy(">f4", [4, 3], f32(12))}), RUN_SMALL),
      ("fortran order", dict(SMALL_FILES, **{"x.npy": npy("<f4", [4, 3], f32(12), fortran=True)}), RUN_SMALL),
      ("truncated", dict(SMALL_FILES, **{"x.npy": npy("<f4", [4, 3], f32(12))[:-7]}), RUN_SMALL)]),
    ("Dataset faults (exit status 1)",
     "From `mlc train` reading --data and --eval files (.npy, IDX, gzip IDX: "
     "compiler/idx.c, runtime/trainloop.c).",
     [("IDX: bad magic", dict(SMALL_FILES, **{"x.idx": b"\x01\x02\x03\x04"}),
       ["train", "small.mdl", "--data", "x=x.idx", "--data", "y=y.npy", "--epochs", "1", "--batch", "2"]),
      ("IDX: truncated mid-record", dict(SMALL_FILES, **{"x.idx.gz": gzip.compress(idx(0x0D, [4, 3], bytes(40)), mtime=0)}),
       ["train", "small.mdl", "--data", "x=x.idx.gz", "--data", "y=y.npy", "--epochs", "1", "--batch", "2"]),
      (".npy: truncated mid-record", dict(SMALL_FILES, **{"x.npy": npy("<f4", [4, 3], f32(12))[:-6]}), TRAIN_SMALL),
      ("sample counts differ", dict(SMALL_FILES, **{"y.npy": npy("<i8", [3], i64([0, 1, 2]))}), TRAIN_SMALL),
      ("empty dataset", dict(SMALL_FILES, **{"x.npy": npy("<f4", [0, 3], b""), "y.npy": npy("<i8", [0], b"")}),
       TRAIN_SMALL),
      ("missing input", SMALL_FILES, ["train", "small.mdl", "--data", "x=x.npy", "--epochs", "1", "--batch", "2"])]),
    ("Checkpoint faults (exit status 1)",
     "`mlc train --resume` reads a checkpoint with the safetensors reader against the "
     "checkpoint's table (weights, optimizer state, step); a failed resume leaves the "
     "file alone.  Checkpoints are written to PATH.tmp and renamed, so a killed run "
     "leaves the previous complete checkpoint (tests/e2e/kill_check.py).",
     [("not a checkpoint (a weights file)", dict(SMALL_FILES, **{"w.safetensors": safetensors(GOOD_W)}),
       TRAIN_SMALL + ["--resume", "w.safetensors"]),
      ("truncated checkpoint", dict(SMALL_FILES, **{"c.safetensors": safetensors(GOOD_W + [
          ("optimizer.step", "I64", [], i64([2]))])[:-3]}), TRAIN_SMALL + ["--resume", "c.safetensors"])]),
    ("Run-time checks (exit status 1)",
     "What the generated code checks on each call (spec section 6): symbolic dims "
     "that must agree, indices and labels in range, a finite loss.",
     [("symbolic dim mismatch", {"pair.mdl": TWO_INPUTS, "a.npy": npy("<f4", [2, 3], f32(6)),
                                 "b.npy": npy("<f4", [3, 3], f32(9))},
       ["run", "pair.mdl", "--input", "a=a.npy", "--input", "b=b.npy", "--out", "out"]),
      ("index out of range", {"emb.mdl": EMBED, "ids.npy": npy("<i8", [2], i64([1, 7]))},
       ["run", "emb.mdl", "--input", "ids=ids.npy", "--out", "out"]),
      ("label out of range", dict(SMALL_FILES, **{"y.npy": npy("<i8", [4], i64([0, 1, 9, 3]))}), TRAIN_SMALL),
      ("non-finite loss", dict(SMALL_FILES, **{"small.mdl": SMALL % "sgd(lr=1e30)", "x.npy": npy("<f4", [4, 3], f32(12, 1e20))}),
       TRAIN_SMALL)]),
]


def run_case(mlc, files, argv, env):
    with tempfile.TemporaryDirectory(prefix="mlc-errdoc-") as wd:
        for name, data in files.items():
            with open(os.path.join(wd, name), "wb") as f:
                f.write(data.encode() if isinstance(data, str) else data)
        p = subprocess.run([mlc] + argv, cwd=wd, env=env, capture_output=True, timeout=600)
    lines = p.stderr.decode(errors="replace").splitlines()
    first = next((i for i, l in enumerate(lines) if re.match(r"[^ ]*( [a-z]+)?: error: ", l)), 0)
    lines = [l if len(l) <= 120 else l[:117] + "..." for l in lines[first:first + MAXLINES]]
    return p.returncode, lines


def shell_word(a):
    if len(a) > 40:
        a = a[:37] + "..."
    return a if a and all(c.isalnum() or c in "-_./=,:" for c in a) else "'%s'" % a


def generate(mlc):
    env = dict(os.environ)
    out = ["# Errors", "",
           "<!-- Generated by tests/errors_doc.py --update from real runs of mlc; the ctest test",
           "     errors_doc fails when a message here no longer matches the code. Do not edit. -->", "",
           "Every error mlc reports, by class, with a real example.  Exit status: 0 success, 1 an "
           "error in the model, its files or data, 2 a usage error.  Errors in a model are "
           "`FILE:LINE:COL: error: MESSAGE` (with the source line and a caret), errors in other "
           "files `PATH: error: MESSAGE`; mlc reports every error it can find in one run.  No "
           "input makes mlc or the generated code crash: the readers and the front end are "
           "fuzzed (docs/fuzzing.md).", "",
           "Each example shows the command (run in a directory holding the inputs that "
           "tests/errors_doc.py writes) and the first lines of its standard error.", ""]
    for title, prose, cases in SECTIONS:
        out += ["## " + title, "", prose, ""]
        for name, files, argv in cases:
            rc, lines = run_case(mlc, files, argv, env)
            out += ["**%s** (exit %d)" % (name, rc), "", "```", "$ " + " ".join(["mlc"] + [shell_word(a) for a in argv])]
            out += lines + ["```", ""]
    return "\n".join(out).rstrip("\n") + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mlc", required=True)
    ap.add_argument("--update", action="store_true", help="rewrite docs/errors.md")
    args = ap.parse_args()
    text = generate(os.path.abspath(args.mlc))
    if args.update:
        with open(DOC, "w") as f:
            f.write(text)
        print("wrote " + DOC)
        return 0
    old = open(DOC).read() if os.path.exists(DOC) else ""
    if old == text:
        print("docs/errors.md matches mlc's messages")
        return 0
    sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), text.splitlines(True), "docs/errors.md", "generated"))
    print("docs/errors.md drifted from the code: rerun tests/errors_doc.py --mlc build/mlc --update")
    return 1


if __name__ == "__main__":
    sys.exit(main())
