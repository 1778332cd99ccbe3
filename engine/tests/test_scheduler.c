/*
 * test_scheduler.c - the serving engine as nginx drives it: submit from one
 * thread, wait on the eventfd, drain ready requests. Checks that batched
 * requests give the same greedy tokens as each run alone, the queue limit,
 * cancellation during prefill and decode (the slot is reused), pause,
 * max_tokens, stop ids, logprobs, and parameter errors; the prefix
 * cache: requests that start like earlier ones (prompts and answers) skip
 * the cached part and still answer as they would without the cache; the
 * thinking budget (the closing tokens forced in order after the budget,
 * within max_tokens, the grammar on after the forced </think>) and the
 * repetition guard (one token and a span of 3 repeated, a broken cycle).
 */
#include "test.h"
#include "qwen.h"

#include <math.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static qwen_model *model;
static int         vocab;

typedef struct {
    qwen_request     *req;
    int32_t           tokens[512];
    float             logprobs[512];
    float             gaps[512];
    int               n;
    qwen_finish       finish;
    int               done;
} tracked;

static void
make_prompt(int32_t *ids, int n, uint32_t seed)
{
    int i;

    for (i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        ids[i] = (int32_t) ((seed >> 8) % 151000u);
    }
}

static qwen_engine *
engine_new_cache(int slots, int queue, int batch, int prefix_cache)
{
    qwen_engine_params p = qwen_engine_default_params();
    char               err[QWEN_ERR_LEN];
    qwen_engine       *e;

    p.n_threads = 2;
    p.n_slots = slots;
    p.n_ctx = 1024;
    p.n_batch = batch;
    p.max_queue = queue;
    p.prefix_cache = prefix_cache;
    e = qwen_engine_new(model, &p, err, sizeof(err));
    CHECK(e != NULL, "engine: %s", err);
    return e;
}

static qwen_engine *
engine_new(int slots, int queue, int batch)
{
    return engine_new_cache(slots, queue, batch, 1);
}

static qwen_request_params
greedy_params(const int32_t *ids, int n, int max_tokens)
{
    qwen_request_params p = qwen_request_default_params();

    p.prompt = ids;
    p.n_prompt = (size_t) n;
    p.max_tokens = max_tokens;
    p.sampling.temperature = 0.0f;
    p.sampling.penalty_last_n = 0;
    p.ignore_eos = 1;
    return p;
}

/* Drain news into the tracked requests; returns how many finished. */
static int
pump(qwen_engine *e, int timeout_ms)
{
    struct pollfd     pfd = { qwen_engine_notify_fd(e), POLLIN, 0 };
    uint64_t          v;
    qwen_request     *ready[64];
    qwen_token_event  ev[64];
    size_t            n, i, k;
    int               finished = 0;
    tracked          *t;

    if (poll(&pfd, 1, timeout_ms) <= 0) {
        return 0;
    }
    if (read(pfd.fd, &v, sizeof(v)) != sizeof(v)) {
        return 0;
    }
    n = qwen_engine_ready(e, ready, 64);
    for (i = 0; i < n; i++) {
        t = qwen_request_user_data(ready[i]);
        for ( ;; ) {
            qwen_finish f;
            size_t           got = qwen_request_poll(ready[i], ev, 64, &f);
            for (k = 0; k < got && t->n < 512; k++) {
                t->logprobs[t->n] = ev[k].logprob;
                t->gaps[t->n] = ev[k].gap_ms;
                t->tokens[t->n++] = ev[k].token;
            }
            if (f != QWEN_FINISH_NONE && !t->done) {
                t->finish = f;
                t->done = 1;
                finished++;
            }
            if (got < 64) {
                break;
            }
        }
    }
    return finished;
}

static int
wait_all(qwen_engine *e, tracked *t, int n, int seconds)
{
    time_t end = time(NULL) + seconds;
    int    i, all;

    for ( ;; ) {
        all = 1;
        for (i = 0; i < n; i++) {
            all &= t[i].done;
        }
        if (all || time(NULL) > end) {
            return all;
        }
        pump(e, 100);
    }
}

static void
test_batched_equals_alone(void)
{
    enum { N = 6, GEN = 24 };
    int32_t      prompts[N][40];
    tracked      alone[N], together[N];
    qwen_engine *e;
    char         err[QWEN_ERR_LEN];
    int          i, lens[N] = { 5, 40, 17, 1, 33, 9 };
    qwen_request_params p;

    memset(alone, 0, sizeof(alone));
    memset(together, 0, sizeof(together));
    for (i = 0; i < N; i++) {
        make_prompt(prompts[i], lens[i], 100 + i);
    }
    /* alone: one slot, one request at a time */
    e = engine_new(1, 8, 64);
    for (i = 0; e && i < N; i++) {
        p = greedy_params(prompts[i], lens[i], GEN);
        CHECK(qwen_submit(e, &p, &alone[i], &alone[i].req, err, sizeof(err)) == 0, "%s", err);
        CHECK(wait_all(e, &alone[i], 1, 60), "request %d did not finish alone", i);
        qwen_request_release(alone[i].req);
    }
    qwen_engine_free(e);

    /* together: 3 slots, 3 queued, small batches so prefill chunks and
     * decode steps share batches */
    e = engine_new(3, 8, 8);
    for (i = 0; e && i < N; i++) {
        p = greedy_params(prompts[i], lens[i], GEN);
        CHECK(qwen_submit(e, &p, &together[i], &together[i].req, err, sizeof(err)) == 0,
              "%s", err);
    }
    CHECK(e && wait_all(e, together, N, 120), "batched requests did not finish");
    for (i = 0; i < N; i++) {
        CHECK(together[i].n == GEN && together[i].finish == QWEN_FINISH_LENGTH,
              "request %d: %d tokens, finish %s", i, together[i].n,
              qwen_finish_name(together[i].finish));
        CHECK(alone[i].n == GEN && memcmp(alone[i].tokens, together[i].tokens,
                                          GEN * sizeof(int32_t)) == 0,
              "request %d: batched tokens differ from the request alone", i);
        if (together[i].req) qwen_request_release(together[i].req);
    }
    {
        qwen_engine_stats st;
        qwen_engine_get_stats(e, &st);
        CHECK(st.generated_tokens == N * GEN && st.finished[QWEN_FINISH_LENGTH] == N
              && st.running == 0 && st.waiting == 0,
              "stats: generated %llu, finished %llu, running %d, waiting %d",
              (unsigned long long) st.generated_tokens,
              (unsigned long long) st.finished[QWEN_FINISH_LENGTH], st.running, st.waiting);
    }
    qwen_engine_free(e);
}

