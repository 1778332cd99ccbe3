/*
 * stream_text.c - token ids to channelled text for one response, in three
 * stages: (1) markers and detokenization (EOG ids end the answer and are
 * never text; <think>, </think>, <tool_call>, </tool_call> switch state),
 * (2) stop strings (text that could begin one is held back, a match ends
 * the answer before the stop string), (3) whitespace shaping.
 *
 * Shaping follows Qwen3's reference parser, which decodes the ids before
 * the last </think> as thinking and the rest as content, each .strip("\n"),
 * and its chat template (lstrip('\n') of content after </think>):
 *   - reasoning: every '\n' right after <think> is dropped, and '\n's at
 *     its end are kept back, then dropped at </think> or at the end;
 *   - content after </think>: its leading '\n's are dropped;
 *   - with tools: whitespace right before a <tool_call> block that parses
 *     and right after its </tool_call> is dropped (Qwen writes "\n\n"
 *     between calls); trailing whitespace is dropped at the end when a
 *     tool call was made. A block that does not parse stays text.
 * Content's own trailing newlines are kept, as other servers keep them.
 * Tool-call bodies are not matched against stop strings: they come out
 * whole as parsed JSON, never as text.
 */
#define _GNU_SOURCE             /* memmem */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "stream_text.h"

enum {
    QP_TS_CONTENT = 0,
    QP_TS_REASONING,
    QP_TS_TOOL
};

static const char ws_chars[] = " \t\r\n";
static const char nl_chars[] = "\n";
static const char replacement[] = "\xef\xbf\xbd";   /* U+FFFD */

void
qp_tool_call_clear(qp_tool_call *tc)
{
    free(tc->name);
    free(tc->arguments);
    tc->name = NULL;
    tc->arguments = NULL;
}

static int32_t
marker_id(const qwen_tokenizer *tok, const char *s)
{
    return qwen_token_id(tok, s, strlen(s));
}

int
qp_text_init(qp_text *t, const qwen_tokenizer *tok, const qp_text_options *opt)
{
    memset(t, 0, sizeof(*t));
    t->tok = tok;
    t->opt = *opt;
    t->id_think = marker_id(tok, "<think>");
    t->id_think_end = marker_id(tok, "</think>");
    t->id_tool = marker_id(tok, "<tool_call>");
    t->id_tool_end = marker_id(tok, "</tool_call>");
    t->state = QP_TS_CONTENT;
    if (opt->tools) {
        t->trim_tail = ws_chars;
    }
    return 0;
}

void
qp_text_free(qp_text *t)
{
    qp_buf_free(&t->hold);
    qp_buf_free(&t->tail);
    qp_buf_free(&t->tool);
    qp_buf_free(&t->scratch);
}

int
qp_text_in_reasoning(const qp_text *t)
{
    return t->state == QP_TS_REASONING;
}

static qp_channel
channel(const qp_text *t)
{
    return t->state == QP_TS_REASONING ? QP_CH_REASONING : QP_CH_CONTENT;
}

/* ------------------------------------------------------- stage 3: shaping */

static int
emit(qp_text *t, const qp_text_sink *sink, const char *s, size_t n)
{
    return n > 0 ? sink->text(sink->ctx, channel(t), s, n) : 0;
}

static int
release_tail(qp_text *t, const qp_text_sink *sink)
{
    int rc = emit(t, sink, t->tail.data, t->tail.len);

    qp_buf_reset(&t->tail);
    return rc;
}

static int
shaped(qp_text *t, const qp_text_sink *sink, const char *s, size_t n)
{
    size_t body;

    if (t->trim_lead != NULL) {
        while (n > 0 && strchr(t->trim_lead, *s) != NULL) {
            s++; n--;
        }
        if (n == 0) {
            return 0;
        }
        t->trim_lead = NULL;
    }
    if (t->trim_tail == NULL) {
        return emit(t, sink, s, n);
    }
    body = n;
    while (body > 0 && strchr(t->trim_tail, s[body - 1]) != NULL) {
        body--;
    }
    if (body > 0) {
        if (release_tail(t, sink) != 0 || emit(t, sink, s, body) != 0) {
            return -1;
        }
    }
    /* s may be NULL with n 0 (a flush): no arithmetic on it then */
    return body < n ? qp_buf_append(&t->tail, s + body, n - body) : 0;
}

/* --------------------------------------------------- stage 2: stop strings */

