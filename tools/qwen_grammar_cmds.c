/*
 * qwen_grammar_cmds.c - qwen grammar-bench: what constrained sampling
 * costs per token over the model's vocabulary, for a few real-world
 * schemas (any JSON object, extraction, an invoice, classification, a tool
 * call with a recursive filter). Each step is what the scheduler does for a request
 * with a grammar: set the token budget, take the grammar's candidate list
 * (or scan), sample through the filter (greedy, and temperature 1 with
 * top-k 20), advance the automaton. Logits are random (seeded), fresh each
 * step, so every kind of state is visited; an answer restarts once
 * complete, and max_tokens 200 makes the budget close some. Prints p50,
 * p99 and the worst step per schema and mode (wall time, and the worst in
 * the thread's CPU time: a shared machine's preemptions left out), and what compiling the
 * schema cost the first time (the first schema also builds the
 * tokenizer's tables) and again (text, or JSON lines).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qwen.h"
#include "qwen_cmds.h"

static const struct {
    const char *name;
    const char *schema;
} SCHEMAS[] = {
    { "json-object", NULL },   /* response_format json_object: any object */
    { "extract-person",
      "{\"type\":\"object\",\"properties\":{"
      "\"name\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":40},"
      "\"email\":{\"type\":\"string\",\"format\":\"email\"},"
      "\"age\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":120},"
      "\"phone\":{\"type\":[\"string\",\"null\"],\"pattern\":\"^\\\\+?[0-9 ()-]{7,20}$\"},"
      "\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"customer\",\"lead\",\"partner\","
      "\"vip\"]},\"uniqueItems\":true},"
      "\"address\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},"
      "\"country\":{\"type\":\"string\",\"pattern\":\"^[A-Z]{2}$\"}},\"required\":[\"city\"],"
      "\"additionalProperties\":false}},"
      "\"required\":[\"name\",\"age\"],\"additionalProperties\":false}" },
    { "invoice",
      "{\"type\":\"object\",\"properties\":{"
      "\"id\":{\"type\":\"string\",\"format\":\"uuid\"},"
      "\"date\":{\"type\":\"string\",\"format\":\"date\"},"
      "\"currency\":{\"enum\":[\"USD\",\"EUR\",\"GBP\"]},"
      "\"lines\":{\"type\":\"array\",\"minItems\":1,\"maxItems\":5,\"items\":{"
      "\"type\":\"object\",\"properties\":{"
      "\"sku\":{\"type\":\"string\",\"pattern\":\"^[A-Z]{3}-\\\\d{4}$\"},"
      "\"qty\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":999},"
      "\"price\":{\"type\":\"number\",\"minimum\":0}},"
      "\"required\":[\"sku\",\"qty\",\"price\"],\"additionalProperties\":false}},"
      "\"total\":{\"type\":\"number\",\"minimum\":0}},"
      "\"required\":[\"id\",\"date\",\"currency\",\"lines\",\"total\"],"
      "\"additionalProperties\":false}" },
    { "classify",
      "{\"type\":\"object\",\"properties\":{"
      "\"label\":{\"enum\":[\"billing\",\"bug\",\"feature request\",\"praise\",\"other\"]},"
      "\"confidence\":{\"type\":\"number\",\"minimum\":0,\"maximum\":1}},"
      "\"required\":[\"label\",\"confidence\"],\"additionalProperties\":false}" },
    { "tool-call",
      "{\"$defs\":{\"filter\":{\"anyOf\":[{\"type\":\"object\",\"properties\":{"
      "\"field\":{\"type\":\"string\"},\"equals\":{\"type\":[\"string\",\"number\",\"null\"]}},"
      "\"required\":[\"field\",\"equals\"],\"additionalProperties\":false},"
      "{\"type\":\"object\",\"properties\":{\"all\":{\"type\":\"array\",\"maxItems\":3,"
      "\"items\":{\"$ref\":\"#/$defs/filter\"}}},\"required\":[\"all\"],"
      "\"additionalProperties\":false}]}},"
      "\"type\":\"object\",\"properties\":{\"name\":{\"const\":\"search_orders\"},"
      "\"arguments\":{\"type\":\"object\",\"properties\":{"
      "\"filter\":{\"$ref\":\"#/$defs/filter\"},"
      "\"limit\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":100}},"
      "\"required\":[\"filter\"],\"additionalProperties\":false}},"
      "\"required\":[\"name\",\"arguments\"],\"additionalProperties\":false}" },
};

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;

    return x < y ? -1 : x > y;
}

/* This thread's CPU time: a step's own cost, without the time another
 * process on a shared machine took the core away */
static double
cpu_now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double) ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t rng_state = 0x243F6A8885A308D3ULL;

static float
rnd_unit(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float) (rng_state >> 40) / (float) (1 << 24);
}

static int
filter_cb(void *ctx, int32_t token)
{
    return qwen_grammar_allows(ctx, token);
}

