/* npy.c — NumPy .npy files, the command line's input/output format.
 *
 * Layout: magic "\x93NUMPY", version byte pair, header length (u16 LE for
 * version 1.0, u32 LE for 2.0 and 3.0), then an ASCII (3.0: UTF-8) Python
 * dict literal such as
 *     {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
 * padded with spaces and ending in '\n', then the raw array data.
 *
 * The reader parses that dict with a small strict parser (exactly the keys
 * descr, fortran_order and shape; string, bool and int-tuple values; Python
 * literal syntax) and checks the data size against the file before
 * allocating, so a hostile shape cannot make it allocate gigabytes.  It
 * accepts only dense little-endian C-order arrays of the runtime's dtypes and
 * says precisely why it rejects anything else.
 *
 * The writer emits version 1.0 with the header padded so that the data
 * starts at a multiple of 64 bytes, byte for byte what numpy.save writes.
 */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* pread, fsync, O_CLOEXEC under -std=c11 */
#endif
#include "rt_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NPY_MAX_HEADER (1u << 20) /* numpy itself refuses headers over 10 KB by default */

static const struct {
  const char *descr;
  mlcrt_dtype dtype;
  const char *numpy_name;
} npy_types[] = {
    {"<f4", MLCRT_F32, "float32"}, {"<f2", MLCRT_F16, "float16"}, {"<i4", MLCRT_I32, "int32"},
    {"<i8", MLCRT_I64, "int64"},   {"|u1", MLCRT_U8, "uint8"},    {"|b1", MLCRT_BOOL, "bool"},
};
#define NPY_NTYPES ((int)(sizeof npy_types / sizeof npy_types[0]))

/* ---- header dict parser -------------------------------------------------- */

typedef struct npy_parser {
  const char *p, *end;
  const char *path;
  char *err;
} npy_parser;

static int pfail(npy_parser *h, const char *what) {
  return mlcrt_seterr(h->err, MLCRT_EFORMAT, "%s: bad .npy header: %s", h->path, what);
}

static void pws(npy_parser *h) {
  while (h->p < h->end && (*h->p == ' ' || *h->p == '\t' || *h->p == '\n' || *h->p == '\r')) h->p++;
}

static int ppeek(npy_parser *h, char c) {
  pws(h);
  if (h->p < h->end && *h->p == c) {
    h->p++;
    return 1;
  }
  return 0;
}

/* A Python string literal in single or double quotes, without escapes (no
 * valid descr or key needs one); copied into buf. */
static int pstring(npy_parser *h, char *buf, size_t cap) {
  pws(h);
  if (h->p >= h->end || (*h->p != '\'' && *h->p != '"')) return pfail(h, "expected a string");
  char q = *h->p++;
  size_t n = 0;
  while (h->p < h->end && *h->p != q) {
    char c = *h->p++;
    if (c == '\\' || c == '\n' || (unsigned char)c < 0x20) return pfail(h, "unsupported string");
    if (n + 1 >= cap) return pfail(h, "string too long");
    buf[n++] = c;
  }
  if (h->p >= h->end) return pfail(h, "unterminated string");
  h->p++;
  buf[n] = '\0';
  return 0;
}

static int pword(npy_parser *h, const char *w) {
  size_t n = strlen(w);
  pws(h);
  if ((size_t)(h->end - h->p) < n || memcmp(h->p, w, n)) return 0;
  /* not a prefix of a longer identifier */
  if ((size_t)(h->end - h->p) > n) {
    char c = h->p[n];
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')
      return 0;
  }
  h->p += n;
  return 1;
}

/* (), (3,), (2, 3), (2, 3,) — non-negative ints (an 'L' suffix, as Python 2
 * numpy wrote, is accepted). */
static int pshape(npy_parser *h, int64_t *shape, int *rank) {
  *rank = 0;
  if (!ppeek(h, '(')) return pfail(h, "'shape' must be a tuple");
  if (ppeek(h, ')')) return 0;
  for (;;) {
    pws(h);
    if (h->p < h->end && *h->p == '-') return pfail(h, "negative dimension in 'shape'");
    if (h->p >= h->end || *h->p < '0' || *h->p > '9')
      return pfail(h, "expected an integer in 'shape'");
    int64_t v = 0;
    while (h->p < h->end && *h->p >= '0' && *h->p <= '9') {
      int d = *h->p++ - '0';
      if (v > (INT64_MAX - d) / 10) return pfail(h, "dimension too large");
      v = v * 10 + d;
    }
    if (h->p < h->end && *h->p == 'L') h->p++;
    if (*rank == MLCRT_MAX_RANK)
      return mlcrt_seterr(h->err, MLCRT_EUNSUPPORTED,
                          "%s: arrays of rank above %d are not supported", h->path, MLCRT_MAX_RANK);
    shape[(*rank)++] = v;
    int comma = ppeek(h, ',');
    if (ppeek(h, ')')) {
      /* Python needs the comma in a 1-tuple: (3) is just 3. */
      if (*rank == 1 && !comma) return pfail(h, "'shape' (N) is not a tuple; expected (N,)");
      return 0;
    }
    if (!comma) return pfail(h, "expected ',' or ')' in 'shape'");
  }
}