/*
 * Prompt chunks go first come, first served, and a step in which one
 * prompt ends takes a later prompt only while the step is small: behind a
 * long prompt, three 40-token prompts each get a step of their own (their
 * first tokens come one step apart, not all after the step of all three),
 * and three 5-token prompts share one step.
 */
static void
test_prefill_order(void)
{
    enum { N = 7 };
    int32_t      ids[N][900];
    tracked      t[N];
    qwen_engine *e = engine_new_cache(N, 8, 256, 0);
    char         err[QWEN_ERR_LEN];
    int          i, lens[N] = { 900, 40, 40, 40, 5, 5, 5 };
    qwen_engine_stats st;
    qwen_request_timing tm[N];
    qwen_request_params p;

    if (e == NULL) return;
    memset(t, 0, sizeof(t));
    for (i = 0; i < N; i++) {
        make_prompt(ids[i], lens[i], 300 + i);
        p = greedy_params(ids[i], lens[i], 1);
        CHECK(qwen_submit(e, &p, &t[i], &t[i].req, err, sizeof(err)) == 0, "%s", err);
    }
    CHECK(wait_all(e, t, N, 60), "requests did not finish");
    qwen_engine_get_stats(e, &st);
    /* 900 = 3 x 256 + 132: four steps; then one per 40-token prompt, and
     * one for the three short ones (15 tokens) */
    CHECK(st.steps == 8, "%llu steps, expected 4 + 3 + 1", (unsigned long long) st.steps);
    for (i = 0; i < N; i++) {
        CHECK(t[i].n == 1 && t[i].finish == QWEN_FINISH_LENGTH, "request %d: %d tokens, %s",
              i, t[i].n, qwen_finish_name(t[i].finish));
        qwen_request_get_timing(t[i].req, &tm[i]);
    }
    /* submitted microseconds apart: the first-token times keep that order */
    for (i = 1; i < 4; i++) {
        CHECK(tm[i].first_token_ms > tm[i - 1].first_token_ms,
              "request %d's first token (%.2f ms) not after request %d's (%.2f ms)",
              i, tm[i].first_token_ms, i - 1, tm[i - 1].first_token_ms);
    }
    for (i = 0; i < N; i++) {
        qwen_request_release(t[i].req);
    }
    qwen_engine_free(e);
}

static void
test_queue_and_cancel(void)
{
    int32_t      ids[600];
    tracked      t[4];
    qwen_engine *e = engine_new(1, 1, 16);
    char         err[QWEN_ERR_LEN];
    qwen_request_params p;
    qwen_request *extra = NULL;
    int          rc;

    if (e == NULL) return;
    memset(t, 0, sizeof(t));
    make_prompt(ids, 600, 7);
    /* a long prompt: 38 prefill steps of 16 tokens */
    p = greedy_params(ids, 600, 300);
    CHECK(qwen_submit(e, &p, &t[0], &t[0].req, err, sizeof(err)) == 0, "%s", err);
    p = greedy_params(ids, 10, 5);
    CHECK(qwen_submit(e, &p, &t[1], &t[1].req, err, sizeof(err)) == 0, "%s", err);
    rc = qwen_submit(e, &p, &t[2], &extra, err, sizeof(err));
    CHECK(rc == QWEN_E_QUEUE_FULL && extra == NULL, "third request: rc %d (%s)", rc, err);
    CHECK(strstr(err, "queue") != NULL, "queue-full message: %s", err);

    /* cancel the long one while it is still in prefill */
    usleep(20000);
    qwen_request_cancel(t[0].req);
    CHECK(wait_all(e, t, 2, 60), "cancelled + queued requests did not finish");
    CHECK(t[0].finish == QWEN_FINISH_CANCELLED, "first: finish %s",
          qwen_finish_name(t[0].finish));
    CHECK(t[0].n < 300, "cancelled request generated %d tokens", t[0].n);
    CHECK(t[1].finish == QWEN_FINISH_LENGTH && t[1].n == 5, "the queued request got the slot: "
          "%d tokens, %s", t[1].n, qwen_finish_name(t[1].finish));
    qwen_request_release(t[0].req);
    qwen_request_release(t[1].req);

    /* release without polling: the engine frees it (ASan checks leaks) */
    p = greedy_params(ids, 50, 100);
    CHECK(qwen_submit(e, &p, &t[3], &t[3].req, err, sizeof(err)) == 0, "%s", err);
    usleep(10000);
    qwen_request_release(t[3].req);
    /* a later request still runs */
    memset(&t[2], 0, sizeof(t[2]));
    p = greedy_params(ids, 3, 4);
    CHECK(qwen_submit(e, &p, &t[2], &t[2].req, err, sizeof(err)) == 0, "%s", err);
    CHECK(wait_all(e, &t[2], 1, 30) && t[2].n == 4, "request after a release");
    qwen_request_release(t[2].req);
    qwen_engine_free(e);
}

static void
test_pause(void)
{
    int32_t      ids[8];
    tracked      a, b, c;
    qwen_engine *e = engine_new(2, 2, 16);
    char         err[QWEN_ERR_LEN];
    qwen_request_params p;
    int          before;

    if (e == NULL) return;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    memset(&c, 0, sizeof(c));
    make_prompt(ids, 8, 3);
    p = greedy_params(ids, 8, 200);
    CHECK(qwen_submit(e, &p, &a, &a.req, err, sizeof(err)) == 0, "%s", err);
    while (a.n < 3 && !a.done) pump(e, 100);
    qwen_request_pause(a.req, 1);
    /* 30 steps of another request: any step of a in flight at the pause
     * has long landed after them */
    p = greedy_params(ids, 8, 30);
    CHECK(qwen_submit(e, &p, &b, &b.req, err, sizeof(err)) == 0, "%s", err);
    CHECK(wait_all(e, &b, 1, 30), "the other request runs while one is paused");
    pump(e, 20);
    before = a.n;
    /* 30 more steps: the paused request must not move */
    CHECK(qwen_submit(e, &p, &c, &c.req, err, sizeof(err)) == 0, "%s", err);
    CHECK(wait_all(e, &c, 1, 30), "a second request runs while one is paused");
    pump(e, 20);
    CHECK(a.n == before && !a.done, "paused request advanced: %d -> %d", before, a.n);
    qwen_request_pause(a.req, 0);
    CHECK(wait_all(e, &a, 1, 60) && a.n == 200, "resumed request finishes: %d", a.n);
    qwen_request_release(a.req);
    qwen_request_release(b.req);
    qwen_request_release(c.req);
    qwen_engine_free(e);
}

