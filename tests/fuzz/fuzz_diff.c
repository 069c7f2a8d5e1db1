/* tests/fuzz/fuzz_diff.c — differential: the same model (diff_model.mdl.in)
 * compiled at -O0 (every value in its own buffer) and at -O2 (buffers planned
 * and reused), run on fuzzed sizes and values.  Outputs, losses and the
 * outputs after two train steps must be bit-identical: a planning bug (two
 * live values sharing bytes, a buffer too small for some B and T) shows up as
 * a difference or as an ASan report.  Fusion is not implemented yet, so this
 * compares the planners, not fused against unfused kernels.
 *
 * Input: byte 0 picks B (1..4), byte 1 T (1..6), byte 2 the init seed; the
 * rest are the values of x and t, one signed byte each, scaled by 1/16
 * (missing bytes are 0). */
#include "fuzz.h"
#include "diff_o0.h"
#include "diff_o2.h"
#include <string.h>

enum { MAXB = 4, MAXT = 6, D = 8, N = MAXB * MAXT * D };

static diff_o0 *m0;
static diff_o2 *m2;

static void fail(const char *what, int64_t B, int64_t T) {
  fprintf(stderr, "fuzz_diff: -O0 and -O2 differ in %s (B=%lld, T=%lld)\n", what, (long long)B, (long long)T);
  abort();
}

static void same(const void *a, const void *b, size_t n, const char *what, int64_t B, int64_t T) {
  if (memcmp(a, b, n)) fail(what, B, T);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!m0) {
    m0 = diff_o0_create(MAXB, MAXT, NULL);
    m2 = diff_o2_create(MAXB, MAXT, NULL);
    if (!m0 || !m2) abort();
  }
  int64_t B = 1 + (size > 0 ? data[0] % MAXB : 0), T = 1 + (size > 1 ? data[1] % MAXT : 0);
  uint64_t seed = size > 2 ? data[2] : 0;
  static float x[N], t[N], y0[N], y2[N], s0[MAXB * 16], s2[MAXB * 16];
  size_t n = (size_t)(B * T * D);
  for (size_t i = 0; i < n; i++) {
    x[i] = 3 + i < size ? (int8_t)data[3 + i] / 16.0f : 0;
    t[i] = 3 + n + i < size ? (int8_t)data[3 + n + i] / 16.0f : 0;
  }
  if (diff_o0_init(m0, seed) || diff_o2_init(m2, seed)) abort();
  int r0 = diff_o0_run(m0, B, T, x, y0, s0), r2 = diff_o2_run(m2, B, T, x, y2, s2);
  if (r0 != r2) fail("the run status", B, T);
  same(y0, y2, n * sizeof *y0, "run output y", B, T);
  same(s0, s2, (size_t)B * 16 * sizeof *s0, "run output s", B, T);
  for (int step = 0; step < 2; step++) {
    float l0, l2;
    r0 = diff_o0_train_step(m0, B, T, x, t, &l0);
    r2 = diff_o2_train_step(m2, B, T, x, t, &l2);
    if (r0 != r2) fail("the train step status", B, T);
    same(&l0, &l2, sizeof l0, "the train loss", B, T);
  }
  float e0, e2;
  r0 = diff_o0_evaluate(m0, B, T, x, t, &e0, y0, s0);
  r2 = diff_o2_evaluate(m2, B, T, x, t, &e2, y2, s2);
  if (r0 != r2) fail("the evaluate status", B, T);
  same(&e0, &e2, sizeof e0, "the evaluate loss (the weights after training)", B, T);
  same(y0, y2, n * sizeof *y0, "evaluate output y", B, T);
  same(s0, s2, (size_t)B * 16 * sizeof *s0, "evaluate output s", B, T);
  return 0;
}
