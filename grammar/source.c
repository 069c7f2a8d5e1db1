/* grammar/source.c — source files and FILE:LINE:COL diagnostics.
 *
 * A diagnostic is formatted once into a temporary string, appended to the
 * Diag's growable buffer (so a library caller can hand the text back) and, if
 * d->echo is set, written there too.  The shape is fixed, tests compare it:
 *
 *     m.mdl:3:14: error: syntax error: unexpected ')', expected expression
 *       h = relu(x, )
 *                   ^
 *
 * The source line is printed verbatim (tabs kept); the caret line is two
 * spaces, then col-1 spaces, then '^' (columns count bytes).  A Loc without a
 * source (a compiler-made node) gives just "mlc: error: MESSAGE".
 */
#include "ast.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- sources ---------------------------------------------------------- */

Source *source_from_string(Arena *a, const char *path, const char *text) {
  Source *s = arena_alloc(a, sizeof *s);
  s->path = arena_strdup(a, path);
  s->len = strlen(text);
  s->text = arena_strndup(a, text, s->len);
  return s;
}

static void diag_append(Diag *d, const char *text, size_t n);

/* Reports "PATH: error: cannot read file: REASON" (no location to point at). */
static Source *read_failed(Diag *d, const char *path, int err) {
  char msg[1024];
  snprintf(msg, sizeof msg, "%s: error: cannot read file: %s\n", path, strerror(err));
  diag_append(d, msg, strlen(msg));
  d->nerrors++;
  return NULL;
}

Source *source_from_file(Arena *a, const char *path, Diag *d) {
  FILE *f = fopen(path, "rb");
  if (!f) return read_failed(d, path, errno);
  /* Read in growing steps rather than trusting a size from fseek: pipes and
   * /dev/stdin have none.  A read error (a directory: EISDIR) stops us. */
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap);
  int err = 0;
  for (;;) {
    if (!buf) {
      err = ENOMEM;
      break;
    }
    len += fread(buf + len, 1, cap - len - 1, f);
    if (ferror(f)) {
      err = errno ? errno : EIO;
      break;
    }
    if (feof(f)) break;
    if (cap - len - 1 == 0) {
      char *bigger = realloc(buf, cap * 2);
      if (!bigger) free(buf);
      buf = bigger;
      cap *= 2;
    }
  }
  fclose(f);
  if (err) {
    free(buf);
    return read_failed(d, path, err);
  }
  Source *s = arena_alloc(a, sizeof *s);
  s->path = arena_strdup(a, path);
  s->text = arena_strndup(a, buf, len); /* may hold NULs: the lexer uses len */
  s->len = len;
  free(buf);
  return s;
}

/* ---- diagnostics ------------------------------------------------------ */

static void diag_append(Diag *d, const char *text, size_t n) {
  if (d->len + n + 1 > d->cap) {
    size_t cap = d->cap ? d->cap : 256;
    while (cap < d->len + n + 1) cap *= 2;
    char *buf = realloc(d->buf, cap);
    if (!buf) {
      fputs("mlc: fatal: out of memory\n", stderr);
      abort();
    }
    d->buf = buf;
    d->cap = cap;
  }
  memcpy(d->buf + d->len, text, n);
  d->len += n;
  d->buf[d->len] = '\0';
  if (d->echo) {
    fwrite(text, 1, n, d->echo);
    fflush(d->echo);
  }
}

/* A tiny growable string for assembling one diagnostic. */
typedef struct Str {
  char *p;
  size_t len, cap;
} Str;

static void str_vadd(Str *s, const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  if (n <= 0) return;
  if (s->len + (size_t)n + 1 > s->cap) {
    size_t cap = s->cap ? s->cap : 256;
    while (cap < s->len + (size_t)n + 1) cap *= 2;
    char *p = realloc(s->p, cap);
    if (!p) {
      fputs("mlc: fatal: out of memory\n", stderr);
      abort();
    }
    s->p = p;
    s->cap = cap;
  }
  vsnprintf(s->p + s->len, (size_t)n + 1, fmt, ap);
  s->len += (size_t)n;
}

static void str_add(Str *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void str_add(Str *s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  str_vadd(s, fmt, ap);
  va_end(ap);
}

/* Finds line `line` (1-based) of src: start pointer and length without the
 * newline (or a trailing '\r').  Returns 0 if the file has no such line. */
static int find_line(const Source *src, int line, const char **start, size_t *n) {
  const char *p = src->text, *end = src->text + src->len;
  for (int l = 1; l < line; l++) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl) return 0;
    p = nl + 1;
  }
  const char *nl = memchr(p, '\n', (size_t)(end - p));
  const char *e = nl ? nl : end;
  if (e > p && e[-1] == '\r') e--;
  *start = p;
  *n = (size_t)(e - p);
  return 1;
}

static void diag_emit(Diag *d, Loc loc, const char *severity, const char *fmt, va_list ap) {
  Str s = {0};
  if (!loc.src) {
    str_add(&s, "mlc: %s: ", severity);
  } else if (loc.line <= 0) {
    str_add(&s, "%s: %s: ", loc.src->path, severity);
  } else {
    str_add(&s, "%s:%d:%d: %s: ", loc.src->path, loc.line, loc.col, severity);
  }
  str_vadd(&s, fmt, ap);
  str_add(&s, "\n");
  const char *line;
  size_t n;
  if (loc.src && loc.line > 0 && find_line(loc.src, loc.line, &line, &n)) {
    /* %.*s would stop at a NUL byte in the line; that is fine for display. */
    str_add(&s, "  %.*s\n", (int)n, line);
    int col = loc.col > 0 ? loc.col : 1;
    str_add(&s, "  %*s^\n", col - 1, "");
  }
  diag_append(d, s.p, s.len);
  free(s.p);
}

void diag_verror(Diag *d, Loc loc, const char *fmt, va_list ap) {
  diag_emit(d, loc, "error", fmt, ap);
  d->nerrors++;
}

void diag_error(Diag *d, Loc loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  diag_verror(d, loc, fmt, ap);
  va_end(ap);
}

void diag_note(Diag *d, Loc loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  diag_emit(d, loc, "note", fmt, ap);
  va_end(ap);
}

void diag_free(Diag *d) {
  free(d->buf);
  d->buf = NULL;
  d->len = d->cap = 0; /* nerrors is kept: callers may still ask */
}
