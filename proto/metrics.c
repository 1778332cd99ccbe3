/*
 * metrics.c - serving metrics in Prometheus text exposition format 0.0.4:
 * qp_metrics is plain old data (fixed size, no pointers) so a copy per
 * worker can live in shared memory and be summed; histograms have fixed
 * buckets per kind, sized for CPU inference (a long prefill takes seconds).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qwen_proto.h"

typedef struct {
    const char   *name;
    const char   *help;
    const double *bounds;
    size_t        n_bounds;
} hist_def;

static const double ttft_bounds[] = {
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160
};
static const double itl_bounds[] = {
    0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3,
    0.4, 0.5, 0.75, 1, 2.5
};
static const double e2e_bounds[] = {
    0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960
};
static const double queue_bounds[] = {
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const hist_def hists[QP_HIST_COUNT] = {
    { "qwen_time_to_first_token_seconds",
      "Time from submission to the first generated token.", ttft_bounds, N(ttft_bounds) },
    { "qwen_inter_token_latency_seconds",
      "Time between two generated tokens of a request.", itl_bounds, N(itl_bounds) },
    { "qwen_e2e_request_latency_seconds",
      "Time from submission to the end of a request.", e2e_bounds, N(e2e_bounds) },
    { "qwen_request_queue_time_seconds",
      "Time a request waited for a KV cache slot.", queue_bounds, N(queue_bounds) },
};

static const char *const reason_names[QP_REASON_COUNT] = {
    "stop", "length", "cancelled", "error"
};

static const char *const refusal_names[QP_REFUSED_COUNT] = {
    "busy", "quota", "shutdown"
};

/* Every table fits the fixed-size struct. */
typedef char qp_assert_buckets[(N(ttft_bounds) <= QP_HIST_MAX_BUCKETS
                                && N(itl_bounds) <= QP_HIST_MAX_BUCKETS
                                && N(e2e_bounds) <= QP_HIST_MAX_BUCKETS
                                && N(queue_bounds) <= QP_HIST_MAX_BUCKETS) ? 1 : -1];

/* ------------------------------------------------------------ updates */

void
qp_metrics_init(qp_metrics *m)
{
    memset(m, 0, sizeof(*m));
}

void
qp_metrics_add(qp_metrics *dst, const qp_metrics *src)
{
    size_t i, j;

    dst->requests_running += src->requests_running;
    dst->requests_waiting += src->requests_waiting;
    dst->kv_tokens_used += src->kv_tokens_used;
    dst->kv_tokens_total += src->kv_tokens_total;
    dst->prompt_tokens_total += src->prompt_tokens_total;
    dst->prefix_cache_queries_total += src->prefix_cache_queries_total;
    dst->prefix_cache_hits_total += src->prefix_cache_hits_total;
    dst->draft_tokens_total += src->draft_tokens_total;
    dst->draft_accepted_tokens_total += src->draft_accepted_tokens_total;
    dst->generation_tokens_total += src->generation_tokens_total;
    for (i = 0; i < QP_REASON_COUNT; i++) {
        dst->finished[i] += src->finished[i];
    }
    for (i = 0; i < QP_REFUSED_COUNT; i++) {
        dst->refused[i] += src->refused[i];
    }
    for (i = 0; i < QP_HIST_COUNT; i++) {
        for (j = 0; j <= QP_HIST_MAX_BUCKETS; j++) {
            dst->hist[i].bucket[j] += src->hist[i].bucket[j];
        }
        dst->hist[i].count += src->hist[i].count;
        dst->hist[i].sum += src->hist[i].sum;
    }
}

static void
hist_observe(qp_histogram *h, qp_hist_id id, double seconds, uint64_t n)
{
    const hist_def *d = &hists[id];
    size_t          i;

    if (seconds < 0) {
        seconds = 0;
    }
    for (i = 0; i < d->n_bounds && seconds > d->bounds[i]; i++) {
        /* le is inclusive: the first bound >= seconds */
    }
    h->bucket[i] += n;          /* i == n_bounds: above every bound */
    h->count += n;
    h->sum += seconds * (double) n;
}

