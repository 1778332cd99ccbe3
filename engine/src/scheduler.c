/*
 * scheduler.c - continuous batching over one compute context. A scheduler
 * thread admits queued requests into KV cache slots, builds each step's
 * batch (one decode token per running sequence first, then prompt chunks
 * first come, first served, in the remaining budget so a long prompt never
 * stalls the others), runs
 * the forward pass, samples outside the lock, and publishes token events.
 * The submitting thread (nginx's event loop) is woken through an eventfd
 * and never waits for inference: every call it makes holds the mutex only
 * for list and counter updates. A request admitted into a slot first maps
 * the KV blocks of its longest cached prefix (kv_cache.h) and prefills
 * only the rest; every block its slot fills is offered to the prefix index
 * for the requests after it. Per request, the sampling step also keeps a
 * thinking budget (past it, the closing tokens are generated instead of
 * sampled) and a repetition guard (a span repeated too often ends it).
 */
#include "model.h"
#include "errors.h"
#include "forward.h"
#include "grammar.h"
#include "kv_cache.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

enum rq_state { RQ_WAITING, RQ_PREFILL, RQ_DECODE, RQ_DONE };

/* where a request with a thinking budget stands */
enum think_state {
    THINK_OFF = 0,   /* no budget, or the budgeted block is over */
    THINK_BEFORE,    /* waiting for think_open_token */
    THINK_OPEN,      /* inside the block: counting */
    THINK_FORCING    /* generating think_close_ids */
};

struct qwen_request {
    qwen_engine         *engine;    /* NULL once the engine is gone */
    int                  refs;      /* the engine's and the owner's */
    void                *user;

    /* immutable after submit */
    int32_t             *tokens;    /* the prompt, then each generated token as it
                                     * is fed back (room for prompt + max_tokens) */
    size_t               n_prompt;
    int                  max_tokens;
    int32_t             *stop_ids;
    size_t               n_stop_ids;
    qwen_logit_bias     *bias;
    size_t               n_bias;
    int                  ignore_eos;
    int                  n_logprobs;
    int32_t              grammar_after; /* > 0: the grammar waits for this token */
    int                  think_budget;  /* tokens of thinking before closing it */
    int32_t              think_open, think_close;
    int32_t             *close_ids;     /* forced to close the thinking */
    size_t               n_close;
    int                  repeat_guard;  /* 0: off */
    int                  draft_on;      /* n-gram drafts */

    /* scheduler thread only */
    qwen_sampler        *sampler;
    qwen_grammar_state  *grammar;       /* NULL: unconstrained */
    int                  grammar_on;    /* the grammar filters the next token */
    size_t               n_past;        /* positions filled in the slot */
    int32_t              next_token;    /* sampled, to be fed next step */
    size_t               n_cached;      /* prompt positions mapped from the cache */
    size_t               n_published;   /* blocks offered to the prefix index */
    uint64_t             chain;         /* identity of the prefix published so far */
    enum think_state     think;
    size_t               n_think;       /* tokens generated inside the block */
    size_t               n_forced;      /* of close_ids, generated */
    int32_t              drafts[QWEN_DRAFT_MAX];   /* proposed this step */
    int                  n_drafts;
    int                  draft_len;     /* most to propose next: follows acceptance */
    /* a single draft turned down: no drafts for draft_skip steps, a wait
     * that doubles (2 .. 32 steps) while they keep being turned down and
     * ends with the first one taken; an answer that copies nothing then
     * costs a draft row on 1 step in 32 instead of every step (5% of its
     * decode time measured with drafts on against off) */
    int                  draft_skip, draft_backoff;
    size_t               n_drafted, n_draft_accepted;
    /* repeat_run[k]: how many generated tokens in a row, up to the last,
     * equal the token k before them */
    uint32_t             repeat_run[QWEN_REPEAT_MAX_SPAN + 1];

    /* under engine->mu */
    enum rq_state        state;
    int                  slot;
    int                  paused;
    int                  cancelled;
    int                  owner_gone;
    qwen_finish     finish;
    size_t               n_generated;
    int                  repeat_span;   /* FINISH_REPETITION: the span's length */
    size_t               n_forced_out;  /* forced tokens published */
    qwen_token_event    *events;
    size_t               n_events;
    size_t               cap_events;
    int                  in_ready;
    qwen_request        *next_wait;
    double               t_submit, t_admit, t_first, t_done;
    uint64_t             admit_seq;      /* admission order: prompt chunks go first come */
    double               t_last;         /* when the last token was published */
};

struct qwen_engine {
    const qwen_model    *model;
    qwen_ctx            *ctx;
    qwen_engine_params   params;
    int                  vocab;

    pthread_t            thread;
    int                  thread_started;
    pthread_mutex_t      mu;
    pthread_cond_t       cv;
    int                  stop;
    int                  efd;

    qwen_request       **slots;
    qwen_request        *wait_head, *wait_tail;
    int                  n_waiting;
    int                  n_running;
    qwen_request       **ready;
    size_t               n_ready;

    uint64_t             prompt_tokens, generated_tokens, steps;
    uint64_t             finished[QWEN_FINISH_ERROR + 1];
    uint64_t             cache_queries, cache_hits;
    size_t               cache_blocks;
    uint64_t             drafted, draft_accepted;
    uint64_t             n_admitted;

    /* the context's KV cache; touched only by the scheduler thread (and
     * by qwen_engine_free after joining it) */
    qwen_kv_cache       *kv;
    int                  publish_generated;  /* answers' blocks are exact too */
    /* this step's prompt chunks that start on a block (shared_prefill) */
    qwen_request       **chunk_req;
    qwen_request       **prefilling;    /* build_batch's scratch: by admission */
    size_t              *chunk_start;
    uint64_t            *chunk_chain;

    /* scheduler thread scratch */
    qwen_batch_entry    *batch;
    qwen_request       **batch_req;     /* request of each logits row */
    int                 *batch_kind;    /* 0 decode, 1 prompt end, 2 a draft's */
    float               *logits;        /* [n_rows][vocab] */
    int                  max_rows;      /* n_slots + QWEN_DRAFT_STEP_MAX */
    float               *raw;           /* [vocab] for logprobs */
    int32_t             *gram_ids;      /* [vocab] a grammar's candidates */
    qwen_sampler        *sampler_scratch;  /* lends its scratch to every request's
                                            * sampler: they all run on this thread */
};

static double
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

const char *
qwen_finish_name(qwen_finish f)
{
    switch (f) {
    case QWEN_FINISH_STOP:      return "stop";
    case QWEN_FINISH_LENGTH:    return "length";
    case QWEN_FINISH_REPETITION: return "repetition";
    case QWEN_FINISH_CANCELLED: return "cancelled";
    case QWEN_FINISH_ERROR:     return "error";
    default:                    return "none";
    }
}

