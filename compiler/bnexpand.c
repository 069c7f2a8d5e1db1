/* bnexpand.c — batch_norm with running statistics as elementwise ops (-O2,
 * the C backend).
 *
 *   y = x * a + s,   a = weight * rsqrt(running_var + eps),
 *                    s = bias - running_mean * a         (per channel)
 *
 * are the float operations of runtime/norm.c's kernel (mlcrt_batch_norm_f32),
 * in the same order, so no bit changes (-std=c11 keeps GCC from contracting
 * x * a + s into an FMA; -O0 keeps the kernel and the e2e suite compares).
 * As elementwise ops, the multiply and add fuse with their neighbours: into
 * a convolution's epilogue together with the relu or residual add after
 * them (fuse.c: a and s, read as [C, 1, ...], are constant along each
 * channel's plane), one pass over the activations instead of two or three.
 * a and s themselves are elementwise over the C channels (two tiny kernels).
 *
 * The nodes go right before each batch_norm, whose id becomes the final add,
 * so the schedule (node order) stays topological; every reference to a
 * later node moves up with it (make_room).  Runs after autodiff, on the
 * forward nodes only: the train step's batch_norm_train is untouched.
 */
#include "mlcc.h"

#include <string.h>

/* Room for k nodes at position at: nodes at..n-1 move up by k, and every
 * node id the graph holds follows them. */
static void make_room(Graph *g, int at, int k) {
  const int n = g->n;
  for (int i = 0; i < k; i++) ir_add(g, OP_CONST, (Loc){0}, 0, NULL); /* grows the array */
  memmove(&g->nodes[at + k], &g->nodes[at], sizeof(Node) * (size_t)(n - at));
  for (int i = at; i < at + k; i++) {
    memset(&g->nodes[i], 0, sizeof(Node));
    g->nodes[i].group = -1;
  }
#define MOVE(x) ((x) >= at ? (x) + k : (x))
  for (int i = 0; i < g->n; i++)
    for (int j = 0; j < g->nodes[i].nin; j++) g->nodes[i].in[j] = MOVE(g->nodes[i].in[j]);
  for (int i = 0; i < g->ninputs; i++) g->inputs[i] = MOVE(g->inputs[i]);
  for (int i = 0; i < g->ntensors; i++) g->tensors[i] = MOVE(g->tensors[i]);
  for (int i = 0; i < g->nties; i++) g->tie_nodes[i] = MOVE(g->tie_nodes[i]);
  for (int i = 0; i < g->noutputs; i++) g->outputs[i].node = MOVE(g->outputs[i].node);
  for (int i = 0; i < g->ntrain_inputs; i++) g->train_inputs[i] = MOVE(g->train_inputs[i]);
  for (int i = 0; i < g->ntrain_updates; i++) g->train_updates[i] = MOVE(g->train_updates[i]);
  for (int t = 0; g->grads && t < g->ntensors; t++)
    if (g->grads[t] >= 0) g->grads[t] = MOVE(g->grads[t]);
  if (g->loss >= 0) g->loss = MOVE(g->loss);
  if (g->eval_loss >= 0) g->eval_loss = MOVE(g->eval_loss);
  if (g->train_begin >= at) g->train_begin += k;
#undef MOVE
}

/* Fills slot id as op over in[] (its type inferred), at loc. */
static int fill(Graph *g, int id, Op op, Loc loc, int nin, const int *in, Diag *d) {
  Node *n = &g->nodes[id];
  n->op = op;
  n->loc = loc;
  n->nin = nin;
  n->in = arena_alloc(g->A, sizeof(int) * (size_t)(nin ? nin : 1));
  memcpy(n->in, in, sizeof(int) * (size_t)nin);
  return infer_node(g, id, d) ? id : -1;
}

static bool is_f32(const Graph *g, int id) {
  return g->nodes[id].ty.dt == DT_F32;
}

