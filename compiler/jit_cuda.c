/* compiler/jit_cuda.c — the CUDA JIT plumbing: CUDA C compiled in-process to
 * machine code (CUBIN) or PTX with NVRTC (cached on disk), loaded and its
 * kernels launched with the CUDA driver API.
 *
 * Neither library is linked: libcuda.so.1 (the driver, present only where a
 * GPU is) and libnvrtc (the toolkit's run-time compiler) are opened with
 * dlopen when first needed, so libmlc starts on any machine and says clearly
 * what is missing.  Once opened they stay loaded (never dlclose'd), as in a
 * program linked with them: NVRTC costs 40-100 ms to load and keeps memory
 * of its own, and the driver runs threads; a second dlopen is cheap.  The few driver and NVRTC
 * types used are declared here (handles are pointers, results ints), so no CUDA header is needed to
 * build.
 *
 * Kernel cache: BASE/ptx/<16 hex digits>.ptx (PTX) and .image (what a model
 * loads: a CUBIN where NVRTC knows the GPU's architecture exactly, else PTX),
 * keyed by a hash of the source, the in-memory headers, the options, the
 * architecture and the kernel names.  The file's first line is
 * "// mlc-ptx SIZE CHECKSUM" (or mlc-cubin) of the rest; it is written to a
 * temporary file and renamed, and one that does not match its first line is
 * compiled again and replaced, never loaded.
 */
#include "mlcc.h"
#include "mlcrt_cuda.h" /* mlcrt_matmul_plan */
#include <math.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- NVRTC ------------------------------------------------------------------- */
typedef struct nvrtc_program *nvrtcProgram;
typedef struct Nvrtc {
  void *lib;
  const char *(*GetErrorString)(int);
  int (*CreateProgram)(nvrtcProgram *, const char *, const char *, int, const char *const *,
                       const char *const *);
  int (*CompileProgram)(nvrtcProgram, int, const char *const *);
  int (*GetProgramLogSize)(nvrtcProgram, size_t *);
  int (*GetProgramLog)(nvrtcProgram, char *);
  int (*GetPTXSize)(nvrtcProgram, size_t *);
  int (*GetPTX)(nvrtcProgram, char *);
  int (*DestroyProgram)(nvrtcProgram *);
  int (*AddNameExpression)(nvrtcProgram, const char *);
  int (*GetLoweredName)(nvrtcProgram, const char *, const char **);
  int (*GetNumSupportedArchs)(int *); /* CUDA 11.2 and later; may be NULL */
  int (*GetSupportedArchs)(int *);
  int (*GetCUBINSize)(nvrtcProgram, size_t *); /* CUDA 11.1 and later; may be NULL */
  int (*GetCUBIN)(nvrtcProgram, char *);
} Nvrtc;

#define SYM(lib, field, name) (*(void **)&(field) = dlsym(lib, name))

/* $MLC_NVRTC, else the sonames of recent toolkits, else the toolkit mlc was
 * built with. */
static bool nvrtc_open(Nvrtc *n, char *err) {
  memset(n, 0, sizeof *n);
  const char *env = getenv("MLC_NVRTC");
  const char *names[] = {env && *env ? env : NULL,
                         "libnvrtc.so",
                         "libnvrtc.so.13",
                         "libnvrtc.so.12",
                         "libnvrtc.so.11.2",
                         MLC_CUDA_LIBDIR "/libnvrtc.so",
                         "/usr/local/cuda/lib64/libnvrtc.so"};
  char first[MLCRT_ERRLEN] = "";
  for (size_t i = 0; i < sizeof names / sizeof *names && !n->lib; i++) {
    if (!names[i] || (i == 5 && !*MLC_CUDA_LIBDIR)) continue;
    n->lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    const char *e = n->lib ? NULL : dlerror();
    if (e && !*first) snprintf(first, sizeof first, "%s", e);
  }
  if (!n->lib) {
    mlcrt_seterr(err, MLCRT_EUNSUPPORTED,
                 "no NVRTC (the CUDA toolkit's run-time compiler): %s; install the CUDA toolkit or "
                 "set MLC_NVRTC to libnvrtc.so",
                 *first ? first : "not found");
    return false;
  }
  void *l = n->lib;
  bool ok = SYM(l, n->GetErrorString, "nvrtcGetErrorString") &&
            SYM(l, n->CreateProgram, "nvrtcCreateProgram") &&
            SYM(l, n->CompileProgram, "nvrtcCompileProgram") &&
            SYM(l, n->GetProgramLogSize, "nvrtcGetProgramLogSize") &&
            SYM(l, n->GetProgramLog, "nvrtcGetProgramLog") &&
            SYM(l, n->GetPTXSize, "nvrtcGetPTXSize") && SYM(l, n->GetPTX, "nvrtcGetPTX") &&
            SYM(l, n->DestroyProgram, "nvrtcDestroyProgram") &&
            SYM(l, n->AddNameExpression, "nvrtcAddNameExpression") &&
            SYM(l, n->GetLoweredName, "nvrtcGetLoweredName");
  SYM(l, n->GetNumSupportedArchs, "nvrtcGetNumSupportedArchs");
  SYM(l, n->GetSupportedArchs, "nvrtcGetSupportedArchs");
  SYM(l, n->GetCUBINSize, "nvrtcGetCUBINSize");
  SYM(l, n->GetCUBIN, "nvrtcGetCUBIN");
  if (!ok) {
    dlclose(l);
    mlcrt_seterr(err, MLCRT_EUNSUPPORTED, "the NVRTC library found lacks a function mlc needs");
    return false;
  }
  return true;
}

/* The entry's checksum over everything after its first line. */
static uint64_t entry_sum(const char *body, size_t n) {
  return build_hash(BUILD_HASH_INIT, body, n);
}

/* A cache entry: the first line "// mlc-ptx SIZE CHECKSUM" (or mlc-cubin)
 * of the SIZE bytes after it, which start with a line "// mlc-name LOWERED"
 * per name expression and go on with the code: PTX text (the name lines
 * are PTX comments, loaded with it) or a CUBIN (an ELF image). */
typedef struct Entry {
  char *code; /* in the arena; PTX is 0-terminated, and starts at the name lines */
  size_t size;
  bool cubin;
} Entry;

/* Reads a cache entry; false if absent or damaged. */
static bool entry_read(Arena *A, const char *path, int nnames, const char **lowered, Entry *e) {
  FILE *f = fopen(path, "rb");
  if (!f) return false;
  unsigned long long size, sum;
  char kind[8] = "";
  char *body = NULL;
  if (fscanf(f, "// mlc-%5[a-z] %llu %llx", kind, &size, &sum) == 3 && fgetc(f) == '\n' &&
      (!strcmp(kind, "ptx") || !strcmp(kind, "cubin")) && size < ((size_t)1 << 34)) {
    body = arena_alloc(A, (size_t)size + 1);
    if (fread(body, 1, (size_t)size, f) != size || fgetc(f) != EOF ||
        entry_sum(body, (size_t)size) != sum)
      body = NULL;
    else
      body[size] = 0;
  }
  fclose(f);
  char *p = body;
  for (int i = 0; p && i < nnames; i++) {
    char *nl = memchr(p, '\n', (size_t)(body + size - p));
    if (strncmp(p, "// mlc-name ", 12) || !nl) return false;
    lowered[i] = arena_printf(A, "%.*s", (int)(nl - p - 12), p + 12);
    p = nl + 1;
  }
  if (!p) return false;
  e->cubin = !strcmp(kind, "cubin");
  e->code = e->cubin ? p : body;
  e->size = (size_t)size - (size_t)(e->code - body);
  /* a CUBIN is an ELF image; PTX has no NUL before its end */
  return e->cubin ? e->size > 4 && !memcmp(e->code, "\177ELF", 4) : strlen(body) == size;
}

