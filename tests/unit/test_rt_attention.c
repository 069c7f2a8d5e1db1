/* test_rt_attention.c — mlcrt_sdpa_f32 and its backward against a plain
 * double-precision reference (scores, softmax, products), with causal, bool
 * and float masks and head sizes that are not multiples of the vector width,
 * on every instruction set the CPU has; a given ISA gives the same bits with
 * any number of threads.  The strided forward (q, k, v read from one
 * [B, T, 3 heads-wide] projection, y written as [B, T, H, Dv]) gives the bits
 * of the dense call on copies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <math.h>

#include "mlcrt.h"
#include "rt_teams.h"

typedef struct {
  int64_t nb, Tq, Tk, D, Dv;
  int causal, mask; /* mask: 0 none, 1 bool [Tq, Tk], 2 float [Tq, Tk] */
} Case;

/* P[i][j] of batch bi in double (0 where masked), as PyTorch's math path */
static void probs(const Case *c, const float *q, const float *k, const void *mask, float scale,
                  int64_t bi, int64_t i, double *P) {
  double m = -INFINITY, l = 0;
  for (int64_t j = 0; j < c->Tk; j++) {
    double s = 0;
    for (int64_t d = 0; d < c->D; d++)
      s += (double)q[(bi * c->Tq + i) * c->D + d] * k[(bi * c->Tk + j) * c->D + d];
    s *= scale;
    if (c->mask == 2) s += ((const float *)mask)[i * c->Tk + j];
    int vis = !(c->causal && j > i) && !(c->mask == 1 && !((const uint8_t *)mask)[i * c->Tk + j]);
    P[j] = vis ? s : -INFINITY;
    if (P[j] > m) m = P[j];
  }
  for (int64_t j = 0; j < c->Tk; j++) l += P[j] == -INFINITY ? 0 : exp(P[j] - m);
  for (int64_t j = 0; j < c->Tk; j++) P[j] = P[j] == -INFINITY ? 0 : exp(P[j] - m) / l;
}

