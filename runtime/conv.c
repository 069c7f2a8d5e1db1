/* conv.c — 2-D convolution (NCHW), as torch.nn.functional.conv2d, and its two
 * gradients, all lowered to GEMM.
 *
 * The unfolded input ("im2col") has a row per tap and a column per output
 * position: cols[(c*KH + kh)*KW + kw][l].  Images go through in chunks of
 * nb, side by side in the columns (image i of a chunk owns columns i*L ..
 * i*L+L-1), so that one GEMM has nb*L columns: late ResNet layers have a few
 * output positions per image, and a GEMM per image would repack the whole
 * weight matrix for a handful of columns.  Then
 *   forward: Y[OCg, nb*L] = w_g[OCg, kdim] @ cols, scattered to y[n, oc, l]
 *            (+ bias).  cols is never stored (implicit GEMM): the GEMM's
 *            B panels are packed straight from the chunk's images, padded
 *            once per chunk (pack_unfolded, one copy per output-row run,
 *            compiled per ISA), or unpadded by permutes (AVX-512, short
 *            rows: pack_permute_avx512).  w_g is packed for the GEMM once
 *            per call; taps that read only padding are left out
 *            (live_taps), and a few positions that each read the whole
 *            image are a GEMM apiece over the batch (by_position);
 *   dx:      dcols = w_g^T @ dY (dy gathered to [OCg, nb*L]), folded back
 *            onto dx by col2im, the adjoint of im2col;
 *   dw:      dw_g += dY @ cols^T over the chunks, cols unfolded by im2col.
 * With one image per chunk the GEMM reads and writes the tensors in place,
 * and a 1x1 stride-1 unpadded convolution needs no unfolding at all.
 *
 * All buffers are the caller's scratch (mlcrt_conv2d_scratch bytes, planned
 * in the arena at create time).  With a team, chunks are shared out in fixed
 * slices, each member with its own buffers (and, for dw, its own partial sum,
 * added in member order afterwards): results depend on the thread count
 * only, never on timing.  A batch of one chunk runs with the threads inside
 * its GEMMs instead.
 */
#include "mlcrt.h"
#include "rt_internal.h"

#include <string.h>

static int is_pointwise(const mlcrt_conv2d_params *p) {
  return p->KH == 1 && p->KW == 1 && p->sh == 1 && p->sw == 1 && p->ph == 0 && p->pw == 0 &&
         p->OH == p->H && p->OW == p->W;
}

/* Columns per GEMM worth having: below this, packing costs more than the
 * arithmetic it feeds. */
#define MIN_COLS 256

/* Taps of the forward's kernel window that see the image for at least one
 * output position.  The others read only padding: with 3x3 padding 1 on a
 * 1x1 input (ResNet-18's last layer at CIFAR size) 8 taps of 9 multiply
 * zeros.  The forward leaves them out of the GEMM (its depth is cg times the
 * live taps, the weights compacted to match: the scratch's last floats, or
 * kept compacted across calls, mlcrt_conv2d_pack_f32).  Compacting per call
 * reads every weight, as the GEMM it shortens would at a batch of one: it
 * never costs more, and results do not depend on the batch's size through
 * it.  Kernels of more than MAX_TAPS taps keep every tap. */
enum { MAX_TAPS = 256 };

static int64_t live_taps(const mlcrt_conv2d_params *p, int16_t *taps) {
  const int64_t KK = p->KH * p->KW;
  if (KK > MAX_TAPS) return KK;
  int64_t n = 0;
  for (int64_t t = 0; t < KK; t++) {
    const int64_t kh = t / p->KW, kw = t % p->KW;
    int live_h = 0, live_w = 0;
    for (int64_t oh = 0; oh < p->OH && !live_h; oh++) {
      const int64_t ih = oh * p->sh - p->ph + kh * p->dh;
      live_h = ih >= 0 && ih < p->H;
    }
    for (int64_t ow = 0; ow < p->OW && !live_w; ow++) {
      const int64_t iw = ow * p->sw - p->pw + kw * p->dw;
      live_w = iw >= 0 && iw < p->W;
    }
    if (live_h && live_w && taps) taps[n] = (int16_t)t;
    n += live_h && live_w;
  }
  return n;
}

typedef struct {
  int64_t L, kdim, ocg, cg; /* output positions, GEMM depth, channels per group */
  int64_t ntaps;            /* the forward's live taps (live_taps) */
  size_t wc;                /* floats of its compacted weights (0: every tap live) */
  size_t ap, apg;           /* floats of its weights packed for the GEMM (0: not
                               packed by this call), one group's */
  int64_t nb, nchunks;      /* images per chunk, chunks */
  int tasks;                /* members working on separate chunks */
  size_t cols, yb, part;    /* floats of a member's buffers (0: not needed) */
  size_t xpad;              /* ... and of the padded image (forward and dw) */
} conv_shape;

static conv_shape shape_of(const mlcrt_conv2d_params *p, int op, int nthreads) {
  conv_shape s = {0};
  if (p->groups <= 0) return s;
  s.L = p->OH * p->OW;
  s.cg = p->C / p->groups;
  s.ocg = p->OC / p->groups;
  s.kdim = s.cg * p->KH * p->KW;
  s.ntaps = p->KH * p->KW;
  if (op == MLCRT_CONV_FWD && (p->ph || p->pw)) {
    s.ntaps = live_taps(p, NULL);
    if (s.ntaps == 0) s.ntaps = p->KH * p->KW; /* (no tap sees the image: y is the bias) */
    if (s.ntaps < p->KH * p->KW) {
      s.kdim = s.cg * s.ntaps;
      s.wc = (size_t)(p->OC * s.kdim) + 16;
    }
  }
  s.nb = s.L > 0 ? (MIN_COLS + s.L - 1) / s.L : 1;
  if (s.nb > p->N) s.nb = p->N;
  if (s.nb < 1) s.nb = 1;
  s.apg = mlcrt__apack_floats(s.ocg, s.kdim) + 16;
  if (op == MLCRT_CONV_FWD && !(is_pointwise(p) && s.nb == 1) &&
      mlcrt__packb_packs(s.nb * s.L, s.kdim))
    s.ap = (size_t)p->groups * s.apg; /* the weights packed for the GEMM once, not per chunk */
  s.nchunks = (p->N + s.nb - 1) / s.nb;
  if (nthreads < 1) nthreads = 1;
  s.tasks = s.nchunks < nthreads ? (int)s.nchunks : nthreads;
  if (s.tasks < 1) s.tasks = 1;
  const int pointwise = is_pointwise(p);
  /* + 16 floats (64 bytes) each: keeps every buffer aligned.  The forward
   * never unfolds: its GEMM packs panels straight from x (implicit GEMM). */
  s.cols =
      (pointwise && s.nb == 1) || op == MLCRT_CONV_FWD ? 0 : (size_t)(s.kdim * s.nb * s.L) + 16;
  s.yb = s.nb > 1 ? (size_t)(s.ocg * s.nb * s.L) + 16 : 0; /* Y or the gathered dY */
  s.part = op == MLCRT_CONV_DW && s.tasks > 1 ? (size_t)(p->OC * s.kdim) + 16 : 0;
  if (op == MLCRT_CONV_FWD && (p->ph || p->pw)) /* the chunk's images, padded */
    s.xpad = (size_t)(s.nb * s.cg * (p->H + 2 * p->ph) * (p->W + 2 * p->pw)) + 16;
  else
    s.xpad = s.cols && op != MLCRT_CONV_DX && (p->ph || p->pw)
                 ? (size_t)(s.cg * (p->H + 2 * p->ph) * (p->W + 2 * p->pw)) + 16
                 : 0;
  return s;
}

