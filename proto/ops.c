/*
 * ops.c - the operations endpoints that are not an API of their own:
 * SageMaker's POST /invocations (which API a body is served with), the
 * vLLM-compatible POST /tokenize and /detokenize bodies, and GET /health.
 * Errors are in OpenAI's format, as vLLM answers them.
 */
#include <stdlib.h>
#include <string.h>

#include "openai.h"

/* vLLM answers in OpenAI's error format */
static const qp_error_style *const es = &qp_openai_errors;

/* ========================================================== SageMaker */

/* A chat body ("messages") is served as /v1/chat/completions, a generate
 * body ("prompt") as /v1/completions: OpenAI framing, SSE with
 * "stream":true, as the stack this replaces answered /invocations. */
qp_api
qp_sagemaker_api(const char *body, size_t len, qp_error *err)
{
    json_t       *root = qp_load_object(body, len, es, err);
    const json_t *v;
    qp_api        api = QP_API_COUNT;

    if (root == NULL) {
        return QP_API_COUNT;
    }
    v = json_object_get(root, "messages");
    if (v != NULL && !json_is_null(v)) {
        api = QP_OPENAI_CHAT;
    } else {
        v = json_object_get(root, "prompt");
        if (v != NULL && !json_is_null(v)) {
            api = QP_OPENAI_COMPLETIONS;
        } else if ((v = json_object_get(root, "inputs")) != NULL && !json_is_null(v)) {
            api = QP_SAGEMAKER_LMI;
        } else {
            qp_fail(err, es, 400, NULL, NULL, NULL,
                    "the body must hold \"messages\" (a chat request), \"prompt\" "
                    "(a completion request) or \"inputs\" (LMI / TGI)");
        }
    }
    json_decref(root);
    return api;
}

/* Each record is one generation request; as many go at once as the
 * server generates together. */
int
qp_sagemaker_execution_parameters(int concurrent, int max_payload_mb, qp_buf *out)
{
    return qp_buf_printf(out, "{\"MaxConcurrentTransforms\":%d,\"BatchStrategy\":"
                         "\"SINGLE_RECORD\",\"MaxPayloadInMB\":%d}",
                         concurrent > 0 ? concurrent : 1,
                         max_payload_mb > 0 ? max_payload_mb : 1);
}

/* ================================================== tokenize/detokenize */

static int
check_model(const json_t *root, const qp_config *cfg, qp_error *err)
{
    const json_t *v = NULL;
    int           rc = qp_get_string(root, "model", "model", &v, es, err);

    if (rc == 1 && !qp_model_matches(cfg, json_string_value(v), json_string_length(v))) {
        return qp_fail(err, es, 404, "not_found_error", "model", "model_not_found",
                       "model '%.200s' not found", json_string_value(v));
    }
    return rc < 0 ? -1 : 0;
}

static int
tokens_json(const qwen_tokenizer *tok, const qwen_tokens *t, int n_ctx, int strs,
            qp_buf *out)
{
    size_t i, len;

    if (qp_buf_printf(out, "{\"count\":%zu,\"max_model_len\":%d,\"tokens\":[", t->n, n_ctx) != 0) {
        return -1;
    }
    for (i = 0; i < t->n; i++) {
        if (qp_buf_printf(out, i ? ",%d" : "%d", (int) t->ids[i]) != 0) {
            return -1;
        }
    }
    if (strs) {
        /* each token's own bytes: a piece of a character shows as U+FFFD */
        if (qp_json_raw(out, "],\"token_strs\":[") != 0) {
            return -1;
        }
        for (i = 0; i < t->n; i++) {
            const char *s = qwen_token_bytes(tok, t->ids[i], &len);

            if ((i > 0 && qp_json_raw(out, ",") != 0)
                || qp_json_str(out, s ? s : "", s ? len : 0) != 0)
            {
                return -1;
            }
        }
    }
    return qp_json_raw(out, "]}");
}

/* {"prompt": text} or {"messages": [...], "add_generation_prompt": true,
 * "tools", "chat_template_kwargs"} (rendered as /v1/chat/completions
 * renders them); add_special_tokens is accepted (Qwen3 adds none). */
