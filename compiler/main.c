/* compiler/main.c — the `mlc` command line.
 *
 *   mlc MODEL.mdl -o model.c        compile to C (model.c + model.h)
 *   mlc check MODEL.mdl             parse and type-check
 *   mlc run MODEL.mdl --input x=x.npy [--weights W] [--out DIR]
 *   mlc train MODEL.mdl --data NAME=FILE ... --epochs N --batch B   train
 *
 * Exit status: 0 success, 1 an error in the model or its files, 2 usage.
 */
#include "mlc.h"
#include "mlcc.h"
#include "mlcrt.h"
#include <time.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define MLC_VERSION "0.1.0"

static const char *usage_main =
    "usage: mlc MODEL.mdl -o OUT.c [options]    compile a model to C (OUT.c and OUT.h)\n"
    "       mlc MODEL.mdl -o OUT.cu [options]   compile a model to CUDA (OUT.cu and OUT.h)\n"
    "       mlc check MODEL.mdl [options]        parse and type-check only\n"
    "       mlc run MODEL.mdl --input NAME=FILE.npy ... [options]\n"
    "                                            compile, build, run; writes DIR/<output>.npy\n"
    "       mlc train MODEL.mdl --data NAME=FILE ... --epochs N --batch B\n"
    "                                            train with reverse-mode gradients\n"
    "       mlc COMMAND --help                   help on one command\n"
    "\n"
    "common options:\n"
    "  --model NAME       the model to compile when the file defines several\n"
    "  -O0, -O2           optimisation level (default -O2: fusion and buffer reuse;\n"
    "                     -O0: one kernel per operation, no reuse)\n"
    "  --no-pack-weights  -O2 without the linear and convolution weights run keeps\n"
    "                     packed for the GEMM (they cost about their size again)\n"
    "  --emit-ir          print the typed IR to standard output\n"
    "  --report           print the fused kernels (ops, FLOPs, bytes moved) and the\n"
    "                     arena at -O2 and -O0; --dim NAME=V sets a symbolic dim (default 1)\n"
    "  --dot FILE         write a Graphviz picture of the graph, fused kernels as clusters\n"
    "  --seed N           seed for the initialisers (mlc run without --weights)\n"
    "  --repeat N         mlc run: time N more runs, print the median and minimum\n"
    "  --threads N        threads of mlc run / mlc train (default: $MLCRT_NUM_THREADS,\n"
    "                     else one per CPU); a thread count gives bit-identical results\n"
    "  --embed-weights W  embed the weights of W.safetensors as const data (OUT_weights.c)\n"
    "  --device cpu|cuda  where mlc run / mlc train run the model (default cpu)\n"
    "  --precision P      CUDA GEMMs: f32 (default, IEEE float32) or tf32 (tensor cores)\n"
    "  --version          print the version\n"
    "\n"
    "Errors in a model are reported as FILE:LINE:COL: error: MESSAGE.\n"
    "Exit status: 0 on success, 1 on an error in the model or a file, 2 on a usage error.\n";

static const char *usage_compile =
    "usage: mlc MODEL.mdl -o OUT.c|OUT.cu [--model NAME] [-O0|-O2] [--no-pack-weights] [--emit-ir] [--embed-weights W.safetensors]\n"
    "                     [--target c|cuda] [--precision f32|tf32] [--report [--dim NAME=V ...]] [--dot FILE]\n"
    "\n"
    "Compiles the model to a C translation unit OUT.c and its header OUT.h, with\n"
    "the API NAME_create / _load / _save / _init / _run / _last_error / _destroy.\n"
    "Build the result with any C11 compiler and link libmlcrt and libm:\n"
    "  cc -O2 -c OUT.c -I<mlc>/runtime && cc app.c OUT.o -lmlcrt -lm -pthread\n"
    "With --embed-weights W.safetensors the weights (checked against the model as\n"
    "NAME_load checks them) are also written as const data to OUT_weights.c, a\n"
    "second translation unit to build with OUT.c; NAME_create then starts from them.\n"
    "--report prints the fused kernels and the arena (see mlc check --help); --dot\n"
    "FILE writes a Graphviz picture of them.\n"
    "\n"
    "An output name ending in .cu (or --target cuda) gives CUDA instead: OUT.cu and\n"
    "the same OUT.h, run on a GPU.  Build it with nvcc and link libmlcrt_cuda:\n"
    "  nvcc -O3 -c OUT.cu -I<mlc>/runtime -I<mlc>/runtime/cuda\n"
    "  cc app.c OUT.o -lmlcrt_cuda -lmlcrt -lcublas -lcudart -lstdc++ -lm -pthread\n"
    "--precision tf32 lets cuBLAS use TF32 tensor cores for GEMMs (default f32:\n"
    "IEEE float32; bf16 and f16 are not implemented yet).\n";

static const char *usage_check =
    "usage: mlc check MODEL.mdl [--model NAME] [--emit-ir] [--embed-weights W.safetensors]\n"
    "                 [--report [--dim NAME=V ...]] [--dot FILE]\n"
    "\n"
    "Parses and type-checks the model and reports every error found.\n"
    "With --embed-weights, also checks that W fits the model (as mlc -o would).\n"
    "With --emit-ir, prints the typed IR of the model.\n"
    "With --report, prints the kernels of run (and of the train step): the ops each\n"
    "fused group computes, its FLOPs and bytes moved, then totals and the arena bytes\n"
    "at -O2 and -O0, for symbolic dims set by --dim NAME=V (default 1).  With --dot\n"
    "FILE, writes the graph of run for Graphviz (dot -Tsvg FILE), fused groups as clusters.\n";

static const char *usage_run =
    "usage: mlc run MODEL.mdl --input NAME=FILE.npy [--input ...] [--weights W.safetensors]\n"
    "               [--seed N] [--out DIR] [--model NAME] [-O0|-O2] [--no-pack-weights] [--device cpu|cuda] [--threads N]\n"
    "               [--repeat N] [--embed-weights W.safetensors] [--precision f32|tf32] [--jit]\n"
    "\n"
    "Compiles the model to C, builds it with the system C compiler ($CC or cc) into a\n"
    "cache ($MLC_CACHE_DIR, else $XDG_CACHE_HOME/mlc, else ~/.cache/mlc) keyed by a\n"
    "hash of the generated code and the compiler and flags ($MLC_CFLAGS adds flags),\n"
    "runs it on the .npy inputs and writes each output to\n"
    "DIR/<output>.npy (DIR defaults to the current directory).  Without --weights the\n"
    "parameters come from the model's initialisers seeded with --seed (default 0).\n"
    "--repeat N times N more runs (host to host) and prints the median and minimum.\n"
    "\n"
    "--device cuda compiles the model to CUDA instead, builds it with nvcc ($MLC_NVCC,\n"
    "else the nvcc mlc was built with, else PATH; $MLC_CUDA_ARCH lists the GPU\n"
    "architectures, default 80,90; $MLC_NVCCFLAGS adds flags) with libmlcrt_cuda and\n"
    "runs it on CUDA device 0.  Without a CUDA device or driver it fails with exit\n"
    "status 1 and says which.  --precision tf32 lets cuBLAS use TF32 tensor cores.\n"
    "\n"
    "With --jit the model runs inside mlc through libmlc's JIT (mlc.h): the same\n"
    "code built as a shared object in the same cache and loaded with dlopen; the\n"
    "outputs are bit-identical.  --jit --device cuda compiles the kernels with NVRTC\n"
    "and runs them through the CUDA driver: no nvcc and no C compiler (docs/jit.md).\n";

