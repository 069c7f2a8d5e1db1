/* mlc.h — libmlc: the mlc compiler as a C library.
 *
 * Two ways to use it:
 *   - ahead of time: compile an MDL model, given as a file or as text in
 *     memory, to the same C files `mlc MODEL.mdl -o OUT.c` writes
 *     (mlc_compile_file, mlc_compile_string);
 *   - JIT (spec section 8): compile a model at run time into this process
 *     (mlc_model_from_file, mlc_model_from_string) and run it through an
 *     instance with the functions generated code has (mlc_create, mlc_load,
 *     mlc_save, mlc_init, mlc_run, mlc_train_step, mlc_last_error,
 *     mlc_destroy), with generic signatures: the symbolic dims as an array,
 *     inputs and outputs as arrays of pointers.  Query functions describe
 *     the model's inputs and outputs, so a program that knows nothing about
 *     the model can allocate its buffers.
 * Diagnostics come back as text, in the format the command line prints
 * (FILE:LINE:COL: error: MESSAGE, the source line and a caret).  Link with
 * -lmlc -lmlcrt -lz -lm -ldl (CMake: mlc::mlc).
 *
 * The CPU JIT builds the generated C with the system C compiler ($CC, else
 * cc) into a shared object cached on disk ($MLC_CACHE_DIR, else
 * $XDG_CACHE_HOME/mlc, else ~/.cache/mlc) and loads it with dlopen: a warm
 * start costs no compiler run.  See docs/jit.md.
 *
 * Example (JIT):
 *     char *diag = NULL;
 *     mlc_model *net = NULL;
 *     if (mlc_model_from_file("net.mdl", NULL, &net, &diag) != MLC_OK) {
 *       fprintf(stderr, "%s", diag);                 // net.mdl:3:9: error: ...
 *       ...
 *     }
 *     mlc_free(diag);
 *     int64_t max_dims[] = {64};                    // B <= 64
 *     mlc_instance *m = mlc_create(net, max_dims, NULL);
 *     if (!m || mlc_load(m, "net.safetensors")) fprintf(stderr, "%s\n", mlc_last_error(m));
 *     int64_t dims[] = {8};                         // this batch: B = 8
 *     const void *in[] = {pixels};                  // u8[B, 1, 28, 28]
 *     void *out[] = {logits};                       // f32[B, 10]
 *     if (mlc_run(m, dims, in, out)) fprintf(stderr, "%s\n", mlc_last_error(m));
 *     mlc_destroy(m);
 *     mlc_model_free(net);
 *
 * The functions keep no state between calls and may be called from several
 * threads at once; one instance is used by one thread at a time.
 */
#ifndef MLC_H
#define MLC_H

#include <mlcrt.h> /* mlcrt_options, MLCRT_CPU, MLCRT_CUDA, mlcrt_array, statuses */
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Results: the exit statuses of the mlc command line. */
enum { MLC_OK = 0, MLC_ERROR = 1 /* an error in the model or a file */, MLC_EUSAGE = 2 /* a bad argument */ };

typedef struct mlc_options {
  const char *model;         /* --model NAME: the model to compile when there are several; NULL: the only one */
  int opt_level;             /* 0 (-O0: no fusion, no buffer reuse) or 2 (-O2, the default); other values mean 2 */
  const char *embed_weights; /* --embed-weights: a safetensors file to embed as const data, or NULL */
  int no_pack_weights;       /* --no-pack-weights: at -O2, run packs weights per call instead of keeping
                                them packed (about their size again in memory) */
  /* JIT only (mlc_model_from_*): */
  uint64_t seed; /* --seed: the dropout seed a new instance's train steps start from (mlc_init and
                    mlc_set_seed change it) */
  int device;    /* --device: MLCRT_CPU (0, the default) or MLCRT_CUDA */
  int precision; /* --precision, CUDA GEMMs: 0 IEEE float32 (the default) or 1 TF32 tensor cores */
} mlc_options;

/* ---- ahead of time: write C files -------------------------------------------- */

/* Compiles the MDL file mdl_path and writes out_c (which must end in ".c"),
 * its header (".h" instead of ".c") and, with o->embed_weights, the weights
 * translation unit (out_c without ".c" plus "_weights.c").  o may be NULL.
 * Returns MLC_OK or an error status.  If diagnostics is not NULL, *diagnostics
 * receives the messages (warnings too; "" when there are none), to be freed
 * with mlc_free, or NULL when out of memory. */
int mlc_compile_file(const char *mdl_path, const char *out_c, const mlc_options *o, char **diagnostics);

/* The same for an MDL source held in memory; name is the file name the
 * diagnostics give (e.g. "net.mdl"). */
int mlc_compile_string(const char *name, const char *source, const char *out_c, const mlc_options *o,
                       char **diagnostics);

/* ---- JIT: a model compiled into this process ---------------------------------- */

typedef struct mlc_model mlc_model;       /* compiled code and its description; immutable */
typedef struct mlc_instance mlc_instance; /* weights, optimizer state, the arena */

/* Parses, checks and compiles the model (options as for mlc_compile_file, o
 * may be NULL) and loads its code.  On success *out is the model, to be freed
 * with mlc_model_free after its instances.  Diagnostics as above.  Asking for
 * o->device == MLCRT_CUDA where there is no CUDA driver or device is an
 * MLC_ERROR whose diagnostics say so. */
