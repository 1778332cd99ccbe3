/*
 * sampler.c - turns logits into the next token: repetition, presence and
 * frequency penalties over the recent history, then greedy, or temperature
 * with top-k, min-p and top-p filtering and a seeded xoshiro256** draw, so
 * the same seed and input always give the same tokens.
 */
#include "qwen.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int32_t id;
    float   p;
} candidate;

struct qwen_sampler {
    qwen_sampling_params params;
    int                  vocab_size;
    uint64_t             rng[4];
    int32_t             *history;     /* ring of recent tokens */
    size_t               hist_cap;
    size_t               hist_len;    /* tokens seen (may exceed cap) */
    int32_t             *counts;      /* scratch [vocab], all zero between uses */
    candidate           *cand;        /* scratch [vocab] */
    int                  owns_scratch;
};

qwen_sampling_params
qwen_sampling_default_params(void)
{
    /* Qwen3's recommended non-thinking settings; no min-p, no penalties */
    return (qwen_sampling_params) {
        .temperature = 0.7f, .top_k = 20, .top_p = 0.8f, .repetition_penalty = 1.0f,
        .penalty_last_n = 64,
    };
}

static uint64_t
splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t
rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t
xoshiro_next(uint64_t *s)
{
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* uniform in [0, 1) with 24 bits, enough for a categorical draw */
static float
rand_unit(uint64_t *s)
{
    return (float) (xoshiro_next(s) >> 40) / 16777216.0f;
}

static qwen_sampler *
sampler_new(const qwen_sampling_params *p, int vocab_size, qwen_sampler *owner)
{
    qwen_sampler *s;
    uint64_t      seed;

    if (vocab_size < 1) {
        return NULL;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    s->params = *p;
    s->vocab_size = vocab_size;
    seed = p->seed;
    s->rng[0] = splitmix64(&seed);
    s->rng[1] = splitmix64(&seed);
    s->rng[2] = splitmix64(&seed);
    s->rng[3] = splitmix64(&seed);
    s->hist_cap = p->penalty_last_n > 0 ? (size_t) p->penalty_last_n : 256;
    s->history = malloc(s->hist_cap * sizeof(int32_t));
    if (owner != NULL) {
        s->counts = owner->counts;
        s->cand = owner->cand;
    } else {
        s->owns_scratch = 1;
        s->counts = calloc((size_t) vocab_size, sizeof(int32_t));
        s->cand = malloc((size_t) vocab_size * sizeof(candidate));
    }
    if (s->history == NULL || s->counts == NULL || s->cand == NULL) {
        qwen_sampler_free(s);
        return NULL;
    }
    return s;
}

qwen_sampler *
qwen_sampler_new(const qwen_sampling_params *p, int vocab_size)
{
    return sampler_new(p, vocab_size, NULL);
}

qwen_sampler *
qwen_sampler_new_sharing(const qwen_sampling_params *p, qwen_sampler *owner)
{
    return owner != NULL ? sampler_new(p, owner->vocab_size, owner) : NULL;
}

void
qwen_sampler_free(qwen_sampler *s)
{
    if (s == NULL) {
        return;
    }
    free(s->history);
    if (s->owns_scratch) {
        free(s->counts);
        free(s->cand);
    }
    free(s);
}

void
qwen_sampler_accept(qwen_sampler *s, int32_t token)
{
    int32_t *grown;

    if (s->params.penalty_last_n < 0 && s->hist_len == s->hist_cap) {
        /* unbounded history: grow instead of wrapping */
        grown = realloc(s->history, 2 * s->hist_cap * sizeof(int32_t));
        if (grown != NULL) {
            s->history = grown;
            s->hist_cap *= 2;
        }
    }
    s->history[s->hist_len % s->hist_cap] = token;
    s->hist_len++;
}

static int
penalties_active(const qwen_sampling_params *p)
{
    return p->penalty_last_n != 0
           && (p->repetition_penalty != 1.0f || p->presence_penalty != 0.0f
               || p->frequency_penalty != 0.0f);
}

static void
apply_penalties(qwen_sampler *s, float *logits)
{
    const qwen_sampling_params *p = &s->params;
    size_t                      n = s->hist_len < s->hist_cap ? s->hist_len : s->hist_cap;
    size_t                      i;
    int32_t                     id;

    for (i = 0; i < n; i++) {
        id = s->history[i];
        if (id >= 0 && id < s->vocab_size) {
            s->counts[id]++;
        }
    }
    for (i = 0; i < n; i++) {
        id = s->history[i];
        if (id < 0 || id >= s->vocab_size || s->counts[id] == 0) {
            continue;   /* out of range, or already penalised */
        }
        if (p->repetition_penalty != 1.0f && p->repetition_penalty > 0.0f) {
            logits[id] = logits[id] > 0.0f ? logits[id] / p->repetition_penalty
                                           : logits[id] * p->repetition_penalty;
        }
        logits[id] -= p->presence_penalty + p->frequency_penalty * (float) s->counts[id];
        s->counts[id] = 0;
    }
}

static int
cand_desc(const void *a, const void *b)
{
    float pa = ((const candidate *) a)->p, pb = ((const candidate *) b)->p;

    return (pa < pb) - (pa > pb);
}

/* Keep the k largest logits at the front of c (unordered): quickselect. */
static void
select_top_k(candidate *c, int n, int k)
{
    int       lo = 0, hi = n - 1, i, store;
    float     pivot;
    candidate tmp;

    while (lo < hi) {
        pivot = c[(lo + hi) / 2].p;
        tmp = c[(lo + hi) / 2]; c[(lo + hi) / 2] = c[hi]; c[hi] = tmp;
        store = lo;
        for (i = lo; i < hi; i++) {
            if (c[i].p > pivot) {
                tmp = c[i]; c[i] = c[store]; c[store] = tmp;
                store++;
            }
        }
        tmp = c[store]; c[store] = c[hi]; c[hi] = tmp;
        if (store == k - 1 || store == k) {
            return;
        }
        if (store < k) {
            lo = store + 1;
        } else {
            hi = store - 1;
        }
    }
}

/* c[0..k) as a min-heap on p: move c[i] down to its place. */
static void
heap_sift_down(candidate *c, int k, int i)
{
    candidate x = c[i];
    int       j;

    for (;;) {
        j = 2 * i + 1;
        if (j >= k) {
            break;
        }
        if (j + 1 < k && c[j + 1].p < c[j].p) {
            j++;
        }
        if (!(c[j].p < x.p)) {
            break;
        }
        c[i] = c[j];
        i = j;
    }
    c[i] = x;
}

/*
 * The k largest logits into c[0..k) (unordered), in one pass: c is a
 * min-heap of the best so far, and a token enters only when it beats the
 * smallest kept. After the first few thousand tokens that is rare, so the
 * pass is one comparison per token instead of a quickselect over copies.
 */
static void
top_k_scan(const float *logits, int n, int k, candidate *c)
{
    int   i;
    float floor;

    for (i = 0; i < k; i++) {
        c[i].id = i;
        c[i].p = logits[i];
    }
    for (i = k / 2 - 1; i >= 0; i--) {
        heap_sift_down(c, k, i);
    }
    floor = c[0].p;
    for (i = k; i < n; i++) {
        if (logits[i] > floor) {
            c[0].id = i;
            c[0].p = logits[i];
            heap_sift_down(c, k, 0);
            floor = c[0].p;
        }
    }
}

/*
 * The one cut-and-draw: c[0..k) sorted by weight, descending, where z is
 * the mass the weights are measured against (their own sum, or the whole
 * vocabulary's when only the tokens above a floor were kept). min-p cuts
 * relative to the best, top-p at the cumulative mass, then a seeded draw
 * among the survivors. Sums in double, which costs nothing next to the
 * expf of each weight: a float running sum over Qwen3's 151,936 tokens
 * ends ~1e-6 short of the total, enough to move a flat nucleus' top-p cut
 * by a token (T=30, top-p 0.95: 142,022 vs 142,023 tokens).
 */
static int32_t
cut_and_draw(qwen_sampler *s, const candidate *c, int k, double z, int32_t draft)
{
    const qwen_sampling_params *p = &s->params;
    double                      cum, w_draft = 0.0;
    float                       r;
    int                         i;

    if (p->min_p > 0.0f) {
        for (i = 1; i < k; i++) {
            if (c[i].p < p->min_p * c[0].p) {
                k = i;
                break;
            }
        }
    }
    if (p->top_p > 0.0f && p->top_p < 1.0f) {
        cum = 0.0;
        for (i = 0; i < k; i++) {
            cum += c[i].p;
            if (cum >= p->top_p * z) {
                k = i + 1;
                break;
            }
        }
    }
    cum = 0.0;
    for (i = 0; i < k; i++) {
        cum += c[i].p;
        w_draft += c[i].id == draft ? c[i].p : 0.0;
    }
    if (draft >= 0) {
        /* a proposed token (speculative decoding with a deterministic
         * proposal): taken with its probability, else the draw is from
         * the others, so the result follows the distribution above */
        if (rand_unit(s->rng) * cum < w_draft) {
            return draft;
        }
        cum -= w_draft;
        if (!(cum > 0.0)) {
            return draft;
        }
    }
    r = rand_unit(s->rng) * (float) cum;
    cum = 0.0;
    for (i = 0; i < k; i++) {
        if (c[i].id == draft) {
            continue;
        }
        cum += c[i].p;
        if (r < cum) {
            return c[i].id;
        }
    }
    for (i = k - 1; i > 0 && c[i].id == draft; i--) {
    }
    return c[i].id;
}

/* Softmax weights over c[0..k) (sorted, descending, scaled logits), then
 * the cut and draw. */
static int32_t
draw_sorted(qwen_sampler *s, candidate *c, int k, int32_t draft)
{
    float  mx = c[0].p;
    double z = 0.0;
    int    i;

    for (i = 0; i < k; i++) {
        c[i].p = expf(c[i].p - mx);
        z += c[i].p;
    }
    return cut_and_draw(s, c, k, z, draft);
}

/*
 * Sampling over the whole vocabulary (top-k off): the same distribution as
 * sorting every token and cutting with min-p and top-p, without the sort.
 * Probabilities relative to the best token are binned by their log (a
 * quarter nat per bin); walking the bins from the top finds the bin where
 * top-p's cumulative mass is reached, so only the tokens at or above it
 * (the nucleus and a few more) are sorted for the exact cut. With neither
 * cut the draw walks the tokens in vocabulary order.
 */
#define DRAW_BINS 64

static int32_t
draw_full(qwen_sampler *s, const float *logits, int n, float inv_t, int32_t draft)
{
    const qwen_sampling_params *p = &s->params;
    candidate                  *c = s->cand;
    double                      mass[DRAW_BINS] = { 0 }, z = 0.0, cum;
    float                       mx = logits[qwen_argmax(logits, n)], d, e, floor = 0.0f, r;
    int                         i, b, k;

    for (i = 0; i < n; i++) {
        d = (mx - logits[i]) * inv_t;
        /* past 88 nats e^-d is below FLT_MIN: 0, as expf gives */
        e = d < 88.0f ? expf(-d) : 0.0f;
        b = d < (DRAW_BINS - 1) / 4.0f ? (int) (d * 4.0f) : DRAW_BINS - 1;
        c[i].id = i;
        c[i].p = e;
        mass[b] += e;
        z += e;
    }
    if (p->top_p > 0.0f && p->top_p < 1.0f) {
        cum = 0.0;
        for (b = 0; b < DRAW_BINS - 1; b++) {
            cum += mass[b];
            if (cum >= p->top_p * z) {
                break;
            }
        }
        /* the lower edge of that bin, a little lower for expf's rounding;
         * a nucleus reaching the last bin sorts every token that can be drawn */
        floor = b < DRAW_BINS - 1 ? expf(-(b + 1) / 4.0f) * 0.999f : FLT_MIN;
    }
    if (p->min_p > 0.0f && p->min_p * 0.999f > floor) {
        floor = p->min_p * 0.999f;
    }
    if (floor == 0.0f && draft >= 0) {
        return cut_and_draw(s, c, n, z, draft);     /* no cuts: any order does */
    }
    if (floor == 0.0f) {
        r = rand_unit(s->rng) * (float) z;
        cum = 0.0;
        for (i = 0; i < n; i++) {
            cum += c[i].p;
            if (r < cum) {
                return c[i].id;
            }
        }
        return qwen_argmax(logits, n);
    }
    k = 0;
    for (i = 0; i < n; i++) {
        if (c[i].p >= floor) {
            c[k++] = c[i];
        }
    }
    qsort(c, (size_t) k, sizeof(candidate), cand_desc);
    return cut_and_draw(s, c, k, z, draft);
}

static int32_t
sample_plain(qwen_sampler *s, float *logits, int32_t draft)
{
    const qwen_sampling_params *p = &s->params;
    candidate                  *c = s->cand;
    int                         n = s->vocab_size, i, k;
    float                       inv_t;

    if (penalties_active(p)) {
        apply_penalties(s, logits);
    }
    if (!(p->temperature > 0.0f)) {
        return qwen_argmax(logits, n);
    }
    inv_t = 1.0f / p->temperature;
    if (!(p->top_k > 0 && p->top_k < n)) {
        return draw_full(s, logits, n, inv_t, draft);
    }
    k = p->top_k;
    top_k_scan(logits, n, k, c);
    for (i = 0; i < k; i++) {
        c[i].p *= inv_t;
    }
    /* softmax over the survivors, sorted by probability */
    qsort(c, (size_t) k, sizeof(candidate), cand_desc);
    return draw_sorted(s, c, k, draft);
}

int32_t
qwen_sampler_sample(qwen_sampler *s, float *logits)
{
    return sample_plain(s, logits, -1);
}

/* ------------------------------------------------------ filtered sampling */

/*
 * The want best allowed candidates of c[0..n), descending, into c[0..k);
 * returns k. The best few are tried first from a partial selection (64,
 * then 512, then 4096): most steps end there (inside a JSON string nearly
 * every token is allowed, inside a pattern a few hundred checks find the
 * ones that fit). Otherwise, or with want >= n (top-k off), every token is checked once
 * and the best allowed ones selected: the fallback, about a millisecond
 * over Qwen3's vocabulary since most tokens fail on their first byte.
 */
#define ROUND_MAX 4096

static int
best_allowed(candidate *c, int n, int want, qwen_token_filter allowed, void *ctx)
{
    static __thread candidate top[ROUND_MAX];
    int                       pos[ROUND_MAX / 2];
    int                       k = 0, i, first;

    /* the best 64, 512, 4096 by logit, each sorted and checked in order:
     * the first `want` allowed among the best m are the best allowed of
     * all, so inside a constrained string a few hundred checks find them
     * where a scan would check the whole vocabulary */
    for (first = want * 2 < 64 ? 64 : want * 2; first < n && first <= ROUND_MAX; first *= 8) {
        /* a min-heap scan into top: one comparison per candidate, and c
         * stays whole for the next round */
        float floor;

        for (i = 0; i < first; i++) {
            top[i] = c[i];
        }
        for (i = first / 2 - 1; i >= 0; i--) {
            heap_sift_down(top, first, i);
        }
        floor = top[0].p;
        for (i = first; i < n; i++) {
            if (c[i].p > floor) {
                top[0] = c[i];
                heap_sift_down(top, first, 0);
                floor = top[0].p;
            }
        }
        qsort(top, (size_t) first, sizeof(candidate), cand_desc);
        k = 0;
        for (i = 0; i < first && k < want; i++) {
            if (allowed(ctx, top[i].id)) {
                pos[k++] = i;
            }
        }
        if (k == want) {
            for (i = 0; i < k; i++) {
                c[i] = top[pos[i]];
            }
            return k;
        }
    }
    k = 0;
    for (i = 0; i < n; i++) {
        if (allowed(ctx, c[i].id)) {
            c[k++] = c[i];
        }
    }
    if (want < k) {
        select_top_k(c, k, want);
        k = want;
    }
    qsort(c, (size_t) k, sizeof(candidate), cand_desc);
    return k;
}

static int32_t
sample_filtered(qwen_sampler *s, float *logits, const int32_t *ids, int n_ids,
                qwen_token_filter allowed, void *ctx, int32_t draft)
{
    const qwen_sampling_params *p = &s->params;
    candidate                  *c = s->cand;
    int                         n = s->vocab_size, i, k, want, greedy;
    float                       inv_t;
    int32_t                     best;

    if (penalties_active(p)) {
        apply_penalties(s, logits);
    }
    greedy = !(p->temperature > 0.0f);
    if (greedy && ids == NULL) {
        best = qwen_argmax(logits, n);
        if (logits[best] != -INFINITY && allowed(ctx, best)) {
            return best;
        }
    }
    inv_t = greedy ? 1.0f : 1.0f / p->temperature;
    /* a banned token (logit -inf: logit_bias -100) stays banned even when
     * the filter allows nothing else: then nothing is drawn (-1) */
    k = 0;
    if (ids != NULL) {
        /* only these can be allowed: the rest is never looked at */
        for (i = 0; i < n_ids; i++) {
            if (logits[ids[i]] != -INFINITY) {
                c[k].id = ids[i];
                c[k++].p = logits[ids[i]] * inv_t;
            }
        }
    } else {
        for (i = 0; i < n; i++) {
            if (logits[i] != -INFINITY) {
                c[k].id = i;
                c[k++].p = logits[i] * inv_t;
            }
        }
    }
    n = k;
    want = greedy ? 1 : (p->top_k > 0 && p->top_k < n ? p->top_k : n);
    k = best_allowed(c, n, want, allowed, ctx);
    if (k == 0) {
        return -1;
    }
    return greedy ? c[0].id : draw_sorted(s, c, k, draft);
}

int32_t
qwen_sampler_sample_filtered(qwen_sampler *s, float *logits, qwen_token_filter allowed,
                             void *ctx)
{
    return sample_filtered(s, logits, NULL, 0, allowed, ctx, -1);
}

int32_t
qwen_sampler_sample_among(qwen_sampler *s, float *logits, const int32_t *ids, int n_ids,
                          int32_t draft, qwen_token_filter allowed, void *ctx)
{
    if (draft < 0 || draft >= s->vocab_size) {
        draft = -1;
    }
    if (n_ids <= 0) {
        return -1;
    }
    return sample_filtered(s, logits, ids, n_ids, allowed, ctx, draft);
}

int32_t
qwen_sampler_sample_draft(qwen_sampler *s, float *logits, int32_t draft,
                          qwen_token_filter allowed, void *ctx)
{
    if (draft < 0 || draft >= s->vocab_size) {
        draft = -1;
    }
    return allowed != NULL ? sample_filtered(s, logits, NULL, 0, allowed, ctx, draft)
                           : sample_plain(s, logits, draft);
}