static void
request_free(qwen_request *r)
{
    qwen_sampler_free(r->sampler);
    qwen_grammar_state_free(r->grammar);
    free(r->tokens);
    free(r->stop_ids);
    free(r->bias);
    free(r->close_ids);
    free(r->events);
    free(r);
}

/* ------------------------------------------------- under engine->mu */

static void
mark_ready(qwen_engine *e, qwen_request *r)
{
    if (!r->in_ready && !r->owner_gone) {
        r->in_ready = 1;
        e->ready[e->n_ready++] = r;   /* capacity: every live request */
    }
}

static void
remove_ready(qwen_engine *e, qwen_request *r)
{
    size_t i;

    if (!r->in_ready) {
        return;
    }
    for (i = 0; i < e->n_ready; i++) {
        if (e->ready[i] == r) {
            e->ready[i] = e->ready[--e->n_ready];
            break;
        }
    }
    r->in_ready = 0;
}

static void
drop_engine_ref(qwen_engine *e, qwen_request *r)
{
    if (--r->refs == 0) {
        remove_ready(e, r);
        request_free(r);
    }
}

/* The request leaves the engine: free its slot or queue place. */
static void
finish_request(qwen_engine *e, qwen_request *r, qwen_finish why)
{
    qwen_request **pp;

    if (r->state == RQ_DONE) {
        return;
    }
    if (r->state == RQ_WAITING) {
        for (pp = &e->wait_head; *pp != NULL; pp = &(*pp)->next_wait) {
            if (*pp == r) {
                *pp = r->next_wait;
                break;
            }
        }
        e->wait_tail = NULL;
        for (pp = &e->wait_head; *pp != NULL; pp = &(*pp)->next_wait) {
            e->wait_tail = *pp;
        }
        e->n_waiting--;
    } else {
        qwen_kv_release(e->kv, r->slot);
        e->slots[r->slot] = NULL;
        e->n_running--;
    }
    r->state = RQ_DONE;
    r->finish = why;
    r->t_done = now_ms();
    e->finished[why]++;
    mark_ready(e, r);
    drop_engine_ref(e, r);
}

static int
push_event(qwen_request *r, const qwen_token_event *ev)
{
    qwen_token_event *grown;
    size_t            cap;

    if (r->n_events == r->cap_events) {
        cap = r->cap_events ? 2 * r->cap_events : 16;
        grown = realloc(r->events, cap * sizeof(*grown));
        if (grown == NULL) {
            return -1;
        }
        r->events = grown;
        r->cap_events = cap;
    }
    r->events[r->n_events++] = *ev;
    return 0;
}

static void
notify(qwen_engine *e)
{
    uint64_t one = 1;
    ssize_t  n;

    do {
        n = write(e->efd, &one, sizeof(one));
    } while (n < 0 && errno == EINTR);
    /* EAGAIN means the counter is already non-zero: the reader will wake */
}

/* --------------------------------------------------- scheduler thread */

static int
is_stop_token(const qwen_engine *e, const qwen_request *r, int32_t tok)
{
    const qwen_tokenizer *t = qwen_model_tokenizer(e->model);
    size_t                i;

    if (!r->ignore_eos && t != NULL && qwen_token_is_eog(t, tok)) {
        return 1;
    }
    for (i = 0; i < r->n_stop_ids; i++) {
        if (r->stop_ids[i] == tok) {
            return 1;
        }
    }
    return 0;
}

/* The thinking budget: the token the next step must generate instead of
 * sampling (the next of close_ids once the block has used its budget), or
 * -1 to sample. */
static int32_t
forced_token(qwen_request *r)
{
    int32_t tok;

    if (r->think == THINK_OPEN && r->n_think >= (size_t) r->think_budget) {
        r->think = THINK_FORCING;
    }
    if (r->think != THINK_FORCING) {
        return -1;
    }
    tok = r->close_ids[r->n_forced++];
    if (r->n_forced == r->n_close) {
        r->think = THINK_OFF;       /* the block is closed: the answer follows */
    }
    return tok;
}

/* Follow the thinking block through a sampled token. */
static void
track_thinking(qwen_request *r, int32_t tok)
{
    if (r->think == THINK_OPEN) {
        if (tok == r->think_close) {
            r->think = THINK_OFF;   /* closed within its budget */
        } else {
            r->n_think++;
        }
    } else if (r->think == THINK_BEFORE && tok == r->think_open) {
        r->think = THINK_OPEN;
    }
}

/*
 * The repetition guard, as tok is generated after the n generated tokens
 * in gen: for each span length k, repeat_run[k] counts the tokens in a row
 * (ending with tok) equal to the token k before them, so the last
 * repeat_run[k] + k tokens are one span of k repeated. Returns the shortest
 * span written repeat_guard times in a row over QWEN_REPEAT_MIN_TOKENS
 * tokens at least, or 0. At most QWEN_REPEAT_MAX_SPAN compares.
 */
static int
repeat_check(qwen_request *r, const int32_t *gen, size_t n, int32_t tok)
{
    size_t k, kmax = n < QWEN_REPEAT_MAX_SPAN ? n : QWEN_REPEAT_MAX_SPAN, need;

    for (k = 1; k <= kmax; k++) {
        if (gen[n - k] != tok) {
            r->repeat_run[k] = 0;
            continue;
        }
        r->repeat_run[k]++;
        need = k * (size_t) r->repeat_guard;
        need = need > QWEN_REPEAT_MIN_TOKENS ? need : QWEN_REPEAT_MIN_TOKENS;
        if (r->repeat_run[k] + k >= need) {
            return (int) k;         /* the request ends: the rest need not be kept */
        }
    }
    return 0;
}

/* log-softmax statistics of the raw logits: the chosen token's logprob and
 * the n best alternatives, as OpenAI's logprobs report them. */
static void
fill_logprobs(const float *raw, int vocab, int n_top, int32_t chosen, qwen_token_event *ev)
{
    double mx = raw[0], sum = 0.0, lse;
    int    i, j, k = 0;

    for (i = 1; i < vocab; i++) {
        mx = raw[i] > mx ? raw[i] : mx;
    }
    for (i = 0; i < vocab; i++) {
        sum += exp((double) raw[i] - mx);
    }
    lse = mx + log(sum);
    ev->logprob = (float) (raw[chosen] - lse);
    for (i = 0; i < vocab; i++) {
        if (k == n_top && raw[i] <= raw[ev->top_ids[k - 1]]) {
            continue;
        }
        j = k < n_top ? k++ : k - 1;
        while (j > 0 && raw[ev->top_ids[j - 1]] < raw[i]) {
            ev->top_ids[j] = ev->top_ids[j - 1];
            j--;
        }
        ev->top_ids[j] = i;
    }
    ev->n_top = k;
    for (i = 0; i < k; i++) {
        ev->top_logprobs[i] = (float) (raw[ev->top_ids[i]] - lse);
    }
}

/* Build the next batch under the lock. Returns the number of entries and
 * the number of logits rows. */
/* Fewest shared positions of a block worth a step's wait for another
 * request to compute them */
#define QWEN_SHARE_MIN 8

