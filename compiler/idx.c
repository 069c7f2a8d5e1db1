/* compiler/idx.c — IDX dataset files (as Fashion-MNIST ships them, gzip-
 * compressed or not) converted to .npy for `mlc train`.
 *
 * IDX: two zero bytes, a type byte, a rank byte, the dims as big-endian u32,
 * then the data, big-endian.  Types u8 (0x08), i32 (0x0C) and f32 (0x0D) map
 * to mlc dtypes; the others are refused with a message.  zlib's gzread reads
 * plain files unchanged, so one path handles both.
 */
#include "mlcc.h"
#include "mlcrt.h"
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

bool idx_is_idx(const char *path) {
  size_t n = strlen(path);
  return !(n >= 4 && strcmp(path + n - 4, ".npy") == 0);
}

int idx_to_npy(const char *path, const char *npy, char *err) {
  gzFile f = gzopen(path, "rb");
  if (!f) return mlcrt_seterr(err, MLCRT_EIO, "%s: cannot open", path);
  unsigned char h[4];
  mlcrt_array a = {0};
  int rc = MLCRT_OK;
  if (gzread(f, h, 4) != 4 || h[0] || h[1]) {
    rc = mlcrt_seterr(err, MLCRT_EFORMAT, "%s: not an IDX file (bad magic)", path);
    goto out;
  }
  size_t esize;
  switch (h[2]) {
  case 0x08: a.dtype = MLCRT_U8, esize = 1; break;
  case 0x0C: a.dtype = MLCRT_I32, esize = 4; break;
  case 0x0D: a.dtype = MLCRT_F32, esize = 4; break;
  default:
    rc = mlcrt_seterr(err, MLCRT_EFORMAT, "%s: IDX element type 0x%02x is not supported (u8, i32 and f32 are)", path, h[2]);
    goto out;
  }
  a.rank = h[3];
  if (a.rank < 1 || a.rank > MLCRT_MAX_RANK) {
    rc = mlcrt_seterr(err, MLCRT_EFORMAT, "%s: IDX rank %d is not supported (1..%d)", path, a.rank, MLCRT_MAX_RANK);
    goto out;
  }
  size_t numel = 1;
  for (int i = 0; i < a.rank; i++) {
    unsigned char d[4];
    if (gzread(f, d, 4) != 4) {
      rc = mlcrt_seterr(err, MLCRT_EFORMAT, "%s: truncated IDX header", path);
      goto out;
    }
    a.shape[i] = (int64_t)d[0] << 24 | (int64_t)d[1] << 16 | (int64_t)d[2] << 8 | d[3];
    if (a.shape[i] && numel > ((size_t)1 << 40) / (size_t)a.shape[i]) {
      rc = mlcrt_seterr(err, MLCRT_EFORMAT, "%s: IDX dims are too large", path);
      goto out;
    }
    numel *= (size_t)a.shape[i];
  }
  a.nbytes = numel * esize;
  /* The header's size is not trusted for the allocation: a few bytes can
   * claim a terabyte, and a .gz file's real size is unknown until it is read.
   * The buffer grows with the data actually read (doubling, from 1 MiB). */
  size_t cap = 0, got = 0;
  while (got < a.nbytes) {
    if (got == cap) {
      size_t ncap = cap ? cap * 2 : (size_t)1 << 20;
      if (ncap > a.nbytes) ncap = a.nbytes;
      void *bigger = realloc(a.data, ncap);
      if (!bigger) {
        rc = mlcrt_seterr(err, MLCRT_ENOMEM, "%s: out of memory for %zu bytes", path, ncap);
        goto out;
      }
      a.data = bigger;
      cap = ncap;
    }
    unsigned chunk = cap - got > (1u << 30) ? 1u << 30 : (unsigned)(cap - got);
    int r = gzread(f, (char *)a.data + got, chunk);
    if (r <= 0) break;
    got += (size_t)r;
  }
  if (got != a.nbytes) {
    size_t rec = a.nbytes / (size_t)a.shape[0]; /* a.shape[0] > 0: got < a.nbytes */
    rc = mlcrt_seterr(err, MLCRT_EFORMAT,
                      "%s: truncated: the header says %lld records of %zu bytes, the file holds %zu bytes of data "
                      "(%zu complete records)", path, (long long)a.shape[0], rec, got, got / rec);
    goto out;
  }
  char extra;
  if (gzread(f, &extra, 1) > 0) {
    rc = mlcrt_seterr(err, MLCRT_EFORMAT, "%s: trailing bytes after the data", path);
    goto out;
  }
  if (esize == 4) /* big-endian to little-endian */
    for (size_t i = 0; i < numel; i++) {
      unsigned char *p = (unsigned char *)a.data + 4 * i, t0 = p[0], t1 = p[1];
      p[0] = p[3], p[1] = p[2], p[2] = t1, p[3] = t0;
    }
  rc = mlcrt_npy_write(npy, &a, err);
out:
  free(a.data);
  gzclose(f);
  return rc;
}
