/*
 * packed.h - arm64 kernels over the packed weights of repack.h (8 rows
 * interleaved, 4 bytes per row per step): one 16-byte load is 4 columns
 * of 4 rows, and SDOT by lane multiplies it by the token's 4 bytes of
 * those columns, 16 products per instruction with no broadcast and no
 * horizontal sums (a lane is a row). Instantiated per ISA file: SDOT
 * under +dotprod, a lane duplicate and SMULL + SADALP without it.
 * Each lane does the scalar truth's operations (qwen_packed_dot_ref) in
 * its order and tokens never mix, so a (row, token) result is the same
 * bits for every NT (1 .. 4).
 */
#ifndef QWEN_KERNELS_ARM_PACKED_H
#define QWEN_KERNELS_ARM_PACKED_H

#include "kernels/arm/arm.h"
#include "repack.h"

/* acc + 4-byte groups of w . group LANE of y (signed): lane i of the
 * result is the dot of w's bytes 4i .. 4i + 3 with the group, as SDOT by
 * lane (arm_idot's fallback sums other byte groups per lane, which is
 * fine for whole-vector sums but not for a lane per row) */
#if defined(__ARM_FEATURE_DOTPROD)
#define arm_idot_lane(acc, w, y, LANE) vdotq_laneq_s32(acc, w, y, LANE)
#else
ARM_INLINE int32x4_t
arm_idot_groups(int32x4_t acc, int8x16_t w, int8x16_t g)
{
    int32x4_t lo = vpaddlq_s16(vmull_s8(vget_low_s8(w), vget_low_s8(g)));
    int32x4_t hi = vpaddlq_s16(vmull_high_s8(w, g));

    return vaddq_s32(acc, vpaddq_s32(lo, hi));
}
#define arm_idot_lane(acc, w, y, LANE)                                            \
    arm_idot_groups(acc, w, vreinterpretq_s8_s32(vdupq_laneq_s32(vreinterpretq_s32_s8(y), LANE)))
#endif

/* p += bytes, with p opaque to the compiler after it: each load then
 * steps its pointer on (post-index) instead of keeping one address
 * register per load, which cost an add per load in the one-token loops */
#define ARM_STEP(p, bytes) do { (p) += (bytes); __asm__("" : "+r"(p)); } while (0)

/* the 8 rows' f16 scales as two float vectors (rows 0-3, 4-7) */
ARM_INLINE void
arm_f16x8(const qwen_f16 *h, float32x4_t *lo, float32x4_t *hi)
{
    float16x8_t v = vreinterpretq_f16_u16(vld1q_u16(h));

    *lo = vcvt_f32_f16(vget_low_f16(v));
    *hi = vcvt_high_f32_f16(v);
}

/* 8 unsigned bytes (one per row) as two int32 vectors */
ARM_INLINE void
arm_u8x8_s32(uint8x8_t v, int32x4_t *lo, int32x4_t *hi)
{
    uint16x8_t w = vmovl_u8(v);

    *lo = vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(w)));
    *hi = vreinterpretq_s32_u32(vmovl_high_u16(w));
}

/* out[t * 8 + r] += a * (float) i, then -= b * (float) m when b (fused) */
ARM_INLINE void
arm_out_fma(float *out, float32x4_t a0, float32x4_t a1, int32x4_t i0, int32x4_t i1)
{
    vst1q_f32(out, vfmaq_f32(vld1q_f32(out), a0, vcvtq_f32_s32(i0)));
    vst1q_f32(out + 4, vfmaq_f32(vld1q_f32(out + 4), a1, vcvtq_f32_s32(i1)));
}
ARM_INLINE void
arm_out_fms(float *out, float32x4_t a0, float32x4_t a1, int32x4_t i0, int32x4_t i1)
{
    vst1q_f32(out, vfmsq_f32(vld1q_f32(out), a0, vcvtq_f32_s32(i0)));
    vst1q_f32(out + 4, vfmsq_f32(vld1q_f32(out + 4), a1, vcvtq_f32_s32(i1)));
}

/*
 * One token (decode) of packed Q4_K: all 8 rows in one pass, since one
 * token's sums leave registers for it. Each 64-byte load is two steps of
 * 4 columns for the 8 rows; its low nibbles feed sub-block 2j, its high
 * ones 2j + 1, against the same activation loads. The mins, split into
 * even and odd sub-blocks by two LD2s, go through SMLAL by lane against
 * the sub-blocks' sums, as arm_q4kx8_dot's do: 5 instructions a block
 * fewer than a pattern of pair sums and a pairwise add (neoverse-n1,
 * Q4_K_M: 84.61M -> 83.68M a decoded token over its 186K Q4_K blocks).
 * The same integers and float operations per lane as arm_q4kx8_dot, so
 * the same bits.
 */
ARM_INLINE void
arm_q4kx8_dot1(int64_t n, const void *w, const void *act, float *out)
{
    const uint8x16_t    m4 = vdupq_n_u8(0xF);
    const block_q4_Kx8 *x = w;
    const block_q8_K   *y = act;
    float32x4_t         o0 = vdupq_n_f32(0.0f), o1 = vdupq_n_f32(0.0f);
    int64_t             b, nb = n / QK_K;
    int                 j, k, i;

    for (b = 0; b < nb; b++) {
        float32x4_t d0, d1, m0, m1;
        int32x4_t   is0 = vdupq_n_s32(0), is1 = vdupq_n_s32(0);
        int32x4_t   ms0 = vdupq_n_s32(0), ms1 = vdupq_n_s32(0);
        /* lane i: sub-block i's sum */
        int16x8_t   bs = vpaddq_s16(vld1q_s16(y[b].bsums), vld1q_s16(y[b].bsums + 8));
        /* mins [pair][row][2]: val[0] the even sub-blocks' (rows 0-7 of
         * pairs 0, 1 / 2, 3), val[1] the odd ones' */
        uint8x16x2_t m01 = vld2q_u8(x[b].mins[0][0]), m23 = vld2q_u8(x[b].mins[2][0]);
        float        dy = y[b].d;

        /* rows 0-3 (ms0) and 4-7 (ms1) times sub-block S's sum: 8 rows' mins of S in v */
#define ARM_Q4K_MINS1(v, S)                                                               \
    do {                                                                                  \
        int16x8_t mv = vreinterpretq_s16_u16(v);                                          \
        ms0 = vmlal_laneq_s16(ms0, vget_low_s16(mv), bs, S);                              \
        ms1 = vmlal_high_laneq_s16(ms1, mv, bs, S);                                       \
    } while (0)
        ARM_Q4K_MINS1(vmovl_u8(vget_low_u8(m01.val[0])), 0);
        ARM_Q4K_MINS1(vmovl_u8(vget_low_u8(m01.val[1])), 1);
        ARM_Q4K_MINS1(vmovl_high_u8(m01.val[0]), 2);
        ARM_Q4K_MINS1(vmovl_high_u8(m01.val[1]), 3);
        ARM_Q4K_MINS1(vmovl_u8(vget_low_u8(m23.val[0])), 4);
        ARM_Q4K_MINS1(vmovl_u8(vget_low_u8(m23.val[1])), 5);
        ARM_Q4K_MINS1(vmovl_high_u8(m23.val[0]), 6);
        ARM_Q4K_MINS1(vmovl_high_u8(m23.val[1]), 7);
#undef ARM_Q4K_MINS1
        for (j = 0; j < QK_K / 64; j++) {
            int32x4_t  sl0 = vdupq_n_s32(0), sl1 = vdupq_n_s32(0);
            int32x4_t  sh0 = vdupq_n_s32(0), sh1 = vdupq_n_s32(0);
            uint8x16_t sc = vld1q_u8(x[b].scales[2 * j]);   /* sub-blocks 2j, 2j + 1 */
            uint16x8_t sc16l = vmovl_u8(vget_low_u8(sc)), sc16h = vmovl_high_u8(sc);

#pragma GCC unroll 2
            for (k = 0; k < 8; k += 4) {
                uint8x16x4_t qa = vld1q_u8_x4(x[b].qs[j][k][0]);
                uint8x16x4_t qb = vld1q_u8_x4(x[b].qs[j][k + 2][0]);
                int8x16_t    yl = vld1q_s8(y[b].qs + 64 * j + 4 * k);
                int8x16_t    yh = vld1q_s8(y[b].qs + 64 * j + 32 + 4 * k);
                uint8x16_t   q[8] = { qa.val[0], qa.val[1], qa.val[2], qa.val[3],
                                      qb.val[0], qb.val[1], qb.val[2], qb.val[3] };

#pragma GCC unroll 4
                for (i = 0; i < 4; i++) {
                    int8x16_t lo0 = vreinterpretq_s8_u8(vandq_u8(q[2 * i], m4));
                    int8x16_t lo1 = vreinterpretq_s8_u8(vandq_u8(q[2 * i + 1], m4));
                    int8x16_t hi0 = vreinterpretq_s8_u8(vshrq_n_u8(q[2 * i], 4));
                    int8x16_t hi1 = vreinterpretq_s8_u8(vshrq_n_u8(q[2 * i + 1], 4));

                    switch (i) {   /* the lane must be a constant */
                    case 0:
                        sl0 = arm_idot_lane(sl0, lo0, yl, 0); sl1 = arm_idot_lane(sl1, lo1, yl, 0);
                        sh0 = arm_idot_lane(sh0, hi0, yh, 0); sh1 = arm_idot_lane(sh1, hi1, yh, 0);
                        break;
                    case 1:
                        sl0 = arm_idot_lane(sl0, lo0, yl, 1); sl1 = arm_idot_lane(sl1, lo1, yl, 1);
                        sh0 = arm_idot_lane(sh0, hi0, yh, 1); sh1 = arm_idot_lane(sh1, hi1, yh, 1);
                        break;
                    case 2:
                        sl0 = arm_idot_lane(sl0, lo0, yl, 2); sl1 = arm_idot_lane(sl1, lo1, yl, 2);
                        sh0 = arm_idot_lane(sh0, hi0, yh, 2); sh1 = arm_idot_lane(sh1, hi1, yh, 2);
                        break;
                    default:
                        sl0 = arm_idot_lane(sl0, lo0, yl, 3); sl1 = arm_idot_lane(sl1, lo1, yl, 3);
                        sh0 = arm_idot_lane(sh0, hi0, yh, 3); sh1 = arm_idot_lane(sh1, hi1, yh, 3);
                        break;
                    }
                }
            }
            is0 = vmlaq_s32(is0, sl0, vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(sc16l))));
            is1 = vmlaq_s32(is1, sl1, vreinterpretq_s32_u32(vmovl_high_u16(sc16l)));
            is0 = vmlaq_s32(is0, sh0, vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(sc16h))));
            is1 = vmlaq_s32(is1, sh1, vreinterpretq_s32_u32(vmovl_high_u16(sc16h)));
        }
        arm_f16x8(x[b].d, &d0, &d1);
        arm_f16x8(x[b].dmin, &m0, &m1);
        o0 = vfmsq_f32(vfmaq_f32(o0, vmulq_n_f32(d0, dy), vcvtq_f32_s32(is0)),
                       vmulq_n_f32(m0, dy), vcvtq_f32_s32(ms0));
        o1 = vfmsq_f32(vfmaq_f32(o1, vmulq_n_f32(d1, dy), vcvtq_f32_s32(is1)),
                       vmulq_n_f32(m1, dy), vcvtq_f32_s32(ms1));
    }
    vst1q_f32(out, o0);
    vst1q_f32(out + 4, o1);
}

