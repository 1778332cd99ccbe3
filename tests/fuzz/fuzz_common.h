/*
 * fuzz_common.h - what the libFuzzer targets in tests/fuzz share: a model's
 * tokenizer, loaded once per process (QWEN_FUZZ_MODEL, else the target's
 * default: the real Qwen3 vocabulary of $QWEN_TEST_MODELS/tiny-q8_0.gguf,
 * or the 288-token one of the micro seed GGUF where speed matters), and
 * a bounded check that aborts (so libFuzzer keeps the input) when an
 * invariant of the code under test breaks.
 */
#ifndef QWEN_FUZZ_COMMON_H
#define QWEN_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qwen.h"

#define FUZZ_CHECK(cond, ...) do {                                           \
        if (!(cond)) {                                                       \
            fprintf(stderr, "fuzz invariant broken at %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                                    \
            fputc('\n', stderr);                                             \
            abort();                                                         \
        }                                                                    \
    } while (0)

static qwen_model *fuzz_model;

/* The micro GGUF (tests/fuzz/make_seeds.py) with a byte-level BPE
 * vocabulary of 288 tokens: every byte, a few merges, the specials. */
#define FUZZ_MICRO_TOKENIZER FUZZ_DIR "/corpus/gguf/micro-q8_0-tokenizer.gguf"

/* micro: default to the micro vocabulary instead of the real one. */
static __attribute__((unused)) const qwen_tokenizer *
fuzz_tokenizer_of(int micro)
{
    static const qwen_tokenizer *tok;
    char        path[4096], err[QWEN_ERR_LEN];
    const char *p = getenv("QWEN_FUZZ_MODEL"), *dir;

    if (tok != NULL) {
        return tok;
    }
    if (p == NULL && micro) {
        p = FUZZ_MICRO_TOKENIZER;
    } else if (p == NULL) {
        dir = getenv("QWEN_TEST_MODELS");
        snprintf(path, sizeof(path), "%s/tiny-q8_0.gguf", dir ? dir : "build/models");
        p = path;
    }
    fuzz_model = qwen_model_load(p, err, sizeof(err));
    if (fuzz_model == NULL || (tok = qwen_model_tokenizer(fuzz_model)) == NULL) {
        fprintf(stderr, "fuzz: cannot load the tokenizer from %s: %s "
                "(set QWEN_FUZZ_MODEL or QWEN_TEST_MODELS; make test-models)\n",
                p, fuzz_model ? "no tokenizer in the file" : err);
        exit(2);
    }
    return tok;
}

static __attribute__((unused)) const qwen_tokenizer *
fuzz_tokenizer(void)
{
    return fuzz_tokenizer_of(0);
}

#endif
