/* codegen/emit.h — what the C backend (emit_c.c) shares with the CUDA backend
 * (emit_cuda.c): the output buffer, the emitter state, names, dims, literals,
 * broadcasting strides, and the host-side pieces both backends write the same
 * way (model.h, the run / train harnesses, descriptor tables, argument
 * checks, arena plan items).  The macros give the shared functions an
 * emitc_ prefix in the symbol table while emit_c.c keeps its short names.
 */
#ifndef EMIT_H
#define EMIT_H

#include "mlcc.h"

#define out emitc_out
#define cident emitc_cident
#define dimc emitc_dimc
#define ctype emitc_ctype
#define mlcrt_dtype_c emitc_mlcrt_dtype_c
#define compute_dt emitc_compute_dt
#define literal emitc_literal
#define literal_plain emitc_literal_plain
#define bcast_strides emitc_bcast_strides
#define index_expr emitc_index_expr
#define same_shape emitc_same_shape
#define elem_template emitc_elem_template
#define dims_prod emitc_dims_prod
#define dense_strides emitc_dense_strides
#define node_where emitc_node_where
#define describe emitc_describe
#define src_line emitc_src_line
#define outname emitc_outname
#define emit_signature emitc_emit_signature
#define emit_create_signature emitc_emit_create_signature
#define emit_header emitc_emit_header
#define emit_checks emitc_emit_checks
#define emit_items emitc_emit_items
#define emit_desc emitc_emit_desc
#define emit_ties emitc_emit_ties
#define emit_harness emitc_emit_harness
#define emit_train_harness emitc_emit_train_harness
#define layout_optimizer emitc_layout_optimizer

/* ---- a growable string ------------------------------------------------------ */
typedef struct Buf {
  Arena *A;
  char *s;
  size_t len, cap;
} Buf;
__attribute__((format(printf, 2, 3))) void out(Buf *b, const char *fmt, ...);

/* ---- the emitter's state -------------------------------------------------------- */
typedef struct E {
  Graph *g;
  const Plan *p;
  Arena *A;
  const char **var;      /* C name of each node's value */
  const char **outnames; /* C parameter name of each output */
  const char *off;       /* "off" (run) or "toff" (train step): the arena offsets in use */
  const Plan *train;     /* plan of the train step, or NULL */
  const Plan *eval;      /* plan of evaluate (loss and outputs), with train */
  int nslots;            /* optimizer slots per param: 0, 1 (sgd momentum) or 2 (adam) */
  size_t *slot_off;      /* per tensor index: byte offset of its first slot (-1: none) */
  size_t *slot2_gap;     /* per tensor: bytes from its first slot to its second */
  size_t step_off, weight_bytes;
  int nckpt;
  const char *M;     /* model name */
  const char *embed; /* --embed-weights: the weights file (model_weights.c), or NULL */
  bool cuda;         /* emit_cuda.c: the header describes a CUDA model */
  struct Buf *kern;  /* emit_c.c: file-scope elementwise kernels, written before run */
  int nkern;
  struct KernSeen *kseen; /* ... each once: run, train and evaluate share them */
  const char *update;     /* emit_c.c: the optimizer's kernel (in kern), once written */
  const Plan *run;        /* emit_c.c: the run function's plan */
  int *wpack;             /* ... per node: the index of a linear weight (its param) or a
                             convolution's weights (the conv node) packed once for run
                             (-O2), else -1 */
  int *wpnode;            /* ... and the node of each index */
  int nwpack;
} E;

/* Names every node (e->var) and output and lays out the optimizer state:
 * what both backends do before writing anything. */
void emitc_setup(E *e, Graph *g, const Plan *p, const Plan *train, const Plan *eval,
                 const char *embed);

const char *cident(Arena *A, const char *prefix, const char *s);
const char *dimc(E *e, Dim d);
const char *ctype(DType t);
const char *mlcrt_dtype_c(DType t);
DType compute_dt(DType t);
const char *literal(E *e, double v, DType ct);
const char *literal_plain(E *e, double v);
void bcast_strides(const Type *t, const Type *o, Dim *st);
const char *index_expr(E *e, const Dim *st, int rank);
bool same_shape(const Type *a, const Type *b);
const char *elem_template(E *e, const Node *n, DType ct);
Dim dims_prod(const Type *t, int from, int to);
void dense_strides(const Type *t, Dim *st);
const char *node_where(E *e, const Node *n);
const char *describe(E *e, const Node *n);
const char *src_line(E *e, Loc loc);
const char *outname(E *e, int i);
enum { SIG_RUN, SIG_TRAIN, SIG_EVAL };
void emit_signature(E *e, Buf *b, int kind);
void emit_create_signature(E *e, Buf *b);
char *emit_header(E *e);
void emit_checks(E *e, Buf *b, const char *fn, bool train);
void emit_items(E *e, Buf *b, const Plan *p, const char *name, Buf *dbl, const char **dnames);
void emit_desc(E *e, Buf *b, const char *name, DType dt, const Type *t, size_t off, InitKind init,
               double ia, double ib);
void emit_ties(E *e, Buf *b);
char *emit_harness(E *e, const char *header_name);
char *emit_train_harness(E *e, const char *header_name, const char **why);
void layout_optimizer(E *e);

#endif
