/*
 * dot_bench.c - make bench's packed-dot streaming figure: one token (decode)
 * against packed weight groups of 1024 columns (Qwen3-0.6B's hidden size),
 * one thread, per kernel table this CPU runs and per weight type the table
 * reads packed (several groups a call where the table has a multi-group
 * dot, as decode calls it), in GB/s of weights:
 *   - from memory: 256 MiB of groups (far past any cache), each read once
 *     in turn, as a decode step reads a weight;
 *   - in cache: the first 256 KiB of them, again and again (L2).
 * Decode is bound by the first; when it is far below the machine's read
 * bandwidth (`qwen membw -t 1`) and the second is not, the kernel's stream
 * waits on memory (a Q6_K dot whose prefetches went out in one burst a
 * block read 10 GB/s from memory and 38 from L2). One JSON line per
 * (table, type): the best of a few passes.
 *   dot_bench
 */
#include "bench_clock.h"
#include "bench_tables.h"
#include "kernels/kernels.h"
#include "repack.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

enum { COLS = 1024 };

/* the best seconds of passes over groups [0, ng) of w, gb bytes apart */
static double
time_groups(const qwen_kernels *k, int type, const char *w, size_t gb, size_t ng,
            const void *act, int passes)
{
    float  out[QWEN_PACK_MULTI_MAX * QWEN_PACK_ROWS];
    double best = 1e30, t0, t;
    size_t g;
    int    p;
    volatile float sink = 0.0f;

    for (p = 0; p < passes; p++) {
        t0 = now();
        g = 0;
        if (k->packed_dot_multi[type] != NULL) {
            /* as decode reads it: several groups a call */
            size_t gs = (size_t) k->packed_dot_multi_groups[type];

            for (; g + gs <= ng; g += gs) {
                k->packed_dot_multi[type](COLS, w + g * gb, gb, act, out);
                sink += out[0];
            }
        }
        for (; g < ng; g++) {
            k->packed_dot[type](COLS, w + g * gb, act, 0, 1, out);
            sink += out[0];
        }
        t = now() - t0;
        best = t < best ? t : best;
    }
    (void) sink;
    return best;
}

int
main(void)
{
    const size_t mem_bytes = (size_t) 256 << 20, cache_bytes = (size_t) 256 << 10;
    float        x[COLS], *rows = malloc((size_t) QWEN_PACK_ROWS * COLS * sizeof(float));
    size_t       ti, yi;
    int          i;

    if (rows == NULL) {
        fprintf(stderr, "dot_bench: out of memory\n");
        return 1;
    }
    srand(1);
    for (i = 0; i < QWEN_PACK_ROWS * COLS; i++) {
        rows[i] = ((float) rand() / RAND_MAX - 0.5f) * 0.1f;
    }
    for (i = 0; i < COLS; i++) {
        x[i] = (float) rand() / RAND_MAX - 0.5f;
    }
    for (ti = 0; ti < BENCH_COUNT(bench_tables); ti++) {
        const qwen_kernels *k = qwen_kernels_by_name(bench_tables[ti]);

        for (yi = 0; k != NULL && yi < BENCH_COUNT(bench_packed_types); yi++) {
            int     type = bench_packed_types[yi].type, act_type = qwen_act_type(type);
            size_t  rb = qwen_row_bytes(type, COLS), gb = qwen_packed_group_bytes(type, COLS);
            size_t  ng = gb > 0 ? mem_bytes / gb : 0, g;
            char   *q, *w, *act;
            double  mem, hot;

            if (k->packed_dot[type] == NULL || gb == 0) {
                continue;
            }
            /* one group of real values, copied over the whole buffer (the
             * speed does not depend on the values) */
            q = malloc((size_t) QWEN_PACK_ROWS * rb);
            act = malloc(qwen_row_bytes(act_type, COLS));
            w = mmap(NULL, ng * gb, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (q == NULL || act == NULL || w == MAP_FAILED) {
                fprintf(stderr, "dot_bench: out of memory\n");
                return 1;
            }
            madvise(w, ng * gb, MADV_HUGEPAGE);   /* as the engine's packed copy */
            for (i = 0; i < QWEN_PACK_ROWS; i++) {
                qwen_quantize_row(type, rows + (size_t) i * COLS, q + (size_t) i * rb, COLS);
            }
            qwen_pack_group(type, q, rb, COLS, w);
            for (g = 1; g < ng; g++) {
                memcpy(w + g * gb, w, gb);
            }
            if (act_type == QWEN_TYPE_F32) {
                memcpy(act, x, sizeof(x));
            } else {
                k->quantize_act(act_type, x, act, COLS);
            }
            mem = time_groups(k, type, w, gb, ng, act, 3);
            hot = time_groups(k, type, w, gb, cache_bytes / gb, act, 200);
            printf("{\"table\":\"%s\",\"type\":\"%s\",\"memory_gb_s\":%.2f,\"cache_gb_s\":%.2f,"
                   "\"memory_gvalues_s\":%.2f}\n",
                   bench_tables[ti], bench_packed_types[yi].name, (double) (ng * gb) / mem / 1e9,
                   (double) (cache_bytes / gb * gb) / hot / 1e9,
                   (double) ng * QWEN_PACK_ROWS * COLS / mem / 1e9);
            fflush(stdout);
            munmap(w, ng * gb);
            free(q);
            free(act);
        }
    }
    free(rows);
    return 0;
}
