/* compiler/autodiff.c — reverse-mode differentiation of the IR.
 *
 * Walks the graph backwards from the loss, appending for each node the
 * ordinary IR nodes that compute the gradients of its inputs (the backward
 * graph is plain IR, so planning, fusion and every backend apply to it).
 * Gradients of a value used several times are summed.  Broadcasting is
 * undone by summing over the broadcast dims (sum_to).  Only nodes on a path
 * from a param to the loss are differentiated.
 *
 * Rules, dy being the gradient of the node's result:
 *   add/sub        dx = sum_to(±dy)            mul  dx = sum_to(dy * other)
 *   div            da = dy / b, db = -dy * a / (b * b)
 *   relu abs sigmoid tanh silu exp log sqrt rsqrt neg: elementwise formulas
 *   linear         dx = dy @ W, dW = dy^T x, db = sum(dy over rows)
 *   matmul         da = dy @ b^T, db = a^T @ dy (rank >= 2), then sum_to
 *   conv2d         dedicated input/weight kernels, db = sum over N, H, W
 *   pools          dedicated kernels (max routes to the first maximum)
 *   sum/mean       broadcast dy back (mean scales by 1/count)
 *   softmax/log_softmax, cross_entropy: dedicated kernels
 *   reshape/flatten/transpose/permute: the inverse movement
 *   batch_norm (train mode, see trainmode.c), layer_norm, group_norm,
 *   rms_norm       input/weight kernels (runtime/normgrad.c), bias = sum of dy
 *   dropout        (train mode) the same mask applied to dy
 *   conv1d         conv2d's kernels on [N, C, 1, L] views; conv_transpose2d:
 *                  dedicated input/weight kernels, db = sum over N, H, W
 *   attention      one kernel recomputing the softmax rows, writing dq|dk|dv
 *   index_select/gather: scatter-add;  cumsum: reverse cumsum;
 *   interpolate    (nearest) sum over each scale block
 *   max/min        over one dim: dy to the first extremum (torch.max(x, dim));
 *                  over all dims / a list: split evenly among ties (torch.max(x),
 *                  torch.amax); prod: the product of the others (zeros as PyTorch)
 *   argmax/argmin  integer results: no gradient
 */
#include "mlcc.h"
#include <string.h>

typedef struct AD {
  Graph *g;
  Diag *d;
  int *grad; /* per forward node: node id of its accumulated gradient, or -1 */
  int nfwd;
  bool ok;
} AD;

static Node *N(AD *a, int id) { return &a->g->nodes[id]; }

/* A node typed by its inference rule. */
static int op(AD *a, Op o, Loc loc, int nin, const int *in) {
  int id = ir_add(a->g, o, loc, nin, in);
  if (!infer_node(a->g, id, a->d)) a->ok = false;
  return id;
}

/* A node whose type is given (internal backward ops). */
static int op_typed(AD *a, Op o, Loc loc, int nin, const int *in, const Type *t) {
  int id = ir_add(a->g, o, loc, nin, in);
  N(a, id)->ty = *t;
  return id;
}

static int konst(AD *a, double v, Loc loc) {
  int id = ir_add(a->g, OP_CONST, loc, 0, NULL);
  N(a, id)->fa[0] = v;
  N(a, id)->weak = true;
  N(a, id)->ty.dt = DT_F32;
  return id;
}

static int bin(AD *a, Op o, int x, int y, Loc loc) {
  int in[2] = {x, y};
  return op(a, o, loc, 2, in);
}

static int reshape_to(AD *a, int x, const Type *t, Loc loc) {
  if (N(a, x)->ty.rank == t->rank) {
    bool same = true;
    for (int i = 0; i < t->rank; i++) same &= dim_eq(N(a, x)->ty.dim[i], t->dim[i]);
    if (same) return x;
  }
  int id = ir_add(a->g, OP_RESHAPE, loc, 1, &x);
  Node *n = N(a, id);
  n->nda = t->rank;
  n->da = arena_alloc(a->g->A, sizeof(Dim) * (size_t)(t->rank ? t->rank : 1));
  for (int i = 0; i < t->rank; i++) n->da[i] = t->dim[i];
  if (!infer_node(a->g, id, a->d)) a->ok = false;
  return id;
}

/* Sums dy (shape of a broadcast result) down to shape t. */
static int sum_to(AD *a, int dy, const Type *t, Loc loc) {
  const Type *yt = &N(a, dy)->ty;
  int lead = yt->rank - t->rank;
  int64_t mask = 0;
  for (int i = 0; i < yt->rank; i++) {
    int64_t c;
    if (i < lead) mask |= 1 << i;
    else if (dim_is_const(t->dim[i - lead], &c) && c == 1 && !(dim_is_const(yt->dim[i], &c) && c == 1))
      mask |= 1 << i;
  }
  if (!mask) return dy;
  int id = ir_add(a->g, OP_SUM, loc, 1, &dy);
  Node *n = N(a, id);
  n->ia[0] = 1; /* keepdim, then reshape to t */
  int k = 0;
  for (int i = 0; i < yt->rank; i++)
    if (mask & (1 << i)) n->ia[2 + k++] = i;
  n->ia[1] = k;
  n->nia = 2 + k;
  if (!infer_node(a->g, id, a->d)) a->ok = false;
  return reshape_to(a, id, t, loc);
}

