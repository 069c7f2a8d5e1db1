/* compiler/fuse.c — fusion groups (see Group in mlcc.h).
 *
 * Runs once per function (run, train step, evaluate) from plan.c, after the
 * storage classes are known and before buffers are made, so a value that a
 * group computes and consumes internally (ST_FUSED) never gets a buffer.
 *
 * The rules (docs/design.md, "Fusion"), all asked of the op table's flags:
 *
 *   elementwise  A node N joins the group of its consumer C (N becomes
 *                ST_FUSED, computed inside C's loop) when
 *                  - N and C are elementwise (F_ELEM) and N is ST_ARENA;
 *                  - C is N's only consumer among the nodes this function
 *                    runs (C may read N more than once: N is computed once
 *                    per index into a local), and N is not a root of the
 *                    function (an output, the loss, a gradient);
 *                  - N has exactly C's shape: a value with fewer elements
 *                    than its consumer (a [B, 1] statistic feeding a
 *                    [B, C] division) would be recomputed for every element
 *                    it is broadcast to, so it stays a kernel of its own;
 *                  - the group stays at most MAX_MEMBERS nodes.
 *                A reduction or any other non-elementwise op between two
 *                elementwise nodes ends a group, since it is not F_ELEM.
 *   epilogue     A producer P (linear, matmul, conv1d, conv2d,
 *                max_pool2d_backward: the F_ELEM-free ops whose kernel
 *                writes a dense f32 result and can run a tail) folds into
 *                the elementwise group that consumes it when P's only
 *                consumer is in that group, P is not a root, and the group's
 *                root has P's shape and dtype (bias add, activation,
 *                residual add, scale).  The group becomes GK_EPILOGUE with P
 *                first.
 *
 * -O0 makes every computed node its own GK_SINGLE group.
 */
#include "mlcc.h"
#include <string.h>

enum { MAX_MEMBERS = 16 };

static bool same_shape(const Type *a, const Type *b) {
  if (a->rank != b->rank) return false;
  for (int i = 0; i < a->rank; i++)
    if (!dim_eq(a->dim[i], b->dim[i])) return false;
  return true;
}

static bool is_elem(const Graph *g, int id) {
  return op_info[g->nodes[id].op].flags & F_ELEM;
}

/* Ops whose result an elementwise tail may finish in place: their kernels
 * write every element of a dense f32 output exactly once. */
static bool is_producer(const Graph *g, int id) {
  Op o = g->nodes[id].op;
  return (o == OP_LINEAR || o == OP_MATMUL || o == OP_CONV2D || o == OP_CONV1D ||
          o == OP_MAX_POOL2D_DX) &&
         g->nodes[id].ty.dt == DT_F32;
}

bool fuse_conv_leaf(const Type *t, const Type *o, bool *full) {
  bool ones = true, same = true;
  for (int k = 2; k < o->rank; k++) {
    const int j = t->rank - o->rank + k;
    int64_t c;
    if (dim_is_const(o->dim[k], &c) && c == 1) continue; /* either way */
    ones &= j < 0 || (dim_is_const(t->dim[j], &c) && c == 1);
    same &= j >= 0 && dim_eq(t->dim[j], o->dim[k]);
  }
  *full = !ones;
  return o->rank >= 3 && t->rank <= o->rank && (ones || same);
}

/* Where an epilogue's tail runs (Group.inside), which the C backend and
 * --report's bytes both follow: the tail of a linear or matmul (2-D
 * operands) on each block of the GEMM's result while it is in cache, and so
 * the tail of a convolution or of max_pool2d's backward (relu's backward
 * after it, in a CNN's train step) when every value it reads fits the view
 * [N * C, the rest] (fuse_conv_leaf: the root's shape, or constant along
 * each channel's plane); other tails are a second pass over the root, in
 * place. */
