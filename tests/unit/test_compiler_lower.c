/* tests/unit/test_compiler_lower.c — unit tests of lowering and shape/dtype
 * inference (compiler/lower.c, compiler/infer.c; cmocka).
 *
 * Small MDL sources are compiled from strings (source_from_string +
 * parse_source + lower_model + infer_graph) and the IR is checked: node ops,
 * dtypes and shapes (through type_str, e.g. "f32[B, 784]"), symbols,
 * parameter paths of block instances and `{i}` interpolation, shadowing,
 * tuple results, PyTorch's type promotion, broadcasting, views, reductions,
 * conv/pool output sizes against PyTorch's formula, and the runtime DimChecks
 * recorded for symbolic dims.  Error cases check the message, FILE:LINE:COL,
 * the error count and that lower_model returns NULL.
 *
 * Standalone: link with mlccomp and -lcmocka, run without arguments.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "mlcc.h"

/* ---- helpers -------------------------------------------------------------------- */

typedef struct Low {
  Arena *A;
  Diag d;     /* diagnostics text in d.buf (not echoed) */
  Ast *file;  /* NULL on syntax errors */
  Graph *g;   /* NULL on errors */
} Low;

static const char *diag_text(const Low *l) { return l->d.buf ? l->d.buf : ""; }

/* Parses and lowers text as "test.mdl"; runs infer_graph on success. */
static Low *lower_src(const char *text, const char *model) {
  Low *l = calloc(1, sizeof *l);
  l->A = arena_new();
  Source *src = source_from_string(l->A, "test.mdl", text);
  l->file = parse_source(l->A, src, &l->d);
  if (!l->file) return l;
  l->g = lower_model(l->A, l->file, model, &l->d);
  if (l->g && !infer_graph(l->g, &l->d)) {
    print_error("infer_graph failed after lower_model succeeded:\n%s\n", diag_text(l));
    fail();
  }
  return l;
}

static void done(Low *l) {
  diag_free(&l->d);
  arena_free(l->A);
  free(l);
}

static Low *lower_ok(const char *text) {
  Low *l = lower_src(text, NULL);
  if (!l->file) {
    print_error("syntax errors:\n%s\nin:\n%s\n", diag_text(l), text);
    fail();
  }
  if (!l->g || l->d.nerrors) {
    print_error("unexpected errors:\n%s\nin:\n%s\n", diag_text(l), text);
    fail();
  }
  return l;
}

static void expect_in(const char *hay, const char *needle) {
  if (!strstr(hay, needle)) {
    print_error("expected to find:\n%s\nin:\n%s\n", needle, hay);
    fail();
  }
}

static int count_of(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
  return n;
}

/* Lowers text that must fail with exactly n errors; each wanted string
 * ("LINE:COL: error: message") must appear in the diagnostics. */
static void expect_errors(const char *text, int n, ...) {
  Low *l = lower_src(text, NULL);
  assert_non_null(l->file); /* these are not syntax errors */
  if (l->g) {
    print_error("lower_model should have returned NULL for:\n%s\n", text);
    fail();
  }
  if (l->d.nerrors != n) {
    print_error("want %d errors, got %d:\n%s\n", n, l->d.nerrors, diag_text(l));
    fail();
  }
  va_list ap;
  va_start(ap, n);
  for (const char *want; (want = va_arg(ap, const char *));) {
    char full[512];
    snprintf(full, sizeof full, "test.mdl:%s", want);
    expect_in(diag_text(l), full);
  }
  va_end(ap);
  done(l);
}

static const char *tys(Low *l, int id) { return type_str(l->A, l->g, &l->g->nodes[id].ty); }

static void expect_type(Low *l, int id, const char *want) {
  assert_true(id >= 0 && id < l->g->n);
  const char *got = tys(l, id);
  if (strcmp(got, want) != 0) {
    print_error("node %%%d (%s): want %s, got %s\n", id, op_info[l->g->nodes[id].op].name, want, got);
    fail();
  }
}

static int output_node(Low *l, const char *name) {
  for (int i = 0; i < l->g->noutputs; i++)
    if (strcmp(l->g->outputs[i].name, name) == 0) return l->g->outputs[i].node;
  print_error("no output '%s'\n", name);
  fail();
  return -1;
}

static int tensor_node(Low *l, const char *path) {
  for (int i = 0; i < l->g->ntensors; i++)
    if (strcmp(l->g->nodes[l->g->tensors[i]].name, path) == 0) return l->g->tensors[i];
  print_error("no param or buffer '%s'\n", path);
  fail();
  return -1;
}

/* `model m { DECLS \n output r = EXPR }`: the type of r must be want. */
static void expect_expr_type(const char *decls, const char *expr, const char *want) {
  char text[4096];
  snprintf(text, sizeof text, "model m {\n%s\n  output r = %s\n}\n", decls, expr);
  Low *l = lower_ok(text);
  int r = output_node(l, "r");
  const char *got = tys(l, r);
  if (strcmp(got, want) != 0) {
    print_error("%s: want %s, got %s\n", expr, want, got);
    fail();
  }
  done(l);
}

/* ---- the spec's examples ---------------------------------------------------------- */

static const char *const spec_fashion =
    "model fashion_mlp {\n"
    "  input  x: u8[B, 1, 28, 28]                 # raw pixels; B is a symbolic dim\n"
    "  param  fc1.weight: f32[256, 784] = kaiming_uniform\n"
    "  param  fc1.bias:   f32[256]      = zeros\n"
    "  param  fc2.weight: f32[10, 256]  = kaiming_uniform\n"
    "  param  fc2.bias:   f32[10]       = zeros\n"
    "\n"
    "  h = to_f32(x) / 255.0\n"
    "  h = relu(linear(flatten(h), fc1.weight, fc1.bias))\n"
    "  output logits = linear(h, fc2.weight, fc2.bias)\n"
    "}\n"
    "\n"
    "train fashion_mlp {\n"
    "  input  y: u8[B]\n"
    "  loss   = cross_entropy(logits, y)\n"
    "  optimizer = sgd(lr=0.05, momentum=0.9)\n"
    "}\n";

