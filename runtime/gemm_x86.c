/* gemm_x86.c — GEMM micro-kernels for x86-64: AVX2+FMA (6 x 16 tile) and
 * AVX-512 (12 x 32 tile).  Each function carries its own target attribute, so
 * the rest of the runtime stays portable and the right kernel is chosen at run
 * time (mlcrt_cpu_isa).  The tile sizes keep every accumulator in a register:
 * 12 of the 16 ymm registers, 24 of the 32 zmm registers, plus the two B
 * vectors and one broadcast of A per step.
 */
#if defined(__x86_64__)
#include <immintrin.h>
#include <string.h>

#include "gemm_kernels.h"

/* The micro-kernels are one template each, instantiated for a row count R
 * (a compile-time constant after inlining): the accumulators acc[R][2] are
 * fully unrolled into registers.  bs is B's stride per k: NR for a packed
 * panel, ldb when the kernel reads B in place (a single row panel of A). */

/* ---- packing a transposed operand (both instruction sets) -------------------- */

/* dst[k * NR + j] = src[j * ld + k]: 8 x 8 blocks transposed in registers
 * (unpack, shuffle, lane permute), so that the rows of src are read and the
 * k-major panel written eight floats at a time instead of one. */
__attribute__((target("avx2"))) static void pack_t_avx(const float *src, int64_t ld, int64_t kc,
                                                       int64_t nj, int NR, float *dst) {
  int64_t j = 0;
  for (; j + 8 <= nj; j += 8) {
    const float *s = src + j * ld;
    int64_t k = 0;
    for (; k + 8 <= kc; k += 8) {
      __m256 r0 = _mm256_loadu_ps(s + 0 * ld + k), r1 = _mm256_loadu_ps(s + 1 * ld + k);
      __m256 r2 = _mm256_loadu_ps(s + 2 * ld + k), r3 = _mm256_loadu_ps(s + 3 * ld + k);
      __m256 r4 = _mm256_loadu_ps(s + 4 * ld + k), r5 = _mm256_loadu_ps(s + 5 * ld + k);
      __m256 r6 = _mm256_loadu_ps(s + 6 * ld + k), r7 = _mm256_loadu_ps(s + 7 * ld + k);
      __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
      __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
      __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
      __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
      __m256 u0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
      __m256 u1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
      __m256 u2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
      __m256 u3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
      __m256 u4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
      __m256 u5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
      __m256 u6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
      __m256 u7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
      float *d = dst + k * NR + j;
      _mm256_storeu_ps(d + 0 * NR, _mm256_permute2f128_ps(u0, u4, 0x20));
      _mm256_storeu_ps(d + 1 * NR, _mm256_permute2f128_ps(u1, u5, 0x20));
      _mm256_storeu_ps(d + 2 * NR, _mm256_permute2f128_ps(u2, u6, 0x20));
      _mm256_storeu_ps(d + 3 * NR, _mm256_permute2f128_ps(u3, u7, 0x20));
      _mm256_storeu_ps(d + 4 * NR, _mm256_permute2f128_ps(u0, u4, 0x31));
      _mm256_storeu_ps(d + 5 * NR, _mm256_permute2f128_ps(u1, u5, 0x31));
      _mm256_storeu_ps(d + 6 * NR, _mm256_permute2f128_ps(u2, u6, 0x31));
      _mm256_storeu_ps(d + 7 * NR, _mm256_permute2f128_ps(u3, u7, 0x31));
    }
    for (; k < kc; k++)
      for (int q = 0; q < 8; q++) dst[k * NR + j + q] = s[q * ld + k];
  }
  for (; j + 4 <= nj; j += 4) { /* 4 x 4 blocks: the last rows of a 12- or 6-row panel */
    const float *s = src + j * ld;
    int64_t k = 0;
    for (; k + 4 <= kc; k += 4) {
      __m128 r0 = _mm_loadu_ps(s + k), r1 = _mm_loadu_ps(s + ld + k);
      __m128 r2 = _mm_loadu_ps(s + 2 * ld + k), r3 = _mm_loadu_ps(s + 3 * ld + k);
      _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
      float *d = dst + k * NR + j;
      _mm_storeu_ps(d, r0);
      _mm_storeu_ps(d + NR, r1);
      _mm_storeu_ps(d + 2 * NR, r2);
      _mm_storeu_ps(d + 3 * NR, r3);
    }
    for (; k < kc; k++)
      for (int q = 0; q < 4; q++) dst[k * NR + j + q] = s[q * ld + k];
  }
  for (; j < nj; j++)
    for (int64_t k = 0; k < kc; k++) dst[k * NR + j] = src[j * ld + k];
  if (nj < NR)
    for (int64_t k = 0; k < kc; k++)
      for (int64_t q = nj; q < NR; q++) dst[k * NR + q] = 0.0f;
}

