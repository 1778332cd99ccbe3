/*
 * response.c - the response half of the spine: token events go through the
 * text pipeline (stream_text.c); its text and tool calls become frames
 * through the qp_format of the request's API table row (streams) or
 * collect until qp_response_finish writes the whole body. Also keeps the
 * logprobs, token counts and finish reason.
 */
#include <stdlib.h>
#include <string.h>

#include "api.h"

/* ------------------------------------------------------------ the sink */

static int
flush_delta(qp_response *r)
{
    int rc;

    if (r->delta.len == 0) {
        return 0;
    }
    rc = r->fmt->delta(r, r->delta_ch, r->delta.data, r->delta.len, r->out);
    qp_buf_reset(&r->delta);
    return rc;
}

static int
on_text(void *ctx, qp_channel ch, const char *s, size_t n)
{
    qp_response *r = ctx;

    if (!r->stream) {
        return qp_buf_append(ch == QP_CH_REASONING ? &r->reasoning : &r->content, s, n);
    }
    /* one frame per channel run: a switch closes the previous run */
    if (r->delta.len > 0 && r->delta_ch != ch && flush_delta(r) != 0) {
        return -1;
    }
    r->delta_ch = ch;
    return qp_buf_append(&r->delta, s, n);
}

static int
on_tool_call(void *ctx, qp_tool_call *tc)
{
    qp_response  *r = ctx;
    qp_tool_call *calls;

    if (r->stream) {
        if (flush_delta(r) != 0) {
            return -1;
        }
        /* an API without tool calls never asks the pipeline for them */
        return r->fmt->tool_call ? r->fmt->tool_call(r, tc, r->n_calls_sent++, r->out) : 0;
    }
    calls = qp_grow(r->calls, r->n_calls, &r->cap_calls, sizeof(*calls), 4);
    if (calls == NULL) {
        return -1;
    }
    r->calls = calls;
    r->calls[r->n_calls++] = *tc;      /* take the strings */
    tc->name = NULL;
    tc->arguments = NULL;
    return 0;
}

static int
push_logprob(qp_response *r, const qwen_token_event *ev, size_t text_offset)
{
    qp_logprob *lp = qp_grow(r->lp, r->n_lp, &r->cap_lp, sizeof(*lp), 16);
    int         n_top = ev->n_top;

    if (lp == NULL) {
        return -1;
    }
    r->lp = lp;
    if (n_top < 0) {
        n_top = 0;
    }
    if (n_top > QWEN_MAX_TOP_LOGPROBS) {
        n_top = QWEN_MAX_TOP_LOGPROBS;
    }
    lp = &r->lp[r->n_lp++];
    lp->token = ev->token;
    lp->logprob = ev->logprob;
    lp->n_top = n_top;
    memcpy(lp->top_ids, ev->top_ids, (size_t) n_top * sizeof(int32_t));
    memcpy(lp->top_logprobs, ev->top_logprobs, (size_t) n_top * sizeof(float));
    lp->text_offset = text_offset;
    return 0;
}

/* Ollama's /api/generate "context": the prompt's ids, then each answer id. */
static int
push_context(qp_response *r, int32_t id)
{
    int32_t *ids = qp_grow(r->ctx_ids, r->n_ctx_ids, &r->cap_ctx_ids, sizeof(*ids), 256);

    if (ids == NULL) {
        return -1;
    }
    r->ctx_ids = ids;
    r->ctx_ids[r->n_ctx_ids++] = id;
    return 0;
}

/* ------------------------------------------------------------- the API */

qp_response *
qp_response_new(const qp_request *req, const qwen_tokenizer *tok,
                const qp_config *cfg, const char *id, time_t created)
{
    qp_response       *r;
    qp_text_options    opt;
    size_t             i;
    const qp_api_desc *d = qp_api_get(req->api);

    if (d == NULL || tok == NULL) {
        return NULL;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return NULL;
    }
    r->fmt = d->format;
    r->errors = d->errors;
    r->api = req->api;
    r->stream = req->stream;
    r->include_usage = req->stream && req->include_usage;
    r->logprobs = req->logprobs;
    r->top_logprobs = req->top_logprobs;
    r->reasoning_field = cfg->reasoning_field;
    r->n_prompt = req->prompt.n;
    r->tok = tok;
    r->created = created;
    r->id = strdup(id ? id : "");
    r->model = strdup(req->model ? req->model : cfg->model_name ? cfg->model_name : "qwen3");
    if (r->id == NULL || r->model == NULL) {
        qp_response_free(r);
        return NULL;
    }
    /* own copies: the response may outlive the request */
    for (i = 0; i < req->n_stop; i++) {
        r->stop[i] = malloc(req->stop_len[i] + 1);
        if (r->stop[i] == NULL) {
            qp_response_free(r);
            return NULL;
        }
        memcpy(r->stop[i], req->stop[i], req->stop_len[i] + 1);
        r->stop_len[i] = req->stop_len[i];
    }
    r->last_token = -1;
    r->eog_token = -1;
    r->details = req->details;
    r->full_text = req->full_text;
    if (req->input_text != NULL) {
        r->input_text = strdup(req->input_text);
        if (r->input_text == NULL) {
            qp_response_free(r);
            return NULL;
        }
    }
    r->want_context = req->want_context;
    for (i = 0; r->want_context && i < req->prompt.n; i++) {
        if (push_context(r, req->prompt.ids[i]) != 0) {
            qp_response_free(r);
            return NULL;
        }
    }
    /* only the chat parsers (and Ollama's generate) set these */
    memset(&opt, 0, sizeof(opt));
    opt.thinking = req->thinking;
    opt.tools = req->tools;
    opt.ignore_eos = req->params.ignore_eos;
    opt.stop = (const char *const *) r->stop;
    opt.stop_len = r->stop_len;
    opt.n_stop = req->n_stop;
    if (qp_text_init(&r->text, tok, &opt) != 0) {
        qp_response_free(r);
        return NULL;
    }
    r->sink.text = on_text;
    r->sink.tool_call = on_tool_call;
    r->sink.ctx = r;
    return r;
}

