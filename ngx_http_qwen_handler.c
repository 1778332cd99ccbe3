
/*
 * ngx_http_qwen_handler.c - the request side: route a URI to an endpoint
 * (ngx_http_qwen_endpoints.c) and read its body, submit a generation to
 * this worker's engine, send its tokens back as the protocol layer formats
 * them and end the request; and the helpers every answer is sent with.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_qwen_module.h"


#define NGX_HTTP_QWEN_EVENTS       32
#define NGX_HTTP_QWEN_READY_MAX    1024
#define NGX_HTTP_QWEN_MIN_BUF      4096


static ngx_http_qwen_route_t *ngx_http_qwen_route(ngx_http_request_t *r,
    ngx_http_qwen_loc_conf_t *qlcf, ngx_str_t *id);
static ngx_int_t ngx_http_qwen_custom_attributes(ngx_http_request_t *r);
static void ngx_http_qwen_body_handler(ngx_http_request_t *r);
static u_char *ngx_http_qwen_read_body(ngx_http_request_t *r, size_t *len);
static ngx_int_t ngx_http_qwen_submit_error(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx, int rc, char *err);
static ngx_int_t ngx_http_qwen_busy(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx, const char *fmt, ...);

static void ngx_http_qwen_process(ngx_http_qwen_ctx_t *ctx);
static void ngx_http_qwen_check_blocked(ngx_http_qwen_ctx_t *ctx,
    ngx_int_t rc);
static void ngx_http_qwen_write_handler(ngx_http_request_t *r);
static void ngx_http_qwen_timeout_handler(ngx_event_t *ev);

static void ngx_http_qwen_complete(ngx_http_qwen_ctx_t *ctx,
    qwen_finish finish);
static void ngx_http_qwen_abort(ngx_http_qwen_ctx_t *ctx, ngx_uint_t status,
    const char *type, const char *message, const char *reason);
static void ngx_http_qwen_finalize(ngx_http_qwen_ctx_t *ctx, ngx_int_t rc);
static void ngx_http_qwen_stop(ngx_http_qwen_ctx_t *ctx, const char *reason);
static void ngx_http_qwen_cancel(void *data);
static void ngx_http_qwen_free_qp(void *data);

static ngx_int_t ngx_http_qwen_send_stream_header(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx);
static ngx_int_t ngx_http_qwen_send_header(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx, ngx_uint_t status, const char *content_type,
    off_t content_length);
static ngx_int_t ngx_http_qwen_output(ngx_http_qwen_ctx_t *ctx,
    const char *data, size_t len, ngx_uint_t last);
static ngx_int_t ngx_http_qwen_add_header(ngx_http_request_t *r,
    ngx_str_t *key, ngx_str_t *value);


static ngx_str_t  ngx_http_qwen_json_type = ngx_string("application/json");


/* -------------------------------------------------------------- routing */

ngx_int_t
ngx_http_qwen_handler(ngx_http_request_t *r)
{
    u_char                    *p;
    ngx_int_t                  rc;
    ngx_http_cleanup_t        *hcln;
    ngx_pool_cleanup_t        *cln;
    ngx_http_qwen_ctx_t       *ctx;
    ngx_http_qwen_route_t     *route;
    ngx_http_qwen_loc_conf_t  *qlcf;

    qlcf = ngx_http_get_module_loc_conf(r, ngx_http_qwen_module);

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_qwen_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_qwen_free_qp;
    cln->data = ctx;

    /* runs before the access log is written, so a client that went away
     * is logged with $qwen_finish_reason "cancelled" */
    hcln = ngx_http_cleanup_add(r, 0);
    if (hcln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    hcln->handler = ngx_http_qwen_cancel;
    hcln->data = ctx;

    ctx->request = r;
    ctx->conf = qlcf;

    ngx_http_set_ctx(r, ctx, ngx_http_qwen_module);

    if (qlcf->api->custom_attributes
        && ngx_http_qwen_custom_attributes(r) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    route = ngx_http_qwen_route(r, qlcf, &ctx->id);

    if (route == NULL || !(r->method & route->methods)) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        p = ngx_pnalloc(r->pool, r->uri.len + 128);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (route == NULL) {
            (void) ngx_snprintf(p, r->uri.len + 128,
                                "unknown endpoint \"%V\"%Z", &r->uri);
            return ngx_http_qwen_send_error(r, ctx, NGX_HTTP_NOT_FOUND,
                                            "not_found_error",
                                            (const char *) p, 0);
        }

        ctx->route = route;

        (void) ngx_snprintf(p, r->uri.len + 128,
                            "method %V is not allowed for \"%V\": use %V%Z",
                            &r->method_name, &r->uri, &route->allow);
        return ngx_http_qwen_send_error(r, ctx, NGX_HTTP_NOT_ALLOWED,
                                        "invalid_request_error",
                                        (const char *) p, 0);
    }

    ctx->route = route;
    ctx->api = route->api;

    if ((route->flags & NGX_HTTP_QWEN_ENGINE) && ngx_http_qwen_draining) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        ngx_http_qwen_metrics_refused(QP_REFUSED_SHUTDOWN);

        return ngx_http_qwen_send_error(r, ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                        "server_error",
                                        "the server is shutting down",
                                        qlcf->retry_after);
    }

    if ((route->flags & NGX_HTTP_QWEN_ENGINE)
        && qlcf->model->engine == NULL)
    {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_http_qwen_send_error(r, ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                        "server_error",
                                        "the model's engine is not running "
                                        "in this worker (see the error log)",
                                        0);
    }

    if (route->flags & NGX_HTTP_QWEN_BODY) {
        rc = ngx_http_read_client_request_body(r, ngx_http_qwen_body_handler);

        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
            return rc;
        }

        return NGX_DONE;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    return route->handler(r, ctx);
}


