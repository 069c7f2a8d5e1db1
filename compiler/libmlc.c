/* compiler/libmlc.c — the public library API of mlc.h: the driver's pipeline
 * writing the generated files (ahead of time), or loading the generated code
 * into the process (JIT, jit_cpu.c) behind instances with generic
 * signatures; diagnostics collected as text. */
#include "mlc.h"
#include "mlcc.h"
#include "mlcrt.h"
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

const char *mlc_version(void) { return MLC_VERSION_STRING; }

void mlc_free(void *p) { free(p); }

/* Hands the collected diagnostics to the caller (NULL when out of memory). */
static void give_diagnostics(Diag *d, char **diagnostics) {
  if (diagnostics) {
    *diagnostics = malloc(d->len + 1);
    if (*diagnostics) {
      if (d->len) memcpy(*diagnostics, d->buf, d->len);
      (*diagnostics)[d->len] = 0;
    }
  }
  diag_free(d);
}

/* --embed-weights: the weights region image, checked against the model. */
static bool read_embed(const Compiled *c, const char *embed, unsigned char **w, Diag *d) {
  char err[MLCRT_ERRLEN];
  *w = NULL;
  if (!embed || !embed_weights_read(c->g, c->plan, embed, w, err)) return true;
  size_t k = strlen(embed);
  diag_file_error(d, embed, "%s", !strncmp(err, embed, k) && !strncmp(err + k, ": ", 2) ? err + k + 2 : err);
  return false;
}

static int compile(const char *path, const char *text, const char *out_c, const mlc_options *mo, char **diagnostics) {
  if (diagnostics) *diagnostics = NULL;
  Diag d = {0};
  int rc = MLC_ERROR;
  size_t n = out_c ? strlen(out_c) : 0;
  Arena *A = NULL;
  if (!path || !out_c || n < 3 || strcmp(out_c + n - 2, ".c") != 0) {
    diag_error(&d, (Loc){0}, "%s", !path ? "no model given" : "the output name must end in .c");
    rc = MLC_EUSAGE;
    goto out;
  }
  A = arena_new();
  Options o = {.model = mo ? mo->model : NULL, .opt_level = mo && mo->opt_level == 0 ? 0 : 2, .no_pack = mo && mo->no_pack_weights};
  Source *src = text ? source_from_string(A, path, text) : source_from_file(A, path, &d);
  Compiled *c = src ? compile_source(A, src, &o, false, &d) : NULL;
  if (!c) goto out;
  unsigned char *w = NULL;
  const char *embed = mo ? mo->embed_weights : NULL;
  if (!read_embed(c, embed, &w, &d)) goto out;
  char *h = arena_strdup(A, out_c);
  h[n - 1] = 'h';
  const char *slash = strrchr(h, '/');
  EmitC e = emitc_model_embed(c->g, c->plan, c->train_plan, c->eval_plan, slash ? slash + 1 : h, embed);
  bool ok = build_write_file(&d, out_c, e.c) && build_write_file(&d, h, e.h);
  if (ok && w) {
    const char *wc = arena_printf(A, "%.*s_weights.c", (int)n - 2, out_c);
    FILE *f = fopen(wc, "wb");
    ok = f && emitc_weights(f, c->g, embed, w, c->plan->weight_bytes) == 0;
    if (f) ok &= fclose(f) == 0;
    if (!ok) diag_file_error(&d, wc, "cannot write: %s", strerror(errno));
  }
  free(w);
  if (ok) rc = MLC_OK;
out:
  give_diagnostics(&d, diagnostics);
  if (A) arena_free(A);
  return rc;
}

int mlc_compile_file(const char *mdl_path, const char *out_c, const mlc_options *o, char **diagnostics) {
  return compile(mdl_path, NULL, out_c, o, diagnostics);
}

int mlc_compile_string(const char *name, const char *source, const char *out_c, const mlc_options *o,
                       char **diagnostics) {
  if (!source) {
    if (diagnostics) *diagnostics = NULL;
    return MLC_EUSAGE;
  }
  return compile(name ? name : "<string>", source, out_c, o, diagnostics);
}