/* ---- AVX2 + FMA: 6 x 16 ---------------------------------------------------- */

#define A2_MR 6
#define A2_NR 16

__attribute__((target("avx2,fma"), always_inline)) static inline void
tile_avx2(const int R, int64_t kc, const float *ap, const float *bp, int64_t bs, float *c,
          int64_t ldc, int mr, int nr, float beta) {
  __m256 acc[A2_MR][2];
#pragma GCC unroll 6
  for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; k++) {
    const __m256 b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8);
#pragma GCC unroll 6
    for (int r = 0; r < R; r++) {
      const __m256 a = _mm256_broadcast_ss(ap + r);
      acc[r][0] = _mm256_fmadd_ps(a, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(a, b1, acc[r][1]);
    }
    ap += A2_MR;
    bp += bs;
  }
  if (mr == R && nr == A2_NR) {
    const __m256 vb = _mm256_set1_ps(beta);
#pragma GCC unroll 6
    for (int r = 0; r < R; r++) {
      float *cr = c + r * ldc;
      if (beta == 0.0f) {
        _mm256_storeu_ps(cr, acc[r][0]);
        _mm256_storeu_ps(cr + 8, acc[r][1]);
      } else {
        _mm256_storeu_ps(cr, _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr), acc[r][0]));
        _mm256_storeu_ps(cr + 8, _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr + 8), acc[r][1]));
      }
    }
    return;
  }
  float t[A2_MR][A2_NR];
#pragma GCC unroll 6
  for (int r = 0; r < R; r++) {
    _mm256_storeu_ps(t[r], acc[r][0]);
    _mm256_storeu_ps(t[r] + 8, acc[r][1]);
  }
  for (int r = 0; r < mr; r++)
    for (int j = 0; j < nr; j++)
      c[r * ldc + j] = beta == 0.0f ? t[r][j] : beta * c[r * ldc + j] + t[r][j];
}

__attribute__((target("avx2,fma"))) static void kernel_avx2(int64_t kc, const float *ap,
                                                            const float *bp, int64_t bs, float *c,
                                                            int64_t ldc, int mr, int nr,
                                                            float beta) {
  if (mr <= 3)
    tile_avx2(3, kc, ap, bp, bs, c, ldc, mr, nr, beta);
  else
    tile_avx2(A2_MR, kc, ap, bp, bs, c, ldc, mr, nr, beta);
}

__attribute__((target("avx2,fma"))) static float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma"))) static void gemv_avx2(int64_t N, int64_t K, float alpha,
                                                          const float *a, const float *b,
                                                          int64_t ldb, float beta, float *y) {
  int64_t j = 0;
  for (; j + 4 <= N; j += 4) { /* four rows of b at once: a is loaded once for all */
    const float *b0 = b + j * ldb, *b1 = b0 + ldb, *b2 = b1 + ldb, *b3 = b2 + ldb;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(),
           s3 = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
      const __m256 av = _mm256_loadu_ps(a + k);
      s0 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b0 + k), s0);
      s1 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b1 + k), s1);
      s2 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b2 + k), s2);
      s3 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b3 + k), s3);
    }
    float r[4] = {hsum256(s0), hsum256(s1), hsum256(s2), hsum256(s3)};
    for (; k < K; k++) {
      r[0] += a[k] * b0[k];
      r[1] += a[k] * b1[k];
      r[2] += a[k] * b2[k];
      r[3] += a[k] * b3[k];
    }
    for (int q = 0; q < 4; q++) y[j + q] = alpha * r[q] + (beta == 0.0f ? 0.0f : beta * y[j + q]);
  }
  for (; j < N; j++) {
    const float *bj = b + j * ldb;
    __m256 s = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= K; k += 8)
      s = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(bj + k), s);
    float r = hsum256(s);
    for (; k < K; k++) r += a[k] * bj[k];
    y[j] = alpha * r + (beta == 0.0f ? 0.0f : beta * y[j]);
  }
}

