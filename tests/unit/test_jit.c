/* tests/unit/test_jit.c — libmlc's JIT (mlc.h) on the CPU (cmocka).
 *
 * Compiles small models from strings into this process and checks: the query
 * functions (inputs, outputs, dtypes, symbolic and compound dims), runs
 * against values computed here, dim binding and its messages, errors as
 * status + text (bad source, dims above their maximum, no train step), a
 * train step that lowers the loss and agrees with mlc_save/mlc_load, two
 * models of the same name side by side, and the cache: a second compile is
 * a hit, a damaged entry (truncated object, wrong checksum, an object that
 * matches its checksum but dlopen rejects) is rebuilt, and processes
 * compiling the same model at once into an empty cache all succeed.
 *
 * Each test uses its own cache directory ($MLC_CACHE_DIR) under /tmp.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "mlc.h"
#include "mlcc.h"

static const char *PAIR = "model pair {\n"
                          "  input  a: f32[B, 3]\n"
                          "  input  b: f32[B, 3]\n"
                          "  param  w: f32[3] = ones\n"
                          "  output y = a * w + b\n"
                          "  output r = reshape(a, [B * 3])\n"
                          "  output big = to_f32(a > b)\n"
                          "}\n";

static const char *LINEAR = "model lin {\n"
                            "  input  x: f32[N, 4]\n"
                            "  param  fc.weight: f32[3, 4] = kaiming_uniform\n"
                            "  param  fc.bias: f32[3] = zeros\n"
                            "  output logits = linear(x, fc.weight, fc.bias)\n"
                            "}\n"
                            "train lin {\n"
                            "  input  y: i64[N]\n"
                            "  loss   = cross_entropy(logits, y)\n"
                            "  optimizer = sgd(lr=0.5)\n"
                            "}\n";

static char cache[256];

/* A fresh cache directory for each test. */
static int setup(void **state) {
  (void)state;
  snprintf(cache, sizeof cache, "/tmp/test_jit.XXXXXX");
  if (!mkdtemp(cache)) return -1;
  setenv("MLC_CACHE_DIR", cache, 1);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", cache);
  return system(cmd);
}

static mlc_model *compile(const char *name, const char *src, char **diag_out) {
  char *diag = NULL;
  mlc_model *m = NULL;
  int rc = mlc_model_from_string(name, src, NULL, &m, &diag);
  if (rc != MLC_OK) fprintf(stderr, "%s", diag ? diag : "(no diagnostics)\n");
  assert_int_equal(rc, MLC_OK);
  assert_non_null(m);
  if (diag_out)
    *diag_out = diag;
  else
    mlc_free(diag);
  return m;
}

static void test_query(void **state) {
  (void)state;
  mlc_model *m = compile("pair.mdl", PAIR, NULL);
  assert_string_equal(mlc_model_name(m), "pair");
  assert_int_equal(mlc_num_dims(m), 1);
  assert_string_equal(mlc_dim_name(m, 0), "B");
  assert_null(mlc_dim_name(m, 1));
  assert_int_equal(mlc_count(m, MLC_INPUT), 2);
  assert_int_equal(mlc_count(m, MLC_OUTPUT), 3);
  assert_int_equal(mlc_count(m, MLC_TRAIN_INPUT), 0);
  assert_int_equal(mlc_count(m, MLC_TENSOR), 1);
  assert_int_equal(mlc_has_train_step(m), 0);
  mlc_tensor_info t;
  assert_int_equal(mlc_tensor(m, MLC_INPUT, 1, &t), MLC_OK);
  assert_string_equal(t.name, "b");
  assert_int_equal(t.dtype, MLCRT_F32);
  assert_int_equal(t.rank, 2);
  assert_int_equal(t.size[0], -1);
  assert_int_equal(t.dim_sym[0], 0);
  assert_int_equal(t.size[1], 3);
  assert_int_equal(t.dim_sym[1], -1);
  assert_string_equal(t.type, "f32[B, 3]");
  assert_int_equal(mlc_tensor(m, MLC_OUTPUT, 1, &t), MLC_OK); /* r: [B * 3], a compound dim */
  assert_string_equal(t.name, "r");
  assert_int_equal(t.rank, 1);
  assert_int_equal(t.size[0], -1);
  assert_int_equal(t.dim_sym[0], -1);
  int64_t dims[1] = {5}, shape[8];
  assert_int_equal(mlc_shape(m, MLC_OUTPUT, 1, dims, shape), 15);
  assert_int_equal(shape[0], 15);
  assert_int_equal(mlc_tensor(m, MLC_TENSOR, 0, &t), MLC_OK);
  assert_string_equal(t.name, "w");
  assert_int_equal(mlc_tensor(m, MLC_OUTPUT, 3, &t), MLC_EUSAGE);
  assert_int_equal(mlc_tensor(m, 7, 0, &t), MLC_EUSAGE);
  assert_int_equal(mlc_shape(m, MLC_OUTPUT, 0, NULL, shape), -1);
  mlc_model_free(m);
}

