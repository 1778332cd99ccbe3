/*
 * kernels_dispatch.c - picks the kernel table for this CPU at run time:
 * cpuid on x86 (AVX-512 BF16 for prefill, AVX2+FMA+F16C), getauxval on
 * arm64 (NEON dotprod / i8mm / bf16). Built without ISA flags so it runs
 * everywhere; the ISA files it points to are only called when supported.
 */
#include "kernels.h"
#include "qwen.h"

#include <string.h>

#if defined(__x86_64__)
const qwen_kernels *qwen_kernels_avx2(void);
const qwen_kernels *qwen_kernels_avx512(void);
#elif defined(__aarch64__)
const qwen_kernels *qwen_kernels_neon(void);
const qwen_kernels *qwen_kernels_neon_dotprod(void);
#endif

#if defined(__x86_64__)
static int
x86_has_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
           && __builtin_cpu_supports("f16c");
}


/* AVX-512 with BF16 dot products: the prefill GEMM (the dots stay AVX2) */
static int
x86_has_avx512_bf16(void)
{
    __builtin_cpu_init();
    return x86_has_avx2() && __builtin_cpu_supports("avx512f")
           && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")
           && __builtin_cpu_supports("avx512bf16");
}
#endif

size_t
qwen_gemm_scratch_bytes(int64_t K)
{
    /* panel + staging rows (BF16) + one F32 row */
    return (size_t) QWEN_GEMM_PANEL_ROWS * K * 2 * 2 + (size_t) K * 4 + 64;
}

const qwen_kernels *
qwen_kernels_by_name(const char *name)
{
    if (strcmp(name, "scalar") == 0) {
        return qwen_kernels_ref();
    }
#if defined(__x86_64__)
    if (strcmp(name, "avx2") == 0 && x86_has_avx2()) {
        return qwen_kernels_avx2();
    }
    if (strcmp(name, "avx512") == 0 && x86_has_avx512_bf16()) {
        return qwen_kernels_avx512();
    }
#endif
    return NULL;
}

const qwen_kernels *
qwen_kernels_best(void)
{
#if defined(__x86_64__)
    if (x86_has_avx512_bf16()) {
        return qwen_kernels_avx512();
    }
    if (x86_has_avx2()) {
        return qwen_kernels_avx2();
    }
#endif
    return qwen_kernels_ref();
}

int
qwen_kernels_available(const char *name)
{
    return qwen_kernels_by_name(name) != NULL;
}

const char *
qwen_kernels_default(void)
{
    return qwen_kernels_best()->name;
}