/*
 * Packed Q4_K x Q8_K, NT tokens (2 .. 4): a sub-block's products add in
 * int32 (SDOT), then the row's scale multiplies them (MLA); the mins come
 * off through the activation's bsums. Rows 0-3 and 4-7 take separate
 * passes over the block, so a pass keeps its tokens' sums in registers.
 * A 64-column group's 8 loads (4 columns of the pass's 4 rows each) are
 * unpacked once for all tokens: the low nibbles are sub-block 2j, the high
 * ones 2j + 1. Then a token at a time: its 64 activation bytes in one
 * load, two SDOT chains, both folded into its sums at once. The mins,
 * split into even and odd sub-blocks, go through SMLAL by lane against the
 * token's 32-column sums. Integer sums are exact in any order, and each
 * lane's float operations are the scalar truth's, in its order: the same
 * bits. (neoverse-n1, 4 sequences decoded together: Q4_K's 70.0M
 * instructions a token -> 56.1M.)
 */
ARM_INLINE void
arm_q4kx8_dot(int64_t n, const void *w, const void *act, size_t stride, float *out,
              const int NT)
{
    const uint8x16_t    m4 = vdupq_n_u8(0xF);
    const block_q4_Kx8 *x = w;
    int64_t             b, nb = n / QK_K;
    int                 t, j, k, r;

    if (NT == 1) {
        arm_q4kx8_dot1(n, w, act, out);
        return;
    }
#pragma GCC unroll 32
    for (t = 0; t < 8 * NT; t++) {
        out[t] = 0.0f;
    }
    for (b = 0; b < nb; b++) {
        float32x4_t d[2], m[2];
        int16x8_t   bs[4];   /* token t's sub-block sums: lane i bsums[2i] + [2i + 1] */

        arm_f16x8(x[b].d, &d[0], &d[1]);
        arm_f16x8(x[b].dmin, &m[0], &m[1]);
#pragma GCC unroll 4
        for (t = 0; t < NT; t++) {
            const block_q8_K *y = ARM_ACT(block_q8_K, act, stride, t) + b;

            bs[t] = vpaddq_s16(vld1q_s16(y->bsums), vld1q_s16(y->bsums + 8));
        }
#pragma GCC unroll 1
        for (r = 0; r < 2; r++) {
            int32x4_t     is[4], ms[4];
            const int8_t *yq[4];   /* each token's columns of step group j */

#pragma GCC unroll 4
            for (t = 0; t < NT; t++) {
                is[t] = vdupq_n_s32(0);
                yq[t] = ARM_ACT(block_q8_K, act, stride, t)[b].qs;
            }
            for (j = 0; j < QK_K / 64; j++) {
                /* the 8 steps' values of sub-blocks 2j (lo) and 2j + 1 (hi) */
                int8x16_t lo[8], hi[8];
                int32x4_t sc0 = vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(
                    vmovl_u8(vld1_u8(x[b].scales[2 * j] + 4 * r)))));
                int32x4_t sc1 = vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(
                    vmovl_u8(vld1_u8(x[b].scales[2 * j + 1] + 4 * r)))));

#pragma GCC unroll 8
                for (k = 0; k < 8; k++) {
                    uint8x16_t v = vld1q_u8(x[b].qs[j][k][4 * r]);

                    lo[k] = vreinterpretq_s8_u8(vandq_u8(v, m4));
                    hi[k] = vreinterpretq_s8_u8(vshrq_n_u8(v, 4));
                }
                /* a token at a time: its 64 columns in one load, its two
                 * chains folded into its sums at once (few registers live) */
#pragma GCC unroll 4
                for (t = 0; t < NT; t++) {
                    int8x16x4_t y = vld1q_s8_x4(yq[t]);
                    int32x4_t   sl = vdupq_n_s32(0), sh = vdupq_n_s32(0);

                    sl = arm_idot_lane(sl, lo[0], y.val[0], 0);
                    sh = arm_idot_lane(sh, hi[0], y.val[2], 0);
                    sl = arm_idot_lane(sl, lo[1], y.val[0], 1);
                    sh = arm_idot_lane(sh, hi[1], y.val[2], 1);
                    sl = arm_idot_lane(sl, lo[2], y.val[0], 2);
                    sh = arm_idot_lane(sh, hi[2], y.val[2], 2);
                    sl = arm_idot_lane(sl, lo[3], y.val[0], 3);
                    sh = arm_idot_lane(sh, hi[3], y.val[2], 3);
                    sl = arm_idot_lane(sl, lo[4], y.val[1], 0);
                    sh = arm_idot_lane(sh, hi[4], y.val[3], 0);
                    sl = arm_idot_lane(sl, lo[5], y.val[1], 1);
                    sh = arm_idot_lane(sh, hi[5], y.val[3], 1);
                    sl = arm_idot_lane(sl, lo[6], y.val[1], 2);
                    sh = arm_idot_lane(sh, hi[6], y.val[3], 2);
                    sl = arm_idot_lane(sl, lo[7], y.val[1], 3);
                    sh = arm_idot_lane(sh, hi[7], y.val[3], 3);
                    is[t] = vmlaq_s32(vmlaq_s32(is[t], sl, sc0), sh, sc1);
                    ARM_STEP(yq[t], 64);
                }
            }
            /* mins [pair i][row][2]: this half's 4 rows are 8 bytes of each
             * pair, split into the even and odd sub-blocks' mins, each row's
             * times the token's sum of that sub-block (SMLAL by lane) */