static void test_spec_fashion_mlp(void **state) {
  (void)state;
  Low *l = lower_ok(spec_fashion);
  Graph *g = l->g;
  assert_string_equal(g->name, "fashion_mlp");
  assert_true(g->has_train);
  assert_int_equal(g->nsym, 1);
  assert_string_equal(g->sym[1], "B");
  assert_int_equal(g->ninputs, 1);
  assert_int_equal(g->ntensors, 4);
  assert_int_equal(g->noutputs, 1);
  assert_int_equal(g->nchecks, 0);
  /* the model, then its train section (label input, loss) */
  static const Op ops[] = {OP_INPUT, OP_PARAM, OP_PARAM, OP_PARAM, OP_PARAM, OP_TO_F32, OP_CONST,
                           OP_DIV, OP_FLATTEN, OP_LINEAR, OP_RELU, OP_LINEAR, OP_INPUT, OP_CROSS_ENTROPY};
  static const char *const types[] = {"u8[B, 1, 28, 28]", "f32[256, 784]", "f32[256]", "f32[10, 256]",
                                      "f32[10]", "f32[B, 1, 28, 28]", "f32[]", "f32[B, 1, 28, 28]",
                                      "f32[B, 784]", "f32[B, 256]", "f32[B, 256]", "f32[B, 10]",
                                      "u8[B]", "f32[]"};
  assert_int_equal(g->ntrain_inputs, 1);
  assert_int_equal(g->loss, 13);
  assert_int_equal(g->train_begin, 12);
  assert_int_equal(g->opt.kind, OPT_SGD);
  assert_true(g->opt.lr == 0.05 && g->opt.momentum == 0.9);
  assert_int_equal(g->n, (int)(sizeof ops / sizeof ops[0]));
  for (int i = 0; i < g->n; i++) {
    assert_int_equal(g->nodes[i].op, ops[i]);
    expect_type(l, i, types[i]);
  }
  /* inputs and params in declaration order, with names and initialisers */
  assert_int_equal(g->inputs[0], 0);
  assert_string_equal(g->nodes[0].name, "x");
  static const char *const paths[] = {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"};
  static const InitKind inits[] = {INIT_KAIMING, INIT_ZEROS, INIT_KAIMING, INIT_ZEROS};
  for (int t = 0; t < 4; t++) {
    assert_int_equal(g->tensors[t], 1 + t);
    assert_string_equal(g->nodes[1 + t].name, paths[t]);
    assert_int_equal(g->nodes[1 + t].init, inits[t]);
  }
  /* h = to_f32(x) / 255.0: a weak constant 255 */
  assert_true(g->nodes[6].weak);
  assert_true(g->nodes[6].fa[0] == 255.0);
  assert_int_equal(g->nodes[7].in[0], 5);
  assert_int_equal(g->nodes[7].in[1], 6);
  /* the second h reads the first (shadowing) */
  assert_int_equal(g->nodes[8].in[0], 7);
  assert_int_equal(g->nodes[9].nin, 3);
  assert_int_equal(g->nodes[9].in[0], 8);
  assert_int_equal(g->nodes[9].in[1], 1);
  assert_int_equal(g->nodes[9].in[2], 2);
  assert_string_equal(g->outputs[0].name, "logits");
  assert_int_equal(g->outputs[0].node, 11);
  assert_string_equal(g->nodes[11].hint, "logits");
  assert_string_equal(g->nodes[10].hint, "h");
  /* locations point into the source */
  assert_int_equal(g->nodes[0].loc.line, 2);
  assert_int_equal(g->nodes[11].loc.line, 10);
  done(l);
}

static const char *const spec_tiny =
    "block mlp(x: f32[..., D], hidden: int) -> y {\n"
    "  param fc.weight:   f32[hidden, D] = kaiming_uniform\n"
    "  param fc.bias:     f32[hidden]    = zeros\n"
    "  param proj.weight: f32[D, hidden] = kaiming_uniform\n"
    "  param proj.bias:   f32[D]         = zeros\n"
    "  y = linear(gelu(linear(x, fc.weight, fc.bias)), proj.weight, proj.bias)\n"
    "}\n"
    "\n"
    "model tiny {\n"
    "  input x: f32[B, T, 64]\n"
    "  repeat i in 0..2 {\n"
    "    x = x + mlp(x, hidden=256) as blocks.{i}.mlp   # params blocks.0.mlp.fc.weight, ...\n"
    "  }\n"
    "  output x\n"
    "}\n";

/* The spec's tiny example verbatim: it uses gelu, which may not have a CPU
 * forward yet; then lowering must say so at the call, else it must type. */
static void test_spec_tiny(void **state) {
  (void)state;
  Low *l = lower_src(spec_tiny, NULL);
  if (op_info[OP_GELU].flags & F_CPU) {
    assert_non_null(l->g);
    assert_int_equal(l->g->ntensors, 8);
    expect_type(l, output_node(l, "x"), "f32[B, T, 64]");
  } else {
    assert_null(l->g);
    assert_int_equal(l->d.nerrors, 1);
    expect_in(diag_text(l), "test.mdl:6:14: error: operator 'gelu' is not implemented yet");
  }
  done(l);
}

static void test_block_repeat_paths(void **state) {
  (void)state;
  char text[2048];
  snprintf(text, sizeof text, "%s", spec_tiny);
  char *gelu = strstr(text, "gelu");
  memcpy(gelu, "relu", 4);
  Low *l = lower_ok(text);
  Graph *g = l->g;
  assert_int_equal(g->nsym, 2);
  assert_string_equal(g->sym[1], "B");
  assert_string_equal(g->sym[2], "T");
  assert_int_equal(g->ntensors, 8);
  static const char *const paths[] = {"blocks.0.mlp.fc.weight", "blocks.0.mlp.fc.bias",
                                      "blocks.0.mlp.proj.weight", "blocks.0.mlp.proj.bias",
                                      "blocks.1.mlp.fc.weight", "blocks.1.mlp.fc.bias",
                                      "blocks.1.mlp.proj.weight", "blocks.1.mlp.proj.bias"};
  static const char *const types[] = {"f32[256, 64]", "f32[256]", "f32[64, 256]", "f32[64]"};
  for (int t = 0; t < 8; t++) {
    int id = g->tensors[t];
    assert_int_equal(g->nodes[id].op, OP_PARAM);
    assert_string_equal(g->nodes[id].name, paths[t]);
    expect_type(l, id, types[t % 4]);
    assert_int_equal(g->nodes[id].loc.line, 2 + t % 4); /* declared in the block */
  }
  assert_int_equal(g->nodes[tensor_node(l, "blocks.1.mlp.fc.weight")].init, INIT_KAIMING);
  /* output x is the second iteration's add, which reads the first's */
  int out = output_node(l, "x");
  assert_int_equal(g->nodes[out].op, OP_ADD);
  expect_type(l, out, "f32[B, T, 64]");
  int first = g->nodes[out].in[0];
  assert_int_equal(g->nodes[first].op, OP_ADD);
  assert_int_equal(g->nodes[first].in[0], 0);
  assert_true(first < tensor_node(l, "blocks.1.mlp.fc.weight"));
  /* the block's linear layers are typed over the leading dims */
  int lin = g->nodes[out].in[1];
  assert_int_equal(g->nodes[lin].op, OP_LINEAR);
  expect_type(l, lin, "f32[B, T, 64]");
  expect_type(l, g->nodes[g->nodes[lin].in[0]].in[0], "f32[B, T, 256]");
  assert_int_equal(g->nchecks, 0);
  done(l);
}

static void test_block_instances_nested_and_tuples(void **state) {
  (void)state;
  Low *l = lower_ok("block conv(x: f32[N, C, H, W], oc: int) -> y {\n"
                    "  param weight: f32[oc, C, 3, 3] = kaiming_uniform\n"
                    "  y = conv2d(x, weight, padding=1)\n"
                    "}\n"
                    "block stage(x: f32[N, C, H, W]) -> y, z {\n"
                    "  h = conv(x, oc=4) as conv.0\n"
                    "  y = h\n"
                    "  z = relu(h) * 2.0\n"
                    "}\n"
                    "model m {\n"
                    "  input x: f32[B, 3, 8, 8]\n"
                    "  h = x\n"
                    "  repeat i in 0..2 {\n"
                    "    param layers.{i}.w: f32[3]\n"
                    "  }\n"
                    "  a, b = stage(x) as features.3\n"
                    "  c, d = stage(x)\n"
                    "  e = conv(x, 5)\n"
                    "  output a\n"
                    "  output b\n"
                    "  output d\n"
                    "  output e\n"
                    "  output h\n"
                    "}\n");
  Graph *g = l->g;
  /* model-level repeat interpolates {i}; nested blocks append their paths;
   * a call without `as` takes the (first) assigned name */
  static const char *const paths[] = {"layers.0.w", "layers.1.w", "features.3.conv.0.weight",
                                      "c.conv.0.weight", "e.weight"};
  assert_int_equal(g->ntensors, 5);
  for (int t = 0; t < 5; t++) assert_string_equal(g->nodes[g->tensors[t]].name, paths[t]);
  expect_type(l, tensor_node(l, "features.3.conv.0.weight"), "f32[4, 3, 3, 3]");
  expect_type(l, tensor_node(l, "e.weight"), "f32[5, 3, 3, 3]");
  /* tuple results: a is the conv, b = relu(conv) * 2 */
  int a = output_node(l, "a"), b = output_node(l, "b"), d = output_node(l, "d");
  assert_int_equal(g->nodes[a].op, OP_CONV2D);
  assert_int_equal(g->nodes[a].in[1], tensor_node(l, "features.3.conv.0.weight"));
  expect_type(l, a, "f32[B, 4, 8, 8]");
  assert_int_equal(g->nodes[b].op, OP_MUL);
  assert_int_equal(g->nodes[g->nodes[b].in[0]].op, OP_RELU);
  assert_int_equal(g->nodes[g->nodes[b].in[0]].in[0], a);
  assert_int_equal(g->nodes[d].op, OP_MUL);
  assert_int_equal(g->nodes[g->nodes[g->nodes[d].in[0]].in[0]].in[1], tensor_node(l, "c.conv.0.weight"));
  expect_type(l, output_node(l, "e"), "f32[B, 5, 8, 8]");
  /* the block's local `h` did not leak into the model's scope */
  assert_int_equal(output_node(l, "h"), 0);
  done(l);
}

static void test_shadowing(void **state) {
  (void)state;
  Low *l = lower_ok("model m {\n"
                    "  input x: f32[B, 4]\n"
                    "  y = x\n"
                    "  x = relu(x)\n"
                    "  x = x * 2.0\n"
                    "  z = x - y\n"
                    "  output x\n"
                    "  output z\n"
                    "}\n");
  Graph *g = l->g;
  int x = output_node(l, "x"), z = output_node(l, "z");
  assert_int_equal(g->nodes[x].op, OP_MUL);
  int relu = g->nodes[x].in[0];
  assert_int_equal(g->nodes[relu].op, OP_RELU);
  assert_int_equal(g->nodes[relu].in[0], 0); /* relu reads the input */
  assert_int_equal(g->nodes[z].op, OP_SUB);
  assert_int_equal(g->nodes[z].in[0], x);   /* the latest x */
  assert_int_equal(g->nodes[z].in[1], 0);   /* y still names the input */
  assert_string_equal(g->nodes[0].name, "x");
  done(l);
}

static void test_symbols_and_dim_expressions(void **state) {
  (void)state;
  Low *l = lower_ok("model m {\n"
                    "  input x: f32[B, T, 16]\n"
                    "  input y: i64[T]\n"
                    "  const H = 4\n"
                    "  input z: f32[B, 2 * T + 1, H * 3]\n"
                    "  q = reshape(x, [B, T, H, 16 / H])\n"
                    "  output q\n"
                    "  output z\n"
                    "}\n");
  Graph *g = l->g;
  assert_int_equal(g->nsym, 2);
  assert_string_equal(g->sym[1], "B");
  assert_string_equal(g->sym[2], "T");
  assert_int_equal(g->ninputs, 3);
  expect_type(l, g->inputs[1], "i64[T]");
  const char *zt = tys(l, g->inputs[2]);
  if (strcmp(zt, "f32[B, (1 + 2*T), 12]") != 0 && strcmp(zt, "f32[B, (2*T + 1), 12]") != 0) {
    print_error("z: got %s\n", zt);
    fail();
  }
  expect_type(l, output_node(l, "q"), "f32[B, T, 4, 4]");
  done(l);
}

static void test_model_selection(void **state) {
  (void)state;
  const char *two = "model a {\n  input x: f32[B]\n  output x\n}\n"
                    "model b {\n  input y: i32[N, 2]\n  output y\n}\n";
  Low *l = lower_src(two, "b");
  assert_non_null(l->g);
  assert_string_equal(l->g->name, "b");
  assert_string_equal(l->g->sym[1], "N");
  done(l);
  l = lower_src(two, NULL);
  assert_null(l->g);
  assert_int_equal(l->d.nerrors, 1);
  expect_in(diag_text(l), "several models (a, b)");
  done(l);
  l = lower_src(two, "c");
  assert_null(l->g);
  expect_in(diag_text(l), "no model named 'c' in this file (models: a, b)");
  done(l);
  expect_errors("model m {\n  input x: f32[B]\n  y = x\n}\n", 1,
                "1:1: error: model 'm' has no outputs", NULL);
}

/* ---- dtypes: PyTorch's promotion ------------------------------------------------------- */

static const char *const all_dtypes = "  input a: u8[B]\n  input i: i32[B]\n  input l: i64[B]\n"
                                      "  input f: f32[B]\n  input h: f16[B]\n  input bo: bool[B]\n";

static void test_type_promotion(void **state) {
  (void)state;
  static const char *const cases[][2] = {
      {"a / 255.0", "f32[B]"},        {"to_f32(a) / 255.0", "f32[B]"}, {"a + 1", "u8[B]"},
      {"a * 2", "u8[B]"},             {"1 + a", "u8[B]"},              {"i + l", "i64[B]"},
      {"l + i", "i64[B]"},            {"a + i", "i32[B]"},             {"i + 2", "i32[B]"},
      {"l + 2", "i64[B]"},            {"i * 2.5", "f32[B]"},           {"l / 2", "f32[B]"},
      {"a / a", "f32[B]"},            {"i + f", "f32[B]"},             {"h + 1.0", "f16[B]"},
      {"h + f", "f32[B]"},            {"h + i", "f16[B]"},             {"bo + a", "u8[B]"},
      {"bo + 1", "i64[B]"},           {"bo + 1.5", "f32[B]"},          {"f + true", "f32[B]"},
      {"a < 3", "bool[B]"},           {"f == f", "bool[B]"},           {"i >= l", "bool[B]"},
      {"a != 2.5", "bool[B]"},        {"-a", "u8[B]"},                 {"-i", "i32[B]"},
      {"relu(i)", "i32[B]"},          {"abs(l)", "i64[B]"},            {"exp(i)", "f32[B]"},
      {"sigmoid(a)", "f32[B]"},       {"to_i32(f)", "i32[B]"},         {"to_bool(f)", "bool[B]"},
      {"to_u8(f)", "u8[B]"},          {"to_i64(bo) + 1", "i64[B]"},    {"sum(a)", "i64[]"},
      {"sum(i, dim=0)", "i64[]"},     {"sum(bo)", "i64[]"},            {"sum(f, dim=0)", "f32[]"},
      {"sum(l)", "i64[]"},            {"argmax(f)", "i64[]"},          {"argmin(a)", "i64[]"},
      {"max(a, dim=0)", "u8[]"},      {"min(i)", "i32[]"},             {"mean(f)", "f32[]"},
      {"argmax(f, dim=0, keepdim=true)", "i64[1]"},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
    expect_expr_type(all_dtypes, cases[c][0], cases[c][1]);
}

static void test_weak_constants(void **state) {
  (void)state;
  Low *l = lower_ok("model m {\n  input a: u8[B]\n  output r = a + 1\n  output s = a * 2.5\n}\n");
  Graph *g = l->g;
  int r = output_node(l, "r"), c = g->nodes[r].in[1];
  assert_int_equal(g->nodes[c].op, OP_CONST);
  assert_true(g->nodes[c].weak);
  assert_int_equal(g->nodes[c].ty.rank, 0);
  assert_true(g->nodes[c].fa[0] == 1.0);
  assert_false(g->nodes[r].weak);
  int s = output_node(l, "s"), c2 = g->nodes[s].in[1];
  assert_true(g->nodes[c2].fa[0] == 2.5);
  expect_type(l, s, "f32[B]");
  done(l);
}

/* ---- shapes ---------------------------------------------------------------------------- */

static void test_broadcasting(void **state) {
  (void)state;
  const char *decls = "  input p: f32[B, 1, 4]\n  input q: f32[3, 1]\n  input r4: f32[4]\n"
                      "  input bt: f32[B, T, 1]\n  input t5: f32[T, 5]\n  input one: f32[1]\n"
                      "  input s: f32[]\n  input b4: f32[B, 4]\n";
  static const char *const cases[][2] = {
      {"p + q", "f32[B, 3, 4]"},   {"q + p", "f32[B, 3, 4]"},    {"r4 + b4", "f32[B, 4]"},
      {"b4 * r4", "f32[B, 4]"},    {"s + b4", "f32[B, 4]"},      {"b4 - s", "f32[B, 4]"},
      {"bt * t5", "f32[B, T, 5]"}, {"one + b4", "f32[B, 4]"},    {"p + 1.0", "f32[B, 1, 4]"},
      {"p < q", "bool[B, 3, 4]"},  {"bt + one", "f32[B, T, 1]"}, {"s * s", "f32[]"},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    char text[2048];
    snprintf(text, sizeof text, "model m {\n%s  output r = %s\n}\n", decls, cases[c][0]);
    Low *l = lower_ok(text);
    expect_type(l, output_node(l, "r"), cases[c][1]);
    assert_int_equal(l->g->nchecks, 0); /* all provable at compile time */
    done(l);
  }
}

static void test_reshape_flatten(void **state) {
  (void)state;
  const char *img = "  input x: f32[B, 1, 28, 28]\n";
  static const char *const cases[][2] = {
      {"reshape(x, [B, -1])", "f32[B, 784]"},
      {"reshape(x, [-1, 784])", "f32[B, 784]"},
      {"reshape(x, [-1])", "f32[784*B]"},
      {"reshape(x, -1)", "f32[784*B]"},
      {"reshape(x, [B, 28, -1])", "f32[B, 28, 28]"},
      {"reshape(x, [B * 28, 28])", "f32[28*B, 28]"},
      {"reshape(x, [-1, 2, 14, 28])", "f32[B, 2, 14, 28]"},
      {"reshape(reshape(x, [B, -1]), [B, 1, 28, 28])", "f32[B, 1, 28, 28]"},
      {"flatten(x)", "f32[B, 784]"},
      {"flatten(x, 0)", "f32[784*B]"},
      {"flatten(x, 2)", "f32[B, 1, 784]"},
      {"flatten(x, 1, 2)", "f32[B, 28, 28]"},
      {"flatten(x, start_dim=-2)", "f32[B, 1, 784]"},
      {"flatten(x, 1, -2)", "f32[B, 28, 28]"},
      {"flatten(sum(x))", "f32[1]"},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) expect_expr_type(img, cases[c][0], cases[c][1]);
  const char *seq = "  input x: f32[B, T, 16]\n";
  expect_expr_type(seq, "reshape(x, [B * T, 16])", "f32[B*T, 16]");
  expect_expr_type(seq, "reshape(x, [-1, 16])", "f32[B*T, 16]");
  expect_expr_type(seq, "reshape(x, [B, -1])", "f32[B, 16*T]");
  expect_expr_type(seq, "reshape(x, [T, B, 4, 4])", "f32[T, B, 4, 4]");
  expect_expr_type(seq, "flatten(x)", "f32[B, 16*T]");
  expect_expr_type(seq, "flatten(x, 0, 1)", "f32[B*T, 16]");
  /* views are views */
  Low *l = lower_ok("model m {\n  input x: f32[B, 1, 28, 28]\n  output r = reshape(flatten(x), [B, 28, 28])\n}\n");
  int r = output_node(l, "r");
  assert_int_equal(l->g->nodes[r].op, OP_RESHAPE);
  assert_true(op_info[OP_RESHAPE].flags & F_VIEW);
  assert_int_equal(l->g->nodes[l->g->nodes[r].in[0]].op, OP_FLATTEN);
  assert_true(op_info[OP_FLATTEN].flags & F_VIEW);
  assert_int_equal(l->g->nchecks, 0);
  done(l);
}

static void test_reshape_symbolic_check(void **state) {
  (void)state;
  /* [B, T] -> [B, S]: B*T == B*S cannot be proven: a runtime check */
  Low *l = lower_ok("model m {\n  input x: f32[B, T]\n  input y: f32[S]\n  output r = reshape(x, [B, S])\n}\n");
  expect_type(l, output_node(l, "r"), "f32[B, S]");
  assert_int_equal(l->g->nchecks, 1);
  assert_int_equal(l->g->checks[0].loc.line, 4);
  done(l);
  expect_errors("model m {\n  input x: f32[B, 3, 4]\n  output r = reshape(x, [B, 5, -1])\n}\n", 1,
                "3:14: error: reshape: cannot infer the -1 dim: f32[B, 3, 4] is not divisible by 5*B", NULL);
  expect_errors("model m {\n  input x: f32[B, 3, 4]\n  output r = reshape(x, [B, 5, 2])\n}\n", 1,
                "3:14: error: reshape: cannot reshape f32[B, 3, 4] (12*B elements) to f32[B, 5, 2] (10*B elements)",
                NULL);
  expect_errors("model m {\n  input x: f32[B, 3, 4]\n  output r = reshape(x, [-1, -1])\n}\n", 1,
                "3:14: error: reshape: only one dim may be -1", NULL);
}

static void test_permute_transpose(void **state) {
  (void)state;
  const char *x = "  input x: f32[B, 3, 8, 16]\n";
  expect_expr_type(x, "permute(x, [0, 2, 3, 1])", "f32[B, 8, 16, 3]");
  expect_expr_type(x, "permute(x, [0, -1, 1, 2])", "f32[B, 16, 3, 8]");
  expect_expr_type(x, "permute(x, [3, 2, 1, 0])", "f32[16, 8, 3, B]");
  expect_expr_type(x, "transpose(x, 1, 3)", "f32[B, 16, 8, 3]");
  expect_expr_type(x, "transpose(x, -1, -2)", "f32[B, 3, 16, 8]");
  expect_expr_type(x, "transpose(x, 2, 2)", "f32[B, 3, 8, 16]");
  expect_expr_type("  input i: i32[B, T]\n", "transpose(i, 0, 1)", "i32[T, B]");
  /* the permutation is recorded in ia[8..] */
  Low *l = lower_ok("model m {\n  input x: f32[B, 3, 8, 16]\n  output r = permute(x, [0, 2, 3, 1])\n"
                    "  output t = transpose(x, 1, 3)\n}\n");
  const Node *r = &l->g->nodes[output_node(l, "r")], *t = &l->g->nodes[output_node(l, "t")];
  static const int64_t pr[] = {0, 2, 3, 1}, pt[] = {0, 3, 2, 1};
  for (int i = 0; i < 4; i++) {
    assert_int_equal(r->ia[8 + i], pr[i]);
    assert_int_equal(t->ia[8 + i], pt[i]);
  }
  done(l);
  expect_errors("model m {\n  input x: f32[B, 3, 8]\n  output r = permute(x, [0, 1])\n}\n", 1,
                "3:14: error: permute: 2 dims given for a tensor of rank 3 (f32[B, 3, 8])", NULL);
  expect_errors("model m {\n  input x: f32[B, 3, 8]\n  output r = permute(x, [0, 1, 1])\n}\n", 1,
                "3:14: error: permute: dim 1 appears twice", NULL);
  expect_errors("model m {\n  input x: f32[B, 3, 8]\n  output r = transpose(x, 0, 3)\n}\n", 1,
                "3:14: error: transpose: dim 3 is out of range for a tensor of rank 3 (expected -3..2)", NULL);
}

static void test_reductions(void **state) {
  (void)state;
  const char *x = "  input x: f32[B, 3, 8, 16]\n";
  static const char *const cases[][2] = {
      {"sum(x, dim=1)", "f32[B, 8, 16]"},
      {"sum(x, dim=1, keepdim=true)", "f32[B, 1, 8, 16]"},
      {"sum(x, dim=[-1, 1], keepdim=true)", "f32[B, 1, 8, 1]"},
      {"sum(x, [-1, 1])", "f32[B, 8]"},
      {"mean(x, dim=[2, 3])", "f32[B, 3]"},
      {"mean(x, dim=[2, 3], keepdim=true)", "f32[B, 3, 1, 1]"},
      {"sum(x)", "f32[]"},
      {"sum(x, keepdim=true)", "f32[1, 1, 1, 1]"},
      {"max(x, dim=0)", "f32[3, 8, 16]"},
      {"min(x, dim=-1, keepdim=true)", "f32[B, 3, 8, 1]"},
      {"argmax(x, dim=-1)", "i64[B, 3, 8]"},
      {"argmin(x, 1, true)", "i64[B, 1, 8, 16]"},
      {"softmax(x, dim=1)", "f32[B, 3, 8, 16]"},
      {"log_softmax(x)", "f32[B, 3, 8, 16]"},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) expect_expr_type(x, cases[c][0], cases[c][1]);
  /* attributes: keepdim, count, dims as written; infer adds the mask */
  Low *l = lower_ok("model m {\n  input x: f32[B, 3, 8, 16]\n  output r = sum(x, dim=[-1, 1], keepdim=true)\n"
                    "  output s = softmax(x, dim=-3)\n}\n");
  const Node *r = &l->g->nodes[output_node(l, "r")];
  assert_int_equal(r->ia[0], 1);
  assert_int_equal(r->ia[1], 2);
  assert_int_equal(r->ia[2], -1);
  assert_int_equal(r->ia[3], 1);
  assert_int_equal(r->ia[14], (1 << 3) | (1 << 1));
  assert_int_equal(l->g->nodes[output_node(l, "s")].ia[1], 1);
  done(l);
  expect_errors("model m {\n  input x: f32[B, 3]\n  output r = sum(x, dim=[1, -1])\n}\n", 1,
                "3:14: error: sum: dim 1 is listed twice", NULL);
  expect_errors("model m {\n  input x: f32[B, 3]\n  output r = softmax(x, dim=2)\n}\n", 1,
                "3:14: error: softmax: dim 2 is out of range for a tensor of rank 2 (expected -2..1)", NULL);
  expect_errors("model m {\n  input x: i32[B, 3]\n  output r = mean(x)\n}\n", 1,
                "3:14: error: mean needs a floating-point tensor, got i32[B, 3]; use to_f32()", NULL);
}

static void test_linear_matmul_shapes(void **state) {
  (void)state;
  const char *d = "  input x: f32[B, T, 64]\n  input v: f32[64]\n  param w: f32[10, 64]\n  param b: f32[10]\n"
                  "  input m2: f32[64, 7]\n  input bm: f32[B, 64, 7]\n";
  expect_expr_type(d, "linear(x, w, b)", "f32[B, T, 10]");
  expect_expr_type(d, "linear(x, w)", "f32[B, T, 10]");
  expect_expr_type(d, "linear(v, w, bias=b)", "f32[10]");
  expect_expr_type(d, "x @ m2", "f32[B, T, 7]");
  expect_expr_type(d, "matmul(x, bm)", "f32[B, T, 7]");
  expect_expr_type(d, "v @ m2", "f32[7]");
  expect_expr_type(d, "x @ v", "f32[B, T]");
  expect_expr_type(d, "v @ v", "f32[]");
}

/* PyTorch's output size for pools (aten pooling_output_shape) and conv. */
static int64_t div_rtn(int64_t x, int64_t y) {
  int64_t q = x / y, r = x % y;
  if (r != 0 && ((r < 0) != (y < 0))) q--;
  return q;
}
static int64_t torch_pool_out(int64_t in, int64_t k, int64_t pad, int64_t stride, int64_t dil, bool ceil_mode) {
  int64_t out = div_rtn(in + 2 * pad - dil * (k - 1) - 1 + (ceil_mode ? stride - 1 : 0), stride) + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad) out--;
  return out;
}

/* Pool output sizes for every small configuration against PyTorch's formula.
 * KNOWN BUG (reported): with ceil_mode=true and an input smaller than the
 * window (H + 2p < k), PyTorch still gives an output of 1 (e.g.
 * max_pool2d(f32[1, 1, 1, 4], 2, ceil_mode=true) -> [1, 1, 1, 2]) but
 * infer.c's conv_out returns 0 when the numerator is negative, so mlc rejects
 * the model.  Those cases are counted and the test is skipped with a message
 * at the end (after every other assertion has run) while the bug is present. */
static void test_pool_sizes_match_pytorch(void **state) {
  (void)state;
  int checked = 0, errors = 0, known_bug = 0;
  for (int H = 1; H <= 12; H++)
    for (int k = 1; k <= 4; k++)
      for (int s = 1; s <= 3; s++)
        for (int p = 0; p <= k / 2; p++)
          for (int cm = 0; cm < 2; cm++)
            for (int avg = 0; avg < 2; avg++) {
              char text[512];
              int W = H + 3;
              snprintf(text, sizeof text,
                       "model m {\n  input x: f32[B, 2, %d, %d]\n  output r = %s(x, %d, stride=%d, padding=%d, ceil_mode=%s)\n}\n",
                       H, W, avg ? "avg_pool2d" : "max_pool2d", k, s, p, cm ? "true" : "false");
              int64_t oh = torch_pool_out(H, k, p, s, 1, cm), ow = torch_pool_out(W, k, p, s, 1, cm);
              Low *l = lower_src(text, NULL);
              if (oh < 1 || ow < 1) { /* PyTorch: "Output size is too small" */
                assert_null(l->g);
                expect_in(diag_text(l), "is smaller than the window");
                errors++;
              } else if (!l->g && cm && H + 2 * p < k) {
                expect_in(diag_text(l), "is smaller than the window");
                known_bug++;
              } else {
                if (!l->g) {
                  print_error("%s\n%s\n", text, diag_text(l));
                  fail();
                }
                const Type *t = &l->g->nodes[output_node(l, "r")].ty;
                int64_t gh = -1, gw = -1;
                assert_true(dim_is_const(t->dim[2], &gh));
                assert_true(dim_is_const(t->dim[3], &gw));
                if (gh != oh || gw != ow) {
                  print_error("%s: want %lldx%lld (PyTorch), got %lldx%lld\n", text, (long long)oh, (long long)ow,
                              (long long)gh, (long long)gw);
                  fail();
                }
                checked++;
              }
              done(l);
            }
  assert_true(checked > 500);
  assert_true(errors > 10);
  /* the stride defaults to the kernel size */
  expect_expr_type("  input x: f32[B, 4, 28, 28]\n", "max_pool2d(x, 2)", "f32[B, 4, 14, 14]");
  expect_expr_type("  input x: f32[B, 4, 28, 28]\n", "avg_pool2d(x, [2, 4])", "f32[B, 4, 14, 7]");
  expect_expr_type("  input x: f32[B, 4, 5, 5]\n", "max_pool2d(x, 2, ceil_mode=true)", "f32[B, 4, 3, 3]");
  expect_expr_type("  input x: f32[B, 4, 5, 5]\n", "max_pool2d(x, 2)", "f32[B, 4, 2, 2]");
  expect_expr_type("  input x: f32[B, 4, 5, 7]\n", "adaptive_avg_pool2d(x, [2, 3])", "f32[B, 4, 2, 3]");
  expect_expr_type("  input x: f32[B, 4, 5, 7]\n", "adaptive_avg_pool2d(x, 1)", "f32[B, 4, 1, 1]");
  if (known_bug) {
    print_message("KNOWN BUG: %d ceil_mode pools with the input smaller than the window are rejected; "
                  "PyTorch gives an output size of 1 (e.g. max_pool2d(f32[B, 2, 1, 4], 2, ceil_mode=true))\n",
                  known_bug);
    skip();
  }
}

static void test_conv2d_sizes_match_pytorch(void **state) {
  (void)state;
  int checked = 0;
  for (int H = 3; H <= 9; H++)
    for (int k = 1; k <= 3; k += 2)
      for (int s = 1; s <= 2; s++)
        for (int p = 0; p <= 1; p++)
          for (int dl = 1; dl <= 2; dl++) {
            char text[512];
            int W = H + 2;
            snprintf(text, sizeof text,
                     "model m {\n  input x: f32[B, 4, %d, %d]\n  param w: f32[6, 2, %d, %d]\n  param b: f32[6]\n"
                     "  output r = conv2d(x, w, b, stride=%d, padding=[%d, %d], dilation=%d, groups=2)\n}\n",
                     H, W, k, k + 1, s, p, p + 1, dl);
            int64_t oh = torch_pool_out(H, k, p, s, dl, false), ow = torch_pool_out(W, k + 1, p + 1, s, dl, false);
            Low *l = lower_src(text, NULL);
            if (oh < 1 || ow < 1) {
              assert_null(l->g);
              expect_in(diag_text(l), "is smaller than the kernel");
            } else {
              if (!l->g) {
                print_error("%s\n%s\n", text, diag_text(l));
                fail();
              }
              char want[64];
              snprintf(want, sizeof want, "f32[B, 6, %lld, %lld]", (long long)oh, (long long)ow);
              expect_type(l, output_node(l, "r"), want);
              checked++;
            }
            done(l);
          }
  assert_true(checked > 50);
  expect_expr_type("  input x: f32[B, 1, 28, 28]\n  param w: f32[6, 1, 5, 5]\n", "conv2d(x, w, padding=2)",
                   "f32[B, 6, 28, 28]");
  expect_expr_type("  input x: f32[B, 6, 14, 14]\n  param w: f32[16, 6, 5, 5]\n", "conv2d(x, w)",
                   "f32[B, 16, 10, 10]");
  expect_errors("model m {\n  input x: f32[B, 3, 8, 8]\n  param w: f32[4, 2, 3, 3]\n  output r = conv2d(x, w)\n}\n", 1,
                "4:14: error: conv2d: input f32[B, 3, 8, 8] and weight f32[4, 2, 3, 3] do not fit groups=1", NULL);
}

/* A conv2d weight with a symbolic dim (not a param) must be rejected or typed
 * correctly.  KNOWN BUG (reported): rule_conv2d reads OC/IC/KH/KW
 * uninitialised when the weight's dims are not constants (dim_is_const fails
 * and leaves them unset) and gives e.g. f32[B, 0, 6, 6].  The lowering runs
 * in a child process (garbage sizes may trip UBSan); the test is skipped with
 * a message while the bug is present. */
static void test_conv2d_symbolic_weight(void **state) {
  (void)state;
  int fd[2];
  assert_int_equal(pipe(fd), 0);
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    signal(SIGFPE, SIG_DFL);
    signal(SIGSEGV, SIG_DFL);
    signal(SIGABRT, SIG_DFL);
    close(fd[0]);
    Low *l = lower_src("model m {\n  input x: f32[B, 1, 8, 8]\n  input w: f32[K, 1, 3, 3]\n"
                       "  output y = conv2d(x, w)\n}\n", NULL);
    char msg[512];
    if (l->g) snprintf(msg, sizeof msg, "type %s", tys(l, output_node(l, "y")));
    else snprintf(msg, sizeof msg, "error %.400s", diag_text(l));
    ssize_t w = write(fd[1], msg, strlen(msg) + 1);
    _exit(w > 0 ? 0 : 1);
  }
  close(fd[1]);
  char got[512] = "";
  ssize_t n = read(fd[0], got, sizeof got - 1);
  close(fd[0]);
  got[n > 0 ? n : 0] = 0;
  int st = 0;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  bool ok = WIFEXITED(st) && WEXITSTATUS(st) == 0 &&
            (strcmp(got, "type f32[B, K, 6, 6]") == 0 || (strncmp(got, "error ", 6) == 0 && strstr(got, "conv2d")));
  if (!ok) {
    print_message("KNOWN BUG: conv2d with weight f32[K, 1, 3, 3]: %s (uninitialised OC)\n", got[0] ? got : "crashed");
    skip();
  }
}

