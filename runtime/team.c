/* team.c — the runtime's thread team: a fixed set of worker threads that an
 * instance creates once (at <model>_create) and hands to its heavy kernels.
 *
 * mlcrt_team_run(t, n, fn, arg) runs fn(arg, i, n) for i = 0..n-1 and returns
 * when all are done.  The caller splits the work into n fixed slices (task i
 * always gets the same slice and uses the buffers of slot i), so a given
 * thread count gives bit-identical results on every run; which thread runs a
 * task is decided at run time: the caller and the awake workers claim tasks
 * from one atomic mask of open tasks, so a worker the OS has not scheduled
 * yet (a busy machine) delays nothing: the caller does its share.  Each
 * member first claims the task of its own index (the caller task 0, worker i
 * task i), so from one run to the next the same core works on the same slice
 * of a weight matrix and finds it in its own cache (a batch-1 linear layer
 * streams its weights from L2: 7.4 us on one core for the MLP's 0.8 MB).
 *
 * Workers spin for a short while after each job before sleeping on a condition
 * variable: back-to-back kernels of one forward pass then hand off in well
 * under a microsecond, and an idle instance costs no CPU.  A team of one has
 * no threads at all.  Each member also owns a workspace (GEMM packing panels),
 * allocated here so that no kernel allocates while running.
 */
#include "mlcrt.h"
#include "rt_internal.h"

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
  int n;   /* members, the caller included */
  int isa; /* MLCRT_ISA_* of the GEMM kernels */
  pthread_t th[MAX_TEAM];
  struct member {
    struct mlcrt_team *team;
    int index;
  } member[MAX_TEAM]; /* each worker's argument */
  int started;        /* workers successfully started */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  atomic_uint gen;           /* bumped once per job: wakes the workers */
  atomic_uint_fast64_t open; /* bit i: task i of the current job not yet claimed */
  atomic_int done;           /* tasks of the current job finished */
  atomic_int quit;
  mlcrt_task_fn fn; /* the current job (written before `open`) */
  void *arg;
  int ntasks;
  float *ws[MAX_TEAM];     /* per-member workspace, MLCRT_TEAM_WS_FLOATS each */
  struct mlcrt_team *solo; /* per member: a team of one (mlcrt__team_solo), or NULL */
};

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
      if (!start)
        start = now;
      else if (now - start > SPIN_NS)
        break;
    }
  }
  pthread_mutex_lock(&t->mu);
  unsigned g;
  while ((g = atomic_load(&t->gen)) == seen && !atomic_load(&t->quit))
    pthread_cond_wait(&t->cv, &t->mu);
  pthread_mutex_unlock(&t->mu);
  return g;
}

/* Claims and runs tasks of the current job until none is open, the task of
 * the member's own index first.  A claimed task keeps its job unfinished
 * until it is done, so fn, arg and ntasks cannot change under a thread that
 * holds one (the caller starts the next job only when all are done). */
static void take_tasks(mlcrt_team *t, int member) {
  for (;;) {
    const uint_fast64_t open = atomic_load(&t->open);
    if (!open) return;
    const int task = open >> member & 1 ? member : __builtin_ctzll(open);
    const uint_fast64_t bit = (uint_fast64_t)1 << task;
    if (!(atomic_fetch_and(&t->open, ~bit) & bit)) continue; /* another took it */
    t->fn(t->arg, task, t->ntasks);
    atomic_fetch_add(&t->done, 1);
  }
}

