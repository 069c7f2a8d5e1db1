/* test_rt_formats.c — unit tests of the runtime's file formats: .npy
 * (round trip of every dtype, numpy's exact header layout, and rejection of
 * big-endian, fortran-order, bad magic, truncated, unsupported or malformed
 * files) and safetensors (round trip, tied names, and rejection of missing,
 * extra, wrong-dtype and wrong-shape tensors, bad offsets, bad header
 * lengths, malformed JSON, every truncation of a valid file, and random
 * corruption, which must never crash).  Files live in a mkdtemp directory. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* pread, fsync, O_CLOEXEC under -std=c11 */
#endif
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "mlcrt.h"

static char tmpdir[256];

static int setup(void **state) {
  (void)state;
  const char *base = getenv("TMPDIR");
  snprintf(tmpdir, sizeof tmpdir, "%s/mlcrt_fmt_XXXXXX", base && *base ? base : "/tmp");
  return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  DIR *d = opendir(tmpdir);
  if (d) {
    struct dirent *e;
    char p[512];
    while ((e = readdir(d))) {
      if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
      snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
      unlink(p);
    }
    closedir(d);
  }
  rmdir(tmpdir);
  return 0;
}

static const char *tpath(const char *name) {
  static char p[512];
  snprintf(p, sizeof p, "%s/%s", tmpdir, name);
  return p;
}

static void write_bytes(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  if (n) assert_int_equal(fwrite(data, 1, n, f), n);
  assert_int_equal(fclose(f), 0);
}

static unsigned char *read_bytes(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *p = malloc((size_t)len + 1);
  assert_int_equal(fread(p, 1, (size_t)len, f), (size_t)len);
  fclose(f);
  *n = (size_t)len;
  return p;
}

static int has_bytes(const unsigned char *p, size_t n, const char *sub) {
  size_t m = strlen(sub);
  for (size_t i = 0; i + m <= n; i++)
    if (!memcmp(p + i, sub, m)) return 1;
  return 0;
}

static void assert_contains(const char *s, const char *sub) {
  if (!strstr(s, sub)) fail_msg("message \"%s\" lacks \"%s\"", s, sub);
}

/* ---- npy ------------------------------------------------------------------------ */

static void fill_pattern(void *p, size_t n, unsigned seed) {
  unsigned char *b = p;
  for (size_t i = 0; i < n; i++) b[i] = (unsigned char)((i * 131 + seed * 17 + 7) >> 1);
}

static void npy_roundtrip(mlcrt_dtype t, int rank, const int64_t *shape, const char *want_hdr) {
  mlcrt_array a = {t, rank, {0}, NULL, 0};
  size_t numel = 1;
  for (int i = 0; i < rank; i++) {
    a.shape[i] = shape[i];
    numel *= (size_t)shape[i];
  }
  a.nbytes = numel * mlcrt_dtype_size(t);
  a.data = malloc(a.nbytes + 1);
  fill_pattern(a.data, a.nbytes, (unsigned)t);
  if (t == MLCRT_BOOL)
    for (size_t i = 0; i < a.nbytes; i++) ((unsigned char *)a.data)[i] &= 1;
  char err[MLCRT_ERRLEN] = "";
  const char *path = tpath("rt.npy");
  assert_int_equal(mlcrt_npy_write(path, &a, err), MLCRT_OK);

  /* numpy.save's layout: magic, v1.0, header to a multiple of 64, '\n'. */
  size_t n;
  unsigned char *f = read_bytes(path, &n);
  assert_memory_equal(f, "\x93NUMPY\x01\x00", 8);
  size_t hl = f[8] | (size_t)f[9] << 8;
  assert_int_equal((10 + hl) % 64, 0);
  assert_int_equal(f[10 + hl - 1], '\n');
  assert_int_equal(n, 10 + hl + a.nbytes);
  if (want_hdr) assert_memory_equal(f + 10, want_hdr, strlen(want_hdr));
  free(f);

  mlcrt_array b;
  assert_int_equal(mlcrt_npy_read(path, &b, err), MLCRT_OK);
  assert_int_equal(b.dtype, t);
  assert_int_equal(b.rank, rank);
  for (int i = 0; i < rank; i++) assert_int_equal(b.shape[i], shape[i]);
  assert_int_equal(b.nbytes, a.nbytes);
  if (a.nbytes) assert_memory_equal(b.data, a.data, a.nbytes);
  mlcrt_array_free(&b);
  assert_null(b.data);
  free(a.data);
}

