/* tests/cuda/jit_start.c — the CUDA JIT's start time: how long a program
 * that gets its model at run time waits before the first result.
 *
 *   mlc_jit_start MODEL.mdl [DIM=VALUE ...]
 *
 * Times mlc_model_from_file with MLCRT_CUDA (parse, plan, launch program,
 * PTX from NVRTC or the cache, module load, cuBLAS), mlc_create (the device
 * allocation) and a first mlc_run on zero inputs at the given symbolic dims
 * (default 1 each), and prints them as "NAME SECONDS" lines.  Whether the
 * start is cold or warm is the cache's business ($MLC_CACHE_DIR): bench/
 * gpu_bench.py runs it on an empty cache, then again.  The driver's own
 * start (cuInit, the primary context, held to the end so that the model's
 * own open is cheap) is timed apart, as driver_init.
 */
#include "mlcc.h" /* jitcu_open */
#include <mlc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: mlc_jit_start MODEL.mdl [DIM=VALUE ...]\n");
    return 2;
  }
  mlc_options o = {.device = MLCRT_CUDA};
  char *diag = NULL;
  mlc_model *mm = NULL;
  /* the driver's start, once per process */
  char err[MLCRT_ERRLEN];
  double t0 = now();
  JitCuda *cu = jitcu_open(0, err);
  if (!cu) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  double t1 = now();
  if (mlc_model_from_file(argv[1], &o, &mm, &diag)) {
    fprintf(stderr, "%s", diag ? diag : "out of memory\n");
    return 1;
  }
  double t2 = now();
  mlc_free(diag);
  int nd = mlc_num_dims(mm);
  int64_t dims[16];
  for (int k = 0; k < nd && k < 16; k++) {
    dims[k] = 1;
    for (int i = 2; i < argc; i++) {
      const char *eq = strchr(argv[i], '=');
      if (eq && strlen(mlc_dim_name(mm, k)) == (size_t)(eq - argv[i]) &&
          !strncmp(argv[i], mlc_dim_name(mm, k), (size_t)(eq - argv[i])))
        dims[k] = strtoll(eq + 1, NULL, 10);
    }
  }
  mlc_instance *m = mlc_create(mm, dims, NULL);
  if (!m) {
    fprintf(stderr, "mlc_create: %s\n", mlc_last_error(NULL));
    return 1;
  }
  double t3 = now();
  int nin = mlc_count(mm, MLC_INPUT), nout = mlc_count(mm, MLC_OUTPUT);
  const void *in[64];
  void *out[64];
  int64_t shape[16];
  for (int i = 0; i < nin && i < 64; i++) {
    mlc_tensor_info t;
    mlc_tensor(mm, MLC_INPUT, i, &t);
    in[i] = calloc((size_t)mlc_shape(mm, MLC_INPUT, i, dims, shape) + 1, 8);
  }
  for (int i = 0; i < nout && i < 64; i++)
    out[i] = calloc((size_t)mlc_shape(mm, MLC_OUTPUT, i, dims, shape) + 1, 8);
  double t4 = now();
  int rc = mlc_run(m, dims, in, out);
  double t5 = now();
  if (rc) fprintf(stderr, "mlc_run: %s\n", mlc_last_error(m));
  printf("driver_init %.6f\nmodel_from_file %.6f\ncreate %.6f\nfirst_run %.6f\n", t1 - t0, t2 - t1,
         t3 - t2, t5 - t4);
  for (int i = 0; i < nin && i < 64; i++) free((void *)in[i]);
  for (int i = 0; i < nout && i < 64; i++) free(out[i]);
  mlc_destroy(m);
  mlc_model_free(mm);
  jitcu_close(cu);
  return rc ? 1 : 0;
}
