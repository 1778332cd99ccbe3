/*
 * test_forward.c - the engine's Qwen3 forward pass against a deliberately
 * naive reference written here: it reads the F32 safetensors file itself
 * (its own parser), runs one token at a time with plain loops in double
 * precision, and knows nothing of the engine's layouts or kernels.
 * Also: GGUF vs Hugging Face files give identical logits, sharded vs single
 * file, threads 1 vs 2, scalar vs SIMD, quantized models near F32, and two
 * sequences interleaved in one context equal each run alone.
 * Models come from tools/make_test_model in $QWEN_TEST_MODELS.
 */
#include "test.h"
#include "batch_invariance.h"
#include "qwen.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char *models_dir;

/* ------------------------------------------------------ naive reference */

typedef struct {
    int     vocab, hidden, inter, layers, heads, kv_heads, head_dim;
    double  theta, eps;
    char   *blob;           /* the whole safetensors file */
    json_t *header;
    size_t  data_start;
    /* KV cache [layer][pos][kv_heads * head_dim] */
    double *kc, *vc;
    int     max_pos;
    json_t *converted;      /* name -> F32 copy of a BF16 tensor (address) */
} ref_model;

/* A tensor as F32: F32 straight from the file, BF16 widened once (bf16 is
 * the top half of an f32, no rounding involved). */
static const float *
ref_tensor(ref_model *r, const char *name, long n_expected)
{
    json_t     *t = json_object_get(r->header, name);
    json_t     *off = json_object_get(t, "data_offsets");
    long        begin = (long) json_integer_value(json_array_get(off, 0));
    long        end = (long) json_integer_value(json_array_get(off, 1));
    const char *dtype = json_string_value(json_object_get(t, "dtype"));
    json_t     *done = json_object_get(r->converted, name);
    float      *f;
    long        i;

    if (t != NULL && dtype != NULL && strcmp(dtype, "F32") == 0 && end - begin == n_expected * 4) {
        return (const float *) (r->blob + r->data_start + begin);
    }
    if (t == NULL || dtype == NULL || strcmp(dtype, "BF16") != 0 || end - begin != n_expected * 2) {
        fprintf(stderr, "reference: tensor %s missing or not F32/BF16 x %ld\n", name, n_expected);
        exit(1);
    }
    if (done != NULL) {
        return (const float *) (uintptr_t) json_integer_value(done);
    }
    f = malloc((size_t) n_expected * sizeof(float));
    for (i = 0; i < n_expected; i++) {
        uint16_t h;
        uint32_t u;
        memcpy(&h, r->blob + r->data_start + begin + 2 * i, 2);
        u = (uint32_t) h << 16;
        memcpy(&f[i], &u, 4);
    }
    json_object_set_new(r->converted, name, json_integer((json_int_t) (uintptr_t) f));
    return f;
}

static int
ref_load(ref_model *r, const char *dir, int max_pos)
{
    char         path[8192];
    FILE        *f;
    long         size;
    uint64_t     hlen;
    json_t      *cfg;
    json_error_t jerr;

    memset(r, 0, sizeof(*r));
    snprintf(path, sizeof(path), "%s/config.json", dir);
    cfg = json_load_file(path, 0, &jerr);
    if (cfg == NULL) {
        fprintf(stderr, "reference: %s: %s\n", path, jerr.text);
        return -1;
    }
    r->vocab = (int) json_integer_value(json_object_get(cfg, "vocab_size"));
    r->hidden = (int) json_integer_value(json_object_get(cfg, "hidden_size"));
    r->inter = (int) json_integer_value(json_object_get(cfg, "intermediate_size"));
    r->layers = (int) json_integer_value(json_object_get(cfg, "num_hidden_layers"));
    r->heads = (int) json_integer_value(json_object_get(cfg, "num_attention_heads"));
    r->kv_heads = (int) json_integer_value(json_object_get(cfg, "num_key_value_heads"));
    r->head_dim = (int) json_integer_value(json_object_get(cfg, "head_dim"));
    r->theta = json_number_value(json_object_get(cfg, "rope_theta"));
    r->eps = json_number_value(json_object_get(cfg, "rms_norm_eps"));
    json_decref(cfg);

    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "reference: cannot open %s\n", path);
        return -1;
    }
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, 0, SEEK_SET);
    r->blob = malloc((size_t) size);
    if (r->blob == NULL || fread(r->blob, 1, (size_t) size, f) != (size_t) size) {
        fclose(f);
        return -1;
    }
    fclose(f);
    memcpy(&hlen, r->blob, 8);
    r->header = json_loadb(r->blob + 8, hlen, 0, &jerr);
    r->data_start = 8 + hlen;
    r->max_pos = max_pos;
    r->converted = json_object();
    r->kc = calloc((size_t) r->layers * max_pos * r->kv_heads * r->head_dim, sizeof(double));
    r->vc = calloc((size_t) r->layers * max_pos * r->kv_heads * r->head_dim, sizeof(double));
    return r->header && r->kc && r->vc ? 0 : -1;
}

static void
ref_free(ref_model *r)
{
    const char *key;
    json_t     *v;

    json_object_foreach(r->converted, key, v) {
        free((void *) (uintptr_t) json_integer_value(v));
    }
    json_decref(r->converted);
    free(r->blob);
    free(r->kc);
    free(r->vc);
    json_decref(r->header);
}

static void
ref_rmsnorm(double *out, const double *x, const float *w, int n, double eps)
{
    double ss = 0.0;
    int    i;

    for (i = 0; i < n; i++) ss += x[i] * x[i];
    ss = 1.0 / sqrt(ss / n + eps);
    for (i = 0; i < n; i++) out[i] = x[i] * ss * w[i];
}

/* y[rows] = W[rows][cols] x[cols] */
static void
ref_matvec(double *y, const float *w, const double *x, int rows, int cols)
{
    int i, j;

    for (i = 0; i < rows; i++) {
        double s = 0.0;
        for (j = 0; j < cols; j++) s += (double) w[(size_t) i * cols + j] * x[j];
        y[i] = s;
    }
}

