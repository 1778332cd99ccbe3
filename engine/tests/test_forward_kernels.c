/*
 * test_forward_kernels.c - the forward pass on a small random Qwen3 built in
 * memory (no files, no tokenizer), once per kernel table this CPU can run:
 * so it also runs where only the kernels are built, e.g. arm64 under qemu
 * for each CPU model (make test-arm64), and covers each table's path
 * through the forward pass: row pairs (vec_dot2x4), 4-token dots, the
 * prefill GEMM, the KV cache layouts.
 *  - batch invariance: five sequences decoded in one batch give, bit for
 *    bit, the logits each gets decoded alone;
 *  - every table's prompt logits agree with the scalar reference table's,
 *    in each KV cache format the table has.
 * Weights: Q4_K layers with a Q6_K tied embedding (as Q4_K_M), the same
 * repacked as the loader repacks them (repack.h), and Q8_0.
 */
#include "model.h"
#include "kernels/kernels.h"
#include "repack.h"
#include "test.h"
#include "batch_invariance.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { VOCAB = 512, HIDDEN = 256, INTER = 512, LAYERS = 2, HEADS = 4, KV_HEADS = 2,
       HEAD_DIM = 64, CTX = 64 };

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static float
frand(void)   /* uniform in [-1, 1) */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float) ((rng >> 40) & 0xFFFFFF) / 8388608.0f - 1.0f;
}

/* n_rows x n_cols random weights of `type`, scaled like trained ones */
static qwen_tensor
tensor(int type, int64_t n_rows, int64_t n_cols, float scale)
{
    qwen_tensor t = { type, n_cols, n_rows, qwen_row_bytes(type, n_cols), NULL, NULL };
    char       *data = malloc(t.row_bytes * n_rows);
    float      *row = malloc(n_cols * sizeof(float));
    int64_t     r, i;

    for (r = 0; r < n_rows; r++) {
        for (i = 0; i < n_cols; i++) {
            row[i] = frand() * scale;
        }
        qwen_quantize_row(type, row, data + r * t.row_bytes, n_cols);
    }
    free(row);
    t.data = data;
    return t;
}

static float *
norm_weights(int n)
{
    float *w = malloc(n * sizeof(float));
    int    i;

    for (i = 0; i < n; i++) {
        w[i] = 1.0f + 0.1f * frand();
    }
    return w;
}

static qwen_model *
make_model(int layer_type, int embd_type)
{
    qwen_model *m = calloc(1, sizeof(*m));
    int         l;

    m->cfg = (qwen_config) { VOCAB, HIDDEN, INTER, LAYERS, HEADS, KV_HEADS, HEAD_DIM, CTX, 1,
                             1000000.0f, 1e-6f };
    m->tok_embd = tensor(embd_type, VOCAB, HIDDEN, 1.0f);
    m->output = m->tok_embd;
    m->output_norm = norm_weights(HIDDEN);
    m->layers = calloc(LAYERS, sizeof(qwen_layer));
    for (l = 0; l < LAYERS; l++) {
        qwen_layer *L = &m->layers[l];
        L->attn_norm = norm_weights(HIDDEN);
        L->ffn_norm = norm_weights(HIDDEN);
        L->q_norm = norm_weights(HEAD_DIM);
        L->k_norm = norm_weights(HEAD_DIM);
        L->wq = tensor(layer_type, HEADS * HEAD_DIM, HIDDEN, 0.08f);
        L->wk = tensor(layer_type, KV_HEADS * HEAD_DIM, HIDDEN, 0.08f);
        L->wv = tensor(layer_type, KV_HEADS * HEAD_DIM, HIDDEN, 0.08f);
        L->wo = tensor(layer_type, HIDDEN, HEADS * HEAD_DIM, 0.08f);
        L->w_gate = tensor(layer_type, INTER, HIDDEN, 0.08f);
        L->w_up = tensor(layer_type, INTER, HIDDEN, 0.08f);
        L->w_down = tensor(layer_type, HIDDEN, INTER, 0.06f);
    }
    snprintf(m->describe, sizeof(m->describe), "%s layers, %s embedding",
             qwen_type_name(layer_type), qwen_type_name(embd_type));
    return m;
}

/* The packed layouts (repack.h) of every weight that has one, as the
 * loader makes them: each table that reads a layout takes it. */
static void
pack_tensor(qwen_tensor *t)
{
    size_t  gb = qwen_packed_group_bytes(t->type, t->n_cols);
    char   *dst;
    int64_t g;

    if (!qwen_packable(t->type, t->n_rows, t->n_cols)) {
        return;
    }
    dst = malloc(gb * (size_t) (t->n_rows / QWEN_PACK_ROWS));
    for (g = 0; g < t->n_rows / QWEN_PACK_ROWS; g++) {
        qwen_pack_group(t->type, (const char *) t->data + (size_t) g * QWEN_PACK_ROWS
                        * t->row_bytes, t->row_bytes, t->n_cols, dst + (size_t) g * gb);
    }
    t->packed = dst;
}

