/*
 * openai_response.c - OpenAI framing of answers: chat.completion.chunk and
 * text_completion SSE events, whole chat.completion / text_completion
 * bodies with usage and logprobs in each endpoint's shape; errors go out
 * as one more event.
 */
#include <string.h>

#include "openai.h"

/* ========================================================== formatting */

static int
chunk_head(qp_response *r, qp_buf *out)
{
    return qp_json_raw(out, "data: {\"id\":") != 0
           || qp_json_cstr(out, r->id) != 0
           || qp_json_raw(out, r->api == QP_OPENAI_CHAT
                               ? ",\"object\":\"chat.completion.chunk\",\"created\":"
                               : ",\"object\":\"text_completion\",\"created\":") != 0
           || qp_buf_printf(out, "%lld", (long long) r->created) != 0
           || qp_json_raw(out, ",\"model\":") != 0
           || qp_json_cstr(out, r->model) != 0
           || qp_json_raw(out, ",\"choices\":[") != 0 ? -1 : 0;
}

static int
chunk_tail(qp_response *r, qp_buf *out)
{
    /* with include_usage, OpenAI sends "usage":null on the other chunks */
    return qp_json_raw(out, r->include_usage ? "]," "\"usage\":null}\n\n" : "]}\n\n");
}

static int
token_text(qp_buf *out, const qwen_tokenizer *tok, int32_t id)
{
    size_t      len = 0;
    const char *s = qwen_token_bytes(tok, id, &len);

    return qp_json_str(out, s ? s : "", s ? len : 0);
}

static int
token_bytes(qp_buf *out, const qwen_tokenizer *tok, int32_t id)
{
    size_t               len = 0, i;
    const unsigned char *s = (const unsigned char *) qwen_token_bytes(tok, id, &len);

    if (qp_json_raw(out, "[") != 0) {
        return -1;
    }
    for (i = 0; s != NULL && i < len; i++) {
        if (qp_buf_printf(out, i ? ",%u" : "%u", s[i]) != 0) {
            return -1;
        }
    }
    return qp_json_raw(out, "]");
}

/* {"token":..,"logprob":..,"bytes":[..] and "}" unless left open */
static int
chat_lp_item(qp_buf *out, const qwen_tokenizer *tok, int32_t id, float lp, int close)
{
    return qp_json_raw(out, "{\"token\":") != 0 || token_text(out, tok, id) != 0
           || qp_json_raw(out, ",\"logprob\":") != 0 || qp_json_float(out, lp) != 0
           || qp_json_raw(out, ",\"bytes\":") != 0 || token_bytes(out, tok, id) != 0
           || (close && qp_json_raw(out, "}") != 0) ? -1 : 0;
}

/* Chat shape: {"content":[{token,logprob,bytes,top_logprobs:[..]}..]} */
static int
chat_logprobs(qp_response *r, qp_buf *out)
{
    const qp_logprob *lp = r->lp;
    size_t            i, n = r->n_lp;
    int               j, top;

    if (!r->logprobs) {
        return qp_json_raw(out, "null");
    }
    if (qp_json_raw(out, "{\"content\":[") != 0) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        top = lp[i].n_top < r->top_logprobs ? lp[i].n_top : r->top_logprobs;
        if ((i > 0 && qp_json_raw(out, ",") != 0)
            || chat_lp_item(out, r->tok, lp[i].token, lp[i].logprob, 0) != 0
            || qp_json_raw(out, ",\"top_logprobs\":[") != 0)
        {
            return -1;
        }
        for (j = 0; j < top; j++) {
            if ((j > 0 && qp_json_raw(out, ",") != 0)
                || chat_lp_item(out, r->tok, lp[i].top_ids[j], lp[i].top_logprobs[j], 1) != 0)
            {
                return -1;
            }
        }
        if (qp_json_raw(out, "]}") != 0) {
            return -1;
        }
    }
    return qp_json_raw(out, "]}");
}