static void test_run(void **state) {
  (void)state;
  mlc_model *m = compile("pair.mdl", PAIR, NULL);
  int64_t maxd[1] = {4}, dims[1] = {2};
  mlc_instance *in = mlc_create(m, maxd, NULL);
  assert_non_null(in);
  assert_int_equal(mlc_init(in, 0), MLCRT_OK); /* w = ones */
  float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {0.5f, 3, -1, 4, 10, 0}, y[6], r[6], big[6];
  const void *inp[2] = {a, b};
  void *outp[3] = {y, r, big};
  assert_int_equal(mlc_run(in, dims, inp, outp), MLCRT_OK);
  for (int i = 0; i < 6; i++) {
    assert_true(y[i] == a[i] + b[i]);
    assert_true(r[i] == a[i]);
    assert_true(big[i] == (a[i] > b[i] ? 1.0f : 0.0f));
  }
  /* a dim above its maximum is an error with a message, as generated code says */
  dims[0] = 5;
  assert_int_equal(mlc_run(in, dims, inp, outp), MLCRT_EINVAL);
  assert_non_null(strstr(mlc_last_error(in), "B"));
  /* arrays the JIT checks itself */
  assert_int_equal(mlc_run(in, NULL, inp, outp), MLCRT_EINVAL);
  assert_non_null(strstr(mlc_last_error(in), "dims is NULL"));
  assert_int_equal(mlc_run(in, dims, NULL, outp), MLCRT_EINVAL);
  /* no train step */
  float loss;
  assert_int_equal(mlc_train_step(in, dims, inp, &loss), MLCRT_EUNSUPPORTED);
  assert_string_equal(mlc_last_error(in), "model pair has no train step");
  assert_int_equal(mlc_save_checkpoint(in, "/tmp/x"), MLCRT_EUNSUPPORTED);
  /* a later call clears the JIT's own message (the generated code's last
   * error stays, as generated code keeps it) */
  dims[0] = 1;
  assert_int_equal(mlc_run(in, dims, inp, outp), MLCRT_OK);
  assert_null(strstr(mlc_last_error(in), "no train step"));
  mlc_destroy(in);
  /* create without max dims */
  assert_null(mlc_create(m, NULL, NULL));
  assert_non_null(strstr(mlc_last_error(NULL), "max_dims is NULL"));
  mlc_model_free(m);
}

