/* tests/fuzz/fuzz_idx.c — idx_to_npy (compiler/idx.c), the IDX dataset reader
 * of `mlc train`, on arbitrary bytes (plain or gzip: zlib reads both).  The
 * converted .npy goes to /dev/null. */
#include "fuzz.h"
#include "mlcc.h"
#include "mlcrt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char path[64], err[MLCRT_ERRLEN];
  int fd = fuzz_memfile(data, size, path);
  if (fd < 0) return 0;
  idx_to_npy(path, "/dev/null", err);
  close(fd);
  return 0;
}
