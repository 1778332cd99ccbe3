/*
 * arch_x86_avx2.c - AVX2 + FMA + F16C kernels (Haswell and later, Zen).
 * Compiled with -mavx2 -mfma -mf16c and only called after cpuid says so.
 * Quantized dots follow the scalar reference's integer grouping: maddubs
 * (unsigned x signed bytes) into int16, madd by the sub-block scale into
 * int32, one float multiply per block.
 */
#include "kernels.h"

#include <immintrin.h>
#include <string.h>

static inline float
hsum256(__m256 v)
{
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);

    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

static inline __m256
load_bf16x8(const qwen_bf16 *p)
{
    __m128i h = _mm_loadu_si128((const __m128i *) p);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

static float
dot_f32(int64_t n, const void *w, const void *act)
{
    const float *x = w, *y = act;
    __m256       a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t      i = 0;
    float        sum;

    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
    }
    sum = hsum256(_mm256_add_ps(a0, a1));
    for (; i < n; i++) {
        sum += x[i] * y[i];
    }
    return sum;
}

static float
dot_f16(int64_t n, const void *w, const void *act)
{
    const qwen_f16 *x = w;
    const float    *y = act;
    __m256          a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t         i = 0;
    float           sum;

    for (; i + 16 <= n; i += 16) {
        __m256 w0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) (x + i)));
        __m256 w1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) (x + i + 8)));
        a0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(y + i), a0);
        a1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(y + i + 8), a1);
    }
    sum = hsum256(_mm256_add_ps(a0, a1));
    for (; i < n; i++) {
        sum += qwen_f16_to_f32(x[i]) * y[i];
    }
    return sum;
}

static float
dot_bf16(int64_t n, const void *w, const void *act)
{
    const qwen_bf16 *x = w;
    const float     *y = act;
    __m256           a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t          i = 0;
    float            sum;

    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(load_bf16x8(x + i), _mm256_loadu_ps(y + i), a0);
        a1 = _mm256_fmadd_ps(load_bf16x8(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
    }
    sum = hsum256(_mm256_add_ps(a0, a1));
    for (; i < n; i++) {
        sum += qwen_bf16_to_f32(x[i]) * y[i];
    }
    return sum;
}

/* signed x signed bytes -> 8 int32 sums of 4 products */
static inline __m256i
dot_i8x32(__m256i x, __m256i y)
{
    __m256i ax = _mm256_sign_epi8(x, x);
    __m256i sy = _mm256_sign_epi8(y, x);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1));
}

static float
dot_q8_0(int64_t n, const void *w, const void *act)
{
    const block_q8_0 *x = w, *y = act;
    __m256            acc = _mm256_setzero_ps();
    int64_t           b, nb = n / QK8_0;

    for (b = 0; b < nb; b++) {
        __m256i qx = _mm256_loadu_si256((const __m256i *) x[b].qs);
        __m256i qy = _mm256_loadu_si256((const __m256i *) y[b].qs);
        __m256  d = _mm256_set1_ps(qwen_f16_to_f32(x[b].d) * qwen_f16_to_f32(y[b].d));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8x32(qx, qy)), acc);
    }
    return hsum256(acc);
}

static void
q4k_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

static float
dot_q4_K(int64_t n, const void *w, const void *act)
{
    const block_q4_K *x = w;
    const block_q8_K *y = act;
    const __m256i     mask = _mm256_set1_epi8(0xF);
    float             sum = 0.0f;
    int64_t           b, nb = n / QK_K;
    int               j, msum;
    uint8_t           sc0, m0, sc1, m1;

    for (b = 0; b < nb; b++) {
        __m256i        isum = _mm256_setzero_si256();
        const uint8_t *q4 = x[b].qs;
        const int8_t  *q8 = y[b].qs;

        msum = 0;
        for (j = 0; j < QK_K / 64; j++) {
            __m256i raw = _mm256_loadu_si256((const __m256i *) q4);
            __m256i lo = _mm256_and_si256(raw, mask);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), mask);
            __m256i p0 = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *) q8));
            __m256i p1 = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *) (q8 + 32)));

            q4k_scale_min(2 * j, x[b].scales, &sc0, &m0);
            q4k_scale_min(2 * j + 1, x[b].scales, &sc1, &m1);
            isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p0, _mm256_set1_epi16(sc0)));
            isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p1, _mm256_set1_epi16(sc1)));
            msum += m0 * (y[b].bsums[4 * j] + y[b].bsums[4 * j + 1])
                    + m1 * (y[b].bsums[4 * j + 2] + y[b].bsums[4 * j + 3]);
            q4 += 32;
            q8 += 64;
        }
        sum += y[b].d * (qwen_f16_to_f32(x[b].d) * hsum256(_mm256_cvtepi32_ps(isum))
                         - qwen_f16_to_f32(x[b].dmin) * (float) msum);
    }
    return sum;
}