static const char *usage_train =
    "usage: mlc train MODEL.mdl --data NAME=FILE ... --epochs N --batch B [options]\n"
    "\n"
    "Compiles the model and its train section (forward, reverse-mode gradients,\n"
    "optimizer) to C, builds it and trains on the data.  Each --data names a model or\n"
    "train-section input and a .npy or IDX file (.gz too, as Fashion-MNIST ships);\n"
    "all files hold the same number of samples along their first dim.\n"
    "\n"
    "  --data NAME=FILE        training data for one input (repeat for each input)\n"
    "  --eval NAME=FILE,...    evaluation data: loss (and accuracy) after each epoch\n"
    "  --epochs N --batch B    the last partial batch is used, as PyTorch does\n"
    "  --shuffle               shuffle each epoch (seeded by --seed); else file order\n"
    "  --seed N                initialiser and shuffle seed (default 0)\n"
    "  --weights W             start from these weights instead of the initialisers\n"
    "  --save W                write the weights after each epoch\n"
    "  --checkpoint C          checkpoint after each epoch and on Ctrl-C\n"
    "                          (default: W.ckpt.safetensors beside --save)\n"
    "  --resume C              continue exactly from a checkpoint\n"
    "  --threads N             threads (default: $MLCRT_NUM_THREADS, else one per CPU)\n"
    "  --device cpu|cuda       cuda: build with nvcc and train on CUDA device 0\n"
    "                          (see mlc run --help); --precision f32|tf32 with cuda\n"
    "  --jit                   train inside mlc through libmlc's JIT (mlc.h): the same\n"
    "                          loop and code, loaded as a shared object; bit-identical\n"
    "  --model NAME, -O0, -O2\n"
    "\n"
    "A progress bar shows batch, loss, samples/s and ETA on a terminal (plain lines\n"
    "otherwise).  A non-finite loss stops training with an error naming the epoch\n"
    "and step; the last checkpoint is kept.\n";

static int usage_error(const char *cmd, const char *fmt, const char *arg) {
  fprintf(stderr, "mlc%s%s: error: ", cmd ? " " : "", cmd ? cmd : "");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\n(see 'mlc %s%s--help')\n", cmd ? cmd : "", cmd ? " " : "");
  return 2;
}

typedef struct Args {
  const char *cmd; /* NULL = compile */
  const char *model_path, *out, *weights, *out_dir, *device, *embed;
  const char *target; /* --target c|cuda (the output name's suffix must agree) */
  const char *precision; /* --precision f32|tf32|bf16|f16 (CUDA) */
  const char *inputs[64];
  int ninputs;
  bool emit_ir, help, jit;
  bool report;     /* --report: fusion groups, FLOPs, bytes, arena */
  const char *dot; /* --dot FILE: Graphviz picture of the groups */
  const char *dims[MAX_SYMS]; /* --dim NAME=V for --report */
  int ndims;
  long repeat; /* mlc run --repeat N: time N more runs */
  Options o;
} Args;

static bool streq(const char *a, const char *b) { return strcmp(a, b) == 0; }

/* --threads N: the generated code's thread team size, passed on to it as
 * $MLCRT_NUM_THREADS (the runtime's default).  False if N is not 1..64. */
static bool set_threads(const char *v) {
  char *end;
  errno = 0;
  long n = strtol(v, &end, 10);
  if (errno || *end || !*v || n < 1 || n > 64) return false;
  setenv("MLCRT_NUM_THREADS", v, 1);
  return true;
}

/* --precision V of a CUDA model: -1 (and *p set) when V is known and done,
 * else the exit status after the message. */
static int parse_precision(const char *cmd, const char *v, CuPrecision *p) {
  *p = CU_PREC_F32;
  if (!v || streq(v, "f32")) return -1;
  if (streq(v, "tf32")) {
    *p = CU_PREC_TF32;
    return -1;
  }
  if (streq(v, "bf16") || streq(v, "f16")) {
    fprintf(stderr, "mlc%s%s: error: --precision %s is not implemented yet (f32 and tf32 are)\n", cmd ? " " : "",
            cmd ? cmd : "", v);
    return 1;
  }
  return usage_error(cmd, "--precision must be f32, tf32, bf16 or f16, got '%s'", v);
}

/* Parses options common to the commands.  Returns -1 when parsing may go on,
 * else the exit status. */
static int parse_args(int argc, char **argv, int start, Args *a) {
  for (int i = start; i < argc; i++) {
    const char *s = argv[i];
    const char *next = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED()                                                                                     \
  do {                                                                                             \
    if (!next) return usage_error(a->cmd, "option %s needs a value", s);                          \
    i++;                                                                                           \
  } while (0)
    if (streq(s, "--help") || streq(s, "-h")) a->help = true;
    else if (streq(s, "-o")) { NEED(); a->out = next; }
    else if (streq(s, "--model")) { NEED(); a->o.model = next; }
    else if (streq(s, "--weights")) { NEED(); a->weights = next; }
    else if (streq(s, "--out")) { NEED(); a->out_dir = next; }
    else if (streq(s, "--device")) { NEED(); a->device = next; }
    else if (streq(s, "--embed-weights")) { NEED(); a->embed = next; }
    else if (streq(s, "--precision")) { NEED(); a->precision = next; }
    else if (streq(s, "--input")) {
      NEED();
      if (a->ninputs == 64) return usage_error(a->cmd, "too many --input options%s", "");
      if (!strchr(next, '=')) return usage_error(a->cmd, "--input needs NAME=FILE.npy, got '%s'", next);
      a->inputs[a->ninputs++] = next;
    } else if (streq(s, "--seed")) {
      NEED();
      char *end;
      errno = 0;
      unsigned long long v = strtoull(next, &end, 10);
      if (errno || *end || !*next || next[0] == '-') return usage_error(a->cmd, "--seed needs a non-negative integer, got '%s'", next);
      a->o.seed = v;
    } else if (streq(s, "--repeat")) {
      NEED();
      char *end;
      errno = 0;
      a->repeat = strtol(next, &end, 10);
      if (errno || *end || !*next || a->repeat < 1 || a->repeat > 100000000)
        return usage_error(a->cmd, "--repeat needs a positive integer, got '%s'", next);
    } else if (streq(s, "--threads")) {
      NEED();
      if (!set_threads(next)) return usage_error(a->cmd, "--threads needs an integer from 1 to 64, got '%s'", next);
    } else if (streq(s, "-O0")) a->o.opt_level = 0;
    else if (streq(s, "-O2") || streq(s, "-O")) a->o.opt_level = 2;
    else if (streq(s, "--no-pack-weights")) a->o.no_pack = true;
    else if (streq(s, "--emit-ir")) a->emit_ir = true;
    else if (streq(s, "--jit")) a->jit = true;
    else if (streq(s, "--target")) {
      NEED();
      if (!streq(next, "c") && !streq(next, "cuda")) return usage_error(a->cmd, "--target must be c or cuda, got '%s'", next);
      a->target = next;
    } else if (streq(s, "--report")) a->report = true;
    else if (streq(s, "--dot")) { NEED(); a->dot = next; }
    else if (streq(s, "--dim")) {
      NEED();
      if (a->ndims == MAX_SYMS) return usage_error(a->cmd, "too many --dim options%s", "");
      if (!strchr(next, '=')) return usage_error(a->cmd, "--dim needs NAME=VALUE, got '%s'", next);
      a->dims[a->ndims++] = next;
    } else if (s[0] == '-' && s[1]) return usage_error(a->cmd, "unknown option '%s'", s);
    else if (!a->model_path) a->model_path = s;
    else return usage_error(a->cmd, "unexpected argument '%s' (one model file at a time)", s);
#undef NEED
  }
  return -1;
}

