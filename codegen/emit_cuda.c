/* codegen/emit_cuda.c — the CUDA backend: IR -> model.cu (+ the same model.h
 * and harnesses as the C backend, from emit.h).
 *
 * model.cu has two parts:
 *   1. device code: #include "mlcrt_kernels.cuh", then one __global__ kernel
 *      per fusion group that the model computes with generated code
 *      (elementwise groups, movement and indexing ops, reductions, optimizer
 *      updates).  This part needs nothing but the kernels header, so NVRTC
 *      compiles it alone (the host part is inside #ifndef __CUDACC_RTC__).
 *   2. host code: the generated API of spec section 7 (same model.h as C).
 *      The instance owns one device allocation (weights region, activation
 *      arena planned exactly as the C backend's, input slots, a status
 *      block) and pinned host staging (a mirror of the weights region for
 *      load / save / init, input and output staging).  run / train_step /
 *      evaluate enqueue their whole work on the instance's stream (copies in,
 *      kernels, cuBLAS GEMMs, copies out) inside one function that is
 *      captured once as a CUDA graph per set of symbolic dims and replayed.
 * Groups come from Plan.groups (mlcc.h): GK_SINGLE nodes use the kernels
 * header or cuBLAS or a generated kernel; GK_ELEM groups become one kernel
 * that computes every member per output element (members as locals, leaves
 * read with broadcast indexing); GK_EPILOGUE runs its producer into the
 * root's buffer and then the tail in place as one elementwise kernel.
 */
#include "emit.h"
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct CU {
  E *e;
  Buf *kern;         /* device part */
  const char *fn;    /* "run", "train", "eval": kernel name prefix */
  const char **vars; /* pointer names of the nodes (e->var, with epilogue overrides) */
  int nchecks;       /* device checks numbered 1.. (status block) */
  Buf *checks;       /* their messages */
  char **kbodies;    /* kernels emitted so far (text without the name), for reuse */
  const char **knames;
  int nk, capk;
} CU;

/* ---- device-side conversions (mlcd_ helpers of mlcrt_kernels.cuh) -------------------- */
static const char *cu_convert(E *e, const char *x, DType from, DType to) {
  if (from == DT_F16) x = arena_printf(e->A, "mlcd_f16_to_f32(%s)", x), from = DT_F32;
  if (from == DT_BF16) x = arena_printf(e->A, "mlcd_bf16_to_f32(%s)", x), from = DT_F32;
  to = compute_dt(to);
  if (from == to) return x;
  if (to == DT_BOOL) return arena_printf(e->A, "(uint8_t)(%s != 0)", x);
  if (to == DT_F32) return arena_printf(e->A, "(float)%s", x);
  if (from == DT_F32) return arena_printf(e->A, "(%s)mlcd_f2i(%s)", ctype(to), x);
  return arena_printf(e->A, "(%s)%s", ctype(to), x);
}

static const char *cu_store(E *e, const char *x, DType ct, DType to) {
  if (to == DT_F16) return arena_printf(e->A, "mlcd_f32_to_f16(%s)", cu_convert(e, x, ct, DT_F32));
  if (to == DT_BF16)
    return arena_printf(e->A, "mlcd_f32_to_bf16(%s)", cu_convert(e, x, ct, DT_F32));
  return cu_convert(e, x, ct, to);
}

/* ---- kernels ------------------------------------------------------------------------- */
/* The symbolic dims as kernel parameters (every generated kernel takes them all). */
static const char *sym_params(E *e) {
  Buf b = {.A = e->A};
  for (int s = 1; s <= e->g->nsym; s++) out(&b, ", const int64_t %s", e->g->sym[s]);
  return b.len ? b.s : "";
}
static const char *sym_args(E *e) {
  Buf b = {.A = e->A};
  for (int s = 1; s <= e->g->nsym; s++) out(&b, ", %s", e->g->sym[s]);
  return b.len ? b.s : "";
}

/* Pointer parameters of a kernel: ids[0..n) (ids[0] written unless none written). */
typedef struct KArgs {
  int ids[24];
  bool written[24];
  int n;
  bool status; /* the kernel records failed checks: it gets the status block */
} KArgs;
static void karg(KArgs *k, int id, bool written) {
  for (int i = 0; i < k->n; i++)
    if (k->ids[i] == id) {
      k->written[i] |= written;
      return;
    }
  if (k->n < 24) k->ids[k->n] = id, k->written[k->n++] = written;
}

/* Emits kernel `body` (a statement list using the parameters) over `n`
 * elements (n <= 0: the body loops itself) and its launch; identical kernels
 * are emitted once. */
static void kernel(CU *c, Buf *h, const char *what, KArgs *k, const char *body, const char *threads,
                   const char *tag) {
  E *e = c->e;
  Buf sig = {.A = e->A}, args = {.A = e->A};
  /* an in-place group root (Group.inplace) shares its buffer with a leaf:
   * then no parameter may be __restrict__ */
  bool shared = false;
  for (int i = 0; i < k->n; i++)
    for (int j = i + 1; j < k->n; j++) {
      const int bi = e->p->buf[e->p->alias_of[k->ids[i]]],
                bj = e->p->buf[e->p->alias_of[k->ids[j]]];
      shared |= bi >= 0 && bi == bj;
    }
  for (int i = 0; i < k->n; i++) {
    const Node *n = &e->g->nodes[k->ids[i]];
    out(&sig, "%s%s%s *%s%s", i ? ", " : "", k->written[i] ? "" : "const ", ctype(n->ty.dt),
        shared ? "" : "__restrict__ ", c->vars[k->ids[i]]);
    out(&args, "%s%s", i ? ", " : "", c->vars[k->ids[i]]);
  }
  if (k->status)
    out(&sig, "%sint64_t *__restrict__ mlc_status", sig.len ? ", " : ""),
        out(&args, "%sm->d_status", args.len ? ", " : "");
  const char *text =
      arena_printf(e->A, "(%s%s) {\n%s}\n", sig.len ? sig.s : "", sym_params(e), body);
  const char *name = NULL;
  for (int i = 0; i < c->nk && !name; i++)
    if (strcmp(c->kbodies[i], text) == 0) name = c->knames[i];
  if (!name) {
    name = arena_printf(e->A, "%s_%s_%s%d", e->M, c->fn, tag, c->nk);
    if (c->nk == c->capk) {
      c->capk = c->capk ? 2 * c->capk : 64;
      char **nb = arena_alloc(e->A, sizeof(char *) * (size_t)c->capk);
      const char **nn = arena_alloc(e->A, sizeof(char *) * (size_t)c->capk);
      if (c->nk)
        memcpy(nb, c->kbodies, sizeof(char *) * (size_t)c->nk),
            memcpy(nn, c->knames, sizeof(char *) * (size_t)c->nk);
      c->kbodies = nb, c->knames = nn;
    }
    c->kbodies[c->nk] = (char *)text, c->knames[c->nk++] = name;
    out(c->kern, "/* %s */\nstatic __global__ void %s%s\n", what, name, text);
  }
  out(h, "  %s<<<grid_for(%s), MLCD_THREADS, 0, mlc_stream>>>(%s%s);\n  CHECK_LAUNCH(\"%s\");\n",
      name, threads, args.len ? args.s : "", sym_args(e), what);
}

/* A flat index i decomposed into i0..i{r-1} over type t. */
static const char *unflatten(E *e, const Type *t, const char *flat) {
  Buf b = {.A = e->A};
  if (t->rank == 0) return "";
  out(&b, "    int64_t mlc_flat = %s;\n", flat);
  for (int k = t->rank - 1; k >= 0; k--) {
    if (k)
      out(&b, "    const int64_t i%d = mlc_flat %% (%s);\n    mlc_flat /= (%s);\n", k,
          dimc(e, t->dim[k]), dimc(e, t->dim[k]));
    else
      out(&b, "    const int64_t i0 = mlc_flat;\n");
  }
  out(&b, "    (void)mlc_flat;\n");
  for (int k = 0; k < t->rank; k++) out(&b, "    (void)i%d;\n", k);
  return b.s;
}

/* ---- elementwise groups -------------------------------------------------------------- */
static bool in_group(const Group *gr, int id) {
  for (int i = 0; i < gr->n; i++)
    if (gr->nodes[i] == id) return true;
  return false;
}

/* The compute type of elementwise node n (as emit_c.c's emit_elementwise). */
static DType elem_ct(E *e, const Node *n) {
  int flags = op_info[n->op].flags;
  DType ct = compute_dt(n->ty.dt);
  if ((flags & F_CMP) && n->nin == 1)
    ct = compute_dt(e->g->nodes[n->in[0]].ty.dt);
  else if (flags & F_CMP)
    ct = compute_dt(infer_promote(&e->g->nodes[n->in[0]], &e->g->nodes[n->in[1]]));
  return ct;
}

/* One kernel for members[0..nm) (schedule order, root last) over the root's
 * shape.  skip: a member computed elsewhere (an epilogue's producer, read
 * from the root's buffer), or -1. */
static void emit_elem_kernel(CU *c, Buf *h, const int *members, int nm, int skip,
                             const char *what) {
  E *e = c->e;
  Graph *g = e->g;
  const Group grp = {.kind = GK_ELEM, .root = members[nm - 1], .nodes = (int *)members, .n = nm};
  const int root = members[nm - 1];
  const Type *o = &g->nodes[root].ty;
  KArgs k = {.n = 0};
  karg(&k, root, true);
  bool flat = true;
  for (int m = 0; m < nm; m++) {
    const Node *n = &g->nodes[members[m]];
    if (members[m] == skip) continue;
    for (int j = 0; j < n->nin; j++) {
      int in = n->in[j];
      if ((in_group(&grp, in) && in != skip) || e->p->storage[in] == ST_NONE) continue;
      if (in != skip) karg(&k, in, false);
      if (!same_shape(&g->nodes[in].ty, o)) flat = false;
    }
  }
  Buf b = {.A = e->A};
  out(&b, "  MLCD_FOR(i, %s) {\n", dimc(e, type_numel(o)));
  if (!flat) out(&b, "%s", unflatten(e, o, "i"));
  for (int m = 0; m < nm; m++) {
    const int id = members[m];
    const Node *n = &g->nodes[id];
    if (id == skip) continue;
    const int flags = op_info[n->op].flags;
    const DType ct = elem_ct(e, n);
    const char *ops[4] = {"", "", "", ""};
    for (int j = 0; j < n->nin && j < 4; j++) {
      const int in = n->in[j];
      const Node *x = &g->nodes[in];
      DType want = n->op == OP_WHERE && j == 0 ? DT_BOOL : ct; /* where's condition stays bool */
      if (e->p->storage[in] == ST_NONE) {                      /* an inlined scalar constant */
        ops[j] = literal(e, x->fa[0], want);
        continue;
      }
      const char *v;
      if (in_group(&grp, in) && in != skip)
        v = arena_printf(e->A, "mlc_v%d", in);
      else {
        const char *idx = "i";
        if (!same_shape(&x->ty, o)) {
          Dim st[MAX_RANK];
          bcast_strides(&x->ty, o, st);
          idx = index_expr(e, st, o->rank);
        }
        v = arena_printf(e->A, "%s[%s]", c->vars[in], idx);
      }
      ops[j] = cu_convert(e, v, x->ty.dt, want);
    }
    Buf body = {.A = e->A};
    const char *tpl = n->op == OP_CONST ? "$c" : elem_template(e, n, ct);
    for (const char *q = tpl; *q; q++) {
      if (*q == '$' && q[1] == 'c')
        out(&body, "%s", literal(e, n->fa[0], ct)), q++;
      else if (*q == '$' && q[1] >= '0' && q[1] <= '3')
        out(&body, "%s", ops[q[1] - '0']), q++;
      else if (*q == '$' && q[1] == 'a' && q[2] >= '0' && q[2] <= '3')
        out(&body, "%s", literal(e, n->fa[q[2] - '0'], ct)), q += 2;
      else if (*q == '$' && q[1] == 'd' && q[2] >= '0' && q[2] <= '3')
        out(&body, "(float)(%s)", dimc(e, n->da[q[2] - '0'])), q += 2;
      else if (strncmp(q, "mlcrt_ipow(", 11) == 0)
        out(&body, "mlcd_ipow("), q += 10;
      else
        out(&body, "%c", *q);
    }
    const char *val = (flags & F_CMP) ? arena_printf(e->A, "(uint8_t)%s", body.s)
                                      : cu_store(e, body.s, ct, n->ty.dt);
    out(&b, "    const %s mlc_v%d = %s; /* %s */\n", ctype(n->ty.dt), id, val, describe(e, n));
  }
  out(&b, "    %s[i] = mlc_v%d;\n  }\n", c->vars[root], root);
  kernel(c, h, what, &k, b.s, dimc(e, type_numel(o)), "elem");
}

