/* compiler/jit_cpu.c — the CPU JIT: the generated C built with the system C
 * compiler into a shared object in the cache (build.c), loaded with dlopen.
 *
 * Besides model.c the object holds jit.c, generated here: the model's
 * functions behind generic signatures (symbolic dims as an array, inputs and
 * outputs as arrays of pointers), so libmlc can call a model it knows only
 * from its IR, and the `mlc train` harness's main() renamed, so `mlc train
 * --jit` runs the very loop the executable would.  The object carries its
 * own copy of libmlcrt with hidden symbols (build.c), so it needs nothing from
 * the program that loads it.  An object that dlopen rejects, or that lacks a
 * symbol or has the wrong ABI number, is evicted and rebuilt once.
 */
#include "mlcc.h"
#include <dlfcn.h>
#include <string.h>

#define JIT_ABI 1 /* bump when the entry points below change */

/* ", d[0], d[1]" for the symbolic dims, ", in[0], ..." for n arrays from k. */
static const char *list(Arena *A, const char *arr, int k, int n) {
  const char *s = "";
  for (int i = 0; i < n; i++) s = arena_printf(A, "%s, %s[%d]", s, arr, k + i);
  return s;
}

/* jit.c for a model: the entry points JitCpu names. */
static char *glue(Arena *A, const Graph *g, bool train, bool train_main) {
  const char *M = g->name, *d = list(A, "d", 0, g->nsym);
  const char *in = list(A, "in", 0, g->ninputs), *out = list(A, "out", 0, g->noutputs);
  char *s = arena_printf(
      A,
      "/* mlc JIT entry points for model %s — generated, do not edit.\n"
      " * The functions of model.h behind generic signatures: d[] holds the\n"
      " * symbolic dims in order of first appearance, in[] and out[] the arrays. */\n"
      "#include \"model.h\"\n#include <stdio.h>\n\n"
      "int mlc_jit_abi(void) { return %d; }\n\n"
      "void *mlc_jit_create(const int64_t *d, const mlcrt_options *o, char *err) {\n"
      "  (void)d;\n  %s *m = %s_create(%s%so);\n"
      "  if (!m) snprintf(err, MLCRT_ERRLEN, \"%%s\", mlcrt_last_error());\n  return m;\n}\n\n"
      "void mlc_jit_destroy(void *m) { %s_destroy(m); }\n"
      "int mlc_jit_load(void *m, const char *path) { return %s_load(m, path); }\n"
      "int mlc_jit_save(const void *m, const char *path) { return %s_save(m, path); }\n"
      "int mlc_jit_init(void *m, uint64_t seed) { return %s_init(m, seed); }\n"
      "const char *mlc_jit_last_error(const void *m) { return %s_last_error(m); }\n\n"
      "int mlc_jit_run(void *m, const int64_t *d, const void *const *in, void *const *out) {\n"
      "  (void)d, (void)in, (void)out;\n  return %s_run(m%s%s%s);\n}\n",
      M, JIT_ABI, M, M, d + (*d ? 2 : 0), *d ? ", " : "", M, M, M, M, M, M, d, in, out);
  if (train)
    s = arena_printf(
        A,
        "%s\nint mlc_jit_train_step(void *m, const int64_t *d, const void *const *in, float *loss) "
        "{\n"
        "  (void)d, (void)in;\n  return %s_train_step(m%s%s%s, loss);\n}\n"
        "int mlc_jit_set_seed(void *m, uint64_t seed) { return %s_set_seed(m, seed); }\n"
        "int mlc_jit_load_checkpoint(void *m, const char *path) { return %s_load_checkpoint(m, "
        "path); }\n"
        "int mlc_jit_save_checkpoint(const void *m, const char *path) { return "
        "%s_save_checkpoint(m, path); }\n"
        "int64_t mlc_jit_step(const void *m) { return %s_step(m); }\n",
        s, M, d, in, list(A, "in", g->ninputs, g->ntrain_inputs), M, M, M, M);
  if (train_main)
    s = arena_printf(A,
                     "%s\n/* `mlc train --jit`: the train harness's main(), renamed (train.c is\n"
                     " * the file the executable of `mlc train` is built from). */\n"
                     "#define main mlc_jit_train_main\n#include \"train.c\"\n",
                     s);
  return s;
}

/* dlsym into a function pointer (POSIX's sanctioned cast). */
#define SYM(j, field, name) (*(void **)&(j)->field = dlsym((j)->so, name))

static bool resolve(JitCpu *j, bool train, bool train_main) {
  int (*abi)(void);
  *(void **)&abi = dlsym(j->so, "mlc_jit_abi");
  if (!abi || abi() != JIT_ABI) return false;
  bool ok = SYM(j, create, "mlc_jit_create") && SYM(j, destroy, "mlc_jit_destroy") &&
            SYM(j, load, "mlc_jit_load") && SYM(j, save, "mlc_jit_save") &&
            SYM(j, init, "mlc_jit_init") && SYM(j, last_error, "mlc_jit_last_error") &&
            SYM(j, run, "mlc_jit_run");
  if (ok && train)
    ok = SYM(j, train_step, "mlc_jit_train_step") && SYM(j, set_seed, "mlc_jit_set_seed") &&
         SYM(j, load_checkpoint, "mlc_jit_load_checkpoint") &&
         SYM(j, save_checkpoint, "mlc_jit_save_checkpoint") && SYM(j, step, "mlc_jit_step");
  if (ok && train_main) ok = SYM(j, train_main, "mlc_jit_train_main");
  return ok;
}

bool jit_cpu_load(Arena *A, const Compiled *c, const char *embed, const unsigned char *w, JitCpu *j,
                  Diag *d) {
  memset(j, 0, sizeof *j);
  EmitC e = emitc_model_embed(c->g, c->plan, c->train_plan, c->eval_plan, "model.h", embed);
  bool train = c->train_plan != NULL, train_main = e.train_harness != NULL;
  j->train_why = e.train_why;
  BuildFile files[4] = {{"model.c", e.c, true},
                        {"model.h", e.h, false},
                        {"jit.c", glue(A, c->g, train, train_main), true}};
  if (train_main) files[3] = (BuildFile){"train.c", e.train_harness, false};
  BuildSpec s = {.shared = true,
                 .files = files,
                 .nfiles = train_main ? 4 : 3,
                 .out_name = "model.so",
                 .c = c,
                 .weights_path = embed,
                 .weights = w};
  for (int attempt = 0; attempt < 2; attempt++) {
    const char *so = build_cached(A, &s, d, &j->cached);
    if (!so) return false;
    /* RTLD_LOCAL: two models' identical entry point names never meet */
    j->so = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    if (j->so && resolve(j, train, train_main)) {
      j->path = so;
      return true;
    }
    const char *why = j->so ? "an entry point is missing or has another ABI" : dlerror();
    if (j->so) dlclose(j->so);
    j->so = NULL;
    if (attempt || !j->cached) {
      diag_file_error(d, so, "internal error: cannot load the JIT-compiled model: %s",
                      why ? why : "?");
      return false;
    }
    /* a damaged entry that still matched its checksum: rebuild it once */
    char *dir = arena_strdup(A, so);
    *strrchr(dir, '/') = 0;
    build_evict(A, dir);
  }
  return false;
}

void jit_cpu_unload(JitCpu *j) {
  if (j->so) dlclose(j->so);
  j->so = NULL;
}
