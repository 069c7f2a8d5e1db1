/* test_rt_kernels.c — unit tests of the runtime's CPU kernels and dtype
 * conversions: sgemm (every transpose combination, odd sizes, strides,
 * alpha/beta, beta == 0 ignoring NaN garbage in C) on every instruction set
 * the CPU has (generic C, AVX2, AVX-512) and on teams of 1, 2 and 3 threads,
 * which must agree bit for bit; matmul broadcasting and 1-D promotion,
 * linear, conv2d and its two gradients against direct loops (groups, stride,
 * padding, dilation, bias or none, threads split by image or inside GEMM), the pools against values computed by
 * PyTorch (ceil_mode and padding corners) and against a direct loop, softmax
 * and log_softmax, and f16/bf16 conversions of known bit patterns. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "mlcrt.h"

/* Deterministic test data: a small LCG, values in [-1, 1). */
static uint32_t rng_state = 12345;
static float frand(void) {
  rng_state = rng_state * 1664525u + 1013904223u;
  return (float)(rng_state >> 8) / 8388608.0f - 1.0f;
}
static float *rand_buf(size_t n) {
  float *p = malloc((n ? n : 1) * sizeof *p);
  assert_non_null(p);
  for (size_t i = 0; i < n; i++) p[i] = frand();
  return p;
}

/* |got - want| <= atol + rtol * |want| elementwise, with a useful message. */
static void assert_close(const float *got, const double *want, size_t n, double rtol, double atol) {
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)got[i] - want[i]);
    if (!(d <= atol + rtol * fabs(want[i])))
      fail_msg("element %zu: got %.9g, want %.9g", i, (double)got[i], want[i]);
  }
}
static void assert_closef(const float *got, const float *want, size_t n, double rtol, double atol) {
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)got[i] - (double)want[i]);
    if (!(d <= atol + rtol * fabs((double)want[i])))
      fail_msg("element %zu: got %.9g, want %.9g", i, (double)got[i], (double)want[i]);
  }
}

/* ---- sgemm ------------------------------------------------------------------ */

/* teams[isa][n]: n threads on the GEMM kernels of instruction set isa */
static mlcrt_team *teams[3][4];

static int setup_teams(void **state) {
  (void)state;
  for (int isa = 0; isa <= mlcrt_cpu_isa(); isa++)
    for (int n = 1; n <= 3; n++)
      if (!(teams[isa][n] = mlcrt_team_create(n, isa))) return -1;
  return 0;
}

static int teardown_teams(void **state) {
  (void)state;
  for (int isa = 0; isa < 3; isa++)
    for (int n = 1; n <= 3; n++) mlcrt_team_destroy(teams[isa][n]), teams[isa][n] = NULL;
  return 0;
}

static void test_isa_detection(void **state) {
  (void)state;
  int isa = mlcrt_cpu_isa();
  assert_true(isa >= MLCRT_ISA_GENERIC && isa <= MLCRT_ISA_AVX512);
  for (int i = 0; i <= isa; i++) {
    assert_int_equal(mlcrt_team_isa(teams[i][2]), i);
    assert_int_equal(mlcrt_team_size(teams[i][2]), 2);
  }
  assert_string_equal(mlcrt_isa_name(MLCRT_ISA_GENERIC), "generic");
  assert_int_equal(mlcrt_team_size(NULL), 1);
}

/* mlcrt_team_run: every task of every job runs exactly once, with the job's
 * task count, before the call returns; on teams of 1..3 and of 64 members
 * (the largest: its open-task mask is full), for task counts 1..n, over many
 * back-to-back jobs (workers spinning) and after pauses (workers asleep). */
typedef struct {
  _Atomic int runs[64];
  int ntasks, bad;
} team_count;

static void count_task(void *arg, int task, int ntasks) {
  team_count *c = arg;
  if (ntasks != c->ntasks || task < 0 || task >= ntasks) c->bad = 1;
  else c->runs[task]++;
}

static void check_team_jobs(mlcrt_team *t, int jobs) {
  const int n = mlcrt_team_size(t);
  for (int j = 0; j < jobs; j++) {
    team_count c = {.ntasks = 1 + j % n};
    mlcrt_team_run(t, c.ntasks, count_task, &c);
    assert_false(c.bad);
    for (int i = 0; i < 64; i++) assert_int_equal(c.runs[i], i < c.ntasks);
    if (j % 997 == 0) usleep(300); /* past the workers' spin: they sleep */
  }
}

static void test_team_run(void **state) {
  (void)state;
  for (int n = 1; n <= 3; n++) check_team_jobs(teams[mlcrt_cpu_isa()][n], 5000);
  mlcrt_team *big = mlcrt_team_create(64, mlcrt_cpu_isa());
  assert_non_null(big);
  assert_int_equal(mlcrt_team_size(big), 64);
  check_team_jobs(big, 300);
  mlcrt_team_destroy(big);
}

static void check_gemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, float beta,
                       int64_t pad) {
  /* Stored shapes: A is M x K (or K x M if ta), B is K x N (or N x K if tb);
   * leading dims padded by `pad` to exercise the strides. */
  const int64_t ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
  const int64_t lda = ac + pad, ldb = bc + pad, ldc = N + pad;
  float *A = rand_buf((size_t)(ar * lda)), *B = rand_buf((size_t)(br * ldb));
  float *C = rand_buf((size_t)(M * ldc));
  double *want = malloc((size_t)(M * ldc) * sizeof *want);
  if (beta == 0.0f)
    for (int64_t i = 0; i < M * ldc; i++) C[i] = NAN; /* must not be read */
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < ldc; j++) {
      if (j >= N) { /* padding columns must stay untouched */
        want[i * ldc + j] = C[i * ldc + j];
        continue;
      }
      double s = 0;
      for (int64_t k = 0; k < K; k++) {
        double a = ta ? A[k * lda + i] : A[i * lda + k];
        double b = tb ? B[j * ldb + k] : B[k * ldb + j];
        s += a * b;
      }
      want[i * ldc + j] = alpha * s + (beta == 0.0f ? 0.0 : beta * (double)C[i * ldc + j]);
    }
  float *C0 = malloc((size_t)(M * ldc) * sizeof *C0), *first = malloc((size_t)(M * ldc) * sizeof *first);
  memcpy(C0, C, (size_t)(M * ldc) * sizeof *C);
  for (int isa = 0; isa <= mlcrt_cpu_isa(); isa++) {
    for (int t = 0; t <= 3; t++) { /* no team (stack panels), then 1, 2, 3 threads */
      memcpy(C, C0, (size_t)(M * ldc) * sizeof *C);
      if (t == 0 && isa == mlcrt_cpu_isa())
        mlcrt_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
      else
        mlcrt_sgemm_team(teams[isa][t ? t : 1], ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
      for (int64_t i = 0; i < M; i++)
        for (int64_t j = N; j < ldc; j++)
          if (beta == 0.0f) assert_true(isnan(C[i * ldc + j]));
      for (int64_t i = 0; i < M; i++) assert_close(C + i * ldc, want + i * ldc, (size_t)N, 1e-5, 1e-5);
      /* one instruction set gives the same bits on any number of threads */
      if (t == 0)
        memcpy(first, C, (size_t)(M * ldc) * sizeof *C);
      else
        for (int64_t i = 0; i < M; i++)
          if (memcmp(first + i * ldc, C + i * ldc, (size_t)N * sizeof *C))
            fail_msg("isa %s, %d threads: result differs from one thread's", mlcrt_isa_name(isa), t);
    }
  }
  free(A);
  free(B);
  free(C);
  free(C0);
  free(first);
  free(want);
}

static void test_sgemm_odd_sizes(void **state) {
  (void)state;
  const int64_t sizes[] = {1, 3, 17, 33};
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++)
      for (int m = 0; m < 4; m++)
        for (int n = 0; n < 4; n++)
          for (int k = 0; k < 4; k++) {
            check_gemm(ta, tb, sizes[m], sizes[n], sizes[k], 1.0f, 0.0f, 0);
            check_gemm(ta, tb, sizes[m], sizes[n], sizes[k], 0.5f, 1.5f, 3);
          }
}

