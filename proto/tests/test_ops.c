/*
 * test_ops.c - the operations endpoints against the real Qwen3 tokenizer
 * (tiny test model): SageMaker's choice of API for POST /invocations,
 * POST /tokenize and /detokenize (round trips, chat messages through the
 * template, every error), and GET /health.
 */
#include "proto_test.h"

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
    {
        qp_buf  out = { 0 };
        json_t *o;

        CHECK(qp_sagemaker_execution_parameters(8, 6, &out) == 0, "execution-parameters");
        o = load(out.data, out.len);
        CHECK(jint(o, "MaxConcurrentTransforms") == 8 && jint(o, "MaxPayloadInMB") == 6
              && streq(jstr(o, "BatchStrategy"), "SINGLE_RECORD"), "... %s", out.data);
        json_decref(o);
        qp_buf_free(&out);
    }
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

    CHECK(qp_health_body(NULL, -1, 0, &out) == 503 && streq(out.data, "{\"status\":\"loading\"}"),
          "loading");
    qp_buf_reset(&out);
    memset(&s, 0, sizeof(s));
    s.n_slots = 2;
    s.max_queue = 4;
    s.running = 1;
    CHECK(qp_health_body(&s, -1, 1, &out) == 200, "ok");
    o = load(out.data, out.len);
    CHECK(streq(jstr(o, "status"), "ok") && jint(o, "running") == 1 && jint(o, "slots") == 2,
          "ok body %s", out.data);
    json_decref(o);
    qp_buf_reset(&out);
    s.running = 2;
    s.waiting = 3;
    CHECK(qp_health_body(&s, -1, 1, &out) == 200 && strstr(out.data, "\"ok\"") != NULL,
          "busy but queue not full");
    qp_buf_reset(&out);
    CHECK(qp_health_body(&s, 0, 1, &out) == 200 && strstr(out.data, "\"ok\"") != NULL,
          "the server has room: ok");
    qp_buf_reset(&out);
    CHECK(qp_health_body(&s, 1, 1, &out) == 503 && strstr(out.data, "\"saturated\"") != NULL,
          "this worker's queue has room but the whole server is full: saturated");
    qp_buf_reset(&out);
    s.waiting = 4;
    CHECK(qp_health_body(&s, -1, 0, &out) == 200 && strstr(out.data, "\"saturated\"") != NULL,
          "saturated, 200 when not configured");
    qp_buf_reset(&out);
    CHECK(qp_health_body(&s, -1, 1, &out) == 503 && strstr(out.data, "\"saturated\"") != NULL,
          "saturated, 503 when configured");
    qp_buf_reset(&out);
    s.max_queue = 0;
    s.waiting = 0;
    CHECK(qp_health_body(&s, -1, 1, &out) == 503, "no queue, slots full: saturated");
    qp_buf_free(&out);
}

int
main(void)
{
    if (test_model_load() == 0) {
        test_sagemaker();
        test_tokenize();
        test_health();
        test_model_free();
    }
    TEST_MAIN_END();
}
