/* mlc.h — libmlc: the mlc compiler as a C library (ahead of time).
 *
 * Compiles an MDL model, given as a file or as text in memory, to the same C
 * files `mlc MODEL.mdl -o OUT.c` writes: OUT.c, OUT.h and, with embedded
 * weights, OUT_weights.c.  Diagnostics come back as text, in the format the
 * command line prints (FILE:LINE:COL: error: MESSAGE, the source line and a
 * caret).  Link with -lmlc -lmlcrt -lz -lm (CMake: mlc::mlc).
 *
 * Example:
 *     char *diag = NULL;
 *     mlc_options o = {0};                        // the defaults: -O2, the only model
 *     if (mlc_compile_file("net.mdl", "gen/net.c", &o, &diag) != MLC_OK)
 *       fprintf(stderr, "%s", diag);
 *     mlc_free(diag);
 *
 * The functions keep no state between calls and may be called from several
 * threads at once.  Not here yet: compiling to an in-process instance (JIT,
 * spec section 8); that is planned for a later version.
 */
#ifndef MLC_H
#define MLC_H

#ifdef __cplusplus
extern "C" {
#endif

/* Results: the exit statuses of the mlc command line. */
enum { MLC_OK = 0, MLC_ERROR = 1 /* an error in the model or a file */, MLC_EUSAGE = 2 /* a bad argument */ };

typedef struct mlc_options {
  const char *model;         /* --model NAME: the model to compile when there are several; NULL: the only one */
  int opt_level;             /* 0 (-O0: no buffer reuse) or 2 (-O2, the default); other values mean 2 */
  const char *embed_weights; /* --embed-weights: a safetensors file to embed as const data, or NULL */
} mlc_options;

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

/* Frees what the functions above return (NULL is allowed). */
void mlc_free(void *p);

/* The version, e.g. "0.1.0". */
const char *mlc_version(void);

#ifdef __cplusplus
}
#endif
#endif