/*
 * Requests that share a prefix and arrive together (a shared instruction)
 * should compute it once. Before its next chunk, a request whose blocks so
 * far are all indexed maps any further blocks of its prompt that others
 * indexed meanwhile (and the first positions of the next one, copied);
 * and it sits this step out (returns 1) when a request already in this
 * step computes its next block from the same prefix, the whole block or
 * at least its first QWEN_SHARE_MIN positions: the block will be in the
 * index for it next step.
 */
static int
shared_prefill(qwen_engine *e, qwen_request *r, int n_chunks)
{
    size_t before = r->n_past, start, most;
    int    c;

    if (r->n_past % QWEN_KV_BLOCK != 0 || r->n_published * QWEN_KV_BLOCK != r->n_past) {
        return 0;
    }
    r->n_past = (size_t) qwen_kv_match(e->kv, r->slot, r->tokens, (int) r->n_prompt,
                                       (int) r->n_prompt - 1, (int) r->n_past, &r->chain);
    r->n_published = r->n_past / QWEN_KV_BLOCK;
    r->n_cached += r->n_past - before;
    e->cache_hits += r->n_past - before;
    start = r->n_past;
    if (start % QWEN_KV_BLOCK != 0 || start + QWEN_SHARE_MIN > r->n_prompt - 1) {
        return 0;       /* partly copied, or too little left to share */
    }
    most = r->n_prompt - 1 - start;
    most = most < QWEN_KV_BLOCK ? most : QWEN_KV_BLOCK;
    for (c = 0; c < n_chunks; c++) {
        qwen_request *o = e->chunk_req[c];

        if (e->chunk_start[c] != start || e->chunk_chain[c] != r->chain
            || o->n_prompt < start + QWEN_KV_BLOCK)
        {
            continue;
        }
        if (qwen_tokens_common(o->tokens + start, r->tokens + start, (int) most)
            >= QWEN_SHARE_MIN)
        {
            return 1;
        }
    }
    return 0;
}

/*
 * A step's time grows with its tokens, and a request whose prompt ends in
 * it gets its first token when the step ends. Another request's chunk in
 * the same step delays that first token by the chunk's compute and saves
 * the other request only one step's fixed cost (the weights streamed once
 * more, the threads' barriers): a few tokens' worth. So after a prompt
 * ends, later chunks join only while the step holds fewer tokens than this.
 */
#define QWEN_STEP_SMALL 32

/* Draft tokens of all sequences in one step, at most; their logits rows
 * come on top of one per slot. */
#define QWEN_DRAFT_STEP_MAX 16

/*
 * Prompt lookup: the last n tokens of r (n from 4 down to 2, the next
 * token included) where they last occurred before, and up to max of the
 * tokens that followed there, into r->drafts. An answer that copies its
 * prompt (extraction, quoting, code) proposes the rest of the copy.
 */
static void
propose_drafts(qwen_request *r, int max)
{
    const int32_t *t = r->tokens;
    size_t         len = r->n_past + 1, q, i;      /* the next token is t[n_past] */
    int            n, k;

    r->n_drafts = 0;
    for (n = 4; n >= 2 && r->n_drafts == 0; n--) {
        if (len < (size_t) n + 1) {
            continue;
        }
        for (q = len - (size_t) n; q-- > 0; ) {
            for (i = 0; i < (size_t) n && t[q + i] == t[len - (size_t) n + i]; i++) {
            }
            if (i < (size_t) n) {
                continue;
            }
            for (k = 0; k < max && q + (size_t) n + (size_t) k < len; k++) {
                r->drafts[k] = t[q + (size_t) n + (size_t) k];
            }
            r->n_drafts = k;
            break;
        }
    }
}

/* How many tokens r may have proposed this step: drafts cost compute, so
 * fewer as more sequences decode together (none with every slot busy) and
 * as few as its recent drafts were taken (draft_len), never past
 * max_tokens or the context, and none while a thinking budget is counting
 * or forcing its close. */
static int
draft_room(const qwen_engine *e, const qwen_request *r, int n_decoding, int step_left)
{
    int k = n_decoding <= 1 ? QWEN_DRAFT_MAX
            : 2 * n_decoding <= e->params.n_slots ? QWEN_DRAFT_MAX / 2
            : n_decoding < e->params.n_slots ? 2 : 0;
    long left_ctx = (long) e->params.n_ctx - 1 - (long) r->n_past;
    long left_gen = r->max_tokens > 0 ? (long) r->max_tokens - (long) r->n_generated - 1
                                      : left_ctx;

    if (!r->draft_on || r->think != THINK_OFF) {
        return 0;
    }
    k = k < r->draft_len ? k : r->draft_len;
    k = k < step_left ? k : step_left;
    k = (long) k < left_ctx ? k : (int) (left_ctx > 0 ? left_ctx : 0);
    k = (long) k < left_gen ? k : (int) (left_gen > 0 ? left_gen : 0);
    return k;
}

static int
build_batch(qwen_engine *e, int *n_rows)
{
    int           n = 0, rows = 0, s, k, i, j, m, budget, n_chunks, ended, n_decoding = 0;
    int           step_left;
    qwen_request *r;

    for (s = 0; s < e->params.n_slots; s++) {
        r = e->slots[s];
        n_decoding += r != NULL && r->state == RQ_DECODE && !r->paused && !r->cancelled;
    }
    /* half the batch stays for prompt chunks */
    step_left = QWEN_DRAFT_STEP_MAX < e->params.n_batch / 2 - e->params.n_slots
                ? QWEN_DRAFT_STEP_MAX : e->params.n_batch / 2 - e->params.n_slots;
    /* decode steps first: one token per running, unpaused sequence, and
     * the drafts that follow it */
    for (s = 0; s < e->params.n_slots; s++) {
        r = e->slots[s];
        if (r == NULL || r->state != RQ_DECODE || r->paused || r->cancelled) {
            continue;
        }
        r->tokens[r->n_past] = r->next_token;
        e->batch[n] = (qwen_batch_entry) { r->next_token, s, (int32_t) r->n_past, 1, 0 };
        e->batch_req[rows] = r;
        e->batch_kind[rows] = 0;
        n++;
        rows++;
        r->n_drafts = 0;
        k = draft_room(e, r, n_decoding, step_left);
        if (k > 0 && r->draft_skip > 0) {
            r->draft_skip--;
        } else if (k > 0) {
            propose_drafts(r, k);
        }
        for (i = 0; i < r->n_drafts; i++) {
            size_t pos = r->n_past + 1 + (size_t) i;

            /* tentative: a draft the model turns down is overwritten */
            r->tokens[pos] = r->drafts[i];
            e->batch[n++] = (qwen_batch_entry) { r->drafts[i], s, (int32_t) pos, 1, 0 };
            e->batch_req[rows] = r;
            e->batch_kind[rows++] = 2;
        }
        step_left -= r->n_drafts;
    }
    /* then prompt chunks, first come first served, in the remaining
     * budget; once a request's prompt ends in this step, a later request's
     * chunk joins only while the step is still small (prompt_room) */
    m = 0;
    for (s = 0; s < e->params.n_slots; s++) {
        r = e->slots[s];
        if (r == NULL || r->state != RQ_PREFILL || r->cancelled) {
            continue;
        }
        for (i = m++; i > 0 && e->prefilling[i - 1]->admit_seq > r->admit_seq; i--) {
            e->prefilling[i] = e->prefilling[i - 1];
        }
        e->prefilling[i] = r;
    }
    budget = e->params.n_batch - n;
    n_chunks = 0;
    ended = 0;
    for (j = 0; j < m && budget > 0 && (!ended || n < QWEN_STEP_SMALL); j++) {
        r = e->prefilling[j];
        s = r->slot;
        if (shared_prefill(e, r, n_chunks)) {
            continue;
        }
        if (r->n_past % QWEN_KV_BLOCK == 0) {
            e->chunk_req[n_chunks] = r;
            e->chunk_start[n_chunks] = r->n_past;
            e->chunk_chain[n_chunks++] = r->chain;
        }
        k = (int) (r->n_prompt - r->n_past);
        k = k < budget ? k : budget;
        for (i = 0; i < k; i++) {
            size_t pos = r->n_past + (size_t) i;
            int    last = pos == r->n_prompt - 1;
            e->batch[n++] = (qwen_batch_entry) { r->tokens[pos], s, (int32_t) pos, last, 1 };
            if (last) {
                e->batch_req[rows] = r;
                e->batch_kind[rows] = 1;
                rows++;
                ended = 1;
            }
        }
        budget -= k;
    }
    *n_rows = rows;
    return n;
}

