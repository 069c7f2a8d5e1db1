/* tests/fuzz/fuzz_mdl.c — the MDL front end on arbitrary text: lexer,
 * parser, lowering, shape inference and, when those accept the model, the
 * rest of the pipeline (train-mode rewrite, autodiff, planning, the C
 * emitter) exactly as `mlc -o` runs it (compile_source in driver.c, then
 * emitc_model).  Diagnostics are collected, not printed.  The input may
 * hold NUL bytes. */
#include "fuzz.h"
#include "mlcc.h"
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 64 * 1024) return 0; /* a model is small; longer inputs only slow the search */
  Arena *A = arena_new();
  Source *src = arena_alloc(A, sizeof *src);
  char *text = arena_alloc(A, size + 1); /* zeroed: NUL-terminated */
  memcpy(text, data, size);
  src->path = "fuzz.mdl";
  src->text = text;
  src->len = size;
  Diag d = {0};
  Options o = {0};
  o.opt_level = 2;
  o.need_train = true;
  Compiled *c = compile_source(A, src, &o, false, &d);
  if (c) emitc_model(c->g, c->plan, c->train_plan, c->eval_plan, "model.h");
  diag_free(&d);
  arena_free(A);
  return 0;
}