/* ---- a few output positions, each reading the whole image ------------------ */

/* A late layer at CIFAR size has an output of 2x2 or 1x1 from an input of
 * the same size or twice it, with a 3x3 window and padding 1: every output
 * position reads every input pixel once, each through a different tap, and
 * the other taps read padding (5 of 9 at 2x2).  Then output position l is
 * one GEMM over the images,
 *   Y_l[n, oc] = x[n, :] (as a [N, C*H*W] matrix) @ W_l[oc, :]^T,
 *   W_l[oc, c*H*W + pix] = w[oc, c, tap_l(pix)],
 * with no unfolding and no multiply by padding: at 2x2 this does 4/9 of the
 * implicit GEMM's multiply-adds.  by_position finds tap_l (or says the layer
 * is not of this kind); the path is taken for a batch of at least BYPOS_MIN_N
 * images (W_l is rebuilt on every call) and when it does no more
 * multiply-adds than the implicit GEMM over the live taps. */
enum { BYPOS_MAX_L = 16, BYPOS_MAX_HW = 64, BYPOS_MIN_N = 8 };

static int by_position(const mlcrt_conv2d_params *p, int16_t tap[BYPOS_MAX_L][BYPOS_MAX_HW]) {
  const int64_t L = p->OH * p->OW, HW = p->H * p->W;
  if (p->groups != 1 || L > BYPOS_MAX_L || HW > BYPOS_MAX_HW || HW > live_taps(p, NULL)) return 0;
  for (int64_t l = 0; l < L; l++) {
    const int64_t oh = l / p->OW, ow = l % p->OW;
    int64_t n = 0;
    for (int64_t t = 0; t < p->KH * p->KW; t++) {
      const int64_t ih = oh * p->sh - p->ph + t / p->KW * p->dh;
      const int64_t iw = ow * p->sw - p->pw + t % p->KW * p->dw;
      if (ih < 0 || ih >= p->H || iw < 0 || iw >= p->W) continue;
      if (ih * p->W + iw != n) return 0; /* pixels in order, each once */
      tap[l][n++] = (int16_t)t;
    }
    if (n != HW) return 0;
  }
  return 1;
}

/* floats of its scratch: the W_l, then Y_l (unless one position) */
static size_t bypos_floats(const mlcrt_conv2d_params *p) {
  const int64_t L = p->OH * p->OW;
  return (size_t)(L * p->OC * p->C * p->H * p->W) + 16 + (L > 1 ? (size_t)(p->N * p->OC) : 0);
}

static void conv_by_position(mlcrt_team *team, const mlcrt_conv2d_params *p, const float *x,
                             const float *w, const float *b, float *y, float *scratch,
                             const mlcrt_epilogue *epi, int16_t tap[BYPOS_MAX_L][BYPOS_MAX_HW]) {
  const int64_t L = p->OH * p->OW, HW = p->H * p->W, K = p->C * HW, KK = p->KH * p->KW;
  const int64_t N = p->N, OC = p->OC;
  float *wl = scratch, *yl = scratch + L * OC * K + 16;
  for (int64_t l = 0; l < L; l++)
    for (int64_t oc = 0; oc < OC; oc++)
      for (int64_t c = 0; c < p->C; c++) {
        float *d = wl + (l * OC + oc) * K + c * HW;
        const float *src = w + (oc * p->C + c) * KK;
        for (int64_t i = 0; i < HW; i++) d[i] = src[tap[l][i]];
      }
  for (int64_t l = 0; l < L; l++) {
    float *out = L == 1 ? y : yl; /* one position: y is [N, OC] already */
    if (b)
      for (int64_t n = 0; n < N; n++)
        for (int64_t oc = 0; oc < OC; oc++) out[n * OC + oc] = b[oc];
    mlcrt_sgemm_team(team, 0, 1, N, OC, K, 1.0f, x, K, wl + l * OC * K, K, b ? 1.0f : 0.0f, out,
                     OC);
    if (L > 1)
      for (int64_t r = 0; r < N * OC; r++) y[r * L + l] = yl[r];
  }
  if (epi) mlcrt_tiles(team, N * OC, L, epi->fn, epi->ctx);
}

/* The weights of the live taps only, [OC * cg, ntaps] (s->wc: some left out) */
static void compact_weights(const mlcrt_conv2d_params *p, const conv_shape *s, const float *w,
                            int16_t *taps, float *wc) {
  live_taps(p, taps);
  const int64_t KK = p->KH * p->KW, nt = s->ntaps, rows = p->OC * s->cg;
  for (int64_t r = 0; r < rows; r++)
    for (int64_t ti = 0; ti < nt; ti++) wc[r * nt + ti] = w[r * KK + taps[ti]];
}

/* floats of one slot of the scratch: columns, Y or dY, partial dw, padded image */
static size_t slot_floats(const conv_shape *s) {
  return s->cols + s->yb + s->part + s->xpad;
}

size_t mlcrt_conv2d_scratch(const mlcrt_conv2d_params *p, int op, int nthreads) {
  if (mlcrt__conv_direct_ok(p, op)) /* a tiny kernel volume: conv_direct.c */
    return (size_t)mlcrt__conv_direct_tasks(p, nthreads) * mlcrt__conv_direct_slot(p, op) *
           sizeof(float);
  const conv_shape s = shape_of(p, op, nthreads);
  size_t n = (size_t)s.tasks * slot_floats(&s) + s.wc + s.ap;
  int16_t tap[BYPOS_MAX_L][BYPOS_MAX_HW];
  if (op == MLCRT_CONV_FWD && p->N >= BYPOS_MIN_N && by_position(p, tap) && bypos_floats(p) > n)
    n = bypos_floats(p);
  return n * sizeof(float);
}

/* Unfolds one group's channels of one image: cols[((c*KH + kh)*KW + kw) * ld + oh*OW + ow]. */
/* GCC turns short copy and zero loops into memcpy/memset calls, which cost
 * more than the loop itself for rows of a few floats: keep them inline. */
#if defined(__GNUC__) && !defined(__clang__)
#define INLINE_LOOPS __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define INLINE_LOOPS
#endif

/* The image with its zero padding made real: xp[c][PH][PW] with PH = H +
 * 2*ph, PW = W + 2*pw, so that im2col copies rows without bounds checks. */
