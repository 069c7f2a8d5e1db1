/* test_rt_tiles.c — elementwise tiles (mlcrt_tiles) and GEMM and convolution
 * epilogues (mlcrt_sgemm_epi, mlcrt_linear_epi_f32, mlcrt_matmul_epi_f32,
 * mlcrt_conv2d_epi_f32, mlcrt_conv2d_pool_f32): every
 * element of the output is handed to the kernel exactly once, after its
 * GEMM value is final, on every instruction set and thread count, and the
 * result equals the GEMM followed by the same elementwise pass. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mlcrt.h"
#include "rt_teams.h"

/* The kernel under test: y = relu(y) * 2 + r (r: a residual, same shape),
 * counting visits per element.  want, when set, holds each element's final
 * GEMM value: the epilogue must never see a partial sum. */
typedef struct {
  float *y;
  const float *r;
  const float *want; /* or NULL */
  int *visits;
  int64_t nc;
  int bad; /* elements seen before they were final */
} tile_ctx;

static void tile(void *arg, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
  tile_ctx *a = arg;
  for (int64_t r = r0; r < r1; r++)
    for (int64_t i = r * a->nc + c0; i < r * a->nc + c1; i++) {
      if (a->want && a->y[i] != a->want[i]) a->bad = 1; /* racy flag, only ever set */
      a->visits[i]++;
      a->y[i] = (a->y[i] < 0 ? 0 : a->y[i]) * 2.0f + a->r[i];
    }
}

static void test_tiles_cover_once(void **state) {
  (void)state;
  /* shapes around the threading threshold (32768 elements), a single row,
   * a single column, fewer rows than threads */
  static const int64_t shapes[][2] = {{1, 1},     {1, 100000}, {100000, 1},
                                      {3, 40000}, {257, 129},  {2, 7}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    const int64_t R = shapes[s][0], C = shapes[s][1], n = R * C;
    float *y = malloc((size_t)n * sizeof *y), *r = malloc((size_t)n * sizeof *r);
    float *ref = malloc((size_t)n * sizeof *ref);
    int *visits = calloc((size_t)n, sizeof *visits);
    uint32_t seed = 7;
    for (int64_t i = 0; i < n; i++) y[i] = frand(&seed), r[i] = frand(&seed);
    for (int64_t i = 0; i < n; i++) ref[i] = (y[i] < 0 ? 0 : y[i]) * 2.0f + r[i];
    for (int t = 0; t <= 3; t++) {
      float *yt = malloc((size_t)n * sizeof *yt);
      memcpy(yt, y, (size_t)n * sizeof *yt);
      memset(visits, 0, (size_t)n * sizeof *visits);
      tile_ctx a = {yt, r, NULL, visits, C, 0};
      mlcrt_tiles(t ? teams[mlcrt_cpu_isa()][t] : NULL, R, C, tile, &a);
      for (int64_t i = 0; i < n; i++)
        if (visits[i] != 1)
          fail_msg("%lldx%lld, %d threads: element %lld visited %d times", (long long)R,
                   (long long)C, t, (long long)i, visits[i]);
      assert_memory_equal(yt, ref, (size_t)n * sizeof *yt);
      free(yt);
    }
    free(y), free(r), free(ref), free(visits);
  }
  /* nothing to do: the kernel is not called */
  int visits = 0;
  tile_ctx a = {NULL, NULL, NULL, &visits, 0, 0};
  mlcrt_tiles(teams[0][2], 0, 5, tile, &a);
  mlcrt_tiles(teams[0][2], 5, 0, tile, &a);
  assert_int_equal(visits, 0);
}

/* linear with an epilogue == linear, then the elementwise pass, with W
 * packed per call and packed once beforehand; for every path of the GEMM
 * (packed blocks, several K and N blocks, rows by dot products, one row) on
 * every instruction set and thread count. */
