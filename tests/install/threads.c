/* tests/install/threads.c — spec section 7: "No global mutable state: two
 * instances work side by side, also in two threads."  fashion_mlp with
 * embedded weights (mlc_add_model EMBED_WEIGHTS): each of two threads creates
 * its own instance and classifies its own half of a batch of pseudo-random
 * images, both at once, several times over (argv[1], default 20); the logits must equal,
 * bit for bit, those of one instance run alone in the main thread, and those
 * of an instance that loads the same weights from the file instead.
 * Prints "N checks passed" and exits 0, or prints each failed check. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../e2e/api/check.h" /* CHECK, checks_result */
#include "fashion_mlp.h"

enum { N = 512, HALF = N / 2 };
static int rounds = 20; /* argv[1] */
static uint8_t x[N * 784];
static float alone[N * 10];

typedef struct Job {
  int half;       /* which half of x */
  int status;     /* 0, or the first failing status */
  int mismatches; /* rounds whose logits differ from the single-threaded ones */
  float logits[HALF * 10];
} Job;

static void *worker(void *arg) {
  Job *j = arg;
  mlcrt_options o = {MLCRT_CPU, 1, 0};
  fashion_mlp *m = fashion_mlp_create(HALF, &o);
  if (!m) {
    j->status = -1;
    return NULL;
  }
  for (int r = 0; r < rounds && !j->status; r++) {
    memset(j->logits, 0, sizeof j->logits);
    j->status = fashion_mlp_run(m, HALF, x + (size_t)j->half * HALF * 784, j->logits);
    j->mismatches += memcmp(j->logits, alone + (size_t)j->half * HALF * 10, sizeof j->logits) != 0;
  }
  fashion_mlp_destroy(m);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc > 1) rounds = atoi(argv[1]) > 0 ? atoi(argv[1]) : 1;
  uint64_t s = 88172645463325252ULL; /* xorshift: images of noise and stripes */
  for (size_t i = 0; i < sizeof x; i++) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    x[i] = (uint8_t)((i / 784) % 3 ? s >> 56 : (i % 28 < 14) * 255);
  }
  mlcrt_options one = {MLCRT_CPU, 1, 0};
  fashion_mlp *m = fashion_mlp_create(N, &one);
  CHECK(m != NULL, "create: %s", mlcrt_last_error());
  if (!m) return 1;
  CHECK(fashion_mlp_run(m, N, x, alone) == 0, "run: %s", fashion_mlp_last_error(m));
  int nonzero = 0;
  for (int i = 0; i < N * 10; i++) nonzero += alone[i] != 0;
  CHECK(nonzero > N * 9, "the embedded weights give all-zero logits (%d nonzero)", nonzero);

  /* the embedded weights are those of the file */
  static float loaded[N * 10];
  fashion_mlp *l = fashion_mlp_create(N, &one);
  CHECK(l && fashion_mlp_load(l, WEIGHTS_FILE) == 0, "load %s: %s", WEIGHTS_FILE, l ? fashion_mlp_last_error(l) : "");
  CHECK(l && fashion_mlp_run(l, N, x, loaded) == 0 && !memcmp(loaded, alone, sizeof loaded),
        "embedded weights differ from %s", WEIGHTS_FILE);
  /* init replaces them, a new instance starts from them again */
  CHECK(l && fashion_mlp_init(l, 7) == 0 && fashion_mlp_run(l, N, x, loaded) == 0 && memcmp(loaded, alone, sizeof loaded),
        "init did not replace the embedded weights");
  fashion_mlp_destroy(l);

  /* two instances in two threads at once */
  Job jobs[2] = {{.half = 0}, {.half = 1}};
  pthread_t th[2];
  for (int i = 0; i < 2; i++) CHECK(pthread_create(&th[i], NULL, worker, &jobs[i]) == 0, "pthread_create");
  for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
  for (int i = 0; i < 2; i++) {
    CHECK(jobs[i].status == 0, "thread %d: status %d", i, jobs[i].status);
    CHECK(jobs[i].mismatches == 0, "thread %d: %d of %d rounds differ from the single-threaded run", i,
          jobs[i].mismatches, rounds);
  }
  fashion_mlp_destroy(m);
  return checks_result();
}
