/* compiler/lower.c — AST to IR.
 *
 * Walks one model's statements in order with a scope of bindings (later
 * bindings shadow earlier ones), unrolls `repeat`, interpolates `{i}` in
 * paths, inlines blocks (binding their shape patterns and prefixing their
 * parameter paths with the instance path) and turns every operator call into
 * an IR node.  Arguments are bound against the op table's signature string,
 * so positional/keyword handling is written once.  Each new node is typed by
 * infer_node at once: blocks need their arguments' shapes to bind patterns.
 * After this pass nothing reads the AST again.
 */
#include "mlcc.h"
#include <stdlib.h>
#include <string.h>

typedef enum VKind { V_NONE, V_TENSOR, V_INT, V_FLOAT, V_BOOL, V_STR, V_LIST, V_TUPLE } VKind;

typedef struct Value {
  VKind k;
  Loc loc;
  int node;  /* V_TENSOR */
  Dim i;     /* V_INT (may be symbolic) */
  double f;  /* V_FLOAT, V_BOOL */
  const char *s;
  struct Value *items; /* V_LIST, V_TUPLE */
  int n;
} Value;

typedef struct Bind {
  const char *name;
  Value v;
  struct Bind *next;
} Bind;

typedef struct L {
  Arena *A;
  Graph *g;
  Diag *d;
  const Ast *file;
  Bind *scope;
  const char *prefix; /* instance path of the block being inlined, "" at model level */
  int depth;
  bool in_block;
  bool in_train; /* lowering the train section */
} L;

static const Value none = {.k = V_NONE};

/* ---- scope ------------------------------------------------------------------- */
static void bind(L *l, const char *name, Value v) {
  Bind *b = arena_alloc(l->A, sizeof *b);
  b->name = name;
  b->v = v;
  b->next = l->scope;
  l->scope = b;
}

static Bind *lookup(L *l, const char *name) {
  for (Bind *b = l->scope; b; b = b->next)
    if (strcmp(b->name, name) == 0) return b;
  return NULL;
}

static const char *vkind_name(VKind k) {
  static const char *names[] = {"nothing", "a tensor", "an integer", "a float", "a bool", "a string", "a list", "a tuple"};
  return names[k];
}

/* ---- paths --------------------------------------------------------------- */
/* Replaces each {I} segment by the value of the integer I. */
static const char *interpolate(L *l, const char *path, Loc loc) {
  if (!strchr(path, '{')) return path;
  char buf[1024];
  size_t len = 0;
  for (const char *p = path; *p && len < sizeof buf - 32;) {
    if (*p != '{') { buf[len++] = *p++; continue; }
    const char *e = strchr(p, '}');
    if (!e) break;
    char name[128];
    snprintf(name, sizeof name, "%.*s", (int)(e - p - 1), p + 1);
    Bind *b = lookup(l, name);
    int64_t c;
    if (!b || b->v.k != V_INT || !dim_is_const(b->v.i, &c)) {
      diag_error(l->d, loc, "'{%s}' in a path needs an integer loop variable or const named '%s'", name, name);
      return path;
    }
    len += (size_t)snprintf(buf + len, sizeof buf - len, "%lld", (long long)c);
    p = e + 1;
  }
  buf[len] = 0;
  return arena_strdup(l->A, buf);
}

/* ---- nodes ------------------------------------------------------------------ */
static Value tensor(int id, Loc loc) {
  Value v = {.k = V_TENSOR, .node = id, .loc = loc};
  return v;
}

/* Adds a node and types it; V_NONE if inference reported an error. */
static Value mk(L *l, Node proto, int nin, const int *in) {
  int id = ir_add(l->g, proto.op, proto.loc, nin, in);
  Node *n = &l->g->nodes[id];
  memcpy(n->ia, proto.ia, sizeof n->ia);
  n->nia = proto.nia;
  memcpy(n->fa, proto.fa, sizeof n->fa);
  n->sa = proto.sa;
  n->da = proto.da;
  n->nda = proto.nda;
  if (!infer_node(l->g, id, l->d)) return none;
  return tensor(id, proto.loc);
}

static int mkconst(L *l, double v, DType dt, Loc loc) {
  int id = ir_add(l->g, OP_CONST, loc, 0, NULL);
  Node *n = &l->g->nodes[id];
  n->fa[0] = v;
  n->weak = true;
  n->ty.dt = dt;
  return id;
}

/* Operators that compute in f32 on CPU: f16/bf16 operands are converted on
 * load (a to_f32 node each) and the result is rounded back on store. */
static bool computes_in_f32(Op op) {
  switch (op) {
  case OP_MATMUL: case OP_LINEAR: case OP_CONV2D: case OP_CONV1D: case OP_CONV_TRANSPOSE2D:
  case OP_MAX_POOL2D: case OP_AVG_POOL2D: case OP_ADAPTIVE_AVG_POOL2D:
  case OP_BATCH_NORM: case OP_LAYER_NORM: case OP_GROUP_NORM: case OP_RMS_NORM: case OP_SDPA:
    return true;
  default: return false;
  }
}

/* mk for those operators.  The result dtype: for the contractions (matmul,
 * linear, convolutions) the float operands' common dtype, f32 when they
 * differ; for pools, norms and attention the dtype of the first input. */
static Value mk_f32(L *l, Node proto, int nin, const int *in) {
  if (!computes_in_f32(proto.op)) return mk(l, proto, nin, in);
  int in2[16];
  bool half = false, same = true;
  DType first = l->g->nodes[in[0]].ty.dt;
  for (int i = 0; i < nin && i < 16; i++) {
    DType t = l->g->nodes[in[i]].ty.dt;
    in2[i] = in[i];
    if (dtype_is_float(t) && t != first) same = false;
    if (t != DT_F16 && t != DT_BF16) continue;
    half = true;
    Node c = {.op = OP_TO_F32, .loc = proto.loc};
    Value cv = mk(l, c, 1, &in[i]);
    if (cv.k == V_NONE) return none;
    in2[i] = cv.node;
  }
  if (!half) return mk(l, proto, nin, in);
  Value r = mk(l, proto, nin, in2);
  bool contraction = proto.op == OP_MATMUL || proto.op == OP_LINEAR || proto.op == OP_CONV2D ||
                     proto.op == OP_CONV1D || proto.op == OP_CONV_TRANSPOSE2D;
  DType want = contraction && !same ? DT_F32 : first;
  if (r.k == V_NONE || (want != DT_F16 && want != DT_BF16)) return r;
  Node back = {.op = want == DT_F16 ? OP_TO_F16 : OP_TO_BF16, .loc = proto.loc};
  return mk(l, back, 1, &r.node);
}

/* A scalar operand of tensor arithmetic becomes a weak constant node. */
static int as_operand(L *l, Value v) {
  int64_t c;
  switch (v.k) {
  case V_TENSOR: return v.node;
  case V_FLOAT: return mkconst(l, v.f, DT_F32, v.loc);
  case V_BOOL: return mkconst(l, v.f, DT_BOOL, v.loc);
  case V_INT:
    if (dim_is_const(v.i, &c)) return mkconst(l, (double)c, DT_I64, v.loc);
    diag_error(l->d, v.loc, "a symbolic dim cannot be used as a tensor operand yet");
    return -1;
  default: diag_error(l->d, v.loc, "expected a tensor or a number, found %s", vkind_name(v.k)); return -1;
  }
}

static Value lower_expr(L *l, const Ast *e, const char *inst);

/* One-node helpers for operators lowered as compositions (losses). */
static Value unop(L *l, Op o, Loc loc, int x) {
  Node p = {.op = o, .loc = loc};
  return x < 0 ? none : mk(l, p, 1, &x);
}
static Value binop(L *l, Op o, Loc loc, int x, int y) {
  Node p = {.op = o, .loc = loc};
  int in[2] = {x, y};
  return x < 0 || y < 0 ? none : mk(l, p, 2, in);
}

/* ---- types ------------------------------------------------------------------ */
static bool const_int(L *l, Value v, int64_t *out, const char *what) {
  if (v.k == V_INT && dim_is_const(v.i, out)) return true;
  if (v.k != V_NONE)
    diag_error(l->d, v.loc, "%s must be an integer constant, found %s", what,
               v.k == V_INT ? "a symbolic dim" : vkind_name(v.k));
  return false;
}

/* Lowers `f32[B, 1, 28, 28]`.  With new_syms, unknown plain identifiers
 * become symbolic dims (input declarations). */