static void check_case(const Case *c) {
  const int64_t nq = c->nb * c->Tq * c->D, nk = c->nb * c->Tk * c->D, nv = c->nb * c->Tk * c->Dv;
  const int64_t ny = c->nb * c->Tq * c->Dv;
  uint32_t seed = 3;
  float *q = malloc(sizeof(float) * (size_t)nq), *k = malloc(sizeof(float) * (size_t)nk);
  float *v = malloc(sizeof(float) * (size_t)nv), *dy = malloc(sizeof(float) * (size_t)ny);
  float *y = malloc(sizeof(float) * (size_t)ny), *y1 = malloc(sizeof(float) * (size_t)ny);
  float *g = malloc(sizeof(float) * (size_t)(nq + nk + nv)),
        *g1 = malloc(sizeof(float) * (size_t)(nq + nk + nv));
  double *wy = calloc((size_t)ny, sizeof(double)),
         *wg = calloc((size_t)(nq + nk + nv), sizeof(double));
  double *P = malloc(sizeof(double) * (size_t)c->Tk);
  uint8_t *bm = malloc((size_t)(c->Tq * c->Tk));
  float *fm = malloc(sizeof(float) * (size_t)(c->Tq * c->Tk));
  for (int64_t i = 0; i < nq; i++) q[i] = 2 * frand(&seed);
  for (int64_t i = 0; i < nk; i++) k[i] = 2 * frand(&seed);
  for (int64_t i = 0; i < nv; i++) v[i] = frand(&seed);
  for (int64_t i = 0; i < ny; i++) dy[i] = frand(&seed);
  for (int64_t i = 0; i < c->Tq * c->Tk; i++)
    bm[i] = (i % 7) != 3 || i % c->Tk == 0, fm[i] = frand(&seed);
  const void *mask = c->mask == 1 ? (const void *)bm : c->mask == 2 ? (const void *)fm : NULL;
  const float scale = 1.0f / sqrtf((float)c->D);
  mlcrt_sdpa_params p = {.nbatch = 1,
                         .batch = {c->nb},
                         .Tq = c->Tq,
                         .Tk = c->Tk,
                         .D = c->D,
                         .Dv = c->Dv,
                         .scale = scale,
                         .causal = c->causal,
                         .mask = c->mask,
                         .mask_stride = {0, c->mask ? c->Tk : 0, c->mask ? 1 : 0}};

  /* reference: y = P v; dv = P^T dy; dP = dy v^T; dS = P (dP - rowsum(P dP)); dq = dS k s; dk =
   * dS^T q s */
  for (int64_t bi = 0; bi < c->nb; bi++)
    for (int64_t i = 0; i < c->Tq; i++) {
      probs(c, q, k, mask, scale, bi, i, P);
      const float *dyi = dy + (bi * c->Tq + i) * c->Dv;
      double delta = 0, dP[64];
      for (int64_t j = 0; j < c->Tk; j++) {
        dP[j] = 0;
        for (int64_t e = 0; e < c->Dv; e++) {
          wy[(bi * c->Tq + i) * c->Dv + e] += P[j] * v[(bi * c->Tk + j) * c->Dv + e];
          wg[nq + nk + (bi * c->Tk + j) * c->Dv + e] += P[j] * dyi[e];
          dP[j] += (double)dyi[e] * v[(bi * c->Tk + j) * c->Dv + e];
        }
        delta += P[j] * dP[j];
      }
      for (int64_t j = 0; j < c->Tk; j++) {
        const double ds = P[j] * (dP[j] - delta) * scale;
        for (int64_t d = 0; d < c->D; d++) {
          wg[(bi * c->Tq + i) * c->D + d] += ds * k[(bi * c->Tk + j) * c->D + d];
          wg[nq + (bi * c->Tk + j) * c->D + d] += ds * q[(bi * c->Tq + i) * c->D + d];
        }
      }
    }

  for (int isa = 0; isa <= mlcrt_cpu_isa(); isa++)
    for (int t = 1; t <= 3; t++) {
      mlcrt_sdpa_f32(teams[isa][t], &p, q, k, v, mask, y);
      mlcrt_sdpa_bwd_f32(teams[isa][t], &p, q, k, v, mask, y, dy, g, g + nq, g + nq + nk);
      for (int64_t i = 0; i < ny; i++)
        if (!(fabs(y[i] - wy[i]) <= 1e-5 + 1e-4 * fabs(wy[i])))
          fail_msg("isa %d, %d threads, Tq %lld D %lld: y[%lld] = %.9g, want %.9g", isa, t,
                   (long long)c->Tq, (long long)c->D, (long long)i, (double)y[i], wy[i]);
      for (int64_t i = 0; i < nq + nk + nv; i++)
        if (!(fabs(g[i] - wg[i]) <= 1e-5 + 1e-4 * fabs(wg[i])))
          fail_msg("isa %d, %d threads, Tq %lld D %lld: gradient %lld = %.9g, want %.9g", isa, t,
                   (long long)c->Tq, (long long)c->D, (long long)i, (double)g[i], wg[i]);
      if (t == 1) {
        memcpy(y1, y, sizeof(float) * (size_t)ny);
        memcpy(g1, g, sizeof(float) * (size_t)(nq + nk + nv));
      } else {
        assert_memory_equal(y, y1, sizeof(float) * (size_t)ny);
        assert_memory_equal(g, g1, sizeof(float) * (size_t)(nq + nk + nv));
      }
    }
  free(q), free(k), free(v), free(dy), free(y), free(y1), free(g), free(g1), free(wy), free(wg),
      free(P), free(bm);
  free(fm);
}

