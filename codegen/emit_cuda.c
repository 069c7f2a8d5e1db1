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
  /* the launch program (emitcu_prog): every launch, GEMM, copy, memset and
   * check below is written as host code and appended as a step by the same
   * call (the layer below), so the AOT host code and the JIT cannot drift */
  CuProg *prog;
  int fi; /* CUF_RUN / CUF_TRAIN / CUF_EVAL: the step list in use */
  int capsteps[3];
  int capkern;
  int *ptr_of; /* per node: the node whose pointer it uses (an epilogue's producer: the root) */
  int cond;    /* condition of the steps being emitted (CuStep.cond) */
  Dim cond_dim;
} CU;

/* ---- the launch layer: host code and launch-program steps from one call ---------------- */
/* Arguments with their host-code text. */
typedef struct ArgList {
  CuArg a[48];
  const char *t[48];
  int n;
} ArgList;

static CuArg *arg_push(ArgList *al, CuArgKind kind, const char *text) {
  CuArg *a = &al->a[al->n];
  memset(a, 0, sizeof *a);
  a->kind = kind;
  al->t[al->n++] = text;
  return a;
}

static int input_index(E *e, int id);

/* A pointer argument to node id's value (elem_off elements in, count elements
 * reachable; count < 0: the whole value). */
static void arg_node_at(CU *c, ArgList *al, int id, Dim elem_off, Dim count, const char *text) {
  E *e = c->e;
  const Node *n = &e->g->nodes[id];
  CuArg *a = arg_push(al, CUA_PTR, text);
  size_t es = dtype_size(n->ty.dt);
  a->bytes = dim_mul(count.bad ? type_numel(&n->ty) : count, dim_const((int64_t)es));
  int at = c->ptr_of[id];
  while (e->p->storage[at] == ST_ALIAS) at = e->g->nodes[at].in[0];
  a->val = dim_mul(elem_off, dim_const((int64_t)es));
  switch (e->p->storage[at]) {
  case ST_WEIGHT:
    a->base = CUB_WEIGHTS;
    a->val = dim_add(a->val, dim_const((int64_t)e->p->weight_off[at]));
    break;
  case ST_ARENA:
    a->base = CUB_ARENA;
    a->index = e->p->buf[at];
    break;
  case ST_INPUT:
    a->base = CUB_INPUT;
    a->index = input_index(e, at);
    break;
  default:
    a->base = CUB_NULL; /* not stored: an emitter bug the launch check reports */
    a->bytes = dim_const(0);
  }
}
static void arg_node(CU *c, ArgList *al, int id) {
  Dim whole = {.bad = true};
  arg_node_at(c, al, id, dim_const(0), whole, c->vars[id]);
}
static void arg_null(ArgList *al) {
  CuArg *a = arg_push(al, CUA_PTR, "NULL");
  a->base = CUB_NULL;
}
static void arg_status(ArgList *al) {
  CuArg *a = arg_push(al, CUA_PTR, "m->d_status");
  a->base = CUB_STATUS;
  a->bytes = dim_const(CU_STATUS_WORDS * sizeof(int64_t));
}
/* m->d_weights + off (the step counter, optimizer slots, params by offset) */
static void arg_weights(ArgList *al, size_t off, size_t bytes, const char *text) {
  CuArg *a = arg_push(al, CUA_PTR, text);
  a->base = CUB_WEIGHTS;
  a->val = dim_const((int64_t)off);
  a->bytes = dim_const((int64_t)bytes);
}
static void arg_i64(CU *c, ArgList *al, Dim d) {
  arg_push(al, CUA_I64, dimc(c->e, d))->val = d;
}
static void arg_i32(CU *c, ArgList *al, int v) {
  arg_push(al, CUA_I32, arena_printf(c->e->A, "%d", v))->val = dim_const(v);
}
static void arg_f32(ArgList *al, double f, const char *text) {
  arg_push(al, CUA_F32, text)->f = f;
}
static void arg_f64(CU *c, ArgList *al, double f) {
  arg_push(al, CUA_F64, arena_printf(c->e->A, "%.17g", f))->f = f;
}
static void arg_struct(CU *c, ArgList *al, const ArgList *fields, const char *text) {
  CuArg *a = arg_push(al, CUA_STRUCT, text);
  a->nfields = fields->n;
  a->fields = arena_alloc(c->e->A, sizeof(CuArg) * (size_t)(fields->n + 1));
  memcpy(a->fields, fields->a, sizeof(CuArg) * (size_t)fields->n);
}
static const char *arg_text(CU *c, const ArgList *al) {
  Buf b = {.A = c->e->A};
  for (int i = 0; i < al->n; i++) out(&b, "%s%s", i ? ", " : "", al->t[i]);
  return b.len ? b.s : "";
}

static CuStep *step_new(CU *c, CuStepKind kind, const char *what, const ArgList *al) {
  CuProg *pr = c->prog;
  int f = c->fi;
  if (pr->nsteps[f] == c->capsteps[f]) {
    c->capsteps[f] = c->capsteps[f] ? 2 * c->capsteps[f] : 64;
    CuStep *ns = arena_alloc(c->e->A, sizeof(CuStep) * (size_t)c->capsteps[f]);
    if (pr->nsteps[f]) memcpy(ns, pr->steps[f], sizeof(CuStep) * (size_t)pr->nsteps[f]);
    pr->steps[f] = ns;
  }
  CuStep *s = &pr->steps[f][pr->nsteps[f]++];
  memset(s, 0, sizeof *s);
  s->kind = kind;
  s->what = what;
  s->cond = c->cond;
  s->cond_dim = c->cond_dim;
  if (al && al->n) {
    s->nargs = al->n;
    s->args = arena_alloc(c->e->A, sizeof(CuArg) * (size_t)al->n);
    memcpy(s->args, al->a, sizeof(CuArg) * (size_t)al->n);
  }
  return s;
}

/* The index of kernel name expression `name` in the program. */
static int kernel_index(CU *c, const char *name) {
  CuProg *pr = c->prog;
  for (int i = 0; i < pr->nkernels; i++)
    if (strcmp(pr->kernels[i], name) == 0) return i;
  if (pr->nkernels == c->capkern) {
    c->capkern = c->capkern ? 2 * c->capkern : 64;
    const char **nk = arena_alloc(c->e->A, sizeof(char *) * (size_t)c->capkern);
    if (pr->nkernels) memcpy(nk, pr->kernels, sizeof(char *) * (size_t)pr->nkernels);
    pr->kernels = nk;
  }
  pr->kernels[pr->nkernels] = name;
  return pr->nkernels++;
}

/* A kernel launch: `name` (a generated kernel, or a template of the kernels
 * header as "mlcd_x<float>") on grid `grid` (CUG_*) over n, `block` threads. */
static void launch(CU *c, Buf *h, const char *what, const char *name, int grid, Dim n, int block,
                   const ArgList *al) {
  E *e = c->e;
  const char *gt = grid == CUG_THREADS  ? arena_printf(e->A, "grid_for(%s)", dimc(e, n))
                   : grid == CUG_BLOCKS ? arena_printf(e->A, "blocks_for(%s)", dimc(e, n))
                   : grid == CUG_BLOCKS_256
                       ? arena_printf(e->A, "blocks_for(((%s) + 255) / 256)", dimc(e, n))
                       : "1";
  out(h, "  %s<<<%s, %s, 0, mlc_stream>>>(%s);\n  CHECK_LAUNCH(\"%s\");\n", name, gt,
      block == 256 ? "MLCD_THREADS" : arena_printf(e->A, "%d", block), arg_text(c, al), what);
  CuStep *s = step_new(c, CUS_LAUNCH, what, al);
  s->fn = kernel_index(c, name);
  s->grid = grid;
  s->n = n;
  s->block = block;
}

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