/* The endpoint is chosen by how the URI ends, so a location may serve any
 * prefix ("/v1/", "/openai/v1/"). Routes are tried in table order. */
static ngx_http_qwen_route_t *
ngx_http_qwen_route(ngx_http_request_t *r, ngx_http_qwen_loc_conf_t *qlcf,
    ngx_str_t *id)
{
    u_char                 *p, *last;
    ngx_http_qwen_route_t  *route;

    last = r->uri.data + r->uri.len;

    for (route = qlcf->api->routes; route->handler; route++) {

        if (route->flags & NGX_HTTP_QWEN_ANY) {
            return route;
        }

        if (route->flags & NGX_HTTP_QWEN_ROOT) {
            if ((r->uri.len == 1 && r->uri.data[0] == '/')
                || (r->uri.len == qlcf->location.len
                    && ngx_strncmp(r->uri.data, qlcf->location.data,
                                   r->uri.len) == 0))
            {
                return route;
            }

            continue;
        }

        if (route->flags & NGX_HTTP_QWEN_ID) {
            p = ngx_strlcasestrn(r->uri.data, last, route->suffix.data,
                                 route->suffix.len - 1);
            if (p == NULL) {
                continue;
            }

            p += route->suffix.len;

            if (p >= last) {
                continue;
            }

            id->data = p;
            id->len = last - p;
            return route;
        }

        if (r->uri.len >= route->suffix.len
            && ngx_strncmp(last - route->suffix.len, route->suffix.data,
                           route->suffix.len) == 0)
        {
            return route;
        }
    }

    return NULL;
}


/*
 * SageMaker hands the caller's CustomAttributes to the container in this
 * header and gives the caller back the one the container answers with: echo
 * it, so a caller can match answers to requests (and see it in
 * $http_x_amzn_sagemaker_custom_attributes in access logs).
 */
static ngx_int_t
ngx_http_qwen_custom_attributes(ngx_http_request_t *r)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;
    static ngx_str_t  name = ngx_string("X-Amzn-SageMaker-Custom-Attributes");

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NGX_OK;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == name.len
            && ngx_strncasecmp(h[i].key.data, name.data, name.len) == 0)
        {
            return ngx_http_qwen_add_header(r, &name, &h[i].value);
        }
    }
}


/* The body is in: run the endpoint and finalize unless it goes on. */
static void
ngx_http_qwen_body_handler(ngx_http_request_t *r)
{
    ngx_int_t             rc;
    ngx_http_qwen_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_qwen_module);

    ctx->body = ngx_http_qwen_read_body(r, &ctx->body_len);

    if (ctx->body == NULL) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;

    } else {
        rc = ctx->route->handler(r, ctx);
    }

    if (rc != NGX_DONE) {
        ngx_http_qwen_finalize(ctx, rc);
    }
}


/* ----------------------------------------------------------- generation */

/*
 * Parse the body, submit it to the engine and, for streams, send the
 * header at once. Returns NGX_DONE while the engine works on the request,
 * else the code to finalize the request with.
 */
