
/*
 * ngx_http_qwen_endpoints.c - the routing tables of `qwen_api openai |
 * ollama | sagemaker;` and of qwen_health, qwen_metrics, qwen_tokenize and
 * qwen_detokenize, and the endpoints that do not generate (model listings,
 * /ping, health, metrics, tokens). Every body comes from the protocol layer.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_qwen_module.h"


#define NGX_HTTP_QWEN_ALL_METHODS                                           \
    (NGX_HTTP_GET|NGX_HTTP_HEAD|NGX_HTTP_POST|NGX_HTTP_PUT|NGX_HTTP_DELETE  \
     |NGX_HTTP_PATCH|NGX_HTTP_OPTIONS)


static ngx_int_t ngx_http_qwen_openai_models(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx);
static ngx_int_t ngx_http_qwen_openai_model(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx);
static ngx_int_t ngx_http_qwen_ollama_tags(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx);
static ngx_int_t ngx_http_qwen_ollama_ps(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx);
static ngx_int_t ngx_http_qwen_ollama_show(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx);
static ngx_int_t ngx_http_qwen_ollama_version(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx);
static ngx_int_t ngx_http_qwen_ollama_unsupported(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx);
static ngx_int_t ngx_http_qwen_ollama_embed(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx);
static ngx_int_t ngx_http_qwen_ollama_root(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx);
static ngx_int_t ngx_http_qwen_ping(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx);
static ngx_int_t ngx_http_qwen_execution_parameters(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx);
static ngx_int_t ngx_http_qwen_health(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx);
static ngx_int_t ngx_http_qwen_metrics(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx);
static ngx_int_t ngx_http_qwen_tokenize(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx);
static ngx_int_t ngx_http_qwen_detokenize(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx);

static ngx_int_t ngx_http_qwen_send_out(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx, int rc, const char *what,
    const char *content_type);


/* ------------------------------------------------------------- the APIs */

static ngx_http_qwen_route_t  ngx_http_qwen_openai_routes[] = {

    { ngx_string("/chat/completions"),
      NGX_HTTP_QWEN_BODY|NGX_HTTP_QWEN_ENGINE, NGX_HTTP_POST,
      ngx_string("POST"), ngx_http_qwen_generate, QP_OPENAI_CHAT,
      "chatcmpl-" },

    { ngx_string("/completions"),
      NGX_HTTP_QWEN_BODY|NGX_HTTP_QWEN_ENGINE, NGX_HTTP_POST,
      ngx_string("POST"), ngx_http_qwen_generate, QP_OPENAI_COMPLETIONS,
      "cmpl-" },

    { ngx_string("/models/"), NGX_HTTP_QWEN_ID, NGX_HTTP_GET|NGX_HTTP_HEAD,
      ngx_string("GET, HEAD"), ngx_http_qwen_openai_model, QP_OPENAI_CHAT,
      NULL },

    { ngx_string("/models"), 0, NGX_HTTP_GET|NGX_HTTP_HEAD,
      ngx_string("GET, HEAD"), ngx_http_qwen_openai_models, QP_OPENAI_CHAT,
      NULL },

    { ngx_null_string, 0, 0, ngx_null_string, NULL, 0, NULL }
};


