/* runtime/grad.c — backward kernels for training (float32).
 *
 * Each is the gradient of a forward kernel in this library, written as a
 * plain loop nest that mirrors the forward one, so the two are easy to check
 * against each other; the heavy ones are GEMMs (linear here, conv2d's in
 * conv.c).  Conventions:
 * dy has the forward output's shape, dx / dw the shape of what they are the
 * gradient of, and every output is overwritten (never accumulated into).
 */
#include "mlcrt.h"
#include "rt_internal.h"
#include <math.h>
#include <string.h>

/* dw[N, K] = dy[M, N]^T x[M, K] */
void mlcrt_linear_dw_f32(mlcrt_team *team, const float *dy, const float *x, int64_t M, int64_t N, int64_t K,
                         float *dw) {
  mlcrt_sgemm_team(team, 1, 0, N, K, M, 1.0f, dy, N, x, K, 0.0f, dw, K);
}

/* Routes each dy to the first maximum of its window (as PyTorch's CPU kernel;
 * a NaN counts as the maximum). */
/* mask ? a : b for a mask of all ones or zeros, in integer operations that
 * compilers keep free of branches */
static inline float select_f32(uint32_t mask, float a, float b) {
  uint32_t ua, ub;
  memcpy(&ua, &a, 4);
  memcpy(&ub, &b, 4);
  ua = (ua & mask) | (ub & ~mask);
  memcpy(&a, &ua, 4);
  return a;
}

#if defined(__x86_64__) && defined(__GNUC__)
/* One row pair of the 2x2 gradient, 16 windows at a time (masked at the
 * row's end): the window's four values de-interleaved from the two rows,
 * the winner found with the scalar loop's rule, the four results
 * interleaved back.  Same results as the scalar loop, bit for bit. */
__attribute__((target("avx512f"))) static void pool2x2_dx_row_avx512(const float *r0, const float *r1,
                                                                     const float *g, float *d0,
                                                                     float *d1, int64_t OW) {
  const __m512i lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i hi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
  for (int64_t ow = 0; ow < OW; ow += 16) {
    const int64_t n = OW - ow < 16 ? OW - ow : 16; /* windows in this block */
    const mlcrt__windows2x2 w = mlcrt__load_windows2x2(r0, r1, ow, n);
    const __mmask16 m0 = w.m0, m1 = w.m1;
    const __m512 a = w.v[0], b = w.v[1], c = w.v[2], d = w.v[3];
    /* v takes over from m: greater, or NaN where m is not */
#define TAKES(v, m)                                                                                \
  (_mm512_cmp_ps_mask(v, m, _CMP_GT_OQ) |                                                          \
   (_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) & _mm512_cmp_ps_mask(m, m, _CMP_ORD_Q)))
    const __mmask16 tb = TAKES(b, a);
    const __m512 mab = _mm512_mask_blend_ps(tb, a, b);
    const __mmask16 tc = TAKES(c, mab);
    const __m512 mabc = _mm512_mask_blend_ps(tc, mab, c);
    const __mmask16 td = TAKES(d, mabc);
#undef TAKES
    const __m512 gv = _mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1), g + ow);
    const __m512 wd = _mm512_maskz_mov_ps(td, gv), wc = _mm512_maskz_mov_ps(tc & ~td, gv);
    const __m512 wb = _mm512_maskz_mov_ps(tb & ~tc & ~td, gv);
    const __m512 wa = _mm512_maskz_mov_ps(~(tb | tc | td), gv);
    _mm512_mask_storeu_ps(d0 + 2 * ow, m0, _mm512_permutex2var_ps(wa, lo, wb));
    _mm512_mask_storeu_ps(d0 + 2 * ow + 16, m1, _mm512_permutex2var_ps(wa, hi, wb));
    _mm512_mask_storeu_ps(d1 + 2 * ow, m0, _mm512_permutex2var_ps(wc, lo, wd));
    _mm512_mask_storeu_ps(d1 + 2 * ow + 16, m1, _mm512_permutex2var_ps(wc, hi, wd));
  }
}
#endif

typedef struct {
  const mlcrt_pool2d_params *p;
  const float *dy, *x;
  float *dx;
  const mlcrt_epilogue *epi;
} max_dx_job;