/* ---- reductions: one warp per output element ---------------------------------------- */
static void emit_reduce(CU *c, Buf *h, int id, const char *what) {
  E *e = c->e;
  Node *n = &e->g->nodes[id];
  const int xi = n->in[0];
  const Type *x = &e->g->nodes[xi].ty;
  int64_t mask = n->ia[14];
  Dim xs[MAX_RANK];
  dense_strides(x, xs);
  Type kept = {.rank = 0}, red = {.rank = 0};
  int kd[MAX_RANK], rd[MAX_RANK];
  for (int k = 0; k < x->rank; k++) {
    if (mask & (1 << k))
      rd[red.rank] = k, red.dim[red.rank++] = x->dim[k];
    else
      kd[kept.rank] = k, kept.dim[kept.rank++] = x->dim[k];
  }
  bool fl = dtype_is_float(x->dt), arg = n->op == OP_ARGMAX || n->op == OP_ARGMIN;
  bool sum = n->op == OP_SUM || n->op == OP_MEAN;
  const char *acc_t = fl ? (sum || n->op == OP_PROD ? "double" : "float") : "int64_t";
  const char *v_t = fl ? "float" : "int64_t";
  const char *cmp = n->op == OP_MAX || n->op == OP_ARGMAX ? ">" : "<";
  Buf b = {.A = e->A};
  const char *nout = dimc(e, type_numel(&kept)), *nred = dimc(e, type_numel(&red));
  out(&b, "  const int mlc_lane = threadIdx.x %% 32;\n  MLCD_FOR_WARP(o, %s) {\n", nout);
  /* the kept index from o, the reduced one from r */
  Buf base_ = {.A = e->A}, off = {.A = e->A};
  out(&b, kept.rank ? "    int64_t mlc_kq = o;\n" : "");
  for (int q = kept.rank - 1; q >= 0; q--) {
    out(&b, "    const int64_t i%d = mlc_kq %% (%s);\n    mlc_kq /= (%s);\n", kd[q],
        dimc(e, kept.dim[q]), dimc(e, kept.dim[q]));
    out(&base_, " + i%d*%s", kd[q], dimc(e, xs[kd[q]]));
  }
  out(&b, "%s    const int64_t mlc_base = 0%s;\n", kept.rank ? "    (void)mlc_kq;\n" : "",
      base_.len ? base_.s : "");
  for (int q = red.rank - 1; q >= 0; q--) out(&off, " + i%d*%s", rd[q], dimc(e, xs[rd[q]]));
  const char *init =
      sum                ? "0"
      : n->op == OP_PROD ? "1"
      : fl               ? (n->op == OP_MAX || n->op == OP_ARGMAX ? "-INFINITY" : "INFINITY")
           : (n->op == OP_MAX || n->op == OP_ARGMAX ? "INT64_MAX * 0 + INT64_MIN" : "INT64_MAX");
  out(&b, "    %s acc = %s;\n%s", acc_t, init,
      sum || n->op == OP_PROD ? "" : "    int64_t best = -1;\n");
  out(&b,
      "    for (int64_t mlc_r = mlc_lane; mlc_r < %s; mlc_r += 32) {\n      int64_t mlc_rq = "
      "mlc_r;\n",
      nred);
  for (int q = red.rank - 1; q >= 0; q--)
    out(&b, "      const int64_t i%d = mlc_rq %% (%s);\n      mlc_rq /= (%s);\n", rd[q],
        dimc(e, red.dim[q]), dimc(e, red.dim[q]));
  out(&b, "      (void)mlc_rq;\n      const %s v = %s;\n", v_t,
      cu_convert(e, arena_printf(e->A, "%s[mlc_base%s]", c->vars[xi], off.len ? off.s : ""), x->dt,
                 fl ? DT_F32 : DT_I64));
  /* the per-lane_ step, then the combine of two (acc, best) pairs across lanes:
   * the CPU's serial order is index order, so ties keep the smaller index and
   * a NaN wins (the first NaN) */
  const char *nanw = fl ? "(v != v && acc == acc) || " : "";
  if (sum)
    out(&b, "      acc += v;\n");
  else if (n->op == OP_PROD)
    out(&b, fl ? "      acc *= v;\n" : "      acc = (int64_t)((uint64_t)acc * (uint64_t)v);\n");
  else
    out(&b, "      if (best < 0 || %sv %s acc) { acc = v; best = mlc_r; }\n", nanw, cmp);
  out(&b, "    }\n");
  if (sum)
    out(&b, "    acc = mlcd_warp_sum(acc);\n");
  else if (n->op == OP_PROD)
    out(&b,
        "    for (int mlc_s = 16; mlc_s > 0; mlc_s >>= 1) {\n      const %s mlc_o = "
        "__shfl_down_sync(0xffffffffu, acc, mlc_s);\n      if (mlc_lane + mlc_s < 32) acc %s;\n    "
        "}\n    "
        "acc = __shfl_sync(0xffffffffu, acc, 0);\n",
        acc_t, fl ? "*= mlc_o" : "= (int64_t)((uint64_t)acc * (uint64_t)mlc_o)");
  else
    out(&b,
        "    for (int mlc_s = 16; mlc_s > 0; mlc_s >>= 1) {\n      const %s mlc_oa = "
        "__shfl_down_sync(0xffffffffu, acc, mlc_s);\n"
        "      const int64_t mlc_ob = __shfl_down_sync(0xffffffffu, best, mlc_s);\n"
        "      if (mlc_lane + mlc_s < 32 && mlc_ob >= 0 && (best < 0 || %s(mlc_oa %s acc) || "
        "(mlc_oa == acc && mlc_ob < "
        "best)%s)) { acc = mlc_oa; best = mlc_ob; }\n"
        "    }\n    acc = __shfl_sync(0xffffffffu, acc, 0);\n    best = __shfl_sync(0xffffffffu, "
        "best, 0);\n",
        acc_t, fl ? "(mlc_oa != mlc_oa && (acc == acc || mlc_ob < best)) || " : "", cmp,
        fl ? " && !(acc != acc && mlc_oa == mlc_oa)" : "");
  const char *fin = arg                ? "(best < 0 ? 0 : best)"
                    : n->op == OP_MEAN ? arena_printf(e->A, "(acc / (double)(%s))", nred)
                                       : "acc";
  if (!arg && !sum && n->op != OP_PROD) fin = "acc";
  const char *val =
      arg ? fin
          : cu_store(e, arena_printf(e->A, "(%s)(%s)", v_t, fin), fl ? DT_F32 : DT_I64, n->ty.dt);
  out(&b, "    if (mlc_lane == 0) %s[o] = %s;\n  }\n", c->vars[id], val);
  KArgs k = {.n = 0};
  karg(&k, id, true);
  karg(&k, xi, false);
  kernel(c, h, what, &k, b.s, arena_printf(e->A, "(%s) * 32", nout), "reduce");
}

/* ---- movement and indexing: one thread per output element ------------------------------ */
/* A kernel writing y[i] = EXPR over the output's flat index, with i0.. available. */
static void emit_gather_kernel(CU *c, Buf *h, int id, KArgs *k, const Type *over, const char *pre,
                               const char *expr, const char *what, const char *tag) {
  E *e = c->e;
  Buf b = {.A = e->A};
  out(&b, "  MLCD_FOR(i, %s) {\n%s%s    %s[i] = %s;\n  }\n", dimc(e, type_numel(over)),
      unflatten(e, over, "i"), pre ? pre : "", c->vars[id], expr);
  kernel(c, h, what, k, b.s, dimc(e, type_numel(over)), tag);
}

/* A check failing on the device: its number, with the message (one %lld for the value). */
static int device_check(CU *c, const char *msg) {
  out(c->checks, "    \"%s\",\n", msg);
  return ++c->nchecks;
}

static void emit_permute(CU *c, Buf *h, int id, const char *what) {
  E *e = c->e;
  Node *n = &e->g->nodes[id];
  const Type *x = &e->g->nodes[n->in[0]].ty;
  Dim xs[MAX_RANK], st[MAX_RANK];
  dense_strides(x, xs);
  for (int k = 0; k < n->ty.rank; k++) st[k] = xs[n->ia[8 + k]];
  KArgs k = {.n = 0};
  karg(&k, id, true), karg(&k, n->in[0], false);
  emit_gather_kernel(c, h, id, &k, &n->ty, NULL,
                     arena_printf(e->A, "%s[%s]", c->vars[n->in[0]], index_expr(e, st, n->ty.rank)),
                     what, "permute");
}

static void emit_expand(CU *c, Buf *h, int id, const char *what) {
  E *e = c->e;
  Node *n = &e->g->nodes[id];
  Dim st[MAX_RANK];
  bcast_strides(&e->g->nodes[n->in[0]].ty, &n->ty, st);
  KArgs k = {.n = 0};
  karg(&k, id, true), karg(&k, n->in[0], false);
  emit_gather_kernel(c, h, id, &k, &n->ty, NULL,
                     arena_printf(e->A, "%s[%s]", c->vars[n->in[0]], index_expr(e, st, n->ty.rank)),
                     what, "expand");
}

/* concat / stack: y[o, j] over [outer, row]; each input owns a column range. */
static void emit_concat(CU *c, Buf *h, int id, const char *what) {
  E *e = c->e;
  Node *n = &e->g->nodes[id];
  const Type *o = &n->ty;
  int kdim = (int)n->ia[1];
  DType ct = compute_dt(o->dt);
  Dim row = dims_prod(o, kdim, o->rank), off = dim_const(0);
  KArgs k = {.n = 0};
  karg(&k, id, true);
  Buf b = {.A = e->A};
  out(&b, "  MLCD_FOR(i, %s) {\n    const int64_t i0 = i / (%s), mlc_j = i %% (%s);\n",
      dimc(e, type_numel(o)), dimc(e, row), dimc(e, row));
  for (int j = 0; j < n->nin; j++) {
    const Node *x = &e->g->nodes[n->in[j]];
    karg(&k, n->in[j], false);
    Dim xrow = dims_prod(&x->ty, kdim, x->ty.rank);
    const char *src = cu_convert(e,
                                 arena_printf(e->A, "%s[i0*(%s) + mlc_j - (%s)]", c->vars[n->in[j]],
                                              dimc(e, xrow), dimc(e, off)),
                                 x->ty.dt, ct);
    out(&b, "    %sif (mlc_j < (%s) + (%s)) %s[i] = %s;\n", j ? "else " : "", dimc(e, off),
        dimc(e, xrow), c->vars[id], cu_store(e, src, ct, o->dt));
    off = dim_add(off, xrow);
  }
  out(&b, "  }\n");
  kernel(c, h, what, &k, b.s, dimc(e, type_numel(o)), "concat");
}

static void emit_slice(CU *c, Buf *h, int id, const char *what) {
  E *e = c->e;
  Node *n = &e->g->nodes[id];
  const Type *x = &e->g->nodes[n->in[0]].ty;
  int kd = (int)n->ia[1];
  Dim inner = dims_prod(x, kd + 1, x->rank);
  const char *s = dimc(e, n->da[2]), *en = dimc(e, n->da[3]), *size = dimc(e, x->dim[kd]);
  Dim lo[3] = {dim_const(0), n->da[2], n->da[3]}, hi[3] = {n->da[2], n->da[3], x->dim[kd]};
  Buf cond = {.A = e->A};
  for (int q = 0; q < 3 && n->ia[2]; q++) {
    Dim diff = dim_sub(hi[q], lo[q]);
    bool proven = true;
    for (int t = 0; t < diff.n; t++) proven &= diff.t[t].c >= 0;
    if (!proven) out(&cond, "%s%s <= %s", cond.len ? " && " : "", dimc(e, lo[q]), dimc(e, hi[q]));
  }
  if (cond.len)
    out(h,
        "  if (!(%s))\n    return mlcrt_seterr(m->err, MLCRT_ESHAPE, \"%s: slice: "
        "start %%lld and end %%lld must satisfy 0 <= start <= end <= %%lld (the size of dim %d of "
        "%s)\", (long long)(%s), "
        "(long long)(%s), (long long)(%s));\n",
        cond.s, node_where(e, n), kd, type_str(e->A, e->g, x), s, en, size);
  const char *run = dimc(e, dim_mul(n->ty.dim[kd], inner));
  KArgs k = {.n = 0};
  karg(&k, id, true), karg(&k, n->in[0], false);
  Buf b = {.A = e->A};
  out(&b,
      "  MLCD_FOR(i, %s) {\n    const int64_t i0 = i / (%s), mlc_j = i %% (%s);\n    %s[i] = "
      "%s[(i0*(%s) + (%s))*(%s) + mlc_j];\n  }\n",
      dimc(e, type_numel(&n->ty)), run, run, c->vars[id], c->vars[n->in[0]], size, s,
      dimc(e, inner));
  kernel(c, h, what, &k, b.s, dimc(e, type_numel(&n->ty)), "slice");
}

static void emit_slice_dx(CU *c, Buf *h, int id, const char *what) {
  E *e = c->e;
  Node *n = &e->g->nodes[id];
  const Type *x = &n->ty, *dy = &e->g->nodes[n->in[0]].ty;
  int kd = (int)n->ia[1];
  Dim inner = dims_prod(x, kd + 1, x->rank);
  KArgs k = {.n = 0};
  karg(&k, id, true), karg(&k, n->in[0], false);
  Buf b = {.A = e->A};
  /* dx[i0, t, j]: dy[i0, t - start, j] inside [start, end), else 0 */
  out(&b,
      "  MLCD_FOR(i, %s) {\n    const int64_t mlc_j = i %% (%s), mlc_t = (i / (%s)) %% (%s), i0 = "
      "i / "
      "((%s) * (%s));\n"
      "    const int64_t mlc_u = mlc_t - (%s);\n    %s[i] = mlc_u >= 0 && mlc_u < (%s) ? "
      "%s[(i0*(%s) + mlc_u)*(%s) + "
      "mlc_j] : (%s)0;\n  }\n",
      dimc(e, type_numel(x)), dimc(e, inner), dimc(e, inner), dimc(e, x->dim[kd]), dimc(e, inner),
      dimc(e, x->dim[kd]), dimc(e, n->da[2]), c->vars[id], dimc(e, dy->dim[kd]), c->vars[n->in[0]],
      dimc(e, dy->dim[kd]), dimc(e, inner), ctype(x->dt));
  kernel(c, h, what, &k, b.s, dimc(e, type_numel(x)), "slice_dx");
}