static void
admit(qwen_engine *e)
{
    int           s;
    qwen_request *r;

    for (s = 0; s < e->params.n_slots && e->wait_head != NULL; s++) {
        if (e->slots[s] != NULL) {
            continue;
        }
        r = e->wait_head;
        e->wait_head = r->next_wait;
        if (e->wait_head == NULL) {
            e->wait_tail = NULL;
        }
        e->n_waiting--;
        r->next_wait = NULL;
        r->state = RQ_PREFILL;
        r->slot = s;
        /* the longest cached prefix, leaving at least the last prompt
         * token to compute: its logits start the answer */
        r->chain = 0;
        r->n_cached = (size_t) qwen_kv_match(e->kv, s, r->tokens, (int) r->n_prompt,
                                             (int) r->n_prompt - 1, 0, &r->chain);
        r->n_past = r->n_cached;
        r->n_published = r->n_cached / QWEN_KV_BLOCK;
        e->cache_queries += r->n_prompt;
        e->cache_hits += r->n_cached;
        r->t_admit = now_ms();
        r->admit_seq = e->n_admitted++;
        e->slots[s] = r;
        e->n_running++;
    }
}

/* Offer the blocks r's slot filled up to position written - 1 to the
 * prefix index. Blocks holding generated positions only where those compute as a
 * prefill would (qwen_ctx_prompt_exact): the index promises a later request
 * the bits its own prefill would write. */
static void
publish_blocks(qwen_engine *e, qwen_request *r, size_t written)
{
    size_t j;

    for (j = r->n_published; (j + 1) * QWEN_KV_BLOCK <= written; j++) {
        if ((j + 1) * QWEN_KV_BLOCK > r->n_prompt && !e->publish_generated) {
            break;
        }
        qwen_kv_publish(e->kv, r->slot, (int) j, r->tokens + j * QWEN_KV_BLOCK, &r->chain);
    }
    r->n_published = j;
}

/*
 * The token r generates from logits lg (its row of this step): forced by
 * a thinking budget, or sampled (through the grammar when it is on; with
 * draft >= 0, accepting or correcting that proposal), then published as
 * an event and accounted for. prompt_end: the row of the prompt's last
 * token. Runs without the lock but for the accounting; *ended when r
 * finished with this token (or before it: an error or a cancel).
 */
static int32_t
take_token(qwen_engine *e, qwen_request *r, float *lg, int prompt_end, int32_t draft,
           int *ended)
{
    qwen_token_event ev;
    int              stop, span = 0;
    int32_t          forced, tok, n_ids;
    size_t           k;
    double           t_now;

    memset(&ev, 0, sizeof(ev));
    for (k = 0; k < r->n_bias; k++) {
        lg[r->bias[k].token] += r->bias[k].bias;
    }
    if (r->n_logprobs > 0) {
        memcpy(e->raw, lg, (size_t) e->vocab * sizeof(float));
    }
    forced = r->think != THINK_OFF ? forced_token(r) : -1;
    if (r->grammar_on) {
        /* the tokens left after this one must be able to close the value */
        long left = r->max_tokens > 0 ? (long) r->max_tokens - (long) r->n_generated - 1
                                      : 0x3fffffffL;
        long room = (long) e->params.n_ctx - (long) r->n_past - 1;

        qwen_grammar_set_budget(r->grammar, (int32_t) (room < left ? room : left));
    }
    if (forced >= 0) {
        tok = forced;       /* the logits only give its logprob */
    } else if (r->grammar_on
               && (n_ids = qwen_grammar_candidates(r->grammar, e->gram_ids, e->vocab)) >= 0)
    {
        /* between values few tokens can fit: only those are looked at */
        tok = qwen_sampler_sample_among(r->sampler, lg, e->gram_ids, n_ids, draft,
                                        qwen_grammar_filter, r->grammar);
    } else if (draft >= 0) {
        tok = qwen_sampler_sample_draft(r->sampler, lg, draft,
                                        r->grammar_on ? qwen_grammar_filter : NULL,
                                        r->grammar);
    } else if (r->grammar_on) {
        tok = qwen_sampler_sample_filtered(r->sampler, lg, qwen_grammar_filter, r->grammar);
    } else {
        tok = qwen_sampler_sample(r->sampler, lg);
    }
    if (tok < 0 || (r->grammar_on && qwen_grammar_accept(r->grammar, tok) != 0)) {
        /* the grammar allows no token at all: cannot happen with a
         * well-formed grammar, but never emit text that breaks it */
        pthread_mutex_lock(&e->mu);
        finish_request(e, r, QWEN_FINISH_ERROR);
        pthread_mutex_unlock(&e->mu);
        *ended = 1;
        return -1;
    }
    if (r->grammar != NULL && !r->grammar_on && tok == r->grammar_after) {
        r->grammar_on = 1;   /* from the next token on */
    }
    if (forced < 0 && r->think != THINK_OFF) {
        track_thinking(r, tok);
    }
    if (r->repeat_guard > 0) {
        span = repeat_check(r, r->tokens + r->n_prompt, r->n_past - r->n_prompt, tok);
    }
    if (r->n_logprobs > 0) {
        fill_logprobs(e->raw, e->vocab, r->n_logprobs, tok, &ev);
    }
    ev.token = tok;
    r->next_token = tok;
    stop = forced < 0 && is_stop_token(e, r, tok);
    if (!stop) {
        qwen_sampler_accept(r->sampler, tok);
    }

    pthread_mutex_lock(&e->mu);
    if (prompt_end) {
        e->prompt_tokens += r->n_prompt;
    }
    /* finish_request may free r (its owner has let it go): nothing reads
     * r once it ended */
    *ended = 1;
    if (r->state != RQ_DONE) {
        t_now = now_ms();
        if (r->t_first == 0.0) {
            r->t_first = t_now;
        }
        /* the gap since this request's previous token, for the
         * inter-token latency metrics */
        ev.gap_ms = r->t_last > 0.0 ? (float) (t_now - r->t_last) : -1.0f;
        r->state = RQ_DECODE;
        if (r->cancelled) {
            finish_request(e, r, QWEN_FINISH_CANCELLED);
        } else if (stop) {
            /* a value the token budget closed early ended for its length */
            finish_request(e, r, r->grammar_on && qwen_grammar_budget_hit(r->grammar)
                                 ? QWEN_FINISH_LENGTH : QWEN_FINISH_STOP);
        } else if (push_event(r, &ev) != 0) {
            finish_request(e, r, QWEN_FINISH_ERROR);
        } else {
            r->t_last = t_now;
            r->n_generated++;
            r->n_forced_out += forced >= 0;
            e->generated_tokens++;
            mark_ready(e, r);
            if (span > 0) {
                r->repeat_span = span;
                finish_request(e, r, QWEN_FINISH_REPETITION);
            } else if ((r->max_tokens > 0 && r->n_generated >= (size_t) r->max_tokens)
                       || r->n_past >= (size_t) e->params.n_ctx)
            {
                /* the next step would write position n_past */
                finish_request(e, r, QWEN_FINISH_LENGTH);
            } else {
                *ended = 0;
            }
        }
    }
    pthread_mutex_unlock(&e->mu);
    return tok;
}

