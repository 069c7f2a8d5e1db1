/* gemm.c — single-precision matrix multiply and the ops built on it
 * (matmul with torch.matmul semantics, linear).
 *
 * mlcrt_sgemm_team is a blocked GEMM in the style of BLIS/GotoBLAS:
 *   for each nc-wide column block of op(B) and kc-deep slice of K:
 *     pack op(B)[pc:pc+kc, jc:jc+nc] into panels of NR columns (k-major);
 *     for each mc-tall row block of op(A):
 *       pack alpha * op(A)[ic:ic+mc, pc:pc+kc] into panels of MR rows;
 *       for each NR panel, for each MR panel: the micro-kernel updates an
 *       MR x NR tile of C held in registers.
 * Packing handles every trans_a/trans_b combination and any lda/ldb and pads
 * ragged edges with zeros, so the kernels never see an edge case.  The
 * micro-kernel and the blocking come from a table per instruction set
 * (gemm_kernels.h): AVX-512, AVX2+FMA, and a portable C kernel that gcc and
 * clang vectorise; the team (or CPU detection, without one) picks it.
 *
 * Threads split C into column (or, for tall skinny C, row) slices, one per
 * team member, each computed exactly as a single thread would: every element
 * of C is summed in the same order whatever the thread count, so results are
 * bit-identical across runs and thread counts.  Products too small to pay for
 * a hand-off run on the calling thread, and a single row times a row-major
 * matrix (linear at batch 1), or a matrix times a single column, skips
 * packing altogether: it streams the matrix once through the ISA's
 * dot-product kernel.
 *
 * mlcrt_sgemm_epi also calls an epilogue (generated code's fused elementwise
 * tail: bias, activation, residual add) on each mc x nc block of C once the
 * last K slice has been added to it, on the thread that computed it, while
 * the block is still in cache; the unpacked paths call it on their slices.
 *
 * beta == 0 overwrites C without reading it (C may hold garbage or NaN), as
 * BLAS specifies.  Packing panels live in the team's workspace, or on the
 * stack without a team: nothing is allocated.
 */
#include "mlcrt.h"

#include <stdlib.h>
#include <string.h>

#include "gemm_kernels.h"
#include "rt_internal.h"

/* ---- the portable kernel ------------------------------------------------------ */

#define G_MR 4
#define G_NR 16

static void kernel_generic(int64_t kc, const float *restrict ap, const float *restrict bp,
                           int64_t bs, float *c, int64_t ldc, int mr, int nr, float beta) {
  float t[G_MR][G_NR];
  for (int r = 0; r < G_MR; r++)
    for (int j = 0; j < G_NR; j++) t[r][j] = 0.0f;
  for (int64_t k = 0; k < kc; k++) {
    const float *b = bp + k * bs, *a = ap + k * G_MR;
    for (int r = 0; r < G_MR; r++)
      for (int j = 0; j < G_NR; j++) t[r][j] += a[r] * b[j];
  }
  for (int r = 0; r < mr; r++)
    for (int j = 0; j < nr; j++)
      c[r * ldc + j] = beta == 0.0f ? t[r][j] : beta * c[r * ldc + j] + t[r][j];
}

static void gemv_generic(int64_t N, int64_t K, float alpha, const float *a, const float *b,
                         int64_t ldb, float beta, float *y) {
  for (int64_t j = 0; j < N; j++) {
    const float *bj = b + j * ldb;
    float s[8] = {0}; /* eight partial sums: vectorisable, fixed order */
    int64_t k = 0;
    for (; k + 8 <= K; k += 8)
      for (int q = 0; q < 8; q++) s[q] += a[k + q] * bj[k + q];
    float r = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; k < K; k++) r += a[k] * bj[k];
    y[j] = alpha * r + (beta == 0.0f ? 0.0f : beta * y[j]);
  }
}

void mlcrt__dots_by_rows(const mlcrt__gemm_isa *k, int64_t M, int64_t N, int64_t K, float alpha,
                         const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                         float *C, int64_t ldc) {
  for (int64_t i = 0; i < M; i++) k->gemv(N, K, alpha, A + i * lda, B, ldb, beta, C + i * ldc);
}

