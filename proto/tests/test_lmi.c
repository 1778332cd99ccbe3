/*
 * test_lmi.c - SageMaker's LMI / TGI schema on /invocations (proto/lmi.c)
 * against the real Qwen3 tokenizer: which API a body picks, the raw-text
 * prompt, every parameter's mapping to the engine and its 400, greedy
 * unless sampling is asked for, the whole answer [{"generated_text"}] with
 * details and return_full_text, and the JSON-lines stream: one line per
 * token whose texts join to the answer, the last line with generated_text
 * and details, however the events are grouped.
 */
#include "proto_test.h"

#define LMI QP_SAGEMAKER_LMI

static void
test_pick(void)
{
    qp_error err;

    CHECK(qp_sagemaker_api("{\"inputs\":\"x\"}", 14, &err) == LMI, "inputs: LMI");
    CHECK(qp_sagemaker_api("{\"prompt\":\"x\",\"inputs\":\"y\"}", 27, &err)
          == QP_OPENAI_COMPLETIONS, "prompt wins over inputs");
    memset(&err, 0, sizeof(err));
    CHECK(qp_sagemaker_api("{\"input\":\"x\"}", 13, &err) == QP_API_COUNT
          && strstr(err.body, "inputs") != NULL, "none: the 400 names inputs too: %s",
          err.body);
}

/* The error body is TGI's {"error","error_type"} with our "code". */
static void
expect_lmi_err(int line, const char *body, int status, const char *sub)
{
    qp_error    err;
    qp_request *req = parse(LMI, body, &err);
    json_t     *o;

    CHECK(req == NULL && err.status == status, "line %d: %s: status %d (%s)", line, body,
          err.status, err.body);
    qp_request_free(req);
    o = load(err.body, strlen(err.body));
    CHECK(jstr(o, "error") != NULL && strstr(jstr(o, "error"), sub) != NULL,
          "line %d: message lacks '%s': %s", line, sub, err.body);
    CHECK(streq(jstr(o, "error_type"), status == 404 ? "validation"
                : status < 500 ? "validation" : "generation"), "line %d: error_type", line);
    CHECK(jint(o, "code") == status, "line %d: code", line);
    json_decref(o);
}

