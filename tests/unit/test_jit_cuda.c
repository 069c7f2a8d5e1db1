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
  unsetenv("MLC_LIBCUBLAS");
  return 0;
}

static int teardown(void **state) {
  (void)state;
  char cmd[300];
  unsetenv("MLC_JIT_PTX");
  unsetenv("MLC_CUDA_STUB_NO_CUBIN");
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", cache);
  unsetenv("MLC_LIBCUDA");
  unsetenv("MLC_LIBCUBLAS");
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

/* The one cache file whose name ends in suffix, or "" when there is none. */
static void cache_entry(const char *suffix, char *path, size_t n) {
  char dir[300];
  snprintf(dir, sizeof dir, "%s/ptx", cache);
  path[0] = 0;
  DIR *d = opendir(dir);
  if (!d) return;
  for (struct dirent *e; (e = readdir(d));) {
    size_t l = strlen(e->d_name), ls = strlen(suffix);
    if (l > ls && !strcmp(e->d_name + l - ls, suffix)) snprintf(path, n, "%s/%s", dir, e->d_name);
  }
  closedir(d);
}

/* jitcu_image: machine code (a CUBIN, an ELF image) for an architecture
 * NVRTC knows, with the kernels' lowered names; cached apart from the PTX,
 * found again byte for byte, rebuilt when damaged; PTX for a GPU newer than
 * NVRTC. */
static void test_image(void **state) {
  (void)state;
  Arena *A = arena_new();
  char err[MLCRT_ERRLEN], path[600];
  const char *src2 =
      "static __global__ void twice(float *y) { y[threadIdx.x] *= 2.0f; }\n"
      "template <typename F> __global__ void add(F *y, F v) { y[threadIdx.x] += v; }\n";
  const char *names[] = {"twice", "add<float>"}, *low[2] = {0}, *low2[2] = {0}, *plow[2] = {0};
  bool cached = true, cubin = false;
  size_t n = 0, n2 = 0;
  const char *img =
      jitcu_image(A, "two.cu", src2, NULL, 0, NULL, 0, names, 2, low, 80, &cached, &n, &cubin, err);
  if (!img) fprintf(stderr, "%s\n", err);
  assert_non_null(img);
  assert_false(cached);
  assert_true(cubin);
  assert_true(n > 64);
  assert_memory_equal(img, "\177ELF", 4);
  /* the same lowered names as the PTX gives, and they are in the image */
  assert_non_null(jitcu_ptx(A, "two.cu", src2, NULL, 0, NULL, 0, names, 2, plow, 80, NULL, err));
  for (int i = 0; i < 2; i++) {
    assert_string_equal(low[i], plow[i]);
    assert_non_null(memmem(img, n, low[i], strlen(low[i]) + 1));
  }
  const char *img2 = jitcu_image(A, "two.cu", src2, NULL, 0, NULL, 0, names, 2, low2, 80, &cached,
                                 &n2, &cubin, err);
  assert_true(cached && cubin);
  assert_int_equal(n2, n);
  assert_memory_equal(img2, img, n);
  assert_string_equal(low2[1], low[1]);
  /* one byte of the machine code changed: compiled again */
  cache_entry(".image", path, sizeof path);
  assert_true(path[0]);
  FILE *f = fopen(path, "r+b");
  assert_non_null(f);
  fseek(f, -9, SEEK_END);
  fputc(0x5a ^ fgetc(f), f);
  fclose(f);
  img2 = jitcu_image(A, "two.cu", src2, NULL, 0, NULL, 0, names, 2, low2, 80, &cached, &n2, &cubin,
                     err);
  assert_false(cached);
  assert_memory_equal(img2, img, n);
  /* an entry that says cubin but holds no ELF image is not loaded */
  f = fopen(path, "wb");
  fprintf(f, "// mlc-cubin 44 %016llx\n// mlc-name twice\n// mlc-name add\nxyzxyzxyz",
          (unsigned long long)build_hash(BUILD_HASH_INIT,
                                         "// mlc-name twice\n// mlc-name add\nxyzxyzxyz", 44));
  fclose(f);
  jitcu_image(A, "two.cu", src2, NULL, 0, NULL, 0, names, 2, low2, 80, &cached, &n2, &cubin, err);
  assert_false(cached);
  /* a GPU newer than this NVRTC: PTX for its newest architecture */
  img = jitcu_image(A, "two.cu", src2, NULL, 0, NULL, 0, names, 2, low, 10000, &cached, &n, &cubin,
                    err);
  assert_non_null(img);
  assert_false(cubin);
  assert_non_null(strstr(img, ".target sm_"));
  assert_int_equal(strlen(img), n);
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

/* NVRTC has no <math.h>: mlcrt_kernels.cuh defines NAN and INFINITY itself,
 * with the bits nvcc's <math.h> gives (a quiet NaN 0x7fc00000), so the JIT's
 * kernels write the very bytes the nvcc build writes (a fully masked
 * attention row, a NaN loss).  Once 0x7fffffff: caught on a GPU by
 * tests/cuda/gpu_e2e.sh --same-with-jit (sdpa's float mask). */
static void test_constants(void **state) {
  (void)state;
  Arena *A = arena_new();
  char err[MLCRT_ERRLEN];
  JitCuHeader kernels = {"mlcrt_kernels.cuh",
                         read_text(A, MLC_SOURCE_DIR "/runtime/cuda/mlcrt_kernels.cuh")};
  const char *src = "#include \"mlcrt_kernels.cuh\"\n"
                    "extern \"C\" __global__ void consts(float *y) {\n"
                    "  y[0] = NAN, y[1] = INFINITY, y[2] = -INFINITY;\n}\n";
  char *ptx = jitcu_ptx(A, "consts.cu", src, &kernels, 1, NULL, 0, NULL, 0, NULL, 80, NULL, err);
  if (!ptx) fprintf(stderr, "%s\n", err);
  assert_non_null(ptx);
  /* the stores are of the bits as integers (as nvcc -ptx writes them too) */
  assert_non_null(strstr(ptx, " 2143289344;")); /* 0x7fc00000 */
  assert_non_null(strstr(ptx, " 2139095040;")); /* 0x7f800000 */
  assert_non_null(strstr(ptx, " -8388608;"));   /* 0xff800000 */
  assert_null(strstr(ptx, " 2147483647;"));     /* not 0x7fffffff */
  arena_free(A);
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
      Options o = {.opt_level = 2, .cuda = true}; /* as libmlc and mlc plan for CUDA */
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
    "F(cuMemcpyHtoD_v2) F(cuMemcpyDtoH_v2) F(cuMemsetD8_v2)\n";

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

/* a CUDA call that must succeed; the driver's reason printed when it does not */
#define CU_OK(call)                                                                                \
  do {                                                                                             \
    int rc_ = (call);                                                                              \
    if (rc_) fprintf(stderr, "%s: %s\n", #call, err);                                              \
    assert_int_equal(rc_, 0);                                                                      \
  } while (0)

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
  void *mod = NULL, *saxpy = NULL, *fill = NULL, *nope = NULL;
  CU_OK(jitcu_module_load(cu, ptx, &mod, err));
  CU_OK(jitcu_function(cu, mod, "saxpy", &saxpy, err));
  CU_OK(jitcu_function(cu, mod, "fill", &fill, err));
  /* (its own handle: the driver clears the one it is given on failure) */
  assert_int_not_equal(jitcu_function(cu, mod, "nope", &nope, err), 0);
  assert_non_null(strstr(err, "no kernel 'nope'"));
  enum { N = 1000 };
  float x[N], y[N];
  for (int i = 0; i < N; i++) x[i] = (float)i;
  uint64_t dx, dy;
  CU_OK(jitcu_alloc(cu, sizeof x, &dx, err));
  CU_OK(jitcu_alloc(cu, sizeof y, &dy, err));
  CU_OK(jitcu_copy(cu, dx, x, sizeof x, true, err));
  float v = 1.5f, a = 0.25f;
  long long n = N;
  unsigned g1[3] = {1, 1, 1}, b1[3] = {256, 1, 1}, g2[3] = {(N + 255) / 256, 1, 1};
  CU_OK(jitcu_launch(cu, fill, g1, b1, 0, (void *[]){&dy, &v, &n}, err));
  CU_OK(jitcu_launch(cu, saxpy, g2, b1, 0, (void *[]){&a, &dx, &dy, &n}, err));
  CU_OK(jitcu_sync(cu, err));
  CU_OK(jitcu_copy(cu, dy, y, sizeof y, false, err));
  for (int i = 0; i < N; i++) assert_true(y[i] == 0.5f * (float)i + 1.5f);
  /* the same kernels as machine code (a CUBIN where NVRTC knows the GPU) */
  bool cubin = false;
  const char *img = jitcu_image(A, "saxpy.cu", SAXPY, &SCALE, 1, NULL, 0, NULL, 0, NULL,
                                jitcu_arch(cu), NULL, NULL, &cubin, err);
  assert_non_null(img);
  void *mod2 = NULL, *fill2 = NULL;
  CU_OK(jitcu_module_load(cu, img, &mod2, err));
  CU_OK(jitcu_function(cu, mod2, "fill", &fill2, err));
  v = 4.0f;
  CU_OK(jitcu_launch(cu, fill2, g1, b1, 0, (void *[]){&dy, &v, &n}, err));
  CU_OK(jitcu_sync(cu, err));
  CU_OK(jitcu_copy(cu, dy, y, sizeof y, false, err));
  for (int i = 0; i < N; i++) assert_true(y[i] == 4.0f);
  fprintf(stderr, "launched from %s\n", cubin ? "a CUBIN" : "PTX (NVRTC does not know this GPU)");
  jitcu_module_unload(cu, mod2);
  jitcu_free(cu, dx);
  jitcu_free(cu, dy);
  jitcu_module_unload(cu, mod);
  fprintf(stderr, "launched on a GPU of compute capability %d\n", jitcu_arch(cu));
  jitcu_close(cu);
  arena_free(A);
}

/* ---- the launch program against a recording driver (tests/cuda/stub_libcuda.c) ---- */
#define MAXP 64
typedef struct stub_launch { /* as the stub records a launch */
  char name[256];
  unsigned grid[3], block[3], shmem;
  int nparams;
  int size[MAXP], align[MAXP];
  size_t offset[MAXP];
  unsigned char bytes[8192];
} stub_launch;

typedef struct Stub {
  void *lib;
  int *nlaunch, *ngemm, *ncopy, *bad;
  char *why;
  stub_launch **launches;
  void (*reset)(void);
  int (*alloc_of)(uint64_t, uint64_t);
} Stub;

static void stub_open(Stub *st) {
  setenv("MLC_JIT_PTX", "1", 1); /* the stub reads kernels' parameters from PTX, not a CUBIN */
  setenv("MLC_LIBCUDA", MLC_CUDA_STUB, 1);
  setenv("MLC_LIBCUBLAS", MLC_CUDA_STUB, 1);
  st->lib = dlopen(MLC_CUDA_STUB, RTLD_NOW | RTLD_LOCAL);
  assert_non_null(st->lib);
  st->nlaunch = dlsym(st->lib, "stub_nlaunch");
  st->ngemm = dlsym(st->lib, "stub_ngemm");
  st->ncopy = dlsym(st->lib, "stub_ncopy");
  st->bad = dlsym(st->lib, "stub_bad");
  st->why = dlsym(st->lib, "stub_why");
  st->launches = dlsym(st->lib, "stub_launches");
  *(void **)&st->reset = dlsym(st->lib, "stub_reset");
  *(void **)&st->alloc_of = dlsym(st->lib, "stub_alloc_of");
  assert_true(st->nlaunch && st->bad && st->launches && st->reset && st->alloc_of);
}

/* One recorded argument against the program's: its value where the
 * program knows it, a pointer inside an allocation for the bytes the
 * tensor has.  Returns false with the reason in why. */
static bool check_arg(const Stub *st, const JitCuInst *m, int fi, const CuArg *a,
                      const unsigned char *p, const int64_t *sv, char *why) {
  switch (a->kind) {
  case CUA_PTR: {
    uint64_t v;
    memcpy(&v, p, 8);
    if (a->base == CUB_NULL) {
      if (v) return sprintf(why, "a NULL argument is 0x%llx", (unsigned long long)v), false;
      return true;
    }
    int64_t n = dim_eval(a->bytes, sv);
    if (n < 0 || st->alloc_of(v, (uint64_t)n) < 0)
      return sprintf(why, "pointer 0x%llx (+%lld bytes, region %d) outside the device memory",
                     (unsigned long long)v, (long long)n, (int)a->base),
             false;
    /* and inside its region: the arena buffer, input slot, weights or status */
    uint64_t r0 = 0, rn = 0;
    if (!jitcu_region(m, fi, a, &r0, &rn) || v < r0 || v + (uint64_t)n > r0 + rn)
      return sprintf(why, "pointer +%lld (+%lld bytes) outside its region %d [+0, +%llu)",
                     (long long)(v - r0), (long long)n, (int)a->base, (unsigned long long)rn),
             false;
    return true;
  }
  case CUA_I64:
  case CUA_U64: {
    int64_t v;
    memcpy(&v, p, 8);
    if (v != dim_eval(a->val, sv))
      return sprintf(why, "int64 %lld, expected %lld", (long long)v,
                     (long long)dim_eval(a->val, sv)),
             false;
    return true;
  }
  case CUA_I32: {
    int v;
    memcpy(&v, p, 4);
    if (v != (int)dim_eval(a->val, sv)) return sprintf(why, "int %d", v), false;
    return true;
  }
  case CUA_F32: {
    float v;
    memcpy(&v, p, 4);
    if (v != (float)a->f) return sprintf(why, "float %g, expected %g", v, a->f), false;
    return true;
  }
  case CUA_STRUCT: {
    size_t off = 0;
    for (int i = 0; i < a->nfields; i++) {
      size_t al, sz = jitcu_arg_size(&a->fields[i], &al);
      off = (off + al - 1) / al * al;
      if (!check_arg(st, m, fi, &a->fields[i], p + off, sv, why)) return false;
      off += sz;
    }
    return true;
  }
  default:
    return true;
  }
}

/* Checks the launches recorded for function fi against its steps. */
static int check_launches(const Stub *st, const JitCuInst *m, const CuProg *pr, int fi,
                          const int64_t *sv, const char *model) {
  int k = 0;
  char why[512];
  for (int i = 0; i < pr->nsteps[fi]; i++) {
    const CuStep *s = &pr->steps[fi][i];
    if (s->kind != CUS_LAUNCH) continue;
    if (s->cond && (dim_eval(s->cond_dim, sv) == 1) != (s->cond == 1)) continue;
    assert_true(k < *st->nlaunch);
    const stub_launch *l = &(*st->launches)[k++];
    why[0] = 0;
    bool ok = l->nparams == s->nargs;
    if (!ok) sprintf(why, "%d arguments for %d parameters", s->nargs, l->nparams);
    for (int a = 0; ok && a < s->nargs; a++) {
      size_t al, sz = jitcu_arg_size(&s->args[a], &al);
      if ((int)sz != l->size[a] || (int)al != l->align[a]) {
        sprintf(why, "argument %d: %zu bytes aligned %zu, the PTX parameter %d aligned %d", a, sz,
                al, l->size[a], l->align[a]);
        ok = false;
      } else if (!check_arg(st, m, fi, &s->args[a], l->bytes + l->offset[a], sv, why + 20)) {
        memcpy(why, "argument          : ", 20);
        why[9] = (char)('0' + a / 10), why[10] = (char)('0' + a % 10);
        ok = false;
      }
    }
    ok = ok && l->grid[0] >= 1 && l->grid[0] <= (1u << 20) && l->grid[1] == 1 && l->grid[2] == 1 &&
         l->block[0] >= 1 && l->block[0] <= 1024 && l->block[1] == 1 && l->block[2] == 1 &&
         l->shmem == 0;
    if (!ok) {
      fprintf(stderr, "FAIL %s step %d (%s) kernel %s: %s (grid %u block %u)\n", model, i, s->what,
              l->name, why[0] ? why : "bad grid or block", l->grid[0], l->block[0]);
      fail();
    }
  }
  assert_int_equal(k, *st->nlaunch);
  return k;
}

/* Every example and conformance model: run, train step and evaluate
 * interpreted against the recording driver at two sizes of the symbolic
 * dims.  Proves the marshalling (each launch's argument count, sizes and
 * alignment against the kernel's .entry in the PTX NVRTC made, values of the
 * dims, pointers inside the one device allocation for the whole tensor,
 * GEMM operands in bounds, grids in range); it computes nothing, so it
 * proves nothing about the numbers. */
static void test_stub_models(void **state) {
  (void)state;
  Stub st;
  stub_open(&st);
  const char *dirs[] = {MLC_SOURCE_DIR "/examples", MLC_SOURCE_DIR "/tests/e2e/cases",
                        MLC_SOURCE_DIR "/tests"};
  int models = 0, calls = 0, launches = 0, skipped = 0;
  for (int d = 0; d < 3; d++) {
    DIR *dir = opendir(dirs[d]);
    assert_non_null(dir);
    for (struct dirent *de; (de = readdir(dir));) {
      size_t len = strlen(de->d_name);
      if (len < 5 || strcmp(de->d_name + len - 4, ".mdl")) continue;
      Arena *A = arena_new();
      const char *path = arena_printf(A, "%s/%s", dirs[d], de->d_name);
      Diag dg = {0};
      Options o = {.opt_level = 2, .cuda = true}; /* as libmlc and mlc plan for CUDA */
      Compiled *c = compile_file(A, path, &o, false, &dg);
      diag_free(&dg);
      if (!c) {
        arena_free(A);
        continue;
      }
      const Graph *g = c->g;
      char err[MLCRT_ERRLEN];
      JitCuModel *mm = jitcu_model_load(c, NULL, CU_PREC_F32, err);
      if (!mm) fprintf(stderr, "FAIL %s: %s\n", path, err);
      assert_non_null(mm);
      const CuProg *pr = jitcu_model_prog(mm);
      int64_t maxd[MAX_SYMS];
      for (int s = 0; s < g->nsym; s++) maxd[s] = 8;
      JitCuInst *m = jitcu_create(mm, maxd, NULL, err);
      if (!m) fprintf(stderr, "FAIL %s: %s\n", path, err);
      assert_non_null(m);
      models++;
      for (int fi = 0; fi < 3; fi++) {
        if (fi && !c->train_plan) break;
        for (int size = 1; size <= 5; size += 4) {
          int64_t sv[MAX_SYMS + 1] = {0};
          for (int s = 1; s <= g->nsym; s++) sv[s] = size;
          bool fits = true; /* the dims must make a valid call */
          for (int k = 0; k < g->nchecks; k++)
            fits &= dim_eval(g->checks[k].a, sv) == dim_eval(g->checks[k].b, sv);
          for (int i = 0; i < g->n; i++)
            for (int k = 0; k < g->nodes[i].ty.rank; k++)
              fits &= dim_eval(g->nodes[i].ty.dim[k], sv) >= 0;
          if (!fits) {
            skipped++;
            continue;
          }
          const int nin = g->ninputs + (fi ? g->ntrain_inputs : 0);
          const void **in = arena_alloc(A, sizeof(void *) * (size_t)(nin + 1));
          void **out = arena_alloc(A, sizeof(void *) * (size_t)(g->noutputs + 1));
          for (int i = 0; i < nin; i++) {
            const Node *n =
                &g->nodes[i < g->ninputs ? g->inputs[i] : g->train_inputs[i - g->ninputs]];
            in[i] =
                arena_alloc(A, (size_t)dim_eval(type_numel(&n->ty), sv) * dtype_size(n->ty.dt) + 1);
          }
          for (int i = 0; i < g->noutputs; i++) {
            const Node *n = &g->nodes[g->outputs[i].node];
            out[i] =
                fi == CUF_TRAIN
                    ? NULL
                    : arena_alloc(
                          A, (size_t)dim_eval(type_numel(&n->ty), sv) * dtype_size(n->ty.dt) + 1);
          }
          float loss = 0;
          st.reset();
          int rc = jitcu_call(m, fi, sv, in, out, &loss);
          int expect = 0; /* a host check that fails for these dims (a slice of T - 2) */
          for (int i = 0; i < pr->nsteps[fi] && !expect; i++) {
            const CuStep *s = &pr->steps[fi][i];
            for (int k = 0; k < s->ncheck && s->kind == CUS_CHECK; k++)
              if (dim_eval(s->lo[k], sv) > dim_eval(s->hi[k], sv)) expect = s->index;
          }
          if (expect) {
            assert_int_equal(rc, expect);
            skipped++;
            continue;
          }
          if (rc || *st.bad)
            fprintf(stderr, "FAIL %s function %d size %d: %s\n", path, fi, size,
                    rc ? jitcu_last_error(m) : st.why);
          assert_int_equal(rc, 0);
          assert_int_equal(*st.bad, 0);
          launches += check_launches(&st, m, pr, fi, sv, path);
          calls++;
        }
      }
      jitcu_destroy(m);
      jitcu_model_free(mm);
      arena_free(A);
    }
    closedir(dir);
  }
  fprintf(stderr,
          "%d models, %d calls (run, train step, evaluate at 2 sizes; %d skipped), %d launches "
          "checked against the PTX\n",
          models, calls, skipped, launches);
  assert_true(models >= 80);
}

/* Through mlc.h: a model on "CUDA" created, loaded, run, trained and saved. */
static void test_stub_api(void **state) {
  (void)state;
  Stub st;
  stub_open(&st);
  mlc_options o = {.device = MLCRT_CUDA};
  mlc_model *mm = NULL;
  char *diag = NULL;
  int rc = mlc_model_from_file(MLC_SOURCE_DIR "/examples/fashion_mlp.mdl", &o, &mm, &diag);
  if (rc) fprintf(stderr, "%s", diag);
  assert_int_equal(rc, MLC_OK);
  mlc_free(diag);
  assert_int_equal(mlc_has_train_step(mm), 1);
  int64_t maxd[] = {16}, dims[] = {3};
  mlc_instance *m = mlc_create(mm, maxd, NULL);
  assert_non_null(m);
  assert_int_equal(mlc_init(m, 7), 0);
  char path[300];
  snprintf(path, sizeof path, "%s/w.safetensors", cache);
  assert_int_equal(mlc_save(m, path), 0);
  assert_int_equal(mlc_load(m, path), 0);
  static unsigned char x[16 * 784], y[16];
  float logits[16 * 10], loss = -1;
  st.reset();
  assert_int_equal(mlc_run(m, dims, (const void *[]){x}, (void *[]){logits}), 0);
  assert_true(*st.nlaunch > 0);
  assert_int_equal(*st.bad, 0);
  st.reset();
  assert_int_equal(mlc_train_step(m, dims, (const void *[]){x, y}, &loss), 0);
  assert_true(*st.nlaunch > 0 && *st.ngemm > 0);
  assert_int_equal(*st.bad, 0);
  assert_true(loss ==
              0.0f); /* the stub computes nothing: the loss read back is the zeroed arena's */
  /* the generated code's checks and messages */
  int64_t big[] = {17};
  assert_int_equal(mlc_run(m, big, (const void *[]){x}, (void *[]){logits}), MLCRT_EINVAL);
  assert_non_null(strstr(mlc_last_error(m), "fashion_mlp_run: B = 17 is outside 0..16"));
  assert_int_equal(mlc_run(m, dims, (const void *[]){NULL}, (void *[]){logits}), MLCRT_EINVAL);
  assert_non_null(strstr(mlc_last_error(m), "input 'x' is NULL"));
  snprintf(path, sizeof path, "%s/c.safetensors", cache);
  assert_int_equal(mlc_save_checkpoint(m, path), 0);
  assert_int_equal(mlc_load_checkpoint(m, path), 0);
  mlc_destroy(m);
  mlc_model_free(mm);
}

static char *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc((size_t)len + 1);
  assert_non_null(b);
  assert_int_equal(fread(b, 1, (size_t)len, f), (size_t)len);
  fclose(f);
  *n = (size_t)len;
  return b;
}
static void same_file(const char *a, const char *b) {
  size_t na, nb;
  char *x = slurp(a, &na), *y = slurp(b, &nb);
  if (na != nb || memcmp(x, y, na)) fprintf(stderr, "FAIL: %s and %s differ\n", a, b);
  assert_true(na == nb && !memcmp(x, y, na));
  free(x);
  free(y);
}

/* The weights region through "device" memory (the stub's copies are real):
 * init, save, load and checkpoints of a CUDA instance give the CPU JIT's
 * files byte for byte, so the descriptors (names, offsets, optimizer slots,
 * the step) libmlc builds for CUDA are the generated code's. */
static void test_stub_weights(void **state) {
  (void)state;
  Stub st;
  stub_open(&st);
  const char *models[] = {MLC_SOURCE_DIR "/examples/fashion_mlp.mdl",
                          MLC_SOURCE_DIR "/tests/gpt2_train.mdl"};
  for (int k = 0; k < 2; k++) {
    char f[4][300];
    const char *names[4] = {"w_cpu", "c_cpu", "w_cuda", "c_cuda"};
    for (int d = 0; d < 2; d++) {
      mlc_options o = {.device = d ? MLCRT_CUDA : MLCRT_CPU};
      mlc_model *mm = NULL;
      char *diag = NULL;
      int rc = mlc_model_from_file(models[k], &o, &mm, &diag);
      if (rc) fprintf(stderr, "%s", diag);
      assert_int_equal(rc, MLC_OK);
      mlc_free(diag);
      int64_t maxd[8] = {2, 2, 2, 2, 2, 2, 2, 2};
      mlc_instance *m = mlc_create(mm, maxd, NULL);
      assert_non_null(m);
      assert_int_equal(mlc_init(m, 11), 0);
      for (int j = 0; j < 2; j++) {
        snprintf(f[2 * d + j], sizeof f[0], "%s/%d_%s.safetensors", cache, k, names[2 * d + j]);
        assert_int_equal(j ? mlc_save_checkpoint(m, f[2 * d + j]) : mlc_save(m, f[2 * d + j]), 0);
      }
      if (d) { /* load what the CPU wrote, save it again */
        char again[320];
        snprintf(again, sizeof again, "%s.again", f[2]);
        assert_int_equal(mlc_load(m, f[0]), 0);
        assert_int_equal(mlc_save(m, again), 0);
        same_file(f[0], again);
        assert_int_equal(mlc_load_checkpoint(m, f[1]), 0);
        assert_int_equal(mlc_save_checkpoint(m, again), 0);
        same_file(f[1], again);
      }
      mlc_destroy(m);
      mlc_model_free(mm);
    }
    same_file(f[0], f[2]);
    same_file(f[1], f[3]);
  }
}

/* A model loaded as CUBIN through the stub driver: every kernel found in its
 * symbol table, a run launches them; a driver that refuses the CUBIN gets
 * the PTX instead. */
static void test_stub_cubin(void **state) {
  (void)state;
  Stub st;
  stub_open(&st);
  unsetenv("MLC_JIT_PTX");
  char err[MLCRT_ERRLEN], path[600];
  for (int refuse = 0; refuse < 2; refuse++) {
    if (refuse) setenv("MLC_CUDA_STUB_NO_CUBIN", "1", 1);
    Arena *A = arena_new();
    Diag dg = {0};
    Options o = {.opt_level = 2, .cuda = true};
    Compiled *c = compile_file(A, MLC_SOURCE_DIR "/examples/lenet5.mdl", &o, false, &dg);
    diag_free(&dg);
    assert_non_null(c);
    JitCuModel *mm = jitcu_model_load(c, NULL, CU_PREC_F32, err);
    if (!mm) fprintf(stderr, "%s\n", err);
    assert_non_null(mm);
    cache_entry(".image", path, sizeof path);
    assert_true(path[0]);
    assert_non_null(strstr(read_text(A, path), "// mlc-cubin "));
    cache_entry(".ptx", path, sizeof path);
    assert_int_equal(path[0] != 0, refuse); /* the PTX compiled only when the CUBIN is refused */
    jitcu_model_free(mm);
    arena_free(A);
  }
  unsetenv("MLC_CUDA_STUB_NO_CUBIN");
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
      cmocka_unit_test_setup_teardown(test_image, setup, teardown),
      cmocka_unit_test_setup_teardown(test_no_driver, setup, teardown),
      cmocka_unit_test_setup_teardown(test_constants, setup, teardown),
      cmocka_unit_test_setup_teardown(test_launch, setup, teardown),
      cmocka_unit_test_setup_teardown(test_models, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stub_models, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stub_api, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stub_weights, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stub_cubin, setup, teardown),
  };
  if (getenv("MLC_TEST_FILTER"))
    cmocka_set_test_filter(getenv("MLC_TEST_FILTER")); /* e.g. "test_stub*" */
  return cmocka_run_group_tests(tests, NULL, NULL);
}