/* Writes an entry via a temporary file and rename (best effort: a cache that
 * cannot be written only costs the next start a compile). */
static void entry_write(Arena *A, const char *dir, const char *path, const char *body, size_t n,
                        bool cubin) {
  if (build_mkdirs(dir) != 0) return;
  char *tmp = arena_printf(A, "%s/tmp.XXXXXX", dir);
  int fd = mkstemp(tmp);
  if (fd < 0) return;
  FILE *f = fdopen(fd, "wb");
  if (!f) {
    close(fd);
    unlink(tmp);
    return;
  }
  fprintf(f, "// mlc-%s %zu %016llx\n", cubin ? "cubin" : "ptx", n,
          (unsigned long long)entry_sum(body, n));
  bool ok = fwrite(body, 1, n, f) == n;
  ok &= fclose(f) == 0;
  if (!ok || rename(tmp, path) != 0) unlink(tmp);
}

/* jitcu_ptx and jitcu_image: want_cubin asks for a CUBIN where this NVRTC
 * can build one for arch (else PTX).  Separate cache entries. */
static bool jit_compile(Arena *A, const char *name, const char *src, const JitCuHeader *h, int nh,
                        const char *const *opts, int nopts, const char *const *names, int nnames,
                        const char **lowered, int arch, bool want_cubin, bool *cached, Entry *out,
                        char *err) {
  if (cached) *cached = false;
  /* the key needs no NVRTC: loading it costs 40-100 ms, too much for a warm
   * start (so a new toolkit reuses the code cached by an older one) */
  uint64_t key = build_hash_str(BUILD_HASH_INIT, want_cubin ? "image" : "ptx");
  key = build_hash_str(build_hash_str(key, name), src);
  for (int i = 0; i < nh; i++) key = build_hash_str(build_hash_str(key, h[i].name), h[i].text);
  for (int i = 0; i < nopts; i++) key = build_hash_str(key, opts[i]);
  for (int i = 0; i < nnames; i++) key = build_hash_str(build_hash_str(key, "name"), names[i]);
  key = build_hash(key, &arch, sizeof arch);
  const char *dir = arena_printf(A, "%s/ptx", build_cache_dir(A));
  const char *path =
      arena_printf(A, "%s/%016llx.%s", dir, (unsigned long long)key, want_cubin ? "image" : "ptx");
  if (entry_read(A, path, nnames, lowered, out)) {
    if (cached) *cached = true;
    return true;
  }
  Nvrtc nv;
  if (!nvrtc_open(&nv, err)) return false;
  /* a GPU newer than this NVRTC: its newest virtual architecture (the driver
   * compiles PTX for later GPUs); machine code only for an architecture it
   * knows exactly */
  int nsup = 0;
  bool exact = false;
  if (nv.GetNumSupportedArchs && nv.GetSupportedArchs && !nv.GetNumSupportedArchs(&nsup) &&
      nsup > 0 && nsup < 256) {
    int sup[256], best = 0;
    nv.GetSupportedArchs(sup);
    for (int i = 0; i < nsup; i++)
      if (sup[i] <= arch && sup[i] > best) best = sup[i];
    exact = best == arch;
    if (best) arch = best;
  }
  const bool cubin = want_cubin && exact && nv.GetCUBINSize && nv.GetCUBIN;
  const char *archopt = arena_printf(A, "--gpu-architecture=%s_%d", cubin ? "sm" : "compute", arch);
  const char **hn = arena_alloc(A, sizeof(char *) * (size_t)(nh + 1)),
             **ht = arena_alloc(A, sizeof(char *) * (size_t)(nh + 1));
  for (int i = 0; i < nh; i++) hn[i] = h[i].name, ht[i] = h[i].text;
  const char **o = arena_alloc(A, sizeof(char *) * (size_t)(nopts + 2));
  for (int i = 0; i < nopts; i++) o[i] = opts[i];
  o[nopts] = archopt;
  nvrtcProgram prog = NULL;
  int rc = nv.CreateProgram(&prog, src, name, nh, ht, hn);
  if (rc) {
    mlcrt_seterr(err, MLCRT_EUNSUPPORTED, "%s: NVRTC cannot create the program: %s", name,
                 nv.GetErrorString(rc));
    return false;
  }
  for (int i = 0; i < nnames && !rc; i++) rc = nv.AddNameExpression(prog, names[i]);
  if (!rc) rc = nv.CompileProgram(prog, nopts + 1, o);
  bool ok = false;
  if (rc) {
    size_t n = 0;
    nv.GetProgramLogSize(prog, &n);
    char *log = arena_alloc(A, n + 1);
    if (n) nv.GetProgramLog(prog, log);
    mlcrt_seterr(err, MLCRT_EFORMAT, "%s: NVRTC: %s\n%s", name, nv.GetErrorString(rc), log);
  } else {
    /* the kernels' lowered (mangled) names, for cuModuleGetFunction */
    const char *names_text = "";
    for (int i = 0; i < nnames; i++) {
      const char *low = NULL;
      if (nv.GetLoweredName(prog, names[i], &low) || !low) {
        mlcrt_seterr(err, MLCRT_EFORMAT, "%s: NVRTC: no kernel '%s'", name, names[i]);
        nv.DestroyProgram(&prog);
        return false;
      }
      lowered[i] = arena_strdup(A, low);
      names_text = arena_printf(A, "%s// mlc-name %s\n", names_text, low);
    }
    size_t n = 0, nt = strlen(names_text);
    rc = cubin ? nv.GetCUBINSize(prog, &n) : nv.GetPTXSize(prog, &n);
    char *body = arena_alloc(A, nt + n + 1);
    memcpy(body, names_text, nt);
    if (!rc) rc = cubin ? nv.GetCUBIN(prog, body + nt) : nv.GetPTX(prog, body + nt);
    if (rc || !n) {
      mlcrt_seterr(err, MLCRT_EFORMAT, "%s: NVRTC gave no %s: %s", name, cubin ? "CUBIN" : "PTX",
                   nv.GetErrorString(rc));
    } else {
      if (!cubin) n = strlen(body + nt); /* PTX: its size counts the terminating 0 */
      body[nt + n] = 0;
      entry_write(A, dir, path, body, nt + n, cubin);
      *out = (Entry){cubin ? body + nt : body, cubin ? n : nt + n, cubin};
      ok = true;
    }
  }
  nv.DestroyProgram(&prog);
  return ok;
}

char *jitcu_ptx(Arena *A, const char *name, const char *src, const JitCuHeader *h, int nh,
                const char *const *opts, int nopts, const char *const *names, int nnames,
                const char **lowered, int arch, bool *cached, char *err) {
  Entry e;
  return jit_compile(A, name, src, h, nh, opts, nopts, names, nnames, lowered, arch, false, cached,
                     &e, err)
             ? e.code
             : NULL;
}

