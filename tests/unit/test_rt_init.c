/* test_rt_init.c — unit tests of the seeded initialisers and the arena
 * planner.  Initialisers: reproducibility (same seed, same bits; different
 * seed, different values; values depend only on seed, tensor index and
 * element index), the Philox4x32-10 known-answer vector, the bounds and
 * spread of kaiming/xavier/uniform, the moments of normal, every dtype, tied
 * names.  Planner: hand-checked cases and a 1000-case random property test
 * (aligned offsets, no two simultaneously live items share a byte, sizes fit
 * in the total, deterministic). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "mlcrt.h"

static mlcrt_tensor_desc mk(const char *name, mlcrt_dtype t, int rank, const int64_t *shape,
                            size_t offset, int init, double a, double b) {
  mlcrt_tensor_desc d;
  memset(&d, 0, sizeof d);
  d.name = name;
  d.dtype = t;
  d.rank = rank;
  for (int i = 0; i < rank; i++) d.shape[i] = shape[i];
  d.offset = offset;
  d.init = init;
  d.init_a = a;
  d.init_b = b;
  return d;
}

static void test_init_reproducible(void **state) {
  (void)state;
  const int64_t s1[] = {64, 3, 5, 5}, s2[] = {1000};
  mlcrt_tensor_desc d[2] = {
      mk("conv.weight", MLCRT_F32, 4, s1, 0, MLCRT_INIT_KAIMING_UNIFORM, 0, 0),
      mk("x", MLCRT_F32, 1, s2, 64 * 75 * 4, MLCRT_INIT_NORMAL, 0, 1),
  };
  const size_t bytes = (64 * 75 + 1000) * 4;
  float *a = malloc(bytes), *b = malloc(bytes), *c = malloc(bytes);
  memset(a, 0xAB, bytes);
  memset(b, 0xCD, bytes);
  assert_int_equal(mlcrt_init_tensors(d, 2, a, 1234), MLCRT_OK);
  assert_int_equal(mlcrt_init_tensors(d, 2, b, 1234), MLCRT_OK);
  assert_memory_equal(a, b, bytes);
  assert_int_equal(mlcrt_init_tensors(d, 2, c, 1235), MLCRT_OK);
  int same = 0;
  for (size_t i = 0; i < bytes / 4; i++) same += a[i] == c[i];
  assert_true(same < 5); /* a different seed changes (nearly) every value */
  /* 64-bit seeds use both halves */
  assert_int_equal(mlcrt_init_tensors(d, 2, c, 1234 + (1ULL << 32)), MLCRT_OK);
  same = 0;
  for (size_t i = 0; i < bytes / 4; i++) same += a[i] == c[i];
  assert_true(same < 5);

  /* Values depend on (seed, tensor index, element): the second tensor alone,
   * put at index 1 of another table, gets the same values... */
  mlcrt_tensor_desc d2[2] = {mk("other", MLCRT_F32, 1, s2, 0, MLCRT_INIT_ZEROS, 0, 0), d[1]};
  d2[1].offset = 4000;
  float *e = calloc(2000, 4);
  assert_int_equal(mlcrt_init_tensors(d2, 2, e, 1234), MLCRT_OK);
  assert_memory_equal(e + 1000, a + 64 * 75, 1000 * 4);
  /* ...and at another index, different ones. */
  mlcrt_tensor_desc d3[1] = {d[1]};
  d3[0].offset = 0;
  assert_int_equal(mlcrt_init_tensors(d3, 1, e, 1234), MLCRT_OK);
  assert_memory_not_equal(e, a + 64 * 75, 1000 * 4);
  free(a);
  free(b);
  free(c);
  free(e);
}

static void test_init_known_answer(void **state) {
  (void)state;
  /* seed 0, tensor 0, elements 0..3 = the 4 words of Philox4x32-10 at
   * counter 0, key 0, which Random123's known-answer test gives as
   * 6627e8d5 e169c58d bc57ac4c 9b00dbd8; uniform(0, 1) keeps their top 24
   * bits.  Pins the generator: same seed, same weights, on every machine. */
  const int64_t s[] = {4};
  mlcrt_tensor_desc d = mk("u", MLCRT_F32, 1, s, 0, MLCRT_INIT_UNIFORM, 0, 1);
  float v[4];
  assert_int_equal(mlcrt_init_tensors(&d, 1, v, 0), MLCRT_OK);
  assert_true(v[0] == (float)0x6627e8 / 16777216.0f);
  assert_true(v[1] == (float)0xe169c5 / 16777216.0f);
  assert_true(v[2] == (float)0xbc57ac / 16777216.0f);
  assert_true(v[3] == (float)0x9b00db / 16777216.0f);
}

