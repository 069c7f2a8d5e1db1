/* tests/unit/test_compiler_plan.c — unit tests of storage planning
 * (compiler/plan.c, with the runtime planner runtime/plan.c; cmocka).
 *
 * Lowers small models and checks plan_graph's storage classes (inputs,
 * weights, views aliasing the right root, inlined constants, dead nodes),
 * the weights layout (64-byte aligned, non-overlapping), live ranges (every
 * use covered, also through views; outputs live to the end), conv scratch,
 * and plan_arena_bytes.  A property test generates ~200 random DAGs of
 * elementwise, linear, reduction, copy and view ops as MDL text, plans them
 * at -O2 and -O0, places the buffers with mlcrt_plan for several values of
 * the symbolic dim, and checks that no two buffers whose live ranges
 * intersect share a byte, that -O0 reuses nothing, and that -O2 never needs
 * more than -O0.
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

static Low *lower_ok(const char *text) {
  Low *l = calloc(1, sizeof *l);
  l->A = arena_new();
  Source *src = source_from_string(l->A, "test.mdl", text);
  Ast *file = parse_source(l->A, src, &l->d);
  if (file) l->g = lower_model(l->A, file, NULL, &l->d);
  if (l->g && !infer_graph(l->g, &l->d)) l->g = NULL;
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

static int output_node(const Graph *g, const char *name) {
  for (int i = 0; i < g->noutputs; i++)
    if (strcmp(g->outputs[i].name, name) == 0) return g->outputs[i].node;
  print_error("no output '%s'\n", name);
  fail();
  return -1;
}

static int tensor_node(const Graph *g, const char *path) {
  for (int i = 0; i < g->ntensors; i++)
    if (strcmp(g->nodes[g->tensors[i]].name, path) == 0) return g->tensors[i];
  print_error("no param '%s'\n", path);
  fail();
  return -1;
}

/* The node whose value a node named by `hint` holds (last one with it). */
static int hinted(const Graph *g, const char *hint) {
  for (int i = g->n - 1; i >= 0; i--)
    if (g->nodes[i].hint && strcmp(g->nodes[i].hint, hint) == 0) return i;
  print_error("no node bound to '%s'\n", hint);
  fail();
  return -1;
}

static size_t align64(size_t x) { return (x + 63) / 64 * 64; }

/* The storage root of a node: follow views to what they alias. */
static int root_of(const Graph *g, int id) {
  while (op_info[g->nodes[id].op].flags & F_VIEW) id = g->nodes[id].in[0];
  return id;
}

/* Liveness computed here independently: reachable backwards from outputs. */
static bool *live_nodes(const Graph *g) {
  bool *live = calloc((size_t)g->n + 1, 1);
  for (int i = 0; i < g->noutputs; i++) live[g->outputs[i].node] = true;
  for (int i = g->n - 1; i >= 0; i--)
    if (live[i])
      for (int j = 0; j < g->nodes[i].nin; j++) live[g->nodes[i].in[j]] = true;
  return live;
}