const char *jitcu_image(Arena *A, const char *name, const char *src, const JitCuHeader *h, int nh,
                        const char *const *opts, int nopts, const char *const *names, int nnames,
                        const char **lowered, int arch, bool *cached, size_t *size, bool *cubin,
                        char *err) {
  Entry e;
  if (!jit_compile(A, name, src, h, nh, opts, nopts, names, nnames, lowered, arch, true, cached, &e,
                   err))
    return NULL;
  if (size) *size = e.size;
  if (cubin) *cubin = e.cubin;
  return e.code;
}

/* ---- the driver ------------------------------------------------------------------ */
typedef struct CUctx_st *CUcontext;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef unsigned long long CUdeviceptr;
enum {
  CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75,
  CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76
};

struct JitCuda {
  void *lib;
  int device, arch;
  CUcontext ctx;
  int (*GetErrorName)(int, const char **);
  int (*GetErrorString)(int, const char **);
  int (*Init)(unsigned);
  int (*DeviceGetCount)(int *);
  int (*DeviceGet)(int *, int);
  int (*DeviceGetAttribute)(int *, int, int);
  int (*PrimaryCtxRetain)(CUcontext *, int);
  int (*PrimaryCtxRelease)(int);
  int (*CtxSetCurrent)(CUcontext);
  int (*CtxSynchronize)(void);
  int (*ModuleLoadData)(CUmodule *, const void *);
  int (*ModuleUnload)(CUmodule);
  int (*ModuleGetFunction)(CUfunction *, CUmodule, const char *);
  int (*LaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                      unsigned, void *, void **, void **);
  int (*MemAlloc)(CUdeviceptr *, size_t);
  int (*MemGetInfo)(size_t *, size_t *); /* optional */
  int (*MemFree)(CUdeviceptr);
  int (*MemcpyHtoD)(CUdeviceptr, const void *, size_t);
  int (*MemcpyDtoH)(void *, CUdeviceptr, size_t);
  int (*MemsetD8)(CUdeviceptr, unsigned char, size_t);
};

/* A driver error as "what: CUDA_ERROR_NAME (description)". */
static int cu_fail(const JitCuda *cu, int rc, char *err, const char *what) {
  const char *name = NULL, *desc = NULL;
  if (cu->GetErrorName) cu->GetErrorName(rc, &name);
  if (cu->GetErrorString) cu->GetErrorString(rc, &desc);
  return mlcrt_seterr(err, MLCRT_EUNSUPPORTED, "%s: %s (%s)", what, name ? name : "CUDA error",
                      desc ? desc : "?");
}

JitCuda *jitcu_open(int ordinal, char *err) {
  const char *lib = getenv("MLC_LIBCUDA"); /* tests point it elsewhere */
  if (!lib || !*lib) lib = "libcuda.so.1";
  void *l = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
  if (!l) {
    const char *why = dlerror();
    mlcrt_seterr(err, MLCRT_EUNSUPPORTED,
                 "no CUDA driver: %s cannot be loaded (%s); --device cuda needs an NVIDIA GPU and "
                 "its driver",
                 lib, why ? why : "not found");
    return NULL;
  }
  JitCuda *cu = calloc(1, sizeof *cu);
  if (!cu) {
    dlclose(l);
    mlcrt_seterr(err, MLCRT_ENOMEM, "out of memory");
    return NULL;
  }
  cu->lib = l;
  cu->device = -1;
  bool ok = SYM(l, cu->GetErrorName, "cuGetErrorName") &&
            SYM(l, cu->GetErrorString, "cuGetErrorString") && SYM(l, cu->Init, "cuInit") &&
            SYM(l, cu->DeviceGetCount, "cuDeviceGetCount") &&
            SYM(l, cu->DeviceGet, "cuDeviceGet") &&
            SYM(l, cu->DeviceGetAttribute, "cuDeviceGetAttribute") &&
            SYM(l, cu->PrimaryCtxRetain, "cuDevicePrimaryCtxRetain") &&
            SYM(l, cu->PrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2") &&
            SYM(l, cu->CtxSetCurrent, "cuCtxSetCurrent") &&
            SYM(l, cu->CtxSynchronize, "cuCtxSynchronize") &&
            SYM(l, cu->ModuleLoadData, "cuModuleLoadData") &&
            SYM(l, cu->ModuleUnload, "cuModuleUnload") &&
            SYM(l, cu->ModuleGetFunction, "cuModuleGetFunction") &&
            SYM(l, cu->LaunchKernel, "cuLaunchKernel") && SYM(l, cu->MemAlloc, "cuMemAlloc_v2") &&
            SYM(l, cu->MemFree, "cuMemFree_v2") && SYM(l, cu->MemcpyHtoD, "cuMemcpyHtoD_v2") &&
            SYM(l, cu->MemcpyDtoH, "cuMemcpyDtoH_v2") && SYM(l, cu->MemsetD8, "cuMemsetD8_v2");
  SYM(l, cu->MemGetInfo, "cuMemGetInfo_v2");
  if (!ok) {
    mlcrt_seterr(err, MLCRT_EUNSUPPORTED,
                 "no usable CUDA driver: %s lacks a function mlc needs (driver too old?)", lib);
    jitcu_close(cu);
    return NULL;
  }
  int n = 0, rc = cu->Init(0);
  if (rc == 100 /* CUDA_ERROR_NO_DEVICE */ || (!rc && !(rc = cu->DeviceGetCount(&n)) && n == 0)) {
    mlcrt_seterr(err, MLCRT_EUNSUPPORTED, "no CUDA device: the driver (%s) found no GPU", lib);
    jitcu_close(cu);
    return NULL;
  }
  if (rc) {
    cu_fail(cu, rc, err, "the CUDA driver failed to start (cuInit)");
    jitcu_close(cu);
    return NULL;
  }
  if (ordinal < 0 || ordinal >= n) {
    mlcrt_seterr(err, MLCRT_EINVAL, "no CUDA device %d: there %s %d", ordinal,
                 n == 1 ? "is" : "are", n);
    jitcu_close(cu);
    return NULL;
  }
  int dev = 0, major = 0, minor = 0;
  if ((rc = cu->DeviceGet(&dev, ordinal)) ||
      (rc = cu->DeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev)) ||
      (rc = cu->DeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev)) ||
      (rc = cu->PrimaryCtxRetain(&cu->ctx, dev))) {
    cu_fail(cu, rc, err, "cannot open the CUDA device");
    jitcu_close(cu);
    return NULL;
  }
  cu->device = dev;
  cu->arch = major * 10 + minor;
  if ((rc = cu->CtxSetCurrent(cu->ctx))) {
    cu_fail(cu, rc, err, "cannot use the CUDA device (cuCtxSetCurrent)");
    jitcu_close(cu);
    return NULL;
  }
  return cu;
}

int jitcu_arch(const JitCuda *cu) {
  return cu->arch;
}

void jitcu_close(JitCuda *cu) {
  if (!cu) return;
  if (cu->ctx) cu->PrimaryCtxRelease(cu->device);
  free(cu);
}

int jitcu_module_load(JitCuda *cu, const void *image, void **module, char *err) {
  int rc = cu->CtxSetCurrent(cu->ctx);
  if (!rc) rc = cu->ModuleLoadData((CUmodule *)module, image);
  return rc ? cu_fail(cu, rc, err, "cannot load the compiled kernels (cuModuleLoadData)")
            : MLCRT_OK;
}

