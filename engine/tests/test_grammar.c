/*
 * test_grammar.c - JSON-constrained decoding: the automaton accepts a corpus
 * of valid JSON (byte by byte and split into real tokens) and rejects
 * invalid prefixes; the filtered sampler picks only allowed tokens; and
 * generation on the tiny model with a grammar gives JSON that parses (or,
 * cut by max_tokens, a valid prefix), deterministically per seed. Also the
 * schema subset, and the per-step cost of constrained sampling.
 */
#include "test.h"
#include "qwen.h"

#include <jansson.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EOG_IM_END 151645
#define GEN_MAX    512

static double
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static qwen_model           *model;
static const qwen_tokenizer *tok;
static int                   vocab;

static const char *const valid_json[] = {
    "{}",
    "{ }",
    "{\"a\":1}",
    "{\"a\": -0.5e+10, \"b\": [1, 2.25, -3E-2, 0], \"c\": true, \"d\": null, \"e\": false}",
    "{\n  \"name\": \"Ada\",\n  \"tags\": [\"x\", \"y\"],\n  \"nested\": {\"k\": {}}\n}",
    "{\"esc\": \"quote \\\" back \\\\ slash \\/ \\b\\f\\n\\r\\t \\u00e9 \\u4E2D\"}",
    "{\"utf8\": \"caf\xC3\xA9 \xE4\xB8\xAD\xE6\x96\x87 \xF0\x9F\x98\x80\"}",
    "{\"arr\": [[], [[]], [{}], [1, [2, [3]]]], \"s\": \"\"}",
    "{\"n\": 123456789012345, \"f\": 0.000000000000001, \"z\": 0}",
    "  {\"lead\": \"whitespace\"}  ",
    "{\"k\":\"v\",\"k2\":{\"a\":[true,false,null]}}",
    "{\"code\": \"int main() { return 0; } <tag>\"}",
};

static const char *const invalid_json[] = {
    "[1, 2]",                 /* JSON mode: the top level is an object */
    "\"text\"",
    "42",
    "{,}",
    "{\"a\" 1}",
    "{\"a\":01}",
    "{\"a\":1,}",
    "{\"a\":[1,]}",
    "{\"a\":tru }",
    "{\"a\":-}",
    "{\"a\":1.}",
    "{\"a\":1e}",
    "{\"a\":.5}",
    "{\"a\":+1}",
    "{\"a\":\"\x01\"}",
    "{\"a\":\"\\x\"}",
    "{\"a\":\"\\u12G4\"}",
    "{\"a\":\"\\ud800\"}",
    "{\"a\":\"\\uDF",                 /* a surrogate is refused early: no dead end */
    "{\"a\":\"\\u0000\"}",
    "{\"a\":\"\xC0\x80\"}",
    "{\"a\":\"\xED\xA0\x80\"}",
    "{\"a\":\"\xF5\x80\x80\x80\"}",
    "{\"a\":\"\x80\"}",
    "{} {}",
    "{}x",
    "{\"a\":1]",
    "{\"a\":[1}",
    "{\"a\":1234567890123456}",
    "{\"a\":1e100}",
    "{                  }",   /* 18 spaces: whitespace is bounded */
    "{\n\n\n\"a\":1}",
    "{'a':1}",
    "{a:1}",
};

/* Feed text byte by byte; returns the index of the first rejected byte, or
 * -1 when every byte was taken. */
static long
feed_bytes(const qwen_grammar *g, const char *text, size_t len, int *complete)
{
    qwen_grammar_state *st = qwen_grammar_state_new(g);
    size_t              i;
    long                bad = -1;

    for (i = 0; i < len; i++) {
        if (qwen_grammar_accept_bytes(st, text + i, 1) != 0) {
            bad = (long) i;
            break;
        }
    }
    *complete = qwen_grammar_complete(st);
    qwen_grammar_state_free(st);
    return bad;
}