static void check_uniform_spread(const float *v, size_t n, double lo, double hi) {
  double mn = INFINITY, mx = -INFINITY, sum = 0, sq = 0;
  int bins[10] = {0};
  for (size_t i = 0; i < n; i++) {
    assert_true(v[i] >= lo && v[i] <= hi);
    mn = fmin(mn, v[i]);
    mx = fmax(mx, v[i]);
    sum += v[i];
    sq += (double)v[i] * v[i];
    int b = (int)((v[i] - lo) / (hi - lo) * 10);
    bins[b > 9 ? 9 : b]++;
  }
  /* Moments and a 10-bin histogram within 5 standard errors of a uniform
   * distribution's (deterministic data, so no flakiness either way). */
  const double w = hi - lo, mean = sum / (double)n, var = w * w / 12, rn = sqrt((double)n);
  assert_true(mn < lo + 10 * w / (double)n && mx > hi - 10 * w / (double)n); /* both ends */
  assert_true(fabs(mean - (lo + hi) / 2) < 5 * sqrt(var) / rn);
  assert_true(fabs(sq / (double)n - mean * mean - var) < 5 * sqrt(0.8) * var / rn);
  for (int b = 0; b < 10; b++)
    assert_true(fabs(bins[b] - (double)n / 10) < 5 * sqrt(0.09 * (double)n));
}

static void test_init_bounds(void **state) {
  (void)state;
  const int64_t conv[] = {64, 3, 5, 5}, lin[] = {256, 784}, vec[] = {500}, xav[] = {30, 50, 3};
  const size_t n1 = 64 * 75, n2 = 256 * 784, n3 = 500, n4 = 30 * 150;
  mlcrt_tensor_desc d[5] = {
      mk("c", MLCRT_F32, 4, conv, 0, MLCRT_INIT_KAIMING_UNIFORM, 0, 0),
      mk("l", MLCRT_F32, 2, lin, n1 * 4, MLCRT_INIT_KAIMING_UNIFORM, 0, 0),
      mk("v", MLCRT_F32, 1, vec, (n1 + n2) * 4, MLCRT_INIT_KAIMING_UNIFORM, 0, 0),
      mk("x", MLCRT_F32, 3, xav, (n1 + n2 + n3) * 4, MLCRT_INIT_XAVIER_UNIFORM, 0, 0),
      mk("u", MLCRT_F32, 1, vec, (n1 + n2 + n3 + n4) * 4, MLCRT_INIT_UNIFORM, -3, 5),
  };
  float *w = malloc((n1 + n2 + n3 + n4 + n3) * 4);
  assert_int_equal(mlcrt_init_tensors(d, 5, w, 7), MLCRT_OK);
  double b1 = 1 / sqrt(75.0), b2 = 1 / sqrt(784.0), b3 = 1 / sqrt(500.0);
  double b4 = sqrt(6.0 / (50 * 3 + 30 * 3));
  check_uniform_spread(w, n1, -b1, b1);
  check_uniform_spread(w + n1, n2, -b2, b2);
  check_uniform_spread(w + n1 + n2, n3, -b3, b3);
  check_uniform_spread(w + n1 + n2 + n3, n4, -b4, b4);
  check_uniform_spread(w + n1 + n2 + n3 + n4, n3, -3, 5);
  free(w);
}

