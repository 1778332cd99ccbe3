/*
 * lmi.c - the request schema of SageMaker's LMI (DJL) and TGI containers,
 * so their clients keep working on /invocations: {"inputs": "text",
 * "parameters": {max_new_tokens, temperature, top_p, top_k, do_sample,
 * seed, stop, repetition_penalty, details, return_full_text}, "stream"}.
 * The prompt is the raw text (no chat template), as those servers take it.
 *
 * Answers: [{"generated_text": ".."}] (TGI's list, with "details" when
 * asked), or with "stream": true LMI's application/jsonlines, one line per
 * token, {"token":{"id","text","log_prob"}}, the last line also carrying
 * "generated_text" (and "details"). Sampling follows those servers:
 * greedy unless do_sample is true (then the server's sampling defaults
 * fill what the request does not set) or a temperature, top_p or top_k is
 * set.
 */
#include <stdlib.h>
#include <string.h>

#include "lmi.h"

/* ============================================================ errors */

static const char *
error_type(int status)
{
    if (status == 429 || status == 503) {
        return "overloaded";
    }
    return status < 500 ? "validation" : "generation";
}

static int
lmi_error_body(qp_buf *b, const qp_error_info *e)
{
    if (qp_json_raw(b, "{\"error\":") != 0 || qp_json_cstr(b, e->message) != 0
        || qp_json_raw(b, ",\"error_type\":") != 0
        || qp_json_cstr(b, error_type(e->status)) != 0
        || qp_buf_printf(b, ",\"code\":%d", e->status) != 0)
    {
        return -1;
    }
    if (e->retry_after_s > 0
        && qp_buf_printf(b, ",\"retry_after\":%d", e->retry_after_s) != 0)
    {
        return -1;
    }
    return qp_json_raw(b, "}");
}

const qp_error_style qp_lmi_errors = {
    lmi_error_body,
    "{\"error\":\"out of memory\",\"error_type\":\"generation\",\"code\":500}"
};

/* =========================================================== parsing */

/* A number in [lo, hi] (lo excluded when lo_open); 1 set, 0 absent. */
static int
real_param(qp_request *req, const json_t *p, const char *key, double lo, int lo_open,
           double hi, float *out, qp_error *err)
{
    char   param[48];
    double v;
    int    rc;

    snprintf(param, sizeof(param), "parameters.%s", key);
    rc = qp_get_real(p, key, param, &v, req->errors, err);
    if (rc <= 0) {
        return rc;
    }
    if ((lo_open ? v <= lo : v < lo) || v > hi) {
        return qp_fail(err, req->errors, 400, NULL, param, NULL,
                       "'%s' must be %s %g and at most %g, not %g", param,
                       lo_open ? "greater than" : "at least", lo, hi, v);
    }
    *out = (float) v;
    return 1;
}

