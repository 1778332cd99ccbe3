/*
 * test.h - the engine's tiny test harness: CHECK records a pass or a
 * failure with its location; TEST_MAIN_END prints "N passed, N failed"
 * and sets the exit status. Header-only, one counter pair per program.
 */
#ifndef QWEN_TEST_H
#define QWEN_TEST_H

#include <stdio.h>
#include <math.h>

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

#endif