/* Legacy completions shape: {"tokens","token_logprobs","top_logprobs"
 * [{tok:lp}],"text_offset"}; with logprobs 0 each top map holds the chosen
 * token only (as vLLM answers). */
static int
legacy_logprobs(qp_response *r, qp_buf *out)
{
    const qp_logprob *lp = r->lp;
    size_t            i, n = r->n_lp;
    int               j, top;

    if (!r->logprobs) {
        return qp_json_raw(out, "null");
    }
    if (qp_json_raw(out, "{\"tokens\":[") != 0) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        if ((i > 0 && qp_json_raw(out, ",") != 0) || token_text(out, r->tok, lp[i].token) != 0) {
            return -1;
        }
    }
    if (qp_json_raw(out, "],\"token_logprobs\":[") != 0) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        if ((i > 0 && qp_json_raw(out, ",") != 0) || qp_json_float(out, lp[i].logprob) != 0) {
            return -1;
        }
    }
    if (qp_json_raw(out, "],\"top_logprobs\":[") != 0) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        if (qp_json_raw(out, i > 0 ? ",{" : "{") != 0) {
            return -1;
        }
        top = lp[i].n_top < r->top_logprobs ? lp[i].n_top : r->top_logprobs;
        if (top == 0) {
            if (token_text(out, r->tok, lp[i].token) != 0 || qp_json_raw(out, ":") != 0
                || qp_json_float(out, lp[i].logprob) != 0)
            {
                return -1;
            }
        }
        for (j = 0; j < top; j++) {
            if ((j > 0 && qp_json_raw(out, ",") != 0)
                || token_text(out, r->tok, lp[i].top_ids[j]) != 0
                || qp_json_raw(out, ":") != 0
                || qp_json_float(out, lp[i].top_logprobs[j]) != 0)
            {
                return -1;
            }
        }
        if (qp_json_raw(out, "}") != 0) {
            return -1;
        }
    }
    if (qp_json_raw(out, "],\"text_offset\":[") != 0) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        if (qp_buf_printf(out, i ? ",%zu" : "%zu", lp[i].text_offset) != 0) {
            return -1;
        }
    }
    return qp_json_raw(out, "]}");
}

/* The logprobs in r->lp in the endpoint's shape. */
static int
logprobs_json(qp_response *r, qp_buf *out)
{
    return r->api == QP_OPENAI_CHAT ? chat_logprobs(r, out) : legacy_logprobs(r, out);
}

static int
usage_json(qp_response *r, qp_buf *out)
{
    if (qp_buf_printf(out, "{\"prompt_tokens\":%zu,\"completion_tokens\":%zu,"
                      "\"total_tokens\":%zu,\"prompt_tokens_details\":{\"cached_tokens\":%zu}",
                      r->n_prompt, r->n_tokens, r->n_prompt + r->n_tokens, r->n_cached) != 0)
    {
        return -1;
    }
    if (r->api == QP_OPENAI_CHAT
        && qp_buf_printf(out, ",\"completion_tokens_details\":{\"reasoning_tokens\":%zu}",
                         r->n_reasoning_tokens) != 0)
    {
        return -1;
    }
    return qp_json_raw(out, "}");
}

static const char *
reasoning_key(const qp_response *r)
{
    return r->reasoning_field == 1 ? "reasoning" : "reasoning_content";
}

/* Deterministic per response and index: unique as the response id is. */
static int
tool_call_id(qp_buf *out, const char *resp_id, size_t index)
{
    uint64_t    h = 1469598103934665603ull;
    const char *p;

    for (p = resp_id; *p; p++) {
        h = (h ^ (unsigned char) *p) * 1099511628211ull;
    }
    h ^= (uint64_t) (index + 1) * 0x9e3779b97f4a7c15ull;
    h = (h ^ (h >> 31)) * 0xbf58476d1ce4e5b9ull;
    return qp_buf_printf(out, "\"call_%016llx%02zx\"", (unsigned long long) h, index & 0xff);
}

