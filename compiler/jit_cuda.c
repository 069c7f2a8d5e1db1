/* compiler/jit_cuda.c — the CUDA JIT plumbing: CUDA C compiled in-process to
 * PTX with NVRTC (cached on disk), PTX loaded and kernels launched with the
 * CUDA driver API.
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
 * PTX cache: BASE/ptx/<16 hex digits>.ptx, keyed by a hash of the source, the
 * in-memory headers, the options, the architecture and NVRTC's version.  The
 * file's first line is "// mlc-ptx SIZE CHECKSUM" of the rest; it is written
 * to a temporary file and renamed, and one that does not match its first
 * line is compiled again and replaced, never loaded.
 */
#include "mlcc.h"
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
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
  if (!ok) {
    dlclose(l);
    mlcrt_seterr(err, MLCRT_EUNSUPPORTED, "the NVRTC library found lacks a function mlc needs");
    return false;
  }
  return true;
}

/* The PTX file's first line and its checksum over the rest. */
static uint64_t ptx_sum(const char *ptx, size_t n) {
  return build_hash(BUILD_HASH_INIT, ptx, n);
}

/* Reads a cache entry; NULL if absent or damaged.  Its text starts with a
 * line "// mlc-name LOWERED" per name expression (a PTX comment). */
static char *ptx_read(Arena *A, const char *path, int nnames, const char **lowered) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  unsigned long long size, sum;
  char *ptx = NULL;
  if (fscanf(f, "// mlc-ptx %llu %llx", &size, &sum) == 2 && fgetc(f) == '\n' &&
      size < ((size_t)1 << 34)) {
    ptx = arena_alloc(A, (size_t)size + 1);
    if (fread(ptx, 1, (size_t)size, f) != size || fgetc(f) != EOF ||
        ptx_sum(ptx, (size_t)size) != sum)
      ptx = NULL;
  }
  fclose(f);
  char *p = ptx;
  for (int i = 0; p && i < nnames; i++) {
    char *nl = strchr(p, '\n');
    if (strncmp(p, "// mlc-name ", 12) || !nl) return NULL;
    lowered[i] = arena_printf(A, "%.*s", (int)(nl - p - 12), p + 12);
    p = nl + 1;
  }
  return ptx;
}

/* Writes an entry via a temporary file and rename (best effort: a cache that
 * cannot be written only costs the next start a compile). */
static void ptx_write(Arena *A, const char *dir, const char *path, const char *ptx) {
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
  size_t n = strlen(ptx);
  fprintf(f, "// mlc-ptx %zu %016llx\n", n, (unsigned long long)ptx_sum(ptx, n));
  bool ok = fwrite(ptx, 1, n, f) == n;
  ok &= fclose(f) == 0;
  if (!ok || rename(tmp, path) != 0) unlink(tmp);
}

char *jitcu_ptx(Arena *A, const char *name, const char *src, const JitCuHeader *h, int nh,
                const char *const *opts, int nopts, const char *const *names, int nnames,
                const char **lowered, int arch, bool *cached, char *err) {
  if (cached) *cached = false;
  /* the key needs no NVRTC: loading it costs 40-100 ms, too much for a warm
   * start (so a new toolkit reuses the PTX cached by an older one) */
  uint64_t key = build_hash_str(BUILD_HASH_INIT, "ptx");
  key = build_hash_str(build_hash_str(key, name), src);
  for (int i = 0; i < nh; i++) key = build_hash_str(build_hash_str(key, h[i].name), h[i].text);
  for (int i = 0; i < nopts; i++) key = build_hash_str(key, opts[i]);
  for (int i = 0; i < nnames; i++) key = build_hash_str(build_hash_str(key, "name"), names[i]);
  key = build_hash(key, &arch, sizeof arch);
  const char *dir = arena_printf(A, "%s/ptx", build_cache_dir(A));
  const char *path = arena_printf(A, "%s/%016llx.ptx", dir, (unsigned long long)key);
  char *ptx = ptx_read(A, path, nnames, lowered);
  if (ptx) {
    if (cached) *cached = true;
    return ptx;
  }
  Nvrtc nv;
  if (!nvrtc_open(&nv, err)) return NULL;
  /* a GPU newer than this NVRTC: its newest virtual architecture (the driver
   * compiles PTX for later GPUs) */
  int nsup = 0;
  if (nv.GetNumSupportedArchs && nv.GetSupportedArchs && !nv.GetNumSupportedArchs(&nsup) &&
      nsup > 0 && nsup < 256) {
    int sup[256], best = 0;
    nv.GetSupportedArchs(sup);
    for (int i = 0; i < nsup; i++)
      if (sup[i] <= arch && sup[i] > best) best = sup[i];
    if (best) arch = best;
  }
  const char *archopt = arena_printf(A, "--gpu-architecture=compute_%d", arch);
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
    return NULL;
  }
  for (int i = 0; i < nnames && !rc; i++) rc = nv.AddNameExpression(prog, names[i]);
  if (!rc) rc = nv.CompileProgram(prog, nopts + 1, o);
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
        return NULL;
      }
      lowered[i] = arena_strdup(A, low);
      names_text = arena_printf(A, "%s// mlc-name %s\n", names_text, low);
    }
    size_t n = 0;
    nv.GetPTXSize(prog, &n);
    char *code = arena_alloc(A, n + 1);
    nv.GetPTX(prog, code);
    code[n] = 0;
    ptx = arena_printf(A, "%s%s", names_text, code);
    ptx_write(A, dir, path, ptx);
  }
  nv.DestroyProgram(&prog);
  return ptx;
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
  int (*MemFree)(CUdeviceptr);
  int (*MemcpyHtoD)(CUdeviceptr, const void *, size_t);
  int (*MemcpyDtoH)(void *, CUdeviceptr, size_t);
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
            SYM(l, cu->MemcpyDtoH, "cuMemcpyDtoH_v2");
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

int jitcu_module_load(JitCuda *cu, const char *ptx, void **module, char *err) {
  int rc = cu->CtxSetCurrent(cu->ctx);
  if (!rc) rc = cu->ModuleLoadData((CUmodule *)module, ptx);
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
  int rc = cu->MemAlloc(&p, bytes ? bytes : 1);
  *dptr = p;
  return rc ? cu_fail(cu, rc, err, "cannot allocate device memory (cuMemAlloc)") : MLCRT_OK;
}

void jitcu_free(JitCuda *cu, uint64_t dptr) {
  if (dptr) cu->MemFree(dptr);
}

int jitcu_copy(JitCuda *cu, uint64_t dptr, void *host, size_t bytes, bool to_device, char *err) {
  int rc = to_device ? cu->MemcpyHtoD(dptr, host, bytes) : cu->MemcpyDtoH(host, dptr, bytes);
  return rc ? cu_fail(cu, rc, err, "device copy failed (cuMemcpy)") : MLCRT_OK;
}