void jitcu_module_unload(JitCuda *cu, void *module) {
  if (module) cu->ModuleUnload(module);
}

int jitcu_function(JitCuda *cu, void *module, const char *name, void **fn, char *err) {
  int rc = cu->ModuleGetFunction((CUfunction *)fn, module, name);
  if (rc) {
    char what[256];
    snprintf(what, sizeof what, "no kernel '%s' in the module", name);
    return cu_fail(cu, rc, err, what);
  }
  return MLCRT_OK;
}

int jitcu_launch(JitCuda *cu, void *fn, const unsigned grid[3], const unsigned block[3],
                 unsigned shmem, void **args, char *err) {
  int rc = cu->LaunchKernel(fn, grid[0], grid[1], grid[2], block[0], block[1], block[2], shmem,
                            NULL, args, NULL);
  return rc ? cu_fail(cu, rc, err, "kernel launch failed (cuLaunchKernel)") : MLCRT_OK;
}

int jitcu_sync(JitCuda *cu, char *err) {
  int rc = cu->CtxSynchronize();
  return rc ? cu_fail(cu, rc, err, "a kernel failed (cuCtxSynchronize)") : MLCRT_OK;
}

int jitcu_alloc(JitCuda *cu, size_t bytes, uint64_t *dptr, char *err) {
  CUdeviceptr p = 0;
  int rc = cu->CtxSetCurrent(cu->ctx); /* the calling thread may be another */
  size_t free_b = 0, total_b = 0;
  if (!rc && cu->MemGetInfo && !cu->MemGetInfo(&free_b, &total_b) && bytes > free_b) {
    *dptr = 0;
    return mlcrt_seterr(
        err, MLCRT_ENOMEM,
        "cannot allocate %zu bytes on the CUDA device: %zu of its %zu bytes are free", bytes,
        free_b, total_b);
  }
  if (!rc) rc = cu->MemAlloc(&p, bytes ? bytes : 1);
  *dptr = p;
  return rc ? cu_fail(cu, rc, err, "cannot allocate device memory (cuMemAlloc)") : MLCRT_OK;
}

void jitcu_free(JitCuda *cu, uint64_t dptr) {
  if (dptr && !cu->CtxSetCurrent(cu->ctx)) cu->MemFree(dptr);
}

int jitcu_copy(JitCuda *cu, uint64_t dptr, void *host, size_t bytes, bool to_device, char *err) {
  int rc = cu->CtxSetCurrent(cu->ctx); /* load / save may come from another thread */
  if (!rc) rc = to_device ? cu->MemcpyHtoD(dptr, host, bytes) : cu->MemcpyDtoH(host, dptr, bytes);
  return rc ? cu_fail(cu, rc, err, "device copy failed (cuMemcpy)") : MLCRT_OK;
}

int jitcu_memset(JitCuda *cu, uint64_t dptr, size_t bytes, char *err) {
  int rc = cu->MemsetD8(dptr, 0, bytes);
  return rc ? cu_fail(cu, rc, err, "device memset failed (cuMemsetD8)") : MLCRT_OK;
}

/* ---- cuBLAS, opened at run time like the driver -------------------------------------- */
typedef struct Cublas {
  void *lib;
  void *handle;
  int (*Create)(void **);
  int (*Destroy)(void *);
  int (*SetMathMode)(void *, int);
  int (*Sgemm)(void *, int, int, int, int, int, const float *, const float *, int, const float *,
               int, const float *, float *, int);
  int (*SgemmStridedBatched)(void *, int, int, int, int, int, const float *, const float *, int,
                             long long, const float *, int, long long, const float *, float *, int,
                             long long, int);
} Cublas;

/* $MLC_LIBCUBLAS, else the sonames of recent toolkits, else the toolkit mlc
 * was built with; a handle on the current context (the device's primary
 * context, which the CUDA runtime inside cuBLAS shares). */
static bool cublas_open(Cublas *b, int precision, char *err) {
  memset(b, 0, sizeof *b);
  const char *env = getenv("MLC_LIBCUBLAS");
  const char *names[] = {env && *env ? env : NULL, "libcublas.so",
                         "libcublas.so.13",        "libcublas.so.12",
                         "libcublas.so.11",        MLC_CUDA_LIBDIR "/libcublas.so"};
  char first[MLCRT_ERRLEN] = "";
  for (size_t i = 0; i < sizeof names / sizeof *names && !b->lib; i++) {
    if (!names[i] || (i == 5 && !*MLC_CUDA_LIBDIR)) continue;
    b->lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    const char *e = b->lib ? NULL : dlerror();
    if (e && !*first) snprintf(first, sizeof first, "%s", e);
  }
  if (!b->lib) {
    mlcrt_seterr(
        err, MLCRT_EUNSUPPORTED,
        "no cuBLAS (the model multiplies matrices with it): %s; install the CUDA toolkit's "
        "cuBLAS or set MLC_LIBCUBLAS to libcublas.so",
        *first ? first : "not found");
    return false;
  }
  void *l = b->lib;
  bool ok = SYM(l, b->Create, "cublasCreate_v2") && SYM(l, b->Destroy, "cublasDestroy_v2") &&
            SYM(l, b->SetMathMode, "cublasSetMathMode") && SYM(l, b->Sgemm, "cublasSgemm_v2") &&
            SYM(l, b->SgemmStridedBatched, "cublasSgemmStridedBatched");
  int rc = ok ? b->Create(&b->handle) : 0;
  /* CUBLAS_TF32_TENSOR_OP_MATH (3) for --precision tf32, else CUBLAS_DEFAULT_MATH (0) */
  if (ok && !rc) rc = b->SetMathMode(b->handle, precision == CU_PREC_TF32 ? 3 : 0);
  if (!ok || rc) {
    mlcrt_seterr(err, MLCRT_EUNSUPPORTED, "%s",
                 !ok ? "the cuBLAS library found lacks a function mlc needs"
                     : "cuBLAS cannot start (cublasCreate)");
    if (b->handle) b->Destroy(b->handle);
    b->handle = NULL;
    return false;
  }
  return true;
}

/* ---- models and instances: the launch program interpreted -------------------------- */
extern const char mlc_kernels_cuh[]; /* runtime/cuda/mlcrt_kernels.cuh, built into libmlc */

struct JitCuModel {
  Arena *A;
  const Compiled *c;
  CuProg *pr;
  JitCuda *cu;
  void *module;
  void **fns; /* per pr->kernels */
  Cublas blas;
  bool has_blas;
  bool code_cached;
  const unsigned char *embedded; /* the weights region's params (p->weight_bytes), or NULL */
  mlcrt_tensor_desc *tensors, *ckpt;
  int ntensors, nckpt;
};

enum { ARGBUF = 4096 }; /* the largest kernel's arguments (checked at load) */

struct JitCuInst {
  JitCuModel *mm;
  int64_t max[MAX_SYMS + 1];
  uint64_t dev; /* the one device allocation */
  size_t dev_bytes;
  uint64_t weights, status, arena;
  uint64_t *in;        /* input slots */
  size_t *off[3];      /* arena offsets per function */
  size_t *size[3];     /* and the buffers' sizes at the maximum dims */
  size_t *in_bytes;    /* the input slots' sizes */
  unsigned char *host; /* the weights region's mirror (load, save, init) */
  uint64_t seed;
  void *argv[65];
  unsigned char argbuf[ARGBUF];
  char err[MLCRT_ERRLEN];
};

