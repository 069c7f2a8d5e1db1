/* compiler/infer.c — shape and dtype inference, one rule per operator class.
 *
 * The op table names each operator's rule (rule_NAME below).  Static dims are
 * checked here; where two symbolic dims must agree but cannot be proven equal
 * (T vs S), a DimCheck is recorded and the generated code checks it at run
 * time.  Error messages name the operator and both shapes.
 *
 * Attribute layout (Node.ia) written by lower.c and completed here:
 *   conv2d      ia = sh sw ph pw dh dw groups
 *   pools       ia = kh kw sh sw ph pw dh dw ceil_mode count_include_pad
 *   adaptive    ia = oh ow
 *   reductions  ia[0] keepdim, ia[1] number of dims (-1: all), ia[2..] dims as
 *               written; infer sets ia[14] = bit mask of reduced axes
 *   softmax     ia[0] dim as written; infer sets ia[1] = normalised dim
 *   flatten     ia = start end (as written)
 *   transpose   ia = d0 d1; permute: da = dims.  infer sets ia[8..8+rank) = perm
 *   reshape     da = target dims (a -1 is dim_const(-1))
 */
#include "mlcc.h"
#include <string.h>

static const char *ts(Graph *g, const Type *t) { return type_str(g->A, g, t); }
static Node *N(Graph *g, int id) { return &g->nodes[id]; }

static int category(DType t) { return t == DT_BOOL ? 0 : dtype_is_float(t) ? 2 : 1; }

static DType default_of(int cat) { return cat == 2 ? DT_F32 : cat == 1 ? DT_I64 : DT_BOOL; }

/* PyTorch's type promotion, with Python-style scalar literals ("weak") only
 * contributing their category. */
DType infer_promote(const Node *a, const Node *b) {
  DType ta = a->ty.dt, tb = b->ty.dt;
  int ca = category(ta), cb = category(tb);
  if (a->weak != b->weak) {
    const Node *w = a->weak ? a : b, *t = a->weak ? b : a;
    return category(w->ty.dt) <= category(t->ty.dt) ? t->ty.dt : default_of(category(w->ty.dt));
  }
  if (ca != cb) return ca > cb ? ta : tb;
  if (ta == tb) return ta;
  if (ca == 2) return DT_F32; /* f16 + bf16, or either with f32 */
  /* integers: u8 < i32 < i64 */
  static const int rank_of[DT_COUNT] = {[DT_U8] = 1, [DT_I32] = 2, [DT_I64] = 3};
  return rank_of[ta] > rank_of[tb] ? ta : tb;
}

bool infer_broadcast(Graph *g, const Type *a, const Type *b, Type *out, Loc loc, Diag *d) {
  int r = a->rank > b->rank ? a->rank : b->rank;
  Type t = {0};
  t.rank = r;
  for (int i = 0; i < r; i++) {
    int ia = a->rank - r + i, ib = b->rank - r + i;
    if (ia < 0) { t.dim[i] = b->dim[ib]; continue; }
    if (ib < 0) { t.dim[i] = a->dim[ia]; continue; }
    Dim x = a->dim[ia], y = b->dim[ib];
    int64_t cx, cy;
    bool kx = dim_is_const(x, &cx), ky = dim_is_const(y, &cy);
    if (dim_eq(x, y)) t.dim[i] = x;
    else if (kx && cx == 1) t.dim[i] = y;
    else if (ky && cy == 1) t.dim[i] = x;
    else if (kx && ky) {
      diag_error(d, loc, "cannot broadcast %s with %s: dim %d is %lld vs %lld", ts(g, a), ts(g, b),
                 i - r, (long long)cx, (long long)cy);
      return false;
    } else if (dim_never_eq(x, y) && !kx && !ky) {
      diag_error(d, loc, "cannot broadcast %s with %s: dim %d is %s vs %s", ts(g, a), ts(g, b), i - r,
                 dim_str(g->A, x, g->sym), dim_str(g->A, y, g->sym));
      return false;
    } else {
      ir_add_check(g, x, y, loc, "broadcast operands must agree");
      t.dim[i] = kx ? y : x;
    }
  }
  *out = t;
  return true;
}

