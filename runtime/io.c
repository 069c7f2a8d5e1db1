/* io.c — small, careful POSIX I/O and message helpers used by the file
 * readers and writers (safetensors.c, npy.c).  See rt_internal.h. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* pread, fsync, O_CLOEXEC under -std=c11 */
#endif
#include "rt_internal.h"

#include <errno.h>
#include <stdio.h>
#include <unistd.h>

int mlcrt__pread_full(int fd, void *buf, size_t n, uint64_t off) {
  char *p = buf;
  while (n > 0) {
    size_t chunk = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
    ssize_t r = pread(fd, p, chunk, (off_t)off);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (r == 0) {
      errno = 0; /* end of file: the file shrank under us */
      return -1;
    }
    p += r;
    off += (uint64_t)r;
    n -= (size_t)r;
  }
  return 0;
}

int mlcrt__write_full(int fd, const void *buf, size_t n) {
  const char *p = buf;
  while (n > 0) {
    size_t chunk = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
    ssize_t r = write(fd, p, chunk);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

const char *mlcrt__quote(const char *s, char *buf, size_t cap) {
  size_t o = 0;
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    size_t need = (c >= 0x20 && c < 0x7f) ? 1 : 4;
    if (o + need + 4 > cap) { /* keep room for "..." and the NUL */
      buf[o++] = '.';
      buf[o++] = '.';
      buf[o++] = '.';
      break;
    }
    if (need == 1) {
      buf[o++] = (char)c;
    } else {
      snprintf(buf + o, 5, "\\x%02x", c);
      o += 4;
    }
  }
  buf[o] = '\0';
  return buf;
}

int64_t mlcrt__numel(const int64_t *shape, int rank, size_t elem_size) {
  int64_t n = 1;
  int zero = 0;
  for (int i = 0; i < rank; i++) {
    if (shape[i] < 0) return -1;
    if (shape[i] == 0) zero = 1;
  }
  if (zero) return 0;
  for (int i = 0; i < rank; i++) {
    if (n > INT64_MAX / shape[i]) return -1;
    n *= shape[i];
  }
  if (elem_size && (uint64_t)n > (uint64_t)(SIZE_MAX / elem_size)) return -1;
  if (elem_size && (uint64_t)n > (uint64_t)INT64_MAX / elem_size) return -1;
  return n;
}
