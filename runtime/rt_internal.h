/* rt_internal.h — helpers shared by the runtime's file readers and writers.
 * Not installed; generated code never sees these.  Names start with mlcrt__
 * so they cannot clash with user symbols. */
#ifndef MLCRT_RT_INTERNAL_H
#define MLCRT_RT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "mlcrt.h"

/* The file formats are little-endian and the runtime copies tensor bytes
 * straight to memory, so the host must be little-endian too (x86, ARM). */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#error "libmlcrt assumes a little-endian host"
#endif

/* Reads exactly n bytes at offset off; retries short reads and EINTR.
 * Returns 0, or -1 with errno set (errno 0 means end of file came first). */
int mlcrt__pread_full(int fd, void *buf, size_t n, uint64_t off);
/* Writes exactly n bytes; returns 0 or -1 with errno set. */
int mlcrt__write_full(int fd, const void *buf, size_t n);
/* Copies s into buf (cap >= 8) for use inside an error message: printable
 * ASCII as is, anything else as \xHH, cut with "..." when too long.  File
 * contents are hostile: a name must not smuggle escape sequences into a
 * terminal.  Returns buf. */
const char *mlcrt__quote(const char *s, char *buf, size_t cap);
/* Number of elements of a shape, or -1 if a dim is negative or the product
 * (times elem_size, when that is nonzero) does not fit in int64/size_t. */
int64_t mlcrt__numel(const int64_t *shape, int rank, size_t elem_size);
/* Tied parameters: descriptors with the same offset, dtype and non-empty
 * shape are one tensor under several names.  Sets orig[i] to the index of
 * the first descriptor of desc[i]'s group (i itself when it is first). */
void mlcrt__tie_origins(const mlcrt_tensor_desc *desc, int n, int *orig);
/* A pool with 2x2 windows, stride 2, no padding, every window inside the
 * input: the unrolled fast path of max_pool2d and its gradient (pool.c). */
int mlcrt__pool_is_2x2(const mlcrt_pool2d_params *p);
/* Direct convolution for a tiny kernel volume (conv_direct.c): whether it
 * takes (p, op), how many members share the images, the floats of one
 * member's scratch, and the kernel (same arguments as conv.c's). */
int mlcrt__conv_direct_ok(const mlcrt_conv2d_params *p, int op);
int mlcrt__conv_direct_tasks(const mlcrt_conv2d_params *p, int nthreads);
size_t mlcrt__conv_direct_slot(const mlcrt_conv2d_params *p, int op);
void mlcrt__conv_direct(mlcrt_team *team, const mlcrt_conv2d_params *p, int op, const float *x,
                        const float *w, const float *b, const float *dy, float *y, void *scratch);
/* A GEMM whose B is never stored: fn packs rows k0..k0+kc and columns
 * j0..j0+nj of the virtual K x N matrix B into dst[k * NR + j] (zero for
 * nj <= j < NR), as gemm.c packs a stored B, and may write anything to the
 * 16 floats after dst[kc * NR - 1] (whole-vector stores).  The
 * convolution's unfolded input (implicit GEMM: conv.c). */
typedef struct mlcrt__bpacker {
  void (*fn)(const void *ctx, int64_t k0, int64_t kc, int64_t j0, int64_t nj, int NR, float *dst);
  const void *ctx;
} mlcrt__bpacker;
/* fn(ctx, lo, hi) over [0, total) cut into contiguous slices of
 * ceil(total / n) items, n the team's size (1 without a team or below 64K
 * units of work, the caller's estimate): each item is handled by the same
 * code whoever runs it, so results do not depend on timing.  The pools,
 * max_pool2d's backward, batch_norm and layer_norm split this way. */
typedef void (*mlcrt__range_fn)(void *ctx, int64_t lo, int64_t hi);
void mlcrt__ranges(mlcrt_team *t, int64_t total, double work, mlcrt__range_fn fn, void *ctx);
/* The machine's physical memory in bytes (SIZE_MAX when unknown): the bound
 * mlcrt_alloc and the CUDA runtime's pinned allocations refuse to pass. */
size_t mlcrt__phys_bytes(void);
/* An epilogue seen from a GEMM that computes part of its rows: the GEMM's
 * row r is the epilogue's row off + r (one batch of a matmul, one image and
 * group of a convolution).  ctx of mlcrt__shifted_tile. */
