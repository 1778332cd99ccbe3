/*
 * test_sampler.c - the sampler's contract: greedy is argmax, the same seed
 * gives the same tokens, frequencies follow the tempered softmax, top-k /
 * top-p / min-p cut the support exactly, and each penalty moves the logits
 * the way its definition says.
 */
#include "test.h"
#include "qwen.h"

#include <stdlib.h>
#include <string.h>

#define V 8

static const float base_logits[V] = { 1.0f, 3.0f, 2.5f, -1.0f, 0.0f, 2.9f, -3.0f, 0.5f };

static int32_t
draw(qwen_sampler *s)
{
    float l[V];

    memcpy(l, base_logits, sizeof(l));
    return qwen_sampler_sample(s, l);
}

static qwen_sampler *
make(float temp, int top_k, float top_p, float min_p, uint64_t seed)
{
    qwen_sampling_params p;

    qwen_sampling_defaults(&p);
    p.temperature = temp;
    p.top_k = top_k;
    p.top_p = top_p;
    p.min_p = min_p;
    p.seed = seed;
    return qwen_sampler_new(&p, V);
}

static void
test_greedy_and_seed(void)
{
    qwen_sampler *a = make(0.0f, 0, 1.0f, 0.0f, 1), *b, *c;
    int           i, same = 1, differ = 0;

    CHECK(draw(a) == 1, "greedy must pick the largest logit");
    qwen_sampler_free(a);
    a = make(1.0f, 1, 1.0f, 0.0f, 1);
    CHECK(draw(a) == 1, "top_k 1 is greedy");
    qwen_sampler_free(a);

    a = make(1.0f, 0, 1.0f, 0.0f, 42);
    b = make(1.0f, 0, 1.0f, 0.0f, 42);
    c = make(1.0f, 0, 1.0f, 0.0f, 43);
    for (i = 0; i < 200; i++) {
        int x = draw(a), y = draw(b), z = draw(c);
        same &= x == y;
        differ |= x != z;
    }
    CHECK(same, "the same seed must give the same tokens");
    CHECK(differ, "different seeds should give different tokens");
    qwen_sampler_free(a);
    qwen_sampler_free(b);
    qwen_sampler_free(c);
}

static void
test_distribution(void)
{
    qwen_sampler *s = make(0.8f, 0, 1.0f, 0.0f, 7);
    int           counts[V] = {0}, i, n = 40000;
    double        p[V], sum = 0.0, worst = 0.0;

    for (i = 0; i < V; i++) {
        p[i] = exp(base_logits[i] / 0.8);
        sum += p[i];
    }
    for (i = 0; i < n; i++) {
        counts[draw(s)]++;
    }
    for (i = 0; i < V; i++) {
        worst = fmax(worst, fabs(counts[i] / (double) n - p[i] / sum));
    }
    /* 40000 draws: the standard error of a frequency is below 0.0025 */
    CHECK(worst < 0.012, "frequencies differ from the softmax by %.4f", worst);
    qwen_sampler_free(s);
}

static void
test_filters(void)
{
    qwen_sampler *s;
    int           i, seen[V];

    /* top_k 3 keeps ids 1, 5, 2 */
    s = make(5.0f, 3, 1.0f, 0.0f, 3);
    memset(seen, 0, sizeof(seen));
    for (i = 0; i < 3000; i++) seen[draw(s)]++;
    CHECK(seen[1] && seen[5] && seen[2] && seen[1] + seen[5] + seen[2] == 3000,
          "top_k 3 must sample only the 3 best");
    qwen_sampler_free(s);

    /* top_p: probabilities at T=1: id1 .35, id5 .32, id2 .21 ... p 0.6 keeps 2 */
    s = make(1.0f, 0, 0.6f, 0.0f, 3);
    memset(seen, 0, sizeof(seen));
    for (i = 0; i < 3000; i++) seen[draw(s)]++;
    CHECK(seen[1] && seen[5] && seen[1] + seen[5] == 3000, "top_p 0.6 must keep 2 tokens");
    qwen_sampler_free(s);

    /* min_p 0.5: keep tokens with p >= 0.5 p_max: ids 1, 5, 2 (e^-0.5 = 0.61) */
    s = make(1.0f, 0, 1.0f, 0.5f, 3);
    memset(seen, 0, sizeof(seen));
    for (i = 0; i < 3000; i++) seen[draw(s)]++;
    CHECK(seen[1] + seen[5] + seen[2] == 3000 && seen[2] > 0, "min_p 0.5 must keep 3 tokens");
    qwen_sampler_free(s);
}

static void
test_penalties(void)
{
    qwen_sampling_params p;
    qwen_sampler        *s;
    float                l[V];

    qwen_sampling_defaults(&p);
    p.temperature = 0.0f;
    p.repetition_penalty = 2.0f;
    p.penalty_last_n = 64;
    s = qwen_sampler_new(&p, V);
    qwen_sampler_accept(s, 1);      /* 3.0 -> 1.5: now id 5 (2.9) wins */
    memcpy(l, base_logits, sizeof(l));
    CHECK(qwen_sampler_sample(s, l) == 5, "repetition penalty must demote id 1");
    CHECK(fabsf(l[1] - 1.5f) < 1e-6, "positive logit divided: %g", l[1]);
    qwen_sampler_free(s);

    qwen_sampling_defaults(&p);
    p.temperature = 0.0f;
    p.presence_penalty = 0.05f;
    p.frequency_penalty = 0.1f;
    p.penalty_last_n = 64;
    s = qwen_sampler_new(&p, V);
    qwen_sampler_accept(s, 5);
    qwen_sampler_accept(s, 5);
    qwen_sampler_accept(s, 3);
    memcpy(l, base_logits, sizeof(l));
    CHECK(qwen_sampler_sample(s, l) == 1, "penalties keep id 1 on top");
    CHECK(fabsf(l[5] - (2.9f - 0.05f - 0.2f)) < 1e-5, "presence + 2 x frequency: %g", l[5]);
    CHECK(fabsf(l[3] - (-1.0f - 0.05f - 0.1f)) < 1e-5, "presence + frequency: %g", l[3]);
    CHECK(l[2] == 2.5f, "untouched logit changed: %g", l[2]);
    qwen_sampler_free(s);

    /* the window: only the last 2 tokens count */
    qwen_sampling_defaults(&p);
    p.temperature = 0.0f;
    p.presence_penalty = 1.0f;
    p.penalty_last_n = 2;
    s = qwen_sampler_new(&p, V);
    qwen_sampler_accept(s, 1);
    qwen_sampler_accept(s, 2);
    qwen_sampler_accept(s, 3);
    memcpy(l, base_logits, sizeof(l));
    qwen_sampler_sample(s, l);
    CHECK(l[1] == 3.0f && l[2] == 1.5f && l[3] == -2.0f, "window of 2: %g %g %g", l[1], l[2], l[3]);
    qwen_sampler_free(s);
}

int
main(void)
{
    test_greedy_and_seed();
    test_distribution();
    test_filters();
    test_penalties();
    TEST_MAIN_END();
}
