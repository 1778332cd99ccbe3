/*
 * stream_text.h - private: the API-independent text pipeline of one
 * response. Token ids go in; complete UTF-8 text comes out on a content or
 * a reasoning channel, and parsed tool calls come out whole. It hides
 * end-of-generation tokens, holds back text that may begin a stop string,
 * splits <think>...</think> out, and trims whitespace the way Qwen's own
 * parsers do. Stop strings are matched within the reasoning and within the
 * content, not across </think>. Formatters (OpenAI SSE, Ollama NDJSON, JSON
 * bodies) only see the sink callbacks.
 */
#ifndef QP_STREAM_TEXT_H
#define QP_STREAM_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

typedef enum {
    QP_CH_CONTENT = 0,
    QP_CH_REASONING = 1
} qp_channel;

typedef struct {
    char *name;           /* function name */
    char *arguments;      /* arguments object as compact JSON text */
    char *arguments_spaced; /* the same with ", " / ": " separators */
} qp_tool_call;

void qp_tool_call_clear(qp_tool_call *tc);

typedef struct {
    /* text of one channel; s is complete UTF-8 */
    int (*text)(void *ctx, qp_channel ch, const char *s, size_t n);
    /* a closed, parsed tool call; the callee may take the strings (and
     * set the pointers to NULL), else they are freed after the call */
    int (*tool_call)(void *ctx, qp_tool_call *tc);
    void *ctx;
} qp_text_sink;

typedef struct {
    int                   thinking;   /* split <think> blocks out (chat) */
    int                   tools;      /* parse <tool_call> blocks (chat with tools) */
    int                   ignore_eos; /* EOG ids are skipped, not the end */
    const char *const    *stop;       /* stop strings (not copied) */
    const size_t         *stop_len;
    size_t                n_stop;
} qp_text_options;

typedef struct {
    const qwen_tokenizer *tok;
    qp_text_options       opt;
    qwen_detok            detok;
    int32_t               id_think, id_think_end, id_tool, id_tool_end;

    int                   state;        /* QP_TS_* */
    int                   think_seen;   /* a <think> block was opened */
    qp_buf                hold;         /* may begin a stop string */
    qp_buf                tail;         /* trailing whitespace kept back */
    qp_buf                tool;         /* body of an open <tool_call> */
    qp_buf                scratch;
    const char           *trim_lead;    /* characters to drop at the start */
    const char           *trim_tail;    /* characters to keep back at the end */
    size_t                n_tool_calls;
    size_t                n_chars;      /* code points decoded so far */
    int                   stopped;      /* a stop string matched */
    int                   eog;          /* an end-of-generation token came */
} qp_text;

int  qp_text_init(qp_text *t, const qwen_tokenizer *tok, const qp_text_options *opt);
void qp_text_free(qp_text *t);

/* One generated token. Returns 1 once a stop string matched or an EOG token
 * came (later tokens are ignored), 0 to go on, -1 out of memory. */
int  qp_text_token(qp_text *t, int32_t id, const qp_text_sink *sink);

/* The end: release held text (unless a stop string matched), an unfinished
 * UTF-8 character as U+FFFD, an unclosed tool call. */
int  qp_text_flush(qp_text *t, const qp_text_sink *sink);

/* Is the pipeline inside a <think> block (for reasoning token counts)? */
int  qp_text_in_reasoning(const qp_text *t);

#endif
