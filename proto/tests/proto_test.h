/*
 * proto_test.h - what the proto/ unit tests share: the tiny test model's
 * tokenizer and a default qp_config, parsing with the expected-error check
 * for both error shapes, JSON path lookups, synthetic token events, and a
 * whole response run with its SSE or NDJSON split into frames. Header only
 * like test.h, so CHECK counts in each test program's own counters.
 */
#ifndef QP_PROTO_TEST_H
#define QP_PROTO_TEST_H

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qwen_proto.h"
#include "test.h"

/* each test program has its own copy; not every one uses all of them */
#define TEST_STATIC static __attribute__((unused))

#define EOG_IM_END 151645       /* <|im_end|> */
#define CHAT  QP_OPENAI_CHAT
#define CMPL  QP_OPENAI_COMPLETIONS
#define OCHAT QP_OLLAMA_CHAT
#define GEN   QP_OLLAMA_GENERATE

TEST_STATIC const qwen_tokenizer *tok;
TEST_STATIC qwen_model           *model;
TEST_STATIC qp_config             cfg;

/* The tiny test model (test.h's test_load_model) into model and tok, cfg
 * at its defaults. Returns 0, or -1 (counted as a failure) when it cannot
 * be loaded or has no tokenizer. */
TEST_STATIC int
test_model_load(void)
{
    if ((model = test_load_model("tiny-f32.gguf")) == NULL) {
        return -1;
    }
    tok = qwen_model_tokenizer(model);
    CHECK(tok != NULL, "the test model has a tokenizer");
    if (tok == NULL) {
        qwen_model_free(model);
        model = NULL;
        return -1;
    }
    qp_config_defaults(&cfg);
    return 0;
}

TEST_STATIC void
test_model_free(void)
{
    qwen_model_free(model);
    model = NULL;
    tok = NULL;
}

/* ---------------------------------------------------------------- JSON */

TEST_STATIC int
streq(const char *a, const char *b)
{
    return a != NULL && b != NULL && strcmp(a, b) == 0;
}

/* path: dot-separated keys, digits index arrays ("choices.0.text") */
TEST_STATIC json_t *
jget(const json_t *v, const char *path)
{
    char buf[256], *t, *save = NULL;

    snprintf(buf, sizeof(buf), "%s", path);
    for (t = strtok_r(buf, ".", &save); t && v; t = strtok_r(NULL, ".", &save)) {
        v = (t[0] >= '0' && t[0] <= '9') ? json_array_get(v, (size_t) atoi(t))
                                         : json_object_get(v, t);
    }
    return (json_t *) v;
}

TEST_STATIC const char *
jstr(const json_t *v, const char *path)
{
    return json_string_value(jget(v, path));
}

TEST_STATIC long long
jint(const json_t *v, const char *path)
{
    json_t *x = jget(v, path);

    return json_is_integer(x) ? (long long) json_integer_value(x) : -999999;
}

/* Text that must be JSON. */
TEST_STATIC json_t *
load(const char *s, size_t n)
{
    json_error_t jerr;
    json_t      *v = json_loadb(s ? s : "", n, 0, &jerr);

    CHECK(v != NULL, "JSON: %.*s (%s)", (int) (n > 300 ? 300 : n), s ? s : "", jerr.text);
    return v;
}

TEST_STATIC json_t *
body_json(const qp_buf *b)
{
    return load(b->data, b->len);
}

TEST_STATIC int
is_rfc3339_utc(const char *s)
{
    /* 2006-01-02T15:04:05[.fraction]Z */
    static const char shape[] = "dddd-dd-ddTdd:dd:dd";
    size_t            i, n;

    if (s == NULL || strlen(s) < sizeof(shape)) {
        return 0;
    }
    for (i = 0; i < sizeof(shape) - 1; i++) {
        if (shape[i] == 'd' ? !isdigit((unsigned char) s[i]) : s[i] != shape[i]) {
            return 0;
        }
    }
    s += sizeof(shape) - 1;
    if (*s == '.') {
        for (n = 0, s++; isdigit((unsigned char) *s); s++, n++) {
        }
        if (n == 0 || n > 9 || s[-1] == '0') {
            return 0;                  /* Go drops trailing zeros */
        }
    }
    return s[0] == 'Z' && s[1] == '\0';
}