static void emit_gather(CU *c, Buf *h, int id, const char *what) {
  E *e = c->e;
  Node *n = &e->g->nodes[id];
  const Type *x = &e->g->nodes[n->in[0]].ty, *o = &n->ty;
  int kd = (int)n->ia[1], r = o->rank;
  Dim xs[MAX_RANK];
  dense_strides(x, xs);
  Buf idx = {.A = e->A};
  for (int d = 0; d < r; d++)
    out(&idx, "%s%s*%s", d ? " + " : "", d == kd ? "v" : arena_printf(e->A, "i%d", d),
        dimc(e, xs[d]));
  int chk =
      device_check(c, arena_printf(e->A, "%s: gather: index %%lld is out of range for dim %d of %s",
                                   node_where(e, n), kd, type_str(e->A, e->g, x)));
  KArgs k = {.n = 0};
  karg(&k, id, true), karg(&k, n->in[0], false), karg(&k, n->in[1], false);
  const char *pre = arena_printf(e->A,
                                 "    int64_t v = %s[i];\n    if (v < 0 || v >= (%s)) { "
                                 "mlcd_fail(mlc_status, %d, v); v = 0; }\n",
                                 c->vars[n->in[1]], dimc(e, x->dim[kd]), chk);
  Buf b = {.A = e->A};
  out(&b, "  MLCD_FOR(i, %s) {\n%s%s    %s[i] = %s[%s];\n  }\n", dimc(e, type_numel(o)),
      unflatten(e, o, "i"), pre, c->vars[id], c->vars[n->in[0]], idx.len ? idx.s : "0");
  k.status = true;
  kernel(c, h, what, &k, b.s, dimc(e, type_numel(o)), "gather");
}

static void emit_index_select(CU *c, Buf *h, int id, const char *what) {
  E *e = c->e;
  Node *n = &e->g->nodes[id];
  bool emb = n->op == OP_EMBEDDING;
  const int xi = n->in[emb ? 1 : 0], ii = n->in[emb ? 0 : 1];
  const Node *x = &e->g->nodes[xi];
  int kd = emb ? 0 : (int)n->ia[1];
  const char *size = dimc(e, x->ty.dim[kd]), *xts = type_str(e->A, e->g, &x->ty);
  int chk = device_check(
      c, emb ? arena_printf(e->A, "%s: embedding: id %%lld is out of range for the table %s",
                            node_where(e, n), xts)
             : arena_printf(e->A, "%s: index_select: index %%lld is out of range for dim %d of %s",
                            node_where(e, n), kd, xts));
  const char *inner = dimc(e, dims_prod(&x->ty, kd + 1, x->ty.rank));
  const char *nidx = dimc(e, type_numel(&e->g->nodes[ii].ty));
  KArgs k = {.n = 0};
  karg(&k, id, true), karg(&k, xi, false), karg(&k, ii, false);
  Buf b = {.A = e->A};
  k.status = true;
  out(&b,
      "  MLCD_FOR(i, %s) {\n"
      "    const int64_t mlc_t = i %% (%s), mlc_j = (i / (%s)) %% (%s), o = i / ((%s) * (%s));\n"
      "    int64_t v = %s[mlc_j];\n    if (v < 0 || v >= (%s)) { mlcd_fail(mlc_status, %d, v); v = "
      "0; }\n"
      "    %s[i] = %s[(o*(%s) + v)*(%s) + mlc_t];\n  }\n",
      dimc(e, type_numel(&n->ty)), inner, inner, nidx, inner, nidx, c->vars[ii], size, chk,
      c->vars[id], c->vars[xi], size, inner);
  kernel(c, h, what, &k, b.s, dimc(e, type_numel(&n->ty)), "index_select");
}

static void emit_pad(CU *c, Buf *h, int id, const char *what) {
  E *e = c->e;
  Node *n = &e->g->nodes[id];
  const Type *x = &e->g->nodes[n->in[0]].ty, *o = &n->ty;
  int r = o->rank, np = n->nda / 2;
  Dim xs[MAX_RANK];
  dense_strides(x, xs);
  Buf idx = {.A = e->A}, cond = {.A = e->A};
  for (int d = 0; d < r; d++) {
    int64_t l = 0, rr = 0;
    if (d >= r - np) {
      dim_is_const(n->da[2 * (r - 1 - d)], &l);
      dim_is_const(n->da[2 * (r - 1 - d) + 1], &rr);
    }
    out(&idx, "%s(i%d - (%lld))*%s", d ? " + " : "", d, (long long)l, dimc(e, xs[d]));
    out(&cond, "%si%d - (%lld) >= 0 && i%d - (%lld) < %s", d ? " && " : "", d, (long long)l, d,
        (long long)l, dimc(e, x->dim[d]));
  }
  DType ct = compute_dt(o->dt);
  KArgs k = {.n = 0};
  karg(&k, id, true), karg(&k, n->in[0], false);
  emit_gather_kernel(c, h, id, &k, o, NULL,
                     arena_printf(e->A, "(%s) ? %s[%s] : %s", cond.len ? cond.s : "1",
                                  c->vars[n->in[0]], idx.len ? idx.s : "0",
                                  cu_store(e, literal(e, n->fa[0], ct), ct, o->dt)),
                     what, "pad");
}

/* nearest interpolate (integer scale): source index as emit_c.c computes it */
static const char *interp_src(E *e, int d, int64_t s, const char *size) {
  if (s == 1) return arena_printf(e->A, "i%d", d);
  if (s == 2) return arena_printf(e->A, "(i%d / 2)", d);
  const char *f = literal(e, (double)(float)(1.0 / (double)s), DT_F32);
  return arena_printf(e->A, "min((int64_t)floorf((float)i%d * %s), (int64_t)(%s) - 1)", d, f, size);
}

static void emit_interpolate(CU *c, Buf *h, int id, const char *what) {
  E *e = c->e;
  Node *n = &e->g->nodes[id];
  int64_t s = n->ia[0];
  KArgs k = {.n = 0};
  karg(&k, id, true), karg(&k, n->in[0], false);
  if (n->op == OP_INTERPOLATE) {
    const Type *x = &e->g->nodes[n->in[0]].ty, *o = &n->ty;
    Dim xs[MAX_RANK];
    dense_strides(x, xs);
    Buf idx = {.A = e->A};
    for (int d = 0; d < o->rank; d++)
      out(&idx, "%s%s*%s", d ? " + " : "",
          d < 2 ? arena_printf(e->A, "i%d", d) : interp_src(e, d, s, dimc(e, x->dim[d])),
          dimc(e, xs[d]));
    emit_gather_kernel(c, h, id, &k, o, NULL,
                       arena_printf(e->A, "%s[%s]", c->vars[n->in[0]], idx.s), what, "interpolate");
    return;
  }
  /* backward: dx[.., j] = sum of dy over the outputs whose source is j (a
   * window of about s outputs around j * s), in output order */
  const Type *x = &n->ty, *o = &e->g->nodes[n->in[0]].ty;
  int r = x->rank;
  Dim os[MAX_RANK];
  dense_strides(o, os);
  Buf b = {.A = e->A};
  out(&b, "  MLCD_FOR(i, %s) {\n%s    float acc = 0.0f;\n", dimc(e, type_numel(x)),
      unflatten(e, x, "i"));
  Buf idx = {.A = e->A};
  for (int d = 0; d < r; d++)
    out(&idx, "%s%s*%s", d ? " + " : "",
        d < 2 ? arena_printf(e->A, "i%d", d) : arena_printf(e->A, "mlc_u%d", d), dimc(e, os[d]));
  int depth = 2;
  for (int d = 2; d < r; d++, depth++) {
    out(&b,
        "%*sfor (int64_t mlc_u%d = i%d * %lld - 1 < 0 ? 0 : i%d * %lld - 1; mlc_u%d < (%s) && "
        "mlc_u%d <= i%d * "
        "%lld + %lld; mlc_u%d++) {\n",
        2 * depth, "", d, d, (long long)s, d, (long long)s, d, dimc(e, o->dim[d]), d, d,
        (long long)s, (long long)s, d);
    const char *src = interp_src(e, d, s, dimc(e, x->dim[d]));
    char *su = arena_strdup(e->A, src);
    for (char *q = su; (q = strstr(q, arena_printf(e->A, "i%d", d))); q++) *q = 'u';
    out(&b, "%*sif (%s != i%d) continue;\n", 2 * depth + 2, "", su, d);
  }
  out(&b, "%*sacc += %s[%s];\n", 2 * depth, "", c->vars[n->in[0]], idx.len ? idx.s : "0");
  for (int d = r - 1; d >= 2; d--) out(&b, "%*s}\n", 2 * (--depth), "");
  out(&b, "    %s[i] = acc;\n  }\n", c->vars[id]);
  kernel(c, h, what, &k, b.s, dimc(e, type_numel(x)), "interpolate_dx");
}

/* cumsum (and its backward, the reverse running sum): one thread per line. */
static void emit_cumsum(CU *c, Buf *h, int id, const char *what) {
  E *e = c->e;
  Node *n = &e->g->nodes[id];
  bool bwd = n->op == OP_CUMSUM_DX;
  const Type *x = bwd ? &n->ty : &e->g->nodes[n->in[0]].ty;
  int kd = (int)n->ia[1];
  bool fl = dtype_is_float(x->dt);
  const char *len = x->rank ? dimc(e, x->dim[kd]) : "1",
             *inner = dimc(e, dims_prod(x, kd + 1, x->rank));
  const char *outer = dimc(e, dims_prod(x, 0, x->rank ? kd : 0));
  const char *at = arena_printf(e->A, "(i0*(%s) + i1)*(%s) + i2", len, inner);
  KArgs k = {.n = 0};
  karg(&k, id, true), karg(&k, n->in[0], false);
  Buf b = {.A = e->A};
  out(&b,
      "  MLCD_FOR(mlc_t, (%s) * (%s)) {\n    const int64_t i0 = mlc_t / (%s), i2 = mlc_t %% "
      "(%s);\n    %s acc "
      "= 0;\n",
      outer, inner, inner, inner, fl ? "double" : "int64_t");
  if (bwd)
    out(&b,
        "    for (int64_t i1 = (%s) - 1; i1 >= 0; i1--) {\n      acc += %s[%s];\n      %s[%s] = "
        "(float)acc;\n    }\n  }\n",
        len, c->vars[n->in[0]], at, c->vars[id], at);
  else
    out(&b,
        "    for (int64_t i1 = 0; i1 < (%s); i1++) {\n      acc += %s;\n      %s[%s] = %s;\n    "
        "}\n  }\n",
        len,
        cu_convert(e, arena_printf(e->A, "%s[%s]", c->vars[n->in[0]], at), x->dt,
                   fl ? DT_F32 : DT_I64),
        c->vars[id], at, fl ? cu_store(e, "(float)acc", DT_F32, n->ty.dt) : "acc");
  kernel(c, h, what, &k, b.s, arena_printf(e->A, "(%s) * (%s)", outer, inner), "cumsum");
}

/* max / min / prod gradients: one thread per kept element, serial over the reduced ones (as
 * emit_c.c). */
static void emit_reduce_dx(CU *c, Buf *h, int id, const char *what) {
  E *e = c->e;
  Node *n = &e->g->nodes[id];
  const Type *x = &n->ty;
  int64_t mask = n->ia[14];
  Dim xs[MAX_RANK];
  dense_strides(x, xs);
  Type kept = {.rank = 0}, red = {.rank = 0};
  int kd[MAX_RANK], rd[MAX_RANK];
  for (int q = 0; q < x->rank; q++) {
    if (mask & (1 << q))
      rd[red.rank] = q, red.dim[red.rank++] = x->dim[q];
    else
      kd[kept.rank] = q, kept.dim[kept.rank++] = x->dim[q];
  }
  Buf idx = {.A = e->A};
  for (int q = 0; q < x->rank; q++) out(&idx, "%si%d*%s", q ? " + " : "", q, dimc(e, xs[q]));
  const char *X = c->vars[n->in[1]], *dX = c->vars[id], *dY = c->vars[n->in[0]],
             *at = idx.len ? idx.s : "0";
  const char *cmp = n->op == OP_MAX_DX ? ">" : "<";
  Buf loop = {.A = e->A}; /* the reduced dims from r */
  out(&loop, "      int64_t mlc_rq = mlc_r;\n");
  for (int q = red.rank - 1; q >= 0; q--)
    out(&loop, "      const int64_t i%d = mlc_rq %% (%s);\n      mlc_rq /= (%s);\n", rd[q],
        dimc(e, red.dim[q]), dimc(e, red.dim[q]));
  out(&loop, "      (void)mlc_rq;\n");
  const char *nred = dimc(e, type_numel(&red));
  Buf b = {.A = e->A};
  out(&b, "  MLCD_FOR(o, %s) {\n%s", dimc(e, type_numel(&kept)),
      kept.rank ? "    int64_t mlc_kq = o;\n" : "");
  for (int q = kept.rank - 1; q >= 0; q--)
    out(&b, "    const int64_t i%d = mlc_kq %% (%s);\n    mlc_kq /= (%s);\n", kd[q],
        dimc(e, kept.dim[q]), dimc(e, kept.dim[q]));
  if (kept.rank) out(&b, "    (void)mlc_kq;\n");
  const char *pass[3] = {0};
  if (n->op == OP_PROD_DX) {
    out(&b, "    double mlc_prod = 1; int64_t mlc_zeros = 0; const float mlc_g = %s[o];\n", dY);
    pass[0] = arena_printf(
        e->A, "float v = %s[%s]; if (v == 0.0f) mlc_zeros++; else mlc_prod *= v;", X, at);
    pass[1] = arena_printf(
        e->A,
        "float v = %s[%s]; %s[%s] = mlc_zeros == 0 ? (float)(mlc_g * mlc_prod / v) : mlc_zeros == "
        "1 && v == 0.0f ? (float)(mlc_g * mlc_prod) : 0.0f;",
        X, at, dX, at);
  } else if (!n->ia[15]) {
    out(&b, "    float acc = 0; int64_t best = -1;\n");
    pass[0] = arena_printf(e->A,
                           "float v = %s[%s]; if (best < 0 || v %s acc || (v != v && acc == acc)) "
                           "{ acc = v; best = %s; } %s[%s] = 0.0f;",
                           X, at, cmp, at, dX, at);
  } else {
    out(&b, "    float acc = 0; int64_t best = -1, mlc_cnt = 0; float mlc_g = 0.0f;\n");
    pass[0] = arena_printf(e->A,
                           "float v = %s[%s]; if (best < 0 || v %s acc || (v != v && acc == acc)) "
                           "{ acc = v; best = %s; }",
                           X, at, cmp, at);
    pass[1] = arena_printf(
        e->A, "float v = %s[%s]; if (v == acc || (v != v && acc != acc)) mlc_cnt++;", X, at);
    pass[2] = arena_printf(
        e->A, "float v = %s[%s]; %s[%s] = (v == acc || (v != v && acc != acc)) ? mlc_g : 0.0f;", X,
        at, dX, at);
  }
  for (int q = 0; q < 3 && pass[q]; q++) {
    if (q == 2) out(&b, "    mlc_g = %s[o] / (float)mlc_cnt;\n", dY);
    out(&b, "    for (int64_t mlc_r = 0; mlc_r < (%s); mlc_r++) {\n%s      %s\n    }\n", nred,
        loop.s, pass[q]);
  }
  if (n->op != OP_PROD_DX && !n->ia[15]) out(&b, "    if (best >= 0) %s[best] = %s[o];\n", dX, dY);
  out(&b, "  }\n");
  KArgs k = {.n = 0};
  karg(&k, id, true), karg(&k, n->in[0], false), karg(&k, n->in[1], false);
  kernel(c, h, what, &k, b.s, dimc(e, type_numel(&kept)), "reduce_dx");
}

