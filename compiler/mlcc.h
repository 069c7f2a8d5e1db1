/* compiler/mlcc.h — the map of the compiler: the IR and one section per pass.
 *
 * Pipeline (driver.c calls these in this order):
 *     parse_source     grammar/      MDL text -> AST
 *     lower_model      lower.c       AST -> IR: blocks inlined, repeats
 *                                    unrolled, names resolved; each node is
 *                                    typed by infer_node as it is made
 *     infer_graph      infer.c       re-checks every node's type (shape rules)
 *     plan_graph       plan.c        storage classes, liveness, arena items
 *     emitc_model      codegen/      IR -> model.c + model.h (+ run harness)
 * Later passes (autodiff, fusion, CUDA) read and extend the same Graph.
 * After the passes: build.c builds generated C (cached), jit_cpu.c and
 * jit_cuda.c load it into the process (the JIT), libmlc.c is mlc.h.
 *
 * The IR is a flat array of typed nodes in topological (creation) order;
 * node ids are indices.  Shapes are lists of Dim: integer polynomials over
 * the model's symbolic dims (B, T, ...), so `flatten([B,1,28,28])` is
 * `[B, 784*B/B]` = `[B, 784]` and sizes print as C expressions.
 */
#ifndef MLCC_H
#define MLCC_H

#include "ast.h"
#include "mlcrt.h"
#include <stdbool.h>

#define MAX_RANK 8 /* = MLCRT_MAX_RANK */
#define MAX_SYMS 16

/* ---- dim.c: integer polynomials over symbolic dims ----------------------- */
#define DIM_TERMS 6
#define DIM_VARS 4
typedef struct DimTerm {
  int64_t c;               /* coefficient, never 0 */
  uint8_t v[DIM_VARS];     /* symbol ids (1-based), ascending, 0-padded */
} DimTerm;
typedef struct Dim {
  int n; /* number of terms; 0 = the constant 0 */
  DimTerm t[DIM_TERMS];
  bool bad; /* overflowed the representation (too many terms / vars) */
} Dim;

Dim dim_const(int64_t c);
Dim dim_sym(int id);
Dim dim_add(Dim a, Dim b);
Dim dim_sub(Dim a, Dim b);
Dim dim_mul(Dim a, Dim b);
bool dim_div(Dim a, Dim b, Dim *out); /* exact division only */
bool dim_eq(Dim a, Dim b);
bool dim_never_eq(Dim a, Dim b); /* provably different for all symbol values >= 1 */
bool dim_is_const(Dim a, int64_t *c);
bool dim_is_sym(Dim a, int *id);
int64_t dim_eval(Dim a, const int64_t *symvals); /* symvals[id] */
/* Writes a C expression ("784", "B", "(3*B*T + 1)"), names[id] naming symbols. */
char *dim_str(Arena *A, Dim a, const char *const *names);

/* ---- the IR -------------------------------------------------------------- */
enum {
  F_INTERNAL = 1 << 0, /* not callable from MDL */
  F_CPU = 1 << 1,      /* CPU forward implemented */
  F_ELEM = 1 << 2,     /* elementwise (with broadcasting) */
  F_CMP = 1 << 3,      /* comparison: bool result */
  F_FLOATOUT = 1 << 4, /* integer inputs give f32 */
  F_KEEP = 1 << 5,     /* result keeps the input dtype */
  F_CAST = 1 << 6,
  F_REDUCE = 1 << 7,
  F_VIEW = 1 << 8, /* result aliases the input's storage */
  F_MOVE = 1 << 9, /* data movement (copy) */
  F_DIFF = 1 << 10 /* differentiable (autodiff rule pending) */
};

typedef enum Op {
#define OP(e, name, flags, sig, rule, cexpr) OP_##e,
#include "ops.def"
#undef OP
  OP_COUNT
} Op;

typedef struct OpInfo {
  const char *name, *sig, *cexpr, *enum_name;
  int flags;
} OpInfo;
extern const OpInfo op_info[OP_COUNT];
int op_lookup(const char *name); /* -1 if unknown */

typedef enum DType { DT_F32, DT_F16, DT_BF16, DT_I32, DT_I64, DT_U8, DT_BOOL, DT_COUNT } DType;
const char *dtype_name(DType t); /* "f32" ... */
int dtype_lookup(const char *name);
size_t dtype_size(DType t);
bool dtype_is_float(DType t);

typedef struct Type {
  DType dt;
  int rank;
  Dim dim[MAX_RANK];
} Type;

/* Initialisers for params/buffers (values match MLCRT_INIT_*). */
typedef enum InitKind { INIT_ZEROS, INIT_ONES, INIT_NORMAL, INIT_UNIFORM, INIT_KAIMING, INIT_XAVIER } InitKind;