/* ---- JIT ------------------------------------------------------------------------- */

struct mlc_model {
  Arena *A; /* owned (NULL when built from the command line's arena) */
  const Compiled *c;
  JitCpu jit;      /* CPU */
  JitCuModel *cum; /* CUDA (jit_cuda.c): the launch program, its kernels loaded */
  int device;
  uint64_t seed;
  int count[4];
  mlc_tensor_info *info[4];
};

struct mlc_instance {
  const mlc_model *model;
  void *m;                 /* the generated instance (CPU) */
  JitCuInst *cu;           /* or the CUDA instance */
  int64_t max[MAX_SYMS + 1]; /* CUDA: the maximum dims (max[id], 1-based) */
  char err[MLCRT_ERRLEN];  /* an error found here rather than by the generated code */
};

/* The node of tensor i of a kind. */
static int tensor_node(const Graph *g, int kind, int i) {
  switch (kind) {
  case MLC_INPUT: return g->inputs[i];
  case MLC_OUTPUT: return g->outputs[i].node;
  case MLC_TRAIN_INPUT: return g->train_inputs[i];
  default: return g->tensors[i];
  }
}

static void describe(mlc_model *mm) {
  const Graph *g = mm->c->g;
  mm->count[MLC_INPUT] = g->ninputs;
  mm->count[MLC_OUTPUT] = g->noutputs;
  mm->count[MLC_TRAIN_INPUT] = mlc_has_train_step(mm) ? g->ntrain_inputs : 0;
  mm->count[MLC_TENSOR] = g->ntensors;
  for (int kind = 0; kind < 4; kind++) {
    mm->info[kind] = arena_alloc(g->A, sizeof(mlc_tensor_info) * (size_t)(mm->count[kind] + 1));
    for (int i = 0; i < mm->count[kind]; i++) {
      const Node *n = &g->nodes[tensor_node(g, kind, i)];
      mlc_tensor_info *t = &mm->info[kind][i];
      t->name = kind == MLC_OUTPUT ? g->outputs[i].name : n->name;
      t->dtype = (mlcrt_dtype)n->ty.dt; /* DType and mlcrt_dtype list the dtypes in the same order */
      t->rank = n->ty.rank;
      for (int k = 0; k < n->ty.rank; k++) {
        int sid;
        t->size[k] = dim_is_const(n->ty.dim[k], &t->size[k]) ? t->size[k] : -1;
        t->dim_sym[k] = dim_is_sym(n->ty.dim[k], &sid) ? sid - 1 : -1;
      }
      t->type = type_str(g->A, g, &n->ty);
    }
  }
}

int mlc_model_from_compiled(const Compiled *c, const char *embed, const unsigned char *w, int device, uint64_t seed,
                            mlc_model **out, Diag *d) {
  return mlc_model_from_compiled_prec(c, embed, w, device, 0, seed, out, d);
}

int mlc_model_from_compiled_prec(const Compiled *c, const char *embed, const unsigned char *w, int device,
                                 int precision, uint64_t seed, mlc_model **out, Diag *d) {
  *out = NULL;
  if (precision != 0 && (precision != 1 || device != MLCRT_CUDA)) {
    diag_error(d, (Loc){0}, "precision %d: 0 (float32) or, with MLCRT_CUDA, 1 (TF32)", precision);
    return MLC_EUSAGE;
  }
  if (device != MLCRT_CPU && device != MLCRT_CUDA) {
    diag_error(d, (Loc){0}, "unknown device %d (MLCRT_CPU or MLCRT_CUDA)", device);
    return MLC_EUSAGE;
  }
  mlc_model *mm = calloc(1, sizeof *mm);
  if (!mm) {
    diag_error(d, (Loc){0}, "out of memory");
    return MLC_ERROR;
  }
  mm->c = c;
  mm->device = device;
  mm->seed = seed;
  if (device == MLCRT_CUDA) {
    /* NVRTC and the driver API: no compiler runs (jit_cuda.c, docs/jit.md) */
    char err[MLCRT_ERRLEN];
    if (!(mm->cum = jitcu_model_load(c, embed ? w : NULL, precision, err))) {
      diag_error(d, (Loc){0}, "%s", err);
      free(mm);
      return MLC_ERROR;
    }
  } else if (!jit_cpu_load(c->g->A, c, embed, w, &mm->jit, d)) {
    free(mm);
    return MLC_ERROR;
  }
  describe(mm);
  *out = mm;
  return MLC_OK;
}