static void *
scheduler_main(void *arg)
{
    qwen_engine      *e = arg;
    int               n, rows, i, s, any, nd;
    char              err[QWEN_ERR_LEN];
    qwen_request     *r;
    int32_t           tok;
    qwen_kv_stats     ks;

    pthread_mutex_lock(&e->mu);
    while (!e->stop) {
        any = 0;
        for (s = 0; s < e->params.n_slots; s++) {
            r = e->slots[s];
            if (r != NULL && r->cancelled) {
                finish_request(e, r, QWEN_FINISH_CANCELLED);
                any = 1;
            }
        }
        admit(e);
        if (any) {
            notify(e);
        }
        n = build_batch(e, &rows);
        if (n == 0) {
            pthread_cond_wait(&e->cv, &e->mu);
            continue;
        }
        pthread_mutex_unlock(&e->mu);

        /* the forward pass runs without the lock: the event loop may submit,
         * poll, pause or cancel meanwhile */
        if (qwen_forward(e->ctx, e->batch, n, e->logits, err, sizeof(err)) != 0) {
            pthread_mutex_lock(&e->mu);
            for (i = 0; i < rows; i++) {
                finish_request(e, e->batch_req[i], QWEN_FINISH_ERROR);
            }
            notify(e);
            continue;
        }
        /* prompt progress: each prefilling request advanced by its chunk */
        for (i = 0; i < n; i++) {
            r = e->slots[e->batch[i].seq];
            if (r != NULL && r->state == RQ_PREFILL) {
                r->n_past = (size_t) e->batch[i].pos + 1;
            }
        }
        /* the index sees every block this step filled before any request
         * of the step can end (and free its blocks): a sequence's entries
         * are contiguous in the batch, its last one is its last position */
        for (i = 0; i < n; i++) {
            r = e->slots[e->batch[i].seq];
            if (r != NULL && (i + 1 == n || e->batch[i + 1].seq != e->batch[i].seq)) {
                /* a decoding sequence's drafts are not its tokens yet */
                publish_blocks(e, r, r->state == RQ_DECODE ? r->n_past + 1
                                                          : (size_t) e->batch[i].pos + 1);
            }
        }
        /* sample outside the lock: samplers belong to this thread. A
         * decode row may be followed by its drafts' rows: each draft the
         * sampled token agrees with was fed at its position, so its row
         * gives the next token; the first disagreement ends the run */
        for (i = 0; i < rows; i += 1 + nd) {
            int ended = 0, j;

            r = e->batch_req[i];
            nd = e->batch_kind[i] == 0 ? r->n_drafts : 0;
            if (nd > 0) {
                pthread_mutex_lock(&e->mu);
                r->n_drafted += (size_t) nd;
                e->drafted += (uint64_t) nd;
                pthread_mutex_unlock(&e->mu);
            }
            for (j = 0; ; j++) {
                int32_t draft = j < nd ? r->drafts[j] : -1;

                if (e->batch_kind[i] != 1) {
                    r->n_past++;     /* the token fed at this row's position counts */
                }
                if (j > 0) {
                    /* draft j - 1 was taken: this row's logits follow it */
                    pthread_mutex_lock(&e->mu);
                    r->n_draft_accepted++;
                    e->draft_accepted++;
                    pthread_mutex_unlock(&e->mu);
                }
                tok = take_token(e, r, e->logits + (size_t) (i + j) * e->vocab,
                                 e->batch_kind[i] == 1, draft, &ended);
                if (ended || j == nd || tok != draft) {
                    break;
                }
            }
            /* an ended request may be freed already: r is not read again */
            if (!ended && nd > 0) {
                /* all taken: propose twice as many; none: half as many */
                r->draft_len = j == nd ? 2 * nd : j == 0 ? nd / 2 : j + 1;
                r->draft_len = r->draft_len < 1 ? 1 : r->draft_len > QWEN_DRAFT_MAX
                               ? QWEN_DRAFT_MAX : r->draft_len;
                if (j > 0) {
                    r->draft_backoff = 0;
                } else if (nd == 1) {
                    r->draft_backoff = r->draft_backoff == 0 ? 2
                                       : r->draft_backoff < 32 ? 2 * r->draft_backoff : 32;
                    r->draft_skip = r->draft_backoff;
                }
            }
            if (!ended && j > 0) {
                publish_blocks(e, r, r->n_past);   /* the accepted drafts' blocks */
            }
        }
        qwen_kv_get_stats(e->kv, &ks);
        pthread_mutex_lock(&e->mu);
        e->steps++;
        e->cache_blocks = (size_t) ks.n_indexed;
        if (e->n_ready > 0) {
            notify(e);
        }
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

/* ---------------------------------------------------------------- API */

qwen_engine_params
qwen_engine_default_params(void)
{
    return (qwen_engine_params) {
        .n_threads = 1, .n_slots = 4, .n_ctx = 4096, .n_batch = 256, .max_queue = 16,
        .prefix_cache = 1, .draft = 1,
    };
}

qwen_request_params
qwen_request_default_params(void)
{
    /* -1: none, or the engine's setting */
    return (qwen_request_params) {
        .sampling = qwen_sampling_default_params(), .grammar_after_token = -1, .draft = -1,
        .thinking_budget = -1, .think_open_token = -1, .think_close_token = -1,
    };
}

qwen_engine *
qwen_engine_new(const qwen_model *model, const qwen_engine_params *p, char *err,
                size_t err_len)
{
    qwen_engine    *e;
    qwen_ctx_params cp;
    size_t          max_live, block_bytes;

    /* the context's KV blocks in its format (0: unknown, which
     * qwen_ctx_new_cached refuses below) */
    cp = qwen_ctx_default_params();
    cp.kernels = p->kernels;
    cp.kv_format = p->kv_format;
    block_bytes = qwen_kv_block_bytes(model, &cp);
    if (p->n_slots < 1 || p->n_slots > 1024 || p->max_queue < 0 || p->n_batch < 1
        || (block_bytes > 0 && p->prefix_cache_bytes / block_bytes > (size_t) (1 << 30)))
    {
        qwen_fail(err, err_len, "engine parameters out of range (slots %d, queue %d, batch %d, "
                  "prefix cache %zu bytes)", p->n_slots, p->max_queue, p->n_batch,
                  p->prefix_cache_bytes);
        return NULL;
    }
    e = calloc(1, sizeof(*e));
    if (e == NULL) {
        qwen_fail(err, err_len, "out of memory");
        return NULL;
    }
    e->model = model;
    e->params = *p;
    /* this process's page tables for the shared weights, before a request waits on them */
    qwen_model_map_in(model);
    /* a batch always has room for every slot's decode token */
    if (e->params.n_batch < e->params.n_slots) {
        e->params.n_batch = e->params.n_slots;
    }
    e->vocab = model->cfg.vocab_size;
    e->efd = -1;
    cp.n_threads = p->n_threads;
    cp.n_seqs = p->n_slots;
    cp.n_ctx = p->n_ctx;
    cp.n_batch = e->params.n_batch;
    e->ctx = qwen_ctx_new_cached(model, &cp,
                                 p->prefix_cache && block_bytes > 0
                                 ? (int) (p->prefix_cache_bytes / block_bytes) : 0,
                                 p->prefix_cache, err, err_len);
    if (e->ctx == NULL) {
        free(e);
        return NULL;
    }
    e->kv = qwen_ctx_kv_cache(e->ctx);
    e->publish_generated = qwen_ctx_prompt_exact(e->ctx);
    max_live = (size_t) p->n_slots + (size_t) p->max_queue + 1;
    e->slots = calloc((size_t) p->n_slots, sizeof(*e->slots));
    /* ready holds each live request at most once; finished requests whose
     * owner has not polled yet are live too, so allow for them generously */
    e->ready = calloc(4 * max_live + 64, sizeof(*e->ready));
    e->batch = calloc((size_t) e->params.n_batch, sizeof(*e->batch));
    e->max_rows = p->n_slots + QWEN_DRAFT_STEP_MAX;
    e->batch_req = calloc((size_t) e->max_rows, sizeof(*e->batch_req));
    e->batch_kind = calloc((size_t) e->max_rows, sizeof(*e->batch_kind));
    e->chunk_req = calloc((size_t) p->n_slots, sizeof(*e->chunk_req));
    e->prefilling = calloc((size_t) p->n_slots, sizeof(*e->prefilling));
    e->chunk_start = calloc((size_t) p->n_slots, sizeof(*e->chunk_start));
    e->chunk_chain = calloc((size_t) p->n_slots, sizeof(*e->chunk_chain));
    e->logits = malloc((size_t) e->max_rows * e->vocab * sizeof(float));
    e->raw = malloc((size_t) e->vocab * sizeof(float));
    e->gram_ids = malloc((size_t) (e->vocab + 1) * sizeof(int32_t));
    {
        qwen_sampling_params sp = qwen_sampling_default_params();

        e->sampler_scratch = qwen_sampler_new(&sp, e->vocab);
    }
    e->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!e->slots || !e->ready || !e->batch || !e->batch_req || !e->batch_kind
        || !e->chunk_req || !e->prefilling || !e->chunk_start || !e->chunk_chain || !e->logits
        || !e->raw || !e->gram_ids || !e->sampler_scratch || e->efd < 0)
    {
        qwen_fail(err, err_len, "cannot set up the engine: %s",
             e->efd < 0 ? strerror(errno) : "out of memory");
        qwen_engine_free(e);
        return NULL;
    }
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    if (pthread_create(&e->thread, NULL, scheduler_main, e) != 0) {
        qwen_fail(err, err_len, "cannot start the scheduler thread");
        qwen_engine_free(e);
        return NULL;
    }
    e->thread_started = 1;
    return e;
}

void
qwen_engine_free(qwen_engine *e)
{
    int           s;
    qwen_request *r;

    if (e == NULL) {
        return;
    }
    if (e->thread_started) {
        pthread_mutex_lock(&e->mu);
        e->stop = 1;
        pthread_cond_signal(&e->cv);
        pthread_mutex_unlock(&e->mu);
        pthread_join(e->thread, NULL);
        /* everything still in the engine ends as cancelled; requests the
         * owner still holds stay valid until released */
        for (s = 0; s < e->params.n_slots; s++) {
            if (e->slots[s] != NULL) {
                r = e->slots[s];
                finish_request(e, r, QWEN_FINISH_CANCELLED);
            }
        }
        while (e->wait_head != NULL) {
            finish_request(e, e->wait_head, QWEN_FINISH_CANCELLED);
        }
        for (s = 0; s < (int) e->n_ready; s++) {
            e->ready[s]->in_ready = 0;
            e->ready[s]->engine = NULL;
        }
        pthread_mutex_destroy(&e->mu);
        pthread_cond_destroy(&e->cv);
    }
    if (e->efd >= 0) {
        close(e->efd);
    }
    qwen_ctx_free(e->ctx);
    free(e->slots);
    free(e->ready);
    free(e->batch);
    free(e->batch_req);
    free(e->batch_kind);
    free(e->chunk_req);
    free(e->prefilling);
    free(e->chunk_start);
    free(e->chunk_chain);
    free(e->logits);
    free(e->raw);
    free(e->gram_ids);
    qwen_sampler_free(e->sampler_scratch);
    free(e);
}

int
qwen_engine_notify_fd(const qwen_engine *e)
{
    return e->efd;
}

void
qwen_engine_get_stats(qwen_engine *e, qwen_engine_stats *out)
{
    int s;

    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&e->mu);
    out->running = e->n_running;
    out->waiting = e->n_waiting;
    out->n_slots = e->params.n_slots;
    out->max_queue = e->params.max_queue;
    out->prompt_tokens = e->prompt_tokens;
    out->generated_tokens = e->generated_tokens;
    memcpy(out->finished, e->finished, sizeof(out->finished));
    out->steps = e->steps;
    for (s = 0; s < e->params.n_slots; s++) {
        if (e->slots[s] != NULL) {
            out->kv_tokens_used += e->slots[s]->n_prompt + e->slots[s]->n_generated;
        }
    }
    out->kv_tokens_total = (size_t) e->params.n_slots * e->params.n_ctx;
    out->prefix_cache_queries = e->cache_queries;
    out->prefix_cache_hits = e->cache_hits;
    out->prefix_cache_blocks = e->cache_blocks;
    out->drafted = e->drafted;
    out->draft_accepted = e->draft_accepted;
    pthread_mutex_unlock(&e->mu);
}

