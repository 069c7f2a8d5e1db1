/* grammar/ast.c — AST nodes, lists and the S-expression dump.
 *
 * ast_dump() is what golden and unit tests compare, so its format is part of
 * the contract: change it only together with the tests.  Expressions print on
 * one line, statements one per line, indented two spaces per level, the
 * closing parenthesis on the last line of its node.  Source locations are not
 * printed; floats print as Python's repr would, without a trailing ".0".
 * For the fashion_mlp example of the spec it gives (some lines left out):
 *
 *     (file
 *       (model fashion_mlp
 *         (input x (type u8 (dims (name B) (int 1) (int 28) (int 28))))
 *         (param fc1.weight (type f32 (dims (int 256) (int 784))) (name kaiming_uniform))
 *         ...
 *         (assign h (binary / (call to_f32 (name x)) (float 255)))
 *         ...
 *         (output logits (call linear (name h) (name fc2.weight) (name fc2.bias))))
 *       (train fashion_mlp
 *         (input y (type u8 (dims (name B))))
 *         ...
 *         (assign optimizer (call sgd (kwarg lr (float 0.05)) (kwarg momentum (float 0.9))))))
 *
 * Per kind (brackets = printed only when present):
 *     (int N) (float G) (string "S") (bool true|false) (name PATH) (ellipsis)
 *     (unary - E) (binary OP A B) (list E...) (kwarg K E)
 *     (call F ARG... KWARG... [(as PATH)])
 *     (type DT) for a plain word, (type DT (dims D...)) when it had [ ]
 *     (input X TYPE) (param P TYPE [INIT]) (buffer P TYPE [INIT]) (tie NEW OLD)
 *     (const N E) (assign X E) or (assign (X Y...) E) (output X [E])
 *     (repeat I FROM TO STMT...) (arg X TYPE [DEFAULT])
 *     (model M STMT...) (block B (args ARG...) (results R...) STMT...)
 *     (train M STMT...) (file ITEM...)
 * A missing child prints as nil.
 */
#include "ast.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

Ast *ast_new(Arena *A, AstKind kind, Loc loc) {
  Ast *n = arena_alloc(A, sizeof *n);
  n->kind = kind;
  n->loc = loc;
  return n;
}

void ast_list_push(Arena *A, AstList *l, Ast *item) {
  if (l->n == l->cap) { /* arena memory: the old array is simply abandoned */
    int cap = l->cap ? l->cap * 2 : 4;
    Ast **items = arena_alloc(A, sizeof(Ast *) * (size_t)cap);
    if (l->n) memcpy(items, l->items, sizeof(Ast *) * (size_t)l->n);
    l->items = items;
    l->cap = cap;
  }
  l->items[l->n++] = item;
}

static const char *const kind_names[] = {
    [AST_INT] = "int",       [AST_FLOAT] = "float",       [AST_STRING] = "string",
    [AST_BOOL] = "bool",     [AST_NAME] = "name",         [AST_UNARY] = "unary",
    [AST_BINARY] = "binary", [AST_CALL] = "call",         [AST_KWARG] = "kwarg",
    [AST_LIST] = "list",     [AST_ELLIPSIS] = "ellipsis", [AST_TYPE] = "type",
    [AST_INPUT] = "input",   [AST_PARAM] = "param",       [AST_BUFFER] = "buffer",
    [AST_TIE] = "tie",       [AST_CONST] = "const",       [AST_ASSIGN] = "assign",
    [AST_OUTPUT] = "output", [AST_REPEAT] = "repeat",     [AST_ARGDECL] = "arg",
    [AST_MODEL] = "model",   [AST_BLOCK] = "block",       [AST_TRAIN] = "train",
    [AST_FILE] = "file",
};

const char *ast_kind_name(AstKind k) {
  if ((unsigned)k < sizeof kind_names / sizeof kind_names[0] && kind_names[k]) return kind_names[k];
  return "?";
}

/* Writes a binary or unary operator: a character or one of AOP_*. */
static void dump_op(FILE *out, int op) {
  static const char *const cmp[] = {"==", "!=", "<", "<=", ">", ">="};
  if (op >= AOP_EQ && op <= AOP_GE)
    fprintf(out, " %s ", cmp[op - AOP_EQ]);
  else if (op > 0x20 && op < 0x7f)
    fprintf(out, " %c ", op);
  else
    fputs(" ? ", out);
}

/* The shortest digits that read back as the same double, laid out as Python's
 * repr does (fixed notation for exponents -4..15): 0.05, 2500, 1e-05. */
static void dump_double(FILE *out, double v) {
  if (isnan(v)) {
    fputs("nan", out);
    return;
  }
  if (isinf(v)) {
    fputs(v < 0 ? "-inf" : "inf", out);
    return;
  }
  char buf[64];
  int prec = 1;
  for (; prec < 17; prec++) {
    snprintf(buf, sizeof buf, "%.*e", prec - 1, v);
    if (strtod(buf, NULL) == v) break;
  }
  snprintf(buf, sizeof buf, "%.*e", prec - 1, v);
  int exp = atoi(strchr(buf, 'e') + 1);
  if (exp >= -4 && exp < 16) {
    int decimals = prec - 1 - exp;
    snprintf(buf, sizeof buf, "%.*f", decimals > 0 ? decimals : 0, v);
  }
  fputs(buf, out);
}

