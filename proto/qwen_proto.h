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
    QP_SAGEMAKER_LMI,        /* POST /invocations with "inputs" (LMI / TGI) */
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
    int                  thinking_budget;   /* default; -1: none (see QP_THINK_CLOSE_TEXT) */
    int                  repetition_guard;  /* qwen_request_params.repeat_guard; 0: off */
} qp_config;

/* What a request whose thinking reaches its thinking budget (tokens) is
 * made to write, Qwen's own wording, before its answer follows. */
#define QP_THINK_CLOSE_TEXT "\n\nConsidering the limited time by the user, I have to " \
    "give the solution based on the thinking directly now.\n</think>\n\n"
#define QP_THINKING_BUDGET_MAX  (1 << 30)   /* larger budgets are taken as this */
#define QP_REPETITION_GUARD_DEFAULT 8

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
/* The same with OpenAI's "code" (e.g. "rate_limit_exceeded"; NULL: null). */
void qp_error_make_code(qp_api api, int status, const char *type, const char *code,
                        const char *message, int retry_after_s, qp_error *err);

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
 * the whole JSON body. reason CANCELLED after a stop string reports "stop";
 * REPETITION (the repetition guard) reports "length".
 */
int qp_response_finish(qp_response *resp, qwen_finish reason,
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

/* ============================================================== Ollama
 * POST /api/chat and /api/generate go through qp_parse / qp_response_* with
 * QP_OLLAMA_CHAT / QP_OLLAMA_GENERATE (NDJSON streams by default, one JSON
 * body with "stream":false). A body with no messages (chat) or an empty
 * prompt (generate) is Ollama's "load the model" request: qp_parse then
 * returns -1 with err->status 200 and err->body holding the whole answer
 * ({"done":true,"done_reason":"load"} or "unload" with keep_alive 0), so
 * the usual "send err->status with err->body" path answers it. */

#define QP_OLLAMA_VERSION     "0.9.0"   /* what GET /api/version reports */
#define QP_OLLAMA_ROOT_TEXT   "Ollama is running"   /* GET / and HEAD /, text/plain */

/* What the Ollama listing endpoints say about the served model. Plain
 * data: filled once at startup by qp_model_info_from_model, read by the
 * body builders below. */
typedef struct {
    char        format[16];         /* "gguf" or "safetensors" */
    char        quantization[16];   /* Ollama's quantization_level: "Q4_K_M", "Q8_0", "BF16"... */
    char        weights[64];        /* qwen_model_describe(): "Q4_K + Q6_K + F32" */
    char        digest[65];         /* hex SHA-256 of path, size and mtime: stable per file */
    char        path[512];          /* the model file or directory (may be cut) */
    uint64_t    n_params;           /* computed from config */
    uint64_t    size_bytes;         /* model file(s) on disk */
    uint64_t    kv_cache_bytes;     /* optional (0): added to the size /api/ps reports */
    time_t      modified;           /* file mtime (unix seconds) */
    qwen_config config;
} qp_model_info;

/* Fill info from a loaded model and the path it was loaded from (a .gguf
 * file or a Hugging Face directory; stat'ed for size and mtime). Returns 0,
 * or -1 when path cannot be stat'ed (info is still filled, size from the
 * weights, mtime 0). */
int qp_model_info_from_model(const qwen_model *model, const char *path,
                             qp_model_info *info);

/* The name the model is listed under: cfg->model_name, with ":latest"
 * added when it has no tag; the default "qwen3" is listed as "qwen3:0.6b".
 * Every listed name is accepted in requests. */
int qp_ollama_model_name(const qp_config *cfg, qp_buf *out);

/* GET /api/tags, GET /api/ps: the bodies. */
int qp_ollama_tags(const qp_config *cfg, const qp_model_info *info, qp_buf *out);
int qp_ollama_ps(const qp_config *cfg, const qp_model_info *info, qp_buf *out);
/* POST /api/show: {"model":..} ("name" also read); an unknown model is 404
 * and bad JSON 400, both in err in Ollama's format. */
int qp_ollama_show(const qp_config *cfg, const qp_model_info *info, const char *body,
                   size_t len, qp_buf *out, qp_error *err);
/* GET /api/version: {"version":QP_OLLAMA_VERSION} */
int qp_ollama_version(qp_buf *out);
/* pull, push, create, copy, delete (and blobs): 501 with a clear message. */
void qp_ollama_unsupported(qp_error *err);

/* =========================================================== SageMaker
 * POST /invocations: the API a body is served with. "messages" present:
 * QP_OPENAI_CHAT; else "prompt" present: QP_OPENAI_COMPLETIONS (OpenAI
 * framing, SSE with "stream":true, as the seed stack answered); else
 * "inputs" present: QP_SAGEMAKER_LMI (the LMI / TGI schema: answers
 * [{"generated_text":..}], or LMI's JSON lines with "stream":true). None,
 * or a body that is not a JSON object: QP_API_COUNT with a 400 in err (in
 * OpenAI's error format). */
qp_api qp_sagemaker_api(const char *body, size_t len, qp_error *err);

/* GET /execution-parameters (Batch Transform asks it before sending
 * records): {"MaxConcurrentTransforms": concurrent, "BatchStrategy":
 * "SINGLE_RECORD", "MaxPayloadInMB": max_payload_mb}. Returns 0 or -1. */
int qp_sagemaker_execution_parameters(int concurrent, int max_payload_mb, qp_buf *out);

/* ================================================== tokenize/detokenize
 * vLLM-compatible. POST /tokenize: {"model"?, "prompt": "text"} or
 * {"model"?, "messages": [..], "add_generation_prompt"?: true, "tools"?,
 * "chat_template_kwargs"?: {"enable_thinking":..}}, "return_token_strs"?
 * -> {"tokens":[ids],"count":N,"max_model_len":cfg->n_ctx[,"token_strs":[..]]}.
 * POST /detokenize: {"model"?, "tokens":[ids]} -> {"prompt":"text"}.
 * Errors (OpenAI format in err): 400 bad JSON / types / ids outside the
 * vocabulary, 404 unknown model. Return 0 or -1. */
int qp_tokenize_body(const char *body, size_t len, const qp_config *cfg,
                     const qwen_tokenizer *tok, qp_buf *out, qp_error *err);
int qp_detokenize_body(const char *body, size_t len, const qp_config *cfg,
                       const qwen_tokenizer *tok, qp_buf *out, qp_error *err);

/* ============================================================== health
 * GET /health. stats NULL: the model is still loading (503 "loading").
 * Saturated (every slot busy and the queue full, or server_full > 0: every
 * worker's slots and queues full; so a new request would be refused):
 * "saturated", with 503 when saturated_503 else 200 (server_full -1:
 * unknown, this engine's view alone). Otherwise
 * 200 {"status":"ok"}. The body also carries running/waiting/slots.
 * Returns the HTTP status, or -1 out of memory. */
int qp_health_body(const qwen_engine_stats *stats, int server_full, int saturated_503,
                   qp_buf *out);

/* ============================================================= metrics
 * Prometheus text exposition (version 0.0.4) of one qp_metrics. The struct
 * is plain old data of fixed size without pointers: it may live in shared
 * memory, one per worker, and be summed with qp_metrics_add. */

#define QP_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define QP_HIST_MAX_BUCKETS 20              /* finite bounds; +Inf is extra */

typedef enum {
    QP_HIST_TTFT = 0,       /* qwen_time_to_first_token_seconds */
    QP_HIST_ITL,            /* qwen_inter_token_latency_seconds (per token gap) */
    QP_HIST_E2E,            /* qwen_e2e_request_latency_seconds */
    QP_HIST_QUEUE,          /* qwen_request_queue_time_seconds */
    QP_HIST_COUNT
} qp_hist_id;

typedef enum {
    QP_REASON_STOP = 0,     /* end of answer, stop string, tool calls */
    QP_REASON_LENGTH,
    QP_REASON_CANCELLED,
    QP_REASON_ERROR,
    QP_REASON_COUNT
} qp_reason;

/* Why a request was refused before it reached the engine. */
typedef enum {
    QP_REFUSED_BUSY = 0,    /* every slot and queue of the server full (429/503) */
    QP_REFUSED_QUOTA,       /* qwen_limit_tokens: the key's budget spent (429) */
    QP_REFUSED_SHUTDOWN,    /* draining or stopping (503) */
    QP_REFUSED_COUNT
} qp_refusal;

/* Fixed buckets per qp_hist_id; counts per bucket (not cumulative), the
 * last one for values above every bound (+Inf). */
typedef struct {
    uint64_t bucket[QP_HIST_MAX_BUCKETS + 1];
    uint64_t count;
    double   sum;
} qp_histogram;

typedef struct {
    /* gauges (set from qwen_engine_stats; summed across workers) */
    uint64_t     requests_running;
    uint64_t     requests_waiting;
    uint64_t     kv_tokens_used;
    uint64_t     kv_tokens_total;
    /* counters */
    uint64_t     prompt_tokens_total;
    uint64_t     prefix_cache_queries_total;   /* prompt tokens looked up */
    uint64_t     prefix_cache_hits_total;      /* of them found in the prefix cache */
    uint64_t     draft_tokens_total;           /* n-gram draft tokens proposed */
    uint64_t     draft_accepted_tokens_total;  /* of them taken */
    uint64_t     generation_tokens_total;
    uint64_t     finished[QP_REASON_COUNT];
    uint64_t     refused[QP_REFUSED_COUNT];
    qp_histogram hist[QP_HIST_COUNT];
} qp_metrics;

void qp_metrics_init(qp_metrics *m);                              /* all zero */
void qp_metrics_add(qp_metrics *dst, const qp_metrics *src);      /* dst += src */
void qp_metrics_observe(qp_metrics *m, qp_hist_id h, double seconds);
/* The same value n times (e.g. a request's mean inter-token gap). */
void qp_metrics_observe_n(qp_metrics *m, qp_hist_id h, double seconds, uint64_t n);
/* Gauges from an engine's stats (running, waiting, KV cache use). */
void qp_metrics_set_engine(qp_metrics *m, const qwen_engine_stats *s);
/* A finished request: token totals, queue time, TTFT, end-to-end latency,
 * its inter-token gaps (itl, from qp_itl_observe; NULL: none) and the
 * finish reason (qp_response_finish_reason's strings; NULL or unknown:
 * error). */
void qp_metrics_request_done(qp_metrics *m, const qwen_request_timing *t,
                             const char *finish_reason, const qp_histogram *itl);
/* A request's inter-token gaps, gathered as its token events arrive
 * (qwen_token_event.gap_ms) and handed to qp_metrics_request_done. */
void qp_itl_observe(qp_histogram *itl, const qwen_token_event *ev, size_t n);
qp_reason qp_reason_from_name(const char *finish_reason);
/* A request refused before the engine saw it (counted apart from the
 * finished ones: finished + refused = answered). */
void qp_metrics_refused(qp_metrics *m, qp_refusal why);
/* Append the exposition text. Returns 0 or -1 (out of memory). */
int  qp_metrics_text(const qp_metrics *m, qp_buf *out);

#endif /* QWEN_PROTO_H */
