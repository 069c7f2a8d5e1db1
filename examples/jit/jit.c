/* examples/jit/jit.c — runs any MDL model given at run time through libmlc's
 * JIT (mlc.h): no mlc command, no generated files, nothing known about the
 * model when this program was built.
 *
 *   mlc_jit MODEL.mdl [--weights W.safetensors] [--seed N] [--out DIR] NAME=FILE.npy ...
 *
 * Each input comes from a .npy file; each output is written to
 * DIR/<output>.npy (DIR defaults to the current directory).  Without
 * --weights the parameters come from the model's initialisers, seeded.
 * Exit status: 0, 1 on an error in the model or a file, 2 on a usage error.
 */
#include <mlc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(const char *msg) {
  fprintf(stderr,
          "mlc_jit: error: %s\n"
          "usage: mlc_jit MODEL.mdl [--weights W.safetensors] [--seed N] [--out DIR] NAME=FILE.npy "
          "...\n",
          msg);
  return 2;
}

int main(int argc, char **argv) {
  const char *mdl = NULL, *weights = NULL, *out_dir = ".";
  unsigned long long seed = 0;
  const char *args[64];
  int nargs = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--weights") && i + 1 < argc)
      weights = argv[++i];
    else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
      seed = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--out") && i + 1 < argc)
      out_dir = argv[++i];
    else if (argv[i][0] == '-')
      return usage("unknown option");
    else if (!mdl)
      mdl = argv[i];
    else if (nargs < 64 && strchr(argv[i], '='))
      args[nargs++] = argv[i];
    else
      return usage("inputs are NAME=FILE.npy");
  }
  if (!mdl) return usage("no model given");

  /* compile: parse, check, generate C, build it (or find it in the cache), load it */
  char *diag = NULL;
  mlc_model *model = NULL;
  if (mlc_model_from_file(mdl, NULL, &model, &diag) != MLC_OK) {
    fputs(diag ? diag : "mlc_jit: error: out of memory\n", stderr);
    mlc_free(diag);
    return 1;
  }
  fputs(diag, stderr); /* warnings, if any */
  mlc_free(diag);

  /* the inputs, in the model's order, and its symbolic dims bound from them */
  int nin = mlc_count(model, MLC_INPUT), nout = mlc_count(model, MLC_OUTPUT), status = 1;
  mlcrt_array *in = calloc((size_t)nin + 1, sizeof *in),
              *out = calloc((size_t)nout + 1, sizeof *out);
  const void **inp = calloc((size_t)nin + 1, sizeof *inp);
  void **outp = calloc((size_t)nout + 1, sizeof *outp);
  int64_t dims[16] = {0}, maxdims[16];
  char err[MLCRT_ERRLEN];
  mlc_tensor_info t;
  mlc_instance *m = NULL;
  if (!in || !out || !inp || !outp) goto done;
  for (int i = 0; i < nin; i++) {
    mlc_tensor(model, MLC_INPUT, i, &t);
    const char *path = NULL;
    for (int k = 0; k < nargs; k++)
      if (!strncmp(args[k], t.name, strlen(t.name)) && args[k][strlen(t.name)] == '=')
        path = args[k] + strlen(t.name) + 1;
    if (!path) {
      fprintf(stderr, "mlc_jit: error: no input %s=FILE.npy (%s: %s)\n", t.name, t.name, t.type);
      status = 2;
      goto done;
    }
    if (mlcrt_npy_read(path, &in[i], err)) {
      fprintf(stderr, "mlc_jit: error: %s\n", err);
      goto done;
    }
    inp[i] = in[i].data;
  }
  int bad = -1;
  if (mlc_bind_dims(model, in, nin, dims, &bad, err)) {
    fprintf(stderr, "mlc_jit: error: %s\n", err);
    goto done;
  }
  for (int i = 0; i < nout; i++) { /* output buffers from the shapes the dims give */
    mlc_tensor(model, MLC_OUTPUT, i, &t);
    out[i].dtype = t.dtype;
    out[i].rank = t.rank;
    out[i].nbytes =
        (size_t)mlc_shape(model, MLC_OUTPUT, i, dims, out[i].shape) * mlcrt_dtype_size(t.dtype);
    if (!(outp[i] = out[i].data = malloc(out[i].nbytes + 1))) goto done;
  }

  /* an instance sized for exactly these dims; weights; one run */
  for (int s = 0; s < mlc_num_dims(model); s++) maxdims[s] = dims[s] > 0 ? dims[s] : 1;
  m = mlc_create(model, maxdims, NULL);
  if (!m) {
    fprintf(stderr, "mlc_jit: error: %s\n", mlc_last_error(NULL));
    goto done;
  }
  if ((weights ? mlc_load(m, weights) : mlc_init(m, seed)) || mlc_run(m, dims, inp, outp)) {
    fprintf(stderr, "mlc_jit: error: %s\n", mlc_last_error(m));
    goto done;
  }
  for (int i = 0; i < nout; i++) {
    mlc_tensor(model, MLC_OUTPUT, i, &t);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.npy", out_dir, t.name);
    if (mlcrt_npy_write(path, &out[i], err)) {
      fprintf(stderr, "mlc_jit: error: %s\n", err);
      goto done;
    }
    printf("%s: %s -> %s\n", t.name, t.type, path);
  }
  status = 0;
done:
  mlc_destroy(m);
  for (int i = 0; in && i < nin; i++) mlcrt_array_free(&in[i]);
  for (int i = 0; out && i < nout; i++) free(out[i].data);
  free(in);
  free(out);
  free(inp);
  free(outp);
  mlc_model_free(model);
  return status;
}
