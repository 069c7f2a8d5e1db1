/* runtime/trainloop.c — the training driver behind `mlc train`.
 *
 * The generated harness describes the model (its inputs in train-step order
 * and thin wrappers around NAME_train_step, NAME_evaluate, checkpoints) and
 * calls mlcrt_train_main.  This file does the rest: command-line options,
 * reading .npy datasets, batching (file order, or a seeded shuffle per epoch),
 * the progress bar, evaluation loss and accuracy per epoch, a checkpoint per
 * epoch (atomic), Ctrl-C (saves a checkpoint, then exits), --resume (which
 * continues exactly where the checkpoint's step count says), and stopping on
 * a non-finite loss.  The last partial batch is used, as PyTorch's DataLoader
 * does by default.
 */
#include "mlcrt.h"
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) {
  (void)sig;
  interrupted = 1;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* splitmix64: the shuffle's generator, seeded by (seed, epoch) */
static uint64_t mix(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static void permutation(int64_t *perm, int64_t n, uint64_t seed, int64_t epoch, int shuffle) {
  for (int64_t i = 0; i < n; i++) perm[i] = i;
  if (!shuffle) return;
  uint64_t s = seed * 0x100000001b3ULL + (uint64_t)epoch;
  for (int64_t i = n - 1; i > 0; i--) { /* Fisher-Yates */
    int64_t j = (int64_t)(mix(&s) % (uint64_t)(i + 1));
    int64_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
}

typedef struct Set {
  mlcrt_array a[MLCRT_TRAIN_MAX_INPUTS];
  int64_t n; /* samples */
} Set;

/* The trainer runs as `mlc train` (its own path is a cache entry): the usage
 * names that command. */
static int usage(const char *msg) {
  fprintf(stderr, "mlc train: error: %s\n(see 'mlc train --help')\n", msg);
  return 2;
}

/* A reader's message "PATH: REASON" printed as "PATH: error: REASON". */
static void file_error(const char *path, const char *err) {
  size_t n = strlen(path);
  if (!strncmp(err, path, n) && !strncmp(err + n, ": ", 2)) fprintf(stderr, "%s: error: %s\n", path, err + n + 2);
  else fprintf(stderr, "mlc train: error: %s\n", err);
}

/* Reads one dataset (--data or --eval) and checks it against the inputs. */
static int load_set(const mlcrt_trainer *t, const char **paths, Set *s, int64_t *dims, const char *what) {
  char err[MLCRT_ERRLEN];
  s->n = -1;
  for (int i = 0; i < t->ninputs; i++) {
    const mlcrt_train_input *in = &t->inputs[i];
    if (!paths[i]) {
      fprintf(stderr, "mlc train: error: %s: no file for input '%s' (give %s %s=FILE.npy)\n", what, in->name,
              what, in->name);
      return 2;
    }
    if (mlcrt_npy_read(paths[i], &s->a[i], err)) {
      file_error(paths[i], err);
      return 1;
    }
    mlcrt_array *a = &s->a[i];
    /* a file whose samples hold the same number of elements in another
     * shape (IDX images [N, 28, 28] for an input [B, 1, 28, 28]) is read as
     * that shape: C order makes this a pure reshape */
    int64_t want_n = 1, have_n = 1;
    int fixed = 1;
    for (int k = 1; k < in->rank; k++) fixed &= in->dims[k] >= 0, want_n *= in->dims[k] >= 0 ? in->dims[k] : 1;
    for (int k = 1; k < a->rank; k++) have_n *= a->shape[k];
    if (a->dtype == in->dtype && a->rank != in->rank && a->rank >= 1 && fixed && want_n == have_n) {
      a->rank = in->rank;
      for (int k = 1; k < in->rank; k++) a->shape[k] = in->dims[k];
    }
    if (a->dtype != in->dtype || a->rank != in->rank) {
      fprintf(stderr, "%s: error: input '%s' must be %s with %d dims, the file holds %s with %d dims\n", paths[i],
              in->name, mlcrt_dtype_name(in->dtype), in->rank, mlcrt_dtype_name(a->dtype), a->rank);
      return 1;
    }
    for (int k = 0; k < in->rank; k++) {
      int64_t want = in->dims[k];
      if (k == 0) {
        if (s->n < 0) s->n = a->shape[0];
        if (a->shape[0] != s->n) {
          fprintf(stderr, "%s: error: %lld samples, but the other %s files have %lld\n", paths[i],
                  (long long)a->shape[0], what, (long long)s->n);
          return 1;
        }
      } else if (want >= 0 ? a->shape[k] != want : (dims[-want - 1] >= 0 && a->shape[k] != dims[-want - 1])) {
        fprintf(stderr, "%s: error: dim %d of input '%s' is %lld, expected %lld\n", paths[i], k, in->name,
                (long long)a->shape[k], (long long)(want >= 0 ? want : dims[-want - 1]));
        return 1;
      } else if (want < 0)
        dims[-want - 1] = a->shape[k];
    }
  }
  return 0;
}

static void free_set(const mlcrt_trainer *t, Set *s) {
  for (int i = 0; i < t->ninputs; i++) mlcrt_array_free(&s->a[i]);
}

/* Copies the rows perm[from .. from+b) of every array into the staging buffers. */
static void gather(const mlcrt_trainer *t, const Set *s, const int64_t *perm, int64_t from, int64_t b, void **stage) {
  for (int i = 0; i < t->ninputs; i++) {
    size_t row = s->a[i].nbytes / (size_t)(s->n ? s->n : 1);
    for (int64_t r = 0; r < b; r++)
      memcpy((char *)stage[i] + (size_t)r * row, (const char *)s->a[i].data + (size_t)perm[from + r] * row, row);
  }
}

static void progress(int tty, int64_t epoch, int64_t epochs, int64_t batch, int64_t nb, double loss, double ips,
                     double eta) {
  if (tty) {
    int w = 24, done = nb ? (int)(w * batch / nb) : w;
    fprintf(stderr, "\r\033[Kepoch %lld/%lld [", (long long)epoch + 1, (long long)epochs);
    for (int i = 0; i < w; i++) fputc(i < done ? '=' : i == done ? '>' : ' ', stderr);
    fprintf(stderr, "] %lld/%lld loss %.4f %.0f samples/s ETA %d:%02d", (long long)batch, (long long)nb, loss, ips,
            (int)eta / 60, (int)eta % 60);
    fflush(stderr);
  } else {
    fprintf(stderr, "epoch %lld/%lld batch %lld/%lld loss %.4f %.0f samples/s\n", (long long)epoch + 1,
            (long long)epochs, (long long)batch, (long long)nb, loss, ips);
  }
}

/* Evaluation loss (mean over samples) and, when the model has a [B, C] float
 * output and an integer label input, accuracy of its argmax. */
static int evaluate(const mlcrt_trainer *t, void *m, const Set *s, int64_t batch, int64_t *dims, void **stage,
                    void *out, double *loss, double *acc) {
  int64_t *perm = malloc(sizeof(int64_t) * (size_t)(s->n ? s->n : 1));
  if (!perm) return MLCRT_ENOMEM;
  permutation(perm, s->n, 0, 0, 0);
  double total = 0;
  int64_t correct = 0;
  int rc = 0;
  for (int64_t from = 0; from < s->n && !rc; from += batch) {
    int64_t b = s->n - from < batch ? s->n - from : batch;
    gather(t, s, perm, from, b, stage);
    dims[t->batch_sym] = b;
    float l;
    rc = t->evaluate(m, dims, stage, &l, out);
    total += (double)l * (double)b;
    if (!rc && t->classes > 0) {
      const float *o = out;
      for (int64_t r = 0; r < b; r++) {
        int64_t best = 0;
        for (int64_t c = 1; c < t->classes; c++)
          if (o[r * t->classes + c] > o[r * t->classes + best]) best = c;
        const void *lab = stage[t->label_input];
        mlcrt_dtype ld = t->inputs[t->label_input].dtype;
        int64_t y = ld == MLCRT_U8 ? ((const uint8_t *)lab)[r] : ld == MLCRT_I32 ? ((const int32_t *)lab)[r]
                                                                  : ((const int64_t *)lab)[r];
        correct += best == y;
      }
    }
  }
  free(perm);
  *loss = s->n ? total / (double)s->n : NAN;
  *acc = s->n ? (double)correct / (double)s->n : NAN;
  return rc;
}

int mlcrt_train_main(const mlcrt_trainer *t, int argc, char **argv) {
  const char *data[MLCRT_TRAIN_MAX_INPUTS] = {0}, *evalp[MLCRT_TRAIN_MAX_INPUTS] = {0};
  const char *save = NULL, *ckpt = NULL, *weights = NULL, *resume = NULL;
  int64_t epochs = -1, batch = -1;
  uint64_t seed = 0;
  int shuffle = 0, have_eval = 0;
  char msg[1024], ckbuf[4096];
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--shuffle")) { shuffle = 1; continue; }
    if (!v) { snprintf(msg, sizeof msg, "option %s needs a value", a); return usage(msg); }
    i++;
    if (!strcmp(a, "--epochs")) epochs = strtoll(v, NULL, 10);
    else if (!strcmp(a, "--batch")) batch = strtoll(v, NULL, 10);
    else if (!strcmp(a, "--seed")) seed = strtoull(v, NULL, 10);
    else if (!strcmp(a, "--save")) save = v;
    else if (!strcmp(a, "--checkpoint")) ckpt = v;
    else if (!strcmp(a, "--weights")) weights = v;
    else if (!strcmp(a, "--resume")) resume = v;
    else if (!strcmp(a, "--data") || !strcmp(a, "--eval")) {
      const char **dst = a[2] == 'd' ? data : evalp;
      if (a[2] == 'e') have_eval = 1;
      char *copy = argv[i]; /* split in place: the paths point into argv */
      char *save_ptr = NULL;
      for (char *tok = strtok_r(copy, ",", &save_ptr); tok; tok = strtok_r(NULL, ",", &save_ptr)) {
        char *eq = strchr(tok, '=');
        int k = -1;
        for (int j = 0; eq && j < t->ninputs; j++)
          if ((size_t)(eq - tok) == strlen(t->inputs[j].name) && !strncmp(tok, t->inputs[j].name, (size_t)(eq - tok))) k = j;
        if (k < 0) {
          snprintf(msg, sizeof msg, "%s %s: expected NAME=FILE with NAME an input of model %s", a, tok, t->model);
          return usage(msg);
        }
        dst[k] = eq + 1;
      }
    } else {
      snprintf(msg, sizeof msg, "unknown option '%s'", a);
      return usage(msg);
    }
  }
  if (epochs < 1 || batch < 1) return usage("--epochs and --batch must be given and at least 1");
  if (weights && resume) return usage("--weights and --resume exclude each other");
  if (!ckpt && save) {
    size_t n = strlen(save);
    const char *ext = n > 12 && !strcmp(save + n - 12, ".safetensors") ? save + n - 12 : save + n;
    snprintf(ckbuf, sizeof ckbuf, "%.*s.ckpt.safetensors", (int)(ext - save), save);
    ckpt = ckbuf;
  }

  int64_t dims[MLCRT_MAX_RANK * 2];
  for (int i = 0; i < t->nsyms; i++) dims[i] = -1;
  Set train = {0}, ev = {0};
  int rc = load_set(t, data, &train, dims, "--data");
  if (!rc && have_eval) rc = load_set(t, evalp, &ev, dims, "--eval");
  if (rc) {
    free_set(t, &train);
    free_set(t, &ev);
    return rc;
  }
  dims[t->batch_sym] = batch;
  int64_t maxdims[MLCRT_MAX_RANK * 2];
  for (int i = 0; i < t->nsyms; i++) maxdims[i] = dims[i] > 0 ? dims[i] : 1;
  void *m = t->create_ctx ? t->create_ctx(t->ctx, maxdims) : t->create(maxdims);
  if (!m) {
    fprintf(stderr, "mlc train: error: %s\n", mlcrt_last_error());
    free_set(t, &train);
    free_set(t, &ev);
    return 1;
  }
  rc = resume ? t->load_checkpoint(m, resume) : weights ? t->load(m, weights) : t->init(m, seed);
  if (!rc && t->set_seed) rc = t->set_seed(m, seed); /* dropout's generator: --seed, whatever the start */
  if (rc) {
    fprintf(stderr, "mlc train: error: %s\n", t->last_error(m));
    t->destroy(m);
    free_set(t, &train);
    free_set(t, &ev);
    return 1;
  }
  void *stage[MLCRT_TRAIN_MAX_INPUTS];
  for (int i = 0; i < t->ninputs; i++) {
    size_t row = train.a[i].nbytes / (size_t)(train.n ? train.n : 1);
    size_t rowe = have_eval ? ev.a[i].nbytes / (size_t)(ev.n ? ev.n : 1) : 0;
    stage[i] = malloc((row > rowe ? row : rowe) * (size_t)batch + 1);
  }
  void *out = t->classes > 0 ? malloc(sizeof(float) * (size_t)(batch * t->classes)) : NULL;
  int64_t *perm = malloc(sizeof(int64_t) * (size_t)(train.n + 1));
  int64_t nb = (train.n + batch - 1) / batch; /* batches per epoch, the last one partial */
  int64_t start = t->step(m);
  if (nb == 0) {
    fprintf(stderr, "mlc train: error: the dataset is empty\n");
    rc = 1;
    goto done;
  }
  signal(SIGINT, on_sigint);
  int tty = isatty(2);
  fprintf(stderr, "training %s: %lld samples, batch %lld, %lld batches per epoch%s%s\n", t->model,
          (long long)train.n, (long long)batch, (long long)nb, shuffle ? ", shuffled" : "",
          start ? "" : "");
  if (start) fprintf(stderr, "resuming at step %lld (epoch %lld, batch %lld)\n", (long long)start,
                     (long long)(start / nb) + 1, (long long)(start % nb));
  /* resuming a checkpoint of the last epoch (a run killed between writing it
   * and the weights): nothing is left to train, but --save is still owed */
  if (start / nb >= epochs && save && t->save(m, save)) {
    fprintf(stderr, "mlc train: error: %s\n", t->last_error(m));
    rc = 1;
  }
  for (int64_t epoch = start / nb; epoch < epochs && !rc; epoch++) {
    permutation(perm, train.n, seed, epoch, shuffle);
    double t0 = now(), sum = 0;
    int64_t seen = 0, first = epoch == start / nb ? start % nb : 0;
    for (int64_t bi = first; bi < nb; bi++) {
      int64_t from = bi * batch, b = train.n - from < batch ? train.n - from : batch;
      gather(t, &train, perm, from, b, stage);
      dims[t->batch_sym] = b;
      float loss;
      rc = t->train_step(m, dims, stage, &loss);
      if (rc) {
        if (tty) fputc('\n', stderr);
        fprintf(stderr, "mlc train: error: epoch %lld, step %lld: %s\n", (long long)epoch + 1,
                (long long)t->step(m) + 1, t->last_error(m));
        if (ckpt && access(ckpt, F_OK) == 0) fprintf(stderr, "the last checkpoint is kept: %s\n", ckpt);
        rc = 1; /* exit status 1, not the MLCRT_E* status (spec section 6) */
        goto done;
      }
      sum += loss * (double)b;
      seen += b;
      double el = now() - t0;
      if (tty || bi + 1 == nb || (bi + 1) % 100 == 0)
        progress(tty, epoch, epochs, bi + 1, nb, sum / (double)seen, seen / (el > 0 ? el : 1e-9),
                 (double)(nb - bi - 1) * el / (double)(bi - first + 1));
      if (interrupted) {
        if (tty) fputc('\n', stderr);
        if (ckpt && t->save_checkpoint(m, ckpt) == 0)
          fprintf(stderr, "interrupted: checkpoint saved to %s (resume with --resume %s)\n", ckpt, ckpt);
        else
          fprintf(stderr, "interrupted%s%s\n", ckpt ? ": could not save a checkpoint: " : "", ckpt ? t->last_error(m) : "");
        rc = 130;
        goto done;
      }
    }
    if (tty) fputc('\n', stderr);
    if (have_eval) {
      double el, ea;
      dims[t->batch_sym] = batch;
      rc = evaluate(t, m, &ev, batch, dims, stage, out, &el, &ea);
      if (rc) {
        fprintf(stderr, "mlc train: error: evaluation: %s\n", t->last_error(m));
        rc = 1;
        goto done;
      }
      if (t->classes > 0)
        printf("epoch %lld: train loss %.4f, eval loss %.4f, eval accuracy %.2f%%\n", (long long)epoch + 1,
               sum / (double)(seen ? seen : 1), el, 100 * ea);
      else
        printf("epoch %lld: train loss %.4f, eval loss %.4f\n", (long long)epoch + 1, sum / (double)(seen ? seen : 1), el);
    } else
      printf("epoch %lld: train loss %.4f\n", (long long)epoch + 1, sum / (double)(seen ? seen : 1));
    fflush(stdout);
    if (ckpt && t->save_checkpoint(m, ckpt)) {
      fprintf(stderr, "mlc train: error: %s\n", t->last_error(m));
      rc = 1;
      goto done;
    }
    if (save && t->save(m, save)) {
      fprintf(stderr, "mlc train: error: %s\n", t->last_error(m));
      rc = 1;
      goto done;
    }
  }
done:
  for (int i = 0; i < t->ninputs; i++) {
    free(stage[i]);
  }
  free_set(t, &train);
  free_set(t, &ev);
  free(out);
  free(perm);
  t->destroy(m);
  return rc;
}
