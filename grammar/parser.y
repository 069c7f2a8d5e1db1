/* grammar/parser.y — the MDL grammar (bison, pure, with locations).
 *
 * Builds the AST of ast.h from the tokens of lexer.l.  Layout of this file:
 * declarations; then the grammar, top level first, each rule under a comment
 * showing what it parses; then error reporting and parse_source().
 *
 * Error handling.  Syntax errors are reported by yyreport_syntax_error() in
 * readable form ("syntax error: unexpected ')', expected expression"), token
 * names spelled as the user writes them.  Recovery is by statement: the
 * `error` alternatives of stmt_opt/item_opt skip to the next newline or ';'
 * (or over a whole `{ ... }` body when the error sits in a header), and every
 * separator calls yyerrok, so each broken statement gets its own message.  A
 * few errors are found in actions instead of by the grammar (chained
 * comparisons, positional arguments after keyword ones, repeated keywords);
 * they are reported and parsing goes on.  parse_source() returns NULL when
 * anything at all was reported.
 */

%code top {
#include <errno.h>
#include <stdlib.h>
#include <string.h>
}

/* What parser.h (and so the lexer) needs: the AST and the shared context. */
%code requires {
#include "ast.h"

/* State shared by the parser and the scanner (the scanner's yyextra). */
typedef struct ParseCtx {
  Arena *A;
  const Source *src;
  Diag *d;
  Ast *root;            /* the AST_FILE, set when parsing reaches the end */
  /* scanner state */
  int line, col;        /* position of the next character, 1-based */
  int depth;            /* nesting of ( and [ : newlines are ignored inside */
  int at_sep;           /* last token ended a statement (or nothing yet) */
  int newline_seen;     /* a newline since the last token */
  int first_on_line;    /* the last token is the first on its line */
  const char *tok_text; /* text of the last IDENT/PATH token, for messages */
} ParseCtx;
}

%code {
#include "lexer.h"

static void yyerror(YYLTYPE *loc, void *scanner, ParseCtx *ctx, const char *msg);

static Loc mkloc(ParseCtx *ctx, YYLTYPE l) {
  return (Loc){ctx->src, l.first_line, l.first_column};
}

static Ast *node(ParseCtx *ctx, AstKind kind, YYLTYPE l) {
  return ast_new(ctx->A, kind, mkloc(ctx, l));
}

static Ast *binary(ParseCtx *ctx, int op, YYLTYPE l, Ast *a, Ast *b) {
  Ast *n = node(ctx, AST_BINARY, l);
  n->op = op;
  n->a = a;
  n->b = b;
  return n;
}

/* Appends n unless it is NULL (an empty or erroneous statement). */
static void push(ParseCtx *ctx, AstList *l, Ast *n) {
  if (n) ast_list_push(ctx->A, l, n);
}

static AstList list1(ParseCtx *ctx, Ast *n) {
  AstList l = {0};
  push(ctx, &l, n);
  return l;
}

/* Adds one argument to the call node being built: positional ones first,
 * then keyword ones, each keyword at most once. */
static void add_arg(ParseCtx *ctx, Ast *call, Ast *arg) {
  if (arg->kind != AST_KWARG) {
    if (call->list2.n > 0)
      diag_error(ctx->d, arg->loc, "positional argument follows keyword argument");
    push(ctx, &call->list, arg);
    return;
  }
  for (int i = 0; i < call->list2.n; i++)
    if (strcmp(call->list2.items[i]->name, arg->name) == 0)
      diag_error(ctx->d, arg->loc, "keyword argument '%s' repeated", arg->name);
  push(ctx, &call->list2, arg);
}
}

%define api.pure full
%define api.prefix {mlc_yy}
%define parse.error custom
%define parse.lac full
%locations
%parse-param {void *scanner} {ParseCtx *ctx}
%lex-param {void *scanner}

%union {
  Ast *ast;
  char *str;
  int64_t ival;
  double fval;
  int op;
  AstList list;
}

