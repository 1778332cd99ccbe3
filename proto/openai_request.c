/*
 * openai_request.c - parsing /v1/chat/completions and /v1/completions
 * bodies into engine parameters: every field type- and range-checked with
 * the offending field named in the 400, the chat template rendered and
 * tokenized (or the completion prompt taken as text or token ids), and
 * response_format json_object / json_schema made into a JSON grammar.
 */
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "openai.h"

/* ============================================================ parsing */

/* content: a string, or an array of {"type":"text","text":..} parts joined
 * with "\n" (as vLLM joins them). Returns 1 set, 0 absent, -1 error. */
static int
message_content(qp_request *req, qp_chat_parts *cp, const json_t *v, size_t i,
                const char **out, qp_error *err)
{
    char          param[64];
    qp_buf        b = { 0 };
    size_t        j;

    snprintf(param, sizeof(param), "messages[%zu].content", i);
    if (v == NULL || json_is_null(v)) {
        return 0;
    }
    if (json_is_string(v)) {
        *out = json_string_value(v);
        return 1;
    }
    if (!json_is_array(v)) {
        return qp_fail(err, req->errors, 400, NULL, param, NULL,
                       "'%s' must be a string or an array of content parts", param);
    }
    for (j = 0; j < json_array_size(v); j++) {
        const json_t *part = json_array_get(v, j), *type, *text;

        type = json_object_get(part, "type");
        text = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(type)) {
            qp_buf_free(&b);
            return qp_fail(err, req->errors, 400, NULL, param, NULL,
                           "'%s[%zu]' must be an object with a \"type\"", param, j);
        }
        if (strcmp(json_string_value(type), "text") != 0) {
            qp_buf_free(&b);
            return qp_fail(err, req->errors, 400, NULL, param, NULL,
                           "'%s[%zu]': content of type '%.40s' is not supported; "
                           "this model reads text only", param, j, json_string_value(type));
        }
        if (!json_is_string(text)) {
            qp_buf_free(&b);
            return qp_fail(err, req->errors, 400, NULL, param, NULL,
                           "'%s[%zu].text' must be a string", param, j);
        }
        if ((j > 0 && qp_buf_append(&b, "\n", 1) != 0)
            || qp_buf_append(&b, json_string_value(text), json_string_length(text)) != 0)
        {
            qp_buf_free(&b);
            return qp_oom(req, err);
        }
    }
    *out = qp_chat_parts_take(cp, &b);
    return *out != NULL ? 1 : qp_oom(req, err);
}