static int
parse_parameters(qp_request *req, const json_t *p, const qp_config *cfg,
                 long long *max_tokens, qp_error *err)
{
    qwen_sampling_params *s = &req->params.sampling;
    long long             k, seed, best_of;
    int                   rc, do_sample = -1, set = 0, b;

    *s = cfg->sampling;
    if (p == NULL || json_is_null(p)) {
        s->temperature = 0.0f;          /* greedy, as do_sample defaults to false */
        s->seed = qp_default_seed(cfg);
        return 0;
    }
    if (!json_is_object(p)) {
        return qp_fail(err, req->errors, 400, NULL, "parameters", NULL,
                       "'parameters' must be an object");
    }
    rc = qp_get_int(p, "max_new_tokens", "parameters.max_new_tokens", max_tokens,
                    req->errors, err);
    if (rc < 0) {
        return -1;
    }
    if (rc == 1 && *max_tokens <= 0) {
        return qp_fail(err, req->errors, 400, NULL, "parameters.max_new_tokens", NULL,
                       "'parameters.max_new_tokens' must be a positive integer");
    }
    if ((rc = real_param(req, p, "temperature", 0, 0, 100, &s->temperature, err)) < 0) {
        return -1;
    }
    set |= rc;
    if ((rc = real_param(req, p, "top_p", 0, 1, 1, &s->top_p, err)) < 0) {
        return -1;
    }
    set |= rc;
    if (real_param(req, p, "repetition_penalty", 0, 1, 1e9, &s->repetition_penalty,
                   err) < 0)
    {
        return -1;
    }
    rc = qp_get_int(p, "top_k", "parameters.top_k", &k, req->errors, err);
    if (rc < 0) {
        return -1;
    }
    if (rc == 1) {
        if (k < -1) {
            return qp_fail(err, req->errors, 400, NULL, "parameters.top_k", NULL,
                           "'parameters.top_k' must be -1 or 0 (off) or a positive integer");
        }
        s->top_k = k > 1000000 ? 1000000 : (int) k;
        set = 1;
    }
    if (qp_get_bool(p, "do_sample", "parameters.do_sample", &do_sample, req->errors,
                    err) < 0)
    {
        return -1;
    }
    /* TGI and LMI decode greedily unless told to sample */
    if (do_sample == 0 || (do_sample == -1 && !set)) {
        s->temperature = 0.0f;
    } else if (do_sample == 1 && !(s->temperature > 0.0f)) {
        s->temperature = 1.0f;
    }
    rc = qp_get_int(p, "seed", "parameters.seed", &seed, req->errors, err);
    if (rc < 0) {
        return -1;
    }
    s->seed = rc == 1 ? (uint64_t) seed : qp_default_seed(cfg);
    if (qp_request_set_stop(req, json_object_get(p, "stop"), "parameters.stop", err) != 0
        || qp_get_bool(p, "details", "parameters.details", &req->details, req->errors,
                       err) < 0
        || qp_get_bool(p, "return_full_text", "parameters.return_full_text",
                       &req->full_text, req->errors, err) < 0
        || qp_get_bool(p, "decoder_input_details", "parameters.decoder_input_details", &b,
                       req->errors, err) < 0
        || qp_get_bool(p, "ignore_eos", "parameters.ignore_eos", &req->params.ignore_eos,
                       req->errors, err) < 0)
    {
        return -1;
    }
    rc = qp_get_int(p, "best_of", "parameters.best_of", &best_of, req->errors, err);
    if (rc < 0) {
        return -1;
    }
    if (rc == 1 && best_of != 1) {
        return qp_fail(err, req->errors, 400, NULL, "parameters.best_of", NULL,
                       "'parameters.best_of' must be 1: one sequence per request");
    }
    if (json_object_get(p, "typical_p") != NULL && !json_is_null(json_object_get(p, "typical_p"))) {
        return qp_fail(err, req->errors, 400, NULL, "parameters.typical_p", NULL,
                       "'parameters.typical_p' is not supported");
    }
    if (json_is_true(json_object_get(p, "watermark"))) {
        return qp_fail(err, req->errors, 400, NULL, "parameters.watermark", NULL,
                       "'parameters.watermark' is not supported");
    }
    return 0;
}

int
qp_lmi_parse(qp_request *req, const json_t *root, const qp_config *cfg,
             const qwen_tokenizer *tok, qp_error *err)
{
    const json_t *inputs = json_object_get(root, "inputs");
    long long     max_tokens = 0;

    if (!json_is_string(inputs)) {
        return qp_fail(err, req->errors, 400, NULL, "inputs", NULL,
                       inputs == NULL || json_is_null(inputs)
                       ? "'inputs' is required" : "'inputs' must be a string");
    }
    if (json_string_length(inputs) == 0) {
        return qp_fail(err, req->errors, 400, NULL, "inputs", NULL, "'inputs' is empty");
    }
    if (qp_get_bool(root, "stream", "stream", &req->stream, req->errors, err) < 0
        || parse_parameters(req, json_object_get(root, "parameters"), cfg, &max_tokens,
                            err) != 0)
    {
        return -1;
    }
    req->input_text = strdup(json_string_value(inputs));
    if (req->input_text == NULL) {
        return qp_oom(req, err);
    }
    /* every token's log_prob goes out (stream lines, details) */
    req->logprobs = 1;
    req->top_logprobs = 0;
    req->params.n_logprobs = 1;
    if (qp_tokenize(tok, json_string_value(inputs), json_string_length(inputs),
                    &req->prompt, req->errors, err) != 0)
    {
        return -1;
    }
    return qp_request_limits(req, cfg, max_tokens, "inputs", err);
}

