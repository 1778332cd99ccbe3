/*
 * i8mm.c - arm64 with the int8 matrix multiply (SMMLA: Neoverse
 * V1/V2, Graviton3/4). One SMMLA multiplies a 2 x 8 tile of int8 by an
 * 8 x 2 tile into four int32 sums: twice the products of an SDOT, but only
 * when two weight rows meet two tokens. So the quantized types get a
 * vec_dot2x4 (2 rows x 4 tokens: prefill and batched decode) on SMMLA,
 * and vec_dot / vec_dot4 (one sequence's decode) on SDOT.
 *
 * All three must agree bit for bit (batch invariance), yet SMMLA leaves the
 * whole integer sum of a (row, token) pair in one lane while SDOT spreads
 * it over four. So every version first finishes each block's integer sum
 * exactly (an integer sum has one value however it was split), then
 * applies the same float operations to it: one fused multiply-add per
 * block by d_w * d_act, in the same order (the SDOT ones are arm.h's
 * templates with EXACT set). The SMMLA lanes are [row 0 token a, row 0
 * token b, row 1 token a, row 1 token b]; lane-wise vector FMA is the
 * scalar fmaf.
 * Compiled with -march=armv8.2-a+dotprod+i8mm; float kernels are the
 * baseline NEON ones, no GEMM (prompt tokens take vec_dot2x4).
 */
#include "kernels/arm/arm.h"
#include "kernels/arm/packed.h"

/* vec_dot and vec_dot4 on SDOT, each block's sum finished (EXACT) */
QWEN_ARM_QUANT_KERNELS(i8mm, 1)

/* The 8-byte halves of two rows, interleaved as SMMLA's operand:
 * lo = [a 0..7, b 0..7], hi = [a 8..15, b 8..15] */
ARM_INLINE int8x16_t
zip_lo(int8x16_t a, int8x16_t b)
{
    return vreinterpretq_s8_s64(vzip1q_s64(vreinterpretq_s64_s8(a), vreinterpretq_s64_s8(b)));
}

ARM_INLINE int8x16_t
zip_hi(int8x16_t a, int8x16_t b)
{
    return vreinterpretq_s8_s64(vzip2q_s64(vreinterpretq_s64_s8(a), vreinterpretq_s64_s8(b)));
}

/* acc + the 2 x 2 sums of rows (w0, w1) and tokens (ya, yb) over 16
 * values: w01 = row pair as [zip_lo, zip_hi] of their 16 bytes. */
ARM_INLINE int32x4_t
mm16(int32x4_t acc, int8x16_t wlo, int8x16_t whi, const int8_t *ya, const int8_t *yb)
{
    int8x16_t a = vld1q_s8(ya), b = vld1q_s8(yb);

    acc = vmmlaq_s32(acc, wlo, zip_lo(a, b));
    return vmmlaq_s32(acc, whi, zip_hi(a, b));
}

/* [p, p, q, q]: a per-row factor in the lanes of an SMMLA tile */
ARM_INLINE float32x4_t
rows_f32(float p, float q)
{
    return vcombine_f32(vdup_n_f32(p), vdup_n_f32(q));
}

ARM_INLINE int32x4_t
rows_s32(int32_t p, int32_t q)
{
    return vcombine_s32(vdup_n_s32(p), vdup_n_s32(q));
}

/* [a, b, a, b]: a per-token factor */
ARM_INLINE float32x4_t
toks_f32(float a, float b)
{
    float32x2_t v = { a, b };

    return vcombine_f32(v, v);
}

/* out8[r * 4 + t] from the tiles of token pairs (0, 1) and (2, 3) */
ARM_INLINE void
store_tiles(float32x4_t t01, float32x4_t t23, float *out8)
{
    out8[0] = vgetq_lane_f32(t01, 0);
    out8[1] = vgetq_lane_f32(t01, 1);
    out8[2] = vgetq_lane_f32(t23, 0);
    out8[3] = vgetq_lane_f32(t23, 1);
    out8[4] = vgetq_lane_f32(t01, 2);
    out8[5] = vgetq_lane_f32(t01, 3);
    out8[6] = vgetq_lane_f32(t23, 2);
    out8[7] = vgetq_lane_f32(t23, 3);
}

/* ------------------------------------------------------------------ Q8_0 */

