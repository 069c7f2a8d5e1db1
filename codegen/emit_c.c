/* codegen/emit_c.c — the plain C backend: IR -> model.c, model.h, harness.
 *
 * This backend is the reference every optimised path is checked against, so
 * it favours clarity: one commented step per IR node, in source order, with
 * named pointers into the instance's weights region and planned arena.
 * Elementwise ops (with broadcasting and casts) become loops whose body is
 * the op table's C expression; GEMM, convolution, pooling and softmax call
 * libmlcrt.  Output is deterministic: the same graph gives the same bytes.
 */
#include "emit.h"
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void out(Buf *b, const char *fmt, ...) {
  va_list ap;
  for (;;) {
    size_t room = b->cap - b->len;
    va_start(ap, fmt);
    int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? room : 0, fmt, ap);
    va_end(ap);
    if (b->s && (size_t)n < room) {
      b->len += (size_t)n;
      return;
    }
    size_t nc = b->cap ? b->cap * 2 : 4096;
    while (nc < b->len + (size_t)n + 1) nc *= 2;
    char *ns = arena_alloc(b->A, nc);
    if (b->s) memcpy(ns, b->s, b->len);
    b->s = ns;
    b->cap = nc;
  }
}

/* ---- names -------------------------------------------------------------------- */
static bool is_reserved(const char *s) {
  static const char *kw[] = {
      "auto",     "break",  "case",   "char",     "const",    "continue", "default",  "do",
      "double",   "else",   "enum",   "extern",   "float",    "for",      "goto",     "if",
      "inline",   "int",    "long",   "register", "restrict", "return",   "short",    "signed",
      "sizeof",   "static", "struct", "switch",   "typedef",  "union",    "unsigned", "void",
      "volatile", "while",  "m",      "o",        "k",        "acc",      "best",     "cp",
      "pp",       "main",   "argc",   "argv",     "i",        "v",        "as",       "bs",
      "ys",       "a",      "ctx",    "r",        "end",      "nc",       "epi",      NULL};
  for (int i = 0; kw[i]; i++)
    if (strcmp(s, kw[i]) == 0) return true;
  if (strchr("ijrc", s[0]) && s[0] && isdigit((unsigned char)s[1]) && !s[2])
    return true; /* i0, r1, c0 ... */
  /* names the C library may define: typedefs (*_t), macros (all capitals),
   * and the functions generated code calls */
  size_t len = strlen(s);
  if (len > 2 && strcmp(s + len - 2, "_t") == 0) return true;
  bool upper = true;
  for (const char *q = s; *q; q++) upper &= !islower((unsigned char)*q);
  if (upper && len > 1) return true;
  static const char *lib[] = {
      "expf",   "logf",   "sqrtf", "tanhf",         "erff",     "fabsf",    "floorf",     "ceilf",
      "roundf", "sinf",   "cosf",  "powf",          "fmaxf",    "fminf",    "nearbyintf", "log1pf",
      "expm1f", "exp",    "log",   "sqrt",          "tanh",     "erf",      "memcpy",     "memset",
      "malloc", "calloc", "free",  "aligned_alloc", "snprintf", "fprintf",  "stderr",     "printf",
      "strcmp", "errno",  "isnan", "isinf",         "abs",      "offsetof", "assert",     NULL};
  for (int i = 0; lib[i]; i++)
    if (strcmp(s, lib[i]) == 0) return true;
  return strncmp(s, "mlc", 3) == 0 || strncmp(s, "_", 1) == 0;
}

/* A C identifier for an MDL name: dots become underscores. */
const char *cident(Arena *A, const char *prefix, const char *s) {
  size_t n = strlen(prefix) + strlen(s);
  char *c = arena_alloc(A, n + 2);
  snprintf(c, n + 1, "%s%s", prefix, s);
  for (char *q = c; *q; q++)
    if (!isalnum((unsigned char)*q) && *q != '_') *q = '_';
  if (is_reserved(c)) strcat(c, "_");
  return c;
}

const char *dimc(E *e, Dim d) {
  return dim_str(e->A, d, e->g->sym);
}

const char *ctype(DType t) {
  static const char *names[DT_COUNT] = {"float",   "uint16_t", "uint16_t", "int32_t",
                                        "int64_t", "uint8_t",  "uint8_t"};
  return names[t];
}
const char *mlcrt_dtype_c(DType t) {
  static const char *names[DT_COUNT] = {"MLCRT_F32", "MLCRT_F16", "MLCRT_BF16", "MLCRT_I32",
                                        "MLCRT_I64", "MLCRT_U8",  "MLCRT_BOOL"};
  return names[t];
}
/* The type arithmetic happens in: f16/bf16 compute in float. */
DType compute_dt(DType t) {
  return t == DT_F16 || t == DT_BF16 ? DT_F32 : t;
}

/* Converts expression x of dtype `from` to the compute type of `to`. */
static const char *convert(E *e, const char *x, DType from, DType to) {
  if (from == DT_F16) x = arena_printf(e->A, "mlcrt_f16_to_f32(%s)", x), from = DT_F32;
  if (from == DT_BF16) x = arena_printf(e->A, "mlcrt_bf16_to_f32(%s)", x), from = DT_F32;
  to = compute_dt(to);
  if (from == to) return x;
  if (to == DT_BOOL) return arena_printf(e->A, "(uint8_t)(%s != 0)", x);
  if (to == DT_F32) return arena_printf(e->A, "(float)%s", x);
  if (from == DT_F32) return arena_printf(e->A, "(%s)mlc_f2i(%s)", ctype(to), x);
  return arena_printf(e->A, "(%s)%s", ctype(to), x);
}

/* Converts a compute-type value to the storage type of `to`. */
static const char *store(E *e, const char *x, DType ct, DType to) {
  if (to == DT_F16) return arena_printf(e->A, "mlcrt_f32_to_f16(%s)", convert(e, x, ct, DT_F32));
  if (to == DT_BF16) return arena_printf(e->A, "mlcrt_f32_to_bf16(%s)", convert(e, x, ct, DT_F32));
  return convert(e, x, ct, to);
}

const char *literal(E *e, double v, DType ct) {
  if (ct == DT_F32) {
    if (isnan(v)) return "NAN";
    if (isinf(v)) return v > 0 ? "INFINITY" : "(-INFINITY)";
    char buf[64];
    snprintf(buf, sizeof buf, "%.9g", v);
    if (!strpbrk(buf, ".e")) strcat(buf, ".0");
    return arena_printf(e->A, v < 0 ? "(%sf)" : "%sf", buf);
  }
  if (ct == DT_BOOL) return v != 0 ? "1" : "0";
  return arena_printf(e->A, v < 0 ? "(%s)%lld" : "(%s)%lld", ctype(ct), (long long)v);
}

/* ---- loop nests -------------------------------------------------------------- */
/* Strides of operand type t read along output shape `o` (NumPy broadcasting:
 * missing and size-1 dims read with stride 0). */
void bcast_strides(const Type *t, const Type *o, Dim *st) {
  Dim s = dim_const(1);
  for (int k = o->rank - 1; k >= 0; k--) {
    int j = t->rank - o->rank + k;
    int64_t c;
    if (j < 0 ||
        (dim_is_const(t->dim[j], &c) && c == 1 && !(dim_is_const(o->dim[k], &c) && c == 1)))
      st[k] = dim_const(0);
    else
      st[k] = s;
    if (j >= 0) s = dim_mul(s, t->dim[j]);
  }
}

const char *index_expr(E *e, const Dim *st, int rank) {
  char buf[1024] = "";
  size_t len = 0;
  for (int k = 0; k < rank; k++) {
    int64_t c;
    if (dim_is_const(st[k], &c) && c == 0) continue;
    if (dim_is_const(st[k], &c) && c == 1)
      len += (size_t)snprintf(buf + len, sizeof buf - len, "%si%d", len ? " + " : "", k);
    else
      len += (size_t)snprintf(buf + len, sizeof buf - len, "%si%d*%s", len ? " + " : "", k,
                              dimc(e, st[k]));
    if (len >= sizeof buf - 64) break;
  }
  return len ? arena_strdup(e->A, buf) : "0";
}

bool same_shape(const Type *a, const Type *b) {
  if (a->rank != b->rank) return false;
  for (int i = 0; i < a->rank; i++)
    if (!dim_eq(a->dim[i], b->dim[i])) return false;
  return true;
}

static void indent(Buf *b, int n) {
  out(b, "%*s", 2 * n, "");
}

/* The node's alternative of its op's CEXPR (alternatives are separated by
 * ';', see ops.def): ia[0] where lower.c set attributes, else 1 for an
 * integer compute type. */
const char *elem_template(E *e, const Node *n, DType ct) {
  const char *t = op_info[n->op].cexpr;
  if (!strchr(t, ';')) return t;
  int v = n->nia ? (int)n->ia[0] : !dtype_is_float(ct);
  for (; v > 0 && strchr(t, ';'); v--) t = strchr(t, ';') + 1;
  return arena_strndup(e->A, t, strcspn(t, ";"));
}

/* The compute type an elementwise node's expression works in. */
static DType elem_compute_dt(E *e, const Node *n) {
  int flags = op_info[n->op].flags;
  if ((flags & F_CMP) && n->nin == 1)
    return compute_dt(e->g->nodes[n->in[0]].ty.dt); /* logical_not */
  if (flags & F_CMP)
    return compute_dt(infer_promote(&e->g->nodes[n->in[0]], &e->g->nodes[n->in[1]]));
  return compute_dt(n->ty.dt);
}

/* One elementwise loop nest (a fusion group, see Group in mlcc.h): members
 * nodes[first..n-1], root last, over the root's shape.  A member other than
 * the root is a local named like its node, holding its value as stored (so
 * f16, integer and bool intermediates round exactly as a buffer would); a
 * leaf input is read at the output index broadcast to its shape.  With
 * first = 1 (an epilogue), nodes[0] is the producer, whose result already
 * sits in the root's buffer and is read at the same index. */
typedef struct ElemLoop {
  const int *nodes;
  int first, n;
  int producer; /* nodes[0] of an epilogue, or -1 */
  bool flat;    /* every leaf has the root's shape: one flat loop */
  bool conv;    /* not flat, over a convolution's [N * C, the rest] (i0, i1, column j) */
} ElemLoop;

static bool in_loop(const ElemLoop *L, int id) {
  for (int k = L->first; k < L->n - 1; k++)
    if (L->nodes[k] == id) return true;
  return false;
}

/* The value of member m: its op's C expression over its operands, stored. */
static const char *elem_value(E *e, const ElemLoop *L, int id) {
  Node *n = &e->g->nodes[id];
  const Type *o = &e->g->nodes[L->nodes[L->n - 1]].ty; /* the loop's shape */
  int flags = op_info[n->op].flags;
  DType ct = elem_compute_dt(e, n);
  const char *ops[4];
  for (int j = 0; j < n->nin && j < 4; j++) {
    int xi = n->in[j];
    Node *x = &e->g->nodes[xi];
    DType want = n->op == OP_WHERE && j == 0 ? DT_BOOL : ct; /* where's condition stays bool */
    if (e->p->storage[xi] == ST_NONE) {                      /* inlined scalar constant */
      ops[j] = literal(e, x->fa[0], want);
      continue;
    }
    /* the producer's result is in the root's buffer (the same shape) */
    const char *arr = xi == L->producer ? e->var[L->nodes[L->n - 1]] : e->var[xi];
    const char *src;
    if (in_loop(L, xi))
      src = e->var[xi]; /* a local computed above */
    else if (L->flat)
      src = arena_printf(e->A, "%s[i]", arr);
    else if (L->conv && (xi == L->producer || same_shape(&x->ty, o)))
      src = arena_printf(e->A, "%s[r * nc + j]", arr);
    else if (L->conv) { /* fuse_conv_leaf: image and channel, then the column or nothing */
      Dim st[MAX_RANK];
      bool full;
      bcast_strides(&x->ty, o, st);
      fuse_conv_leaf(&x->ty, o, &full);
      const char *at = index_expr(e, st, 2);
      src = arena_printf(e->A, "%s[%s%s]", arr,
                         full && strcmp(at, "0") ? arena_printf(e->A, "%s + ", at)
                         : full                  ? ""
                                                 : at,
                         full ? "j" : "");
    } else {
      Dim st[MAX_RANK];
      bcast_strides(&x->ty, o, st);
      src = arena_printf(e->A, "%s[%s]", arr, index_expr(e, st, o->rank));
    }
    ops[j] = convert(e, src, x->ty.dt, want);
  }
  /* substitute $0.. into the op's C expression */
  Buf body = {.A = e->A};
  out(&body, "%s", "");
  for (const char *q = elem_template(e, n, ct); *q; q++) {
    if (*q == '$' && q[1] >= '0' && q[1] <= '3') {
      out(&body, "%s", ops[q[1] - '0']);
      q++;
    } else if (*q == '$' && q[1] == 'a' && q[2] >= '0' && q[2] <= '3') { /* a float attribute */
      out(&body, "%s", literal(e, n->fa[q[2] - '0'], ct));
      q += 2;
    } else if (*q == '$' && q[1] == 'd' && q[2] >= '0' &&
               q[2] <= '3') { /* a dim attribute, maybe symbolic */
      out(&body, "(float)(%s)", dimc(e, n->da[q[2] - '0']));
      q += 2;
    } else {
      out(&body, "%c", *q);
    }
  }
  /* comparisons give 0/1 already; float ops on integers never happen
   * (F_FLOATOUT makes ct float) */
  return (flags & F_CMP) ? body.s : store(e, body.s, ct, n->ty.dt);
}

/* Is name a whole identifier in C text t (comments skipped)? */
static bool uses_name(const char *t, const char *name) {
  size_t n = strlen(name);
  for (const char *q = t; *q; q++) {
    if (q[0] == '/' && q[1] == '*') {
      const char *c = strstr(q + 2, "*/");
      if (!c) return false;
      q = c + 1;
      continue;
    }
    if (strncmp(q, name, n) == 0 && (q == t || !(isalnum((unsigned char)q[-1]) || q[-1] == '_')) &&
        !(isalnum((unsigned char)q[n]) || q[n] == '_'))
      return true;
  }
  return false;
}

/* An elementwise kernel: the loop nest of one fusion group (or one
 * elementwise node) as a file-scope function over a block of its output
 * viewed as rows x cols (mlcrt_tile_fn), with the pointers and dims it reads
 * in a struct of the same name.  Written to e->kern; the call site gets the
 * struct's initializer and the view.  See mlcrt_tiles and mlcrt_epilogue. */
typedef struct KernSeen {
  const char *sig, *name;
  struct KernSeen *next;
} KernSeen;

typedef struct ElemKernel {
  const char *name, *init; /* function (and struct) name; "{t3, x, ...}" */
  const char *rows, *cols; /* the view, as C expressions of run's dims */
} ElemKernel;

/* The loop of a group (nodes[0] its producer when an epilogue): flat when
 * every value it reads has the root's shape. */
static ElemLoop elem_loop(E *e, const int *nodes, int n, bool epilogue) {
  ElemLoop L = {nodes, epilogue ? 1 : 0, n, epilogue ? nodes[0] : -1, true, false};
  const Graph *g = e->g;
  const Type *o = &g->nodes[nodes[n - 1]].ty;
  for (int k = L.first; k < n; k++) {
    const Node *m = &g->nodes[nodes[k]];
    for (int j = 0; j < m->nin; j++) {
      int xi = m->in[j];
      if (e->p->storage[xi] != ST_NONE && !in_loop(&L, xi) && xi != L.producer &&
          !same_shape(&g->nodes[xi].ty, o))
        L.flat = false;
    }
  }
  return L;
}

/* How an elementwise kernel sees its output (rows x cols): */
enum {
  VIEW_AUTO, /* one row of everything, or rows of the last dim when it broadcasts */
  VIEW_GEMM, /* rows of the last dim: a GEMM's blocks (its epilogue) */
  VIEW_CONV  /* [N * C, the rest]: a convolution's images and channels (flat loops only) */
};

static ElemKernel elem_kernel(E *e, const int *nodes, int n, bool epilogue, int view) {
  ElemLoop L = elem_loop(e, nodes, n, epilogue);
  Graph *g = e->g;
  int root = nodes[n - 1];
  const Type *o = &g->nodes[root].ty;
  ElemKernel K;
  K.name = "@K@"; /* named once known to be new */
  /* the view: one row of every element, unless a GEMM's blocks (its
   * epilogue) or broadcasting (an index per dim) want rows of the last dim */
  const bool by_row = (view == VIEW_GEMM || !L.flat) && o->rank >= 1;
  K.rows = by_row ? dimc(e, dims_prod(o, 0, o->rank - 1)) : "1";
  K.cols = by_row ? dimc(e, o->dim[o->rank - 1]) : dimc(e, type_numel(o));
  if (view == VIEW_CONV && o->rank >= 3) {
    K.rows = dimc(e, dims_prod(o, 0, 2));
    K.cols = dimc(e, dims_prod(o, 2, o->rank));
    L.conv = !L.flat;
  }

  /* the loop body: locals of the members, then the root's store */
  Buf body = {.A = e->A};
  out(&body, "%s", "");
  const int depth = 3;
  for (int k = L.first; k < n - 1; k++) {
    const Node *m = &g->nodes[nodes[k]];
    indent(&body, depth);
    out(&body, "const %s %s = %s; /* %s */\n", ctype(m->ty.dt), e->var[nodes[k]],
        elem_value(e, &L, nodes[k]), op_info[m->op].name);
  }
  indent(&body, depth);
  out(&body, "%s[%s] = %s;\n", e->var[root],
      L.flat   ? "i"
      : L.conv ? "r * nc + j"
               : "o++",
      elem_value(e, &L, root));

  /* the loops around it */
  Buf loops = {.A = e->A};
  out(&loops, "  for (int64_t r = r0; r < r1; r++) {\n");
  if (L.flat) {
    out(&loops, "    const int64_t end = r * nc + c1;\n    for (int64_t i = r * nc + c0; i < end; "
                "i++) {\n");
  } else if (L.conv) { /* rows are image x channel, columns the rest */
    if (uses_name(body.s, "i0"))
      out(&loops, "    const int64_t i0 = r / (%s);\n", dimc(e, o->dim[1]));
    if (uses_name(body.s, "i1"))
      out(&loops, "    const int64_t i1 = r %% (%s);\n", dimc(e, o->dim[1]));
    out(&loops, "    for (int64_t j = c0; j < c1; j++) {\n");
  } else {
    const int R = o->rank;
    for (int k = 0; k < R - 1; k++) { /* the row's index along each leading dim, if read */
      const char *ik = arena_printf(e->A, "i%d", k);
      if (!uses_name(body.s, ik)) continue;
      Dim below = dims_prod(o, k + 1, R - 1);
      int64_t c;
      const char *q =
          dim_is_const(below, &c) && c == 1 ? "r" : arena_printf(e->A, "r / (%s)", dimc(e, below));
      if (k == 0)
        out(&loops, "    const int64_t %s = %s;\n", ik, q);
      else
        out(&loops, "    const int64_t %s = (%s) %% (%s);\n", ik, q, dimc(e, o->dim[k]));
    }
    out(&loops, "    int64_t o = r * nc + c0;\n    for (int64_t i%d = c0; i%d < c1; i%d++) {\n",
        R - 1, R - 1, R - 1);
  }

  /* what the body reads: the group's leaf arrays, its output and run's dims */
  Buf fields = {.A = e->A}, locals = {.A = e->A}, init = {.A = e->A};
  out(&fields, "%s", "");
  out(&init, "{");
  out(&fields, "  %s *%s;\n", ctype(o->dt), e->var[root]);
  out(&locals, "  %s *%s = a->%s;\n", ctype(o->dt), e->var[root], e->var[root]);
  out(&init, "%s", e->var[root]);
  const char **seen = arena_alloc(e->A, sizeof(char *) * (size_t)(4 * n + 1));
  int nseen = 0;
  for (int k = L.first; k < n; k++) {
    const Node *m = &g->nodes[nodes[k]];
    for (int j = 0; j < m->nin; j++) {
      int xi = m->in[j];
      if (e->p->storage[xi] == ST_NONE || in_loop(&L, xi) || xi == L.producer) continue;
      const char *v = e->var[xi];
      bool dup = strcmp(v, e->var[root]) == 0;
      for (int s2 = 0; s2 < nseen && !dup; s2++) dup = strcmp(seen[s2], v) == 0;
      if (dup || !uses_name(body.s, v)) continue;
      seen[nseen++] = v;
      out(&fields, "  const %s *%s;\n", ctype(g->nodes[xi].ty.dt), v);
      out(&locals, "  const %s *%s = a->%s;\n", ctype(g->nodes[xi].ty.dt), v, v);
      out(&init, ", %s", v);
    }
  }
  out(&fields, "  int64_t nc; /* columns of the view */\n");
  out(&locals, "  const int64_t nc = a->nc;\n");
  out(&init, ", %s", K.cols);
  for (int sy = 1; sy <= g->nsym; sy++)
    if (uses_name(body.s, g->sym[sy]) || uses_name(loops.s, g->sym[sy])) {
      out(&fields, "  int64_t %s;\n", g->sym[sy]);
      out(&locals, "  const int64_t %s = a->%s;\n", g->sym[sy], g->sym[sy]);
      out(&init, ", %s", g->sym[sy]);
    }
  out(&init, "}");
  K.init = init.s;

  /* the same kernel already written (run's, seen again in the train step)? */
  const char *sig = arena_printf(e->A, "%s|%s|%s|%s", fields.s, locals.s, loops.s, body.s);
  for (KernSeen *ks = e->kseen; ks; ks = ks->next)
    if (strcmp(ks->sig, sig) == 0) {
      K.name = ks->name;
      return K;
    }
  K.name = arena_printf(e->A, "%s_k%d", e->M, ++e->nkern);
  KernSeen *ks = arena_alloc(e->A, sizeof *ks);
  *ks = (KernSeen){sig, K.name, e->kseen};
  e->kseen = ks;
  Buf *f = e->kern;
  out(f, "/* ");
  for (int k = 0; k < n; k++) out(f, "%s%s", k ? " + " : "", describe(e, &g->nodes[nodes[k]]));
  out(f, "%s   -> %s */\n", epilogue ? " (epilogue)" : "", type_str(e->A, g, o));
  out(f, "struct %s {\n%s};\n", K.name, fields.s);
  out(f,
      "static void %s(void *ctx, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {\n  const struct "
      "%s *a = ctx;\n%s%s%s    }\n  }\n}\n\n",
      K.name, K.name, locals.s, loops.s, body.s);
  return K;
}

