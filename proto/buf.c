/*
 * buf.c - qp_buf, the growable byte buffer every formatter appends to.
 * Growth doubles (amortised O(1) appends); the buffer always keeps one
 * spare byte so data can be NUL-terminated for callers that want a string.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto_internal.h"

int
qp_buf_reserve(qp_buf *b, size_t extra)
{
    size_t  need, cap;
    char   *p;

    if (extra > (size_t) -1 - b->len - 1) {
        return -1;
    }
    need = b->len + extra + 1;
    if (need <= b->cap) {
        return 0;
    }
    cap = b->cap ? b->cap : 256;
    while (cap < need) {
        cap = cap > (size_t) -1 / 2 ? need : cap * 2;
    }
    p = realloc(b->data, cap);
    if (p == NULL) {
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

int
qp_buf_append(qp_buf *b, const void *bytes, size_t n)
{
    if (qp_buf_reserve(b, n) != 0) {
        return -1;
    }
    if (n > 0) {
        memcpy(b->data + b->len, bytes, n);
    }
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int
qp_buf_printf(qp_buf *b, const char *fmt, ...)
{
    va_list ap;
    int     n;
    char    small[128];

    /* Most calls are short numbers: format once into a stack buffer. */
    va_start(ap, fmt);
    n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) {
        return -1;
    }
    if ((size_t) n < sizeof(small)) {
        return qp_buf_append(b, small, (size_t) n);
    }
    if (qp_buf_reserve(b, (size_t) n) != 0) {
        return -1;
    }
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t) n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t) n;
    return 0;
}

void
qp_buf_reset(qp_buf *b)
{
    b->len = 0;
    if (b->data != NULL) {
        b->data[0] = '\0';
    }
}

void
qp_buf_free(qp_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}
