/* tests/unit/test_grammar.c — unit tests of the grammar layer (cmocka).
 *
 * Parses every example of the spec (docs: /work/shared/mdl-spec.md sections 1,
 * 2 and 4, copied here as strings) and checks tree shapes through ast_dump()
 * and by walking the tree; then the lexical corner cases, precedence,
 * locations, and the diagnostics: exact FILE:LINE:COL, message, source line
 * and caret, several errors per file.  Also the arena and source helpers.
 * (tests/golden/parse_*.mdl/.err check the same through `mlc check`.)
 *
 * Standalone: build with the grammar sources and -lcmocka, run without
 * arguments.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ast.h"

/* ---- helpers -------------------------------------------------------------- */

typedef struct Parsed {
  Arena *A;
  Diag d;     /* diagnostics text in d.buf (not echoed) */
  Ast *file;  /* NULL when errors were reported */
  char *dump; /* ast_dump of file, "" if none */
} Parsed;

static char *dump_to_string(const Ast *n) {
  char *s = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&s, &len);
  assert_non_null(f);
  ast_dump(f, n);
  fclose(f);
  if (len > 0 && s[len - 1] == '\n') s[len - 1] = '\0'; /* one-liners compare easily */
  return s;
}

/* Parses text as file "test.mdl". */
static Parsed *parse(const char *text) {
  Parsed *p = calloc(1, sizeof *p);
  p->A = arena_new();
  Source *src = source_from_string(p->A, "test.mdl", text);
  p->file = parse_source(p->A, src, &p->d);
  p->dump = p->file ? dump_to_string(p->file) : strdup("");
  return p;
}

static void done(Parsed *p) {
  free(p->dump);
  diag_free(&p->d);
  arena_free(p->A);
  free(p);
}

static const char *diag_text(const Parsed *p) {
  return p->d.buf ? p->d.buf : "";
}

static void expect_in(const char *hay, const char *needle) {
  if (!strstr(hay, needle)) {
    print_error("expected to find:\n%s\nin:\n%s\n", needle, hay);
    fail();
  }
}

static void expect_not_in(const char *hay, const char *needle) {
  if (strstr(hay, needle)) {
    print_error("did not expect:\n%s\nin:\n%s\n", needle, hay);
    fail();
  }
}

/* Parses text that must be free of errors. */
static Parsed *parse_ok(const char *text) {
  Parsed *p = parse(text);
  if (!p->file || p->d.nerrors != 0) {
    print_error("unexpected errors:\n%s\nfor:\n%s\n", diag_text(p), text);
    fail();
  }
  return p;
}

/* The statement i of the first item of the file. */
static Ast *stmt(const Parsed *p, int i) {
  assert_true(p->file->list.n >= 1);
  Ast *item = p->file->list.items[0];
  assert_true(i < item->list.n);
  return item->list.items[i];
}

/* Parses `model m { e = EXPR }` and compares the dump of EXPR. */
static void expect_expr(const char *expr, const char *want) {
  char text[1024];
  snprintf(text, sizeof text, "model m {\n  e = %s\n}\n", expr);
  Parsed *p = parse_ok(text);
  Ast *s = stmt(p, 0);
  assert_int_equal(s->kind, AST_ASSIGN);
  char *got = dump_to_string(s->a);
  if (strcmp(got, want) != 0) {
    print_error("for %s\n  want %s\n  got  %s\n", expr, want, got);
    fail();
  }
  free(got);
  done(p);
}

/* Parses `model m { BODY }` and compares the dump of its statements. */
static void expect_body(const char *body, const char *want) {
  char text[2048];
  snprintf(text, sizeof text, "model m {\n%s\n}\n", body);
  Parsed *p = parse_ok(text);
  expect_in(p->dump, want);
  done(p);
}

/* Parses text that must fail with exactly n errors; each wanted string must
 * appear in the diagnostics (give "LINE:COL: error: message"). */
static void expect_errors(const char *text, int n, ...) {
  Parsed *p = parse(text);
  assert_null(p->file);
  if (p->d.nerrors != n) {
    print_error("want %d errors, got %d:\n%s\n", n, p->d.nerrors, diag_text(p));
    fail();
  }
  va_list ap;
  va_start(ap, n);
  for (const char *want; (want = va_arg(ap, const char *));) {
    char full[512];
    snprintf(full, sizeof full, "test.mdl:%s", want);
    expect_in(diag_text(p), full);
  }
  va_end(ap);
  done(p);
}

/* ---- the spec's examples ---------------------------------------------------- */

/* Section 2: examples/fashion_mlp.mdl, verbatim. */
static const char *const spec_fashion =
    "# examples/fashion_mlp.mdl\n"
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
  Parsed *p = parse_ok(spec_fashion);
  assert_string_equal(
      p->dump,
      "(file\n"
      "  (model fashion_mlp\n"
      "    (input x (type u8 (dims (name B) (int 1) (int 28) (int 28))))\n"
      "    (param fc1.weight (type f32 (dims (int 256) (int 784))) (name kaiming_uniform))\n"
      "    (param fc1.bias (type f32 (dims (int 256))) (name zeros))\n"
      "    (param fc2.weight (type f32 (dims (int 10) (int 256))) (name kaiming_uniform))\n"
      "    (param fc2.bias (type f32 (dims (int 10))) (name zeros))\n"
      "    (assign h (binary / (call to_f32 (name x)) (float 255)))\n"
      "    (assign h (call relu (call linear (call flatten (name h)) (name fc1.weight) "
      "(name fc1.bias))))\n"
      "    (output logits (call linear (name h) (name fc2.weight) (name fc2.bias))))\n"
      "  (train fashion_mlp\n"
      "    (input y (type u8 (dims (name B))))\n"
      "    (assign loss (call cross_entropy (name logits) (name y)))\n"
      "    (assign optimizer (call sgd (kwarg lr (float 0.05)) (kwarg momentum (float 0.9))))))");
  /* kinds and shapes by walking the tree */
  Ast *model = p->file->list.items[0], *train = p->file->list.items[1];
  assert_int_equal(p->file->list.n, 2);
  assert_int_equal(model->kind, AST_MODEL);
  assert_string_equal(model->name, "fashion_mlp");
  assert_int_equal(model->list.n, 8);
  assert_int_equal(train->kind, AST_TRAIN);
  assert_string_equal(train->name, "fashion_mlp");
  Ast *param = model->list.items[1];
  assert_int_equal(param->kind, AST_PARAM);
  assert_string_equal(param->name, "fc1.weight");
  assert_int_equal(param->a->kind, AST_TYPE);
  assert_int_equal(param->a->ival, 1);
  assert_int_equal(param->a->list.n, 2);
  assert_int_equal(param->a->list.items[1]->ival, 784);
  Ast *out = model->list.items[7];
  assert_int_equal(out->kind, AST_OUTPUT);
  assert_string_equal(out->name, "logits");
  assert_int_equal(out->a->kind, AST_CALL);
  assert_int_equal(out->a->list.n, 3);
  assert_null(out->a->sval);
  Ast *opt = train->list.items[2];
  assert_int_equal(opt->kind, AST_ASSIGN);
  assert_int_equal(opt->list2.n, 1);
  assert_string_equal(opt->list2.items[0]->name, "optimizer");
  assert_int_equal(opt->a->list2.n, 2);
  assert_int_equal(opt->a->list2.items[0]->kind, AST_KWARG);
  done(p);
}