int mlc_model_from_file(const char *mdl_path, const mlc_options *o, mlc_model **out, char **diagnostics);
int mlc_model_from_string(const char *name, const char *source, const mlc_options *o, mlc_model **out,
                          char **diagnostics);
void mlc_model_free(mlc_model *model);

/* What a model computes.  Kinds of tensors: */
enum {
  MLC_INPUT = 0,       /* the model's inputs, in declaration order (mlc_run's in[]) */
  MLC_OUTPUT = 1,      /* its outputs (mlc_run's out[]) */
  MLC_TRAIN_INPUT = 2, /* the train section's inputs (mlc_train_step's in[] after the model's) */
  MLC_TENSOR = 3       /* params and buffers: the names of the weights file */
};
typedef struct mlc_tensor_info {
  const char *name;
  mlcrt_dtype dtype;
  int rank;
  /* per dim: its size when constant, else -1 (then see dim_sym / mlc_shape) */
  int64_t size[MLCRT_MAX_RANK];
  /* per dim: the symbolic dim (index for mlc_dim_name) the dim is exactly,
   * else -1 (a constant, or an expression such as B*T) */
  int dim_sym[MLCRT_MAX_RANK];
  const char *type; /* as the compiler prints it: "f32[B, 784]" */
} mlc_tensor_info;

const char *mlc_model_name(const mlc_model *model);
int mlc_num_dims(const mlc_model *model);                  /* symbolic dims (B, T, ...) */
const char *mlc_dim_name(const mlc_model *model, int dim); /* in order of first appearance */
int mlc_count(const mlc_model *model, int kind);           /* tensors of a kind */
int mlc_has_train_step(const mlc_model *model);            /* 1 with a train section, else 0 */
/* Fills *info for tensor i of a kind; MLC_OK or MLC_EUSAGE (no such tensor). */
int mlc_tensor(const mlc_model *model, int kind, int i, mlc_tensor_info *info);
/* The shape of tensor i of a kind for given symbolic dims (dims[k] for dim
 * k; may be NULL when there are none): writes rank sizes, returns the number
 * of elements, or -1 on a bad argument. */
int64_t mlc_shape(const mlc_model *model, int kind, int i, const int64_t *dims, int64_t *shape);
/* Binds the symbolic dims (dims[k] for dim k) from arrays for the model's
 * inputs (n arrays: the MLC_INPUT tensors, then the MLC_TRAIN_INPUT ones when
 * n counts those too; e.g. from mlcrt_npy_read) and checks every array's
 * dtype and shape as `mlc run` does.  Returns MLC_OK, or MLC_ERROR with the
 * index of the offending array in *bad (may be NULL) and a message in err
 * (MLCRT_ERRLEN bytes, may be NULL) such as "input 'x' must be
 * u8[B, 1, 28, 28], the file holds f32 with 2 dims"; MLC_EUSAGE for a bad n. */
int mlc_bind_dims(const mlc_model *model, const mlcrt_array *arrays, int n, int64_t *dims, int *bad, char *err);

/* ---- JIT: instances (the generated API with generic signatures) ----------------
 * Every function returns MLCRT_OK (0) or an MLCRT_E* status with the reason in
 * mlc_last_error(m), and never aborts the process. */

/* Creates an instance on opts->device (opts may be NULL: CPU, default thread
 * count).  max_dims[k] bounds symbolic dim k (NULL when there are none); they
 * size the one arena, nothing is allocated after create.  Weights start as
 * those embedded with embed_weights, else zeros, until mlc_init or mlc_load.
 * Returns NULL on failure, with the reason in mlc_last_error(NULL). */
mlc_instance *mlc_create(const mlc_model *model, const int64_t *max_dims, const mlcrt_options *opts);
int mlc_load(mlc_instance *m, const char *safetensors_path);
int mlc_save(const mlc_instance *m, const char *safetensors_path);
int mlc_init(mlc_instance *m, uint64_t seed); /* the spec's initialisers; also seeds dropout */
/* Runs the model: dims[k] the value of symbolic dim k (at most its maximum),
 * in[i] the MLC_INPUT arrays, out[i] the MLC_OUTPUT arrays (written): dense,
 * C order, element type as the dtype says (f16/bf16: uint16_t bits). */
int mlc_run(mlc_instance *m, const int64_t *dims, const void *const *in, void *const *out);
/* One train step (forward, backward, optimizer update): in[] holds the
 * MLC_INPUT arrays, then the MLC_TRAIN_INPUT ones.  Writes the loss before the
 * update; a non-finite loss returns MLCRT_ENUMERIC and changes nothing.
 * MLCRT_EUNSUPPORTED without a train step. */
int mlc_train_step(mlc_instance *m, const int64_t *dims, const void *const *in, float *loss);
/* Checkpoints (params, buffers, optimizer state, step count) and the dropout
 * seed; MLCRT_EUNSUPPORTED without a train step. */
int mlc_save_checkpoint(const mlc_instance *m, const char *path);
int mlc_load_checkpoint(mlc_instance *m, const char *path);
int mlc_set_seed(mlc_instance *m, uint64_t seed);
/* Why the last call on m failed; with m == NULL, why the last mlc_create of
 * this thread failed. */
const char *mlc_last_error(const mlc_instance *m);
void mlc_destroy(mlc_instance *m);

/* Frees what the functions above return (NULL is allowed). */
void mlc_free(void *p);

/* The version, e.g. "0.1.0". */
const char *mlc_version(void);

#ifdef __cplusplus
}
#endif
#endif