static void
dot2x4_q8_0(int64_t n, const void *w, size_t w_stride, const void *act, size_t stride,
            float *out8)
{
    const block_q8_0 *x0 = w;
    const block_q8_0 *x1 = (const block_q8_0 *) ((const char *) w + w_stride);
    const block_q8_0 *y[4];
    float32x4_t       acc[2][2];   /* [token pair][chain] */
    int64_t           b, nb = n / QK8_0;
    int               t, p;

    for (t = 0; t < 4; t++) {
        y[t] = ARM_ACT(block_q8_0, act, stride, t);
    }
    for (p = 0; p < 2; p++) {
        acc[p][0] = acc[p][1] = vdupq_n_f32(0.0f);
    }
    for (b = 0; b < nb; b++) {
        int8x16_t   a0 = vld1q_s8(x0[b].qs), a1 = vld1q_s8(x0[b].qs + 16);
        int8x16_t   c0 = vld1q_s8(x1[b].qs), c1 = vld1q_s8(x1[b].qs + 16);
        int8x16_t   w0 = zip_lo(a0, c0), w1 = zip_hi(a0, c0);
        int8x16_t   w2 = zip_lo(a1, c1), w3 = zip_hi(a1, c1);
        float32x4_t dw = rows_f32(arm_f16(x0[b].d), arm_f16(x1[b].d));

        for (p = 0; p < 2; p++) {
            const block_q8_0 *ya = y[2 * p] + b, *yb = y[2 * p + 1] + b;
            int32x4_t         s = mm16(vdupq_n_s32(0), w0, w1, ya->qs, yb->qs);

            s = mm16(s, w2, w3, ya->qs + 16, yb->qs + 16);
            acc[p][b & 1] = vfmaq_f32(acc[p][b & 1], vcvtq_f32_s32(s),
                                      vmulq_f32(dw, toks_f32(arm_f16(ya->d), arm_f16(yb->d))));
        }
    }
    store_tiles(vaddq_f32(acc[0][0], acc[0][1]), vaddq_f32(acc[1][0], acc[1][1]), out8);
}

/* ------------------------------------------------------------------ Q4_K */

/* sum over the 8 sub-blocks of bsums x mins, tokens a and b against the
 * mins of rows 0 and 1, as a tile [0a, 0b, 1a, 1b] */
ARM_INLINE int32x4_t
q4k_min_tile(const block_q8_K *ya, const block_q8_K *yb, int16x8_t m0, int16x8_t m1)
{
    int16x8_t a = arm_q8k_bsums8(ya), b = arm_q8k_bsums8(yb);

    return vpaddq_s32(vpaddq_s32(arm_dot8_s16(a, m0), arm_dot8_s16(b, m0)),
                      vpaddq_s32(arm_dot8_s16(a, m1), arm_dot8_s16(b, m1)));
}

