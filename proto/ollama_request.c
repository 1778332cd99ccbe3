/*
 * ollama_request.c - Ollama's POST /api/chat and /api/generate bodies into
 * engine parameters: model names, messages (thinking, tool calls with object
 * arguments), prompt/system/raw/context, think, options.* with Ollama's
 * meanings, format (a JSON grammar), and the "load" answer to no prompt.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ollama.h"

/* ------------------------------------------------------------ options */

/* A number option (options.key) within [lo, hi]; 1 set, 0 absent, -1 error. */
static int
opt_real(qp_request *req, const json_t *opts, const char *key, double lo, double hi,
         double *out, qp_error *err)
{
    char   param[64];
    double v;
    int    rc;

    snprintf(param, sizeof(param), "options.%s", key);
    rc = qp_get_real(opts, key, param, &v, req->errors, err);
    if (rc <= 0) {
        return rc;
    }
    if (!(v >= lo && v <= hi)) {
        return qp_fail(err, req->errors, 400, NULL, param, NULL,
                       "'%s' must be between %g and %g, not %g", param, lo, hi, v);
    }
    *out = v;
    return 1;
}

static int
opt_int(qp_request *req, const json_t *opts, const char *key, long long *out, qp_error *err)
{
    char param[64];

    snprintf(param, sizeof(param), "options.%s", key);
    return qp_get_int(opts, key, param, out, req->errors, err);
}

typedef struct {
    long long num_predict;      /* 0: not given */
    long long num_ctx;          /* 0: not given */
    int       has_num_predict;
    int       thinking_budget;  /* tokens; -1: none */
} ollama_limits;

/*
 * options: temperature, top_k, top_p, min_p, typical_p (accepted, not
 * applied: the sampler has no locally-typical step), repeat_penalty ->
 * repetition_penalty, repeat_last_n -> penalty_last_n (0 off, -1 all),
 * presence/frequency_penalty, seed (negative: random), num_predict, num_ctx,
 * stop, and ours: thinking_budget and draft (also taken at the top level;
 * options win). Ollama's runner-only options (num_gpu, num_thread, mirostat...) and
 * unknown keys are ignored, as Ollama ignores them.
 */
static int
parse_options(qp_request *req, const json_t *root, const qp_config *cfg,
              ollama_limits *lim, qp_error *err)
{
    qwen_sampling_params *s = &req->params.sampling;
    const json_t         *opts = json_object_get(root, "options");
    double                v;
    long long             n;
    int                   rc;

    *s = cfg->sampling;
    s->seed = 0;
    memset(lim, 0, sizeof(*lim));
    /* options.thinking_budget, else a top-level one, else the default */
    lim->thinking_budget = cfg->thinking_budget;
    if (qp_get_thinking_budget(root, "thinking_budget", "thinking_budget",
                               &lim->thinking_budget, req->errors, err) < 0
        || qp_get_draft(root, "draft", "draft", &req->params.draft, req->errors, err) < 0)
    {
        return -1;
    }
    if (opts == NULL || json_is_null(opts)) {
        s->seed = qp_default_seed(cfg);
        return 0;
    }
    if (!json_is_object(opts)) {
        return qp_fail(err, req->errors, 400, NULL, "options", NULL,
                       "'options' must be an object");
    }
#define REAL(key, lo, hi, dst) \
    if ((rc = opt_real(req, opts, key, lo, hi, &v, err)) < 0) return -1; \
    if (rc == 1) dst = (float) v
    REAL("temperature", 0, 100, s->temperature);
    REAL("top_p", 0, 1, s->top_p);
    REAL("min_p", 0, 1, s->min_p);
    REAL("presence_penalty", -2, 2, s->presence_penalty);
    REAL("frequency_penalty", -2, 2, s->frequency_penalty);
    REAL("repeat_penalty", 1e-6, 1e6, s->repetition_penalty);
#undef REAL
    if (opt_real(req, opts, "typical_p", 0, 1, &v, err) < 0) {
        return -1;
    }
    if ((rc = opt_int(req, opts, "top_k", &n, err)) < 0) {
        return -1;
    }
    if (rc == 1) {
        /* Ollama: <= 0 leaves top-k off; beyond the vocabulary is off too */
        s->top_k = n <= 0 ? 0 : n > 1000000 ? 1000000 : (int) n;
    }
    if ((rc = opt_int(req, opts, "repeat_last_n", &n, err)) < 0) {
        return -1;
    }
    if (rc == 1) {
        if (n < -1) {
            return qp_fail(err, req->errors, 400, NULL, "options.repeat_last_n", NULL,
                           "'options.repeat_last_n' must be -1 (the whole context), "
                           "0 (off) or a positive integer");
        }
        s->penalty_last_n = n > 1000000 ? 1000000 : (int) n;
    }
    if ((rc = opt_int(req, opts, "seed", &n, err)) < 0) {
        return -1;
    }
    s->seed = rc == 1 && n >= 0 ? (uint64_t) n : qp_default_seed(cfg);
    if ((rc = opt_int(req, opts, "num_predict", &lim->num_predict, err)) < 0) {
        return -1;
    }
    lim->has_num_predict = rc == 1 && lim->num_predict != 0;
    if (qp_get_thinking_budget(opts, "thinking_budget", "options.thinking_budget",
                               &lim->thinking_budget, req->errors, err) < 0
        || qp_get_draft(opts, "draft", "options.draft", &req->params.draft, req->errors,
                        err) < 0)
    {
        return -1;
    }
    if ((rc = opt_int(req, opts, "num_ctx", &lim->num_ctx, err)) < 0) {
        return -1;
    }
    if (rc == 1 && lim->num_ctx <= 0) {
        return qp_fail(err, req->errors, 400, NULL, "options.num_ctx", NULL,
                       "'options.num_ctx' must be a positive integer");
    }
    return qp_request_set_stop(req, json_object_get(opts, "stop"), "options.stop", err);
}