/* gather's gradient, deterministic: each element of dx sums, in ascending k
 * (the CPU's order, so the result is the CPU's bit for bit), the dy of the
 * positions k along dim kd whose index names it:
 *   dx[.. i_kd ..] = sum_k (index[.. k ..] == i_kd ? dy[.. k ..] : 0)
 * over the other dims' positions inside the index's shape (dx is 0 outside). */
static void emit_gather_dx(CU *c, Buf *h, int id, const char *what) {
  E *e = c->e;
  Node *n = &e->g->nodes[id];
  const Type *x = &n->ty, *o = &e->g->nodes[n->in[1]].ty;
  int kd = (int)n->ia[1], r = o->rank;
  Dim os[MAX_RANK];
  dense_strides(o, os);
  Buf at = {.A = e->A}, inside = {.A = e->A};
  for (int d = 0; d < r; d++) {
    out(&at, "%s%s*%s", d ? " + " : "", d == kd ? "mlc_k" : arena_printf(e->A, "i%d", d),
        dimc(e, os[d]));
    if (d != kd) out(&inside, " && i%d < (%s)", d, dimc(e, o->dim[d]));
  }
  KArgs k = {.n = 0};
  karg(&k, id, true), karg(&k, n->in[0], false), karg(&k, n->in[1], false);
  Buf b = {.A = e->A};
  out(&b, "  MLCD_FOR(i, %s) {\n%s    float mlc_acc = 0.0f;\n", dimc(e, type_numel(x)),
      unflatten(e, x, "i"));
  if (r)
    out(&b,
        "    %s%sfor (int64_t mlc_k = 0; mlc_k < (%s); mlc_k++) {\n      const int64_t mlc_at = "
        "%s;\n      if (%s[mlc_at] == i%d) mlc_acc += %s[mlc_at];\n    }\n",
        inside.len ? arena_printf(e->A, "if (%s)", inside.s + 4) : "", inside.len ? "\n    " : "",
        dimc(e, o->dim[kd]), at.s, c->vars[n->in[1]], kd, c->vars[n->in[0]]);
  else /* a scalar: index 0 picks it */
    out(&b, "    if (%s[0] == 0) mlc_acc = %s[0];\n", c->vars[n->in[1]], c->vars[n->in[0]]);
  out(&b, "    %s[i] = mlc_acc;\n  }\n", c->vars[id]);
  kernel(c, h, what, &k, b.s, dimc(e, type_numel(x)), "gather_dx");
}

/* ---- calls into the kernels header and cuBLAS ------------------------------------------ */
static const char *conv_struct(E *e, const Node *n) {
  const Type *x, *w, *y;
  int hh;
  conv_types(e->g, n, &x, &w, &y, &hh);
  return arena_printf(
      e->A, "{%s, %s, %s, %s, %s, %s, %s, %s, %s, %lld, %lld, %lld, %lld, %lld, %lld, %lld}",
      dimc(e, x->dim[0]), dimc(e, x->dim[1]), hh < 2 ? "1" : dimc(e, x->dim[2]),
      dimc(e, x->dim[hh + 1]), dimc(e, w->dim[0]), hh < 2 ? "1" : dimc(e, w->dim[2]),
      dimc(e, w->dim[hh + 1]), hh < 2 ? "1" : dimc(e, y->dim[2]), dimc(e, y->dim[hh + 1]),
      (long long)n->ia[0], (long long)n->ia[1], (long long)n->ia[2], (long long)n->ia[3],
      (long long)n->ia[4], (long long)n->ia[5], (long long)n->ia[6]);
}

/* A launch of a kernels-header template over `threads` threads. */
static void call(E *e, Buf *h, const char *what, const char *kern, const char *threads,
                 const char *args) {
  (void)e;
  out(h,
      "  %s<float><<<grid_for(%s), MLCD_THREADS, 0, mlc_stream>>>(%s);\n  CHECK_LAUNCH(\"%s\");\n",
      kern, threads, args, what);
}
/* ... over `blocks` blocks (block-per-channel kernels). */
static void call_blocks(E *e, Buf *h, const char *what, const char *kern, const char *blocks,
                        const char *args) {
  (void)e;
  out(h,
      "  %s<float><<<blocks_for(%s), MLCD_THREADS, 0, mlc_stream>>>(%s);\n  "
      "CHECK_LAUNCH(\"%s\");\n",
      kern, blocks, args, what);
}