/* {"id":"call_..","type":"function","function":{"name":..,"arguments":".."}} */
static int
tool_call_json(qp_response *r, const qp_tool_call *tc, size_t index, int with_index,
               qp_buf *out)
{
    return qp_json_raw(out, "{") != 0
           || (with_index && qp_buf_printf(out, "\"index\":%zu,", index) != 0)
           || qp_json_raw(out, "\"id\":") != 0 || tool_call_id(out, r->id, index) != 0
           || qp_json_raw(out, ",\"type\":\"function\",\"function\":{\"name\":") != 0
           || qp_json_cstr(out, tc->name) != 0
           || qp_json_raw(out, ",\"arguments\":") != 0
           || qp_json_cstr(out, tc->arguments) != 0
           || qp_json_raw(out, "}}") != 0 ? -1 : 0;
}

/* The rest of a delta chunk: the logprobs not yet framed (then taken), a
 * null finish_reason, the tail. */
static int
delta_tail(qp_response *r, qp_buf *out)
{
    if (logprobs_json(r, out) != 0
        || qp_json_raw(out, ",\"finish_reason\":null}") != 0
        || chunk_tail(r, out) != 0)
    {
        return -1;
    }
    r->n_lp = 0;
    return 0;
}

/* ------------------------------------------------------------ chat SSE */

static int
chat_begin(qp_response *r, qp_buf *out)
{
    return chunk_head(r, out) != 0
           || qp_json_raw(out, "{\"index\":0,\"delta\":{\"role\":\"assistant\","
                          "\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}") != 0
           || chunk_tail(r, out) != 0 ? -1 : 0;
}

static int
chat_delta(qp_response *r, qp_channel ch, const char *s, size_t n, qp_buf *out)
{
    return chunk_head(r, out) != 0
           || qp_json_raw(out, "{\"index\":0,\"delta\":{\"") != 0
           || qp_json_raw(out, ch == QP_CH_REASONING ? reasoning_key(r) : "content") != 0
           || qp_json_raw(out, "\":") != 0
           || qp_json_str(out, s, n) != 0
           || qp_json_raw(out, "},\"logprobs\":") != 0
           || delta_tail(r, out) != 0 ? -1 : 0;
}

static int
chat_tool_call(qp_response *r, const qp_tool_call *tc, size_t index, qp_buf *out)
{
    return chunk_head(r, out) != 0
           || qp_json_raw(out, "{\"index\":0,\"delta\":{\"tool_calls\":[") != 0
           || tool_call_json(r, tc, index, 1, out) != 0
           || qp_json_raw(out, "]},\"logprobs\":null,\"finish_reason\":null}") != 0
           || chunk_tail(r, out) != 0 ? -1 : 0;
}

/* The final choice chunk, the usage chunk, [DONE] (both endpoints). */
static int
openai_end(qp_response *r, const qwen_request_timing *timing, qp_buf *out)
{
    int chat = r->api == QP_OPENAI_CHAT;

    (void) timing;
    if (chunk_head(r, out) != 0
        || qp_json_raw(out, chat ? "{\"index\":0,\"delta\":{},\"logprobs\":"
                                 : "{\"text\":\"\",\"index\":0,\"logprobs\":") != 0
        || (r->n_lp > 0 ? logprobs_json(r, out) : qp_json_raw(out, "null")) != 0
        || qp_json_raw(out, ",\"finish_reason\":") != 0
        || qp_json_cstr(out, r->finish_reason) != 0
        || qp_json_raw(out, "}") != 0
        || chunk_tail(r, out) != 0)
    {
        return -1;
    }
    r->n_lp = 0;
    if (r->include_usage) {
        if (chunk_head(r, out) != 0 || qp_json_raw(out, "],\"usage\":") != 0
            || usage_json(r, out) != 0 || qp_json_raw(out, "}\n\n") != 0)
        {
            return -1;
        }
    }
    return qp_json_raw(out, "data: [DONE]\n\n");
}