/* Requires a and b to be equal dims, statically or by a run-time check. */
static bool need_eq(Graph *g, Dim a, Dim b, Loc loc, Diag *d, const char *fmt, const Type *ta,
                    const Type *tb) {
  if (dim_eq(a, b)) return true;
  if (dim_never_eq(a, b)) {
    diag_error(d, loc, fmt, ts(g, ta), ts(g, tb));
    return false;
  }
  ir_add_check(g, a, b, loc, "dims must agree");
  return true;
}

static bool need_float(Graph *g, Node *n, const Type *t, Diag *d) {
  if (t->dt == DT_F32) return true;
  if (dtype_is_float(t->dt))
    diag_error(d, n->loc, "%s on %s is not implemented yet (only f32); use to_f32()",
               op_info[n->op].name, ts(g, t));
  else
    diag_error(d, n->loc, "%s needs a floating-point tensor, got %s; use to_f32()",
               op_info[n->op].name, ts(g, t));
  return false;
}

static bool need_rank(Graph *g, Node *n, const Type *t, int rank, const char *what, Diag *d) {
  if (t->rank == rank) return true;
  diag_error(d, n->loc, "%s expects %s of rank %d, got %s", op_info[n->op].name, what, rank, ts(g, t));
  return false;
}

static bool static_dim(Graph *g, Node *n, const Type *t, int i, int64_t *v, Diag *d) {
  if (dim_is_const(t->dim[i], v)) return true;
  diag_error(d, n->loc, "%s needs a static size for dim %d of %s", op_info[n->op].name, i, ts(g, t));
  return false;
}

static bool norm_dim(Graph *g, Node *n, int64_t dim, int rank, int *out, Diag *d) {
  int r = rank ? rank : 1;
  if (dim < -r || dim >= r) {
    diag_error(d, n->loc, "%s: dim %lld is out of range for a tensor of rank %d (expected %d..%d)",
               op_info[n->op].name, (long long)dim, rank, -r, r - 1);
    return false;
  }
  *out = (int)(dim < 0 ? dim + r : dim);
  (void)g;
  return true;
}

/* ---- rules ------------------------------------------------------------------ */

static bool rule_none(Graph *g, Node *n, Diag *d) {
  (void)g;
  diag_error(d, n->loc, "operator '%s' is not implemented yet", op_info[n->op].name);
  return false;
}

static bool rule_binary(Graph *g, Node *n, Diag *d) {
  Node *a = N(g, n->in[0]), *b = N(g, n->in[1]);
  Type t;
  if (!infer_broadcast(g, &a->ty, &b->ty, &t, n->loc, d)) return false;
  DType dt = infer_promote(a, b);
  int f = op_info[n->op].flags;
  if (f & F_CMP) dt = DT_BOOL;
  else if ((f & F_FLOATOUT) && !dtype_is_float(dt)) dt = DT_F32;
  else if (dt == DT_BOOL) {
    diag_error(d, n->loc, "arithmetic '%s' on bool tensors; convert with to_i64() or to_f32() first",
               op_info[n->op].name);
    return false;
  }
  t.dt = dt;
  n->ty = t;
  n->weak = a->weak && b->weak;
  return true;
}

static bool rule_unary(Graph *g, Node *n, Diag *d) {
  Node *a = N(g, n->in[0]);
  n->ty = a->ty;
  if ((op_info[n->op].flags & F_FLOATOUT) && !dtype_is_float(a->ty.dt)) n->ty.dt = DT_F32;
  if (a->ty.dt == DT_BOOL && (op_info[n->op].flags & F_KEEP)) {
    diag_error(d, n->loc, "%s is not defined on bool tensors (%s)", op_info[n->op].name,
               ts(g, &a->ty));
    return false;
  }
  n->weak = a->weak;
  return true;
}

static bool rule_cast(Graph *g, Node *n, Diag *d) {
  (void)d;
  n->ty = N(g, n->in[0])->ty;
  switch (n->op) {
  case OP_TO_F32: n->ty.dt = DT_F32; break;
  case OP_TO_F16: n->ty.dt = DT_F16; break;
  case OP_TO_BF16: n->ty.dt = DT_BF16; break;
  case OP_TO_I32: n->ty.dt = DT_I32; break;
  case OP_TO_I64: n->ty.dt = DT_I64; break;
  case OP_TO_U8: n->ty.dt = DT_U8; break;
  default: n->ty.dt = DT_BOOL; break;
  }
  return true;
}

