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
 *            compiled per ISA);
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

typedef struct {
  int64_t L, kdim, ocg, cg; /* output positions, GEMM depth, channels per group */
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
  s.nb = s.L > 0 ? (MIN_COLS + s.L - 1) / s.L : 1;
  if (s.nb > p->N) s.nb = p->N;
  if (s.nb < 1) s.nb = 1;
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

/* floats of one slot of the scratch: columns, Y or dY, partial dw, padded image */
static size_t slot_floats(const conv_shape *s) {
  return s->cols + s->yb + s->part + s->xpad;
}

size_t mlcrt_conv2d_scratch(const mlcrt_conv2d_params *p, int op, int nthreads) {
  if (mlcrt__conv_direct_ok(p, op)) /* a tiny kernel volume: conv_direct.c */
    return (size_t)mlcrt__conv_direct_tasks(p, nthreads) * mlcrt__conv_direct_slot(p, op) *
           sizeof(float);
  const conv_shape s = shape_of(p, op, nthreads);
  return (size_t)s.tasks * slot_floats(&s) * sizeof(float);
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
INLINE_LOOPS static void im2col(const mlcrt_conv2d_params *p, const float *xp, int64_t cg,
                                float *cols, int64_t ld) {
  const int64_t OH = p->OH, OW = p->OW, PW = p->W + 2 * p->pw, PH = p->H + 2 * p->ph, sw = p->sw;
  for (int64_t c = 0; c < cg; c++)
    for (int64_t kh = 0; kh < p->KH; kh++)
      for (int64_t kw = 0; kw < p->KW; kw++) {
        float *r = cols + ((c * p->KH + kh) * p->KW + kw) * ld;
        const float *xr = xp + (c * PH + kh * p->dh) * PW + kw * p->dw;
        for (int64_t oh = 0; oh < OH; oh++, r += OW, xr += p->sh * PW) {
          if (sw == 1)
            for (int64_t ow = 0; ow < OW; ow++) r[ow] = xr[ow];
          else
            for (int64_t ow = 0; ow < OW; ow++) r[ow] = xr[ow * sw];
        }
      }
}

/* col2im, the adjoint of im2col: dx[c, ih, iw] += cols[((c*KH + kh)*KW + kw) * ld + oh*OW + ow]
 * for every tap that lands inside the input; dx is zeroed first. */
static void col2im(const mlcrt_conv2d_params *p, const float *cols, int64_t ld, int64_t cg,
                   float *x) {
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
} unfold_ctx;

typedef void (*copy_fn)(float *d, const float *s, int64_t n);

INLINE_LOOPS static inline void copy_plain(float *d, const float *s, int64_t n) {
  for (int64_t t = 0; t < n; t++) d[t] = s[t];
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
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
  const int64_t OH = p->OH, OW = p->OW, PW = u->PW, L = OH * OW, KK = p->KH * p->KW, sw = p->sw;
  /* divisions once per panel: the tap of row k0 and the position of column j0 */
  int64_t c = k0 / KK, kh = k0 % KK / p->KW, kw = k0 % p->KW;
  const int64_t i0 = j0 / L, oh0 = j0 % L / OW, ow0 = j0 % OW;
  for (int64_t kk = 0; kk < kc; kk++) {
    float *d = dst + kk * NR;
    int64_t oh = oh0, ow = ow0;
    const float *img = u->x + i0 * u->istride + (c * u->PH + kh * p->dh) * PW + kw * p->dw;
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
    if (++kw == p->KW) { /* the next row's tap */
      kw = 0;
      if (++kh == p->KH) kh = 0, c++;
    }
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
  unfold_fn unfold;          /* the forward's B packer for the team's ISA */
  const mlcrt_epilogue *epi; /* the forward's epilogue, or NULL */
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
            im2col(p, xi, cg, cols + i * L, ld);
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
        unfold_ctx u = {p, j->x + (n0 * p->C + g * cg) * HW, p->C * HW, p->H, p->W};
        if (s->xpad && !src) { /* the chunk's images padded, side by side */
          u.PH = p->H + 2 * p->ph, u.PW = p->W + 2 * p->pw, u.istride = cg * u.PH * u.PW;
          for (int64_t i = 0; i < nb; i++)
            pad_image(p, j->x + ((n0 + i) * p->C + g * cg) * HW, cg, xpad + i * u.istride);
          u.x = xpad;
        }
        const mlcrt__bpacker bp = {j->unfold, &u};
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
            mlcrt_sgemm_epi(j->gemm_team, 0, 0, ocg, L, kdim, 1.0f, wg, kdim, src, L,
                            j->b ? 1.0f : 0.0f, yg, L, e);
          else
            mlcrt__sgemm_packb(j->gemm_team, ocg, L, kdim, wg, kdim, &bp, j->b ? 1.0f : 0.0f, yg, L,
                               e);
        } else {
          mlcrt__sgemm_packb(j->gemm_team, ocg, ld, kdim, wg, kdim, &bp, 0.0f, yb, ld, NULL);
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
          mlcrt_sgemm_team(j->gemm_team, 1, 0, kdim, L, ocg, 1.0f, wg, kdim, dyg, L, 0.0f,
                           j->y + (n0 * p->C + g * cg) * HW, L);
        } else {
          mlcrt_sgemm_team(j->gemm_team, 1, 0, kdim, ld, ocg, 1.0f, wg, kdim, dyg, ld, 0.0f, cols,
                           ld);
          for (int64_t i = 0; i < nb; i++)
            col2im(p, cols + i * L, ld, cg, j->y + ((n0 + i) * p->C + g * cg) * HW);
        }
      } else { /* dw */
        mlcrt_sgemm_team(j->gemm_team, 0, 1, ocg, kdim, ld, 1.0f, dyg, ld, src, ld,
                         c == c0 ? 0.0f : 1.0f, dw + g * ocg * kdim, kdim);
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

static void conv_run(mlcrt_team *team, const mlcrt_conv2d_params *p, int op, const float *x,
                     const float *w, const float *b, const float *dy, float *y, void *scratch,
                     const mlcrt_epilogue *epi) {
  if (mlcrt__conv_direct_ok(p, op)) {
    mlcrt__conv_direct(team, p, op, x, w, b, dy, y, scratch);
    if (epi) /* (the direct kernels take none: a pass over the result) */
      mlcrt_tiles(team, p->N * p->OC, p->OH * p->OW, epi->fn, epi->ctx);
    return;
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
                unfold_for(team ? mlcrt_team_isa(team) : mlcrt_cpu_isa()),
                epi};
  const int t = j.s.tasks;
  j.gemm_team = t > 1 ? NULL : team;
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
  conv_run(team, p, MLCRT_CONV_FWD, x, w, b, NULL, y, scratch, epi);
}

void mlcrt_conv2d_dx_f32(mlcrt_team *team, const mlcrt_conv2d_params *p, const float *dy,
                         const float *w, float *dx, void *scratch) {
  if (p->OH * p->OW <= 0 || p->OC <= 0) {
    memset(dx, 0, sizeof(float) * (size_t)(p->N * p->C * p->H * p->W));
    return;
  }
  conv_run(team, p, MLCRT_CONV_DX, NULL, w, NULL, dy, dx, scratch, NULL);
}

void mlcrt_conv2d_dw_f32(mlcrt_team *team, const mlcrt_conv2d_params *p, const float *dy,
                         const float *x, float *dw, void *scratch) {
  if (p->OH * p->OW <= 0 || p->OC <= 0) {
    memset(dw, 0, sizeof(float) * (size_t)(p->OC * (p->C / p->groups) * p->KH * p->KW));
    return;
  }
  conv_run(team, p, MLCRT_CONV_DW, x, NULL, NULL, dy, dw, scratch, NULL);
}