/* Shapes beyond the Dim representation (DIM_VARS symbols per monomial,
 * int64 coefficients) must be rejected, never silently truncated.
 * KNOWN BUGS (reported), each skipped with a message while present:
 *  - x: f32[B, T, S, H, C]; y = x + 1.0 is accepted although its element
 *    count B*T*S*H*C has 5 symbols: type_numel is `bad`, and the emitted loop
 *    and output memcpy run over B*T*S*H elements only (wrong results);
 *  - param w: f32[4611686018427387904, 4] is accepted: its element count
 *    wraps to 0 (type_numel_const ignores `bad`), so WEIGHT_BYTES = 0. */
static void test_numel_overflow(void **state) {
  (void)state;
  /* a single value whose dim overflows: reported */
  expect_errors("model m {\n  input x: f32[B, T, S, H, C]\n  output y = flatten(x, 0)\n}\n", 1,
                "3:14: error: shape expression too complex for the symbolic dim representation", NULL);
  char known[512] = "";
  Low *l = lower_src("model m {\n  input x: f32[B, T, S, H, C]\n  output y = x + 1.0\n}\n", NULL);
  if (l->g) {
    Dim n = type_numel(&l->g->nodes[output_node(l, "y")].ty);
    if (n.bad) snprintf(known + strlen(known), sizeof known - strlen(known), " [B, T, S, H, C] + 1.0 is accepted;");
  }
  done(l);
  l = lower_src("model m {\n  input x: f32[B]\n  param w: f32[4611686018427387904, 4]\n  output x\n}\n", NULL);
  if (l->g) {
    bool k;
    int64_t n = type_numel_const(&l->g->nodes[l->g->tensors[0]].ty, &k);
    if (!k || n != 0) { /* n == 0 can only come from wrapping */
      print_error("unexpected element count %lld\n", (long long)n);
      fail();
    }
    snprintf(known + strlen(known), sizeof known - strlen(known), " f32[2^62, 4] param is accepted with 0 elements;");
  }
  done(l);
  if (known[0]) {
    print_message("KNOWN BUG: element counts beyond the Dim representation:%s\n", known);
    skip();
  }
}