static void
test_parse(void)
{
    qp_error                   err;
    qp_request                *req;
    const qwen_request_params *p;

    /* the prompt is the raw text, no chat template */
    check_prompt(__LINE__, LMI, "{\"inputs\":\"What is Deep Learning?\"}",
                 "What is Deep Learning?");

    req = parse(LMI, "{\"inputs\":\"Hi\",\"parameters\":{\"max_new_tokens\":7,"
                "\"temperature\":0.5,\"top_p\":0.9,\"top_k\":40,\"seed\":42,"
                "\"repetition_penalty\":1.1,\"stop\":[\"\\n\\n\",\"END\"],\"details\":true,"
                "\"return_full_text\":true,\"do_sample\":true}}", &err);
    CHECK(req != NULL, "every parameter: %s", err.body);
    if (req != NULL) {
        p = qp_request_params(req);
        CHECK(p->max_tokens == 7, "max_new_tokens -> max_tokens (%d)", p->max_tokens);
        CHECK(p->sampling.temperature == 0.5f && p->sampling.top_p == 0.9f
              && p->sampling.top_k == 40 && p->sampling.seed == 42
              && p->sampling.repetition_penalty == 1.1f, "sampling parameters");
        CHECK(p->n_logprobs == 1, "log_prob per token asked of the engine");
        CHECK(!qp_request_stream(req), "not a stream by default");
    }
    qp_request_free(req);

    /* TGI and LMI are greedy unless told to sample */
    req = parse(LMI, "{\"inputs\":\"Hi\"}", &err);
    CHECK(req != NULL && qp_request_params(req)->sampling.temperature == 0.0f,
          "no parameters: greedy");
    qp_request_free(req);
    req = parse(LMI, "{\"inputs\":\"Hi\",\"parameters\":{\"max_new_tokens\":3}}", &err);
    CHECK(req != NULL && qp_request_params(req)->sampling.temperature == 0.0f,
          "no sampling parameter: greedy");
    qp_request_free(req);
    req = parse(LMI, "{\"inputs\":\"Hi\",\"parameters\":{\"temperature\":0.8,"
                "\"do_sample\":false}}", &err);
    CHECK(req != NULL && qp_request_params(req)->sampling.temperature == 0.0f,
          "do_sample false wins: greedy");
    qp_request_free(req);
    req = parse(LMI, "{\"inputs\":\"Hi\",\"parameters\":{\"do_sample\":true}}", &err);
    CHECK(req != NULL && qp_request_params(req)->sampling.temperature
                         == cfg.sampling.temperature && cfg.sampling.temperature > 0.0f,
          "do_sample alone: the server's sampling defaults");
    qp_request_free(req);
    req = parse(LMI, "{\"inputs\":\"Hi\",\"parameters\":{\"top_k\":5}}", &err);
    CHECK(req != NULL && qp_request_params(req)->sampling.temperature > 0.0f
          && qp_request_params(req)->sampling.top_k == 5, "top_k alone: sampling");
    qp_request_free(req);
    req = parse(LMI, "{\"inputs\":\"Hi\",\"stream\":true}", &err);
    CHECK(req != NULL && qp_request_stream(req), "stream true");
    qp_request_free(req);

    expect_lmi_err(__LINE__, "{\"inputs\":5}", 400, "'inputs' must be a string");
    expect_lmi_err(__LINE__, "{\"inputs\":\"\"}", 400, "'inputs' is empty");
    expect_lmi_err(__LINE__, "{\"inputs\":\"x\",\"parameters\":[]}", 400,
                   "'parameters' must be an object");
    expect_lmi_err(__LINE__, "{\"inputs\":\"x\",\"parameters\":{\"max_new_tokens\":0}}", 400,
                   "parameters.max_new_tokens");
    expect_lmi_err(__LINE__, "{\"inputs\":\"x\",\"parameters\":{\"temperature\":-1}}", 400,
                   "parameters.temperature");
    expect_lmi_err(__LINE__, "{\"inputs\":\"x\",\"parameters\":{\"top_p\":1.5}}", 400,
                   "parameters.top_p");
    expect_lmi_err(__LINE__, "{\"inputs\":\"x\",\"parameters\":{\"top_k\":\"a\"}}", 400,
                   "parameters.top_k");
    expect_lmi_err(__LINE__, "{\"inputs\":\"x\",\"parameters\":{\"do_sample\":1}}", 400,
                   "parameters.do_sample");
    expect_lmi_err(__LINE__, "{\"inputs\":\"x\",\"parameters\":{\"stop\":[1]}}", 400,
                   "parameters.stop");
    expect_lmi_err(__LINE__, "{\"inputs\":\"x\",\"parameters\":{\"best_of\":2}}", 400,
                   "best_of");
    expect_lmi_err(__LINE__, "{\"inputs\":\"x\",\"parameters\":{\"typical_p\":0.5}}", 400,
                   "typical_p");
    expect_lmi_err(__LINE__, "{\"inputs\":\"x\",\"stream\":\"yes\"}", 400, "stream");
    expect_lmi_err(__LINE__, "{\"inputs\":\"x\",\"parameters\":{\"max_new_tokens\":100000}}",
                   400, "maximum context length");
}

