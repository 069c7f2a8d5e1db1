/* tests/unit/test_fuse.c — unit tests of the fusion pass (compiler/fuse.c)
 * and of the planner around it (compiler/plan.c, runtime/plan.c; cmocka).
 *
 * One test per fusion rule, each with the cases where fusion must NOT
 * happen (a value used twice, a reduction between, shapes that differ, a
 * root of the function, a value the backward reads), the in-place rule, and
 * a property test: random graphs of elementwise chains, linear layers,
 * reductions and views are planned at -O2, every group is checked against
 * the contract in mlcc.h, and the schedule is simulated over the arena that
 * mlcrt_plan lays out: a group reads only values whose bytes nothing has
 * overwritten since they were written, for several values of the dim.
 *
 * Standalone: link with mlccomp and -lcmocka, run without arguments.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mlcc.h"
#include "mlcrt.h"

/* ---- helpers -------------------------------------------------------------------- */

typedef struct Low {
  Arena *A;
  Diag d;
  Graph *g;
} Low;

static Low *lower_ok(const char *text, bool train) {
  Low *l = calloc(1, sizeof *l);
  l->A = arena_new();
  Source *src = source_from_string(l->A, "test.mdl", text);
  Ast *file = parse_source(l->A, src, &l->d);
  if (file) l->g = lower_model(l->A, file, NULL, &l->d);
  if (l->g && !infer_graph(l->g, &l->d)) l->g = NULL;
  if (l->g && train && !(trainmode(l->g, &l->d) && autodiff(l->g, &l->d))) l->g = NULL;
  if (!l->g || l->d.nerrors) {
    print_error("unexpected errors:\n%s\nin:\n%s\n", l->d.buf ? l->d.buf : "", text);
    fail();
  }
  return l;
}

static void done(Low *l) {
  diag_free(&l->d);
  arena_free(l->A);
  free(l);
}

/* The node bound to MDL variable `hint` (the last one). */
static int hinted(const Graph *g, const char *hint) {
  for (int i = g->n - 1; i >= 0; i--)
    if (g->nodes[i].hint && strcmp(g->nodes[i].hint, hint) == 0) return i;
  print_error("no node bound to '%s'\n", hint);
  fail();
  return -1;
}

/* The live node with op o that is the only one (fails otherwise). */
static int only_op(const Graph *g, const Plan *p, Op o) {
  int found = -1;
  for (int i = 0; i < g->n; i++)
    if (g->nodes[i].op == o && p->storage[i] != ST_NONE) {
      assert_int_equal(found, -1);
      found = i;
    }
  assert_true(found >= 0);
  return found;
}

static const Group *group(const Plan *p, int id) {
  assert_true(p->group_of[id] >= 0);
  return &p->groups[p->group_of[id]];
}

static bool same_shape(const Type *a, const Type *b) {
  if (a->rank != b->rank) return false;
  for (int i = 0; i < a->rank; i++)
    if (!dim_eq(a->dim[i], b->dim[i])) return false;
  return true;
}

static int storage_root(const Graph *g, int id) {
  while (op_info[g->nodes[id].op].flags & F_VIEW) id = g->nodes[id].in[0];
  return id;
}

/* Checks p's groups against the contract of Group in mlcc.h. */
static void check_groups(const Graph *g, const Plan *p) {
  int last_root = -1;
  for (int i = 0; i < g->n; i++) {
    Storage st = p->storage[i];
    bool computed = st == ST_ARENA || st == ST_FUSED;
    assert_int_equal(p->group_of[i] >= 0, computed); /* every computed node in exactly one group */
  }
  for (int gi = 0; gi < p->ngroups; gi++) {
    const Group *gr = &p->groups[gi];
    assert_true(gr->n >= 1 && gr->n <= 16);
    assert_true(gr->root > last_root); /* schedule order */
    last_root = gr->root;
    assert_int_equal(gr->nodes[gr->n - 1], gr->root);
    assert_int_equal(p->storage[gr->root], ST_ARENA);
    const Node *r = &g->nodes[gr->root];
    for (int k = 0; k < gr->n; k++) {
      int m = gr->nodes[k];
      assert_int_equal(p->group_of[m], gi);
      if (k < gr->n - 1) assert_int_equal(p->storage[m], ST_FUSED);
      if (k > 0 && !((gr->kind == GK_EPILOGUE || gr->kind == GK_POOLED) && k == 1))
        assert_true(gr->nodes[k - 1] < m); /* schedule order */
      bool elem = op_info[g->nodes[m].op].flags & F_ELEM;
      if (gr->kind == GK_ELEM || (gr->kind == GK_EPILOGUE && k > 0)) {
        assert_true(elem);
        assert_true(
            same_shape(&g->nodes[m].ty, &r->ty)); /* no value is recomputed per broadcast element */
      }
      if (gr->kind == GK_POOLED && k > 0 && k < gr->n - 1) { /* the convolution's tail */
        assert_true(elem);
        assert_true(same_shape(&g->nodes[m].ty, &g->nodes[gr->nodes[0]].ty));
      }
      /* a fused value is read only inside its group */
      if (p->storage[m] == ST_FUSED)
        for (int j = 0; j < g->n; j++)
          if (p->storage[j] != ST_NONE && p->group_of[j] != gi)
            for (int q = 0; q < g->nodes[j].nin; q++) assert_int_not_equal(g->nodes[j].in[q], m);
      /* inputs come from earlier groups (or are inputs, weights, literals) */
      for (int q = 0; q < g->nodes[m].nin; q++) {
        int x = storage_root(g, g->nodes[m].in[q]);
        if (p->group_of[x] >= 0 && p->group_of[x] != gi)
          assert_true(p->groups[p->group_of[x]].root < gr->root);
      }
    }
    if (gr->kind == GK_EPILOGUE) {
      const Node *pr = &g->nodes[gr->nodes[0]];
      assert_true(pr->op == OP_LINEAR || pr->op == OP_MATMUL || pr->op == OP_CONV2D ||
                  pr->op == OP_CONV1D || pr->op == OP_MAX_POOL2D_DX);
      assert_true(same_shape(&pr->ty, &r->ty));
      assert_int_equal(pr->ty.dt, r->ty.dt);
      assert_int_equal(gr->inplace, -1);
    }
    if (gr->kind == GK_POOLED) { /* conv2d [+ tail] -> pool, a chunk of images at a time */
      assert_int_equal(g->nodes[gr->nodes[0]].op, OP_CONV2D);
      assert_true(r->op == OP_MAX_POOL2D || r->op == OP_AVG_POOL2D);
      assert_int_equal(r->in[0], gr->nodes[gr->n - 2]);
      assert_true(gr->chunk >= 1 && gr->inside && gr->inplace == -1);
      const int cb = p->scratch[gr->root];
      assert_true(cb >= 0 && !p->bufs[cb].scratch);
      assert_int_equal(p->bufs[cb].chunk, gr->chunk);
      assert_int_equal(p->bufs[p->scratch[gr->nodes[0]]].chunk, gr->chunk);
    }
    if (gr->inplace >= 0) {
      const Node *L = &g->nodes[gr->inplace];
      assert_true(same_shape(&L->ty, &r->ty));
      assert_int_equal(L->ty.dt, r->ty.dt);
      assert_int_equal(p->buf[gr->root], p->buf[gr->inplace]);
    }
  }
}

