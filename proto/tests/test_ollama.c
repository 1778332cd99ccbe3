/*
 * test_ollama.c - the Ollama API against the real Qwen3 tokenizer (tiny
 * test model): every /api/chat and /api/generate parameter and error path,
 * NDJSON framing and the final line's durations, thinking and tool calls
 * (object arguments), stream:false bodies; the model listing bodies; the
 * SageMaker API choice; tokenize/detokenize round trips; health; and the
 * Prometheus text checked line by line by a small exposition validator.
 */
#include "test.h"
#include "qwen_proto.h"
#include "util.h"             /* private: RFC 3339, SHA-256 */

#include <ctype.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define EOG_IM_END 151645
#define GEN QP_OLLAMA_GENERATE
#define OCHAT QP_OLLAMA_CHAT

static const qwen_tokenizer *tok;
static const qwen_model     *model;
static qp_config             cfg;
static char                  model_dir[4096];

/* ------------------------------------------------------------ helpers */

static int
streq(const char *a, const char *b)
{
    return a != NULL && b != NULL && strcmp(a, b) == 0;
}

static json_t *
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

static const char *
jstr(const json_t *v, const char *path)
{
    return json_string_value(jget(v, path));
}

static long long
jint(const json_t *v, const char *path)
{
    json_t *x = jget(v, path);

    return json_is_integer(x) ? (long long) json_integer_value(x) : -999999;
}

static json_t *
load(const char *s, size_t n)
{
    json_error_t jerr;
    json_t      *v = json_loadb(s ? s : "", n, 0, &jerr);

    CHECK(v != NULL, "JSON: %.*s (%s)", (int) (n > 300 ? 300 : n), s ? s : "", jerr.text);
    return v;
}

static qp_request *
parse(qp_api api, const char *body, qp_error *err)
{
    qp_request *req = NULL;

    memset(err, 0, sizeof(*err));
    if (qp_parse(api, body, strlen(body), &cfg, tok, &req, err) != 0) {
        return NULL;
    }
    return req;
}

/* Must fail with status and an Ollama error body {"error":"..."} whose
 * message contains sub. */
static void
expect_err(int line, qp_api api, const char *body, int status, const char *sub)
{
    qp_error    err;
    qp_request *req = parse(api, body, &err);
    json_t     *root;
    const char *m;

    CHECK(req == NULL, "line %d: %s must fail", line, body);
    qp_request_free(req);
    if (req != NULL) {
        return;
    }
    CHECK(err.status == status, "line %d: status %d, want %d (%s)", line, err.status, status,
          err.body);
    root = load(err.body, strlen(err.body));
    m = jstr(root, "error");
    CHECK(m != NULL && json_object_size(root) == 1, "line %d: Ollama error shape: %s", line,
          err.body);
    CHECK(sub == NULL || (m != NULL && strstr(m, sub) != NULL), "line %d: '%s' lacks '%s'",
          line, m ? m : "", sub);
    json_decref(root);
}

#define EXPECT_ERR(api, body, status, sub) expect_err(__LINE__, api, body, status, sub)

static qwen_tokens
toks(const char *text)
{
    qwen_tokens t = { 0 };
    char        msg[QWEN_ERR_LEN];

    if (qwen_tokenize(tok, text, strlen(text), &t, msg, sizeof(msg)) != 0) {
        fprintf(stderr, "tokenize failed: %s\n", msg);
    }
    return t;
}

typedef struct {
    qwen_token_event *ev;
    size_t            n;
} events;

static events
events_of(const char *text, int eog)
{
    qwen_tokens t = toks(text);
    events      e;
    size_t      i;

    e.n = t.n + (eog ? 1 : 0);
    e.ev = calloc(e.n ? e.n : 1, sizeof(*e.ev));
    for (i = 0; e.ev != NULL && i < e.n; i++) {
        e.ev[i].token = i < t.n ? t.ids[i] : EOG_IM_END;
    }
    qwen_tokens_free(&t);
    return e;
}

static int
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

/* A whole response: parse, feed events per_call at a time, finish. */
typedef struct {
    qp_buf       out;
    json_t      *json;      /* body, or an array of the NDJSON lines */
    const char  *finish;    /* qp_response_finish_reason, copied to a literal */
    size_t       n_prompt;
    size_t       n_events_fed;
    int          stream;
    int32_t      prompt0;   /* first prompt id */
} run_result;

static void
run_free(run_result *rr)
{
    qp_buf_free(&rr->out);
    json_decref(rr->json);
}

/* Split NDJSON: every line one JSON object, the text ends with '\n'. */
static json_t *
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

static const qwen_request_timing test_timing = { 12.5, 80.25, 1000.125, 0, 0 };

static run_result
run_t(qp_api api, const char *body, events e, size_t per_call, qwen_finish reason,
      const qwen_request_timing *timing)
{
    run_result   rr;
    qp_error     err;
    qp_request  *req = parse(api, body, &err);
    qp_response *r;
    size_t       i, k;
    int          rc = 0;

    memset(&rr, 0, sizeof(rr));
    CHECK(req != NULL, "parse %s: %s", body, err.body);
    if (req == NULL) {
        rr.json = json_null();
        return rr;
    }
    rr.stream = qp_request_stream(req);
    rr.n_prompt = qp_request_params(req)->n_prompt;
    rr.prompt0 = qp_request_params(req)->prompt[0];
    r = qp_response_new(req, tok, &cfg, "ollama-test", 1700000000);
    CHECK(r != NULL, "qp_response_new");
    for (i = 0; i < e.n && rc == 0; i += per_call) {
        k = e.n - i < per_call ? e.n - i : per_call;
        rc = qp_response_tokens(r, e.ev + i, k, &rr.out);
        CHECK(rc >= 0, "qp_response_tokens");
        rr.n_events_fed = i + k;
    }
    CHECK(qp_response_finish(r, rc == 1 ? QWEN_FINISH_CANCELLED : reason, timing,
                             &rr.out) == 0, "finish");
    rr.finish = qp_response_finish_reason(r);
    rr.finish = streq(rr.finish, "stop") ? "stop" : streq(rr.finish, "length") ? "length"
                : streq(rr.finish, "tool_calls") ? "tool_calls" : "other";
    if (rr.stream) {
        CHECK(streq(qp_response_content_type(r), "application/x-ndjson"), "NDJSON type");
        rr.json = ndjson_lines(rr.out.data, rr.out.len);
    } else {
        CHECK(streq(qp_response_content_type(r), "application/json"), "JSON type");
        rr.json = load(rr.out.data, rr.out.len);
    }
    qp_response_free(r);
    qp_request_free(req);
    return rr;
}

static run_result
run(qp_api api, const char *body, events e, qwen_finish reason)
{
    return run_t(api, body, e, 1, reason, &test_timing);
}

/* Concatenate a field over the non-final NDJSON lines (path like
 * "message.content" or "response"). */
static char *
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

/* The final fields: present, nanoseconds from test_timing, consistent. */
static void
check_final(int line, const json_t *o, const run_result *rr, const char *reason,
            long long eval_count)
{
    long long total = jint(o, "total_duration"), load_ns = jint(o, "load_duration");
    long long pe = jint(o, "prompt_eval_duration"), ev = jint(o, "eval_duration");

    CHECK(json_is_true(jget(o, "done")), "line %d: done true", line);
    CHECK(streq(jstr(o, "done_reason"), reason), "line %d: done_reason %s, want %s", line,
          jstr(o, "done_reason"), reason);
    CHECK(total == 1000125000LL && load_ns == 12500000LL, "line %d: total %lld load %lld",
          line, total, load_ns);
    CHECK(pe == 80250000LL - 12500000LL && ev == 1000125000LL - 80250000LL,
          "line %d: prompt_eval %lld eval %lld", line, pe, ev);
    CHECK(load_ns + pe + ev == total, "line %d: durations add up", line);
    CHECK(jint(o, "prompt_eval_count") == (long long) rr->n_prompt, "line %d: prompt_eval_count",
          line);
    CHECK(eval_count < 0 || jint(o, "eval_count") == eval_count,
          "line %d: eval_count %lld, want %lld", line, jint(o, "eval_count"), eval_count);
    CHECK(streq(jstr(o, "model"), "qwen3:0.6b") || streq(jstr(o, "model"), "qwen3")
          || streq(jstr(o, "model"), "qwen3:latest"), "line %d: model %s", line,
          jstr(o, "model"));
    CHECK(is_rfc3339_utc(jstr(o, "created_at")), "line %d: created_at %s", line,
          jstr(o, "created_at"));
}

/* Every streamed line but the last: done false, model, created_at. */
static void
check_lines(int line, const json_t *lines)
{
    size_t i, n = json_array_size(lines);

    CHECK(n >= 1, "line %d: at least the final line", line);
    for (i = 0; i + 1 < n; i++) {
        const json_t *o = json_array_get(lines, i);

        CHECK(json_is_false(jget(o, "done")), "line %d: line %zu done false", line, i);
        CHECK(jget(o, "done_reason") == NULL && jget(o, "total_duration") == NULL,
              "line %d: no final fields before the end", line);
        CHECK(is_rfc3339_utc(jstr(o, "created_at")), "line %d: created_at %s", line,
              jstr(o, "created_at"));
        CHECK(jstr(o, "model") != NULL, "line %d: model", line);
    }
}