/*
 * num_ctx is clamped to the slot's context (it can only shrink it).
 * num_predict: > 0 a cap, clamped to what the context leaves (Ollama
 * stops at the context's end rather than refusing); -1 and -2 (fill the
 * context) both run until the end of the answer or of the context; 0 or
 * absent: the configured default.
 */
static int
apply_limits(qp_request *req, const qp_config *cfg, const ollama_limits *lim,
             qp_error *err)
{
    qp_config c = *cfg;
    long long room, max = 0;

    if (lim->num_ctx > 0 && lim->num_ctx < c.n_ctx) {
        c.n_ctx = (int) lim->num_ctx;
    }
    room = (long long) c.n_ctx - (long long) req->prompt.n;
    if (lim->has_num_predict && room > 0) {
        max = lim->num_predict > 0 && lim->num_predict < room ? lim->num_predict : room;
    }
    return qp_request_limits(req, &c, max,
                             req->api == QP_OLLAMA_CHAT ? "messages" : "prompt", err);
}

/* ------------------------------------------------------------- common */

/* think: true/false, or "low"/"medium"/"high" (on: Qwen3 has no effort
 * levels). Absent: the configured default. */
static int
parse_think(qp_request *req, const json_t *root, const qp_config *cfg, int *on,
            qp_error *err)
{
    const json_t *v = json_object_get(root, "think");

    *on = cfg->enable_thinking != 0;
    if (v == NULL || json_is_null(v)) {
        return 0;
    }
    if (json_is_boolean(v)) {
        *on = json_is_true(v);
        return 0;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);

        if (strcmp(s, "low") == 0 || strcmp(s, "medium") == 0 || strcmp(s, "high") == 0) {
            *on = 1;
            return 0;
        }
    }
    return qp_fail(err, req->errors, 400, NULL, "think", NULL,
                   "'think' must be true, false, \"low\", \"medium\" or \"high\"");
}

/* format: "json" (any JSON object) or a JSON schema constrains the answer
 * (*on set, *schema the schema or NULL); the grammar is made once the
 * prompt is built. An empty string (what some clients send for "none") is
 * no format. */