/* Runs the schedule of p over the arena that mlcrt_plan lays out for symbol
 * values sv: each group reads its inputs, then writes its scratch and its
 * root.  Fails when a group (or the function's end, for roots) reads a value
 * whose bytes another write has touched since it was written. */
static void simulate(const Graph *g, const Plan *p, const int *roots, int nroots,
                     const int64_t *sv) {
  if (!p->nbufs) return;
  mlcrt_plan_item *it = calloc((size_t)p->nbufs, sizeof *it);
  for (int b = 0; b < p->nbufs; b++) {
    it[b].size = p->bufs[b].scratch ? 256 : (size_t)dim_eval(plan_buf_bytes(g, p, b), sv);
    it[b].first = p->bufs[b].first;
    it[b].last = p->bufs[b].last;
  }
  mlcrt_plan(it, p->nbufs, 64);
  int *holder = malloc(sizeof(int) * (size_t)p->nbufs); /* the value intact in each buffer, or -1 */
  for (int b = 0; b < p->nbufs; b++) holder[b] = -1;
  for (int gi = 0; gi < p->ngroups; gi++) {
    const Group *gr = &p->groups[gi];
    for (int k = 0; k < gr->n; k++) {
      const Node *m = &g->nodes[gr->nodes[k]];
      for (int q = 0; q < m->nin; q++) {
        int x = storage_root(g, m->in[q]);
        if (p->storage[x] != ST_ARENA) continue;
        if (holder[p->buf[x]] != x) {
          print_error("group %d (root %d) reads node %d, whose buffer %d was overwritten\n", gi,
                      gr->root, x, p->buf[x]);
          fail();
        }
      }
    }
    int writes[18], nw = 0;
    for (int k = 0; k < gr->n; k++)
      if (p->scratch[gr->nodes[k]] >= 0) writes[nw++] = p->scratch[gr->nodes[k]];
    writes[nw++] = p->buf[gr->root];
    for (int w = 0; w < nw; w++) {
      const mlcrt_plan_item *a = &it[writes[w]];
      for (int b = 0; b < p->nbufs; b++)
        if (a->size && it[b].size && a->offset < it[b].offset + it[b].size &&
            it[b].offset < a->offset + a->size)
          holder[b] = -1;
    }
    holder[p->buf[gr->root]] = gr->root;
  }
  for (int r = 0; r < nroots; r++) {
    int x = storage_root(g, roots[r]);
    if (p->storage[x] == ST_ARENA) assert_int_equal(holder[p->buf[x]], x);
  }
  free(holder);
  free(it);
}

static void check_run(const Graph *g, const Plan *p) {
  check_groups(g, p);
  int *roots = malloc(sizeof(int) * (size_t)(g->noutputs + 1));
  for (int i = 0; i < g->noutputs; i++) roots[i] = g->outputs[i].node;
  for (int64_t B = 1; B <= 17; B += 8) {
    int64_t sv[MAX_SYMS + 1] = {0};
    for (int s = 1; s <= g->nsym; s++) sv[s] = B + s;
    simulate(g, p, roots, g->noutputs, sv);
  }
  free(roots);
}

/* ---- elementwise chains ------------------------------------------------------------ */