/* Bytes of buffer b for the given symbol values, computed here. */
static size_t buf_size(const Graph *g, const Plan *p, int b, const int64_t *sv) {
  const Node *nd = &g->nodes[p->bufs[b].node];
  if (p->bufs[b].scratch) {
    const Type *x, *w, *y;
    int h;
    conv_types(g, nd, &x, &w, &y, &h);
    mlcrt_conv2d_params cp = {
        .N = dim_eval(x->dim[0], sv), .C = dim_eval(x->dim[1], sv), .H = dim_eval(x->dim[2], sv),
        .W = dim_eval(x->dim[3], sv), .OC = dim_eval(w->dim[0], sv), .KH = dim_eval(w->dim[2], sv),
        .KW = dim_eval(w->dim[3], sv), .OH = dim_eval(y->dim[2], sv), .OW = dim_eval(y->dim[3], sv),
        .sh = nd->ia[0], .sw = nd->ia[1], .ph = nd->ia[2], .pw = nd->ia[3], .dh = nd->ia[4], .dw = nd->ia[5],
        .groups = nd->ia[6]};
    if (p->bufs[b].chunk) /* GK_POOLED */
      return mlcrt_conv2d_pool_scratch(&cp, p->bufs[b].chunk, 1);
    return mlcrt_conv2d_scratch(&cp, nd->op == OP_CONV2D_DW ? MLCRT_CONV_DW : nd->op == OP_CONV2D_DX ? MLCRT_CONV_DX : MLCRT_CONV_FWD, 1);
  }
  int64_t n = 1;
  for (int i = 0; i < nd->ty.rank; i++) n *= dim_eval(nd->ty.dim[i], sv);
  const int64_t n0 = dim_eval(nd->ty.dim[0], sv), chunk = p->bufs[b].chunk;
  if (chunk) { /* GK_POOLED: chunk images, or the batch if smaller */
    assert_int_equal((size_t)dim_eval(plan_buf_bytes(g, p, b), sv),
                     (size_t)(n / n0 * chunk) * dtype_size(nd->ty.dt));
    return (size_t)(n / n0 * mlcrt_conv2d_pool_images(n0, chunk, 1)) * dtype_size(nd->ty.dt);
  }
  size_t bytes = (size_t)n * dtype_size(nd->ty.dt);
  /* plan_buf_bytes agrees for values */
  assert_int_equal((size_t)dim_eval(plan_buf_bytes(g, p, b), sv), bytes);
  return bytes;
}