/* The thinking budget's parameters (thinking_budget >= 0): 0, or -1 with
 * err set. */
static int
check_thinking(const qwen_engine *e, const qwen_request_params *p, char *err, size_t err_len)
{
    const int32_t      *ids = p->think_close_ids;
    size_t              i, n = p->n_think_close_ids;
    int                 seen = 0, on = 0;
    qwen_grammar_state *st;

    if (p->think_open_token < 0 || p->think_open_token >= e->vocab
        || p->think_close_token < 0 || p->think_close_token >= e->vocab)
    {
        qwen_fail(err, err_len, "thinking budget: think_open_token %d and think_close_token %d "
                  "must be in the vocabulary (0 to %d)", p->think_open_token,
                  p->think_close_token, e->vocab - 1);
        return -1;
    }
    if (ids == NULL || n == 0 || n > QWEN_MAX_FORCED) {
        qwen_fail(err, err_len, "thinking budget: think_close_ids must hold 1 to %d tokens, "
                  "not %zu", QWEN_MAX_FORCED, ids == NULL ? (size_t) 0 : n);
        return -1;
    }
    for (i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= e->vocab) {
            qwen_fail(err, err_len, "thinking budget: think_close_ids[%zu] (id %d) is outside "
                      "the vocabulary (0 to %d)", i, ids[i], e->vocab - 1);
            return -1;
        }
        seen |= ids[i] == p->think_close_token;
    }
    if (!seen) {
        qwen_fail(err, err_len, "thinking budget: think_close_ids must contain "
                  "think_close_token (%d)", p->think_close_token);
        return -1;
    }
    if (p->grammar == NULL) {
        return 0;
    }
    /* the grammar turns on with the forced think_close_token: the tokens
     * forced after it are the first it reads */
    if (p->grammar_after_token != p->think_close_token) {
        qwen_fail(err, err_len, "thinking budget with a grammar: grammar_after_token (%d) "
                  "must be think_close_token (%d)", p->grammar_after_token,
                  p->think_close_token);
        return -1;
    }
    st = qwen_grammar_state_new(p->grammar);
    if (st == NULL) {
        qwen_fail(err, err_len, "out of memory");
        return -1;
    }
    for (i = 0; i < n; i++) {
        if (on && qwen_grammar_accept(st, ids[i]) != 0) {
            qwen_grammar_state_free(st);
            qwen_fail(err, err_len, "thinking budget: the grammar does not take "
                      "think_close_ids[%zu] (id %d) after think_close_token", i, ids[i]);
            return -1;
        }
        on |= ids[i] == p->think_close_token;
    }
    qwen_grammar_state_free(st);
    return 0;
}