static bool lower_type(L *l, const Ast *t, bool new_syms, bool static_only, Type *out) {
  memset(out, 0, sizeof *out);
  int dt = dtype_lookup(t->name);
  if (dt < 0 || !t->ival) {
    diag_error(l->d, t->loc, "unknown tensor type '%s' (expected f32, f16, bf16, i32, i64, u8 or bool with [dims])", t->name);
    return false;
  }
  out->dt = (DType)dt;
  if (t->list.n > MAX_RANK) {
    diag_error(l->d, t->loc, "rank %d is above the maximum %d", t->list.n, MAX_RANK);
    return false;
  }
  bool ok = true;
  for (int i = 0; i < t->list.n; i++) {
    const Ast *e = t->list.items[i];
    if (e->kind == AST_ELLIPSIS) {
      diag_error(l->d, e->loc, "'...' is only allowed in block argument patterns");
      return false;
    }
    if (new_syms && e->kind == AST_NAME && !strchr(e->name, '.') && !lookup(l, e->name)) {
      if (l->g->nsym == MAX_SYMS) {
        diag_error(l->d, e->loc, "too many symbolic dims (at most %d)", MAX_SYMS);
        return false;
      }
      l->g->sym[++l->g->nsym] = e->name;
      Value v = {.k = V_INT, .i = dim_sym(l->g->nsym), .loc = e->loc};
      bind(l, e->name, v);
    }
    Value v = lower_expr(l, e, NULL);
    if (v.k == V_NONE) { ok = false; continue; }
    if (v.k != V_INT) {
      diag_error(l->d, e->loc, "a dim must be an integer expression, found %s", vkind_name(v.k));
      ok = false;
      continue;
    }
    int64_t c;
    if (dim_is_const(v.i, &c)) {
      if (c < 0) { diag_error(l->d, e->loc, "a dim must not be negative, got %lld", (long long)c); ok = false; }
    } else if (static_only) {
      diag_error(l->d, e->loc, "parameter and buffer shapes must be static");
      ok = false;
    }
    out->dim[i] = v.i;
  }
  out->rank = t->list.n;
  return ok;
}

/* ---- argument binding against an op signature ------------------------------- */
typedef struct Param {
  char name[32];
  char kind[8];
  bool optional;
  const char *def; /* default text or NULL */
} Param;

typedef struct Bound {
  bool given; /* from the call (not a default) */
  bool present;
  Value v;
  int64_t iv[MAX_RANK];
  int ni;
  double f;
  const char *s;
  bool scalar; /* shape kind: written as one integer, not a list */
} Bound;

static int parse_sig(const char *sig, Param *ps) {
  int n = 0;
  while (*sig && n < 12) {
    const char *e = strchr(sig, ',');
    size_t len = e ? (size_t)(e - sig) : strlen(sig);
    char item[96];
    snprintf(item, sizeof item, "%.*s", (int)len, sig);
    Param *p = &ps[n++];
    memset(p, 0, sizeof *p);
    char *eq = strchr(item, '=');
    if (eq) { *eq = 0; p->def = strstr(sig, "=") + 1; }
    char *colon = strchr(item, ':');
    if (colon) { *colon = 0; snprintf(p->kind, sizeof p->kind, "%.7s", colon + 1); }
    else snprintf(p->kind, sizeof p->kind, "t");
    size_t kl = strlen(p->kind);
    if (kl && p->kind[kl - 1] == '?') { p->optional = true; p->kind[kl - 1] = 0; }
    snprintf(p->name, sizeof p->name, "%.31s", item);
    sig += len;
    if (*sig == ',') sig++;
  }
  return n;
}

/* Converts value v to the signature kind; reports and returns false on error. */
static bool convert_arg(L *l, const char *op, const Param *p, Value v, Bound *b) {
  b->present = true;
  b->v = v;
  const char *k = p->kind;
  if (strcmp(k, "t") == 0) {
    if (v.k == V_TENSOR) return true;
    diag_error(l->d, v.loc, "%s: argument '%s' must be a tensor, found %s", op, p->name, vkind_name(v.k));
    return false;
  }
  if (strcmp(k, "int") == 0) {
    if (v.k == V_INT && dim_is_const(v.i, &b->iv[0])) { b->ni = 1; return true; }
    diag_error(l->d, v.loc, "%s: argument '%s' must be an integer constant, found %s", op, p->name,
               v.k == V_INT ? "a symbolic dim" : vkind_name(v.k));
    return false;
  }
  if (strcmp(k, "int2") == 0 || strcmp(k, "ints") == 0) {
    bool pair = k[3] == '2';
    if (v.k == V_INT && dim_is_const(v.i, &b->iv[0])) {
      b->ni = 1;
      if (pair) { b->iv[1] = b->iv[0]; b->ni = 2; }
      return true;
    }
    if (v.k == V_LIST && (!pair || v.n == 2) && v.n <= MAX_RANK) {
      for (int i = 0; i < v.n; i++)
        if (v.items[i].k != V_INT || !dim_is_const(v.items[i].i, &b->iv[i])) goto bad;
      b->ni = v.n;
      return true;
    }
  bad:
    diag_error(l->d, v.loc, "%s: argument '%s' must be %s, found %s", op, p->name,
               pair ? "an integer or a pair [a, b]" : "an integer or a list of integers", vkind_name(v.k));
    return false;
  }
  if (strcmp(k, "shape") == 0) {
    if (v.k == V_INT) { /* reshape(x, -1) */
      b->scalar = true;
      Value *it = arena_alloc(l->A, sizeof *it);
      *it = v;
      b->v.k = V_LIST, b->v.items = it, b->v.n = 1;
      return true;
    }
    if (v.k == V_LIST) {
      for (int i = 0; i < v.n; i++)
        if (v.items[i].k != V_INT) {
          diag_error(l->d, v.items[i].loc, "%s: '%s' must be a list of integer expressions", op, p->name);
          return false;
        }
      return true;
    }
    diag_error(l->d, v.loc, "%s: argument '%s' must be a list of integers, found %s", op, p->name, vkind_name(v.k));
    return false;
  }
  if (strcmp(k, "float") == 0) {
    int64_t c;
    if (v.k == V_FLOAT) { b->f = v.f; return true; }
    if (v.k == V_INT && dim_is_const(v.i, &c)) { b->f = (double)c; return true; }
    diag_error(l->d, v.loc, "%s: argument '%s' must be a number, found %s", op, p->name, vkind_name(v.k));
    return false;
  }
  if (strcmp(k, "bool") == 0) {
    if (v.k == V_BOOL) { b->iv[0] = v.f != 0; b->ni = 1; return true; }
    diag_error(l->d, v.loc, "%s: argument '%s' must be true or false, found %s", op, p->name, vkind_name(v.k));
    return false;
  }
  if (strcmp(k, "str") == 0) {
    if (v.k == V_STR) { b->s = v.s; return true; }
    diag_error(l->d, v.loc, "%s: argument '%s' must be a string, found %s", op, p->name, vkind_name(v.k));
    return false;
  }
  if (strcmp(k, "dim") == 0) { /* an integer expression, may be symbolic */
    if (v.k == V_INT) return true;
    diag_error(l->d, v.loc, "%s: argument '%s' must be an integer expression, found %s", op, p->name, vkind_name(v.k));
    return false;
  }
  if (strcmp(k, "tensors") == 0) {
    if (v.k == V_LIST && v.n > 0) {
      for (int i = 0; i < v.n; i++)
        if (v.items[i].k != V_TENSOR) {
          diag_error(l->d, v.items[i].loc, "%s: '%s' must be a list of tensors, but item %d is %s", op, p->name, i,
                     vkind_name(v.items[i].k));
          return false;
        }
      return true;
    }
    diag_error(l->d, v.loc, "%s: argument '%s' must be a non-empty list of tensors [a, b, ...], found %s", op, p->name,
               v.k == V_LIST ? "an empty list" : vkind_name(v.k));
    return false;
  }
  diag_error(l->d, v.loc, "%s: argument kind '%s' is not supported yet", op, k);
  return false;
}

/* Value of a default written in the signature ("1", "false", "-1", "none"). */
static Value default_value(L *l, const Param *p, Loc loc) {
  char txt[32];
  size_t n = strcspn(p->def, ",");
  snprintf(txt, sizeof txt, "%.*s", (int)n, p->def);
  Value v = {.loc = loc};
  if (strcmp(txt, "true") == 0 || strcmp(txt, "false") == 0) { v.k = V_BOOL; v.f = txt[0] == 't'; }
  else if (strcmp(p->kind, "str") == 0) { v.k = V_STR; v.s = arena_strdup(l->A, txt); }
  else if (strpbrk(txt, ".e")) { v.k = V_FLOAT; v.f = strtod(txt, NULL); }
  else { v.k = V_INT; v.i = dim_const(strtoll(txt, NULL, 10)); }
  return v;
}

/* Binds call arguments to the signature of `op`.  Scalars passed where an
 * elementwise op wants a tensor become constants. */