int
qwen_cmd_grammar_bench(int argc, char **argv)
{
    const char           *model_path = NULL;
    int                   steps = 600, json = 0, i, s, mode, vocab, answers, listed, ok = 1;
    char                  err[QWEN_ERR_LEN];
    qwen_model           *model;
    const qwen_tokenizer *tok;
    float                *logits;
    int32_t              *ids;
    double               *t_step, t0, c0, c_worst, t_again = 0.0;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-m") == 0 && i + 1 < argc) {
            model_path = argv[++i];
        } else if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc) {
            steps = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else {
            fprintf(stderr, "qwen grammar-bench: usage: grammar-bench -m MODEL [--steps N] "
                    "[--json]\n");
            return 2;
        }
    }
    if (model_path == NULL || steps < 10) {
        fprintf(stderr, "qwen grammar-bench: -m MODEL is required (a model with its "
                "tokenizer), --steps at least 10\n");
        return 2;
    }
    model = qwen_model_load(model_path, err, sizeof(err));
    if (model == NULL) {
        fprintf(stderr, "qwen grammar-bench: %s\n", err);
        return 1;
    }
    tok = qwen_model_tokenizer(model);
    if (tok == NULL) {
        fprintf(stderr, "qwen grammar-bench: %s has no tokenizer\n", model_path);
        qwen_model_free(model);
        return 1;
    }
    vocab = qwen_tokenizer_vocab_size(tok);
    logits = malloc((size_t) vocab * sizeof(float));
    ids = malloc((size_t) (vocab + 1) * sizeof(int32_t));
    t_step = malloc((size_t) steps * sizeof(double));
    if (logits == NULL || ids == NULL || t_step == NULL) {
        fprintf(stderr, "qwen grammar-bench: out of memory\n");
        return 1;
    }
    if (!json) {
        printf("constrained sampling, one step (budget, candidates, sample, advance), "
               "vocabulary %d\n", vocab);
        printf("%-15s %-17s %9s %9s %9s %9s %8s %8s %8s %8s\n", "schema", "sampling", "p50 ms",
               "p99 ms", "worst ms", "worst cpu", "answers", "listed", "new ms", "again ms");
    }
    for (s = 0; s < (int) (sizeof(SCHEMAS) / sizeof(SCHEMAS[0])); s++) {
        double        t_new = qwen_cli_now_s();
        qwen_grammar *g = qwen_grammar_new_json(tok, SCHEMAS[s].schema, err, sizeof(err));

        t_new = (qwen_cli_now_s() - t_new) * 1e3;
        if (g != NULL) {
            /* again: the tokenizer's tables and the patterns' plans are
             * cached, as for a server's next request with this schema */
            double        t0b = qwen_cli_now_s();
            qwen_grammar *g2 = qwen_grammar_new_json(tok, SCHEMAS[s].schema, err, sizeof(err));

            t_again = (qwen_cli_now_s() - t0b) * 1e3;
            qwen_grammar_free(g2);
        }

        if (g == NULL) {
            fprintf(stderr, "qwen grammar-bench: %s: %s\n", SCHEMAS[s].name, err);
            ok = 0;
            continue;
        }
        for (mode = 0; mode < 2; mode++) {
            qwen_sampling_params sp = qwen_sampling_default_params();
            qwen_sampler        *smp;
            qwen_grammar_state  *st = qwen_grammar_state_new(g);
            int                  used = 0, n, k;
            int32_t              t;

            sp.temperature = mode == 0 ? 0.0f : 1.0f;
            sp.top_k = mode == 0 ? 0 : 20;
            sp.top_p = 1.0f;
            sp.min_p = 0.0f;
            smp = qwen_sampler_new(&sp, vocab);
            answers = 0;
            listed = 0;
            c_worst = 0.0;
            for (i = 0; i < steps && st != NULL && smp != NULL; i++) {
                for (k = 0; k < vocab; k++) {
                    logits[k] = rnd_unit() * 20.0f - 10.0f;
                }
                t0 = qwen_cli_now_s();
                c0 = cpu_now_s();
                qwen_grammar_set_budget(st, 200 - used - 1);
                n = qwen_grammar_candidates(st, ids, vocab);
                if (n >= 0) {
                    listed++;
                    t = qwen_sampler_sample_among(smp, logits, ids, n, -1, filter_cb, st);
                } else {
                    t = qwen_sampler_sample_filtered(smp, logits, filter_cb, st);
                }
                if (t < 0 || qwen_grammar_accept(st, t) != 0) {
                    fprintf(stderr, "qwen grammar-bench: %s: no token allowed at step %d\n",
                            SCHEMAS[s].name, i);
                    ok = 0;
                    break;
                }
                t_step[i] = (qwen_cli_now_s() - t0) * 1e3;
                c0 = (cpu_now_s() - c0) * 1e3;
                if (c0 > c_worst) {
                    c_worst = c0;
                }
                used++;
                if (qwen_token_is_eog(tok, t) || used == 200) {
                    ok &= qwen_grammar_complete(st);
                    qwen_grammar_state_free(st);
                    st = qwen_grammar_state_new(g);
                    used = 0;
                    answers++;
                }
            }
            if (i == steps) {
                qsort(t_step, (size_t) steps, sizeof(double), cmp_double);
                if (json) {
                    printf("{\"schema\":\"%s\",\"sampling\":\"%s\",\"steps\":%d,"
                           "\"p50_ms\":%.4f,\"p99_ms\":%.4f,\"max_ms\":%.4f,\"max_cpu_ms\":%.4f,"
                           "\"answers\":%d,\"listed\":%d,\"compile_ms\":%.2f,"
                           "\"compile_again_ms\":%.2f}\n",
                           SCHEMAS[s].name, mode == 0 ? "greedy" : "t=1 top-k 20", steps,
                           t_step[steps / 2], t_step[steps * 99 / 100], t_step[steps - 1],
                           c_worst, answers, listed, t_new, t_again);
                } else {
                    printf("%-15s %-17s %9.3f %9.3f %9.3f %9.3f %8d %7d%% %8.1f %8.2f\n",
                           SCHEMAS[s].name, mode == 0 ? "greedy" : "t=1 top-k 20",
                           t_step[steps / 2], t_step[steps * 99 / 100], t_step[steps - 1],
                           c_worst, answers, listed * 100 / steps, t_new, t_again);
                }
            }
            qwen_grammar_state_free(st);
            qwen_sampler_free(smp);
        }
        qwen_grammar_free(g);
    }
    free(logits);
    free(ids);
    free(t_step);
    qwen_model_free(model);
    return ok ? 0 : 1;
}
