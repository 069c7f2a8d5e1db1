/* mlcrt_kernels.cuh — the CUDA kernels generated models launch besides
 * their own (device code only).
 *
 * A generated model.cu includes this header first; its own kernels (one per
 * fusion group: elementwise, movement, reductions) follow, then its host
 * code.  Everything here compiles with NVRTC alone (no host header, no CUDA
 * runtime API), so the JIT (issue 9) can hand this file to NVRTC as an
 * in-memory header.  Kernels are templates over the float type F (always
 * float today): a template is emitted only where used, so a model that does
 * not need a kernel carries no unused-function warning, and two models in
 * one program do not collide.
 *
 * The CPU kernels in runtime/ are the reference: every kernel here computes
 * what its CPU twin does, with the same NaN rules (max/argmax: a NaN wins;
 * a fully masked attention row is NaN; ...) and the same double accumulators
 * where the CPU accumulates in double.  Summation order differs where
 * threads share a sum (warp shuffles, block reductions), within the spec's
 * tolerance.  Launch shapes: grid-stride loops of 256 threads per block for
 * elementwise work, one warp per row (softmax, layer_norm, cross_entropy,
 * attention) or one block of 256 per channel / group (batch and group norm).
 *
 * Errors a kernel finds (an index out of range, a label outside 0..C-1) are
 * recorded in the instance's status block: status[0] = the check's number
 * (first failure wins), status[1] = the offending value, status[2] = the
 * largest valid one.  The host reads it after the run and turns it into an
 * error message.
 */
#ifndef MLCRT_KERNELS_CUH
#define MLCRT_KERNELS_CUH

#ifdef __CUDACC_RTC__
typedef signed char int8_t;
typedef unsigned char uint8_t;
typedef unsigned short uint16_t;
typedef int int32_t;
typedef unsigned int uint32_t;
typedef long long int64_t;
typedef unsigned long long uint64_t;
#define INT64_MAX 9223372036854775807LL
#define INT64_MIN (-INT64_MAX - 1)
#ifndef INFINITY
#define INFINITY __int_as_float(0x7f800000)
#endif
#ifndef NAN /* the bits of <math.h>'s NAN (__builtin_nanf("")), so that NVRTC's
               * kernels write the NaNs the nvcc build writes */
#define NAN __int_as_float(0x7fc00000)
#endif
#else
#include <math.h>
#include <stdint.h>
#endif

/* The elementwise templates of compiler/ops.def call mlcrt_expf/mlcrt_tanhf
 * (on the CPU: mlcrt.h's vectorizable versions); on the GPU they are CUDA's
 * own expf/tanhf. */
static __device__ __forceinline__ float mlcrt_expf(float x) { return expf(x); }
static __device__ __forceinline__ float mlcrt_tanhf(float x) { return tanhf(x); }

#define MLCD_THREADS 256
/* i over 0..n-1, spread over the whole grid */
#define MLCD_FOR(i, n)                                                                                            \
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (int64_t)(n);                               \
       i += (int64_t)gridDim.x * blockDim.x)
/* one warp per item w of 0..n-1; lane = threadIdx.x % 32 */
#define MLCD_FOR_WARP(w, n)                                                                                       \
  for (int64_t w = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32; w < (int64_t)(n);                        \
       w += (int64_t)gridDim.x * blockDim.x / 32)

/* ---- small device helpers ------------------------------------------------------ */
/* f16 / bf16 <-> f32, bit-exact as runtime/dtype.c (round to nearest even). */
inline __device__ float mlcd_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e == 0x1f) return __uint_as_float(sign | 0x7f800000 | (m << 13));
  if (e != 0) return __uint_as_float(sign | ((e + 112) << 23) | (m << 13));
  if (m == 0) return __uint_as_float(sign);
  e = 113;
  while (!(m & 0x400)) m <<= 1, e--;
  return __uint_as_float(sign | (e << 23) | ((m & 0x3ff) << 13));
}
inline __device__ uint32_t mlcd_shift_rne(uint32_t v, int s) {
  uint32_t half = 1u << (s - 1), rest = v & ((1u << s) - 1), r = v >> s;
  if (rest > half || (rest == half && (r & 1))) r++;
  return r;
}
inline __device__ uint16_t mlcd_f32_to_f16(float f) {
  uint32_t x = __float_as_uint(f), a = x & 0x7fffffff;
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
  if (a > 0x7f800000) return (uint16_t)(sign | 0x7e00 | ((a >> 13) & 0x3ff));
  if (a >= 0x38800000) {
    if (a >= 0x477ff000) return (uint16_t)(sign | 0x7c00);
    return (uint16_t)(sign | mlcd_shift_rne(a - 0x38000000, 13));
  }
  if (a <= 0x33000000) return sign; /* <= 2^-25 rounds (ties to even) to 0 */
  uint32_t e = a >> 23, m = (a & 0x7fffff) | 0x800000;
  return (uint16_t)(sign | mlcd_shift_rne(m, (int)(126 - e)));
}
inline __device__ float mlcd_bf16_to_f32(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }
inline __device__ uint16_t mlcd_f32_to_bf16(float f) {
  uint32_t x = __float_as_uint(f);
  if ((x & 0x7fffffff) > 0x7f800000) return 0x7fc0;
  return (uint16_t)((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}
/* float -> integer as C casts, defined for NaN and out-of-range values (mlc_f2i) */
inline __device__ int64_t mlcd_f2i(float v) {
  if (v != v) return 0;
  if (v >= 9.2233720e18f) return INT64_MAX;
  if (v <= -9.2233720e18f) return INT64_MIN;
  return (int64_t)v;
}
/* integer pow as mlcrt_ipow (wraps; a negative exponent gives 0 but for +-1) */
inline __device__ int64_t mlcd_ipow(int64_t base, int64_t ex) {
  if (ex < 0) return base == 1 ? 1 : base == -1 ? (ex % 2 == 0 ? 1 : -1) : 0;
  uint64_t r = 1, b = (uint64_t)base;
  for (uint64_t e = (uint64_t)ex; e; e >>= 1) {
    if (e & 1) r *= b;
    b *= b;
  }
  return (int64_t)r;
}
/* Records a failed check (first one wins): its number, the bad value and the
 * largest valid one (the host formats "... %lld ... 0..%lld" with them). */
inline __device__ void mlcd_fail(int64_t *status, int64_t check, int64_t value, int64_t hi) {
  if (atomicCAS((unsigned long long *)status, 0ULL, (unsigned long long)check) == 0ULL) {
    status[1] = value;
    status[2] = hi;
  }
}
/* A train step's updates run only when the loss is finite and no check failed. */
inline __device__ bool mlcd_step_ok(const float *loss, const int64_t *status) {
  return status[0] == 0 && isfinite(*loss);
}
inline __device__ int64_t mlcd_label(const void *p, int dt, int64_t i) { /* dt: 5 u8, 3 i32, else i64 */
  return dt == 5 ? (int64_t)((const uint8_t *)p)[i] : dt == 3 ? (int64_t)((const int32_t *)p)[i]
                                                              : ((const int64_t *)p)[i];
}

template <typename T> inline __device__ T mlcd_warp_sum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  return __shfl_sync(0xffffffffu, v, 0);
}
inline __device__ float mlcd_warp_max(float v) { /* NaN never wins (as the CPU's `x > m ? x : m`) */
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_down_sync(0xffffffffu, v, o));
  return __shfl_sync(0xffffffffu, v, 0);
}
/* Sum over a block of MLCD_THREADS threads; every thread gets the result. */
template <typename T> inline __device__ T mlcd_block_sum(T v) {
  __shared__ T part[MLCD_THREADS / 32];
  v = mlcd_warp_sum(v);
  __syncthreads(); /* part[] may still be read by a previous call */
  if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = v;
  __syncthreads();
  T s = 0;
  for (int i = 0; i < MLCD_THREADS / 32; i++) s += part[i];
  return s;
}