static void
test_corpus(void)
{
    char                err[QWEN_ERR_LEN];
    qwen_grammar       *g = qwen_grammar_new_json(tok, NULL, err, sizeof(err));
    qwen_grammar_state *st;
    qwen_tokens         t = { 0 };
    size_t              i, j;
    int                 complete, ok;
    long                bad;

    CHECK(g != NULL, "json grammar: %s", err);
    if (g == NULL) {
        return;
    }
    for (i = 0; i < sizeof(valid_json) / sizeof(valid_json[0]); i++) {
        const char  *s = valid_json[i];
        json_error_t jerr;
        json_t      *v = json_loads(s, 0, &jerr);

        CHECK(v != NULL, "corpus item %zu is not JSON: %s", i, jerr.text);
        json_decref(v);
        bad = feed_bytes(g, s, strlen(s), &complete);
        CHECK(bad < 0 && complete, "valid %zu byte by byte: rejected at %ld (%s)", i, bad, s);

        /* split into real tokens: each must be allowed and accepted; EOG
         * only at the end */
        t.n = 0;
        CHECK(qwen_tokenize(tok, s, strlen(s), &t, err, sizeof(err)) == 0, "tokenize: %s", err);
        st = qwen_grammar_state_new(g);
        ok = 1;
        for (j = 0; j < t.n && ok; j++) {
            ok = qwen_grammar_allows(st, EOG_IM_END) == (qwen_grammar_complete(st) != 0);
            ok = ok && qwen_grammar_allows(st, t.ids[j])
                 && qwen_grammar_accept(st, t.ids[j]) == 0;
        }
        CHECK(ok && qwen_grammar_complete(st) && qwen_grammar_allows(st, EOG_IM_END),
              "valid %zu by tokens: stopped at token %zu of %zu (%s)", i, j, t.n, s);
        qwen_grammar_state_free(st);
    }
    for (i = 0; i < sizeof(invalid_json) / sizeof(invalid_json[0]); i++) {
        const char *s = invalid_json[i];

        bad = feed_bytes(g, s, strlen(s), &complete);
        CHECK(bad >= 0, "invalid %zu accepted: %s", i, s);
    }
    /* special tokens never, EOG not before the end, accept is all or nothing */
    st = qwen_grammar_state_new(g);
    CHECK(!qwen_grammar_allows(st, EOG_IM_END), "EOG before any JSON");
    CHECK(!qwen_grammar_allows(st, qwen_token_id(tok, "<think>", 7)), "<think> is not JSON");
    CHECK(qwen_grammar_accept_bytes(st, "{\"a\":\"", 6) == 0, "open a string");
    CHECK(!qwen_grammar_allows(st, qwen_token_id(tok, "<|im_start|>", 12)),
          "added tokens are refused even inside strings");
    CHECK(!qwen_grammar_allows(st, EOG_IM_END), "EOG inside a string");
    CHECK(qwen_grammar_accept_bytes(st, "x\"}\x01", 4) != 0, "a bad byte refuses the lot");
    CHECK(qwen_grammar_accept_bytes(st, "x\"}", 3) == 0 && qwen_grammar_complete(st),
          "the state was left as it was");
    CHECK(qwen_grammar_accept(st, EOG_IM_END) == 0, "EOG after the object");
    qwen_grammar_state_free(st);
    qwen_tokens_free(&t);
    qwen_grammar_free(g);
}

/* ---------------------------------------------------- filtered sampler */

static int
only_multiples(void *ctx, int32_t token)
{
    int *calls = ctx;

    (*calls)++;
    return token % 7 == 3;
}

static int
nothing(void *ctx, int32_t token)
{
    (void) ctx;
    (void) token;
    return 0;
}

static void
test_filtered_sampler(void)
{
    enum { V = 1000 };
    qwen_sampling_params p;
    qwen_sampler        *a, *b;
    float                logits[V], l[V];
    int                  i, calls = 0, same = 1, ok = 1;
    int32_t              x, y;
    uint32_t             seed = 7;

    for (i = 0; i < V; i++) {
        seed = seed * 1664525u + 1013904223u;
        logits[i] = (float) (seed >> 8) / (float) (1u << 24) * 8.0f;
    }
    p = qwen_sampling_default_params();
    p.temperature = 0.0f;
    p.penalty_last_n = 0;
    a = qwen_sampler_new(&p, V);
    memcpy(l, logits, sizeof(l));
    x = qwen_sampler_sample_filtered(a, l, only_multiples, &calls);
    {
        int32_t best = -1;
        for (i = 0; i < V; i++) {
            if (i % 7 == 3 && (best < 0 || logits[i] > logits[best])) {
                best = i;
            }
        }
        CHECK(x == best, "greedy takes the best allowed token (%d, want %d)", x, best);
    }
    memcpy(l, logits, sizeof(l));
    CHECK(qwen_sampler_sample_filtered(a, l, nothing, NULL) == -1, "nothing allowed: -1");
    qwen_sampler_free(a);

    p.temperature = 1.0f;
    p.top_k = 20;
    p.top_p = 0.95f;
    p.seed = 99;
    a = qwen_sampler_new(&p, V);
    b = qwen_sampler_new(&p, V);
    for (i = 0; i < 300; i++) {
        memcpy(l, logits, sizeof(l));
        x = qwen_sampler_sample_filtered(a, l, only_multiples, &calls);
        memcpy(l, logits, sizeof(l));
        y = qwen_sampler_sample_filtered(b, l, only_multiples, &calls);
        same &= x == y;
        ok &= x % 7 == 3;
    }
    CHECK(same, "the same seed gives the same tokens");
    CHECK(ok, "only allowed tokens are drawn");
    qwen_sampler_free(a);
    qwen_sampler_free(b);
    /* top_k off: the whole vocabulary is filtered */
    p.top_k = 0;
    a = qwen_sampler_new(&p, V);
    for (i = 0, ok = 1; i < 100; i++) {
        memcpy(l, logits, sizeof(l));
        x = qwen_sampler_sample_filtered(a, l, only_multiples, &calls);
        ok &= x % 7 == 3;
    }
    CHECK(ok, "top_k off: only allowed tokens");
    qwen_sampler_free(a);
}

static int
allows_cb(void *ctx, int32_t token)
{
    return qwen_grammar_allows(ctx, token);
}

/* ------------------------------------------------------------ simulation */

/*
 * Decoding without a model, many times over: logits shaped like a real
 * model's (a few hundred plausible tokens well above the rest, and the
 * JSON punctuation favoured), sampled through the grammar until EOG or a
 * step limit. Many runs end, so the "complete means parseable" path gets
 * exercised far more than the random tiny model can. Returns the number
 * of complete outputs; *conform counts those schema_ok accepts.
 */
