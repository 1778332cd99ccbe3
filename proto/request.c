/*
 * request.c - what every API's request parsing shares: the configuration
 * defaults, loading the body with jansson, typed getters that name the
 * offending field, stop strings, chat messages and tools, tokenizing, and
 * the check of prompt + max_tokens against the slot's context. API files
 * add the fields; errors take the style the caller hands in.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "request.h"

void
qp_config_defaults(qp_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->model_name = "qwen3";
    cfg->sampling = qwen_sampling_default_params();
    cfg->max_tokens = 0;          /* none: until end of answer or context */
    cfg->n_ctx = 4096;
    cfg->enable_thinking = 1;     /* Qwen3's own default */
    cfg->reasoning_field = 0;
    cfg->thinking_budget = -1;    /* none: think until done */
    cfg->repetition_guard = QP_REPETITION_GUARD_DEFAULT;
}

/* ------------------------------------------------------------ the body */

json_t *
qp_load_object(const char *body, size_t len, const qp_error_style *es, qp_error *err)
{
    json_t       *root;
    json_error_t  jerr;

    if (body == NULL || len == 0) {
        qp_fail(err, es, 400, NULL, NULL, NULL, "the request body is empty");
        return NULL;
    }
    root = json_loadb(body, len, 0, &jerr);
    if (root == NULL) {
        if (json_error_code(&jerr) == json_error_invalid_utf8) {
            qp_fail(err, es, 400, NULL, NULL, NULL,
                    "the request body is not valid UTF-8 (near byte %d)", jerr.position);
        } else {
            qp_fail(err, es, 400, NULL, NULL, NULL,
                    "the request body is not valid JSON: %s (line %d, column %d)",
                    jerr.text, jerr.line, jerr.column);
        }
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        qp_fail(err, es, 400, NULL, NULL, NULL, "the request body must be a JSON object");
        return NULL;
    }
    return root;
}

qp_request *
qp_request_load(qp_api api, const qp_error_style *es, const char *body, size_t len,
                json_t **root, qp_error *err)
{
    qp_request *req;

    *root = qp_load_object(body, len, es, err);
    if (*root == NULL) {
        return NULL;
    }
    req = calloc(1, sizeof(*req));
    if (req == NULL) {
        json_decref(*root);
        *root = NULL;
        qp_fail(err, es, 500, NULL, NULL, NULL, "out of memory");
        return NULL;
    }
    req->api = api;
    req->errors = es;
    req->params = qwen_request_default_params();
    return req;
}

void
qp_request_free(qp_request *req)
{
    size_t i;

    if (req == NULL) {
        return;
    }
    qwen_tokens_free(&req->prompt);
    qwen_tokens_free(&req->think_close);
    for (i = 0; i < req->n_stop; i++) {
        free(req->stop[i]);
    }
    free(req->model);
    free(req->input_text);
    qwen_grammar_free(req->grammar);
    free(req->bias);
    free(req);
}

const qwen_request_params *
qp_request_params(const qp_request *req)
{
    return &req->params;
}

int
qp_request_stream(const qp_request *req)
{
    return req->stream;
}

int
qp_oom(qp_request *req, qp_error *err)
{
    return qp_fail(err, req->errors, 500, NULL, NULL, NULL, "out of memory");
}

/* ----------------------------------------------------- typed JSON getters */

static const json_t *
field(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);

    return json_is_null(v) ? NULL : v;   /* null means "not given" */
}

int
qp_get_bool(const json_t *obj, const char *key, const char *param, int *out,
            const qp_error_style *es, qp_error *err)
{
    const json_t *v = field(obj, key);

    if (v == NULL) {
        return 0;
    }
    if (!json_is_boolean(v)) {
        return qp_fail(err, es, 400, NULL, param, NULL, "'%s' must be a boolean", param);
    }
    *out = json_is_true(v);
    return 1;
}

