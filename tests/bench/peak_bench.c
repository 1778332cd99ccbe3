/*
 * peak_bench.c - make bench's compute ceiling for prompt tokens: how many
 * multiply-adds a second one core does with the instruction each kernel
 * table's prompt matmul rests on, with nothing else in the loop (no loads,
 * independent chains), per table this CPU runs:
 *   - fma_f32: vfmadd231ps, 8 products (16 on a zmm). BF16 weights on a
 *     table without a BF16 dot are widened to F32 and go through it (in any
 *     engine), so 2 cores x this / the MACs of a prompt token bounds every
 *     BF16 prefill on that instruction set, llama.cpp's included;
 *   - bf16_dot: vdpbf16ps on a zmm, 32 products: the same for avx512
 *     (avx512_vnni, without it, rests on fma_f32 on a zmm);
 *   - q8_0_sign_step: vpsignb, vpmaddubsw, vpmaddwd, vpaddd, 32 products:
 *     the step of our avx2 Q8_0 dots (x86.h), three of whose four ops
 *     share the two ports that multiply on AMD Zen 4 and on Intel's p0 / p1;
 *   - q8_0_madd16_step: vpmaddwd + vpaddd, 16 products: the step of the
 *     avx2 Q8_0 GEMM for prompts (x86.h), on operands widened beforehand;
 *   - int8_dot: vpdpbusd on a ymm, 32 products: the Q8_0 kernels' step
 *     with VNNI (avx2_vnni, and avx512's and avx512_vnni's, which are
 *     those on ymm).
 * One JSON line per (table, instruction); the best of a few passes.
 *   peak_bench
 */
#include "bench_clock.h"
#include "kernels/kernels.h"

#include <stdio.h>

#if defined(__x86_64__)
#include <immintrin.h>

/* the value is unknown to the compiler from here on, and needed: nothing
 * is hoisted out of the loop, shared between chains or left uncomputed */
#define OPAQUE(v) __asm__ volatile("" : "+x"(v))

enum { ITERS = 20 * 1000 * 1000, CHAINS = 12 };

/*
 * name(): multiply-adds a second by CHAINS independent accumulators, each
 * taking ITERS steps acc = STEP(acc, a, b) of MACS products; OPAQUE keeps
 * a fresh each iteration and the sums alive at the end.
 */
#define PEAK_CHAINS(name, isa, vec, in, ZERO, A, B, STEP, MACS)                                  \
    __attribute__((target(isa))) static double name(void)                                      \
    {                                                                                          \
        vec    acc[CHAINS];                                                                    \
        in     a = A, b = B;                                                                   \
        double t0;                                                                             \
        int    i, c;                                                                           \
                                                                                               \
        for (c = 0; c < CHAINS; c++) {                                                         \
            acc[c] = ZERO;                                                                     \
        }                                                                                      \
        t0 = now();                                                                            \
        for (i = 0; i < ITERS; i++) {                                                          \
            OPAQUE(a);                                                                         \
            _Pragma("GCC unroll 12") for (c = 0; c < CHAINS; c++)                              \
            {                                                                                  \
                acc[c] = STEP(acc[c], a, b);                                                   \
            }                                                                                  \
        }                                                                                      \
        t0 = now() - t0;                                                                       \
        for (c = 0; c < CHAINS; c++) {                                                         \
            OPAQUE(acc[c]);                                                                    \
        }                                                                                      \
        return (double) ITERS * CHAINS * (MACS) / t0;                                          \
    }

#define FMA_STEP(acc, a, b)     _mm256_fmadd_ps(a, b, acc)
#define FMA512_STEP(acc, a, b)  _mm512_fmadd_ps(a, b, acc)
#define BF16_STEP(acc, a, b)    _mm512_dpbf16_ps(acc, a, b)
#define VNNI_STEP(acc, a, b)    _mm256_dpbusd_avx_epi32(acc, a, b)
#define VNNI512_STEP(acc, a, b) _mm256_dpbusd_epi32(acc, a, b)

PEAK_CHAINS(fma_ymm, "avx2,fma", __m256, __m256, _mm256_setzero_ps(), _mm256_set1_ps(1e-9f),
            _mm256_set1_ps(1e-9f), FMA_STEP, 8)
PEAK_CHAINS(fma_zmm, "avx512f", __m512, __m512, _mm512_setzero_ps(), _mm512_set1_ps(1e-9f),
            _mm512_set1_ps(1e-9f), FMA512_STEP, 16)
PEAK_CHAINS(bf16_dot_zmm, "avx512f,avx512bf16", __m512, __m512bh, _mm512_setzero_ps(),
            (__m512bh) _mm512_set1_epi16(0x3000), (__m512bh) _mm512_set1_epi16(0x3000),
            BF16_STEP, 32)
PEAK_CHAINS(int8_dot_ymm, "avx2,avxvnni", __m256i, __m256i, _mm256_setzero_si256(),
            _mm256_set1_epi8(3), _mm256_set1_epi8(-5), VNNI_STEP, 32)