typedef struct npy_header {
  char descr[32];
  int fortran;
  int64_t shape[MLCRT_MAX_RANK];
  int rank;
} npy_header;

static int parse_dict(npy_parser *h, npy_header *out) {
  enum { D = 1, F = 2, S = 4 };
  int have = 0, rc;
  if (!ppeek(h, '{')) return pfail(h, "expected '{'");
  while (!ppeek(h, '}')) {
    char key[32];
    if ((rc = pstring(h, key, sizeof key))) return rc;
    if (!ppeek(h, ':')) return pfail(h, "expected ':'");
    if (!strcmp(key, "descr")) {
      if (have & D) return pfail(h, "duplicate key 'descr'");
      have |= D;
      pws(h);
      if (h->p < h->end && (*h->p == '[' || *h->p == '{'))
        return mlcrt_seterr(h->err, MLCRT_EUNSUPPORTED, "%s: structured arrays are not supported",
                            h->path);
      if ((rc = pstring(h, out->descr, sizeof out->descr))) return rc;
    } else if (!strcmp(key, "fortran_order")) {
      if (have & F) return pfail(h, "duplicate key 'fortran_order'");
      have |= F;
      if (pword(h, "True"))
        out->fortran = 1;
      else if (pword(h, "False"))
        out->fortran = 0;
      else
        return pfail(h, "'fortran_order' must be True or False");
    } else if (!strcmp(key, "shape")) {
      if (have & S) return pfail(h, "duplicate key 'shape'");
      have |= S;
      if ((rc = pshape(h, out->shape, &out->rank))) return rc;
    } else {
      return pfail(h, "unknown key (expected 'descr', 'fortran_order', 'shape')");
    }
    if (!ppeek(h, ',')) {
      if (ppeek(h, '}')) break;
      return pfail(h, "expected ',' or '}'");
    }
  }
  if (have != (D | F | S))
    return pfail(h, !(have & D)   ? "missing 'descr'"
                    : !(have & F) ? "missing 'fortran_order'"
                                  : "missing 'shape'");
  pws(h);
  if (h->p != h->end) return pfail(h, "unexpected text after the dict");
  return 0;
}

/* ---- read ----------------------------------------------------------------------- */

static void fmt_dims(char *buf, size_t cap, const int64_t *shape, int rank) {
  size_t o = 0;
  buf[0] = '\0';
  if (rank == 0) snprintf(buf, cap, "scalar");
  for (int i = 0; i < rank && o < cap; i++)
    o += (size_t)snprintf(buf + o, cap - o, "%s%" PRId64, i ? "x" : "", shape[i]);
}

