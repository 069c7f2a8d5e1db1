/* softmax.c — softmax and log_softmax over the middle dim of [outer, n, inner]
 * (any `dim` of a contiguous tensor reduces to this view).
 *
 * Numerically stable: the row maximum is subtracted before exp, and the sum
 * of exponentials is accumulated in double.  log_softmax is computed as
 * x - max - log(sum), never as log(softmax), so it stays finite and accurate
 * for very negative logits.  When inner > 1 the positions along inner are
 * processed in tiles of TILE, so every inner loop runs over contiguous memory
 * (no allocation: the per-tile max and sum live on the stack).  A row holding
 * NaN yields NaN, and a row of all -inf yields NaN, as in PyTorch.  Over
 * the last dim on AVX-512, rows go 16 floats at a time (softmax_rows_avx512,
 * with mlcrt_expf's algorithm instead of libm's expf: within 2 ulp).
 * mlcrt_sum_f32, the row sum that generated reductions call, lives here too.
 */
#include "mlcrt.h"

#include <math.h>

#define TILE 64

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* mlcrt_expf on 16 lanes: the same float operations in the same order (no
 * FMA), so the same bits as the scalar function. */
__attribute__((target("avx512f"))) static inline __m512 exp16(__m512 x) {
#define F(v) _mm512_set1_ps(v)
  __m512 xc = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, F(-104.0f), _CMP_LT_OQ), x, F(-104.0f));
  xc = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(xc, F(89.0f), _CMP_GT_OQ), xc, F(89.0f));
  xc = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(xc, xc, _CMP_UNORD_Q), xc, F(0.0f));
  const __m512 fn = _mm512_sub_ps(
      _mm512_add_ps(_mm512_mul_ps(xc, F(1.44269504088896341f)), F(12582912.0f)), F(12582912.0f));
  const __m512 r = _mm512_add_ps(_mm512_sub_ps(xc, _mm512_mul_ps(fn, F(0.693359375f))),
                                 _mm512_mul_ps(fn, F(2.12194440e-4f)));
  __m512 p = F(1.9875691500e-4f);
  p = _mm512_add_ps(_mm512_mul_ps(p, r), F(1.3981999507e-3f));
  p = _mm512_add_ps(_mm512_mul_ps(p, r), F(8.3334519073e-3f));
  p = _mm512_add_ps(_mm512_mul_ps(p, r), F(4.1665795894e-2f));
  p = _mm512_add_ps(_mm512_mul_ps(p, r), F(1.6666665459e-1f));
  p = _mm512_add_ps(_mm512_mul_ps(p, r), F(5.0000001201e-1f));
  const __m512 e = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(p, r), r), r), F(1.0f));
  /* n / 2 rounded toward zero, as C's division */
  const __m512i n = _mm512_cvttps_epi32(fn);
  const __m512i n1 = _mm512_srai_epi32(_mm512_add_epi32(n, _mm512_srli_epi32(n, 31)), 1);
  const __m512i n2 = _mm512_sub_epi32(n, n1), b = _mm512_set1_epi32(127);
  const __m512 y = _mm512_mul_ps(
      _mm512_mul_ps(e, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n1, b), 23))),
      _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n2, b), 23)));
  __m512 out = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, F(88.7228394f), _CMP_GT_OQ), y,
                                    _mm512_castsi512_ps(_mm512_set1_epi32(0x7f800000)));
  out = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, F(-103.972084f), _CMP_LT_OQ), out, F(0.0f));
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), out, x);
#undef F
}

/* Softmax over contiguous rows, 16 floats at a time: the scalar loop's
 * maximum rule (a NaN is never the maximum, then makes every exp NaN), exp16
 * for expf (within 2 ulp, mlcrt.h), the sum in double (two 8-lane partial
 * sums, added at the end) and the same final step. */
__attribute__((target("avx512f"))) static void
softmax_rows_avx512(const float *x, int64_t rows, int64_t n, int take_log, float *y) {
  for (int64_t o = 0; o < rows; o++) {
    const float *xr = x + o * n;
    float *yr = y + o * n;
    __m512 m = _mm512_set1_ps(-INFINITY);
    for (int64_t k = 0; k < n; k += 16) {
      const __mmask16 t = n - k >= 16 ? 0xffff : (__mmask16)((1u << (n - k)) - 1);
      const __m512 v = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), t, xr + k);
      m = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, m, _CMP_GT_OQ), m, v);
    }
    float lanes[16], mx = -INFINITY;
    _mm512_storeu_ps(lanes, m);
    for (int l = 0; l < 16; l++) mx = lanes[l] > mx ? lanes[l] : mx;
    const __m512 mv = _mm512_set1_ps(mx);
    __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
    for (int64_t k = 0; k < n; k += 16) {
      const __mmask16 t = n - k >= 16 ? 0xffff : (__mmask16)((1u << (n - k)) - 1);
      const __m512 e =
          _mm512_maskz_mov_ps(t, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(t, xr + k), mv)));
      s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
      s1 = _mm512_add_pd(
          s1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
      if (!take_log) _mm512_mask_storeu_ps(yr + k, t, e); /* x and y may alias: after the read */
    }
    double part[8], sum = 0.0;
    _mm512_storeu_pd(part, _mm512_add_pd(s0, s1));
    for (int l = 0; l < 8; l++) sum += part[l];
    const float ls = take_log ? (float)log(sum) : (float)(1.0 / sum);
    const __m512 lv = _mm512_set1_ps(ls);
    for (int64_t k = 0; k < n; k += 16) {
      const __mmask16 t = n - k >= 16 ? 0xffff : (__mmask16)((1u << (n - k)) - 1);
      if (take_log)
        _mm512_mask_storeu_ps(
            yr + k, t, _mm512_sub_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(t, xr + k), mv), lv));
      else
        _mm512_mask_storeu_ps(yr + k, t, _mm512_mul_ps(_mm512_maskz_loadu_ps(t, yr + k), lv));
    }
  }
}
#endif

void mlcrt_softmax_f32(const float *x, int64_t outer, int64_t n, int64_t inner, int take_log,
                       float *y) {
  if (n <= 0 || inner <= 0) return;
#if defined(__x86_64__) && defined(__GNUC__)
  if (inner == 1 && mlcrt_cpu_isa() == MLCRT_ISA_AVX512) { /* the last dim: rows */
    softmax_rows_avx512(x, outer, n, take_log, y);
    return;
  }
#endif
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
