/*
 * neon.c - baseline arm64 kernels (ARMv8.0 Advanced SIMD, e.g.
 * Cortex-A72 / Graviton1): F32/F16/BF16 dots with FMLA, quantized dots with
 * SMULL + SADALP, attention over the f32, f16 (base FCVT conversions) and
 * q8_0 KV formats.
 * Compiled with -march=armv8-a; its float kernels are shared by the other
 * arm64 tables (arm.h).
 */
#include "kernels/arm/arm.h"
#include "kernels/arm/packed.h"

/* 4 weights of a float row type as F32 (kind: 0 F32, 1 F16, 2 BF16) */
ARM_INLINE float32x4_t
load4(const void *w, int64_t i, const int kind)
{
    if (kind == 0) {
        return vld1q_f32((const float *) w + i);
    }
    if (kind == 1) {
        return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *) w + i)));
    }
    /* bf16 is the top half of an f32 */
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16((const uint16_t *) w + i), 16));
}

ARM_INLINE float
load1(const void *w, int64_t i, const int kind)
{
    if (kind == 0) {
        return ((const float *) w)[i];
    }
    if (kind == 1) {
        return arm_f16(((const qwen_f16 *) w)[i]);
    }
    return qwen_bf16_to_f32(((const qwen_bf16 *) w)[i]);
}

/*
 * Float weight row x NT F32 activation rows. Four accumulators per row hide
 * the FMA latency; NT = 1 and NT = 4 run the same per-row sequence (16-wide
 * steps, then 4-wide, then scalar), so their results are bit-identical.
 */
ARM_INLINE void
float_dot_n(int64_t n, const void *w, const void *act, size_t stride, float *out,
            const int NT, const int kind)
{
    const float *y[4];
    float32x4_t  acc[4][4];
    int64_t      i = 0, k;
    int          t, a;

#pragma GCC unroll 4
    for (t = 0; t < NT; t++) {
        y[t] = ARM_ACT(float, act, stride, t);
#pragma GCC unroll 4
        for (a = 0; a < 4; a++) {
            acc[t][a] = vdupq_n_f32(0.0f);
        }
    }
    for (; i + 16 <= n; i += 16) {
        float32x4_t wv[4];
#pragma GCC unroll 4
        for (a = 0; a < 4; a++) {
            wv[a] = load4(w, i + 4 * a, kind);
        }
#pragma GCC unroll 4
        for (t = 0; t < NT; t++) {
#pragma GCC unroll 4
            for (a = 0; a < 4; a++) {
                acc[t][a] = vfmaq_f32(acc[t][a], wv[a], vld1q_f32(y[t] + i + 4 * a));
            }
        }
    }
    for (; i + 4 <= n; i += 4) {
        float32x4_t wv = load4(w, i, kind);
#pragma GCC unroll 4
        for (t = 0; t < NT; t++) {
            acc[t][0] = vfmaq_f32(acc[t][0], wv, vld1q_f32(y[t] + i));
        }
    }
#pragma GCC unroll 4
    for (t = 0; t < NT; t++) {
        float sum = vaddvq_f32(vaddq_f32(vaddq_f32(acc[t][0], acc[t][1]),
                                         vaddq_f32(acc[t][2], acc[t][3])));
        for (k = i; k < n; k++) {
            sum += load1(w, k, kind) * y[t][k];
        }
        out[t] = sum;
    }
}

#define FLOAT_DOTS(suffix, kind)                                                       \
static float                                                                           \
dot_##suffix(int64_t n, const void *w, const void *act)                                \
{                                                                                      \
    float r;                                                                           \
    float_dot_n(n, w, act, 0, &r, 1, kind);                                            \
    return r;                                                                          \
}                                                                                      \
static void                                                                            \
dot4_##suffix(int64_t n, const void *w, const void *act, size_t stride, float *out)    \
{                                                                                      \
    float_dot_n(n, w, act, stride, out, 4, kind);                                      \
}

FLOAT_DOTS(f32, 0)
FLOAT_DOTS(f16, 1)
FLOAT_DOTS(bf16, 2)

QWEN_ARM_QUANT_KERNELS(neon, 0)
QWEN_ARM_Q8_0_2X4(neon)

static float
dot_f32_f16(int64_t n, const float *x, const qwen_f16 *y)
{
    return dot_f16(n, y, x);
}

static void
axpy_f16(int64_t n, float a, const qwen_f16 *x, float *y)
{
    int64_t i = 0;

    for (; i + 8 <= n; i += 8) {
        float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(x + i));
        vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), vcvt_f32_f16(vget_low_f16(h)), a));
        vst1q_f32(y + i + 4, vfmaq_n_f32(vld1q_f32(y + i + 4), vcvt_high_f32_f16(h), a));
    }
    for (; i < n; i++) {
        y[i] += a * arm_f16(x[i]);
    }
}