#define MSG "\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]"
#define TOOLS ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"," \
              "\"description\":\"Weather\",\"parameters\":{\"type\":\"object\"," \
              "\"properties\":{\"city\":{\"type\":\"string\"}}}}}]"

/* ------------------------------------------------------------ parsing */

static void
test_parse_errors(void)
{
    qp_error err;

    EXPECT_ERR(OCHAT, "{\"model\":\"llama3\"," MSG "}", 404, "model 'llama3' not found");
    {
        qp_request *req = parse(OCHAT, "{\"model\":\"x\"," MSG "}", &err);

        qp_request_free(req);
        CHECK(streq(err.body, "{\"error\":\"model 'x' not found\"}"), "404 body %s", err.body);
    }
    EXPECT_ERR(GEN, "{\"model\":\"qwen2\",\"prompt\":\"Hi\"}", 404, "not found");
    EXPECT_ERR(OCHAT, "{\"model\":5," MSG "}", 400, "model");
    EXPECT_ERR(OCHAT, "not json", 400, "not valid JSON");
    EXPECT_ERR(OCHAT, "[1]", 400, "JSON object");
    EXPECT_ERR(GEN, "", 400, "empty");
    EXPECT_ERR(OCHAT, "{" MSG ",\"stream\":\"yes\"}", 400, "'stream' must be a boolean");
    /* format: "json" or a schema of the supported subset; "" is no format */
    EXPECT_ERR(GEN, "{\"prompt\":\"Hi\",\"format\":{\"type\":\"array\"}}", 400,
               "top level must be of type object");
    EXPECT_ERR(OCHAT, "{" MSG ",\"format\":{\"type\":\"object\",\"properties\":"
               "{\"a\":{\"$ref\":\"#/x\"}}}}", 400, "'$ref' is not supported");
    EXPECT_ERR(GEN, "{\"prompt\":\"Hi\",\"format\":\"xml\"}", 400, "'format' must be");
    EXPECT_ERR(GEN, "{\"prompt\":\"Hi\",\"format\":5}", 400, "'format' must be");
    /* think */
    EXPECT_ERR(OCHAT, "{" MSG ",\"think\":\"max\"}", 400, "'think' must be");
    EXPECT_ERR(OCHAT, "{" MSG ",\"think\":1}", 400, "'think' must be");
    /* options */
    EXPECT_ERR(OCHAT, "{" MSG ",\"options\":[1]}", 400, "'options' must be an object");
    EXPECT_ERR(OCHAT, "{" MSG ",\"options\":{\"temperature\":\"hot\"}}", 400,
               "'options.temperature' must be a number");
    EXPECT_ERR(OCHAT, "{" MSG ",\"options\":{\"temperature\":-1}}", 400, "options.temperature");
    EXPECT_ERR(OCHAT, "{" MSG ",\"options\":{\"top_p\":1.5}}", 400, "options.top_p");
    EXPECT_ERR(OCHAT, "{" MSG ",\"options\":{\"min_p\":-0.1}}", 400, "options.min_p");
    EXPECT_ERR(OCHAT, "{" MSG ",\"options\":{\"typical_p\":2}}", 400, "options.typical_p");
    EXPECT_ERR(OCHAT, "{" MSG ",\"options\":{\"repeat_penalty\":0}}", 400,
               "options.repeat_penalty");
    EXPECT_ERR(OCHAT, "{" MSG ",\"options\":{\"presence_penalty\":3}}", 400,
               "options.presence_penalty");
    EXPECT_ERR(OCHAT, "{" MSG ",\"options\":{\"frequency_penalty\":-3}}", 400,
               "options.frequency_penalty");
    EXPECT_ERR(OCHAT, "{" MSG ",\"options\":{\"top_k\":1.5}}", 400,
               "'options.top_k' must be an integer");
    EXPECT_ERR(OCHAT, "{" MSG ",\"options\":{\"repeat_last_n\":-2}}", 400,
               "options.repeat_last_n");
    EXPECT_ERR(OCHAT, "{" MSG ",\"options\":{\"seed\":\"1\"}}", 400, "options.seed");
    EXPECT_ERR(OCHAT, "{" MSG ",\"options\":{\"num_predict\":\"5\"}}", 400, "options.num_predict");
    EXPECT_ERR(OCHAT, "{" MSG ",\"options\":{\"num_ctx\":0}}", 400, "options.num_ctx");
    EXPECT_ERR(OCHAT, "{" MSG ",\"options\":{\"stop\":5}}", 400, "options.stop");
    EXPECT_ERR(OCHAT, "{" MSG ",\"options\":{\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}}", 400,
               "options.stop");
    /* a prompt that does not fit num_ctx is refused, never truncated */
    EXPECT_ERR(OCHAT, "{" MSG ",\"options\":{\"num_ctx\":3}}", 400, "maximum context length is 3");
    /* images, suffix, template */
    EXPECT_ERR(GEN, "{\"prompt\":\"Hi\",\"images\":[\"aGk=\"]}", 400, "images are not supported");
    EXPECT_ERR(GEN, "{\"prompt\":\"\",\"images\":[\"aGk=\"]}", 400, "images are not supported");
    EXPECT_ERR(GEN, "{\"prompt\":\"Hi\",\"images\":\"x\"}", 400, "'images' must be an array");
    EXPECT_ERR(OCHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\",\"images\":[\"aGk=\"]}]}",
               400, "images are not supported");
    EXPECT_ERR(GEN, "{\"prompt\":\"def f(\",\"suffix\":\"return x\"}", 400, "'suffix' is not supported");
    EXPECT_ERR(GEN, "{\"prompt\":\"Hi\",\"template\":\"{{ .Prompt }}\"}", 400,
               "'template' is not supported");
    EXPECT_ERR(GEN, "{\"prompt\":5}", 400, "'prompt' must be a string");
    EXPECT_ERR(GEN, "{\"prompt\":\"Hi\",\"system\":5}", 400, "'system' must be a string");
    EXPECT_ERR(GEN, "{\"prompt\":\"Hi\",\"raw\":\"yes\"}", 400, "'raw' must be a boolean");
    EXPECT_ERR(GEN, "{\"prompt\":\"Hi\",\"context\":5}", 400, "'context' must be an array");
    EXPECT_ERR(GEN, "{\"prompt\":\"Hi\",\"context\":[1,-1]}", 400, "'context[1]'");
    EXPECT_ERR(GEN, "{\"prompt\":\"Hi\",\"context\":[999999999]}", 400, "'context[0]'");
    EXPECT_ERR(GEN, "{\"prompt\":\"Hi\",\"keep_alive\":[]}", 400, "'keep_alive'");
    /* messages */
    EXPECT_ERR(OCHAT, "{\"messages\":{}}", 400, "'messages' must be an array");
    EXPECT_ERR(OCHAT, "{\"messages\":[5]}", 400, "'messages[0]' must be an object");
    EXPECT_ERR(OCHAT, "{\"messages\":[{\"content\":\"Hi\"}]}", 400, "'messages[0].role' is required");
    EXPECT_ERR(OCHAT, "{\"messages\":[{\"role\":\"bot\",\"content\":\"Hi\"}]}", 400,
               "must be system, user, assistant or tool");
    EXPECT_ERR(OCHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}", 400,
               "'messages[0].content' must be a string");
    EXPECT_ERR(OCHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"},{\"role\":\"assistant\","
               "\"content\":\"\",\"thinking\":5}]}", 400, "'messages[1].thinking' must be a string");
    EXPECT_ERR(OCHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"},{\"role\":\"assistant\","
               "\"tool_calls\":{}}]}", 400, "'messages[1].tool_calls' must be an array");
    EXPECT_ERR(OCHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"},{\"role\":\"assistant\","
               "\"tool_calls\":[{\"function\":{}}]}]}", 400, "messages[1].tool_calls[0]");
    EXPECT_ERR(OCHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"},{\"role\":\"assistant\","
               "\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":5}}]}]}", 400,
               "arguments' must be an object");
    EXPECT_ERR(OCHAT, "{" MSG ",\"tools\":{}}", 400, "'tools' must be an array");
    EXPECT_ERR(OCHAT, "{" MSG ",\"tools\":[{\"type\":\"function\"}]}", 400, "'tools[0]'");
}