static int
parse_messages(qp_request *req, const json_t *messages, qp_chat_parts *cp, qp_error *err)
{
    size_t i, n;
    char   param[64];

    if (messages == NULL || json_is_null(messages)) {
        return qp_fail(err, req->errors, 400, NULL, "messages", NULL,
                       "'messages' is required");
    }
    if (!json_is_array(messages)) {
        return qp_fail(err, req->errors, 400, NULL, "messages", NULL,
                       "'messages' must be an array");
    }
    n = json_array_size(messages);
    if (n == 0) {
        return qp_fail(err, req->errors, 400, NULL, "messages", NULL,
                       "'messages' must hold at least one message");
    }
    /* each message may own its joined content and its tool calls */
    if (qp_chat_parts_init(req, cp, n, 2, err) != 0) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        const json_t      *m = json_array_get(messages, i), *role, *reason, *calls;
        qwen_chat_message *cm = &cp->msgs[i];
        const char        *r;
        int                rc;

        snprintf(param, sizeof(param), "messages[%zu]", i);
        if (!json_is_object(m)) {
            return qp_fail(err, req->errors, 400, NULL, param, NULL, "'%s' must be an object",
                           param);
        }
        snprintf(param, sizeof(param), "messages[%zu].role", i);
        role = json_object_get(m, "role");
        if (!json_is_string(role)) {
            return qp_fail(err, req->errors, 400, NULL, param, NULL, "'%s' must be a string",
                           param);
        }
        r = json_string_value(role);
        if (strcmp(r, "developer") == 0) {
            r = "system";                   /* OpenAI's newer name for it */
        }
        if (qp_chat_role(req, r, param, err) != 0) {
            return -1;
        }
        cm->role = r;
        rc = message_content(req, cp, json_object_get(m, "content"), i, &cm->content, err);
        if (rc < 0) {
            return -1;
        }
        if (strcmp(r, "assistant") != 0) {
            if (rc == 0) {
                snprintf(param, sizeof(param), "messages[%zu].content", i);
                return qp_fail(err, req->errors, 400, NULL, param, NULL,
                               "'%s' is required for role %s", param, r);
            }
            continue;
        }
        /* assistant: content may be null (a tool-call turn); the template
         * reads it as a string. Then earlier thinking and tool calls. */
        if (cm->content == NULL) {
            cm->content = "";
        }
        reason = json_object_get(m, "reasoning_content");
        if (reason == NULL || json_is_null(reason)) {
            reason = json_object_get(m, "reasoning");
        }
        if (reason != NULL && !json_is_null(reason)) {
            if (!json_is_string(reason)) {
                snprintf(param, sizeof(param), "messages[%zu].reasoning_content", i);
                return qp_fail(err, req->errors, 400, NULL, param, NULL,
                               "'%s' must be a string", param);
            }
            cm->reasoning_content = json_string_value(reason);
        }
        calls = json_object_get(m, "tool_calls");
        if (calls != NULL && !json_is_null(calls)) {
            size_t j;

            snprintf(param, sizeof(param), "messages[%zu].tool_calls", i);
            if (!json_is_array(calls)) {
                return qp_fail(err, req->errors, 400, NULL, param, NULL,
                               "'%s' must be an array", param);
            }
            for (j = 0; j < json_array_size(calls); j++) {
                const json_t *c = json_array_get(calls, j);
                const json_t *f = json_is_object(c) ? json_object_get(c, "function") : NULL;
                const json_t *fn = json_is_object(f) ? json_object_get(f, "name") : NULL;

                if (!json_is_string(fn)) {
                    return qp_fail(err, req->errors, 400, NULL, param, NULL,
                                   "'%s[%zu]' must be {\"type\":\"function\",\"function\":"
                                   "{\"name\":..,\"arguments\":..}}", param, j);
                }
            }
            if (json_array_size(calls) > 0) {
                cm->tool_calls_json = qp_chat_parts_json(cp, calls);
                if (cm->tool_calls_json == NULL) {
                    return qp_oom(req, err);
                }
            }
        }
    }
    return 0;
}

/* tools, tool_choice: tools_json for the template, and whether to parse
 * <tool_call> blocks out of the answer. */
static int
parse_tools(qp_request *req, const json_t *root, qp_chat_parts *cp, qp_error *err)
{
    const json_t *choice = json_object_get(root, "tool_choice");

    if (choice != NULL && !json_is_null(choice)) {
        if (json_is_string(choice)) {
            const char *c = json_string_value(choice);

            if (strcmp(c, "none") == 0) {
                return 0;       /* the model is not told about the tools */
            }
            if (strcmp(c, "auto") != 0 && strcmp(c, "required") != 0) {
                return qp_fail(err, req->errors, 400, NULL, "tool_choice", NULL,
                               "'tool_choice' must be none, auto, required or an object");
            }
        } else if (!json_is_object(choice)) {
            return qp_fail(err, req->errors, 400, NULL, "tool_choice", NULL,
                           "'tool_choice' must be none, auto, required or an object");
        }
        /* auto, required and a named function: set_tool_grammar */
    }
    return qp_parse_tools(req, json_object_get(root, "tools"), &cp->tools_json, err);
}

/* tool_choice auto (the default with tools): text or calls, each call's
 * JSON constrained once <tool_call> opens; required: calls only; a named
 * function: calls of it only. parallel_tool_calls false: one call. */
static int
set_tool_grammar(qp_request *req, const json_t *root, const qwen_tokenizer *tok,
                 qp_error *err)
{
    const json_t *choice = json_object_get(root, "tool_choice");
    const json_t *par = json_object_get(root, "parallel_tool_calls");
    const char   *only = NULL;
    int           required = 0;

    if (par != NULL && !json_is_null(par) && !json_is_boolean(par)) {
        return qp_fail(err, req->errors, 400, NULL, "parallel_tool_calls", NULL,
                       "'parallel_tool_calls' must be a boolean");
    }
    if (json_is_string(choice)) {
        required = strcmp(json_string_value(choice), "required") == 0;
    } else if (json_is_object(choice)) {
        const json_t *f = json_object_get(choice, "function");

        only = json_string_value(json_object_get(f, "name"));
        if (only == NULL) {
            return qp_fail(err, req->errors, 400, NULL, "tool_choice", NULL,
                           "'tool_choice' must be {\"type\":\"function\",\"function\":"
                           "{\"name\":...}}");
        }
        required = 1;
    }
    return qp_request_set_tool_grammar(req, tok, json_object_get(root, "tools"), only,
                                       required, !json_is_false(par), err);
}

