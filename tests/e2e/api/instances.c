/* instances.c — the generated C API of spec section 7, used as an application
 * would: create / init / load / save / run / last_error / destroy, error
 * statuses instead of aborts, two instances side by side and in two threads,
 * determinism.  Built by run_e2e.py against the code `mlc instances.mdl -o`
 * writes.  Prints "N checks passed" and exits 0, or prints each failed check. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "instances.h"
#include "check.h"

enum { MAXB = 6, MAXT = 5, NX = MAXB * 3 * 8 * 8 };
static uint8_t x[NX];
static float t[MAXT * 4];

typedef struct Result {
  float logits[MAXB * 5];
  float mixed[MAXT * MAXB];
} Result;

static int run(instances *m, int64_t B, int64_t T, Result *r) {
  memset(r, 0, sizeof *r);
  return instances_run(m, B, T, x, t, r->logits, r->mixed);
}

static int same(const Result *a, const Result *b) { return !memcmp(a, b, sizeof *a); }

static int close_to(const float *a, const float *b, int n) {
  for (int i = 0; i < n; i++) {
    float d = a[i] - b[i], tol = 1e-5f + 1e-4f * (b[i] < 0 ? -b[i] : b[i]);
    if (d > tol || d < -tol)
      return 0;
  }
  return 1;
}

typedef struct Job {
  uint64_t seed;
  Result r;
  int status;
} Job;

static void *worker(void *arg) {
  Job *j = arg;
  mlcrt_options o = {MLCRT_CPU, 1, 0};
  instances *m = instances_create(MAXB, MAXT, &o);
  j->status = !m ? -1 : instances_init(m, j->seed);
  for (int i = 0; i < 20 && j->status == 0; i++)
    j->status = run(m, MAXB, MAXT, &j->r);
  instances_destroy(m);
  return NULL;
}

int main(void) {
  for (int i = 0; i < NX; i++)
    x[i] = (uint8_t)(i * 37 % 251);
  for (int i = 0; i < MAXT * 4; i++)
    t[i] = (float)(i % 7) - 3.0f;

  /* create: NULL options; bad maxima fail cleanly */
  instances *a = instances_create(MAXB, MAXT, NULL);
  CHECK(a != NULL, "create: %s", mlcrt_last_error());
  if (!a)
    return 1;
  instances *bad = instances_create(-1, MAXT, NULL);
  CHECK(bad == NULL, "create with max_B = -1 succeeded");
  CHECK(bad != NULL || strlen(mlcrt_last_error()) > 0, "no reason for the failed create");
  instances_destroy(bad);
  instances_destroy(NULL);

  /* a new instance holds zeros: logits are exactly 0 */
  Result r0, r1, r2, r3;
  CHECK(run(a, 2, 3, &r0) == 0, "run on a fresh instance: %s", instances_last_error(a));
  int zeros = 1;
  for (int i = 0; i < 2 * 5; i++)
    zeros &= r0.logits[i] == 0.0f;
  CHECK(zeros, "a fresh instance is not all zeros");

  /* init: same seed, same weights; another seed, other weights */
  CHECK(instances_init(a, 1) == 0, "init: %s", instances_last_error(a));
  CHECK(run(a, MAXB, MAXT, &r1) == 0, "run: %s", instances_last_error(a));
  instances *b = instances_create(MAXB, MAXT, NULL);
  CHECK(b && instances_init(b, 1) == 0, "second instance");
  CHECK(b && run(b, MAXB, MAXT, &r2) == 0, "run b");
  CHECK(same(&r1, &r2), "two instances with seed 1 differ");
  CHECK(b && instances_init(b, 2) == 0 && run(b, MAXB, MAXT, &r2) == 0, "init b seed 2");
  CHECK(!same(&r1, &r2), "seed 2 gives the results of seed 1");
  CHECK(run(a, MAXB, MAXT, &r3) == 0 && same(&r1, &r3), "instance a changed when b was re-initialised");

  /* a smaller batch computes the leading rows of the bigger one */
  CHECK(run(a, 2, MAXT, &r3) == 0, "run B=2: %s", instances_last_error(a));
  CHECK(close_to(r3.logits, r1.logits, 2 * 5), "B=2 logits differ from rows 0..1 of B=6");

  /* save + load round trip */
  const char *path = "instances_roundtrip.safetensors";
  CHECK(instances_save(a, path) == 0, "save: %s", instances_last_error(a));
  CHECK(b && instances_load(b, path) == 0, "load: %s", b ? instances_last_error(b) : "");
  CHECK(b && run(b, MAXB, MAXT, &r2) == 0 && same(&r1, &r2), "loaded weights give other results");
  remove(path);

  /* errors are statuses with a message, and leave the instance usable */
  int st = instances_load(a, "no/such/file.safetensors");
  CHECK(st != 0, "loading a missing file succeeded");
  CHECK(strstr(instances_last_error(a), "file.safetensors") != NULL, "message: %s",
        instances_last_error(a));
  st = run(a, MAXB + 1, MAXT, &r3);
  CHECK(st != 0, "B above its maximum was accepted");
  CHECK(strlen(instances_last_error(a)) > 0, "no message for B above max");
  st = run(a, MAXB, MAXT + 1, &r3);
  CHECK(st != 0, "T above its maximum was accepted");
  st = run(a, -1, MAXT, &r3);
  CHECK(st != 0, "negative B was accepted");
  CHECK(run(a, MAXB, MAXT, &r3) == 0 && same(&r1, &r3), "instance unusable after errors");

  /* the same thread count gives bit-identical results */
  mlcrt_options two = {MLCRT_CPU, 2, 0};
  instances *c = instances_create(MAXB, MAXT, &two);
  CHECK(c && instances_init(c, 1) == 0, "create with 2 threads: %s", mlcrt_last_error());
  CHECK(c && run(c, MAXB, MAXT, &r2) == 0 && run(c, MAXB, MAXT, &r3) == 0 && same(&r2, &r3),
        "two runs with 2 threads differ");
  instances_destroy(c);

  /* a CUDA request on CPU code fails cleanly (or works, if it ever can) */
  mlcrt_options cuda = {MLCRT_CUDA, 0, 0};
  instances *d = instances_create(MAXB, MAXT, &cuda);
  CHECK(d != NULL || strlen(mlcrt_last_error()) > 0, "CUDA create failed without a reason");
  instances_destroy(d);

  /* two instances in two threads at once, each as if alone */
  Job jobs[2] = {{1, {{0}, {0}}, 0}, {2, {{0}, {0}}, 0}};
  pthread_t th[2];
  for (int i = 0; i < 2; i++)
    pthread_create(&th[i], NULL, worker, &jobs[i]);
  for (int i = 0; i < 2; i++)
    pthread_join(th[i], NULL);
  CHECK(jobs[0].status == 0 && jobs[1].status == 0, "threaded runs failed");
  mlcrt_options one = {MLCRT_CPU, 1, 0}; /* bit-identical is promised per thread count */
  instances *e = instances_create(MAXB, MAXT, &one);
  CHECK(e && instances_init(e, 1) == 0 && run(e, MAXB, MAXT, &r1) == 0, "reference seed 1");
  CHECK(e && instances_init(e, 2) == 0 && run(e, MAXB, MAXT, &r2) == 0, "reference seed 2");
  CHECK(same(&jobs[0].r, &r1), "thread with seed 1 differs from the same run alone");
  CHECK(same(&jobs[1].r, &r2), "thread with seed 2 differs from the same run alone");
  instances_destroy(e);

  instances_destroy(a);
  instances_destroy(b);
  return checks_result();
}