static bool bind_args(L *l, const Ast *call, int op, Param *ps, int *np, Bound *bs) {
  const char *name = op_info[op].name;
  int n = parse_sig(op_info[op].sig, ps);
  *np = n;
  memset(bs, 0, sizeof(Bound) * (size_t)n);
  bool ok = true;
  if (call->list.n > n) {
    diag_error(l->d, call->loc, "%s takes at most %d argument%s, got %d", name, n, n == 1 ? "" : "s", call->list.n);
    return false;
  }
  Value vals[12];
  bool given[12] = {0};
  for (int i = 0; i < call->list.n; i++) {
    vals[i] = lower_expr(l, call->list.items[i], NULL);
    given[i] = true;
  }
  for (int i = 0; i < call->list2.n; i++) {
    const Ast *kw = call->list2.items[i];
    int j = 0;
    while (j < n && strcmp(ps[j].name, kw->name) != 0) j++;
    if (j == n) {
      diag_error(l->d, kw->loc, "%s has no argument named '%s'", name, kw->name);
      ok = false;
      continue;
    }
    if (given[j]) {
      diag_error(l->d, kw->loc, "%s: argument '%s' is given twice", name, kw->name);
      ok = false;
      continue;
    }
    vals[j] = lower_expr(l, kw->a, NULL);
    given[j] = true;
  }
  if (!ok) return false;
  for (int j = 0; j < n; j++) {
    if (given[j]) {
      if (vals[j].k == V_NONE) { ok = false; continue; }
      Value v = vals[j];
      if ((op_info[op].flags & F_ELEM) && strcmp(ps[j].kind, "t") == 0 && v.k != V_TENSOR) {
        int id = as_operand(l, v);
        if (id < 0) { ok = false; continue; }
        v = tensor(id, v.loc);
      }
      bs[j].given = true;
      ok &= convert_arg(l, name, &ps[j], v, &bs[j]);
    } else if (ps[j].def) {
      ok &= convert_arg(l, name, &ps[j], default_value(l, &ps[j], call->loc), &bs[j]);
    } else if (!ps[j].optional) {
      diag_error(l->d, call->loc, "%s: missing argument '%s'", name, ps[j].name);
      ok = false;
    }
  }
  return ok;
}

static Bound *arg(Param *ps, Bound *bs, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (strcmp(ps[i].name, name) == 0) return &bs[i];
  return NULL; /* a signature typo: caught by every test of that op */
}

/* Attributes of the elementwise-with-attribute, shape and indexing ops
 * (layout in infer.c). */
static bool lower_op_attrs(L *l, const Ast *call, int op, Param *ps, Bound *bs, int np, Node *p) {
#define A(name) arg(ps, bs, np, name)
  switch (op) {
  case OP_CLAMP: {
    Bound *lo = A("min"), *hi = A("max");
    p->ia[0] = lo->present && hi->present ? 0 : lo->present ? 1 : hi->present ? 2 : 3;
    p->ia[1] = (lo->present && lo->v.k == V_FLOAT) || (hi->present && hi->v.k == V_FLOAT);
    p->nia = 2;
    p->fa[0] = lo->f, p->fa[1] = hi->f;
    if (p->ia[0] == 0 && p->fa[0] > p->fa[1]) p->fa[0] = p->fa[1]; /* min > max: all become max, as in PyTorch */
    return true;
  }
  case OP_ELU: p->fa[0] = A("alpha")->f; return true;
  case OP_LEAKY_RELU: p->fa[0] = A("negative_slope")->f; return true;
  case OP_DROPOUT: p->fa[0] = A("p")->f; return true;
  case OP_GELU: {
    const char *ap = A("approximate")->s;
    if (strcmp(ap, "none") != 0 && strcmp(ap, "tanh") != 0) {
      diag_error(l->d, call->loc, "gelu: approximate must be \"none\" or \"tanh\", got \"%s\"", ap);
      return false;
    }
    p->ia[0] = ap[0] == 't', p->nia = 1;
    return true;
  }
  case OP_CUMSUM: case OP_UNSQUEEZE: case OP_SQUEEZE: case OP_GATHER: case OP_INDEX_SELECT:
    p->ia[0] = A("dim")->iv[0], p->nia = 1;
    return true;
  case OP_INTERPOLATE: p->ia[0] = A("scale_factor")->iv[0], p->nia = 1, p->sa = A("mode")->s; return true;
  case OP_EXPAND: case OP_PAD: {
    Value lv = A(op == OP_EXPAND ? "shape" : "pad")->v;
    p->nda = lv.n;
    p->da = arena_alloc(l->A, sizeof(Dim) * (size_t)(lv.n ? lv.n : 1));
    for (int i = 0; i < lv.n; i++) p->da[i] = lv.items[i].i;
    if (op == OP_PAD) p->fa[0] = A("value")->f;
    return true;
  }
  case OP_SLICE:
    p->ia[0] = A("dim")->iv[0], p->nia = 1;
    p->da = arena_alloc(l->A, sizeof(Dim) * 4), p->nda = 4;
    p->da[0] = A("start")->v.i, p->da[1] = A("end")->v.i;
    return true;
  case OP_SPLIT: return true;
  case OP_CONCAT: case OP_STACK: p->ia[0] = A("dim")->iv[0], p->nia = 1; return true;
  default: return true;
  }
#undef A
}

/* split(x, sizes, dim): a tuple of slices, one node per piece.  sizes is a
 * list of integer expressions that must add up to the dim, or one integer
 * (pieces of that size, the last one smaller), as torch.split. */
static Value lower_split(L *l, Node p, int x, const Bound *sizes, int64_t dim) {
  const Type *t = &l->g->nodes[x].ty;
  const char *ts = type_str(l->A, l->g, t);
  if (t->rank == 0 || dim < -t->rank || dim >= t->rank) {
    diag_error(l->d, p.loc, "split: dim %lld is out of range for %s", (long long)dim, ts);
    return none;
  }
  int k = (int)(dim < 0 ? dim + t->rank : dim), n = sizes->v.n;
  Dim size = t->dim[k], *piece;
  int64_t c, total;
  if (sizes->scalar) {
    if (!dim_is_const(sizes->v.items[0].i, &c) || c < 1) {
      diag_error(l->d, p.loc, "split: the split size must be a positive integer constant");
      return none;
    }
    if (!dim_is_const(size, &total)) {
      diag_error(l->d, p.loc, "split: pieces of %lld need a static size in dim %d of %s; give the list of sizes instead",
                 (long long)c, k, ts);
      return none;
    }
    n = total == 0 ? 1 : (int)((total + c - 1) / c);
    if (total / c > 4096) {
      diag_error(l->d, p.loc, "split: %s into pieces of %lld makes too many pieces", ts, (long long)c);
      return none;
    }
    piece = arena_alloc(l->A, sizeof(Dim) * (size_t)n);
    for (int i = 0; i < n; i++) piece[i] = dim_const(total - i * c < c ? total - i * c : c);
  } else {
    piece = arena_alloc(l->A, sizeof(Dim) * (size_t)(n ? n : 1));
    Dim sum = dim_const(0);
    for (int i = 0; i < n; i++) {
      piece[i] = sizes->v.items[i].i;
      if (dim_is_const(piece[i], &c) && c < 0) {
        diag_error(l->d, p.loc, "split: size %d is negative (%lld)", i, (long long)c);
        return none;
      }
      sum = dim_add(sum, piece[i]);
    }
    if (!dim_eq(sum, size)) {
      if (n == 0 || dim_never_eq(sum, size) || (dim_is_const(sum, NULL) && dim_is_const(size, NULL))) {
        diag_error(l->d, p.loc, "split: the sizes add up to %s, but dim %d of %s is %s", dim_str(l->A, sum, l->g->sym), k,
                   ts, dim_str(l->A, size, l->g->sym));
        return none;
      }
      ir_add_check(l->g, sum, size, p.loc, "split: the sizes must add up to the dim");
    }
  }
  Value r = {.k = V_TUPLE, .loc = p.loc, .n = n};
  r.items = arena_alloc(l->A, sizeof(Value) * (size_t)n);
  Dim start = dim_const(0);
  for (int i = 0; i < n; i++) {
    Node q = {.op = OP_SLICE, .loc = p.loc, .nia = 1, .nda = 4};
    q.ia[0] = k;
    q.da = arena_alloc(l->A, sizeof(Dim) * 4);
    q.da[0] = start;
    q.da[1] = start = dim_add(start, piece[i]);
    r.items[i] = mk(l, q, 1, &x);
    if (r.items[i].k == V_NONE) return none;
  }
  return n == 1 ? r.items[0] : r;
}

