/*
 * avx512_emulated.h - for tests only: the AVX-512 intrinsics avx512.c uses,
 * from SIMDe (Debian's libsimde-dev) in portable C, so the avx512 table's
 * kernels run and are tested on CPUs without AVX-512 (mk/x86emu.mk builds
 * them with -DQWEN_X86_EMULATE_AVX512). SIMDe 0.7.4 lacks a few of the
 * intrinsics; they are written here lane by lane, as Intel defines them.
 * Never part of a shipped build.
 */
#ifndef QWEN_KERNELS_X86_AVX512_EMULATED_H
#define QWEN_KERNELS_X86_AVX512_EMULATED_H

#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#include <simde/x86/f16c.h>
#include <simde/x86/fma.h>
#include <stdint.h>
#include <string.h>

#include "quant.h"

#define QWEN_EMU static inline __attribute__((unused))

/* 16 lanes of IN_T from a vector of IN_BITS bits, converted one by one to
 * the 16 lanes of a 512-bit vector: the widening conversions */
#define QWEN_EMU_WIDEN(NAME, RET_T, IN_VEC_T, IN_T, OUT_T, LOAD_OUT, CONVERT) \
QWEN_EMU RET_T                                                                \
NAME(IN_VEC_T a)                                                              \
{                                                                             \
    IN_T  in[sizeof(IN_VEC_T) / sizeof(IN_T)];                                \
    OUT_T out[16];                                                            \
    int   k;                                                                  \
                                                                              \
    memcpy(in, &a, sizeof(in));                                               \
    for (k = 0; k < 16; k++) {                                                \
        out[k] = CONVERT(in[k]);                                              \
    }                                                                         \
    return LOAD_OUT(out);                                                     \
}

#define QWEN_EMU_AS_IS(x) (x)
QWEN_EMU_WIDEN(qwen_emu_cvtepi32_ps, simde__m512, simde__m512i, int32_t, float,
               simde_mm512_loadu_ps, (float) QWEN_EMU_AS_IS)
QWEN_EMU_WIDEN(qwen_emu_cvtepi8_epi32, simde__m512i, simde__m128i, int8_t, int32_t,
               simde_mm512_loadu_si512, QWEN_EMU_AS_IS)
QWEN_EMU_WIDEN(qwen_emu_cvtepu8_epi32, simde__m512i, simde__m128i, uint8_t, int32_t,
               simde_mm512_loadu_si512, QWEN_EMU_AS_IS)
QWEN_EMU_WIDEN(qwen_emu_cvtepu16_epi32, simde__m512i, simde__m256i, uint16_t, int32_t,
               simde_mm512_loadu_si512, QWEN_EMU_AS_IS)
QWEN_EMU_WIDEN(qwen_emu_cvtph_ps, simde__m512, simde__m256i, uint16_t, float,
               simde_mm512_loadu_ps, qwen_f16_to_f32)

/* The low 16 bits of each 32-bit lane (vpmovdw: truncation) */
QWEN_EMU simde__m256i
qwen_emu_cvtepi32_epi16(simde__m512i a)
{
    int32_t      in[16];
    uint16_t     out[16];
    simde__m256i v;
    int          k;

    memcpy(in, &a, sizeof(in));
    for (k = 0; k < 16; k++) {
        out[k] = (uint16_t) in[k];
    }
    memcpy(&v, out, sizeof(v));
    return v;
}

/* BF16 lanes 0-15 from b, 16-31 from a, rounded to nearest even */
QWEN_EMU simde__m512bh
qwen_emu_cvtne2ps_pbh(simde__m512 a, simde__m512 b)
{
    float         fa[16], fb[16];
    uint16_t      r[32];
    simde__m512bh v;
    int           k;

    simde_mm512_storeu_ps(fa, a);
    simde_mm512_storeu_ps(fb, b);
    for (k = 0; k < 16; k++) {
        r[k] = qwen_f32_to_bf16(fb[k]);
        r[16 + k] = qwen_f32_to_bf16(fa[k]);
    }
    memcpy(&v, r, sizeof(v));
    return v;
}

