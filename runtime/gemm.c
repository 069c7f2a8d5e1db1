/* gemm.c — single-precision matrix multiply and the ops built on it
 * (matmul with torch.matmul semantics, linear).
 *
 * mlcrt_sgemm is a plain-C blocked GEMM in the style of BLIS/GotoBLAS, sized
 * so that all scratch lives on the stack (no allocation, about 66 KB):
 *   - op(B) is packed KC x NC at a time into panels of NR columns, each panel
 *     stored k-major so the micro-kernel reads it contiguously;
 *   - op(A) is packed MR rows at a time (scaled by alpha), k-major;
 *   - the micro-kernel keeps an MR x NR tile of C in a local array that the
 *     compiler holds in vector registers; its inner loop over NR is constant
 *     length and contiguous, which gcc and clang vectorise at -O2.
 * Packing handles every trans_a/trans_b combination and any lda/ldb, and pads
 * ragged edges with zeros, so the kernel has no edge cases; only the final
 * add into C is clipped.
 *
 * beta == 0 overwrites C without reading it (C may hold garbage or NaN), as
 * BLAS specifies.  Summation order is fixed by the blocking alone, so results
 * are bit-identical from run to run.
 */
#include "mlcrt.h"

#include <string.h>

#define MR 4
#define NR 16
#define KC 128
#define NC 128 /* multiple of NR */

/* C[0:MR, 0:NR] tile = sum_k ap[k][0:MR] (x) bp[k][0:NR]. */
static void micro_kernel(int64_t kc, const float *restrict ap, const float *restrict bp,
                         float acc[MR][NR]) {
  float c[MR][NR];
  for (int r = 0; r < MR; r++)
    for (int j = 0; j < NR; j++) c[r][j] = 0.0f;
  for (int64_t k = 0; k < kc; k++) {
    const float *b = bp + k * NR;
    const float *a = ap + k * MR;
    for (int r = 0; r < MR; r++)
      for (int j = 0; j < NR; j++) c[r][j] += a[r] * b[j];
  }
  memcpy(acc, c, sizeof c);
}

/* The same for the last, partial strip of mr < MR rows (no padded rows
 * computed: matters for small M, e.g. a batch of one). */
static void micro_kernel_tail(int64_t kc, int mr, const float *restrict ap,
                              const float *restrict bp, float acc[MR][NR]) {
  for (int r = 0; r < mr; r++)
    for (int j = 0; j < NR; j++) acc[r][j] = 0.0f;
  for (int64_t k = 0; k < kc; k++) {
    const float *b = bp + k * NR;
    const float *a = ap + k * MR;
    for (int r = 0; r < mr; r++)
      for (int j = 0; j < NR; j++) acc[r][j] += a[r] * b[j];
  }
}

void mlcrt_sgemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                 const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                 int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  /* C = beta * C first; the products are then accumulated into C. */
  for (int64_t i = 0; i < M; i++) {
    float *c = C + i * ldc;
    if (beta == 0.0f) {
      for (int64_t j = 0; j < N; j++) c[j] = 0.0f;
    } else if (beta != 1.0f) {
      for (int64_t j = 0; j < N; j++) c[j] *= beta;
    }
  }
  if (K <= 0 || alpha == 0.0f) return;

  /* Element strides of op(A) (row i, column k) and op(B) (row k, column j). */
  const int64_t a_si = trans_a ? 1 : lda, a_sk = trans_a ? lda : 1;
  const int64_t b_sk = trans_b ? 1 : ldb, b_sj = trans_b ? ldb : 1;

  float bpack[KC * NC];
  float apack[KC * MR];
  float acc[MR][NR];

  for (int64_t jc = 0; jc < N; jc += NC) {
    const int64_t nc = N - jc < NC ? N - jc : NC;
    const int64_t npanels = (nc + NR - 1) / NR;
    for (int64_t pc = 0; pc < K; pc += KC) {
      const int64_t kc = K - pc < KC ? K - pc : KC;
      /* Pack op(B)[pc:pc+kc, jc:jc+nc] into panels of NR columns. */
      for (int64_t p = 0; p < npanels; p++) {
        float *dst = bpack + p * kc * NR;
        const int64_t j0 = jc + p * NR;
        const int64_t nj = N - j0 < NR ? N - j0 : NR;
        for (int64_t k = 0; k < kc; k++) {
          const float *src = B + (pc + k) * b_sk + j0 * b_sj;
          float *d = dst + k * NR;
          int64_t j = 0;
          if (b_sj == 1)
            for (; j < nj; j++) d[j] = src[j];
          else
            for (; j < nj; j++) d[j] = src[j * b_sj];
          for (; j < NR; j++) d[j] = 0.0f;
        }
      }
      for (int64_t ic = 0; ic < M; ic += MR) {
        const int64_t mr = M - ic < MR ? M - ic : MR;
        /* Pack alpha * op(A)[ic:ic+mr, pc:pc+kc], k-major, zero-padded. */
        for (int64_t k = 0; k < kc; k++) {
          const float *src = A + ic * a_si + (pc + k) * a_sk;
          int64_t r = 0;
          for (; r < mr; r++) apack[k * MR + r] = alpha * src[r * a_si];
          for (; r < MR; r++) apack[k * MR + r] = 0.0f;
        }
        for (int64_t p = 0; p < npanels; p++) {
          const int64_t j0 = jc + p * NR;
          const int64_t nj = N - j0 < NR ? N - j0 : NR;
          if (mr == MR)
            micro_kernel(kc, apack, bpack + p * kc * NR, acc);
          else
            micro_kernel_tail(kc, (int)mr, apack, bpack + p * kc * NR, acc);
          for (int64_t r = 0; r < mr; r++) {
            float *c = C + (ic + r) * ldc + j0;
            for (int64_t j = 0; j < nj; j++) c[j] += acc[r][j];
          }
        }
      }
    }
  }
}