/* An elementwise group on its own: its kernel over the whole output, split
 * over the team when large (mlcrt_tiles). */
static void emit_elem_loop(E *e, Buf *b, const int *nodes, int n, bool epilogue) {
  ElemKernel K = elem_kernel(e, nodes, n, epilogue, VIEW_AUTO);
  out(b, "  {\n    struct %s a = %s;\n    mlcrt_tiles(m->team, %s, %s, %s, &a);\n  }\n", K.name,
      K.init, K.rows, K.cols, K.name);
}

static void emit_elementwise(E *e, Buf *b, int id) {
  emit_elem_loop(e, b, &id, 1, false);
}

/* permute / transpose: a strided copy. */
static void emit_permute(E *e, Buf *b, int id) {
  Node *n = &e->g->nodes[id];
  const Type *x = &e->g->nodes[n->in[0]].ty, *o = &n->ty;
  Dim xs[MAX_RANK], st[MAX_RANK];
  Dim s = dim_const(1);
  for (int k = x->rank - 1; k >= 0; k--) xs[k] = s, s = dim_mul(s, x->dim[k]);
  for (int k = 0; k < o->rank; k++) st[k] = xs[n->ia[8 + k]];
  out(b, "  {\n    int64_t o = 0;\n");
  for (int k = 0; k < o->rank; k++) {
    indent(b, 2 + k);
    out(b, "for (int64_t i%d = 0; i%d < %s; i%d++)\n", k, k, dimc(e, o->dim[k]), k);
  }
  indent(b, 2 + o->rank);
  out(b, "%s[o++] = %s[%s];\n  }\n", e->var[id], e->var[n->in[0]], index_expr(e, st, o->rank));
}

/* Reductions: kept dims outside, reduced dims inside, accumulate in double
 * (float inputs) or int64 (integers). */
static void emit_reduce(E *e, Buf *b, int id) {
  Node *n = &e->g->nodes[id];
  const Type *x = &e->g->nodes[n->in[0]].ty;
  int64_t mask = n->ia[14];
  Dim xs[MAX_RANK];
  Dim s = dim_const(1);
  for (int k = x->rank - 1; k >= 0; k--) xs[k] = s, s = dim_mul(s, x->dim[k]);
  int order[MAX_RANK], no = 0, nkept = 0;
  for (int k = 0; k < x->rank; k++)
    if (!(mask & (1 << k))) order[no++] = k, nkept++;
  for (int k = 0; k < x->rank; k++)
    if (mask & (1 << k)) order[no++] = k;
  bool fl = dtype_is_float(x->dt);
  DType ct = compute_dt(x->dt);
  const char *acc_t =
      fl ? (n->op == OP_SUM || n->op == OP_MEAN || n->op == OP_PROD ? "double" : "float")
         : "int64_t";
  char idx[1024] = "";
  size_t len = 0;
  for (int k = 0; k < x->rank && len < sizeof idx - 64; k++)
    len += (size_t)snprintf(idx + len, sizeof idx - len, "%si%d*%s", len ? " + " : "", k,
                            dimc(e, xs[k]));
  const char *v =
      convert(e, arena_printf(e->A, "%s[%s]", e->var[n->in[0]], len ? idx : "0"), x->dt, ct);
  Dim count = dim_const(1);
  for (int k = 0; k < x->rank; k++)
    if (mask & (1 << k)) count = dim_mul(count, x->dim[k]);
  const char *init, *step, *fin;
  bool arg = n->op == OP_ARGMAX || n->op == OP_ARGMIN;
  const char *cmp = n->op == OP_MAX || n->op == OP_ARGMAX ? ">" : "<";
  switch (n->op) {
  case OP_SUM:
    init = "0";
    step = "acc += v;";
    fin = "acc";
    break;
  case OP_MEAN:
    init = "0";
    step = "acc += v;";
    fin = arena_printf(e->A, "acc / (double)(%s)", dimc(e, count));
    break;
  case OP_PROD: /* integers wrap around, as in PyTorch */
    init = "1";
    step = fl ? "acc *= v;" : "acc = (int64_t)((uint64_t)acc * (uint64_t)v);";
    fin = "acc";
    break;
  default:
    if (fl) {
      init = n->op == OP_MAX || n->op == OP_ARGMAX ? "-INFINITY" : "INFINITY";
      /* NaN wins, as in PyTorch; ties keep the first index */
      step =
          arg ? arena_printf(
                    e->A,
                    "if (k == 0 || v %s acc || (v != v && acc == acc)) { acc = v; best = k; } k++;",
                    cmp)
              : arena_printf(e->A, "if (v %s acc || v != v) acc = v;", cmp);
    } else {
      init = n->op == OP_MAX || n->op == OP_ARGMAX ? "INT64_MIN" : "INT64_MAX";
      step = arg ? arena_printf(e->A, "if (k == 0 || v %s acc) { acc = v; best = k; } k++;", cmp)
                 : arena_printf(e->A, "if (v %s acc) acc = v;", cmp);
    }
    fin = arg ? "best" : "acc";
  }
  /* { o = 0; for kept dims { acc = init; for reduced dims { v = x[..]; step } y[o++] = fin; } } */
  /* A float32 sum whose innermost reduced dim is x's last (contiguous) one
   * adds each row with mlcrt_sum_f32 (four double lanes, so no chain of
   * dependent adds); other reductions read element by element. */
  const int last = no ? order[no - 1] : -1;
  const bool rows =
      (n->op == OP_SUM || n->op == OP_MEAN) && x->dt == DT_F32 && no > nkept && last == x->rank - 1;
  out(b, "  {\n    int64_t o = 0;\n");
  int depth = 2;
  for (int q = 0; q < nkept; q++, depth++) {
    int k = order[q];
    indent(b, depth);
    out(b, "for (int64_t i%d = 0; i%d < %s; i%d++)\n", k, k, dimc(e, x->dim[k]), k);
  }
  indent(b, depth++);
  out(b, "{\n");
  indent(b, depth);
  out(b, "%s acc = %s;%s\n", acc_t, init, arg ? " int64_t best = 0, k = 0;" : "");
  int inner = depth;
  for (int q = nkept; q < no - rows; q++, depth++) {
    int k = order[q];
    indent(b, depth);
    out(b, "for (int64_t i%d = 0; i%d < %s; i%d++)\n", k, k, dimc(e, x->dim[k]), k);
  }
  if (rows) {
    char ridx[1024] = "";
    size_t rl = 0;
    for (int k = 0; k < x->rank - 1 && rl < sizeof ridx - 64; k++)
      rl += (size_t)snprintf(ridx + rl, sizeof ridx - rl, "%si%d*%s", rl ? " + " : "", k,
                             dimc(e, xs[k]));
    indent(b, depth);
    out(b, "acc += mlcrt_sum_f32(%s + %s, %s);\n", e->var[n->in[0]], rl ? ridx : "0",
        dimc(e, x->dim[last]));
  } else {
    indent(b, depth);
    out(b, "{\n");
    indent(b, depth + 1);
    out(b, "%s v = %s;\n", fl ? "float" : "int64_t", v);
    indent(b, depth + 1);
    out(b, "%s\n", step);
    indent(b, depth);
    out(b, "}\n");
  }
  const char *finv = arg ? fin
                         : store(e, arena_printf(e->A, "(%s)(%s)", fl ? "float" : "int64_t", fin),
                                 fl ? DT_F32 : DT_I64, n->ty.dt);
  indent(b, inner);
  out(b, "%s[o++] = %s;\n", e->var[id], finv);
  indent(b, inner - 1);
  out(b, "}\n  }\n");
  (void)ct;
}

static void emit_shape_array(E *e, Buf *b, const char *name, const Type *t) {
  out(b, "    const int64_t %s[] = {", name);
  for (int i = 0; i < t->rank; i++) out(b, "%s%s", i ? ", " : "", dimc(e, t->dim[i]));
  if (t->rank == 0) out(b, "1");
  out(b, "};\n");
}

static void conv_params_n(E *e, Buf *b, const Node *n, const char *pre, const char *N) {
  const Type *x, *w, *y;
  int h; /* conv1d [N, C, L] runs as conv2d with H = KH = OH = 1 */
  conv_types(e->g, n, &x, &w, &y, &h);
  out(b,
      "%s{.N = %s, .C = %s, .H = %s, .W = %s, .OC = %s, .KH = %s, .KW = %s, .OH = %s, .OW = "
      "%s,\n%s .sh = %lld, .sw = %lld, .ph = %lld, .pw = %lld, .dh = %lld, .dw = %lld, .groups = "
      "%lld}",
      "", N ? N : dimc(e, x->dim[0]), dimc(e, x->dim[1]), h < 2 ? "1" : dimc(e, x->dim[2]),
      dimc(e, x->dim[h + 1]), dimc(e, w->dim[0]), h < 2 ? "1" : dimc(e, w->dim[2]),
      dimc(e, w->dim[h + 1]), h < 2 ? "1" : dimc(e, y->dim[2]), dimc(e, y->dim[h + 1]), pre,
      (long long)n->ia[0], (long long)n->ia[1], (long long)n->ia[2], (long long)n->ia[3],
      (long long)n->ia[4], (long long)n->ia[5], (long long)n->ia[6]);
}

/* The params of convolution n (conv1d as conv2d) as a C initializer; with
 * N given, for a batch of N (the weights' packing: any batch). */
static void conv_params(E *e, Buf *b, const Node *n, const char *pre) {
  conv_params_n(e, b, n, pre, NULL);
}

/* The images a GK_POOLED chunk buffer holds for the batch (dim 0 of node
 * id) and _create's nthreads, in C. */
static const char *chunk_n(E *e, int id, int chunk) {
  return arena_printf(e->A, "(size_t)mlcrt_conv2d_pool_images(%s, %d, nthreads)",
                      dimc(e, e->g->nodes[id].ty.dim[0]), chunk);
}

/* batch_norm, layer_norm, group_norm, rms_norm (runtime/norm.c). */
static void emit_norm(E *e, Buf *b, int id) {
  Node *n = &e->g->nodes[id];
  const Type *xt = &e->g->nodes[n->in[0]].ty;
  int k = n->op == OP_BATCH_NORM ? 3 : n->op == OP_GROUP_NORM ? 1 : 2; /* first optional input */
  const char *w = "NULL", *bias = "NULL";
  if (n->op == OP_LAYER_NORM || n->op == OP_RMS_NORM)
    w = e->var[n->in[1]];
  else if (n->ia[0])
    w = e->var[n->in[k++]];
  if (n->ia[1]) bias = e->var[n->in[k]];
  const char *eps = literal(e, n->fa[0], DT_F32), *x = e->var[n->in[0]], *y = e->var[id];
  if (n->op == OP_LAYER_NORM || n->op == OP_RMS_NORM) {
    int wr = e->g->nodes[n->in[1]].ty.rank;
    Dim rows = dim_const(1), M = dim_const(1);
    for (int i = 0; i < xt->rank; i++) {
      if (i < xt->rank - wr)
        rows = dim_mul(rows, xt->dim[i]);
      else
        M = dim_mul(M, xt->dim[i]);
    }
    out(b, "  mlcrt_layer_norm_f32(m->team, %s, %s, %s, %s, %s, %s, %d, %s);\n", x, dimc(e, rows),
        dimc(e, M), w, bias, eps, n->op == OP_RMS_NORM, y);
    return;
  }
  Dim inner = dim_const(1);
  for (int i = 2; i < xt->rank; i++) inner = dim_mul(inner, xt->dim[i]);
  if (n->op == OP_BATCH_NORM)
    out(b, "  mlcrt_batch_norm_f32(m->team, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s);\n", x,
        dimc(e, xt->dim[0]), dimc(e, xt->dim[1]), dimc(e, inner), e->var[n->in[1]],
        e->var[n->in[2]], w, bias, eps, y);
  else
    out(b, "  mlcrt_group_norm_f32(%s, %s, %s, %s, %lld, %s, %s, %s, %s);\n", x,
        dimc(e, xt->dim[0]), dimc(e, xt->dim[1]), dimc(e, inner), (long long)n->ia[2], w, bias, eps,
        y);
}

/* scaled_dot_product_attention and its backward (runtime/attention.c); the
 * backward's inputs are q, k, v, dy, y[, attn_mask] and its result is the flat
 * dq | dk | dv. */
static void emit_sdpa(E *e, Buf *b, int id) {
  Node *n = &e->g->nodes[id];
  bool bwd = n->op == OP_SDPA_BWD;
  int mask_in = bwd ? 5 : 3;
  const Type qt = sdpa_operand_type(e->g, id, 0), kt = sdpa_operand_type(e->g, id, 1),
             vt = sdpa_operand_type(e->g, id, 2);
  const Type *q = &qt, *k = &kt, *v = &vt;
  int r = q->rank;
  out(b, "  {\n    const mlcrt_sdpa_params sp = {.nbatch = %d, .batch = {", r - 2);
  for (int i = 0; i < r - 2; i++) out(b, "%s%s", i ? ", " : "", dimc(e, q->dim[i]));
  out(b, "%s},\n        .Tq = %s, .Tk = %s, .D = %s, .Dv = %s,\n", r == 2 ? "0" : "",
      dimc(e, q->dim[r - 2]), dimc(e, k->dim[r - 2]), dimc(e, q->dim[r - 1]),
      dimc(e, v->dim[r - 1]));
  if (n->ia[2])
    out(b, "        .scale = %s,", literal(e, n->fa[0], DT_F32));
  else
    out(b, "        .scale = (float)(1.0 / sqrt((double)(%s))),", dimc(e, q->dim[r - 1]));
  out(b, " .causal = %d", (int)n->ia[1]);
  const char *mask = "NULL";
  if (n->ia[0]) {
    const Node *mn = &e->g->nodes[n->in[mask_in]];
    Type s = *q; /* the scores [..., Tq, Tk] */
    s.dim[r - 1] = k->dim[r - 2];
    Dim st[MAX_RANK];
    bcast_strides(&mn->ty, &s, st);
    out(b, ", .mask = %d,\n        .mask_stride = {", mn->ty.dt == DT_BOOL ? 1 : 2);
    for (int i = 0; i < r; i++) out(b, "%s%s", i ? ", " : "", dimc(e, st[i]));
    out(b, "}");
    mask = e->var[n->in[mask_in]];
  }
  if (bwd) {
    const char *nq = dimc(e, type_numel(q)), *nk = dimc(e, type_numel(k));
    out(b,
        "};\n    mlcrt_sdpa_bwd_f32(m->team, &sp, %s, %s, %s, %s, %s, %s, %s, %s + %s, %s + %s + "
        "%s);\n  }\n",
        e->var[n->in[0]], e->var[n->in[1]], e->var[n->in[2]], mask, e->var[n->in[4]],
        e->var[n->in[3]], e->var[id], e->var[id], nq, e->var[id], nq, nk);
    return;
  }
  const char *ptr[4] = {e->var[n->in[0]], e->var[n->in[1]], e->var[n->in[2]], e->var[id]};
  if (n->ia[3]) { /* operands read (and the result written) in place, at strides (views.c) */
    static const char *const name[4] = {"q", "k", "v", "y"};
    out(b, ",\n        .strided = 1");
    for (int j = 0; j < 4; j++) {
      Dim off;
      const Dim *st = sdpa_operand_view(e->g, id, j, &off);
      out(b, ", .%s_stride = {", name[j]);
      for (int i = 0; i < r - 1; i++) out(b, "%s%s", i ? ", " : "", dimc(e, st[i]));
      out(b, "}");
      int64_t c;
      if (!dim_is_const(off, &c) || c) ptr[j] = arena_printf(e->A, "%s + %s", ptr[j], dimc(e, off));
    }
  }
  out(b, "};\n    mlcrt_sdpa_f32(m->team, &sp, %s, %s, %s, %s, %s);\n  }\n", ptr[0], ptr[1], ptr[2],
      mask, ptr[3]);
}

/* conv_transpose2d and its input / weight gradients (runtime/conv_transpose.c);
 * the backward nodes take (dy, w) and (dy, x). */
static void emit_conv_transpose2d(E *e, Buf *b, int id) {
  Node *n = &e->g->nodes[id];
  const Type *x = &e->g->nodes[n->in[0]].ty, *w = &e->g->nodes[n->in[1]].ty, *y = &n->ty;
  const int64_t *a = n->ia;
  const char *call;
  if (n->op == OP_CONV_TRANSPOSE2D) {
    call = arena_printf(e->A, "mlcrt_conv_transpose2d_f32(&tp, %s, %s, %s, %s)", e->var[n->in[0]],
                        e->var[n->in[1]], n->nin == 3 ? e->var[n->in[2]] : "NULL", e->var[id]);
  } else {
    bool dx = n->op == OP_CONV_TRANSPOSE2D_DX;
    y = x;
    x = dx ? &n->ty : w;
    w = dx ? w : &n->ty;
    call = arena_printf(e->A, "mlcrt_conv_transpose2d_%s_f32(&tp, %s, %s, %s)", dx ? "dx" : "dw",
                        e->var[n->in[0]], e->var[n->in[1]], e->var[id]);
  }
  out(b,
      "  {\n    const mlcrt_conv_transpose2d_params tp = {.N = %s, .C = %s, .H = %s, .W = %s, .OC "
      "= %s, .KH = %s, .KW = %s,\n"
      "        .OH = %s, .OW = %s, .sh = %lld, .sw = %lld, .ph = %lld, .pw = %lld, .dh = %lld, .dw "
      "= %lld, .groups = %lld};\n"
      "    %s;\n  }\n",
      dimc(e, x->dim[0]), dimc(e, x->dim[1]), dimc(e, x->dim[2]), dimc(e, x->dim[3]),
      dimc(e, y->dim[1]), dimc(e, w->dim[2]), dimc(e, w->dim[3]), dimc(e, y->dim[2]),
      dimc(e, y->dim[3]), (long long)a[0], (long long)a[1], (long long)a[2], (long long)a[3],
      (long long)a[7], (long long)a[8], (long long)a[6], call);
}