int
qp_get_int(const json_t *obj, const char *key, const char *param, long long *out,
           const qp_error_style *es, qp_error *err)
{
    const json_t *v = field(obj, key);
    double        d;

    if (v == NULL) {
        return 0;
    }
    if (json_is_integer(v)) {
        *out = (long long) json_integer_value(v);
        return 1;
    }
    /* 100.0 is an integer to most clients (JavaScript has no int type) */
    if (json_is_real(v)) {
        d = json_real_value(v);
        /* the range first: casting a double outside long long's is undefined */
        if (d > -9.2e18 && d < 9.2e18 && d == (double) (long long) d) {
            *out = (long long) d;
            return 1;
        }
    }
    return qp_fail(err, es, 400, NULL, param, NULL, "'%s' must be an integer", param);
}

int
qp_get_real(const json_t *obj, const char *key, const char *param, double *out,
            const qp_error_style *es, qp_error *err)
{
    const json_t *v = field(obj, key);

    if (v == NULL) {
        return 0;
    }
    if (!json_is_number(v)) {
        return qp_fail(err, es, 400, NULL, param, NULL, "'%s' must be a number", param);
    }
    *out = json_number_value(v);
    return 1;
}

int
qp_get_string(const json_t *obj, const char *key, const char *param,
              const json_t **out, const qp_error_style *es, qp_error *err)
{
    const json_t *v = field(obj, key);

    if (v == NULL) {
        return 0;
    }
    if (!json_is_string(v)) {
        return qp_fail(err, es, 400, NULL, param, NULL, "'%s' must be a string", param);
    }
    *out = v;
    return 1;
}

/* ------------------------------------------------------------- fields */

int
qp_model_matches(const qp_config *cfg, const char *name, size_t len)
{
    static const char *const aliases[] = { "qwen3", "qwen3:0.6b", "qwen3:latest" };
    const char              *served = cfg->model_name ? cfg->model_name : "qwen3";
    size_t                   i, sl = strlen(served);

    if (len == sl && memcmp(name, served, sl) == 0) {
        return 1;
    }
    /* an Ollama-style tag of the configured name */
    if (len == sl + 7 && memcmp(name, served, sl) == 0 && memcmp(name + sl, ":latest", 7) == 0) {
        return 1;
    }
    for (i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++) {
        if (len == strlen(aliases[i]) && memcmp(name, aliases[i], len) == 0) {
            return 1;
        }
    }
    return 0;
}

static int
add_stop(qp_request *req, const json_t *s, const char *param, qp_error *err)
{
    size_t len = json_string_length(s);

    if (len == 0) {
        return 0;                   /* an empty stop string would stop at once */
    }
    if (len > QP_MAX_STOP_LEN) {
        return qp_fail(err, req->errors, 400, NULL, param, NULL,
                       "stop strings must be at most %d bytes", QP_MAX_STOP_LEN);
    }
    req->stop[req->n_stop] = malloc(len + 1);
    if (req->stop[req->n_stop] == NULL) {
        return qp_oom(req, err);
    }
    memcpy(req->stop[req->n_stop], json_string_value(s), len + 1);
    req->stop_len[req->n_stop++] = len;
    return 0;
}