static void
test_stop_logprobs_errors(void)
{
    int32_t      ids[16];
    tracked      t, u;
    qwen_engine *e = engine_new(2, 2, 16);
    char         err[QWEN_ERR_LEN];
    qwen_request_params p;
    qwen_request *r = NULL;
    int32_t      stop;
    int          i;

    if (e == NULL) return;
    make_prompt(ids, 16, 11);
    memset(&t, 0, sizeof(t));
    p = greedy_params(ids, 16, 10);
    p.n_logprobs = 5;
    CHECK(qwen_submit(e, &p, &t, &t.req, err, sizeof(err)) == 0, "%s", err);
    CHECK(wait_all(e, &t, 1, 30) && t.n == 10, "logprobs request");
    for (i = 0; i < t.n; i++) {
        CHECK(t.logprobs[i] <= 0.0f && t.logprobs[i] > -50.0f, "logprob %g", t.logprobs[i]);
    }
    /* the first token has no gap; each later one the time since the last */
    CHECK(t.gaps[0] == -1.0f, "first token gap %g", t.gaps[0]);
    for (i = 1; i < t.n; i++) {
        CHECK(t.gaps[i] >= 0.0f && t.gaps[i] < 10000.0f, "token %d gap %g ms", i, t.gaps[i]);
    }
    qwen_request_release(t.req);

    /* stop on the third generated token */
    stop = t.tokens[2];
    memset(&u, 0, sizeof(u));
    p = greedy_params(ids, 16, 10);
    p.stop_ids = &stop;
    p.n_stop_ids = 1;
    CHECK(qwen_submit(e, &p, &u, &u.req, err, sizeof(err)) == 0, "%s", err);
    CHECK(wait_all(e, &u, 1, 30), "stop request");
    CHECK(u.finish == QWEN_FINISH_STOP && u.n <= 2, "stop id: %d tokens, %s", u.n,
          qwen_finish_name(u.finish));
    qwen_request_release(u.req);

    p = greedy_params(ids, 16, 2000);
    CHECK(qwen_submit(e, &p, NULL, &r, err, sizeof(err)) == QWEN_E_TOO_LONG && r == NULL,
          "prompt + max_tokens past the context: %s", err);
    ids[3] = vocab;
    p = greedy_params(ids, 16, 4);
    CHECK(qwen_submit(e, &p, NULL, &r, err, sizeof(err)) == QWEN_E_INVALID
          && strstr(err, "vocabulary"), "token outside the vocabulary: %s", err);
    p = greedy_params(ids, 0, 4);
    CHECK(qwen_submit(e, &p, NULL, &r, err, sizeof(err)) == QWEN_E_INVALID, "empty prompt");
    qwen_engine_free(e);
}

/* One greedy request to its end (with the chosen tokens' logprobs);
 * *cached: the prompt tokens it took from the prefix cache. */
static int
run_one(qwen_engine *e, const int32_t *ids, int n, int gen, tracked *t, size_t *cached)
{
    qwen_request_params p = greedy_params(ids, n, gen);
    qwen_request_timing tm;
    char                err[QWEN_ERR_LEN];
    int                 ok;

    memset(t, 0, sizeof(*t));
    p.n_logprobs = 1;
    if (qwen_submit(e, &p, t, &t->req, err, sizeof(err)) != 0) {
        CHECK(0, "submit: %s", err);
        return 0;
    }
    ok = wait_all(e, t, 1, 60);
    qwen_request_get_timing(t->req, &tm);
    *cached = tm.n_cached;
    qwen_request_release(t->req);
    CHECK(ok && t->n == gen, "request of %d tokens: %d generated", n, t->n);
    return ok;
}

static int
same_answer(const tracked *a, const tracked *b)
{
    return a->n == b->n && memcmp(a->tokens, b->tokens, (size_t) a->n * sizeof(int32_t)) == 0
           && memcmp(a->logprobs, b->logprobs, (size_t) a->n * sizeof(float)) == 0;
}