/* An operator call: bind arguments, fill attributes (layout in infer.c). */
static Value lower_op(L *l, const Ast *call, int op) {
  Param ps[12];
  Bound bs[12];
  int np;
  if (op_info[op].flags & F_INTERNAL) {
    diag_error(l->d, call->loc, "unknown operator or block '%s'", op_info[op].name);
    return none;
  }
  if (!(op_info[op].flags & F_CPU)) {
    diag_error(l->d, call->loc, "operator '%s' is not implemented yet", op_info[op].name);
    return none;
  }
  if (!bind_args(l, call, op, ps, &np, bs)) return none;
  Node p = {0};
  p.op = (Op)op;
  p.loc = call->loc;
  int in[12], nin = 0;
  for (int i = 0; i < np; i++)
    if (strcmp(ps[i].kind, "t") == 0 && bs[i].present) in[nin++] = bs[i].v.node;
#define A(name) arg(ps, bs, np, name)
  switch (op) {
  case OP_CONV2D: {
    Bound *s = A("stride"), *pd = A("padding"), *dl = A("dilation");
    int64_t v[] = {s->iv[0], s->iv[1], pd->iv[0], pd->iv[1], dl->iv[0], dl->iv[1], A("groups")->iv[0]};
    memcpy(p.ia, v, sizeof v);
    p.nia = 7;
    break;
  }
  case OP_MAX_POOL2D:
  case OP_AVG_POOL2D: {
    Bound *k = A("kernel_size"), *s = A("stride"), *pd = A("padding"), *dl = A("dilation");
    if (!s->present) s = k;
    p.ia[0] = k->iv[0], p.ia[1] = k->iv[1], p.ia[2] = s->iv[0], p.ia[3] = s->iv[1];
    p.ia[4] = pd->iv[0], p.ia[5] = pd->iv[1];
    p.ia[6] = dl ? dl->iv[0] : 1, p.ia[7] = dl ? dl->iv[1] : 1;
    p.ia[8] = A("ceil_mode")->iv[0];
    p.ia[9] = op == OP_AVG_POOL2D ? A("count_include_pad")->iv[0] : 0;
    p.nia = 10;
    break;
  }
  case OP_ADAPTIVE_AVG_POOL2D: {
    Bound *o = A("output_size");
    p.ia[0] = o->iv[0], p.ia[1] = o->iv[1], p.nia = 2;
    break;
  }
  case OP_SUM: case OP_MEAN: case OP_MAX: case OP_MIN: case OP_PROD: case OP_ARGMAX: case OP_ARGMIN: {
    Bound *dm = A("dim");
    p.ia[0] = A("keepdim")->iv[0];
    p.ia[1] = dm->present ? dm->ni : -1;
    for (int i = 0; i < dm->ni && i < 12; i++) p.ia[2 + i] = dm->iv[i];
    p.nia = 2 + (dm->present ? dm->ni : 0);
    break;
  }
  case OP_SOFTMAX: case OP_LOG_SOFTMAX: p.ia[0] = A("dim")->iv[0], p.nia = 1; break;
  case OP_CLAMP: case OP_ELU: case OP_LEAKY_RELU: case OP_GELU: case OP_DROPOUT: case OP_CUMSUM:
  case OP_UNSQUEEZE: case OP_SQUEEZE: case OP_GATHER: case OP_INDEX_SELECT: case OP_INTERPOLATE:
  case OP_EXPAND: case OP_PAD: case OP_SLICE: case OP_SPLIT: case OP_CONCAT: case OP_STACK:
    if (!lower_op_attrs(l, call, op, ps, bs, np, &p)) return none;
    if (op == OP_SPLIT) return lower_split(l, p, in[0], A("sizes"), A("dim")->iv[0]);
    if (op == OP_CONCAT || op == OP_STACK) { /* inputs: the list */
      Value lv = A("tensors")->v;
      int *ins = arena_alloc(l->A, sizeof(int) * (size_t)lv.n);
      for (int i = 0; i < lv.n; i++) ins[i] = lv.items[i].node;
      return mk(l, p, lv.n, ins);
    }
    break;
  case OP_CROSS_ENTROPY: p.fa[0] = A("label_smoothing")->f; break;
  case OP_MSE_LOSS: { /* mean((pred - target)^2), built from the ops it is made of */
    Node sub = {.op = OP_SUB, .loc = call->loc};
    Value dv = mk(l, sub, 2, in);
    if (dv.k == V_NONE) return none;
    int sq_in[2] = {dv.node, dv.node};
    Node mul = {.op = OP_MUL, .loc = call->loc};
    Value sq = mk(l, mul, 2, sq_in);
    if (sq.k == V_NONE) return none;
    Node mean = {.op = OP_MEAN, .loc = call->loc};
    mean.ia[1] = -1;
    mean.nia = 2;
    if (!dtype_is_float(l->g->nodes[sq.node].ty.dt)) {
      diag_error(l->d, call->loc, "mse_loss needs floating-point tensors");
      return none;
    }
    return mk(l, mean, 1, &sq.node);
  }
  case OP_NLL_LOSS: { /* -mean(gather(logprobs, 1, unsqueeze(labels, 1))) */
    const Type *lp = &l->g->nodes[in[0]].ty, *lb = &l->g->nodes[in[1]].ty;
    if (lp->rank != 2 || !dtype_is_float(lp->dt) || lb->rank != 1 || dtype_is_float(lb->dt) || lb->dt == DT_BOOL) {
      diag_error(l->d, call->loc, "nll_loss expects log-probabilities [N, C] and integer labels [N], got %s and %s",
                 type_str(l->A, l->g, lp), type_str(l->A, l->g, lb));
      return none;
    }
    Value v = unop(l, OP_TO_I64, call->loc, in[1]);
    Node u = {.op = OP_UNSQUEEZE, .loc = call->loc, .nia = 1};
    u.ia[0] = 1;
    if (v.k != V_NONE) v = mk(l, u, 1, &v.node);
    if (v.k == V_NONE) return none;
    Node gt = {.op = OP_GATHER, .loc = call->loc, .nia = 1};
    gt.ia[0] = 1;
    int gin[2] = {in[0], v.node};
    v = mk(l, gt, 2, gin);
    if (v.k == V_NONE) return none;
    Node mean = {.op = OP_MEAN, .loc = call->loc, .nia = 2};
    mean.ia[1] = -1;
    v = mk(l, mean, 1, &v.node);
    return v.k == V_NONE ? none : unop(l, OP_NEG, call->loc, v.node);
  }
  case OP_BCE_WITH_LOGITS: { /* mean(relu(x) - x * t + log(1 + exp(-|x|))), PyTorch's stable form */
    if (!dtype_is_float(l->g->nodes[in[0]].ty.dt)) {
      diag_error(l->d, call->loc, "binary_cross_entropy_with_logits needs floating-point logits");
      return none;
    }
    Value r = unop(l, OP_RELU, call->loc, in[0]);
    Value xt = binop(l, OP_MUL, call->loc, in[0], in[1]);
    Value ab = unop(l, OP_ABS, call->loc, in[0]);
    if (r.k == V_NONE || xt.k == V_NONE || ab.k == V_NONE) return none;
    Value e = unop(l, OP_EXP, call->loc, unop(l, OP_NEG, call->loc, ab.node).node);
    Value lg = unop(l, OP_LOG, call->loc, binop(l, OP_ADD, call->loc, mkconst(l, 1.0, DT_F32, call->loc), e.node).node);
    Value sum = binop(l, OP_ADD, call->loc, binop(l, OP_SUB, call->loc, r.node, xt.node).node, lg.node);
    Node mean = {.op = OP_MEAN, .loc = call->loc, .nia = 2};
    mean.ia[1] = -1;
    return sum.k == V_NONE ? none : mk(l, mean, 1, &sum.node);
  }
  case OP_FLATTEN: p.ia[0] = A("start_dim")->iv[0], p.ia[1] = A("end_dim")->iv[0], p.nia = 2; break;
  case OP_TRANSPOSE: p.ia[0] = A("dim0")->iv[0], p.ia[1] = A("dim1")->iv[0], p.nia = 2; break;
  case OP_RESHAPE: case OP_PERMUTE: {
    Value lv = A(op == OP_RESHAPE ? "shape" : "dims")->v;
    p.nda = lv.n;
    p.da = arena_alloc(l->A, sizeof(Dim) * (size_t)(lv.n ? lv.n : 1));
    for (int i = 0; i < lv.n; i++) p.da[i] = lv.items[i].i;
    break;
  }
  case OP_CONV1D: { /* conv2d's layout with H = 1 */
    int64_t v[] = {1, A("stride")->iv[0], 0, A("padding")->iv[0], 1, A("dilation")->iv[0], A("groups")->iv[0]};
    memcpy(p.ia, v, sizeof v);
    p.nia = 7;
    break;
  }
  case OP_CONV_TRANSPOSE2D: {
    Bound *s = A("stride"), *pd = A("padding"), *op_ = A("output_padding"), *dl = A("dilation");
    int64_t v[] = {s->iv[0], s->iv[1], pd->iv[0], pd->iv[1], op_->iv[0], op_->iv[1], A("groups")->iv[0], dl->iv[0], dl->iv[1]};
    memcpy(p.ia, v, sizeof v);
    p.nia = 9;
    break;
  }
  case OP_BATCH_NORM: case OP_LAYER_NORM: case OP_GROUP_NORM: case OP_RMS_NORM: {
    Bound *w = A("weight"), *bb = A("bias"), *mo = A("momentum");
    p.ia[0] = w->present, p.ia[1] = bb && bb->present;
    if (op == OP_GROUP_NORM) p.ia[2] = A("groups")->iv[0];
    p.nia = 3;
    p.fa[0] = A("eps")->f, p.fa[1] = mo ? mo->f : 0;
    break;
  }
  case OP_SDPA: {
    Bound *sc = A("scale");
    p.ia[0] = A("attn_mask")->present, p.ia[1] = A("causal")->iv[0], p.ia[2] = sc->present;
    p.nia = 3;
    p.fa[0] = sc->present ? sc->f : 0;
    break;
  }
  default: break;
  }
#undef A
  return mk_f32(l, p, nin, in);
}