/* ------------------------------------------------------------- requests */

TEST_STATIC int
is_ollama(qp_api api)
{
    return api == QP_OLLAMA_CHAT || api == QP_OLLAMA_GENERATE;
}

TEST_STATIC qp_request *
parse(qp_api api, const char *body, qp_error *err)
{
    qp_request *req = NULL;

    memset(err, 0, sizeof(*err));
    if (qp_parse(api, body, strlen(body), &cfg, tok, &req, err) != 0) {
        return NULL;
    }
    return req;
}

/*
 * The request must fail with status and an error body in the API's shape
 * whose message contains sub (if given). Ollama: {"error":"..."} alone.
 * OpenAI: the type that goes with status, error.param == param (NULL:
 * null), error.code == code (NULL: only present).
 */
TEST_STATIC void
expect_err(int line, qp_api api, const char *body, int status, const char *param,
           const char *code, const char *sub)
{
    qp_error      err;
    qp_request   *req = parse(api, body, &err);
    json_t       *root, *e;
    const char   *type, *m;

    CHECK(req == NULL, "line %d: %s must fail", line, body);
    qp_request_free(req);
    if (req != NULL) {
        return;
    }
    CHECK(err.status == status, "line %d: status %d, want %d (%s)", line, err.status,
          status, err.body);
    root = load(err.body, strlen(err.body));
    if (root == NULL) {
        return;
    }
    if (is_ollama(api)) {
        m = jstr(root, "error");
        CHECK(m != NULL && json_object_size(root) == 1, "line %d: Ollama error shape: %s",
              line, err.body);
        CHECK(sub == NULL || (m != NULL && strstr(m, sub) != NULL), "line %d: '%s' lacks '%s'",
              line, m ? m : "", sub);
        json_decref(root);
        return;
    }
    e = json_object_get(root, "error");
    CHECK(json_is_object(e), "line %d: error object: %s", line, err.body);
    type = json_string_value(json_object_get(e, "type"));
    CHECK(type != NULL && strcmp(type, status == 404 ? "not_found_error"
                                 : status >= 500 ? "server_error"
                                 : "invalid_request_error") == 0,
          "line %d: type %s", line, type ? type : "(none)");
    CHECK(json_is_string(json_object_get(e, "message")), "line %d: message", line);
    if (param == NULL) {
        CHECK(json_is_null(json_object_get(e, "param")), "line %d: param null: %s", line,
              err.body);
    } else {
        const char *p = json_string_value(json_object_get(e, "param"));

        CHECK(p != NULL && strcmp(p, param) == 0, "line %d: param %s, want %s (%s)", line,
              p ? p : "null", param, err.body);
    }
    if (code != NULL) {
        const char *c = json_string_value(json_object_get(e, "code"));

        CHECK(c != NULL && strcmp(c, code) == 0, "line %d: code %s, want %s", line,
              c ? c : "null", code);
    } else {
        CHECK(json_object_get(e, "code") != NULL, "line %d: code key present", line);
    }
    if (sub != NULL) {
        m = json_string_value(json_object_get(e, "message"));
        CHECK(m != NULL && strstr(m, sub) != NULL, "line %d: message '%s' lacks '%s'", line,
              m ? m : "", sub);
    }
    json_decref(root);
}

TEST_STATIC qwen_tokens
toks(const char *text)
{
    qwen_tokens t = { 0 };
    char        msg[QWEN_ERR_LEN];

    if (qwen_tokenize(tok, text, strlen(text), &t, msg, sizeof(msg)) != 0) {
        fprintf(stderr, "tokenize failed: %s\n", msg);
    }
    return t;
}

