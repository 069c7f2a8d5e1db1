/* tests/fuzz/fuzz_safetensors.c — mlcrt_load_safetensors (runtime/
 * safetensors.c) on arbitrary bytes, against a descriptor table with every
 * dtype, a scalar, a rank-4 tensor and a tied name.  The destination region
 * is exactly as large as the table says, so ASan catches any write past a
 * tensor's bytes. */
#include "fuzz.h"
#include "mlcrt.h"

static const mlcrt_tensor_desc descs[] = {
    {"fc.weight", MLCRT_F32, 2, {3, 4}, 0, MLCRT_INIT_ZEROS, 0, 0},
    {"fc.bias", MLCRT_F32, 1, {3}, 64, MLCRT_INIT_ZEROS, 0, 0},
    {"h", MLCRT_F16, 1, {2}, 128, MLCRT_INIT_ZEROS, 0, 0},
    {"b", MLCRT_BF16, 1, {2}, 192, MLCRT_INIT_ZEROS, 0, 0},
    {"i", MLCRT_I32, 1, {1}, 256, MLCRT_INIT_ZEROS, 0, 0},
    {"step", MLCRT_I64, 0, {0}, 320, MLCRT_INIT_ZEROS, 0, 0},
    {"u", MLCRT_U8, 4, {1, 1, 2, 1}, 384, MLCRT_INIT_ZEROS, 0, 0},
    {"mask", MLCRT_BOOL, 1, {2}, 448, MLCRT_INIT_ZEROS, 0, 0},
    {"head.bias", MLCRT_F32, 1, {3}, 64, MLCRT_INIT_ZEROS, 0, 0}, /* tie head.bias = fc.bias */
};
enum { NDESC = sizeof descs / sizeof descs[0], REGION = 450 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char path[64], err[MLCRT_ERRLEN];
  int fd = fuzz_memfile(data, size, path);
  if (fd < 0) return 0;
  unsigned char *base = malloc(REGION);
  if (base) mlcrt_load_safetensors(path, descs, NDESC, base, err);
  free(base);
  close(fd);
  return 0;
}