QWEN_EMU void
qwen_emu_mask_storeu_ps(void *p, simde__mmask16 m, simde__m512 a)
{
    float f[16];
    int   k;

    simde_mm512_storeu_ps(f, a);
    for (k = 0; k < 16; k++) {
        if (m >> k & 1) {
            ((float *) p)[k] = f[k];
        }
    }
}

/* masked lanes are neither read nor faulted on, as in hardware */
QWEN_EMU simde__m512
qwen_emu_maskz_loadu_ps(simde__mmask16 m, const void *p)
{
    float f[16];
    int   k;

    for (k = 0; k < 16; k++) {
        f[k] = m >> k & 1 ? ((const float *) p)[k] : 0.0f;
    }
    return simde_mm512_loadu_ps(f);
}

QWEN_EMU simde__m512i
qwen_emu_maskz_loadu_epi16(simde__mmask32 m, const void *p)
{
    uint16_t h[32];
    int      k;

    for (k = 0; k < 32; k++) {
        h[k] = m >> k & 1 ? ((const uint16_t *) p)[k] : 0;
    }
    return simde_mm512_loadu_si512(h);
}

/* the halving tree GCC's _mm512_reduce_add_ps uses */
QWEN_EMU float
qwen_emu_reduce_add_ps(simde__m512 a)
{
    float f[16];
    int   w, k;

    simde_mm512_storeu_ps(f, a);
    for (w = 8; w >= 1; w /= 2) {
        for (k = 0; k < w; k++) {
            f[k] += f[k + w];
        }
    }
    return f[0];
}

QWEN_EMU float
qwen_emu_reduce_max_ps(simde__m512 a)
{
    float f[16], m;
    int   k;

    simde_mm512_storeu_ps(f, a);
    m = f[0];
    for (k = 1; k < 16; k++) {
        m = f[k] > m ? f[k] : m;
    }
    return m;
}

QWEN_EMU simde__m512i
qwen_emu_zextsi256_si512(simde__m256i a)
{
    uint8_t b[64] = { 0 };

    simde_mm256_storeu_si256((simde__m256i *) b, a);
    return simde_mm512_loadu_si512(b);
}

#undef _mm512_cvtepi32_ps
#define _mm512_cvtepi32_ps qwen_emu_cvtepi32_ps
#undef _mm512_cvtepi32_epi16
#define _mm512_cvtepi32_epi16 qwen_emu_cvtepi32_epi16
#undef _mm512_cvtepi8_epi32
#define _mm512_cvtepi8_epi32 qwen_emu_cvtepi8_epi32
#undef _mm512_cvtepu8_epi32
#define _mm512_cvtepu8_epi32 qwen_emu_cvtepu8_epi32
#undef _mm512_cvtepu16_epi32
#define _mm512_cvtepu16_epi32 qwen_emu_cvtepu16_epi32
#undef _mm512_cvtph_ps
#define _mm512_cvtph_ps qwen_emu_cvtph_ps
#undef _mm512_cvtne2ps_pbh
#define _mm512_cvtne2ps_pbh qwen_emu_cvtne2ps_pbh
#undef _mm512_mask_storeu_ps
#define _mm512_mask_storeu_ps qwen_emu_mask_storeu_ps
#undef _mm512_maskz_loadu_ps
#define _mm512_maskz_loadu_ps qwen_emu_maskz_loadu_ps
#undef _mm512_maskz_loadu_epi16
#define _mm512_maskz_loadu_epi16 qwen_emu_maskz_loadu_epi16
#undef _mm512_reduce_add_ps
#define _mm512_reduce_add_ps qwen_emu_reduce_add_ps
#undef _mm512_reduce_max_ps
#define _mm512_reduce_max_ps qwen_emu_reduce_max_ps
#undef _mm512_zextsi256_si512
#define _mm512_zextsi256_si512 qwen_emu_zextsi256_si512

#endif
