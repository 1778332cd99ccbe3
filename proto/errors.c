/*
 * errors.c - the error bodies: OpenAI's {"error":{"message","type","param",
 * "code"}} (which vLLM and the operations endpoints share) and Ollama's
 * {"error":".."}, rendered into the fixed qp_error for failures before a
 * response begins. Response files frame the same bodies mid-stream.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "errors.h"

static const char *
type_for(int status)
{
    if (status == 404) {
        return "not_found_error";
    }
    if (status == 429 || status == 503) {
        return "overloaded_error";
    }
    return status < 500 ? "invalid_request_error" : "server_error";
}

static int
openai_body(qp_buf *b, const qp_error_info *e)
{
    if (qp_json_raw(b, "{\"error\":{\"message\":") != 0
        || qp_json_cstr(b, e->message) != 0
        || qp_json_raw(b, ",\"type\":") != 0
        || qp_json_cstr(b, e->type ? e->type : type_for(e->status)) != 0
        || qp_json_raw(b, ",\"param\":") != 0 || qp_json_cstr(b, e->param) != 0
        || qp_json_raw(b, ",\"code\":") != 0 || qp_json_cstr(b, e->code) != 0)
    {
        return -1;
    }
    if (e->retry_after_s > 0
        && qp_buf_printf(b, ",\"retry_after\":%d", e->retry_after_s) != 0)
    {
        return -1;
    }
    return qp_json_raw(b, "}}");
}

static int
ollama_body(qp_buf *b, const qp_error_info *e)
{
    if (qp_json_raw(b, "{\"error\":") != 0 || qp_json_cstr(b, e->message) != 0) {
        return -1;
    }
    if (e->retry_after_s > 0
        && qp_buf_printf(b, ",\"retry_after\":%d", e->retry_after_s) != 0)
    {
        return -1;
    }
    return qp_json_raw(b, "}");
}

const qp_error_style qp_openai_errors = {
    openai_body,
    "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\","
    "\"param\":null,\"code\":null}}"
};

const qp_error_style qp_ollama_errors = {
    ollama_body,
    "{\"error\":\"out of memory\"}"
};

void
qp_error_fill(qp_error *err, const qp_error_style *es, const qp_error_info *e)
{
    qp_error_info  cut = *e;
    qp_buf         b = { 0 };
    size_t         msg_len = strlen(e->message);
    char           msg[sizeof(err->body)];

    err->status = e->status;
    cut.message = msg;
    if (msg_len > sizeof(msg) - 1) {
        msg_len = sizeof(msg) - 1;
    }
    /* escapes can grow a message sixfold: halve it until the body fits */
    for (;;) {
        msg_len = qp_utf8_cut(e->message, msg_len, msg_len);
        memcpy(msg, e->message, msg_len);
        msg[msg_len] = '\0';
        qp_buf_reset(&b);
        if (es->body(&b, &cut) != 0) {
            break;
        }
        if (b.len < sizeof(err->body)) {
            memcpy(err->body, b.data, b.len + 1);
            qp_buf_free(&b);
            return;
        }
        msg_len /= 2;
    }
    qp_buf_free(&b);
    /* out of memory: a fixed body is still a valid answer */
    snprintf(err->body, sizeof(err->body), "%s", es->oom_body);
}

int
qp_fail(qp_error *err, const qp_error_style *es, int status, const char *type,
        const char *param, const char *code, const char *fmt, ...)
{
    char          msg[sizeof(err->body)];
    qp_error_info e = { status, type, param, code, msg, 0 };
    va_list       ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    qp_error_fill(err, es, &e);
    return -1;
}
