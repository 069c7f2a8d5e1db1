/* compiler/plan.c — storage classes and liveness for the one arena.
 *
 * Every live node gets a storage class: the caller's input pointer, a slot
 * in the weights region (params and buffers, laid out here at compile time),
 * an alias of another node (views such as reshape), nothing (constants that
 * elementwise loops inline), or a planned activation buffer.  Activation
 * buffers get a live range [definition, last use] in schedule order; the
 * generated create() hands the ranges and the sizes for the maximum dims to
 * mlcrt_plan (runtime/plan.c), which assigns offsets so that buffers whose
 * ranges overlap never share bytes.  -O0 makes every range span the whole run,
 * so nothing is reused.
 */
#include "mlcc.h"
#include "mlcrt.h"
#include <stdlib.h>
#include <string.h>

static int new_buf(Arena *A, Plan *p, int node, bool scratch, int *cap) {
  if (p->nbufs == *cap) {
    int nc = *cap ? *cap * 2 : 16;
    PlanBuf *nb = arena_alloc(A, sizeof(PlanBuf) * (size_t)nc);
    if (p->nbufs) memcpy(nb, p->bufs, sizeof(PlanBuf) * (size_t)p->nbufs);
    p->bufs = nb;
    *cap = nc;
  }
  p->bufs[p->nbufs] = (PlanBuf){node, scratch, node, node, 0};
  return p->nbufs++;
}

static bool same_shape(const Type *a, const Type *b) {
  if (a->rank != b->rank) return false;
  for (int i = 0; i < a->rank; i++)
    if (!dim_eq(a->dim[i], b->dim[i])) return false;
  return true;
}

/* The leaf input whose buffer group gi's root may overwrite, or -1: a value
 * with its own arena buffer, the root's shape and dtype (so every member
 * reads it at the output index), that no step after the group reads
 * (last[] per storage root), and that no other leaf of the group views.
 * Only elementwise loops qualify: an epilogue's producer writes the root's
 * buffer while its inputs are still being read. */
static int inplace_leaf(const Graph *g, const Plan *p, int gi, const int *last) {
  const Group *gr = &p->groups[gi];
  const Node *rn = &g->nodes[gr->root];
  if (gr->kind == GK_EPILOGUE || !(op_info[rn->op].flags & F_ELEM)) return -1;
  for (int k = 0; k < gr->n; k++) {
    const Node *m = &g->nodes[gr->nodes[k]];
    for (int j = 0; j < m->nin; j++) {
      int L = m->in[j];
      if (p->group_of[L] == gi || p->storage[L] != ST_ARENA || last[L] != gr->root) continue;
      if (g->nodes[L].ty.dt != rn->ty.dt || !same_shape(&g->nodes[L].ty, &rn->ty)) continue;
      bool viewed = false; /* another leaf reads L's bytes under another shape */
      for (int k2 = 0; k2 < gr->n && !viewed; k2++)
        for (int j2 = 0; j2 < g->nodes[gr->nodes[k2]].nin; j2++) {
          int x = g->nodes[gr->nodes[k2]].in[j2];
          viewed |= x != L && p->alias_of[x] == L;
        }
      if (!viewed) return L;
    }
  }
  return -1;
}

/* Plans the nodes that `roots` need, in schedule order; roots stay live to
 * the end (outputs of run, or the loss and gradients of a train step). */
static Plan *plan_roots(Graph *g, int opt_level, const int *roots, int nroots);

Plan *plan_graph(Graph *g, int opt_level) {
  int *roots = arena_alloc(g->A, sizeof(int) * (size_t)(g->noutputs + 1));
  for (int i = 0; i < g->noutputs; i++) roots[i] = g->outputs[i].node;
  return plan_roots(g, opt_level, roots, g->noutputs);
}

Plan *plan_train(Graph *g, int opt_level) {
  int *roots = arena_alloc(g->A, sizeof(int) * (size_t)(g->ntensors + g->ntrain_updates + 2));
  int n = 0;
  roots[n++] = g->loss;
  for (int t = 0; t < g->ntensors; t++)
    if (g->grads[t] >= 0) roots[n++] = g->grads[t];
  for (int u = 0; u < g->ntrain_updates; u++) roots[n++] = g->train_updates[u]; /* used after the loss check */
  return plan_roots(g, opt_level, roots, n);
}

Plan *plan_eval(Graph *g, int opt_level) {
  int *roots = arena_alloc(g->A, sizeof(int) * (size_t)(g->noutputs + 2));
  int n = 0;
  roots[n++] = g->eval_loss; /* the loss in eval mode (running statistics, no dropout) */
  for (int i = 0; i < g->noutputs; i++) roots[n++] = g->outputs[i].node;
  return plan_roots(g, opt_level, roots, n);
}