static bool tail_inside(const Graph *g, const Plan *p, int gi) {
  const Group *gr = &p->groups[gi];
  if (gr->kind != GK_EPILOGUE) return false;
  const Node *prod = &g->nodes[gr->nodes[0]];
  if (prod->op == OP_LINEAR || (prod->op == OP_MATMUL && g->nodes[prod->in[0]].ty.rank >= 2 &&
                                g->nodes[prod->in[1]].ty.rank >= 2))
    return true;
  if (prod->op != OP_CONV2D && prod->op != OP_CONV1D && prod->op != OP_MAX_POOL2D_DX) return false;
  for (int k = 1; k < gr->n; k++) {
    const Node *m = &g->nodes[gr->nodes[k]];
    for (int j = 0; j < m->nin; j++) {
      const int x = m->in[j];
      bool full;
      if (p->group_of[x] != gi && p->storage[x] != ST_NONE &&
          !fuse_conv_leaf(&g->nodes[x].ty, &g->nodes[gr->root].ty, &full))
        return false;
    }
  }
  return true;
}

/* Images per call of a pooled convolution: its result for them in about
 * 128 KB (in L2 while it is pooled); 0 when an image's size is symbolic. */
static int pool_chunk(const Type *y) {
  int64_t per = 1, c;
  for (int k = 1; k < y->rank; k++) {
    if (!dim_is_const(y->dim[k], &c)) return 0;
    per *= c;
  }
  const int64_t chunk = per > 0 ? 32768 / per : 0;
  return chunk < 1 ? 1 : chunk > 1024 ? 1024 : (int)chunk;
}

/* GK_POOLED (see mlcc.h): a max_pool2d or avg_pool2d whose input is a
 * conv2d's result (or its tail's, run inside the convolution) that nothing
 * else reads takes that group in: the convolution then runs a chunk of
 * images at a time into a small buffer and the pool reads it from there,
 * instead of the whole batch's result going out to memory and back (LeNet-5's
 * first layer: 1.2 MB at batch 64).  Not where the tail reads a value
 * indexed by image (the chunked calls count rows from the chunk's first
 * image), nor where an image's size is symbolic. */
static void pool_groups(Graph *g, Plan *p, const int *consumer) {
  bool *merged = arena_alloc(g->A, (size_t)p->ngroups + 1); /* groups taken into a pool's */
  bool any = false;
  for (int gi = 0; gi < p->ngroups; gi++) {
    Group *gp = &p->groups[gi];
    const Node *pn = &g->nodes[gp->root];
    if (gp->kind != GK_SINGLE || (pn->op != OP_MAX_POOL2D && pn->op != OP_AVG_POOL2D) ||
        pn->ty.dt != DT_F32)
      continue;
    const int x = pn->in[0], xi = p->group_of[x];
    if (p->storage[x] != ST_ARENA || consumer[x] != gp->root || xi < 0) continue;
    const Group *gx = &p->groups[xi];
    const Node *cv = &g->nodes[gx->nodes[0]];
    if (gx->root != x || cv->op != OP_CONV2D || cv->ty.rank != 4 || cv->ty.dt != DT_F32 ||
        !(gx->kind == GK_SINGLE || (gx->kind == GK_EPILOGUE && gx->inside)))
      continue;
    const int chunk = pool_chunk(&cv->ty);
    bool ok = chunk > 0;
    for (int k = 1; k < gx->n && ok; k++) {
      const Node *m = &g->nodes[gx->nodes[k]];
      for (int j = 0; j < m->nin; j++) {
        const Node *leaf = &g->nodes[m->in[j]];
        int64_t c;
        if (p->group_of[m->in[j]] != xi && p->storage[m->in[j]] != ST_NONE && leaf->ty.rank == 4 &&
            !(dim_is_const(leaf->ty.dim[0], &c) && c == 1))
          ok = false; /* read per image */
      }
    }
    if (!ok) continue;
    int *nodes = arena_alloc(g->A, sizeof(int) * (size_t)(gx->n + 1));
    memcpy(nodes, gx->nodes, sizeof(int) * (size_t)gx->n);
    nodes[gx->n] = gp->root;
    for (int k = 0; k < gx->n; k++) {
      p->group_of[nodes[k]] = gi;
      p->storage[nodes[k]] = ST_FUSED;
    }
    *gp = (Group){GK_POOLED, gp->root, nodes, gx->n + 1, -1, true, chunk};
    merged[xi] = any = true;
  }
  if (!any) return;
  int *to = arena_alloc(g->A, sizeof(int) * (size_t)(p->ngroups + 1)); /* old index -> new */
  int k = 0;
  for (int gi = 0; gi < p->ngroups; gi++) {
    to[gi] = k;
    if (!merged[gi]) p->groups[k++] = p->groups[gi];
  }
  p->ngroups = k;
  for (int i = 0; i < g->n; i++)
    if (p->group_of[i] >= 0) p->group_of[i] = to[p->group_of[i]];
}