static int
parse_format(qp_request *req, const json_t *root, int *on, const json_t **schema,
             qp_error *err)
{
    const json_t *v = json_object_get(root, "format");

    *on = 0;
    *schema = NULL;
    if (v == NULL || json_is_null(v) || (json_is_string(v) && json_string_length(v) == 0)) {
        return 0;
    }
    if (!json_is_string(v) && !json_is_object(v)) {
        return qp_fail(err, req->errors, 400, NULL, "format", NULL,
                       "'format' must be \"json\" or a JSON schema object");
    }
    if (json_is_string(v) && strcmp(json_string_value(v), "json") != 0) {
        return qp_fail(err, req->errors, 400, NULL, "format", NULL,
                       "'format' must be \"json\" or a JSON schema object, not \"%.40s\"",
                       json_string_value(v));
    }
    *on = 1;
    *schema = json_is_object(v) ? v : NULL;
    return 0;
}

/* images (top-level for generate, per message for chat): text only. */
static int
no_images(qp_request *req, const json_t *obj, const char *param, qp_error *err)
{
    const json_t *v = json_object_get(obj, "images");

    if (v == NULL || json_is_null(v) || (json_is_array(v) && json_array_size(v) == 0)) {
        return 0;
    }
    if (!json_is_array(v)) {
        return qp_fail(err, req->errors, 400, NULL, param, NULL,
                       "'%s' must be an array", param);
    }
    return qp_fail(err, req->errors, 400, NULL, param, NULL,
                   "images are not supported: this model reads text only");
}

/* keep_alive: a duration ("5m", "0") or a number of seconds. The model
 * stays resident whatever it says; it only matters for "unload" answers. */
static int
parse_keep_alive(qp_request *req, const json_t *root, int *zero, qp_error *err)
{
    const json_t *v = json_object_get(root, "keep_alive");

    *zero = 0;
    if (v == NULL || json_is_null(v)) {
        return 0;
    }
    if (json_is_number(v)) {
        *zero = json_number_value(v) == 0;
        return 0;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);

        *zero = s[0] == '0' && (s[1] == '\0' || strchr("smh", s[1]) != NULL);
        return 0;
    }
    return qp_fail(err, req->errors, 400, NULL, "keep_alive", NULL,
                   "'keep_alive' must be a duration string (\"5m\") or a number of seconds");
}

/*
 * Ollama answers a body without a prompt (or messages) by loading the model
 * and reporting done_reason "load" ("unload" with keep_alive 0). The model
 * is always resident here, so the answer is immediate: it travels in err
 * with status 200 (see qwen_proto.h).
 */
static int
load_answer(qp_request *req, const char *model, int unload, qp_error *err)
{
    qp_buf b = { 0 };
    char   now[QP_RFC3339_LEN];
    int    chat = req->api == QP_OLLAMA_CHAT;

    qp_rfc3339_now(now);
    if (qp_json_raw(&b, "{\"model\":") != 0
        || qp_json_str(&b, model, strlen(model) > 200 ? 200 : strlen(model)) != 0
        || qp_buf_printf(&b, ",\"created_at\":\"%s\",", now) != 0
        || qp_json_raw(&b, chat ? "\"message\":{\"role\":\"assistant\",\"content\":\"\"},"
                                  "\"done_reason\":"
                                : "\"response\":\"\",\"done\":true,\"done_reason\":") != 0
        || qp_json_raw(&b, unload ? "\"unload\"" : "\"load\"") != 0
        || qp_json_raw(&b, chat ? ",\"done\":true}" : "}") != 0
        || b.len >= sizeof(err->body))
    {
        qp_buf_free(&b);
        return qp_oom(req, err);
    }
    memcpy(err->body, b.data, b.len + 1);
    err->status = 200;
    qp_buf_free(&b);
    return -1;
}

/* --------------------------------------------------------------- chat */

/* tool_calls: [{"function":{"name":..,"arguments":{..}}}]; arguments are
 * an object in Ollama (a JSON string is taken too). */
