/* compiler/fuse.c — fusion groups (see Group in mlcc.h).
 *
 * Runs once per function (run, train step, evaluate) from plan.c, after the
 * storage classes are known and before buffers are made, so a value that a
 * group computes and consumes internally (ST_FUSED) never gets a buffer.
 *
 * This version forms only GK_SINGLE groups: every computed node is its own
 * kernel.  The fusion rules (elementwise chains, epilogues) are issue 6.
 */
#include "mlcc.h"

void fuse_plan(Graph *g, Plan *p, const bool *live, int opt_level) {
  (void)opt_level;
  Arena *A = g->A;
  p->group_of = arena_alloc(A, sizeof(int) * (size_t)(g->n + 1));
  p->groups = arena_alloc(A, sizeof(Group) * (size_t)(g->n + 1));
  p->ngroups = 0;
  for (int i = 0; i < g->n; i++) {
    p->group_of[i] = -1;
    if (!live[i] || p->storage[i] != ST_ARENA) continue;
    int *nodes = arena_alloc(A, sizeof(int));
    nodes[0] = i;
    p->group_of[i] = p->ngroups;
    p->groups[p->ngroups++] = (Group){GK_SINGLE, i, nodes, 1};
  }
}
