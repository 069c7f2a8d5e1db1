/* attention.c — scaled_dot_product_attention, as PyTorch's math definition:
 *
 *     scores = q @ k^T * scale + bias,   y = softmax(scores, -1) @ v
 *
 * where bias is -inf where a bool mask is false (or above the diagonal with
 * causal, aligned top-left: key j is visible to query i iff j <= i) and the
 * float mask where one is given.  One query row at a time with an online
 * softmax: a running maximum m, a running sum l of exp(s - m) and the
 * output row as accumulator, rescaled by exp(m_old - m_new) when the maximum
 * grows, so the Tq x Tk score matrix is never stored and nothing is
 * allocated.  A row whose keys are all masked has softmax 0/0 = NaN in
 * PyTorch; so it has here (and a NaN score makes the row NaN).
 *
 * Speed: dot products sum into 16 lane accumulators (then a fixed tree), a
 * shape compilers turn into vector FMAs without reassociating anything, and
 * the row bodies are compiled once per instruction set (AVX-512, AVX2+FMA,
 * baseline) and chosen by the team's ISA like the GEMM kernels, so the last
 * bits may differ between ISAs (FMA), never between runs or thread counts.
 * The forward reads q, k, v and writes y at the strides the params give
 * (dense unless strided is set; the backward takes dense tensors only).
 * The forward splits its Tq rows of every batch index into contiguous
 * slices, one per team member; the backward splits the batch indices (each
 * one's dk and dv sum over its own rows).
 */
#include "mlcrt.h"
#include "rt_internal.h"

#include <math.h>

/* sum of a[c] * b[c]: 16 independent lanes, then a fixed tree */
static inline float dot(const float *a, const float *b, int64_t n) {
  float acc[16] = {0};
  int64_t c = 0;
  for (; c + 16 <= n; c += 16)
    for (int l = 0; l < 16; l++) acc[l] += a[c + l] * b[c + l];
  for (int l = 0; c < n; c++, l++) acc[l] += a[c] * b[c];
  for (int w = 8; w >= 1; w /= 2)
    for (int l = 0; l < w; l++) acc[l] += acc[l + w];
  return acc[0];
}

/* the offset of batch index bi at strides st[] (the mask's broadcast dims
 * have stride 0) */
static int64_t batch_offset(const mlcrt_sdpa_params *p, const int64_t *st, int64_t bi) {
  int64_t off = 0, rest = bi;
  for (int i = p->nbatch - 1; i >= 0; i--) {
    off += (rest % p->batch[i]) * st[i];
    rest /= p->batch[i];
  }
  return off;
}

static int64_t mask_offset(const mlcrt_sdpa_params *p, int64_t bi) {
  return batch_offset(p, p->mask_stride, bi);
}

/* the score of query row qi against key j (-inf: masked) */
static inline float score(const mlcrt_sdpa_params *p, const void *mask, int64_t mrow,
                          const float *qi, const float *kj, int64_t j) {
  const int64_t ms = p->mask_stride[p->nbatch + 1];
  float bias = 0.0f;
  if (p->mask == 1) {
    if (!((const uint8_t *)mask)[mrow + j * ms]) return -INFINITY;
  } else if (p->mask == 2) {
    bias = ((const float *)mask)[mrow + j * ms];
  }
  return dot(qi, kj, p->D) * p->scale + bias;
}

/* Forward rows r0..r1 of the flattened (batch, Tq) rows; p's strides are
 * set (mlcrt_sdpa_f32 fills them in for dense tensors). */
static inline void fwd_rows(const mlcrt_sdpa_params *p, const float *q, const float *k,
                            const float *v, const void *mask, float *y, int64_t r0, int64_t r1) {
  const int64_t Tq = p->Tq, Tk = p->Tk, Dv = p->Dv, nb = p->nbatch;
  const int64_t krow = p->k_stride[nb], vrow = p->v_stride[nb];
  const float *qb = q, *kb = k, *vb = v;
  float *yb = y;
  int64_t mb = 0, cur = -1;
  for (int64_t r = r0; r < r1; r++) {
    const int64_t bi = r / Tq, i = r % Tq;
    if (bi != cur) { /* a new batch index: its offsets, once */
      qb = q + batch_offset(p, p->q_stride, bi), kb = k + batch_offset(p, p->k_stride, bi);
      vb = v + batch_offset(p, p->v_stride, bi), yb = y + batch_offset(p, p->y_stride, bi);
      mb = mask_offset(p, bi);
      cur = bi;
    }
    const float *qi = qb + i * p->q_stride[nb];
    float *acc = yb + i * p->y_stride[nb];
    const int64_t mrow = mb + i * p->mask_stride[p->nbatch];
    for (int64_t c = 0; c < Dv; c++) acc[c] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    const int64_t jend = p->causal && i + 1 < Tk ? i + 1 : Tk;
    for (int64_t j = 0; j < jend; j++) {
      const float s = score(p, mask, mrow, qi, kb + j * krow, j);
      if (s == -INFINITY) continue; /* weight exp(-inf) = 0 */
      const float *vj = vb + j * vrow;
      if (s > m) {
        const float corr = expf(m - s); /* 0 on the first key */
        l = l * corr + 1.0f;
        for (int64_t c = 0; c < Dv; c++) acc[c] = acc[c] * corr + vj[c];
        m = s;
      } else {
        const float e = expf(s - m); /* NaN when s is NaN: the row becomes NaN */
        l += e;
        for (int64_t c = 0; c < Dv; c++) acc[c] += e * vj[c];
      }
    }
    /* l == 0: every key masked; l NaN: a NaN score.  Both give NaN. */
    const float inv = 1.0f / l;
    for (int64_t c = 0; c < Dv; c++) acc[c] = l > 0.0f ? acc[c] * inv : NAN;
  }
}