static void dots_generic(int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                         const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
  mlcrt__dots_by_rows(&mlcrt__gemm_generic, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

const mlcrt__gemm_isa mlcrt__gemm_generic = {
    "generic", G_MR, G_NR, 256, 64, 512, kernel_generic, gemv_generic, dots_generic, NULL};

/* ---- instruction set ------------------------------------------------------------ */

int mlcrt_cpu_isa(void) {
  int best = MLCRT_ISA_GENERIC;
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = MLCRT_ISA_AVX2;
  if (__builtin_cpu_supports("avx512f")) best = MLCRT_ISA_AVX512;
#endif
  /* MLCRT_ISA=generic|avx2|avx512 asks for a lesser one (tests, comparisons) */
  const char *want = getenv("MLCRT_ISA");
  if (want) {
    int w = !strcmp(want, "generic")  ? MLCRT_ISA_GENERIC
            : !strcmp(want, "avx2")   ? MLCRT_ISA_AVX2
            : !strcmp(want, "avx512") ? MLCRT_ISA_AVX512
                                      : best;
    if (w < best) best = w;
  }
  return best;
}

const char *mlcrt_isa_name(int isa) {
  return mlcrt__gemm_for(isa)->name;
}

const mlcrt__gemm_isa *mlcrt__gemm_for(int isa) {
#if defined(__x86_64__)
  if (isa == MLCRT_ISA_AVX512) return &mlcrt__gemm_avx512;
  if (isa == MLCRT_ISA_AVX2) return &mlcrt__gemm_avx2;
#endif
  (void)isa;
  return &mlcrt__gemm_generic;
}

/* ---- the blocked driver --------------------------------------------------------- */

typedef struct {
  const mlcrt__gemm_isa *k;
  int trans_a, trans_b;
  int64_t M, N, K;
  float alpha, beta;
  const float *A, *B;
  int64_t lda, ldb, ldc;
  float *C;
  mlcrt_team *team;
  int split_n;               /* slices are column ranges (else row ranges) */
  int64_t step;              /* slice width, a multiple of the tile */
  const mlcrt_epilogue *epi; /* on each finished block of C, or NULL */
  const mlcrt__bpacker *bp;  /* packs B (B is NULL), or NULL */
  const float *apacked;      /* A packed by mlcrt__gemm_pack_a, or NULL */
  const float *bpacked;      /* op(B) packed by pack_b_whole, or NULL */
} gemm_job;

#define STACK_WS_FLOATS (48 * 1024)

/* alpha * op(A)[ii:ii+mi, pc:pc+kc] as one panel of MR rows, k-major, rows
 * past mi zero */
static void pack_a_panel(const mlcrt__gemm_isa *k, const float *A, int64_t a_si, int64_t a_sk,
                         float alpha, int64_t ii, int64_t mi, int64_t pc, int64_t kc, float *dst) {
  const int MR = k->mr;
  if (a_sk == 1 && alpha == 1.0f && k->pack_t) { /* rows of A: a transpose */
    k->pack_t(A + ii * a_si + pc, a_si, kc, mi, MR, dst);
    return;
  } else if (a_sk == 1) {
    for (int64_t r = 0; r < mi; r++) {
      const float *src = A + (ii + r) * a_si + pc;
      for (int64_t kk = 0; kk < kc; kk++) dst[kk * MR + r] = alpha * src[kk];
    }
  } else {
    for (int64_t kk = 0; kk < kc; kk++) {
      const float *src = A + ii + (pc + kk) * a_sk;
      for (int64_t r = 0; r < mi; r++) dst[kk * MR + r] = alpha * src[r];
    }
  }
  for (int64_t r = mi; r < MR; r++)
    for (int64_t kk = 0; kk < kc; kk++) dst[kk * MR + r] = 0.0f;
}

/* M rounded up to whole panels of MR rows */
static int64_t apack_rows(const mlcrt__gemm_isa *k, int64_t M) {
  return (M + k->mr - 1) / k->mr * k->mr;
}

size_t mlcrt__apack_floats(int64_t M, int64_t K) {
  return (size_t)((M + 15) * K); /* every ISA's MR is at most 16 */
}

/* A whole, once: for each KC block of k (in order), its panels of MR rows,
 * exactly as gemm_block packs them one block at a time, so the panel of rows
 * ii.. of block pc is at pc * apack_rows + ii * kc. */
void mlcrt__gemm_pack_a(int isa, int64_t M, int64_t K, const float *A, int64_t lda, float *dst) {
  const mlcrt__gemm_isa *k = mlcrt__gemm_for(isa);
  const int64_t Mp = apack_rows(k, M);
  for (int64_t pc = 0; pc < K; pc += k->kc) {
    const int64_t kc = K - pc < k->kc ? K - pc : k->kc;
    for (int64_t ii = 0; ii < M; ii += k->mr)
      pack_a_panel(k, A, lda, 1, 1.0f, ii, M - ii < k->mr ? M - ii : k->mr, pc, kc,
                   dst + pc * Mp + ii * kc);
  }
}

/* op(B)[pc:pc+kc, jj:jj+nj] as one panel of NR columns, k-major, columns
 * past nj zero */
static void pack_b_panel(const mlcrt__gemm_isa *k, const float *B, int64_t b_sk, int64_t b_sj,
                         int64_t pc, int64_t kc, int64_t jj, int64_t nj, float *dst) {
  const int NR = k->nr;
  if (b_sj == 1) {
    for (int64_t kk = 0; kk < kc; kk++) {
      const float *src = B + (pc + kk) * b_sk + jj;
      float *d = dst + kk * NR;
      memcpy(d, src, (size_t)nj * sizeof *d);
      for (int64_t j = nj; j < NR; j++) d[j] = 0.0f;
    }
  } else if (k->pack_t) { /* op(B) = B^T: column j of op(B) is row j of B */
    k->pack_t(B + jj * b_sj + pc, b_sj, kc, nj, NR, dst);
  } else { /* op(B) = B^T: column j of op(B) is row j of B, contiguous in k */
    for (int64_t j = 0; j < nj; j++) {
      const float *src = B + (jj + j) * b_sj + pc;
      for (int64_t kk = 0; kk < kc; kk++) dst[kk * NR + j] = src[kk];
    }
    for (int64_t j = nj; j < NR; j++)
      for (int64_t kk = 0; kk < kc; kk++) dst[kk * NR + j] = 0.0f;
  }
}

/* N rounded up to whole panels of NR columns */
static int64_t bpack_cols(const mlcrt__gemm_isa *k, int64_t N) {
  return (N + k->nr - 1) / k->nr * k->nr;
}

/* op(B) [K, N] whole, once: for each KC block of k (in order), its panels of
 * NR columns, exactly as gemm_block packs them, so the panel of columns jj..
 * of block pc is at pc * bpack_cols + jj * kc. */
static void pack_b_whole(const mlcrt__gemm_isa *k, const float *B, int64_t b_sk, int64_t b_sj,
                         int64_t K, int64_t N, float *dst) {
  const int64_t Np = bpack_cols(k, N);
  for (int64_t pc = 0; pc < K; pc += k->kc) {
    const int64_t kc = K - pc < k->kc ? K - pc : k->kc;
    for (int64_t jj = 0; jj < N; jj += k->nr)
      pack_b_panel(k, B, b_sk, b_sj, pc, kc, jj, N - jj < k->nr ? N - jj : k->nr,
                   dst + pc * Np + jj * kc);
  }
}

/* C[i0:i1, j0:j1] of the job, on one thread with workspace ws (wsn floats). */
static void gemm_block(const gemm_job *g, int64_t i0, int64_t i1, int64_t j0, int64_t j1, float *ws,
                       size_t wsn) {
  const mlcrt__gemm_isa *k = g->k;
  const int MR = k->mr, NR = k->nr, KC = k->kc, MC = k->mc;
  /* the B panel gets whatever the A block leaves of the workspace */
  int64_t NC = ((int64_t)wsn - (int64_t)MC * KC - 16) / KC / NR * NR; /* 16: a packer's slack */
  if (NC > k->nc) NC = k->nc;
  if (NC < NR) NC = NR;
  float *apack = ws, *bpack = ws + (size_t)MC * KC;
  const int64_t a_si = g->trans_a ? 1 : g->lda, a_sk = g->trans_a ? g->lda : 1;
  const int64_t b_sk = g->trans_b ? 1 : g->ldb, b_sj = g->trans_b ? g->ldb : 1;
  const float *A = g->A, *B = g->B;

  for (int64_t jc = j0; jc < j1; jc += NC) {
    const int64_t nc = j1 - jc < NC ? j1 - jc : NC;
    const int64_t npanels = (nc + NR - 1) / NR;
    for (int64_t pc = 0; pc < g->K; pc += KC) {
      const int64_t kc = g->K - pc < KC ? g->K - pc : KC;
      const float beta = pc == 0 ? g->beta : 1.0f;
      /* One panel of A rows (small M) gains nothing from packing B, which
       * it reads once: the kernel then reads row-major B in place, all but a
       * ragged last panel. */
      const int direct = i1 - i0 <= MR && b_sj == 1 && !g->bp;
      /* pack op(B)[pc:pc+kc, jc:jc+nc] into panels of NR columns */
      for (int64_t p = 0; p < npanels; p++) {
        float *dst = bpack + p * kc * NR;
        const int64_t jj = jc + p * NR, nj = j1 - jj < NR ? j1 - jj : NR;
        if ((direct && nj == NR) || g->bpacked) continue;
        if (g->bp)
          g->bp->fn(g->bp->ctx, pc, kc, jj, nj, NR, dst);
        else
          pack_b_panel(k, B, b_sk, b_sj, pc, kc, jj, nj, dst);
      }
      /* or find them packed already (pack_b_whole's layout) */
      const float *bblock = g->bpacked ? g->bpacked + pc * bpack_cols(k, g->N) + jc * kc : bpack;
      for (int64_t ic = i0; ic < i1; ic += MC) {
        const int64_t mc = i1 - ic < MC ? i1 - ic : MC;
        const int64_t mpanels = (mc + MR - 1) / MR;
        /* pack alpha * op(A)[ic:ic+mc, pc:pc+kc] into panels of MR rows,
         * or find them packed already (mlcrt__gemm_pack_a's layout) */
        const float *ablock = g->apacked ? g->apacked + pc * apack_rows(k, g->M) + ic * kc : apack;
        for (int64_t p = 0; p < mpanels && !g->apacked; p++) {
          const int64_t ii = ic + p * MR, mi = i1 - ii < MR ? i1 - ii : MR;
          pack_a_panel(k, A, a_si, a_sk, g->alpha, ii, mi, pc, kc, apack + p * kc * MR);
        }
        for (int64_t p = 0; p < npanels; p++) {
          const int64_t jj = jc + p * NR, nj = j1 - jj < NR ? j1 - jj : NR;
          for (int64_t q = 0; q < mpanels; q++) {
            const int64_t ii = ic + q * MR, mi = i1 - ii < MR ? i1 - ii : MR;
            const int in_place = direct && nj == NR;
            k->kernel(kc, ablock + q * kc * MR,
                      in_place ? B + pc * b_sk + jj : bblock + p * kc * NR, in_place ? b_sk : NR,
                      g->C + ii * g->ldc + jj, g->ldc, (int)mi, (int)nj, beta);
          }
        }
        if (g->epi && pc + kc >= g->K) /* the block is final and still in cache */
          g->epi->fn(g->epi->ctx, ic, ic + mc, jc, jc + nc);
      }
    }
  }
}

/* Task's slice [*lo, *hi) of the split dim; false when it is empty. */
static int slice(const gemm_job *g, int task, int64_t *lo, int64_t *hi) {
  const int64_t total = g->split_n ? g->N : g->M;
  *lo = (int64_t)task * g->step;
  *hi = *lo + g->step < total ? *lo + g->step : total;
  return *lo < *hi;
}

static void gemm_task(void *arg, int task, int ntasks) {
  const gemm_job *g = arg;
  (void)ntasks;
  int64_t lo, hi;
  if (!slice(g, task, &lo, &hi)) return;
  float *ws = mlcrt_team_workspace(g->team, task);
  if (g->split_n)
    gemm_block(g, 0, g->M, lo, hi, ws, MLCRT_TEAM_WS_FLOATS);
  else
    gemm_block(g, lo, hi, 0, g->N, ws, MLCRT_TEAM_WS_FLOATS);
}

/* the unpacked paths: C = A B^T by dot products (split over N), or the one
 * column of C is A times B's contiguous column (split over A's rows) */
static void gemv_task(void *arg, int task, int ntasks) {
  const gemm_job *g = arg;
  (void)ntasks;
  int64_t lo, hi;
  if (!slice(g, task, &lo, &hi)) return;
  if (!g->split_n) {
    g->k->gemv(hi - lo, g->K, g->alpha, g->B, g->A + lo * g->lda, g->lda, g->beta, g->C + lo);
    if (g->epi) g->epi->fn(g->epi->ctx, lo, hi, 0, 1);
    return;
  }
  if (g->M <= 2) /* one or two rows: each streams B once */
    mlcrt__dots_by_rows(g->k, g->M, hi - lo, g->K, g->alpha, g->A, g->lda, g->B + lo * g->ldb,
                        g->ldb, g->beta, g->C + lo, g->ldc);
  else
    g->k->dots(g->M, hi - lo, g->K, g->alpha, g->A, g->lda, g->B + lo * g->ldb, g->ldb, g->beta,
               g->C + lo, g->ldc);
  if (g->epi) g->epi->fn(g->epi->ctx, 0, g->M, lo, hi);
}

/* Threads pay off above about this many multiply-adds (~20 us on one core). */
#define MT_MIN_MACS (1 << 21)

/* The packed path on `use` members of g->team (or the stack without one). */
static void gemm_packed(gemm_job *g, int use) {
  if (!g->team) { /* one thread, packing panels on the stack */
    _Alignas(64) float ws[STACK_WS_FLOATS];
    gemm_block(g, 0, g->M, 0, g->N, ws, STACK_WS_FLOATS);
    return;
  }
  /* slice along N when it is at least as wide as M is tall, else along M */
  g->split_n = g->N >= g->M || g->M < (int64_t)use * g->k->mr;
  const int64_t total = g->split_n ? g->N : g->M, tile = g->split_n ? g->k->nr : g->k->mr;
  int64_t step = (total + use - 1) / use;
  step = (step + tile - 1) / tile * tile;
  g->step = step;
  mlcrt_team_run(use > 1 ? g->team : NULL, (int)((total + step - 1) / step), gemm_task, g);
}

void mlcrt_sgemm_team(mlcrt_team *team, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                      float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                      float beta, float *C, int64_t ldc) {
  mlcrt_sgemm_epi(team, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, NULL);
}

void mlcrt_sgemm_epi(mlcrt_team *team, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                     float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                     float beta, float *C, int64_t ldc, const mlcrt_epilogue *epi) {
  mlcrt__sgemm_isa(team, -1, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, epi);
}

/* the kernels of instruction set isa, or (isa < 0) the team's (no team: the
 * CPU's) */
static const mlcrt__gemm_isa *kernels(const mlcrt_team *team, int isa) {
  return mlcrt__gemm_for(isa >= 0 ? isa : mlcrt_team_isa(team));
}

/* bpacked: op(B) packed whole for these kernels (pack_b_whole), or NULL; B
 * is still given, for the paths that read it in place. */
static void sgemm(mlcrt_team *team, int isa, int trans_a, int trans_b, int64_t M, int64_t N,
                  int64_t K, float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                  const float *bpacked, float beta, float *C, int64_t ldc,
                  const mlcrt_epilogue *epi) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.0f) { /* C = beta * C */
    for (int64_t i = 0; i < M; i++) {
      float *c = C + i * ldc;
      if (beta == 0.0f)
        memset(c, 0, (size_t)N * sizeof *c);
      else if (beta != 1.0f)
        for (int64_t j = 0; j < N; j++) c[j] *= beta;
    }
    if (epi) epi->fn(epi->ctx, 0, M, 0, N);
    return;
  }
  gemm_job g = {kernels(team, isa),
                trans_a,
                trans_b,
                M,
                N,
                K,
                alpha,
                beta,
                A,
                B,
                lda,
                ldb,
                ldc,
                C,
                team,
                1,
                0,
                epi,
                NULL,
                NULL,
                bpacked};
  const int nt = mlcrt_team_size(team);
  const double macs = (double)M * (double)N * (double)K;
  int use = macs < MT_MIN_MACS ? 1 : nt;

  /* a row or two times a row-major weight matrix (linear at batch 1), a few
   * long rows times long rows (a weight gradient over many positions), or a
   * matrix times one contiguous column (a convolution with one output
   * position): packing would cost more than the arithmetic */
  const int rows = !trans_a && trans_b && (M <= 2 || (M <= 8 && K >= 128 && K >= N));
  const int column = N == 1 && !trans_a && ldc == 1 && (trans_b || ldb == 1);
  if (rows || column) {
    /* streaming a big matrix is memory-bound: two cores' caches and load
     * ports pay off sooner than for packed GEMM */
    if (use == 1 && (double)(rows ? N : M) * (double)K >= 65536) use = nt;
    const int64_t total = rows ? N : M;
    int64_t chunk = (total + use - 1) / use;
    chunk = (chunk + 15) / 16 * 16;
    g.step = chunk;
    g.split_n = rows;
    mlcrt_team_run(use > 1 ? team : NULL, (int)((total + chunk - 1) / chunk), gemv_task, &g);
    return;
  }
  gemm_packed(&g, use);
}