static int
simulate(const qwen_grammar *g, int runs, int steps, int (*schema_ok)(const json_t *),
         int *conform)
{
    static const char *const favoured[] = { "\"", "}", "]", ",", ":", " \"", "1", "true",
                                            "\",", "\"}", "{\"", "null", "[" };
    qwen_sampling_params p;
    float               *base = malloc((size_t) vocab * sizeof(float));
    float               *l = malloc((size_t) vocab * sizeof(float));
    int32_t             *out = malloc((size_t) steps * sizeof(int32_t));
    int                  run_i, step, i, complete = 0, n;
    uint32_t             rng = 12345;

    int32_t              fav[sizeof(favoured) / sizeof(favoured[0])];
    int                  n_fav = 0;

    *conform = 0;
    for (i = 0; i < (int) (sizeof(favoured) / sizeof(favoured[0])); i++) {
        int32_t id = qwen_token_id(tok, favoured[i], strlen(favoured[i]));
        if (id >= 0) {
            fav[n_fav++] = id;
        }
    }
    if (base == NULL || l == NULL || out == NULL) {
        CHECK(0, "simulate: out of memory");
        goto done;
    }
    for (i = 0; i < vocab; i++) {
        rng = rng * 1664525u + 1013904223u;
        base[i] = -10.0f * (float) (rng >> 8) / (float) (1u << 24);
    }
    for (run_i = 0; run_i < runs; run_i++) {
        qwen_grammar_state *st = qwen_grammar_state_new(g);
        qwen_sampler       *s;
        int                 ended = 0;

        p = qwen_sampling_default_params();
        p.temperature = run_i == 0 ? 0.0f : 0.9f;
        p.top_k = 40;
        p.top_p = 0.95f;
        p.seed = (uint64_t) run_i;
        s = qwen_sampler_new(&p, vocab);
        if (st == NULL || s == NULL) {
            CHECK(0, "simulate: out of memory");
            qwen_grammar_state_free(st);
            qwen_sampler_free(s);
            break;
        }
        for (n = 0, step = 0; step < steps && !ended; step++) {
            int32_t t;

            memcpy(l, base, (size_t) vocab * sizeof(float));
            for (i = 0; i < 300; i++) {
                rng = rng * 1664525u + 1013904223u;
                l[(rng >> 8) % (uint32_t) vocab] = 5.0f + (float) (rng % 50) / 10.0f;
            }
            for (i = 0; i < n_fav; i++) {
                l[fav[i]] = 12.0f;
            }
            l[EOG_IM_END] = 9.0f;
            t = qwen_sampler_sample_filtered(s, l, allows_cb, st);
            if (t < 0 || qwen_grammar_accept(st, t) != 0) {
                CHECK(0, "simulate: no allowed token (run %d step %d)", run_i, step);
                break;
            }
            if (qwen_token_is_eog(tok, t)) {
                ended = 1;
            } else {
                out[n++] = t;
                qwen_sampler_accept(s, t);
            }
        }
        {
            size_t       len;
            char        *text = qwen_detokenize(tok, out, (size_t) n, &len);
            json_error_t jerr;
            json_t      *v = ended && text != NULL ? json_loads(text, 0, &jerr) : NULL;

            if (ended) {
                CHECK(json_is_object(v), "simulated run %d ended but does not parse: %s", run_i,
                      text ? text : "(null)");
                complete += v != NULL;
                if (v != NULL && schema_ok != NULL) {
                    *conform += schema_ok(v);
                    CHECK(schema_ok(v), "simulated run %d does not conform: %s", run_i, text);
                }
            }
            json_decref(v);
            free(text);
        }
        qwen_grammar_state_free(st);
        qwen_sampler_free(s);
    }
done:
    free(base);
    free(l);
    free(out);
    return complete;
}

/* ------------------------------------------------------------ generation */

typedef struct {
    qwen_request     *req;
    int32_t           tokens[GEN_MAX];
    int               n;
    qwen_finish       finish;
    int               done;
} tracked;

static void
pump(qwen_engine *e, int timeout_ms)
{
    struct pollfd     pfd = { qwen_engine_notify_fd(e), POLLIN, 0 };
    uint64_t          v;
    qwen_request     *ready[16];
    qwen_token_event  ev[64];
    size_t            n, i, k, got;
    qwen_finish       f;
    tracked          *t;

    if (poll(&pfd, 1, timeout_ms) <= 0 || read(pfd.fd, &v, sizeof(v)) != sizeof(v)) {
        return;
    }
    n = qwen_engine_ready(e, ready, 16);
    for (i = 0; i < n; i++) {
        t = qwen_request_user_data(ready[i]);
        do {
            got = qwen_request_poll(ready[i], ev, 64, &f);
            for (k = 0; k < got && t->n < GEN_MAX; k++) {
                t->tokens[t->n++] = ev[k].token;
            }
        } while (got == 64);
        if (f != QWEN_FINISH_NONE) {
            t->finish = f;
            t->done = 1;
        }
    }
}

static int
run(qwen_engine *e, const qwen_request_params *p, tracked *t)
{
    char   err[QWEN_ERR_LEN];
    time_t end = time(NULL) + 120;

    memset(t, 0, sizeof(*t));
    if (qwen_submit(e, p, t, &t->req, err, sizeof(err)) != 0) {
        CHECK(0, "submit: %s", err);
        return -1;
    }
    while (!t->done && time(NULL) < end) {
        pump(e, 100);
    }
    CHECK(t->done, "request finished in time");
    qwen_request_release(t->req);
    return t->done ? 0 : -1;
}

/* The output (from token `from`) parses as JSON when the request stopped,
 * or is a valid prefix when max_tokens cut it. Returns 1 for a complete
 * object. */
