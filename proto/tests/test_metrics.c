/*
 * test_metrics.c - the Prometheus text of qp_metrics, checked line by line
 * by a small exposition validator (names, labels, HELP and TYPE before the
 * samples, contiguous families, cumulative histogram buckets ending at
 * +Inf = _count), the histogram and counter arithmetic, summing workers,
 * and the validator rejecting broken text. No model needed.
 */
#include <math.h>

#include "proto_test.h"

/* ------------------------------------------------------------ validator */

typedef struct {
    char   name[128];
    char   type[16];
    int    has_help, has_type, has_samples, closed;
    /* histograms */
    double last_le;
    double last_bucket;
    int    n_buckets, has_inf, has_sum, has_count;
    double inf_value, count_value;
} prom_family;

typedef struct {
    prom_family fam[64];
    int         n;
    int         current;    /* family of the last sample, -1 none */
} prom_state;

static int
prom_name_ok(const char *s, size_t n, int label)
{
    size_t i;

    if (n == 0) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        int c = (unsigned char) s[i];

        if (!(isalpha(c) || c == '_' || (!label && c == ':') || (i > 0 && isdigit(c)))) {
            return 0;
        }
    }
    return 1;
}

static int
prom_value(const char *s, double *v)
{
    char *end;

    if (strcmp(s, "+Inf") == 0 || strcmp(s, "Inf") == 0) {
        *v = INFINITY;
        return 1;
    }
    if (strcmp(s, "-Inf") == 0) {
        *v = -INFINITY;
        return 1;
    }
    if (strcmp(s, "NaN") == 0) {
        *v = NAN;
        return 1;
    }
    if (*s == '\0') {
        return 0;
    }
    *v = strtod(s, &end);
    return *end == '\0';
}

static prom_family *
prom_find(prom_state *st, const char *name, size_t n, int create)
{
    int i;

    for (i = 0; i < st->n; i++) {
        if (strlen(st->fam[i].name) == n && strncmp(st->fam[i].name, name, n) == 0) {
            return &st->fam[i];
        }
    }
    if (!create || st->n == 64 || n >= sizeof(st->fam[0].name)) {
        return NULL;
    }
    memset(&st->fam[st->n], 0, sizeof(st->fam[0]));
    memcpy(st->fam[st->n].name, name, n);
    st->fam[st->n].last_le = -INFINITY;
    return &st->fam[st->n++];
}

