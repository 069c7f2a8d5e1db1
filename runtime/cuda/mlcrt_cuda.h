/* mlcrt_cuda.h — the host side of the CUDA runtime (libmlcrt_cuda), what a
 * model generated with `mlc m.mdl -o m.cu` links besides libmlcrt.
 *
 * One mlcrt_cuda context per model instance holds everything the instance
 * needs on the device, made once at create:
 *   - the selected device and one stream (all work of the instance is
 *     ordered on it),
 *   - a cuBLAS handle bound to that stream, with its workspace (so GEMMs can
 *     be captured in a CUDA graph),
 *   - one device allocation (weights region, activation arena, input and
 *     output slots, a status block) and one pinned host allocation (a mirror
 *     of the weights region for load/save/init, and staging for inputs and
 *     outputs),
 *   - a small cache of captured CUDA graphs, keyed by a function slot (run,
 *     train step, evaluate) and the symbolic dims they were captured with.
 * Every CUDA and cuBLAS call is checked; a failure becomes an MLCRT_E*
 * status with text in the caller's err buffer (MLCRT_ERRLEN bytes).  Nothing
 * here exits or aborts.  Kernels live in mlcrt_kernels.cuh (device code only,
 * compiled into each generated .cu, and by NVRTC for the JIT).
 *
 * Example (what generated create does):
 *     int status;
 *     mlcrt_cuda *cu = mlcrt_cuda_create(opts, dev_bytes, host_bytes, MLCRT_PRECISION_F32,
 *                                        &status, err);
 *     if (!cu) ... err says why (no device, no driver, out of memory), status which
 *     unsigned char *d = mlcrt_cuda_device_base(cu), *h = mlcrt_cuda_host_base(cu);
 */
#ifndef MLCRT_CUDA_H
#define MLCRT_CUDA_H

#include "mlcrt.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mlcrt_cuda mlcrt_cuda;

/* Math precision of GEMMs: IEEE float32 (the default), or TF32 tensor cores
 * when asked (--precision tf32). */
enum { MLCRT_PRECISION_F32 = 0, MLCRT_PRECISION_TF32 = 1 };

/* Selects device opts->device_index (opts NULL: device 0), creates the
 * stream and cuBLAS handle, allocates dev_bytes on the device and host_bytes
 * of pinned host memory (both zeroed).  Returns NULL with the reason in err
 * and its status in *status (may be NULL; MLCRT_OK on success): no CUDA
 * driver or device (MLCRT_EUNSUPPORTED), a bad device index (MLCRT_EINVAL),
 * out of memory (MLCRT_ENOMEM). */
mlcrt_cuda *mlcrt_cuda_create(const mlcrt_options *opts, size_t dev_bytes, size_t host_bytes,
                              int precision, int *status, char *err);
void mlcrt_cuda_destroy(mlcrt_cuda *c);
unsigned char *mlcrt_cuda_device_base(mlcrt_cuda *c);
unsigned char *mlcrt_cuda_host_base(mlcrt_cuda *c);
/* The stream as a void * (a cudaStream_t) so this header needs no CUDA headers. */
void *mlcrt_cuda_stream(mlcrt_cuda *c);
/* The number of multiprocessors (launch sizing). */
int mlcrt_cuda_sm_count(const mlcrt_cuda *c);

/* Turns the last CUDA error (cudaGetLastError: a failed launch) into a
 * status with "what: <CUDA's text>" in err; MLCRT_OK if there was none. */
int mlcrt_cuda_check_launch(const char *what, char *err);

/* Asynchronous copies on the instance's stream (device <-> pinned host). */
int mlcrt_cuda_h2d(mlcrt_cuda *c, void *dst, const void *src, size_t n, char *err);
int mlcrt_cuda_d2h(mlcrt_cuda *c, void *dst, const void *src, size_t n, char *err);
int mlcrt_cuda_memset(mlcrt_cuda *c, void *dst, int v, size_t n, char *err);
/* Waits for the stream; a kernel fault surfaces here. */
int mlcrt_cuda_sync(mlcrt_cuda *c, char *err);

/* Runs enqueue(ctx) on the stream through a CUDA graph: the first call for
 * (slot, key) captures what enqueue puts on the stream and instantiates it;
 * later calls with the same key replay it; a different key (other dims)
 * captures again.  With $MLCRT_CUDA_GRAPHS=0 enqueue runs directly every
 * time.  enqueue returns a status (and writes err) if a launch failed. */
int mlcrt_cuda_graph_run(mlcrt_cuda *c, int slot, const int64_t *key, int nkey,
                         int (*enqueue)(void *ctx), void *ctx, char *err);

/* ---- GEMMs through cuBLAS (row-major, like mlcrt_sgemm) -------------------- */
/* C = alpha op(A) op(B) + beta C on the instance's stream. */
int mlcrt_cuda_sgemm(mlcrt_cuda *c, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                     float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                     float beta, float *C, int64_t ldc, char *err);
/* The same for `batch` products at fixed strides (a stride 0 broadcasts). */
int mlcrt_cuda_sgemm_batched(mlcrt_cuda *c, int trans_a, int trans_b, int64_t M, int64_t N,
                             int64_t K, const float *A, int64_t lda, int64_t stride_a,
                             const float *B, int64_t ldb, int64_t stride_b, float *C, int64_t ldc,
                             int64_t stride_c, int64_t batch, char *err);