/* FCVTN rounds by FPCR (nearest even unless someone changed it), keeps
 * subnormals and quiets NaNs with their top payload bits, which is what
 * qwen_f32_to_f16 does; test_kernels checks it bit for bit. */
static void
f32_to_f16(const float *x, qwen_f16 *y, int64_t n)
{
    int64_t i = 0;

    for (; i + 8 <= n; i += 8) {
        float16x8_t h = vcvt_high_f16_f32(vcvt_f16_f32(vld1q_f32(x + i)), vld1q_f32(x + i + 4));
        vst1q_u16(y + i, vreinterpretq_u16_f16(h));
    }
    for (; i < n; i++) {
        y[i] = qwen_f32_to_f16(x[i]);
    }
}

static void
kv_store_f16(int hd, const float *k, const float *v, void *kc, void *vc, int t)
{
    f32_to_f16(k, (qwen_f16 *) kc + (size_t) t * hd, hd);
    f32_to_f16(v, (qwen_f16 *) vc + (size_t) t * hd, hd);
}

/* the row of position t of a row format (kind: 0 F32, 1 F16) */
ARM_INLINE const void *
row_at(const void *region, int t, int hd, const int kind)
{
    return (const char *) region + (size_t) t * hd * (kind == 0 ? 4 : 2);
}

/* 16 values of a row format (kind 0 F32, 1 F16) from i as floats, with
 * one multi-register load */
ARM_INLINE void
load16(const void *w, int64_t i, float32x4_t out[4], const int kind)
{
    if (kind == 0) {
        float32x4x4_t f = vld1q_f32_x4((const float *) w + i);

        out[0] = f.val[0]; out[1] = f.val[1]; out[2] = f.val[2]; out[3] = f.val[3];
    } else {
        uint16x8x2_t h = vld1q_u16_x2((const uint16_t *) w + i);
        float16x8_t  a = vreinterpretq_f16_u16(h.val[0]), b = vreinterpretq_f16_u16(h.val[1]);

        out[0] = vcvt_f32_f16(vget_low_f16(a));
        out[1] = vcvt_high_f32_f16(a);
        out[2] = vcvt_f32_f16(vget_low_f16(b));
        out[3] = vcvt_high_f32_f16(b);
    }
}

/* scores[h][t + i] = scale * q[h] . K[t + i] for NQ heads and NP
 * positions (NQ x NP at most 4; kt: the positions' K rows), 16 dimensions
 * per step in four chains per (head, position) (the first step
 * multiplies: no zeroed accumulators): each K row converted once for the
 * heads, each head's 16 query values one load for the NP positions. The
 * horizontal sums go pairwise across (position, head) lanes, the same
 * additions as one head's vaddvq. */