/* ---- blocks ---------------------------------------------------------------------- */
static const Ast *find_top(L *l, AstKind kind, const char *name) {
  for (int i = 0; i < l->file->list.n; i++) {
    const Ast *t = l->file->list.items[i];
    if (t->kind == kind && strcmp(t->name, name) == 0) return t;
  }
  return NULL;
}

static void lower_stmts(L *l, const AstList *body);

/* Matches a tensor argument against a pattern like f32[..., D]. */
static bool match_pattern(L *l, const Ast *decl, Value v, Loc at) {
  const Ast *t = decl->a;
  Type *ty = &l->g->nodes[v.node].ty;
  int dt = dtype_lookup(t->name);
  char *have = type_str(l->A, l->g, ty);
  if (dt < 0) {
    diag_error(l->d, t->loc, "unknown tensor type '%s'", t->name);
    return false;
  }
  if (dt != (int)ty->dt) {
    diag_error(l->d, at, "block argument '%s' expects %s[...], got %s", decl->name, t->name, have);
    return false;
  }
  int ell = -1;
  for (int i = 0; i < t->list.n; i++)
    if (t->list.items[i]->kind == AST_ELLIPSIS) ell = i;
  int fixed = t->list.n - (ell >= 0);
  if (ell < 0 ? ty->rank != fixed : ty->rank < fixed) {
    diag_error(l->d, at, "block argument '%s': pattern has %d dims%s, got %s", decl->name, fixed,
               ell >= 0 ? " and '...'" : "", have);
    return false;
  }
  for (int i = 0; i < t->list.n; i++) {
    const Ast *e = t->list.items[i];
    if (i == ell) continue;
    int k = ell >= 0 && i > ell ? ty->rank - (t->list.n - i) : i;
    Dim have_d = ty->dim[k];
    if (e->kind == AST_NAME && !strchr(e->name, '.') && !lookup(l, e->name)) {
      Value b = {.k = V_INT, .i = have_d, .loc = e->loc};
      bind(l, e->name, b);
      continue;
    }
    Value want = lower_expr(l, e, NULL);
    if (want.k != V_INT) {
      if (want.k != V_NONE) diag_error(l->d, e->loc, "a dim must be an integer expression");
      return false;
    }
    if (!dim_eq(want.i, have_d)) {
      if (dim_is_const(want.i, NULL) && dim_is_const(have_d, NULL)) {
        diag_error(l->d, at, "block argument '%s': dim %d must be %s, got %s", decl->name, k,
                   dim_str(l->A, want.i, l->g->sym), have);
        return false;
      }
      ir_add_check(l->g, want.i, have_d, at, "block argument dims must match the pattern");
    }
  }
  return true;
}

static Value call_block(L *l, const Ast *blk, const Ast *call, const char *inst) {
  if (l->depth > 64) {
    diag_error(l->d, call->loc, "blocks nest more than 64 deep (recursive block '%s'?)", blk->name);
    return none;
  }
  if (!inst) {
    diag_error(l->d, call->loc, "block call '%s' inside a larger expression needs `as PATH` to name its parameters", blk->name);
    return none;
  }
  /* evaluate arguments in the caller's scope */
  int na = blk->list2.n;
  Value vals[32];
  bool given[32] = {0};
  if (na > 32 || call->list.n > na) {
    diag_error(l->d, call->loc, "block '%s' takes %d argument%s, got %d", blk->name, na, na == 1 ? "" : "s", call->list.n);
    return none;
  }
  bool ok = true;
  for (int i = 0; i < call->list.n; i++) vals[i] = lower_expr(l, call->list.items[i], NULL), given[i] = true;
  for (int i = 0; i < call->list2.n; i++) {
    const Ast *kw = call->list2.items[i];
    int j = 0;
    while (j < na && strcmp(blk->list2.items[j]->name, kw->name) != 0) j++;
    if (j == na) { diag_error(l->d, kw->loc, "block '%s' has no argument named '%s'", blk->name, kw->name); ok = false; continue; }
    if (given[j]) { diag_error(l->d, kw->loc, "block '%s': argument '%s' is given twice", blk->name, kw->name); ok = false; continue; }
    vals[j] = lower_expr(l, kw->a, NULL), given[j] = true;
  }
  if (!ok) return none;
  for (int j = 0; j < na; j++)
    if (given[j] && vals[j].k == V_NONE) return none;

  Bind *saved = l->scope;
  const char *saved_prefix = l->prefix;
  bool saved_in_block = l->in_block;
  l->scope = NULL;
  l->prefix = arena_printf(l->A, "%s%s.", l->prefix, inst);
  l->in_block = true;
  l->depth++;
  for (int j = 0; j < na && ok; j++) {
    const Ast *decl = blk->list2.items[j];
    Value v;
    if (given[j]) v = vals[j];
    else if (decl->b) v = lower_expr(l, decl->b, NULL); /* defaults see earlier args */
    else {
      diag_error(l->d, call->loc, "block '%s': missing argument '%s'", blk->name, decl->name);
      ok = false;
      break;
    }
    if (v.k == V_NONE) { ok = false; break; }
    const Ast *t = decl->a;
    if (t->ival) { /* tensor pattern */
      if (v.k != V_TENSOR) {
        diag_error(l->d, v.loc, "block argument '%s' must be a tensor, found %s", decl->name, vkind_name(v.k));
        ok = false;
        break;
      }
      ok = match_pattern(l, decl, v, v.loc);
    } else {
      VKind want = strcmp(t->name, "int") == 0 ? V_INT : strcmp(t->name, "float") == 0 ? V_FLOAT
                 : strcmp(t->name, "bool") == 0 ? V_BOOL : V_NONE;
      if (want == V_NONE) {
        diag_error(l->d, t->loc, "unknown argument type '%s' (expected a tensor pattern, int, float or bool)", t->name);
        ok = false;
        break;
      }
      if (want == V_FLOAT && v.k == V_INT) {
        int64_t c;
        if (dim_is_const(v.i, &c)) v.k = V_FLOAT, v.f = (double)c;
      }
      if (v.k != want) {
        diag_error(l->d, v.loc, "block argument '%s' must be %s, found %s", decl->name, vkind_name(want), vkind_name(v.k));
        ok = false;
        break;
      }
    }
    bind(l, decl->name, v);
  }
  Value result = none;
  if (ok) {
    int before = l->d->nerrors;
    lower_stmts(l, &blk->list);
    if (l->d->nerrors == before) {
      int nr = blk->list3.n;
      Value *items = arena_alloc(l->A, sizeof(Value) * (size_t)(nr ? nr : 1));
      for (int i = 0; i < nr; i++) {
        const Ast *r = blk->list3.items[i];
        Bind *b = lookup(l, r->name);
        if (!b) {
          diag_error(l->d, r->loc, "block '%s' never assigns its result '%s'", blk->name, r->name);
          items[i] = none;
        } else items[i] = b->v;
      }
      if (nr == 1) result = items[0];
      else { result.k = V_TUPLE; result.items = items; result.n = nr; result.loc = call->loc; }
    }
  }
  l->depth--;
  l->scope = saved;
  l->prefix = saved_prefix;
  l->in_block = saved_in_block;
  return result;
}