void mlcrt__sgemm_isa(mlcrt_team *team, int isa, int trans_a, int trans_b, int64_t M, int64_t N,
                      int64_t K, float alpha, const float *A, int64_t lda, const float *B,
                      int64_t ldb, float beta, float *C, int64_t ldc, const mlcrt_epilogue *epi) {
  sgemm(team, isa, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, NULL, beta, C, ldc, epi);
}

int mlcrt__packb_packs(int64_t N, int64_t K) {
  return !(N <= 4 && N * K <= 16384);
}

void mlcrt__sgemm_packb(mlcrt_team *team, int isa, int64_t M, int64_t N, int64_t K, const float *A,
                        int64_t lda, const float *apacked, const mlcrt__bpacker *bp, float beta,
                        float *C, int64_t ldc, const mlcrt_epilogue *epi) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    mlcrt__sgemm_isa(team, isa, 0, 0, M, N, 0, 1.0f, A, lda, NULL, N, beta, C, ldc, epi);
    return;
  }
  float b[16384 + 16]; /* + the packer's slack */
  const int stored = !mlcrt__packb_packs(N, K);
  if (stored) { /* a column or a few: B stored, then the unpacked paths */
    bp->fn(bp->ctx, 0, K, 0, N, (int)N, b);
    if (!apacked || N == 1) {
      mlcrt__sgemm_isa(team, isa, 0, 0, M, N, K, 1.0f, A, lda, b, N, beta, C, ldc, epi);
      return;
    }
  } /* (or, with A packed already, the packed path on the stored B: the same bits) */
  gemm_job g = {kernels(team, isa),
                0,
                0,
                M,
                N,
                K,
                1.0f,
                beta,
                A,
                stored ? b : NULL,
                lda,
                stored ? N : 0,
                ldc,
                C,
                team,
                1,
                0,
                epi,
                stored ? NULL : bp,
                apacked,
                NULL};
  gemm_packed(&g, (double)M * (double)N * (double)K < MT_MIN_MACS ? 1 : mlcrt_team_size(team));
}