static void
dot2x4_q4_K(int64_t n, const void *w, size_t w_stride, const void *act, size_t stride,
            float *out8)
{
    const block_q4_K *x0 = w;
    const block_q4_K *x1 = (const block_q4_K *) ((const char *) w + w_stride);
    const block_q8_K *y[4];
    const uint8x16_t  m4 = vdupq_n_u8(0xF);
    float32x4_t       facc[2], macc[2];
    int64_t           b, nb = n / QK_K;
    int               j, t, p;

    for (t = 0; t < 4; t++) {
        y[t] = ARM_ACT(block_q8_K, act, stride, t);
    }
    for (p = 0; p < 2; p++) {
        facc[p] = macc[p] = vdupq_n_f32(0.0f);
    }
    for (b = 0; b < nb; b++) {
        uint8_t     sm0[16], sm1[16];
        int32x4_t   isum[2] = { vdupq_n_s32(0), vdupq_n_s32(0) };
        float32x4_t dw = rows_f32(arm_f16(x0[b].d), arm_f16(x1[b].d));
        float32x4_t dmin = rows_f32(arm_f16(x0[b].dmin), arm_f16(x1[b].dmin));
        int16x8_t   mins0, mins1;

        qwen_q4k_scales_mins(x0[b].scales, sm0);
        qwen_q4k_scales_mins(x1[b].scales, sm1);
        for (j = 0; j < QK_K / 64; j++) {
            const uint8_t *qa = x0[b].qs + 32 * j, *qb = x1[b].qs + 32 * j;
            uint8x16_t     a0 = vld1q_u8(qa), a1 = vld1q_u8(qa + 16);
            uint8x16_t     b0 = vld1q_u8(qb), b1 = vld1q_u8(qb + 16);
            /* sub-block 2j: low nibbles, 2j + 1: high nibbles; 4 operand
             * pairs each (values 0-7, 8-15, 16-23, 24-31) */
            int8x16_t      la0 = vreinterpretq_s8_u8(vandq_u8(a0, m4));
            int8x16_t      la1 = vreinterpretq_s8_u8(vandq_u8(a1, m4));
            int8x16_t      lb0 = vreinterpretq_s8_u8(vandq_u8(b0, m4));
            int8x16_t      lb1 = vreinterpretq_s8_u8(vandq_u8(b1, m4));
            int8x16_t      ha0 = vreinterpretq_s8_u8(vshrq_n_u8(a0, 4));
            int8x16_t      ha1 = vreinterpretq_s8_u8(vshrq_n_u8(a1, 4));
            int8x16_t      hb0 = vreinterpretq_s8_u8(vshrq_n_u8(b0, 4));
            int8x16_t      hb1 = vreinterpretq_s8_u8(vshrq_n_u8(b1, 4));
            int8x16_t      L0 = zip_lo(la0, lb0), L1 = zip_hi(la0, lb0);
            int8x16_t      L2 = zip_lo(la1, lb1), L3 = zip_hi(la1, lb1);
            int8x16_t      H0 = zip_lo(ha0, hb0), H1 = zip_hi(ha0, hb0);
            int8x16_t      H2 = zip_lo(ha1, hb1), H3 = zip_hi(ha1, hb1);
            int32x4_t      sl = rows_s32(sm0[2 * j], sm1[2 * j]);
            int32x4_t      sh = rows_s32(sm0[2 * j + 1], sm1[2 * j + 1]);

            for (p = 0; p < 2; p++) {
                const int8_t *ya = y[2 * p][b].qs + 64 * j, *yb = y[2 * p + 1][b].qs + 64 * j;
                int32x4_t     l = mm16(vdupq_n_s32(0), L0, L1, ya, yb);
                int32x4_t     h = mm16(vdupq_n_s32(0), H0, H1, ya + 32, yb + 32);

                l = mm16(l, L2, L3, ya + 16, yb + 16);
                h = mm16(h, H2, H3, ya + 48, yb + 48);
                isum[p] = vmlaq_s32(vmlaq_s32(isum[p], l, sl), h, sh);
            }
        }
        mins0 = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(sm0 + 8)));
        mins1 = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(sm1 + 8)));
        for (p = 0; p < 2; p++) {
            const block_q8_K *ya = y[2 * p] + b, *yb = y[2 * p + 1] + b;
            float32x4_t       dy = toks_f32(ya->d, yb->d);
            int32x4_t         ms = q4k_min_tile(ya, yb, mins0, mins1);

            facc[p] = vfmaq_f32(facc[p], vcvtq_f32_s32(isum[p]), vmulq_f32(dw, dy));
            macc[p] = vfmaq_f32(macc[p], vcvtq_f32_s32(ms), vmulq_f32(dmin, dy));
        }
    }
    store_tiles(vsubq_f32(facc[0], macc[0]), vsubq_f32(facc[1], macc[1]), out8);
}

/* ------------------------------------------------------------------ Q6_K */

static void
dot2x4_q6_K(int64_t n, const void *w, size_t w_stride, const void *act, size_t stride,
            float *out8)
{
    const block_q6_K *x0 = w;
    const block_q6_K *x1 = (const block_q6_K *) ((const char *) w + w_stride);
    const block_q8_K *y[4];
    float32x4_t       facc[2];
    int64_t           b, nb = n / QK_K;
    int               half, g, i, t, p;

    for (t = 0; t < 4; t++) {
        y[t] = ARM_ACT(block_q8_K, act, stride, t);
    }
    facc[0] = facc[1] = vdupq_n_f32(0.0f);
    for (b = 0; b < nb; b++) {
        int32x4_t   isum[2] = { vdupq_n_s32(0), vdupq_n_s32(0) };
        float32x4_t dw = rows_f32(arm_f16(x0[b].d), arm_f16(x1[b].d));

        for (half = 0; half < 2; half++) {
            int8x16_t qa[4][2], qb[4][2];

            arm_q6k_unpack_half(x0[b].ql + 64 * half, x0[b].qh + 32 * half, qa);
            arm_q6k_unpack_half(x1[b].ql + 64 * half, x1[b].qh + 32 * half, qb);
            for (g = 0; g < 4; g++) {
                for (i = 0; i < 2; i++) {
                    int       s = 8 * half + 2 * g + i, off = 128 * half + 32 * g + 16 * i;
                    int8x16_t wlo = zip_lo(qa[g][i], qb[g][i]);
                    int8x16_t whi = zip_hi(qa[g][i], qb[g][i]);
                    int32x4_t sc = rows_s32(x0[b].scales[s], x1[b].scales[s]);

                    for (p = 0; p < 2; p++) {
                        int32x4_t d = mm16(vdupq_n_s32(0), wlo, whi, y[2 * p][b].qs + off,
                                           y[2 * p + 1][b].qs + off);
                        isum[p] = vmlaq_s32(isum[p], d, sc);
                    }
                }
            }
        }
        for (p = 0; p < 2; p++) {
            float32x4_t dy = toks_f32(y[2 * p][b].d, y[2 * p + 1][b].d);

            facc[p] = vfmaq_f32(facc[p], vcvtq_f32_s32(isum[p]), vmulq_f32(dw, dy));
        }
    }
    store_tiles(facc[0], facc[1], out8);
}

