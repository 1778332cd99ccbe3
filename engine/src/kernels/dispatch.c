/*
 * dispatch.c - picks the kernel table for this CPU at run time: cpuid
 * on x86 (AVX-512 with BF16, AVX-512 VNNI, AVX-VNNI, AVX2+FMA+F16C),
 * getauxval on arm64 (NEON dotprod / i8mm / bf16). Built without ISA
 * flags so it runs everywhere; the ISA files it points to are only called
 * when supported.
 */
#include "kernels/kernels.h"
#include "qwen.h"

#include <string.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif
#if defined(__aarch64__)
#include <sys/auxv.h>
#endif

#if defined(__x86_64__)
const qwen_kernels *qwen_kernels_avx2(void);
const qwen_kernels *qwen_kernels_avx2_vnni(void);
const qwen_kernels *qwen_kernels_avx512(void);
const qwen_kernels *qwen_kernels_avx512_vnni(void);
#elif defined(__aarch64__)
const qwen_kernels *qwen_kernels_neon(void);
const qwen_kernels *qwen_kernels_neon_dotprod(void);
const qwen_kernels *qwen_kernels_neon_bf16(void);
const qwen_kernels *qwen_kernels_neon_i8mm(void);
#endif

#if defined(__x86_64__)
static int
x86_has_avx2(void)
{
    unsigned a, b, c, d;

    /* F16C from cpuid leaf 1 (ECX bit 29): clang 14's
     * __builtin_cpu_supports does not know "f16c" (the fuzz build) */
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_F16C)) {
        return 0;
    }
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

/* AVX-VNNI: vpdpbusd / vpdpwssd on 256-bit registers, VEX-encoded (cpuid
 * leaf 7 subleaf 1, EAX bit 4; __builtin_cpu_supports of gcc 12 and
 * clang 14 do not all know it) */
static int
x86_has_avx_vnni(void)
{
    unsigned a, b, c, d;

#ifdef QWEN_X86_EMULATE_AVX512
    /* tests only (mk/x86emu.mk): avx2_vnni's VNNI forms run on SIMDe */
    return x86_has_avx2();
#endif
    return x86_has_avx2() && __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 4));
}

/* AVX-512 (F, BW, VL) with VNNI: the K-quant dots and GEMMs; Cascade Lake,
 * Ice Lake, and later */
static int
x86_has_avx512_vnni(void)
{
#ifdef QWEN_X86_EMULATE_AVX512
    /* tests only (mk/x86emu.mk): the avx512 tables run on SIMDe */
    return x86_has_avx2();
#endif
    __builtin_cpu_init();
    return x86_has_avx2() && __builtin_cpu_supports("avx512f")
           && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")
           && __builtin_cpu_supports("avx512vnni");
}

/* and BF16 (vdpbf16ps): the prefill GEMM; Cooper Lake, Sapphire Rapids,
 * Zen 4 and later */
static int
x86_has_avx512_bf16(void)
{
#ifdef QWEN_X86_EMULATE_AVX512
    return x86_has_avx2();
#endif
    return x86_has_avx512_vnni() && __builtin_cpu_supports("avx512bf16");
}
#endif

#if defined(__aarch64__)
/* Linux hwcap bits (arch/arm64/include/uapi/asm/hwcap.h), for old headers */
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD   (1UL << 1)
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20)
#endif
#ifndef HWCAP2_I8MM
#define HWCAP2_I8MM   (1UL << 13)
#endif
#ifndef HWCAP2_BF16
#define HWCAP2_BF16   (1UL << 14)
#endif

static int
arm_has_neon(void)
{
    return (getauxval(AT_HWCAP) & HWCAP_ASIMD) != 0;
}