/* One token at position pos; logits (vocab) filled when non-NULL. */
static void
ref_step(ref_model *r, int token, int pos, double *logits)
{
    int     H = r->hidden, hd = r->head_dim, qd = r->heads * hd, kvd = r->kv_heads * hd;
    double *x = calloc(H, sizeof(double)), *xn = calloc(r->inter > qd ? r->inter : qd, sizeof(double));
    double *q = calloc(qd, sizeof(double)), *k = calloc(kvd, sizeof(double));
    double *v = calloc(kvd, sizeof(double)), *att = calloc(qd, sizeof(double));
    double *o = calloc(H, sizeof(double)), *g = calloc(r->inter, sizeof(double));
    double *u = calloc(r->inter, sizeof(double)), *sc = calloc(pos + 1, sizeof(double));
    char    name[128];
    int     l, h, i, t;
    const float *emb = ref_tensor(r, "model.embed_tokens.weight", (long) r->vocab * H);

    for (i = 0; i < H; i++) x[i] = emb[(size_t) token * H + i];
    for (l = 0; l < r->layers; l++) {
#define W(suffix, n) (snprintf(name, sizeof(name), "model.layers.%d.%s", l, suffix), \
                      ref_tensor(r, name, (long) (n)))
        ref_rmsnorm(xn, x, W("input_layernorm.weight", H), H, r->eps);
        ref_matvec(q, W("self_attn.q_proj.weight", (long) qd * H), xn, qd, H);
        ref_matvec(k, W("self_attn.k_proj.weight", (long) kvd * H), xn, kvd, H);
        ref_matvec(v, W("self_attn.v_proj.weight", (long) kvd * H), xn, kvd, H);
        for (h = 0; h < r->heads + r->kv_heads; h++) {
            double *vec = h < r->heads ? q + h * hd : k + (h - r->heads) * hd;
            const float *nw = h < r->heads ? W("self_attn.q_norm.weight", hd)
                                           : W("self_attn.k_norm.weight", hd);
            ref_rmsnorm(vec, vec, nw, hd, r->eps);
            /* rotate_half RoPE: pairs (i, i + hd/2) */
            for (i = 0; i < hd / 2; i++) {
                double ang = pos * pow(r->theta, -2.0 * i / hd);
                double a = vec[i], b = vec[i + hd / 2];
                vec[i] = a * cos(ang) - b * sin(ang);
                vec[i + hd / 2] = a * sin(ang) + b * cos(ang);
            }
        }
        memcpy(r->kc + ((size_t) l * r->max_pos + pos) * kvd, k, kvd * sizeof(double));
        memcpy(r->vc + ((size_t) l * r->max_pos + pos) * kvd, v, kvd * sizeof(double));
        for (h = 0; h < r->heads; h++) {
            int    kvh = h / (r->heads / r->kv_heads);
            double mx = -1e300, sum = 0.0;
            for (t = 0; t <= pos; t++) {
                const double *kt = r->kc + ((size_t) l * r->max_pos + t) * kvd + kvh * hd;
                double s = 0.0;
                for (i = 0; i < hd; i++) s += q[h * hd + i] * kt[i];
                sc[t] = s / sqrt((double) hd);
                mx = sc[t] > mx ? sc[t] : mx;
            }
            for (t = 0; t <= pos; t++) { sc[t] = exp(sc[t] - mx); sum += sc[t]; }
            for (i = 0; i < hd; i++) {
                double s = 0.0;
                for (t = 0; t <= pos; t++)
                    s += sc[t] / sum * r->vc[((size_t) l * r->max_pos + t) * kvd + kvh * hd + i];
                att[h * hd + i] = s;
            }
        }
        ref_matvec(o, W("self_attn.o_proj.weight", (long) H * qd), att, H, qd);
        for (i = 0; i < H; i++) x[i] += o[i];
        ref_rmsnorm(xn, x, W("post_attention_layernorm.weight", H), H, r->eps);
        ref_matvec(g, W("mlp.gate_proj.weight", (long) r->inter * H), xn, r->inter, H);
        ref_matvec(u, W("mlp.up_proj.weight", (long) r->inter * H), xn, r->inter, H);
        for (i = 0; i < r->inter; i++) g[i] = g[i] / (1.0 + exp(-g[i])) * u[i];
        ref_matvec(o, W("mlp.down_proj.weight", (long) H * r->inter), g, H, r->inter);
        for (i = 0; i < H; i++) x[i] += o[i];
#undef W
    }
    if (logits != NULL) {
        ref_rmsnorm(xn, x, ref_tensor(r, "model.norm.weight", H), H, r->eps);
        ref_matvec(logits, emb, xn, r->vocab, H);
    }
    free(x); free(xn); free(q); free(k); free(v); free(att); free(o); free(g); free(u); free(sc);
}

/* ------------------------------------------------------------- helpers */

/* the KV cache format contexts get (NULL: the engine's choice) */
static const char *test_kv_format;

static qwen_ctx *
ctx_for(const qwen_model *m, int threads, int seqs, int n_ctx, int n_batch, const char *kern)
{
    qwen_ctx_params p = qwen_ctx_default_params();
    p.n_threads = threads;
    p.n_seqs = seqs;
    p.n_ctx = n_ctx;
    p.n_batch = n_batch;
    p.kernels = kern;
    p.kv_format = test_kv_format;
    char            err[QWEN_ERR_LEN];
    qwen_ctx       *c = qwen_ctx_new(m, &p, err, sizeof(err));

    CHECK(c != NULL, "context: %s", err);
    return c;
}

/* Feed ids in chunks of n_batch, as prompt tokens (the GEMM where the
 * kernels have one) or as generated ones (the dot kernels); logits of
 * every token into out ([n][vocab]). */
static int
run_logits(qwen_ctx *ctx, const int32_t *ids, int n, int n_batch, int seq, float *out,
           int vocab, int prompt)
{
    qwen_batch_entry b[512];
    char             err[QWEN_ERR_LEN];
    int              done = 0, i, k;

    while (done < n) {
        k = n - done < n_batch ? n - done : n_batch;
        for (i = 0; i < k; i++) {
            b[i].token = ids[done + i];
            b[i].seq = seq;
            b[i].pos = done + i;
            b[i].want_logits = 1;
            b[i].prompt = prompt;
        }
        if (qwen_forward(ctx, b, k, out + (size_t) done * vocab, err, sizeof(err)) != 0) {
            CHECK(0, "forward: %s", err);
            return -1;
        }
        done += k;
    }
    return 0;
}