/* Section 2: blocks, verbatim. */
static const char *const spec_blocks =
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

static void test_spec_blocks(void **state) {
  (void)state;
  Parsed *p = parse_ok(spec_blocks);
  assert_string_equal(
      p->dump,
      "(file\n"
      "  (block mlp (args (arg x (type f32 (dims (ellipsis) (name D)))) (arg hidden (type int))) "
      "(results y)\n"
      "    (param fc.weight (type f32 (dims (name hidden) (name D))) (name kaiming_uniform))\n"
      "    (param fc.bias (type f32 (dims (name hidden))) (name zeros))\n"
      "    (param proj.weight (type f32 (dims (name D) (name hidden))) (name kaiming_uniform))\n"
      "    (param proj.bias (type f32 (dims (name D))) (name zeros))\n"
      "    (assign y (call linear (call gelu (call linear (name x) (name fc.weight) "
      "(name fc.bias))) (name proj.weight) (name proj.bias))))\n"
      "  (model tiny\n"
      "    (input x (type f32 (dims (name B) (name T) (int 64))))\n"
      "    (repeat i (int 0) (int 2)\n"
      "      (assign x (binary + (name x) (call mlp (name x) (kwarg hidden (int 256)) "
      "(as blocks.{i}.mlp)))))\n"
      "    (output x)))");
  Ast *block = p->file->list.items[0];
  assert_int_equal(block->kind, AST_BLOCK);
  assert_int_equal(block->list2.n, 2);
  Ast *x = block->list2.items[0];
  assert_int_equal(x->kind, AST_ARGDECL);
  assert_int_equal(x->a->list.items[0]->kind, AST_ELLIPSIS);
  Ast *hidden = block->list2.items[1];
  assert_string_equal(hidden->a->name, "int");
  assert_int_equal(hidden->a->ival, 0); /* no [ ] */
  assert_null(hidden->b);
  assert_int_equal(block->list3.n, 1);
  assert_int_equal(block->list3.items[0]->kind, AST_NAME);
  assert_string_equal(block->list3.items[0]->name, "y");
  Ast *rep = p->file->list.items[1]->list.items[1];
  assert_int_equal(rep->kind, AST_REPEAT);
  assert_string_equal(rep->name, "i");
  assert_int_equal(rep->a->ival, 0);
  assert_int_equal(rep->b->ival, 2);
  Ast *call = rep->list.items[0]->a->b;
  assert_int_equal(call->kind, AST_CALL);
  assert_string_equal(call->name, "mlp");
  assert_string_equal(call->sval, "blocks.{i}.mlp");
  Ast *out = p->file->list.items[1]->list.items[2];
  assert_int_equal(out->kind, AST_OUTPUT);
  assert_null(out->a);
  done(p);
}

/* Section 4: the train section template, with each optimizer spelled out. */
static void test_spec_train_section(void **state) {
  (void)state;
  Parsed *p = parse_ok(
      "train net {\n"
      "  input  labels: i64[B]          # extra runtime inputs for the loss (labels)\n"
      "  loss   = cross_entropy(logits, labels, label_smoothing=0)\n"
      "  optimizer = sgd(lr, momentum=0, weight_decay=0, nesterov=false)\n"
      "}\n"
      "train a { optimizer = adam(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0) }\n"
      "train b { optimizer = adamw(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, "
      "weight_decay=0.01) }\n");
  expect_in(p->dump, "(assign loss (call cross_entropy (name logits) (name labels) "
                     "(kwarg label_smoothing (int 0))))");
  expect_in(p->dump, "(assign optimizer (call sgd (name lr) (kwarg momentum (int 0)) "
                     "(kwarg weight_decay (int 0)) (kwarg nesterov (bool false))))");
  expect_in(p->dump, "(call adam (kwarg lr (float 0.001)) (kwarg beta1 (float 0.9)) "
                     "(kwarg beta2 (float 0.999)) (kwarg eps (float 1e-08)) "
                     "(kwarg weight_decay (int 0)))");
  expect_in(p->dump, "(kwarg weight_decay (float 0.01))");
  assert_int_equal(p->file->list.n, 3);
  for (int i = 0; i < 3; i++) assert_int_equal(p->file->list.items[i]->kind, AST_TRAIN);
  done(p);
}