ARM_INLINE void
scores_at(int hd, const int NQ, const int NP, const float *q, const void *const *kt, float scale,
          float *scores, int rows, const int kind)
{
    const float *qp[4];   /* each head's next 16 values: post-indexed loads */
    float32x4_t  acc[4][4], kv4[2][4], x[4], s01, s23, sum;
    int          i, h, k;

#pragma GCC unroll 2
    for (k = 0; k < NP; k++) {
        load16(kt[k], 0, kv4[k], kind);
    }
#pragma GCC unroll 4
    for (h = 0; h < NQ; h++) {
        float32x4x4_t qv = vld1q_f32_x4(q + (size_t) h * hd);

        qp[h] = q + (size_t) h * hd + 16;
#pragma GCC unroll 2
        for (k = 0; k < NP; k++) {
            acc[k * NQ + h][0] = vmulq_f32(kv4[k][0], qv.val[0]);
            acc[k * NQ + h][1] = vmulq_f32(kv4[k][1], qv.val[1]);
            acc[k * NQ + h][2] = vmulq_f32(kv4[k][2], qv.val[2]);
            acc[k * NQ + h][3] = vmulq_f32(kv4[k][3], qv.val[3]);
        }
    }
#pragma GCC unroll 2
    for (i = 16; i < hd; i += 16) {
#pragma GCC unroll 2
        for (k = 0; k < NP; k++) {
            load16(kt[k], i, kv4[k], kind);
        }
#pragma GCC unroll 4
        for (h = 0; h < NQ; h++) {
            float32x4x4_t qv = vld1q_f32_x4(qp[h]);

            /* opaque after the step: GCC would rebuild each address from
             * one index with an add per load */
            qp[h] += 16;
            __asm__("" : "+r"(qp[h]));
#pragma GCC unroll 2
            for (k = 0; k < NP; k++) {
                acc[k * NQ + h][0] = vfmaq_f32(acc[k * NQ + h][0], kv4[k][0], qv.val[0]);
                acc[k * NQ + h][1] = vfmaq_f32(acc[k * NQ + h][1], kv4[k][1], qv.val[1]);
                acc[k * NQ + h][2] = vfmaq_f32(acc[k * NQ + h][2], kv4[k][2], qv.val[2]);
                acc[k * NQ + h][3] = vfmaq_f32(acc[k * NQ + h][3], kv4[k][3], qv.val[3]);
            }
        }
    }
    /* lane l of sum: (position, head) l's (a + b) + (c + d) over its
     * chains' pair sums, as vaddvq_f32 adds them */
#pragma GCC unroll 4
    for (i = 0; i < 4; i++) {
        x[i] = i < NQ * NP ? vaddq_f32(vaddq_f32(acc[i][0], acc[i][1]),
                                       vaddq_f32(acc[i][2], acc[i][3]))
                           : x[0];
    }
    s01 = vpaddq_f32(x[0], x[1]);
    s23 = NQ * NP > 2 ? vpaddq_f32(x[2], x[3]) : s01;
    sum = vmulq_n_f32(vpaddq_f32(s01, s23), scale);
    scores[0] = vgetq_lane_f32(sum, 0);
#define SCORE_LANE(l) \
    if (NQ * NP > (l)) scores[(size_t) ((l) % NQ) * rows + (l) / NQ] = vgetq_lane_f32(sum, l)
    SCORE_LANE(1);
    SCORE_LANE(2);
    SCORE_LANE(3);
#undef SCORE_LANE
}

/* scores[h][t] = scale * q[h] . K[t] for NQ heads and positions t0 ..
 * t1 - 1 (scores_at), two positions at a time where the accumulators fit
 * (up to 2 heads): the query loads shared by both. */
ARM_INLINE void
rows_scores(int hd, const int NQ, const float *q, const qwen_kv_view *kv, int t0, int t1,
            float scale, float *scores, int rows, const int kind)
{
    int t, end;

    for (t = t0; t < t1;) {
        const void *blk = qwen_kv_block_k(kv, t), *kt[2];

        /* the positions of this block: one address per block, not per row */
        end = (t / QWEN_KV_BLOCK + 1) * QWEN_KV_BLOCK;
        end = end < t1 ? end : t1;
        if (NQ <= 2) {
            for (; t + 2 <= end; t += 2) {
                kt[0] = row_at(blk, t % QWEN_KV_BLOCK, hd, kind);
                kt[1] = row_at(blk, t % QWEN_KV_BLOCK + 1, hd, kind);
                scores_at(hd, NQ, 2, q, kt, scale, scores + t, rows, kind);
            }
        }
        for (; t < end; t++) {
            kt[0] = row_at(blk, t % QWEN_KV_BLOCK, hd, kind);
            scores_at(hd, NQ, 1, q, kt, scale, scores + t, rows, kind);
        }
    }
}

/* acc[h][j] += V[t][j] p[h][t] for NH rows, position t's J vectors v */
#define ROWS_FMA(lane)                                                          \
    do {                                                                       \
        _Pragma("GCC unroll 4") for (h = 0; h < NH; h++) {                     \
            _Pragma("GCC unroll 8") for (j = 0; j < J; j++) {                  \
                acc[h][j] = vfmaq_laneq_f32(acc[h][j], v[j], w[h], lane);      \
            }                                                                  \
        }                                                                      \
    } while (0)

/* J (even) vectors of 4 values of a row from d0 as floats; f16 eight
 * values a load (half the loads of load4) */
ARM_INLINE void
load_row(const void *row, int d0, const int J, float32x4_t *v, const int kind)
{
    int j;

    if (kind == 1) {
#pragma GCC unroll 4
        for (j = 0; j < J; j += 2) {
            float16x8_t h = vreinterpretq_f16_u16(vld1q_u16((const uint16_t *) row + d0 + 4 * j));

            v[j] = vcvt_f32_f16(vget_low_f16(h));
            v[j + 1] = vcvt_high_f32_f16(h);
        }
        return;
    }
#pragma GCC unroll 8
    for (j = 0; j < J; j++) {
        v[j] = load4(row, d0 + 4 * j, kind);
    }
}

