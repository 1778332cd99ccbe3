/*
 * errors.h - how the engine reports failures: a message formatted into the
 * caller's buffer, and -1 to return. Nothing is printed, nothing exits.
 */
#ifndef QWEN_ERRORS_H
#define QWEN_ERRORS_H

#include <stddef.h>

/* Format into err (when err_len > 0); always returns -1. */
int qwen_fail(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