ngx_int_t
ngx_http_qwen_generate(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx)
{
    int                        rc;
    char                       err[QWEN_ERR_LEN];
    u_char                    *id;
    qp_error                   perr;
    ngx_int_t                  nrc;
    ngx_uint_t                 held, capacity;
    const char                *prefix;
    ngx_http_qwen_model_t     *m;
    ngx_http_qwen_route_t     *route;
    ngx_http_qwen_loc_conf_t  *qlcf;
    const qwen_request_params *params;

    qlcf = ctx->conf;
    route = ctx->route;
    m = qlcf->model;

    ngx_memzero(&perr, sizeof(qp_error));

    prefix = route->id_prefix;

    if (route->flags & NGX_HTTP_QWEN_PICK) {
        /* SageMaker's /invocations: a chat body or a completion body */
        ctx->api = qp_sagemaker_api((const char *) ctx->body, ctx->body_len,
                                    &perr);

        if (ctx->api == QP_API_COUNT) {
            return ngx_http_qwen_send_qp_error(r, ctx, &perr);
        }

        prefix = ctx->api == QP_OPENAI_CHAT ? "chatcmpl-" : "cmpl-";
    }

    if (qp_parse(ctx->api, (const char *) ctx->body, ctx->body_len,
                 &qlcf->qp, m->tokenizer, &ctx->preq, &perr)
        != 0)
    {
        /* Ollama's "load the model" request is answered here too (200) */
        return ngx_http_qwen_send_qp_error(r, ctx, &perr);
    }

    ctx->stream = qp_request_stream(ctx->preq) ? 1 : 0;

    id = ngx_pnalloc(r->pool, 64);
    if (id == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    (void) ngx_snprintf(id, 64, "%s%08xD%08xD%08xD%Z", prefix,
                        (uint32_t) ngx_random(), (uint32_t) ngx_random(),
                        (uint32_t) ngx_random());

    ctx->resp = qp_response_new(ctx->preq, m->tokenizer, &qlcf->qp,
                                (const char *) id, ngx_time());
    if (ctx->resp == NULL) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "qwen: cannot create the response");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (m->engine == NULL) {
        return ngx_http_qwen_submit_error(r, ctx, QWEN_E_SHUTDOWN,
                                          (char *) "the engine is stopping");
    }

    /* qwen_limit_tokens: the prompt and max_tokens come out of the key's
     * budget before the engine sees the request */
    params = qp_request_params(ctx->preq);

    if (ngx_http_qwen_quota_reserve(r, ctx, params->n_prompt,
                                    params->max_tokens, &nrc)
        != NGX_OK)
    {
        return nrc;
    }

    /* refused only when every worker's slots and queue are full */
    if (ngx_http_qwen_admit(ctx, &held, &capacity) == NGX_BUSY) {
        ngx_http_qwen_quota_settle(ctx, 0);

        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "qwen: server full (%ui of %ui requests across "
                      "workers), answering %ui", held, capacity,
                      ctx->conf->queue_full_status);

        return ngx_http_qwen_busy(r, ctx, "the server is busy: its workers "
                                  "hold %ui requests, as many as their "
                                  "slots and queues take", held);
    }

    err[0] = '\0';

    rc = qwen_submit(m->engine, params, ctx, &ctx->req, err, sizeof(err));
    if (rc != 0) {
        ctx->req = NULL;
        ngx_http_qwen_admit_release(ctx);
        /* nothing was computed: the whole reservation goes back */
        ngx_http_qwen_quota_settle(ctx, 0);
        return ngx_http_qwen_submit_error(r, ctx, rc, err);
    }

    /* other workers' /metrics see it queued or running at once */
    ngx_http_qwen_metrics_refresh((ngx_cycle_t *) ngx_cycle);

    /* a drain waits for it, or ends it at qwen_drain_timeout */
    ngx_http_qwen_drain_add(ctx);

    /*
     * The timer is not cancelable: a worker told to quit gracefully (reload,
     * `nginx -s quit`) stays until its generations have finished.
     */

    ctx->timer.handler = ngx_http_qwen_timeout_handler;
    ctx->timer.data = ctx;
    ctx->timer.log = r->connection->log;
    ngx_add_timer(&ctx->timer, qlcf->timeout);

    /* a client that goes away cancels its sequence */
    r->read_event_handler = ngx_http_test_reading;

    if (!ctx->stream) {
        return NGX_DONE;
    }

    nrc = ngx_http_qwen_send_stream_header(r, ctx);

    if (nrc == NGX_ERROR || nrc > NGX_OK) {
        return nrc;
    }

    ngx_http_qwen_check_blocked(ctx, nrc);

    return NGX_DONE;
}


static ngx_int_t
ngx_http_qwen_submit_error(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx,
    int rc, char *err)
{
    qwen_engine_stats          stats;
    ngx_http_qwen_loc_conf_t  *qlcf;

    qlcf = ctx->conf;

    switch (rc) {

    case QWEN_E_QUEUE_FULL:
        /* this worker's engine (a worker without a zone slot, or past the
         * models the zone counts) */
        qwen_engine_get_stats(qlcf->model->engine, &stats);

        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "qwen: queue full (%d running, %d waiting), "
                      "answering %ui", stats.running, stats.waiting,
                      qlcf->queue_full_status);

        return ngx_http_qwen_busy(r, ctx, "the server is busy: all %d slots "
                                  "are generating and %d requests are "
                                  "waiting", stats.n_slots, stats.waiting);

    case QWEN_E_TOO_LONG:
    case QWEN_E_INVALID:
        return ngx_http_qwen_send_error(r, ctx, NGX_HTTP_BAD_REQUEST,
                                        "invalid_request_error", err, 0);

    case QWEN_E_SHUTDOWN:
        ngx_http_qwen_metrics_refused(QP_REFUSED_SHUTDOWN);

        return ngx_http_qwen_send_error(r, ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                        "server_error",
                                        "the server is shutting down",
                                        qlcf->retry_after);

    default:
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "qwen: qwen_submit() failed (%d): %s", rc, err);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
}