/* Longest suffix of s that is a proper prefix of a stop string. */
static size_t
stop_prefix_suffix(const qp_text *t, const char *s, size_t n)
{
    size_t i, k, best = 0;

    for (i = 0; i < t->opt.n_stop; i++) {
        size_t sl = t->opt.stop_len[i];

        for (k = sl - 1 < n ? sl - 1 : n; k > best; k--) {
            if (memcmp(s + n - k, t->opt.stop[i], k) == 0) {
                best = k;
                break;
            }
        }
    }
    return best;
}

static int
flush_hold(qp_text *t, const qp_text_sink *sink)
{
    int rc = shaped(t, sink, t->hold.data, t->hold.len);

    qp_buf_reset(&t->hold);
    return rc;
}

/* Returns 1 when a stop string matched. */
static int
stop_feed(qp_text *t, const qp_text_sink *sink, const char *s, size_t n)
{
    size_t      i, keep, first = (size_t) -1;
    const char *hit;

    if (t->opt.n_stop == 0) {
        return shaped(t, sink, s, n);
    }
    if (qp_buf_append(&t->hold, s, n) != 0) {
        return -1;
    }
    /* Held text never contains a whole stop string, so the earliest match
     * (if any) ends in the new bytes; it wins over later ones. */
    for (i = 0; i < t->opt.n_stop; i++) {
        hit = memmem(t->hold.data, t->hold.len, t->opt.stop[i], t->opt.stop_len[i]);
        if (hit != NULL && (size_t) (hit - t->hold.data) < first) {
            first = (size_t) (hit - t->hold.data);
        }
    }
    if (first != (size_t) -1) {
        t->stopped = 1;
        if (shaped(t, sink, t->hold.data, first) != 0) {
            return -1;
        }
        qp_buf_reset(&t->hold);
        return 1;
    }
    keep = stop_prefix_suffix(t, t->hold.data, t->hold.len);
    if (shaped(t, sink, t->hold.data, t->hold.len - keep) != 0) {
        return -1;
    }
    memmove(t->hold.data, t->hold.data + t->hold.len - keep, keep);
    t->hold.len = keep;
    return 0;
}

/* ----------------------------------------------------------- tool calls */

/* Parse a <tool_call> body: {"name": "...", "arguments": {...}}. */
static int
parse_tool_call(const char *s, size_t n, qp_tool_call *tc)
{
    json_t       *root, *name, *args, *parsed = NULL;
    json_error_t  jerr;
    qp_buf        b = { 0 };
    int           rc = -1;

    memset(tc, 0, sizeof(*tc));
    root = json_loadb(s, n, 0, &jerr);
    if (root == NULL) {
        return -1;
    }
    name = json_object_get(root, "name");
    args = json_object_get(root, "arguments");
    if (!json_is_string(name) || json_string_length(name) == 0) {
        goto done;
    }
    /* Arguments sometimes come JSON-encoded in a string: decode them. */
    if (json_is_string(args)) {
        parsed = json_loadb(json_string_value(args), json_string_length(args),
                            JSON_DECODE_ANY, &jerr);
        if (parsed != NULL) {
            args = parsed;
        }
    }
    if (args == NULL || json_is_null(args)) {
        rc = qp_json_raw(&b, "{}");
    } else if (json_is_string(args)) {
        rc = qp_buf_append(&b, json_string_value(args), json_string_length(args));
    } else {
        rc = qp_json_value(&b, args, 0);
    }
    if (rc != 0) {
        goto done;
    }
    tc->name = strdup(json_string_value(name));
    tc->arguments = b.data ? b.data : strdup("");
    b.data = NULL;
    if (tc->name == NULL || tc->arguments == NULL) {
        qp_tool_call_clear(tc);
        rc = -1;
    }
done:
    qp_buf_free(&b);
    json_decref(parsed);
    json_decref(root);
    return rc;
}