static void test_bind_dims(void **state) {
  (void)state;
  mlc_model *m = compile("pair.mdl", PAIR, NULL);
  float buf[12] = {0};
  mlcrt_array arr[2] = {{MLCRT_F32, 2, {4, 3}, buf, 48}, {MLCRT_F32, 2, {4, 3}, buf, 48}};
  int64_t dims[1] = {0};
  char err[MLCRT_ERRLEN];
  int bad = 7;
  assert_int_equal(mlc_bind_dims(m, arr, 2, dims, &bad, err), MLC_OK);
  assert_int_equal(dims[0], 4);
  assert_int_equal(bad, -1);
  arr[1].shape[0] = 3;
  assert_int_equal(mlc_bind_dims(m, arr, 2, dims, &bad, err), MLC_ERROR);
  assert_int_equal(bad, 1);
  assert_string_equal(err, "dim 0 of input 'b' is 3, but B = 4 (f32[B, 3])");
  arr[1].shape[0] = 4;
  arr[0].shape[1] = 2;
  assert_int_equal(mlc_bind_dims(m, arr, 2, dims, &bad, err), MLC_ERROR);
  assert_int_equal(bad, 0);
  assert_string_equal(err, "dim 1 of input 'a' is 2, expected 3 (f32[B, 3])");
  arr[0].dtype = MLCRT_I64;
  assert_int_equal(mlc_bind_dims(m, arr, 2, dims, &bad, err), MLC_ERROR);
  assert_string_equal(err, "input 'a' must be f32[B, 3], the file holds i64 with 2 dims");
  assert_int_equal(mlc_bind_dims(m, arr, 1, dims, &bad, err), MLC_EUSAGE);
  mlc_model_free(m);
}

static void test_diagnostics(void **state) {
  (void)state;
  char *diag = NULL;
  mlc_model *m = (mlc_model *)&diag; /* must become NULL */
  const char *bad = "model bad {\n  input x: f32[B, 3]\n  output y = nosuchop(x)\n}\n";
  assert_int_equal(mlc_model_from_string("bad.mdl", bad, NULL, &m, &diag), MLC_ERROR);
  assert_null(m);
  assert_non_null(diag);
  assert_non_null(strstr(diag, "bad.mdl:3:"));
  assert_non_null(strstr(diag, ": error: "));
  assert_non_null(strstr(diag, "nosuchop"));
  mlc_free(diag);
  assert_int_equal(mlc_model_from_file("/nonexistent/x.mdl", NULL, &m, &diag), MLC_ERROR);
  assert_non_null(strstr(diag, "/nonexistent/x.mdl"));
  mlc_free(diag);
  assert_int_equal(mlc_model_from_string("x.mdl", NULL, NULL, &m, &diag), MLC_EUSAGE);
  /* an unknown device */
  mlc_options o = {.device = 7};
  assert_int_equal(mlc_model_from_string("pair.mdl", PAIR, &o, &m, &diag), MLC_EUSAGE);
  assert_non_null(strstr(diag, "unknown device 7"));
  mlc_free(diag);
}