static void check_linear_epi(int64_t M, int64_t K, int64_t N, int bias) {
  const int64_t n = M * N;
  uint32_t seed = 11;
  float *x = malloc((size_t)(M * K) * sizeof *x), *w = malloc((size_t)(N * K) * sizeof *w);
  float *b = malloc((size_t)N * sizeof *b), *r = malloc((size_t)n * sizeof *r);
  float *gemm = malloc((size_t)n * sizeof *gemm), *want = malloc((size_t)n * sizeof *want);
  float *y = malloc((size_t)n * sizeof *y);
  int *visits = malloc((size_t)n * sizeof *visits);
  for (int64_t i = 0; i < M * K; i++) x[i] = frand(&seed);
  for (int64_t i = 0; i < N * K; i++) w[i] = frand(&seed);
  for (int64_t i = 0; i < N; i++) b[i] = frand(&seed);
  for (int64_t i = 0; i < n; i++) r[i] = frand(&seed);
  for (int isa = 0; isa <= mlcrt_cpu_isa(); isa++)
    for (int t = 1; t <= 3; t++) {
      mlcrt_team *team = teams[isa][t];
      mlcrt_linear_f32(team, x, M, K, w, N, bias ? b : NULL, gemm); /* the GEMM alone */
      for (int64_t i = 0; i < n; i++) want[i] = (gemm[i] < 0 ? 0 : gemm[i]) * 2.0f + r[i];
      /* then with W packed once for the team (mlcrt_linear_pack_f32): the same bits */
      float *wp = malloc(mlcrt_linear_pack_floats(team, N, K) * sizeof *wp + 1);
      mlcrt_linear_pack_f32(team, w, N, K, wp);
      for (int packed = 0; packed < 2; packed++) {
        memset(visits, 0, (size_t)n * sizeof *visits);
        for (int64_t i = 0; i < n; i++) y[i] = -7.0f;
        tile_ctx a = {y, r, gemm, visits, N, 0};
        const mlcrt_epilogue epi = {tile, &a};
        if (packed)
          mlcrt_linear_packed_epi_f32(team, x, M, K, w, wp, N, bias ? b : NULL, y, &epi);
        else
          mlcrt_linear_epi_f32(team, x, M, K, w, N, bias ? b : NULL, y, &epi);
        if (a.bad)
          fail_msg("%lldx%lldx%lld isa %d, %d threads%s: the epilogue saw a partial result",
                   (long long)M, (long long)K, (long long)N, isa, t, packed ? ", packed W" : "");
        for (int64_t i = 0; i < n; i++)
          if (visits[i] != 1)
            fail_msg("%lldx%lldx%lld isa %d, %d threads%s: element %lld visited %d times",
                     (long long)M, (long long)K, (long long)N, isa, t, packed ? ", packed W" : "",
                     (long long)i, visits[i]);
        assert_memory_equal(y, want, (size_t)n * sizeof *y);
      }
      free(wp);
    }
  free(x), free(w), free(b), free(r), free(gemm), free(want), free(y), free(visits);
}

static void test_linear_epilogue(void **state) {
  (void)state;
  check_linear_epi(1, 300, 1100, 1);   /* one row: the unpacked path */
  check_linear_epi(6, 784, 25, 0);     /* few long rows: dot products */
  check_linear_epi(70, 259, 301, 1);   /* ragged packed blocks, two K blocks */
  check_linear_epi(300, 200, 37, 1);   /* tall: threads split rows */
  check_linear_epi(130, 600, 1500, 0); /* several N blocks and K blocks */
  check_linear_epi(40, 1100, 2100, 1); /* N blocks of a wide workspace, a ragged last panel */
  check_linear_epi(9, 0, 5, 1);        /* K == 0: bias only */
}

/* matmul: one GEMM over all rows, and one per batch (b batched), where the
 * epilogue's rows continue from batch to batch. */