/* Backward of batch index bi: dq rows, dk and dv of that batch index. */
static inline void bwd_batch(const mlcrt_sdpa_params *p, const float *q, const float *k,
                             const float *v, const void *mask, const float *y, const float *dy,
                             float *dq, float *dk, float *dv, int64_t bi) {
  const int64_t Tq = p->Tq, Tk = p->Tk, D = p->D, Dv = p->Dv;
  const float *qb = q + bi * Tq * D, *kb = k + bi * Tk * D, *vb = v + bi * Tk * Dv;
  const float *yb = y + bi * Tq * Dv, *dyb = dy + bi * Tq * Dv;
  float *dqb = dq + bi * Tq * D, *dkb = dk + bi * Tk * D, *dvb = dv + bi * Tk * Dv;
  for (int64_t c = 0; c < Tk * D; c++) dkb[c] = 0.0f;
  for (int64_t c = 0; c < Tk * Dv; c++) dvb[c] = 0.0f;
  const int64_t moff = mask_offset(p, bi);
  for (int64_t i = 0; i < Tq; i++) {
    const float *qi = qb + i * D, *dyi = dyb + i * Dv, *yi = yb + i * Dv;
    float *dqi = dqb + i * D;
    const int64_t mrow = moff + i * p->mask_stride[p->nbatch];
    const int64_t jend = p->causal && i + 1 < Tk ? i + 1 : Tk;
    for (int64_t c = 0; c < D; c++) dqi[c] = 0.0f;
    /* pass 1: the row's maximum and sum of exponentials */
    float m = -INFINITY, l = 0.0f;
    for (int64_t j = 0; j < jend; j++) {
      const float s = score(p, mask, mrow, qi, kb + j * D, j);
      if (s == -INFINITY) continue;
      if (s > m) {
        l = l * expf(m - s) + 1.0f;
        m = s;
      } else {
        l += expf(s - m);
      }
    }
    if (!(l > 0.0f)) {
      for (int64_t c = 0; c < D; c++) dqi[c] = NAN;
      continue;
    }
    double delta = 0;
    for (int64_t c = 0; c < Dv; c++) delta += (double)dyi[c] * yi[c];
    const float inv = 1.0f / l;
    /* pass 2: P_ij and the three gradients */
    for (int64_t j = 0; j < jend; j++) {
      const float *kj = kb + j * D, *vj = vb + j * Dv;
      const float s = score(p, mask, mrow, qi, kj, j);
      if (s == -INFINITY) continue;
      float *dkj = dkb + j * D, *dvj = dvb + j * Dv;
      const float pij = expf(s - m) * inv;
      const float dp = dot(dyi, vj, Dv);
      for (int64_t c = 0; c < Dv; c++) dvj[c] += pij * dyi[c];
      const float ds = pij * (dp - (float)delta) * p->scale;
      for (int64_t c = 0; c < D; c++) {
        dqi[c] += ds * kj[c];
        dkj[c] += ds * qi[c];
      }
    }
  }
}

#define SDPA_VARIANT(SUFFIX, TARGET)                                                               \
  TARGET static void fwd_##SUFFIX(const mlcrt_sdpa_params *p, const float *q, const float *k,      \
                                  const float *v, const void *mask, float *y, int64_t r0,          \
                                  int64_t r1) {                                                    \
    fwd_rows(p, q, k, v, mask, y, r0, r1);                                                         \
  }                                                                                                \
  TARGET static void bwd_##SUFFIX(const mlcrt_sdpa_params *p, const float *q, const float *k,      \
                                  const float *v, const void *mask, const float *y,                \
                                  const float *dy, float *dq, float *dk, float *dv, int64_t bi) {  \
    bwd_batch(p, q, k, v, mask, y, dy, dq, dk, dv, bi);                                            \
  }

SDPA_VARIANT(generic, )
#if defined(__x86_64__) && defined(__GNUC__)
SDPA_VARIANT(avx2, __attribute__((target("avx2,fma"))))
SDPA_VARIANT(avx512, __attribute__((target("avx512f"))))
#endif

typedef void (*fwd_fn)(const mlcrt_sdpa_params *, const float *, const float *, const float *,
                       const void *, float *, int64_t, int64_t);
