/*
 * chat_template.c - Qwen3's chat template (tokenizer_config.json
 * chat_template) written out in C, byte for byte what Hugging Face's Jinja
 * rendering gives: optional system turn with tool signatures, user/system/
 * assistant/tool turns, <think> kept only for assistant turns after the
 * last real user query, tool calls as <tool_call> JSON, the generation
 * prompt and the empty think block when thinking is off. The Jinja source
 * is quoted next to each part. NULL content renders as "" (Jinja would
 * fail on None; servers send null content with tool calls).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_py.h"
#include "qwen.h"

typedef struct {
    const char *p;
    size_t      n;
} span;

static span
sp(const char *s)
{
    span r;
    r.p = s ? s : "";
    r.n = strlen(r.p);
    return r;
}

static int
starts_with(span s, const char *pre)
{
    size_t n = strlen(pre);
    return s.n >= n && memcmp(s.p, pre, n) == 0;
}

static int
ends_with(span s, const char *suf)
{
    size_t n = strlen(suf);
    return s.n >= n && memcmp(s.p + s.n - n, suf, n) == 0;
}

/* Python's str.find / rfind for a needle, or -1. */
static long
find_first(span s, const char *needle)
{
    size_t n = strlen(needle), i;
    for (i = 0; i + n <= s.n; i++)
        if (memcmp(s.p + i, needle, n) == 0) return (long) i;
    return -1;
}

static long
find_last(span s, const char *needle)
{
    size_t n = strlen(needle), i;
    if (s.n < n) return -1;
    for (i = s.n - n + 1; i-- > 0; )
        if (memcmp(s.p + i, needle, n) == 0) return (long) i;
    return -1;
}

static span
lstrip_nl(span s)
{
    while (s.n && s.p[0] == '\n') { s.p++; s.n--; }
    return s;
}

static span
rstrip_nl(span s)
{
    while (s.n && s.p[s.n - 1] == '\n') s.n--;
    return s;
}

static void
put(jp_buf *b, const char *s)
{
    qwen_jp_buf_puts(b, s);
}

static void
put_span(jp_buf *b, span s)
{
    qwen_jp_buf_append(b, s.p, s.n);
}

/* Jinja truthiness of a JSON value. */
static int
truthy(const json_t *v)
{
    switch (v ? json_typeof(v) : JSON_NULL) {
    case JSON_OBJECT:  return json_object_size(v) > 0;
    case JSON_ARRAY:   return json_array_size(v) > 0;
    case JSON_STRING:  return json_string_length(v) > 0;
    case JSON_INTEGER: return json_integer_value(v) != 0;
    case JSON_REAL:    return json_real_value(v) != 0.0;
    case JSON_TRUE:    return 1;
    default:           return 0;
    }
}

static json_t *
parse_json(const char *text, const char *what, size_t msg, char *err, size_t err_len)
{
    json_error_t je;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &je);
    if (v == NULL) {
        if (msg == (size_t) -1)
            snprintf(err, err_len, "chat template: %s: invalid JSON at line %d, "
                     "column %d: %s", what, je.line, je.column, je.text);
        else
            snprintf(err, err_len, "chat template: message %zu: %s: invalid JSON "
                     "at line %d, column %d: %s", msg, what, je.line, je.column,
                     je.text);
    }
    return v;
}

/*
 * {%- for tool_call in message.tool_calls %}
 *     {%- if (loop.first and content) or (not loop.first) %}{{- '\n' }}{%- endif %}
 *     {%- if tool_call.function %}{%- set tool_call = tool_call.function %}{%- endif %}
 *     {{- '<tool_call>\n{"name": "' }}{{- tool_call.name }}{{- '", "arguments": ' }}
 *     {%- if tool_call.arguments is string %}{{- tool_call.arguments }}
 *     {%- else %}{{- tool_call.arguments | tojson }}{%- endif %}
 *     {{- '}\n</tool_call>' }}
 * {%- endfor %}
 */
