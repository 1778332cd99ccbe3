/*
 * arm.h - shared by the arm64 kernel files: the baseline NEON float
 * kernels under exported names (the dotprod table reuses them), and the
 * quantized dot templates, instantiated once per ISA file so the int8 dot
 * primitive becomes SDOT under +dotprod and SMULL + SADALP without it.
 * Every template runs for NT = 1 (vec_dot) and NT = 4 (vec_dot4) with the
 * same per-token operations, so both give bit-identical results.
 */
#ifndef QWEN_KERNELS_ARM_H
#define QWEN_KERNELS_ARM_H

#include <arm_neon.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"

float qwen_neon_dot_f32(int64_t n, const void *w, const void *act);
float qwen_neon_dot_f16(int64_t n, const void *w, const void *act);
float qwen_neon_dot_bf16(int64_t n, const void *w, const void *act);
void  qwen_neon_dot4_f32(int64_t n, const void *w, const void *act, size_t stride, float *out);
void  qwen_neon_dot4_f16(int64_t n, const void *w, const void *act, size_t stride, float *out);
void  qwen_neon_dot4_bf16(int64_t n, const void *w, const void *act, size_t stride, float *out);
void  qwen_neon_quantize_act(int act_type, const float *x, void *y, int64_t n);
float qwen_neon_dot_f32_f16(int64_t n, const float *x, const qwen_f16 *y);
void  qwen_neon_axpy_f16(int64_t n, float a, const qwen_f16 *x, float *y);
void  qwen_neon_f32_to_f16(const float *x, qwen_f16 *y, int64_t n);

/* The float half of a table (designators, so a table adds its own
 * quantized entries next to them). */
#define QWEN_NEON_FLOAT_ENTRIES                                            \
    .vec_dot[QWEN_TYPE_F32] = qwen_neon_dot_f32,                           \
    .vec_dot[QWEN_TYPE_F16] = qwen_neon_dot_f16,                           \
    .vec_dot[QWEN_TYPE_BF16] = qwen_neon_dot_bf16,                         \
    .vec_dot4[QWEN_TYPE_F32] = qwen_neon_dot4_f32,                         \
    .vec_dot4[QWEN_TYPE_F16] = qwen_neon_dot4_f16,                         \
    .vec_dot4[QWEN_TYPE_BF16] = qwen_neon_dot4_bf16,                       \
    .quantize_act = qwen_neon_quantize_act,                                \
    .dot_f32_f16 = qwen_neon_dot_f32_f16,                                  \
    .axpy_f16 = qwen_neon_axpy_f16,                                        \
    .f32_to_f16 = qwen_neon_f32_to_f16

#define ARM_INLINE static inline __attribute__((always_inline))

/* Activation row t of a vec_dot4 call, as blocks of type T. */
#define ARM_ACT(T, act, stride, t) ((const T *) ((const char *) (act) + (size_t) (t) * (stride)))

/* IEEE half to float: one FCVT (base ARMv8), exact like qwen_f16_to_f32. */
ARM_INLINE float
arm_f16(qwen_f16 h)
{
    __fp16 v;

    memcpy(&v, &h, sizeof(v));
    return (float) v;
}

/*
 * acc + 4-byte groups of a . b (signed). Lanes of the two versions hold
 * different partial sums, but every caller only scales whole vectors or
 * sums lanes, and integer sums are exact, so block results agree.
 */
ARM_INLINE int32x4_t
arm_idot(int32x4_t acc, int8x16_t a, int8x16_t b)
{
#if defined(__ARM_FEATURE_DOTPROD)
    return vdotq_s32(acc, a, b);
#else
    /* widening products then pairwise accumulate: no int16 overflow even
     * for -128 x -128, which a Q8_0 weight file may hold */
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    return vpadalq_s16(acc, vmull_high_s8(a, b));
#endif
}

/* Dot of 32 bytes a0:a1 with b (signed x signed), as 4 int32 lanes. */
ARM_INLINE int32x4_t
arm_idot32(int8x16_t a0, int8x16_t a1, const int8_t *b)
{
    return arm_idot(arm_idot(vdupq_n_s32(0), a0, vld1q_s8(b)), a1, vld1q_s8(b + 16));
}