static void dump_string(FILE *out, const char *s) {
  fputc('"', out);
  for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
    switch (*p) {
    case '"':
      fputs("\\\"", out);
      break;
    case '\\':
      fputs("\\\\", out);
      break;
    case '\n':
      fputs("\\n", out);
      break;
    case '\t':
      fputs("\\t", out);
      break;
    default:
      if (*p < 0x20 || *p == 0x7f)
        fprintf(out, "\\x%02x", *p);
      else
        fputc(*p, out);
    }
  }
  fputc('"', out);
}

static const char *str_or_nil(const char *s) {
  return s ? s : "nil";
}

static void dump_expr(FILE *out, const Ast *n);
static void dump_node(FILE *out, const Ast *n, int depth);

static void dump_exprs(FILE *out, const AstList *l) {
  for (int i = 0; i < l->n; i++) {
    fputc(' ', out);
    dump_expr(out, l->items[i]);
  }
}

/* One-line forms: expressions, types, and the simple statements. */
static void dump_expr(FILE *out, const Ast *n) {
  if (!n) {
    fputs("nil", out);
    return;
  }
  fprintf(out, "(%s", ast_kind_name(n->kind));
  switch (n->kind) {
  case AST_INT:
    fprintf(out, " %lld", (long long)n->ival);
    break;
  case AST_FLOAT:
    fputc(' ', out);
    dump_double(out, n->fval);
    break;
  case AST_STRING:
    fputc(' ', out);
    dump_string(out, n->sval);
    break;
  case AST_BOOL:
    fputs(n->ival ? " true" : " false", out);
    break;
  case AST_NAME:
    fprintf(out, " %s", str_or_nil(n->name));
    break;
  case AST_ELLIPSIS:
    break;
  case AST_UNARY:
    dump_op(out, n->op);
    dump_expr(out, n->a);
    break;
  case AST_BINARY:
    dump_op(out, n->op);
    dump_expr(out, n->a);
    fputc(' ', out);
    dump_expr(out, n->b);
    break;
  case AST_CALL:
    fprintf(out, " %s", str_or_nil(n->name));
    dump_exprs(out, &n->list);
    dump_exprs(out, &n->list2);
    if (n->sval) fprintf(out, " (as %s)", n->sval);
    break;
  case AST_KWARG:
    fprintf(out, " %s ", str_or_nil(n->name));
    dump_expr(out, n->a);
    break;
  case AST_LIST:
    dump_exprs(out, &n->list);
    break;
  case AST_TYPE:
    fprintf(out, " %s", str_or_nil(n->name));
    if (n->ival) {
      fputs(" (dims", out);
      dump_exprs(out, &n->list);
      fputc(')', out);
    }
    break;
  case AST_INPUT:
  case AST_PARAM:
  case AST_BUFFER:
  case AST_ARGDECL:
    fprintf(out, " %s ", str_or_nil(n->name));
    dump_expr(out, n->a);
    if (n->b) {
      fputc(' ', out);
      dump_expr(out, n->b);
    }
    break;
  case AST_TIE:
    fprintf(out, " %s %s", str_or_nil(n->name), str_or_nil(n->sval));
    break;
  case AST_CONST:
    fprintf(out, " %s ", str_or_nil(n->name));
    dump_expr(out, n->a);
    break;
  case AST_ASSIGN:
    if (n->list2.n == 1 && n->list2.items[0]) {
      fprintf(out, " %s", str_or_nil(n->list2.items[0]->name));
    } else {
      fputs(" (", out);
      for (int i = 0; i < n->list2.n; i++)
        fprintf(out, "%s%s", i ? " " : "",
                n->list2.items[i] ? str_or_nil(n->list2.items[i]->name) : "nil");
      fputc(')', out);
    }
    fputc(' ', out);
    dump_expr(out, n->a);
    break;
  case AST_OUTPUT:
    fprintf(out, " %s", str_or_nil(n->name));
    if (n->a) {
      fputc(' ', out);
      dump_expr(out, n->a);
    }
    break;
  default: /* multi-line kinds in an expression position: print them flat */
    fputc(' ', out);
    dump_node(out, n, 0);
    break;
  }
  fputc(')', out);
}

static void dump_body(FILE *out, const AstList *l, int depth) {
  for (int i = 0; i < l->n; i++) {
    fprintf(out, "\n%*s", 2 * depth, "");
    dump_node(out, l->items[i], depth);
  }
}

/* Multi-line forms (bodies); everything else goes through dump_expr. */
static void dump_node(FILE *out, const Ast *n, int depth) {
  if (!n) {
    fputs("nil", out);
    return;
  }
  switch (n->kind) {
  case AST_REPEAT:
    fprintf(out, "(repeat %s ", str_or_nil(n->name));
    dump_expr(out, n->a);
    fputc(' ', out);
    dump_expr(out, n->b);
    break;
  case AST_MODEL:
  case AST_TRAIN:
    fprintf(out, "(%s %s", ast_kind_name(n->kind), str_or_nil(n->name));
    break;
  case AST_BLOCK:
    fprintf(out, "(block %s (args", str_or_nil(n->name));
    dump_exprs(out, &n->list2);
    fputs(") (results", out);
    for (int i = 0; i < n->list3.n; i++)
      fprintf(out, " %s", n->list3.items[i] ? str_or_nil(n->list3.items[i]->name) : "nil");
    fputc(')', out);
    break;
  case AST_FILE:
    fputs("(file", out);
    break;
  default:
    dump_expr(out, n);
    return;
  }
  dump_body(out, &n->list, depth + 1);
  fputc(')', out);
}

void ast_dump(FILE *out, const Ast *n) {
  dump_node(out, n, 0);
  fputc('\n', out);
}
