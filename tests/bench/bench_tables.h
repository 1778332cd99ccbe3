/*
 * bench_tables.h - what the bench programs walk: every kernel table by name
 * (those this CPU does not run are skipped by qwen_kernels_by_name) and the
 * weight types the tables read packed.
 */
#ifndef QWEN_BENCH_TABLES_H
#define QWEN_BENCH_TABLES_H

#include "quant.h"

#define BENCH_COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const char *const bench_tables[] = {
    "scalar", "avx2", "avx2_vnni", "avx512", "avx512_vnni",
    "neon", "neon_dotprod", "neon_i8mm", "neon_bf16"
};

static const struct {
    int         type;
    const char *name;
} bench_packed_types[] = { { QWEN_TYPE_Q4_K, "q4_K" }, { QWEN_TYPE_Q6_K, "q6_K" },
                           { QWEN_TYPE_Q8_0, "q8_0" }, { QWEN_TYPE_BF16, "bf16" } };

#endif