static bool rule_where(Graph *g, Node *n, Diag *d) { return rule_none(g, n, d); }

static bool rule_matmul(Graph *g, Node *n, Diag *d) {
  Type *a = &N(g, n->in[0])->ty, *b = &N(g, n->in[1])->ty;
  if (!need_float(g, n, a, d) || !need_float(g, n, b, d)) return false;
  if (a->rank == 0 || b->rank == 0) {
    diag_error(d, n->loc, "matmul needs tensors of rank >= 1, got %s and %s", ts(g, a), ts(g, b));
    return false;
  }
  /* promote 1-D operands as torch.matmul does */
  Type A = *a, Bt = *b;
  if (A.rank == 1) { A.rank = 2; A.dim[1] = A.dim[0]; A.dim[0] = dim_const(1); }
  if (Bt.rank == 1) { Bt.rank = 2; Bt.dim[1] = dim_const(1); }
  if (!need_eq(g, A.dim[A.rank - 1], Bt.dim[Bt.rank - 2], n->loc, d,
               "matmul: inner dims differ: %s @ %s", a, b))
    return false;
  Type ba = A, bb = Bt, bt;
  ba.rank -= 2;
  bb.rank -= 2;
  if (!infer_broadcast(g, &ba, &bb, &bt, n->loc, d)) return false;
  Type t = bt;
  if (a->rank > 1) t.dim[t.rank++] = A.dim[A.rank - 2];
  if (b->rank > 1) t.dim[t.rank++] = Bt.dim[Bt.rank - 1];
  t.dt = DT_F32;
  n->ty = t;
  return true;
}

static bool rule_linear(Graph *g, Node *n, Diag *d) {
  Type *x = &N(g, n->in[0])->ty, *w = &N(g, n->in[1])->ty;
  if (!need_float(g, n, x, d) || !need_float(g, n, w, d)) return false;
  if (x->rank < 1) return need_rank(g, n, x, 2, "an input", d);
  if (!need_rank(g, n, w, 2, "a weight", d)) return false;
  if (!need_eq(g, x->dim[x->rank - 1], w->dim[1], n->loc, d,
               "linear: input %s does not match weight %s (last dims differ)", x, w))
    return false;
  if (n->nin == 3) {
    Type *b = &N(g, n->in[2])->ty;
    if (!need_float(g, n, b, d)) return false;
    if (b->rank != 1 || !dim_eq(b->dim[0], w->dim[0])) {
      diag_error(d, n->loc, "linear: bias %s does not match weight %s (expected [%s])", ts(g, b),
                 ts(g, w), dim_str(g->A, w->dim[0], g->sym));
      return false;
    }
  }
  n->ty = *x;
  n->ty.dim[x->rank - 1] = w->dim[0];
  return true;
}

/* PyTorch's pooling_output_shape: floor (or ceil) division rounding toward
 * -infinity, and with ceil_mode the last window must start inside the input
 * or its left padding. */
static int64_t conv_out(int64_t H, int64_t k, int64_t s, int64_t p, int64_t dl, bool ceil_mode) {
  int64_t num = H + 2 * p - dl * (k - 1) - 1 + (ceil_mode ? s - 1 : 0);
  int64_t q = num / s;
  if (num % s != 0 && num < 0) q--; /* floor */
  int64_t o = q + 1;
  if (ceil_mode && (o - 1) * s >= H + p) o--; /* last window must start inside */
  return o;
}