static int
message_tool_calls(qp_request *req, qp_chat_parts *cp, const json_t *calls, size_t i,
                   qwen_chat_message *cm, qp_error *err)
{
    char   param[64];
    size_t j;

    snprintf(param, sizeof(param), "messages[%zu].tool_calls", i);
    if (calls == NULL || json_is_null(calls)) {
        return 0;
    }
    if (!json_is_array(calls)) {
        return qp_fail(err, req->errors, 400, NULL, param, NULL, "'%s' must be an array", param);
    }
    for (j = 0; j < json_array_size(calls); j++) {
        const json_t *c = json_array_get(calls, j);
        const json_t *f = json_is_object(c) ? json_object_get(c, "function") : NULL;
        const json_t *name = json_is_object(f) ? json_object_get(f, "name") : NULL;
        const json_t *args = json_is_object(f) ? json_object_get(f, "arguments") : NULL;

        if (!json_is_string(name)) {
            return qp_fail(err, req->errors, 400, NULL, param, NULL,
                           "'%s[%zu]' must be {\"function\":{\"name\":..,\"arguments\":{..}}}",
                           param, j);
        }
        if (args != NULL && !json_is_object(args) && !json_is_string(args)) {
            return qp_fail(err, req->errors, 400, NULL, param, NULL,
                           "'%s[%zu].function.arguments' must be an object", param, j);
        }
        if (args == NULL) {
            /* the template needs arguments: an absent one is {} (the tree
             * is qp_parse's own copy of the body, so it may be changed) */
            if (json_object_set_new((json_t *) f, "arguments", json_object()) != 0) {
                return qp_oom(req, err);
            }
        }
    }
    if (json_array_size(calls) > 0) {
        cm->tool_calls_json = qp_chat_parts_json(cp, calls);
        if (cm->tool_calls_json == NULL) {
            return qp_oom(req, err);
        }
    }
    return 0;
}

static int
parse_messages(qp_request *req, const json_t *messages, qp_chat_parts *cp, qp_error *err)
{
    char   param[64];
    size_t i;

    /* each message may own its tool calls */
    if (qp_chat_parts_init(req, cp, json_array_size(messages), 1, err) != 0) {
        return -1;
    }
    for (i = 0; i < cp->n; i++) {
        const json_t      *m = json_array_get(messages, i), *v = NULL;
        qwen_chat_message *cm = &cp->msgs[i];
        const char        *r;
        int                rc;

        snprintf(param, sizeof(param), "messages[%zu]", i);
        if (!json_is_object(m)) {
            return qp_fail(err, req->errors, 400, NULL, param, NULL, "'%s' must be an object",
                           param);
        }
        snprintf(param, sizeof(param), "messages[%zu].role", i);
        rc = qp_get_string(m, "role", param, &v, req->errors, err);
        if (rc < 0) {
            return -1;
        }
        if (rc == 0) {
            return qp_fail(err, req->errors, 400, NULL, param, NULL, "'%s' is required", param);
        }
        r = json_string_value(v);
        if (qp_chat_role(req, r, param, err) != 0) {
            return -1;
        }
        cm->role = r;
        /* content is a plain string in Ollama; absent reads as "" */
        snprintf(param, sizeof(param), "messages[%zu].content", i);
        rc = qp_get_string(m, "content", param, &v, req->errors, err);
        if (rc < 0) {
            return -1;
        }
        cm->content = rc == 1 ? json_string_value(v) : "";
        snprintf(param, sizeof(param), "messages[%zu].images", i);
        if (no_images(req, m, param, err) != 0) {
            return -1;
        }
        if (strcmp(r, "assistant") != 0) {
            continue;       /* tool_name (role tool) is not in Qwen3's template */
        }
        snprintf(param, sizeof(param), "messages[%zu].thinking", i);
        rc = qp_get_string(m, "thinking", param, &v, req->errors, err);
        if (rc < 0) {
            return -1;
        }
        if (rc == 1) {
            cm->reasoning_content = json_string_value(v);
        }
        if (message_tool_calls(req, cp, json_object_get(m, "tool_calls"), i, cm, err) != 0) {
            return -1;
        }
    }
    return 0;
}

