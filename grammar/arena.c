/* grammar/arena.c — the bump allocator every compiler pass allocates from.
 *
 * An arena is a singly linked list of chunks.  Allocation bumps a pointer in
 * the newest chunk; nothing is freed until arena_free() releases the whole
 * list.  Chunks come from calloc and are never reused, so every allocation is
 * zeroed for free.  Requests bigger than a quarter of a chunk get a chunk of
 * their own, linked behind the current one so its free tail stays usable.
 *
 *     Arena *A = arena_new();
 *     char *s = arena_printf(A, "%s.%d", "layer", 3);   // "layer.3"
 *     arena_free(A);                                     // everything at once
 */
#include "ast.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { ARENA_ALIGN = 16, ARENA_CHUNK = 64 * 1024 };

typedef struct Chunk {
  struct Chunk *next;
  size_t cap, used; /* bytes in data[], bytes handed out (incl. padding) */
  unsigned char data[];
} Chunk;

struct Arena {
  Chunk *head; /* the chunk we bump in; older chunks follow */
};

static void arena_oom(size_t n) {
  fprintf(stderr, "mlc: fatal: out of memory (allocating %zu bytes)\n", n);
  abort();
}

/* A chunk able to hold n bytes at ARENA_ALIGN whatever malloc's alignment. */
static Chunk *chunk_new(size_t n) {
  if (n > SIZE_MAX - sizeof(Chunk) - ARENA_ALIGN) arena_oom(n);
  Chunk *c = calloc(1, sizeof(Chunk) + n + ARENA_ALIGN);
  if (!c) arena_oom(n);
  c->cap = n + ARENA_ALIGN;
  return c;
}

/* Returns the aligned address for n bytes in c, or NULL if they do not fit. */
static void *chunk_take(Chunk *c, size_t n) {
  uintptr_t base = (uintptr_t)c->data;
  uintptr_t p = (base + c->used + ARENA_ALIGN - 1) & ~(uintptr_t)(ARENA_ALIGN - 1);
  size_t off = (size_t)(p - base);
  if (off > c->cap || c->cap - off < n) return NULL;
  c->used = off + n;
  return (void *)p;
}

Arena *arena_new(void) {
  Arena *a = calloc(1, sizeof *a);
  if (!a) arena_oom(sizeof *a);
  a->head = chunk_new(ARENA_CHUNK);
  return a;
}

void arena_free(Arena *a) {
  if (!a) return;
  for (Chunk *c = a->head, *next; c; c = next) {
    next = c->next;
    free(c);
  }
  free(a);
}

void *arena_alloc(Arena *a, size_t n) {
  if (n == 0) n = 1; /* distinct pointers for empty objects */
  void *p = chunk_take(a->head, n);
  if (p) return p;
  if (n > ARENA_CHUNK / 4) { /* big: own chunk, behind the current one */
    Chunk *big = chunk_new(n);
    big->next = a->head->next;
    a->head->next = big;
    return chunk_take(big, n);
  }
  Chunk *c = chunk_new(ARENA_CHUNK);
  c->next = a->head;
  a->head = c;
  return chunk_take(c, n);
}

char *arena_strndup(Arena *a, const char *s, size_t n) {
  char *p = arena_alloc(a, n + 1); /* zeroed, so already terminated */
  memcpy(p, s, n);
  return p;
}

char *arena_strdup(Arena *a, const char *s) {
  return arena_strndup(a, s, strlen(s));
}

char *arena_printf(Arena *a, const char *fmt, ...) {
  va_list ap, ap2;
  va_start(ap, fmt);
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  char *p = arena_alloc(a, (size_t)n + 1);
  if (n > 0) vsnprintf(p, (size_t)n + 1, fmt, ap2);
  va_end(ap2);
  return p;
}