/*
 * o[h] += sum over positions t0 .. t1 - 1 of region vr of p[h][t] V[t] for
 * NH rows (1 to 4; p[h] and o[h] are a row's probabilities from the
 * region's first position and its output) and 4J dimensions from d0 (J 8
 * for one row, else 4: at most 16 accumulators, none spilled). Each V row
 * is converted once for the rows; probabilities are read 4 positions at a
 * time. Per lane one fused multiply-add a position, in position order.
 */
ARM_INLINE void
rows_values(int hd, const int NH, const int J, const float *const *p, const void *vr, int t0,
            int t1, int d0, float *const *o, const int kind)
{
    float32x4_t acc[4][8], v[8], w[4];
    int         t, h, j;

#pragma GCC unroll 4
    for (h = 0; h < NH; h++) {
#pragma GCC unroll 8
        for (j = 0; j < J; j++) {
            acc[h][j] = vld1q_f32(o[h] + d0 + 4 * j);
        }
    }
    for (t = t0; t + 4 <= t1; t += 4) {
#pragma GCC unroll 4
        for (h = 0; h < NH; h++) {
            w[h] = vld1q_f32(p[h] + t);
        }
        load_row(row_at(vr, t, hd, kind), d0, J, v, kind);
        ROWS_FMA(0);
        load_row(row_at(vr, t + 1, hd, kind), d0, J, v, kind);
        ROWS_FMA(1);
        load_row(row_at(vr, t + 2, hd, kind), d0, J, v, kind);
        ROWS_FMA(2);
        load_row(row_at(vr, t + 3, hd, kind), d0, J, v, kind);
        ROWS_FMA(3);
    }
    for (; t < t1; t++) {
#pragma GCC unroll 4
        for (h = 0; h < NH; h++) {
            w[h] = vdupq_n_f32(p[h][t]);
        }
        load_row(row_at(vr, t, hd, kind), d0, J, v, kind);
        ROWS_FMA(0);
    }
#pragma GCC unroll 4
    for (h = 0; h < NH; h++) {
#pragma GCC unroll 8
        for (j = 0; j < J; j++) {
            vst1q_f32(o[h] + d0 + 4 * j, acc[h][j]);
        }
    }
}
#undef ROWS_FMA

/* rows_values over all of hd for n rows (1 to 4) */
ARM_INLINE void
rows_values_hd(int hd, int n, const float *const *p, const void *vr, int t0, int t1,
               float *const *o, const int kind)
{
    int d0;

    switch (n) {
    case 1:
        for (d0 = 0; d0 < hd; d0 += 32) rows_values(hd, 1, 8, p, vr, t0, t1, d0, o, kind);
        break;
    case 2:
        for (d0 = 0; d0 < hd; d0 += 16) rows_values(hd, 2, 4, p, vr, t0, t1, d0, o, kind);
        break;
    case 3:
        for (d0 = 0; d0 < hd; d0 += 16) rows_values(hd, 3, 4, p, vr, t0, t1, d0, o, kind);
        break;
    default:
        for (d0 = 0; d0 < hd; d0 += 16) rows_values(hd, 4, 4, p, vr, t0, t1, d0, o, kind);
        break;
    }
}

/* rows_scores for n (1 to 4) query rows */
ARM_INLINE void
scores_n(int hd, int n, const float *q, const qwen_kv_view *kv, int t0, int t1, float scale,
         float *scores, int rows, const int kind)
{
    switch (n) {
    case 1: rows_scores(hd, 1, q, kv, t0, t1, scale, scores, rows, kind); break;
    case 2: rows_scores(hd, 2, q, kv, t0, t1, scale, scores, rows, kind); break;
    case 3: rows_scores(hd, 3, q, kv, t0, t1, scale, scores, rows, kind); break;
    default: rows_scores(hd, 4, q, kv, t0, t1, scale, scores, rows, kind); break;
    }
}

/*
 * Attention over a row format (f32 or f16) for up to 4 query heads at a
 * time: scores, softmax with the vector exp, then V one region at a time
 * (read once, in order), 32 dimensions by 2 heads per pass. hd must be a
 * multiple of 32 (Qwen3: 128), else the scalar versions run.
 */