/* Prefill ids in chunks of n_batch */
static int
run_all_logits(qwen_ctx *ctx, const int32_t *ids, int n, int n_batch, int seq, float *out,
               int vocab)
{
    return run_logits(ctx, ids, n, n_batch, seq, out, vocab, 1);
}

static double
rel_rms_diff(const float *a, const float *b, int n)
{
    double d = 0.0, s = 0.0;
    int    i;

    for (i = 0; i < n; i++) {
        d += ((double) a[i] - b[i]) * ((double) a[i] - b[i]);
        s += (double) b[i] * b[i];
    }
    return sqrt(d / (s > 0 ? s : 1));
}

static void
make_prompt(int32_t *ids, int n, uint32_t seed, int vocab)
{
    int i;

    for (i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        ids[i] = (int32_t) ((seed >> 8) % (uint32_t) (vocab < 151643 ? vocab : 151643));
    }
}

/* --------------------------------------------------------------- tests */

#define LONG_PROMPT 640

/* The largest difference between the softmax of float logits and of the
 * reference's double ones. */
static double
prob_diff(const float *logits, const double *ref, int vocab)
{
    double mx = -INFINITY, rmx = -INFINITY, sum = 0.0, rsum = 0.0, worst = 0.0;
    int    i;

    for (i = 0; i < vocab; i++) {
        mx = fmax(mx, logits[i]);
        rmx = fmax(rmx, ref[i]);
    }
    for (i = 0; i < vocab; i++) {
        sum += exp(logits[i] - mx);
        rsum += exp(ref[i] - rmx);
    }
    for (i = 0; i < vocab; i++) {
        worst = fmax(worst, fabs(exp(logits[i] - mx) / sum - exp(ref[i] - rmx) / rsum));
    }
    return worst;
}

/* Logits within bound x the largest of the naive reference's, and (where
 * prob_bound > 0) softmax probabilities within prob_bound of its. */
static void
test_against_reference(const char *model_name, const char *hf_name, double bound,
                       double prob_bound)
{
    char        dir[2048];
    ref_model   ref;
    qwen_model *m = test_load_model(model_name);
    qwen_ctx   *ctx;
    int32_t     ids[LONG_PROMPT];
    static const int check_pos[] = { 0, 1, 7, 63, 64, 300, 511, 512, 639 };
    float      *logits;
    double     *rl, worst = 0.0, worst_prob = 0.0, scale;
    int         vocab, p, ci, i, prompts;

    if (m == NULL) {
        return;
    }
    vocab = qwen_model_config(m)->vocab_size;
    snprintf(dir, sizeof(dir), "%s/%s", models_dir, hf_name);
    if (ref_load(&ref, dir, LONG_PROMPT) != 0) {
        CHECK(0, "reference model could not be read from %s", dir);
        qwen_model_free(m);
        return;
    }
    logits = malloc((size_t) LONG_PROMPT * vocab * sizeof(float));
    rl = malloc((size_t) vocab * sizeof(double));
    for (prompts = 0; prompts < 2; prompts++) {
        int n = prompts == 0 ? LONG_PROMPT : 20;
        make_prompt(ids, n, 17 + prompts, vocab);
        /* chunks of 64 exercise prefill batches and the cache across them */
        ctx = ctx_for(m, 2, 1, LONG_PROMPT, 64, NULL);
        if (ctx == NULL || run_all_logits(ctx, ids, n, 64, 0, logits, vocab) != 0) {
            break;
        }
        ci = 0;
        for (p = 0; p < n; p++) {
            int want = p == check_pos[ci] || p == n - 1;
            ref_step(&ref, ids[p], p, want ? rl : NULL);
            if (!want) {
                continue;
            }
            if (ci < (int) (sizeof(check_pos) / sizeof(check_pos[0])) - 1
                && p == check_pos[ci])
            {
                ci++;
            }
            scale = 0.0;
            for (i = 0; i < vocab; i++) scale = fmax(scale, fabs(rl[i]));
            for (i = 0; i < vocab; i++) {
                worst = fmax(worst, fabs(logits[(size_t) p * vocab + i] - rl[i]) / scale);
            }
            worst_prob = fmax(worst_prob, prob_diff(logits + (size_t) p * vocab, rl, vocab));
            {
                int ea = qwen_argmax(logits + (size_t) p * vocab, vocab), ra = 0;
                for (i = 1; i < vocab; i++) if (rl[i] > rl[ra]) ra = i;
                CHECK(ea == ra || fabs(rl[ea] - rl[ra]) < bound * scale,
                      "prompt %d pos %d: argmax %d vs reference %d", prompts, p, ea, ra);
            }
        }
        qwen_ctx_free(ctx);
    }
    printf("%s vs naive reference, %s KV cache: worst error %.3g of the largest logit "
           "(bound %.3g), probabilities within %.3g\n", model_name,
           test_kv_format ? test_kv_format : "auto", worst, bound, worst_prob);
    CHECK(worst < bound, "%s: logits differ from the reference by %.3g of max", model_name,
          worst);
    CHECK(prob_bound <= 0 || worst_prob < prob_bound, "%s, %s KV cache: probabilities differ "
          "from the reference's by %.3g (bound %g)", model_name,
          test_kv_format ? test_kv_format : "auto", worst_prob, prob_bound);
    free(logits);
    free(rl);
    ref_free(&ref);
    qwen_model_free(m);
}

/* Logits of n fixed tokens from a model file, in a fresh context: as
 * prompt tokens or generated ones, n_batch a step. */
static float *
model_logits(const char *name, int threads, const char *kern, int n, int n_batch, int prompt,
             int *vocab_out)
{
    qwen_model *m = test_load_model(name);
    qwen_ctx   *ctx;
    int32_t     ids[64];
    float      *out;
    int         vocab;

    if (m == NULL) {
        return NULL;
    }
    vocab = qwen_model_config(m)->vocab_size;
    make_prompt(ids, n, 99, vocab);
    out = malloc((size_t) n * vocab * sizeof(float));
    ctx = ctx_for(m, threads, 1, 64, n_batch, kern);
    if (ctx == NULL || out == NULL
        || run_logits(ctx, ids, n, n_batch, 0, out, vocab, prompt) != 0)
    {
        free(out);
        out = NULL;
    }
    qwen_ctx_free(ctx);
    qwen_model_free(m);
    *vocab_out = vocab;
    return out;
}

