/* rt_teams.h — what the runtime kernel tests share: a team for every
 * instruction set the CPU has and 1..3 threads (created by the cmocka group
 * setup), and a small deterministic generator of floats in [-0.5, 0.5). */
#ifndef RT_TEAMS_H
#define RT_TEAMS_H

#include <stdint.h>

#include "mlcrt.h"

static mlcrt_team *teams[3][4]; /* [isa][threads], threads 1..3 */

static int setup(void **state) {
  (void)state;
  for (int isa = 0; isa <= mlcrt_cpu_isa(); isa++)
    for (int n = 1; n <= 3; n++)
      if (!(teams[isa][n] = mlcrt_team_create(n, isa))) return -1;
  return 0;
}

static int teardown(void **state) {
  (void)state;
  for (int isa = 0; isa < 3; isa++)
    for (int n = 1; n <= 3; n++) mlcrt_team_destroy(teams[isa][n]), teams[isa][n] = NULL;
  return 0;
}

static inline float frand(uint32_t *s) {
  *s = *s * 1664525u + 1013904223u;
  return (float)(*s >> 8) / (float)(1 << 24) - 0.5f;
}

#endif