int
qp_request_set_stop(qp_request *req, const json_t *stop, const char *param, qp_error *err)
{
    size_t i;

    if (stop == NULL || json_is_null(stop)) {
        return 0;
    }
    if (json_is_string(stop)) {
        return add_stop(req, stop, param, err);
    }
    if (!json_is_array(stop)) {
        return qp_fail(err, req->errors, 400, NULL, param, NULL,
                       "'%s' must be a string or an array of strings", param);
    }
    if (json_array_size(stop) > QP_MAX_STOP) {
        return qp_fail(err, req->errors, 400, NULL, param, NULL,
                       "'%s' may hold at most %d strings", param, QP_MAX_STOP);
    }
    for (i = 0; i < json_array_size(stop); i++) {
        if (!json_is_string(json_array_get(stop, i))) {
            return qp_fail(err, req->errors, 400, NULL, param, NULL,
                           "'%s' must be a string or an array of strings", param);
        }
        if (add_stop(req, json_array_get(stop, i), param, err) != 0) {
            return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------ chat messages */

int
qp_chat_parts_init(qp_request *req, qp_chat_parts *cp, size_t n, size_t per_msg,
                   qp_error *err)
{
    cp->n = n;
    cp->msgs = calloc(n, sizeof(*cp->msgs));
    cp->owned = calloc(per_msg * n, sizeof(*cp->owned));
    return cp->msgs != NULL && cp->owned != NULL ? 0 : qp_oom(req, err);
}

void
qp_chat_parts_free(qp_chat_parts *cp)
{
    size_t i;

    for (i = 0; i < cp->n_owned; i++) {
        free(cp->owned[i]);
    }
    free(cp->owned);
    free(cp->msgs);
    free(cp->tools_json);
}

const char *
qp_chat_parts_take(qp_chat_parts *cp, qp_buf *b)
{
    char *s = b->data ? b->data : strdup("");

    b->data = NULL;
    b->len = b->cap = 0;
    if (s != NULL) {
        cp->owned[cp->n_owned++] = s;
    }
    return s;
}

const char *
qp_chat_parts_json(qp_chat_parts *cp, const json_t *v)
{
    qp_buf b = { 0 };

    if (qp_json_value(&b, v, 0) != 0) {
        qp_buf_free(&b);
        return NULL;
    }
    return qp_chat_parts_take(cp, &b);
}

int
qp_chat_role(qp_request *req, const char *role, const char *param, qp_error *err)
{
    if (strcmp(role, "system") != 0 && strcmp(role, "user") != 0
        && strcmp(role, "assistant") != 0 && strcmp(role, "tool") != 0)
    {
        return qp_fail(err, req->errors, 400, NULL, param, NULL,
                       "'%s' must be system, user, assistant or tool, not '%.40s'",
                       param, role);
    }
    return 0;
}

/* Both APIs take the same tools shape. */
int
qp_parse_tools(qp_request *req, const json_t *tools, char **tools_json, qp_error *err)
{
    qp_buf b = { 0 };
    size_t i;

    *tools_json = NULL;
    if (tools == NULL || json_is_null(tools)) {
        return 0;
    }
    if (!json_is_array(tools)) {
        return qp_fail(err, req->errors, 400, NULL, "tools", NULL, "'tools' must be an array");
    }
    for (i = 0; i < json_array_size(tools); i++) {
        const json_t *t = json_array_get(tools, i);
        const json_t *f = json_is_object(t) ? json_object_get(t, "function") : NULL;

        if (!json_is_object(f) || !json_is_string(json_object_get(f, "name"))) {
            return qp_fail(err, req->errors, 400, NULL, "tools", NULL,
                           "'tools[%zu]' must be {\"type\":\"function\",\"function\":"
                           "{\"name\":..,\"parameters\":..}}", i);
        }
    }
    if (json_array_size(tools) == 0) {
        return 0;
    }
    if (qp_json_value(&b, tools, 0) != 0) {
        qp_buf_free(&b);
        return qp_oom(req, err);
    }
    *tools_json = b.data;
    req->tools = 1;     /* <tool_call> blocks become tool calls */
    return 0;
}

/* ------------------------------------------------- prompt and limits */

int
qp_tokenize(const qwen_tokenizer *tok, const char *text, size_t len,
            qwen_tokens *out, const qp_error_style *es, qp_error *err)
{
    char msg[QWEN_ERR_LEN];

    if (qwen_tokenize(tok, text, len, out, msg, sizeof(msg)) != 0) {
        /* the body is valid UTF-8 by now, so this is not the client's fault */
        return qp_fail(err, es, 500, NULL, NULL, NULL, "tokenizer: %s", msg);
    }
    return 0;
}

int
qp_request_limits(qp_request *req, const qp_config *cfg, long long max_tokens,
                  const char *param, qp_error *err)
{
    long long n_prompt = (long long) req->prompt.n, room;

    if (n_prompt == 0) {
        return qp_fail(err, req->errors, 400, NULL, param, NULL, "the prompt is empty");
    }
    if ((max_tokens > 0 ? max_tokens : 1) > cfg->n_ctx - n_prompt) {
        if (max_tokens > 0) {
            max_tokens = max_tokens > (1LL << 40) ? (1LL << 40) : max_tokens;  /* no overflow */
            return qp_fail(err, req->errors, 400, NULL, param, "context_length_exceeded",
                           "This model's maximum context length is %d tokens. However, "
                           "you requested %lld tokens (%lld in the prompt, %lld for the "
                           "completion). Please reduce the length of the prompt or "
                           "max_tokens.", cfg->n_ctx, n_prompt + max_tokens,
                           n_prompt, max_tokens);
        }
        return qp_fail(err, req->errors, 400, NULL, param, "context_length_exceeded",
                       "This model's maximum context length is %d tokens. However, "
                       "your prompt is %lld tokens, which leaves no room for the "
                       "completion. Please reduce the length of the prompt.",
                       cfg->n_ctx, n_prompt);
    }
    room = cfg->n_ctx - n_prompt;
    if (max_tokens <= 0) {
        max_tokens = cfg->max_tokens > 0 && cfg->max_tokens < room ? cfg->max_tokens : room;
    }
    req->params.prompt = req->prompt.ids;
    req->params.n_prompt = req->prompt.n;
    req->params.max_tokens = (int) max_tokens;
    req->params.repeat_guard = cfg->repetition_guard;
    return 0;
}

int
qp_get_thinking_budget(const json_t *obj, const char *key, const char *param, int *out,
                       const qp_error_style *es, qp_error *err)
{
    long long v;
    int       rc = qp_get_int(obj, key, param, &v, es, err);

    if (rc <= 0) {
        return rc;
    }
    if (v < -1) {
        return qp_fail(err, es, 400, NULL, param, NULL,
                       "'%s' must be a number of tokens (0 or more) or -1 for no budget, "
                       "not %lld", param, v);
    }
    *out = v > QP_THINKING_BUDGET_MAX ? QP_THINKING_BUDGET_MAX : (int) v;
    return 1;
}

int
qp_get_draft(const json_t *obj, const char *key, const char *param, int *out,
             const qp_error_style *es, qp_error *err)
{
    const json_t *v = obj != NULL ? json_object_get(obj, key) : NULL;

    if (v == NULL || json_is_null(v)) {
        return 0;
    }
    if (json_is_boolean(v)) {
        *out = json_is_true(v);
        return 1;
    }
    if (json_is_string(v) && strcmp(json_string_value(v), "ngram") == 0) {
        *out = 1;
        return 1;
    }
    if (json_is_string(v) && strcmp(json_string_value(v), "off") == 0) {
        *out = 0;
        return 1;
    }
    return qp_fail(err, es, 400, NULL, param, NULL,
                   "'%s' must be \"ngram\" or \"off\" (or true / false)", param);
}

int
qp_request_set_thinking_budget(qp_request *req, const qwen_tokenizer *tok, int budget,
                               qp_error *err)
{
    static const char text[] = QP_THINK_CLOSE_TEXT;
    int32_t           open = qwen_token_id(tok, "<think>", 7);
    int32_t           close = qwen_token_id(tok, "</think>", 8);

    if (!req->thinking || budget < 0) {
        return 0;               /* thinking off: nothing to budget */
    }
    if (open < 0 || close < 0) {
        return qp_fail(err, req->errors, 500, NULL, NULL, NULL,
                       "the tokenizer has no <think> and </think> tokens for the thinking "
                       "budget");
    }
    if (qp_tokenize(tok, text, sizeof(text) - 1, &req->think_close, req->errors, err) != 0) {
        return -1;
    }
    req->params.thinking_budget = budget;
    req->params.think_open_token = open;
    req->params.think_close_token = close;
    req->params.think_close_ids = req->think_close.ids;
    req->params.n_think_close_ids = req->think_close.n;
    /* Qwen3's template ends the generation prompt before <think>: the
     * block opens when the model writes it (params.thinking_open stays 0) */
    return 0;
}

/*
 * logit_bias: OpenAI's object of token ids (as strings) to a bias from -100
 * to 100, or llama.cpp's array of [id, bias] pairs where false bans the
 * token. -100 bans as OpenAI documents it ("should result in a ban").
 */
int
qp_request_set_logit_bias(qp_request *req, const json_t *lb, const char *param, int vocab,
                          qp_error *err)
{
    const qp_error_style *es = req->errors;
    const json_t         *v, *pair;
    const char           *key;
    char                 *end;
    size_t                n, i = 0;
    long long             id;
    double                bias;

    if (lb == NULL || json_is_null(lb)) {
        return 0;
    }
    if (!json_is_object(lb) && !json_is_array(lb)) {
        return qp_fail(err, es, 400, NULL, param, NULL,
                       "'%s' must be an object of token ids to biases", param);
    }
    n = json_is_object(lb) ? json_object_size(lb) : json_array_size(lb);
    if (n == 0) {
        return 0;
    }
    req->bias = malloc(n * sizeof(*req->bias));
    if (req->bias == NULL) {
        return qp_oom(req, err);
    }
    if (json_is_object(lb)) {
        json_object_foreach((json_t *) lb, key, v) {
            id = strtoll(key, &end, 10);
            if (*key == '\0' || *end != '\0' || id < 0 || id >= vocab) {
                return qp_fail(err, es, 400, NULL, param, NULL,
                               "%s key \"%.64s\" is not a token id (0..%d)", param, key,
                               vocab - 1);
            }
            if (!json_is_number(v)) {
                return qp_fail(err, es, 400, NULL, param, NULL,
                               "%s[\"%.64s\"] must be a number", param, key);
            }
            req->bias[i].token = (int32_t) id;
            bias = json_number_value(v);
            if (!(bias >= -100.0 && bias <= 100.0)) {
                return qp_fail(err, es, 400, NULL, param, NULL,
                               "%s[\"%.64s\"] must be from -100 to 100", param, key);
            }
            req->bias[i++].bias = bias <= -100.0 ? -INFINITY : (float) bias;
        }
    } else {
        json_array_foreach(lb, i, pair) {
            v = json_array_get(pair, 1);
            if (!json_is_array(pair) || json_array_size(pair) != 2
                || !json_is_integer(json_array_get(pair, 0))
                || !(json_is_number(v) || json_is_false(v)))
            {
                return qp_fail(err, es, 400, NULL, param, NULL,
                               "%s[%zu] must be [token id, bias or false]", param, i);
            }
            id = json_integer_value(json_array_get(pair, 0));
            bias = json_is_false(v) ? -100.0 : json_number_value(v);
            if (id < 0 || id >= vocab || !(bias >= -100.0 && bias <= 100.0)) {
                return qp_fail(err, es, 400, NULL, param, NULL,
                               "%s[%zu]: token id 0..%d and bias -100 to 100", param, i,
                               vocab - 1);
            }
            req->bias[i].token = (int32_t) id;
            req->bias[i].bias = bias <= -100.0 ? -INFINITY : (float) bias;
        }
    }
    req->params.logit_bias = req->bias;
    req->params.n_logit_bias = n;
    return 0;
}

int
qp_request_set_grammar(qp_request *req, const qwen_tokenizer *tok, const json_t *schema,
                       const char *param, qp_error *err)
{
    char  msg[QWEN_ERR_LEN];
    char *text = NULL;

    if (schema != NULL) {
        text = json_dumps(schema, JSON_COMPACT);
        if (text == NULL) {
            return qp_oom(req, err);
        }
    }
    msg[0] = '\0';
    req->grammar = qwen_grammar_new_json(tok, text, msg, sizeof(msg));
    free(text);
    if (req->grammar == NULL) {
        return qp_fail(err, req->errors, schema != NULL ? 400 : 500, NULL, param, NULL,
                       "%s: %s", param, msg);
    }
    req->params.grammar = req->grammar;
    /* thinking stays free text; the answer after </think> is JSON */
    req->params.grammar_after_token = req->thinking ? qwen_token_id(tok, "</think>", 8) : -1;
    return 0;
}

uint64_t
qp_default_seed(const qp_config *cfg)
{
    uint64_t seed = 0;

    if (cfg->sampling.seed != 0) {
        return cfg->sampling.seed;
    }
    /* OpenAI semantics: no seed, a different draw every time */
    if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t) sizeof(seed)) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        seed = ((uint64_t) ts.tv_sec << 32) ^ (uint64_t) ts.tv_nsec ^ (uintptr_t) &ts;
    }
    return seed;
}