/* The code fragments of sections 1-4, each inside a model. */
static void test_spec_fragments(void **state) {
  (void)state;
  expect_body("  param layer1.0.conv1.weight: f32[64, 64, 3, 3]\n"
              "  param features.3.conv.0.1.weight: f32[16]",
              "(param layer1.0.conv1.weight (type f32 (dims (int 64) (int 64) (int 3) (int 3))))\n"
              "    (param features.3.conv.0.1.weight (type f32 (dims (int 16)))))");
  expect_body("  tie lm_head.weight = transformer.wte.weight",
              "(tie lm_head.weight transformer.wte.weight)");
  expect_body("  buffer bn.running_mean: f32[C] = zeros", "(buffer bn.running_mean (type f32 "
                                                          "(dims (name C))) (name zeros))");
  expect_body("  const H = 12", "(const H (int 12))");
  expect_expr("conv2d(x, w, b, stride=2, padding=1)",
              "(call conv2d (name x) (name w) (name b) (kwarg stride (int 2)) "
              "(kwarg padding (int 1)))");
  expect_expr("slice(wpe, 0, 0, T)", "(call slice (name wpe) (int 0) (int 0) (name T))");
  expect_expr("reshape(q, [B, T, H, C / H])",
              "(call reshape (name q) (list (name B) (name T) (name H) "
              "(binary / (name C) (name H))))");
  expect_body("  q, k, v = split(qkv, [C, C, C], -1)",
              "(assign (q k v) (call split (name qkv) (list (name C) (name C) (name C)) "
              "(unary - (int 1))))");
  expect_expr("x + mlp(x) as blocks.{i}.mlp",
              "(binary + (name x) (call mlp (name x) (as blocks.{i}.mlp)))");
  expect_expr("f(g(x) as a, y)", "(call f (call g (name x) (as a)) (name y))");
  expect_expr("elu(x, alpha=1.0)", "(call elu (name x) (kwarg alpha (float 1)))");
  expect_expr("gelu(x, approximate=\"tanh\")",
              "(call gelu (name x) (kwarg approximate (string \"tanh\")))");
  expect_expr("leaky_relu(x, 0.01)", "(call leaky_relu (name x) (float 0.01))");
  expect_expr("clamp(x, lo, hi)", "(call clamp (name x) (name lo) (name hi))");
  expect_expr("clamp(x, min=0)", "(call clamp (name x) (kwarg min (int 0)))");
  expect_expr("where(cond, a, b)", "(call where (name cond) (name a) (name b))");
  expect_expr("conv2d(x, w, padding=[1, 0])",
              "(call conv2d (name x) (name w) (kwarg padding (list (int 1) (int 0))))");
  expect_expr("max_pool2d(x, k, stride=k, padding=0, ceil_mode=false)",
              "(call max_pool2d (name x) (name k) (kwarg stride (name k)) "
              "(kwarg padding (int 0)) (kwarg ceil_mode (bool false)))");
  expect_expr("avg_pool2d(x, 2, count_include_pad=true)",
              "(call avg_pool2d (name x) (int 2) (kwarg count_include_pad (bool true)))");
  expect_expr("pad(x, [left, right, top, bottom], value=0)",
              "(call pad (name x) (list (name left) (name right) (name top) (name bottom)) "
              "(kwarg value (int 0)))");
  expect_expr("interpolate(x, scale_factor=2, mode=\"nearest\")",
              "(call interpolate (name x) (kwarg scale_factor (int 2)) "
              "(kwarg mode (string \"nearest\")))");
  expect_expr("batch_norm(x, running_mean, running_var, weight, bias, eps=1e-5, momentum=0.1)",
              "(call batch_norm (name x) (name running_mean) (name running_var) (name weight) "
              "(name bias) (kwarg eps (float 1e-05)) (kwarg momentum (float 0.1)))");
  expect_expr("rms_norm(x, weight, eps=1e-6)",
              "(call rms_norm (name x) (name weight) (kwarg eps (float 1e-06)))");
  expect_expr("softmax(x, dim=-1)", "(call softmax (name x) (kwarg dim (unary - (int 1))))");
  expect_expr("sum(x, [0, 1], keepdim=false)",
              "(call sum (name x) (list (int 0) (int 1)) (kwarg keepdim (bool false)))");
  expect_expr("concat([a, b], 1)", "(call concat (list (name a) (name b)) (int 1))");
  expect_expr("scaled_dot_product_attention(q, k, v, causal=false)",
              "(call scaled_dot_product_attention (name q) (name k) (name v) "
              "(kwarg causal (bool false)))");
  expect_expr("normal(0.0, 0.02)", "(call normal (float 0) (float 0.02))");
  expect_expr("uniform(-0.1, 0.1)", "(call uniform (unary - (float 0.1)) (float 0.1))");
  /* section 1 literals */
  expect_expr("[42, -1, 0.5, 1e-5, 3., inf, \"tanh\", true, false]",
              "(list (int 42) (unary - (int 1)) (float 0.5) (float 1e-05) (float 3) (float inf) "
              "(string \"tanh\") (bool true) (bool false))");
  /* section 2 types */
  expect_body("  input a: f32[]\n  input b: bf16[B, T]\n  input c: bool[B]\n  input d: f16[4]",
              "(input a (type f32 (dims)))\n"
              "    (input b (type bf16 (dims (name B) (name T))))\n"
              "    (input c (type bool (dims (name B))))\n"
              "    (input d (type f16 (dims (int 4)))))");
}

/* ---- lexical rules ---------------------------------------------------------- */

static void test_paths(void **state) {
  (void)state;
  expect_expr("layer1.0.conv1.weight", "(name layer1.0.conv1.weight)");
  expect_expr("features.3.conv.0.1.weight", "(name features.3.conv.0.1.weight)");
  expect_expr("blocks.{i}.mlp.fc.weight", "(name blocks.{i}.mlp.fc.weight)");
  expect_expr("h.0", "(name h.0)"); /* `.0` after an identifier: a segment */
  expect_expr("x.0 + 1.5", "(binary + (name x.0) (float 1.5))");
  expect_expr("model.input", "(name model.input)"); /* keywords are fine inside paths */
  expect_expr("models", "(name models)");
  /* `{i}` interpolation inside repeat, in params too */
  expect_body(
      "  repeat layer in 0..n {\n    param h.{layer}.w: f32[4]\n  }",
      "(repeat layer (int 0) (name n)\n      (param h.{layer}.w (type f32 (dims (int 4))))");
}