/* C's natural layout of an argument: size and alignment. */
static size_t arg_layout(const CuArg *a, size_t *align) {
  switch (a->kind) {
  case CUA_I32:
  case CUA_F32:
  case CUA_F32_RSQRT:
    *align = 4;
    return 4;
  case CUA_STRUCT: {
    size_t off = 0, al = 1;
    for (int i = 0; i < a->nfields; i++) {
      size_t fa, fs = arg_layout(&a->fields[i], &fa);
      off = (off + fa - 1) / fa * fa + fs;
      if (fa > al) al = fa;
    }
    *align = al;
    return (off + al - 1) / al * al;
  }
  default:
    *align = 8;
    return 8;
  }
}

size_t jitcu_arg_size(const CuArg *a, size_t *align) {
  return arg_layout(a, align);
}

static uint64_t arg_ptr(const JitCuInst *m, int fi, const CuArg *a, const int64_t *sv) {
  uint64_t base = 0;
  switch (a->base) {
  case CUB_WEIGHTS:
    base = m->weights;
    break;
  case CUB_ARENA:
    base = m->arena + m->off[fi][a->index];
    break;
  case CUB_INPUT:
    base = m->in[a->index];
    break;
  case CUB_STATUS:
    base = m->status;
    break;
  default:
    return 0;
  }
  return base + (uint64_t)dim_eval(a->val, sv);
}

/* Writes argument a at p (its layout's bytes). */
static void arg_write(const JitCuInst *m, int fi, const CuArg *a, const int64_t *sv,
                      unsigned char *p) {
  switch (a->kind) {
  case CUA_PTR: {
    uint64_t v = arg_ptr(m, fi, a, sv);
    memcpy(p, &v, 8);
    return;
  }
  case CUA_I64:
  case CUA_U64: {
    int64_t v = dim_eval(a->val, sv);
    memcpy(p, &v, 8);
    return;
  }
  case CUA_SEED:
    memcpy(p, &m->seed, 8);
    return;
  case CUA_I32: {
    int v = (int)dim_eval(a->val, sv);
    memcpy(p, &v, 4);
    return;
  }
  case CUA_F32: {
    float v = (float)a->f;
    memcpy(p, &v, 4);
    return;
  }
  case CUA_F32_RSQRT: {
    float v = (float)(1.0 / sqrt((double)dim_eval(a->val, sv)));
    memcpy(p, &v, 4);
    return;
  }
  case CUA_F64:
    memcpy(p, &a->f, 8);
    return;
  case CUA_STRUCT: {
    size_t off = 0, al;
    size_t size = arg_layout(a, &al);
    memset(p, 0, size);
    for (int i = 0; i < a->nfields; i++) {
      size_t fa, fs = arg_layout(&a->fields[i], &fa);
      off = (off + fa - 1) / fa * fa;
      arg_write(m, fi, &a->fields[i], sv, p + off);
      off += fs;
    }
    return;
  }
  }
}

/* grid_for / blocks_for of the generated host code */
static unsigned grid_of(const CuStep *s, const int64_t *sv) {
  int64_t n = dim_eval(s->n, sv);
  switch (s->grid) {
  case CUG_THREADS:
    n = (n + 255) / 256;
    break;
  case CUG_BLOCKS_256:
    n = (n + 255) / 256;
    break;
  case CUG_ONE:
    return 1;
  default:
    break;
  }
  return n < 1 ? 1u : n > (1 << 20) ? 1u << 20 : (unsigned)n;
}

static bool too_big(int64_t v) {
  return v > 2147483647LL;
}

/* mlcrt_cuda_sgemm_batched over the dlopen'd cuBLAS (row-major C = op(A) op(B)). */
static int sgemm(JitCuInst *m, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                 uint64_t A, int64_t lda, int64_t sa, uint64_t B, int64_t ldb, int64_t sb,
                 float beta, uint64_t C, int64_t ldc, int64_t sc, int64_t batch) {
  JitCuModel *mm = m->mm;
  if (M == 0 || N == 0 || batch == 0) return MLCRT_OK;
  if (too_big(M) || too_big(N) || too_big(K) || too_big(lda) || too_big(ldb) || too_big(ldc) ||
      too_big(batch))
    return mlcrt_seterr(m->err, MLCRT_EUNSUPPORTED,
                        "GEMM of %lld x %lld x %lld is too large for cuBLAS's int sizes",
                        (long long)M, (long long)N, (long long)K);
  if (K == 0 && beta == 0.0f) { /* an empty sum: C = 0 (cuBLAS may leave C alone) */
    for (int64_t t = 0; t < batch; t++)
      for (int64_t i = 0; i < M; i++) {
        int rc = jitcu_memset(mm->cu, C + 4 * (uint64_t)(t * sc + i * ldc), 4 * (size_t)N, m->err);
        if (rc) return rc;
      }
    return MLCRT_OK;
  }
  /* row-major C[M,N] = op(A) op(B)  <=>  column-major C^T = op(B)^T op(A)^T */
  int rc = batch == 1 ? mm->blas.Sgemm(mm->blas.handle, tb, ta, (int)N, (int)M, (int)K, &alpha,
                                       (const float *)B, (int)ldb, (const float *)A, (int)lda,
                                       &beta, (float *)C, (int)ldc)
                      : mm->blas.SgemmStridedBatched(mm->blas.handle, tb, ta, (int)N, (int)M,
                                                     (int)K, &alpha, (const float *)B, (int)ldb, sb,
                                                     (const float *)A, (int)lda, sa, &beta,
                                                     (float *)C, (int)ldc, sc, (int)batch);
  return rc ? mlcrt_seterr(m->err, MLCRT_EUNSUPPORTED, "cublasSgemm failed (cuBLAS status %d)", rc)
            : MLCRT_OK;
}

typedef struct MatmulCtx {
  JitCuInst *m;
  uint64_t a, b, y;
} MatmulCtx;
static int matmul_gemm(void *ctx, int64_t M, int64_t N, int64_t K, int64_t aoff, int64_t lda,
                       int64_t sa, int64_t boff, int64_t ldb, int64_t sb, int64_t yoff, int64_t ldc,
                       int64_t sc, int64_t batch) {
  MatmulCtx *x = ctx;
  return sgemm(x->m, 0, 0, M, N, K, 1.0f, x->a + 4 * (uint64_t)aoff, lda, sa,
               x->b + 4 * (uint64_t)boff, ldb, sb, 0.0f, x->y + 4 * (uint64_t)yoff, ldc, sc, batch);
}

/* Runs function fi's steps for the dims sv (sv[id], 1-based): copies in
 * from in[], out to out[] (NULL entries skipped), the loss to *loss. */