INLINE_LOOPS static void pad_image(const mlcrt_conv2d_params *p, const float *x, int64_t cg,
                                   float *xp) {
  const int64_t H = p->H, W = p->W, PW = W + 2 * p->pw, PH = H + 2 * p->ph;
  for (int64_t c = 0; c < cg; c++) {
    float *d = xp + c * PH * PW;
    for (int64_t i = 0; i < p->ph * PW; i++) d[i] = 0.0f;
    for (int64_t h = 0; h < H; h++) {
      float *r = d + (h + p->ph) * PW;
      const float *src = x + (c * H + h) * W;
      for (int64_t w = 0; w < p->pw; w++) r[w] = 0.0f;
      for (int64_t w = 0; w < W; w++) r[p->pw + w] = src[w];
      for (int64_t w = p->pw + W; w < PW; w++) r[w] = 0.0f;
    }
    for (int64_t i = (p->ph + H) * PW; i < PH * PW; i++) d[i] = 0.0f;
  }
}

/* Unfolds one group's channels of one (padded: pad_image) image:
 * cols[((c*KH + kh)*KW + kw) * ld + oh*OW + ow] = xp[c][oh*sh + kh*dh][ow*sw + kw*dw]. */
/* The gradients' row runs, per instruction set: d[0..n) = s[0..n) and
 * d[0..n) += s[0..n), n an output row (a few floats to a few dozen).  The
 * runtime builds for baseline x86-64 at -O2, where GCC leaves these loops
 * scalar. */
typedef struct row_ops row_ops;
typedef void (*col2im_fn)(const mlcrt_conv2d_params *p, const float *cols, int64_t ld, int64_t cg,
                          float *x, const row_ops *ro);
struct row_ops {
  void (*copy)(float *d, const float *s, int64_t n);
  void (*add)(float *d, const float *s, int64_t n);
  col2im_fn col2im; /* col2im below, or a faster one */
};
static void col2im(const mlcrt_conv2d_params *p, const float *cols, int64_t ld, int64_t cg,
                   float *x, const row_ops *ro);

/* d[0..n) = s[0..n): also the implicit GEMM's portable run copy (unfold_panel) */
INLINE_LOOPS static inline void copy_plain(float *d, const float *s, int64_t n) {
  for (int64_t t = 0; t < n; t++) d[t] = s[t];
}
static void add_run(float *d, const float *s, int64_t n) {
  for (int64_t t = 0; t < n; t++) d[t] += s[t];
}
static const row_ops rows_generic = {copy_plain, add_run, col2im};

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
__attribute__((target("avx512f"))) static void copy_run_avx512(float *d, const float *s,
                                                               int64_t n) {
  for (; n >= 16; n -= 16, d += 16, s += 16) _mm512_storeu_ps(d, _mm512_loadu_ps(s));
  if (n > 0) {
    const __mmask16 m = (__mmask16)((1u << n) - 1);
    _mm512_mask_storeu_ps(d, m, _mm512_maskz_loadu_ps(m, s));
  }
}
__attribute__((target("avx512f"))) static void add_run_avx512(float *d, const float *s, int64_t n) {
  for (; n >= 16; n -= 16, d += 16, s += 16)
    _mm512_storeu_ps(d, _mm512_add_ps(_mm512_loadu_ps(d), _mm512_loadu_ps(s)));
  if (n > 0) {
    const __mmask16 m = (__mmask16)((1u << n) - 1);
    _mm512_mask_storeu_ps(d, m,
                          _mm512_add_ps(_mm512_maskz_loadu_ps(m, d), _mm512_maskz_loadu_ps(m, s)));
  }
}
/* col2im with stride 1 in width, 16 floats of an input row at a time: the
 * taps' contributions summed in registers in col2im's order (kh, then kw),
 * stored once.  Adding col2im's runs straight into dx made each tap reload
 * what the last one had just stored, one float over. */
__attribute__((target("avx512f"))) static void col2im_avx512(const mlcrt_conv2d_params *p,
                                                             const float *cols, int64_t ld,
                                                             int64_t cg, float *x,
                                                             const row_ops *ro) {
  if (p->sw != 1 || p->OW >= (1 << 30)) {
    col2im(p, cols, ld, cg, x, ro);
    return;
  }
  const int64_t OH = p->OH, OW = p->OW, H = p->H, W = p->W, KH = p->KH, KW = p->KW;
  const __m512i iota = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  const __m512i zero = _mm512_setzero_si512(), owv = _mm512_set1_epi32((int32_t)OW);
  for (int64_t c = 0; c < cg; c++)
    for (int64_t ih = 0; ih < H; ih++)
      for (int64_t iw0 = 0; iw0 < W; iw0 += 16) {
        const int64_t n = W - iw0 < 16 ? W - iw0 : 16;
        __m512 acc = _mm512_setzero_ps();
        for (int64_t kh = 0; kh < KH; kh++) {
          const int64_t t = ih + p->ph - kh * p->dh;
          if (t < 0 || t % p->sh || t / p->sh >= OH) continue;
          const float *row = cols + (c * KH + kh) * KW * ld + t / p->sh * OW;
          for (int64_t kw = 0; kw < KW; kw++, row += ld) {
            const int64_t off = iw0 + p->pw - kw * p->dw; /* lane 0's output column */
            if (off >= OW || off + n <= 0) continue;
            const __m512i ow = _mm512_add_epi32(iota, _mm512_set1_epi32((int32_t)off));
            const __mmask16 m = _mm512_cmpge_epi32_mask(ow, zero) &
                                _mm512_cmplt_epi32_mask(ow, owv) & (__mmask16)((1u << n) - 1);
            acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(m, row + off));
          }
        }
        _mm512_mask_storeu_ps(x + (c * H + ih) * W + iw0, (__mmask16)((1u << n) - 1), acc);
      }
}
static const row_ops rows_avx512 = {copy_run_avx512, add_run_avx512, col2im_avx512};
#endif

static const row_ops *rows_for(int isa) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (isa == MLCRT_ISA_AVX512) return &rows_avx512;
#endif
  (void)isa;
  return &rows_generic;
}

INLINE_LOOPS static void im2col(const mlcrt_conv2d_params *p, const float *xp, int64_t cg,
                                float *cols, int64_t ld, const row_ops *ro) {
  const int64_t OH = p->OH, OW = p->OW, PW = p->W + 2 * p->pw, PH = p->H + 2 * p->ph, sw = p->sw;
  for (int64_t c = 0; c < cg; c++)
    for (int64_t kh = 0; kh < p->KH; kh++)
      for (int64_t kw = 0; kw < p->KW; kw++) {
        float *r = cols + ((c * p->KH + kh) * p->KW + kw) * ld;
        const float *xr = xp + (c * PH + kh * p->dh) * PW + kw * p->dw;
        for (int64_t oh = 0; oh < OH; oh++, r += OW, xr += p->sh * PW) {
          if (sw == 1)
            ro->copy(r, xr, OW);
          else
            for (int64_t ow = 0; ow < OW; ow++) r[ow] = xr[ow * sw];
        }
      }
}

/* col2im, the adjoint of im2col: dx[c, ih, iw] += cols[((c*KH + kh)*KW + kw) * ld + oh*OW + ow]
 * for every tap that lands inside the input; dx is zeroed first. */
