/*
 * grammar.h - private to the engine: the grammar as the sampler's token
 * filter, for the scheduler, and the pattern compiler grammar.c uses
 * (grammar_regex.c). The public constraint API (creation, the
 * per-sequence state that keeps the grammar alive, token checks) is in
 * qwen.h.
 */
#ifndef QWEN_GRAMMAR_H
#define QWEN_GRAMMAR_H

#include "qwen.h"

#include <stddef.h>
#include <stdint.h>

/* qwen_token_filter adapter: ctx is a qwen_grammar_state. */
int qwen_grammar_filter(void *ctx, int32_t token);

#define G_INF         0x3fffffff
#define G_RX_MAX      256     /* positions of one pattern, the start included */
#define G_RX_NONASCII 128     /* the symbol of every non-ASCII character */
#define G_RX_SYMS     129

typedef struct {
    uint64_t w[4];
} g_bits;

/* A pattern as a position automaton: a match state is a set of
 * positions, position 0 the start. */
typedef struct {
    int     npos;
    g_bits  follow[G_RX_MAX];
    g_bits  last;             /* accepting positions */
    g_bits  sym[G_RX_SYMS];   /* positions whose character class holds sym */
    int32_t cdist[G_RX_MAX];  /* fewest characters from here to a match */
    int32_t bdist[G_RX_MAX];  /* fewest JSON bytes from here to a match */
    uint8_t bcost[G_RX_MAX];  /* bytes of the cheapest character here */
    uint64_t any[3];          /* the symbols some position takes */
} g_regex;

/* NULL with err "<path>: '<what>': ... is not supported". */
g_regex *qwen_regex_compile(const char *pattern, size_t len, const char *what, const char *path,
                         char *err, size_t err_len);
void     qwen_regex_step(const g_regex *rx, const g_bits *s, int sym, g_bits *out);
int      qwen_regex_accepting(const g_regex *rx, const g_bits *s);
int32_t  qwen_regex_dist(const g_regex *rx, const g_bits *s, int bytes);
int      qwen_regex_empty(const g_bits *s);

#endif
