/* init.c — the spec's seeded initialisers (zeros, ones, normal, uniform,
 * kaiming_uniform, xavier_uniform).
 *
 * Random numbers come from Philox4x32-10 (Salmon et al., "Parallel random
 * numbers: as easy as 1, 2, 3", SC'11), a counter-based generator: the
 * 128-bit output block is a pure function of the 64-bit key (the seed) and a
 * 128-bit counter, here (block index lo, block index hi, tensor index, 0).
 * Element k of tensor t therefore depends only on (seed, t, k): not on the
 * order tensors are filled in, on threads or on the machine.  Values are
 * computed in double from integer bits and rounded once to the tensor's dtype,
 * so every IEEE machine gives the same weights (normal draws go through libm's
 * log/cos/sin; glibc and the other common libms agree on these to well under
 * float precision).
 *
 *   uniform(lo, hi): lo + (hi - lo) * u, u = (32-bit word >> 8) * 2^-24, in [0, 1);
 *                    element k uses word k % 4 of block k / 4.
 *   normal(m, s):    Box-Muller on two 53-bit uniforms from block k / 2; even
 *                    elements take r cos(theta), odd ones r sin(theta).
 *   kaiming_uniform: PyTorch's default for Linear/Conv weights,
 *                    kaiming_uniform_(a=sqrt(5)) = uniform(-1/sqrt(fan_in), +).
 *   xavier_uniform:  uniform(-b, b), b = sqrt(6 / (fan_in + fan_out)).
 * The distributions match PyTorch's; the actual draws of course do not (a run
 * that must match PyTorch starts from --weights).
 */
#include "rt_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- Philox4x32-10 ---------------------------------------------------------- */