bool bn_expand(Graph *g, Diag *err) {
  Diag d = {0};
  for (int i = (g->train_begin < g->n ? g->train_begin : g->n) - 1; i >= 0; i--) {
    const Node *bn = &g->nodes[i];
    if (bn->op != OP_BATCH_NORM || !is_f32(g, i) || bn->nin < 3) continue;
    const int has_w = bn->ia[0] != 0, has_b = bn->ia[1] != 0;
    if (bn->nin != 3 + has_w + has_b) continue;
    bool f32 = true;
    for (int j = 0; j < bn->nin; j++) f32 &= is_f32(g, bn->in[j]);
    const int rank = g->nodes[bn->in[0]].ty.rank;
    if (!f32 || rank < 2) continue;
    /* eps, var+eps, rsqrt, [w*r], m*a, [0], b-ma, [2 reshapes], x*a: */
    const int reshape = rank > 2, k = 6 + has_w + !has_b + 2 * reshape;
    make_room(g, i, k);
    Node *y = &g->nodes[i + k]; /* the batch_norm, moved */
    const Loc loc = y->loc;
    const int x = y->in[0], mean = y->in[1], var = y->in[2];
    const int w = has_w ? y->in[3] : -1, b = has_b ? y->in[3 + has_w] : -1;
    const double eps = y->fa[0];
    int s = i; /* the next free slot */
    Node *c = &g->nodes[s];
    c->op = OP_CONST, c->loc = loc, c->fa[0] = eps, c->ty.dt = DT_F32;
    const int ce = s++;
    int t[2];
    bool ok = true;
    t[0] = var, t[1] = ce;
    const int ve = fill(g, s++, OP_ADD, loc, 2, t, &d);
    ok &= ve >= 0;
    const int r = ok ? fill(g, s++, OP_RSQRT, loc, 1, &ve, &d) : -1;
    ok &= r >= 0;
    int a = r;
    if (ok && has_w) {
      t[0] = w, t[1] = r;
      ok &= (a = fill(g, s++, OP_MUL, loc, 2, t, &d)) >= 0;
    }
    t[0] = mean, t[1] = a;
    const int ma = ok ? fill(g, s++, OP_MUL, loc, 2, t, &d) : -1;
    ok &= ma >= 0;
    int bb = b;
    if (!has_b) { /* the kernel's 0.0f - mean * a */
      c = &g->nodes[s];
      c->op = OP_CONST, c->loc = loc, c->fa[0] = 0.0, c->ty.dt = DT_F32;
      bb = s++;
    }
    t[0] = bb, t[1] = ma;
    int sh = ok ? fill(g, s++, OP_SUB, loc, 2, t, &d) : -1;
    ok &= sh >= 0;
    if (ok && reshape) { /* [C] -> [C, 1, ...]: along x's dim 1 */
      int *v[2] = {&a, &sh};
      for (int q = 0; q < 2 && ok; q++) {
        Node *rn = &g->nodes[s];
        rn->nda = rank - 1;
        rn->da = arena_alloc(g->A, sizeof(Dim) * (size_t)(rank - 1));
        rn->da[0] = g->nodes[*v[q]].ty.dim[0];
        for (int j = 1; j < rank - 1; j++) rn->da[j] = dim_const(1);
        const int id = fill(g, s++, OP_RESHAPE, loc, 1, v[q], &d);
        ok &= id >= 0;
        *v[q] = id;
      }
    }
    t[0] = x, t[1] = a;
    const int xa = ok ? fill(g, s++, OP_MUL, loc, 2, t, &d) : -1;
    ok &= xa >= 0 && s == i + k;
    if (!ok) { /* (cannot happen for a batch_norm that inferred) */
      diag_error(err, loc, "internal error: batch_norm not expanded into elementwise ops: %s",
                 d.buf ? d.buf : "");
      diag_free(&d);
      return false;
    }
    /* the batch_norm becomes the final add, keeping its id, name and hint */
    y = &g->nodes[i + k];
    y->op = OP_ADD;
    y->nin = 2;
    y->in = arena_alloc(g->A, sizeof(int) * 2);
    y->in[0] = xa, y->in[1] = sh;
    memset(y->ia, 0, sizeof y->ia);
    y->nia = 0;
    memset(y->fa, 0, sizeof y->fa);
  }
  diag_free(&d);
  return true;
}