static float *
prompt_logits(const char *name, int threads, const char *kern, int n, int *vocab_out)
{
    return model_logits(name, threads, kern, n, 16, 1, vocab_out);
}

static void
test_formats_agree(void)
{
    int    v1, v2, n = 24;
    float *a, *b;
    double d;
    struct { const char *x, *y; double bound; const char *why; } pairs[] = {
        { "tiny-f32.gguf", "tiny-f32-hf", 0.0, "same F32 weights in GGUF and safetensors" },
        { "tiny-f32-hf", "tiny-f32-hf-sharded", 0.0, "single file vs 3 shards" },
        { "tiny-bf16.gguf", "tiny-bf16-hf", 0.0, "same BF16 weights in GGUF and safetensors" },
        { "tiny-bf16.gguf", "tiny-f32.gguf", 0.05, "BF16 rounding of the weights" },
        { "tiny-q8_0.gguf", "tiny-f32.gguf", 0.08, "Q8_0 weights and activations" },
        { "tiny-q4_k_m.gguf", "tiny-f32.gguf", 0.25, "tiny Q4_K_M falls back to Q8_0" },
        /* the same quantized weights as F32: only activation rounding differs */
        { "tiny-q8_0.gguf", "tiny-q8_0-dequant.gguf", 0.06, "Q8_0 activations" },
        { "small-q4_k_m.gguf", "small-q4_k_m-dequant.gguf", 0.06,
          "Q4_K/Q6_K kernels with Q8_K activations" },
        { "small-q4_k_m.gguf", "small-f32.gguf", 0.5, "Q4_K/Q6_K weights vs F32" },
    };
    size_t i;

    for (i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        a = prompt_logits(pairs[i].x, 2, NULL, n, &v1);
        b = prompt_logits(pairs[i].y, 2, NULL, n, &v2);
        if (a != NULL && b != NULL && v1 == v2) {
            if (pairs[i].bound == 0.0) {
                CHECK(memcmp(a, b, (size_t) n * v1 * sizeof(float)) == 0,
                      "%s vs %s: logits not identical (%s)", pairs[i].x, pairs[i].y,
                      pairs[i].why);
            } else {
                d = rel_rms_diff(a, b, n * v1);
                printf("%s vs %s: relative RMS difference %.4f (bound %.2f)\n", pairs[i].x,
                       pairs[i].y, d, pairs[i].bound);
                CHECK(d < pairs[i].bound, "%s vs %s: relative RMS difference %.4f > %.2f (%s)",
                      pairs[i].x, pairs[i].y, d, pairs[i].bound, pairs[i].why);
            }
        } else {
            CHECK(0, "could not compare %s and %s", pairs[i].x, pairs[i].y);
        }
        free(a);
        free(b);
    }

    /* threads split rows, never a dot product: results are bit-identical */
    a = prompt_logits("tiny-q4_k_m.gguf", 1, NULL, n, &v1);
    b = prompt_logits("tiny-q4_k_m.gguf", 2, NULL, n, &v2);
    CHECK(a && b && memcmp(a, b, (size_t) n * v1 * sizeof(float)) == 0,
          "1 and 2 threads give different logits");
    free(a);
    free(b);

    /* scalar reference kernels vs AVX2 (dot kernels only): float sums in
     * another order can flip the rounding of one Q8 activation, a step of
     * ~0.4% that random weights amplify; F32 activations stay much closer */
    if (qwen_kernels_available("avx2")) {
        a = prompt_logits("small-q4_k_m.gguf", 2, "scalar", n, &v1);
        b = prompt_logits("small-q4_k_m.gguf", 2, "avx2", n, &v2);
        CHECK(a && b && rel_rms_diff(b, a, n * v1) < 1e-2,
              "AVX2 vs scalar kernels (Q4_K): relative difference %.3g",
              a && b ? rel_rms_diff(b, a, n * v1) : -1.0);
        free(a);
        free(b);
        a = prompt_logits("tiny-bf16.gguf", 2, "scalar", n, &v1);
        b = prompt_logits("tiny-bf16.gguf", 2, "avx2", n, &v2);
        CHECK(a && b && rel_rms_diff(b, a, n * v1) < 1e-4,
              "AVX2 vs scalar kernels (BF16): relative difference %.3g",
              a && b ? rel_rms_diff(b, a, n * v1) : -1.0);
        free(a);
        free(b);
    }
    /* the best table (with the BF16 prefill GEMM where present) vs scalar:
     * prompt activations in BF16 instead of Q8_K/F32 */
    a = prompt_logits("small-q4_k_m.gguf", 2, "scalar", n, &v1);
    b = prompt_logits("small-q4_k_m.gguf", 2, NULL, n, &v2);
    CHECK(a && b && rel_rms_diff(b, a, n * v1) < 0.06,
          "best vs scalar kernels (Q4_K): relative difference %.3g",
          a && b ? rel_rms_diff(b, a, n * v1) : -1.0);
    free(a);
    free(b);
    a = prompt_logits("tiny-bf16.gguf", 2, "scalar", n, &v1);
    b = prompt_logits("tiny-bf16.gguf", 2, NULL, n, &v2);
    CHECK(a && b && rel_rms_diff(b, a, n * v1) < 0.06,
          "SIMD vs scalar kernels: relative difference %.3g",
          a && b ? rel_rms_diff(b, a, n * v1) : -1.0);
    free(a);
    free(b);
}

/* Every matmul's rows are shared out in chunks that threads claim as they
 * go (a thread that finishes its own takes the others' last ones): which
 * thread computes a row, and how many threads there are, must never change
 * a bit. Generated tokens (the dot kernels): one token a step (pair
 * kernels), and 4 and 16 (4-token and packed GEMM tiles); prompt tokens
 * (the GEMM) 1, 4 and 16 a step as well. */
static void
test_tokens_any_threads(const char *name, const char *kern, int prompt)
{
    int    steps[] = { 1, 4, 16 }, threads[] = { 2, 3, 5 }, v1, v2, n = 32;
    float *a, *b;
    size_t s, t;

    for (s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
        a = model_logits(name, 1, kern, n, steps[s], prompt, &v1);
        for (t = 0; t < sizeof(threads) / sizeof(threads[0]); t++) {
            b = model_logits(name, threads[t], kern, n, steps[s], prompt, &v2);
            CHECK(a != NULL && b != NULL && v1 == v2
                  && memcmp(a, b, (size_t) n * v1 * sizeof(float)) == 0,
                  "%s (%s), %d %s tokens a step: 1 and %d threads give different logits",
                  name, kern != NULL ? kern : "best", steps[s],
                  prompt ? "prompt" : "generated", threads[t]);
            free(b);
        }
        free(a);
    }
}