/* Qwen3's chat template with the generation prompt ("" if it fails). */
TEST_STATIC char *
render(const qwen_chat_message *m, size_t n, const char *tools, int thinking)
{
    char  *text = NULL, msg[QWEN_ERR_LEN];
    size_t len;

    if (qwen_chat_render(m, n, tools, 1, thinking, &text, &len, msg, sizeof(msg)) != 0) {
        fprintf(stderr, "render: %s\n", msg);
        return strdup("");
    }
    return text;
}

/* The prompt ids of body equal the tokens of text. */
TEST_STATIC void
check_prompt(int line, qp_api api, const char *body, const char *text)
{
    qp_error                   err;
    qp_request                *req = parse(api, body, &err);
    qwen_tokens                want = toks(text);
    const qwen_request_params *p;

    CHECK(req != NULL, "line %d: %s: %s", line, body, err.body);
    if (req != NULL) {
        p = qp_request_params(req);
        CHECK(p->n_prompt == want.n && memcmp(p->prompt, want.ids, want.n * sizeof(int32_t)) == 0,
              "line %d: prompt ids differ (%zu vs %zu)", line, p->n_prompt, want.n);
    }
    qp_request_free(req);
    qwen_tokens_free(&want);
}

/* Case i of a table of what: body carries a JSON grammar, active after
 * </think> when after_think (else from the start), that takes sample whole
 * and nothing after it. */
TEST_STATIC void
check_grammar(const char *what, size_t i, qp_api api, const char *body, int after_think,
              const char *sample)
{
    qp_error                   err;
    qp_request                *req = parse(api, body, &err);
    const qwen_request_params *p;
    qwen_grammar_state        *st;
    int32_t                    think_end = qwen_token_id(tok, "</think>", 8);

    CHECK(req != NULL, "%s %zu: %s", what, i, err.body);
    if (req == NULL) {
        return;
    }
    p = qp_request_params(req);
    CHECK(p->grammar != NULL, "%s %zu: a grammar", what, i);
    CHECK(p->grammar_after_token == (after_think ? think_end : -1),
          "%s %zu: after token %d", what, i, p->grammar_after_token);
    if (p->grammar != NULL) {
        st = qwen_grammar_state_new(p->grammar);
        CHECK(st != NULL && qwen_grammar_accept_bytes(st, sample, strlen(sample)) == 0
              && qwen_grammar_complete(st), "%s %zu: takes %s", what, i, sample);
        CHECK(st != NULL && qwen_grammar_accept_bytes(st, "x", 1) != 0,
              "%s %zu: nothing after the value", what, i);
        qwen_grammar_state_free(st);
    }
    qp_request_free(req);
}

/* body parses with thinking budget `budget` in its engine parameters (-1:
 * none, no closing tokens; else <think>, </think> and QP_THINK_CLOSE_TEXT's
 * tokens) and the repetition guard `guard`. */
TEST_STATIC void
check_budget(int line, qp_api api, const char *body, int budget, int guard)
{
    qp_error                   err;
    qp_request                *req = parse(api, body, &err);
    qwen_tokens                want = toks(QP_THINK_CLOSE_TEXT);
    const qwen_request_params *p;

    CHECK(req != NULL, "line %d: %s: %s", line, body, err.body);
    if (req != NULL) {
        p = qp_request_params(req);
        CHECK(p->thinking_budget == budget, "line %d: thinking budget %d, want %d", line,
              p->thinking_budget, budget);
        CHECK(p->repeat_guard == guard, "line %d: repeat guard %d, want %d", line,
              p->repeat_guard, guard);
        CHECK(!p->thinking_open, "line %d: the model opens the block", line);
        if (budget >= 0) {
            CHECK(p->think_open_token == qwen_token_id(tok, "<think>", 7)
                  && p->think_close_token == qwen_token_id(tok, "</think>", 8),
                  "line %d: the markers", line);
            CHECK(p->n_think_close_ids == want.n && want.n > 0
                  && memcmp(p->think_close_ids, want.ids, want.n * sizeof(int32_t)) == 0,
                  "line %d: the closing text's %zu tokens", line, p->n_think_close_ids);
        } else {
            CHECK(p->n_think_close_ids == 0 && p->think_close_ids == NULL,
                  "line %d: no closing tokens", line);
        }
    }
    qp_request_free(req);
    qwen_tokens_free(&want);
}