static int
check_output(const qwen_grammar *g, const tracked *t, int from, const char *what)
{
    size_t              len;
    char               *text = qwen_detokenize(tok, t->tokens + from, (size_t) (t->n - from),
                                               &len);
    qwen_grammar_state *st = qwen_grammar_state_new(g);
    json_error_t        jerr;
    json_t             *v;
    int                 complete = 0;

    CHECK(text != NULL && st != NULL, "%s: out of memory", what);
    if (text == NULL || st == NULL) {
        free(text);
        qwen_grammar_state_free(st);
        return 0;
    }
    CHECK(t->finish == QWEN_FINISH_STOP || t->finish == QWEN_FINISH_LENGTH,
          "%s: finished %s", what, qwen_finish_name(t->finish));
    CHECK(qwen_grammar_accept_bytes(st, text, len) == 0, "%s: not a JSON prefix: %s", what,
          text);
    if (t->finish == QWEN_FINISH_STOP) {
        v = json_loads(text, 0, &jerr);
        CHECK(json_is_object(v), "%s: stopped but does not parse (%s): %s", what, jerr.text,
              text);
        complete = v != NULL;
        json_decref(v);
    }
    free(text);
    qwen_grammar_state_free(st);
    return complete;
}

static qwen_request_params
gen_params(const int32_t *prompt, size_t n, int max_tokens, float temp, uint64_t seed,
           const qwen_grammar *g)
{
    qwen_request_params p = qwen_request_default_params();

    p.prompt = prompt;
    p.n_prompt = n;
    p.max_tokens = max_tokens;
    p.sampling.temperature = temp;
    p.sampling.seed = seed;
    p.grammar = g;
    return p;
}

static void
test_generation(void)
{
    qwen_engine_params  ep = qwen_engine_default_params();
    ep.n_threads = 2;
    ep.n_slots = 4;
    ep.n_ctx = 1024;
    ep.n_batch = 64;
    ep.max_queue = 16;
    char                err[QWEN_ERR_LEN];
    qwen_engine        *e = qwen_engine_new(model, &ep, err, sizeof(err));
    qwen_grammar       *g = qwen_grammar_new_json(tok, NULL, err, sizeof(err));
    qwen_tokens         prompt = { 0 };
    const char         *text = "<|im_start|>user\nGive me a JSON object.<|im_end|>\n"
                               "<|im_start|>assistant\n";
    qwen_request_params p;
    tracked            *t = calloc(2, sizeof(*t));
    int                 seed, complete = 0, runs = 0, same;
    char                what[64];

    CHECK(e != NULL && g != NULL && t != NULL, "setup: %s", err);
    if (e == NULL || g == NULL || t == NULL) {
        goto done;
    }
    CHECK(qwen_tokenize(tok, text, strlen(text), &prompt, err, sizeof(err)) == 0, "%s", err);

    /* greedy, then sampled over many seeds and temperatures */
    for (seed = 0; seed < 12; seed++) {
        float temp = seed == 0 ? 0.0f : 0.3f + 0.1f * (float) (seed % 10);

        p = gen_params(prompt.ids, prompt.n, seed % 3 == 0 ? 150 : 40, temp, (uint64_t) seed, g);
        if (seed % 4 == 1) {
            p.sampling.top_k = 0;            /* the whole vocabulary */
            p.sampling.top_p = 1.0f;
        }
        if (seed % 4 == 2) {
            p.sampling.presence_penalty = 1.5f;
        }
        if (run(e, &p, &t[0]) != 0) {
            break;
        }
        snprintf(what, sizeof(what), "seed %d temp %.1f", seed, temp);
        complete += check_output(g, &t[0], 0, what);
        runs++;
    }
    printf("generation: %d of %d runs ended with a complete object\n", complete, runs);

    /* a seed gives the same tokens twice */
    p = gen_params(prompt.ids, prompt.n, 80, 0.8f, 1234, g);
    run(e, &p, &t[0]);
    run(e, &p, &t[1]);
    same = t[0].n == t[1].n && memcmp(t[0].tokens, t[1].tokens, (size_t) t[0].n * 4) == 0;
    CHECK(same, "deterministic for a seed (%d vs %d tokens)", t[0].n, t[1].n);

    /* grammar_after_token: free until that token, JSON after it. Use the
     * token greedy decoding picks first without a grammar. */
    p = gen_params(prompt.ids, prompt.n, 1, 0.0f, 0, NULL);
    p.ignore_eos = 1;
    run(e, &p, &t[0]);
    if (t[0].n == 1) {
        int32_t first = t[0].tokens[0];

        p = gen_params(prompt.ids, prompt.n, 100, 0.0f, 0, g);
        p.grammar_after_token = first;
        run(e, &p, &t[1]);
        CHECK(t[1].n >= 1 && t[1].tokens[0] == first,
              "the trigger token comes first, unconstrained");
        check_output(g, &t[1], 1, "after trigger");
    }
    /* the caller may free its grammar right after submit */
    {
        qwen_grammar *g2 = qwen_grammar_new_json(tok, NULL, err, sizeof(err));

        p = gen_params(prompt.ids, prompt.n, 30, 0.7f, 5, g2);
        memset(&t[0], 0, sizeof(t[0]));
        CHECK(qwen_submit(e, &p, &t[0], &t[0].req, err, sizeof(err)) == 0, "%s", err);
        qwen_grammar_free(g2);
        while (!t[0].done) {
            pump(e, 100);
        }
        qwen_request_release(t[0].req);
        check_output(g, &t[0], 0, "grammar freed after submit");
    }
done:
    free(t);
    qwen_tokens_free(&prompt);
    qwen_grammar_free(g);
    qwen_engine_free(e);
}

/* ---------------------------------------------------------------- schema */