/* ---- shape and indexing ops: loops in the generated code -------------------- */
Dim dims_prod(const Type *t, int from, int to) {
  Dim p = dim_const(1);
  for (int k = from; k < to; k++) p = dim_mul(p, t->dim[k]);
  return p;
}

void dense_strides(const Type *t, Dim *st) {
  Dim s = dim_const(1);
  for (int k = t->rank - 1; k >= 0; k--) st[k] = s, s = dim_mul(s, t->dim[k]);
}

/* for (i0 ...) for (i1 ...) ... over t's dims, from indentation depth `at`. */
static void emit_loops(E *e, Buf *b, const Type *t, int at) {
  for (int k = 0; k < t->rank; k++) {
    indent(b, at + k);
    out(b, "for (int64_t i%d = 0; i%d < %s; i%d++)\n", k, k, dimc(e, t->dim[k]), k);
  }
}

/* "FILE:LINE:COL" of a node, for run-time error messages. */
const char *node_where(E *e, const Node *n) {
  return arena_printf(e->A, "%s:%d:%d", n->loc.src ? n->loc.src->path : e->g->source_path,
                      n->loc.line, n->loc.col);
}

/* concat / stack: each outer block of y is the inputs' blocks one after another. */
static void emit_concat(E *e, Buf *b, int id) {
  Node *n = &e->g->nodes[id];
  const Type *o = &n->ty;
  int k = (int)n->ia[1];
  DType ct = compute_dt(o->dt);
  Dim row = dims_prod(o, k, o->rank), off = dim_const(0);
  out(b, "  for (int64_t i0 = 0; i0 < %s; i0++) {\n", dimc(e, dims_prod(o, 0, k)));
  for (int j = 0; j < n->nin; j++) {
    const Node *x = &e->g->nodes[n->in[j]];
    Dim xrow = dims_prod(&x->ty, k, x->ty.rank);
    const char *src = convert(
        e, arena_printf(e->A, "%s[i0*%s + i1]", e->var[n->in[j]], dimc(e, xrow)), x->ty.dt, ct);
    out(b, "    for (int64_t i1 = 0; i1 < %s; i1++)\n      %s[i0*%s + %s + i1] = %s;\n",
        dimc(e, xrow), e->var[id], dimc(e, row), dimc(e, off), store(e, src, ct, o->dt));
    off = dim_add(off, xrow);
  }
  out(b, "  }\n");
}

/* slice: a contiguous run of each outer block; symbolic bounds checked first. */
static void emit_slice(E *e, Buf *b, int id) {
  Node *n = &e->g->nodes[id];
  const Type *x = &e->g->nodes[n->in[0]].ty;
  int k = (int)n->ia[1];
  Dim inner = dims_prod(x, k + 1, x->rank);
  const char *s = dimc(e, n->da[2]), *en = dimc(e, n->da[3]), *size = dimc(e, x->dim[k]);
  /* 0 <= start <= end <= size, leaving out what holds for all dims >= 0 */
  Dim lo[3] = {dim_const(0), n->da[2], n->da[3]}, hi[3] = {n->da[2], n->da[3], x->dim[k]};
  Buf cond = {.A = e->A};
  for (int c = 0; c < 3 && n->ia[2]; c++) {
    Dim diff = dim_sub(hi[c], lo[c]);
    bool proven = true;
    for (int t = 0; t < diff.n; t++) proven &= diff.t[t].c >= 0;
    if (!proven) out(&cond, "%s%s <= %s", cond.len ? " && " : "", dimc(e, lo[c]), dimc(e, hi[c]));
  }
  if (cond.len)
    out(b,
        "  if (!(%s))\n    return mlcrt_seterr(m->err, MLCRT_ESHAPE, \"%s: slice: "
        "start %%lld and end %%lld must satisfy 0 <= start <= end <= %%lld (the size of dim %d of "
        "%s)\", (long long)(%s), "
        "(long long)(%s), (long long)(%s));\n",
        cond.s, node_where(e, n), k, type_str(e->A, e->g, x), s, en, size);
  const char *run = dimc(e, dim_mul(n->ty.dim[k], inner));
  out(b,
      "  for (int64_t i0 = 0; i0 < %s; i0++)\n    memcpy(%s + i0*%s, %s + (i0*%s + %s)*%s, "
      "(size_t)(%s) * sizeof(%s));\n",
      dimc(e, dims_prod(x, 0, k)), e->var[id], run, e->var[n->in[0]], size, s, dimc(e, inner), run,
      ctype(x->dt));
}

/* expand: a broadcasting copy (size-1 dims read with stride 0). */
static void emit_expand(E *e, Buf *b, int id) {
  Node *n = &e->g->nodes[id];
  Dim st[MAX_RANK];
  bcast_strides(&e->g->nodes[n->in[0]].ty, &n->ty, st);
  out(b, "  {\n    int64_t o = 0;\n");
  emit_loops(e, b, &n->ty, 2);
  indent(b, 2 + n->ty.rank);
  out(b, "%s[o++] = %s[%s];\n  }\n", e->var[id], e->var[n->in[0]], index_expr(e, st, n->ty.rank));
}

/* gather: y[i] = x[i with dim k replaced by index[i]], each index checked. */
static void emit_gather(E *e, Buf *b, int id) {
  Node *n = &e->g->nodes[id];
  const Type *x = &e->g->nodes[n->in[0]].ty, *o = &n->ty;
  int k = (int)n->ia[1], r = o->rank;
  Dim xs[MAX_RANK];
  dense_strides(x, xs);
  Buf idx = {.A = e->A};
  for (int d = 0; d < r; d++) {
    int64_t c;
    const char *v = d == k ? "v" : arena_printf(e->A, "i%d", d);
    if (dim_is_const(xs[d], &c) && c == 1)
      out(&idx, "%s%s", d ? " + " : "", v);
    else
      out(&idx, "%s%s*%s", d ? " + " : "", v, dimc(e, xs[d]));
  }
  const char *size = dimc(e, x->dim[k]);
  out(b, "  {\n    int64_t o = 0;\n");
  emit_loops(e, b, o, 2);
  indent(b, 2 + r);
  out(b, "{\n");
  indent(b, 3 + r);
  out(b, "int64_t v = %s[o];\n", e->var[n->in[1]]);
  indent(b, 3 + r);
  out(b, "if (v < 0 || v >= %s)\n", size);
  indent(b, 4 + r);
  out(b,
      "return mlcrt_seterr(m->err, MLCRT_EINVAL, \"%s: gather: index %%lld is out of range for dim "
      "%d of %s (valid 0..%%lld)\", (long long)v, (long long)(%s) - 1);\n",
      node_where(e, n), k, type_str(e->A, e->g, x), size);
  indent(b, 3 + r);
  out(b, "%s[o++] = %s[%s];\n", e->var[id], e->var[n->in[0]], idx.len ? idx.s : "0");
  indent(b, 2 + r);
  out(b, "}\n  }\n");
}

/* index_select and embedding (index_select of the table's rows) in libmlcrt. */
static void emit_index_select(E *e, Buf *b, int id) {
  Node *n = &e->g->nodes[id];
  bool emb = n->op == OP_EMBEDDING;
  const Node *x = &e->g->nodes[n->in[emb ? 1 : 0]], *ix = &e->g->nodes[n->in[emb ? 0 : 1]];
  int k = emb ? 0 : (int)n->ia[1];
  const char *size = dimc(e, x->ty.dim[k]), *xts = type_str(e->A, e->g, &x->ty);
  const char *what =
      emb ? arena_printf(
                e->A, "embedding: id %%lld is out of range for the table %s (valid 0..%%lld)", xts)
          : arena_printf(
                e->A, "index_select: index %%lld is out of range for dim %d of %s (valid 0..%%lld)",
                k, xts);
  out(b,
      "  {\n    int64_t v;\n    if (mlcrt_index_select(%s, sizeof(%s), %s, %s, %s, %s, %d, %s, %s, "
      "&v))\n"
      "      return mlcrt_seterr(m->err, MLCRT_EINVAL, \"%s: %s\", (long long)v, (long long)(%s) - "
      "1);\n  }\n",
      e->var[n->in[emb ? 1 : 0]], ctype(x->ty.dt), dimc(e, dims_prod(&x->ty, 0, k)), size,
      dimc(e, dims_prod(&x->ty, k + 1, x->ty.rank)), e->var[n->in[emb ? 0 : 1]],
      ix->ty.dt == DT_I64, dimc(e, type_numel(&ix->ty)), e->var[id], node_where(e, n), what, size);
}

/* pad (constant mode): each output element reads x where it lies inside. */
static void emit_pad(E *e, Buf *b, int id) {
  Node *n = &e->g->nodes[id];
  const Type *x = &e->g->nodes[n->in[0]].ty, *o = &n->ty;
  int r = o->rank, np = n->nda / 2;
  Dim xs[MAX_RANK];
  dense_strides(x, xs);
  Buf idx = {.A = e->A}, cond = {.A = e->A};
  for (int d = 0; d < r; d++) {
    int64_t l = 0, rr = 0, c;
    if (d >= r - np) {
      dim_is_const(n->da[2 * (r - 1 - d)], &l);
      dim_is_const(n->da[2 * (r - 1 - d) + 1], &rr);
    }
    const char *src = l == 0 ? arena_printf(e->A, "i%d", d)
                             : arena_printf(e->A, "(i%d %c %lld)", d, l > 0 ? '-' : '+',
                                            (long long)(l > 0 ? l : -l));
    if (dim_is_const(xs[d], &c) && c == 1)
      out(&idx, "%s%s", idx.len ? " + " : "", src);
    else
      out(&idx, "%s%s*%s", idx.len ? " + " : "", src, dimc(e, xs[d]));
    if (l > 0) out(&cond, "%si%d >= %lld", cond.len ? " && " : "", d, (long long)l);
    if (rr > 0)
      out(&cond, "%si%d < %s", cond.len ? " && " : "", d,
          dimc(e, dim_add(x->dim[d], dim_const(l))));
  }
  DType ct = compute_dt(o->dt);
  const char *src = arena_printf(e->A, "%s[%s]", e->var[n->in[0]], idx.len ? idx.s : "0");
  out(b, "  {\n    int64_t o = 0;\n");
  emit_loops(e, b, o, 2);
  indent(b, 2 + r);
  if (cond.len)
    out(b, "%s[o++] = (%s) ? %s : %s;\n  }\n", e->var[id], cond.s, src,
        store(e, literal(e, n->fa[0], ct), ct, o->dt));
  else
    out(b, "%s[o++] = %s;\n  }\n", e->var[id], src);
}

/* interpolate(mode="nearest"), integer scale s: source index floor(i * (float)(1/s))
 * clamped, computed as PyTorch does (i / 2 when s = 2). */
static void emit_interpolate(E *e, Buf *b, int id) {
  Node *n = &e->g->nodes[id];
  const Type *x = &e->g->nodes[n->in[0]].ty, *o = &n->ty;
  bool bwd = n->op == OP_INTERPOLATE_DX; /* dx = 0, then dx[source of o] += dy[o] */
  if (bwd) {
    x = &n->ty, o = &e->g->nodes[n->in[0]].ty;
    out(b, "  memset(%s, 0, sizeof(float) * (size_t)(%s));\n", e->var[id], dimc(e, type_numel(x)));
  }
  int r = o->rank;
  int64_t s = n->ia[0];
  Dim xs[MAX_RANK];
  dense_strides(x, xs);
  Buf idx = {.A = e->A};
  for (int d = 0; d < r; d++)
    out(&idx, "%s%c%d*%s", d ? " + " : "", d < 2 || s == 1 ? 'i' : 'j', d, dimc(e, xs[d]));
  out(b, "  {\n    int64_t o = 0;\n");
  emit_loops(e, b, o, 2);
  indent(b, 2 + r);
  out(b, "{\n");
  for (int d = 2; d < r && s > 1; d++) {
    indent(b, 3 + r);
    if (s == 2) {
      out(b, "int64_t j%d = i%d / 2;\n", d, d);
      continue;
    }
    const char *size = dimc(e, x->dim[d]);
    out(b, "int64_t j%d = (int64_t)floorf((float)i%d * %s);\n", d, d,
        literal(e, (double)(float)(1.0 / (double)s), DT_F32));
    indent(b, 3 + r);
    out(b, "if (j%d > %s - 1) j%d = %s - 1;\n", d, size, d, size);
  }
  indent(b, 3 + r);
  if (bwd)
    out(b, "%s[%s] += %s[o++];\n", e->var[id], idx.s, e->var[n->in[0]]);
  else
    out(b, "%s[o++] = %s[%s];\n", e->var[id], e->var[n->in[0]], idx.s);
  indent(b, 2 + r);
  out(b, "}\n  }\n");
}

/* cumsum: running sums along dim k, in double (floats, as PyTorch's CPU
 * kernel) or int64. */
static void emit_cumsum(E *e, Buf *b, int id) {
  Node *n = &e->g->nodes[id];
  const Type *x = &e->g->nodes[n->in[0]].ty;
  int k = (int)n->ia[1];
  bool fl = dtype_is_float(x->dt);
  const char *len = x->rank ? dimc(e, x->dim[k]) : "1",
             *inner = dimc(e, dims_prod(x, k + 1, x->rank));
  const char *at = arena_printf(e->A, "(i0*%s + i1)*%s + i2", len, inner);
  const char *v =
      convert(e, arena_printf(e->A, "%s[%s]", e->var[n->in[0]], at), x->dt, fl ? DT_F32 : DT_I64);
  out(b, "  for (int64_t i0 = 0; i0 < %s; i0++)\n    for (int64_t i2 = 0; i2 < %s; i2++) {\n",
      dimc(e, dims_prod(x, 0, x->rank ? k : 0)), inner);
  out(b,
      "      %s acc = 0;\n      for (int64_t i1 = 0; i1 < %s; i1++) {\n        acc += %s;\n        "
      "%s[%s] = %s;\n      }\n    }\n",
      fl ? "double" : "int64_t", len, v, e->var[id], at,
      fl ? store(e, "(float)acc", DT_F32, n->ty.dt) : "acc");
}

/* ---- gradients of indexing ops and of max / min / prod (f32) ---------------- */
/* gather: dx = 0, then dx[i with dim k replaced by index[i]] += dy[i]. */
static void emit_gather_dx(E *e, Buf *b, int id) {
  Node *n = &e->g->nodes[id];
  const Type *x = &n->ty, *o = &e->g->nodes[n->in[1]].ty;
  int k = (int)n->ia[1], r = o->rank;
  Dim xs[MAX_RANK];
  dense_strides(x, xs);
  Buf idx = {.A = e->A};
  for (int d = 0; d < r; d++)
    out(&idx, "%s%s*%s", d ? " + " : "", d == k ? "v" : arena_printf(e->A, "i%d", d),
        dimc(e, xs[d]));
  out(b, "  memset(%s, 0, sizeof(float) * (size_t)(%s));\n  {\n    int64_t o = 0;\n", e->var[id],
      dimc(e, type_numel(x)));
  emit_loops(e, b, o, 2);
  indent(b, 2 + r);
  out(b, "{\n");
  indent(b, 3 + r);
  out(b, "int64_t v = %s[o];\n", e->var[n->in[1]]);
  indent(b, 3 + r);
  out(b, "if (v >= 0 && v < %s) %s[%s] += %s[o];\n", r ? dimc(e, x->dim[k]) : "1", e->var[id],
      idx.len ? idx.s : "0", e->var[n->in[0]]);
  indent(b, 3 + r);
  out(b, "o++;\n");
  indent(b, 2 + r);
  out(b, "}\n  }\n");
}

static void emit_index_select_dx(E *e, Buf *b, int id) {
  Node *n = &e->g->nodes[id];
  const Type *x = &n->ty, *ix = &e->g->nodes[n->in[1]].ty;
  int k = (int)n->ia[1];
  out(b, "  mlcrt_index_select_dx_f32(%s, %s, %s, %s, %s, %d, %s, %s);\n", e->var[n->in[0]],
      dimc(e, dims_prod(x, 0, k)), dimc(e, x->dim[k]), dimc(e, dims_prod(x, k + 1, x->rank)),
      e->var[n->in[1]], ix->dt == DT_I64, dimc(e, type_numel(ix)), e->var[id]);
}

/* cumsum: dx = the reverse running sum of dy along dim k (in double). */
static void emit_cumsum_dx(E *e, Buf *b, int id) {
  Node *n = &e->g->nodes[id];
  const Type *x = &n->ty;
  int k = (int)n->ia[1];
  const char *len = x->rank ? dimc(e, x->dim[k]) : "1",
             *inner = dimc(e, dims_prod(x, k + 1, x->rank));
  const char *at = arena_printf(e->A, "(i0*%s + i1)*%s + i2", len, inner);
  out(b, "  for (int64_t i0 = 0; i0 < %s; i0++)\n    for (int64_t i2 = 0; i2 < %s; i2++) {\n",
      dimc(e, dims_prod(x, 0, x->rank ? k : 0)), inner);
  out(b,
      "      double acc = 0;\n      for (int64_t i1 = %s - 1; i1 >= 0; i1--) {\n        acc += "
      "%s[%s];\n        %s[%s] = (float)acc;\n      }\n    }\n",
      len, e->var[n->in[0]], at, e->var[id], at);
}

/* max / min (ia[15] 0: dy to the first extremum, as torch.max(x, dim); 1:
 * split evenly among the ties, as torch.max(x) / torch.amax) and prod (the
 * product of the others: dy * p / x without zeros, else only at a single zero). */
static void emit_reduce_dx(E *e, Buf *b, int id) {
  Node *n = &e->g->nodes[id];
  const Type *x = &n->ty;
  int64_t mask = n->ia[14];
  Dim xs[MAX_RANK];
  dense_strides(x, xs);
  int order[MAX_RANK], no = 0, nkept = 0;
  for (int k = 0; k < x->rank; k++)
    if (!(mask & (1 << k))) order[no++] = k, nkept++;
  for (int k = 0; k < x->rank; k++)
    if (mask & (1 << k)) order[no++] = k;
  Buf idx = {.A = e->A};
  for (int k = 0; k < x->rank; k++) out(&idx, "%si%d*%s", k ? " + " : "", k, dimc(e, xs[k]));
  const char *X = e->var[n->in[1]], *dX = e->var[id], *dY = e->var[n->in[0]],
             *at = idx.len ? idx.s : "0";
  const char *cmp = n->op == OP_MAX_DX ? ">" : "<";
  out(b, "  memset(%s, 0, sizeof(float) * (size_t)(%s));\n  {\n    int64_t o = 0;\n", dX,
      dimc(e, type_numel(x)));
  int depth = 2;
  for (int q = 0; q < nkept; q++, depth++) {
    indent(b, depth);
    out(b, "for (int64_t i%d = 0; i%d < %s; i%d++)\n", order[q], order[q],
        dimc(e, x->dim[order[q]]), order[q]);
  }
  indent(b, depth);
  out(b, "{\n");
  /* one pass over the reduced dims per body */
  const char *pass[3] = {0};
  if (n->op == OP_PROD_DX) {
    indent(b, depth + 1);
    out(b, "double p = 1; int64_t zeros = 0; const float g = %s[o++];\n", dY);
    pass[0] = arena_printf(e->A, "float v = %s[%s]; if (v == 0.0f) zeros++; else p *= v;", X, at);
    pass[1] = arena_printf(e->A,
                           "float v = %s[%s]; %s[%s] = zeros == 0 ? (float)(g * p / v) : zeros == "
                           "1 && v == 0.0f ? (float)(g * p) : 0.0f;",
                           X, at, dX, at);
  } else if (!n->ia[15]) {
    indent(b, depth + 1);
    out(b, "float acc = 0; int64_t best = -1;\n");
    pass[0] = arena_printf(e->A,
                           "float v = %s[%s]; if (best < 0 || v %s acc || (v != v && acc == acc)) "
                           "{ acc = v; best = %s; }",
                           X, at, cmp, at);
  } else {
    indent(b, depth + 1);
    out(b, "float acc = 0; int64_t best = -1, cnt = 0; float g;\n");
    pass[0] = arena_printf(e->A,
                           "float v = %s[%s]; if (best < 0 || v %s acc || (v != v && acc == acc)) "
                           "{ acc = v; best = %s; }",
                           X, at, cmp, at);
    pass[1] = arena_printf(e->A, "float v = %s[%s]; if (v == acc || (v != v && acc != acc)) cnt++;",
                           X, at);
    pass[2] =
        arena_printf(e->A, "float v = %s[%s]; if (v == acc || (v != v && acc != acc)) %s[%s] = g;",
                     X, at, dX, at);
  }
  for (int p = 0; p < 3 && pass[p]; p++) {
    if (p == 2) {
      indent(b, depth + 1);
      out(b, "g = %s[o++] / (float)cnt;\n", dY);
    }
    int d = depth + 1;
    for (int q = nkept; q < no; q++, d++) {
      indent(b, d);
      out(b, "for (int64_t i%d = 0; i%d < %s; i%d++)\n", order[q], order[q],
          dimc(e, x->dim[order[q]]), order[q]);
    }
    indent(b, d);
    out(b, "{ %s }\n", pass[p]);
  }
  if (n->op != OP_PROD_DX && !n->ia[15]) {
    indent(b, depth + 1);
    out(b, "if (best >= 0) %s[best] = %s[o];\n", dX, dY);
    indent(b, depth + 1);
    out(b, "o++;\n");
  }
  indent(b, depth);
  out(b, "}\n  }\n");
}