void fuse_plan(Graph *g, Plan *p, const bool *live, const int *roots, int nroots, int opt_level) {
  Arena *A = g->A;
  int n = g->n;
  p->group_of = arena_alloc(A, sizeof(int) * (size_t)(n + 1));
  p->groups = arena_alloc(A, sizeof(Group) * (size_t)(n + 1));
  p->ngroups = 0;

  /* the only consumer of each node among the nodes this function runs
   * (-1: none yet, -2: more than one, or a root of the function) */
  int *consumer = arena_alloc(A, sizeof(int) * (size_t)(n + 1));
  for (int i = 0; i < n; i++) consumer[i] = -1;
  for (int i = 0; i < n; i++) {
    if (!live[i]) continue;
    for (int j = 0; j < g->nodes[i].nin; j++) {
      int x = g->nodes[i].in[j];
      consumer[x] = consumer[x] == -1 || consumer[x] == i ? i : -2;
    }
  }
  for (int r = 0; r < nroots; r++) consumer[roots[r]] = -2;

  /* into[i]: the node whose group i joins, or -1 (i roots a group).
   * Consumers come after their inputs, so walking backwards places every
   * consumer before the nodes that may join it. */
  int *into = arena_alloc(A, sizeof(int) * (size_t)(n + 1));
  int *head = arena_alloc(A, sizeof(int) * (size_t)(n + 1)); /* the root of i's group */
  int *size = arena_alloc(A, sizeof(int) * (size_t)(n + 1)); /* members, per root */
  for (int i = n - 1; i >= 0; i--) {
    into[i] = -1;
    head[i] = i;
    size[i] = 0;
    if (!live[i] || p->storage[i] != ST_ARENA) continue;
    int c = consumer[i];
    bool join = opt_level > 0 && c >= 0 && is_elem(g, i) && is_elem(g, c) &&
                p->storage[c] == ST_ARENA && same_shape(&g->nodes[i].ty, &g->nodes[c].ty) &&
                size[head[c]] < MAX_MEMBERS;
    if (join) {
      into[i] = c;
      head[i] = head[c];
    }
    size[head[i]]++;
  }
  /* epilogues: a producer joins the elementwise group of its only consumer */
  bool *producer = arena_alloc(A, (size_t)(n + 1)); /* per root: has one */
  for (int i = 0; i < n; i++) {
    if (!live[i] || p->storage[i] != ST_ARENA || opt_level == 0 || !is_producer(g, i)) continue;
    int c = consumer[i];
    if (c < 0 || !is_elem(g, c) || p->storage[c] != ST_ARENA) continue;
    int r = head[c];
    const Node *pn = &g->nodes[i], *rn = &g->nodes[r];
    if (rn->ty.dt != pn->ty.dt || !same_shape(&rn->ty, &pn->ty) || size[r] >= MAX_MEMBERS) continue;
    if (producer[r]) continue; /* one producer per group (linear(a) + linear(b): the first) */
    producer[r] = true;
    into[i] = c;
    head[i] = r;
    size[r]++;
  }

  /* the groups, in the order of their roots; members in schedule order,
   * except that an epilogue's producer comes first */
  int *gid = arena_alloc(A, sizeof(int) * (size_t)(n + 1)); /* per root */
  for (int i = 0; i < n; i++) {
    p->group_of[i] = -1;
    if (!live[i] || p->storage[i] != ST_ARENA || into[i] >= 0) continue;
    Group *gr = &p->groups[p->ngroups];
    *gr = (Group){size[i] == 1 ? GK_SINGLE : GK_ELEM,
                  i,
                  arena_alloc(A, sizeof(int) * (size_t)size[i]),
                  0,
                  -1,
                  false,
                  0};
    gid[i] = p->ngroups++;
  }
  for (int j = 0; j < n; j++) {
    if (!live[j] || p->storage[j] != ST_ARENA) continue;
    Group *gr = &p->groups[gid[head[j]]];
    if (is_producer(g, j) && into[j] >= 0) { /* the epilogue's producer: first */
      memmove(gr->nodes + 1, gr->nodes, sizeof(int) * (size_t)gr->n);
      gr->nodes[0] = j;
      gr->kind = GK_EPILOGUE;
    } else {
      gr->nodes[gr->n] = j;
    }
    gr->n++;
    p->group_of[j] = gid[head[j]];
    if (into[j] >= 0) p->storage[j] = ST_FUSED;
  }
  for (int gi = 0; gi < p->ngroups; gi++) p->groups[gi].inside = tail_inside(g, p, gi);
  if (opt_level > 0 && !g->cuda) pool_groups(g, p, consumer);
}

