/* classify.c — run a model compiled by mlc over the Fashion-MNIST test set.
 *
 * One source, one executable per model: the build compiles this file with
 * -DMODEL=fashion_mlp -DMODEL_HEADER="fashion_mlp.h" (or lenet5), and every
 * model function is reached through FN(_create) -> fashion_mlp_create.  The
 * models take `x: u8[B, 1, 28, 28]` and give `logits: f32[B, 10]`, so the raw
 * IDX pixels are handed over unchanged, one batch at a time.
 *
 *   classify_fashion_mlp [--weights W.safetensors] [--seed N] [--batch B]
 *                        [--images t10k-images-idx3-ubyte.gz]
 *                        [--labels t10k-labels-idx1-ubyte.gz] [--threads N]
 *
 * Prints the accuracy and the throughput; exits 0, 1 on an error (bad file,
 * failed API call), 2 on a usage error.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include MODEL_HEADER

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define FN(suffix) CAT(MODEL, suffix) /* FN(_run) -> fashion_mlp_run */
#define STR_(x) #x
#define STR(x) STR_(x)

enum { ROWS = 28, COLS = 28, PIXELS = ROWS * COLS, CLASSES = 10 };

#define DATASET_DIR "/usr/share/datasets/fashion-mnist/"

typedef struct Options {
  const char *weights; /* NULL: initialise from seed */
  uint64_t seed;
  int64_t batch;
  const char *images, *labels;
  int threads;
} Options;

static void usage(FILE *out) {
  fprintf(out,
          "usage: classify_%s [--weights W.safetensors] [--seed N] [--batch B]\n"
          "       [--images IDX] [--labels IDX] [--threads N] [--help]\n"
          "Classifies the Fashion-MNIST test set with the %s model compiled by mlc.\n"
          "  --weights W   safetensors file with the model's parameters\n"
          "                (default: the initialisers of the .mdl, seeded by --seed)\n"
          "  --seed N      seed for the initialisers (default 0)\n"
          "  --batch B     images per run call (default 64)\n"
          "  --images IDX  IDX image file, gzip or not (default " DATASET_DIR
          "t10k-images-idx3-ubyte.gz)\n"
          "  --labels IDX  IDX label file (default " DATASET_DIR "t10k-labels-idx1-ubyte.gz)\n"
          "  --threads N   CPU threads, 0 = the runtime's default (default 0)\n",
          STR(MODEL), STR(MODEL));
}

/* Parses a whole decimal number in [lo, hi]; returns 0 on success. */
static int parse_int(const char *s, long long lo, long long hi, long long *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi)
    return -1;
  *out = v;
  return 0;
}

static int parse_args(int argc, char **argv, Options *o) {
  *o = (Options){NULL, 0, 64, DATASET_DIR "t10k-images-idx3-ubyte.gz",
                 DATASET_DIR "t10k-labels-idx1-ubyte.gz", 0};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      exit(0);
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "classify: %s: unknown option or missing value\n", a);
      return -1;
    }
    const char *v = argv[++i];
    long long n;
    if (!strcmp(a, "--weights")) {
      o->weights = v;
    } else if (!strcmp(a, "--images")) {
      o->images = v;
    } else if (!strcmp(a, "--labels")) {
      o->labels = v;
    } else if (!strcmp(a, "--seed")) {
      char *end;
      errno = 0;
      unsigned long long s = strtoull(v, &end, 10);
      if (errno || end == v || *end || v[0] == '-') {
        fprintf(stderr, "classify: --seed %s: not a non-negative integer\n", v);
        return -1;
      }
      o->seed = s;
    } else if (!strcmp(a, "--batch")) {
      if (parse_int(v, 1, 1 << 20, &n)) {
        fprintf(stderr, "classify: --batch %s: want an integer in 1..%d\n", v, 1 << 20);
        return -1;
      }
      o->batch = n;
    } else if (!strcmp(a, "--threads")) {
      if (parse_int(v, 0, 4096, &n)) {
        fprintf(stderr, "classify: --threads %s: want an integer in 0..4096\n", v);
        return -1;
      }
      o->threads = (int)n;
    } else {
      fprintf(stderr, "classify: %s: unknown option\n", a);
      return -1;
    }
  }
  return 0;
}