static void test_init_normal(void **state) {
  (void)state;
  const int64_t s[] = {20001}; /* odd: the last Box-Muller pair is half used */
  mlcrt_tensor_desc d = mk("n", MLCRT_F32, 1, s, 0, MLCRT_INIT_NORMAL, 2.0, 0.5);
  float *v = malloc(20001 * 4);
  assert_int_equal(mlcrt_init_tensors(&d, 1, v, 3), MLCRT_OK);
  double sum = 0, sq = 0;
  int within1 = 0, within2 = 0;
  for (int i = 0; i < 20001; i++) {
    assert_true(isfinite(v[i]));
    sum += v[i];
    sq += (double)v[i] * v[i];
    within1 += fabs(v[i] - 2.0) < 0.5;
    within2 += fabs(v[i] - 2.0) < 1.0;
  }
  double mean = sum / 20001, var = sq / 20001 - mean * mean;
  assert_true(fabs(mean - 2.0) < 0.02);
  assert_true(fabs(sqrt(var) - 0.5) < 0.02);
  assert_true(fabs(within1 / 20001.0 - 0.6827) < 0.02); /* Gaussian, not uniform */
  assert_true(fabs(within2 / 20001.0 - 0.9545) < 0.01);
  free(v);
}

static void test_init_dtypes(void **state) {
  (void)state;
  const int64_t s[] = {300};
  /* The same normal draws land in every dtype, converted (integers rounded
   * toward zero). */
  mlcrt_tensor_desc f = mk("f", MLCRT_F32, 1, s, 0, MLCRT_INIT_NORMAL, 0, 50);
  float ref[300];
  assert_int_equal(mlcrt_init_tensors(&f, 1, ref, 11), MLCRT_OK);
  unsigned char buf[300 * 8];
  for (int t = 0; t < MLCRT_NDTYPES; t++) {
    mlcrt_tensor_desc d = f;
    d.dtype = (mlcrt_dtype)t;
    memset(buf, 0x5A, sizeof buf);
    assert_int_equal(mlcrt_init_tensors(&d, 1, buf, 11), MLCRT_OK);
    for (int i = 0; i < 300; i++) {
      const float r = ref[i];
      switch (t) {
      case MLCRT_F32:
        assert_true(((float *)buf)[i] == r);
        break;
      case MLCRT_F16:
        assert_int_equal(((uint16_t *)buf)[i], mlcrt_f32_to_f16(r));
        break;
      case MLCRT_BF16:
        assert_int_equal(((uint16_t *)buf)[i], mlcrt_f32_to_bf16(r));
        break;
      case MLCRT_I32: {
        int32_t v = ((int32_t *)buf)[i];
        assert_true(fabs((double)v) <= fabs(r) + 1e-3 && fabs((double)v - r) < 1.0 + 1e-3);
        break;
      }
      case MLCRT_I64: {
        int64_t v = ((int64_t *)buf)[i];
        assert_true(fabs((double)v) <= fabs(r) + 1e-3 && fabs((double)v - r) < 1.0 + 1e-3);
        break;
      }
      case MLCRT_U8: { /* saturates at 0 for negative draws */
        uint8_t v = buf[i];
        if (r <= 0)
          assert_int_equal(v, 0);
        else
          assert_true(v <= r + 1e-3 && r - v < 1.0 + 1e-3);
        break;
      }
      case MLCRT_BOOL:
        assert_int_equal(buf[i], fabsf(r) >= 1.0f ? 1 : buf[i]);
        break;
      }
    }
    for (int i = 0; i < 300 && t == MLCRT_BOOL; i++) assert_true(buf[i] <= 1);
    /* zeros and ones in every dtype */
    d.init = MLCRT_INIT_ONES;
    assert_int_equal(mlcrt_init_tensors(&d, 1, buf, 0), MLCRT_OK);
    for (int i = 0; i < 300; i++) {
      double v = 0;
      switch (t) {
      case MLCRT_F32:
        v = ((float *)buf)[i];
        break;
      case MLCRT_F16:
        v = mlcrt_f16_to_f32(((uint16_t *)buf)[i]);
        break;
      case MLCRT_BF16:
        v = mlcrt_bf16_to_f32(((uint16_t *)buf)[i]);
        break;
      case MLCRT_I32:
        v = ((int32_t *)buf)[i];
        break;
      case MLCRT_I64:
        v = (double)((int64_t *)buf)[i];
        break;
      default:
        v = buf[i];
        break;
      }
      assert_true(v == 1.0);
    }
    d.init = MLCRT_INIT_ZEROS;
    assert_int_equal(mlcrt_init_tensors(&d, 1, buf, 0), MLCRT_OK);
    for (size_t i = 0; i < 300 * mlcrt_dtype_size((mlcrt_dtype)t); i++) assert_int_equal(buf[i], 0);
  }
  /* scalar, empty */
  const int64_t z[] = {0, 5};
  mlcrt_tensor_desc sc[2] = {mk("s", MLCRT_F32, 0, NULL, 0, MLCRT_INIT_ONES, 0, 0),
                             mk("e", MLCRT_F32, 2, z, 64, MLCRT_INIT_KAIMING_UNIFORM, 0, 0)};
  float one[2] = {0, 0};
  assert_int_equal(mlcrt_init_tensors(sc, 2, one, 0), MLCRT_OK);
  assert_true(one[0] == 1.0f && one[1] == 0.0f);
}

