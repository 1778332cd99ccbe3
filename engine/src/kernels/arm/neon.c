/*
 * neon.c - baseline arm64 kernels (ARMv8.0 Advanced SIMD, e.g.
 * Cortex-A72 / Graviton1): F32/F16/BF16 dots with FMLA, quantized dots with
 * SMULL + SADALP, attention helpers with the base FCVT half conversions.
 * Compiled with -march=armv8-a; its float kernels are shared by the other
 * arm64 tables (arm.h).
 */
#include "kernels/arm/arm.h"

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

    for (t = 0; t < NT; t++) {
        y[t] = ARM_ACT(float, act, stride, t);
        for (a = 0; a < 4; a++) {
            acc[t][a] = vdupq_n_f32(0.0f);
        }
    }
    for (; i + 16 <= n; i += 16) {
        float32x4_t wv[4];
        for (a = 0; a < 4; a++) {
            wv[a] = load4(w, i + 4 * a, kind);
        }
        for (t = 0; t < NT; t++) {
            for (a = 0; a < 4; a++) {
                acc[t][a] = vfmaq_f32(acc[t][a], wv[a], vld1q_f32(y[t] + i + 4 * a));
            }
        }
    }
    for (; i + 4 <= n; i += 4) {
        float32x4_t wv = load4(w, i, kind);
        for (t = 0; t < NT; t++) {
            acc[t][0] = vfmaq_f32(acc[t][0], wv, vld1q_f32(y[t] + i));
        }
    }
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

/* Activation rows are a small share of the work (once per matmul, not per
 * weight row): the reference quantizers keep the bytes identical. */
static void
quantize_act(int act_type, const float *x, void *y, int64_t n)
{
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

static const qwen_kernels kernels_neon = {
    .name = "neon",
    QWEN_NEON_FLOAT_ENTRIES,
    QWEN_ARM_QUANT_ENTRIES(neon),
};

const qwen_kernels *
qwen_kernels_neon(void)
{
    return &kernels_neon;
}