static int
render_tool_calls(jp_buf *b, json_t *calls, span content, size_t mi,
                  char *err, size_t err_len)
{
    size_t k;
    for (k = 0; k < json_array_size(calls); k++) {
        json_t *tc = json_array_get(calls, k), *fn, *name, *args;
        if (!json_is_object(tc)) {
            snprintf(err, err_len, "chat template: message %zu: tool call %zu is "
                     "not an object", mi, k);
            return -1;
        }
        if ((k == 0 && content.n > 0) || k > 0) put(b, "\n");
        fn = json_object_get(tc, "function");
        if (truthy(fn)) {
            if (!json_is_object(fn)) {
                snprintf(err, err_len, "chat template: message %zu: tool call %zu: "
                         "\"function\" is not an object", mi, k);
                return -1;
            }
            tc = fn;
        }
        put(b, "<tool_call>\n{\"name\": \"");
        name = json_object_get(tc, "name");
        if (name && qwen_json_py_str(name, b) != 0) goto oom;   /* missing: "" */
        put(b, "\", \"arguments\": ");
        args = json_object_get(tc, "arguments");
        if (args == NULL) {
            snprintf(err, err_len, "chat template: message %zu: tool call %zu has "
                     "no \"arguments\"", mi, k);
            return -1;
        }
        if (json_is_string(args)) {
            qwen_jp_buf_append(b, json_string_value(args), json_string_length(args));
        } else if (qwen_json_py_dumps(args, b) != 0) {
            snprintf(err, err_len, "chat template: message %zu: tool call %zu: "
                     "arguments cannot be serialised", mi, k);
            return -1;
        }
        put(b, "}\n</tool_call>");
    }
    return 0;
oom:
    snprintf(err, err_len, "chat template: out of memory");
    return -1;
}

