/*
 * quant.h - tensor element types and quantized block layouts.
 *
 * Type ids and block layouts are GGML's, so GGUF files map straight onto
 * them: Q8_0 (32 int8 + f16 scale), Q4_K and Q6_K (256-value super-blocks),
 * and Q8_K, the activation format the K-quant dot products consume.
 * The row functions here are the scalar reference; SIMD kernels elsewhere
 * are tested against them.
 */
#ifndef QWEN_QUANT_H
#define QWEN_QUANT_H

#include <stddef.h>
#include <stdint.h>

enum qwen_type {
    QWEN_TYPE_F32  = 0,
    QWEN_TYPE_F16  = 1,
    QWEN_TYPE_Q8_0 = 8,
    QWEN_TYPE_Q4_K = 12,
    QWEN_TYPE_Q6_K = 14,
    QWEN_TYPE_Q8_K = 15,
    QWEN_TYPE_BF16 = 30,
    QWEN_TYPE_COUNT = 40
};

#define QK8_0 32
#define QK_K  256
#define K_SCALE_SIZE 12

typedef uint16_t qwen_f16;
typedef uint16_t qwen_bf16;

typedef struct {
    qwen_f16 d;            /* scale */
    int8_t   qs[QK8_0];    /* quants */
} block_q8_0;

typedef struct {
    qwen_f16 d;                    /* super-block scale for quantized scales */
    qwen_f16 dmin;                 /* super-block scale for quantized mins */
    uint8_t  scales[K_SCALE_SIZE]; /* 8 scales and 8 mins, 6 bits each */
    uint8_t  qs[QK_K / 2];         /* 4-bit quants */
} block_q4_K;

typedef struct {
    uint8_t  ql[QK_K / 2];      /* quants, lower 4 bits */
    uint8_t  qh[QK_K / 4];      /* quants, upper 2 bits */
    int8_t   scales[QK_K / 16]; /* scales, 8 bits */
    qwen_f16 d;                 /* super-block scale */
} block_q6_K;

typedef struct {
    float   d;                /* delta */
    int8_t  qs[QK_K];         /* quants */
    int16_t bsums[QK_K / 16]; /* sum of quants in groups of 16 */
} block_q8_K;

/* The 8 scales and 8 mins of a Q4_K block as 16 bytes [sc0..sc7, m0..m7]:
 * the 6-bit fields regrouped with 32-bit masks instead of byte loops (the
 * SIMD kernels of every ISA use it). */
static inline void
qwen_q4k_scales_mins(const uint8_t *q, uint8_t *out16)
{
    const uint32_t kmask1 = 0x3f3f3f3f, kmask2 = 0x0f0f0f0f, kmask3 = 0x03030303;
    uint32_t       u[4], aux;

    __builtin_memcpy(u, q, 12);
    u[3] = ((u[2] >> 4) & kmask2) | (((u[1] >> 6) & kmask3) << 4);
    aux = u[1] & kmask1;
    u[1] = (u[2] & kmask2) | (((u[0] >> 6) & kmask3) << 4);
    u[2] = aux;
    u[0] &= kmask1;
    __builtin_memcpy(out16, u, 16);
}

/* Elements per block and bytes per block of a type (0 for unknown types). */
int    qwen_type_block_size(int type);
size_t qwen_type_block_bytes(int type);
/* Bytes of a row of n elements (n a multiple of the block size). */
size_t qwen_row_bytes(int type, int64_t n);
int    qwen_type_supported(int type);
/* The type's name as GGUF spells it ("F32", "BF16", "Q4_K"...). */
const char *qwen_type_name(int type);

/* Scalar conversions (IEEE half, bfloat16 with round-to-nearest-even). */
float    qwen_f16_to_f32(qwen_f16 h);
qwen_f16 qwen_f32_to_f16(float f);
float    qwen_bf16_to_f32(qwen_bf16 h);
qwen_bf16 qwen_f32_to_bf16(float f);

/* Reference quantizers (n a multiple of the block size). */
void qwen_quantize_row_q8_0(const float *x, block_q8_0 *y, int64_t n);
void qwen_quantize_row_q4_K(const float *x, block_q4_K *y, int64_t n);
void qwen_quantize_row_q6_K(const float *x, block_q6_K *y, int64_t n);
void qwen_quantize_row_q8_K(const float *x, block_q8_K *y, int64_t n);

/* Any supported type back to f32. */
void qwen_dequantize_row(int type, const void *x, float *y, int64_t n);

/* Quantize f32 to any supported weight type (F32, F16, BF16, Q8_0, Q4_K, Q6_K). */
void qwen_quantize_row(int type, const float *x, void *y, int64_t n);

#endif /* QWEN_QUANT_H */