/* ---- IDX files (http://yann.lecun.com/exdb/mnist/ format) ------------------
 * A big-endian header: two zero bytes, a type byte (0x08 = unsigned byte), the
 * number of dims, then each dim as a u32; the data follows, C order. */

/* Reads all of path (decompressing gzip; plain files pass through zlib
 * unchanged) into a malloc'd buffer.  Returns NULL after printing an error. */
static uint8_t *read_all(const char *path, size_t *len) {
  gzFile f = gzopen(path, "rb");
  if (!f) {
    fprintf(stderr, "classify: %s: cannot open: %s\n", path, errno ? strerror(errno) : "gzopen failed");
    return NULL;
  }
  size_t cap = 1 << 20, n = 0;
  uint8_t *buf = malloc(cap);
  for (;;) {
    if (!buf) {
      fprintf(stderr, "classify: %s: out of memory\n", path);
      gzclose(f);
      return NULL;
    }
    if (n == cap) {
      if (cap > ((size_t)1 << 32)) {
        fprintf(stderr, "classify: %s: larger than 4 GiB, not an IDX file\n", path);
        free(buf);
        gzclose(f);
        return NULL;
      }
      uint8_t *nb = realloc(buf, cap *= 2);
      if (!nb)
        free(buf);
      buf = nb;
      continue;
    }
    size_t want = cap - n > (1u << 30) ? (1u << 30) : cap - n;
    int got = gzread(f, buf + n, (unsigned)want);
    if (got < 0) {
      int zerr;
      const char *msg = gzerror(f, &zerr);
      fprintf(stderr, "classify: %s: read error: %s\n", path,
              zerr == Z_ERRNO ? strerror(errno) : msg);
      free(buf);
      gzclose(f);
      return NULL;
    }
    if (got == 0)
      break;
    n += (size_t)got;
  }
  gzclose(f);
  *len = n;
  return buf;
}

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Loads an IDX file of unsigned bytes with `rank` dims; dims[1..] must equal
 * want[1..] (want[0] is ignored: the count).  Returns the data (inside the
 * malloc'd *base) or NULL after printing an error. */
static const uint8_t *load_idx(const char *path, int rank, const uint32_t *want, uint32_t *count,
                               uint8_t **base) {
  size_t len;
  uint8_t *buf = read_all(path, &len);
  if (!buf)
    return NULL;
  size_t header = 4 + 4 * (size_t)rank;
  if (len < 4 || buf[0] || buf[1]) {
    fprintf(stderr, "classify: %s: not an IDX file (bad magic)\n", path);
    goto fail;
  }
  if (buf[2] != 0x08) {
    fprintf(stderr, "classify: %s: IDX element type 0x%02x, want 0x08 (unsigned byte)\n", path,
            buf[2]);
    goto fail;
  }
  if (buf[3] != rank) {
    fprintf(stderr, "classify: %s: IDX file has %d dims, want %d\n", path, buf[3], rank);
    goto fail;
  }
  if (len < header) {
    fprintf(stderr, "classify: %s: truncated IDX header\n", path);
    goto fail;
  }
  uint64_t total = 1;
  for (int i = 0; i < rank; i++) {
    uint32_t d = be32(buf + 4 + 4 * i);
    if (i > 0 && d != want[i]) {
      fprintf(stderr, "classify: %s: dim %d is %" PRIu32 ", want %" PRIu32 "\n", path, i, d,
              want[i]);
      goto fail;
    }
    total *= d;
  }
  if (len - header != total) {
    fprintf(stderr, "classify: %s: %zu data bytes, the header says %" PRIu64 " (%s)\n", path,
            len - header, total, len - header < total ? "truncated" : "trailing bytes");
    goto fail;
  }
  *count = be32(buf + 4);
  *base = buf;
  return buf + header;
fail:
  free(buf);
  return NULL;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
  Options o;
  if (parse_args(argc, argv, &o)) {
    usage(stderr);
    return 2;
  }

  uint8_t *image_buf = NULL, *label_buf = NULL;
  uint32_t nimages = 0, nlabels = 0;
  const uint32_t image_dims[3] = {0, ROWS, COLS}, label_dims[1] = {0};
  const uint8_t *images = load_idx(o.images, 3, image_dims, &nimages, &image_buf);
  const uint8_t *labels = images ? load_idx(o.labels, 1, label_dims, &nlabels, &label_buf) : NULL;
  if (!images || !labels) {
    free(image_buf);
    return 1;
  }
  int status = 1;
  MODEL *m = NULL;
  float *logits = NULL;
  if (nimages != nlabels) {
    fprintf(stderr, "classify: %s has %" PRIu32 " images but %s has %" PRIu32 " labels\n",
            o.images, nimages, o.labels, nlabels);
    goto done;
  }
  for (uint32_t i = 0; i < nlabels; i++) {
    if (labels[i] >= CLASSES) {
      fprintf(stderr, "classify: %s: label %" PRIu32 " is %d, want 0..%d\n", o.labels, i,
              labels[i], CLASSES - 1);
      goto done;
    }
  }

  mlcrt_options opts = {.device = MLCRT_CPU, .num_threads = o.threads, .device_index = 0};
  m = FN(_create)(o.batch, &opts);
  if (!m) {
    fprintf(stderr, "classify: %s_create: %s\n", STR(MODEL), mlcrt_last_error());
    goto done;
  }
  int rc = o.weights ? FN(_load)(m, o.weights) : FN(_init)(m, o.seed);
  if (rc) {
    fprintf(stderr, "classify: %s_%s: %s\n", STR(MODEL), o.weights ? "load" : "init",
            FN(_last_error)(m));
    goto done;
  }
  logits = malloc(sizeof(float) * (size_t)o.batch * CLASSES);
  if (!logits) {
    fprintf(stderr, "classify: out of memory\n");
    goto done;
  }

  uint32_t correct = 0;
  double t0 = now();
  for (uint32_t first = 0; first < nimages; first += (uint32_t)o.batch) {
    int64_t b = nimages - first < (uint64_t)o.batch ? (int64_t)(nimages - first) : o.batch;
    rc = FN(_run)(m, b, images + (size_t)first * PIXELS, logits);
    if (rc) {
      fprintf(stderr, "classify: %s_run (images %" PRIu32 "..%" PRIu32 "): %s\n", STR(MODEL),
              first, first + (uint32_t)b - 1, FN(_last_error)(m));
      goto done;
    }
    for (int64_t i = 0; i < b; i++) {
      const float *row = logits + i * CLASSES;
      int best = 0;
      for (int c = 1; c < CLASSES; c++)
        if (row[c] > row[best])
          best = c;
      correct += best == labels[first + i];
    }
  }
  double seconds = now() - t0;

  printf("model:      %s (%s)\n", STR(MODEL), o.weights ? o.weights : "initialised from --seed");
  printf("images:     %" PRIu32 " from %s, batch %" PRId64 ", threads %d\n", nimages, o.images,
         o.batch, o.threads);
  printf("accuracy:   %" PRIu32 "/%" PRIu32 " = %.2f%%\n", correct, nimages,
         nimages ? 100.0 * correct / nimages : 0.0);
  printf("throughput: %.0f images/s (%.3f s)\n", seconds > 0 ? nimages / seconds : 0.0, seconds);
  status = 0;
done:
  free(logits);
  if (m)
    FN(_destroy)(m);
  free(image_buf);
  free(label_buf);
  return status;
}