/*
 * EXACT (the i8mm table): each block's integer sum is finished (ADDV) and
 * scaled as one float, so an SMMLA tile, which holds whole sums per lane,
 * can reproduce it bit for bit; otherwise (NEON, dotprod) partial sums stay
 * in vector lanes until one horizontal sum at the end.
 */

/* Block b of a Q8_0 row into float chain 2 t + chain of each token */
ARM_INLINE void
arm_q8_0_block(const block_q8_0 *x, const void *act, size_t stride, int64_t b,
               float32x4_t *acc, float *sacc, int chain, const int NT, const int EXACT)
{
    int8x16_t x0 = vld1q_s8(x[b].qs), x1 = vld1q_s8(x[b].qs + 16);
    float     dw = arm_f16(x[b].d);
    int       t;

    for (t = 0; t < NT; t++) {
        const block_q8_0 *y = ARM_ACT(block_q8_0, act, stride, t) + b;
        int32x4_t         s = arm_idot32(x0, x1, y->qs);
        if (EXACT) {
            sacc[t * 2 + chain] = fmaf((float) vaddvq_s32(s), dw * arm_f16(y->d),
                                       sacc[t * 2 + chain]);
        } else {
            acc[t * 2 + chain] = vfmaq_n_f32(acc[t * 2 + chain], vcvtq_f32_s32(s),
                                             dw * arm_f16(y->d));
        }
    }
}

/* Q8_0 x Q8_0: per block an int32 vector, scaled into a float vector, even
 * and odd blocks in two chains (one waits on the FMA latency). */
ARM_INLINE void
arm_q8_0_dot_n(int64_t n, const void *w, const void *act, size_t stride, float *out,
               const int NT, const int EXACT)
{
    const block_q8_0 *x = w;
    float32x4_t       acc[8];
    float             sacc[8];
    int64_t           b, nb = n / QK8_0;
    int               t;

    for (t = 0; t < 2 * NT; t++) {
        acc[t] = vdupq_n_f32(0.0f);
        sacc[t] = 0.0f;
    }
    for (b = 0; b + 2 <= nb; b += 2) {
        arm_q8_0_block(x, act, stride, b, acc, sacc, 0, NT, EXACT);
        arm_q8_0_block(x, act, stride, b + 1, acc, sacc, 1, NT, EXACT);
    }
    if (b < nb) {
        arm_q8_0_block(x, act, stride, b, acc, sacc, 0, NT, EXACT);
    }
    for (t = 0; t < NT; t++) {
        out[t] = EXACT ? sacc[2 * t] + sacc[2 * t + 1]
                       : vaddvq_f32(vaddq_f32(acc[2 * t], acc[2 * t + 1]));
    }
}

/* The 8 sums of 32 activations of a Q8_K block, from its 16-value bsums */
ARM_INLINE int16x8_t
arm_q8k_bsums8(const block_q8_K *y)
{
    return vpaddq_s16(vld1q_s16(y->bsums), vld1q_s16(y->bsums + 8));
}

/* a . b over 8 int16 lanes as 4 int32 partial sums (exact) */
ARM_INLINE int32x4_t
arm_dot8_s16(int16x8_t a, int16x8_t b)
{
    return vmlal_high_s16(vmull_s16(vget_low_s16(a), vget_low_s16(b)), a, b);
}

/*
 * Q4_K x Q8_K. Nibbles (0..15) are valid signed bytes, so the unsigned
 * weights go straight into the signed dot. Per block the scaled integer
 * sums and the mins (through the activation's bsums) stay in vectors.
 */