/* Greedy continuation of a prompt, alone in a fresh context. */
static void
greedy_alone(const qwen_model *m, const int32_t *ids, int n, int steps, int32_t *out)
{
    qwen_ctx *ctx = ctx_for(m, 2, 1, n + steps, 32, NULL);
    int       vocab = qwen_model_config(m)->vocab_size, s;
    float    *logits = malloc((size_t) n * vocab * sizeof(float));
    int32_t   t;

    if (ctx == NULL || logits == NULL || run_all_logits(ctx, ids, n, 32, 0, logits, vocab)) {
        free(logits);
        qwen_ctx_free(ctx);
        return;
    }
    t = qwen_argmax(logits + (size_t) (n - 1) * vocab, vocab);
    for (s = 0; s < steps; s++) {
        qwen_batch_entry b = { t, 0, n + s, 1, 0 };
        char             err[QWEN_ERR_LEN];
        out[s] = t;
        if (qwen_forward(ctx, &b, 1, logits, err, sizeof(err)) != 0) {
            CHECK(0, "forward: %s", err);
            break;
        }
        t = qwen_argmax(logits, vocab);
    }
    free(logits);
    qwen_ctx_free(ctx);
}

static void
test_interleaved_sequences(const char *model_name)
{
    qwen_model *m = test_load_model(model_name);
    enum { NA = 13, NB = 29, STEPS = 40 };
    int32_t     a[NA], b[NB], alone_a[STEPS], alone_b[STEPS], got_a[STEPS], got_b[STEPS];
    qwen_ctx   *ctx;
    float      *logits;
    int         vocab, s, pa = 0, pb = 0, distinct = 0;
    char        err[QWEN_ERR_LEN];

    if (m == NULL) {
        return;
    }
    vocab = qwen_model_config(m)->vocab_size;
    make_prompt(a, NA, 5, vocab);
    make_prompt(b, NB, 6, vocab);
    greedy_alone(m, a, NA, STEPS, alone_a);
    greedy_alone(m, b, NB, STEPS, alone_b);

    /* one context, slots 1 and 3 of 4: prefill A, then B, then decode both
     * in shared batches, B's prefill split around A's first steps */
    ctx = ctx_for(m, 2, 4, 128, 32, NULL);
    logits = malloc((size_t) 2 * 32 * vocab * sizeof(float));
    if (ctx == NULL || logits == NULL) {
        free(logits);
        qwen_ctx_free(ctx);
        qwen_model_free(m);
        return;
    }
    {
        qwen_batch_entry e[32];
        int              i, k;
        /* A's prompt in one batch */
        for (i = 0; i < NA; i++) e[i] = (qwen_batch_entry) { a[i], 1, i, i == NA - 1, 1 };
        CHECK(qwen_forward(ctx, e, NA, logits, err, sizeof(err)) == 0, "%s", err);
        got_a[0] = qwen_argmax(logits, vocab);
        pa = NA;
        /* B's first 10 prompt tokens together with A's first decode step */
        k = 0;
        e[k++] = (qwen_batch_entry) { got_a[0], 1, pa, 1, 0 };
        for (i = 0; i < 10; i++) e[k++] = (qwen_batch_entry) { b[i], 3, i, 0, 1 };
        CHECK(qwen_forward(ctx, e, k, logits, err, sizeof(err)) == 0, "%s", err);
        got_a[1] = qwen_argmax(logits, vocab);
        pa++;
        /* the rest of B's prompt */
        for (i = 10; i < NB; i++) e[i - 10] = (qwen_batch_entry) { b[i], 3, i, i == NB - 1, 1 };
        CHECK(qwen_forward(ctx, e, NB - 10, logits, err, sizeof(err)) == 0, "%s", err);
        got_b[0] = qwen_argmax(logits, vocab);
        pb = NB;
        /* both decode together */
        for (s = 1; s < STEPS; s++) {
            k = 0;
            if (s + 1 < STEPS) e[k++] = (qwen_batch_entry) { got_a[s], 1, pa, 1, 0 };
            e[k++] = (qwen_batch_entry) { got_b[s - 1], 3, pb, 1, 0 };
            CHECK(qwen_forward(ctx, e, k, logits, err, sizeof(err)) == 0, "%s", err);
            if (s + 1 < STEPS) {
                got_a[s + 1] = qwen_argmax(logits, vocab);
                pa++;
                got_b[s] = qwen_argmax(logits + vocab, vocab);
            } else {
                got_b[s] = qwen_argmax(logits, vocab);
            }
            pb++;
        }
    }
    CHECK(memcmp(got_a, alone_a, sizeof(got_a)) == 0, "%s: sequence A differs when interleaved",
          model_name);
    CHECK(memcmp(got_b, alone_b, sizeof(got_b)) == 0, "%s: sequence B differs when interleaved",
          model_name);
    for (s = 1; s < STEPS; s++) {
        distinct += alone_a[s] != alone_a[0];
    }
    CHECK(memcmp(alone_a, alone_b, sizeof(alone_a)) != 0,
          "different prompts gave the same greedy continuation (degenerate model?)");
    CHECK(distinct > 0, "greedy output repeats one token (degenerate model?)");
    free(logits);
    qwen_ctx_free(ctx);
    qwen_model_free(m);
}

/* The last layer runs past attention only for the tokens whose logits are
 * wanted: the logits of rows 3 and 7 of a two-sequence prompt batch (and
 * of the next decode step) are bit-identical to those of the same batch
 * with every row's logits computed, and a batch wanting none still writes
 * the K and V the next step reads. */
