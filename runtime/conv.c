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
 *
 * The gradients are GEMMs too: dcols = w_g^T @ dy_g folded back onto dx by
 * col2im (the adjoint of im2col), and dw_g = sum over images of
 * dy_g @ cols^T.  With a team, images are shared out in fixed slices, each
 * member with its own column buffer (and, for dw, its own partial sum, added
 * in member order afterwards): results depend on the thread count only, never
 * on timing.  A batch smaller than the team runs image by image with the
 * threads inside each GEMM instead.
 */
#include "mlcrt.h"

#include <string.h>

static int is_pointwise(const mlcrt_conv2d_params *p) {
  return p->KH == 1 && p->KW == 1 && p->sh == 1 && p->sw == 1 && p->ph == 0 && p->pw == 0 &&
         p->OH == p->H && p->OW == p->W;
}

/* floats of one image's column matrix (one group) */
static size_t cols_floats(const mlcrt_conv2d_params *p) {
  if (p->groups <= 0) return 0;
  return (size_t)(p->C / p->groups * p->KH * p->KW) * (size_t)(p->OH * p->OW);
}

/* Members that work on separate images: the batch decides. */
static int image_tasks(const mlcrt_conv2d_params *p, int nthreads) {
  if (nthreads < 1) nthreads = 1;
  return p->N >= nthreads ? nthreads : 1;
}

size_t mlcrt_conv2d_scratch(const mlcrt_conv2d_params *p, int op, int nthreads) {
  if (p->groups <= 0) return 0;
  const int t = image_tasks(p, nthreads);
  size_t per = is_pointwise(p) ? 0 : cols_floats(p) + 16; /* + 64 bytes: keeps slices aligned */
  if (op == MLCRT_CONV_DW && t > 1) /* a partial dw per extra member */
    per += (size_t)(p->OC * (p->C / p->groups) * p->KH * p->KW) + 16;
  return (size_t)t * per * sizeof(float);
}