static bool write_file(const char *path, const char *text) {
  Diag d = {.echo = stderr};
  bool ok = build_write_file(&d, path, text);
  diag_free(&d);
  return ok;
}

/* Prints a runtime message "PATH: text" as "PATH: error: text". */
static void report_file_error(const char *path, const char *err) {
  size_t n = strlen(path);
  if (!strncmp(err, path, n) && !strncmp(err + n, ": ", 2)) fprintf(stderr, "%s: error: %s\n", path, err + n + 2);
  else fprintf(stderr, "%s: error: %s\n", path, err);
}

/* --embed-weights: the weights region image, checked against the model. */
static unsigned char *read_embedded(const Compiled *c, const char *path) {
  char err[MLCRT_ERRLEN];
  unsigned char *w;
  if (embed_weights_read(c->g, c->plan, path, &w, err)) {
    report_file_error(path, err);
    return NULL;
  }
  return w;
}

/* Writes the weights translation unit. */
static bool write_weights(const char *path, const Compiled *c, const char *wpath, const unsigned char *w) {
  FILE *f = fopen(path, "wb");
  bool ok = f && emitc_weights(f, c->g, wpath, w, c->plan->weight_bytes) == 0;
  if (f) ok &= fclose(f) == 0;
  if (!ok) fprintf(stderr, "%s: error: cannot write: %s\n", path, strerror(errno));
  return ok;
}

static bool exists(const char *p) { return access(p, F_OK) == 0; }

/* The child being waited for: SIGINT/SIGTERM sent to mlc are passed on to it
 * (the trainer saves a checkpoint on Ctrl-C), and mlc waits for it to end. */
static volatile pid_t child_pid;
static void forward_signal(int sig) {
  if (child_pid > 0) kill(child_pid, sig);
}