/* ---- --report and --dot ------------------------------------------------------ */
/* The elements of a type for the given symbol values. */
static double numel(const Type *t, const int64_t *sv) {
  return (double)dim_eval(type_numel(t), sv);
}
static double nbytes(const Type *t, const int64_t *sv) {
  return numel(t, sv) * (double)dtype_size(t->dt);
}

/* Floating-point operations of one node (see fuse_group_cost). */
static double node_flops(const Graph *g, const Node *n, const int64_t *sv) {
  const Type *x = n->nin ? &g->nodes[n->in[0]].ty : NULL;
  switch (n->op) {
  case OP_LINEAR: /* [M, K] x [N, K]^T */
  case OP_MATMUL: /* every output element is a dot product over x's last dim */
    return 2.0 * numel(&n->ty, sv) * (double)dim_eval(x->dim[x->rank - 1], sv);
  case OP_LINEAR_DW: /* dW[N, K] summed over the rows of dy */
    return 2.0 * numel(x, sv) * (double)dim_eval(n->ty.dim[1], sv);
  case OP_CONV1D:
  case OP_CONV2D:
  case OP_CONV2D_DX:
  case OP_CONV2D_DW: {
    const Type *cx, *w, *y;
    int h;
    conv_types(g, n, &cx, &w, &y, &h);
    return 2.0 * numel(y, sv) * numel(w, sv) /
           (double)dim_eval(w->dim[0], sv); /* per output: C/groups * KH * KW */
  }
  case OP_SDPA:
  case OP_SDPA_BWD: { /* q k^T and p v: 2 * Tq * Tk * (D + Dv) per batch (the backward about twice)
                       */
    const int id = (int)(n - g->nodes); /* operands as the kernel sees them (views.c) */
    const Type q = sdpa_operand_type(g, id, 0), k = sdpa_operand_type(g, id, 1),
               v = sdpa_operand_type(g, id, 2);
    int r = q.rank;
    double f = 2.0 * numel(&q, sv) / (double)dim_eval(q.dim[r - 1], sv) *
               (double)dim_eval(k.dim[r - 2], sv) *
               (double)(dim_eval(q.dim[r - 1], sv) + dim_eval(v.dim[r - 1], sv));
    return n->op == OP_SDPA ? f : 2.0 * f;
  }
  default: { /* elementwise: one per element; others about one per element read or written */
    double f = numel(&n->ty, sv);
    if (!(op_info[n->op].flags & F_ELEM) && x && numel(x, sv) > f) f = numel(x, sv);
    return f;
  }
  }
}