static void col2im(const mlcrt_conv2d_params *p, const float *cols, int64_t ld, int64_t cg,
                   float *x, const row_ops *ro) {
  const int64_t OH = p->OH, OW = p->OW, H = p->H, W = p->W;
  memset(x, 0, (size_t)(cg * H * W) * sizeof *x);
  for (int64_t c = 0; c < cg; c++) {
    float *xc = x + c * H * W;
    for (int64_t kh = 0; kh < p->KH; kh++)
      for (int64_t kw = 0; kw < p->KW; kw++) {
        const float *row = cols + ((c * p->KH + kh) * p->KW + kw) * ld;
        const int64_t dx = kw * p->dw - p->pw;
        int64_t ow0 = 0, ow1 = OW;
        if (dx < 0) ow0 = (-dx + p->sw - 1) / p->sw;
        if (W - dx <= 0)
          ow1 = 0;
        else if ((W - dx + p->sw - 1) / p->sw < ow1)
          ow1 = (W - dx + p->sw - 1) / p->sw;
        for (int64_t oh = 0; oh < OH; oh++) {
          const int64_t ih = oh * p->sh - p->ph + kh * p->dh;
          if (ih < 0 || ih >= H) continue;
          float *xr = xc + ih * W;
          const float *r = row + oh * OW;
          if (p->sw == 1)
            ro->add(xr + dx + ow0, r + ow0, ow1 - ow0);
          else
            for (int64_t ow = ow0; ow < ow1; ow++) xr[ow * p->sw + dx] += r[ow];
        }
      }
  }
}

/* ---- implicit GEMM: B panels packed straight from the image ------------------ */

/* The unfolded input of one chunk of nb images and one group, never stored:
 * B[(c*KH + kh)*KW + kw][i*L + oh*OW + ow] = x_i[c][oh*sh + kh*dh][ow*sw + kw*dw]
 * of the images with their padding made real (pad_image), so every tap is
 * inside: a panel row is a few runs of an input row. */
typedef struct {
  const mlcrt_conv2d_params *p;
  const float *x;          /* image n0, channel g*cg (padded) */
  int64_t istride, PH, PW; /* floats from one image to the next; padded size */
  int64_t nt;              /* taps per channel (rows of B per channel) */
  const int16_t *taps;     /* their kernel positions kh*KW + kw (NULL: all, in order) */
} unfold_ctx;

/* Offset in a padded channel plane of tap ti's first input. */
static inline int64_t tap_offset(const unfold_ctx *u, int64_t ti) {
  const int64_t t = u->taps ? u->taps[ti] : ti;
  return t / u->p->KW * u->p->dh * u->PW + t % u->p->KW * u->p->dw;
}

typedef void (*copy_fn)(float *d, const float *s, int64_t n);

#if defined(__x86_64__) && defined(__GNUC__)
/* runs of a few floats (an output row of 4 to 32): whole vectors, then a
 * masked load stored whole, zeros past the run (masked stores are slow on
 * some CPUs): the next run or the zero fill writes over them, and the GEMM
 * leaves 16 floats of slack after a panel (mlcrt__bpacker) */
__attribute__((target("avx512f"), always_inline)) static inline void
copy_avx512(float *d, const float *s, int64_t n) {
  for (; n >= 16; n -= 16, d += 16, s += 16) _mm512_storeu_ps(d, _mm512_loadu_ps(s));
  if (n > 0) {
    const __mmask16 m = (__mmask16)((1u << n) - 1);
    _mm512_storeu_ps(d, _mm512_maskz_loadu_ps(m, s));
  }
}
#endif

__attribute__((always_inline)) static inline void unfold_panel(const void *ctx, int64_t k0,
                                                               int64_t kc, int64_t j0, int64_t nj,
                                                               int NR, float *dst, copy_fn copy) {
  const unfold_ctx *u = ctx;
  const mlcrt_conv2d_params *p = u->p;
  const int64_t OH = p->OH, OW = p->OW, PW = u->PW, L = OH * OW, nt = u->nt, sw = p->sw;
  /* divisions once per panel: the tap of row k0 and the position of column j0 */
  int64_t c = k0 / nt, ti = k0 % nt;
  const int64_t i0 = j0 / L, oh0 = j0 % L / OW, ow0 = j0 % OW;
  for (int64_t kk = 0; kk < kc; kk++) {
    float *d = dst + kk * NR;
    int64_t oh = oh0, ow = ow0;
    const float *img = u->x + i0 * u->istride + c * u->PH * PW + tap_offset(u, ti);
    for (int64_t j = 0; j < nj;) {
      const int64_t run = OW - ow < nj - j ? OW - ow : nj - j;
      const float *row = img + oh * p->sh * PW + ow * sw;
      if (sw == 1)
        copy(d + j, row, run);
      else
        for (int64_t t = 0; t < run; t++) d[j + t] = row[t * sw];
      j += run;
      ow += run;
      if (ow == OW) {
        ow = 0;
        if (++oh == OH) {
          oh = 0;
          img += u->istride;
        }
      }
    }
    for (int64_t j = nj; j < NR; j++) d[j] = 0.0f;
    if (++ti == nt) ti = 0, c++; /* the next row's tap */
  }
}

/* the packer compiled for each instruction set (vector copies of the runs) */
#define UNFOLD_VARIANT(SUFFIX, TARGET, COPY)                                                       \
  TARGET INLINE_LOOPS static void pack_unfolded_##SUFFIX(                                          \
      const void *ctx, int64_t k0, int64_t kc, int64_t j0, int64_t nj, int NR, float *dst) {       \
    unfold_panel(ctx, k0, kc, j0, nj, NR, dst, COPY);                                              \
  }
UNFOLD_VARIANT(generic, , copy_plain)
#if defined(__x86_64__) && defined(__GNUC__)
UNFOLD_VARIANT(avx2, __attribute__((target("avx2,fma"))), copy_plain)
UNFOLD_VARIANT(avx512, __attribute__((target("avx512f"))), copy_avx512)

/* AVX-512: output rows of a few floats (ResNet's 8, 4) or strided make the
 * run copy above mostly bookkeeping.  When every 16 consecutive columns of a
 * chunk read, for each tap, from 32 consecutive floats of the input
 * (permute_ok: two or more short rows of one image, or one strided row), a
 * packed row is, per 16 columns, two masked loads of that window and one
 * two-register permute.  It reads the images as they are, unpadded: a tap's
 * lanes whose input is outside the image are zero (the padding) and are
 * not loaded.  The indices, the window starts and each tap's lane masks are
 * worked out once per panel. */
static inline int64_t col_at(const mlcrt_conv2d_params *p, int64_t col, int64_t istride) {
  const int64_t L = p->OH * p->OW, oh = col % L / p->OW, ow = col % p->OW;
  return col / L * istride + (oh * p->sh - p->ph) * p->W + ow * p->sw - p->pw;
}

/* The n (<= 16) columns from col0 as one or two windows of 32 floats (two
 * when they cross from one image into the next, say): the windows' starts
 * and the lanes of the second; 0 when that does not do. */
