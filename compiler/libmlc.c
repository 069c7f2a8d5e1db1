/* compiler/libmlc.c — the public library API of mlc.h: the driver's pipeline
 * writing the generated files, with diagnostics collected as text. */
#include "mlc.h"
#include "mlcc.h"
#include "mlcrt.h"
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

const char *mlc_version(void) { return MLC_VERSION_STRING; }

void mlc_free(void *p) { free(p); }

/* Appends a formatted message to the diagnostics. */
__attribute__((format(printf, 2, 3))) static void note(Diag *d, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if (d->len + (size_t)n + 1 > d->cap) {
    size_t cap = (d->len + (size_t)n + 1) * 2;
    char *nb = realloc(d->buf, cap);
    if (!nb) return;
    d->buf = nb;
    d->cap = cap;
  }
  va_start(ap, fmt);
  vsnprintf(d->buf + d->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  d->len += (size_t)n;
}

static bool write_text(Diag *d, const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  if (!f) {
    note(d, "%s: error: cannot write: %s\n", path, strerror(errno));
    return false;
  }
  size_t n = strlen(text);
  bool ok = fwrite(text, 1, n, f) == n;
  ok &= fclose(f) == 0;
  if (!ok) note(d, "%s: error: cannot write: %s\n", path, strerror(errno));
  return ok;
}

static int compile(const char *path, const char *text, const char *out_c, const mlc_options *mo, char **diagnostics) {
  if (diagnostics) *diagnostics = NULL;
  Diag d = {0};
  int rc = MLC_ERROR;
  size_t n = out_c ? strlen(out_c) : 0;
  Arena *A = NULL;
  if (!path || !out_c || n < 3 || strcmp(out_c + n - 2, ".c") != 0) {
    note(&d, "mlc: error: %s\n", !path ? "no model given" : "the output name must end in .c");
    rc = MLC_EUSAGE;
    goto out;
  }
  A = arena_new();
  Options o = {.model = mo ? mo->model : NULL, .opt_level = mo && mo->opt_level == 0 ? 0 : 2};
  Source *src = text ? source_from_string(A, path, text) : source_from_file(A, path, &d);
  Compiled *c = src ? compile_source(A, src, &o, false, &d) : NULL;
  if (!c) goto out;
  unsigned char *w = NULL;
  const char *embed = mo ? mo->embed_weights : NULL;
  if (embed) {
    char err[MLCRT_ERRLEN];
    if (embed_weights_read(c->g, c->plan, embed, &w, err)) {
      size_t k = strlen(embed);
      note(&d, "%s: error: %s\n", embed, !strncmp(err, embed, k) && !strncmp(err + k, ": ", 2) ? err + k + 2 : err);
      goto out;
    }
  }
  char *h = arena_strdup(A, out_c);
  h[n - 1] = 'h';
  const char *slash = strrchr(h, '/');
  EmitC e = emitc_model_embed(c->g, c->plan, c->train_plan, c->eval_plan, slash ? slash + 1 : h, embed);
  bool ok = write_text(&d, out_c, e.c) && write_text(&d, h, e.h);
  if (ok && w) {
    const char *wc = arena_printf(A, "%.*s_weights.c", (int)n - 2, out_c);
    FILE *f = fopen(wc, "wb");
    ok = f && emitc_weights(f, c->g, embed, w, c->plan->weight_bytes) == 0;
    if (f) ok &= fclose(f) == 0;
    if (!ok) note(&d, "%s: error: cannot write: %s\n", wc, strerror(errno));
  }
  free(w);
  if (ok) rc = MLC_OK;
out:
  if (diagnostics) {
    *diagnostics = malloc(d.len + 1);
    if (*diagnostics) {
      if (d.len) memcpy(*diagnostics, d.buf, d.len);
      (*diagnostics)[d.len] = 0;
    }
  }
  diag_free(&d);
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
