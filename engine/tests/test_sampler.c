/*
 * test_sampler.c - the sampler's contract: greedy is argmax, the same seed
 * gives the same tokens, frequencies follow the tempered softmax, top-k /
 * top-p / min-p cut the support exactly, and each penalty moves the logits
 * the way its definition says.
 */
#include "test.h"
#include "qwen.h"

#include <math.h>
#include <stdio.h>
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

    p = qwen_sampling_default_params();
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

static int
not_id5(void *ctx, int32_t token)
{
    (void) ctx;
    return token != 5;
}

/*
 * Speculative acceptance keeps the distribution: whatever token is
 * proposed (the likeliest, a middling one, one outside the top-k, one the
 * filter refuses), qwen_sampler_sample_draft's results follow the same
 * distribution as plain sampling, with top-k on and off and filtered;
 * greedy gives the argmax whatever the draft.
 */
static void
test_draft_distribution(void)
{
    static const int32_t drafts[] = { 1, 2, 6, 5 };
    static const int     top_ks[] = { 0, 3 };
    int                  counts[V], ref[V], i, a, b, f, n = 30000;
    double               worst = 0.0;
    float                l[V];

    for (f = 0; f < 2; f++) {
        for (b = 0; b < 2; b++) {
            qwen_sampler *plain = make(1.0f, top_ks[b], 1.0f, 0.0f, 11);

            memset(ref, 0, sizeof(ref));
            for (i = 0; i < n; i++) {
                memcpy(l, base_logits, sizeof(l));
                ref[f ? qwen_sampler_sample_filtered(plain, l, not_id5, NULL)
                      : qwen_sampler_sample(plain, l)]++;
            }
            qwen_sampler_free(plain);
            for (a = 0; a < 4; a++) {
                qwen_sampler *s = make(1.0f, top_ks[b], 1.0f, 0.0f, 12 + (uint64_t) a);

                memset(counts, 0, sizeof(counts));
                for (i = 0; i < n; i++) {
                    memcpy(l, base_logits, sizeof(l));
                    counts[qwen_sampler_sample_draft(s, l, drafts[a], f ? not_id5 : NULL,
                                                     NULL)]++;
                }
                for (i = 0; i < V; i++) {
                    worst = fmax(worst, fabs((counts[i] - ref[i]) / (double) n));
                }
                CHECK(!f || counts[5] == 0, "filtered draft: a refused token came");
                CHECK(top_ks[b] == 0 || counts[6] == 0, "top-k 3: a token outside came");
                qwen_sampler_free(s);
            }
        }
    }
    /* two samples of 30000: the difference of two frequencies has a
     * standard error below 0.0041 */
    CHECK(worst < 0.02, "drafted sampling differs from plain sampling by %.4f", worst);
    {
        qwen_sampler *g = make(0.0f, 0, 1.0f, 0.0f, 1);

        memcpy(l, base_logits, sizeof(l));
        CHECK(qwen_sampler_sample_draft(g, l, 6, NULL, NULL) == 1, "greedy ignores the draft");
        qwen_sampler_free(g);
    }
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

    p = qwen_sampling_default_params();
    p.temperature = 0.0f;
    p.repetition_penalty = 2.0f;
    p.penalty_last_n = 64;
    s = qwen_sampler_new(&p, V);
    qwen_sampler_accept(s, 1);      /* 3.0 -> 1.5: now id 5 (2.9) wins */
    memcpy(l, base_logits, sizeof(l));
    CHECK(qwen_sampler_sample(s, l) == 5, "repetition penalty must demote id 1");
    CHECK(fabsf(l[1] - 1.5f) < 1e-6, "positive logit divided: %g", l[1]);
    qwen_sampler_free(s);

    p = qwen_sampling_default_params();
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
    p = qwen_sampling_default_params();
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

/* ----------------------------------------- a vocabulary-sized distribution */

#define BIG 20000

static float big_logits[BIG];

static int
desc_by_logit(const void *a, const void *b)
{
    float x = big_logits[*(const int *) a], y = big_logits[*(const int *) b];

    return (x < y) - (x > y);
}

/* Draws n tokens with these parameters; counts[id] += 1 for each. */
static int
allow_all(void *ctx, int32_t token)
{
    (void) ctx;
    (void) token;
    return 1;
}

/* filtered: through qwen_sampler_sample_filtered with every token allowed,
 * which cuts and draws over sorted candidates, where the plain path bins
 * the whole vocabulary: both must give the distribution defined here. */
static void
draw_big(float temp, int top_k, float top_p, float min_p, int n, int *counts, int filtered)
{
    qwen_sampling_params p;
    qwen_sampler        *s;
    static float         l[BIG];
    int                  i;

    p = qwen_sampling_default_params();
    p.temperature = temp;
    p.top_k = top_k;
    p.top_p = top_p;
    p.min_p = min_p;
    p.seed = 11;
    s = qwen_sampler_new(&p, BIG);
    memset(counts, 0, BIG * sizeof(int));
    for (i = 0; i < n; i++) {
        memcpy(l, big_logits, sizeof(l));
        counts[filtered ? qwen_sampler_sample_filtered(s, l, allow_all, NULL)
                        : qwen_sampler_sample(s, l)]++;
    }
    qwen_sampler_free(s);
}

/*
 * The fast paths over a 20000-token vocabulary (argmax, top-k by a heap
 * scan, top-p/min-p without a full sort) against the definitions computed
 * here by sorting everything: the support must be exactly the allowed set
 * and the frequencies must follow its renormalised softmax.
 */
static void
test_large_vocabulary(void)
{
    static int order[BIG], counts[BIG];
    static double prob[BIG];
    uint64_t   x = 88172645463325252ull;
    double     z, cum, worst;
    int        i, k, outside, n_draw = 40000;
    float      temps[] = { 1.0f, 1.0f, 30.0f };
    float      top_ps[] = { 0.9f, 1.0f, 0.95f };
    /* the filtered path sorts every allowed token per draw (top-k off):
     * a twentieth of the draws, and a tolerance of about four standard
     * deviations of a frequency near 0.3 over 1000 draws */
    int        c, draws[] = { 20000, 20000, 1000 };
    double     tolerance;

    for (i = 0; i < BIG; i++) {
        double u1, u2;
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        u1 = ((x >> 11) + 0.5) / 9007199254740992.0;
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        u2 = ((x >> 11) + 0.5) / 9007199254740992.0;
        big_logits[i] = (float) (4.0 * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
        order[i] = i;
    }
    /* argmax: the first of two equal maxima, away from a multiple of 8 */
    big_logits[12345] = 40.0f;
    big_logits[17771] = 40.0f;
    qsort(order, BIG, sizeof(int), desc_by_logit);
    CHECK(qwen_argmax(big_logits, BIG) == 12345, "argmax: %d, not the first maximum 12345",
          qwen_argmax(big_logits, BIG));
    for (k = 0, i = 1; i < 12345; i++) if (big_logits[i] > big_logits[k]) k = i;
    CHECK(qwen_argmax(big_logits, 12345) == k, "argmax of a prefix: %d, not %d",
          qwen_argmax(big_logits, 12345), k);
    big_logits[12345] = big_logits[17771] = 8.0f;   /* keep a spread at the top */
    for (i = 0; i < BIG; i++) order[i] = i;
    qsort(order, BIG, sizeof(int), desc_by_logit);

    /* top-k 50 at T=1: only the 50 best, in softmax proportions */
    draw_big(1.0f, 50, 1.0f, 0.0f, n_draw, counts, 0);
    for (z = 0.0, i = 0; i < 50; i++) z += exp(big_logits[order[i]] - big_logits[order[0]]);
    for (worst = 0.0, i = 0; i < 50; i++) {
        double want = exp(big_logits[order[i]] - big_logits[order[0]]) / z;
        worst = fmax(worst, fabs(counts[order[i]] / (double) n_draw - want));
    }
    for (outside = 0, i = 50; i < BIG; i++) outside += counts[order[i]];
    CHECK(outside == 0, "top_k 50: %d draws outside the 50 best", outside);
    CHECK(worst < 0.012, "top_k 50: frequencies differ from the softmax by %.4f", worst);

    /* no top-k: top_p 0.9 (a nucleus of a few tokens), none (the whole
     * vocabulary), and T=30 with top_p 0.95 (a flat nucleus of thousands) */
    for (c = 0; c < 6; c++) {
        int    path = c / 3;    /* 0: plain, 1: filtered */
        int    n_draws = path ? draws[c % 3] / 20 : draws[c % 3];
        double mx = big_logits[order[0]] / temps[c % 3];
        for (z = 0.0, i = 0; i < BIG; i++) {
            prob[i] = exp(big_logits[order[i]] / temps[c % 3] - mx);
            z += prob[i];
        }
        k = BIG;
        if (top_ps[c % 3] < 1.0f) {
            for (cum = 0.0, i = 0; i < BIG; i++) {
                cum += prob[i] / z;
                if (cum >= top_ps[c % 3]) {
                    k = i + 1;
                    break;
                }
            }
        }
        for (z = 0.0, i = 0; i < k; i++) z += prob[i];
        draw_big(temps[c % 3], 0, top_ps[c % 3], 0.0f, n_draws, counts, path);
        tolerance = path ? 0.06 : 0.012;
        for (outside = 0, i = k; i < BIG; i++) outside += counts[order[i]];
        for (worst = 0.0, i = 0; i < k && i < 200; i++) {
            worst = fmax(worst, fabs(counts[order[i]] / (double) n_draws - prob[i] / z));
        }
        printf("%s: T %.0f top_p %.2f: nucleus of %d tokens, %d draws outside, worst frequency "
               "error %.4f\n", path ? "filtered" : "plain", temps[c % 3], top_ps[c % 3], k, outside, worst);
        CHECK(outside == 0, "path %d T %g top_p %g: %d draws outside the nucleus of %d", path,
              temps[c % 3],
              top_ps[c % 3], outside, k);
        CHECK(worst < tolerance, "path %d T %g top_p %g: frequencies differ by %.4f", path,
              temps[c % 3], top_ps[c % 3], worst);
    }

    /* min_p 0.2 with top_p 0.99: the tighter cut wins */
    for (c = 0; c < 2; c++) {
        draw_big(1.0f, 0, 0.99f, 0.2f, c ? 300 : 2000, counts, c);
        for (outside = 0, i = 0; i < BIG; i++) {
            if (counts[i] && big_logits[i] - big_logits[order[0]] < log(0.2) - 1e-6) outside++;
        }
        CHECK(outside == 0, "path %d min_p 0.2: %d tokens below the cut drawn", c, outside);
    }
}

int
main(void)
{
    test_greedy_and_seed();
    test_distribution();
    test_draft_distribution();
    test_filters();
    test_penalties();
    test_large_vocabulary();
    TEST_MAIN_END();
}
