/*
 * qwen.c - command-line tool over the engine: `logits` (greedy steps with
 * top probabilities, used by tests), `bench` (prefill/decode speed),
 * `run` (chat with the model), `info`, and the tokenizer commands
 * (`tokenize`, `detokenize`, `template`) from qwen_tok_cmds.c.
 */
#include "qwen.h"
#include "qwen_cmds.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

typedef struct {
    const char *model;
    const char *ids;
    const char *prompt;
    const char *kernels;
    const char *kv_format;
    int         n_predict;
    int         n_prompt;
    int         depth;
    int         top;
    int         threads;
    int         n_seqs;
    int         n_ctx;
    int         think;
    int         json_only;
    int         repeat;
    int         no_warmup;
    qwen_sampling_params sampling;   /* qwen run: Qwen3's defaults, --temp... */
} cli_opts;

static void
usage(FILE *f)
{
    fprintf(f,
        "usage: qwen COMMAND [options]\n"
        "  logits     -m MODEL --ids 1,2,3 [-n 24] [--top 5] [-t THREADS]\n"
        "             greedy steps; one JSON line per token with top probabilities\n"
        "  bench      -m MODEL [-p 200] [-n 200] [-d 0] [-t THREADS] [-s SEQS] [--repeat N]\n"
        "             [--no-warmup]   prefill and decode speed (text and one JSON\n"
        "             line) after an untimed prompt, as llama-bench; with --repeat\n"
        "             the best of N runs (a shared machine is noisy); --no-warmup\n"
        "             skips the untimed prompt (instruction counts by difference);\n"
        "             -d: both after DEPTH tokens already in context (llama-bench -d)\n"
        "  run        -m MODEL -p TEXT [-n 256] [--temp 0.7] [--top-k 20] [--top-p 0.8]\n"
        "             [--seed S] [--no-think]   chat with the model\n"
        "  info       -m MODEL\n"
        "  membw      [-t THREADS] [--mb 1024]   memory read bandwidth (GB/s)\n"
        "  tokenize   -m MODEL --text-file F\n"
        "  detokenize -m MODEL --ids 1,2,3\n"
        "  template   -m MODEL --messages F.json [--no-think] [--tools T.json]\n"
        "MODEL is a .gguf file or a Hugging Face directory.\n"
        "Common: --kernels NAME to force a kernel set (scalar, avx2, avx2_vnni, avx512,\n"
        "avx512_vnni, neon, neon_dotprod, neon_i8mm, neon_bf16: those this CPU runs);\n"
        "--kv auto|f32|f16|bf16|q8_0 the KV cache format (auto: f32 for F32 weights, bf16 where the kernels have it,\n"
        "else f16; q8_0 takes half of f16's bytes).\n");
}

static int
parse_int(const char *s, const char *flag, int lo, int hi, int *out)
{
    char *end;
    long  v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) {
        fprintf(stderr, "qwen: %s needs an integer from %d to %d, got '%s'\n", flag, lo, hi, s);
        return -1;
    }
    *out = (int) v;
    return 0;
}

static int
parse_float(const char *s, const char *flag, float *out)
{
    char *end;

    errno = 0;
    *out = strtof(s, &end);
    if (errno || *end || end == s || !isfinite(*out)) {
        fprintf(stderr, "qwen: %s needs a number, got '%s'\n", flag, s);
        return -1;
    }
    return 0;
}