/* ---- linear: the bias of y[rows, N] ----------------------------------------------- */
template <typename F> __global__ void mlcd_add_bias(F *y, int64_t rows, int64_t N, const F *b) {
  MLCD_FOR(i, rows * N) y[i] += b[i % N];
}

/* ---- softmax / log_softmax over the middle dim of [outer, n, inner] ---------------- */
/* inner == 1: one warp per row, max and sum of exp (double) by shuffles. */
template <typename F> __global__ void mlcd_softmax_rows(const F *x, int64_t rows, int64_t n, int take_log, F *y) {
  const int lane = threadIdx.x % 32;
  MLCD_FOR_WARP(r, rows) {
    const F *xr = x + r * n;
    F *yr = y + r * n;
    float m = -INFINITY;
    for (int64_t k = lane; k < n; k += 32) m = fmaxf(m, xr[k]);
    m = mlcd_warp_max(m);
    double s = 0;
    for (int64_t k = lane; k < n; k += 32) s += expf(xr[k] - m);
    s = mlcd_warp_sum(s);
    const float ls = take_log ? (float)log(s) : (float)(1.0 / s);
    for (int64_t k = lane; k < n; k += 32) yr[k] = take_log ? (xr[k] - m) - ls : expf(xr[k] - m) * ls;
  }
}
/* inner > 1: one thread per (outer, inner) position, serial along n. */
template <typename F>
__global__ void mlcd_softmax_cols(const F *x, int64_t outer, int64_t n, int64_t inner, int take_log, F *y) {
  MLCD_FOR(t, outer * inner) {
    const int64_t o = t / inner, j = t % inner;
    const F *xo = x + o * n * inner + j;
    F *yo = y + o * n * inner + j;
    float m = -INFINITY;
    for (int64_t k = 0; k < n; k++) m = xo[k * inner] > m ? xo[k * inner] : m;
    double s = 0;
    for (int64_t k = 0; k < n; k++) s += expf(xo[k * inner] - m);
    const float ls = take_log ? (float)log(s) : (float)(1.0 / s);
    for (int64_t k = 0; k < n; k++)
      yo[k * inner] = take_log ? (xo[k * inner] - m) - ls : expf(xo[k * inner] - m) * ls;
  }
}
/* softmax: dx = y (dy - sum(dy y)); log_softmax: dx = dy - exp(y) sum(dy) */
template <typename F>
__global__ void mlcd_softmax_dx(const F *dy, const F *y, int64_t outer, int64_t n, int64_t inner, int take_log,
                                F *dx) {
  if (inner == 1) {
    const int lane = threadIdx.x % 32;
    MLCD_FOR_WARP(r, outer) {
      const F *dp = dy + r * n, *yp = y + r * n;
      double s = 0;
      for (int64_t k = lane; k < n; k += 32) s += take_log ? (double)dp[k] : (double)dp[k] * yp[k];
      s = mlcd_warp_sum(s);
      for (int64_t k = lane; k < n; k += 32)
        dx[r * n + k] = take_log ? dp[k] - expf(yp[k]) * (float)s : yp[k] * (dp[k] - (float)s);
    }
    return;
  }
  MLCD_FOR(t, outer * inner) {
    const int64_t o = t / inner, j = t % inner, base = o * n * inner + j;
    double s = 0;
    for (int64_t k = 0; k < n; k++)
      s += take_log ? (double)dy[base + k * inner] : (double)dy[base + k * inner] * y[base + k * inner];
    for (int64_t k = 0; k < n; k++) {
      const int64_t q = base + k * inner;
      dx[q] = take_log ? dy[q] - expf(y[q]) * (float)s : y[q] * (dy[q] - (float)s);
    }
  }
}

/* ---- normalisation ------------------------------------------------------------- */
/* The mean and 1/sqrt(var + eps) of x[0..M) read at stride 1 by one warp
 * (rms: of x^2 only), in double, as runtime/norm.c's moments(). */
inline __device__ void mlcd_warp_moments(const float *x, int64_t M, float eps, int rms, float *mean, float *rstd) {
  const int lane = threadIdx.x % 32;
  double s = 0;
  if (rms) {
    for (int64_t i = lane; i < M; i += 32) s += (double)x[i] * (double)x[i];
    s = mlcd_warp_sum(s);
    *mean = 0.0f;
    *rstd = (float)(1.0 / sqrt(s / (double)M + (double)eps));
    return;
  }
  for (int64_t i = lane; i < M; i += 32) s += x[i];
  const double mu = mlcd_warp_sum(s) / (double)M;
  double v = 0;
  for (int64_t i = lane; i < M; i += 32) v += ((double)x[i] - mu) * ((double)x[i] - mu);
  v = mlcd_warp_sum(v);
  *mean = (float)mu;
  *rstd = (float)(1.0 / sqrt(v / (double)M + (double)eps));
}
/* The same over a block: x[c * cstride + i] for channels c in [c0, c1), i in [0, inner), n images of nstride. */
inline __device__ void mlcd_block_moments(const float *x, int64_t N, int64_t nstride, int64_t c0, int64_t c1,
                                          int64_t inner, float eps, float *mean, float *rstd, double *count) {
  const int64_t per = (c1 - c0) * inner, tot = N * per;
  double s = 0;
  for (int64_t t = threadIdx.x; t < tot; t += MLCD_THREADS) s += x[(t / per) * nstride + c0 * inner + t % per];
  s = mlcd_block_sum(s);
  const double cnt = (double)tot, mu = cnt > 0 ? s / cnt : 0.0;
  double v = 0;
  for (int64_t t = threadIdx.x; t < tot; t += MLCD_THREADS) {
    const double d = (double)x[(t / per) * nstride + c0 * inner + t % per] - mu;
    v += d * d;
  }
  v = mlcd_block_sum(v);
  *mean = (float)mu;
  *rstd = cnt > 0 ? (float)(1.0 / sqrt(v / cnt + (double)eps)) : 0.0f;
  *count = cnt;
  (void)rstd;
}