#pragma GCC unroll 4
            for (t = 0; t < NT; t++) {
                ms[t] = vdupq_n_s32(0);
            }
#define ARM_Q4K_MINS(I)                                                                    \
    do {                                                                                   \
        int16x8_t mv = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(x[b].mins[I][4 * r])));      \
        int16x4_t me = vget_low_s16(vuzp1q_s16(mv, mv)), mo = vget_low_s16(vuzp2q_s16(mv, mv)); \
        _Pragma("GCC unroll 4")                                                            \
        for (t = 0; t < NT; t++) {                                                         \
            ms[t] = vmlal_laneq_s16(vmlal_laneq_s16(ms[t], me, bs[t], 2 * (I)), mo, bs[t], \
                                    2 * (I) + 1);                                          \
        }                                                                                  \
    } while (0)
            ARM_Q4K_MINS(0);
            ARM_Q4K_MINS(1);
            ARM_Q4K_MINS(2);
            ARM_Q4K_MINS(3);
#undef ARM_Q4K_MINS
#pragma GCC unroll 4
            for (t = 0; t < NT; t++) {
                float  dy = ARM_ACT(block_q8_K, act, stride, t)[b].d;
                float *o = out + 8 * t + 4 * r;

                vst1q_f32(o, vfmsq_f32(vfmaq_f32(vld1q_f32(o), vmulq_n_f32(d[r], dy),
                                                 vcvtq_f32_s32(is[t])),
                                       vmulq_n_f32(m[r], dy), vcvtq_f32_s32(ms[t])));
            }
        }
    }
}

/*
 * The values of a packed Q6_K step pair, 4 rows, as 4 (q - 32) (signed
 * bytes, 4x the value): p0, p1, p2 its three planes (repack.h). v[0],
 * v[1]: the low columns of steps 2kp, 2kp + 1; v[2], v[3]: the high ones.
 * 6 operations: an AND per plane, and v[3]'s bits 2-3, 4-5, 6-7 from the
 * planes' bits 0-1 by a shift and two SLIs.
 */
ARM_INLINE void
arm_q6k_values(uint8x16_t p0, uint8x16_t p1, uint8x16_t p2, int8x16_t v[4])
{
    const uint8x16_t mfc = vdupq_n_u8(0xFC);

    v[0] = vreinterpretq_s8_u8(vandq_u8(p0, mfc));
    v[1] = vreinterpretq_s8_u8(vandq_u8(p1, mfc));
    v[2] = vreinterpretq_s8_u8(vandq_u8(p2, mfc));
    v[3] = vreinterpretq_s8_u8(vsliq_n_u8(vsliq_n_u8(vshlq_n_u8(p2, 2), p1, 4), p0, 6));
}

/*
 * One token (decode) of packed Q6_K: all 8 rows in one pass, as for Q4_K,
 * one activation load per 16 columns for both row halves. The values are
 * 4 (q - 32), so the sums are 4x the exact sum of (q - 32) x y (at most
 * 16 x 128 x 128 x 128 x 16 = 2^29 a super-block) and one shift right by
 * 2 per super-block gives that sum exactly: the same integers and float
 * operations per lane as arm_q6kx8_dot, so its bits. Not inlined into the
 * NT switch: GCC then hoists fewer loads and spills less (63.98M
 * instructions a decoded Q4_K_M token on neoverse-n1 against 64.96M).
 */
static __attribute__((noinline, unused)) void
arm_q6kx8_dot1(int64_t n, const void *w, const void *act, float *out)
{
    const block_q6_Kx8 *x = w;
    const block_q8_K   *y = act;
    float32x4_t         o0 = vdupq_n_f32(0.0f), o1 = vdupq_n_f32(0.0f);
    int64_t             b, nb = n / QK_K;
    int                 j, h, i, kp, r;

    for (b = 0; b < nb; b++) {
        int32x4_t   is[2] = { vdupq_n_s32(0), vdupq_n_s32(0) };
        float32x4_t d0, d1;

        for (j = 0; j < QK_K / 64; j++) {
#pragma GCC unroll 2
            for (i = 0; i < 2; i++) {    /* steps 4i .. 4i + 3: a sub-block per half */
                const int8_t *q8 = y[b].qs + 64 * j + 16 * i;
                int8x16_t     yl = vld1q_s8(q8), yh = vld1q_s8(q8 + 32);
                /* sub-blocks 4j + i (low columns) and 4j + 2 + i (high) */
                int32x4_t     sl[2] = { vdupq_n_s32(0), vdupq_n_s32(0) };
                int32x4_t     sh[2] = { vdupq_n_s32(0), vdupq_n_s32(0) };

#pragma GCC unroll 2
                for (kp = 2 * i; kp < 2 * i + 2; kp++) {
                    /* both halves' three planes, 96 bytes: 16-byte loads (LDP
                     * with offsets) cost fewer instructions than LD1 x4 + x2 */
                    const uint8_t *pq = x[b].q[j][kp][0][0][0];
                    uint8x16_t     pl[2][3] = {
                        { vld1q_u8(pq), vld1q_u8(pq + 16), vld1q_u8(pq + 32) },
                        { vld1q_u8(pq + 48), vld1q_u8(pq + 64), vld1q_u8(pq + 80) }
                    };

#pragma GCC unroll 2
                    for (r = 0; r < 2; r++) {
                        int8x16_t v[4];

                        arm_q6k_values(pl[r][0], pl[r][1], pl[r][2], v);
                        if (kp % 2 == 0) {
                            sl[r] = arm_idot_lane(sl[r], v[0], yl, 0);
                            sl[r] = arm_idot_lane(sl[r], v[1], yl, 1);
                            sh[r] = arm_idot_lane(sh[r], v[2], yh, 0);
                            sh[r] = arm_idot_lane(sh[r], v[3], yh, 1);
                        } else {
                            sl[r] = arm_idot_lane(sl[r], v[0], yl, 2);
                            sl[r] = arm_idot_lane(sl[r], v[1], yl, 3);
                            sh[r] = arm_idot_lane(sh[r], v[2], yh, 2);
                            sh[r] = arm_idot_lane(sh[r], v[3], yh, 3);
                        }
                    }
                }
#pragma GCC unroll 2
                for (h = 0; h < 2; h++) {   /* sub-block 4j + 2h + i: its 8 rows' scales */
                    int8x16_t sv = vld1q_s8(x[b].scales[2 * j + h][0]);   /* [row][2] */
                    int16x8_t e = vmovl_s8(vget_low_s8(i == 0 ? vuzp1q_s8(sv, sv)
                                                              : vuzp2q_s8(sv, sv)));
                    int32x4_t *s = h == 0 ? sl : sh;

                    is[0] = vmlaq_s32(is[0], s[0], vmovl_s16(vget_low_s16(e)));
                    is[1] = vmlaq_s32(is[1], s[1], vmovl_high_s16(e));
                }
            }
        }
        arm_f16x8(x[b].d, &d0, &d1);
        o0 = vfmaq_f32(o0, vmulq_n_f32(d0, y[b].d), vcvtq_f32_s32(vshrq_n_s32(is[0], 2)));
        o1 = vfmaq_f32(o1, vmulq_n_f32(d1, y[b].d), vcvtq_f32_s32(vshrq_n_s32(is[1], 2)));
    }
    vst1q_f32(out, o0);
    vst1q_f32(out + 4, o1);
}

/*
 * Packed Q6_K x Q8_K: the values put together as 4 (q - 32) by
 * arm_q6k_values; a 16-column sub-block's products are scaled by MLA and
 * a super-block's sums shifted right by 2 (exact: each is 4x an integer),
 * as in arm_q6kx8_dot1. Rows 0-3 and 4-7 in separate passes, as for Q4_K.
 */
