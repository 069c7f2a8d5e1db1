/* compiler/dim.c — integer polynomials over symbolic dims.
 *
 * A Dim is a sum of terms c * s1 * s2 * ..., kept canonical (terms sorted by
 * monomial, like terms combined, zero terms dropped) so that structural
 * equality is semantic equality.  That is enough for the shapes models have:
 * [B, 784], [B*T, C], C / H with C and H constant, 784*B / B.
 */
#include "mlcc.h"
#include <string.h>

static int mono_cmp(const uint8_t *a, const uint8_t *b) { return memcmp(a, b, DIM_VARS); }

/* Adds term t into d, keeping d canonical. */
static void add_term(Dim *d, DimTerm t) {
  if (t.c == 0) return;
  for (int i = 0; i < d->n; i++) {
    int c = mono_cmp(d->t[i].v, t.v);
    if (c == 0) {
      if (__builtin_add_overflow(d->t[i].c, t.c, &d->t[i].c)) d->bad = true;
      if (d->t[i].c == 0) {
        memmove(&d->t[i], &d->t[i + 1], (size_t)(d->n - i - 1) * sizeof(DimTerm));
        d->n--;
      }
      return;
    }
    if (c > 0) {
      if (d->n == DIM_TERMS) { d->bad = true; return; }
      memmove(&d->t[i + 1], &d->t[i], (size_t)(d->n - i) * sizeof(DimTerm));
      d->t[i] = t;
      d->n++;
      return;
    }
  }
  if (d->n == DIM_TERMS) { d->bad = true; return; }
  d->t[d->n++] = t;
}

Dim dim_const(int64_t c) {
  Dim d = {0};
  DimTerm t = {0};
  t.c = c;
  add_term(&d, t);
  return d;
}

Dim dim_sym(int id) {
  Dim d = {0};
  DimTerm t = {0};
  t.c = 1;
  t.v[0] = (uint8_t)id;
  add_term(&d, t);
  return d;
}

Dim dim_add(Dim a, Dim b) {
  for (int i = 0; i < b.n; i++) add_term(&a, b.t[i]);
  a.bad |= b.bad;
  return a;
}

Dim dim_sub(Dim a, Dim b) {
  for (int i = 0; i < b.n; i++) {
    DimTerm t = b.t[i];
    t.c = -t.c;
    add_term(&a, t);
  }
  a.bad |= b.bad;
  return a;
}

/* Product of two monomials; false if it has too many variables. */
static bool mono_mul(const uint8_t *a, const uint8_t *b, uint8_t *out) {
  uint8_t all[2 * DIM_VARS];
  memset(out, 0, DIM_VARS);
  int n = 0;
  for (int i = 0; i < DIM_VARS && a[i]; i++) all[n++] = a[i];
  for (int i = 0; i < DIM_VARS && b[i]; i++) all[n++] = b[i];
  if (n > DIM_VARS) return false;
  for (int i = 1; i < n; i++) /* insertion sort */
    for (int j = i; j > 0 && all[j - 1] > all[j]; j--) {
      uint8_t t = all[j];
      all[j] = all[j - 1];
      all[j - 1] = t;
    }
  memset(out, 0, DIM_VARS);
  memcpy(out, all, (size_t)n);
  return true;
}

Dim dim_mul(Dim a, Dim b) {
  Dim d = {0};
  d.bad = a.bad || b.bad;
  for (int i = 0; i < a.n; i++)
    for (int j = 0; j < b.n; j++) {
      DimTerm t;
      if (__builtin_mul_overflow(a.t[i].c, b.t[j].c, &t.c)) d.bad = true;
      if (!mono_mul(a.t[i].v, b.t[j].v, t.v)) d.bad = true;
      add_term(&d, t);
    }
  return d;
}

/* Divides monomial a by b; false if b does not divide a. */
static bool mono_div(const uint8_t *a, const uint8_t *b, uint8_t *out) {
  uint8_t rest[DIM_VARS] = {0};
  bool used[DIM_VARS] = {0};
  for (int j = 0; j < DIM_VARS && b[j]; j++) {
    int k = -1;
    for (int i = 0; i < DIM_VARS && a[i]; i++)
      if (!used[i] && a[i] == b[j]) { k = i; break; }
    if (k < 0) return false;
    used[k] = true;
  }
  int n = 0;
  for (int i = 0; i < DIM_VARS && a[i]; i++)
    if (!used[i]) rest[n++] = a[i];
  memcpy(out, rest, DIM_VARS);
  return true;
}

