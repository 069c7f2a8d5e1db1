/* plan.c — the arena planner run at create time.
 *
 * Every intermediate tensor of a model is an item with a byte size and a live
 * range [first, last] of execution steps.  Items whose ranges intersect must
 * not share bytes; others may.  The planner is the classic greedy best-fit
 * by decreasing size: items are taken largest first (ties: lower index
 * first), and each goes to the lowest offset (a multiple of align) where it
 * overlaps no already placed item whose live range intersects its own.
 *
 * Placed items are kept in an array sorted by offset, so finding the lowest
 * gap is one sweep over it: O(n^2) overall, fine for the few thousand items
 * a model has.  The result depends only on the input (qsort sees a strict
 * total order), so every machine plans the same arena.
 */
#include "mlcrt.h"

#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

size_t mlcrt__phys_bytes(void) {
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0 && (size_t)pages <= SIZE_MAX / (size_t)page)
    return (size_t)pages * (size_t)page;
#endif
  return SIZE_MAX;
}

void *mlcrt_alloc(size_t bytes) {
  if (bytes >= mlcrt__phys_bytes() || bytes > SIZE_MAX - 64) return NULL;
  return aligned_alloc(64, bytes ? (bytes + 63) / 64 * 64 : 64);
}

static size_t align_up(size_t x, size_t a) {
  return (x + a - 1) / a * a;
}

static int live_overlap(const mlcrt_plan_item *a, const mlcrt_plan_item *b) {
  return a->first <= b->last && b->first <= a->last;
}

/* Sort keys: C11 has no qsort_r, so each key carries what the comparison
 * needs (size, then index: a strict total order, hence a deterministic sort). */
typedef struct key {
  size_t size;
  int index;
} key;

static int cmp_key(const void *pa, const void *pb) {
  const key *a = pa, *b = pb;
  if (a->size != b->size) return a->size > b->size ? -1 : 1;
  return (a->index > b->index) - (a->index < b->index);
}

size_t mlcrt_plan(mlcrt_plan_item *items, int n, size_t align) {
  if (n <= 0 || !items) return 0;
  if (align == 0) align = 1;
  key *order = malloc((size_t)n * sizeof *order);
  int *placed = malloc((size_t)n * sizeof *placed); /* item indices, by offset */
  size_t total = 0;
  if (!order || !placed) {
    /* Out of memory at create time: fall back to giving every item its own
     * bytes.  Correct (nothing shares), just not compact. */
    for (int i = 0; i < n; i++) {
      items[i].offset = items[i].size ? total : 0;
      total = align_up(total + items[i].size, align);
    }
    free(order);
    free(placed);
    return total;
  }
  for (int i = 0; i < n; i++) {
    order[i].size = items[i].size;
    order[i].index = i;
  }
  qsort(order, (size_t)n, sizeof *order, cmp_key);

  int np = 0;
  for (int r = 0; r < n; r++) {
    mlcrt_plan_item *it = &items[order[r].index];
    if (it->size == 0) {
      it->offset = 0;
      continue;
    }
    /* Sweep placed items in offset order: c is the lowest candidate; an item
     * that is live at the same time and reaches past c pushes c beyond its
     * end; the first one starting at or after c + size leaves a gap. */
    size_t c = 0;
    int pos = np; /* insertion point keeping `placed` sorted by offset */
    for (int k = 0; k < np; k++) {
      const mlcrt_plan_item *o = &items[placed[k]];
      if (!live_overlap(it, o)) continue;
      if (o->offset >= c + it->size) break;
      size_t e = align_up(o->offset + o->size, align);
      if (e > c) c = e;
    }
    it->offset = c;
    for (int k = 0; k < np; k++)
      if (items[placed[k]].offset > c) {
        pos = k;
        break;
      }
    for (int k = np; k > pos; k--) placed[k] = placed[k - 1];
    placed[pos] = order[r].index;
    np++;
    if (c + it->size > total) total = c + it->size;
  }
  free(order);
  free(placed);
  return align_up(total, align);
}