/* Token spellings double as their names in messages (see tok_spelling). */
%token <str>  IDENT "identifier"
%token <str>  PATH "path"
%token <ival> INT "integer"
%token <fval> FLOAT "float"
%token <str>  STRING "string"
%token NEWLINE "newline"
%token MODEL "model" BLOCK "block" TRAIN "train"
%token INPUT "input" PARAM "param" BUFFER "buffer" TIE "tie" CONST "const"
%token OUTPUT "output" REPEAT "repeat" IN "in" AS "as" TRUE "true" FALSE "false"
%token '(' '[' '-' '+' '*' '/' '@'
%token EQ "==" NE "!=" '<' LE "<=" '>' GE ">="
%token '=' ':' ARROW "->" ELLIPSIS "..." DOTDOT ".." '{' ',' ')' ']' ';' '}'

%type <ast> item_opt model block train stmt_opt stmt init_opt type dim argdecl
%type <ast> expr chain arith term unary primary call args_opt args arg
%type <list> items body stmts argdecls_opt argdecls results names targets dims exprs
%type <str> name
%type <op> cmpop

%%

/* ---- top level ---------------------------------------------------------- */

/* file: items separated by newlines (or ';'), any number of blank lines. */
file
  : items {
      Ast *f = ast_new(ctx->A, AST_FILE, (Loc){ctx->src, 1, 1});
      f->list = $1;
      ctx->root = f;
    }
  ;

items
  : item_opt              { $$ = list1(ctx, $1); }
  | items sep item_opt    { $$ = $1; push(ctx, &$$, $3); }
  ;

/* An item, nothing, or a broken one: on an error skip to the end of the line,
 * or over the body if a `{` comes first (a broken header). */
item_opt
  : %empty                { $$ = NULL; }
  | model
  | block
  | train
  | error                 { $$ = NULL; }
  | error body            { $$ = NULL; }
  ;

/* model NAME { stmts } */
model
  : MODEL IDENT body {
      $$ = node(ctx, AST_MODEL, @1);
      $$->name = $2;
      $$->list = $3;
    }
  ;

/* block NAME(arg: TYPE [= default], ...) -> results { stmts } */
block
  : BLOCK IDENT '(' argdecls_opt ')' ARROW results body {
      $$ = node(ctx, AST_BLOCK, @1);
      $$->name = $2;
      $$->list2 = $4;
      $$->list3 = $7;
      $$->list = $8;
    }
  ;

/* train MODEL { stmts } */
train
  : TRAIN IDENT body {
      $$ = node(ctx, AST_TRAIN, @1);
      $$->name = $2;
      $$->list = $3;
    }
  ;

/* Block parameters, an optional trailing comma. */
argdecls_opt
  : %empty                { $$ = (AstList){0}; }
  | argdecls
  | argdecls ','
  ;

argdecls
  : argdecl               { $$ = list1(ctx, $1); }
  | argdecls ',' argdecl  { $$ = $1; push(ctx, &$$, $3); }
  ;

/* NAME: TYPE [= EXPR] */
argdecl
  : IDENT ':' type init_opt {
      $$ = node(ctx, AST_ARGDECL, @1);
      $$->name = $1;
      $$->a = $3;
      $$->b = $4;
    }
  ;

/* Block results: `y`, `a, b` or `(a, b)`. */
results
  : names
  | '(' names ')'         { $$ = $2; }
  ;

names
  : IDENT {
      Ast *n = node(ctx, AST_NAME, @1);
      n->name = $1;
      $$ = list1(ctx, n);
    }
  | names ',' IDENT {
      Ast *n = node(ctx, AST_NAME, @3);
      n->name = $3;
      $$ = $1;
      push(ctx, &$$, n);
    }
  ;

/* ---- statements --------------------------------------------------------- */

/* { stmts }: statements separated by newlines or ';', empty ones allowed, so
 * `{ x = f(x) }` works on one line. */
body
  : '{' stmts '}'         { $$ = $2; }
  ;

stmts
  : stmt_opt              { $$ = list1(ctx, $1); }
  | stmts sep stmt_opt    { $$ = $1; push(ctx, &$$, $3); }
  ;

/* A separator also ends error recovery: the next statement's errors are
 * reported again. */
sep
  : NEWLINE               { yyerrok; }
  | ';'                   { yyerrok; }
  ;

stmt_opt
  : %empty                { $$ = NULL; }
  | stmt
  | error                 { $$ = NULL; }
  | error body            { $$ = NULL; }
  ;

