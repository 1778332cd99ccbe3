/*
 * gemm_bench.c - make bench's prompt-matmul figure: each kernel table's
 * packed GEMM (packed_gemm, the kernel prompt tokens and batches of
 * sequences take) on one core, per weight type it has one for, in GMAC/s:
 * 3072 x 1024 weights (Qwen3-0.6B's gate / up projection) against 200
 * tokens, in cache as a prefill step finds them. Next to peak_bench's
 * figure for the instruction the GEMM rests on, it says how much of a
 * prefill's time is the kernel and how much the instruction. Each result
 * is also checked against the table's packed dot (the same bits by design):
 * "exact" false would be a bug. Tables with a BF16 GEMM (gemm: prompt
 * tokens of the types without a packed GEMM, converted to BF16 once per
 * matmul) get a line "kernel":"gemm" per such type, over the same packed
 * weights; its check is batch invariance: each token's results are those
 * of the token alone. One JSON line per (table, type, kernel); the best of
 * a few passes.
 *   gemm_bench
 */
#include "bench_clock.h"
#include "bench_tables.h"
#include "kernels/kernels.h"
#include "repack.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { COLS = 1024, ROWS = 3072, TOKENS = 200, PASSES = 5 };

/* ROWS x COLS of type, packed (groups gb bytes apart), random values */
static char *
packed_weights(int type, float *rows)
{
    size_t rb = qwen_row_bytes(type, COLS), gb = qwen_packed_group_bytes(type, COLS);
    char  *q = malloc(QWEN_PACK_ROWS * rb), *w = malloc(gb * (ROWS / QWEN_PACK_ROWS));
    int    g, i;

    if (q == NULL || w == NULL) {
        fprintf(stderr, "gemm_bench: out of memory\n");
        exit(1);
    }
    srand(1);
    for (g = 0; g < ROWS / QWEN_PACK_ROWS; g++) {
        for (i = 0; i < QWEN_PACK_ROWS * COLS; i++) {
            rows[i] = ((float) rand() / RAND_MAX - 0.5f) * 0.1f;
        }
        for (i = 0; i < QWEN_PACK_ROWS; i++) {
            qwen_quantize_row(type, rows + (size_t) i * COLS, q + (size_t) i * rb, COLS);
        }
        qwen_pack_group(type, q, rb, COLS, w + (size_t) g * gb);
    }
    free(q);
    return w;
}

/* The table's BF16 GEMM (k->gemm) over packed weights of type, as forward.c
 * calls it for prompt tokens: all rows, activations in BF16 */
static void
bench_bf16_gemm(const char *table, const qwen_kernels *k, int type, const char *name,
                float *rows, float *out)
{
    size_t     rb = qwen_row_bytes(type, COLS);
    char      *w = packed_weights(type, rows);
    char      *xb = malloc(qwen_gemm_act_bytes(k) * COLS * TOKENS);
    void      *scratch = aligned_alloc(64, qwen_gemm_scratch_bytes(k, COLS));
    float     *one = malloc(sizeof(float) * ROWS), x[COLS];
    int32_t    idx[TOKENS], zero = 0;
    double     best = 1e30, t0, s;
    int        i, t, p, same = 1;

    if (xb == NULL || scratch == NULL || one == NULL) {
        fprintf(stderr, "gemm_bench: out of memory\n");
        exit(1);
    }
    for (t = 0; t < TOKENS; t++) {
        idx[t] = t;
        for (i = 0; i < COLS; i++) {
            x[i] = (float) rand() / RAND_MAX - 0.5f;
        }
        qwen_gemm_act(k, x, xb + (size_t) t * COLS * qwen_gemm_act_bytes(k), COLS);
    }
    for (p = 0; p < PASSES; p++) {
        t0 = now();
        k->gemm(type, w, 1, rb, COLS, 0, ROWS, xb, TOKENS, idx, out, ROWS, scratch);
        s = now() - t0;
        best = s < best ? s : best;
    }
    for (t = 0; t < TOKENS; t += 37) {
        k->gemm(type, w, 1, rb, COLS, 0, ROWS, xb + (size_t) t * COLS * qwen_gemm_act_bytes(k), 1, &zero, one, ROWS,
                scratch);
        same &= memcmp(one, out + (size_t) t * ROWS, sizeof(float) * ROWS) == 0;
    }
    printf("{\"table\":\"%s\",\"type\":\"%s\",\"kernel\":\"gemm\",\"rows\":%d,"
           "\"cols\":%d,\"tokens\":%d,\"gmac_s\":%.2f,\"exact\":%s}\n",
           table, name, ROWS, COLS, TOKENS, (double) ROWS * COLS * TOKENS / best / 1e9,
           same ? "true" : "false");
    fflush(stdout);
    free(w);
    free(xb);
    free(scratch);
    free(one);
}