static void test_ranges(void **state) {
  (void)state;
  expect_body("  repeat i in 0..2 { x = x }",
              "(repeat i (int 0) (int 2)\n      (assign x (name x)))");
  expect_body("  repeat i in 1..n_layer - 1 { x = x }",
              "(repeat i (int 1) (binary - (name n_layer) (int 1))");
  expect_body("  repeat i in a.b..c { x = x }", "(repeat i (name a.b) (name c)");
  expect_body("  repeat i in 0 .. 2*N { x = x }", "(repeat i (int 0) (binary * (int 2) (name N))");
  /* nested, with interpolation of both variables */
  expect_body(
      "  repeat i in 0..2 {\n    repeat j in 0..3 {\n      y = f(y) as b.{i}.{j}\n    }\n  }",
      "(repeat i (int 0) (int 2)\n      (repeat j (int 0) (int 3)\n"
      "        (assign y (call f (name y) (as b.{i}.{j})))))");
}

static void test_numbers(void **state) {
  (void)state;
  expect_expr("3.", "(float 3)");
  expect_expr("1e-5", "(float 1e-05)");
  expect_expr("2.5e3", "(float 2500)");
  expect_expr("1.e2", "(float 100)");
  expect_expr(".5", "(float 0.5)");
  expect_expr("0.5", "(float 0.5)");
  expect_expr("1E+3", "(float 1000)");
  expect_expr("inf", "(float inf)");
  expect_expr("-inf", "(unary - (float inf))");
  expect_expr("0", "(int 0)");
  expect_expr("9223372036854775807", "(int 9223372036854775807)");
  expect_expr("007", "(int 7)");
  Parsed *p = parse_ok("model m { e = 255.0; f = 42 }");
  assert_int_equal(stmt(p, 0)->a->kind, AST_FLOAT);
  assert_true(stmt(p, 0)->a->fval == 255.0);
  assert_int_equal(stmt(p, 1)->a->kind, AST_INT);
  assert_int_equal(stmt(p, 1)->a->ival, 42);
  done(p);
}

static void test_strings(void **state) {
  (void)state;
  expect_expr("\"tanh\"", "(string \"tanh\")");
  expect_expr("\"\"", "(string \"\")");
  expect_expr("\"a # not a comment\"", "(string \"a # not a comment\")");
  Parsed *p = parse_ok("model m { e = \"q\\\"b\\\\n\\n\\t\" }");
  assert_string_equal(stmt(p, 0)->a->sval, "q\"b\\n\n\t");
  done(p);
}

/* Newlines inside ( ) and [ ] are ignored; `;` ends statements; comments and
 * blank lines anywhere; `{ }` do not hide newlines. */
static void test_layout(void **state) {
  (void)state;
  Parsed *p = parse_ok("\n\n# leading comment\n"
                       "model m {   # after brace\n"
                       "\n"
                       "  y = linear(x,\n"
                       "             w,   # comment inside parens\n"
                       "\n"
                       "             b)\n"
                       "  z = reshape(y, [\n"
                       "    B,\n"
                       "    -1,\n"
                       "  ])\n"
                       "  a = 1; b = 2;; c = 3;\n"
                       "  ; \n"
                       "  # only a comment\n"
                       "  output z\n"
                       "}\n"
                       "\n"
                       "# trailing comment without newline");
  assert_int_equal(p->file->list.items[0]->list.n, 6);
  expect_in(p->dump, "(assign y (call linear (name x) (name w) (name b)))");
  expect_in(p->dump, "(assign z (call reshape (name y) (list (name B) (unary - (int 1)))))");
  expect_in(p->dump, "(assign a (int 1))\n    (assign b (int 2))\n    (assign c (int 3))");
  expect_not_in(p->dump, "comment");
  done(p);

  /* all on one line */
  p = parse_ok("model m { input x: f32[]; y = -x @ x; output y }");
  assert_string_equal(p->dump, "(file\n"
                               "  (model m\n"
                               "    (input x (type f32 (dims)))\n"
                               "    (assign y (binary @ (unary - (name x)) (name x)))\n"
                               "    (output y)))");
  done(p);

  /* items separated by ';', an empty file, CRLF line ends, a byte order mark */
  p = parse_ok("model a { }; model b {}");
  assert_int_equal(p->file->list.n, 2);
  done(p);
  p = parse_ok("");
  assert_int_equal(p->file->kind, AST_FILE);
  assert_int_equal(p->file->list.n, 0);
  done(p);
  p = parse_ok("\xEF\xBB\xBFmodel m {\r\n  x = 1\r\n\tz = 2\r\n}\r\n");
  assert_string_equal(p->dump,
                      "(file\n  (model m\n    (assign x (int 1))\n    (assign z (int 2))))");
  done(p);

  /* a newline inside braces ends a statement: a newline between operands errors */
  expect_errors("model m {\n  x = a +\n  b\n}\n", 2,
                "2:10: error: syntax error: unexpected newline, expected expression",
                "3:4: error: syntax error: unexpected newline, expected '=' or ','", NULL);
}

/* ---- grammar ---------------------------------------------------------------- */