/* Checks everything about one plan of g; returns the arena bytes for sv. */
static size_t check_plan(const Graph *g, const Plan *p, bool reuse, const int64_t *sv) {
  bool *live = live_nodes(g);
  int n = g->n;
  assert_int_equal(p->reuse, reuse);
  /* storage classes */
  int *seen = calloc((size_t)p->nbufs + 1, sizeof(int));
  for (int i = 0; i < n; i++) {
    const Node *nd = &g->nodes[i];
    Storage st = p->storage[i];
    if (nd->op == OP_PARAM || nd->op == OP_BUFFER) {
      assert_int_equal(st, ST_WEIGHT);
      assert_int_equal(p->buf[i], -1);
      continue;
    }
    if (!live[i]) {
      assert_int_equal(st, ST_NONE);
      assert_int_equal(p->buf[i], -1);
      assert_int_equal(p->scratch[i], -1);
      continue;
    }
    switch (nd->op) {
    case OP_INPUT: assert_int_equal(st, ST_INPUT); break;
    case OP_CONST: assert_int_equal(st, ST_NONE); break;
    default:
      if (op_info[nd->op].flags & F_VIEW) {
        assert_int_equal(st, ST_ALIAS);
        int r = root_of(g, i);
        assert_int_equal(p->alias_of[i], r);
        assert_true(p->storage[r] == ST_ARENA || p->storage[r] == ST_INPUT || p->storage[r] == ST_WEIGHT);
        assert_int_equal(p->buf[i], -1);
      } else if (st == ST_FUSED) { /* computed inside its group, not its root */
        assert_true(reuse);
        assert_true(p->group_of[i] >= 0);
        assert_true(p->groups[p->group_of[i]].root != i);
      } else {
        assert_int_equal(st, ST_ARENA);
        assert_int_equal(p->alias_of[i], i);
      }
    }
    if (st == ST_ARENA) {
      int b = p->buf[i];
      assert_true(b >= 0 && b < p->nbufs);
      assert_false(p->bufs[b].scratch);
      if (p->bufs[b].node != i) { /* in place: the root of a group that overwrites a leaf */
        const Group *gr = &p->groups[p->group_of[i]];
        assert_true(reuse);
        assert_int_equal(gr->root, i);
        assert_true(gr->inplace >= 0);
        assert_int_equal(p->buf[gr->inplace], b);
      } else {
        seen[b]++;
      }
    } else {
      assert_int_equal(p->buf[i], -1);
    }
    if (nd->op == OP_CONV2D) {
      int s = p->scratch[i];
      assert_true(s >= 0 && s < p->nbufs);
      assert_true(p->bufs[s].scratch);
      assert_int_equal(p->bufs[s].node, i);
      seen[s]++;
    } else if (p->group_of[i] >= 0 && p->groups[p->group_of[i]].kind == GK_POOLED &&
               p->groups[p->group_of[i]].root == i) {
      /* a pooled convolution's result, a chunk of images at a time */
      const Group *gr = &p->groups[p->group_of[i]];
      int s = p->scratch[i];
      assert_true(s >= 0 && s < p->nbufs);
      assert_false(p->bufs[s].scratch);
      assert_int_equal(p->bufs[s].chunk, gr->chunk);
      assert_int_equal(p->bufs[s].node, gr->nodes[gr->n - 2]);
      seen[s]++;
    } else {
      assert_int_equal(p->scratch[i], -1);
    }
  }
  for (int b = 0; b < p->nbufs; b++) assert_int_equal(seen[b], 1); /* each buffer owned once */
  free(seen);

  /* the true live range of each buffer, computed here: from its definition
   * to its last use (directly or through views), outputs to the end */
  /* (a group member reads its inputs when the group runs: at its root) */
  int *tfirst = calloc((size_t)p->nbufs + 1, sizeof(int)), *tlast = calloc((size_t)p->nbufs + 1, sizeof(int));
  for (int b = 0; b < p->nbufs; b++) {
    const PlanBuf *pb = &p->bufs[b];
    int want = pb->node, first = pb->node;
    if (pb->chunk && !pb->scratch) { /* a pooled convolution's chunks: while its group runs */
      first = want = p->groups[p->group_of[pb->node]].root;
    } else if (!pb->scratch) {
      for (int v = 0; v < n; v++) { /* every value stored in b: the owner and in-place roots */
        if (p->storage[v] != ST_ARENA || p->buf[v] != b) continue;
        int vlast = v;
        for (int j = 0; j < n; j++) {
          if (!live[j]) continue;
          int at = p->group_of[j] >= 0 ? p->groups[p->group_of[j]].root : j;
          for (int k = 0; k < g->nodes[j].nin; k++)
            if (root_of(g, g->nodes[j].in[k]) == v && at > vlast) vlast = at;
        }
        for (int o = 0; o < g->noutputs; o++)
          if (root_of(g, g->outputs[o].node) == v) vlast = n;
        /* a value overwritten in place is dead once its overwriter runs */
        for (int gi = 0; gi < p->ngroups; gi++)
          if (p->groups[gi].inplace == v) assert_int_equal(vlast, p->groups[gi].root);
        if (vlast > want) want = vlast;
      }
    } else {
      first = want = p->group_of[pb->node] >= 0 ? p->groups[p->group_of[pb->node]].root : pb->node;
    }
    tfirst[b] = first;
    tlast[b] = want;
    /* the plan's ranges: exact at -O2, everything at -O0 */
    if (reuse) {
      assert_int_equal(pb->first, tfirst[b]);
      assert_int_equal(pb->last, tlast[b]);
    } else {
      assert_int_equal(pb->first, 0);
      assert_int_equal(pb->last, n);
    }
  }
  /* every use of an arena value (directly or through views) is inside its range */
  for (int j = 0; j < n; j++) {
    if (!live[j]) continue;
    int at = p->group_of[j] >= 0 ? p->groups[p->group_of[j]].root : j;
    for (int k = 0; k < g->nodes[j].nin; k++) {
      int r = root_of(g, g->nodes[j].in[k]);
      assert_true(p->storage[r] != ST_FUSED || p->group_of[r] == p->group_of[j]); /* fused values stay inside */
      if (p->buf[r] < 0) continue;
      assert_true(p->bufs[p->buf[r]].first <= at && at <= p->bufs[p->buf[r]].last);
    }
  }

  /* weights: declaration order, 64-byte aligned, disjoint, inside weight_bytes */
  size_t end = 0;
  for (int t = 0; t < g->ntensors; t++) {
    int id = g->tensors[t];
    bool k;
    int64_t numel = type_numel_const(&g->nodes[id].ty, &k);
    assert_true(k);
    size_t bytes = (size_t)numel * dtype_size(g->nodes[id].ty.dt);
    assert_int_equal(p->weight_off[id] % 64, 0);
    assert_true(p->weight_off[id] >= end);
    end = p->weight_off[id] + bytes;
    assert_true(end <= p->weight_bytes);
  }
  assert_int_equal(p->weight_bytes, align64(end));

  /* placement: intersecting live ranges never share bytes */
  size_t total = 0, sum_aligned = 0;
  if (p->nbufs) {
    mlcrt_plan_item *it = calloc((size_t)p->nbufs, sizeof *it);
    for (int b = 0; b < p->nbufs; b++) {
      it[b].size = buf_size(g, p, b, sv);
      it[b].first = p->bufs[b].first;
      it[b].last = p->bufs[b].last;
      sum_aligned += align64(it[b].size);
    }
    total = mlcrt_plan(it, p->nbufs, 64);
    assert_int_equal(total % 64, 0);
    for (int a = 0; a < p->nbufs; a++) {
      assert_int_equal(it[a].offset % 64, 0);
      assert_true(it[a].offset + it[a].size <= total);
      for (int b = a + 1; b < p->nbufs; b++) {
        if (!it[a].size || !it[b].size) continue;
        /* judged by the true ranges, not the plan's own */
        bool time = tfirst[a] <= tlast[b] && tfirst[b] <= tlast[a];
        bool space = it[a].offset < it[b].offset + it[b].size && it[b].offset < it[a].offset + it[a].size;
        if (time && space) {
          print_error("buffers %d (node %d, live [%d,%d], %zu+%zu) and %d (node %d, live [%d,%d], %zu+%zu) overlap\n",
                      a, p->bufs[a].node, tfirst[a], tlast[a], it[a].offset, it[a].size, b, p->bufs[b].node,
                      tfirst[b], tlast[b], it[b].offset, it[b].size);
          fail();
        }
      }
    }
    /* a lower bound: the bytes live at any one step must fit side by side */
    for (int step = 0; step <= n; step++) {
      size_t at = 0;
      for (int b = 0; b < p->nbufs; b++)
        if (tfirst[b] <= step && step <= tlast[b]) at += it[b].size;
      assert_true(total >= at);
    }
    free(it);
    assert_true(total <= sum_aligned);
    if (!reuse) assert_int_equal(total, sum_aligned); /* -O0 reuses nothing */
  }
  assert_int_equal(plan_arena_bytes(g, p, sv), total);
  free(tfirst);
  free(tlast);
  free(live);
  return total;
}

