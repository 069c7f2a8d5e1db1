/* bench/gemm.c — mlc's GEMM (libmlcrt) against OpenBLAS cblas_sgemm, side by
 * side in one run: square and skinny shapes, 1 and 2 threads, the median of
 * 9 samples each, the two sides' samples alternating.  Prints GFLOP/s and the ratio mlc/OpenBLAS
 * (above 1: mlc is faster).  Built and run by bench/gemm. */
#define _GNU_SOURCE
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mlcrt.h"

void openblas_set_num_threads(int);

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Median seconds of one call of f and of g, timed in alternating samples of
 * ~20 ms each, so that both see the same machine load (this machine is
 * shared: load comes and goes). */
typedef void (*fn_t)(void *ctx);
static void median_times(fn_t f, fn_t g, void *ctx, double *tf, double *tg) {
  f(ctx), g(ctx); /* warm */
  double t0 = now();
  int reps = 0;
  do f(ctx), reps++;
  while (now() - t0 < 0.02);
  const int inner = (int)(0.02 / ((now() - t0) / reps)) + 1;
  double sf[9], sg[9];
  for (int i = 0; i < 9; i++) {
    t0 = now();
    for (int r = 0; r < inner; r++) f(ctx);
    sf[i] = (now() - t0) / inner;
    t0 = now();
    for (int r = 0; r < inner; r++) g(ctx);
    sg[i] = (now() - t0) / inner;
  }
  qsort(sf, 9, sizeof *sf, cmp);
  qsort(sg, 9, sizeof *sg, cmp);
  *tf = sf[4], *tg = sg[4];
}

typedef struct {
  int ta, tb;
  int M, N, K;
  float *A, *B, *C;
  mlcrt_team *team;
} job;

static void run_mlc(void *p) {
  job *j = p;
  mlcrt_sgemm_team(j->team, j->ta, j->tb, j->M, j->N, j->K, 1.0f, j->A, j->ta ? j->M : j->K, j->B, j->tb ? j->K : j->N,
                   0.0f, j->C, j->N);
}
static void run_blas(void *p) {
  job *j = p;
  cblas_sgemm(CblasRowMajor, j->ta ? CblasTrans : CblasNoTrans, j->tb ? CblasTrans : CblasNoTrans, j->M, j->N, j->K,
              1.0f, j->A, j->ta ? j->M : j->K, j->B, j->tb ? j->K : j->N, 0.0f, j->C, j->N);
}

int main(int argc, char **argv) {
  int quick = argc > 1 && !strcmp(argv[1], "--quick");
  static const int shapes[][5] = {
      /* M, N, K, ta, tb */
      {64, 64, 64, 0, 0},     {128, 128, 128, 0, 0},  {256, 256, 256, 0, 0},   {512, 512, 512, 0, 0},
      {1024, 1024, 1024, 0, 0}, {2048, 2048, 2048, 0, 0},
      {256, 256, 256, 0, 1},  {1024, 1024, 1024, 0, 1}, {1024, 1024, 1024, 1, 0},
      /* skinny: linear layers (x[B, K] w[N, K]^T) and their weight gradients */
      {64, 256, 784, 0, 1},   {256, 256, 784, 0, 1},  {256, 3072, 768, 0, 1},  {1, 1024, 1024, 0, 1},
      {256, 784, 256, 1, 0},  {2048, 64, 2048, 0, 0}, {64, 2048, 2048, 0, 0},
  };
  const int nshapes = quick ? 6 : (int)(sizeof shapes / sizeof shapes[0]);
  int isa = mlcrt_cpu_isa();
  const char *timeout = getenv("OPENBLAS_THREAD_TIMEOUT");
  printf("mlc GEMM (%s kernels) vs OpenBLAS cblas_sgemm (OPENBLAS_THREAD_TIMEOUT=%s); GFLOP/s, median of 9 alternating "
         "samples\n",
         mlcrt_isa_name(isa), timeout ? timeout : "unset");
  printf("%5s %5s %5s %3s %3s | %7s %9s %6s | %7s %9s %6s\n", "M", "N", "K", "tA", "tB", "mlc1", "openblas1", "ratio",
         "mlc2", "openblas2", "ratio");
  for (int s = 0; s < nshapes; s++) {
    job j = {shapes[s][3], shapes[s][4], shapes[s][0], shapes[s][1], shapes[s][2], 0, 0, 0, 0};
    size_t na = (size_t)j.M * j.K, nb = (size_t)j.K * j.N, nc = (size_t)j.M * j.N;
    j.A = aligned_alloc(64, (na * 4 + 63) / 64 * 64);
    j.B = aligned_alloc(64, (nb * 4 + 63) / 64 * 64);
    j.C = aligned_alloc(64, (nc * 4 + 63) / 64 * 64);
    for (size_t i = 0; i < na; i++) j.A[i] = (float)((i * 7 + 3) % 13) / 13.0f - 0.5f;
    for (size_t i = 0; i < nb; i++) j.B[i] = (float)((i * 5 + 1) % 11) / 11.0f - 0.5f;
    double flops = 2.0 * j.M * j.N * j.K;
    printf("%5d %5d %5d %3d %3d |", j.M, j.N, j.K, j.ta, j.tb);
    for (int t = 1; t <= 2; t++) {
      j.team = mlcrt_team_create(t, isa);
      openblas_set_num_threads(t);
      double tm, tb;
      median_times(run_mlc, run_blas, &j, &tm, &tb);
      printf(" %7.1f %9.1f %6.2f%s", flops / tm * 1e-9, flops / tb * 1e-9, tb / tm, t == 1 ? " |" : "\n");
      fflush(stdout);
      mlcrt_team_destroy(j.team);
    }
    free(j.A);
    free(j.B);
    free(j.C);
  }
  return 0;
}