/* body parses, and carries no grammar. */
TEST_STATIC void
check_no_grammar(const char *what, qp_api api, const char *body)
{
    qp_error    err;
    qp_request *req = parse(api, body, &err);

    CHECK(req != NULL && qp_request_params(req)->grammar == NULL, "%s: no grammar", what);
    qp_request_free(req);
}

/* ------------------------------------------------------------ responses */

typedef struct {
    qwen_token_event *ev;
    size_t            n;
} events;

/* Events for the tokens of text (+ <|im_end|> if eog); logprobs made up:
 * token i has logprob -(i+1)/10 and top ids (token, token+1, ...). */
TEST_STATIC events
events_of(const char *text, int eog)
{
    qwen_tokens t = toks(text);
    events      e;
    size_t      i;
    int         j;

    e.n = t.n + (eog ? 1 : 0);
    e.ev = calloc(e.n ? e.n : 1, sizeof(*e.ev));
    for (i = 0; e.ev != NULL && i < e.n; i++) {
        qwen_token_event *ev = &e.ev[i];

        ev->token = i < t.n ? t.ids[i] : EOG_IM_END;
        ev->logprob = -(float) (i + 1) / 10.0f;
        ev->n_top = 5;
        for (j = 0; j < 5; j++) {
            ev->top_ids[j] = j == 0 ? ev->token : (ev->token + j) % 151000;
            ev->top_logprobs[j] = ev->logprob - (float) j;
        }
    }
    qwen_tokens_free(&t);
    return e;
}

/* Feed per_call events at a time until the end is reported. Returns the
 * index of the event that ended it + 1, or 0 if none did. */
TEST_STATIC size_t
feed(qp_response *r, events e, size_t per_call, qp_buf *out)
{
    size_t i, k;
    int    rc;

    for (i = 0; i < e.n; i += per_call) {
        k = e.n - i < per_call ? e.n - i : per_call;
        rc = qp_response_tokens(r, e.ev + i, k, out);
        CHECK(rc >= 0, "qp_response_tokens failed");
        if (rc == 1) {
            return i + k;
        }
    }
    return 0;
}

/* Split SSE text into its JSON events; checks each is "data: ...\n\n" and
 * the last is [DONE]. Returns a JSON array of the parsed chunk objects. */
TEST_STATIC json_t *
sse_events(const char *s, size_t n, int *done)
{
    json_t     *arr = json_array();
    const char *p = s, *end = s + n, *sep;

    *done = 0;
    while (p < end) {
        json_error_t jerr;
        json_t      *v;

        CHECK(strncmp(p, "data: ", 6) == 0, "event starts with 'data: ': %.40s", p);
        sep = strstr(p, "\n\n");
        CHECK(sep != NULL, "event ends with a blank line");
        if (sep == NULL || strncmp(p, "data: ", 6) != 0) {
            break;
        }
        CHECK(!*done, "nothing after [DONE]");
        if (sep - p == 12 && strncmp(p + 6, "[DONE]", 6) == 0) {
            *done = 1;
        } else {
            v = json_loadb(p + 6, (size_t) (sep - p - 6), 0, &jerr);
            CHECK(v != NULL, "event is JSON: %.*s", (int) (sep - p), p);
            if (v != NULL) {
                json_array_append_new(arr, v);
            }
        }
        p = sep + 2;
    }
    return arr;
}

/* Split NDJSON: every line one JSON object, the text ends with '\n'. */
TEST_STATIC json_t *
ndjson_lines(const char *s, size_t n)
{
    json_t     *arr = json_array();
    const char *p = s, *end = s + n, *nl;

    CHECK(n > 0 && s[n - 1] == '\n', "NDJSON ends with a newline");
    while (p < end) {
        json_t *v;

        nl = memchr(p, '\n', (size_t) (end - p));
        if (nl == NULL) {
            nl = end;
        }
        CHECK(nl > p, "no empty NDJSON line");
        v = load(p, (size_t) (nl - p));
        CHECK(json_is_object(v), "NDJSON line is an object: %.*s", (int) (nl - p), p);
        if (v != NULL) {
            json_array_append_new(arr, v);
        }
        p = nl + 1;
    }
    return arr;
}

