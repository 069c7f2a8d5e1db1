/* pool.c — 2-D pooling (NCHW): max_pool2d, avg_pool2d, adaptive_avg_pool2d.
 *
 * Window arithmetic follows PyTorch's CPU kernels exactly, including the
 * corners that ceil_mode and padding create:
 *   - max: padding counts as -inf, so only real input elements are compared;
 *     a NaN in the window wins (PyTorch: `val > max || isnan(val)`).
 *   - avg: the divisor with count_include_pad is the window clipped to the
 *     *padded* input (hend = min(hstart + kh, H + ph), computed before the
 *     clip to the real input), so a ceil_mode window hanging past the padding
 *     is not divided by the full kh*kw; without count_include_pad it is the
 *     number of real input elements in the window.
 *   - adaptive avg: window i covers [floor(i*H/OH), ceil((i+1)*H/OH)).
 * The compiler computes OH/OW (including PyTorch's rule that the last
 * ceil_mode window must start inside the input or its left padding).
 */
#include "mlcrt.h"
#include "rt_internal.h"

#include <math.h>

static int64_t imin(int64_t a, int64_t b) {
  return a < b ? a : b;
}
static int64_t imax(int64_t a, int64_t b) {
  return a > b ? a : b;
}

int mlcrt__pool_is_2x2(const mlcrt_pool2d_params *p) {
  return p->kh == 2 && p->kw == 2 && p->sh == 2 && p->sw == 2 && p->ph == 0 && p->pw == 0 &&
         2 * p->OH <= p->H && 2 * p->OW <= p->W;
}

/* max with PyTorch's NaN rule: a NaN wins */
static inline float pick_max(float m, float v) {
  return v > m || isnan(v) ? v : m;
}

#if defined(__x86_64__) && defined(__GNUC__)
/* One output row of the 2x2 max, 16 windows at a time (masked at the row's
 * end): the pairs of both input rows de-interleaved, pick_max's rule in
 * masks.  Bit for bit the scalar loop. */
__attribute__((target("avx512f"))) static void max2x2_row_avx512(const float *r0, const float *r1,
                                                                 float *y, int64_t OW) {
  for (int64_t ow = 0; ow < OW; ow += 16) {
    const int64_t n = OW - ow < 16 ? OW - ow : 16;
    const mlcrt__windows2x2 w = mlcrt__load_windows2x2(r0, r1, ow, n);
    __m512 m = w.v[0];
    for (int q = 1; q < 4; q++) /* pick_max(m, v): v when greater or NaN */
      m = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(w.v[q], m, _CMP_GT_OQ) |
                                   _mm512_cmp_ps_mask(w.v[q], w.v[q], _CMP_UNORD_Q),
                               m, w.v[q]);
    _mm512_mask_storeu_ps(y + ow, (__mmask16)((1u << n) - 1), m);
  }
}

/* Any window with stride 1 or 2, one output row 16 windows at a time: for
 * each window row and column in the scalar loop's order, the 16 inputs come
 * from one window of at most 32 floats of the input row (two loads, then for
 * stride 2 a permute taking every other float), the floats outside the row
 * loaded as -inf.  pick_max(m, -inf) is m, so the padding's -inf lanes give
 * the scalar loop's result, which skips them, bit for bit. */