/* Planes nc0..nc1-1 of max_pool2d's backward (then epi on each): the
 * planes split over the team (mlcrt__ranges), each computed by the same
 * code whoever runs it. */
static void max_dx_planes(void *arg, int64_t nc0, int64_t nc1) {
  const max_dx_job *j = arg;
  const mlcrt_pool2d_params *p = j->p;
  const float *dy = j->dy, *x = j->x;
  float *dx = j->dx;
  const mlcrt_epilogue *epi = j->epi;
  const int64_t HW = p->H * p->W;
  if (mlcrt__pool_is_2x2(p)) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (mlcrt_cpu_isa() == MLCRT_ISA_AVX512) {
      const int64_t H = p->H, W = p->W, OH = p->OH, OW = p->OW;
      for (int64_t nc = nc0; nc < nc1; nc++) {
        for (int64_t oh = 0; oh < OH; oh++) {
          const float *r0 = x + (nc * H + 2 * oh) * W;
          float *d0 = dx + (nc * H + 2 * oh) * W;
          pool2x2_dx_row_avx512(r0, r0 + W, dy + (nc * OH + oh) * OW, d0, d0 + W, OW);
          for (int64_t w = 2 * OW; w < W; w++) d0[w] = d0[W + w] = 0.0f;
        }
        if (H > 2 * OH) memset(dx + (nc * H + 2 * OH) * W, 0, sizeof(float) * (size_t)((H - 2 * OH) * W));
        if (epi) epi->fn(epi->ctx, nc, nc + 1, 0, HW); /* the plane is final */
      }
      return;
    }
#endif
    /* The common 2x2 stride-2 window: windows do not overlap, so every dx
     * element is written once (the window's winner gets dy, the others 0;
     * a last odd row or column no window covers gets 0), without branches:
     * random data mispredicts every compare of the general loop. */
    const int64_t H = p->H, W = p->W, OH = p->OH, OW = p->OW;
    for (int64_t nc = nc0; nc < nc1; nc++) {
      for (int64_t oh = 0; oh < OH; oh++) {
        const float *r0 = x + (nc * H + 2 * oh) * W, *r1 = r0 + W;
        float *d0 = dx + (nc * H + 2 * oh) * W, *d1 = d0 + W;
        const float *g = dy + (nc * OH + oh) * OW;
        for (int64_t ow = 0; ow < OW; ow++) {
          const float v[4] = {r0[2 * ow], r0[2 * ow + 1], r1[2 * ow], r1[2 * ow + 1]};
          float m = v[0];
          uint32_t best = 0;
          for (uint32_t q = 1; q < 4; q++) { /* the same rule as below: a greater value or the first NaN */
            const uint32_t take = -(uint32_t)((v[q] > m) | ((v[q] != v[q]) & (m == m))); /* all ones or 0 */
            m = select_f32(take, v[q], m);
            best = (q & take) | (best & ~take);
          }
          d0[2 * ow] = select_f32(-(uint32_t)(best == 0), g[ow], 0.0f);
          d0[2 * ow + 1] = select_f32(-(uint32_t)(best == 1), g[ow], 0.0f);
          d1[2 * ow] = select_f32(-(uint32_t)(best == 2), g[ow], 0.0f);
          d1[2 * ow + 1] = select_f32(-(uint32_t)(best == 3), g[ow], 0.0f);
        }
        for (int64_t w = 2 * OW; w < W; w++) d0[w] = d1[w] = 0.0f;
      }
      if (H > 2 * OH) memset(dx + (nc * H + 2 * OH) * W, 0, sizeof(float) * (size_t)((H - 2 * OH) * W));
      if (epi) epi->fn(epi->ctx, nc, nc + 1, 0, HW); /* the plane is final */
    }
    return;
  }
  for (int64_t nc = nc0; nc < nc1; nc++) {
    const float *xp = x + nc * p->H * p->W;
    float *dxp = dx + nc * p->H * p->W;
    memset(dxp, 0, sizeof(float) * (size_t)HW);
    for (int64_t oh = 0; oh < p->OH; oh++)
      for (int64_t ow = 0; ow < p->OW; ow++) {
        int64_t h0 = oh * p->sh - p->ph, w0 = ow * p->sw - p->pw, best = -1;
        float m = -INFINITY;
        for (int64_t h = h0; h < h0 + p->kh; h++)
          for (int64_t w = w0; w < w0 + p->kw; w++) {
            if (h < 0 || h >= p->H || w < 0 || w >= p->W) continue;
            float v = xp[h * p->W + w];
            if (best < 0 || v > m || (isnan(v) && !isnan(m))) m = v, best = h * p->W + w;
          }
        if (best >= 0) dxp[best] += dy[(nc * p->OH + oh) * p->OW + ow];
      }
    if (epi) epi->fn(epi->ctx, nc, nc + 1, 0, HW); /* (windows stay inside a plane) */
  }
}