static int
chat_prompt(qp_request *req, const json_t *root, int thinking, const qwen_tokenizer *tok,
            qp_error *err)
{
    qp_chat_parts cp = { 0 };
    char       msg[QWEN_ERR_LEN];
    char      *text = NULL;
    size_t     text_len = 0;
    int        rc = -1;

    if (parse_messages(req, json_object_get(root, "messages"), &cp, err) != 0
        || qp_parse_tools(req, json_object_get(root, "tools"), &cp.tools_json, err) != 0)
    {
        goto done;
    }
    if (qwen_chat_render(cp.msgs, cp.n, cp.tools_json, 1, thinking, &text, &text_len,
                         msg, sizeof(msg)) != 0)
    {
        qp_fail(err, req->errors, 400, NULL, "messages", NULL, "messages: %s", msg);
        goto done;
    }
    rc = qp_tokenize(tok, text, text_len, &req->prompt, req->errors, err);
    req->thinking = thinking;
done:
    free(text);
    qp_chat_parts_free(&cp);
    return rc;
}

/* ----------------------------------------------------------- generate */

/* context: token ids of an earlier exchange (Ollama's deprecated way to
 * continue), put before the new prompt. */
static int
context_ids(qp_request *req, const json_t *root, const qwen_tokenizer *tok, qp_error *err)
{
    const json_t *ctx = json_object_get(root, "context");
    int           vocab = qwen_tokenizer_vocab_size(tok);
    size_t        i, n;

    if (ctx == NULL || json_is_null(ctx)) {
        return 0;
    }
    if (!json_is_array(ctx)) {
        return qp_fail(err, req->errors, 400, NULL, "context", NULL,
                       "'context' must be an array of token ids");
    }
    n = json_array_size(ctx);
    if (n == 0) {
        return 0;
    }
    req->prompt.ids = malloc(n * sizeof(int32_t));
    if (req->prompt.ids == NULL) {
        return qp_oom(req, err);
    }
    req->prompt.cap = n;
    for (i = 0; i < n; i++) {
        const json_t *v = json_array_get(ctx, i);
        json_int_t    id = json_is_integer(v) ? json_integer_value(v) : -1;

        if (id < 0 || id >= vocab) {
            return qp_fail(err, req->errors, 400, NULL, "context", NULL,
                           "'context[%zu]' must be a token id between 0 and %d", i, vocab - 1);
        }
        req->prompt.ids[req->prompt.n++] = (int32_t) id;
    }
    return 0;
}

/*
 * prompt (+ system) through Qwen3's chat template as one user turn, or
 * verbatim with raw (system and think then do not apply). suffix needs a
 * fill-in-the-middle template, which Qwen3 has not: refused. template (a
 * Go template overriding the model's) cannot be run here: refused, so a
 * client never silently gets a different prompt than it asked for.
 */
static int
generate_prompt(qp_request *req, const json_t *root, const json_t *prompt, int thinking,
                const qwen_tokenizer *tok, qp_error *err)
{
    const json_t      *v = NULL;
    qwen_chat_message  msgs[2];
    size_t             n = 0;
    char               msg[QWEN_ERR_LEN];
    char              *text = NULL;
    size_t             text_len = 0;
    int                raw = 0, rc;

    if (qp_get_string(root, "suffix", "suffix", &v, req->errors, err) < 0) {
        return -1;
    }
    if (v != NULL && json_string_length(v) > 0) {
        return qp_fail(err, req->errors, 400, NULL, "suffix", NULL,
                       "'suffix' is not supported: Qwen3 has no fill-in-the-middle template");
    }
    v = NULL;
    if (qp_get_string(root, "template", "template", &v, req->errors, err) < 0) {
        return -1;
    }
    if (v != NULL && json_string_length(v) > 0) {
        return qp_fail(err, req->errors, 400, NULL, "template", NULL,
                       "'template' is not supported: the prompt is built with Qwen3's own "
                       "chat template (use \"raw\":true to send a prompt verbatim)");
    }
    if (no_images(req, root, "images", err) != 0
        || qp_get_bool(root, "raw", "raw", &raw, req->errors, err) < 0
        || context_ids(req, root, tok, err) != 0)
    {
        return -1;
    }
    if (raw) {
        return qp_tokenize(tok, json_string_value(prompt), json_string_length(prompt),
                           &req->prompt, req->errors, err);
    }
    memset(msgs, 0, sizeof(msgs));
    v = NULL;
    if (qp_get_string(root, "system", "system", &v, req->errors, err) < 0) {
        return -1;
    }
    if (v != NULL) {
        msgs[n].role = "system";
        msgs[n++].content = json_string_value(v);
    }
    msgs[n].role = "user";
    msgs[n++].content = json_string_value(prompt);
    if (qwen_chat_render(msgs, n, NULL, 1, thinking, &text, &text_len, msg, sizeof(msg)) != 0) {
        return qp_fail(err, req->errors, 400, NULL, "prompt", NULL, "prompt: %s", msg);
    }
    rc = qp_tokenize(tok, text, text_len, &req->prompt, req->errors, err);
    free(text);
    req->thinking = thinking;
    req->want_context = 1;
    return rc;
}