int jitcu_call(JitCuInst *m, int fi, const int64_t *sv, const void *const *in, void *const *out,
               float *loss) {
  JitCuModel *mm = m->mm;
  const CuProg *pr = mm->pr;
  JitCuda *cu = mm->cu;
  int64_t st[CU_STATUS_WORDS] = {0};
  int rc = cu->CtxSetCurrent(cu->ctx);
  if (rc) return cu_fail(cu, rc, m->err, "cannot use the CUDA device (cuCtxSetCurrent)");
  for (int i = 0; i < pr->nsteps[fi]; i++) {
    const CuStep *s = &pr->steps[fi][i];
    if (s->cond && (dim_eval(s->cond_dim, sv) == 1) != (s->cond == 1)) continue;
    const uint64_t p0 = s->nargs ? arg_ptr(m, fi, &s->args[0], sv) : 0;
    const size_t nb = (size_t)dim_eval(s->n, sv);
    switch (s->kind) {
    case CUS_COPY_IN:
      rc = jitcu_copy(cu, p0, (void *)in[s->index], nb, true, m->err);
      break;
    case CUS_COPY_OUT:
      if (s->index >= 0 && !out[s->index]) break;
      rc = jitcu_copy(cu, p0,
                      s->index >= 0    ? out[s->index]
                      : s->index == -1 ? (void *)loss
                                       : st,
                      nb, false, m->err);
      break;
    case CUS_MEMSET:
      rc = jitcu_memset(cu, p0, nb, m->err);
      break;
    case CUS_CHECK: {
      bool ok = true;
      for (int k = 0; k < s->ncheck; k++) ok &= dim_eval(s->lo[k], sv) <= dim_eval(s->hi[k], sv);
      if (!ok) {
        long long v[3] = {0, 0, 0};
        for (int k = 0; k < s->nvals; k++) v[k] = dim_eval(s->vals[k], sv);
        return mlcrt_seterr(m->err, s->index, s->msg, v[0], v[1], v[2]);
      }
      break;
    }
    case CUS_LAUNCH: {
      size_t off = 0;
      for (int k = 0; k < s->nargs; k++) {
        size_t al, size = arg_layout(&s->args[k], &al);
        off = (off + 7) / 8 * 8;
        arg_write(m, fi, &s->args[k], sv, m->argbuf + off);
        m->argv[k] = m->argbuf + off;
        off += size;
      }
      m->argv[s->nargs] = NULL; /* (a debugging aid: the driver reads as many as the kernel has) */
      const unsigned grid[3] = {grid_of(s, sv), 1, 1}, block[3] = {(unsigned)s->block, 1, 1};
      rc = jitcu_launch(cu, mm->fns[s->fn], grid, block, 0, m->argv, m->err);
      break;
    }
    case CUS_GEMM: {
      int64_t g[6];
      for (int k = 0; k < 6; k++) g[k] = dim_eval(s->gemm[k], sv);
      rc = sgemm(m, s->trans_a, s->trans_b, g[0], g[1], g[2], s->alpha, p0, g[3], 0,
                 arg_ptr(m, fi, &s->args[1], sv), g[4], 0, s->beta, arg_ptr(m, fi, &s->args[2], sv),
                 g[5], 0, 1);
      break;
    }
    case CUS_MATMUL: {
      int64_t sh[3][MAX_RANK];
      for (int q = 0; q < 3; q++)
        for (int k = 0; k < s->rank[q]; k++) sh[q][k] = dim_eval(s->shape[q][k], sv);
      if (!s->rank[2]) sh[2][0] = 1;
      MatmulCtx x = {m, p0, arg_ptr(m, fi, &s->args[1], sv), arg_ptr(m, fi, &s->args[2], sv)};
      rc = mlcrt_matmul_plan(s->rank[0], sh[0], s->rank[1], sh[1], s->rank[2], sh[2], matmul_gemm,
                             &x, m->err);
      break;
    }
    }
    if (rc) {
      char why[MLCRT_ERRLEN];
      snprintf(why, sizeof why, "%s", m->err);
      return mlcrt_seterr(m->err, rc, "%s: %s", s->what, why);
    }
  }
  if ((rc = jitcu_sync(cu, m->err))) return rc;
  if (st[0] > 0 && st[0] <= pr->nchecks)
    return mlcrt_seterr(m->err, MLCRT_EINVAL, pr->checks[st[0] - 1], (long long)st[1],
                        (long long)st[2]);
  return MLCRT_OK;
}

static void desc_of(const Graph *g, const Plan *p, mlcrt_tensor_desc *d, const char *name, int id) {
  const Node *n = &g->nodes[id];
  memset(d, 0, sizeof *d);
  d->name = name;
  d->dtype = (mlcrt_dtype)n->ty.dt;
  d->rank = n->ty.rank;
  for (int k = 0; k < n->ty.rank; k++)
    d->shape[k] = dim_eval(n->ty.dim[k], (int64_t[MAX_SYMS + 1]){0});
  d->offset = p->weight_off[id];
  d->init = (int)n->init;
  d->init_a = n->init_a;
  d->init_b = n->init_b;
}

/* The descriptors of the weights file and of checkpoints, as model.cu's tables. */
static void describe_weights(JitCuModel *mm) {
  const Graph *g = mm->c->g;
  const Plan *p = mm->c->plan;
  const CuProg *pr = mm->pr;
  int nt = g->ntensors + g->nties;
  mm->tensors = arena_alloc(mm->A, sizeof(mlcrt_tensor_desc) * (size_t)(nt + 1));
  for (int t = 0; t < g->ntensors; t++)
    desc_of(g, p, &mm->tensors[t], g->nodes[g->tensors[t]].name, g->tensors[t]);
  for (int i = 0; i < g->nties; i++)
    desc_of(g, p, &mm->tensors[g->ntensors + i], g->tie_names[i], g->tie_nodes[i]);
  mm->ntensors = nt;
  if (!mm->c->train_plan) return;
  static const char *slot_names[2][2] = {{"momentum_buffer", ""}, {"exp_avg", "exp_avg_sq"}};
  mm->ckpt = arena_alloc(mm->A, sizeof(mlcrt_tensor_desc) * (size_t)(nt + 2 * g->ntensors + 2));
  memcpy(mm->ckpt, mm->tensors, sizeof(mlcrt_tensor_desc) * (size_t)nt);
  int n = nt;
  for (int t = 0; t < g->ntensors; t++)
    for (int k = 0; k < pr->nslots && g->grads[t] >= 0; k++) {
      mlcrt_tensor_desc *d = &mm->ckpt[n++];
      desc_of(g, p, d,
              arena_printf(mm->A, "optimizer.%s.%s", g->nodes[g->tensors[t]].name,
                           slot_names[g->opt.kind != OPT_SGD][k]),
              g->tensors[t]);
      d->dtype = MLCRT_F32;
      d->offset = pr->slot_off[t] + (k ? pr->slot2_gap[t] : 0);
      d->init = MLCRT_INIT_ZEROS, d->init_a = d->init_b = 0;
    }
  mlcrt_tensor_desc *d = &mm->ckpt[n++];
  memset(d, 0, sizeof *d);
  d->name = "optimizer.step";
  d->dtype = MLCRT_I64;
  d->offset = pr->step_off;
  mm->nckpt = n;
}

/* $MLC_JIT_TIMING: the phases of a CUDA JIT model's load, in milliseconds, on
 * stderr (bench/gpu_bench.py's jit start figures, broken down). */
static double jt_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return 1e3 * (double)t.tv_sec + 1e-6 * (double)t.tv_nsec;
}
static void jt_phase(const char *what, double *t) {
  const double now = jt_ms();
  if (getenv("MLC_JIT_TIMING")) fprintf(stderr, "mlc jit: %-16s %9.2f ms\n", what, now - *t);
  *t = now;
}