/* layer_norm (rms 0) / rms_norm (rms 1) over rows of M: one warp per row. */
template <typename F>
__global__ void mlcd_layer_norm(const F *x, int64_t rows, int64_t M, const F *w, const F *b, float eps, int rms,
                                F *y) {
  const int lane = threadIdx.x % 32;
  MLCD_FOR_WARP(r, rows) {
    float mu, rstd;
    mlcd_warp_moments(x + r * M, M, eps, rms, &mu, &rstd);
    for (int64_t i = lane; i < M; i += 32) {
      float v = (x[r * M + i] - mu) * rstd;
      if (w) v *= w[i];
      if (b) v += b[i];
      y[r * M + i] = v;
    }
  }
}
template <typename F>
__global__ void mlcd_layer_norm_dx(const F *dy, const F *x, int64_t rows, int64_t M, const F *w, float eps, int rms,
                                   F *dx) {
  const int lane = threadIdx.x % 32;
  MLCD_FOR_WARP(r, rows) {
    const F *xr = x + r * M, *gr = dy + r * M;
    float mu, rstd;
    mlcd_warp_moments(xr, M, eps, rms, &mu, &rstd);
    double sg = 0, sgx = 0;
    for (int64_t i = lane; i < M; i += 32) {
      const double g = (double)gr[i] * (w ? (double)w[i] : 1.0);
      sg += g;
      sgx += g * (double)((xr[i] - mu) * rstd);
    }
    sg = mlcd_warp_sum(sg), sgx = mlcd_warp_sum(sgx);
    const double mg = rms ? 0.0 : sg / (double)M, mgx = sgx / (double)M;
    for (int64_t i = lane; i < M; i += 32) {
      const double g = (double)gr[i] * (w ? (double)w[i] : 1.0), xh = (double)((xr[i] - mu) * rstd);
      dx[r * M + i] = (float)((double)rstd * (g - mg - xh * mgx));
    }
  }
}
/* dweight[i] = sum over rows of dy * xhat: one block per 256 columns; each
 * row's statistics are computed by the block (its warps split the row). */
template <typename F>
__global__ void mlcd_layer_norm_dw(const F *dy, const F *x, int64_t rows, int64_t M, float eps, int rms, F *dw) {
  for (int64_t c0 = (int64_t)blockIdx.x * MLCD_THREADS; c0 < M; c0 += (int64_t)gridDim.x * MLCD_THREADS) {
    const int64_t i = c0 + threadIdx.x;
    double acc = 0;
    for (int64_t r = 0; r < rows; r++) {
      const F *xr = x + r * M;
      float mu, rstd;
      double cnt;
      if (rms) {
        double s = 0;
        for (int64_t t = threadIdx.x; t < M; t += MLCD_THREADS) s += (double)xr[t] * (double)xr[t];
        s = mlcd_block_sum(s);
        mu = 0.0f, rstd = (float)(1.0 / sqrt(s / (double)M + (double)eps));
      } else {
        mlcd_block_moments(xr, 1, 0, 0, 1, M, eps, &mu, &rstd, &cnt);
      }
      if (i < M) acc += (double)dy[r * M + i] * (double)((xr[i] - mu) * rstd);
    }
    if (i < M) dw[i] = (float)acc;
  }
}

/* batch_norm with given statistics (running, or the batch's): y = x a + b' per channel. */
template <typename F>
__global__ void mlcd_batch_norm(const F *x, int64_t N, int64_t C, int64_t inner, const F *mean, const F *var,
                                const F *w, const F *b, float eps, F *y) {
  MLCD_FOR(i, N * C * inner) {
    const int64_t c = (i / inner) % C;
    const float invstd = 1.0f / sqrtf(var[c] + eps);
    const float a = w ? w[c] * invstd : invstd;
    const float sh = (b ? b[c] : 0.0f) - mean[c] * a;
    y[i] = x[i] * a + sh;
  }
}
/* stats[2, C]: batch mean and biased variance, one block per channel. */
template <typename F> __global__ void mlcd_batch_norm_stats(const F *x, int64_t N, int64_t C, int64_t inner, F *stats) {
  for (int64_t c = blockIdx.x; c < C; c += gridDim.x) {
    float mu, rstd;
    double cnt;
    mlcd_block_moments(x, N, C * inner, c, c + 1, inner, 0.0f, &mu, &rstd, &cnt);
    /* the variance again, unrounded (rstd folded eps in) */
    double v = 0;
    const double m = cnt > 0 ? (double)mu : 0.0;
    for (int64_t t = threadIdx.x; t < N * inner; t += MLCD_THREADS) {
      const double d = (double)x[(t / inner) * C * inner + c * inner + t % inner] - m;
      v += d * d;
    }
    v = mlcd_block_sum(v);
    if (threadIdx.x == 0) {
      stats[c] = mu;
      stats[C + c] = cnt > 0 ? (float)(v / cnt) : 0.0f;
    }
  }
}
template <typename F>
__global__ void mlcd_batch_norm_update(const F *stats, int64_t C, int64_t count, double momentum, F *rmean, F *rvar,
                                       const float *loss, const int64_t *status) {
  if (!mlcd_step_ok(loss, status)) return;
  const double unbias = count > 1 ? (double)count / (double)(count - 1) : 1.0;
  MLCD_FOR(c, C) {
    rmean[c] = (float)(momentum * (double)stats[c] + (1.0 - momentum) * (double)rmean[c]);
    rvar[c] = (float)(momentum * (double)stats[C + c] * unbias + (1.0 - momentum) * (double)rvar[c]);
  }
}
template <typename F>
__global__ void mlcd_batch_norm_dx(const F *dy, const F *x, int64_t N, int64_t C, int64_t inner, const F *stats,
                                   const F *w, float eps, F *dx) {
  const double cnt = (double)N * (double)inner;
  if (cnt <= 0) return;
  for (int64_t c = blockIdx.x; c < C; c += gridDim.x) {
    const float mu = stats[c], rstd = 1.0f / sqrtf(stats[C + c] + eps);
    double sg = 0, sgx = 0;
    for (int64_t t = threadIdx.x; t < N * inner; t += MLCD_THREADS) {
      const int64_t q = (t / inner) * C * inner + c * inner + t % inner;
      sg += dy[q];
      sgx += (double)dy[q] * (double)((x[q] - mu) * rstd);
    }
    sg = mlcd_block_sum(sg), sgx = mlcd_block_sum(sgx);
    const double a = (w ? (double)w[c] : 1.0) * (double)rstd, mg = sg / cnt, mgx = sgx / cnt;
    for (int64_t t = threadIdx.x; t < N * inner; t += MLCD_THREADS) {
      const int64_t q = (t / inner) * C * inner + c * inner + t % inner;
      dx[q] = (float)(a * ((double)dy[q] - mg - (double)((x[q] - mu) * rstd) * mgx));
    }
  }
}
template <typename F>
__global__ void mlcd_batch_norm_dw(const F *dy, const F *x, int64_t N, int64_t C, int64_t inner, const F *stats,
                                   float eps, F *dw) {
  for (int64_t c = blockIdx.x; c < C; c += gridDim.x) {
    const float mu = stats[c], rstd = 1.0f / sqrtf(stats[C + c] + eps);
    double s = 0;
    for (int64_t t = threadIdx.x; t < N * inner; t += MLCD_THREADS) {
      const int64_t q = (t / inner) * C * inner + c * inner + t % inner;
      s += (double)dy[q] * (double)((x[q] - mu) * rstd);
    }
    s = mlcd_block_sum(s);
    if (threadIdx.x == 0) dw[c] = (float)s;
  }
}

