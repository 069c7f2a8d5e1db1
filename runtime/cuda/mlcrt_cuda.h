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
 *     mlcrt_cuda *cu = mlcrt_cuda_create(opts, dev_bytes, host_bytes, err);
 *     if (!cu) ... err says why (no device, no driver, out of memory)
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
 * of pinned host memory (both zeroed).  Returns NULL with the reason in err:
 * no CUDA driver, no device, a bad device index, out of memory. */
mlcrt_cuda *mlcrt_cuda_create(const mlcrt_options *opts, size_t dev_bytes, size_t host_bytes,
                              int precision, char *err);
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

#ifdef __cplusplus
}
#endif
#endif