static void test_precedence(void **state) {
  (void)state;
  expect_expr("a + b * c", "(binary + (name a) (binary * (name b) (name c)))");
  expect_expr("a * b + c", "(binary + (binary * (name a) (name b)) (name c))");
  expect_expr("a - b - c", "(binary - (binary - (name a) (name b)) (name c))");
  expect_expr("a / b / c", "(binary / (binary / (name a) (name b)) (name c))");
  expect_expr("a @ b * c", "(binary * (binary @ (name a) (name b)) (name c))");
  expect_expr("(a + b) * c", "(binary * (binary + (name a) (name b)) (name c))");
  expect_expr("-x @ y", "(binary @ (unary - (name x)) (name y))");
  expect_expr("-x * -y", "(binary * (unary - (name x)) (unary - (name y)))");
  expect_expr("a - -b", "(binary - (name a) (unary - (name b)))");
  expect_expr("--x", "(unary - (unary - (name x)))");
  expect_expr("-f(x) + 1", "(binary + (unary - (call f (name x))) (int 1))");
  expect_expr("-(a + b)", "(unary - (binary + (name a) (name b)))");
  expect_expr("x / 255.0", "(binary / (name x) (float 255))");
  /* comparisons are loosest */
  expect_expr("a + 1 < b * 2",
              "(binary < (binary + (name a) (int 1)) (binary * (name b) (int 2)))");
  expect_expr("a == b", "(binary == (name a) (name b))");
  expect_expr("a != b", "(binary != (name a) (name b))");
  expect_expr("a <= b", "(binary <= (name a) (name b))");
  expect_expr("a >= b", "(binary >= (name a) (name b))");
  expect_expr("a > -b", "(binary > (name a) (unary - (name b)))");
  expect_expr("(a < b) == c", "(binary == (binary < (name a) (name b)) (name c))");
  expect_expr("where(x > 0, x, 0.0)",
              "(call where (binary > (name x) (int 0)) (name x) (float 0))");
  Parsed *p = parse_ok("model m { e = a < b }");
  assert_int_equal(stmt(p, 0)->a->op, AOP_LT);
  done(p);
}

static void test_calls(void **state) {
  (void)state;
  expect_expr("f()", "(call f)");
  expect_expr("f(x,)", "(call f (name x))");
  expect_expr("f(k=1,)", "(call f (kwarg k (int 1)))");
  expect_expr("f(x == 1, k=a)", "(call f (binary == (name x) (int 1)) (kwarg k (name a)))");
  expect_expr("f([], [1], [1, 2,])", "(call f (list) (list (int 1)) (list (int 1) (int 2)))");
  expect_expr("f(g(h(x)))", "(call f (call g (call h (name x))))");
  /* `as` binds tightest and belongs to the call just before it */
  expect_expr("mlp(x) as blk", "(call mlp (name x) (as blk))");
  expect_expr("mlp(x) as a.b + 1", "(binary + (call mlp (name x) (as a.b)) (int 1))");
  expect_expr("f(g(x) as a, h(y) as b.0) as c",
              "(call f (call g (name x) (as a)) (call h (name y) (as b.0)) (as c))");
  expect_expr("2 * mlp(x) as m.{i}", "(binary * (int 2) (call mlp (name x) (as m.{i})))");
  expect_expr("-mlp(x) as m", "(unary - (call mlp (name x) (as m)))");
  Parsed *p = parse_ok("model m { e = f(a, b, k=1, j=c) as p.q }");
  Ast *c = stmt(p, 0)->a;
  assert_int_equal(c->kind, AST_CALL);
  assert_string_equal(c->name, "f");
  assert_int_equal(c->list.n, 2);
  assert_int_equal(c->list2.n, 2);
  assert_string_equal(c->list2.items[1]->name, "j");
  assert_string_equal(c->list2.items[1]->a->name, "c");
  assert_string_equal(c->sval, "p.q");
  done(p);
}

static void test_statements(void **state) {
  (void)state;
  expect_body("  a, b, c = split(x, [1, 1, 1], 0)",
              "(assign (a b c) (call split (name x) (list (int 1) (int 1) (int 1)) (int 0)))");
  expect_body("  param w: f32[4]", "(param w (type f32 (dims (int 4))))");
  expect_body("  param w: f32[4] = normal(0.0, 0.02)",
              "(param w (type f32 (dims (int 4))) (call normal (float 0) (float 0.02)))");
  expect_body("  buffer s: i64[]", "(buffer s (type i64 (dims)))");
  expect_body("  const N = 2 * 3", "(const N (binary * (int 2) (int 3)))");
  expect_body("  output y = x + 1", "(output y (binary + (name x) (int 1)))");
  expect_body("  input x: f32[B, 4,]", "(input x (type f32 (dims (name B) (int 4))))");
  expect_body("  input x: f32[B * 2, C / H, N - 1]",
              "(input x (type f32 (dims (binary * (name B) (int 2)) (binary / (name C) "
              "(name H)) (binary - (name N) (int 1)))))");
  Parsed *p = parse_ok("model m { a, b = f(x) }");
  Ast *s = stmt(p, 0);
  assert_int_equal(s->kind, AST_ASSIGN);
  assert_int_equal(s->list2.n, 2);
  assert_int_equal(s->list2.items[0]->kind, AST_NAME);
  assert_string_equal(s->list2.items[1]->name, "b");
  done(p);
}

static void test_block_headers(void **state) {
  (void)state;
  Parsed *p = parse_ok("block a(x: f32[]) -> y { y = x }\n"
                       "block b(x: f32[..., C], y: f32[...]) -> p, q { p = x; q = y }\n"
                       "block c(x: f32[B, T, C], n: int = 4, g: float = 1.5, on: bool = true,) "
                       "-> (r, s) {\n  r = x; s = x\n}\n"
                       "block d() -> y { y = zeros() }\n");
  expect_in(p->dump, "(block a (args (arg x (type f32 (dims)))) (results y)");
  expect_in(p->dump, "(block b (args (arg x (type f32 (dims (ellipsis) (name C)))) "
                     "(arg y (type f32 (dims (ellipsis))))) (results p q)");
  expect_in(p->dump, "(arg n (type int) (int 4)) (arg g (type float) (float 1.5)) "
                     "(arg on (type bool) (bool true))) (results r s)");
  expect_in(p->dump, "(block d (args) (results y)");
  Ast *c = p->file->list.items[2];
  assert_int_equal(c->list2.n, 4);
  assert_int_equal(c->list3.n, 2);
  assert_int_equal(c->list2.items[1]->b->ival, 4);
  done(p);
}

/* Every node carries the location of its first token; a binary node the
 * location of its operator. */