/* text with the kernel's parameters (names[0..n-1]) renamed mlc_p0, mlc_p1, ...
 * and its locals mlc_v<node> renamed mlc_l0, mlc_l1, ... in order of first
 * use: the same computation on other tensors (every layer of a transformer,
 * every optimizer update of one size) becomes the same text, hence one
 * kernel.  (GPT-2 small's train step had 530 kernels, 4.5 MB of PTX and a
 * 46 s cold JIT start on an H200.) */
static bool ident_char(char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
         ch == '_';
}
static const char *canonical_names(Arena *A, const char *text, const char *const *names, int n) {
  Buf b = {.A = A};
  out(&b, "%s", "");
  const char **locals = NULL;
  int nloc = 0, cap = 0;
  for (const char *p = text; *p;) {
    if (!ident_char(*p) || (p > text && ident_char(p[-1]))) {
      out(&b, "%c", *p++);
      continue;
    }
    size_t len = 0;
    while (ident_char(p[len])) len++;
    /* a member (threadIdx.x, p.N, a->b) is not a variable */
    const bool member =
        p > text && (p[-1] == '.' || (p[-1] == '>' && p - 1 > text && p[-2] == '-'));
    if (member) {
      out(&b, "%.*s", (int)len, p);
      p += len;
      continue;
    }
    int param = -1;
    for (int i = 0; i < n && param < 0; i++)
      if (strlen(names[i]) == len && strncmp(names[i], p, len) == 0) param = i;
    bool local = len > 5 && strncmp(p, "mlc_v", 5) == 0 && p[5] >= '0' && p[5] <= '9';
    for (size_t j = 5; local && j < len; j++) local = p[j] >= '0' && p[j] <= '9';
    if (param >= 0) {
      out(&b, "mlc_p%d", param);
    } else if (local) {
      int l = -1;
      for (int i = 0; i < nloc && l < 0; i++)
        if (strlen(locals[i]) == len && strncmp(locals[i], p, len) == 0) l = i;
      if (l < 0) {
        if (nloc == cap) {
          cap = cap ? 2 * cap : 16;
          const char **nl = arena_alloc(A, sizeof(char *) * (size_t)cap);
          if (nloc) memcpy(nl, locals, sizeof(char *) * (size_t)nloc);
          locals = nl;
        }
        locals[nloc] = arena_printf(A, "%.*s", (int)len, p);
        l = nloc++;
      }
      out(&b, "mlc_l%d", l);
    } else {
      out(&b, "%.*s", (int)len, p);
    }
    p += len;
  }
  return b.s;
}

/* The name of a kernel already written with this text (after the name), or NULL. */
static const char *known_kernel(const CU *c, const char *text) {
  for (int i = 0; i < c->nk; i++)
    if (strcmp(c->kbodies[i], text) == 0) return c->knames[i];
  return NULL;
}

/* A kernel written (its text after the name): later identical ones reuse it. */
static void remember_kernel(CU *c, const char *text, const char *name) {
  if (c->nk == c->capk) {
    c->capk = c->capk ? 2 * c->capk : 64;
    char **nb = arena_alloc(c->e->A, sizeof(char *) * (size_t)c->capk);
    const char **nn = arena_alloc(c->e->A, sizeof(char *) * (size_t)c->capk);
    if (c->nk)
      memcpy(nb, c->kbodies, sizeof(char *) * (size_t)c->nk),
          memcpy(nn, c->knames, sizeof(char *) * (size_t)c->nk);
    c->kbodies = nb, c->knames = nn;
  }
  c->kbodies[c->nk] = (char *)text, c->knames[c->nk++] = name;
}

/* Emits kernel `body` (a statement list using the parameters) over `n`
 * elements (n <= 0: the body loops itself) and its launch; identical kernels
 * are emitted once. */
static void kernel(CU *c, Buf *h, const char *what, KArgs *k, const char *body, Dim threads,
                   const char *tag) {
  E *e = c->e;
  Buf sig = {.A = e->A};
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
  }
  if (k->status) out(&sig, "%sint64_t *__restrict__ mlc_status", sig.len ? ", " : "");
  const char **pnames = arena_alloc(e->A, sizeof(char *) * (size_t)(k->n + 1));
  for (int i = 0; i < k->n; i++) pnames[i] = c->vars[k->ids[i]];
  const char *text = canonical_names(
      e->A, arena_printf(e->A, "(%s%s) {\n%s}\n", sig.len ? sig.s : "", sym_params(e), body),
      pnames, k->n);
  const char *name = known_kernel(c, text);
  if (!name) {
    name = arena_printf(e->A, "%s_%s_%s%d", e->M, c->fn, tag, c->nk);
    remember_kernel(c, text, name);
    out(c->kern, "/* %s */\nstatic __global__ void %s%s\n", what, name, text);
  }
  ArgList al = {.n = 0};
  for (int i = 0; i < k->n; i++) arg_node(c, &al, k->ids[i]);
  if (k->status) arg_status(&al);
  for (int s = 1; s <= e->g->nsym; s++) arg_push(&al, CUA_I64, e->g->sym[s])->val = dim_sym(s);
  launch(c, h, what, name, CUG_THREADS, threads, 256, &al);
}

static void host_check(CU *c, Buf *h, const char *what, int st, int n, const Dim *lo, const Dim *hi,
                       const char *msg, int nv, const Dim *vals);

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
  kernel(c, h, what, &k, b.s, type_numel(o), "elem");
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
  kernel(c, h, what, &k, b.s, dim_mul(type_numel(&kept), dim_const(32)), "reduce");
}

/* ---- movement and indexing: one thread per output element ------------------------------ */
/* A kernel writing y[i] = EXPR over the output's flat index, with i0.. available. */
static void emit_gather_kernel(CU *c, Buf *h, int id, KArgs *k, const Type *over, const char *pre,
                               const char *expr, const char *what, const char *tag) {
  E *e = c->e;
  Buf b = {.A = e->A};
  out(&b, "  MLCD_FOR(i, %s) {\n%s%s    %s[i] = %s;\n  }\n", dimc(e, type_numel(over)),
      unflatten(e, over, "i"), pre ? pre : "", c->vars[id], expr);
  kernel(c, h, what, k, b.s, type_numel(over), tag);
}

/* A check failing on the device: its number, with the message (one %lld for the value). */
static int device_check(CU *c, const char *msg) {
  out(c->checks, "    \"%s\",\n", msg);
  CuProg *pr = c->prog;
  const char **nc = arena_alloc(c->e->A, sizeof(char *) * (size_t)(pr->nchecks + 1));
  if (pr->nchecks) memcpy(nc, pr->checks, sizeof(char *) * (size_t)pr->nchecks);
  nc[pr->nchecks++] = msg;
  pr->checks = nc;
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
  kernel(c, h, what, &k, b.s, type_numel(o), "concat");
}