/* ---- storage classes ------------------------------------------------------------------ */

static const char *const mlp_src =
    "model mlp {\n"
    "  input  x: u8[B, 1, 28, 28]\n"
    "  param  fc1.weight: f32[32, 784] = kaiming_uniform\n"
    "  param  fc1.bias:   f32[32]\n"
    "  param  fc2.weight: f32[10, 32]\n"
    "  param  unused.weight: f32[3, 5]\n"
    "  buffer stats: i64[7]\n"
    "  h = to_f32(x) / 255.0\n"
    "  f = flatten(h)\n"
    "  h1 = relu(linear(f, fc1.weight, fc1.bias))\n"
    "  dead = sigmoid(h1) * 3.0\n"
    "  r = reshape(h1, [B, 4, 8])\n"
    "  r2 = reshape(r, [B, -1])\n"
    "  output logits = linear(r2, fc2.weight)\n"
    "  output view_of_input = flatten(x)\n"
    "  output view_of_value = r\n"
    "}\n";

static void test_storage_classes(void **state) {
  (void)state;
  Low *l = lower_ok(mlp_src);
  Graph *g = l->g;
  Plan *p = plan_graph(g, 2);
  int64_t sv[2] = {0, 8};
  check_plan(g, p, true, sv);

  assert_int_equal(p->storage[g->inputs[0]], ST_INPUT);
  for (int t = 0; t < g->ntensors; t++) assert_int_equal(p->storage[g->tensors[t]], ST_WEIGHT);
  int h = hinted(g, "h"), f = hinted(g, "f"), h1 = hinted(g, "h1"), r = hinted(g, "r"), r2 = hinted(g, "r2");
  int c255 = g->nodes[h].in[1];
  assert_int_equal(g->nodes[c255].op, OP_CONST);
  assert_int_equal(p->storage[c255], ST_NONE); /* inlined into the division loop */
  assert_int_equal(p->storage[h], ST_ARENA);
  assert_int_equal(p->storage[f], ST_ALIAS);
  assert_int_equal(p->alias_of[f], h);
  assert_int_equal(p->storage[h1], ST_ARENA);
  assert_int_equal(p->storage[r], ST_ALIAS);
  assert_int_equal(p->alias_of[r], h1);
  assert_int_equal(p->storage[r2], ST_ALIAS);
  assert_int_equal(p->alias_of[r2], h1); /* a view of a view shares the root */
  int vi = output_node(g, "view_of_input");
  assert_int_equal(p->storage[vi], ST_ALIAS);
  assert_int_equal(p->alias_of[vi], g->inputs[0]);
  /* dead: the sigmoid, its constant and the product get nothing */
  int dead = hinted(g, "dead");
  assert_int_equal(p->storage[dead], ST_NONE);
  assert_int_equal(p->buf[dead], -1);
  assert_int_equal(p->storage[g->nodes[dead].in[0]], ST_NONE);
  assert_int_equal(p->storage[g->nodes[dead].in[1]], ST_NONE);
  /* the unused param and the buffer still have weight slots */
  assert_int_equal(p->storage[tensor_node(g, "unused.weight")], ST_WEIGHT);
  assert_int_equal(p->storage[tensor_node(g, "stats")], ST_WEIGHT);
  /* arena buffers: the to_f32 / 255 loop, linear + relu (one fused group
   * each) and the last linear (and nothing else) */
  assert_int_equal(p->nbufs, 3);
  assert_int_equal(plan_graph(g, 0)->nbufs, 5); /* -O0: one per node */
  /* r is an output through a view: h1's buffer lives to the end */
  assert_int_equal(p->bufs[p->buf[h1]].last, g->n);
  int logits = output_node(g, "logits");
  assert_int_equal(p->bufs[p->buf[logits]].last, g->n);
  /* h's last use is the linear that reads it through the flatten view,
   * which runs inside h1's group (linear + relu) */
  int lin1 = g->nodes[h1].in[0];
  assert_int_equal(g->nodes[lin1].op, OP_LINEAR);
  assert_int_equal(p->storage[lin1], ST_FUSED);
  assert_int_equal(p->groups[p->group_of[lin1]].kind, GK_EPILOGUE);
  assert_int_equal(p->bufs[p->buf[h]].last, h1);
  assert_int_equal(p->bufs[p->buf[h]].first, h);
  done(l);
}