static int model_from(const char *path, const char *text, const mlc_options *mo, mlc_model **out, char **diagnostics) {
  if (diagnostics) *diagnostics = NULL;
  if (out) *out = NULL;
  Diag d = {0};
  if (!path || !out) {
    diag_error(&d, (Loc){0}, "%s", !path ? "no model given" : "no place for the model (out is NULL)");
    give_diagnostics(&d, diagnostics);
    return MLC_EUSAGE;
  }
  Arena *A = arena_new();
  Options o = {.model = mo ? mo->model : NULL,
               .opt_level = mo && mo->opt_level == 0 ? 0 : 2,
               .no_pack = mo && mo->no_pack_weights,
               .seed = mo ? mo->seed : 0,
               .cuda = mo && mo->device == MLCRT_CUDA};
  Source *src = text ? source_from_string(A, path, text) : source_from_file(A, path, &d);
  Compiled *c = src ? compile_source(A, src, &o, false, &d) : NULL;
  unsigned char *w = NULL;
  const char *embed = mo ? mo->embed_weights : NULL;
  int rc = c && read_embed(c, embed, &w, &d) ? mlc_model_from_compiled_prec(c, embed, w, mo ? mo->device : MLCRT_CPU, mo ? mo->precision : 0, o.seed, out, &d)
                                              : MLC_ERROR;
  free(w);
  give_diagnostics(&d, diagnostics);
  if (rc) arena_free(A);
  else (*out)->A = A;
  return rc;
}

int mlc_model_from_file(const char *mdl_path, const mlc_options *o, mlc_model **out, char **diagnostics) {
  return model_from(mdl_path, NULL, o, out, diagnostics);
}

int mlc_model_from_string(const char *name, const char *source, const mlc_options *o, mlc_model **out,
                          char **diagnostics) {
  if (!source) {
    if (diagnostics) *diagnostics = NULL;
    return MLC_EUSAGE;
  }
  return model_from(name ? name : "<string>", source, o, out, diagnostics);
}

void mlc_model_free(mlc_model *mm) {
  if (!mm) return;
  if (mm->cum) jitcu_model_free(mm->cum);
  else jit_cpu_unload(&mm->jit);
  if (mm->A) arena_free(mm->A);
  free(mm);
}

/* `mlc train --jit --device cuda`: libmlcrt's training loop (trainloop.c)
 * over a CUDA instance, through the functions of mlc.h.  (On the CPU the loop
 * is compiled into the model's shared object, with the generated harness.) */
static void *tr_create(void *ctx, const int64_t *maxdims) {
  const mlcrt_options o = {MLCRT_CUDA, 0, 0};
  return mlc_create(ctx, maxdims, &o);
}
static void tr_destroy(void *m) { mlc_destroy(m); }
static int tr_init(void *m, uint64_t seed) { return mlc_init(m, seed); }
static int tr_set_seed(void *m, uint64_t seed) { return mlc_set_seed(m, seed); }
static int tr_load(void *m, const char *p) { return mlc_load(m, p); }
static int tr_save(void *m, const char *p) { return mlc_save(m, p); }
static int tr_load_checkpoint(void *m, const char *p) { return mlc_load_checkpoint(m, p); }
static int tr_save_checkpoint(void *m, const char *p) { return mlc_save_checkpoint(m, p); }
static int64_t tr_step(void *m) { return jitcu_step(((mlc_instance *)m)->cu); }
static const char *tr_last_error(void *m) { return mlc_last_error(m); }
static int tr_train_step(void *m, const int64_t *d, void *const *in, float *loss) {
  return mlc_train_step(m, d, (const void *const *)in, loss);
}
static int cuda_checks(mlc_instance *m, const char *fn, const int64_t *dims, const void *const *in, void *const *out,
                       const float *loss, int64_t *sv);