static void test_locations(void **state) {
  (void)state;
  Parsed *p = parse_ok("model m {\n"                      /* 1 */
                       "  param fc.w: f32[4] = zeros\n"   /* 2 */
                       "\th = a + f(b, k=c) as x.y\n"     /* 3: tab counts one column */
                       "  q, r = -s\n"                    /* 4 */
                       "  repeat i in 0..2 { t = [u] }\n" /* 5 */
                       "}\n");
  Ast *model = p->file->list.items[0];
  assert_ptr_equal(p->file->loc.src, model->loc.src);
  assert_string_equal(model->loc.src->path, "test.mdl");
  assert_int_equal(model->loc.line, 1);
  assert_int_equal(model->loc.col, 1);
  Ast *param = model->list.items[0];
  assert_int_equal(param->loc.line, 2);
  assert_int_equal(param->loc.col, 3);
  assert_int_equal(param->a->loc.col, 15); /* the type: f32 */
  assert_int_equal(param->a->list.items[0]->loc.col, 19);
  assert_int_equal(param->b->loc.col, 24);
  Ast *assign = model->list.items[1];
  assert_int_equal(assign->loc.line, 3);
  assert_int_equal(assign->loc.col, 2); /* h, after the tab */
  Ast *plus = assign->a;
  assert_int_equal(plus->kind, AST_BINARY);
  assert_int_equal(plus->loc.col, 8); /* the '+' */
  assert_int_equal(plus->a->loc.col, 6);
  Ast *call = plus->b;
  assert_int_equal(call->loc.col, 10); /* the callee f */
  assert_int_equal(call->list.items[0]->loc.col, 12);
  assert_int_equal(call->list2.items[0]->loc.col, 15); /* the keyword k */
  assert_int_equal(call->list2.items[0]->a->loc.col, 17);
  Ast *tuple = model->list.items[2];
  assert_int_equal(tuple->loc.line, 4);
  assert_int_equal(tuple->loc.col, 3);
  assert_int_equal(tuple->list2.items[1]->loc.col, 6);
  assert_int_equal(tuple->a->kind, AST_UNARY);
  assert_int_equal(tuple->a->loc.col, 10);
  Ast *rep = model->list.items[3];
  assert_int_equal(rep->loc.line, 5);
  assert_int_equal(rep->loc.col, 3);
  assert_int_equal(rep->a->loc.col, 15);
  assert_int_equal(rep->b->loc.col, 18);
  Ast *list = rep->list.items[0]->a;
  assert_int_equal(list->kind, AST_LIST);
  assert_int_equal(list->loc.col, 26);
  done(p);
}

/* ---- errors ----------------------------------------------------------------- */

static void test_error_format(void **state) {
  (void)state;
  Parsed *p = parse("model m {\n  input x: f32[B, 4]\n  h = relu(x, ))\n}\n");
  assert_null(p->file);
  assert_int_equal(p->d.nerrors, 1);
  assert_string_equal(diag_text(p),
                      "test.mdl:3:16: error: syntax error: unexpected ')', expected 'as', "
                      "operator or newline\n"
                      "    h = relu(x, ))\n"
                      "                 ^\n");
  done(p);
  p = parse("model m {\n  y = )\n}\n");
  assert_string_equal(diag_text(p), "test.mdl:2:7: error: syntax error: unexpected ')', "
                                    "expected expression\n"
                                    "    y = )\n"
                                    "        ^\n");
  done(p);
  /* tabs are kept in the quoted line; the caret line counts bytes in spaces */
  p = parse("model m {\n\ty = )\n}\n");
  assert_string_equal(diag_text(p), "test.mdl:2:6: error: syntax error: unexpected ')', "
                                    "expected expression\n"
                                    "  \ty = )\n"
                                    "       ^\n");
  done(p);
}

static void test_error_several(void **state) {
  (void)state;
  /* one message per broken statement, recovery at each newline */
  expect_errors(
      "model m {\n"
      "  input x: f32[B]\n"
      "  a = )\n"
      "  b = x +\n"
      "  input y f32[B]\n"
      "  c = f(x, 1\n"
      "  d = 1\n"
      "  = 2\n"
      "  e = x x\n"
      "  ok = x\n"
      "}\n",
      6, "3:7: error: syntax error: unexpected ')', expected expression",
      "4:10: error: syntax error: unexpected newline, expected expression",
      "5:11: error: syntax error: unexpected identifier 'f32', expected ':'",
      "7:3: error: syntax error: unexpected identifier 'd', expected ',', ')' or operator",
      "8:3: error: syntax error: unexpected '=', expected statement",
      "9:9: error: syntax error: unexpected identifier 'x', expected '(', operator or "
      "newline",
      NULL);
  /* errors in headers skip the whole body; later items are still checked */
  expect_errors("modle m {\n  x = 1\n}\n"
                "block b(x: f32[..., D] -> y {\n  y = )\n}\n"
                "model m(x) {\n  y = (\n}\n"
                "train t {\n  loss = a b\n}\n",
                6,
                "1:1: error: syntax error: unexpected identifier 'modle', expected 'model', "
                "'block' or 'train'",
                "4:24: error: syntax error: unexpected '->', expected '=', ',' or ')'",
                "5:7: error: syntax error: unexpected ')', expected expression",
                "7:8: error: syntax error: unexpected '(', expected '{'",
                "9:1: error: syntax error: unexpected '}', expected expression",
                "11:12: error: syntax error: unexpected identifier 'b'", NULL);
  /* errors on consecutive lines and on one line separated by ';' */
  expect_errors("model m {\n  a = )\n  b = )\n  c = ); d = ]\n}\n", 4, "2:7: error", "3:7: error",
                "4:7: error", "4:14: error: syntax error: unexpected ']'", NULL);
}

static void test_error_positional_after_keyword(void **state) {
  (void)state;
  expect_errors("model m {\n  y = conv2d(x, stride=2, w)\n}\n", 1,
                "2:27: error: positional argument follows keyword argument", NULL);
  expect_errors("model m {\n  y = f(a=1, b=2, a=3)\n}\n", 1,
                "2:19: error: keyword argument 'a' repeated", NULL);
  /* the rest of the file is still parsed and checked */
  expect_errors("model m {\n  y = f(k=1, x)\n  z = g(j=2, w)\n}\n", 2,
                "2:14: error: positional argument follows keyword argument",
                "3:14: error: positional argument follows keyword argument", NULL);
}

