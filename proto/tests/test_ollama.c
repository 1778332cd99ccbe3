/*
 * test_ollama.c - Ollama's /api/chat and /api/generate on the tiny test
 * model's tokenizer: every parameter and error path, "load" answers, format
 * grammars, prompt ids, NDJSON framing and durations, thinking and its
 * budget, tool calls, stop strings, stream:false bodies and errors after
 * the stream began.
 */
#include "proto_test.h"

/* Ollama errors are {"error":".."}: no param, no code */
#define EXPECT_ERR(api, body, status, sub) \
    expect_err(__LINE__, api, body, status, NULL, NULL, sub)

/* ------------------------------------------------------------ helpers */

static const qwen_request_timing test_timing = { .queued_ms = 12.5, .first_token_ms = 80.25,
                                                .total_ms = 1000.125 };

/* One event per call, with test_timing. */
static run_result
run(qp_api api, const char *body, events e, qwen_finish reason)
{
    return run_t(api, body, e, 1, reason, &test_timing);
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
               "{\"a\":{\"$ref\":\"#/x\"}}}}", 400, "'$ref' \"#/x\" is not supported");
    /* logit_bias in options: OpenAI's form, checked as OpenAI's */
    EXPECT_ERR(OCHAT, "{" MSG ",\"options\":{\"logit_bias\":{\"x\":1}}}", 400,
               "options.logit_bias key \"x\" is not a token id");
    EXPECT_ERR(OCHAT, "{" MSG ",\"options\":{\"logit_bias\":{\"5\":101}}}", 400,
               "options.logit_bias[\"5\"] must be from -100 to 100");
    EXPECT_ERR(OCHAT, "{" MSG ",\"options\":{\"logit_bias\":[[5]]}}", 400,
               "options.logit_bias[0] must be [token id, bias or false]");
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
    EXPECT_ERR(OCHAT, "{\"model\":\"llama3\",\"messages\":[]}", 404, NULL);
    EXPECT_ERR(GEN, "{\"model\":\"qwen3\",\"prompt\":\"hi\",\"format\":\"xml\"}", 400, NULL);
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
        qp_api      api;
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
    size_t i;

    for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        check_grammar("format", i, ok[i].api, ok[i].body, ok[i].after_think, ok[i].sample);
    }
    check_no_grammar("format \"\"", OCHAT, "{" MSG ",\"format\":\"\"}");
    check_no_grammar("format null", OCHAT, "{" MSG ",\"format\":null}");
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
        qwen_request_timing t = { .queued_ms = 5, .first_token_ms = -1, .total_ms = 30 };
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

/* options.thinking_budget (or top-level thinking_budget) into the engine's
 * parameters, only with thinking on; 400s naming the field; the forced
 * closing text read as thinking; the repetition guard as done_reason
 * "length". */