static void test_sgemm_blocking(void **state) {
  (void)state;
  /* Larger than one K block (128) and one N block (128), ragged in all. */
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++) {
      check_gemm(ta, tb, 70, 301, 259, 1.0f, 0.0f, 1);
      check_gemm(ta, tb, 5, 130, 300, -2.0f, 1.0f, 0);
      check_gemm(ta, tb, 300, 37, 200, 1.0f, 0.5f, 2); /* tall: threads split rows */
      check_gemm(ta, tb, 1, 1100, 300, 1.0f, 0.0f, 0); /* one row: the unpacked path */
      check_gemm(ta, tb, 700, 1, 300, 1.0f, 0.5f, 0);  /* one column: the unpacked path */
      check_gemm(ta, tb, 2, 7, 3, 1.0f, 2.0f, 1);
      check_gemm(ta, tb, 20, 45, 140, 1.0f, 0.0f, 1); /* 12 + 8 rows: every tile height */
      check_gemm(ta, tb, 6, 25, 784, 1.0f, 1.0f, 0);  /* few long rows: dot products */
    }
}

static void test_sgemm_degenerate(void **state) {
  (void)state;
  /* K == 0: C = beta * C; beta == 0 clears NaN garbage. */
  float C[6] = {NAN, NAN, NAN, NAN, NAN, NAN};
  float A[1] = {0}, B[1] = {0};
  mlcrt_sgemm(0, 0, 2, 3, 0, 1.0f, A, 1, B, 3, 0.0f, C, 3);
  for (int i = 0; i < 6; i++) assert_true(C[i] == 0.0f);
  float D[4] = {1, 2, 3, 4};
  mlcrt_sgemm(0, 0, 2, 2, 0, 1.0f, A, 1, B, 2, 2.0f, D, 2);
  assert_true(D[0] == 2 && D[1] == 4 && D[2] == 6 && D[3] == 8);
  /* alpha == 0: C = beta * C even if A holds NaN. */
  float An[4] = {NAN, NAN, NAN, NAN}, Bn[4] = {1, 1, 1, 1};
  mlcrt_sgemm(0, 0, 2, 2, 2, 0.0f, An, 2, Bn, 2, 1.0f, D, 2);
  assert_true(D[0] == 2 && D[3] == 8);
  /* NaN in A propagates (no skipping of zero coefficients). */
  float Z[4] = {0, 0, 0, 0}, E[4];
  An[0] = NAN;
  An[1] = An[2] = An[3] = 0;
  mlcrt_sgemm(0, 0, 2, 2, 2, 1.0f, An, 2, Z, 2, 0.0f, E, 2);
  assert_true(isnan(E[0]) && isnan(E[1]) && E[2] == 0 && E[3] == 0);
}

/* ---- matmul, linear ------------------------------------------------------------- */

/* Reference torch.matmul by brute force over the result's indices. */
static void ref_matmul(const float *a, int ra, const int64_t *as, const float *b, int rb,
                       const int64_t *bs, double *y, int yr, const int64_t *ys) {
  const int64_t K = as[ra - 1];
  int64_t ny = 1;
  for (int d = 0; d < yr; d++) ny *= ys[d];
  for (int64_t t = 0; t < ny; t++) {
    int64_t idx[MLCRT_MAX_RANK], r = t;
    for (int d = yr - 1; d >= 0; d--) {
      idx[d] = r % ys[d];
      r /= ys[d];
    }
    /* Split the result index into batch, m, n. */
    int nb = yr - (ra >= 2) - (rb >= 2);
    int64_t m = ra >= 2 ? idx[nb] : 0;
    int64_t n = rb >= 2 ? idx[yr - 1] : 0;
    double s = 0;
    for (int64_t k = 0; k < K; k++) {
      /* offset into a */
      int64_t ao = 0, bo = 0;
      int abr = ra > 2 ? ra - 2 : 0, bbr = rb > 2 ? rb - 2 : 0;
      for (int d = 0; d < abr; d++) {
        int yd = nb - abr + d;
        ao = ao * as[d] + (as[d] == 1 ? 0 : idx[yd]);
      }
      if (ra >= 2)
        ao = (ao * as[ra - 2] + m) * K + k;
      else
        ao = k;
      for (int d = 0; d < bbr; d++) {
        int yd = nb - bbr + d;
        bo = bo * bs[d] + (bs[d] == 1 ? 0 : idx[yd]);
      }
      if (rb >= 2)
        bo = (bo * K + k) * bs[rb - 1] + n;
      else
        bo = k;
      s += (double)a[ao] * b[bo];
    }
    y[t] = s;
  }
}

static void check_matmul(int ra, const int64_t *as, int rb, const int64_t *bs, int yr,
                         const int64_t *ys) {
  int64_t na = 1, nb = 1, ny = 1;
  for (int d = 0; d < ra; d++) na *= as[d];
  for (int d = 0; d < rb; d++) nb *= bs[d];
  for (int d = 0; d < yr; d++) ny *= ys[d];
  float *a = rand_buf((size_t)na), *b = rand_buf((size_t)nb), *y = rand_buf((size_t)ny);
  double *want = malloc((size_t)(ny ? ny : 1) * sizeof *want);
  ref_matmul(a, ra, as, b, rb, bs, want, yr, ys);
  mlcrt_matmul_f32(NULL, a, ra, as, b, rb, bs, y, yr, ys);
  assert_close(y, want, (size_t)ny, 1e-5, 1e-5);
  free(a);
  free(b);
  free(y);
  free(want);
}

static void test_matmul(void **state) {
  (void)state;
  { /* 1-D . 1-D -> scalar */
    int64_t a[] = {7}, b[] = {7};
    check_matmul(1, a, 1, b, 0, NULL);
    float x[3] = {1, 2, 3}, w[3] = {4, 5, 6}, y = 0;
    int64_t s3[] = {3};
    mlcrt_matmul_f32(NULL, x, 1, s3, w, 1, s3, &y, 0, NULL);
    assert_true(y == 32.0f);
  }
  {
    int64_t a[] = {5}, b[] = {5, 3}, y[] = {3};
    check_matmul(1, a, 2, b, 1, y);
  }
  {
    int64_t a[] = {4, 5}, b[] = {5}, y[] = {4};
    check_matmul(2, a, 1, b, 1, y);
  }
  {
    int64_t a[] = {5}, b[] = {2, 5, 3}, y[] = {2, 3};
    check_matmul(1, a, 3, b, 2, y);
  }
  {
    int64_t a[] = {2, 4, 5}, b[] = {5}, y[] = {2, 4};
    check_matmul(3, a, 1, b, 2, y);
  }
  {
    int64_t a[] = {3, 4}, b[] = {4, 5}, y[] = {3, 5};
    check_matmul(2, a, 2, b, 2, y);
  }
  /* batch folding: [2,3,4] @ [4,5] */
  {
    int64_t a[] = {2, 3, 4}, b[] = {4, 5}, y[] = {2, 3, 5};
    check_matmul(3, a, 2, b, 3, y);
  }
  /* 2-D a broadcast against batched b */
  {
    int64_t a[] = {3, 4}, b[] = {2, 4, 5}, y[] = {2, 3, 5};
    check_matmul(2, a, 3, b, 3, y);
  }
  /* both batched, broadcasting 1s on both sides */
  {
    int64_t a[] = {2, 1, 3, 4}, b[] = {5, 4, 6}, y[] = {2, 5, 3, 6};
    check_matmul(4, a, 3, b, 4, y);
  }
  {
    int64_t a[] = {1, 3, 3, 4}, b[] = {2, 1, 4, 2}, y[] = {2, 3, 3, 2};
    check_matmul(4, a, 4, b, 4, y);
  }
  /* K == 0 gives zeros */
  {
    int64_t as[] = {2, 0}, bs[] = {0, 3}, ys[] = {2, 3};
    float y[6] = {NAN, NAN, NAN, NAN, NAN, NAN}, dummy = 0;
    mlcrt_matmul_f32(NULL, &dummy, 2, as, &dummy, 2, bs, y, 2, ys);
    for (int i = 0; i < 6; i++) assert_true(y[i] == 0.0f);
  }
}

static void test_linear(void **state) {
  (void)state;
  const int64_t M = 5, K = 19, N = 7;
  float *x = rand_buf((size_t)(M * K)), *w = rand_buf((size_t)(N * K)), *b = rand_buf((size_t)N);
  float y[35], y0[35];
  double want[35], want0[35];
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < N; j++) {
      double s = 0;
      for (int64_t k = 0; k < K; k++) s += (double)x[i * K + k] * w[j * K + k];
      want0[i * N + j] = s;
      want[i * N + j] = s + b[j];
    }
  mlcrt_linear_f32(NULL, x, M, K, w, N, b, y);
  mlcrt_linear_f32(teams[0][2], x, M, K, w, N, NULL, y0);
  assert_close(y, want, 35, 1e-5, 1e-5);
  assert_close(y0, want0, 35, 1e-5, 1e-5);
  free(x);
  free(w);
  free(b);
}

/* ---- conv2d ------------------------------------------------------------------- */

