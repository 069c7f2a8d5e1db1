/* runtime/cuda/mlcrt_cuda.c — the host side of the CUDA runtime: device
 * selection, the instance's stream, cuBLAS handle and memory, checked copies,
 * CUDA graph capture and replay, and GEMMs through cuBLAS.  See mlcrt_cuda.h.
 *
 * Plain C over the CUDA runtime API and cuBLAS (both have C headers), so the
 * library builds with the host compiler; kernels are in mlcrt_kernels.cuh.
 * cuBLAS is column-major: a row-major C = op(A) op(B) is computed as the
 * column-major C^T = op(B)^T op(A)^T, i.e. with the operands swapped.
 */
#include "mlcrt_cuda.h"
#include "rt_internal.h" /* mlcrt__phys_bytes */

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MLCRT_CUDA_GRAPH_SLOTS 4
#define CUBLAS_WORKSPACE_BYTES ((size_t)32 << 20) /* cuBLAS's advice for Hopper */

typedef struct graph_slot {
  cudaGraphExec_t exec; /* NULL until captured */
  int64_t key[MLCRT_MAX_RANK * 2];
  int nkey;
} graph_slot;

struct mlcrt_cuda {
  int device, sm_count;
  cudaStream_t stream;
  cublasHandle_t blas;
  void *blas_ws;       /* cuBLAS workspace (device) */
  unsigned char *dev;  /* the instance's device memory */
  unsigned char *host; /* pinned host memory */
  int graphs;          /* 0: $MLCRT_CUDA_GRAPHS=0, run without graphs */
  graph_slot slot[MLCRT_CUDA_GRAPH_SLOTS];
};

static int cuda_err(char *err, cudaError_t e, const char *what) {
  int st =
      e == cudaErrorMemoryAllocation ? MLCRT_ENOMEM
      : e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver || e == cudaErrorInvalidDevice
          ? MLCRT_EUNSUPPORTED
          : MLCRT_EINVAL;
  return mlcrt_seterr(err, st, "%s: CUDA error %s: %s", what, cudaGetErrorName(e),
                      cudaGetErrorString(e));
}

static int blas_err(char *err, cublasStatus_t s, const char *what) {
  return mlcrt_seterr(err, s == CUBLAS_STATUS_ALLOC_FAILED ? MLCRT_ENOMEM : MLCRT_EINVAL,
                      "%s: cuBLAS error %s: %s", what, cublasGetStatusName(s),
                      cublasGetStatusString(s));
}

#define CK(call, what)                                                                             \
  do {                                                                                             \
    cudaError_t e_ = (call);                                                                       \
    if (e_ != cudaSuccess) return cuda_err(err, e_, what);                                         \
  } while (0)

