/*
 * tokenizer_priv.h - what the tokenizer's own files share: the full
 * builder behind qwen_tokenizer_build (the Hugging Face loader passes the
 * pre-split regex and options that GGUF metadata implies by name), and the
 * Qwen2 pre-tokenizer pattern.
 */
#ifndef QWEN_TOKENIZER_PRIV_H
#define QWEN_TOKENIZER_PRIV_H

#include "tokenizer_internal.h"

/* GGUF token types (llama.cpp's llama_token_type). */
enum {
    TOKTYPE_NORMAL       = 1,
    TOKTYPE_UNKNOWN      = 2,
    TOKTYPE_CONTROL      = 3,  /* special added token: raw text, matched first */
    TOKTYPE_USER_DEFINED = 4,  /* non-special added token: likewise */
    TOKTYPE_UNUSED       = 5,  /* padding ids: no text */
    TOKTYPE_BYTE         = 6
};

/* The split regex of Qwen2/Qwen3 tokenizer.json (pre-tokenizer "qwen2"). */
extern const char qwen_pre_pattern_qwen2[];

typedef struct {
    const char    *source;        /* names the input in error messages */
    const char    *pattern;       /* split regex; NULL: implied by v->pre */
    int            nfc;           /* apply NFC to text between added tokens */
    int            ignore_merges; /* BPE: whole word in vocab wins first */
    const int32_t *extra_eog;     /* more end-of-generation ids */
    size_t         n_extra_eog;
} tok_build_opts;

int qwen_tokenizer_build_ex(const qwen_vocab_arrays *v, const tok_build_opts *o,
                       qwen_tokenizer **out, char *err, size_t err_len);

#endif
