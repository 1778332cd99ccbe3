/*
 * avx512_vnni.c - the avx512 table for AVX-512 CPUs with VNNI and no BF16
 * (Intel Cascade Lake and Ice Lake servers: AWS c5, c6i, m6i; also hosts
 * whose hypervisor hides AVX512_BF16): avx512.c compiled without
 * -mavx512bf16. The prefill GEMM widens its BF16 pairs to F32 for two FMAs
 * where avx512 has one vdpbf16ps; every other kernel is avx512's.
 */
#define QWEN_AVX512_VNNI_TABLE 1
#include "avx512.c"