static int
parse_opts(int argc, char **argv, cli_opts *o)
{
    int i, v;

    memset(o, 0, sizeof(*o));
    o->n_predict = -1;
    o->n_prompt = 200;
    o->top = 5;
    o->threads = 2;
    o->n_seqs = 1;
    o->think = 1;
    o->sampling = qwen_sampling_default_params();
    o->repeat = 1;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        int         takes = 1;

        if (strcmp(a, "--no-think") == 0) { o->think = 0; continue; }
        if (strcmp(a, "--json") == 0) { o->json_only = 1; continue; }
        if (strcmp(a, "--no-warmup") == 0) { o->no_warmup = 1; continue; }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) { usage(stdout); exit(0); }
        if (val == NULL) {
            fprintf(stderr, "qwen: option %s needs a value\n", a);
            return -1;
        }
        if (strcmp(a, "-m") == 0 || strcmp(a, "--model") == 0) o->model = val;
        else if (strcmp(a, "--ids") == 0) o->ids = val;
        else if (strcmp(a, "--kernels") == 0) o->kernels = val;
        else if (strcmp(a, "--kv") == 0) o->kv_format = val;
        else if (strcmp(a, "-n") == 0) { if (parse_int(val, a, 0, 1 << 20, &o->n_predict)) return -1; }
        else if (strcmp(a, "-p") == 0) {
            /* bench: prompt length; run: prompt text */
            if (strcmp(argv[0], "bench") == 0) {
                if (parse_int(val, a, 1, 1 << 20, &o->n_prompt)) return -1;
            } else {
                o->prompt = val;
            }
        }
        else if (strcmp(a, "-d") == 0 || strcmp(a, "--depth") == 0) {
            if (parse_int(val, a, 0, 1 << 20, &o->depth)) return -1;
        }
        else if (strcmp(a, "--top") == 0) { if (parse_int(val, a, 1, 100, &o->top)) return -1; }
        else if (strcmp(a, "-t") == 0 || strcmp(a, "--threads") == 0) {
            if (parse_int(val, a, 1, 256, &o->threads)) return -1;
        }
        else if (strcmp(a, "-s") == 0 || strcmp(a, "--seqs") == 0) {
            if (parse_int(val, a, 1, 256, &o->n_seqs)) return -1;
        }
        else if (strcmp(a, "-c") == 0 || strcmp(a, "--ctx") == 0) {
            if (parse_int(val, a, 1, 1 << 24, &o->n_ctx)) return -1;
        }
        else if (strcmp(a, "--repeat") == 0) { if (parse_int(val, a, 1, 100, &o->repeat)) return -1; }
        else if (strcmp(a, "--temp") == 0) { if (parse_float(val, a, &o->sampling.temperature)) return -1; }
        else if (strcmp(a, "--top-p") == 0) { if (parse_float(val, a, &o->sampling.top_p)) return -1; }
        else if (strcmp(a, "--top-k") == 0) { if (parse_int(val, a, 0, 1 << 20, &o->sampling.top_k)) return -1; }
        else if (strcmp(a, "--seed") == 0) {
            if (parse_int(val, a, 0, 2147483647, &v)) return -1;
            o->sampling.seed = (uint64_t) v;
        }
        else {
            fprintf(stderr, "qwen %s: unknown option %s\n", argv[0], a);
            return -1;
        }
        i += takes;
    }
    if (o->model == NULL) {
        fprintf(stderr, "qwen %s: -m MODEL is required\n", argv[0]);
        return -1;
    }
    return 0;
}

static qwen_model *
load_model(const char *path, const char *kernels)
{
    qwen_model *m;
    char        err[QWEN_ERR_LEN];

    if ((m = qwen_model_load_for(path, kernels, err, sizeof(err))) == NULL) {
        fprintf(stderr, "qwen: cannot load model: %s\n", err);
        return NULL;
    }
    return m;
}

static qwen_ctx *
make_ctx(const qwen_model *m, const cli_opts *o, int n_ctx, int n_batch)
{
    qwen_ctx_params p = qwen_ctx_default_params();
    qwen_ctx       *ctx;
    char            err[QWEN_ERR_LEN];

    p.n_threads = o->threads;
    p.n_seqs = o->n_seqs;
    p.n_ctx = n_ctx;
    p.n_batch = n_batch;
    p.kernels = o->kernels;
    p.kv_format = o->kv_format;
    ctx = qwen_ctx_new(m, &p, err, sizeof(err));
    if (ctx == NULL) {
        fprintf(stderr, "qwen: %s\n", err);
    }
    return ctx;
}

static int
parse_ids(const char *s, int32_t **ids, int *n)
{
    const char *p = s;
    char       *end;
    long        v;
    int         cap = 16;

    *n = 0;
    *ids = malloc((size_t) cap * sizeof(int32_t));
    if (*ids == NULL) {
        return -1;
    }
    while (*p) {
        errno = 0;
        v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX || (*end != ',' && *end != '\0')) {
            fprintf(stderr, "qwen: --ids must be comma-separated token ids, got '%s'\n", s);
            free(*ids);
            return -1;
        }
        if (*n == cap) {
            int32_t *g = realloc(*ids, (size_t) cap * 2 * sizeof(int32_t));
            if (g == NULL) {
                free(*ids);
                return -1;
            }
            *ids = g;
            cap *= 2;
        }
        (*ids)[(*n)++] = (int32_t) v;
        p = *end == ',' ? end + 1 : end;
    }
    if (*n == 0) {
        fprintf(stderr, "qwen: --ids is empty\n");
        free(*ids);
        return -1;
    }
    return 0;
}