static void ref_conv(const mlcrt_conv2d_params *p, const float *x, const float *w, const float *b,
                     double *y) {
  const int64_t cg = p->C / p->groups, ocg = p->OC / p->groups;
  for (int64_t n = 0; n < p->N; n++)
    for (int64_t oc = 0; oc < p->OC; oc++)
      for (int64_t oh = 0; oh < p->OH; oh++)
        for (int64_t ow = 0; ow < p->OW; ow++) {
          const int64_t g = oc / ocg;
          double s = b ? b[oc] : 0.0;
          for (int64_t c = 0; c < cg; c++)
            for (int64_t kh = 0; kh < p->KH; kh++)
              for (int64_t kw = 0; kw < p->KW; kw++) {
                int64_t ih = oh * p->sh - p->ph + kh * p->dh, iw = ow * p->sw - p->pw + kw * p->dw;
                if (ih < 0 || ih >= p->H || iw < 0 || iw >= p->W) continue;
                s += (double)x[((n * p->C + g * cg + c) * p->H + ih) * p->W + iw] *
                     w[((oc * cg + c) * p->KH + kh) * p->KW + kw];
              }
          y[((n * p->OC + oc) * p->OH + oh) * p->OW + ow] = s;
        }
}

static void check_conv(int64_t N, int64_t C, int64_t H, int64_t W, int64_t OC, int64_t KH,
                       int64_t KW, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh,
                       int64_t dw, int64_t groups, int bias) {
  mlcrt_conv2d_params p = {N, C, H, W, OC, KH, KW, 0, 0, sh, sw, ph, pw, dh, dw, groups};
  p.OH = (H + 2 * ph - dh * (KH - 1) - 1) / sh + 1;
  p.OW = (W + 2 * pw - dw * (KW - 1) - 1) / sw + 1;
  const size_t nx = (size_t)(N * C * H * W), nw = (size_t)(OC * (C / groups) * KH * KW);
  const size_t ny = (size_t)(N * OC * p.OH * p.OW);
  float *x = rand_buf(nx), *w = rand_buf(nw), *b = rand_buf((size_t)OC), *y = rand_buf(ny);
  float *dy = rand_buf(ny), *dx = rand_buf(nx), *dwt = rand_buf(nw);
  double *want = malloc(ny * sizeof *want), *want_dx = calloc(nx, sizeof(double)), *want_dw = calloc(nw, sizeof(double));
  ref_conv(&p, x, w, bias ? b : NULL, want);
  /* the gradients by the definition: every (output, tap) pair once */
  const int64_t cg = C / groups, ocg = OC / groups;
  for (int64_t n = 0; n < N; n++)
    for (int64_t oc = 0; oc < OC; oc++)
      for (int64_t oh = 0; oh < p.OH; oh++)
        for (int64_t ow = 0; ow < p.OW; ow++)
          for (int64_t c = 0; c < cg; c++)
            for (int64_t kh = 0; kh < KH; kh++)
              for (int64_t kw = 0; kw < KW; kw++) {
                int64_t ih = oh * sh - ph + kh * dh, iw = ow * sw - pw + kw * dw;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                const int64_t xi = ((n * C + oc / ocg * cg + c) * H + ih) * W + iw;
                const int64_t wi = ((oc * cg + c) * KH + kh) * KW + kw;
                const double g = dy[((n * OC + oc) * p.OH + oh) * p.OW + ow];
                want_dx[xi] += g * w[wi];
                want_dw[wi] += g * x[xi];
              }
  /* no team, then 1..3 threads (by image when N >= t) on every ISA the CPU has */
  for (int ti = 0; ti <= 3 * (mlcrt_cpu_isa() + 1); ti++) {
    const int t = ti ? 1 + (ti - 1) % 3 : 0, isa = ti ? (ti - 1) / 3 : mlcrt_cpu_isa();
    mlcrt_team *team = t ? teams[isa][t] : NULL;
    int nt = t ? t : 1;
    size_t ss = mlcrt_conv2d_scratch(&p, MLCRT_CONV_FWD, nt), sdx = mlcrt_conv2d_scratch(&p, MLCRT_CONV_DX, nt),
           sdw = mlcrt_conv2d_scratch(&p, MLCRT_CONV_DW, nt);
    void *scratch = malloc(ss + sdx + sdw + 1);
    mlcrt_conv2d_f32(team, &p, x, w, bias ? b : NULL, y, scratch);
    assert_close(y, want, ny, 1e-5, 1e-5);
    /* the weights packed once (for any batch: packed at N = 1): the same bits */
    mlcrt_conv2d_params p1 = p;
    p1.N = 1;
    const size_t npk = mlcrt_conv2d_pack_floats(team, &p1);
    float *wp = malloc(npk * sizeof *wp + 1), *y2 = rand_buf(ny);
    mlcrt_conv2d_pack_f32(team, &p1, w, wp);
    mlcrt_conv2d_packed_epi_f32(team, &p, x, w, npk ? wp : NULL, bias ? b : NULL, y2, scratch, NULL);
    assert_memory_equal(y2, y, ny * sizeof *y);
    free(wp);
    free(y2);
    mlcrt_conv2d_dx_f32(team, &p, dy, w, dx, scratch);
    assert_close(dx, want_dx, nx, 1e-4, 1e-4);
    mlcrt_conv2d_dw_f32(team, &p, dy, x, dwt, scratch);
    assert_close(dwt, want_dw, nw, 1e-4, 1e-4);
    free(scratch);
  }
  free(x);
  free(w);
  free(b);
  free(y);
  free(dy);
  free(dx);
  free(dwt);
  free(want);
  free(want_dx);
  free(want_dw);
}

