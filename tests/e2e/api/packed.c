/* packed.c — run packs its weights once (-O2: a convolution's and the
 * linears') and packs them again
 * after whatever changes them: init, load, a train step, load_checkpoint.
 * Each run after such a change must give what a fresh instance holding the
 * same weights gives (bit for bit, one thread each), and evaluate (which
 * packs per call) agrees.  Prints "N checks passed" and exits 0, or prints
 * each failed check. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "packed.h"
#include "check.h"

enum { B = 8, NY = B * 3 };
static float x[B * 40];
static int64_t t[B];

/* y of a fresh one-thread instance holding the weights in path */
static int fresh(const char *path, float *y, int ckpt) {
  mlcrt_options one = {MLCRT_CPU, 1, 0};
  packed *m = packed_create(B, &one);
  int st = !m ? -1 : ckpt ? packed_load_checkpoint(m, path) : packed_load(m, path);
  if (st == 0) st = packed_run(m, B, x, y);
  packed_destroy(m);
  return st;
}

int main(void) {
  for (int i = 0; i < B * 40; i++) x[i] = (float)((i * 29) % 17) / 8.0f - 1.0f;
  for (int i = 0; i < B; i++) t[i] = i % 3;
  mlcrt_options one = {MLCRT_CPU, 1, 0};
  packed *a = packed_create(B, &one), *c = packed_create(B, &one);
  CHECK(a && c, "create: %s", mlcrt_last_error());
  if (!a || !c) return 1;
  float y0[NY], y1[NY], y2[NY], ye[NY], loss;

  /* zeros, then init: the second run sees the new weights */
  CHECK(packed_run(a, B, x, y0) == 0, "run: %s", packed_last_error(a));
  CHECK(packed_init(a, 1) == 0 && packed_run(a, B, x, y1) == 0, "init + run");
  CHECK(memcmp(y0, y1, sizeof y0) != 0, "run after init still gives the zero weights' output");
  CHECK(packed_save(a, "packed_w.safetensors") == 0, "save: %s", packed_last_error(a));
  CHECK(fresh("packed_w.safetensors", y2, 0) == 0 && !memcmp(y1, y2, sizeof y1),
        "run after init differs from a fresh instance with those weights");

  /* a train step changes the weights: the next run follows */
  CHECK(packed_train_step(a, B, x, t, &loss) == 0, "train step: %s", packed_last_error(a));
  CHECK(packed_run(a, B, x, y1) == 0, "run after the step");
  CHECK(packed_save(a, "packed_w.safetensors") == 0, "save");
  CHECK(fresh("packed_w.safetensors", y2, 0) == 0 && !memcmp(y1, y2, sizeof y1),
        "run after a train step differs from a fresh instance with the trained weights");
  CHECK(packed_evaluate(a, B, x, t, &loss, ye) == 0 && !memcmp(y1, ye, sizeof y1),
        "run and evaluate differ after a train step");

  /* load and load_checkpoint into an instance that has packed other weights */
  CHECK(packed_init(c, 7) == 0 && packed_run(c, B, x, y0) == 0, "c: init + run");
  CHECK(packed_load(c, "packed_w.safetensors") == 0 && packed_run(c, B, x, y2) == 0, "c: load");
  CHECK(!memcmp(y1, y2, sizeof y1), "run after load gives the old weights' output");
  CHECK(packed_save_checkpoint(a, "packed_c.safetensors") == 0, "checkpoint: %s",
        packed_last_error(a));
  CHECK(packed_init(c, 9) == 0 && packed_run(c, B, x, y0) == 0, "c: init again");
  CHECK(packed_load_checkpoint(c, "packed_c.safetensors") == 0 && packed_run(c, B, x, y2) == 0,
        "c: load_checkpoint: %s", packed_last_error(c));
  CHECK(!memcmp(y1, y2, sizeof y1), "run after load_checkpoint gives the old weights' output");
  remove("packed_w.safetensors");
  remove("packed_c.safetensors");

  packed_destroy(a);
  packed_destroy(c);
  return checks_result();
}
