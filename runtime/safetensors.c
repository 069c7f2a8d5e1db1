/* safetensors.c — the weights and checkpoint format (spec section 5).
 *
 * A safetensors file is: an 8-byte little-endian header length N, N bytes of
 * JSON, then the tensor data.  The JSON is an object mapping tensor names to
 * {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]} (offsets
 * relative to the start of the data), plus an optional "__metadata__" object
 * of string -> string.
 *
 * Loading checks the file against the model's descriptor table.  Files come
 * from anywhere, so everything is validated before a byte of tensor data is
 * copied: the header length against the file size (and a 100 MB cap), the
 * JSON with a small strict parser written for exactly this schema (bounded:
 * no recursion, no allocation beyond two buffers of the header's size),
 * dtype names, dims (overflow-checked products), offsets inside the data,
 * byte sizes, duplicate names and overlapping ranges.  Then every descriptor
 * must find its tensor with the same dtype and shape, and every tensor in the
 * file must be a descriptor.  Errors name the file and the tensor.
 *
 * Only the header is read into memory; tensor data is read with pread()
 * straight into the destination, so loading a large model does not need
 * twice its size in RAM.
 *
 * Tied parameters (spec `tie`): two descriptors with the same offset, dtype
 * and (non-empty) shape name the same memory.  Such a group is satisfied by a
 * file holding either name or several (then their bytes must be equal), and
 * is saved under the first descriptor's name only.  init.c skips the later
 * names too, so that the first name's initialiser is the one that counts.
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

#define ST_MAX_HEADER ((uint64_t)100 << 20) /* 100 MB: larger is not a real header */

/* ---- dtypes -------------------------------------------------------------- */

/* Every dtype name the safetensors format defines, so that a known but
 * unsupported dtype (F64) gets a "dtype F32 expected, file has F64" message
 * and its byte size can still be validated; mlcrt < 0 means unsupported. */
static const struct {
  const char *name;
  int mlcrt;
  unsigned size;
} st_dtypes[] = {
    {"F32", MLCRT_F32, 4}, {"F16", MLCRT_F16, 2}, {"BF16", MLCRT_BF16, 2}, {"I32", MLCRT_I32, 4},
    {"I64", MLCRT_I64, 8}, {"U8", MLCRT_U8, 1},   {"BOOL", MLCRT_BOOL, 1}, {"I8", -1, 1},
    {"I16", -1, 2},        {"U16", -1, 2},        {"U32", -1, 4},          {"U64", -1, 8},
    {"F64", -1, 8},        {"F8_E5M2", -1, 1},    {"F8_E4M3", -1, 1},
};
#define ST_NDTYPES ((int)(sizeof st_dtypes / sizeof st_dtypes[0]))

static const char *st_dtype_name(mlcrt_dtype t) {
  for (int i = 0; i < ST_NDTYPES; i++)
    if (st_dtypes[i].mlcrt == (int)t) return st_dtypes[i].name;
  return "?";
}

/* ---- header entries -------------------------------------------------------- */

typedef struct st_entry {
  const char *name; /* decoded, NUL-terminated, in the parser's string buffer */
  int dtype;        /* index into st_dtypes */
  int rank;
  int64_t shape[MLCRT_MAX_RANK];
  uint64_t begin, end;
  int used; /* matched by a descriptor */
} st_entry;

typedef struct st_parser {
  const char *p, *start, *end; /* the header bytes */
  char *sb;                    /* decoded strings */
  size_t sblen, sbcap;
  st_entry *e;
  int n, cap;
  const char *path;
  char *err;
} st_parser;

static int jfail(st_parser *j, const char *what) {
  return mlcrt_seterr(j->err, MLCRT_EFORMAT, "%s: invalid header JSON at byte %zu: %s", j->path,
                      (size_t)(j->p - j->start), what);
}

static void jws(st_parser *j) {
  while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}

/* Consumes character c (after whitespace) or fails. */
static int jexpect(st_parser *j, char c) {
  jws(j);
  if (j->p >= j->end) return jfail(j, "unexpected end of header");
  if (*j->p != c) {
    char m[16];
    snprintf(m, sizeof m, "expected '%c'", c);
    return jfail(j, m);
  }
  j->p++;
  return 0;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static int j4hex(st_parser *j, unsigned *out) {
  if (j->end - j->p < 4) return -1;
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    int h = hexval(j->p[i]);
    if (h < 0) return -1;
    v = v * 16 + (unsigned)h;
  }
  j->p += 4;
  *out = v;
  return 0;
}