/* The refusal of a full server (this worker's engine, or every worker's
 * slots and queues: ngx_http_qwen_admit): qwen_queue_full_status with
 * Retry-After, the message saying which, and the busy refusal counted. */
static ngx_int_t
ngx_http_qwen_busy(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx,
    const char *fmt, ...)
{
    u_char                    *p, *last;
    va_list                    args;
    ngx_http_qwen_loc_conf_t  *qlcf;

    qlcf = ctx->conf;

    ngx_http_qwen_metrics_refused(QP_REFUSED_BUSY);

    p = ngx_pnalloc(r->pool, 256);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    va_start(args, fmt);
    last = ngx_vslprintf(p, p + 255, fmt, args);
    va_end(args);

    last = ngx_slprintf(last, p + 255, "; retry after %T s",
                        qlcf->retry_after);
    *last = '\0';

    return ngx_http_qwen_send_error(r, ctx, qlcf->queue_full_status,
                                    "overloaded_error", (const char *) p,
                                    qlcf->retry_after);
}


/* The body in one NUL-terminated piece, from memory or the temp file. */
static u_char *
ngx_http_qwen_read_body(ngx_http_request_t *r, size_t *len)
{
    u_char       *body, *p;
    off_t         size, n;
    ssize_t       rd;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    *len = 0;
    size = 0;

    if (r->request_body != NULL) {
        for (cl = r->request_body->bufs; cl; cl = cl->next) {
            size += ngx_buf_size(cl->buf);
        }
    }

    body = ngx_pnalloc(r->pool, (size_t) size + 1);
    if (body == NULL) {
        return NULL;
    }

    p = body;

    if (r->request_body != NULL) {
        for (cl = r->request_body->bufs; cl; cl = cl->next) {
            b = cl->buf;

            if (ngx_buf_in_memory(b)) {
                p = ngx_cpymem(p, b->pos, b->last - b->pos);
                continue;
            }

            if (!b->in_file) {
                continue;
            }

            n = b->file_last - b->file_pos;

            rd = ngx_read_file(b->file, p, (size_t) n, b->file_pos);
            if (rd != (ssize_t) n) {
                ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                              "qwen: cannot read the request body from "
                              "\"%V\" (%z of %O bytes)",
                              &b->file->name, rd, n);
                return NULL;
            }

            p += n;
        }
    }

    *p = '\0';
    *len = p - body;

    return body;
}


/* ------------------------------------------------------ engine to client */

/*
 * The event loop never waits on inference: the engine wakes it through its
 * eventfd, whose handler calls this to drain the requests with news. One
 * at a time, as finalizing one request may end others (HTTP/2). A slow
 * client pauses its sequence; a gone client cancels it.
 */
void
ngx_http_qwen_engine_events(ngx_http_qwen_model_t *m)
{
    ngx_uint_t            i;
    qwen_request         *req;
    ngx_connection_t     *c;
    ngx_http_request_t   *r;
    ngx_http_qwen_ctx_t  *ctx;

    for (i = 0; i < NGX_HTTP_QWEN_READY_MAX; i++) {

        if (m->engine == NULL || qwen_engine_ready(m->engine, &req, 1) == 0) {
            return;
        }

        ctx = qwen_request_user_data(req);

        if (ctx == NULL || ctx->req != req) {
            continue;
        }

        r = ctx->request;
        c = r->connection;

        ngx_http_set_log_request(c->log, r);

        ngx_http_qwen_process(ctx);

        ngx_http_run_posted_requests(c);
    }

    /* more news than one round should take: let other events run first */

    if (m->notify != NULL) {
        ngx_post_event(m->notify->read, &ngx_posted_events);
    }
}