static void
test_load_answers(void)
{
    static const struct {
        qp_api      api;
        const char *body;
        const char *reason;
    } cases[] = {
        { OCHAT, "{\"model\":\"qwen3\"}", "load" },
        { OCHAT, "{\"model\":\"qwen3\",\"messages\":[]}", "load" },
        { OCHAT, "{\"model\":\"qwen3\",\"messages\":[],\"keep_alive\":0}", "unload" },
        { GEN, "{\"model\":\"qwen3:latest\"}", "load" },
        { GEN, "{\"model\":\"qwen3\",\"prompt\":\"\",\"keep_alive\":\"5m\"}", "load" },
        { GEN, "{\"model\":\"qwen3\",\"keep_alive\":\"0s\"}", "unload" },
        { GEN, "{\"model\":\"qwen3\",\"keep_alive\":\"0\"}", "unload" },
        { GEN, "{\"model\":\"qwen3\",\"keep_alive\":-1}", "load" },
    };
    size_t   i;
    qp_error err;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        qp_request *req = parse(cases[i].api, cases[i].body, &err);
        json_t     *o;

        CHECK(req == NULL && err.status == 200, "%s: load answer via err (status %d)",
              cases[i].body, err.status);
        qp_request_free(req);
        o = load(err.body, strlen(err.body));
        CHECK(json_is_true(jget(o, "done")) && streq(jstr(o, "done_reason"), cases[i].reason),
              "%s: %s", cases[i].body, err.body);
        CHECK(is_rfc3339_utc(jstr(o, "created_at")), "created_at %s", jstr(o, "created_at"));
        CHECK(jstr(o, "model") != NULL, "model echoed");
        if (cases[i].api == OCHAT) {
            CHECK(streq(jstr(o, "message.role"), "assistant")
                  && streq(jstr(o, "message.content"), ""), "chat load message");
        } else {
            CHECK(streq(jstr(o, "response"), ""), "generate load response");
        }
        json_decref(o);
    }
    /* an unknown model is still 404 */
    EXPECT_ERR(GEN, "{\"model\":\"mistral\"}", 404, "not found");
}

/* format "json" / a schema: a grammar in the engine parameters, after
 * </think> when thinking is on; "" is none. */
static void
test_format(void)
{
    static const struct {
        int         api;
        const char *body;
        int         after_think;
        const char *sample;     /* an answer the grammar must take */
    } ok[] = {
        { OCHAT, "{" MSG ",\"format\":\"json\"}", 1, "{\"x\": [1, true]}" },
        { OCHAT, "{" MSG ",\"format\":\"json\",\"think\":false}", 0, "{}" },
        { GEN, "{\"prompt\":\"Hi\",\"format\":\"json\",\"think\":true}", 1, "{\"a\":\"b\"}" },
        { GEN, "{\"prompt\":\"Hi\",\"think\":false,\"format\":{\"type\":\"object\","
               "\"properties\":{\"name\":{\"type\":\"string\"},\"n\":{\"type\":\"integer\"}},"
               "\"required\":[\"name\",\"n\"]}}", 0, "{\"name\": \"x\", \"n\": 3}" },
    };
    qp_error                   err;
    qp_request                *req;
    const qwen_request_params *p;
    qwen_grammar_state        *st;
    size_t                     i;
    int32_t                    think_end = qwen_token_id(tok, "</think>", 8);

    for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        req = parse(ok[i].api, ok[i].body, &err);
        CHECK(req != NULL, "format %zu: %s", i, err.body);
        if (req == NULL) {
            continue;
        }
        p = qp_request_params(req);
        CHECK(p->grammar != NULL, "format %zu: a grammar", i);
        CHECK(p->grammar_after_token == (ok[i].after_think ? think_end : -1),
              "format %zu: after token %d", i, p->grammar_after_token);
        if (p->grammar != NULL) {
            st = qwen_grammar_state_new(p->grammar);
            CHECK(st != NULL
                  && qwen_grammar_accept_bytes(st, ok[i].sample, strlen(ok[i].sample)) == 0
                  && qwen_grammar_complete(st), "format %zu: takes %s", i, ok[i].sample);
            CHECK(st != NULL && qwen_grammar_accept_bytes(st, "x", 1) != 0,
                  "format %zu: nothing after the value", i);
            qwen_grammar_state_free(st);
        }
        qp_request_free(req);
    }
    req = parse(OCHAT, "{" MSG ",\"format\":\"\"}", &err);
    CHECK(req != NULL && qp_request_params(req)->grammar == NULL, "format \"\": no grammar");
    qp_request_free(req);
    req = parse(OCHAT, "{" MSG ",\"format\":null}", &err);
    CHECK(req != NULL && qp_request_params(req)->grammar == NULL, "format null: no grammar");
    qp_request_free(req);
}

static void
test_parse_params(void)
{
    qp_error                   err;
    qp_request                *req;
    const qwen_request_params *p;
    int                        room;

    /* model names */
    static const char *const names[] = {
        "{" MSG "}", "{\"model\":\"qwen3\"," MSG "}", "{\"model\":\"qwen3:0.6b\"," MSG "}",
        "{\"model\":\"qwen3:latest\"," MSG "}", "{\"model\":\"\"," MSG "}",
    };
    size_t i;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        req = parse(OCHAT, names[i], &err);
        CHECK(req != NULL, "%s: %s", names[i], err.body);
        CHECK(req == NULL || qp_request_stream(req) == 1, "stream defaults to true");
        qp_request_free(req);
    }
    cfg.model_name = "my-qwen";
    req = parse(OCHAT, "{\"model\":\"my-qwen:latest\"," MSG "}", &err);
    CHECK(req != NULL, "configured name with :latest: %s", err.body);
    qp_request_free(req);
    req = parse(OCHAT, "{\"model\":\"my-qwen\"," MSG "}", &err);
    CHECK(req != NULL, "configured name: %s", err.body);
    qp_request_free(req);
    cfg.model_name = "qwen3";

    req = parse(OCHAT, "{" MSG ",\"stream\":false,\"options\":{\"temperature\":0.25,"
                "\"top_k\":7,\"top_p\":0.5,\"min_p\":0.05,\"typical_p\":0.9,"
                "\"repeat_penalty\":1.3,\"repeat_last_n\":32,\"presence_penalty\":0.5,"
                "\"frequency_penalty\":-0.5,\"seed\":1234,\"num_predict\":17,"
                "\"num_keep\":4,\"mirostat\":0,\"num_gpu\":99,\"unknown_option\":\"x\"},"
                "\"keep_alive\":\"10m\",\"format\":\"\",\"think\":false,\"unknown\":1}", &err);
    CHECK(req != NULL, "options parse: %s", err.body);
    if (req != NULL) {
        p = qp_request_params(req);
        CHECK(qp_request_stream(req) == 0, "stream false");
        CHECK(p->sampling.temperature == 0.25f && p->sampling.top_k == 7
              && p->sampling.top_p == 0.5f && p->sampling.min_p == 0.05f, "sampling options");
        CHECK(p->sampling.repetition_penalty == 1.3f && p->sampling.penalty_last_n == 32,
              "repeat_penalty -> repetition_penalty, repeat_last_n -> penalty_last_n");
        CHECK(p->sampling.presence_penalty == 0.5f && p->sampling.frequency_penalty == -0.5f,
              "presence/frequency penalties");
        CHECK(p->sampling.seed == 1234, "seed");
        CHECK(p->max_tokens == 17, "num_predict -> max_tokens (%d)", p->max_tokens);
        qp_request_free(req);
    }
    /* defaults: the configured sampling; top_k <= 0 is off; repeat_last_n -1 / 0 */
    req = parse(OCHAT, "{" MSG ",\"options\":{\"top_k\":-1,\"repeat_last_n\":-1}}", &err);
    CHECK(req != NULL && qp_request_params(req)->sampling.top_k == 0
          && qp_request_params(req)->sampling.penalty_last_n == -1
          && qp_request_params(req)->sampling.temperature == cfg.sampling.temperature,
          "top_k -1, repeat_last_n -1");
    qp_request_free(req);
    req = parse(OCHAT, "{" MSG ",\"options\":{\"repeat_last_n\":0,\"seed\":-1}}", &err);
    CHECK(req != NULL && qp_request_params(req)->sampling.penalty_last_n == 0,
          "repeat_last_n 0 (off), seed -1 (random)");
    qp_request_free(req);

    /* num_predict: -1 / -2 / absent / larger than the room; num_ctx clamps */
    req = parse(OCHAT, "{" MSG ",\"options\":{\"num_predict\":-1}}", &err);
    CHECK(req != NULL, "num_predict -1");
    if (req != NULL) {
        p = qp_request_params(req);
        room = cfg.n_ctx - (int) p->n_prompt;
        CHECK(p->max_tokens == room, "num_predict -1: until the context ends (%d, %d)",
              p->max_tokens, room);
        qp_request_free(req);
    }
    req = parse(OCHAT, "{" MSG ",\"options\":{\"num_predict\":-2}}", &err);
    CHECK(req != NULL && qp_request_params(req)->max_tokens
                         == cfg.n_ctx - (int) qp_request_params(req)->n_prompt,
          "num_predict -2: fill the context");
    qp_request_free(req);
    cfg.max_tokens = 50;
    req = parse(OCHAT, "{" MSG "}", &err);
    CHECK(req != NULL && qp_request_params(req)->max_tokens == 50, "no num_predict: the default");
    qp_request_free(req);
    req = parse(OCHAT, "{" MSG ",\"options\":{\"num_predict\":-1}}", &err);
    CHECK(req != NULL && qp_request_params(req)->max_tokens > 50,
          "num_predict -1 overrides the configured default");
    qp_request_free(req);
    cfg.max_tokens = 0;
    req = parse(OCHAT, "{" MSG ",\"options\":{\"num_predict\":100000000}}", &err);
    CHECK(req != NULL && qp_request_params(req)->max_tokens
                         == cfg.n_ctx - (int) qp_request_params(req)->n_prompt,
          "num_predict beyond the context: clamped, not refused");
    qp_request_free(req);
    req = parse(OCHAT, "{" MSG ",\"options\":{\"num_ctx\":100,\"num_predict\":-1}}", &err);
    CHECK(req != NULL && qp_request_params(req)->max_tokens
                         == 100 - (int) qp_request_params(req)->n_prompt,
          "num_ctx below the slot limits the answer");
    qp_request_free(req);
    req = parse(OCHAT, "{" MSG ",\"options\":{\"num_ctx\":1000000,\"num_predict\":-1}}", &err);
    CHECK(req != NULL && qp_request_params(req)->max_tokens
                         == cfg.n_ctx - (int) qp_request_params(req)->n_prompt,
          "num_ctx above the slot is clamped to it");
    qp_request_free(req);

    /* think: true/false/levels */
    static const char *const thinks[] = { "true", "false", "\"low\"", "\"medium\"", "\"high\"",
                                          "null" };
    for (i = 0; i < sizeof(thinks) / sizeof(thinks[0]); i++) {
        char body[256];

        snprintf(body, sizeof(body), "{" MSG ",\"think\":%s}", thinks[i]);
        req = parse(OCHAT, body, &err);
        CHECK(req != NULL, "think %s: %s", thinks[i], err.body);
        qp_request_free(req);
    }
    /* stop as a string or an array; numbers as 1.0 */
    req = parse(GEN, "{\"prompt\":\"Hi\",\"options\":{\"stop\":\"x\",\"top_k\":5.0}}", &err);
    CHECK(req != NULL && qp_request_params(req)->sampling.top_k == 5, "stop string, top_k 5.0");
    qp_request_free(req);
}

