/*
 * test_openai.c - /v1/chat/completions, /v1/completions and /v1/models on
 * the tiny test model's tokenizer (synthetic token events of real ids):
 * every parameter and error path, prompt ids, SSE framing, stop strings,
 * thinking and its budget, tool calls, logprobs (also end to end through
 * the engine).
 */
#include <math.h>
#include <poll.h>
#include <unistd.h>

#include "proto_test.h"

#define EXPECT_ERR(api, body, status, param, code, sub) \
    expect_err(__LINE__, api, body, status, param, code, sub)

/* ------------------------------------------------------------ helpers */

/* OpenAI bodies carry no timing. */
static run_result
run(qp_api api, const char *body, events e, size_t per_call, qwen_finish reason)
{
    return run_t(api, body, e, per_call, reason, NULL);
}

/* A field of every chat chunk's delta joined, or for completion chunks
 * (no delta) their text when field is "content". */
static char *
concat_deltas(json_t *chunks, const char *field)
{
    char path[64];

    if (jget(chunks, "0.choices.0.delta") == NULL && strcmp(field, "content") == 0) {
        return concat(chunks, "choices.0.text");
    }
    snprintf(path, sizeof(path), "choices.0.delta.%s", field);
    return concat(chunks, path);
}

/* ------------------------------------------------------------- tests */

static void
test_config_and_models(void)
{
    qp_config c;
    qp_buf    b = { 0 };
    qp_error  err;
    json_t   *v;

    qp_config_defaults(&c);
    CHECK(streq(c.model_name, "qwen3") && c.n_ctx > 0 && c.enable_thinking == 1
          && c.reasoning_field == 0, "config defaults");
    CHECK(qp_openai_models(&cfg, 1700000000, &b) == 0, "models");
    v = body_json(&b);
    CHECK(streq(jstr(v, "object"), "list") && streq(jstr(v, "data.0.id"), "qwen3")
          && streq(jstr(v, "data.0.object"), "model") && streq(jstr(v, "data.0.owned_by"), "qwen")
          && json_integer_value(jget(v, "data.0.created")) == 1700000000, "models list");
    json_decref(v);
    qp_buf_reset(&b);
    CHECK(qp_openai_model(&cfg, "qwen3:0.6b", 10, 1, &b, &err) == 0, "model alias");
    v = body_json(&b);
    CHECK(streq(jstr(v, "id"), "qwen3") && streq(jstr(v, "object"), "model"), "model object");
    json_decref(v);
    qp_buf_reset(&b);
    CHECK(qp_openai_model(&cfg, "gpt-4", 5, 1, &b, &err) != 0 && err.status == 404,
          "unknown model 404");
    v = json_loads(err.body, 0, NULL);
    CHECK(streq(jstr(v, "error.type"), "not_found_error"), "404 type: %s", err.body);
    json_decref(v);
    qp_buf_free(&b);
}

static void
test_parse_errors(void)
{
    /* body */
    EXPECT_ERR(CHAT, "", 400, NULL, NULL, "empty");
    EXPECT_ERR(CHAT, "{\"messages\":[", 400, NULL, NULL, "not valid JSON");
    EXPECT_ERR(CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}", 400,
               NULL, NULL, "UTF-8");
    EXPECT_ERR(CHAT, "[1,2]", 400, NULL, NULL, "object");
    EXPECT_ERR(CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\\u0000b\"}]}", 400,
               NULL, NULL, NULL);
    /* model */
    EXPECT_ERR(CHAT, "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
               404, "model", "model_not_found", "gpt-4o");
    EXPECT_ERR(CMPL, "{\"model\":\"llama3\",\"prompt\":\"hi\"}", 404, "model", NULL, NULL);
    EXPECT_ERR(CHAT, "{\"model\":7,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
               400, "model", NULL, NULL);
    /* messages */
    EXPECT_ERR(CHAT, "{}", 400, "messages", NULL, "required");
    EXPECT_ERR(CHAT, "{\"messages\":[]}", 400, "messages", NULL, NULL);
    EXPECT_ERR(CHAT, "{\"messages\":\"hi\"}", 400, "messages", NULL, NULL);
    EXPECT_ERR(CHAT, "{\"messages\":[3]}", 400, "messages[0]", NULL, NULL);
    EXPECT_ERR(CHAT, "{\"messages\":[{\"content\":\"hi\"}]}", 400, "messages[0].role", NULL, NULL);
    EXPECT_ERR(CHAT, "{\"messages\":[{\"role\":\"wizard\",\"content\":\"hi\"}]}", 400,
               "messages[0].role", NULL, "wizard");
    EXPECT_ERR(CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":5}]}", 400,
               "messages[0].content", NULL, NULL);
    EXPECT_ERR(CHAT, "{\"messages\":[{\"role\":\"user\"}]}", 400, "messages[0].content", NULL,
               "required");
    EXPECT_ERR(CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
               "\"image_url\":{\"url\":\"x\"}}]}]}", 400, "messages[0].content", NULL, "image_url");
    EXPECT_ERR(CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}",
               400, "messages[0].content", NULL, NULL);
    EXPECT_ERR(CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\","
               "\"content\":\"b\",\"reasoning_content\":1}]}", 400,
               "messages[1].reasoning_content", NULL, NULL);
    EXPECT_ERR(CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\","
               "\"tool_calls\":{}}]}", 400, "messages[1].tool_calls", NULL, NULL);
    EXPECT_ERR(CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\","
               "\"tool_calls\":[{\"type\":\"function\"}]}]}", 400, "messages[1].tool_calls", NULL,
               NULL);
#define M "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"
    /* stream */
    EXPECT_ERR(CHAT, "{" M ",\"stream\":\"yes\"}", 400, "stream", NULL, NULL);
    EXPECT_ERR(CHAT, "{" M ",\"stream\":true,\"stream_options\":3}", 400, "stream_options",
               NULL, NULL);
    EXPECT_ERR(CHAT, "{" M ",\"stream\":true,\"stream_options\":{\"include_usage\":1}}", 400,
               "stream_options.include_usage", NULL, NULL);
    /* token limits */
    EXPECT_ERR(CHAT, "{" M ",\"max_tokens\":0}", 400, "max_tokens", NULL, NULL);
    EXPECT_ERR(CHAT, "{" M ",\"max_tokens\":-5}", 400, "max_tokens", NULL, NULL);
    EXPECT_ERR(CHAT, "{" M ",\"max_tokens\":\"10\"}", 400, "max_tokens", NULL, NULL);
    EXPECT_ERR(CHAT, "{" M ",\"max_tokens\":1.5}", 400, "max_tokens", NULL, NULL);
    EXPECT_ERR(CHAT, "{" M ",\"max_completion_tokens\":0}", 400, "max_completion_tokens",
               NULL, NULL);
    /* sampling */
    EXPECT_ERR(CHAT, "{" M ",\"temperature\":\"hot\"}", 400, "temperature", NULL, NULL);
    EXPECT_ERR(CHAT, "{" M ",\"temperature\":2.5}", 400, "temperature", NULL, NULL);
    EXPECT_ERR(CHAT, "{" M ",\"temperature\":-0.1}", 400, "temperature", NULL, NULL);
    EXPECT_ERR(CHAT, "{" M ",\"top_p\":0}", 400, "top_p", NULL, NULL);
    EXPECT_ERR(CHAT, "{" M ",\"top_p\":1.01}", 400, "top_p", NULL, NULL);
    EXPECT_ERR(CHAT, "{" M ",\"top_k\":-2}", 400, "top_k", NULL, NULL);
    EXPECT_ERR(CHAT, "{" M ",\"top_k\":2.5}", 400, "top_k", NULL, NULL);
    EXPECT_ERR(CHAT, "{" M ",\"top_k\":true}", 400, "top_k", NULL, NULL);
    EXPECT_ERR(CHAT, "{" M ",\"min_p\":1.5}", 400, "min_p", NULL, NULL);
    EXPECT_ERR(CHAT, "{" M ",\"min_p\":-0.5}", 400, "min_p", NULL, NULL);
    EXPECT_ERR(CHAT, "{" M ",\"presence_penalty\":2.1}", 400, "presence_penalty", NULL, NULL);
    EXPECT_ERR(CHAT, "{" M ",\"frequency_penalty\":-3}", 400, "frequency_penalty", NULL, NULL);
    EXPECT_ERR(CHAT, "{" M ",\"frequency_penalty\":[]}", 400, "frequency_penalty", NULL, NULL);
    EXPECT_ERR(CHAT, "{" M ",\"repetition_penalty\":0}", 400, "repetition_penalty", NULL, NULL);
    EXPECT_ERR(CHAT, "{" M ",\"seed\":\"42\"}", 400, "seed", NULL, NULL);
    /* stop */
    EXPECT_ERR(CHAT, "{" M ",\"stop\":5}", 400, "stop", NULL, NULL);
    EXPECT_ERR(CHAT, "{" M ",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", 400, "stop", NULL, "4");
    EXPECT_ERR(CHAT, "{" M ",\"stop\":[\"a\",1]}", 400, "stop", NULL, NULL);
    /* n */
    EXPECT_ERR(CHAT, "{" M ",\"n\":2}", 400, "n", NULL, NULL);
    EXPECT_ERR(CHAT, "{" M ",\"n\":\"1\"}", 400, "n", NULL, NULL);
    EXPECT_ERR(CMPL, "{\"prompt\":\"hi\",\"n\":3}", 400, "n", NULL, NULL);
    EXPECT_ERR(CMPL, "{\"prompt\":\"hi\",\"best_of\":2}", 400, "best_of", NULL, NULL);
    EXPECT_ERR(CMPL, "{\"prompt\":\"hi\",\"echo\":true}", 400, "echo", NULL, NULL);
    /* logprobs */
    EXPECT_ERR(CHAT, "{" M ",\"logprobs\":3}", 400, "logprobs", NULL, NULL);
    EXPECT_ERR(CHAT, "{" M ",\"logprobs\":true,\"top_logprobs\":21}", 400, "top_logprobs",
               NULL, NULL);
    EXPECT_ERR(CHAT, "{" M ",\"logprobs\":true,\"top_logprobs\":-1}", 400, "top_logprobs",
               NULL, NULL);
    EXPECT_ERR(CHAT, "{" M ",\"top_logprobs\":2}", 400, "top_logprobs", NULL, "logprobs");
    EXPECT_ERR(CMPL, "{\"prompt\":\"hi\",\"logprobs\":6}", 400, "logprobs", NULL, NULL);
    EXPECT_ERR(CMPL, "{\"prompt\":\"hi\",\"logprobs\":true}", 400, "logprobs", NULL, NULL);
    /* response_format */
    EXPECT_ERR(CHAT, "{" M ",\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{}}}",
               400, "response_format", NULL, "json_schema");
    EXPECT_ERR(CHAT, "{" M ",\"response_format\":{\"type\":\"json_schema\",\"json_schema\":"
               "{\"schema\":{\"type\":\"array\"}}}}", 400, "response_format", NULL, "object");
    EXPECT_ERR(CHAT, "{" M ",\"response_format\":{\"type\":\"json_schema\",\"json_schema\":"
               "{\"schema\":{\"anyOf\":[]}}}}", 400, "response_format", NULL, "anyOf");
    EXPECT_ERR(CHAT, "{" M ",\"response_format\":{\"type\":\"yaml\"}}", 400, "response_format",
               NULL, NULL);
    EXPECT_ERR(CHAT, "{" M ",\"response_format\":\"json\"}", 400, "response_format", NULL, NULL);
    /* tools and thinking */
    EXPECT_ERR(CHAT, "{" M ",\"tools\":{}}", 400, "tools", NULL, NULL);
    EXPECT_ERR(CHAT, "{" M ",\"tools\":[{\"type\":\"function\"}]}", 400, "tools", NULL, NULL);
    EXPECT_ERR(CHAT, "{" M ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],"
               "\"tool_choice\":\"sometimes\"}", 400, "tool_choice", NULL, NULL);
    EXPECT_ERR(CHAT, "{" M ",\"chat_template_kwargs\":{\"enable_thinking\":\"no\"}}", 400,
               "chat_template_kwargs.enable_thinking", NULL, NULL);
    EXPECT_ERR(CHAT, "{" M ",\"chat_template_kwargs\":[]}", 400, "chat_template_kwargs",
               NULL, NULL);
    EXPECT_ERR(CHAT, "{" M ",\"reasoning_effort\":\"extreme\"}", 400, "reasoning_effort",
               NULL, NULL);
    EXPECT_ERR(CHAT, "{" M ",\"reasoning_effort\":1}", 400, "reasoning_effort", NULL, NULL);
    /* completions prompt */
    EXPECT_ERR(CMPL, "{}", 400, "prompt", NULL, "required");
    EXPECT_ERR(CMPL, "{\"prompt\":5}", 400, "prompt", NULL, NULL);
    EXPECT_ERR(CMPL, "{\"prompt\":[]}", 400, "prompt", NULL, NULL);
    EXPECT_ERR(CMPL, "{\"prompt\":\"\"}", 400, "prompt", NULL, "empty");
    EXPECT_ERR(CMPL, "{\"prompt\":[\"a\",\"b\"]}", 400, "prompt", NULL, "n must be 1");
    EXPECT_ERR(CMPL, "{\"prompt\":[[1,2],[3]]}", 400, "prompt", NULL, "n must be 1");
    EXPECT_ERR(CMPL, "{\"prompt\":[1,\"a\"]}", 400, "prompt", NULL, NULL);
    EXPECT_ERR(CMPL, "{\"prompt\":[1,-3]}", 400, "prompt", NULL, "vocabulary");
    EXPECT_ERR(CMPL, "{\"prompt\":[1,99999999]}", 400, "prompt", NULL, "vocabulary");
    EXPECT_ERR(CMPL, "{\"prompt\":[true]}", 400, "prompt", NULL, NULL);
}