QWEN_ARM_PACKED_KERNELS(i8mm)

/* ------------------------------------------- packed Q4_K, prompt tokens */

/*
 * The packed layout (repack.h) puts 4 bytes of a row per step, SDOT's
 * shape; SMMLA wants 8 bytes of each of two rows. Zipping them for every
 * token pair would cost what SMMLA saves, so a call restages one
 * super-block of its group at a time into SMMLA's operand order (with the
 * nibbles, scales, mins and scales already unpacked) and streams all its
 * tokens past it, two at a time: the restaging is paid once per call.
 * Tiles are [row a token a, row a token b, row b token a, row b token b].
 */
typedef struct {
    int8_t  w[QK_K / 32][4][4][16];  /* [sub-block][8 columns][row pair]: values 0 .. 15 */
    int32_t sc[QK_K / 32][4][4];     /* [sub-block][row pair]: scale a, a, b, b */
    int8_t  mn[4][16];               /* [row pair]: row a's 8 mins (by sub-block), row b's */
    float   d[4][4], dmin[4][4];     /* [row pair]: a, a, b, b */
} q4k_stage;

#define Q4K_MM_PAIRS 32   /* token pairs whose float sums stay on the stack */

/* The float sums of np token pairs (nt tokens: the last pair may hold one)
 * to their rows out[idx[t] * out_stride + r]: a tile's even lanes are
 * token a's, its odd lanes token b's */
static void
store_pair_tiles(float32x4_t acc[][4], int np, int nt, float *out, size_t out_stride,
                 const int32_t *idx)
{
    int p;

    for (p = 0; p < np; p++) {
        float *oa = out + (size_t) idx[2 * p] * out_stride;

        vst1q_f32(oa, vuzp1q_f32(acc[p][0], acc[p][1]));
        vst1q_f32(oa + 4, vuzp1q_f32(acc[p][2], acc[p][3]));
        if (2 * p + 1 < nt) {
            float *ob = out + (size_t) idx[2 * p + 1] * out_stride;

            vst1q_f32(ob, vuzp2q_f32(acc[p][0], acc[p][1]));
            vst1q_f32(ob + 4, vuzp2q_f32(acc[p][2], acc[p][3]));
        }
    }
}

/* [lo.0, lo.0, lo.1, lo.1], [lo.2, ..], [hi.0, ..], [hi.2, ..]: 8 rows'
 * values as the row-pair pattern of a tile */
ARM_INLINE void
rows4_u32(uint32x4_t lo, uint32x4_t hi, int32_t out[4][4])
{
    vst1q_s32(out[0], vreinterpretq_s32_u32(vzip1q_u32(lo, lo)));
    vst1q_s32(out[1], vreinterpretq_s32_u32(vzip2q_u32(lo, lo)));
    vst1q_s32(out[2], vreinterpretq_s32_u32(vzip1q_u32(hi, hi)));
    vst1q_s32(out[3], vreinterpretq_s32_u32(vzip2q_u32(hi, hi)));
}

ARM_INLINE void
rows4_f32(float32x4_t lo, float32x4_t hi, float out[4][4])
{
    vst1q_f32(out[0], vzip1q_f32(lo, lo));
    vst1q_f32(out[1], vzip2q_f32(lo, lo));
    vst1q_f32(out[2], vzip1q_f32(hi, hi));
    vst1q_f32(out[3], vzip2q_f32(hi, hi));
}