static void test_npy_roundtrip(void **state) {
  (void)state;
  const int64_t s23[] = {2, 3}, s5[] = {5}, s0[] = {0, 3}, s4[] = {2, 1, 3, 2};
  npy_roundtrip(MLCRT_F32, 2, s23, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }");
  npy_roundtrip(MLCRT_F16, 1, s5, "{'descr': '<f2', 'fortran_order': False, 'shape': (5,), }");
  npy_roundtrip(MLCRT_I32, 0, NULL, "{'descr': '<i4', 'fortran_order': False, 'shape': (), }");
  npy_roundtrip(MLCRT_I64, 4, s4,
                "{'descr': '<i8', 'fortran_order': False, 'shape': (2, 1, 3, 2), }");
  npy_roundtrip(MLCRT_U8, 2, s23, "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3), }");
  npy_roundtrip(MLCRT_BOOL, 1, s5, "{'descr': '|b1', 'fortran_order': False, 'shape': (5,), }");
  npy_roundtrip(MLCRT_F32, 2, s0, NULL);
  for (int t = 0; t < MLCRT_NDTYPES; t++)
    if (t != MLCRT_BF16) npy_roundtrip((mlcrt_dtype)t, 2, s23, NULL);

  /* bf16 has no numpy dtype */
  uint16_t h[2] = {0x3F80, 0};
  mlcrt_array a = {MLCRT_BF16, 1, {2}, h, 4};
  char err[MLCRT_ERRLEN];
  assert_int_equal(mlcrt_npy_write(tpath("bf.npy"), &a, err), MLCRT_EUNSUPPORTED);
  assert_contains(err, "bf16");
  /* inconsistent nbytes */
  mlcrt_array bad = {MLCRT_F32, 1, {3}, h, 4};
  assert_int_equal(mlcrt_npy_write(tpath("bad.npy"), &bad, err), MLCRT_EINVAL);
}

/* Writes a v1.0 .npy with the given header text (padded as numpy does) and
 * ndata bytes of data. */
static void write_npy_raw(const char *path, const char *dict, size_t ndata) {
  unsigned char buf[4096];
  size_t dl = strlen(dict), total = (10 + dl + 1 + 63) / 64 * 64, hl = total - 10;
  memcpy(buf, "\x93NUMPY\x01\x00", 8);
  buf[8] = (unsigned char)(hl & 0xff);
  buf[9] = (unsigned char)(hl >> 8);
  memcpy(buf + 10, dict, dl);
  memset(buf + 10 + dl, ' ', hl - dl - 1);
  buf[total - 1] = '\n';
  fill_pattern(buf + total, ndata, 3);
  write_bytes(path, buf, total + ndata);
}

static int npy_expect_fail(const char *dict, size_t ndata, const char *msg) {
  char err[MLCRT_ERRLEN] = "";
  mlcrt_array a;
  const char *path = tpath("x.npy");
  write_npy_raw(path, dict, ndata);
  int rc = mlcrt_npy_read(path, &a, err);
  if (rc == MLCRT_OK) fail_msg("header %s was accepted", dict);
  assert_null(a.data);
  assert_contains(err, "x.npy: ");
  if (msg) assert_contains(err, msg);
  return rc;
}