static void
pack_model(qwen_model *m)
{
    int l;

    for (l = 0; l < LAYERS; l++) {
        qwen_layer *L = &m->layers[l];
        qwen_tensor *ts[7] = { &L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up,
                               &L->w_down };
        int          i;

        for (i = 0; i < 7; i++) {
            pack_tensor(ts[i]);
        }
    }
    pack_tensor(&m->output);
    snprintf(m->describe + strlen(m->describe), sizeof(m->describe) - strlen(m->describe),
             ", packed");
}

static void
free_model(qwen_model *m)
{
    int l;

    for (l = 0; l < LAYERS; l++) {
        qwen_layer *L = &m->layers[l];
        free((void *) L->wq.packed); free((void *) L->wk.packed); free((void *) L->wv.packed);
        free((void *) L->wo.packed); free((void *) L->w_gate.packed);
        free((void *) L->w_up.packed); free((void *) L->w_down.packed);
        free((void *) L->attn_norm); free((void *) L->ffn_norm);
        free((void *) L->q_norm); free((void *) L->k_norm);
        free((void *) L->wq.data); free((void *) L->wk.data); free((void *) L->wv.data);
        free((void *) L->wo.data); free((void *) L->w_gate.data); free((void *) L->w_up.data);
        free((void *) L->w_down.data);
    }
    free(m->layers);
    free((void *) m->tok_embd.data);
    free((void *) m->output.packed);
    free((void *) m->output_norm);
    free(m);
}

static qwen_ctx *
context(const qwen_model *m, const char *kern, int seqs, const char *kv_format)
{
    qwen_ctx_params p = qwen_ctx_default_params();
    p.n_threads = 2;
    p.n_seqs = seqs;
    p.n_ctx = CTX;
    p.n_batch = 64;
    p.kernels = kern;
    p.kv_format = kv_format;
    char            err[QWEN_ERR_LEN];
    qwen_ctx       *c = qwen_ctx_new(m, &p, err, sizeof(err));

    CHECK(c != NULL, "context for %s/%s: %s", kern, kv_format ? kv_format : "auto", err);
    return c;
}

/* a prompt of n tokens of sequence seq; the logits of its last token */
static int
prefill(qwen_ctx *c, const int32_t *ids, int n, int seq, float *logits)
{
    qwen_batch_entry e[32];
    char             err[QWEN_ERR_LEN];
    int              i;

    for (i = 0; i < n; i++) {
        e[i] = (qwen_batch_entry) { ids[i], seq, i, i == n - 1, 1 };
    }
    if (qwen_forward(c, e, n, logits, err, sizeof(err)) != 0) {
        CHECK(0, "prefill: %s", err);
        return -1;
    }
    return 0;
}

enum { NS = 5, NP = 9 };

static void
test_batch_invariance(const qwen_model *m, const char *kern, int32_t prompts[NS][NP])
{
    int bad = decode_batch_mismatches(m, kern, VOCAB, NS, NP, &prompts[0][0]);

    CHECK(bad == 0, "%s, %s kernels: %d of %d logits of a 5-sequence decode batch differ "
          "from decoding alone", m->describe, kern, bad, NS * VOCAB);
}

/*
 * A prompt fed in one call and in chunks of 1 to 7 tokens (attention runs
 * of 1 to 4 tokens starting at every offset, GEMMs of every size) gives
 * its last token the same logits bit for bit: a prompt token's result
 * must not depend on how the prompt is cut.
 */
static void
test_prompt_chunks(const qwen_model *m, const char *kern, int32_t prompts[NS][NP])
{
    static const int cuts[] = { 1, 4, 3, 6, 2, 7, 5, 1, 4, 3, 5, 7, 6, 3 };   /* 57 tokens */
    enum { N = 57, FIRST = 48 };
    qwen_ctx        *whole = context(m, kern, 1, NULL), *cut = context(m, kern, 1, NULL);
    qwen_batch_entry e[FIRST];
    int32_t          ids[N];
    float            a[VOCAB], b[VOCAB];
    char             err[QWEN_ERR_LEN];
    int              i, c, pos = 0, bad = 0, ok = whole != NULL && cut != NULL;

    for (i = 0; i < N; i++) {
        ids[i] = prompts[i % NS][(i / NS) % NP];
    }
    /* whole: two calls of 48 and 9, the first taking every table's prompt
     * GEMM (the avx2 Q8_0 one starts at 40 tokens) */
    for (i = 0; ok && i < N; i += FIRST) {
        int n = N - i < FIRST ? N - i : FIRST, j;

        for (j = 0; j < n; j++) {
            e[j] = (qwen_batch_entry) { ids[i + j], 0, i + j, i + j == N - 1, 1 };
        }
        ok = qwen_forward(whole, e, n, a, err, sizeof(err)) == 0;
    }
    for (c = 0; ok && c < (int) (sizeof(cuts) / sizeof(cuts[0])); c++) {
        for (i = 0; i < cuts[c]; i++, pos++) {
            e[i] = (qwen_batch_entry) { ids[pos], 0, pos, pos == N - 1, 1 };
        }
        ok = qwen_forward(cut, e, cuts[c], b, err, sizeof(err)) == 0;
    }
    CHECK(ok && pos == N, "%s, %s kernels: prompt in chunks: %s", m->describe, kern,
          ok ? "cuts do not add up" : err);
    for (i = 0; ok && i < VOCAB; i++) {
        bad += memcmp(&a[i], &b[i], sizeof(float)) != 0;
    }
    CHECK(bad == 0, "%s, %s kernels: %d of %d logits differ between a %d-token prompt fed "
          "whole and in chunks of 1 to 7", m->describe, kern, bad, VOCAB, N);
    qwen_ctx_free(whole);
    qwen_ctx_free(cut);
}