/* the avx512 table's Q8_0 kernels are the AVX2 ones with vpdpbusd on ymm
 * registers (EVEX) */
PEAK_CHAINS(int8_dot_ymm_evex, "avx512f,avx512vl,avx512vnni", __m256i, __m256i,
            _mm256_setzero_si256(), _mm256_set1_epi8(3), _mm256_set1_epi8(-5), VNNI512_STEP, 32)

/* our avx2 Q8_0 step, 8 chains (its four ops a chain fill the registers) */
__attribute__((target("avx2"))) static double
q8_0_sign_step(void)
{
    __m256i acc[8], x = _mm256_set1_epi8(3), w = _mm256_set1_epi8(-5),
                    ones = _mm256_set1_epi16(1);
    double  t0;
    int     i, c;

    for (c = 0; c < 8; c++) {
        acc[c] = _mm256_setzero_si256();
    }
    t0 = now();
    for (i = 0; i < ITERS; i++) {
#pragma GCC unroll 8
        for (c = 0; c < 8; c++) {
            __m256i s;

            OPAQUE(x);
            s = _mm256_sign_epi8(x, w);
            acc[c] = _mm256_add_epi32(acc[c], _mm256_madd_epi16(_mm256_maddubs_epi16(w, s), ones));
        }
    }
    t0 = now() - t0;
    for (c = 0; c < 8; c++) {
        OPAQUE(acc[c]);
    }
    return (double) ITERS * 8 * 32 / t0;
}

/* the avx2 Q8_0 GEMM's step, 8 chains in ymm0-7, in asm: each its own
 * product, as the GEMM's are (written as intrinsics, one shared product is
 * computed once, and GCC moves the sums about through memory) */
#define MADD16_CHAIN(prod, acc)                                                                \
    "vpmaddwd %%ymm15, %%ymm14, %%ymm" #prod "\n\t"                                            \
    "vpaddd %%ymm" #prod ", %%ymm" #acc ", %%ymm" #acc "\n\t"

__attribute__((target("avx2"))) static double
q8_0_madd16_step(void)
{
    double t0;
    int    i;

    t0 = now();
    for (i = 0; i < ITERS; i++) {
        __asm__ volatile(MADD16_CHAIN(8, 0) MADD16_CHAIN(9, 1) MADD16_CHAIN(10, 2)
                         MADD16_CHAIN(11, 3) MADD16_CHAIN(12, 4) MADD16_CHAIN(13, 5)
                         MADD16_CHAIN(8, 6) MADD16_CHAIN(9, 7)
                         ::: "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
                           "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13");
    }
    return (double) ITERS * 8 * 16 / (now() - t0);
}

static const struct {
    const char *table, *op, *instr;
    int         macs;
    double      (*run)(void);
} ops[] = {
    { "avx2", "fma_f32", "vfmadd231ps ymm", 8, fma_ymm },
    { "avx2", "q8_0_sign_step", "vpsignb + vpmaddubsw + vpmaddwd + vpaddd ymm", 32,
      q8_0_sign_step },
    { "avx2", "q8_0_madd16_step", "vpmaddwd + vpaddd ymm", 16, q8_0_madd16_step },
    { "avx2_vnni", "fma_f32", "vfmadd231ps ymm", 8, fma_ymm },
    { "avx2_vnni", "int8_dot", "vpdpbusd ymm", 32, int8_dot_ymm },
    { "avx512", "fma_f32", "vfmadd231ps zmm", 16, fma_zmm },
    { "avx512", "bf16_dot", "vdpbf16ps zmm", 32, bf16_dot_zmm },
    { "avx512", "int8_dot", "vpdpbusd ymm (EVEX)", 32, int8_dot_ymm_evex },
    /* without AVX512_BF16 the BF16 GEMM takes two of these per vdpbf16ps */
    { "avx512_vnni", "fma_f32", "vfmadd231ps zmm", 16, fma_zmm },
    { "avx512_vnni", "int8_dot", "vpdpbusd ymm (EVEX)", 32, int8_dot_ymm_evex },
};

int
main(void)
{
    size_t i;
    int    p;

    for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        double best = 0.0, r;

        /* only what the table's own check says this CPU runs */
        if (qwen_kernels_by_name(ops[i].table) == NULL) {
            continue;
        }
        for (p = 0; p < 3; p++) {
            r = ops[i].run();
            best = r > best ? r : best;
        }
        printf("{\"table\":\"%s\",\"op\":\"%s\",\"instr\":\"%s\",\"macs_per_instr\":%d,"
               "\"gmac_s\":%.2f}\n",
               ops[i].table, ops[i].op, ops[i].instr, ops[i].macs, best / 1e9);
        fflush(stdout);
    }
    return 0;
}
#else
int
main(void)
{
    fprintf(stderr, "peak_bench: no ceiling measured on this architecture (x86-64 only)\n");
    return 0;
}
#endif
