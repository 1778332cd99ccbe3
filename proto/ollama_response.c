/*
 * ollama_response.c - Ollama's NDJSON lines for /api/chat ("message") and
 * /api/generate ("response"): thinking in its own field, tool calls with
 * object arguments, a last line with done_reason and nanosecond durations
 * ("context" for generate), and whole bodies for "stream":false.
 */
#include <string.h>

#include "ollama.h"

/* ------------------------------------------------------------ pieces */

/* {"model":M,"created_at":T, */
static int
line_head(qp_response *r, qp_buf *out)
{
    char now[QP_RFC3339_LEN];

    qp_rfc3339_now(now);
    return qp_json_raw(out, "{\"model\":") != 0 || qp_json_cstr(out, r->model) != 0
           || qp_buf_printf(out, ",\"created_at\":\"%s\",", now) != 0 ? -1 : 0;
}

/* Ollama's done_reason: "stop" or "length"; a tool-call answer stopped. */
static const char *
done_reason(const qp_response *r)
{
    const char *f = r->finish_reason ? r->finish_reason : "stop";

    return strcmp(f, "tool_calls") == 0 ? "stop" : f;
}

/*
 * The durations in nanoseconds from the engine's timing. Ollama's
 * load_duration includes waiting for the model's runner, so the queue time
 * goes there (the model itself is resident); prompt evaluation runs from
 * admission to the first token, evaluation from there to the end. The
 * three add up to total_duration exactly. prompt_eval_count counts the
 * prompt tokens evaluated, not those the prefix cache gave, as Ollama's
 * own cache reports them.
 */
static int
final_fields(qp_response *r, const qwen_request_timing *t, qp_buf *out)
{
    long long total = 0, load = 0, first = 0;

    if (t != NULL) {
        total = t->total_ms > 0 ? (long long) (t->total_ms * 1e6 + 0.5) : 0;
        load = t->queued_ms > 0 ? (long long) (t->queued_ms * 1e6 + 0.5) : 0;
        first = t->first_token_ms >= 0 ? (long long) (t->first_token_ms * 1e6 + 0.5) : total;
    }
    load = load < total ? load : total;
    first = first < load ? load : first > total ? total : first;
    return qp_buf_printf(out, ",\"total_duration\":%lld,\"load_duration\":%lld,"
                         "\"prompt_eval_count\":%zu,\"prompt_eval_duration\":%lld,"
                         "\"eval_count\":%zu,\"eval_duration\":%lld}",
                         total, load, r->n_prompt - r->n_cached, first - load, r->n_tokens,
                         total - first);
}

static int
context_json(qp_response *r, qp_buf *out)
{
    size_t i;

    if (!r->want_context) {
        return 0;
    }
    if (qp_json_raw(out, ",\"context\":[") != 0) {
        return -1;
    }
    for (i = 0; i < r->n_ctx_ids; i++) {
        if (qp_buf_printf(out, i ? ",%d" : "%d", (int) r->ctx_ids[i]) != 0) {
            return -1;
        }
    }
    return qp_json_raw(out, "]");
}

/* {"function":{"index":i,"name":..,"arguments":{..}}}. The pipeline gives
 * arguments as JSON text; anything but an object (a model writing broken
 * JSON) is passed on as a string rather than lost. */
static int
tool_call_json(const qp_tool_call *tc, size_t index, qp_buf *out)
{
    json_t       *args;
    json_error_t  jerr;
    const char   *a = tc->arguments ? tc->arguments : "{}";
    int           object;

    args = json_loads(a, 0, &jerr);
    object = json_is_object(args);
    json_decref(args);
    return qp_buf_printf(out, "{\"function\":{\"index\":%zu,\"name\":", index) != 0
           || qp_json_cstr(out, tc->name) != 0
           || qp_json_raw(out, ",\"arguments\":") != 0
           || (object ? qp_json_raw(out, a) : qp_json_cstr(out, a)) != 0
           || qp_json_raw(out, "}}") != 0 ? -1 : 0;
}

/* ------------------------------------------------------------- streams */

static int
chat_delta(qp_response *r, qp_channel ch, const char *s, size_t n, qp_buf *out)
{
    int thinking = ch == QP_CH_REASONING;

    return line_head(r, out) != 0
           || qp_json_raw(out, "\"message\":{\"role\":\"assistant\",\"content\":") != 0
           || (thinking ? qp_json_raw(out, "\"\",\"thinking\":") : 0) != 0
           || qp_json_str(out, s, n) != 0
           || qp_json_raw(out, "},\"done\":false}\n") != 0 ? -1 : 0;
}