static void test_elem_chain(void **state) {
  (void)state;
  Low *l = lower_ok("model m {\n"
                    "  input x: f32[B, 8]\n"
                    "  input u: u8[B, 8]\n"
                    "  param b: f32[8]\n"
                    "  a = x * 2.0\n"
                    "  c = a + b\n" /* b broadcasts: a leaf, read at [i % 8] */
                    "  output y = exp(c)\n"
                    "  output z = to_f32(u) / 255.0\n" /* a cast joins too */
                    "}\n",
                    false);
  Graph *g = l->g;
  Plan *p = plan_graph(g, 2);
  check_run(g, p);
  int a = hinted(g, "a"), c = hinted(g, "c"), y = hinted(g, "y"), z = hinted(g, "z");
  const Group *gy = group(p, y);
  assert_int_equal(gy->kind, GK_ELEM);
  assert_int_equal(gy->n, 3);
  assert_int_equal(gy->nodes[0], a);
  assert_int_equal(gy->nodes[1], c);
  assert_int_equal(p->storage[a], ST_FUSED);
  assert_int_equal(p->storage[c], ST_FUSED);
  assert_int_equal(p->buf[a], -1);
  const Group *gz = group(p, z);
  assert_int_equal(gz->kind, GK_ELEM);
  assert_int_equal(gz->n, 2);
  assert_int_equal(g->nodes[gz->nodes[0]].op, OP_TO_F32);
  assert_int_equal(p->ngroups, 2);
  assert_int_equal(p->nbufs, 2);
  /* -O0: every node its own kernel */
  Plan *p0 = plan_graph(g, 0);
  check_run(g, p0);
  assert_int_equal(p0->ngroups, 5);
  for (int gi = 0; gi < p0->ngroups; gi++) assert_int_equal(p0->groups[gi].kind, GK_SINGLE);
  for (int i = 0; i < g->n; i++) assert_int_not_equal(p0->storage[i], ST_FUSED);
  done(l);
}

static void test_elem_not_fused(void **state) {
  (void)state;
  Low *l = lower_ok("model m {\n"
                    "  input x: f32[B, 8]\n"
                    "  input v: f32[B, 1]\n"
                    "  twice = relu(x)\n"
                    "  output y1 = twice + 1.0\n" /* used by two consumers: stays */
                    "  output y2 = twice * 3.0\n"
                    "  sq = sigmoid(x)\n"
                    "  output y3 = sq * sq\n" /* one consumer reading it twice: fuses */
                    "  e = exp(x)\n"
                    "  s = sum(e, dim=1, keepdim=true)\n" /* a reduction between */
                    "  output y4 = s * 2.0\n"
                    "  small = sqrt(v + 0.00001)\n" /* [B, 1] feeding a [B, 8] op */
                    "  output y5 = x / small\n"
                    "  output o = neg(x)\n" /* an output read by another op */
                    "  output y6 = o - 1.0\n"
                    "}\n",
                    false);
  Graph *g = l->g;
  Plan *p = plan_graph(g, 2);
  check_run(g, p);
  int twice = hinted(g, "twice"), sq = hinted(g, "sq"), e = hinted(g, "e"), s = hinted(g, "s");
  int small = hinted(g, "small"), o = hinted(g, "o");
  assert_int_equal(p->storage[twice], ST_ARENA);
  assert_int_equal(group(p, twice)->n, 1);
  assert_int_equal(p->storage[sq], ST_FUSED);
  assert_int_equal(group(p, hinted(g, "y3"))->n, 2);
  assert_int_equal(p->storage[e], ST_ARENA); /* its consumer is a reduction */
  assert_int_equal(group(p, e)->kind, GK_SINGLE);
  assert_int_equal(group(p, s)->kind, GK_SINGLE);
  assert_int_equal(p->storage[s], ST_ARENA);        /* [B, 1] into [B, 8] */
  assert_int_equal(p->storage[small], ST_ARENA);    /* would be recomputed 8 times */
  assert_int_equal(group(p, small)->kind, GK_ELEM); /* but v + eps joins sqrt: same shape */
  assert_int_equal(p->storage[o], ST_ARENA);        /* an output */
  assert_int_equal(group(p, o)->n, 1);
  done(l);
}

static void test_elem_group_bounded(void **state) {
  (void)state;
  char src[4096];
  size_t len = (size_t)snprintf(src, sizeof src, "model m {\n  input x: f32[B, 4]\n  v0 = x\n");
  for (int i = 1; i <= 40; i++)
    len += (size_t)snprintf(src + len, sizeof src - len, "  v%d = v%d * 1.5\n", i, i - 1);
  snprintf(src + len, sizeof src - len, "  output y = v40\n}\n");
  Low *l = lower_ok(src, false);
  Plan *p = plan_graph(l->g, 2);
  check_run(l->g, p);
  assert_int_equal(p->ngroups, 3); /* 40 multiplications: 16 + 16 + 8 */
  assert_int_equal(p->groups[0].n, 8);
  assert_int_equal(p->groups[2].n, 16);
  done(l);
}

/* ---- epilogues ------------------------------------------------------------------------ */