ARM_INLINE void
arm_q6kx8_dot(int64_t n, const void *w, const void *act, size_t stride, float *out,
              const int NT)
{
    const block_q6_Kx8 *x = w;
    int64_t             b, nb = n / QK_K;
    int                 t, j, kp, h, r;

    if (NT == 1) {
        arm_q6kx8_dot1(n, w, act, out);
        return;
    }
#pragma GCC unroll 32
    for (t = 0; t < 8 * NT; t++) {
        out[t] = 0.0f;
    }
    for (b = 0; b < nb; b++) {
        float32x4_t d[2];

        arm_f16x8(x[b].d, &d[0], &d[1]);
#pragma GCC unroll 2
        for (r = 0; r < 2; r++) {
            int32x4_t     is[4];
            const int8_t *yq[4];   /* each token's columns of group j */

#pragma GCC unroll 4
            for (t = 0; t < NT; t++) {
                is[t] = vdupq_n_s32(0);
                yq[t] = ARM_ACT(block_q8_K, act, stride, t)[b].qs;
            }
            for (j = 0; j < QK_K / 64; j++) {
                /* scales [pair][row][2] of pairs 2j + h: this half's 8 bytes */
                int32x4_t sc[2][2];   /* [h][i]: sub-block 4j + 2h + i */

#pragma GCC unroll 2
                for (h = 0; h < 2; h++) {
                    int8x8_t v = vld1_s8(x[b].scales[2 * j + h][4 * r]);

                    sc[h][0] = vmovl_s16(vget_low_s16(vmovl_s8(vuzp1_s8(v, v))));
                    sc[h][1] = vmovl_s16(vget_low_s16(vmovl_s8(vuzp2_s8(v, v))));
                }
                /* the group's values once: pair kp's low columns in
                 * v[kp][0..1], its high ones in v[kp][2..3] */
                int8x16_t v[4][4];

#pragma GCC unroll 4
                for (kp = 0; kp < 4; kp++) {
                    uint8x16x3_t p = vld1q_u8_x3(x[b].q[j][kp][r][0][0]);

                    arm_q6k_values(p.val[0], p.val[1], p.val[2], v[kp]);
                }
                /* a token at a time: its 64 columns in one load, its four
                 * chains (sub-blocks 4j + 2h + i) folded in at once */
#pragma GCC unroll 4
                for (t = 0; t < NT; t++) {
                    int8x16x4_t y = vld1q_s8_x4(yq[t]);
                    int32x4_t   s00 = vdupq_n_s32(0), s01 = vdupq_n_s32(0);
                    int32x4_t   s10 = vdupq_n_s32(0), s11 = vdupq_n_s32(0);

                    /* [h][i]: low (h 0) or high (h 1) columns, steps 4i .. */
                    s00 = arm_idot_lane(s00, v[0][0], y.val[0], 0);
                    s10 = arm_idot_lane(s10, v[0][2], y.val[2], 0);
                    s00 = arm_idot_lane(s00, v[0][1], y.val[0], 1);
                    s10 = arm_idot_lane(s10, v[0][3], y.val[2], 1);
                    s00 = arm_idot_lane(s00, v[1][0], y.val[0], 2);
                    s10 = arm_idot_lane(s10, v[1][2], y.val[2], 2);
                    s00 = arm_idot_lane(s00, v[1][1], y.val[0], 3);
                    s10 = arm_idot_lane(s10, v[1][3], y.val[2], 3);
                    s01 = arm_idot_lane(s01, v[2][0], y.val[1], 0);
                    s11 = arm_idot_lane(s11, v[2][2], y.val[3], 0);
                    s01 = arm_idot_lane(s01, v[2][1], y.val[1], 1);
                    s11 = arm_idot_lane(s11, v[2][3], y.val[3], 1);
                    s01 = arm_idot_lane(s01, v[3][0], y.val[1], 2);
                    s11 = arm_idot_lane(s11, v[3][2], y.val[3], 2);
                    s01 = arm_idot_lane(s01, v[3][1], y.val[1], 3);
                    s11 = arm_idot_lane(s11, v[3][3], y.val[3], 3);
                    is[t] = vmlaq_s32(vmlaq_s32(is[t], s00, sc[0][0]), s10, sc[1][0]);
                    is[t] = vmlaq_s32(vmlaq_s32(is[t], s01, sc[0][1]), s11, sc[1][1]);
                    ARM_STEP(yq[t], 64);
                }
            }
#pragma GCC unroll 4
            for (t = 0; t < NT; t++) {
                float  dy = ARM_ACT(block_q8_K, act, stride, t)[b].d;
                float *o = out + 8 * t + 4 * r;

                vst1q_f32(o, vfmaq_f32(vld1q_f32(o), vmulq_n_f32(d[r], dy),
                                       vcvtq_f32_s32(vshrq_n_s32(is[t], 2))));
            }
        }
    }
}

/* Packed Q8_0 x Q8_0: a block's products in int32 (SDOT), scaled once;
 * the float sums stay in registers (for Q8_0 a block is only 16 SDOT a
 * token, so going through memory per block cost a third more). */
ARM_INLINE void
arm_q8_0x8_dot(int64_t n, const void *w, const void *act, size_t stride, float *out,
               const int NT)
{
    const block_q8_0x8 *x = w;
    int64_t             b, nb = n / QK8_0;
    float32x4_t         a0[4], a1[4];
    int                 t, k;

#pragma GCC unroll 4
    for (t = 0; t < NT; t++) {
        a0[t] = a1[t] = vdupq_n_f32(0.0f);
    }
    for (b = 0; b < nb; b++) {
        int32x4_t   s0[4], s1[4];
        float32x4_t d0, d1;

#pragma GCC unroll 4
        for (t = 0; t < NT; t++) {
            s0[t] = s1[t] = vdupq_n_s32(0);
        }
#pragma GCC unroll 2
        for (k = 0; k < QK8_0 / 4; k += 4) {
            /* 4 columns x 8 rows, 4 at a time: two 64-byte loads */
            int8x16x4_t qa = vld1q_s8_x4(x[b].qs[k][0]), qb = vld1q_s8_x4(x[b].qs[k + 2][0]);
            int8x16_t   q[8] = { qa.val[0], qa.val[1], qa.val[2], qa.val[3],
                                 qb.val[0], qb.val[1], qb.val[2], qb.val[3] };
#pragma GCC unroll 4
            for (t = 0; t < NT; t++) {
                int8x16_t y = vld1q_s8(ARM_ACT(block_q8_0, act, stride, t)[b].qs + 4 * k);

                s0[t] = arm_idot_lane(s0[t], q[0], y, 0);
                s1[t] = arm_idot_lane(s1[t], q[1], y, 0);
                s0[t] = arm_idot_lane(s0[t], q[2], y, 1);
                s1[t] = arm_idot_lane(s1[t], q[3], y, 1);
                s0[t] = arm_idot_lane(s0[t], q[4], y, 2);
                s1[t] = arm_idot_lane(s1[t], q[5], y, 2);
                s0[t] = arm_idot_lane(s0[t], q[6], y, 3);
                s1[t] = arm_idot_lane(s1[t], q[7], y, 3);
            }
        }
        arm_f16x8(x[b].d, &d0, &d1);
#pragma GCC unroll 4
        for (t = 0; t < NT; t++) {
            float dy = arm_f16(ARM_ACT(block_q8_0, act, stride, t)[b].d);

            a0[t] = vfmaq_f32(a0[t], vmulq_n_f32(d0, dy), vcvtq_f32_s32(s0[t]));
            a1[t] = vfmaq_f32(a1[t], vmulq_n_f32(d1, dy), vcvtq_f32_s32(s1[t]));
        }
    }
#pragma GCC unroll 4
    for (t = 0; t < NT; t++) {
        vst1q_f32(out + 8 * t, a0[t]);
        vst1q_f32(out + 8 * t + 4, a1[t]);
    }
}

/*
 * Zeroed int32 accumulators loaded in pairs (LDP) from a zero block the
 * compiler cannot see into (a volatile asm makes the address opaque on
 * every call, so the loads are neither folded to MOVI nor hoisted and
 * copied with MOVs). Where accumulators restart every block, two vector
 * moves on the two SIMD pipes SDOT needs become one load-pipe instruction.
 */