typedef struct Node {
  Op op;
  Loc loc;
  Type ty;
  int nin;
  int *in;           /* input node ids */
  int64_t ia[16];    /* integer attributes, op-specific (see infer.c) */
  int nia;
  double fa[4];      /* float attributes; OP_CONST value in fa[0] */
  const char *sa;    /* string attribute */
  Dim *da;           /* dim-list attribute (reshape target), nda entries */
  int nda;
  const char *name;  /* input name, param/buffer path */
  const char *hint;  /* the MDL variable this value was bound to, for readable code */
  bool weak;         /* OP_CONST from a Python-style scalar literal */
  InitKind init;
  double init_a, init_b;
  int group; /* fused group id (fusion pass); -1 = none */
} Node;

typedef struct Output {
  const char *name;
  int node;
} Output;

/* A runtime check that two dims are equal (symbolic where it could not be
 * proven at compile time). */
typedef struct DimCheck {
  Dim a, b;
  Loc loc;
  const char *what;
} DimCheck;

typedef enum OptKind { OPT_SGD, OPT_ADAM, OPT_ADAMW } OptKind;
typedef struct Optimizer {
  OptKind kind;
  double lr, momentum, weight_decay, beta1, beta2, eps;
  bool nesterov;
  Loc loc;
} Optimizer;

typedef struct Graph {
  Arena *A;
  bool cuda; /* planned for the CUDA backend (no GK_POOLED groups) */
  const char *name; /* model name */
  const char *source_path;
  Node *nodes;
  int n, cap;
  const char *sym[MAX_SYMS + 1]; /* symbol names, 1-based */
  int nsym;
  int *inputs, ninputs; /* OP_INPUT node ids in declaration order */
  int *tensors, ntensors; /* OP_PARAM / OP_BUFFER node ids in declaration order */
  /* `tie NEW = OLD`: a second name for a param (weights files may use either) */
  const char **tie_names;
  int *tie_nodes, nties;
  Output *outputs;
  int noutputs;
  DimCheck *checks;
  int nchecks;
  bool has_train; /* a train section exists */
  /* the train section (lowered into the same graph; the forward `run`
   * ignores these nodes because no output needs them) */
  int *train_inputs, ntrain_inputs; /* OP_INPUT nodes of the train section */
  int loss;                         /* scalar f32 node, -1 without a train section */
  Optimizer opt;
  /* autodiff.c: grads[t] is the node holding d loss / d tensors[t] (params
   * only; -1 for buffers and params the loss does not depend on) */
  int *grads;
  int train_begin; /* nodes >= train_begin belong to the train step only */
  /* trainmode.c: the loss as evaluate computes it (running statistics, no
   * dropout; g->loss is then the train-mode clone), and the batch_norm_stats
   * nodes whose running statistics the train step updates */
  int eval_loss;
  int *train_updates, ntrain_updates;
} Graph;

/* bnexpand.c: batch_norm with running statistics as elementwise ops (x * a
 * + s, a and s per channel), bit for bit the runtime kernel's, so that they
 * fuse (-O2, C backend).  After autodiff; false only on an internal error. */
bool bn_expand(Graph *g, Diag *d);

/* views.c: scaled_dot_product_attention reads q, k, v through the slices,
 * transposes and reshapes that copied them, and writes through the
 * transpose that reads its result, at strides (-O2, C backend).  Such a node
 * is marked ia[3] = 1 and keeps its logical operand shapes in da. */
bool sdpa_views(Graph *g);
/* Operand j (0 q, 1 k, 2 v) of attention node id as the kernel sees it. */
Type sdpa_operand_type(const Graph *g, int id, int j);
/* For a strided attention: operand j's (3: the result's) element offset in
 * *off, and its strides (rank of the result). */
const Dim *sdpa_operand_view(const Graph *g, int id, int j, Dim *off);

/* ir.c */
Graph *ir_new(Arena *A, const char *name);
int ir_add(Graph *g, Op op, Loc loc, int nin, const int *in); /* returns the id */
void ir_add_check(Graph *g, Dim a, Dim b, Loc loc, const char *what);
int64_t type_numel_const(const Type *t, bool *is_const);
Dim type_numel(const Type *t);
/* The forward convolution's input, weight and output types of a conv1d,
 * conv2d, conv2d_dx or conv2d_dw node (a conv1d is a conv2d with H = KH = OH
 * = 1; *h is 1 for it, else 2). */
void conv_types(const Graph *g, const Node *n, const Type **x, const Type **w, const Type **y, int *h);
char *type_str(Arena *A, const Graph *g, const Type *t); /* "f32[B, 784]" */
void ir_print(FILE *out, const Graph *g);                /* --emit-ir */

/* ---- lower.c: AST -> IR ---------------------------------------------------- */
/* Lowers the model `model_name` (NULL: the only one) of file.  Returns NULL
 * after reporting errors through d. */
Graph *lower_model(Arena *A, const Ast *file, const char *model_name, Diag *d);

/* ---- infer.c: shape and dtype inference ---------------------------------- */
/* Computes g->nodes[id].ty from its inputs and attributes; reports errors
 * (naming both shapes) and returns false on a mismatch. */
