/* tests/fuzz/fuzz_checkpoint.c — a generated model's checkpoint loader
 * (ckpt_load_checkpoint, emitted by codegen/emit_c.c from ckpt_model.mdl at
 * build time) and its weights loader on arbitrary bytes.  A checkpoint it
 * accepts must leave a usable model: the step is read back and one forward
 * run and one train step are taken (non-finite values are fine, crashes are
 * not). */
#include "fuzz.h"
#include "ckpt.h"

static ckpt *model;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char path[64];
  if (!model) {
    model = ckpt_create(2, NULL);
    if (!model) abort();
  }
  int fd = fuzz_memfile(data, size, path);
  if (fd < 0) return 0;
  ckpt_init(model, 0);
  if (ckpt_load_checkpoint(model, path) == MLCRT_OK) {
    float x[8] = {1, 2, 3, 4, -1, -2, -3, -4}, y[6], loss;
    int64_t t[2] = {0, 2};
    (void)ckpt_step(model);
    ckpt_run(model, 2, x, y);
    ckpt_train_step(model, 2, x, t, &loss);
  }
  ckpt_load(model, path);
  close(fd);
  return 0;
}