/* ---- runtime dim checks ------------------------------------------------------------------------- */

static void test_dim_checks(void **state) {
  (void)state;
  Low *l = lower_ok("model m {\n"
                    "  input x: f32[B, T]\n"
                    "  input y: f32[B, S]\n"
                    "  u = x + y\n"
                    "  v = x * y\n"
                    "  output u\n"
                    "  output v\n"
                    "}\n");
  Graph *g = l->g;
  assert_int_equal(g->nchecks, 1); /* the same check is kept once */
  int a, b;
  assert_true(dim_is_sym(g->checks[0].a, &a));
  assert_true(dim_is_sym(g->checks[0].b, &b));
  assert_true((a == 2 && b == 3) || (a == 3 && b == 2));
  assert_string_equal(g->sym[2], "T");
  assert_string_equal(g->sym[3], "S");
  assert_int_equal(g->checks[0].loc.line, 4);
  assert_int_equal(g->checks[0].loc.col, 9);
  assert_non_null(g->checks[0].what);
  expect_type(l, output_node(l, "u"), "f32[B, T]");
  done(l);

  /* matmul and linear inner dims */
  l = lower_ok("model m {\n  input x: f32[B, T]\n  input y: f32[S, 4]\n  param w: f32[10, 32]\n"
               "  output u = x @ y\n  output v = linear(x, w)\n}\n");
  assert_int_equal(l->g->nchecks, 2);
  expect_type(l, output_node(l, "u"), "f32[B, 4]");
  expect_type(l, output_node(l, "v"), "f32[B, 10]");
  assert_int_equal(l->g->checks[0].loc.line, 5);
  assert_int_equal(l->g->checks[1].loc.line, 6);
  int64_t c;
  assert_true(dim_is_const(l->g->checks[1].a, &c) || dim_is_const(l->g->checks[1].b, &c));
  assert_int_equal(c, 32);
  done(l);

  /* a symbol against a constant in a broadcast */
  l = lower_ok("model m {\n  input x: f32[B, T]\n  input y: f32[B, 3]\n  output u = x + y\n}\n");
  assert_int_equal(l->g->nchecks, 1);
  done(l);

  /* block patterns bind D from the argument; a second argument must agree */
  l = lower_ok("block add2(a: f32[N, D], b: f32[N, D]) -> y {\n  y = a + b\n}\n"
               "model m {\n  input x: f32[B, T]\n  input z: f32[B, S]\n  y = add2(x, z)\n  output y\n}\n");
  assert_true(l->g->nchecks >= 1);
  done(l);
}