static void test_epilogue(void **state) {
  (void)state;
  Low *l = lower_ok("model m {\n"
                    "  input x: f32[B, 8]\n"
                    "  input img: f32[B, 3, 6, 6]\n"
                    "  param w: f32[8, 8]\n"
                    "  param w2: f32[8, 8]\n"
                    "  param b: f32[8]\n"
                    "  param k: f32[4, 3, 3, 3]\n"
                    "  output act = relu(linear(x, w, b))\n"    /* activation */
                    "  output mm = x @ w2 + b\n"                /* bias add after a matmul */
                    "  output res = (linear(x, w) + x) * 0.5\n" /* residual add and scale */
                    "  output cv = relu(conv2d(img, k, padding=1))\n"
                    "}\n",
                    false);
  Graph *g = l->g;
  Plan *p = plan_graph(g, 2);
  check_run(g, p);
  static const char *const outs[] = {"act", "mm", "res", "cv"};
  static const Op prod[] = {OP_LINEAR, OP_MATMUL, OP_LINEAR, OP_CONV2D};
  for (int i = 0; i < 4; i++) {
    const Group *gr = group(p, hinted(g, outs[i]));
    assert_int_equal(gr->kind, GK_EPILOGUE);
    assert_int_equal(g->nodes[gr->nodes[0]].op, prod[i]);
    assert_int_equal(p->storage[gr->nodes[0]], ST_FUSED);
    assert_int_equal(p->buf[gr->nodes[0]], -1);
  }
  assert_int_equal(group(p, hinted(g, "res"))->n, 3);
  assert_int_equal(p->ngroups, 4);
  /* the conv's scratch is used when the group runs, at its root */
  int conv = only_op(g, p, OP_CONV2D);
  assert_int_equal(p->bufs[p->scratch[conv]].first, hinted(g, "cv"));
  done(l);
}

static void test_epilogue_not_fused(void **state) {
  (void)state;
  Low *l = lower_ok("model m {\n"
                    "  input x: f32[B, 8]\n"
                    "  input col: f32[B, 1]\n"
                    "  param w: f32[8, 8]\n"
                    "  param w1: f32[1, 8]\n"
                    "  param w3: f32[8, 8]\n"
                    "  h = linear(x, w)\n"
                    "  output both = relu(h) + h\n" /* read by two ops of the tail */
                    "  narrow = linear(x, w1)\n"    /* [B, 1]: the tail is [B, 8] */
                    "  output wide = narrow * x\n"
                    "  output half = to_f16(relu(linear(x, w3)))\n"  /* the tail ends in f16 */
                    "  output pair = linear(x, w) + linear(x, w3)\n" /* one producer per group */
                    "}\n",
                    false);
  Graph *g = l->g;
  Plan *p = plan_graph(g, 2);
  check_run(g, p);
  int h = hinted(g, "h"), narrow = hinted(g, "narrow");
  assert_int_equal(p->storage[h], ST_ARENA);
  assert_int_equal(group(p, h)->kind, GK_SINGLE);
  assert_int_equal(group(p, hinted(g, "both"))->kind, GK_ELEM);
  assert_int_equal(p->storage[narrow], ST_ARENA);
  assert_int_equal(group(p, hinted(g, "wide"))->kind, GK_SINGLE);
  const Group *half = group(p, hinted(g, "half"));
  assert_int_equal(half->kind, GK_ELEM); /* relu + to_f16, the linear apart */
  assert_int_equal(half->n, 2);
  const Group *pair = group(p, hinted(g, "pair"));
  assert_int_equal(pair->kind, GK_EPILOGUE);
  assert_int_equal(pair->n, 2);
  int lone = g->nodes[pair->root].in[0] == pair->nodes[0] ? g->nodes[pair->root].in[1]
                                                          : g->nodes[pair->root].in[0];
  assert_int_equal(p->storage[lone], ST_ARENA);
  done(l);
}

/* Per function: the forward's relu(linear) fuses in run, but in the train
 * step relu's backward reads the linear's output, so it stays a buffer. */
static void test_per_function(void **state) {
  (void)state;
  Low *l = lower_ok("model m {\n"
                    "  input x: f32[B, 8]\n"
                    "  param w: f32[4, 8]\n"
                    "  output y = relu(linear(x, w))\n"
                    "}\n"
                    "train m {\n"
                    "  input t: i64[B]\n"
                    "  loss = cross_entropy(y, t)\n"
                    "  optimizer = sgd(lr=0.1)\n"
                    "}\n",
                    true);
  Graph *g = l->g;
  Plan *run = plan_graph(g, 2), *tr = plan_train(g, 2);
  check_run(g, run);
  check_groups(g, tr);
  int lin = -1;
  for (int i = 0; i < g->train_begin; i++)
    if (g->nodes[i].op == OP_LINEAR) lin = i;
  assert_true(lin >= 0);
  assert_int_equal(run->storage[lin], ST_FUSED);
  assert_int_equal(tr->storage[lin], ST_ARENA);
  done(l);
}

/* ---- batch_norm as elementwise ops (bnexpand.c) --------------------------------------------- */

/* Every node's inputs come before it (the schedule is node order). */
static void check_topological(const Graph *g) {
  for (int i = 0; i < g->n; i++)
    for (int j = 0; j < g->nodes[i].nin; j++) assert_true(g->nodes[i].in[j] < i);
}