/* Broadcasts dy up to shape t (the inverse of a reduction with keepdim). */
static int broadcast_to(AD *a, int dy, const Type *t, Loc loc) {
  Type bt = *t;
  bt.dt = N(a, dy)->ty.dt;
  return op_typed(a, OP_BROADCAST, loc, 1, &dy, &bt);
}

static void accumulate(AD *a, int x, int g, Loc loc) {
  if (x >= a->nfwd) return;
  a->grad[x] = a->grad[x] < 0 ? g : bin(a, OP_ADD, a->grad[x], g, loc);
}

static int transpose_last(AD *a, int x, Loc loc) {
  int id = ir_add(a->g, OP_TRANSPOSE, loc, 1, &x);
  N(a, id)->ia[0] = -1, N(a, id)->ia[1] = -2, N(a, id)->nia = 2;
  if (!infer_node(a->g, id, a->d)) a->ok = false;
  return id;
}

/* [N, C, L] -> [N, C, 1, L]: conv1d runs as conv2d with H = KH = 1. */
static Type unsq2(const Type *t) {
  Type r = *t;
  r.rank = 4;
  r.dim[3] = t->dim[2];
  r.dim[2] = dim_const(1);
  return r;
}

/* The per-channel bias gradient of a 4-D convolution: dy summed over N, H, W. */
static int sum_nhw(AD *a, int dy, Loc loc) {
  int sid = ir_add(a->g, OP_SUM, loc, 1, &dy);
  Node *sn = N(a, sid);
  sn->ia[0] = 0, sn->ia[1] = 3, sn->ia[2] = 0, sn->ia[3] = 2, sn->ia[4] = 3, sn->nia = 5;
  if (!infer_node(a->g, sid, a->d)) a->ok = false;
  return sid;
}

/* x[s:e] along dim 0 (a copy). */
static int slice0(AD *a, int x, Dim s, Dim e, Loc loc) {
  int sid = ir_add(a->g, OP_SLICE, loc, 1, &x);
  Node *sn = N(a, sid);
  sn->ia[0] = 0, sn->nia = 1, sn->nda = 4;
  sn->da = arena_alloc(a->g->A, sizeof(Dim) * 4);
  sn->da[0] = s, sn->da[1] = e;
  if (!infer_node(a->g, sid, a->d)) a->ok = false;
  return sid;
}

static bool need_f32(AD *a, Loc loc, const Type *t, const char *op) {
  if (t->dt == DT_F32) return true;
  diag_error(a->d, loc, "training: the gradient of '%s' on %s is not implemented yet (only f32)", op, dtype_name(t->dt));
  a->ok = false;
  return false;
}

/* Sums dy [N, C, ...] over every dim but the channels (1): a per-channel bias. */
static int sum_channels(AD *a, int dy, Loc loc) {
  int r = N(a, dy)->ty.rank, sid = ir_add(a->g, OP_SUM, loc, 1, &dy);
  Node *sn = N(a, sid);
  sn->ia[0] = 0, sn->ia[1] = r - 1, sn->ia[2] = 0;
  for (int i = 2; i < r; i++) sn->ia[1 + i] = i;
  sn->nia = 1 + r;
  if (!infer_node(a->g, sid, a->d)) a->ok = false;
  return sid;
}

/* The norms in a train step (trainmode.c makes batch_norm_train): dedicated
 * input and weight kernels (runtime/normgrad.c), bias = a sum of dy. */