/* torch.matmul with the shapes of mlcrt_matmul_f32 (1-D operands promoted,
 * batch dims broadcast), device pointers. */
int mlcrt_cuda_matmul(mlcrt_cuda *c, const float *a, int ra, const int64_t *ashape, const float *b,
                      int rb, const int64_t *bshape, float *y, int yr, const int64_t *yshape,
                      char *err);

/* How torch.matmul with the shapes of mlcrt_matmul_f32 (1-D operands
 * promoted, batch dims broadcast) splits into strided-batched row-major GEMMs
 * y[M,N] = a[M,K] b[K,N]: gemm(ctx, M, N, K, a offset, lda, a stride, b
 * offset, ldb, b stride, y offset, ldc, y stride, batch), offsets and strides
 * in elements.  Shared by mlcrt_cuda_matmul and the CUDA JIT (libmlc), which
 * have different GEMM calls.  Returns the first non-zero status of gemm. */
typedef int (*mlcrt_matmul_gemm_fn)(void *ctx, int64_t M, int64_t N, int64_t K, int64_t aoff,
                                    int64_t lda, int64_t sa, int64_t boff, int64_t ldb, int64_t sb,
                                    int64_t yoff, int64_t ldc, int64_t sc, int64_t batch);
static inline int mlcrt_matmul_plan(int ra, const int64_t *ashape, int rb, const int64_t *bshape,
                                    int yr, const int64_t *yshape, mlcrt_matmul_gemm_fn gemm,
                                    void *ctx, char *err) {
  const int64_t K = ashape[ra - 1];
  const int64_t M = ra >= 2 ? ashape[ra - 2] : 1;
  const int64_t N = rb >= 2 ? bshape[rb - 1] : 1;
  const int abr = ra > 2 ? ra - 2 : 0, bbr = rb > 2 ? rb - 2 : 0;
  int ybr = yr - (ra >= 2) - (rb >= 2);
  if (ybr < 0) ybr = 0;
  if (ybr > MLCRT_MAX_RANK || ra > MLCRT_MAX_RANK + 2 || rb > MLCRT_MAX_RANK + 2)
    return mlcrt_seterr(err, MLCRT_EUNSUPPORTED, "matmul: rank too large");
  const int64_t lda = K, ldb = rb >= 2 ? N : 1, ldc = N;
  int64_t as[MLCRT_MAX_RANK], bs[MLCRT_MAX_RANK], bdims[MLCRT_MAX_RANK];
  int64_t astep = M * K, bstep = K * N, nbatch = 1;
  for (int d = ybr - 1; d >= 0; d--) {
    const int da = d - (ybr - abr), db = d - (ybr - bbr);
    bdims[d] = yshape[d];
    nbatch *= yshape[d];
    as[d] = (da >= 0 && ashape[da] != 1) ? astep : 0;
    bs[d] = (db >= 0 && bshape[db] != 1) ? bstep : 0;
    if (da >= 0) astep *= ashape[da];
    if (db >= 0) bstep *= bshape[db];
  }
  if (nbatch == 0 || M == 0 || N == 0) return MLCRT_OK;
  /* One strided-batched GEMM when each operand's offset is a fixed multiple
   * of the flat batch index (dense, or one matrix broadcast to all); else one
   * GEMM per batch index. */
  int a_dense = 1, a_one = 1, b_dense = 1, b_one = 1;
  int64_t sa = M * K, sb = K * N;
  for (int d = ybr - 1; d >= 0; d--) {
    if (bdims[d] == 1) continue;
    if (as[d] != 0) a_one = 0;
    if (bs[d] != 0) b_one = 0;
    if (as[d] != sa) a_dense = 0;
    if (bs[d] != sb) b_dense = 0;
    sa *= bdims[d], sb *= bdims[d];
  }
  if ((a_dense || a_one) && (b_dense || b_one)) {
    if (a_dense && b_one && ra >= 2) /* x[..., M, K] @ w[K, N]: one GEMM over all rows */
      return gemm(ctx, nbatch * M, N, K, 0, lda, 0, 0, ldb, 0, 0, ldc, 0, 1);
    return gemm(ctx, M, N, K, 0, lda, a_one ? 0 : M * K, 0, ldb, b_one ? 0 : K * N, 0, ldc, M * N,
                nbatch);
  }
  int64_t idx[MLCRT_MAX_RANK] = {0}, aoff = 0, boff = 0;
  for (int64_t t = 0; t < nbatch; t++) {
    int rc = gemm(ctx, M, N, K, aoff, lda, 0, boff, ldb, 0, t * M * N, ldc, 0, 1);
    if (rc) return rc;
    for (int d = ybr - 1; d >= 0; d--) { /* odometer */
      aoff += as[d], boff += bs[d];
      if (++idx[d] < bdims[d]) break;
      aoff -= as[d] * bdims[d], boff -= bs[d] * bdims[d];
      idx[d] = 0;
    }
  }
  return MLCRT_OK;
}

#ifdef __cplusplus
}
#endif
#endif
