/*
 * kernels_dispatch.c - picks the kernel table for this CPU at run time:
 * cpuid on x86 (AVX2+FMA+F16C), getauxval on
 * arm64 (NEON dotprod / i8mm / bf16). Built without ISA flags so it runs
 * everywhere; the ISA files it points to are only called when supported.
 */
#include "kernels.h"

#include <string.h>

#if defined(__x86_64__)
const qwen_kernels *qwen_kernels_avx2(void);
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

#endif

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
#endif
    return NULL;
}

const qwen_kernels *
qwen_kernels_best(void)
{
#if defined(__x86_64__)
    if (x86_has_avx2()) {
        return qwen_kernels_avx2();
    }
#endif
    return qwen_kernels_ref();
}
