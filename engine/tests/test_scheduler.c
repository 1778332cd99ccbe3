/*
 * test_scheduler.c - the serving engine as nginx drives it: submit from one
 * thread, wait on the eventfd, drain ready requests. Checks that batched
 * requests give the same greedy tokens as each run alone, the queue limit,
 * cancellation during prefill and decode (the slot is reused), pause,
 * max_tokens, stop ids, logprobs, and parameter errors.
 */
#include "test.h"
#include "qwen.h"

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
engine_new(int slots, int queue, int batch)
{
    qwen_engine_params p = qwen_engine_default_params();
    p.n_threads = 2;
    p.n_slots = slots;
    p.n_ctx = 1024;
    p.n_batch = batch;
    p.max_queue = queue;
    char               err[QWEN_ERR_LEN];
    qwen_engine       *e = qwen_engine_new(model, &p, err, sizeof(err));

    CHECK(e != NULL, "engine: %s", err);
    return e;
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

int
main(void)
{
    model = test_load_model("tiny-f32.gguf");
    if (model == NULL) {
        TEST_MAIN_END();
    }
    vocab = qwen_model_config(model)->vocab_size;
    test_batched_equals_alone();
    test_queue_and_cancel();
    test_pause();
    test_stop_logprobs_errors();
    qwen_model_free(model);
    TEST_MAIN_END();
}