int
qwen_chat_render(const qwen_chat_message *msgs, size_t n_msgs,
                 const char *tools_json, int add_generation_prompt,
                 int enable_thinking, char **out, size_t *out_len,
                 char *err, size_t err_len)
{
    jp_buf b = { NULL, 0, 0, 0 };
    json_t *tools = NULL, *calls = NULL;
    size_t i, last_query;
    int rc = -1, has_tools;

    *out = NULL;
    if (out_len) *out_len = 0;
    if (n_msgs == 0 || msgs == NULL) {
        snprintf(err, err_len, "chat template: no messages");
        return -1;
    }
    for (i = 0; i < n_msgs; i++) {
        if (msgs[i].role == NULL) {
            snprintf(err, err_len, "chat template: message %zu has no role", i);
            return -1;
        }
    }
    if (tools_json && *tools_json) {
        tools = parse_json(tools_json, "tools", (size_t) -1, err, err_len);
        if (tools == NULL) return -1;
        if (!json_is_array(tools) && !json_is_null(tools)) {
            snprintf(err, err_len, "chat template: tools must be a JSON array");
            goto done;
        }
    }
    has_tools = truthy(tools);

    /*
     * {%- if tools %}
     *     {{- '<|im_start|>system\n' }}
     *     {%- if messages[0].role == 'system' %}{{- messages[0].content + '\n\n' }}{%- endif %}
     *     {{- "# Tools\n\nYou may call ... <tools>" }}
     *     {%- for tool in tools %}{{- "\n" }}{{- tool | tojson }}{%- endfor %}
     *     {{- "\n</tools>\n\nFor each function call, ... </tool_call><|im_end|>\n" }}
     * {%- else %}
     *     {%- if messages[0].role == 'system' %}
     *         {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
     */
    if (has_tools) {
        put(&b, "<|im_start|>system\n");
        if (strcmp(msgs[0].role, "system") == 0) {
            put_span(&b, sp(msgs[0].content));
            put(&b, "\n\n");
        }
        put(&b, "# Tools\n\nYou may call one or more functions to assist with the "
                "user query.\n\nYou are provided with function signatures within "
                "<tools></tools> XML tags:\n<tools>");
        for (i = 0; i < json_array_size(tools); i++) {
            put(&b, "\n");
            if (qwen_json_py_dumps(json_array_get(tools, i), &b) != 0) {
                snprintf(err, err_len, "chat template: tool %zu cannot be serialised", i);
                goto done;
            }
        }
        put(&b, "\n</tools>\n\nFor each function call, return a json object with "
                "function name and arguments within <tool_call></tool_call> XML "
                "tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
                "<args-json-object>}\n</tool_call><|im_end|>\n");
    } else if (strcmp(msgs[0].role, "system") == 0) {
        put(&b, "<|im_start|>system\n");
        put_span(&b, sp(msgs[0].content));
        put(&b, "<|im_end|>\n");
    }

    /*
     * The last user turn that is not a wrapped tool response; assistant
     * turns after it keep their thinking.
     * {%- for message in messages[::-1] %} ... {%- set ns.last_query_index = index %}
     */
    last_query = n_msgs - 1;
    for (i = n_msgs; i-- > 0; ) {
        span c = sp(msgs[i].content);
        if (strcmp(msgs[i].role, "user") == 0 &&
            !(starts_with(c, "<tool_response>") && ends_with(c, "</tool_response>"))) {
            last_query = i;
            break;
        }
    }

    for (i = 0; i < n_msgs; i++) {
        const qwen_chat_message *m = &msgs[i];
        span content = sp(m->content);

        if (strcmp(m->role, "user") == 0 || (strcmp(m->role, "system") == 0 && i > 0)) {
            /* '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' */
            put(&b, "<|im_start|>");
            put(&b, m->role);
            put(&b, "\n");
            put_span(&b, content);
            put(&b, "<|im_end|>\n");
        } else if (strcmp(m->role, "assistant") == 0) {
            span reasoning = sp("");
            if (m->reasoning_content) {
                reasoning = sp(m->reasoning_content);
            } else {
                /* content = message.content.split('</think>')[-1].lstrip('\n')
                 * reasoning = message.content.split('</think>')[0].rstrip('\n')
                 *             .split('<think>')[-1].lstrip('\n') */
                long first = find_first(content, "</think>");
                if (first >= 0) {
                    long last = find_last(content, "</think>");
                    span head = { content.p, (size_t) first }, tail;
                    long open;
                    tail.p = content.p + last + 8;
                    tail.n = content.n - (size_t) last - 8;
                    head = rstrip_nl(head);
                    open = find_last(head, "<think>");
                    if (open >= 0) {
                        head.p += open + 7;
                        head.n -= (size_t) open + 7;
                    }
                    reasoning = lstrip_nl(head);
                    content = lstrip_nl(tail);
                }
            }
            put(&b, "<|im_start|>assistant\n");
            if (i > last_query && (i == n_msgs - 1 || reasoning.n > 0)) {
                /* '\n<think>\n' + reasoning_content.strip('\n') +
                 * '\n</think>\n\n' + content.lstrip('\n') */
                put(&b, "<think>\n");
                put_span(&b, rstrip_nl(lstrip_nl(reasoning)));
                put(&b, "\n</think>\n\n");
                put_span(&b, lstrip_nl(content));
            } else {
                put_span(&b, content);
            }
            if (m->tool_calls_json && *m->tool_calls_json) {
                calls = parse_json(m->tool_calls_json, "tool_calls", i, err, err_len);
                if (calls == NULL) goto done;
                if (truthy(calls)) {
                    if (!json_is_array(calls)) {
                        snprintf(err, err_len, "chat template: message %zu: tool_calls "
                                 "must be a JSON array", i);
                        goto done;
                    }
                    if (render_tool_calls(&b, calls, content, i, err, err_len) != 0)
                        goto done;
                }
                json_decref(calls);
                calls = NULL;
            }
            put(&b, "<|im_end|>\n");
        } else if (strcmp(m->role, "tool") == 0) {
            /* consecutive tool results share one user turn */
            if (i == 0 || strcmp(msgs[i - 1].role, "tool") != 0) put(&b, "<|im_start|>user");
            put(&b, "\n<tool_response>\n");
            put_span(&b, content);
            put(&b, "\n</tool_response>");
            if (i == n_msgs - 1 || strcmp(msgs[i + 1].role, "tool") != 0)
                put(&b, "<|im_end|>\n");
        }
        /* the first system message was rendered above; other roles render
         * nothing, as in the template */
    }

    if (add_generation_prompt) {
        put(&b, "<|im_start|>assistant\n");
        if (!enable_thinking) put(&b, "<think>\n\n</think>\n\n");
    }
    if (b.oom) {
        snprintf(err, err_len, "chat template: out of memory");
        goto done;
    }
    if (b.data == NULL) qwen_jp_buf_append(&b, "", 0);
    if (b.oom) {
        snprintf(err, err_len, "chat template: out of memory");
        goto done;
    }
    *out = b.data;
    if (out_len) *out_len = b.len;
    b.data = NULL;
    rc = 0;
done:
    json_decref(calls);
    json_decref(tools);
    qwen_jp_buf_free(&b);
    return rc;
}
