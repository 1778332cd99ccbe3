/*
 * openai_models.c - GET /v1/models and GET /v1/models/{id}: the one served
 * model as an OpenAI model object (a 404 in OpenAI's format for any other
 * id). The Ollama listings are in ollama_models.c.
 */
#include "request.h"

static int
model_object(const qp_config *cfg, time_t created, qp_buf *out)
{
    return qp_json_raw(out, "{\"id\":") != 0
           || qp_json_cstr(out, cfg->model_name ? cfg->model_name : "qwen3") != 0
           || qp_buf_printf(out, ",\"object\":\"model\",\"created\":%lld,"
                            "\"owned_by\":\"qwen\"}", (long long) created) != 0 ? -1 : 0;
}

int
qp_openai_models(const qp_config *cfg, time_t created, qp_buf *out)
{
    return qp_json_raw(out, "{\"object\":\"list\",\"data\":[") != 0
           || model_object(cfg, created, out) != 0
           || qp_json_raw(out, "]}") != 0 ? -1 : 0;
}

int
qp_openai_model(const qp_config *cfg, const char *id, size_t id_len, time_t created,
                qp_buf *out, qp_error *err)
{
    if (!qp_model_matches(cfg, id, id_len)) {
        return qp_fail(err, &qp_openai_errors, 404, "not_found_error", "model",
                       "model_not_found", "model '%.*s' not found",
                       (int) (id_len > 200 ? 200 : id_len), id);
    }
    if (model_object(cfg, created, out) != 0) {
        return qp_fail(err, &qp_openai_errors, 500, NULL, NULL, NULL, "out of memory");
    }
    return 0;
}