static void test_npy_rejects(void **state) {
  (void)state;
  char err[MLCRT_ERRLEN];
  mlcrt_array a;
  /* the good header first, to be sure the helper writes valid files */
  write_npy_raw(tpath("ok.npy"), "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", 48);
  assert_int_equal(mlcrt_npy_read(tpath("ok.npy"), &a, err), MLCRT_OK);
  assert_int_equal(a.nbytes, 48);
  mlcrt_array_free(&a);
  /* double quotes and no trailing comma are valid Python too */
  write_npy_raw(tpath("ok.npy"), "{\"descr\": \"|u1\", \"shape\": (2,), \"fortran_order\": False}",
                2);
  assert_int_equal(mlcrt_npy_read(tpath("ok.npy"), &a, err), MLCRT_OK);
  assert_int_equal(a.dtype, MLCRT_U8);
  mlcrt_array_free(&a);

  assert_int_equal(npy_expect_fail("{'descr': '>f4', 'fortran_order': False, 'shape': (3,), }", 12,
                                   "big-endian data ('>f4') is not supported"),
                   MLCRT_EUNSUPPORTED);
  npy_expect_fail("{'descr': '<f4', 'fortran_order': True, 'shape': (3, 4), }", 48,
                  "fortran_order arrays are not supported; save with np.ascontiguousarray");
  npy_expect_fail("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", 24,
                  "unsupported dtype '<f8'");
  npy_expect_fail("{'descr': '<u2', 'fortran_order': False, 'shape': (3,), }", 6,
                  "unsupported dtype '<u2'");
  assert_int_equal(
      npy_expect_fail("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", 20,
                      "x.npy: truncated: header says 3x4 float32 (48 bytes), file has 20"),
      MLCRT_EFORMAT);
  npy_expect_fail("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", 52,
                  "unexpected data");
  npy_expect_fail("{'descr': '<f4', 'fortran_order': False}", 4, "missing 'shape'");
  npy_expect_fail("{'descr': '<f4', 'shape': (1,)}", 4, "missing 'fortran_order'");
  npy_expect_fail("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}", 4,
                  "unknown key");
  npy_expect_fail("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", 4,
                  "duplicate");
  npy_expect_fail("{'descr': '<f4', 'fortran_order': False, 'shape': (3)}", 12, "not a tuple");
  npy_expect_fail("{'descr': '<f4', 'fortran_order': False, 'shape': (-3,)}", 12, "negative");
  npy_expect_fail("{'descr': '<f4', 'fortran_order': False, 'shape': (3,,)}", 12, NULL);
  npy_expect_fail("{'descr': '<f4', 'fortran_order': False, 'shape': [3]}", 12, NULL);
  npy_expect_fail("{'descr': '<f4', 'fortran_order': 0, 'shape': (3,)}", 12, NULL);
  npy_expect_fail("{'descr': '<f4', 'fortran_order': Falsey, 'shape': (3,)}", 12, NULL);
  npy_expect_fail("{'descr': '<f4, 'fortran_order': False, 'shape': (3,)}", 12, NULL);
  npy_expect_fail("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,)}", 12,
                  "structured");
  npy_expect_fail("{'descr': '<f4', 'fortran_order': False, 'shape': (3,)} junk", 12, NULL);
  npy_expect_fail("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 3, 4, 5, 6, 7, 8, 9)}",
                  0, "rank");
  npy_expect_fail(
      "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296)}", 8,
      "too large");
  npy_expect_fail("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}", 8,
                  "too large");
  npy_expect_fail("", 0, NULL);

  /* bad magic, bad version, short files, header length past the end */
  write_bytes(tpath("m.npy"), "\x93NUMPX\x01\x00\x10\x00{}", 12);
  assert_int_equal(mlcrt_npy_read(tpath("m.npy"), &a, err), MLCRT_EFORMAT);
  assert_contains(err, "bad magic");
  write_bytes(tpath("m.npy"), "\x93NUMPY\x07\x00\x10\x00{}", 12);
  assert_int_equal(mlcrt_npy_read(tpath("m.npy"), &a, err), MLCRT_EFORMAT);
  assert_contains(err, "version");
  write_bytes(tpath("m.npy"), "\x93NUM", 4);
  assert_int_equal(mlcrt_npy_read(tpath("m.npy"), &a, err), MLCRT_EFORMAT);
  write_bytes(tpath("m.npy"), "\x93NUMPY\x01\x00\xff\x7f{}", 12);
  assert_int_equal(mlcrt_npy_read(tpath("m.npy"), &a, err), MLCRT_EFORMAT);
  assert_contains(err, "truncated");
  write_bytes(tpath("m.npy"), "\x93NUMPY\x02\x00\xff\xff\xff\x7f{}", 14);
  assert_int_equal(mlcrt_npy_read(tpath("m.npy"), &a, err), MLCRT_EFORMAT);
  assert_int_equal(mlcrt_npy_read(tpath("does-not-exist.npy"), &a, err), MLCRT_EIO);
  assert_contains(err, "does-not-exist.npy");
  assert_int_equal(mlcrt_npy_read(tmpdir, &a, err), MLCRT_EIO); /* a directory */
}

static void test_npy_v2_and_truncation(void **state) {
  (void)state;
  char err[MLCRT_ERRLEN];
  mlcrt_array a;
  /* version 2.0: 4-byte header length */
  const char *dict = "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }";
  unsigned char buf[256];
  size_t dl = strlen(dict), total = (12 + dl + 1 + 63) / 64 * 64, hl = total - 12;
  memcpy(buf, "\x93NUMPY\x02\x00", 8);
  buf[8] = (unsigned char)hl;
  buf[9] = buf[10] = buf[11] = 0;
  memcpy(buf + 12, dict, dl);
  memset(buf + 12 + dl, ' ', hl - dl - 1);
  buf[total - 1] = '\n';
  int64_t v[2] = {-5, 1LL << 40};
  memcpy(buf + total, v, 16);
  write_bytes(tpath("v2.npy"), buf, total + 16);
  assert_int_equal(mlcrt_npy_read(tpath("v2.npy"), &a, err), MLCRT_OK);
  assert_int_equal(a.dtype, MLCRT_I64);
  assert_memory_equal(a.data, v, 16);
  mlcrt_array_free(&a);

  /* every proper prefix of a valid file is rejected */
  for (size_t cut = 0; cut < total + 16; cut++) {
    write_bytes(tpath("cut.npy"), buf, cut);
    assert_int_not_equal(mlcrt_npy_read(tpath("cut.npy"), &a, err), MLCRT_OK);
    assert_null(a.data);
  }
}

