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

const qwen_kernels *qwen_kernels_neon(void);
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
void  qwen_neon_kv_store_f16(int hd, const float *k, const float *v, void *kc, void *vc, int t);
void  qwen_neon_attention_f32(int hd, int n_q, const float *q, const qwen_kv_view *kv,
                              int n_pos, float scale, float *scratch, float *out);
void  qwen_neon_attention_f16(int hd, int n_q, const float *q, const qwen_kv_view *kv,
                              int n_pos, float scale, float *scratch, float *out);
void  qwen_neon_rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps);
void  qwen_neon_attention_tokens_f32(int hd, int n_q, int m, const float *q, size_t q_stride,
                                     const qwen_kv_view *kv, int n_pos, float scale,
                                     float *scratch, float *out, size_t out_stride);
void  qwen_neon_attention_tokens_f16(int hd, int n_q, int m, const float *q, size_t q_stride,
                                     const qwen_kv_view *kv, int n_pos, float scale,
                                     float *scratch, float *out, size_t out_stride);
void  qwen_dotprod_attention_q8_0(int hd, int n_q, const float *q, const qwen_kv_view *kv,
                                  int n_pos, float scale, float *scratch, float *out);

/* The float half of a table, with the f32 and f16 KV formats
 * (designators, so a table adds its own quantized entries and its q8_0
 * KV format next to them). */
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
    .f32_to_f16 = qwen_neon_f32_to_f16,                                    \
    .rmsnorm = qwen_neon_rmsnorm,                                          \
    .kv_store[QWEN_KV_F32] = qwen_kv_store_f32,                            \
    .kv_store[QWEN_KV_F16] = qwen_neon_kv_store_f16,                       \
    .kv_attention[QWEN_KV_F32] = qwen_neon_attention_f32,                  \
    .kv_attention[QWEN_KV_F16] = qwen_neon_attention_f16,                  \
    .kv_attention_tokens[QWEN_KV_F32] = qwen_neon_attention_tokens_f32,    \
    .kv_attention_tokens[QWEN_KV_F16] = qwen_neon_attention_tokens_f16

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

/*
 * Two Q8_0 weight rows (w, w + w_stride) against 4 tokens, out8[r * 4 + t]:
 * each (row, token) accumulates exactly as arm_q8_0_dot_n does for that row
 * alone (the same integer dots, the same two float chains in the same
 * order: bit-identical), while each token's block is loaded and its scale
 * converted once for both rows. For the lane-sum tables (NEON, dotprod,
 * bf16); i8mm has its SMMLA tile.
 */
