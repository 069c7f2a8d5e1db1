/* normgrad.c — normalisation in a train step, and its gradients.
 *
 *   batch_norm_stats   per channel of x [N, C, inner]: the batch mean and the
 *                      biased variance (two passes, in double), written as
 *                      stats [2, C]; the train-mode forward is then
 *                      mlcrt_batch_norm_f32 with these statistics.
 *   batch_norm_update  running_mean/running_var <- (1 - momentum) * running +
 *                      momentum * batch (the unbiased variance for the running
 *                      one), in double as PyTorch's CPU kernel.
 *   *_dx, *_dw         the gradients, as torch.autograd computes them: with
 *                      xhat the normalised input, g = dy * weight and the sums
 *                      over the normalised set of M elements,
 *                        dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
 *                      (rms_norm: dx = rstd * (g - x * rstd^2 * mean(g * x))),
 *                      dweight = sum(dy * xhat) over everything but the
 *                      weight's own axes.  The bias gradients are plain sums,
 *                      made by autodiff.c from ordinary reductions.
 * Statistics are recomputed from x exactly as the forward (norm.c) does, so
 * the backward needs no saved state.  Sums are in double.
 */
#include "mlcrt.h"

#include <math.h>

/* mean and 1/sqrt(var + eps) of x[0..M) (var biased); rms: of x^2 only
 * (the same computation as norm.c's). */
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

void mlcrt_batch_norm_stats_f32(const float *x, int64_t N, int64_t C, int64_t inner, float *stats) {
  const double cnt = (double)N * (double)inner;
  for (int64_t c = 0; c < C; c++) {
    double s = 0.0;
    for (int64_t n = 0; n < N; n++) {
      const float *xp = x + (n * C + c) * inner;
      for (int64_t i = 0; i < inner; i++) s += xp[i];
    }
    const double mu = cnt > 0 ? s / cnt : 0.0;
    double v = 0.0;
    for (int64_t n = 0; n < N; n++) {
      const float *xp = x + (n * C + c) * inner;
      for (int64_t i = 0; i < inner; i++) {
        const double d = (double)xp[i] - mu;
        v += d * d;
      }
    }
    stats[c] = (float)mu;
    stats[C + c] = cnt > 0 ? (float)(v / cnt) : 0.0f;
  }
}

void mlcrt_batch_norm_update_f32(const float *stats, int64_t C, int64_t count, double momentum,
                                 float *running_mean, float *running_var) {
  const double unbias = count > 1 ? (double)count / (double)(count - 1) : 1.0;
  for (int64_t c = 0; c < C; c++) {
    running_mean[c] = (float)(momentum * (double)stats[c] + (1.0 - momentum) * (double)running_mean[c]);
    running_var[c] = (float)(momentum * (double)stats[C + c] * unbias + (1.0 - momentum) * (double)running_var[c]);
  }
}

void mlcrt_batch_norm_dx_f32(const float *dy, const float *x, int64_t N, int64_t C, int64_t inner,
                             const float *stats, const float *w, float eps, float *dx) {
  const double cnt = (double)N * (double)inner;
  if (cnt <= 0) return;
  for (int64_t c = 0; c < C; c++) {
    const float mu = stats[c], rstd = 1.0f / sqrtf(stats[C + c] + eps);
    double sg = 0.0, sgx = 0.0;
    for (int64_t n = 0; n < N; n++) {
      const float *xp = x + (n * C + c) * inner, *gp = dy + (n * C + c) * inner;
      for (int64_t i = 0; i < inner; i++) {
        sg += gp[i];
        sgx += (double)gp[i] * (double)((xp[i] - mu) * rstd);
      }
    }
    const double a = (w ? (double)w[c] : 1.0) * (double)rstd, mg = sg / cnt, mgx = sgx / cnt;
    for (int64_t n = 0; n < N; n++) {
      const float *xp = x + (n * C + c) * inner, *gp = dy + (n * C + c) * inner;
      float *dp = dx + (n * C + c) * inner;
      for (int64_t i = 0; i < inner; i++)
        dp[i] = (float)(a * ((double)gp[i] - mg - (double)((xp[i] - mu) * rstd) * mgx));
    }
  }
}

void mlcrt_batch_norm_dw_f32(const float *dy, const float *x, int64_t N, int64_t C, int64_t inner,
                             const float *stats, float eps, float *dw) {
  for (int64_t c = 0; c < C; c++) {
    const float mu = stats[c], rstd = 1.0f / sqrtf(stats[C + c] + eps);
    double s = 0.0;
    for (int64_t n = 0; n < N; n++) {
      const float *xp = x + (n * C + c) * inner, *gp = dy + (n * C + c) * inner;
      for (int64_t i = 0; i < inner; i++) s += (double)gp[i] * (double)((xp[i] - mu) * rstd);
    }
    dw[c] = (float)s;
  }
}

