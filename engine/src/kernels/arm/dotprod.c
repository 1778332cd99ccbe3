/*
 * dotprod.c - arm64 kernels for ARMv8.2-A + dotprod (Neoverse N1
 * and later: Graviton2/3/4): the quantized dots of arm.h built with
 * SDOT, four int8 products per lane per instruction. Float kernels and the
 * attention helpers are the baseline NEON ones. -march=armv8.2-a+dotprod.
 */
#include "kernels/arm/arm.h"

QWEN_ARM_QUANT_KERNELS(dotprod, 0)

static const qwen_kernels kernels_neon_dotprod = {
    .name = "neon_dotprod",
    QWEN_NEON_FLOAT_ENTRIES,
    QWEN_ARM_QUANT_ENTRIES(dotprod),
};

const qwen_kernels *
qwen_kernels_neon_dotprod(void)
{
    return &kernels_neon_dotprod;
}