static int spawn_wait(char **argv, bool quiet_stdout) {
  pid_t pid;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (quiet_stdout) posix_spawn_file_actions_adddup2(&fa, 2, 1);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t def;
  sigemptyset(&def);
  sigaddset(&def, SIGINT);
  sigaddset(&def, SIGTERM);
  posix_spawnattr_setsigdefault(&attr, &def);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF);
  struct sigaction sa = {0}, old_int, old_term;
  sa.sa_handler = forward_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  int rc = posix_spawnp(&pid, argv[0], &fa, &attr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    fprintf(stderr, "mlc: error: cannot run %s: %s\n", argv[0], strerror(rc));
    return -1;
  }
  child_pid = pid;
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) {
      child_pid = 0;
      sigaction(SIGINT, &old_int, NULL);
      sigaction(SIGTERM, &old_term, NULL);
      return -1;
    }
  child_pid = 0;
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  fprintf(stderr, "mlc: error: %s was killed by signal %d\n", argv[0], WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  return 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

/* Builds the generated model + harness in the cache (build.c) unless there
 * already, and returns the path of the executable. */
static const char *build_run(Arena *A, EmitC *e, const char *harness, const Compiled *c, const char *wpath,
                             const unsigned char *w) {
  const BuildFile files[] = {{"model.c", e->c, true}, {"model.h", e->h, false}, {"main.c", harness, true}};
  BuildSpec s = {.files = files, .nfiles = 3, .out_name = "run", .c = c, .weights_path = wpath, .weights = w};
  Diag d = {.echo = stderr};
  const char *exe = build_cached(A, &s, &d, NULL);
  diag_free(&d);
  return exe;
}

/* ---- --device cuda: the model as CUDA (model.cu) built with nvcc ------------------------ */
/* The CUDA build of mlc run / mlc train: model.cu (emitcu_model_prec) is
 * compiled by nvcc, the harness (plain C, the CPU build's) by $CC, and both
 * linked by nvcc with libmlcrt_cuda, libmlcrt, cuBLAS and the CUDA runtime,
 * into the same cache as the CPU builds.  The cache key adds nvcc's path and
 * version, its flags and the GPU architectures.
 *   $MLC_NVCC            nvcc (default: the one mlc was built with, else PATH)
 *   $MLC_CUDA_ARCH       GPU architectures, e.g. "90" or "80,90" (default
 *                        80,90: sm_80 and sm_90 code plus compute_90 PTX, which
 *                        the driver compiles for newer GPUs), or "native"
 *   $MLC_NVCCFLAGS       more nvcc flags (space-separated)
 *   $MLC_RUNTIME_CUDA_LIB, $MLC_RUNTIME_CUDA_INCLUDE   libmlcrt_cuda.a and the
 *                        folder of mlcrt_cuda.h / mlcrt_kernels.cuh */
#define BASE_NVCCFLAGS "-O3 -std=c++17"

#ifndef MLC_NVCC
#define MLC_NVCC ""
#endif
#ifndef MLC_BUILD_CUDA_LIB
#define MLC_BUILD_CUDA_LIB ""
#endif
#ifndef MLC_BUILD_CUDA_INCLUDE
#define MLC_BUILD_CUDA_INCLUDE ""
#endif

/* The output of `nvcc --version` (part of the cache key), or NULL if nvcc
 * does not run. */
static char *nvcc_version(Arena *A, const char *nvcc) {
  if (strchr(nvcc, '\'')) return NULL;
  FILE *p = popen(arena_printf(A, "'%s' --version 2>/dev/null", nvcc), "r");
  if (!p) return NULL;
  char buf[4096];
  size_t n = fread(buf, 1, sizeof buf - 1, p);
  buf[n] = 0;
  int st = pclose(p);
  return st == 0 && n ? arena_strdup(A, buf) : NULL;
}

/* The nvcc flags for the GPU architectures of $MLC_CUDA_ARCH (space-separated
 * into argv by the caller), or NULL if the variable is malformed. */
static const char *cuda_arch_flags(Arena *A, const char *arch) {
  if (streq(arch, "native") || streq(arch, "all") || streq(arch, "all-major")) return arena_printf(A, "-arch=%s", arch);
  char *list = arena_strdup(A, arch), *last = NULL;
  const char *flags = "";
  for (char *t = strtok(list, ",; "); t; t = strtok(NULL, ",; ")) {
    for (const char *q = t; *q; q++)
      if (*q < '0' || *q > '9') return NULL;
    if (strlen(t) < 2 || strlen(t) > 4) return NULL;
    flags = arena_printf(A, "%s%s-gencode arch=compute_%s,code=sm_%s", flags, *flags ? " " : "", t, t);
    last = t;
  }
  if (!last) return NULL;
  /* PTX of the newest one, for GPUs newer than the list */
  return arena_printf(A, "%s -gencode arch=compute_%s,code=compute_%s", flags, last, last);
}

/* Like build_cached for a CUDA model: returns the executable, or NULL after
 * printing why (no nvcc, an mlc built without CUDA, a failed build). */
static const char *build_cached_cuda(Arena *A, const Compiled *c, bool train, CuPrecision prec,
                                     const char *wpath, const unsigned char *w) {
  const char *cmdname = train ? "mlc train" : "mlc run";
  const char *inc, *lib;
  build_runtime_paths(A, &inc, &lib);
  const char *nvcc = getenv("MLC_NVCC");
  if (!nvcc || !*nvcc) nvcc = *MLC_NVCC && exists(MLC_NVCC) ? MLC_NVCC : "nvcc";
  char *version = nvcc_version(A, nvcc);
  if (!version) {
    fprintf(stderr, "%s: error: --device cuda needs nvcc from the CUDA toolkit (tried '%s'); set MLC_NVCC\n", cmdname, nvcc);
    return NULL;
  }
  /* libmlcrt_cuda: $MLC_RUNTIME_CUDA_LIB, else beside libmlcrt (an installed
   * mlc), else the build tree's */
  const char *culib = getenv("MLC_RUNTIME_CUDA_LIB"), *cuinc = getenv("MLC_RUNTIME_CUDA_INCLUDE");
  if (!culib || !*culib) {
    char *beside = arena_strdup(A, lib), *slash = strrchr(beside, '/');
    if (slash) *slash = 0;
    culib = arena_printf(A, "%s/libmlcrt_cuda.a", slash ? beside : ".");
    const char *built = MLC_BUILD_CUDA_LIB; /* "" when mlc was built without CUDA */
    if (!exists(culib) && built[0]) culib = built;
  }
  if (!cuinc || !*cuinc) cuinc = exists(arena_printf(A, "%s/mlcrt_cuda.h", inc)) ? inc : MLC_BUILD_CUDA_INCLUDE;
  if (!exists(culib) || !exists(arena_printf(A, "%s/mlcrt_kernels.cuh", cuinc))) {
    fprintf(stderr,
            "%s: error: --device cuda: this mlc was built without the CUDA runtime (libmlcrt_cuda.a not found: "
            "rebuild mlc where CMake finds the CUDA toolkit, or set MLC_RUNTIME_CUDA_LIB and MLC_RUNTIME_CUDA_INCLUDE)\n",
            cmdname);
    return NULL;
  }
  if (!exists(lib) || !exists(arena_printf(A, "%s/mlcrt.h", inc))) {
    fprintf(stderr, "mlc: error: cannot find the runtime library (tried %s and %s/mlcrt.h); set MLC_RUNTIME_LIB and MLC_RUNTIME_INCLUDE\n", lib, inc);
    return NULL;
  }
  const char *archenv = getenv("MLC_CUDA_ARCH");
  const char *arch = cuda_arch_flags(A, archenv && *archenv ? archenv : "80,90");
  if (!arch) {
    fprintf(stderr, "%s: error: MLC_CUDA_ARCH must list compute capabilities like 80,90 (or be native), got '%s'\n", cmdname, archenv);
    return NULL;
  }
  const char *cc = getenv("CC");
  if (!cc || !*cc) cc = "cc";
  const char *nvflags = getenv("MLC_NVCCFLAGS");
  if (!nvflags) nvflags = "";
  /* $MLC_CFLAGS (e.g. the sanitizers of an instrumented libmlcrt) go to the
   * harness's compile and, through -Xcompiler, to the link */
  const char *cflags = getenv("MLC_CFLAGS");
  if (!cflags) cflags = "";
  EmitC e = emitcu_model_prec(c->g, c->plan, c->train_plan, c->eval_plan, "model.h", wpath, prec);
  const char *harness = train ? e.train_harness : e.harness;
  if (!harness) {
    fprintf(stderr, "%s: error: %s\n", c->g->source_path, e.train_why);
    return NULL;
  }
  uint64_t h = build_hash_str(BUILD_HASH_INIT, "cuda");
  const char *keys[] = {e.c, e.h, harness, nvcc, version, cc, BUILD_CFLAGS, BASE_NVCCFLAGS, nvflags, cflags, arch, inc, cuinc};
  for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) h = build_hash_str(h, keys[i]);
  const char *libs[] = {lib, culib};
  for (int i = 0; i < 2; i++) build_hash_file(libs[i], &h);
  if (w) h = build_hash(build_hash_str(h, "embed"), w, c->plan->weight_bytes);
  const char *base = build_cache_dir(A);
  const char *dir = arena_printf(A, "%s/%016llx", base, (unsigned long long)h);
  const char *exe = arena_printf(A, "%s/run", dir);
  if (exists(exe)) return exe;
  if (build_mkdirs(base) != 0) {
    fprintf(stderr, "mlc: error: cannot create the cache directory %s: %s\n", base, strerror(errno));
    return NULL;
  }
  char *tmp = arena_printf(A, "%s/tmp.XXXXXX", base);
  if (!mkdtemp(tmp)) {
    fprintf(stderr, "mlc: error: cannot create a directory in %s: %s\n", base, strerror(errno));
    return NULL;
  }
  char *f[8] = {arena_printf(A, "%s/model.cu", tmp), arena_printf(A, "%s/model.h", tmp), arena_printf(A, "%s/main.c", tmp),
                arena_printf(A, "%s/model.o", tmp),  arena_printf(A, "%s/main.o", tmp),  arena_printf(A, "%s/run", tmp),
                arena_printf(A, "%s/model_weights.c", tmp), arena_printf(A, "%s/model_weights.o", tmp)};
  if (!write_file(f[0], e.c) || !write_file(f[1], e.h) || !write_file(f[2], harness)) return NULL;
  if (w && !write_weights(f[6], c, wpath, w)) return NULL;
  /* 1. the harness (and the embedded weights) with the C compiler */
  char *argv[96];
  int n = 0, rc = 0;
  for (int k = 0; k < (w ? 2 : 1) && rc == 0; k++) {
    const char *cc_args[] = {cc, "-std=c11", "-O3", "-I", inc, "-c", k ? f[6] : f[2], "-o", k ? f[7] : f[4]};
    for (n = 0; n < 9; n++) argv[n] = (char *)cc_args[n];
    char *fl = arena_strdup(A, cflags);
    for (char *t = strtok(fl, " "); t && n < 80; t = strtok(NULL, " ")) argv[n++] = t;
    argv[n] = NULL;
    rc = spawn_wait(argv, true);
  }
  /* 2. model.cu with nvcc */
  if (rc == 0) {
    n = 0;
    argv[n++] = (char *)nvcc;
    char *fl = arena_printf(A, "%s %s %s", BASE_NVCCFLAGS, arch, nvflags);
    for (char *t = strtok(fl, " "); t && n < 80; t = strtok(NULL, " ")) argv[n++] = t;
    const char *rest[] = {"-I", inc, "-I", cuinc, "-c", f[0], "-o", f[3]};
    for (int i = 0; i < 8; i++) argv[n++] = (char *)rest[i];
    argv[n] = NULL;
    rc = spawn_wait(argv, true);
  }
  /* 3. link with nvcc (the CUDA runtime statically, cuBLAS shared) */
  if (rc == 0) {
    n = 0;
    const char *link[] = {nvcc, f[3], f[4], culib, lib, "-lcublas", "-lm", "-lpthread", "-o", f[5]};
    for (int i = 0; i < 10; i++) argv[n++] = (char *)link[i];
    char *fl = arena_strdup(A, cflags);
    for (char *t = strtok(fl, " "); t && n < 80; t = strtok(NULL, " ")) {
      /* nvcc splits -Xcompiler at commas: -fsanitize=address,undefined goes as
       * -fsanitize=address and -fsanitize=undefined */
      char *eq = strchr(t, '=');
      if (!eq || !strchr(eq, ',')) {
        argv[n++] = arena_printf(A, "-Xcompiler=%s", t);
        continue;
      }
      for (const char *v = eq + 1; *v && n < 80;) { /* one flag per comma-separated value */
        size_t len = strcspn(v, ",");
        argv[n++] = arena_printf(A, "-Xcompiler=%.*s%.*s", (int)(eq + 1 - t), t, (int)len, v);
        v += len + (v[len] == ',');
      }
    }
    if (w) argv[n++] = f[7];
    argv[n] = NULL;
    rc = spawn_wait(argv, true);
  }
  if (rc != 0) {
    fprintf(stderr, "mlc: internal error: the generated CUDA did not build (%s exited with %d); sources kept in %s\n",
            argv[0], rc, tmp);
    return NULL;
  }
  unlink(f[3]), unlink(f[4]), unlink(f[7]); /* the objects */
  if (rename(tmp, dir) != 0) { /* another process won the race: use theirs */
    if (exists(exe)) {
      for (int i = 0; i < 8; i++) unlink(f[i]);
      rmdir(tmp);
      return exe;
    }
    return f[5];
  }
  return exe;
}