/* the loss, and output 0 into out0 (may be NULL); the other outputs are not copied out */
static int tr_evaluate(void *mv, const int64_t *d, void *const *in, float *loss, void *out0) {
  mlc_instance *m = mv;
  void **outs = calloc((size_t)m->model->count[MLC_OUTPUT] + 1, sizeof *outs);
  if (!outs) return mlcrt_seterr(jitcu_err(m->cu), MLCRT_ENOMEM, "evaluate: out of memory");
  outs[0] = out0;
  int64_t sv[MAX_SYMS + 1] = {0};
  int rc = cuda_checks(m, "evaluate", d, (const void *const *)in, NULL, loss, sv);
  if (!rc) rc = jitcu_call(m->cu, CUF_EVAL, sv, (const void *const *)in, outs, loss);
  free(outs);
  return rc;
}

int mlc_model_train_main(const mlc_model *mm, int argc, char **argv, const char **why) {
  if (mm->cum) {
    if (!mm->c->train_plan) {
      *why = "the model has no train section";
      return -1;
    }
    mlcrt_train_input ins[MLCRT_TRAIN_MAX_INPUTS];
    int batch, label;
    int64_t classes;
    const int n = emitc_train_layout(mm->c->g, mm->c->g->A, ins, &batch, &classes, &label, why);
    if (n < 0) return -1;
    const mlcrt_trainer t = {mm->c->g->name, n, ins, mm->c->g->nsym, batch, classes, label < 0 ? 0 : label,
                             NULL, /* create: through create_ctx, with the model */
                             tr_destroy, tr_init, tr_load, tr_save, tr_load_checkpoint, tr_save_checkpoint,
                             tr_step, tr_train_step, tr_evaluate, tr_last_error, tr_set_seed, tr_create, (void *)mm};
    return mlcrt_train_main(&t, argc, argv);
  }
  *why = mm->jit.train_why;
  if (!mm->jit.train_main) return -1;
  /* the loop catches Ctrl-C with a handler inside the shared object: put
   * back what was there before the object can be unloaded */
  struct sigaction old;
  sigaction(SIGINT, NULL, &old);
  int rc = mm->jit.train_main(argc, argv);
  sigaction(SIGINT, &old, NULL);
  return rc;
}

const char *mlc_model_name(const mlc_model *mm) { return mm ? mm->c->g->name : NULL; }
int mlc_num_dims(const mlc_model *mm) { return mm ? mm->c->g->nsym : 0; }
const char *mlc_dim_name(const mlc_model *mm, int dim) {
  return mm && dim >= 0 && dim < mm->c->g->nsym ? mm->c->g->sym[dim + 1] : NULL;
}
int mlc_count(const mlc_model *mm, int kind) { return mm && kind >= 0 && kind < 4 ? mm->count[kind] : 0; }
int mlc_has_train_step(const mlc_model *mm) {
  return mm && (mm->cum ? mm->c->train_plan != NULL : mm->jit.train_step != NULL) ? 1 : 0;
}

int mlc_tensor(const mlc_model *mm, int kind, int i, mlc_tensor_info *info) {
  if (!info || i < 0 || i >= mlc_count(mm, kind)) return MLC_EUSAGE;
  *info = mm->info[kind][i];
  return MLC_OK;
}

int64_t mlc_shape(const mlc_model *mm, int kind, int i, const int64_t *dims, int64_t *shape) {
  if (!shape || i < 0 || i >= mlc_count(mm, kind) || (!dims && mm->c->g->nsym)) return -1;
  const Graph *g = mm->c->g;
  int64_t sv[MAX_SYMS + 1] = {0};
  for (int s = 1; s <= g->nsym; s++) sv[s] = dims[s - 1];
  const Type *t = &g->nodes[tensor_node(g, kind, i)].ty;
  int64_t n = 1;
  for (int k = 0; k < t->rank; k++) n *= shape[k] = dim_eval(t->dim[k], sv);
  return n;
}