/* ---- errors ---------------------------------------------------------------------------------------- */

static void test_error_undefined_name(void **state) {
  (void)state;
  expect_errors("model m {\n  input x: f32[B, 4]\n  y = relu(q)\n  output x\n}\n", 1,
                "3:12: error: undefined name 'q'", NULL);
  expect_errors("model m {\n  input x: f32[B, 4]\n  output nothing\n}\n", 1,
                "3:3: error: undefined name 'nothing'", NULL);
  expect_errors("model m {\n  input x: f32[B, N + 1]\n  input y: f32[B]\n  output y\n}\n", 1,
                "2:19: error: undefined name 'N'", NULL);
}

static void test_error_unknown_op(void **state) {
  (void)state;
  expect_errors("model m {\n  input x: f32[B, 4]\n  y = frobnicate(x)\n  output x\n}\n", 1,
                "3:7: error: unknown operator or block 'frobnicate'", NULL);
  /* an operator of the spec without a CPU forward yet (if any is left) */
  for (int op = 0; op < OP_COUNT; op++) {
    if (op_info[op].flags & (F_INTERNAL | F_CPU)) continue;
    char text[256], want[128];
    snprintf(text, sizeof text, "model m {\n  input x: f32[B, 4]\n  y = %s(x)\n  output x\n}\n", op_info[op].name);
    snprintf(want, sizeof want, "3:7: error: operator '%s' is not implemented yet", op_info[op].name);
    expect_errors(text, 1, want, NULL);
  }
}

