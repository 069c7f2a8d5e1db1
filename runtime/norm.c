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
 * Sums run in 8 double lanes added in a fixed tree at the end: vector code
 * without reassociation, the same bits on every run.  layer_norm / rms_norm
 * split their rows over the team (each row computed by the same code).
 * Weight and bias may be NULL (PyTorch's None).  x and y may not alias.
 * A row of length 0 writes nothing; NaN and inf propagate as in PyTorch.
 */
#include "mlcrt.h"
#include "rt_internal.h"

#include <math.h>

typedef struct {
  const float *x, *mean, *var, *w, *b;
  float *y;
  int64_t C, inner;
  float eps;
} bn_job;

/* images [n0, n1): every channel's affine, computed per channel as PyTorch */
static void bn_range(void *arg, int64_t n0, int64_t n1) {
  const bn_job *j = arg;
  const int64_t C = j->C, inner = j->inner;
  enum { CB = 256 }; /* channels whose scale and shift are worked out at a time */
  float a[CB], sh[CB];
  for (int64_t c0 = 0; c0 < C; c0 += CB) {
    const int64_t nc = C - c0 < CB ? C - c0 : CB;
    for (int64_t k = 0; k < nc; k++) {
      const int64_t c = c0 + k;
      const float invstd = 1.0f / sqrtf(j->var[c] + j->eps);
      a[k] = j->w ? j->w[c] * invstd : invstd;
      sh[k] = (j->b ? j->b[c] : 0.0f) - j->mean[c] * a[k];
    }
    /* in memory order: image by image (a late layer's planes are a few floats) */
    for (int64_t n = n0; n < n1; n++)
      for (int64_t k = 0; k < nc; k++) {
        const float *xp = j->x + (n * C + c0 + k) * inner;
        float *yp = j->y + (n * C + c0 + k) * inner;
        const float ak = a[k], shk = sh[k];
        for (int64_t i = 0; i < inner; i++) yp[i] = xp[i] * ak + shk;
      }
  }
}

void mlcrt_batch_norm_f32(mlcrt_team *team, const float *x, int64_t N, int64_t C, int64_t inner,
                          const float *mean, const float *var, const float *w, const float *b,
                          float eps, float *y) {
  if (N <= 0 || C <= 0 || inner <= 0) return;
  /* images split over the team from 64K elements */
  bn_job j = {x, mean, var, w, b, y, C, inner, eps};
  mlcrt__ranges(team, N, (double)N * (double)C * (double)inner, bn_range, &j);
}

enum { LANES = 8 };

/* the sum of the lanes, in a fixed order */
static double lanes_sum(double *acc) {
  for (int w = LANES / 2; w >= 1; w /= 2)
    for (int l = 0; l < w; l++) acc[l] += acc[l + w];
  return acc[0];
}

/* mean and 1/sqrt(var + eps) of x[0..M) (var biased); rms: of x^2 only. */
static void moments(const float *x, int64_t M, float eps, int rms, float *mean, float *rstd) {
  double acc[LANES] = {0};
  int64_t i = 0;
  if (rms) {
    for (; i + LANES <= M; i += LANES)
      for (int l = 0; l < LANES; l++) acc[l] += (double)x[i + l] * (double)x[i + l];
    for (int l = 0; i < M; i++, l++) acc[l] += (double)x[i] * (double)x[i];
    *mean = 0.0f;
    *rstd = (float)(1.0 / sqrt(lanes_sum(acc) / (double)M + (double)eps));
    return;
  }
  for (; i + LANES <= M; i += LANES)
    for (int l = 0; l < LANES; l++) acc[l] += (double)x[i + l];
  for (int l = 0; i < M; i++, l++) acc[l] += (double)x[i];
  const double mu = lanes_sum(acc) / (double)M;
  double v[LANES] = {0};
  for (i = 0; i + LANES <= M; i += LANES)
    for (int l = 0; l < LANES; l++) {
      const double d = (double)x[i + l] - mu;
      v[l] += d * d;
    }
  for (int l = 0; i < M; i++, l++) {
    const double d = (double)x[i] - mu;
    v[l] += d * d;
  }
  *mean = (float)mu;
  *rstd = (float)(1.0 / sqrt(lanes_sum(v) / (double)M + (double)eps));
}

typedef struct {
  const float *x, *w, *b;
  float *y;
  int64_t M;
  float eps;
  int rms;
} ln_job;

static void ln_range(void *arg, int64_t r0, int64_t r1) {
  const ln_job *j = arg;
  const int64_t M = j->M;
  const float *w = j->w, *b = j->b;
  for (int64_t r = r0; r < r1; r++) {
    const float *xr = j->x + r * M;
    float *yr = j->y + r * M;
    float mu, rstd;
    moments(xr, M, j->eps, j->rms, &mu, &rstd);
    for (int64_t i = 0; i < M; i++) {
      float v = (xr[i] - mu) * rstd;
      if (w) v *= w[i];
      if (b) v += b[i];
      yr[i] = v;
    }
  }
}

void mlcrt_layer_norm_f32(mlcrt_team *team, const float *x, int64_t rows, int64_t M, const float *w,
                          const float *b, float eps, int rms, float *y) {
  if (M <= 0 || rows <= 0) return;
  /* threads for 64K elements and up; contiguous row slices, one per member */
  ln_job j = {x, w, b, y, M, eps, rms};
  mlcrt__ranges(team, rows, (double)rows * (double)M, ln_range, &j);
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
