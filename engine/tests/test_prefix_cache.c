/*
 * test_prefix_cache.c - the KV cache's prefix index at the level of the
 * forward pass: a sequence that maps cached blocks of a prefix and
 * prefills only the rest gets the same logits, bit for bit, as a fresh
 * prefill of the whole prompt; with several prefixes, with blocks shared
 * by two sequences at once, while the sequence that computed them still
 * uses them, under eviction pressure, and for every kernel table and KV
 * format this CPU has. The scheduler's use of it is in test_scheduler.c.
 */
#include "test.h"
#include "forward.h"
#include "kv_cache.h"

#include <stdlib.h>
#include <string.h>

#define B       QWEN_KV_BLOCK
#define N_CTX   256
#define CHUNK   48          /* prefill chunks that do not fall on blocks */

static qwen_model *model;
static int         vocab;

static void
make_tokens(int32_t *ids, int n, uint32_t seed)
{
    int i;

    for (i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        ids[i] = (int32_t) ((seed >> 8) % (uint32_t) vocab);
    }
}

/* Positions [from, n) of seq through the forward pass in chunks; the last
 * position's logits into out. Returns 0 or -1. */
static int
prefill(qwen_ctx *ctx, int seq, const int32_t *ids, int from, int n, float *out)
{
    qwen_batch_entry b[CHUNK];
    char             err[QWEN_ERR_LEN];
    int              pos, k, i;

    for (pos = from; pos < n; pos += k) {
        k = n - pos < CHUNK ? n - pos : CHUNK;
        for (i = 0; i < k; i++) {
            b[i] = (qwen_batch_entry) { ids[pos + i], seq, pos + i, pos + i == n - 1, 1 };
        }
        if (qwen_forward(ctx, b, k, out, err, sizeof(err)) != 0) {
            CHECK(0, "forward: %s", err);
            return -1;
        }
    }
    return 0;
}

/* Offer seq's full blocks of ids[0 .. n) to the index, as the scheduler
 * does after each step. */
static void
publish(qwen_kv_cache *kv, int seq, const int32_t *ids, int n)
{
    uint64_t chain = 0;
    int      j;

    for (j = 0; (j + 1) * B <= n; j++) {
        qwen_kv_publish(kv, seq, j, ids + (size_t) j * B, &chain);
    }
}

/* The cached prefix of ids[0 .. n) onto an empty seq, leaving the last
 * token to compute: the positions mapped. */
static int
match(qwen_kv_cache *kv, int seq, const int32_t *ids, int n)
{
    uint64_t chain = 0;

    return qwen_kv_match(kv, seq, ids, n, n - 1, 0, &chain);
}

static int
same_logits(const float *a, const float *b)
{
    return memcmp(a, b, (size_t) vocab * sizeof(float)) == 0;
}