static void test_error_chained_comparison(void **state) {
  (void)state;
  expect_errors("model m {\n  y = a < b < c\n}\n", 1,
                "2:13: error: syntax error: comparison operators cannot be chained; use "
                "parentheses",
                NULL);
  expect_errors("model m {\n  y = a == b != c\n  z = 1 <= 2 >= 3 > 4\n}\n", 2, "2:14: error",
                "3:14: error", NULL);
}

static void test_error_lexical(void **state) {
  (void)state;
  expect_errors("model m {\n  act = \"tanh\n  y = x\n}\n", 1,
                "2:9: error: unterminated string literal", NULL);
  expect_errors("model m {\n  y = \"a\\qb\"\n}\n", 1,
                "2:9: error: unknown escape sequence '\\q' in string", NULL);
  expect_errors("model m {\n  y = x $ 2\n  z = a ! b\n}\n", 2, "2:9: error: invalid character '$'",
                "3:9: error: invalid character '!'", NULL);
  expect_errors("model m {\n  y = \xC3\xA9\n  w = \x01\n}\n", 2,
                "2:7: error: invalid character '\xC3\xA9'", "3:7: error: invalid character '\\x01'",
                NULL);
  expect_errors("model m {\n  param 0.weight: f32[4]\n  y = 1.0.2\n  z = 3abc\n}\n", 3,
                "2:9: error: invalid path '0.weight': a path must start with an identifier",
                "3:7: error: invalid path '1.0.2'", "4:7: error: invalid number '3abc'", NULL);
  expect_errors("model m {\n  y = 99999999999999999999\n  z = 1e999\n}\n", 2,
                "2:7: error: integer literal '99999999999999999999' is too large",
                "3:7: error: float literal '1e999' is too large", NULL);
  /* `.` alone and a path with a space are not paths */
  expect_errors("model m {\n  y = a. b\n}\n", 1, "2:8: error: invalid character '.'", NULL);
}

static void test_error_misc(void **state) {
  (void)state;
  /* end of file inside a body: the caret goes after the last character */
  expect_errors("model m {\n  x = 1\n", 1,
                "2:8: error: syntax error: unexpected end of file, expected '}'", NULL);
  expect_errors("model m {\n  x = f(1,\n", 1,
                "2:11: error: syntax error: unexpected end of file, expected expression or ')'",
                NULL);
  /* `as` must follow a call and name a path */
  expect_errors("model m {\n  y = x as p\n}\n", 1, "2:9: error: syntax error: unexpected 'as'",
                NULL);
  expect_errors("model m {\n  y = f(x) as 3\n}\n", 1,
                "2:15: error: syntax error: unexpected integer, expected identifier or path", NULL);
  /* keywords are reserved; loss and optimizer are not keywords */
  expect_errors("model m {\n  input = 1\n}\n", 1, "2:9: error: syntax error: unexpected '='", NULL);
  Parsed *p = parse_ok("model m { loss = 1; optimizer = 2 }");
  done(p);
  /* an unclosed '(' does not swallow what follows the closing brace */
  expect_errors("model m {\n  y = f(x\n}\nmodel n {\n  z = )\n}\n", 2, "3:1: error", "5:7: error",
                NULL);
  /* a path where an identifier is needed */
  expect_errors("model m {\n  input a.b: f32[]\n  a.b = 1\n}\n", 2, "2:9: error", "3:3: error",
                NULL);
}

/* Trees deeper than AST_MAX_DEPTH are refused, however they are built. */
static void test_error_depth(void **state) {
  (void)state;
  size_t n = 200000;
  char *text = malloc(4 * n + 64);
  strcpy(text, "model m { x = ");
  char *q = text + strlen(text);
  for (size_t i = 0; i < n; i++) q += sprintf(q, i ? "+a" : "a");
  strcpy(q, " }\n");
  Parsed *p = parse(text);
  assert_null(p->file);
  assert_int_equal(p->d.nerrors, 1);
  expect_in(diag_text(p), "error: expression nested too deeply (more than 1000 levels)");
  done(p);

  q = text + strlen("model m { x = ");
  for (size_t i = 0; i < n; i++) *q++ = '(';
  strcpy(q, "a }\n");
  p = parse(text);
  assert_null(p->file);
  expect_in(diag_text(p), "test.mdl:1:");
  expect_in(diag_text(p), "nested too deeply");
  done(p);

  q = text + strlen("model m { x = ");
  for (size_t i = 0; i < n; i++) *q++ = '-';
  strcpy(q, "a }\n");
  p = parse(text);
  assert_null(p->file);
  expect_in(diag_text(p), "nested too deeply");
  done(p);
  free(text);

  /* a long but shallow list is fine */
  p = parse_ok("model m { x = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16] }");
  assert_int_equal(stmt(p, 0)->a->list.n, 16);
  done(p);
}

/* ---- support: diagnostics, sources, arena, dump ----------------------------- */

static void test_diag(void **state) {
  (void)state;
  Arena *A = arena_new();
  Source *src = source_from_string(A, "d.mdl", "first\n  second line\nthird");
  Diag d = {0};
  diag_error(&d, (Loc){src, 2, 3}, "bad %s %d", "thing", 7);
  diag_note(&d, (Loc){src, 3, 6}, "here");
  diag_error(&d, (Loc){0}, "no location");
  assert_int_equal(d.nerrors, 2); /* notes do not count */
  assert_string_equal(d.buf, "d.mdl:2:3: error: bad thing 7\n"
                             "    second line\n"
                             "    ^\n"
                             "d.mdl:3:6: note: here\n"
                             "  third\n"
                             "       ^\n"
                             "mlc: error: no location\n");
  assert_int_equal(d.len, strlen(d.buf));
  /* echo: the same text goes to the stream */
  char *echoed = NULL;
  size_t len = 0;
  Diag e = {0};
  e.echo = open_memstream(&echoed, &len);
  diag_error(&e, (Loc){src, 1, 1}, "x");
  fclose(e.echo);
  e.echo = NULL; /* closed: later errors only go to the buffer */
  assert_string_equal(echoed, "d.mdl:1:1: error: x\n  first\n  ^\n");
  assert_string_equal(echoed, e.buf);
  free(echoed);
  /* lots of text: the buffer grows */
  for (int i = 0; i < 1000; i++) diag_error(&e, (Loc){src, 3, 1}, "%d", i);
  assert_int_equal(e.nerrors, 1001);
  expect_in(e.buf, "d.mdl:3:1: error: 999\n  third\n  ^\n");
  diag_free(&e);
  assert_null(e.buf);
  diag_free(&d);
  arena_free(A);
}