/* SDOT: Neoverse N1 (Graviton2) and later; not Cortex-A72 (Graviton1) */
static int
arm_has_dotprod(void)
{
    return arm_has_neon() && (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
}

/* SMMLA (int8 2x8 by 8x2): Neoverse V1/V2 (Graviton3/4) */
static int
arm_has_i8mm(void)
{
    return arm_has_dotprod() && (getauxval(AT_HWCAP2) & HWCAP2_I8MM) != 0;
}

/* BFMMLA for the prefill GEMM: Neoverse V1/V2 (Graviton3/4) */
static int
arm_has_bf16(void)
{
    return arm_has_dotprod() && (getauxval(AT_HWCAP2) & HWCAP2_BF16) != 0;
}
#endif

size_t
qwen_gemm_scratch_bytes(const qwen_kernels *k, int64_t K)
{
    /* panel + staging rows (BF16) + one F32 row + one packed row back in
     * the file's bytes (at most BF16's), then (an FMA GEMM: gemm_act_f32)
     * the panel in F32 at the next multiple of 64; a multiple of 64 as
     * aligned_alloc wants */
    size_t n = (size_t) QWEN_GEMM_PANEL_ROWS * K * 2 * 2 + (size_t) K * 4 + (size_t) K * 2;

    if (k->gemm_act_f32 != NULL) {
        n += 64 + (size_t) QWEN_GEMM_PANEL_ROWS * K * 4;
    }

    return (n + 63) / 64 * 64;
}

size_t
qwen_gemm_act_bytes(const qwen_kernels *k)
{
    return k->gemm_act_f32 != NULL ? sizeof(float) : sizeof(qwen_bf16);
}

void
qwen_gemm_act(const qwen_kernels *k, const float *x, void *y, int64_t n)
{
    if (k->gemm_act_f32 != NULL) {
        k->gemm_act_f32(x, y, n);
    } else {
        k->f32_to_bf16(x, y, n);
    }
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
    if (strcmp(name, "avx2_vnni") == 0 && x86_has_avx_vnni()) {
        return qwen_kernels_avx2_vnni();
    }
    if (strcmp(name, "avx512") == 0 && x86_has_avx512_bf16()) {
        return qwen_kernels_avx512();
    }
    if (strcmp(name, "avx512_vnni") == 0 && x86_has_avx512_vnni()) {
        return qwen_kernels_avx512_vnni();
    }
#elif defined(__aarch64__)
    if (strcmp(name, "neon") == 0 && arm_has_neon()) {
        return qwen_kernels_neon();
    }
    if (strcmp(name, "neon_dotprod") == 0 && arm_has_dotprod()) {
        return qwen_kernels_neon_dotprod();
    }
    if (strcmp(name, "neon_i8mm") == 0 && arm_has_i8mm()) {
        return qwen_kernels_neon_i8mm();
    }
    if (strcmp(name, "neon_bf16") == 0 && arm_has_bf16()) {
        return qwen_kernels_neon_bf16();
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
    if (x86_has_avx512_vnni()) {
        return qwen_kernels_avx512_vnni();
    }
    if (x86_has_avx_vnni()) {
        return qwen_kernels_avx2_vnni();
    }
    if (x86_has_avx2()) {
        return qwen_kernels_avx2();
    }
#elif defined(__aarch64__)
    /* i8mm first: SMMLA does twice the multiply-adds of an SDOT (and of a
     * BFMMLA) per instruction on the quantized weights as they are, where
     * the BFMMLA GEMM ("neon_bf16", by name) repacks them to BF16 on every
     * call; the choice awaits a measurement on Graviton3/4 hardware */
    if (arm_has_i8mm()) {
        return qwen_kernels_neon_i8mm();
    }
    /* No SVE table: Neoverse V1 (Graviton3) runs 256-bit SVE on two pipes
     * and 128-bit NEON on four, V2 (Graviton4) has 128-bit SVE, so SVE's
     * SDOT/SMMLA give no more products per cycle than the NEON ones here */
    if (arm_has_dotprod()) {
        return qwen_kernels_neon_dotprod();
    }
    if (arm_has_neon()) {
        return qwen_kernels_neon();
    }
#endif
    return qwen_kernels_ref();
}

int
qwen_kernels_available(const char *name)
{
    return qwen_kernels_by_name(name) != NULL;
}

int
qwen_kv_format_available(const char *kv_format)
{
    int id;

    if (kv_format == NULL || strcmp(kv_format, "auto") == 0) {
        return 1;
    }
    id = qwen_kv_format_id(kv_format);
    return id >= 0 && qwen_kernels_best()->kv_store[id] != NULL;
}

const char *
qwen_kernels_default(void)
{
    return qwen_kernels_best()->name;
}