static void test_init_tied_and_invalid(void **state) {
  (void)state;
  const int64_t s[] = {8, 4};
  mlcrt_tensor_desc d[2] = {mk("wte", MLCRT_F32, 2, s, 0, MLCRT_INIT_NORMAL, 0, 1),
                            mk("lm_head", MLCRT_F32, 2, s, 0, MLCRT_INIT_ZEROS, 0, 0)};
  float v[32], w[32];
  assert_int_equal(mlcrt_init_tensors(d, 2, v, 5), MLCRT_OK);
  assert_int_equal(mlcrt_init_tensors(d, 1, w, 5), MLCRT_OK);
  assert_memory_equal(v, w, sizeof v); /* the tied name did not overwrite */
  mlcrt_set_last_error(NULL);
  d[1].init = 99;
  d[1].offset = 256;
  assert_int_equal(mlcrt_init_tensors(d, 2, v, 5), MLCRT_EINVAL);
  assert_non_null(strstr(mlcrt_last_error(), "lm_head"));
  d[1].init = MLCRT_INIT_ZEROS;
  d[1].shape[0] = -1;
  assert_int_equal(mlcrt_init_tensors(d, 2, v, 5), MLCRT_EINVAL);
}

/* ---- plan --------------------------------------------------------------------- */

static void test_plan_cases(void **state) {
  (void)state;
  /* Disjoint lifetimes share memory. */
  mlcrt_plan_item a[3] = {{100, 0, 1, 7}, {50, 1, 2, 7}, {100, 2, 3, 7}};
  assert_int_equal(mlcrt_plan(a, 3, 1), 150);
  assert_int_equal(a[0].offset, 0);
  assert_int_equal(a[2].offset, 0);
  assert_int_equal(a[1].offset, 100);
  /* Alignment rounds offsets and the total. */
  mlcrt_plan_item b[3] = {{100, 0, 1, 7}, {50, 1, 2, 7}, {100, 2, 3, 7}};
  assert_int_equal(mlcrt_plan(b, 3, 64), 192);
  assert_int_equal(b[1].offset, 128);
  /* Best fit: a small item fills the lowest hole that fits. */
  mlcrt_plan_item c[4] = {
      {64, 0, 9, 1}, /* A: [0, 64)      live all along */
      {64, 0, 1, 1}, /* B: [64, 128)    dies early */
      {64, 0, 9, 1}, /* C: [128, 192)   live all along */
      {32, 5, 6, 1}, /* D: fits in B's old place */
  };
  assert_int_equal(mlcrt_plan(c, 4, 32), 192);
  assert_int_equal(c[0].offset, 0);
  assert_int_equal(c[1].offset, 64);
  assert_int_equal(c[2].offset, 128);
  assert_int_equal(c[3].offset, 64);
  /* Size 0 items sit at 0; no items -> 0 bytes. */
  mlcrt_plan_item z[2] = {{0, 0, 5, 9}, {10, 0, 5, 9}};
  assert_int_equal(mlcrt_plan(z, 2, 8), 16);
  assert_int_equal(z[0].offset, 0);
  assert_int_equal(z[1].offset, 0);
  assert_int_equal(mlcrt_plan(z, 0, 8), 0);
  /* Equal sizes: lower index placed first (lower offset). */
  mlcrt_plan_item e[3] = {{8, 0, 1, 0}, {8, 0, 1, 0}, {8, 0, 1, 0}};
  assert_int_equal(mlcrt_plan(e, 3, 8), 24);
  assert_int_equal(e[0].offset, 0);
  assert_int_equal(e[1].offset, 8);
  assert_int_equal(e[2].offset, 16);
}

