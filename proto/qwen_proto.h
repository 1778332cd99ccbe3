/*
 * qwen_proto.h - protocol translation, pure C without nginx types: request
 * JSON to engine parameters (prompt token ids, sampling, limits), and
 * token events to the bytes a client expects (SSE chunks, NDJSON lines or
 * one JSON body), with stop strings, thinking split out and usage totals.
 * The nginx module only wires these calls to sockets and the engine.
 */
#ifndef QWEN_PROTO_H
#define QWEN_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "qwen.h"

typedef enum {
    QP_OPENAI_CHAT = 0,      /* POST /v1/chat/completions */
    QP_OPENAI_COMPLETIONS,   /* POST /v1/completions */
    QP_OLLAMA_CHAT,          /* POST /api/chat */
    QP_OLLAMA_GENERATE,      /* POST /api/generate */
    QP_API_COUNT
} qp_api;

/* A growable byte buffer the formatters append to. */
typedef struct {
    char   *data;
    size_t  len;
    size_t  cap;
} qp_buf;

int  qp_buf_append(qp_buf *b, const void *bytes, size_t n);
int  qp_buf_printf(qp_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void qp_buf_reset(qp_buf *b);       /* len = 0, keeps the memory */
void qp_buf_free(qp_buf *b);

/* What a location serves, from nginx.conf. */
typedef struct {
    const char          *model_name;        /* served model id, default "qwen3" */
    qwen_sampling_params sampling;          /* defaults for fields a request omits */
    int                  max_tokens;        /* default when a request sets none */
    int                  n_ctx;             /* per-slot context: prompt + output */
    int                  enable_thinking;   /* default for chat requests */
    int                  reasoning_field;   /* 0: "reasoning_content", 1: "reasoning" */
} qp_config;

void qp_config_defaults(qp_config *cfg);

/* A client error, ready to send: HTTP status and a JSON body in the API's
 * own error format. */
typedef struct {
    int  status;
    char body[1024];
} qp_error;

/* Error bodies for failures outside parsing (413 body too large, 429 queue
 * full, 503 shutting down...). retry_after_s > 0 adds a retry hint to the
 * body (SageMaker drops headers). */
void qp_error_make(qp_api api, int status, const char *type, const char *message,
                   int retry_after_s, qp_error *err);

/* ------------------------------------------------------------ requests */

typedef struct qp_request qp_request;

/*
 * Parse and validate a request body: malformed JSON, wrong types and
 * out-of-range values are 400, an unknown model 404, a prompt that does
 * not fit n_ctx 400 (context_length_exceeded). The chat template and the
 * tokenizer run here, so the result holds the prompt's token ids.
 */
int  qp_parse(qp_api api, const char *body, size_t len, const qp_config *cfg,
              const qwen_tokenizer *tok, qp_request **out, qp_error *err);
void qp_request_free(qp_request *req);

/* Engine parameters; pointers stay valid while the request lives. */
const qwen_request_params *qp_request_params(const qp_request *req);
int  qp_request_stream(const qp_request *req);

/* ----------------------------------------------------------- responses */

typedef struct qp_response qp_response;

/* id: unique response id (e.g. "chatcmpl-<hex>"), created: unix time. */
qp_response *qp_response_new(const qp_request *req, const qwen_tokenizer *tok,
                             const qp_config *cfg, const char *id, time_t created);
void         qp_response_free(qp_response *resp);

/* "text/event-stream", "application/x-ndjson" or "application/json". */
const char  *qp_response_content_type(const qp_response *resp);

/*
 * Feed token events. Complete UTF-8 text goes out as frames appended to out
 * (nothing for non-streamed responses, which collect until the end); text
 * that might begin a stop string is held back. Returns 1 once a stop
 * string or the end of the answer was found (the caller cancels the engine
 * request and then calls qp_response_finish), 0 to go on, -1 out of memory.
 */
int qp_response_tokens(qp_response *resp, const qwen_token_event *ev, size_t n,
                       qp_buf *out);

/*
 * The end of the response: for streams the last chunk (finish_reason), the
 * usage chunk when asked, and the terminator ([DONE] for SSE); otherwise
 * the whole JSON body. reason CANCELLED after a stop string reports "stop".
 */
int qp_response_finish(qp_response *resp, enum qwen_finish reason,
                       const qwen_request_timing *timing, qp_buf *out);

/* An error after the response began: for streams an error event/line,
 * else a full error body (status then matters). */
int qp_response_error(qp_response *resp, int status, const char *type,
                      const char *message, qp_buf *out);

/* Counts for logs and metrics. */
size_t qp_response_completion_tokens(const qp_response *resp);
const char *qp_response_finish_reason(const qp_response *resp);   /* NULL until finished */

/* ------------------------------------------------------- other endpoints */

/* GET /v1/models, GET /v1/models/{id} (404 body in err for other ids). */
int qp_openai_models(const qp_config *cfg, time_t created, qp_buf *out);
int qp_openai_model(const qp_config *cfg, const char *id, size_t id_len, time_t created,
                    qp_buf *out, qp_error *err);

#endif /* QWEN_PROTO_H */