static void
test_thinking_budget(void)
{
    qp_config   saved = cfg;
    events      e;
    run_result  rr;
    char       *s;

#define BUDGET(api, body, budget, guard) check_budget(__LINE__, api, body, budget, guard)
    BUDGET(OCHAT, "{" MSG "}", -1, 8);
    BUDGET(OCHAT, "{" MSG ",\"options\":{\"thinking_budget\":7}}", 7, 8);
    BUDGET(OCHAT, "{" MSG ",\"think\":true,\"options\":{\"thinking_budget\":0}}", 0, 8);
    BUDGET(OCHAT, "{" MSG ",\"thinking_budget\":9}", 9, 8);
    BUDGET(OCHAT, "{" MSG ",\"thinking_budget\":9,\"options\":{\"thinking_budget\":4}}", 4, 8);
    BUDGET(OCHAT, "{" MSG ",\"options\":{\"thinking_budget\":null,\"temperature\":0}}", -1, 8);
    BUDGET(GEN, "{\"prompt\":\"Hi\",\"options\":{\"thinking_budget\":3}}", 3, 8);
    BUDGET(GEN, "{\"prompt\":\"Hi\",\"options\":{\"thinking_budget\":3000000000}}",
           QP_THINKING_BUDGET_MAX, 8);
    /* thinking off, or a raw prompt: nothing to budget */
    BUDGET(OCHAT, "{" MSG ",\"think\":false,\"options\":{\"thinking_budget\":7}}", -1, 8);
    BUDGET(GEN, "{\"prompt\":\"Hi\",\"raw\":true,\"options\":{\"thinking_budget\":3}}", -1, 8);
    cfg.thinking_budget = 11;
    cfg.repetition_guard = 0;
    BUDGET(OCHAT, "{" MSG "}", 11, 0);
    BUDGET(GEN, "{\"prompt\":\"Hi\",\"options\":{\"thinking_budget\":-1}}", -1, 0);
    cfg = saved;
#undef BUDGET
    EXPECT_ERR(OCHAT, "{" MSG ",\"options\":{\"thinking_budget\":\"5\"}}", 400,
               "'options.thinking_budget' must be an integer");
    EXPECT_ERR(OCHAT, "{" MSG ",\"options\":{\"thinking_budget\":-3}}", 400,
               "'options.thinking_budget' must be a number of tokens");
    EXPECT_ERR(GEN, "{\"prompt\":\"Hi\",\"options\":{\"thinking_budget\":2.5}}", 400,
               "options.thinking_budget");
    EXPECT_ERR(GEN, "{\"prompt\":\"Hi\",\"thinking_budget\":false}", 400,
               "'thinking_budget' must be an integer");
    EXPECT_ERR(OCHAT, "{" MSG ",\"thinking_budget\":-2}", 400, "-1 for no budget");

    e = events_of("<think>\nHmm" QP_THINK_CLOSE_TEXT "It is 4.", 1);
    rr = run(OCHAT, "{" MSG ",\"options\":{\"thinking_budget\":1}}", e, QWEN_FINISH_STOP);
    s = concat(rr.json, "message.thinking");
    CHECK(streq(s, "Hmm\n\nConsidering the limited time by the user, I have to give the "
                "solution based on the thinking directly now."), "thinking '%s'", s);
    free(s);
    s = concat(rr.json, "message.content");
    CHECK(streq(s, "It is 4."), "content '%s'", s);
    free(s);
    run_free(&rr);
    free(e.ev);

    e = events_of("again again", 0);
    rr = run(OCHAT, "{" MSG ",\"stream\":false}", e, QWEN_FINISH_REPETITION);
    check_final(__LINE__, rr.json, &rr, "length", (long long) e.n);
    run_free(&rr);
    rr = run(GEN, "{\"prompt\":\"Hi\"}", e, QWEN_FINISH_REPETITION);
    check_final(__LINE__, json_array_get(rr.json, json_array_size(rr.json) - 1), &rr,
                "length", (long long) e.n);
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

/* ------------------------------------------------------------------ main */

/* prompt_eval_count counts only the prompt tokens evaluated: those the
 * prefix cache gave are not (as Ollama's own cache reports them). */
static void
test_cached_prompt(void)
{
    events              e = events_of("Hello world.", 1);
    qwen_request_timing t = test_timing;
    run_result          rr;
    json_t             *last;

    t.n_cached = 2;
    rr = run_t(GEN, "{\"model\":\"qwen3\",\"prompt\":\"Why is the sky blue?\"}", e, 1,
               QWEN_FINISH_STOP, &t);
    last = json_array_get(rr.json, json_array_size(rr.json) - 1);
    CHECK(rr.n_prompt > 2 && jint(last, "prompt_eval_count") == (long long) rr.n_prompt - 2,
          "prompt_eval_count %lld of %zu prompt tokens, 2 cached",
          jint(last, "prompt_eval_count"), rr.n_prompt);
    run_free(&rr);
    free(e.ev);
}

/* options.draft (or a top-level draft) overrides the server's qwen_draft */
static void
test_draft_option(void)
{
    qp_error    err;
    qp_request *req;

    req = parse(GEN, "{\"model\":\"qwen3\",\"prompt\":\"hi\",\"options\":{\"draft\":\"off\"}}",
                &err);
    CHECK(req != NULL && qp_request_params(req)->draft == 0, "options.draft off: %s", err.body);
    qp_request_free(req);
    req = parse(GEN, "{\"model\":\"qwen3\",\"prompt\":\"hi\",\"draft\":\"off\","
                "\"options\":{\"draft\":\"ngram\"}}", &err);
    CHECK(req != NULL && qp_request_params(req)->draft == 1, "options win: %s", err.body);
    qp_request_free(req);
    req = parse(GEN, "{\"model\":\"qwen3\",\"prompt\":\"hi\"}", &err);
    CHECK(req != NULL && qp_request_params(req)->draft == -1, "absent: the server's");
    qp_request_free(req);
    EXPECT_ERR(GEN, "{\"model\":\"qwen3\",\"prompt\":\"hi\",\"options\":{\"draft\":1}}", 400,
               "'options.draft' must be \"ngram\" or \"off\"");
}

int
main(void)
{
    if (test_model_load() == 0) {
        test_parse_errors();
        test_load_answers();
        test_parse_params();
        test_format();
        test_prompts();
        test_chat_stream();
        test_generate_stream();
        test_thinking();
        test_thinking_budget();
        test_tool_calls();
        test_stop_strings();
        test_cached_prompt();
        test_draft_option();
        test_errors_midstream();
        test_model_free();
    }
    TEST_MAIN_END();
}