static uint64_t rs = 88172645463325252ULL;
static uint64_t xr(void) { /* xorshift64 */
  rs ^= rs << 13;
  rs ^= rs >> 7;
  rs ^= rs << 17;
  return rs;
}

/* mlcrt_alloc: 64-byte aligned, usable to the rounded-up size, and NULL
 * (not a later kill) beyond the machine's physical memory. */
static void test_alloc(void **state) {
  (void)state;
  for (size_t n = 0; n < 200; n += 37) {
    unsigned char *p = mlcrt_alloc(n);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 64, 0);
    memset(p, 0xab, n ? (n + 63) / 64 * 64 : 64);
    free(p);
  }
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  assert_true(pages > 0 && page > 0);
  assert_null(mlcrt_alloc((size_t)pages * (size_t)page)); /* all of it: never */
  assert_null(mlcrt_alloc((size_t)1 << 62));              /* 4 EiB */
  assert_null(mlcrt_alloc(SIZE_MAX));
}

static void test_plan_random(void **state) {
  (void)state;
  enum { MAXN = 60 };
  mlcrt_plan_item it[MAXN], again[MAXN];
  for (int t = 0; t < 1000; t++) {
    const int n = 1 + (int)(xr() % MAXN);
    const size_t aligns[] = {1, 4, 8, 64, 256};
    const size_t align = aligns[xr() % 5];
    const int steps = 1 + (int)(xr() % 40);
    size_t sum = 0;
    for (int i = 0; i < n; i++) {
      it[i].size = xr() % 7 == 0 ? 0 : (size_t)(xr() % (t % 3 == 0 ? 64 : 5000));
      if (t % 5 == 0) it[i].size = 128; /* many ties */
      int f = (int)(xr() % (uint64_t)steps), l = f + (int)(xr() % (uint64_t)(steps - f));
      it[i].first = f;
      it[i].last = l;
      it[i].offset = 12345;
      sum += (it[i].size + align - 1) / align * align;
    }
    memcpy(again, it, sizeof it);
    const size_t total = mlcrt_plan(it, n, align);
    assert_int_equal(total % align, 0);
    assert_true(total <= sum);
    /* lower bound: the bytes live at any one step */
    for (int s = 0; s < steps; s++) {
      size_t live = 0;
      for (int i = 0; i < n; i++)
        if (it[i].first <= s && s <= it[i].last) live += it[i].size;
      assert_true(total >= live);
    }
    for (int i = 0; i < n; i++) {
      assert_int_equal(it[i].offset % align, 0);
      assert_true(it[i].offset + it[i].size <= total);
      if (it[i].size == 0) assert_int_equal(it[i].offset, 0);
      for (int j = i + 1; j < n; j++) {
        if (!it[i].size || !it[j].size) continue;
        if (it[i].first > it[j].last || it[j].first > it[i].last) continue;
        int disjoint =
            it[i].offset + it[i].size <= it[j].offset || it[j].offset + it[j].size <= it[i].offset;
        if (!disjoint)
          fail_msg("case %d: items %d [%zu,+%zu) and %d [%zu,+%zu) overlap while both live", t, i,
                   it[i].offset, it[i].size, j, it[j].offset, it[j].size);
      }
    }
    /* deterministic */
    assert_int_equal(mlcrt_plan(again, n, align), total);
    for (int i = 0; i < n; i++) assert_int_equal(again[i].offset, it[i].offset);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_init_reproducible),
      cmocka_unit_test(test_init_known_answer),
      cmocka_unit_test(test_init_bounds),
      cmocka_unit_test(test_init_normal),
      cmocka_unit_test(test_init_dtypes),
      cmocka_unit_test(test_init_tied_and_invalid),
      cmocka_unit_test(test_plan_cases),
      cmocka_unit_test(test_plan_random),
      cmocka_unit_test(test_alloc),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
