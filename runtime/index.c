/* index.c — indexing kernels for any dtype (index_select, embedding) and the
 * integer power of pow().
 *
 * index_select copies rows of `inner` elements: for each of `outer` blocks,
 * row index[j] of the n rows of x goes to row j of y.  An index outside 0..n-1
 * is reported, never read: the caller turns it into an error status that
 * names the operator and the valid range.  Indices are i32 or i64.
 */
#include "mlcrt.h"

#include <string.h>

int mlcrt_index_select(const void *x, size_t elem, int64_t outer, int64_t n, int64_t inner, const void *index,
                       int index_i64, int64_t nindex, void *y, int64_t *bad) {
  const int64_t *i64 = index;
  const int32_t *i32 = index;
  for (int64_t j = 0; j < nindex; j++) { /* check everything first: no partial output */
    int64_t k = index_i64 ? i64[j] : i32[j];
    if (k < 0 || k >= n) {
      *bad = k;
      return 1;
    }
  }
  const size_t row = (size_t)inner * elem;
  const unsigned char *xs = x;
  unsigned char *ys = y;
  for (int64_t o = 0; o < outer; o++)
    for (int64_t j = 0; j < nindex; j++) {
      int64_t k = index_i64 ? i64[j] : i32[j];
      memcpy(ys + ((size_t)o * (size_t)nindex + (size_t)j) * row, xs + ((size_t)o * (size_t)n + (size_t)k) * row, row);
    }
  return 0;
}

/* The gradient of index_select: dx = 0, then dx[o, index[j], :] += dy[o, j, :]
 * (a repeated index sums its rows; indices were checked by the forward). */
void mlcrt_index_select_dx_f32(const float *dy, int64_t outer, int64_t n, int64_t inner, const void *index,
                               int index_i64, int64_t nindex, float *dx) {
  const int64_t *i64 = index;
  const int32_t *i32 = index;
  memset(dx, 0, sizeof(float) * (size_t)(outer * n * inner));
  for (int64_t o = 0; o < outer; o++)
    for (int64_t j = 0; j < nindex; j++) {
      int64_t k = index_i64 ? i64[j] : i32[j];
      if (k < 0 || k >= n) continue;
      float *d = dx + (o * n + k) * inner;
      const float *s = dy + (o * nindex + j) * inner;
      for (int64_t t = 0; t < inner; t++) d[t] += s[t];
    }
}

int64_t mlcrt_ipow(int64_t base, int64_t exp) {
  if (exp < 0) { /* PyTorch's integer pow: only 1 and -1 survive */
    if (base == 1) return 1;
    if (base == -1) return exp % 2 == 0 ? 1 : -1;
    return 0;
  }
  uint64_t r = 1, b = (uint64_t)base; /* unsigned: overflow wraps, as in PyTorch */
  for (uint64_t e = (uint64_t)exp; e; e >>= 1) {
    if (e & 1) r *= b;
    b *= b;
  }
  return (int64_t)r;
}