/* closed: the block ended with </tool_call> (else the answer ended inside). */
static int
close_tool(qp_text *t, const qp_text_sink *sink, int closed)
{
    qp_tool_call tc;
    int          rc;

    t->state = QP_TS_CONTENT;
    t->trim_lead = ws_chars;
    t->trim_tail = ws_chars;
    if (parse_tool_call(t->tool.data ? t->tool.data : "", t->tool.len, &tc) == 0) {
        qp_buf_reset(&t->tail);          /* whitespace before the call */
        rc = sink->tool_call(sink->ctx, &tc);
        qp_tool_call_clear(&tc);
        t->n_tool_calls++;
    } else {
        /* Not a valid call: the client sees what the model wrote. */
        t->trim_lead = NULL;
        rc = release_tail(t, sink);
        if (rc == 0) {
            rc = shaped(t, sink, "<tool_call>", 11);
        }
        if (rc == 0) {
            rc = shaped(t, sink, t->tool.data ? t->tool.data : "", t->tool.len);
        }
        if (rc == 0 && closed) {
            rc = shaped(t, sink, "</tool_call>", 12);
        }
    }
    qp_buf_reset(&t->tool);
    return rc;
}

/* ------------------------------------------------------ stage 1: tokens */

static int
text_in(qp_text *t, const qp_text_sink *sink, const char *s, size_t n)
{
    t->n_chars += qp_utf8_count(s, n);
    if (t->state == QP_TS_TOOL) {
        return qp_buf_append(&t->tool, s, n);
    }
    return stop_feed(t, sink, s, n);
}

int
qp_text_token(qp_text *t, int32_t id, const qp_text_sink *sink)
{
    const char *bytes;
    size_t      len;
    long        n;

    if (t->stopped || t->eog) {
        return 1;
    }
    if (qwen_token_is_eog(t->tok, id)) {
        if (t->opt.ignore_eos) {
            return 0;                    /* generation goes on; no text */
        }
        t->eog = 1;
        return 1;
    }
    if (t->opt.thinking && id == t->id_think && t->state == QP_TS_CONTENT && !t->think_seen) {
        if (flush_hold(t, sink) != 0 || release_tail(t, sink) != 0) {
            return -1;
        }
        t->state = QP_TS_REASONING;
        t->think_seen = 1;
        t->trim_lead = nl_chars;
        t->trim_tail = nl_chars;
        return 0;
    }
    if (t->opt.thinking && id == t->id_think_end && t->state != QP_TS_TOOL) {
        if (t->state == QP_TS_REASONING) {
            if (flush_hold(t, sink) != 0) {
                return -1;
            }
            qp_buf_reset(&t->tail);      /* reasoning's trailing '\n's */
            t->state = QP_TS_CONTENT;
            t->trim_lead = nl_chars;
            t->trim_tail = t->opt.tools ? ws_chars : NULL;
        }
        return 0;                        /* a stray </think> is no text */
    }
    if (t->opt.tools && id == t->id_tool && t->state == QP_TS_CONTENT) {
        if (flush_hold(t, sink) != 0) {
            return -1;
        }
        /* the whitespace before it (in tail) goes if the call parses */
        t->state = QP_TS_TOOL;
        return 0;
    }
    if (t->state == QP_TS_TOOL && id == t->id_tool_end) {
        return close_tool(t, sink, 1) != 0 ? -1 : 0;
    }

    bytes = qwen_token_bytes(t->tok, id, &len);
    if (bytes == NULL) {
        return 0;                        /* an id without text (padding rows) */
    }
    qp_buf_reset(&t->scratch);
    /* the detokenizer wants room for U+FFFD per byte: 3x, held bytes too */
    if (qp_buf_reserve(&t->scratch, 3 * (len + sizeof(t->detok.pending))) != 0) {
        return -1;
    }
    n = qwen_detok_push(t->tok, &t->detok, id, t->scratch.data, t->scratch.cap);
    if (n < 0) {
        return -1;
    }
    return text_in(t, sink, t->scratch.data, (size_t) n);
}

int
qp_text_flush(qp_text *t, const qp_text_sink *sink)
{
    if (!t->stopped) {
        if (t->detok.n_pending > 0) {
            /* the answer ended inside a character */
            t->detok.n_pending = 0;
            if (text_in(t, sink, replacement, 3) < 0) {
                return -1;
            }
        }
    }
    if (!t->stopped) {
        if (t->state == QP_TS_TOOL && close_tool(t, sink, 0) != 0) {
            return -1;
        }
        if (flush_hold(t, sink) != 0) {
            return -1;
        }
    }
    qp_buf_reset(&t->hold);
    if (t->state == QP_TS_REASONING || t->n_tool_calls > 0) {
        qp_buf_reset(&t->tail);
    } else if (release_tail(t, sink) != 0) {
        return -1;
    }
    return 0;
}