static void
ngx_http_qwen_process(ngx_http_qwen_ctx_t *ctx)
{
    int                rc;
    size_t             n;
    ngx_int_t          nrc;
    qwen_finish        finish;
    qwen_token_event   ev[NGX_HTTP_QWEN_EVENTS];

    if (ctx->finalized || ctx->req == NULL || ctx->paused) {
        /* a paused request is drained when the client catches up */
        return;
    }

    qp_buf_reset(&ctx->out);
    finish = QWEN_FINISH_NONE;

    for ( ;; ) {
        n = qwen_request_poll(ctx->req, ev, NGX_HTTP_QWEN_EVENTS, &finish);
        qp_itl_observe(&ctx->itl, ev, n);

        if (n > 0 && !ctx->stopped) {
            rc = qp_response_tokens(ctx->resp, ev, n, &ctx->out);

            if (rc < 0) {
                ngx_log_error(NGX_LOG_ALERT, ctx->request->connection->log,
                              0, "qwen: cannot format tokens (out of memory)");
                ngx_http_qwen_abort(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                    "server_error", "out of memory", "error");
                return;
            }

            if (rc == 1) {
                /* a stop string: the answer is complete */
                qwen_request_cancel(ctx->req);
                ctx->stopped = 1;
            }
        }

        if (finish != QWEN_FINISH_NONE || n < NGX_HTTP_QWEN_EVENTS) {
            break;
        }
    }

    if (finish != QWEN_FINISH_NONE) {
        ngx_http_qwen_complete(ctx, finish);
        return;
    }

    if (ctx->out.len == 0) {
        return;
    }

    nrc = ngx_http_qwen_output(ctx, ctx->out.data, ctx->out.len, 0);

    if (nrc == NGX_ERROR) {
        ngx_http_qwen_finalize(ctx, NGX_ERROR);
        return;
    }

    ngx_http_qwen_check_blocked(ctx, nrc);
}


/* Backpressure: while the client's socket (or HTTP/2 window) is full, the
 * sequence is left out of engine steps; the write event resumes it. */
static void
ngx_http_qwen_check_blocked(ngx_http_qwen_ctx_t *ctx, ngx_int_t rc)
{
    ngx_event_t               *wev;
    ngx_http_request_t        *r;
    ngx_http_core_loc_conf_t  *clcf;

    r = ctx->request;

    if (rc != NGX_AGAIN && ctx->busy == NULL) {
        return;
    }

    if (!ctx->paused && ctx->req != NULL) {
        ctx->paused = 1;
        qwen_request_pause(ctx->req, 1);
    }

    r->write_event_handler = ngx_http_qwen_write_handler;

    wev = r->connection->write;
    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (!wev->delayed && !wev->timer_set) {
        ngx_add_timer(wev, clcf->send_timeout);
    }

    if (ngx_handle_write_event(wev, clcf->send_lowat) != NGX_OK) {
        ngx_http_qwen_finalize(ctx, NGX_ERROR);
    }
}


static void
ngx_http_qwen_write_handler(ngx_http_request_t *r)
{
    ngx_int_t                  rc;
    ngx_chain_t               *out;
    ngx_event_t               *wev;
    ngx_connection_t          *c;
    ngx_http_qwen_ctx_t       *ctx;
    ngx_http_core_loc_conf_t  *clcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_qwen_module);
    c = r->connection;
    wev = c->write;

    if (ctx == NULL || ctx->finalized) {
        return;
    }

    if (wev->timedout) {
        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT,
                      "qwen: client timed out reading the stream");
        c->timedout = 1;
        ngx_http_qwen_finalize(ctx, NGX_HTTP_REQUEST_TIME_OUT);
        return;
    }

    rc = ngx_http_output_filter(r, NULL);

    out = NULL;
    ngx_chain_update_chains(r->pool, &ctx->free, &ctx->busy, &out,
                            (ngx_buf_tag_t) &ngx_http_qwen_module);

    if (rc == NGX_ERROR) {
        ngx_http_qwen_finalize(ctx, NGX_ERROR);
        return;
    }

    if (rc == NGX_AGAIN || ctx->busy != NULL) {
        clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

        if (!wev->delayed && !wev->timer_set) {
            ngx_add_timer(wev, clcf->send_timeout);
        }

        if (ngx_handle_write_event(wev, clcf->send_lowat) != NGX_OK) {
            ngx_http_qwen_finalize(ctx, NGX_ERROR);
        }

        return;
    }

    if (wev->timer_set) {
        ngx_del_timer(wev);
    }

    r->write_event_handler = ngx_http_request_empty_handler;

    if (ctx->paused) {
        ctx->paused = 0;

        if (ctx->req != NULL) {
            qwen_request_pause(ctx->req, 0);
        }
    }

    /* events that arrived while paused were left in the engine */
    ngx_http_qwen_process(ctx);
}