static ngx_http_qwen_route_t  ngx_http_qwen_ollama_routes[] = {

    { ngx_string("/api/generate"),
      NGX_HTTP_QWEN_BODY|NGX_HTTP_QWEN_ENGINE, NGX_HTTP_POST,
      ngx_string("POST"), ngx_http_qwen_generate, QP_OLLAMA_GENERATE,
      "generate-" },

    { ngx_string("/api/chat"),
      NGX_HTTP_QWEN_BODY|NGX_HTTP_QWEN_ENGINE, NGX_HTTP_POST,
      ngx_string("POST"), ngx_http_qwen_generate, QP_OLLAMA_CHAT,
      "chat-" },

    { ngx_string("/api/tags"), 0, NGX_HTTP_GET|NGX_HTTP_HEAD,
      ngx_string("GET, HEAD"), ngx_http_qwen_ollama_tags, QP_OLLAMA_CHAT,
      NULL },

    { ngx_string("/api/show"), NGX_HTTP_QWEN_BODY, NGX_HTTP_POST,
      ngx_string("POST"), ngx_http_qwen_ollama_show, QP_OLLAMA_CHAT, NULL },

    { ngx_string("/api/ps"), 0, NGX_HTTP_GET|NGX_HTTP_HEAD,
      ngx_string("GET, HEAD"), ngx_http_qwen_ollama_ps, QP_OLLAMA_CHAT,
      NULL },

    { ngx_string("/api/version"), 0, NGX_HTTP_GET|NGX_HTTP_HEAD,
      ngx_string("GET, HEAD"), ngx_http_qwen_ollama_version, QP_OLLAMA_CHAT,
      NULL },

    /* model management: the model is fixed by nginx.conf */

    { ngx_string("/api/pull"), 0, NGX_HTTP_QWEN_ALL_METHODS,
      ngx_null_string, ngx_http_qwen_ollama_unsupported, QP_OLLAMA_CHAT,
      NULL },

    { ngx_string("/api/push"), 0, NGX_HTTP_QWEN_ALL_METHODS,
      ngx_null_string, ngx_http_qwen_ollama_unsupported, QP_OLLAMA_CHAT,
      NULL },

    { ngx_string("/api/create"), 0, NGX_HTTP_QWEN_ALL_METHODS,
      ngx_null_string, ngx_http_qwen_ollama_unsupported, QP_OLLAMA_CHAT,
      NULL },

    { ngx_string("/api/copy"), 0, NGX_HTTP_QWEN_ALL_METHODS,
      ngx_null_string, ngx_http_qwen_ollama_unsupported, QP_OLLAMA_CHAT,
      NULL },

    { ngx_string("/api/delete"), 0, NGX_HTTP_QWEN_ALL_METHODS,
      ngx_null_string, ngx_http_qwen_ollama_unsupported, QP_OLLAMA_CHAT,
      NULL },

    { ngx_string("/api/blobs/"), NGX_HTTP_QWEN_ID, NGX_HTTP_QWEN_ALL_METHODS,
      ngx_null_string, ngx_http_qwen_ollama_unsupported, QP_OLLAMA_CHAT,
      NULL },

    { ngx_string("/api/embed"), 0, NGX_HTTP_QWEN_ALL_METHODS,
      ngx_null_string, ngx_http_qwen_ollama_embed, QP_OLLAMA_CHAT, NULL },

    { ngx_string("/api/embeddings"), 0, NGX_HTTP_QWEN_ALL_METHODS,
      ngx_null_string, ngx_http_qwen_ollama_embed, QP_OLLAMA_CHAT, NULL },

    /* GET / and HEAD /: "Ollama is running" */

    { ngx_string("/"), NGX_HTTP_QWEN_ROOT, NGX_HTTP_GET|NGX_HTTP_HEAD,
      ngx_string("GET, HEAD"), ngx_http_qwen_ollama_root, QP_OLLAMA_CHAT,
      NULL },

    { ngx_null_string, 0, 0, ngx_null_string, NULL, 0, NULL }
};


/* SageMaker's container contract: /ping, /invocations (a chat body or a
 * completion body in OpenAI framing, SSE with "stream":true; or LMI / TGI's
 * "inputs") and Batch Transform's /execution-parameters. */
static ngx_http_qwen_route_t  ngx_http_qwen_sagemaker_routes[] = {

    { ngx_string("/ping"), NGX_HTTP_QWEN_ENGINE, NGX_HTTP_GET|NGX_HTTP_HEAD,
      ngx_string("GET, HEAD"), ngx_http_qwen_ping, QP_OPENAI_CHAT, NULL },

    { ngx_string("/invocations"),
      NGX_HTTP_QWEN_BODY|NGX_HTTP_QWEN_ENGINE|NGX_HTTP_QWEN_PICK,
      NGX_HTTP_POST, ngx_string("POST"), ngx_http_qwen_generate,
      QP_OPENAI_CHAT, "chatcmpl-" },

    { ngx_string("/execution-parameters"), 0, NGX_HTTP_GET|NGX_HTTP_HEAD,
      ngx_string("GET, HEAD"), ngx_http_qwen_execution_parameters,
      QP_OPENAI_CHAT, NULL },

    { ngx_null_string, 0, 0, ngx_null_string, NULL, 0, NULL }
};


