/* mlcrt.h — the mlc runtime library (libmlcrt).
 *
 * Generated models link this library and nothing else of mlc.  It holds:
 *   - options, status codes and error text,
 *   - dtype helpers (f16 / bf16 conversion, as PyTorch rounds: nearest-even),
 *   - the weights format (safetensors read/write against a descriptor table),
 *   - NumPy .npy read/write (for tools and the `mlc run` harness),
 *   - the seeded initialisers of the spec,
 *   - the arena planner used at create time,
 *   - the CPU kernels that generated code calls (GEMM, conv, pools, softmax).
 * Nothing here allocates except the functions that say so (file readers,
 * create-time helpers).  No global mutable state except the thread-local text
 * behind mlcrt_last_error().
 *
 * Example (what generated code does):
 *     char err[MLCRT_ERRLEN];
 *     if (mlcrt_load_safetensors("w.safetensors", descs, ndescs, base, err))
 *         fprintf(stderr, "%s\n", err);
 */
#ifndef MLCRT_H
#define MLCRT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- options and status ------------------------------------------------ */
enum { MLCRT_CPU = 0, MLCRT_CUDA = 1 };

typedef struct mlcrt_options {
  int device;       /* MLCRT_CPU or MLCRT_CUDA */
  int num_threads;  /* 0 = default */
  int device_index; /* CUDA device ordinal */
} mlcrt_options;

enum {
  MLCRT_OK = 0,
  MLCRT_EINVAL = 1,      /* bad argument, e.g. a dim above its maximum */
  MLCRT_EIO = 2,         /* a file could not be opened, read or written */
  MLCRT_EFORMAT = 3,     /* a file is malformed (bad header, truncated, ...) */
  MLCRT_ESHAPE = 4,      /* a tensor has the wrong dtype or shape, or is missing/extra */
  MLCRT_ENOMEM = 5,      /* out of memory */
  MLCRT_ENUMERIC = 6,    /* a non-finite loss */
  MLCRT_EUNSUPPORTED = 7 /* not available in this build / on this device */
};
const char *mlcrt_status_name(int status); /* "invalid argument", ... */

#define MLCRT_ERRLEN 512
/* Formats a message into err (MLCRT_ERRLEN bytes) and returns status.  With
 * err == NULL the message goes to the thread-local mlcrt_last_error(). */