/* slice with symbolic bounds: dx = 0 with dy copied into [start, end) of dim k
 * (the bounds were checked by the forward slice). */
static void emit_slice_dx(E *e, Buf *b, int id) {
  Node *n = &e->g->nodes[id];
  const Type *x = &n->ty, *dy = &e->g->nodes[n->in[0]].ty;
  int k = (int)n->ia[1];
  Dim inner = dims_prod(x, k + 1, x->rank);
  const char *run = dimc(e, dim_mul(dy->dim[k], inner));
  out(b, "  memset(%s, 0, sizeof(%s) * (size_t)(%s));\n", e->var[id], ctype(x->dt),
      dimc(e, type_numel(x)));
  out(b,
      "  for (int64_t i0 = 0; i0 < %s; i0++)\n    memcpy(%s + (i0*%s + %s)*%s, %s + i0*%s, "
      "(size_t)(%s) * sizeof(%s));\n",
      dimc(e, dims_prod(x, 0, k)), e->var[id], dimc(e, x->dim[k]), dimc(e, n->da[2]),
      dimc(e, inner), e->var[n->in[0]], run, run, ctype(x->dt));
}

/* The shape and indexing ops above; false for other ops. */
static bool emit_index_op(E *e, Buf *b, int id) {
  switch (e->g->nodes[id].op) {
  case OP_CONCAT:
  case OP_STACK:
    emit_concat(e, b, id);
    return true;
  case OP_SLICE:
    emit_slice(e, b, id);
    return true;
  case OP_EXPAND:
    emit_expand(e, b, id);
    return true;
  case OP_GATHER:
    emit_gather(e, b, id);
    return true;
  case OP_INDEX_SELECT:
  case OP_EMBEDDING:
    emit_index_select(e, b, id);
    return true;
  case OP_PAD:
    emit_pad(e, b, id);
    return true;
  case OP_INTERPOLATE:
    emit_interpolate(e, b, id);
    return true;
  case OP_CUMSUM:
    emit_cumsum(e, b, id);
    return true;
  case OP_INTERPOLATE_DX:
    emit_interpolate(e, b, id);
    return true;
  case OP_GATHER_DX:
    emit_gather_dx(e, b, id);
    return true;
  case OP_INDEX_SELECT_DX:
    emit_index_select_dx(e, b, id);
    return true;
  case OP_CUMSUM_DX:
    emit_cumsum_dx(e, b, id);
    return true;
  case OP_MAX_DX:
  case OP_MIN_DX:
  case OP_PROD_DX:
    emit_reduce_dx(e, b, id);
    return true;
  case OP_SLICE_DX:
    emit_slice_dx(e, b, id);
    return true;
  default:
    return false;
  }
}

/* Train mode (compiler/trainmode.c) and the norms' gradients (runtime/normgrad.c);
 * false for other ops. */
static bool emit_train_op(E *e, Buf *b, int id) {
  Node *n = &e->g->nodes[id];
  const char *y = e->var[id], *eps = literal(e, n->fa[0], DT_F32);
  bool fwd =
      n->op == OP_BATCH_NORM_STATS || n->op == OP_BATCH_NORM_TRAIN || n->op == OP_DROPOUT_TRAIN;
  if (n->op != OP_BATCH_NORM_STATS && n->op != OP_BATCH_NORM_TRAIN && n->op != OP_DROPOUT_TRAIN &&
      n->op != OP_BATCH_NORM_DX && n->op != OP_BATCH_NORM_DW && n->op != OP_LAYER_NORM_DX &&
      n->op != OP_LAYER_NORM_DW && n->op != OP_GROUP_NORM_DX && n->op != OP_GROUP_NORM_DW)
    return false;
  int xi = n->in[fwd ? 0 : 1];
  const Type *xt = &e->g->nodes[xi].ty;
  const char *x = e->var[xi], *dy = e->var[n->in[0]];
  if (n->op == OP_DROPOUT_TRAIN) { /* keyed by (seed, steps taken, the dropout's node id, index) */
    out(b,
        "  mlcrt_dropout_f32(%s, %s, %.17g, m->seed, (uint64_t)*(const int64_t *)(m->weights + "
        "%zu), %lld, %s);\n",
        x, dimc(e, type_numel(xt)), n->fa[0], e->step_off, (long long)n->ia[0], y);
    return true;
  }
  if (n->op == OP_LAYER_NORM_DX || n->op == OP_LAYER_NORM_DW) {
    const char *rows = dimc(e, dims_prod(xt, 0, xt->rank - (int)n->ia[4])),
               *M = dimc(e, dims_prod(xt, xt->rank - (int)n->ia[4], xt->rank));
    if (n->op == OP_LAYER_NORM_DX)
      out(b, "  mlcrt_layer_norm_dx_f32(%s, %s, %s, %s, %s, %s, %d, %s);\n", dy, x, rows, M,
          n->ia[0] ? e->var[n->in[2]] : "NULL", eps, (int)n->ia[3], y);
    else
      out(b, "  mlcrt_layer_norm_dw_f32(%s, %s, %s, %s, %s, %d, %s);\n", dy, x, rows, M, eps,
          (int)n->ia[3], y);
    return true;
  }
  const char *N = dimc(e, xt->dim[0]), *C = dimc(e, xt->dim[1]),
             *inner = dimc(e, dims_prod(xt, 2, xt->rank));
  switch (n->op) {
  case OP_BATCH_NORM_STATS: {
    int64_t c;
    Dim cnt = dim_mul(xt->dim[0], dims_prod(xt, 2, xt->rank));
    if (!dim_is_const(cnt, &c) ||
        c < 2) /* PyTorch: "Expected more than 1 value per channel when training" */
      out(b,
          "  if ((int64_t)(%s) < 2)\n    return mlcrt_seterr(m->err, MLCRT_EINVAL, \"%s: "
          "batch_norm in a train step needs more than 1 value per channel, got input %s\");\n",
          dimc(e, cnt), node_where(e, n), type_str(e->A, e->g, xt));
    out(b, "  mlcrt_batch_norm_stats_f32(%s, %s, %s, %s, %s);\n", x, N, C, inner, y);
    return true;
  }
  case OP_BATCH_NORM_TRAIN: {
    const char *w = n->ia[0] ? e->var[n->in[2]] : "NULL",
               *bias = n->ia[1] ? e->var[n->in[2 + (n->ia[0] != 0)]] : "NULL";
    out(b,
        "  mlcrt_batch_norm_f32(m->team, %s, %s, %s, %s, %s, %s + (%s), %s, %s, %s, %s); /* the "
        "batch statistics */\n",
        x, N, C, inner, e->var[n->in[1]], e->var[n->in[1]], C, w, bias, eps, y);
    return true;
  }
  case OP_BATCH_NORM_DX:
    out(b, "  mlcrt_batch_norm_dx_f32(%s, %s, %s, %s, %s, %s, %s, %s, %s);\n", dy, x, N, C, inner,
        e->var[n->in[2]], n->ia[0] ? e->var[n->in[3]] : "NULL", eps, y);
    return true;
  case OP_BATCH_NORM_DW:
    out(b, "  mlcrt_batch_norm_dw_f32(%s, %s, %s, %s, %s, %s, %s, %s);\n", dy, x, N, C, inner,
        e->var[n->in[2]], eps, y);
    return true;
  case OP_GROUP_NORM_DX:
    out(b, "  mlcrt_group_norm_dx_f32(%s, %s, %s, %s, %s, %lld, %s, %s, %s);\n", dy, x, N, C, inner,
        (long long)n->ia[2], n->ia[0] ? e->var[n->in[2]] : "NULL", eps, y);
    return true;
  default: /* OP_GROUP_NORM_DW */
    out(b, "  mlcrt_group_norm_dw_f32(%s, %s, %s, %s, %s, %lld, %s, %s);\n", dy, x, N, C, inner,
        (long long)n->ia[2], eps, y);
    return true;
  }
}

/* `const mlcrt_pool2d_params pp = ...;` of a pooling node (forward or
 * backward) whose window input is x and result y. */
static void pool_params(E *e, Buf *b, const Node *n, const Type *xt, const Type *yt) {
  out(b,
      "    const mlcrt_pool2d_params pp = {.N = %s, .C = %s, .H = %s, .W = %s, .OH = %s, "
      ".OW = %s,\n"
      "        .kh = %lld, .kw = %lld, .sh = %lld, .sw = %lld, .ph = %lld, .pw = %lld, "
      ".count_include_pad = %d};\n",
      dimc(e, xt->dim[0]), dimc(e, xt->dim[1]), dimc(e, xt->dim[2]), dimc(e, xt->dim[3]),
      dimc(e, yt->dim[2]), dimc(e, yt->dim[3]), (long long)n->ia[0], (long long)n->ia[1],
      (long long)n->ia[2], (long long)n->ia[3], (long long)n->ia[4], (long long)n->ia[5],
      (int)n->ia[9]);
}

/* A GK_POOLED group (fuse.c): the convolution and its tail into mlc_chunk,
 * a chunk of images at a time, each chunk pooled into the root's buffer. */
static void emit_pooled(E *e, Buf *b, const Group *gr) {
  Graph *g = e->g;
  const int conv = gr->nodes[0], tail = gr->nodes[gr->n - 2], pool = gr->root;
  const Node *cn = &g->nodes[conv], *pn = &g->nodes[pool];
  const char *own_c = e->var[conv], *own_t = e->var[tail];
  e->var[conv] = e->var[tail] = "mlc_chunk";
  out(b,
      "  {\n    float *mlc_chunk = (float *)(m->arena + m->%s[%d]); /* %d images a thread at a "
      "time */\n",
      e->off, e->p->scratch[pool], gr->chunk);
  const char *epi = "NULL";
  if (gr->n > 2) { /* the tail, on each block of the chunk's result */
    ElemKernel K = elem_kernel(e, gr->nodes, gr->n - 1, true, VIEW_CONV);
    out(b, "    struct %s a = %s;\n    const mlcrt_epilogue epi = {%s, &a};\n", K.name, K.init,
        K.name);
    epi = "&epi";
  }
  out(b, "    const mlcrt_conv2d_params cp = ");
  conv_params(e, b, cn, "       ");
  out(b, ";\n");
  pool_params(e, b, pn, &g->nodes[pn->in[0]].ty, &pn->ty);
  out(b,
      "    mlcrt_conv2d_pool_f32(m->team, &cp, %s, %s, %s, m->arena + m->%s[%d], %s, &pp, %d, %d, "
      "mlc_chunk,\n                          %s);\n  }\n",
      e->var[cn->in[0]], e->var[cn->in[1]], cn->nin == 3 ? e->var[cn->in[2]] : "NULL", e->off,
      e->p->scratch[conv], epi, pn->op == OP_AVG_POOL2D, gr->chunk, e->var[pool]);
  e->var[conv] = own_c, e->var[tail] = own_t;
}

/* The call of a convolution, with an epilogue (epi: a mlcrt_epilogue
 * expression) or without (NULL). */
static void emit_conv_call(E *e, Buf *b, int id, const char *epi) {
  const Node *n = &e->g->nodes[id];
  out(b, "  {\n    const mlcrt_conv2d_params cp = ");
  conv_params(e, b, n, "       ");
  const int wp = e->p == e->run && e->wpack ? e->wpack[id] : -1;
  if (wp >= 0) { /* the weights kept compacted and packed (when they last changed) */
    out(b,
        ";\n    mlcrt_conv2d_packed_epi_f32(m->team, &cp, %s, %s, m->wpack + m->wpoff[%d], %s, %s, "
        "m->arena + m->%s[%d], %s);\n  }\n",
        e->var[n->in[0]], e->var[n->in[1]], wp, n->nin == 3 ? e->var[n->in[2]] : "NULL", e->var[id],
        e->off, e->p->scratch[id], epi ? epi : "NULL");
    return;
  }
  out(b,
      ";\n    mlcrt_conv2d%s_f32(m->team, &cp, %s, %s, %s, %s, m->arena + m->%s[%d]%s%s);\n  }\n",
      epi ? "_epi" : "", e->var[n->in[0]], e->var[n->in[1]],
      n->nin == 3 ? e->var[n->in[2]] : "NULL", e->var[id], e->off, e->p->scratch[id],
      epi ? ", " : "", epi ? epi : "");
}

/* linear and matmul: one GEMM (or one per batch), with an epilogue kernel
 * (epi: a mlcrt_epilogue expression) or without (NULL). */
static void emit_gemm_call(E *e, Buf *b, int id, const char *epi) {
  Node *n = &e->g->nodes[id];
  const Type *xt = &e->g->nodes[n->in[0]].ty, *wt = &e->g->nodes[n->in[1]].ty;
  const char *x = e->var[n->in[0]], *y = e->var[id];
  if (n->op == OP_MATMUL) {
    out(b, "  {\n");
    emit_shape_array(e, b, "as", xt);
    emit_shape_array(e, b, "bs", wt);
    emit_shape_array(e, b, "ys", &n->ty);
    out(b, "    mlcrt_matmul%s_f32(m->team, %s, %d, as, %s, %d, bs, %s, %d, ys%s%s);\n  }\n",
        epi ? "_epi" : "", x, xt->rank, e->var[n->in[1]], wt->rank, y, n->ty.rank, epi ? ", " : "",
        epi ? epi : "");
    return;
  }
  Dim K = xt->dim[xt->rank - 1], M;
  if (!dim_div(type_numel(xt), K, &M)) { /* K symbolic in a compound shape */
    Type rows = *xt;
    rows.rank--;
    M = type_numel(&rows);
  }
  const int wp = e->p == e->run && e->wpack ? e->wpack[n->in[1]] : -1;
  if (wp >= 0) { /* the weights' panels packed already (when they last changed) */
    out(b,
        "  mlcrt_linear_packed_epi_f32(m->team, %s, %s, %s, %s, m->wpack + m->wpoff[%d], %s, %s, "
        "%s, %s);\n",
        x, dimc(e, M), dimc(e, K), e->var[n->in[1]], wp, dimc(e, wt->dim[0]),
        n->nin == 3 ? e->var[n->in[2]] : "NULL", y, epi ? epi : "NULL");
    return;
  }
  out(b, "  mlcrt_linear%s_f32(m->team, %s, %s, %s, %s, %s, %s, %s%s%s);\n", epi ? "_epi" : "", x,
      dimc(e, M), dimc(e, K), e->var[n->in[1]], dimc(e, wt->dim[0]),
      n->nin == 3 ? e->var[n->in[2]] : "NULL", y, epi ? ", " : "", epi ? epi : "");
}

/* The weights run packs once (-O2): params [N, K] (f32, constant shape)
 * that a linear of the run function multiplies by, and the weights of its
 * convolutions of constant geometry but the batch (outside GK_POOLED
 * groups, which run their own calls).  Their panels, laid out for the team's
 * GEMM kernels (a convolution's compacted to the taps that see the image
 * first), live beside the weights (m->wpack) and are packed again by the
 * first run after anything changed the weights (create, init, load,
 * load_checkpoint, a train step clear m->wpack_ok): packing W is a large
 * part of a linear at a small batch, and the same work every call. */
static bool conv_packable(E *e, const Node *n) {
  const Type *x, *w, *y;
  int h;
  conv_types(e->g, n, &x, &w, &y, &h);
  const Node *wn = &e->g->nodes[n->in[1]];
  if (wn->op != OP_PARAM || w->dt != DT_F32 || x->dt != DT_F32 || n->ty.dt != DT_F32) return false;
  for (int i = 1; i < x->rank; i++)
    if (!dim_is_const(x->dim[i], NULL)) return false;
  for (int i = 0; i < w->rank; i++)
    if (!dim_is_const(w->dim[i], NULL)) return false;
  for (int i = 2; i < y->rank; i++)
    if (!dim_is_const(y->dim[i], NULL)) return false;
  return true;
}

static void plan_wpacks(E *e, const Plan *p) {
  Graph *g = e->g;
  e->wpack = arena_alloc(e->A, sizeof(int) * (size_t)(g->n + 1));
  e->wpnode = arena_alloc(e->A, sizeof(int) * (size_t)(g->n + 1));
  e->nwpack = 0;
  for (int i = 0; i < g->n; i++) e->wpack[i] = -1;
  if (!p->pack) return; /* -O0, --no-pack-weights */
  bool *pooled = arena_alloc(e->A, sizeof(bool) * (size_t)(g->n + 1));
  memset(pooled, 0, sizeof(bool) * (size_t)(g->n + 1));
  for (int gi = 0; gi < p->ngroups; gi++)
    if (p->groups[gi].kind == GK_POOLED)
      for (int k = 0; k < p->groups[gi].n; k++) pooled[p->groups[gi].nodes[k]] = true;
  for (int i = 0; i < g->n; i++) {
    const Node *n = &g->nodes[i];
    if (n->nin < 2 || (p->storage[i] != ST_ARENA && p->storage[i] != ST_FUSED)) continue;
    if ((n->op == OP_CONV2D || n->op == OP_CONV1D) && !pooled[i] && conv_packable(e, n)) {
      e->wpnode[e->nwpack] = i;
      e->wpack[i] = e->nwpack++;
      continue;
    }
    if (n->op != OP_LINEAR) continue;
    const Node *w = &g->nodes[n->in[1]], *x = &g->nodes[n->in[0]];
    if (w->op != OP_PARAM || w->ty.dt != DT_F32 || x->ty.dt != DT_F32 || n->ty.dt != DT_F32 ||
        w->ty.rank != 2 || !dim_is_const(w->ty.dim[0], NULL) || !dim_is_const(w->ty.dim[1], NULL))
      continue;
    if (e->wpack[n->in[1]] < 0) {
      e->wpnode[e->nwpack] = n->in[1];
      e->wpack[n->in[1]] = e->nwpack++;
    }
  }
}

/* The call that packs entry k (pack) or gives its floats (!pack), as C. */
static const char *wpack_call(E *e, int k, bool pack) {
  const int id = e->wpnode[k];
  const Node *n = &e->g->nodes[id];
  if (n->op == OP_PARAM) { /* a linear's W [N, K] */
    const char *N = dimc(e, n->ty.dim[0]), *K = dimc(e, n->ty.dim[1]);
    return pack
               ? arena_printf(e->A,
                              "mlcrt_linear_pack_f32(m->team, %s, %s, %s, m->wpack + m->wpoff[%d])",
                              e->var[id], N, K, k)
               : arena_printf(e->A, "mlcrt_linear_pack_floats(m->team, %s, %s)", N, K);
  }
  Buf cp = {.A = e->A};
  out(&cp, "%s", "");
  conv_params_n(e, &cp, n, "        ", "1");
  return pack ? arena_printf(e->A,
                             "mlcrt_conv2d_pack_f32(m->team, &(const mlcrt_conv2d_params)%s, %s, "
                             "m->wpack + m->wpoff[%d])",
                             cp.s, e->var[n->in[1]], k)
              : arena_printf(e->A,
                             "mlcrt_conv2d_pack_floats(m->team, &(const mlcrt_conv2d_params)%s)",
                             cp.s);
}