static void test_weights_layout(void **state) {
  (void)state;
  Low *l = lower_ok(mlp_src);
  Graph *g = l->g;
  Plan *p = plan_graph(g, 2);
  /* fc1.weight 32*784*4 = 100352 (a multiple of 64); fc1.bias 128; fc2.weight
   * 1280; unused 60 -> 64; stats 56 -> 64 */
  static const char *const paths[] = {"fc1.weight", "fc1.bias", "fc2.weight", "unused.weight", "stats"};
  static const size_t offs[] = {0, 100352, 100480, 101760, 101824};
  for (int t = 0; t < 5; t++) assert_int_equal(p->weight_off[tensor_node(g, paths[t])], offs[t]);
  assert_int_equal(p->weight_bytes, 101888);
  done(l);
}

static void test_live_ranges_explicit(void **state) {
  (void)state;
  Low *l = lower_ok("model m {\n"
                    "  input x: f32[B, 16]\n"
                    "  a = relu(x)\n"            /* used at b and at e */
                    "  b = a * 2.0\n"             /* used through two views at d */
                    "  c = reshape(b, [B, 4, 4])\n"
                    "  d = sigmoid(flatten(c))\n"
                    "  e = d + a\n"
                    "  f = exp(e)\n"
                    "  output f\n"
                    "}\n");
  Graph *g = l->g;
  Plan *p = plan_graph(g, 2);
  int64_t sv[2] = {0, 3};
  check_plan(g, p, true, sv);
  int a = hinted(g, "a"), b = hinted(g, "b"), d = hinted(g, "d"), e = hinted(g, "e"), f = hinted(g, "f");
  /* -O2: d, e and f are one loop (f's group); a is read there last, so f
   * is written over a's buffer */
  assert_int_equal(p->storage[d], ST_FUSED);
  assert_int_equal(p->storage[e], ST_FUSED);
  assert_int_equal(p->groups[p->group_of[f]].kind, GK_ELEM);
  assert_int_equal(p->groups[p->group_of[f]].inplace, a);
  assert_int_equal(p->buf[f], p->buf[a]);
  assert_int_equal(p->bufs[p->buf[a]].first, a);
  assert_int_equal(p->bufs[p->buf[a]].last, g->n);
  assert_int_equal(p->bufs[p->buf[b]].first, b);
  assert_int_equal(p->bufs[p->buf[b]].last, f); /* read through two views inside f's group */
  assert_int_equal(p->nbufs, 2);
  assert_int_equal(plan_arena_bytes(g, p, sv), 2 * 192); /* B = 3: every value is 192 bytes */
  /* -O0: a buffer per node, live throughout */
  Plan *p0 = plan_graph(g, 0);
  check_plan(g, p0, false, sv);
  assert_int_equal(p0->nbufs, 5);
  assert_int_equal(plan_arena_bytes(g, p0, sv), (size_t)p0->nbufs * 192);
  assert_int_equal(p0->bufs[p0->buf[a]].first, 0);
  assert_int_equal(p0->bufs[p0->buf[a]].last, g->n);
  done(l);
}