static void test_conv2d(void **state) {
  (void)state;
  /*          N  C  H   W  OC KH KW sh sw ph pw dh dw  g bias */
  check_conv(2, 3, 9, 11, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1);
  check_conv(1, 3, 9, 11, 5, 3, 3, 1, 1, 0, 0, 1, 1, 1, 0);
  check_conv(2, 4, 10, 9, 6, 3, 2, 2, 3, 1, 2, 1, 1, 2, 1);  /* groups, stride, padding */
  check_conv(1, 4, 12, 13, 4, 3, 3, 1, 2, 2, 3, 2, 3, 4, 1); /* depthwise, dilation */
  check_conv(2, 6, 7, 7, 6, 1, 1, 1, 1, 0, 0, 1, 1, 3, 1);   /* pointwise: no scratch */
  check_conv(1, 3, 8, 8, 2, 1, 1, 2, 2, 0, 0, 1, 1, 1, 0);   /* 1x1 strided */
  check_conv(1, 2, 5, 5, 3, 5, 5, 1, 1, 4, 4, 1, 1, 1, 1);   /* padding >= kernel-1 */
  check_conv(1, 1, 4, 4, 2, 3, 3, 3, 3, 1, 1, 2, 2, 1, 1);   /* taps outside on both sides */
  check_conv(1, 2, 28, 28, 8, 5, 5, 2, 2, 2, 2, 1, 1, 1, 1);
  check_conv(5, 3, 12, 12, 7, 5, 5, 1, 1, 2, 2, 1, 1, 1, 1); /* batch over threads */
  check_conv(4, 4, 6, 6, 6, 1, 1, 1, 1, 0, 0, 1, 1, 2, 0);   /* pointwise gradients by image */
  /* 1 tap of 9 sees a 1x1 input (compacted weights, a column), 4 of 9 a 2x2
   * one at stride 2; a few columns (B stored) with many channels; K past
   * one GEMM block; by position (N >= 8) */
  check_conv(1, 64, 1, 1, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1);
  check_conv(3, 48, 2, 2, 24, 3, 3, 2, 2, 1, 1, 1, 1, 1, 0);
  check_conv(1, 40, 2, 2, 40, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1);
  check_conv(2, 160, 4, 4, 20, 3, 3, 1, 1, 1, 1, 1, 1, 2, 1);
  check_conv(9, 16, 2, 2, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1);
  check_conv(7, 4, 4, 4, 6, 3, 3, 2, 2, 1, 1, 1, 1, 2, 1);   /* few positions: all images in one GEMM */
  check_conv(40, 3, 4, 4, 5, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1);  /* pointwise, chunks of 16 images */
  check_conv(37, 2, 6, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0);  /* ragged last chunk */
  check_conv(3, 32, 16, 16, 40, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1); /* depth 288: two K blocks of the GEMM */
  check_conv(1, 8, 3, 3, 5, 3, 3, 1, 1, 0, 0, 1, 1, 1, 1);     /* one output position: a column */
  check_conv(3, 8, 3, 3, 5, 3, 3, 1, 1, 0, 0, 1, 1, 1, 0);     /* three images, one position each */
  check_conv(2, 16, 9, 9, 20, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1);   /* strided, images side by side */
  /* taps that read only padding, left out of the forward's GEMM (from 32
   * output positions in the batch; below, kept) */
  check_conv(36, 20, 1, 1, 8, 3, 3, 1, 1, 1, 1, 1, 1, 2, 1);  /* 1x1 input: only the centre */
  check_conv(5, 20, 1, 1, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1);   /* ... at 5 positions: kept */
  check_conv(34, 18, 2, 2, 8, 3, 3, 2, 2, 1, 1, 1, 1, 2, 1);  /* 4 taps of 9, stride 2 */
  check_conv(8, 12, 1, 5, 4, 3, 3, 1, 1, 1, 1, 1, 1, 2, 1);   /* dead rows only, groups */
  check_conv(9, 40, 1, 1, 2, 1, 1, 3, 3, 2, 2, 1, 1, 1, 1);   /* no tap sees the image: bias */
  check_conv(2, 12, 3, 3, 4, 3, 3, 1, 1, 3, 3, 2, 2, 1, 0);   /* dilated, 3x3 input */
  /* a few output positions each reading the whole image: a GEMM per position */
  check_conv(9, 20, 2, 2, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1);   /* 2x2 -> 2x2, 3x3 padding 1 */
  check_conv(10, 12, 2, 2, 6, 3, 3, 2, 2, 1, 1, 1, 1, 1, 0);  /* 2x2 -> 1x1, stride 2 */
  check_conv(8, 16, 1, 1, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1);   /* 1x1 -> 1x1 */
  check_conv(12, 5, 3, 2, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1);   /* 3x2: more pixels than live taps */
  /* short output rows: AVX-512 packs them with permutes (pack_permute_avx512) */
  check_conv(9, 18, 8, 8, 10, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1);  /* rows of 8, ragged panels */
  check_conv(20, 7, 4, 4, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0);   /* rows of 4 */
  check_conv(3, 4, 6, 6, 5, 3, 3, 1, 1, 2, 2, 2, 2, 1, 1);    /* dilation 2 */
  check_conv(2, 3, 20, 20, 4, 3, 3, 1, 1, 2, 2, 1, 1, 1, 1);  /* 16 columns over two rows */
  check_conv(3, 6, 14, 14, 16, 5, 5, 1, 1, 0, 0, 1, 1, 1, 1); /* LeNet's second: 16 columns over two images */
  check_conv(4, 5, 7, 7, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1);    /* ... with padding */
  /* a tiny kernel volume (C*KH*KW <= 32): the direct path of conv_direct.c */
  check_conv(3, 1, 28, 28, 6, 5, 5, 1, 1, 2, 2, 1, 1, 1, 1);  /* LeNet's first layer */
  check_conv(2, 1, 9, 40, 9, 3, 7, 2, 1, 1, 3, 1, 1, 1, 1);   /* KW 7, row stride 2, OC 4+4+1, 2 tiles */
  check_conv(2, 2, 5, 70, 3, 2, 4, 1, 1, 0, 0, 1, 1, 1, 0);   /* 3 tiles, the last of 3 columns */
  mlcrt_conv2d_params pw = {1, 6, 7, 7, 6, 1, 1, 7, 7, 1, 1, 0, 0, 1, 1, 3};
  assert_int_equal(mlcrt_conv2d_scratch(&pw, MLCRT_CONV_FWD, 1), 0);
  assert_int_equal(mlcrt_conv2d_scratch(&pw, MLCRT_CONV_DX, 4), 0);
}

/* ---- pools -------------------------------------------------------------------- */

typedef struct pool_case {
  int is_max;
  int64_t N, C, H, W, OH, OW, kh, kw, sh, sw, ph, pw;
  int cip;
  int n;
  float want[32];
} pool_case;

/* Inputs x[i] = ((7 i) mod 11) - 5; expected values computed by PyTorch 2.x
 * (torch.nn.functional, float32). */
static const pool_case pool_cases[] = {
    /* avg_pool2d(1, 2, 5, 5) {'kernel_size': 3, 'stride': 2, 'padding': 1, 'ceil_mode': True,
       'count_include_pad': True} */
    {0,
     1,
     2,
     5,
     5,
     3,
     3,
     3,
     3,
     2,
     2,
     1,
     1,
     1,
     18,
     {-0.222222224f, 0.555555582f, 0.555555582f, -0.777777791f, -0.444444448f, -0.222222224f, 0.0f,
      -0.333333343f, -0.444444448f, 0.555555582f, -0.111111112f, 0.111111112f, -0.222222224f,
      -0.222222224f, -0.888888896f, -0.444444448f, 0.222222224f, -0.888888896f}},
    /* avg_pool2d(1, 2, 5, 5) {'kernel_size': 3, 'stride': 2, 'padding': 1, 'ceil_mode': True,
       'count_include_pad': False} */
    {0,
     1,
     2,
     5,
     5,
     3,
     3,
     3,
     3,
     2,
     2,
     1,
     1,
     0,
     18,
     {-0.5f, 0.833333313f, 1.25f, -1.16666663f, -0.444444448f, -0.333333343f, 0.0f, -0.5f, -1.0f,
      1.25f, -0.166666672f, 0.25f, -0.333333343f, -0.222222224f, -1.33333337f, -1.0f, 0.333333343f,
      -2.0f}},
    /* avg_pool2d(1, 1, 5, 5) {'kernel_size': 2, 'stride': 2, 'padding': 0, 'ceil_mode': True,
       'count_include_pad': True} */
    {0,
     1,
     1,
     5,
     5,
     3,
     3,
     2,
     2,
     2,
     2,
     0,
     0,
     1,
     9,
     {-0.5f, -0.25f, 2.0f, -2.0f, 1.0f, 0.5f, 1.0f, -1.5f, -2.0f}},
    /* avg_pool2d(2, 1, 6, 7) {'kernel_size': (3, 2), 'stride': (2, 3), 'padding': (1, 1),
       'ceil_mode': True, 'count_include_pad': True} */
    {0, 2, 1, 6, 7, 4, 3, 3, 2, 2, 3, 1, 1, 1, 24, {-0.833333313f, 0.833333313f,  0.166666672f,
                                                    0.666666687f,  0.5f,          -0.5f,
                                                    0.166666672f,  -0.5f,         -1.5f,
                                                    -0.5f,         -0.5f,         -1.0f,
                                                    0.0f,          -1.16666663f,  0.0f,
                                                    -0.833333313f, -0.666666687f, 0.166666672f,
                                                    -1.33333337f,  0.166666672f,  1.0f,
                                                    -1.25f,        0.75f,         0.25f}},
    /* max_pool2d(1, 2, 6, 7) {'kernel_size': 3, 'stride': 2, 'padding': 1, 'ceil_mode': True} */
    {1, 1, 2, 6, 7, 4, 4, 3, 3, 2, 2, 1, 1, 1, 32, {2.0f, 5.0f, 5.0f, 4.0f, 5.0f, 4.0f, 5.0f,
                                                    3.0f, 5.0f, 5.0f, 5.0f, 2.0f, 5.0f, 5.0f,
                                                    4.0f, 0.0f, 4.0f, 4.0f, 5.0f, 5.0f, 4.0f,
                                                    5.0f, 4.0f, 5.0f, 3.0f, 5.0f, 5.0f, 5.0f,
                                                    2.0f, 5.0f, 5.0f, 4.0f}},
    /* max_pool2d(1, 1, 5, 5) {'kernel_size': 2, 'stride': 2, 'padding': 1, 'ceil_mode': False} */
    {1,
     1,
     1,
     5,
     5,
     3,
     3,
     2,
     2,
     2,
     2,
     1,
     1,
     1,
     9,
     {-5.0f, 2.0f, 5.0f, -1.0f, 4.0f, 5.0f, 3.0f, 4.0f, 2.0f}},
};

static float *pool_input(size_t n) {
  float *x = malloc(n * sizeof *x);
  for (size_t i = 0; i < n; i++) x[i] = (float)((int)((i * 7) % 11) - 5);
  return x;
}