static int windows16(const mlcrt_conv2d_params *p, int64_t col0, int n, int64_t istride,
                     int64_t start[2], unsigned *seg1) {
  start[0] = start[1] = col_at(p, col0, istride);
  *seg1 = 0;
  int second = 0;
  for (int l = 1; l < n; l++) {
    const int64_t at = col_at(p, col0 + l, istride);
    if (!second) {
      if (at - start[0] >= 0 && at - start[0] < 32) continue;
      second = 1;
      start[1] = at;
    }
    if (at - start[1] < 0 || at - start[1] >= 32) return 0;
    *seg1 |= 1u << l;
  }
  return 1;
}

static int permute_ok(const mlcrt_conv2d_params *p, int64_t nb, int64_t istride) {
  if (p->KH * p->KW > MAX_TAPS || (double)nb * (double)istride > 1e9) return 0;
  const int64_t n = nb * p->OH * p->OW;
  for (int64_t j0 = 0; j0 < n; j0 += 16) {
    int64_t st[2];
    unsigned seg1;
    if (!windows16(p, j0, n - j0 < 16 ? (int)(n - j0) : 16, istride, st, &seg1)) return 0;
  }
  return 1;
}

__attribute__((target("avx512f"))) static void pack_permute_avx512(const void *ctx, int64_t k0,
                                                                   int64_t kc, int64_t j0,
                                                                   int64_t nj, int NR, float *dst) {
  const unfold_ctx *u = ctx;
  const mlcrt_conv2d_params *p = u->p;
  const int64_t H = p->H, W = p->W, nt = u->nt;
  enum { MAXV = 4 };
  const int nv = NR / 16;
  int64_t start[MAXV][2];
  unsigned seg1[MAXV];
  int ok = NR % 16 == 0 && nv <= MAXV;
  for (int q = 0; q < nv && ok; q++)
    ok = windows16(p, j0 + 16 * q,
                   nj - 16 * q < 0    ? 0
                   : nj - 16 * q < 16 ? (int)(nj - 16 * q)
                                      : 16,
                   u->istride, start[q], &seg1[q]);
  if (!ok) { /* (not a kernel or a panel permute_ok lets through: element by element) */
    for (int64_t kk = 0; kk < kc; kk++) {
      const int64_t c = (k0 + kk) / nt, ti = (k0 + kk) % nt, t = u->taps ? u->taps[ti] : ti;
      const int64_t dh = t / p->KW * p->dh, dw = t % p->KW * p->dw, L = p->OH * p->OW;
      for (int64_t j = 0; j < NR; j++) {
        const int64_t col = j0 + j, ih = col % L / p->OW * p->sh - p->ph + dh,
                      iw = col % p->OW * p->sw - p->pw + dw;
        dst[kk * NR + j] = j < nj && ih >= 0 && ih < H && iw >= 0 && iw < W
                               ? u->x[col / L * u->istride + (c * H + ih) * W + iw]
                               : 0.0f;
      }
    }
    return;
  }
  __m512i idx[MAXV], ih0[MAXV], iw0[MAXV];
  __m512i bits[MAXV]; /* lane l: the bit of its float in the 32-float window */
  __mmask16 in[MAXV];
  for (int q = 0; q < nv; q++) {
    int32_t d[16], h0[16], w0[16], bit[16];
    unsigned m = 0;
    for (int l = 0; l < 16; l++) {
      const int64_t j = 16 * q + l, col = j0 + (j < nj ? j : 0);
      const int64_t L = p->OH * p->OW, oh = col % L / p->OW, ow = col % p->OW;
      const int64_t rel = col_at(p, col, u->istride) - start[q][seg1[q] >> l & 1];
      d[l] = (int32_t)(rel & 31);
      h0[l] = (int32_t)(oh * p->sh - p->ph);
      w0[l] = (int32_t)(ow * p->sw - p->pw);
      bit[l] = j < nj ? (int32_t)(1u << (rel & 31)) : 0;
      m |= (unsigned)(j < nj) << l;
    }
    idx[q] = _mm512_loadu_si512(d);
    ih0[q] = _mm512_loadu_si512(h0);
    iw0[q] = _mm512_loadu_si512(w0);
    in[q] = (__mmask16)m;
    bits[q] = _mm512_loadu_si512(bit);
  }
  /* per tap: its offset, the lanes inside the image, the floats to load */
  int64_t toff[MAX_TAPS];
  __mmask16 keep[MAX_TAPS][MAXV], lo[MAX_TAPS][MAXV][2], hi[MAX_TAPS][MAXV][2];
  const __m512i zero = _mm512_setzero_si512(), hv = _mm512_set1_epi32((int32_t)H),
                wv = _mm512_set1_epi32((int32_t)W);
  for (int64_t ti = 0; ti < nt; ti++) {
    const int64_t t = u->taps ? u->taps[ti] : ti;
    const int64_t dh = t / p->KW * p->dh, dw = t % p->KW * p->dw;
    toff[ti] = dh * W + dw;
    for (int q = 0; q < nv; q++) {
      const __m512i ih = _mm512_add_epi32(ih0[q], _mm512_set1_epi32((int32_t)dh));
      const __m512i iw = _mm512_add_epi32(iw0[q], _mm512_set1_epi32((int32_t)dw));
      const __mmask16 k = in[q] & _mm512_cmpge_epi32_mask(ih, zero) &
                          _mm512_cmplt_epi32_mask(ih, hv) & _mm512_cmpge_epi32_mask(iw, zero) &
                          _mm512_cmplt_epi32_mask(iw, wv);
      keep[ti][q] = k;
      for (int w = 0; w < 2; w++) { /* the floats each window loads */
        const __mmask16 kw = w ? k & (__mmask16)seg1[q] : k & (__mmask16)~seg1[q];
        const uint32_t need = (uint32_t)_mm512_mask_reduce_or_epi32(kw, bits[q]);
        lo[ti][q][w] = (__mmask16)(need & 0xffffu);
        hi[ti][q][w] = (__mmask16)(need >> 16);
      }
    }
  }
  /* tap by tap (its masks stay in registers), every channel's row of it */
  for (int64_t ti = 0; ti < nt; ti++) {
    int64_t k = k0 + ((ti - k0 % nt) % nt + nt) % nt; /* the block's first row of tap ti */
    for (int q = 0; q < nv; q++) {
      const __mmask16 kq = keep[ti][q], lq = lo[ti][q][0], hq = hi[ti][q][0];
      const __m512i iq = idx[q];
      const float *src = u->x + toff[ti] + start[q][0] + k / nt * H * W;
      float *d = dst + (k - k0) * NR + 16 * q;
      if (!seg1[q]) {
        for (int64_t kk = k; kk < k0 + kc; kk += nt, src += H * W, d += nt * NR) {
          const __m512 a = _mm512_maskz_loadu_ps(lq, src), b = _mm512_maskz_loadu_ps(hq, src + 16);
          _mm512_storeu_ps(d, _mm512_maskz_permutex2var_ps(kq, a, iq, b));
        }
        continue;
      }
      /* two windows: the second's lanes from its own permute */
      const __mmask16 k0q = kq & (__mmask16)~seg1[q], k1q = kq & (__mmask16)seg1[q];
      const __mmask16 l1 = lo[ti][q][1], h1 = hi[ti][q][1];
      const int64_t d1 = start[q][1] - start[q][0];
      for (int64_t kk = k; kk < k0 + kc; kk += nt, src += H * W, d += nt * NR) {
        const __m512 a = _mm512_maskz_loadu_ps(lq, src), b = _mm512_maskz_loadu_ps(hq, src + 16);
        const __m512 a1 = _mm512_maskz_loadu_ps(l1, src + d1);
        const __m512 b1 = _mm512_maskz_loadu_ps(h1, src + d1 + 16);
        _mm512_storeu_ps(d, _mm512_mask_mov_ps(_mm512_maskz_permutex2var_ps(k0q, a, iq, b), k1q,
                                               _mm512_permutex2var_ps(a1, iq, b1)));
      }
    }
  }
}
#endif