static void test_matmul_epilogue(void **state) {
  (void)state;
  const int64_t Bt = 3, M = 17, K = 33, N = 40;
  const int64_t as[] = {Bt, M, K}, bs2[] = {K, N}, bs3[] = {Bt, K, N}, ys[] = {Bt, M, N};
  const int64_t n = Bt * M * N;
  uint32_t seed = 5;
  float *a = malloc((size_t)(Bt * M * K) * sizeof *a),
        *b = malloc((size_t)(Bt * K * N) * sizeof *b);
  float *r = malloc((size_t)n * sizeof *r), *gemm = malloc((size_t)n * sizeof *gemm);
  float *want = malloc((size_t)n * sizeof *want), *y = malloc((size_t)n * sizeof *y);
  int *visits = malloc((size_t)n * sizeof *visits);
  for (int64_t i = 0; i < Bt * M * K; i++) a[i] = frand(&seed);
  for (int64_t i = 0; i < Bt * K * N; i++) b[i] = frand(&seed);
  for (int64_t i = 0; i < n; i++) r[i] = frand(&seed);
  for (int batched = 0; batched < 2; batched++)
    for (int t = 1; t <= 3; t++) {
      mlcrt_team *team = teams[mlcrt_cpu_isa()][t];
      const int64_t *bs = batched ? bs3 : bs2;
      mlcrt_matmul_f32(team, a, 3, as, b, batched ? 3 : 2, bs, gemm, 3, ys);
      for (int64_t i = 0; i < n; i++) want[i] = (gemm[i] < 0 ? 0 : gemm[i]) * 2.0f + r[i];
      memset(visits, 0, (size_t)n * sizeof *visits);
      tile_ctx c = {y, r, gemm, visits, N, 0};
      const mlcrt_epilogue epi = {tile, &c};
      mlcrt_matmul_epi_f32(team, a, 3, as, b, batched ? 3 : 2, bs, y, 3, ys, &epi);
      assert_int_equal(c.bad, 0);
      for (int64_t i = 0; i < n; i++) assert_int_equal(visits[i], 1);
      assert_memory_equal(y, want, (size_t)n * sizeof *y);
    }
  free(a), free(b), free(r), free(gemm), free(want), free(y), free(visits);
}

/* conv2d: the epilogue's rows are n * OC + oc, its columns oh * OW + ow;
 * each path of the forward: the direct kernel (few channels), the implicit
 * GEMM on one image, a 1x1 convolution (x itself as B), chunks of several
 * small images (a gathered result), and a GEMM per output position. */
static void check_conv_epi(mlcrt_conv2d_params p, int bias) {
  const int64_t L = p.OH * p.OW, n = p.N * p.OC * L, nx = p.N * p.C * p.H * p.W,
                nw = p.OC * (p.C / p.groups) * p.KH * p.KW;
  uint32_t seed = 3;
  float *x = malloc((size_t)nx * sizeof *x), *w = malloc((size_t)nw * sizeof *w);
  float *b = malloc((size_t)p.OC * sizeof *b), *r = malloc((size_t)n * sizeof *r);
  float *conv = malloc((size_t)n * sizeof *conv), *want = malloc((size_t)n * sizeof *want);
  float *y = malloc((size_t)n * sizeof *y);
  int *visits = malloc((size_t)n * sizeof *visits);
  for (int64_t i = 0; i < nx; i++) x[i] = frand(&seed);
  for (int64_t i = 0; i < nw; i++) w[i] = frand(&seed);
  for (int64_t i = 0; i < p.OC; i++) b[i] = frand(&seed);
  for (int64_t i = 0; i < n; i++) r[i] = frand(&seed);
  for (int isa = 0; isa <= mlcrt_cpu_isa(); isa++)
    for (int t = 1; t <= 3; t++) {
      mlcrt_team *team = teams[isa][t];
      void *scratch = malloc(mlcrt_conv2d_scratch(&p, MLCRT_CONV_FWD, t) + 64);
      mlcrt_conv2d_f32(team, &p, x, w, bias ? b : NULL, conv, scratch); /* alone */
      for (int64_t i = 0; i < n; i++) want[i] = (conv[i] < 0 ? 0 : conv[i]) * 2.0f + r[i];
      memset(visits, 0, (size_t)n * sizeof *visits);
      tile_ctx a = {y, r, conv, visits, L, 0};
      const mlcrt_epilogue epi = {tile, &a};
      mlcrt_conv2d_epi_f32(team, &p, x, w, bias ? b : NULL, y, scratch, &epi);
      if (a.bad)
        fail_msg("conv N%lld C%lld %lldx%lld OC%lld isa %d, %d threads: a partial result seen",
                 (long long)p.N, (long long)p.C, (long long)p.H, (long long)p.W, (long long)p.OC,
                 isa, t);
      for (int64_t i = 0; i < n; i++)
        if (visits[i] != 1)
          fail_msg("conv N%lld C%lld OC%lld isa %d, %d threads: element %lld visited %d times",
                   (long long)p.N, (long long)p.C, (long long)p.OC, isa, t, (long long)i,
                   visits[i]);
      assert_memory_equal(y, want, (size_t)n * sizeof *y);
      free(scratch);
    }
  free(x), free(w), free(b), free(r), free(conv), free(want), free(y), free(visits);
}