static const char *const schema_text =
    "{\"type\":\"object\",\"title\":\"person\",\"properties\":{"
    "\"name\":{\"type\":\"string\",\"description\":\"full name\"},"
    "\"age\":{\"type\":\"integer\"},"
    "\"score\":{\"type\":\"number\"},"
    "\"member\":{\"type\":\"boolean\"},"
    "\"nothing\":{\"type\":\"null\"},"
    "\"color\":{\"enum\":[\"red\",\"green\",\"greenish\"]},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},"
    "\"address\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},"
    "\"zip\":{\"type\":[\"string\",\"null\"]}},\"required\":[\"city\"],"
    "\"additionalProperties\":false}},"
    "\"required\":[\"name\",\"age\",\"color\"],\"additionalProperties\":false}";

static const char *const schema_valid[] = {
    "{\"name\":\"Ada\",\"age\":36,\"color\":\"red\"}",
    "{\"name\": \"Ada\", \"age\": -1, \"score\": 1.5e3, \"member\": true, \"nothing\": null, "
    "\"color\": \"greenish\", \"tags\": [\"a\", \"b\"], \"address\": {\"city\": \"X\", "
    "\"zip\": null}}",
    "{\"name\":\"\",\"age\":0,\"score\":7,\"color\":\"green\",\"tags\":[],"
    "\"address\":{\"city\":\"Y\",\"zip\":\"123\"}}",
};

static const char *const schema_invalid[] = {
    "{\"age\":36,\"name\":\"Ada\",\"color\":\"red\"}",       /* order */
    "{\"name\":\"Ada\",\"age\":36}",                         /* color required */
    "{\"name\":\"Ada\",\"age\":3.5,\"color\":\"red\"}",      /* integer */
    "{\"name\":\"Ada\",\"age\":36,\"color\":\"blue\"}",      /* enum */
    "{\"name\":\"Ada\",\"age\":36,\"color\":\"gree\"}",
    "{\"name\":\"Ada\",\"age\":36,\"color\":\"red\",\"extra\":1}",
    "{\"name\":1}",
    "{\"name\":\"Ada\",\"age\":36,\"member\":\"yes\"}",
    "{\"name\":\"Ada\",\"age\":36,\"tags\":[1]}",
    "{\"name\":\"Ada\",\"age\":36,\"nothing\":false}",
    "{\"name\":\"Ada\",\"age\":36,\"color\":\"red\",\"address\":{}}",
    "{\"name\":\"Ada\",\"age\":36,\"color\":\"red\",\"address\":{\"city\":\"X\",\"q\":1}}",
};

static const char *const bad_schemas[] = {
    "{\"type\":\"array\"}",
    "{\"type\":\"object\",\"properties\":{\"a\":{\"$ref\":\"#/x\"}}}",
    "{\"allOf\":[{\"type\":\"object\"}]}",
    "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"strin\"}}}",
    "{\"type\":\"object\",\"properties\":{\"a\":{}},\"required\":[\"b\"]}",
    "{\"type\":\"object\",\"properties\":{\"a\":{\"minProperties\":1}}}",
    "{\"type\":\"object\",\"properties\":{\"a\\\"b\":{}}}",
    "not json",
};

static int
schema_conforms(const json_t *v)
{
    const json_t *x;

    if (!json_is_object(v) || !json_is_string(json_object_get(v, "name"))
        || !json_is_integer(json_object_get(v, "age"))
        || !json_is_string(json_object_get(v, "color")))
    {
        return 0;
    }
    x = json_object_get(v, "score");
    if (x != NULL && !json_is_number(x)) return 0;
    x = json_object_get(v, "member");
    if (x != NULL && !json_is_boolean(x)) return 0;
    x = json_object_get(v, "nothing");
    if (x != NULL && !json_is_null(x)) return 0;
    x = json_object_get(v, "tags");
    if (x != NULL && !json_is_array(x)) return 0;
    x = json_object_get(v, "address");
    if (x != NULL && !json_is_string(json_object_get(x, "city"))) return 0;
    return 1;
}

static void
test_schema(void)
{
    char                err[QWEN_ERR_LEN];
    qwen_grammar       *g = qwen_grammar_new_json(tok, schema_text, err, sizeof(err)), *b;
    qwen_engine_params  ep = qwen_engine_default_params();
    ep.n_threads = 2;
    ep.n_slots = 2;
    ep.n_ctx = 1024;
    ep.n_batch = 64;
    ep.max_queue = 16;
    qwen_engine        *e;
    qwen_tokens         prompt = { 0 };
    qwen_request_params p;
    tracked             t;
    size_t              i;
    int                 complete, seed, done = 0, conform = 0;
    long                bad;

    CHECK(g != NULL, "schema: %s", err);
    if (g == NULL) {
        return;
    }
    for (i = 0; i < sizeof(schema_valid) / sizeof(schema_valid[0]); i++) {
        bad = feed_bytes(g, schema_valid[i], strlen(schema_valid[i]), &complete);
        CHECK(bad < 0 && complete, "schema valid %zu rejected at %ld", i, bad);
    }
    for (i = 0; i < sizeof(schema_invalid) / sizeof(schema_invalid[0]); i++) {
        bad = feed_bytes(g, schema_invalid[i], strlen(schema_invalid[i]), &complete);
        CHECK(bad >= 0 || !complete, "schema invalid %zu accepted: %s", i, schema_invalid[i]);
    }
    for (i = 0; i < sizeof(bad_schemas) / sizeof(bad_schemas[0]); i++) {
        err[0] = '\0';
        b = qwen_grammar_new_json(tok, bad_schemas[i], err, sizeof(err));
        CHECK(b == NULL && err[0] != '\0', "bad schema %zu accepted", i);
        qwen_grammar_free(b);
    }

    e = qwen_engine_new(model, &ep, err, sizeof(err));
    CHECK(e != NULL, "%s", err);
    CHECK(qwen_tokenize(tok, "Describe a person.", 18, &prompt, err, sizeof(err)) == 0, "%s",
          err);
    for (seed = 0; e != NULL && seed < 4; seed++) {
        p = gen_params(prompt.ids, prompt.n, 100, seed == 0 ? 0.0f : 0.9f, (uint64_t) seed, g);
        if (run(e, &p, &t) != 0) {
            break;
        }
        if (check_output(g, &t, 0, "schema")) {
            size_t  len;
            char   *text = qwen_detokenize(tok, t.tokens, (size_t) t.n, &len);
            json_t *v = text ? json_loads(text, 0, NULL) : NULL;

            done++;
            conform += schema_conforms(v);
            CHECK(schema_conforms(v), "schema output does not conform: %s", text);
            json_decref(v);
            free(text);
        }
    }
    printf("schema generation: %d complete, %d conform\n", done, conform);
    qwen_tokens_free(&prompt);
    qwen_engine_free(e);
    qwen_grammar_free(g);
}