static void test_error_argument_count(void **state) {
  (void)state;
  expect_errors("model m {\n  input x: f32[B, 4]\n  y = x + relu(x, 3)\n  output x\n}\n", 1,
                "3:11: error: relu takes at most 1 argument, got 2", NULL);
  expect_errors("model m {\n  input x: f32[B, 1, 8, 8]\n  y = conv2d(x)\n  output x\n}\n", 1,
                "3:7: error: conv2d: missing argument 'weight'", NULL);
  expect_errors("block b(x: f32[N]) -> y {\n  y = x\n}\nmodel m {\n  input x: f32[B]\n  y = b(x, x)\n  output x\n}\n", 1,
                "6:7: error: block 'b' takes 1 argument, got 2", NULL);
}

static void test_error_unknown_keyword(void **state) {
  (void)state;
  expect_errors("model m {\n  input x: f32[B, 4]\n  zz = relu(x, bogus=1)\n  output x\n}\n", 1,
                "3:16: error: relu has no argument named 'bogus'", NULL);
  expect_errors("model m {\n  input x: f32[B, 4]\n  zz = softmax(x, 1, dim=1)\n  output x\n}\n", 1,
                "3:22: error: softmax: argument 'dim' is given twice", NULL);
  expect_errors("block b(x: f32[N]) -> y {\n  y = x\n}\nmodel m {\n  input x: f32[B]\n  y = b(x, k=1)\n  output x\n}\n", 1,
                "6:12: error: block 'b' has no argument named 'k'", NULL);
}