static void
ngx_http_qwen_timeout_handler(ngx_event_t *ev)
{
    ngx_connection_t     *c;
    ngx_http_request_t   *r;
    ngx_http_qwen_ctx_t  *ctx;

    ctx = ev->data;
    r = ctx->request;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    ngx_log_error(NGX_LOG_ERR, c->log, 0,
                  "qwen: request timed out after %M ms (qwen_timeout)",
                  ctx->conf->timeout);

    ngx_http_qwen_abort(ctx, NGX_HTTP_SERVICE_UNAVAILABLE, "server_error",
                        "the request timed out (qwen_timeout)", "timeout");

    ngx_http_run_posted_requests(c);
}


/* ---------------------------------------------------- the end of a request */

/*
 * The engine has ended the generation (finish says how): stop it, then
 * send the end of the answer (the last chunk of a stream, or the whole
 * body) and finalize.
 */
static void
ngx_http_qwen_complete(ngx_http_qwen_ctx_t *ctx, qwen_finish finish)
{
    int                   rc;
    ngx_int_t             nrc;
    ngx_uint_t            status;
    const char           *reason;
    ngx_http_request_t   *r;

    r = ctx->request;

    /* for the usage in the last chunk; the engine has ended the request,
     * so these numbers are final and ngx_http_qwen_stop reads the same */
    ngx_memzero(&ctx->timing, sizeof(qwen_request_timing));
    qwen_request_get_timing(ctx->req, &ctx->timing);

    if (finish == QWEN_FINISH_ERROR) {
        status = NGX_HTTP_INTERNAL_SERVER_ERROR;
        rc = qp_response_error(ctx->resp, (int) status, "server_error",
                               "the engine failed while generating",
                               &ctx->out);

    } else {
        status = NGX_HTTP_OK;
        rc = qp_response_finish(ctx->resp, finish, &ctx->timing, &ctx->out);
    }

    reason = NULL;

    if (finish != QWEN_FINISH_ERROR && rc == 0) {
        reason = qp_response_finish_reason(ctx->resp);
    }

    ngx_http_qwen_stop(ctx, reason ? reason : "error");

    if (finish == QWEN_FINISH_REPETITION) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "qwen: generation stopped for repetition after %uz "
                      "tokens: its last tokens repeat a span of %d "
                      "token%s (qwen_repetition_guard %i); the answer ends "
                      "with finish_reason \"length\"",
                      ctx->timing.n_generated, ctx->timing.repeat_span,
                      ctx->timing.repeat_span == 1 ? "" : "s",
                      ctx->conf->repetition_guard);
    }

    if (rc != 0) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "qwen: cannot format the end of the response");
        nrc = ctx->header_sent ? NGX_ERROR : NGX_HTTP_INTERNAL_SERVER_ERROR;

    } else if (ctx->stream && ctx->header_sent) {
        nrc = ngx_http_qwen_output(ctx, ctx->out.data, ctx->out.len, 1);

    } else {
        nrc = ngx_http_qwen_send_body(r, ctx, status,
                                      qp_response_content_type(ctx->resp),
                                      ctx->out.data, ctx->out.len);
    }

    ngx_http_qwen_finalize(ctx, nrc);
}


/*
 * An error after submit (qwen_timeout, out of memory): stop the generation,
 * counted with this reason, then answer with an error (an error event for
 * a stream that began) and finalize.
 */
static void
ngx_http_qwen_abort(ngx_http_qwen_ctx_t *ctx, ngx_uint_t status,
    const char *type, const char *message, const char *reason)
{
    ngx_int_t            rc;
    ngx_http_request_t  *r;

    r = ctx->request;

    ngx_http_qwen_stop(ctx, reason);

    if (!ctx->header_sent) {
        rc = ngx_http_qwen_send_error(r, ctx, status, type, message, 0);

    } else if (!ctx->stream || ctx->resp == NULL) {
        rc = NGX_ERROR;

    } else {
        qp_buf_reset(&ctx->out);

        rc = NGX_ERROR;

        if (qp_response_error(ctx->resp, (int) status, type, message,
                              &ctx->out)
            == 0)
        {
            rc = ngx_http_qwen_output(ctx, ctx->out.data, ctx->out.len, 1);
        }
    }

    ngx_http_qwen_finalize(ctx, rc);
}


/* A drain's deadline (qwen_drain_timeout): end the generation with an
 * error, an error event for a stream that began. */
void
ngx_http_qwen_shutdown(ngx_http_qwen_ctx_t *ctx)
{
    ngx_connection_t  *c;

    c = ctx->request->connection;

    ngx_http_set_log_request(c->log, ctx->request);

    ngx_log_error(NGX_LOG_WARN, c->log, 0,
                  "qwen: generation stopped: the server is shutting down "
                  "and qwen_drain_timeout has passed");

    ngx_http_qwen_abort(ctx, NGX_HTTP_SERVICE_UNAVAILABLE, "server_error",
                        "the server is shutting down: the generation was "
                        "stopped at qwen_drain_timeout", "shutdown");

    ngx_http_run_posted_requests(c);
}