typedef void (*unfold_fn)(const void *, int64_t, int64_t, int64_t, int64_t, int, float *);
static unfold_fn unfold_for(int isa) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (isa == MLCRT_ISA_AVX512) return pack_unfolded_avx512;
  if (isa == MLCRT_ISA_AVX2) return pack_unfolded_avx2;
#endif
  (void)isa;
  return pack_unfolded_generic;
}

typedef struct {
  const mlcrt_conv2d_params *p;
  int op;
  conv_shape s;
  const float *x, *w, *b, *dy;
  float *y; /* y, dx or dw */
  float *scratch;
  mlcrt_team *gemm_team;     /* threads inside each GEMM (a batch of one chunk) */
  int isa;                   /* the team's instruction set, for every GEMM */
  unfold_fn unfold;          /* the forward's B packer for the team's ISA */
  const mlcrt_epilogue *epi; /* the forward's epilogue, or NULL */
  const int16_t *taps;       /* the forward's live taps (NULL: every tap) */
  const float *apacked;      /* the forward's weights packed for the GEMM */
  int permute;               /* the forward packs B with pack_permute_avx512 */
  const row_ops *rows;       /* the gradients' row copies and sums */
} conv_job;

/* Slot m's partial dw (valid for dw with more than one task). */
static float *slot_partial(const conv_job *j, int m) {
  return j->scratch + (size_t)m * slot_floats(&j->s) + j->s.cols + j->s.yb;
}

/* Chunks [c0, c1) of the job on member's buffers. */
static void conv_chunks(const conv_job *j, int64_t c0, int64_t c1, int member) {
  const mlcrt_conv2d_params *p = j->p;
  const conv_shape *s = &j->s;
  const int64_t L = s->L, kdim = s->kdim, ocg = s->ocg, cg = s->cg, HW = p->H * p->W;
  float *cols = j->scratch + (size_t)member * slot_floats(s);
  float *yb = cols + s->cols, *partial = slot_partial(j, member), *xpad = partial + s->part;
  /* dw: member 0 sums into dw itself, the others into their partials */
  float *dw = j->op == MLCRT_CONV_DW && member > 0 ? partial : j->y;
  for (int64_t c = c0; c < c1; c++) {
    const int64_t n0 = c * s->nb, nb = p->N - n0 < s->nb ? p->N - n0 : s->nb, ld = nb * L;
    for (int64_t g = 0; g < p->groups; g++) {
      const float *wg = j->w ? j->w + g * ocg * kdim : NULL;
      /* the input columns (forward and dw): unfolded, or x itself */
      const float *src = NULL;
      if (j->op == MLCRT_CONV_FWD) {
        if (is_pointwise(p) && nb == 1) src = j->x + (n0 * p->C + g * cg) * HW;
      } else if (j->op != MLCRT_CONV_DX) {
        if (!s->cols) {
          src = j->x + (n0 * p->C + g * cg) * HW;
        } else {
          for (int64_t i = 0; i < nb; i++) {
            const float *xi = j->x + ((n0 + i) * p->C + g * cg) * HW;
            if (s->xpad) {
              pad_image(p, xi, cg, xpad);
              xi = xpad;
            }
            im2col(p, xi, cg, cols + i * L, ld, j->rows);
          }
          src = cols;
        }
      }
      /* dY[ocg, nb*L]: dy in place for one image, else gathered */
      const float *dyg = NULL;
      if (j->op != MLCRT_CONV_FWD) {
        if (nb == 1 && !s->yb) {
          dyg = j->dy + (n0 * p->OC + g * ocg) * L;
        } else {
          for (int64_t i = 0; i < nb; i++)
            for (int64_t oc = 0; oc < ocg; oc++) {
              const float *from = j->dy + ((n0 + i) * p->OC + g * ocg + oc) * L;
              float *to = yb + oc * ld + i * L;
              for (int64_t l = 0; l < L; l++) to[l] = from[l];
            }
          dyg = yb;
        }
      }
      if (j->op == MLCRT_CONV_FWD) {
        /* B: x itself (pointwise, one image), else unfolded as it is packed */
        unfold_ctx u = {p,      j->x + (n0 * p->C + g * cg) * HW, p->C * HW, p->H, p->W, s->ntaps,
                        j->taps};
        if (s->xpad && !src && !j->permute) { /* the chunk's images padded, side by side */
          u.PH = p->H + 2 * p->ph, u.PW = p->W + 2 * p->pw, u.istride = cg * u.PH * u.PW;
          for (int64_t i = 0; i < nb; i++)
            pad_image(p, j->x + ((n0 + i) * p->C + g * cg) * HW, cg, xpad + i * u.istride);
          u.x = xpad;
        }
        const mlcrt__bpacker bp = {j->permute ? pack_permute_avx512 : j->unfold, &u};
        const float *ag = j->apacked ? j->apacked + g * s->apg : NULL;
        if (!s->yb) { /* one image: straight into y, onto the bias */
          float *yg = j->y + (n0 * p->OC + g * ocg) * L;
          if (j->b)
            for (int64_t oc = 0; oc < ocg; oc++)
              for (int64_t l = 0; l < L; l++) yg[oc * L + l] = j->b[g * ocg + oc];
          /* the epilogue on the GEMM's finished blocks: its rows are the
           * group's output channels, the epilogue's n * OC + oc */
          const mlcrt__shifted_epi sh = {j->epi, n0 * p->OC + g * ocg};
          const mlcrt_epilogue shifted = {mlcrt__shifted_tile, (void *)&sh};
          const mlcrt_epilogue *e = j->epi ? &shifted : NULL;
          if (src)
            mlcrt__sgemm_isa(j->gemm_team, j->isa, 0, 0, ocg, L, kdim, 1.0f, wg, kdim, src, L,
                             j->b ? 1.0f : 0.0f, yg, L, e);
          else
            mlcrt__sgemm_packb(j->gemm_team, j->isa, ocg, L, kdim, wg, kdim, ag, &bp,
                               j->b ? 1.0f : 0.0f, yg, L, e);
        } else {
          mlcrt__sgemm_packb(j->gemm_team, j->isa, ocg, ld, kdim, wg, kdim, ag, &bp, 0.0f, yb, ld,
                             NULL);
          for (int64_t i = 0; i < nb; i++) {
            const int64_t row0 = (n0 + i) * p->OC + g * ocg;
            for (int64_t oc = 0; oc < ocg; oc++) {
              float *yr = j->y + (row0 + oc) * L;
              const float *r = yb + oc * ld + i * L, bias = j->b ? j->b[g * ocg + oc] : 0.0f;
              for (int64_t l = 0; l < L; l++) yr[l] = r[l] + bias;
            }
            /* the image's rows, just written: the epilogue while they are in cache */
            if (j->epi) j->epi->fn(j->epi->ctx, row0, row0 + ocg, 0, L);
          }
        }
      } else if (j->op == MLCRT_CONV_DX) {
        if (!s->cols) { /* pointwise, one image: dx = w^T dy in place */
          mlcrt__sgemm_isa(j->gemm_team, j->isa, 1, 0, kdim, L, ocg, 1.0f, wg, kdim, dyg, L, 0.0f,
                           j->y + (n0 * p->C + g * cg) * HW, L, NULL);
        } else {
          mlcrt__sgemm_isa(j->gemm_team, j->isa, 1, 0, kdim, ld, ocg, 1.0f, wg, kdim, dyg, ld, 0.0f,
                           cols, ld, NULL);
          for (int64_t i = 0; i < nb; i++)
            j->rows->col2im(p, cols + i * L, ld, cg, j->y + ((n0 + i) * p->C + g * cg) * HW,
                            j->rows);
        }
      } else { /* dw */
        mlcrt__sgemm_isa(j->gemm_team, j->isa, 0, 1, ocg, kdim, ld, 1.0f, dyg, ld, src, ld,
                         c == c0 ? 0.0f : 1.0f, dw + g * ocg * kdim, kdim, NULL);
      }
    }
  }
}