static void
test_prefix_cache(void)
{
    enum { GEN = 12, SHARED = 150, LEN = 190 };
    int32_t           a[LEN], b[LEN], c[LEN], q[LEN + GEN + 20], many[12][200];
    tracked           got[2], want, want_c;
    qwen_engine      *e = engine_new_cache(2, 4, 64, 1), *ref = engine_new_cache(1, 4, 64, 0);
    qwen_engine      *one;
    qwen_engine_stats st;
    char              err[QWEN_ERR_LEN];
    size_t            n_cached, hits = 0, queries = 0, n2[2];
    int               i;

    if (e == NULL || ref == NULL) {
        qwen_engine_free(e);
        qwen_engine_free(ref);
        return;
    }
    make_prompt(a, LEN, 21);
    memcpy(b, a, SHARED * sizeof(int32_t));
    make_prompt(b + SHARED, LEN - SHARED, 22);
    memcpy(c, a, SHARED * sizeof(int32_t));
    make_prompt(c + SHARED, LEN - SHARED, 23);

    /* the first request computes everything */
    run_one(e, a, LEN, GEN, &got[0], &n_cached);
    CHECK(n_cached == 0, "first request: %zu tokens cached", n_cached);
    hits += n_cached; queries += LEN;
    /* the second shares 150 tokens: 4 whole blocks (128) come from the
     * cache and 22 positions more copied from the fifth, and the answer
     * is the one computed without a cache */
    run_one(e, b, LEN, GEN, &got[0], &n_cached);
    run_one(ref, b, LEN, GEN, &want, &n2[0]);
    CHECK(n_cached == 150 && n2[0] == 0, "shared prefix: %zu tokens cached (150), %zu "
          "without the cache", n_cached, n2[0]);
    CHECK(same_answer(&got[0], &want), "an answer over a cached prefix differs");
    hits += n_cached; queries += LEN;

    /* two at once, sharing the cached blocks */
    {
        qwen_request_params p1 = greedy_params(b, LEN, GEN), p2 = greedy_params(c, LEN, GEN);
        qwen_request_timing tm;

        p1.n_logprobs = p2.n_logprobs = 1;
        memset(got, 0, sizeof(got));
        CHECK(qwen_submit(e, &p1, &got[0], &got[0].req, err, sizeof(err)) == 0, "%s", err);
        CHECK(qwen_submit(e, &p2, &got[1], &got[1].req, err, sizeof(err)) == 0, "%s", err);
        CHECK(wait_all(e, got, 2, 60), "two requests over one cached prefix");
        for (i = 0; i < 2; i++) {
            qwen_request_get_timing(got[i].req, &tm);
            n2[i] = tm.n_cached;
            hits += tm.n_cached; queries += LEN;
            qwen_request_release(got[i].req);
        }
        /* b itself is cached whole now (all but the last token, which
         * is computed) */
        CHECK(n2[0] == 189 && n2[1] == 150, "cached tokens %zu (189) and %zu (150)", n2[0],
              n2[1]);
        run_one(ref, c, LEN, GEN, &want_c, &n_cached);
        CHECK(same_answer(&got[1], &want_c), "a request sharing blocks with another differs");
    }

    /* a later turn: the earlier prompt, its answer and more. With F32
     * weights a generated token's K and V are a prompt token's bits, so
     * the answer's blocks were cached too: 6 blocks (192 positions, the
     * last holding the first two answer tokens) */
    run_one(e, a, LEN, GEN, &got[0], &n_cached);
    hits += n_cached; queries += LEN;
    memcpy(q, a, LEN * sizeof(int32_t));
    memcpy(q + LEN, got[0].tokens, GEN * sizeof(int32_t));
    make_prompt(q + LEN + GEN, 20, 24);
    run_one(e, q, LEN + GEN + 20, GEN, &got[0], &n_cached);
    run_one(ref, q, LEN + GEN + 20, GEN, &want, &n2[0]);
    CHECK(n_cached == 192, "a later turn: %zu tokens cached (192)", n_cached);
    CHECK(same_answer(&got[0], &want), "a later turn over the cached answer differs");
    hits += n_cached; queries += LEN + GEN + 20;

    qwen_engine_get_stats(e, &st);
    CHECK(st.prefix_cache_hits == hits && st.prefix_cache_queries == queries
          && st.prefix_cache_blocks > 0, "stats: hits %llu (%zu), queries %llu (%zu), %zu blocks",
          (unsigned long long) st.prefix_cache_hits, hits,
          (unsigned long long) st.prefix_cache_queries, queries, st.prefix_cache_blocks);

    /* cancelled while it runs on cached blocks; the blocks stay good */
    {
        qwen_request_params p = greedy_params(c, LEN, 500);

        memset(&got[0], 0, sizeof(got[0]));
        CHECK(qwen_submit(e, &p, &got[0], &got[0].req, err, sizeof(err)) == 0, "%s", err);
        while (got[0].n < 1 && !got[0].done) pump(e, 50);
        qwen_request_cancel(got[0].req);
        CHECK(wait_all(e, &got[0], 1, 30) && got[0].finish == QWEN_FINISH_CANCELLED,
              "cancel during a cache hit: %s", qwen_finish_name(got[0].finish));
        qwen_request_release(got[0].req);
        run_one(e, c, LEN, GEN, &got[0], &n_cached);
        CHECK(n_cached == 189 && same_answer(&got[0], &want_c), "after a cancel: %zu cached, "
              "answer %s", n_cached, same_answer(&got[0], &want_c) ? "same" : "differs");
    }
    qwen_engine_free(e);

    /* arriving together on a cold cache: the shared prefix is computed
     * once; the others wait a step for its blocks and map them */
    {
        qwen_engine        *three = engine_new_cache(3, 4, 64, 1);
        tracked             tt[3];
        qwen_request_params pp[3];
        qwen_request_timing tm;
        int32_t             d[LEN];
        size_t              n_c[3] = { 0, 0, 0 };

        memcpy(d, a, SHARED * sizeof(int32_t));
        make_prompt(d + SHARED, LEN - SHARED, 25);
        memset(tt, 0, sizeof(tt));
        pp[0] = greedy_params(a, LEN, GEN);
        pp[1] = greedy_params(b, LEN, GEN);
        pp[2] = greedy_params(d, LEN, GEN);
        for (i = 0; three && i < 3; i++) {
            pp[i].n_logprobs = 1;
            CHECK(qwen_submit(three, &pp[i], &tt[i], &tt[i].req, err, sizeof(err)) == 0, "%s",
                  err);
        }
        CHECK(three && wait_all(three, tt, 3, 60), "three requests on a cold cache");
        for (i = 0; three && i < 3; i++) {
            qwen_request_get_timing(tt[i].req, &tm);
            n_c[i] = tm.n_cached;
            qwen_request_release(tt[i].req);
        }
        CHECK(n_c[0] == 0 && n_c[1] == 150 && n_c[2] == 150, "cold start: %zu, %zu and %zu "
              "tokens cached (0, 150, 150)", n_c[0], n_c[1], n_c[2]);
        run_one(ref, b, LEN, GEN, &want, &n2[0]);
        CHECK(same_answer(&tt[1], &want), "a request that waited for a shared prefix differs");
        qwen_engine_free(three);
    }

    /* eviction: one slot of 1024 positions is the whole pool (32 blocks);
     * twelve prompts of 6 blocks each push the oldest out */
    one = engine_new_cache(1, 4, 64, 1);
    for (i = 0; one && i < 12; i++) {
        make_prompt(many[i], 200, 300 + (uint32_t) i);
        run_one(one, many[i], 200, 4, &got[0], &n_cached);
    }
    if (one != NULL) {
        run_one(one, many[11], 200, 4, &got[0], &n_cached);
        run_one(ref, many[11], 200, 4, &want, &n2[0]);
        CHECK(n_cached == 192 && same_answer(&got[0], &want), "the newest prompt: %zu cached "
              "(192)", n_cached);
        run_one(one, many[0], 200, 4, &got[0], &n_cached);
        run_one(ref, many[0], 200, 4, &want, &n2[0]);
        CHECK(n_cached == 0 && same_answer(&got[0], &want), "the oldest prompt was evicted: "
              "%zu cached", n_cached);
    }
    qwen_engine_free(one);
    qwen_engine_free(ref);
}

/*
 * N-gram drafts: greedy output is the same tokens (and logprobs) with
 * drafts on and off, alone and with other requests in the batch; with a
 * prompt the answer copies, drafts are proposed and taken.
 */