JitCuModel *jitcu_model_load(const Compiled *c, const unsigned char *embedded, int precision,
                             char *err) {
  double t = jt_ms();
  JitCuda *cu = jitcu_open(0, err);
  jt_phase("driver open", &t);
  if (!cu) return NULL;
  Arena *A = arena_new();
  JitCuModel *mm = arena_alloc(A, sizeof *mm);
  memset(mm, 0, sizeof *mm);
  mm->A = A;
  mm->c = c;
  mm->cu = cu;
  mm->pr = emitcu_prog(c->g, c->plan, c->train_plan, c->eval_plan, NULL,
                       precision == CU_PREC_TF32 ? CU_PREC_TF32 : CU_PREC_F32);
  const CuProg *pr = mm->pr;
  if (embedded) {
    unsigned char *w = arena_alloc(A, c->plan->weight_bytes + 1);
    memcpy(w, embedded, c->plan->weight_bytes);
    mm->embedded = w;
  }
  describe_weights(mm);
  jt_phase("launch program", &t);
  /* every launch's arguments fit the instance's buffer */
  for (int f = 0; f < 3; f++)
    for (int i = 0; i < pr->nsteps[f]; i++) {
      size_t off = 0, al;
      for (int k = 0; k < pr->steps[f][i].nargs; k++)
        off = (off + 7) / 8 * 8 + arg_layout(&pr->steps[f][i].args[k], &al);
      if (off > ARGBUF || pr->steps[f][i].nargs > 64) {
        mlcrt_seterr(err, MLCRT_EUNSUPPORTED, "%s: a kernel with %zu bytes of arguments",
                     pr->steps[f][i].what, off);
        jitcu_model_free(mm);
        return NULL;
      }
      mm->has_blas |= pr->steps[f][i].kind == CUS_GEMM || pr->steps[f][i].kind == CUS_MATMUL;
    }
  const JitCuHeader hdr = {"mlcrt_kernels.cuh", mlc_kernels_cuh};
  const char **lowered = arena_alloc(A, sizeof(char *) * (size_t)(pr->nkernels + 1));
  const char *cuname = arena_printf(A, "%s.cu", c->g->name);
  /* machine code (CUBIN) unless $MLC_JIT_PTX asks for PTX: the driver then
   * compiles it at every load, tens of ms for GPT-2's kernels */
  const char *want_ptx = getenv("MLC_JIT_PTX");
  Entry e = {0};
  bool ok = jit_compile(A, cuname, pr->device_src, &hdr, 1, NULL, 0, pr->kernels, pr->nkernels,
                        lowered, jitcu_arch(cu), !(want_ptx && *want_ptx && strcmp(want_ptx, "0")),
                        &mm->code_cached, &e, err);
  jt_phase(!mm->code_cached ? (e.cubin ? "cubin (nvrtc)" : "ptx (nvrtc)")
                            : (e.cubin ? "cubin (cached)" : "ptx (cached)"),
           &t);
  int rc = ok ? jitcu_module_load(cu, e.code, &mm->module, err) : MLCRT_EUNSUPPORTED;
  if (rc && e.cubin) { /* a driver older than this NVRTC's machine code: PTX, which it compiles */
    ok = jit_compile(A, cuname, pr->device_src, &hdr, 1, NULL, 0, pr->kernels, pr->nkernels,
                     lowered, jitcu_arch(cu), false, &mm->code_cached, &e, err);
    rc = ok ? jitcu_module_load(cu, e.code, &mm->module, err) : MLCRT_EUNSUPPORTED;
  }
  jt_phase("module load", &t);
  mm->fns = arena_alloc(A, sizeof(void *) * (size_t)(pr->nkernels + 1));
  for (int i = 0; i < pr->nkernels && !rc; i++)
    rc = jitcu_function(cu, mm->module, lowered[i], &mm->fns[i], err);
  if (!rc && mm->has_blas && !cublas_open(&mm->blas, pr->precision, err)) rc = MLCRT_EUNSUPPORTED;
  jt_phase("kernels, cublas", &t);
  if (rc) {
    jitcu_model_free(mm);
    return NULL;
  }
  return mm;
}

void jitcu_model_free(JitCuModel *mm) {
  if (!mm) return;
  if (mm->blas.handle) mm->blas.Destroy(mm->blas.handle);
  jitcu_module_unload(mm->cu, mm->module);
  jitcu_close(mm->cu);
  arena_free(mm->A);
}

const CuProg *jitcu_model_prog(const JitCuModel *mm) {
  return mm->pr;
}

/* The weights region between the device and its host mirror. */
static int pull(JitCuInst *m) {
  return jitcu_copy(m->mm->cu, m->weights, m->host, m->mm->pr->weight_bytes, false, m->err);
}
static int push(JitCuInst *m) {
  return jitcu_copy(m->mm->cu, m->weights, m->host, m->mm->pr->weight_bytes, true, m->err);
}

static size_t up256(size_t n) {
  return (n + 255) / 256 * 256;
}

