/*
 * request.h - private: the parsed request (qp_request) and what every API's
 * parser shares: loading the body, typed getters that name the offending
 * field, model names, stop strings, chat messages and tools, tokenizing,
 * grammars, seeds, the context check. Knows no API, only an error style.
 */
#ifndef QP_REQUEST_H
#define QP_REQUEST_H

#include <jansson.h>

#include "errors.h"

#define QP_MAX_STOP      4     /* OpenAI allows up to 4 stop strings */
#define QP_MAX_STOP_LEN  256   /* bytes; bounds the hold-back and its search */

struct qp_request {
    qp_api                api;
    const qp_error_style *errors;       /* how this API's errors read */
    int                   stream;
    int                   include_usage;
    qwen_tokens           prompt;
    qwen_request_params   params;       /* prompt points into prompt.ids */
    char                 *stop[QP_MAX_STOP];
    size_t                stop_len[QP_MAX_STOP];
    size_t                n_stop;
    int                   logprobs;     /* report logprobs */
    int                   top_logprobs; /* alternatives reported per token */
    int                   thinking;     /* chat: split <think> blocks out */
    int                   tools;        /* chat: parse <tool_call> blocks */
    char                 *model;        /* Ollama: the name to echo (NULL: served name) */
    int                   want_context; /* Ollama generate: report "context" ids */
    qwen_grammar         *grammar;      /* structured output (params.grammar) */
    qwen_logit_bias      *bias;         /* params.logit_bias */
    qwen_tokens           think_close;  /* params.think_close_ids */
    char                 *input_text;   /* LMI: "inputs" (return_full_text, details) */
    int                   details;      /* LMI: parameters.details */
    int                   full_text;    /* LMI: parameters.return_full_text */
};

/* A body that must be a JSON object (400 if not), and a fresh request for
 * it: returns the request with *root set, or NULL with err filled. */
qp_request *qp_request_load(qp_api api, const qp_error_style *es, const char *body,
                            size_t len, json_t **root, qp_error *err);
/* Parse a body that must be a JSON object (400 if not). */
json_t *qp_load_object(const char *body, size_t len, const qp_error_style *es,
                       qp_error *err);

int  qp_oom(qp_request *req, qp_error *err);     /* a 500 "out of memory" */

/* ----------------------------------------------------- typed JSON getters */

/* Each returns 1 when the field is present, 0 when absent or null, -1 (err
 * set, 400 naming param) when it has the wrong type. */
int qp_get_bool(const json_t *obj, const char *key, const char *param, int *out,
                const qp_error_style *es, qp_error *err);
int qp_get_int(const json_t *obj, const char *key, const char *param, long long *out,
               const qp_error_style *es, qp_error *err);
int qp_get_real(const json_t *obj, const char *key, const char *param, double *out,
                const qp_error_style *es, qp_error *err);
int qp_get_string(const json_t *obj, const char *key, const char *param,
                  const json_t **out, const qp_error_style *es, qp_error *err);

/* ------------------------------------------------------------- fields */

/* Is name the served model (cfg->model_name, qwen3, qwen3:0.6b, qwen3:latest)? */
int  qp_model_matches(const qp_config *cfg, const char *name, size_t len);
/* A string or an array of up to 4 strings; empty strings are ignored. */
int  qp_request_set_stop(qp_request *req, const json_t *stop, const char *param,
                         qp_error *err);
/* Chat messages for the template, with the strings that must outlive the
 * jansson tree (collected in owned, freed together). */
typedef struct {
    qwen_chat_message *msgs;
    size_t             n;
    char             **owned;
    size_t             n_owned;
    char              *tools_json;
} qp_chat_parts;

/* Room for n messages, each owning at most per_msg strings. */
int  qp_chat_parts_init(qp_request *req, qp_chat_parts *cp, size_t n, size_t per_msg,
                        qp_error *err);
void qp_chat_parts_free(qp_chat_parts *cp);
/* Keep v as compact JSON text owned by cp; NULL out of memory. */
const char *qp_chat_parts_json(qp_chat_parts *cp, const json_t *v);
/* Keep b's text (taking its memory) as an owned string; NULL out of memory. */
const char *qp_chat_parts_take(qp_chat_parts *cp, qp_buf *b);
/* messages[i].role: system, user, assistant or tool (param names it). */
int  qp_chat_role(qp_request *req, const char *role, const char *param, qp_error *err);
/* tools: [{"type":"function","function":{"name":..,"parameters":..}}] for
 * the template as JSON text in *tools_json (NULL when there are none);
 * sets req->tools. */
int  qp_parse_tools(qp_request *req, const json_t *tools, char **tools_json, qp_error *err);

/* ------------------------------------------------- prompt and limits */

int  qp_tokenize(const qwen_tokenizer *tok, const char *text, size_t len,
                 qwen_tokens *out, const qp_error_style *es, qp_error *err);
/* Check prompt + max_tokens against n_ctx and fill params (and the
 * configured repetition guard); param names the prompt's field in errors.
 * max_tokens <= 0: the configured default, clamped to what the context
 * leaves. */
int  qp_request_limits(qp_request *req, const qp_config *cfg, long long max_tokens,
                       const char *param, qp_error *err);
/* logit_bias (param names it in errors): OpenAI's object of token ids to
 * -100..100, or llama.cpp's array of [id, bias or false]; -100 and false
 * ban the token. NULL or null: none. 400 naming param when malformed. */
int  qp_request_set_logit_bias(qp_request *req, const json_t *lb, const char *param,
                               int vocab, qp_error *err);
/* Tool calls by grammar (tools already checked by qp_parse_tools): each
 * <tool_call> block of the answer is {"name": one of the functions (only:
 * just that one), "arguments": valid under its parameters}; required: the
 * answer is calls only; parallel: more than one. A parameters schema the
 * grammar does not support is 400 naming tools[i].function.parameters. */
int  qp_request_set_tool_grammar(qp_request *req, const qwen_tokenizer *tok,
                                 const json_t *tools, const char *only, int required,
                                 int parallel, qp_error *err);
/* Structured output: constrain the answer to JSON (schema NULL: any
 * object) and put the grammar in req->params. Call once the prompt is
 * built: with thinking on, the grammar applies after </think>. A schema
 * outside the supported subset is 400 naming param. */
int  qp_request_set_grammar(qp_request *req, const qwen_tokenizer *tok,
                            const json_t *schema, const char *param, qp_error *err);
/* thinking_budget in obj (param names it in errors): a number of tokens,
 * or -1 for none; larger than QP_THINKING_BUDGET_MAX is taken as that.
 * 1 set, 0 absent or null, -1 (400 naming param) not such a number. */
int  qp_get_thinking_budget(const json_t *obj, const char *key, const char *param, int *out,
                            const qp_error_style *es, qp_error *err);
/* draft in obj: "ngram" (or true) proposes n-gram drafts for this request,
 * "off" (or false) does not; absent: the server's qwen_draft. 1 set, 0
 * absent or null, -1 (400 naming param) anything else. */
int  qp_get_draft(const json_t *obj, const char *key, const char *param, int *out,
                  const qp_error_style *es, qp_error *err);
/* With thinking on (req->thinking, so once the prompt is built) and a
 * budget >= 0: the engine closes the thinking after budget tokens with
 * QP_THINK_CLOSE_TEXT's tokens. Otherwise nothing. */
int  qp_request_set_thinking_budget(qp_request *req, const qwen_tokenizer *tok, int budget,
                                    qp_error *err);
/* A seed for requests that set none: random unless configured. */
uint64_t qp_default_seed(const qp_config *cfg);

#endif