/* group_norm over x [N, C, inner], G groups: one block per (image, group). */
template <typename F>
__global__ void mlcd_group_norm(const F *x, int64_t N, int64_t C, int64_t inner, int64_t G, const F *w, const F *b,
                                float eps, F *y) {
  const int64_t cg = C / G;
  for (int64_t ng = blockIdx.x; ng < N * G; ng += gridDim.x) {
    const int64_t n = ng / G, g = ng % G;
    float mu, rstd;
    double cnt;
    mlcd_block_moments(x + n * C * inner, 1, 0, g * cg, (g + 1) * cg, inner, eps, &mu, &rstd, &cnt);
    for (int64_t t = threadIdx.x; t < cg * inner; t += MLCD_THREADS) {
      const int64_t c = g * cg + t / inner, q = (n * C + c) * inner + t % inner;
      y[q] = (x[q] - mu) * rstd * (w ? w[c] : 1.0f) + (b ? b[c] : 0.0f);
    }
  }
}
template <typename F>
__global__ void mlcd_group_norm_dx(const F *dy, const F *x, int64_t N, int64_t C, int64_t inner, int64_t G,
                                   const F *w, float eps, F *dx) {
  const int64_t cg = C / G, M = cg * inner;
  for (int64_t ng = blockIdx.x; ng < N * G; ng += gridDim.x) {
    const int64_t n = ng / G, g = ng % G;
    float mu, rstd;
    double cnt;
    mlcd_block_moments(x + n * C * inner, 1, 0, g * cg, (g + 1) * cg, inner, eps, &mu, &rstd, &cnt);
    double sg = 0, sgx = 0;
    for (int64_t t = threadIdx.x; t < M; t += MLCD_THREADS) {
      const int64_t c = g * cg + t / inner, q = (n * C + c) * inner + t % inner;
      const double wc = w ? (double)w[c] : 1.0;
      sg += (double)dy[q] * wc;
      sgx += (double)dy[q] * wc * (double)((x[q] - mu) * rstd);
    }
    sg = mlcd_block_sum(sg), sgx = mlcd_block_sum(sgx);
    const double mg = sg / (double)M, mgx = sgx / (double)M;
    for (int64_t t = threadIdx.x; t < M; t += MLCD_THREADS) {
      const int64_t c = g * cg + t / inner, q = (n * C + c) * inner + t % inner;
      const double wc = w ? (double)w[c] : 1.0;
      dx[q] = (float)((double)rstd * ((double)dy[q] * wc - mg - (double)((x[q] - mu) * rstd) * mgx));
    }
  }
}
template <typename F>
__global__ void mlcd_group_norm_dw(const F *dy, const F *x, int64_t N, int64_t C, int64_t inner, int64_t G, float eps,
                                   F *dw) {
  const int64_t cg = C / G;
  for (int64_t c = blockIdx.x; c < C; c += gridDim.x) {
    const int64_t g = c / cg;
    double s = 0;
    for (int64_t n = 0; n < N; n++) {
      float mu, rstd;
      double cnt;
      mlcd_block_moments(x + n * C * inner, 1, 0, g * cg, (g + 1) * cg, inner, eps, &mu, &rstd, &cnt);
      for (int64_t i = threadIdx.x; i < inner; i += MLCD_THREADS) {
        const int64_t q = (n * C + c) * inner + i;
        s += (double)dy[q] * (double)((x[q] - mu) * rstd);
      }
    }
    s = mlcd_block_sum(s);
    if (threadIdx.x == 0) dw[c] = (float)s;
  }
}

/* ---- pooling (NCHW), one thread per output; gradients one thread per input ---------- */
struct mlcd_pool {
  int64_t N, C, H, W, OH, OW, kh, kw, sh, sw, ph, pw;
  int count_include_pad;
};
/* The first maximum of window (oh, ow) of plane xp (a NaN wins), as an index
 * h * W + w, or -1 for a window entirely in padding. */