/* Validate one exposition; returns the number of problems (each printed). */
static int
prom_validate(const char *text, size_t len, prom_state *st)
{
    const char *p = text, *end = text + len;
    int         bad = 0, lineno = 0, i;

    memset(st, 0, sizeof(*st));
    st->current = -1;
#define BAD(...) do { fprintf(stderr, "metrics line %d: ", lineno); \
                      fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); bad++; } while (0)
    if (len == 0 || text[len - 1] != '\n') {
        fprintf(stderr, "metrics: must end with a newline\n");
        bad++;
    }
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t) (end - p));
        char        line[1024];
        size_t      n = nl ? (size_t) (nl - p) : (size_t) (end - p);

        lineno++;
        p += n + 1;
        if (n >= sizeof(line)) {
            BAD("too long");
            continue;
        }
        memcpy(line, p - n - 1, n);
        line[n] = '\0';
        if (n == 0) {
            BAD("empty line");
            continue;
        }
        if (line[0] == '#') {
            char         kw[8], name[256], rest[512];
            prom_family *f;

            if (sscanf(line, "# %7s %255s %511[^\n]", kw, name, rest) < 3) {
                if (strncmp(line, "# HELP ", 7) == 0 || strncmp(line, "# TYPE ", 7) == 0) {
                    BAD("incomplete %s", line);
                }
                continue;       /* another comment */
            }
            if (strcmp(kw, "HELP") != 0 && strcmp(kw, "TYPE") != 0) {
                continue;
            }
            if (!prom_name_ok(name, strlen(name), 0)) {
                BAD("metric name '%s'", name);
            }
            f = prom_find(st, name, strlen(name), 1);
            if (f == NULL) {
                BAD("too many families");
                continue;
            }
            if (strcmp(kw, "HELP") == 0) {
                if (f->has_help) {
                    BAD("second HELP for %s", name);
                }
                f->has_help = 1;
            } else {
                if (f->has_type) {
                    BAD("second TYPE for %s", name);
                }
                if (f->has_samples) {
                    BAD("TYPE after samples of %s", name);
                }
                if (strcmp(rest, "counter") != 0 && strcmp(rest, "gauge") != 0
                    && strcmp(rest, "histogram") != 0 && strcmp(rest, "summary") != 0
                    && strcmp(rest, "untyped") != 0)
                {
                    BAD("type '%s'", rest);
                }
                f->has_type = 1;
                snprintf(f->type, sizeof(f->type), "%.15s", rest);
            }
            continue;
        }
        {
            /* name{labels} value */
            const char  *s = line, *q;
            size_t       nlen;
            char         le[64] = "";
            char         val[64];
            double       v;
            prom_family *f;
            const char  *suffix = "";
            int          idx;

            for (q = s; *q && *q != '{' && *q != ' '; q++) {
            }
            nlen = (size_t) (q - s);
            if (!prom_name_ok(s, nlen, 0)) {
                BAD("sample name '%.*s'", (int) nlen, s);
                continue;
            }
            if (*q == '{') {
                q++;
                while (*q != '}') {
                    const char *ln = q;
                    char        lv[256];
                    size_t      k = 0;

                    while (*q && *q != '=') {
                        q++;
                    }
                    if (*q != '=' || !prom_name_ok(ln, (size_t) (q - ln), 1) || q[1] != '"') {
                        BAD("label syntax in '%s'", line);
                        goto next;
                    }
                    {
                        size_t lnl = (size_t) (q - ln);

                        q += 2;
                        while (*q && *q != '"') {
                            if (*q == '\\') {
                                if (q[1] != '\\' && q[1] != '"' && q[1] != 'n') {
                                    BAD("label escape in '%s'", line);
                                    goto next;
                                }
                                q++;
                            }
                            if (k + 1 < sizeof(lv)) {
                                lv[k++] = *q;
                            }
                            q++;
                        }
                        lv[k] = '\0';
                        if (*q != '"') {
                            BAD("unterminated label value in '%s'", line);
                            goto next;
                        }
                        q++;
                        if (lnl == 2 && strncmp(ln, "le", 2) == 0) {
                            snprintf(le, sizeof(le), "%.63s", lv);
                        }
                    }
                    if (*q == ',') {
                        q++;
                    } else if (*q != '}') {
                        BAD("label list in '%s'", line);
                        goto next;
                    }
                }
                q++;
            }
            if (*q != ' ') {
                BAD("no space before the value in '%s'", line);
                continue;
            }
            q++;
            if (sscanf(q, "%63s", val) != 1 || !prom_value(val, &v)) {
                BAD("value '%s'", q);
                continue;
            }
            if (strchr(q, ' ') != NULL) {
                /* a timestamp may follow: an integer */
                char *e2;

                strtoll(strchr(q, ' ') + 1, &e2, 10);
                if (*e2 != '\0') {
                    BAD("timestamp in '%s'", line);
                }
            }
            /* family: histogram suffixes belong to the base name */
            f = prom_find(st, s, nlen, 0);
            if (f == NULL || strcmp(f->type, "histogram") == 0) {
                static const char *const sfx[] = { "_bucket", "_sum", "_count" };

                for (i = 0; i < 3; i++) {
                    size_t sl = strlen(sfx[i]);

                    if (nlen > sl && strncmp(s + nlen - sl, sfx[i], sl) == 0) {
                        prom_family *base = prom_find(st, s, nlen - sl, 0);

                        if (base != NULL && strcmp(base->type, "histogram") == 0) {
                            f = base;
                            suffix = sfx[i];
                        }
                    }
                }
            }
            if (f == NULL || !f->has_type) {
                BAD("sample before its TYPE: %s", line);
                continue;
            }
            if (!f->has_help) {
                BAD("sample without HELP: %s", line);
            }
            idx = (int) (f - st->fam);
            if (f->closed) {
                BAD("family %s is not contiguous", f->name);
            }
            if (st->current >= 0 && st->current != idx) {
                st->fam[st->current].closed = 1;
            }
            st->current = idx;
            f->has_samples = 1;
            if (strcmp(f->type, "counter") == 0 && !(v >= 0)) {
                BAD("negative counter %s", line);
            }
            if (strcmp(f->type, "histogram") == 0) {
                if (strcmp(suffix, "_bucket") == 0) {
                    double lev;

                    if (!prom_value(le, &lev)) {
                        BAD("bucket without a numeric le: %s", line);
                        continue;
                    }
                    if (f->has_sum || f->has_count || f->has_inf) {
                        BAD("bucket after +Inf/_sum/_count: %s", line);
                    }
                    if (!(lev > f->last_le)) {
                        BAD("le not increasing: %s", line);
                    }
                    if (v < f->last_bucket || v != floor(v)) {
                        BAD("bucket counts must be cumulative integers: %s", line);
                    }
                    f->last_le = lev;
                    f->last_bucket = v;
                    f->n_buckets++;
                    if (isinf(lev)) {
                        f->has_inf = 1;
                        f->inf_value = v;
                    }
                } else if (strcmp(suffix, "_sum") == 0) {
                    f->has_sum = 1;
                } else if (strcmp(suffix, "_count") == 0) {
                    f->has_count = 1;
                    f->count_value = v;
                } else {
                    BAD("histogram sample without a suffix: %s", line);
                }
            }
        }