/* ---- safetensors ---------------------------------------------------------------- */

#define NDESC 8
static const mlcrt_tensor_desc descs[NDESC] = {
    {"fc1.weight", MLCRT_F32, 2, {4, 3}, 0, MLCRT_INIT_KAIMING_UNIFORM, 0, 0},
    {"fc1.bias", MLCRT_F32, 1, {4}, 64, MLCRT_INIT_ZEROS, 0, 0},
    {"emb.weight", MLCRT_F16, 2, {2, 5}, 128, MLCRT_INIT_NORMAL, 0, 1},
    {"bn.num_batches_tracked", MLCRT_I64, 0, {0}, 192, MLCRT_INIT_ZEROS, 0, 0},
    {"mask", MLCRT_BOOL, 1, {3}, 256, MLCRT_INIT_ONES, 0, 0},
    {"pix", MLCRT_U8, 1, {7}, 320, MLCRT_INIT_ZEROS, 0, 0},
    {"h", MLCRT_BF16, 1, {3}, 384, MLCRT_INIT_UNIFORM, -1, 1},
    {"idx", MLCRT_I32, 2, {2, 2}, 448, MLCRT_INIT_ZEROS, 0, 0},
};
#define WBYTES 512

static void st_save_ok(const char *name, const mlcrt_tensor_desc *d, int n, const void *base) {
  char err[MLCRT_ERRLEN] = "";
  int rc = mlcrt_save_safetensors(tpath(name), d, n, base, err);
  if (rc) fail_msg("save failed: %s", err);
}

static int st_load(const char *name, const mlcrt_tensor_desc *d, int n, void *base, char *err) {
  err[0] = '\0';
  int rc = mlcrt_load_safetensors(tpath(name), d, n, base, err);
  if (rc != MLCRT_OK) assert_true(strlen(err) > 0);
  return rc;
}

static void test_st_roundtrip(void **state) {
  (void)state;
  unsigned char a[WBYTES], b[WBYTES];
  char err[MLCRT_ERRLEN];
  fill_pattern(a, sizeof a, 1);
  st_save_ok("w.safetensors", descs, NDESC, a);
  assert_int_equal(access(tpath("w.safetensors.tmp"), F_OK), -1); /* no temp file left */
  memset(b, 0, sizeof b);
  assert_int_equal(st_load("w.safetensors", descs, NDESC, b, err), MLCRT_OK);
  for (int i = 0; i < NDESC; i++) {
    size_t nb = mlcrt_dtype_size(descs[i].dtype);
    for (int k = 0; k < descs[i].rank; k++) nb *= (size_t)descs[i].shape[k];
    assert_memory_equal(a + descs[i].offset, b + descs[i].offset, nb);
  }

  /* File layout: LE u64 length, header padded to 8, "__metadata__", keys
   * sorted, offsets contiguous in descriptor order. */
  size_t n;
  unsigned char *f = read_bytes(tpath("w.safetensors"), &n);
  uint64_t hl = 0;
  for (int i = 7; i >= 0; i--) hl = hl << 8 | f[i];
  assert_int_equal((8 + hl) % 8, 0);
  assert_true(8 + hl <= n);
  char *hdr = malloc(hl + 1);
  memcpy(hdr, f + 8, hl);
  hdr[hl] = 0;
  assert_true(hdr[0] == '{');
  assert_contains(hdr, "\"__metadata__\":{\"format\":\"pt\"}");
  assert_contains(hdr,
                  "\"fc1.weight\":{\"dtype\":\"F32\",\"shape\":[4,3],\"data_offsets\":[0,48]}");
  assert_contains(hdr, "\"fc1.bias\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[48,64]}");
  assert_contains(hdr, "\"bn.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[],");
  assert_contains(hdr, "\"mask\":{\"dtype\":\"BOOL\"");
  assert_contains(hdr, "\"h\":{\"dtype\":\"BF16\"");
  assert_true(strstr(hdr, "\"bn.") < strstr(hdr, "\"emb.") &&
              strstr(hdr, "\"emb.") < strstr(hdr, "\"fc1.bias"));
  assert_memory_equal(f + 8 + hl, a, 48); /* fc1.weight's bytes come first */
  free(hdr);
  free(f);

  /* Saving over an existing file replaces it. */
  fill_pattern(a, sizeof a, 2);
  st_save_ok("w.safetensors", descs, NDESC, a);
  assert_int_equal(st_load("w.safetensors", descs, NDESC, b, err), MLCRT_OK);
  assert_memory_equal(a, b, 48);

  /* Zero descriptors: an empty file loads. */
  st_save_ok("empty.safetensors", descs, 0, a);
  assert_int_equal(st_load("empty.safetensors", descs, 0, b, err), MLCRT_OK);

  /* Unwritable destination: EIO, nothing left behind. */
  assert_int_equal(mlcrt_save_safetensors(tpath("nodir/w.safetensors"), descs, NDESC, a, err),
                   MLCRT_EIO);
  assert_int_equal(mlcrt_load_safetensors(tpath("nope.safetensors"), descs, NDESC, b, err),
                   MLCRT_EIO);
  assert_contains(err, "nope.safetensors");
}