/* ------------------------------------------------------ completions SSE */

static int
cmpl_delta(qp_response *r, qp_channel ch, const char *s, size_t n, qp_buf *out)
{
    (void) ch;
    return chunk_head(r, out) != 0
           || qp_json_raw(out, "{\"text\":") != 0
           || qp_json_str(out, s, n) != 0
           || qp_json_raw(out, ",\"index\":0,\"logprobs\":") != 0
           || delta_tail(r, out) != 0 ? -1 : 0;
}

/* -------------------------------------------------------------- bodies */

static int
body_head(qp_response *r, const char *object, qp_buf *out)
{
    return qp_json_raw(out, "{\"id\":") != 0 || qp_json_cstr(out, r->id) != 0
           || qp_json_raw(out, ",\"object\":") != 0 || qp_json_cstr(out, object) != 0
           || qp_buf_printf(out, ",\"created\":%lld,\"model\":", (long long) r->created) != 0
           || qp_json_cstr(out, r->model) != 0
           || qp_json_raw(out, ",\"choices\":[") != 0 ? -1 : 0;
}

static int
body_tail(qp_response *r, qp_buf *out)
{
    return qp_json_raw(out, ",\"finish_reason\":") != 0
           || qp_json_cstr(out, r->finish_reason) != 0
           || qp_json_raw(out, "}],\"usage\":") != 0
           || usage_json(r, out) != 0
           || qp_json_raw(out, "}") != 0 ? -1 : 0;
}

static int
chat_body(qp_response *r, const qwen_request_timing *timing, qp_buf *out)
{
    size_t i;

    (void) timing;
    if (body_head(r, "chat.completion", out) != 0
        || qp_json_raw(out, "{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":") != 0)
    {
        return -1;
    }
    /* content is null for a pure tool-call answer, as OpenAI sends it */
    if ((r->content.len == 0 && r->n_calls > 0
         ? qp_json_raw(out, "null")
         : qp_json_str(out, r->content.data ? r->content.data : "", r->content.len)) != 0)
    {
        return -1;
    }
    if (r->reasoning.len > 0
        && (qp_buf_printf(out, ",\"%s\":", reasoning_key(r)) != 0
            || qp_json_str(out, r->reasoning.data, r->reasoning.len) != 0))
    {
        return -1;
    }
    if (r->n_calls > 0) {
        if (qp_json_raw(out, ",\"tool_calls\":[") != 0) {
            return -1;
        }
        for (i = 0; i < r->n_calls; i++) {
            if ((i > 0 && qp_json_raw(out, ",") != 0)
                || tool_call_json(r, &r->calls[i], i, 0, out) != 0)
            {
                return -1;
            }
        }
        if (qp_json_raw(out, "]") != 0) {
            return -1;
        }
    }
    return qp_json_raw(out, "},\"logprobs\":") != 0
           || chat_logprobs(r, out) != 0
           || body_tail(r, out) != 0 ? -1 : 0;
}

static int
cmpl_body(qp_response *r, const qwen_request_timing *timing, qp_buf *out)
{
    (void) timing;
    return body_head(r, "text_completion", out) != 0
           || qp_json_raw(out, "{\"text\":") != 0
           || qp_json_str(out, r->content.data ? r->content.data : "", r->content.len) != 0
           || qp_json_raw(out, ",\"index\":0,\"logprobs\":") != 0
           || legacy_logprobs(r, out) != 0
           || body_tail(r, out) != 0 ? -1 : 0;
}

/* Text completions have no role chunk and never parse tool calls. */
const qp_format qp_openai_chat_format = {
    "text/event-stream", "data: ", "\n\n",
    chat_begin, chat_delta, chat_tool_call, openai_end, chat_body
};

const qp_format qp_openai_completions_format = {
    "text/event-stream", "data: ", "\n\n",
    NULL, cmpl_delta, NULL, openai_end, cmpl_body
};
