/* conv_transpose.c — 2-D transposed convolution (NCHW), as
 * torch.nn.functional.conv_transpose2d: the gradient of conv2d with respect
 * to its input.  Input channel c of group g scatters x[n, c, ih, iw] *
 * w[c, oc, kh, kw] into y[n, g*OCg + oc, ih*sh - ph + kh*dh, iw*sw - pw +
 * kw*dw] wherever that lands inside the output.  Direct loops, no scratch;
 * the bias is written first.
 */
#include "mlcrt.h"

#include <string.h>

void mlcrt_conv_transpose2d_f32(const mlcrt_conv_transpose2d_params *p, const float *x,
                                const float *w, const float *b, float *y) {
  const int64_t G = p->groups, cg = p->C / G, ocg = p->OC / G;
  const int64_t H = p->H, W = p->W, OH = p->OH, OW = p->OW, KH = p->KH, KW = p->KW;
  if (OH <= 0 || OW <= 0) return;
  for (int64_t n = 0; n < p->N; n++) {
    float *yn = y + n * p->OC * OH * OW;
    for (int64_t oc = 0; oc < p->OC; oc++) {
      float *yc = yn + oc * OH * OW;
      const float bv = b ? b[oc] : 0.0f;
      for (int64_t i = 0; i < OH * OW; i++) yc[i] = bv;
    }
    for (int64_t g = 0; g < G; g++)
      for (int64_t c = g * cg; c < (g + 1) * cg; c++) {
        const float *xc = x + (n * p->C + c) * H * W;
        for (int64_t o = 0; o < ocg; o++) {
          const float *wk = w + (c * ocg + o) * KH * KW;
          float *yc = yn + (g * ocg + o) * OH * OW;
          for (int64_t kh = 0; kh < KH; kh++)
            for (int64_t ih = 0; ih < H; ih++) {
              const int64_t oh = ih * p->sh - p->ph + kh * p->dh;
              if (oh < 0 || oh >= OH) continue;
              const float *xr = xc + ih * W;
              float *yr = yc + oh * OW;
              for (int64_t kw = 0; kw < KW; kw++) {
                const float wv = wk[kh * KW + kw];
                const int64_t off = kw * p->dw - p->pw;
                for (int64_t iw = 0; iw < W; iw++) {
                  const int64_t ow = iw * p->sw + off;
                  if (ow >= 0 && ow < OW) yr[ow] += xr[iw] * wv;
                }
              }
            }
        }
      }
  }
}

/* The input gradient of conv_transpose2d: dx[n, c, ih, iw] gathers dy at every
 * output position the forward scattered x[n, c, ih, iw] to (a conv2d of dy). */
void mlcrt_conv_transpose2d_dx_f32(const mlcrt_conv_transpose2d_params *p, const float *dy, const float *w,
                                   float *dx) {
  const int64_t G = p->groups, cg = p->C / G, ocg = p->OC / G;
  const int64_t H = p->H, W = p->W, OH = p->OH, OW = p->OW, KH = p->KH, KW = p->KW;
  for (int64_t i = 0; i < p->N * p->C * H * W; i++) dx[i] = 0.0f;
  for (int64_t n = 0; n < p->N; n++)
    for (int64_t g = 0; g < G; g++)
      for (int64_t c = g * cg; c < (g + 1) * cg; c++) {
        float *xc = dx + (n * p->C + c) * H * W;
        for (int64_t o = 0; o < ocg; o++) {
          const float *wk = w + (c * ocg + o) * KH * KW;
          const float *yc = dy + (n * p->OC + g * ocg + o) * OH * OW;
          for (int64_t kh = 0; kh < KH; kh++)
            for (int64_t ih = 0; ih < H; ih++) {
              const int64_t oh = ih * p->sh - p->ph + kh * p->dh;
              if (oh < 0 || oh >= OH) continue;
              float *xr = xc + ih * W;
              const float *yr = yc + oh * OW;
              for (int64_t kw = 0; kw < KW; kw++) {
                const float wv = wk[kh * KW + kw];
                const int64_t off = kw * p->dw - p->pw;
                for (int64_t iw = 0; iw < W; iw++) {
                  const int64_t ow = iw * p->sw + off;
                  if (ow >= 0 && ow < OW) xr[iw] += yr[ow] * wv;
                }
              }
            }
        }
      }
}

/* The weight gradient of conv_transpose2d: dw[c, o, kh, kw] = sum over n, ih, iw
 * of x[n, c, ih, iw] * dy[n, g*OCg + o, oh, ow] (accumulated in double). */
void mlcrt_conv_transpose2d_dw_f32(const mlcrt_conv_transpose2d_params *p, const float *dy, const float *x,
                                   float *dw) {
  const int64_t G = p->groups, cg = p->C / G, ocg = p->OC / G;
  const int64_t H = p->H, W = p->W, OH = p->OH, OW = p->OW, KH = p->KH, KW = p->KW;
  for (int64_t g = 0; g < G; g++)
    for (int64_t c = g * cg; c < (g + 1) * cg; c++)
      for (int64_t o = 0; o < ocg; o++)
        for (int64_t kh = 0; kh < KH; kh++)
          for (int64_t kw = 0; kw < KW; kw++) {
            double acc = 0;
            const int64_t off = kw * p->dw - p->pw;
            for (int64_t n = 0; n < p->N; n++) {
              const float *xc = x + (n * p->C + c) * H * W;
              const float *yc = dy + (n * p->OC + g * ocg + o) * OH * OW;
              for (int64_t ih = 0; ih < H; ih++) {
                const int64_t oh = ih * p->sh - p->ph + kh * p->dh;
                if (oh < 0 || oh >= OH) continue;
                for (int64_t iw = 0; iw < W; iw++) {
                  const int64_t ow = iw * p->sw + off;
                  if (ow >= 0 && ow < OW) acc += (double)xc[ih * W + iw] * yc[oh * OW + ow];
                }
              }
            }
            dw[((c * ocg + o) * KH + kh) * KW + kw] = (float)acc;
          }
}