inline __device__ int64_t mlcd_pool_argmax(const float *xp, const mlcd_pool &p, int64_t oh, int64_t ow) {
  int64_t h0 = oh * p.sh - p.ph, w0 = ow * p.sw - p.pw, best = -1;
  float m = -INFINITY;
  for (int64_t h = h0; h < h0 + p.kh; h++)
    for (int64_t w = w0; w < w0 + p.kw; w++) {
      if (h < 0 || h >= p.H || w < 0 || w >= p.W) continue;
      const float v = xp[h * p.W + w];
      if (best < 0 || v > m || (isnan(v) && !isnan(m))) m = v, best = h * p.W + w;
    }
  return best;
}
template <typename F> __global__ void mlcd_max_pool2d(mlcd_pool p, const F *x, F *y) {
  MLCD_FOR(i, p.N * p.C * p.OH * p.OW) {
    const int64_t ow = i % p.OW, oh = (i / p.OW) % p.OH, nc = i / (p.OW * p.OH);
    const int64_t best = mlcd_pool_argmax(x + nc * p.H * p.W, p, oh, ow);
    y[i] = best < 0 ? -INFINITY : x[nc * p.H * p.W + best];
  }
}
/* The divisor of window (oh, ow) and its clipped bounds, as runtime/pool.c. */
inline __device__ int64_t mlcd_avg_window(const mlcd_pool &p, int64_t oh, int64_t ow, int64_t *h0, int64_t *h1,
                                          int64_t *w0, int64_t *w1) {
  int64_t hs = oh * p.sh - p.ph, ws = ow * p.sw - p.pw;
  int64_t he = hs + p.kh < p.H + p.ph ? hs + p.kh : p.H + p.ph;
  int64_t we = ws + p.kw < p.W + p.pw ? ws + p.kw : p.W + p.pw;
  const int64_t pool = (he - hs) * (we - ws);
  *h0 = hs < 0 ? 0 : hs, *w0 = ws < 0 ? 0 : ws;
  *h1 = he > p.H ? p.H : he, *w1 = we > p.W ? p.W : we;
  return p.count_include_pad ? pool : (*h1 - *h0) * (*w1 - *w0);
}
template <typename F> __global__ void mlcd_avg_pool2d(mlcd_pool p, const F *x, F *y) {
  MLCD_FOR(i, p.N * p.C * p.OH * p.OW) {
    const int64_t ow = i % p.OW, oh = (i / p.OW) % p.OH, nc = i / (p.OW * p.OH);
    int64_t h0, h1, w0, w1;
    const int64_t div = mlcd_avg_window(p, oh, ow, &h0, &h1, &w0, &w1);
    if (h0 >= h1 || w0 >= w1) {
      y[i] = 0.0f;
      continue;
    }
    float s = 0.0f;
    for (int64_t h = h0; h < h1; h++)
      for (int64_t w = w0; w < w1; w++) s += x[(nc * p.H + h) * p.W + w];
    y[i] = s / (float)div;
  }
}
template <typename F>
__global__ void mlcd_adaptive_avg_pool2d(int64_t N, int64_t C, int64_t H, int64_t W, int64_t OH, int64_t OW,
                                         const F *x, F *y) {
  MLCD_FOR(i, N * C * OH * OW) {
    const int64_t ow = i % OW, oh = (i / OW) % OH, nc = i / (OW * OH);
    const int64_t h0 = oh * H / OH, h1 = ((oh + 1) * H + OH - 1) / OH;
    const int64_t w0 = ow * W / OW, w1 = ((ow + 1) * W + OW - 1) / OW;
    float s = 0.0f;
    for (int64_t h = h0; h < h1; h++)
      for (int64_t w = w0; w < w1; w++) s += x[(nc * H + h) * W + w];
    const int64_t cnt = (h1 - h0) * (w1 - w0);
    y[i] = cnt > 0 ? s / (float)cnt : 0.0f;
  }
}
/* Output rows whose window (stride s, kernel k, padding pd) covers input row h. */
inline __device__ void mlcd_cover(int64_t h, int64_t k, int64_t s, int64_t pd, int64_t O, int64_t *lo, int64_t *hi) {
  const int64_t top = h + pd; /* oh * s <= top and oh * s + k > top */
  *lo = top - k + 1 <= 0 ? 0 : (top - k + 1 + s - 1) / s;
  *hi = top / s;
  if (*hi > O - 1) *hi = O - 1;
}
/* Each input element collects the dy of the windows whose first maximum it
 * is, in window order (the CPU's order of += too). */
template <typename F> __global__ void mlcd_max_pool2d_dx(mlcd_pool p, const F *dy, const F *x, F *dx) {
  MLCD_FOR(i, p.N * p.C * p.H * p.W) {
    const int64_t w = i % p.W, h = (i / p.W) % p.H, nc = i / (p.W * p.H);
    int64_t ohl, ohh, owl, owh;
    mlcd_cover(h, p.kh, p.sh, p.ph, p.OH, &ohl, &ohh);
    mlcd_cover(w, p.kw, p.sw, p.pw, p.OW, &owl, &owh);
    float g = 0.0f;
    for (int64_t oh = ohl; oh <= ohh; oh++)
      for (int64_t ow = owl; ow <= owh; ow++)
        if (mlcd_pool_argmax(x + nc * p.H * p.W, p, oh, ow) == h * p.W + w) g += dy[(nc * p.OH + oh) * p.OW + ow];
    dx[i] = g;
  }
}
template <typename F> __global__ void mlcd_avg_pool2d_dx(mlcd_pool p, const F *dy, F *dx) {
  MLCD_FOR(i, p.N * p.C * p.H * p.W) {
    const int64_t w = i % p.W, h = (i / p.W) % p.H, nc = i / (p.W * p.H);
    int64_t ohl, ohh, owl, owh;
    mlcd_cover(h, p.kh, p.sh, p.ph, p.OH, &ohl, &ohh);
    mlcd_cover(w, p.kw, p.sw, p.pw, p.OW, &owl, &owh);
    float g = 0.0f;
    for (int64_t oh = ohl; oh <= ohh; oh++)
      for (int64_t ow = owl; ow <= owh; ow++) {
        int64_t h0, h1, w0, w1;
        const int64_t div = mlcd_avg_window(p, oh, ow, &h0, &h1, &w0, &w1);
        if (div <= 0 || h < h0 || h >= h1 || w < w0 || w >= w1) continue;
        g += dy[(nc * p.OH + oh) * p.OW + ow] / (float)div;
      }
    dx[i] = g;
  }
}
template <typename F>
__global__ void mlcd_adaptive_avg_pool2d_dx(int64_t N, int64_t C, int64_t H, int64_t W, int64_t OH, int64_t OW,
                                            const F *dy, F *dx) {
  MLCD_FOR(i, N * C * H * W) {
    const int64_t w = i % W, h = (i / W) % H, nc = i / (W * H);
    float g = 0.0f;
    for (int64_t oh = 0; oh < OH; oh++) {
      const int64_t hs = oh * H / OH, he = ((oh + 1) * H + OH - 1) / OH;
      if (h < hs || h >= he) continue;
      for (int64_t ow = 0; ow < OW; ow++) {
        const int64_t ws = ow * W / OW, we = ((ow + 1) * W + OW - 1) / OW;
        if (w >= ws && w < we) g += dy[(nc * OH + oh) * OW + ow] / (float)((he - hs) * (we - ws));
      }
    }
    dx[i] = g;
  }
}