mlcrt_cuda *mlcrt_cuda_create(const mlcrt_options *opts, size_t dev_bytes, size_t host_bytes,
                              int precision, int *status, char *err) {
  int n = 0, dev = opts ? opts->device_index : 0, st_ = MLCRT_OK;
  if (!status) status = &st_;
  *status = MLCRT_OK;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    int drv = 0, rt = 0;
    cudaDriverGetVersion(&drv);
    cudaRuntimeGetVersion(&rt);
    if (e == cudaSuccess || e == cudaErrorNoDevice)
      *status = mlcrt_seterr(err, MLCRT_EUNSUPPORTED,
                             "no CUDA device found (the CUDA driver lists none)");
    else if (e == cudaErrorInsufficientDriver && drv == 0)
      *status = mlcrt_seterr(err, MLCRT_EUNSUPPORTED,
                             "no CUDA device: the CUDA driver was not found (libcuda.so; is the "
                             "NVIDIA driver installed?)");
    else if (e == cudaErrorInsufficientDriver)
      *status = mlcrt_seterr(err, MLCRT_EUNSUPPORTED,
                             "the CUDA driver (CUDA %d.%d) is older than the CUDA runtime this "
                             "model was built with (%d.%d)",
                             drv / 1000, drv % 1000 / 10, rt / 1000, rt % 1000 / 10);
    else
      *status = cuda_err(err, e, "no usable CUDA driver or device (cudaGetDeviceCount)");
    return NULL;
  }
  if (dev < 0 || dev >= n) {
    *status = mlcrt_seterr(err, MLCRT_EINVAL,
                           "CUDA device index %d is out of range (this machine has %d device%s)",
                           dev, n, n == 1 ? "" : "s");
    return NULL;
  }
  mlcrt_cuda *c = calloc(1, sizeof *c);
  if (!c) {
    *status = mlcrt_seterr(err, MLCRT_ENOMEM, "out of host memory");
    return NULL;
  }
  c->device = dev;
  const char *g = getenv("MLCRT_CUDA_GRAPHS");
  c->graphs = !(g && strcmp(g, "0") == 0);
  int rc = MLCRT_OK;
  cublasStatus_t bs;
  /* sizes checked before asking: a request beyond the device's free memory or
   * the machine's RAM is refused here with the figures, never tried (pinning
   * more host memory than there is can get the process killed) */
  size_t free_b = 0, total_b = 0;
  const size_t ram = mlcrt__phys_bytes();
  if ((e = cudaSetDevice(dev)) != cudaSuccess)
    rc = cuda_err(err, e, "cudaSetDevice");
  else if ((e = cudaDeviceGetAttribute(&c->sm_count, cudaDevAttrMultiProcessorCount, dev)) !=
           cudaSuccess)
    rc = cuda_err(err, e, "cudaDeviceGetAttribute");
  else if ((e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess)
    rc = cuda_err(err, e, "cudaStreamCreate");
  else if ((e = cudaMemGetInfo(&free_b, &total_b)) != cudaSuccess)
    rc = cuda_err(err, e, "cudaMemGetInfo");
  else if (dev_bytes > free_b)
    rc = mlcrt_seterr(err, MLCRT_ENOMEM,
                      "cannot allocate %zu bytes on CUDA device %d: %zu of its %zu bytes are free",
                      dev_bytes, dev, free_b, total_b);
  else if (host_bytes > ram / 2)
    rc = mlcrt_seterr(err, MLCRT_ENOMEM,
                      "cannot allocate %zu bytes of pinned host memory: the machine has %zu",
                      host_bytes, ram);
  else if ((e = cudaMalloc((void **)&c->dev, dev_bytes ? dev_bytes : 256)) != cudaSuccess)
    rc = mlcrt_seterr(err, MLCRT_ENOMEM, "cannot allocate %zu bytes on CUDA device %d: %s",
                      dev_bytes, dev, cudaGetErrorString(e));
  else if ((e = cudaMemset(c->dev, 0, dev_bytes ? dev_bytes : 256)) != cudaSuccess)
    rc = cuda_err(err, e, "cudaMemset");
  else if ((e = cudaMallocHost((void **)&c->host, host_bytes ? host_bytes : 256)) != cudaSuccess)
    rc = mlcrt_seterr(err, MLCRT_ENOMEM, "cannot allocate %zu bytes of pinned host memory: %s",
                      host_bytes, cudaGetErrorString(e));
  else if ((e = cudaMalloc(&c->blas_ws, CUBLAS_WORKSPACE_BYTES)) != cudaSuccess)
    rc = cuda_err(err, e, "cudaMalloc (cuBLAS workspace)");
  else if ((bs = cublasCreate(&c->blas)) != CUBLAS_STATUS_SUCCESS)
    rc = blas_err(err, bs, "cublasCreate");
  else if ((bs = cublasSetStream(c->blas, c->stream)) != CUBLAS_STATUS_SUCCESS)
    rc = blas_err(err, bs, "cublasSetStream");
  else if ((bs = cublasSetWorkspace(c->blas, c->blas_ws, CUBLAS_WORKSPACE_BYTES)) !=
           CUBLAS_STATUS_SUCCESS)
    rc = blas_err(err, bs, "cublasSetWorkspace");
  else if ((bs = cublasSetMathMode(c->blas, precision == MLCRT_PRECISION_TF32
                                                ? CUBLAS_TF32_TENSOR_OP_MATH
                                                : CUBLAS_DEFAULT_MATH)) != CUBLAS_STATUS_SUCCESS)
    rc = blas_err(err, bs, "cublasSetMathMode");
  if (rc) {
    *status = rc;
    mlcrt_cuda_destroy(c);
    return NULL;
  }
  memset(c->host, 0, host_bytes ? host_bytes : 256);
  return c;
}

