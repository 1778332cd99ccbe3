/*
 * test.h - the engine's tiny test harness: CHECK records a pass or a
 * failure with its location; TEST_MAIN_END prints "N passed, N failed"
 * and sets the exit status; test_models_dir / test_load_model find the
 * generated test models. Header-only, one counter pair per program.
 */
#ifndef QWEN_TEST_H
#define QWEN_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "qwen.h"

static int test_passed, test_failed;

#define CHECK(cond, ...) do {                                          \
    if (cond) { test_passed++; }                                       \
    else {                                                             \
        test_failed++;                                                 \
        fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
        fprintf(stderr, __VA_ARGS__);                                  \
        fputc('\n', stderr);                                           \
    }                                                                  \
} while (0)

#define TEST_MAIN_END() do {                                           \
    printf("%d passed, %d failed\n", test_passed, test_failed);        \
    return test_failed ? 1 : 0;                                        \
} while (0)

/* $QWEN_TEST_MODELS (make test sets it), or NULL after recording a
 * failure. */
static inline const char *
test_models_dir(void)
{
    const char *dir = getenv("QWEN_TEST_MODELS");

    if (dir == NULL) {
        CHECK(0, "QWEN_TEST_MODELS is not set (run through make test)");
    }
    return dir;
}

/* A generated test model by name ("tiny-f32.gguf"), or NULL after
 * recording a failure. */
static inline qwen_model *
test_load_model(const char *name)
{
    const char *dir = test_models_dir();
    char        path[4096], err[QWEN_ERR_LEN];
    qwen_model *m;

    if (dir == NULL) {
        return NULL;
    }
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    m = qwen_model_load(path, err, sizeof(err));
    CHECK(m != NULL, "cannot load %s: %s", name, err);
    return m;
}

#endif