/* ------------------------------------------------------------- entry */

int
qp_ollama_parse(qp_request *req, const json_t *root, const qp_config *cfg,
                const qwen_tokenizer *tok, qp_error *err)
{
    const qp_error_style *es = req->errors;
    const json_t         *v = NULL, *body, *schema;
    qp_buf                name = { 0 };
    ollama_limits         lim;
    int                   chat = req->api == QP_OLLAMA_CHAT, thinking, unload, rc, format;

    /* model: absent means the served model, echoed under its listed name */
    rc = qp_get_string(root, "model", "model", &v, es, err);
    if (rc < 0) {
        return -1;
    }
    if (rc == 1 && json_string_length(v) > 0) {
        if (!qp_model_matches(cfg, json_string_value(v), json_string_length(v))) {
            return qp_fail(err, es, 404, NULL, "model", NULL, "model '%.200s' not found",
                           json_string_value(v));
        }
        req->model = strdup(json_string_value(v));
    } else {
        if (qp_ollama_model_name(cfg, &name) != 0) {
            qp_buf_free(&name);
            return qp_oom(req, err);
        }
        req->model = name.data;
    }
    if (req->model == NULL) {
        return qp_oom(req, err);
    }
    req->stream = 1;                        /* Ollama streams unless told not to */
    if (qp_get_bool(root, "stream", "stream", &req->stream, es, err) < 0
        || parse_keep_alive(req, root, &unload, err) != 0)
    {
        return -1;
    }
    /* no prompt: the "load the model" request */
    body = json_object_get(root, chat ? "messages" : "prompt");
    if (chat) {
        if (body != NULL && !json_is_null(body) && !json_is_array(body)) {
            return qp_fail(err, es, 400, NULL, "messages", NULL,
                           "'messages' must be an array");
        }
        if (json_array_size(body) == 0) {
            return load_answer(req, req->model, unload, err);
        }
    } else {
        if (body != NULL && !json_is_null(body) && !json_is_string(body)) {
            return qp_fail(err, es, 400, NULL, "prompt", NULL, "'prompt' must be a string");
        }
        if (json_string_length(body) == 0) {
            const json_t *images = json_object_get(root, "images");

            if (json_array_size(images) == 0) {
                return load_answer(req, req->model, unload, err);
            }
        }
    }
    if (parse_format(req, root, &format, &schema, err) != 0
        || parse_think(req, root, cfg, &thinking, err) != 0
        || parse_options(req, root, cfg, &lim, err) != 0)
    {
        return -1;
    }
    if ((chat ? chat_prompt(req, root, thinking, tok, err)
              : generate_prompt(req, root, body, thinking, tok, err)) != 0)
    {
        return -1;
    }
    if (format && qp_request_set_grammar(req, tok, schema, "format", err) != 0) {
        return -1;
    }
    /* tools: the model chooses text or calls; a call's JSON is constrained */
    if (!format && req->tools
        && qp_request_set_tool_grammar(req, tok, json_object_get(root, "tools"), NULL, 0, 1,
                                       err) != 0)
    {
        return -1;
    }
    /* Ollama has no logit_bias; OpenAI's (or llama.cpp's) form in options */
    if (json_is_object(json_object_get(root, "options"))
        && qp_request_set_logit_bias(req, json_object_get(json_object_get(root, "options"),
                                                          "logit_bias"),
                                     "options.logit_bias", qwen_tokenizer_vocab_size(tok),
                                     err) != 0)
    {
        return -1;
    }
    if (qp_request_set_thinking_budget(req, tok, lim.thinking_budget, err) != 0) {
        return -1;
    }
    return apply_limits(req, cfg, &lim, err);
}