ARM_INLINE void
attention_rows(int hd, int n_q, const float *q, const qwen_kv_view *kv, int n_pos, float scale,
               float *scratch, float *out, const int kind)
{
    int          rows = qwen_kv_rows(n_pos), h0, nh, h, i, r, np;
    float        sums[4];
    const float *p[2];
    float       *o[2];

    for (h0 = 0; h0 < n_q; h0 += nh) {
        float       *sc0 = scratch + (size_t) h0 * rows, *o0 = out + (size_t) h0 * hd;
        const float *q0 = q + (size_t) h0 * hd;

        nh = n_q - h0 < 4 ? n_q - h0 : 4;
        scores_n(hd, nh, q0, kv, 0, n_pos, scale, sc0, rows, kind);
        for (h = 0; h < nh; h++) {
            sums[h] = arm_softmax_exp(sc0 + (size_t) h * rows, n_pos);
        }
        memset(o0, 0, (size_t) nh * hd * sizeof(float));
        for (r = 0; r < n_pos; r += QWEN_KV_BLOCK) {
            const void *vr = qwen_kv_block_v(kv, r);

            np = n_pos - r < QWEN_KV_BLOCK ? n_pos - r : QWEN_KV_BLOCK;
            for (h = 0; h < nh; h += 2) {
                p[0] = sc0 + (size_t) h * rows + r;
                p[1] = p[0] + rows;
                o[0] = o0 + (size_t) h * hd;
                o[1] = o[0] + hd;
                rows_values_hd(hd, nh - h < 2 ? 1 : 2, p, vr, 0, np, o, kind);
            }
        }
        for (h = 0; h < nh; h++) {
            float *o = o0 + (size_t) h * hd;

            for (i = 0; i < hd; i += 4) {
                vst1q_f32(o + i, vmulq_n_f32(vld1q_f32(o + i), 1.0f / sums[h]));
            }
        }
    }
}

/*
 * m consecutive tokens of a sequence (qwen_kv_attention_tokens_fn): the
 * tokens go through in passes of 4 query rows (2 tokens of a GQA pair, 4
 * of single heads); a pass's K rows and each region's V rows are converted
 * once for its rows. Token j's scores, softmax and per-lane V sums are
 * attention_rows' operations in its order (its bits): the positions all
 * the pass's tokens see first, then, per region, a later token's few more.
 */
ARM_INLINE void
attention_rows_tokens(int hd, int n_q, int m, const float *q, size_t q_stride,
                      const qwen_kv_view *kv, int n_pos, float scale, float *scratch,
                      float *out, size_t out_stride, const int kind)
{
    int          rows = qwen_kv_rows(n_pos + m - 1), per, j0, np, nr, j, h, r, i, lo, hi, k;
    float        qb[4 * QWEN_KV_MAX_HD], sums[QWEN_KV_ATT_TOKENS][2];
    const float *p[4];
    float       *o[4];

    per = 4 / n_q;   /* tokens a pass of the scores (4 query rows) */
    for (j0 = 0; j0 < m; j0 += per) {
        np = m - j0 < per ? m - j0 : per;
        for (j = 0; j < np; j++) {
            memcpy(qb + (size_t) j * n_q * hd, q + (j0 + j) * q_stride,
                   (size_t) n_q * hd * sizeof(float));
        }
        /* the positions every token of the pass sees, then each later
         * token's own */
        scores_n(hd, np * n_q, qb, kv, 0, n_pos + j0, scale,
                 scratch + (size_t) j0 * n_q * rows, rows, kind);
        for (j = 1; j < np; j++) {
            scores_n(hd, n_q, q + (j0 + j) * q_stride, kv, n_pos + j0, n_pos + j0 + j, scale,
                     scratch + (size_t) (j0 + j) * n_q * rows, rows, kind);
        }
    }
    for (j = 0; j < m; j++) {
        for (h = 0; h < n_q; h++) {
            sums[j][h] = arm_softmax_exp(scratch + (size_t) (j * n_q + h) * rows, n_pos + j);
        }
        memset(out + j * out_stride, 0, (size_t) n_q * hd * sizeof(float));
    }
    for (r = 0; r < n_pos + m - 1; r += QWEN_KV_BLOCK) {
        const void *vr = qwen_kv_block_v(kv, r);

        for (j0 = 0; j0 < m; j0 += per) {
            np = m - j0 < per ? m - j0 : per;
            nr = 0;
            for (j = j0; j < j0 + np; j++) {
                for (h = 0; h < n_q; h++, nr++) {
                    p[nr] = scratch + (size_t) (j * n_q + h) * rows + r;
                    o[nr] = out + j * out_stride + (size_t) h * hd;
                }
            }
            /* positions r .. of this region that token j0 sees: all rows */
            hi = n_pos + j0 - r;
            hi = hi < QWEN_KV_BLOCK ? hi : QWEN_KV_BLOCK;
            if (hi > 0) {
                rows_values_hd(hd, nr, p, vr, 0, hi, o, kind);
            }
            /* a later token's positions past token j0's, in this region */
            for (k = 1; k < np; k++) {
                lo = n_pos + j0 - r > 0 ? n_pos + j0 - r : 0;
                hi = n_pos + j0 + k - r;
                hi = hi < QWEN_KV_BLOCK ? hi : QWEN_KV_BLOCK;
                if (lo < hi) {
                    rows_values_hd(hd, n_q, p + k * n_q, vr, lo, hi, o + k * n_q, kind);
                }
            }
        }
    }
    for (j = 0; j < m; j++) {
        for (h = 0; h < n_q; h++) {
            float *ov = out + j * out_stride + (size_t) h * hd;

            for (i = 0; i < hd; i += 4) {
                vst1q_f32(ov + i, vmulq_n_f32(vld1q_f32(ov + i), 1.0f / sums[j][h]));
            }
        }
    }
}