static void test_st_mismatch(void **state) {
  (void)state;
  unsigned char a[WBYTES], b[WBYTES];
  char err[MLCRT_ERRLEN];
  fill_pattern(a, sizeof a, 1);
  char want[600];

  /* missing: file lacks fc1.bias */
  mlcrt_tensor_desc d[NDESC];
  memcpy(d, descs, sizeof d);
  d[1] = d[NDESC - 1];
  st_save_ok("w.safetensors", d, NDESC - 1, a);
  assert_int_equal(st_load("w.safetensors", descs, NDESC, b, err), MLCRT_ESHAPE);
  snprintf(want, sizeof want, "%s: tensor 'fc1.bias' is missing", tpath("w.safetensors"));
  assert_string_equal(err, want);

  /* extra: the model has no "pix" */
  st_save_ok("w.safetensors", descs, NDESC, a);
  memcpy(d, descs, sizeof d);
  d[5] = d[NDESC - 1];
  assert_int_equal(st_load("w.safetensors", d, NDESC - 1, b, err), MLCRT_ESHAPE);
  snprintf(want, sizeof want,
           "%s: unexpected tensor 'pix' (not a parameter or buffer of the model)",
           tpath("w.safetensors"));
  assert_string_equal(err, want);

  /* wrong dtype */
  memcpy(d, descs, sizeof d);
  d[0].dtype = MLCRT_F16;
  st_save_ok("w.safetensors", d, NDESC, a);
  assert_int_equal(st_load("w.safetensors", descs, NDESC, b, err), MLCRT_ESHAPE);
  assert_contains(err, "w.safetensors: tensor 'fc1.weight': dtype F32 expected, file has F16");

  /* wrong shape (transposed) */
  memcpy(d, descs, sizeof d);
  d[0].shape[0] = 3;
  d[0].shape[1] = 4;
  st_save_ok("w.safetensors", d, NDESC, a);
  assert_int_equal(st_load("w.safetensors", descs, NDESC, b, err), MLCRT_ESHAPE);
  assert_contains(err,
                  "w.safetensors: tensor 'fc1.weight': shape [4, 3] expected, file has [3, 4]");

  /* wrong rank: scalar vs [1] */
  memcpy(d, descs, sizeof d);
  d[3].rank = 1;
  d[3].shape[0] = 1;
  st_save_ok("w.safetensors", d, NDESC, a);
  assert_int_equal(st_load("w.safetensors", descs, NDESC, b, err), MLCRT_ESHAPE);
  assert_contains(err, "tensor 'bn.num_batches_tracked': shape [] expected, file has [1]");
}

/* Writes a safetensors file from a header text of jl bytes and ndata
 * pattern bytes. */
static void write_st_rawn(const char *name, const char *json, size_t jl, size_t ndata) {
  unsigned char *buf = malloc(8 + jl + ndata + 1);
  for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(((uint64_t)jl >> (8 * i)) & 0xff);
  memcpy(buf + 8, json, jl);
  fill_pattern(buf + 8 + jl, ndata, 5);
  write_bytes(tpath(name), buf, 8 + jl + ndata);
  free(buf);
}

static void write_st_raw(const char *name, const char *json, size_t ndata) {
  write_st_rawn(name, json, strlen(json), ndata);
}

static const mlcrt_tensor_desc two[2] = {
    {"a", MLCRT_F32, 1, {2}, 0, MLCRT_INIT_ZEROS, 0, 0},
    {"b", MLCRT_F32, 2, {1, 3}, 64, MLCRT_INIT_ZEROS, 0, 0},
};

static int st_raw_fail(const char *json, size_t ndata, const char *msg) {
  unsigned char base[128];
  char err[MLCRT_ERRLEN];
  write_st_raw("r.safetensors", json, ndata);
  int rc = st_load("r.safetensors", two, 2, base, err);
  if (rc == MLCRT_OK) fail_msg("accepted: %s", json);
  assert_contains(err, "r.safetensors: ");
  if (msg) assert_contains(err, msg);
  return rc;
}

