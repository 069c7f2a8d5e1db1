/* grammar/ast.h — sources, diagnostics, arenas and the abstract syntax tree.
 *
 * The grammar layer is the bottom of the compiler: it reads MDL text
 * (lexer.l, parser.y) and builds the tree declared here.  It knows nothing of
 * the IR.  The small support pieces every later pass also uses (the arena,
 * source files with line lookup, and FILE:LINE:COL diagnostics) live here too
 * because this is the lowest layer.
 *
 * Example:
 *     Diag d = {0}; d.echo = stderr;
 *     Arena *A = arena_new();
 *     Source *s = source_from_file(A, "m.mdl", &d);
 *     Ast *file = parse_source(A, s, &d);     // NULL or AST_FILE; d.nerrors
 */
#ifndef MLC_AST_H
#define MLC_AST_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- arena.c: bump allocator, freed whole ---------------------------- */
typedef struct Arena Arena;
Arena *arena_new(void);
void arena_free(Arena *a);
void *arena_alloc(Arena *a, size_t n); /* zeroed, 16-byte aligned; aborts only on OOM */
char *arena_strdup(Arena *a, const char *s);
char *arena_strndup(Arena *a, const char *s, size_t n);
char *arena_printf(Arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- source.c: source text and diagnostics --------------------------- */
typedef struct Source {
  const char *path; /* as given on the command line */
  const char *text; /* NUL-terminated */
  size_t len;
} Source;

typedef struct Loc {
  const Source *src; /* NULL for compiler-made nodes */
  int line, col;     /* 1-based; col counts bytes */
} Loc;

/* Diagnostics accumulate as text in buf (so libmlc can hand them back) and
 * are echoed to `echo` when it is non-NULL.  Format:
 *     FILE:LINE:COL: error: MESSAGE
 *       <source line>
 *       ^                                                                    */
typedef struct Diag {
  char *buf;
  size_t len, cap;
  int nerrors;
  FILE *echo;
} Diag;

Source *source_from_file(Arena *a, const char *path, Diag *d); /* NULL + message if unreadable */
Source *source_from_string(Arena *a, const char *path, const char *text);
void diag_error(Diag *d, Loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void diag_verror(Diag *d, Loc loc, const char *fmt, va_list ap);
void diag_note(Diag *d, Loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void diag_free(Diag *d);

/* ---- the tree --------------------------------------------------------- */
typedef enum AstKind {
  /* expressions */
  AST_INT,      /* ival */
  AST_FLOAT,    /* fval (inf allowed) */
  AST_STRING,   /* sval, escapes resolved */
  AST_BOOL,     /* ival 0/1 */
  AST_NAME,     /* name: identifier or path, may hold "{i}" segments verbatim */
  AST_UNARY,    /* op '-' ; a */
  AST_BINARY,   /* op '+' '-' '*' '/' '@' or AOP_EQ..AOP_GE ; a, b */
  AST_CALL,     /* name = callee; list = positional args; list2 = AST_KWARG; sval = `as` path or NULL */
  AST_KWARG,    /* name = keyword ; a = value */
  AST_LIST,     /* [ list ] */
  AST_ELLIPSIS, /* `...` inside a type */
  AST_TYPE,     /* name = "f32".. or "int"/"float"/"bool"; ival = 1 if it had [ ]; list = dims */
  /* statements (inside model / block / train bodies) */
  AST_INPUT,  /* name ; a = AST_TYPE */
  AST_PARAM,  /* name = path ; a = AST_TYPE ; b = init expr or NULL */
  AST_BUFFER, /* same as AST_PARAM */
  AST_TIE,    /* name = new path ; sval = existing path */
  AST_CONST,  /* name ; a = expr */
  AST_ASSIGN, /* list2 = targets (AST_NAME, one or more for tuples) ; a = expr */
  AST_OUTPUT, /* name ; a = expr or NULL */
  AST_REPEAT, /* name = loop variable ; a = from ; b = to ; list = body */
  AST_ARGDECL, /* block parameter: name ; a = AST_TYPE ; b = default expr or NULL */
  /* top level */
  AST_MODEL, /* name ; list = body */
  AST_BLOCK, /* name ; list2 = AST_ARGDECL ; list3 = result names (AST_NAME) ; list = body */
  AST_TRAIN, /* name = model name ; list = body (input, assignments incl. loss / optimizer) */
  AST_FILE   /* list = models, blocks and train sections in source order */
} AstKind;

enum { AOP_EQ = 256, AOP_NE, AOP_LT, AOP_LE, AOP_GT, AOP_GE };

typedef struct AstList {
  struct Ast **items;
  int n, cap;
} AstList;

typedef struct Ast {
  AstKind kind;
  Loc loc; /* first token of the construct (for a binary op: the operator) */
  const char *name;
  const char *sval;
  int op;
  int64_t ival;
  double fval;
  struct Ast *a, *b;
  AstList list, list2, list3;
} Ast;

/* parse_source() rejects deeper trees (counting the file and statement nodes),
 * so passes may recurse over the AST without fear for the C stack. */
#define AST_MAX_DEPTH 1000
/* The lexer rejects longer identifiers and paths (bytes). */
#define AST_MAX_NAME 1024

void ast_list_push(Arena *A, AstList *l, Ast *item);
Ast *ast_new(Arena *A, AstKind kind, Loc loc);
const char *ast_kind_name(AstKind k);
/* Writes a stable, indented S-expression dump of the tree (used by tests). */
void ast_dump(FILE *out, const Ast *n);

/* ---- parser.y + lexer.l ----------------------------------------------- */
/* Parses a whole file.  Returns an AST_FILE node, or NULL when the file has
 * syntax errors (each reported through d; the parser recovers at statement
 * boundaries so several errors can be reported in one run). */
Ast *parse_source(Arena *A, const Source *src, Diag *d);

#endif