static void test_bn_expand(void **state) {
  (void)state;
  Low *l = lower_ok("model m {\n"
                    "  input img: f32[B, 3, 6, 6]\n"
                    "  input v: f32[B, 5]\n"
                    "  param k: f32[4, 3, 3, 3]\n"
                    "  param bw: f32[4]\n"
                    "  param bb: f32[4]\n"
                    "  buffer mean: f32[4] = zeros\n"
                    "  buffer var: f32[4] = ones\n"
                    "  buffer mean5: f32[5] = zeros\n"
                    "  buffer var5: f32[5] = ones\n"
                    "  output cv = relu(batch_norm(conv2d(img, k, padding=1), mean, var, bw, bb))\n"
                    "  output flat = batch_norm(v, mean5, var5) * 2.0\n"
                    "}\n"
                    "train m {\n"
                    "  input t: i64[B]\n"
                    "  loss = cross_entropy(flatten(cv), t)\n"
                    "  optimizer = sgd(lr=0.1)\n"
                    "}\n",
                    true);
  Graph *g = l->g;
  /* what the train step refers to, before */
  const int ngrads = g->ntensors, loss_op = g->nodes[g->loss].op, begin_op = g->nodes[g->train_begin].op;
  Op *grad_op = calloc((size_t)ngrads + 1, sizeof *grad_op);
  for (int t = 0; t < ngrads; t++) grad_op[t] = g->grads[t] >= 0 ? g->nodes[g->grads[t]].op : OP_CONST;
  const int n0 = g->n, cv0 = hinted(g, "cv");
  assert_true(bn_expand(g, &l->d));
  check_topological(g);
  /* 4-D with weight and bias: eps, add, rsqrt, mul, mul, sub, 2 reshapes, mul (9);
   * 2-D without: eps, add, rsqrt, mul, 0, sub, mul (7) */
  assert_int_equal(g->n, n0 + 9 + 7);
  for (int i = 0; i < g->n; i++) assert_int_not_equal(g->nodes[i].op, OP_BATCH_NORM);
  assert_int_equal(g->nodes[g->loss].op, loss_op);
  assert_int_equal(g->nodes[g->train_begin].op, begin_op);
  assert_int_equal(hinted(g, "cv"), cv0 + 16); /* moved with everything after the first */
  for (int t = 0; t < ngrads; t++)
    if (g->grads[t] >= 0) assert_int_equal(g->nodes[g->grads[t]].op, grad_op[t]);
  free(grad_op);
  /* -O2: the multiply and add fold into the convolution with the relu,
   * inside it (per-channel values); a and s are two small groups */
  Plan *p = plan_graph(g, 2);
  check_run(g, p);
  const Group *gr = group(p, g->outputs[0].node); /* cv */
  assert_int_equal(gr->kind, GK_EPILOGUE);
  assert_int_equal(g->nodes[gr->nodes[0]].op, OP_CONV2D);
  assert_int_equal(gr->n, 4); /* conv2d + mul + add + relu */
  assert_true(gr->inside);
  Plan *tr = plan_train(g, 2);
  check_groups(g, tr);
  done(l);
}

/* views.c: attention reads q, k, v from the projection and writes through
 * the transpose after it; what must stay a copy stays one. */
static const char *attn_model(const char *q_extra, const char *out_perm, const char *end) {
  static char buf[2048];
  snprintf(buf, sizeof buf,
           "model m {\n"
           "  input x: f32[B, T, 24]\n"
           "  param w: f32[72, 24]\n"
           "  q, k, v = split(linear(x, w), [24, 24, 24], -1)\n"
           "  q = transpose(reshape(q, [B, T, 4, 6]), 1, 2)%s\n"
           "  k = transpose(reshape(k, [B, T, 4, 6]), 1, 2)\n"
           "  v = transpose(reshape(slice(v, -1, 0, %s), [B, T, 4, 6]), 1, 2)\n"
           "  h = scaled_dot_product_attention(q, k, v, causal=true)\n"
           "  output y = %s\n"
           "}\n",
           q_extra, end, out_perm);
  return buf;
}

static void test_sdpa_views(void **state) {
  (void)state;
  /* GPT-2's block: everything in place */
  Low *l = lower_ok(attn_model("", "reshape(transpose(h, 1, 2), [B, T, 24])", "24"), false);
  Graph *g = l->g;
  assert_true(sdpa_views(g));
  check_topological(g);
  Plan *p = plan_graph(g, 2);
  check_run(g, p);
  const int a = only_op(g, p, OP_SDPA), lin = only_op(g, p, OP_LINEAR);
  assert_int_equal(g->nodes[a].ia[3], 1);
  for (int j = 0; j < 3; j++) assert_int_equal(g->nodes[a].in[j], lin);
  for (int i = 0; i < g->n; i++) /* no copy is left to run */
    if (p->storage[i] != ST_NONE)
      assert_true(g->nodes[i].op != OP_SLICE && g->nodes[i].op != OP_TRANSPOSE);
  /* the result is the transpose's [B, T, 4, 6], written at its strides */
  assert_int_equal(g->nodes[a].ty.rank, 4);
  assert_true(dim_is_const(g->nodes[a].ty.dim[2], NULL));
  Dim off;
  const Dim *st = sdpa_operand_view(g, a, 3, &off); /* y [b, h, t, d] -> [b, t, h, d] */
  int64_t c;
  assert_true(dim_is_const(st[1], &c) && c == 6);
  assert_true(dim_is_const(st[2], &c) && c == 24);
  assert_true(dim_is_const(st[3], &c) && c == 1);
  st = sdpa_operand_view(g, a, 1, &off); /* k: columns 24.. of rows of 72 */
  assert_true(dim_is_const(off, &c) && c == 24);
  assert_true(dim_is_const(st[1], &c) && c == 6);
  assert_true(dim_is_const(st[2], &c) && c == 72);
  const Type qt = sdpa_operand_type(g, a, 0);
  assert_int_equal(qt.rank, 4);
  assert_true(dim_is_const(qt.dim[1], &c) && c == 4); /* [B, 4, T, 6] */
  done(l);

  /* q also an output: its copy stays; the attention still reads in place */
  l = lower_ok(attn_model("\n  output qq = q * 1.0", "h", "24"), false);
  g = l->g;
  sdpa_views(g);
  p = plan_graph(g, 2);
  check_run(g, p);
  int ntr = 0;
  for (int i = 0; i < g->n; i++) ntr += p->storage[i] != ST_NONE && g->nodes[i].op == OP_TRANSPOSE;
  assert_int_equal(ntr, 1); /* q's, for the output */
  assert_int_equal(g->nodes[only_op(g, p, OP_SDPA)].ia[3], 1);
  done(l);

  /* a permute that moves the last dim is not the attention's layout; a
   * slice whose end is checked at run time (T) is not looked through */
  l = lower_ok(attn_model("", "permute(h, [0, 1, 3, 2])", "24"), false);
  g = l->g;
  sdpa_views(g);
  p = plan_graph(g, 2);
  assert_int_equal(g->nodes[only_op(g, p, OP_PERMUTE)].op, OP_PERMUTE);
  done(l);
  l = lower_ok("model m {\n"
               "  input q: f32[B, 4, T, 6]\n"
               "  input kv: f32[B, 4, 40, 6]\n"
               "  k = slice(kv, 2, 0, T)\n"
               "  output y = scaled_dot_product_attention(q, k, k)\n"
               "}\n",
               false);
  g = l->g;
  sdpa_views(g);
  p = plan_graph(g, 2);
  assert_int_equal(g->nodes[only_op(g, p, OP_SDPA)].ia[3], 0); /* k cannot be seen through */
  only_op(g, p, OP_SLICE);
  done(l);
}

