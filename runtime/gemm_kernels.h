/* gemm_kernels.h — the GEMM micro-kernels and their blocking parameters, one
 * entry per instruction set (gemm.c drives them; gemm_x86.c holds the AVX2
 * and AVX-512 kernels).  Not installed. */
#ifndef MLCRT_GEMM_KERNELS_H
#define MLCRT_GEMM_KERNELS_H

#include <stdint.h>

/* C[0:mr, 0:nr] = beta * C + ap * bp, where ap is an MR x kc panel stored
 * k-major (MR values per k, zero-padded) and bp a kc x NR panel whose rows
 * are bs floats apart (NR when packed); beta == 0 writes C without reading
 * it. */
typedef void (*mlcrt__gemm_kernel)(int64_t kc, const float *ap, const float *bp, int64_t bs,
                                   float *c, int64_t ldc, int mr, int nr, float beta);
/* y[j] = alpha * dot(a[0:K], b[j*ldb : j*ldb+K]) + beta * y[j] for j < N
 * (beta == 0: y not read): the unpacked path for a single row times a
 * row-major weight matrix, i.e. linear at batch 1. */
typedef void (*mlcrt__gemv_kernel)(int64_t N, int64_t K, float alpha, const float *a,
                                   const float *b, int64_t ldb, float beta, float *y);

/* C = alpha * A B^T + beta * C for M rows of A and N rows of B, both
 * contiguous along K (beta == 0: C not read): dot products, no packing, for
 * a few long rows (a weight gradient summed over many output positions). */
typedef void (*mlcrt__dots_kernel)(int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                                   int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                                   int64_t ldc);

/* Packs a transposed operand: dst[k * NR + j] = src[j * ld + k] for k < kc,
 * j < nj (nj <= NR), zero for nj <= j < NR.  src's rows are contiguous in k:
 * op(B) = B^T (linear's weight) read as NR-column panels.  NULL: the scalar
 * loop of gemm.c. */
typedef void (*mlcrt__pack_t_fn)(const float *src, int64_t ld, int64_t kc, int64_t nj, int NR,
                                 float *dst);

typedef struct mlcrt__gemm_isa {
  const char *name;
  int mr, nr;     /* register tile */
  int kc, mc, nc; /* cache blocking: kc x nc panel of B, mc x kc block of A */
  mlcrt__gemm_kernel kernel;
  mlcrt__gemv_kernel gemv;
  mlcrt__dots_kernel dots;
  mlcrt__pack_t_fn pack_t; /* may be NULL */
} mlcrt__gemm_isa;

/* dots built from the ISA's gemv, one row of A at a time */
void mlcrt__dots_by_rows(const mlcrt__gemm_isa *k, int64_t M, int64_t N, int64_t K, float alpha,
                         const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                         float *C, int64_t ldc);

#if defined(__x86_64__)
extern const mlcrt__gemm_isa mlcrt__gemm_avx2, mlcrt__gemm_avx512;
#endif
extern const mlcrt__gemm_isa mlcrt__gemm_generic;

/* The table entry for an MLCRT_ISA_* value (one the CPU supports). */
const mlcrt__gemm_isa *mlcrt__gemm_for(int isa);

#endif
