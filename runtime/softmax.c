/* softmax.c — softmax and log_softmax over the middle dim of [outer, n, inner]
 * (any `dim` of a contiguous tensor reduces to this view).
 *
 * Numerically stable: the row maximum is subtracted before exp, and the sum
 * of exponentials is accumulated in double.  log_softmax is computed as
 * x - max - log(sum), never as log(softmax), so it stays finite and accurate
 * for very negative logits.  When inner > 1 the positions along inner are
 * processed in tiles of TILE, so every inner loop runs over contiguous memory
 * (no allocation: the per-tile max and sum live on the stack).  A row holding
 * NaN yields NaN, and a row of all -inf yields NaN, as in PyTorch.
 * mlcrt_sum_f32, the row sum that generated reductions call, lives here too.
 */
#include "mlcrt.h"

#include <math.h>

#define TILE 64

void mlcrt_softmax_f32(const float *x, int64_t outer, int64_t n, int64_t inner, int take_log,
                       float *y) {
  if (n <= 0 || inner <= 0) return;
  for (int64_t o = 0; o < outer; o++) {
    const float *xo = x + o * n * inner;
    float *yo = y + o * n * inner;
    for (int64_t j0 = 0; j0 < inner; j0 += TILE) {
      const int64_t nt = inner - j0 < TILE ? inner - j0 : TILE;
      float mx[TILE];
      double sum[TILE];
      for (int64_t t = 0; t < nt; t++) {
        mx[t] = -INFINITY;
        sum[t] = 0.0;
      }
      for (int64_t k = 0; k < n; k++) {
        const float *xr = xo + k * inner + j0;
        for (int64_t t = 0; t < nt; t++) mx[t] = xr[t] > mx[t] ? xr[t] : mx[t];
      }
      for (int64_t k = 0; k < n; k++) {
        const float *xr = xo + k * inner + j0;
        float *yr = yo + k * inner + j0;
        for (int64_t t = 0; t < nt; t++) {
          const float e = expf(xr[t] - mx[t]);
          sum[t] += e;
          if (!take_log) yr[t] = e; /* x and y may alias: only written after read */
        }
      }
      /* softmax: y = e * (1/sum).  log_softmax: y = (x - max) - log(sum),
       * in that order, so large maxima do not cost precision. */
      float ls[TILE];
      for (int64_t t = 0; t < nt; t++)
        ls[t] = take_log ? (float)log(sum[t]) : (float)(1.0 / sum[t]);
      for (int64_t k = 0; k < n; k++) {
        const float *xr = xo + k * inner + j0;
        float *yr = yo + k * inner + j0;
        if (take_log)
          for (int64_t t = 0; t < nt; t++) yr[t] = (xr[t] - mx[t]) - ls[t];
        else
          for (int64_t t = 0; t < nt; t++) yr[t] *= ls[t];
      }
    }
  }
}

double mlcrt_sum_f32(const float *x, int64_t n) {
  double a[4] = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int q = 0; q < 4; q++) a[q] += x[i + q];
  for (; i < n; i++) a[i & 3] += x[i];
  return (a[0] + a[1]) + (a[2] + a[3]);
}