int mlc_bind_dims(const mlc_model *mm, const mlcrt_array *arrays, int n, int64_t *dims, int *bad, char *err) {
  char scratch[MLCRT_ERRLEN];
  if (!err) err = scratch;
  if (bad) *bad = -1;
  int nin = mlc_count(mm, MLC_INPUT), ntr = mlc_count(mm, MLC_TRAIN_INPUT);
  if (!mm || (n != nin && n != nin + ntr) || (n && !arrays) || (!dims && mm->c->g->nsym)) {
    mlcrt_seterr(err, MLCRT_EINVAL, "mlc_bind_dims: give %d arrays (or %d with the train inputs)", nin, nin + ntr);
    return MLC_EUSAGE;
  }
  const Graph *g = mm->c->g;
  int64_t sv[MAX_SYMS + 1] = {0}; /* as `mlc run` binds them: in input order, first appearance wins */
  bool bound[MAX_SYMS + 1] = {0};
  for (int i = 0; i < n; i++) {
    const mlc_tensor_info *t = i < nin ? &mm->info[MLC_INPUT][i] : &mm->info[MLC_TRAIN_INPUT][i - nin];
    const Type *ty = &g->nodes[i < nin ? g->inputs[i] : g->train_inputs[i - nin]].ty;
    if (bad) *bad = i;
    if (arrays[i].dtype != t->dtype || arrays[i].rank != t->rank) {
      mlcrt_seterr(err, MLCRT_ESHAPE, "input '%s' must be %s, the file holds %s with %d dims", t->name, t->type,
                   mlcrt_dtype_name(arrays[i].dtype), arrays[i].rank);
      return MLC_ERROR;
    }
    for (int k = 0; k < t->rank; k++) {
      int sid = t->dim_sym[k] + 1;
      int64_t got = arrays[i].shape[k];
      if (sid > 0) {
        if (!bound[sid]) sv[sid] = got, bound[sid] = true;
        if (got != sv[sid]) {
          mlcrt_seterr(err, MLCRT_ESHAPE, "dim %d of input '%s' is %lld, but %s = %lld (%s)", k, t->name, (long long)got,
                       g->sym[sid], (long long)sv[sid], t->type);
          return MLC_ERROR;
        }
      } else if (got != dim_eval(ty->dim[k], sv)) {
        mlcrt_seterr(err, MLCRT_ESHAPE, "dim %d of input '%s' is %lld, expected %lld (%s)", k, t->name, (long long)got,
                     (long long)dim_eval(ty->dim[k], sv), t->type);
        return MLC_ERROR;
      }
    }
  }
  if (bad) *bad = -1;
  for (int s = 1; s <= g->nsym; s++) dims[s - 1] = sv[s];
  return MLC_OK;
}

mlc_instance *mlc_create(const mlc_model *mm, const int64_t *max_dims, const mlcrt_options *opts) {
  char err[MLCRT_ERRLEN];
  if (!mm || (!max_dims && mm->c->g->nsym)) {
    mlcrt_set_last_error(!mm ? "mlc_create: no model" : "mlc_create: max_dims is NULL but the model has symbolic dims");
    return NULL;
  }
  mlc_instance *m = calloc(1, sizeof *m);
  int64_t none = 0;
  if (!m) {
    mlcrt_set_last_error("mlc_create: out of memory");
    return NULL;
  }
  m->model = mm;
  err[0] = 0;
  if (mm->cum) {
    if (!(m->cu = jitcu_create(mm->cum, max_dims ? max_dims : &none, opts, err))) {
      mlcrt_set_last_error(err);
      free(m);
      return NULL;
    }
    if (mm->seed) jitcu_set_seed(m->cu, mm->seed);
    for (int s = 1; s <= mm->c->g->nsym; s++) m->max[s] = max_dims[s - 1];
    return m;
  }
  m->m = mm->jit.create(max_dims ? max_dims : &none, opts, err);
  /* the model's runtime is its own copy (jit_cpu.c): bring its error here */
  if (!m->m) {
    mlcrt_set_last_error(err);
    free(m);
    return NULL;
  }
  if (mm->jit.set_seed && mm->seed) mm->jit.set_seed(m->m, mm->seed);
  return m;
}