ARM_INLINE void
arm_q4k_dot_n(int64_t n, const void *w, const void *act, size_t stride, float *out,
              const int NT, const int EXACT)
{
    const block_q4_K *x = w;
    const uint8x16_t  m4 = vdupq_n_u8(0xF);
    float32x4_t       facc[4], macc[4];
    float             sfacc[4], smacc[4];
    int64_t           b, nb = n / QK_K;
    int               j, t;

    for (t = 0; t < NT; t++) {
        facc[t] = vdupq_n_f32(0.0f);
        macc[t] = vdupq_n_f32(0.0f);
        sfacc[t] = smacc[t] = 0.0f;
    }
    for (b = 0; b < nb; b++) {
        const uint8_t *q4 = x[b].qs;
        uint8_t        sm[16];
        int32x4_t      isum[4], isum2[4];   /* two chains: MLA latency */
        int16x8_t      mins;
        float          dw = arm_f16(x[b].d), dmin = arm_f16(x[b].dmin);

        qwen_q4k_scales_mins(x[b].scales, sm);
        mins = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(sm + 8)));
        for (t = 0; t < NT; t++) {
            isum[t] = isum2[t] = vdupq_n_s32(0);
        }
        for (j = 0; j < QK_K / 64; j++) {
            uint8x16_t r0 = vld1q_u8(q4 + 32 * j), r1 = vld1q_u8(q4 + 32 * j + 16);
            int8x16_t  lo0 = vreinterpretq_s8_u8(vandq_u8(r0, m4));
            int8x16_t  lo1 = vreinterpretq_s8_u8(vandq_u8(r1, m4));
            int8x16_t  hi0 = vreinterpretq_s8_u8(vshrq_n_u8(r0, 4));
            int8x16_t  hi1 = vreinterpretq_s8_u8(vshrq_n_u8(r1, 4));
            int32_t    s0 = sm[2 * j], s1 = sm[2 * j + 1];

            for (t = 0; t < NT; t++) {
                const int8_t *q8 = ARM_ACT(block_q8_K, act, stride, t)[b].qs + 64 * j;
                isum[t] = vmlaq_n_s32(isum[t], arm_idot32(lo0, lo1, q8), s0);
                isum2[t] = vmlaq_n_s32(isum2[t], arm_idot32(hi0, hi1, q8 + 32), s1);
            }
        }
        for (t = 0; t < NT; t++) {
            const block_q8_K *y = ARM_ACT(block_q8_K, act, stride, t) + b;
            /* 16-value bsums paired into the 8 sub-block sums (|sum| <= 4096) */
            int32x4_t ms = arm_dot8_s16(arm_q8k_bsums8(y), mins);
            if (EXACT) {
                sfacc[t] = fmaf((float) vaddvq_s32(vaddq_s32(isum[t], isum2[t])), dw * y->d,
                                sfacc[t]);
                smacc[t] = fmaf((float) vaddvq_s32(ms), dmin * y->d, smacc[t]);
            } else {
                facc[t] = vfmaq_n_f32(facc[t], vcvtq_f32_s32(vaddq_s32(isum[t], isum2[t])),
                                      dw * y->d);
                macc[t] = vfmaq_n_f32(macc[t], vcvtq_f32_s32(ms), dmin * y->d);
            }
        }
    }
    for (t = 0; t < NT; t++) {
        out[t] = EXACT ? sfacc[t] - smacc[t] : vaddvq_f32(vsubq_f32(facc[t], macc[t]));
    }
}

/* The 128 values of half of a Q6_K block, minus 32 (so signed): q[g][i]
 * holds values 32 g + 16 i .. of that half (scale 8 half + 2 g + i). */
ARM_INLINE void
arm_q6k_unpack_half(const uint8_t *ql, const uint8_t *qh, int8x16_t q[4][2])
{
    const uint8x16_t m4 = vdupq_n_u8(0xF), m3 = vdupq_n_u8(3), m30 = vdupq_n_u8(0x30);
    const int8x16_t  off = vdupq_n_s8(32);
    int              i, g;

    for (i = 0; i < 2; i++) {
        uint8x16_t l0 = vld1q_u8(ql + 16 * i), l1 = vld1q_u8(ql + 32 + 16 * i);
        uint8x16_t h = vld1q_u8(qh + 16 * i);
        uint8x16_t u[4];

        u[0] = vorrq_u8(vandq_u8(l0, m4), vshlq_n_u8(vandq_u8(h, m3), 4));
        u[1] = vorrq_u8(vandq_u8(l1, m4), vshlq_n_u8(vandq_u8(vshrq_n_u8(h, 2), m3), 4));
        u[2] = vorrq_u8(vshrq_n_u8(l0, 4), vandq_u8(h, m30));
        u[3] = vorrq_u8(vshrq_n_u8(l1, 4), vandq_u8(vshrq_n_u8(h, 2), m30));
        for (g = 0; g < 4; g++) {
            q[g][i] = vsubq_s8(vreinterpretq_s8_u8(u[g]), off);
        }
    }
}

/*
 * Q6_K x Q8_K. Each 16-byte vector of 6-bit quants is one scale group:
 * one dot, one multiply-add by its int8 scale.
 */