static void test_source_from_file(void **state) {
  (void)state;
  Arena *A = arena_new();
  Diag d = {0};
  assert_null(source_from_file(A, "/nonexistent/dir/m.mdl", &d));
  assert_int_equal(d.nerrors, 1);
  assert_string_equal(
      d.buf, "/nonexistent/dir/m.mdl: error: cannot read file: No such file or directory\n");
  diag_free(&d);
  d = (Diag){0};
  assert_null(source_from_file(A, "/", &d));
  assert_string_equal(d.buf, "/: error: cannot read file: Is a directory\n");
  diag_free(&d);

  char path[] = "/tmp/test_grammar_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  FILE *f = fdopen(fd, "wb");
  /* bigger than one read step, with a NUL byte in it */
  for (int i = 0; i < 10000; i++) fputs("# comment line\n", f);
  fputc('\0', f);
  fputs("\nmodel m {}\n", f);
  fclose(f);
  d = (Diag){0};
  Source *src = source_from_file(A, path, &d);
  assert_non_null(src);
  assert_int_equal(d.nerrors, 0);
  assert_int_equal(src->len, 10000 * 15 + 1 + 12);
  assert_string_equal(src->path, path);
  Ast *file = parse_source(A, src, &d);
  assert_null(file); /* the NUL byte is an invalid character */
  assert_int_equal(d.nerrors, 1);
  expect_in(d.buf, ":10001:1: error: invalid character '\\x00'");
  remove(path);
  diag_free(&d);
  arena_free(A);
}

static void test_arena(void **state) {
  (void)state;
  Arena *A = arena_new();
  for (size_t n = 0; n < 3000; n++) {
    unsigned char *p = arena_alloc(A, n);
    assert_int_equal((uintptr_t)p % 16, 0);
    for (size_t i = 0; i < n; i++) assert_int_equal(p[i], 0);
    memset(p, 0xAB, n);
  }
  unsigned char *big = arena_alloc(A, 1 << 20); /* its own chunk */
  assert_int_equal((uintptr_t)big % 16, 0);
  assert_int_equal(big[0], 0);
  assert_int_equal(big[(1 << 20) - 1], 0);
  memset(big, 1, 1 << 20);
  unsigned char *after = arena_alloc(A, 8);
  assert_int_equal((uintptr_t)after % 16, 0);
  assert_int_equal(after[0], 0);
  assert_string_equal(arena_printf(A, "%s.%d.%s", "layer", 3, "w"), "layer.3.w");
  assert_string_equal(arena_printf(A, "%s", ""), "");
  char *long_str = arena_printf(A, "%5000d", 1);
  assert_int_equal(strlen(long_str), 5000);
  assert_string_equal(arena_strndup(A, "abcdef", 3), "abc");
  assert_string_equal(arena_strdup(A, "xyz"), "xyz");
  arena_free(A);
  arena_free(NULL);
}

static void test_ast_api(void **state) {
  (void)state;
  Arena *A = arena_new();
  Ast *call = ast_new(A, AST_CALL, (Loc){0});
  call->name = "f";
  assert_null(call->a);
  assert_int_equal(call->list.n, 0);
  for (int i = 0; i < 100; i++) {
    Ast *n = ast_new(A, AST_INT, (Loc){0});
    n->ival = i;
    ast_list_push(A, &call->list, n);
  }
  assert_int_equal(call->list.n, 100);
  assert_int_equal(call->list.items[99]->ival, 99);
  assert_string_equal(ast_kind_name(AST_INT), "int");
  assert_string_equal(ast_kind_name(AST_ARGDECL), "arg");
  assert_string_equal(ast_kind_name(AST_FILE), "file");
  assert_string_equal(ast_kind_name((AstKind)999), "?");
  /* compiler-made trees with holes still dump */
  Ast *bin = ast_new(A, AST_BINARY, (Loc){0});
  bin->op = AOP_GE;
  char *s = dump_to_string(bin);
  assert_string_equal(s, "(binary >= nil nil)");
  free(s);
  Ast *str = ast_new(A, AST_STRING, (Loc){0});
  str->sval = "a\"b\\c\n\x01";
  s = dump_to_string(str);
  assert_string_equal(s, "(string \"a\\\"b\\\\c\\n\\x01\")");
  free(s);
  arena_free(A);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_spec_fashion_mlp),
      cmocka_unit_test(test_spec_blocks),
      cmocka_unit_test(test_spec_train_section),
      cmocka_unit_test(test_spec_fragments),
      cmocka_unit_test(test_paths),
      cmocka_unit_test(test_ranges),
      cmocka_unit_test(test_numbers),
      cmocka_unit_test(test_strings),
      cmocka_unit_test(test_layout),
      cmocka_unit_test(test_precedence),
      cmocka_unit_test(test_calls),
      cmocka_unit_test(test_statements),
      cmocka_unit_test(test_block_headers),
      cmocka_unit_test(test_locations),
      cmocka_unit_test(test_error_format),
      cmocka_unit_test(test_error_several),
      cmocka_unit_test(test_error_positional_after_keyword),
      cmocka_unit_test(test_error_chained_comparison),
      cmocka_unit_test(test_error_lexical),
      cmocka_unit_test(test_error_misc),
      cmocka_unit_test(test_error_depth),
      cmocka_unit_test(test_diag),
      cmocka_unit_test(test_source_from_file),
      cmocka_unit_test(test_arena),
      cmocka_unit_test(test_ast_api),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