static void test_conv_epilogue(void **state) {
  (void)state;
  /* LeNet-5's first layer (1 channel: the direct kernel), its second */
  check_conv_epi((mlcrt_conv2d_params){3, 1, 28, 28, 6, 5, 5, 28, 28, 1, 1, 2, 2, 1, 1, 1}, 1);
  check_conv_epi((mlcrt_conv2d_params){3, 6, 14, 14, 16, 5, 5, 10, 10, 1, 1, 0, 0, 1, 1, 1}, 1);
  /* one image with many positions: the implicit GEMM straight into y */
  check_conv_epi((mlcrt_conv2d_params){2, 8, 40, 40, 12, 3, 3, 40, 40, 1, 1, 1, 1, 1, 1, 1}, 0);
  /* 1x1: x itself is B */
  check_conv_epi((mlcrt_conv2d_params){1, 16, 30, 30, 24, 1, 1, 30, 30, 1, 1, 0, 0, 1, 1, 1}, 1);
  /* small images in chunks, two groups, stride 2 */
  check_conv_epi((mlcrt_conv2d_params){9, 8, 6, 6, 10, 3, 3, 3, 3, 2, 2, 1, 1, 1, 1, 2}, 1);
  /* a GEMM per output position (2x2 -> 2x2 and 1x1 -> 1x1, 3x3 padding 1) */
  check_conv_epi((mlcrt_conv2d_params){10, 12, 2, 2, 9, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1}, 1);
  check_conv_epi((mlcrt_conv2d_params){11, 20, 1, 1, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1}, 0);
  /* rows of 8 packed by permutes (AVX-512), one tap in padding for the border */
  check_conv_epi((mlcrt_conv2d_params){6, 9, 8, 8, 13, 3, 3, 8, 8, 1, 1, 1, 1, 1, 1, 1}, 1);
}

/* mlcrt_conv2d_pool_f32: a convolution and its per-channel tail a chunk of
 * images at a time, each chunk pooled, equals the whole batch's convolution
 * then the pool, bit for bit: chunks of 1, ones that do not divide the
 * batch, one larger than it (on the whole team), as many chunks as threads
 * or more (each member its own); max and avg; every ISA and thread count. */
typedef struct {
  float *y;
  const float *s; /* per channel */
  int64_t oc, nc;
} chan_ctx;

static void chan_tile(void *arg, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
  chan_ctx *a = arg;
  for (int64_t r = r0; r < r1; r++)
    for (int64_t i = r * a->nc + c0; i < r * a->nc + c1; i++)
      a->y[i] = (a->y[i] < 0 ? 0 : a->y[i]) * a->s[r % a->oc];
}