static void emit_slice(CU *c, Buf *h, int id, const char *what) {
  E *e = c->e;
  Node *n = &e->g->nodes[id];
  const Type *x = &e->g->nodes[n->in[0]].ty;
  int kd = (int)n->ia[1];
  Dim inner = dims_prod(x, kd + 1, x->rank);
  const char *s = dimc(e, n->da[2]), *size = dimc(e, x->dim[kd]);
  Dim lo[3] = {dim_const(0), n->da[2], n->da[3]}, hi[3] = {n->da[2], n->da[3], x->dim[kd]};
  Dim clo[3], chi[3];
  int nc = 0;
  for (int q = 0; q < 3 && n->ia[2]; q++) {
    Dim diff = dim_sub(hi[q], lo[q]);
    bool proven = true;
    for (int t = 0; t < diff.n; t++) proven &= diff.t[t].c >= 0;
    if (!proven) clo[nc] = lo[q], chi[nc++] = hi[q];
  }
  if (nc) {
    const Dim vals[3] = {n->da[2], n->da[3], x->dim[kd]};
    host_check(c, h, what, MLCRT_ESHAPE, nc, clo, chi,
               arena_printf(e->A,
                            "%s: slice: start %%lld and end %%lld must satisfy 0 <= start <= end "
                            "<= %%lld (the size of dim %d of %s)",
                            node_where(e, n), kd, type_str(e->A, e->g, x)),
               3, vals);
  }
  const char *run = dimc(e, dim_mul(n->ty.dim[kd], inner));
  KArgs k = {.n = 0};
  karg(&k, id, true), karg(&k, n->in[0], false);
  Buf b = {.A = e->A};
  out(&b,
      "  MLCD_FOR(i, %s) {\n    const int64_t i0 = i / (%s), mlc_j = i %% (%s);\n    %s[i] = "
      "%s[(i0*(%s) + (%s))*(%s) + mlc_j];\n  }\n",
      dimc(e, type_numel(&n->ty)), run, run, c->vars[id], c->vars[n->in[0]], size, s,
      dimc(e, inner));
  kernel(c, h, what, &k, b.s, type_numel(&n->ty), "slice");
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
  kernel(c, h, what, &k, b.s, type_numel(x), "slice_dx");
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
  int chk = device_check(
      c, arena_printf(e->A,
                      "%s: gather: index %%lld is out of range for dim %d of %s (valid 0..%%lld)",
                      node_where(e, n), kd, type_str(e->A, e->g, x)));
  KArgs k = {.n = 0};
  karg(&k, id, true), karg(&k, n->in[0], false), karg(&k, n->in[1], false);
  const char *pre = arena_printf(e->A,
                                 "    int64_t v = %s[i];\n    if (v < 0 || v >= (%s)) { "
                                 "mlcd_fail(mlc_status, %d, v, (%s) - 1); v = 0; }\n",
                                 c->vars[n->in[1]], dimc(e, x->dim[kd]), chk, dimc(e, x->dim[kd]));
  Buf b = {.A = e->A};
  out(&b, "  MLCD_FOR(i, %s) {\n%s%s    %s[i] = %s[%s];\n  }\n", dimc(e, type_numel(o)),
      unflatten(e, o, "i"), pre, c->vars[id], c->vars[n->in[0]], idx.len ? idx.s : "0");
  k.status = true;
  kernel(c, h, what, &k, b.s, type_numel(o), "gather");
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
      c,
      emb ? arena_printf(
                e->A, "%s: embedding: id %%lld is out of range for the table %s (valid 0..%%lld)",
                node_where(e, n), xts)
          : arena_printf(
                e->A,
                "%s: index_select: index %%lld is out of range for dim %d of %s (valid 0..%%lld)",
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
      "    int64_t v = %s[mlc_j];\n    if (v < 0 || v >= (%s)) { mlcd_fail(mlc_status, %d, v, (%s) "
      "- 1); "
      "v = 0; }\n"
      "    %s[i] = %s[(o*(%s) + v)*(%s) + mlc_t];\n  }\n",
      dimc(e, type_numel(&n->ty)), inner, inner, nidx, inner, nidx, c->vars[ii], size, chk, size,
      c->vars[id], c->vars[xi], size, inner);
  kernel(c, h, what, &k, b.s, type_numel(&n->ty), "index_select");
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
  kernel(c, h, what, &k, b.s, type_numel(x), "interpolate_dx");
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
  kernel(c, h, what, &k, b.s,
         dim_mul(dims_prod(x, 0, x->rank ? kd : 0), dims_prod(x, kd + 1, x->rank)), "cumsum");
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
  kernel(c, h, what, &k, b.s, type_numel(&kept), "reduce_dx");
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
  kernel(c, h, what, &k, b.s, type_numel(x), "gather_dx");
}

/* ---- calls into the kernels header and cuBLAS ------------------------------------------ */
/* A pointer to node id, or NULL when id < 0. */
static void arg_opt(CU *c, ArgList *al, int id) {
  if (id < 0)
    arg_null(al);
  else
    arg_node(c, al, id);
}
/* Dims as int64 arguments. */
static void arg_dims(CU *c, ArgList *al, int n, const Dim *d) {
  for (int i = 0; i < n; i++) arg_i64(c, al, d[i]);
}

/* The fields of an mlcd_conv (16 int64) and the initializer text. */
static const char *conv_fields(CU *c, ArgList *f, const Dim *d9, const int64_t *k7) {
  arg_dims(c, f, 9, d9);
  for (int i = 0; i < 7; i++) arg_i64(c, f, dim_const(k7[i]));
  return arena_printf(c->e->A, "{%s}", arg_text(c, f));
}

/* A launch of a kernels-header template over `threads` threads. */
static void call(CU *c, Buf *h, const char *what, const char *kern, Dim threads,
                 const ArgList *al) {
  launch(c, h, what, arena_printf(c->e->A, "%s<float>", kern), CUG_THREADS, threads, 256, al);
}
/* ... over `blocks` blocks (block-per-channel kernels). */
static void call_blocks(CU *c, Buf *h, const char *what, const char *kern, Dim blocks,
                        const ArgList *al) {
  launch(c, h, what, arena_printf(c->e->A, "%s<float>", kern), CUG_BLOCKS, blocks, 256, al);
}

/* C[M,N] = op(A) op(B) (row-major, float) through cuBLAS: nodes a, b, y. */
static void gemm(CU *c, Buf *h, const char *what, int ta, int tb, Dim M, Dim N, Dim K, int a,
                 Dim lda, int b, Dim ldb, int y, Dim ldc) {
  E *e = c->e;
  ArgList al = {.n = 0};
  arg_node(c, &al, a), arg_node(c, &al, b), arg_node(c, &al, y);
  out(h,
      "  RT(mlcrt_cuda_sgemm(m->cu, %d, %d, %s, %s, %s, 1.0f, %s, %s, %s, %s, 0.0f, %s, %s, "
      "m->err));\n",
      ta, tb, dimc(e, M), dimc(e, N), dimc(e, K), al.t[0], dimc(e, lda), al.t[1], dimc(e, ldb),
      al.t[2], dimc(e, ldc));
  CuStep *s = step_new(c, CUS_GEMM, what, &al);
  s->trans_a = ta, s->trans_b = tb, s->alpha = 1.0f, s->beta = 0.0f;
  const Dim g6[6] = {M, N, K, lda, ldb, ldc};
  memcpy(s->gemm, g6, sizeof g6);
}

/* Zeroes `count` floats from a pointer argument (al: one). */
static void memset_f32(CU *c, Buf *h, const char *what, const ArgList *al, Dim count) {
  out(h, "  RT(mlcrt_cuda_memset(m->cu, %s, 0, sizeof(float) * (size_t)(%s), m->err));\n", al->t[0],
      dimc(c->e, count));
  step_new(c, CUS_MEMSET, what, al)->n = dim_mul(count, dim_const(sizeof(float)));
}

/* A check on the host before launching: lo[i] <= hi[i], else the message
 * (a printf format taking vals as long long) with status st. */