typedef void (*bwd_fn)(const mlcrt_sdpa_params *, const float *, const float *, const float *,
                       const void *, const float *, const float *, float *, float *, float *,
                       int64_t);

typedef struct {
  const mlcrt_sdpa_params *p;
  const float *q, *k, *v, *y, *dy;
  const void *mask;
  float *out, *dq, *dk, *dv;
  fwd_fn fwd;
  bwd_fn bwd;
} sdpa_job;

/* rows (forward) or batch indices (backward) lo..hi-1 */
static void sdpa_range(void *arg, int64_t lo, int64_t hi) {
  const sdpa_job *j = arg;
  if (j->fwd) {
    j->fwd(j->p, j->q, j->k, j->v, j->mask, j->out, lo, hi);
    return;
  }
  for (int64_t bi = lo; bi < hi; bi++)
    j->bwd(j->p, j->q, j->k, j->v, j->mask, j->y, j->dy, j->dq, j->dk, j->dv, bi);
}

static int64_t batches(const mlcrt_sdpa_params *p) {
  int64_t nb = 1;
  for (int i = 0; i < p->nbatch; i++) nb *= p->batch[i];
  return nb;
}

static int sdpa_isa(mlcrt_team *team) {
  return team ? mlcrt_team_isa(team) : mlcrt_cpu_isa();
}

/* Dense strides: batch dims, then rows of `row` elements. */
static void dense(const mlcrt_sdpa_params *p, int64_t T, int64_t row, int64_t *st) {
  int64_t s = T * row;
  st[p->nbatch] = row;
  for (int i = p->nbatch - 1; i >= 0; i--) {
    st[i] = s;
    s *= p->batch[i];
  }
}

void mlcrt_sdpa_f32(mlcrt_team *team, const mlcrt_sdpa_params *p0, const float *q, const float *k,
                    const float *v, const void *mask, float *y) {
  mlcrt_sdpa_params pd = *p0; /* with its strides filled in */
  const mlcrt_sdpa_params *p = &pd;
  if (!p0->strided) {
    dense(p, p->Tq, p->D, pd.q_stride);
    dense(p, p->Tk, p->D, pd.k_stride);
    dense(p, p->Tk, p->Dv, pd.v_stride);
    dense(p, p->Tq, p->Dv, pd.y_stride);
  }
  sdpa_job j = {0};
  j.p = p, j.q = q, j.k = k, j.v = v, j.mask = mask, j.out = y;
  const int isa = sdpa_isa(team);
  j.fwd = fwd_generic;
#if defined(__x86_64__) && defined(__GNUC__)
  if (isa == MLCRT_ISA_AVX512)
    j.fwd = fwd_avx512;
  else if (isa == MLCRT_ISA_AVX2)
    j.fwd = fwd_avx2;
#else
  (void)isa;
#endif
  /* one slice below ~50 us of multiply-adds, else one per member */
  const int64_t rows = batches(p) * p->Tq;
  mlcrt__ranges(team, rows, (double)rows * (double)p->Tk * (double)(p->D + p->Dv), sdpa_range, &j);
}

/* The backward of mlcrt_sdpa_f32 (flash-attention style, nothing stored but
 * the forward output y): for each query row i the softmax row P_i is
 * recomputed from q, k and the mask in two passes over the keys (first the
 * running maximum m and sum l, then P_ij = exp(s_ij - m) / l), so no Tq x Tk
 * matrix is materialised.  With dP_ij = dy_i . v_j and delta_i = dy_i . y_i
 * (= sum_j P_ij dP_ij), dS_ij = P_ij (dP_ij - delta_i):
 *     dv_j += P_ij dy_i,   dq_i += scale dS_ij k_j,   dk_j += scale dS_ij q_i.
 * dq, dk, dv are dense like q, k, v and overwritten.  A fully masked row has
 * a NaN forward output; its dq row is NaN too (as PyTorch's). */
void mlcrt_sdpa_bwd_f32(mlcrt_team *team, const mlcrt_sdpa_params *p, const float *q,
                        const float *k, const float *v, const void *mask, const float *y,
                        const float *dy, float *dq, float *dk, float *dv) {
  sdpa_job j = {0};
  j.p = p, j.q = q, j.k = k, j.v = v, j.mask = mask, j.y = y, j.dy = dy;
  j.dq = dq, j.dk = dk, j.dv = dv;
  const int isa = sdpa_isa(team);
  j.bwd = bwd_generic;
#if defined(__x86_64__) && defined(__GNUC__)
  if (isa == MLCRT_ISA_AVX512)
    j.bwd = bwd_avx512;
  else if (isa == MLCRT_ISA_AVX2)
    j.bwd = bwd_avx2;
#else
  (void)isa;
#endif
  const int64_t nb = batches(p);
  mlcrt__ranges(team, nb,
                (double)nb * (double)p->Tq * (double)p->Tk * (double)(2 * p->D + 2 * p->Dv),
                sdpa_range, &j);
}
