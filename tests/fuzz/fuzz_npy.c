/* tests/fuzz/fuzz_npy.c — mlcrt_npy_read (runtime/npy.c) on arbitrary bytes.
 * An accepted array must be self-consistent: nbytes = numel * dtype size. */
#include "fuzz.h"
#include "mlcrt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char path[64], err[MLCRT_ERRLEN];
  int fd = fuzz_memfile(data, size, path);
  if (fd < 0) return 0;
  mlcrt_array a = {0};
  if (mlcrt_npy_read(path, &a, err) == MLCRT_OK) {
    size_t numel = 1;
    for (int i = 0; i < a.rank; i++) numel *= (size_t)a.shape[i];
    if (a.rank < 0 || a.rank > MLCRT_MAX_RANK || numel * mlcrt_dtype_size(a.dtype) != a.nbytes) abort();
    if (a.nbytes) ((volatile uint8_t *)a.data)[a.nbytes - 1]; /* ASan: the buffer is that long */
    mlcrt_array_free(&a);
  }
  close(fd);
  return 0;
}