/* Checks what the generated code cannot: an instance, and the arrays. */
static int check(mlc_instance *m, const int64_t *dims, const void *const *in, int nin, void *const *out, int nout) {
  if (!m) return MLCRT_EINVAL;
  m->err[0] = 0;
  const Graph *g = m->model->c->g;
  if (!dims && g->nsym) return mlcrt_seterr(m->err, MLCRT_EINVAL, "dims is NULL but model %s has symbolic dims", g->name);
  if (!in && nin) return mlcrt_seterr(m->err, MLCRT_EINVAL, "in is NULL but model %s has %d inputs", g->name, nin);
  if (!out && nout) return mlcrt_seterr(m->err, MLCRT_EINVAL, "out is NULL but model %s has %d outputs", g->name, nout);
  return MLCRT_OK;
}

/* The CUDA instance's checks: those of the generated functions (emit_checks
 * in codegen/emit_c.c), with their messages. */
static int cuda_checks(mlc_instance *m, const char *fn, const int64_t *dims, const void *const *in, void *const *out,
                       const float *loss, int64_t *sv) {
  const Graph *g = m->model->c->g;
  char *err = jitcu_err(m->cu);
  for (int s = 1; s <= g->nsym; s++) sv[s] = dims[s - 1];
  for (int s = 1; s <= g->nsym; s++) {
    const int64_t mx = m->max[s];
    if (sv[s] < 0 || sv[s] > mx)
      return mlcrt_seterr(err, MLCRT_EINVAL, "%s_%s: %s = %lld is outside 0..%lld (the maximum given to create)",
                          g->name, fn, g->sym[s], (long long)sv[s], (long long)mx);
  }
  const int nin = g->ninputs + (loss ? g->ntrain_inputs : 0);
  for (int i = 0; i < nin; i++)
    if (!in[i])
      return mlcrt_seterr(err, MLCRT_EINVAL, "%s_%s: input '%s' is NULL", g->name, fn,
                          g->nodes[i < g->ninputs ? g->inputs[i] : g->train_inputs[i - g->ninputs]].name);
  if (loss == NULL && out)
    for (int i = 0; i < g->noutputs; i++)
      if (!out[i]) return mlcrt_seterr(err, MLCRT_EINVAL, "%s_%s: output '%s' is NULL", g->name, fn, g->outputs[i].name);
  for (int c = 0; c < g->nchecks; c++) {
    const DimCheck *ck = &g->checks[c];
    int64_t a = dim_eval(ck->a, sv), b = dim_eval(ck->b, sv);
    if (a != b) {
      const char *sa = dim_str(m->model->c->g->A, ck->a, g->sym), *sb = dim_str(m->model->c->g->A, ck->b, g->sym);
      return mlcrt_seterr(err, MLCRT_ESHAPE, "%s:%d:%d: shape mismatch at run time: %s (= %lld) must equal %s (= %lld): %s",
                          ck->loc.src ? ck->loc.src->path : g->source_path, ck->loc.line, ck->loc.col, sa, (long long)a,
                          sb, (long long)b, ck->what);
    }
  }
  return MLCRT_OK;
}

int mlc_run(mlc_instance *m, const int64_t *dims, const void *const *in, void *const *out) {
  int rc = check(m, dims, in, m ? m->model->count[MLC_INPUT] : 0, out, m ? m->model->count[MLC_OUTPUT] : 0);
  if (rc) return rc;
  if (m->cu) {
    int64_t sv[MAX_SYMS + 1] = {0};
    rc = cuda_checks(m, "run", dims, in, out, NULL, sv);
    return rc ? rc : jitcu_call(m->cu, CUF_RUN, sv, in, out, NULL);
  }
  return m->model->jit.run(m->m, dims, in, out);
}

