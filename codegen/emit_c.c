/* codegen/emit_c.c — the plain C backend: IR -> model.c, model.h, harness.
 *
 * This backend is the reference every optimised path is checked against, so
 * it favours clarity: one commented step per IR node, in source order, with
 * named pointers into the instance's weights region and planned arena.
 * Elementwise ops (with broadcasting and casts) become loops whose body is
 * the op table's C expression; GEMM, convolution, pooling and softmax call
 * libmlcrt.  Output is deterministic: the same graph gives the same bytes.
 */
#include "mlcc.h"
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- a growable string ------------------------------------------------------ */
typedef struct Buf {
  Arena *A;
  char *s;
  size_t len, cap;
} Buf;

__attribute__((format(printf, 2, 3))) static void out(Buf *b, const char *fmt, ...) {
  va_list ap;
  for (;;) {
    size_t room = b->cap - b->len;
    va_start(ap, fmt);
    int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? room : 0, fmt, ap);
    va_end(ap);
    if (b->s && (size_t)n < room) { b->len += (size_t)n; return; }
    size_t nc = b->cap ? b->cap * 2 : 4096;
    while (nc < b->len + (size_t)n + 1) nc *= 2;
    char *ns = arena_alloc(b->A, nc);
    if (b->s) memcpy(ns, b->s, b->len);
    b->s = ns;
    b->cap = nc;
  }
}

/* ---- names -------------------------------------------------------------------- */
typedef struct E {
  Graph *g;
  const Plan *p;
  Arena *A;
  const char **var;  /* C name of each node's value */
  const char **outnames; /* C parameter name of each output */
  const char *M;     /* model name */
} E;

static bool is_reserved(const char *s) {
  static const char *kw[] = {"auto", "break", "case", "char", "const", "continue", "default", "do",
      "double", "else", "enum", "extern", "float", "for", "goto", "if", "inline", "int", "long",
      "register", "restrict", "return", "short", "signed", "sizeof", "static", "struct", "switch",
      "typedef", "union", "unsigned", "void", "volatile", "while", "m", "o", "k", "acc", "best",
      "cp", "pp", "main", "argc", "argv", "i", "v", "as", "bs", "ys", NULL};
  for (int i = 0; kw[i]; i++)
    if (strcmp(s, kw[i]) == 0) return true;
  if ((s[0] == 'i' || s[0] == 'j') && isdigit((unsigned char)s[1]) && !s[2]) return true;
  /* names the C library may define: typedefs (*_t), macros (all capitals),
   * and the functions generated code calls */
  size_t len = strlen(s);
  if (len > 2 && strcmp(s + len - 2, "_t") == 0) return true;
  bool upper = true;
  for (const char *q = s; *q; q++) upper &= !islower((unsigned char)*q);
  if (upper && len > 1) return true;
  static const char *lib[] = {"expf", "logf", "sqrtf", "tanhf", "erff", "fabsf", "floorf", "ceilf",
      "roundf", "sinf", "cosf", "powf", "fmaxf", "fminf", "exp", "log", "sqrt", "tanh", "erf",
      "memcpy", "memset", "malloc", "calloc", "free", "aligned_alloc", "snprintf", "fprintf",
      "stderr", "printf", "strcmp", "errno", "isnan", "isinf", "abs", "offsetof", "assert", NULL};
  for (int i = 0; lib[i]; i++)
    if (strcmp(s, lib[i]) == 0) return true;
  return strncmp(s, "mlc", 3) == 0 || strncmp(s, "_", 1) == 0;
}

/* A C identifier for an MDL name: dots become underscores. */
static const char *cident(Arena *A, const char *prefix, const char *s) {
  size_t n = strlen(prefix) + strlen(s);
  char *c = arena_alloc(A, n + 2);
  snprintf(c, n + 1, "%s%s", prefix, s);
  for (char *q = c; *q; q++)
    if (!isalnum((unsigned char)*q) && *q != '_') *q = '_';
  if (is_reserved(c)) strcat(c, "_");
  return c;
}

static const char *dimc(E *e, Dim d) { return dim_str(e->A, d, e->g->sym); }

static const char *ctype(DType t) {
  static const char *names[DT_COUNT] = {"float", "uint16_t", "uint16_t", "int32_t", "int64_t", "uint8_t", "uint8_t"};
  return names[t];
}
static const char *mlcrt_dtype_c(DType t) {
  static const char *names[DT_COUNT] = {"MLCRT_F32", "MLCRT_F16", "MLCRT_BF16", "MLCRT_I32", "MLCRT_I64", "MLCRT_U8", "MLCRT_BOOL"};
  return names[t];
}
/* The type arithmetic happens in: f16/bf16 compute in float. */
static DType compute_dt(DType t) { return t == DT_F16 || t == DT_BF16 ? DT_F32 : t; }

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