stmt
  /* input NAME: TYPE */
  : INPUT IDENT ':' type {
      $$ = node(ctx, AST_INPUT, @1);
      $$->name = $2;
      $$->a = $4;
    }
  /* param PATH: TYPE [= INIT]   and   buffer PATH: TYPE [= INIT] */
  | PARAM name ':' type init_opt {
      $$ = node(ctx, AST_PARAM, @1);
      $$->name = $2;
      $$->a = $4;
      $$->b = $5;
    }
  | BUFFER name ':' type init_opt {
      $$ = node(ctx, AST_BUFFER, @1);
      $$->name = $2;
      $$->a = $4;
      $$->b = $5;
    }
  /* tie NEW = EXISTING */
  | TIE name '=' name {
      $$ = node(ctx, AST_TIE, @1);
      $$->name = $2;
      $$->sval = $4;
    }
  /* const NAME = EXPR */
  | CONST IDENT '=' expr {
      $$ = node(ctx, AST_CONST, @1);
      $$->name = $2;
      $$->a = $4;
    }
  /* NAME = EXPR   or   a, b, c = EXPR  (also `loss = ...`, `optimizer = ...`) */
  | targets '=' expr {
      $$ = node(ctx, AST_ASSIGN, @1);
      $$->list2 = $1;
      $$->a = $3;
    }
  /* output NAME [= EXPR] */
  | OUTPUT IDENT {
      $$ = node(ctx, AST_OUTPUT, @1);
      $$->name = $2;
    }
  | OUTPUT IDENT '=' expr {
      $$ = node(ctx, AST_OUTPUT, @1);
      $$->name = $2;
      $$->a = $4;
    }
  /* repeat I in A..B { stmts } */
  | REPEAT IDENT IN arith DOTDOT arith body {
      $$ = node(ctx, AST_REPEAT, @1);
      $$->name = $2;
      $$->a = $4;
      $$->b = $6;
      $$->list = $7;
    }
  ;

targets
  : IDENT {
      Ast *n = node(ctx, AST_NAME, @1);
      n->name = $1;
      $$ = list1(ctx, n);
    }
  | targets ',' IDENT {
      Ast *n = node(ctx, AST_NAME, @3);
      n->name = $3;
      $$ = $1;
      push(ctx, &$$, n);
    }
  ;

/* A parameter path: plain identifier or dotted path. */
name
  : IDENT
  | PATH
  ;

init_opt
  : %empty                { $$ = NULL; }
  | '=' expr              { $$ = $2; }
  ;

/* TYPE: a word (`int`, `float`) or DTYPE[dims], `f32[]` a scalar. */
type
  : IDENT {
      $$ = node(ctx, AST_TYPE, @1);
      $$->name = $1;
    }
  | IDENT '[' ']' {
      $$ = node(ctx, AST_TYPE, @1);
      $$->name = $1;
      $$->ival = 1;
    }
  | IDENT '[' dims ']' {
      $$ = node(ctx, AST_TYPE, @1);
      $$->name = $1;
      $$->ival = 1;
      $$->list = $3;
    }
  | IDENT '[' dims ',' ']' {
      $$ = node(ctx, AST_TYPE, @1);
      $$->name = $1;
      $$->ival = 1;
      $$->list = $3;
    }
  ;

dims
  : dim                   { $$ = list1(ctx, $1); }
  | dims ',' dim          { $$ = $1; push(ctx, &$$, $3); }
  ;

/* A dim is an integer expression or `...` (any leading dims). */
dim
  : arith
  | ELLIPSIS              { $$ = node(ctx, AST_ELLIPSIS, @1); }
  ;

/* ---- expressions, loosest first ----------------------------------------- */

/* Comparisons do not chain: `a < b < c` is reported (chain) and parsed as
 * (a < b) < c so that parsing can go on. */
expr
  : arith
  | arith cmpop arith     { $$ = binary(ctx, $2, @2, $1, $3); }
  | chain
  ;

chain
  : arith cmpop arith cmpop arith {
      diag_error(ctx->d, mkloc(ctx, @4),
                 "syntax error: comparison operators cannot be chained; use parentheses");
      $$ = binary(ctx, $4, @4, binary(ctx, $2, @2, $1, $3), $5);
    }
  | chain cmpop arith     { $$ = binary(ctx, $2, @2, $1, $3); }
  ;