static const int32_t arm_zero_block[32] __attribute__((aligned(64)));

/* *zp: arm_zero_block, kept in one register across a loop's iterations.
 * Two LD1s of four registers; they need four consecutive registers each,
 * which only an asm with named registers can ask for. */
ARM_INLINE void
arm_zeros8(int32x4_t z[8], const int32_t **zp)
{
    register int32x4_t z0 __asm__("v24"), z1 __asm__("v25"), z2 __asm__("v26"),
        z3 __asm__("v27"), z4 __asm__("v28"), z5 __asm__("v29"), z6 __asm__("v30"),
        z7 __asm__("v31");

    __asm__ __volatile__("ld1 {v24.4s-v27.4s}, [%8]\n\tld1 {v28.4s-v31.4s}, [%8]"
                         : "=w"(z0), "=w"(z1), "=w"(z2), "=w"(z3), "=w"(z4), "=w"(z5),
                           "=w"(z6), "=w"(z7)
                         : "r"(*zp));
    z[0] = z0; z[1] = z1; z[2] = z2; z[3] = z3;
    z[4] = z4; z[5] = z5; z[6] = z6; z[7] = z7;
}

/* One token against two packed Q8_0 groups (16 rows): the activation's
 * block loads and its scale serve both groups, and the loop runs once.
 * Per lane the operations of arm_q8_0x8_dot with NT = 1, so the same bits. */
ARM_INLINE void
arm_q8_0x8_pair(int64_t n, const void *w, size_t gb, const void *act, float *out)
{
    /* the groups' blocks are read in order through one pointer each (each
     * load steps it on: no address arithmetic in the loop) */
    const int8_t     *p[2] = { w, (const int8_t *) w + gb };
    const block_q8_0 *y = act;
    int64_t           b, nb = n / QK8_0;
    float32x4_t       a[4] = { vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f),
                               vdupq_n_f32(0.0f) };
    int               g;

    for (b = 0; b < nb; b++) {
        int8x16_t y0 = vld1q_s8(y[b].qs), y1 = vld1q_s8(y[b].qs + 16);
        float     dy = arm_f16(y[b].d);

#pragma GCC unroll 2
        for (g = 0; g < 2; g++) {
            float16x8_t h;
            int8x16x4_t q0, q1, q2, q3;
            int32x4_t   s0 = vdupq_n_s32(0), s1 = vdupq_n_s32(0);

            h = vreinterpretq_f16_s8(vld1q_s8(p[g]));
            ARM_STEP(p[g], 16);
            q0 = vld1q_s8_x4(p[g]);
            ARM_STEP(p[g], 64);
            q1 = vld1q_s8_x4(p[g]);
            ARM_STEP(p[g], 64);
            q2 = vld1q_s8_x4(p[g]);
            ARM_STEP(p[g], 64);
            q3 = vld1q_s8_x4(p[g]);
            ARM_STEP(p[g], 64);
            s0 = arm_idot_lane(s0, q0.val[0], y0, 0);
            s1 = arm_idot_lane(s1, q0.val[1], y0, 0);
            s0 = arm_idot_lane(s0, q0.val[2], y0, 1);
            s1 = arm_idot_lane(s1, q0.val[3], y0, 1);
            s0 = arm_idot_lane(s0, q1.val[0], y0, 2);
            s1 = arm_idot_lane(s1, q1.val[1], y0, 2);
            s0 = arm_idot_lane(s0, q1.val[2], y0, 3);
            s1 = arm_idot_lane(s1, q1.val[3], y0, 3);
            s0 = arm_idot_lane(s0, q2.val[0], y1, 0);
            s1 = arm_idot_lane(s1, q2.val[1], y1, 0);
            s0 = arm_idot_lane(s0, q2.val[2], y1, 1);
            s1 = arm_idot_lane(s1, q2.val[3], y1, 1);
            s0 = arm_idot_lane(s0, q3.val[0], y1, 2);
            s1 = arm_idot_lane(s1, q3.val[1], y1, 2);
            s0 = arm_idot_lane(s0, q3.val[2], y1, 3);
            s1 = arm_idot_lane(s1, q3.val[3], y1, 3);
            a[2 * g] = vfmaq_f32(a[2 * g], vmulq_n_f32(vcvt_f32_f16(vget_low_f16(h)), dy),
                                 vcvtq_f32_s32(s0));
            a[2 * g + 1] = vfmaq_f32(a[2 * g + 1], vmulq_n_f32(vcvt_high_f32_f16(h), dy),
                                     vcvtq_f32_s32(s1));
        }
    }
    vst1q_f32(out, a[0]);
    vst1q_f32(out + 4, a[1]);
    vst1q_f32(out + 8, a[2]);
    vst1q_f32(out + 12, a[3]);
}

/*
 * Prompt tokens of packed Q8_0 (packed_gemm, SDOT): the activations come
 * four tokens side by side per block (packed_gemm_act, made once per
 * matmul): a block's 16-byte halves of the 4 tokens and their scales as
 * floats. One pass of the group's blocks per 4 tokens, with the 4 x 8 float
 * sums in registers; no per-token address arithmetic or scale conversion
 * (in the 4-token dot calls, a third of the instructions). Per lane the
 * operations of arm_q8_0x8_dot, so its bits.
 */
typedef struct {
    int8_t y[2][4][16];   /* [half: columns 16h ..][token] */
    float  d[4];
} arm_q80_quad;

ARM_INLINE size_t
arm_q80_quad_bytes(int act_type, int64_t n, int n_tok)
{
    (void) act_type;
    return (size_t) ((n_tok + 3) / 4) * (size_t) (n / QK8_0) * sizeof(arm_q80_quad);
}

ARM_INLINE void
arm_q80_quad_prep(int64_t n, const void *act, size_t stride, int n_tok, void *out)
{
    arm_q80_quad *o = out;
    int64_t       b, nb = n / QK8_0;
    int           t, i, h;

    for (t = 0; t < n_tok; t += 4) {
        const block_q8_0 *y[4];

        for (i = 0; i < 4; i++) {
            y[i] = ARM_ACT(block_q8_0, act, stride, t + i < n_tok ? t + i : n_tok - 1);
        }
        for (b = 0; b < nb; b++, o++) {
            for (h = 0; h < 2; h++) {
                for (i = 0; i < 4; i++) {
                    vst1q_s8(o->y[h][i], vld1q_s8(y[i][b].qs + 16 * h));
                }
            }
            for (i = 0; i < 4; i++) {
                o->d[i] = arm_f16(y[i][b].d);
            }
        }
    }
}

/* The group's blocks b0 .. b0 + nb - 1 for 4 tokens: dw holds their rows'
 * scales as floats (8 a block), converted once per call rather than once
 * per block and 4 tokens (an LDR and two FCVTLs a 64 SDOTs); the sums
 * start from zero (first) or from out, where the blocks before left them */