int mlcrt_seterr(char *err, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Thread-local: why the last create (or other instance-less call) failed. */
const char *mlcrt_last_error(void);
void mlcrt_set_last_error(const char *msg);

/* ---- dtypes -------------------------------------------------------------- */
typedef enum mlcrt_dtype {
  MLCRT_F32,
  MLCRT_F16,
  MLCRT_BF16,
  MLCRT_I32,
  MLCRT_I64,
  MLCRT_U8,
  MLCRT_BOOL
} mlcrt_dtype;
#define MLCRT_NDTYPES 7
size_t mlcrt_dtype_size(mlcrt_dtype t);
const char *mlcrt_dtype_name(mlcrt_dtype t); /* "f32", "f16", ..., "bool" */

float mlcrt_f16_to_f32(uint16_t h);
uint16_t mlcrt_f32_to_f16(float f);
float mlcrt_bf16_to_f32(uint16_t h);
uint16_t mlcrt_f32_to_bf16(float f);

#define MLCRT_MAX_RANK 8

/* ---- parameters, buffers and the weights file ---------------------------- */
enum {
  MLCRT_INIT_ZEROS,
  MLCRT_INIT_ONES,
  MLCRT_INIT_NORMAL,          /* a = mean, b = std */
  MLCRT_INIT_UNIFORM,         /* a = lo, b = hi */
  MLCRT_INIT_KAIMING_UNIFORM, /* PyTorch's default for Linear/Conv weights */
  MLCRT_INIT_XAVIER_UNIFORM
};

/* One named tensor stored in an instance's weights region.  Generated code
 * holds a static const table of these.  Tied names (`tie`): give the alias
 * its own descriptor with the same offset, dtype and shape as the original
 * (listed after it).  Load then accepts a file holding either name or both
 * (then their bytes must be equal), save writes the first name only, and
 * init leaves the alias to the original's initialiser. */
typedef struct mlcrt_tensor_desc {
  const char *name; /* parameter path, e.g. "layer1.0.conv1.weight" */
  mlcrt_dtype dtype;
  int rank;
  int64_t shape[MLCRT_MAX_RANK];
  size_t offset; /* byte offset from the weights base pointer (aligned to 64) */
  int init;      /* MLCRT_INIT_* */
  double init_a, init_b;
} mlcrt_tensor_desc;

/* Reads a safetensors file into base + desc[i].offset for each descriptor.
 * Validates everything: header length, JSON syntax, dtype names, shapes,
 * data_offsets inside the file and matching dtype*shape bytes, no overlap.
 * A missing tensor, an extra tensor, a wrong dtype or a wrong shape is an
 * error naming the tensor and both shapes/dtypes.  On error the destination
 * may be partly written.  Returns MLCRT_OK or a status (message in err). */
int mlcrt_load_safetensors(const char *path, const mlcrt_tensor_desc *desc, int n, void *base,
                           char *err);
/* Writes all descriptors to path (via path.tmp + rename, so a crash never
 * leaves a torn file).  Tensors in descriptor order; header keys sorted. */
int mlcrt_save_safetensors(const char *path, const mlcrt_tensor_desc *desc, int n,
                           const void *base, char *err);
/* Fills every tensor by its initialiser from a counter-based generator keyed
 * by (seed, tensor index): same seed, same values on every machine. */
int mlcrt_init_tensors(const mlcrt_tensor_desc *desc, int n, void *base, uint64_t seed);

/* ---- .npy files (tools and the `mlc run` harness; these allocate) --------- */
typedef struct mlcrt_array {
  mlcrt_dtype dtype;
  int rank;
  int64_t shape[MLCRT_MAX_RANK];
  void *data; /* malloc'd, C order, little-endian */
  size_t nbytes;
} mlcrt_array;
/* Accepts versions 1.0/2.0/3.0, descr '<f4' '<f2' '<i4' '<i8' '|u1' '|b1'
 * (and '<u2' read as bf16 bits is NOT accepted: bf16 has no numpy dtype).
 * Rejects big-endian, fortran_order True, truncated data, bad headers. */
int mlcrt_npy_read(const char *path, mlcrt_array *out, char *err);
int mlcrt_npy_write(const char *path, const mlcrt_array *a, char *err);
void mlcrt_array_free(mlcrt_array *a);

/* ---- arena planning (create time) --------------------------------------- */
/* Each item is live from step `first` to step `last` inclusive.  Assigns
 * offsets (multiples of align) so that no two items whose live ranges
 * intersect share a byte; returns the total size.  Deterministic. */
typedef struct mlcrt_plan_item {
  size_t size;
  int first, last;
  size_t offset; /* out */
} mlcrt_plan_item;
size_t mlcrt_plan(mlcrt_plan_item *items, int n, size_t align);

/* The weights and the arena of an instance: aligned_alloc(64, bytes rounded
 * up), or NULL when it fails or when bytes exceed the machine's physical
 * memory.  (Where the kernel overcommits, a larger request "succeeds" and the
 * process is killed when create zeroes it; refused here, create reports the
 * sizes instead.)  Free with free(). */
void *mlcrt_alloc(size_t bytes);

/* ---- threads (team.c) and instruction sets -------------------------------- */
/* A team is the fixed set of threads an instance runs its kernels on; a
 * generated model creates one at <model>_create (opts->num_threads, 0 = one
 * per online CPU) and every kernel below that takes one may be given NULL
 * (one thread).  Results are bit-identical for a given thread count. */
typedef struct mlcrt_team mlcrt_team;
/* Instruction sets of the GEMM kernels, best last. */
enum { MLCRT_ISA_GENERIC, MLCRT_ISA_AVX2, MLCRT_ISA_AVX512 };
/* The best this CPU runs, or a lesser one named by the environment variable
 * MLCRT_ISA (generic, avx2, avx512). */
int mlcrt_cpu_isa(void);
const char *mlcrt_isa_name(int isa);
/* $MLCRT_NUM_THREADS if set, else the number of online CPUs (at most 64). */
int mlcrt_default_threads(void);
/* nthreads <= 0: mlcrt_default_threads(); isa as from mlcrt_cpu_isa().
 * Returns NULL when threads or memory cannot be had. */
mlcrt_team *mlcrt_team_create(int nthreads, int isa);
void mlcrt_team_destroy(mlcrt_team *t);
int mlcrt_team_size(const mlcrt_team *t); /* 1 for NULL */
int mlcrt_team_isa(const mlcrt_team *t);
/* Runs fn(arg, i, ntasks) for i in 0..ntasks-1 (ntasks <= size) on the
 * caller and the workers, whichever is free first; returns when all are done.
 * Task i should use slot i of any per-thread buffers (e.g. workspace i). */
typedef void (*mlcrt_task_fn)(void *arg, int task, int ntasks);
void mlcrt_team_run(mlcrt_team *t, int ntasks, mlcrt_task_fn fn, void *arg);
/* Slot i's scratch (for task i), MLCRT_TEAM_WS_FLOATS floats, 64-byte aligned. */
#define MLCRT_TEAM_WS_FLOATS (320 * 1024)
float *mlcrt_team_workspace(mlcrt_team *t, int member);

/* Elementwise tiles: a fused elementwise kernel of generated code computes
 * the block r0..r1 x c0..c1 of its output viewed as a rows x cols matrix
 * (rows: the leading dims, cols: the last; or 1 x numel).  mlcrt_tiles runs
 * it over the whole matrix, split into row (or column) slices over the team
 * when it is large enough to pay for the hand-off; each element is computed
 * once by the same code, so results never depend on the thread count. */
typedef void (*mlcrt_tile_fn)(void *ctx, int64_t r0, int64_t r1, int64_t c0, int64_t c1);
void mlcrt_tiles(mlcrt_team *t, int64_t rows, int64_t cols, mlcrt_tile_fn fn, void *ctx);
/* An epilogue: fn is called on each block of a GEMM's C once that block is
 * final (all of K summed, bias included), while it is still in cache. */
typedef struct mlcrt_epilogue {
  mlcrt_tile_fn fn;
  void *ctx;
} mlcrt_epilogue;

/* ---- CPU kernels (float32) ------------------------------------------------- */
/* Row-major C = alpha * op(A) op(B) + beta * C; op(A) is M x K, op(B) is K x N. */
void mlcrt_sgemm_team(mlcrt_team *team, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                      const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
/* The same, then epi (may be NULL) on every block of C as it is finished:
 * rows and columns of C are the epilogue's rows and columns. */
void mlcrt_sgemm_epi(mlcrt_team *team, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                     float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                     float beta, float *C, int64_t ldc, const mlcrt_epilogue *epi);
/* The same on the calling thread (mlcrt_sgemm_team with no team). */
void mlcrt_sgemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                 const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                 int64_t ldc);
/* torch.matmul: 1-D operands promoted and squeezed back, batch dims broadcast.
 * yshape is the result shape computed by the compiler (rank yr). */
void mlcrt_matmul_f32(mlcrt_team *team, const float *a, int ra, const int64_t *ashape, const float *b, int rb,
                      const int64_t *bshape, float *y, int yr, const int64_t *yshape);
/* y[M,N] = x[M,K] * w[N,K]^T + b[N] (b may be NULL). */
void mlcrt_linear_f32(mlcrt_team *team, const float *x, int64_t M, int64_t K, const float *w, int64_t N,
                      const float *b, float *y);
/* linear and matmul with an epilogue (may be NULL) over y viewed as
 * [numel / N, N], N its last dim; matmul needs ra, rb >= 2. */
void mlcrt_linear_epi_f32(mlcrt_team *team, const float *x, int64_t M, int64_t K, const float *w, int64_t N,
                          const float *b, float *y, const mlcrt_epilogue *epi);
/* W [N, K] packed once for the GEMM kernels of team's instruction set (team
 * may be NULL: the CPU's), for many linear calls with these weights:
 * mlcrt_linear_pack_floats floats at wp.  Packing W is what a call at a small
 * batch spends much of its time on (GPT-2 small, 64 tokens: about a fifth). */
size_t mlcrt_linear_pack_floats(const mlcrt_team *team, int64_t N, int64_t K);
void mlcrt_linear_pack_f32(const mlcrt_team *team, const float *w, int64_t N, int64_t K, float *wp);
/* mlcrt_linear_epi_f32 reading W's panels from wp (packed for this team; NULL:
 * packed per call); w is still read by the unpacked paths (a row or two of
 * x).  The same bits as the unpacked call. */
void mlcrt_linear_packed_epi_f32(mlcrt_team *team, const float *x, int64_t M, int64_t K,
                                 const float *w, const float *wp, int64_t N, const float *b,
                                 float *y, const mlcrt_epilogue *epi);
void mlcrt_matmul_epi_f32(mlcrt_team *team, const float *a, int ra, const int64_t *ashape, const float *b, int rb,
                          const int64_t *bshape, float *y, int yr, const int64_t *yshape, const mlcrt_epilogue *epi);

typedef struct mlcrt_conv2d_params {
  int64_t N, C, H, W;      /* input */
  int64_t OC, KH, KW;      /* weight [OC, C/groups, KH, KW] */
  int64_t OH, OW;          /* output */
  int64_t sh, sw, ph, pw, dh, dw, groups;
} mlcrt_conv2d_params;
enum { MLCRT_CONV_FWD, MLCRT_CONV_DX, MLCRT_CONV_DW };
/* Scratch bytes the forward (op MLCRT_CONV_FWD) or a gradient kernel needs
 * on a team of nthreads (column buffers, partial sums); may be 0. */
size_t mlcrt_conv2d_scratch(const mlcrt_conv2d_params *p, int op, int nthreads);
void mlcrt_conv2d_f32(mlcrt_team *team, const mlcrt_conv2d_params *p, const float *x, const float *w,
                      const float *b, float *y, void *scratch);
/* The same, then epi (may be NULL) on every block of y once it is final (bias
 * included), while it is in cache: the epilogue's rows are n * OC + oc, its
 * columns oh * OW + ow. */
void mlcrt_conv2d_epi_f32(mlcrt_team *team, const mlcrt_conv2d_params *p, const float *x, const float *w,
                          const float *b, float *y, void *scratch, const mlcrt_epilogue *epi);
/* The forward's weights prepared once for many calls on this team (as
 * mlcrt_linear_pack_f32): those of the taps that see the image when padding
 * leaves some out (3x3 padding 1 on a 1x1 input: 1 of 9), and their GEMM
 * panels; mlcrt_conv2d_pack_floats floats at wp (0: the convolution reads w
 * as it is).  p's geometry without N (the pack serves every batch size). */
size_t mlcrt_conv2d_pack_floats(const mlcrt_team *team, const mlcrt_conv2d_params *p);
void mlcrt_conv2d_pack_f32(const mlcrt_team *team, const mlcrt_conv2d_params *p, const float *w, float *wp);
/* mlcrt_conv2d_epi_f32 reading the weights from wp (packed for this team and
 * geometry); the same bits. */
void mlcrt_conv2d_packed_epi_f32(mlcrt_team *team, const mlcrt_conv2d_params *p, const float *x, const float *w,
                                 const float *wp, const float *b, float *y, void *scratch, const mlcrt_epilogue *epi);
/* Its input and weight gradients (dy [N, OC, OH, OW]; outputs overwritten). */
void mlcrt_conv2d_dx_f32(mlcrt_team *team, const mlcrt_conv2d_params *p, const float *dy, const float *w, float *dx,
                         void *scratch);
void mlcrt_conv2d_dw_f32(mlcrt_team *team, const mlcrt_conv2d_params *p, const float *dy, const float *x, float *dw,
                         void *scratch);

typedef struct mlcrt_pool2d_params {
  int64_t N, C, H, W, OH, OW;
  int64_t kh, kw, sh, sw, ph, pw;
  int count_include_pad; /* avg only */
} mlcrt_pool2d_params;
void mlcrt_max_pool2d_f32(mlcrt_team *team, const mlcrt_pool2d_params *p, const float *x, float *y);
void mlcrt_avg_pool2d_f32(mlcrt_team *team, const mlcrt_pool2d_params *p, const float *x, float *y);
/* A convolution (then epi, as mlcrt_conv2d_epi_f32) and a pooling of its
 * result (max, or avg when avg != 0), `chunk` images at a time through buf:
 * the convolution's whole result is never stored.  With a team and at least
 * a chunk for each member, each member runs its own chunks alone in its own
 * slice of buf and of scratch; else the chunks run one after another on the
 * whole team.  buf holds mlcrt_conv2d_pool_images(N, chunk, members) images
 * of the result (OC * OH * OW floats each), scratch
 * mlcrt_conv2d_pool_scratch bytes (for N its largest batch).  The
 * epilogue sees buf's rows n * OC + oc (n counted from buf's start), so it
 * may read per-channel values but nothing indexed by image.  The same bits
 * as the convolution of the whole batch, then the pool. */
int64_t mlcrt_conv2d_pool_images(int64_t N, int64_t chunk, int nthreads);
size_t mlcrt_conv2d_pool_scratch(const mlcrt_conv2d_params *p, int64_t chunk, int nthreads);
void mlcrt_conv2d_pool_f32(mlcrt_team *team, const mlcrt_conv2d_params *p, const float *x,
                           const float *w, const float *b, void *scratch,
                           const mlcrt_epilogue *epi, const mlcrt_pool2d_params *pp, int avg,
                           int64_t chunk, float *buf, float *y);
void mlcrt_adaptive_avg_pool2d_f32(int64_t N, int64_t C, int64_t H, int64_t W, int64_t OH,
                                   int64_t OW, const float *x, float *y);
/* The sum of n floats in four double lanes (reductions of generated code). */
double mlcrt_sum_f32(const float *x, int64_t n);
/* Softmax (or log-softmax when log != 0) over the middle dim of [outer, n, inner]. */
void mlcrt_softmax_f32(const float *x, int64_t outer, int64_t n, int64_t inner, int log, float *y);

/* ---- indexing (index.c): any dtype, elem bytes per element ------------------ */
/* y[o, j, :] = x[o, index[j], :] over x [outer, n, inner] (index i64 when
 * index_i64, else i32).  Returns 0, or 1 with *bad = an index outside 0..n-1
 * (then y is untouched).  embedding is index_select of dim 0 of the table. */
int mlcrt_index_select(const void *x, size_t elem, int64_t outer, int64_t n, int64_t inner, const void *index,
                       int index_i64, int64_t nindex, void *y, int64_t *bad);
/* Integer pow as PyTorch: wraps on overflow; a negative exponent gives 0
 * except for bases 1 and -1. */
int64_t mlcrt_ipow(int64_t base, int64_t exp);
/* The gradient of index_select (float32): dx = 0, dx[o, index[j], :] += dy[o, j, :]. */
void mlcrt_index_select_dx_f32(const float *dy, int64_t outer, int64_t n, int64_t inner, const void *index,
                               int index_i64, int64_t nindex, float *dx);

/* ---- normalisation (norm.c); weight and bias may be NULL ------------------- */
/* batch_norm with running statistics over x [N, C, inner]. */
void mlcrt_batch_norm_f32(mlcrt_team *team, const float *x, int64_t N, int64_t C, int64_t inner, const float *mean,
                          const float *var, const float *w, const float *b, float eps, float *y);
/* layer_norm (rms == 0) or rms_norm (rms != 0, b unused) over each row of M
 * trailing elements; w and b hold M values. */
void mlcrt_layer_norm_f32(mlcrt_team *team, const float *x, int64_t rows, int64_t M, const float *w, const float *b,
                          float eps, int rms, float *y);
/* group_norm over x [N, C, inner] with G groups; w and b hold C values. */
void mlcrt_group_norm_f32(const float *x, int64_t N, int64_t C, int64_t inner, int64_t G,
                          const float *w, const float *b, float eps, float *y);

/* ---- transposed convolution (conv_transpose.c) ----------------------------- */
typedef struct mlcrt_conv_transpose2d_params {
  int64_t N, C, H, W;  /* input */
  int64_t OC, KH, KW;  /* weight [C, OC/groups, KH, KW] */
  int64_t OH, OW;      /* output */
  int64_t sh, sw, ph, pw, dh, dw, groups;
} mlcrt_conv_transpose2d_params;
void mlcrt_conv_transpose2d_f32(const mlcrt_conv_transpose2d_params *p, const float *x,
                                const float *w, const float *b, float *y);
/* Its input and weight gradients (dy [N, OC, OH, OW]; outputs overwritten). */
void mlcrt_conv_transpose2d_dx_f32(const mlcrt_conv_transpose2d_params *p, const float *dy, const float *w,
                                   float *dx);
void mlcrt_conv_transpose2d_dw_f32(const mlcrt_conv_transpose2d_params *p, const float *dy, const float *x,
                                   float *dw);

/* ---- attention (attention.c) ---------------------------------------------- */
/* q [batch..., Tq, D], k [batch..., Tk, D], v [batch..., Tk, Dv] -> y [batch..., Tq, Dv],
 * dense, or (forward only) with strided = 1 at the element strides
 * q_stride[]..y_stride[]: entries 0..nbatch-1 for the batch dims, nbatch for
 * the rows (Tq or Tk); the last dim is contiguous.  So q, k, v can be read
 * where a [B, T, 3 * H * D] projection put them (heads side by side) and y
 * written as [B, Tq, H, Dv], without copies.  y must not overlap q, k or v.
 * mask: NULL (mask == 0), bool bytes (1: keep where nonzero) or float (2:
 * added to the scores), read at element strides mask_stride[] along the
 * batch dims, then Tq, then Tk (0 where it broadcasts). */
typedef struct mlcrt_sdpa_params {
  int nbatch;
  int64_t batch[MLCRT_MAX_RANK];
  int64_t Tq, Tk, D, Dv;
  float scale;
  int causal; /* key j visible to query i iff j <= i */
  int mask;
  int64_t mask_stride[MLCRT_MAX_RANK];
  int strided;
  int64_t q_stride[MLCRT_MAX_RANK], k_stride[MLCRT_MAX_RANK], v_stride[MLCRT_MAX_RANK],
      y_stride[MLCRT_MAX_RANK];
} mlcrt_sdpa_params;
void mlcrt_sdpa_f32(mlcrt_team *team, const mlcrt_sdpa_params *p, const float *q, const float *k, const float *v,
                    const void *mask, float *y);
/* Its backward: y the forward output, dy its gradient; writes dq, dk, dv
 * (shapes of q, k, v), recomputing softmax rows (no Tq x Tk storage). */
void mlcrt_sdpa_bwd_f32(mlcrt_team *team, const mlcrt_sdpa_params *p, const float *q, const float *k, const float *v,
                        const void *mask, const float *y, const float *dy, float *dq, float *dk, float *dv);

/* ---- backward kernels and losses (runtime/grad.c) -------------------------- */
void mlcrt_linear_dw_f32(mlcrt_team *team, const float *dy, const float *x, int64_t M, int64_t N, int64_t K,
                         float *dw);
void mlcrt_max_pool2d_dx_f32(const mlcrt_pool2d_params *p, const float *dy, const float *x, float *dx);
/* The same with the planes split over team (may be NULL), then epi (may be
 * NULL) on dx viewed as [N * C, H * W]: on each plane as soon as it is final
 * (an elementwise tail such as relu's backward, while the plane is in
 * cache), on the thread that wrote it. */
void mlcrt_max_pool2d_dx_epi_f32(mlcrt_team *team, const mlcrt_pool2d_params *p, const float *dy,
                                 const float *x, float *dx, const mlcrt_epilogue *epi);
void mlcrt_avg_pool2d_dx_f32(const mlcrt_pool2d_params *p, const float *dy, float *dx);
void mlcrt_adaptive_avg_pool2d_dx_f32(int64_t N, int64_t C, int64_t H, int64_t W, int64_t OH, int64_t OW,
                                      const float *dy, float *dx);
void mlcrt_softmax_dx_f32(const float *dy, const float *y, int64_t outer, int64_t n, int64_t inner, int log,
                          float *dx);
void mlcrt_embedding_dw_f32(const float *dy, const void *ids, mlcrt_dtype idt, int64_t n, int64_t D, int64_t V,
                            float *dw);
/* Labels are u8, i32 or i64; one outside 0..C-1 is an error (MLCRT_EINVAL). */
int mlcrt_cross_entropy_f32(const float *logits, const void *labels, mlcrt_dtype ldt, int64_t N, int64_t C,
                            double smoothing, float *loss, char *err);
int mlcrt_cross_entropy_dx_f32(const float *dy, const float *logits, const void *labels, mlcrt_dtype ldt,
                               int64_t N, int64_t C, double smoothing, float *dx, char *err);

/* ---- train-mode normalisation, dropout and norm gradients (normgrad.c) ------ */
/* stats [2, C]: batch mean, then biased variance, per channel of x [N, C, inner]. */
void mlcrt_batch_norm_stats_f32(const float *x, int64_t N, int64_t C, int64_t inner, float *stats);
/* running = (1 - momentum) * running + momentum * batch (unbiased variance; count = N * inner). */
void mlcrt_batch_norm_update_f32(const float *stats, int64_t C, int64_t count, double momentum,
                                 float *running_mean, float *running_var);
void mlcrt_batch_norm_dx_f32(const float *dy, const float *x, int64_t N, int64_t C, int64_t inner,
                             const float *stats, const float *w, float eps, float *dx);
void mlcrt_batch_norm_dw_f32(const float *dy, const float *x, int64_t N, int64_t C, int64_t inner,
                             const float *stats, float eps, float *dw);
void mlcrt_layer_norm_dx_f32(const float *dy, const float *x, int64_t rows, int64_t M, const float *w,
                             float eps, int rms, float *dx);
void mlcrt_layer_norm_dw_f32(const float *dy, const float *x, int64_t rows, int64_t M, float eps, int rms,
                             float *dw);
void mlcrt_group_norm_dx_f32(const float *dy, const float *x, int64_t N, int64_t C, int64_t inner, int64_t G,
                             const float *w, float eps, float *dx);
void mlcrt_group_norm_dw_f32(const float *dy, const float *x, int64_t N, int64_t C, int64_t inner, int64_t G,
                             float eps, float *dw);
/* y = x * keep / (1 - p), keep drawn with probability 1 - p from a counter-based
 * generator keyed by (seed, step, key, element index): the same mask for the
 * same key on any machine and thread count.  Also the backward (x = dy). */
void mlcrt_dropout_f32(const float *x, int64_t n, double p, uint64_t seed, uint64_t step, uint64_t key, float *y);

/* ---- the training driver behind `mlc train` (runtime/trainloop.c) ----------- */
#define MLCRT_TRAIN_MAX_INPUTS 16
typedef struct mlcrt_train_input {
  const char *name;
  mlcrt_dtype dtype;
  int rank;
  /* dims[0] is the batch; dims[k] >= 0 is a fixed size, -(s+1) symbolic dim s */
  int64_t dims[MLCRT_MAX_RANK];
} mlcrt_train_input;

/* What the generated harness tells the driver: the inputs in train-step
 * order (model inputs, then the train section's) and wrappers around the
 * model's functions taking the symbolic dims as an array. */
typedef struct mlcrt_trainer {
  const char *model;
  int ninputs;
  const mlcrt_train_input *inputs;
  int nsyms, batch_sym;
  int64_t classes; /* > 0: the first output is [B, classes] f32 ... */
  int label_input; /* ... and inputs[label_input] holds integer labels */
  void *(*create)(const int64_t *maxdims);
  void (*destroy)(void *m);
  int (*init)(void *m, uint64_t seed);
  int (*load)(void *m, const char *path);
  int (*save)(void *m, const char *path);
  int (*load_checkpoint)(void *m, const char *path);
  int (*save_checkpoint)(void *m, const char *path);
  int64_t (*step)(void *m);
  int (*train_step)(void *m, const int64_t *dims, void *const *inputs, float *loss);
  int (*evaluate)(void *m, const int64_t *dims, void *const *inputs, float *loss, void *output0);
  const char *(*last_error)(void *m);
  int (*set_seed)(void *m, uint64_t seed); /* may be NULL: seeds dropout in train steps */
  /* libmlc (a model known only at run time): create through ctx instead of
   * create; NULL in generated harnesses */
  void *(*create_ctx)(void *ctx, const int64_t *maxdims);
  void *ctx;
} mlcrt_trainer;

/* Parses --data/--eval/--epochs/--batch/--shuffle/--seed/--save/--checkpoint/
 * --weights/--resume and trains; returns the process exit status. */
int mlcrt_train_main(const mlcrt_trainer *t, int argc, char **argv);

/* ---- vectorizable exp and tanh for generated elementwise loops -------------
 * libm's expf/tanhf are calls the C compiler cannot vectorize; these are
 * branch-free (selects are bit blends, see below), so a loop over them
 * becomes SIMD code at GCC -O3 or Clang -O2 under any FP flags.  Accuracy:
 * within 2 ulp of the exact result over the whole float range (tested in
 * test_rt_kernels against double precision), with IEEE special values as
 * libm: exp(NaN) = NaN, exp(+inf) = +inf, exp(-inf) = 0, overflow to +inf
 * above 88.72284, gradual underflow to denormals and 0; tanh(NaN) = NaN,
 * tanh(-0) = -0, tanh(+-inf) = +-1.  Cephes' polynomials (S. Moshier). */
#ifndef __CUDACC__
static inline float mlcrt__bits_to_f32(uint32_t u) {
  union { uint32_t u; float f; } v;
  v.u = u;
  return v.f;
}
static inline uint32_t mlcrt__f32_to_bits(float f) {
  union { uint32_t u; float f; } v;
  v.f = f;
  return v.u;
}

/* Branch-free on purpose: the selects below are bit blends on integer
 * compares, so that a compiler keeps every operation unconditional and
 * vectorises a loop calling these (with FP compares and ?:, gcc sinks each
 * arm into a branch and, under the default -ftrapping-math, cannot turn it
 * back into a select).  mlcrt__key orders floats as signed integers (NaNs
 * beyond the infinities); mlcrt__sel(c, a, b) is c ? a : b for c in {0, 1}. */
static inline int32_t mlcrt__key(float f) {
  const int32_t i = (int32_t)mlcrt__f32_to_bits(f);
  return i ^ (int32_t)((uint32_t)(i >> 31) & 0x7fffffffu);
}
static inline float mlcrt__sel(int c, float a, float b) {
  const uint32_t m = 0u - (uint32_t)c;
  return mlcrt__bits_to_f32((mlcrt__f32_to_bits(a) & m) | (mlcrt__f32_to_bits(b) & ~m));
}
static inline int mlcrt__isnan(float f) {
  return (mlcrt__f32_to_bits(f) & 0x7fffffffu) > 0x7f800000u;
}

static inline float mlcrt_expf(float x) {
  const int32_t k = mlcrt__key(x);
  const int nan = mlcrt__isnan(x);
  /* the integer conversion below needs a number in range */
  float xc = mlcrt__sel(k < mlcrt__key(-104.0f), -104.0f, x);
  xc = mlcrt__sel(k > mlcrt__key(89.0f), 89.0f, xc);
  xc = mlcrt__sel(nan, 0.0f, xc);
  /* x = n ln2 + r, |r| <= ln2 / 2 (n rounded by the 1.5 * 2^23 trick) */
  const float fn = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = (xc - fn * 0.693359375f) + fn * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e = p * r * r + r + 1.0f;
  /* times 2^n as two normal powers of two: n is in -150..129 */
  const int32_t n = (int32_t)fn, n1 = n / 2, n2 = n - n1;
  const float y = e * mlcrt__bits_to_f32((uint32_t)(n1 + 127) << 23) * mlcrt__bits_to_f32((uint32_t)(n2 + 127) << 23);
  float out = mlcrt__sel(k > mlcrt__key(88.7228394f), mlcrt__bits_to_f32(0x7f800000u), y);
  out = mlcrt__sel(k < mlcrt__key(-103.972084f), 0.0f, out);
  return mlcrt__sel(nan, x, out);
}

static inline float mlcrt_tanhf(float x) {
  const float ax = mlcrt__bits_to_f32(mlcrt__f32_to_bits(x) & 0x7fffffffu);
  /* small |x|: odd polynomial; else 1 - 2 / (e^{2|x|} + 1), which is 1 for
   * large |x| (e = inf gives 1 too) */
  const float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const float small = ax + ax * z * p;
  const float big = 1.0f - 2.0f / (mlcrt_expf(2.0f * ax) + 1.0f);
  /* tanh(|x|) (|x| < 0.625 compared as bits: both are non-negative); then
   * x's sign (odd, and -0 stays -0) */
  const float t = mlcrt__sel(mlcrt__f32_to_bits(ax) < mlcrt__f32_to_bits(0.625f), small, big);
  return mlcrt__bits_to_f32(mlcrt__f32_to_bits(t) | (mlcrt__f32_to_bits(x) & 0x80000000u));
}
#endif

#ifdef __cplusplus
}
#endif
#endif
