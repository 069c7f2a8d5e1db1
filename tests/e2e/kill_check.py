#!/usr/bin/python3
"""tests/e2e/kill_check.py — fault test for `mlc train` checkpoints (issue 11).

    /usr/bin/python3 tests/e2e/kill_check.py --mlc build/mlc [--reps N] [--seed S] [--keep]

Trains a small model whose checkpoint (weights + Adam state, 12 MiB, plus
4 MiB of weights per epoch) is large next to its per-epoch compute, so much
of the run is spent writing files.  Once straight through (the reference),
then N times: start `mlc train` with a checkpoint per epoch, SIGKILL its
whole process group (mlc and the generated trainer), and check:

  - the checkpoint file, if there is one, is a complete, valid safetensors
    file (header, offsets, sizes) holding exactly the reference checkpoint's
    tensors, and its optimizer.step is a whole number of epochs;
  - `mlc train --resume` from it finishes, and its final weights and final
    checkpoint are bit-identical to the straight run's;
  - killed before the first checkpoint: there is no checkpoint file (a torn
    PATH.tmp may be left; it must not be mistaken for one).

The kill moments alternate: odd repetitions at a uniformly random time of
the run (start-up included); even ones aimed at a write: at a random time
after the first epoch, wait for a PATH.tmp to appear, then kill within 20 ms.
A PATH.tmp left behind shows that the kill interrupted a write; the summary
counts those.

Prints one line per repetition and a summary; exit status 1 on any failure.
ctest runs it with a small N (KILL_REPS, default 10).
"""
import argparse
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
EPOCHS, BATCH, N = 12, 32, 64  # 2 steps per epoch
# An embedding table holds most of the parameters: a big checkpoint for
# little compute (also under ASan, where the runtime is built without
# optimisation).
MODEL = """
model killme {
  input  x: i64[B]
  param  emb.weight: f32[16384, 64] = normal
  param  fc.weight:  f32[10, 64]    = kaiming_uniform
  param  fc.bias:    f32[10]        = zeros
  output logits = linear(relu(embedding(x, emb.weight)), fc.weight, fc.bias)
}
train killme {
  input  y: i64[B]
  loss   = cross_entropy(logits, y)
  optimizer = adam(lr=0.001)
}
"""
DTSIZE = {"F32": 4, "F16": 2, "BF16": 2, "I32": 4, "I64": 8, "U8": 1, "BOOL": 1}


class Fail(Exception):
    pass


def check_safetensors(path):
    """Validates the whole file; returns ({name: (dtype, shape, bytes)}, metadata)."""
    data = open(path, "rb").read()
    if len(data) < 8:
        raise Fail("%s: %d bytes, not a safetensors file" % (path, len(data)))
    n = struct.unpack("<Q", data[:8])[0]
    if 8 + n > len(data):
        raise Fail("%s: header length %d past the end of the file (%d bytes)" % (path, n, len(data)))
    try:
        header = json.loads(data[8:8 + n])
    except ValueError as e:
        raise Fail("%s: bad JSON header: %s" % (path, e))
    meta = header.pop("__metadata__", None)
    body = data[8 + n:]
    spans, out = [], {}
    for name, e in header.items():
        a, b = e["data_offsets"]
        want = DTSIZE[e["dtype"]] * int(np.prod(e["shape"], dtype=np.int64))
        if not (0 <= a <= b <= len(body)) or b - a != want:
            raise Fail("%s: tensor %s: offsets %r do not fit (data %d bytes, want %d)" % (path, name, (a, b), len(body), want))
        spans.append((a, b))
        out[name] = (e["dtype"], tuple(e["shape"]), body[a:b])
    spans.sort()
    pos = 0
    for a, b in spans:
        if a != pos:
            raise Fail("%s: data not contiguous at byte %d" % (path, a))
        pos = b
    if pos != len(body):
        raise Fail("%s: %d bytes after the last tensor" % (path, len(body) - pos))
    return out, meta