ARM_INLINE void
arm_q6k_dot_n(int64_t n, const void *w, const void *act, size_t stride, float *out,
              const int NT, const int EXACT)
{
    const block_q6_K *x = w;
    float32x4_t       facc[4];
    float             sfacc[4];
    int64_t           b, nb = n / QK_K;
    int               half, g, i, t;

    for (t = 0; t < NT; t++) {
        facc[t] = vdupq_n_f32(0.0f);
        sfacc[t] = 0.0f;
    }
    for (b = 0; b < nb; b++) {
        const int8_t *sc = x[b].scales;
        int32x4_t     isum[4][2];   /* two chains: MLA latency */
        float         dw = arm_f16(x[b].d);

        for (t = 0; t < NT; t++) {
            isum[t][0] = isum[t][1] = vdupq_n_s32(0);
        }
        for (half = 0; half < 2; half++) {
            int8x16_t q[4][2];

            arm_q6k_unpack_half(x[b].ql + 64 * half, x[b].qh + 32 * half, q);
            for (t = 0; t < NT; t++) {
                const int8_t *q8 = ARM_ACT(block_q8_K, act, stride, t)[b].qs + 128 * half;
                for (g = 0; g < 4; g++) {
                    for (i = 0; i < 2; i++) {
                        int32x4_t d = arm_idot(vdupq_n_s32(0), q[g][i],
                                               vld1q_s8(q8 + 32 * g + 16 * i));
                        isum[t][i] = vmlaq_n_s32(isum[t][i], d, sc[8 * half + 2 * g + i]);
                    }
                }
            }
        }
        for (t = 0; t < NT; t++) {
            const block_q8_K *y = ARM_ACT(block_q8_K, act, stride, t) + b;
            int32x4_t         s = vaddq_s32(isum[t][0], isum[t][1]);
            if (EXACT) {
                sfacc[t] = fmaf((float) vaddvq_s32(s), dw * y->d, sfacc[t]);
            } else {
                facc[t] = vfmaq_n_f32(facc[t], vcvtq_f32_s32(s), dw * y->d);
            }
        }
    }
    for (t = 0; t < NT; t++) {
        out[t] = EXACT ? sfacc[t] : vaddvq_f32(facc[t]);
    }
}

/* vec_dot and vec_dot4 entry points of a dot template */
#define QWEN_ARM_DOT_PAIR(DOT, DOT4, TMPL, EXACT)                                      \
static float                                                                           \
DOT(int64_t n, const void *w, const void *act)                                         \
{                                                                                      \
    float r;                                                                           \
    TMPL(n, w, act, 0, &r, 1, EXACT);                                                  \
    return r;                                                                          \
}                                                                                      \
static void                                                                            \
DOT4(int64_t n, const void *w, const void *act, size_t stride, float *out)             \
{                                                                                      \
    TMPL(n, w, act, stride, out, 4, EXACT);                                            \
}

/* The three quantized types' entry points, names prefixed by PFX (one set
 * per ISA file). */
#define QWEN_ARM_QUANT_KERNELS(PFX, EXACT)                                             \
    QWEN_ARM_DOT_PAIR(PFX##_dot_q8_0, PFX##_dot4_q8_0, arm_q8_0_dot_n, EXACT)          \
    QWEN_ARM_DOT_PAIR(PFX##_dot_q4_K, PFX##_dot4_q4_K, arm_q4k_dot_n, EXACT)           \
    QWEN_ARM_DOT_PAIR(PFX##_dot_q6_K, PFX##_dot4_q6_K, arm_q6k_dot_n, EXACT)

#define QWEN_ARM_QUANT_ENTRIES(PFX)                                        \
    .vec_dot[QWEN_TYPE_Q8_0] = PFX##_dot_q8_0,                             \
    .vec_dot[QWEN_TYPE_Q4_K] = PFX##_dot_q4_K,                             \
    .vec_dot[QWEN_TYPE_Q6_K] = PFX##_dot_q6_K,                             \
    .vec_dot4[QWEN_TYPE_Q8_0] = PFX##_dot4_q8_0,                           \
    .vec_dot4[QWEN_TYPE_Q4_K] = PFX##_dot4_q4_K,                           \
    .vec_dot4[QWEN_TYPE_Q6_K] = PFX##_dot4_q6_K

#endif