cmpop
  : EQ                    { $$ = AOP_EQ; }
  | NE                    { $$ = AOP_NE; }
  | '<'                   { $$ = AOP_LT; }
  | LE                    { $$ = AOP_LE; }
  | '>'                   { $$ = AOP_GT; }
  | GE                    { $$ = AOP_GE; }
  ;

/* + - */
arith
  : term
  | arith '+' term        { $$ = binary(ctx, '+', @2, $1, $3); }
  | arith '-' term        { $$ = binary(ctx, '-', @2, $1, $3); }
  ;

/* * / @ */
term
  : unary
  | term '*' unary        { $$ = binary(ctx, '*', @2, $1, $3); }
  | term '/' unary        { $$ = binary(ctx, '/', @2, $1, $3); }
  | term '@' unary        { $$ = binary(ctx, '@', @2, $1, $3); }
  ;

/* unary minus: `-x @ y` is (-x) @ y; `-1` is a negated literal */
unary
  : primary
  | '-' unary {
      $$ = node(ctx, AST_UNARY, @1);
      $$->op = '-';
      $$->a = $2;
    }
  ;

primary
  : INT {
      $$ = node(ctx, AST_INT, @1);
      $$->ival = $1;
    }
  | FLOAT {
      $$ = node(ctx, AST_FLOAT, @1);
      $$->fval = $1;
    }
  | STRING {
      $$ = node(ctx, AST_STRING, @1);
      $$->sval = $1;
    }
  | TRUE {
      $$ = node(ctx, AST_BOOL, @1);
      $$->ival = 1;
    }
  | FALSE                 { $$ = node(ctx, AST_BOOL, @1); }
  | name {
      $$ = node(ctx, AST_NAME, @1);
      $$->name = $1;
    }
  | '(' expr ')'          { $$ = $2; }
  /* [a, b, ...]: possibly empty, trailing comma allowed */
  | '[' ']'               { $$ = node(ctx, AST_LIST, @1); }
  | '[' exprs ']' {
      $$ = node(ctx, AST_LIST, @1);
      $$->list = $2;
    }
  | '[' exprs ',' ']' {
      $$ = node(ctx, AST_LIST, @1);
      $$->list = $2;
    }
  | call
  ;

exprs
  : expr                  { $$ = list1(ctx, $1); }
  | exprs ',' expr        { $$ = $1; push(ctx, &$$, $3); }
  ;

/* NAME(args) [as PATH]: `as` binds tightest and names this call's instance. */
call
  : IDENT '(' args_opt ')' {
      $$ = $3;
      $$->loc = mkloc(ctx, @1);
      $$->name = $1;
    }
  | IDENT '(' args_opt ')' AS name {
      $$ = $3;
      $$->loc = mkloc(ctx, @1);
      $$->name = $1;
      $$->sval = $6;
    }
  ;

/* The arguments are collected into the AST_CALL node itself. */
args_opt
  : %empty                { $$ = node(ctx, AST_CALL, @$); }
  | args
  | args ','
  ;

args
  : arg {
      $$ = node(ctx, AST_CALL, @1);
      add_arg(ctx, $$, $1);
    }
  | args ',' arg          { $$ = $1; add_arg(ctx, $$, $3); }
  ;

/* positional EXPR or keyword NAME=EXPR */
arg
  : expr
  | IDENT '=' expr {
      $$ = node(ctx, AST_KWARG, @1);
      $$->name = $1;
      $$->a = $3;
    }
  ;

%%

/* ---- error messages ------------------------------------------------------ */

/* How a token is named in messages: classes as words (identifier, newline),
 * keywords and punctuation quoted ('model', '('). */
static const char *tok_spelling(yysymbol_kind_t sym, char *buf, size_t size) {
  if (sym == YYSYMBOL_YYUNDEF) return "invalid token";
  const char *name = yysymbol_name(sym); /* the alias, unquoted; 'x' for literals */
  static const char *const words[] = {"end of file", "identifier", "path", "integer",
                                      "float", "string", "newline"};
  for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
    if (strcmp(name, words[i]) == 0) return name;
  if (name[0] == '\'') return name;
  snprintf(buf, size, "'%s'", name);
  return buf;
}

