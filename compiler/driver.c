/* compiler/driver.c — the pipeline, in order: parse, lower (typing each node),
 * re-check types, plan storage, emit C.  The CLI (main.c) and, later, libmlc
 * call only this. */
#include "mlcc.h"
#include <string.h>

Compiled *compile_file(Arena *A, const char *path, const Options *o, bool check_only, Diag *d) {
  Source *src = source_from_file(A, path, d);
  if (!src) return NULL;
  Ast *file = parse_source(A, src, d);
  if (!file || d->nerrors) return NULL;
  Graph *g = lower_model(A, file, o->model, d);
  if (!g || d->nerrors) return NULL;
  if (!infer_graph(g, d)) return NULL;
  Compiled *c = arena_alloc(A, sizeof *c);
  c->g = g;
  if (check_only) return c;
  c->plan = plan_graph(g, o->opt_level);
  const char *slash = strrchr(path, '/');
  (void)slash;
  return c;
}