static void emit_call_op(CU *c, Buf *h, int id, const char *what) {
  E *e = c->e;
  Graph *g = e->g;
  Node *n = &g->nodes[id];
  const char **v = c->vars, *y = v[id];
  const char *x = n->nin ? v[n->in[0]] : NULL;
  const Type *xt = n->nin ? &g->nodes[n->in[0]].ty : NULL;
  const char *eps = literal(e, n->fa[0], DT_F32);
  switch (n->op) {
  case OP_MATMUL: {
    const Type *wt = &g->nodes[n->in[1]].ty;
    out(h, "  {\n    const int64_t as[] = {");
    for (int i = 0; i < xt->rank; i++) out(h, "%s%s", i ? ", " : "", dimc(e, xt->dim[i]));
    out(h, "}, bs[] = {");
    for (int i = 0; i < wt->rank; i++) out(h, "%s%s", i ? ", " : "", dimc(e, wt->dim[i]));
    out(h, "}, ys[] = {");
    for (int i = 0; i < n->ty.rank; i++) out(h, "%s%s", i ? ", " : "", dimc(e, n->ty.dim[i]));
    if (!n->ty.rank) out(h, "1");
    out(h,
        "};\n    RT(mlcrt_cuda_matmul(m->cu, %s, %d, as, %s, %d, bs, %s, %d, ys, m->err));\n  }\n",
        x, xt->rank, v[n->in[1]], wt->rank, y, n->ty.rank);
    return;
  }
  case OP_LINEAR: {
    const Type *wt = &g->nodes[n->in[1]].ty;
    Dim K = xt->dim[xt->rank - 1], M;
    if (!dim_div(type_numel(xt), K, &M)) {
      Type rows = *xt;
      rows.rank--;
      M = type_numel(&rows);
    }
    const char *Ms = dimc(e, M), *Ks = dimc(e, K), *Ns = dimc(e, wt->dim[0]);
    out(h,
        "  RT(mlcrt_cuda_sgemm(m->cu, 0, 1, %s, %s, %s, 1.0f, %s, %s, %s, %s, 0.0f, %s, %s, "
        "m->err));\n",
        Ms, Ns, Ks, x, Ks, v[n->in[1]], Ks, y, Ns);
    if (n->nin == 3)
      call(e, h, what, "mlcd_add_bias", arena_printf(e->A, "(%s) * (%s)", Ms, Ns),
           arena_printf(e->A, "%s, %s, %s, %s", y, Ms, Ns, v[n->in[2]]));
    return;
  }
  case OP_LINEAR_DW: { /* dW[N, K] = dy^T x */
    const Type *dt = &g->nodes[n->in[0]].ty;
    Dim Nd = n->ty.dim[0], K = n->ty.dim[1], M;
    if (!dim_div(type_numel(dt), Nd, &M)) M = dim_const(0);
    out(h,
        "  RT(mlcrt_cuda_sgemm(m->cu, 1, 0, %s, %s, %s, 1.0f, %s, %s, %s, %s, 0.0f, %s, %s, "
        "m->err));\n",
        dimc(e, Nd), dimc(e, K), dimc(e, M), x, dimc(e, Nd), v[n->in[1]], dimc(e, K), y,
        dimc(e, K));
    return;
  }
  case OP_CONV1D:
  case OP_CONV2D:
  case OP_CONV2D_DX:
  case OP_CONV2D_DW: {
    const char *k = n->op == OP_CONV2D_DX   ? "mlcd_conv2d_dx"
                    : n->op == OP_CONV2D_DW ? "mlcd_conv2d_dw"
                                            : "mlcd_conv2d";
    const char *args = n->op == OP_CONV2D_DX || n->op == OP_CONV2D_DW
                           ? arena_printf(e->A, "cp, %s, %s, %s", x, v[n->in[1]], y)
                           : arena_printf(e->A, "cp, %s, %s, %s, %s", x, v[n->in[1]],
                                          n->nin == 3 ? v[n->in[2]] : "NULL", y);
    out(h, "  {\n    const mlcd_conv cp = %s;\n", conv_struct(e, n));
    call(e, h, what, k, dimc(e, type_numel(&n->ty)), args);
    out(h, "  }\n");
    return;
  }
  case OP_CONV_TRANSPOSE2D:
  case OP_CONV_TRANSPOSE2D_DX:
  case OP_CONV_TRANSPOSE2D_DW: {
    const Type *xx = xt, *w = &g->nodes[n->in[1]].ty, *yy = &n->ty;
    const int64_t *a = n->ia;
    const char *k = "mlcd_conv_transpose2d", *args;
    if (n->op == OP_CONV_TRANSPOSE2D)
      args = arena_printf(e->A, "tp, %s, %s, %s, %s", x, v[n->in[1]],
                          n->nin == 3 ? v[n->in[2]] : "NULL", y);
    else {
      bool dx = n->op == OP_CONV_TRANSPOSE2D_DX;
      yy = xt;
      xx = dx ? &n->ty : w;
      w = dx ? w : &n->ty;
      k = dx ? "mlcd_conv_transpose2d_dx" : "mlcd_conv_transpose2d_dw";
      args = arena_printf(e->A, "tp, %s, %s, %s", x, v[n->in[1]], y);
    }
    out(h,
        "  {\n    const mlcd_conv tp = {%s, %s, %s, %s, %s, %s, %s, %s, %s, %lld, %lld, %lld, "
        "%lld, %lld, %lld, %lld};\n",
        dimc(e, xx->dim[0]), dimc(e, xx->dim[1]), dimc(e, xx->dim[2]), dimc(e, xx->dim[3]),
        dimc(e, yy->dim[1]), dimc(e, w->dim[2]), dimc(e, w->dim[3]), dimc(e, yy->dim[2]),
        dimc(e, yy->dim[3]), (long long)a[0], (long long)a[1], (long long)a[2], (long long)a[3],
        (long long)a[7], (long long)a[8], (long long)a[6]);
    call(e, h, what, k, dimc(e, type_numel(&n->ty)), args);
    out(h, "  }\n");
    return;
  }
  case OP_MAX_POOL2D:
  case OP_AVG_POOL2D:
  case OP_MAX_POOL2D_DX:
  case OP_AVG_POOL2D_DX: {
    bool dx = n->op == OP_MAX_POOL2D_DX || n->op == OP_AVG_POOL2D_DX;
    const Type *in = dx ? &n->ty : xt, *ot = dx ? xt : &n->ty;
    out(h,
        "  {\n    const mlcd_pool pp = {%s, %s, %s, %s, %s, %s, %lld, %lld, %lld, %lld, %lld, "
        "%lld, %d};\n",
        dimc(e, in->dim[0]), dimc(e, in->dim[1]), dimc(e, in->dim[2]), dimc(e, in->dim[3]),
        dimc(e, ot->dim[2]), dimc(e, ot->dim[3]), (long long)n->ia[0], (long long)n->ia[1],
        (long long)n->ia[2], (long long)n->ia[3], (long long)n->ia[4], (long long)n->ia[5],
        (int)n->ia[9]);
    const char *k = n->op == OP_MAX_POOL2D      ? "mlcd_max_pool2d"
                    : n->op == OP_AVG_POOL2D    ? "mlcd_avg_pool2d"
                    : n->op == OP_MAX_POOL2D_DX ? "mlcd_max_pool2d_dx"
                                                : "mlcd_avg_pool2d_dx";
    const char *args = n->op == OP_MAX_POOL2D_DX
                           ? arena_printf(e->A, "pp, %s, %s, %s", x, v[n->in[1]], y)
                           : arena_printf(e->A, "pp, %s, %s", x, y);
    call(e, h, what, k, dimc(e, type_numel(&n->ty)), args);
    out(h, "  }\n");
    return;
  }
  case OP_ADAPTIVE_AVG_POOL2D:
    call(e, h, what, "mlcd_adaptive_avg_pool2d", dimc(e, type_numel(&n->ty)),
         arena_printf(e->A, "%s, %s, %s, %s, %lld, %lld, %s, %s", dimc(e, xt->dim[0]),
                      dimc(e, xt->dim[1]), dimc(e, xt->dim[2]), dimc(e, xt->dim[3]),
                      (long long)n->ia[0], (long long)n->ia[1], x, y));
    return;
  case OP_ADAPTIVE_AVG_POOL2D_DX:
    call(e, h, what, "mlcd_adaptive_avg_pool2d_dx", dimc(e, type_numel(&n->ty)),
         arena_printf(e->A, "%s, %s, %s, %s, %s, %s, %s, %s", dimc(e, n->ty.dim[0]),
                      dimc(e, n->ty.dim[1]), dimc(e, n->ty.dim[2]), dimc(e, n->ty.dim[3]),
                      dimc(e, xt->dim[2]), dimc(e, xt->dim[3]), x, y));
    return;
  case OP_SOFTMAX:
  case OP_LOG_SOFTMAX:
  case OP_SOFTMAX_DX:
  case OP_LOG_SOFTMAX_DX: {
    const Type *t = n->op == OP_SOFTMAX || n->op == OP_LOG_SOFTMAX ? xt : &n->ty;
    int d = (int)n->ia[1];
    Dim outer = dim_const(1), inner = dim_const(1);
    for (int q = 0; q < d; q++) outer = dim_mul(outer, t->dim[q]);
    for (int q = d + 1; q < t->rank; q++) inner = dim_mul(inner, t->dim[q]);
    const char *os = dimc(e, outer), *ns = t->rank ? dimc(e, t->dim[d]) : "1", *is = dimc(e, inner);
    int lg = n->op == OP_LOG_SOFTMAX || n->op == OP_LOG_SOFTMAX_DX;
    if (n->op == OP_SOFTMAX_DX || n->op == OP_LOG_SOFTMAX_DX)
      call(e, h, what, "mlcd_softmax_dx", arena_printf(e->A, "(%s) * (%s) * 32", os, is),
           arena_printf(e->A, "%s, %s, %s, %s, %s, %d, %s", x, v[n->in[1]], os, ns, is, lg, y));
    else {
      out(h, "  if ((%s) == 1) {\n", is);
      call(e, h, what, "mlcd_softmax_rows", arena_printf(e->A, "(%s) * 32", os),
           arena_printf(e->A, "%s, %s, %s, %d, %s", x, os, ns, lg, y));
      out(h, "  } else {\n");
      call(e, h, what, "mlcd_softmax_cols", arena_printf(e->A, "(%s) * (%s)", os, is),
           arena_printf(e->A, "%s, %s, %s, %s, %d, %s", x, os, ns, is, lg, y));
      out(h, "  }\n");
    }
    return;
  }
  case OP_CROSS_ENTROPY:
  case OP_CROSS_ENTROPY_DX: {
    bool bwd = n->op == OP_CROSS_ENTROPY_DX;
    int lg = n->in[bwd ? 1 : 0], lb = n->in[bwd ? 2 : 1];
    const Type *lt = &g->nodes[lg].ty;
    int chk =
        device_check(c, arena_printf(e->A, "%s: cross_entropy: label %%lld is outside 0..%s",
                                     node_where(e, n), dimc(e, dim_sub(lt->dim[1], dim_const(1)))));
    const char *args = arena_printf(e->A, "%s, %s, %d, %s, %s, %.17g", v[lg], v[lb],
                                    (int)g->nodes[lb].ty.dt == DT_U8 ? 5
                                    : g->nodes[lb].ty.dt == DT_I32   ? 3
                                                                     : 4,
                                    dimc(e, lt->dim[0]), dimc(e, lt->dim[1]), n->fa[0]);
    if (bwd)
      call(e, h, what, "mlcd_cross_entropy_dx",
           arena_printf(e->A, "(%s) * 32", dimc(e, lt->dim[0])),
           arena_printf(e->A, "%s, %s, %s, m->d_status, %d", x, args, y, chk));
    else
      out(h,
          "  mlcd_cross_entropy<float><<<1, MLCD_THREADS, 0, mlc_stream>>>(%s, %s, m->d_status, "
          "%d);\n  "
          "CHECK_LAUNCH(\"%s\");\n",
          args, y, chk, what);
    return;
  }
  case OP_EMBEDDING_DW: {
    const Type *it = &g->nodes[n->in[1]].ty;
    out(h, "  RT(mlcrt_cuda_memset(m->cu, %s, 0, sizeof(float) * (size_t)(%s), m->err));\n", y,
        dimc(e, type_numel(&n->ty)));
    call(e, h, what, "mlcd_embedding_dw", dimc(e, type_numel(xt)),
         arena_printf(e->A, "%s, %s, %d, %s, %s, %s, %s", x, v[n->in[1]],
                      it->dt == DT_U8    ? 5
                      : it->dt == DT_I32 ? 3
                                         : 4,
                      dimc(e, type_numel(it)), dimc(e, n->ty.dim[1]), dimc(e, n->ty.dim[0]), y));
    return;
  }
  case OP_INDEX_SELECT_DX: {
    const Type *it = &g->nodes[n->in[1]].ty;
    int kd = (int)n->ia[1];
    out(h, "  RT(mlcrt_cuda_memset(m->cu, %s, 0, sizeof(float) * (size_t)(%s), m->err));\n", y,
        dimc(e, type_numel(&n->ty)));
    call(e, h, what, "mlcd_index_select_dx", dimc(e, type_numel(xt)),
         arena_printf(e->A, "%s, %s, %s, %s, %s, %d, %s, %s", x, dimc(e, dims_prod(&n->ty, 0, kd)),
                      dimc(e, n->ty.dim[kd]), dimc(e, dims_prod(&n->ty, kd + 1, n->ty.rank)),
                      v[n->in[1]], it->dt == DT_I64 ? 4 : 3, dimc(e, type_numel(it)), y));
    return;
  }
  case OP_BATCH_NORM:
  case OP_LAYER_NORM:
  case OP_GROUP_NORM:
  case OP_RMS_NORM: {
    int k = n->op == OP_BATCH_NORM ? 3 : n->op == OP_GROUP_NORM ? 1 : 2;
    const char *w = "NULL", *bias = "NULL";
    if (n->op == OP_LAYER_NORM || n->op == OP_RMS_NORM)
      w = v[n->in[1]];
    else if (n->ia[0])
      w = v[n->in[k++]];
    if (n->ia[1]) bias = v[n->in[k]];
    if (n->op == OP_LAYER_NORM || n->op == OP_RMS_NORM) {
      int wr = g->nodes[n->in[1]].ty.rank;
      Dim rows = dims_prod(xt, 0, xt->rank - wr), M = dims_prod(xt, xt->rank - wr, xt->rank);
      call(e, h, what, "mlcd_layer_norm", arena_printf(e->A, "(%s) * 32", dimc(e, rows)),
           arena_printf(e->A, "%s, %s, %s, %s, %s, %s, %d, %s", x, dimc(e, rows), dimc(e, M), w,
                        bias, eps, n->op == OP_RMS_NORM, y));
      return;
    }
    const char *inner = dimc(e, dims_prod(xt, 2, xt->rank));
    if (n->op == OP_BATCH_NORM)
      call(e, h, what, "mlcd_batch_norm", dimc(e, type_numel(xt)),
           arena_printf(e->A, "%s, %s, %s, %s, %s, %s, %s, %s, %s, %s", x, dimc(e, xt->dim[0]),
                        dimc(e, xt->dim[1]), inner, v[n->in[1]], v[n->in[2]], w, bias, eps, y));
    else
      call_blocks(e, h, what, "mlcd_group_norm",
                  arena_printf(e->A, "(%s) * %lld", dimc(e, xt->dim[0]), (long long)n->ia[2]),
                  arena_printf(e->A, "%s, %s, %s, %s, %lld, %s, %s, %s, %s", x, dimc(e, xt->dim[0]),
                               dimc(e, xt->dim[1]), inner, (long long)n->ia[2], w, bias, eps, y));
    return;
  }
  case OP_SDPA:
  case OP_SDPA_BWD: {
    bool bwd = n->op == OP_SDPA_BWD;
    int mask_in = bwd ? 5 : 3;
    const Type *q = xt, *kt = &g->nodes[n->in[1]].ty, *vt = &g->nodes[n->in[2]].ty;
    int r = q->rank;
    out(h, "  {\n    mlcd_sdpa sp = {%d, {", r - 2);
    for (int i = 0; i < r - 2; i++) out(h, "%s%s", i ? ", " : "", dimc(e, q->dim[i]));
    out(h, "%s}, %s, %s, %s, %s, ", r == 2 ? "0" : "", dimc(e, q->dim[r - 2]),
        dimc(e, kt->dim[r - 2]), dimc(e, q->dim[r - 1]), dimc(e, vt->dim[r - 1]));
    if (n->ia[2])
      out(h, "%s, ", literal(e, n->fa[0], DT_F32));
    else
      out(h, "(float)(1.0 / sqrt((double)(%s))), ", dimc(e, q->dim[r - 1]));
    out(h, "%d, 0, {0}};\n", (int)n->ia[1]);
    const char *mask = "NULL";
    if (n->ia[0]) {
      const Node *mn = &g->nodes[n->in[mask_in]];
      Type sc = *q;
      sc.dim[r - 1] = kt->dim[r - 2];
      Dim st[MAX_RANK];
      bcast_strides(&mn->ty, &sc, st);
      out(h, "    sp.mask = %d;\n", mn->ty.dt == DT_BOOL ? 1 : 2);
      for (int i = 0; i < r; i++) out(h, "    sp.mask_stride[%d] = %s;\n", i, dimc(e, st[i]));
      mask = v[n->in[mask_in]];
    }
    Dim rows = dims_prod(q, 0, r - 1);
    if (bwd) {
      const char *nq = dimc(e, type_numel(q)), *nk = dimc(e, type_numel(kt));
      out(h,
          "    RT(mlcrt_cuda_memset(m->cu, %s + (%s), 0, sizeof(float) * (size_t)((%s) + (%s)), "
          "m->err));\n",
          y, nq, nk, dimc(e, type_numel(vt)));
      call(e, h, what, "mlcd_sdpa_bwd", arena_printf(e->A, "(%s) * 32", dimc(e, rows)),
           arena_printf(e->A, "sp, %s, %s, %s, %s, %s, %s, %s, %s + (%s), %s + (%s) + (%s)", x,
                        v[n->in[1]], v[n->in[2]], mask, v[n->in[4]], v[n->in[3]], y, y, nq, y, nq,
                        nk));
    } else
      call(e, h, what, "mlcd_sdpa_fwd", arena_printf(e->A, "(%s) * 32", dimc(e, rows)),
           arena_printf(e->A, "sp, %s, %s, %s, %s, %s", x, v[n->in[1]], v[n->in[2]], mask, y));
    out(h, "  }\n");
    return;
  }
  default:
    break;
  }
  /* train mode and the norms' gradients */
  bool fwd =
      n->op == OP_BATCH_NORM_STATS || n->op == OP_BATCH_NORM_TRAIN || n->op == OP_DROPOUT_TRAIN;
  int xi = n->in[fwd ? 0 : 1];
  const Type *xx = &g->nodes[xi].ty;
  const char *X = v[xi], *dy = v[n->in[0]];
  switch (n->op) {
  case OP_DROPOUT_TRAIN:
    call(e, h, what, "mlcd_dropout", dimc(e, type_numel(xx)),
         arena_printf(e->A,
                      "%s, %s, %.17g, m->seed, (const int64_t *)(m->d_weights + %zu), %lldULL, %s",
                      X, dimc(e, type_numel(xx)), n->fa[0], e->step_off, (long long)n->ia[0], y));
    return;
  case OP_LAYER_NORM_DX:
  case OP_LAYER_NORM_DW: {
    const char *rows = dimc(e, dims_prod(xx, 0, xx->rank - (int)n->ia[4])),
               *M = dimc(e, dims_prod(xx, xx->rank - (int)n->ia[4], xx->rank));
    if (n->op == OP_LAYER_NORM_DX)
      call(e, h, what, "mlcd_layer_norm_dx", arena_printf(e->A, "(%s) * 32", rows),
           arena_printf(e->A, "%s, %s, %s, %s, %s, %s, %d, %s", dy, X, rows, M,
                        n->ia[0] ? v[n->in[2]] : "NULL", eps, (int)n->ia[3], y));
    else
      call_blocks(
          e, h, what, "mlcd_layer_norm_dw", arena_printf(e->A, "((%s) + 255) / 256", M),
          arena_printf(e->A, "%s, %s, %s, %s, %s, %d, %s", dy, X, rows, M, eps, (int)n->ia[3], y));
    return;
  }
  default:
    break;
  }
  const char *N = dimc(e, xx->dim[0]), *C = dimc(e, xx->dim[1]),
             *inner = dimc(e, dims_prod(xx, 2, xx->rank));
  switch (n->op) {
  case OP_BATCH_NORM_STATS: {
    int64_t cc;
    Dim cnt = dim_mul(xx->dim[0], dims_prod(xx, 2, xx->rank));
    if (!dim_is_const(cnt, &cc) || cc < 2)
      out(h,
          "  if ((int64_t)(%s) < 2)\n    return mlcrt_seterr(m->err, MLCRT_EINVAL, \"%s: "
          "batch_norm in a train step needs more than 1 value per channel, got input %s\");\n",
          dimc(e, cnt), node_where(e, n), type_str(e->A, g, xx));
    call_blocks(e, h, what, "mlcd_batch_norm_stats", C,
                arena_printf(e->A, "%s, %s, %s, %s, %s", X, N, C, inner, y));
    return;
  }
  case OP_BATCH_NORM_TRAIN: {
    const char *w = n->ia[0] ? v[n->in[2]] : "NULL",
               *bias = n->ia[1] ? v[n->in[2 + (n->ia[0] != 0)]] : "NULL";
    call(e, h, what, "mlcd_batch_norm", dimc(e, type_numel(xx)),
         arena_printf(e->A, "%s, %s, %s, %s, %s, %s + (%s), %s, %s, %s, %s", X, N, C, inner,
                      v[n->in[1]], v[n->in[1]], C, w, bias, eps, y));
    return;
  }
  case OP_BATCH_NORM_DX:
    call_blocks(e, h, what, "mlcd_batch_norm_dx", C,
                arena_printf(e->A, "%s, %s, %s, %s, %s, %s, %s, %s, %s", dy, X, N, C, inner,
                             v[n->in[2]], n->ia[0] ? v[n->in[3]] : "NULL", eps, y));
    return;
  case OP_BATCH_NORM_DW:
    call_blocks(e, h, what, "mlcd_batch_norm_dw", C,
                arena_printf(e->A, "%s, %s, %s, %s, %s, %s, %s, %s", dy, X, N, C, inner,
                             v[n->in[2]], eps, y));
    return;
  case OP_GROUP_NORM_DX:
    call_blocks(e, h, what, "mlcd_group_norm_dx",
                arena_printf(e->A, "(%s) * %lld", N, (long long)n->ia[2]),
                arena_printf(e->A, "%s, %s, %s, %s, %s, %lld, %s, %s, %s", dy, X, N, C, inner,
                             (long long)n->ia[2], n->ia[0] ? v[n->in[2]] : "NULL", eps, y));
    return;
  case OP_GROUP_NORM_DW:
    call_blocks(e, h, what, "mlcd_group_norm_dw", C,
                arena_printf(e->A, "%s, %s, %s, %s, %s, %lld, %s, %s", dy, X, N, C, inner,
                             (long long)n->ia[2], eps, y));
    return;
  default:
    out(h, "#error \"mlc internal error: no CUDA emitter for operator %s\"\n", op_info[n->op].name);
  }
}

