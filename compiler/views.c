/* views.c — attention reads its operands where they lie (-O2, C backend).
 *
 * A transformer block computes q, k, v with one projection and splits the
 * heads out with copies:
 *
 *     q, k, v = split(linear(x, W, b), [D, D, D], -1)          # 3 slices
 *     q = transpose(reshape(q, [B, T, H, D / H]), 1, 2)         # a transpose each
 *     h = scaled_dot_product_attention(q, k, v, causal=true)
 *     h = reshape(transpose(h, 1, 2), [B, T, D])                # and one more
 *
 * Seven copies of [B, T, D] a layer, for a kernel that only needs to know
 * where each row starts.  This pass walks each operand of a forward
 * scaled_dot_product_attention back through slices (with bounds known to
 * hold), transposes, permutes and views (reshape, flatten, squeeze, ...) to
 * the tensor they copy from, as an offset and element strides, and gives the
 * attention that tensor as its input instead (runtime: mlcrt_sdpa_params'
 * strided form).  When the attention's only reader is a transpose or permute
 * that keeps the last dim last, that node becomes the attention itself,
 * writing its result at the strides of the permuted layout.  The copies are
 * then dead and the planner drops them; where something else still reads
 * them (a train step's attention backward), they stay.
 *
 * The strided node keeps its op; its da holds the logical shapes of q, k, v
 * (rank r each), then for q, k, v and the result an offset and r strides
 * (the last 1): 3r + 4(r + 1) Dims.  ia[3] = 1 marks it.  Only the forward
 * nodes (before train_begin) change; results are bit for bit those of the
 * copies (the kernel does the same arithmetic in the same order).
 */
#include "mlcc.h"

#include <string.h>

typedef struct View {
  int base;          /* the node whose storage holds the elements */
  int rank;          /* of the view */
  Dim dim[MAX_RANK]; /* its shape */
  Dim off;           /* element offset into base */
  Dim st[MAX_RANK];  /* element strides */
  bool copies;       /* went through a copying op (worth removing) */
} View;

/* row-major strides of t */
static void dense(const Type *t, Dim *st) {
  Dim s = dim_const(1);
  for (int k = t->rank - 1; k >= 0; k--) st[k] = s, s = dim_mul(s, t->dim[k]);
}

static bool is_one(Dim d) {
  int64_t c;
  return dim_is_const(d, &c) && c == 1;
}

/* v (in place) viewed as shape `to` of rank r without moving elements: the
 * leading dims equal to v's keep their strides; what is left on both sides
 * must hold the same number of elements, and v's part must be one
 * contiguous run (each stride the next one times the next size). */
static bool reshape_view(View *v, const Dim *to, int r) {
  int a = 0;
  while (a < v->rank && a < r && dim_eq(v->dim[a], to[a])) a++;
  View w = *v;
  w.rank = r;
  for (int i = 0; i < a; i++) w.dim[i] = to[i];
  if (a < v->rank || a < r) {
    Dim pin = dim_const(1), pout = dim_const(1);
    for (int i = a; i < v->rank; i++) pin = dim_mul(pin, v->dim[i]);
    for (int i = a; i < r; i++) pout = dim_mul(pout, to[i]);
    if (!dim_eq(pin, pout)) return false;
    for (int i = a; i + 1 < v->rank; i++)
      if (!is_one(v->dim[i]) && !dim_eq(v->st[i], dim_mul(v->st[i + 1], v->dim[i + 1])))
        return false;
    Dim s = v->rank > a ? v->st[v->rank - 1] : dim_const(1);
    for (int i = r - 1; i >= a; i--) {
      w.dim[i] = to[i];
      w.st[i] = s;
      s = dim_mul(s, to[i]);
    }
  }
  *v = w;
  return true;
}

/* The view of node id's elements in the storage of the tensor it copies
 * from; false where a link of the chain is not a pure layout change. */
static bool find_view(const Graph *g, int id, View *v) {
  const Node *n = &g->nodes[id];
  const int r = n->ty.rank;
  switch (n->op) {
  case OP_SLICE: {
    if (n->ia[2] || !find_view(g, n->in[0], v)) return false; /* bounds checked at run time: keep */
    const int k = (int)n->ia[1];
    v->off = dim_add(v->off, dim_mul(n->da[2], v->st[k]));
    v->dim[k] = n->ty.dim[k];
    v->copies = true;
    return true;
  }
  case OP_TRANSPOSE:
  case OP_PERMUTE: {
    if (!find_view(g, n->in[0], v) || v->rank != r) return false;
    View w = *v;
    for (int i = 0; i < r; i++) w.dim[i] = v->dim[n->ia[8 + i]], w.st[i] = v->st[n->ia[8 + i]];
    *v = w;
    v->copies = true;
    return true;
  }
  default:
    if (op_info[n->op].flags & F_VIEW && n->op != OP_DROPOUT)
      return find_view(g, n->in[0], v) && reshape_view(v, n->ty.dim, r);
    /* a tensor of its own: dense */
    v->base = id, v->rank = r, v->off = dim_const(0), v->copies = false;
    memcpy(v->dim, n->ty.dim, sizeof(Dim) * (size_t)r);
    dense(&n->ty, v->st);
    return true;
  }
}