void
qp_metrics_observe_n(qp_metrics *m, qp_hist_id id, double seconds, uint64_t n)
{
    if ((int) id < 0 || id >= QP_HIST_COUNT || n == 0 || isnan(seconds)) {
        return;
    }
    hist_observe(&m->hist[id], id, seconds, n);
}

void
qp_itl_observe(qp_histogram *itl, const qwen_token_event *ev, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (ev[i].gap_ms >= 0.0f) {     /* the first token has no gap */
            hist_observe(itl, QP_HIST_ITL, ev[i].gap_ms / 1000.0, 1);
        }
    }
}

void
qp_metrics_observe(qp_metrics *m, qp_hist_id id, double seconds)
{
    qp_metrics_observe_n(m, id, seconds, 1);
}

void
qp_metrics_set_engine(qp_metrics *m, const qwen_engine_stats *s)
{
    m->requests_running = s->running > 0 ? (uint64_t) s->running : 0;
    m->requests_waiting = s->waiting > 0 ? (uint64_t) s->waiting : 0;
    m->kv_tokens_used = (uint64_t) s->kv_tokens_used;
    m->kv_tokens_total = (uint64_t) s->kv_tokens_total;
}

qp_reason
qp_reason_from_name(const char *name)
{
    if (name == NULL) {
        return QP_REASON_ERROR;
    }
    if (strcmp(name, "stop") == 0 || strcmp(name, "tool_calls") == 0) {
        return QP_REASON_STOP;
    }
    if (strcmp(name, "length") == 0) {
        return QP_REASON_LENGTH;
    }
    if (strcmp(name, "cancelled") == 0) {
        return QP_REASON_CANCELLED;
    }
    return QP_REASON_ERROR;
}

void
qp_metrics_refused(qp_metrics *m, qp_refusal why)
{
    if ((unsigned) why < QP_REFUSED_COUNT) {
        m->refused[why]++;
    }
}

void
qp_metrics_request_done(qp_metrics *m, const qwen_request_timing *t, const char *reason,
                        const qp_histogram *itl)
{
    size_t j;

    m->finished[qp_reason_from_name(reason)]++;
    if (itl != NULL) {
        for (j = 0; j <= QP_HIST_MAX_BUCKETS; j++) {
            m->hist[QP_HIST_ITL].bucket[j] += itl->bucket[j];
        }
        m->hist[QP_HIST_ITL].count += itl->count;
        m->hist[QP_HIST_ITL].sum += itl->sum;
    }
    if (t == NULL) {
        return;
    }
    m->prompt_tokens_total += t->n_prompt;
    m->prefix_cache_queries_total += t->n_prompt;
    m->prefix_cache_hits_total += t->n_cached;
    m->draft_tokens_total += t->n_drafted;
    m->draft_accepted_tokens_total += t->n_draft_accepted;
    m->generation_tokens_total += t->n_generated;
    if (t->queued_ms >= 0) {
        qp_metrics_observe(m, QP_HIST_QUEUE, t->queued_ms / 1000.0);
    }
    if (t->first_token_ms >= 0) {
        qp_metrics_observe(m, QP_HIST_TTFT, t->first_token_ms / 1000.0);
    }
    if (t->total_ms >= 0) {
        qp_metrics_observe(m, QP_HIST_E2E, t->total_ms / 1000.0);
    }
}

/* ------------------------------------------------------------- output */

/* Shortest text that reads back to v; Prometheus spells infinities and
 * NaN as +Inf, -Inf, NaN. */
static int
num(qp_buf *b, double v)
{
    char s[40];
    int  p;

    if (isnan(v)) {
        return qp_buf_printf(b, "NaN");
    }
    if (isinf(v)) {
        return qp_buf_printf(b, v > 0 ? "+Inf" : "-Inf");
    }
    for (p = 1; p <= 17; p++) {
        snprintf(s, sizeof(s), "%.*g", p, v);
        if (strtod(s, NULL) == v) {
            break;
        }
    }
    return qp_buf_printf(b, "%s", s);
}