/* A pool takes in the convolution (and tail) it alone reads: GK_POOLED, at
 * -O2 on the C backend only, never where the tail reads per-image values,
 * or the result is read twice (the train step). */
static void test_pooled(void **state) {
  (void)state;
  Low *l = lower_ok("model m {\n"
                    "  input x: f32[B, 3, 12, 12]\n"
                    "  input s: f32[B, 1, 1, 1]\n"
                    "  param k: f32[4, 3, 3, 3]\n"
                    "  param c: f32[4, 1, 1]\n"
                    "  output a = max_pool2d(relu(conv2d(x, k, padding=1) * c), 2)\n"
                    "  output b = avg_pool2d(conv2d(x, k), 2)\n"
                    "  output d = max_pool2d(conv2d(x, k, padding=1) + s, 2)\n"
                    "}\n"
                    "train m {\n"
                    "  loss = mean(a) + mean(b)\n"
                    "  optimizer = sgd(lr=0.1)\n"
                    "}\n",
                    true);
  Graph *g = l->g;
  Plan *p = plan_graph(g, 2);
  check_run(g, p);
  const Group *ga = group(p, g->outputs[0].node), *gb = group(p, g->outputs[1].node);
  assert_int_equal(ga->kind, GK_POOLED);
  assert_int_equal(ga->n, 4); /* conv2d + mul + relu + max_pool2d */
  assert_int_equal(g->nodes[ga->nodes[0]].op, OP_CONV2D);
  assert_int_equal(ga->chunk, 32768 / (4 * 12 * 12)); /* 128 KB of the convolution's result */
  assert_int_equal(gb->kind, GK_POOLED);
  assert_int_equal(gb->n, 2); /* a convolution alone */
  assert_int_equal(group(p, g->outputs[2].node)->kind, GK_SINGLE); /* + s: per image */
  Plan *p0 = plan_graph(g, 0);
  for (int gi = 0; gi < p0->ngroups; gi++) assert_int_not_equal(p0->groups[gi].kind, GK_POOLED);
  /* train step: max_pool2d's backward reads relu's result, so a's is stored;
   * avg_pool2d's backward reads no values, so b's stays pooled */
  Plan *tr = plan_train(g, 2);
  check_groups(g, tr);
  assert_int_not_equal(group(tr, g->outputs[0].node)->kind, GK_POOLED);
  assert_int_equal(group(tr, g->outputs[1].node)->kind, GK_POOLED);
  g->cuda = true;
  Plan *pc = plan_graph(g, 2);
  for (int gi = 0; gi < pc->ngroups; gi++) assert_int_not_equal(pc->groups[gi].kind, GK_POOLED);
  done(l);
}

/* In a CNN's train step, relu's backward runs inside max_pool2d's backward. */
static void test_pool_backward_epilogue(void **state) {
  (void)state;
  Low *l = lower_ok("model m {\n"
                    "  input img: f32[B, 2, 8, 8]\n"
                    "  param k: f32[3, 2, 3, 3]\n"
                    "  param w: f32[4, 48]\n"
                    "  output y = linear(flatten(max_pool2d(relu(conv2d(img, k, padding=1)), 2)), w)\n"
                    "}\n"
                    "train m {\n"
                    "  input t: i64[B]\n"
                    "  loss = cross_entropy(y, t)\n"
                    "  optimizer = sgd(lr=0.1)\n"
                    "}\n",
                    true);
  Graph *g = l->g;
  Plan *tr = plan_train(g, 2);
  check_groups(g, tr);
  int found = 0;
  for (int gi = 0; gi < tr->ngroups; gi++) {
    const Group *gr = &tr->groups[gi];
    if (gr->kind != GK_EPILOGUE || g->nodes[gr->nodes[0]].op != OP_MAX_POOL2D_DX) continue;
    assert_int_equal(gr->n, 2);
    assert_int_equal(g->nodes[gr->root].op, OP_RELU_BWD);
    assert_true(gr->inside);
    found++;
  }
  assert_int_equal(found, 1);
  done(l);
}

/* ---- in place ------------------------------------------------------------------------------ */