#define TA "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"
#define TB "\"b\":{\"dtype\":\"F32\",\"shape\":[1,3],\"data_offsets\":[8,20]}"

static void test_st_malformed(void **state) {
  (void)state;
  unsigned char base[128];
  char err[MLCRT_ERRLEN];
  /* the raw writer makes valid files */
  write_st_raw("r.safetensors", "{" TA "," TB "}", 20);
  assert_int_equal(st_load("r.safetensors", two, 2, base, err), MLCRT_OK);
  write_st_raw("r.safetensors",
               " {\"__metadata__\": {\"k\": \"v\\u00e9\\n\"}, \n" TB " , " TA "}    ", 24);
  assert_int_equal(st_load("r.safetensors", two, 2, base, err), MLCRT_OK);

  /* offsets */
  st_raw_fail("{" TA ",\"b\":{\"dtype\":\"F32\",\"shape\":[1,3],\"data_offsets\":[8,400]}}", 20,
              "past the end");
  st_raw_fail("{" TA ",\"b\":{\"dtype\":\"F32\",\"shape\":[1,3],\"data_offsets\":[20,8]}}", 20,
              "end before begin");
  st_raw_fail("{" TA ",\"b\":{\"dtype\":\"F32\",\"shape\":[1,3],\"data_offsets\":[8,24]}}", 24,
              "needs 12");
  st_raw_fail("{" TA ",\"b\":{\"dtype\":\"F32\",\"shape\":[1,3],\"data_offsets\":[4,16]}}", 20,
              "overlapping");
  st_raw_fail("{" TA ",\"b\":{\"dtype\":\"F32\",\"shape\":[1,3],\"data_offsets\":[8,"
              "18446744073709551615]}}",
              20, "past the end");
  st_raw_fail("{" TA ",\"b\":{\"dtype\":\"F32\",\"shape\":[1,3],\"data_offsets\":[8,"
              "18446744073709551616]}}",
              20, "too large");
  /* dims */
  st_raw_fail("{" TA ",\"b\":{\"dtype\":\"F32\",\"shape\":[-1,3],\"data_offsets\":[8,20]}}", 20,
              "negative");
  st_raw_fail("{" TA ",\"b\":{\"dtype\":\"F32\",\"shape\":[1.0,3],\"data_offsets\":[8,20]}}", 20,
              "fraction");
  st_raw_fail("{" TA ",\"b\":{\"dtype\":\"F32\",\"shape\":[01,3],\"data_offsets\":[8,20]}}", 20,
              "leading zero");
  st_raw_fail("{" TA ",\"b\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
              "\"data_offsets\":[8,20]}}",
              20, "too large");
  st_raw_fail("{" TA ",\"b\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1,3],"
              "\"data_offsets\":[8,20]}}",
              20, "rank");
  /* dtype */
  st_raw_fail("{" TA ",\"b\":{\"dtype\":\"F128\",\"shape\":[1,3],\"data_offsets\":[8,20]}}", 20,
              "unknown dtype 'F128'");
  st_raw_fail("{" TA ",\"b\":{\"dtype\":\"F64\",\"shape\":[1,3],\"data_offsets\":[8,32]}}", 32,
              "tensor 'b': dtype F32 expected, file has F64");
  /* entries */
  st_raw_fail("{" TA "," TA "," TB "}", 20, "appears twice");
  st_raw_fail("{" TA ",\"b\":{\"dtype\":\"F32\",\"shape\":[1,3]}}", 20, "lacks \"data_offsets\"");
  st_raw_fail("{" TA ",\"b\":{\"dtype\":\"F32\",\"shape\":[1,3],\"data_offsets\":[8,20],\"x\":1}}",
              20, "unknown key");
  st_raw_fail("{" TA ",\"b\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1,3],"
              "\"data_offsets\":[8,20]}}",
              20, "duplicate");
  st_raw_fail("{" TA ",\"b\":{\"dtype\":\"F32\",\"shape\":[1,3],\"data_offsets\":[8,20,20]}}", 20,
              "exactly two");
  st_raw_fail("{\"__metadata__\":{\"k\":1}," TA "," TB "}", 20, "expected a string");
  st_raw_fail("{\"__metadata__\":{},\"__metadata__\":{}," TA "," TB "}", 20, "duplicate");
  /* JSON syntax */
  const char *garbage[] = {
      "",
      "{",
      "}",
      "[]",
      "nul",
      "{\"a\"}",
      "{\"a\":}",
      "{" TA "," TB ",}",
      "{" TA " " TB "}",
      "{" TA "," TB "}x",
      "{\"a\\q\":{}}",
      "{\"a\x01\":{}}",
      "{\"\\ud800\":{}}",
      "{\"\\u0000\":{}}",
      "{\"a\xff\":{}}",
      "{\"a\xc0\x80\":{}}",
      "{\"\\u12\":{}}",
      "{'a':{}}",
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}" /* no } */,
  };
  for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
    int rc = st_raw_fail(garbage[i], 20, NULL);
    assert_true(rc == MLCRT_EFORMAT || rc == MLCRT_ESHAPE);
  }

  /* NUL padding after the JSON is not whitespace */
  static const char nul[] = "{" TA "," TB "}\0\0\0";
  write_st_rawn("r.safetensors", nul, sizeof nul - 1, 20);
  assert_int_equal(st_load("r.safetensors", two, 2, base, err), MLCRT_EFORMAT);
  assert_contains(err, "after the JSON");

  /* header length: past the end, absurd, too short */
  unsigned char buf[100] = {0};
  buf[0] = 1234 & 0xff;
  buf[1] = 1234 >> 8;
  memcpy(buf + 8, "{}", 2);
  write_bytes(tpath("r.safetensors"), buf, 100);
  assert_int_equal(st_load("r.safetensors", two, 2, base, err), MLCRT_EFORMAT);
  char want[600];
  snprintf(want, sizeof want, "%s: truncated: header says 1234 bytes, file has 100",
           tpath("r.safetensors"));
  assert_string_equal(err, want);
  memset(buf, 0xff, 8);
  write_bytes(tpath("r.safetensors"), buf, 100);
  assert_int_equal(st_load("r.safetensors", two, 2, base, err), MLCRT_EFORMAT);
  assert_contains(err, "absurd");
  write_bytes(tpath("r.safetensors"), buf, 5);
  assert_int_equal(st_load("r.safetensors", two, 2, base, err), MLCRT_EFORMAT);
  assert_contains(err, "truncated");
}