/* ---- expressions ---------------------------------------------------------------- */
static Value scalar_binop(L *l, const Ast *e, Value a, Value b) {
  Value r = {.loc = e->loc};
  int op = e->op;
  if (a.k == V_INT && b.k == V_INT && op != AOP_EQ && op < 256) {
    r.k = V_INT;
    if (op == '+') r.i = dim_add(a.i, b.i);
    else if (op == '-') r.i = dim_sub(a.i, b.i);
    else if (op == '*') r.i = dim_mul(a.i, b.i);
    else if (op == '/') {
      if (!dim_div(a.i, b.i, &r.i)) {
        diag_error(l->d, e->loc, "integer division %s / %s is not exact", dim_str(l->A, a.i, l->g->sym),
                   dim_str(l->A, b.i, l->g->sym));
        return none;
      }
    } else {
      diag_error(l->d, e->loc, "'@' needs tensors");
      return none;
    }
    return r;
  }
  double x, y;
  int64_t c;
  if (a.k == V_FLOAT || a.k == V_BOOL) x = a.f;
  else if (a.k == V_INT && dim_is_const(a.i, &c)) x = (double)c;
  else goto bad;
  if (b.k == V_FLOAT || b.k == V_BOOL) y = b.f;
  else if (b.k == V_INT && dim_is_const(b.i, &c)) y = (double)c;
  else goto bad;
  r.k = V_FLOAT;
  switch (op) {
  case '+': r.f = x + y; return r;
  case '-': r.f = x - y; return r;
  case '*': r.f = x * y; return r;
  case '/': r.f = x / y; return r;
  }
  r.k = V_BOOL;
  switch (op) {
  case AOP_EQ: r.f = x == y; return r;
  case AOP_NE: r.f = x != y; return r;
  case AOP_LT: r.f = x < y; return r;
  case AOP_LE: r.f = x <= y; return r;
  case AOP_GT: r.f = x > y; return r;
  case AOP_GE: r.f = x >= y; return r;
  }
bad:
  diag_error(l->d, e->loc, "operator cannot combine %s and %s", vkind_name(a.k), vkind_name(b.k));
  return none;
}

static Value lower_expr(L *l, const Ast *e, const char *inst) {
  Value v = {.loc = e->loc};
  switch (e->kind) {
  case AST_INT: v.k = V_INT; v.i = dim_const(e->ival); return v;
  case AST_FLOAT: v.k = V_FLOAT; v.f = e->fval; return v;
  case AST_BOOL: v.k = V_BOOL; v.f = (double)e->ival; return v;
  case AST_STRING: v.k = V_STR; v.s = e->sval; return v;
  case AST_NAME: {
    const char *name = interpolate(l, e->name, e->loc);
    Bind *b = lookup(l, name);
    if (!b) {
      diag_error(l->d, e->loc, "undefined name '%s'", name);
      return none;
    }
    if (b->v.k == V_NONE) return none; /* its definition failed: already reported */
    v = b->v;
    v.loc = e->loc;
    return v;
  }
  case AST_LIST: {
    v.k = V_LIST;
    v.n = e->list.n;
    v.items = arena_alloc(l->A, sizeof(Value) * (size_t)(v.n ? v.n : 1));
    for (int i = 0; i < v.n; i++) {
      v.items[i] = lower_expr(l, e->list.items[i], NULL);
      if (v.items[i].k == V_NONE) return none;
    }
    return v;
  }
  case AST_UNARY: {
    Value a = lower_expr(l, e->a, NULL);
    switch (a.k) {
    case V_NONE: return none;
    case V_INT: a.i = dim_sub(dim_const(0), a.i); a.loc = e->loc; return a;
    case V_FLOAT: a.f = -a.f; a.loc = e->loc; return a;
    case V_TENSOR: {
      Node p = {.op = OP_NEG, .loc = e->loc};
      return mk(l, p, 1, &a.node);
    }
    default: diag_error(l->d, e->loc, "cannot negate %s", vkind_name(a.k)); return none;
    }
  }
  case AST_BINARY: {
    Value a = lower_expr(l, e->a, NULL), b = lower_expr(l, e->b, NULL);
    if (a.k == V_NONE || b.k == V_NONE) return none;
    if (a.k != V_TENSOR && b.k != V_TENSOR) return scalar_binop(l, e, a, b);
    Op op;
    switch (e->op) {
    case '+': op = OP_ADD; break;
    case '-': op = OP_SUB; break;
    case '*': op = OP_MUL; break;
    case '/': op = OP_DIV; break;
    case '@': op = OP_MATMUL; break;
    case AOP_EQ: op = OP_EQ; break;
    case AOP_NE: op = OP_NE; break;
    case AOP_LT: op = OP_LT; break;
    case AOP_LE: op = OP_LE; break;
    case AOP_GT: op = OP_GT; break;
    default: op = OP_GE; break;
    }
    if (op == OP_MATMUL && (a.k != V_TENSOR || b.k != V_TENSOR)) {
      diag_error(l->d, e->loc, "'@' needs two tensors");
      return none;
    }
    int in[2] = {as_operand(l, a), as_operand(l, b)};
    if (in[0] < 0 || in[1] < 0) return none;
    Node p = {.op = op, .loc = e->loc};
    return mk_f32(l, p, 2, in);
  }
  case AST_CALL: {
    const char *as = e->sval ? interpolate(l, e->sval, e->loc) : inst;
    const Ast *blk = find_top(l, AST_BLOCK, e->name);
    if (blk) return call_block(l, blk, e, as);
    if (e->sval) {
      diag_error(l->d, e->loc, "`as` names a block instance, but '%s' is an operator", e->name);
      return none;
    }
    int op = op_lookup(e->name);
    if (op < 0) {
      diag_error(l->d, e->loc, "unknown operator or block '%s'", e->name);
      return none;
    }
    return lower_op(l, e, op);
  }
  default:
    diag_error(l->d, e->loc, "%s is not an expression", ast_kind_name(e->kind));
    return none;
  }
}

/* ---- statements ---------------------------------------------------------------- */
static void set_hint(L *l, int from, Value v, const char *name) {
  if (v.k == V_TENSOR && v.node >= from && !l->g->nodes[v.node].hint) l->g->nodes[v.node].hint = name;
}

static bool lower_init(L *l, const Ast *e, Node *n) {
  static const char *names[] = {"zeros", "ones", "normal", "uniform", "kaiming_uniform", "xavier_uniform"};
  const char *nm = e ? e->name : "zeros";
  int k = -1;
  if (e && e->kind != AST_NAME && e->kind != AST_CALL) nm = "";
  for (int i = 0; i < 6 && nm; i++)
    if (strcmp(names[i], nm) == 0) k = i;
  bool call = e && e->kind == AST_CALL;
  bool want_args = k == INIT_NORMAL || k == INIT_UNIFORM;
  if (k < 0 || (call && !want_args)) {
    diag_error(l->d, e->loc, "unknown initialiser (expected zeros, ones, normal(mean, std), uniform(lo, hi), kaiming_uniform or xavier_uniform)");
    return false;
  }
  n->init = (InitKind)k;
  if (!want_args) return true;
  double vals[2] = {k == INIT_NORMAL ? 0.0 : 0.0, 1.0};
  const char *kw[2][3] = {{"mean", "lo", "a"}, {"std", "hi", "b"}};
  if (call) {
    if (e->list.n > 2) { diag_error(l->d, e->loc, "%s takes 2 arguments", nm); return false; }
    for (int i = 0; i < e->list.n + e->list2.n; i++) {
      const Ast *x = i < e->list.n ? e->list.items[i] : e->list2.items[i - e->list.n]->a;
      int slot = i;
      if (i >= e->list.n) {
        const char *kn = e->list2.items[i - e->list.n]->name;
        slot = -1;
        for (int s = 0; s < 2; s++)
          for (int j = 0; j < 3; j++)
            if (strcmp(kw[s][j], kn) == 0) slot = s;
        if (slot < 0) { diag_error(l->d, e->list2.items[i - e->list.n]->loc, "%s has no argument '%s'", nm, kn); return false; }
      }
      Value v = lower_expr(l, x, NULL);
      int64_t c;
      if (v.k == V_FLOAT) vals[slot] = v.f;
      else if (v.k == V_INT && dim_is_const(v.i, &c)) vals[slot] = (double)c;
      else { if (v.k != V_NONE) diag_error(l->d, x->loc, "%s: expected a number", nm); return false; }
    }
  }
  n->init_a = vals[0];
  n->init_b = vals[1];
  return true;
}

static void lower_optimizer(L *l, const Ast *e);

