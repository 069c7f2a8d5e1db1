/* tests/unit/test_jit_cuda.c — the CUDA JIT plumbing (compiler/jit_cuda.c):
 * NVRTC and the CUDA driver opened at run time (cmocka).
 *
 * Without a GPU (CI): small kernels (one with an in-memory header) compile
 * to PTX for the asked architecture; a broken kernel gives NVRTC's log as the
 * error; the PTX cache is hit the second time and a damaged entry is
 * compiled again; the device code of every example and conformance model
 * (the CUDA emitter's .cu, up to #ifndef __CUDACC_RTC__) compiles to PTX;
 * and asking for the driver where there is none, or where it finds no GPU (a
 * stub libcuda built here), gives a clear "no CUDA driver" / "no CUDA
 * device" error, through mlc.h too.  With a GPU: a kernel is loaded with
 * cuModuleLoadData and launched with cuLaunchKernel, and its result checked.
 *
 * Exit 77 (skipped) only when mlc was built without a CUDA toolkit and no
 * NVRTC can be found.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "mlc.h"
#include "mlcc.h"

static char cache[256];

static int setup(void **state) {
  (void)state;
  snprintf(cache, sizeof cache, "/tmp/test_jit_cuda.XXXXXX");
  if (!mkdtemp(cache)) return -1;
  setenv("MLC_CACHE_DIR", cache, 1);
  unsetenv("MLC_LIBCUDA");
  return 0;
}

static int teardown(void **state) {
  (void)state;
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", cache);
  unsetenv("MLC_LIBCUDA");
  return system(cmd);
}

static const char *SAXPY =
    "#include \"scale.cuh\"\n"
    "extern \"C\" __global__ void saxpy(float a, const float *x, float *y, long long n) {\n"
    "  long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n"
    "  if (i < n) y[i] = scale(a) * x[i] + y[i];\n"
    "}\n"
    "extern \"C\" __global__ void fill(float *y, float v, long long n) {\n"
    "  for (long long i = threadIdx.x; i < n; i += blockDim.x) y[i] = v;\n"
    "}\n";
static const JitCuHeader SCALE = {"scale.cuh",
                                  "__device__ inline float scale(float a) { return 2.0f * a; }\n"};

static void test_ptx(void **state) {
  (void)state;
  Arena *A = arena_new();
  char err[MLCRT_ERRLEN];
  bool cached = true;
  const char *opts[] = {"--std=c++17"};
  char *ptx = jitcu_ptx(A, "saxpy.cu", SAXPY, &SCALE, 1, opts, 1, NULL, 0, NULL, 80, &cached, err);
  if (!ptx) fprintf(stderr, "%s\n", err);
  assert_non_null(ptx);
  assert_false(cached);
  assert_non_null(strstr(ptx, ".entry saxpy"));
  assert_non_null(strstr(ptx, ".entry fill"));
  assert_non_null(strstr(ptx, ".target sm_80"));
  /* static and template kernels are kept by name, and found again in the cache */
  const char *src2 =
      "static __global__ void twice(float *y) { y[threadIdx.x] *= 2.0f; }\n"
      "template <typename F> __global__ void add(F *y, F v) { y[threadIdx.x] += v; }\n";
  const char *names[] = {"twice", "add<float>"}, *low[2] = {0}, *low2[2] = {0};
  char *ptx2 = jitcu_ptx(A, "two.cu", src2, NULL, 0, NULL, 0, names, 2, low, 80, &cached, err);
  assert_non_null(ptx2);
  assert_false(cached);
  for (int i = 0; i < 2; i++) assert_non_null(strstr(ptx2, arena_printf(A, ".entry %s(", low[i])));
  assert_non_null(jitcu_ptx(A, "two.cu", src2, NULL, 0, NULL, 0, names, 2, low2, 80, &cached, err));
  assert_true(cached);
  assert_string_equal(low[0], low2[0]);
  assert_string_equal(low[1], low2[1]);
  const char *bad[] = {"nosuch"};
  assert_null(jitcu_ptx(A, "two.cu", src2, NULL, 0, NULL, 0, bad, 1, low, 80, &cached, err));
  assert_non_null(strstr(err, "nosuch"));
  /* another architecture is another PTX */
  char *ptx90 =
      jitcu_ptx(A, "saxpy.cu", SAXPY, &SCALE, 1, opts, 1, NULL, 0, NULL, 90, &cached, err);
  assert_non_null(ptx90);
  assert_non_null(strstr(ptx90, ".target sm_90"));
  arena_free(A);
}

