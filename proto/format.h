/*
 * format.h - private: one response's state (qp_response) and qp_format, the
 * callbacks with which an API frames it. response.c runs the text pipeline
 * and calls the API's qp_format; each API's response file
 * (openai_response.c, ollama_response.c) implements one per endpoint.
 */
#ifndef QP_FORMAT_H
#define QP_FORMAT_H

#include "errors.h"
#include "request.h"
#include "stream_text.h"

/* One generated token's logprobs, kept until framed. */
typedef struct {
    int32_t token;
    float   logprob;
    int     n_top;
    int32_t top_ids[QWEN_MAX_TOP_LOGPROBS];
    float   top_logprobs[QWEN_MAX_TOP_LOGPROBS];
    size_t  text_offset;                /* code points before its text */
} qp_logprob;

typedef struct qp_format qp_format;

struct qp_response {
    const qp_format      *fmt;
    const qp_error_style *errors;
    qp_api                api;
    int                   stream;
    int                   include_usage;
    int                   logprobs;
    int                   top_logprobs;
    int                   reasoning_field;
    size_t                n_prompt;
    const qwen_tokenizer *tok;
    char                 *id;
    char                 *model;
    time_t                created;
    char                 *stop[QP_MAX_STOP];
    size_t                stop_len[QP_MAX_STOP];

    qp_text               text;
    qp_text_sink          sink;
    qp_buf               *out;          /* frames go here during a call */
    int                   began;        /* stream: first frame written */
    int                   finished;
    const char           *finish_reason;
    size_t                n_tokens;
    size_t                n_reasoning_tokens;
    size_t                n_cached;     /* prompt tokens the prefix cache gave (at the end) */

    qp_buf                delta;        /* stream: text not yet framed */
    qp_channel            delta_ch;
    qp_logprob           *lp;           /* stream: not yet framed; else all */
    size_t                n_lp, cap_lp;

    qp_buf                content;      /* non-stream: the whole answer */
    qp_buf                reasoning;
    qp_tool_call         *calls;
    size_t                n_calls, cap_calls;
    size_t                n_calls_sent; /* stream: index of the next call */

    int                   want_context; /* Ollama generate: prompt + answer ids */
    int32_t              *ctx_ids;
    size_t                n_ctx_ids, cap_ctx_ids;

    int32_t               last_token;   /* the last token seen (-1: none) */
    int32_t               eog_token;    /* the end-of-generation token, or -1 */

    /* LMI (lmi.c): the request's text and options, the code points framed
     * so far, where the last token line sits in its output, and a count */
    char                 *input_text;
    int                   details;
    int                   full_text;
    size_t                n_chars_framed;
    const qp_buf         *line_out;
    size_t                line_start, line_end;
    size_t                n_body_tokens;
};

/*
 * How one API frames a response. Stream callbacks see the logprobs not yet
 * framed in r->lp[0..n_lp) and take them by setting r->n_lp = 0. begin and
 * tool_call may be NULL (no role frame; no tool calls). An error after the
 * stream began is the API's error body between error_prefix and
 * error_suffix; without a stream it is the body alone.
 */
struct qp_format {
    const char *stream_type;
    const char *error_prefix;
    const char *error_suffix;
    int (*begin)(qp_response *r, qp_buf *out);
    int (*delta)(qp_response *r, qp_channel ch, const char *s, size_t n, qp_buf *out);
    int (*tool_call)(qp_response *r, const qp_tool_call *tc, size_t index, qp_buf *out);
    int (*end)(qp_response *r, const qwen_request_timing *timing, qp_buf *out);
    int (*body)(qp_response *r, const qwen_request_timing *timing, qp_buf *out);
};

#endif