static void
test_logit_rows_only(const char *model_name)
{
    enum { N = 8 };
    qwen_model      *m = test_load_model(model_name);
    qwen_ctx        *full, *part;
    qwen_batch_entry e[N];
    int32_t          ids[N];
    float           *all, *some, *dec_all, *dec_some;
    int              vocab, i, r;
    char             err[QWEN_ERR_LEN];

    if (m == NULL) {
        return;
    }
    vocab = qwen_model_config(m)->vocab_size;
    make_prompt(ids, N, 21, vocab);
    full = ctx_for(m, 2, 2, 64, N, NULL);
    part = ctx_for(m, 2, 2, 64, N, NULL);
    all = malloc((size_t) N * vocab * sizeof(float));
    some = malloc((size_t) N * vocab * sizeof(float));
    dec_all = malloc((size_t) 2 * vocab * sizeof(float));
    dec_some = malloc((size_t) 2 * vocab * sizeof(float));
    if (full && part && all && some && dec_all && dec_some) {
        /* rows 0-4 are sequence 0, rows 5-7 sequence 1 */
        for (i = 0; i < N; i++) {
            e[i] = (qwen_batch_entry) { ids[i], i < 5 ? 0 : 1, i < 5 ? i : i - 5, 1, 1 };
        }
        CHECK(qwen_forward(full, e, N, all, err, sizeof(err)) == 0, "%s", err);
        for (i = 0; i < N; i++) {
            e[i].want_logits = i == 3 || i == 7;
        }
        CHECK(qwen_forward(part, e, N, some, err, sizeof(err)) == 0, "%s", err);
        CHECK(memcmp(some, all + (size_t) 3 * vocab, vocab * sizeof(float)) == 0
              && memcmp(some + vocab, all + (size_t) 7 * vocab, vocab * sizeof(float)) == 0,
              "%s: the logits of rows 3 and 7 alone equal theirs with every row's computed",
              model_name);
        /* a batch wanting no logits (a chunk mid-prompt), then both decode */
        e[0] = (qwen_batch_entry) { ids[1], 0, 5, 0, 1 };
        e[1] = (qwen_batch_entry) { ids[2], 1, 3, 0, 1 };
        CHECK(qwen_forward(full, e, 2, NULL, err, sizeof(err)) == 0, "%s", err);
        CHECK(qwen_forward(part, e, 2, NULL, err, sizeof(err)) == 0, "%s", err);
        e[0] = (qwen_batch_entry) { ids[4], 0, 6, 1, 0 };
        e[1] = (qwen_batch_entry) { ids[5], 1, 4, 1, 0 };
        r = qwen_forward(full, e, 2, dec_all, err, sizeof(err));
        r |= qwen_forward(part, e, 2, dec_some, err, sizeof(err));
        CHECK(r == 0 && memcmp(dec_all, dec_some, (size_t) 2 * vocab * sizeof(float)) == 0,
              "%s: decoding after a batch without logits matches", model_name);
    }
    free(all);
    free(some);
    free(dec_all);
    free(dec_some);
    qwen_ctx_free(full);
    qwen_ctx_free(part);
    qwen_model_free(m);
}

/* Batch invariance at the logits on the generated files (real vocabulary):
 * five sequences, so 4-token and 2 x 4 kernels and single dots all run. */
static void
test_decode_batch_invariance(const char *model_name, const char *kern)
{
    enum { NS = 5, NP = 7 };
    qwen_model *m = test_load_model(model_name);
    int32_t     prompts[NS][NP];
    int         vocab, s, bad;

    if (m == NULL) {
        return;
    }
    vocab = qwen_model_config(m)->vocab_size;
    for (s = 0; s < NS; s++) {
        make_prompt(prompts[s], NP, 11 + s, vocab);
    }
    bad = decode_batch_mismatches(m, kern, vocab, NS, NP, &prompts[0][0]);
    CHECK(bad == 0, "%s, %s kernels: %d of %d logits of a 5-sequence decode batch differ "
          "from decoding alone", model_name, kern ? kern : qwen_kernels_default(), bad,
          NS * vocab);
    qwen_model_free(m);
}

/* The largest difference between the softmax probabilities of two rows
 * of logits. */
static double
softmax_diff(const float *a, const float *b, int vocab)
{
    double ma = -INFINITY, mb = -INFINITY, sa = 0.0, sb = 0.0, worst = 0.0;
    int    i;

    for (i = 0; i < vocab; i++) {
        ma = fmax(ma, a[i]);
        mb = fmax(mb, b[i]);
    }
    for (i = 0; i < vocab; i++) {
        sa += exp(a[i] - ma);
        sb += exp(b[i] - mb);
    }
    for (i = 0; i < vocab; i++) {
        worst = fmax(worst, fabs(exp(a[i] - ma) / sa - exp(b[i] - mb) / sb));
    }
    return worst;
}

/* A prompt then `steps` given tokens (forced: NULL for greedy decoding)
 * in a fresh context with KV format fmt: the logits of the prompt's last
 * token and of each step into logits ([steps + 1][vocab]), the argmax of
 * each into out[steps + 1]. */
static int
decode_logits(const qwen_model *m, const char *fmt, const int32_t *ids, int n,
              const int32_t *forced, int steps, int32_t *out, float *logits)
{
    const char *saved = test_kv_format;
    qwen_ctx   *ctx;
    int         vocab = qwen_model_config(m)->vocab_size, s, rc = -1;
    float      *all = malloc((size_t) n * vocab * sizeof(float));
    char        err[QWEN_ERR_LEN];

    test_kv_format = fmt;
    ctx = ctx_for(m, 2, 1, n + steps, 32, NULL);
    test_kv_format = saved;
    if (ctx == NULL || all == NULL || run_all_logits(ctx, ids, n, 32, 0, all, vocab) != 0) {
        goto done;
    }
    CHECK(strcmp(qwen_ctx_kv_format(ctx), fmt) == 0, "a %s KV cache", fmt);
    memcpy(logits, all + (size_t) (n - 1) * vocab, (size_t) vocab * sizeof(float));
    out[0] = qwen_argmax(logits, vocab);
    for (s = 1; s <= steps; s++) {
        qwen_batch_entry b = { forced ? forced[s - 1] : out[s - 1], 0, n + s - 1, 1, 0 };

        if (qwen_forward(ctx, &b, 1, logits + (size_t) s * vocab, err, sizeof(err)) != 0) {
            CHECK(0, "forward: %s", err);
            goto done;
        }
        out[s] = qwen_argmax(logits + (size_t) s * vocab, vocab);
    }
    rc = 0;
done:
    free(all);
    qwen_ctx_free(ctx);
    return rc;
}