/* max_pool2d's or avg_pool2d's backward: dy = in[0] (the forward output's
 * gradient), x = in[1] (max: the forward input), dx = the node (the forward
 * input's shape); epi (max only) runs on each plane of dx once final. */
static void emit_pool_dx_call(E *e, Buf *b, int id, const char *epi) {
  const Node *n = &e->g->nodes[id];
  const char *dy = e->var[n->in[0]], *dx = e->var[id];
  out(b, "  {\n");
  pool_params(e, b, n, &n->ty, &e->g->nodes[n->in[0]].ty);
  if (n->op == OP_MAX_POOL2D_DX)
    out(b, "    mlcrt_max_pool2d_dx_epi_f32(m->team, &pp, %s, %s, %s, %s);\n  }\n", dy,
        e->var[n->in[1]], dx, epi ? epi : "NULL");
  else
    out(b, "    mlcrt_avg_pool2d_dx_f32(&pp, %s, %s);\n  }\n", dy, dx);
}

static void emit_node(E *e, Buf *b, int id) {
  Node *n = &e->g->nodes[id];
  const char *y = e->var[id];
  const char *x = n->nin ? e->var[n->in[0]] : NULL;
  const Type *xt = n->nin ? &e->g->nodes[n->in[0]].ty : NULL;
  int flags = op_info[n->op].flags;
  if (n->op == OP_CONST) {
    out(b, "  %s[0] = %s;\n", y,
        store(e, literal(e, n->fa[0], compute_dt(n->ty.dt)), compute_dt(n->ty.dt), n->ty.dt));
    return;
  }
  if (flags & F_ELEM) {
    emit_elementwise(e, b, id);
    return;
  }
  if (flags & F_REDUCE) {
    emit_reduce(e, b, id);
    return;
  }
  if (emit_index_op(e, b, id)) return;
  if (emit_train_op(e, b, id)) return;
  switch (n->op) {
  case OP_RESHAPE:
  case OP_FLATTEN:
    return; /* a view: declared as an alias */
  case OP_TRANSPOSE:
  case OP_PERMUTE:
    emit_permute(e, b, id);
    return;
  case OP_MATMUL:
  case OP_LINEAR:
    emit_gemm_call(e, b, id, NULL);
    return;
  case OP_CONV1D:
  case OP_CONV2D:
    emit_conv_call(e, b, id, NULL);
    return;
  case OP_MAX_POOL2D:
  case OP_AVG_POOL2D:
    out(b, "  {\n");
    pool_params(e, b, n, xt, &n->ty);
    out(b, "    mlcrt_%s_f32(m->team, &pp, %s, %s);\n  }\n",
        n->op == OP_MAX_POOL2D ? "max_pool2d" : "avg_pool2d", x, y);
    return;
  case OP_ADAPTIVE_AVG_POOL2D:
    out(b, "  mlcrt_adaptive_avg_pool2d_f32(%s, %s, %s, %s, %lld, %lld, %s, %s);\n",
        dimc(e, xt->dim[0]), dimc(e, xt->dim[1]), dimc(e, xt->dim[2]), dimc(e, xt->dim[3]),
        (long long)n->ia[0], (long long)n->ia[1], x, y);
    return;
  case OP_SOFTMAX:
  case OP_LOG_SOFTMAX: {
    int d = (int)n->ia[1];
    Dim outer = dim_const(1), inner = dim_const(1);
    for (int k = 0; k < d; k++) outer = dim_mul(outer, xt->dim[k]);
    for (int k = d + 1; k < xt->rank; k++) inner = dim_mul(inner, xt->dim[k]);
    out(b, "  mlcrt_softmax_f32(%s, %s, %s, %s, %d, %s);\n", x, dimc(e, outer),
        xt->rank ? dimc(e, xt->dim[d]) : "1", dimc(e, inner), n->op == OP_LOG_SOFTMAX, y);
    return;
  }
  case OP_CROSS_ENTROPY:
  case OP_CROSS_ENTROPY_DX: {
    bool bwd = n->op == OP_CROSS_ENTROPY_DX;
    int lg = n->in[bwd ? 1 : 0], lb = n->in[bwd ? 2 : 1];
    const Type *lt = &e->g->nodes[lg].ty;
    const char *args = arena_printf(e->A, "%s, %s, %s, %s, %s, %.17g", e->var[lg], e->var[lb],
                                    mlcrt_dtype_c(e->g->nodes[lb].ty.dt), dimc(e, lt->dim[0]),
                                    dimc(e, lt->dim[1]), n->fa[0]);
    if (bwd)
      out(b,
          "  {\n    int rc = mlcrt_cross_entropy_dx_f32(%s, %s, %s, m->err);\n    if (rc) return "
          "rc;\n  }\n",
          x, args, y);
    else
      out(b,
          "  {\n    int rc = mlcrt_cross_entropy_f32(%s, %s, m->err);\n    if (rc) return rc;\n  "
          "}\n",
          args, y);
    return;
  }
  case OP_EMBEDDING_DW: { /* ids any shape, table [V, D] */
    const Type *it = &e->g->nodes[n->in[1]].ty;
    out(b, "  mlcrt_embedding_dw_f32(%s, %s, %s, %s, %s, %s, %s);\n", x, e->var[n->in[1]],
        mlcrt_dtype_c(it->dt), dimc(e, type_numel(it)), dimc(e, n->ty.dim[1]),
        dimc(e, n->ty.dim[0]), y);
    return;
  }
  case OP_LINEAR_DW: { /* dW[N, K] = dy^T x over all leading rows */
    const Type *dt = &e->g->nodes[n->in[0]].ty;
    Dim Nd = n->ty.dim[0], K = n->ty.dim[1], M;
    if (!dim_div(type_numel(dt), Nd, &M)) M = dim_const(0);
    out(b, "  mlcrt_linear_dw_f32(m->team, %s, %s, %s, %s, %s, %s);\n", x, e->var[n->in[1]],
        dimc(e, M), dimc(e, Nd), dimc(e, K), y);
    return;
  }
  case OP_CONV2D_DX:
  case OP_CONV2D_DW: { /* the forward conv's shapes: x, w, y */
    out(b, "  {\n    const mlcrt_conv2d_params cp = ");
    conv_params(e, b, n, "       ");
    out(b, ";\n    mlcrt_conv2d_%s_f32(m->team, &cp, %s, %s, %s, m->arena + m->%s[%d]);\n  }\n",
        n->op == OP_CONV2D_DX ? "dx" : "dw", x, e->var[n->in[1]], y, e->off, e->p->scratch[id]);
    return;
  }
  case OP_MAX_POOL2D_DX:
  case OP_AVG_POOL2D_DX:
    emit_pool_dx_call(e, b, id, NULL);
    return;
  case OP_ADAPTIVE_AVG_POOL2D_DX:
    out(b, "  mlcrt_adaptive_avg_pool2d_dx_f32(%s, %s, %s, %s, %s, %s, %s, %s);\n",
        dimc(e, n->ty.dim[0]), dimc(e, n->ty.dim[1]), dimc(e, n->ty.dim[2]), dimc(e, n->ty.dim[3]),
        dimc(e, xt->dim[2]), dimc(e, xt->dim[3]), x, y);
    return;
  case OP_SOFTMAX_DX:
  case OP_LOG_SOFTMAX_DX: {
    int d = (int)n->ia[1];
    const Type *t = &n->ty;
    Dim outer = dim_const(1), inner = dim_const(1);
    for (int k = 0; k < d; k++) outer = dim_mul(outer, t->dim[k]);
    for (int k = d + 1; k < t->rank; k++) inner = dim_mul(inner, t->dim[k]);
    out(b, "  mlcrt_softmax_dx_f32(%s, %s, %s, %s, %s, %d, %s);\n", x, e->var[n->in[1]],
        dimc(e, outer), t->rank ? dimc(e, t->dim[d]) : "1", dimc(e, inner),
        n->op == OP_LOG_SOFTMAX_DX, y);
    return;
  }
  case OP_BATCH_NORM:
  case OP_LAYER_NORM:
  case OP_GROUP_NORM:
  case OP_RMS_NORM:
    emit_norm(e, b, id);
    return;
  case OP_SDPA:
  case OP_SDPA_BWD:
    emit_sdpa(e, b, id);
    return;
  case OP_CONV_TRANSPOSE2D:
  case OP_CONV_TRANSPOSE2D_DX:
  case OP_CONV_TRANSPOSE2D_DW:
    emit_conv_transpose2d(e, b, id);
    return;
  default:
    out(b, "#error \"mlc internal error: no C emitter for operator %s\"\n", op_info[n->op].name);
  }
}

const char *describe(E *e, const Node *n) {
  if (n->op == OP_CONST) return arena_printf(e->A, "const %.9g", n->fa[0]);
  return op_info[n->op].name;
}

/* ---- the files --------------------------------------------------------------- */
/* The C parameter name of output i: its MDL name, unless an input has it. */
static bool name_taken(E *e, const char *n, int upto_output) {
  for (int j = 0; j < e->g->n; j++)
    if (e->var[j] && strcmp(e->var[j], n) == 0) return true;
  for (int s = 1; s <= e->g->nsym; s++)
    if (strcmp(e->g->sym[s], n) == 0 || strcmp(arena_printf(e->A, "max_%s", e->g->sym[s]), n) == 0)
      return true;
  for (int j = 0; j < upto_output; j++)
    if (strcmp(e->outnames[j], n) == 0) return true;
  return false;
}

/* The C parameter name of output i: its MDL name, made unique against every
 * other name in the run function. */
const char *outname(E *e, int i) {
  return e->outnames[i];
}

static void name_outputs(E *e) {
  e->outnames = arena_alloc(e->A, sizeof(char *) * (size_t)(e->g->noutputs + 1));
  for (int i = 0; i < e->g->noutputs; i++) {
    const char *n = cident(e->A, "", e->g->outputs[i].name);
    for (int k = 1; name_taken(e, n, i); k++)
      n = arena_printf(e->A, "%s_out%s", cident(e->A, "", e->g->outputs[i].name),
                       k > 1 ? arena_printf(e->A, "%d", k) : "");
    e->outnames[i] = n;
  }
}

/* The signature of NAME_run, NAME_train_step or NAME_evaluate: the instance,
 * the symbolic dims and the model's inputs; then for training and evaluation
 * the train section's inputs and the loss; then for run and evaluation the
 * outputs. */
void emit_signature(E *e, Buf *b, int kind) {
  static const char *const names[] = {"run", "train_step", "evaluate"};
  Graph *g = e->g;
  out(b, "int %s_%s(%s *m", e->M, names[kind], e->M);
  for (int s = 1; s <= g->nsym; s++) out(b, ", int64_t %s", g->sym[s]);
  for (int i = 0; i < g->ninputs; i++)
    out(b, ", const %s *%s", ctype(g->nodes[g->inputs[i]].ty.dt), e->var[g->inputs[i]]);
  if (kind != SIG_RUN) {
    for (int i = 0; i < g->ntrain_inputs; i++)
      out(b, ", const %s *%s", ctype(g->nodes[g->train_inputs[i]].ty.dt),
          e->var[g->train_inputs[i]]);
    out(b, ", float *loss");
  }
  if (kind != SIG_TRAIN)
    for (int i = 0; i < g->noutputs; i++)
      out(b, ", %s *%s", ctype(g->nodes[g->outputs[i].node].ty.dt), outname(e, i));
  out(b, ")");
}

void emit_create_signature(E *e, Buf *b) {
  out(b, "%s *%s_create(", e->M, e->M);
  for (int s = 1; s <= e->g->nsym; s++) out(b, "int64_t max_%s, ", e->g->sym[s]);
  out(b, "const mlcrt_options *opts)");
}

char *emit_header(E *e) {
  Graph *g = e->g;
  Buf b = {.A = e->A};
  char guard[256];
  snprintf(guard, sizeof guard, "%s", e->M);
  for (char *q = guard; *q; q++) *q = (char)toupper((unsigned char)*q);
  out(&b, "/* %s.h — generated by mlc from %s.  Do not edit.\n *\n", e->M, g->source_path);
  out(&b, " * model %s\n", g->name);
  for (int i = 0; i < g->ninputs; i++) {
    Node *n = &g->nodes[g->inputs[i]];
    out(&b, " *   input  %s: %s\n", n->name, type_str(e->A, g, &n->ty));
  }
  for (int i = 0; i < g->noutputs; i++)
    out(&b, " *   output %s: %s\n", g->outputs[i].name,
        type_str(e->A, g, &g->nodes[g->outputs[i].node].ty));
  out(&b, " *\n * Usage:\n *   %s *m = %s_create(", e->M, e->M);
  for (int s = 1; s <= g->nsym; s++) out(&b, "max_%s, ", g->sym[s]);
  out(&b, "NULL);\n *   if (!m) { fprintf(stderr, \"%%s\\n\", mlcrt_last_error()); ... }\n");
  if (e->embed)
    out(&b, " *   (starts with the weights embedded from %s; %s_load or _init replaces them)\n",
        e->embed, e->M);
  else
    out(&b,
        " *   if (%s_load(m, \"weights.safetensors\")) fprintf(stderr, \"%%s\\n\", "
        "%s_last_error(m));\n",
        e->M, e->M);
  out(&b, " *   %s_run(m, ...);\n *   %s_destroy(m);\n */\n", e->M, e->M);
  out(&b,
      "#ifndef %s_H\n#define %s_H\n\n#include <stdint.h>\n#include <mlcrt.h> /* mlcrt_options, "
      "MLCRT_CPU, status codes */\n\n",
      guard, guard);
  out(&b, "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n");
  out(&b, "typedef struct %s %s; /* opaque instance */\n\n", e->M, e->M);
  out(&b, "/* Creates an instance.");
  if (g->nsym) {
    out(&b, "  Symbolic dims are passed in order of first appearance (");
    for (int s = 1; s <= g->nsym; s++) out(&b, "%s%s", s > 1 ? ", " : "", g->sym[s]);
    out(&b, "):\n   their maximum values size the one arena; nothing is allocated after create.");
  }
  if (e->cuda)
    out(&b, "\n   A CUDA model: it runs on CUDA device opts->device_index (opts NULL: device 0).\n "
            "  Returns NULL on failure, with the reason in mlcrt_last_error().  ");
  else
    out(&b, "\n   opts may be NULL (CPU, default threads).  Returns NULL on failure, with the\n   "
            "reason in mlcrt_last_error().  ");
  if (e->embed)
    out(&b,
        "Weights start as those embedded from %s\n   (--embed-weights) until _init or _load "
        "replaces them. */\n",
        e->embed);
  else
    out(&b, "Weights start as zeros until _init or _load. */\n");
  emit_create_signature(e, &b);
  out(&b,
      ";\n\n/* Loads params and buffers from a safetensors file; 0 or an MLCRT_E* status. */\n");
  out(&b, "int %s_load(%s *m, const char *safetensors_path);\n\n", e->M, e->M);
  out(&b, "/* Saves params and buffers (via a temporary file and rename). */\n");
  out(&b, "int %s_save(const %s *m, const char *safetensors_path);\n\n", e->M, e->M);
  out(&b, "/* Sets every param and buffer from the model's initialisers, seeded. */\n");
  out(&b, "int %s_init(%s *m, uint64_t seed);\n\n", e->M, e->M);
  out(&b, "/* Runs the model.  Inputs and outputs are dense C-order host arrays:\n");
  for (int i = 0; i < g->ninputs; i++) {
    Node *n = &g->nodes[g->inputs[i]];
    out(&b, "     %s: %s\n", e->var[g->inputs[i]], type_str(e->A, g, &n->ty));
  }
  for (int i = 0; i < g->noutputs; i++)
    out(&b, "     %s: %s (written)\n", outname(e, i),
        type_str(e->A, g, &g->nodes[g->outputs[i].node].ty));
  out(&b, "   Returns 0, or a status with the reason in %s_last_error(). */\n", e->M);
  emit_signature(e, &b, SIG_RUN);
  if (e->train) {
    out(&b, ";\n\n/* One training step on a batch (the train section): forward, backward,\n");
    out(&b, "   optimizer update.  Writes the loss (before the update).  A non-finite loss\n");
    out(&b, "   returns MLCRT_ENUMERIC and leaves the weights and optimizer state unchanged. */\n");
    emit_signature(e, &b, SIG_TRAIN);
    out(&b, ";\n\n/* Checkpoints: params, buffers, optimizer state and step count, written\n");
    out(&b, "   atomically (temporary file + rename). */\n");
    out(&b, "int %s_save_checkpoint(const %s *m, const char *path);\n", e->M, e->M);
    out(&b, "int %s_load_checkpoint(%s *m, const char *path);\n\n", e->M, e->M);
    out(&b, "/* Train steps taken so far (restored by _load_checkpoint). */\n");
    out(&b, "int64_t %s_step(const %s *m);\n\n", e->M, e->M);
    out(&b, "/* Seeds dropout in train steps (also set by _init): masks are drawn from\n   (seed, "
            "step count, node, element), the same for any thread count. */\n");
    out(&b, "int %s_set_seed(%s *m, uint64_t seed);\n\n", e->M, e->M);
    out(&b, "/* The loss and the outputs for a batch, without training; an output pointer\n   may "
            "be NULL. */\n");
    emit_signature(e, &b, SIG_EVAL);
  }
  out(&b, ";\n\n/* The message of the last failed call on m. */\n");
  out(&b, "const char *%s_last_error(const %s *m);\n\n", e->M, e->M);
  out(&b, "/* Frees the instance (NULL is allowed). */\nvoid %s_destroy(%s *m);\n\n", e->M, e->M);
  out(&b, "#ifdef __cplusplus\n}\n#endif\n#endif\n");
  return b.s;
}

static const char *init_name(InitKind k) {
  static const char *names[] = {"MLCRT_INIT_ZEROS",           "MLCRT_INIT_ONES",
                                "MLCRT_INIT_NORMAL",          "MLCRT_INIT_UNIFORM",
                                "MLCRT_INIT_KAIMING_UNIFORM", "MLCRT_INIT_XAVIER_UNIFORM"};
  return names[k];
}

const char *src_line(E *e, Loc loc) {
  if (!loc.src) return "";
  const char *p = loc.src->text;
  for (int l = 1; l < loc.line && *p; p++)
    if (*p == '\n') l++;
  const char *q = p;
  while (*q && *q != '\n') q++;
  while (p < q && isspace((unsigned char)*p)) p++;
  char *s = arena_strndup(e->A, p, (size_t)(q - p));
  for (char *c = s; *c; c++) /* keep comments closed */
    if (c[0] == '*' && c[1] == '/') c[1] = '|';
  return s;
}

/* A float constant written so that appending 'f' gives a C float literal. */
const char *literal_plain(E *e, double v) {
  char buf[64];
  snprintf(buf, sizeof buf, "%.9g", v);
  if (!strpbrk(buf, ".en")) strcat(buf, ".0");
  return arena_strdup(e->A, buf);
}