/* The path of a tool's parameters in an error of the calls' schema:
 * "#/anyOf/2/properties/arguments/x: ..." -> "tools[5].function.parameters/x: ..." */
static void
tool_error_path(char *out, size_t len, const char *msg, const size_t *index, size_t n)
{
    const char *rest;
    char       *end;
    size_t      i;
    static const char args[] = "/properties/arguments";

    if (strncmp(msg, "#/anyOf/", 8) == 0) {
        i = strtoul(msg + 8, &end, 10);
        if (i < n && strncmp(end, args, sizeof(args) - 1) == 0) {
            rest = end + sizeof(args) - 1;
            snprintf(out, len, "tools[%zu].function.parameters%s%s", index[i],
                     *rest == '/' ? "#" : "", rest);
            return;
        }
    }
    snprintf(out, len, "tools: %s", msg);
}

int
qp_request_set_tool_grammar(qp_request *req, const qwen_tokenizer *tok, const json_t *tools,
                            const char *only, int required, int parallel, qp_error *err)
{
    char    msg[QWEN_ERR_LEN], where[QWEN_ERR_LEN + 64];
    json_t *alts = json_array(), *schema = NULL;
    char   *text = NULL;
    size_t  i, *index = calloc(json_array_size(tools) + 1, sizeof(size_t)), n = 0;
    int     rc = -1;

    if (alts == NULL || index == NULL) {
        goto oom;
    }
    for (i = 0; i < json_array_size(tools); i++) {
        const json_t *f = json_object_get(json_array_get(tools, i), "function");
        const char   *name = json_string_value(json_object_get(f, "name"));
        json_t       *params = json_object_get(f, "parameters"), *alt, *args;

        if (only != NULL && strcmp(name, only) != 0) {
            continue;
        }
        if (params != NULL && !json_is_null(params) && !json_is_object(params)) {
            rc = qp_fail(err, req->errors, 400, NULL, "tools", NULL,
                         "'tools[%zu].function.parameters' must be a schema object", i);
            goto done;
        }
        /* no parameters, or {}: any object of arguments */
        args = json_object_size(params) > 0 ? json_incref(params)
                                            : json_pack("{s:s}", "type", "object");
        alt = json_pack("{s:s,s:{s:{s:s},s:o},s:[s,s],s:b}", "type", "object", "properties",
                        "name", "const", name, "arguments", args,
                        "required", "name", "arguments", "additionalProperties", 0);
        if (alt == NULL || json_array_append_new(alts, alt) != 0) {
            goto oom;
        }
        index[n++] = i;
    }
    if (n == 0) {
        rc = qp_fail(err, req->errors, 400, NULL, "tool_choice", NULL,
                     "'tool_choice' names a function that is not in 'tools'");
        goto done;
    }
    schema = json_pack("{s:O}", "anyOf", alts);
    text = schema ? json_dumps(schema, JSON_COMPACT) : NULL;
    if (text == NULL) {
        goto oom;
    }
    msg[0] = '\0';
    req->grammar = qwen_grammar_new_tools(tok, text, required, parallel, msg, sizeof(msg));
    if (req->grammar == NULL) {
        tool_error_path(where, sizeof(where), msg, index, n);
        rc = qp_fail(err, req->errors, 400, NULL, "tools", NULL, "%s", where);
        goto done;
    }
    req->params.grammar = req->grammar;
    /* thinking stays free text; the answer after </think> holds the calls */
    req->params.grammar_after_token = req->thinking ? qwen_token_id(tok, "</think>", 8) : -1;
    rc = 0;
    goto done;
oom:
    rc = qp_oom(req, err);
done:
    free(text);
    free(index);
    json_decref(schema);
    json_decref(alts);
    return rc;
}