static bool rule_conv2d(Graph *g, Node *n, Diag *d) {
  Type *x = &N(g, n->in[0])->ty, *w = &N(g, n->in[1])->ty;
  if (!need_float(g, n, x, d) || !need_float(g, n, w, d)) return false;
  if (!need_rank(g, n, x, 4, "an input [N, C, H, W]", d)) return false;
  if (!need_rank(g, n, w, 4, "a weight [OC, C/groups, KH, KW]", d)) return false;
  int64_t *a = n->ia, C, H, W, OC, IC, KH, KW;
  if (!static_dim(g, n, x, 1, &C, d) || !static_dim(g, n, x, 2, &H, d) ||
      !static_dim(g, n, x, 3, &W, d))
    return false;
  if (!static_dim(g, n, w, 0, &OC, d) || !static_dim(g, n, w, 1, &IC, d) ||
      !static_dim(g, n, w, 2, &KH, d) || !static_dim(g, n, w, 3, &KW, d))
    return false;
  for (int i = 0; i < 7; i++)
    if (a[i] < (i >= 2 && i < 4 ? 0 : 1)) {
      static const char *names[] = {"stride", "stride", "padding", "padding", "dilation", "dilation", "groups"};
      diag_error(d, n->loc, "conv2d: %s must be %s, got %lld", names[i], i >= 2 && i < 4 ? ">= 0" : ">= 1",
                 (long long)a[i]);
      return false;
    }
  int64_t G = a[6];
  if (C % G || OC % G || IC * G != C) {
    diag_error(d, n->loc,
               "conv2d: input %s and weight %s do not fit groups=%lld (need C = %lld*groups = %lld)",
               ts(g, x), ts(g, w), (long long)G, (long long)IC, (long long)(IC * G));
    return false;
  }
  if (n->nin == 3) {
    Type *b = &N(g, n->in[2])->ty;
    int64_t bn;
    if (b->rank != 1 || !dim_is_const(b->dim[0], &bn) || bn != OC) {
      diag_error(d, n->loc, "conv2d: bias %s does not match weight %s (expected [%lld])", ts(g, b),
                 ts(g, w), (long long)OC);
      return false;
    }
  }
  int64_t OH = conv_out(H, KH, a[0], a[2], a[4], false), OW = conv_out(W, KW, a[1], a[3], a[5], false);
  if (OH < 1 || OW < 1) {
    diag_error(d, n->loc, "conv2d: input %s is smaller than the kernel %s (output would be %lldx%lld)",
               ts(g, x), ts(g, w), (long long)OH, (long long)OW);
    return false;
  }
  n->ty = *x;
  n->ty.dim[1] = dim_const(OC);
  n->ty.dim[2] = dim_const(OH);
  n->ty.dim[3] = dim_const(OW);
  return true;
}

static bool rule_pool2d(Graph *g, Node *n, Diag *d) {
  Type *x = &N(g, n->in[0])->ty;
  if (!need_float(g, n, x, d) || !need_rank(g, n, x, 4, "an input [N, C, H, W]", d)) return false;
  int64_t H, W, *a = n->ia;
  if (!static_dim(g, n, x, 2, &H, d) || !static_dim(g, n, x, 3, &W, d)) return false;
  if (a[0] < 1 || a[1] < 1 || a[2] < 1 || a[3] < 1 || a[4] < 0 || a[5] < 0 || a[6] < 1 || a[7] < 1) {
    diag_error(d, n->loc, "%s: kernel, stride and dilation must be >= 1 and padding >= 0",
               op_info[n->op].name);
    return false;
  }
  if (a[4] * 2 > a[0] || a[5] * 2 > a[1]) {
    diag_error(d, n->loc, "%s: padding (%lld, %lld) must be at most half the kernel size (%lld, %lld)",
               op_info[n->op].name, (long long)a[4], (long long)a[5], (long long)a[0], (long long)a[1]);
    return false;
  }
  if (a[6] != 1 || a[7] != 1) {
    diag_error(d, n->loc, "%s: dilation other than 1 is not implemented yet", op_info[n->op].name);
    return false;
  }
  int64_t OH = conv_out(H, a[0], a[2], a[4], a[6], a[8]), OW = conv_out(W, a[1], a[3], a[5], a[7], a[8]);
  if (OH < 1 || OW < 1) {
    diag_error(d, n->loc, "%s: input %s is smaller than the window %lldx%lld", op_info[n->op].name,
               ts(g, x), (long long)a[0], (long long)a[1]);
    return false;
  }
  n->ty = *x;
  n->ty.dim[2] = dim_const(OH);
  n->ty.dim[3] = dim_const(OW);
  return true;
}