bool infer_node(Graph *g, int id, Diag *d);
bool infer_graph(Graph *g, Diag *d);
/* Broadcasts a and b (NumPy rules); false if incompatible. */
bool infer_broadcast(Graph *g, const Type *a, const Type *b, Type *out, Loc loc, Diag *d);
DType infer_promote(const Node *a, const Node *b);

/* ---- trainmode.c: the train step's forward in train mode --------------------- */
/* When the loss depends on batch_norm or dropout(p > 0): clones the forward
 * nodes between those and the loss with batch_norm using batch statistics
 * (and queueing the running-statistics update) and dropout masking, and
 * points g->loss at the clone (g->eval_loss keeps the original).  Call
 * before autodiff.  Reports an error and returns false for what it cannot
 * do (dropout of a non-f32 value). */
bool trainmode(Graph *g, Diag *d);

/* ---- autodiff.c: reverse-mode differentiation ------------------------------ */
/* Appends the backward graph of g->loss: for every param the loss depends on,
 * g->grads[t] gets the node of its gradient.  Reports an error naming the
 * operator when a gradient rule is missing and returns false. */
bool autodiff(Graph *g, Diag *d);
bool autodiff_has_rule(Op o);

/* ---- plan.c: storage and liveness ----------------------------------------- */
typedef enum Storage {
  ST_NONE,   /* needs no storage (inlined constant) */
  ST_INPUT,  /* the caller's input pointer */
  ST_WEIGHT, /* a param or buffer in the weights region */
  ST_ARENA,  /* a planned activation buffer */
  ST_ALIAS,  /* a view of another node's storage */
  ST_FUSED   /* computed inside its fusion group, never stored (fuse.c) */
} Storage;

typedef struct PlanBuf {
  int node;          /* the node that defines it (or owns the scratch) */
  bool scratch;      /* kernel scratch space rather than a value */
  int first, last;   /* live range in schedule steps (node ids) */
  int chunk;         /* > 0 (GK_POOLED): a value buffer holds this many images
                        (dim 0) of node's value a thread, a convolution's
                        scratch is sized for a batch of that many; 0: all */
} PlanBuf;

/* A fusion group: nodes one backend kernel (one C loop nest, one CUDA
 * kernel) computes together.  Groups are per function (run, train step,
 * evaluate), because whether a value is used twice depends on which nodes
 * the function runs.  Every node a function computes (storage ST_ARENA,
 * ST_FUSED, or an ST_ALIAS that is not an F_VIEW op) is in exactly one
 * group; groups are listed in schedule order (a group's inputs are computed
 * by earlier groups).
 *
 *   GK_SINGLE    one node, emitted as today: nodes = {root}.
 *   GK_ELEM      elementwise nodes (F_ELEM, broadcasting, casts) evaluated in
 *                one loop nest over the root's shape.  nodes lists them in
 *                schedule order, root last; every member but the root is
 *                ST_FUSED and used only inside the group.  A member's value
 *                at an output index is its expression over its own inputs,
 *                each read at the index broadcast to that input's shape
 *                (broadcasting composes, so a leaf's index is the output
 *                index broadcast straight to the leaf's shape).
 *   GK_EPILOGUE  nodes[0] is a producer (linear, matmul, conv2d, ...) whose
 *                output is ST_FUSED; nodes[1..n-1] are an elementwise tail
 *                (as GK_ELEM) that ends at root, has the producer's shape
 *                and dtype, and reads the producer only at the same index.
 *                Valid to emit as: producer writes into the root's buffer,
 *                then the tail runs in place over it (a backend may instead
 *                apply the tail per output tile while the tile is in cache).
 *   GK_POOLED    (-O2, C backend) nodes[0] is a conv2d, nodes[1..n-2] its
 *                elementwise tail as in GK_EPILOGUE, run inside it (none of
 *                it reads a value indexed by image), and the root nodes[n-1]
 *                a max_pool2d or avg_pool2d, the only reader of nodes[n-2].
 *                Every member but the root is ST_FUSED: the convolution's
 *                result lives only `chunk` images a thread at a time, in the
 *                buffer p->scratch[root] (PlanBuf.chunk), pooled from there.
 *
 * A group runs at its root's place in the schedule, so plan.c keeps every
 * value a member reads live until the root.  In place (-O2): the root of a
 * GK_ELEM group or of a GK_SINGLE elementwise node may share the buffer of
 * one of its leaf inputs (`inplace`, else -1): a value of the root's shape
 * and element size that dies in this group, read only at the output index.
 * p->buf[root] is then that leaf's buffer, so emitters need do nothing
 * (each element is read before it is written, in the same iteration).
 */