static void backward_norm(AD *a, int id, const bool *needs) {
  Node n = *N(a, id);
  int dy = a->grad[id], x = n.in[0];
  Loc loc = n.loc;
  Type xtc = N(a, x)->ty;
  if (xtc.dt != DT_F32) {
    diag_error(a->d, loc, "training: the gradient of %s of %s values is not implemented yet (only f32)",
               op_info[n.op].name, dtype_name(xtc.dt));
    a->ok = false;
    return;
  }
  bool bn = n.op == OP_BATCH_NORM_TRAIN, gn = n.op == OP_GROUP_NORM, ln = !bn && !gn;
  int k = bn ? 2 : 1; /* the first weight/bias input */
  int w = ln || n.ia[0] ? n.in[k++] : -1, b = n.ia[1] ? n.in[k] : -1;
  int sin[4] = {dy, x, bn ? n.in[1] : -1, -1};
  if (needs[x]) {
    int nin = bn ? 3 : 2;
    if (w >= 0) sin[nin++] = w;
    Op o = bn ? OP_BATCH_NORM_DX : gn ? OP_GROUP_NORM_DX : OP_LAYER_NORM_DX;
    int g = op_typed(a, o, loc, nin, sin, &xtc);
    Node *gnode = N(a, g);
    gnode->ia[0] = w >= 0, gnode->ia[2] = n.ia[2], gnode->ia[3] = n.op == OP_RMS_NORM;
    gnode->ia[4] = w >= 0 ? N(a, w)->ty.rank : 0, gnode->nia = 5;
    gnode->fa[0] = n.fa[0];
    accumulate(a, x, g, loc);
  }
  if (w >= 0 && needs[w]) {
    Op o = bn ? OP_BATCH_NORM_DW : gn ? OP_GROUP_NORM_DW : OP_LAYER_NORM_DW;
    Type wt = N(a, w)->ty;
    int g = op_typed(a, o, loc, bn ? 3 : 2, sin, &wt);
    Node *gnode = N(a, g);
    gnode->ia[2] = n.ia[2], gnode->ia[3] = n.op == OP_RMS_NORM, gnode->ia[4] = wt.rank, gnode->nia = 5;
    gnode->fa[0] = n.fa[0];
    accumulate(a, w, g, loc);
  }
  if (b >= 0 && needs[b]) {
    Type bt = N(a, b)->ty;
    accumulate(a, b, ln ? sum_to(a, dy, &bt, loc) : reshape_to(a, sum_channels(a, dy, loc), &bt, loc), loc);
  }
}