/* ========================================================= responses */

static const char *
finish_reason(const qp_response *r)
{
    if (r->text.stopped) {
        return "stop_sequence";
    }
    if (r->text.eog) {
        return "eos_token";
    }
    return r->finish_reason;
}

/* Byte length of the first n_chars code points of s[0..len). */
static size_t
chars_to_bytes(const char *s, size_t len, size_t n_chars)
{
    size_t i = 0;

    while (i < len && n_chars > 0) {
        i += qp_utf8_seq((const unsigned char *) s + i, len - i);
        n_chars--;
    }
    return i < len ? i : len;
}

/* {"id":..,"text":..,"log_prob":..} */
static int
token_json(qp_buf *out, int32_t id, const char *s, size_t n, const float *lp, int special)
{
    return qp_buf_printf(out, "{\"id\":%d,\"text\":", (int) id) != 0
           || qp_json_str(out, s, n) != 0
           || qp_json_raw(out, ",\"log_prob\":") != 0
           || (lp != NULL ? qp_json_float(out, *lp) : qp_json_raw(out, "null")) != 0
           || (special && qp_json_raw(out, ",\"special_token\":true") != 0)
           || qp_json_raw(out, "}") != 0 ? -1 : 0;
}

/*
 * Text s[0..n), which starts at code point base of the answer, split over
 * the tokens lp[0..n_lp) by their offsets: token i gets the text from its
 * offset to the next token's (the last one, to the end). Text before the
 * first token's offset (an earlier token's, held back until now) goes with
 * the first. Calls line() per token with its text.
 */
typedef int (*lmi_line_pt)(qp_response *r, const qp_logprob *lp, const char *s, size_t n,
                           qp_buf *out);

static int
split_tokens(qp_response *r, const qp_logprob *lp, size_t n_lp, size_t base,
             const char *s, size_t n, lmi_line_pt line, qp_buf *out)
{
    size_t i, from = 0, to;

    for (i = 0; i < n_lp; i++) {
        if (i + 1 < n_lp && lp[i + 1].text_offset > base) {
            to = chars_to_bytes(s, n, lp[i + 1].text_offset - base);
        } else {
            to = i + 1 < n_lp ? from : n;
        }
        if (to < from) {
            to = from;
        }
        if (line(r, &lp[i], s + from, to - from, out) != 0) {
            return -1;
        }
        from = to;
    }
    return 0;
}

static int
stream_line(qp_response *r, const qp_logprob *lp, const char *s, size_t n, qp_buf *out)
{
    r->line_out = out;
    r->line_start = out->len;
    if (qp_json_raw(out, "{\"token\":") != 0
        || token_json(out, lp->token, s, n, &lp->logprob, 0) != 0
        || qp_json_raw(out, "}\n") != 0)
    {
        return -1;
    }
    r->line_end = out->len;
    r->last_token = lp->token;
    return 0;
}

static int
lmi_delta(qp_response *r, qp_channel ch, const char *s, size_t n, qp_buf *out)
{
    size_t chars = qp_utf8_count(s, n), take = 0, base = r->n_chars_framed;

    (void) ch;
    /* the tokens whose text has begun; the others wait for their text */
    while (take < r->n_lp && r->lp[take].text_offset < base + chars) {
        take++;
    }
    if (qp_buf_append(&r->content, s, n) != 0) {
        return -1;
    }
    r->n_chars_framed += chars;
    if (take == 0) {
        /* text of tokens already framed (held back until now) */
        r->line_out = out;
        r->line_start = out->len;
        if (qp_json_raw(out, "{\"token\":") != 0
            || token_json(out, r->last_token, s, n, NULL, 0) != 0
            || qp_json_raw(out, "}\n") != 0)
        {
            return -1;
        }
        r->line_end = out->len;
        return 0;
    }
    if (split_tokens(r, r->lp, take, base, s, n, stream_line, out) != 0) {
        return -1;
    }
    memmove(r->lp, r->lp + take, (r->n_lp - take) * sizeof(qp_logprob));
    r->n_lp -= take;
    return 0;
}