static void *worker(void *p) {
  const struct member *m = p;
  mlcrt_team *t = m->team;
  unsigned seen = 0;
  for (;;) {
    seen = wait_job(t, seen);
    if (atomic_load(&t->quit)) return NULL;
    take_tasks(t, m->index);
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
  atomic_init(&t->open, 0);
  atomic_init(&t->done, 0);
  atomic_init(&t->quit, 0);
  for (int i = 0; i < nthreads; i++) {
    t->ws[i] = aligned_alloc(64, MLCRT_TEAM_WS_FLOATS * sizeof(float));
    if (!t->ws[i]) {
      mlcrt_team_destroy(t);
      return NULL;
    }
  }
  if (nthreads > 1) { /* each member alone, with its own workspace (no threads, no locks) */
    t->solo = calloc((size_t)nthreads, sizeof *t->solo);
    if (!t->solo) {
      mlcrt_team_destroy(t);
      return NULL;
    }
    for (int i = 0; i < nthreads; i++) {
      t->solo[i].n = 1;
      t->solo[i].isa = t->isa;
      t->solo[i].ws[0] = t->ws[i];
    }
  }
  for (int i = 1; i < nthreads; i++) {
    t->member[i] = (struct member){t, i};
    if (pthread_create(&t->th[i], NULL, worker, &t->member[i]) != 0) break;
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
  free(t->solo);
  free(t);
}

mlcrt_team *mlcrt__team_solo(mlcrt_team *t, int member) {
  if (!t || t->n == 1) return t;
  return member >= 0 && member < t->n ? &t->solo[member] : NULL;
}

int mlcrt_team_size(const mlcrt_team *t) {
  return t ? t->n : 1;
}

int mlcrt_team_isa(const mlcrt_team *t) {
  return t ? t->isa : mlcrt_cpu_isa();
}

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
  atomic_store(&t->done, 0);
  atomic_store(&t->open, ntasks == 64 ? ~(uint_fast64_t)0 : ((uint_fast64_t)1 << ntasks) - 1);
  pthread_mutex_lock(&t->mu);
  atomic_fetch_add(&t->gen, 1);
  pthread_cond_broadcast(&t->cv);
  pthread_mutex_unlock(&t->mu);
  take_tasks(t, 0);
  while (atomic_load(&t->done) < ntasks) cpu_relax();
}

/* ---- contiguous slices ---------------------------------------------------------- */

typedef struct {
  mlcrt__range_fn fn;
  void *ctx;
  int64_t total, step;
} ranges_job;

static void ranges_task(void *arg, int task, int ntasks) {
  const ranges_job *j = arg;
  (void)ntasks;
  const int64_t lo = (int64_t)task * j->step,
                hi = lo + j->step < j->total ? lo + j->step : j->total;
  if (lo < hi) j->fn(j->ctx, lo, hi);
}

void mlcrt__ranges(mlcrt_team *t, int64_t total, double work, mlcrt__range_fn fn, void *ctx) {
  if (total <= 0) return;
  const int n = work < 65536.0 ? 1 : mlcrt_team_size(t);
  if (n == 1) {
    fn(ctx, 0, total);
    return;
  }
  ranges_job j = {fn, ctx, total, (total + n - 1) / n};
  mlcrt_team_run(t, (int)((total + j.step - 1) / j.step), ranges_task, &j);
}

/* ---- elementwise tiles ---------------------------------------------------------- */

/* Below this many elements a fused elementwise kernel runs on the caller:
 * waking the team costs a few microseconds. */
#define TILES_MIN_ELEMS (1 << 15)

typedef struct {
  mlcrt_tile_fn fn;
  void *ctx;
  int64_t rows, cols, step;
  int by_rows;
} tiles_job;

static void tiles_task(void *arg, int task, int ntasks) {
  const tiles_job *j = arg;
  (void)ntasks;
  const int64_t total = j->by_rows ? j->rows : j->cols;
  const int64_t lo = (int64_t)task * j->step, hi = lo + j->step < total ? lo + j->step : total;
  if (lo >= hi) return;
  if (j->by_rows)
    j->fn(j->ctx, lo, hi, 0, j->cols);
  else
    j->fn(j->ctx, 0, j->rows, lo, hi);
}

void mlcrt_tiles(mlcrt_team *t, int64_t rows, int64_t cols, mlcrt_tile_fn fn, void *ctx) {
  if (rows <= 0 || cols <= 0) return;
  const int n = mlcrt_team_size(t);
  if (n == 1 || (double)rows * (double)cols < TILES_MIN_ELEMS) {
    fn(ctx, 0, rows, 0, cols);
    return;
  }
  /* slices of whole rows when there are enough of them, else of columns
   * (a multiple of 16, so each slice starts on a 64-byte boundary) */
  tiles_job j = {fn, ctx, rows, cols, 0, rows >= 2 * n};
  if (j.by_rows)
    j.step = (rows + n - 1) / n;
  else
    j.step = ((cols + n - 1) / n + 15) / 16 * 16;
  const int64_t total = j.by_rows ? rows : cols;
  mlcrt_team_run(t, (int)((total + j.step - 1) / j.step), tiles_task, &j);
}
