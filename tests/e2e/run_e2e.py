#!/usr/bin/python3
"""End-to-end tests for mlc: compile, build and run models with `mlc run`
and compare every output with a PyTorch reference.

Usage:  /usr/bin/python3 tests/e2e/run_e2e.py --mlc build/mlc [--filter SUBSTR] [--keep]
            [--sanitize] [--mlc-args=-O0] [--same-at-O0] [--same-with-jit] [--workdir DIR] [--cc gcc,clang] [-j N]
        /usr/bin/python3 tests/e2e/run_e2e.py --references-only   (no mlc needed)

Three kinds of cases (see tests/e2e/README.md for how to add one):

  cases/NAME.mdl + cases/NAME.py   a model and its PyTorch reference.  The runner
      makes random weights (a safetensors file written by hand below) and inputs
      (.npy), runs `mlc run`, and compares each DIR/<output>.npy with what
      reference(params, inputs) returns: same dtype, same shape, values within
      TOL (floats) or exactly equal (integers, bool).

  errors/NAME.expect (+ NAME.mdl)   a model, a file or a command line that must
      be rejected.  The .expect file:
          line 1            expected exit status (1 = model/file error, 2 = usage; 1|2)
          mdl FILE          optional: the model (default NAME.mdl), relative to errors/
          cmd check         optional: `mlc check MODEL` instead of `mlc run`;
                            `cmd raw ARGS...` runs `mlc ARGS` ({mdl} = the model)
          mutate KIND ARGS  optional, any number: damage the weights/inputs/argv
          anything else     regexes (Python re, MULTILINE), each must match stderr
          # ...             comments
      Mutations are listed in MUTATIONS below.

  api/NAME.mdl + api/NAME.c   a C program using the generated API (spec section
      7), built with -Wall -Wextra -Werror against `mlc NAME.mdl -o` output and
      libmlcrt; it must print "N checks passed" and exit 0.

A crash (killed by a signal, exit status >= 128, an ASan or UBSan report) is
always a failure.  --sanitize builds the generated programs with ASan+UBSan.
Work directories go to tests/e2e/out/NAME (gitignored; --workdir moves them);
they are removed after a pass unless --keep, and kept after a failure.
"""

import argparse
import concurrent.futures
import importlib.util
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import threading
import traceback

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CASES = os.path.join(HERE, "cases")
ERRORS = os.path.join(HERE, "errors")
API = os.path.join(HERE, "api")
OUT = os.path.join(HERE, "out")

DEFAULT_TOL = (1e-4, 1e-5)  # spec section 3: rtol 1e-4, atol 1e-5
RUN_TIMEOUT = 300           # seconds for one `mlc run` (it compiles C too)

# MDL dtype -> (torch dtype, numpy dtype, safetensors dtype)
DTYPES = {
    "f32": (torch.float32, np.dtype("<f4"), "F32"),
    "f16": (torch.float16, np.dtype("<f2"), "F16"),
    "bf16": (torch.bfloat16, None, "BF16"),
    "i32": (torch.int32, np.dtype("<i4"), "I32"),
    "i64": (torch.int64, np.dtype("<i8"), "I64"),
    "u8": (torch.uint8, np.dtype("|u1"), "U8"),
    "bool": (torch.bool, np.dtype("|b1"), "BOOL"),
}
TORCH_TO_NP = {t: n for (t, n, _) in DTYPES.values() if n is not None}


class CaseError(Exception):
    """A failed assertion: the message becomes the FAIL line."""

    def __init__(self, msg, detail=""):
        super().__init__(msg)
        self.detail = detail


class Skip(Exception):
    pass


# ---------------------------------------------------------------------------
# Reading declarations out of an .mdl (a regex job, not a parser: good enough
# for top-level `param`/`input` lines; cases with blocks declare PARAMS).
# ---------------------------------------------------------------------------

def strip_comments(text):
    return re.sub(r"#[^\n]*", "", text)


def top_level_sections(text):
    """Yields (kind, name, body) for each `model`/`block`/`train` section."""
    head = re.compile(r"\b(model|block|train)\s+(\w+)[^{]*\{")
    pos = 0
    while True:
        m = head.search(text, pos)
        if not m:
            return
        depth, i = 1, m.end()  # `{i}` path segments nest and balance too
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        yield m.group(1), m.group(2), text[m.end():i - 1]
        pos = i


def model_body(text, model=None):
    """The body of the named model (or the only/first one), comments removed."""
    text = strip_comments(text)
    for kind, name, body in top_level_sections(text):
        if kind == "model" and (model is None or name == model):
            return body
    raise CaseError("no model%s found in the .mdl" % (" " + model if model else ""))


def eval_dims(dims, env):
    out = []
    for d in dims.split(","):
        d = d.strip()
        if not d:
            continue
        expr = re.sub(r"(?<![/])/(?![/])", "//", d)
        try:
            out.append(int(eval(expr, {"__builtins__": {}}, env)))
        except Exception:
            raise CaseError("cannot evaluate dim %r: declare it in the case's .py" % d)
    return out