/* ---- convolution (NCHW; conv1d runs as H = KH = OH = 1) ----------------------------- */
struct mlcd_conv {
  int64_t N, C, H, W, OC, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw, groups;
};
/* y[n, oc, oh, ow] = b[oc] + sum over the group's channels and the window. */
template <typename F> __global__ void mlcd_conv2d(mlcd_conv p, const F *x, const F *w, const F *b, F *y) {
  const int64_t cg = p.C / p.groups, ocg = p.OC / p.groups;
  MLCD_FOR(i, p.N * p.OC * p.OH * p.OW) {
    const int64_t ow = i % p.OW, oh = (i / p.OW) % p.OH, oc = (i / (p.OW * p.OH)) % p.OC, n = i / (p.OW * p.OH * p.OC);
    const int64_t g = oc / ocg;
    float acc = 0.0f;
    for (int64_t c = 0; c < cg; c++) {
      const F *xc = x + (n * p.C + g * cg + c) * p.H * p.W, *wc = w + (oc * cg + c) * p.KH * p.KW;
      for (int64_t kh = 0; kh < p.KH; kh++) {
        const int64_t h = oh * p.sh - p.ph + kh * p.dh;
        if (h < 0 || h >= p.H) continue;
        for (int64_t kw = 0; kw < p.KW; kw++) {
          const int64_t ww = ow * p.sw - p.pw + kw * p.dw;
          if (ww >= 0 && ww < p.W) acc += xc[h * p.W + ww] * wc[kh * p.KW + kw];
        }
      }
    }
    y[i] = acc + (b ? b[oc] : 0.0f);
  }
}
/* dx[n, c, h, w] = sum of dy over the outputs whose window reads (h, w). */
template <typename F> __global__ void mlcd_conv2d_dx(mlcd_conv p, const F *dy, const F *w, F *dx) {
  const int64_t cg = p.C / p.groups, ocg = p.OC / p.groups;
  MLCD_FOR(i, p.N * p.C * p.H * p.W) {
    const int64_t iw = i % p.W, ih = (i / p.W) % p.H, c = (i / (p.W * p.H)) % p.C, n = i / (p.W * p.H * p.C);
    const int64_t g = c / cg, ci = c % cg;
    float acc = 0.0f;
    for (int64_t o = 0; o < ocg; o++) {
      const int64_t oc = g * ocg + o;
      const F *wc = w + (oc * cg + ci) * p.KH * p.KW, *yc = dy + (n * p.OC + oc) * p.OH * p.OW;
      for (int64_t kh = 0; kh < p.KH; kh++) {
        const int64_t th = ih + p.ph - kh * p.dh;
        if (th < 0 || th % p.sh) continue;
        const int64_t oh = th / p.sh;
        if (oh >= p.OH) continue;
        for (int64_t kw = 0; kw < p.KW; kw++) {
          const int64_t tw = iw + p.pw - kw * p.dw;
          if (tw < 0 || tw % p.sw) continue;
          const int64_t ow = tw / p.sw;
          if (ow < p.OW) acc += yc[oh * p.OW + ow] * wc[kh * p.KW + kw];
        }
      }
    }
    dx[i] = acc;
  }
}
/* dw[oc, ci, kh, kw] = sum over images and outputs of dy * x (in double).  One
 * block per weight: its threads stride over the N * OH * OW terms and a
 * fixed-order block sum adds them up (the same bits on every run).  (One
 * thread per weight, as before, left LeNet-5's 150 conv1 weights each a
 * serial loop of 50,176 terms: 2.5x PyTorch's epoch on an H200.) */
template <typename F> __global__ void mlcd_conv2d_dw(mlcd_conv p, const F *dy, const F *x, F *dw) {
  const int64_t cg = p.C / p.groups, ocg = p.OC / p.groups, P = p.OH * p.OW;
  for (int64_t i = blockIdx.x; i < p.OC * cg * p.KH * p.KW; i += gridDim.x) {
    const int64_t kw = i % p.KW, kh = (i / p.KW) % p.KH, ci = (i / (p.KW * p.KH)) % cg, oc = i / (p.KW * p.KH * cg);
    const int64_t c = (oc / ocg) * cg + ci;
    double acc = 0;
    for (int64_t t = threadIdx.x; t < p.N * P; t += MLCD_THREADS) {
      const int64_t n = t / P, o = t % P, oh = o / p.OW, ow = o % p.OW;
      const int64_t h = oh * p.sh - p.ph + kh * p.dh, w = ow * p.sw - p.pw + kw * p.dw;
      if (h >= 0 && h < p.H && w >= 0 && w < p.W)
        acc += (double)dy[(n * p.OC + oc) * P + o] * x[((n * p.C + c) * p.H + h) * p.W + w];
    }
    acc = mlcd_block_sum(acc);
    if (threadIdx.x == 0) dw[i] = (float)acc;
  }
}
/* conv_transpose2d, weight [C, OC/groups, KH, KW]: the gradient of conv2d
 * with respect to its input, as a gather per output element. */
template <typename F> __global__ void mlcd_conv_transpose2d(mlcd_conv p, const F *x, const F *w, const F *b, F *y) {
  const int64_t cg = p.C / p.groups, ocg = p.OC / p.groups;
  MLCD_FOR(i, p.N * p.OC * p.OH * p.OW) {
    const int64_t ow = i % p.OW, oh = (i / p.OW) % p.OH, oc = (i / (p.OW * p.OH)) % p.OC, n = i / (p.OW * p.OH * p.OC);
    const int64_t g = oc / ocg, o = oc % ocg;
    float acc = b ? b[oc] : 0.0f;
    for (int64_t c = g * cg; c < (g + 1) * cg; c++) {
      const F *xc = x + (n * p.C + c) * p.H * p.W, *wk = w + (c * ocg + o) * p.KH * p.KW;
      for (int64_t kh = 0; kh < p.KH; kh++) {
        const int64_t th = oh + p.ph - kh * p.dh;
        if (th < 0 || th % p.sh || th / p.sh >= p.H) continue;
        for (int64_t kw = 0; kw < p.KW; kw++) {
          const int64_t tw = ow + p.pw - kw * p.dw;
          if (tw < 0 || tw % p.sw || tw / p.sw >= p.W) continue;
          acc += xc[(th / p.sh) * p.W + tw / p.sw] * wk[kh * p.KW + kw];
        }
      }
    }
    y[i] = acc;
  }
}
template <typename F> __global__ void mlcd_conv_transpose2d_dx(mlcd_conv p, const F *dy, const F *w, F *dx) {
  const int64_t cg = p.C / p.groups, ocg = p.OC / p.groups;
  MLCD_FOR(i, p.N * p.C * p.H * p.W) {
    const int64_t iw = i % p.W, ih = (i / p.W) % p.H, c = (i / (p.W * p.H)) % p.C, n = i / (p.W * p.H * p.C);
    const int64_t g = c / cg;
    float acc = 0.0f;
    for (int64_t o = 0; o < ocg; o++) {
      const F *wk = w + (c * ocg + o) * p.KH * p.KW, *yc = dy + (n * p.OC + g * ocg + o) * p.OH * p.OW;
      for (int64_t kh = 0; kh < p.KH; kh++) {
        const int64_t oh = ih * p.sh - p.ph + kh * p.dh;
        if (oh < 0 || oh >= p.OH) continue;
        for (int64_t kw = 0; kw < p.KW; kw++) {
          const int64_t ow = iw * p.sw - p.pw + kw * p.dw;
          if (ow >= 0 && ow < p.OW) acc += yc[oh * p.OW + ow] * wk[kh * p.KW + kw];
        }
      }
    }
    dx[i] = acc;
  }
}
template <typename F> __global__ void mlcd_conv_transpose2d_dw(mlcd_conv p, const F *dy, const F *x, F *dw) {
  const int64_t cg = p.C / p.groups, ocg = p.OC / p.groups;
  MLCD_FOR(i, p.C * ocg * p.KH * p.KW) {
    const int64_t kw = i % p.KW, kh = (i / p.KW) % p.KH, o = (i / (p.KW * p.KH)) % ocg, c = i / (p.KW * p.KH * ocg);
    const int64_t g = c / cg;
    double acc = 0;
    for (int64_t n = 0; n < p.N; n++) {
      const F *xc = x + (n * p.C + c) * p.H * p.W, *yc = dy + (n * p.OC + g * ocg + o) * p.OH * p.OW;
      for (int64_t ih = 0; ih < p.H; ih++) {
        const int64_t oh = ih * p.sh - p.ph + kh * p.dh;
        if (oh < 0 || oh >= p.OH) continue;
        for (int64_t iw = 0; iw < p.W; iw++) {
          const int64_t ow = iw * p.sw - p.pw + kw * p.dw;
          if (ow >= 0 && ow < p.OW) acc += (double)xc[ih * p.W + iw] * yc[oh * p.OW + ow];
        }
      }
    }
    dw[i] = (float)acc;
  }
}

