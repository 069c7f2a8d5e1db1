/* conv_direct.c — direct convolution for layers with a tiny kernel volume
 * (C*KH*KW <= 32: a first layer on one or three channels, as LeNet's 1->6
 * 5x5), forward and weight gradient.  As GEMMs these have a depth of a few
 * dozen and a handful of rows, so packing and im2col cost more than the
 * arithmetic; here each output row is computed in tiles of 32 lanes that
 * the compiler keeps in vector registers:
 *
 *   forward: y[oc][oh][ow..ow+31] = sum over (c, kh, kw) of
 *            w[oc][c][kh][kw] * xp[c][oh*sh + kh][ow + kw ..], then + bias
 *   dw:      acc[oc][c][kh][kw][lane] += dy[oc][oh][ow + lane] * xp[c][oh*sh + kh][ow + kw + lane]
 *            over the images and rows, then the 32 lanes are summed in a
 *            fixed order.
 *
 * xp is the image with its padding made real and each row widened to
 * ntiles*32 + KW - 1 zero-filled floats, so a tile never reads outside its
 * own row and the lanes past OW multiply zeros (dy is zero-extended too).
 * Stride 1 in width and no dilation only (sh may be anything).
 *
 * The loops are plain C, compiled three times (AVX-512, AVX2+FMA, baseline)
 * and chosen by the team's ISA like the GEMM kernels (so, like theirs, the
 * last bits may differ between ISAs: FMA).  Threads take contiguous slices
 * of images; dw
 * sums each member's lanes into its own accumulator, added in member order:
 * results depend on the thread count only.
 */
#include "mlcrt.h"
#include "rt_internal.h"

#include <string.h>

#define LANES 32

int mlcrt__conv_direct_ok(const mlcrt_conv2d_params *p, int op) {
  return op != MLCRT_CONV_DX && p->groups == 1 && p->dh == 1 && p->dw == 1 && p->sw == 1 &&
         p->C * p->KH * p->KW <= 32 && p->KW <= 7 && p->OH > 0 && p->OW > 0 && p->OC > 0 &&
         p->N > 0;
}

static int64_t row_width(const mlcrt_conv2d_params *p) {
  return (p->OW + LANES - 1) / LANES * LANES + p->KW - 1;
}

static int64_t tiled(const mlcrt_conv2d_params *p) { /* OW rounded up to whole tiles */
  return (p->OW + LANES - 1) / LANES * LANES;
}

static int64_t pad_rows(const mlcrt_conv2d_params *p) {
  return p->H + 2 * p->ph;
}

/* floats of one member's buffers: the widened padded image (+ the dw lanes) */
size_t mlcrt__conv_direct_slot(const mlcrt_conv2d_params *p, int op) {
  size_t n = (size_t)(p->C * pad_rows(p) * row_width(p)) + 16;
  if (op == MLCRT_CONV_DW) /* the lanes, and dy widened like x */
    n += (size_t)(p->OC * p->C * p->KH * p->KW * LANES) + 16 + (size_t)(p->OC * p->OH * tiled(p)) +
         16;
  return n;
}

int mlcrt__conv_direct_tasks(const mlcrt_conv2d_params *p, int nthreads) {
  if (nthreads < 1) nthreads = 1;
  return p->N < nthreads ? (int)p->N : nthreads;
}

/* One image into xp[c][PH][RW], zeros around it. */
static void widen_image(const mlcrt_conv2d_params *p, const float *x, float *xp) {
  const int64_t RW = row_width(p), PH = pad_rows(p);
  memset(xp, 0, sizeof(float) * (size_t)(p->C * PH * RW));
  for (int64_t c = 0; c < p->C; c++)
    for (int64_t h = 0; h < p->H; h++)
      memcpy(xp + (c * PH + h + p->ph) * RW + p->pw, x + (c * p->H + h) * p->W,
             sizeof(float) * (size_t)p->W);
}

/* 16 floats in one value: a zmm register, or two ymm / four xmm ones.  The
 * helpers below are always inlined, so a vf never crosses a call (GCC's
 * warning about the ABI of passing one does not apply). */
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float vf __attribute__((vector_size(64)));
__attribute__((always_inline)) static inline vf load_vf(const float *p) {
  vf v;
  memcpy(&v, p, sizeof v);
  return v;
}
__attribute__((always_inline)) static inline void store_vf(float *p, vf v) {
  memcpy(p, &v, sizeof v);
}

/* R output channels from oc on (R a constant after inlining: R*2 vector
 * accumulators, each loaded row of x feeds R of them). */