def parse_consts(body):
    env = {}
    for m in re.finditer(r"\bconst\s+(\w+)\s*=\s*([^\n;]+)", body):
        env[m.group(1)] = eval_dims(m.group(2), env)[0]
    return env


def parse_params(body):
    """{path: (dtype, shape)} for the `param`/`buffer` lines of a model body."""
    env = parse_consts(body)
    params = {}
    for m in re.finditer(r"\b(?:param|buffer)\s+([\w.{}]+)\s*:\s*(\w+)\s*\[([^\]]*)\]", body):
        path, dt, dims = m.groups()
        if "{" in path:
            raise CaseError("param %s is inside a repeat: declare PARAMS in the case's .py" % path)
        params[path] = (dt, eval_dims(dims, env))
    return params


def check_shapes(body, shapes):
    """INPUTS must agree with the model's `input` lines (catches typos in cases)."""
    decl = {m.group(1): (m.group(2), [d.strip() for d in m.group(3).split(",") if d.strip()])
            for m in re.finditer(r"\binput\s+(\w+)\s*:\s*(\w+)\s*\[([^\]]*)\]", body)}
    if set(decl) != set(shapes):
        raise CaseError("INPUTS names %s, the model declares %s" % (sorted(shapes), sorted(decl)))
    env, bound = parse_consts(body), {}
    for n, (dt, dims) in decl.items():
        gdt, gshape = shapes[n]
        if gdt != dt or len(gshape) != len(dims):
            raise CaseError("INPUTS %s: %s%s, the model declares %s%s" % (n, gdt, gshape, dt, dims))
        for d, g in zip(dims, gshape):
            if re.fullmatch(r"[A-Za-z_]\w*", d) and d not in env:
                if bound.setdefault(d, g) != g:
                    raise CaseError("INPUTS: symbolic dim %s is %d and %d" % (d, bound[d], g))
            elif re.fullmatch(r"\d+", d) and int(d) != g:
                raise CaseError("INPUTS %s: dim %s given as %d" % (n, d, g))


def parse_inputs(body, sym_value=3):
    """{name: (dtype, shape)} for the `input` lines; symbolic dims get sym_value."""
    env = parse_consts(body)
    inputs = {}
    for m in re.finditer(r"\binput\s+(\w+)\s*:\s*(\w+)\s*\[([^\]]*)\]", body):
        name, dt, dims = m.groups()
        for sym in re.findall(r"[A-Za-z_]\w*", dims):
            env.setdefault(sym, sym_value)
        inputs[name] = (dt, eval_dims(dims, env))
    return inputs


# ---------------------------------------------------------------------------
# Files: safetensors written by hand, .npy through numpy.
# ---------------------------------------------------------------------------