/* enable_thinking: chat_template_kwargs.enable_thinking, else a top-level
 * enable_thinking (as DashScope and others take it), else reasoning_effort
 * ("none" off, any effort on), else the configured default. */
static int
parse_thinking(qp_request *req, const json_t *root, const qp_config *cfg, int *on,
               qp_error *err)
{
    const json_t *kwargs = json_object_get(root, "chat_template_kwargs");
    const json_t *effort = NULL;
    int           v, rc;

    *on = cfg->enable_thinking != 0;
    rc = qp_get_string(root, "reasoning_effort", "reasoning_effort", &effort, req->errors, err);
    if (rc < 0) {
        return -1;
    }
    if (rc == 1) {
        const char *e = json_string_value(effort);

        if (strcmp(e, "none") == 0) {
            *on = 0;
        } else if (strcmp(e, "minimal") == 0 || strcmp(e, "low") == 0
                   || strcmp(e, "medium") == 0 || strcmp(e, "high") == 0)
        {
            *on = 1;
        } else {
            return qp_fail(err, req->errors, 400, NULL, "reasoning_effort", NULL,
                           "'reasoning_effort' must be none, minimal, low, medium or high");
        }
    }
    rc = qp_get_bool(root, "enable_thinking", "enable_thinking", &v, req->errors, err);
    if (rc < 0) {
        return -1;
    }
    if (rc == 1) {
        *on = v;
    }
    if (kwargs != NULL && !json_is_null(kwargs)) {
        if (!json_is_object(kwargs)) {
            return qp_fail(err, req->errors, 400, NULL, "chat_template_kwargs", NULL,
                           "'chat_template_kwargs' must be an object");
        }
        rc = qp_get_bool(kwargs, "enable_thinking", "chat_template_kwargs.enable_thinking",
                         &v, req->errors, err);
        if (rc < 0) {
            return -1;
        }
        if (rc == 1) {
            *on = v;
        }
    }
    return 0;
}

/* thinking_budget: chat_template_kwargs.thinking_budget (chat), else a
 * top-level thinking_budget, else the configured default; it applies once
 * the prompt is built, with thinking on (chat) only. */
static int
parse_thinking_budget(qp_request *req, const json_t *root, const qp_config *cfg, int chat,
                      int *budget, qp_error *err)
{
    const json_t *kwargs = json_object_get(root, "chat_template_kwargs");

    *budget = cfg->thinking_budget;
    if (qp_get_thinking_budget(root, "thinking_budget", "thinking_budget", budget,
                               req->errors, err) < 0)
    {
        return -1;
    }
    /* a chat_template_kwargs that is no object is refused with the prompt */
    if (chat && json_is_object(kwargs)
        && qp_get_thinking_budget(kwargs, "thinking_budget",
                                  "chat_template_kwargs.thinking_budget", budget,
                                  req->errors, err) < 0)
    {
        return -1;
    }
    return 0;
}

int
qp_openai_render_chat(qp_request *req, const json_t *root, const qp_config *cfg,
                      int add_generation_prompt, char **text, size_t *text_len,
                      qp_error *err)
{
    qp_chat_parts cp = { 0 };
    char       msg[QWEN_ERR_LEN];
    int        thinking, rc = -1;

    *text = NULL;
    *text_len = 0;
    if (parse_messages(req, json_object_get(root, "messages"), &cp, err) != 0
        || parse_tools(req, root, &cp, err) != 0
        || parse_thinking(req, root, cfg, &thinking, err) != 0)
    {
        goto done;
    }
    if (qwen_chat_render(cp.msgs, cp.n, cp.tools_json, add_generation_prompt, thinking,
                         text, text_len, msg, sizeof(msg)) != 0)
    {
        qp_fail(err, req->errors, 400, NULL, "messages", NULL, "messages: %s", msg);
        goto done;
    }
    req->thinking = thinking;
    rc = 0;
done:
    qp_chat_parts_free(&cp);
    return rc;
}