qwen_status
qwen_submit(qwen_engine *e, const qwen_request_params *p, void *user,
            qwen_request **out, char *err, size_t err_len)
{
    qwen_request *r;
    size_t        i, need;
    int           free_slots;

    *out = NULL;
    if (p->prompt == NULL || p->n_prompt == 0) {
        qwen_fail(err, err_len, "the prompt is empty");
        return QWEN_E_INVALID;
    }
    for (i = 0; i < p->n_prompt; i++) {
        if (p->prompt[i] < 0 || p->prompt[i] >= e->vocab) {
            qwen_fail(err, err_len, "prompt token %zu (id %d) is outside the vocabulary (0 to %d)",
                 i, p->prompt[i], e->vocab - 1);
            return QWEN_E_INVALID;
        }
    }
    for (i = 0; i < p->n_logit_bias; i++) {
        if (p->logit_bias[i].token < 0 || p->logit_bias[i].token >= e->vocab
            || isnan(p->logit_bias[i].bias))
        {
            qwen_fail(err, err_len, "logit bias %zu: token %d outside the vocabulary (0 to %d) "
                      "or bias not a number", i, p->logit_bias[i].token, e->vocab - 1);
            return QWEN_E_INVALID;
        }
    }
    if (p->thinking_budget >= 0 && check_thinking(e, p, err, err_len) != 0) {
        return QWEN_E_INVALID;
    }
    if (p->repeat_guard < 0 || p->repeat_guard == 1) {
        qwen_fail(err, err_len, "repeat_guard must be 0 (off) or at least 2, not %d",
                  p->repeat_guard);
        return QWEN_E_INVALID;
    }
    if (p->n_logprobs < 0 || p->n_logprobs > QWEN_MAX_TOP_LOGPROBS) {
        qwen_fail(err, err_len, "logprobs must be 0 to %d", QWEN_MAX_TOP_LOGPROBS);
        return QWEN_E_INVALID;
    }
    if (!(p->sampling.temperature >= 0.0f) || !(p->sampling.top_p >= 0.0f)
        || !(p->sampling.min_p >= 0.0f) || p->sampling.min_p > 1.0f
        || !(p->sampling.repetition_penalty > 0.0f))
    {
        qwen_fail(err, err_len, "sampling parameters out of range");
        return QWEN_E_INVALID;
    }
    need = p->n_prompt + (size_t) (p->max_tokens > 0 ? p->max_tokens : 1);
    if (need > (size_t) e->params.n_ctx + 1 || p->n_prompt >= (size_t) e->params.n_ctx) {
        qwen_fail(err, err_len, "prompt of %zu tokens plus %d to generate exceeds the context "
             "of %d tokens", p->n_prompt, p->max_tokens > 0 ? p->max_tokens : 1,
             e->params.n_ctx);
        return QWEN_E_TOO_LONG;
    }

    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        qwen_fail(err, err_len, "out of memory");
        return QWEN_E_INVALID;
    }
    r->engine = e;
    r->refs = 2;
    r->user = user;
    r->n_prompt = p->n_prompt;
    r->max_tokens = p->max_tokens;
    r->ignore_eos = p->ignore_eos;
    r->n_logprobs = p->n_logprobs;
    /* room for every position the slot can fill: the prompt, then the
     * generated tokens fed back (max_tokens or up to the context) */
    r->tokens = malloc((p->max_tokens > 0 ? p->n_prompt + (size_t) p->max_tokens
                                          : (size_t) e->params.n_ctx) * sizeof(int32_t));
    r->stop_ids = malloc((p->n_stop_ids + 1) * sizeof(int32_t));
    r->bias = malloc((p->n_logit_bias + 1) * sizeof(qwen_logit_bias));
    r->sampler = qwen_sampler_new_sharing(&p->sampling, e->sampler_scratch);
    if (p->grammar != NULL) {
        r->grammar = qwen_grammar_state_new(p->grammar);
        r->grammar_after = p->grammar_after_token;
        r->grammar_on = p->grammar_after_token <= 0;
    }
    if (p->thinking_budget >= 0) {
        r->close_ids = malloc(p->n_think_close_ids * sizeof(int32_t));
        r->n_close = p->n_think_close_ids;
        r->think_budget = p->thinking_budget;
        r->think_open = p->think_open_token;
        r->think_close = p->think_close_token;
        r->think = p->thinking_open ? THINK_OPEN : THINK_BEFORE;
    }
    r->repeat_guard = p->repeat_guard;
    r->draft_on = p->draft < 0 ? e->params.draft != 0 : p->draft != 0;
    r->draft_len = QWEN_DRAFT_MAX / 2;
    if (r->tokens == NULL || r->stop_ids == NULL || r->bias == NULL || r->sampler == NULL
        || (p->grammar != NULL && r->grammar == NULL)
        || (p->thinking_budget >= 0 && r->close_ids == NULL))
    {
        request_free(r);
        qwen_fail(err, err_len, "out of memory");
        return QWEN_E_INVALID;
    }
    memcpy(r->tokens, p->prompt, p->n_prompt * sizeof(int32_t));
    if (p->n_stop_ids > 0) {
        memcpy(r->stop_ids, p->stop_ids, p->n_stop_ids * sizeof(int32_t));
    }
    r->n_stop_ids = p->n_stop_ids;
    if (p->n_logit_bias > 0) {
        memcpy(r->bias, p->logit_bias, p->n_logit_bias * sizeof(qwen_logit_bias));
    }
    r->n_bias = p->n_logit_bias;
    if (r->close_ids != NULL) {
        memcpy(r->close_ids, p->think_close_ids, r->n_close * sizeof(int32_t));
    }
    /* penalties see the prompt too, as llama.cpp and vLLM do */
    for (i = 0; i < p->n_prompt; i++) {
        qwen_sampler_accept(r->sampler, p->prompt[i]);
    }
    r->state = RQ_WAITING;
    r->slot = -1;
    r->t_submit = now_ms();

    pthread_mutex_lock(&e->mu);
    if (e->stop) {
        pthread_mutex_unlock(&e->mu);
        request_free(r);
        qwen_fail(err, err_len, "the engine is shutting down");
        return QWEN_E_SHUTDOWN;
    }
    free_slots = e->params.n_slots - e->n_running;
    if (e->n_waiting - free_slots >= e->params.max_queue) {
        int running = e->n_running, waiting = e->n_waiting;
        pthread_mutex_unlock(&e->mu);
        request_free(r);
        qwen_fail(err, err_len, "all %d slots are busy and %d requests are waiting "
             "(queue limit %d)", running, waiting, e->params.max_queue);
        return QWEN_E_QUEUE_FULL;
    }
    if (e->wait_tail != NULL) {
        e->wait_tail->next_wait = r;
    } else {
        e->wait_head = r;
    }
    e->wait_tail = r;
    e->n_waiting++;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    *out = r;
    return 0;
}