static int
generate_delta(qp_response *r, qp_channel ch, const char *s, size_t n, qp_buf *out)
{
    int thinking = ch == QP_CH_REASONING;

    return line_head(r, out) != 0
           || qp_json_raw(out, thinking ? "\"response\":\"\",\"thinking\":" : "\"response\":") != 0
           || qp_json_str(out, s, n) != 0
           || qp_json_raw(out, ",\"done\":false}\n") != 0 ? -1 : 0;
}

static int
chat_tool_call(qp_response *r, const qp_tool_call *tc, size_t index, qp_buf *out)
{
    return line_head(r, out) != 0
           || qp_json_raw(out, "\"message\":{\"role\":\"assistant\",\"content\":\"\","
                          "\"tool_calls\":[") != 0
           || tool_call_json(tc, index, out) != 0
           || qp_json_raw(out, "]},\"done\":false}\n") != 0 ? -1 : 0;
}

static int
chat_end(qp_response *r, const qwen_request_timing *timing, qp_buf *out)
{
    return line_head(r, out) != 0
           || qp_json_raw(out, "\"message\":{\"role\":\"assistant\",\"content\":\"\"},"
                          "\"done_reason\":") != 0
           || qp_json_cstr(out, done_reason(r)) != 0
           || qp_json_raw(out, ",\"done\":true") != 0
           || final_fields(r, timing, out) != 0
           || qp_json_raw(out, "\n") != 0 ? -1 : 0;
}

static int
generate_end(qp_response *r, const qwen_request_timing *timing, qp_buf *out)
{
    return line_head(r, out) != 0
           || qp_json_raw(out, "\"response\":\"\",\"done\":true,\"done_reason\":") != 0
           || qp_json_cstr(out, done_reason(r)) != 0
           || context_json(r, out) != 0
           || final_fields(r, timing, out) != 0
           || qp_json_raw(out, "\n") != 0 ? -1 : 0;
}

/* -------------------------------------------------------------- bodies */

/* The whole answer, then "thinking" when there was any. */
static int
content_json(qp_response *r, qp_buf *out)
{
    return qp_json_str(out, r->content.data ? r->content.data : "", r->content.len) != 0
           || (r->reasoning.len > 0
               && (qp_json_raw(out, ",\"thinking\":") != 0
                   || qp_json_str(out, r->reasoning.data, r->reasoning.len) != 0)) ? -1 : 0;
}

static int
chat_body(qp_response *r, const qwen_request_timing *timing, qp_buf *out)
{
    size_t i;

    if (line_head(r, out) != 0
        || qp_json_raw(out, "\"message\":{\"role\":\"assistant\",\"content\":") != 0
        || content_json(r, out) != 0)
    {
        return -1;
    }
    if (r->n_calls > 0) {
        if (qp_json_raw(out, ",\"tool_calls\":[") != 0) {
            return -1;
        }
        for (i = 0; i < r->n_calls; i++) {
            if ((i > 0 && qp_json_raw(out, ",") != 0)
                || tool_call_json(&r->calls[i], i, out) != 0)
            {
                return -1;
            }
        }
        if (qp_json_raw(out, "]") != 0) {
            return -1;
        }
    }
    return qp_json_raw(out, "},\"done_reason\":") != 0
           || qp_json_cstr(out, done_reason(r)) != 0
           || qp_json_raw(out, ",\"done\":true") != 0
           || final_fields(r, timing, out) != 0 ? -1 : 0;
}

static int
generate_body(qp_response *r, const qwen_request_timing *timing, qp_buf *out)
{
    return line_head(r, out) != 0
           || qp_json_raw(out, "\"response\":") != 0
           || content_json(r, out) != 0
           || qp_json_raw(out, ",\"done\":true,\"done_reason\":") != 0
           || qp_json_cstr(out, done_reason(r)) != 0
           || context_json(r, out) != 0
           || final_fields(r, timing, out) != 0 ? -1 : 0;
}

/* No role line: every line names the role; /api/generate takes no tools.
 * An error after the first line is one more {"error":..} line. */
const qp_format qp_ollama_chat_format = {
    "application/x-ndjson", "", "\n",
    NULL, chat_delta, chat_tool_call, chat_end, chat_body
};

const qp_format qp_ollama_generate_format = {
    "application/x-ndjson", "", "\n",
    NULL, generate_delta, NULL, generate_end, generate_body
};