int
main(void)
{
    float  *rows = malloc(sizeof(float) * QWEN_PACK_ROWS * COLS), x[COLS];
    float  *out = malloc(sizeof(float) * ROWS * TOKENS), ref[QWEN_PACK_ROWS];
    int32_t idx[TOKENS];
    size_t  ti, yi;
    int     i, t, g;

    if (rows == NULL || out == NULL) {
        fprintf(stderr, "gemm_bench: out of memory\n");
        return 1;
    }
    for (t = 0; t < TOKENS; t++) {
        idx[t] = t;
    }
    for (ti = 0; ti < BENCH_COUNT(bench_tables); ti++) {
        const qwen_kernels *k = qwen_kernels_by_name(bench_tables[ti]);

        for (yi = 0; k != NULL && yi < BENCH_COUNT(bench_packed_types); yi++) {
            int         type = bench_packed_types[yi].type, act_type = qwen_act_type(type);
            int         ng = ROWS / QWEN_PACK_ROWS, step = k->packed_gemm_groups > 1
                                                             ? k->packed_gemm_groups : 1;
            size_t      gb = qwen_packed_group_bytes(type, COLS);
            size_t      ab = qwen_row_bytes(act_type, COLS), gstride = ab;
            char       *w, *act, *gact = NULL;
            const void *a;
            double      best = 1e30, t0, s;
            int         p, exact = 1;

            if (k->packed_gemm[type] == NULL || gb == 0) {
                continue;
            }
            w = packed_weights(type, rows);
            act = malloc(ab * TOKENS);
            if (act == NULL) {
                fprintf(stderr, "gemm_bench: out of memory\n");
                return 1;
            }
            for (t = 0; t < TOKENS; t++) {
                for (i = 0; i < COLS; i++) {
                    x[i] = (float) rand() / RAND_MAX - 0.5f;
                }
                if (act_type == QWEN_TYPE_F32) {
                    memcpy(act + (size_t) t * ab, x, ab);
                } else {
                    k->quantize_act(act_type, x, act + (size_t) t * ab, COLS);
                }
            }
            a = act;
            if (k->packed_gemm_act[act_type] != NULL) {
                /* the table's own activation layout, made once per matmul */
                gstride = k->packed_gemm_act_bytes(act_type, COLS, k->packed_gemm_act_tokens);
                gact = malloc(k->packed_gemm_act_bytes(act_type, COLS, TOKENS));
                if (gact == NULL) {
                    fprintf(stderr, "gemm_bench: out of memory\n");
                    return 1;
                }
                k->packed_gemm_act[act_type](COLS, act, ab, TOKENS, gact);
                a = gact;
            }
            for (p = 0; p < PASSES; p++) {
                t0 = now();
                for (g = 0; g + step <= ng; g += step) {
                    k->packed_gemm[type](COLS, w + (size_t) g * gb, a, gstride, TOKENS,
                                         out + (size_t) g * QWEN_PACK_ROWS, ROWS, idx);
                }
                s = now() - t0;
                best = s < best ? s : best;
            }
            for (t = 0; t < TOKENS; t += 37) {
                k->packed_dot[type](COLS, w, act + (size_t) t * ab, ab, 1, ref);
                exact &= memcmp(ref, out + (size_t) t * ROWS, sizeof(ref)) == 0;
            }
            printf("{\"table\":\"%s\",\"type\":\"%s\",\"rows\":%d,\"cols\":%d,\"tokens\":%d,"
                   "\"gmac_s\":%.2f,\"exact\":%s}\n",
                   bench_tables[ti], bench_packed_types[yi].name, ROWS, COLS, TOKENS,
                   (double) ROWS * COLS * TOKENS / best / 1e9, exact ? "true" : "false");
            fflush(stdout);
            free(w);
            free(act);
            free(gact);
        }
        for (yi = 0; k != NULL && k->gemm != NULL && yi < BENCH_COUNT(bench_packed_types); yi++) {
            int type = bench_packed_types[yi].type;

            /* the types forward.c sends through gemm over a packed copy:
             * read packed by the table, with no packed GEMM */
            if ((type == QWEN_TYPE_BF16 || type == QWEN_TYPE_Q8_0) && k->packed_gemm[type] == NULL
                && k->packed_dot[type] != NULL && qwen_packed_group_bytes(type, COLS) > 0)
            {
                bench_bf16_gemm(bench_tables[ti], k, type, bench_packed_types[yi].name, rows, out);
            }
        }
    }
    free(rows);
    free(out);
    return 0;
}