/*
 * A KV format against f16 on a model's greedy decoding, for a short and a
 * longer prompt. f16's greedy tokens are fed to both (teacher forcing), so
 * every step compares the same inputs: the largest difference of any
 * token's probability (the drift, within drift_bound) and of any logit
 * (relative to the largest), and the argmax, which must be f16's wherever
 * f16's top two logits are more than a tenth of the largest apart (no
 * near tie). Free-running greedy decoding with fmt is reported: how many
 * steps its tokens follow f16's.
 */
static void
test_kv_drift(const char *model_name, const char *fmt, double drift_bound, double *drift_out)
{
    enum { STEPS = 32, MAX_PROMPT = 160 };
    static const int lens[] = { 12, MAX_PROMPT };
    qwen_model *m = test_load_model(model_name);
    int32_t     ids[MAX_PROMPT], ta[STEPS + 1], tb[STEPS + 1], tc[STEPS + 1];
    float      *la, *lb;
    double      drift = 0.0, lerr = 0.0;
    int         vocab, pi, s, i, decided = 0, agree = 0, follow[2] = { 0, 0 };

    if (m == NULL) {
        return;
    }
    vocab = qwen_model_config(m)->vocab_size;
    la = malloc((size_t) (STEPS + 1) * vocab * sizeof(float));
    lb = malloc((size_t) (STEPS + 1) * vocab * sizeof(float));
    for (pi = 0; pi < 2 && la != NULL && lb != NULL; pi++) {
        make_prompt(ids, lens[pi], 41 + pi, vocab);
        if (decode_logits(m, "f16", ids, lens[pi], NULL, STEPS, ta, la) != 0
            || decode_logits(m, fmt, ids, lens[pi], ta, STEPS, tb, lb) != 0)
        {
            break;
        }
        for (s = 0; s <= STEPS; s++) {
            const float *a = la + (size_t) s * vocab, *b = lb + (size_t) s * vocab;
            double       top1 = -INFINITY, top2 = -INFINITY, big = 0.0, e = 0.0;

            for (i = 0; i < vocab; i++) {
                big = fmax(big, fabs(a[i]));
                e = fmax(e, fabs((double) a[i] - b[i]));
                if (a[i] > top1) {
                    top2 = top1;
                    top1 = a[i];
                } else if (a[i] > top2) {
                    top2 = a[i];
                }
            }
            lerr = fmax(lerr, e / big);
            drift = fmax(drift, softmax_diff(a, b, vocab));
            if (top1 - top2 > 0.1 * big) {
                decided++;
                agree += ta[s] == tb[s];
                CHECK(ta[s] == tb[s], "%s, prompt of %d, step %d: the %s KV cache's argmax %d "
                      "differs from f16's %d (margin %.3g of the largest logit)", model_name,
                      lens[pi], s, fmt, tb[s], ta[s], (top1 - top2) / big);
            }
        }
        if (decode_logits(m, fmt, ids, lens[pi], NULL, STEPS, tc, lb) == 0) {
            while (follow[pi] <= STEPS && tc[follow[pi]] == ta[follow[pi]]) {
                follow[pi]++;
            }
        }
    }
    printf("%s: %s vs f16 KV cache, prompts of %d and %d tokens + %d steps of f16's greedy "
           "tokens: probabilities within %.3g, logits within %.3g of the largest, argmax the "
           "same at %d of %d clear steps; greedy alone follows f16's tokens for %d and %d of "
           "%d\n", model_name, fmt, lens[0], lens[1], STEPS, drift, lerr, agree, decided,
           follow[0], follow[1], STEPS + 1);
    CHECK(drift < drift_bound, "%s: %s vs f16 KV cache: probabilities differ by %.3g (bound %g)",
          model_name, fmt, drift, drift_bound);
    *drift_out = fmax(*drift_out, drift);
    free(la);
    free(lb);
    qwen_model_free(m);
}

static void
test_forward_errors(void)
{
    qwen_model      *m = test_load_model("tiny-f32.gguf");
    qwen_ctx        *ctx;
    float           *logits;
    char             err[QWEN_ERR_LEN];
    qwen_batch_entry e;
    qwen_ctx_params  p = qwen_ctx_default_params();
    p.n_threads = 1;
    p.n_seqs = 1;
    p.n_ctx = 1 << 30;
    p.n_batch = 1;

    if (m == NULL) {
        return;
    }
    CHECK(qwen_ctx_new(m, &p, err, sizeof(err)) == NULL && strstr(err, "exceeds"),
          "a context beyond max_position_embeddings must be refused: %s", err);
    p.n_ctx = 8;
    p.kernels = "no-such-isa";
    CHECK(qwen_ctx_new(m, &p, err, sizeof(err)) == NULL && strstr(err, "no-such-isa"),
          "unknown kernels must be refused: %s", err);
    p.kernels = "scalar";
    p.kv_format = "bf16";
    CHECK(qwen_ctx_new(m, &p, err, sizeof(err)) == NULL && strstr(err, "\"bf16\""),
          "a KV format the kernels lack must be refused: %s", err);
    p.kernels = NULL;
    p.kv_format = "int3";
    CHECK(qwen_ctx_new(m, &p, err, sizeof(err)) == NULL && strstr(err, "int3"),
          "an unknown KV format must be refused: %s", err);
    ctx = ctx_for(m, 1, 1, 8, 2, NULL);
    logits = malloc((size_t) qwen_model_config(m)->vocab_size * sizeof(float));
    e = (qwen_batch_entry) { qwen_model_config(m)->vocab_size, 0, 0, 1, 0 };
    CHECK(qwen_forward(ctx, &e, 1, logits, err, sizeof(err)) != 0 && strstr(err, "vocabulary"),
          "token id past the vocabulary: %s", err);
    e = (qwen_batch_entry) { 1, 1, 0, 1, 0 };
    CHECK(qwen_forward(ctx, &e, 1, logits, err, sizeof(err)) != 0 && strstr(err, "sequence"),
          "bad sequence: %s", err);
    e = (qwen_batch_entry) { 1, 0, 8, 1, 0 };
    CHECK(qwen_forward(ctx, &e, 1, logits, err, sizeof(err)) != 0 && strstr(err, "position"),
          "position past the context: %s", err);
    CHECK(qwen_forward(ctx, &e, 3, logits, err, sizeof(err)) != 0 && strstr(err, "batch"),
          "batch larger than n_batch: %s", err);
    free(logits);
    qwen_ctx_free(ctx);
    qwen_model_free(m);
}