void mlcrt_cuda_destroy(mlcrt_cuda *c) {
  if (!c) return;
  cudaSetDevice(c->device);
  if (c->stream) cudaStreamSynchronize(c->stream);
  for (int i = 0; i < MLCRT_CUDA_GRAPH_SLOTS; i++)
    if (c->slot[i].exec) cudaGraphExecDestroy(c->slot[i].exec);
  if (c->blas) cublasDestroy(c->blas);
  cudaFree(c->blas_ws);
  cudaFree(c->dev);
  cudaFreeHost(c->host);
  if (c->stream) cudaStreamDestroy(c->stream);
  free(c);
}

unsigned char *mlcrt_cuda_device_base(mlcrt_cuda *c) {
  return c->dev;
}
unsigned char *mlcrt_cuda_host_base(mlcrt_cuda *c) {
  return c->host;
}
void *mlcrt_cuda_stream(mlcrt_cuda *c) {
  return (void *)c->stream;
}
int mlcrt_cuda_sm_count(const mlcrt_cuda *c) {
  return c->sm_count;
}

int mlcrt_cuda_check_launch(const char *what, char *err) {
  cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? MLCRT_OK : cuda_err(err, e, what);
}

int mlcrt_cuda_h2d(mlcrt_cuda *c, void *dst, const void *src, size_t n, char *err) {
  if (n) CK(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, c->stream), "copy to the device");
  return MLCRT_OK;
}

int mlcrt_cuda_d2h(mlcrt_cuda *c, void *dst, const void *src, size_t n, char *err) {
  if (n)
    CK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, c->stream), "copy from the device");
  return MLCRT_OK;
}

int mlcrt_cuda_memset(mlcrt_cuda *c, void *dst, int v, size_t n, char *err) {
  if (n) CK(cudaMemsetAsync(dst, v, n, c->stream), "cudaMemsetAsync");
  return MLCRT_OK;
}

int mlcrt_cuda_sync(mlcrt_cuda *c, char *err) {
  CK(cudaStreamSynchronize(c->stream), "running on the CUDA device");
  return MLCRT_OK;
}

