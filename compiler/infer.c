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
 *   clamp       ia[0] variant (0 both bounds, 1 min only, 2 max only), ia[1] a
 *               bound was written as a float; fa[0] min, fa[1] max
 *   elu, leaky_relu  fa[0] alpha / negative_slope;  gelu ia[0] 1 = "tanh"
 *   dropout     fa[0] p (identity outside a train step: a view)
 *   concat, stack  inputs = the list; ia[0] dim as written, infer sets ia[1]
 *   slice       ia[0] dim; da[0..1] start, end as written (Dims, may be
 *               symbolic); infer sets ia[1] = dim, da[2..3] = normalised start,
 *               end and ia[2] = 1 when 0 <= start <= end <= size needs a
 *               run-time check.  split is lowered to one slice per piece.
 *   unsqueeze, squeeze, cumsum, gather, index_select  ia[0] dim as written,
 *               infer sets ia[1] = normalised dim
 *   expand      da = target dims (-1 keeps)
 *   pad         da = pads (last dim first, constants), fa[0] value
 *   interpolate ia[0] scale factor, sa mode
 *   conv1d      ia as conv2d with the H entries 1, 0, 1: 1 s 0 p 1 dl groups
 *   conv_transpose2d  ia = sh sw ph pw oph opw groups dh dw
 *   batch_norm, layer_norm, group_norm, rms_norm: ia[0] weight given, ia[1]
 *               bias given (inputs x, [running_mean, running_var,] then those
 *               given); group_norm ia[2] = groups; fa[0] eps, fa[1] momentum
 *   sdpa        ia[0] attn_mask given (in[3]), ia[1] causal, ia[2] scale
 *               given; fa[0] scale
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
  else if (dt == DT_BOOL && n->op != OP_MAXIMUM && n->op != OP_MINIMUM) {
    diag_error(d, n->loc, "arithmetic '%s' on bool tensors; convert with to_i64() or to_f32() first",
               op_info[n->op].name);
    return false;
  }
  if (n->op == OP_POW && !dtype_is_float(dt) && b->op == OP_CONST && b->fa[0] < 0) {
    diag_error(d, n->loc, "pow: integers to negative integer powers are not allowed (%s ** %g); use to_f32() first",
               ts(g, &a->ty), b->fa[0]);
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
  if (op_info[n->op].flags & F_CMP) n->ty.dt = DT_BOOL; /* logical_not */
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
  case OP_PROD:
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

/* cross_entropy(logits [N, C], labels [N] integer): mean over N, scalar f32 */
static bool rule_cross_entropy(Graph *g, Node *n, Diag *d) {
  Type *x = &N(g, n->in[0])->ty, *y = &N(g, n->in[1])->ty;
  if (!need_float(g, n, x, d)) return false;
  if (x->rank != 2 || y->rank != 1 || dtype_is_float(y->dt) || y->dt == DT_BOOL) {
    diag_error(d, n->loc, "cross_entropy expects logits [N, C] and integer labels [N], got %s and %s",
               ts(g, x), ts(g, y));
    return false;
  }
  if (!need_eq(g, x->dim[0], y->dim[0], n->loc, d, "cross_entropy: logits %s and labels %s differ in N", x, y))
    return false;
  if (n->fa[0] < 0 || n->fa[0] > 1) {
    diag_error(d, n->loc, "cross_entropy: label_smoothing must be in [0, 1], got %g", n->fa[0]);
    return false;
  }
  memset(&n->ty, 0, sizeof n->ty);
  n->ty.dt = DT_F32;
  return true;
}

/* ---- conv1d, conv_transpose2d, normalisation, attention (see the layout at the top) ---- */

/* conv1d [N, C, L] * [OC, C/groups, K]: conv2d's checks with H = KH = 1. */
static bool rule_conv1d(Graph *g, Node *n, Diag *d) {
  Type *x = &N(g, n->in[0])->ty, *w = &N(g, n->in[1])->ty;
  if (!need_float(g, n, x, d) || !need_float(g, n, w, d)) return false;
  if (!need_rank(g, n, x, 3, "an input [N, C, L]", d)) return false;
  if (!need_rank(g, n, w, 3, "a weight [OC, C/groups, K]", d)) return false;
  int64_t *a = n->ia, C, L, OC, IC, K;
  if (!static_dim(g, n, x, 1, &C, d) || !static_dim(g, n, x, 2, &L, d) || !static_dim(g, n, w, 0, &OC, d) ||
      !static_dim(g, n, w, 1, &IC, d) || !static_dim(g, n, w, 2, &K, d))
    return false;
  if (a[1] < 1 || a[3] < 0 || a[5] < 1 || a[6] < 1) {
    diag_error(d, n->loc, "conv1d: stride, dilation and groups must be >= 1 and padding >= 0");
    return false;
  }
  int64_t G = a[6];
  if (C % G || OC % G || IC * G != C) {
    diag_error(d, n->loc, "conv1d: input %s and weight %s do not fit groups=%lld (need C = %lld*groups = %lld)",
               ts(g, x), ts(g, w), (long long)G, (long long)IC, (long long)(IC * G));
    return false;
  }
  if (n->nin == 3) {
    Type *b = &N(g, n->in[2])->ty;
    int64_t bn;
    if (!need_float(g, n, b, d)) return false;
    if (b->rank != 1 || !dim_is_const(b->dim[0], &bn) || bn != OC) {
      diag_error(d, n->loc, "conv1d: bias %s does not match weight %s (expected [%lld])", ts(g, b), ts(g, w),
                 (long long)OC);
      return false;
    }
  }
  int64_t OL = conv_out(L, K, a[1], a[3], a[5], false);
  if (OL < 1) {
    diag_error(d, n->loc, "conv1d: input %s is smaller than the kernel %s (output length would be %lld)", ts(g, x),
               ts(g, w), (long long)OL);
    return false;
  }
  n->ty = *x;
  n->ty.dim[1] = dim_const(OC);
  n->ty.dim[2] = dim_const(OL);
  return true;
}

/* conv_transpose2d [N, C, H, W] * [C, OC/groups, KH, KW] -> [N, OC, OH, OW],
 * OH = (H - 1)*sh - 2*ph + dh*(KH - 1) + oph + 1 (torch.nn.functional). */
static bool rule_conv_transpose2d(Graph *g, Node *n, Diag *d) {
  Type *x = &N(g, n->in[0])->ty, *w = &N(g, n->in[1])->ty;
  if (!need_float(g, n, x, d) || !need_float(g, n, w, d)) return false;
  if (!need_rank(g, n, x, 4, "an input [N, C, H, W]", d)) return false;
  if (!need_rank(g, n, w, 4, "a weight [C, OC/groups, KH, KW]", d)) return false;
  int64_t *a = n->ia, C, H, W, WC, OCg, KH, KW;
  if (!static_dim(g, n, x, 1, &C, d) || !static_dim(g, n, x, 2, &H, d) || !static_dim(g, n, x, 3, &W, d) ||
      !static_dim(g, n, w, 0, &WC, d) || !static_dim(g, n, w, 1, &OCg, d) || !static_dim(g, n, w, 2, &KH, d) ||
      !static_dim(g, n, w, 3, &KW, d))
    return false;
  if (a[0] < 1 || a[1] < 1 || a[2] < 0 || a[3] < 0 || a[4] < 0 || a[5] < 0 || a[6] < 1 || a[7] < 1 || a[8] < 1) {
    diag_error(d, n->loc, "conv_transpose2d: stride, dilation and groups must be >= 1, padding and output_padding >= 0");
    return false;
  }
  for (int i = 0; i < 2; i++)
    if (a[4 + i] >= a[i] && a[4 + i] >= a[7 + i]) {
      diag_error(d, n->loc, "conv_transpose2d: output_padding %lld must be smaller than either stride %lld or dilation %lld",
                 (long long)a[4 + i], (long long)a[i], (long long)a[7 + i]);
      return false;
    }
  int64_t G = a[6];
  if (C % G || WC != C) {
    diag_error(d, n->loc, "conv_transpose2d: input %s and weight %s do not fit groups=%lld (need weight dim 0 = C = %lld, divisible by groups)",
               ts(g, x), ts(g, w), (long long)G, (long long)C);
    return false;
  }
  int64_t OC = OCg * G;
  if (n->nin == 3) {
    Type *b = &N(g, n->in[2])->ty;
    int64_t bn;
    if (!need_float(g, n, b, d)) return false;
    if (b->rank != 1 || !dim_is_const(b->dim[0], &bn) || bn != OC) {
      diag_error(d, n->loc, "conv_transpose2d: bias %s does not match weight %s and groups=%lld (expected [%lld])",
                 ts(g, b), ts(g, w), (long long)G, (long long)OC);
      return false;
    }
  }
  int64_t OH = (H - 1) * a[0] - 2 * a[2] + a[7] * (KH - 1) + a[4] + 1;
  int64_t OW = (W - 1) * a[1] - 2 * a[3] + a[8] * (KW - 1) + a[5] + 1;
  if (OH < 1 || OW < 1) {
    diag_error(d, n->loc, "conv_transpose2d: output size %lldx%lld is too small (input %s, weight %s)", (long long)OH,
               (long long)OW, ts(g, x), ts(g, w));
    return false;
  }
  n->ty = *x;
  n->ty.dim[1] = dim_const(OC);
  n->ty.dim[2] = dim_const(OH);
  n->ty.dim[3] = dim_const(OW);
  return true;
}

/* A per-channel vector of batch_norm / group_norm: f32[C]. */
static bool need_vec(Graph *g, Node *n, int in, Dim C, const char *what, Diag *d) {
  Type *t = &N(g, n->in[in])->ty, *x = &N(g, n->in[0])->ty;
  if (!need_float(g, n, t, d)) return false;
  if (t->rank != 1) {
    diag_error(d, n->loc, "%s: %s must have shape [C] = [%s] for input %s, got %s", op_info[n->op].name, what,
               dim_str(g->A, C, g->sym), ts(g, x), ts(g, t));
    return false;
  }
  char fmt[160];
  snprintf(fmt, sizeof fmt, "%s: input %%s does not match %s %%s (channel dim 1)", op_info[n->op].name, what);
  return need_eq(g, C, t->dim[0], n->loc, d, fmt, x, t);
}

/* batch_norm, layer_norm, group_norm, rms_norm: the result has x's type. */
static bool rule_norm(Graph *g, Node *n, Diag *d) {
  Type *x = &N(g, n->in[0])->ty;
  if (!need_float(g, n, x, d)) return false;
  const char *name = op_info[n->op].name;
  if (n->fa[0] < 0 || n->fa[0] != n->fa[0]) {
    diag_error(d, n->loc, "%s: eps must be >= 0, got %g", name, n->fa[0]);
    return false;
  }
  int k = 1; /* next input */
  if (n->op == OP_BATCH_NORM || n->op == OP_GROUP_NORM) {
    if (x->rank < 2) {
      diag_error(d, n->loc, "%s expects an input [N, C, ...] of rank >= 2, got %s", name, ts(g, x));
      return false;
    }
    Dim C = x->dim[1];
    if (n->op == OP_BATCH_NORM) {
      if (!need_vec(g, n, k++, C, "running_mean", d) || !need_vec(g, n, k++, C, "running_var", d)) return false;
    } else {
      int64_t c;
      if (!static_dim(g, n, x, 1, &c, d)) return false;
      if (n->ia[2] < 1 || c % n->ia[2]) {
        diag_error(d, n->loc, "group_norm: groups=%lld must be >= 1 and divide the %lld channels of %s",
                   (long long)n->ia[2], (long long)c, ts(g, x));
        return false;
      }
    }
    if (n->ia[0] && !need_vec(g, n, k++, C, "weight", d)) return false;
    if (n->ia[1] && !need_vec(g, n, k++, C, "bias", d)) return false;
  } else { /* layer_norm, rms_norm: over the trailing dims of weight's shape */
    for (; k < n->nin; k++) {
      Type *w = &N(g, n->in[k])->ty;
      const char *what = k == 1 ? "weight" : "bias";
      if (!need_float(g, n, w, d)) return false;
      if (w->rank > x->rank || (k == 2 && w->rank != N(g, n->in[1])->ty.rank)) {
        diag_error(d, n->loc, "%s: %s %s does not match the trailing dims of input %s", name, what, ts(g, w), ts(g, x));
        return false;
      }
      char fmt[160];
      snprintf(fmt, sizeof fmt, "%s: %s %%s does not match the trailing dims of input %%s", name, what);
      for (int i = 0; i < w->rank; i++)
        if (!need_eq(g, w->dim[i], x->dim[x->rank - w->rank + i], n->loc, d, fmt, w, x)) return false;
    }
  }
  n->ty = *x;
  return true;
}

/* scaled_dot_product_attention: q [..., Tq, D], k [..., Tk, D], v [..., Tk, Dv]
 * -> [..., Tq, Dv]; attn_mask bool or float, broadcastable to [..., Tq, Tk]. */
static bool rule_sdpa(Graph *g, Node *n, Diag *d) {
  Type *q = &N(g, n->in[0])->ty, *k = &N(g, n->in[1])->ty, *v = &N(g, n->in[2])->ty;
  if (!need_float(g, n, q, d) || !need_float(g, n, k, d) || !need_float(g, n, v, d)) return false;
  int r = q->rank;
  if (r < 2 || k->rank != r || v->rank != r) {
    diag_error(d, n->loc, "scaled_dot_product_attention expects q, k, v of one rank >= 2 ([..., T, D]), got %s, %s and %s",
               ts(g, q), ts(g, k), ts(g, v));
    return false;
  }
  for (int i = 0; i < r - 2; i++)
    if (!need_eq(g, q->dim[i], k->dim[i], n->loc, d, "scaled_dot_product_attention: batch dims of q %s and k %s differ", q, k) ||
        !need_eq(g, q->dim[i], v->dim[i], n->loc, d, "scaled_dot_product_attention: batch dims of q %s and v %s differ", q, v))
      return false;
  if (!need_eq(g, q->dim[r - 1], k->dim[r - 1], n->loc, d, "scaled_dot_product_attention: q %s and k %s differ in the last dim (D)", q, k) ||
      !need_eq(g, k->dim[r - 2], v->dim[r - 2], n->loc, d, "scaled_dot_product_attention: k %s and v %s differ in the key dim (Tk)", k, v))
    return false;
  Type s = *q; /* scores [..., Tq, Tk] */
  s.dim[r - 1] = k->dim[r - 2];
  if (n->ia[0]) {
    Type *m = &N(g, n->in[3])->ty;
    if (m->dt != DT_BOOL && m->dt != DT_F32) {
      diag_error(d, n->loc, "scaled_dot_product_attention: attn_mask must be bool (keep where true) or float (added), got %s", ts(g, m));
      return false;
    }
    if (n->ia[1]) {
      diag_error(d, n->loc, "scaled_dot_product_attention: attn_mask and causal=true cannot be combined (as in PyTorch)");
      return false;
    }
    bool ok = m->rank <= r;
    for (int i = 0; ok && i < m->rank; i++) {
      Dim md = m->dim[i], sd = s.dim[r - m->rank + i];
      int64_t c;
      if (dim_is_const(md, &c) && c == 1) continue;
      if (dim_never_eq(md, sd) || (dim_is_const(md, NULL) && dim_is_const(sd, NULL) && !dim_eq(md, sd))) ok = false;
      else if (!dim_eq(md, sd)) ir_add_check(g, md, sd, n->loc, "attn_mask dims must match the scores [..., Tq, Tk]");
    }
    if (!ok) {
      diag_error(d, n->loc, "scaled_dot_product_attention: attn_mask %s does not broadcast to the scores %s",
                 ts(g, m), ts(g, &s));
      return false;
    }
  }
  n->ty = *q;
  n->ty.dim[r - 1] = v->dim[r - 1];
  return true;
}

/* ---- elementwise extras, shape and indexing ops (layout at the top) ---- */

static bool rule_where(Graph *g, Node *n, Diag *d) {
  Node *c = N(g, n->in[0]), *a = N(g, n->in[1]), *b = N(g, n->in[2]);
  if (c->ty.dt != DT_BOOL) {
    diag_error(d, n->loc, "where: the condition must be a bool tensor, got %s (use a comparison or to_bool())",
               ts(g, &c->ty));
    return false;
  }
  Type ab, t;
  if (!infer_broadcast(g, &a->ty, &b->ty, &ab, n->loc, d)) return false;
  if (!infer_broadcast(g, &c->ty, &ab, &t, n->loc, d)) return false;
  t.dt = infer_promote(a, b);
  n->ty = t;
  n->weak = false;
  return true;
}

static bool rule_clamp(Graph *g, Node *n, Diag *d) {
  if (n->ia[0] == 3) {
    diag_error(d, n->loc, "clamp: at least one of 'min' and 'max' must be given");
    return false;
  }
  if (!rule_unary(g, n, d)) return false;
  if (n->ia[1] && !dtype_is_float(n->ty.dt)) n->ty.dt = DT_F32; /* a float bound promotes, as in PyTorch */
  return true;
}

static bool rule_dropout(Graph *g, Node *n, Diag *d) {
  if (!(n->fa[0] >= 0 && n->fa[0] <= 1)) {
    diag_error(d, n->loc, "dropout: probability p must be between 0 and 1, got %g", n->fa[0]);
    return false;
  }
  n->ty = N(g, n->in[0])->ty;
  return true;
}

/* Requires dim k of a and b to agree: statically, or by a run-time check. */
static bool same_dim(Graph *g, Node *n, const Type *a, const Type *b, int k, const char *what, Diag *d) {
  Dim x = a->dim[k], y = b->dim[k];
  if (dim_eq(x, y)) return true;
  if (dim_never_eq(x, y) || (dim_is_const(x, NULL) && dim_is_const(y, NULL))) {
    diag_error(d, n->loc, "%s: %s and %s differ in dim %d (%s vs %s)%s", op_info[n->op].name, ts(g, a), ts(g, b), k,
               dim_str(g->A, x, g->sym), dim_str(g->A, y, g->sym), what);
    return false;
  }
  ir_add_check(g, x, y, n->loc, "dims must agree");
  return true;
}

/* concat / stack: equal ranks, equal dims except the concatenated one;
 * dtypes promote as torch.cat does. */
static bool rule_concat(Graph *g, Node *n, Diag *d) {
  bool stack = n->op == OP_STACK;
  const char *nm = op_info[n->op].name;
  const Type *x0 = &N(g, n->in[0])->ty;
  if (!stack && x0->rank == 0) {
    diag_error(d, n->loc, "concat: a zero-dimensional tensor %s cannot be concatenated (unsqueeze it first)", ts(g, x0));
    return false;
  }
  if (stack && x0->rank == MAX_RANK) {
    diag_error(d, n->loc, "stack: the result would have rank %d, above the maximum %d", MAX_RANK + 1, MAX_RANK);
    return false;
  }
  int k;
  if (!norm_dim(g, n, n->ia[0], x0->rank + stack, &k, d)) return false;
  n->ia[1] = k;
  Node acc = *N(g, n->in[0]);
  acc.weak = false;
  Dim total = dim_const(0);
  for (int i = 0; i < n->nin; i++) {
    Node xi = *N(g, n->in[i]);
    xi.weak = false;
    if (xi.ty.rank != x0->rank) {
      diag_error(d, n->loc, "%s: tensor %d is %s but tensor 0 is %s (ranks differ)", nm, i, ts(g, &xi.ty), ts(g, x0));
      return false;
    }
    for (int j = 0; j < x0->rank; j++)
      if ((stack || j != k) &&
          !same_dim(g, n, &xi.ty, x0, j, stack ? " (stack needs equal shapes)" : "", d))
        return false;
    total = dim_add(total, stack ? dim_const(1) : xi.ty.dim[k]);
    acc.ty.dt = infer_promote(&acc, &xi);
  }
  Type t = *x0;
  t.dt = acc.ty.dt;
  if (stack) {
    for (int j = x0->rank; j > k; j--) t.dim[j] = t.dim[j - 1];
    t.rank++;
  }
  t.dim[k] = total;
  n->ty = t;
  return true;
}

/* slice(x, dim, start, end): Python slicing (negative from the end, clamped)
 * when everything is static; with symbolic bounds or size a negative constant
 * still counts from the end, and 0 <= start <= end <= size is checked at run
 * time. */
static bool rule_slice(Graph *g, Node *n, Diag *d) {
  const Type *x = &N(g, n->in[0])->ty;
  if (x->rank == 0) {
    diag_error(d, n->loc, "slice: cannot slice a zero-dimensional tensor %s", ts(g, x));
    return false;
  }
  int k;
  if (!norm_dim(g, n, n->ia[0], x->rank, &k, d)) return false;
  n->ia[1] = k;
  Dim size = x->dim[k], s = n->da[0], e = n->da[1];
  int64_t cs, ce, cn;
  bool ks = dim_is_const(s, &cs), ke = dim_is_const(e, &ce), kn = dim_is_const(size, &cn);
  n->ia[2] = 0;
  if (ks && ke && kn) {
    if (cs < 0) cs += cn;
    if (ce < 0) ce += cn;
    cs = cs < 0 ? 0 : cs > cn ? cn : cs;
    ce = ce < cs ? cs : ce > cn ? cn : ce;
    s = dim_const(cs), e = dim_const(ce);
  } else {
    if (ks && cs < 0) s = dim_add(size, s);
    if (ke && ce < 0) e = dim_add(size, e);
    n->ia[2] = 1;
  }
  Dim len = dim_sub(e, s);
  int64_t cl;
  if (dim_is_const(len, &cl) && cl < 0) {
    diag_error(d, n->loc, "slice: end %s is before start %s in dim %d of %s", dim_str(g->A, e, g->sym),
               dim_str(g->A, s, g->sym), k, ts(g, x));
    return false;
  }
  for (int i = 0; i < len.n; i++)
    if (len.t[i].v[0] && len.t[i].c < 0) {
      diag_error(d, n->loc, "slice: the length %s of the slice of %s would shrink as its symbolic dims grow; this is not supported",
                 dim_str(g->A, len, g->sym), ts(g, x));
      return false;
    }
  n->da[2] = s;
  n->da[3] = e;
  n->ty = *x;
  n->ty.dim[k] = len;
  return true;
}

/* unsqueeze inserts a 1; squeeze removes dim k if it is statically 1 (as
 * PyTorch, a no-op otherwise; a symbolic dim is never squeezed). */
static bool rule_squeeze(Graph *g, Node *n, Diag *d) {
  const Type *x = &N(g, n->in[0])->ty;
  Type t = *x;
  int k;
  if (n->op == OP_UNSQUEEZE) {
    if (x->rank == MAX_RANK) {
      diag_error(d, n->loc, "unsqueeze: %s already has the maximum rank %d", ts(g, x), MAX_RANK);
      return false;
    }
    if (!norm_dim(g, n, n->ia[0], x->rank + 1, &k, d)) return false;
    for (int j = x->rank; j > k; j--) t.dim[j] = t.dim[j - 1];
    t.dim[k] = dim_const(1);
    t.rank++;
  } else {
    int64_t c;
    if (!norm_dim(g, n, n->ia[0], x->rank, &k, d)) return false;
    if (x->rank > 0 && dim_is_const(x->dim[k], &c) && c == 1) {
      for (int j = k; j + 1 < x->rank; j++) t.dim[j] = t.dim[j + 1];
      t.rank--;
    }
  }
  n->ia[1] = k;
  n->ty = t;
  return true;
}

static bool rule_expand(Graph *g, Node *n, Diag *d) {
  const Type *x = &N(g, n->in[0])->ty;
  int r = n->nda;
  Type want = {0};
  want.dt = x->dt;
  want.rank = r <= MAX_RANK ? r : MAX_RANK;
  for (int i = 0; i < want.rank; i++) want.dim[i] = n->da[i];
  if (r > MAX_RANK || r < x->rank) {
    diag_error(d, n->loc, "expand: cannot expand %s to %s (%s)", ts(g, x), ts(g, &want),
               r > MAX_RANK ? "rank above the maximum" : "the target has fewer dims");
    return false;
  }
  Type t = want;
  for (int i = 0; i < r; i++) {
    int j = i - (r - x->rank);
    int64_t c, h;
    bool keep = dim_is_const(n->da[i], &c) && c == -1;
    if (dim_is_const(n->da[i], &c) && c < 0 && !keep) {
      diag_error(d, n->loc, "expand: invalid size %lld in the target %s", (long long)c, ts(g, &want));
      return false;
    }
    if (j < 0) {
      if (keep) {
        diag_error(d, n->loc, "expand: -1 is not allowed for the new leading dim %d of %s", i, ts(g, &want));
        return false;
      }
      continue;
    }
    Dim have = x->dim[j];
    if (keep || dim_eq(have, n->da[i])) { t.dim[i] = have; continue; }
    if (dim_is_const(have, &h) && h == 1) continue;
    if ((dim_is_const(have, NULL) && dim_is_const(n->da[i], NULL)) || dim_never_eq(have, n->da[i])) {
      diag_error(d, n->loc, "expand: cannot expand %s to %s: dim %d is %s (it must be 1 or equal the target %s)",
                 ts(g, x), ts(g, &want), j, dim_str(g->A, have, g->sym), dim_str(g->A, n->da[i], g->sym));
      return false;
    }
    ir_add_check(g, have, n->da[i], n->loc, "expand: a dim that is not 1 must equal the target");
    t.dim[i] = have;
  }
  n->ty = t;
  return true;
}

static bool need_index(Graph *g, Node *n, const Type *ix, Diag *d) {
  if (ix->dt == DT_I64 || ix->dt == DT_I32) return true;
  diag_error(d, n->loc, "%s: the index must be an integer tensor (i64 or i32), got %s", op_info[n->op].name, ts(g, ix));
  return false;
}

static bool rule_gather(Graph *g, Node *n, Diag *d) {
  const Type *x = &N(g, n->in[0])->ty, *ix = &N(g, n->in[1])->ty;
  int k;
  if (!need_index(g, n, ix, d)) return false;
  if (ix->rank != x->rank) {
    diag_error(d, n->loc, "gather: index %s must have the same rank as the input %s", ts(g, ix), ts(g, x));
    return false;
  }
  if (!norm_dim(g, n, n->ia[0], x->rank, &k, d)) return false;
  n->ia[1] = k;
  for (int j = 0; j < x->rank; j++) {
    int64_t a, b;
    if (j == k || dim_eq(ix->dim[j], x->dim[j])) continue;
    if (dim_is_const(ix->dim[j], &a) && dim_is_const(x->dim[j], &b)) {
      if (a <= b) continue;
      diag_error(d, n->loc, "gather: index %s is larger than the input %s in dim %d (%lld > %lld)", ts(g, ix),
                 ts(g, x), j, (long long)a, (long long)b);
      return false;
    }
    if (!same_dim(g, n, ix, x, j, " (symbolic dims other than 'dim' must be equal)", d)) return false;
  }
  n->ty = *ix;
  n->ty.dt = x->dt;
  return true;
}

static bool rule_index_select(Graph *g, Node *n, Diag *d) {
  const Type *x = &N(g, n->in[0])->ty, *ix = &N(g, n->in[1])->ty;
  int k;
  if (!need_index(g, n, ix, d)) return false;
  if (ix->rank > 1 || x->rank == 0) {
    diag_error(d, n->loc, "index_select expects an input of rank >= 1 and a 1-D index, got %s and %s", ts(g, x),
               ts(g, ix));
    return false;
  }
  if (!norm_dim(g, n, n->ia[0], x->rank, &k, d)) return false;
  n->ia[1] = k;
  n->ty = *x;
  n->ty.dim[k] = ix->rank ? ix->dim[0] : dim_const(1);
  return true;
}

static bool rule_embedding(Graph *g, Node *n, Diag *d) {
  const Type *ids = &N(g, n->in[0])->ty, *w = &N(g, n->in[1])->ty;
  if (!need_index(g, n, ids, d)) return false;
  if (w->rank != 2 || ids->rank == MAX_RANK) {
    diag_error(d, n->loc, "embedding expects integer ids of rank < %d and a table [num, dim], got %s and %s", MAX_RANK,
               ts(g, ids), ts(g, w));
    return false;
  }
  n->ty = *ids;
  n->ty.dt = w->dt;
  n->ty.dim[n->ty.rank++] = w->dim[1];
  return true;
}

static bool rule_pad(Graph *g, Node *n, Diag *d) {
  const Type *x = &N(g, n->in[0])->ty;
  if (n->nda % 2 || n->nda > 2 * x->rank) {
    diag_error(d, n->loc, "pad: %d padding sizes for %s; expected an even number, at most 2 * rank = %d", n->nda,
               ts(g, x), 2 * x->rank);
    return false;
  }
  Type t = *x;
  for (int i = 0; i < n->nda / 2; i++) {
    int k = x->rank - 1 - i;
    int64_t l, r, c;
    if (!dim_is_const(n->da[2 * i], &l) || !dim_is_const(n->da[2 * i + 1], &r)) {
      diag_error(d, n->loc, "pad: padding sizes must be integer constants");
      return false;
    }
    t.dim[k] = dim_add(x->dim[k], dim_const(l + r));
    if (dim_is_const(t.dim[k], &c) && c < 0) {
      diag_error(d, n->loc, "pad: padding (%lld, %lld) makes dim %d of %s negative", (long long)l, (long long)r, k,
                 ts(g, x));
      return false;
    }
  }
  n->ty = t;
  return true;
}

static bool rule_interpolate(Graph *g, Node *n, Diag *d) {
  const Type *x = &N(g, n->in[0])->ty;
  if (strcmp(n->sa, "nearest") != 0) {
    diag_error(d, n->loc, "interpolate: mode \"%s\" is not implemented yet (only \"nearest\")", n->sa);
    return false;
  }
  if (x->rank < 3 || x->rank > 5) {
    diag_error(d, n->loc, "interpolate expects an input [N, C, L], [N, C, H, W] or [N, C, D, H, W], got %s", ts(g, x));
    return false;
  }
  if (n->ia[0] < 1) {
    diag_error(d, n->loc, "interpolate: scale_factor must be an integer >= 1, got %lld", (long long)n->ia[0]);
    return false;
  }
  n->ty = *x;
  for (int i = 2; i < x->rank; i++) n->ty.dim[i] = dim_mul(x->dim[i], dim_const(n->ia[0]));
  return true;
}

static bool rule_cumsum(Graph *g, Node *n, Diag *d) {
  const Type *x = &N(g, n->in[0])->ty;
  int k;
  if (!norm_dim(g, n, n->ia[0], x->rank, &k, d)) return false;
  n->ia[1] = k;
  n->ty = *x;
  if (!dtype_is_float(x->dt)) n->ty.dt = DT_I64;
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
  /* the size in bytes must be representable too (buffer sizes are size_t) */
  bool bad = dim_mul(type_numel(&n->ty), dim_const((int64_t)dtype_size(n->ty.dt))).bad;
  for (int i = 0; i < n->ty.rank; i++) bad |= n->ty.dim[i].bad;
  if (bad) {
    diag_error(d, n->loc, "shape expression too complex for the symbolic dim representation (at most %d symbols in a product, %d terms) or too large (2^63 bytes or more)",
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