static void check_conv_pool(mlcrt_conv2d_params p, mlcrt_pool2d_params q, int64_t chunk) {
  const int64_t L = p.OH * p.OW, n = p.N * p.OC * L, nx = p.N * p.C * p.H * p.W,
                nw = p.OC * (p.C / p.groups) * p.KH * p.KW, ny = p.N * p.OC * q.OH * q.OW;
  uint32_t seed = 7;
  float *x = malloc((size_t)nx * sizeof *x), *w = malloc((size_t)nw * sizeof *w);
  float *b = malloc((size_t)p.OC * sizeof *b), *sc = malloc((size_t)p.OC * sizeof *sc);
  float *conv = malloc((size_t)n * sizeof *conv), *want = malloc((size_t)ny * sizeof *want);
  float *y = malloc((size_t)ny * sizeof *y);
  float *buf = NULL; /* each thread count's room, exactly: ASan sees an overrun */
  for (int64_t i = 0; i < nx; i++) x[i] = frand(&seed);
  for (int64_t i = 0; i < nw; i++) w[i] = frand(&seed);
  for (int64_t i = 0; i < p.OC; i++) b[i] = frand(&seed), sc[i] = 1.0f + frand(&seed);
  for (int avg = 0; avg < 2; avg++)
    for (int isa = 0; isa <= mlcrt_cpu_isa(); isa++)
      for (int t = 1; t <= 3; t++) {
        mlcrt_team *team = teams[isa][t];
        void *scratch = malloc(mlcrt_conv2d_scratch(&p, MLCRT_CONV_FWD, t) + 64);
        chan_ctx whole = {conv, sc, p.OC, L};
        const mlcrt_epilogue ew = {chan_tile, &whole};
        mlcrt_conv2d_epi_f32(team, &p, x, w, b, conv, scratch, &ew);
        (avg ? mlcrt_avg_pool2d_f32 : mlcrt_max_pool2d_f32)(team, &q, conv, want);
        free(scratch);
        scratch = malloc(mlcrt_conv2d_pool_scratch(&p, chunk, t) + 64);
        for (int64_t i = 0; i < ny; i++) y[i] = -9.0f;
        free(buf);
        buf = malloc((size_t)(mlcrt_conv2d_pool_images(p.N, chunk, t) * p.OC * L) * sizeof *buf);
        chan_ctx part = {buf, sc, p.OC, L};
        const mlcrt_epilogue ep = {chan_tile, &part};
        mlcrt_conv2d_pool_f32(team, &p, x, w, b, scratch, &ep, &q, avg, chunk, buf, y);
        if (memcmp(y, want, (size_t)ny * sizeof *y))
          fail_msg("conv+pool N%lld C%lld %lldx%lld chunk %lld %s, isa %d, %d threads differs",
                   (long long)p.N, (long long)p.C, (long long)p.H, (long long)p.W, (long long)chunk,
                   avg ? "avg" : "max", isa, t);
        free(scratch);
      }
  free(x), free(w), free(b), free(sc), free(conv), free(want), free(y), free(buf);
}

static void test_conv_pool(void **state) {
  (void)state;
  /* LeNet-5's layers: 6 and 20 images at a time, as mlc plans them */
  const mlcrt_conv2d_params c1 = {13, 1, 28, 28, 6, 5, 5, 28, 28, 1, 1, 2, 2, 1, 1, 1};
  const mlcrt_pool2d_params p1 = {13, 6, 28, 28, 14, 14, 2, 2, 2, 2, 0, 0, 0};
  check_conv_pool(c1, p1, 6);
  check_conv_pool(c1, p1, 1);
  const mlcrt_conv2d_params c2 = {7, 6, 14, 14, 16, 5, 5, 10, 10, 1, 1, 0, 0, 1, 1, 1};
  const mlcrt_pool2d_params p2 = {7, 16, 10, 10, 5, 5, 2, 2, 2, 2, 0, 0, 0};
  check_conv_pool(c2, p2, 20); /* a chunk beyond the batch */
  check_conv_pool(c2, p2, 3);
  /* 3x3 stride 2 padding 1 windows over an odd size, the implicit GEMM */
  const mlcrt_conv2d_params c3 = {5, 8, 9, 9, 12, 3, 3, 9, 9, 1, 1, 1, 1, 1, 1, 1};
  const mlcrt_pool2d_params p3 = {5, 12, 9, 9, 5, 5, 3, 3, 2, 2, 1, 1, 1};
  check_conv_pool(c3, p3, 2);
}