/* A whole answer or stream of text (+ EOS), events per_call at a time. */
static json_t *
run(const char *body, const char *text, int eog, size_t per_call, qp_buf *out,
    qwen_finish finish)
{
    qp_error     err;
    qp_request  *req = parse(LMI, body, &err);
    qp_response *r;
    events       e = events_of(text, eog);
    json_t      *v = NULL;

    CHECK(req != NULL, "%s: %s", body, err.body);
    if (req == NULL) {
        free(e.ev);
        return NULL;
    }
    r = qp_response_new(req, tok, &cfg, "x", 0);
    qp_buf_reset(out);
    feed(r, e, per_call, out);
    CHECK(qp_response_finish(r, finish, NULL, out) == 0, "finish");
    if (!qp_request_stream(req)) {
        CHECK(streq(qp_response_content_type(r), "application/json"), "application/json");
        v = load(out->data, out->len);
    } else {
        CHECK(streq(qp_response_content_type(r), "application/jsonlines"),
              "application/jsonlines");
        v = ndjson_lines(out->data, out->len);
    }
    qp_response_free(r);
    qp_request_free(req);
    free(e.ev);
    return v;
}

static void
test_body(void)
{
    qp_buf  out = { 0 };
    json_t *v;
    const char *text = "Deep learning is a field of machine learning.";

    v = run("{\"inputs\":\"Q:\"}", text, 1, 3, &out, QWEN_FINISH_STOP);
    CHECK(json_is_array(v) && json_array_size(v) == 1, "a list of one: %.200s", out.data);
    CHECK(streq(jstr(v, "0.generated_text"), text), "generated_text: %s",
          jstr(v, "0.generated_text"));
    CHECK(jget(v, "0.details") == NULL, "no details unless asked");
    json_decref(v);

    v = run("{\"inputs\":\"Q: \",\"parameters\":{\"details\":true,\"return_full_text\":true}}",
            text, 1, 2, &out, QWEN_FINISH_STOP);
    CHECK(v != NULL && strncmp(jstr(v, "0.generated_text") ? jstr(v, "0.generated_text") : "",
                               "Q: Deep learning", 16) == 0, "return_full_text: the input first");
    CHECK(streq(jstr(v, "0.details.finish_reason"), "eos_token"), "details.finish_reason eos_token");
    CHECK(streq(jstr(v, "0.details.inputs"), "Q: "), "details.inputs");
    {
        qwen_tokens t = toks(text);
        json_t     *tk = jget(v, "0.details.tokens");
        char       *joined = concat(tk, "text");
        size_t      i;

        CHECK(jint(v, "0.details.generated_tokens") == (long long) t.n + 1,
              "generated_tokens counts the EOS (%lld)", jint(v, "0.details.generated_tokens"));
        CHECK(json_array_size(tk) == t.n, "details.tokens: one per token (%zu of %zu)",
              json_array_size(tk), t.n);
        for (i = 0; i < t.n && i < json_array_size(tk); i++) {
            CHECK(jint(json_array_get(tk, i), "id") == t.ids[i], "token %zu id", i);
        }
        CHECK(json_real_value(jget(tk, "1.log_prob")) < -0.19
              && json_real_value(jget(tk, "1.log_prob")) > -0.21, "log_prob of token 1");
        CHECK(streq(joined, text), "the tokens' texts join to the answer: %s", joined);
        free(joined);
        qwen_tokens_free(&t);
    }
    json_decref(v);

    v = run("{\"inputs\":\"Q:\",\"parameters\":{\"details\":true,\"stop\":[\"machine\"]}}",
            text, 0, 4, &out, QWEN_FINISH_CANCELLED);
    CHECK(streq(jstr(v, "0.generated_text"), "Deep learning is a field of "),
          "stop string: cut before it (%s)", jstr(v, "0.generated_text"));
    CHECK(streq(jstr(v, "0.details.finish_reason"), "stop_sequence"), "stop_sequence");
    json_decref(v);

    v = run("{\"inputs\":\"Q:\",\"parameters\":{\"details\":true}}", text, 0, 5, &out,
            QWEN_FINISH_LENGTH);
    CHECK(streq(jstr(v, "0.details.finish_reason"), "length"), "length");
    json_decref(v);
    qp_buf_free(&out);
}