void mlcrt_layer_norm_dx_f32(const float *dy, const float *x, int64_t rows, int64_t M, const float *w,
                             float eps, int rms, float *dx) {
  if (M <= 0) return;
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = x + r * M, *gr = dy + r * M;
    float *dr = dx + r * M;
    float mu, rstd;
    moments(xr, M, eps, rms, &mu, &rstd);
    double sg = 0.0, sgx = 0.0;
    for (int64_t i = 0; i < M; i++) {
      const double g = (double)gr[i] * (w ? (double)w[i] : 1.0);
      sg += g;
      sgx += g * (double)((xr[i] - mu) * rstd);
    }
    const double mg = rms ? 0.0 : sg / (double)M, mgx = sgx / (double)M;
    for (int64_t i = 0; i < M; i++) {
      const double g = (double)gr[i] * (w ? (double)w[i] : 1.0), xh = (double)((xr[i] - mu) * rstd);
      dr[i] = (float)((double)rstd * (g - mg - xh * mgx));
    }
  }
}

void mlcrt_layer_norm_dw_f32(const float *dy, const float *x, int64_t rows, int64_t M, float eps, int rms,
                             float *dw) {
  if (M <= 0) return;
  for (int64_t i = 0; i < M; i++) dw[i] = 0.0f;
  /* per column, in double; columns in chunks of 256 (the statistics of a
   * row are recomputed once per chunk) */
  for (int64_t i0 = 0; i0 < M; i0 += 256) {
    double s[256] = {0};
    const int64_t n = M - i0 < 256 ? M - i0 : 256;
    for (int64_t r = 0; r < rows; r++) {
      const float *xr = x + r * M, *gr = dy + r * M;
      float mu, rstd;
      moments(xr, M, eps, rms, &mu, &rstd);
      for (int64_t i = 0; i < n; i++) s[i] += (double)gr[i0 + i] * (double)((xr[i0 + i] - mu) * rstd);
    }
    for (int64_t i = 0; i < n; i++) dw[i0 + i] = (float)s[i];
  }
}

void mlcrt_group_norm_dx_f32(const float *dy, const float *x, int64_t N, int64_t C, int64_t inner, int64_t G,
                             const float *w, float eps, float *dx) {
  if (G <= 0 || C <= 0 || inner <= 0) return;
  const int64_t cg = C / G, M = cg * inner;
  for (int64_t n = 0; n < N; n++)
    for (int64_t g = 0; g < G; g++) {
      const int64_t off = (n * C + g * cg) * inner;
      float mu, rstd;
      moments(x + off, M, eps, 0, &mu, &rstd);
      double sg = 0.0, sgx = 0.0;
      for (int64_t c = g * cg; c < (g + 1) * cg; c++) {
        const float *xp = x + (n * C + c) * inner, *gp = dy + (n * C + c) * inner;
        const double wc = w ? (double)w[c] : 1.0;
        for (int64_t i = 0; i < inner; i++) {
          sg += (double)gp[i] * wc;
          sgx += (double)gp[i] * wc * (double)((xp[i] - mu) * rstd);
        }
      }
      const double mg = sg / (double)M, mgx = sgx / (double)M;
      for (int64_t c = g * cg; c < (g + 1) * cg; c++) {
        const float *xp = x + (n * C + c) * inner, *gp = dy + (n * C + c) * inner;
        float *dp = dx + (n * C + c) * inner;
        const double wc = w ? (double)w[c] : 1.0;
        for (int64_t i = 0; i < inner; i++)
          dp[i] = (float)((double)rstd * ((double)gp[i] * wc - mg - (double)((xp[i] - mu) * rstd) * mgx));
      }
    }
}

void mlcrt_group_norm_dw_f32(const float *dy, const float *x, int64_t N, int64_t C, int64_t inner, int64_t G,
                             float eps, float *dw) {
  for (int64_t c = 0; c < C; c++) dw[c] = 0.0f;
  if (G <= 0 || C <= 0 || inner <= 0) return;
  const int64_t cg = C / G;
  for (int64_t c = 0; c < C; c++) {
    double s = 0.0;
    const int64_t g = c / cg;
    for (int64_t n = 0; n < N; n++) {
      float mu, rstd;
      moments(x + (n * C + g * cg) * inner, cg * inner, eps, 0, &mu, &rstd);
      const float *xp = x + (n * C + c) * inner, *gp = dy + (n * C + c) * inner;
      for (int64_t i = 0; i < inner; i++) s += (double)gp[i] * (double)((xp[i] - mu) * rstd);
    }
    dw[c] = (float)s;
  }
}

/* ---- dropout in a train step ------------------------------------------------ */
/* splitmix64's finaliser: a bijective mix of 64 bits. */
static uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

void mlcrt_dropout_f32(const float *x, int64_t n, double p, uint64_t seed, uint64_t step, uint64_t key, float *y) {
  if (!(p > 0.0)) {
    for (int64_t i = 0; i < n; i++) y[i] = x[i];
    return;
  }
  if (p >= 1.0) {
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * 0.0f;
    return;
  }
  /* a counter-based stream: element i of (seed, step, key) is
   * mix64(k + (i + 1) * golden), splitmix64 at position i of the state k */
  const uint64_t k = mix64(mix64(mix64(seed ^ 0x6D6C632D64726F70ULL) + step) ^ key);
  const uint64_t drop = (uint64_t)llround(p * 16777216.0); /* of 2^24 */
  const float scale = 1.0f / (float)(1.0 - p);            /* as torch: noise.div_(1 - p) */
  for (int64_t i = 0; i < n; i++) {
    const uint64_t u = mix64(k + (uint64_t)(i + 1) * 0x9E3779B97F4A7C15ULL) >> 40;
    y[i] = u >= drop ? x[i] * scale : x[i] * 0.0f;
  }
}