ARM_INLINE void
arm_q8_0x8_quad(int64_t nb, const block_q8_0x8 *x, const float *dw, const arm_q80_quad *y,
                float *const out[4], int first)
{
    const int8_t  *pw = (const int8_t *) x, *py = (const int8_t *) y;
    const int8_t  *py_end = py + nb * (int64_t) sizeof(arm_q80_quad);
    const int32_t *zp = arm_zero_block;
    float32x4_t    a[4][2];   /* local: stores to out each block cost 4 per 64 SDOT */
    int            t, h;

#pragma GCC unroll 4
    for (t = 0; t < 4; t++) {
        a[t][0] = first ? vdupq_n_f32(0.0f) : vld1q_f32(out[t]);
        a[t][1] = first ? vdupq_n_f32(0.0f) : vld1q_f32(out[t] + 4);
    }
    /* the loop ends on the activations' pointer: no counter to step */
#pragma GCC unroll 2
    while (py < py_end) {
        int32x4_t     s0[4], s1[4], z[8];
        float32x4x2_t d = vld1q_f32_x2(dw);
        float32x4_t   dy;

        dw += 8;
        arm_zeros8(z, &zp);
        ARM_STEP(pw, 16);
#pragma GCC unroll 2
        for (h = 0; h < 2; h++) {
            /* steps 4h .. 4h + 3 (columns 16h ..) of the 8 rows, and the
             * 4 tokens' same columns */
            int8x16x4_t qa = vld1q_s8_x4(pw), qb, yv;

            ARM_STEP(pw, 64);
            qb = vld1q_s8_x4(pw);
            ARM_STEP(pw, 64);
            yv = vld1q_s8_x4(py);
            ARM_STEP(py, 64);
#pragma GCC unroll 4
            for (t = 0; t < 4; t++) {
                s0[t] = arm_idot_lane(h == 0 ? z[t] : s0[t], qa.val[0], yv.val[t], 0);
                s1[t] = arm_idot_lane(h == 0 ? z[4 + t] : s1[t], qa.val[1], yv.val[t], 0);
                s0[t] = arm_idot_lane(s0[t], qa.val[2], yv.val[t], 1);
                s1[t] = arm_idot_lane(s1[t], qa.val[3], yv.val[t], 1);
                s0[t] = arm_idot_lane(s0[t], qb.val[0], yv.val[t], 2);
                s1[t] = arm_idot_lane(s1[t], qb.val[1], yv.val[t], 2);
                s0[t] = arm_idot_lane(s0[t], qb.val[2], yv.val[t], 3);
                s1[t] = arm_idot_lane(s1[t], qb.val[3], yv.val[t], 3);
            }
        }
        dy = vld1q_f32((const float *) py);
        ARM_STEP(py, 16);
#pragma GCC unroll 4
        for (t = 0; t < 4; t++) {
            float32x4_t e;

            switch (t) {
            case 0: e = vdupq_laneq_f32(dy, 0); break;
            case 1: e = vdupq_laneq_f32(dy, 1); break;
            case 2: e = vdupq_laneq_f32(dy, 2); break;
            default: e = vdupq_laneq_f32(dy, 3); break;
            }
            a[t][0] = vfmaq_f32(a[t][0], vmulq_f32(d.val[0], e), vcvtq_f32_s32(s0[t]));
            a[t][1] = vfmaq_f32(a[t][1], vmulq_f32(d.val[1], e), vcvtq_f32_s32(s1[t]));
        }
    }
#pragma GCC unroll 4
    for (t = 0; t < 4; t++) {
        vst1q_f32(out[t], a[t][0]);
        vst1q_f32(out[t] + 4, a[t][1]);
    }
}

/* act: arm_q80_quad_prep's groups, act_stride bytes a group of 4 tokens.
 * The weights' scales go to floats a stretch of blocks at a time (4 KiB
 * on the stack: Qwen3's rows, at most 96 blocks, take one stretch). */
#define ARM_Q80_GEMM_BLOCKS 128

ARM_INLINE void
arm_q8_0x8_gemm(int64_t n, const void *w, const void *act, size_t stride, int n_tok,
                float *out, size_t out_stride, const int32_t *idx)
{
    const block_q8_0x8 *x = w;
    float               dw[ARM_Q80_GEMM_BLOCKS][QWEN_PACK_ROWS];
    float               spare[8];   /* the sums of a last group's missing tokens */
    float              *o[4];
    int64_t             b0, b, nb = n / QK8_0, nbs;
    int                 t0, t;

    for (b0 = 0; b0 < nb; b0 += nbs) {
        nbs = nb - b0 < ARM_Q80_GEMM_BLOCKS ? nb - b0 : ARM_Q80_GEMM_BLOCKS;
        for (b = 0; b < nbs; b++) {
            float32x4_t lo, hi;

            arm_f16x8(x[b0 + b].d, &lo, &hi);
            vst1q_f32(dw[b], lo);
            vst1q_f32(dw[b] + 4, hi);
        }
        for (t0 = 0; t0 < n_tok; t0 += 4) {
#pragma GCC unroll 4
            for (t = 0; t < 4; t++) {
                o[t] = t0 + t < n_tok ? out + (size_t) idx[t0 + t] * out_stride : spare;
            }
            arm_q8_0x8_quad(nbs, x + b0, dw[0],
                            (const arm_q80_quad *) ((const char *) act + (size_t) (t0 / 4) * stride) +
                                b0,
                            o, b0 == 0);
        }
    }
}

/*
 * Prompt tokens of packed Q4_K (packed_gemm, SDOT): a call restages one
 * super-block of its group at a time with the nibbles, scales and mins
 * already unpacked, then streams its tokens past it four at a time; the
 * unpacking is paid once per call instead of once per 4 tokens. The same
 * integers and float operations per lane as arm_q4kx8_dot.
 */
typedef struct {
    int8_t  w[QK_K / 32][2][8][4][4];   /* [sub-block][row half][step][row][4 columns] */
    int32_t sc[QK_K / 32][8];           /* [sub-block][row] */
    int32_t mn[QK_K / 32][8];
    float   d[8], dmin[8];
} arm_q4k_stage;

#define ARM_STAGED_GEMM_TOKENS 64   /* tokens whose float sums stay on the stack */

ARM_INLINE void
arm_q4k_restage(const block_q4_Kx8 *x, arm_q4k_stage *st)
{
    const uint8x16_t m4 = vdupq_n_u8(0xF);
    float32x4_t      lo, hi;
    int              j, k, r, sb, i;

    for (j = 0; j < QK_K / 64; j++) {
#pragma GCC unroll 2
        for (k = 0; k < 8; k += 4) {
            uint8x16x4_t a = vld1q_u8_x4(x->qs[j][k][0]), b = vld1q_u8_x4(x->qs[j][k + 2][0]);
            uint8x16_t   q[8] = { a.val[0], a.val[1], a.val[2], a.val[3],
                                  b.val[0], b.val[1], b.val[2], b.val[3] };

            /* q[2i + r]: step k + i, rows 4r .. 4r + 3 */
#pragma GCC unroll 8
            for (i = 0; i < 8; i++) {
                r = i & 1;
                vst1q_s8(st->w[2 * j][r][k + i / 2][0], vreinterpretq_s8_u8(vandq_u8(q[i], m4)));
                vst1q_s8(st->w[2 * j + 1][r][k + i / 2][0],
                         vreinterpretq_s8_u8(vshrq_n_u8(q[i], 4)));
            }
        }
    }
    for (sb = 0; sb < QK_K / 32; sb++) {
        uint16x8_t v = vmovl_u8(vld1_u8(x->scales[sb]));

        vst1q_s32(st->sc[sb], vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(v))));
        vst1q_s32(st->sc[sb] + 4, vreinterpretq_s32_u32(vmovl_high_u16(v)));
    }
    for (i = 0; i < QK_K / 64; i++) {
        uint8x16_t v = vld1q_u8(x->mins[i][0]);   /* [row][2]: sub-blocks 2i, 2i + 1 */
        uint16x8_t e = vmovl_u8(vget_low_u8(vuzp1q_u8(v, v)));
        uint16x8_t o = vmovl_u8(vget_low_u8(vuzp2q_u8(v, v)));

        vst1q_s32(st->mn[2 * i], vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(e))));
        vst1q_s32(st->mn[2 * i] + 4, vreinterpretq_s32_u32(vmovl_high_u16(e)));
        vst1q_s32(st->mn[2 * i + 1], vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(o))));
        vst1q_s32(st->mn[2 * i + 1] + 4, vreinterpretq_s32_u32(vmovl_high_u16(o)));
    }
    arm_f16x8(x->d, &lo, &hi);
    vst1q_f32(st->d, lo);
    vst1q_f32(st->d + 4, hi);
    arm_f16x8(x->dmin, &lo, &hi);
    vst1q_f32(st->dmin, lo);
    vst1q_f32(st->dmin + 4, hi);
}

/* NT tokens (y[t]: their blocks of this super-block) against the staged
 * super-block: acc[t * 8 + r] as arm_q4kx8_dot does it */