static int
family(qp_buf *b, const char *name, const char *type, const char *help)
{
    return qp_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static int
scalar(qp_buf *b, const char *name, const char *type, const char *help, uint64_t v)
{
    return family(b, name, type, help) != 0
           || qp_buf_printf(b, "%s %llu\n", name, (unsigned long long) v) != 0 ? -1 : 0;
}

static int
histogram(qp_buf *b, const hist_def *d, const qp_histogram *h)
{
    uint64_t cum = 0;
    size_t   i;

    if (family(b, d->name, "histogram", d->help) != 0) {
        return -1;
    }
    for (i = 0; i < d->n_bounds; i++) {
        cum += h->bucket[i];
        if (qp_buf_printf(b, "%s_bucket{le=\"", d->name) != 0 || num(b, d->bounds[i]) != 0
            || qp_buf_printf(b, "\"} %llu\n", (unsigned long long) cum) != 0)
        {
            return -1;
        }
    }
    /* +Inf is the total, whatever the bucket arrays say */
    if (qp_buf_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum ", d->name,
                      (unsigned long long) h->count, d->name) != 0
        || num(b, h->sum) != 0
        || qp_buf_printf(b, "\n%s_count %llu\n", d->name, (unsigned long long) h->count) != 0)
    {
        return -1;
    }
    return 0;
}

int
qp_metrics_text(const qp_metrics *m, qp_buf *out)
{
    size_t i;
    double usage = m->kv_tokens_total > 0
                   ? (double) m->kv_tokens_used / (double) m->kv_tokens_total : 0;

    if (scalar(out, "qwen_num_requests_running", "gauge",
               "Requests in KV cache slots, being generated.",
               m->requests_running) != 0
        || scalar(out, "qwen_num_requests_waiting", "gauge",
                  "Requests queued for a KV cache slot.", m->requests_waiting) != 0
        || family(out, "qwen_kv_cache_usage_ratio", "gauge",
                  "Share of KV cache positions held by running requests (0 to 1).") != 0
        || qp_buf_printf(out, "qwen_kv_cache_usage_ratio ") != 0
        || num(out, usage) != 0 || qp_buf_printf(out, "\n") != 0
        || scalar(out, "qwen_prompt_tokens_total", "counter",
                  "Prompt tokens of finished requests.",
                  m->prompt_tokens_total) != 0
        || scalar(out, "qwen_prefix_cache_queries_total", "counter",
                  "Prompt tokens of finished requests looked up in the prefix cache.",
                  m->prefix_cache_queries_total) != 0
        || scalar(out, "qwen_prefix_cache_hits_total", "counter",
                  "Prompt tokens of finished requests found in the prefix cache "
                  "(not prefilled).", m->prefix_cache_hits_total) != 0
        || scalar(out, "qwen_draft_tokens_total", "counter",
                  "N-gram draft tokens proposed for finished requests.",
                  m->draft_tokens_total) != 0
        || scalar(out, "qwen_draft_accepted_tokens_total", "counter",
                  "Of them, tokens the model agreed with (generated without a step of "
                  "their own).", m->draft_accepted_tokens_total) != 0
        || scalar(out, "qwen_generation_tokens_total", "counter",
                  "Tokens generated for finished requests.",
                  m->generation_tokens_total) != 0
        || family(out, "qwen_request_success_total", "counter",
                  "Finished requests by finish reason.") != 0)
    {
        return -1;
    }
    for (i = 0; i < QP_REASON_COUNT; i++) {
        if (qp_buf_printf(out, "qwen_request_success_total{finished_reason=\"%s\"} %llu\n",
                          reason_names[i], (unsigned long long) m->finished[i]) != 0)
        {
            return -1;
        }
    }
    if (family(out, "qwen_request_refused_total", "counter",
               "Requests refused before generation: busy (every slot and queue of the "
               "server full), quota (qwen_limit_tokens), shutdown (draining).") != 0)
    {
        return -1;
    }
    for (i = 0; i < QP_REFUSED_COUNT; i++) {
        if (qp_buf_printf(out, "qwen_request_refused_total{reason=\"%s\"} %llu\n",
                          refusal_names[i], (unsigned long long) m->refused[i]) != 0)
        {
            return -1;
        }
    }
    for (i = 0; i < QP_HIST_COUNT; i++) {
        if (histogram(out, &hists[i], &m->hist[i]) != 0) {
            return -1;
        }
    }
    return 0;
}