__attribute__((always_inline)) static inline void fwd_rows(const int R,
                                                           const mlcrt_conv2d_params *p,
                                                           const float *xp, const float *w,
                                                           const float *b, float *y, int64_t oc) {
  const int64_t RW = row_width(p), PH = pad_rows(p), OW = p->OW;
  const int64_t wstride = p->C * p->KH * p->KW; /* to the next output channel */
  for (int64_t oh = 0; oh < p->OH; oh++)
    for (int64_t t = 0; t < OW; t += LANES) {
      vf a[4][2];
#pragma GCC unroll 4
      for (int r = 0; r < R; r++) a[r][0] = a[r][1] = (vf){0};
      for (int64_t c = 0; c < p->C; c++)
        for (int64_t kh = 0; kh < p->KH; kh++) {
          const float *xr = xp + (c * PH + oh * p->sh + kh) * RW + t;
          const float *wr = w + ((oc * p->C + c) * p->KH + kh) * p->KW;
          for (int64_t kw = 0; kw < p->KW; kw++) {
            const vf x0 = load_vf(xr + kw), x1 = load_vf(xr + kw + 16);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
              const float wv = wr[r * wstride + kw];
              a[r][0] += wv * x0;
              a[r][1] += wv * x1;
            }
          }
        }
      const int64_t n = OW - t < LANES ? OW - t : LANES;
#pragma GCC unroll 4
      for (int r = 0; r < R; r++) {
        float tmp[LANES];
        store_vf(tmp, a[r][0]);
        store_vf(tmp + 16, a[r][1]);
        const float bias = b ? b[oc + r] : 0.0f;
        float *yr = y + ((oc + r) * p->OH + oh) * OW + t;
        for (int64_t j = 0; j < n; j++) yr[j] = tmp[j] + bias;
      }
    }
}

__attribute__((always_inline)) static inline void
fwd_image(const mlcrt_conv2d_params *p, const float *xp, const float *w, const float *b, float *y) {
  int64_t oc = 0;
  for (; oc + 4 <= p->OC; oc += 4) fwd_rows(4, p, xp, w, b, y, oc);
  for (; oc < p->OC; oc++) fwd_rows(1, p, xp, w, b, y, oc);
}

/* One (oc, c, kh) of one image, KW a constant after inlining: KW*2 vector
 * accumulators run over every output row and go to acc once. */
__attribute__((always_inline)) static inline void
dw_taps(const int KW, const mlcrt_conv2d_params *p, const float *xp, const float *dy, float *ar,
        int64_t oc, int64_t c, int64_t kh) {
  const int64_t RW = row_width(p), PH = pad_rows(p), OW = p->OW;
  (void)OW;
  vf a[7][2];
#pragma GCC unroll 7
  for (int kw = 0; kw < KW; kw++) a[kw][0] = a[kw][1] = (vf){0};
  const int64_t TW = tiled(p);
  for (int64_t oh = 0; oh < p->OH; oh++)
    for (int64_t t = 0; t < OW; t += LANES) {
      const float *gr = dy + (oc * p->OH + oh) * TW + t; /* widened: zeros past OW */
      const vf g0 = load_vf(gr), g1 = load_vf(gr + 16);
      const float *xr = xp + (c * PH + oh * p->sh + kh) * RW + t;
#pragma GCC unroll 7
      for (int kw = 0; kw < KW; kw++) {
        a[kw][0] += g0 * load_vf(xr + kw);
        a[kw][1] += g1 * load_vf(xr + kw + 16);
      }
    }
#pragma GCC unroll 7
  for (int kw = 0; kw < KW; kw++) {
    store_vf(ar + kw * LANES, load_vf(ar + kw * LANES) + a[kw][0]);
    store_vf(ar + kw * LANES + 16, load_vf(ar + kw * LANES + 16) + a[kw][1]);
  }
}

__attribute__((always_inline)) static inline void
dw_image(const mlcrt_conv2d_params *p, const float *xp, const float *dy, float *acc) {
  const int64_t kdim = p->C * p->KH * p->KW;
  for (int64_t oc = 0; oc < p->OC; oc++)
    for (int64_t c = 0; c < p->C; c++)
      for (int64_t kh = 0; kh < p->KH; kh++) {
        float *ar = acc + (oc * kdim + (c * p->KH + kh) * p->KW) * LANES;
        /* KW a constant in each instance (mlcrt__conv_direct_ok: KW <= 7) */
#define TAPS(K) dw_taps(K, p, xp, dy, ar, oc, c, kh)
        if (p->KW <= 3)
          p->KW == 1 ? TAPS(1) : p->KW == 2 ? TAPS(2) : TAPS(3);
        else if (p->KW <= 5)
          p->KW == 4 ? TAPS(4) : TAPS(5);
        else
          p->KW == 6 ? TAPS(6) : TAPS(7);
#undef TAPS
      }
}