/* A train step lowers the loss; save and load round-trip the weights. */
static void test_train(void **state) {
  (void)state;
  mlc_model *m = compile("lin.mdl", LINEAR, NULL);
  assert_int_equal(mlc_has_train_step(m), 1);
  assert_int_equal(mlc_count(m, MLC_TRAIN_INPUT), 1);
  mlc_tensor_info t;
  mlc_tensor(m, MLC_TRAIN_INPUT, 0, &t);
  assert_string_equal(t.name, "y");
  assert_int_equal(t.dtype, MLCRT_I64);
  int64_t maxd[1] = {4}, dims[1] = {4};
  mlc_instance *a = mlc_create(m, maxd, NULL), *b = mlc_create(m, maxd, NULL);
  assert_non_null(a);
  assert_non_null(b);
  assert_int_equal(mlc_init(a, 1), MLCRT_OK);
  float x[16];
  for (int i = 0; i < 16; i++) x[i] = (float)((i * 7) % 5) - 2.0f;
  int64_t y[4] = {0, 1, 2, 1};
  const void *in[2] = {x, y};
  float first = 0, loss = 0;
  for (int step = 0; step < 20; step++) {
    assert_int_equal(mlc_train_step(a, dims, in, &loss), MLCRT_OK);
    if (step == 0) first = loss;
  }
  assert_true(loss < first * 0.8f);
  char path[300];
  snprintf(path, sizeof path, "%s/w.safetensors", cache);
  assert_int_equal(mlc_save(a, path), MLCRT_OK);
  assert_int_equal(mlc_load(b, path), MLCRT_OK);
  float la[12], lb[12];
  void *oa[1] = {la}, *ob[1] = {lb};
  assert_int_equal(mlc_run(a, dims, in, oa), MLCRT_OK);
  assert_int_equal(mlc_run(b, dims, in, ob), MLCRT_OK);
  assert_memory_equal(la, lb, sizeof la);
  /* checkpoints keep the step count: a resumed instance takes the same step */
  snprintf(path, sizeof path, "%s/c.safetensors", cache);
  assert_int_equal(mlc_save_checkpoint(a, path), MLCRT_OK);
  assert_int_equal(mlc_load_checkpoint(b, path), MLCRT_OK);
  float l1, l2;
  assert_int_equal(mlc_train_step(a, dims, in, &l1), MLCRT_OK);
  assert_int_equal(mlc_train_step(b, dims, in, &l2), MLCRT_OK);
  assert_true(l1 == l2);
  assert_int_equal(mlc_load(b, "/nonexistent.safetensors"), MLCRT_EIO);
  assert_non_null(strstr(mlc_last_error(b), "/nonexistent.safetensors"));
  mlc_destroy(a);
  mlc_destroy(b);
  mlc_model_free(m);
}

/* Two models named alike, loaded at once, each run its own code. */
static void test_side_by_side(void **state) {
  (void)state;
  mlc_model *m1 =
      compile("one.mdl", "model net {\n  input x: f32[2]\n  output y = x + 1.0\n}\n", NULL);
  mlc_model *m2 =
      compile("two.mdl", "model net {\n  input x: f32[2]\n  output y = x * 3.0\n}\n", NULL);
  mlc_instance *i1 = mlc_create(m1, NULL, NULL), *i2 = mlc_create(m2, NULL, NULL);
  assert_non_null(i1);
  assert_non_null(i2);
  float x[2] = {1, 2}, y1[2], y2[2];
  const void *in[1] = {x};
  void *o1[1] = {y1}, *o2[1] = {y2};
  assert_int_equal(mlc_run(i1, NULL, in, o1), MLCRT_OK);
  assert_int_equal(mlc_run(i2, NULL, in, o2), MLCRT_OK);
  assert_true(y1[0] == 2 && y1[1] == 3);
  assert_true(y2[0] == 3 && y2[1] == 6);
  mlc_destroy(i1);
  mlc_destroy(i2);
  mlc_model_free(m1);
  mlc_model_free(m2);
}

/* The one entry directory of the cache (tests start from an empty cache). */
static void entry(char *dir, size_t n) {
  char cmd[400];
  snprintf(cmd, sizeof cmd, "ls -d '%s'/*/model.so", cache);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  assert_non_null(fgets(dir, (int)n, p));
  pclose(p);
  dir[strcspn(dir, "\n")] = 0;
  *strrchr(dir, '/') = 0;
}

static void write_bytes(const char *path, const char *bytes, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(bytes, 1, n, f), n);
  fclose(f);
}