/* ---- attention: one warp per query row, online softmax (no score matrix) ------------ */
struct mlcd_sdpa {
  int nbatch;
  int64_t batch[8];
  int64_t Tq, Tk, D, Dv;
  float scale;
  int causal, mask; /* mask 1: bool (keep where true), 2: float (added) */
  int64_t mask_stride[10];
};
/* The mask's offset of batch index bi, and score s_ij of row i (or -inf when masked). */
inline __device__ int64_t mlcd_sdpa_moff(const mlcd_sdpa &p, int64_t bi) {
  int64_t moff = 0, rest = bi;
  for (int i = p.nbatch - 1; i >= 0; i--) {
    moff += (rest % p.batch[i]) * p.mask_stride[i];
    rest /= p.batch[i];
  }
  return moff;
}
inline __device__ float mlcd_sdpa_score(const mlcd_sdpa &p, const float *qi, const float *kj, const void *mask,
                                        int64_t mrow, int64_t j) {
  float bias = 0.0f;
  if (p.mask == 1 && !((const uint8_t *)mask)[mrow + j * p.mask_stride[p.nbatch + 1]]) return -INFINITY;
  if (p.mask == 2) bias = ((const float *)mask)[mrow + j * p.mask_stride[p.nbatch + 1]];
  float dot = 0.0f;
  for (int64_t c = threadIdx.x % 32; c < p.D; c += 32) dot += qi[c] * kj[c];
  return mlcd_warp_sum(dot) * p.scale + bias;
}
template <typename F> __global__ void mlcd_sdpa_fwd(mlcd_sdpa p, const F *q, const F *k, const F *v, const void *mask, F *y) {
  int64_t nb = 1;
  for (int i = 0; i < p.nbatch; i++) nb *= p.batch[i];
  const int lane = threadIdx.x % 32;
  MLCD_FOR_WARP(row, nb * p.Tq) {
    const int64_t bi = row / p.Tq, i = row % p.Tq;
    const F *qi = q + (bi * p.Tq + i) * p.D, *kb = k + bi * p.Tk * p.D, *vb = v + bi * p.Tk * p.Dv;
    F *acc = y + (bi * p.Tq + i) * p.Dv; /* each lane owns channels lane, lane + 32, ... */
    const int64_t mrow = mlcd_sdpa_moff(p, bi) + i * p.mask_stride[p.nbatch];
    for (int64_t c = lane; c < p.Dv; c += 32) acc[c] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    const int64_t jend = p.causal && i + 1 < p.Tk ? i + 1 : p.Tk;
    for (int64_t j = 0; j < jend; j++) {
      const float s = mlcd_sdpa_score(p, qi, kb + j * p.D, mask, mrow, j);
      if (s == -INFINITY) continue;
      const F *vj = vb + j * p.Dv;
      if (s > m) {
        const float corr = expf(m - s);
        l = l * corr + 1.0f;
        for (int64_t c = lane; c < p.Dv; c += 32) acc[c] = acc[c] * corr + vj[c];
        m = s;
      } else {
        const float e = expf(s - m);
        l += e;
        for (int64_t c = lane; c < p.Dv; c += 32) acc[c] += e * vj[c];
      }
    }
    const float inv = 1.0f / l;
    for (int64_t c = lane; c < p.Dv; c += 32) acc[c] = l > 0.0f ? acc[c] * inv : NAN;
  }
}
/* The backward (runtime/attention.c): per query row, P recomputed in two
 * passes; dq written by the row's warp, dk and dv summed over rows with
 * atomicAdd (dk and dv are zeroed before the launch). */
template <typename F>
__global__ void mlcd_sdpa_bwd(mlcd_sdpa p, const F *q, const F *k, const F *v, const void *mask, const F *y,
                              const F *dy, F *dq, F *dk, F *dv) {
  int64_t nb = 1;
  for (int i = 0; i < p.nbatch; i++) nb *= p.batch[i];
  const int lane = threadIdx.x % 32;
  MLCD_FOR_WARP(row, nb * p.Tq) {
    const int64_t bi = row / p.Tq, i = row % p.Tq;
    const F *qi = q + (bi * p.Tq + i) * p.D, *kb = k + bi * p.Tk * p.D, *vb = v + bi * p.Tk * p.Dv;
    const F *dyi = dy + (bi * p.Tq + i) * p.Dv, *yi = y + (bi * p.Tq + i) * p.Dv;
    F *dqi = dq + (bi * p.Tq + i) * p.D, *dkb = dk + bi * p.Tk * p.D, *dvb = dv + bi * p.Tk * p.Dv;
    const int64_t mrow = mlcd_sdpa_moff(p, bi) + i * p.mask_stride[p.nbatch];
    const int64_t jend = p.causal && i + 1 < p.Tk ? i + 1 : p.Tk;
    for (int64_t c = lane; c < p.D; c += 32) dqi[c] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    for (int64_t j = 0; j < jend; j++) {
      const float s = mlcd_sdpa_score(p, qi, kb + j * p.D, mask, mrow, j);
      if (s == -INFINITY) continue;
      if (s > m) l = l * expf(m - s) + 1.0f, m = s;
      else l += expf(s - m);
    }
    if (!(l > 0.0f)) {
      for (int64_t c = lane; c < p.D; c += 32) dqi[c] = NAN;
      continue;
    }
    double delta = 0;
    for (int64_t c = lane; c < p.Dv; c += 32) delta += (double)dyi[c] * yi[c];
    delta = mlcd_warp_sum(delta);
    const float inv = 1.0f / l;
    for (int64_t j = 0; j < jend; j++) {
      const float s = mlcd_sdpa_score(p, qi, kb + j * p.D, mask, mrow, j);
      if (s == -INFINITY) continue;
      const float pij = expf(s - m) * inv;
      const F *kj = kb + j * p.D, *vj = vb + j * p.Dv;
      float dp = 0.0f;
      for (int64_t c = lane; c < p.Dv; c += 32) {
        dp += dyi[c] * vj[c];
        atomicAdd(&dvb[j * p.Dv + c], pij * dyi[c]);
      }
      dp = mlcd_warp_sum(dp);
      const float ds = pij * (dp - (float)delta) * p.scale;
      for (int64_t c = lane; c < p.D; c += 32) {
        dqi[c] += ds * kj[c];
        atomicAdd(&dkb[j * p.D + c], ds * qi[c]);
      }
    }
  }
}

