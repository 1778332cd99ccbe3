
/*
 * ngx_http_qwen_filter.c - errors that nginx itself answers in a qwen
 * location (413 past client_max_body_size, 400 for a broken request, 408,
 * 429/503 from limit_req, 500...) get a JSON body in the location's API
 * error format instead of nginx's HTML page, so clients can parse them.
 * Responses the module makes itself pass through untouched.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_qwen_module.h"


static ngx_int_t ngx_http_qwen_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_qwen_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static void ngx_http_qwen_error_text(ngx_http_request_t *r,
    ngx_uint_t status, const char **type, u_char *buf, size_t size);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


ngx_int_t
ngx_http_qwen_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_qwen_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_qwen_body_filter;

    return NGX_OK;
}


static ngx_int_t
ngx_http_qwen_header_filter(ngx_http_request_t *r)
{
    u_char                     message[256];
    size_t                     len;
    qp_error                   err;
    const char                *type;
    ngx_http_qwen_ctx_t       *ctx;
    ngx_http_qwen_loc_conf_t  *qlcf;

    /* x-ratelimit-*-tokens on every answer where qwen_limit_tokens
     * applies, ours and nginx's own */
    if (r == r->main && ngx_http_qwen_quota_headers(r) != NGX_OK) {
        return NGX_ERROR;
    }

    if (r != r->main
        || r->headers_out.status < NGX_HTTP_BAD_REQUEST
        || r->headers_out.status == NGX_HTTP_CLIENT_CLOSED_REQUEST)
    {
        return ngx_http_next_header_filter(r);
    }

    qlcf = ngx_http_get_module_loc_conf(r, ngx_http_qwen_module);

    if (qlcf == NULL || qlcf->api == NULL) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_qwen_module);

    if (ctx != NULL && ctx->own_response) {
        return ngx_http_next_header_filter(r);
    }

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_qwen_ctx_t));
        if (ctx == NULL) {
            return NGX_ERROR;
        }

        ctx->request = r;
        ctx->conf = qlcf;

        ngx_http_set_ctx(r, ctx, ngx_http_qwen_module);
    }

    ngx_http_qwen_error_text(r, r->headers_out.status, &type, message,
                             sizeof(message));

    ngx_memzero(&err, sizeof(qp_error));
    qp_error_make(qlcf->api->error_api, (int) r->headers_out.status, type,
                  (const char *) message, 0, &err);

    len = ngx_strlen(err.body);

    ctx->error_body.data = ngx_pnalloc(r->pool, len);
    if (ctx->error_body.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(ctx->error_body.data, err.body, len);
    ctx->error_body.len = len;
    ctx->replace_body = 1;

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.charset.len = 0;

    r->headers_out.content_length_n = len;

    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    ngx_http_clear_accept_ranges(r);
    ngx_http_clear_last_modified(r);
    ngx_http_clear_etag(r);

    return ngx_http_next_header_filter(r);
}


/* Swallow nginx's HTML page and send the JSON body in its place. */
static ngx_int_t
ngx_http_qwen_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_buf_t            *b;
    ngx_uint_t            last;
    ngx_chain_t          *cl, out;
    ngx_http_qwen_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_qwen_module);

    if (ctx == NULL || !ctx->replace_body || in == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    last = 0;

    for (cl = in; cl; cl = cl->next) {
        if (cl->buf->last_buf || cl->buf->last_in_chain) {
            last = 1;
        }

        cl->buf->pos = cl->buf->last;
        cl->buf->file_pos = cl->buf->file_last;
    }

    if (!last || ctx->replaced) {
        return NGX_OK;
    }

    ctx->replaced = 1;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = ctx->error_body.data;
    b->last = ctx->error_body.data + ctx->error_body.len;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_next_body_filter(r, &out);
}


static void
ngx_http_qwen_error_text(ngx_http_request_t *r, ngx_uint_t status,
    const char **type, u_char *buf, size_t size)
{
    ngx_http_core_loc_conf_t  *clcf;

    *type = status >= NGX_HTTP_INTERNAL_SERVER_ERROR
            ? "server_error" : "invalid_request_error";

    switch (status) {

    case NGX_HTTP_REQUEST_ENTITY_TOO_LARGE:
        clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);
        (void) ngx_snprintf(buf, size, "the request body is too large: "
                            "the limit is %O bytes (client_max_body_size)%Z",
                            clcf->client_max_body_size);
        return;

    case NGX_HTTP_NOT_FOUND:
        *type = "not_found_error";
        (void) ngx_snprintf(buf, size, "not found%Z");
        return;

    case NGX_HTTP_REQUEST_TIME_OUT:
        (void) ngx_snprintf(buf, size, "the request was not received in "
                            "time%Z");
        return;

    case NGX_HTTP_LENGTH_REQUIRED:
        (void) ngx_snprintf(buf, size, "a Content-Length header is "
                            "required%Z");
        return;

    case NGX_HTTP_REQUEST_URI_TOO_LARGE:
        (void) ngx_snprintf(buf, size, "the request URI is too long%Z");
        return;

    case NGX_HTTP_TOO_MANY_REQUESTS:
        *type = "overloaded_error";
        (void) ngx_snprintf(buf, size, "too many requests%Z");
        return;

    case NGX_HTTP_SERVICE_UNAVAILABLE:
        *type = "overloaded_error";
        (void) ngx_snprintf(buf, size, "the service is unavailable%Z");
        return;

    case NGX_HTTP_INTERNAL_SERVER_ERROR:
        (void) ngx_snprintf(buf, size, "internal server error (see the "
                            "error log)%Z");
        return;

    default:
        (void) ngx_snprintf(buf, size, "%s (HTTP %ui)%Z",
                            status >= NGX_HTTP_INTERNAL_SERVER_ERROR
                            ? "server error" : "bad request", status);
        return;
    }
}