void mlcrt_max_pool2d_dx_f32(const mlcrt_pool2d_params *p, const float *dy, const float *x, float *dx) {
  mlcrt_max_pool2d_dx_epi_f32(NULL, p, dy, x, dx, NULL);
}

void mlcrt_max_pool2d_dx_epi_f32(mlcrt_team *team, const mlcrt_pool2d_params *p, const float *dy,
                                 const float *x, float *dx, const mlcrt_epilogue *epi) {
  const int64_t planes = p->N * p->C;
  max_dx_job j = {p, dy, x, dx, epi};
  mlcrt__ranges(team, planes, (double)planes * (double)(p->H * p->W), max_dx_planes, &j);
}

/* Spreads each dy over its window, with the divisor PyTorch's forward used. */
void mlcrt_avg_pool2d_dx_f32(const mlcrt_pool2d_params *p, const float *dy, float *dx) {
  memset(dx, 0, sizeof(float) * (size_t)(p->N * p->C * p->H * p->W));
  for (int64_t nc = 0; nc < p->N * p->C; nc++)
    for (int64_t oh = 0; oh < p->OH; oh++)
      for (int64_t ow = 0; ow < p->OW; ow++) {
        int64_t hs = oh * p->sh - p->ph, ws = ow * p->sw - p->pw;
        int64_t he = hs + p->kh < p->H + p->ph ? hs + p->kh : p->H + p->ph;
        int64_t we = ws + p->kw < p->W + p->pw ? ws + p->kw : p->W + p->pw;
        int64_t pool = (he - hs) * (we - ws);
        hs = hs < 0 ? 0 : hs, ws = ws < 0 ? 0 : ws;
        he = he > p->H ? p->H : he, we = we > p->W ? p->W : we;
        int64_t div = p->count_include_pad ? pool : (he - hs) * (we - ws);
        if (div <= 0) continue;
        float g = dy[(nc * p->OH + oh) * p->OW + ow] / (float)div;
        for (int64_t h = hs; h < he; h++)
          for (int64_t w = ws; w < we; w++) dx[(nc * p->H + h) * p->W + w] += g;
      }
}

void mlcrt_adaptive_avg_pool2d_dx_f32(int64_t N, int64_t C, int64_t H, int64_t W, int64_t OH, int64_t OW,
                                      const float *dy, float *dx) {
  memset(dx, 0, sizeof(float) * (size_t)(N * C * H * W));
  for (int64_t nc = 0; nc < N * C; nc++)
    for (int64_t oh = 0; oh < OH; oh++) {
      int64_t hs = oh * H / OH, he = ((oh + 1) * H + OH - 1) / OH;
      for (int64_t ow = 0; ow < OW; ow++) {
        int64_t ws = ow * W / OW, we = ((ow + 1) * W + OW - 1) / OW;
        float g = dy[(nc * OH + oh) * OW + ow] / (float)((he - hs) * (we - ws));
        for (int64_t h = hs; h < he; h++)
          for (int64_t w = ws; w < we; w++) dx[(nc * H + h) * W + w] += g;
      }
    }
}

/* softmax:      dx = y * (dy - sum(dy * y))
 * log_softmax:  dx = dy - exp(y) * sum(dy)      (over the middle dim) */