/* the prompt's last logits against the scalar table's, both with KV
 * format kv_format (NULL: auto): relative RMS */
static void
test_against_scalar(const qwen_model *m, const char *kern, const int32_t *prompt,
                    const char *kv_format)
{
    qwen_ctx *c = context(m, kern, 1, kv_format), *ref = context(m, "scalar", 1, kv_format);
    float     a[VOCAB], b[VOCAB];
    double    num = 0.0, den = 0.0, bound;
    int       i;

    if (c != NULL && ref != NULL && prefill(c, prompt, NP, 0, a) == 0
        && prefill(ref, prompt, NP, 0, b) == 0)
    {
        for (i = 0; i < VOCAB; i++) {
            num += (double) (a[i] - b[i]) * (a[i] - b[i]);
            den += (double) b[i] * b[i];
        }
        /* quantized activations are the same; a GEMM rounds them to BF16.
         * An f32 KV cache keeps the dots' last-bit differences (float sums
         * in another order) unrounded through attention, and then one
         * Q8_K activation can round the other way, a step of ~0.4% that
         * random weights amplify (0.0095 on the Q4_K model with AVX2, the
         * same with the scalar attention swapped in) */
        bound = qwen_kernels_by_name(kern)->gemm != NULL ? 0.06
                : strcmp(qwen_ctx_kv_format(c), "f32") == 0 ? 3e-2 : 1e-3;
        CHECK(den > 0 && sqrt(num / den) < bound, "%s, %s vs scalar kernels, %s KV cache: "
              "relative RMS difference %.3g (bound %g)", m->describe, kern,
              qwen_ctx_kv_format(c), sqrt(num / den), bound);
        printf("%s, %s vs scalar, %s KV cache: relative RMS difference %.2g\n", m->describe,
               kern, qwen_ctx_kv_format(c), sqrt(num / den));
    }
    qwen_ctx_free(c);
    qwen_ctx_free(ref);
}

int
main(void)
{
    static const char *names[] = { "scalar", "avx2", "avx2_vnni", "avx512", "avx512_vnni",
                                   "neon", "neon_dotprod", "neon_i8mm", "neon_bf16" };
    /* [2]: the weights repacked at load (repack.h) */
    static const int   kinds[][3] = { { QWEN_TYPE_Q4_K, QWEN_TYPE_Q6_K, 0 },
                                      { QWEN_TYPE_Q8_0, QWEN_TYPE_Q8_0, 0 },
                                      { QWEN_TYPE_Q4_K, QWEN_TYPE_Q6_K, 1 },
                                      { QWEN_TYPE_Q8_0, QWEN_TYPE_Q8_0, 1 },
                                      { QWEN_TYPE_BF16, QWEN_TYPE_BF16, 1 } };
    int32_t            prompts[NS][NP];
    size_t             n, k;
    int                s, i;

    for (s = 0; s < NS; s++) {
        for (i = 0; i < NP; i++) {
            prompts[s][i] = (int32_t) ((frand() + 1.0f) * 0.5f * VOCAB) % VOCAB;
        }
    }
    for (k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        qwen_model *m = make_model(kinds[k][0], kinds[k][1]);

        if (kinds[k][2]) {
            pack_model(m);
        }

        for (n = 0; n < sizeof(names) / sizeof(names[0]); n++) {
            if (!qwen_kernels_available(names[n])) {
                continue;
            }
            test_batch_invariance(m, names[n], prompts);
            test_prompt_chunks(m, names[n], prompts);
            if (n > 0) {
                const qwen_kernels *kt = qwen_kernels_by_name(names[n]);
                int                 f;

                /* auto (as the table picks it), then each format both
                 * tables have */
                test_against_scalar(m, names[n], prompts[0], NULL);
                for (f = 0; f < QWEN_KV_FORMAT_COUNT; f++) {
                    if (kt->kv_store[f] != NULL && qwen_kernels_ref()->kv_store[f] != NULL) {
                        test_against_scalar(m, names[n], prompts[0], qwen_kv_format_name(f));
                    }
                }
            }
        }
        free_model(m);
    }
    TEST_MAIN_END();
}