static void test_sdpa(void **state) {
  (void)state;
  static const Case cases[] = {
      {6, 9, 9, 64, 64, 1, 0},   /* causal, GPT-2's head size */
      {3, 7, 11, 19, 5, 0, 1},   /* bool mask, ragged head sizes */
      {2, 40, 33, 33, 17, 0, 2}, /* float mask; enough rows to split */
      {5, 1, 1, 3, 2, 0, 0},     /* one key */
      {4, 64, 64, 16, 16, 1, 0}, /* many rows: the forward splits them over threads */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(&cases[i]);
}

/* X [B, T, H*D | H*D | H*Dv] -> y [B, T, H, Dv] at strides, against the dense
 * call on [B, H, T, *] copies, bit for bit. */
static void check_strided(int64_t B, int64_t H, int64_t T, int64_t D, int64_t Dv, int causal,
                          int mask) {
  const int64_t W = H * (2 * D + Dv), nx = B * T * W, ny = B * T * H * Dv;
  uint32_t seed = 11;
  float *x = malloc(sizeof(float) * (size_t)nx), *y = malloc(sizeof(float) * (size_t)ny);
  float *qd = malloc(sizeof(float) * (size_t)(B * H * T * D)),
        *kd = malloc(sizeof(float) * (size_t)(B * H * T * D));
  float *vd = malloc(sizeof(float) * (size_t)(B * H * T * Dv)),
        *yd = malloc(sizeof(float) * (size_t)ny);
  uint8_t *bm = malloc((size_t)(T * T));
  for (int64_t i = 0; i < nx; i++) x[i] = 2 * frand(&seed);
  for (int64_t i = 0; i < T * T; i++) bm[i] = (i % 5) != 2 || i % T == 0;
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < H; h++)
      for (int64_t t = 0; t < T; t++) {
        const float *row = x + (b * T + t) * W;
        memcpy(qd + ((b * H + h) * T + t) * D, row + h * D, sizeof(float) * (size_t)D);
        memcpy(kd + ((b * H + h) * T + t) * D, row + H * D + h * D, sizeof(float) * (size_t)D);
        memcpy(vd + ((b * H + h) * T + t) * Dv, row + 2 * H * D + h * Dv,
               sizeof(float) * (size_t)Dv);
      }
  mlcrt_sdpa_params p = {.nbatch = 2,
                         .batch = {B, H},
                         .Tq = T,
                         .Tk = T,
                         .D = D,
                         .Dv = Dv,
                         .scale = 1.0f / sqrtf((float)D),
                         .causal = causal,
                         .mask = mask,
                         .mask_stride = {0, 0, mask ? T : 0, mask ? 1 : 0}};
  mlcrt_sdpa_params ps = p;
  ps.strided = 1;
  const int64_t qs[] = {T * W, D, W}, ys[] = {T * H * Dv, Dv, H * Dv};
  const int64_t vs[] = {T * W, Dv, W};
  memcpy(ps.q_stride, qs, sizeof qs);
  memcpy(ps.k_stride, qs, sizeof qs);
  memcpy(ps.v_stride, vs, sizeof vs);
  memcpy(ps.y_stride, ys, sizeof ys);
  for (int isa = 0; isa <= mlcrt_cpu_isa(); isa++)
    for (int t = 1; t <= 3; t++) {
      memset(y, 0xff, sizeof(float) * (size_t)ny); /* NaN: every element must be written */
      mlcrt_sdpa_f32(teams[isa][t], &p, qd, kd, vd, mask ? bm : NULL, yd);
      mlcrt_sdpa_f32(teams[isa][t], &ps, x, x + H * D, x + 2 * H * D, mask ? bm : NULL, y);
      for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
          for (int64_t i = 0; i < T; i++)
            assert_memory_equal(y + ((b * T + i) * H + h) * Dv, yd + ((b * H + h) * T + i) * Dv,
                                sizeof(float) * (size_t)Dv);
    }
  free(x), free(y), free(qd), free(kd), free(vd), free(yd), free(bm);
}

static void test_sdpa_strided(void **state) {
  (void)state;
  check_strided(2, 3, 9, 16, 16, 1, 0);  /* causal, GPT-2's layout */
  check_strided(3, 2, 7, 5, 3, 0, 1);    /* bool mask broadcast over batch and heads; D != Dv */
  check_strided(2, 4, 40, 32, 32, 1, 0); /* enough rows to split over threads */
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_sdpa),
                                     cmocka_unit_test(test_sdpa_strided)};
  return cmocka_run_group_tests(tests, setup, teardown);
}