/* Length of the valid UTF-8 sequence at p (lead byte >= 0x80), or 0. */
static int utf8_len(const unsigned char *p, const unsigned char *end) {
  unsigned c = p[0];
  int n;
  unsigned cp;
  if (c >= 0xc2 && c <= 0xdf)
    n = 2, cp = c & 0x1f;
  else if (c >= 0xe0 && c <= 0xef)
    n = 3, cp = c & 0x0f;
  else if (c >= 0xf0 && c <= 0xf4)
    n = 4, cp = c & 0x07;
  else
    return 0;
  if (end - p < n) return 0;
  for (int i = 1; i < n; i++) {
    if ((p[i] & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (p[i] & 0x3f);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
      (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return n;
}

/* Parses a JSON string at j->p into the string buffer; *out points at it. */
static int jstring(st_parser *j, const char **out) {
  jws(j);
  if (j->p >= j->end || *j->p != '"') return jfail(j, "expected a string");
  j->p++;
  /* Decoded text plus its NUL is never longer than the quoted source, so a
   * buffer of the header's size always suffices; the check is belt and
   * braces. */
  char *dst = j->sb + j->sblen;
  char *lim = j->sb + j->sbcap - 1;
  *out = dst;
  for (;;) {
    if (j->p >= j->end) return jfail(j, "unterminated string");
    if (dst >= lim) return jfail(j, "string too long");
    unsigned char c = (unsigned char)*j->p;
    if (c == '"') {
      j->p++;
      break;
    }
    if (c < 0x20) return jfail(j, "control character in string");
    if (c >= 0x80) {
      int n = utf8_len((const unsigned char *)j->p, (const unsigned char *)j->end);
      if (!n) return jfail(j, "invalid UTF-8 in string");
      if (lim - dst < n) return jfail(j, "string too long");
      memcpy(dst, j->p, (size_t)n);
      dst += n;
      j->p += n;
      continue;
    }
    j->p++;
    if (c != '\\') {
      *dst++ = (char)c;
      continue;
    }
    if (j->p >= j->end) return jfail(j, "unterminated string");
    c = (unsigned char)*j->p++;
    unsigned cp;
    switch (c) {
    case '"':
    case '\\':
    case '/':
      *dst++ = (char)c;
      continue;
    case 'b':
      *dst++ = '\b';
      continue;
    case 'f':
      *dst++ = '\f';
      continue;
    case 'n':
      *dst++ = '\n';
      continue;
    case 'r':
      *dst++ = '\r';
      continue;
    case 't':
      *dst++ = '\t';
      continue;
    case 'u':
      break;
    default:
      j->p--;
      return jfail(j, "invalid escape in string");
    }
    if (j4hex(j, &cp)) return jfail(j, "invalid \\u escape");
    if (cp >= 0xd800 && cp <= 0xdbff) { /* high surrogate: a low one must follow */
      unsigned lo;
      if (j->end - j->p < 2 || j->p[0] != '\\' || j->p[1] != 'u') return jfail(j, "lone surrogate");
      j->p += 2;
      if (j4hex(j, &lo) || lo < 0xdc00 || lo > 0xdfff) return jfail(j, "lone surrogate");
      cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    } else if (cp >= 0xdc00 && cp <= 0xdfff) {
      return jfail(j, "lone surrogate");
    }
    if (cp == 0) return jfail(j, "NUL character in string");
    if (lim - dst < 4) return jfail(j, "string too long");
    if (cp < 0x80) {
      *dst++ = (char)cp;
    } else if (cp < 0x800) {
      *dst++ = (char)(0xc0 | (cp >> 6));
      *dst++ = (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      *dst++ = (char)(0xe0 | (cp >> 12));
      *dst++ = (char)(0x80 | ((cp >> 6) & 0x3f));
      *dst++ = (char)(0x80 | (cp & 0x3f));
    } else {
      *dst++ = (char)(0xf0 | (cp >> 18));
      *dst++ = (char)(0x80 | ((cp >> 12) & 0x3f));
      *dst++ = (char)(0x80 | ((cp >> 6) & 0x3f));
      *dst++ = (char)(0x80 | (cp & 0x3f));
    }
  }
  *dst++ = '\0';
  j->sblen = (size_t)(dst - j->sb);
  return 0;
}

/* A non-negative JSON integer (no fraction, no exponent) up to max. */
static int juint(st_parser *j, uint64_t max, uint64_t *out) {
  jws(j);
  if (j->p < j->end && *j->p == '-') return jfail(j, "negative number");
  if (j->p >= j->end || *j->p < '0' || *j->p > '9') return jfail(j, "expected an integer");
  if (*j->p == '0' && j->end - j->p > 1 && j->p[1] >= '0' && j->p[1] <= '9')
    return jfail(j, "number with a leading zero");
  uint64_t v = 0;
  while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
    unsigned d = (unsigned)(*j->p - '0');
    if (v > (max - d) / 10) return jfail(j, "number too large");
    v = v * 10 + d;
    j->p++;
  }
  if (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E'))
    return jfail(j, "expected an integer, found a fraction or exponent");
  *out = v;
  return 0;
}

/* After an element: ',' continues (returns 1), close ends (returns 0). */
static int jnext(st_parser *j, char close, int *more) {
  jws(j);
  if (j->p < j->end && *j->p == ',') {
    j->p++;
    *more = 1;
    return 0;
  }
  if (j->p < j->end && *j->p == close) {
    j->p++;
    *more = 0;
    return 0;
  }
  return jfail(j, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
}

/* True if the next non-blank character is c (then consumed). */
static int jpeek(st_parser *j, char c) {
  jws(j);
  if (j->p < j->end && *j->p == c) {
    j->p++;
    return 1;
  }
  return 0;
}

/* "__metadata__": {"key": "value", ...} — strings only, as the format says. */
static int parse_metadata(st_parser *j) {
  if (jexpect(j, '{')) return MLCRT_EFORMAT;
  if (jpeek(j, '}')) return 0;
  for (int more = 1; more;) {
    const char *k, *v;
    size_t save = j->sblen;
    if (jstring(j, &k) || jexpect(j, ':') || jstring(j, &v)) return MLCRT_EFORMAT;
    j->sblen = save; /* metadata is checked, not kept */
    if (jnext(j, '}', &more)) return MLCRT_EFORMAT;
  }
  return 0;
}

static int parse_tensor(st_parser *j, st_entry *e) {
  enum { HAVE_DTYPE = 1, HAVE_SHAPE = 2, HAVE_OFFSETS = 4 };
  int have = 0;
  char q[96];
  if (jexpect(j, '{')) return MLCRT_EFORMAT;
  if (jpeek(j, '}')) goto check;
  for (int more = 1; more;) {
    const char *key;
    size_t save = j->sblen;
    if (jstring(j, &key) || jexpect(j, ':')) return MLCRT_EFORMAT;
    if (!strcmp(key, "dtype")) {
      const char *dt;
      if (have & HAVE_DTYPE) return jfail(j, "duplicate key \"dtype\"");
      have |= HAVE_DTYPE;
      if (jstring(j, &dt)) return MLCRT_EFORMAT;
      e->dtype = -1;
      for (int i = 0; i < ST_NDTYPES; i++)
        if (!strcmp(dt, st_dtypes[i].name)) e->dtype = i;
      if (e->dtype < 0)
        return mlcrt_seterr(j->err, MLCRT_EFORMAT, "%s: tensor '%s': unknown dtype '%s'", j->path,
                            mlcrt__quote(e->name, q, 64), mlcrt__quote(dt, q + 64, 32));
    } else if (!strcmp(key, "shape")) {
      if (have & HAVE_SHAPE) return jfail(j, "duplicate key \"shape\"");
      have |= HAVE_SHAPE;
      if (jexpect(j, '[')) return MLCRT_EFORMAT;
      e->rank = 0;
      if (!jpeek(j, ']')) {
        for (int m = 1; m;) {
          uint64_t d;
          if (e->rank == MLCRT_MAX_RANK)
            return mlcrt_seterr(j->err, MLCRT_EFORMAT,
                                "%s: tensor '%s': rank above %d is not supported", j->path,
                                mlcrt__quote(e->name, q, sizeof q), MLCRT_MAX_RANK);
          if (juint(j, INT64_MAX, &d)) return MLCRT_EFORMAT;
          e->shape[e->rank++] = (int64_t)d;
          if (jnext(j, ']', &m)) return MLCRT_EFORMAT;
        }
      }
    } else if (!strcmp(key, "data_offsets")) {
      int m;
      if (have & HAVE_OFFSETS) return jfail(j, "duplicate key \"data_offsets\"");
      have |= HAVE_OFFSETS;
      if (jexpect(j, '[') || juint(j, UINT64_MAX, &e->begin) || jexpect(j, ',') ||
          juint(j, UINT64_MAX, &e->end) || jnext(j, ']', &m))
        return MLCRT_EFORMAT;
      if (m) return jfail(j, "data_offsets must have exactly two numbers");
    } else {
      return jfail(j, "unknown key in tensor entry (expected dtype, shape, data_offsets)");
    }
    j->sblen = save; /* keys are not kept */
    if (jnext(j, '}', &more)) return MLCRT_EFORMAT;
  }
check:
  if (have != (HAVE_DTYPE | HAVE_SHAPE | HAVE_OFFSETS))
    return mlcrt_seterr(j->err, MLCRT_EFORMAT, "%s: tensor '%s': entry lacks %s", j->path,
                        mlcrt__quote(e->name, q, sizeof q),
                        !(have & HAVE_DTYPE)   ? "\"dtype\""
                        : !(have & HAVE_SHAPE) ? "\"shape\""
                                               : "\"data_offsets\"");
  return 0;
}

static int parse_header(st_parser *j) {
  int have_meta = 0;
  if (jexpect(j, '{')) return MLCRT_EFORMAT;
  if (!jpeek(j, '}')) {
    for (int more = 1; more;) {
      const char *key;
      if (jstring(j, &key) || jexpect(j, ':')) return MLCRT_EFORMAT;
      if (!strcmp(key, "__metadata__")) {
        if (have_meta) return jfail(j, "duplicate \"__metadata__\"");
        have_meta = 1;
        if (parse_metadata(j)) return MLCRT_EFORMAT;
      } else {
        if (j->n == j->cap) {
          int nc = j->cap ? j->cap * 2 : 64;
          st_entry *ne = realloc(j->e, (size_t)nc * sizeof *ne);
          if (!ne) return mlcrt_seterr(j->err, MLCRT_ENOMEM, "%s: out of memory", j->path);
          j->e = ne;
          j->cap = nc;
        }
        st_entry *e = &j->e[j->n++];
        memset(e, 0, sizeof *e);
        e->name = key;
        if (parse_tensor(j, e)) return MLCRT_EFORMAT;
      }
      if (jnext(j, '}', &more)) return MLCRT_EFORMAT;
    }
  }
  jws(j); /* writers pad the header with spaces */
  if (j->p != j->end) return jfail(j, "unexpected data after the JSON object");
  return 0;
}

/* ---- helpers ------------------------------------------------------------------ */

static void fmt_shape(char *buf, size_t cap, const int64_t *shape, int rank) {
  size_t o = 0;
  o += (size_t)snprintf(buf, cap, "[");
  for (int i = 0; i < rank && o < cap; i++)
    o += (size_t)snprintf(buf + o, cap - o, "%s%" PRId64, i ? ", " : "", shape[i]);
  if (o < cap) snprintf(buf + o, cap - o, "]");
}

static int cmp_entry_name(const void *a, const void *b) {
  return strcmp((*(st_entry *const *)a)->name, (*(st_entry *const *)b)->name);
}

static int cmp_entry_begin(const void *a, const void *b) {
  const st_entry *x = *(st_entry *const *)a, *y = *(st_entry *const *)b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  return x->end < y->end ? -1 : x->end > y->end;
}

/* Validates one descriptor; returns its byte size or -1. */
static int64_t desc_bytes(const mlcrt_tensor_desc *d) {
  if (!d->name || (unsigned)d->dtype >= MLCRT_NDTYPES || d->rank < 0 || d->rank > MLCRT_MAX_RANK)
    return -1;
  size_t es = mlcrt_dtype_size(d->dtype);
  int64_t n = mlcrt__numel(d->shape, d->rank, es);
  return n < 0 ? -1 : n * (int64_t)es;
}

static int same_layout(const mlcrt_tensor_desc *a, const mlcrt_tensor_desc *b) {
  if (a->offset != b->offset || a->dtype != b->dtype || a->rank != b->rank) return 0;
  for (int k = 0; k < a->rank; k++)
    if (a->shape[k] != b->shape[k]) return 0;
  return 1;
}

/* For each descriptor, the index of the first descriptor it is a tied alias
 * of (itself if none).  Quadratic in the number of descriptors, which is at
 * most a few thousand; runs once per load/save/init. */
void mlcrt__tie_origins(const mlcrt_tensor_desc *desc, int n, int *orig) {
  for (int i = 0; i < n; i++) {
    orig[i] = i;
    if (desc_bytes(&desc[i]) <= 0) continue;
    for (int k = 0; k < i; k++)
      if (orig[k] == k && same_layout(&desc[k], &desc[i])) {
        orig[i] = k;
        break;
      }
  }
}

static st_entry *find_entry(st_entry **sorted, int n, const char *name) {
  int lo = 0, hi = n - 1;
  while (lo <= hi) {
    int mid = lo + (hi - lo) / 2;
    int c = strcmp(sorted[mid]->name, name);
    if (!c) return sorted[mid];
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid - 1;
  }
  return NULL;
}

/* ---- load ------------------------------------------------------------------------ */

int mlcrt_load_safetensors(const char *path, const mlcrt_tensor_desc *desc, int n, void *base,
                           char *err) {
  st_parser j;
  memset(&j, 0, sizeof j);
  j.path = path;
  j.err = err;
  char *hdr = NULL;
  st_entry **byname = NULL, **bybegin = NULL;
  unsigned char *cmpbuf = NULL;
  int *orig = NULL;
  unsigned char *gflag = NULL; /* per tie group: 1 = some name is in the file, 2 = read */
  int rc = MLCRT_OK;
  char q1[96], q2[96], s1[192], s2[192];

  if (!path || n < 0 || (n > 0 && (!desc || !base)))
    return mlcrt_seterr(err, MLCRT_EINVAL, "mlcrt_load_safetensors: invalid arguments");
  for (int i = 0; i < n; i++)
    if (desc_bytes(&desc[i]) < 0)
      return mlcrt_seterr(err, MLCRT_EINVAL, "%s: descriptor %d ('%s') is invalid", path, i,
                          desc[i].name ? mlcrt__quote(desc[i].name, q1, sizeof q1) : "(null)");

  orig = malloc((size_t)(n ? n : 1) * sizeof *orig);
  gflag = calloc((size_t)(n ? n : 1), 1);
  if (!orig || !gflag) {
    free(orig);
    free(gflag);
    return mlcrt_seterr(err, MLCRT_ENOMEM, "%s: out of memory", path);
  }
  mlcrt__tie_origins(desc, n, orig);

  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    free(orig);
    free(gflag);
    return mlcrt_seterr(err, MLCRT_EIO, "%s: cannot open: %s", path, strerror(errno));
  }
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
  unsigned char lenb[8];
  if (fsize < 8) {
    rc = mlcrt_seterr(err, MLCRT_EFORMAT,
                      "%s: truncated: file has %" PRIu64
                      " bytes, less than the 8-byte header length",
                      path, fsize);
    goto out;
  }
  if (mlcrt__pread_full(fd, lenb, 8, 0)) goto readerr;
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | lenb[i];
  if (hlen > ST_MAX_HEADER) {
    rc = mlcrt_seterr(err, MLCRT_EFORMAT,
                      "%s: header length %" PRIu64
                      " is absurd (over 100 MB): not a safetensors file",
                      path, hlen);
    goto out;
  }
  if (hlen > fsize - 8) {
    rc = mlcrt_seterr(err, MLCRT_EFORMAT,
                      "%s: truncated: header says %" PRIu64 " bytes, file has %" PRIu64, path, hlen,
                      fsize);
    goto out;
  }
  if (hlen < 2) {
    rc = mlcrt_seterr(err, MLCRT_EFORMAT, "%s: header of %" PRIu64 " bytes is too short", path,
                      hlen);
    goto out;
  }
  hdr = malloc((size_t)hlen);
  j.sb = malloc((size_t)hlen + 1);
  if (!hdr || !j.sb) {
    rc = mlcrt_seterr(err, MLCRT_ENOMEM, "%s: out of memory for the header", path);
    goto out;
  }
  j.sbcap = (size_t)hlen + 1;
  if (mlcrt__pread_full(fd, hdr, (size_t)hlen, 8)) goto readerr;
  j.p = j.start = hdr;
  j.end = hdr + hlen;
  if ((rc = parse_header(&j))) goto out;

  /* Offsets, sizes. */
  uint64_t dlen = fsize - 8 - hlen;
  for (int i = 0; i < j.n; i++) {
    st_entry *e = &j.e[i];
    const char *qn = mlcrt__quote(e->name, q1, sizeof q1);
    int64_t numel = mlcrt__numel(e->shape, e->rank, st_dtypes[e->dtype].size);
    if (numel < 0) {
      fmt_shape(s1, sizeof s1, e->shape, e->rank);
      rc = mlcrt_seterr(err, MLCRT_EFORMAT, "%s: tensor '%s': shape %s is too large", path, qn, s1);
      goto out;
    }
    uint64_t nbytes = (uint64_t)numel * st_dtypes[e->dtype].size;
    if (e->end < e->begin) {
      rc = mlcrt_seterr(err, MLCRT_EFORMAT,
                        "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] end before begin",
                        path, qn, e->begin, e->end);
      goto out;
    }
    if (e->end > dlen) {
      rc = mlcrt_seterr(err, MLCRT_EFORMAT,
                        "%s: truncated: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                        "] go past the end of the data (%" PRIu64 " bytes)",
                        path, qn, e->begin, e->end, dlen);
      goto out;
    }
    if (e->end - e->begin != nbytes) {
      fmt_shape(s1, sizeof s1, e->shape, e->rank);
      rc = mlcrt_seterr(err, MLCRT_EFORMAT,
                        "%s: tensor '%s': data_offsets span %" PRIu64
                        " bytes but %s %s needs %" PRIu64,
                        path, qn, e->end - e->begin, st_dtypes[e->dtype].name, s1, nbytes);
      goto out;
    }
  }

  /* Duplicate names, overlapping ranges. */
  byname = malloc((size_t)(j.n ? j.n : 1) * sizeof *byname);
  bybegin = malloc((size_t)(j.n ? j.n : 1) * sizeof *bybegin);
  if (!byname || !bybegin) {
    rc = mlcrt_seterr(err, MLCRT_ENOMEM, "%s: out of memory", path);
    goto out;
  }
  for (int i = 0; i < j.n; i++) byname[i] = bybegin[i] = &j.e[i];
  qsort(byname, (size_t)j.n, sizeof *byname, cmp_entry_name);
  for (int i = 1; i < j.n; i++)
    if (!strcmp(byname[i - 1]->name, byname[i]->name)) {
      rc = mlcrt_seterr(err, MLCRT_EFORMAT, "%s: tensor '%s' appears twice in the header", path,
                        mlcrt__quote(byname[i]->name, q1, sizeof q1));
      goto out;
    }
  qsort(bybegin, (size_t)j.n, sizeof *bybegin, cmp_entry_begin);
  {
    const st_entry *prev = NULL;
    for (int i = 0; i < j.n; i++) {
      const st_entry *e = bybegin[i];
      if (e->begin == e->end) continue; /* empty tensors overlap nothing */
      if (prev && e->begin < prev->end) {
        rc = mlcrt_seterr(err, MLCRT_EFORMAT, "%s: tensors '%s' and '%s' have overlapping data",
                          path, mlcrt__quote(prev->name, q1, sizeof q1),
                          mlcrt__quote(e->name, q2, sizeof q2));
        goto out;
      }
      prev = e;
    }
  }

  /* Match descriptors (in order), then look for extra tensors.  A tied
   * group needs just one of its names in the file. */
  for (int i = 0; i < n; i++)
    if (find_entry(byname, j.n, desc[i].name)) gflag[orig[i]] = 1;
  for (int i = 0; i < n; i++) {
    const mlcrt_tensor_desc *d = &desc[i];
    st_entry *e = find_entry(byname, j.n, d->name);
    const char *qn = mlcrt__quote(d->name, q1, sizeof q1);
    if (!e) {
      if (gflag[orig[i]] || orig[i] != i) continue; /* reported under the first name */
      rc = mlcrt_seterr(err, MLCRT_ESHAPE, "%s: tensor '%s' is missing", path, qn);
      goto out;
    }
    e->used = 1;
    if (st_dtypes[e->dtype].mlcrt != (int)d->dtype) {
      rc = mlcrt_seterr(err, MLCRT_ESHAPE, "%s: tensor '%s': dtype %s expected, file has %s", path,
                        qn, st_dtype_name(d->dtype), st_dtypes[e->dtype].name);
      goto out;
    }
    int same = e->rank == d->rank;
    for (int k = 0; same && k < d->rank; k++) same = e->shape[k] == d->shape[k];
    if (!same) {
      fmt_shape(s1, sizeof s1, d->shape, d->rank);
      fmt_shape(s2, sizeof s2, e->shape, e->rank);
      rc = mlcrt_seterr(err, MLCRT_ESHAPE, "%s: tensor '%s': shape %s expected, file has %s", path,
                        qn, s1, s2);
      goto out;
    }
  }
  for (int i = 0; i < j.n; i++)
    if (!j.e[i].used) {
      rc = mlcrt_seterr(err, MLCRT_ESHAPE,
                        "%s: unexpected tensor '%s' (not a parameter or buffer of the model)", path,
                        mlcrt__quote(j.e[i].name, q1, sizeof q1));
      goto out;
    }

  /* Everything checks out: copy the data.  The first name of a tied group
   * found in the file is read; any other name present must hold the same
   * bytes. */
  const uint64_t data0 = 8 + hlen;
  for (int i = 0; i < n; i++) {
    const st_entry *e = find_entry(byname, j.n, desc[i].name);
    if (!e || e->begin == e->end) continue;
    int o = orig[i];
    unsigned char *dst = (unsigned char *)base + desc[i].offset;
    size_t nb = (size_t)(e->end - e->begin);
    if (gflag[o] != 2) {
      gflag[o] = 2;
      if (mlcrt__pread_full(fd, dst, nb, data0 + e->begin)) goto readerr;
      continue;
    }
    enum { CHUNK = 1 << 16 };
    if (!cmpbuf && !(cmpbuf = malloc(CHUNK))) {
      rc = mlcrt_seterr(err, MLCRT_ENOMEM, "%s: out of memory", path);
      goto out;
    }
    for (size_t off = 0; off < nb; off += CHUNK) {
      size_t c = nb - off < CHUNK ? nb - off : CHUNK;
      if (mlcrt__pread_full(fd, cmpbuf, c, data0 + e->begin + off)) goto readerr;
      if (memcmp(cmpbuf, dst + off, c)) {
        rc = mlcrt_seterr(
            err, MLCRT_EFORMAT, "%s: tied tensors '%s' and '%s' hold different values", path,
            mlcrt__quote(desc[o].name, q1, sizeof q1), mlcrt__quote(desc[i].name, q2, sizeof q2));
        goto out;
      }
    }
  }
  goto out;

readerr:
  if (errno == 0)
    rc = mlcrt_seterr(err, MLCRT_EFORMAT, "%s: truncated: the file shrank while being read", path);
  else
    rc = mlcrt_seterr(err, MLCRT_EIO, "%s: read error: %s", path, strerror(errno));
out:
  close(fd);
  free(hdr);
  free(j.sb);
  free(j.e);
  free(byname);
  free(bybegin);
  free(cmpbuf);
  free(orig);
  free(gflag);
  return rc;
}

/* ---- save ------------------------------------------------------------------------ */

typedef struct sbuf {
  char *p;
  size_t len, cap;
  int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->len + n + 1 > b->cap) {
    size_t nc = b->cap ? b->cap : 1024;
    while (b->len + n + 1 > nc) nc *= 2;
    char *np = realloc(b->p, nc);
    if (!np) {
      b->oom = 1;
      return;
    }
    b->p = np;
    b->cap = nc;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s) {
  sb_put(b, s, strlen(s));
}

/* A JSON string literal: quotes, backslashes and control bytes escaped;
 * other bytes (UTF-8) as is. */
static void sb_jstr(sbuf *b, const char *s) {
  sb_put(b, "\"", 1);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    char tmp[8];
    if (c == '"' || c == '\\') {
      tmp[0] = '\\';
      tmp[1] = (char)c;
      sb_put(b, tmp, 2);
    } else if (c < 0x20) {
      snprintf(tmp, sizeof tmp, "\\u%04x", c);
      sb_put(b, tmp, 6);
    } else {
      sb_put(b, (const char *)&c, 1);
    }
  }
  sb_put(b, "\"", 1);
}

typedef struct save_item {
  const mlcrt_tensor_desc *d;
  uint64_t begin, end;
} save_item;

static int cmp_save_name(const void *a, const void *b) {
  return strcmp(((const save_item *)a)->d->name, ((const save_item *)b)->d->name);
}

int mlcrt_save_safetensors(const char *path, const mlcrt_tensor_desc *desc, int n, const void *base,
                           char *err) {
  char q1[96];
  if (!path || n < 0 || (n > 0 && (!desc || !base)))
    return mlcrt_seterr(err, MLCRT_EINVAL, "mlcrt_save_safetensors: invalid arguments");
  save_item *items = malloc((size_t)(n ? n : 1) * sizeof *items);
  char *tmp = malloc(strlen(path) + 5);
  int *orig = malloc((size_t)(n ? n : 1) * sizeof *orig);
  sbuf h = {0};
  int rc = MLCRT_OK, fd = -1;
  if (!items || !tmp || !orig) {
    rc = mlcrt_seterr(err, MLCRT_ENOMEM, "%s: out of memory", path);
    goto out;
  }

  for (int i = 0; i < n; i++)
    if (desc_bytes(&desc[i]) < 0) {
      rc = mlcrt_seterr(err, MLCRT_EINVAL, "%s: descriptor %d ('%s') is invalid", path, i,
                        desc[i].name ? mlcrt__quote(desc[i].name, q1, sizeof q1) : "(null)");
      goto out;
    }

  /* Data in descriptor order, tied aliases skipped. */
  int m = 0;
  uint64_t off = 0;
  mlcrt__tie_origins(desc, n, orig);
  for (int i = 0; i < n; i++) {
    int64_t nb = desc_bytes(&desc[i]);
    if (orig[i] != i) continue;
    items[m].d = &desc[i];
    items[m].begin = off;
    off += (uint64_t)nb;
    items[m].end = off;
    m++;
  }
  qsort(items, (size_t)m, sizeof *items, cmp_save_name);
  for (int i = 0; i < m; i++)
    if (!strcmp(items[i].d->name, "__metadata__")) {
      rc = mlcrt_seterr(err, MLCRT_EINVAL, "%s: a tensor cannot be named __metadata__", path);
      goto out;
    }
  for (int i = 1; i < m; i++)
    if (!strcmp(items[i - 1].d->name, items[i].d->name)) {
      rc = mlcrt_seterr(err, MLCRT_EINVAL, "%s: two descriptors are named '%s'", path,
                        mlcrt__quote(items[i].d->name, q1, sizeof q1));
      goto out;
    }

  /* Header: 8 placeholder bytes for the length, then the JSON, keys sorted,
   * "__metadata__" first with {"format":"pt"} as PyTorch's writer puts it. */
  sb_put(&h, "\0\0\0\0\0\0\0\0", 8);
  sb_str(&h, "{\"__metadata__\":{\"format\":\"pt\"}");
  for (int i = 0; i < m; i++) {
    const mlcrt_tensor_desc *d = items[i].d;
    char num[64];
    sb_put(&h, ",", 1);
    sb_jstr(&h, d->name);
    sb_str(&h, ":{\"dtype\":\"");
    sb_str(&h, st_dtype_name(d->dtype));
    sb_str(&h, "\",\"shape\":[");
    for (int k = 0; k < d->rank; k++) {
      snprintf(num, sizeof num, "%s%" PRId64, k ? "," : "", d->shape[k]);
      sb_str(&h, num);
    }
    snprintf(num, sizeof num, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", items[i].begin,
             items[i].end);
    sb_str(&h, num);
  }
  sb_put(&h, "}", 1);
  while ((h.len - 8) % 8) sb_put(&h, " ", 1); /* data starts 8-aligned */
  if (h.oom) {
    rc = mlcrt_seterr(err, MLCRT_ENOMEM, "%s: out of memory", path);
    goto out;
  }
  uint64_t hl = h.len - 8;
  for (int i = 0; i < 8; i++) h.p[i] = (char)((hl >> (8 * i)) & 0xff);

  /* Write PATH.tmp, fsync, rename over PATH: readers see the old file or the
   * complete new one, never a torn one. */
  strcpy(tmp, path);
  strcat(tmp, ".tmp");
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    rc = mlcrt_seterr(err, MLCRT_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    goto out;
  }
  if (mlcrt__write_full(fd, h.p, h.len)) goto werr;
  for (int i = 0; i < n; i++) {
    if (orig[i] != i) continue;
    int64_t nb = desc_bytes(&desc[i]);
    if (nb > 0 && mlcrt__write_full(fd, (const char *)base + desc[i].offset, (size_t)nb)) goto werr;
  }
  if (fsync(fd) != 0) goto werr;
  if (close(fd) != 0) {
    fd = -1;
    goto werr;
  }
  fd = -1;
  if (rename(tmp, path) != 0) {
    rc = mlcrt_seterr(err, MLCRT_EIO, "%s: cannot rename %s into place: %s", path, tmp,
                      strerror(errno));
    unlink(tmp);
  }
  goto out;

werr:
  rc = mlcrt_seterr(err, MLCRT_EIO, "%s: write error: %s", tmp, strerror(errno));
  if (fd >= 0) close(fd);
  fd = -1;
  unlink(tmp);
out:
  free(items);
  free(tmp);
  free(orig);
  free(h.p);
  return rc;
}
