/*
 * tokenizer_internal.h - building a tokenizer from vocabulary arrays.
 *
 * The GGUF loader reads tokenizer.ggml.* metadata and hands the arrays here
 * (strings in GGUF are length-prefixed, not NUL-terminated); the Hugging
 * Face loader reaches the same builder from tokenizer.json.
 */
#ifndef QWEN_TOKENIZER_INTERNAL_H
#define QWEN_TOKENIZER_INTERNAL_H

#include "qwen.h"

typedef struct {
    const char *ptr;
    size_t      len;
} qwen_str;

typedef struct {
    const qwen_str *tokens;       /* n_tokens token strings (byte-level form) */
    size_t          n_tokens;
    const int32_t  *token_types;  /* GGUF token types, or NULL */
    const qwen_str *merges;       /* "a b" merge rules, by rank */
    size_t          n_merges;
    qwen_str        pre;          /* pre-tokenizer name, "qwen2" */
    int32_t         eos_id;       /* -1 if absent */
    int32_t         bos_id;
    int32_t         pad_id;
    qwen_str        chat_template; /* may be empty */
} qwen_vocab_arrays;

int qwen_tokenizer_build(const qwen_vocab_arrays *v, qwen_tokenizer **out,
                         char *err, size_t err_len);

/* A table derived once from the tokenizer and shared by its users (the
 * grammar's per-token tables): build(t) runs on the first call, under a
 * lock, and its result lives until the tokenizer is freed (destroy).
 * NULL when build failed (the next call tries again). */
void *qwen_tokenizer_attachment(const qwen_tokenizer *t, void *(*build)(const qwen_tokenizer *),
                                void (*destroy)(void *));

#endif