/* member's slice of the scratch: its columns, then (dw) its partial sum */
static float *member_scratch(const mlcrt_conv2d_params *p, int op, int t, void *scratch, int member, float **partial) {
  size_t cols = is_pointwise(p) ? 0 : cols_floats(p) + 16;
  size_t part = op == MLCRT_CONV_DW && t > 1 ? (size_t)(p->OC * (p->C / p->groups) * p->KH * p->KW) + 16 : 0;
  float *base = (float *)scratch + (size_t)member * (cols + part);
  if (partial) *partial = base + cols;
  return base;
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

/* col2im, the adjoint of im2col: dx[c, ih, iw] += cols[(c*KH + kh)*KW + kw][oh*OW + ow]
 * for every tap that lands inside the input; dx is zeroed first. */
static void col2im(const mlcrt_conv2d_params *p, const float *cols, int64_t cg, float *x) {
  const int64_t OH = p->OH, OW = p->OW, H = p->H, W = p->W;
  memset(x, 0, (size_t)(cg * H * W) * sizeof *x);
  for (int64_t c = 0; c < cg; c++) {
    float *xc = x + c * H * W;
    for (int64_t kh = 0; kh < p->KH; kh++)
      for (int64_t kw = 0; kw < p->KW; kw++) {
        const float *row = cols + ((c * p->KH + kh) * p->KW + kw) * OH * OW;
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

typedef struct {
  const mlcrt_conv2d_params *p;
  int op, ntasks;
  const float *x, *w, *b, *dy;
  float *y; /* y, dx or dw */
  void *scratch;
  mlcrt_team *gemm_team; /* threads inside each GEMM (batch smaller than the team) */
} conv_job;

/* Images [n0, n1) of the job, with member's scratch. */
static void conv_images(const conv_job *j, int64_t n0, int64_t n1, int member) {
  const mlcrt_conv2d_params *p = j->p;
  const int64_t G = p->groups, cg = p->C / G, ocg = p->OC / G;
  const int64_t L = p->OH * p->OW, kdim = cg * p->KH * p->KW, HW = p->H * p->W;
  const int pointwise = is_pointwise(p);
  float *partial;
  float *cols = member_scratch(p, j->op, j->ntasks, j->scratch, member, &partial);
  /* dw: member 0 sums into dw itself, the others into their partials */
  float *dw = j->op == MLCRT_CONV_DW && member > 0 ? partial : j->y;
  for (int64_t n = n0; n < n1; n++) {
    for (int64_t g = 0; g < G; g++) {
      const float *wg = j->w ? j->w + g * ocg * kdim : NULL;
      if (j->op == MLCRT_CONV_FWD) {
        const float *xg = j->x + (n * p->C + g * cg) * HW;
        float *yg = j->y + (n * p->OC + g * ocg) * L;
        if (j->b)
          for (int64_t oc = 0; oc < ocg; oc++)
            for (int64_t l = 0; l < L; l++) yg[oc * L + l] = j->b[g * ocg + oc];
        const float *src = xg;
        if (!pointwise) {
          im2col(p, xg, cg, cols);
          src = cols;
        }
        mlcrt_sgemm_team(j->gemm_team, 0, 0, ocg, L, kdim, 1.0f, wg, kdim, src, L, j->b ? 1.0f : 0.0f, yg, L);
      } else if (j->op == MLCRT_CONV_DX) {
        const float *dyg = j->dy + (n * p->OC + g * ocg) * L;
        float *dxg = j->y + (n * p->C + g * cg) * HW;
        if (pointwise) {
          mlcrt_sgemm_team(j->gemm_team, 1, 0, kdim, L, ocg, 1.0f, wg, kdim, dyg, L, 0.0f, dxg, L);
        } else {
          mlcrt_sgemm_team(j->gemm_team, 1, 0, kdim, L, ocg, 1.0f, wg, kdim, dyg, L, 0.0f, cols, L);
          col2im(p, cols, cg, dxg);
        }
      } else { /* dw */
        const float *dyg = j->dy + (n * p->OC + g * ocg) * L;
        const float *xg = j->x + (n * p->C + g * cg) * HW;
        const float *src = xg;
        if (!pointwise) {
          im2col(p, xg, cg, cols);
          src = cols;
        }
        mlcrt_sgemm_team(j->gemm_team, 0, 1, ocg, kdim, L, 1.0f, dyg, L, src, L, n == n0 ? 0.0f : 1.0f,
                         dw + g * ocg * kdim, kdim);
      }
    }
  }
}

static void conv_task(void *arg, int task, int ntasks) {
  const conv_job *j = arg;
  const int64_t N = j->p->N, per = N / ntasks, extra = N % ntasks;
  const int64_t n0 = task * per + (task < extra ? task : extra), n1 = n0 + per + (task < extra);
  conv_images(j, n0, n1, task);
}

static void conv_run(mlcrt_team *team, const mlcrt_conv2d_params *p, int op, const float *x, const float *w,
                     const float *b, const float *dy, float *y, void *scratch) {
  const int t = image_tasks(p, mlcrt_team_size(team));
  conv_job j = {p, op, t, x, w, b, dy, y, scratch, t > 1 ? NULL : team};
  const int64_t wn = p->OC * (p->C / p->groups) * p->KH * p->KW;
  if (op == MLCRT_CONV_DW && p->N == 0) {
    memset(y, 0, (size_t)wn * sizeof *y);
    return;
  }
  mlcrt_team_run(t > 1 ? team : NULL, t, conv_task, &j);
  if (op == MLCRT_CONV_DW) /* dw = member 0's sum + the partials, in member order */
    for (int m = 1; m < t; m++) {
      float *part;
      member_scratch(p, op, t, scratch, m, &part);
      for (int64_t i = 0; i < wn; i++) y[i] += part[i];
    }
}

void mlcrt_conv2d_f32(mlcrt_team *team, const mlcrt_conv2d_params *p, const float *x, const float *w,
                      const float *b, float *y, void *scratch) {
  if (p->OH * p->OW <= 0 || p->OC <= 0) return;
  conv_run(team, p, MLCRT_CONV_FWD, x, w, b, NULL, y, scratch);
}

void mlcrt_conv2d_dx_f32(mlcrt_team *team, const mlcrt_conv2d_params *p, const float *dy, const float *w, float *dx,
                         void *scratch) {
  if (p->OH * p->OW <= 0 || p->OC <= 0) {
    memset(dx, 0, sizeof(float) * (size_t)(p->N * p->C * p->H * p->W));
    return;
  }
  conv_run(team, p, MLCRT_CONV_DX, NULL, w, NULL, dy, dx, scratch);
}

void mlcrt_conv2d_dw_f32(mlcrt_team *team, const mlcrt_conv2d_params *p, const float *dy, const float *x, float *dw,
                         void *scratch) {
  if (p->OH * p->OW <= 0 || p->OC <= 0) {
    memset(dw, 0, sizeof(float) * (size_t)(p->OC * (p->C / p->groups) * p->KH * p->KW));
    return;
  }
  conv_run(team, p, MLCRT_CONV_DW, x, NULL, NULL, dy, dw, scratch);
}