int mlcrt_npy_read(const char *path, mlcrt_array *out, char *err) {
  if (!out) return mlcrt_seterr(err, MLCRT_EINVAL, "mlcrt_npy_read: out is NULL");
  memset(out, 0, sizeof *out);
  if (!path) return mlcrt_seterr(err, MLCRT_EINVAL, "mlcrt_npy_read: path is NULL");
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return mlcrt_seterr(err, MLCRT_EIO, "%s: cannot open: %s", path, strerror(errno));
  int rc = MLCRT_OK;
  char *hdr = NULL;
  void *data = NULL;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    rc = mlcrt_seterr(err, MLCRT_EIO, "%s: cannot stat: %s", path, strerror(errno));
    goto out;
  }
  if (!S_ISREG(st.st_mode)) {
    rc = mlcrt_seterr(err, MLCRT_EIO, "%s: not a regular file", path);
    goto out;
  }
  uint64_t fsize = (uint64_t)st.st_size;
  unsigned char pre[12];
  if (fsize < 10 || mlcrt__pread_full(fd, pre, 10, 0)) {
    if (fsize >= 10 && errno) goto readerr;
    rc = mlcrt_seterr(err, MLCRT_EFORMAT, "%s: not a .npy file (too short)", path);
    goto out;
  }
  if (memcmp(pre, "\x93NUMPY", 6)) {
    rc = mlcrt_seterr(err, MLCRT_EFORMAT, "%s: not a .npy file (bad magic)", path);
    goto out;
  }
  unsigned major = pre[6], minor = pre[7];
  uint64_t hlen, hstart;
  if (major == 1 && minor == 0) {
    hlen = (uint64_t)pre[8] | (uint64_t)pre[9] << 8;
    hstart = 10;
  } else if ((major == 2 || major == 3) && minor == 0) {
    if (fsize < 12 || mlcrt__pread_full(fd, pre + 10, 2, 10)) {
      if (fsize >= 12 && errno) goto readerr;
      rc = mlcrt_seterr(err, MLCRT_EFORMAT, "%s: truncated .npy header", path);
      goto out;
    }
    hlen = (uint64_t)pre[8] | (uint64_t)pre[9] << 8 | (uint64_t)pre[10] << 16 |
           (uint64_t)pre[11] << 24;
    hstart = 12;
  } else {
    rc = mlcrt_seterr(err, MLCRT_EFORMAT, "%s: unsupported .npy version %u.%u", path, major, minor);
    goto out;
  }
  if (hlen > NPY_MAX_HEADER) {
    rc = mlcrt_seterr(err, MLCRT_EFORMAT, "%s: .npy header of %" PRIu64 " bytes is too large", path,
                      hlen);
    goto out;
  }
  if (hlen > fsize - hstart) {
    rc = mlcrt_seterr(err, MLCRT_EFORMAT,
                      "%s: truncated: header says %" PRIu64 " header bytes, file has %" PRIu64,
                      path, hlen, fsize - hstart);
    goto out;
  }
  hdr = malloc(hlen ? (size_t)hlen : 1);
  if (!hdr) {
    rc = mlcrt_seterr(err, MLCRT_ENOMEM, "%s: out of memory", path);
    goto out;
  }
  if (mlcrt__pread_full(fd, hdr, (size_t)hlen, hstart)) goto readerr;

  npy_header h;
  memset(&h, 0, sizeof h);
  npy_parser ps = {hdr, hdr + hlen, path, err};
  if ((rc = parse_dict(&ps, &h))) goto out;

  int ti = -1;
  for (int i = 0; i < NPY_NTYPES; i++)
    if (!strcmp(h.descr, npy_types[i].descr)) ti = i;
  /* One-byte types carry no byte order; accept the other spellings. */
  if (!strcmp(h.descr, "<u1") || !strcmp(h.descr, ">u1") || !strcmp(h.descr, "=u1")) ti = 4;
  if (!strcmp(h.descr, "<b1") || !strcmp(h.descr, ">b1") || !strcmp(h.descr, "=b1")) ti = 5;
  if (ti < 0) {
    if (h.descr[0] == '>') {
      rc = mlcrt_seterr(err, MLCRT_EUNSUPPORTED, "%s: big-endian data ('%s') is not supported",
                        path, h.descr);
    } else {
      rc = mlcrt_seterr(
          err, MLCRT_EUNSUPPORTED,
          "%s: unsupported dtype '%s' (supported: '<f4' '<f2' '<i4' '<i8' '|u1' '|b1')", path,
          h.descr);
    }
    goto out;
  }
  if (h.fortran) {
    rc = mlcrt_seterr(err, MLCRT_EUNSUPPORTED,
                      "%s: fortran_order arrays are not supported; save with np.ascontiguousarray",
                      path);
    goto out;
  }
  mlcrt_dtype dt = npy_types[ti].dtype;
  size_t es = mlcrt_dtype_size(dt);
  int64_t numel = mlcrt__numel(h.shape, h.rank, es);
  char dims[160];
  fmt_dims(dims, sizeof dims, h.shape, h.rank);
  if (numel < 0) {
    rc = mlcrt_seterr(err, MLCRT_EFORMAT, "%s: shape %s is too large", path, dims);
    goto out;
  }
  uint64_t nbytes = (uint64_t)numel * es, avail = fsize - hstart - hlen;
  if (avail < nbytes) {
    rc = mlcrt_seterr(err, MLCRT_EFORMAT,
                      "%s: truncated: header says %s %s (%" PRIu64 " bytes), file has %" PRIu64,
                      path, dims, npy_types[ti].numpy_name, nbytes, avail);
    goto out;
  }
  if (avail > nbytes) {
    rc = mlcrt_seterr(err, MLCRT_EFORMAT,
                      "%s: %" PRIu64 " bytes of unexpected data after the %s %s array", path,
                      avail - nbytes, dims, npy_types[ti].numpy_name);
    goto out;
  }
  data = malloc(nbytes ? (size_t)nbytes : 1);
  if (!data) {
    rc = mlcrt_seterr(err, MLCRT_ENOMEM, "%s: out of memory for %" PRIu64 " bytes", path, nbytes);
    goto out;
  }
  if (mlcrt__pread_full(fd, data, (size_t)nbytes, hstart + hlen)) goto readerr;
  if (dt == MLCRT_BOOL) { /* numpy bools are 0/1; normalise anything else */
    unsigned char *b = data;
    for (uint64_t i = 0; i < nbytes; i++) b[i] = b[i] != 0;
  }
  out->dtype = dt;
  out->rank = h.rank;
  memcpy(out->shape, h.shape, sizeof h.shape);
  out->data = data;
  out->nbytes = (size_t)nbytes;
  data = NULL;
  goto out;