__attribute__((target("avx512f"))) static void
max_row_avx512(const mlcrt_pool2d_params *p, const float *xp, int64_t oh, float *yr) {
  const int64_t W = p->W, sw = p->sw;
  const int64_t h0 = imax(oh * p->sh - p->ph, 0), h1 = imin(oh * p->sh - p->ph + p->kh, p->H);
  const __m512 ninf = _mm512_set1_ps(-INFINITY);
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i iota = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  const __m512i zero = _mm512_setzero_si512(), sixteen = _mm512_set1_epi32(16);
  const __m512i wv = _mm512_set1_epi32((int32_t)W);
  for (int64_t ow = 0; ow < p->OW; ow += 16) {
    const int64_t n = p->OW - ow < 16 ? p->OW - ow : 16;
    __m512 m = ninf;
    for (int64_t h = h0; h < h1; h++)
      for (int64_t kw = 0; kw < p->kw; kw++) {
        /* inputs start .. start + sw*15 of row h; lanes of [0, W) loaded */
        const int64_t start = ow * sw - p->pw + kw;
        const __m512i at = _mm512_add_epi32(iota, _mm512_set1_epi32((int32_t)start));
        const __mmask16 m0 = _mm512_cmpge_epi32_mask(at, zero) & _mm512_cmplt_epi32_mask(at, wv);
        const __m512i at1 = _mm512_add_epi32(at, sixteen);
        const __mmask16 m1 = _mm512_cmpge_epi32_mask(at1, zero) & _mm512_cmplt_epi32_mask(at1, wv);
        const float *r = xp + h * W + start; /* (only lanes inside the row are read) */
        __m512 v = _mm512_mask_loadu_ps(ninf, m0, r);
        if (sw == 2) v = _mm512_permutex2var_ps(v, even, _mm512_mask_loadu_ps(ninf, m1, r + 16));
        m = _mm512_mask_blend_ps(
            _mm512_cmp_ps_mask(v, m, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), m, v);
      }
    _mm512_mask_storeu_ps(yr + ow, (__mmask16)((1u << n) - 1), m);
  }
}
#endif

static void max_planes(const mlcrt_pool2d_params *p, const float *x, float *y) {
  const int64_t H = p->H, W = p->W, OH = p->OH, OW = p->OW;
#if defined(__x86_64__) && defined(__GNUC__)
  if (mlcrt_cpu_isa() == MLCRT_ISA_AVX512 && !mlcrt__pool_is_2x2(p) && (p->sw == 1 || p->sw == 2) &&
      W + p->OW * p->sw + p->kw < (1 << 30)) {
    for (int64_t nc = 0; nc < p->N * p->C; nc++)
      for (int64_t oh = 0; oh < OH; oh++)
        max_row_avx512(p, x + nc * H * W, oh, y + (nc * OH + oh) * OW);
    return;
  }
  if (mlcrt__pool_is_2x2(p) && mlcrt_cpu_isa() == MLCRT_ISA_AVX512) {
    for (int64_t nc = 0; nc < p->N * p->C; nc++)
      for (int64_t oh = 0; oh < OH; oh++) {
        const float *r0 = x + nc * H * W + 2 * oh * W;
        max2x2_row_avx512(r0, r0 + W, y + (nc * OH + oh) * OW, OW);
      }
    return;
  }
#endif
  if (mlcrt__pool_is_2x2(p)) { /* the common 2x2 stride-2 window, every one inside */
    for (int64_t nc = 0; nc < p->N * p->C; nc++)
      for (int64_t oh = 0; oh < OH; oh++) {
        const float *r0 = x + nc * H * W + 2 * oh * W, *r1 = r0 + W;
        float *yr = y + (nc * OH + oh) * OW;
        for (int64_t ow = 0; ow < OW; ow++)
          yr[ow] =
              pick_max(pick_max(pick_max(r0[2 * ow], r0[2 * ow + 1]), r1[2 * ow]), r1[2 * ow + 1]);
      }
    return;
  }
  for (int64_t nc = 0; nc < p->N * p->C; nc++) {
    const float *xp = x + nc * H * W;
    float *yp = y + nc * OH * OW;
    for (int64_t oh = 0; oh < OH; oh++) {
      const int64_t h0 = imax(oh * p->sh - p->ph, 0), h1 = imin(oh * p->sh - p->ph + p->kh, H);
      for (int64_t ow = 0; ow < OW; ow++) {
        const int64_t w0 = imax(ow * p->sw - p->pw, 0), w1 = imin(ow * p->sw - p->pw + p->kw, W);
        float m = -INFINITY;
        for (int64_t h = h0; h < h1; h++)
          for (int64_t w = w0; w < w1; w++) m = pick_max(m, xp[h * W + w]);
        yp[oh * OW + ow] = m;
      }
    }
  }
}