/* Compiles PAIR through the internal API, to see whether it was cached. */
static bool compile_cached(void) {
  Arena *A = arena_new();
  Diag d = {0};
  Options o = {.opt_level = 2};
  Compiled *c = compile_source(A, source_from_string(A, "pair.mdl", PAIR), &o, false, &d);
  assert_non_null(c);
  JitCpu j;
  bool ok = jit_cpu_load(A, c, NULL, NULL, &j, &d);
  if (!ok) fprintf(stderr, "%s", d.buf);
  assert_true(ok);
  bool cached = j.cached;
  float a[3] = {1, 2, 3}, b[3] = {1, 1, 1}, y[3], r[3], big[3];
  int64_t one = 1;
  void *m = j.create(&one, NULL, (char[MLCRT_ERRLEN]){0});
  assert_non_null(m);
  j.init(m, 0);
  assert_int_equal(j.run(m, &one, (const void *[]){a, b}, (void *[]){y, r, big}), 0);
  assert_true(y[2] == 4.0f);
  j.destroy(m);
  jit_cpu_unload(&j);
  diag_free(&d);
  arena_free(A);
  return cached;
}

static void test_cache(void **state) {
  (void)state;
  assert_false(compile_cached()); /* built */
  assert_true(compile_cached());  /* then found */
  char dir[512], p[600];
  entry(dir, sizeof dir);
  /* a truncated object: its checksum no longer matches */
  snprintf(p, sizeof p, "%s/model.so", dir);
  assert_int_equal(truncate(p, 100), 0);
  assert_false(compile_cached());
  assert_true(compile_cached());
  /* a wrong checksum */
  snprintf(p, sizeof p, "%s/sum", dir);
  write_bytes(p, "12 0123456789abcdef\n", 20);
  assert_false(compile_cached());
  assert_true(compile_cached());
  /* no checksum at all */
  assert_int_equal(unlink(p), 0);
  assert_false(compile_cached());
  /* an object that matches its checksum but is not one: dlopen refuses it */
  const char junk[] = "this is not an ELF file";
  snprintf(p, sizeof p, "%s/model.so", dir);
  write_bytes(p, junk, sizeof junk);
  uint64_t h = build_hash(BUILD_HASH_INIT, junk, sizeof junk);
  char sum[64];
  int n = snprintf(sum, sizeof sum, "%zu %016llx\n", sizeof junk, (unsigned long long)h);
  snprintf(p, sizeof p, "%s/sum", dir);
  write_bytes(p, sum, (size_t)n);
  assert_false(compile_cached()); /* evicted, rebuilt */
  assert_true(compile_cached());
}

/* Processes compiling the same model into an empty cache at once. */
static void test_concurrent(void **state) {
  (void)state;
  enum { N = 4 };
  pid_t pid[N];
  for (int i = 0; i < N; i++) {
    pid[i] = fork();
    assert_true(pid[i] >= 0);
    if (pid[i] == 0) {
      char *diag = NULL;
      mlc_model *m = NULL;
      int rc = mlc_model_from_string("pair.mdl", PAIR, NULL, &m, &diag);
      float a[3] = {1, 2, 3}, b[3] = {4, 5, 6}, y[3], r[3], big[3];
      int64_t one = 1;
      mlc_instance *in = rc ? NULL : mlc_create(m, &one, NULL);
      bool ok = in && !mlc_init(in, 0) &&
                !mlc_run(in, &one, (const void *[]){a, b}, (void *[]){y, r, big}) && y[0] == 5.0f;
      if (!ok) fprintf(stderr, "child %d: %s\n", i, diag ? diag : "?");
      _exit(ok ? 0 : 1);
    }
  }
  for (int i = 0; i < N; i++) {
    int st;
    assert_int_equal(waitpid(pid[i], &st, 0), pid[i]);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  /* one entry, no temporary directory left behind */
  char cmd[400];
  snprintf(cmd, sizeof cmd, "test $(ls '%s' | wc -l) -eq 1", cache);
  assert_int_equal(system(cmd), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_query, setup, teardown),
      cmocka_unit_test_setup_teardown(test_run, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bind_dims, setup, teardown),
      cmocka_unit_test_setup_teardown(test_diagnostics, setup, teardown),
      cmocka_unit_test_setup_teardown(test_train, setup, teardown),
      cmocka_unit_test_setup_teardown(test_side_by_side, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cache, setup, teardown),
      cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