/* Finalize once; a generation still running is cancelled first (the
 * client is gone or the output failed). */
static void
ngx_http_qwen_finalize(ngx_http_qwen_ctx_t *ctx, ngx_int_t rc)
{
    if (ctx->finalized) {
        return;
    }

    ctx->finalized = 1;

    ngx_http_qwen_cancel(ctx);

    ngx_http_finalize_request(ctx->request, rc);
}


/*
 * The generation ends here, however it ended: the qwen_timeout timer goes,
 * the engine request is given back (a running one is cancelled: its slot
 * is free within one step), and the request is counted with this reason
 * in the metrics zone and the $qwen_ variables. Later calls find no
 * engine request and do nothing.
 */
static void
ngx_http_qwen_stop(ngx_http_qwen_ctx_t *ctx, const char *reason)
{
    if (ctx->timer.timer_set) {
        ngx_del_timer(&ctx->timer);
    }

    if (ctx->req == NULL) {
        return;
    }

    ngx_memzero(&ctx->timing, sizeof(qwen_request_timing));
    qwen_request_get_timing(ctx->req, &ctx->timing);

    qwen_request_release(ctx->req);
    ctx->req = NULL;

    ngx_http_qwen_admit_release(ctx);

    ctx->done = 1;
    ctx->finish_reason = reason;
    ctx->completion_tokens = ctx->timing.n_generated;

    if (ctx->resp != NULL) {
        ctx->completion_tokens = qp_response_completion_tokens(ctx->resp);
    }

    /* the token quota keeps what was computed, the rest goes back */
    ngx_http_qwen_quota_settle(ctx, ctx->timing.n_prompt
                                    + ctx->completion_tokens);

    ngx_http_qwen_metrics_request(ctx);

    ngx_http_qwen_drain_remove(ctx);

    /* one line per generation, however it ended (a client gone too) */
    ngx_log_error(NGX_LOG_INFO, ctx->request->connection->log, 0,
                  "qwen: done: %uz prompt tokens (%uz cached), %uz "
                  "generated, queued %.1f ms, first token %.1f ms, total "
                  "%.1f ms, %s",
                  ctx->timing.n_prompt, ctx->timing.n_cached,
                  ctx->timing.n_generated,
                  ctx->timing.queued_ms, ctx->timing.first_token_ms,
                  ctx->timing.total_ms, reason);
}


/*
 * Stop a generation still running, counted as "cancelled". This is the
 * request's cleanup: nginx runs it when the request ends, before the
 * access log line, also when the client went away (a closed connection,
 * an HTTP/2 RST_STREAM) and nginx finalized the request itself.
 */
static void
ngx_http_qwen_cancel(void *data)
{
    ngx_http_qwen_ctx_t  *ctx = data;

    ngx_http_qwen_stop(ctx, "cancelled");
}


/*
 * The pool's cleanup, after the access log line (which reads the finish
 * reason from the response): free what the protocol layer allocated.
 */
static void
ngx_http_qwen_free_qp(void *data)
{
    ngx_http_qwen_ctx_t  *ctx = data;

    /* nothing left to stop once the request's cleanup has run; never
     * leave the engine a request whose ctx is freed */
    ngx_http_qwen_cancel(ctx);

    if (ctx->resp != NULL) {
        qp_response_free(ctx->resp);
        ctx->resp = NULL;
    }

    if (ctx->preq != NULL) {
        qp_request_free(ctx->preq);
        ctx->preq = NULL;
    }

    qp_buf_free(&ctx->out);
}


/* ------------------------------------------------------------ responses */

static ngx_int_t
ngx_http_qwen_send_stream_header(ngx_http_request_t *r,
    ngx_http_qwen_ctx_t *ctx)
{
    ngx_int_t         rc;
    static ngx_str_t  cache_control = ngx_string("Cache-Control");
    static ngx_str_t  no_cache = ngx_string("no-cache");
    static ngx_str_t  accel_buffering = ngx_string("X-Accel-Buffering");
    static ngx_str_t  no = ngx_string("no");

    if (ngx_http_qwen_add_header(r, &cache_control, &no_cache) != NGX_OK
        || ngx_http_qwen_add_header(r, &accel_buffering, &no) != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = ngx_http_qwen_send_header(r, ctx, NGX_HTTP_OK,
                                   qp_response_content_type(ctx->resp), -1);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    /* push the header out now: clients see the stream start at once */
    return ngx_http_qwen_output(ctx, NULL, 0, 0);
}


ngx_int_t
ngx_http_qwen_send_body(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx,
    ngx_uint_t status, const char *content_type, const char *data,
    size_t len)
{
    ngx_int_t  rc;

    rc = ngx_http_qwen_send_header(r, ctx, status, content_type, len);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_qwen_output(ctx, data, len, 1);
}


/* Our own header: ngx_http_qwen_filter.c lets it through as it is, and
 * from now on an error can only go into the body (ngx_http_qwen_abort). */
static ngx_int_t
ngx_http_qwen_send_header(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx,
    ngx_uint_t status, const char *content_type, off_t content_length)
{
    ctx->own_response = 1;
    ctx->header_sent = 1;

    r->headers_out.status = status;
    r->headers_out.content_type.len = ngx_strlen(content_type);
    r->headers_out.content_type.data = (u_char *) content_type;
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.content_length_n = content_length;

    return ngx_http_send_header(r);
}


/* An error body the protocol layer made (status 200 for Ollama's "load the
 * model" answer); status 0 means it could not make one. */
ngx_int_t
ngx_http_qwen_send_qp_error(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx,
    qp_error *err)
{
    if (err->status == 0) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "qwen: the protocol layer failed without an error "
                      "body for \"%V\"", &r->uri);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_qwen_send_body(r, ctx, (ngx_uint_t) err->status,
                                   (const char *) ngx_http_qwen_json_type.data,
                                   err->body, ngx_strlen(err->body));
}