/* max_pool2d's backward with an epilogue (relu's backward after it in a
 * CNN's train step): rows n * C + c, columns h * W + w, each plane once and
 * only when final; the 2x2 paths (AVX-512 and the portable one:
 * MLCRT_ISA=generic) and the general windows. */
static void check_pool_dx_epi(mlcrt_pool2d_params p) {
  const int64_t n = p.N * p.C * p.H * p.W, ny = p.N * p.C * p.OH * p.OW;
  uint32_t seed = 5;
  float *x = malloc((size_t)n * sizeof *x), *dy = malloc((size_t)ny * sizeof *dy);
  float *r = malloc((size_t)n * sizeof *r), *dx = malloc((size_t)n * sizeof *dx);
  float *want = malloc((size_t)n * sizeof *want), *y = malloc((size_t)n * sizeof *y);
  int *visits = malloc((size_t)n * sizeof *visits);
  for (int64_t i = 0; i < n; i++) x[i] = frand(&seed), r[i] = frand(&seed);
  for (int64_t i = 0; i < ny; i++) dy[i] = frand(&seed);
  for (int pass = 0; pass < 2; pass++) {
    if (pass) setenv("MLCRT_ISA", "generic", 1);
    mlcrt_max_pool2d_dx_f32(&p, dy, x, dx); /* alone */
    for (int64_t i = 0; i < n; i++) want[i] = (dx[i] < 0 ? 0 : dx[i]) * 2.0f + r[i];
    for (int t = 0; t <= 3; t++) { /* no team, then 1..3 threads */
      memset(visits, 0, (size_t)n * sizeof *visits);
      for (int64_t i = 0; i < n; i++) y[i] = -9.0f; /* garbage: every element must be written */
      tile_ctx a = {y, r, dx, visits, p.H * p.W, 0};
      const mlcrt_epilogue epi = {tile, &a};
      mlcrt_max_pool2d_dx_epi_f32(t ? teams[mlcrt_cpu_isa()][t] : NULL, &p, dy, x, y, &epi);
      if (a.bad)
        fail_msg("pool dx %lldx%lld k%lld (%s, %d threads): a partial result seen", (long long)p.H,
                 (long long)p.W, (long long)p.kh, pass ? "generic" : "this CPU", t);
      for (int64_t i = 0; i < n; i++)
        if (visits[i] != 1)
          fail_msg("pool dx %lldx%lld k%lld: element %lld visited %d times", (long long)p.H,
                   (long long)p.W, (long long)p.kh, (long long)i, visits[i]);
      assert_memory_equal(y, want, (size_t)n * sizeof *y);
    }
  }
  unsetenv("MLCRT_ISA");
  free(x), free(dy), free(r), free(dx), free(want), free(y), free(visits);
}

static void test_pool_dx_epilogue(void **state) {
  (void)state;
  check_pool_dx_epi((mlcrt_pool2d_params){3, 6, 28, 28, 14, 14, 2, 2, 2, 2, 0, 0, 0}); /* LeNet's */
  check_pool_dx_epi((mlcrt_pool2d_params){2, 3, 9, 37, 4, 18, 2, 2, 2, 2, 0, 0, 0}); /* odd sizes */
  check_pool_dx_epi((mlcrt_pool2d_params){2, 4, 16, 16, 8, 8, 3, 3, 2, 2, 1, 1, 0}); /* ResNet's */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tiles_cover_once), cmocka_unit_test(test_linear_epilogue),
      cmocka_unit_test(test_matmul_epilogue),  cmocka_unit_test(test_conv_epilogue),
      cmocka_unit_test(test_conv_pool),        cmocka_unit_test(test_pool_dx_epilogue),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
