/* tests/fuzz/fuzz.h — shared by the libFuzzer harnesses (fuzz_*.c).
 *
 * Each harness defines LLVMFuzzerTestOneInput and drives one reader of the
 * real library code.  The readers take paths, so the input is put in an
 * anonymous in-memory file (memfd) and handed over as /proc/self/fd/N: no
 * disk traffic, nothing left behind.  replay.c gives the same harnesses a
 * main() for ctest (gcc, no libFuzzer), replaying the corpus and the
 * regression inputs.
 */
#ifndef MLC_FUZZ_H
#define MLC_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Writes data to a fresh memfd and its path to path[64]; returns the fd
 * (close it when done), or -1 (then the harness skips the input). */
static inline int fuzz_memfile(const uint8_t *data, size_t size, char path[64]) {
  int fd = memfd_create("fuzz", MFD_CLOEXEC);
  if (fd < 0) return -1;
  size_t off = 0;
  while (off < size) {
    ssize_t w = write(fd, data + off, size - off);
    if (w <= 0) {
      close(fd);
      return -1;
    }
    off += (size_t)w;
  }
  snprintf(path, 64, "/proc/self/fd/%d", fd);
  return fd;
}

#endif