static void test_st_truncation_and_fuzz(void **state) {
  (void)state;
  unsigned char a[WBYTES], b[WBYTES];
  char err[MLCRT_ERRLEN];
  fill_pattern(a, sizeof a, 9);
  st_save_ok("full.safetensors", descs, NDESC, a);
  size_t n;
  unsigned char *f = read_bytes(tpath("full.safetensors"), &n);
  /* Every proper prefix fails cleanly. */
  for (size_t cut = 0; cut < n; cut++) {
    write_bytes(tpath("cut.safetensors"), f, cut);
    int rc = st_load("cut.safetensors", descs, NDESC, b, err);
    if (rc == MLCRT_OK) fail_msg("prefix of %zu/%zu bytes accepted", cut, n);
    assert_int_equal(rc, MLCRT_EFORMAT);
  }
  /* Random corruption of header bytes: any outcome but a crash (the
   * sanitizer build checks memory safety), and an error always has text. */
  uint32_t s = 99;
  unsigned char *g = malloc(n);
  int accepted = 0;
  for (int it = 0; it < 3000; it++) {
    memcpy(g, f, n);
    int flips = 1 + it % 4;
    for (int k = 0; k < flips; k++) {
      s = s * 1664525u + 1013904223u;
      size_t pos = (s >> 8) % (it % 10 == 0 ? 8 : 8 + (n - 8) / 2);
      s = s * 1664525u + 1013904223u;
      g[pos] = (unsigned char)(s >> 24);
    }
    write_bytes(tpath("fz.safetensors"), g, n);
    if (st_load("fz.safetensors", descs, NDESC, b, err) == MLCRT_OK) accepted++;
  }
  assert_true(accepted < 3000);
  free(g);
  free(f);
}