/* Named pointers and one commented step per node that plan p runs. */
static void emit_body(E *e, Buf *b, const Plan *p, const char *fn) {
  Graph *g = e->g;
  e->p = p;
  out(b, "\n  /* params and buffers */\n");
  for (int t = 0; t < g->ntensors; t++) {
    int id = g->tensors[t];
    Node *n = &g->nodes[id];
    out(b, "  const %s *%s = (const %s *)(m->weights + %zu); /* %s %s */\n", ctype(n->ty.dt),
        e->var[id], ctype(n->ty.dt), p->weight_off[id], n->name, type_str(e->A, g, &n->ty));
    bool used = false; /* by a node that runs */
    for (int j = 0; j < g->n && !used; j++)
      if (p->storage[j] == ST_ARENA || p->storage[j] == ST_ALIAS || p->storage[j] == ST_FUSED)
        for (int k = 0; k < g->nodes[j].nin; k++) used |= g->nodes[j].in[k] == id;
    for (int j = 0; j < g->noutputs; j++) used |= g->outputs[j].node == id;
    if (!used) out(b, "  (void)%s; /* not used by %s */\n", e->var[id], fn);
  }
  out(b, "\n  /* activations%s */\n", p == e->train ? " and gradients" : "");
  for (int i = 0; i < g->n; i++) {
    Node *n = &g->nodes[i];
    if (p->storage[i] == ST_ARENA)
      out(b, "  %s *%s = (%s *)(m->arena + m->%s[%d]); /* %s */\n", ctype(n->ty.dt), e->var[i],
          ctype(n->ty.dt), e->off, p->buf[i], type_str(e->A, g, &n->ty));
    else if (p->storage[i] == ST_ALIAS) {
      Storage rs = p->storage[p->alias_of[i]];
      bool ro = rs == ST_INPUT || rs == ST_WEIGHT;
      out(b, "  %s%s *%s = %s; /* %s, a view of %s */\n", ro ? "const " : "", ctype(n->ty.dt),
          e->var[i], e->var[n->in[0]], type_str(e->A, g, &n->ty), e->var[n->in[0]]);
    }
  }
  if (p == e->run && e->nwpack) {
    out(b, "\n  /* the weights changed since run last packed them (see %s_create) */\n", e->M);
    out(b, "  if (!m->wpack_ok) {\n");
    for (int k = 0; k < e->nwpack; k++) out(b, "    %s;\n", wpack_call(e, k, true));
    out(b, "    m->wpack_ok = 1;\n  }\n");
  }
  out(b, "\n");
  for (int gi = 0; gi < p->ngroups; gi++) { /* one kernel per fusion group, in schedule order */
    const Group *gr = &p->groups[gi];
    int i = gr->root;
    Node *n = &g->nodes[i];
    if (gr->kind == GK_SINGLE) {
      out(b, "  /* line %d: %s   -> %s %s%s */\n", n->loc.line, src_line(e, n->loc), describe(e, n),
          type_str(e->A, g, &n->ty),
          gr->inplace >= 0 ? arena_printf(e->A, ", in place over %s", e->var[gr->inplace]) : "");
      emit_node(e, b, i);
      continue;
    }
    /* a fusion group: its ops, then the source lines they come from */
    out(b, "  /* fused: ");
    for (int k = 0; k < gr->n; k++)
      out(b, "%s%s", k ? " + " : "", describe(e, &g->nodes[gr->nodes[k]]));
    out(b, "   -> %s%s\n", type_str(e->A, g, &n->ty),
        gr->inplace >= 0 ? arena_printf(e->A, ", in place over %s", e->var[gr->inplace]) : "");
    for (int k = 0; k < gr->n; k++) {
      Loc loc = g->nodes[gr->nodes[k]].loc;
      bool seen = false;
      for (int k2 = 0; k2 < k; k2++) seen |= g->nodes[gr->nodes[k2]].loc.line == loc.line;
      if (!seen) out(b, "   *   line %d: %s\n", loc.line, src_line(e, loc));
    }
    out(b, "   */\n");
    if (gr->kind == GK_POOLED) {
      emit_pooled(e, b, gr);
      continue;
    }
    if (gr->kind ==
        GK_EPILOGUE) { /* the producer writes the root's buffer; the tail finishes it in place */
      int prod = gr->nodes[0];
      const Node *pn = &g->nodes[prod];
      const char *own = e->var[prod];
      e->var[prod] = e->var[i];
      /* inside the producer when fuse.c says so (Group.inside: a GEMM's
       * blocks, or a convolution's or max_pool2d backward's rows when every
       * value the tail reads fits [images x channels, the rest]); else a
       * second pass */
      if (gr->inside) {
        const bool gemm = pn->op == OP_LINEAR || pn->op == OP_MATMUL;
        const bool pool = pn->op == OP_MAX_POOL2D_DX;
        /* on each block of the result as soon as it is final */
        ElemKernel K = elem_kernel(e, gr->nodes, gr->n, true, gemm ? VIEW_GEMM : VIEW_CONV);
        out(b, "  {\n    struct %s a = %s;\n    const mlcrt_epilogue epi = {%s, &a};\n", K.name,
            K.init, K.name);
        Buf call = {.A = e->A};
        if (gemm)
          emit_gemm_call(e, &call, prod, "&epi");
        else if (pool)
          emit_pool_dx_call(e, &call, prod, "&epi");
        else
          emit_conv_call(e, &call, prod, "&epi");
        for (const char *ln = call.s; *ln;) { /* one level deeper */
          size_t len = strcspn(ln, "\n");
          out(b, "  %.*s\n", (int)len, ln);
          ln += len + (ln[len] == '\n');
        }
        out(b, "  }\n");
        e->var[prod] = own;
        continue;
      }
      emit_node(e, b, prod); /* then its tail, a second pass */
      e->var[prod] = own;
    }
    emit_elem_loop(e, b, gr->nodes, gr->n, gr->kind == GK_EPILOGUE);
  }
}

/* Checks of the dims, the pointers and the run-time shape constraints. */
void emit_checks(E *e, Buf *b, const char *fn, bool train) {
  Graph *g = e->g;
  const char *M = e->M;
  out(b, " {\n  if (!m) return MLCRT_EINVAL;\n");
  for (int s = 1; s <= g->nsym; s++)
    out(b,
        "  if (%s < 0 || %s > m->max_%s)\n    return mlcrt_seterr(m->err, MLCRT_EINVAL, \"%s_%s: "
        "%s = %%lld is outside 0..%%lld (the maximum given to create)\", (long long)%s, (long "
        "long)m->max_%s);\n",
        g->sym[s], g->sym[s], g->sym[s], M, fn, g->sym[s], g->sym[s], g->sym[s]);
  for (int i = 0; i < g->ninputs; i++)
    out(b, "  if (!%s) return mlcrt_seterr(m->err, MLCRT_EINVAL, \"%s_%s: input '%s' is NULL\");\n",
        e->var[g->inputs[i]], M, fn, g->nodes[g->inputs[i]].name);
  if (train) {
    for (int i = 0; i < g->ntrain_inputs; i++)
      out(b,
          "  if (!%s) return mlcrt_seterr(m->err, MLCRT_EINVAL, \"%s_%s: input '%s' is NULL\");\n",
          e->var[g->train_inputs[i]], M, fn, g->nodes[g->train_inputs[i]].name);
    out(b, "  if (!loss) return mlcrt_seterr(m->err, MLCRT_EINVAL, \"%s_%s: loss is NULL\");\n", M,
        fn);
  } else
    for (int i = 0; i < g->noutputs; i++)
      out(b,
          "  if (!%s) return mlcrt_seterr(m->err, MLCRT_EINVAL, \"%s_%s: output '%s' is NULL\");\n",
          outname(e, i), M, fn, g->outputs[i].name);
  for (int c = 0; c < g->nchecks; c++) {
    DimCheck *ck = &g->checks[c];
    const char *a = dimc(e, ck->a), *bb = dimc(e, ck->b);
    out(b,
        "  if (%s != %s)\n    return mlcrt_seterr(m->err, MLCRT_ESHAPE, \"%s:%d:%d: shape mismatch "
        "at run time: %s (= %%lld) must equal %s (= %%lld): %s\", (long long)(%s), (long "
        "long)(%s));\n",
        a, bb, ck->loc.src ? ck->loc.src->path : g->source_path, ck->loc.line, ck->loc.col, a, bb,
        ck->what, a, bb);
  }
}

void emit_items(E *e, Buf *b, const Plan *p, const char *name, Buf *dbl, const char **dnames) {
  Graph *g = e->g;
  out(b, "  mlcrt_plan_item %s[%d] = {\n", name, p->nbufs ? p->nbufs : 1);
  for (int i = 0; i < p->nbufs; i++) {
    const PlanBuf *pb = &p->bufs[i];
    Node *n = &g->nodes[pb->node];
    if (pb->scratch && pb->chunk) { /* a pooled convolution's, a chunk a thread */
      out(b, "      {mlcrt_conv2d_pool_scratch(&(mlcrt_conv2d_params)");
      conv_params(e, b, n, "          ");
      out(b, ", %d, nthreads), %d, %d, 0}, /* scratch of %%%d */\n", pb->chunk, pb->first, pb->last,
          pb->node);
    } else if (pb->scratch) {
      out(b, "      {mlcrt_conv2d_scratch(&(mlcrt_conv2d_params)");
      conv_params(e, b, n, "          ");
      out(b, ", %s, nthreads), %d, %d, 0}, /* scratch of %%%d */\n",
          n->op == OP_CONV2D_DX   ? "MLCRT_CONV_DX"
          : n->op == OP_CONV2D_DW ? "MLCRT_CONV_DW"
                                  : "MLCRT_CONV_FWD",
          pb->first, pb->last, pb->node);
    } else if (pb->chunk) { /* GK_POOLED: images of a convolution's result, a chunk at a time */
      Dim per;              /* one image's bytes (a constant: fuse.c pools only such results) */
      dim_div(plan_buf_bytes(g, p, i), dim_const(pb->chunk), &per);
      out(b,
          "      {(size_t)(%s) * %s, %d, %d, 0}, /* %%%d %s: %s, %d images a thread at a time */\n",
          dimc(e, per), chunk_n(e, pb->node, pb->chunk), pb->first, pb->last, pb->node,
          n->hint ? n->hint : describe(e, n), type_str(e->A, g, &n->ty), pb->chunk);
    } else {
      Dim bytes = plan_buf_bytes(g, p, i);
      out(b, "      {(size_t)%s, %d, %d, 0}, /* %%%d %s: %s */\n", dimc(e, bytes), pb->first,
          pb->last, pb->node, n->hint ? n->hint : describe(e, n), type_str(e->A, g, &n->ty));
      out(dbl, "%s%s", dbl->len ? " + " : "", dim_str(e->A, bytes, dnames));
    }
  }
  if (!p->nbufs) out(b, "      {0, 0, 0, 0},\n");
  out(b, "  };\n");
}

void emit_desc(E *e, Buf *b, const char *name, DType dt, const Type *t, size_t off, InitKind init,
               double ia, double ib) {
  out(b, "    {\"%s\", %s, %d, {", name, mlcrt_dtype_c(dt), t ? t->rank : 0);
  for (int i = 0; t && i < t->rank; i++) out(b, "%s%s", i ? ", " : "", dimc(e, t->dim[i]));
  if (!t || t->rank == 0) out(b, "0"); /* a scalar: ISO C wants a non-empty initializer */
  out(b, "}, %zu, %s, %.17g, %.17g},\n", off, init_name(init), ia, ib);
}

/* The optimizer's update as an elementwise kernel over elements c0..c1 of one
 * param (viewed as one row), written to e->kern the first time a param needs
 * it: the train step runs it on each param through mlcrt_tiles, so a large
 * param's update (a memory-bound pass over weights, gradient and state) is
 * split over the team.  Elementwise: the same bits for any split. */
static const char *update_kernel(E *e) {
  if (e->update) return e->update;
  const Optimizer *o = &e->g->opt;
  const char *K = arena_printf(e->A, "%s_%s", e->M, o->kind == OPT_SGD ? "sgd" : "adam");
  Buf *f = e->kern;
  const char *lr = literal_plain(e, o->lr), *wd = literal_plain(e, o->weight_decay);
  if (o->kind == OPT_SGD) {
    const bool mom = o->momentum > 0;
    const char *mu = literal_plain(e, o->momentum);
    out(f,
        "/* sgd(lr=%s, momentum=%s, weight_decay=%s, nesterov=%s) on elements c0..c1 of one "
        "param */\n",
        lr, mu, wd, o->nesterov ? "true" : "false");
    out(f, "struct %s {\n  float *w;\n  const float *grad;\n%s};\n", K,
        mom ? "  float *buf; /* momentum_buffer */\n  int64_t step;\n" : "");
    out(f, "static void %s(void *ctx, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {\n", K);
    out(f,
        "  const struct %s *a = ctx;\n  float *restrict w = a->w;\n  const float *restrict "
        "grad = a->grad;\n",
        K);
    if (mom) out(f, "  float *restrict buf = a->buf;\n  const int first = a->step == 1;\n");
    out(f,
        "  (void)r0, (void)r1;\n  for (int64_t i = c0; i < c1; i++) {\n    float d = grad[i]%s;\n",
        o->weight_decay > 0 ? arena_printf(e->A, " + %sf * w[i]", wd) : "");
    if (mom) {
      out(f, "    buf[i] = first ? d : %sf * buf[i] + d;\n", mu);
      out(f, o->nesterov ? "    d = d + %sf * buf[i];\n" : "    d = buf[i];%s\n",
          o->nesterov ? mu : "");
    }
    out(f, "    w[i] -= %sf * d;\n  }\n}\n\n", lr);
  } else {
    out(f,
        "/* %s(lr=%s, betas=(%s, %s), eps=%s, weight_decay=%s) on elements c0..c1 of one param; "
        "step_size and bc2_sqrt carry the step's bias corrections */\n",
        o->kind == OPT_ADAM ? "adam" : "adamw", lr, literal_plain(e, o->beta1),
        literal_plain(e, o->beta2), literal_plain(e, o->eps), wd);
    out(f,
        "struct %s {\n  float *w;\n  const float *grad;\n  float *exp_avg, *exp_avg_sq;\n  "
        "float step_size, bc2_sqrt;\n};\n",
        K);
    out(f, "static void %s(void *ctx, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {\n", K);
    out(f,
        "  const struct %s *a = ctx;\n  float *restrict w = a->w, *restrict exp_avg = "
        "a->exp_avg, *restrict exp_avg_sq = a->exp_avg_sq;\n  const float *restrict grad = "
        "a->grad;\n  const float step_size = a->step_size, bc2_sqrt = a->bc2_sqrt;\n",
        K);
    out(f,
        "  (void)r0, (void)r1;\n  for (int64_t i = c0; i < c1; i++) {\n    float d = grad[i];\n");
    if (o->kind == OPT_ADAMW && o->weight_decay > 0)
      out(f, "    w[i] *= 1.0f - %sf * %sf;\n", lr, wd);
    if (o->kind == OPT_ADAM && o->weight_decay > 0) out(f, "    d += %sf * w[i];\n", wd);
    out(f, "    exp_avg[i] += %sf * (d - exp_avg[i]);\n", literal_plain(e, 1 - o->beta1));
    out(f, "    exp_avg_sq[i] = exp_avg_sq[i] * %sf + %sf * d * d;\n", literal_plain(e, o->beta2),
        literal_plain(e, 1 - o->beta2));
    out(f,
        "    w[i] -= step_size * exp_avg[i] / (sqrtf(exp_avg_sq[i]) / bc2_sqrt + %sf);\n  }\n}\n\n",
        literal_plain(e, o->eps));
  }
  return e->update = K;
}

/* The optimizer update of one param, after its gradient is known: the
 * optimizer's kernel on its elements, split over the team when large. */
static void emit_update(E *e, Buf *b, int t) {
  Graph *g = e->g;
  int id = g->tensors[t];
  Node *n = &g->nodes[id];
  const Optimizer *o = &g->opt;
  const char *K = update_kernel(e);
  out(b, "  { /* %s %s */\n    struct %s a = {(float *)(m->weights + %zu), %s", n->name,
      type_str(e->A, g, &n->ty), K, e->p->weight_off[id], e->var[g->grads[t]]);
  if (o->kind != OPT_SGD)
    out(b, ", (float *)(m->weights + %zu), (float *)(m->weights + %zu), step_size, bc2_sqrt",
        e->slot_off[t], e->slot_off[t] + e->slot2_gap[t]);
  else if (o->momentum > 0)
    out(b, ", (float *)(m->weights + %zu), step", e->slot_off[t]);
  out(b, "};\n    mlcrt_tiles(m->team, 1, %s, %s, &a);\n  }\n", dimc(e, type_numel(&n->ty)), K);
}

/* Tied names: a descriptor at the original's offset, after the originals
 * (runtime/safetensors.c loads either name and saves the first). */
void emit_ties(E *e, Buf *b) {
  for (int i = 0; i < e->g->nties; i++) {
    Node *n = &e->g->nodes[e->g->tie_nodes[i]];
    emit_desc(e, b, e->g->tie_names[i], n->ty.dt, &n->ty, e->p->weight_off[e->g->tie_nodes[i]],
              n->init, n->init_a, n->init_b);
  }
}