static void
test_drafts(void)
{
    enum { GEN = 160 };
    int32_t             ids[120];
    tracked             off, on, batch[3];
    qwen_engine        *e = engine_new(3, 4, 64);
    qwen_request_params p;
    qwen_request_timing tm;
    qwen_logit_bias     few[20];
    size_t              drafted = 0, taken = 0;
    char                err[QWEN_ERR_LEN];
    int                 i, k;

    if (e == NULL) return;
    /* a random model's greedy answer rarely repeats itself; held to the
     * 20 tokens of the prompt's phrase (a +30 bias), it soon does */
    for (k = 0; k < 3; k++) {
        make_prompt(ids, 120, 40 + (uint32_t) k);
        /* the prompt repeats a 20-token phrase: a greedy random model
         * that ends up copying gives the drafts something to find */
        for (i = 60; i < 120; i++) ids[i] = ids[i % 20];
        memset(&off, 0, sizeof(off));
        memset(&on, 0, sizeof(on));
        for (i = 0; i < 20; i++) few[i] = (qwen_logit_bias) { ids[i], 30.0f };
        p = greedy_params(ids, 120, GEN);
        p.n_logprobs = 1;
        p.logit_bias = few;
        p.n_logit_bias = 20;
        p.draft = 0;
        CHECK(qwen_submit(e, &p, &off, &off.req, err, sizeof(err)) == 0, "%s", err);
        CHECK(wait_all(e, &off, 1, 60), "drafts off");
        p.draft = 1;
        CHECK(qwen_submit(e, &p, &on, &on.req, err, sizeof(err)) == 0, "%s", err);
        CHECK(wait_all(e, &on, 1, 60), "drafts on");
        qwen_request_get_timing(on.req, &tm);
        drafted += tm.n_drafted;
        taken += tm.n_draft_accepted;
        CHECK(same_answer(&off, &on), "prompt %d: greedy tokens with drafts differ from "
              "without", k);
        qwen_request_release(off.req);
        qwen_request_release(on.req);
    }
    printf("drafts: %zu proposed, %zu taken over 3 x %d greedy tokens\n", drafted, taken, GEN);
    CHECK(drafted > 0 && taken > 0, "drafts proposed (%zu) and taken (%zu)", drafted, taken);

    /* three at once (fewer drafts each), against each alone without */
    memset(batch, 0, sizeof(batch));
    for (k = 0; k < 3; k++) {
        make_prompt(ids, 120, 40 + (uint32_t) k);
        for (i = 60; i < 120; i++) ids[i] = ids[i % 20];
        p = greedy_params(ids, 120, GEN);
        p.n_logprobs = 1;
        p.logit_bias = few;     /* the third prompt's phrase, for all three */
        p.n_logit_bias = 20;
        CHECK(qwen_submit(e, &p, &batch[k], &batch[k].req, err, sizeof(err)) == 0, "%s", err);
    }
    CHECK(wait_all(e, batch, 3, 90), "three drafting requests");
    for (k = 0; k < 3; k++) {
        make_prompt(ids, 120, 40 + (uint32_t) k);
        for (i = 60; i < 120; i++) ids[i] = ids[i % 20];
        p = greedy_params(ids, 120, GEN);
        p.n_logprobs = 1;
        p.logit_bias = few;
        p.n_logit_bias = 20;
        p.draft = 0;
        memset(&off, 0, sizeof(off));
        CHECK(qwen_submit(e, &p, &off, &off.req, err, sizeof(err)) == 0, "%s", err);
        CHECK(wait_all(e, &off, 1, 60), "alone");
        CHECK(same_answer(&off, &batch[k]), "request %d drafting in a batch differs", k);
        qwen_request_release(off.req);
        qwen_request_release(batch[k].req);
    }
    qwen_engine_free(e);
}

/* logit_bias: a banned token never comes; +100 makes one win */
static void
test_logit_bias(void)
{
    int32_t             ids[20];
    tracked             plain, banned, forced;
    qwen_engine        *e = engine_new(1, 2, 16);
    qwen_logit_bias     ban[1], force[1];
    qwen_request_params p;
    size_t              n;
    int                 i, seen = 0;
    char                err[QWEN_ERR_LEN];

    if (e == NULL) return;
    make_prompt(ids, 20, 31);
    run_one(e, ids, 20, 8, &plain, &n);
    ban[0] = (qwen_logit_bias) { plain.tokens[0], -INFINITY };
    memset(&banned, 0, sizeof(banned));
    p = greedy_params(ids, 20, 8);
    p.logit_bias = ban;
    p.n_logit_bias = 1;
    CHECK(qwen_submit(e, &p, &banned, &banned.req, err, sizeof(err)) == 0, "%s", err);
    CHECK(wait_all(e, &banned, 1, 30) && banned.n == 8, "banned request");
    for (i = 0; i < banned.n; i++) {
        seen |= banned.tokens[i] == plain.tokens[0];
    }
    CHECK(!seen && banned.tokens[0] != plain.tokens[0], "a banned token never comes");
    qwen_request_release(banned.req);
    force[0] = (qwen_logit_bias) { 4242, 100.0f };
    memset(&forced, 0, sizeof(forced));
    p.logit_bias = force;
    CHECK(qwen_submit(e, &p, &forced, &forced.req, err, sizeof(err)) == 0, "%s", err);
    CHECK(wait_all(e, &forced, 1, 30) && forced.tokens[0] == 4242, "+100 wins: %d",
          forced.tokens[0]);
    qwen_request_release(forced.req);
    force[0].token = vocab;
    CHECK(qwen_submit(e, &p, NULL, &forced.req, err, sizeof(err)) == QWEN_E_INVALID
          && strstr(err, "logit bias") != NULL, "a bias outside the vocabulary: %s", err);
    qwen_engine_free(e);
}

/* ------------------------------------------------------ thinking budget */

#define THINK_CLOSE_TEXT "\n\nConsidering the limited time by the user, I have to give the " \
    "solution based on the thinking directly now.\n</think>\n\n"

static int32_t     think_open, think_close;
static qwen_tokens close_ids;

