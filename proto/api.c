/*
 * api.c - the spine of proto/: the table with one row per API (its parser,
 * its response format, its error style) and the entry points that pick a
 * row: qp_parse and qp_error_make. The response side (response.c) reads
 * the same table.
 */
#include "api.h"
#include "lmi.h"
#include "ollama.h"
#include "openai.h"

static const qp_api_desc apis[QP_API_COUNT] = {
    [QP_OPENAI_CHAT] = {
        qp_openai_parse, &qp_openai_chat_format, &qp_openai_errors },
    [QP_OPENAI_COMPLETIONS] = {
        qp_openai_parse, &qp_openai_completions_format, &qp_openai_errors },
    [QP_OLLAMA_CHAT] = {
        qp_ollama_parse, &qp_ollama_chat_format, &qp_ollama_errors },
    [QP_OLLAMA_GENERATE] = {
        qp_ollama_parse, &qp_ollama_generate_format, &qp_ollama_errors },
    [QP_SAGEMAKER_LMI] = {
        qp_lmi_parse, &qp_lmi_format, &qp_lmi_errors },
};

const qp_api_desc *
qp_api_get(qp_api api)
{
    return (int) api >= 0 && api < QP_API_COUNT ? &apis[api] : NULL;
}

int
qp_parse(qp_api api, const char *body, size_t len, const qp_config *cfg,
         const qwen_tokenizer *tok, qp_request **out, qp_error *err)
{
    const qp_api_desc *d = qp_api_get(api);
    json_t            *root;
    qp_request        *req;
    int                rc;

    *out = NULL;
    if (d == NULL) {
        return qp_fail(err, &qp_openai_errors, 500, NULL, NULL, NULL, "unknown API %d",
                       (int) api);
    }
    if (tok == NULL) {
        return qp_fail(err, d->errors, 500, NULL, NULL, NULL, "the model has no tokenizer");
    }
    req = qp_request_load(api, d->errors, body, len, &root, err);
    if (req == NULL) {
        return -1;
    }
    rc = d->parse(req, root, cfg, tok, err);
    json_decref(root);
    if (rc != 0) {
        qp_request_free(req);
        return -1;
    }
    *out = req;
    return 0;
}

void
qp_error_make(qp_api api, int status, const char *type, const char *message,
              int retry_after_s, qp_error *err)
{
    const qp_api_desc *d = qp_api_get(api);
    qp_error_info      e = { status, type, NULL, NULL, message ? message : "error",
                             retry_after_s };

    /* outside the table: OpenAI's shape, as for an unknown API in qp_parse */
    qp_error_fill(err, d != NULL ? d->errors : &qp_openai_errors, &e);
}