static void test_pools_vs_pytorch(void **state) {
  (void)state;
  for (size_t c = 0; c < sizeof pool_cases / sizeof pool_cases[0]; c++) {
    const pool_case *pc = &pool_cases[c];
    mlcrt_pool2d_params p = {pc->N,  pc->C,  pc->H,  pc->W,  pc->OH, pc->OW, pc->kh,
                             pc->kw, pc->sh, pc->sw, pc->ph, pc->pw, pc->cip};
    float *x = pool_input((size_t)(pc->N * pc->C * pc->H * pc->W));
    float y[32];
    assert_int_equal(pc->n, pc->N * pc->C * pc->OH * pc->OW);
    if (pc->is_max)
      mlcrt_max_pool2d_f32(NULL, &p, x, y);
    else
      mlcrt_avg_pool2d_f32(NULL, &p, x, y);
    assert_closef(y, pc->want, (size_t)pc->n, 1e-6, 1e-7);
    free(x);
  }
  static const float a1[] = {-0.888888896f, 0.888888896f,  -0.555555522f, 0.0f,
                             -0.222222224f, -0.888888896f, 0.888888896f,  0.222222224f,
                             0.0f,          0.555555522f,  -0.888888896f, 0.888888896f};
  static const float a2[] = {0.25f, -1.0f, 2.0f,  -2.0f, 1.0f,   -0.25f, 0.0f,   -1.25f,
                             -1.0f, 0.5f,  -2.0f, -0.5f, -0.25f, 1.25f,  -1.25f, 0.25f};
  float y[16];
  float *x = pool_input(70);
  mlcrt_adaptive_avg_pool2d_f32(1, 2, 7, 5, 3, 2, x, y);
  assert_closef(y, a1, 12, 1e-6, 1e-7);
  mlcrt_adaptive_avg_pool2d_f32(1, 1, 5, 6, 4, 4, x, y);
  assert_closef(y, a2, 16, 1e-6, 1e-7);
  free(x);
}

/* Direct reference of PyTorch's pooling semantics, written independently of
 * the kernel's clipping arithmetic: iterate the full window over padded
 * coordinates. */
static void ref_pool(const mlcrt_pool2d_params *p, int is_max, const float *x, double *y) {
  for (int64_t nc = 0; nc < p->N * p->C; nc++)
    for (int64_t oh = 0; oh < p->OH; oh++)
      for (int64_t ow = 0; ow < p->OW; ow++) {
        double m = -INFINITY, s = 0;
        int64_t real = 0, padded = 0;
        for (int64_t i = 0; i < p->kh; i++)
          for (int64_t j = 0; j < p->kw; j++) {
            int64_t h = oh * p->sh - p->ph + i, w = ow * p->sw - p->pw + j;
            if (h < p->H + p->ph && w < p->W + p->pw) padded++; /* inside the padded input */
            if (h < 0 || h >= p->H || w < 0 || w >= p->W) continue;
            double v = x[(nc * p->H + h) * p->W + w];
            real++;
            s += v;
            if (v > m) m = v;
          }
        y[(nc * p->OH + oh) * p->OW + ow] =
            is_max      ? m
            : real == 0 ? 0.0
                        : s / (double)(p->count_include_pad ? padded : real);
      }
}

static int64_t pool_out(int64_t H, int64_t k, int64_t s, int64_t pad, int ceil_mode) {
  int64_t num = H + 2 * pad - k;
  int64_t o = (ceil_mode ? (num + s - 1) / s : num / s) + 1;
  if (ceil_mode && (o - 1) * s >= H + pad) o--; /* last window must start inside */
  return o;
}

/* The unrolled 2x2 stride-2 path of max_pool2d and its gradient keeps the
 * general path's rules: a NaN wins the forward; ties and NaNs route the
 * gradient to the first maximum in row-major window order. */
static void test_max_pool_2x2_path(void **state) {
  (void)state;
  /* one channel, 4 x 5 input (the last column is outside every window) */
  float x[20] = {1, 3, 3, 0, 9, /* */ 3, 2, NAN, 1, 9, /* */ 5, 5, 0, 0, 9, /* */ 5, 5, 0, 7, 9};
  const mlcrt_pool2d_params p = {1, 1, 4, 5, 2, 2, 2, 2, 2, 2, 0, 0, 0};
  float y[4], dx[20], dy[4] = {1, 10, 100, 1000};
  mlcrt_max_pool2d_f32(NULL, &p, x, y);
  assert_true(y[0] == 3 && isnan(y[1]) && y[2] == 5 && y[3] == 7);
  mlcrt_max_pool2d_dx_f32(&p, dy, x, dx);
  const float want[20] = {0, 1, 0, 0, 0, /* */ 0, 0, 10, 0, 0, /* */ 100, 0, 0, 0, 0, /* */ 0, 0, 0, 1000, 0};
  for (int i = 0; i < 20; i++)
    if (dx[i] != want[i]) fail_msg("dx[%d] = %g, want %g", i, (double)dx[i], (double)want[i]);
  /* an odd height too: the last row is in no window and its gradient is 0
   * even where dx held garbage (the 2x2 path writes every element once) */
  float x5[25], dx5[25], y5[4];
  for (int i = 0; i < 25; i++) x5[i] = i < 20 ? x[i] : 50.0f, dx5[i] = -7.0f;
  const mlcrt_pool2d_params p5 = {1, 1, 5, 5, 2, 2, 2, 2, 2, 2, 0, 0, 0};
  mlcrt_max_pool2d_f32(NULL, &p5, x5, y5);
  mlcrt_max_pool2d_dx_f32(&p5, dy, x5, dx5);
  for (int i = 0; i < 25; i++)
    if (dx5[i] != (i < 20 ? want[i] : 0.0f)) fail_msg("5x5: dx[%d] = %g, want %g", i, (double)dx5[i], (double)(i < 20 ? want[i] : 0.0f));
}

/* The 2x2 forward and gradient on every row width from 1 to 20 windows (the
 * AVX-512 paths' masked blocks: 16 windows, then the rest) and odd sizes, on
 * values full of ties and NaNs, against the rules written plainly: the
 * forward takes a greater value or a NaN; the gradient goes to the first
 * maximum in row-major window order, where a NaN beats a number, and every
 * other element, and rows and columns outside every window, get 0.  Both the
 * CPU's path and the generic one (MLCRT_ISA=generic). */
static void test_max_pool_2x2_widths(void **state) {
  (void)state;
  const float vals[5] = {0.0f, 1.0f, 1.0f, 2.0f, NAN};
  uint32_t seed = 9;
  for (int pass = 0; pass < 2; pass++) {
    if (pass) setenv("MLCRT_ISA", "generic", 1);
    for (int64_t W = 2; W <= 41; W++)
      for (int64_t H = 2; H <= 5; H++) {
        const int64_t OH = H / 2, OW = W / 2, N = 2, C = 3, nx = N * C * H * W, ny = N * C * OH * OW;
        float *x = malloc(sizeof(float) * (size_t)nx), *dx = malloc(sizeof(float) * (size_t)nx);
        float *want = calloc((size_t)nx, sizeof(float)), *dy = malloc(sizeof(float) * (size_t)ny);
        float *y = malloc(sizeof(float) * (size_t)ny);
        for (int64_t i = 0; i < nx; i++) {
          seed = seed * 1664525u + 1013904223u;
          x[i] = vals[(seed >> 16) % 5], dx[i] = -3.0f; /* garbage: every element must be written */
        }
        for (int64_t i = 0; i < ny; i++) dy[i] = (float)(i + 1);
        const mlcrt_pool2d_params p = {N, C, H, W, OH, OW, 2, 2, 2, 2, 0, 0, 0};
        mlcrt_max_pool2d_f32(NULL, &p, x, y);
        for (int64_t nc = 0; nc < N * C; nc++)
          for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
              int64_t best = -1;
              float m = 0.0f;
              for (int q = 0; q < 4; q++) {
                const int64_t at = (nc * H + 2 * oh + q / 2) * W + 2 * ow + q % 2;
                const float v = x[at], b = best < 0 ? 0.0f : x[best];
                if (best < 0 || v > b || (isnan(v) && !isnan(b))) best = at;
                if (q == 0 || v > m || isnan(v)) m = v;
              }
              want[best] = dy[(nc * OH + oh) * OW + ow];
              const float got = y[(nc * OH + oh) * OW + ow];
              if (!(got == m || (isnan(got) && isnan(m))))
                fail_msg("%s, H %lld W %lld: y[%lld] = %g, want %g", pass ? "generic" : "this CPU",
                         (long long)H, (long long)W, (long long)((nc * OH + oh) * OW + ow), (double)got,
                         (double)m);
            }
        mlcrt_max_pool2d_dx_f32(&p, dy, x, dx);
        for (int64_t i = 0; i < nx; i++)
          if (dx[i] != want[i])
            fail_msg("%s, H %lld W %lld: dx[%lld] = %g, want %g", pass ? "generic" : "this CPU",
                     (long long)H, (long long)W, (long long)i, (double)dx[i], (double)want[i]);
        free(x), free(dx), free(want), free(dy), free(y);
      }
  }
  unsetenv("MLCRT_ISA");
}