static int body_token(qp_response *r, const qp_logprob *lp, const char *s, size_t n,
                      qp_buf *out);

/* "generated_text":"..", and "details":{..} when asked (tokens: with the
 * list of every token, for whole bodies) */
static int
result_fields(qp_response *r, int tokens, qp_buf *out)
{
    const char *text = r->content.data ? r->content.data : "";

    if (qp_json_raw(out, "\"generated_text\":") != 0) {
        return -1;
    }
    if (r->full_text) {
        qp_buf all = { 0 };
        int    rc = qp_buf_append(&all, r->input_text, strlen(r->input_text)) != 0
                    || qp_buf_append(&all, text, r->content.len) != 0
                    || qp_json_str(out, all.data, all.len) != 0 ? -1 : 0;

        qp_buf_free(&all);
        if (rc != 0) {
            return -1;
        }
    } else if (qp_json_str(out, text, r->content.len) != 0) {
        return -1;
    }
    if (!r->details) {
        return 0;
    }
    if (qp_json_raw(out, ",\"details\":{\"finish_reason\":") != 0
        || qp_json_cstr(out, finish_reason(r)) != 0
        || qp_buf_printf(out, ",\"generated_tokens\":%zu,\"inputs\":", r->n_tokens) != 0
        || qp_json_cstr(out, r->input_text) != 0)
    {
        return -1;
    }
    if (tokens) {
        if (qp_json_raw(out, ",\"tokens\":[") != 0) {
            return -1;
        }
        r->n_body_tokens = 0;
        if (split_tokens(r, r->lp, r->n_lp, 0, text, r->content.len,
                         body_token, out) != 0)
        {
            return -1;
        }
        if (qp_json_raw(out, "]") != 0) {
            return -1;
        }
    }
    return qp_json_raw(out, "}");
}

/*
 * The last line: when the last token's line ends the same output (its
 * token and the end came together, the usual case) it gets the result
 * fields; otherwise a closing line follows with the end-of-sequence token
 * (or, after a stop string, the last token again) and empty text.
 */
static int
lmi_end(qp_response *r, const qwen_request_timing *timing, qp_buf *out)
{
    (void) timing;
    if (r->line_out == out && r->line_end == out->len && out->len >= 2
        && r->eog_token < 0)
    {
        out->len -= 2;                  /* "}\n" */
        return qp_json_raw(out, ",") != 0 || result_fields(r, 0, out) != 0
               || qp_json_raw(out, "}\n") != 0 ? -1 : 0;
    }
    return qp_json_raw(out, "{\"token\":") != 0
           || token_json(out, r->eog_token >= 0 ? r->eog_token : r->last_token, "", 0,
                         NULL, 1) != 0
           || qp_json_raw(out, ",") != 0 || result_fields(r, 0, out) != 0
           || qp_json_raw(out, "}\n") != 0 ? -1 : 0;
}

static int
body_token(qp_response *r, const qp_logprob *lp, const char *s, size_t n, qp_buf *out)
{
    return (r->n_body_tokens++ > 0 && qp_json_raw(out, ",") != 0)
           || token_json(out, lp->token, s, n, &lp->logprob, 0) != 0 ? -1 : 0;
}

static int
lmi_body(qp_response *r, const qwen_request_timing *timing, qp_buf *out)
{
    (void) timing;
    return qp_json_raw(out, "[{") != 0 || result_fields(r, 1, out) != 0
           || qp_json_raw(out, "}]") != 0 ? -1 : 0;
}

const qp_format qp_lmi_format = {
    "application/jsonlines", "", "\n",
    NULL, lmi_delta, NULL, lmi_end, lmi_body
};
