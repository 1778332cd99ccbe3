/*
 * dotprod.c - arm64 kernels for ARMv8.2-A + dotprod (Neoverse N1
 * and later: Graviton2/3/4): the quantized dots of arm.h built with
 * SDOT, four int8 products per lane per instruction, and the q8_0 KV
 * attention with SDOT. Float kernels and the f32/f16 attention are the
 * baseline NEON ones. -march=armv8.2-a+dotprod.
 */
#include "kernels/arm/arm.h"
#include "kernels/arm/packed.h"

QWEN_ARM_QUANT_KERNELS(dotprod, 0)
QWEN_ARM_Q8_0_2X4(dotprod)

/* q8_0 KV attention with SDOT by lane for q . K (one instruction per 4
 * positions and 4 dimensions); also the i8mm and bf16 tables' */
void
qwen_dotprod_attention_q8_0(int hd, int n_q, const float *q, const qwen_kv_view *kv, int n_pos,
                            float scale, float *scratch, float *out)
{
    arm_attention_q8_0(hd, n_q, q, kv, n_pos, scale, scratch, out);
}

QWEN_ARM_PACKED_KERNELS(dotprod)
QWEN_ARM_PACKED_GEMM(dotprod)

static const qwen_kernels kernels_neon_dotprod = {
    .name = "neon_dotprod",
    QWEN_NEON_FLOAT_ENTRIES,
    QWEN_ARM_QUANT_ENTRIES(dotprod),
    QWEN_ARM_PACKED_ENTRIES(dotprod),
    QWEN_ARM_PACKED_GEMM_ENTRIES(dotprod),
    .vec_dot2x4[QWEN_TYPE_Q8_0] = dotprod_dot2x4_q8_0,
    .kv_store[QWEN_KV_Q8_0] = qwen_kv_store_q8_0_ref,
    .kv_attention[QWEN_KV_Q8_0] = qwen_dotprod_attention_q8_0,
};

const qwen_kernels *
qwen_kernels_neon_dotprod(void)
{
    return &kernels_neon_dotprod;
}