def train(mlc, wd, env, *extra, timeout=600):
    argv = [mlc, "train", "killme.mdl", "--data", "x=x.npy", "--data", "y=y.npy", "--epochs", str(EPOCHS),
            "--batch", str(BATCH), "--shuffle", "--seed", "3"] + list(extra)
    p = subprocess.run(argv, cwd=wd, env=env, capture_output=True, timeout=timeout)
    if p.returncode != 0:
        raise Fail("%s: exit status %d\n%s" % (" ".join(argv[1:]), p.returncode, p.stderr.decode(errors="replace")[-2000:]))
    return p


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def one_rep(mlc, wd, env, rng, aim, first, duration, ref_ckpt, ref_weights):
    for f in os.listdir(wd):
        if f.startswith("cut"):
            os.remove(os.path.join(wd, f))
    argv = [mlc, "train", "killme.mdl", "--data", "x=x.npy", "--data", "y=y.npy", "--epochs", str(EPOCHS),
            "--batch", str(BATCH), "--shuffle", "--seed", "3", "--save", "cut.safetensors",
            "--checkpoint", "cut.ckpt.safetensors"]
    p = subprocess.Popen(argv, cwd=wd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    t0 = time.time()
    tmps = [os.path.join(wd, "cut.ckpt.safetensors.tmp"), os.path.join(wd, "cut.safetensors.tmp")]
    if aim:  # at a write: some time after the first epoch, the next PATH.tmp
        time.sleep(rng.uniform(first, first + 0.85 * (duration - first)))
        while p.poll() is None and not any(os.path.exists(t) for t in tmps):
            time.sleep(0.0002)
        time.sleep(rng.uniform(0, 0.02))
    else:
        time.sleep(rng.uniform(0, duration))
    delay = time.time() - t0
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait()
    for _ in range(400):  # the generated trainer is in the same group
        if not group_alive(p.pid):
            break
        time.sleep(0.01)
    torn = [os.path.basename(t) for t in tmps if os.path.exists(t)]
    how = "killed at %.2fs%s" % (delay, " during a write (%s left)" % torn[0] if torn else "")
    ck = os.path.join(wd, "cut.ckpt.safetensors")
    if not os.path.exists(ck):
        if os.path.exists(os.path.join(wd, "cut.safetensors")):
            raise Fail("weights were saved but no checkpoint")
        return how + ": before the first checkpoint"
    got, _ = check_safetensors(ck)
    if sorted(got) != sorted(ref_ckpt):
        raise Fail("checkpoint tensors %s, want %s" % (sorted(got), sorted(ref_ckpt)))
    for name, (dt, shape, _) in got.items():
        if (dt, shape) != ref_ckpt[name][:2]:
            raise Fail("checkpoint tensor %s is %s%s, want %s%s" % (name, dt, shape, *ref_ckpt[name][:2]))
    step = struct.unpack("<q", got["optimizer.step"][2])[0]
    steps_per_epoch = (N + BATCH - 1) // BATCH
    if step <= 0 or step % steps_per_epoch or step > EPOCHS * steps_per_epoch:
        raise Fail("checkpoint optimizer.step %d is not a whole number of epochs" % step)
    train(mlc, wd, env, "--save", "cut.safetensors", "--checkpoint", "cut.ckpt.safetensors", "--resume",
          "cut.ckpt.safetensors")
    cut = os.path.join(wd, "cut.safetensors")
    if not os.path.exists(cut) or open(cut, "rb").read() != ref_weights:
        raise Fail("resumed from epoch %d: final weights differ from the straight run" % (step // steps_per_epoch))
    if open(ck, "rb").read() != open(os.path.join(wd, "ref.ckpt.safetensors"), "rb").read():
        raise Fail("resumed from epoch %d: final checkpoint differs from the straight run" % (step // steps_per_epoch))
    return how + ": checkpoint of epoch %d valid, resumed to the same weights" % (step // steps_per_epoch)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mlc", required=True)
    ap.add_argument("--reps", type=int, default=int(os.environ.get("KILL_REPS", "10")))
    ap.add_argument("--seed", type=int, default=None, help="seed of the kill times (default: random, printed)")
    ap.add_argument("--workdir", default=os.path.join(HERE, "out", "kill"))
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    mlc = os.path.abspath(args.mlc)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)
    rng = random.Random(seed)
    wd = args.workdir
    shutil.rmtree(wd, ignore_errors=True)
    os.makedirs(wd)
    env = dict(os.environ)
    with open(os.path.join(wd, "killme.mdl"), "w") as f:
        f.write(MODEL)
    g = np.random.default_rng(5)
    np.save(os.path.join(wd, "x.npy"), g.integers(0, 16384, N).astype(np.int64))
    np.save(os.path.join(wd, "y.npy"), g.integers(0, 10, N).astype(np.int64))
    train(mlc, wd, env, "--epochs", "1")  # builds (or finds in the cache) the trainer
    t0 = time.time()
    p = subprocess.Popen([mlc, "train", "killme.mdl", "--data", "x=x.npy", "--data", "y=y.npy", "--epochs",
                          str(EPOCHS), "--batch", str(BATCH), "--shuffle", "--seed", "3", "--save", "ref.safetensors",
                          "--checkpoint", "ref.ckpt.safetensors"], cwd=wd, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    while p.poll() is None and not os.path.exists(os.path.join(wd, "ref.ckpt.safetensors")):
        time.sleep(0.001)
    first = time.time() - t0
    _, err = p.communicate()
    duration = time.time() - t0
    if p.returncode:
        print("FAIL: the straight run failed:\n" + err.decode(errors="replace"))
        return 1
    ref_ckpt, _ = check_safetensors(os.path.join(wd, "ref.ckpt.safetensors"))
    ref_weights = open(os.path.join(wd, "ref.safetensors"), "rb").read()
    # the narrowest window, forced: killed after the last checkpoint but before
    # the last weights were written; resuming must still write them
    shutil.copy(os.path.join(wd, "ref.ckpt.safetensors"), os.path.join(wd, "last.ckpt.safetensors"))
    train(mlc, wd, env, "--save", "last.safetensors", "--checkpoint", "last.ckpt.safetensors", "--resume",
          "last.ckpt.safetensors")
    last = os.path.join(wd, "last.safetensors")
    if not os.path.exists(last) or open(last, "rb").read() != ref_weights:
        print("FAIL: resuming the last epoch's checkpoint did not write the final weights")
        return 1
    print("straight run: %d epochs in %.2fs, first checkpoint at %.2fs; %d repetitions (--seed %d)"
          % (EPOCHS, duration, first, args.reps, seed), flush=True)
    failed, early, torn = 0, 0, 0
    for r in range(args.reps):
        try:
            msg = one_rep(mlc, wd, env, rng, r % 2 == 1, first, duration, ref_ckpt, ref_weights)
            early += "before the first" in msg
            torn += "during a write" in msg
            print("PASS %d: %s" % (r + 1, msg), flush=True)
        except (Fail, subprocess.TimeoutExpired) as e:
            failed += 1
            print("FAIL %d: %s" % (r + 1, e), flush=True)
    print("%d repetitions: %d passed, %d failed (%d kills interrupted a write, %d came before the first checkpoint)"
          % (args.reps, args.reps - failed, failed, torn, early))
    if not failed and not args.keep:
        shutil.rmtree(wd, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