/* `qwen_api NAME;` chooses one of these; a new API adds a routing table. */
ngx_http_qwen_api_t  ngx_http_qwen_apis[] = {

    { ngx_string("openai"), ngx_http_qwen_openai_routes, QP_OPENAI_CHAT,
      0, 0 },

    { ngx_string("ollama"), ngx_http_qwen_ollama_routes, QP_OLLAMA_CHAT,
      0, 0 },

    { ngx_string("sagemaker"), ngx_http_qwen_sagemaker_routes,
      QP_OPENAI_CHAT, 0, 1 },

    { ngx_null_string, NULL, 0, 0, 0 }
};


/* The operations directives: one endpoint, whatever the location's URI;
 * errors in OpenAI's format, as vLLM answers them. */

static ngx_http_qwen_route_t  ngx_http_qwen_health_routes[] = {

    { ngx_null_string, NGX_HTTP_QWEN_ANY, NGX_HTTP_GET|NGX_HTTP_HEAD,
      ngx_string("GET, HEAD"), ngx_http_qwen_health, QP_OPENAI_CHAT, NULL },

    { ngx_null_string, 0, 0, ngx_null_string, NULL, 0, NULL }
};

static ngx_http_qwen_route_t  ngx_http_qwen_metrics_routes[] = {

    { ngx_null_string, NGX_HTTP_QWEN_ANY, NGX_HTTP_GET|NGX_HTTP_HEAD,
      ngx_string("GET, HEAD"), ngx_http_qwen_metrics, QP_OPENAI_CHAT, NULL },

    { ngx_null_string, 0, 0, ngx_null_string, NULL, 0, NULL }
};

static ngx_http_qwen_route_t  ngx_http_qwen_tokenize_routes[] = {

    { ngx_null_string, NGX_HTTP_QWEN_ANY|NGX_HTTP_QWEN_BODY, NGX_HTTP_POST,
      ngx_string("POST"), ngx_http_qwen_tokenize, QP_OPENAI_CHAT, NULL },

    { ngx_null_string, 0, 0, ngx_null_string, NULL, 0, NULL }
};

static ngx_http_qwen_route_t  ngx_http_qwen_detokenize_routes[] = {

    { ngx_null_string, NGX_HTTP_QWEN_ANY|NGX_HTTP_QWEN_BODY, NGX_HTTP_POST,
      ngx_string("POST"), ngx_http_qwen_detokenize, QP_OPENAI_CHAT, NULL },

    { ngx_null_string, 0, 0, ngx_null_string, NULL, 0, NULL }
};


ngx_http_qwen_api_t  ngx_http_qwen_health_api = {
    ngx_string("qwen_health"), ngx_http_qwen_health_routes, QP_OPENAI_CHAT,
    0, 0
};

ngx_http_qwen_api_t  ngx_http_qwen_metrics_api = {
    ngx_string("qwen_metrics"), ngx_http_qwen_metrics_routes, QP_OPENAI_CHAT,
    1, 0
};

ngx_http_qwen_api_t  ngx_http_qwen_tokenize_api = {
    ngx_string("qwen_tokenize"), ngx_http_qwen_tokenize_routes,
    QP_OPENAI_CHAT, 0, 0
};

ngx_http_qwen_api_t  ngx_http_qwen_detokenize_api = {
    ngx_string("qwen_detokenize"), ngx_http_qwen_detokenize_routes,
    QP_OPENAI_CHAT, 0, 0
};


static const char  ngx_http_qwen_json[] = "application/json";


/* --------------------------------------------------------------- OpenAI */

static ngx_int_t
ngx_http_qwen_openai_models(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx)
{
    return ngx_http_qwen_send_out(r, ctx,
                                  qp_openai_models(&ctx->conf->qp,
                                                   ctx->conf->model->created,
                                                   &ctx->out),
                                  "the model list", ngx_http_qwen_json);
}