/* The ids of THINK_CLOSE_TEXT and the markers; 0 when they cannot be had. */
static int
thinking_setup(void)
{
    const qwen_tokenizer *tok = qwen_model_tokenizer(model);
    char                  err[QWEN_ERR_LEN];

    if (close_ids.n > 0) {
        return 1;
    }
    CHECK(tok != NULL, "the test model has a tokenizer");
    if (tok == NULL) {
        return 0;
    }
    think_open = qwen_token_id(tok, "<think>", 7);
    think_close = qwen_token_id(tok, "</think>", 8);
    CHECK(think_open > 0 && think_close > 0, "<think> %d, </think> %d", think_open, think_close);
    CHECK(qwen_tokenize(tok, THINK_CLOSE_TEXT, strlen(THINK_CLOSE_TEXT), &close_ids, err,
                        sizeof(err)) == 0 && close_ids.n > 4, "closing text: %s", err);
    return think_open > 0 && think_close > 0 && close_ids.n > 4;
}

static qwen_request_params
budget_params(const int32_t *ids, int n, int max_tokens, int budget)
{
    qwen_request_params p = greedy_params(ids, n, max_tokens);

    p.thinking_budget = budget;
    p.think_open_token = think_open;
    p.think_close_token = think_close;
    p.think_close_ids = close_ids.ids;
    p.n_think_close_ids = close_ids.n;
    p.thinking_open = 1;
    return p;
}

/* Submit p and wait for its end; the timing in *tm if given. */
static int
run_params(qwen_engine *e, const qwen_request_params *p, tracked *t, qwen_request_timing *tm)
{
    char err[QWEN_ERR_LEN];
    int  ok;

    memset(t, 0, sizeof(*t));
    if (qwen_submit(e, p, t, &t->req, err, sizeof(err)) != 0) {
        CHECK(0, "submit: %s", err);
        return 0;
    }
    ok = wait_all(e, t, 1, 60);
    CHECK(ok, "the request did not finish");
    if (tm != NULL) {
        qwen_request_get_timing(t->req, tm);
    }
    qwen_request_release(t->req);
    return ok;
}

/* Do the n ids at t->tokens + at equal want? */
static int
tokens_at(const tracked *t, int at, const int32_t *want, size_t n)
{
    return at >= 0 && (size_t) at + n <= (size_t) t->n
           && memcmp(t->tokens + at, want, n * sizeof(int32_t)) == 0;
}

static int
count_of(const tracked *t, int32_t id)
{
    int i, c = 0;

    for (i = 0; i < t->n; i++) {
        c += t->tokens[i] == id;
    }
    return c;
}

static void
test_thinking_budget(void)
{
    enum { LEN = 24, BUDGET = 5 };
    int32_t              ids[LEN];
    int                  nc, i, ok;
    tracked              ref, t;
    qwen_request_timing  tm;
    qwen_request_params  p;
    qwen_logit_bias      bias[1];
    qwen_engine         *e = engine_new(2, 4, 64);

    if (e == NULL) return;
    if (!thinking_setup()) {
        qwen_engine_free(e);
        return;
    }
    nc = (int) close_ids.n;
    /* a prompt that ends inside a thinking block, as a chat template with
     * "<think>\n" in its generation prompt leaves it (thinking_open) */
    make_prompt(ids, LEN - 2, 41);
    ids[LEN - 2] = think_open;
    ids[LEN - 1] = 198;     /* "\n" */

    /* no budget: nothing is forced */
    p = greedy_params(ids, LEN, BUDGET + nc + 6);
    run_params(e, &p, &ref, &tm);
    CHECK(ref.n == BUDGET + nc + 6 && tm.n_forced == 0, "no budget: %d tokens, %zu forced",
          ref.n, tm.n_forced);
    ok = count_of(&ref, think_close) == 0;
    CHECK(ok, "the greedy reference closes its thinking itself; the test needs another prompt");

    /* budget 5: five tokens of thinking (the ones it writes without a
     * budget), then the closing text token by token, then the answer */
    p = budget_params(ids, LEN, BUDGET + nc + 6, BUDGET);
    p.n_logprobs = 1;
    run_params(e, &p, &t, &tm);
    CHECK(t.n == BUDGET + nc + 6 && t.finish == QWEN_FINISH_LENGTH, "budget %d: %d tokens, %s",
          BUDGET, t.n, qwen_finish_name(t.finish));
    CHECK(tokens_at(&t, 0, ref.tokens, BUDGET), "the thinking before the budget is the "
          "model's own");
    CHECK(tokens_at(&t, BUDGET, close_ids.ids, close_ids.n), "the closing tokens follow "
          "the budget, in order");
    CHECK(tm.n_forced == (size_t) nc && tm.n_generated == (size_t) t.n,
          "forced %zu of %zu generated", tm.n_forced, tm.n_generated);
    CHECK(count_of(&t, think_close) == 1, "one </think>");
    for (i = BUDGET; i < BUDGET + nc; i++) {
        CHECK(t.logprobs[i] <= 0.0f && t.logprobs[i] > -1000.0f, "forced token %d logprob %g",
              i, t.logprobs[i]);
    }

    /* budget 0: closed at once */
    p = budget_params(ids, LEN, nc + 3, 0);
    run_params(e, &p, &t, &tm);
    CHECK(t.n == nc + 3 && tokens_at(&t, 0, close_ids.ids, close_ids.n),
          "budget 0 closes at once: %d tokens", t.n);

    /* max_tokens bounds the whole answer, forced tokens included */
    p = budget_params(ids, LEN, BUDGET + 3, BUDGET);
    run_params(e, &p, &t, &tm);
    CHECK(t.n == BUDGET + 3 && t.finish == QWEN_FINISH_LENGTH
          && tokens_at(&t, BUDGET, close_ids.ids, 3) && tm.n_forced == 3,
          "max_tokens in the closing text: %d tokens (%zu forced), %s", t.n, tm.n_forced,
          qwen_finish_name(t.finish));

    /* the thinking the model closes itself within its budget: nothing forced */
    bias[0] = (qwen_logit_bias) { think_close, 100.0f };
    p = budget_params(ids, LEN, 12, BUDGET);
    p.logit_bias = bias;
    p.n_logit_bias = 1;
    run_params(e, &p, &t, &tm);
    CHECK(t.n == 12 && count_of(&t, think_close) == 12 && tm.n_forced == 0,
          "closed within the budget: %d tokens, %zu forced", t.n, tm.n_forced);

    /* a prompt outside thinking: the block opens with a generated <think>
     * (+100 makes every token one; those after the first are thinking) */
    make_prompt(ids, LEN, 42);
    bias[0] = (qwen_logit_bias) { think_open, 100.0f };
    p = budget_params(ids, LEN, 1 + 3 + nc + 4, 3);
    p.thinking_open = 0;
    p.logit_bias = bias;
    p.n_logit_bias = 1;
    run_params(e, &p, &t, &tm);
    CHECK(t.n == 1 + 3 + nc + 4 && count_of(&t, think_open) == 1 + 3 + 4
          && tokens_at(&t, 4, close_ids.ids, close_ids.n),
          "opened by a generated <think>: %d tokens, closing at 4: %s", t.n,
          tokens_at(&t, 4, close_ids.ids, close_ids.n) ? "yes" : "no");
    /* markers in the prompt (a user's text) open no block: the budget
     * waits for a generated <think> */
    ids[LEN - 2] = think_open;
    ids[LEN - 1] = think_open;
    p = budget_params(ids, LEN, 6, 0);
    p.thinking_open = 0;
    run_params(e, &p, &t, &tm);
    CHECK(t.n == 6 && tm.n_forced == 0 && count_of(&t, think_close) == 0
          && count_of(&t, think_open) == 0, "<think> in the prompt: %zu forced", tm.n_forced);

    /* budgets in a batch: two requests with different budgets at once get
     * what each gets alone */
    {
        tracked             two[2];
        qwen_request_params p2[2];
        char                err[QWEN_ERR_LEN];

        ids[LEN - 1] = 198;
        memset(two, 0, sizeof(two));
        p2[0] = budget_params(ids, LEN, BUDGET + nc + 6, BUDGET);
        p2[1] = budget_params(ids, LEN, nc + 3, 0);
        for (i = 0; i < 2; i++) {
            CHECK(qwen_submit(e, &p2[i], &two[i], &two[i].req, err, sizeof(err)) == 0,
                  "%s", err);
        }
        CHECK(wait_all(e, two, 2, 60), "two budgets at once");
        CHECK(two[0].n == BUDGET + nc + 6 && tokens_at(&two[0], BUDGET, close_ids.ids,
                                                        close_ids.n)
              && two[1].n == nc + 3 && tokens_at(&two[1], 0, close_ids.ids, close_ids.n),
              "batched budgets: %d and %d tokens", two[0].n, two[1].n);
        for (i = 0; i < 2; i++) {
            qwen_request_release(two[i].req);
        }
    }
    qwen_engine_free(e);
}