ARM_INLINE void
arm_q8_0_dot_2x4(int64_t n, const void *w, size_t w_stride, const void *act, size_t stride,
                 float *out8)
{
    const block_q8_0 *x0 = w;
    const block_q8_0 *x1 = (const block_q8_0 *) ((const char *) w + w_stride);
    float32x4_t       acc0[8], acc1[8];
    int64_t           b, nb = n / QK8_0;
    int               t, ch;

    for (t = 0; t < 8; t++) {
        acc0[t] = acc1[t] = vdupq_n_f32(0.0f);
    }
    for (b = 0; b < nb; b++) {
        int8x16_t a0 = vld1q_s8(x0[b].qs), a1 = vld1q_s8(x0[b].qs + 16);
        int8x16_t c0 = vld1q_s8(x1[b].qs), c1 = vld1q_s8(x1[b].qs + 16);
        float     d0 = arm_f16(x0[b].d), d1 = arm_f16(x1[b].d);

        ch = (int) (b & 1);
        for (t = 0; t < 4; t++) {
            const block_q8_0 *y = ARM_ACT(block_q8_0, act, stride, t) + b;
            int8x16_t         y0 = vld1q_s8(y->qs), y1 = vld1q_s8(y->qs + 16);
            float             dy = arm_f16(y->d);
            int32x4_t         s0 = arm_idot(arm_idot(vdupq_n_s32(0), a0, y0), a1, y1);
            int32x4_t         s1 = arm_idot(arm_idot(vdupq_n_s32(0), c0, y0), c1, y1);

            acc0[2 * t + ch] = vfmaq_n_f32(acc0[2 * t + ch], vcvtq_f32_s32(s0), d0 * dy);
            acc1[2 * t + ch] = vfmaq_n_f32(acc1[2 * t + ch], vcvtq_f32_s32(s1), d1 * dy);
        }
    }
    for (t = 0; t < 4; t++) {
        out8[t] = vaddvq_f32(vaddq_f32(acc0[2 * t], acc0[2 * t + 1]));
        out8[4 + t] = vaddvq_f32(vaddq_f32(acc1[2 * t], acc1[2 * t + 1]));
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

/* ------------------------------------------------------------ attention */

/* e^x's constants in registers: a loop that calls arm_exp_neg holds them
 * (GCC would load each from the literal pool, two instructions, on every
 * call: a quarter of a softmax's) */
typedef struct {
    float32x4_t lo, log2e, ln2_hi, ln2_lo, p[6], one;
    int32x4_t   bias;
} arm_exp_k;

ARM_INLINE void
arm_exp_init(arm_exp_k *k)
{
    static const float c[6] = { 1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                                4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f };
    int                i;

    k->lo = vdupq_n_f32(-87.3f);
    k->log2e = vdupq_n_f32(1.44269504f);
    k->ln2_hi = vdupq_n_f32(0.693359375f);
    k->ln2_lo = vdupq_n_f32(-2.12194440e-4f);
    for (i = 0; i < 6; i++) {
        k->p[i] = vdupq_n_f32(c[i]);
        __asm__("" : "+w"(k->p[i]));
    }
    k->one = vdupq_n_f32(1.0f);
    k->bias = vdupq_n_s32(127);
    __asm__("" : "+w"(k->lo), "+w"(k->log2e), "+w"(k->ln2_hi), "+w"(k->ln2_lo), "+w"(k->one),
            "+w"(k->bias));
}

/* e^x for -87.3 <= x <= 0, 4 lanes: x = n ln2 + r with |r| <= ln2/2, e^r
 * by the Cephes polynomial, 2^n put in the exponent bits (relative error
 * ~1e-7) */
ARM_INLINE float32x4_t
arm_exp_neg(float32x4_t x, const arm_exp_k *k)
{
    float32x4_t n, r, p;

    x = vmaxq_f32(x, k->lo);
    n = vrndnq_f32(vmulq_f32(x, k->log2e));
    r = vfmsq_f32(x, n, k->ln2_hi);
    r = vfmsq_f32(r, n, k->ln2_lo);
    p = k->p[0];
    p = vfmaq_f32(k->p[1], p, r);
    p = vfmaq_f32(k->p[2], p, r);
    p = vfmaq_f32(k->p[3], p, r);
    p = vfmaq_f32(k->p[4], p, r);
    p = vfmaq_f32(k->p[5], p, r);
    p = vfmaq_f32(vaddq_f32(r, k->one), p, vmulq_f32(r, r));
    return vmulq_f32(p, vreinterpretq_f32_s32(vshlq_n_s32(
        vaddq_s32(vcvtq_s32_f32(n), k->bias), 23)));
}

/* sc[t] = e^(sc[t] - max) for t < n (4 at a time, the tail scalar: nothing
 * past n is read); returns their sum */
ARM_INLINE float
arm_softmax_exp(float *sc, int n)
{
    float32x4_t mx4 = vdupq_n_f32(-INFINITY), sum4 = vdupq_n_f32(0.0f), e, m;
    float       mx, sum;
    int         t;
    arm_exp_k   k;

    for (t = 0; t + 4 <= n; t += 4) {
        mx4 = vmaxq_f32(mx4, vld1q_f32(sc + t));
    }
    mx = vmaxvq_f32(mx4);
    for (; t < n; t++) {
        mx = sc[t] > mx ? sc[t] : mx;
    }
    arm_exp_init(&k);
    m = vdupq_n_f32(mx);
    for (t = 0; t + 4 <= n; t += 4) {
        e = arm_exp_neg(vsubq_f32(vld1q_f32(sc + t), m), &k);
        vst1q_f32(sc + t, e);
        sum4 = vaddq_f32(sum4, e);
    }
    sum = vaddvq_f32(sum4);
    for (; t < n; t++) {
        sc[t] = expf(sc[t] - mx);
        sum += sc[t];
    }
    return sum;
}

/* 4 f16 as floats */
ARM_INLINE float32x4_t
arm_f16x4(const qwen_f16 *p)
{
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
}

/*
 * acc + the dot products of 4 positions' 4-dimension groups (k: 16 bytes)
 * with group LANE of the query's 16 bytes q. SDOT by lane under +dotprod;
 * otherwise the group is broadcast and SMULL products are summed pairwise
 * into each position's lane (|product| <= 127 x 127: the int16 pair sums
 * cannot overflow). Exact either way.
 */
#if defined(__ARM_FEATURE_DOTPROD)
#define ARM_DOT4_LANE(acc, k, q, LANE) vdotq_laneq_s32(acc, k, q, LANE)
#else
ARM_INLINE int32x4_t
arm_dot4_bcast(int32x4_t acc, int8x16_t k, int8x16_t qb)
{
    int16x8_t lo = vmull_s8(vget_low_s8(k), vget_low_s8(qb));
    int16x8_t hi = vmull_high_s8(k, qb);

    return vpadalq_s16(acc, vpaddq_s16(lo, hi));
}
#define ARM_DOT4_LANE(acc, k, q, LANE)                                                  \
    arm_dot4_bcast(acc, k, vreinterpretq_s8_s32(vdupq_laneq_s32(vreinterpretq_s32_s8(q), LANE)))
#endif

/*
 * q8_0 scores of NQ heads for the 8 positions at c of a region's K (the
 * layout in kernels.h): per 32-dimension block the integer sums of 8
 * groups, then acc = fma(isum, dK * dq, acc) in block order, as the scalar
 * reference (the same scores bit for bit).
 */
ARM_INLINE void
arm_q8_scores8(int hd, const int NQ, const int8_t *qs, const float *dq, const int8_t *kq,
               int c, float32x4_t acc[][2])
{
    const qwen_f16 *ks = qwen_kv_q8_0_scales(kq, hd);
    int             b, g4, h, nb = hd / 32;

    for (h = 0; h < NQ; h++) {
        acc[h][0] = acc[h][1] = vdupq_n_f32(0.0f);
    }
    for (b = 0; b < nb; b++) {
        int32x4_t   isum[4][2];
        float32x4_t dk0 = arm_f16x4(ks + b * QWEN_KV_BLOCK + c);
        float32x4_t dk1 = arm_f16x4(ks + b * QWEN_KV_BLOCK + c + 4);

        for (h = 0; h < NQ; h++) {
            isum[h][0] = isum[h][1] = vdupq_n_s32(0);
        }
        for (g4 = 0; g4 < 2; g4++) {
            int8x16_t qv[4];

            for (h = 0; h < NQ; h++) {
                qv[h] = vld1q_s8(qs + (size_t) h * hd + 32 * b + 16 * g4);
            }
#define ARM_Q8_GROUP(L)                                                                 \
            {                                                                           \
                const int8_t *kg = kq + (size_t) (8 * b + 4 * g4 + (L)) * (QWEN_KV_BLOCK * 4) \
                                   + 4 * c;                                             \
                int8x16_t     k0 = vld1q_s8(kg), k1 = vld1q_s8(kg + 16);                \
                for (h = 0; h < NQ; h++) {                                              \
                    isum[h][0] = ARM_DOT4_LANE(isum[h][0], k0, qv[h], L);               \
                    isum[h][1] = ARM_DOT4_LANE(isum[h][1], k1, qv[h], L);               \
                }                                                                       \
            }
            ARM_Q8_GROUP(0)
            ARM_Q8_GROUP(1)
            ARM_Q8_GROUP(2)
            ARM_Q8_GROUP(3)
#undef ARM_Q8_GROUP
        }
        for (h = 0; h < NQ; h++) {
            float d = dq[h * nb + b];

            acc[h][0] = vfmaq_f32(acc[h][0], vcvtq_f32_s32(isum[h][0]), vmulq_n_f32(dk0, d));
            acc[h][1] = vfmaq_f32(acc[h][1], vcvtq_f32_s32(isum[h][1]), vmulq_n_f32(dk1, d));
        }
    }
}

/* scores[h][t] for NQ heads (h at h * rows), whole 8-position chunks: past
 * n_pos they hold anything, the softmax reads only n_pos */
ARM_INLINE void
arm_q8_scores(int hd, const int NQ, const int8_t *qs, const float *dq, const qwen_kv_view *kv,
              int n_pos, float scale, float *scores, int rows)
{
    float32x4_t acc[4][2];
    int         t, h;

    for (t = 0; t < n_pos; t += 8) {
        arm_q8_scores8(hd, NQ, qs, dq, qwen_kv_block_k(kv, t), t % QWEN_KV_BLOCK, acc);
        for (h = 0; h < NQ; h++) {
            vst1q_f32(scores + (size_t) h * rows + t, vmulq_n_f32(acc[h][0], scale));
            vst1q_f32(scores + (size_t) h * rows + t + 4, vmulq_n_f32(acc[h][1], scale));
        }
    }
}

/* out[h] += w . V over the np positions of a region for NH (1 or 2) heads
 * and the 32 dimensions of block b, w = p x V's scale (wv): each row's 32
 * int8 widened and converted once for the heads */
ARM_INLINE void
arm_q8_values_block(int hd, const int NH, const float (*wv)[QWEN_KV_BLOCK], const int8_t *vq,
                    int np, int b, float *out)
{
    float32x4_t o[2][8];
    int         t, h, j;

    for (h = 0; h < NH; h++) {
        for (j = 0; j < 8; j++) {
            o[h][j] = vld1q_f32(out + (size_t) h * hd + 32 * b + 4 * j);
        }
    }
    for (t = 0; t < np; t++) {
        const int8_t *row = vq + qwen_kv_q8_0_v_index(hd, t, 32 * b);
        int8x16_t     r0 = vld1q_s8(row), r1 = vld1q_s8(row + 16);
        int16x8_t     s[4] = { vmovl_s8(vget_low_s8(r0)), vmovl_high_s8(r0),
                               vmovl_s8(vget_low_s8(r1)), vmovl_high_s8(r1) };
        float32x4_t   v[8];

        for (j = 0; j < 4; j++) {
            v[2 * j] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(s[j])));
            v[2 * j + 1] = vcvtq_f32_s32(vmovl_high_s16(s[j]));
        }
        for (h = 0; h < NH; h++) {
            float w = wv[h][t];

            for (j = 0; j < 8; j++) {
                o[h][j] = vfmaq_n_f32(o[h][j], v[j], w);
            }
        }
    }
    for (h = 0; h < NH; h++) {
        for (j = 0; j < 8; j++) {
            vst1q_f32(out + (size_t) h * hd + 32 * b + 4 * j, o[h][j]);
        }
    }
}