static Plan *plan_roots(Graph *g, int opt_level, const int *roots, int nroots) {
  Arena *A = g->A;
  Plan *p = arena_alloc(A, sizeof *p);
  int n = g->n, cap = 0;
  p->storage = arena_alloc(A, sizeof(Storage) * (size_t)(n + 1));
  p->alias_of = arena_alloc(A, sizeof(int) * (size_t)(n + 1));
  p->buf = arena_alloc(A, sizeof(int) * (size_t)(n + 1));
  p->scratch = arena_alloc(A, sizeof(int) * (size_t)(n + 1));
  p->weight_off = arena_alloc(A, sizeof(size_t) * (size_t)(n + 1));
  p->reuse = opt_level > 0;
  p->pack = p->reuse;

  /* liveness: which nodes do the outputs need? */
  bool *live = arena_alloc(A, (size_t)(n + 1));
  bool *inline_only = arena_alloc(A, (size_t)(n + 1)); /* used only by elementwise ops */
  for (int i = 0; i < nroots; i++) live[roots[i]] = true;
  for (int i = n - 1; i >= 0; i--)
    if (live[i])
      for (int j = 0; j < g->nodes[i].nin; j++) live[g->nodes[i].in[j]] = true;
  for (int i = 0; i < n; i++) inline_only[i] = true;
  for (int i = 0; i < n; i++) {
    if (!live[i]) continue;
    bool elem = op_info[g->nodes[i].op].flags & F_ELEM;
    for (int j = 0; j < g->nodes[i].nin; j++)
      if (!elem) inline_only[g->nodes[i].in[j]] = false;
  }
  for (int i = 0; i < nroots; i++) inline_only[roots[i]] = false;

  /* the weights region holds every param and buffer, live or not: the
   * weights file and checkpoints name them all */
  size_t off = 0;
  for (int t = 0; t < g->ntensors; t++) {
    int id = g->tensors[t];
    bool k;
    int64_t numel = type_numel_const(&g->nodes[id].ty, &k);
    p->weight_off[id] = off;
    off += ((size_t)numel * dtype_size(g->nodes[id].ty.dt) + 63) & ~(size_t)63;
  }
  p->weight_bytes = off;

  for (int i = 0; i < n; i++) {
    Node *nd = &g->nodes[i];
    p->buf[i] = p->scratch[i] = -1;
    p->alias_of[i] = i;
    if (nd->op == OP_PARAM || nd->op == OP_BUFFER) { p->storage[i] = ST_WEIGHT; continue; }
    if (!live[i]) { p->storage[i] = ST_NONE; continue; }
    if (nd->op == OP_INPUT) p->storage[i] = ST_INPUT;
    else if (nd->op == OP_CONST && inline_only[i]) p->storage[i] = ST_NONE;
    else if (op_info[nd->op].flags & F_VIEW) {
      p->storage[i] = ST_ALIAS;
      p->alias_of[i] = p->alias_of[nd->in[0]];
    } else p->storage[i] = ST_ARENA;
  }
  fuse_plan(g, p, live, roots, nroots, opt_level); /* may turn ST_ARENA members into ST_FUSED */

  /* A group runs at its root's step: a member reads its inputs there. */
  int *at = arena_alloc(A, sizeof(int) * (size_t)(n + 1));
  for (int i = 0; i < n; i++) at[i] = p->group_of[i] >= 0 ? p->groups[p->group_of[i]].root : i;
  /* the last step that reads each storage root (directly or through views) */
  int *last = arena_alloc(A, sizeof(int) * (size_t)(n + 1));
  for (int i = 0; i < n; i++) last[i] = i;
  for (int i = 0; i < n; i++) {
    if (!live[i]) continue;
    for (int j = 0; j < g->nodes[i].nin; j++) {
      int r = p->alias_of[g->nodes[i].in[j]];
      if (last[r] < at[i]) last[r] = at[i];
    }
  }
  for (int i = 0; i < nroots; i++) last[p->alias_of[roots[i]]] = n;
  if (p->reuse)
    for (int gi = 0; gi < p->ngroups; gi++) p->groups[gi].inplace = inplace_leaf(g, p, gi, last);

  for (int i = 0; i < n; i++) {
    Node *nd = &g->nodes[i];
    int gi = p->group_of[i];
    if (p->storage[i] == ST_ARENA) {
      if (gi >= 0 && p->groups[gi].root == i && p->groups[gi].inplace >= 0)
        p->buf[i] = p->buf[p->groups[gi].inplace]; /* written over a leaf that dies here */
      else
        p->buf[i] = new_buf(A, p, i, false, &cap);
    }
    if (live[i] && (nd->op == OP_CONV2D || nd->op == OP_CONV1D || nd->op == OP_CONV2D_DX || nd->op == OP_CONV2D_DW)) {
      p->scratch[i] = new_buf(A, p, i, true, &cap);
      p->bufs[p->scratch[i]].first = p->bufs[p->scratch[i]].last = at[i]; /* an epilogue's producer runs late */
    }
  }
  /* a pooled convolution's result, a chunk of images at a time, and its
   * scratch for a batch of that many */
  for (int gi = 0; gi < p->ngroups; gi++) {
    const Group *gr = &p->groups[gi];
    if (gr->kind != GK_POOLED) continue;
    const int b = new_buf(A, p, gr->nodes[gr->n - 2], false, &cap);
    p->bufs[b].first = p->bufs[b].last = gr->root;
    p->bufs[b].chunk = gr->chunk;
    p->scratch[gr->root] = b;
    p->bufs[p->scratch[gr->nodes[0]]].chunk = gr->chunk;
  }
  /* each buffer lives from its definition to the last read of it or of any
   * view of it (reads by group members happen at the group's root) */
  for (int i = 0; i < n; i++) {
    int b = p->storage[i] == ST_ARENA ? p->buf[i] : -1;
    if (b >= 0 && p->bufs[b].last < last[i]) p->bufs[b].last = last[i];
  }
  if (!p->reuse)
    for (int b = 0; b < p->nbufs; b++) p->bufs[b].first = 0, p->bufs[b].last = n;
  return p;
}