static void test_conv_scratch(void **state) {
  (void)state;
  Low *l = lower_ok("model c {\n"
                    "  input x: f32[N, 3, 12, 12]\n"
                    "  param w: f32[8, 3, 3, 3]\n"
                    "  param w1: f32[4, 8, 1, 1]\n"
                    "  y = relu(conv2d(x, w, padding=1))\n"
                    "  z = conv2d(y, w1)\n"
                    "  output z = max_pool2d(z, 2)\n"
                    "}\n");
  Graph *g = l->g;
  for (int O = 0; O <= 2; O += 2) {
    Plan *p = plan_graph(g, O);
    int nconv = 0;
    for (int i = 0; i < g->n; i++)
      if (g->nodes[i].op == OP_CONV2D) {
        nconv++;
        int s = p->scratch[i];
        assert_true(s >= 0);
        assert_true(p->bufs[s].scratch);
        /* the first conv is relu's epilogue producer: it runs at relu's step */
        if (O) assert_int_equal(p->bufs[s].first, p->groups[p->group_of[i]].root);
      }
    assert_int_equal(nconv, 2);
    for (int64_t n = 1; n <= 4; n += 3) {
      int64_t sv[2] = {0, n};
      size_t total = check_plan(g, p, O > 0, sv);
      /* the 3x3 conv needs an im2col scratch of 3*3*3 * 12*12 floats */
      assert_true(total >= (size_t)(27 * 144 * 4));
    }
  }
  done(l);
}