static char *emit_source(E *e, const char *header_name) {
  Graph *g = e->g;
  const Plan *p = e->p, *tp = e->train;
  e->run = p;
  plan_wpacks(e, p);
  Buf b = {.A = e->A};
  const char *M = e->M;
  out(&b, "/* %s.c — generated by mlc from %s.  Do not edit.\n", M, g->source_path);
  out(&b, " * One instance owns a weights region (params, buffers%s) and one arena of\n",
      tp ? ", optimizer state" : "");
  out(&b, " * activations planned at create time%s;\n * %s_run%s allocate%s nothing. */\n",
      e->nwpack ? ", and its weights packed for run's GEMMs" : "", M, tp ? " and _train_step" : "",
      tp ? "" : "s");
  out(&b,
      "#include \"%s\"\n\n#include <math.h>\n#include <stdio.h>\n#include <stdlib.h>\n#include "
      "<string.h>\n\n",
      header_name);
  out(&b, "@MLC_F2I@"); /* replaced below by the helper, or nothing when unused */
  if (e->embed)
    out(&b,
        "/* The params and buffers embedded from %s (--embed-weights), laid out as\n   the weights "
        "region: defined in the weights translation unit (emitc_weights). */\nextern const "
        "unsigned char %s_embedded_weights[];\n\n",
        e->embed, M);

  /* descriptor tables */
  out(&b,
      "/* Params and buffers: name, dtype, shape, offset in the weights region, initialiser. */\n");
  out(&b,
      "enum { NTENSORS = %d, NCKPT = %d, WEIGHT_BYTES = %zu, NBUFS = %d, NTBUFS = %d, NEBUFS = %d "
      "};\n",
      g->ntensors + g->nties, tp ? e->nckpt : g->ntensors + g->nties, e->weight_bytes, p->nbufs,
      tp ? tp->nbufs : 0, tp ? e->eval->nbufs : 0);
  out(&b, "static const mlcrt_tensor_desc %s_tensors[%d] = {\n", M,
      g->ntensors + g->nties ? g->ntensors + g->nties : 1);
  for (int t = 0; t < g->ntensors; t++) {
    Node *n = &g->nodes[g->tensors[t]];
    emit_desc(e, &b, n->name, n->ty.dt, &n->ty, p->weight_off[g->tensors[t]], n->init, n->init_a,
              n->init_b);
  }
  emit_ties(e, &b);
  if (!g->ntensors) out(&b, "    {0},\n");
  out(&b, "};\n\n");
  if (tp) {
    out(&b, "/* Checkpoints: the tensors above, the optimizer state (PyTorch's slot names) and the "
            "step. */\n");
    out(&b, "static const mlcrt_tensor_desc %s_checkpoint[NCKPT] = {\n", M);
    for (int t = 0; t < g->ntensors; t++) {
      Node *n = &g->nodes[g->tensors[t]];
      emit_desc(e, &b, n->name, n->ty.dt, &n->ty, p->weight_off[g->tensors[t]], n->init, n->init_a,
                n->init_b);
    }
    emit_ties(e, &b);
    static const char *slot_names[2][2] = {{"momentum_buffer", ""}, {"exp_avg", "exp_avg_sq"}};
    for (int t = 0; t < g->ntensors; t++) {
      Node *n = &g->nodes[g->tensors[t]];
      for (int k = 0; k < e->nslots && g->grads[t] >= 0; k++)
        emit_desc(
            e, &b,
            arena_printf(e->A, "optimizer.%s.%s", n->name, slot_names[g->opt.kind != OPT_SGD][k]),
            DT_F32, &n->ty, e->slot_off[t] + (k ? e->slot2_gap[t] : 0), INIT_ZEROS, 0, 0);
    }
    emit_desc(e, &b, "optimizer.step", DT_I64, NULL, e->step_off, INIT_ZEROS, 0, 0);
    out(&b, "};\n\n");
  }

  out(&b, "struct %s {\n", M);
  for (int s = 1; s <= g->nsym; s++) out(&b, "  int64_t max_%s;\n", g->sym[s]);
  out(&b, "  unsigned char *weights; /* WEIGHT_BYTES: params and buffers%s */\n",
      tp ? ", then optimizer state" : "");
  out(&b, "  unsigned char *arena;   /* activations and scratch, planned at create */\n");
  out(&b, "  size_t arena_bytes;\n  size_t off[NBUFS ? NBUFS : 1]; /* offset of each arena buffer "
          "of run */\n");
  out(&b, "  mlcrt_team *team;        /* the threads the kernels run on */\n");
  if (tp)
    out(&b, "  size_t toff[NTBUFS ? NTBUFS : 1]; /* ... of the train step */\n  size_t eoff[NEBUFS "
            "? NEBUFS : 1]; /* ... and of evaluate */\n");
  if (tp)
    out(&b, "  uint64_t seed; /* dropout's generator in train steps: _init or _set_seed */\n");
  if (e->nwpack)
    out(&b,
        "  float *wpack;      /* weights packed for the GEMM kernels of run */\n"
        "  size_t wpoff[%d]; /* ... each one's offset (floats) */\n"
        "  int wpack_ok;      /* 0: the weights changed since they were packed */\n",
        e->nwpack);
  out(&b, "  char err[MLCRT_ERRLEN];\n};\n\n");

  /* create */
  emit_create_signature(e, &b);
  out(&b, " {\n  char msg[MLCRT_ERRLEN];\n");
  for (int s = 1; s <= g->nsym; s++)
    out(&b,
        "  if (max_%s < 1 || max_%s > ((int64_t)1 << 40)) {\n    snprintf(msg, sizeof msg, "
        "\"%s_create: max_%s = %%lld is out of range (1..2^40)\", (long long)max_%s);\n    "
        "mlcrt_set_last_error(msg);\n    return NULL;\n  }\n",
        g->sym[s], g->sym[s], M, g->sym[s], g->sym[s]);
  out(&b,
      "  if (opts && opts->device != MLCRT_CPU) {\n    mlcrt_set_last_error(\"%s_create: this "
      "model was compiled for the CPU; compile with -o %s.cu for CUDA\");\n    return NULL;\n  }\n",
      M, M);
  out(&b, "  const int nthreads = opts && opts->num_threads > 0 ? opts->num_threads : "
          "mlcrt_default_threads();\n");
  const char **dnames = arena_alloc(e->A, sizeof(char *) * (MAX_SYMS + 1));
  for (int s = 1; s <= g->nsym; s++) {
    out(&b, "  const int64_t %s = max_%s;\n", g->sym[s], g->sym[s]);
    dnames[s] = arena_printf(e->A, "(double)%s", g->sym[s]);
  }
  out(&b, "  /* arena buffers: bytes at the maximum dims, and live ranges in run order */\n");
  Buf dbl = {.A = e->A};
  e->off = "off";
  emit_items(e, &b, p, "items", &dbl, dnames);
  if (tp) {
    out(&b, "  /* ... and in train-step order (the train step reuses the same arena) */\n");
    e->p = tp;
    emit_items(e, &b, tp, "titems", &dbl, dnames);
    e->p = e->eval;
    emit_items(e, &b, e->eval, "eitems", &dbl, dnames);
    e->p = p;
  }
  if (dbl.len)
    out(&b,
        "  if (%s > 1e14) {\n    mlcrt_set_last_error(\"%s_create: the activations for these "
        "maximum dims would need over 100 TB\");\n    return NULL;\n  }\n",
        dbl.s, M);
  for (int s = 1; s <= g->nsym; s++) out(&b, "  (void)%s;\n", g->sym[s]);
  out(&b,
      "  %s *m = calloc(1, sizeof *m);\n  if (!m) {\n    mlcrt_set_last_error(\"%s_create: out of "
      "memory\");\n    return NULL;\n  }\n",
      M, M);
  for (int s = 1; s <= g->nsym; s++) out(&b, "  m->max_%s = max_%s;\n", g->sym[s], g->sym[s]);
  out(&b, "  m->arena_bytes = mlcrt_plan(items, NBUFS, 64);\n");
  out(&b, "  for (int i = 0; i < NBUFS; i++) m->off[i] = items[i].offset;\n");
  if (tp) {
    out(&b, "  size_t train_bytes = mlcrt_plan(titems, NTBUFS, 64);\n");
    out(&b, "  if (train_bytes > m->arena_bytes) m->arena_bytes = train_bytes;\n");
    out(&b, "  for (int i = 0; i < NTBUFS; i++) m->toff[i] = titems[i].offset;\n");
    out(&b, "  size_t eval_bytes = mlcrt_plan(eitems, NEBUFS, 64);\n");
    out(&b, "  if (eval_bytes > m->arena_bytes) m->arena_bytes = eval_bytes;\n");
    out(&b, "  for (int i = 0; i < NEBUFS; i++) m->eoff[i] = eitems[i].offset;\n");
  }
  out(&b, "  m->weights = mlcrt_alloc(WEIGHT_BYTES); /* NULL beyond the machine's memory */\n");
  out(&b, "  m->arena = mlcrt_alloc(m->arena_bytes);\n");
  out(&b, "  m->team = mlcrt_team_create(nthreads, mlcrt_cpu_isa());\n");
  out(&b,
      "  if (!m->weights || !m->arena || !m->team) {\n    snprintf(msg, sizeof msg, \"%s_create: "
      "cannot allocate %%zu bytes of weights and %%zu of activations\", (size_t)WEIGHT_BYTES, "
      "m->arena_bytes);\n    mlcrt_set_last_error(msg);\n    %s_destroy(m);\n    return NULL;\n  "
      "}\n",
      M, M);
  if (e->nwpack) {
    out(&b, "  /* room for the weights run packs once for the team's GEMM kernels\n"
            "   * (they repack when the weights change: wpack_ok) */\n  size_t npack = 0;\n");
    for (int k = 0; k < e->nwpack; k++) {
      const Node *n = &g->nodes[e->wpnode[k]];
      out(&b, "  m->wpoff[%d] = npack; /* %s%s */\n  npack += (%s + 15) & ~(size_t)15;\n", k,
          n->op == OP_PARAM ? n->name : g->nodes[n->in[1]].name,
          n->op == OP_PARAM ? "" : arena_printf(e->A, ", %s", describe(e, n)),
          wpack_call(e, k, false));
    }
    out(&b,
        "  m->wpack = mlcrt_alloc(npack * sizeof(float));\n  if (!m->wpack) {\n    snprintf(msg, "
        "sizeof msg, \"%s_create: cannot allocate %%zu bytes of packed weights\", npack * "
        "sizeof(float));\n    mlcrt_set_last_error(msg);\n    %s_destroy(m);\n    return NULL;\n  "
        "}\n",
        M, M);
  }
  if (e->embed)
    out(&b,
        "  memcpy(m->weights, %s_embedded_weights, %zu); /* the embedded weights until init or "
        "load */\n  memset(m->weights + %zu, 0, WEIGHT_BYTES - %zu);\n  return m;\n}\n\n",
        M, p->weight_bytes, p->weight_bytes, p->weight_bytes);
  else
    out(&b, "  memset(m->weights, 0, WEIGHT_BYTES); /* zeros until init or load */\n  return "
            "m;\n}\n\n");

  out(&b,
      "void %s_destroy(%s *m) {\n  if (!m) return;\n  mlcrt_team_destroy(m->team);\n  "
      "free(m->weights);\n  free(m->arena);\n%s  free(m);\n}\n\n",
      M, M, e->nwpack ? "  free(m->wpack);\n" : "");
  /* what changes the weights makes run pack them again */
  const char *stale = e->nwpack ? "  m->wpack_ok = 0;\n" : "";
  out(&b, "const char *%s_last_error(const %s *m) { return m ? m->err : \"NULL instance\"; }\n\n",
      M, M);
  const char *reset =
      tp ? arena_printf(
               e->A, "  memset(m->weights + %zu, 0, WEIGHT_BYTES - %zu); /* a fresh optimizer */\n",
               p->weight_bytes, p->weight_bytes)
         : "";
  out(&b,
      "int %s_load(%s *m, const char *safetensors_path) {\n  if (!m) return MLCRT_EINVAL;\n  if "
      "(!safetensors_path) return mlcrt_seterr(m->err, MLCRT_EINVAL, \"%s_load: NULL "
      "path\");\n%s%s  "
      "return mlcrt_load_safetensors(safetensors_path, %s_tensors, NTENSORS, m->weights, "
      "m->err);\n}\n\n",
      M, M, M, reset, stale, M);
  out(&b,
      "int %s_save(const %s *m, const char *safetensors_path) {\n  if (!m || !safetensors_path) "
      "return MLCRT_EINVAL;\n  return mlcrt_save_safetensors(safetensors_path, %s_tensors, "
      "NTENSORS, m->weights, (char *)m->err);\n}\n\n",
      M, M, M);
  out(&b,
      "int %s_init(%s *m, uint64_t seed) {\n  if (!m) return MLCRT_EINVAL;\n%s%s%s  return "
      "mlcrt_init_tensors(%s_tensors, NTENSORS, m->weights, seed);\n}\n\n",
      M, M, reset, tp ? "  m->seed = seed;\n" : "", stale, M);
  if (tp)
    out(&b,
        "int %s_set_seed(%s *m, uint64_t seed) {\n  if (!m) return MLCRT_EINVAL;\n  m->seed = "
        "seed;\n  return MLCRT_OK;\n}\n\n",
        M, M);

  /* run */
  Buf kern = {.A = e->A};
  out(&kern, "%s", "");
  e->kern = &kern;
  e->nkern = 0;
  e->kseen = NULL;
  e->update = NULL;
  out(&b,
      "@MLC_KERNELS@"); /* replaced below by the elementwise kernels of run, train and evaluate */
  out(&b, "/* The forward pass, one step per operation of %s. */\n", g->source_path);
  emit_signature(e, &b, SIG_RUN);
  emit_checks(e, &b, "run", false);
  e->off = "off";
  emit_body(e, &b, p, "the outputs");
  out(&b, "\n  /* outputs */\n");
  for (int i = 0; i < g->noutputs; i++) {
    int id = g->outputs[i].node;
    Node *n = &g->nodes[id];
    out(&b, "  memcpy(%s, %s, (size_t)%s * sizeof(%s));\n", outname(e, i), e->var[id],
        dimc(e, type_numel(&n->ty)), ctype(n->ty.dt));
  }
  out(&b, "  return MLCRT_OK;\n}\n");

  if (tp) {
    const Optimizer *o = &g->opt;
    out(&b,
        "\n/* One training step: forward to the loss, backward to every param's gradient\n"
        " * (reverse-mode differentiation of the same graph), then the optimizer:\n"
        " * %s. */\n",
        o->kind == OPT_SGD
            ? arena_printf(e->A, "sgd(lr=%g, momentum=%g, weight_decay=%g, nesterov=%s)", o->lr,
                           o->momentum, o->weight_decay, o->nesterov ? "true" : "false")
            : arena_printf(e->A, "%s(lr=%g, beta1=%g, beta2=%g, eps=%g, weight_decay=%g)",
                           o->kind == OPT_ADAM ? "adam" : "adamw", o->lr, o->beta1, o->beta2,
                           o->eps, o->weight_decay));
    emit_signature(e, &b, SIG_TRAIN);
    emit_checks(e, &b, "train_step", true);
    if (e->nwpack) out(&b, "  m->wpack_ok = 0; /* the weights change */\n");
    e->off = "toff";
    emit_body(e, &b, tp, "the train step");
    out(&b, "\n  /* the loss; a non-finite one leaves the weights untouched */\n  *loss = %s[0];\n",
        e->var[g->loss]);
    out(&b,
        "  if (!isfinite(*loss))\n    return mlcrt_seterr(m->err, MLCRT_ENUMERIC, \"%s_train_step: "
        "the loss is %%g; weights not updated\", (double)*loss);\n",
        M);
    for (int u = 0; u < g->ntrain_updates; u++) { /* batch_norm in train mode (trainmode.c) */
      const Node *sn = &g->nodes[g->train_updates[u]];
      const Type *xt = &g->nodes[sn->in[0]].ty;
      if (!u)
        out(&b, "  /* batch_norm running statistics, as torch.nn.BatchNorm updates them */\n");
      out(&b,
          "  mlcrt_batch_norm_update_f32(%s, %s, %s, %.17g, (float *)%s, (float *)%s); /* into the "
          "weights region */\n",
          e->var[g->train_updates[u]], dimc(e, xt->dim[1]),
          dimc(e, dim_mul(xt->dim[0], dims_prod(xt, 2, xt->rank))), sn->fa[1], e->var[sn->in[1]],
          e->var[sn->in[2]]);
    }
    out(&b, "  int64_t step = ++*(int64_t *)(m->weights + %zu);\n", e->step_off);
    if (o->kind == OPT_SGD)
      out(&b, "  (void)step;\n");
    else {
      out(&b, "  /* bias corrections, as torch.optim.%s computes them */\n",
          o->kind == OPT_ADAM ? "Adam" : "AdamW");
      out(&b, "  const float step_size = (float)(%.17g / (1.0 - pow(%.17g, (double)step)));\n",
          o->lr, o->beta1);
      out(&b, "  const float bc2_sqrt = (float)sqrt(1.0 - pow(%.17g, (double)step));\n", o->beta2);
    }
    out(&b, "\n  /* optimizer updates */\n");
    for (int t = 0; t < g->ntensors; t++)
      if (g->grads[t] >= 0) emit_update(e, &b, t);
    out(&b, "  return MLCRT_OK;\n}\n\n");
    /* evaluate */
    out(&b, "/* The loss and the outputs without training (evaluation). */\n");
    emit_signature(e, &b, SIG_EVAL);
    emit_checks(e, &b, "evaluate", true);
    e->off = "eoff";
    emit_body(e, &b, e->eval, "evaluate");
    out(&b, "\n  *loss = %s[0];\n", e->var[g->eval_loss]); /* batch_norm and dropout in eval mode */
    for (int i = 0; i < g->noutputs; i++) {
      int id = g->outputs[i].node;
      out(&b, "  if (%s) memcpy(%s, %s, (size_t)%s * sizeof(%s));\n", outname(e, i), outname(e, i),
          e->var[id], dimc(e, type_numel(&g->nodes[id].ty)), ctype(g->nodes[id].ty.dt));
    }
    out(&b, "  return MLCRT_OK;\n}\n\n");
    out(&b,
        "int %s_save_checkpoint(const %s *m, const char *path) {\n  if (!m || !path) return "
        "MLCRT_EINVAL;\n  return mlcrt_save_safetensors(path, %s_checkpoint, NCKPT, m->weights, "
        "(char *)m->err);\n}\n\n",
        M, M, M);
    out(&b,
        "int %s_load_checkpoint(%s *m, const char *path) {\n  if (!m) return MLCRT_EINVAL;\n  if "
        "(!path) return mlcrt_seterr(m->err, MLCRT_EINVAL, \"%s_load_checkpoint: NULL path\");\n%s "
        " "
        "return mlcrt_load_safetensors(path, %s_checkpoint, NCKPT, m->weights, m->err);\n}\n\n",
        M, M, M, stale, M);
    out(&b,
        "int64_t %s_step(const %s *m) { return m ? *(const int64_t *)(m->weights + %zu) : 0; }\n",
        M, M, e->step_off);
  }
  e->off = "off";
  e->p = p;
  /* emit the float -> integer helper only where a cast needs it (clang warns
   * about unused static functions) */
  char *mark = strstr(b.s, "@MLC_F2I@");
  const char *f2i =
      strstr(mark + 9, "mlc_f2i(") || strstr(kern.s, "mlc_f2i(")
          ? "/* float -> integer as C casts do, but defined for NaN and out-of-range values */\n"
            "static inline int64_t mlc_f2i(float v) {\n  if (v != v) return 0;\n"
            "  if (v >= 9.2233720e18f) return INT64_MAX;\n  if (v <= -9.2233720e18f) return "
            "INT64_MIN;\n"
            "  return (int64_t)v;\n}\n\n"
          : "";
  *mark = 0;
  char *kmark = strstr(mark + 9, "@MLC_KERNELS@");
  *kmark = 0;
  const char *kh =
      kern.len
          ? "/* ---- elementwise kernels: each computes rows r0..r1, columns c0..c1 of its\n"
            " * output viewed as a matrix (mlcrt_tile_fn), on the calling thread or a\n"
            " * team member (mlcrt_tiles), or on a GEMM's finished blocks (mlcrt_epilogue). */\n\n"
          : "";
  e->kern = NULL;
  return arena_printf(e->A, "%s%s%s%s%s%s", b.s, f2i, mark + 9, kh, kern.s, kmark + 13);
}