static void backward(AD *a, int id, const bool *needs) {
  Node n = *N(a, id); /* copy: ir_add may move the node array */
  int dy = a->grad[id];
  Loc loc = n.loc;
  int x = n.nin > 0 ? n.in[0] : -1, y = n.nin > 1 ? n.in[1] : -1;
  const Type *xt = x >= 0 ? &N(a, x)->ty : NULL;
  Type xtc = xt ? *xt : (Type){0}, ytc = y >= 0 ? N(a, y)->ty : (Type){0};
#define NEED(i) (n.nin > (i) && needs[n.in[i]])
  switch (n.op) {
  case OP_ADD:
  case OP_SUB:
    if (NEED(0)) accumulate(a, x, sum_to(a, dy, &xtc, loc), loc);
    if (NEED(1)) {
      int g = n.op == OP_SUB ? op(a, OP_NEG, loc, 1, &dy) : dy;
      accumulate(a, y, sum_to(a, g, &ytc, loc), loc);
    }
    return;
  case OP_MUL:
    if (NEED(0)) accumulate(a, x, sum_to(a, bin(a, OP_MUL, dy, y, loc), &xtc, loc), loc);
    if (NEED(1)) accumulate(a, y, sum_to(a, bin(a, OP_MUL, dy, x, loc), &ytc, loc), loc);
    return;
  case OP_DIV:
    if (NEED(0)) accumulate(a, x, sum_to(a, bin(a, OP_DIV, dy, y, loc), &xtc, loc), loc);
    if (NEED(1)) {
      int q = bin(a, OP_DIV, bin(a, OP_MUL, dy, x, loc), bin(a, OP_MUL, y, y, loc), loc);
      accumulate(a, y, sum_to(a, op(a, OP_NEG, loc, 1, &q), &ytc, loc), loc);
    }
    return;
  case OP_NEG: accumulate(a, x, op(a, OP_NEG, loc, 1, &dy), loc); return;
  case OP_RELU:
  case OP_ABS:
  case OP_SILU: {
    int in[2] = {dy, x};
    Op b = n.op == OP_RELU ? OP_RELU_BWD : n.op == OP_ABS ? OP_ABS_BWD : OP_SILU_BWD;
    accumulate(a, x, op_typed(a, b, loc, 2, in, &N(a, dy)->ty), loc);
    return;
  }
  case OP_SIGMOID:
  case OP_TANH: {
    int in[2] = {dy, id};
    accumulate(a, x, op_typed(a, n.op == OP_SIGMOID ? OP_SIGMOID_BWD : OP_TANH_BWD, loc, 2, in, &N(a, dy)->ty), loc);
    return;
  }
  case OP_EXP: accumulate(a, x, bin(a, OP_MUL, dy, id, loc), loc); return;
  case OP_LOG: accumulate(a, x, bin(a, OP_DIV, dy, x, loc), loc); return;
  case OP_SQRT: /* dy / (2 y) */
    accumulate(a, x, bin(a, OP_DIV, dy, bin(a, OP_MUL, id, konst(a, 2.0, loc), loc), loc), loc);
    return;
  case OP_RSQRT: { /* -0.5 dy y^3 */
    int y3 = bin(a, OP_MUL, bin(a, OP_MUL, id, id, loc), id, loc);
    accumulate(a, x, bin(a, OP_MUL, bin(a, OP_MUL, dy, y3, loc), konst(a, -0.5, loc), loc), loc);
    return;
  }
  case OP_TO_F32: case OP_TO_F16: case OP_TO_BF16:
    if (dtype_is_float(xt->dt)) {
      Op c = xt->dt == DT_F32 ? OP_TO_F32 : xt->dt == DT_F16 ? OP_TO_F16 : OP_TO_BF16;
      accumulate(a, x, op(a, c, loc, 1, &dy), loc);
    }
    return;
  case OP_RESHAPE:
  case OP_FLATTEN: accumulate(a, x, reshape_to(a, dy, &xtc, loc), loc); return;
  case OP_TRANSPOSE:
  case OP_PERMUTE: { /* inverse permutation */
    int pid = ir_add(a->g, OP_PERMUTE, loc, 1, &dy);
    Node *p = N(a, pid);
    p->nda = xtc.rank;
    p->da = arena_alloc(a->g->A, sizeof(Dim) * (size_t)(xtc.rank ? xtc.rank : 1));
    for (int i = 0; i < xtc.rank; i++) p->da[n.ia[8 + i]] = dim_const(i);
    if (!infer_node(a->g, pid, a->d)) a->ok = false;
    accumulate(a, x, pid, loc);
    return;
  }
  case OP_SUM:
  case OP_MEAN: {
    Type kt = xtc; /* the keepdim shape */
    for (int i = 0; i < kt.rank; i++)
      if (n.ia[14] & (1 << i)) kt.dim[i] = dim_const(1);
    kt.dt = N(a, dy)->ty.dt;
    int g = broadcast_to(a, reshape_to(a, dy, &kt, loc), &xtc, loc);
    if (n.op == OP_MEAN) {
      Dim cnt = dim_const(1);
      for (int i = 0; i < xtc.rank; i++)
        if (n.ia[14] & (1 << i)) cnt = dim_mul(cnt, xtc.dim[i]);
      int64_t c;
      if (dim_is_const(cnt, &c)) g = bin(a, OP_MUL, g, konst(a, 1.0 / (double)c, loc), loc);
      else { /* a symbolic count (the batch): divide at run time */
        int q = op_typed(a, OP_DIV_DIM, loc, 1, &g, &N(a, g)->ty);
        N(a, q)->da = arena_alloc(a->g->A, sizeof(Dim));
        N(a, q)->da[0] = cnt;
        N(a, q)->nda = 1;
        g = q;
      }
    }
    accumulate(a, x, g, loc);
    return;
  }
  case OP_LINEAR: {
    if (NEED(0)) accumulate(a, x, bin(a, OP_MATMUL, dy, y, loc), loc);
    if (NEED(1)) {
      int in[2] = {dy, x};
      accumulate(a, y, op_typed(a, OP_LINEAR_DW, loc, 2, in, &ytc), loc);
    }
    if (n.nin == 3 && NEED(2)) accumulate(a, n.in[2], sum_to(a, dy, &N(a, n.in[2])->ty, loc), loc);
    return;
  }
  case OP_MATMUL: {
    /* 1-D operands are promoted as torch.matmul does ([K] -> [1, K] on the
     * left, [K, 1] on the right); the gradients are reshaped back */
    Type A2 = xtc, B2 = ytc, Y2 = N(a, dy)->ty;
    int xa = x, yb = y, d2 = dy;
    if (xtc.rank == 1) {
      A2.rank = 2, A2.dim[0] = dim_const(1), A2.dim[1] = xtc.dim[0];
      xa = reshape_to(a, x, &A2, loc);
    }
    if (ytc.rank == 1) {
      B2.rank = 2, B2.dim[0] = ytc.dim[0], B2.dim[1] = dim_const(1);
      yb = reshape_to(a, y, &B2, loc);
    }
    if (xtc.rank == 1 && ytc.rank == 1) { /* y = [] -> [1, 1] */
      Y2.rank = 2, Y2.dim[0] = Y2.dim[1] = dim_const(1);
    } else if (xtc.rank == 1) { /* batch + [M] -> batch + [1, M] */
      Y2.dim[Y2.rank] = Y2.dim[Y2.rank - 1];
      Y2.dim[Y2.rank - 1] = dim_const(1);
      Y2.rank++;
    } else if (ytc.rank == 1) { /* batch + [N] -> batch + [N, 1] */
      Y2.dim[Y2.rank++] = dim_const(1);
    }
    if (xtc.rank == 1 || ytc.rank == 1) d2 = reshape_to(a, dy, &Y2, loc);
    if (NEED(0)) {
      int g = sum_to(a, bin(a, OP_MATMUL, d2, transpose_last(a, yb, loc), loc), &A2, loc);
      accumulate(a, x, reshape_to(a, g, &xtc, loc), loc);
    }
    if (NEED(1)) {
      int g = sum_to(a, bin(a, OP_MATMUL, transpose_last(a, xa, loc), d2, loc), &B2, loc);
      accumulate(a, y, reshape_to(a, g, &ytc, loc), loc);
    }
    return;
  }
  case OP_CONV1D: /* conv1d's ia is conv2d's with H = KH = 1: the same kernels on 4-D views */
  case OP_CONV2D: {
    bool one = n.op == OP_CONV1D;
    Type dyt = N(a, dy)->ty;
    Type x4 = one ? unsq2(&xtc) : xtc, w4 = one ? unsq2(&ytc) : ytc, d4 = one ? unsq2(&dyt) : dyt;
    int dy4 = reshape_to(a, dy, &d4, loc);
    if (NEED(0)) {
      int in[2] = {dy4, reshape_to(a, y, &w4, loc)};
      int g = op_typed(a, OP_CONV2D_DX, loc, 2, in, &x4);
      memcpy(N(a, g)->ia, n.ia, sizeof n.ia);
      N(a, g)->nia = n.nia;
      accumulate(a, x, reshape_to(a, g, &xtc, loc), loc);
    }
    if (NEED(1)) {
      int in[2] = {dy4, reshape_to(a, x, &x4, loc)};
      int g = op_typed(a, OP_CONV2D_DW, loc, 2, in, &w4);
      memcpy(N(a, g)->ia, n.ia, sizeof n.ia);
      N(a, g)->nia = n.nia;
      accumulate(a, y, reshape_to(a, g, &ytc, loc), loc);
    }
    if (n.nin == 3 && NEED(2)) accumulate(a, n.in[2], sum_nhw(a, dy4, loc), loc); /* per channel */
    return;
  }
  case OP_CONV_TRANSPOSE2D: { /* dedicated kernels (runtime/conv_transpose.c) */
    for (int k = 0; k < 2; k++) {
      if (!NEED(k)) continue;
      int in[2] = {dy, k ? x : y};
      int g = op_typed(a, k ? OP_CONV_TRANSPOSE2D_DW : OP_CONV_TRANSPOSE2D_DX, loc, 2, in, k ? &ytc : &xtc);
      memcpy(N(a, g)->ia, n.ia, sizeof n.ia);
      N(a, g)->nia = n.nia;
      accumulate(a, n.in[k], g, loc);
    }
    if (n.nin == 3 && NEED(2)) accumulate(a, n.in[2], sum_nhw(a, dy, loc), loc);
    return;
  }
  case OP_MAX_POOL2D:
  case OP_AVG_POOL2D:
  case OP_ADAPTIVE_AVG_POOL2D: {
    int in[2] = {dy, x};
    Op b = n.op == OP_MAX_POOL2D ? OP_MAX_POOL2D_DX : n.op == OP_AVG_POOL2D ? OP_AVG_POOL2D_DX : OP_ADAPTIVE_AVG_POOL2D_DX;
    int g = op_typed(a, b, loc, b == OP_MAX_POOL2D_DX ? 2 : 1, in, &xtc);
    memcpy(N(a, g)->ia, n.ia, sizeof n.ia);
    N(a, g)->nia = n.nia;
    accumulate(a, x, g, loc);
    return;
  }
  case OP_SOFTMAX:
  case OP_LOG_SOFTMAX: {
    int in[2] = {dy, id};
    int g = op_typed(a, n.op == OP_SOFTMAX ? OP_SOFTMAX_DX : OP_LOG_SOFTMAX_DX, loc, 2, in, &xtc);
    N(a, g)->ia[1] = n.ia[1];
    N(a, g)->nia = 2;
    accumulate(a, x, g, loc);
    return;
  }
  case OP_CROSS_ENTROPY: {
    int in[3] = {dy, x, y};
    int g = op_typed(a, OP_CROSS_ENTROPY_DX, loc, 3, in, &xtc);
    N(a, g)->fa[0] = n.fa[0];
    accumulate(a, x, g, loc);
    return;
  }
  /* elementwise ops whose rule is one C expression over (dy, x[, other]) */
  case OP_ERF: case OP_SOFTPLUS: case OP_HARDSIGMOID: case OP_HARDSWISH: case OP_SIN: case OP_COS:
  case OP_ELU: case OP_LEAKY_RELU: case OP_GELU: case OP_CLAMP: {
    Op b = n.op == OP_ERF ? OP_ERF_BWD : n.op == OP_SOFTPLUS ? OP_SOFTPLUS_BWD : n.op == OP_HARDSIGMOID ? OP_HARDSIGMOID_BWD
         : n.op == OP_HARDSWISH ? OP_HARDSWISH_BWD : n.op == OP_SIN ? OP_SIN_BWD : n.op == OP_COS ? OP_COS_BWD
         : n.op == OP_ELU ? OP_ELU_BWD : n.op == OP_LEAKY_RELU ? OP_LEAKY_RELU_BWD : n.op == OP_GELU ? OP_GELU_BWD : OP_CLAMP_BWD;
    int in[2] = {dy, x};
    int gid = op_typed(a, b, loc, 2, in, &N(a, dy)->ty);
    memcpy(N(a, gid)->fa, n.fa, sizeof n.fa);
    if (n.op == OP_GELU || n.op == OP_CLAMP) N(a, gid)->ia[0] = n.ia[0], N(a, gid)->nia = 1;
    accumulate(a, x, gid, loc);
    return;
  }
  case OP_RECIPROCAL: {
    int in[2] = {dy, id};
    accumulate(a, x, op_typed(a, OP_RECIPROCAL_BWD, loc, 2, in, &N(a, dy)->ty), loc);
    return;
  }
  case OP_MAXIMUM:
  case OP_MINIMUM:
  case OP_POW: {
    for (int k = 0; k < 2; k++) {
      if (!NEED(k)) continue;
      Op b = n.op == OP_POW ? (k ? OP_POW_BWD_P : OP_POW_BWD_X) : n.op == OP_MAXIMUM ? OP_MAXIMUM_BWD : OP_MINIMUM_BWD;
      int in[3] = {dy, n.op == OP_POW ? x : n.in[k], n.op == OP_POW ? y : n.in[1 - k]};
      int gid = op_typed(a, b, loc, 3, in, &N(a, dy)->ty);
      accumulate(a, n.in[k], sum_to(a, gid, k ? &ytc : &xtc, loc), loc);
    }
    return;
  }
  case OP_WHERE:
    for (int k = 1; k < 3; k++) {
      if (!NEED(k)) continue;
      int in[2] = {dy, n.in[0]};
      int gid = op_typed(a, OP_WHERE_BWD, loc, 2, in, &N(a, dy)->ty);
      N(a, gid)->ia[0] = k - 1, N(a, gid)->nia = 1;
      accumulate(a, n.in[k], sum_to(a, gid, &N(a, n.in[k])->ty, loc), loc);
    }
    return;
  case OP_UNSQUEEZE:
  case OP_SQUEEZE: accumulate(a, x, reshape_to(a, dy, &xtc, loc), loc); return;
  case OP_EXPAND: accumulate(a, x, sum_to(a, dy, &xtc, loc), loc); return;
  case OP_DROPOUT:
    if (n.fa[0] > 0) {
      diag_error(a->d, loc, "training with dropout is not implemented yet");
      a->ok = false;
      return;
    }
    accumulate(a, x, dy, loc);
    return;
  case OP_SLICE: { /* dx = dy padded with zeros back to x's size */
    int d = (int)n.ia[1];
    int64_t st, en, size;
    if (!dim_is_const(n.da[2], &st) || !dim_is_const(n.da[3], &en) || !dim_is_const(xtc.dim[d], &size)) {
      /* symbolic bounds (slice(wpe, 0, 0, T)): zeros with dy copied in at the bounds */
      int g = op_typed(a, OP_SLICE_DX, loc, 1, &dy, &xtc);
      N(a, g)->ia[1] = d, N(a, g)->nia = 2;
      N(a, g)->da = arena_alloc(a->g->A, sizeof(Dim) * 4);
      memcpy(N(a, g)->da, n.da, sizeof(Dim) * 4);
      N(a, g)->nda = 4;
      accumulate(a, x, g, loc);
      return;
    }
    int pid = ir_add(a->g, OP_PAD, loc, 1, &dy);
    Node *pn = N(a, pid);
    int npad = 2 * (xtc.rank - d);
    pn->nda = npad;
    pn->da = arena_alloc(a->g->A, sizeof(Dim) * (size_t)npad);
    for (int k = 0; k < npad; k++) pn->da[k] = dim_const(0);
    pn->da[npad - 2] = dim_const(st);
    pn->da[npad - 1] = dim_const(size - en);
    if (!infer_node(a->g, pid, a->d)) a->ok = false;
    accumulate(a, x, pid, loc);
    return;
  }
  case OP_PAD: { /* dx = dy cropped: pad with the negated pads */
    int pid = ir_add(a->g, OP_PAD, loc, 1, &dy);
    Node *pn = N(a, pid);
    pn->nda = n.nda;
    pn->da = arena_alloc(a->g->A, sizeof(Dim) * (size_t)(n.nda ? n.nda : 1));
    for (int k = 0; k < n.nda; k++) pn->da[k] = dim_sub(dim_const(0), n.da[k]);
    if (!infer_node(a->g, pid, a->d)) a->ok = false;
    accumulate(a, x, pid, loc);
    return;
  }
  case OP_CONCAT:
  case OP_STACK: { /* each input gets its slice of dy */
    int d = (int)n.ia[1];
    Dim off = dim_const(0);
    for (int k = 0; k < n.nin; k++) {
      const Type *it = &N(a, n.in[k])->ty;
      Dim len = n.op == OP_STACK ? dim_const(1) : it->dim[d];
      if (needs[n.in[k]]) {
        int sid = ir_add(a->g, OP_SLICE, loc, 1, &dy);
        Node *sn = N(a, sid);
        sn->ia[0] = d, sn->nia = 1, sn->nda = 4;
        sn->da = arena_alloc(a->g->A, sizeof(Dim) * 4);
        sn->da[0] = off, sn->da[1] = dim_add(off, len);
        if (!infer_node(a->g, sid, a->d)) a->ok = false;
        Type t = *it;
        accumulate(a, n.in[k], reshape_to(a, sid, &t, loc), loc);
      }
      off = dim_add(off, len);
    }
    return;
  }
  case OP_BATCH_NORM_TRAIN:
  case OP_LAYER_NORM:
  case OP_GROUP_NORM:
  case OP_RMS_NORM: backward_norm(a, id, needs); return;
  case OP_DROPOUT_TRAIN: { /* the same mask (same key) applied to dy */
    int gid = op_typed(a, OP_DROPOUT_TRAIN, loc, 1, &dy, &N(a, dy)->ty);
    N(a, gid)->fa[0] = n.fa[0], N(a, gid)->ia[0] = n.ia[0], N(a, gid)->nia = 1;
    accumulate(a, x, gid, loc);
    return;
  }
  case OP_EMBEDDING:
    if (NEED(1)) {
      int in[2] = {dy, x};
      accumulate(a, y, op_typed(a, OP_EMBEDDING_DW, loc, 2, in, &ytc), loc);
    }
    return;
  case OP_SDPA: { /* one kernel writes dq, dk, dv one after another; each input takes its slice */
    if (n.ia[0] && NEED(3)) {
      diag_error(a->d, loc, "training: the gradient of scaled_dot_product_attention with respect to attn_mask is not implemented yet");
      a->ok = false;
      return;
    }
    Type ts[3];
    Dim off[4];
    off[0] = dim_const(0);
    for (int k = 0; k < 3; k++) ts[k] = N(a, n.in[k])->ty, off[k + 1] = dim_add(off[k], type_numel(&ts[k]));
    Type ft = {.dt = DT_F32, .rank = 1};
    ft.dim[0] = off[3];
    if (off[3].bad) {
      diag_error(a->d, loc, "training: scaled_dot_product_attention: shape expression too complex for its gradient");
      a->ok = false;
      return;
    }
    int in[6] = {n.in[0], n.in[1], n.in[2], dy, id, n.ia[0] ? n.in[3] : 0};
    int g = op_typed(a, OP_SDPA_BWD, loc, n.ia[0] ? 6 : 5, in, &ft);
    memcpy(N(a, g)->ia, n.ia, sizeof n.ia);
    memcpy(N(a, g)->fa, n.fa, sizeof n.fa);
    N(a, g)->nia = n.nia;
    for (int k = 0; k < 3; k++)
      if (NEED(k)) accumulate(a, n.in[k], reshape_to(a, slice0(a, g, off[k], off[k + 1], loc), &ts[k], loc), loc);
    return;
  }
  case OP_INDEX_SELECT: /* scatter-add dy back into x's shape */
  case OP_GATHER:
    if (NEED(0) && need_f32(a, loc, &xtc, op_info[n.op].name)) {
      int in[2] = {dy, y};
      int g = op_typed(a, n.op == OP_GATHER ? OP_GATHER_DX : OP_INDEX_SELECT_DX, loc, 2, in, &xtc);
      N(a, g)->ia[1] = n.ia[1], N(a, g)->nia = 2;
      accumulate(a, x, g, loc);
    }
    return;
  case OP_CUMSUM: /* dx = reverse cumulative sum of dy */
  case OP_INTERPOLATE: /* nearest: dx sums dy over each scale block */
    if (dtype_is_float(xtc.dt) && need_f32(a, loc, &xtc, op_info[n.op].name)) {
      int g = op_typed(a, n.op == OP_CUMSUM ? OP_CUMSUM_DX : OP_INTERPOLATE_DX, loc, 1, &dy, &xtc);
      memcpy(N(a, g)->ia, n.ia, sizeof n.ia);
      N(a, g)->nia = n.nia;
      N(a, g)->sa = n.sa;
      accumulate(a, x, g, loc);
    }
    return;
  case OP_MAX: /* over one dim: to the first extremum (torch.max(x, dim)); over all dims or a */
  case OP_MIN: /* list: split evenly among ties (torch.max(x), torch.amax) */
  case OP_PROD: /* prod of the others, zeros handled as PyTorch */
    if (dtype_is_float(xtc.dt) && need_f32(a, loc, &xtc, op_info[n.op].name)) {
      int in[2] = {dy, x};
      int g = op_typed(a, n.op == OP_MAX ? OP_MAX_DX : n.op == OP_MIN ? OP_MIN_DX : OP_PROD_DX, loc, 2, in, &xtc);
      memcpy(N(a, g)->ia, n.ia, sizeof n.ia);
      N(a, g)->ia[15] = n.ia[1] != 1; /* max/min: 1 = split evenly among ties */
      N(a, g)->nia = 16;
      accumulate(a, x, g, loc);
    }
    return;
  case OP_ARGMAX:
  case OP_ARGMIN: return; /* integer results: no gradient, as in PyTorch */
  default:
    diag_error(a->d, loc, "training: the gradient of '%s' is not implemented yet", op_info[n.op].name);
    a->ok = false;
  }
#undef NEED
}

