/*
 * att_count.c - make bench-arm64-att: CALLS calls of one kernel table's
 * attention for Qwen3-0.6B's shape (2 query heads of a KV head, 128
 * dimensions) over an f16 cache of n_pos positions, for counting the
 * instructions a call executes under qemu (tests/bench/arm64_att.py runs it
 * with two call counts and takes the difference, which removes the setup):
 *   prompt: a prompt's call, QWEN_KV_ATT_TOKENS tokens ending at n_pos - 1
 *   decode: one token's call at n_pos positions
 * The arm64 attention's signal without a model: a decoded token at our
 * users' depth (~700 positions) spends as many instructions in attention as
 * in its matmuls. att_bench times the same calls on the host.
 *   att_count TABLE prompt|decode N_POS CALLS
 */
#include "kernels/kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { N_Q = 2, HD = 128 };

int
main(int argc, char **argv)
{
    const qwen_kernels *kt;
    qwen_kv_format      f;
    qwen_kv_view        view;
    int                 n_pos, calls, m = QWEN_KV_ATT_TOKENS, nb, b, t, i, c, prompt;
    int32_t            *blocks;
    float              *scratch, q[QWEN_KV_ATT_TOKENS * N_Q * HD], out[QWEN_KV_ATT_TOKENS * N_Q * HD];
    float               k[HD], v[HD], check = 0.0f;
    size_t              region;
    char               *kp, *vp;

    if (argc != 5 || (strcmp(argv[2], "prompt") != 0 && strcmp(argv[2], "decode") != 0)) {
        fprintf(stderr, "usage: att_count TABLE prompt|decode N_POS CALLS\n");
        return 2;
    }
    kt = qwen_kernels_by_name(argv[1]);
    prompt = strcmp(argv[2], "prompt") == 0;
    n_pos = atoi(argv[3]);
    calls = atoi(argv[4]);
    if (kt == NULL || qwen_kv_format_of(kt, QWEN_KV_F16, HD, &f) != 0) {
        fprintf(stderr, "att_count: no table %s with an f16 cache on this CPU\n", argv[1]);
        return 1;
    }
    if (n_pos < m || calls < 1) {
        fprintf(stderr, "att_count: N_POS must be at least %d and CALLS at least 1\n", m);
        return 2;
    }
    nb = (n_pos + QWEN_KV_BLOCK - 1) / QWEN_KV_BLOCK;
    region = (size_t) QWEN_KV_BLOCK * f.pos_bytes;
    blocks = malloc((size_t) nb * sizeof(int32_t));
    kp = calloc((size_t) nb, region);
    vp = calloc((size_t) nb, region);
    scratch = malloc((size_t) m * N_Q * (qwen_kv_rows(n_pos) + 64) * sizeof(float));
    if (blocks == NULL || kp == NULL || vp == NULL || scratch == NULL) {
        fprintf(stderr, "att_count: out of memory\n");
        return 1;
    }
    srand(1);
    for (b = 0; b < nb; b++) {
        blocks[b] = b;
        for (t = 0; t < QWEN_KV_BLOCK; t++) {
            for (i = 0; i < HD; i++) {
                k[i] = (float) rand() / RAND_MAX - 0.5f;
                v[i] = (float) rand() / RAND_MAX - 0.5f;
            }
            f.store(HD, k, v, kp + (size_t) b * region, vp + (size_t) b * region, t);
        }
    }
    for (i = 0; i < m * N_Q * HD; i++) {
        q[i] = (float) rand() / RAND_MAX - 0.5f;
    }
    view = (qwen_kv_view) { kp, vp, blocks, region };
    for (c = 0; c < calls; c++) {
        if (prompt && f.attention_tokens != NULL) {
            f.attention_tokens(HD, N_Q, m, q, N_Q * HD, &view, n_pos - m + 1, 0.0884f, scratch,
                               out, N_Q * HD);
        } else if (prompt) {
            qwen_attention_each(f.attention, HD, N_Q, m, q, N_Q * HD, &view, n_pos - m + 1,
                                0.0884f, scratch, out, N_Q * HD);
        } else {
            f.attention(HD, N_Q, q, &view, n_pos, 0.0884f, scratch, out);
        }
        check += out[c % (N_Q * HD)];
    }
    printf("att_count %s %s n_pos %d calls %d check %g\n", argv[1], argv[2], n_pos, calls,
           (double) check);
    free(blocks);
    free(kp);
    free(vp);
    free(scratch);
    return 0;
}