/* response_format: a grammar in the engine parameters; with thinking on it
 * waits for </think>. */
static void
test_response_format(void)
{
    static const struct {
        qp_api      api;
        const char *body;
        int         after_think;
    } ok[] = {
        { CHAT, "{" M ",\"response_format\":{\"type\":\"json_object\"}}", 1 },
        { CHAT, "{" M ",\"response_format\":{\"type\":\"json_object\"},"
                "\"chat_template_kwargs\":{\"enable_thinking\":false}}", 0 },
        { CHAT, "{" M ",\"response_format\":{\"type\":\"json_schema\",\"json_schema\":"
                "{\"name\":\"p\",\"strict\":true,\"schema\":{\"type\":\"object\",\"properties\":"
                "{\"a\":{\"type\":\"integer\"}},\"required\":[\"a\"]}}},"
                "\"reasoning_effort\":\"none\"}", 0 },
        { CMPL, "{\"prompt\":\"hi\",\"response_format\":{\"type\":\"json_object\"}}", 0 },
    };
    size_t i;

    for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        check_grammar("response_format", i, ok[i].api, ok[i].body, ok[i].after_think,
                      "{\"a\": 1}");
    }
    check_no_grammar("type text", CHAT, "{" M ",\"response_format\":{\"type\":\"text\"}}");
}

/* logit_bias in OpenAI's object form and llama.cpp's array form; -100
 * and false ban the token. */
static void
test_logit_bias(void)
{
    qp_error                   err;
    qp_request                *req;
    const qwen_request_params *p;

    req = parse(CMPL, "{\"prompt\":\"hi\",\"logit_bias\":{\"42\":-100,\"7\":2.5}}", &err);
    CHECK(req != NULL, "object logit_bias: %s", err.body);
    if (req != NULL) {
        p = qp_request_params(req);
        CHECK(p->n_logit_bias == 2 && p->logit_bias[0].token == 42
              && isinf(p->logit_bias[0].bias) && p->logit_bias[0].bias < 0
              && p->logit_bias[1].token == 7 && p->logit_bias[1].bias == 2.5f,
              "object: 42 banned, 7 +2.5");
        qp_request_free(req);
    }
    req = parse(CMPL, "{\"prompt\":\"hi\",\"logit_bias\":[[5,false],[6,-1]]}", &err);
    CHECK(req != NULL, "array logit_bias: %s", err.body);
    if (req != NULL) {
        p = qp_request_params(req);
        CHECK(p->n_logit_bias == 2 && p->logit_bias[0].token == 5
              && isinf(p->logit_bias[0].bias) && p->logit_bias[1].bias == -1.0f,
              "array: 5 banned, 6 -1");
        qp_request_free(req);
    }
    EXPECT_ERR(CMPL, "{\"prompt\":\"hi\",\"logit_bias\":{\"x\":1}}", 400, "logit_bias",
               NULL, "not a token id");
    EXPECT_ERR(CMPL, "{\"prompt\":\"hi\",\"logit_bias\":{\"99999999\":1}}", 400, "logit_bias",
               NULL, "not a token id");
    EXPECT_ERR(CMPL, "{\"prompt\":\"hi\",\"logit_bias\":{\"3\":101}}", 400, "logit_bias",
               NULL, "-100 to 100");
    EXPECT_ERR(CMPL, "{\"prompt\":\"hi\",\"logit_bias\":{\"3\":\"a\"}}", 400, "logit_bias",
               NULL, "must be a number");
    EXPECT_ERR(CMPL, "{\"prompt\":\"hi\",\"logit_bias\":[[1]]}", 400, "logit_bias",
               NULL, "[token id, bias or false]");
    EXPECT_ERR(CMPL, "{\"prompt\":\"hi\",\"logit_bias\":3}", 400, "logit_bias",
               NULL, "must be an object");
}

/* draft: the server's setting unless the request says */
static void
test_draft_param(void)
{
    static const struct { const char *v; int want; } ok[] = {
        { "", -1 }, { ",\"draft\":\"ngram\"", 1 }, { ",\"draft\":\"off\"", 0 },
        { ",\"draft\":true", 1 }, { ",\"draft\":false", 0 }, { ",\"draft\":null", -1 },
    };
    qp_error    err;
    qp_request *req;
    char        body[128];
    size_t      i;

    for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        snprintf(body, sizeof(body), "{\"prompt\":\"hi\"%s}", ok[i].v);
        req = parse(CMPL, body, &err);
        CHECK(req != NULL && qp_request_params(req)->draft == ok[i].want, "%s: draft %d", body,
              req ? qp_request_params(req)->draft : -9);
        qp_request_free(req);
    }
    EXPECT_ERR(CMPL, "{\"prompt\":\"hi\",\"draft\":\"eagle\"}", 400, "draft", NULL,
               "\"ngram\" or \"off\"");
    EXPECT_ERR(CHAT, "{" M ",\"draft\":3}", 400, "draft", NULL, "\"ngram\" or \"off\"");
}