static bool rule_adaptive_pool(Graph *g, Node *n, Diag *d) {
  Type *x = &N(g, n->in[0])->ty;
  if (!need_float(g, n, x, d) || !need_rank(g, n, x, 4, "an input [N, C, H, W]", d)) return false;
  int64_t H, W;
  if (!static_dim(g, n, x, 2, &H, d) || !static_dim(g, n, x, 3, &W, d)) return false;
  if (n->ia[0] < 1 || n->ia[1] < 1) {
    diag_error(d, n->loc, "adaptive_avg_pool2d: output size must be >= 1");
    return false;
  }
  n->ty = *x;
  n->ty.dim[2] = dim_const(n->ia[0]);
  n->ty.dim[3] = dim_const(n->ia[1]);
  return true;
}

static bool rule_reduce(Graph *g, Node *n, Diag *d) {
  Type *x = &N(g, n->in[0])->ty;
  int64_t mask = 0;
  bool keep = n->ia[0];
  if (n->ia[1] < 0) mask = (1 << x->rank) - 1;
  for (int i = 0; i < n->ia[1]; i++) {
    int k;
    if (!norm_dim(g, n, n->ia[2 + i], x->rank, &k, d)) return false;
    if (x->rank == 0) continue;
    if (mask & (1 << k)) {
      diag_error(d, n->loc, "%s: dim %d is listed twice", op_info[n->op].name, k);
      return false;
    }
    mask |= 1 << k;
  }
  n->ia[14] = mask;
  Type t = {0};
  t.dt = x->dt;
  for (int i = 0; i < x->rank; i++) {
    if (!(mask & (1 << i))) t.dim[t.rank++] = x->dim[i];
    else if (keep) t.dim[t.rank++] = dim_const(1);
  }
  switch (n->op) {
  case OP_SUM:
    if (!dtype_is_float(t.dt)) t.dt = DT_I64;
    break;
  case OP_MEAN:
    if (!dtype_is_float(x->dt)) {
      diag_error(d, n->loc, "mean needs a floating-point tensor, got %s; use to_f32()", ts(g, x));
      return false;
    }
    break;
  case OP_ARGMAX:
  case OP_ARGMIN: t.dt = DT_I64; break;
  default: break;
  }
  if ((n->op == OP_MAX || n->op == OP_MIN || n->op == OP_ARGMAX || n->op == OP_ARGMIN) && x->dt == DT_BOOL) {
    diag_error(d, n->loc, "%s is not defined on bool tensors", op_info[n->op].name);
    return false;
  }
  n->ty = t;
  return true;
}

static bool rule_softmax(Graph *g, Node *n, Diag *d) {
  Type *x = &N(g, n->in[0])->ty;
  if (!need_float(g, n, x, d)) return false;
  int k;
  if (!norm_dim(g, n, n->ia[0], x->rank, &k, d)) return false;
  n->ia[1] = k;
  n->ty = *x;
  return true;
}

static bool rule_reshape(Graph *g, Node *n, Diag *d) {
  Type *x = &N(g, n->in[0])->ty;
  if (n->nda > MAX_RANK) {
    diag_error(d, n->loc, "reshape: rank %d is above the maximum %d", n->nda, MAX_RANK);
    return false;
  }
  Type t = {0};
  t.dt = x->dt;
  t.rank = n->nda;
  int infer_at = -1;
  Dim known = dim_const(1);
  for (int i = 0; i < n->nda; i++) {
    int64_t c;
    if (dim_is_const(n->da[i], &c) && c == -1) {
      if (infer_at >= 0) {
        diag_error(d, n->loc, "reshape: only one dim may be -1");
        return false;
      }
      infer_at = i;
      continue;
    }
    if (dim_is_const(n->da[i], &c) && c < 0) {
      diag_error(d, n->loc, "reshape: invalid size %lld", (long long)c);
      return false;
    }
    t.dim[i] = n->da[i];
    known = dim_mul(known, n->da[i]);
  }
  Dim numel = type_numel(x);
  if (infer_at >= 0) {
    Dim q;
    if (!dim_div(numel, known, &q)) {
      diag_error(d, n->loc, "reshape: cannot infer the -1 dim: %s is not divisible by %s", ts(g, x),
                 dim_str(g->A, known, g->sym));
      return false;
    }
    t.dim[infer_at] = q;
  } else if (!dim_eq(numel, known)) {
    if (dim_never_eq(numel, known)) {
      char *want = type_str(g->A, g, &t);
      diag_error(d, n->loc, "reshape: cannot reshape %s (%s elements) to %s (%s elements)", ts(g, x),
                 dim_str(g->A, numel, g->sym), want, dim_str(g->A, known, g->sym));
      return false;
    }
    ir_add_check(g, numel, known, n->loc, "reshape must keep the number of elements");
  }
  n->ty = t;
  return true;
}