static void test_no_arena(void **state) {
  (void)state;
  Low *l = lower_ok("model v {\n  input x: f32[B, 2, 3]\n  param w: f32[4]\n  output y = flatten(x)\n"
                    "  output w\n}\n");
  Plan *p = plan_graph(l->g, 2);
  assert_int_equal(p->nbufs, 0);
  int64_t sv[2] = {0, 7};
  assert_int_equal(plan_arena_bytes(l->g, p, sv), 0);
  assert_int_equal(p->storage[output_node(l->g, "y")], ST_ALIAS);
  assert_int_equal(p->storage[output_node(l->g, "w")], ST_WEIGHT);
  assert_int_equal(p->weight_bytes, 64);
  done(l);
}

/* ---- property test: random DAGs ------------------------------------------------------------ */

static uint64_t rng_state;
static unsigned rnd(unsigned n) {
  rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
  return (unsigned)((rng_state >> 33) % n);
}

typedef struct Val {
  char name[16];
  int f; /* the value is f32[B, f] */
} Val;

static void appendf(char **s, size_t *len, size_t *cap, const char *fmt, ...) {
  va_list ap;
  for (;;) {
    va_start(ap, fmt);
    int n = vsnprintf(*s + *len, *cap - *len, fmt, ap);
    va_end(ap);
    if ((size_t)n < *cap - *len) {
      *len += (size_t)n;
      return;
    }
    *cap = *cap * 2 + (size_t)n;
    *s = realloc(*s, *cap);
  }
}

/* A random model: a DAG of [B, F] values over elementwise ops (inlined
 * constants, broadcasting), linear layers, reductions, copies and views. */