/* The prompt ids equal the template + tokenizer output. */
static void
check_prompt(int line, qp_api api, const char *body, const char *text)
{
    qp_error    err;
    qp_request *req = parse(api, body, &err);
    qwen_tokens want = toks(text);
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

static char *
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

static void
test_prompts(void)
{
    qwen_chat_message m[4];
    char             *t;
    qp_error          err;
    qp_request       *req;
    qwen_tokens       ctx;

    memset(m, 0, sizeof(m));
    m[0].role = "user";
    m[0].content = "Hi";
    t = render(m, 1, NULL, 1);
    check_prompt(__LINE__, OCHAT, "{" MSG "}", t);
    check_prompt(__LINE__, GEN, "{\"prompt\":\"Hi\"}", t);
    free(t);
    t = render(m, 1, NULL, 0);
    check_prompt(__LINE__, OCHAT, "{" MSG ",\"think\":false}", t);
    check_prompt(__LINE__, GEN, "{\"prompt\":\"Hi\",\"think\":false}", t);
    free(t);

    /* system + prompt; raw ignores system and template */
    m[0].role = "system";
    m[0].content = "Be brief.";
    m[1].role = "user";
    m[1].content = "Hi";
    t = render(m, 2, NULL, 1);
    check_prompt(__LINE__, GEN, "{\"prompt\":\"Hi\",\"system\":\"Be brief.\"}", t);
    check_prompt(__LINE__, OCHAT, "{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                 "{\"role\":\"user\",\"content\":\"Hi\"}]}", t);
    free(t);
    check_prompt(__LINE__, GEN, "{\"prompt\":\"<|im_start|>user\\nHi\",\"raw\":true,"
                 "\"system\":\"ignored\"}", "<|im_start|>user\nHi");
    /* suffix "" and template "" are no-ops */
    check_prompt(__LINE__, GEN, "{\"prompt\":\"x\",\"raw\":true,\"suffix\":\"\",\"template\":\"\"}",
                 "x");

    /* a tool-call turn: arguments as an object, thinking of an earlier turn,
     * a tool result; content absent is "" */
    memset(m, 0, sizeof(m));
    m[0].role = "user";
    m[0].content = "Weather in Paris?";
    m[1].role = "assistant";
    m[1].content = "";
    m[1].reasoning_content = "Use the tool.";
    m[1].tool_calls_json = "[{\"function\":{\"name\":\"get_weather\",\"arguments\":"
                           "{\"city\":\"Paris\"}}}]";
    m[2].role = "tool";
    m[2].content = "18C";
    t = render(m, 3, "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
               "\"description\":\"Weather\",\"parameters\":{\"type\":\"object\","
               "\"properties\":{\"city\":{\"type\":\"string\"}}}}}]", 1);
    CHECK(strstr(t, "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}") != NULL,
          "arguments object in the template: %s", t);
    check_prompt(__LINE__, OCHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"Weather in Paris?\"},"
                 "{\"role\":\"assistant\",\"thinking\":\"Use the tool.\",\"tool_calls\":"
                 "[{\"function\":{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}}]},"
                 "{\"role\":\"tool\",\"content\":\"18C\",\"tool_name\":\"get_weather\"}]" TOOLS "}", t);
    free(t);

    /* context: earlier ids go before the new prompt */
    ctx = toks("<|im_start|>user\nA<|im_end|>\n");
    req = parse(GEN, "{\"prompt\":\"Hi\",\"context\":[151644,872,198]}", &err);
    CHECK(req != NULL, "context: %s", err.body);
    if (req != NULL) {
        const qwen_request_params *p = qp_request_params(req);

        CHECK(p->n_prompt > 3 && p->prompt[0] == 151644 && p->prompt[1] == 872
              && p->prompt[2] == 198, "context ids first");
        qp_request_free(req);
    }
    qwen_tokens_free(&ctx);
}

/* ------------------------------------------------------------ answers */

static void
test_chat_stream(void)
{
    events      e = events_of("Hello world, how are you?", 1);
    run_result  rr;
    char       *content;
    json_t     *last;
    size_t      i, n;

    rr = run(OCHAT, "{\"model\":\"qwen3\"," MSG ",\"think\":false}", e, QWEN_FINISH_STOP);
    n = json_array_size(rr.json);
    CHECK(n >= 3, "several lines (%zu)", n);
    check_lines(__LINE__, rr.json);
    for (i = 0; i + 1 < n; i++) {
        json_t *o = json_array_get(rr.json, i);

        CHECK(streq(jstr(o, "message.role"), "assistant") && jstr(o, "message.content") != NULL,
              "message line %zu", i);
        CHECK(jget(o, "message.thinking") == NULL, "no thinking field without thinking");
        CHECK(streq(jstr(o, "model"), "qwen3"), "the requested name is echoed");
        CHECK(jget(o, "response") == NULL, "chat lines have no response");
    }
    content = concat(rr.json, "message.content");
    CHECK(streq(content, "Hello world, how are you?"), "content '%s'", content);
    free(content);
    last = json_array_get(rr.json, n - 1);
    check_final(__LINE__, last, &rr, "stop", (long long) e.n);
    CHECK(streq(jstr(last, "message.content"), ""), "final message empty");
    CHECK(jget(last, "context") == NULL, "chat has no context");
    CHECK(strstr(rr.out.data, "<|im_end|>") == NULL, "EOG hidden");
    run_free(&rr);

    /* many tokens per call, then the length limit */
    rr = run_t(OCHAT, "{" MSG ",\"think\":false}", (events) { e.ev, e.n - 1 }, 4,
               QWEN_FINISH_LENGTH, &test_timing);
    last = json_array_get(rr.json, json_array_size(rr.json) - 1);
    check_final(__LINE__, last, &rr, "length", (long long) e.n - 1);
    CHECK(streq(jstr(last, "model"), "qwen3:0.6b"), "no model given: the listed name");
    run_free(&rr);

    /* no timing: zeros, still consistent */
    rr = run_t(OCHAT, "{" MSG "}", e, 1, QWEN_FINISH_STOP, NULL);
    last = json_array_get(rr.json, json_array_size(rr.json) - 1);
    CHECK(jint(last, "total_duration") == 0 && jint(last, "eval_duration") == 0
          && jint(last, "load_duration") == 0 && jint(last, "prompt_eval_duration") == 0,
          "no timing: zero durations");
    run_free(&rr);

    /* before the first token: prompt evaluation takes it all */
    {
        qwen_request_timing t = { 5, -1, 30, 0, 0 };
        events              eog = events_of("", 1);

        rr = run_t(OCHAT, "{" MSG "}", eog, 1, QWEN_FINISH_STOP, &t);
        last = json_array_get(rr.json, json_array_size(rr.json) - 1);
        CHECK(jint(last, "total_duration") == 30000000 && jint(last, "load_duration") == 5000000
              && jint(last, "prompt_eval_duration") == 25000000
              && jint(last, "eval_duration") == 0, "no first token");
        run_free(&rr);
        free(eog.ev);
    }
    free(e.ev);
}

static void
test_generate_stream(void)
{
    events      e = events_of("The sky is blue.", 1);
    run_result  rr;
    char       *resp;
    json_t     *last, *ctx;
    size_t      i, n;
    qwen_tokens gen = toks("The sky is blue.");

    rr = run(GEN, "{\"model\":\"qwen3:latest\",\"prompt\":\"Why?\",\"think\":false}", e,
             QWEN_FINISH_STOP);
    n = json_array_size(rr.json);
    check_lines(__LINE__, rr.json);
    for (i = 0; i + 1 < n; i++) {
        json_t *o = json_array_get(rr.json, i);

        CHECK(jstr(o, "response") != NULL && jget(o, "message") == NULL, "response line");
        CHECK(streq(jstr(o, "model"), "qwen3:latest"), "model echoed");
    }
    resp = concat(rr.json, "response");
    CHECK(streq(resp, "The sky is blue."), "response '%s'", resp);
    free(resp);
    last = json_array_get(rr.json, n - 1);
    check_final(__LINE__, last, &rr, "stop", (long long) e.n);
    CHECK(streq(jstr(last, "response"), ""), "final response empty");
    /* context: the prompt's ids, then the answer's (not the EOG) */
    ctx = jget(last, "context");
    CHECK(json_array_size(ctx) == rr.n_prompt + gen.n, "context length %zu, want %zu",
          json_array_size(ctx), rr.n_prompt + gen.n);
    CHECK(jint(ctx, "0") == rr.prompt0, "context starts with the prompt");
    for (i = 0; i < gen.n; i++) {
        char path[32];

        snprintf(path, sizeof(path), "%zu", rr.n_prompt + i);
        CHECK(jint(ctx, path) == gen.ids[i], "context answer id %zu", i);
    }
    run_free(&rr);

    /* raw: no context */
    rr = run(GEN, "{\"prompt\":\"Why?\",\"raw\":true}", e, QWEN_FINISH_STOP);
    last = json_array_get(rr.json, json_array_size(rr.json) - 1);
    CHECK(jget(last, "context") == NULL, "raw: no context");
    run_free(&rr);

    /* stream:false: one object with everything */
    rr = run(GEN, "{\"prompt\":\"Why?\",\"stream\":false,\"think\":false}", e, QWEN_FINISH_STOP);
    CHECK(json_is_object(rr.json) && memchr(rr.out.data, '\n', rr.out.len) == NULL,
          "one JSON body, one line");
    CHECK(streq(jstr(rr.json, "response"), "The sky is blue."), "body response");
    CHECK(jget(rr.json, "thinking") == NULL, "no thinking field");
    check_final(__LINE__, rr.json, &rr, "stop", (long long) e.n);
    CHECK(json_array_size(jget(rr.json, "context")) == rr.n_prompt + gen.n, "body context");
    run_free(&rr);
    qwen_tokens_free(&gen);
    free(e.ev);
}

static void
test_thinking(void)
{
    events      e = events_of("<think>\nLet me think.\n</think>\n\nIt is 4.", 1);
    run_result  rr;
    char       *s;
    size_t      i;
    int         saw_thinking_line = 0;

    rr = run(OCHAT, "{" MSG ",\"think\":true}", e, QWEN_FINISH_STOP);
    s = concat(rr.json, "message.thinking");
    CHECK(streq(s, "Let me think."), "thinking '%s'", s);
    free(s);
    s = concat(rr.json, "message.content");
    CHECK(streq(s, "It is 4."), "content '%s'", s);
    free(s);
    for (i = 0; i < json_array_size(rr.json); i++) {
        json_t *o = json_array_get(rr.json, i);

        if (jget(o, "message.thinking") != NULL) {
            saw_thinking_line = 1;
            CHECK(streq(jstr(o, "message.content"), ""), "thinking lines carry content \"\"");
        }
    }
    CHECK(saw_thinking_line, "thinking lines");
    CHECK(strstr(rr.out.data, "<think>") == NULL && strstr(rr.out.data, "</think>") == NULL,
          "no think tags");
    run_free(&rr);

    rr = run(OCHAT, "{" MSG ",\"think\":\"high\",\"stream\":false}", e, QWEN_FINISH_STOP);
    CHECK(streq(jstr(rr.json, "message.thinking"), "Let me think.")
          && streq(jstr(rr.json, "message.content"), "It is 4."), "body thinking + content");
    check_final(__LINE__, rr.json, &rr, "stop", (long long) e.n);
    run_free(&rr);

    rr = run(GEN, "{\"prompt\":\"2+2?\"}", e, QWEN_FINISH_STOP);
    s = concat(rr.json, "thinking");
    CHECK(streq(s, "Let me think."), "generate thinking '%s'", s);
    free(s);
    s = concat(rr.json, "response");
    CHECK(streq(s, "It is 4."), "generate response '%s'", s);
    free(s);
    run_free(&rr);

    rr = run(GEN, "{\"prompt\":\"2+2?\",\"stream\":false}", e, QWEN_FINISH_STOP);
    CHECK(streq(jstr(rr.json, "thinking"), "Let me think.")
          && streq(jstr(rr.json, "response"), "It is 4."), "generate body thinking");
    run_free(&rr);

    /* raw: nothing is split */
    rr = run(GEN, "{\"prompt\":\"2+2?\",\"raw\":true,\"stream\":false}", e, QWEN_FINISH_STOP);
    CHECK(jget(rr.json, "thinking") == NULL
          && strstr(jstr(rr.json, "response") ? jstr(rr.json, "response") : "", "<think>") != NULL,
          "raw keeps the tags: %s", jstr(rr.json, "response"));
    run_free(&rr);
    free(e.ev);
}

static void
test_tool_calls(void)
{
    events      e = events_of("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
                              "{\"city\": \"Paris\", \"days\": 2}}\n</tool_call>\n<tool_call>\n"
                              "{\"name\": \"get_weather\", \"arguments\": \"{\\\"city\\\": "
                              "\\\"Nice\\\"}\"}\n</tool_call>", 1);
    run_result  rr;
    json_t     *calls, *last;
    size_t      i;
    int         n_call_lines = 0;

    rr = run(OCHAT, "{" MSG TOOLS ",\"think\":false}", e, QWEN_FINISH_STOP);
    for (i = 0; i < json_array_size(rr.json); i++) {
        json_t *o = json_array_get(rr.json, i);

        calls = jget(o, "message.tool_calls");
        if (calls == NULL) {
            continue;
        }
        CHECK(json_array_size(calls) == 1 && streq(jstr(calls, "0.function.name"), "get_weather"),
              "tool call line");
        CHECK(json_is_object(jget(calls, "0.function.arguments")), "arguments are an object");
        CHECK(jint(calls, "0.function.index") == n_call_lines, "index");
        CHECK(streq(jstr(o, "message.content"), "") && json_is_false(jget(o, "done")),
              "call line content \"\"");
        if (n_call_lines == 0) {
            CHECK(streq(jstr(calls, "0.function.arguments.city"), "Paris")
                  && jint(calls, "0.function.arguments.days") == 2, "first call arguments");
        } else {
            CHECK(streq(jstr(calls, "0.function.arguments.city"), "Nice"),
                  "string arguments decoded into an object");
        }
        n_call_lines++;
    }
    CHECK(n_call_lines == 2, "two tool-call lines (%d)", n_call_lines);
    last = json_array_get(rr.json, json_array_size(rr.json) - 1);
    check_final(__LINE__, last, &rr, "stop", -1);
    CHECK(streq(rr.finish, "tool_calls"), "finish reason for logs: tool_calls");
    CHECK(strstr(rr.out.data, "tool_call>") == NULL, "no tags in the stream");
    run_free(&rr);

    rr = run(OCHAT, "{" MSG TOOLS ",\"stream\":false,\"think\":false}", e, QWEN_FINISH_STOP);
    calls = jget(rr.json, "message.tool_calls");
    CHECK(json_array_size(calls) == 2, "two calls in the body");
    CHECK(streq(jstr(calls, "1.function.arguments.city"), "Nice")
          && jint(calls, "1.function.index") == 1, "second call");
    CHECK(streq(jstr(rr.json, "message.content"), ""), "content \"\" with calls");
    CHECK(streq(jstr(rr.json, "done_reason"), "stop"), "done_reason stop with calls");
    run_free(&rr);
    free(e.ev);

    /* without tools the text stays text */
    e = events_of("<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>", 1);
    rr = run(OCHAT, "{" MSG ",\"stream\":false}", e, QWEN_FINISH_STOP);
    CHECK(jget(rr.json, "message.tool_calls") == NULL
          && strstr(jstr(rr.json, "message.content"), "<tool_call>") != NULL, "no tools: text");
    run_free(&rr);
    free(e.ev);

    /* arguments that are not an object are passed on as a string */
    e = events_of("<tool_call>\n{\"name\": \"f\", \"arguments\": [1, 2]}\n</tool_call>", 1);
    rr = run(OCHAT, "{" MSG TOOLS ",\"stream\":false}", e, QWEN_FINISH_STOP);
    CHECK(streq(jstr(rr.json, "message.tool_calls.0.function.arguments"), "[1,2]"),
          "non-object arguments as a string");
    run_free(&rr);
    free(e.ev);
}

static void
test_stop_strings(void)
{
    events     e = events_of("Count: one, two, three, four.", 1);
    run_result rr;
    char      *s;
    size_t     per;

    for (per = 1; per <= 3; per++) {
        rr = run_t(OCHAT, "{" MSG ",\"think\":false,\"options\":{\"stop\":[\"three\",\"zzz\"]}}",
                   e, per, QWEN_FINISH_STOP, &test_timing);
        s = concat(rr.json, "message.content");
        CHECK(streq(s, "Count: one, two, "), "stop: '%s'", s);
        CHECK(strstr(rr.out.data, "thr") == NULL, "no part of the stop string leaks");
        free(s);
        CHECK(rr.n_events_fed < e.n, "the end was reported at the stop string");
        check_final(__LINE__, json_array_get(rr.json, json_array_size(rr.json) - 1), &rr,
                    "stop", -1);
        run_free(&rr);
    }
    /* a stop string split across tokens, in a body */
    rr = run(GEN, "{\"prompt\":\"x\",\"stream\":false,\"think\":false,"
             "\"options\":{\"stop\":\"e, fo\"}}", e, QWEN_FINISH_STOP);
    CHECK(streq(jstr(rr.json, "response"), "Count: one, two, thre"), "split stop '%s'",
          jstr(rr.json, "response"));
    run_free(&rr);
    free(e.ev);
}

static void
test_errors_midstream(void)
{
    qp_error     err;
    qp_request  *req = parse(OCHAT, "{" MSG "}", &err);
    qp_response *r;
    qp_buf       out = { 0 };
    events       e = events_of("Hello", 0);
    json_t      *lines;

    r = qp_response_new(req, tok, &cfg, "x", 0);
    CHECK(qp_response_tokens(r, e.ev, e.n, &out) == 0, "tokens");
    CHECK(qp_response_error(r, 500, "server_error", "engine failed", &out) == 0, "error line");
    lines = ndjson_lines(out.data, out.len);
    CHECK(streq(jstr(json_array_get(lines, json_array_size(lines) - 1), "error"),
                "engine failed"), "last line is {\"error\":..}");
    CHECK(streq(qp_response_finish_reason(r), "error"), "finish reason error");
    json_decref(lines);
    qp_response_free(r);
    qp_request_free(req);
    qp_buf_free(&out);

    req = parse(GEN, "{\"prompt\":\"Hi\",\"stream\":false}", &err);
    r = qp_response_new(req, tok, &cfg, "x", 0);
    CHECK(qp_response_error(r, 503, NULL, "shutting down", &out) == 0, "error body");
    CHECK(streq(out.data, "{\"error\":\"shutting down\"}"), "non-stream error body %s", out.data);
    qp_response_free(r);
    qp_request_free(req);
    qp_buf_free(&out);

    /* finish with an engine error on a stream */
    req = parse(GEN, "{\"prompt\":\"Hi\"}", &err);
    r = qp_response_new(req, tok, &cfg, "x", 0);
    CHECK(qp_response_finish(r, QWEN_FINISH_ERROR, NULL, &out) == 0, "finish error");
    CHECK(out.len > 0 && out.data[out.len - 1] == '\n' && strstr(out.data, "\"error\"") != NULL,
          "error line %s", out.data);
    qp_response_free(r);
    qp_request_free(req);
    qp_buf_free(&out);
    free(e.ev);

    /* qp_error_make in Ollama's format, with a retry hint */
    qp_error_make(OCHAT, 429, NULL, "busy", 3, &err);
    CHECK(err.status == 429 && streq(err.body, "{\"error\":\"busy\",\"retry_after\":3}"),
          "error_make %s", err.body);
}

/* ------------------------------------------------------ model listings */

static void
test_time_and_hash(void)
{
    struct timespec ts;
    char            buf[QP_RFC3339_LEN], hex[65];
    uint8_t         h[32];
    int             i;
    static const char *const msgs[] = {
        "", "abc", "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
    };
    static const char *const want[] = {
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
    };
    char million[1000];

    ts.tv_sec = 1700000000;
    ts.tv_nsec = 0;
    qp_rfc3339(&ts, buf);
    CHECK(streq(buf, "2023-11-14T22:13:20Z"), "whole seconds %s", buf);
    ts.tv_nsec = 123456789;
    qp_rfc3339(&ts, buf);
    CHECK(streq(buf, "2023-11-14T22:13:20.123456789Z"), "nanoseconds %s", buf);
    ts.tv_nsec = 120000000;
    qp_rfc3339(&ts, buf);
    CHECK(streq(buf, "2023-11-14T22:13:20.12Z"), "trailing zeros dropped %s", buf);
    ts.tv_nsec = 5;
    qp_rfc3339(&ts, buf);
    CHECK(streq(buf, "2023-11-14T22:13:20.000000005Z"), "leading zeros kept %s", buf);
    qp_rfc3339_now(buf);
    CHECK(is_rfc3339_utc(buf), "now %s", buf);

    for (i = 0; i < 3; i++) {
        int k;

        qp_sha256(msgs[i], strlen(msgs[i]), h);
        for (k = 0; k < 32; k++) {
            snprintf(hex + 2 * k, 3, "%02x", h[k]);
        }
        CHECK(streq(hex, want[i]), "sha256(%s) = %s", msgs[i], hex);
    }
    /* 1000 x 'a' crosses many blocks; 64- and 55/56-byte edges */
    memset(million, 'a', sizeof(million));
    qp_sha256(million, 1000, h);
    for (i = 0; i < 32; i++) {
        snprintf(hex + 2 * i, 3, "%02x", h[i]);
    }
    CHECK(streq(hex, "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3"),
          "sha256(a x 1000) = %s", hex);
    qp_sha256(million, 55, h);
    CHECK(h[0] == 0x9f && h[1] == 0x43, "55 bytes");
    qp_sha256(million, 64, h);
    CHECK(h[0] == 0xff && h[1] == 0xe0, "64 bytes");
}

static void
check_details(int line, const json_t *d, const qp_model_info *info)
{
    CHECK(streq(jstr(d, "format"), info->format) && streq(jstr(d, "family"), "qwen3")
          && streq(jstr(d, "families.0"), "qwen3")
          && streq(jstr(d, "quantization_level"), info->quantization)
          && jstr(d, "parameter_size") != NULL, "line %d: details", line);
}

static void
test_listings(void)
{
    qp_model_info info;
    qp_buf        out = { 0 };
    qp_error      err;
    json_t       *o, *m;
    char          path[4200];
    struct stat   st;
    const char   *digest;
    size_t        i;
    uint64_t      want_params;
    const qwen_config *c;

    snprintf(path, sizeof(path), "%s/tiny-f32.gguf", model_dir);
    CHECK(qp_model_info_from_model(model, path, &info) == 0, "model info");
    CHECK(stat(path, &st) == 0 && info.size_bytes == (uint64_t) st.st_size
          && info.modified == st.st_mtime, "size and mtime from the file");
    CHECK(streq(info.format, "gguf") && streq(info.quantization, "F32"),
          "format %s quantization %s", info.format, info.quantization);
    c = qwen_model_config(model);
    want_params = (uint64_t) c->vocab_size * c->hidden_size * (c->tie_word_embeddings ? 1 : 2)
                  + (uint64_t) c->n_layers * ((uint64_t) c->hidden_size * c->n_heads * c->head_dim * 2
                                              + (uint64_t) c->hidden_size * c->n_kv_heads * c->head_dim * 2
                                              + 2ull * c->head_dim
                                              + 3ull * c->hidden_size * c->intermediate_size
                                              + 2ull * c->hidden_size)
                  + c->hidden_size;
    CHECK(info.n_params == want_params, "n_params %llu", (unsigned long long) info.n_params);
    for (i = 0; i < 64 && isxdigit((unsigned char) info.digest[i]); i++) {
    }
    CHECK(i == 64 && info.digest[64] == '\0', "digest is 64 hex digits: %s", info.digest);
    {
        qp_model_info again;

        qp_model_info_from_model(model, path, &again);
        CHECK(streq(again.digest, info.digest), "digest is stable");
    }

    /* tags */
    CHECK(qp_ollama_tags(&cfg, &info, &out) == 0, "tags");
    o = load(out.data, out.len);
    m = jget(o, "models.0");
    CHECK(json_array_size(jget(o, "models")) == 1, "one model");
    CHECK(streq(jstr(m, "name"), "qwen3:0.6b") && streq(jstr(m, "model"), "qwen3:0.6b"),
          "listed name %s", jstr(m, "name"));
    CHECK(jint(m, "size") == (long long) info.size_bytes, "size");
    digest = jstr(m, "digest");
    CHECK(streq(digest, info.digest), "digest");
    CHECK(is_rfc3339_utc(jstr(m, "modified_at")), "modified_at %s", jstr(m, "modified_at"));
    check_details(__LINE__, jget(m, "details"), &info);
    json_decref(o);
    qp_buf_reset(&out);

    /* the listed names are accepted in requests */
    cfg.model_name = "mine";
    CHECK(qp_ollama_model_name(&cfg, &out) == 0 && streq(out.data, "mine:latest"), "mine:latest");
    qp_buf_reset(&out);
    {
        qp_request *req = parse(OCHAT, "{\"model\":\"mine:latest\"," MSG "}", &err);

        CHECK(req != NULL, "listed name accepted");
        qp_request_free(req);
    }
    cfg.model_name = "qwen3:0.6b-q4";
    CHECK(qp_ollama_model_name(&cfg, &out) == 0 && streq(out.data, "qwen3:0.6b-q4"), "tagged name");
    qp_buf_reset(&out);
    cfg.model_name = "qwen3";

    /* ps */
    info.kv_cache_bytes = 1000;
    CHECK(qp_ollama_ps(&cfg, &info, &out) == 0, "ps");
    o = load(out.data, out.len);
    m = jget(o, "models.0");
    CHECK(streq(jstr(m, "name"), "qwen3:0.6b") && jint(m, "size") == (long long) info.size_bytes + 1000
          && jint(m, "size_vram") == 0 && streq(jstr(m, "digest"), info.digest)
          && jint(m, "context_length") == cfg.n_ctx, "ps entry");
    CHECK(streq(jstr(m, "expires_at"), "9999-12-31T23:59:59Z"), "far future");
    check_details(__LINE__, jget(m, "details"), &info);
    json_decref(o);
    qp_buf_reset(&out);

    /* show */
    CHECK(qp_ollama_show(&cfg, &info, "{\"model\":\"qwen3:0.6b\"}", 22, &out, &err) == 0, "show");
    o = load(out.data, out.len);
    CHECK(jstr(o, "modelfile") != NULL && strstr(jstr(o, "modelfile"), "FROM ") != NULL
          && strstr(jstr(o, "modelfile"), "PARAMETER temperature") != NULL, "modelfile");
    CHECK(jstr(o, "parameters") != NULL && strstr(jstr(o, "parameters"), "num_ctx") != NULL,
          "parameters");
    CHECK(jstr(o, "template") != NULL && strstr(jstr(o, "template"), "<|im_start|>") != NULL,
          "template");
    check_details(__LINE__, jget(o, "details"), &info);
    m = jget(o, "model_info");
    CHECK(streq(json_string_value(json_object_get(m, "general.architecture")), "qwen3"),
          "architecture");
    CHECK(json_integer_value(json_object_get(m, "qwen3.context_length")) == c->max_position_embeddings
          && json_integer_value(json_object_get(m, "qwen3.embedding_length")) == c->hidden_size
          && json_integer_value(json_object_get(m, "qwen3.block_count")) == c->n_layers
          && json_integer_value(json_object_get(m, "qwen3.attention.head_count_kv")) == c->n_kv_heads
          && json_integer_value(json_object_get(m, "general.parameter_count"))
             == (json_int_t) info.n_params, "model_info numbers");
    CHECK(json_is_number(json_object_get(m, "qwen3.rope.freq_base")), "rope base");
    CHECK(streq(jstr(o, "capabilities.0"), "completion") && streq(jstr(o, "capabilities.1"), "tools")
          && streq(jstr(o, "capabilities.2"), "thinking"), "capabilities");
    json_decref(o);
    qp_buf_reset(&out);
    CHECK(qp_ollama_show(&cfg, &info, "{\"name\":\"qwen3\"}", 16, &out, &err) == 0, "show by name");
    qp_buf_reset(&out);
    CHECK(qp_ollama_show(&cfg, &info, "{\"model\":\"llama3\"}", 18, &out, &err) != 0
          && err.status == 404 && streq(err.body, "{\"error\":\"model 'llama3' not found\"}"),
          "show 404: %s", err.body);
    CHECK(qp_ollama_show(&cfg, &info, "{", 1, &out, &err) != 0 && err.status == 400
          && strstr(err.body, "\"error\":\"") != NULL, "show bad JSON %s", err.body);
    CHECK(qp_ollama_show(&cfg, &info, "{\"model\":1}", 11, &out, &err) != 0 && err.status == 400,
          "show model type");

    /* version, unsupported */
    CHECK(qp_ollama_version(&out) == 0, "version");
    o = load(out.data, out.len);
    CHECK(streq(jstr(o, "version"), QP_OLLAMA_VERSION), "version string");
    json_decref(o);
    qp_ollama_unsupported(&err);
    o = load(err.body, strlen(err.body));
    CHECK(err.status == 501 && strstr(jstr(o, "error"), "model management is not supported") != NULL
          && strstr(jstr(o, "error"), "qwen_model") != NULL, "501 body %s", err.body);
    json_decref(o);
    CHECK(streq(QP_OLLAMA_ROOT_TEXT, "Ollama is running"), "root text");
    qp_buf_free(&out);

    /* other files: quantized GGUF, Hugging Face directory */
    {
        static const struct {
            const char *file, *format, *quant;
        } other[] = {
            { "small-q4_k_m.gguf", "gguf", "Q4_K_M" },
            { "tiny-bf16-hf", "safetensors", "BF16" },
            { "tiny-q8_0.gguf", "gguf", "Q8_0" },
            { "full-q4_k_m.gguf", "gguf", "Q4_K_M" },   /* optional: make bench-models */
        };
        for (i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
            qwen_model *mm = NULL;
            char        msg[QWEN_ERR_LEN];

            snprintf(path, sizeof(path), "%s/%s", model_dir, other[i].file);
            if (i == 3 && stat(path, &st) != 0) {
                continue;
            }
            if ((mm = qwen_model_load(path, msg, sizeof(msg))) == NULL) {
                CHECK(0, "load %s: %s", path, msg);
                continue;
            }
            CHECK(qp_model_info_from_model(mm, path, &info) == 0, "info %s", other[i].file);
            CHECK(streq(info.format, other[i].format) && streq(info.quantization, other[i].quant),
                  "%s: format %s quantization %s (%s)", other[i].file, info.format,
                  info.quantization, info.weights);
            CHECK(info.size_bytes > 0, "%s: size", other[i].file);
            if (i == 3) {
                qp_buf po = { 0 };
                json_t *pj;

                /* Qwen3-0.6B's shapes: 596,049,920 parameters */
                CHECK(info.n_params == 596049920ull, "Qwen3-0.6B parameters %llu",
                      (unsigned long long) info.n_params);
                qp_ollama_tags(&cfg, &info, &po);
                pj = load(po.data, po.len);
                CHECK(streq(jstr(pj, "models.0.details.parameter_size"), "596.05M"),
                      "parameter_size %s", jstr(pj, "models.0.details.parameter_size"));
                json_decref(pj);
                qp_buf_free(&po);
            }
            qwen_model_free(mm);
        }
    }
    CHECK(qp_model_info_from_model(model, "/nonexistent/x.gguf", &info) == -1
          && info.size_bytes == qwen_model_weight_bytes(model), "missing path: weights size");
}

/* --------------------------------------------------------- operations */

#define SM(s) qp_sagemaker_api(s, strlen(s), &err)

static void
test_sagemaker(void)
{
    qp_error err;

    CHECK(SM("{\"messages\":[]}") == QP_OPENAI_CHAT, "messages: chat");
    CHECK(SM("{\"prompt\":\"x\",\"stream\":true}")
          == QP_OPENAI_COMPLETIONS, "prompt: completions");
    CHECK(SM("{\"messages\":[],\"prompt\":\"x\"}") == QP_OPENAI_CHAT,
          "both: chat");
    CHECK(SM("{\"messages\":null,\"prompt\":\"x\"}")
          == QP_OPENAI_COMPLETIONS, "null messages: completions");
    memset(&err, 0, sizeof(err));
    CHECK(SM("{\"input\":\"x\"}") == QP_API_COUNT && err.status == 400
          && strstr(err.body, "messages") != NULL
          && strstr(err.body, "invalid_request_error") != NULL, "neither: %s", err.body);
    CHECK(qp_sagemaker_api("nope", 4, &err) == QP_API_COUNT && err.status == 400, "bad JSON");
    CHECK(qp_sagemaker_api("", 0, &err) == QP_API_COUNT && err.status == 400, "empty body");
}

static void
expect_tok_err(int line, int detok, const char *body, int status, const char *sub)
{
    qp_buf   out = { 0 };
    qp_error err;
    int      rc;
    json_t  *o;

    memset(&err, 0, sizeof(err));
    rc = detok ? qp_detokenize_body(body, strlen(body), &cfg, tok, &out, &err)
               : qp_tokenize_body(body, strlen(body), &cfg, tok, &out, &err);
    CHECK(rc != 0 && err.status == status, "line %d: %s: rc %d status %d (%s)", line, body, rc,
          err.status, err.body);
    o = load(err.body, strlen(err.body));
    CHECK(jstr(o, "error.message") != NULL
          && (sub == NULL || strstr(jstr(o, "error.message"), sub) != NULL),
          "line %d: message %s", line, err.body);
    json_decref(o);
    qp_buf_free(&out);
}

static void
roundtrip(const char *text)
{
    qp_buf      out = { 0 }, back = { 0 }, body = { 0 };
    qp_error    err;
    json_t     *o, *req;
    qwen_tokens want = toks(text);
    size_t      i;
    char       *s;

    req = json_pack("{s:s}", "prompt", text);
    s = json_dumps(req, 0);
    CHECK(qp_tokenize_body(s, strlen(s), &cfg, tok, &out, &err) == 0, "tokenize %s", err.body);
    free(s);
    json_decref(req);
    o = load(out.data, out.len);
    CHECK(jint(o, "count") == (long long) want.n && jint(o, "max_model_len") == cfg.n_ctx
          && json_array_size(jget(o, "tokens")) == want.n, "tokenize shape");
    for (i = 0; i < want.n; i++) {
        CHECK(json_integer_value(json_array_get(jget(o, "tokens"), i)) == want.ids[i], "id %zu", i);
    }
    qp_buf_printf(&body, "{\"tokens\":");
    s = json_dumps(jget(o, "tokens"), 0);
    qp_buf_printf(&body, "%s}", s);
    free(s);
    CHECK(qp_detokenize_body(body.data, body.len, &cfg, tok, &back, &err) == 0, "detokenize %s",
          err.body);
    json_decref(o);
    o = load(back.data, back.len);
    CHECK(streq(jstr(o, "prompt"), text), "round trip '%s' -> '%s'", text, jstr(o, "prompt"));
    json_decref(o);
    qp_buf_free(&out);
    qp_buf_free(&back);
    qp_buf_free(&body);
    qwen_tokens_free(&want);
}

static void
test_tokenize(void)
{
    qp_buf            out = { 0 };
    qp_error          err;
    json_t           *o;
    qwen_chat_message m[2];
    char             *t, *text = NULL, msg[QWEN_ERR_LEN];
    size_t            len;
    qwen_tokens       want;
    const char       *b;

    roundtrip("Hello world");
    roundtrip("héllo 世界 🙂 <|im_start|>user\n  tabs\tand\nnewlines  ");
    roundtrip("");

    /* messages through the chat template */
    memset(m, 0, sizeof(m));
    m[0].role = "user";
    m[0].content = "Hi";
    t = render(m, 1, NULL, 1);
    want = toks(t);
    b = "{\"model\":\"qwen3\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}";
    CHECK(qp_tokenize_body(b, strlen(b), &cfg, tok, &out, &err) == 0, "messages: %s", err.body);
    o = load(out.data, out.len);
    CHECK(jint(o, "count") == (long long) want.n, "messages count %lld, want %zu",
          jint(o, "count"), want.n);
    json_decref(o);
    qp_buf_reset(&out);
    free(t);
    qwen_tokens_free(&want);
    /* without the generation prompt, with thinking off */
    CHECK(qwen_chat_render(m, 1, NULL, 0, 0, &text, &len, msg, sizeof(msg)) == 0, "render");
    want = toks(text);
    b = "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"add_generation_prompt\":false,"
        "\"chat_template_kwargs\":{\"enable_thinking\":false},\"return_token_strs\":true}";
    CHECK(qp_tokenize_body(b, strlen(b), &cfg, tok, &out, &err) == 0, "messages agp false");
    o = load(out.data, out.len);
    CHECK(jint(o, "count") == (long long) want.n, "agp false count");
    CHECK(json_array_size(jget(o, "token_strs")) == want.n
          && streq(jstr(o, "token_strs.0"), "<|im_start|>"), "token_strs");
    json_decref(o);
    qp_buf_reset(&out);
    free(text);
    qwen_tokens_free(&want);
    b = "{\"prompt\":\"a\",\"add_special_tokens\":true}";
    CHECK(qp_tokenize_body(b, strlen(b), &cfg, tok, &out, &err) == 0, "add_special_tokens");
    qp_buf_free(&out);

    expect_tok_err(__LINE__, 0, "{}", 400, "\"prompt\"");
    expect_tok_err(__LINE__, 0, "{\"prompt\":5}", 400, "'prompt' must be a string");
    expect_tok_err(__LINE__, 0, "{\"prompt\":\"a\",\"model\":\"gpt-4\"}", 404, "not found");
    expect_tok_err(__LINE__, 0, "{\"prompt\":\"a\",\"return_token_strs\":1}", 400, "boolean");
    expect_tok_err(__LINE__, 0, "{\"messages\":5}", 400, "messages");
    expect_tok_err(__LINE__, 0, "{\"messages\":[{\"role\":\"x\",\"content\":\"a\"}]}", 400, "role");
    expect_tok_err(__LINE__, 0, "[]", 400, "JSON object");
    expect_tok_err(__LINE__, 1, "{}", 400, "'tokens' is required");
    expect_tok_err(__LINE__, 1, "{\"tokens\":\"1 2\"}", 400, "array");
    expect_tok_err(__LINE__, 1, "{\"tokens\":[1,\"2\"]}", 400, "tokens[1]");
    expect_tok_err(__LINE__, 1, "{\"tokens\":[1,2.5]}", 400, "tokens[1]");
    expect_tok_err(__LINE__, 1, "{\"tokens\":[-1]}", 400, "outside the vocabulary");
    expect_tok_err(__LINE__, 1, "{\"tokens\":[99999999]}", 400, "outside the vocabulary");
    expect_tok_err(__LINE__, 1, "{\"tokens\":[1],\"model\":\"x\"}", 404, "not found");
    expect_tok_err(__LINE__, 1, "not json", 400, "JSON");
    {
        qp_buf   o2 = { 0 };
        char     body[64];
        int      vocab = qwen_tokenizer_vocab_size(tok);

        snprintf(body, sizeof(body), "{\"tokens\":[%d]}", vocab);
        expect_tok_err(__LINE__, 1, body, 400, "outside the vocabulary");
        snprintf(body, sizeof(body), "{\"tokens\":[%d]}", vocab - 1);
        CHECK(qp_detokenize_body(body, strlen(body), &cfg, tok, &o2, &err) == 0, "last id ok");
        qp_buf_free(&o2);
        /* half a character alone: U+FFFD, still valid JSON */
        CHECK(qp_detokenize_body("{\"tokens\":[]}", 13, &cfg, tok, &o2, &err) == 0
              && streq(o2.data, "{\"prompt\":\"\"}"), "empty list");
        qp_buf_free(&o2);
    }
    CHECK(qp_tokenize_body("{\"prompt\":\"a\"}", 14, &cfg, NULL, &out, &err) != 0
          && err.status == 500, "no tokenizer: 500");
    qp_buf_free(&out);
}

static void
test_health(void)
{
    qp_buf            out = { 0 };
    qwen_engine_stats s;
    json_t           *o;

    CHECK(qp_health_body(NULL, 0, &out) == 503 && streq(out.data, "{\"status\":\"loading\"}"),
          "loading");
    qp_buf_reset(&out);
    memset(&s, 0, sizeof(s));
    s.n_slots = 2;
    s.max_queue = 4;
    s.running = 1;
    CHECK(qp_health_body(&s, 1, &out) == 200, "ok");
    o = load(out.data, out.len);
    CHECK(streq(jstr(o, "status"), "ok") && jint(o, "running") == 1 && jint(o, "slots") == 2,
          "ok body %s", out.data);
    json_decref(o);
    qp_buf_reset(&out);
    s.running = 2;
    s.waiting = 3;
    CHECK(qp_health_body(&s, 1, &out) == 200 && strstr(out.data, "\"ok\"") != NULL,
          "busy but queue not full");
    qp_buf_reset(&out);
    s.waiting = 4;
    CHECK(qp_health_body(&s, 0, &out) == 200 && strstr(out.data, "\"saturated\"") != NULL,
          "saturated, 200 when not configured");
    qp_buf_reset(&out);
    CHECK(qp_health_body(&s, 1, &out) == 503 && strstr(out.data, "\"saturated\"") != NULL,
          "saturated, 503 when configured");
    qp_buf_reset(&out);
    s.max_queue = 0;
    s.waiting = 0;
    CHECK(qp_health_body(&s, 1, &out) == 503, "no queue, slots full: saturated");
    qp_buf_free(&out);
}

/* ------------------------------------------------- metrics validator */

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
    qwen_request_timing t = { 20, 150, 1150, 7, 11 };
    const char         *bad;

    qp_metrics_init(&m);
    CHECK(qp_metrics_text(&m, &out) == 0, "empty metrics");
    CHECK(prom_validate(out.data, out.len, &st) == 0, "empty exposition valid:\n%s", out.data);
    CHECK(st.n == 10, "10 families (%d)", st.n);
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
    CHECK(prom_sample(out.data, "qwen_request_success_total{finished_reason=\"stop\"}") == 2
          && prom_sample(out.data, "qwen_request_success_total{finished_reason=\"error\"}") == 1,
          "finished counter");
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

/* ------------------------------------------------------------------ main */

int
main(void)
{
    const char *dir = getenv("QWEN_TEST_MODELS");
    char        path[4200], msg[QWEN_ERR_LEN];
    qwen_model *loaded = NULL;

    snprintf(model_dir, sizeof(model_dir), "%s", dir ? dir : "build/models");
    snprintf(path, sizeof(path), "%s/tiny-f32.gguf", model_dir);
    if ((loaded = qwen_model_load(path, msg, sizeof(msg))) == NULL) {
        fprintf(stderr, "cannot load %s: %s\n", path, msg);
        CHECK(0, "test model loads");
        TEST_MAIN_END();
    }
    tok = qwen_model_tokenizer(loaded);
    model = loaded;
    CHECK(tok != NULL, "the test model has a tokenizer");
    if (tok == NULL) {
        qwen_model_free(loaded);
        TEST_MAIN_END();
    }
    qp_config_defaults(&cfg);

    test_parse_errors();
    test_load_answers();
    test_parse_params();
    test_format();
    test_prompts();
    test_chat_stream();
    test_generate_stream();
    test_thinking();
    test_tool_calls();
    test_stop_strings();
    test_errors_midstream();
    test_time_and_hash();
    test_listings();
    test_sagemaker();
    test_tokenize();
    test_health();
    test_metrics();

    qwen_model_free(loaded);
    TEST_MAIN_END();
}