typedef enum GroupKind { GK_SINGLE, GK_ELEM, GK_EPILOGUE, GK_POOLED } GroupKind;
typedef struct Group {
  GroupKind kind;
  int root;   /* the node whose value leaves the group */
  int *nodes; /* members in schedule order */
  int n;
  int inplace; /* the leaf whose buffer the root overwrites, or -1 */
  bool inside; /* GK_EPILOGUE: the tail runs inside its producer, on each block
                  of the result while it is in cache (fuse.c: tail_inside) */
  int chunk;   /* GK_POOLED: images per convolution call, for each thread */
} Group;
/* Whether a leaf of type t, read along a convolution's result o ([N, C,
 * ...]), fits the view [N * C, the rest] that a tail inside the convolution
 * runs over: along the dims after the first two it has either o's extents
 * (*full: read at the row's column) or 1 (constant along the row, e.g. a
 * per-channel scale [C, 1, 1]).  Its first two dims broadcast freely. */
bool fuse_conv_leaf(const Type *t, const Type *o, bool *full);

typedef struct Plan {
  Storage *storage;   /* per node */
  int *alias_of;      /* per node: the root node whose storage it shares */
  int *buf;           /* per node: index into bufs, or -1 */
  int *scratch;       /* per node: scratch buffer index, or -1 */
  PlanBuf *bufs;
  int nbufs;
  size_t *weight_off; /* per node: byte offset in the weights region */
  size_t weight_bytes;
  bool reuse;         /* -O0 turns buffer reuse off */
  bool pack;          /* run keeps its weights packed (-O2 without --no-pack-weights) */
  /* fuse.c */
  Group *groups;      /* in schedule order */
  int ngroups;
  int *group_of;      /* per node: index into groups, or -1 */
} Plan;

Plan *plan_graph(Graph *g, int opt_level);  /* for run: the outputs */
Plan *plan_train(Graph *g, int opt_level);  /* for the train step: loss and gradients */
Plan *plan_eval(Graph *g, int opt_level);   /* for evaluate: loss and outputs */
/* ---- fuse.c: fusion groups ------------------------------------------------- */
/* Forms the groups of a function's plan (called by plan_graph/plan_train/
 * plan_eval after storage classes are known and before buffers get live
 * ranges): marks fused members ST_FUSED and fills p->groups / p->group_of.
 * opt_level 0 makes every node its own GK_SINGLE group. */
void fuse_plan(Graph *g, Plan *p, const bool *live, const int *roots, int nroots, int opt_level);
/* Estimated work of group gi for the given symbol values: floating-point
 * operations (2 per multiply-add in GEMMs and convolutions, 1 per element
 * per elementwise op, about 1 per element read for the rest) and bytes moved
 * (each distinct input read once, the root written once; an epilogue's tail
 * pass reads and writes the root again, as the C backend runs it). */
void fuse_group_cost(const Graph *g, const Plan *p, int gi, const int64_t *symvals, double *flops, double *bytes);
/* --report: per group its ops, FLOPs and bytes moved, then totals and the
 * arena bytes of p (-O2, planning g) and p0 (-O0, the same function of g0:
 * the model compiled at -O0, whose graph the -O2 passes have not changed)
 * for the given symbol values (symvals[id]); fn names the function ("run"). */
void fuse_report(FILE *out, const Graph *g, const Plan *p, const Graph *g0, const Plan *p0,
                 const int64_t *symvals, const char *fn);
/* --dot: a Graphviz digraph of the function p plans, fused groups drawn as
 * clusters. */
void fuse_dot(FILE *out, const Graph *g, const Plan *p);

/* Arena bytes for given symbol values (uses the runtime planner). */
size_t plan_arena_bytes(const Graph *g, const Plan *p, const int64_t *symvals);
/* Bytes of a value buffer as a Dim, for emitters: the node's value, or for
 * a chunk buffer (PlanBuf.chunk) that many images of it (for one thread;
 * the emitted size takes the smaller of the batch and a chunk a thread). */
Dim plan_buf_bytes(const Graph *g, const Plan *p, int b);

/* ---- codegen/emit_c.c: the C backend --------------------------------------- */
/* Emits model.c (including "<header_name>"), the header, and a main() for
 * `mlc run` that reads .npy inputs and writes .npy outputs.  All three are
 * NUL-terminated, allocated in g->A, and byte-identical for the same graph. */
typedef struct EmitC {
  char *c, *h, *harness;
  char *train_harness;   /* main() for `mlc train`, or NULL ... */
  const char *train_why; /* ... and why not */
} EmitC;
EmitC emitc_model(Graph *g, const Plan *p, const Plan *train, const Plan *eval, const char *header_name);
/* The same with --embed-weights: create starts from the array
 * NAME_embedded_weights (emitc_weights) instead of zeros, and the run harness
 * uses it unless given --weights.  embed names the weights file (comments). */
EmitC emitc_model_embed(Graph *g, const Plan *p, const Plan *train, const Plan *eval, const char *header_name,
                        const char *embed);