static void
test_table(const char *kernels, const char *kv_format_arg)
{
    const char     *kv_format = kv_format_arg ? kv_format_arg : "auto";
    qwen_ctx_params p = qwen_ctx_default_params();
    qwen_ctx       *ctx;
    qwen_kv_cache  *kv;
    qwen_kv_stats   st;
    char            err[QWEN_ERR_LEN];
    int32_t         prompt[3][200], other[8][120];
    float          *fresh = malloc((size_t) vocab * sizeof(float));
    float          *got = malloc((size_t) vocab * sizeof(float));
    int             i, m, lens[3] = { 200, 170, 131 }, all_same = 1, hits = 0;

    p.n_threads = 2;
    p.n_seqs = 3;
    p.n_ctx = N_CTX;
    p.n_batch = CHUNK;
    p.kernels = kernels;
    p.kv_format = kv_format_arg;
    /* 3 sequences x 8 blocks, and 2 blocks more for the index */
    ctx = qwen_ctx_new_cached(model, &p, 2, 1, err, sizeof(err));
    CHECK(ctx != NULL, "%s/%s: context: %s", kernels, kv_format, err);
    if (ctx == NULL || fresh == NULL || got == NULL) {
        goto done;
    }
    kv = qwen_ctx_kv_cache(ctx);

    /* three prompts sharing their first 100 tokens; the second and third
     * share 140 */
    make_tokens(prompt[0], 200, 7);
    memcpy(prompt[1], prompt[0], 100 * sizeof(int32_t));
    make_tokens(prompt[1] + 100, 70, 8);
    memcpy(prompt[2], prompt[1], 140 * sizeof(int32_t));
    make_tokens(prompt[2] + 140, 200 - 140, 9);

    /* sequence 0 computes prompt 0 and publishes it */
    if (prefill(ctx, 0, prompt[0], 0, lens[0], got) != 0) goto done;
    publish(kv, 0, prompt[0], lens[0]);

    /* prompt 1 on sequence 1: 3 blocks (96 positions) of prompt 0 are its
     * own prefix, and the first 4 positions of prompt 0's fourth block
     * come as a copy; the logits equal a fresh prefill's on sequence 2 */
    m = match(kv, 1, prompt[1], lens[1]);
    CHECK(m == 100, "%s/%s: prompt 1 maps %d cached positions, not 100", kernels, kv_format, m);
    hits += m;
    if (prefill(ctx, 1, prompt[1], m, lens[1], got) != 0) goto done;
    publish(kv, 1, prompt[1], lens[1]);
    if (prefill(ctx, 2, prompt[1], 0, lens[1], fresh) != 0) goto done;
    CHECK(same_logits(got, fresh), "%s/%s: prompt 1 from the cache differs from a fresh "
          "prefill", kernels, kv_format);
    qwen_kv_release(kv, 2);

    /* prompt 2 on sequence 2 while sequences 0 and 1 still map the blocks
     * it shares: 4 blocks (128 positions, the last one from prompt 1),
     * then 2 positions copied from prompt 1's fifth block (of its 12
     * shared: the last prompt token is left to compute) */
    m = match(kv, 2, prompt[2], lens[2]);
    CHECK(m == 130, "%s/%s: prompt 2 maps %d cached positions, not 130", kernels, kv_format, m);
    hits += m;
    if (prefill(ctx, 2, prompt[2], m, lens[2], got) != 0) goto done;
    qwen_kv_release(kv, 0);
    if (prefill(ctx, 0, prompt[2], 0, lens[2], fresh) != 0) goto done;
    CHECK(same_logits(got, fresh), "%s/%s: prompt 2 from blocks of two prompts differs from a "
          "fresh prefill", kernels, kv_format);

    /* a decode step of sequence 1 after others mapped its blocks */
    {
        qwen_batch_entry e = { prompt[2][0], 1, lens[1], 1, 0 };
        float           *a = malloc((size_t) vocab * sizeof(float));

        CHECK(a != NULL && qwen_forward(ctx, &e, 1, a, err, sizeof(err)) == 0, "decode: %s",
              err);
        qwen_kv_release(kv, 0);
        if (a != NULL && prefill(ctx, 0, prompt[1], 0, lens[1], fresh) == 0) {
            e.seq = 0;
            CHECK(qwen_forward(ctx, &e, 1, got, err, sizeof(err)) == 0, "decode: %s", err);
            CHECK(same_logits(a, got), "%s/%s: decoding over shared blocks differs", kernels,
                  kv_format);
        }
        free(a);
    }
    qwen_kv_release(kv, 0);
    qwen_kv_release(kv, 1);
    qwen_kv_release(kv, 2);

    /* eviction pressure: eight more prompts of 120 tokens (3 full blocks
     * each) through one sequence: the index keeps at most the pool's 26
     * blocks, dropping the least recently used; each prompt, computed
     * again with whatever prefix is still cached, matches its fresh self */
    for (i = 0; i < 8; i++) {
        make_tokens(other[i], 120, 100 + (uint32_t) i);
        if (prefill(ctx, 0, other[i], 0, 120, got) != 0) goto done;
        publish(kv, 0, other[i], 120);
        qwen_kv_release(kv, 0);
    }
    qwen_kv_get_stats(kv, &st);
    CHECK(st.evictions > 0 && st.n_indexed <= st.n_blocks, "%s/%s: %d blocks indexed, %llu "
          "evicted", kernels, kv_format, st.n_indexed, (unsigned long long) st.evictions);
    for (i = 7; i >= 0; i--) {
        m = match(kv, 1, other[i], 120);
        hits += m;
        if (prefill(ctx, 1, other[i], m, 120, got) != 0
            || prefill(ctx, 2, other[i], 0, 120, fresh) != 0)
        {
            goto done;
        }
        all_same &= same_logits(got, fresh);
        qwen_kv_release(kv, 1);
    }
    CHECK(all_same, "%s/%s: a prompt after evictions differs from a fresh prefill", kernels,
          kv_format);
    printf("prefix cache %s/%s: %d positions mapped from the cache, %llu blocks evicted\n",
           kernels, kv_format, hits, (unsigned long long) st.evictions);
done:
    qwen_ctx_free(ctx);
    free(fresh);
    free(got);
}