/* out[h] = sum_t p[h][t] V[t] for nh heads (p at h * rows, unnormalized),
 * one region at a time so V is read once, in order */
ARM_INLINE void
arm_q8_values(int hd, int nh, const float *p, int rows, const qwen_kv_view *kv, int n_pos,
              float *out)
{
    float wv[4][QWEN_KV_BLOCK];
    int   r, b, h, c, np;

    memset(out, 0, (size_t) nh * hd * sizeof(float));
    for (r = 0; r < n_pos; r += QWEN_KV_BLOCK) {
        const int8_t   *vq = qwen_kv_block_v(kv, r);
        const qwen_f16 *vs = qwen_kv_q8_0_scales(vq, hd);

        np = n_pos - r < QWEN_KV_BLOCK ? n_pos - r : QWEN_KV_BLOCK;
        for (b = 0; b < hd / 32; b++) {
            /* whole chunks of 4; only the first np weights are read */
            for (h = 0; h < nh; h++) {
                for (c = 0; c < np; c += 4) {
                    vst1q_f32(&wv[h][c], vmulq_f32(vld1q_f32(p + (size_t) h * rows + r + c),
                                                   arm_f16x4(vs + b * QWEN_KV_BLOCK + c)));
                }
            }
            for (h = 0; h + 2 <= nh; h += 2) {
                arm_q8_values_block(hd, 2, (const float (*)[QWEN_KV_BLOCK]) wv[h], vq, np, b,
                                    out + (size_t) h * hd);
            }
            if (h < nh) {
                arm_q8_values_block(hd, 1, (const float (*)[QWEN_KV_BLOCK]) wv[h], vq, np, b,
                                    out + (size_t) h * hd);
            }
        }
    }
}