void fuse_group_cost(const Graph *g, const Plan *p, int gi, const int64_t *symvals, double *flops,
                     double *bytes) {
  const Group *gr = &p->groups[gi];
  double f = 0, b = nbytes(&g->nodes[gr->root].ty, symvals); /* the root, written once */
  for (int k = 0; k < gr->n; k++) {
    const Node *m = &g->nodes[gr->nodes[k]];
    f += node_flops(g, m, symvals);
    for (int j = 0; j < m->nin; j++) {
      int x = m->in[j];
      if (p->group_of[x] == gi || p->storage[x] == ST_NONE)
        continue;       /* computed here, or a literal */
      bool dup = false; /* each distinct input is read once */
      for (int k2 = 0; k2 <= k && !dup; k2++)
        for (int j2 = 0; j2 < g->nodes[gr->nodes[k2]].nin && !(k2 == k && j2 >= j); j2++)
          dup |= g->nodes[gr->nodes[k2]].in[j2] == x;
      if (!dup) b += nbytes(&g->nodes[x].ty, symvals);
    }
  }
  /* a tail that is not run inside its producer (Group.inside) is a second
   * pass over the root, in place */
  if (gr->kind == GK_EPILOGUE && !gr->inside) b += 2 * nbytes(&g->nodes[gr->root].ty, symvals);
  *flops = f;
  *bytes = b;
}

static const char *kind_name(GroupKind k) {
  return k == GK_SINGLE     ? "single"
         : k == GK_ELEM     ? "elem"
         : k == GK_EPILOGUE ? "epilogue"
                            : "pooled";
}

/* The sum of the bytes of every value p gives an arena buffer (scratch not
 * counted): for an -O0 plan, every intermediate tensor. */
static double values_bytes(const Graph *g, const Plan *p, const int64_t *sv) {
  double s = 0;
  for (int b = 0; b < p->nbufs; b++)
    if (!p->bufs[b].scratch) s += (double)dim_eval(plan_buf_bytes(g, p, b), sv);
  return s;
}

void fuse_report(FILE *out, const Graph *g, const Plan *p, const Graph *g0, const Plan *p0,
                 const int64_t *symvals, const char *fn) {
  fprintf(out, "%s of model %s at", fn, g->name);
  for (int s = 1; s <= g->nsym; s++) fprintf(out, " %s=%lld", g->sym[s], (long long)symvals[s]);
  fprintf(out, "%s\n", g->nsym ? "" : " (no symbolic dims)");
  fprintf(out, "%5s  %-8s  %12s  %12s  %-22s  %s\n", "group", "kind", "MFLOP", "bytes moved",
          "result", "ops");
  double tf = 0, tb = 0, tb0 = 0; /* FLOPs are the same at -O0 */
  int fused = 0;
  for (int gi = 0; gi < p->ngroups; gi++) {
    const Group *gr = &p->groups[gi];
    double f, b;
    fuse_group_cost(g, p, gi, symvals, &f, &b);
    tf += f, tb += b;
    fused += gr->n > 1;
    const Node *r = &g->nodes[gr->root];
    fprintf(out, "%5d  %-8s  %12.4f  %12.0f  %-22s  ", gi, kind_name(gr->kind), f / 1e6, b,
            type_str(g->A, g, &r->ty));
    for (int k = 0; k < gr->n; k++) {
      const Node *m = &g->nodes[gr->nodes[k]];
      fprintf(out, "%s%s", k ? " + " : "", m->op == OP_CONST ? "const" : op_info[m->op].name);
    }
    fprintf(out, "  (line %d%s)\n", r->loc.line, gr->inplace >= 0 ? ", in place" : "");
  }
  for (int gi = 0; gi < p0->ngroups; gi++) {
    double f, b;
    fuse_group_cost(g0, p0, gi, symvals, &f, &b);
    tb0 += b;
  }
  fprintf(out,
          "totals: %d kernels (%d fused groups) at -O2, %d at -O0; %.4f MFLOP; bytes moved %.0f at "
          "-O2, %.0f at -O0\n",
          p->ngroups, fused, p0->ngroups, tf / 1e6, tb, tb0);
  fprintf(out, "arena: %zu bytes at -O2, %zu at -O0; intermediate tensors %.0f bytes in all\n",
          plan_arena_bytes(g, p, symvals), plan_arena_bytes(g0, p0, symvals),
          values_bytes(g0, p0, symvals));
}