/* max_pool2d's general windows (AVX-512: stride 1 or 2, 16 windows a block
 * over one input window of 32 floats, padding loaded as -inf) against the
 * rule written plainly: from -inf, each real element of the window in
 * row-major order replaces the maximum when greater or NaN.  Bit for bit
 * (ties of 0 and -0 keep the first), every row width 1..40 around the
 * 16-window blocks, kernels 1x1 to 5x2, strides 1 and 2 (and 3: the scalar
 * path), padding, ceil_mode; on this CPU and MLCRT_ISA=generic. */
static void test_max_pool_windows(void **state) {
  (void)state;
  const float vals[7] = {0.0f, -0.0f, 1.0f, 1.0f, 2.0f, NAN, -INFINITY};
  const int ks[5][2] = {{3, 3}, {2, 3}, {1, 1}, {5, 2}, {2, 2}};
  uint32_t seed = 5;
  for (int pass = 0; pass < 2; pass++) {
    if (pass) setenv("MLCRT_ISA", "generic", 1);
    for (int k = 0; k < 5; k++)
      for (int st = 1; st <= 3; st++)
        for (int pad = 0; pad <= (ks[k][0] < ks[k][1] ? ks[k][0] : ks[k][1]) / 2; pad++)
          for (int ceil_mode = 0; ceil_mode < 2; ceil_mode++)
            for (int64_t W = 1; W <= 40; W++)
              for (int64_t H = 1; H <= 4; H++) {
                const int64_t kh = ks[k][0], kw = ks[k][1];
                if (H + 2 * pad < kh || W + 2 * pad < kw) continue;
                const int64_t OH = pool_out(H, kh, st, pad, ceil_mode),
                              OW = pool_out(W, kw, st, pad, ceil_mode);
                const int64_t NC = 2, nx = NC * H * W, ny = NC * OH * OW;
                float *x = malloc(sizeof(float) * (size_t)nx), *y = malloc(sizeof(float) * (size_t)ny);
                for (int64_t i = 0; i < nx; i++) {
                  seed = seed * 1664525u + 1013904223u;
                  x[i] = vals[(seed >> 16) % 7];
                }
                const mlcrt_pool2d_params p = {1, NC, H, W, OH, OW, kh, kw, st, st, pad, pad, 0};
                mlcrt_max_pool2d_f32(NULL, &p, x, y);
                for (int64_t nc = 0; nc < NC; nc++)
                  for (int64_t oh = 0; oh < OH; oh++)
                    for (int64_t ow = 0; ow < OW; ow++) {
                      float m = -INFINITY;
                      for (int64_t i = 0; i < kh; i++)
                        for (int64_t j = 0; j < kw; j++) {
                          const int64_t h = oh * st - pad + i, w = ow * st - pad + j;
                          if (h < 0 || h >= H || w < 0 || w >= W) continue;
                          const float v = x[(nc * H + h) * W + w];
                          if (v > m || isnan(v)) m = v;
                        }
                      const float got = y[(nc * OH + oh) * OW + ow];
                      if (memcmp(&got, &m, sizeof m))
                        fail_msg("%s, k %lldx%lld s %d p %d ceil %d, H %lld W %lld: y[%lld,%lld,%lld] = %g, want %g",
                                 pass ? "generic" : "this CPU", (long long)kh, (long long)kw, st, pad,
                                 ceil_mode, (long long)H, (long long)W, (long long)nc, (long long)oh,
                                 (long long)ow, (double)got, (double)m);
                    }
                free(x), free(y);
              }
  }
  unsetenv("MLCRT_ISA");
}

/* mlcrt_expf / mlcrt_tanhf (mlcrt.h, the vectorizable versions generated
 * elementwise code calls): within 2 ulp of the correctly rounded result at a
 * million floats spread over every exponent, and libm's special values. */
static double ulp_error(float got, double want) {
  if (isnan(want)) return isnan(got) ? 0 : 1e30;
  const float wf = (float)want; /* correctly rounded (overflow gives inf) */
  if (isinf(wf)) return got == wf ? 0 : 1e30;
  if (got == wf) return 0;
  double ulp = fabs((double)nextafterf(wf, INFINITY) - (double)wf);
  if (fabsf(wf) < 1.17549435e-38f) ulp = 1.40129846e-45; /* denormal spacing */
  return fabs((double)got - want) / ulp;
}

static void test_vector_math(void **state) {
  (void)state;
  double worst_exp = 0, worst_tanh = 0;
  for (uint64_t u = 0; u < 0x100000000ull; u += 4099) {
    const uint32_t b = (uint32_t)u;
    float x;
    memcpy(&x, &b, 4);
    const double e = ulp_error(mlcrt_expf(x), exp((double)x)), t = ulp_error(mlcrt_tanhf(x), tanh((double)x));
    if (e > worst_exp) worst_exp = e;
    if (t > worst_tanh) worst_tanh = t;
  }
  if (worst_exp > 2 || worst_tanh > 2) fail_msg("exp %.2f ulp, tanh %.2f ulp", worst_exp, worst_tanh);
  assert_true(isnan(mlcrt_expf(NAN)) && mlcrt_expf(INFINITY) == INFINITY && mlcrt_expf(-INFINITY) == 0.0f);
  assert_true(mlcrt_expf(89.0f) == INFINITY && mlcrt_expf(-110.0f) == 0.0f && mlcrt_expf(0.0f) == 1.0f);
  assert_true(mlcrt_expf(-100.0f) > 0.0f); /* a denormal, not 0 */
  assert_true(isnan(mlcrt_tanhf(NAN)) && mlcrt_tanhf(INFINITY) == 1.0f && mlcrt_tanhf(-INFINITY) == -1.0f);
  assert_true(mlcrt_tanhf(-0.0f) == 0.0f && signbit(mlcrt_tanhf(-0.0f)) && mlcrt_tanhf(20.0f) == 1.0f);
}

static void test_pools_vs_naive(void **state) {
  (void)state;
  for (int it = 0; it < 300; it++) {
    mlcrt_pool2d_params p;
    p.N = 1 + it % 2;
    p.C = 1 + it % 3;
    p.H = 1 + (it * 7) % 9;
    p.W = 1 + (it * 5) % 11;
    p.kh = 1 + it % 4;
    p.kw = 1 + (it / 4) % 3;
    if (p.kh > p.H + 0) p.kh = p.H;
    if (p.kw > p.W) p.kw = p.W;
    p.sh = 1 + (it / 3) % 3;
    p.sw = 1 + (it / 5) % 3;
    p.ph = (it / 7) % (p.kh / 2 + 1);
    p.pw = (it / 11) % (p.kw / 2 + 1);
    int ceil_mode = it % 2;
    p.count_include_pad = (it / 2) % 2;
    p.OH = pool_out(p.H, p.kh, p.sh, p.ph, ceil_mode);
    p.OW = pool_out(p.W, p.kw, p.sw, p.pw, ceil_mode);
    size_t nx = (size_t)(p.N * p.C * p.H * p.W), ny = (size_t)(p.N * p.C * p.OH * p.OW);
    float *x = rand_buf(nx), *y = rand_buf(ny);
    double *want = malloc(ny * sizeof *want);
    ref_pool(&p, 1, x, want);
    mlcrt_max_pool2d_f32(NULL, &p, x, y);
    assert_close(y, want, ny, 0, 0);
    ref_pool(&p, 0, x, want);
    mlcrt_avg_pool2d_f32(NULL, &p, x, y);
    assert_close(y, want, ny, 1e-5, 1e-6);
    free(x);
    free(y);
    free(want);
  }
  /* split over 2 and 3 threads (enough planes and work to split): the same bits */
  mlcrt_pool2d_params p = {.N = 5, .C = 7, .H = 30, .W = 29, .OH = 15, .OW = 15, .kh = 3, .kw = 3, .sh = 2, .sw = 2, .ph = 1, .pw = 1, .count_include_pad = 0};
  size_t nx = (size_t)(p.N * p.C * p.H * p.W), ny = (size_t)(p.N * p.C * p.OH * p.OW);
  float *x = rand_buf(nx), *y1 = rand_buf(ny), *yt = rand_buf(ny);
  for (int max = 0; max < 2; max++) {
    if (max) mlcrt_max_pool2d_f32(NULL, &p, x, y1);
    else mlcrt_avg_pool2d_f32(NULL, &p, x, y1);
    for (int t = 2; t <= 3; t++) {
      if (max) mlcrt_max_pool2d_f32(teams[mlcrt_cpu_isa()][t], &p, x, yt);
      else mlcrt_avg_pool2d_f32(teams[mlcrt_cpu_isa()][t], &p, x, yt);
      assert_memory_equal(y1, yt, ny * sizeof *yt);
    }
  }
  free(x);
  free(y1);
  free(yt);
}

