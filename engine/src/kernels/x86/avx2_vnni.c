/*
 * avx2_vnni.c - the avx2 table for CPUs with AVX-VNNI and no AVX-512
 * (Intel Alder Lake and later client cores, Sierra Forest; also Zen 5):
 * avx2.c compiled with -mavxvnni, so the Q8_0 products take one vpdpbusd
 * where AVX2 needs maddubs + madd + add, and the K-quants' scale madd + add
 * one vpdpwssd. The same integer sums, so the same bits as avx2.
 */
#define QWEN_AVX2_VNNI_TABLE 1
#include "avx2.c"