static int
parse_chat_prompt(qp_request *req, const json_t *root, const qp_config *cfg,
                  const qwen_tokenizer *tok, qp_error *err)
{
    char   *text = NULL;
    size_t  text_len = 0;
    int     rc;

    if (qp_openai_render_chat(req, root, cfg, 1, &text, &text_len, err) != 0) {
        free(text);
        return -1;
    }
    rc = qp_tokenize(tok, text, text_len, &req->prompt, req->errors, err);
    free(text);
    return rc;
}

static int
push_ids(qp_request *req, const json_t *arr, int vocab, qp_error *err)
{
    size_t i, n = json_array_size(arr);

    req->prompt.ids = malloc((n ? n : 1) * sizeof(int32_t));
    if (req->prompt.ids == NULL) {
        return qp_oom(req, err);
    }
    req->prompt.cap = n ? n : 1;
    for (i = 0; i < n; i++) {
        const json_t *v = json_array_get(arr, i);
        json_int_t    id;

        if (!json_is_integer(v)) {
            return qp_fail(err, req->errors, 400, NULL, "prompt", NULL,
                           "'prompt' must be a string, an array of one string, or an "
                           "array of token ids (integers)");
        }
        id = json_integer_value(v);
        if (id < 0 || id >= vocab) {
            return qp_fail(err, req->errors, 400, NULL, "prompt", NULL,
                           "token id %lld at prompt[%zu] is outside the vocabulary "
                           "(0..%d)", (long long) id, i, vocab - 1);
        }
        req->prompt.ids[req->prompt.n++] = (int32_t) id;
    }
    return 0;
}

/* prompt: "text", ["text"], [ids...] or [[ids...]]; several prompts would
 * mean several choices, and n is 1. */
static int
parse_completion_prompt(qp_request *req, const json_t *root, const qwen_tokenizer *tok,
                        qp_error *err)
{
    const json_t *p = json_object_get(root, "prompt"), *first;
    int           vocab = qwen_tokenizer_vocab_size(tok);
    size_t        n;

    if (p == NULL || json_is_null(p)) {
        return qp_fail(err, req->errors, 400, NULL, "prompt", NULL, "'prompt' is required");
    }
    if (json_is_string(p)) {
        return qp_tokenize(tok, json_string_value(p), json_string_length(p),
                           &req->prompt, req->errors, err);
    }
    if (!json_is_array(p)) {
        return qp_fail(err, req->errors, 400, NULL, "prompt", NULL,
                       "'prompt' must be a string, an array of one string, or an array "
                       "of token ids");
    }
    n = json_array_size(p);
    if (n == 0) {
        return qp_fail(err, req->errors, 400, NULL, "prompt", NULL, "'prompt' is empty");
    }
    first = json_array_get(p, 0);
    if (json_is_integer(first)) {
        return push_ids(req, p, vocab, err);
    }
    if (!json_is_string(first) && !json_is_array(first)) {
        return qp_fail(err, req->errors, 400, NULL, "prompt", NULL,
                       "'prompt' must be a string, an array of one string, or an array "
                       "of token ids");
    }
    if (n > 1) {
        return qp_fail(err, req->errors, 400, NULL, "prompt", NULL,
                       "'prompt' holds %zu prompts; only one prompt per request is "
                       "supported (n must be 1)", n);
    }
    if (json_is_string(first)) {
        return qp_tokenize(tok, json_string_value(first), json_string_length(first),
                           &req->prompt, req->errors, err);
    }
    if (json_array_size(first) == 0) {
        return qp_fail(err, req->errors, 400, NULL, "prompt", NULL, "'prompt' is empty");
    }
    return push_ids(req, first, vocab, err);
}

/* A number field in [lo, hi] (lo_open / hi_open exclude the bound). */
static int
real_in(qp_request *req, const json_t *root, const char *key, double lo, int lo_open,
        double hi, int hi_open, float *out, qp_error *err)
{
    double v;
    int    rc = qp_get_real(root, key, key, &v, req->errors, err);

    if (rc <= 0) {
        return rc;
    }
    if ((lo_open ? v <= lo : v < lo) || (hi_open ? v >= hi : v > hi)) {
        return qp_fail(err, req->errors, 400, NULL, key, NULL,
                       "'%s' must be %s %g and %s %g, not %g", key,
                       lo_open ? "greater than" : "at least", lo,
                       hi_open ? "less than" : "at most", hi, v);
    }
    *out = (float) v;
    return 1;
}