/* What `mlc train` needs to know of a model's inputs (the generated train
 * harness prints it; libmlc's CUDA JIT fills an mlcrt_trainer with it): the
 * inputs in train-step order (in[], at most MLCRT_TRAIN_MAX_INPUTS), the
 * batch dim (0-based symbol), and for accuracy the class count of a [B, C]
 * f32 first output and the integer label input (0 and -1 without).  Returns
 * the number of inputs, or -1 with *why (allocated in A) when the model's
 * inputs do not fit batching. */
int emitc_train_layout(const Graph *g, Arena *A, mlcrt_train_input *in, int *batch_sym, int64_t *classes, int *label,
                       const char **why);
/* Writes the weights translation unit: `NAME_embedded_weights`, a const
 * 64-byte aligned array of the n bytes of the weights region (params and
 * buffers; see embed_weights_read).  Returns 0, or -1 on a write error. */
int emitc_weights(FILE *f, const Graph *g, const char *weights_path, const unsigned char *bytes, size_t n);

/* ---- codegen/emit_cuda.c: the CUDA backend ---------------------------------- */
/* The same as emitc_model_embed for CUDA: .c holds model.cu (device kernels,
 * then host code inside #ifndef __CUDACC_RTC__), .h the same header as the
 * C backend's, and the same harnesses.  embed may be NULL. */
EmitC emitcu_model(Graph *g, const Plan *p, const Plan *train, const Plan *eval, const char *header_name,
                   const char *embed);
/* GEMM precision of a CUDA model (--precision): IEEE float32 (the default) or
 * TF32 tensor cores for cuBLAS's GEMMs (about 10 mantissa bits in the
 * products, float32 accumulation; docs/cuda.md gives the tolerance). */
typedef enum { CU_PREC_F32, CU_PREC_TF32 } CuPrecision;
EmitC emitcu_model_prec(Graph *g, const Plan *p, const Plan *train, const Plan *eval, const char *header_name,
                        const char *embed, CuPrecision prec);

/* The CUDA JIT's launch program (docs/jit.md): what the host part of model.cu
 * does, as data that libmlc interprets with the driver API, so that no C or
 * CUDA compiler is needed.  emit_cuda.c writes the .cu's host code and these
 * steps from the same calls (one per launch, GEMM, copy, memset, check), so
 * the two cannot drift.  Values are Dims over the symbolic dims of the call.
 * Device memory is one allocation per instance: regions CUB_WEIGHTS (params,
 * buffers, optimizer state; WEIGHT_BYTES), CUB_ARENA (activations: buffer
 * `index` of the function's plan, at its planned offset), CUB_INPUT (the
 * slot of input `index`, sized at the maximum dims) and CUB_STATUS (two
 * int64: a failed device check and its value). */
typedef enum CuBase { CUB_NULL, CUB_WEIGHTS, CUB_ARENA, CUB_INPUT, CUB_STATUS } CuBase;
typedef enum CuArgKind {
  CUA_PTR,   /* a device pointer: region base + off bytes; `bytes` may be accessed from it */
  CUA_I64,   /* int64_t val */
  CUA_I32,   /* int val */
  CUA_U64,   /* uint64_t val (the constant in f; a dropout key) */
  CUA_SEED,  /* uint64_t: the instance's dropout seed */
  CUA_F32,   /* float f */
  CUA_F64,   /* double f */
  CUA_F32_RSQRT, /* float (float)(1.0 / sqrt((double)val)) */
  CUA_STRUCT /* by value: fields[0..nfields) in C's natural layout (mlcd_conv, mlcd_pool, mlcd_sdpa) */
} CuArgKind;
typedef struct CuArg {
  CuArgKind kind;
  CuBase base;
  int index;     /* CUB_ARENA: buffer index; CUB_INPUT: input index */
  Dim val;       /* CUA_PTR: byte offset in the region; integers: the value */
  Dim bytes;     /* CUA_PTR: bytes the callee may touch (the tensor's size) */
  double f;
  struct CuArg *fields;
  int nfields;
} CuArg;
typedef enum CuStepKind {
  CUS_LAUNCH,   /* kernel `fn`: grid over n, block `block`, shared memory 0, args */
  CUS_GEMM,     /* mlcrt_cuda_sgemm: args A, B, C; gemm[] = M, N, K, lda, ldb, ldc; trans_a/b; alpha, beta */
  CUS_MATMUL,   /* mlcrt_cuda_matmul: args a, b, y; shapes in shape[0..2], ranks in rank[0..2] */
  CUS_MEMSET,   /* args[0] = 0 for n bytes */
  CUS_COPY_IN,  /* input `index` (n bytes) to args[0] */
  CUS_COPY_OUT, /* args[0] (n bytes) to output `index` (index -1: the loss) */
  CUS_CHECK     /* fails with msg unless lo[i] <= hi[i] for i < ncheck; msg takes vals as %lld */
} CuStepKind;
enum { CUG_THREADS, CUG_BLOCKS, CUG_ONE, CUG_BLOCKS_256 }; /* grid_for(n), blocks_for(n), 1, blocks_for(ceil(n/256)) */
typedef struct CuStep {
  CuStepKind kind;
  const char *what; /* for messages: "line 3: linear" */
  int fn, grid, block, index;
  Dim n;
  int cond;   /* 0: always; 1: only when cond_dim == 1; 2: only when it is not */
  Dim cond_dim;
  CuArg *args;
  int nargs;
  int trans_a, trans_b;
  float alpha, beta;
  Dim gemm[6];
  Dim shape[3][MAX_RANK];
  int rank[3];
  Dim lo[3], hi[3], vals[3];
  int ncheck, nvals;
  const char *msg;
} CuStep;
enum { CUF_RUN, CUF_TRAIN, CUF_EVAL };
/* The device status block a run reads back: a failed check's number, its bad
 * value and the largest valid one (mlcd_fail in mlcrt_kernels.cuh). */