static void test_broken(void **state) {
  (void)state;
  Arena *A = arena_new();
  char err[MLCRT_ERRLEN];
  const char *src = "extern \"C\" __global__ void k(float *y) {\n  y[0] = undeclared_thing;\n}\n";
  assert_null(jitcu_ptx(A, "broken.cu", src, NULL, 0, NULL, 0, NULL, 0, NULL, 80, NULL, err));
  assert_non_null(strstr(err, "broken.cu: NVRTC: "));
  assert_non_null(strstr(err, "broken.cu(2)")); /* NVRTC's log: file(line): error: ... */
  assert_non_null(strstr(err, "undeclared_thing"));
  /* a missing header is NVRTC's error too */
  assert_null(jitcu_ptx(A, "saxpy.cu", SAXPY, NULL, 0, NULL, 0, NULL, 0, NULL, 80, NULL, err));
  assert_non_null(strstr(err, "scale.cuh"));
  arena_free(A);
}

/* The one .ptx file in the cache. */
static void ptx_path(char *path, size_t n) {
  char dir[300];
  snprintf(dir, sizeof dir, "%s/ptx", cache);
  DIR *d = opendir(dir);
  assert_non_null(d);
  int found = 0;
  for (struct dirent *e; (e = readdir(d));)
    if (strstr(e->d_name, ".ptx")) {
      snprintf(path, n, "%s/%s", dir, e->d_name);
      found++;
    }
  closedir(d);
  assert_int_equal(found, 1);
}

static void test_cache(void **state) {
  (void)state;
  Arena *A = arena_new();
  char err[MLCRT_ERRLEN], path[600];
  bool cached;
  char *p1 = jitcu_ptx(A, "saxpy.cu", SAXPY, &SCALE, 1, NULL, 0, NULL, 0, NULL, 80, &cached, err);
  assert_non_null(p1);
  assert_false(cached);
  char *p2 = jitcu_ptx(A, "saxpy.cu", SAXPY, &SCALE, 1, NULL, 0, NULL, 0, NULL, 80, &cached, err);
  assert_true(cached);
  assert_string_equal(p1, p2);
  /* a changed header is another entry */
  JitCuHeader other = {"scale.cuh",
                       "__device__ inline float scale(float a) { return 3.0f * a; }\n"};
  assert_non_null(
      jitcu_ptx(A, "saxpy.cu", SAXPY, &other, 1, NULL, 0, NULL, 0, NULL, 80, &cached, err));
  assert_false(cached);
  char cmd[700];
  snprintf(cmd, sizeof cmd, "rm -f '%s'/ptx/*", cache);
  assert_int_equal(system(cmd), 0);
  assert_non_null(
      jitcu_ptx(A, "saxpy.cu", SAXPY, &SCALE, 1, NULL, 0, NULL, 0, NULL, 80, &cached, err));
  assert_false(cached);
  ptx_path(path, sizeof path);
  /* one byte of the PTX changed: the checksum says so, it is compiled again */
  FILE *f = fopen(path, "r+b");
  assert_non_null(f);
  fseek(f, -20, SEEK_END);
  fputc('#', f);
  fclose(f);
  char *p3 = jitcu_ptx(A, "saxpy.cu", SAXPY, &SCALE, 1, NULL, 0, NULL, 0, NULL, 80, &cached, err);
  assert_false(cached);
  assert_string_equal(p1, p3);
  assert_non_null(
      jitcu_ptx(A, "saxpy.cu", SAXPY, &SCALE, 1, NULL, 0, NULL, 0, NULL, 80, &cached, err));
  assert_true(cached);
  /* truncated, then an empty file, then garbage */
  assert_int_equal(truncate(path, 200), 0);
  assert_non_null(
      jitcu_ptx(A, "saxpy.cu", SAXPY, &SCALE, 1, NULL, 0, NULL, 0, NULL, 80, &cached, err));
  assert_false(cached);
  assert_int_equal(truncate(path, 0), 0);
  assert_non_null(
      jitcu_ptx(A, "saxpy.cu", SAXPY, &SCALE, 1, NULL, 0, NULL, 0, NULL, 80, &cached, err));
  assert_false(cached);
  f = fopen(path, "wb");
  fputs("// mlc-ptx 5 0000000000000000\nhello", f);
  fclose(f);
  char *p4 = jitcu_ptx(A, "saxpy.cu", SAXPY, &SCALE, 1, NULL, 0, NULL, 0, NULL, 80, &cached, err);
  assert_false(cached);
  assert_string_equal(p1, p4);
  arena_free(A);
}