/* ------------------------------------------------------- exact lists */

/* Schemas that mix the keywords: patterns and formats (wide character
 * sets, lengths), enums, nested and recursive objects, free objects. */
static const char *const list_schemas[] = {
    NULL,   /* JSON mode: any object */
    "{\"type\":\"object\",\"properties\":{"
    "\"name\":{\"type\":\"string\",\"minLength\":2,\"maxLength\":12},"
    "\"email\":{\"type\":\"string\",\"format\":\"email\"},"
    "\"age\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":120},"
    "\"phone\":{\"type\":[\"string\",\"null\"],\"pattern\":\"^\\\\+?[0-9 ()-]{7,20}$\"},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"customer\",\"lead\",\"vip\"]},"
    "\"uniqueItems\":true},"
    "\"note\":{\"type\":\"string\",\"pattern\":\"^[a-z]{0,3}.{0,5}$\"},"
    "\"meta\":{\"type\":\"object\"}},"
    "\"required\":[\"name\",\"age\",\"email\"],\"additionalProperties\":false}",
    "{\"$defs\":{\"f\":{\"anyOf\":[{\"type\":\"object\",\"properties\":{"
    "\"field\":{\"type\":\"string\"},\"equals\":{\"type\":[\"string\",\"number\",\"null\"]}},"
    "\"required\":[\"field\",\"equals\"],\"additionalProperties\":false},"
    "{\"type\":\"object\",\"properties\":{\"all\":{\"type\":\"array\",\"maxItems\":2,"
    "\"items\":{\"$ref\":\"#/$defs/f\"}}},\"required\":[\"all\"],"
    "\"additionalProperties\":false}]}},"
    "\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"string\",\"format\":\"uuid\"},"
    "\"when\":{\"type\":\"string\",\"format\":\"date-time\"},\"filter\":{\"$ref\":\"#/$defs/f\"},"
    "\"n\":{\"type\":\"number\",\"minimum\":-5,\"maximum\":5}},"
    "\"required\":[\"id\",\"filter\"],\"additionalProperties\":false}",
    /* tool calls (the last: a tools grammar, calls required) */
    "{\"type\":\"object\",\"properties\":{\"name\":{\"const\":\"lookup\"},"
    "\"arguments\":{\"type\":\"object\",\"properties\":{\"q\":{\"type\":\"string\","
    "\"maxLength\":20}},\"required\":[\"q\"],\"additionalProperties\":false}},"
    "\"required\":[\"name\",\"arguments\"],\"additionalProperties\":false}",
};

/*
 * qwen_grammar_candidates must list exactly the tokens qwen_grammar_allows
 * takes (the sampler trusts the list): in every state a random walk meets,
 * under token budgets that often bind, the list is compared with a scan
 * of the whole vocabulary. A walk picks uniformly among the allowed
 * tokens, so long strings, escapes, partial UTF-8 and budget closes occur.
 */