enum { CU_STATUS_WORDS = 3 };
typedef struct CuProg {
  const char *device_src;  /* model.cu's device part (compiles with NVRTC alone) */
  const char **kernels;    /* NVRTC name expressions of the kernels launched ("m_run_elem0", "mlcd_add_bias<float>") */
  int nkernels;
  CuStep *steps[3];        /* run, train step, evaluate */
  int nsteps[3];
  const char **checks;     /* the device checks' messages (status word 1..nchecks), one %lld */
  int nchecks;
  size_t weight_bytes;     /* the weights region with optimizer state and step (p->weight_bytes without) */
  size_t step_off;         /* the step counter (train) */
  size_t *slot_off, *slot2_gap; /* per tensor: optimizer slots, as emit.h's E */
  int nslots;
  int precision;           /* CuPrecision */
} CuProg;
/* The launch program of a model (the .cu's host part as data). */
CuProg *emitcu_prog(Graph *g, const Plan *p, const Plan *train, const Plan *eval, const char *embed, CuPrecision prec);

/* ---- driver.c: the pipeline --------------------------------------------------- */
typedef struct Options {
  const char *model; /* --model */
  int opt_level;     /* 0 or 2 */
  uint64_t seed;
  bool need_train; /* mlc train: a missing gradient rule is an error */
  bool cuda;       /* compiled for the CUDA backend (no bn_expand) */
  bool no_pack;    /* --no-pack-weights: -O2 without weights kept packed for run */
} Options;

typedef struct Compiled {
  Graph *g;
  Plan *plan;
  Plan *train_plan; /* NULL without a train step */
  Plan *eval_plan;  /* with train_plan */
  char *c_src, *h_src, *harness_src; /* NUL-terminated */
} Compiled;