static char *random_model(int nops) {
  static const int feats[] = {4, 8, 16, 32};
  static const char *const unary[] = {"relu", "sigmoid", "tanh", "exp", "neg", "abs"};
  static const char *const binop[] = {"+", "-", "*"};
  size_t len = 0, cap = 4096;
  char *s = malloc(cap);
  s[0] = 0;
  Val *v = calloc((size_t)nops + 4, sizeof *v);
  int nv = 0, np = 0;
  appendf(&s, &len, &cap, "model rnd {\n  input x: f32[B, 16]\n");
  snprintf(v[nv].name, sizeof v[nv].name, "x"), v[nv++].f = 16;
  if (rnd(2)) {
    appendf(&s, &len, &cap, "  input y: f32[B, 8]\n");
    snprintf(v[nv].name, sizeof v[nv].name, "y"), v[nv++].f = 8;
  }
  for (int i = 0; i < nops; i++) {
    /* prefer recent values (chains), sometimes old ones (long live ranges) */
    int a = rnd(3) ? nv - 1 - (int)rnd(nv < 3 ? nv : 3) : (int)rnd(nv);
    const Val *x = &v[a];
    char expr[512];
    int f = x->f;
    switch (rnd(9)) {
    case 0:
    case 1: snprintf(expr, sizeof expr, "%s(%s)", unary[rnd(6)], x->name); break;
    case 2: { /* binary with a same-width or broadcastable operand, else a constant */
      int b = -1;
      for (int tries = 0; tries < 6 && b < 0; tries++) {
        int c = (int)rnd(nv);
        if (v[c].f == x->f || v[c].f == 1 || x->f == 1) b = c;
      }
      if (b >= 0) {
        snprintf(expr, sizeof expr, "%s %s %s", x->name, binop[rnd(3)], v[b].name);
        if (x->f == 1) f = v[b].f;
      } else {
        snprintf(expr, sizeof expr, "%s * %d.5", x->name, (int)rnd(4));
      }
      break;
    }
    case 3: { /* linear with a new param, maybe a bias */
      int out = feats[rnd(4)];
      appendf(&s, &len, &cap, "  param p%d.weight: f32[%d, %d]\n", np, out, x->f);
      if (rnd(2)) {
        appendf(&s, &len, &cap, "  param p%d.bias: f32[%d]\n", np, out);
        snprintf(expr, sizeof expr, "linear(%s, p%d.weight, p%d.bias)", x->name, np, np);
      } else {
        snprintf(expr, sizeof expr, "linear(%s, p%d.weight)", x->name, np);
      }
      np++;
      f = out;
      break;
    }
    case 4: /* views: a view of a view, then back to [B, F] */
      if (x->f % 4 == 0)
        snprintf(expr, sizeof expr, "flatten(reshape(%s, [B, %d, 4]))", x->name, x->f / 4);
      else
        snprintf(expr, sizeof expr, "reshape(%s, [B, -1])", x->name);
      break;
    case 5: /* an elementwise op reading through a view */
      if (x->f % 2 == 0)
        snprintf(expr, sizeof expr, "flatten(relu(reshape(%s, [B, 2, %d])))", x->name, x->f / 2);
      else
        snprintf(expr, sizeof expr, "relu(%s)", x->name);
      break;
    case 6: snprintf(expr, sizeof expr, "sum(%s, dim=1, keepdim=true)", x->name), f = 1; break;
    case 7: snprintf(expr, sizeof expr, "softmax(%s, dim=-1)", x->name); break;
    default: snprintf(expr, sizeof expr, "transpose(transpose(%s, 0, 1), 0, 1)", x->name); break;
    }
    snprintf(v[nv].name, sizeof v[nv].name, "v%d", i);
    v[nv].f = f;
    appendf(&s, &len, &cap, "  %s = %s\n", v[nv].name, expr);
    nv++;
  }
  /* outputs: the last value, maybe some others, maybe a view */
  appendf(&s, &len, &cap, "  output o0 = %s\n", v[nv - 1].name);
  int nout = (int)rnd(3);
  for (int o = 1; o <= nout; o++) {
    int c = (int)rnd(nv);
    if (rnd(3) == 0)
      appendf(&s, &len, &cap, "  output o%d = reshape(%s, [-1])\n", o, v[c].name);
    else
      appendf(&s, &len, &cap, "  output o%d = %s\n", o, v[c].name);
  }
  appendf(&s, &len, &cap, "}\n");
  free(v);
  return s;
}

static void test_property_random_dags(void **state) {
  (void)state;
  rng_state = 20240611;
  int with_reuse = 0, total_bufs = 0;
  for (int iter = 0; iter < 200; iter++) {
    char *src = random_model(3 + (int)rnd(30));
    Low *l = lower_ok(src);
    Graph *g = l->g;
    Plan *p2 = plan_graph(g, 2), *p0 = plan_graph(g, 0);
    assert_true(p2->nbufs <= p0->nbufs); /* fused values and in-place roots need none */
    total_bufs += p2->nbufs;
    static const int64_t Bs[] = {1, 3, 64};
    for (int k = 0; k < 3; k++) {
      int64_t sv[2] = {0, Bs[k]};
      size_t a2 = check_plan(g, p2, true, sv);
      size_t a0 = check_plan(g, p0, false, sv);
      if (a2 > a0) {
        print_error("-O2 arena %zu > -O0 arena %zu for B=%lld in:\n%s\n", a2, a0, (long long)Bs[k], src);
        fail();
      }
      if (a2 < a0) with_reuse++;
    }
    done(l);
    free(src);
  }
  assert_true(total_bufs > 1000); /* the generator makes real graphs */
  assert_true(with_reuse > 100);  /* and -O2 does reuse in many of them */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_storage_classes),
      cmocka_unit_test(test_weights_layout),
      cmocka_unit_test(test_live_ranges_explicit),
      cmocka_unit_test(test_conv_scratch),
      cmocka_unit_test(test_no_arena),
      cmocka_unit_test(test_property_random_dags),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