/* Structured output after a forced </think>: thinking free, then only what
 * the grammar takes. */
static void
test_thinking_grammar(void)
{
    enum { LEN = 20, BUDGET = 4, GEN = 30 };
    const qwen_tokenizer *tok = qwen_model_tokenizer(model);
    int32_t               ids[LEN];
    int                   nc = (int) close_ids.n, i, accepted = 1;
    tracked               ref, t;
    qwen_request_params   p;
    qwen_grammar         *g;
    qwen_grammar_state   *st;
    char                  err[QWEN_ERR_LEN];
    qwen_engine          *e;

    if (tok == NULL || close_ids.n == 0) return;
    g = qwen_grammar_new_json(tok, NULL, err, sizeof(err));
    CHECK(g != NULL, "JSON grammar: %s", err);
    e = engine_new(1, 2, 64);
    if (g == NULL || e == NULL) {
        qwen_grammar_free(g);
        qwen_engine_free(e);
        return;
    }
    make_prompt(ids, LEN - 1, 43);
    ids[LEN - 1] = think_open;
    p = greedy_params(ids, LEN, BUDGET);
    run_params(e, &p, &ref, NULL);

    p = budget_params(ids, LEN, BUDGET + nc + GEN, BUDGET);
    p.grammar = g;
    p.grammar_after_token = think_close;
    run_params(e, &p, &t, NULL);
    CHECK(tokens_at(&t, 0, ref.tokens, BUDGET), "the thinking is free");
    CHECK(tokens_at(&t, BUDGET, close_ids.ids, close_ids.n), "then the closing tokens");
    /* from the token after </think> on, everything is the grammar's */
    st = qwen_grammar_state_new(g);
    for (i = BUDGET + nc - 1; st != NULL && i < t.n; i++) {
        accepted &= qwen_grammar_accept(st, t.tokens[i]) == 0;
    }
    CHECK(st != NULL && accepted && t.n > BUDGET + nc, "the answer after the forced </think> "
          "is JSON: %d tokens", t.n - (BUDGET + nc - 1));
    CHECK(t.finish == QWEN_FINISH_LENGTH || (t.finish == QWEN_FINISH_STOP
                                             && st != NULL && qwen_grammar_complete(st)),
          "finish %s", qwen_finish_name(t.finish));
    qwen_grammar_state_free(st);
    qwen_engine_free(e);
    qwen_grammar_free(g);
}

static void
test_thinking_errors(void)
{
    const qwen_tokenizer *tok = qwen_model_tokenizer(model);
    int32_t               ids[8], bad[QWEN_MAX_FORCED + 1];
    qwen_request_params   p;
    qwen_request         *r = NULL;
    qwen_grammar         *g;
    qwen_engine          *e = engine_new(1, 2, 16);
    char                  err[QWEN_ERR_LEN];
    int32_t               two[2];
    size_t                i;

    if (e == NULL || tok == NULL || close_ids.n == 0) {
        qwen_engine_free(e);
        return;
    }
    make_prompt(ids, 8, 44);
#define REFUSED(what, sub) \
    CHECK(qwen_submit(e, &p, NULL, &r, err, sizeof(err)) == QWEN_E_INVALID && r == NULL \
          && strstr(err, sub) != NULL, "%s: %s", what, err)
    p = budget_params(ids, 8, 4, 2);
    p.think_close_ids = close_ids.ids;
    p.n_think_close_ids = close_ids.n - 3;   /* "\n\n" and </think> are the last */
    REFUSED("closing tokens without </think>", "must contain think_close_token");
    p = budget_params(ids, 8, 4, 2);
    p.n_think_close_ids = 0;
    REFUSED("no closing tokens", "1 to 256");
    for (i = 0; i <= QWEN_MAX_FORCED; i++) {
        bad[i] = think_close;
    }
    p.think_close_ids = bad;
    p.n_think_close_ids = QWEN_MAX_FORCED + 1;
    REFUSED("too many closing tokens", "1 to 256");
    bad[0] = vocab;
    p.n_think_close_ids = 2;
    REFUSED("a closing token outside the vocabulary", "vocabulary");
    p = budget_params(ids, 8, 4, 2);
    p.think_open_token = -1;
    REFUSED("no <think> id", "think_open_token");
    p = budget_params(ids, 8, 4, 2);
    p.think_close_token = vocab;
    REFUSED("a </think> id outside the vocabulary", "vocabulary");
    g = qwen_grammar_new_json(tok, NULL, err, sizeof(err));
    CHECK(g != NULL, "grammar: %s", err);
    p = budget_params(ids, 8, 4, 2);
    p.grammar = g;
    p.grammar_after_token = -1;
    REFUSED("a grammar on from the start", "grammar_after_token");
    p.grammar_after_token = think_close;
    two[0] = think_close;
    two[1] = qwen_token_id(tok, "x", 1);    /* not JSON */
    p.think_close_ids = two;
    p.n_think_close_ids = 2;
    REFUSED("closing text the grammar refuses", "does not take");
    two[1] = 271;                            /* "\n\n": whitespace before the value */
    CHECK(qwen_submit(e, &p, NULL, &r, err, sizeof(err)) == 0 && r != NULL,
          "closing text the grammar takes: %s", err);
    if (r != NULL) {
        qwen_request_release(r);
        r = NULL;
    }
    p = greedy_params(ids, 8, 4);
    p.repeat_guard = 1;
    REFUSED("repeat_guard 1", "repeat_guard");
    p.repeat_guard = -3;
    REFUSED("repeat_guard -3", "repeat_guard");
#undef REFUSED
    qwen_grammar_free(g);
    qwen_engine_free(e);
}