/* ---- build.c: building generated C with the system C compiler, cached ------- */
/* "PATH: error: MESSAGE" about a whole file. */
void diag_file_error(Diag *d, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Writes text to path; false after "PATH: error: cannot write: REASON". */
bool build_write_file(Diag *d, const char *path, const char *text);
#define BUILD_HASH_INIT 0xcbf29ce484222325ULL
uint64_t build_hash(uint64_t h, const void *p, size_t n); /* not cryptographic */
uint64_t build_hash_str(uint64_t h, const char *s);      /* s and its NUL (NULL as "") */
bool build_hash_file(const char *path, uint64_t *h);      /* false if unreadable */
/* $MLC_CACHE_DIR, else $XDG_CACHE_HOME/mlc, else ~/.cache/mlc. */
const char *build_cache_dir(Arena *A);
int build_mkdirs(const char *path); /* mkdir -p; 0 or -1 with errno */
/* mlcrt.h's directory and libmlcrt.a (see build.c for the search order). */
void build_runtime_paths(Arena *A, const char **inc, const char **lib);
/* The flags generated code is built with (part of the cache key; $MLC_CFLAGS
 * adds more, and a later -march there wins): -O3, as GCC 12 vectorizes little
 * at -O2 (its "very cheap" cost model) and the generated loops are written
 * for the vectorizer; -march=native, as the result runs on this machine (the
 * key holds the CPU's identity), so those loops use its widest vectors;
 * -ffp-contract=off, so that no multiply and add fuse into an FMA and results
 * stay bit for bit those of a plain -O2 build (vectors change no result: no
 * reassociation without -ffast-math); -fno-trapping-math lets GCC turn
 * selects into SIMD blends (nothing reads FP exception flags, so results do
 * not change). */
#define BUILD_CFLAGS "-std=c11 -O3 -march=native -ffp-contract=off -fno-trapping-math"
typedef struct BuildFile {
  const char *name, *text; /* written into the entry */
  bool compile;            /* a .c file to compile (else a header) */
} BuildFile;
typedef struct BuildSpec {
  bool shared; /* a shared object with libmlcrt linked in (the JIT), else an executable */
  const BuildFile *files;
  int nfiles;
  const char *out_name; /* "run", "model.so" */
  /* --embed-weights: model_weights.c from these bytes (c->plan->weight_bytes) */
  const Compiled *c;
  const char *weights_path;
  const unsigned char *weights;
} BuildSpec;
/* Returns the path of the result in the cache (built there unless a whole
 * entry exists; *was_cached says which; may be NULL), or NULL after an error
 * in d.  A compile error (an mlc bug) keeps the sources and quotes the log. */
const char *build_cached(Arena *A, const BuildSpec *s, Diag *d, bool *was_cached);
/* Removes a cache entry (the directory holding a result) that turned out
 * unusable, e.g. a shared object dlopen rejects; the next build_cached
 * rebuilds it. */
void build_evict(Arena *A, const char *entry);

/* ---- jit_cpu.c: the CPU JIT (generated C -> cached shared object -> dlopen) ---- */
/* The model's functions with generic signatures: d[] the symbolic dims in
 * order of first appearance, in[] the model's inputs then (train step) the
 * train section's, out[] the outputs; each array as the generated API takes
 * it.  The train-step members are NULL without a train step. */
typedef struct JitCpu {
  void *so;         /* the dlopen handle */
  const char *path; /* the shared object in the cache */
  bool cached;      /* found in the cache rather than built */
  void *(*create)(const int64_t *maxdims, const mlcrt_options *o, char *err /* MLCRT_ERRLEN */);
  void (*destroy)(void *m);
  int (*load)(void *m, const char *path);
  int (*save)(const void *m, const char *path);
  int (*init)(void *m, uint64_t seed);
  const char *(*last_error)(const void *m);
  int (*run)(void *m, const int64_t *d, const void *const *in, void *const *out);
  int (*train_step)(void *m, const int64_t *d, const void *const *in, float *loss);
  int (*set_seed)(void *m, uint64_t seed);
  int (*load_checkpoint)(void *m, const char *path);
  int (*save_checkpoint)(const void *m, const char *path);
  int64_t (*step)(const void *m);
  /* `mlc train`'s loop (runtime/trainloop.c) over this model; NULL when the
   * model cannot be trained by it, train_why says why */
  int (*train_main)(int argc, char **argv);
  const char *train_why;
} JitCpu;
/* Builds (or finds in the cache) and loads the model's shared object; with
 * embed, its weights are compiled in from w.  False after an error in d. */
bool jit_cpu_load(Arena *A, const Compiled *c, const char *embed, const unsigned char *w, JitCpu *j, Diag *d);
void jit_cpu_unload(JitCpu *j);

/* ---- jit_cuda.c: NVRTC and the CUDA driver API, opened with dlopen ----------- */
/* Functions return MLCRT_OK or a status with the message in err
 * (MLCRT_ERRLEN bytes). */
typedef struct JitCuHeader {
  const char *name, *text; /* an in-memory header for #include "name" */
} JitCuHeader;
/* Compiles CUDA C to PTX for compute capability arch (80 = compute_80;
 * lowered to the newest this NVRTC supports) through the PTX cache; *cached
 * (may be NULL) says whether it came from there.  names are NVRTC name
 * expressions of the kernels to keep ("model_run_elem0", "mlcd_add_bias<float>":
 * a static or template kernel that no device code calls is otherwise
 * dropped); lowered[i] receives each one's name in the PTX.  Returns the PTX
 * (in A), or NULL with the reason in err: no NVRTC, or NVRTC's log. */
char *jitcu_ptx(Arena *A, const char *name, const char *src, const JitCuHeader *h, int nh, const char *const *opts,
                int nopts, const char *const *names, int nnames, const char **lowered, int arch, bool *cached,
                char *err);
/* The same, for loading: a CUBIN (machine code for arch, *cubin set) where
 * this NVRTC knows arch exactly, else PTX; *size is the image's bytes.  A
 * cached CUBIN loads without the driver compiling anything (a PTX module is
 * compiled at every load).  A separate cache entry from jitcu_ptx's. */
const char *jitcu_image(Arena *A, const char *name, const char *src, const JitCuHeader *h, int nh,
                        const char *const *opts, int nopts, const char *const *names, int nnames,
                        const char **lowered, int arch, bool *cached, size_t *size, bool *cubin,
                        char *err);
/* The driver and device `ordinal` (its primary context made current), or
 * NULL with "no CUDA driver: ..." / "no CUDA device: ..." in err. */
typedef struct JitCuda JitCuda;
JitCuda *jitcu_open(int ordinal, char *err);
int jitcu_arch(const JitCuda *cu); /* compute capability, 90 for sm_90 */
void jitcu_close(JitCuda *cu);
int jitcu_module_load(JitCuda *cu, const void *image, void **module, char *err);
void jitcu_module_unload(JitCuda *cu, void *module);
int jitcu_function(JitCuda *cu, void *module, const char *name, void **fn, char *err);
/* args: pointers to each kernel argument, as cuLaunchKernel takes them */
int jitcu_launch(JitCuda *cu, void *fn, const unsigned grid[3], const unsigned block[3], unsigned shmem, void **args,
                 char *err);
int jitcu_sync(JitCuda *cu, char *err);
int jitcu_alloc(JitCuda *cu, size_t bytes, uint64_t *dptr, char *err);
void jitcu_free(JitCuda *cu, uint64_t dptr);
int jitcu_copy(JitCuda *cu, uint64_t dptr, void *host, size_t bytes, bool to_device, char *err);
int jitcu_memset(JitCuda *cu, uint64_t dptr, size_t bytes, char *err); /* zeroes */
/* A model on the device (emitcu_prog's launch program, its kernels compiled
 * with NVRTC through the PTX cache and loaded, cuBLAS opened when it has
 * GEMMs) and its instances (one device allocation each), the CUDA half of
 * libmlc's mlc_model / mlc_instance.  embedded: the params' bytes
 * (p->weight_bytes) a new instance starts from, or NULL (zeros). */
typedef struct JitCuModel JitCuModel;
typedef struct JitCuInst JitCuInst;
JitCuModel *jitcu_model_load(const Compiled *c, const unsigned char *embedded, int precision, char *err);
void jitcu_model_free(JitCuModel *mm);
const CuProg *jitcu_model_prog(const JitCuModel *mm);
JitCuInst *jitcu_create(JitCuModel *mm, const int64_t *max_dims, const mlcrt_options *opts, char *err);
void jitcu_destroy(JitCuInst *m);
/* Runs function fi (CUF_*) for the symbol values sv[id] (1-based), already
 * checked against the maximum: inputs in[], outputs out[] (NULL: skipped),
 * the loss (train step, evaluate). */
int jitcu_call(JitCuInst *m, int fi, const int64_t *sv, const void *const *in, void *const *out, float *loss);
int jitcu_load(JitCuInst *m, const char *path);
int jitcu_save(JitCuInst *m, const char *path);
int jitcu_init(JitCuInst *m, uint64_t seed);
void jitcu_set_seed(JitCuInst *m, uint64_t seed);
int jitcu_save_checkpoint(JitCuInst *m, const char *path);
int64_t jitcu_step(JitCuInst *m); /* the optimizer's step counter (0 on an error) */
int jitcu_load_checkpoint(JitCuInst *m, const char *path);
const char *jitcu_last_error(const JitCuInst *m);
char *jitcu_err(JitCuInst *m); /* the instance's message buffer (MLCRT_ERRLEN) */
/* The size and alignment of a kernel argument as the launch marshals it
 * (C's natural layout; structs field by field). */
size_t jitcu_arg_size(const CuArg *a, size_t *align);
/* The device memory pointer argument a may address in function fi (a
 * weights region, an arena buffer at its size for the maximum dims, an input
 * slot, the status words): 0 for a NULL argument. */
int jitcu_region(const JitCuInst *m, int fi, const CuArg *a, uint64_t *start, uint64_t *bytes);

/* ---- libmlc.c: what the command line uses of mlc.h besides it ------------------ */
typedef struct mlc_model mlc_model;
/* The JIT model of an already compiled c (mlc run --jit); c and w must
 * outlive it.  Returns an MLC_* status, errors in d. */
int mlc_model_from_compiled(const Compiled *c, const char *embed, const unsigned char *w, int device, uint64_t seed,
                            mlc_model **out, Diag *d);
/* The same with the CUDA GEMM precision (--precision; CuPrecision). */
int mlc_model_from_compiled_prec(const Compiled *c, const char *embed, const unsigned char *w, int device,
                                 int precision, uint64_t seed, mlc_model **out, Diag *d);
/* mlc train --jit: the training loop of `mlc train` over the model, in this
 * process; the exit status, or -1 when the model cannot be trained by it
 * (*why says why). */
int mlc_model_train_main(const mlc_model *mm, int argc, char **argv, const char **why);

/* ---- idx.c: IDX datasets for `mlc train` ------------------------------------ */
bool idx_is_idx(const char *path);                          /* not a .npy name */
int idx_to_npy(const char *path, const char *npy, char *err); /* MLCRT_* status */

/* --embed-weights: reads a safetensors file into a new malloc'd image of the
 * weights region (p->weight_bytes bytes, gaps zero) with the loader's strict
 * checks (every tensor present, no extra one, exact dtypes and shapes).
 * Returns MLCRT_OK, or a status with the message ("PATH: ...") in err. */
int embed_weights_read(const Graph *g, const Plan *p, const char *path, unsigned char **bytes, char *err);

/* Parses, checks and (unless check_only) emits.  Returns NULL on errors. */
Compiled *compile_file(Arena *A, const char *path, const Options *o, bool check_only, Diag *d);
/* The same for source text already in memory (source_from_string, the
 * fuzzing harness). */
Compiled *compile_source(Arena *A, const Source *src, const Options *o, bool check_only, Diag *d);

#endif