/* The index's bookkeeping: a block written by one sequence and mapped by
 * another can no longer be written; a released prefix is found again. */
static void
test_bookkeeping(void)
{
    qwen_ctx_params p = qwen_ctx_default_params();
    qwen_ctx       *ctx;
    qwen_kv_cache  *kv;
    char            err[QWEN_ERR_LEN];
    int32_t         ids[64];
    float          *lg = malloc((size_t) vocab * sizeof(float));

    p.n_seqs = 2;
    p.n_ctx = 64;
    p.n_batch = 64;
    ctx = qwen_ctx_new_cached(model, &p, 0, 1, err, sizeof(err));
    CHECK(ctx != NULL && lg != NULL, "context: %s", err);
    if (ctx == NULL || lg == NULL) {
        free(lg);
        qwen_ctx_free(ctx);
        return;
    }
    kv = qwen_ctx_kv_cache(ctx);
    make_tokens(ids, 64, 3);
    CHECK(prefill(ctx, 0, ids, 0, 40, lg) == 0, "prefill");
    publish(kv, 0, ids, 40);
    CHECK(match(kv, 1, ids, 64) == 32, "one full block matches");
    CHECK(qwen_kv_prepare_write(kv, 1, 5, err, sizeof(err)) != 0
          && strstr(err, "shared") != NULL, "writing into a shared block is refused: %s", err);
    CHECK(qwen_kv_prepare_write(kv, 1, 32, err, sizeof(err)) == 0, "the next block is its own");
    qwen_kv_release(kv, 0);
    qwen_kv_release(kv, 1);
    CHECK(match(kv, 0, ids, 64) == 32, "released, still cached");
    CHECK(match(kv, 1, ids, 31) == 30, "the first 30 positions of a block, copied");
    CHECK(qwen_kv_prepare_write(kv, 1, 30, err, sizeof(err)) == 0,
          "... into a block of its own, written after them: %s", err);
    CHECK(qwen_kv_prepare_write(kv, 0, 64, err, sizeof(err)) != 0, "past the context: %s", err);
    qwen_kv_release(kv, 0);
    qwen_kv_release(kv, 1);
    free(lg);
    qwen_ctx_free(ctx);
}

int
main(void)
{
    static const char *tables[] = { "scalar", "avx2", "avx2_vnni", "avx512", "avx512_vnni",
                                    "neon", "neon_dotprod", "neon_i8mm", "neon_bf16" };
    size_t             i;

    model = test_load_model("tiny-f32.gguf");
    if (model == NULL) {
        TEST_MAIN_END();
    }
    vocab = qwen_model_config(model)->vocab_size;
    test_bookkeeping();
    for (i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
        const qwen_kernels *k = qwen_kernels_by_name(tables[i]);
        int                 f;

        for (f = 0; k != NULL && f < QWEN_KV_FORMAT_COUNT; f++) {
            if (k->kv_store[f] != NULL) {
                test_table(tables[i], qwen_kv_format_name(f));
            }
        }
    }
    qwen_model_free(model);
    {
        /* a quantized model: prompts take the prefill GEMM where there is one */
        model = test_load_model("tiny-q8_0.gguf");
        if (model != NULL) {
            test_table(qwen_kernels_default(), NULL);
            qwen_model_free(model);
        }
    }
    TEST_MAIN_END();
}