static ngx_int_t
ngx_http_qwen_openai_model(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx)
{
    qp_error                   err;
    ngx_http_qwen_loc_conf_t  *qlcf;

    qlcf = ctx->conf;

    ngx_memzero(&err, sizeof(qp_error));

    if (qp_openai_model(&qlcf->qp, (const char *) ctx->id.data, ctx->id.len,
                        qlcf->model->created, &ctx->out, &err)
        != 0)
    {
        return ngx_http_qwen_send_qp_error(r, ctx, &err);
    }

    return ngx_http_qwen_send_out(r, ctx, 0, "the model", ngx_http_qwen_json);
}


/* --------------------------------------------------------------- Ollama */

static ngx_int_t
ngx_http_qwen_ollama_tags(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx)
{
    return ngx_http_qwen_send_out(r, ctx,
                                  qp_ollama_tags(&ctx->conf->qp,
                                                 ctx->conf->model->info,
                                                 &ctx->out),
                                  "/api/tags", ngx_http_qwen_json);
}


/* The model is always resident: /api/ps lists it with its KV cache. */
static ngx_int_t
ngx_http_qwen_ollama_ps(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx)
{
    return ngx_http_qwen_send_out(r, ctx,
                                  qp_ollama_ps(&ctx->conf->qp,
                                               ctx->conf->model->info,
                                               &ctx->out),
                                  "/api/ps", ngx_http_qwen_json);
}


static ngx_int_t
ngx_http_qwen_ollama_show(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx)
{
    qp_error                   err;
    ngx_http_qwen_loc_conf_t  *qlcf;

    qlcf = ctx->conf;

    ngx_memzero(&err, sizeof(qp_error));

    if (qp_ollama_show(&qlcf->qp, qlcf->model->info,
                       (const char *) ctx->body, ctx->body_len, &ctx->out,
                       &err)
        != 0)
    {
        return ngx_http_qwen_send_qp_error(r, ctx, &err);
    }

    return ngx_http_qwen_send_out(r, ctx, 0, "/api/show", ngx_http_qwen_json);
}


static ngx_int_t
ngx_http_qwen_ollama_version(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx)
{
    return ngx_http_qwen_send_out(r, ctx, qp_ollama_version(&ctx->out),
                                  "/api/version", ngx_http_qwen_json);
}


static ngx_int_t
ngx_http_qwen_ollama_unsupported(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx)
{
    qp_error  err;

    ngx_memzero(&err, sizeof(qp_error));
    qp_ollama_unsupported(&err);

    return ngx_http_qwen_send_qp_error(r, ctx, &err);
}


static ngx_int_t
ngx_http_qwen_ollama_embed(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx)
{
    return ngx_http_qwen_send_error(r, ctx, NGX_HTTP_NOT_IMPLEMENTED,
                                    "invalid_request_error",
                                    "embeddings are not supported: this "
                                    "server generates text only", 0);
}


static ngx_int_t
ngx_http_qwen_ollama_root(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx)
{
    return ngx_http_qwen_send_body(r, ctx, NGX_HTTP_OK,
                                   "text/plain; charset=utf-8",
                                   QP_OLLAMA_ROOT_TEXT,
                                   sizeof(QP_OLLAMA_ROOT_TEXT) - 1);
}


/* ------------------------------------------------------------ SageMaker */

/*
 * GET /ping: 200 with an empty body once this worker's engine runs (the
 * model is loaded by the master before any worker starts); without one
 * the route answers 503 first. The engine is not asked anything, so /ping
 * answers at once however busy the slots are.
 */
static ngx_int_t
ngx_http_qwen_ping(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx)
{
    return ngx_http_qwen_send_body(r, ctx, NGX_HTTP_OK, "text/plain", "", 0);
}


/*
 * GET /execution-parameters: Batch Transform sends as many records at once
 * as the server generates together (slots in every worker), one record a
 * request, within client_max_body_size.
 */
