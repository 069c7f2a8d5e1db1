/* compiler/ir.c — the IR: op table, dtypes, graph building and printing. */
#include "mlcc.h"
#include <string.h>

const OpInfo op_info[OP_COUNT] = {
#define OP(e, name, flags, sig, rule, cexpr) [OP_##e] = {name, sig, cexpr, #e, flags},
#include "ops.def"
#undef OP
};

int op_lookup(const char *name) {
  for (int i = 0; i < OP_COUNT; i++)
    if (op_info[i].name[0] && strcmp(op_info[i].name, name) == 0) return i;
  return -1;
}

static const char *const dtype_names[DT_COUNT] = {"f32", "f16", "bf16", "i32", "i64", "u8", "bool"};
static const size_t dtype_sizes[DT_COUNT] = {4, 2, 2, 4, 8, 1, 1};

const char *dtype_name(DType t) { return (unsigned)t < DT_COUNT ? dtype_names[t] : "?"; }
size_t dtype_size(DType t) { return dtype_sizes[t]; }
bool dtype_is_float(DType t) { return t == DT_F32 || t == DT_F16 || t == DT_BF16; }

int dtype_lookup(const char *name) {
  for (int i = 0; i < DT_COUNT; i++)
    if (strcmp(dtype_names[i], name) == 0) return i;
  return -1;
}

Graph *ir_new(Arena *A, const char *name) {
  Graph *g = arena_alloc(A, sizeof *g);
  g->A = A;
  g->name = name;
  return g;
}

/* Grows an arena-backed array (old storage is simply abandoned). */
static void *grow(Arena *A, void *old, int n, int *cap, size_t elem) {
  if (n < *cap) return old;
  int nc = *cap ? *cap * 2 : 16;
  void *p = arena_alloc(A, (size_t)nc * elem);
  if (old) memcpy(p, old, (size_t)n * elem);
  *cap = nc;
  return p;
}

int ir_add(Graph *g, Op op, Loc loc, int nin, const int *in) {
  g->nodes = grow(g->A, g->nodes, g->n, &g->cap, sizeof(Node));
  Node *n = &g->nodes[g->n];
  memset(n, 0, sizeof *n);
  n->op = op;
  n->loc = loc;
  n->nin = nin;
  n->group = -1;
  if (nin) {
    n->in = arena_alloc(g->A, (size_t)nin * sizeof(int));
    memcpy(n->in, in, (size_t)nin * sizeof(int));
  }
  return g->n++;
}

void ir_add_check(Graph *g, Dim a, Dim b, Loc loc, const char *what) {
  for (int i = 0; i < g->nchecks; i++) /* keep each distinct check once */
    if (dim_eq(g->checks[i].a, a) && dim_eq(g->checks[i].b, b)) return;
  int cap = g->nchecks; /* exact-size copy: checks are few */
  DimCheck *c = arena_alloc(g->A, (size_t)(cap + 1) * sizeof *c);
  if (g->nchecks) memcpy(c, g->checks, (size_t)g->nchecks * sizeof *c);
  c[g->nchecks] = (DimCheck){a, b, loc, what};
  g->checks = c;
  g->nchecks++;
}

void conv_types(const Graph *g, const Node *n, const Type **x, const Type **w, const Type **y, int *h) {
  *h = n->op == OP_CONV1D ? 1 : 2;
  if (n->op == OP_CONV2D_DX) { /* (dy, w) -> dx */
    *x = &n->ty, *w = &g->nodes[n->in[1]].ty, *y = &g->nodes[n->in[0]].ty;
  } else if (n->op == OP_CONV2D_DW) { /* (dy, x) -> dw */
    *x = &g->nodes[n->in[1]].ty, *w = &n->ty, *y = &g->nodes[n->in[0]].ty;
  } else {
    *x = &g->nodes[n->in[0]].ty, *w = &g->nodes[n->in[1]].ty, *y = &n->ty;
  }
}

Dim type_numel(const Type *t) {
  Dim d = dim_const(1);
  for (int i = 0; i < t->rank; i++) d = dim_mul(d, t->dim[i]);
  return d;
}

int64_t type_numel_const(const Type *t, bool *is_const) {
  int64_t c = 0;
  *is_const = dim_is_const(type_numel(t), &c);
  return c;
}

char *type_str(Arena *A, const Graph *g, const Type *t) {
  char buf[1024];
  size_t len = (size_t)snprintf(buf, sizeof buf, "%s[", dtype_name(t->dt));
  for (int i = 0; i < t->rank && len < sizeof buf - 200; i++)
    len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%s", i ? ", " : "",
                            dim_str(A, t->dim[i], g->sym));
  snprintf(buf + len, sizeof buf - len, "]");
  return arena_strdup(A, buf);
}

/* --emit-ir: one line per node, stable, used by golden tests:
 *   %3 = linear(%1, %2, %0) : f32[B, 256]    # m.mdl:7 h                  */
void ir_print(FILE *out, const Graph *g) {
  fprintf(out, "model %s", g->name);
  if (g->nsym) {
    fprintf(out, " (symbols:");
    for (int i = 1; i <= g->nsym; i++) fprintf(out, " %s", g->sym[i]);
    fprintf(out, ")");
  }
  fprintf(out, "\n");
  for (int i = 0; i < g->n; i++) {
    const Node *n = &g->nodes[i];
    char *ty = type_str(g->A, g, &n->ty);
    fprintf(out, "  %%%d = ", i);
    switch (n->op) {
    case OP_INPUT: fprintf(out, "input %s", n->name); break;
    case OP_PARAM: fprintf(out, "param %s", n->name); break;
    case OP_BUFFER: fprintf(out, "buffer %s", n->name); break;
    case OP_CONST: fprintf(out, "const %.9g%s", n->fa[0], n->weak ? " (weak)" : ""); break;
    default:
      fprintf(out, "%s(", op_info[n->op].name);
      for (int j = 0; j < n->nin; j++) fprintf(out, "%s%%%d", j ? ", " : "", n->in[j]);
      for (int j = 0; j < n->nia; j++) fprintf(out, "%s%lld", (n->nin || j) ? ", " : "", (long long)n->ia[j]);
      if (n->sa) fprintf(out, ", \"%s\"", n->sa);
      fprintf(out, ")");
    }
    fprintf(out, " : %s", ty);
    if (n->loc.src) fprintf(out, "    # line %d", n->loc.line);
    if (n->hint) fprintf(out, " %s", n->hint);
    fprintf(out, "\n");
  }
  for (int i = 0; i < g->noutputs; i++)
    fprintf(out, "  output %s = %%%d\n", g->outputs[i].name, g->outputs[i].node);
  for (int i = 0; i < g->nchecks; i++)
    fprintf(out, "  check %s == %s    # line %d %s\n", dim_str(g->A, g->checks[i].a, g->sym),
            dim_str(g->A, g->checks[i].b, g->sym), g->checks[i].loc.line, g->checks[i].what);
}