size_t
qwen_engine_ready(qwen_engine *e, qwen_request **out, size_t max)
{
    size_t n = 0;

    pthread_mutex_lock(&e->mu);
    while (n < max && e->n_ready > 0) {
        out[n] = e->ready[--e->n_ready];
        out[n]->in_ready = 0;
        n++;
    }
    pthread_mutex_unlock(&e->mu);
    return n;
}

void *
qwen_request_user_data(const qwen_request *r)
{
    return r->user;
}

size_t
qwen_request_poll(qwen_request *r, qwen_token_event *out, size_t max,
                  qwen_finish *finish)
{
    qwen_engine *e = r->engine;
    size_t       n;

    if (e != NULL) {
        pthread_mutex_lock(&e->mu);
    }
    n = r->n_events < max ? r->n_events : max;
    if (n > 0) {
        memcpy(out, r->events, n * sizeof(*out));
        memmove(r->events, r->events + n, (r->n_events - n) * sizeof(*out));
        r->n_events -= n;
    }
    *finish = r->n_events == 0 && r->state == RQ_DONE ? r->finish : QWEN_FINISH_NONE;
    if (e != NULL) {
        pthread_mutex_unlock(&e->mu);
    }
    return n;
}

void
qwen_request_pause(qwen_request *r, int paused)
{
    qwen_engine *e = r->engine;

    if (e == NULL) {
        return;
    }
    pthread_mutex_lock(&e->mu);
    r->paused = paused;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

void
qwen_request_cancel(qwen_request *r)
{
    qwen_engine *e = r->engine;

    if (e == NULL) {
        return;
    }
    pthread_mutex_lock(&e->mu);
    if (r->state == RQ_WAITING) {
        finish_request(e, r, QWEN_FINISH_CANCELLED);   /* never started */
    } else if (r->state != RQ_DONE) {
        r->cancelled = 1;   /* the scheduler frees the slot at its next step */
        pthread_cond_signal(&e->cv);
    }
    pthread_mutex_unlock(&e->mu);
}

void
qwen_request_release(qwen_request *r)
{
    qwen_engine *e = r->engine;

    if (e == NULL) {
        request_free(r);    /* the engine is gone and dropped its reference */
        return;
    }
    pthread_mutex_lock(&e->mu);
    r->owner_gone = 1;
    remove_ready(e, r);
    if (r->state == RQ_WAITING) {
        finish_request(e, r, QWEN_FINISH_CANCELLED);
    } else if (r->state != RQ_DONE) {
        r->cancelled = 1;
        pthread_cond_signal(&e->cv);
    }
    if (--r->refs == 0) {
        request_free(r);
    }
    pthread_mutex_unlock(&e->mu);
}

void
qwen_request_get_timing(qwen_request *r, qwen_request_timing *out)
{
    qwen_engine *e = r->engine;
    double       end;

    if (e != NULL) {
        pthread_mutex_lock(&e->mu);
    }
    end = r->t_done > 0.0 ? r->t_done : now_ms();
    out->queued_ms = (r->t_admit > 0.0 ? r->t_admit : end) - r->t_submit;
    out->first_token_ms = r->t_first > 0.0 ? r->t_first - r->t_submit : -1.0;
    out->total_ms = end - r->t_submit;
    out->n_prompt = r->n_prompt;
    out->n_generated = r->n_generated;
    out->n_cached = r->n_cached;
    out->n_drafted = r->n_drafted;
    out->n_draft_accepted = r->n_draft_accepted;
    out->n_forced = r->n_forced_out;
    out->repeat_span = r->repeat_span;
    if (e != NULL) {
        pthread_mutex_unlock(&e->mu);
    }
}

const char *
qwen_engine_kv_format(const qwen_engine *e)
{
    return qwen_ctx_kv_format(e->ctx);
}