/* One node of a GK_SINGLE group (or an epilogue's producer). */
static void emit_single(CU *c, Buf *h, int id, const char *what) {
  E *e = c->e;
  Node *n = &e->g->nodes[id];
  int flags = op_info[n->op].flags;
  if (n->op == OP_CONST || (flags & F_ELEM)) {
    int one[1] = {id};
    emit_elem_kernel(c, h, one, 1, -1, what);
    return;
  }
  if (flags & F_REDUCE) {
    emit_reduce(c, h, id, what);
    return;
  }
  switch (n->op) {
  case OP_RESHAPE:
  case OP_FLATTEN:
  case OP_SQUEEZE:
  case OP_UNSQUEEZE:
  case OP_DROPOUT:
    return; /* views */
  case OP_TRANSPOSE:
  case OP_PERMUTE:
    emit_permute(c, h, id, what);
    return;
  case OP_CONCAT:
  case OP_STACK:
    emit_concat(c, h, id, what);
    return;
  case OP_SLICE:
    emit_slice(c, h, id, what);
    return;
  case OP_SLICE_DX:
    emit_slice_dx(c, h, id, what);
    return;
  case OP_EXPAND:
    emit_expand(c, h, id, what);
    return;
  case OP_GATHER:
    emit_gather(c, h, id, what);
    return;
  case OP_GATHER_DX:
    emit_gather_dx(c, h, id, what);
    return;
  case OP_INDEX_SELECT:
  case OP_EMBEDDING:
    emit_index_select(c, h, id, what);
    return;
  case OP_PAD:
    emit_pad(c, h, id, what);
    return;
  case OP_INTERPOLATE:
  case OP_INTERPOLATE_DX:
    emit_interpolate(c, h, id, what);
    return;
  case OP_CUMSUM:
  case OP_CUMSUM_DX:
    emit_cumsum(c, h, id, what);
    return;
  case OP_MAX_DX:
  case OP_MIN_DX:
  case OP_PROD_DX:
    emit_reduce_dx(c, h, id, what);
    return;
  default:
    emit_call_op(c, h, id, what);
  }
}

/* ---- the host part ----------------------------------------------------------------------- */
/* Device pointers of every node plan p computes, then its groups in order. */
static void emit_body(CU *c, Buf *h, const Plan *p, const char *offs) {
  E *e = c->e;
  Graph *g = e->g;
  e->p = p;
  out(h, "  /* params and buffers (device) */\n");
  for (int t = 0; t < g->ntensors; t++) {
    int id = g->tensors[t];
    Node *n = &g->nodes[id];
    bool used = false; /* by a node that runs, or as an output */
    for (int j = 0; j < g->n && !used; j++)
      if (p->storage[j] == ST_ARENA || p->storage[j] == ST_ALIAS || p->storage[j] == ST_FUSED)
        for (int k = 0; k < g->nodes[j].nin; k++) used |= g->nodes[j].in[k] == id;
    for (int j = 0; j < g->noutputs; j++) used |= g->outputs[j].node == id;
    if (used)
      out(h, "  %s *%s = (%s *)(m->d_weights + %zu); /* %s %s */\n", ctype(n->ty.dt), e->var[id],
          ctype(n->ty.dt), p->weight_off[id], n->name, type_str(e->A, g, &n->ty));
  }
  out(h, "  /* activations (device) */\n");
  for (int i = 0; i < g->n; i++) {
    Node *n = &g->nodes[i];
    if (p->storage[i] == ST_ARENA)
      out(h, "  %s *%s = (%s *)(m->d_arena + m->%s[%d]); /* %s */\n", ctype(n->ty.dt), e->var[i],
          ctype(n->ty.dt), offs, p->buf[i], type_str(e->A, g, &n->ty));
    else if (p->storage[i] == ST_ALIAS)
      out(h, "  %s *%s = %s; /* %s, a view of %s */\n", ctype(n->ty.dt), e->var[i],
          e->var[n->in[0]], type_str(e->A, g, &n->ty), e->var[n->in[0]]);
  }
  out(h, "\n");
  for (int gi = 0; gi < p->ngroups; gi++) {
    const Group *gr = &p->groups[gi];
    Node *n = &g->nodes[gr->root];
    const char *what = arena_printf(e->A, "line %d: %s", n->loc.line, describe(e, n));
    out(h, "  /* line %d: %s   -> %s %s%s */\n", n->loc.line, src_line(e, n->loc), describe(e, n),
        type_str(e->A, g, &n->ty),
        gr->kind == GK_ELEM       ? arena_printf(e->A, " (%d fused)", gr->n)
        : gr->kind == GK_EPILOGUE ? " (with its epilogue)"
                                  : "");
    bool k0;
    if (type_numel_const(&n->ty, &k0) == 0 &&
        k0) { /* nothing to compute (and no kernel dividing by 0) */
      out(h, "  /* (no elements) */\n");
      continue;
    }
    if (gr->kind == GK_SINGLE)
      emit_single(c, h, gr->root, what);
    else if (gr->kind == GK_ELEM)
      emit_elem_kernel(c, h, gr->nodes, gr->n, -1, what);
    else { /* GK_EPILOGUE: the producer into the root's buffer, then the tail in place */
      const int prod = gr->nodes[0];
      const char *saved = c->vars[prod];
      c->vars[prod] = c->vars[gr->root];
      emit_single(c, h, prod, what);
      emit_elem_kernel(c, h, gr->nodes, gr->n, prod, arena_printf(e->A, "%s (epilogue)", what));
      c->vars[prod] = saved;
    }
  }
}

/* Input slots on the device (max dims) and their staging: one per input of
 * the model and of the train section. */
static int ninputs_all(E *e) {
  return e->g->ninputs + (e->train ? e->g->ntrain_inputs : 0);
}
static int input_node(E *e, int i) {
  return i < e->g->ninputs ? e->g->inputs[i] : e->g->train_inputs[i - e->g->ninputs];
}

/* The optimizer update of every trained param, one kernel each, run only
 * when the step is good (finite loss, no failed check). */
static void emit_updates(CU *c, Buf *h) {
  E *e = c->e;
  Graph *g = e->g;
  const Optimizer *o = &g->opt;
  for (int t = 0; t < g->ntensors; t++) {
    if (g->grads[t] < 0) continue;
    int id = g->tensors[t];
    Node *n = &g->nodes[id];
    Buf b = {.A = e->A};
    out(&b, "  if (!mlcd_step_ok(loss, mlc_status)) return;\n  const int64_t step = *step_p;\n  "
            "(void)step;\n");
    if (o->kind != OPT_SGD) {
      out(&b, "  const float step_size = (float)(%.17g / (1.0 - pow(%.17g, (double)step)));\n",
          o->lr, o->beta1);
      out(&b, "  const float bc2_sqrt = (float)sqrt(1.0 - pow(%.17g, (double)step));\n", o->beta2);
    }
    out(&b, "  MLCD_FOR(i, %s) {\n", dimc(e, type_numel(&n->ty)));
    if (o->kind == OPT_SGD) {
      out(&b, "    float d = grad[i]%s;\n",
          o->weight_decay > 0
              ? arena_printf(e->A, " + %sf * w[i]", literal_plain(e, o->weight_decay))
              : "");
      if (o->momentum > 0) {
        const char *mu = literal_plain(e, o->momentum);
        out(&b, "    s1[i] = step == 1 ? d : %sf * s1[i] + d;\n", mu);
        out(&b, o->nesterov ? "    d = d + %sf * s1[i];\n" : "    d = s1[i];%s\n",
            o->nesterov ? mu : "");
      }
      out(&b, "    w[i] -= %sf * d;\n  }\n", literal_plain(e, o->lr));
    } else {
      out(&b, "    float d = grad[i];\n");
      if (o->kind == OPT_ADAMW && o->weight_decay > 0)
        out(&b, "    w[i] *= 1.0f - %sf * %sf;\n", literal_plain(e, o->lr),
            literal_plain(e, o->weight_decay));
      if (o->kind == OPT_ADAM && o->weight_decay > 0)
        out(&b, "    d += %sf * w[i];\n", literal_plain(e, o->weight_decay));
      out(&b, "    s1[i] += %sf * (d - s1[i]);\n", literal_plain(e, 1 - o->beta1));
      out(&b, "    s2[i] = s2[i] * %sf + %sf * d * d;\n", literal_plain(e, o->beta2),
          literal_plain(e, 1 - o->beta2));
      out(&b, "    w[i] -= step_size * s1[i] / (sqrtf(s2[i]) / bc2_sqrt + %sf);\n  }\n",
          literal_plain(e, o->eps));
    }
    const char *name = arena_printf(e->A, "%s_update_%d", e->M, t);
    out(c->kern,
        "/* the %s update of %s %s */\nstatic __global__ void %s(float *__restrict__ w, const "
        "float *__restrict__ grad, "
        "float *__restrict__ s1, float *__restrict__ s2, const int64_t *__restrict__ step_p, const "
        "float *__restrict__ loss, "
        "const int64_t *__restrict__ mlc_status) {\n  (void)s1, (void)s2;\n%s}\n",
        o->kind == OPT_SGD    ? "sgd"
        : o->kind == OPT_ADAM ? "adam"
                              : "adamw",
        n->name, type_str(e->A, g, &n->ty), name, b.s);
    const char *s1 = e->nslots >= 1
                         ? arena_printf(e->A, "(float *)(m->d_weights + %zu)", e->slot_off[t])
                         : "NULL";
    const char *s2 = e->nslots >= 2 ? arena_printf(e->A, "(float *)(m->d_weights + %zu)",
                                                   e->slot_off[t] + e->slot2_gap[t])
                                    : "NULL";
    out(h,
        "  %s<<<grid_for(%s), MLCD_THREADS, 0, mlc_stream>>>((float *)(m->d_weights + %zu), %s, "
        "%s, %s, "
        "(const int64_t *)(m->d_weights + %zu), %s, m->d_status);\n  CHECK_LAUNCH(\"update "
        "%s\");\n",
        name, dimc(e, type_numel(&n->ty)), e->p->weight_off[id], e->var[g->grads[t]], s1, s2,
        e->step_off, e->var[g->loss], n->name);
  }
}

/* The enqueue function of run / train step / evaluate: copies in, the body,
 * copies out, all on the stream (what a CUDA graph captures). */
