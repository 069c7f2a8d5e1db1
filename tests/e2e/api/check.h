/* check.h — the checks of the api/ test programs (each one a single C file
 * built with the code mlc generates for it, see run_e2e.py) and of
 * tests/install's programs: CHECK(cond,
 * fmt, ...) counts a check and prints each failed one with its reason;
 * checks_result() prints "N checks passed" (what run_e2e.py looks for) and
 * returns 0, or "F of N checks failed" and returns 1, for main to return. */
#ifndef MLC_E2E_API_CHECK_H
#define MLC_E2E_API_CHECK_H
#include <stdio.h>

static int nchecks, nfailed;
#define CHECK(cond, ...)                                                                           \
  do {                                                                                             \
    nchecks++;                                                                                     \
    if (!(cond)) {                                                                                 \
      nfailed++;                                                                                   \
      printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                                       \
      printf(__VA_ARGS__);                                                                         \
      printf("\n");                                                                                \
    }                                                                                              \
  } while (0)

static int checks_result(void) {
  if (nfailed) {
    printf("%d of %d checks failed\n", nfailed, nchecks);
    return 1;
  }
  printf("%d checks passed\n", nchecks);
  return 0;
}
#endif