static void
attention_f32(int hd, int n_q, const float *q, const qwen_kv_view *kv, int n_pos, float scale,
              float *scratch, float *out)
{
    if (hd % 32 != 0) {
        qwen_attention_f32_ref(hd, n_q, q, kv, n_pos, scale, scratch, out);
        return;
    }
    attention_rows(hd, n_q, q, kv, n_pos, scale, scratch, out, 0);
}

static void
attention_f16(int hd, int n_q, const float *q, const qwen_kv_view *kv, int n_pos, float scale,
              float *scratch, float *out)
{
    if (hd % 32 != 0) {
        qwen_attention_generic(qwen_kernels_neon(), hd, n_q, q, kv, n_pos, scale, scratch, out);
        return;
    }
    attention_rows(hd, n_q, q, kv, n_pos, scale, scratch, out, 1);
}

/* the tokens of a row format (kind 0 F32, 1 F16), or one at a time where
 * the passes do not take the heads (hd not a multiple of 32 or above the
 * stack's copy of the queries, more than a GQA pair) */
ARM_INLINE void
attention_tokens(int hd, int n_q, int m, const float *q, size_t q_stride, const qwen_kv_view *kv,
                 int n_pos, float scale, float *scratch, float *out, size_t out_stride,
                 const int kind)
{
    if (hd % 32 != 0 || hd > QWEN_KV_MAX_HD || n_q > 2 || m > QWEN_KV_ATT_TOKENS) {
        qwen_attention_each(kind == 0 ? attention_f32 : attention_f16, hd, n_q, m, q, q_stride,
                            kv, n_pos, scale, scratch, out, out_stride);
        return;
    }
    attention_rows_tokens(hd, n_q, m, q, q_stride, kv, n_pos, scale, scratch, out, out_stride,
                          kind);
}

static void
attention_tokens_f32(int hd, int n_q, int m, const float *q, size_t q_stride,
                     const qwen_kv_view *kv, int n_pos, float scale, float *scratch, float *out,
                     size_t out_stride)
{
    attention_tokens(hd, n_q, m, q, q_stride, kv, n_pos, scale, scratch, out, out_stride, 0);
}

static void
attention_tokens_f16(int hd, int n_q, int m, const float *q, size_t q_stride,
                     const qwen_kv_view *kv, int n_pos, float scale, float *scratch, float *out,
                     size_t out_stride)
{
    attention_tokens(hd, n_q, m, q, q_stride, kv, n_pos, scale, scratch, out, out_stride, 1);
}

/* q8_0 with SMULL-based group dots (no SDOT on this ISA level) */
static void
attention_q8_0(int hd, int n_q, const float *q, const qwen_kv_view *kv, int n_pos, float scale,
               float *scratch, float *out)
{
    arm_attention_q8_0(hd, n_q, q, kv, n_pos, scale, scratch, out);
}

/*
 * elementwise.c's RMS norm (kernels.h: rmsnorm), 8 elements a step: its
 * eight double sums are four float64x2 chains (lane j of chain c is sum
 * 2c + j; a float's square is exact in double, so fused or not the sums
 * are the same), the scale in the same double operations, then
 * (x * scale) * w. 22 instructions per 8 elements where the compiled C
 * takes 44: the norms run 5 times a layer per token (q and k per head).
 */