static void dots_avx2(int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                      const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
  mlcrt__dots_by_rows(&mlcrt__gemm_avx2, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

const mlcrt__gemm_isa mlcrt__gemm_avx2 = {"avx2", A2_MR,       A2_NR,     256,       96,
                                          1024,   kernel_avx2, gemv_avx2, dots_avx2, pack_t_avx};

/* ---- AVX-512: 12 x 32 ------------------------------------------------------ */

#define A5_MR 12
#define A5_NR 32

__attribute__((target("avx512f"), always_inline)) static inline void
tile_avx512(const int R, int64_t kc, const float *ap, const float *bp, int64_t bs, float *c,
            int64_t ldc, int mr, int nr, float beta) {
  __m512 acc[A5_MR][2];
#pragma GCC unroll 12
  for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; k++) {
    const __m512 b0 = _mm512_loadu_ps(bp), b1 = _mm512_loadu_ps(bp + 16);
#pragma GCC unroll 12
    for (int r = 0; r < R; r++) {
      const __m512 a = _mm512_set1_ps(ap[r]);
      acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);
    }
    ap += A5_MR;
    bp += bs;
  }
  const __m512 vb = _mm512_set1_ps(beta);
  if (mr == R && nr == A5_NR) {
#pragma GCC unroll 12
    for (int r = 0; r < R; r++) {
      float *cr = c + r * ldc;
      if (beta == 0.0f) {
        _mm512_storeu_ps(cr, acc[r][0]);
        _mm512_storeu_ps(cr + 16, acc[r][1]);
      } else {
        _mm512_storeu_ps(cr, _mm512_fmadd_ps(vb, _mm512_loadu_ps(cr), acc[r][0]));
        _mm512_storeu_ps(cr + 16, _mm512_fmadd_ps(vb, _mm512_loadu_ps(cr + 16), acc[r][1]));
      }
    }
    return;
  }
  /* a ragged tile: masked stores, rows beyond mr skipped */
  const __mmask16 m0 = (__mmask16)(nr >= 16 ? 0xFFFF : (1u << nr) - 1);
  const __mmask16 m1 = (__mmask16)(nr >= 32 ? 0xFFFF : nr <= 16 ? 0 : (1u << (nr - 16)) - 1);
#pragma GCC unroll 12
  for (int r = 0; r < R; r++) {
    if (r >= mr) break;
    float *cr = c + r * ldc;
    __m512 v0 = acc[r][0], v1 = acc[r][1];
    if (beta != 0.0f) {
      v0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, cr), v0);
      v1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, cr + 16), v1);
    }
    _mm512_mask_storeu_ps(cr, m0, v0);
    _mm512_mask_storeu_ps(cr + 16, m1, v1);
  }
}

/* 12 rows, or fewer for a short last panel (small M: a conv with few channels) */
__attribute__((target("avx512f"))) static void kernel_avx512(int64_t kc, const float *ap,
                                                             const float *bp, int64_t bs, float *c,
                                                             int64_t ldc, int mr, int nr,
                                                             float beta) {
  if (mr <= 4)
    tile_avx512(4, kc, ap, bp, bs, c, ldc, mr, nr, beta);
  else if (mr <= 6)
    tile_avx512(6, kc, ap, bp, bs, c, ldc, mr, nr, beta);
  else if (mr <= 8)
    tile_avx512(8, kc, ap, bp, bs, c, ldc, mr, nr, beta);
  else
    tile_avx512(A5_MR, kc, ap, bp, bs, c, ldc, mr, nr, beta);
}