static void
q4k_restage(const block_q4_Kx8 *x, q4k_stage *st)
{
    const uint8x16_t m4 = vdupq_n_u8(0xF);
    float32x4_t      lo, hi;
    uint16x8x4_t     mv;
    uint16x8_t       e0, e1;
    int              j, m, rp, sb;

    for (j = 0; j < QK_K / 64; j++) {
#pragma GCC unroll 4
        for (m = 0; m < 4; m++) {
            /* steps 2m, 2m + 1: rows 0-3 and 4-7 of each */
            uint8x16x4_t q = vld1q_u8_x4(x->qs[j][2 * m][0]);
            uint32x4_t   a = vreinterpretq_u32_u8(q.val[0]), a4 = vreinterpretq_u32_u8(q.val[1]);
            uint32x4_t   b = vreinterpretq_u32_u8(q.val[2]), b4 = vreinterpretq_u32_u8(q.val[3]);
            uint8x16_t   p[4] = { vreinterpretq_u8_u32(vzip1q_u32(a, b)),
                                  vreinterpretq_u8_u32(vzip2q_u32(a, b)),
                                  vreinterpretq_u8_u32(vzip1q_u32(a4, b4)),
                                  vreinterpretq_u8_u32(vzip2q_u32(a4, b4)) };

#pragma GCC unroll 4
            for (rp = 0; rp < 4; rp++) {
                vst1q_s8(st->w[2 * j][m][rp], vreinterpretq_s8_u8(vandq_u8(p[rp], m4)));
                vst1q_s8(st->w[2 * j + 1][m][rp], vreinterpretq_s8_u8(vshrq_n_u8(p[rp], 4)));
            }
        }
    }
    for (sb = 0; sb < QK_K / 32; sb++) {
        uint16x8_t s = vmovl_u8(vld1_u8(x->scales[sb]));

        rows4_u32(vmovl_u16(vget_low_u16(s)), vmovl_high_u16(s), st->sc[sb]);
    }
    /* mins [pair][row][2]: as 16-bit elements, row r of pair p is element
     * r of vector p; a 4 x 8 transpose gives each row's 8 mins in order */
    mv = vld1q_u16_x4((const uint16_t *) x->mins[0][0]);
    e0 = vzip1q_u16(mv.val[0], mv.val[1]);
    e1 = vzip1q_u16(mv.val[2], mv.val[3]);
    vst1q_u16((uint16_t *) st->mn[0], vreinterpretq_u16_u32(vzip1q_u32(
        vreinterpretq_u32_u16(e0), vreinterpretq_u32_u16(e1))));
    vst1q_u16((uint16_t *) st->mn[1], vreinterpretq_u16_u32(vzip2q_u32(
        vreinterpretq_u32_u16(e0), vreinterpretq_u32_u16(e1))));
    e0 = vzip2q_u16(mv.val[0], mv.val[1]);
    e1 = vzip2q_u16(mv.val[2], mv.val[3]);
    vst1q_u16((uint16_t *) st->mn[2], vreinterpretq_u16_u32(vzip1q_u32(
        vreinterpretq_u32_u16(e0), vreinterpretq_u32_u16(e1))));
    vst1q_u16((uint16_t *) st->mn[3], vreinterpretq_u16_u32(vzip2q_u32(
        vreinterpretq_u32_u16(e0), vreinterpretq_u32_u16(e1))));
    arm_f16x8(x->d, &lo, &hi);
    rows4_f32(lo, hi, st->d);
    arm_f16x8(x->dmin, &lo, &hi);
    rows4_f32(lo, hi, st->dmin);
}

/* The activation sums of a token's 8 sub-blocks, split for SMMLA's int8
 * operands: bs = 64 h + l with l in 0 .. 63 (|bs| <= 32 x 128, so h fits) */
ARM_INLINE int16x8_t
q8k_sub_sums(const block_q8_K *y)
{
    return vpaddq_s16(vld1q_s16(y->bsums), vld1q_s16(y->bsums + 8));
}

/* One token pair against the staged super-block: acc[rp] as
 * qwen_packed_dot_ref does it per lane (fmaf by d * dy of the exact
 * integer sum, then by -(dmin * dy) of the exact mins sum). */