ARM_INLINE void
arm_q4k_staged(const arm_q4k_stage *st, const block_q8_K *const *y, float *acc, const int NT)
{
    int32x4_t bs[4][2];
    int       t, r, sb, k;

#pragma GCC unroll 4
    for (t = 0; t < NT; t++) {
        int16x8_t p = vpaddq_s16(vld1q_s16(y[t]->bsums), vld1q_s16(y[t]->bsums + 8));

        bs[t][0] = vmovl_s16(vget_low_s16(p));
        bs[t][1] = vmovl_high_s16(p);
    }
#pragma GCC unroll 2
    for (r = 0; r < 2; r++) {
        int32x4_t is[4], ms[4];

#pragma GCC unroll 4
        for (t = 0; t < NT; t++) {
            is[t] = vdupq_n_s32(0);
        }
        for (sb = 0; sb < QK_K / 32; sb++) {
            int32x4_t   s[4];
            int32x4_t   sc = vld1q_s32(st->sc[sb] + 4 * r);
            int8x16x4_t q0 = vld1q_s8_x4(st->w[sb][r][0][0]), q1 = vld1q_s8_x4(st->w[sb][r][4][0]);

#pragma GCC unroll 4
            for (t = 0; t < NT; t++) {
                int8x16_t ya = vld1q_s8(y[t]->qs + 32 * sb), yb = vld1q_s8(y[t]->qs + 32 * sb + 16);

                s[t] = arm_idot_lane(vdupq_n_s32(0), q0.val[0], ya, 0);
                s[t] = arm_idot_lane(s[t], q0.val[1], ya, 1);
                s[t] = arm_idot_lane(s[t], q0.val[2], ya, 2);
                s[t] = arm_idot_lane(s[t], q0.val[3], ya, 3);
                s[t] = arm_idot_lane(s[t], q1.val[0], yb, 0);
                s[t] = arm_idot_lane(s[t], q1.val[1], yb, 1);
                s[t] = arm_idot_lane(s[t], q1.val[2], yb, 2);
                s[t] = arm_idot_lane(s[t], q1.val[3], yb, 3);
                is[t] = vmlaq_s32(is[t], s[t], sc);
            }
        }
        {
            int32x4_t mn[8];

#pragma GCC unroll 8
            for (k = 0; k < 8; k++) {
                mn[k] = vld1q_s32(st->mn[k] + 4 * r);
            }
#pragma GCC unroll 4
            for (t = 0; t < NT; t++) {
                ms[t] = vmulq_laneq_s32(mn[0], bs[t][0], 0);
                ms[t] = vmlaq_laneq_s32(ms[t], mn[1], bs[t][0], 1);
                ms[t] = vmlaq_laneq_s32(ms[t], mn[2], bs[t][0], 2);
                ms[t] = vmlaq_laneq_s32(ms[t], mn[3], bs[t][0], 3);
                ms[t] = vmlaq_laneq_s32(ms[t], mn[4], bs[t][1], 0);
                ms[t] = vmlaq_laneq_s32(ms[t], mn[5], bs[t][1], 1);
                ms[t] = vmlaq_laneq_s32(ms[t], mn[6], bs[t][1], 2);
                ms[t] = vmlaq_laneq_s32(ms[t], mn[7], bs[t][1], 3);
            }
        }
        {
            float32x4_t d = vld1q_f32(st->d + 4 * r), m = vld1q_f32(st->dmin + 4 * r);

#pragma GCC unroll 4
            for (t = 0; t < NT; t++) {
                float *o = acc + 8 * t + 4 * r;

                vst1q_f32(o, vfmsq_f32(vfmaq_f32(vld1q_f32(o), vmulq_n_f32(d, y[t]->d),
                                                 vcvtq_f32_s32(is[t])),
                                       vmulq_n_f32(m, y[t]->d), vcvtq_f32_s32(ms[t])));
            }
        }
    }
}

/*
 * The driver of a staged GEMM (Q4_K, Q6_K): NAME(n, w, act, stride, n_tok,
 * out, out_stride, idx) restages each super-block of the group once per
 * ARM_STAGED_GEMM_TOKENS tokens and streams them past it four at a time,
 * STAGED(stage, y[4], acc, NT) adding to acc[t * 8 + r] from 0.
 */
#define ARM_STAGED_GEMM(NAME, BLOCK, STAGE, RESTAGE, STAGED)                            \
ARM_INLINE void                                                                        \
NAME(int64_t n, const void *w, const void *act, size_t stride, int n_tok, float *out,   \
     size_t out_stride, const int32_t *idx)                                            \
{                                                                                      \
    const BLOCK *x = w;                                                                \
    int64_t      b, nb = n / QK_K;                                                     \
    STAGE        st;                                                                   \
    float        acc[ARM_STAGED_GEMM_TOKENS * 8];                                         \
    int          t0, nt, t, g;                                                         \
                                                                                       \
    for (t0 = 0; t0 < n_tok; t0 += ARM_STAGED_GEMM_TOKENS) {                              \
        nt = n_tok - t0 < ARM_STAGED_GEMM_TOKENS ? n_tok - t0 : ARM_STAGED_GEMM_TOKENS;      \
        memset(acc, 0, (size_t) nt * 8 * sizeof(float));                               \
        for (b = 0; b < nb; b++) {                                                     \
            RESTAGE(x + b, &st);                                                       \
            for (g = 0; g < nt; g += 4) {                                              \
                const block_q8_K *y[4];                                                \
                                                                                       \
                for (t = 0; t < 4 && g + t < nt; t++) {                                \
                    y[t] = ARM_ACT(block_q8_K, act, stride, t0 + g + t) + b;           \
                }                                                                      \
                switch (nt - g < 4 ? nt - g : 4) {                                     \
                case 1: STAGED(&st, y, acc + 8 * g, 1); break;                         \
                case 2: STAGED(&st, y, acc + 8 * g, 2); break;                         \
                case 3: STAGED(&st, y, acc + 8 * g, 3); break;                         \
                default: STAGED(&st, y, acc + 8 * g, 4); break;                        \
                }                                                                      \
            }                                                                          \
        }                                                                              \
        for (t = 0; t < nt; t++) {                                                     \
            memcpy(out + (size_t) idx[t0 + t] * out_stride, acc + 8 * t, 8 * sizeof(float)); \
        }                                                                              \
    }                                                                                  \
}

ARM_STAGED_GEMM(arm_q4kx8_gemm, block_q4_Kx8, arm_q4k_stage, arm_q4k_restage, arm_q4k_staged)

/*
 * Prompt tokens of packed Q6_K (packed_gemm, SDOT), as for Q4_K: a
 * super-block restaged with its values put together as q - 32 (4 (q - 32)
 * shifted right by 2), its 16 scales widened, then the tokens streamed
 * past it: per 16 columns and 4 rows, 4 SDOT and one MLA by the scales.
 * The unpacking (6 operations and 4 shifts per 4 vectors) is paid once per
 * call instead of once per 4 tokens. The same integers (a
 * sub-block's exact sum times its scale) and float operations per lane as
 * arm_q6kx8_dot, so its bits.
 */
typedef struct {
    int8_t  w[QK_K / 16][2][4][4][4];   /* [sub-block][row half][step][row][4 columns] */
    int32_t sc[QK_K / 16][8];           /* [sub-block][row] */
    float   d[8];
} arm_q6k_stage;

ARM_INLINE void
arm_q6k_restage(const block_q6_Kx8 *x, arm_q6k_stage *st)
{
    float32x4_t lo, hi;
    int             j, kp, r, p;

    for (j = 0; j < QK_K / 64; j++) {
        for (kp = 0; kp < 4; kp++) {
            /* steps 2kp, 2kp + 1 of columns 64j ..: sub-blocks 4j + kp / 2 (low
             * nibbles) and 4j + 2 + kp / 2 (high), their steps 2 (kp % 2) on */
            int sl = 4 * j + kp / 2, sh = sl + 2, st0 = 2 * (kp % 2);

#pragma GCC unroll 2
            for (r = 0; r < 2; r++) {
                uint8x16x3_t p = vld1q_u8_x3(x->q[j][kp][r][0][0]);
                int8x16_t    v[4];

                arm_q6k_values(p.val[0], p.val[1], p.val[2], v);
                vst1q_s8(st->w[sl][r][st0][0], vshrq_n_s8(v[0], 2));
                vst1q_s8(st->w[sl][r][st0 + 1][0], vshrq_n_s8(v[1], 2));
                vst1q_s8(st->w[sh][r][st0][0], vshrq_n_s8(v[2], 2));
                vst1q_s8(st->w[sh][r][st0 + 1][0], vshrq_n_s8(v[3], 2));
            }
        }
    }
    for (p = 0; p < QK_K / 32; p++) {
        int8x16_t v = vld1q_s8(x->scales[p][0]);   /* [row][2]: sub-blocks 2p, 2p + 1 */
        int16x8_t e = vmovl_s8(vget_low_s8(vuzp1q_s8(v, v)));
        int16x8_t o = vmovl_s8(vget_low_s8(vuzp2q_s8(v, v)));

        vst1q_s32(st->sc[2 * p], vmovl_s16(vget_low_s16(e)));
        vst1q_s32(st->sc[2 * p] + 4, vmovl_high_s16(e));
        vst1q_s32(st->sc[2 * p + 1], vmovl_s16(vget_low_s16(o)));
        vst1q_s32(st->sc[2 * p + 1] + 4, vmovl_high_s16(o));
    }
    arm_f16x8(x->d, &lo, &hi);
    vst1q_f32(st->d, lo);
    vst1q_f32(st->d + 4, hi);
}