#define DIRECT_VARIANT(SUFFIX, TARGET)                                                             \
  TARGET static void fwd_##SUFFIX(const mlcrt_conv2d_params *p, const float *xp, const float *w,   \
                                  const float *b, float *y) {                                      \
    fwd_image(p, xp, w, b, y);                                                                     \
  }                                                                                                \
  TARGET static void dw_##SUFFIX(const mlcrt_conv2d_params *p, const float *xp, const float *dy,   \
                                 float *acc) {                                                     \
    dw_image(p, xp, dy, acc);                                                                      \
  }

DIRECT_VARIANT(generic, )
#if defined(__x86_64__) && defined(__GNUC__)
DIRECT_VARIANT(avx2, __attribute__((target("avx2,fma"))))
DIRECT_VARIANT(avx512, __attribute__((target("avx512f"))))
#endif

typedef struct {
  const mlcrt_conv2d_params *p;
  int op, isa;
  const float *x, *w, *b, *dy;
  float *y;
  float *scratch;
  size_t slot;
} direct_job;

static void direct_task(void *arg, int task, int ntasks) {
  const direct_job *j = arg;
  const mlcrt_conv2d_params *p = j->p;
  const int64_t per = p->N / ntasks, extra = p->N % ntasks;
  const int64_t n0 = task * per + (task < extra ? task : extra), n1 = n0 + per + (task < extra);
  float *xp = j->scratch + (size_t)task * j->slot;
  float *acc = xp + (size_t)(p->C * pad_rows(p) * row_width(p)) + 16;
  const int64_t kdim = p->C * p->KH * p->KW;
  if (j->op == MLCRT_CONV_DW) memset(acc, 0, sizeof(float) * (size_t)(p->OC * kdim * LANES));
  for (int64_t n = n0; n < n1; n++) {
    widen_image(p, j->x + n * p->C * p->H * p->W, xp);
    if (j->op == MLCRT_CONV_FWD) {
      float *y = j->y + n * p->OC * p->OH * p->OW;
#if defined(__x86_64__) && defined(__GNUC__)
      if (j->isa == MLCRT_ISA_AVX512)
        fwd_avx512(p, xp, j->w, j->b, y);
      else if (j->isa == MLCRT_ISA_AVX2)
        fwd_avx2(p, xp, j->w, j->b, y);
      else
#endif
        fwd_generic(p, xp, j->w, j->b, y);
    } else {
      /* dy of this image with each row zero-extended to whole tiles */
      const int64_t TW = tiled(p);
      float *dy = acc + (size_t)(p->OC * kdim * LANES) + 16;
      const float *src = j->dy + n * p->OC * p->OH * p->OW;
      for (int64_t r = 0; r < p->OC * p->OH; r++) {
        memcpy(dy + r * TW, src + r * p->OW, sizeof(float) * (size_t)p->OW);
        memset(dy + r * TW + p->OW, 0, sizeof(float) * (size_t)(TW - p->OW));
      }
#if defined(__x86_64__) && defined(__GNUC__)
      if (j->isa == MLCRT_ISA_AVX512)
        dw_avx512(p, xp, dy, acc);
      else if (j->isa == MLCRT_ISA_AVX2)
        dw_avx2(p, xp, dy, acc);
      else
#endif
        dw_generic(p, xp, dy, acc);
    }
  }
}

/* The lanes of member m's accumulator for weight i, summed pairwise. */
static float lane_sum(const float *lanes) {
  float t[LANES];
  memcpy(t, lanes, sizeof t);
  for (int h = LANES / 2; h > 0; h /= 2)
    for (int i = 0; i < h; i++) t[i] += t[i + h];
  return t[0];
}

void mlcrt__conv_direct(mlcrt_team *team, const mlcrt_conv2d_params *p, int op, const float *x,
                        const float *w, const float *b, const float *dy, float *y, void *scratch) {
  const int tasks = mlcrt__conv_direct_tasks(p, mlcrt_team_size(team));
  direct_job j = {p,
                  op,
                  team ? mlcrt_team_isa(team) : mlcrt_cpu_isa(),
                  x,
                  w,
                  b,
                  dy,
                  y,
                  scratch,
                  mlcrt__conv_direct_slot(p, op)};
  mlcrt_team_run(tasks > 1 ? team : NULL, tasks, direct_task, &j);
  if (op != MLCRT_CONV_DW) return;
  const int64_t nw = p->OC * p->C * p->KH * p->KW;
  for (int m = 0; m < tasks; m++) {
    const float *acc = (const float *)scratch + (size_t)m * j.slot +
                       (size_t)(p->C * pad_rows(p) * row_width(p)) + 16;
    for (int64_t i = 0; i < nw; i++) {
      const float s = lane_sum(acc + i * LANES);
      y[i] = m == 0 ? s : y[i] + s;
    }
  }
}