static void conv_task(void *arg, int task, int ntasks) {
  const conv_job *j = arg;
  const int64_t n = j->s.nchunks, per = n / ntasks, extra = n % ntasks;
  const int64_t c0 = task * per + (task < extra ? task : extra), c1 = c0 + per + (task < extra);
  conv_chunks(j, c0, c1, task);
}

/* wpk (forward only): the weights as mlcrt_conv2d_pack_f32 keeps them, or NULL */
static void conv_run(mlcrt_team *team, const mlcrt_conv2d_params *p, int op, const float *x,
                     const float *w, const float *wpk, const float *b, const float *dy, float *y,
                     void *scratch, const mlcrt_epilogue *epi) {
  if (mlcrt__conv_direct_ok(p, op)) {
    mlcrt__conv_direct(team, p, op, x, w, b, dy, y, scratch);
    if (epi) /* (the direct kernels take none: a pass over the result) */
      mlcrt_tiles(team, p->N * p->OC, p->OH * p->OW, epi->fn, epi->ctx);
    return;
  }
  if (op == MLCRT_CONV_FWD && p->N >= BYPOS_MIN_N) {
    int16_t tap[BYPOS_MAX_L][BYPOS_MAX_HW];
    if (by_position(p, tap)) {
      conv_by_position(team, p, x, w, b, y, scratch, epi, tap);
      return;
    }
  }
  conv_job j = {p,
                op,
                shape_of(p, op, mlcrt_team_size(team)),
                x,
                w,
                b,
                dy,
                y,
                scratch,
                NULL,
                mlcrt_team_isa(team), /* the CPU's without a team */
                unfold_for(mlcrt_team_isa(team)),
                epi,
                NULL,
                NULL,
                0,
                rows_for(mlcrt_team_isa(team))};
  const int t = j.s.tasks;
  j.gemm_team = t > 1 ? NULL : team;
#if defined(__x86_64__) && defined(__GNUC__)
  j.permute = op == MLCRT_CONV_FWD && j.unfold == pack_unfolded_avx512 &&
              permute_ok(p, j.s.nb, p->C * p->H * p->W);
#endif
  int16_t taps[MAX_TAPS];
  if (j.s.wc) { /* taps that read only padding left out: the weights to match */
    float *wc = (float *)scratch + (size_t)t * slot_floats(&j.s);
    if (wpk)
      live_taps(p, taps);
    else
      compact_weights(p, &j.s, w, taps, wc);
    j.w = wpk ? wpk : wc;
    j.taps = taps;
  }
  if (wpk) /* packed already, whether or not this call would pack */
    j.apacked = wpk + j.s.wc;
  else if (j.s.ap) { /* the GEMMs' instruction set: their team's, else the CPU's */
    float *ap = (float *)scratch + (size_t)t * slot_floats(&j.s) + j.s.wc;
    for (int64_t g = 0; g < p->groups; g++)
      mlcrt__gemm_pack_a(j.isa, j.s.ocg, j.s.kdim, j.w + g * j.s.ocg * j.s.kdim, j.s.kdim,
                         ap + g * j.s.apg);
    j.apacked = ap;
  }
  const int64_t wn = p->OC * j.s.kdim;
  if (op == MLCRT_CONV_DW && p->N == 0) {
    memset(y, 0, (size_t)wn * sizeof *y);
    return;
  }
  mlcrt_team_run(t > 1 ? team : NULL, t, conv_task, &j);
  if (op == MLCRT_CONV_DW) /* dw = member 0's sum + the partials, in member order */
    for (int m = 1; m < t; m++) {
      const float *part = slot_partial(&j, m);
      for (int64_t i = 0; i < wn; i++) y[i] += part[i];
    }
}
void mlcrt_conv2d_f32(mlcrt_team *team, const mlcrt_conv2d_params *p, const float *x,
                      const float *w, const float *b, float *y, void *scratch) {
  mlcrt_conv2d_epi_f32(team, p, x, w, b, y, scratch, NULL);
}

void mlcrt_conv2d_epi_f32(mlcrt_team *team, const mlcrt_conv2d_params *p, const float *x,
                          const float *w, const float *b, float *y, void *scratch,
                          const mlcrt_epilogue *epi) {
  if (p->OH * p->OW <= 0 || p->OC <= 0) return;
  conv_run(team, p, MLCRT_CONV_FWD, x, w, NULL, b, NULL, y, scratch, epi);
}

/* The forward's weights kept for run: the live taps' weights when padding
 * leaves taps out ([OC, C/groups * live taps], shape_of's wc floats), then
 * each group's GEMM panels for the team's kernels (mlcrt__gemm_pack_a, apg
 * floats apart).  None for the direct kernels, which read w as it is. */
size_t mlcrt_conv2d_pack_floats(const mlcrt_team *team, const mlcrt_conv2d_params *p) {
  (void)team; /* (every ISA's panels fit mlcrt__apack_floats) */
  if (p->groups <= 0 || mlcrt__conv_direct_ok(p, MLCRT_CONV_FWD)) return 0;
  const conv_shape s = shape_of(p, MLCRT_CONV_FWD, 1);
  return s.wc + (size_t)p->groups * s.apg;
}

