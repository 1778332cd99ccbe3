/*
 * proto_internal.h - private to proto/: the request and response structs,
 * the per-API formatter table, and the helpers shared by the API files
 * (typed JSON getters that fill a qp_error, stop strings, the context
 * check). Each API (openai_request.c + openai_response.c, ollama.c +
 * ollama_response.c) supplies a parser and a qp_format; response.c drives
 * the text pipeline and calls the formatter.
 */
#ifndef QP_PROTO_INTERNAL_H
#define QP_PROTO_INTERNAL_H

#include <jansson.h>

#include "stream_text.h"
#include "util.h"

#define QP_MAX_STOP      4     /* OpenAI allows up to 4 stop strings */
#define QP_MAX_STOP_LEN  256   /* bytes; bounds the hold-back and its search */

struct qp_request {
    qp_api               api;
    int                  stream;
    int                  include_usage;
    qwen_tokens          prompt;
    qwen_request_params  params;        /* prompt points into prompt.ids */
    char                *stop[QP_MAX_STOP];
    size_t               stop_len[QP_MAX_STOP];
    size_t               n_stop;
    int                  logprobs;      /* report logprobs */
    int                  top_logprobs;  /* alternatives reported per token */
    int                  thinking;      /* chat: split <think> blocks out */
    int                  tools;         /* chat: parse <tool_call> blocks */
    char                *model;         /* Ollama: the name to echo (NULL: served name) */
    int                  want_context;  /* Ollama generate: report "context" ids */
    qwen_grammar        *grammar;       /* structured output (params.grammar) */
};

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
    int                   failed;       /* out of memory inside a callback */
    const char           *finish_reason;
    size_t                n_tokens;
    size_t                n_reasoning_tokens;

    qp_buf                delta;        /* stream: text not yet framed */
    qp_channel            delta_ch;
    qp_logprob           *lp;           /* stream: not yet framed; else all */
    size_t                n_lp, cap_lp;

    qp_buf                content;      /* non-stream: the whole answer */
    qp_buf                reasoning;
    qp_tool_call         *calls;
    size_t                n_calls, cap_calls;
    size_t                n_calls_sent; /* stream: index of the next call */
    qp_buf                scratch;

    int                   want_context; /* Ollama generate: prompt + answer ids */
    int32_t              *ctx_ids;
    size_t                n_ctx_ids, cap_ctx_ids;
};

/* How one API frames a response. Stream callbacks see the logprobs not yet
 * framed in r->lp[0..n_lp) and take them by setting r->n_lp = 0. */
struct qp_format {
    const char *stream_type;
    int (*begin)(qp_response *r, qp_buf *out);
    int (*delta)(qp_response *r, qp_channel ch, const char *s, size_t n, qp_buf *out);
    int (*tool_call)(qp_response *r, const qp_tool_call *tc, size_t index, qp_buf *out);
    int (*end)(qp_response *r, const qwen_request_timing *timing, qp_buf *out);
    int (*body)(qp_response *r, const qwen_request_timing *timing, qp_buf *out);
    int (*error)(qp_response *r, int status, const char *type, const char *message,
                 qp_buf *out);
};

extern const qp_format qp_openai_chat_format;
extern const qp_format qp_openai_completions_format;
extern const qp_format qp_ollama_chat_format;
extern const qp_format qp_ollama_generate_format;

/* ------------------------------------------------------------- errors */

/* Fill err in the API's error format; returns -1 so callers can
 * `return qp_fail(...)`. type NULL: derived from status. */
/* Chat messages for the template, with the strings that must outlive the
 * jansson tree (collected in owned, freed together). */
typedef struct {
    qwen_chat_message *msgs;
    size_t             n;
    char             **owned;
    size_t             n_owned;
    char              *tools_json;
} qp_chat_parts;

void qp_chat_parts_free(qp_chat_parts *cp);
int  qp_oom(qp_request *req, qp_error *err);     /* a 500 "out of memory" */
int  qp_parse_tools(qp_request *req, const json_t *tools, char **tools_json, qp_error *err);
int qp_fail(qp_error *err, qp_api api, int status, const char *type,
            const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

/* Error bodies: OpenAI {"error":{...}} and Ollama {"error":".."}. */
int qp_openai_error_json(qp_buf *b, const char *message, const char *type,
                         const char *param, const char *code, int retry_after_s);
int qp_ollama_error_json(qp_buf *b, const char *message, int retry_after_s);
const char *qp_error_type_for(int status);

/* ----------------------------------------------------- typed JSON getters */

/* Each returns 1 when the field is present, 0 when absent or null, -1 (err
 * set, 400 naming param) when it has the wrong type. */
int qp_get_bool(const json_t *obj, const char *key, const char *param, int *out,
                qp_api api, qp_error *err);
int qp_get_int(const json_t *obj, const char *key, const char *param, long long *out,
               qp_api api, qp_error *err);
int qp_get_real(const json_t *obj, const char *key, const char *param, double *out,
                qp_api api, qp_error *err);
int qp_get_string(const json_t *obj, const char *key, const char *param,
                  const json_t **out, qp_api api, qp_error *err);

/* ----------------------------------------------------------- requests */

qp_request *qp_request_alloc(qp_api api);
/* Is name the served model (cfg->model_name, qwen3, qwen3:0.6b, qwen3:latest)? */
int  qp_model_matches(const qp_config *cfg, const char *name, size_t len);
/* A string or an array of up to 4 strings; empty strings are ignored. */
int  qp_request_set_stop(qp_request *req, const json_t *stop, const char *param,
                         qp_error *err);
int  qp_tokenize(const qwen_tokenizer *tok, const char *text, size_t len,
                 qwen_tokens *out, qp_api api, qp_error *err);
/* Check prompt + max_tokens against n_ctx and fill params. max_tokens <= 0:
 * the configured default, clamped to what the context leaves. */
int  qp_request_limits(qp_request *req, const qp_config *cfg, long long max_tokens,
                       qp_error *err);
/* Structured output: constrain the answer to JSON (schema NULL: any
 * object) and put the grammar in req->params. Call once the prompt is
 * built: with thinking on, the grammar applies after </think>. A schema
 * outside the supported subset is 400 naming param. */
int  qp_request_set_grammar(qp_request *req, const qwen_tokenizer *tok,
                            const json_t *schema, const char *param, qp_error *err);
/* A seed for requests that set none: random unless configured. */
uint64_t qp_default_seed(const qp_config *cfg);

/* Request parsing per API family (openai_request.c, ollama.c): fill req
 * from the body's root object, ending with qp_request_limits. */
int qp_openai_parse(qp_request *req, const json_t *root, const qp_config *cfg,
                    const qwen_tokenizer *tok, qp_error *err);
int qp_ollama_parse(qp_request *req, const json_t *root, const qp_config *cfg,
                    const qwen_tokenizer *tok, qp_error *err);

/* The chat prompt text of an OpenAI-style body (messages, tools,
 * enable_thinking switches): sets req->tools and req->thinking; *text is
 * malloc'ed. Used by /v1/chat/completions and /tokenize. */
int qp_openai_render_chat(qp_request *req, const json_t *root, const qp_config *cfg,
                          int add_generation_prompt, char **text, size_t *text_len,
                          qp_error *err);

/* Parse a body that must be a JSON object (400 in api's format if not). */
json_t *qp_load_object(const char *body, size_t len, qp_api api, qp_error *err);

#endif
