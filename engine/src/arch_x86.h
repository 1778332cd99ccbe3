/*
 * arch_x86.h - the AVX2 kernels under exported names, so the AVX-512 table
 * (a superset) can be a constant initializer that reuses them.
 */
#ifndef QWEN_ARCH_X86_H
#define QWEN_ARCH_X86_H

#include <string.h>

#include "kernels.h"

const qwen_kernels *qwen_kernels_avx2(void);
float qwen_avx2_dot_f32(int64_t n, const void *w, const void *act);
float qwen_avx2_dot_f16(int64_t n, const void *w, const void *act);
float qwen_avx2_dot_bf16(int64_t n, const void *w, const void *act);
float qwen_avx2_dot_q8_0(int64_t n, const void *w, const void *act);
float qwen_avx2_dot_q4_K(int64_t n, const void *w, const void *act);
float qwen_avx2_dot_q6_K(int64_t n, const void *w, const void *act);
void  qwen_avx2_dot4_f16(int64_t n, const void *w, const void *act, size_t stride, float *out);
void  qwen_avx2_dot4_bf16(int64_t n, const void *w, const void *act, size_t stride, float *out);
void  qwen_avx2_dot4_q8_0(int64_t n, const void *w, const void *act, size_t stride, float *out);
void  qwen_avx2_dot4_q4_K(int64_t n, const void *w, const void *act, size_t stride, float *out);
void  qwen_avx2_dot4_q6_K(int64_t n, const void *w, const void *act, size_t stride, float *out);
void  qwen_avx2_quantize_act(int act_type, const float *x, void *y, int64_t n);
float qwen_avx2_dot_f32_f16(int64_t n, const float *x, const qwen_f16 *y);
void  qwen_avx2_axpy_f16(int64_t n, float a, const qwen_f16 *x, float *y);
void  qwen_avx2_f32_to_f16(const float *x, qwen_f16 *y, int64_t n);
void  qwen_avx2_attention(int hd, int n_q, const float *q, const qwen_f16 *k, const qwen_f16 *v,
                          size_t stride, int n_pos, float scale, float *scratch, float *out);

/* The 8 scales and 8 mins of a Q4_K block as 16 bytes [sc0..sc7, m0..m7]:
 * the 6-bit fields regrouped with 32-bit masks instead of byte loops. */
static inline void
qwen_q4k_scales_mins(const uint8_t *q, uint8_t *out16)
{
    const uint32_t kmask1 = 0x3f3f3f3f, kmask2 = 0x0f0f0f0f, kmask3 = 0x03030303;
    uint32_t       u[4], aux;

    memcpy(u, q, 12);
    u[3] = ((u[2] >> 4) & kmask2) | (((u[1] >> 6) & kmask3) << 4);
    aux = u[1] & kmask1;
    u[1] = (u[2] & kmask2) | (((u[0] >> 6) & kmask3) << 4);
    u[2] = aux;
    u[0] &= kmask1;
    memcpy(out16, u, 16);
}

#ifdef __AVX2__
#include <immintrin.h>

/* The 128 six-bit quants of one half of a Q6_K block (ql: 64 bytes, qh: 32)
 * as 4 x 32 bytes, q[g] holding values 32g .. 32g + 31, each 0..63. */
static inline void
qwen_q6k_unpack_half(const uint8_t *ql, const uint8_t *qh, __m256i q[4])
{
    const __m256i m4 = _mm256_set1_epi8(0xF), m3 = _mm256_set1_epi8(3);
    __m256i       l0 = _mm256_loadu_si256((const __m256i *) ql);
    __m256i       l1 = _mm256_loadu_si256((const __m256i *) (ql + 32));
    __m256i       h = _mm256_loadu_si256((const __m256i *) qh);

    q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4),
                           _mm256_slli_epi16(_mm256_and_si256(h, m3), 4));
    q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), m3), 4));
    q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), m3), 4));
    q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), m3), 4));
}
#endif

/* The AVX2 table's entries; a superset table passes its own K-quant dots. */
#define QWEN_AVX2_ENTRIES(q4k, q6k, q4k4, q6k4)                            \
    .vec_dot = {                                                           \
        [QWEN_TYPE_F32] = qwen_avx2_dot_f32,                               \
        [QWEN_TYPE_F16] = qwen_avx2_dot_f16,                               \
        [QWEN_TYPE_BF16] = qwen_avx2_dot_bf16,                             \
        [QWEN_TYPE_Q8_0] = qwen_avx2_dot_q8_0,                             \
        [QWEN_TYPE_Q4_K] = q4k,                                            \
        [QWEN_TYPE_Q6_K] = q6k,                                            \
    },                                                                     \
    .vec_dot4 = {                                                          \
        [QWEN_TYPE_F16] = qwen_avx2_dot4_f16,                              \
        [QWEN_TYPE_BF16] = qwen_avx2_dot4_bf16,                            \
        [QWEN_TYPE_Q8_0] = qwen_avx2_dot4_q8_0,                            \
        [QWEN_TYPE_Q4_K] = q4k4,                                           \
        [QWEN_TYPE_Q6_K] = q6k4,                                           \
    },                                                                     \
    .quantize_act = qwen_avx2_quantize_act,                                \
    .dot_f32_f16 = qwen_avx2_dot_f32_f16,                                  \
    .axpy_f16 = qwen_avx2_axpy_f16,                                        \
    .f32_to_f16 = qwen_avx2_f32_to_f16,                                    \
    .attention = qwen_avx2_attention

#endif