ARM_INLINE void
q4k_mm_pair(const q4k_stage *st, const block_q8_K *ya, const block_q8_K *yb, float32x4_t acc[4])
{
    const int32x4_t zero = vdupq_n_s32(0);
    int32x4_t       is[4] = { zero, zero, zero, zero }, ms[4];
    int16x8_t       ba = q8k_sub_sums(ya), bb = q8k_sub_sums(yb);
    const int16x8_t m63 = vdupq_n_s16(63);
    int8x16_t       l = vcombine_s8(vmovn_s16(vandq_s16(ba, m63)), vmovn_s16(vandq_s16(bb, m63)));
    int8x16_t       h = vcombine_s8(vmovn_s16(vshrq_n_s16(ba, 6)), vmovn_s16(vshrq_n_s16(bb, 6)));
    int8x16x4_t     mn = vld1q_s8_x4(st->mn[0]);
    float32x4_t     dy = toks_f32(ya->d, yb->d);
    float32x4x4_t   d = vld1q_f32_x4(st->d[0]), dmin = vld1q_f32_x4(st->dmin[0]);
    int             sb, m, rp;

    for (sb = 0; sb < QK_K / 32; sb++) {
        int8x16_t   a0 = vld1q_s8(ya->qs + 32 * sb), a1 = vld1q_s8(ya->qs + 32 * sb + 16);
        int8x16_t   b0 = vld1q_s8(yb->qs + 32 * sb), b1 = vld1q_s8(yb->qs + 32 * sb + 16);
        int8x16_t   y[4] = { zip_lo(a0, b0), zip_hi(a0, b0), zip_lo(a1, b1), zip_hi(a1, b1) };
        int32x4_t   s[4] = { zero, zero, zero, zero };
        int32x4x4_t sc = vld1q_s32_x4(st->sc[sb][0]);

#pragma GCC unroll 4
        for (m = 0; m < 4; m++) {
            int8x16x4_t w = vld1q_s8_x4(st->w[sb][m][0]);

            s[0] = vmmlaq_s32(s[0], w.val[0], y[m]);
            s[1] = vmmlaq_s32(s[1], w.val[1], y[m]);
            s[2] = vmmlaq_s32(s[2], w.val[2], y[m]);
            s[3] = vmmlaq_s32(s[3], w.val[3], y[m]);
        }
#pragma GCC unroll 4
        for (rp = 0; rp < 4; rp++) {
            is[rp] = vmlaq_s32(is[rp], s[rp], sc.val[rp]);
        }
    }
#pragma GCC unroll 4
    for (rp = 0; rp < 4; rp++) {
        ms[rp] = vmmlaq_s32(vshlq_n_s32(vmmlaq_s32(zero, mn.val[rp], h), 6), mn.val[rp], l);
        acc[rp] = vfmsq_f32(vfmaq_f32(acc[rp], vmulq_f32(d.val[rp], dy), vcvtq_f32_s32(is[rp])),
                            vmulq_f32(dmin.val[rp], dy), vcvtq_f32_s32(ms[rp]));
    }
}

static void
smmla_packed_gemm_q4_K(int64_t n, const void *w, const void *act, size_t stride, int n_tok,
                      float *out, size_t out_stride, const int32_t *idx)
{
    const block_q4_Kx8 *x = w;
    int64_t             b, nb = n / QK_K;
    q4k_stage           st;
    float32x4_t         acc[Q4K_MM_PAIRS][4];
    int                 t0, nt, np, p;

    for (t0 = 0; t0 < n_tok; t0 += 2 * Q4K_MM_PAIRS) {
        nt = n_tok - t0 < 2 * Q4K_MM_PAIRS ? n_tok - t0 : 2 * Q4K_MM_PAIRS;
        np = (nt + 1) / 2;
        memset(acc, 0, (size_t) np * sizeof(acc[0]));
        for (b = 0; b < nb; b++) {
            q4k_restage(x + b, &st);
            for (p = 0; p < np; p++) {
                int ta = t0 + 2 * p, tb = 2 * p + 1 < nt ? ta + 1 : ta;   /* odd: twice */

                q4k_mm_pair(&st, ARM_ACT(block_q8_K, act, stride, ta) + b,
                            ARM_ACT(block_q8_K, act, stride, tb) + b, acc[p]);
            }
        }
        store_pair_tiles(acc, np, nt, out, out_stride, idx + t0);
    }
}

/* ------------------------------------------- packed Q8_0, prompt tokens */

/*
 * Q8_0 activations as the GEMM reads them, made once per matmul
 * (packed_gemm_act): per token pair and block, SMMLA's four operands (m:
 * columns 8m .. 8m + 7 of token a, then of token b) and the scales as
 * floats in the tile's pattern [a, b, a, b]. Zipping them in the GEMM cost
 * a zip per operand and a scale conversion per row group (a third of its
 * instructions); here they are paid once for all the rows.
 */
typedef struct {
    int8_t y[4][16];
    float  d[4];
} q80_pair_block;

static size_t
q80_act_bytes(int act_type, int64_t n, int n_tok)
{
    (void) act_type;
    return (size_t) ((n_tok + 1) / 2) * (size_t) (n / QK8_0) * sizeof(q80_pair_block);
}