static void test_inplace(void **state) {
  (void)state;
  Low *l =
      lower_ok("model m {\n"
               "  input x: f32[B, 8]\n"
               "  param w: f32[8, 8]\n"
               "  a = softmax(x, dim=1)\n"
               "  output y = a * 2.0 + 1.0\n" /* a dies here: y overwrites it */
               "  c = softmax(x, dim=0)\n"
               "  output z = c * 3.0 + 1.0\n" /* c is read again below: no */
               "  output k = sum(c, dim=1, keepdim=true)\n"
               "  h = softmax(x, dim=1)\n"
               "  output e = relu(linear(h, w) + h)\n" /* an epilogue never: the GEMM reads h */
               "  i = to_i32(x)\n"
               "  output f = to_f32(i) * 2.0\n" /* another dtype: no */
               "}\n",
               false);
  Graph *g = l->g;
  Plan *p = plan_graph(g, 2);
  check_run(g, p);
  int a = hinted(g, "a"), y = hinted(g, "y"), c = hinted(g, "c"), z = hinted(g, "z");
  assert_int_equal(group(p, y)->inplace, a);
  assert_int_equal(p->buf[y], p->buf[a]);
  assert_int_equal(group(p, z)->inplace, -1);
  assert_int_not_equal(p->buf[z], p->buf[c]);
  assert_int_equal(group(p, hinted(g, "e"))->inplace, -1);
  assert_int_equal(group(p, hinted(g, "f"))->inplace, -1);
  /* -O0: nothing in place */
  Plan *p0 = plan_graph(g, 0);
  for (int gi = 0; gi < p0->ngroups; gi++) assert_int_equal(p0->groups[gi].inplace, -1);
  done(l);
}

/* ---- --report and --dot ----------------------------------------------------------------- */

static void test_report_and_dot(void **state) {
  (void)state;
  Low *l = lower_ok("model m {\n"
                    "  input x: f32[B, 8]\n"
                    "  param w: f32[4, 8]\n"
                    "  output y = relu(linear(x, w)) * 2.0\n"
                    "}\n",
                    false);
  Graph *g = l->g;
  Plan *p = plan_graph(g, 2), *p0 = plan_graph(g, 0);
  int64_t sv[MAX_SYMS + 1] = {0, 10};
  double f, b;
  fuse_group_cost(g, p, 0, sv, &f, &b);
  assert_int_equal(p->ngroups, 1);
  /* 2*10*4*8 for the GEMM + 40 + 40 elementwise; x (320 B), w (128 B) read,
   * y (160 B) written once: the tail runs on the GEMM's blocks in cache */
  assert_true(f == 2.0 * 10 * 4 * 8 + 40 + 40);
  assert_true(b == 320 + 128 + 160);
  double b0 = 0;
  for (int gi = 0; gi < p0->ngroups; gi++) {
    double f0, bb;
    fuse_group_cost(g, p0, gi, sv, &f0, &bb);
    b0 += bb;
  }
  assert_true(b0 == (320 + 128 + 160) + 2 * (160 + 160)); /* two more loops over [10, 4] */
  {
    /* a convolution's tail that reads only values of its shape runs on the
     * convolution's finished blocks (mlcrt_conv2d_epi_f32): no second pass */
    Low *lc = lower_ok("model c {\n"
                       "  input x: f32[B, 1, 4, 4]\n"
                       "  param w: f32[2, 1, 3, 3]\n"
                       "  output y = relu(conv2d(x, w))\n"
                       "}\n",
                       false);
    Plan *pc = plan_graph(lc->g, 2);
    double fc, bc;
    assert_int_equal(pc->ngroups, 1);
    assert_int_equal(pc->groups[0].kind, GK_EPILOGUE);
    fuse_group_cost(lc->g, pc, 0, sv, &fc, &bc);
    assert_true(bc == 640 + 72 + 320); /* x, w read; y written once */
    assert_true(pc->groups[0].inside);
    done(lc);
    /* so does one that reads a value constant along each channel's plane (a
     * per-channel scale [C, 1, 1], a per-image shift [B, 1, 1, 1]) */
    lc = lower_ok("model c {\n"
                  "  input x: f32[B, 1, 4, 4]\n"
                  "  input t: f32[B, 1, 1, 1]\n"
                  "  param w: f32[2, 1, 3, 3]\n"
                  "  param s: f32[2, 1, 1]\n"
                  "  output y = relu(conv2d(x, w)) * s + t\n"
                  "}\n",
                  false);
    pc = plan_graph(lc->g, 2);
    assert_int_equal(pc->ngroups, 1);
    assert_int_equal(pc->groups[0].kind, GK_EPILOGUE);
    assert_true(pc->groups[0].inside);
    fuse_group_cost(lc->g, pc, 0, sv, &fc, &bc);
    assert_true(bc == 640 + 40 + 72 + 8 + 320); /* x, t, w, s read; y written once */
    done(lc);
    /* one that varies along only part of the plane (a per-row scale [4, 1])
     * does not fit [B * C, the rest]: a second pass, in place */
    lc = lower_ok("model c {\n"
                  "  input x: f32[B, 1, 4, 4]\n"
                  "  param w: f32[2, 1, 3, 3]\n"
                  "  param s: f32[4, 1]\n"
                  "  output y = relu(conv2d(x, w, padding=1)) * s\n"
                  "}\n",
                  false);
    pc = plan_graph(lc->g, 2);
    assert_int_equal(pc->ngroups, 1);
    assert_int_equal(pc->groups[0].kind, GK_EPILOGUE);
    assert_false(pc->groups[0].inside);
    fuse_group_cost(lc->g, pc, 0, sv, &fc, &bc);
    assert_true(bc == 640 + 72 + 16 + 1280 + 2 * 1280); /* x, w, s read; y written, then read and written */
    done(lc);
  }
  char *text = NULL;
  size_t len = 0;
  FILE *f1 = open_memstream(&text, &len);
  fuse_report(f1, g, p, g, p0, sv, "run");
  fclose(f1);
  assert_non_null(strstr(text, "epilogue"));
  assert_non_null(strstr(text, "linear + relu + mul"));
  assert_non_null(strstr(text, "1 kernels (1 fused groups) at -O2, 3 at -O0"));
  free(text);
  FILE *f2 = open_memstream(&text, &len);
  fuse_dot(f2, g, p);
  fclose(f2);
  assert_non_null(strstr(text, "digraph"));
  assert_non_null(strstr(text, "subgraph cluster_0"));
  free(text);
  done(l);
}

