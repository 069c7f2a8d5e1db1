/* tests/cuda/stub_libcuda.c — a recording stand-in for libcuda.so.1 and
 * libcublas.so, for testing the CUDA JIT (compiler/jit_cuda.c) on a machine
 * without a GPU (tests/unit/test_jit_cuda.c; MLC_LIBCUDA and MLC_LIBCUBLAS
 * point at this library).
 *
 * It reports one device of compute capability 8.0 and hands out host memory
 * as "device" memory.  Modules keep their PTX text; cuModuleGetFunction
 * finds the kernel's .entry in it (or fails, as the driver does) and parses
 * its parameter list (.param .u64 / .b32 / .f32 / .f64 / .align A .b8 x[N]).
 * A CUBIN (an ELF image) loads too: its functions are found in its symbol
 * table, their parameters unknown (launches record none; the tests that
 * check arguments ask the JIT for PTX with MLC_JIT_PTX=1), or it is refused
 * as a driver without code for the GPU refuses it when
 * MLC_CUDA_STUB_NO_CUBIN is set.
 * cuLaunchKernel runs nothing: it records the kernel, grid, block, shared
 * memory and the parameter bytes, read with the sizes the PTX declares.
 * Copies and memsets are done (host memcpy / memset) after checking that
 * they stay inside one allocation; GEMMs are recorded and their operands'
 * extents checked the same way.  Every violation is counted in stub_bad and
 * described in stub_why.  Nothing here computes a kernel's result: it
 * proves the marshalling, not the numbers.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXP 64

typedef struct stub_launch {
  char name[256];
  unsigned grid[3], block[3], shmem;
  int nparams;
  int size[MAXP], align[MAXP];
  size_t offset[MAXP];
  unsigned char bytes[8192];
} stub_launch;

typedef struct stub_fn {
  char name[256];
  int nparams, size[MAXP], align[MAXP];
} stub_fn;

/* ---- CUBIN images: ELF64, little-endian ---- */
static uint64_t rd(const unsigned char *p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

/* The image's bytes: the furthest end of its header tables and sections. */
static size_t elf_size(const unsigned char *e) {
  uint64_t phoff = rd(e + 0x20, 8), shoff = rd(e + 0x28, 8);
  uint64_t phent = rd(e + 0x36, 2), phnum = rd(e + 0x38, 2);
  uint64_t shent = rd(e + 0x3A, 2), shnum = rd(e + 0x3C, 2);
  uint64_t end = 64;
  if (phoff + phent * phnum > end) end = phoff + phent * phnum;
  if (shoff + shent * shnum > end) end = shoff + shent * shnum;
  for (uint64_t i = 0; i < shnum; i++) {
    const unsigned char *sh = e + shoff + i * shent;
    uint64_t type = rd(sh + 4, 4), off = rd(sh + 0x18, 8), size = rd(sh + 0x20, 8);
    if (type != 8 /* SHT_NOBITS */ && off + size > end) end = off + size;
  }
  return (size_t)end;
}

/* Whether the image's symbol table has a function `name`. */
static int elf_has_function(const unsigned char *e, const char *name) {
  uint64_t shoff = rd(e + 0x28, 8), shent = rd(e + 0x3A, 2), shnum = rd(e + 0x3C, 2);
  for (uint64_t i = 0; i < shnum; i++) {
    const unsigned char *sh = e + shoff + i * shent;
    if (rd(sh + 4, 4) != 2 /* SHT_SYMTAB */) continue;
    const unsigned char *str = e + shoff + rd(sh + 0x28, 4) * shent; /* sh_link: its strings */
    const char *names = (const char *)e + rd(str + 0x18, 8);
    uint64_t off = rd(sh + 0x18, 8), size = rd(sh + 0x20, 8), ent = rd(sh + 0x38, 8);
    for (uint64_t k = 0; ent && k + ent <= size; k += ent) {
      const unsigned char *sym = e + off + k;
      if ((sym[4] & 0xf) == 2 /* STT_FUNC */ && !strcmp(names + rd(sym, 4), name)) return 1;
    }
  }
  return 0;
}

/* ---- what the test reads ---- */
int stub_nlaunch, stub_ngemm, stub_ncopy, stub_nmemset, stub_bad;
char stub_why[1024];
stub_launch *stub_launches;
static int cap_launch;

typedef struct alloc_t {
  unsigned char *p;
  size_t n;
} alloc_t;
static alloc_t allocs[1024];
static int nallocs;

__attribute__((format(printf, 1, 2))) static void bad(const char *fmt, ...) {
  if (stub_bad++) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(stub_why, sizeof stub_why, fmt, ap);
  va_end(ap);
}

/* The allocation holding [p, p + n), or -1. */
int stub_alloc_of(uint64_t p, uint64_t n) {
  for (int i = 0; i < nallocs; i++) {
    uint64_t b = (uint64_t)(uintptr_t)allocs[i].p;
    if (allocs[i].p && p >= b && p + n <= b + allocs[i].n && p + n >= p) return i;
  }
  return -1;
}

static int check(uint64_t p, uint64_t n, const char *what) {
  if (stub_alloc_of(p, n) >= 0) return 1;
  bad("%s: [0x%llx, +%llu) is outside every allocation", what, (unsigned long long)p,
      (unsigned long long)n);
  return 0;
}

/* MLC_CUDA_STUB_REPORT=FILE: when the library is unloaded (or the process
 * ends), one line appended to FILE with the counts and the first violation,
 * for a whole `mlc run --jit --device cuda` over the stub (tests/jit_check.sh). */
__attribute__((destructor)) static void stub_report(void) {
  const char *path = getenv("MLC_CUDA_STUB_REPORT");
  FILE *f = path && *path ? fopen(path, "a") : NULL;
  if (!f) return;
  fprintf(f, "launches %d gemms %d copies %d memsets %d bad %d %s\n", stub_nlaunch, stub_ngemm,
          stub_ncopy, stub_nmemset, stub_bad, stub_why);
  fclose(f);
}

void stub_reset(void) {
  stub_nlaunch = stub_ngemm = stub_ncopy = stub_nmemset = stub_bad = 0;
  stub_why[0] = 0;
}

/* ---- the driver ---- */
int cuGetErrorName(int rc, const char **s) {
  *s = rc == 500 ? "CUDA_ERROR_NOT_FOUND"
       : rc == 2 ? "CUDA_ERROR_OUT_OF_MEMORY"
                 : "CUDA_ERROR_STUB";
  return 0;
}
int cuGetErrorString(int rc, const char **s) {
  (void)rc;
  *s = "the test's stub driver";
  return 0;
}
int cuInit(unsigned f) {
  (void)f;
  return 0;
}
int cuDeviceGetCount(int *n) {
  *n = 1;
  return 0;
}
int cuDeviceGet(int *d, int i) {
  *d = i;
  return 0;
}
int cuDeviceGetAttribute(int *v, int attr, int dev) {
  (void)dev;
  *v = attr == 75 ? 8 : 0; /* compute capability 8.0 */
  return 0;
}
static int ctx_dummy;
int cuDevicePrimaryCtxRetain(void **ctx, int dev) {
  (void)dev;
  *ctx = &ctx_dummy;
  return 0;
}
int cuDevicePrimaryCtxRelease_v2(int dev) {
  (void)dev;
  return 0;
}
int cuCtxSetCurrent(void *ctx) {
  return ctx == &ctx_dummy ? 0 : 201; /* CUDA_ERROR_INVALID_CONTEXT */
}
int cuCtxSynchronize(void) {
  return 0;
}
/* A module: its PTX (or CUBIN) and the functions looked up in it (freed with it). */
typedef struct stub_mod {
  char *ptx;
  unsigned char *elf; /* a CUBIN's copy, or NULL */
  stub_fn **fns;
  int nfns;
} stub_mod;
int cuModuleLoadData(void **mod, const void *ptx) {
  stub_mod *m = calloc(1, sizeof *m);
  if (!m) return 2;
  if (!memcmp(ptx, "\177ELF", 4)) {
    const char *no = getenv("MLC_CUDA_STUB_NO_CUBIN");
    if (no && *no) {
      free(m);
      return 209; /* CUDA_ERROR_NO_BINARY_FOR_GPU */
    }
    size_t n = elf_size(ptx);
    if (!(m->elf = malloc(n)) || !(m->ptx = strdup(""))) {
      free(m->elf);
      free(m);
      return 2;
    }
    memcpy(m->elf, ptx, n);
  } else if (!(m->ptx = strdup((const char *)ptx))) {
    free(m);
    return 2;
  }
  *mod = m;
  return 0;
}
int cuModuleUnload(void *mod) {
  stub_mod *m = mod;
  for (int i = 0; i < m->nfns; i++) free(m->fns[i]);
  free(m->fns);
  free(m->ptx);
  free(m->elf);
  free(m);
  return 0;
}

/* Parses ".entry NAME(" ... ")" of the PTX. */
int cuModuleGetFunction(void **fn, void *mod, const char *name) {
  char key[300];
  snprintf(key, sizeof key, ".entry %s(", name);
  stub_mod *m = mod;
  const char *p = m->elf ? (elf_has_function(m->elf, name) ? m->ptx : NULL) : strstr(m->ptx, key);
  if (!p) return 500;
  stub_fn *f = calloc(1, sizeof *f);
  stub_fn **nf = realloc(m->fns, sizeof(stub_fn *) * (size_t)(m->nfns + 1));
  if (!f || !nf) {
    free(f);
    return 2;
  }
  m->fns = nf;
  m->fns[m->nfns++] = f;
  snprintf(f->name, sizeof f->name, "%s", name);
  if (m->elf) { /* a CUBIN: parameters unknown */
    *fn = f;
    return 0;
  }
  const char *end = strchr(p, ')');
  for (const char *q = strstr(p, ".param"); q && q < end; q = strstr(q + 6, ".param")) {
    int size = 0, align = 0;
    const char *t = q + 6;
    while (*t == ' ' || *t == '\t') t++;
    if (!strncmp(t, ".align", 6)) {
      align = atoi(t + 6);
      const char *br = strchr(t, '[');
      size = br ? atoi(br + 1) : 0;
    } else {
      int bits = atoi(t + 2); /* .u64, .b32, .f32, .s64 ... */
      size = align = bits / 8;
    }
    if (f->nparams < MAXP) f->size[f->nparams] = size, f->align[f->nparams++] = align;
  }
  *fn = f;
  return 0;
}

int cuLaunchKernel(void *fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                   unsigned bz, unsigned shmem, void *stream, void **params, void **extra) {
  (void)stream;
  stub_fn *f = fn;
  if (extra) bad("cuLaunchKernel: extra is not NULL");
  if (stub_nlaunch == cap_launch) {
    cap_launch = cap_launch ? 2 * cap_launch : 256;
    stub_launches = realloc(stub_launches, sizeof(stub_launch) * (size_t)cap_launch);
  }
  stub_launch *l = &stub_launches[stub_nlaunch++];
  memset(l, 0, sizeof *l);
  snprintf(l->name, sizeof l->name, "%s", f->name);
  l->grid[0] = gx, l->grid[1] = gy, l->grid[2] = gz;
  l->block[0] = bx, l->block[1] = by, l->block[2] = bz;
  l->shmem = shmem;
  l->nparams = f->nparams;
  size_t off = 0;
  for (int i = 0; i < f->nparams; i++) {
    l->size[i] = f->size[i], l->align[i] = f->align[i];
    off = (off + 7) / 8 * 8;
    l->offset[i] = off;
    if (!params[i]) { /* fewer arguments than parameters */
      l->nparams = -1;
      break;
    }
    if (off + (size_t)f->size[i] <= sizeof l->bytes)
      memcpy(l->bytes + off, params[i], (size_t)f->size[i]);
    off += (size_t)f->size[i];
  }
  return 0;
}

int cuMemAlloc_v2(uint64_t *p, size_t n) {
  if (nallocs == 1024) return 2;
  unsigned char *m = aligned_alloc(256, (n + 255) / 256 * 256);
  if (!m) return 2;
  allocs[nallocs].p = m, allocs[nallocs++].n = n;
  *p = (uint64_t)(uintptr_t)m;
  return 0;
}
int cuMemFree_v2(uint64_t p) {
  for (int i = 0; i < nallocs; i++)
    if ((uint64_t)(uintptr_t)allocs[i].p == p) {
      free(allocs[i].p);
      allocs[i].p = NULL;
      return 0;
    }
  bad("cuMemFree: 0x%llx was not allocated", (unsigned long long)p);
  return 1;
}
int cuMemcpyHtoD_v2(uint64_t d, const void *h, size_t n) {
  stub_ncopy++;
  if (check(d, n, "cuMemcpyHtoD")) memcpy((void *)(uintptr_t)d, h, n);
  return 0;
}
int cuMemcpyDtoH_v2(void *h, uint64_t d, size_t n) {
  stub_ncopy++;
  if (check(d, n, "cuMemcpyDtoH")) memcpy(h, (const void *)(uintptr_t)d, n);
  return 0;
}
int cuMemsetD8_v2(uint64_t d, unsigned char v, size_t n) {
  stub_nmemset++;
  if (check(d, n, "cuMemsetD8")) memset((void *)(uintptr_t)d, v, n);
  return 0;
}

/* ---- cuBLAS (column-major) ---- */
static int blas_dummy;
int cublasCreate_v2(void **h) {
  *h = &blas_dummy;
  return 0;
}
int cublasDestroy_v2(void *h) {
  (void)h;
  return 0;
}
int cublasSetMathMode(void *h, int mode) {
  (void)h;
  return mode == 0 || mode == 3 ? 0 : 7;
}

/* op(X) is rows x cols: X is stored ld x (trans ? rows : cols). */
static void operand(const float *x, int trans, long long rows, long long cols, long long ld,
                    long long stride, long long batch, const char *what) {
  long long r = trans ? cols : rows, c = trans ? rows : cols;
  if (ld < (r > 1 ? r : 1)) bad("%s: leading dimension %lld below %lld rows", what, ld, r);
  if (r == 0 || c == 0) return;
  long long last = (c - 1) * ld + (r - 1) + (batch - 1) * stride;
  check((uint64_t)(uintptr_t)x, (uint64_t)(last + 1) * 4, what);
}

int cublasSgemmStridedBatched(void *h, int ta, int tb, int m, int n, int k, const float *alpha,
                              const float *A, int lda, long long sa, const float *B, int ldb,
                              long long sb, const float *beta, float *C, int ldc, long long sc,
                              int batch) {
  (void)h, (void)alpha, (void)beta;
  stub_ngemm++;
  if (m <= 0 || n <= 0 || k < 0 || batch <= 0)
    bad("cublasSgemm: bad sizes m %d n %d k %d batch %d", m, n, k, batch);
  operand(A, ta, m, k, lda, sa, batch, "cublasSgemm A");
  operand(B, tb, k, n, ldb, sb, batch, "cublasSgemm B");
  operand(C, 0, m, n, ldc, sc, batch, "cublasSgemm C");
  return 0;
}
int cublasSgemm_v2(void *h, int ta, int tb, int m, int n, int k, const float *alpha, const float *A,
                   int lda, const float *B, int ldb, const float *beta, float *C, int ldc) {
  return cublasSgemmStridedBatched(h, ta, tb, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0,
                                   1);
}