static int
parse_sampling(qp_request *req, const json_t *root, const qp_config *cfg, qp_error *err)
{
    qwen_sampling_params *s = &req->params.sampling;
    long long             k, seed;
    int                   rc;

    *s = cfg->sampling;
    if (real_in(req, root, "temperature", 0, 0, 2, 0, &s->temperature, err) < 0
        || real_in(req, root, "top_p", 0, 1, 1, 0, &s->top_p, err) < 0
        || real_in(req, root, "min_p", 0, 0, 1, 0, &s->min_p, err) < 0
        || real_in(req, root, "presence_penalty", -2, 0, 2, 0, &s->presence_penalty, err) < 0
        || real_in(req, root, "frequency_penalty", -2, 0, 2, 0, &s->frequency_penalty, err) < 0
        || real_in(req, root, "repetition_penalty", 0, 1, 1e9, 0, &s->repetition_penalty,
                   err) < 0)
    {
        return -1;
    }
    rc = qp_get_int(root, "top_k", "top_k", &k, req->errors, err);
    if (rc < 0) {
        return -1;
    }
    if (rc == 1) {
        if (k < -1) {
            return qp_fail(err, req->errors, 400, NULL, "top_k", NULL,
                           "'top_k' must be -1 (off), 0 (off) or a positive integer");
        }
        s->top_k = k > 1000000 ? 1000000 : (int) k;     /* beyond the vocabulary: off */
    }
    rc = qp_get_int(root, "seed", "seed", &seed, req->errors, err);
    if (rc < 0) {
        return -1;
    }
    s->seed = rc == 1 ? (uint64_t) seed : qp_default_seed(cfg);
    return 0;
}