int
qp_tokenize_body(const char *body, size_t len, const qp_config *cfg,
                 const qwen_tokenizer *tok, qp_buf *out, qp_error *err)
{
    json_t       *root;
    const json_t *v = NULL;
    qp_request   *req;
    char         *text = NULL;
    size_t        text_len = 0;
    int           strs = 0, agp = 1, special = 1, rc = -1;

    if (tok == NULL) {
        return qp_fail(err, es, 500, NULL, NULL, NULL, "the model has no tokenizer");
    }
    req = qp_request_load(QP_OPENAI_CHAT, es, body, len, &root, err);
    if (req == NULL) {
        return -1;
    }
    if (check_model(root, cfg, err) != 0
        || qp_get_bool(root, "return_token_strs", "return_token_strs", &strs, es, err) < 0
        || qp_get_bool(root, "add_special_tokens", "add_special_tokens", &special, es,
                       err) < 0
        || qp_get_bool(root, "add_generation_prompt", "add_generation_prompt", &agp, es,
                       err) < 0)
    {
        goto done;
    }
    v = json_object_get(root, "messages");
    if (v != NULL && !json_is_null(v)) {
        if (qp_openai_render_chat(req, root, cfg, agp, &text, &text_len, err) != 0
            || qp_tokenize(tok, text, text_len, &req->prompt, es, err) != 0)
        {
            goto done;
        }
    } else {
        v = NULL;
        rc = qp_get_string(root, "prompt", "prompt", &v, es, err);
        if (rc <= 0) {
            if (rc == 0) {
                qp_fail(err, es, 400, NULL, "prompt", NULL,
                        "the body must hold \"prompt\" (a string) or \"messages\"");
            }
            rc = -1;
            goto done;
        }
        rc = -1;
        if (qp_tokenize(tok, json_string_value(v), json_string_length(v), &req->prompt, es,
                        err) != 0)
        {
            goto done;
        }
    }
    if (tokens_json(tok, &req->prompt, cfg->n_ctx, strs, out) != 0) {
        qp_fail(err, es, 500, NULL, NULL, NULL, "out of memory");
        goto done;
    }
    rc = 0;
done:
    free(text);
    qp_request_free(req);
    json_decref(root);
    return rc;
}

/* {"tokens": [ids]} -> {"prompt": text}; special tokens are spelled out
 * (as vLLM decodes them), broken UTF-8 becomes U+FFFD. */
int
qp_detokenize_body(const char *body, size_t len, const qp_config *cfg,
                   const qwen_tokenizer *tok, qp_buf *out, qp_error *err)
{
    json_t       *root;
    const json_t *ids;
    int32_t      *buf = NULL;
    char         *text = NULL;
    size_t        i, n, text_len = 0;
    int           vocab, rc = -1;

    if (tok == NULL) {
        return qp_fail(err, es, 500, NULL, NULL, NULL, "the model has no tokenizer");
    }
    root = qp_load_object(body, len, es, err);
    if (root == NULL) {
        return -1;
    }
    if (check_model(root, cfg, err) != 0) {
        goto done;
    }
    ids = json_object_get(root, "tokens");
    if (!json_is_array(ids)) {
        qp_fail(err, es, 400, NULL, "tokens", NULL,
                ids == NULL || json_is_null(ids) ? "'tokens' is required"
                                                 : "'tokens' must be an array of token ids");
        goto done;
    }
    n = json_array_size(ids);
    vocab = qwen_tokenizer_vocab_size(tok);
    buf = malloc((n ? n : 1) * sizeof(*buf));
    if (buf == NULL) {
        qp_fail(err, es, 500, NULL, NULL, NULL, "out of memory");
        goto done;
    }
    for (i = 0; i < n; i++) {
        const json_t *v = json_array_get(ids, i);
        json_int_t    id;

        if (!json_is_integer(v)) {
            qp_fail(err, es, 400, NULL, "tokens", NULL,
                    "'tokens[%zu]' must be an integer token id", i);
            goto done;
        }
        id = json_integer_value(v);
        if (id < 0 || id >= vocab) {
            qp_fail(err, es, 400, NULL, "tokens", NULL,
                    "token id %lld at tokens[%zu] is outside the vocabulary (0..%d)",
                    (long long) id, i, vocab - 1);
            goto done;
        }
        buf[i] = (int32_t) id;
    }
    text = qwen_detokenize(tok, buf, n, &text_len);
    if (text == NULL
        || qp_json_raw(out, "{\"prompt\":") != 0
        || qp_json_str(out, text, text_len) != 0
        || qp_json_raw(out, "}") != 0)
    {
        qp_fail(err, es, 500, NULL, NULL, NULL, "out of memory");
        goto done;
    }
    rc = 0;
done:
    free(text);
    free(buf);
    json_decref(root);
    return rc;
}

/* ============================================================= health */

int
qp_health_body(const qwen_engine_stats *s, int server_full, int saturated_503, qp_buf *out)
{
    int saturated;

    if (s == NULL) {
        return qp_json_raw(out, "{\"status\":\"loading\"}") != 0 ? -1 : 503;
    }
    /* the next request would be refused: every slot busy and the queue
     * full, or the whole server (every worker's slots and queues) full */
    saturated = (s->n_slots > 0 && s->running >= s->n_slots && s->waiting >= s->max_queue)
                || server_full > 0;
    if (qp_buf_printf(out, "{\"status\":\"%s\",\"running\":%d,\"waiting\":%d,"
                      "\"slots\":%d,\"max_queue\":%d}", saturated ? "saturated" : "ok",
                      s->running, s->waiting, s->n_slots, s->max_queue) != 0)
    {
        return -1;
    }
    return saturated && saturated_503 ? 503 : 200;
}