void mlcrt_conv2d_pack_f32(const mlcrt_team *team, const mlcrt_conv2d_params *p, const float *w,
                           float *wp) {
  if (!mlcrt_conv2d_pack_floats(team, p)) return;
  const conv_shape s = shape_of(p, MLCRT_CONV_FWD, 1);
  int16_t taps[MAX_TAPS];
  if (s.wc) compact_weights(p, &s, w, taps, wp);
  const float *wg = s.wc ? wp : w;
  for (int64_t g = 0; g < p->groups; g++)
    mlcrt__gemm_pack_a(mlcrt_team_isa(team), s.ocg, s.kdim, wg + g * s.ocg * s.kdim, s.kdim,
                       wp + s.wc + g * s.apg);
}

void mlcrt_conv2d_packed_epi_f32(mlcrt_team *team, const mlcrt_conv2d_params *p, const float *x,
                                 const float *w, const float *wp, const float *b, float *y,
                                 void *scratch, const mlcrt_epilogue *epi) {
  if (p->N <= 0 || p->OH * p->OW <= 0 || p->OC <= 0) return;
  conv_run(team, p, MLCRT_CONV_FWD, x, w, wp, b, NULL, y, scratch, epi);
}

/* Bytes of one member's convolution scratch in mlcrt_conv2d_pool_f32: for a
 * batch of chunk images on one thread, 64-byte aligned. */
static size_t pool_slot(const mlcrt_conv2d_params *p, int64_t chunk) {
  mlcrt_conv2d_params c = *p;
  c.N = p->N < chunk ? p->N : chunk;
  return (mlcrt_conv2d_scratch(&c, MLCRT_CONV_FWD, 1) + 63) / 64 * 64;
}

int64_t mlcrt_conv2d_pool_images(int64_t N, int64_t chunk, int nthreads) {
  if (chunk < 1) chunk = 1;
  if (nthreads > 1 && N > chunk * (nthreads - 1)) /* a chunk's room for each member */
    return chunk * nthreads;
  return N < chunk ? N : chunk; /* the chunks one after another */
}

size_t mlcrt_conv2d_pool_scratch(const mlcrt_conv2d_params *p, int64_t chunk, int nthreads) {
  if (chunk < 1) chunk = 1;
  if (nthreads < 1) nthreads = 1;
  /* a slot for each member, which also holds the whole team's scratch for a
   * chunk (the chunks of a small batch run one after another on the team) */
  mlcrt_conv2d_params c = *p;
  c.N = p->N < chunk ? p->N : chunk;
  const size_t all = mlcrt_conv2d_scratch(&c, MLCRT_CONV_FWD, nthreads);
  const size_t each = (size_t)nthreads * pool_slot(p, chunk);
  return each > all ? each : all;
}

typedef struct {
  mlcrt_team *team;
  const mlcrt_conv2d_params *p;
  const mlcrt_pool2d_params *pp;
  const float *x, *w, *b;
  char *scratch;
  size_t slot;
  const mlcrt_epilogue *epi;
  int avg;
  int64_t chunk;
  float *buf, *y;
} pool_job;

/* Images n0..n0+n (n <= chunk) through member m's buffer and scratch, on
 * team (member m alone, or the whole team with m = 0). */
static void pool_images(const pool_job *j, mlcrt_team *team, int m, int64_t n0, int64_t n) {
  const mlcrt_conv2d_params *p = j->p;
  const int64_t per = p->OC * p->OH * p->OW;
  mlcrt_conv2d_params cp = *p;
  mlcrt_pool2d_params q = *j->pp;
  cp.N = q.N = n;
  float *buf = j->buf + (size_t)m * (size_t)(j->chunk * per);
  /* the epilogue's rows count from the buffer's start */
  const mlcrt__shifted_epi sh = {j->epi, m * j->chunk * p->OC};
  const mlcrt_epilogue shifted = {mlcrt__shifted_tile, (void *)&sh};
  mlcrt_conv2d_epi_f32(team, &cp, j->x + n0 * p->C * p->H * p->W, j->w, j->b, buf,
                       j->scratch + (size_t)m * j->slot, j->epi ? &shifted : NULL);
  if (j->avg)
    mlcrt_avg_pool2d_f32(team, &q, buf, j->y + n0 * q.C * q.OH * q.OW);
  else
    mlcrt_max_pool2d_f32(team, &q, buf, j->y + n0 * q.C * q.OH * q.OW);
}

/* member `task` alone: its share of the images (ntasks near-equal ranges),
 * a chunk at a time */
static void pool_task(void *arg, int task, int ntasks) {
  const pool_job *j = arg;
  const int64_t N = j->p->N, lo = N * task / ntasks, hi = N * (task + 1) / ntasks;
  for (int64_t n0 = lo; n0 < hi; n0 += j->chunk)
    pool_images(j, mlcrt__team_solo(j->team, task), task, n0,
                hi - n0 < j->chunk ? hi - n0 : j->chunk);
}

void mlcrt_conv2d_pool_f32(mlcrt_team *team, const mlcrt_conv2d_params *p, const float *x,
                           const float *w, const float *b, void *scratch, const mlcrt_epilogue *epi,
                           const mlcrt_pool2d_params *pp, int avg, int64_t chunk, float *buf,
                           float *y) {
  if (chunk < 1) chunk = 1;
  const int nt = mlcrt_team_size(team);
  pool_job j = {team, p, pp, x, w, b, scratch, pool_slot(p, chunk), epi, avg, chunk, buf, y};
  if (nt > 1 && (p->N + chunk - 1) / chunk >= nt) { /* each member its own images, start to end */
    mlcrt_team_run(team, nt, pool_task, &j);
    return;
  }
  j.slot = 0; /* a small batch: each chunk on the whole team */
  for (int64_t n0 = 0; n0 < p->N; n0 += chunk)
    pool_images(&j, team, 0, n0, p->N - n0 < chunk ? p->N - n0 : chunk);
}

void mlcrt_conv2d_dx_f32(mlcrt_team *team, const mlcrt_conv2d_params *p, const float *dy,
                         const float *w, float *dx, void *scratch) {
  if (p->OH * p->OW <= 0 || p->OC <= 0) {
    memset(dx, 0, sizeof(float) * (size_t)(p->N * p->C * p->H * p->W));
    return;
  }
  conv_run(team, p, MLCRT_CONV_DX, NULL, w, NULL, NULL, dy, dx, scratch, NULL);
}

void mlcrt_conv2d_dw_f32(mlcrt_team *team, const mlcrt_conv2d_params *p, const float *dy,
                         const float *x, float *dw, void *scratch) {
  if (p->OH * p->OW <= 0 || p->OC <= 0) {
    memset(dw, 0, sizeof(float) * (size_t)(p->OC * (p->C / p->groups) * p->KH * p->KW));
    return;
  }
  conv_run(team, p, MLCRT_CONV_DW, x, NULL, NULL, NULL, dy, dw, scratch, NULL);
}