int
qp_openai_parse(qp_request *req, const json_t *root, const qp_config *cfg,
                const qwen_tokenizer *tok, qp_error *err)
{
    const qp_error_style *es = req->errors;
    const json_t         *v = NULL, *opts, *schema = NULL;
    long long             n, max_tokens = 0, lp;
    int                   chat = req->api == QP_OPENAI_CHAT, rc, b, json_out = 0, budget;

    /* model */
    rc = qp_get_string(root, "model", "model", &v, es, err);
    if (rc < 0) {
        return -1;
    }
    if (rc == 1 && !qp_model_matches(cfg, json_string_value(v), json_string_length(v))) {
        return qp_fail(err, es, 404, "not_found_error", "model", "model_not_found",
                       "model '%.200s' not found", json_string_value(v));
    }
    /* n (and best_of, echo on completions) */
    rc = qp_get_int(root, "n", "n", &n, es, err);
    if (rc < 0) {
        return -1;
    }
    if (rc == 1 && n != 1) {
        return qp_fail(err, es, 400, NULL, "n", NULL,
                       "'n' must be 1: one choice per request is supported");
    }
    if (!chat) {
        rc = qp_get_int(root, "best_of", "best_of", &n, es, err);
        if (rc < 0) {
            return -1;
        }
        if (rc == 1 && n != 1) {
            return qp_fail(err, es, 400, NULL, "best_of", NULL, "'best_of' must be 1");
        }
        rc = qp_get_bool(root, "echo", "echo", &b, es, err);
        if (rc < 0) {
            return -1;
        }
        if (rc == 1 && b) {
            return qp_fail(err, es, 400, NULL, "echo", NULL, "'echo' is not supported");
        }
    }
    /* stream, stream_options */
    if (qp_get_bool(root, "stream", "stream", &req->stream, es, err) < 0) {
        return -1;
    }
    opts = json_object_get(root, "stream_options");
    if (opts != NULL && !json_is_null(opts)) {
        if (!json_is_object(opts)) {
            return qp_fail(err, es, 400, NULL, "stream_options", NULL,
                           "'stream_options' must be an object");
        }
        if (qp_get_bool(opts, "include_usage", "stream_options.include_usage",
                        &req->include_usage, es, err) < 0)
        {
            return -1;
        }
    }
    /* max_completion_tokens (newer name) wins over max_tokens */
    rc = qp_get_int(root, "max_tokens", "max_tokens", &max_tokens, es, err);
    if (rc < 0) {
        return -1;
    }
    if (rc == 1 && max_tokens <= 0) {
        return qp_fail(err, es, 400, NULL, "max_tokens", NULL,
                       "'max_tokens' must be a positive integer");
    }
    if (chat) {
        rc = qp_get_int(root, "max_completion_tokens", "max_completion_tokens", &n, es, err);
        if (rc < 0) {
            return -1;
        }
        if (rc == 1 && n <= 0) {
            return qp_fail(err, es, 400, NULL, "max_completion_tokens", NULL,
                           "'max_completion_tokens' must be a positive integer");
        }
        if (rc == 1) {
            max_tokens = n;
        }
    }
    if (parse_sampling(req, root, cfg, err) != 0) {
        return -1;
    }
    if (qp_request_set_stop(req, json_object_get(root, "stop"), "stop", err) != 0) {
        return -1;
    }
    if (qp_get_bool(root, "ignore_eos", "ignore_eos", &req->params.ignore_eos, es, err) < 0
        || qp_request_set_logit_bias(req, json_object_get(root, "logit_bias"), "logit_bias",
                                     qwen_tokenizer_vocab_size(tok), err) != 0
        || qp_get_draft(root, "draft", "draft", &req->params.draft, es, err) < 0
        || parse_thinking_budget(req, root, cfg, chat, &budget, err) != 0)
    {
        return -1;
    }
    /* logprobs */
    if (chat) {
        rc = qp_get_bool(root, "logprobs", "logprobs", &req->logprobs, es, err);
        if (rc < 0) {
            return -1;
        }
        rc = qp_get_int(root, "top_logprobs", "top_logprobs", &lp, es, err);
        if (rc < 0) {
            return -1;
        }
        if (rc == 1) {
            if (lp < 0 || lp > QWEN_MAX_TOP_LOGPROBS) {
                return qp_fail(err, es, 400, NULL, "top_logprobs", NULL,
                               "'top_logprobs' must be between 0 and %d",
                               QWEN_MAX_TOP_LOGPROBS);
            }
            if (lp > 0 && !req->logprobs) {
                return qp_fail(err, es, 400, NULL, "top_logprobs", NULL,
                               "'top_logprobs' needs 'logprobs' set to true");
            }
            req->top_logprobs = (int) lp;
        }
    } else {
        rc = qp_get_int(root, "logprobs", "logprobs", &lp, es, err);
        if (rc < 0) {
            return -1;
        }
        if (rc == 1) {
            if (lp < 0 || lp > 5) {
                return qp_fail(err, es, 400, NULL, "logprobs", NULL,
                               "'logprobs' must be between 0 and 5");
            }
            req->logprobs = 1;
            req->top_logprobs = (int) lp;
        }
    }
    /* the engine reports the chosen token's logprob only with n_logprobs >= 1 */
    req->params.n_logprobs = req->logprobs
                             ? (req->top_logprobs > 0 ? req->top_logprobs : 1) : 0;
    /* response_format */
    opts = json_object_get(root, "response_format");
    if (opts != NULL && !json_is_null(opts)) {
        const json_t *type = json_is_object(opts) ? json_object_get(opts, "type") : NULL;

        if (!json_is_string(type)) {
            return qp_fail(err, es, 400, NULL, "response_format", NULL,
                           "'response_format' must be an object with a \"type\"");
        }
        if (strcmp(json_string_value(type), "json_object") == 0) {
            json_out = 1;
        } else if (strcmp(json_string_value(type), "json_schema") == 0) {
            const json_t *js = json_object_get(opts, "json_schema");

            schema = json_is_object(js) ? json_object_get(js, "schema") : NULL;
            if (!json_is_object(schema)) {
                return qp_fail(err, es, 400, NULL, "response_format", NULL,
                               "response_format json_schema needs "
                               "\"json_schema\":{\"schema\":{...}}");
            }
            json_out = 1;
        } else if (strcmp(json_string_value(type), "text") != 0) {
            return qp_fail(err, es, 400, NULL, "response_format", NULL,
                           "'response_format.type' must be text, json_object or json_schema");
        }
    }
    /* the prompt, then its fit in the context */
    if ((chat ? parse_chat_prompt(req, root, cfg, tok, err)
              : parse_completion_prompt(req, root, tok, err)) != 0
        || qp_request_set_thinking_budget(req, tok, budget, err) != 0)
    {
        return -1;
    }
    if (json_out
        && qp_request_set_grammar(req, tok, schema, "response_format", err) != 0)
    {
        return -1;
    }
    if (!json_out && req->tools && set_tool_grammar(req, root, tok, err) != 0) {
        return -1;
    }
    return qp_request_limits(req, cfg, max_tokens, chat ? "messages" : "prompt", err);
}