/* A string field (path) of every frame joined: a streamed answer's text.
 * Frames without it add nothing. Returns a malloc'ed string. */
TEST_STATIC char *
concat(const json_t *lines, const char *path)
{
    qp_buf b = { 0 };
    size_t i;
    char  *s;

    for (i = 0; i < json_array_size(lines); i++) {
        const char *t = jstr(json_array_get(lines, i), path);

        if (t != NULL) {
            qp_buf_append(&b, t, strlen(t));
        }
    }
    s = strdup(b.data ? b.data : "");
    qp_buf_free(&b);
    return s;
}

/* A whole response: parse body, feed the events, finish. */
typedef struct {
    qp_buf       out;
    json_t      *json;          /* the body, or an array of the SSE chunks / NDJSON lines */
    int          done;          /* SSE: [DONE] seen */
    size_t       ended_at;      /* see feed() */
    size_t       n_events_fed;  /* events given before the end */
    const char  *finish;        /* qp_response_finish_reason, as a literal */
    size_t       completion_tokens;
    int          stream;
    size_t       n_prompt;
    int32_t      prompt0;       /* the first prompt id */
} run_result;

TEST_STATIC void
run_free(run_result *rr)
{
    qp_buf_free(&rr->out);
    json_decref(rr->json);
}

TEST_STATIC run_result
run_t(qp_api api, const char *body, events e, size_t per_call, qwen_finish reason,
      const qwen_request_timing *timing)
{
    run_result   rr;
    qp_error     err;
    qp_request  *req = parse(api, body, &err);
    qp_response *r;
    const char  *id = api == CHAT ? "chatcmpl-test1" : api == CMPL ? "cmpl-test1"
                      : "ollama-test";

    memset(&rr, 0, sizeof(rr));
    CHECK(req != NULL, "parse %s: %s", body, err.body);
    if (req == NULL) {
        return rr;
    }
    rr.stream = qp_request_stream(req);
    rr.n_prompt = qp_request_params(req)->n_prompt;
    rr.prompt0 = qp_request_params(req)->prompt[0];
    r = qp_response_new(req, tok, &cfg, id, 1700000000);
    CHECK(r != NULL, "qp_response_new");
    rr.ended_at = feed(r, e, per_call, &rr.out);
    rr.n_events_fed = rr.ended_at ? rr.ended_at : e.n;
    CHECK(qp_response_finish(r, rr.ended_at ? QWEN_FINISH_CANCELLED : reason, timing,
                             &rr.out) == 0, "finish");
    rr.finish = qp_response_finish_reason(r);
    rr.completion_tokens = qp_response_completion_tokens(r);
    if (rr.stream && is_ollama(api)) {
        CHECK(streq(qp_response_content_type(r), "application/x-ndjson"), "NDJSON type");
        rr.json = ndjson_lines(rr.out.data, rr.out.len);
    } else if (rr.stream) {
        CHECK(streq(qp_response_content_type(r), "text/event-stream"), "SSE content type");
        rr.json = sse_events(rr.out.data ? rr.out.data : "", rr.out.len, &rr.done);
    } else {
        CHECK(streq(qp_response_content_type(r), "application/json"), "JSON content type");
        rr.json = body_json(&rr.out);
    }
    /* the reason does not outlive the response: keep a literal */
    if (rr.finish != NULL) {
        rr.finish = streq(rr.finish, "stop") ? "stop" : streq(rr.finish, "length") ? "length"
                    : streq(rr.finish, "tool_calls") ? "tool_calls" : "other";
    }
    qp_response_free(r);
    qp_request_free(req);
    return rr;
}

#endif