static void
test_parse_params(void)
{
    qp_error                   err;
    qp_request                *req;
    const qwen_request_params *p;
    qwen_tokens                t;

    /* everything given */
    req = parse(CHAT, "{\"model\":\"qwen3:0.6b\"," M ",\"stream\":true,"
                "\"stream_options\":{\"include_usage\":true},\"max_tokens\":50,"
                "\"temperature\":0,\"top_p\":0.5,\"top_k\":-1,\"min_p\":0.05,"
                "\"presence_penalty\":1.5,\"frequency_penalty\":-0.5,"
                "\"repetition_penalty\":1.1,\"seed\":1234,\"stop\":[\"x\",\"\",\"yz\"],"
                "\"logprobs\":true,\"top_logprobs\":3,\"n\":1,\"user\":\"u\","
                "\"response_format\":{\"type\":\"text\"},\"ignore_eos\":true,"
                "\"some_future_field\":{\"a\":[1,2]}}", &err);
    CHECK(req != NULL, "full request parses: %s", err.body);
    if (req != NULL) {
        p = qp_request_params(req);
        CHECK(qp_request_stream(req) == 1, "stream");
        CHECK(p->max_tokens == 50, "max_tokens %d", p->max_tokens);
        CHECK(p->sampling.temperature == 0.0f, "temperature 0 (greedy)");
        CHECK(p->sampling.top_p == 0.5f && p->sampling.top_k == -1 && p->sampling.min_p == 0.05f,
              "top_p/top_k/min_p");
        CHECK(p->sampling.presence_penalty == 1.5f && p->sampling.frequency_penalty == -0.5f
              && p->sampling.repetition_penalty == 1.1f, "penalties");
        CHECK(p->sampling.seed == 1234, "seed");
        CHECK(p->sampling.penalty_last_n == cfg.sampling.penalty_last_n, "penalty window");
        CHECK(p->n_logprobs == 3, "n_logprobs %d", p->n_logprobs);
        CHECK(p->ignore_eos == 1, "ignore_eos");
        CHECK(p->n_prompt > 0 && p->prompt != NULL, "prompt ids");
        qp_request_free(req);
    }
    /* defaults and nulls */
    req = parse(CHAT, "{\"model\":null," M ",\"temperature\":null,\"stop\":null,"
                "\"max_tokens\":null,\"seed\":null,\"stream\":null}", &err);
    CHECK(req != NULL, "nulls are absent: %s", err.body);
    if (req != NULL) {
        p = qp_request_params(req);
        CHECK(p->sampling.temperature == cfg.sampling.temperature
              && p->sampling.top_k == cfg.sampling.top_k
              && p->sampling.top_p == cfg.sampling.top_p, "configured sampling defaults");
        CHECK(p->max_tokens == cfg.n_ctx - (int) p->n_prompt,
              "default max_tokens fills the context: %d", p->max_tokens);
        CHECK(p->n_logprobs == 0 && p->ignore_eos == 0 && !qp_request_stream(req), "defaults");
        qp_request_free(req);
    }
    /* max_completion_tokens wins; logprobs without top_logprobs; integral reals */
    req = parse(CHAT, "{" M ",\"max_tokens\":10,\"max_completion_tokens\":20,"
                "\"logprobs\":true,\"top_k\":40.0}", &err);
    CHECK(req != NULL, "parse: %s", err.body);
    if (req != NULL) {
        p = qp_request_params(req);
        CHECK(p->max_tokens == 20, "max_completion_tokens wins: %d", p->max_tokens);
        CHECK(p->n_logprobs == 1, "logprobs alone asks the engine for 1");
        CHECK(p->sampling.top_k == 40, "top_k 40.0");
        qp_request_free(req);
    }
    /* model names */
    {
        static const char *const ok[] = { "qwen3", "qwen3:0.6b", "qwen3:latest", "served-x",
                                          "served-x:latest" };
        qp_config saved = cfg;
        size_t    i;
        char      body[256];

        cfg.model_name = "served-x";
        for (i = 0; i < 5; i++) {
            snprintf(body, sizeof(body), "{\"model\":\"%s\",\"prompt\":\"hi\"}", ok[i]);
            req = parse(CMPL, body, &err);
            CHECK(req != NULL, "model %s accepted", ok[i]);
            qp_request_free(req);
        }
        EXPECT_ERR(CMPL, "{\"model\":\"qwen3:8b\",\"prompt\":\"hi\"}", 404, "model", NULL, NULL);
        cfg = saved;
    }
    /* configured max_tokens and the clamp to the context */
    {
        qp_config saved = cfg;

        cfg.max_tokens = 100;
        req = parse(CMPL, "{\"prompt\":\"hi\"}", &err);
        CHECK(req != NULL && qp_request_params(req)->max_tokens == 100, "configured default");
        qp_request_free(req);
        cfg.n_ctx = 50;
        req = parse(CMPL, "{\"prompt\":[1,2,3,4,5,6,7,8,9,10]}", &err);
        CHECK(req != NULL && qp_request_params(req)->max_tokens == 40,
              "default clamped to n_ctx - prompt");
        qp_request_free(req);
        req = parse(CMPL, "{\"prompt\":[1,2,3,4,5,6,7,8,9,10],\"max_tokens\":40}", &err);
        CHECK(req != NULL, "exactly fits");
        qp_request_free(req);
        EXPECT_ERR(CMPL, "{\"prompt\":[1,2,3,4,5,6,7,8,9,10],\"max_tokens\":41}", 400, "prompt",
                   "context_length_exceeded", "50 tokens");
        EXPECT_ERR(CMPL, "{\"prompt\":[1,2,3,4,5,6,7,8,9,10],\"max_tokens\":41}", 400, "prompt",
                   "context_length_exceeded", "10 in the prompt, 41 for the completion");
        EXPECT_ERR(CMPL, "{\"prompt\":[1,2],\"max_tokens\":9223372036854775807}", 400,
                   "prompt", "context_length_exceeded", NULL);
        cfg.n_ctx = 10;
        EXPECT_ERR(CMPL, "{\"prompt\":[1,2,3,4,5,6,7,8,9,10]}", 400, "prompt",
                   "context_length_exceeded", "10 tokens");
        cfg.n_ctx = 5;
        EXPECT_ERR(CHAT, "{" M "}", 400, "messages", "context_length_exceeded", NULL);
        cfg = saved;
    }
    /* completions prompt forms */
    t = toks("Once upon a time");
    {
        static const char *const bodies[] = {
            "{\"prompt\":\"Once upon a time\"}",
            "{\"prompt\":[\"Once upon a time\"]}",
        };
        size_t i;

        for (i = 0; i < 2; i++) {
            req = parse(CMPL, bodies[i], &err);
            CHECK(req != NULL, "parse %s", bodies[i]);
            if (req != NULL) {
                p = qp_request_params(req);
                CHECK(p->n_prompt == t.n && memcmp(p->prompt, t.ids, t.n * 4) == 0,
                      "prompt ids = tokenizer ids (%s)", bodies[i]);
            }
            qp_request_free(req);
        }
    }
    qwen_tokens_free(&t);
    req = parse(CMPL, "{\"prompt\":[9707,11,1879,0,151643]}", &err);
    CHECK(req != NULL, "id prompt: %s", err.body);
    if (req != NULL) {
        p = qp_request_params(req);
        CHECK(p->n_prompt == 5 && p->prompt[0] == 9707 && p->prompt[4] == 151643, "ids kept");
        qp_request_free(req);
    }
    req = parse(CMPL, "{\"prompt\":[[9707,11]],\"logprobs\":2,\"temperature\":0}", &err);
    CHECK(req != NULL && qp_request_params(req)->n_prompt == 2
          && qp_request_params(req)->n_logprobs == 2, "[[ids]] prompt, logprobs 2");
    qp_request_free(req);
    req = parse(CMPL, "{\"prompt\":\"hi\",\"logprobs\":0}", &err);
    CHECK(req != NULL && qp_request_params(req)->n_logprobs == 1, "logprobs 0 asks for 1");
    qp_request_free(req);
    /* seeds: absent means random */
    {
        qp_request *a = parse(CMPL, "{\"prompt\":\"hi\"}", &err);
        qp_request *b = parse(CMPL, "{\"prompt\":\"hi\"}", &err);

        CHECK(a && b && qp_request_params(a)->sampling.seed != qp_request_params(b)->sampling.seed,
              "no seed: a fresh one per request");
        qp_request_free(a);
        qp_request_free(b);
    }
}

/* The chat prompt is exactly tokenize(render(messages)). */
static void
check_chat_prompt(const char *body, const qwen_chat_message *msgs, size_t n,
                  const char *tools, int thinking, int line)
{
    char   *text = NULL, msg[QWEN_ERR_LEN];
    size_t  len = 0;

    CHECK(qwen_chat_render(msgs, n, tools, 1, thinking, &text, &len, msg, sizeof(msg)) == 0,
          "line %d: render: %s", line, msg);
    check_prompt(line, CHAT, body, text ? text : "");
    free(text);
}