/* A node's label: op, shape, and the MDL variable it was bound to. */
static void dot_node(FILE *out, const Graph *g, int i, const char *indent) {
  const Node *n = &g->nodes[i];
  bool named =
      n->op == OP_INPUT || n->op == OP_PARAM || n->op == OP_BUFFER; /* by their MDL names */
  const char *shape = n->op == OP_INPUT ? "box" : named ? "note" : "ellipse";
  const char *name = named ? n->name : n->op == OP_CONST ? "const" : op_info[n->op].name;
  bool bound = n->hint && !named; /* the MDL variable a computed value was bound to */
  fprintf(out, "%sn%d [shape=%s, label=\"%s\\n%s%s%s\"];\n", indent, i, shape, name,
          type_str(g->A, g, &n->ty), bound ? "\\n= " : "", bound ? n->hint : "");
}

void fuse_dot(FILE *out, const Graph *g, const Plan *p) {
  fprintf(out,
          "// mlc --dot: model %s; each cluster is one fused kernel (mlc --report lists them)\n",
          g->name);
  fprintf(out,
          "digraph \"%s\" {\n  rankdir=TB;\n  fontname=\"Helvetica\";\n  node "
          "[fontname=\"Helvetica\", fontsize=10];\n",
          g->name);
  fprintf(out, "  edge [color=gray40];\n");
  for (int i = 0; i < g->n; i++) { /* inputs, weights, views, unfused nodes */
    Storage st = p->storage[i];
    bool shown = st != ST_NONE && (p->group_of[i] < 0 || p->groups[p->group_of[i]].n == 1);
    if (st == ST_WEIGHT) { /* only the weights this function reads */
      shown = false;
      for (int j = 0; j < g->n && !shown; j++)
        if (p->storage[j] != ST_NONE && p->storage[j] != ST_WEIGHT)
          for (int k = 0; k < g->nodes[j].nin; k++) shown |= g->nodes[j].in[k] == i;
    }
    if (shown) dot_node(out, g, i, "  ");
  }
  for (int gi = 0; gi < p->ngroups; gi++) {
    const Group *gr = &p->groups[gi];
    if (gr->n == 1) continue;
    fprintf(out,
            "  subgraph cluster_%d {\n    label=\"group %d: %s%s\";\n    style=filled; "
            "color=lightblue; fillcolor=aliceblue;\n",
            gi, gi, kind_name(gr->kind), gr->inplace >= 0 ? ", in place" : "");
    for (int k = 0; k < gr->n; k++) dot_node(out, g, gr->nodes[k], "    ");
    fprintf(out, "  }\n");
  }
  for (int i = 0; i < g->n; i++) {
    Storage st = p->storage[i];
    if (st == ST_NONE || st == ST_WEIGHT || st == ST_INPUT) continue;
    for (int k = 0; k < g->nodes[i].nin; k++) {
      int x = g->nodes[i].in[k];
      if (p->storage[x] != ST_NONE) fprintf(out, "  n%d -> n%d;\n", x, i);
    }
  }
  fprintf(out, "}\n");
}