static char *read_text(Arena *A, const char *path) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = arena_alloc(A, (size_t)n + 1);
  assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  return s;
}

/* The kernels a generated .cu launches, as NVRTC name expressions: its own
 * (`static __global__ void NAME(` in the device part) and the templates of
 * mlcrt_kernels.cuh its host part launches (`NAME<float><<<`). */
static int kernel_names(Arena *A, const char *cu, const char ***out) {
  int n = 0, cap = 16;
  const char **names = arena_alloc(A, sizeof(char *) * (size_t)cap);
  const char *host = strstr(cu, "\n#ifndef __CUDACC_RTC__");
  assert_non_null(host);
  for (const char *p = cu; (p = strstr(p, "__global__ void ")); p++) {
    if (p > host) break;
    p += 16;
    const char *name = arena_printf(A, "%.*s", (int)strcspn(p, "("), p);
    if (n == cap) {
      const char **bigger = arena_alloc(A, sizeof(char *) * (size_t)(cap *= 2));
      memcpy(bigger, names, sizeof(char *) * (size_t)n);
      names = bigger;
    }
    names[n++] = name;
  }
  for (const char *p = host; (p = strstr(p, "<<<")); p++) {
    const char *b = p;
    while (b > host && b[-1] != ' ' && b[-1] != '\n' && b[-1] != '(') b--;
    const char *name = arena_printf(A, "%.*s", (int)(p - b), b);
    bool seen = !strchr(name, '<'); /* its own kernels are listed already */
    for (int i = 0; i < n && !seen; i++) seen = !strcmp(names[i], name);
    if (seen) continue;
    if (n == cap) {
      const char **bigger = arena_alloc(A, sizeof(char *) * (size_t)(cap *= 2));
      memcpy(bigger, names, sizeof(char *) * (size_t)n);
      names = bigger;
    }
    names[n++] = name;
  }
  *out = names;
  return n;
}