/* ---- property test -----------------------------------------------------------------------------
 */

static uint64_t rng_state;
static unsigned rnd(unsigned n) {
  rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
  return (unsigned)((rng_state >> 33) % n);
}

/* A random model over f32[B, F] values, biased towards elementwise chains
 * (so groups form), with linear layers (epilogues), reductions, views,
 * values used several times and outputs in the middle. */
static char *random_model(int nops) {
  static const char *const unary[] = {"relu", "sigmoid", "exp", "neg", "tanh"};
  static const char *const binop[] = {"+", "-", "*"};
  char *s = malloc(65536);
  int len = sprintf(s, "model rnd {\n  input x: f32[B, 8]\n  input r: f32[B, 1]\n");
  int f[64], nv = 2, np = 0;
  char name[64][16];
  strcpy(name[0], "x"), f[0] = 8;
  strcpy(name[1], "r"), f[1] = 1;
  for (int i = 0; i < nops; i++) {
    int a = rnd(4) ? nv - 1 : (int)rnd(nv);
    char expr[256];
    int fo = f[a];
    switch (rnd(8)) {
    case 0:
    case 1:
    case 2:
      snprintf(expr, sizeof expr, "%s(%s)", unary[rnd(5)], name[a]);
      break;
    case 3: { /* binary: with a value of the same width, a column, or a constant */
      int b = (int)rnd(nv);
      if (f[b] == f[a] || f[b] == 1)
        snprintf(expr, sizeof expr, "%s %s %s", name[a], binop[rnd(3)], name[b]);
      else
        snprintf(expr, sizeof expr, "%s * 0.5", name[a]);
      break;
    }
    case 4: { /* linear to 8 or 1 features, maybe a bias */
      fo = rnd(4) ? 8 : 1;
      len += sprintf(s + len, "  param w%d: f32[%d, %d]\n", np, fo, f[a]);
      if (rnd(2)) {
        len += sprintf(s + len, "  param b%d: f32[%d]\n", np, fo);
        snprintf(expr, sizeof expr, "linear(%s, w%d, b%d)", name[a], np, np);
      } else {
        snprintf(expr, sizeof expr, "linear(%s, w%d)", name[a], np);
      }
      np++;
      break;
    }
    case 5:
      snprintf(expr, sizeof expr, "sum(%s, dim=1, keepdim=true)", name[a]), fo = 1;
      break;
    case 6:
      if (f[a] == 8)
        snprintf(expr, sizeof expr, "flatten(relu(reshape(%s, [B, 2, 4])))", name[a]);
      else
        snprintf(expr, sizeof expr, "softmax(%s, dim=0)", name[a]);
      break;
    default:
      snprintf(expr, sizeof expr, "softmax(%s, dim=1)", name[a]);
      break;
    }
    snprintf(name[nv], sizeof name[nv], "v%d", i);
    f[nv] = fo;
    len += sprintf(s + len, "  %s%s = %s\n", rnd(8) ? "" : "output ", name[nv], expr);
    nv++;
  }
  len += sprintf(s + len, "  output last = %s\n}\n", name[nv - 1]);
  return s;
}

static void test_property_random_graphs(void **state) {
  (void)state;
  rng_state = 7;
  int fused = 0, epilogues = 0, inplace = 0;
  for (int iter = 0; iter < 300; iter++) {
    char *src = random_model(4 + (int)rnd(40));
    Low *l = lower_ok(src, false);
    Plan *p = plan_graph(l->g, 2);
    check_run(l->g, p);
    for (int gi = 0; gi < p->ngroups; gi++) {
      fused += p->groups[gi].n > 1;
      epilogues += p->groups[gi].kind == GK_EPILOGUE;
      inplace += p->groups[gi].inplace >= 0;
    }
    Plan *p0 = plan_graph(l->g, 0);
    check_run(l->g, p0);
    done(l);
    free(src);
  }
  /* the generator exercises every rule */
  assert_true(fused > 300);
  assert_true(epilogues > 50);
  assert_true(inplace > 50);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_elem_chain),
      cmocka_unit_test(test_elem_not_fused),
      cmocka_unit_test(test_elem_group_bounded),
      cmocka_unit_test(test_epilogue),
      cmocka_unit_test(test_epilogue_not_fused),
      cmocka_unit_test(test_per_function),
      cmocka_unit_test(test_bn_expand),
      cmocka_unit_test(test_sdpa_views),
      cmocka_unit_test(test_pooled),
      cmocka_unit_test(test_pool_backward_epilogue),
      cmocka_unit_test(test_inplace),
      cmocka_unit_test(test_report_and_dot),
      cmocka_unit_test(test_property_random_graphs),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