static void
rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps)
{
    float64x2_t c[4] = { vdupq_n_f64(0.0), vdupq_n_f64(0.0), vdupq_n_f64(0.0),
                         vdupq_n_f64(0.0) };
    double      s[8], ss;
    float       scale;
    int64_t     i;

    for (i = 0; i + 8 <= n; i += 8) {
        float32x4x2_t v = vld1q_f32_x2(x + i);
        float64x2_t   d0 = vcvt_f64_f32(vget_low_f32(v.val[0]));
        float64x2_t   d1 = vcvt_high_f64_f32(v.val[0]);
        float64x2_t   d2 = vcvt_f64_f32(vget_low_f32(v.val[1]));
        float64x2_t   d3 = vcvt_high_f64_f32(v.val[1]);

        c[0] = vfmaq_f64(c[0], d0, d0);
        c[1] = vfmaq_f64(c[1], d1, d1);
        c[2] = vfmaq_f64(c[2], d2, d2);
        c[3] = vfmaq_f64(c[3], d3, d3);
    }
    vst1q_f64(s, c[0]);
    vst1q_f64(s + 2, c[1]);
    vst1q_f64(s + 4, c[2]);
    vst1q_f64(s + 6, c[3]);
    for (; i < n; i++) {
        s[0] += (double) x[i] * x[i];
    }
    ss = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    scale = (float) (1.0 / sqrt(ss / (double) n + eps));
    for (i = 0; i + 8 <= n; i += 8) {
        float32x4x2_t v = vld1q_f32_x2(x + i), g = vld1q_f32_x2(w + i);

        v.val[0] = vmulq_f32(vmulq_n_f32(v.val[0], scale), g.val[0]);
        v.val[1] = vmulq_f32(vmulq_n_f32(v.val[1], scale), g.val[1]);
        vst1q_f32_x2(out + i, v);
    }
    for (; i + 4 <= n; i += 4) {
        vst1q_f32(out + i, vmulq_f32(vmulq_n_f32(vld1q_f32(x + i), scale), vld1q_f32(w + i)));
    }
    for (; i < n; i++) {
        out[i] = x[i] * scale * w[i];
    }
}

/* The Q8_0 activation quantizer, qwen_quantize_row_q8_0's bytes: FCVTAS
 * rounds half away from zero as roundf does, FCVTN rounds the scale to f16
 * as qwen_f32_to_f16 does, and the narrowing wraps as the (int8_t) cast.
 * Once per matmul, but scalar it was 3% of a decoded token. */
static void
quantize_q8_0(const float *x, block_q8_0 *y, int64_t n)
{
    int64_t b;
    int     k;

    for (b = 0; b < n / QK8_0; b++, x += QK8_0) {
        float32x4x4_t lo = vld1q_f32_x4(x), hi = vld1q_f32_x4(x + 16);
        float32x4_t   v[8] = { lo.val[0], lo.val[1], lo.val[2], lo.val[3],
                               hi.val[0], hi.val[1], hi.val[2], hi.val[3] };
        float32x4_t   m = vabsq_f32(v[0]);
        int16x8_t     q16[4];
        float         d, id;

#pragma GCC unroll 8
        for (k = 1; k < 8; k++) {
            m = vmaxq_f32(m, vabsq_f32(v[k]));
        }
        d = vmaxvq_f32(m) / 127.0f;
        id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = vget_lane_u16(vreinterpret_u16_f16(vcvt_f16_f32(vdupq_n_f32(d))), 0);
#pragma GCC unroll 4
        for (k = 0; k < 4; k++) {
            q16[k] = vcombine_s16(vmovn_s32(vcvtaq_s32_f32(vmulq_n_f32(v[2 * k], id))),
                                  vmovn_s32(vcvtaq_s32_f32(vmulq_n_f32(v[2 * k + 1], id))));
        }
        vst1q_s8(y[b].qs, vcombine_s8(vmovn_s16(q16[0]), vmovn_s16(q16[1])));
        vst1q_s8(y[b].qs + 16, vcombine_s8(vmovn_s16(q16[2]), vmovn_s16(q16[3])));
    }
}

/* The Q8_K activation quantizer, qwen_quantize_row_q8_K's bytes: FCVTNS
 * rounds half to even as rintf does; the 16-value sums by SADDLV. */
static void
quantize_q8_K(const float *x, block_q8_K *y, int64_t n)
{
    const int32x4_t lim = vdupq_n_s32(127), nlim = vdupq_n_s32(-127);
    int64_t         b;
    int             i, k;

    for (b = 0; b < n / QK_K; b++, x += QK_K) {
        float32x4_t m = vdupq_n_f32(0.0f);
        float       amax, iscale;

        for (i = 0; i < QK_K; i += 16) {
            float32x4x4_t v = vld1q_f32_x4(x + i);

            m = vmaxq_f32(m, vmaxq_f32(vmaxq_f32(vabsq_f32(v.val[0]), vabsq_f32(v.val[1])),
                                       vmaxq_f32(vabsq_f32(v.val[2]), vabsq_f32(v.val[3]))));
        }
        amax = vmaxvq_f32(m);
        if (amax == 0.0f) {
            memset(&y[b], 0, sizeof(y[b]));
            continue;
        }
        iscale = 127.0f / amax;
        for (i = 0; i < QK_K; i += 16) {
            float32x4x4_t v = vld1q_f32_x4(x + i);
            int32x4_t     q[4];
            int8x16_t     q8;

#pragma GCC unroll 4
            for (k = 0; k < 4; k++) {
                q[k] = vmaxq_s32(vminq_s32(vcvtnq_s32_f32(vmulq_n_f32(v.val[k], iscale)), lim),
                                 nlim);
            }
            q8 = vcombine_s8(vmovn_s16(vcombine_s16(vmovn_s32(q[0]), vmovn_s32(q[1]))),
                             vmovn_s16(vcombine_s16(vmovn_s32(q[2]), vmovn_s32(q[3]))));
            vst1q_s8(y[b].qs + i, q8);
            y[b].bsums[i / 16] = vaddlvq_s8(q8);
        }
        y[b].d = 1.0f / iscale;
    }
}