/* The device code of every example and conformance model compiles to PTX. */
static void test_models(void **state) {
  (void)state;
  Arena *H = arena_new();
  JitCuHeader kernels = {"mlcrt_kernels.cuh",
                         read_text(H, MLC_SOURCE_DIR "/runtime/cuda/mlcrt_kernels.cuh")};
  const char *dirs[] = {MLC_SOURCE_DIR "/examples", MLC_SOURCE_DIR "/tests/e2e/cases",
                        MLC_SOURCE_DIR "/tests"};
  int n = 0, compiled = 0, kernels_total = 0;
  for (int k = 0; k < 3; k++) {
    DIR *d = opendir(dirs[k]);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));) {
      size_t len = strlen(e->d_name);
      if (len < 5 || strcmp(e->d_name + len - 4, ".mdl")) continue;
      Arena *A = arena_new();
      const char *path = arena_printf(A, "%s/%s", dirs[k], e->d_name);
      Diag dg = {0};
      Options o = {.opt_level = 2};
      Compiled *c = compile_file(A, path, &o, false, &dg);
      diag_free(&dg);
      n++;
      if (c) { /* a model the compiler rejects is not a CUDA failure */
        EmitC cu = emitcu_model(c->g, c->plan, c->train_plan, c->eval_plan, "model.h", NULL);
        char err[MLCRT_ERRLEN];
        const char **names = NULL, **lowered = NULL;
        int nk = kernel_names(A, cu.c, &names);
        lowered = arena_alloc(A, sizeof(char *) * (size_t)(nk + 1));
        char *ptx =
            jitcu_ptx(A, path, cu.c, &kernels, 1, NULL, 0, names, nk, lowered, 80, NULL, err);
        if (!ptx) fprintf(stderr, "FAIL %s: %s\n", path, err);
        assert_non_null(ptx);
        for (int i = 0; i < nk; i++) /* every kernel the host code launches is in the PTX */
          assert_non_null(strstr(ptx, arena_printf(A, ".entry %s(", lowered[i])));
        kernels_total += nk;
        compiled++;
      }
      arena_free(A);
    }
    closedir(d);
  }
  fprintf(stderr, "%d of %d models: %d kernels compiled to PTX with NVRTC\n", compiled, n,
          kernels_total);
  assert_true(compiled >= 80);
  arena_free(H);
}

/* A libcuda whose cuInit says CUDA_ERROR_NO_DEVICE, as on a machine with the
 * driver installed and no GPU. */
static const char *STUB =
    "#define F(name) int name() { return 0; }\n"
    "int cuInit(unsigned f) { (void)f; return 100; }\n"
    "F(cuGetErrorName) F(cuGetErrorString) F(cuDeviceGetCount) F(cuDeviceGet)\n"
    "F(cuDeviceGetAttribute) F(cuDevicePrimaryCtxRetain) F(cuDevicePrimaryCtxRelease_v2)\n"
    "F(cuCtxSetCurrent) F(cuCtxSynchronize) F(cuModuleLoadData) F(cuModuleUnload)\n"
    "F(cuModuleGetFunction) F(cuLaunchKernel) F(cuMemAlloc_v2) F(cuMemFree_v2)\n"
    "F(cuMemcpyHtoD_v2) F(cuMemcpyDtoH_v2)\n";

static void test_no_driver(void **state) {
  (void)state;
  char err[MLCRT_ERRLEN];
  setenv("MLC_LIBCUDA", "/nonexistent/libcuda.so.1", 1);
  assert_null(jitcu_open(0, err));
  assert_non_null(strstr(err, "no CUDA driver: /nonexistent/libcuda.so.1 cannot be loaded"));
  /* through mlc.h: the model compiles, the device is what is missing */
  const char *src = "model m {\n  input x: f32[2]\n  output y = x + 1.0\n}\n";
  mlc_options o = {.device = MLCRT_CUDA};
  mlc_model *m = NULL;
  char *diag = NULL;
  assert_int_equal(mlc_model_from_string("m.mdl", src, &o, &m, &diag), MLC_ERROR);
  assert_null(m);
  assert_non_null(strstr(diag, "mlc: error: no CUDA driver"));
  mlc_free(diag);
  /* a driver that finds no GPU */
  char stub_c[300], stub_so[300], cmd[1000];
  snprintf(stub_c, sizeof stub_c, "%s/stub.c", cache);
  snprintf(stub_so, sizeof stub_so, "%s/libcuda_stub.so", cache);
  FILE *f = fopen(stub_c, "w");
  assert_non_null(f);
  fputs(STUB, f);
  fclose(f);
  const char *cc = getenv("CC");
  snprintf(cmd, sizeof cmd, "%s -shared -fPIC -w -o '%s' '%s'", cc && *cc ? cc : "cc", stub_so,
           stub_c);
  assert_int_equal(system(cmd), 0);
  setenv("MLC_LIBCUDA", stub_so, 1);
  assert_null(jitcu_open(0, err));
  assert_non_null(strstr(err, "no CUDA device: the driver"));
  assert_int_equal(mlc_model_from_string("m.mdl", src, &o, &m, &diag), MLC_ERROR);
  assert_non_null(strstr(diag, "mlc: error: no CUDA device"));
  mlc_free(diag);
}