/* Feed n tokens of sequence seq starting at pos, in batches; logits of the
 * last one into logits. is_prompt: prompt tokens (batched prefill kernels)
 * or one generated token fed back. */
static int
feed(qwen_ctx *ctx, int n_batch, int seq, int pos, const int32_t *ids, int n,
     int is_prompt, float *logits)
{
    qwen_batch_entry *b = malloc((size_t) n_batch * sizeof(*b));
    char              err[QWEN_ERR_LEN];
    int               i, k, done = 0;

    if (b == NULL) {
        return -1;
    }
    while (done < n) {
        k = n - done < n_batch ? n - done : n_batch;
        for (i = 0; i < k; i++) {
            b[i].token = ids[done + i];
            b[i].seq = seq;
            b[i].pos = pos + done + i;
            b[i].want_logits = done + i == n - 1;
            b[i].prompt = is_prompt;
        }
        if (qwen_forward(ctx, b, k, logits, err, sizeof(err)) != 0) {
            fprintf(stderr, "qwen: %s\n", err);
            free(b);
            return -1;
        }
        done += k;
    }
    free(b);
    return 0;
}

/* ------------------------------------------------------------- logits */

static int
cmd_logits(int argc, char **argv)
{
    cli_opts    o;
    qwen_model *m;
    qwen_ctx   *ctx;
    int32_t    *ids, next;
    int         n_ids, step, i, j, vocab, rc = 1;
    float      *logits = NULL, mx;
    double      sum;
    int        *top = NULL;

    if (parse_opts(argc, argv, &o) != 0) {
        return 2;
    }
    if (o.ids == NULL) {
        fprintf(stderr, "qwen logits: --ids is required\n");
        return 2;
    }
    if (o.n_predict < 0) {
        o.n_predict = 24;
    }
    if (parse_ids(o.ids, &ids, &n_ids) != 0) {
        return 2;
    }
    m = load_model(o.model, o.kernels);
    if (m == NULL) {
        free(ids);
        return 1;
    }
    vocab = qwen_model_config(m)->vocab_size;
    for (i = 0; i < n_ids; i++) {
        if (ids[i] >= vocab) {
            fprintf(stderr, "qwen logits: token id %d is outside the vocabulary (%d)\n",
                    ids[i], vocab);
            goto done;
        }
    }
    if (o.top > vocab) {
        o.top = vocab;
    }
    ctx = make_ctx(m, &o, n_ids + o.n_predict + 1, n_ids < 512 ? n_ids : 512);
    logits = malloc((size_t) vocab * sizeof(float));
    top = malloc((size_t) o.top * sizeof(int));
    if (ctx == NULL || logits == NULL || top == NULL) {
        qwen_ctx_free(ctx);
        goto done;
    }
    if (feed(ctx, n_ids < 512 ? n_ids : 512, 0, 0, ids, n_ids, 1, logits) != 0) {
        qwen_ctx_free(ctx);
        goto done;
    }
    for (step = 0; step < o.n_predict; step++) {
        /* softmax of the raw logits over the whole vocabulary */
        mx = logits[qwen_argmax(logits, vocab)];
        sum = 0.0;
        for (i = 0; i < vocab; i++) {
            sum += exp((double) logits[i] - mx);
        }
        /* top entries by selection: o.top is small */
        for (j = 0; j < o.top; j++) {
            int best = -1;
            for (i = 0; i < vocab; i++) {
                int taken = 0, t;
                for (t = 0; t < j; t++) {
                    taken |= top[t] == i;
                }
                if (!taken && (best < 0 || logits[i] > logits[best])) {
                    best = i;
                }
            }
            top[j] = best;
        }
        next = top[0];
        printf("{\"step\":%d,\"id\":%d,\"top\":[", step, next);
        for (j = 0; j < o.top; j++) {
            printf("%s{\"id\":%d,\"p\":%.6g}", j ? "," : "", top[j],
                   exp((double) logits[top[j]] - mx) / sum);
        }
        printf("]}\n");
        fflush(stdout);
        if (step + 1 < o.n_predict
            && feed(ctx, 1, 0, n_ids + step, &next, 1, 0, logits) != 0)
        {
            qwen_ctx_free(ctx);
            goto done;
        }
    }
    qwen_ctx_free(ctx);
    rc = 0;
done:
    free(top);
    free(logits);
    free(ids);
    qwen_model_free(m);
    return rc;
}