/* For docs/operators.md: the operators backward() has a rule for (keep in
 * step with its switch; mse_loss is lowered to ops that have rules). */
bool autodiff_has_rule(Op o) {
  switch (o) {
  case OP_BATCH_NORM: case OP_DROPOUT: /* in train mode (trainmode.c) */
  case OP_LAYER_NORM: case OP_GROUP_NORM: case OP_RMS_NORM:
  case OP_ADD: case OP_SUB: case OP_MUL: case OP_DIV: case OP_NEG: case OP_RELU: case OP_ABS:
  case OP_SILU: case OP_SIGMOID: case OP_TANH: case OP_EXP: case OP_LOG: case OP_SQRT: case OP_RSQRT:
  case OP_TO_F32: case OP_TO_F16: case OP_TO_BF16: case OP_RESHAPE: case OP_FLATTEN: case OP_TRANSPOSE:
  case OP_PERMUTE: case OP_SUM: case OP_MEAN: case OP_LINEAR: case OP_MATMUL: case OP_CONV2D:
  case OP_MAX_POOL2D: case OP_AVG_POOL2D: case OP_ADAPTIVE_AVG_POOL2D: case OP_SOFTMAX:
  case OP_LOG_SOFTMAX: case OP_CROSS_ENTROPY: case OP_MSE_LOSS:
  case OP_ERF: case OP_SOFTPLUS: case OP_HARDSIGMOID: case OP_HARDSWISH: case OP_SIN: case OP_COS:
  case OP_ELU: case OP_LEAKY_RELU: case OP_GELU: case OP_CLAMP: case OP_RECIPROCAL: case OP_MAXIMUM:
  case OP_MINIMUM: case OP_POW: case OP_WHERE: case OP_UNSQUEEZE: case OP_SQUEEZE: case OP_EXPAND:
  case OP_SLICE: case OP_PAD: case OP_CONCAT: case OP_STACK: case OP_EMBEDDING:
  case OP_CONV1D: case OP_CONV_TRANSPOSE2D: case OP_SDPA: case OP_INDEX_SELECT: case OP_GATHER: case OP_CUMSUM:
  case OP_INTERPOLATE: case OP_MAX: case OP_MIN: case OP_PROD:
  case OP_BCE_WITH_LOGITS: case OP_NLL_LOSS: case OP_SPLIT: /* lowered to ops with rules */
    return true;
  default: return false;
  }
}