/* With a GPU: load the PTX for this device, launch, check. */
static void test_launch(void **state) {
  (void)state;
  char err[MLCRT_ERRLEN];
  JitCuda *cu = jitcu_open(0, err);
  if (!cu) {
    /* no GPU here: then the reason must be one of the two clear ones */
    assert_true(strstr(err, "no CUDA driver") || strstr(err, "no CUDA device"));
    fprintf(stderr, "no GPU (%s): launch not tested\n", err);
    return;
  }
  Arena *A = arena_new();
  char *ptx =
      jitcu_ptx(A, "saxpy.cu", SAXPY, &SCALE, 1, NULL, 0, NULL, 0, NULL, jitcu_arch(cu), NULL, err);
  assert_non_null(ptx);
  void *mod = NULL, *saxpy = NULL, *fill = NULL;
  assert_int_equal(jitcu_module_load(cu, ptx, &mod, err), 0);
  assert_int_equal(jitcu_function(cu, mod, "saxpy", &saxpy, err), 0);
  assert_int_equal(jitcu_function(cu, mod, "fill", &fill, err), 0);
  assert_int_not_equal(jitcu_function(cu, mod, "nope", &fill, err), 0);
  assert_non_null(strstr(err, "no kernel 'nope'"));
  enum { N = 1000 };
  float x[N], y[N];
  for (int i = 0; i < N; i++) x[i] = (float)i;
  uint64_t dx, dy;
  assert_int_equal(jitcu_alloc(cu, sizeof x, &dx, err), 0);
  assert_int_equal(jitcu_alloc(cu, sizeof y, &dy, err), 0);
  assert_int_equal(jitcu_copy(cu, dx, x, sizeof x, true, err), 0);
  float v = 1.5f, a = 0.25f;
  long long n = N;
  unsigned g1[3] = {1, 1, 1}, b1[3] = {256, 1, 1}, g2[3] = {(N + 255) / 256, 1, 1};
  assert_int_equal(jitcu_launch(cu, fill, g1, b1, 0, (void *[]){&dy, &v, &n}, err), 0);
  assert_int_equal(jitcu_launch(cu, saxpy, g2, b1, 0, (void *[]){&a, &dx, &dy, &n}, err), 0);
  assert_int_equal(jitcu_sync(cu, err), 0);
  assert_int_equal(jitcu_copy(cu, dy, y, sizeof y, false, err), 0);
  for (int i = 0; i < N; i++) assert_true(y[i] == 0.5f * (float)i + 1.5f);
  jitcu_free(cu, dx);
  jitcu_free(cu, dy);
  jitcu_module_unload(cu, mod);
  fprintf(stderr, "launched on a GPU of compute capability %d\n", jitcu_arch(cu));
  jitcu_close(cu);
  arena_free(A);
}

int main(void) {
  /* no toolkit at build time and none now: nothing to test */
  if (!*MLC_CUDA_LIBDIR) {
    Arena *A = arena_new();
    char err[MLCRT_ERRLEN];
    bool ok = jitcu_ptx(A, "t.cu", "", NULL, 0, NULL, 0, NULL, 0, NULL, 80, NULL, err) != NULL ||
              !strstr(err, "no NVRTC");
    arena_free(A);
    if (!ok) {
      printf("SKIPPED: no CUDA toolkit (%s)\n", err);
      return 77;
    }
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_ptx, setup, teardown),
      cmocka_unit_test_setup_teardown(test_broken, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cache, setup, teardown),
      cmocka_unit_test_setup_teardown(test_no_driver, setup, teardown),
      cmocka_unit_test_setup_teardown(test_launch, setup, teardown),
      cmocka_unit_test_setup_teardown(test_models, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
