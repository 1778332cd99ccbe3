/*
 * fuzz_request.c - the request parsers of every API a client reaches:
 * OpenAI chat and completions, Ollama chat and generate, SageMaker's
 * /invocations, /tokenize, /detokenize and Ollama's /api/show. The first
 * byte picks the endpoint (low 3 bits) and the configuration (thinking,
 * a 64-token context, the reasoning field); the rest is the body. A parsed
 * request then runs through its response formatter with its own prompt ids
 * as the "generated" tokens (stop strings, tool calls, thinking tags...).
 * Invariants: every refusal is a 4xx/5xx (Ollama's load request a 200)
 * with a JSON body; every non-streamed answer is JSON.
 */
#include <jansson.h>

#include "fuzz_common.h"
#include "qwen_proto.h"

static qp_model_info info;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const qwen_tokenizer *tok = fuzz_tokenizer();

    (void) argc; (void) argv; (void) tok;
    qp_model_info_from_model(fuzz_model, "fuzz.gguf", &info);
    return 0;
}

static void
check_json(const char *text, size_t len, const char *what)
{
    json_error_t je;
    /* U+0000 in a string is valid JSON (RFC 8259), escaped as \u0000: a
     * token that decodes to a NUL byte carries one */
    json_t      *v = json_loadb(text, len, JSON_ALLOW_NUL, &je);

    FUZZ_CHECK(v != NULL, "%s is not JSON (%s): %.*s", what, je.text, (int) len, text);
    json_decref(v);
}

static void
check_error(const qp_error *err, int ollama)
{
    FUZZ_CHECK((err->status >= 400 && err->status <= 599) || (ollama && err->status == 200),
               "refusal with status %d", err->status);
    check_json(err->body, strlen(err->body), "the error body");
}

/* The response side: the prompt's ids as generated tokens, in chunks of 3,
 * with logprobs when asked, then the end. */
static void
respond(qp_request *req, const qwen_tokenizer *tok, const qp_config *cfg, unsigned sel)
{
    static const qwen_finish reasons[4] = {
        QWEN_FINISH_STOP, QWEN_FINISH_LENGTH, QWEN_FINISH_REPETITION, QWEN_FINISH_CANCELLED
    };
    const qwen_request_params *p = qp_request_params(req);
    qwen_request_timing        timing;
    qwen_token_event           ev[3];
    qp_response               *resp;
    qp_buf                     out = { 0 };
    size_t                     i, k, n = p->n_prompt < 64 ? p->n_prompt : 64;
    int                        rc = 0, j, n_top;

    resp = qp_response_new(req, tok, cfg, "fuzz-0", 1700000000);
    FUZZ_CHECK(resp != NULL, "qp_response_new failed on a parsed request");
    n_top = p->n_logprobs < QWEN_MAX_TOP_LOGPROBS ? p->n_logprobs : QWEN_MAX_TOP_LOGPROBS;
    for (i = 0; i < n && rc == 0; i += k) {
        for (k = 0; k < 3 && i + k < n; k++) {
            memset(&ev[k], 0, sizeof(ev[k]));
            ev[k].token = p->prompt[n - 1 - i - k];   /* backwards: mixes the template */
            ev[k].gap_ms = i + k == 0 ? -1.0f : 1.5f;
            ev[k].logprob = -0.25f * (float) k;
            ev[k].n_top = n_top;
            for (j = 0; j < n_top; j++) {
                ev[k].top_ids[j] = p->prompt[(i + (size_t) j) % p->n_prompt];
                ev[k].top_logprobs[j] = -(float) j;
            }
        }
        rc = qp_response_tokens(resp, ev, k, &out);
        FUZZ_CHECK(rc >= 0, "qp_response_tokens: out of memory");
    }
    memset(&timing, 0, sizeof(timing));
    timing.n_prompt = p->n_prompt;
    timing.n_generated = n;
    timing.total_ms = 12.5;
    timing.first_token_ms = 3.0;
    if (sel & 0x80 && rc == 0) {
        qp_buf_reset(&out);
        FUZZ_CHECK(qp_response_error(resp, 500, "server_error", "fuzz \"error\"\n", &out) == 0,
                   "qp_response_error failed");
    } else {
        size_t start = out.len;

        FUZZ_CHECK(qp_response_finish(resp, rc == 1 ? QWEN_FINISH_CANCELLED
                                      : reasons[(sel >> 5) & 3], &timing, &out) == 0,
                   "qp_response_finish failed");
        if (!qp_request_stream(req)) {
            check_json(out.data + start, out.len - start, "the response body");
        }
        FUZZ_CHECK(qp_response_finish_reason(resp) != NULL, "finished without a reason");
    }
    (void) qp_response_completion_tokens(resp);
    (void) qp_response_content_type(resp);
    qp_buf_free(&out);
    qp_response_free(resp);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const qwen_tokenizer *tok = fuzz_tokenizer();
    qp_config             cfg;
    qp_request           *req = NULL;
    qp_error              err;
    qp_buf                out = { 0 };
    qp_api                api;
    unsigned              sel;
    char                 *body;
    size_t                len;
    int                   rc;

    if (size < 1) {
        return 0;
    }
    sel = data[0];
    len = size - 1;
    body = malloc(len ? len : 1);       /* exactly the body: ASan sees overreads */
    if (body == NULL) {
        return 0;
    }
    memcpy(body, data + 1, len);
    qp_config_defaults(&cfg);
    cfg.enable_thinking = (sel >> 3) & 1;
    cfg.reasoning_field = (sel >> 6) & 1;
    if (sel & 0x10) {
        cfg.n_ctx = 64;
        cfg.max_tokens = 16;
    }
    memset(&err, 0, sizeof(err));

    switch (sel & 7) {
    case 0: case 1: case 2: case 3:
        api = (qp_api) (sel & 7);
        rc = qp_parse(api, body, len, &cfg, tok, &req, &err);
        if (rc == 0) {
            FUZZ_CHECK(req != NULL, "qp_parse: 0 without a request");
            respond(req, tok, &cfg, sel);
            qp_request_free(req);
        } else {
            check_error(&err, api == QP_OLLAMA_CHAT || api == QP_OLLAMA_GENERATE);
        }
        break;
    case 4:
        api = qp_sagemaker_api(body, len, &err);
        if (api == QP_API_COUNT) {
            check_error(&err, 0);
            break;
        }
        FUZZ_CHECK(api == QP_OPENAI_CHAT || api == QP_OPENAI_COMPLETIONS, "SageMaker api %d",
                   (int) api);
        if (qp_parse(api, body, len, &cfg, tok, &req, &err) == 0) {
            respond(req, tok, &cfg, sel);
            qp_request_free(req);
        } else {
            check_error(&err, 0);
        }
        break;
    case 5:
    case 6:
        rc = (sel & 7) == 5 ? qp_tokenize_body(body, len, &cfg, tok, &out, &err)
                            : qp_detokenize_body(body, len, &cfg, tok, &out, &err);
        if (rc == 0) {
            check_json(out.data, out.len, "the (de)tokenize answer");
        } else {
            check_error(&err, 0);
        }
        break;
    default:
        if (qp_ollama_show(&cfg, &info, body, len, &out, &err) == 0) {
            check_json(out.data, out.len, "the /api/show answer");
        } else {
            check_error(&err, 1);
        }
        break;
    }
    qp_buf_free(&out);
    free(body);
    return 0;
}