static void emit_enqueue(CU *c, Buf *src, int kind) {
  E *e = c->e;
  Graph *g = e->g;
  static const char *const fns[] = {"run", "train", "eval"};
  const Plan *p = kind == SIG_RUN ? e->p : kind == SIG_TRAIN ? e->train : e->eval;
  const char *offs = kind == SIG_RUN ? "off" : kind == SIG_TRAIN ? "toff" : "eoff";
  c->fn = fns[kind];
  Buf h = {.A = e->A};
  out(&h,
      "static int %s_enqueue_%s(void *ctx) {\n  %s *m = (%s *)ctx;\n  cudaStream_t mlc_stream = "
      "(cudaStream_t)mlcrt_cuda_stream(m->cu);\n  (void)mlc_stream;\n",
      e->M, fns[kind], e->M, e->M);
  for (int sy = 1; sy <= g->nsym; sy++)
    out(&h, "  const int64_t %s = m->dims[%d];\n  (void)%s;\n", g->sym[sy], sy - 1, g->sym[sy]);
  int nin = kind == SIG_RUN ? g->ninputs : ninputs_all(e);
  for (int i = 0; i < nin; i++) {
    int id = input_node(e, i);
    Node *n = &g->nodes[id];
    out(&h,
        "  %s *%s = (%s *)(m->d_in[%d]); /* input %s: %s */\n  RT(mlcrt_cuda_h2d(m->cu, %s, "
        "m->h_in[%d], sizeof(%s) * (size_t)(%s), m->err));\n",
        ctype(n->ty.dt), e->var[id], ctype(n->ty.dt), i, n->name, type_str(e->A, g, &n->ty),
        e->var[id], i, ctype(n->ty.dt), dimc(e, type_numel(&n->ty)));
  }
  out(&h, "  RT(mlcrt_cuda_memset(m->cu, m->d_status, 0, 2 * sizeof(int64_t), m->err));\n");
  emit_body(c, &h, p, offs);
  if (kind != SIG_TRAIN) {
    for (int i = 0; i < g->noutputs; i++) {
      int id = g->outputs[i].node;
      out(&h,
          "  RT(mlcrt_cuda_d2h(m->cu, m->h_out[%d], %s, sizeof(%s) * (size_t)(%s), m->err)); /* "
          "output %s */\n",
          i, e->var[id], ctype(g->nodes[id].ty.dt), dimc(e, type_numel(&g->nodes[id].ty)),
          g->outputs[i].name);
    }
  }
  if (kind != SIG_RUN)
    out(&h, "  RT(mlcrt_cuda_d2h(m->cu, m->h_loss, %s, sizeof(float), m->err));\n",
        e->var[kind == SIG_TRAIN ? g->loss : g->eval_loss]);
  if (kind == SIG_TRAIN) {
    out(&h,
        "  /* the step counts only with a finite loss and no failed check; so do the updates */\n");
    out(&h,
        "  mlcd_step_begin<float><<<1, 32, 0, mlc_stream>>>(%s, m->d_status, (int64_t "
        "*)(m->d_weights + "
        "%zu));\n  CHECK_LAUNCH(\"step\");\n",
        e->var[g->loss], e->step_off);
    for (int u = 0; u < g->ntrain_updates; u++) {
      const Node *sn = &g->nodes[g->train_updates[u]];
      const Type *xt = &g->nodes[sn->in[0]].ty;
      out(&h,
          "  mlcd_batch_norm_update<float><<<grid_for(%s), MLCD_THREADS, 0, mlc_stream>>>(%s, %s, "
          "%s, "
          "%.17g, %s, %s, %s, m->d_status);\n  CHECK_LAUNCH(\"batch_norm running statistics\");\n",
          dimc(e, xt->dim[1]), e->var[g->train_updates[u]], dimc(e, xt->dim[1]),
          dimc(e, dim_mul(xt->dim[0], dims_prod(xt, 2, xt->rank))), sn->fa[1], e->var[sn->in[1]],
          e->var[sn->in[2]], e->var[g->loss]);
    }
    emit_updates(c, &h);
  }
  out(&h, "  RT(mlcrt_cuda_d2h(m->cu, m->h_status, m->d_status, 2 * sizeof(int64_t), m->err));\n  "
          "return MLCRT_OK;\n}\n\n");
  out(src, "%s", h.s);
}

/* run / train_step / evaluate: check, stage the inputs, run the graph, wait,
 * report a failed device check, copy the outputs out. */
static void emit_entry(CU *c, Buf *b, int kind) {
  E *e = c->e;
  Graph *g = e->g;
  static const char *const fns[] = {"run", "train", "eval"}, *const api[] = {"run", "train_step",
                                                                             "evaluate"};
  emit_signature(e, b, kind);
  emit_checks(e, b, api[kind], kind != SIG_RUN);
  for (int sy = 1; sy <= g->nsym; sy++) out(b, "  m->dims[%d] = %s;\n", sy - 1, g->sym[sy]);
  int nin = kind == SIG_RUN ? g->ninputs : ninputs_all(e);
  for (int i = 0; i < nin; i++) {
    Node *n = &g->nodes[input_node(e, i)];
    out(b, "  memcpy(m->h_in[%d], %s, sizeof(%s) * (size_t)(%s));\n", i, e->var[input_node(e, i)],
        ctype(n->ty.dt), dimc(e, type_numel(&n->ty)));
  }
  out(b,
      "  int mlc_rc = mlcrt_cuda_graph_run(m->cu, %d, m->dims, %d, %s_enqueue_%s, m, m->err);\n  "
      "if "
      "(!mlc_rc) mlc_rc = mlcrt_cuda_sync(m->cu, m->err);\n  if (mlc_rc) return mlc_rc;\n",
      kind, g->nsym, e->M, fns[kind]);
  out(b,
      "  if (m->h_status[0] > 0 && m->h_status[0] <= NCHECKS)\n    return mlcrt_seterr(m->err, "
      "MLCRT_EINVAL, %s_checks[m->h_status[0] - 1], (long long)m->h_status[1]);\n",
      e->M);
  if (kind != SIG_RUN) out(b, "  *loss = *m->h_loss;\n");
  if (kind == SIG_TRAIN)
    out(b,
        "  if (!isfinite(*loss))\n    return mlcrt_seterr(m->err, MLCRT_ENUMERIC, \"%s_train_step: "
        "the loss is %%g; weights not updated\", (double)*loss);\n",
        e->M);
  if (kind != SIG_TRAIN)
    for (int i = 0; i < g->noutputs; i++) {
      int id = g->outputs[i].node;
      out(b, "  %smemcpy(%s, m->h_out[%d], sizeof(%s) * (size_t)(%s));\n",
          kind == SIG_EVAL ? arena_printf(e->A, "if (%s) ", outname(e, i)) : "", outname(e, i), i,
          ctype(g->nodes[id].ty.dt), dimc(e, type_numel(&g->nodes[id].ty)));
    }
  out(b, "  return MLCRT_OK;\n}\n\n");
}