static void lower_stmt(L *l, const Ast *s) {
  Graph *g = l->g;
  int from = g->n;
  switch (s->kind) {
  case AST_INPUT: {
    if (l->in_block) { diag_error(l->d, s->loc, "'input' is not allowed inside a block (use block arguments)"); return; }
    if (lookup(l, s->name)) { diag_error(l->d, s->loc, "'%s' is already defined", s->name); return; }
    Type t;
    /* a train input may only use the model's symbolic dims: the run API
     * passes the same dims */
    if (!lower_type(l, s->a, !l->in_train, false, &t)) return;
    /* symbolic dims are >= 1, so the fixed dims bound the size from below */
    int64_t fixed = 1, c;
    for (int i = 0; i < t.rank; i++)
      if (dim_is_const(t.dim[i], &c) && c > 0 && __builtin_mul_overflow(fixed, c, &fixed)) fixed = INT64_MAX;
    if (fixed > ((int64_t)1 << 36)) {
      diag_error(l->d, s->loc, "input '%s' is too large (more than 2^36 elements)", s->name);
      return;
    }
    int id = ir_add(g, OP_INPUT, s->loc, 0, NULL);
    g->nodes[id].ty = t;
    g->nodes[id].name = s->name;
    g->nodes[id].hint = s->name;
    int **list = l->in_train ? &g->train_inputs : &g->inputs;
    int *count = l->in_train ? &g->ntrain_inputs : &g->ninputs;
    int *ins = arena_alloc(l->A, sizeof(int) * (size_t)(*count + 1));
    if (*count) memcpy(ins, *list, sizeof(int) * (size_t)*count);
    ins[(*count)++] = id;
    *list = ins;
    bind(l, s->name, tensor(id, s->loc));
    return;
  }
  case AST_PARAM:
  case AST_BUFFER: {
    const char *local = interpolate(l, s->name, s->loc);
    const char *path = arena_printf(l->A, "%s%s", l->prefix, local);
    for (int i = 0; i < g->nties; i++)
      if (strcmp(g->tie_names[i], path) == 0) {
        diag_error(l->d, s->loc, "'%s' is already a tied name", path);
        return;
      }
    for (int i = 0; i < g->ntensors; i++)
      if (strcmp(g->nodes[g->tensors[i]].name, path) == 0) {
        diag_error(l->d, s->loc, "'%s' is declared twice", path);
        diag_note(l->d, g->nodes[g->tensors[i]].loc, "first declared here");
        return;
      }
    Type t;
    if (!lower_type(l, s->a, false, true, &t)) return;
    bool k;
    int64_t numel = type_numel_const(&t, &k);
    Dim nd = type_numel(&t);
    if (nd.bad || numel < 0 || numel > ((int64_t)1 << 36)) {
      diag_error(l->d, s->loc, "'%s' is too large (more than 2^36 elements)", path);
      return;
    }
    int id = ir_add(g, s->kind == AST_PARAM ? OP_PARAM : OP_BUFFER, s->loc, 0, NULL);
    Node *n = &g->nodes[id];
    n->ty = t;
    n->name = path;
    n->hint = path;
    if (!lower_init(l, s->b, n)) return;
    int *ts = arena_alloc(l->A, sizeof(int) * (size_t)(g->ntensors + 1));
    if (g->ntensors) memcpy(ts, g->tensors, sizeof(int) * (size_t)g->ntensors);
    ts[g->ntensors++] = id;
    g->tensors = ts;
    bind(l, local, tensor(id, s->loc));
    return;
  }
  case AST_TIE: {
    const char *local = interpolate(l, s->name, s->loc), *target = interpolate(l, s->sval, s->loc);
    const char *path = arena_printf(l->A, "%s%s", l->prefix, local);
    Bind *b = lookup(l, target);
    if (!b || b->v.k != V_TENSOR || (g->nodes[b->v.node].op != OP_PARAM && g->nodes[b->v.node].op != OP_BUFFER)) {
      diag_error(l->d, s->loc, "tie: '%s' is not a param or buffer declared before", target);
      return;
    }
    for (int i = 0; i < g->ntensors; i++)
      if (strcmp(g->nodes[g->tensors[i]].name, path) == 0) {
        diag_error(l->d, s->loc, "tie: '%s' is already a param or buffer", path);
        return;
      }
    for (int i = 0; i < g->nties; i++)
      if (strcmp(g->tie_names[i], path) == 0) {
        diag_error(l->d, s->loc, "tie: '%s' is already tied", path);
        return;
      }
    const char **names = arena_alloc(l->A, sizeof(char *) * (size_t)(g->nties + 1));
    int *nodes = arena_alloc(l->A, sizeof(int) * (size_t)(g->nties + 1));
    if (g->nties) {
      memcpy(names, g->tie_names, sizeof(char *) * (size_t)g->nties);
      memcpy(nodes, g->tie_nodes, sizeof(int) * (size_t)g->nties);
    }
    names[g->nties] = path;
    nodes[g->nties++] = b->v.node;
    g->tie_names = names;
    g->tie_nodes = nodes;
    bind(l, local, b->v);
    return;
  }
  case AST_CONST: {
    Value v = lower_expr(l, s->a, NULL);
    int64_t c;
    if (v.k == V_NONE) return;
    if (!const_int(l, v, &c, "a const")) return;
    bind(l, s->name, v);
    return;
  }
  case AST_ASSIGN: {
    const char *first = s->list2.items[0]->name;
    if (l->in_train && s->list2.n == 1 && strcmp(first, "optimizer") == 0) {
      lower_optimizer(l, s->a);
      return;
    }
    Value v = lower_expr(l, s->a, s->a->kind == AST_CALL ? interpolate(l, first, s->loc) : NULL);
    if (v.k == V_NONE) { /* bind the names anyway so later uses do not cascade */
      for (int i = 0; i < s->list2.n; i++) bind(l, s->list2.items[i]->name, none);
      return;
    }
    int nt = s->list2.n;
    if (nt == 1) {
      if (v.k == V_TUPLE) { diag_error(l->d, s->loc, "cannot assign %d values to one name", v.n); return; }
      set_hint(l, from, v, first);
      bind(l, first, v);
      if (l->in_train && strcmp(first, "loss") == 0) {
        Node *n = v.k == V_TENSOR ? &g->nodes[v.node] : NULL;
        if (!n || n->ty.rank != 0 || n->ty.dt != DT_F32) {
          diag_error(l->d, s->loc, "the loss must be an f32 scalar, found %s",
                     n ? type_str(l->A, g, &n->ty) : vkind_name(v.k));
          return;
        }
        g->loss = g->eval_loss = v.node;
      }
      return;
    }
    if (v.k != V_TUPLE || v.n != nt) {
      diag_error(l->d, s->loc, "cannot unpack %s into %d names", v.k == V_TUPLE ? arena_printf(l->A, "%d values", v.n) : vkind_name(v.k), nt);
      return;
    }
    for (int i = 0; i < nt; i++) {
      set_hint(l, from, v.items[i], s->list2.items[i]->name);
      bind(l, s->list2.items[i]->name, v.items[i]);
    }
    return;
  }
  case AST_OUTPUT: {
    if (l->in_block) { diag_error(l->d, s->loc, "'output' is not allowed inside a block (name the block's results instead)"); return; }
    Value v;
    if (s->a) {
      v = lower_expr(l, s->a, s->a->kind == AST_CALL ? s->name : NULL);
      if (v.k == V_NONE) { bind(l, s->name, none); return; }
      set_hint(l, from, v, s->name);
      bind(l, s->name, v);
    } else {
      Bind *b = lookup(l, s->name);
      if (!b) { diag_error(l->d, s->loc, "undefined name '%s'", s->name); return; }
      if (b->v.k == V_NONE) return;
      v = b->v;
    }
    if (v.k != V_TENSOR) { diag_error(l->d, s->loc, "output '%s' must be a tensor, found %s", s->name, vkind_name(v.k)); return; }
    for (int i = 0; i < g->noutputs; i++)
      if (strcmp(g->outputs[i].name, s->name) == 0) { diag_error(l->d, s->loc, "output '%s' is declared twice", s->name); return; }
    Output *o = arena_alloc(l->A, sizeof(Output) * (size_t)(g->noutputs + 1));
    if (g->noutputs) memcpy(o, g->outputs, sizeof(Output) * (size_t)g->noutputs);
    o[g->noutputs++] = (Output){s->name, v.node};
    g->outputs = o;
    return;
  }
  case AST_REPEAT: {
    Value a = lower_expr(l, s->a, NULL), b = lower_expr(l, s->b, NULL);
    int64_t lo, hi;
    if (!const_int(l, a, &lo, "a repeat bound") || !const_int(l, b, &hi, "a repeat bound")) return;
    if (hi - lo > 100000) { diag_error(l->d, s->loc, "repeat of %lld iterations is too many (at most 100000)", (long long)(hi - lo)); return; }
    for (int64_t i = lo; i < hi; i++) {
      Value iv = {.k = V_INT, .i = dim_const(i), .loc = s->loc};
      bind(l, s->name, iv);
      int before = l->d->nerrors;
      lower_stmts(l, &s->list);
      if (l->d->nerrors > before) return; /* one report per error, not per iteration */
    }
    return;
  }
  default:
    diag_error(l->d, s->loc, "%s is not allowed here", ast_kind_name(s->kind));
  }
}