/* The expected-token list, grouped into words a reader knows. */
typedef struct Expected {
  const char *item[YYNTOKENS + 4];
  char spell[YYNTOKENS][16];
  int n;
} Expected;

static int exp_find(const Expected *e, const char *s) {
  for (int i = 0; i < e->n; i++)
    if (strcmp(e->item[i], s) == 0) return i;
  return -1;
}

static int exp_has_all(const Expected *e, const char *const *set) {
  for (; *set; set++)
    if (exp_find(e, *set) < 0) return 0;
  return 1;
}

static void exp_remove(Expected *e, const char *const *set) {
  for (; *set; set++) {
    int i = exp_find(e, *set);
    if (i < 0) continue;
    memmove(&e->item[i], &e->item[i + 1], sizeof e->item[0] * (size_t)(e->n - i - 1));
    e->n--;
  }
}

static void exp_prepend(Expected *e, const char *s) {
  memmove(&e->item[1], &e->item[0], sizeof e->item[0] * (size_t)e->n);
  e->item[0] = s;
  e->n++;
}

static void group_expected(Expected *e) {
  static const char *const stmt_start[] = {"'input'", "'param'", "'buffer'", "'tie'",
                                           "'const'", "'output'", "'repeat'", NULL};
  static const char *const stmt_implied[] = {"identifier", "newline", "';'", "'}'",
                                             "end of file", NULL};
  static const char *const expr_start[] = {"identifier", "path", "integer", "float", "string",
                                           "'true'", "'false'", "'('", "'['", "'-'", NULL};
  static const char *const ops[] = {"'+'", "'-'", "'*'", "'/'", "'@'", "'=='", "'!='",
                                    "'<'", "'<='", "'>'", "'>='", NULL};
  static const char *const items[] = {"'model'", "'block'", "'train'", NULL};
  static const char *const seps[] = {"newline", "';'", "'}'", "end of file", NULL};
  static const char *const eof[] = {"end of file", NULL};
  static const char *const nl_semi[] = {"newline", "';'", NULL};
  if (exp_has_all(e, items)) exp_remove(e, seps);
  int sep = exp_has_all(e, nl_semi);
  if (exp_has_all(e, stmt_start)) {
    exp_remove(e, stmt_start);
    exp_remove(e, stmt_implied);
    exp_prepend(e, "statement");
    sep = 0;
  }
  int operators = exp_find(e, "'+'") >= 0 && exp_find(e, "'*'") >= 0;
  if (exp_has_all(e, expr_start)) {
    exp_remove(e, expr_start);
    exp_prepend(e, "expression");
  }
  if (operators) {
    exp_remove(e, ops);
    e->item[e->n++] = "operator";
  }
  if (sep) { /* newline and ';' (and '}', end of file) read as "newline" */
    exp_remove(e, seps);
    e->item[e->n++] = "newline";
  }
  if (e->n > 1) exp_remove(e, eof);
}

static int yyreport_syntax_error(const yypcontext_t *yyctx, void *scanner, ParseCtx *ctx) {
  (void)scanner;
  yysymbol_kind_t tok = yypcontext_token(yyctx);
  /* An unexpected token at the start of a line inside ( ) or [ ] most likely
   * means a missing ')' or ']': let newlines count again so that recovery
   * stops at the end of this line instead of the closing '}'. */
  if (ctx->first_on_line) ctx->depth = 0;
  if (tok == YYSYMBOL_YYUNDEF) return 0; /* the scanner has reported it */

  char what[160], buf[32];
  const char *spelled = tok_spelling(tok, buf, sizeof buf);
  if ((tok == YYSYMBOL_IDENT || tok == YYSYMBOL_PATH) && ctx->tok_text)
    snprintf(what, sizeof what, "%s '%.100s'", spelled, ctx->tok_text);
  else
    snprintf(what, sizeof what, "%s", spelled);

  yysymbol_kind_t syms[YYNTOKENS];
  int n = yypcontext_expected_tokens(yyctx, syms, YYNTOKENS);
  if (n < 0) n = 0;
  Expected e = {.n = 0};
  for (int i = 0; i < n; i++)
    e.item[e.n++] = tok_spelling(syms[i], e.spell[i], sizeof e.spell[i]);
  group_expected(&e);
  if (tok == YYSYMBOL_YYEOF) /* inside a body at the end: say what is missing */
    for (int i = 0; i < n; i++)
      if (strcmp(yysymbol_name(syms[i]), "'}'") == 0) {
        e.item[0] = "'}'";
        e.n = 1;
      }

  char expected[400] = "";
  if (e.n > 0 && e.n <= 5) {
    size_t len = 0;
    len += (size_t)snprintf(expected, sizeof expected, ", expected ");
    for (int i = 0; i < e.n && len < sizeof expected; i++)
      len += (size_t)snprintf(expected + len, sizeof expected - len, "%s%s",
                              i == 0 ? "" : i == e.n - 1 ? " or " : ", ", e.item[i]);
  }
  diag_error(ctx->d, mkloc(ctx, *yypcontext_location(yyctx)), "syntax error: unexpected %s%s",
             what, expected);
  return 0;
}