static void
test_exact_lists(void)
{
    char      err[QWEN_ERR_LEN];
    int32_t  *ids = malloc((size_t) vocab * sizeof(int32_t));
    uint8_t  *in_list = calloc((size_t) vocab, 1);
    int32_t  *allowed = malloc((size_t) vocab * sizeof(int32_t));
    uint32_t  rng = 7;
    size_t    si;
    int       states = 0, listed = 0, mismatches = 0, narrow_unlisted = 0;
    int32_t   hist[128];

    if (ids == NULL || in_list == NULL || allowed == NULL) {
        CHECK(0, "exact lists: out of memory");
        goto done;
    }
    for (si = 0; si < sizeof(list_schemas) / sizeof(list_schemas[0]); si++) {
        qwen_grammar       *g = si == 3 ? qwen_grammar_new_tools(tok, list_schemas[si], 1, 1, err,
                                                                 sizeof(err))
                                      : qwen_grammar_new_json(tok, list_schemas[si], err,
                                                              sizeof(err));
        qwen_grammar_state *st;
        int                 step, used = 0, max_tokens = 40;

        CHECK(g != NULL, "exact lists: schema %zu: %s", si, err);
        if (g == NULL) {
            continue;
        }
        st = qwen_grammar_state_new(g);
        for (step = 0; step < 90 && st != NULL; step++) {
            int32_t n, n_allowed = 0, i, id;
            int     same = 1;

            qwen_grammar_set_budget(st, max_tokens - used - 1);
            n = qwen_grammar_candidates(st, ids, vocab);
            for (id = 0; id < vocab; id++) {
                if (qwen_grammar_allows(st, id)) {
                    allowed[n_allowed++] = id;
                }
            }
            states++;
            if (n >= 0) {
                listed++;
                for (i = 0; i < n; i++) {
                    same &= ids[i] >= 0 && ids[i] < vocab && !in_list[ids[i]];
                    if (ids[i] >= 0 && ids[i] < vocab) in_list[ids[i]] = 1;
                }
                same &= n == n_allowed;
                for (i = 0; i < n_allowed; i++) {
                    same &= in_list[allowed[i]];
                }
                for (i = 0; i < n; i++) {
                    if (ids[i] >= 0 && ids[i] < vocab) in_list[ids[i]] = 0;
                }
                if (!same) {
                    mismatches++;
                    CHECK(0, "exact lists: schema %zu step %d: %d listed, %d allowed", si, step,
                          n, n_allowed);
                }
            }
            if (n < 0 && n_allowed * 2 <= vocab) {
                narrow_unlisted++;
            }
            if (n_allowed == 0) {
                CHECK(0, "exact lists: schema %zu step %d: nothing allowed (budget %d) after:",
                      si, step, max_tokens - used - 1);
                for (i = 0; i < used; i++) {
                    size_t      nb;
                    const char *pb = qwen_token_bytes(tok, hist[i], &nb);

                    fprintf(stderr, "[%.*s]", (int) nb, pb != NULL ? pb : "");
                }
                fprintf(stderr, "\n");
                break;
            }
            rng = rng * 1664525u + 1013904223u;
            id = allowed[(rng >> 8) % (uint32_t) n_allowed];
            CHECK(qwen_grammar_accept(st, id) == 0, "exact lists: accept");
            hist[used] = id;
            used++;
            if (qwen_token_is_eog(tok, id) || used == max_tokens) {
                qwen_grammar_state_free(st);
                st = qwen_grammar_state_new(g);
                used = 0;
                rng = rng * 1664525u + 1013904223u;
                max_tokens = 12 + (int) ((rng >> 8) % 60);
            }
        }
        qwen_grammar_state_free(st);
        qwen_grammar_free(g);
    }
    /* no list only where most of the vocabulary fits (the sampler's own
     * checks of its best tokens are then quicker) */
    CHECK(narrow_unlisted == 0, "exact lists: %d states with few tokens allowed had no list",
          narrow_unlisted);
    CHECK(listed * 2 >= states, "exact lists: only %d of %d states listed", listed, states);
    {
        /* more patterns than the tokenizer's plan cache holds (16), all
         * alive at once: evicted plans stay with their grammars, and the
         * first grammar's list inside its string is still exact */
        qwen_grammar       *gs[20];
        qwen_grammar_state *st;
        char                schema[160];
        int32_t             n, n_allowed = 0, id;
        int                 k;

        for (k = 0; k < 20; k++) {
            snprintf(schema, sizeof(schema), "{\"type\":\"object\",\"properties\":{\"s\":"
                     "{\"type\":\"string\",\"pattern\":\"^[a-%c]{1,5}$\"}},\"required\":[\"s\"]}",
                     'b' + k);
            gs[k] = qwen_grammar_new_json(tok, schema, err, sizeof(err));
            CHECK(gs[k] != NULL, "plan cache: %s", err);
        }
        st = gs[0] != NULL ? qwen_grammar_state_new(gs[0]) : NULL;
        CHECK(st != NULL && qwen_grammar_accept_bytes(st, "{\"s\":\"a", 7) == 0, "plan cache: state");
        if (st != NULL) {
            n = qwen_grammar_candidates(st, ids, vocab);
            for (id = 0; id < vocab; id++) {
                n_allowed += qwen_grammar_allows(st, id);
            }
            /* [a-b]{1,5} after "a": a, b, ab, ba, ... and the closing quote */
            CHECK(n > 0 && n == n_allowed, "plan cache: %d listed, %d allowed", n, n_allowed);
        }
        qwen_grammar_state_free(st);
        for (k = 0; k < 20; k++) {
            qwen_grammar_free(gs[k]);
        }
    }
    {
        /* a call's JSON under a budget shorter than its close: each token
         * must shorten the way, and "e" (no token holds e":) must count as
         * progress although </tool_call> is still due */
        qwen_grammar       *g = qwen_grammar_new_tools(tok, list_schemas[3], 1, 1, err,
                                                       sizeof(err));
        qwen_grammar_state *st = g != NULL ? qwen_grammar_state_new(g) : NULL;
        int32_t             open = qwen_token_id(tok, "<tool_call>", 11), n;

        CHECK(st != NULL && open >= 0 && qwen_grammar_accept(st, open) == 0
              && qwen_grammar_accept_bytes(st, " {\"nam", 6) == 0, "tool call under a budget");
        if (st != NULL) {
            qwen_grammar_set_budget(st, 13);
            n = qwen_grammar_candidates(st, ids, vocab);
            CHECK(n > 0 && qwen_grammar_allows(st, qwen_token_id(tok, "e", 1)),
                  "tool call under a budget: %d tokens may follow", n);
        }
        qwen_grammar_state_free(st);
        qwen_grammar_free(g);
    }
    printf("exact lists: %d states, %d listed, %d mismatches, %d narrow without a list\n", states,
           listed, mismatches, narrow_unlisted);
done:
    free(ids);
    free(in_list);
    free(allowed);
}