static void
test_stream(void)
{
    static const size_t per_call[] = { 1, 2, 7, 100 };
    const char *text = "Streams arrive line by line, caf\xc3\xa9 \xe2\x82\xac 10.";
    qp_buf      out = { 0 };
    qwen_tokens t = toks(text);
    size_t      k, i, n;
    json_t     *v, *last;
    char       *joined;

    for (k = 0; k < sizeof(per_call) / sizeof(per_call[0]); k++) {
        /* the end with the last token (length) and after EOS */
        v = run("{\"inputs\":\"Q:\",\"stream\":true,\"parameters\":{\"details\":true}}",
                text, 0, per_call[k], &out, QWEN_FINISH_LENGTH);
        n = json_array_size(v);
        CHECK(n == t.n, "per_call %zu: one line per token (%zu lines, %zu tokens)",
              per_call[k], n, t.n);
        for (i = 0; i < n && i < t.n; i++) {
            CHECK(jint(json_array_get(v, i), "token.id") == t.ids[i]
                  && json_is_real(jget(json_array_get(v, i), "token.log_prob")),
                  "per_call %zu: line %zu: token id and log_prob", per_call[k], i);
        }
        joined = concat(v, "token.text");
        CHECK(streq(joined, text), "per_call %zu: the lines' texts join to the answer: %s",
              per_call[k], joined);
        free(joined);
        last = json_array_get(v, n ? n - 1 : 0);
        CHECK(streq(jstr(last, "generated_text"), text), "per_call %zu: generated_text last",
              per_call[k]);
        CHECK(streq(jstr(last, "details.finish_reason"), "length")
              && jint(last, "details.generated_tokens") == (long long) t.n,
              "per_call %zu: details", per_call[k]);
        for (i = 0; i + 1 < n; i++) {
            CHECK(jget(json_array_get(v, i), "generated_text") == NULL,
                  "per_call %zu: only the last line has generated_text", per_call[k]);
        }
        json_decref(v);

        v = run("{\"inputs\":\"Q:\",\"stream\":true}", text, 1, per_call[k], &out,
                QWEN_FINISH_STOP);
        n = json_array_size(v);
        last = json_array_get(v, n ? n - 1 : 0);
        CHECK(n == t.n + 1 && jint(last, "token.id") == EOG_IM_END
              && json_is_true(jget(last, "token.special_token"))
              && streq(jstr(last, "token.text"), ""),
              "per_call %zu: EOS: a last line with the special token", per_call[k]);
        CHECK(streq(jstr(last, "generated_text"), text) && jget(last, "details") == NULL,
              "per_call %zu: ... with generated_text, no details unless asked", per_call[k]);
        json_decref(v);
    }
    /* an error mid-stream: one more line, TGI's error shape */
    {
        qp_error     err;
        qp_request  *req = parse(LMI, "{\"inputs\":\"Q:\",\"stream\":true}", &err);
        qp_response *r = qp_response_new(req, tok, &cfg, "x", 0);
        events       e = events_of("Hello there", 0);

        qp_buf_reset(&out);
        feed(r, e, 1, &out);
        CHECK(qp_response_error(r, 503, "server_error", "the server is shutting down", &out)
              == 0, "error line");
        v = ndjson_lines(out.data, out.len);
        last = json_array_get(v, json_array_size(v) - 1);
        CHECK(streq(jstr(last, "error"), "the server is shutting down")
              && streq(jstr(last, "error_type"), "overloaded") && jint(last, "code") == 503,
              "error line: %s", out.data);
        json_decref(v);
        qp_response_free(r);
        qp_request_free(req);
        free(e.ev);
    }
    qwen_tokens_free(&t);
    qp_buf_free(&out);
}

int
main(void)
{
    if (test_model_load() == 0) {
        test_pick();
        test_parse();
        test_body();
        test_stream();
        test_model_free();
    }
    TEST_MAIN_END();
}
