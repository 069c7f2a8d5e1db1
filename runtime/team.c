/* team.c — the runtime's thread team: a fixed set of worker threads that an
 * instance creates once (at <model>_create) and hands to its heavy kernels.
 *
 * mlcrt_team_run(t, n, fn, arg) runs fn(arg, i, n) for i = 0..n-1, task 0 on
 * the calling thread and task i on worker i, and returns when all are done.
 * Work is split statically by the caller (task i always gets the same slice),
 * so a given thread count gives bit-identical results on every run.
 *
 * Workers spin for a short while after each job before sleeping on a condition
 * variable: back-to-back kernels of one forward pass then hand off in well
 * under a microsecond, and an idle instance costs no CPU.  A team of one has
 * no threads at all.  Each member also owns a workspace (GEMM packing panels),
 * allocated here so that no kernel allocates while running.
 */
#include "mlcrt.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

#define MAX_TEAM 64
#define SPIN_NS 200000 /* how long an idle worker spins before it sleeps */

struct mlcrt_team {
  int n;                 /* members, the caller included */
  int isa;               /* MLCRT_ISA_* of the GEMM kernels */
  pthread_t th[MAX_TEAM];
  int started;           /* workers successfully started */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  atomic_uint gen;       /* bumped once per job */
  atomic_int pending;    /* workers still busy with the current job */
  atomic_int quit;
  mlcrt_task_fn fn;      /* the current job (written before gen is bumped) */
  void *arg;
  int ntasks;
  float *ws[MAX_TEAM];   /* per-member workspace, MLCRT_TEAM_WS_FLOATS each */
};

typedef struct {
  mlcrt_team *t;
  int id;
} worker_arg;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Waits until t->gen differs from seen (or quit); returns the new gen. */
static unsigned wait_job(mlcrt_team *t, unsigned seen) {
  uint64_t start = 0;
  for (unsigned spins = 0;; spins++) {
    unsigned g = atomic_load(&t->gen);
    if (g != seen || atomic_load(&t->quit)) return g;
    cpu_relax();
    if ((spins & 255) == 255) {
      uint64_t now = now_ns();
      if (!start) start = now;
      else if (now - start > SPIN_NS) break;
    }
  }
  pthread_mutex_lock(&t->mu);
  unsigned g;
  while ((g = atomic_load(&t->gen)) == seen && !atomic_load(&t->quit)) pthread_cond_wait(&t->cv, &t->mu);
  pthread_mutex_unlock(&t->mu);
  return g;
}

static void *worker(void *p) {
  mlcrt_team *t = ((worker_arg *)p)->t;
  int id = ((worker_arg *)p)->id;
  free(p);
  unsigned seen = 0;
  for (;;) {
    seen = wait_job(t, seen);
    if (atomic_load(&t->quit)) return NULL;
    if (id < t->ntasks) t->fn(t->arg, id, t->ntasks);
    atomic_fetch_sub(&t->pending, 1);
  }
}

int mlcrt_default_threads(void) {
  const char *env = getenv("MLCRT_NUM_THREADS"); /* as OMP_NUM_THREADS */
  long n = env && *env ? strtol(env, NULL, 10) : 0;
  if (n >= 1) return n > MAX_TEAM ? MAX_TEAM : (int)n;
  n = sysconf(_SC_NPROCESSORS_ONLN);
  if (n < 1) n = 1;
  if (n > MAX_TEAM) n = MAX_TEAM;
  return (int)n;
}

mlcrt_team *mlcrt_team_create(int nthreads, int isa) {
  if (nthreads <= 0) nthreads = mlcrt_default_threads();
  if (nthreads > MAX_TEAM) nthreads = MAX_TEAM;
  mlcrt_team *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->n = nthreads;
  t->isa = isa < MLCRT_ISA_GENERIC || isa > mlcrt_cpu_isa() ? mlcrt_cpu_isa() : isa;
  pthread_mutex_init(&t->mu, NULL);
  pthread_cond_init(&t->cv, NULL);
  atomic_init(&t->gen, 0);
  atomic_init(&t->pending, 0);
  atomic_init(&t->quit, 0);
  for (int i = 0; i < nthreads; i++) {
    t->ws[i] = aligned_alloc(64, MLCRT_TEAM_WS_FLOATS * sizeof(float));
    if (!t->ws[i]) {
      mlcrt_team_destroy(t);
      return NULL;
    }
  }
  for (int i = 1; i < nthreads; i++) {
    worker_arg *wa = malloc(sizeof *wa);
    if (!wa) break;
    *wa = (worker_arg){t, i};
    if (pthread_create(&t->th[i], NULL, worker, wa) != 0) {
      free(wa);
      break;
    }
    t->started = i;
  }
  if (t->started != nthreads - 1) {
    mlcrt_team_destroy(t);
    return NULL;
  }
  return t;
}

void mlcrt_team_destroy(mlcrt_team *t) {
  if (!t) return;
  if (t->started) {
    pthread_mutex_lock(&t->mu);
    atomic_store(&t->quit, 1);
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    for (int i = 1; i <= t->started; i++) pthread_join(t->th[i], NULL);
  }
  pthread_mutex_destroy(&t->mu);
  pthread_cond_destroy(&t->cv);
  for (int i = 0; i < t->n; i++) free(t->ws[i]);
  free(t);
}

int mlcrt_team_size(const mlcrt_team *t) { return t ? t->n : 1; }

int mlcrt_team_isa(const mlcrt_team *t) { return t ? t->isa : mlcrt_cpu_isa(); }

float *mlcrt_team_workspace(mlcrt_team *t, int member) {
  return t && member >= 0 && member < t->n ? t->ws[member] : NULL;
}

void mlcrt_team_run(mlcrt_team *t, int ntasks, mlcrt_task_fn fn, void *arg) {
  if (ntasks <= 0) return;
  if (!t || t->n == 1 || ntasks == 1) {
    for (int i = 0; i < ntasks; i++) fn(arg, i, ntasks);
    return;
  }
  if (ntasks > t->n) ntasks = t->n; /* callers split into at most n tasks */
  t->fn = fn;
  t->arg = arg;
  t->ntasks = ntasks;
  atomic_store(&t->pending, t->n - 1);
  pthread_mutex_lock(&t->mu);
  atomic_fetch_add(&t->gen, 1);
  pthread_cond_broadcast(&t->cv);
  pthread_mutex_unlock(&t->mu);
  fn(arg, 0, ntasks);
  while (atomic_load(&t->pending) > 0) cpu_relax();
}