static bool rule_flatten(Graph *g, Node *n, Diag *d) {
  Type *x = &N(g, n->in[0])->ty;
  if (x->rank == 0) {
    n->ty = *x;
    n->ty.rank = 1;
    n->ty.dim[0] = dim_const(1);
    return true;
  }
  int s, e;
  if (!norm_dim(g, n, n->ia[0], x->rank, &s, d) || !norm_dim(g, n, n->ia[1], x->rank, &e, d))
    return false;
  if (s > e) {
    diag_error(d, n->loc, "flatten: start_dim %d is after end_dim %d", s, e);
    return false;
  }
  Type t = {0};
  t.dt = x->dt;
  for (int i = 0; i < s; i++) t.dim[t.rank++] = x->dim[i];
  Dim p = dim_const(1);
  for (int i = s; i <= e; i++) p = dim_mul(p, x->dim[i]);
  t.dim[t.rank++] = p;
  for (int i = e + 1; i < x->rank; i++) t.dim[t.rank++] = x->dim[i];
  n->ty = t;
  return true;
}

static bool rule_permute(Graph *g, Node *n, Diag *d) {
  Type *x = &N(g, n->in[0])->ty;
  int r = x->rank, perm[MAX_RANK];
  for (int i = 0; i < r; i++) perm[i] = i;
  if (n->op == OP_TRANSPOSE) {
    int a, b;
    if (r == 0) { n->ty = *x; return true; }
    if (!norm_dim(g, n, n->ia[0], r, &a, d) || !norm_dim(g, n, n->ia[1], r, &b, d)) return false;
    perm[a] = b;
    perm[b] = a;
  } else {
    if (n->nda != r) {
      diag_error(d, n->loc, "permute: %d dims given for a tensor of rank %d (%s)", n->nda, r, ts(g, x));
      return false;
    }
    int seen = 0;
    for (int i = 0; i < r; i++) {
      int64_t c;
      int k;
      if (!dim_is_const(n->da[i], &c)) {
        diag_error(d, n->loc, "permute: dims must be integer constants");
        return false;
      }
      if (!norm_dim(g, n, c, r, &k, d)) return false;
      if (seen & (1 << k)) {
        diag_error(d, n->loc, "permute: dim %d appears twice", k);
        return false;
      }
      seen |= 1 << k;
      perm[i] = k;
    }
  }
  Type t = *x;
  for (int i = 0; i < r; i++) {
    t.dim[i] = x->dim[perm[i]];
    n->ia[8 + i] = perm[i];
  }
  n->ty = t;
  return true;
}

typedef bool (*Rule)(Graph *, Node *, Diag *);
static const Rule rules[OP_COUNT] = {
#define OP(e, name, flags, sig, rule, cexpr) [OP_##e] = rule_##rule,
#include "ops.def"
#undef OP
};

bool infer_node(Graph *g, int id, Diag *d) {
  Node *n = N(g, id);
  if (op_info[n->op].flags & F_INTERNAL) return true; /* typed when made */
  if (!(op_info[n->op].flags & F_CPU)) return rule_none(g, n, d);
  if (!rules[n->op](g, n, d)) return false;
  bool bad = type_numel(&n->ty).bad;
  for (int i = 0; i < n->ty.rank; i++) bad |= n->ty.dim[i].bad;
  if (bad) {
    diag_error(d, n->loc, "shape expression too complex for the symbolic dim representation (at most %d symbols in a product, %d terms)",
               DIM_VARS, DIM_TERMS);
    return false;
  }
  return true;
}

bool infer_graph(Graph *g, Diag *d) {
  bool ok = true;
  for (int i = 0; i < g->n; i++) ok &= infer_node(g, i, d);
  return ok;
}