/* NT tokens (y[t]: their blocks of this super-block) against the staged
 * super-block: acc[t * 8 + r] as arm_q6kx8_dot does it */
ARM_INLINE void
arm_q6k_staged(const arm_q6k_stage *st, const block_q8_K *const *y, float *acc, const int NT)
{
    int t, r, sb;

#pragma GCC unroll 2
    for (r = 0; r < 2; r++) {
        int32x4_t   is[4];
        float32x4_t d = vld1q_f32(st->d + 4 * r);

#pragma GCC unroll 4
        for (t = 0; t < NT; t++) {
            is[t] = vdupq_n_s32(0);
        }
        for (sb = 0; sb < QK_K / 16; sb++) {
            int32x4_t   sc = vld1q_s32(st->sc[sb] + 4 * r);
            int8x16x4_t q = vld1q_s8_x4(st->w[sb][r][0][0]);

#pragma GCC unroll 4
            for (t = 0; t < NT; t++) {
                int8x16_t y16 = vld1q_s8(y[t]->qs + 16 * sb);
                int32x4_t s = arm_idot_lane(vdupq_n_s32(0), q.val[0], y16, 0);

                s = arm_idot_lane(s, q.val[1], y16, 1);
                s = arm_idot_lane(s, q.val[2], y16, 2);
                s = arm_idot_lane(s, q.val[3], y16, 3);
                is[t] = vmlaq_s32(is[t], s, sc);
            }
        }
#pragma GCC unroll 4
        for (t = 0; t < NT; t++) {
            float *o = acc + 8 * t + 4 * r;

            vst1q_f32(o, vfmaq_f32(vld1q_f32(o), vmulq_n_f32(d, y[t]->d), vcvtq_f32_s32(is[t])));
        }
    }
}

ARM_STAGED_GEMM(arm_q6kx8_gemm, block_q6_Kx8, arm_q6k_stage, arm_q6k_restage, arm_q6k_staged)

/* The packed_dot entries of a table. */
#define QWEN_ARM_PACKED_KERNELS(PFX)                                                   \
    QWEN_PACKED_DOT_ENTRY(PFX##_packed_q4_K, arm_q4kx8_dot)                              \
    QWEN_PACKED_DOT_ENTRY(PFX##_packed_q6_K, arm_q6kx8_dot)                              \
    QWEN_PACKED_DOT_ENTRY(PFX##_packed_q8_0, arm_q8_0x8_dot)                              \
static void                                                                            \
PFX##_packed_pair_q8_0(int64_t n, const void *w, size_t gb, const void *act, float *out) \
{                                                                                      \
    arm_q8_0x8_pair(n, w, gb, act, out);                                               \
}
/* Prompt tokens' packed_gemm of Q6_K on SDOT: every arm64 table's (the
 * plain NEON one through arm_idot_lane's widening multiplies, the i8mm one
 * too, which has no SMMLA Q6_K GEMM) */
#define QWEN_ARM_PACKED_GEMM_Q6K(PFX)                                                  \
static void                                                                            \
PFX##_packed_gemm_q6_K(int64_t n, const void *w, const void *act, size_t stride,         \
                       int n_tok, float *out, size_t out_stride, const int32_t *idx)     \
{                                                                                      \
    arm_q6kx8_gemm(n, w, act, stride, n_tok, out, out_stride, idx);                    \
}
/* Q4_K's staged GEMM, for the plain NEON table only: with SDOT the
 * 4-token dots take fewer instructions at every token count (neoverse-n1,
 * Q4_K's per token: 8 tokens 56.1M against the GEMM's 70.6M, 16 against
 * 64.8M, 32 against 61.9M, a 200-token prompt 54.9M against 57.6M), so
 * the dotprod and bf16 tables have none; the i8mm table has its own,
 * SMMLA, ahead from 8 tokens (54.9M, cpu max) */
#define QWEN_ARM_PACKED_GEMM_Q4K(PFX)                                                  \
static void                                                                            \
PFX##_packed_gemm_q4_K(int64_t n, const void *w, const void *act, size_t stride,         \
                       int n_tok, float *out, size_t out_stride, const int32_t *idx)     \
{                                                                                      \
    arm_q4kx8_gemm(n, w, act, stride, n_tok, out, out_stride, idx);                    \
}
/* Prompt tokens' packed_gemm on SDOT (the i8mm table has its own, SMMLA) */
#define QWEN_ARM_PACKED_GEMM(PFX)                                                      \
QWEN_ARM_PACKED_GEMM_Q6K(PFX)                                                          \
static void                                                                            \
PFX##_packed_gemm_q8_0(int64_t n, const void *w, const void *act, size_t stride,         \
                       int n_tok, float *out, size_t out_stride, const int32_t *idx)     \
{                                                                                      \
    arm_q8_0x8_gemm(n, w, act, stride, n_tok, out, out_stride, idx);                   \
}                                                                                      \
static void                                                                            \
PFX##_q80_quad_prep(int64_t n, const void *act, size_t stride, int n_tok, void *out)     \
{                                                                                      \
    arm_q80_quad_prep(n, act, stride, n_tok, out);                                     \
}                                                                                      \
static size_t                                                                          \
PFX##_q80_quad_bytes(int act_type, int64_t n, int n_tok)                               \
{                                                                                      \
    return arm_q80_quad_bytes(act_type, n, n_tok);                                     \
}
/* Fewest tokens for Q6_K's staged GEMM: below, the 4-token dots take fewer
 * instructions now that their unpack is 6 operations (neoverse-n1, Q4_K_M,
 * Q6_K's per decoded token: 8 tokens 37.4M against 45.3M, 16 tokens 37.4M
 * against 38.9M); a prompt's 200 still favour the GEMM (8.4M against 9.7M
 * a prefilled token) */
#define ARM_Q6K_GEMM_MIN_TOKENS 17
#define QWEN_ARM_PACKED_GEMM_ENTRIES(PFX)                                              \
    .packed_gemm[QWEN_TYPE_Q6_K] = PFX##_packed_gemm_q6_K,                             \
    .packed_gemm_min_tokens[QWEN_TYPE_Q6_K] = ARM_Q6K_GEMM_MIN_TOKENS,                 \
    .packed_gemm[QWEN_TYPE_Q8_0] = PFX##_packed_gemm_q8_0,                             \
    .packed_gemm_act[QWEN_TYPE_Q8_0] = PFX##_q80_quad_prep,                            \
    .packed_gemm_act_bytes = PFX##_q80_quad_bytes,                                     \
    .packed_gemm_act_tokens = 4
#define QWEN_ARM_PACKED_ENTRIES(PFX)                                                   \
    .packed_dot[QWEN_TYPE_Q4_K] = PFX##_packed_q4_K,                                   \
    .packed_dot[QWEN_TYPE_Q6_K] = PFX##_packed_q6_K,                                   \
    .packed_dot[QWEN_TYPE_Q8_0] = PFX##_packed_q8_0,                                   \
    .packed_dot_multi[QWEN_TYPE_Q8_0] = PFX##_packed_pair_q8_0,                        \
    .packed_dot_multi_groups[QWEN_TYPE_Q8_0] = 2

#endif