bool autodiff(Graph *g, Diag *d) {
  if (g->loss < 0) return false;
  AD a = {.g = g, .d = d, .ok = true, .nfwd = g->n};
  Arena *A = g->A;
  a.grad = arena_alloc(A, sizeof(int) * (size_t)(g->n + 1));
  bool *needs = arena_alloc(A, (size_t)(g->n + 1));
  /* needs[n]: n depends on a param (so its gradient is wanted) */
  for (int i = 0; i < g->n; i++) {
    a.grad[i] = -1;
    Node *n = &g->nodes[i];
    needs[i] = n->op == OP_PARAM;
    for (int j = 0; j < n->nin; j++) needs[i] |= needs[n->in[j]];
  }
  /* only nodes the loss depends on */
  bool *onpath = arena_alloc(A, (size_t)(g->n + 1));
  onpath[g->loss] = true;
  for (int i = g->loss; i >= 0; i--)
    if (onpath[i])
      for (int j = 0; j < g->nodes[i].nin; j++) onpath[g->nodes[i].in[j]] = true;
  for (int i = 0; i < g->n; i++) needs[i] &= onpath[i];
  g->grads = arena_alloc(A, sizeof(int) * (size_t)(g->ntensors + 1));
  for (int t = 0; t < g->ntensors; t++) g->grads[t] = -1;
  if (!needs[g->loss]) {
    diag_error(d, g->nodes[g->loss].loc, "the loss does not depend on any param: nothing to train");
    return false;
  }
  int one = ir_add(g, OP_CONST, g->nodes[g->loss].loc, 0, NULL);
  g->nodes[one].fa[0] = 1.0;
  g->nodes[one].ty.dt = DT_F32;
  g->nodes[one].hint = "dloss";
  a.grad[g->loss] = one;
  for (int i = g->loss; i >= 0 && a.ok; i--) {
    if (a.grad[i] < 0 || !needs[i] || g->nodes[i].op == OP_PARAM) continue;
    backward(&a, i, needs);
  }
  if (!a.ok) return false;
  for (int t = 0; t < g->ntensors; t++) {
    int p = g->tensors[t];
    if (g->nodes[p].op == OP_PARAM && a.grad[p] >= 0) {
      g->grads[t] = a.grad[p];
      if (!g->nodes[a.grad[p]].hint)
        g->nodes[a.grad[p]].hint = arena_printf(A, "grad_%s", g->nodes[p].name);
    }
  }
  return true;
}