/* -------------------------------------------------------------- bench */

static int
cmd_bench(int argc, char **argv)
{
    cli_opts          o;
    qwen_model       *m;
    qwen_ctx         *ctx = NULL;
    int32_t          *ids = NULL, *depth_ids = NULL, *next = NULL;
    qwen_batch_entry *b = NULL;
    float            *logits = NULL;
    int               vocab, i, s, step, n_batch, rep, rc = 1;
    double            t0, t, t_prefill, t_decode;
    char              err[QWEN_ERR_LEN];
    const qwen_config *c;

    if (parse_opts(argc, argv, &o) != 0) {
        return 2;
    }
    if (o.n_predict < 0) {
        o.n_predict = 200;
    }
    m = load_model(o.model, o.kernels);
    if (m == NULL) {
        return 1;
    }
    c = qwen_model_config(m);
    vocab = c->vocab_size;
    n_batch = o.n_prompt < 512 ? o.n_prompt : 512;
    if (n_batch < o.n_seqs) {
        n_batch = o.n_seqs;
    }
    ctx = make_ctx(m, &o, o.depth + o.n_prompt + o.n_predict + 1, n_batch);
    ids = malloc((size_t) o.n_prompt * sizeof(int32_t));
    depth_ids = malloc((size_t) (o.depth > 0 ? o.depth : 1) * sizeof(int32_t));
    next = malloc((size_t) o.n_seqs * sizeof(int32_t));
    b = malloc((size_t) o.n_seqs * sizeof(*b));
    logits = malloc((size_t) o.n_seqs * vocab * sizeof(float));
    if (ctx == NULL || ids == NULL || depth_ids == NULL || next == NULL || b == NULL
        || logits == NULL)
    {
        goto done;
    }
    /* a deterministic spread of ordinary token ids */
    for (i = 0; i < o.n_prompt; i++) {
        ids[i] = (int32_t) ((1000 + (uint32_t) i * 7919u) % (uint32_t) (vocab < 150000 ? vocab : 150000));
    }
    /* -d: the context every sequence already holds (the same spread, on
     * from the prompt's ids), untimed; the prompt and the steps follow it,
     * each repetition writing its positions again */
    for (i = 0; i < o.depth; i++) {
        depth_ids[i] = (int32_t) ((1000 + (uint32_t) (o.n_prompt + i) * 7919u)
                                  % (uint32_t) (vocab < 150000 ? vocab : 150000));
    }
    for (s = 0; o.depth > 0 && s < o.n_seqs; s++) {
        if (feed(ctx, n_batch, s, 0, depth_ids, o.depth, 1, logits) != 0) {
            goto done;
        }
    }

    /* one untimed prompt first, as llama-bench's warm-up run: the figures
     * are for warm weights and buffers (a server's context has served a
     * request before the next one; the first prompt of a fresh context
     * faults in its activation and KV pages: 20-25% of a 200-token
     * prefill measured here) */
    if (!o.no_warmup && feed(ctx, n_batch, 0, o.depth, ids, o.n_prompt, 1, logits) != 0) {
        goto done;
    }

    t_prefill = t_decode = 1e30;
    for (rep = 0; rep < o.repeat; rep++) {
        /* prefill: every sequence gets the prompt; time the first one */
        t0 = qwen_cli_now_s();
        if (feed(ctx, n_batch, 0, o.depth, ids, o.n_prompt, 1, logits) != 0) {
            goto done;
        }
        t = qwen_cli_now_s() - t0;
        t_prefill = t < t_prefill ? t : t_prefill;
        next[0] = qwen_argmax(logits, vocab);
        for (s = 1; s < o.n_seqs; s++) {
            if (feed(ctx, n_batch, s, o.depth, ids, o.n_prompt, 1, logits) != 0) {
                goto done;
            }
            next[s] = qwen_argmax(logits, vocab);
        }

        /* decode: all sequences step together, one batch per step */
        t0 = qwen_cli_now_s();
        for (step = 0; step < o.n_predict; step++) {
            for (s = 0; s < o.n_seqs; s++) {
                b[s].token = next[s];
                b[s].seq = s;
                b[s].pos = o.depth + o.n_prompt + step;
                b[s].want_logits = 1;
                b[s].prompt = 0;
            }
            if (qwen_forward(ctx, b, o.n_seqs, logits, err, sizeof(err)) != 0) {
                fprintf(stderr, "qwen: %s\n", err);
                goto done;
            }
            for (s = 0; s < o.n_seqs; s++) {
                next[s] = qwen_argmax(logits + (size_t) s * vocab, vocab);
            }
        }
        t = qwen_cli_now_s() - t0;
        t_decode = t < t_decode ? t : t_decode;
    }

    if (!o.json_only) {
        qwen_ctx_params kp = qwen_ctx_default_params();

        printf("model:    %s (%s, %d layers, hidden %d)\n", o.model, qwen_model_describe(m),
               c->n_layers, c->hidden_size);
        kp.n_seqs = o.n_seqs;
        kp.n_ctx = o.depth + o.n_prompt + o.n_predict + 1;
        kp.kernels = o.kernels;
        kp.kv_format = qwen_ctx_kv_format(ctx);
        printf("threads:  %d   sequences: %d   KV cache: %s, %.1f MiB\n", o.threads, o.n_seqs,
               qwen_ctx_kv_format(ctx), qwen_kv_cache_bytes(m, &kp) / 1048576.0);
        printf("prefill:  %d tokens in %.3f s = %.1f tok/s", o.n_prompt, t_prefill,
               o.n_prompt / t_prefill);
        printf(o.depth > 0 ? " (after %d tokens of context)\n" : "\n", o.depth);
        printf("decode:   %d steps x %d seqs in %.3f s = %.1f tok/s per sequence, "
               "%.1f tok/s total\n", o.n_predict, o.n_seqs, t_decode,
               o.n_predict / t_decode, o.n_predict * o.n_seqs / t_decode);
    }
    printf("{\"model\":\"%s\",\"weights\":\"%s\",\"threads\":%d,\"seqs\":%d,"
           "\"n_prompt\":%d,\"n_predict\":%d,\"depth\":%d,\"prefill_tok_s\":%.2f,"
           "\"decode_tok_s\":%.2f,\"decode_total_tok_s\":%.2f,\"weight_bytes\":%zu,\"kv\":\"%s\"}\n",
           o.model, qwen_model_describe(m), o.threads, o.n_seqs, o.n_prompt, o.n_predict, o.depth,
           o.n_prompt / t_prefill, o.n_predict / t_decode,
           o.n_predict * o.n_seqs / t_decode, qwen_model_weight_bytes(m),
           qwen_ctx_kv_format(ctx));
    rc = 0;
done:
    qwen_ctx_free(ctx);
    free(ids);
    free(depth_ids);
    free(next);
    free(b);
    free(logits);
    qwen_model_free(m);
    return rc;
}