/* ---------------------------------------------------- repetition guard */

static void
test_repetition_guard(void)
{
    enum { LEN = 16 };
    int32_t              ids[LEN], cycle[200];
    tracked              t;
    qwen_request_timing  tm;
    qwen_request_params  p;
    qwen_logit_bias      force[1] = { { 4242, 100.0f } };
    qwen_engine         *e = engine_new(1, 2, 64);
    qwen_engine_stats    st;
    int                  i, n;

    if (e == NULL) return;
    make_prompt(ids, LEN, 51);
    CHECK(strcmp(qwen_finish_name(QWEN_FINISH_REPETITION), "repetition") == 0, "name");

    /* one token forever: stopped after 64 of it */
    p = greedy_params(ids, LEN, 300);
    p.logit_bias = force;
    p.n_logit_bias = 1;
    p.repeat_guard = 8;
    run_params(e, &p, &t, &tm);
    CHECK(t.n == QWEN_REPEAT_MIN_TOKENS && t.finish == QWEN_FINISH_REPETITION
          && tm.repeat_span == 1 && count_of(&t, 4242) == t.n,
          "one token repeated: %d tokens, %s, span %d", t.n, qwen_finish_name(t.finish),
          tm.repeat_span);
    /* more repetitions than the floor */
    p.repeat_guard = 100;
    run_params(e, &p, &t, &tm);
    CHECK(t.n == 100 && t.finish == QWEN_FINISH_REPETITION && tm.repeat_span == 1,
          "repeat_guard 100: %d tokens, %s", t.n, qwen_finish_name(t.finish));
    /* off: max_tokens ends it */
    p.repeat_guard = 0;
    run_params(e, &p, &t, &tm);
    CHECK(t.n == 300 && t.finish == QWEN_FINISH_LENGTH && tm.repeat_span == 0,
          "guard off: %d tokens, %s", t.n, qwen_finish_name(t.finish));

    /* a span of 3 tokens, generated as the thinking budget's closing
     * tokens (the guard sees every generated token) */
    if (thinking_setup()) {
        for (i = 0; i < 120; i++) {
            cycle[i] = 1000 + i % 3;
        }
        cycle[120] = think_close;
        ids[LEN - 1] = think_open;
        p = greedy_params(ids, LEN, 200);
        p.thinking_budget = 0;
        p.think_open_token = think_open;
        p.think_close_token = think_close;
        p.think_close_ids = cycle;
        p.n_think_close_ids = 121;
        p.thinking_open = 1;
        p.repeat_guard = 8;
        run_params(e, &p, &t, &tm);
        CHECK(t.n == 64 && t.finish == QWEN_FINISH_REPETITION && tm.repeat_span == 3,
              "a span of 3, 64 tokens: %d tokens, %s, span %d", t.n,
              qwen_finish_name(t.finish), tm.repeat_span);
        p.repeat_guard = 30;
        run_params(e, &p, &t, &tm);
        CHECK(t.n == 90 && t.finish == QWEN_FINISH_REPETITION && tm.repeat_span == 3,
              "a span of 3 written 30 times: %d tokens, %s, span %d", t.n,
              qwen_finish_name(t.finish), tm.repeat_span);
        /* broken in the middle: two runs of 45 tokens are not a loop */
        n = 0;
        for (i = 0; i < 45; i++) {
            cycle[n++] = 1000 + i % 3;
        }
        cycle[n++] = 2000;
        for (i = 0; i < 45; i++) {
            cycle[n++] = 1000 + i % 3;
        }
        cycle[n++] = think_close;
        p.think_close_ids = cycle;
        p.n_think_close_ids = (size_t) n;
        p.repeat_guard = 8;
        p.max_tokens = n + 4;
        run_params(e, &p, &t, &tm);
        CHECK(t.n == n + 4 && t.finish == QWEN_FINISH_LENGTH && tm.repeat_span == 0,
              "a broken cycle: %d tokens, %s", t.n, qwen_finish_name(t.finish));
    }
    qwen_engine_get_stats(e, &st);
    CHECK(st.finished[QWEN_FINISH_REPETITION] == (close_ids.n > 0 ? 4u : 2u),
          "stats: %llu stopped for repetition",
          (unsigned long long) st.finished[QWEN_FINISH_REPETITION]);
    qwen_engine_free(e);
}

int
main(void)
{
    model = test_load_model("tiny-f32.gguf");
    if (model == NULL) {
        TEST_MAIN_END();
    }
    vocab = qwen_model_config(model)->vocab_size;
    test_batched_equals_alone();
    test_prefill_order();
    test_queue_and_cancel();
    test_pause();
    test_stop_logprobs_errors();
    test_prefix_cache();
    test_logit_bias();
    test_drafts();
    test_thinking_budget();
    test_thinking_grammar();
    test_thinking_errors();
    test_repetition_guard();
    qwen_tokens_free(&close_ids);
    qwen_model_free(model);
    TEST_MAIN_END();
}