readerr:
  if (errno == 0)
    rc = mlcrt_seterr(err, MLCRT_EFORMAT, "%s: truncated: the file shrank while being read", path);
  else
    rc = mlcrt_seterr(err, MLCRT_EIO, "%s: read error: %s", path, strerror(errno));
out:
  close(fd);
  free(hdr);
  free(data);
  return rc;
}

/* ---- write ---------------------------------------------------------------------- */

int mlcrt_npy_write(const char *path, const mlcrt_array *a, char *err) {
  if (!path || !a) return mlcrt_seterr(err, MLCRT_EINVAL, "mlcrt_npy_write: invalid arguments");
  if (a->dtype == MLCRT_BF16)
    return mlcrt_seterr(err, MLCRT_EUNSUPPORTED,
                        "%s: bf16 arrays cannot be written to .npy (numpy has no bfloat16); "
                        "convert to f32 first",
                        path);
  int ti = -1;
  for (int i = 0; i < NPY_NTYPES; i++)
    if ((unsigned)a->dtype < MLCRT_NDTYPES && npy_types[i].dtype == a->dtype) ti = i;
  if (ti < 0 || a->rank < 0 || a->rank > MLCRT_MAX_RANK)
    return mlcrt_seterr(err, MLCRT_EINVAL, "%s: invalid array (dtype or rank)", path);
  size_t es = mlcrt_dtype_size(a->dtype);
  int64_t numel = mlcrt__numel(a->shape, a->rank, es);
  if (numel < 0 || (uint64_t)numel * es != a->nbytes || (a->nbytes && !a->data))
    return mlcrt_seterr(err, MLCRT_EINVAL, "%s: invalid array (shape does not match %zu bytes)",
                        path, a->nbytes);

  /* numpy.save's exact header: dict repr, spaces, '\n', total a multiple of 64. */
  char hdr[512];
  int n = snprintf(hdr + 10, sizeof hdr - 10, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                   npy_types[ti].descr);
  for (int i = 0; i < a->rank; i++)
    n += snprintf(hdr + 10 + n, sizeof hdr - 10 - (size_t)n, "%s%" PRId64, i ? ", " : "",
                  a->shape[i]);
  n += snprintf(hdr + 10 + n, sizeof hdr - 10 - (size_t)n, "%s), }", a->rank == 1 ? "," : "");
  size_t total = 10 + (size_t)n + 1; /* + '\n' */
  size_t padded = (total + 63) / 64 * 64;
  memset(hdr + 10 + n, ' ', padded - total);
  hdr[padded - 1] = '\n';
  memcpy(hdr, "\x93NUMPY\x01\x00", 8);
  hdr[8] = (char)((padded - 10) & 0xff);
  hdr[9] = (char)((padded - 10) >> 8);

  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return mlcrt_seterr(err, MLCRT_EIO, "%s: cannot create: %s", path, strerror(errno));
  if (mlcrt__write_full(fd, hdr, padded) || mlcrt__write_full(fd, a->data, a->nbytes)) {
    int e = errno;
    close(fd);
    return mlcrt_seterr(err, MLCRT_EIO, "%s: write error: %s", path, strerror(e));
  }
  if (close(fd) != 0)
    return mlcrt_seterr(err, MLCRT_EIO, "%s: write error: %s", path, strerror(errno));
  return MLCRT_OK;
}

void mlcrt_array_free(mlcrt_array *a) {
  if (!a) return;
  free(a->data);
  a->data = NULL;
  a->nbytes = 0;
}