static void
test_chat_prompt(void)
{
    qwen_chat_message m[4];

    memset(m, 0, sizeof(m));
    m[0].role = "system"; m[0].content = "You are terse.";
    m[1].role = "user"; m[1].content = "Hello";
    check_chat_prompt("{\"messages\":[{\"role\":\"system\",\"content\":\"You are terse.\"},"
                      "{\"role\":\"user\",\"content\":\"Hello\"}]}", m, 2, NULL, 1, __LINE__);
    check_chat_prompt("{\"messages\":[{\"role\":\"developer\",\"content\":\"You are terse.\"},"
                      "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Hello\"}]}],"
                      "\"chat_template_kwargs\":{\"enable_thinking\":true}}",
                      m, 2, NULL, 1, __LINE__);
    /* thinking off, three ways */
    check_chat_prompt("{\"messages\":[{\"role\":\"system\",\"content\":\"You are terse.\"},"
                      "{\"role\":\"user\",\"content\":\"Hello\"}],"
                      "\"chat_template_kwargs\":{\"enable_thinking\":false}}", m, 2, NULL, 0,
                      __LINE__);
    check_chat_prompt("{\"messages\":[{\"role\":\"system\",\"content\":\"You are terse.\"},"
                      "{\"role\":\"user\",\"content\":\"Hello\"}],\"reasoning_effort\":\"none\"}",
                      m, 2, NULL, 0, __LINE__);
    check_chat_prompt("{\"messages\":[{\"role\":\"system\",\"content\":\"You are terse.\"},"
                      "{\"role\":\"user\",\"content\":\"Hello\"}],\"enable_thinking\":false,"
                      "\"reasoning_effort\":\"high\"}", m, 2, NULL, 0, __LINE__);
    /* text parts joined with "\n" */
    m[1].content = "Hello\nworld";
    check_chat_prompt("{\"messages\":[{\"role\":\"system\",\"content\":\"You are terse.\"},"
                      "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Hello\"},"
                      "{\"type\":\"text\",\"text\":\"world\"}]}]}", m, 2, NULL, 1, __LINE__);
    /* a multi-turn with earlier thinking, a tool call and its result */
    memset(m, 0, sizeof(m));
    m[0].role = "user"; m[0].content = "Weather in Paris?";
    m[1].role = "assistant"; m[1].content = ""; m[1].reasoning_content = "Use the tool.";
    m[1].tool_calls_json = "[{\"id\":\"call_1\",\"type\":\"function\",\"function\":"
                           "{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}}]";
    m[2].role = "tool"; m[2].content = "{\"temp\":21}";
    check_chat_prompt("{\"messages\":[{\"role\":\"user\",\"content\":\"Weather in Paris?\"},"
                      "{\"role\":\"assistant\",\"content\":null,\"reasoning\":\"Use the tool.\","
                      "\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\",\"function\":"
                      "{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}}]},"
                      "{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"{\\\"temp\\\":21}\"}],"
                      "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
                      "\"description\":\"Weather now\",\"parameters\":{\"type\":\"object\","
                      "\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}}}]}",
                      m, 3,
                      "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
                      "\"description\":\"Weather now\",\"parameters\":{\"type\":\"object\","
                      "\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}}}]",
                      1, __LINE__);
    /* tool_choice none: the tools are not rendered */
    memset(m, 0, sizeof(m));
    m[0].role = "user"; m[0].content = "hi";
    check_chat_prompt("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"tools\":"
                      "[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],"
                      "\"tool_choice\":\"none\"}", m, 1, NULL, 1, __LINE__);
}

static void
test_stream_framing(void)
{
    events     e = events_of("Hello world, this is a test.", 1);
    run_result rr;
    size_t     i;
    char      *content;
    json_t    *first, *last, *usage;

    rr = run(CHAT, "{" M ",\"stream\":true,\"stream_options\":{\"include_usage\":true}}",
             e, 1, QWEN_FINISH_STOP);
    CHECK(rr.done, "[DONE] at the end");
    CHECK(rr.ended_at == e.n, "EOG ends the answer (%zu of %zu)", rr.ended_at, e.n);
    CHECK(json_array_size(rr.json) >= 4, "chunks: %zu", json_array_size(rr.json));
    for (i = 0; i < json_array_size(rr.json); i++) {
        json_t *c = json_array_get(rr.json, i);

        CHECK(streq(jstr(c, "id"), "chatcmpl-test1"), "same id in chunk %zu", i);
        CHECK(json_integer_value(json_object_get(c, "created")) == 1700000000,
              "same created in chunk %zu", i);
        CHECK(streq(jstr(c, "object"), "chat.completion.chunk"), "object");
        CHECK(streq(jstr(c, "model"), "qwen3"), "model");
        CHECK(json_object_get(c, "usage") != NULL, "usage key (null) with include_usage");
    }
    first = json_array_get(rr.json, 0);
    CHECK(streq(jstr(first, "choices.0.delta.role"), "assistant")
          && streq(jstr(first, "choices.0.delta.content"), ""), "first delta role+empty content");
    CHECK(json_is_null(jget(first, "choices.0.finish_reason"))
          && json_integer_value(jget(first, "choices.0.index")) == 0, "first chunk choice");
    last = json_array_get(rr.json, json_array_size(rr.json) - 2);
    CHECK(json_object_size(jget(last, "choices.0.delta")) == 0, "last choice delta is {}");
    CHECK(streq(jstr(last, "choices.0.finish_reason"), "stop"), "finish_reason stop");
    usage = json_array_get(rr.json, json_array_size(rr.json) - 1);
    CHECK(json_is_array(json_object_get(usage, "choices"))
          && json_array_size(json_object_get(usage, "choices")) == 0, "usage chunk choices []");
    CHECK(json_integer_value(jget(usage, "usage.completion_tokens")) == (json_int_t) e.n
          && json_integer_value(jget(usage, "usage.prompt_tokens")) > 0
          && json_integer_value(jget(usage, "usage.total_tokens"))
             == json_integer_value(jget(usage, "usage.prompt_tokens")) + (json_int_t) e.n,
          "usage numbers");
    content = concat_deltas(rr.json, "content");
    CHECK(streq(content, "Hello world, this is a test."), "content '%s'", content);
    CHECK(strstr(rr.out.data, "im_end") == NULL, "EOG never shown");
    CHECK(streq(rr.finish, "stop") && rr.completion_tokens == e.n, "counts");
    free(content);
    run_free(&rr);

    /* all events in one call; no include_usage: no usage chunk, no usage key */
    rr = run(CHAT, "{" M ",\"stream\":true}", e, 100, QWEN_FINISH_STOP);
    CHECK(rr.done && json_array_size(rr.json) == 3, "role, content, final: %zu",
          json_array_size(rr.json));
    for (i = 0; i < json_array_size(rr.json); i++) {
        CHECK(json_object_get(json_array_get(rr.json, i), "usage") == NULL, "no usage key");
    }
    content = concat_deltas(rr.json, "content");
    CHECK(streq(content, "Hello world, this is a test."), "batched content '%s'", content);
    free(content);
    run_free(&rr);

    /* completions stream */
    rr = run(CMPL, "{\"prompt\":\"hi\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}",
             e, 2, QWEN_FINISH_STOP);
    CHECK(rr.done, "[DONE]");
    for (i = 0; i + 1 < json_array_size(rr.json); i++) {
        json_t *c = json_array_get(rr.json, i);

        CHECK(streq(jstr(c, "object"), "text_completion") && streq(jstr(c, "id"), "cmpl-test1"),
              "completion chunk %zu", i);
        CHECK(json_is_string(jget(c, "choices.0.text")) && json_is_null(jget(c, "choices.0.logprobs")),
              "text and logprobs null");
    }
    content = concat_deltas(rr.json, "content");
    CHECK(streq(content, "Hello world, this is a test."), "completion text '%s'", content);
    CHECK(streq(jstr(json_array_get(rr.json, json_array_size(rr.json) - 2),
                     "choices.0.finish_reason"), "stop"), "completion finish");
    free(content);
    run_free(&rr);

    /* length: the engine ends it */
    free(e.ev);
    e = events_of("Hello", 0);
    rr = run(CMPL, "{\"prompt\":\"hi\",\"stream\":true}", e, 1, QWEN_FINISH_LENGTH);
    CHECK(streq(rr.finish, "length"), "length finish");
    run_free(&rr);
    free(e.ev);
}

static void
test_nonstream_bodies(void)
{
    events     e = events_of("Hello world, this is a test.", 1);
    run_result rr;

    rr = run(CHAT, "{" M "}", e, 3, QWEN_FINISH_STOP);
    CHECK(rr.out.len > 0 && rr.json != NULL, "body");
    CHECK(streq(jstr(rr.json, "id"), "chatcmpl-test1")
          && streq(jstr(rr.json, "object"), "chat.completion")
          && json_integer_value(jget(rr.json, "created")) == 1700000000
          && streq(jstr(rr.json, "model"), "qwen3"), "chat body head");
    CHECK(streq(jstr(rr.json, "choices.0.message.role"), "assistant")
          && streq(jstr(rr.json, "choices.0.message.content"), "Hello world, this is a test."),
          "message");
    CHECK(jget(rr.json, "choices.0.message.reasoning_content") == NULL
          && jget(rr.json, "choices.0.message.tool_calls") == NULL, "no empty extras");
    CHECK(json_is_null(jget(rr.json, "choices.0.logprobs"))
          && streq(jstr(rr.json, "choices.0.finish_reason"), "stop"), "logprobs null, stop");
    CHECK(json_integer_value(jget(rr.json, "usage.completion_tokens")) == (json_int_t) e.n,
          "usage");
    run_free(&rr);

    rr = run(CMPL, "{\"prompt\":\"hi\"}", e, 1, QWEN_FINISH_STOP);
    CHECK(streq(jstr(rr.json, "object"), "text_completion")
          && streq(jstr(rr.json, "choices.0.text"), "Hello world, this is a test.")
          && streq(jstr(rr.json, "choices.0.finish_reason"), "stop")
          && json_integer_value(jget(rr.json, "choices.0.index")) == 0
          && json_is_null(jget(rr.json, "choices.0.logprobs"))
          && json_is_object(jget(rr.json, "usage")), "completion body");
    run_free(&rr);
    free(e.ev);
}

/* A stop string whose bytes arrive over several tokens never leaks. */
/* usage.prompt_tokens_details.cached_tokens: the prompt tokens the
 * engine's prefix cache gave, in the body and in the streamed usage
 * chunk; 0 without a timing. */
static void
test_cached_usage(void)
{
    events              e = events_of("Hello world.", 1);
    qwen_request_timing t = { .queued_ms = 1.0, .first_token_ms = 20.0, .total_ms = 40.0,
                              .n_cached = 2 };
    run_result          rr;
    json_t             *last;

    rr = run_t(CHAT, "{" M "}", e, 1, QWEN_FINISH_STOP, &t);
    CHECK(rr.n_prompt > 2 && json_integer_value(jget(rr.json, "usage.prompt_tokens"))
                                 == (json_int_t) rr.n_prompt
          && json_integer_value(jget(rr.json, "usage.prompt_tokens_details.cached_tokens"))
             == 2, "body: cached_tokens 2 of %zu prompt tokens", rr.n_prompt);
    run_free(&rr);
    rr = run_t(CHAT, "{" M ",\"stream\":true,\"stream_options\":{\"include_usage\":true}}", e,
               1, QWEN_FINISH_STOP, &t);
    last = json_array_get(rr.json, json_array_size(rr.json) - 1);
    CHECK(json_integer_value(jget(last, "usage.prompt_tokens_details.cached_tokens")) == 2,
          "stream: cached_tokens in the usage chunk");
    run_free(&rr);
    rr = run_t(CMPL, "{\"prompt\":\"hi\"}", e, 1, QWEN_FINISH_STOP, NULL);
    CHECK(jget(rr.json, "usage.prompt_tokens_details.cached_tokens") != NULL
          && json_integer_value(jget(rr.json, "usage.prompt_tokens_details.cached_tokens")) == 0,
          "completions: cached_tokens 0 without a timing");
    run_free(&rr);
    free(e.ev);
}

static void
test_stop_strings(void)
{
    const char *text = "The quick brown fox jumps over the lazy dog.";
    events      e = events_of(text, 1);
    run_result  rr;
    char       *content;
    qwen_tokens t = toks("brown fox jumps");

    CHECK(t.n >= 3, "the stop string spans %zu tokens", t.n);
    qwen_tokens_free(&t);
    /* the stop string begins and ends inside tokens: " brown fox ju" */
    rr = run(CHAT, "{" M ",\"stream\":true,\"stop\":[\"nothing\",\"rown fox ju\"]}", e, 1,
             QWEN_FINISH_LENGTH);
    content = concat_deltas(rr.json, "content");
    CHECK(streq(content, "The quick b"), "text before the stop string only: '%s'", content);
    CHECK(strstr(rr.out.data, "rown") == NULL, "no byte of the stop string leaks");
    CHECK(rr.ended_at > 0 && rr.ended_at < e.n, "reported at the token completing it (%zu)",
          rr.ended_at);
    CHECK(streq(rr.finish, "stop"), "finish stop after a stop string: %s", rr.finish);
    CHECK(streq(jstr(json_array_get(rr.json, json_array_size(rr.json) - 1),
                     "choices.0.finish_reason"), "stop"), "stop in the stream");
    free(content);
    run_free(&rr);

    /* non-stream and completions, single-string stop */
    rr = run(CMPL, "{\"prompt\":\"x\",\"stop\":\"lazy\"}", e, 4, QWEN_FINISH_LENGTH);
    CHECK(streq(jstr(rr.json, "choices.0.text"), "The quick brown fox jumps over the "),
          "completion cut: '%s'", jstr(rr.json, "choices.0.text"));
    CHECK(streq(jstr(rr.json, "choices.0.finish_reason"), "stop"), "stop");
    run_free(&rr);

    /* the earliest of two matches wins */
    rr = run(CMPL, "{\"prompt\":\"x\",\"stop\":[\"dog\",\"quick\"]}", e, 100, QWEN_FINISH_LENGTH);
    CHECK(streq(jstr(rr.json, "choices.0.text"), "The "), "earliest stop: '%s'",
          jstr(rr.json, "choices.0.text"));
    run_free(&rr);

    /* held back text that never completed a stop string is released */
    rr = run(CHAT, "{" M ",\"stream\":true,\"stop\":[\"dog!!!\"]}", e, 1, QWEN_FINISH_STOP);
    content = concat_deltas(rr.json, "content");
    CHECK(streq(content, text), "held text released at the end: '%s'", content);
    CHECK(streq(rr.finish, "stop"), "EOG: stop");
    free(content);
    run_free(&rr);
    free(e.ev);
    e = events_of(text, 0);
    rr = run(CHAT, "{" M ",\"stop\":[\"dog.?\"]}", e, 1, QWEN_FINISH_LENGTH);
    CHECK(streq(jstr(rr.json, "choices.0.message.content"), text), "released (length): '%s'",
          jstr(rr.json, "choices.0.message.content"));
    CHECK(streq(jstr(rr.json, "choices.0.finish_reason"), "length"), "length");
    run_free(&rr);

    /* while held, nothing of a possible stop prefix is sent */
    {
        qp_error     err;
        qp_request  *req = parse(CHAT, "{" M ",\"stream\":true,\"stop\":\"fox jumps!\"}", &err);
        qp_response *r = qp_response_new(req, tok, &cfg, "c", 1);
        qp_buf       out = { 0 };
        size_t       i;
        qwen_tokens  upto = toks("The quick brown fox jumps");

        /* " fox" and " jumps" may begin "fox jumps!"; " over" rules it out */
        for (i = 0; i < e.n; i++) {
            qp_response_tokens(r, &e.ev[i], 1, &out);
            if (i + 1 < upto.n) {
                CHECK(strstr(out.data ? out.data : "", "fox") == NULL,
                      "'fox' held back while it may begin the stop string (token %zu)", i);
            }
            if (i == upto.n) {
                CHECK(strstr(out.data, "fox jumps over") != NULL, "released at ' over'");
            }
        }
        qwen_tokens_free(&upto);
        qp_response_finish(r, QWEN_FINISH_LENGTH, NULL, &out);
        CHECK(strstr(out.data, "fox jumps over") != NULL, "then released");
        qp_buf_free(&out);
        qp_response_free(r);
        qp_request_free(req);
    }
    free(e.ev);
}

static void
test_ignore_eos(void)
{
    events     a = events_of("Hi", 1), b = events_of(" there", 1), e;
    run_result rr;

    e.n = a.n + b.n;
    e.ev = calloc(e.n, sizeof(*e.ev));
    memcpy(e.ev, a.ev, a.n * sizeof(*e.ev));
    memcpy(e.ev + a.n, b.ev, b.n * sizeof(*e.ev));
    rr = run(CMPL, "{\"prompt\":\"x\",\"ignore_eos\":true}", e, 1, QWEN_FINISH_LENGTH);
    CHECK(rr.ended_at == 0 && streq(jstr(rr.json, "choices.0.text"), "Hi there")
          && streq(jstr(rr.json, "choices.0.finish_reason"), "length"),
          "ignore_eos: EOG skipped, not the end: '%s'", jstr(rr.json, "choices.0.text"));
    CHECK(rr.completion_tokens == e.n, "every token counted");
    run_free(&rr);
    free(a.ev);
    free(b.ev);
    free(e.ev);
}

static void
test_utf8(void)
{
    const char *text = "caf\xc3\xa9 \xf0\x9f\x98\x80 \xe4\xbd\xa0\xe5\xa5\xbd";  /* café 😀 你好 */
    events      e = events_of(text, 1);
    run_result  rr;
    char       *content;

    rr = run(CHAT, "{" M ",\"stream\":true}", e, 1, QWEN_FINISH_STOP);
    content = concat_deltas(rr.json, "content");
    CHECK(streq(content, text), "multi-byte characters split over tokens: '%s'", content);
    CHECK(strstr(rr.out.data, "\\ufffd") == NULL, "no replacement characters");
    free(content);
    run_free(&rr);
    free(e.ev);

    /* the answer ends inside a character: U+FFFD */
    e = events_of("\xf0\x9f\x98\x80", 0);
    if (e.n >= 2) {
        e.n--;
        rr = run(CMPL, "{\"prompt\":\"x\"}", e, 1, QWEN_FINISH_LENGTH);
        CHECK(streq(jstr(rr.json, "choices.0.text"), "\xef\xbf\xbd"), "cut char: '%s'",
              jstr(rr.json, "choices.0.text"));
        run_free(&rr);
    }
    free(e.ev);
}

static void
test_thinking(void)
{
    const char *text = "<think>\nLet me think.\nTwo lines.\n\n</think>\n\nThe answer is 4.";
    events      e = events_of(text, 1);
    run_result  rr;
    char       *content, *reasoning;
    qp_config   saved = cfg;

    CHECK(e.n > 4 && e.ev[0].token == 151667, "<think> is one token");
    rr = run(CHAT, "{" M "}", e, 1, QWEN_FINISH_STOP);
    CHECK(streq(jstr(rr.json, "choices.0.message.reasoning_content"),
                "Let me think.\nTwo lines."), "reasoning: '%s'",
          jstr(rr.json, "choices.0.message.reasoning_content"));
    CHECK(streq(jstr(rr.json, "choices.0.message.content"), "The answer is 4."),
          "content: '%s'", jstr(rr.json, "choices.0.message.content"));
    CHECK(json_integer_value(jget(rr.json, "usage.completion_tokens_details.reasoning_tokens")) > 3,
          "reasoning tokens counted");
    run_free(&rr);

    /* streamed, one token at a time and all at once */
    rr = run(CHAT, "{" M ",\"stream\":true}", e, 1, QWEN_FINISH_STOP);
    content = concat_deltas(rr.json, "content");
    reasoning = concat_deltas(rr.json, "reasoning_content");
    CHECK(streq(reasoning, "Let me think.\nTwo lines."), "stream reasoning '%s'", reasoning);
    CHECK(streq(content, "The answer is 4."), "stream content '%s'", content);
    CHECK(strstr(rr.out.data, "think>") == NULL, "no think tags in the stream");
    free(content);
    free(reasoning);
    run_free(&rr);

    cfg.reasoning_field = 1;
    rr = run(CHAT, "{" M ",\"stream\":true}", e, 64, QWEN_FINISH_STOP);
    content = concat_deltas(rr.json, "content");
    reasoning = concat_deltas(rr.json, "reasoning");
    CHECK(streq(reasoning, "Let me think.\nTwo lines.") && streq(content, "The answer is 4."),
          "\"reasoning\" field: '%s' / '%s'", reasoning, content);
    free(content);
    free(reasoning);
    run_free(&rr);
    rr = run(CHAT, "{" M "}", e, 64, QWEN_FINISH_STOP);
    CHECK(streq(jstr(rr.json, "choices.0.message.reasoning"), "Let me think.\nTwo lines."),
          "\"reasoning\" in the body");
    run_free(&rr);
    cfg = saved;

    /* thinking off: everything is content (the template closed the block) */
    free(e.ev);
    e = events_of("Just the answer.\n", 1);
    rr = run(CHAT, "{" M ",\"chat_template_kwargs\":{\"enable_thinking\":false}}", e, 1,
             QWEN_FINISH_STOP);
    CHECK(streq(jstr(rr.json, "choices.0.message.content"), "Just the answer.\n")
          && jget(rr.json, "choices.0.message.reasoning_content") == NULL, "no thinking");
    run_free(&rr);
    free(e.ev);

    /* /no_think answers: an empty block gives no reasoning field */
    e = events_of("<think>\n\n</think>\n\nShort.", 1);
    rr = run(CHAT, "{" M "}", e, 1, QWEN_FINISH_STOP);
    CHECK(jget(rr.json, "choices.0.message.reasoning_content") == NULL
          && streq(jstr(rr.json, "choices.0.message.content"), "Short."), "empty think block");
    run_free(&rr);
    free(e.ev);

    /* cut off while thinking: reasoning only, length */
    e = events_of("<think>\nStill thinking\n", 0);
    rr = run(CHAT, "{" M "}", e, 1, QWEN_FINISH_LENGTH);
    CHECK(streq(jstr(rr.json, "choices.0.message.reasoning_content"), "Still thinking")
          && streq(jstr(rr.json, "choices.0.message.content"), "")
          && streq(jstr(rr.json, "choices.0.finish_reason"), "length"), "cut while thinking");
    run_free(&rr);
    free(e.ev);

    /* completions never split thinking */
    e = events_of("<think>\nx\n</think>\n\ny", 1);
    rr = run(CMPL, "{\"prompt\":\"p\"}", e, 1, QWEN_FINISH_STOP);
    CHECK(streq(jstr(rr.json, "choices.0.text"), "<think>\nx\n</think>\n\ny"),
          "completions text raw: '%s'", jstr(rr.json, "choices.0.text"));
    run_free(&rr);
    free(e.ev);
}


/* thinking_budget (top level, chat_template_kwargs) into the engine's
 * parameters with the closing text; no effect without thinking; 400s that
 * name the field; the forced text read as reasoning; the repetition guard
 * reported as "length". */
static void
test_thinking_budget(void)
{
    qp_config   saved = cfg;
    events      e;
    run_result  rr;
    char       *reasoning, *content;

#define BUDGET(api, body, budget, guard) check_budget(__LINE__, api, body, budget, guard)
    BUDGET(CHAT, "{" M "}", -1, 8);
    BUDGET(CHAT, "{" M ",\"thinking_budget\":7}", 7, 8);
    BUDGET(CHAT, "{" M ",\"thinking_budget\":0}", 0, 8);
    BUDGET(CHAT, "{" M ",\"thinking_budget\":64.0}", 64, 8);
    BUDGET(CHAT, "{" M ",\"thinking_budget\":null}", -1, 8);
    BUDGET(CHAT, "{" M ",\"thinking_budget\":100000000000}", QP_THINKING_BUDGET_MAX, 8);
    BUDGET(CHAT, "{" M ",\"chat_template_kwargs\":{\"thinking_budget\":3}}", 3, 8);
    BUDGET(CHAT, "{" M ",\"thinking_budget\":9,\"chat_template_kwargs\":"
                 "{\"thinking_budget\":3}}", 3, 8);
    BUDGET(CHAT, "{" M ",\"thinking_budget\":9,\"chat_template_kwargs\":"
                 "{\"enable_thinking\":true}}", 9, 8);
    /* thinking off: nothing to budget */
    BUDGET(CHAT, "{" M ",\"thinking_budget\":5,\"chat_template_kwargs\":"
                 "{\"enable_thinking\":false}}", -1, 8);
    BUDGET(CHAT, "{" M ",\"thinking_budget\":5,\"reasoning_effort\":\"none\"}", -1, 8);
    BUDGET(CMPL, "{\"prompt\":\"hi\",\"thinking_budget\":5}", -1, 8);
    /* with structured output the grammar starts after the forced </think> */
    check_grammar("budget and response_format", 0, CHAT,
                  "{" M ",\"thinking_budget\":2,\"response_format\":{\"type\":\"json_object\"}}",
                  1, "{\"a\": 1}");
    BUDGET(CHAT, "{" M ",\"thinking_budget\":2,\"response_format\":{\"type\":\"json_object\"}}",
           2, 8);
    /* the configured defaults, and a request's -1 */
    cfg.thinking_budget = 5;
    cfg.repetition_guard = 0;
    BUDGET(CHAT, "{" M "}", 5, 0);
    BUDGET(CHAT, "{" M ",\"thinking_budget\":-1}", -1, 0);
    BUDGET(CHAT, "{" M ",\"chat_template_kwargs\":{\"thinking_budget\":-1}}", -1, 0);
    BUDGET(CHAT, "{" M ",\"enable_thinking\":false}", -1, 0);
    cfg.repetition_guard = 12;
    BUDGET(CMPL, "{\"prompt\":\"hi\"}", -1, 12);
    cfg = saved;
#undef BUDGET
    EXPECT_ERR(CHAT, "{" M ",\"thinking_budget\":\"5\"}", 400, "thinking_budget", NULL,
               "integer");
    EXPECT_ERR(CHAT, "{" M ",\"thinking_budget\":1.5}", 400, "thinking_budget", NULL, NULL);
    EXPECT_ERR(CHAT, "{" M ",\"thinking_budget\":true}", 400, "thinking_budget", NULL, NULL);
    EXPECT_ERR(CHAT, "{" M ",\"thinking_budget\":-2}", 400, "thinking_budget", NULL,
               "-1 for no budget");
    EXPECT_ERR(CHAT, "{" M ",\"chat_template_kwargs\":{\"thinking_budget\":\"x\"}}", 400,
               "chat_template_kwargs.thinking_budget", NULL, NULL);
    EXPECT_ERR(CHAT, "{" M ",\"chat_template_kwargs\":{\"thinking_budget\":-7}}", 400,
               "chat_template_kwargs.thinking_budget", NULL, "not -7");
    EXPECT_ERR(CMPL, "{\"prompt\":\"hi\",\"thinking_budget\":[]}", 400, "thinking_budget",
               NULL, NULL);

    /* what the engine generates past the budget: the sentence ends the
     * reasoning, the answer follows as content */
    e = events_of("<think>\nHmm, five tokens" QP_THINK_CLOSE_TEXT "The answer.", 1);
    rr = run(CHAT, "{" M ",\"thinking_budget\":5}", e, 1, QWEN_FINISH_STOP);
    CHECK(streq(jstr(rr.json, "choices.0.message.reasoning_content"),
                "Hmm, five tokens\n\nConsidering the limited time by the user, I have to give "
                "the solution based on the thinking directly now."),
          "reasoning: '%s'", jstr(rr.json, "choices.0.message.reasoning_content"));
    CHECK(streq(jstr(rr.json, "choices.0.message.content"), "The answer."), "content: '%s'",
          jstr(rr.json, "choices.0.message.content"));
    run_free(&rr);
    rr = run(CHAT, "{" M ",\"thinking_budget\":5,\"stream\":true}", e, 1, QWEN_FINISH_STOP);
    reasoning = concat_deltas(rr.json, "reasoning_content");
    content = concat_deltas(rr.json, "content");
    CHECK(strstr(reasoning, "directly now.") != NULL && streq(content, "The answer."),
          "streamed: '%s' / '%s'", reasoning, content);
    free(reasoning);
    free(content);
    run_free(&rr);
    free(e.ev);

    /* the repetition guard's end reads "length" */
    e = events_of("again again again", 0);
    rr = run(CHAT, "{" M "}", e, 1, QWEN_FINISH_REPETITION);
    CHECK(streq(jstr(rr.json, "choices.0.finish_reason"), "length")
          && streq(rr.finish, "length"), "repetition: finish_reason %s",
          jstr(rr.json, "choices.0.finish_reason"));
    run_free(&rr);
    rr = run(CMPL, "{\"prompt\":\"x\",\"stream\":true}", e, 1, QWEN_FINISH_REPETITION);
    CHECK(streq(rr.finish, "length") && rr.out.data != NULL
          && strstr(rr.out.data, "\"finish_reason\":\"length\"") != NULL,
          "streamed repetition: length");
    run_free(&rr);
    free(e.ev);
}

#define TOOLS ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"," \
              "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}}}]"

static void
test_tool_calls(void)
{
    const char *text = "Let me check.\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
                       "{\"city\": \"Paris\", \"days\": 2.5}}\n</tool_call>\n<tool_call>\n"
                       "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Nice\"}}\n"
                       "</tool_call>";
    events      e = events_of(text, 1);
    run_result  rr;
    json_t     *calls, *args;
    size_t      i;
    int         n_tool_chunks = 0;
    char       *content;

    rr = run(CHAT, "{" M TOOLS ",\"chat_template_kwargs\":{\"enable_thinking\":false}}", e, 1,
             QWEN_FINISH_STOP);
    calls = jget(rr.json, "choices.0.message.tool_calls");
    CHECK(json_array_size(calls) == 2, "two tool calls");
    CHECK(streq(jstr(calls, "0.type"), "function")
          && streq(jstr(calls, "0.function.name"), "get_weather")
          && strncmp(jstr(calls, "0.id") ? jstr(calls, "0.id") : "", "call_", 5) == 0,
          "tool call shape");
    CHECK(!streq(jstr(calls, "0.id"), jstr(calls, "1.id")), "distinct ids");
    args = json_loads(jstr(calls, "0.function.arguments") ? jstr(calls, "0.function.arguments")
                      : "", 0, NULL);
    CHECK(streq(jstr(args, "city"), "Paris") && json_real_value(json_object_get(args, "days")) == 2.5,
          "arguments is a JSON string: %s", jstr(calls, "0.function.arguments"));
    CHECK(streq(jstr(calls, "0.function.arguments"), "{\"city\":\"Paris\",\"days\":2.5}"),
          "arguments text %s", jstr(calls, "0.function.arguments"));
    json_decref(args);
    CHECK(streq(jstr(rr.json, "choices.0.message.content"), "Let me check."), "content '%s'",
          jstr(rr.json, "choices.0.message.content"));
    CHECK(streq(jstr(rr.json, "choices.0.finish_reason"), "tool_calls"), "finish tool_calls");
    run_free(&rr);

    rr = run(CHAT, "{" M TOOLS ",\"stream\":true}", e, 1, QWEN_FINISH_STOP);
    for (i = 0; i < json_array_size(rr.json); i++) {
        json_t *tc = jget(json_array_get(rr.json, i), "choices.0.delta.tool_calls");

        if (tc != NULL) {
            CHECK(json_integer_value(jget(tc, "0.index")) == n_tool_chunks
                  && streq(jstr(tc, "0.function.name"), "get_weather")
                  && json_is_string(jget(tc, "0.function.arguments")), "tool_calls delta");
            n_tool_chunks++;
        }
    }
    CHECK(n_tool_chunks == 2, "two tool_calls deltas");
    content = concat_deltas(rr.json, "content");
    CHECK(streq(content, "Let me check."), "streamed content '%s'", content);
    CHECK(strstr(rr.out.data, "tool_call>") == NULL, "no tags in the stream");
    CHECK(streq(jstr(json_array_get(rr.json, json_array_size(rr.json) - 1),
                     "choices.0.finish_reason"), "tool_calls"), "stream finish tool_calls");
    free(content);
    run_free(&rr);

    /* without tools in the request the text stays text */
    rr = run(CHAT, "{" M "}", e, 1, QWEN_FINISH_STOP);
    CHECK(jget(rr.json, "choices.0.message.tool_calls") == NULL
          && strstr(jstr(rr.json, "choices.0.message.content"), "<tool_call>") != NULL
          && streq(jstr(rr.json, "choices.0.finish_reason"), "stop"), "no tools: plain text");
    run_free(&rr);
    free(e.ev);

    /* a broken call is returned as content */
    e = events_of("<tool_call>\n{\"name\": broken}\n</tool_call>", 1);
    rr = run(CHAT, "{" M TOOLS "}", e, 1, QWEN_FINISH_STOP);
    CHECK(jget(rr.json, "choices.0.message.tool_calls") == NULL
          && streq(jstr(rr.json, "choices.0.message.content"),
                   "<tool_call>\n{\"name\": broken}\n</tool_call>")
          && streq(jstr(rr.json, "choices.0.finish_reason"), "stop"), "broken call: '%s'",
          jstr(rr.json, "choices.0.message.content"));
    run_free(&rr);
    free(e.ev);

    /* a broken call keeps the whitespace before it */
    e = events_of("Text.\n\n<tool_call>\nnot json\n</tool_call>", 1);
    rr = run(CHAT, "{" M TOOLS ",\"stream\":true}", e, 1, QWEN_FINISH_STOP);
    content = concat_deltas(rr.json, "content");
    CHECK(streq(content, "Text.\n\n<tool_call>\nnot json\n</tool_call>"), "broken call text '%s'",
          content);
    free(content);
    run_free(&rr);
    free(e.ev);

    /* cut inside a call that is complete JSON: still a call; else text */
    e = events_of("<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}", 0);
    rr = run(CHAT, "{" M TOOLS "}", e, 1, QWEN_FINISH_LENGTH);
    CHECK(streq(jstr(rr.json, "choices.0.message.tool_calls.0.function.arguments"), "{\"a\":1}")
          && streq(jstr(rr.json, "choices.0.finish_reason"), "length"), "unclosed call parsed");
    run_free(&rr);
    free(e.ev);
    e = events_of("<tool_call>\n{\"name\": \"f\", \"argu", 0);
    rr = run(CHAT, "{" M TOOLS "}", e, 1, QWEN_FINISH_LENGTH);
    CHECK(streq(jstr(rr.json, "choices.0.message.content"), "<tool_call>\n{\"name\": \"f\", \"argu"),
          "unfinished call text '%s'", jstr(rr.json, "choices.0.message.content"));
    run_free(&rr);
    free(e.ev);

    /* thinking, then a call */
    e = events_of("<think>\nNeed weather.\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", "
                  "\"arguments\": {}}\n</tool_call>", 1);
    rr = run(CHAT, "{" M TOOLS "}", e, 1, QWEN_FINISH_STOP);
    CHECK(streq(jstr(rr.json, "choices.0.message.reasoning_content"), "Need weather.")
          && json_is_null(jget(rr.json, "choices.0.message.content"))
          && streq(jstr(rr.json, "choices.0.message.tool_calls.0.function.arguments"), "{}"),
          "think + call, content null");
    run_free(&rr);
    free(e.ev);
}

static void
test_logprobs(void)
{
    events     e = events_of("Hello caf\xc3\xa9", 1);
    run_result rr;
    json_t    *content, *item, *lp;
    size_t     i, j, n_items = 0;
    size_t     len;
    const char *bytes;

    /* chat, non-stream */
    rr = run(CHAT, "{" M ",\"logprobs\":true,\"top_logprobs\":2}", e, 1, QWEN_FINISH_STOP);
    content = jget(rr.json, "choices.0.logprobs.content");
    CHECK(json_array_size(content) == e.n - 1, "one entry per token, EOG excluded: %zu",
          json_array_size(content));
    for (i = 0; i < json_array_size(content); i++) {
        item = json_array_get(content, i);
        CHECK(json_is_string(json_object_get(item, "token"))
              && json_is_array(json_object_get(item, "bytes"))
              && json_array_size(json_object_get(item, "top_logprobs")) == 2, "item %zu shape", i);
        CHECK(fabs(json_number_value(json_object_get(item, "logprob")) - e.ev[i].logprob) < 1e-6,
              "logprob %zu", i);
        bytes = qwen_token_bytes(tok, e.ev[i].token, &len);
        CHECK(json_array_size(json_object_get(item, "bytes")) == len, "bytes length %zu", i);
        for (j = 0; j < len; j++) {
            CHECK(json_integer_value(json_array_get(json_object_get(item, "bytes"), j))
                  == (unsigned char) bytes[j], "byte value");
        }
        CHECK(json_is_string(jget(item, "top_logprobs.1.token"))
              && fabs(json_number_value(jget(item, "top_logprobs.1.logprob"))
                      - e.ev[i].top_logprobs[1]) < 1e-6
              && json_is_array(jget(item, "top_logprobs.1.bytes")), "top entry %zu", i);
    }
    run_free(&rr);

    /* chat, streamed: entries spread over chunks add up to all tokens */
    rr = run(CHAT, "{" M ",\"stream\":true,\"logprobs\":true}", e, 1, QWEN_FINISH_STOP);
    for (i = 0; i < json_array_size(rr.json); i++) {
        lp = jget(json_array_get(rr.json, i), "choices.0.logprobs.content");
        for (j = 0; j < json_array_size(lp); j++) {
            CHECK(json_array_size(jget(json_array_get(lp, j), "top_logprobs")) == 0,
                  "top_logprobs [] when not asked");
        }
        n_items += json_array_size(lp);
    }
    CHECK(n_items == e.n - 1, "streamed logprob entries %zu", n_items);
    run_free(&rr);

    /* completions, legacy shape */
    rr = run(CMPL, "{\"prompt\":\"x\",\"logprobs\":3}", e, 2, QWEN_FINISH_STOP);
    lp = jget(rr.json, "choices.0.logprobs");
    CHECK(json_array_size(json_object_get(lp, "tokens")) == e.n - 1
          && json_array_size(json_object_get(lp, "token_logprobs")) == e.n - 1
          && json_array_size(json_object_get(lp, "top_logprobs")) == e.n - 1
          && json_array_size(json_object_get(lp, "text_offset")) == e.n - 1, "legacy arrays");
    CHECK(json_integer_value(jget(lp, "text_offset.0")) == 0
          && json_integer_value(jget(lp, "text_offset.1")) == 5, "text offsets (Hello| caf)");
    CHECK(json_object_size(jget(lp, "top_logprobs.0")) >= 1
          && json_object_size(jget(lp, "top_logprobs.0")) <= 3, "top map size");
    CHECK(streq(jstr(lp, "tokens.0"), "Hello"), "token text '%s'", jstr(lp, "tokens.0"));
    CHECK(fabs(json_number_value(jget(lp, "token_logprobs.0")) + 0.1) < 1e-6, "token logprob");
    run_free(&rr);

    rr = run(CMPL, "{\"prompt\":\"x\",\"logprobs\":0,\"stream\":true}", e, 1, QWEN_FINISH_STOP);
    n_items = 0;
    for (i = 0; i < json_array_size(rr.json); i++) {
        lp = jget(json_array_get(rr.json, i), "choices.0.logprobs");
        if (json_is_object(lp)) {
            n_items += json_array_size(json_object_get(lp, "tokens"));
            CHECK(json_object_size(jget(lp, "top_logprobs.0")) == 1, "logprobs 0: chosen only");
        }
    }
    CHECK(n_items == e.n - 1, "streamed legacy entries %zu", n_items);
    run_free(&rr);
    free(e.ev);

    /* a token that is not valid UTF-8 alone: token text U+FFFD, exact bytes */
    {
        qwen_token_event ev[2];
        int32_t          id = -1;
        qp_error         err;
        qp_request      *req = parse(CHAT, "{" M ",\"logprobs\":true}", &err);
        qp_response     *r = qp_response_new(req, tok, &cfg, "x", 1);
        qp_buf           out = { 0 };
        json_t          *v;

        /* the token of the lone byte 0xE4 (a lead byte without its tail) */
        id = qwen_token_id(tok, "\xe4", 1);
        memset(ev, 0, sizeof(ev));
        ev[0].token = id;
        ev[0].logprob = -1.5f;
        ev[1].token = EOG_IM_END;
        CHECK(id >= 0, "byte token id");
        bytes = qwen_token_bytes(tok, id, &len);
        CHECK(bytes != NULL && len == 1 && (unsigned char) bytes[0] == 0xe4, "raw byte 0xE4");
        qp_response_tokens(r, ev, 2, &out);
        qp_response_finish(r, QWEN_FINISH_STOP, NULL, &out);
        v = body_json(&out);
        CHECK(streq(jstr(v, "choices.0.logprobs.content.0.token"), "\xef\xbf\xbd")
              && json_integer_value(jget(v, "choices.0.logprobs.content.0.bytes.0")) == 0xe4,
              "lossy token, exact bytes: %s", out.data);
        CHECK(streq(jstr(v, "choices.0.message.content"), "\xef\xbf\xbd"), "content U+FFFD");
        json_decref(v);
        qp_buf_free(&out);
        qp_response_free(r);
        qp_request_free(req);
    }
}

static void
test_response_errors(void)
{
    qp_error     err;
    qp_request  *req = parse(CHAT, "{" M ",\"stream\":true}", &err);
    qp_response *r = qp_response_new(req, tok, &cfg, "chatcmpl-e", 1);
    qp_buf       out = { 0 };
    events       e = events_of("Hi", 0);
    json_t      *v;

    qp_response_tokens(r, e.ev, e.n, &out);
    qp_buf_reset(&out);
    CHECK(qp_response_error(r, 500, NULL, "engine failed", &out) == 0, "stream error");
    CHECK(strncmp(out.data, "data: {\"error\":", 15) == 0
          && out.len > 2 && strcmp(out.data + out.len - 2, "\n\n") == 0, "error event: %s",
          out.data);
    v = json_loads(out.data + 6, JSON_DISABLE_EOF_CHECK, NULL);
    CHECK(streq(jstr(v, "error.message"), "engine failed")
          && streq(jstr(v, "error.type"), "server_error"), "error event body");
    json_decref(v);
    CHECK(streq(qp_response_finish_reason(r), "error"), "finish reason error");
    qp_buf_free(&out);
    qp_response_free(r);
    qp_request_free(req);

    req = parse(CMPL, "{\"prompt\":\"x\"}", &err);
    r = qp_response_new(req, tok, &cfg, "cmpl-e", 1);
    CHECK(qp_response_finish_reason(r) == NULL, "NULL until finished");
    CHECK(qp_response_error(r, 503, NULL, "shutting down", &out) == 0, "body error");
    v = body_json(&out);
    CHECK(streq(jstr(v, "error.type"), "overloaded_error"), "body error type");
    json_decref(v);
    qp_buf_free(&out);
    qp_response_free(r);
    qp_request_free(req);

    /* no tokens at all: a stream still has role chunk, final chunk, [DONE] */
    req = parse(CHAT, "{" M ",\"stream\":true}", &err);
    r = qp_response_new(req, tok, &cfg, "chatcmpl-0", 1);
    CHECK(qp_response_finish(r, QWEN_FINISH_LENGTH, NULL, &out) == 0, "empty finish");
    {
        int     done;
        json_t *arr = sse_events(out.data, out.len, &done);

        CHECK(done && json_array_size(arr) == 2, "role + final chunks");
        json_decref(arr);
    }
    CHECK(qp_response_tokens(r, e.ev, 1, &out) == 1, "tokens after the end are refused");
    qp_buf_free(&out);
    qp_response_free(r);
    qp_request_free(req);
    free(e.ev);
}

/*
 * End to end with the engine: a greedy /v1/completions request on token ids
 * with logprobs gives the tokens and probabilities of the raw-logit softmax
 * that `qwen logits` prints (computed here with qwen_forward directly).
 */
#define E2E_STEPS 6
#define E2E_TOP   5

static int
e2e_reference(const int32_t *ids, int n, int32_t *out_ids, float *out_lp,
              int32_t top_ids[][E2E_TOP], float top_lp[][E2E_TOP])
{
    qwen_ctx_params   cp = qwen_ctx_default_params();
    cp.n_threads = 1;
    cp.n_seqs = 1;
    cp.n_ctx = 64;
    cp.n_batch = 64;
    char              msg[QWEN_ERR_LEN];
    qwen_ctx         *ctx = qwen_ctx_new(model, &cp, msg, sizeof(msg));
    int               vocab = qwen_model_config(model)->vocab_size, i, j, step, rc = -1;
    float            *logits = malloc((size_t) vocab * sizeof(float));
    qwen_batch_entry  b[64];

    if (ctx == NULL || logits == NULL) {
        goto done;
    }
    memset(b, 0, sizeof(b));
    for (i = 0; i < n; i++) {
        b[i].token = ids[i];
        b[i].pos = i;
        b[i].want_logits = i == n - 1;
        b[i].prompt = 1;
    }
    if (qwen_forward(ctx, b, n, logits, msg, sizeof(msg)) != 0) {
        goto done;
    }
    for (step = 0; step < E2E_STEPS; step++) {
        double mx = logits[qwen_argmax(logits, vocab)], sum = 0.0, lse;

        for (i = 0; i < vocab; i++) {
            sum += exp((double) logits[i] - mx);
        }
        lse = mx + log(sum);
        for (j = 0; j < E2E_TOP; j++) {
            int best = -1, t, taken;

            for (i = 0; i < vocab; i++) {
                for (taken = 0, t = 0; t < j; t++) {
                    taken |= top_ids[step][t] == i;
                }
                if (!taken && (best < 0 || logits[i] > logits[best])) {
                    best = i;
                }
            }
            top_ids[step][j] = best;
            top_lp[step][j] = (float) (logits[best] - lse);
        }
        out_ids[step] = top_ids[step][0];
        out_lp[step] = top_lp[step][0];
        memset(b, 0, sizeof(b));
        b[0].token = out_ids[step];
        b[0].pos = n + step;
        b[0].want_logits = 1;
        if (qwen_forward(ctx, b, 1, logits, msg, sizeof(msg)) != 0) {
            goto done;
        }
    }
    rc = 0;
done:
    if (rc != 0) {
        fprintf(stderr, "reference: %s\n", msg);
    }
    free(logits);
    qwen_ctx_free(ctx);
    return rc;
}

static void
test_engine_logprobs(void)
{
    static const int32_t ids[] = { 9707, 11, 1879, 0, 576, 3974, 13876, 38835 };
    int32_t              ref_ids[E2E_STEPS], ref_top[E2E_STEPS][E2E_TOP];
    float                ref_lp[E2E_STEPS], ref_top_lp[E2E_STEPS][E2E_TOP];
    qwen_engine_params   ep = qwen_engine_default_params();
    ep.n_threads = 1;
    ep.n_slots = 1;
    ep.n_ctx = 64;
    ep.n_batch = 64;
    ep.max_queue = 4;
    char                 msg[QWEN_ERR_LEN], body[512];
    qwen_engine         *engine;
    qwen_request        *er = NULL;
    qp_request          *req;
    qp_response         *r;
    qp_error             err;
    qp_buf               out = { 0 };
    qwen_token_event     ev[16];
    qwen_finish     fin = QWEN_FINISH_NONE;
    json_t              *v, *lp;
    int                  i, j, spins = 0;
    size_t               n, got = 0;

    if (e2e_reference(ids, 8, ref_ids, ref_lp, ref_top, ref_top_lp) != 0) {
        CHECK(0, "reference forward pass");
        return;
    }
    snprintf(body, sizeof(body), "{\"prompt\":[9707,11,1879,0,576,3974,13876,38835],"
             "\"temperature\":0,\"max_tokens\":%d,\"logprobs\":%d,\"ignore_eos\":true}",
             E2E_STEPS, E2E_TOP);
    req = parse(CMPL, body, &err);
    CHECK(req != NULL, "parse: %s", err.body);
    engine = qwen_engine_new(model, &ep, msg, sizeof(msg));
    CHECK(engine != NULL, "engine: %s", msg);
    if (req == NULL || engine == NULL
        || qwen_submit(engine, qp_request_params(req), NULL, &er, msg, sizeof(msg)) != 0)
    {
        CHECK(0, "submit: %s", msg);
        qwen_engine_free(engine);
        qp_request_free(req);
        return;
    }
    r = qp_response_new(req, tok, &cfg, "cmpl-e2e", 1);
    while (fin == QWEN_FINISH_NONE && spins++ < 20000) {
        struct pollfd pfd = { qwen_engine_notify_fd(engine), POLLIN, 0 };
        uint64_t      x;

        if (poll(&pfd, 1, 10) > 0 && read(pfd.fd, &x, sizeof(x)) != sizeof(x)) {
            break;
        }
        while ((n = qwen_request_poll(er, ev, 16, &fin)) > 0) {
            got += n;
            CHECK(qp_response_tokens(r, ev, n, &out) == 0, "tokens");
        }
    }
    CHECK(fin == QWEN_FINISH_LENGTH && got == E2E_STEPS, "engine finished: %d, %zu tokens",
          (int) fin, got);
    CHECK(qp_response_finish(r, fin, NULL, &out) == 0, "finish");
    v = body_json(&out);
    lp = jget(v, "choices.0.logprobs");
    CHECK(json_array_size(json_object_get(lp, "token_logprobs")) == E2E_STEPS, "entries");
    for (i = 0; i < E2E_STEPS; i++) {
        size_t      len;
        const char *bytes = qwen_token_bytes(tok, ref_ids[i], &len);
        const char *tokstr = json_string_value(json_array_get(json_object_get(lp, "tokens"),
                                                              (size_t) i));
        double      got_lp = json_number_value(json_array_get(json_object_get(lp,
                                               "token_logprobs"), (size_t) i));
        json_t     *top = json_array_get(json_object_get(lp, "top_logprobs"), (size_t) i);

        CHECK(fabs(exp(got_lp) - exp(ref_lp[i])) < 1e-5, "step %d: p %g vs %g", i,
              exp(got_lp), exp(ref_lp[i]));
        /* the same text, or U+FFFD for a token that is no whole character */
        CHECK(bytes != NULL && tokstr != NULL
              && ((strlen(tokstr) == len && memcmp(tokstr, bytes, len) == 0)
                  || strstr(tokstr, "\xef\xbf\xbd") != NULL),
              "step %d: token '%s' is the greedy token %d", i, tokstr ? tokstr : "", ref_ids[i]);
        CHECK(json_object_size(top) >= 1 && json_object_size(top) <= E2E_TOP, "top map");
        for (j = 0; j < E2E_TOP; j++) {
            const char *ts = qwen_token_bytes(tok, ref_top[i][j], &len);
            char        key[256];
            json_t     *val;

            if (ts == NULL || len >= sizeof(key)) {
                continue;
            }
            memcpy(key, ts, len);
            key[len] = '\0';
            val = json_object_get(top, key);
            if (val != NULL && strlen(key) == len) {
                CHECK(fabs(exp(json_number_value(val)) - exp(ref_top_lp[i][j])) < 1e-5
                      || j > 0, "step %d top %d prob", i, j);
            }
        }
    }
    json_decref(v);
    qp_buf_free(&out);
    qp_response_free(r);
    qwen_request_release(er);
    qwen_engine_free(engine);
    qp_request_free(req);
}

int
main(void)
{
    if (test_model_load() == 0) {
        test_config_and_models();
        test_parse_errors();
        test_parse_params();
        test_logit_bias();
        test_draft_param();
        test_response_format();
        test_chat_prompt();
        test_stream_framing();
        test_nonstream_bodies();
        test_cached_usage();
        test_stop_strings();
        test_utf8();
        test_ignore_eos();
        test_thinking();
        test_thinking_budget();
        test_tool_calls();
        test_logprobs();
        test_response_errors();
        test_engine_logprobs();
        test_model_free();
    }
    TEST_MAIN_END();
}