/* ---- losses ------------------------------------------------------------------------ */
/* cross_entropy, mean over N rows: one block of MLCD_THREADS; warp w takes
 * rows w, w + 8, ... and the partial sums are added in a fixed order, so the
 * result does not depend on scheduling.  A label outside 0..C-1 fails
 * check `check` (the loss is then NaN, and the host reports the label). */
template <typename F>
__global__ void mlcd_cross_entropy(const F *logits, const void *labels, int ldt, int64_t N, int64_t C,
                                   double smoothing, F *loss, int64_t *status, int64_t check) {
  __shared__ double part[MLCD_THREADS / 32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  double total = 0;
  bool bad = false;
  for (int64_t r = warp; r < N; r += MLCD_THREADS / 32) {
    const F *row = logits + r * C;
    const int64_t yl = mlcd_label(labels, ldt, r);
    if (yl < 0 || yl >= C) {
      if (lane == 0) mlcd_fail(status, check, yl, C - 1);
      bad = true;
      continue;
    }
    float m = -INFINITY;
    for (int64_t c = lane; c < C; c += 32) m = fmaxf(m, row[c]);
    m = mlcd_warp_max(m);
    double se = 0, sum = 0;
    for (int64_t c = lane; c < C; c += 32) se += exp((double)row[c] - m), sum += row[c];
    se = mlcd_warp_sum(se), sum = mlcd_warp_sum(sum);
    const double lse = m + log(se), nll = lse - row[yl];
    total += (1 - smoothing) * nll + smoothing * (lse - sum / (double)C);
  }
  if (lane == 0) part[warp] = total;
  __syncthreads();
  if (threadIdx.x == 0) {
    double t = 0;
    for (int i = 0; i < MLCD_THREADS / 32; i++) t += part[i];
    *loss = N && !bad ? (float)(t / (double)N) : NAN;
  }
}
/* d loss / d logits = dy / N * (softmax - (1 - s) onehot - s / C), one warp per row. */
template <typename F>
__global__ void mlcd_cross_entropy_dx(const F *dy, const F *logits, const void *labels, int ldt, int64_t N, int64_t C,
                                      double smoothing, F *dx, int64_t *status, int64_t check) {
  const int lane = threadIdx.x % 32;
  const float scale = N ? dy[0] / (float)N : 0.0f;
  MLCD_FOR_WARP(r, N) {
    const F *row = logits + r * C;
    const int64_t yl = mlcd_label(labels, ldt, r);
    if (yl < 0 || yl >= C) {
      if (lane == 0) mlcd_fail(status, check, yl, C - 1);
      continue;
    }
    float m = -INFINITY;
    for (int64_t c = lane; c < C; c += 32) m = fmaxf(m, row[c]);
    m = mlcd_warp_max(m);
    double se = 0;
    for (int64_t c = lane; c < C; c += 32) se += exp((double)row[c] - m);
    se = mlcd_warp_sum(se);
    for (int64_t c = lane; c < C; c += 32) {
      const double pr = exp((double)row[c] - m) / se;
      const double target = (c == yl ? 1 - smoothing : 0) + smoothing / (double)C;
      dx[r * C + c] = (float)((pr - target) * scale);
    }
  }
}

/* ---- gradients of indexing: sums over repeated indices (atomicAdd) -------------------- */
/* dtable[V, D] += dy rows at their ids (dtable zeroed before; ids checked by the forward). */
template <typename F>
__global__ void mlcd_embedding_dw(const F *dy, const void *ids, int idt, int64_t n, int64_t D, int64_t V, F *dw) {
  MLCD_FOR(t, n * D) {
    const int64_t id = mlcd_label(ids, idt, t / D);
    if (id >= 0 && id < V) atomicAdd(&dw[id * D + t % D], dy[t]);
  }
}
/* dx[o, index[j], :] += dy[o, j, :] (dx zeroed before). */
template <typename F>
__global__ void mlcd_index_select_dx(const F *dy, int64_t outer, int64_t n, int64_t inner, const void *index, int idt,
                                     int64_t nindex, F *dx) {
  MLCD_FOR(t, outer * nindex * inner) {
    const int64_t o = t / (nindex * inner), j = (t / inner) % nindex;
    const int64_t k = mlcd_label(index, idt, j);
    if (k >= 0 && k < n) atomicAdd(&dx[(o * n + k) * inner + t % inner], dy[t]);
  }
}

/* ---- dropout in a train step: the CPU's counter-based mask, bit for bit ------------- */
inline __device__ uint64_t mlcd_mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}
/* step: the instance's step counter (device); the mask of a step uses the
 * count of steps taken before it, as mlcrt_dropout_f32. */
template <typename F>
__global__ void mlcd_dropout(const F *x, int64_t n, double p, uint64_t seed, const int64_t *step, uint64_t key, F *y) {
  const uint64_t k = mlcd_mix64(mlcd_mix64(mlcd_mix64(seed ^ 0x6D6C632D64726F70ULL) + (uint64_t)*step) ^ key);
  const uint64_t drop = (uint64_t)llround(p * 16777216.0);
  const float scale = 1.0f / (float)(1.0 - p);
  MLCD_FOR(i, n) {
    if (!(p > 0.0)) {
      y[i] = x[i];
    } else if (p >= 1.0) {
      y[i] = x[i] * 0.0f;
    } else {
      const uint64_t u = mlcd_mix64(k + (uint64_t)(i + 1) * 0x9E3779B97F4A7C15ULL) >> 40;
      y[i] = u >= drop ? x[i] * scale : x[i] * 0.0f;
    }
  }
}

/* ---- the train step's bookkeeping ---------------------------------------------------- */
/* Counts the step when the loss is finite and every check passed. */
template <typename F> __global__ void mlcd_step_begin(const F *loss, const int64_t *status, int64_t *step) {
  if (blockIdx.x == 0 && threadIdx.x == 0 && mlcd_step_ok(loss, status)) ++*step;
}

#endif