static void test_error_linear_shapes(void **state) {
  (void)state;
  expect_errors("model m {\n  input x: f32[B, 784]\n  param w: f32[10, 100]\n  v = linear(x, w)\n  output x\n}\n", 1,
                "4:7: error: linear: input f32[B, 784] does not match weight f32[10, 100] (last dims differ)", NULL);
  expect_errors("model m {\n  input x: f32[B, 784]\n  param w: f32[10, 784]\n  param b: f32[12]\n"
                "  v = linear(x, w, b)\n  output x\n}\n", 1,
                "5:7: error: linear: bias f32[12] does not match weight f32[10, 784] (expected [10])", NULL);
  /* symbolic dims that can never agree are errors too, not run-time checks */
  expect_errors("model m {\n  input x: f32[B, T]\n  input y: f32[2 * T, 4]\n  v = x @ y\n  output x\n}\n", 1,
                "4:9: error: matmul: inner dims differ: f32[B, T] @ f32[2*T, 4]", NULL);
}

static void test_error_broadcast(void **state) {
  (void)state;
  expect_errors("model m {\n  input x: f32[B, 3, 4]\n  input y: f32[5, 4]\n  z = x + y\n  output x\n}\n", 1,
                "4:9: error: cannot broadcast f32[B, 3, 4] with f32[5, 4]: dim -2 is 3 vs 5", NULL);
  expect_errors("model m {\n  input x: f32[B]\n  input y: f32[2 * B]\n  z = x * y\n  output x\n}\n", 1,
                "4:9: error: cannot broadcast f32[B] with f32[2*B]: dim -1 is B vs 2*B", NULL);
  expect_errors("model m {\n  input x: bool[B]\n  z = x + x\n  output x\n}\n", 1,
                "3:9: error: arithmetic 'add' on bool tensors", NULL);
}

static void test_error_inexact_division(void **state) {
  (void)state;
  expect_errors("model m {\n  input x: f32[B, 784]\n  k = reshape(x, [B, 7 / 2])\n  output x\n}\n", 1,
                "3:24: error: integer division 7 / 2 is not exact", NULL);
  expect_errors("model m {\n  input x: f32[B, 784]\n  input y: f32[B / 2]\n  output x\n}\n", 1,
                "3:18: error: integer division B / 2 is not exact", NULL);
  expect_errors("model m {\n  const C = 10\n  const H = 3\n  input y: f32[B]\n  input x: f32[B, C / H]\n  output y\n}\n", 1,
                "5:21: error: integer division 10 / 3 is not exact", NULL);
}