/* Only for what bison reports by itself: running out of parser stack. */
static void yyerror(YYLTYPE *loc, void *scanner, ParseCtx *ctx, const char *msg) {
  (void)scanner;
  if (strcmp(msg, "memory exhausted") == 0)
    msg = "input nested too deeply (parser stack exhausted)";
  diag_error(ctx->d, mkloc(ctx, *loc), "%s", msg);
}

/* ---- entry point --------------------------------------------------------- */

/* Rejects trees deeper than AST_MAX_DEPTH (long chains like a+b+c+... nest to
 * the left without growing the parser stack), so that every later pass may
 * recurse over the tree.  Iterative: the tree may be arbitrarily deep here. */
static void check_depth(ParseCtx *ctx, Ast *root) {
  typedef struct Item {
    Ast *n;
    int depth;
  } Item;
  size_t cap = 256, top = 0;
  Item *stack = malloc(cap * sizeof *stack);
  if (!stack) abort();
  stack[top++] = (Item){root, 1};
  while (top > 0) {
    Item it = stack[--top];
    if (it.depth > AST_MAX_DEPTH) {
      diag_error(ctx->d, it.n->loc, "expression nested too deeply (more than %d levels)",
                 AST_MAX_DEPTH);
      break;
    }
    Ast *kids[2] = {it.n->a, it.n->b};
    const AstList *lists[3] = {&it.n->list, &it.n->list2, &it.n->list3};
    size_t need = top + 2 + (size_t)lists[0]->n + (size_t)lists[1]->n + (size_t)lists[2]->n;
    if (need > cap) {
      while (cap < need) cap *= 2;
      Item *bigger = realloc(stack, cap * sizeof *stack);
      if (!bigger) abort();
      stack = bigger;
    }
    for (int i = 0; i < 2; i++)
      if (kids[i]) stack[top++] = (Item){kids[i], it.depth + 1};
    for (int l = 0; l < 3; l++)
      for (int i = 0; i < lists[l]->n; i++)
        if (lists[l]->items[i]) stack[top++] = (Item){lists[l]->items[i], it.depth + 1};
  }
  free(stack);
}

Ast *parse_source(Arena *A, const Source *src, Diag *d) {
  int errors_before = d->nerrors;
  if (src->len > (size_t)0x7fffffff) {
    diag_error(d, (Loc){src, 0, 0}, "file too large");
    return NULL;
  }
  ParseCtx ctx = {.A = A, .src = src, .d = d, .line = 1, .col = 1};
  ctx.at_sep = ctx.newline_seen = 1; /* the start of the file is a line start */
  yyscan_t scanner;
  if (mlc_yylex_init_extra(&ctx, &scanner) != 0) {
    diag_error(d, (Loc){0}, "cannot start the scanner: %s", strerror(errno));
    return NULL;
  }
  YY_BUFFER_STATE buf = mlc_yy_scan_bytes(src->text, (int)src->len, scanner);
  int rc = yyparse(scanner, &ctx);
  mlc_yy_delete_buffer(buf, scanner);
  mlc_yylex_destroy(scanner);
  if (rc == 0 && ctx.root) check_depth(&ctx, ctx.root);
  if (rc != 0 || d->nerrors > errors_before) return NULL;
  return ctx.root;
}