next:
        ;
    }
    for (i = 0; i < st->n; i++) {
        prom_family *f = &st->fam[i];

        if (!f->has_samples) {
            fprintf(stderr, "metrics: family %s has no samples\n", f->name);
            bad++;
        }
        if (strcmp(f->type, "histogram") == 0
            && (!f->has_inf || !f->has_sum || !f->has_count || f->inf_value != f->count_value))
        {
            fprintf(stderr, "metrics: histogram %s: +Inf %d sum %d count %d (%g vs %g)\n",
                    f->name, f->has_inf, f->has_sum, f->has_count, f->inf_value, f->count_value);
            bad++;
        }
    }
#undef BAD
    return bad;
}

/* The value of the sample line "name{labels} value" (exact prefix). */
static double
prom_sample(const char *text, const char *prefix)
{
    const char *p = text;
    size_t      n = strlen(prefix);

    while ((p = strstr(p, prefix)) != NULL) {
        if ((p == text || p[-1] == '\n') && p[n] == ' ') {
            return strtod(p + n + 1, NULL);
        }
        p += n;
    }
    return -1;
}

static void
test_metrics(void)
{
    qp_metrics          m, w2, sum;
    qp_histogram        itl;
    qp_buf              out = { 0 };
    prom_state          st;
    qwen_engine_stats   es;
    qwen_request_timing t = { .queued_ms = 20, .first_token_ms = 150, .total_ms = 1150,
                              .n_prompt = 7, .n_generated = 11, .n_cached = 4,
                              .n_drafted = 6, .n_draft_accepted = 2 };
    const char         *bad;

    qp_metrics_init(&m);
    CHECK(qp_metrics_text(&m, &out) == 0, "empty metrics");
    CHECK(prom_validate(out.data, out.len, &st) == 0, "empty exposition valid:\n%s", out.data);
    CHECK(st.n == 15, "15 families (%d)", st.n);
    qp_buf_reset(&out);

    memset(&es, 0, sizeof(es));
    es.running = 2;
    es.waiting = 1;
    es.kv_tokens_used = 1024;
    es.kv_tokens_total = 4096;
    qp_metrics_set_engine(&m, &es);
    {
        /* 11 token events: the first has no gap, then 10 gaps of 100 ms */
        qwen_token_event tev[11];
        int              k;

        memset(tev, 0, sizeof(tev));
        for (k = 0; k < 11; k++) {
            tev[k].gap_ms = k == 0 ? -1.0f : 100.0f;
        }
        memset(&itl, 0, sizeof(itl));
        qp_itl_observe(&itl, tev, 11);
        CHECK(itl.count == 10 && fabs(itl.sum - 1.0) < 1e-6, "per-request gaps: %llu, %g s",
              (unsigned long long) itl.count, itl.sum);
    }
    qp_metrics_request_done(&m, &t, "stop", &itl);
    qp_metrics_request_done(&m, &t, "tool_calls", &itl);
    qp_metrics_request_done(&m, &t, "length", &itl);
    qp_metrics_request_done(&m, NULL, "cancelled", NULL);
    qp_metrics_request_done(&m, NULL, NULL, NULL);
    qp_metrics_refused(&m, QP_REFUSED_BUSY);
    qp_metrics_refused(&m, QP_REFUSED_BUSY);
    qp_metrics_refused(&m, QP_REFUSED_QUOTA);
    qp_metrics_refused(&m, (qp_refusal) 99);       /* out of range: ignored */
    qp_metrics_observe(&m, QP_HIST_TTFT, 0.01);     /* on a bound: le is inclusive */
    qp_metrics_observe(&m, QP_HIST_TTFT, 1e9);      /* above every bound */
    qp_metrics_observe(&m, QP_HIST_TTFT, -1);       /* clamped to 0 */
    qp_metrics_observe(&m, QP_HIST_TTFT, NAN);      /* ignored */
    CHECK(m.hist[QP_HIST_ITL].count == 30, "ITL: 10 gaps for each of 3 requests (%llu)",
          (unsigned long long) m.hist[QP_HIST_ITL].count);
    CHECK(fabs(m.hist[QP_HIST_ITL].sum - 3.0) < 1e-9, "ITL sum = 3 x 1 s (%g)",
          m.hist[QP_HIST_ITL].sum);
    CHECK(m.finished[QP_REASON_STOP] == 2 && m.finished[QP_REASON_LENGTH] == 1
          && m.finished[QP_REASON_CANCELLED] == 1 && m.finished[QP_REASON_ERROR] == 1,
          "finished by reason");
    CHECK(qp_reason_from_name("weird") == QP_REASON_ERROR, "unknown reason: error");
    CHECK(qp_metrics_text(&m, &out) == 0, "metrics text");
    CHECK(prom_validate(out.data, out.len, &st) == 0, "exposition valid:\n%s", out.data);
    CHECK(prom_sample(out.data, "qwen_num_requests_running") == 2
          && prom_sample(out.data, "qwen_num_requests_waiting") == 1
          && prom_sample(out.data, "qwen_kv_cache_usage_ratio") == 0.25, "gauges");
    CHECK(prom_sample(out.data, "qwen_prompt_tokens_total") == 21
          && prom_sample(out.data, "qwen_generation_tokens_total") == 33, "token counters");
    CHECK(prom_sample(out.data, "qwen_prefix_cache_queries_total") == 21
          && prom_sample(out.data, "qwen_prefix_cache_hits_total") == 12,
          "prefix cache counters: 3 x 4 of 3 x 7 prompt tokens");
    CHECK(prom_sample(out.data, "qwen_draft_tokens_total") == 18
          && prom_sample(out.data, "qwen_draft_accepted_tokens_total") == 6,
          "draft counters: 3 x 2 of 3 x 6 draft tokens");
    CHECK(prom_sample(out.data, "qwen_request_success_total{finished_reason=\"stop\"}") == 2
          && prom_sample(out.data, "qwen_request_success_total{finished_reason=\"error\"}") == 1,
          "finished counter");
    CHECK(prom_sample(out.data, "qwen_request_refused_total{reason=\"busy\"}") == 2
          && prom_sample(out.data, "qwen_request_refused_total{reason=\"quota\"}") == 1
          && prom_sample(out.data, "qwen_request_refused_total{reason=\"shutdown\"}") == 0,
          "refused counter by reason, apart from the finished ones");
    CHECK(prom_sample(out.data, "qwen_time_to_first_token_seconds_bucket{le=\"0.01\"}") == 2,
          "le inclusive, negative clamped to 0 -> first bucket");
    CHECK(prom_sample(out.data, "qwen_time_to_first_token_seconds_bucket{le=\"0.1\"}") == 2
          && prom_sample(out.data, "qwen_time_to_first_token_seconds_bucket{le=\"0.25\"}") == 5,
          "TTFT 0.15 s x 3 in le=0.25");
    CHECK(prom_sample(out.data, "qwen_time_to_first_token_seconds_bucket{le=\"+Inf\"}") == 6
          && prom_sample(out.data, "qwen_time_to_first_token_seconds_count") == 6, "+Inf = count");
    CHECK(prom_sample(out.data, "qwen_e2e_request_latency_seconds_bucket{le=\"1.5\"}") == 3
          && prom_sample(out.data, "qwen_e2e_request_latency_seconds_bucket{le=\"1\"}") == 0,
          "e2e 1.15 s");
    CHECK(fabs(prom_sample(out.data, "qwen_request_queue_time_seconds_sum") - 0.06) < 1e-12,
          "queue sum");
    CHECK(strstr(out.data, "le=\"0.1\"") != NULL && strstr(out.data, "0.10000") == NULL,
          "shortest numbers");
    qp_buf_reset(&out);

    /* two workers summed: counts double, gauges add */
    w2 = m;
    sum = m;
    qp_metrics_add(&sum, &w2);
    CHECK(sum.hist[QP_HIST_TTFT].count == 12 && sum.prompt_tokens_total == 42
          && sum.requests_running == 4 && sum.finished[QP_REASON_STOP] == 4, "add");
    CHECK(qp_metrics_text(&sum, &out) == 0 && prom_validate(out.data, out.len, &st) == 0,
          "summed exposition valid");
    CHECK(prom_sample(out.data, "qwen_kv_cache_usage_ratio") == 0.25, "ratio of sums");
    qp_buf_free(&out);

    /* the validator itself rejects broken text */
    bad = "# HELP a x\n# TYPE a gauge\na 1\n";
    CHECK(prom_validate(bad, strlen(bad), &st) == 0, "validator accepts a gauge");
    bad = "a 1\n";
    CHECK(prom_validate(bad, strlen(bad), &st) > 0, "validator: sample before TYPE");
    bad = "# HELP a x\n# TYPE a gauge\na{l=\"x} 1\n";
    CHECK(prom_validate(bad, strlen(bad), &st) > 0, "validator: label syntax");
    bad = "# HELP a x\n# TYPE a gauge\na one\n";
    CHECK(prom_validate(bad, strlen(bad), &st) > 0, "validator: value");
    bad = "# HELP 1a x\n# TYPE 1a gauge\n1a 1\n";
    CHECK(prom_validate(bad, strlen(bad), &st) > 0, "validator: name");
    bad = "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"2\"} 1\n"
          "h_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 2\n";
    CHECK(prom_validate(bad, strlen(bad), &st) > 0, "validator: bucket monotonicity");
    bad = "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 3\n"
          "h_sum 1\nh_count 2\n";
    CHECK(prom_validate(bad, strlen(bad), &st) > 0, "validator: +Inf != count");
    bad = "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_sum 1\nh_count 2\n";
    CHECK(prom_validate(bad, strlen(bad), &st) > 0, "validator: no +Inf");
    bad = "# HELP a x\n# TYPE a gauge\n# HELP b x\n# TYPE b gauge\na 1\nb 1\na 2\n";
    CHECK(prom_validate(bad, strlen(bad), &st) > 0, "validator: families contiguous");
}

int
main(void)
{
    test_metrics();
    TEST_MAIN_END();
}