static double now_us(void) {
  struct timespec ts;
  timespec_get(&ts, TIME_UTC);
  return ts.tv_sec * 1e6 + ts.tv_nsec * 1e-3;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* mlc run --jit: the model compiled into this process through libmlc's JIT
 * (mlc.h), run as the generated harness (emit_c.c) runs it, with its
 * messages and exit statuses. */
static int run_jit(Arena *A, const Args *a, const Compiled *c, bool cuda, CuPrecision prec) {
  unsigned char *w = NULL;
  if (a->embed && !(w = read_embedded(c, a->embed))) return 1;
  Diag d = {.echo = stderr};
  mlc_model *mm = NULL;
  int rc = mlc_model_from_compiled_prec(c, a->embed, w, cuda ? MLCRT_CUDA : MLCRT_CPU, (int)prec, a->o.seed, &mm, &d);
  diag_free(&d);
  if (rc) {
    free(w);
    return rc;
  }
  int nin = mlc_count(mm, MLC_INPUT), nout = mlc_count(mm, MLC_OUTPUT), nd = mlc_num_dims(mm), bad = -1;
  mlcrt_array *in = arena_alloc(A, sizeof *in * (size_t)(nin + 1)), *outs = arena_alloc(A, sizeof *outs * (size_t)(nout + 1));
  const void **inp = arena_alloc(A, sizeof(void *) * (size_t)(nin + 1));
  void **outp = arena_alloc(A, sizeof(void *) * (size_t)(nout + 1));
  const char **paths = arena_alloc(A, sizeof(char *) * (size_t)(nin + 1));
  int64_t dims[MAX_SYMS] = {0}, maxd[MAX_SYMS];
  double *times = NULL;
  char err[MLCRT_ERRLEN];
  mlc_instance *m = NULL;
  mlc_tensor_info t;
  rc = 1;
  for (int i = 0; i < a->ninputs; i++) {
    const char *eq = strchr(a->inputs[i], '=');
    int k = -1;
    for (int j = 0; j < nin; j++)
      if (!mlc_tensor(mm, MLC_INPUT, j, &t) && strlen(t.name) == (size_t)(eq - a->inputs[i]) &&
          !strncmp(t.name, a->inputs[i], (size_t)(eq - a->inputs[i])))
        k = j;
    if (k < 0) {
      fprintf(stderr, "mlc run: error: model %s has no input named '%.*s'\n", mlc_model_name(mm), (int)(eq - a->inputs[i]),
              a->inputs[i]);
      rc = 2;
      goto done;
    }
    paths[k] = eq + 1;
  }
  for (int i = 0; i < nin; i++) {
    mlc_tensor(mm, MLC_INPUT, i, &t);
    if (!paths[i]) {
      fprintf(stderr, "mlc run: error: missing --input %s=FILE.npy (input %s: %s)\n", t.name, t.name, t.type);
      rc = 2;
      goto done;
    }
    if (mlcrt_npy_read(paths[i], &in[i], err)) {
      report_file_error(paths[i], err);
      goto done;
    }
    inp[i] = in[i].data;
  }
  if (mlc_bind_dims(mm, in, nin, dims, &bad, err)) {
    fprintf(stderr, "%s: error: %s\n", paths[bad], err);
    goto done;
  }
  for (int i = 0; i < nout; i++) {
    mlc_tensor(mm, MLC_OUTPUT, i, &t);
    outs[i].dtype = t.dtype;
    outs[i].rank = t.rank;
    outs[i].nbytes = (size_t)mlc_shape(mm, MLC_OUTPUT, i, dims, outs[i].shape) * mlcrt_dtype_size(t.dtype);
    outp[i] = outs[i].data = malloc(outs[i].nbytes ? outs[i].nbytes : 1);
    if (!outs[i].data) {
      fprintf(stderr, "mlc run: error: out of memory\n");
      goto done;
    }
  }
  for (int s = 0; s < nd; s++) maxd[s] = dims[s] > 0 ? dims[s] : 1;
  m = mlc_create(mm, maxd, NULL);
  if (!m) {
    fprintf(stderr, "mlc run: error: %s\n", mlc_last_error(NULL));
    goto done;
  }
  int st = a->weights ? mlc_load(m, a->weights) : a->embed ? 0 : mlc_init(m, a->o.seed);
  if (!st) st = mlc_run(m, dims, inp, outp);
  /* --repeat N: time N more runs (the first one warmed the caches) */
  times = a->repeat > 0 ? malloc((size_t)a->repeat * sizeof *times) : NULL;
  for (long r = 0; times && r < a->repeat && !st; r++) {
    double t0 = now_us();
    st = mlc_run(m, dims, inp, outp);
    times[r] = now_us() - t0;
  }
  if (st) {
    if (st == MLCRT_EINVAL || st == MLCRT_ESHAPE || !a->weights) fprintf(stderr, "mlc run: error: %s\n", mlc_last_error(m));
    else report_file_error(a->weights, mlc_last_error(m));
    goto done;
  }
  if (times) {
    qsort(times, (size_t)a->repeat, sizeof *times, cmp_double);
    fprintf(stderr, "mlc run: %ld runs: median %.1f us, min %.1f us\n", a->repeat, times[a->repeat / 2], times[0]);
  }
  const char *out_dir = a->out_dir ? a->out_dir : ".";
  if (build_mkdirs(out_dir) != 0) {
    fprintf(stderr, "mlc run: error: cannot create output directory %s: %s\n", out_dir, strerror(errno));
    goto done;
  }
  for (int i = 0; i < nout; i++) {
    mlc_tensor(mm, MLC_OUTPUT, i, &t);
    const char *p = arena_printf(A, "%s/%s.npy", out_dir, t.name);
    if (mlcrt_npy_write(p, &outs[i], err)) {
      report_file_error(p, err);
      goto done;
    }
  }
  rc = 0;
done:
  free(times);
  mlc_destroy(m);
  for (int i = 0; i < nin; i++) mlcrt_array_free(&in[i]);
  for (int i = 0; i < nout; i++) free(outs[i].data);
  mlc_model_free(mm);
  free(w);
  return rc;
}

static int cmd_run(Arena *A, Args *a, Compiled *c) {
  bool cuda = a->device && streq(a->device, "cuda");
  if (a->device && !cuda && !streq(a->device, "cpu"))
    return usage_error("run", "--device must be cpu or cuda, got '%s'", a->device);
  CuPrecision prec;
  int rc = parse_precision("run", a->precision, &prec);
  if (rc >= 0) return rc;
  if (a->precision && !cuda) return usage_error("run", "--precision %s needs --device cuda (the CPU computes in float32)", a->precision);
  if (a->jit) return run_jit(A, a, c, cuda, prec);
  unsigned char *w = NULL;
  if (a->embed && !(w = read_embedded(c, a->embed))) return 1;
  const char *exe;
  if (cuda) exe = build_cached_cuda(A, c, false, prec, a->embed, w);
  else {
    EmitC e = emitc_model_embed(c->g, c->plan, c->train_plan, c->eval_plan, "model.h", a->embed);
    exe = build_run(A, &e, e.harness, c, a->embed, w);
  }
  free(w);
  if (!exe) return 1;
  const char *out_dir = a->out_dir ? a->out_dir : ".";
  if (build_mkdirs(out_dir) != 0) {
    fprintf(stderr, "mlc run: error: cannot create output directory %s: %s\n", out_dir, strerror(errno));
    return 1;
  }
  char *argv[2 * 64 + 16];
  int n = 0;
  argv[n++] = (char *)exe;
  argv[n++] = "--out";
  argv[n++] = (char *)out_dir;
  if (a->weights) argv[n++] = "--weights", argv[n++] = (char *)a->weights;
  argv[n++] = "--seed";
  argv[n++] = arena_printf(A, "%llu", (unsigned long long)a->o.seed);
  for (int i = 0; i < a->ninputs; i++) argv[n++] = "--input", argv[n++] = (char *)a->inputs[i];
  if (a->repeat) argv[n++] = "--repeat", argv[n++] = arena_printf(A, "%ld", a->repeat);
  argv[n] = NULL;
  rc = spawn_wait(argv, false);
  return rc < 0 ? 1 : rc;
}

/* Removes the files of a temporary directory, then the directory. */
static void remove_dir(const char *dir, char **files, int n) {
  for (int i = 0; i < n; i++) unlink(files[i]);
  rmdir(dir);
}

/* mlc train MODEL.mdl [--model NAME] [-O0|-O2] [--device cpu] TRAIN OPTIONS...
 * The train options go to the generated harness (runtime/trainloop.c); IDX
 * files in --data/--eval are converted to .npy first. */
static int cmd_train(int argc, char **argv) {
  Args a = {0};
  a.cmd = "train";
  a.o.opt_level = 2;
  a.o.need_train = true;
  Arena *A = arena_new();
  char **fwd = arena_alloc(A, sizeof(char *) * (size_t)(argc + 4));
  char **tmpfiles = arena_alloc(A, sizeof(char *) * (size_t)(argc * 8 + 1));
  int nf = 1, ntmp = 0, rc = 1;
  char *tmpdir = NULL;
  for (int i = 2; i < argc; i++) {
    const char *s = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (streq(s, "--help") || streq(s, "-h")) {
      fputs(usage_train, stdout);
      arena_free(A);
      return 0;
    }
    if (streq(s, "-O0") || streq(s, "-O2")) { a.o.opt_level = s[2] - '0'; continue; }
    if (streq(s, "--no-pack-weights")) { a.o.no_pack = true; continue; }
    if (streq(s, "--shuffle")) { fwd[nf++] = (char *)s; continue; }
    if (streq(s, "--jit")) { a.jit = true; continue; }
    if (s[0] == '-' && !v) { rc = usage_error("train", "option %s needs a value", s); goto out; }
    if (streq(s, "--model")) { a.o.model = v; i++; continue; }
    if (streq(s, "--device")) {
      i++;
      if (streq(v, "cpu") || streq(v, "cuda")) { a.device = v; continue; }
      rc = usage_error("train", "--device must be cpu or cuda, got '%s'", v);
      goto out;
    }
    if (streq(s, "--precision")) { a.precision = v; i++; continue; }
    if (streq(s, "--data") || streq(s, "--eval")) {
      /* NAME=FILE[,NAME=FILE...]: IDX files become .npy in a temporary directory */
      char *copy = arena_strdup(A, v), *outv = arena_strdup(A, "");
      for (char *tok = strtok(copy, ","); tok; tok = strtok(NULL, ",")) {
        char *eq = strchr(tok, '=');
        if (!eq) { rc = usage_error("train", "%s needs NAME=FILE", s); goto out; }
        const char *path = eq + 1;
        if (idx_is_idx(path)) {
          char err[MLCRT_ERRLEN];
          if (!tmpdir) {
            const char *td = getenv("TMPDIR");
            tmpdir = arena_printf(A, "%s/mlc-train-XXXXXX", td && *td ? td : "/tmp");
            if (!mkdtemp(tmpdir)) {
              fprintf(stderr, "mlc train: error: cannot create a temporary directory: %s\n", strerror(errno));
              tmpdir = NULL;
              goto out;
            }
          }
          char *npy = arena_printf(A, "%s/%d.npy", tmpdir, ntmp);
          if (idx_to_npy(path, npy, err)) {
            size_t n = strlen(path); /* "PATH: REASON" as "PATH: error: REASON" */
            if (!strncmp(err, path, n) && !strncmp(err + n, ": ", 2)) fprintf(stderr, "%s: error: %s\n", path, err + n + 2);
            else fprintf(stderr, "mlc train: error: %s\n", err);
            goto out;
          }
          tmpfiles[ntmp++] = npy;
          path = npy;
        }
        *eq = 0;
        outv = arena_printf(A, "%s%s%s=%s", outv, *outv ? "," : "", tok, path);
      }
      fwd[nf++] = (char *)s;
      fwd[nf++] = outv;
      i++;
      continue;
    }
    if (streq(s, "--threads")) {
      if (!set_threads(v)) { rc = usage_error("train", "--threads needs an integer from 1 to 64, got '%s'", v); goto out; }
      i++;
      continue;
    }
    if (s[0] == '-') {
      static const char *known[] = {"--epochs", "--batch", "--seed", "--save", "--checkpoint", "--weights", "--resume", NULL};
      bool ok = false;
      for (int k = 0; known[k]; k++) ok |= streq(s, known[k]);
      if (!ok) { rc = usage_error("train", "unknown option '%s'", s); goto out; }
      fwd[nf++] = (char *)s;
      fwd[nf++] = (char *)v;
      i++;
      continue;
    }
    if (a.model_path) { rc = usage_error("train", "unexpected argument '%s' (one model file at a time)", s); goto out; }
    a.model_path = s;
  }
  if (!a.model_path) { rc = usage_error("train", "no model file given%s", ""); goto out; }
  const bool cuda = a.device && streq(a.device, "cuda");
  CuPrecision prec;
  if ((rc = parse_precision("train", a.precision, &prec)) >= 0) goto out;
  rc = 1;
  if (a.precision && !cuda) {
    rc = usage_error("train", "--precision %s needs --device cuda (the CPU computes in float32)", a.precision);
    goto out;
  }
  Diag d = {0};
  d.echo = stderr;
  a.o.cuda = cuda;
  Compiled *c = compile_file(A, a.model_path, &a.o, false, &d);
  if (c && !c->train_plan) {
    fprintf(stderr, "%s: error: model '%s' has no train section\n", a.model_path, c->g->name);
    c = NULL;
  }
  diag_free(&d);
  if (!c) goto out;
  const char *exe = NULL;
  if (cuda && a.jit) { /* libmlcrt's loop over a CUDA JIT instance (NVRTC, the driver) */
    Diag jd = {.echo = stderr};
    mlc_model *mm = NULL;
    rc = mlc_model_from_compiled_prec(c, NULL, NULL, MLCRT_CUDA, (int)prec, 0, &mm, &jd);
    diag_free(&jd);
    if (rc) goto out;
    const char *why = NULL;
    fwd[0] = "mlc train";
    fwd[nf] = NULL;
    rc = mlc_model_train_main(mm, nf, fwd, &why);
    if (rc < 0) {
      fprintf(stderr, "%s: error: %s\n", a.model_path, why);
      rc = 1;
    }
    mlc_model_free(mm);
    goto out;
  }
  if (cuda) exe = build_cached_cuda(A, c, true, prec, NULL, NULL);
  else {
    EmitC e = emitc_model(c->g, c->plan, c->train_plan, c->eval_plan, "model.h");
    if (!e.train_harness) {
      fprintf(stderr, "%s: error: %s\n", a.model_path, e.train_why);
      goto out;
    }
    if (a.jit) { /* the same loop in this process, over the JIT-loaded model */
      Diag jd = {.echo = stderr};
      mlc_model *mm = NULL;
      rc = mlc_model_from_compiled(c, NULL, NULL, MLCRT_CPU, 0, &mm, &jd);
      diag_free(&jd);
      if (rc) goto out;
      const char *why = NULL;
      fwd[0] = "mlc train";
      fwd[nf] = NULL;
      rc = mlc_model_train_main(mm, nf, fwd, &why);
      if (rc < 0) {
        fprintf(stderr, "%s: error: %s\n", a.model_path, why);
        rc = 1;
      }
      mlc_model_free(mm);
      goto out;
    }
    exe = build_run(A, &e, e.train_harness, c, NULL, NULL);
  }
  if (!exe) goto out;
  fwd[0] = (char *)exe;
  fwd[nf] = NULL;
  rc = spawn_wait(fwd, false);
  if (rc < 0) rc = 1;
out:
  if (tmpdir) remove_dir(tmpdir, tmpfiles, ntmp);
  arena_free(A);
  return rc;
}

/* docs/operators.md, generated from the op table */
static void list_ops(void) {
  printf("# Operators\n\nGenerated from `compiler/ops.def` by `mlc --list-ops`; do not edit.\n\n");
  printf("| operator | signature | CPU forward | gradient | CUDA | tested |\n|---|---|---|---|---|---|\n");
  for (int i = 0; i < OP_COUNT; i++) {
    if (op_info[i].flags & F_INTERNAL) continue;
    bool cpu = op_info[i].flags & F_CPU;
    const char *grad = autodiff_has_rule((Op)i) ? "yes" : op_info[i].flags & F_DIFF ? "not yet" : "n/a";
    printf("| `%s` | `%s` | %s | %s | no | %s |\n", op_info[i].name, op_info[i].sig, cpu ? "yes" : "no", grad,
           cpu ? "e2e vs PyTorch" : "no");
  }
}

/* --report and --dot: the fusion groups of run (and of the train step). */
static int report_groups(const Args *a, const Compiled *c) {
  Graph *g = c->g;
  int64_t sv[MAX_SYMS + 1];
  for (int s = 0; s <= MAX_SYMS; s++) sv[s] = 1;
  for (int i = 0; i < a->ndims; i++) {
    const char *eq = strchr(a->dims[i], '=');
    int id = 0;
    for (int s = 1; s <= g->nsym; s++)
      if (strlen(g->sym[s]) == (size_t)(eq - a->dims[i]) && !strncmp(g->sym[s], a->dims[i], (size_t)(eq - a->dims[i]))) id = s;
    char *end;
    errno = 0;
    long long v = strtoll(eq + 1, &end, 10);
    if (!id) return usage_error(a->cmd, "--dim: the model has no symbolic dim '%s'", a->dims[i]);
    if (errno || *end || v < 1 || v > ((long long)1 << 40))
      return usage_error(a->cmd, "--dim needs a value from 1 to 2^40, got '%s'", a->dims[i]);
    sv[id] = v;
  }
  if (a->report) {
    /* the -O0 side from the model compiled at -O0: the -O2 passes (bn_expand,
     * sdpa_views) change the graph */
    Arena *A0 = arena_new();
    Options o0 = a->o;
    o0.opt_level = 0;
    Diag d0 = {0};
    const Compiled *c0 = compile_file(A0, a->model_path, &o0, false, &d0);
    if (!c0) c0 = c; /* (it compiled at -O2) */
    fuse_report(stdout, g, c->plan, c0->g, c0->plan, sv, "run");
    if (c->train_plan && c0->train_plan) {
      printf("\n");
      fuse_report(stdout, g, c->train_plan, c0->g, c0->train_plan, sv, "train step");
    }
    diag_free(&d0);
    arena_free(A0);
  }
  if (a->dot) {
    FILE *f = fopen(a->dot, "w");
    if (!f) {
      fprintf(stderr, "mlc: error: cannot write %s: %s\n", a->dot, strerror(errno));
      return 1;
    }
    fuse_dot(f, g, c->plan);
    if (fclose(f)) {
      fprintf(stderr, "mlc: error: cannot write %s: %s\n", a->dot, strerror(errno));
      return 1;
    }
  }
  return 0;
}

int main(int argc, char **argv) {
  Args a = {0};
  a.o.opt_level = 2;
  if (argc < 2) {
    fputs(usage_main, stderr);
    return 2;
  }
  int start = 1;
  const char *c1 = argv[1];
  if (streq(c1, "--help") || streq(c1, "-h") || streq(c1, "help")) {
    fputs(usage_main, stdout);
    return 0;
  }
  if (streq(c1, "--version")) {
    printf("mlc %s\n", MLC_VERSION);
    return 0;
  }
  if (streq(c1, "--list-ops")) {
    list_ops();
    return 0;
  }
  if (streq(c1, "train")) return cmd_train(argc, argv);
  if (streq(c1, "check") || streq(c1, "run") || streq(c1, "compile")) {
    a.cmd = c1;
    start = 2;
  } else if (c1[0] != '-' && !strchr(c1, '.') && !strchr(c1, '/') && !exists(c1)) {
    return usage_error(NULL, "unknown command '%s' (commands: check, run, train; or give a MODEL.mdl)", c1);
  }
  int rc = parse_args(argc, argv, start, &a);
  if (rc >= 0) return rc;
  const char *cmd = a.cmd && !streq(a.cmd, "compile") ? a.cmd : NULL;
  if (a.help) {
    fputs(!cmd ? usage_compile : streq(cmd, "check") ? usage_check : streq(cmd, "run") ? usage_run : usage_train, stdout);
    return 0;
  }
  if (!a.model_path) return usage_error(a.cmd, "no model file given%s", "");
  bool is_train = cmd && streq(cmd, "train");
  bool check_only = (cmd && streq(cmd, "check")) || is_train;
  if (!cmd && !a.out && !a.emit_ir && !a.report && !a.dot) return usage_error(NULL, "no output file given (use -o OUT.c)%s", "");
  if (!cmd && a.out) {
    size_t n = strlen(a.out);
    bool cu = n > 3 && streq(a.out + n - 3, ".cu");
    if (!cu && (n < 3 || !streq(a.out + n - 2, ".c")))
      return usage_error(NULL, "the output name must end in .c (C) or .cu (CUDA), got '%s'", a.out);
    if (a.target && streq(a.target, "cuda") != cu)
      return usage_error(NULL, cu ? "--target c needs an output name ending in .c, got '%s'"
                                  : "--target cuda needs an output name ending in .cu, got '%s'", a.out);
  }
  CuPrecision prec = CU_PREC_F32;
  if (a.precision && !(cmd && streq(cmd, "run"))) {
    size_t n = a.out ? strlen(a.out) : 0;
    if (cmd || n < 3 || !streq(a.out + n - 3, ".cu"))
      return usage_error(a.cmd, "--precision %s applies to CUDA models (-o NAME.cu, or run/train --device cuda)", a.precision);
    if ((rc = parse_precision(NULL, a.precision, &prec)) >= 0) return rc;
  }
  Arena *A = arena_new();
  Diag d = {0};
  d.echo = stderr;
  /* the CUDA backend: -o NAME.cu (or --target cuda), or run --device cuda */
  {
    const size_t n = a.out ? strlen(a.out) : 0;
    a.o.cuda = (a.device && streq(a.device, "cuda")) || (a.target && streq(a.target, "cuda")) ||
               (!cmd && n > 3 && streq(a.out + n - 3, ".cu"));
  }
  /* check --embed-weights W checks W against the model too: that needs the plan */
  Compiled *c = compile_file(A, a.model_path, &a.o, check_only && !a.emit_ir && !a.embed && !a.report && !a.dot, &d);
  if (!c) {
    if (d.nerrors > 1) fprintf(stderr, "%d errors\n", d.nerrors);
    diag_free(&d);
    arena_free(A);
    return 1;
  }
  if (a.emit_ir) ir_print(stdout, c->g);
  rc = a.report || a.dot ? report_groups(&a, c) : 0;
  if (rc) {
    diag_free(&d);
    arena_free(A);
    return rc;
  }
  if (is_train) {
    fprintf(stderr, "mlc train: error: training is not implemented yet in this version of mlc "
                    "(the model and its train section parse and type-check)\n");
    rc = 1;
  } else if (cmd && streq(cmd, "run")) {
    rc = cmd_run(A, &a, c);
  } else if (cmd && a.embed) { /* check */
    unsigned char *w = read_embedded(c, a.embed);
    rc = w ? 0 : 1;
    free(w);
  } else if (!cmd && a.out) {
    /* OUT.c (or OUT.cu) and OUT.h */
    const bool cu = streq(a.out + strlen(a.out) - 3, ".cu");
    char *h = arena_strdup(A, a.out);
    if (cu) h[strlen(h) - 1] = 0;
    h[strlen(h) - 1] = 'h';
    const char *slash = strrchr(h, '/');
    unsigned char *w = NULL;
    if (a.embed && !(w = read_embedded(c, a.embed))) rc = 1;
    else {
      EmitC e = cu ? emitcu_model_prec(c->g, c->plan, c->train_plan, c->eval_plan, slash ? slash + 1 : h, a.embed, prec)
                   : emitc_model_embed(c->g, c->plan, c->train_plan, c->eval_plan, slash ? slash + 1 : h, a.embed);
      rc = write_file(a.out, e.c) && write_file(h, e.h) ? 0 : 1;
      /* OUT_weights.c: the embedded weights, a translation unit of their own */
      char *wc = arena_printf(A, "%.*s_weights.c", (int)strlen(a.out) - (cu ? 3 : 2), a.out);
      if (!rc && w && !write_weights(wc, c, a.embed, w)) rc = 1;
    }
    free(w);
  }
  diag_free(&d);
  arena_free(A);
  return rc;
}