static void test_max_pool_nan(void **state) {
  (void)state;
  float x[4] = {1, NAN, 3, 2}, y[1];
  mlcrt_pool2d_params p = {1, 1, 2, 2, 1, 1, 2, 2, 2, 2, 0, 0, 1};
  mlcrt_max_pool2d_f32(NULL, &p, x, y);
  assert_true(isnan(y[0]));
}

/* ---- softmax ---------------------------------------------------------------------- */

static void test_softmax(void **state) {
  (void)state;
  const int64_t shapes[][3] = {{3, 10, 1}, {2, 5, 70}, {1, 1, 4}, {4, 300, 3}, {1, 2, 1}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    const int64_t O = shapes[s][0], n = shapes[s][1], I = shapes[s][2];
    const size_t tot = (size_t)(O * n * I);
    float *x = rand_buf(tot), *y = malloc(tot * sizeof *y), *ly = malloc(tot * sizeof *ly);
    for (size_t i = 0; i < tot; i++) x[i] *= 20.0f;
    if (s == 3)
      for (size_t i = 0; i < tot; i++) x[i] += 1000.0f; /* stability: exp(1000) overflows */
    mlcrt_softmax_f32(x, O, n, I, 0, y);
    mlcrt_softmax_f32(x, O, n, I, 1, ly);
    for (int64_t o = 0; o < O; o++)
      for (int64_t j = 0; j < I; j++) {
        double sum = 0, mx = -INFINITY;
        for (int64_t k = 0; k < n; k++) mx = fmax(mx, x[(o * n + k) * I + j]);
        for (int64_t k = 0; k < n; k++) sum += exp((double)x[(o * n + k) * I + j] - mx);
        double ssum = 0;
        for (int64_t k = 0; k < n; k++) {
          size_t i = (size_t)((o * n + k) * I + j);
          double want = exp((double)x[i] - mx) / sum;
          double wantlog = (double)x[i] - mx - log(sum);
          assert_true(y[i] >= 0.0f && isfinite(y[i]) && isfinite(ly[i]));
          assert_true(fabs(y[i] - want) <= 1e-6 + 1e-5 * want);
          assert_true(fabs(ly[i] - wantlog) <= 1e-5 + 1e-5 * fabs(wantlog));
          if (y[i] > 1e-30f) /* log_softmax matches the log of softmax */
            assert_true(fabs(ly[i] - log((double)y[i])) <= 1e-4 + 1e-5 * fabs(ly[i]));
          ssum += y[i];
        }
        assert_true(fabs(ssum - 1.0) < 1e-5);
      }
    /* in place */
    memcpy(y, x, tot * sizeof *y);
    mlcrt_softmax_f32(y, O, n, I, 1, y);
    for (size_t i = 0; i < tot; i++) assert_true(y[i] == ly[i]);
    free(x);
    free(y);
    free(ly);
  }
  /* -inf logits get probability 0; very negative log-probs stay finite. */
  float x[3] = {0.0f, -INFINITY, -200.0f}, y[3];
  mlcrt_softmax_f32(x, 1, 3, 1, 0, y);
  assert_true(y[0] == 1.0f && y[1] == 0.0f && y[2] == 0.0f);
  mlcrt_softmax_f32(x, 1, 3, 1, 1, y);
  assert_true(y[0] == 0.0f && isinf(y[1]) && y[1] < 0 && fabsf(y[2] + 200.0f) < 1e-4f);
  float xn[3] = {1.0f, NAN, 2.0f};
  mlcrt_softmax_f32(xn, 1, 3, 1, 0, y);
  assert_true(isnan(y[0]) && isnan(y[1]) && isnan(y[2]));
}

/* Softmax over the last dim on every row length around the AVX-512 blocks
 * (and MLCRT_ISA=generic), against double; and, rows of at most 16 whose
 * exponentials sum exactly in double, bit for bit what mlcrt_expf gives
 * (the vector path runs its algorithm). */
static void test_softmax_rows(void **state) {
  (void)state;
  const int64_t lens[] = {1, 7, 16, 17, 37, 300};
  for (int pass = 0; pass < 2; pass++) {
    if (pass) setenv("MLCRT_ISA", "generic", 1);
    for (size_t q = 0; q < sizeof lens / sizeof lens[0]; q++) {
      const int64_t n = lens[q], O = 3;
      float *x = rand_buf((size_t)(O * n)), *y = malloc(sizeof(float) * (size_t)(O * n));
      float *ly = malloc(sizeof(float) * (size_t)(O * n));
      for (int64_t i = 0; i < O * n; i++) x[i] *= 30.0f;
      mlcrt_softmax_f32(x, O, n, 1, 0, y);
      mlcrt_softmax_f32(x, O, n, 1, 1, ly);
      for (int64_t o = 0; o < O; o++) {
        double mx = -INFINITY, sum = 0;
        for (int64_t k = 0; k < n; k++) mx = fmax(mx, x[o * n + k]);
        for (int64_t k = 0; k < n; k++) sum += exp((double)x[o * n + k] - mx);
        for (int64_t k = 0; k < n; k++) {
          const double want = exp((double)x[o * n + k] - mx) / sum;
          const double wl = (double)x[o * n + k] - mx - log(sum);
          if (!(fabs(y[o * n + k] - want) <= 1e-6 + 1e-5 * want) ||
              !(fabs(ly[o * n + k] - wl) <= 1e-5 + 1e-5 * fabs(wl)))
            fail_msg("%s, n %lld: [%lld, %lld] = %g / %g, want %g / %g", pass ? "generic" : "this CPU",
                     (long long)n, (long long)o, (long long)k, (double)y[o * n + k],
                     (double)ly[o * n + k], want, wl);
        }
      }
      if (!pass && mlcrt_cpu_isa() == MLCRT_ISA_AVX512 && n <= 16) {
        for (int64_t i = 0; i < O * n; i++) x[i] = x[i] / 6.0f; /* within [-5, 5] */
        mlcrt_softmax_f32(x, O, n, 1, 0, y);
        for (int64_t o = 0; o < O; o++) {
          float mx = -INFINITY;
          for (int64_t k = 0; k < n; k++) mx = x[o * n + k] > mx ? x[o * n + k] : mx;
          /* summed in the kernel's order: lane l holds e[l] + e[l + 8], lanes added in turn */
          double part[8] = {0}, sum = 0;
          for (int64_t k = 0; k < n; k++) part[k % 8] += mlcrt_expf(x[o * n + k] - mx);
          for (int l = 0; l < 8; l++) sum += part[l];
          for (int64_t k = 0; k < n; k++) {
            const float want = mlcrt_expf(x[o * n + k] - mx) * (float)(1.0 / sum);
            if (memcmp(&y[o * n + k], &want, sizeof want))
              fail_msg("n %lld: [%lld, %lld] = %a, mlcrt_expf gives %a", (long long)n, (long long)o,
                       (long long)k, (double)y[o * n + k], (double)want);
          }
        }
      }
      free(x), free(y), free(ly);
    }
  }
  unsetenv("MLCRT_ISA");
}

/* ---- half precision -------------------------------------------------------------- */

