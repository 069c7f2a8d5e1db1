/* conv.c — 2-D convolution (NCHW), as torch.nn.functional.conv2d.
 *
 * Lowered to GEMM by im2col: for each image and group, the input patches are
 * unfolded into a [Cg*KH*KW, OH*OW] column matrix (zeros where a tap falls in
 * the padding), and y_g[OCg, OH*OW] = w_g[OCg, Cg*KH*KW] @ cols.  The column
 * buffer is the caller's scratch (mlcrt_conv2d_scratch bytes), sized for one
 * image and group and reused.  A 1x1 convolution with stride 1 and no padding
 * needs no unfolding: its input already is the column matrix, so it asks for
 * no scratch.  The bias, when given, is written into y first and the GEMM
 * accumulates onto it.
 */
#include "mlcrt.h"

#include <string.h>

static int is_pointwise(const mlcrt_conv2d_params *p) {
  return p->KH == 1 && p->KW == 1 && p->sh == 1 && p->sw == 1 && p->ph == 0 && p->pw == 0 &&
         p->OH == p->H && p->OW == p->W;
}

size_t mlcrt_conv2d_scratch(const mlcrt_conv2d_params *p) {
  if (is_pointwise(p) || p->groups <= 0) return 0;
  const int64_t cg = p->C / p->groups;
  return (size_t)(cg * p->KH * p->KW) * (size_t)(p->OH * p->OW) * sizeof(float);
}

/* Unfolds one group's channels of one image: cols[(c*KH + kh)*KW + kw][oh*OW + ow]. */
static void im2col(const mlcrt_conv2d_params *p, const float *x, int64_t cg, float *cols) {
  const int64_t OH = p->OH, OW = p->OW, H = p->H, W = p->W;
  for (int64_t c = 0; c < cg; c++) {
    const float *xc = x + c * H * W;
    for (int64_t kh = 0; kh < p->KH; kh++) {
      for (int64_t kw = 0; kw < p->KW; kw++) {
        float *row = cols + ((c * p->KH + kh) * p->KW + kw) * OH * OW;
        const int64_t dx = kw * p->dw - p->pw;
        /* Output columns whose tap lands inside the input: ow in [ow0, ow1). */
        int64_t ow0 = 0, ow1 = OW;
        if (dx < 0) ow0 = (-dx + p->sw - 1) / p->sw;
        if (W - dx <= 0)
          ow1 = 0;
        else if ((W - dx + p->sw - 1) / p->sw < ow1)
          ow1 = (W - dx + p->sw - 1) / p->sw;
        if (ow0 > ow1) ow0 = ow1;
        for (int64_t oh = 0; oh < OH; oh++) {
          float *r = row + oh * OW;
          const int64_t ih = oh * p->sh - p->ph + kh * p->dh;
          if (ih < 0 || ih >= H) {
            memset(r, 0, (size_t)OW * sizeof *r);
            continue;
          }
          const float *xr = xc + ih * W;
          for (int64_t ow = 0; ow < ow0; ow++) r[ow] = 0.0f;
          if (p->sw == 1) {
            if (ow1 > ow0) memcpy(r + ow0, xr + ow0 + dx, (size_t)(ow1 - ow0) * sizeof *r);
          } else {
            for (int64_t ow = ow0; ow < ow1; ow++) r[ow] = xr[ow * p->sw + dx];
          }
          for (int64_t ow = ow1; ow < OW; ow++) r[ow] = 0.0f;
        }
      }
    }
  }
}

void mlcrt_conv2d_f32(const mlcrt_conv2d_params *p, const float *x, const float *w, const float *b,
                      float *y, void *scratch) {
  const int64_t G = p->groups, cg = p->C / G, ocg = p->OC / G;
  const int64_t L = p->OH * p->OW, kdim = cg * p->KH * p->KW;
  const int pointwise = is_pointwise(p);
  float *cols = scratch;
  if (L <= 0 || p->OC <= 0) return;
  for (int64_t n = 0; n < p->N; n++) {
    const float *xn = x + n * p->C * p->H * p->W;
    float *yn = y + n * p->OC * L;
    if (b) {
      for (int64_t oc = 0; oc < p->OC; oc++)
        for (int64_t l = 0; l < L; l++) yn[oc * L + l] = b[oc];
    }
    for (int64_t g = 0; g < G; g++) {
      const float *xg = xn + g * cg * p->H * p->W;
      const float *src = xg;
      if (!pointwise) {
        im2col(p, xg, cg, cols);
        src = cols;
      }
      mlcrt_sgemm(0, 0, ocg, L, kdim, 1.0f, w + g * ocg * kdim, kdim, src, L, b ? 1.0f : 0.0f,
                  yn + g * ocg * L, L);
    }
  }
}