/* ---------------------------------------------------------------- run */

static int
cmd_run(int argc, char **argv)
{
    cli_opts              o;
    qwen_model           *m;
    const qwen_tokenizer *tok;
    qwen_ctx             *ctx = NULL;
    qwen_sampler         *smp = NULL;
    qwen_chat_message     msg;
    qwen_tokens           toks = {0};
    qwen_detok            dt = {{0}, 0};
    char                 *prompt = NULL, err[QWEN_ERR_LEN], piece[256];
    size_t                plen;
    float                *logits = NULL;
    int32_t               next;
    int                   i, n_ctx, rc = 1;
    long                  w;

    if (parse_opts(argc, argv, &o) != 0) {
        return 2;
    }
    if (o.prompt == NULL) {
        fprintf(stderr, "qwen run: -p TEXT is required\n");
        return 2;
    }
    if (o.n_predict < 0) {
        o.n_predict = 256;
    }
    m = load_model(o.model, o.kernels);
    if (m == NULL) {
        return 1;
    }
    tok = qwen_model_tokenizer(m);
    if (tok == NULL) {
        fprintf(stderr, "qwen run: %s has no tokenizer (tokenizer.json or "
                "tokenizer.ggml.* metadata)\n", o.model);
        goto done;
    }
    msg.role = "user";
    msg.content = o.prompt;
    msg.reasoning_content = NULL;
    msg.tool_calls_json = NULL;
    if (qwen_chat_render(&msg, 1, NULL, 1, o.think, &prompt, &plen, err, sizeof(err)) != 0
        || qwen_tokenize(tok, prompt, plen, &toks, err, sizeof(err)) != 0)
    {
        fprintf(stderr, "qwen run: %s\n", err);
        goto done;
    }
    n_ctx = (int) toks.n + o.n_predict + 1;
    ctx = make_ctx(m, &o, n_ctx, toks.n < 512 ? (int) toks.n : 512);
    smp = qwen_sampler_new(&o.sampling, qwen_model_config(m)->vocab_size);
    logits = malloc((size_t) qwen_model_config(m)->vocab_size * sizeof(float));
    if (ctx == NULL || smp == NULL || logits == NULL) {
        goto done;
    }
    for (i = 0; i < (int) toks.n; i++) {
        qwen_sampler_accept(smp, toks.ids[i]);
    }
    if (feed(ctx, toks.n < 512 ? (int) toks.n : 512, 0, 0, toks.ids, (int) toks.n, 1,
             logits) != 0)
    {
        goto done;
    }
    for (i = 0; i < o.n_predict; i++) {
        next = qwen_sampler_sample(smp, logits);
        if (qwen_token_is_eog(tok, next)) {
            break;
        }
        qwen_sampler_accept(smp, next);
        w = qwen_detok_push(tok, &dt, next, piece, sizeof(piece));
        if (w > 0) {
            fwrite(piece, 1, (size_t) w, stdout);
            fflush(stdout);
        }
        if (i + 1 < o.n_predict
            && feed(ctx, 1, 0, (int) toks.n + i, &next, 1, 0, logits) != 0)
        {
            goto done;
        }
    }
    if (dt.n_pending > 0) {
        fputs("\xef\xbf\xbd", stdout);   /* ended inside a character: U+FFFD */
    }
    putchar('\n');
    rc = 0;
done:
    qwen_tokens_free(&toks);
    free(prompt);
    free(logits);
    qwen_sampler_free(smp);
    qwen_ctx_free(ctx);
    qwen_model_free(m);
    return rc;
}