static void test_error_block_call_needs_as(void **state) {
  (void)state;
  const char *blk = "block mlp(x: f32[..., D], hidden: int) -> y {\n"
                    "  param fc.weight: f32[hidden, D] = kaiming_uniform\n"
                    "  y = linear(x, fc.weight)\n"
                    "}\n";
  char text[1024];
  snprintf(text, sizeof text, "%smodel m {\n  input x: f32[B, 4]\n  r = x + mlp(x, hidden=4)\n  output x\n}\n", blk);
  expect_errors(text, 1,
                "7:11: error: block call 'mlp' inside a larger expression needs `as PATH` to name its parameters", NULL);
  /* with `as` it is fine, and `as` on an operator is an error */
  snprintf(text, sizeof text, "%smodel m {\n  input x: f32[B, 4]\n  r = relu(mlp(x, hidden=4) as a.b)\n  output r\n}\n", blk);
  Low *l = lower_ok(text);
  assert_string_equal(l->g->nodes[l->g->tensors[0]].name, "a.b.fc.weight");
  expect_type(l, output_node(l, "r"), "f32[B, 4]");
  done(l);
  expect_errors("model m {\n  input x: f32[B, 4]\n  r = relu(x) as foo\n  output x\n}\n", 1,
                "3:7: error: `as` names a block instance, but 'relu' is an operator", NULL);
}

static void test_error_duplicate_param(void **state) {
  (void)state;
  expect_errors("model m {\n  input x: f32[B, 784]\n  param a.w: f32[3]\n  param a.w: f32[3]\n  output x\n}\n", 1,
                "4:3: error: 'a.w' is declared twice", "3:3: note: first declared here", NULL);
  /* a repeat without {i} declares the same path in every iteration */
  expect_errors("model m {\n  input x: f32[B]\n  repeat i in 0..3 {\n    param w: f32[3]\n  }\n  output x\n}\n", 1,
                "4:5: error: 'w' is declared twice", NULL);
  /* two block instances under the same path */
  expect_errors("block b(x: f32[N]) -> y {\n  param w: f32[4]\n  y = x\n}\n"
                "model m {\n  input x: f32[B]\n  y = b(x) as l\n  z = b(x) as l\n  output y\n}\n",
                1, "2:3: error: 'l.w' is declared twice", NULL);
}

static void test_error_several(void **state) {
  (void)state;
  /* tests/golden/lower_errors.mdl: independent errors are all reported */
  expect_errors("# several independent errors in one model: each is reported\n"
                "model bad {\n"
                "  input x: f32[B, 784]\n"
                "  param fc.weight: f32[10, 784] = kaiming_uniform\n"
                "  param fc.bias: f32[12]\n"
                "  a = linear(x, fc.weight, fc.bias)\n"
                "  b = relu(y)\n"
                "  c = softmax(x, dim=2)\n"
                "  d = frobnicate(x)\n"
                "  e = conv2d(x)\n"
                "  f = x + zeros(3)\n"
                "  output x\n"
                "}\n",
                6, "6:7: error: linear: bias f32[12] does not match weight f32[10, 784] (expected [10])",
                "7:12: error: undefined name 'y'", "8:7: error: softmax: dim 2 is out of range",
                "9:7: error: unknown operator or block 'frobnicate'", "10:7: error: conv2d: missing argument 'weight'",
                "11:11: error: unknown operator or block 'zeros'", NULL);
  /* an error inside a repeat is reported once, not once per iteration */
  Low *l = lower_src("model m {\n  input x: f32[B]\n  repeat i in 0..5 {\n    x = x + q\n  }\n  output x\n}\n", NULL);
  assert_null(l->g);
  assert_int_equal(l->d.nerrors, 1);
  assert_int_equal(count_of(diag_text(l), "undefined name 'q'"), 1);
  done(l);
}

/* After a statement fails, later uses of the name it would have bound should
 * not add an "undefined name" error of their own.
 * KNOWN ISSUE (reported): they do, so one mistake gives two errors, e.g.
 *   y = frobnicate(x)
 *   output y            <- error: undefined name 'y'
 * Skipped with a message while the cascade is present. */
static void test_error_no_cascade(void **state) {
  (void)state;
  Low *l = lower_src("model m {\n  input x: f32[B, 4]\n  y = frobnicate(x)\n  output y\n}\n", NULL);
  assert_null(l->g);
  expect_in(diag_text(l), "test.mdl:3:7: error: unknown operator or block 'frobnicate'");
  int n = l->d.nerrors;
  done(l);
  if (n != 1) {
    print_message("KNOWN ISSUE: a failed assignment makes later uses report \"undefined name\" (%d errors for 1)\n", n);
    skip();
  }
}

static void test_error_other(void **state) {
  (void)state;
  expect_errors("model m {\n  input x: f32[B]\n  param w: f32[B]\n  output x\n}\n", 1,
                "3:16: error: parameter and buffer shapes must be static", NULL);
  expect_errors("model m {\n  input x: f32[B]\n  input x: f32[B]\n  output x\n}\n", 1,
                "3:3: error: 'x' is already defined", NULL);
  expect_errors("model m {\n  input x: f32[B]\n  output x\n  output x\n}\n", 1,
                "4:3: error: output 'x' is declared twice", NULL);
  expect_errors("model m {\n  input x: f32[B]\n  a, b = relu(x)\n  output x\n}\n", 1,
                "3:3: error: cannot unpack a tensor into 2 names", NULL);
  expect_errors("block b(x: f32[N, D]) -> y {\n  y = x\n}\nmodel m {\n  input x: i64[B, 3]\n  y = b(x)\n  output x\n}\n", 1,
                "6:9: error: block argument 'x' expects f32[...], got i64[B, 3]", NULL);
  expect_errors("model m {\n  input x: f32[B, 4]\n  y = x @ 2.0\n  output x\n}\n", 1,
                "3:9: error: '@' needs two tensors", NULL);
  expect_errors("model m {\n  input x: f32[B, 4]\n  y = linear(x, 3)\n  output x\n}\n", 1,
                "3:17: error: linear: argument 'weight' must be a tensor, found an integer", NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_spec_fashion_mlp),
      cmocka_unit_test(test_spec_tiny),
      cmocka_unit_test(test_block_repeat_paths),
      cmocka_unit_test(test_block_instances_nested_and_tuples),
      cmocka_unit_test(test_shadowing),
      cmocka_unit_test(test_symbols_and_dim_expressions),
      cmocka_unit_test(test_model_selection),
      cmocka_unit_test(test_type_promotion),
      cmocka_unit_test(test_weak_constants),
      cmocka_unit_test(test_broadcasting),
      cmocka_unit_test(test_reshape_flatten),
      cmocka_unit_test(test_reshape_symbolic_check),
      cmocka_unit_test(test_permute_transpose),
      cmocka_unit_test(test_reductions),
      cmocka_unit_test(test_linear_matmul_shapes),
      cmocka_unit_test(test_pool_sizes_match_pytorch),
      cmocka_unit_test(test_conv2d_sizes_match_pytorch),
      cmocka_unit_test(test_conv2d_symbolic_weight),
      cmocka_unit_test(test_numel_overflow),
      cmocka_unit_test(test_dim_checks),
      cmocka_unit_test(test_error_undefined_name),
      cmocka_unit_test(test_error_unknown_op),
      cmocka_unit_test(test_error_argument_count),
      cmocka_unit_test(test_error_unknown_keyword),
      cmocka_unit_test(test_error_linear_shapes),
      cmocka_unit_test(test_error_broadcast),
      cmocka_unit_test(test_error_inexact_division),
      cmocka_unit_test(test_error_block_call_needs_as),
      cmocka_unit_test(test_error_duplicate_param),
      cmocka_unit_test(test_error_several),
      cmocka_unit_test(test_error_no_cascade),
      cmocka_unit_test(test_error_other),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