void
qp_response_free(qp_response *r)
{
    size_t i;

    if (r == NULL) {
        return;
    }
    qp_text_free(&r->text);
    for (i = 0; i < QP_MAX_STOP; i++) {
        free(r->stop[i]);
    }
    for (i = 0; i < r->n_calls; i++) {
        qp_tool_call_clear(&r->calls[i]);
    }
    free(r->calls);
    free(r->lp);
    free(r->ctx_ids);
    qp_buf_free(&r->delta);
    qp_buf_free(&r->content);
    qp_buf_free(&r->reasoning);
    free(r->input_text);
    free(r->id);
    free(r->model);
    free(r);
}

const char *
qp_response_content_type(const qp_response *r)
{
    return r->stream ? r->fmt->stream_type : "application/json";
}

static int
begin(qp_response *r, qp_buf *out)
{
    if (!r->stream || r->began) {
        return 0;
    }
    r->began = 1;
    return r->fmt->begin ? r->fmt->begin(r, out) : 0;
}

int
qp_response_tokens(qp_response *r, const qwen_token_event *ev, size_t n, qp_buf *out)
{
    size_t i, offset;
    int    rc = 0, was_reasoning;

    if (r->finished || r->text.stopped || r->text.eog) {
        return 1;
    }
    r->out = out;
    if (begin(r, out) != 0) {
        goto fail;
    }
    for (i = 0; i < n && rc == 0; i++) {
        offset = r->text.n_chars;
        was_reasoning = qp_text_in_reasoning(&r->text);
        rc = qp_text_token(&r->text, ev[i].token, &r->sink);
        if (rc < 0) {
            goto fail;
        }
        r->n_tokens++;
        if (r->text.eog && r->eog_token < 0) {
            r->eog_token = ev[i].token;
        }
        if (was_reasoning || qp_text_in_reasoning(&r->text)) {
            r->n_reasoning_tokens++;
        }
        /* after the token's text: a frame closed while it was processed
         * belongs to earlier tokens. EOG ids carry no text, no logprobs. */
        if (r->logprobs && !r->text.eog && push_logprob(r, &ev[i], offset) != 0) {
            goto fail;
        }
        if (r->want_context && !r->text.eog && push_context(r, ev[i].token) != 0) {
            goto fail;
        }
    }
    if (r->stream && flush_delta(r) != 0) {
        goto fail;
    }
    r->out = NULL;
    return rc;
fail:
    r->out = NULL;
    return -1;
}

int
qp_response_finish(qp_response *r, qwen_finish reason,
                   const qwen_request_timing *timing, qp_buf *out)
{
    int natural;

    if (r->finished) {
        return 0;
    }
    if (reason == QWEN_FINISH_ERROR) {
        return qp_response_error(r, 500, "server_error", "generation failed", out);
    }
    r->n_cached = timing != NULL && timing->n_cached <= r->n_prompt ? timing->n_cached : 0;
    r->out = out;
    if (begin(r, out) != 0 || qp_text_flush(&r->text, &r->sink) != 0
        || (r->stream && flush_delta(r) != 0))
    {
        r->out = NULL;
        return -1;
    }
    r->out = NULL;
    /* a stop string or EOG we saw wins over how the engine ended (the
     * caller cancels it once we report the end) */
    natural = r->text.stopped || r->text.eog || reason == QWEN_FINISH_STOP
              || reason == QWEN_FINISH_NONE;
    if (natural) {
        r->finish_reason = r->text.n_tool_calls > 0 ? "tool_calls" : "stop";
    } else if (reason == QWEN_FINISH_LENGTH || reason == QWEN_FINISH_REPETITION) {
        r->finish_reason = "length";    /* the APIs have no word for a loop cut short */
    } else {
        r->finish_reason = "cancelled";     /* client gone or shutdown */
    }
    r->finished = 1;
    return r->stream ? r->fmt->end(r, timing, out) : r->fmt->body(r, timing, out);
}

int
qp_response_error(qp_response *r, int status, const char *type,
                  const char *message, qp_buf *out)
{
    qp_error_info e = { status, type, NULL, NULL, message ? message : "error", 0 };

    r->finished = 1;
    r->finish_reason = "error";
    /* after the header: one more frame, then the caller ends the stream */
    if (r->stream) {
        return qp_json_raw(out, r->fmt->error_prefix) != 0
               || r->errors->body(out, &e) != 0
               || qp_json_raw(out, r->fmt->error_suffix) != 0 ? -1 : 0;
    }
    return r->errors->body(out, &e);
}

size_t
qp_response_completion_tokens(const qp_response *r)
{
    return r->n_tokens;
}

const char *
qp_response_finish_reason(const qp_response *r)
{
    return r->finished ? r->finish_reason : NULL;
}