int mlc_train_step(mlc_instance *m, const int64_t *dims, const void *const *in, float *loss) {
  int rc = check(m, dims, in, m ? m->model->count[MLC_INPUT] + m->model->count[MLC_TRAIN_INPUT] : 0, NULL, 0);
  if (rc) return rc;
  if (!mlc_has_train_step(m->model))
    return mlcrt_seterr(m->err, MLCRT_EUNSUPPORTED, "model %s has no train step", m->model->c->g->name);
  if (m->cu) {
    int64_t sv[MAX_SYMS + 1] = {0};
    const char *M = m->model->c->g->name;
    if (!loss) return mlcrt_seterr(jitcu_err(m->cu), MLCRT_EINVAL, "%s_train_step: loss is NULL", M);
    rc = cuda_checks(m, "train_step", dims, in, NULL, loss, sv);
    if (!rc) rc = jitcu_call(m->cu, CUF_TRAIN, sv, in, NULL, loss);
    if (!rc && !isfinite(*loss))
      rc = mlcrt_seterr(jitcu_err(m->cu), MLCRT_ENUMERIC, "%s_train_step: the loss is %g; weights not updated", M,
                        (double)*loss);
    return rc;
  }
  return m->model->jit.train_step(m->m, dims, in, loss);
}

/* The train-step functions exist only with a train step. */
#define TRAIN_ONLY(m, fn)                                                                                          \
  do {                                                                                                             \
    if (!(m)) return MLCRT_EINVAL;                                                                                 \
    ((mlc_instance *)(m))->err[0] = 0;                                                                             \
    if (!mlc_has_train_step((m)->model))                                                                           \
      return mlcrt_seterr(((mlc_instance *)(m))->err, MLCRT_EUNSUPPORTED, "model %s has no train step",            \
                          (m)->model->c->g->name);                                                                 \
  } while (0)

int mlc_save_checkpoint(const mlc_instance *m, const char *path) {
  TRAIN_ONLY(m, save_checkpoint);
  if (m->cu) return jitcu_save_checkpoint(m->cu, path);
  return m->model->jit.save_checkpoint(m->m, path);
}
int mlc_load_checkpoint(mlc_instance *m, const char *path) {
  TRAIN_ONLY(m, load_checkpoint);
  if (m->cu) return jitcu_load_checkpoint(m->cu, path);
  return m->model->jit.load_checkpoint(m->m, path);
}
int mlc_set_seed(mlc_instance *m, uint64_t seed) {
  TRAIN_ONLY(m, set_seed);
  if (m->cu) {
    jitcu_set_seed(m->cu, seed);
    return MLCRT_OK;
  }
  return m->model->jit.set_seed(m->m, seed);
}

int mlc_load(mlc_instance *m, const char *path) {
  if (!m) return MLCRT_EINVAL;
  m->err[0] = 0;
  if (m->cu) return jitcu_load(m->cu, path);
  return m->model->jit.load(m->m, path);
}
int mlc_save(const mlc_instance *m, const char *path) {
  if (!m) return MLCRT_EINVAL;
  ((mlc_instance *)m)->err[0] = 0;
  if (m->cu) return jitcu_save(m->cu, path);
  return m->model->jit.save(m->m, path);
}
int mlc_init(mlc_instance *m, uint64_t seed) {
  if (!m) return MLCRT_EINVAL;
  m->err[0] = 0;
  if (m->cu) return jitcu_init(m->cu, seed);
  return m->model->jit.init(m->m, seed);
}

const char *mlc_last_error(const mlc_instance *m) {
  if (!m) return mlcrt_last_error();
  return m->err[0] ? m->err : m->cu ? jitcu_last_error(m->cu) : m->model->jit.last_error(m->m);
}

void mlc_destroy(mlc_instance *m) {
  if (!m) return;
  if (m->cu) jitcu_destroy(m->cu);
  else m->model->jit.destroy(m->m);
  free(m);
}