__attribute__((target("avx512f"))) static void gemv_avx512(int64_t N, int64_t K, float alpha,
                                                           const float *a, const float *b,
                                                           int64_t ldb, float beta, float *y) {
  const __mmask16 tail = (__mmask16)((1u << (K & 15)) - 1);
  const int64_t K16 = K & ~(int64_t)15;
  int64_t j = 0;
  for (; j + 4 <= N; j += 4) {
    const float *b0 = b + j * ldb, *b1 = b0 + ldb, *b2 = b1 + ldb, *b3 = b2 + ldb;
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(),
           s3 = _mm512_setzero_ps();
    for (int64_t k = 0; k < K16; k += 16) {
      const __m512 av = _mm512_loadu_ps(a + k);
      s0 = _mm512_fmadd_ps(av, _mm512_loadu_ps(b0 + k), s0);
      s1 = _mm512_fmadd_ps(av, _mm512_loadu_ps(b1 + k), s1);
      s2 = _mm512_fmadd_ps(av, _mm512_loadu_ps(b2 + k), s2);
      s3 = _mm512_fmadd_ps(av, _mm512_loadu_ps(b3 + k), s3);
    }
    if (tail) {
      const __m512 av = _mm512_maskz_loadu_ps(tail, a + K16);
      s0 = _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(tail, b0 + K16), s0);
      s1 = _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(tail, b1 + K16), s1);
      s2 = _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(tail, b2 + K16), s2);
      s3 = _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(tail, b3 + K16), s3);
    }
    const float r[4] = {_mm512_reduce_add_ps(s0), _mm512_reduce_add_ps(s1),
                        _mm512_reduce_add_ps(s2), _mm512_reduce_add_ps(s3)};
    for (int q = 0; q < 4; q++) y[j + q] = alpha * r[q] + (beta == 0.0f ? 0.0f : beta * y[j + q]);
  }
  for (; j < N; j++) {
    const float *bj = b + j * ldb;
    __m512 s = _mm512_setzero_ps();
    for (int64_t k = 0; k < K16; k += 16)
      s = _mm512_fmadd_ps(_mm512_loadu_ps(a + k), _mm512_loadu_ps(bj + k), s);
    if (tail)
      s = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, a + K16),
                          _mm512_maskz_loadu_ps(tail, bj + K16), s);
    const float r = _mm512_reduce_add_ps(s);
    y[j] = alpha * r + (beta == 0.0f ? 0.0f : beta * y[j]);
  }
}

/* 4 rows of A by 4 rows of B per step: 16 accumulators, 8 loads per 16 FMAs.
 * Rows past the edge re-read row 0 and are discarded. */
__attribute__((target("avx512f"))) static void dots_avx512(int64_t M, int64_t N, int64_t K,
                                                           float alpha, const float *A, int64_t lda,
                                                           const float *B, int64_t ldb, float beta,
                                                           float *C, int64_t ldc) {
  const __mmask16 tail = (__mmask16)((1u << (K & 15)) - 1);
  const int64_t K16 = K & ~(int64_t)15;
  for (int64_t i = 0; i < M; i += 4) {
    const int mi = M - i < 4 ? (int)(M - i) : 4;
    const float *a[4];
    for (int r = 0; r < 4; r++) a[r] = A + (i + (r < mi ? r : 0)) * lda;
    for (int64_t j = 0; j < N; j += 4) {
      const int nj = N - j < 4 ? (int)(N - j) : 4;
      const float *b[4];
      for (int q = 0; q < 4; q++) b[q] = B + (j + (q < nj ? q : 0)) * ldb;
      __m512 acc[4][4];
#pragma GCC unroll 4
      for (int r = 0; r < 4; r++)
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++) acc[r][q] = _mm512_setzero_ps();
      for (int64_t k = 0; k <= K16; k += 16) {
        if (k == K16 && !tail) break;
        const __mmask16 m = k < K16 ? (__mmask16)0xFFFF : tail;
        __m512 av[4], bv[4];
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) av[r] = _mm512_maskz_loadu_ps(m, a[r] + k);
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++) bv[q] = _mm512_maskz_loadu_ps(m, b[q] + k);
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++)
#pragma GCC unroll 4
          for (int q = 0; q < 4; q++) acc[r][q] = _mm512_fmadd_ps(av[r], bv[q], acc[r][q]);
      }
      for (int r = 0; r < mi; r++)
        for (int q = 0; q < nj; q++) {
          float *c = C + (i + r) * ldc + j + q;
          const float v = alpha * _mm512_reduce_add_ps(acc[r][q]);
          *c = beta == 0.0f ? v : v + beta * *c;
        }
    }
  }
}

const mlcrt__gemm_isa mlcrt__gemm_avx512 = {
    "avx512", A5_MR, A5_NR, 256, 96, 1024, kernel_avx512, gemv_avx512, dots_avx512, pack_t_avx};

#else
typedef int mlcrt__gemm_x86_unused; /* ISO C: a translation unit may not be empty */
#endif
