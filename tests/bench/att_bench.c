/*
 * att_bench.c - make bench's decode-attention figure: one decode step's
 * attention for Qwen3-0.6B's shape (28 layers x 8 KV heads, 2 query heads
 * each, 128 dimensions) at n_pos positions, one thread, per kernel table
 * this CPU runs and per KV format the table has, in microseconds a call
 * (a (layer, KV head) pair):
 *   - from memory: the cache laid out as kv_cache.c lays it (a K pool and a
 *     V pool of blocks of QWEN_KV_BLOCK positions, each block holding every
 *     (layer, head) region, huge pages asked for), the sequence's blocks in
 *     a scattered order as a long-running server's free list hands them
 *     out; 224 calls in turn, so each reads what the last did not leave in
 *     cache (the pools are 46 MB at 400 positions in f16);
 *   - in cache: the same call 224 times on one (layer, head).
 * and a prompt's attention (the prefill figure): QWEN_KV_ATT_TOKENS
 * consecutive tokens ending at position n_pos - 1, as a prompt's calls
 * come (attention_tokens where the format has it, else attention per
 * token), in cache, in microseconds a token and in multiply-adds a second
 * (q.K and p.V, as many as the positions each token sees).
 * One JSON line per (table, format): the best of 20 steps.
 *   att_bench [n_pos [table [format]]]
 * (a table or format named: only that one; the scalar tables take minutes)
 */
#include "bench_clock.h"
#include "bench_tables.h"
#include "kernels/kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

enum { LAYERS = 28, KV_HEADS = 8, N_Q = 2, HD = 128, STEPS = 20 };

static void *
pool_alloc(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    if (p == MAP_FAILED) {
        return NULL;
    }
    (void) madvise(p, bytes, MADV_HUGEPAGE);
    return p;
}

/* microseconds a call, best of STEPS steps of 224 calls */
static double
time_step(const qwen_kv_format *f, const char *kp, const char *vp, const int32_t *blocks,
          size_t region, size_t block_bytes, int n_pos, int one_region, const float *q,
          float *scratch, float *out)
{
    double best = 1e30, t0, d;
    int    s, r;

    for (s = 0; s < STEPS; s++) {
        t0 = now();
        for (r = 0; r < LAYERS * KV_HEADS; r++) {
            size_t       off = (size_t) (one_region ? 0 : r) * region;
            qwen_kv_view v = { kp + off, vp + off, blocks, block_bytes };

            f->attention(HD, N_Q, q, &v, n_pos, 0.0884f, scratch, out);
        }
        d = now() - t0;
        best = d < best ? d : best;
    }
    return best / (LAYERS * KV_HEADS) * 1e6;
}

/* microseconds a token of a prompt's call of m tokens ending at n_pos - 1,
 * in cache, best of STEPS steps of 224 calls */
static double
time_prompt(const qwen_kv_format *f, const char *kp, const char *vp, const int32_t *blocks,
            size_t block_bytes, int n_pos, int m, const float *q, float *scratch, float *out)
{
    qwen_kv_view v = { kp, vp, blocks, block_bytes };
    double       best = 1e30, t0, d;
    int          s, r, first = n_pos - m;

    for (s = 0; s < STEPS; s++) {
        t0 = now();
        for (r = 0; r < LAYERS * KV_HEADS; r++) {
            if (f->attention_tokens != NULL) {
                f->attention_tokens(HD, N_Q, m, q, N_Q * HD, &v, first + 1, 0.0884f, scratch,
                                    out, N_Q * HD);
            } else {
                qwen_attention_each(f->attention, HD, N_Q, m, q, N_Q * HD, &v, first + 1,
                                    0.0884f, scratch, out, N_Q * HD);
            }
        }
        d = now() - t0;
        best = d < best ? d : best;
    }
    return best / (LAYERS * KV_HEADS) / m * 1e6;
}