void mlcrt_softmax_dx_f32(const float *dy, const float *y, int64_t outer, int64_t n, int64_t inner, int log,
                          float *dx) {
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      const float *dp = dy + o * n * inner + i, *yp = y + o * n * inner + i;
      float *xp = dx + o * n * inner + i;
      double s = 0;
      for (int64_t k = 0; k < n; k++) s += log ? (double)dp[k * inner] : (double)dp[k * inner] * yp[k * inner];
      for (int64_t k = 0; k < n; k++)
        xp[k * inner] = log ? dp[k * inner] - expf(yp[k * inner]) * (float)s
                            : yp[k * inner] * (dp[k * inner] - (float)s);
    }
}

static int64_t label_at(const void *labels, mlcrt_dtype t, int64_t i) {
  switch (t) {
  case MLCRT_U8: return ((const uint8_t *)labels)[i];
  case MLCRT_I32: return ((const int32_t *)labels)[i];
  default: return ((const int64_t *)labels)[i];
  }
}

static int check_labels(const void *labels, mlcrt_dtype t, int64_t N, int64_t C, char *err) {
  for (int64_t i = 0; i < N; i++) {
    int64_t y = label_at(labels, t, i);
    if (y < 0 || y >= C)
      return mlcrt_seterr(err, MLCRT_EINVAL, "cross_entropy: label %lld at position %lld is outside 0..%lld",
                          (long long)y, (long long)i, (long long)(C - 1));
  }
  return MLCRT_OK;
}

/* loss = mean_i [ (1-s) * -logp[i, y_i] + s * mean_c(-logp[i, c]) ] */
int mlcrt_cross_entropy_f32(const float *logits, const void *labels, mlcrt_dtype ldt, int64_t N, int64_t C,
                            double smoothing, float *loss, char *err) {
  int rc = check_labels(labels, ldt, N, C, err);
  if (rc) return rc;
  double total = 0;
  for (int64_t i = 0; i < N; i++) {
    const float *row = logits + i * C;
    float m = -INFINITY;
    for (int64_t c = 0; c < C; c++) m = row[c] > m ? row[c] : m;
    double se = 0, sum = 0;
    for (int64_t c = 0; c < C; c++) se += exp((double)row[c] - m), sum += row[c];
    double lse = m + log(se);
    double nll = lse - row[label_at(labels, ldt, i)];
    total += (1 - smoothing) * nll + smoothing * (lse - sum / (double)C);
  }
  *loss = N ? (float)(total / (double)N) : NAN; /* PyTorch: mean of nothing is NaN */
  return MLCRT_OK;
}

/* d loss / d logits = dy/N * (softmax - (1-s) onehot - s/C) */
int mlcrt_cross_entropy_dx_f32(const float *dy, const float *logits, const void *labels, mlcrt_dtype ldt,
                               int64_t N, int64_t C, double smoothing, float *dx, char *err) {
  int rc = check_labels(labels, ldt, N, C, err);
  if (rc) return rc;
  float scale = N ? dy[0] / (float)N : 0.0f;
  for (int64_t i = 0; i < N; i++) {
    const float *row = logits + i * C;
    float *out = dx + i * C;
    float m = -INFINITY;
    for (int64_t c = 0; c < C; c++) m = row[c] > m ? row[c] : m;
    double se = 0;
    for (int64_t c = 0; c < C; c++) se += exp((double)row[c] - m);
    int64_t y = label_at(labels, ldt, i);
    for (int64_t c = 0; c < C; c++) {
      double p = exp((double)row[c] - m) / se;
      double target = (c == y ? 1 - smoothing : 0) + smoothing / (double)C;
      out[c] = (float)((p - target) * scale);
    }
  }
  return MLCRT_OK;
}

/* dtable[V, D] = sum of dy rows over the positions holding each id (ids were
 * range-checked by the forward embedding). */
void mlcrt_embedding_dw_f32(const float *dy, const void *ids, mlcrt_dtype idt, int64_t n, int64_t D, int64_t V,
                            float *dw) {
  memset(dw, 0, sizeof(float) * (size_t)(V * D));
  for (int64_t i = 0; i < n; i++) {
    int64_t id = label_at(ids, idt, i);
    if (id < 0 || id >= V) continue;
    for (int64_t k = 0; k < D; k++) dw[id * D + k] += dy[i * D + k];
  }
}