static void
quantize_act(int act_type, const float *x, void *y, int64_t n)
{
    if (act_type == QWEN_TYPE_Q8_K) {
        quantize_q8_K(x, y, n);
        return;
    }
    if (act_type == QWEN_TYPE_Q8_0) {
        quantize_q8_0(x, y, n);
        return;
    }
    qwen_quantize_row(act_type, x, y, n);
}

/* exported names for the other arm64 tables (arm.h) */
#define ALIAS(name) __attribute__((alias(#name)))
float qwen_neon_dot_f32(int64_t, const void *, const void *) ALIAS(dot_f32);
float qwen_neon_dot_f16(int64_t, const void *, const void *) ALIAS(dot_f16);
float qwen_neon_dot_bf16(int64_t, const void *, const void *) ALIAS(dot_bf16);
void qwen_neon_dot4_f32(int64_t, const void *, const void *, size_t, float *) ALIAS(dot4_f32);
void qwen_neon_dot4_f16(int64_t, const void *, const void *, size_t, float *) ALIAS(dot4_f16);
void qwen_neon_dot4_bf16(int64_t, const void *, const void *, size_t, float *) ALIAS(dot4_bf16);
void qwen_neon_quantize_act(int, const float *, void *, int64_t) ALIAS(quantize_act);
float qwen_neon_dot_f32_f16(int64_t, const float *, const qwen_f16 *) ALIAS(dot_f32_f16);
void qwen_neon_axpy_f16(int64_t, float, const qwen_f16 *, float *) ALIAS(axpy_f16);
void qwen_neon_f32_to_f16(const float *, qwen_f16 *, int64_t) ALIAS(f32_to_f16);
void qwen_neon_kv_store_f16(int, const float *, const float *, void *, void *, int)
    ALIAS(kv_store_f16);
void qwen_neon_attention_f32(int, int, const float *, const qwen_kv_view *, int, float, float *,
                             float *) ALIAS(attention_f32);
void qwen_neon_attention_f16(int, int, const float *, const qwen_kv_view *, int, float, float *,
                             float *) ALIAS(attention_f16);
void qwen_neon_rmsnorm(float *, const float *, const float *, int64_t, float) ALIAS(rmsnorm);
void qwen_neon_attention_tokens_f32(int, int, int, const float *, size_t, const qwen_kv_view *,
                                    int, float, float *, float *, size_t)
    ALIAS(attention_tokens_f32);
void qwen_neon_attention_tokens_f16(int, int, int, const float *, size_t, const qwen_kv_view *,
                                    int, float, float *, float *, size_t)
    ALIAS(attention_tokens_f16);

QWEN_ARM_PACKED_KERNELS(neon)
QWEN_ARM_PACKED_GEMM(neon)
QWEN_ARM_PACKED_GEMM_Q4K(neon)

static const qwen_kernels kernels_neon = {
    .name = "neon",
    QWEN_NEON_FLOAT_ENTRIES,
    QWEN_ARM_QUANT_ENTRIES(neon),
    QWEN_ARM_PACKED_ENTRIES(neon),
    QWEN_ARM_PACKED_GEMM_ENTRIES(neon),
    /* without SDOT the staged Q4_K GEMM stays ahead of the 4-token dots
     * (cortex-a72, 8 tokens: 250.6M instructions a token against 261.0M) */
    .packed_gemm[QWEN_TYPE_Q4_K] = neon_packed_gemm_q4_K,
    .vec_dot2x4[QWEN_TYPE_Q8_0] = neon_dot2x4_q8_0,
    .kv_store[QWEN_KV_Q8_0] = qwen_kv_store_q8_0_ref,
    .kv_attention[QWEN_KV_Q8_0] = attention_q8_0,
};

const qwen_kernels *
qwen_kernels_neon(void)
{
    return &kernels_neon;
}