static float bits_to_f(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
static uint32_t f_to_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

static void test_f16(void **state) {
  (void)state;
  assert_int_equal(mlcrt_f32_to_f16(1.0f), 0x3C00);
  assert_int_equal(mlcrt_f32_to_f16(-2.0f), 0xC000);
  assert_int_equal(mlcrt_f32_to_f16(0.0f), 0x0000);
  assert_int_equal(mlcrt_f32_to_f16(-0.0f), 0x8000);
  assert_int_equal(mlcrt_f32_to_f16(65504.0f), 0x7BFF);
  assert_int_equal(mlcrt_f32_to_f16(65519.0f), 0x7BFF); /* below the halfway point */
  assert_int_equal(mlcrt_f32_to_f16(65520.0f), 0x7C00); /* halfway to 65536: to even = inf */
  assert_int_equal(mlcrt_f32_to_f16(1e10f), 0x7C00);
  assert_int_equal(mlcrt_f32_to_f16(INFINITY), 0x7C00);
  assert_int_equal(mlcrt_f32_to_f16(-INFINITY), 0xFC00);
  uint16_t h = mlcrt_f32_to_f16(NAN);
  assert_true((h & 0x7C00) == 0x7C00 && (h & 0x3FF) != 0);
  h = mlcrt_f32_to_f16(bits_to_f(0x7F800001)); /* signalling NaN with a low payload stays NaN */
  assert_true((h & 0x7C00) == 0x7C00 && (h & 0x3FF) != 0);
  /* Ties to even: 1 + 2^-11 is halfway between 1 and 1 + 2^-10. */
  assert_int_equal(mlcrt_f32_to_f16(1.0f + 0x1p-11f), 0x3C00);
  assert_int_equal(mlcrt_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3C02);
  assert_int_equal(mlcrt_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f), 0x3C01);
  assert_int_equal(mlcrt_f32_to_f16(0.1f), 0x2E66);
  assert_int_equal(mlcrt_f32_to_f16(0.333333343f), 0x3555);
  /* Subnormals. */
  assert_int_equal(mlcrt_f32_to_f16(0x1p-24f), 0x0001);
  assert_int_equal(mlcrt_f32_to_f16(0x1p-25f), 0x0000);            /* tie -> even (0) */
  assert_int_equal(mlcrt_f32_to_f16(0x1.000002p-25f), 0x0001);     /* just above the tie */
  assert_int_equal(mlcrt_f32_to_f16(3 * 0x1p-25f), 0x0002);        /* tie -> even (2) */
  assert_int_equal(mlcrt_f32_to_f16(0x1p-14f), 0x0400);            /* smallest normal */
  assert_int_equal(mlcrt_f32_to_f16(0x1p-14f - 0x1p-25f), 0x0400); /* rounds up into normal */
  assert_int_equal(mlcrt_f32_to_f16(1e-10f), 0x0000);
  assert_true(mlcrt_f16_to_f32(0x3C00) == 1.0f);
  assert_true(mlcrt_f16_to_f32(0x7BFF) == 65504.0f);
  assert_true(mlcrt_f16_to_f32(0x0001) == 0x1p-24f);
  assert_true(mlcrt_f16_to_f32(0x03FF) == 1023 * 0x1p-24f);
  assert_true(isinf(mlcrt_f16_to_f32(0x7C00)) && mlcrt_f16_to_f32(0xFC00) < 0);
  assert_true(isnan(mlcrt_f16_to_f32(0x7E00)));
  assert_true(f_to_bits(mlcrt_f16_to_f32(0x8000)) == 0x80000000u);
  /* Every non-NaN f16 survives f16 -> f32 -> f16. */
  for (uint32_t b = 0; b < 0x10000; b++) {
    float f = mlcrt_f16_to_f32((uint16_t)b);
    if ((b & 0x7C00) == 0x7C00 && (b & 0x3FF)) {
      assert_true(isnan(f));
      continue;
    }
    assert_int_equal(mlcrt_f32_to_f16(f), b);
  }
  /* Between consecutive positive f16 values the f32 midpoints round to even. */
  for (uint32_t b = 0; b < 0x7BFF; b++) {
    float lo = mlcrt_f16_to_f32((uint16_t)b), hi = mlcrt_f16_to_f32((uint16_t)(b + 1));
    float mid = (float)(((double)lo + (double)hi) / 2);
    uint16_t want = (b & 1) ? (uint16_t)(b + 1) : (uint16_t)b;
    assert_int_equal(mlcrt_f32_to_f16(mid), want);
    assert_int_equal(mlcrt_f32_to_f16(nextafterf(mid, 0)), b);
    assert_int_equal(mlcrt_f32_to_f16(nextafterf(mid, INFINITY)), b + 1);
  }
}

static void test_bf16(void **state) {
  (void)state;
  assert_int_equal(mlcrt_f32_to_bf16(1.0f), 0x3F80);
  assert_true(mlcrt_bf16_to_f32(0x3F80) == 1.0f);
  assert_int_equal(mlcrt_f32_to_bf16(-2.0f), 0xC000);
  assert_int_equal(mlcrt_f32_to_bf16(INFINITY), 0x7F80);
  assert_int_equal(mlcrt_f32_to_bf16(-INFINITY), 0xFF80);
  assert_int_equal(mlcrt_f32_to_bf16(NAN), 0x7FC0);
  assert_int_equal(mlcrt_f32_to_bf16(bits_to_f(0x7F800001)), 0x7FC0); /* NaN not rounded to inf */
  assert_int_equal(mlcrt_f32_to_bf16(bits_to_f(0x3F808000)), 0x3F80); /* tie -> even */
  assert_int_equal(mlcrt_f32_to_bf16(bits_to_f(0x3F818000)), 0x3F82); /* tie -> even */
  assert_int_equal(mlcrt_f32_to_bf16(bits_to_f(0x3F808001)), 0x3F81);
  assert_int_equal(mlcrt_f32_to_bf16(bits_to_f(0x3F807FFF)), 0x3F80);
  assert_int_equal(mlcrt_f32_to_bf16(bits_to_f(0x7F7FFFFF)), 0x7F80); /* FLT_MAX rounds to inf */
  assert_int_equal(mlcrt_f32_to_bf16(bits_to_f(0x00000001)), 0x0000); /* subnormal rounds */
  assert_int_equal(mlcrt_f32_to_bf16(bits_to_f(0x00018000)), 0x0002);
  assert_int_equal(mlcrt_f32_to_bf16(0.1f), 0x3DCD);
  for (uint32_t b = 0; b < 0x10000; b++) {
    float f = mlcrt_bf16_to_f32((uint16_t)b);
    assert_true(f_to_bits(f) == b << 16);
    if (!isnan(f)) assert_int_equal(mlcrt_f32_to_bf16(f), b);
  }
}

static void test_dtype_names(void **state) {
  (void)state;
  static const char *names[] = {"f32", "f16", "bf16", "i32", "i64", "u8", "bool"};
  static const size_t sizes[] = {4, 2, 2, 4, 8, 1, 1};
  for (int t = 0; t < MLCRT_NDTYPES; t++) {
    assert_string_equal(mlcrt_dtype_name((mlcrt_dtype)t), names[t]);
    assert_int_equal(mlcrt_dtype_size((mlcrt_dtype)t), sizes[t]);
  }
  assert_string_equal(mlcrt_status_name(MLCRT_ESHAPE), "wrong dtype or shape");
  assert_string_equal(mlcrt_status_name(MLCRT_OK), "ok");
  assert_string_equal(mlcrt_status_name(999), "unknown status");
  char err[MLCRT_ERRLEN];
  assert_int_equal(mlcrt_seterr(err, MLCRT_EIO, "x %d %s", 42, "y"), MLCRT_EIO);
  assert_string_equal(err, "x 42 y");
  char longs[2000];
  memset(longs, 'a', sizeof longs - 1);
  longs[sizeof longs - 1] = 0;
  mlcrt_seterr(err, MLCRT_EIO, "%s", longs);
  assert_int_equal(strlen(err), MLCRT_ERRLEN - 1);
  mlcrt_set_last_error("boom");
  assert_string_equal(mlcrt_last_error(), "boom");
  mlcrt_seterr(NULL, MLCRT_EINVAL, "via %s", "null"); /* NULL err: goes to the last error */
  assert_string_equal(mlcrt_last_error(), "via null");
  mlcrt_set_last_error(longs);
  assert_int_equal(strlen(mlcrt_last_error()), MLCRT_ERRLEN - 1);
  mlcrt_set_last_error(NULL);
  assert_string_equal(mlcrt_last_error(), "");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_isa_detection),
      cmocka_unit_test(test_team_run),
      cmocka_unit_test(test_sgemm_odd_sizes),
      cmocka_unit_test(test_sgemm_blocking),
      cmocka_unit_test(test_sgemm_degenerate),
      cmocka_unit_test(test_matmul),
      cmocka_unit_test(test_linear),
      cmocka_unit_test(test_conv2d),
      cmocka_unit_test(test_max_pool_windows),
      cmocka_unit_test(test_softmax_rows),
      cmocka_unit_test(test_pools_vs_pytorch),
      cmocka_unit_test(test_pools_vs_naive),
      cmocka_unit_test(test_max_pool_nan),
      cmocka_unit_test(test_max_pool_2x2_path),
      cmocka_unit_test(test_max_pool_2x2_widths),
      cmocka_unit_test(test_vector_math),
      cmocka_unit_test(test_softmax),
      cmocka_unit_test(test_f16),
      cmocka_unit_test(test_bf16),
      cmocka_unit_test(test_dtype_names),
  };
  return cmocka_run_group_tests(tests, setup_teams, teardown_teams);
}