static float
dot_q6_K(int64_t n, const void *w, const void *act)
{
    const block_q6_K *x = w;
    const block_q8_K *y = act;
    const __m256i     m4 = _mm256_set1_epi8(0xF), m3 = _mm256_set1_epi8(3);
    const __m256i     m32 = _mm256_set1_epi8(32);
    float             sum = 0.0f;
    int64_t           b, nb = n / QK_K;
    int               half, g;

    for (b = 0; b < nb; b++) {
        __m256i        isum = _mm256_setzero_si256();
        const uint8_t *ql = x[b].ql, *qh = x[b].qh;
        const int8_t  *q8 = y[b].qs, *sc = x[b].scales;

        for (half = 0; half < 2; half++) {
            __m256i l0 = _mm256_loadu_si256((const __m256i *) ql);
            __m256i l1 = _mm256_loadu_si256((const __m256i *) (ql + 32));
            __m256i h = _mm256_loadu_si256((const __m256i *) qh);
            __m256i q[4];

            q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4),
                                   _mm256_slli_epi16(_mm256_and_si256(h, m3), 4));
            q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), m3), 4));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), m3), 4));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), m3), 4));
            for (g = 0; g < 4; g++) {
                __m256i y8 = _mm256_loadu_si256((const __m256i *) (q8 + 32 * g));
                /* (q - 32) . y = q . y - 32 . y, both as unsigned x signed */
                __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(q[g], y8),
                                             _mm256_maddubs_epi16(m32, y8));
                __m256i s = _mm256_set_m128i(_mm_set1_epi16(sc[2 * g + 1]),
                                             _mm_set1_epi16(sc[2 * g]));
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, s));
            }
            ql += 64;
            qh += 32;
            q8 += 128;
            sc += 8;
        }
        sum += qwen_f16_to_f32(x[b].d) * y[b].d * hsum256(_mm256_cvtepi32_ps(isum));
    }
    return sum;
}

static float
dot_f32_f16(int64_t n, const float *x, const qwen_f16 *y)
{
    __m256  acc = _mm256_setzero_ps();
    int64_t i = 0;
    float   sum;

    for (; i + 8 <= n; i += 8) {
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(x + i),
                              _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) (y + i))), acc);
    }
    sum = hsum256(acc);
    for (; i < n; i++) {
        sum += x[i] * qwen_f16_to_f32(y[i]);
    }
    return sum;
}

static void
axpy_f16(int64_t n, float a, const qwen_f16 *x, float *y)
{
    __m256  va = _mm256_set1_ps(a);
    int64_t i = 0;

    for (; i + 8 <= n; i += 8) {
        __m256 xv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) (x + i)));
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, xv, _mm256_loadu_ps(y + i)));
    }
    for (; i < n; i++) {
        y[i] += a * qwen_f16_to_f32(x[i]);
    }
}

static void
f32_to_f16(const float *x, qwen_f16 *y, int64_t n)
{
    int64_t i = 0;

    for (; i + 8 <= n; i += 8) {
        _mm_storeu_si128((__m128i *) (y + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    }
    for (; i < n; i++) {
        y[i] = qwen_f32_to_f16(x[i]);
    }
}

static void
quantize_act(int act_type, const float *x, void *y, int64_t n)
{
    qwen_quantize_row(act_type, x, y, n);
}

const qwen_kernels *
qwen_kernels_avx2(void)
{
    static const qwen_kernels k = {
        .name = "avx2",
        .vec_dot = {
            [QWEN_TYPE_F32] = dot_f32,
            [QWEN_TYPE_F16] = dot_f16,
            [QWEN_TYPE_BF16] = dot_bf16,
            [QWEN_TYPE_Q8_0] = dot_q8_0,
            [QWEN_TYPE_Q4_K] = dot_q4_K,
            [QWEN_TYPE_Q6_K] = dot_q6_K,
        },
        .quantize_act = quantize_act,
        .dot_f32_f16 = dot_f32_f16,
        .axpy_f16 = axpy_f16,
        .f32_to_f16 = f32_to_f16,
    };
    return &k;
}
