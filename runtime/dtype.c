/* dtype.c — dtype sizes and names, and the half-precision conversions.
 *
 * f32 -> f16 / bf16 round to nearest, ties to even, exactly as PyTorch and
 * NumPy do, including overflow to infinity, subnormal results and NaN (which
 * stays a quiet NaN of the same sign for f16; bf16 NaN becomes 0x7FC0 as in
 * PyTorch's c10::BFloat16).  f16 / bf16 -> f32 is exact.  The conversions work
 * on bit patterns only, so they do not depend on the FPU rounding mode.
 */
#include "mlcrt.h"

#include <string.h>

size_t mlcrt_dtype_size(mlcrt_dtype t) {
  switch (t) {
  case MLCRT_F32:
    return 4;
  case MLCRT_F16:
    return 2;
  case MLCRT_BF16:
    return 2;
  case MLCRT_I32:
    return 4;
  case MLCRT_I64:
    return 8;
  case MLCRT_U8:
    return 1;
  case MLCRT_BOOL:
    return 1;
  }
  return 0;
}

const char *mlcrt_dtype_name(mlcrt_dtype t) {
  switch (t) {
  case MLCRT_F32:
    return "f32";
  case MLCRT_F16:
    return "f16";
  case MLCRT_BF16:
    return "bf16";
  case MLCRT_I32:
    return "i32";
  case MLCRT_I64:
    return "i64";
  case MLCRT_U8:
    return "u8";
  case MLCRT_BOOL:
    return "bool";
  }
  return "?";
}

static uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

static float bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* x >> s (1 <= s <= 31) rounded to nearest, ties to even. */
static uint32_t shift_rne(uint32_t x, unsigned s) {
  uint32_t q = x >> s;
  uint32_t rem = x & ((1u << s) - 1);
  uint32_t half = 1u << (s - 1);
  if (rem > half || (rem == half && (q & 1))) q++;
  return q;
}

uint16_t mlcrt_f32_to_f16(float f) {
  uint32_t x = f32_bits(f);
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
  uint32_t a = x & 0x7fffffff;
  if (a > 0x7f800000) /* NaN: quiet NaN, keeping the top payload bits */
    return (uint16_t)(sign | 0x7e00 | ((a >> 13) & 0x3ff));
  if (a >= 0x38800000) { /* |f| >= 2^-14: a normal f16, or overflow to inf */
    /* Rebias the exponent (127 -> 15) and round away 13 mantissa bits.  A
     * carry out of the mantissa correctly bumps the exponent; anything at or
     * above 65520 ends up as 0x7c00 (inf), which we clamp to for larger a. */
    if (a >= 0x477ff000) return (uint16_t)(sign | 0x7c00);
    return (uint16_t)(sign | shift_rne(a - 0x38000000, 13));
  }
  /* Subnormal f16 (or zero): value = m * 2^(e-150) with the implicit bit; in
   * units of the f16 subnormal step 2^-24 that is m >> (126 - e). */
  if (a <= 0x33000000) return sign; /* <= 2^-25 rounds (ties to even) to 0 */
  uint32_t e = a >> 23;
  uint32_t m = (a & 0x7fffff) | 0x800000;
  return (uint16_t)(sign | shift_rne(m, 126 - e));
}

float mlcrt_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t e = (h >> 10) & 0x1f;
  uint32_t m = h & 0x3ff;
  if (e == 0x1f) return bits_f32(sign | 0x7f800000 | (m << 13)); /* inf / NaN */
  if (e != 0) return bits_f32(sign | ((e + 112) << 23) | (m << 13));
  if (m == 0) return bits_f32(sign);
  /* Subnormal: normalise the mantissa. */
  e = 113;
  while (!(m & 0x400)) {
    m <<= 1;
    e--;
  }
  return bits_f32(sign | (e << 23) | ((m & 0x3ff) << 13));
}

uint16_t mlcrt_f32_to_bf16(float f) {
  uint32_t x = f32_bits(f);
  if ((x & 0x7fffffff) > 0x7f800000) return 0x7fc0; /* NaN, as c10::BFloat16 */
  /* Round to nearest even on the low 16 bits; overflow carries into inf. */
  return (uint16_t)((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

float mlcrt_bf16_to_f32(uint16_t h) {
  return bits_f32((uint32_t)h << 16);
}