static ngx_int_t
ngx_http_qwen_execution_parameters(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx)
{
    ngx_int_t                  workers;
    ngx_core_conf_t           *ccf;
    ngx_http_core_loc_conf_t  *clcf;

    ccf = (ngx_core_conf_t *) ngx_get_conf(ngx_cycle->conf_ctx,
                                           ngx_core_module);
    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    workers = ccf->worker_processes > 0 ? ccf->worker_processes : 1;

    return ngx_http_qwen_send_out(r, ctx,
                                  qp_sagemaker_execution_parameters(
                                      (int) (ctx->conf->model->engine_conf.slots
                                             * workers),
                                      clcf->client_max_body_size > 0
                                      ? (int) (clcf->client_max_body_size >> 20)
                                      : 6,
                                      &ctx->out),
                                  "the execution parameters",
                                  ngx_http_qwen_json);
}


/* ----------------------------------------------------------- operations */

/*
 * GET /health: "ok" (200), "saturated" (200, or 503 with
 * `qwen_health saturated=503;`) and "loading" (503), which is also the
 * answer of a worker whose engine failed to start (see the error log).
 */
static ngx_int_t
ngx_http_qwen_health(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx)
{
    int                        status;
    qwen_engine_stats          stats;
    ngx_http_qwen_loc_conf_t  *qlcf;

    qlcf = ctx->conf;

    if (qlcf->model->engine == NULL) {
        status = qp_health_body(NULL, -1, 0, &ctx->out);

    } else {
        qwen_engine_get_stats(qlcf->model->engine, &stats);
        status = qp_health_body(&stats,
                                (int) ngx_http_qwen_admit_full(qlcf->model),
                                (int) qlcf->health_saturated_503,
                                &ctx->out);
    }

    if (status < 0) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "qwen: cannot format the health answer (out of "
                      "memory)");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_qwen_send_body(r, ctx, (ngx_uint_t) status,
                                   ngx_http_qwen_json, ctx->out.data,
                                   ctx->out.len);
}


/* GET /metrics: every worker's counters and engine gauges, summed. */
static ngx_int_t
ngx_http_qwen_metrics(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx)
{
    qp_metrics  m;

    if (ngx_http_qwen_metrics_collect((ngx_cycle_t *) ngx_cycle, &m)
        != NGX_OK)
    {
        return ngx_http_qwen_send_error(r, ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                        "server_error",
                                        "no metrics zone in this "
                                        "configuration", 0);
    }

    return ngx_http_qwen_send_out(r, ctx, qp_metrics_text(&m, &ctx->out),
                                  "the metrics", QP_METRICS_CONTENT_TYPE);
}


static ngx_int_t
ngx_http_qwen_tokenize(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx)
{
    qp_error                   err;
    ngx_http_qwen_loc_conf_t  *qlcf;

    qlcf = ctx->conf;

    ngx_memzero(&err, sizeof(qp_error));

    if (qp_tokenize_body((const char *) ctx->body, ctx->body_len, &qlcf->qp,
                         qlcf->model->tokenizer, &ctx->out, &err)
        != 0)
    {
        return ngx_http_qwen_send_qp_error(r, ctx, &err);
    }

    return ngx_http_qwen_send_out(r, ctx, 0, "the token ids",
                                  ngx_http_qwen_json);
}


static ngx_int_t
ngx_http_qwen_detokenize(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx)
{
    qp_error                   err;
    ngx_http_qwen_loc_conf_t  *qlcf;

    qlcf = ctx->conf;

    ngx_memzero(&err, sizeof(qp_error));

    if (qp_detokenize_body((const char *) ctx->body, ctx->body_len,
                           &qlcf->qp, qlcf->model->tokenizer, &ctx->out,
                           &err)
        != 0)
    {
        return ngx_http_qwen_send_qp_error(r, ctx, &err);
    }

    return ngx_http_qwen_send_out(r, ctx, 0, "the text", ngx_http_qwen_json);
}


/* Send ctx->out as a 200 answer, or log that formatting it failed (rc is
 * the protocol layer's return code: 0 or -1 out of memory). */
static ngx_int_t
ngx_http_qwen_send_out(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx,
    int rc, const char *what, const char *content_type)
{
    if (rc != 0) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "qwen: cannot format %s for \"%V\" (out of memory)",
                      what, &r->uri);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_qwen_send_body(r, ctx, NGX_HTTP_OK, content_type,
                                   ctx->out.data, ctx->out.len);
}