/* n_tok tokens from an even one; an odd last token is paired with itself */
static void
q80_act_prep(int64_t n, const void *act, size_t stride, int n_tok, void *out)
{
    q80_pair_block *o = out;
    int64_t         b, nb = n / QK8_0;
    int             t;

    for (t = 0; t < n_tok; t += 2) {
        const block_q8_0 *ya = ARM_ACT(block_q8_0, act, stride, t);
        const block_q8_0 *yb = t + 1 < n_tok ? ARM_ACT(block_q8_0, act, stride, t + 1) : ya;

        for (b = 0; b < nb; b++, o++) {
            int8x16_t p0 = vld1q_s8(ya[b].qs), p1 = vld1q_s8(ya[b].qs + 16);
            int8x16_t q0 = vld1q_s8(yb[b].qs), q1 = vld1q_s8(yb[b].qs + 16);

            vst1q_s8(o->y[0], zip_lo(p0, q0));
            vst1q_s8(o->y[1], zip_hi(p0, q0));
            vst1q_s8(o->y[2], zip_lo(p1, q1));
            vst1q_s8(o->y[3], zip_hi(p1, q1));
            vst1q_f32(o->d, toks_f32(arm_f16(ya[b].d), arm_f16(yb[b].d)));
        }
    }
}

/* As for Q4_K: blocks of a group restaged into SMMLA's operand order (and
 * their scales into tile patterns) a few at a time, every token pair
 * streamed past them with its float sums in registers. A block's operands
 * and scales lie together, so the pair loop reads one stream. */
#define Q80_MM_BLOCKS 16

typedef struct {
    int8_t w[4][4][16];   /* [8 columns][row pair] */
    float  d[4][4];       /* [row pair]: a, a, b, b */
} q80_stage_block;

static void
q80_restage(const block_q8_0x8 *x, int nblk, q80_stage_block *st)
{
    float32x4_t lo, hi;
    int         bb, m;

    for (bb = 0; bb < nblk; bb++) {
#pragma GCC unroll 4
        for (m = 0; m < 4; m++) {
            /* steps 2m, 2m + 1: rows 0-3 and 4-7 of each */
            int8x16x4_t q = vld1q_s8_x4(x[bb].qs[2 * m][0]);
            int32x4_t   a = vreinterpretq_s32_s8(q.val[0]), a4 = vreinterpretq_s32_s8(q.val[1]);
            int32x4_t   b = vreinterpretq_s32_s8(q.val[2]), b4 = vreinterpretq_s32_s8(q.val[3]);

            vst1q_s8(st[bb].w[m][0], vreinterpretq_s8_s32(vzip1q_s32(a, b)));
            vst1q_s8(st[bb].w[m][1], vreinterpretq_s8_s32(vzip2q_s32(a, b)));
            vst1q_s8(st[bb].w[m][2], vreinterpretq_s8_s32(vzip1q_s32(a4, b4)));
            vst1q_s8(st[bb].w[m][3], vreinterpretq_s8_s32(vzip2q_s32(a4, b4)));
        }
        arm_f16x8(x[bb].d, &lo, &hi);
        rows4_f32(lo, hi, st[bb].d);
    }
}

/* NP (1 or 2) token pairs (y[p]: their first restaged block) over nblk
 * restaged blocks: acc[p][rp] += d_w * d_y * (exact block sum), block by
 * block, as qwen_packed_dot_ref does per lane. Two pairs share each
 * weight load (30 of the 32 vector registers); each load steps its
 * pointer on. */
ARM_INLINE void
q80_mm_pairs(const q80_stage_block *st, int nblk, const q80_pair_block *const y[2],
             float32x4_t acc[][4], const int NP)
{
    const int8_t *pw = (const int8_t *) st, *end = pw + (size_t) nblk * sizeof(*st);
    const int8_t *py[2] = { (const int8_t *) y[0], (const int8_t *) y[NP - 1] };
    float32x4_t   a[2][4];
    int           p, rp, m;

#pragma GCC unroll 2
    for (p = 0; p < NP; p++) {
#pragma GCC unroll 4
        for (rp = 0; rp < 4; rp++) {
            a[p][rp] = acc[p][rp];
        }
    }
    while (pw != end) {
        int8x16x4_t   yq[2], w;
        float32x4_t   dy[2];
        float32x4x4_t d;
        int32x4_t     s[2][4];

#pragma GCC unroll 2
        for (p = 0; p < NP; p++) {
            yq[p] = vld1q_s8_x4(py[p]);
            ARM_STEP(py[p], 64);
            dy[p] = vld1q_f32((const float *) py[p]);
            ARM_STEP(py[p], 16);
        }
#pragma GCC unroll 4
        for (m = 0; m < 4; m++) {
            w = vld1q_s8_x4(pw);
            ARM_STEP(pw, 64);
#pragma GCC unroll 2
            for (p = 0; p < NP; p++) {
#pragma GCC unroll 4
                for (rp = 0; rp < 4; rp++) {
                    s[p][rp] = vmmlaq_s32(m == 0 ? vdupq_n_s32(0) : s[p][rp], w.val[rp],
                                          yq[p].val[m]);
                }
            }
        }
        d = vld1q_f32_x4((const float *) pw);
        ARM_STEP(pw, 64);
#pragma GCC unroll 2
        for (p = 0; p < NP; p++) {
#pragma GCC unroll 4
            for (rp = 0; rp < 4; rp++) {
                a[p][rp] = vfmaq_f32(a[p][rp], vmulq_f32(d.val[rp], dy[p]),
                                     vcvtq_f32_s32(s[p][rp]));
            }
        }
    }
#pragma GCC unroll 2
    for (p = 0; p < NP; p++) {
#pragma GCC unroll 4
        for (rp = 0; rp < 4; rp++) {
            acc[p][rp] = a[p][rp];
        }
    }
}