static void avg_planes(const mlcrt_pool2d_params *p, const float *x, float *y) {
  const int64_t H = p->H, W = p->W, OH = p->OH, OW = p->OW;
  for (int64_t nc = 0; nc < p->N * p->C; nc++) {
    const float *xp = x + nc * H * W;
    float *yp = y + nc * OH * OW;
    for (int64_t oh = 0; oh < OH; oh++) {
      int64_t h0 = oh * p->sh - p->ph;
      int64_t h1 = imin(h0 + p->kh, H + p->ph);
      const int64_t ph_size = h1 - h0;
      h0 = imax(h0, 0);
      h1 = imin(h1, H);
      for (int64_t ow = 0; ow < OW; ow++) {
        int64_t w0 = ow * p->sw - p->pw;
        int64_t w1 = imin(w0 + p->kw, W + p->pw);
        const int64_t pool_size = ph_size * (w1 - w0);
        w0 = imax(w0, 0);
        w1 = imin(w1, W);
        if (h0 >= h1 || w0 >= w1) { /* window entirely in padding */
          yp[oh * OW + ow] = 0.0f;
          continue;
        }
        float s = 0.0f; /* float accumulation in window order, as PyTorch */
        for (int64_t h = h0; h < h1; h++)
          for (int64_t w = w0; w < w1; w++) s += xp[h * W + w];
        const int64_t div = p->count_include_pad ? pool_size : (h1 - h0) * (w1 - w0);
        yp[oh * OW + ow] = s / (float)div;
      }
    }
  }
}

/* The pools split their N*C planes over the team in contiguous slices: each
 * plane is computed by the same code whoever runs it. */
typedef struct {
  const mlcrt_pool2d_params *p;
  const float *x;
  float *y;
  int max;
} pool_job;

static void pool_range(void *arg, int64_t lo, int64_t hi) {
  const pool_job *j = arg;
  mlcrt_pool2d_params q = *j->p;
  q.N = 1, q.C = hi - lo;
  const float *x = j->x + lo * q.H * q.W;
  float *y = j->y + lo * q.OH * q.OW;
  if (j->max)
    max_planes(&q, x, y);
  else
    avg_planes(&q, x, y);
}

static void pool_run(mlcrt_team *team, const mlcrt_pool2d_params *p, const float *x, float *y,
                     int max) {
  const int64_t planes = p->N * p->C;
  if (planes <= 0 || p->OH <= 0 || p->OW <= 0) return;
  const double work = (double)planes * (double)(p->OH * p->OW) * (double)(p->kh * p->kw);
  pool_job j = {p, x, y, max};
  mlcrt__ranges(team, planes, work, pool_range, &j);
}

void mlcrt_max_pool2d_f32(mlcrt_team *team, const mlcrt_pool2d_params *p, const float *x,
                          float *y) {
  pool_run(team, p, x, y, 1);
}

void mlcrt_avg_pool2d_f32(mlcrt_team *team, const mlcrt_pool2d_params *p, const float *x,
                          float *y) {
  pool_run(team, p, x, y, 0);
}

void mlcrt_adaptive_avg_pool2d_f32(int64_t N, int64_t C, int64_t H, int64_t W, int64_t OH,
                                   int64_t OW, const float *x, float *y) {
  if (OH <= 0 || OW <= 0) return;
  for (int64_t nc = 0; nc < N * C; nc++) {
    const float *xp = x + nc * H * W;
    float *yp = y + nc * OH * OW;
    for (int64_t oh = 0; oh < OH; oh++) {
      const int64_t h0 = oh * H / OH, h1 = ((oh + 1) * H + OH - 1) / OH;
      for (int64_t ow = 0; ow < OW; ow++) {
        const int64_t w0 = ow * W / OW, w1 = ((ow + 1) * W + OW - 1) / OW;
        float s = 0.0f;
        for (int64_t h = h0; h < h1; h++)
          for (int64_t w = w0; w < w1; w++) s += xp[h * W + w];
        const int64_t cnt = (h1 - h0) * (w1 - w0);
        yp[oh * OW + ow] = cnt > 0 ? s / (float)cnt : 0.0f;
      }
    }
  }
}