static const char *literal(E *e, double v, DType ct) {
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
static void bcast_strides(const Type *t, const Type *o, Dim *st) {
  Dim s = dim_const(1);
  for (int k = o->rank - 1; k >= 0; k--) {
    int j = t->rank - o->rank + k;
    int64_t c;
    if (j < 0 || (dim_is_const(t->dim[j], &c) && c == 1 && !(dim_is_const(o->dim[k], &c) && c == 1)))
      st[k] = dim_const(0);
    else
      st[k] = s;
    if (j >= 0) s = dim_mul(s, t->dim[j]);
  }
}

static const char *index_expr(E *e, const Dim *st, int rank) {
  char buf[1024] = "";
  size_t len = 0;
  for (int k = 0; k < rank; k++) {
    int64_t c;
    if (dim_is_const(st[k], &c) && c == 0) continue;
    if (dim_is_const(st[k], &c) && c == 1)
      len += (size_t)snprintf(buf + len, sizeof buf - len, "%si%d", len ? " + " : "", k);
    else
      len += (size_t)snprintf(buf + len, sizeof buf - len, "%si%d*%s", len ? " + " : "", k, dimc(e, st[k]));
    if (len >= sizeof buf - 64) break;
  }
  return len ? arena_strdup(e->A, buf) : "0";
}

static bool same_shape(const Type *a, const Type *b) {
  if (a->rank != b->rank) return false;
  for (int i = 0; i < a->rank; i++)
    if (!dim_eq(a->dim[i], b->dim[i])) return false;
  return true;
}

static void indent(Buf *b, int n) { out(b, "%*s", 2 * n, ""); }

/* Elementwise node: y[...] = CEXPR(operands...) over the output shape. */
static void emit_elementwise(E *e, Buf *b, int id) {
  Node *n = &e->g->nodes[id];
  const Type *o = &n->ty;
  int flags = op_info[n->op].flags;
  DType ct = compute_dt(o->dt);
  if (flags & F_CMP) ct = compute_dt(infer_promote(&e->g->nodes[n->in[0]], &e->g->nodes[n->in[1]]));
  else if (flags & F_CAST) ct = compute_dt(o->dt);
  bool flat = true;
  for (int j = 0; j < n->nin; j++) {
    Node *x = &e->g->nodes[n->in[j]];
    if (e->p->storage[n->in[j]] != ST_NONE && !same_shape(&x->ty, o)) flat = false;
  }
  const char *ops[4];
  for (int j = 0; j < n->nin && j < 4; j++) {
    Node *x = &e->g->nodes[n->in[j]];
    if (e->p->storage[n->in[j]] == ST_NONE) { /* inlined scalar constant */
      ops[j] = literal(e, x->fa[0], ct);
      continue;
    }
    const char *idx;
    if (flat) idx = "i";
    else {
      Dim st[MAX_RANK];
      bcast_strides(&x->ty, o, st);
      idx = index_expr(e, st, o->rank);
    }
    ops[j] = convert(e, arena_printf(e->A, "%s[%s]", e->var[n->in[j]], idx), x->ty.dt, ct);
  }
  /* substitute $0.. into the op's C expression */
  const char *tpl = op_info[n->op].cexpr;
  char body[2048];
  size_t len = 0;
  for (const char *q = tpl; *q && len < sizeof body - 300; q++) {
    if (*q == '$' && q[1] >= '0' && q[1] <= '3') {
      len += (size_t)snprintf(body + len, sizeof body - len, "%s", ops[q[1] - '0']);
      q++;
    } else if (ct == DT_F32 || !(q[0] == 'f' && q[1] == '(')) {
      body[len++] = *q;
    } else {
      body[len++] = *q;
    }
  }
  body[len] = 0;
  /* integer relu/abs/neg templates use float literals nowhere; float ops on
   * integers never happen (F_FLOATOUT makes ct float) */
  const char *val = store(e, body, (flags & F_CMP) ? DT_BOOL : ct, o->dt);
  if (flags & F_CMP) val = body;
  const char *y = e->var[id];
  if (flat) {
    out(b, "  for (int64_t i = 0; i < %s; i++)\n    %s[i] = %s;\n", dimc(e, type_numel(o)), y, val);
    return;
  }
  out(b, "  {\n    int64_t o = 0;\n");
  for (int k = 0; k < o->rank; k++) {
    indent(b, 2 + k);
    out(b, "for (int64_t i%d = 0; i%d < %s; i%d++)\n", k, k, dimc(e, o->dim[k]), k);
  }
  indent(b, 2 + o->rank);
  out(b, "%s[o++] = %s;\n  }\n", y, val);
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
  const char *acc_t = fl ? (n->op == OP_SUM || n->op == OP_MEAN ? "double" : "float") : "int64_t";
  char idx[1024] = "";
  size_t len = 0;
  for (int k = 0; k < x->rank && len < sizeof idx - 64; k++)
    len += (size_t)snprintf(idx + len, sizeof idx - len, "%si%d*%s", len ? " + " : "", k, dimc(e, xs[k]));
  const char *v = convert(e, arena_printf(e->A, "%s[%s]", e->var[n->in[0]], len ? idx : "0"), x->dt, ct);
  Dim count = dim_const(1);
  for (int k = 0; k < x->rank; k++)
    if (mask & (1 << k)) count = dim_mul(count, x->dim[k]);
  const char *init, *step, *fin;
  bool arg = n->op == OP_ARGMAX || n->op == OP_ARGMIN;
  const char *cmp = n->op == OP_MAX || n->op == OP_ARGMAX ? ">" : "<";
  switch (n->op) {
  case OP_SUM: init = "0"; step = "acc += v;"; fin = "acc"; break;
  case OP_MEAN: init = "0"; step = "acc += v;"; fin = arena_printf(e->A, "acc / (double)%s", dimc(e, count)); break;
  default:
    if (fl) {
      init = n->op == OP_MAX || n->op == OP_ARGMAX ? "-INFINITY" : "INFINITY";
      /* NaN wins, as in PyTorch; ties keep the first index */
      step = arg ? arena_printf(e->A, "if (k == 0 || v %s acc || (v != v && acc == acc)) { acc = v; best = k; } k++;", cmp)
                 : arena_printf(e->A, "if (v %s acc || v != v) acc = v;", cmp);
    } else {
      init = n->op == OP_MAX || n->op == OP_ARGMAX ? "INT64_MIN" : "INT64_MAX";
      step = arg ? arena_printf(e->A, "if (k == 0 || v %s acc) { acc = v; best = k; } k++;", cmp)
                 : arena_printf(e->A, "if (v %s acc) acc = v;", cmp);
    }
    fin = arg ? "best" : "acc";
  }
  /* { o = 0; for kept dims { acc = init; for reduced dims { v = x[..]; step } y[o++] = fin; } } */
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
  for (int q = nkept; q < no; q++, depth++) {
    int k = order[q];
    indent(b, depth);
    out(b, "for (int64_t i%d = 0; i%d < %s; i%d++)\n", k, k, dimc(e, x->dim[k]), k);
  }
  indent(b, depth);
  out(b, "{\n");
  indent(b, depth + 1);
  out(b, "%s v = %s;\n", fl ? "float" : "int64_t", v);
  indent(b, depth + 1);
  out(b, "%s\n", step);
  indent(b, depth);
  out(b, "}\n");
  const char *finv = arg ? fin : store(e, arena_printf(e->A, "(%s)(%s)", fl ? "float" : "int64_t", fin), fl ? DT_F32 : DT_I64, n->ty.dt);
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

static void conv_params(E *e, Buf *b, const Node *n, const char *pre) {
  const Type *x = &e->g->nodes[n->in[0]].ty, *w = &e->g->nodes[n->in[1]].ty;
  out(b, "%s{.N = %s, .C = %s, .H = %s, .W = %s, .OC = %s, .KH = %s, .KW = %s, .OH = %s, .OW = %s,\n%s .sh = %lld, .sw = %lld, .ph = %lld, .pw = %lld, .dh = %lld, .dw = %lld, .groups = %lld}",
      "", dimc(e, x->dim[0]), dimc(e, x->dim[1]), dimc(e, x->dim[2]), dimc(e, x->dim[3]),
      dimc(e, w->dim[0]), dimc(e, w->dim[2]), dimc(e, w->dim[3]), dimc(e, n->ty.dim[2]), dimc(e, n->ty.dim[3]), pre,
      (long long)n->ia[0], (long long)n->ia[1], (long long)n->ia[2], (long long)n->ia[3], (long long)n->ia[4],
      (long long)n->ia[5], (long long)n->ia[6]);
}

static void emit_node(E *e, Buf *b, int id) {
  Node *n = &e->g->nodes[id];
  const char *y = e->var[id];
  const char *x = n->nin ? e->var[n->in[0]] : NULL;
  const Type *xt = n->nin ? &e->g->nodes[n->in[0]].ty : NULL;
  int flags = op_info[n->op].flags;
  if (n->op == OP_CONST) {
    out(b, "  %s[0] = %s;\n", y, store(e, literal(e, n->fa[0], compute_dt(n->ty.dt)), compute_dt(n->ty.dt), n->ty.dt));
    return;
  }
  if (flags & F_ELEM) { emit_elementwise(e, b, id); return; }
  if (flags & F_REDUCE) { emit_reduce(e, b, id); return; }
  switch (n->op) {
  case OP_RESHAPE:
  case OP_FLATTEN: return; /* a view: declared as an alias */
  case OP_TRANSPOSE:
  case OP_PERMUTE: emit_permute(e, b, id); return;
  case OP_MATMUL: {
    const Type *wt = &e->g->nodes[n->in[1]].ty;
    out(b, "  {\n");
    emit_shape_array(e, b, "as", xt);
    emit_shape_array(e, b, "bs", wt);
    emit_shape_array(e, b, "ys", &n->ty);
    out(b, "    mlcrt_matmul_f32(%s, %d, as, %s, %d, bs, %s, %d, ys);\n  }\n", x, xt->rank,
        e->var[n->in[1]], wt->rank, y, n->ty.rank);
    return;
  }
  case OP_LINEAR: {
    const Type *wt = &e->g->nodes[n->in[1]].ty;
    Dim K = xt->dim[xt->rank - 1], M;
    dim_div(type_numel(xt), K, &M);
    if (!dim_div(type_numel(xt), K, &M)) { /* K symbolic in a compound shape */
      Type rows = *xt;
      rows.rank--;
      M = type_numel(&rows);
    }
    out(b, "  mlcrt_linear_f32(%s, %s, %s, %s, %s, %s, %s);\n", x, dimc(e, M), dimc(e, K),
        e->var[n->in[1]], dimc(e, wt->dim[0]), n->nin == 3 ? e->var[n->in[2]] : "NULL", y);
    return;
  }
  case OP_CONV2D: {
    out(b, "  {\n    const mlcrt_conv2d_params cp = ");
    conv_params(e, b, n, "       ");
    out(b, ";\n    mlcrt_conv2d_f32(&cp, %s, %s, %s, %s, m->arena + m->off[%d]);\n  }\n", x,
        e->var[n->in[1]], n->nin == 3 ? e->var[n->in[2]] : "NULL", y, e->p->scratch[id]);
    return;
  }
  case OP_MAX_POOL2D:
  case OP_AVG_POOL2D:
    out(b, "  {\n    const mlcrt_pool2d_params pp = {.N = %s, .C = %s, .H = %s, .W = %s, .OH = %s, .OW = %s,\n"
           "        .kh = %lld, .kw = %lld, .sh = %lld, .sw = %lld, .ph = %lld, .pw = %lld, .count_include_pad = %d};\n"
           "    mlcrt_%s_f32(&pp, %s, %s);\n  }\n",
        dimc(e, xt->dim[0]), dimc(e, xt->dim[1]), dimc(e, xt->dim[2]), dimc(e, xt->dim[3]),
        dimc(e, n->ty.dim[2]), dimc(e, n->ty.dim[3]), (long long)n->ia[0], (long long)n->ia[1],
        (long long)n->ia[2], (long long)n->ia[3], (long long)n->ia[4], (long long)n->ia[5], (int)n->ia[9],
        n->op == OP_MAX_POOL2D ? "max_pool2d" : "avg_pool2d", x, y);
    return;
  case OP_ADAPTIVE_AVG_POOL2D:
    out(b, "  mlcrt_adaptive_avg_pool2d_f32(%s, %s, %s, %s, %lld, %lld, %s, %s);\n", dimc(e, xt->dim[0]),
        dimc(e, xt->dim[1]), dimc(e, xt->dim[2]), dimc(e, xt->dim[3]), (long long)n->ia[0],
        (long long)n->ia[1], x, y);
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
  default:
    out(b, "#error \"mlc internal error: no C emitter for operator %s\"\n", op_info[n->op].name);
  }
}

static const char *describe(E *e, const Node *n) {
  if (n->op == OP_CONST) return arena_printf(e->A, "const %.9g", n->fa[0]);
  return op_info[n->op].name;
}

/* ---- the files --------------------------------------------------------------- */
/* The C parameter name of output i: its MDL name, unless an input has it. */
static bool name_taken(E *e, const char *n, int upto_output) {
  for (int j = 0; j < e->g->n; j++)
    if (e->var[j] && strcmp(e->var[j], n) == 0) return true;
  for (int s = 1; s <= e->g->nsym; s++)
    if (strcmp(e->g->sym[s], n) == 0 || strcmp(arena_printf(e->A, "max_%s", e->g->sym[s]), n) == 0) return true;
  for (int j = 0; j < upto_output; j++)
    if (strcmp(e->outnames[j], n) == 0) return true;
  return false;
}

/* The C parameter name of output i: its MDL name, made unique against every
 * other name in the run function. */
static const char *outname(E *e, int i) { return e->outnames[i]; }

static void name_outputs(E *e) {
  e->outnames = arena_alloc(e->A, sizeof(char *) * (size_t)(e->g->noutputs + 1));
  for (int i = 0; i < e->g->noutputs; i++) {
    const char *n = cident(e->A, "", e->g->outputs[i].name);
    for (int k = 1; name_taken(e, n, i); k++)
      n = arena_printf(e->A, "%s_out%s", cident(e->A, "", e->g->outputs[i].name), k > 1 ? arena_printf(e->A, "%d", k) : "");
    e->outnames[i] = n;
  }
}

static void emit_signature_run(E *e, Buf *b, bool decl_names) {
  Graph *g = e->g;
  out(b, "int %s_run(%s *m", e->M, e->M);
  for (int s = 1; s <= g->nsym; s++) out(b, ", int64_t %s", g->sym[s]);
  for (int i = 0; i < g->ninputs; i++) {
    Node *n = &g->nodes[g->inputs[i]];
    out(b, ", const %s *%s", ctype(n->ty.dt), decl_names ? e->var[g->inputs[i]] : e->var[g->inputs[i]]);
  }
  for (int i = 0; i < g->noutputs; i++) {
    Node *n = &g->nodes[g->outputs[i].node];
    out(b, ", %s *%s", ctype(n->ty.dt), outname(e, i));
  }
  out(b, ")");
}

static void emit_create_signature(E *e, Buf *b) {
  out(b, "%s *%s_create(", e->M, e->M);
  for (int s = 1; s <= e->g->nsym; s++) out(b, "int64_t max_%s, ", e->g->sym[s]);
  out(b, "const mlcrt_options *opts)");
}

static char *emit_header(E *e) {
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
    out(&b, " *   output %s: %s\n", g->outputs[i].name, type_str(e->A, g, &g->nodes[g->outputs[i].node].ty));
  out(&b, " *\n * Usage:\n *   %s *m = %s_create(", e->M, e->M);
  for (int s = 1; s <= g->nsym; s++) out(&b, "max_%s, ", g->sym[s]);
  out(&b, "NULL);\n *   if (!m) { fprintf(stderr, \"%%s\\n\", mlcrt_last_error()); ... }\n");
  out(&b, " *   if (%s_load(m, \"weights.safetensors\")) fprintf(stderr, \"%%s\\n\", %s_last_error(m));\n", e->M, e->M);
  out(&b, " *   %s_run(m, ...);\n *   %s_destroy(m);\n */\n", e->M, e->M);
  out(&b, "#ifndef %s_H\n#define %s_H\n\n#include <stdint.h>\n#include <mlcrt.h> /* mlcrt_options, MLCRT_CPU, status codes */\n\n", guard, guard);
  out(&b, "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n");
  out(&b, "typedef struct %s %s; /* opaque instance */\n\n", e->M, e->M);
  out(&b, "/* Creates an instance.");
  if (g->nsym) {
    out(&b, "  Symbolic dims are passed in order of first appearance (");
    for (int s = 1; s <= g->nsym; s++) out(&b, "%s%s", s > 1 ? ", " : "", g->sym[s]);
    out(&b, "):\n   their maximum values size the one arena; nothing is allocated after create.");
  }
  out(&b, "\n   opts may be NULL (CPU, default threads).  Returns NULL on failure, with the\n   reason in mlcrt_last_error().  Weights start as zeros until _init or _load. */\n");
  emit_create_signature(e, &b);
  out(&b, ";\n\n/* Loads params and buffers from a safetensors file; 0 or an MLCRT_E* status. */\n");
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
    out(&b, "     %s: %s (written)\n", outname(e, i), type_str(e->A, g, &g->nodes[g->outputs[i].node].ty));
  out(&b, "   Returns 0, or a status with the reason in %s_last_error(). */\n", e->M);
  emit_signature_run(e, &b, true);
  out(&b, ";\n\n/* The message of the last failed call on m. */\n");
  out(&b, "const char *%s_last_error(const %s *m);\n\n", e->M, e->M);
  out(&b, "/* Frees the instance (NULL is allowed). */\nvoid %s_destroy(%s *m);\n\n", e->M, e->M);
  out(&b, "#ifdef __cplusplus\n}\n#endif\n#endif\n");
  return b.s;
}

static const char *init_name(InitKind k) {
  static const char *names[] = {"MLCRT_INIT_ZEROS", "MLCRT_INIT_ONES", "MLCRT_INIT_NORMAL",
                                "MLCRT_INIT_UNIFORM", "MLCRT_INIT_KAIMING_UNIFORM", "MLCRT_INIT_XAVIER_UNIFORM"};
  return names[k];
}

static const char *src_line(E *e, Loc loc) {
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

static char *emit_source(E *e, const char *header_name) {
  Graph *g = e->g;
  const Plan *p = e->p;
  Buf b = {.A = e->A};
  const char *M = e->M;
  out(&b, "/* %s.c — generated by mlc from %s.  Do not edit.\n", M, g->source_path);
  out(&b, " * One instance owns a weights region (params and buffers) and one arena of\n");
  out(&b, " * activations planned at create time; %s_run allocates nothing. */\n", M);
  out(&b, "#include \"%s\"\n\n#include <math.h>\n#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n\n", header_name);
  out(&b, "@MLC_F2I@"); /* replaced below by the helper, or nothing when unused */

  /* descriptor table */
  out(&b, "/* Params and buffers: name, dtype, shape, offset in the weights region, initialiser. */\n");
  out(&b, "enum { NTENSORS = %d, WEIGHT_BYTES = %zu, NBUFS = %d };\n", g->ntensors, p->weight_bytes, p->nbufs);
  out(&b, "static const mlcrt_tensor_desc %s_tensors[%d] = {\n", M, g->ntensors ? g->ntensors : 1);
  for (int t = 0; t < g->ntensors; t++) {
    Node *n = &g->nodes[g->tensors[t]];
    out(&b, "    {\"%s\", %s, %d, {", n->name, mlcrt_dtype_c(n->ty.dt), n->ty.rank);
    for (int i = 0; i < n->ty.rank; i++) out(&b, "%s%s", i ? ", " : "", dimc(e, n->ty.dim[i]));
    out(&b, "}, %zu, %s, %.17g, %.17g},\n", p->weight_off[g->tensors[t]], init_name(n->init), n->init_a, n->init_b);
  }
  if (!g->ntensors) out(&b, "    {0},\n");
  out(&b, "};\n\n");

  out(&b, "struct %s {\n", M);
  for (int s = 1; s <= g->nsym; s++) out(&b, "  int64_t max_%s;\n", g->sym[s]);
  out(&b, "  unsigned char *weights; /* WEIGHT_BYTES: params and buffers */\n");
  out(&b, "  unsigned char *arena;   /* activations and scratch, planned at create */\n");
  out(&b, "  size_t arena_bytes;\n  size_t off[NBUFS ? NBUFS : 1]; /* offset of each arena buffer */\n");
  out(&b, "  char err[MLCRT_ERRLEN];\n};\n\n");

  /* create */
  emit_create_signature(e, &b);
  out(&b, " {\n  char msg[MLCRT_ERRLEN];\n");
  for (int s = 1; s <= g->nsym; s++)
    out(&b, "  if (max_%s < 1 || max_%s > ((int64_t)1 << 40)) {\n    snprintf(msg, sizeof msg, \"%s_create: max_%s = %%lld is out of range (1..2^40)\", (long long)max_%s);\n    mlcrt_set_last_error(msg);\n    return NULL;\n  }\n",
        g->sym[s], g->sym[s], M, g->sym[s], g->sym[s]);
  out(&b, "  if (opts && opts->device != MLCRT_CPU) {\n    mlcrt_set_last_error(\"%s_create: this model was compiled for the CPU; compile with -o %s.cu for CUDA\");\n    return NULL;\n  }\n", M, M);
  /* sizes of the arena buffers at the maxima, checked in double for overflow */
  const char **dnames = arena_alloc(e->A, sizeof(char *) * (MAX_SYMS + 1));
  for (int s = 1; s <= g->nsym; s++) {
    out(&b, "  const int64_t %s = max_%s;\n", g->sym[s], g->sym[s]);
    dnames[s] = arena_printf(e->A, "(double)%s", g->sym[s]);
  }
  out(&b, "  /* arena buffers: bytes at the maximum dims, and live ranges in run order */\n");
  out(&b, "  mlcrt_plan_item items[NBUFS ? NBUFS : 1] = {\n");
  Buf dbl = {.A = e->A};
  for (int i = 0; i < p->nbufs; i++) {
    const PlanBuf *pb = &p->bufs[i];
    Node *n = &g->nodes[pb->node];
    if (pb->scratch) {
      out(&b, "      {mlcrt_conv2d_scratch(&(mlcrt_conv2d_params)");
      conv_params(e, &b, n, "          ");
      out(&b, "), %d, %d, 0}, /* scratch of %%%d */\n", pb->first, pb->last, pb->node);
    } else {
      Dim bytes = plan_buf_bytes(g, p, i);
      out(&b, "      {(size_t)%s, %d, %d, 0}, /* %%%d %s: %s */\n", dimc(e, bytes), pb->first, pb->last,
          pb->node, n->hint ? n->hint : describe(e, n), type_str(e->A, g, &n->ty));
      out(&dbl, "%s%s", dbl.len ? " + " : "", dim_str(e->A, bytes, dnames));
    }
  }
  if (!p->nbufs) out(&b, "      {0, 0, 0, 0},\n");
  out(&b, "  };\n");
  if (dbl.len)
    out(&b, "  if (%s > 1e14) {\n    mlcrt_set_last_error(\"%s_create: the activations for these maximum dims would need over 100 TB\");\n    return NULL;\n  }\n", dbl.s, M);
  for (int s = 1; s <= g->nsym; s++) out(&b, "  (void)%s;\n", g->sym[s]);
  out(&b, "  %s *m = calloc(1, sizeof *m);\n  if (!m) {\n    mlcrt_set_last_error(\"%s_create: out of memory\");\n    return NULL;\n  }\n", M, M);
  for (int s = 1; s <= g->nsym; s++) out(&b, "  m->max_%s = max_%s;\n", g->sym[s], g->sym[s]);
  out(&b, "  m->arena_bytes = mlcrt_plan(items, NBUFS, 64);\n");
  out(&b, "  for (int i = 0; i < NBUFS; i++) m->off[i] = items[i].offset;\n");
  out(&b, "  m->weights = aligned_alloc(64, WEIGHT_BYTES ? WEIGHT_BYTES : 64);\n");
  out(&b, "  m->arena = aligned_alloc(64, m->arena_bytes ? (m->arena_bytes + 63) / 64 * 64 : 64);\n");
  out(&b, "  if (!m->weights || !m->arena) {\n    snprintf(msg, sizeof msg, \"%s_create: cannot allocate %%zu bytes of weights and %%zu of activations\", (size_t)WEIGHT_BYTES, m->arena_bytes);\n    mlcrt_set_last_error(msg);\n    %s_destroy(m);\n    return NULL;\n  }\n", M, M);
  out(&b, "  memset(m->weights, 0, WEIGHT_BYTES); /* zeros until init or load */\n  return m;\n}\n\n");

  out(&b, "void %s_destroy(%s *m) {\n  if (!m) return;\n  free(m->weights);\n  free(m->arena);\n  free(m);\n}\n\n", M, M);
  out(&b, "const char *%s_last_error(const %s *m) { return m ? m->err : \"NULL instance\"; }\n\n", M, M);
  out(&b, "int %s_load(%s *m, const char *safetensors_path) {\n  if (!m) return MLCRT_EINVAL;\n  if (!safetensors_path) return mlcrt_seterr(m->err, MLCRT_EINVAL, \"%s_load: NULL path\");\n  return mlcrt_load_safetensors(safetensors_path, %s_tensors, NTENSORS, m->weights, m->err);\n}\n\n", M, M, M, M);
  out(&b, "int %s_save(const %s *m, const char *safetensors_path) {\n  if (!m || !safetensors_path) return MLCRT_EINVAL;\n  return mlcrt_save_safetensors(safetensors_path, %s_tensors, NTENSORS, m->weights, (char *)m->err);\n}\n\n", M, M, M);
  out(&b, "int %s_init(%s *m, uint64_t seed) {\n  if (!m) return MLCRT_EINVAL;\n  return mlcrt_init_tensors(%s_tensors, NTENSORS, m->weights, seed);\n}\n\n", M, M, M);

  /* run */
  out(&b, "/* The forward pass, one step per operation of %s. */\n", g->source_path);
  emit_signature_run(e, &b, true);
  out(&b, " {\n  if (!m) return MLCRT_EINVAL;\n");
  for (int s = 1; s <= g->nsym; s++)
    out(&b, "  if (%s < 0 || %s > m->max_%s)\n    return mlcrt_seterr(m->err, MLCRT_EINVAL, \"%s_run: %s = %%lld is outside 0..%%lld (the maximum given to create)\", (long long)%s, (long long)m->max_%s);\n",
        g->sym[s], g->sym[s], g->sym[s], M, g->sym[s], g->sym[s], g->sym[s]);
  for (int i = 0; i < g->ninputs; i++)
    out(&b, "  if (!%s) return mlcrt_seterr(m->err, MLCRT_EINVAL, \"%s_run: input '%s' is NULL\");\n", e->var[g->inputs[i]], M, g->nodes[g->inputs[i]].name);
  for (int i = 0; i < g->noutputs; i++) {
    const char *on = outname(e, i);
    out(&b, "  if (!%s) return mlcrt_seterr(m->err, MLCRT_EINVAL, \"%s_run: output '%s' is NULL\");\n", on, M, g->outputs[i].name);
  }
  for (int c = 0; c < g->nchecks; c++) {
    DimCheck *ck = &g->checks[c];
    const char *a = dimc(e, ck->a), *bb = dimc(e, ck->b);
    out(&b, "  if (%s != %s)\n    return mlcrt_seterr(m->err, MLCRT_ESHAPE, \"%s:%d:%d: shape mismatch at run time: %s (= %%lld) must equal %s (= %%lld): %s\", (long long)(%s), (long long)(%s));\n",
        a, bb, ck->loc.src ? ck->loc.src->path : g->source_path, ck->loc.line, ck->loc.col, a, bb, ck->what, a, bb);
  }
  /* named pointers */
  out(&b, "\n  /* params and buffers */\n");
  for (int t = 0; t < g->ntensors; t++) {
    int id = g->tensors[t];
    Node *n = &g->nodes[id];
    out(&b, "  const %s *%s = (const %s *)(m->weights + %zu); /* %s %s */\n", ctype(n->ty.dt), e->var[id],
        ctype(n->ty.dt), p->weight_off[id], n->name, type_str(e->A, g, &n->ty));
    bool used = false; /* by a node that runs */
    for (int j = 0; j < g->n && !used; j++)
      if (p->storage[j] == ST_ARENA || p->storage[j] == ST_ALIAS)
        for (int k = 0; k < g->nodes[j].nin; k++) used |= g->nodes[j].in[k] == id;
    for (int j = 0; j < g->noutputs; j++) used |= g->outputs[j].node == id;
    if (!used) out(&b, "  (void)%s; /* not used by the outputs */\n", e->var[id]);
  }
  out(&b, "\n  /* activations */\n");
  for (int i = 0; i < g->n; i++) {
    Node *n = &g->nodes[i];
    if (p->storage[i] == ST_ARENA)
      out(&b, "  %s *%s = (%s *)(m->arena + m->off[%d]); /* %s */\n", ctype(n->ty.dt), e->var[i], ctype(n->ty.dt),
          p->buf[i], type_str(e->A, g, &n->ty));
    else if (p->storage[i] == ST_ALIAS) {
      Storage rs = p->storage[p->alias_of[i]];
      bool ro = rs == ST_INPUT || rs == ST_WEIGHT;
      out(&b, "  %s%s *%s = %s; /* %s, a view of %s */\n", ro ? "const " : "", ctype(n->ty.dt), e->var[i],
          e->var[n->in[0]], type_str(e->A, g, &n->ty), e->var[n->in[0]]);
    }
  }
  out(&b, "\n");
  for (int i = 0; i < g->n; i++) {
    Node *n = &g->nodes[i];
    if (p->storage[i] != ST_ARENA && p->storage[i] != ST_ALIAS) continue;
    if (op_info[n->op].flags & F_VIEW) continue;
    out(&b, "  /* line %d: %s   -> %s %s */\n", n->loc.line, src_line(e, n->loc), describe(e, n), type_str(e->A, g, &n->ty));
    emit_node(e, &b, i);
  }
  out(&b, "\n  /* outputs */\n");
  for (int i = 0; i < g->noutputs; i++) {
    int id = g->outputs[i].node;
    Node *n = &g->nodes[id];
    out(&b, "  memcpy(%s, %s, (size_t)%s * sizeof(%s));\n", outname(e, i), e->var[id],
        dimc(e, type_numel(&n->ty)), ctype(n->ty.dt));
  }
  out(&b, "  return MLCRT_OK;\n}\n");
  /* emit the float -> integer helper only where a cast needs it (clang warns
   * about unused static functions) */
  char *mark = strstr(b.s, "@MLC_F2I@");
  const char *f2i = strstr(mark + 9, "mlc_f2i(")
      ? "/* float -> integer as C casts do, but defined for NaN and out-of-range values */\n"
        "static inline int64_t mlc_f2i(float v) {\n  if (v != v) return 0;\n"
        "  if (v >= 9.2233720e18f) return INT64_MAX;\n  if (v <= -9.2233720e18f) return INT64_MIN;\n"
        "  return (int64_t)v;\n}\n\n"
      : "";
  *mark = 0;
  return arena_printf(e->A, "%s%s%s", b.s, f2i, mark + 9);
}

/* ---- the `mlc run` harness ---------------------------------------------------- */
static char *emit_harness(E *e, const char *header_name) {
  Graph *g = e->g;
  Buf b = {.A = e->A};
  const char *M = e->M;
  out(&b, "/* mlc run harness for model %s — generated, do not edit.\n", M);
  out(&b, " * usage: run [--weights W.safetensors | --seed N] --input NAME=FILE.npy ... [--out DIR] */\n");
  out(&b, "#include \"%s\"\n#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n\n", header_name);
  out(&b, "/* Prints a runtime message \"PATH: text\" as \"PATH: error: text\". */\n");
  out(&b, "static void report(const char *path, const char *err) {\n  size_t n = path ? strlen(path) : 0;\n");
  out(&b, "  if (n && !strncmp(err, path, n) && !strncmp(err + n, \": \", 2))\n    fprintf(stderr, \"%%s: error: %%s\\n\", path, err + n + 2);\n");
  out(&b, "  else if (path)\n    fprintf(stderr, \"%%s: error: %%s\\n\", path, err);\n  else\n    fprintf(stderr, \"mlc run: error: %%s\\n\", err);\n}\n\n");
  out(&b, "static int usage(const char *msg) {\n  fprintf(stderr, \"mlc run: error: %%s\\n\", msg);\n  return 2;\n}\n\n");
  out(&b, "int main(int argc, char **argv) {\n  const char *out_dir = \".\", *weights = NULL;\n  unsigned long long seed = 0;\n");
  out(&b, "  const char *paths[%d] = {0};\n  mlcrt_array in[%d];\n  char err[MLCRT_ERRLEN], msg[1024];\n", g->ninputs ? g->ninputs : 1, g->ninputs ? g->ninputs : 1);
  out(&b, "  mlcrt_array outs[%d];\n", g->noutputs ? g->noutputs : 1);
  out(&b, "  memset(in, 0, sizeof in);\n  memset(outs, 0, sizeof outs);\n");
  out(&b, "  for (int i = 1; i < argc; i++) {\n");
  out(&b, "    if (!strcmp(argv[i], \"--out\") && i + 1 < argc) out_dir = argv[++i];\n");
  out(&b, "    else if (!strcmp(argv[i], \"--weights\") && i + 1 < argc) weights = argv[++i];\n");
  out(&b, "    else if (!strcmp(argv[i], \"--seed\") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 10);\n");
  out(&b, "    else if (!strcmp(argv[i], \"--input\") && i + 1 < argc) {\n      const char *a = argv[++i], *eq = strchr(a, '=');\n      if (!eq) return usage(\"--input needs NAME=FILE.npy\");\n      int k = -1;\n");
  for (int i = 0; i < g->ninputs; i++)
    out(&b, "      if ((size_t)(eq - a) == %zu && !strncmp(a, \"%s\", %zu)) k = %d;\n", strlen(g->nodes[g->inputs[i]].name),
        g->nodes[g->inputs[i]].name, strlen(g->nodes[g->inputs[i]].name), i);
  out(&b, "      if (k < 0) {\n        snprintf(msg, sizeof msg, \"model %s has no input named '%%.*s'\", (int)(eq - a), a);\n        return usage(msg);\n      }\n      paths[k] = eq + 1;\n", M);
  out(&b, "    } else {\n      snprintf(msg, sizeof msg, \"unknown argument '%%s'\", argv[i]);\n      return usage(msg);\n    }\n  }\n");
  /* read and check inputs, bind dims */
  out(&b, "  int64_t dim[%d] = {0}; /* symbolic dims, 1-based */\n  int bound[%d] = {0};\n  (void)dim, (void)bound;\n  int status = 1;\n", g->nsym + 1, g->nsym + 1);
  for (int i = 0; i < g->ninputs; i++) {
    Node *n = &g->nodes[g->inputs[i]];
    const char *ts = type_str(e->A, g, &n->ty);
    out(&b, "  /* input %s: %s */\n", n->name, ts);
    out(&b, "  if (!paths[%d]) {\n    status = usage(\"missing --input %s=FILE.npy (input %s: %s)\");\n    goto done;\n  }\n", i, n->name, n->name, ts);
    out(&b, "  if (mlcrt_npy_read(paths[%d], &in[%d], err)) {\n    report(paths[%d], err);\n    goto done;\n  }\n", i, i, i);
    out(&b, "  if (in[%d].dtype != %s || in[%d].rank != %d) {\n    fprintf(stderr, \"%%s: error: input '%s' must be %s, the file holds %%s with %%d dims\\n\", paths[%d], mlcrt_dtype_name(in[%d].dtype), in[%d].rank);\n    goto done;\n  }\n",
        i, mlcrt_dtype_c(n->ty.dt), i, n->ty.rank, n->name, ts, i, i, i);
    for (int k = 0; k < n->ty.rank; k++) {
      int sid;
      int64_t c;
      Dim d = n->ty.dim[k];
      if (dim_is_sym(d, &sid)) {
        out(&b, "  if (!bound[%d]) dim[%d] = in[%d].shape[%d], bound[%d] = 1;\n", sid, sid, i, k, sid);
        out(&b, "  if (in[%d].shape[%d] != dim[%d] || dim[%d] < 0) {\n    fprintf(stderr, \"%%s: error: dim %d of input '%s' is %%lld, but %s = %%lld (%s)\\n\", paths[%d], (long long)in[%d].shape[%d], (long long)dim[%d]);\n    goto done;\n  }\n",
            i, k, sid, sid, k, n->name, g->sym[sid], ts, i, i, k, sid);
      } else {
        const char **vn = arena_alloc(e->A, sizeof(char *) * (MAX_SYMS + 1));
        for (int s = 1; s <= g->nsym; s++) vn[s] = arena_printf(e->A, "dim[%d]", s);
        const char *want = dim_is_const(d, &c) ? arena_printf(e->A, "%lld", (long long)c) : dim_str(e->A, d, vn);
        out(&b, "  if (in[%d].shape[%d] != %s) {\n    fprintf(stderr, \"%%s: error: dim %d of input '%s' is %%lld, expected %%lld (%s)\\n\", paths[%d], (long long)in[%d].shape[%d], (long long)(%s));\n    goto done;\n  }\n",
            i, k, want, k, n->name, ts, i, i, k, want);
      }
    }
  }
  /* outputs */
  const char **vn = arena_alloc(e->A, sizeof(char *) * (MAX_SYMS + 1));
  for (int s = 1; s <= g->nsym; s++) vn[s] = arena_printf(e->A, "dim[%d]", s);
  for (int i = 0; i < g->noutputs; i++) {
    Node *n = &g->nodes[g->outputs[i].node];
    out(&b, "  outs[%d].dtype = %s;\n  outs[%d].rank = %d;\n", i, mlcrt_dtype_c(n->ty.dt), i, n->ty.rank);
    for (int k = 0; k < n->ty.rank; k++) out(&b, "  outs[%d].shape[%d] = %s;\n", i, k, dim_str(e->A, n->ty.dim[k], vn));
    out(&b, "  outs[%d].nbytes = (size_t)(%s) * %zu;\n  outs[%d].data = malloc(outs[%d].nbytes ? outs[%d].nbytes : 1);\n",
        i, dim_str(e->A, type_numel(&n->ty), vn), dtype_size(n->ty.dt), i, i, i);
    out(&b, "  if (!outs[%d].data) {\n    fprintf(stderr, \"mlc run: error: out of memory\\n\");\n    goto done;\n  }\n", i);
  }
  out(&b, "  %s *m = %s_create(", M, M);
  for (int s = 1; s <= g->nsym; s++) out(&b, "dim[%d] > 0 ? dim[%d] : 1, ", s, s);
  out(&b, "NULL);\n  if (!m) {\n    fprintf(stderr, \"mlc run: error: %%s\\n\", mlcrt_last_error());\n    goto done;\n  }\n");
  out(&b, "  int rc = weights ? %s_load(m, weights) : %s_init(m, seed);\n", M, M);
  out(&b, "  if (!rc) rc = %s_run(m", M);
  for (int s = 1; s <= g->nsym; s++) out(&b, ", dim[%d]", s);
  for (int i = 0; i < g->ninputs; i++) out(&b, ", in[%d].data", i);
  for (int i = 0; i < g->noutputs; i++) out(&b, ", outs[%d].data", i);
  out(&b, ");\n  if (rc) {\n    report(rc == MLCRT_EINVAL || rc == MLCRT_ESHAPE ? NULL : weights, %s_last_error(m));\n    %s_destroy(m);\n    goto done;\n  }\n  %s_destroy(m);\n", M, M, M);
  for (int i = 0; i < g->noutputs; i++) {
    out(&b, "  snprintf(msg, sizeof msg, \"%%s/%s.npy\", out_dir);\n", g->outputs[i].name);
    out(&b, "  if (mlcrt_npy_write(msg, &outs[%d], err)) {\n    report(msg, err);\n    goto done;\n  }\n", i);
  }
  out(&b, "  status = 0;\ndone:\n");
  out(&b, "  for (int i = 0; i < %d; i++) mlcrt_array_free(&in[i]);\n", g->ninputs);
  if (g->noutputs) out(&b, "  for (int i = 0; i < %d; i++) free(outs[i].data);\n", g->noutputs);
  out(&b, "  return status;\n}\n");
  return b.s;
}

EmitC emitc_model(Graph *g, const Plan *p, const char *header_name) {
  E e = {.g = g, .p = p, .A = g->A, .M = g->name};
  e.var = arena_alloc(g->A, sizeof(char *) * (size_t)(g->n + 1));
  for (int i = 0; i < g->n; i++) {
    Node *n = &g->nodes[i];
    if (n->op == OP_INPUT) e.var[i] = cident(g->A, "", n->name);
    else if (n->op == OP_PARAM || n->op == OP_BUFFER) e.var[i] = cident(g->A, "p_", n->name);
    else e.var[i] = n->hint ? cident(g->A, arena_printf(g->A, "t%d_", i), n->hint) : arena_printf(g->A, "t%d", i);
  }
  /* params whose sanitised names collide get their node id appended */
  for (int i = 0; i < g->n; i++)
    for (int j = 0; j < i; j++)
      if (strcmp(e.var[i], e.var[j]) == 0) e.var[i] = arena_printf(g->A, "%s_%d", e.var[i], i);
  name_outputs(&e);
  EmitC r;
  r.h = emit_header(&e);
  r.c = emit_source(&e, header_name);
  r.harness = emit_harness(&e, header_name);
  return r;
}