ngx_int_t
ngx_http_qwen_send_error(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx,
    ngx_uint_t status, const char *type, const char *message,
    time_t retry_after)
{
    return ngx_http_qwen_send_error_code(r, ctx, status, type, NULL, message,
                                         retry_after);
}


/* The same with OpenAI's "code" field (Ollama's format has none). */
ngx_int_t
ngx_http_qwen_send_error_code(ngx_http_request_t *r, ngx_http_qwen_ctx_t *ctx,
    ngx_uint_t status, const char *type, const char *code,
    const char *message, time_t retry_after)
{
    u_char            *p;
    qp_error           err;
    ngx_str_t          value;
    static ngx_str_t   retry = ngx_string("Retry-After");
    static ngx_str_t   allow = ngx_string("Allow");

    ngx_memzero(&err, sizeof(qp_error));

    qp_error_make_code(ctx->conf->api->error_api, (int) status, type, code,
                       message, (int) retry_after, &err);

    if (retry_after > 0) {
        p = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        value.data = p;
        value.len = ngx_sprintf(p, "%T", retry_after) - p;

        if (ngx_http_qwen_add_header(r, &retry, &value) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (status == NGX_HTTP_NOT_ALLOWED && ctx->route != NULL) {
        if (ngx_http_qwen_add_header(r, &allow, &ctx->route->allow)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return ngx_http_qwen_send_body(r, ctx, err.status ? (ngx_uint_t) err.status
                                                      : status,
                                   (const char *) ngx_http_qwen_json_type.data,
                                   err.body, ngx_strlen(err.body));
}


/*
 * Send bytes with a flush, in buffers of our own that are reused once the
 * filters are done with them (a long stream does not grow the pool).
 */
static ngx_int_t
ngx_http_qwen_output(ngx_http_qwen_ctx_t *ctx, const char *data, size_t len,
    ngx_uint_t last)
{
    size_t               size;
    ngx_int_t            rc;
    ngx_buf_t           *b;
    ngx_chain_t         *cl;
    ngx_http_request_t  *r;

    r = ctx->request;

    cl = ngx_chain_get_free_buf(r->pool, &ctx->free);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    b = cl->buf;

    if (len > 0) {
        if (b->start == NULL || (size_t) (b->end - b->start) < len) {
            if (b->start != NULL) {
                (void) ngx_pfree(r->pool, b->start);
            }

            size = ngx_max(len, NGX_HTTP_QWEN_MIN_BUF);

            b->start = ngx_palloc(r->pool, size);
            if (b->start == NULL) {
                return NGX_ERROR;
            }

            b->end = b->start + size;
        }

        b->pos = b->start;
        b->last = ngx_cpymem(b->start, data, len);
        b->temporary = 1;

    } else {
        b->pos = b->start;
        b->last = b->start;
        b->temporary = 0;
    }

    b->memory = 0;
    b->in_file = 0;
    b->sync = 0;
    b->tag = (ngx_buf_tag_t) &ngx_http_qwen_module;
    b->flush = 1;
    b->last_buf = (last && r == r->main) ? 1 : 0;
    b->last_in_chain = last ? 1 : 0;

    rc = ngx_http_output_filter(r, cl);

    ngx_chain_update_chains(r->pool, &ctx->free, &ctx->busy, &cl,
                            (ngx_buf_tag_t) &ngx_http_qwen_module);

    return rc;
}


static ngx_int_t
ngx_http_qwen_add_header(ngx_http_request_t *r, ngx_str_t *key,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key = *key;
    h->value = *value;
    h->lowcase_key = NULL;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    return NGX_OK;
}