static void test_st_tied(void **state) {
  (void)state;
  /* wte and lm_head share memory: one tensor under two names. */
  const mlcrt_tensor_desc t[3] = {
      {"wte.weight", MLCRT_F32, 2, {2, 3}, 0, MLCRT_INIT_NORMAL, 0, 1},
      {"ln.weight", MLCRT_F32, 1, {3}, 64, MLCRT_INIT_ONES, 0, 0},
      {"lm_head.weight", MLCRT_F32, 2, {2, 3}, 0, MLCRT_INIT_NORMAL, 0, 1},
  };
  float a[32], b[32];
  char err[MLCRT_ERRLEN];
  for (int i = 0; i < 32; i++) a[i] = (float)i;
  st_save_ok("tie.safetensors", t, 3, a);
  size_t n;
  unsigned char *f = read_bytes(tpath("tie.safetensors"), &n);
  assert_true(has_bytes(f, n, "wte.weight"));
  assert_false(has_bytes(f, n, "lm_head")); /* saved under the first name only */
  free(f);
  memset(b, 0, sizeof b);
  assert_int_equal(st_load("tie.safetensors", t, 3, b, err), MLCRT_OK);
  assert_memory_equal(a, b, 6 * sizeof(float));

  /* a file with only the second name loads too */
  const mlcrt_tensor_desc alt[2] = {t[2], t[1]};
  st_save_ok("tie2.safetensors", alt, 2, a);
  memset(b, 0, sizeof b);
  assert_int_equal(st_load("tie2.safetensors", t, 3, b, err), MLCRT_OK);
  assert_memory_equal(a, b, 6 * sizeof(float));

  /* both names: equal is fine, different is an error */
  char json[512];
  snprintf(json, sizeof json,
           "{\"wte.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
           "\"lm_head.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[24,48]},"
           "\"ln.weight\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[48,60]}}");
  size_t jl = strlen(json);
  unsigned char buf[1024];
  for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((jl >> (8 * i)) & 0xff);
  memcpy(buf + 8, json, jl);
  memcpy(buf + 8 + jl, a, 24);
  memcpy(buf + 8 + jl + 24, a, 24);
  memcpy(buf + 8 + jl + 48, a + 16, 12);
  write_bytes(tpath("both.safetensors"), buf, 8 + jl + 60);
  assert_int_equal(st_load("both.safetensors", t, 3, b, err), MLCRT_OK);
  assert_memory_equal(b + 16, a + 16, 12);
  buf[8 + jl + 24 + 5] ^= 1;
  write_bytes(tpath("both.safetensors"), buf, 8 + jl + 60);
  assert_int_equal(st_load("both.safetensors", t, 3, b, err), MLCRT_EFORMAT);
  assert_contains(err, "'wte.weight' and 'lm_head.weight'");

  /* neither name: missing, reported under the first name */
  const mlcrt_tensor_desc only_ln[1] = {t[1]};
  st_save_ok("none.safetensors", only_ln, 1, a);
  assert_int_equal(st_load("none.safetensors", t, 3, b, err), MLCRT_ESHAPE);
  assert_contains(err, "tensor 'wte.weight' is missing");
}

static void test_st_names(void **state) {
  (void)state;
  /* Names with JSON-escaped characters survive the round trip, and a file
   * spelling a name with \u escapes matches the UTF-8 descriptor name. */
  const mlcrt_tensor_desc d[2] = {
      {"we\"ird\\name\x01", MLCRT_F32, 1, {1}, 0, MLCRT_INIT_ZEROS, 0, 0},
      {"caf\xc3\xa9", MLCRT_F32, 1, {1}, 64, MLCRT_INIT_ZEROS, 0, 0},
  };
  float a[32] = {1.5f}, b[32] = {0};
  a[16] = 2.5f;
  char err[MLCRT_ERRLEN];
  st_save_ok("n.safetensors", d, 2, a);
  assert_int_equal(st_load("n.safetensors", d, 2, b, err), MLCRT_OK);
  assert_true(b[0] == 1.5f && b[16] == 2.5f);
  write_st_raw(
      "n2.safetensors",
      "{\"caf\\u00e9\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
      "\"we\\\"ird\\\\name\\u0001\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
      8);
  assert_int_equal(st_load("n2.safetensors", d, 2, b, err), MLCRT_OK);
  /* hostile bytes in a name are escaped in messages */
  write_st_raw("n3.safetensors",
               "{\"\\u001b[31mred\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4);
  assert_int_equal(st_load("n3.safetensors", d, 0, b, err), MLCRT_ESHAPE);
  assert_contains(err, "unexpected tensor '\\x1b[31mred'");
  /* invalid descriptors */
  mlcrt_tensor_desc bad = d[0];
  bad.shape[0] = -1;
  assert_int_equal(mlcrt_save_safetensors(tpath("x.safetensors"), &bad, 1, a, err), MLCRT_EINVAL);
  assert_int_equal(mlcrt_load_safetensors(tpath("n.safetensors"), &bad, 1, b, err), MLCRT_EINVAL);
  const mlcrt_tensor_desc dup[2] = {d[0], {d[0].name, MLCRT_F32, 1, {1}, 64, 0, 0, 0}};
  assert_int_equal(mlcrt_save_safetensors(tpath("x.safetensors"), dup, 2, a, err), MLCRT_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_npy_roundtrip),
      cmocka_unit_test(test_npy_rejects),
      cmocka_unit_test(test_npy_v2_and_truncation),
      cmocka_unit_test(test_st_roundtrip),
      cmocka_unit_test(test_st_mismatch),
      cmocka_unit_test(test_st_malformed),
      cmocka_unit_test(test_st_truncation_and_fuzz),
      cmocka_unit_test(test_st_tied),
      cmocka_unit_test(test_st_names),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