void mlcrt_sgemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                 const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                 int64_t ldc) {
  mlcrt_sgemm_team(NULL, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* ---- matmul ------------------------------------------------------------------- */

void mlcrt_matmul_f32(mlcrt_team *team, const float *a, int ra, const int64_t *ashape,
                      const float *b, int rb, const int64_t *bshape, float *y, int yr,
                      const int64_t *yshape) {
  mlcrt_matmul_epi_f32(team, a, ra, ashape, b, rb, bshape, y, yr, yshape, NULL);
}

void mlcrt__shifted_tile(void *ctx, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
  const mlcrt__shifted_epi *s = ctx;
  s->inner->fn(s->inner->ctx, s->off + r0, s->off + r1, c0, c1);
}

void mlcrt_matmul_epi_f32(mlcrt_team *team, const float *a, int ra, const int64_t *ashape,
                          const float *b, int rb, const int64_t *bshape, float *y, int yr,
                          const int64_t *yshape, const mlcrt_epilogue *epi) {
  /* torch.matmul: a 1-D a is [1, K] and a 1-D b is [K, 1], with that dim
   * dropped from the result; leading dims broadcast NumPy-style. */
  const int64_t K = ashape[ra - 1];
  const int64_t M = ra >= 2 ? ashape[ra - 2] : 1;
  const int64_t N = rb >= 2 ? bshape[rb - 1] : 1;
  const int abr = ra > 2 ? ra - 2 : 0, bbr = rb > 2 ? rb - 2 : 0;
  int ybr = yr - (ra >= 2) - (rb >= 2); /* batch rank of the result */
  if (ybr < 0) ybr = 0;
  if (ybr > MLCRT_MAX_RANK || ra > MLCRT_MAX_RANK + 2 || rb > MLCRT_MAX_RANK + 2)
    return; /* the compiler never emits these ranks; refuse rather than overrun */
  const int64_t lda = K, ldb = rb >= 2 ? N : 1, ldc = N;

  /* Batch dims of the result, and element strides of a's and b's matrices
   * along them (0 where that operand broadcasts). */
  int64_t bdims[MLCRT_MAX_RANK], as[MLCRT_MAX_RANK], bs[MLCRT_MAX_RANK];
  int64_t astep = M * K, bstep = K * N, nbatch = 1;
  int a_full = 1, b_bcast = 1; /* a covers every batch index; b is one matrix */
  for (int d = ybr - 1; d >= 0; d--) {
    const int da = d - (ybr - abr), db = d - (ybr - bbr); /* right-aligned */
    bdims[d] = yshape[d];
    nbatch *= yshape[d];
    as[d] = (da >= 0 && ashape[da] != 1) ? astep : 0;
    bs[d] = (db >= 0 && bshape[db] != 1) ? bstep : 0;
    if (da >= 0) astep *= ashape[da];
    if (db >= 0) bstep *= bshape[db];
    if (yshape[d] != 1 && as[d] == 0) a_full = 0;
    if (yshape[d] != 1 && bs[d] != 0) b_bcast = 0;
  }
  if (nbatch == 0 || M == 0 || N == 0) return;

  /* Common case x[..., M, K] @ w[K, N]: one GEMM over all rows of a. */
  if (b_bcast && a_full && ra >= 2) {
    mlcrt_sgemm_epi(team, 0, 0, nbatch * M, N, K, 1.0f, a, lda, b, ldb, 0.0f, y, ldc, epi);
    return;
  }
  mlcrt__shifted_epi sh = {epi, 0}; /* each batch's GEMM: its rows start at sh.off */
  const mlcrt_epilogue batch_epi = {mlcrt__shifted_tile, &sh};
  int64_t idx[MLCRT_MAX_RANK] = {0};
  int64_t aoff = 0, boff = 0;
  for (int64_t t = 0; t < nbatch; t++) {
    sh.off = t * M;
    mlcrt_sgemm_epi(team, 0, 0, M, N, K, 1.0f, a + aoff, lda, b + boff, ldb, 0.0f, y + t * M * N,
                    ldc, epi ? &batch_epi : NULL);
    /* Odometer increment of the batch index. */
    for (int d = ybr - 1; d >= 0; d--) {
      aoff += as[d];
      boff += bs[d];
      if (++idx[d] < bdims[d]) break;
      aoff -= as[d] * bdims[d];
      boff -= bs[d] * bdims[d];
      idx[d] = 0;
    }
  }
}

void mlcrt_linear_f32(mlcrt_team *team, const float *x, int64_t M, int64_t K, const float *w,
                      int64_t N, const float *b, float *y) {
  mlcrt_linear_epi_f32(team, x, M, K, w, N, b, y, NULL);
}

void mlcrt_linear_epi_f32(mlcrt_team *team, const float *x, int64_t M, int64_t K, const float *w,
                          int64_t N, const float *b, float *y, const mlcrt_epilogue *epi) {
  mlcrt_linear_packed_epi_f32(team, x, M, K, w, NULL, N, b, y, epi);
}

size_t mlcrt_linear_pack_floats(const mlcrt_team *team, int64_t N, int64_t K) {
  return (size_t)(bpack_cols(kernels(team, -1), N) * K);
}

void mlcrt_linear_pack_f32(const mlcrt_team *team, const float *w, int64_t N, int64_t K,
                           float *wp) {
  pack_b_whole(kernels(team, -1), w, 1, K, K, N, wp);
}

void mlcrt_linear_packed_epi_f32(mlcrt_team *team, const float *x, int64_t M, int64_t K,
                                 const float *w, const float *wp, int64_t N, const float *b,
                                 float *y, const mlcrt_epilogue *epi) {
  if (M <= 0 || N <= 0) return;
  if (b) {
    for (int64_t i = 0; i < M; i++) memcpy(y + i * N, b, (size_t)N * sizeof *y);
    sgemm(team, -1, 0, 1, M, N, K, 1.0f, x, K, w, K, wp, 1.0f, y, N, epi);
  } else {
    sgemm(team, -1, 0, 1, M, N, K, 1.0f, x, K, w, K, wp, 0.0f, y, N, epi);
  }
}