/* ---- matmul ------------------------------------------------------------------- */

void mlcrt_matmul_f32(const float *a, int ra, const int64_t *ashape, const float *b, int rb,
                      const int64_t *bshape, float *y, int yr, const int64_t *yshape) {
  /* torch.matmul: a 1-D a is [1, K] and a 1-D b is [K, 1], with that dim
   * dropped from the result; leading dims broadcast NumPy-style. */
  const int64_t K = ashape[ra - 1];
  const int64_t M = ra >= 2 ? ashape[ra - 2] : 1;
  const int64_t N = rb >= 2 ? bshape[rb - 1] : 1;
  const int abr = ra > 2 ? ra - 2 : 0, bbr = rb > 2 ? rb - 2 : 0;
  int ybr = yr - (ra >= 2) - (rb >= 2); /* batch rank of the result */
  if (ybr < 0) ybr = 0;
  if (ybr > MLCRT_MAX_RANK || ra > MLCRT_MAX_RANK + 2 || rb > MLCRT_MAX_RANK + 2)
    return; /* the compiler never emits these ranks; refuse rather than overrun */
  const int64_t lda = K, ldb = rb >= 2 ? N : 1, ldc = N;

  /* Batch dims of the result, and element strides of a's and b's matrices
   * along them (0 where that operand broadcasts). */
  int64_t bdims[MLCRT_MAX_RANK], as[MLCRT_MAX_RANK], bs[MLCRT_MAX_RANK];
  int64_t astep = M * K, bstep = K * N, nbatch = 1;
  int a_full = 1, b_bcast = 1; /* a covers every batch index; b is one matrix */
  for (int d = ybr - 1; d >= 0; d--) {
    const int da = d - (ybr - abr), db = d - (ybr - bbr); /* right-aligned */
    bdims[d] = yshape[d];
    nbatch *= yshape[d];
    as[d] = (da >= 0 && ashape[da] != 1) ? astep : 0;
    bs[d] = (db >= 0 && bshape[db] != 1) ? bstep : 0;
    if (da >= 0) astep *= ashape[da];
    if (db >= 0) bstep *= bshape[db];
    if (yshape[d] != 1 && as[d] == 0) a_full = 0;
    if (yshape[d] != 1 && bs[d] != 0) b_bcast = 0;
  }
  if (nbatch == 0 || M == 0 || N == 0) return;

  /* Common case x[..., M, K] @ w[K, N]: one GEMM over all rows of a. */
  if (b_bcast && a_full && ra >= 2) {
    mlcrt_sgemm(0, 0, nbatch * M, N, K, 1.0f, a, lda, b, ldb, 0.0f, y, ldc);
    return;
  }
  int64_t idx[MLCRT_MAX_RANK] = {0};
  int64_t aoff = 0, boff = 0;
  for (int64_t t = 0; t < nbatch; t++) {
    mlcrt_sgemm(0, 0, M, N, K, 1.0f, a + aoff, lda, b + boff, ldb, 0.0f, y + t * M * N, ldc);
    /* Odometer increment of the batch index. */
    for (int d = ybr - 1; d >= 0; d--) {
      aoff += as[d];
      boff += bs[d];
      if (++idx[d] < bdims[d]) break;
      aoff -= as[d] * bdims[d];
      boff -= bs[d] * bdims[d];
      idx[d] = 0;
    }
  }
}

void mlcrt_linear_f32(const float *x, int64_t M, int64_t K, const float *w, int64_t N,
                      const float *b, float *y) {
  if (M <= 0 || N <= 0) return;
  if (b) {
    for (int64_t i = 0; i < M; i++) memcpy(y + i * N, b, (size_t)N * sizeof *y);
    mlcrt_sgemm(0, 1, M, N, K, 1.0f, x, K, w, K, 1.0f, y, N);
  } else {
    mlcrt_sgemm(0, 1, M, N, K, 1.0f, x, K, w, K, 0.0f, y, N);
  }
}
