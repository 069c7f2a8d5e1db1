/* norm.c — normalisation layers, as torch.nn.functional (inference form).
 *
 *   batch_norm  running statistics: y = x * a[c] + b'[c] with
 *               a = weight / sqrt(var + eps), b' = bias - mean * a, computed
 *               per channel in float exactly as PyTorch's CPU kernel does.
 *   layer_norm  per row of M = numel(weight) trailing elements: mean and
 *               biased variance (two passes, in double), y = (x - mean) *
 *               rstd * w + b with rstd = 1 / sqrt(var + eps).
 *   rms_norm    per row: y = x * rsqrt(mean(x^2) + eps) * w.
 *   group_norm  per (image, group) of C/G channels times the spatial size:
 *               layer_norm's statistics, then a per-channel affine.
 * Weight and bias may be NULL (PyTorch's None).  x and y may not alias.
 * A row of length 0 writes nothing; NaN and inf propagate as in PyTorch.
 */
#include "mlcrt.h"

#include <math.h>

void mlcrt_batch_norm_f32(const float *x, int64_t N, int64_t C, int64_t inner, const float *mean,
                          const float *var, const float *w, const float *b, float eps, float *y) {
  for (int64_t c = 0; c < C; c++) {
    const float invstd = 1.0f / sqrtf(var[c] + eps);
    const float a = w ? w[c] * invstd : invstd;
    const float sh = (b ? b[c] : 0.0f) - mean[c] * a;
    for (int64_t n = 0; n < N; n++) {
      const float *xp = x + (n * C + c) * inner;
      float *yp = y + (n * C + c) * inner;
      for (int64_t i = 0; i < inner; i++) yp[i] = xp[i] * a + sh;
    }
  }
}

/* mean and 1/sqrt(var + eps) of x[0..M) (var biased); rms: of x^2 only. */
static void moments(const float *x, int64_t M, float eps, int rms, float *mean, float *rstd) {
  double s = 0.0;
  if (rms) {
    for (int64_t i = 0; i < M; i++) s += (double)x[i] * (double)x[i];
    *mean = 0.0f;
    *rstd = (float)(1.0 / sqrt(s / (double)M + (double)eps));
    return;
  }
  for (int64_t i = 0; i < M; i++) s += x[i];
  const double mu = s / (double)M;
  double v = 0.0;
  for (int64_t i = 0; i < M; i++) {
    const double d = (double)x[i] - mu;
    v += d * d;
  }
  *mean = (float)mu;
  *rstd = (float)(1.0 / sqrt(v / (double)M + (double)eps));
}

void mlcrt_layer_norm_f32(const float *x, int64_t rows, int64_t M, const float *w, const float *b,
                          float eps, int rms, float *y) {
  if (M <= 0) return;
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = x + r * M;
    float *yr = y + r * M;
    float mu, rstd;
    moments(xr, M, eps, rms, &mu, &rstd);
    for (int64_t i = 0; i < M; i++) {
      float v = (xr[i] - mu) * rstd;
      if (w) v *= w[i];
      if (b) v += b[i];
      yr[i] = v;
    }
  }
}

void mlcrt_group_norm_f32(const float *x, int64_t N, int64_t C, int64_t inner, int64_t G,
                          const float *w, const float *b, float eps, float *y) {
  if (G <= 0 || C <= 0 || inner <= 0) return;
  const int64_t cg = C / G;
  for (int64_t n = 0; n < N; n++)
    for (int64_t g = 0; g < G; g++) {
      const int64_t off = (n * C + g * cg) * inner;
      float mu, rstd;
      moments(x + off, cg * inner, eps, 0, &mu, &rstd);
      for (int64_t c = g * cg; c < (g + 1) * cg; c++) {
        const float *xp = x + (n * C + c) * inner;
        float *yp = y + (n * C + c) * inner;
        const float wc = w ? w[c] : 1.0f, bc = b ? b[c] : 0.0f;
        for (int64_t i = 0; i < inner; i++) yp[i] = (xp[i] - mu) * rstd * wc + bc;
      }
    }
}