/* ---- the `mlc run` harness ---------------------------------------------------- */
char *emit_harness(E *e, const char *header_name) {
  Graph *g = e->g;
  Buf b = {.A = e->A};
  const char *M = e->M;
  out(&b, "/* mlc run harness for model %s — generated, do not edit.\n", M);
  out(&b, " * usage: run [--weights W.safetensors | --seed N] --input NAME=FILE.npy ... [--out "
          "DIR] [--repeat N] */\n");
  out(&b,
      "#include \"%s\"\n#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n#include "
      "<time.h>\n\n",
      header_name);
  out(&b, "static double now_us(void) {\n  struct timespec ts;\n  timespec_get(&ts, TIME_UTC);\n  "
          "return ts.tv_sec * 1e6 + ts.tv_nsec * 1e-3;\n}\n\n");
  out(&b, "static int cmp_double(const void *a, const void *b) {\n  double x = *(const double *)a, "
          "y = *(const double *)b;\n  return x < y ? -1 : x > y;\n}\n\n");
  out(&b, "/* Prints a runtime message \"PATH: text\" as \"PATH: error: text\". */\n");
  out(&b, "static void report(const char *path, const char *err) {\n  size_t n = path ? "
          "strlen(path) : 0;\n");
  out(&b, "  if (n && !strncmp(err, path, n) && !strncmp(err + n, \": \", 2))\n    fprintf(stderr, "
          "\"%%s: error: %%s\\n\", path, err + n + 2);\n");
  out(&b, "  else if (path)\n    fprintf(stderr, \"%%s: error: %%s\\n\", path, err);\n  else\n    "
          "fprintf(stderr, \"mlc run: error: %%s\\n\", err);\n}\n\n");
  out(&b, "static int usage(const char *msg) {\n  fprintf(stderr, \"mlc run: error: %%s\\n\", "
          "msg);\n  return 2;\n}\n\n");
  out(&b, "int main(int argc, char **argv) {\n  const char *out_dir = \".\", *weights = NULL;\n  "
          "unsigned long long seed = 0;\n  long repeat = 0;\n");
  out(&b,
      "  const char *paths[%d] = {0};\n  mlcrt_array in[%d];\n  char err[MLCRT_ERRLEN], "
      "msg[1024];\n",
      g->ninputs ? g->ninputs : 1, g->ninputs ? g->ninputs : 1);
  out(&b, "  mlcrt_array outs[%d];\n", g->noutputs ? g->noutputs : 1);
  out(&b, "  memset(in, 0, sizeof in);\n  memset(outs, 0, sizeof outs);\n");
  out(&b, "  for (int i = 1; i < argc; i++) {\n");
  out(&b, "    if (!strcmp(argv[i], \"--out\") && i + 1 < argc) out_dir = argv[++i];\n");
  out(&b, "    else if (!strcmp(argv[i], \"--weights\") && i + 1 < argc) weights = argv[++i];\n");
  out(&b, "    else if (!strcmp(argv[i], \"--seed\") && i + 1 < argc) seed = strtoull(argv[++i], "
          "NULL, 10);\n");
  out(&b, "    else if (!strcmp(argv[i], \"--repeat\") && i + 1 < argc) repeat = strtol(argv[++i], "
          "NULL, 10);\n");
  out(&b, "    else if (!strcmp(argv[i], \"--input\") && i + 1 < argc) {\n      const char *a = "
          "argv[++i], *eq = strchr(a, '=');\n      if (!eq) return usage(\"--input needs "
          "NAME=FILE.npy\");\n      int k = -1;\n");
  for (int i = 0; i < g->ninputs; i++)
    out(&b, "      if ((size_t)(eq - a) == %zu && !strncmp(a, \"%s\", %zu)) k = %d;\n",
        strlen(g->nodes[g->inputs[i]].name), g->nodes[g->inputs[i]].name,
        strlen(g->nodes[g->inputs[i]].name), i);
  out(&b,
      "      if (k < 0) {\n        snprintf(msg, sizeof msg, \"model %s has no input named "
      "'%%.*s'\", (int)(eq - a), a);\n        return usage(msg);\n      }\n      paths[k] = eq + "
      "1;\n",
      M);
  out(&b, "    } else {\n      snprintf(msg, sizeof msg, \"unknown argument '%%s'\", argv[i]);\n   "
          "   return usage(msg);\n    }\n  }\n");
  /* read and check inputs, bind dims */
  out(&b,
      "  int64_t dim[%d] = {0}; /* symbolic dims, 1-based */\n  int bound[%d] = {0};\n  (void)dim, "
      "(void)bound;\n  int status = 1;\n",
      g->nsym + 1, g->nsym + 1);
  for (int i = 0; i < g->ninputs; i++) {
    Node *n = &g->nodes[g->inputs[i]];
    const char *ts = type_str(e->A, g, &n->ty);
    out(&b, "  /* input %s: %s */\n", n->name, ts);
    out(&b,
        "  if (!paths[%d]) {\n    status = usage(\"missing --input %s=FILE.npy (input %s: "
        "%s)\");\n    goto done;\n  }\n",
        i, n->name, n->name, ts);
    out(&b,
        "  if (mlcrt_npy_read(paths[%d], &in[%d], err)) {\n    report(paths[%d], err);\n    goto "
        "done;\n  }\n",
        i, i, i);
    out(&b,
        "  if (in[%d].dtype != %s || in[%d].rank != %d) {\n    fprintf(stderr, \"%%s: error: input "
        "'%s' must be %s, the file holds %%s with %%d dims\\n\", paths[%d], "
        "mlcrt_dtype_name(in[%d].dtype), in[%d].rank);\n    goto done;\n  }\n",
        i, mlcrt_dtype_c(n->ty.dt), i, n->ty.rank, n->name, ts, i, i, i);
    for (int k = 0; k < n->ty.rank; k++) {
      int sid;
      int64_t c;
      Dim d = n->ty.dim[k];
      if (dim_is_sym(d, &sid)) {
        out(&b, "  if (!bound[%d]) dim[%d] = in[%d].shape[%d], bound[%d] = 1;\n", sid, sid, i, k,
            sid);
        out(&b,
            "  if (in[%d].shape[%d] != dim[%d] || dim[%d] < 0) {\n    fprintf(stderr, \"%%s: "
            "error: dim %d of input '%s' is %%lld, but %s = %%lld (%s)\\n\", paths[%d], (long "
            "long)in[%d].shape[%d], (long long)dim[%d]);\n    goto done;\n  }\n",
            i, k, sid, sid, k, n->name, g->sym[sid], ts, i, i, k, sid);
      } else {
        const char **vn = arena_alloc(e->A, sizeof(char *) * (MAX_SYMS + 1));
        for (int s = 1; s <= g->nsym; s++) vn[s] = arena_printf(e->A, "dim[%d]", s);
        const char *want =
            dim_is_const(d, &c) ? arena_printf(e->A, "%lld", (long long)c) : dim_str(e->A, d, vn);
        out(&b,
            "  if (in[%d].shape[%d] != %s) {\n    fprintf(stderr, \"%%s: error: dim %d of input "
            "'%s' is %%lld, expected %%lld (%s)\\n\", paths[%d], (long long)in[%d].shape[%d], "
            "(long long)(%s));\n    goto done;\n  }\n",
            i, k, want, k, n->name, ts, i, i, k, want);
      }
    }
  }
  /* outputs */
  const char **vn = arena_alloc(e->A, sizeof(char *) * (MAX_SYMS + 1));
  for (int s = 1; s <= g->nsym; s++) vn[s] = arena_printf(e->A, "dim[%d]", s);
  for (int i = 0; i < g->noutputs; i++) {
    Node *n = &g->nodes[g->outputs[i].node];
    out(&b, "  outs[%d].dtype = %s;\n  outs[%d].rank = %d;\n", i, mlcrt_dtype_c(n->ty.dt), i,
        n->ty.rank);
    for (int k = 0; k < n->ty.rank; k++)
      out(&b, "  outs[%d].shape[%d] = %s;\n", i, k, dim_str(e->A, n->ty.dim[k], vn));
    out(&b,
        "  outs[%d].nbytes = (size_t)(%s) * %zu;\n  outs[%d].data = malloc(outs[%d].nbytes ? "
        "outs[%d].nbytes : 1);\n",
        i, dim_str(e->A, type_numel(&n->ty), vn), dtype_size(n->ty.dt), i, i, i);
    out(&b,
        "  if (!outs[%d].data) {\n    fprintf(stderr, \"mlc run: error: out of memory\\n\");\n    "
        "goto done;\n  }\n",
        i);
  }
  out(&b, "  %s *m = %s_create(", M, M);
  for (int s = 1; s <= g->nsym; s++) out(&b, "dim[%d] > 0 ? dim[%d] : 1, ", s, s);
  out(&b, "NULL);\n  if (!m) {\n    fprintf(stderr, \"mlc run: error: %%s\\n\", "
          "mlcrt_last_error());\n    goto done;\n  }\n");
  if (e->embed)
    out(&b,
        "  (void)seed; /* the weights are embedded */\n  int rc = weights ? %s_load(m, weights) : "
        "0;\n",
        M);
  else
    out(&b, "  int rc = weights ? %s_load(m, weights) : %s_init(m, seed);\n", M, M);
  out(&b, "  if (!rc) rc = %s_run(m", M);
  for (int s = 1; s <= g->nsym; s++) out(&b, ", dim[%d]", s);
  for (int i = 0; i < g->ninputs; i++) out(&b, ", in[%d].data", i);
  for (int i = 0; i < g->noutputs; i++) out(&b, ", outs[%d].data", i);
  out(&b,
      ");\n  if (rc) {\n    report(rc == MLCRT_EINVAL || rc == MLCRT_ESHAPE ? NULL : weights, "
      "%s_last_error(m));\n    %s_destroy(m);\n    goto done;\n  }\n",
      M, M);
  /* --repeat N: time N more runs (the first one warmed the caches) */
  out(&b, "  double *times = repeat > 0 ? malloc((size_t)repeat * sizeof *times) : NULL;\n");
  out(&b,
      "  for (long r = 0; times && r < repeat && !rc; r++) {\n    double t0 = now_us();\n    rc = "
      "%s_run(m",
      M);
  for (int s = 1; s <= g->nsym; s++) out(&b, ", dim[%d]", s);
  for (int i = 0; i < g->ninputs; i++) out(&b, ", in[%d].data", i);
  for (int i = 0; i < g->noutputs; i++) out(&b, ", outs[%d].data", i);
  out(&b, ");\n    times[r] = now_us() - t0;\n  }\n");
  out(&b, "  if (times && !rc) {\n    qsort(times, (size_t)repeat, sizeof *times, cmp_double);\n"
          "    fprintf(stderr, \"mlc run: %%ld runs: median %%.1f us, min %%.1f us\\n\", repeat, "
          "times[repeat / 2], times[0]);\n  }\n");
  out(&b, "  free(times);\n  %s_destroy(m);\n", M);
  for (int i = 0; i < g->noutputs; i++) {
    out(&b, "  snprintf(msg, sizeof msg, \"%%s/%s.npy\", out_dir);\n", g->outputs[i].name);
    out(&b,
        "  if (mlcrt_npy_write(msg, &outs[%d], err)) {\n    report(msg, err);\n    goto done;\n  "
        "}\n",
        i);
  }
  out(&b, "  status = 0;\ndone:\n");
  out(&b, "  for (int i = 0; i < %d; i++) mlcrt_array_free(&in[i]);\n", g->ninputs);
  if (g->noutputs) out(&b, "  for (int i = 0; i < %d; i++) free(outs[i].data);\n", g->noutputs);
  out(&b, "  return status;\n}\n");
  return b.s;
}

/* ---- the `mlc train` harness --------------------------------------------------- */
/* The inputs as mlcrt_train_main wants them (mlcc.h). */
int emitc_train_layout(const Graph *g, Arena *A, mlcrt_train_input *ins, int *batch_sym,
                       int64_t *classes_out, int *label_out, const char **why) {
  int n = g->ninputs + g->ntrain_inputs;
  if (n == 0 || n > MLCRT_TRAIN_MAX_INPUTS) {
    *why = "mlc train needs 1 to 16 inputs";
    return -1;
  }
  int batch = -1;
  for (int i = 0; i < n; i++) {
    const Node *in = &g->nodes[i < g->ninputs ? g->inputs[i] : g->train_inputs[i - g->ninputs]];
    int sid;
    if (in->ty.rank == 0 || !dim_is_sym(in->ty.dim[0], &sid) || (batch >= 0 && sid != batch)) {
      *why = arena_printf(
          A, "mlc train needs every input to start with the same symbolic batch dim; '%s' is %s",
          in->name, type_str(A, g, &in->ty));
      return -1;
    }
    batch = sid;
    ins[i] = (mlcrt_train_input){in->name, (mlcrt_dtype)in->ty.dt, in->ty.rank, {0}};
    for (int k = 0; k < in->ty.rank; k++) {
      int64_t c;
      if (dim_is_const(in->ty.dim[k], &c))
        ins[i].dims[k] = c;
      else if (dim_is_sym(in->ty.dim[k], &sid))
        ins[i].dims[k] = -sid; /* -(s+1) for the 0-based symbol s */
      else {
        *why = arena_printf(A, "mlc train: input '%s' has a compound dim %s; use a plain symbol",
                            in->name, dim_str(A, in->ty.dim[k], g->sym));
        return -1;
      }
    }
  }
  /* classification accuracy: first output [B, C] f32 and an integer label input [B] */
  int64_t classes = 0;
  int label = -1;
  if (g->noutputs) {
    const Type *ot = &g->nodes[g->outputs[0].node].ty;
    int sid;
    if (ot->dt == DT_F32 && ot->rank == 2 && dim_is_sym(ot->dim[0], &sid) && sid == batch &&
        dim_is_const(ot->dim[1], &classes))
      for (int i = 0; i < g->ntrain_inputs && label < 0; i++) {
        const Node *in = &g->nodes[g->train_inputs[i]];
        if (in->ty.rank == 1 && (in->ty.dt == DT_U8 || in->ty.dt == DT_I32 || in->ty.dt == DT_I64))
          label = g->ninputs + i;
      }
    if (label < 0) classes = 0;
  }
  *batch_sym = batch - 1;
  *classes_out = classes;
  *label_out = label;
  return n;
}

/* A main() that describes the model to mlcrt_train_main (runtime/trainloop.c).
 * Returns NULL (and sets *why) when the model's inputs do not fit batching:
 * every input must start with the same symbolic batch dim. */
char *emit_train_harness(E *e, const char *header_name, const char **why) {
  Graph *g = e->g;
  const char *M = e->M;
  mlcrt_train_input ins[MLCRT_TRAIN_MAX_INPUTS];
  int batch, label;
  int64_t classes;
  const int n = emitc_train_layout(g, e->A, ins, &batch, &classes, &label, why);
  if (n < 0) return NULL;
  Buf b = {.A = e->A};
  out(&b,
      "/* mlc train harness for model %s — generated, do not edit. */\n#include \"%s\"\n#include "
      "<stdlib.h>\n\n",
      M, header_name);
  out(&b, "static const mlcrt_train_input inputs[%d] = {\n", n);
  for (int i = 0; i < n; i++) {
    out(&b, "    {\"%s\", %s, %d, {", ins[i].name, mlcrt_dtype_c((DType)ins[i].dtype), ins[i].rank);
    for (int k = 0; k < ins[i].rank; k++)
      out(&b, "%s%lld", k ? ", " : "", (long long)ins[i].dims[k]);
    out(&b, "}},\n");
  }
  out(&b, "};\n\n");
  const char *dims = "", *args = "";
  for (int s2 = 1; s2 <= g->nsym; s2++) {
    dims = arena_printf(e->A, "%s%sd[%d]", dims, s2 > 1 ? ", " : "", s2 - 1);
  }
  for (int i = 0; i < n; i++) args = arena_printf(e->A, "%s, in[%d]", args, i);
  out(&b, "static void *create(const int64_t *d) { return %s_create(%s%sNULL); }\n", M, dims,
      g->nsym ? ", " : "");
  out(&b, "static void destroy(void *m) { %s_destroy(m); }\n", M);
  out(&b, "static int init(void *m, uint64_t seed) { return %s_init(m, seed); }\n", M);
  out(&b, "static int set_seed(void *m, uint64_t seed) { return %s_set_seed(m, seed); }\n", M);
  out(&b, "static int load(void *m, const char *p) { return %s_load(m, p); }\n", M);
  out(&b, "static int save(void *m, const char *p) { return %s_save(m, p); }\n", M);
  out(&b,
      "static int load_checkpoint(void *m, const char *p) { return %s_load_checkpoint(m, p); }\n",
      M);
  out(&b,
      "static int save_checkpoint(void *m, const char *p) { return %s_save_checkpoint(m, p); }\n",
      M);
  out(&b, "static int64_t step(void *m) { return %s_step(m); }\n", M);
  out(&b, "static const char *last_error(void *m) { return %s_last_error(m); }\n", M);
  out(&b,
      "static int train_step(void *m, const int64_t *d, void *const *in, float *loss) {\n  "
      "(void)d;\n  return %s_train_step(m, %s%s, loss);\n}\n",
      M, dims, args);
  out(&b,
      "static int evaluate(void *m, const int64_t *d, void *const *in, float *loss, void *out0) "
      "{\n  (void)d, (void)out0;\n  return %s_evaluate(m, %s%s, loss",
      M, dims, args);
  for (int i = 0; i < g->noutputs; i++) out(&b, ", %s", i == 0 && classes ? "out0" : "NULL");
  out(&b, ");\n}\n\n");
  out(&b,
      "int main(int argc, char **argv) {\n  static const mlcrt_trainer t = {\"%s\", %d, inputs, "
      "%d, %d, %lld, %d, create, destroy, init, load, save,\n"
      "                                   load_checkpoint, save_checkpoint, step, train_step, "
      "evaluate, last_error, set_seed};\n"
      "  return mlcrt_train_main(&t, argc, argv);\n}\n",
      M, n, g->nsym, batch, (long long)classes, label < 0 ? 0 : label);
  return b.s;
}

/* The weights region: params and buffers (planned), then for a train step
 * the optimizer slots of each trained param and the step counter. */
void layout_optimizer(E *e) {
  Graph *g = e->g;
  size_t off = e->p->weight_bytes;
  e->weight_bytes = off;
  e->nckpt = g->ntensors + g->nties;
  if (!e->train) return;
  e->nslots = g->opt.kind == OPT_SGD ? (g->opt.momentum > 0 ? 1 : 0) : 2;
  e->slot_off = arena_alloc(e->A, sizeof(size_t) * (size_t)(g->ntensors + 1));
  e->slot2_gap = arena_alloc(e->A, sizeof(size_t) * (size_t)(g->ntensors + 1));
  for (int t = 0; t < g->ntensors; t++) {
    if (g->grads[t] < 0) continue;
    bool k;
    size_t bytes =
        ((size_t)type_numel_const(&g->nodes[g->tensors[t]].ty, &k) * 4 + 63) & ~(size_t)63;
    e->slot_off[t] = off;
    e->slot2_gap[t] = bytes;
    off += bytes * (size_t)e->nslots;
    e->nckpt += e->nslots;
  }
  e->step_off = off;
  e->nckpt++;
  e->weight_bytes = off + 64;
}

void emitc_setup(E *e, Graph *g, const Plan *p, const Plan *train, const Plan *eval,
                 const char *embed) {
  *e = (E){.g = g,
           .p = p,
           .A = g->A,
           .M = g->name,
           .train = train,
           .eval = train ? eval : NULL,
           .off = "off",
           .embed = embed};
  layout_optimizer(e);
  e->var = arena_alloc(g->A, sizeof(char *) * (size_t)(g->n + 1));
  for (int i = 0; i < g->n; i++) {
    Node *n = &g->nodes[i];
    if (n->op == OP_INPUT)
      e->var[i] = cident(g->A, "", n->name);
    else if (n->op == OP_PARAM || n->op == OP_BUFFER)
      e->var[i] = cident(g->A, "p_", n->name);
    else
      e->var[i] = n->hint ? cident(g->A, arena_printf(g->A, "t%d_", i), n->hint)
                          : arena_printf(g->A, "t%d", i);
  }
  /* params whose sanitised names collide get their node id appended */
  for (int i = 0; i < g->n; i++)
    for (int j = 0; j < i; j++)
      if (strcmp(e->var[i], e->var[j]) == 0) e->var[i] = arena_printf(g->A, "%s_%d", e->var[i], i);
  name_outputs(e);
}

EmitC emitc_model(Graph *g, const Plan *p, const Plan *train, const Plan *eval,
                  const char *header_name) {
  return emitc_model_embed(g, p, train, eval, header_name, NULL);
}

EmitC emitc_model_embed(Graph *g, const Plan *p, const Plan *train, const Plan *eval,
                        const char *header_name, const char *embed) {
  E e;
  emitc_setup(&e, g, p, train, eval, embed);
  EmitC r;
  r.h = emit_header(&e);
  r.c = emit_source(&e, header_name);
  r.harness = emit_harness(&e, header_name);
  r.train_harness = NULL;
  r.train_why = "the model has no train step";
  if (train) r.train_harness = emit_train_harness(&e, header_name, &r.train_why);
  return r;
}

/* ---- the weights translation unit (--embed-weights) ------------------------------ */
/* One const, 64-byte aligned array holding the weights region image, written
 * as string literals (a compiler reads those about 1 byte per byte; a list
 * of integers costs it a tree node per element).  Printable characters stand
 * for themselves; other bytes are octal escapes, three digits only where an
 * octal digit follows.  '?' is escaped too (trigraphs under -std=c11).
 * Streams to f: a 100 MB region becomes ~250 MB of source without holding it. */
int emitc_weights(FILE *f, const Graph *g, const char *weights_path, const unsigned char *bytes,
                  size_t n) {
  fprintf(f, "/* %s_weights — generated by mlc from %s.  Do not edit.\n", g->name, g->source_path);
  fprintf(f, " * The params and buffers of model %s embedded from %s (--embed-weights):\n", g->name,
          weights_path);
  fprintf(f, " * %zu bytes laid out as the instance's weights region; %s_create copies them. */\n",
          n, g->name);
  fprintf(f, "_Alignas(64) const unsigned char %s_embedded_weights[%zu] =\n\"", g->name, n + 1);
  char line[4200];
  size_t len = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned c = bytes[i];
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '?')
      line[len++] = (char)c;
    else {
      bool digit_next = i + 1 < n && bytes[i + 1] >= '0' && bytes[i + 1] <= '7';
      line[len++] = '\\';
      if (digit_next || c >= 0100) line[len++] = (char)('0' + (c >> 6));
      if (digit_next || c >= 010) line[len++] = (char)('0' + ((c >> 3) & 7));
      line[len++] = (char)('0' + (c & 7));
    }
    if (len >= 4096 && i + 1 < n) { /* a new literal: a shorter one would not break an escape */
      line[len++] = '"';
      line[len++] = '\n';
      line[len++] = '"';
      if (fwrite(line, 1, len, f) != len) return -1;
      len = 0;
    }
  }
  line[len++] = '"';
  line[len++] = ';';
  line[len++] = '\n';
  if (fwrite(line, 1, len, f) != len) return -1;
  return ferror(f) ? -1 : 0;
}