static void philox(uint32_t ctr[4], uint32_t k0, uint32_t k1) {
  for (int r = 0; r < 10; r++) {
    uint64_t p0 = (uint64_t)0xD2511F53u * ctr[0];
    uint64_t p1 = (uint64_t)0xCD9E8D57u * ctr[2];
    uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    uint32_t n0 = hi1 ^ ctr[1] ^ k0, n2 = hi0 ^ ctr[3] ^ k1;
    ctr[0] = n0;
    ctr[1] = lo1;
    ctr[2] = n2;
    ctr[3] = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
}

static void block(uint64_t seed, uint32_t tensor, uint64_t idx, uint32_t out[4]) {
  out[0] = (uint32_t)idx;
  out[1] = (uint32_t)(idx >> 32);
  out[2] = tensor;
  out[3] = 0;
  philox(out, (uint32_t)seed, (uint32_t)(seed >> 32));
}

/* ---- storing a double into any dtype ------------------------------------------- */

/* Integer dtypes: round toward zero, saturating (and NaN -> 0), so that no
 * float-to-int conversion is undefined. */
static int64_t to_int(double v, double lo, double hi) {
  if (v != v) return 0;
  v = trunc(v);
  if (v < lo) v = lo;
  if (v > hi) v = hi;
  return (int64_t)v;
}

static void store(void *base, mlcrt_dtype t, int64_t k, double v) {
  switch (t) {
  case MLCRT_F32:
    ((float *)base)[k] = (float)v;
    break;
  case MLCRT_F16:
    ((uint16_t *)base)[k] = mlcrt_f32_to_f16((float)v);
    break;
  case MLCRT_BF16:
    ((uint16_t *)base)[k] = mlcrt_f32_to_bf16((float)v);
    break;
  case MLCRT_I32:
    ((int32_t *)base)[k] = (int32_t)to_int(v, -2147483648.0, 2147483647.0);
    break;
  /* 2^63 is not an int64: clamp just below it */
  case MLCRT_I64:
    ((int64_t *)base)[k] = to_int(v, -9223372036854775808.0, 9223372036854774784.0);
    break;
  case MLCRT_U8:
    ((uint8_t *)base)[k] = (uint8_t)to_int(v, 0, 255);
    break;
  case MLCRT_BOOL:
    ((uint8_t *)base)[k] = to_int(v, -1, 1) != 0;
    break;
  }
}

/* ---- fans ----------------------------------------------------------------------- */

/* PyTorch's _calculate_fan_in_and_fan_out, extended to rank 0/1 (where PyTorch
 * raises): fan_in = fan_out = numel. */
static void fans(const mlcrt_tensor_desc *d, double *fan_in, double *fan_out) {
  if (d->rank < 2) {
    double n = d->rank == 1 ? (double)d->shape[0] : 1.0;
    *fan_in = *fan_out = n;
    return;
  }
  double rf = 1;
  for (int k = 2; k < d->rank; k++) rf *= (double)d->shape[k];
  *fan_in = (double)d->shape[1] * rf;
  *fan_out = (double)d->shape[0] * rf;
}

/* ---- the initialisers ------------------------------------------------------------- */

static void fill_uniform(void *p, mlcrt_dtype t, int64_t n, uint64_t seed, uint32_t ti, double lo,
                         double hi) {
  uint32_t w[4];
  for (int64_t k = 0; k < n; k++) {
    if ((k & 3) == 0) block(seed, ti, (uint64_t)k >> 2, w);
    double u = (double)(w[k & 3] >> 8) * (1.0 / 16777216.0);
    store(p, t, k, lo + (hi - lo) * u);
  }
}

static void fill_normal(void *p, mlcrt_dtype t, int64_t n, uint64_t seed, uint32_t ti, double mean,
                        double std) {
  const double two_pi = 6.283185307179586476925286766559;
  for (int64_t k = 0; k < n; k += 2) {
    uint32_t w[4];
    block(seed, ti, (uint64_t)k >> 1, w);
    uint64_t a = ((uint64_t)w[0] << 32 | w[1]) >> 11, b = ((uint64_t)w[2] << 32 | w[3]) >> 11;
    double u1 = ((double)a + 1.0) * (1.0 / 9007199254740992.0); /* (0, 1]: log is finite */
    double u2 = (double)b * (1.0 / 9007199254740992.0);         /* [0, 1) */
    double r = sqrt(-2.0 * log(u1));
    store(p, t, k, mean + std * r * cos(two_pi * u2));
    if (k + 1 < n) store(p, t, k + 1, mean + std * r * sin(two_pi * u2));
  }
}

int mlcrt_init_tensors(const mlcrt_tensor_desc *desc, int n, void *base, uint64_t seed) {
  if (n < 0 || (n > 0 && (!desc || !base))) {
    mlcrt_set_last_error("mlcrt_init_tensors: invalid arguments");
    return MLCRT_EINVAL;
  }
  for (int i = 0; i < n; i++) {
    const mlcrt_tensor_desc *d = &desc[i];
    if ((unsigned)d->dtype >= MLCRT_NDTYPES || d->rank < 0 || d->rank > MLCRT_MAX_RANK ||
        mlcrt__numel(d->shape, d->rank, mlcrt_dtype_size(d->dtype)) < 0 ||
        d->init < MLCRT_INIT_ZEROS || d->init > MLCRT_INIT_XAVIER_UNIFORM) {
      char q[96];
      return mlcrt_seterr(NULL, MLCRT_EINVAL, "mlcrt_init_tensors: descriptor %d ('%s') is invalid",
                          i, d->name ? mlcrt__quote(d->name, q, sizeof q) : "(null)");
    }
  }
  int *orig = malloc((size_t)(n ? n : 1) * sizeof *orig);
  if (!orig) {
    mlcrt_set_last_error("mlcrt_init_tensors: out of memory");
    return MLCRT_ENOMEM;
  }
  mlcrt__tie_origins(desc, n, orig);
  for (int i = 0; i < n; i++) {
    const mlcrt_tensor_desc *d = &desc[i];
    if (orig[i] != i) continue; /* a tied name: the first name's initialiser holds */
    int64_t numel = mlcrt__numel(d->shape, d->rank, 0);
    void *p = (char *)base + d->offset;
    uint32_t ti = (uint32_t)i;
    double fi, fo, bound;
    switch (d->init) {
    case MLCRT_INIT_ZEROS:
    case MLCRT_INIT_ONES:
      for (int64_t k = 0; k < numel; k++) store(p, d->dtype, k, d->init == MLCRT_INIT_ONES);
      break;
    case MLCRT_INIT_NORMAL:
      fill_normal(p, d->dtype, numel, seed, ti, d->init_a, d->init_b);
      break;
    case MLCRT_INIT_UNIFORM:
      fill_uniform(p, d->dtype, numel, seed, ti, d->init_a, d->init_b);
      break;
    case MLCRT_INIT_KAIMING_UNIFORM:
      fans(d, &fi, &fo);
      bound = fi > 0 ? 1.0 / sqrt(fi) : 0.0;
      fill_uniform(p, d->dtype, numel, seed, ti, -bound, bound);
      break;
    case MLCRT_INIT_XAVIER_UNIFORM:
      fans(d, &fi, &fo);
      bound = fi + fo > 0 ? sqrt(6.0 / (fi + fo)) : 0.0;
      fill_uniform(p, d->dtype, numel, seed, ti, -bound, bound);
      break;
    }
  }
  free(orig);
  return MLCRT_OK;
}
