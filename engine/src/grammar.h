/*
 * grammar.h - private to the engine: the grammar as the sampler's token
 * filter, for the scheduler. The public constraint API (creation, the
 * per-sequence state that keeps the grammar alive, token checks) is in
 * qwen.h.
 */
#ifndef QWEN_GRAMMAR_H
#define QWEN_GRAMMAR_H

#include "qwen.h"

/* qwen_token_filter adapter: ctx is a qwen_grammar_state. */
int qwen_grammar_filter(void *ctx, int32_t token);

#endif
