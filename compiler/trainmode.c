/* compiler/trainmode.c — the forward of the train step, in train mode.
 *
 * The model's graph is what `run` and `evaluate` compute: batch_norm with the
 * running statistics and dropout as the identity (PyTorch's model.eval()).
 * A train step computes its loss as model.train() does, so this pass gives
 * it its own forward: every node on the way to the loss that depends on a
 * batch_norm or a dropout(p > 0) is cloned (appended, inputs remapped;
 * inputs, params, buffers, constants and the nodes upstream of the first
 * substitution stay shared), with
 *
 *   batch_norm(x, rm, rv, w, b)  ->  s = batch_norm_stats(x, rm, rv)   [2, C]
 *                                    batch_norm_train(x, s, w, b)
 *       normalising with the batch mean and biased variance; the train step
 *       then (after its loss check, so a non-finite loss changes nothing)
 *       updates rm/rv in the weights region as torch.nn.BatchNorm does:
 *       rm = (1 - momentum) rm + momentum mean, rv likewise with the unbiased
 *       variance.  A num_batches_tracked buffer is left untouched: PyTorch
 *       only reads it when momentum is None, which MDL cannot express.
 *   dropout(x, p)                ->  dropout_train(x): x * keep / (1 - p)
 *       keep drawn by a counter-based generator (runtime/normgrad.c) keyed by
 *       (the instance's seed, the train-step count, the dropout's node id,
 *       the element index): the same seed gives the same masks on any
 *       machine and thread count.  The seed is the one given to NAME_init or
 *       NAME_set_seed (mlc train: --seed, default 0).
 *
 * g->loss then names the cloned loss, which autodiff differentiates; the
 * original stays g->eval_loss, the loss of `evaluate`.  A model without
 * either op is left exactly as it was.
 */
#include "mlcc.h"
#include <string.h>

static bool substituted(const Node *n) {
  return n->op == OP_BATCH_NORM || (n->op == OP_DROPOUT && n->fa[0] > 0);
}

bool trainmode(Graph *g, Diag *d) {
  if (g->loss < 0) return true;
  Arena *A = g->A;
  int n0 = g->n;
  g->eval_loss = g->loss;
  bool *onpath = arena_alloc(A, (size_t)(n0 + 1));
  onpath[g->loss] = true;
  for (int i = g->loss; i >= 0; i--)
    if (onpath[i])
      for (int j = 0; j < g->nodes[i].nin; j++) onpath[g->nodes[i].in[j]] = true;
  int nbn = 0;
  bool ok = true;
  for (int i = 0; i < n0; i++) {
    const Node *n = &g->nodes[i];
    if (!onpath[i] || !substituted(n)) continue;
    const Node *x = &g->nodes[n->in[0]];
    if (x->ty.dt != DT_F32) {
      diag_error(d, n->loc, "training with %s of %s values is not implemented yet (only f32)", op_info[n->op].name,
                 dtype_name(x->ty.dt));
      ok = false;
    }
    for (int j = 1; n->op == OP_BATCH_NORM && j < 3; j++) {
      const Node *r = &g->nodes[n->in[j]];
      if ((r->op != OP_BUFFER && r->op != OP_PARAM) || r->ty.dt != DT_F32) {
        diag_error(d, n->loc, "training with batch_norm needs its %s to be an f32 buffer (updated by the train step)",
                   j == 1 ? "running_mean" : "running_var");
        ok = false;
      }
    }
    nbn += n->op == OP_BATCH_NORM;
  }
  if (!ok) return false;
  g->train_updates = arena_alloc(A, sizeof(int) * (size_t)(nbn + 1));
  int *map = arena_alloc(A, sizeof(int) * (size_t)(n0 + 1));
  for (int i = 0; i < n0; i++) {
    map[i] = i;
    if (!onpath[i]) continue;
    Node n = g->nodes[i]; /* a copy: ir_add may move the array */
    bool dirty = substituted(&n);
    int *in = arena_alloc(A, sizeof(int) * (size_t)(n.nin + 1));
    for (int j = 0; j < n.nin; j++) {
      in[j] = map[n.in[j]];
      dirty |= in[j] != n.in[j];
    }
    if (!dirty) continue;
    int id;
    if (n.op == OP_BATCH_NORM) {
      int sin[3] = {in[0], in[1], in[2]};
      int s = ir_add(g, OP_BATCH_NORM_STATS, n.loc, 3, sin);
      Node *sn = &g->nodes[s];
      sn->ty.dt = DT_F32;
      sn->ty.rank = 2;
      sn->ty.dim[0] = dim_const(2);
      sn->ty.dim[1] = g->nodes[in[0]].ty.dim[1];
      sn->fa[1] = n.fa[1];
      sn->hint = arena_printf(A, "%s_stats", n.hint ? n.hint : "batch_norm");
      g->train_updates[g->ntrain_updates++] = s;
      int tin[4] = {in[0], s, 0, 0}, k = 2;
      for (int j = 3; j < n.nin; j++) tin[k++] = in[j];
      id = ir_add(g, OP_BATCH_NORM_TRAIN, n.loc, k, tin);
      Node *t = &g->nodes[id];
      memcpy(t->ia, n.ia, sizeof n.ia);
      t->nia = n.nia;
      memcpy(t->fa, n.fa, sizeof n.fa);
      t->ty = n.ty;
      t->hint = n.hint;
    } else if (n.op == OP_DROPOUT) {
      id = ir_add(g, OP_DROPOUT_TRAIN, n.loc, 1, in);
      Node *t = &g->nodes[id];
      t->fa[0] = n.fa[0];
      t->ia[0] = i; /* the mask's key */
      t->nia = 1;
      t->ty = n.ty;
      t->hint = n.hint;
    } else {
      id = ir_add(g, n.op, n.loc, n.nin, in);
      int *cin = g->nodes[id].in;
      g->nodes[id] = n;
      g->nodes[id].in = cin;
    }
    map[i] = id;
  }
  g->loss = map[g->loss];
  return true;
}