/* -------------------------------------------------------------- membw */

typedef struct {
    const uint64_t *data;
    size_t          n;
    uint64_t        sum;
} membw_part;

static void *
membw_reader(void *arg)
{
    membw_part *p = arg;
    uint64_t    s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t      i;

    /* four independent sums so the loop is limited by loads, not adds */
    for (i = 0; i + 4 <= p->n; i += 4) {
        s0 += p->data[i];
        s1 += p->data[i + 1];
        s2 += p->data[i + 2];
        s3 += p->data[i + 3];
    }
    p->sum = s0 + s1 + s2 + s3;
    return NULL;
}

/* The best of 5 reads of an n-word buffer by t threads, GB/s; on
 * transparent huge pages (huge) or on 4 KiB pages; -1 if it cannot run */
static double
membw_run(size_t n, int threads, int huge, uint64_t *sink)
{
    pthread_t   th[64];
    membw_part  parts[64];
    uint64_t   *buf;
    size_t      per, i;
    double      t0, gbs, best = 0.0;
    int         rep, t;

    buf = mmap(NULL, n * sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
               -1, 0);
    if (buf == MAP_FAILED) {
        return -1.0;
    }
#ifdef MADV_HUGEPAGE
    (void) madvise(buf, n * sizeof(uint64_t), huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
#endif
    for (i = 0; i < n / 512; i++) {
        memset(buf + i * 512, (int) (i & 0xff), 512 * sizeof(uint64_t));
    }
    per = n / (size_t) threads;
    for (rep = 0; rep < 5; rep++) {
        t0 = qwen_cli_now_s();
        for (t = 0; t < threads; t++) {
            parts[t].data = buf + (size_t) t * per;
            parts[t].n = per;
            if (pthread_create(&th[t], NULL, membw_reader, &parts[t]) != 0) {
                while (--t >= 0) {
                    pthread_join(th[t], NULL);
                }
                munmap(buf, n * sizeof(uint64_t));
                return -1.0;
            }
        }
        for (t = 0; t < threads; t++) {
            pthread_join(th[t], NULL);
            *sink += parts[t].sum;
        }
        gbs = (double) (per * threads * sizeof(uint64_t)) / (qwen_cli_now_s() - t0) / 1e9;
        best = gbs > best ? gbs : best;
    }
    munmap(buf, n * sizeof(uint64_t));
    return best;
}

/* Memory read bandwidth with t threads over a buffer far larger than the
 * caches: the ceiling for decode, which reads every weight once per token.
 * The weights sit on transparent huge pages where the kernel gives them
 * (model.c's anon_alloc), and which pages read faster varies on this VM
 * from minute to minute: both are measured, and the ceiling is the better. */
static int
cmd_membw(int argc, char **argv)
{
    int         threads = 2, mb = 1024, i;
    size_t      n;
    double      huge, small;
    uint64_t    sink = 0;

    for (i = 1; i < argc; i++) {
        if (i + 1 < argc && strcmp(argv[i], "-t") == 0) {
            if (parse_int(argv[++i], "-t", 1, 64, &threads)) return 2;
        } else if (i + 1 < argc && strcmp(argv[i], "--mb") == 0) {
            if (parse_int(argv[++i], "--mb", 64, 65536, &mb)) return 2;
        } else {
            fprintf(stderr, "qwen membw: usage: membw [-t THREADS] [--mb SIZE]\n");
            return 2;
        }
    }
    n = (size_t) mb << 17;   /* MiB in uint64 */
    small = membw_run(n, threads, 0, &sink);
    huge = membw_run(n, threads, 1, &sink);
    if (small < 0 || huge < 0) {
        fprintf(stderr, "qwen membw: cannot allocate %d MiB or start %d threads\n", mb, threads);
        return 1;
    }
    printf("{\"threads\":%d,\"mib\":%d,\"read_gb_s\":%.2f,\"read_gb_s_4k\":%.2f,"
           "\"read_gb_s_huge\":%.2f,\"check\":%llu}\n", threads, mb,
           huge > small ? huge : small, small, huge, (unsigned long long) (sink & 1));
    return 0;
}

/* --------------------------------------------------------------- info */

static int
cmd_info(int argc, char **argv)
{
    cli_opts           o;
    qwen_model        *m;
    const qwen_config *c;

    if (parse_opts(argc, argv, &o) != 0) {
        return 2;
    }
    m = load_model(o.model, o.kernels);
    if (m == NULL) {
        return 1;
    }
    c = qwen_model_config(m);
    printf("{\"weights\":\"%s\",\"vocab_size\":%d,\"hidden_size\":%d,"
           "\"intermediate_size\":%d,\"n_layers\":%d,\"n_heads\":%d,\"n_kv_heads\":%d,"
           "\"head_dim\":%d,\"max_position_embeddings\":%d,\"rope_theta\":%g,"
           "\"rms_norm_eps\":%g,\"tied\":%s,\"tokenizer\":%s,\"weight_bytes\":%zu,"
           "\"packed_bytes\":%zu}\n",
           qwen_model_describe(m), c->vocab_size, c->hidden_size, c->intermediate_size,
           c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->max_position_embeddings,
           c->rope_theta, c->rms_norm_eps, c->tie_word_embeddings ? "true" : "false",
           qwen_model_tokenizer(m) ? "true" : "false", qwen_model_weight_bytes(m),
           qwen_model_packed_bytes(m));
    qwen_model_free(m);
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "logits") == 0) return cmd_logits(argc - 1, argv + 1);
    if (strcmp(argv[1], "bench") == 0) return cmd_bench(argc - 1, argv + 1);
    if (strcmp(argv[1], "run") == 0) return cmd_run(argc - 1, argv + 1);
    if (strcmp(argv[1], "info") == 0) return cmd_info(argc - 1, argv + 1);
    if (strcmp(argv[1], "membw") == 0) return cmd_membw(argc - 1, argv + 1);
    if (strcmp(argv[1], "tokenize") == 0) return qwen_cmd_tokenize(argc - 1, argv + 1);
    if (strcmp(argv[1], "detokenize") == 0) return qwen_cmd_detokenize(argc - 1, argv + 1);
    if (strcmp(argv[1], "template") == 0) return qwen_cmd_template(argc - 1, argv + 1);
    if (strcmp(argv[1], "grammar-bench") == 0) {
        return qwen_cmd_grammar_bench(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "qwen: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