/* Exact division.  Handles a divisor that is a single term (c * monomial),
 * which covers every reshape of real models; otherwise only a == k * b for
 * a constant k found from the leading terms. */
bool dim_div(Dim a, Dim b, Dim *out) {
  if (b.n == 0 || a.bad || b.bad) return false;
  if (a.n == 0) { *out = dim_const(0); return true; }
  if (b.n == 1) {
    Dim d = {0};
    for (int i = 0; i < a.n; i++) {
      DimTerm t;
      if (b.t[0].c == -1 && a.t[i].c == INT64_MIN) return false; /* overflows */
      if (a.t[i].c % b.t[0].c != 0) return false;
      t.c = a.t[i].c / b.t[0].c;
      if (!mono_div(a.t[i].v, b.t[0].v, t.v)) return false;
      add_term(&d, t);
    }
    *out = d;
    return true;
  }
  /* a == k * b ? */
  if (a.n != b.n || (b.t[0].c == -1 && a.t[0].c == INT64_MIN) || a.t[0].c % b.t[0].c != 0) return false;
  int64_t k = a.t[0].c / b.t[0].c;
  Dim kb = dim_mul(b, dim_const(k));
  if (!dim_eq(kb, a)) return false;
  *out = dim_const(k);
  return true;
}

bool dim_eq(Dim a, Dim b) {
  if (a.n != b.n) return false;
  for (int i = 0; i < a.n; i++)
    if (a.t[i].c != b.t[i].c || mono_cmp(a.t[i].v, b.t[i].v) != 0) return false;
  return true;
}

bool dim_is_const(Dim a, int64_t *c) {
  if (a.n == 0) { if (c) *c = 0; return true; }
  if (a.n == 1 && a.t[0].v[0] == 0) { if (c) *c = a.t[0].c; return true; }
  return false;
}

bool dim_is_sym(Dim a, int *id) {
  if (a.n == 1 && a.t[0].c == 1 && a.t[0].v[0] != 0 && a.t[0].v[1] == 0) {
    if (id) *id = a.t[0].v[0];
    return true;
  }
  return false;
}

int64_t dim_eval(Dim a, const int64_t *symvals) {
  int64_t s = 0;
  for (int i = 0; i < a.n; i++) {
    int64_t t = a.t[i].c;
    for (int j = 0; j < DIM_VARS && a.t[i].v[j]; j++) t *= symvals[a.t[i].v[j]];
    s += t;
  }
  return s;
}

char *dim_str(Arena *A, Dim a, const char *const *names) {
  if (a.n == 0) return arena_strdup(A, "0");
  char buf[512];
  size_t len = 0;
  buf[0] = 0;
  for (int i = 0; i < a.n && len < sizeof buf - 64; i++) {
    int64_t c = a.t[i].c;
    bool mono = a.t[i].v[0] != 0;
    if (i > 0) {
      len += (size_t)snprintf(buf + len, sizeof buf - len, c < 0 ? " - " : " + ");
      if (c < 0) c = -c;
    }
    if (!mono || c != 1) {
      if (c == -1 && mono)
        len += (size_t)snprintf(buf + len, sizeof buf - len, "-");
      else
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%lld%s", (long long)c, mono ? "*" : "");
    }
    for (int j = 0; j < DIM_VARS && a.t[i].v[j]; j++)
      len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%s", j ? "*" : "", names[a.t[i].v[j]]);
  }
  if (a.n > 1) return arena_printf(A, "(%s)", buf);
  return arena_strdup(A, buf);
}

/* True when a != b for every value of the symbols (all >= 1): their
 * difference is non-zero with all coefficients of one sign. */
bool dim_never_eq(Dim a, Dim b) {
  Dim d = dim_sub(a, b);
  if (d.bad || d.n == 0) return false;
  int sign = d.t[0].c > 0 ? 1 : -1;
  for (int i = 1; i < d.n; i++)
    if ((d.t[i].c > 0 ? 1 : -1) != sign) return false;
  return true;
}