static void host_check(CU *c, Buf *h, const char *what, int st, int n, const Dim *lo, const Dim *hi,
                       const char *msg, int nv, const Dim *vals) {
  E *e = c->e;
  Buf cond = {.A = e->A}, args = {.A = e->A};
  for (int i = 0; i < n; i++)
    out(&cond, "%s%s <= %s", i ? " && " : "", dimc(e, lo[i]), dimc(e, hi[i]));
  for (int i = 0; i < nv; i++) out(&args, ", (long long)(%s)", dimc(e, vals[i]));
  out(h, "  if (!(%s))\n    return mlcrt_seterr(m->err, %s, \"%s\"%s);\n", cond.s,
      st == MLCRT_ESHAPE ? "MLCRT_ESHAPE" : "MLCRT_EINVAL", msg, args.len ? args.s : "");
  CuStep *s = step_new(c, CUS_CHECK, what, NULL);
  s->index = st;
  s->ncheck = n;
  s->nvals = nv;
  s->msg = msg;
  for (int i = 0; i < n; i++) s->lo[i] = lo[i], s->hi[i] = hi[i];
  for (int i = 0; i < nv; i++) s->vals[i] = vals[i];
}

static int label_dt(DType t) {
  return t == DT_U8 ? 5 : t == DT_I32 ? 3 : 4;
}

