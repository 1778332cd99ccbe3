/*
 * errors.c - the engine's one error formatter (see errors.h).
 */
#include "errors.h"

#include <stdarg.h>
#include <stdio.h>

int
qwen_fail(char *err, size_t err_len, const char *fmt, ...)
{
    va_list ap;

    if (err != NULL && err_len > 0) {
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return -1;
}