def tensor_bytes(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().astype("<i2").tobytes()
    return t.numpy().astype(TORCH_TO_NP[t.dtype]).tobytes()


def st_dtype(t):
    for _, (td, _, sd) in DTYPES.items():
        if td == t.dtype:
            return sd
    raise ValueError(t.dtype)


def read_safetensors(path):
    """({name: numpy array}, metadata) of a safetensors file (F32, F16, I64, I32, U8)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise CaseError("%s: %d bytes, not a safetensors file" % (path, len(data)))
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", None)
    base = 8 + n
    npdt = {"F32": "<f4", "I64": "<i8", "I32": "<i4", "U8": "u1", "F16": "<f2"}
    out = {}
    for name, e in header.items():
        a, b = e["data_offsets"]
        out[name] = np.frombuffer(data[base + a:base + b], dtype=npdt[e["dtype"]]).reshape(e["shape"]).copy()
    return out, meta



def safetensors_bytes(tensors, metadata=None, header_override=None):
    """tensors: {name: torch.Tensor} or {name: (st_dtype, shape, raw_bytes)}.
    Data is laid out in reverse name order while the header keys are sorted,
    so a loader that assumes either order or monotonic offsets is caught."""
    entries, blobs, offset = {}, [], 0
    for name in sorted(tensors, reverse=True):
        t = tensors[name]
        if isinstance(t, tuple):
            dt, shape, raw = t
        else:
            dt, shape, raw = st_dtype(t), list(t.shape), tensor_bytes(t)
        entries[name] = {"dtype": dt, "shape": list(shape),
                         "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    header = {k: entries[k] for k in sorted(entries)}
    if metadata is not None:
        header = {"__metadata__": metadata, **header}
    hb = json.dumps(header, separators=(",", ":")).encode()
    if header_override is not None:
        hb = header_override(hb)
    hb += b" " * (-len(hb) % 8)
    return struct.pack("<Q", len(hb)) + hb + b"".join(blobs)


def random_tensor(dt, shape, gen, kind="input"):
    """Random values that make every operator in the suite meaningful."""
    shape = list(shape)
    if dt in ("f32", "f16", "bf16"):
        if kind == "param" and len(shape) >= 2:
            fan_in = math.prod(shape[1:])
            bound = 1.0 / math.sqrt(fan_in) if fan_in else 1.0
            t = (torch.rand(shape, generator=gen) * 2 - 1) * bound * math.sqrt(3.0)
        elif kind == "param":
            t = (torch.rand(shape, generator=gen) * 2 - 1) * 0.5
        else:
            t = torch.randn(shape, generator=gen)
        return t.to(DTYPES[dt][0])
    if dt == "u8":
        return torch.randint(0, 256, shape, generator=gen, dtype=torch.uint8)
    if dt == "bool":
        return torch.randint(0, 2, shape, generator=gen).to(torch.bool)
    return torch.randint(-6, 7, shape, generator=gen).to(DTYPES[dt][0])


def save_npy(path, t):
    if isinstance(t, torch.Tensor):
        if t.dtype == torch.bfloat16:
            raise CaseError("bf16 has no .npy dtype: use f32 inputs and to_bf16 in the model")
        t = t.numpy()
    np.save(path, np.array(t, order="C"))  # ascontiguousarray would make a 0-d array 1-d


# ---------------------------------------------------------------------------
# Running mlc
# ---------------------------------------------------------------------------

EXTRA_ARGS = []   # --mlc-args: appended to every `mlc run`
SAME_AT_O0 = False  # --same-at-O0: also run at -O0 and compare outputs bit for bit
SAME_WITH_JIT = False  # --same-with-jit: also run with --jit (libmlc's JIT) and compare bit for bit
ENV = dict(os.environ)

SANITIZER = re.compile(r"ERROR: AddressSanitizer|runtime error:")


def run_mlc(argv, cwd):
    try:
        p = subprocess.run(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=RUN_TIMEOUT, env=ENV)
    except subprocess.TimeoutExpired:
        raise CaseError("timed out after %ds: %s" % (RUN_TIMEOUT, " ".join(argv)))
    out = p.stdout.decode(errors="replace")
    err = p.stderr.decode(errors="replace")
    if p.returncode < 0 or p.returncode >= 128:
        raise CaseError("crashed (exit status %d)" % p.returncode, err)
    if SANITIZER.search(err) or SANITIZER.search(out):
        raise CaseError("sanitizer report", err)
    return p.returncode, out, err


def tail(text, n=15):
    lines = text.rstrip().splitlines()
    return "\n".join(lines[-n:])


# ---------------------------------------------------------------------------
# Comparing outputs
# ---------------------------------------------------------------------------

def compare(name, got, want, tol):
    """got: numpy array from the .npy; want: torch tensor from the reference."""
    want_np = TORCH_TO_NP.get(want.dtype)
    if want_np is None:
        raise CaseError("%s: reference dtype %s has no .npy form" % (name, want.dtype))
    if got.dtype != want_np:
        raise CaseError("%s: dtype %s, want %s" % (name, got.dtype.str, want_np.str))
    if tuple(got.shape) != tuple(want.shape):
        raise CaseError("%s: shape %s, want %s" % (name, list(got.shape), list(want.shape)))
    w = want.detach().numpy()
    if got.size == 0:
        return
    if want.dtype in (torch.float32, torch.float16):
        rtol, atol = tol
        g64, w64 = got.astype(np.float64), w.astype(np.float64)
        with np.errstate(invalid="ignore"):  # inf - inf
            diff = np.abs(g64 - w64)
        both_nan = np.isnan(g64) & np.isnan(w64)
        same = (g64 == w64) | both_nan  # also equal infinities
        err = np.where(same, 0.0, diff)
        err = np.where(np.isnan(err), np.inf, err)
        allowed = atol + rtol * np.abs(np.where(np.isfinite(w64), w64, 0.0))
        ratio = err / allowed
        bad = int((ratio > 1).sum())
        if bad:
            i = np.unravel_index(int(np.argmax(ratio)), got.shape)
            rel = err / np.maximum(np.abs(w64), 1e-30)
            raise CaseError(
                "%s: %d of %d elements off: max abs err %.3g, max rel err %.3g; worst at %s: got %r want %r (rtol %g atol %g)"
                % (name, bad, got.size, float(err.max()), float(np.where(err > 0, rel, 0).max()),
                   list(i), float(g64[i]), float(w64[i]), rtol, atol))
    else:
        diff = got != w
        bad = int(diff.sum())
        if bad:
            i = tuple(np.argwhere(diff)[0])
            raise CaseError("%s: %d of %d elements differ; first at %s: got %r want %r"
                            % (name, bad, got.size, [int(k) for k in i], got[i].item(), w[i].item()))


# ---------------------------------------------------------------------------
# Model cases
# ---------------------------------------------------------------------------

def load_module(path):
    spec = importlib.util.spec_from_file_location("case_" + os.path.basename(path)[:-3], path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def describe(shapes):
    return "; ".join("%s:%s%s" % (n, dt, list(s)) for n, (dt, s) in shapes.items())


def run_model_case(name, mlc, workdir):
    mod = load_module(os.path.join(CASES, name + ".py"))
    if getattr(mod, "SKIP", None):
        raise Skip(mod.SKIP)
    mdl = os.path.join(REPO, mod.MDL) if hasattr(mod, "MDL") else os.path.join(CASES, name + ".mdl")
    text = open(mdl).read()
    model = getattr(mod, "MODEL", None)
    body = model_body(text, model)
    has_ref, has_check = hasattr(mod, "reference"), hasattr(mod, "check")
    if not (has_ref or has_check):
        raise CaseError("the case defines neither reference() nor check()")

    gen = torch.Generator().manual_seed(getattr(mod, "SEED", 1234))
    use_weights = getattr(mod, "WEIGHTS", True)
    if hasattr(mod, "PARAMS"):
        decls = mod.PARAMS
    elif re.search(r"^\s*block\s", strip_comments(text), re.M):
        raise CaseError("the model uses blocks: declare PARAMS in the case's .py")
    else:
        decls = parse_params(body)
    params = {}
    argv = [mlc, "run", mdl]
    if model:
        argv += ["--model", model]
    if use_weights:
        params = {p: random_tensor(dt, s, gen, "param") for p, (dt, s) in decls.items()}
        if hasattr(mod, "make_params"):
            params.update(mod.make_params(gen))
        wpath = os.path.join(workdir, "weights.safetensors")
        with open(wpath, "wb") as f:
            f.write(safetensors_bytes(params))
        argv += ["--weights", wpath]
    argv += list(getattr(mod, "ARGS", []))

    shape_sets = getattr(mod, "INPUTS", None)
    if shape_sets is None:
        shape_sets = parse_inputs(body)
    if isinstance(shape_sets, dict):
        shape_sets = [shape_sets]
    tol = getattr(mod, "TOL", DEFAULT_TOL)
    run_args = getattr(mod, "RUN_ARGS", [[]] * len(shape_sets))
    if len(run_args) != len(shape_sets):
        raise CaseError("RUN_ARGS needs one list per entry of INPUTS")

    for k, shapes in enumerate(shape_sets):
        check_shapes(body, shapes)
        where = "[%s]" % describe(shapes) if len(shape_sets) > 1 else ""
        run_dir = os.path.join(workdir, "run%d" % k)
        os.makedirs(os.path.join(run_dir, "in"))
        if hasattr(mod, "make_inputs"):
            inputs = mod.make_inputs(shapes, gen)
        else:
            inputs = {n: random_tensor(dt, s, gen) for n, (dt, s) in shapes.items()}
        run_argv = argv + list(run_args[k])
        for n, t in inputs.items():
            save_npy(os.path.join(run_dir, "in", n + ".npy"), t)
            run_argv += ["--input", "%s=in/%s.npy" % (n, n)]
        run_argv += ["--out", "out"] + EXTRA_ARGS
        if mlc is None:  # --references-only: exercise the case's Python side
            with torch.no_grad():
                want = mod.reference(dict(params), dict(inputs)) if has_ref else {}
            for n, t in want.items():
                if not isinstance(t, torch.Tensor) or t.dtype not in TORCH_TO_NP:
                    raise CaseError("reference output %s is not a tensor with an .npy dtype" % n)
            continue
        rc, _, err = run_mlc(run_argv, run_dir)
        if rc != 0:
            raise CaseError("mlc exited with %d %s" % (rc, where), err)
        out_dir = os.path.join(run_dir, "out")
        produced = sorted(f[:-4] for f in os.listdir(out_dir) if f.endswith(".npy")) \
            if os.path.isdir(out_dir) else []
        outputs = {n: np.load(os.path.join(out_dir, n + ".npy")) for n in produced}
        if SAME_AT_O0:  # -O0 (no fusion, no reuse) must give the very same bytes
            argv0 = [a for a in run_argv if a not in ("-O0", "-O2")]
            argv0[argv0.index("--out") + 1] = "out0"
            rc, _, err = run_mlc(argv0 + ["-O0"], run_dir)
            if rc != 0:
                raise CaseError("mlc -O0 exited with %d %s" % (rc, where), err)
            for n in produced:
                with open(os.path.join(out_dir, n + ".npy"), "rb") as f2, \
                        open(os.path.join(run_dir, "out0", n + ".npy"), "rb") as f0:
                    if f2.read() != f0.read():
                        raise CaseError("output %s differs between -O2 and -O0 %s" % (n, where))
        if SAME_WITH_JIT:  # the JIT-loaded shared object must give the very same bytes
            argvj = list(run_argv)
            argvj[argvj.index("--out") + 1] = "outj"
            rc, _, err = run_mlc(argvj + ["--jit"], run_dir)
            if rc != 0:
                raise CaseError("mlc run --jit exited with %d %s" % (rc, where), err)
            for n in produced:
                with open(os.path.join(out_dir, n + ".npy"), "rb") as f2, \
                        open(os.path.join(run_dir, "outj", n + ".npy"), "rb") as fj:
                    if f2.read() != fj.read():
                        raise CaseError("output %s differs between mlc run and mlc run --jit %s" % (n, where))
        # references see the exact values mlc saw
        ref_inputs = {n: t.clone() for n, t in inputs.items()}
        ref_params = {n: t.clone() for n, t in params.items()}
        checked = 0
        if has_ref:
            with torch.no_grad():
                want = mod.reference(ref_params, ref_inputs)
            if not want:
                raise CaseError("reference() returned no outputs")
            missing = sorted(set(want) - set(outputs))
            extra = sorted(set(outputs) - set(want))
            if missing:
                raise CaseError("no output file for %s %s (got %s)" % (missing, where, produced))
            if extra and not has_check:
                raise CaseError("outputs %s are not checked by the reference" % extra)
            for n, t in want.items():
                try:
                    compare(n, outputs[n], t, tol)
                except CaseError as e:
                    raise CaseError("%s %s" % (e, where))
                checked += 1
        if has_check:
            try:
                mod.check(outputs, ref_inputs)
            except AssertionError as e:
                raise CaseError("check failed %s: %s" % (where, e))
            checked += 1
        if not checked:
            raise CaseError("nothing was checked")
    return " ".join("[%s]" % describe(s) for s in shape_sets)


# ---------------------------------------------------------------------------
# Error cases
# ---------------------------------------------------------------------------

def first_param(params, arg):
    p = arg or next(iter(params), None)
    if p is None or p not in params:
        raise CaseError("mutation needs a param, have %s" % list(params))
    return p


def first_input(inputs, arg):
    n = arg or next(iter(inputs), None)
    if n is None or n not in inputs:
        raise CaseError("mutation needs an input, have %s" % list(inputs))
    return n


def header_json_len(data):
    return struct.unpack("<Q", data[:8])[0]


# Each mutation: (state, args) -> None, editing state in place.  state holds
# params {path: tensor}, inputs {name: tensor}, weights_bytes (None = build
# from params), npy {name: raw bytes override}, argv_extra, drop_inputs.
def m_weights_shape(st, args):
    p = first_param(st["params"], args[0] if args else None)
    t = st["params"][p]
    shape = list(t.shape)
    shape[-1] = 7 if shape[-1] != 7 else 5
    st["params"][p] = random_tensor("f32", shape, st["gen"], "param").to(t.dtype)


def m_weights_missing(st, args):
    del st["params"][first_param(st["params"], args[0] if args else None)]


def m_weights_extra(st, args):
    st["params"][args[0] if args else "extra.weight"] = torch.zeros(2, 3)


def m_weights_dtype(st, args):
    p = first_param(st["params"], args[0] if args else None)
    dt = args[1] if len(args) > 1 else "f16"
    st["params"][p] = st["params"][p].to(DTYPES[dt][0])


def m_weights_metadata(st, args):
    st["metadata"] = {"format": "pt"}


def _weights(st):
    return safetensors_bytes(st["params"], st.get("metadata"))


def m_weights_truncate_header(st, args):
    data = _weights(st)
    st["weights_bytes"] = data[:8 + header_json_len(data) // 2]


def m_weights_truncate_data(st, args):
    data = _weights(st)
    st["weights_bytes"] = data[:-5]


def m_weights_header_past_end(st, args):
    data = _weights(st)
    st["weights_bytes"] = struct.pack("<Q", len(data) + 64) + data[8:]


def m_weights_header_huge(st, args):
    data = _weights(st)
    st["weights_bytes"] = struct.pack("<Q", (1 << 64) - 8) + data[8:]


def m_weights_short(st, args):
    st["weights_bytes"] = b"\x10\x00\x00"


def m_weights_empty(st, args):
    st["weights_bytes"] = b""


def m_weights_bad_json(st, args):
    st["weights_bytes"] = safetensors_bytes(st["params"], None,
                                            lambda hb: hb[:-1] + b",")


def m_weights_offsets_past_end(st, args):
    def grow(hb):
        h = json.loads(hb)
        k = sorted(h)[-1]
        h[k]["data_offsets"][1] += 1 << 20
        return json.dumps(h).encode()
    st["weights_bytes"] = safetensors_bytes(st["params"], None, grow)


def m_weights_overlap(st, args):
    """Two tensors of equal size share their bytes: each offset pair is
    consistent with its tensor, but the data regions overlap."""
    def alias(hb):
        h = json.loads(hb)
        size = lambda k: h[k]["data_offsets"][1] - h[k]["data_offsets"][0]
        names = [k for k in sorted(h) if k != "__metadata__"]
        pair = [(a, b) for a in names for b in names if a < b and size(a) == size(b)]
        if not pair:
            raise CaseError("weights:overlap needs two params of the same size")
        a, b = pair[0]
        h[b]["data_offsets"] = list(h[a]["data_offsets"])
        return json.dumps(h).encode()
    st["weights_bytes"] = safetensors_bytes(st["params"], None, alias)


def m_weights_nonexistent(st, args):
    st["weights_path"] = "no_such_file.safetensors"


def m_npy_dtype(st, args):
    n = first_input(st["inputs"], args[0] if args else None)
    dt = args[1] if len(args) > 1 else "f64"
    st["npy"][n] = st["inputs"][n].numpy().astype({"f64": "<f8", "i32": "<i4", "f32": "<f4",
                                                   "i64": "<i8", "u8": "|u1", "f16": "<f2"}[dt])


def m_npy_rank(st, args):
    n = first_input(st["inputs"], args[0] if args else None)
    st["npy"][n] = st["inputs"][n].numpy()[None]


def m_npy_dim(st, args):
    """`npy:dim NAME AXIS`: the dim AXIS one larger (static or symbolic)."""
    n = first_input(st["inputs"], args[0] if args else None)
    axis = int(args[1]) if len(args) > 1 else -1
    a = st["inputs"][n].numpy()
    pad = [(0, 0)] * a.ndim
    pad[axis] = (0, 1)
    st["npy"][n] = np.pad(a, pad)


def m_npy_fortran(st, args):
    n = first_input(st["inputs"], args[0] if args else None)
    a = np.asfortranarray(st["inputs"][n].numpy())
    if a.flags.c_contiguous:
        raise CaseError("npy:fortran needs an input with two dims > 1")
    st["npy_raw_array"][n] = a


def m_npy_bigendian(st, args):
    n = first_input(st["inputs"], args[0] if args else None)
    a = st["inputs"][n].numpy()
    st["npy_raw_array"][n] = a.astype(a.dtype.newbyteorder(">"))


def m_npy_truncate(st, args):
    n = first_input(st["inputs"], args[0] if args else None)
    st["npy_cut"][n] = 3


def m_npy_nonexistent(st, args):
    n = first_input(st["inputs"], args[0] if args else None)
    st["npy_path"][n] = "in/no_such_file.npy"


def m_args_drop_input(st, args):
    st["drop_inputs"].add(first_input(st["inputs"], args[0] if args else None))


def m_args_extra(st, args):
    st["argv_extra"] += args


def m_args_no_weights(st, args):
    st["weights_path"] = None


MUTATIONS = {
    "weights:wrong_shape": m_weights_shape,        # [PARAM] last dim changed to 7
    "weights:missing_tensor": m_weights_missing,   # [PARAM]
    "weights:extra_tensor": m_weights_extra,       # [NAME]
    "weights:wrong_dtype": m_weights_dtype,        # [PARAM [DTYPE]]
    "weights:metadata": m_weights_metadata,        # adds __metadata__ (valid!)
    "weights:truncate_header": m_weights_truncate_header,
    "weights:truncate_data": m_weights_truncate_data,
    "weights:header_past_end": m_weights_header_past_end,
    "weights:header_huge": m_weights_header_huge,
    "weights:short": m_weights_short,              # 3 bytes
    "weights:empty": m_weights_empty,
    "weights:bad_json": m_weights_bad_json,
    "weights:offsets_past_end": m_weights_offsets_past_end,
    "weights:overlap": m_weights_overlap,
    "weights:nonexistent": m_weights_nonexistent,
    "npy:dtype": m_npy_dtype,                      # [NAME [DTYPE]], default f64
    "npy:rank": m_npy_rank,                        # [NAME]: a leading 1 added
    "npy:dim": m_npy_dim,                          # [NAME [AXIS]]: that dim + 1
    "npy:fortran": m_npy_fortran,                  # [NAME]
    "npy:bigendian": m_npy_bigendian,              # [NAME]
    "npy:truncate": m_npy_truncate,                # [NAME]: last 3 bytes cut
    "npy:nonexistent": m_npy_nonexistent,          # [NAME]
    "args:drop_input": m_args_drop_input,          # [NAME]: no --input for it
    "args:extra": m_args_extra,                    # ARGS...: appended to argv
    "args:no_weights": m_args_no_weights,          # no --weights
}


def parse_expect(path):
    lines = [l.rstrip("\n") for l in open(path)]
    lines = [l for l in lines if l.strip() and not l.lstrip().startswith("#")]
    if not lines or not re.fullmatch(r"\d+(\|\d+)*", lines[0].strip()):
        raise CaseError("first line of the .expect must be the exit status (or 1|2)")
    exp = {"status": [int(x) for x in lines[0].split("|")], "cmd": ["run"], "mdl": None,
           "mutations": [], "regexes": []}
    for l in lines[1:]:
        if l.startswith("cmd "):
            exp["cmd"] = l[4:].split()
        elif l.startswith("mdl "):
            exp["mdl"] = l[4:].strip()
        elif l.startswith("mutate "):
            words = l[7:].split()
            if words[0] not in MUTATIONS:
                raise CaseError("unknown mutation %s" % words[0])
            exp["mutations"].append((words[0], words[1:]))
        else:
            exp["regexes"].append(l)
    return exp


def run_error_case(name, mlc, workdir):
    exp = parse_expect(os.path.join(ERRORS, name + ".expect"))
    mdl = os.path.join(ERRORS, exp["mdl"] or name + ".mdl")
    if exp["status"] != [0] and not exp["regexes"]:
        raise CaseError("the .expect file has no regex for stderr")
    if exp["cmd"][0] == "check":
        argv = [mlc, "check", mdl]
    elif exp["cmd"][0] == "raw":  # cmd raw ARGS...: {mdl} stands for the model path
        argv = [mlc] + [a.replace("{mdl}", mdl) for a in exp["cmd"][1:]]
    else:
        try:
            body = model_body(open(mdl).read())
            decls, in_decls = parse_params(body), parse_inputs(body)
        except (CaseError, OSError):
            decls, in_decls = {}, {}  # a model too broken to read: no files
        gen = torch.Generator().manual_seed(99)
        st = {"gen": gen,
              "params": {p: random_tensor(dt, s, gen, "param") for p, (dt, s) in decls.items()},
              "inputs": {n: random_tensor(dt, s, gen) for n, (dt, s) in in_decls.items()},
              "weights_bytes": None, "weights_path": "weights.safetensors" if decls else None,
              "npy": {}, "npy_raw_array": {}, "npy_cut": {}, "npy_path": {},
              "argv_extra": [], "drop_inputs": set()}
        for kind, args in exp["mutations"]:
            MUTATIONS[kind](st, args)
        argv = [mlc, "run", mdl]
        if st["weights_path"]:
            data = st["weights_bytes"]
            if data is None:
                data = safetensors_bytes(st["params"], st.get("metadata"))
            if st["weights_path"] == "weights.safetensors":
                with open(os.path.join(workdir, st["weights_path"]), "wb") as f:
                    f.write(data)
            argv += ["--weights", st["weights_path"]]
        os.makedirs(os.path.join(workdir, "in"), exist_ok=True)
        for n, t in st["inputs"].items():
            path = os.path.join(workdir, "in", n + ".npy")
            if n in st["npy_raw_array"]:
                np.save(path, st["npy_raw_array"][n])  # keeps fortran order / byte order
            else:
                save_npy(path, st["npy"].get(n, t))
            if n in st["npy_cut"]:
                raw = open(path, "rb").read()
                open(path, "wb").write(raw[:-st["npy_cut"][n]])
            if n not in st["drop_inputs"]:
                argv += ["--input", "%s=%s" % (n, st["npy_path"].get(n, "in/%s.npy" % n))]
        argv += ["--out", "out"] + st["argv_extra"] + EXTRA_ARGS
    rc, _, err = run_mlc(argv, workdir)
    if rc not in exp["status"]:
        raise CaseError("exit status %d, want %s" % (rc, " or ".join(map(str, exp["status"]))), err)
    for rx in exp["regexes"]:
        if not re.search(rx, err, re.M):
            raise CaseError("stderr does not match /%s/" % rx, err)
    if rc == 0 and exp["cmd"] == ["run"]:
        out_dir = os.path.join(workdir, "out")
        if not os.path.isdir(out_dir) or not any(f.endswith(".npy") for f in os.listdir(out_dir)):
            raise CaseError("exit status 0 but no output .npy written", err)
    return "[exit %d]" % rc


# ---------------------------------------------------------------------------
# C API cases: api/NAME.mdl compiled with `mlc -o`, api/NAME.c linked against
# it and libmlcrt, with each C compiler found; the program prints
# "N checks passed" and exits 0.
# ---------------------------------------------------------------------------

MLCRT_LIB = None  # --mlcrt, default: libmlcrt.a next to the mlc binary
COMPILERS = ["gcc", "clang"]  # --cc; those not installed are left out


def run_api_case(name, mlc, workdir):
    gen = os.path.join(workdir, "gen")
    os.makedirs(gen)
    rc, _, err = run_mlc([mlc, os.path.join(API, name + ".mdl"), "-o", os.path.join(gen, name + ".c")], workdir)
    if rc != 0:
        raise CaseError("mlc -o exited with %d" % rc, err)
    for ext in (".c", ".h"):
        if not os.path.isfile(os.path.join(gen, name + ext)):
            raise CaseError("mlc -o did not write %s%s" % (name, ext))
    lib = MLCRT_LIB or os.path.join(os.path.dirname(mlc), "libmlcrt.a")
    compilers = [c for c in COMPILERS if shutil.which(c)] or ["cc"]
    flags = ["-std=c11", "-O1", "-g", "-Wall", "-Wextra", "-Werror"]
    if "MLC_CFLAGS" in ENV:
        flags += ENV["MLC_CFLAGS"].split()
    done = []
    for cc in compilers:
        exe = os.path.join(workdir, "test_" + cc)
        p = subprocess.run([cc, *flags, "-I", gen, "-I", os.path.join(REPO, "runtime"),
                            os.path.join(gen, name + ".c"), os.path.join(API, name + ".c"),
                            lib, "-lm", "-lpthread", "-o", exe],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT)
        if p.returncode:
            raise CaseError("%s could not build the generated code with %s" % (cc, " ".join(flags)),
                            p.stdout.decode(errors="replace"))
        rc, out, err = run_mlc([exe], workdir)
        if rc != 0 or not re.search(r"^\d+ checks passed$", out, re.M):
            raise CaseError("%s: exit status %d" % (cc, rc), out + err)
        done.append("%s: %s" % (cc, out.strip().splitlines()[-1]))
    return "[%s]" % "; ".join(done)


# ---------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------

def discover(filt):
    cases = []
    for f in sorted(os.listdir(CASES)):
        if f.endswith(".py"):
            cases.append(("case", f[:-3]))
        elif f.endswith(".mdl") and not os.path.exists(os.path.join(CASES, f[:-4] + ".py")):
            cases.append(("orphan", f[:-4]))
    for f in sorted(os.listdir(ERRORS)):
        if f.endswith(".expect"):
            cases.append(("error", f[:-7]))
    for f in sorted(os.listdir(API)):
        if f.endswith(".c"):
            cases.append(("api", f[:-2]))
    label = lambda kind, n: {"error": "errors/", "api": "api/"}.get(kind, "") + n
    return [(k, n, label(k, n)) for k, n in cases if not filt or filt in label(k, n)]


def run_one(kind, name, label, mlc, keep, out):
    workdir = os.path.join(out, label.replace("/", "_"))
    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(workdir)
    try:
        if kind == "orphan":
            raise CaseError("%s.mdl has no %s.py reference" % (name, name))
        run = {"error": run_error_case, "api": run_api_case}.get(kind, run_model_case)
        info = run(name, mlc, workdir)
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
        return "PASS", "PASS %s %s" % (label, info), ""
    except Skip as e:
        shutil.rmtree(workdir, ignore_errors=True)
        return "SKIP", "SKIP %s: %s" % (label, e), ""
    except CaseError as e:
        return "FAIL", "FAIL %s: %s" % (label, e), e.detail
    except Exception:
        return "FAIL", "FAIL %s: runner error" % label, traceback.format_exc()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mlc", help="path to the mlc binary")
    ap.add_argument("--references-only", action="store_true",
                    help="no mlc: only run each case's reference on generated inputs")
    ap.add_argument("--filter", default="", help="run only cases whose name contains this")
    ap.add_argument("--keep", action="store_true", help="keep work dirs of passing cases")
    ap.add_argument("-j", "--jobs", type=int, default=2)
    ap.add_argument("--mlc-args", default="",
                    help="extra arguments for every model case's `mlc run`, e.g. -O0")
    ap.add_argument("--same-with-jit", action="store_true",
                    help="also run each case with mlc run --jit and require bit-identical outputs")
    ap.add_argument("--same-at-O0", action="store_true",
                    help="also run each model case at -O0 and require bit-identical outputs")
    ap.add_argument("--sanitize", action="store_true",
                    help="build the generated programs with ASan+UBSan (via MLC_CFLAGS)")
    ap.add_argument("--cc", default="gcc,clang",
                    help="C compilers for the api/ cases, comma-separated (default gcc,clang)")
    ap.add_argument("--mlcrt", help="libmlcrt.a for the api/ cases (default: next to --mlc)")
    ap.add_argument("--workdir", default=OUT,
                    help="where the cases' work dirs go (default tests/e2e/out; give runs "
                         "that may overlap, like CTest's, their own)")
    args = ap.parse_args()
    torch.set_num_threads(1)  # the workers and mlc share the cores
    EXTRA_ARGS.extend(args.mlc_args.split())
    global SAME_AT_O0
    SAME_AT_O0 = args.same_at_O0
    global SAME_WITH_JIT
    SAME_WITH_JIT = args.same_with_jit
    global MLCRT_LIB
    MLCRT_LIB = args.mlcrt and os.path.abspath(args.mlcrt)
    COMPILERS[:] = args.cc.split(",")
    if args.sanitize:
        ENV["MLC_CFLAGS"] = (ENV.get("MLC_CFLAGS", "") +
                             " -fsanitize=address,undefined -fno-sanitize-recover=undefined"
                             " -fno-omit-frame-pointer -g").strip()
        ENV.setdefault("ASAN_OPTIONS", "detect_leaks=0")  # leaks at exit are not crashes
    if args.references_only:
        mlc = None
    elif not args.mlc:
        ap.error("--mlc is required (or --references-only)")
    else:
        mlc = os.path.abspath(args.mlc)
        if not os.access(mlc, os.X_OK):
            print("run_e2e.py: %s: not an executable" % mlc, file=sys.stderr)
            return 2
    cases = discover(args.filter)
    if mlc is None:
        cases = [c for c in cases if c[0] == "case"]
    counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}
    lock = threading.Lock()
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futs = [pool.submit(run_one, k, n, l, mlc, args.keep, os.path.abspath(args.workdir)) for k, n, l in cases]
        for fut in concurrent.futures.as_completed(futs):
            status, line, detail = fut.result()
            with lock:
                counts[status] += 1
                print(line, flush=True)
                if detail:
                    print("    " + tail(detail).replace("\n", "\n    "), flush=True)
    summary = "%d passed, %d failed" % (counts["PASS"], counts["FAIL"])
    if counts["SKIP"]:
        summary += ", %d skipped" % counts["SKIP"]
    print(summary)
    return 1 if counts["FAIL"] or not cases else 0


if __name__ == "__main__":
    sys.exit(main())