/* Whether a context of tiny-f32 with kv_format fmt gets format want. */
static int
kv_format_supported(const char *fmt, const char *want)
{
    qwen_model     *m = test_load_model("tiny-f32.gguf");
    qwen_ctx_params p = qwen_ctx_default_params();
    p.n_threads = 1;
    p.n_seqs = 1;
    p.n_ctx = 16;
    p.n_batch = 4;
    p.kv_format = fmt;
    char            err[QWEN_ERR_LEN];
    qwen_ctx       *c = m ? qwen_ctx_new(m, &p, err, sizeof(err)) : NULL;
    int             ok = c != NULL && strcmp(qwen_ctx_kv_format(c), want) == 0;

    if (c == NULL && m != NULL) {
        CHECK(strstr(err, "KV cache format") != NULL, "kv format refusal names it: %s", err);
    }
    CHECK(c == NULL || qwen_kv_format_available(fmt), "%s works, so it is available", fmt);
    qwen_ctx_free(c);
    qwen_model_free(m);
    return ok;
}

int
main(void)
{
    models_dir = test_models_dir();
    if (models_dir == NULL) {
        TEST_MAIN_END();
    }
    /* F32 weights stay on the dot kernels and auto gives them the f32 KV
     * cache: nothing rounds what the reference keeps but float sums */
    CHECK(kv_format_supported("auto", "f32"), "auto: an f32 KV cache for F32 weights");
    test_against_reference("tiny-f32.gguf", "tiny-f32-hf", 1e-3, 1e-3);
    /* BF16 weights: prompts take the BF16 GEMM where the CPU has one, so
     * activations are rounded to BF16 too (as a BF16 framework does) */
    test_against_reference("tiny-bf16.gguf", "tiny-bf16-hf", 4e-2, 0);
    test_formats_agree();
    /* results must not depend on what shares a batch: F32 (dot kernels
     * only) and BF16 (prompts through the prefill GEMM) */
    test_interleaved_sequences("tiny-f32.gguf");
    test_interleaved_sequences("tiny-bf16.gguf");
    /* past the last layer's attention only the rows whose logits are wanted */
    test_logit_rows_only("tiny-bf16.gguf");
    test_logit_rows_only("small-q4_k_m.gguf");
    test_logit_rows_only("tiny-q8_0.gguf");
    /* the same at the logits for every quantized dot path (4-token, 2 x 4
     * tiles, single), with the scalar table's 2 x 4 too */
    test_decode_batch_invariance("small-q4_k_m.gguf", NULL);
    test_decode_batch_invariance("small-q4_k_m.gguf", "scalar");
    test_decode_batch_invariance("tiny-q8_0.gguf", NULL);
    test_decode_batch_invariance("tiny-q8_0.gguf", "scalar");
    test_tokens_any_threads("small-q4_k_m.gguf", NULL, 0);
    test_tokens_any_threads("small-q4_k_m.gguf", NULL, 1);
    test_tokens_any_threads("tiny-q8_0.gguf", NULL, 0);
    test_tokens_any_threads("tiny-q8_0.gguf", NULL, 1);
    test_tokens_any_threads("tiny-bf16.gguf", NULL, 0);
    test_tokens_any_threads("tiny-bf16.gguf", NULL, 1);
    if (qwen_kernels_available("avx2")) {
        test_tokens_any_threads("small-q4_k_m.gguf", "avx2", 0);
        test_tokens_any_threads("small-q4_k_m.gguf", "avx2", 1);
        test_tokens_any_threads("tiny-q8_0.gguf", "avx2", 0);
        test_tokens_any_threads("tiny-q8_0.gguf", "avx2", 1);
    }
    /* the other KV formats forced on F32 weights: their rounding alone.
     * f16 keeps every logit within 1% of the largest */
    CHECK(kv_format_supported("f16", "f16"), "an f16 KV cache everywhere");
    test_kv_format = "f16";
    test_against_reference("tiny-f32.gguf", "tiny-f32-hf", 1e-2, 0);
    test_kv_format = NULL;
    /* the BF16 KV cache (picked for BF16 and quantized weights where the
     * kernels have it) */
    if (kv_format_supported("bf16", "bf16")) {
        test_kv_format = "bf16";
        test_against_reference("tiny-f32.gguf", "tiny-f32-hf", 3e-2, 0);
        test_interleaved_sequences("tiny-f32.gguf");
        test_kv_format = NULL;
    } else {
        printf("bf16 KV cache: not supported by the %s kernels\n", qwen_kernels_default());
    }
    /* q8_0: 8-bit K and V (and query): logits within ~3% of the largest
     * (bf16 ~1.4%, f16 0.16%); also batch invariant */
    CHECK(kv_format_supported("q8_0", "q8_0"), "a q8_0 KV cache everywhere");
    test_kv_format = "q8_0";
    test_against_reference("tiny-f32.gguf", "tiny-f32-hf", 4e-2, 0);
    test_interleaved_sequences("tiny-f32.gguf");
    test_interleaved_sequences("tiny-q8_0.gguf");
    test_kv_format = NULL;
    /* q8_0 against f16 on every test model's decoding: the probability
     * drift and the argmax where it is clear. These random models sit
     * near ties at most steps, where any rounding changes greedy tokens:
     * f32 against f16 is measured alongside as the yardstick (f16's own
     * drift), and each of q8_0's roundings alone (K, V or the query)
     * changes them too */
    {
        static const char *models[] = { "tiny-f32.gguf", "tiny-bf16.gguf", "tiny-q8_0.gguf",
                                        "tiny-q4_k_m.gguf", "small-f32.gguf",
                                        "small-q4_k_m.gguf" };
        double             drift = 0.0, base = 0.0;
        size_t             i;

        for (i = 0; i < sizeof(models) / sizeof(models[0]); i++) {
            test_kv_drift(models[i], "f32", 0.5, &base);
            test_kv_drift(models[i], "q8_0", 0.5, &drift);
        }
        printf("KV cache vs f16 over the test models: q8_0's probabilities within %.3g, "
               "f32's within %.3g\n", drift, base);
    }
    test_forward_errors();
    TEST_MAIN_END();
}