/* ------------------------------------------------------------------ cost */



/* Per-step cost with the model's vocabulary and a realistic logit spread,
 * in three states: inside a string (almost every token allowed), right
 * after '{' (a key or '}'), and after a value (',' or '}'). */
static void
test_cost(void)
{
    static const char *const states[] = { "{\"text\": \"abc", "{", "{\"a\": 1" };
    static const char *const names[] = { "in a string", "after '{'", "after a value" };
    qwen_sampling_params p;
    qwen_sampler        *s;
    char                 err[QWEN_ERR_LEN];
    qwen_grammar        *g = qwen_grammar_new_json(tok, NULL, err, sizeof(err));
    qwen_grammar_state  *st;
    float               *logits = malloc((size_t) vocab * sizeof(float));
    float               *l = malloc((size_t) vocab * sizeof(float));
    uint32_t             seed = 1;
    int                  i, k, mode, reps = 20;
    double               t0, plain, filt, listed;
    int32_t             *ids = malloc((size_t) (vocab + 1) * sizeof(int32_t));
    int32_t              x;

    if (g == NULL || logits == NULL || l == NULL || ids == NULL) {
        CHECK(0, "cost setup");
        goto done;
    }
    for (i = 0; i < vocab; i++) {
        seed = seed * 1664525u + 1013904223u;
        logits[i] = ((float) (seed >> 8) / (float) (1u << 24)) * 20.0f - 10.0f;
    }
    for (mode = 0; mode < 2; mode++) {
        p = qwen_sampling_default_params();
        p.temperature = mode == 0 ? 0.0f : 0.7f;
        s = qwen_sampler_new(&p, vocab);
        for (k = 0; k < 3 && s != NULL; k++) {
            st = qwen_grammar_state_new(g);
            qwen_grammar_accept_bytes(st, states[k], strlen(states[k]));
            t0 = now_ms();
            for (i = 0; i < reps; i++) {
                memcpy(l, logits, (size_t) vocab * sizeof(float));
                qwen_sampler_sample(s, l);
            }
            plain = (now_ms() - t0) / reps;
            t0 = now_ms();
            for (i = 0; i < reps; i++) {
                memcpy(l, logits, (size_t) vocab * sizeof(float));
                x = qwen_sampler_sample_filtered(s, l, allows_cb, st);
                CHECK(x >= 0 && qwen_grammar_allows(st, x), "cost: drew a refused token");
            }
            filt = (now_ms() - t0) / reps;
            /* as the scheduler does: the grammar's candidate list first */
            t0 = now_ms();
            for (i = 0; i < reps; i++) {
                int32_t n_ids = qwen_grammar_candidates(st, ids, vocab);

                memcpy(l, logits, (size_t) vocab * sizeof(float));
                x = n_ids >= 0 ? qwen_sampler_sample_among(s, l, ids, n_ids, -1, allows_cb, st)
                               : qwen_sampler_sample_filtered(s, l, allows_cb, st);
                CHECK(x >= 0 && qwen_grammar_allows(st, x), "cost: drew a refused token");
            }
            listed = (now_ms() - t0) / reps;
            printf("cost %s, %s: %.3f ms per step, %.3f ms with candidate lists "
                   "(unconstrained %.3f ms)\n",
                   mode == 0 ? "greedy" : "top-k 20", names[k], filt, listed, plain);
            qwen_grammar_state_free(st);
        }
        qwen_sampler_free(s);
    }
done:
    free(ids);
    free(logits);
    free(l);
    qwen_grammar_free(g);
}

int
main(void)
{
    char err[QWEN_ERR_LEN];

    model = test_load_model("tiny-f32.gguf");
    if (model == NULL) {
        TEST_MAIN_END();
    }
    tok = qwen_model_tokenizer(model);
    vocab = qwen_model_config(model)->vocab_size;
    CHECK(tok != NULL, "the tiny model carries the tokenizer");
    if (tok != NULL) {
        double t0 = now_ms();

        test_corpus();
        test_filtered_sampler();
        {
            qwen_grammar *g = qwen_grammar_new_json(tok, NULL, err, sizeof(err));
            qwen_grammar *gs = qwen_grammar_new_json(tok, schema_text, err, sizeof(err));
            int           done, done_s, conform;

            CHECK(g != NULL && gs != NULL, "%s", err);
            if (g != NULL && gs != NULL) {
                done = simulate(g, 30, 120, NULL, &conform);
                CHECK(done >= 10, "simulated JSON mode: only %d of 30 ended", done);
                done_s = simulate(gs, 30, 160, schema_conforms, &conform);
                CHECK(done_s >= 5, "simulated schema: only %d of 30 ended", done_s);
                printf("simulated: json %d/30 complete, schema %d/30 complete (%d conform)\n",
                       done, done_s, conform);
            }
            qwen_grammar_free(g);
            qwen_grammar_free(gs);
        }
        printf("automaton and sampler: %.0f ms\n", now_ms() - t0);
        t0 = now_ms();
        test_schema();
        printf("schema: %.0f ms\n", now_ms() - t0);
        t0 = now_ms();
        test_generation();
        printf("generation: %.0f ms\n", now_ms() - t0);
        t0 = now_ms();
        test_exact_lists();
        printf("exact lists: %.0f ms\n", now_ms() - t0);
        test_cost();
    }
    qwen_model_free(model);
    TEST_MAIN_END();
}
