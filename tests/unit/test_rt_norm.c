/* test_rt_norm.c — layer_norm, rms_norm and batch_norm (runtime/norm.c) against a
 * double-precision reference for row lengths around the 8-lane sums, with
 * and without weight and bias, and the same bits with 1, 2 and 3 threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <math.h>

#include "mlcrt.h"
#include "rt_teams.h"

static void check(int64_t rows, int64_t M, int affine, int rms) {
  uint32_t seed = 9;
  const int64_t n = rows * M;
  float *x = malloc(sizeof(float) * (size_t)n), *y = malloc(sizeof(float) * (size_t)n);
  float *y1 = malloc(sizeof(float) * (size_t)n);
  float *w = malloc(sizeof(float) * (size_t)M), *b = malloc(sizeof(float) * (size_t)M);
  for (int64_t i = 0; i < n; i++) x[i] = 3.0f + 2 * frand(&seed); /* an offset mean */
  for (int64_t i = 0; i < M; i++) w[i] = 1 + frand(&seed), b[i] = frand(&seed);
  for (int t = 1; t <= 3; t++) {
    mlcrt_team *team = teams[mlcrt_cpu_isa()][t];
    mlcrt_layer_norm_f32(team, x, rows, M, affine ? w : NULL, affine && !rms ? b : NULL, 1e-5f, rms,
                         y);
    for (int64_t r = 0; r < rows; r++) {
      double mu = 0, var = 0;
      for (int64_t i = 0; i < M; i++) mu += x[r * M + i];
      mu = rms ? 0 : mu / (double)M;
      for (int64_t i = 0; i < M; i++) var += (x[r * M + i] - mu) * (x[r * M + i] - mu);
      const double rstd = 1 / sqrt(var / (double)M + 1e-5);
      for (int64_t i = 0; i < M; i++) {
        double want = (x[r * M + i] - mu) * rstd;
        if (affine) want = want * w[i] + (rms ? 0 : b[i]);
        if (!(fabs(y[r * M + i] - want) <= 1e-5 + 1e-5 * fabs(want)))
          fail_msg("rows %lld M %lld rms %d, %d threads: y[%lld][%lld] = %.9g, want %.9g",
                   (long long)rows, (long long)M, rms, t, (long long)r, (long long)i,
                   (double)y[r * M + i], want);
      }
    }
    if (t == 1)
      memcpy(y1, y, sizeof(float) * (size_t)n);
    else
      assert_memory_equal(y, y1, sizeof(float) * (size_t)n);
  }
  free(x), free(y), free(y1), free(w), free(b);
}

static void test_layer_norm(void **state) {
  (void)state;
  static const int64_t Ms[] = {1, 7, 8, 9, 768, 1001};
  for (size_t k = 0; k < sizeof Ms / sizeof Ms[0]; k++)
    for (int rms = 0; rms < 2; rms++) {
      check(3, Ms[k], 1, rms);
      check(300, Ms[k], rms, rms); /* enough elements to split over threads */
    }
}

/* batch_norm with running statistics: per channel a = w / sqrt(var + eps),
 * y = x * a + (b - mean * a), images split over the team */
static void test_batch_norm(void **state) {
  (void)state;
  const int64_t N = 9, C = 13, inner = 700, n = N * C * inner;
  uint32_t seed = 4;
  float *x = malloc(sizeof(float) * (size_t)n), *y = malloc(sizeof(float) * (size_t)n);
  float *y1 = malloc(sizeof(float) * (size_t)n), st[4][13];
  for (int64_t i = 0; i < n; i++) x[i] = 4 * frand(&seed);
  for (int k = 0; k < 4; k++)
    for (int c = 0; c < C; c++)
      st[k][c] = k == 1 ? 0.5f + frand(&seed) : frand(&seed); /* var > 0 */
  for (int t = 1; t <= 3; t++) {
    mlcrt_team *team = teams[mlcrt_cpu_isa()][t];
    mlcrt_batch_norm_f32(team, x, N, C, inner, st[0], st[1], st[2], st[3], 1e-5f, y);
    for (int64_t i = 0; i < n; i++) {
      const int64_t c = i / inner % C;
      const double want = (x[i] - st[0][c]) / sqrt(st[1][c] + 1e-5) * st[2][c] + st[3][c];
      if (!(fabs(y[i] - want) <= 1e-5 + 1e-5 * fabs(want)))
        fail_msg("%d threads: y[%lld] = %.9g, want %.9g", t, (long long)i, (double)y[i], want);
    }
    if (t == 1)
      memcpy(y1, y, sizeof(float) * (size_t)n);
    else
      assert_memory_equal(y, y1, sizeof(float) * (size_t)n);
  }
  free(x), free(y), free(y1);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_layer_norm),
                                     cmocka_unit_test(test_batch_norm)};
  return cmocka_run_group_tests(tests, setup, teardown);
}