/* How many nodes read id, plus one for each output or loss that names it. */
static int readers(const Graph *g, int id, int *only) {
  int c = 0;
  for (int i = 0; i < g->n; i++)
    for (int j = 0; j < g->nodes[i].nin; j++)
      if (g->nodes[i].in[j] == id) c++, *only = i;
  for (int i = 0; i < g->noutputs; i++) c += g->outputs[i].node == id;
  c += (g->loss == id) + (g->eval_loss == id);
  for (int i = 0; i < g->ntrain_updates; i++) c += g->train_updates[i] == id;
  return c;
}

/* the offset, then r strides, of operand j (3: the result) of a strided
 * attention whose da holds them (rank r) */
static Dim *slot(const Node *n, int r, int j) {
  return n->da + 3 * r + j * (r + 1);
}

bool sdpa_views(Graph *g) {
  const int end = g->train_begin < g->n ? g->train_begin : g->n;
  for (int i = 0; i < end; i++) {
    Node *n = &g->nodes[i];
    if (n->op != OP_SDPA || n->nda || n->ty.dt != DT_F32) continue;
    const int r = n->ty.rank;
    View v[3];
    bool ok = true, worth = false;
    for (int j = 0; j < 3 && ok; j++) {
      ok = find_view(g, n->in[j], &v[j]) && g->nodes[v[j].base].ty.dt == DT_F32 &&
           is_one(v[j].st[r - 1]);
      worth |= ok && v[j].copies;
    }
    /* the result: written through the one permute that reads it? */
    int user = -1, perm[MAX_RANK];
    if (ok && readers(g, i, &user) == 1 && user >= 0 && user < end && /* (-1: an output) */
        (g->nodes[user].op == OP_TRANSPOSE || g->nodes[user].op == OP_PERMUTE) &&
        g->nodes[user].ia[8 + r - 1] == r - 1) {
      for (int k = 0; k < r; k++) perm[k] = (int)g->nodes[user].ia[8 + k];
      worth = true;
    } else {
      user = -1;
    }
    if (!ok || !worth) continue;
    const int nda = 3 * r + 4 * (r + 1);
    Dim *da = arena_alloc(g->A, sizeof(Dim) * (size_t)nda);
    Node s = *n; /* the strided attention */
    s.da = da, s.nda = nda, s.ia[3] = 1;
    s.in = arena_alloc(g->A, sizeof(int) * (size_t)n->nin);
    memcpy(s.in, n->in, sizeof(int) * (size_t)n->nin);
    for (int j = 0; j < 3; j++) {
      memcpy(da + j * r, g->nodes[n->in[j]].ty.dim, sizeof(Dim) * (size_t)r);
      Dim *q = slot(&s, r, j);
      q[0] = v[j].off;
      memcpy(q + 1, v[j].st, sizeof(Dim) * (size_t)r);
      s.in[j] = v[j].base;
    }
    Dim *y = slot(&s, r, 3);
    y[0] = dim_const(0);
    if (user < 0) {
      dense(&n->ty, y + 1);
      *n = s;
    } else { /* dim k of the permute's dense result is the attention's dim perm[k] */
      Node *u = &g->nodes[user];
      Dim ds[MAX_RANK];
      dense(&u->ty, ds);
      for (int k = 0; k < r; k++) y[1 + perm[k]] = ds[k];
      s.ty = u->ty, s.name = u->name, s.hint = u->hint, s.group = u->group;
      *u = s; /* the attention, moved to the permute's slot; the old node is dead */
    }
  }
  return true;
}

Type sdpa_operand_type(const Graph *g, int id, int j) {
  const Node *n = &g->nodes[id];
  Type t = g->nodes[n->in[j]].ty;
  if (n->op == OP_SDPA && n->nda) {
    const int r = n->ty.rank;
    t.rank = r;
    memcpy(t.dim, n->da + j * r, sizeof(Dim) * (size_t)r);
  }
  return t;
}

const Dim *sdpa_operand_view(const Graph *g, int id, int j, Dim *off) {
  const Dim *q = slot(&g->nodes[id], g->nodes[id].ty.rank, j);
  *off = q[0];
  return q + 1;
}