/* optimizer = sgd(lr, momentum=0, weight_decay=0, nesterov=false)
 *           | adam(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0)
 *           | adamw(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01) */
static void lower_optimizer(L *l, const Ast *e) {
  Optimizer *o = &l->g->opt;
  memset(o, 0, sizeof *o);
  o->loc = e->loc;
  if (e->kind != AST_CALL || e->sval ||
      (strcmp(e->name, "sgd") && strcmp(e->name, "adam") && strcmp(e->name, "adamw"))) {
    diag_error(l->d, e->loc, "optimizer must be sgd(...), adam(...) or adamw(...)");
    return;
  }
  bool sgd = strcmp(e->name, "sgd") == 0;
  o->kind = sgd ? OPT_SGD : strcmp(e->name, "adam") == 0 ? OPT_ADAM : OPT_ADAMW;
  const char *names[6] = {"lr", "momentum", "weight_decay", "nesterov", NULL, NULL};
  const char *anames[6] = {"lr", "beta1", "beta2", "eps", "weight_decay", NULL};
  const char **nm = sgd ? names : anames;
  double vals[6] = {sgd ? -1 : 1e-3, sgd ? 0 : 0.9, sgd ? 0 : 0.999, sgd ? 0 : 1e-8, o->kind == OPT_ADAMW ? 0.01 : 0, 0};
  bool given[6] = {0};
  int nparams = sgd ? 4 : 5;
  if (e->list.n > nparams) {
    diag_error(l->d, e->loc, "%s takes at most %d arguments, got %d", e->name, nparams, e->list.n);
    return;
  }
  for (int i = 0; i < e->list.n + e->list2.n; i++) {
    const Ast *a = i < e->list.n ? e->list.items[i] : e->list2.items[i - e->list.n];
    int slot = i;
    if (i >= e->list.n) {
      slot = -1;
      for (int j = 0; j < nparams; j++)
        if (strcmp(nm[j], a->name) == 0) slot = j;
      if (slot < 0) {
        diag_error(l->d, a->loc, "%s has no argument named '%s'", e->name, a->name);
        return;
      }
      a = a->a;
    }
    Value v = lower_expr(l, a, NULL);
    int64_t c;
    if (v.k == V_FLOAT || v.k == V_BOOL) vals[slot] = v.f;
    else if (v.k == V_INT && dim_is_const(v.i, &c)) vals[slot] = (double)c;
    else {
      if (v.k != V_NONE) diag_error(l->d, a->loc, "%s: '%s' must be a number", e->name, nm[slot]);
      return;
    }
    given[slot] = true;
  }
  if (sgd && !given[0]) {
    diag_error(l->d, e->loc, "sgd needs a learning rate: sgd(lr=...)");
    return;
  }
  o->lr = vals[0];
  if (sgd) o->momentum = vals[1], o->weight_decay = vals[2], o->nesterov = vals[3] != 0;
  else o->beta1 = vals[1], o->beta2 = vals[2], o->eps = vals[3], o->weight_decay = vals[4];
  if (!(o->lr >= 0) || o->momentum < 0 || o->weight_decay < 0 || o->beta1 < 0 || o->beta1 >= 1 ||
      o->beta2 < 0 || o->beta2 >= 1 || o->eps < 0)
    diag_error(l->d, e->loc, "%s: hyperparameters out of range (lr >= 0, 0 <= beta < 1, eps >= 0, weight_decay >= 0)", e->name);
  if (sgd && o->nesterov && o->momentum <= 0)
    diag_error(l->d, e->loc, "sgd: nesterov momentum requires a momentum > 0");
}

static void lower_stmts(L *l, const AstList *body) {
  for (int i = 0; i < body->n; i++) lower_stmt(l, body->items[i]);
}

Graph *lower_model(Arena *A, const Ast *file, const char *model_name, Diag *d) {
  const Ast *model = NULL;
  int nmodels = 0;
  char names[256] = "";
  for (int i = 0; i < file->list.n; i++) {
    const Ast *t = file->list.items[i];
    if (t->kind != AST_MODEL) continue;
    nmodels++;
    if (strlen(names) < 200) snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", nmodels > 1 ? ", " : "", t->name);
    if (model_name ? strcmp(t->name, model_name) == 0 : !model) model = t;
  }
  Loc none_loc = {0};
  if (model_name && !model) {
    diag_error(d, none_loc, "no model named '%s' in this file (models: %s)", model_name, nmodels ? names : "none");
    return NULL;
  }
  if (!model) {
    diag_error(d, none_loc, "the file defines no model");
    return NULL;
  }
  if (!model_name && nmodels > 1) {
    diag_error(d, none_loc, "the file defines several models (%s); choose one with --model NAME", names);
    return NULL;
  }
  /* the model name prefixes every generated C name (NAME_create, struct
   * NAME): it must not clash with C keywords or the C library */
  static const char *const clash[] = {"auto", "break", "case", "char", "const", "continue", "default", "do",
      "double", "else", "enum", "extern", "float", "for", "goto", "if", "inline", "int", "long", "register",
      "restrict", "return", "short", "signed", "sizeof", "static", "struct", "switch", "typedef", "union",
      "unsigned", "void", "volatile", "while", "abs", "div", "exit", "free", "malloc", "calloc", "realloc",
      "abort", "atoi", "exp", "log", "sqrt", "pow", "sin", "cos", "tan", "floor", "ceil", "round", "fabs",
      "printf", "puts", "main", "memcpy", "memset", "strlen", "time", "clock", "rand", "signal", "raise",
      "remove", "rename", "system", "labs", "ldiv", "mlcrt", NULL};
  for (int i = 0; clash[i]; i++)
    if (strcmp(model->name, clash[i]) == 0) {
      diag_error(d, model->loc, "model name '%s' clashes with a C keyword or C library name used by the generated code; rename the model", model->name);
      return NULL;
    }
  L l = {.A = A, .d = d, .file = file, .prefix = ""};
  l.g = ir_new(A, model->name);
  l.g->source_path = model->loc.src ? model->loc.src->path : "";
  /* blocks, trains: names must be unique; a train section needs its model */
  for (int i = 0; i < file->list.n; i++) {
    const Ast *t = file->list.items[i];
    for (int j = 0; j < i; j++) {
      const Ast *u = file->list.items[j];
      if (u->kind == t->kind && strcmp(u->name, t->name) == 0) {
        diag_error(d, t->loc, "%s '%s' is defined twice", t->kind == AST_BLOCK ? "block" : t->kind == AST_MODEL ? "model" : "train section for", t->name);
        break;
      }
    }
    if (t->kind == AST_TRAIN) {
      if (!find_top(&l, AST_MODEL, t->name)) diag_error(d, t->loc, "train section for unknown model '%s'", t->name);
      if (strcmp(t->name, model->name) == 0) l.g->has_train = true;
    }
  }
  l.g->loss = l.g->eval_loss = -1;
  int before = d->nerrors;
  lower_stmts(&l, &model->list);
  if (d->nerrors == before && l.g->noutputs == 0)
    diag_error(d, model->loc, "model '%s' has no outputs (mark one with `output NAME`)", model->name);
  /* the train section continues the model's scope */
  l.g->train_begin = l.g->n;
  const Ast *train = find_top(&l, AST_TRAIN, model->name);
  if (train && d->nerrors == before) {
    l.in_train = true;
    bool has_opt = false;
    for (int i = 0; i < train->list.n; i++) {
      const Ast *s = train->list.items[i];
      if (s->kind == AST_OUTPUT || s->kind == AST_PARAM || s->kind == AST_BUFFER || s->kind == AST_TIE) {
        diag_error(d, s->loc, "a train section may declare inputs and assign values, not '%s'", ast_kind_name(s->kind));
        continue;
      }
      if (s->kind == AST_ASSIGN && s->list2.n == 1 && strcmp(s->list2.items[0]->name, "optimizer") == 0) has_opt = true;
      lower_stmt(&l, s);
    }
    if (d->nerrors == before && l.g->loss < 0) diag_error(d, train->loc, "the train section has no `loss = EXPR`");
    if (d->nerrors == before && !has_opt) diag_error(d, train->loc, "the train section has no `optimizer = ...`");
  }
  return d->nerrors == before ? l.g : NULL;
}