JitCuInst *jitcu_create(JitCuModel *mm, const int64_t *max_dims, const mlcrt_options *opts,
                        char *err) {
  double t = jt_ms();
  const Compiled *c = mm->c;
  const Graph *g = c->g;
  const char *M = g->name;
  if (opts && opts->device != MLCRT_CUDA) {
    mlcrt_seterr(err, MLCRT_EINVAL,
                 "%s_create: this model was compiled for CUDA (opts->device must be MLCRT_CUDA, or "
                 "opts NULL)",
                 M);
    return NULL;
  }
  if (opts && opts->device_index != 0) {
    mlcrt_seterr(err, MLCRT_EINVAL, "%s_create: the CUDA JIT runs on device 0 (opts->device_index)",
                 M);
    return NULL;
  }
  JitCuInst *m = calloc(1, sizeof *m);
  if (!m) {
    mlcrt_seterr(err, MLCRT_ENOMEM, "%s_create: out of memory", M);
    return NULL;
  }
  m->mm = mm;
  for (int s = 1; s <= g->nsym; s++) {
    m->max[s] = max_dims[s - 1];
    if (m->max[s] < 1 || m->max[s] > ((int64_t)1 << 40)) {
      mlcrt_seterr(err, MLCRT_EINVAL, "%s_create: max_%s = %lld is out of range (1..2^40)", M,
                   g->sym[s], (long long)m->max[s]);
      free(m);
      return NULL;
    }
  }
  /* the arena planned as model.cu's create plans it: each function's
   * buffers at the maximum dims, the largest of the three */
  const Plan *plans[3] = {c->plan, c->train_plan, c->eval_plan};
  size_t arena = 0;
  double total = 0;
  for (int f = 0; f < 3 && plans[f]; f++) {
    const Plan *p = plans[f];
    mlcrt_plan_item *items = calloc((size_t)p->nbufs + 1, sizeof *items);
    m->off[f] = calloc((size_t)p->nbufs + 1, sizeof(size_t));
    m->size[f] = calloc((size_t)p->nbufs + 1, sizeof(size_t));
    if (!items || !m->off[f] || !m->size[f]) {
      free(items);
      mlcrt_seterr(err, MLCRT_ENOMEM, "%s_create: out of memory", M);
      jitcu_destroy(m);
      return NULL;
    }
    for (int b = 0; b < p->nbufs; b++) {
      /* the conv scratch buffers are the CPU kernels' (im2col): none on the GPU */
      const int64_t bytes = p->bufs[b].scratch ? 0 : dim_eval(plan_buf_bytes(g, p, b), m->max);
      items[b] = (mlcrt_plan_item){(size_t)bytes, p->bufs[b].first, p->bufs[b].last, 0};
      total += (double)bytes;
    }
    size_t n = mlcrt_plan(items, p->nbufs, 256);
    if (n > arena) arena = n;
    for (int b = 0; b < p->nbufs; b++)
      m->off[f][b] = items[b].offset, m->size[f][b] = items[b].size;
    free(items);
  }
  if (total > 1e14) {
    mlcrt_seterr(err, MLCRT_EINVAL,
                 "%s_create: the activations for these maximum dims would need over 100 TB", M);
    jitcu_destroy(m);
    return NULL;
  }
  const int nin = g->ninputs + (c->train_plan ? g->ntrain_inputs : 0);
  const size_t wbytes = up256(mm->pr->weight_bytes);
  size_t dev = wbytes + up256(arena) + 256;
  m->in = calloc((size_t)nin + 1, sizeof(uint64_t));
  size_t *in_bytes = m->in_bytes = calloc((size_t)nin + 1, sizeof(size_t));
  m->host = calloc(1, wbytes ? wbytes : 1);
  if (!m->host) { /* the host copy of the weights (load, save, init) */
    mlcrt_seterr(err, MLCRT_ENOMEM,
                 "%s_create: cannot allocate %zu bytes of weights and %zu of activations (out of "
                 "host memory)",
                 M, (size_t)c->plan->weight_bytes, up256(arena));
    jitcu_destroy(m);
    return NULL;
  }
  if (!m->in || !in_bytes) {
    mlcrt_seterr(err, MLCRT_ENOMEM, "%s_create: out of memory", M);
    jitcu_destroy(m);
    return NULL;
  }
  for (int i = 0; i < nin; i++) {
    const Node *n = &g->nodes[i < g->ninputs ? g->inputs[i] : g->train_inputs[i - g->ninputs]];
    in_bytes[i] = up256((size_t)dim_eval(type_numel(&n->ty), m->max) * dtype_size(n->ty.dt));
    dev += in_bytes[i];
  }
  int rc = jitcu_alloc(mm->cu, dev, &m->dev, m->err);
  if (rc) { /* as the nvcc build says it */
    mlcrt_seterr(err, rc,
                 "%s_create: cannot allocate %zu bytes of weights and %zu of activations (%s)", M,
                 (size_t)c->plan->weight_bytes, up256(arena), m->err);
    jitcu_destroy(m);
    return NULL;
  }
  m->dev_bytes = dev;
  uint64_t d = m->dev;
  m->weights = d, d += wbytes;
  m->arena = d, d += up256(arena);
  m->status = d, d += 256;
  for (int i = 0; i < nin; i++) m->in[i] = d, d += in_bytes[i];
  /* weights: the embedded ones, else zeros (optimizer state and step zero) */
  if (mm->embedded) memcpy(m->host, mm->embedded, c->plan->weight_bytes);
  jt_phase("create: allocate", &t);
  /* all zeros (the host mirror is calloc'd): only embedded weights are copied */
  if ((rc = jitcu_memset(mm->cu, m->dev, dev, m->err)) || (mm->embedded && (rc = push(m)))) {
    mlcrt_seterr(err, rc, "%s_create: %s", M, m->err);
    jitcu_destroy(m);
    return NULL;
  }
  jt_phase("create: zero", &t);
  return m;
}

void jitcu_destroy(JitCuInst *m) {
  if (!m) return;
  if (m->dev) jitcu_free(m->mm->cu, m->dev);
  for (int f = 0; f < 3; f++) free(m->off[f]), free(m->size[f]);
  free(m->in_bytes);
  free(m->in);
  free(m->host);
  free(m);
}

const char *jitcu_last_error(const JitCuInst *m) {
  return m ? m->err : "NULL instance";
}
char *jitcu_err(JitCuInst *m) {
  return m->err;
}

/* A fresh optimizer: everything after the params and buffers zero. */
static void reset_optimizer(JitCuInst *m) {
  const size_t pb = m->mm->c->plan->weight_bytes;
  if (m->mm->c->train_plan) memset(m->host + pb, 0, m->mm->pr->weight_bytes - pb);
}

int jitcu_load(JitCuInst *m, const char *path) {
  const char *M = m->mm->c->g->name;
  if (!path) return mlcrt_seterr(m->err, MLCRT_EINVAL, "%s_load: NULL path", M);
  int rc = pull(m);
  if (rc) return rc;
  reset_optimizer(m);
  rc = mlcrt_load_safetensors(path, m->mm->tensors, m->mm->ntensors, m->host, m->err);
  return rc ? rc : push(m);
}

int jitcu_save(JitCuInst *m, const char *path) {
  if (!path) return MLCRT_EINVAL;
  int rc = pull(m);
  return rc ? rc : mlcrt_save_safetensors(path, m->mm->tensors, m->mm->ntensors, m->host, m->err);
}

int jitcu_init(JitCuInst *m, uint64_t seed) {
  int rc = pull(m);
  if (rc) return rc;
  reset_optimizer(m);
  if (m->mm->c->train_plan) m->seed = seed;
  rc = mlcrt_init_tensors(m->mm->tensors, m->mm->ntensors, m->host, seed);
  return rc ? rc : push(m);
}

void jitcu_set_seed(JitCuInst *m, uint64_t seed) {
  m->seed = seed;
}

int64_t jitcu_step(JitCuInst *m) {
  int64_t step = 0;
  if (!m->mm->c->train_plan ||
      jitcu_copy(m->mm->cu, m->weights + m->mm->pr->step_off, &step, sizeof step, false, m->err))
    return 0;
  return step;
}

int jitcu_save_checkpoint(JitCuInst *m, const char *path) {
  if (!path) return MLCRT_EINVAL;
  int rc = pull(m);
  return rc ? rc : mlcrt_save_safetensors(path, m->mm->ckpt, m->mm->nckpt, m->host, m->err);
}

int jitcu_load_checkpoint(JitCuInst *m, const char *path) {
  const char *M = m->mm->c->g->name;
  if (!path) return mlcrt_seterr(m->err, MLCRT_EINVAL, "%s_load_checkpoint: NULL path", M);
  int rc = pull(m);
  if (rc) return rc;
  rc = mlcrt_load_safetensors(path, m->mm->ckpt, m->mm->nckpt, m->host, m->err);
  return rc ? rc : push(m);
}

int jitcu_region(const JitCuInst *m, int fi, const CuArg *a, uint64_t *start, uint64_t *bytes) {
  switch (a->base) {
  case CUB_WEIGHTS:
    *start = m->weights, *bytes = m->mm->pr->weight_bytes;
    return 1;
  case CUB_ARENA:
    *start = m->arena + m->off[fi][a->index], *bytes = m->size[fi][a->index];
    return 1;
  case CUB_INPUT:
    *start = m->in[a->index], *bytes = m->in_bytes[a->index];
    return 1;
  case CUB_STATUS:
    *start = m->status, *bytes = CU_STATUS_WORDS * sizeof(int64_t);
    return 1;
  default:
    return 0;
  }
}