Dim plan_buf_bytes(const Graph *g, const Plan *p, int b) {
  const Node *nd = &g->nodes[p->bufs[b].node];
  Dim n = type_numel(&nd->ty);
  if (p->bufs[b].chunk) { /* chunk images (GK_POOLED; the emitted size: a chunk a thread) */
    n = dim_const(p->bufs[b].chunk);
    for (int k = 1; k < nd->ty.rank; k++) n = dim_mul(n, nd->ty.dim[k]);
  }
  return dim_mul(n, dim_const((int64_t)dtype_size(nd->ty.dt)));
}

/* the runtime's MLCRT_CONV_* kernel of a conv node */
static int conv_op(const Node *n) {
  return n->op == OP_CONV2D_DX ? MLCRT_CONV_DX : n->op == OP_CONV2D_DW ? MLCRT_CONV_DW : MLCRT_CONV_FWD;
}

size_t plan_arena_bytes(const Graph *g, const Plan *p, const int64_t *symvals) {
  if (p->nbufs == 0) return 0;
  mlcrt_plan_item *items = calloc((size_t)p->nbufs, sizeof *items);
  if (!items) return 0;
  for (int b = 0; b < p->nbufs; b++) {
    const Node *nd = &g->nodes[p->bufs[b].node];
    size_t size;
    if (p->bufs[b].scratch) {
      const Type *x, *w, *y;
      int h; /* conv1d: conv2d with H = KH = OH = 1 */
      conv_types(g, nd, &x, &w, &y, &h);
      mlcrt_conv2d_params cp = {
          .N = dim_eval(x->dim[0], symvals), .C = dim_eval(x->dim[1], symvals),
          .H = h < 2 ? 1 : dim_eval(x->dim[2], symvals), .W = dim_eval(x->dim[h + 1], symvals),
          .OC = dim_eval(w->dim[0], symvals), .KH = h < 2 ? 1 : dim_eval(w->dim[2], symvals),
          .KW = dim_eval(w->dim[h + 1], symvals), .OH = h < 2 ? 1 : dim_eval(y->dim[2], symvals),
          .OW = dim_eval(y->dim[h + 1], symvals), .sh = nd->ia[0], .sw = nd->ia[1],
          .ph = nd->ia[2], .pw = nd->ia[3], .dh = nd->ia[4], .dw = nd->ia[5], .groups = nd->ia[6]};
      size = p->bufs[b].chunk ? mlcrt_conv2d_pool_scratch(&cp, p->bufs[b].chunk, 1)
                              : mlcrt_conv2d_scratch(&cp, conv_op(nd), 1); /* for one thread */
    } else {
      size = (size_t)dim_eval(plan_buf_bytes(g, p, b), symvals);
      const int64_t chunk = p->bufs[b].chunk;
      const int64_t n0 = nd->ty.rank ? dim_eval(nd->ty.dim[0], symvals) : 1;
      if (chunk) /* GK_POOLED, one thread: a batch smaller than the chunk */
        size = size / (size_t)chunk * (size_t)mlcrt_conv2d_pool_images(n0, chunk, 1);
    }
    items[b] = (mlcrt_plan_item){size, p->bufs[b].first, p->bufs[b].last, 0};
  }
  size_t total = mlcrt_plan(items, p->nbufs, 64);
  free(items);
  return total;
}