typedef struct mlcrt__shifted_epi {
  const mlcrt_epilogue *inner;
  int64_t off;
} mlcrt__shifted_epi;
void mlcrt__shifted_tile(void *ctx, int64_t r0, int64_t r1, int64_t c0, int64_t c1);
/* Member `member` of t as a team of one: t's instruction set and that
 * member's workspace, no threads.  A task of t that runs a whole kernel by
 * itself passes it (NULL would mean the CPU's instruction set and the
 * stack).  t itself when t is NULL or has one member. */
mlcrt_team *mlcrt__team_solo(mlcrt_team *t, int member);

/* mlcrt_sgemm_epi with the kernels of instruction set isa (MLCRT_ISA_*), or
 * for isa < 0 the team's, else the CPU's: a kernel that runs GEMMs on one
 * member each (team NULL) keeps to its team's instruction set. */
void mlcrt__sgemm_isa(mlcrt_team *team, int isa, int trans_a, int trans_b, int64_t M, int64_t N,
                      int64_t K, float alpha, const float *A, int64_t lda, const float *B,
                      int64_t ldb, float beta, float *C, int64_t ldc, const mlcrt_epilogue *epi);
/* C = A B + beta C with A row-major (lda) and B given by bp; threads,
 * instruction set and epilogue as mlcrt__sgemm_isa. */
void mlcrt__sgemm_packb(mlcrt_team *team, int isa, int64_t M, int64_t N, int64_t K, const float *A,
                        int64_t lda, const float *apacked, const mlcrt__bpacker *bp, float beta,
                        float *C, int64_t ldc, const mlcrt_epilogue *epi);
/* A [M, K] (row-major, lda) packed once for the kernels of instruction set
 * isa, for many mlcrt__sgemm_packb calls with that A (a convolution's weights
 * over its chunks of images): their apacked argument (NULL: they pack A
 * themselves).  The GEMM must run on the same instruction set.  dst holds
 * mlcrt__apack_floats(M, K) floats. */
size_t mlcrt__apack_floats(int64_t M, int64_t K);
/* Whether mlcrt__sgemm_packb of N columns and depth K packs its operands
 * (else B is stored whole and A read in place: apacked is not used). */
int mlcrt__packb_packs(int64_t N, int64_t K);
void mlcrt__gemm_pack_a(int isa, int64_t M, int64_t K, const float *A, int64_t lda, float *dst);

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* 2x2 stride-2 pooling, AVX-512 (pool.c's forward, grad.c's gradient): the
 * windows ow..ow+n-1 (n <= 16) of the row pair r0, r1 de-interleaved into
 * v[0..3] (top-left, top-right, bottom-left, bottom-right; zeros past n),
 * with the masks of the first and second 16 floats of each input row. */
typedef struct {
  __m512 v[4];
  __mmask16 m0, m1;
} mlcrt__windows2x2;
__attribute__((target("avx512f"), always_inline)) static inline mlcrt__windows2x2
mlcrt__load_windows2x2(const float *r0, const float *r1, int64_t ow, int64_t n) {
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
  mlcrt__windows2x2 w;
  w.m0 = (__mmask16)(n >= 8 ? 0xffffu : (1u << (2 * n)) - 1);
  w.m1 = (__mmask16)(n <= 8 ? 0 : (1u << (2 * (n - 8))) - 1);
  const __m512 x0l = _mm512_maskz_loadu_ps(w.m0, r0 + 2 * ow),
               x0h = _mm512_maskz_loadu_ps(w.m1, r0 + 2 * ow + 16);
  const __m512 x1l = _mm512_maskz_loadu_ps(w.m0, r1 + 2 * ow),
               x1h = _mm512_maskz_loadu_ps(w.m1, r1 + 2 * ow + 16);
  w.v[0] = _mm512_permutex2var_ps(x0l, even, x0h), w.v[1] = _mm512_permutex2var_ps(x0l, odd, x0h);
  w.v[2] = _mm512_permutex2var_ps(x1l, even, x1h), w.v[3] = _mm512_permutex2var_ps(x1l, odd, x1h);
  return w;
}
#endif

#endif
