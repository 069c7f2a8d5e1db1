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
 */
#include "mlcrt.h"

#include <math.h>

void mlcrt_sdpa_f32(const mlcrt_sdpa_params *p, const float *q, const float *k, const float *v,
                    const void *mask, float *y) {
  const int64_t Tq = p->Tq, Tk = p->Tk, D = p->D, Dv = p->Dv;
  int64_t nb = 1;
  for (int i = 0; i < p->nbatch; i++) nb *= p->batch[i];
  const int64_t *ms = p->mask_stride;
  const int nbd = p->nbatch;
  for (int64_t bi = 0; bi < nb; bi++) {
    /* the mask's offset for this batch index (broadcast dims have stride 0) */
    int64_t moff = 0, rest = bi;
    for (int i = nbd - 1; i >= 0; i--) {
      moff += (rest % p->batch[i]) * ms[i];
      rest /= p->batch[i];
    }
    const float *qb = q + bi * Tq * D, *kb = k + bi * Tk * D, *vb = v + bi * Tk * Dv;
    float *yb = y + bi * Tq * Dv;
    for (int64_t i = 0; i < Tq; i++) {
      const float *qi = qb + i * D;
      float *acc = yb + i * Dv;
      const int64_t mrow = moff + i * ms[nbd];
      for (int64_t c = 0; c < Dv; c++) acc[c] = 0.0f;
      float m = -INFINITY, l = 0.0f;
      const int64_t jend = p->causal && i + 1 < Tk ? i + 1 : Tk;
      for (int64_t j = 0; j < jend; j++) {
        float bias = 0.0f;
        if (p->mask == 1) {
          if (!((const uint8_t *)mask)[mrow + j * ms[nbd + 1]]) continue;
        } else if (p->mask == 2) {
          bias = ((const float *)mask)[mrow + j * ms[nbd + 1]];
        }
        const float *kj = kb + j * D, *vj = vb + j * Dv;
        float dot = 0.0f;
        for (int64_t c = 0; c < D; c++) dot += qi[c] * kj[c];
        const float s = dot * p->scale + bias;
        if (s == -INFINITY) continue; /* weight exp(-inf) = 0 */
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
void mlcrt_sdpa_bwd_f32(const mlcrt_sdpa_params *p, const float *q, const float *k, const float *v,
                        const void *mask, const float *y, const float *dy, float *dq, float *dk, float *dv) {
  const int64_t Tq = p->Tq, Tk = p->Tk, D = p->D, Dv = p->Dv;
  int64_t nb = 1;
  for (int i = 0; i < p->nbatch; i++) nb *= p->batch[i];
  const int64_t *ms = p->mask_stride;
  const int nbd = p->nbatch;
  for (int64_t i = 0; i < nb * Tk * D; i++) dk[i] = 0.0f;
  for (int64_t i = 0; i < nb * Tk * Dv; i++) dv[i] = 0.0f;
  for (int64_t bi = 0; bi < nb; bi++) {
    int64_t moff = 0, rest = bi;
    for (int i = nbd - 1; i >= 0; i--) {
      moff += (rest % p->batch[i]) * ms[i];
      rest /= p->batch[i];
    }
    const float *qb = q + bi * Tq * D, *kb = k + bi * Tk * D, *vb = v + bi * Tk * Dv;
    const float *yb = y + bi * Tq * Dv, *dyb = dy + bi * Tq * Dv;
    float *dqb = dq + bi * Tq * D, *dkb = dk + bi * Tk * D, *dvb = dv + bi * Tk * Dv;
    for (int64_t i = 0; i < Tq; i++) {
      const float *qi = qb + i * D, *dyi = dyb + i * Dv, *yi = yb + i * Dv;
      float *dqi = dqb + i * D;
      const int64_t mrow = moff + i * ms[nbd];
      const int64_t jend = p->causal && i + 1 < Tk ? i + 1 : Tk;
      for (int64_t c = 0; c < D; c++) dqi[c] = 0.0f;
      /* pass 1: the row's maximum and sum of exponentials */
      float m = -INFINITY, l = 0.0f;
      for (int64_t j = 0; j < jend; j++) {
        float bias = 0.0f;
        if (p->mask == 1) {
          if (!((const uint8_t *)mask)[mrow + j * ms[nbd + 1]]) continue;
        } else if (p->mask == 2) {
          bias = ((const float *)mask)[mrow + j * ms[nbd + 1]];
        }
        const float *kj = kb + j * D;
        float dot = 0.0f;
        for (int64_t c = 0; c < D; c++) dot += qi[c] * kj[c];
        const float s = dot * p->scale + bias;
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
        float bias = 0.0f;
        if (p->mask == 1) {
          if (!((const uint8_t *)mask)[mrow + j * ms[nbd + 1]]) continue;
        } else if (p->mask == 2) {
          bias = ((const float *)mask)[mrow + j * ms[nbd + 1]];
        }
        const float *kj = kb + j * D, *vj = vb + j * Dv;
        float *dkj = dkb + j * D, *dvj = dvb + j * Dv;
        float dot = 0.0f;
        for (int64_t c = 0; c < D; c++) dot += qi[c] * kj[c];
        const float s = dot * p->scale + bias;
        if (s == -INFINITY) continue;
        const float pij = expf(s - m) * inv;
        float dp = 0.0f;
        for (int64_t c = 0; c < Dv; c++) {
          dp += dyi[c] * vj[c];
          dvj[c] += pij * dyi[c];
        }
        const float ds = pij * (dp - (float)delta) * p->scale;
        for (int64_t c = 0; c < D; c++) {
          dqi[c] += ds * kj[c];
          dkj[c] += ds * qi[c];
        }
      }
    }
  }
}