static void emit_call_op(CU *c, Buf *h, int id, const char *what) {
  E *e = c->e;
  Graph *g = e->g;
  Node *n = &g->nodes[id];
  const int x = n->nin ? n->in[0] : -1;
  const Type *xt = n->nin ? &g->nodes[n->in[0]].ty : NULL;
  const char *eps = literal(e, n->fa[0], DT_F32);
  ArgList al = {.n = 0};
  switch (n->op) {
  case OP_MATMUL: {
    const Type *wt = &g->nodes[n->in[1]].ty;
    arg_node(c, &al, x), arg_node(c, &al, n->in[1]), arg_node(c, &al, id);
    out(h, "  {\n    const int64_t as[] = {");
    for (int i = 0; i < xt->rank; i++) out(h, "%s%s", i ? ", " : "", dimc(e, xt->dim[i]));
    out(h, "}, bs[] = {");
    for (int i = 0; i < wt->rank; i++) out(h, "%s%s", i ? ", " : "", dimc(e, wt->dim[i]));
    out(h, "}, ys[] = {");
    for (int i = 0; i < n->ty.rank; i++) out(h, "%s%s", i ? ", " : "", dimc(e, n->ty.dim[i]));
    if (!n->ty.rank) out(h, "1");
    out(h,
        "};\n    RT(mlcrt_cuda_matmul(m->cu, %s, %d, as, %s, %d, bs, %s, %d, ys, m->err));\n  }\n",
        al.t[0], xt->rank, al.t[1], wt->rank, al.t[2], n->ty.rank);
    CuStep *s = step_new(c, CUS_MATMUL, what, &al);
    const Type *ts[3] = {xt, wt, &n->ty};
    for (int q = 0; q < 3; q++) {
      s->rank[q] = ts[q]->rank;
      for (int i = 0; i < ts[q]->rank; i++) s->shape[q][i] = ts[q]->dim[i];
    }
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
    gemm(c, h, what, 0, 1, M, wt->dim[0], K, x, K, n->in[1], K, id, wt->dim[0]);
    if (n->nin == 3) {
      arg_node(c, &al, id), arg_i64(c, &al, M), arg_i64(c, &al, wt->dim[0]);
      arg_node(c, &al, n->in[2]);
      call(c, h, what, "mlcd_add_bias", dim_mul(M, wt->dim[0]), &al);
    }
    return;
  }
  case OP_LINEAR_DW: { /* dW[N, K] = dy^T x */
    const Type *dt = &g->nodes[n->in[0]].ty;
    Dim Nd = n->ty.dim[0], K = n->ty.dim[1], M;
    if (!dim_div(type_numel(dt), Nd, &M)) M = dim_const(0);
    gemm(c, h, what, 1, 0, Nd, K, M, x, Nd, n->in[1], K, id, K);
    return;
  }
  case OP_CONV1D:
  case OP_CONV2D:
  case OP_CONV2D_DX:
  case OP_CONV2D_DW: {
    const char *k = n->op == OP_CONV2D_DX   ? "mlcd_conv2d_dx"
                    : n->op == OP_CONV2D_DW ? "mlcd_conv2d_dw"
                                            : "mlcd_conv2d";
    const Type *cx, *cw, *cy;
    int hh;
    conv_types(g, n, &cx, &cw, &cy, &hh);
    const Dim one = dim_const(1);
    const Dim d9[9] = {cx->dim[0],
                       cx->dim[1],
                       hh < 2 ? one : cx->dim[2],
                       cx->dim[hh + 1],
                       cw->dim[0],
                       hh < 2 ? one : cw->dim[2],
                       cw->dim[hh + 1],
                       hh < 2 ? one : cy->dim[2],
                       cy->dim[hh + 1]};
    ArgList f = {.n = 0};
    const char *init = conv_fields(c, &f, d9, n->ia);
    arg_struct(c, &al, &f, "cp");
    arg_node(c, &al, x), arg_node(c, &al, n->in[1]);
    if (n->op != OP_CONV2D_DX && n->op != OP_CONV2D_DW)
      arg_opt(c, &al, n->nin == 3 ? n->in[2] : -1);
    arg_node(c, &al, id);
    out(h, "  {\n    const mlcd_conv cp = %s;\n", init);
    if (n->op == OP_CONV2D_DW) /* a block per weight: see mlcd_conv2d_dw */
      call_blocks(c, h, what, k, type_numel(&n->ty), &al);
    else
      call(c, h, what, k, type_numel(&n->ty), &al);
    out(h, "  }\n");
    return;
  }
  case OP_CONV_TRANSPOSE2D:
  case OP_CONV_TRANSPOSE2D_DX:
  case OP_CONV_TRANSPOSE2D_DW: {
    const Type *xx = xt, *w = &g->nodes[n->in[1]].ty, *yy = &n->ty;
    const int64_t *a = n->ia;
    const char *k = "mlcd_conv_transpose2d";
    if (n->op != OP_CONV_TRANSPOSE2D) {
      bool dx = n->op == OP_CONV_TRANSPOSE2D_DX;
      yy = xt;
      xx = dx ? &n->ty : w;
      w = dx ? w : &n->ty;
      k = dx ? "mlcd_conv_transpose2d_dx" : "mlcd_conv_transpose2d_dw";
    }
    const Dim d9[9] = {xx->dim[0], xx->dim[1], xx->dim[2], xx->dim[3], yy->dim[1],
                       w->dim[2],  w->dim[3],  yy->dim[2], yy->dim[3]};
    const int64_t k7[7] = {a[0], a[1], a[2], a[3], a[7], a[8], a[6]};
    ArgList f = {.n = 0};
    const char *init = conv_fields(c, &f, d9, k7);
    arg_struct(c, &al, &f, "tp");
    arg_node(c, &al, x), arg_node(c, &al, n->in[1]);
    if (n->op == OP_CONV_TRANSPOSE2D) arg_opt(c, &al, n->nin == 3 ? n->in[2] : -1);
    arg_node(c, &al, id);
    out(h, "  {\n    const mlcd_conv tp = %s;\n", init);
    call(c, h, what, k, type_numel(&n->ty), &al);
    out(h, "  }\n");
    return;
  }
  case OP_MAX_POOL2D:
  case OP_AVG_POOL2D:
  case OP_MAX_POOL2D_DX:
  case OP_AVG_POOL2D_DX: {
    bool dx = n->op == OP_MAX_POOL2D_DX || n->op == OP_AVG_POOL2D_DX;
    const Type *in = dx ? &n->ty : xt, *ot = dx ? xt : &n->ty;
    ArgList f = {.n = 0};
    const Dim d6[6] = {in->dim[0], in->dim[1], in->dim[2], in->dim[3], ot->dim[2], ot->dim[3]};
    arg_dims(c, &f, 6, d6);
    for (int i = 0; i < 6; i++) arg_i64(c, &f, dim_const(n->ia[i]));
    arg_i32(c, &f, (int)n->ia[9]);
    out(h, "  {\n    const mlcd_pool pp = {%s};\n", arg_text(c, &f));
    const char *k = n->op == OP_MAX_POOL2D      ? "mlcd_max_pool2d"
                    : n->op == OP_AVG_POOL2D    ? "mlcd_avg_pool2d"
                    : n->op == OP_MAX_POOL2D_DX ? "mlcd_max_pool2d_dx"
                                                : "mlcd_avg_pool2d_dx";
    arg_struct(c, &al, &f, "pp");
    arg_node(c, &al, x);
    if (n->op == OP_MAX_POOL2D_DX) arg_node(c, &al, n->in[1]);
    arg_node(c, &al, id);
    call(c, h, what, k, type_numel(&n->ty), &al);
    out(h, "  }\n");
    return;
  }
  case OP_ADAPTIVE_AVG_POOL2D: {
    const Dim d6[6] = {xt->dim[0], xt->dim[1],          xt->dim[2],
                       xt->dim[3], dim_const(n->ia[0]), dim_const(n->ia[1])};
    arg_dims(c, &al, 6, d6);
    arg_node(c, &al, x), arg_node(c, &al, id);
    call(c, h, what, "mlcd_adaptive_avg_pool2d", type_numel(&n->ty), &al);
    return;
  }
  case OP_ADAPTIVE_AVG_POOL2D_DX: {
    const Dim d6[6] = {n->ty.dim[0], n->ty.dim[1], n->ty.dim[2],
                       n->ty.dim[3], xt->dim[2],   xt->dim[3]};
    arg_dims(c, &al, 6, d6);
    arg_node(c, &al, x), arg_node(c, &al, id);
    call(c, h, what, "mlcd_adaptive_avg_pool2d_dx", type_numel(&n->ty), &al);
    return;
  }
  case OP_SOFTMAX:
  case OP_LOG_SOFTMAX:
  case OP_SOFTMAX_DX:
  case OP_LOG_SOFTMAX_DX: {
    const Type *t = n->op == OP_SOFTMAX || n->op == OP_LOG_SOFTMAX ? xt : &n->ty;
    int d = (int)n->ia[1];
    Dim outer = dim_const(1), inner = dim_const(1), nd = t->rank ? t->dim[d] : dim_const(1);
    for (int q = 0; q < d; q++) outer = dim_mul(outer, t->dim[q]);
    for (int q = d + 1; q < t->rank; q++) inner = dim_mul(inner, t->dim[q]);
    int lg = n->op == OP_LOG_SOFTMAX || n->op == OP_LOG_SOFTMAX_DX;
    if (n->op == OP_SOFTMAX_DX || n->op == OP_LOG_SOFTMAX_DX) {
      arg_node(c, &al, x), arg_node(c, &al, n->in[1]);
      arg_i64(c, &al, outer), arg_i64(c, &al, nd), arg_i64(c, &al, inner), arg_i32(c, &al, lg);
      arg_node(c, &al, id);
      call(c, h, what, "mlcd_softmax_dx", dim_mul(dim_mul(outer, inner), dim_const(32)), &al);
    } else {
      out(h, "  if ((%s) == 1) {\n", dimc(e, inner));
      c->cond = 1, c->cond_dim = inner;
      arg_node(c, &al, x), arg_i64(c, &al, outer), arg_i64(c, &al, nd), arg_i32(c, &al, lg);
      arg_node(c, &al, id);
      call(c, h, what, "mlcd_softmax_rows", dim_mul(outer, dim_const(32)), &al);
      out(h, "  } else {\n");
      c->cond = 2;
      al.n = 0;
      arg_node(c, &al, x), arg_i64(c, &al, outer), arg_i64(c, &al, nd), arg_i64(c, &al, inner);
      arg_i32(c, &al, lg), arg_node(c, &al, id);
      call(c, h, what, "mlcd_softmax_cols", dim_mul(outer, inner), &al);
      out(h, "  }\n");
      c->cond = 0;
    }
    return;
  }
  case OP_CROSS_ENTROPY:
  case OP_CROSS_ENTROPY_DX: {
    bool bwd = n->op == OP_CROSS_ENTROPY_DX;
    int lg = n->in[bwd ? 1 : 0], lb = n->in[bwd ? 2 : 1];
    const Type *lt = &g->nodes[lg].ty;
    int chk =
        device_check(c, arena_printf(e->A, "%s: cross_entropy: label %%lld is outside 0..%%lld",
                                     node_where(e, n)));
    if (bwd) arg_node(c, &al, x);
    arg_node(c, &al, lg), arg_node(c, &al, lb), arg_i32(c, &al, label_dt(g->nodes[lb].ty.dt));
    arg_i64(c, &al, lt->dim[0]), arg_i64(c, &al, lt->dim[1]), arg_f64(c, &al, n->fa[0]);
    arg_node(c, &al, id), arg_status(&al), arg_i64(c, &al, dim_const(chk));
    if (bwd)
      call(c, h, what, "mlcd_cross_entropy_dx", dim_mul(lt->dim[0], dim_const(32)), &al);
    else
      launch(c, h, what, "mlcd_cross_entropy<float>", CUG_ONE, dim_const(1), 256, &al);
    return;
  }
  case OP_EMBEDDING_DW: {
    const Type *it = &g->nodes[n->in[1]].ty;
    arg_node(c, &al, id);
    memset_f32(c, h, what, &al, type_numel(&n->ty));
    al.n = 0;
    arg_node(c, &al, x), arg_node(c, &al, n->in[1]), arg_i32(c, &al, label_dt(it->dt));
    arg_i64(c, &al, type_numel(it)), arg_i64(c, &al, n->ty.dim[1]), arg_i64(c, &al, n->ty.dim[0]);
    arg_node(c, &al, id);
    call(c, h, what, "mlcd_embedding_dw", type_numel(xt), &al);
    return;
  }
  case OP_INDEX_SELECT_DX: {
    const Type *it = &g->nodes[n->in[1]].ty;
    int kd = (int)n->ia[1];
    arg_node(c, &al, id);
    memset_f32(c, h, what, &al, type_numel(&n->ty));
    al.n = 0;
    arg_node(c, &al, x), arg_i64(c, &al, dims_prod(&n->ty, 0, kd)), arg_i64(c, &al, n->ty.dim[kd]);
    arg_i64(c, &al, dims_prod(&n->ty, kd + 1, n->ty.rank)), arg_node(c, &al, n->in[1]);
    arg_i32(c, &al, it->dt == DT_I64 ? 4 : 3), arg_i64(c, &al, type_numel(it)),
        arg_node(c, &al, id);
    call(c, h, what, "mlcd_index_select_dx", type_numel(xt), &al);
    return;
  }
  case OP_BATCH_NORM:
  case OP_LAYER_NORM:
  case OP_GROUP_NORM:
  case OP_RMS_NORM: {
    int k = n->op == OP_BATCH_NORM ? 3 : n->op == OP_GROUP_NORM ? 1 : 2;
    int w = -1, bias = -1;
    if (n->op == OP_LAYER_NORM || n->op == OP_RMS_NORM)
      w = n->in[1];
    else if (n->ia[0])
      w = n->in[k++];
    if (n->ia[1]) bias = n->in[k];
    if (n->op == OP_LAYER_NORM || n->op == OP_RMS_NORM) {
      int wr = g->nodes[n->in[1]].ty.rank;
      Dim rows = dims_prod(xt, 0, xt->rank - wr), M = dims_prod(xt, xt->rank - wr, xt->rank);
      arg_node(c, &al, x), arg_i64(c, &al, rows), arg_i64(c, &al, M), arg_opt(c, &al, w);
      arg_opt(c, &al, bias), arg_f32(&al, n->fa[0], eps), arg_i32(c, &al, n->op == OP_RMS_NORM);
      arg_node(c, &al, id);
      call(c, h, what, "mlcd_layer_norm", dim_mul(rows, dim_const(32)), &al);
      return;
    }
    const Dim inner = dims_prod(xt, 2, xt->rank);
    arg_node(c, &al, x), arg_i64(c, &al, xt->dim[0]), arg_i64(c, &al, xt->dim[1]);
    arg_i64(c, &al, inner);
    if (n->op == OP_BATCH_NORM) {
      arg_node(c, &al, n->in[1]), arg_node(c, &al, n->in[2]), arg_opt(c, &al, w);
      arg_opt(c, &al, bias), arg_f32(&al, n->fa[0], eps), arg_node(c, &al, id);
      call(c, h, what, "mlcd_batch_norm", type_numel(xt), &al);
    } else {
      arg_i64(c, &al, dim_const(n->ia[2])), arg_opt(c, &al, w), arg_opt(c, &al, bias);
      arg_f32(&al, n->fa[0], eps), arg_node(c, &al, id);
      call_blocks(c, h, what, "mlcd_group_norm", dim_mul(xt->dim[0], dim_const(n->ia[2])), &al);
    }
    return;
  }
  case OP_SDPA:
  case OP_SDPA_BWD: {
    bool bwd = n->op == OP_SDPA_BWD;
    int mask_in = bwd ? 5 : 3;
    const Type *q = xt, *kt = &g->nodes[n->in[1]].ty, *vt = &g->nodes[n->in[2]].ty;
    int r = q->rank;
    /* the struct: text as declared, fields as mlcd_sdpa lays them out */
    ArgList f = {.n = 0};
    arg_i32(c, &f, r - 2);
    for (int i = 0; i < 8; i++) arg_i64(c, &f, i < r - 2 ? q->dim[i] : dim_const(0));
    arg_i64(c, &f, q->dim[r - 2]), arg_i64(c, &f, kt->dim[r - 2]), arg_i64(c, &f, q->dim[r - 1]);
    arg_i64(c, &f, vt->dim[r - 1]);
    out(h, "  {\n    mlcd_sdpa sp = {%d, {", r - 2);
    for (int i = 0; i < r - 2; i++) out(h, "%s%s", i ? ", " : "", dimc(e, q->dim[i]));
    out(h, "%s}, %s, %s, %s, %s, ", r == 2 ? "0" : "", dimc(e, q->dim[r - 2]),
        dimc(e, kt->dim[r - 2]), dimc(e, q->dim[r - 1]), dimc(e, vt->dim[r - 1]));
    if (n->ia[2]) {
      out(h, "%s, ", literal(e, n->fa[0], DT_F32));
      arg_f32(&f, n->fa[0], "");
    } else {
      out(h, "(float)(1.0 / sqrt((double)(%s))), ", dimc(e, q->dim[r - 1]));
      arg_push(&f, CUA_F32_RSQRT, "")->val = q->dim[r - 1];
    }
    out(h, "%d, 0, {0}};\n", (int)n->ia[1]);
    arg_i32(c, &f, (int)n->ia[1]);
    Dim st[MAX_RANK] = {{0}};
    if (n->ia[0]) {
      const Node *mn = &g->nodes[n->in[mask_in]];
      Type sc = *q;
      sc.dim[r - 1] = kt->dim[r - 2];
      bcast_strides(&mn->ty, &sc, st);
      out(h, "    sp.mask = %d;\n", mn->ty.dt == DT_BOOL ? 1 : 2);
      for (int i = 0; i < r; i++) out(h, "    sp.mask_stride[%d] = %s;\n", i, dimc(e, st[i]));
      arg_i32(c, &f, mn->ty.dt == DT_BOOL ? 1 : 2);
    } else
      arg_i32(c, &f, 0);
    for (int i = 0; i < 10; i++) arg_i64(c, &f, n->ia[0] && i < r ? st[i] : dim_const(0));
    arg_struct(c, &al, &f, "sp");
    arg_node(c, &al, x), arg_node(c, &al, n->in[1]), arg_node(c, &al, n->in[2]);
    arg_opt(c, &al, n->ia[0] ? n->in[mask_in] : -1);
    Dim rows = dims_prod(q, 0, r - 1);
    if (bwd) {
      const Dim nq = type_numel(q), nk = type_numel(kt), nv = type_numel(vt);
      const char *y = c->vars[id];
      ArgList z = {.n = 0};
      arg_node_at(c, &z, id, nq, dim_add(nk, nv), arena_printf(e->A, "%s + (%s)", y, dimc(e, nq)));
      memset_f32(c, h, what, &z, dim_add(nk, nv));
      arg_node(c, &al, n->in[4]), arg_node(c, &al, n->in[3]);
      arg_node_at(c, &al, id, dim_const(0), nq, y);
      arg_node_at(c, &al, id, nq, nk, arena_printf(e->A, "%s + (%s)", y, dimc(e, nq)));
      arg_node_at(c, &al, id, dim_add(nq, nk), nv,
                  arena_printf(e->A, "%s + (%s) + (%s)", y, dimc(e, nq), dimc(e, nk)));
      call(c, h, what, "mlcd_sdpa_bwd", dim_mul(rows, dim_const(32)), &al);
    } else {
      arg_node(c, &al, id);
      call(c, h, what, "mlcd_sdpa_fwd", dim_mul(rows, dim_const(32)), &al);
    }
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
  const int dy = n->in[0];
  switch (n->op) {
  case OP_DROPOUT_TRAIN:
    arg_node(c, &al, xi), arg_i64(c, &al, type_numel(xx)), arg_f64(c, &al, n->fa[0]);
    arg_push(&al, CUA_SEED, "m->seed");
    arg_weights(&al, e->step_off, sizeof(int64_t),
                arena_printf(e->A, "(const int64_t *)(m->d_weights + %zu)", e->step_off));
    arg_push(&al, CUA_U64, arena_printf(e->A, "%lldULL", (long long)n->ia[0]))->val =
        dim_const(n->ia[0]);
    arg_node(c, &al, id);
    call(c, h, what, "mlcd_dropout", type_numel(xx), &al);
    return;
  case OP_LAYER_NORM_DX:
  case OP_LAYER_NORM_DW: {
    const Dim rows = dims_prod(xx, 0, xx->rank - (int)n->ia[4]),
              M = dims_prod(xx, xx->rank - (int)n->ia[4], xx->rank);
    arg_node(c, &al, dy), arg_node(c, &al, xi), arg_i64(c, &al, rows), arg_i64(c, &al, M);
    if (n->op == OP_LAYER_NORM_DX) {
      arg_opt(c, &al, n->ia[0] ? n->in[2] : -1), arg_f32(&al, n->fa[0], eps);
      arg_i32(c, &al, (int)n->ia[3]), arg_node(c, &al, id);
      call(c, h, what, "mlcd_layer_norm_dx", dim_mul(rows, dim_const(32)), &al);
    } else {
      arg_f32(&al, n->fa[0], eps), arg_i32(c, &al, (int)n->ia[3]), arg_node(c, &al, id);
      launch(c, h, what, "mlcd_layer_norm_dw<float>", CUG_BLOCKS_256, M, 256, &al);
    }
    return;
  }
  default:
    break;
  }
  const Dim N = xx->dim[0], C = xx->dim[1], inner = dims_prod(xx, 2, xx->rank);
  switch (n->op) {
  case OP_BATCH_NORM_STATS: {
    int64_t cc;
    Dim cnt = dim_mul(xx->dim[0], dims_prod(xx, 2, xx->rank));
    if (!dim_is_const(cnt, &cc) || cc < 2) {
      const Dim two = dim_const(2);
      host_check(c, h, what, MLCRT_EINVAL, 1, &two, &cnt,
                 arena_printf(e->A,
                              "%s: batch_norm in a train step needs more than 1 value per channel, "
                              "got input %s",
                              node_where(e, n), type_str(e->A, g, xx)),
                 0, NULL);
    }
    arg_node(c, &al, xi), arg_i64(c, &al, N), arg_i64(c, &al, C), arg_i64(c, &al, inner);
    arg_node(c, &al, id);
    call_blocks(c, h, what, "mlcd_batch_norm_stats", C, &al);
    return;
  }
  case OP_BATCH_NORM_TRAIN: {
    const int w = n->ia[0] ? n->in[2] : -1, bias = n->ia[1] ? n->in[2 + (n->ia[0] != 0)] : -1;
    arg_node(c, &al, xi), arg_i64(c, &al, N), arg_i64(c, &al, C), arg_i64(c, &al, inner);
    arg_node_at(c, &al, n->in[1], dim_const(0), C, c->vars[n->in[1]]);
    arg_node_at(c, &al, n->in[1], C, C,
                arena_printf(e->A, "%s + (%s)", c->vars[n->in[1]], dimc(e, C)));
    arg_opt(c, &al, w), arg_opt(c, &al, bias), arg_f32(&al, n->fa[0], eps), arg_node(c, &al, id);
    call(c, h, what, "mlcd_batch_norm", type_numel(xx), &al);
    return;
  }
  case OP_BATCH_NORM_DX:
  case OP_BATCH_NORM_DW:
    arg_node(c, &al, dy), arg_node(c, &al, xi), arg_i64(c, &al, N), arg_i64(c, &al, C);
    arg_i64(c, &al, inner), arg_node(c, &al, n->in[2]);
    if (n->op == OP_BATCH_NORM_DX) arg_opt(c, &al, n->ia[0] ? n->in[3] : -1);
    arg_f32(&al, n->fa[0], eps), arg_node(c, &al, id);
    call_blocks(c, h, what, n->op == OP_BATCH_NORM_DX ? "mlcd_batch_norm_dx" : "mlcd_batch_norm_dw",
                C, &al);
    return;
  case OP_GROUP_NORM_DX:
  case OP_GROUP_NORM_DW:
    arg_node(c, &al, dy), arg_node(c, &al, xi), arg_i64(c, &al, N), arg_i64(c, &al, C);
    arg_i64(c, &al, inner), arg_i64(c, &al, dim_const(n->ia[2]));
    if (n->op == OP_GROUP_NORM_DX) arg_opt(c, &al, n->ia[0] ? n->in[2] : -1);
    arg_f32(&al, n->fa[0], eps), arg_node(c, &al, id);
    if (n->op == OP_GROUP_NORM_DX)
      call_blocks(c, h, what, "mlcd_group_norm_dx", dim_mul(N, dim_const(n->ia[2])), &al);
    else
      call_blocks(c, h, what, "mlcd_group_norm_dw", C, &al);
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
      c->ptr_of[prod] = gr->root;
      emit_single(c, h, prod, what);
      emit_elem_kernel(c, h, gr->nodes, gr->n, prod, arena_printf(e->A, "%s (epilogue)", what));
      c->vars[prod] = saved;
      c->ptr_of[prod] = prod;
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
static int input_index(E *e, int id) {
  for (int i = 0; i < ninputs_all(e); i++)
    if (input_node(e, i) == id) return i;
  return -1;
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
    /* one kernel per distinct update (the same size and hyperparameters) */
    const char *text = arena_printf(
        e->A,
        "(float *__restrict__ w, const float *__restrict__ grad, float *__restrict__ s1, "
        "float *__restrict__ s2, const int64_t *__restrict__ step_p, const float *__restrict__ "
        "loss, const int64_t *__restrict__ mlc_status) {\n  (void)s1, (void)s2;\n%s}\n",
        b.s);
    const char *name = known_kernel(c, text);
    if (!name) {
      name = arena_printf(e->A, "%s_update_%d", e->M, t);
      remember_kernel(c, text, name);
      out(c->kern,
          "/* the %s update of %s %s (and of any param of its size) */\nstatic __global__ void "
          "%s%s",
          o->kind == OPT_SGD    ? "sgd"
          : o->kind == OPT_ADAM ? "adam"
                                : "adamw",
          n->name, type_str(e->A, g, &n->ty), name, text);
    }
    ArgList al = {.n = 0};
    arg_weights(&al, e->p->weight_off[id], (size_t)0,
                arena_printf(e->A, "(float *)(m->d_weights + %zu)", e->p->weight_off[id]));
    al.a[0].bytes = dim_mul(type_numel(&n->ty), dim_const(sizeof(float)));
    arg_node(c, &al, g->grads[t]);
    for (int k = 0; k < 2; k++) {
      if (e->nslots > k) {
        size_t so = e->slot_off[t] + (k ? e->slot2_gap[t] : 0);
        arg_weights(&al, so, 0, arena_printf(e->A, "(float *)(m->d_weights + %zu)", so));
        al.a[al.n - 1].bytes = al.a[0].bytes;
      } else
        arg_null(&al);
    }
    arg_weights(&al, e->step_off, sizeof(int64_t),
                arena_printf(e->A, "(const int64_t *)(m->d_weights + %zu)", e->step_off));
    arg_node(c, &al, g->loss), arg_status(&al);
    launch(c, h, arena_printf(e->A, "update %s", n->name), name, CUG_THREADS, type_numel(&n->ty),
           256, &al);
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
  c->fi = kind == SIG_RUN ? CUF_RUN : kind == SIG_TRAIN ? CUF_TRAIN : CUF_EVAL;
  e->p = p;
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
    ArgList al = {.n = 0};
    arg_node(c, &al, id);
    CuStep *st = step_new(c, CUS_COPY_IN, n->name, &al);
    st->index = i;
    st->n = al.a[0].bytes;
  }
  out(&h, "  RT(mlcrt_cuda_memset(m->cu, m->d_status, 0, %d * sizeof(int64_t), m->err));\n",
      CU_STATUS_WORDS);
  ArgList sl = {.n = 0};
  arg_status(&sl);
  step_new(c, CUS_MEMSET, "the status", &sl)->n = sl.a[0].bytes;
  emit_body(c, &h, p, offs);
  if (kind != SIG_TRAIN) {
    for (int i = 0; i < g->noutputs; i++) {
      int id = g->outputs[i].node;
      out(&h,
          "  RT(mlcrt_cuda_d2h(m->cu, m->h_out[%d], %s, sizeof(%s) * (size_t)(%s), m->err)); /* "
          "output %s */\n",
          i, e->var[id], ctype(g->nodes[id].ty.dt), dimc(e, type_numel(&g->nodes[id].ty)),
          g->outputs[i].name);
      ArgList al = {.n = 0};
      arg_node(c, &al, id);
      CuStep *st = step_new(c, CUS_COPY_OUT, g->outputs[i].name, &al);
      st->index = i;
      st->n = al.a[0].bytes;
    }
  }
  if (kind != SIG_RUN) {
    const int loss = kind == SIG_TRAIN ? g->loss : g->eval_loss;
    out(&h, "  RT(mlcrt_cuda_d2h(m->cu, m->h_loss, %s, sizeof(float), m->err));\n", e->var[loss]);
    ArgList al = {.n = 0};
    arg_node(c, &al, loss);
    CuStep *st = step_new(c, CUS_COPY_OUT, "the loss", &al);
    st->index = -1;
    st->n = dim_const(sizeof(float));
  }
  if (kind == SIG_TRAIN) {
    out(&h,
        "  /* the step counts only with a finite loss and no failed check; so do the updates */\n");
    ArgList al = {.n = 0};
    arg_node(c, &al, g->loss), arg_status(&al);
    arg_weights(&al, e->step_off, sizeof(int64_t),
                arena_printf(e->A, "(int64_t *)(m->d_weights + %zu)", e->step_off));
    launch(c, &h, "step", "mlcd_step_begin<float>", CUG_ONE, dim_const(1), 32, &al);
    for (int u = 0; u < g->ntrain_updates; u++) {
      const Node *sn = &g->nodes[g->train_updates[u]];
      const Type *xt = &g->nodes[sn->in[0]].ty;
      al.n = 0;
      arg_node(c, &al, g->train_updates[u]), arg_i64(c, &al, xt->dim[1]);
      arg_i64(c, &al, dim_mul(xt->dim[0], dims_prod(xt, 2, xt->rank)));
      arg_f64(c, &al, sn->fa[1]), arg_node(c, &al, sn->in[1]), arg_node(c, &al, sn->in[2]);
      arg_node(c, &al, g->loss), arg_status(&al);
      launch(c, &h, "batch_norm running statistics", "mlcd_batch_norm_update<float>", CUG_THREADS,
             xt->dim[1], 256, &al);
    }
    emit_updates(c, &h);
  }
  out(&h,
      "  RT(mlcrt_cuda_d2h(m->cu, m->h_status, m->d_status, %d * sizeof(int64_t), m->err));\n  "
      "return MLCRT_OK;\n}\n\n",
      CU_STATUS_WORDS);
  CuStep *st = step_new(c, CUS_COPY_OUT, "the status", &sl);
  st->index = -2;
  st->n = sl.a[0].bytes;
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
  /* the train step's graph holds the dropout seed as a kernel argument:
   * part of the key, so that a new seed (init, set_seed) captures again */
  if (kind == SIG_TRAIN)
    out(b, "  m->dims[%d] = (int64_t)m->seed; /* (the graph's key) */\n", g->nsym);
  out(b,
      "  int mlc_rc = mlcrt_cuda_graph_run(m->cu, %d, m->dims, %d, %s_enqueue_%s, m, m->err);\n  "
      "if "
      "(!mlc_rc) mlc_rc = mlcrt_cuda_sync(m->cu, m->err);\n  if (mlc_rc) return mlc_rc;\n",
      kind, g->nsym + (kind == SIG_TRAIN), e->M, fns[kind]);
  out(b,
      "  if (m->h_status[0] > 0 && m->h_status[0] <= NCHECKS)\n    return mlcrt_seterr(m->err, "
      "MLCRT_EINVAL, %s_checks[m->h_status[0] - 1], (long long)m->h_status[1], "
      "(long long)m->h_status[2]);\n",
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

static char *emit_cu(E *e, const char *header_name, CuPrecision prec, CuProg **prog) {
  Graph *g = e->g;
  const Plan *p = e->p, *tp = e->train;
  const char *M = e->M;
  Buf kern = {.A = e->A}, src = {.A = e->A}, checks = {.A = e->A};
  CU c = {.e = e, .kern = &kern, .checks = &checks};
  c.vars = arena_alloc(e->A, sizeof(char *) * (size_t)(g->n + 1));
  memcpy(c.vars, e->var, sizeof(char *) * (size_t)g->n);
  c.ptr_of = arena_alloc(e->A, sizeof(int) * (size_t)(g->n + 1));
  for (int i = 0; i < g->n; i++) c.ptr_of[i] = i;
  c.prog = arena_alloc(e->A, sizeof(CuProg));
  memset(c.prog, 0, sizeof(CuProg));

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
  out(&src, "  int64_t dims[%d]; /* the symbolic dims of the call in flight%s */\n", g->nsym + 1,
      tp ? " (then the dropout seed)" : "");
  out(&src, "  mlcrt_cuda *cu;          /* device, stream, cuBLAS, memory, graphs */\n");
  out(&src, "  unsigned char *d_weights; /* device: WEIGHT_BYTES%s */\n",
      tp ? " (params, buffers, optimizer state)" : "");
  out(&src, "  unsigned char *d_arena;   /* device: activations, planned at create */\n");
  out(&src, "  int64_t *d_status;        /* device: a failed check, its value, the largest valid "
            "value */\n");
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
  out(&src, "  int status = MLCRT_OK;\n");
  out(&src, "  m->cu = mlcrt_cuda_create(opts, dev, host, %s, &status, msg);\n",
      prec == CU_PREC_TF32 ? "MLCRT_PRECISION_TF32 /* --precision tf32 */" : "MLCRT_PRECISION_F32");
  out(&src,
      "  if (!m->cu) {\n    char full[MLCRT_ERRLEN + 128];\n"
      "    if (status == MLCRT_ENOMEM) /* say what the memory is for */\n"
      "      snprintf(full, sizeof full, \"%s_create: cannot allocate %%zu bytes of weights and "
      "%%zu "
      "of activations (%%s)\", (size_t)WEIGHT_BYTES, arena_bytes, msg);\n"
      "    else\n      snprintf(full, sizeof full, \"%s_create: %%s\", msg);\n"
      "    mlcrt_set_last_error(full);\n    free(m);\n    return NULL;\n  }\n",
      M, M);
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
  if (prog) {
    CuProg *pr = c.prog;
    char *end = strstr(src.s, "\n#ifndef __CUDACC_RTC__");
    pr->device_src = arena_printf(e->A, "%.*s\n", end ? (int)(end - src.s) : (int)src.len, src.s);
    pr->weight_bytes = e->weight_bytes;
    pr->step_off = e->step_off;
    pr->slot_off = e->slot_off;
    pr->slot2_gap = e->slot2_gap;
    pr->nslots = e->nslots;
    pr->precision = prec;
    *prog = pr;
  }
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
  r.c = emit_cu(&e, header_name, prec, NULL);
  r.harness = emit_harness(&e, header_name);
  r.train_harness = NULL;
  r.train_why = "the model has no train step";
  if (train) r.train_harness = emit_train_harness(&e, header_name, &r.train_why);
  return r;
}

CuProg *emitcu_prog(Graph *g, const Plan *p, const Plan *train, const Plan *eval, const char *embed,
                    CuPrecision prec) {
  E e;
  emitc_setup(&e, g, p, train, eval, embed);
  e.cuda = true;
  CuProg *pr = NULL;
  emit_cu(&e, "model.h", prec, &pr);
  return pr;
}
