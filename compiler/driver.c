/* compiler/driver.c — the pipeline, in order: parse, lower (typing each node),
 * re-check types, plan storage, emit C.  The CLI (main.c) and, later, libmlc
 * call only this. */
#include "mlcc.h"
#include "mlcrt.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

Compiled *compile_file(Arena *A, const char *path, const Options *o, bool check_only, Diag *d) {
  Source *src = source_from_file(A, path, d);
  if (!src) return NULL;
  return compile_source(A, src, o, check_only, d);
}

Compiled *compile_source(Arena *A, const Source *src, const Options *o, bool check_only, Diag *d) {
  const char *path = src->path;
  Ast *file = parse_source(A, src, d);
  if (!file || d->nerrors) return NULL;
  Graph *g = lower_model(A, file, o->model, d);
  if (!g || d->nerrors) return NULL;
  if (!infer_graph(g, d)) return NULL;
  Compiled *c = arena_alloc(A, sizeof *c);
  c->g = g;
  if (check_only) return c;
  bool train_ok = false;
  if (g->loss >= 0) {
    /* the train step: a missing gradient rule is an error only when
     * training was asked for; plain compilation then emits no train step */
    Diag quiet = {0};
    Diag *ad = o->need_train ? d : &quiet;
    bool ok = trainmode(g, ad) && autodiff(g, ad); /* batch_norm/dropout in train mode, then gradients */
    for (int t = 0; ok && t < g->ntensors; t++)
      if (g->grads[t] >= 0 && g->nodes[g->tensors[t]].ty.dt != DT_F32) {
        diag_error(ad, g->nodes[g->tensors[t]].loc, "training %s params is not implemented yet (only f32)",
                   dtype_name(g->nodes[g->tensors[t]].ty.dt));
        ok = false;
      }
    train_ok = ok;
    if (!ok && o->need_train) return NULL;
    else if (quiet.nerrors && d->echo) {
      /* say why there is no train step, once, as a warning */
      const char *msg = strstr(quiet.buf, "error: ");
      fprintf(d->echo, "%s: warning: no train step generated: %.*s\n", path,
              msg ? (int)strcspn(msg + 7, "\n") : 0, msg ? msg + 7 : "");
    }
    diag_free(&quiet);
  }
  if (o->opt_level > 0 && !o->cuda && !bn_expand(g, d)) return NULL;
  if (o->opt_level > 0 && !o->cuda) sdpa_views(g);
  g->cuda = o->cuda;
  /* plans after autodiff: both see every node (the run plan skips the
   * backward nodes because no output needs them) */
  c->plan = plan_graph(g, o->opt_level);
  if (o->no_pack) c->plan->pack = false;
  if (train_ok) {
    c->train_plan = plan_train(g, o->opt_level);
    c->eval_plan = plan_eval(g, o->opt_level);
  }
  return c;
}

/* The descriptor table of the generated code (emit_c.c emit_desc / emit_ties),
 * built here to check and read --embed-weights at compile time. */
int embed_weights_read(const Graph *g, const Plan *p, const char *path, unsigned char **bytes, char *err) {
  *bytes = NULL;
  int n = g->ntensors + g->nties;
  mlcrt_tensor_desc *desc = calloc((size_t)(n ? n : 1), sizeof *desc);
  unsigned char *w = calloc(p->weight_bytes ? p->weight_bytes : 1, 1);
  if (!desc || !w) {
    free(desc);
    free(w);
    return mlcrt_seterr(err, MLCRT_ENOMEM, "%s: out of memory", path);
  }
  for (int i = 0; i < n; i++) {
    int id = i < g->ntensors ? g->tensors[i] : g->tie_nodes[i - g->ntensors];
    const Node *nd = &g->nodes[id];
    desc[i].name = i < g->ntensors ? nd->name : g->tie_names[i - g->ntensors];
    desc[i].dtype = (mlcrt_dtype)nd->ty.dt; /* DType and mlcrt_dtype list the dtypes in the same order */
    desc[i].rank = nd->ty.rank;
    for (int k = 0; k < nd->ty.rank; k++)
      if (!dim_is_const(nd->ty.dim[k], &desc[i].shape[k])) {
        const char *name = desc[i].name; /* in the graph's arena */
        free(desc);
        free(w);
        return mlcrt_seterr(err, MLCRT_EUNSUPPORTED, "%s: tensor '%s' has a symbolic shape and cannot be embedded", path, name);
      }
    desc[i].offset = p->weight_off[id];
  }
  int rc = mlcrt_load_safetensors(path, desc, n, w, err);
  free(desc);
  if (rc) free(w);
  else *bytes = w;
  return rc;
}