static char *emit_cu(E *e, const char *header_name, CuPrecision prec) {
  Graph *g = e->g;
  const Plan *p = e->p, *tp = e->train;
  const char *M = e->M;
  Buf kern = {.A = e->A}, src = {.A = e->A}, checks = {.A = e->A};
  CU c = {.e = e, .kern = &kern, .checks = &checks};
  c.vars = arena_alloc(e->A, sizeof(char *) * (size_t)(g->n + 1));
  memcpy(c.vars, e->var, sizeof(char *) * (size_t)g->n);

  /* enqueue functions first: they produce the kernels */
  Buf enq = {.A = e->A};
  emit_enqueue(&c, &enq, SIG_RUN);
  if (tp) {
    emit_enqueue(&c, &enq, SIG_TRAIN);
    emit_enqueue(&c, &enq, SIG_EVAL);
  }
  e->p = p;

  out(&src, "/* %s.cu — generated by mlc from %s.  Do not edit.\n", M, g->source_path);
  out(&src,
      " * CUDA: one kernel per fusion group (or a kernel of mlcrt_kernels.cuh, or cuBLAS);\n");
  out(&src, " * run%s enqueue everything on the instance's stream and replay it as a CUDA graph.\n",
      tp ? ", the train step and evaluate" : "");
  if (prec == CU_PREC_TF32)
    out(&src, " * --precision tf32: cuBLAS GEMMs use TF32 tensor cores (float32 accumulation).\n");
  out(&src, " * The device part (up to #ifndef __CUDACC_RTC__) compiles with NVRTC alone. */\n");
  out(&src, "#include \"mlcrt_kernels.cuh\"\n\n");
  out(&src, "%s", kern.s ? kern.s : "");
  out(&src, "\n#ifndef __CUDACC_RTC__ /* ---- host code ---- */\n");
  out(&src,
      "#include \"%s\"\n#include <mlcrt_cuda.h>\n#include <cuda_runtime.h>\n\n#include "
      "<math.h>\n#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n\n",
      header_name);
  if (e->embed)
    out(&src,
        "/* The params and buffers embedded from %s (--embed-weights), laid out as\n   the weights "
        "region (the weights translation unit). */\nextern \"C\" const unsigned char "
        "%s_embedded_weights[];\n\n",
        e->embed, M);
  out(&src, "/* Blocks for n threads of MLCD_THREADS (grid-stride loops cover the rest). */\n");
  out(&src, "inline unsigned grid_for(int64_t n) {\n  int64_t b = (n + MLCD_THREADS - 1) / "
            "MLCD_THREADS;\n  return b < 1 ? 1u : b > (1 << 20) ? 1u << 20 : (unsigned)b;\n}\n");
  out(&src, "inline unsigned blocks_for(int64_t n) { return n < 1 ? 1u : n > (1 << 20) ? 1u << 20 "
            ": (unsigned)n; }\n");
  out(&src, "/* a failed launch or CUDA / cuBLAS call: its status (with m->err set) */\n");
  out(&src, "#define CHECK_LAUNCH(what) do { int rc_ = mlcrt_cuda_check_launch(what, m->err); if "
            "(rc_) return rc_; } while (0)\n");
  out(&src, "#define RT(call) do { int rc_ = (call); if (rc_) return rc_; } while (0)\n\n");

  out(&src,
      "/* Params and buffers: name, dtype, shape, offset in the weights region, initialiser. */\n");
  out(&src,
      "enum { NTENSORS = %d, NCKPT = %d, WEIGHT_BYTES = %zu, NBUFS = %d, NTBUFS = %d, NEBUFS = %d, "
      "NINPUTS = %d, NOUTPUTS = %d, NCHECKS = %d };\n",
      g->ntensors + g->nties, tp ? e->nckpt : g->ntensors + g->nties, e->weight_bytes, p->nbufs,
      tp ? tp->nbufs : 0, tp ? e->eval->nbufs : 0, ninputs_all(e), g->noutputs, c.nchecks);
  out(&src, "static const char *const %s_checks[%d] = {\n%s    \"\"};\n\n", M, c.nchecks + 1,
      checks.s ? checks.s : "");
  out(&src, "static const mlcrt_tensor_desc %s_tensors[%d] = {\n", M,
      g->ntensors + g->nties ? g->ntensors + g->nties : 1);
  for (int t = 0; t < g->ntensors; t++) {
    Node *n = &g->nodes[g->tensors[t]];
    emit_desc(e, &src, n->name, n->ty.dt, &n->ty, p->weight_off[g->tensors[t]], n->init, n->init_a,
              n->init_b);
  }
  emit_ties(e, &src);
  if (!g->ntensors) out(&src, "    {},\n");
  out(&src, "};\n\n");
  if (tp) {
    out(&src, "static const mlcrt_tensor_desc %s_checkpoint[NCKPT] = {\n", M);
    for (int t = 0; t < g->ntensors; t++) {
      Node *n = &g->nodes[g->tensors[t]];
      emit_desc(e, &src, n->name, n->ty.dt, &n->ty, p->weight_off[g->tensors[t]], n->init,
                n->init_a, n->init_b);
    }
    emit_ties(e, &src);
    static const char *slot_names[2][2] = {{"momentum_buffer", ""}, {"exp_avg", "exp_avg_sq"}};
    for (int t = 0; t < g->ntensors; t++) {
      Node *n = &g->nodes[g->tensors[t]];
      for (int k = 0; k < e->nslots && g->grads[t] >= 0; k++)
        emit_desc(
            e, &src,
            arena_printf(e->A, "optimizer.%s.%s", n->name, slot_names[g->opt.kind != OPT_SGD][k]),
            DT_F32, &n->ty, e->slot_off[t] + (k ? e->slot2_gap[t] : 0), INIT_ZEROS, 0, 0);
    }
    emit_desc(e, &src, "optimizer.step", DT_I64, NULL, e->step_off, INIT_ZEROS, 0, 0);
    out(&src, "};\n\n");
  }

  out(&src, "struct %s {\n", M);
  for (int s = 1; s <= g->nsym; s++) out(&src, "  int64_t max_%s;\n", g->sym[s]);
  out(&src, "  int64_t dims[%d]; /* the symbolic dims of the call in flight */\n",
      g->nsym ? g->nsym : 1);
  out(&src, "  mlcrt_cuda *cu;          /* device, stream, cuBLAS, memory, graphs */\n");
  out(&src, "  unsigned char *d_weights; /* device: WEIGHT_BYTES%s */\n",
      tp ? " (params, buffers, optimizer state)" : "");
  out(&src, "  unsigned char *d_arena;   /* device: activations, planned at create */\n");
  out(&src, "  int64_t *d_status;        /* device: a failed check and its value */\n");
  out(&src,
      "  unsigned char *h_weights; /* pinned: the weights region for load / save / init */\n");
  out(&src, "  int64_t *h_status;\n  float *h_loss;\n");
  out(&src, "  unsigned char *d_in[NINPUTS ? NINPUTS : 1], *h_in[NINPUTS ? NINPUTS : 1]; /* input "
            "slots and staging */\n");
  out(&src, "  unsigned char *h_out[NOUTPUTS ? NOUTPUTS : 1];     /* output staging */\n");
  out(&src, "  size_t off[NBUFS ? NBUFS : 1];\n");
  if (tp)
    out(&src, "  size_t toff[NTBUFS ? NTBUFS : 1], eoff[NEBUFS ? NEBUFS : 1];\n  uint64_t seed;\n");
  out(&src, "  char err[MLCRT_ERRLEN];\n};\n\n");
  out(&src, "%s", enq.s);

  out(&src,
      "/* The weights region between the device and its pinned mirror (load, save, init). */\n"
      "static int %s_pull(%s *m) {\n  int rc = mlcrt_cuda_d2h(m->cu, m->h_weights, m->d_weights, "
      "WEIGHT_BYTES, m->err);\n"
      "  return rc ? rc : mlcrt_cuda_sync(m->cu, m->err);\n}\n"
      "static int %s_push(%s *m) {\n  int rc = mlcrt_cuda_h2d(m->cu, m->d_weights, m->h_weights, "
      "WEIGHT_BYTES, m->err);\n"
      "  return rc ? rc : mlcrt_cuda_sync(m->cu, m->err);\n}\n\n",
      M, M, M, M);
  /* create */
  emit_create_signature(e, &src);
  out(&src, " {\n  char msg[MLCRT_ERRLEN];\n");
  for (int s = 1; s <= g->nsym; s++)
    out(&src,
        "  if (max_%s < 1 || max_%s > ((int64_t)1 << 40)) {\n    snprintf(msg, sizeof msg, "
        "\"%s_create: max_%s = %%lld is out of range (1..2^40)\", (long long)max_%s);\n    "
        "mlcrt_set_last_error(msg);\n    return NULL;\n  }\n",
        g->sym[s], g->sym[s], M, g->sym[s], g->sym[s]);
  out(&src,
      "  if (opts && opts->device != MLCRT_CUDA) {\n    mlcrt_set_last_error(\"%s_create: this "
      "model was compiled for CUDA (opts->device must be MLCRT_CUDA, or opts NULL); compile with "
      "-o %s.c for the CPU\");\n    return NULL;\n  }\n",
      M, M);
  out(&src, "  const int nthreads = 1; /* conv scratch sizes of the shared plan (unused on the "
            "GPU) */\n");
  const char **dnames = arena_alloc(e->A, sizeof(char *) * (MAX_SYMS + 1));
  for (int s = 1; s <= g->nsym; s++) {
    out(&src, "  const int64_t %s = max_%s;\n", g->sym[s], g->sym[s]);
    dnames[s] = arena_printf(e->A, "(double)%s", g->sym[s]);
  }
  Buf dbl = {.A = e->A}, items = {.A = e->A};
  e->off = "off";
  emit_items(e, &items, p, "items", &dbl, dnames);
  if (tp) {
    e->p = tp;
    emit_items(e, &items, tp, "titems", &dbl, dnames);
    e->p = e->eval;
    emit_items(e, &items, e->eval, "eitems", &dbl, dnames);
    e->p = p;
  }
  /* the plan's conv scratch buffers are the CPU kernels' (im2col): none on the GPU */
  for (char *q = items.s; (q = strstr(q, "mlcrt_conv2d_scratch("));) {
    int depth = 0;
    char *r = q + strlen("mlcrt_conv2d_scratch");
    do depth += *r == '(' ? 1 : *r == ')' ? -1 : 0;
    while (*++r && depth);
    const char *zero = "(size_t)0";
    size_t zl = strlen(zero);
    memcpy(q, zero, zl);
    memmove(q + zl, r, strlen(r) + 1);
    q += zl;
  }
  out(&src, "%s", items.s);
  if (dbl.len)
    out(&src,
        "  if (%s > 1e14) {\n    mlcrt_set_last_error(\"%s_create: the activations for these "
        "maximum dims would need over 100 TB\");\n    return NULL;\n  }\n",
        dbl.s, M);
  out(&src, "  (void)nthreads;\n");
  out(&src, "  size_t arena_bytes = mlcrt_plan(items, NBUFS, 256);\n");
  if (tp)
    out(&src,
        "  size_t tb = mlcrt_plan(titems, NTBUFS, 256), eb = mlcrt_plan(eitems, NEBUFS, 256);\n  "
        "if (tb > arena_bytes) arena_bytes = tb;\n  if (eb > arena_bytes) arena_bytes = eb;\n");
  out(&src, "  arena_bytes = (arena_bytes + 255) / 256 * 256;\n");
  out(&src, "  /* inputs and outputs at the maximum dims */\n  size_t in_bytes[NINPUTS ? NINPUTS : "
            "1] = {0}, out_bytes[NOUTPUTS ? NOUTPUTS : 1] = {0};\n");
  for (int i = 0; i < ninputs_all(e); i++) {
    Node *n = &g->nodes[input_node(e, i)];
    out(&src, "  in_bytes[%d] = ((size_t)(%s) * %zu + 255) / 256 * 256;\n", i,
        dimc(e, type_numel(&n->ty)), dtype_size(n->ty.dt));
  }
  for (int i = 0; i < g->noutputs; i++) {
    Node *n = &g->nodes[g->outputs[i].node];
    out(&src, "  out_bytes[%d] = ((size_t)(%s) * %zu + 255) / 256 * 256;\n", i,
        dimc(e, type_numel(&n->ty)), dtype_size(n->ty.dt));
  }
  for (int s = 1; s <= g->nsym; s++) out(&src, "  (void)%s;\n", g->sym[s]);
  out(&src, "  const size_t wbytes = ((size_t)WEIGHT_BYTES + 255) / 256 * 256;\n");
  out(&src, "  size_t dev = wbytes + arena_bytes + 256, host = wbytes + 256;\n");
  out(&src, "  for (int i = 0; i < NINPUTS; i++) dev += in_bytes[i], host += in_bytes[i];\n");
  out(&src, "  for (int i = 0; i < NOUTPUTS; i++) host += out_bytes[i];\n");
  out(&src,
      "  %s *m = (%s *)calloc(1, sizeof *m);\n  if (!m) {\n    mlcrt_set_last_error(\"%s_create: "
      "out of memory\");\n    return NULL;\n  }\n",
      M, M, M);
  for (int s = 1; s <= g->nsym; s++) out(&src, "  m->max_%s = max_%s;\n", g->sym[s], g->sym[s]);
  out(&src, "  m->cu = mlcrt_cuda_create(opts, dev, host, %s, msg);\n",
      prec == CU_PREC_TF32 ? "MLCRT_PRECISION_TF32 /* --precision tf32 */" : "MLCRT_PRECISION_F32");
  out(&src,
      "  if (!m->cu) {\n    char full[MLCRT_ERRLEN + 64];\n    snprintf(full, sizeof full, "
      "\"%s_create: %%s\", msg);\n    mlcrt_set_last_error(full);\n    free(m);\n    return "
      "NULL;\n  }\n",
      M);
  out(&src,
      "  unsigned char *d = mlcrt_cuda_device_base(m->cu), *hp = mlcrt_cuda_host_base(m->cu);\n");
  out(&src, "  m->d_weights = d, d += wbytes;\n  m->d_arena = d, d += arena_bytes;\n  m->d_status "
            "= (int64_t *)d, d += 256;\n");
  out(&src, "  m->h_weights = hp, hp += wbytes;\n  m->h_status = (int64_t *)hp;\n  m->h_loss = "
            "(float *)(hp + 64);\n  hp += 256;\n");
  out(&src, "  for (int i = 0; i < NINPUTS; i++) m->d_in[i] = d, d += in_bytes[i], m->h_in[i] = "
            "hp, hp += in_bytes[i];\n");
  out(&src, "  for (int i = 0; i < NOUTPUTS; i++) m->h_out[i] = hp, hp += out_bytes[i];\n");
  out(&src, "  for (int i = 0; i < NBUFS; i++) m->off[i] = items[i].offset;\n");
  if (tp)
    out(&src, "  for (int i = 0; i < NTBUFS; i++) m->toff[i] = titems[i].offset;\n  for (int i = "
              "0; i < NEBUFS; i++) m->eoff[i] = eitems[i].offset;\n");
  if (e->embed) {
    out(&src,
        "  memcpy(m->h_weights, %s_embedded_weights, %zu); /* the embedded weights until init or "
        "load */\n",
        M, p->weight_bytes);
    out(&src,
        "  if (%s_push(m)) {\n    mlcrt_set_last_error(m->err);\n    %s_destroy(m);\n    return "
        "NULL;\n  }\n",
        M, M);
  }
  out(&src, "  return m;\n}\n\n");
  out(&src,
      "void %s_destroy(%s *m) {\n  if (!m) return;\n  mlcrt_cuda_destroy(m->cu);\n  "
      "free(m);\n}\n\n",
      M, M);
  out(&src, "const char *%s_last_error(const %s *m) { return m ? m->err : \"NULL instance\"; }\n\n",
      M, M);
  const char *reset =
      tp ? arena_printf(
               e->A,
               "  memset(m->h_weights + %zu, 0, WEIGHT_BYTES - %zu); /* a fresh optimizer */\n",
               p->weight_bytes, p->weight_bytes)
         : "";
  out(&src,
      "int %s_load(%s *m, const char *safetensors_path) {\n  if (!m) return MLCRT_EINVAL;\n  if "
      "(!safetensors_path) return mlcrt_seterr(m->err, MLCRT_EINVAL, \"%s_load: NULL path\");\n"
      "  int rc = %s_pull(m);\n  if (rc) return rc;\n%s  rc = "
      "mlcrt_load_safetensors(safetensors_path, %s_tensors, NTENSORS, m->h_weights, m->err);\n  "
      "return rc ? rc : %s_push(m);\n}\n\n",
      M, M, M, M, reset, M, M);
  out(&src,
      "int %s_save(const %s *m, const char *safetensors_path) {\n  if (!m || !safetensors_path) "
      "return MLCRT_EINVAL;\n  int rc = %s_pull((%s *)m);\n"
      "  return rc ? rc : mlcrt_save_safetensors(safetensors_path, %s_tensors, NTENSORS, "
      "m->h_weights, (char *)m->err);\n}\n\n",
      M, M, M, M, M);
  out(&src,
      "int %s_init(%s *m, uint64_t seed) {\n  if (!m) return MLCRT_EINVAL;\n  int rc = "
      "%s_pull(m);\n  if (rc) return rc;\n%s%s  rc = mlcrt_init_tensors(%s_tensors, NTENSORS, "
      "m->h_weights, seed);\n  return rc ? rc : %s_push(m);\n}\n\n",
      M, M, M, reset, tp ? "  m->seed = seed;\n" : "", M, M);
  if (tp) {
    out(&src,
        "int %s_set_seed(%s *m, uint64_t seed) {\n  if (!m) return MLCRT_EINVAL;\n  m->seed = "
        "seed;\n  return MLCRT_OK;\n}\n\n",
        M, M);
    out(&src,
        "int %s_save_checkpoint(const %s *m, const char *path) {\n  if (!m || !path) return "
        "MLCRT_EINVAL;\n  int rc = %s_pull((%s *)m);\n"
        "  return rc ? rc : mlcrt_save_safetensors(path, %s_checkpoint, NCKPT, m->h_weights, (char "
        "*)m->err);\n}\n\n",
        M, M, M, M, M);
    out(&src,
        "int %s_load_checkpoint(%s *m, const char *path) {\n  if (!m) return MLCRT_EINVAL;\n  if "
        "(!path) return mlcrt_seterr(m->err, MLCRT_EINVAL, \"%s_load_checkpoint: NULL path\");\n"
        "  int rc = %s_pull(m);\n  if (rc) return rc;\n  rc = mlcrt_load_safetensors(path, "
        "%s_checkpoint, NCKPT, m->h_weights, m->err);\n  return rc ? rc : %s_push(m);\n}\n\n",
        M, M, M, M, M, M);
    out(&src,
        "int64_t %s_step(const %s *m) {\n  if (!m || %s_pull((%s *)m)) return 0;\n  return *(const "
        "int64_t *)(m->h_weights + %zu);\n}\n\n",
        M, M, M, M, e->step_off);
  }
  out(&src, "/* The generated API, as the C backend's (spec section 7). */\n");
  emit_entry(&c, &src, SIG_RUN);
  if (tp) {
    emit_entry(&c, &src, SIG_TRAIN);
    emit_entry(&c, &src, SIG_EVAL);
  }
  out(&src, "#endif /* __CUDACC_RTC__ */\n");
  return src.s;
}

EmitC emitcu_model(Graph *g, const Plan *p, const Plan *train, const Plan *eval,
                   const char *header_name, const char *embed) {
  return emitcu_model_prec(g, p, train, eval, header_name, embed, CU_PREC_F32);
}

EmitC emitcu_model_prec(Graph *g, const Plan *p, const Plan *train, const Plan *eval,
                        const char *header_name, const char *embed, CuPrecision prec) {
  E e;
  emitc_setup(&e, g, p, train, eval, embed);
  e.cuda = true;
  EmitC r;
  r.h = emit_header(&e);
  r.c = emit_cu(&e, header_name, prec);
  r.harness = emit_harness(&e, header_name);
  r.train_harness = NULL;
  r.train_why = "the model has no train step";
  if (train) r.train_harness = emit_train_harness(&e, header_name, &r.train_why);
  return r;
}