/* act: q80_act_prep's pairs, act_stride bytes a pair */
static void
smmla_packed_gemm_q8_0(int64_t n, const void *w, const void *act, size_t stride, int n_tok,
                       float *out, size_t out_stride, const int32_t *idx)
{
    const block_q8_0x8 *x = w;
    int64_t             b, nb = n / QK8_0;
    q80_stage_block     st[Q80_MM_BLOCKS];
    float32x4_t         acc[Q4K_MM_PAIRS][4];
    int                 t0, nt, np, p, nblk;

    for (t0 = 0; t0 < n_tok; t0 += 2 * Q4K_MM_PAIRS) {
        nt = n_tok - t0 < 2 * Q4K_MM_PAIRS ? n_tok - t0 : 2 * Q4K_MM_PAIRS;
        np = (nt + 1) / 2;
        memset(acc, 0, (size_t) np * sizeof(acc[0]));
        for (b = 0; b < nb; b += Q80_MM_BLOCKS) {
            nblk = nb - b < Q80_MM_BLOCKS ? (int) (nb - b) : Q80_MM_BLOCKS;
            q80_restage(x + b, nblk, st);
            for (p = 0; p < np; p += 2) {
                const q80_pair_block *y[2];

                y[0] = (const q80_pair_block *) ((const char *) act
                                                 + (size_t) (t0 / 2 + p) * stride) + b;
                y[1] = (const q80_pair_block *) ((const char *) y[0] + stride);
                if (p + 1 < np) {
                    q80_mm_pairs(st, nblk, y, acc + p, 2);
                } else {
                    q80_mm_pairs(st, nblk, y, acc + p, 1);
                }
            }
        }
        store_pair_tiles(acc, np, nt, out, out_stride, idx + t0);
    }
}

QWEN_ARM_PACKED_GEMM_Q6K(i8mm)

static const qwen_kernels kernels_neon_i8mm = {
    .name = "neon_i8mm",
    QWEN_NEON_FLOAT_ENTRIES,
    QWEN_ARM_QUANT_ENTRIES(i8mm),
    QWEN_ARM_PACKED_ENTRIES(i8mm),
    .kv_store[QWEN_KV_Q8_0] = qwen_kv_store_q8_0_ref,
    .kv_attention[QWEN_KV_Q8_0] = qwen_dotprod_attention_q8_0,
    .vec_dot2x4[QWEN_TYPE_Q8_0] = dot2x4_q8_0,
    .vec_dot2x4[QWEN_TYPE_Q4_K] = dot2x4_q4_K,
    .vec_dot2x4[QWEN_TYPE_Q6_K] = dot2x4_q6_K,
    .packed_gemm[QWEN_TYPE_Q4_K] = smmla_packed_gemm_q4_K,
    .packed_gemm[QWEN_TYPE_Q8_0] = smmla_packed_gemm_q8_0,
    .packed_gemm[QWEN_TYPE_Q6_K] = i8mm_packed_gemm_q6_K,
    .packed_gemm_min_tokens[QWEN_TYPE_Q6_K] = ARM_Q6K_GEMM_MIN_TOKENS,
    .packed_gemm_act[QWEN_TYPE_Q8_0] = q80_act_prep,
    .packed_gemm_act_bytes = q80_act_bytes,
    .packed_gemm_act_tokens = 2,
};

const qwen_kernels *
qwen_kernels_neon_i8mm(void)
{
    return &kernels_neon_i8mm;
}