/*
 * Attention over the q8_0 layout, up to 4 query heads at a time: the query
 * quantized per 32 dimensions (qwen_kv_quantize_q), integer q . K
 * (arm_q8_scores8), softmax with the vector exp, then V dequantized once
 * per row for the heads and weighted by probability x scale.
 */
ARM_INLINE void
arm_attention_q8_0(int hd, int n_q, const float *q, const qwen_kv_view *kv, int n_pos,
                   float scale, float *scratch, float *out)
{
    int8_t qs[4 * QWEN_KV_MAX_HD];
    float  dq[4 * QWEN_KV_MAX_HD / 32], sums[4];
    int    rows = qwen_kv_rows(n_pos), h0, nh, h, i, nb = hd / 32;

    for (h0 = 0; h0 < n_q; h0 += nh) {
        float *sc0 = scratch + (size_t) h0 * rows, *o0 = out + (size_t) h0 * hd;

        nh = n_q - h0 < 4 ? n_q - h0 : 4;
        for (h = 0; h < nh; h++) {
            qwen_kv_quantize_q(hd, q + (size_t) (h0 + h) * hd, qs + (size_t) h * hd,
                               dq + h * nb);
        }
        switch (nh) {
        case 1: arm_q8_scores(hd, 1, qs, dq, kv, n_pos, scale, sc0, rows); break;
        case 2: arm_q8_scores(hd, 2, qs, dq, kv, n_pos, scale, sc0, rows); break;
        case 3: arm_q8_scores(hd, 3, qs, dq, kv, n_pos, scale, sc0, rows); break;
        default: arm_q8_scores(hd, 4, qs, dq, kv, n_pos, scale, sc0, rows); break;
        }
        for (h = 0; h < nh; h++) {
            sums[h] = arm_softmax_exp(sc0 + (size_t) h * rows, n_pos);
        }
        arm_q8_values(hd, nh, sc0, rows, kv, n_pos, o0);
        for (h = 0; h < nh; h++) {
            float *o = o0 + (size_t) h * hd;

            for (i = 0; i < hd; i += 4) {
                vst1q_f32(o + i, vmulq_n_f32(vld1q_f32(o + i), 1.0f / sums[h]));
            }
        }
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

/* The Q8_0 2 x 4 tile of the lane-sum tables (EXACT 0). */
#define QWEN_ARM_Q8_0_2X4(PFX)                                                         \
static void                                                                            \
PFX##_dot2x4_q8_0(int64_t n, const void *w, size_t w_stride, const void *act,          \
                  size_t stride, float *out8)                                          \
{                                                                                      \
    arm_q8_0_dot_2x4(n, w, w_stride, act, stride, out8);                               \
}

#define QWEN_ARM_QUANT_ENTRIES(PFX)                                        \
    .vec_dot[QWEN_TYPE_Q8_0] = PFX##_dot_q8_0,                             \
    .vec_dot[QWEN_TYPE_Q4_K] = PFX##_dot_q4_K,                             \
    .vec_dot[QWEN_TYPE_Q6_K] = PFX##_dot_q6_K,                             \
    .vec_dot4[QWEN_TYPE_Q8_0] = PFX##_dot4_q8_0,                           \
    .vec_dot4[QWEN_TYPE_Q4_K] = PFX##_dot4_q4_K,                           \
    .vec_dot4[QWEN_TYPE_Q6_K] = PFX##_dot4_q6_K

#endif