int mlcrt_cuda_graph_run(mlcrt_cuda *c, int slot, const int64_t *key, int nkey,
                         int (*enqueue)(void *ctx), void *ctx, char *err) {
  CK(cudaSetDevice(c->device), "cudaSetDevice");
  if (!c->graphs || slot < 0 || slot >= MLCRT_CUDA_GRAPH_SLOTS || nkey > MLCRT_MAX_RANK * 2)
    return enqueue(ctx);
  graph_slot *s = &c->slot[slot];
  if (s->exec && s->nkey == nkey &&
      (nkey == 0 || memcmp(s->key, key, sizeof(int64_t) * (size_t)nkey) == 0)) {
    CK(cudaGraphLaunch(s->exec, c->stream), "cudaGraphLaunch");
    return MLCRT_OK;
  }
  if (s->exec) { /* other dims: capture again */
    cudaGraphExecDestroy(s->exec);
    s->exec = NULL;
  }
  CK(cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
  int rc = enqueue(ctx);
  cudaGraph_t graph = NULL;
  cudaError_t e = cudaStreamEndCapture(c->stream, &graph);
  if (rc) {
    if (graph) cudaGraphDestroy(graph);
    return rc;
  }
  if (e != cudaSuccess) return cuda_err(err, e, "cudaStreamEndCapture");
  e = cudaGraphInstantiate(&s->exec, graph, 0);
  cudaGraphDestroy(graph);
  if (e != cudaSuccess) {
    s->exec = NULL;
    return cuda_err(err, e, "cudaGraphInstantiate");
  }
  s->nkey = nkey;
  if (nkey) memcpy(s->key, key, sizeof(int64_t) * (size_t)nkey);
  CK(cudaGraphLaunch(s->exec, c->stream), "cudaGraphLaunch");
  return MLCRT_OK;
}

/* ---- GEMMs ------------------------------------------------------------------- */
static int too_big(int64_t v) {
  return v < 0 || v > 2147483647;
}

int mlcrt_cuda_sgemm_batched(mlcrt_cuda *c, int trans_a, int trans_b, int64_t M, int64_t N,
                             int64_t K, const float *A, int64_t lda, int64_t stride_a,
                             const float *B, int64_t ldb, int64_t stride_b, float *C, int64_t ldc,
                             int64_t stride_c, int64_t batch, char *err) {
  if (M == 0 || N == 0 || batch == 0) return MLCRT_OK;
  if (too_big(M) || too_big(N) || too_big(K) || too_big(lda) || too_big(ldb) || too_big(ldc) ||
      too_big(batch))
    return mlcrt_seterr(err, MLCRT_EUNSUPPORTED,
                        "GEMM of %lld x %lld x %lld is too large for cuBLAS's int sizes",
                        (long long)M, (long long)N, (long long)K);
  if (K == 0) { /* an empty sum: C = 0 (cuBLAS may leave C alone) */
    for (int64_t t = 0; t < batch; t++)
      for (int64_t i = 0; i < M; i++)
        CK(cudaMemsetAsync(C + t * stride_c + i * ldc, 0, sizeof(float) * (size_t)N, c->stream),
           "cudaMemsetAsync");
    return MLCRT_OK;
  }
  const float one = 1.0f, zero = 0.0f;
  /* row-major C[M,N] = op(A) op(B)  <=>  column-major C^T[N,M] = op(B)^T op(A)^T */
  cublasOperation_t ob = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                    oa = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasStatus_t s;
  if (batch == 1)
    s = cublasSgemm(c->blas, ob, oa, (int)N, (int)M, (int)K, &one, B, (int)ldb, A, (int)lda, &zero,
                    C, (int)ldc);
  else
    s = cublasSgemmStridedBatched(c->blas, ob, oa, (int)N, (int)M, (int)K, &one, B, (int)ldb,
                                  stride_b, A, (int)lda, stride_a, &zero, C, (int)ldc, stride_c,
                                  (int)batch);
  return s == CUBLAS_STATUS_SUCCESS ? MLCRT_OK : blas_err(err, s, "cublasSgemm");
}

int mlcrt_cuda_sgemm(mlcrt_cuda *c, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                     float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                     float beta, float *C, int64_t ldc, char *err) {
  if (alpha == 1.0f && beta == 0.0f)
    return mlcrt_cuda_sgemm_batched(c, trans_a, trans_b, M, N, K, A, lda, 0, B, ldb, 0, C, ldc, 0,
                                    1, err);
  if (M == 0 || N == 0) return MLCRT_OK;
  if (too_big(M) || too_big(N) || too_big(K))
    return mlcrt_seterr(err, MLCRT_EUNSUPPORTED, "GEMM too large for cuBLAS's int sizes");
  cublasStatus_t s =
      cublasSgemm(c->blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                  (int)N, (int)M, (int)K, &alpha, B, (int)ldb, A, (int)lda, &beta, C, (int)ldc);
  return s == CUBLAS_STATUS_SUCCESS ? MLCRT_OK : blas_err(err, s, "cublasSgemm");
}

typedef struct matmul_ctx {
  mlcrt_cuda *c;
  const float *a, *b;
  float *y;
  char *err;
} matmul_ctx;
static int matmul_gemm(void *ctx, int64_t M, int64_t N, int64_t K, int64_t aoff, int64_t lda,
                       int64_t sa, int64_t boff, int64_t ldb, int64_t sb, int64_t yoff, int64_t ldc,
                       int64_t sc, int64_t batch) {
  matmul_ctx *x = (matmul_ctx *)ctx;
  return mlcrt_cuda_sgemm_batched(x->c, 0, 0, M, N, K, x->a + aoff, lda, sa, x->b + boff, ldb, sb,
                                  x->y + yoff, ldc, sc, batch, x->err);
}

int mlcrt_cuda_matmul(mlcrt_cuda *c, const float *a, int ra, const int64_t *ashape, const float *b,
                      int rb, const int64_t *bshape, float *y, int yr, const int64_t *yshape,
                      char *err) {
  matmul_ctx x = {c, a, b, y, err};
  return mlcrt_matmul_plan(ra, ashape, rb, bshape, yr, yshape, matmul_gemm, &x, err);
}