int
main(int argc, char **argv)
{
    int                 n_pos = argc > 1 ? atoi(argv[1]) : 400;
    const char         *only_table = argc > 2 ? argv[2] : NULL;
    const char         *only_format = argc > 3 ? argv[3] : NULL;
    int                 nb = (n_pos + QWEN_KV_BLOCK - 1) / QWEN_KV_BLOCK, i, b, id;
    int                 m = QWEN_KV_ATT_TOKENS;
    size_t              ti;
    int32_t            *blocks = malloc((size_t) nb * sizeof(int32_t));
    float              *q = malloc((size_t) m * N_Q * HD * sizeof(float));
    float              *out = malloc((size_t) m * N_Q * HD * sizeof(float));
    float              *scratch = malloc((size_t) m * N_Q * (qwen_kv_rows(n_pos) + 64)
                                         * sizeof(float));
    float               k[HD], v[HD];

    if (n_pos < m || blocks == NULL || q == NULL || out == NULL || scratch == NULL) {
        fprintf(stderr, "att_bench: n_pos must be at least %d, a prompt call's tokens (and "
                "memory available)\n", m);
        return 1;
    }
    /* block j of the sequence at a scattered place: 7j mod nb when they
     * are coprime, else in order */
    for (b = 0; b < nb; b++) {
        blocks[b] = nb % 7 != 0 ? (7 * b) % nb : b;
    }
    srand(1);
    for (i = 0; i < m * N_Q * HD; i++) {
        q[i] = (float) rand() / RAND_MAX - 0.5f;
    }
    for (ti = 0; ti < BENCH_COUNT(bench_tables); ti++) {
        const qwen_kernels *kt = qwen_kernels_by_name(bench_tables[ti]);

        if (kt == NULL || (only_table != NULL && strcmp(only_table, bench_tables[ti]) != 0)) {
            continue;
        }
        for (id = 0; id < QWEN_KV_FORMAT_COUNT; id++) {
            qwen_kv_format f;
            size_t         region, block_bytes;
            char          *kp, *vp;
            int            r, t;
            double         mem, hot, prompt, macs;

            if (qwen_kv_format_of(kt, id, HD, &f) != 0
                || (only_format != NULL && strcmp(only_format, f.name) != 0))
            {
                continue;
            }
            region = (size_t) QWEN_KV_BLOCK * f.pos_bytes;
            block_bytes = (size_t) LAYERS * KV_HEADS * region;
            kp = pool_alloc((size_t) nb * block_bytes);
            vp = pool_alloc((size_t) nb * block_bytes);
            if (kp == NULL || vp == NULL) {
                fprintf(stderr, "att_bench: no memory for the pools\n");
                return 1;
            }
            /* every position of every region written by the format's store */
            for (b = 0; b < nb; b++) {
                for (r = 0; r < LAYERS * KV_HEADS; r++) {
                    size_t off = (size_t) b * block_bytes + (size_t) r * region;

                    for (t = 0; t < QWEN_KV_BLOCK; t++) {
                        for (i = 0; i < HD; i++) {
                            k[i] = (float) rand() / RAND_MAX - 0.5f;
                            v[i] = (float) rand() / RAND_MAX - 0.5f;
                        }
                        f.store(HD, k, v, kp + off, vp + off, t);
                    }
                }
            }
            mem = time_step(&f, kp, vp, blocks, region, block_bytes, n_pos, 0, q, scratch, out);
            hot = time_step(&f, kp, vp, blocks, region, block_bytes, n_pos, 1, q, scratch, out);
            prompt = time_prompt(&f, kp, vp, blocks, block_bytes, n_pos, m, q, scratch, out);
            /* a token's multiply-adds: q.K and p.V over the positions it
             * sees, for its N_Q heads (the m tokens' mean) */
            macs = 2.0 * N_Q * HD * (n_pos - (m - 1) / 2.0);
            printf("{\"table\":\"%s\",\"kv\":\"%s\",\"n_pos\":%d,\"memory_us\":%.2f,"
                   "\"cache_us\":%.2f,\"memory_gb_s\":%.1f,\"prompt_us\":%.2f,"
                   "\"prompt_gmac_s\":%.1f}\n",
                   bench_tables[ti], f.name, n_pos, mem, hot,
                   2.0 * n_pos * f.pos_bytes / (mem * 1e-6) / 1e9, prompt,
                   macs / (prompt * 1e-6) / 1e9);
            fflush(stdout);
            munmap(kp, (size_t) nb * block_bytes);
            munmap(vp, (size_t) nb * block_bytes);
        }
    }
    free(blocks);
    free(q);
    free(out);
    free(scratch);
    return 0;
}
