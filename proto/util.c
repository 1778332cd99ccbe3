/*
 * util.c - helpers that know no protocol: qp_buf, the growable byte buffer
 * every formatter appends to (growth doubles; one spare byte is kept so
 * data can be NUL-terminated), growing arrays, SHA-256 for model digests
 * and RFC 3339 timestamps as Go prints them.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

/* ============================================================ buffers */

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

void *
qp_grow(void *items, size_t n, size_t *cap, size_t size, size_t first)
{
    size_t c;

    if (n < *cap) {
        return items;
    }
    c = *cap ? *cap * 2 : first;
    if (c < *cap || c > (size_t) -1 / size) {
        return NULL;
    }
    items = realloc(items, c * size);
    if (items != NULL) {
        *cap = c;
    }
    return items;
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

/* ============================================================ SHA-256 */

static const uint32_t sha_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void
sha_block(uint32_t h[8], const uint8_t *p)
{
    uint32_t w[64], a, b, c, d, e, f, g, hh, t1, t2;
    int      i;

    for (i = 0; i < 16; i++) {
        w[i] = (uint32_t) p[4 * i] << 24 | (uint32_t) p[4 * i + 1] << 16
               | (uint32_t) p[4 * i + 2] << 8 | p[4 * i + 3];
    }
    for (i = 16; i < 64; i++) {
        w[i] = w[i - 16] + (ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3))
               + w[i - 7] + (ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10));
    }
    a = h[0]; b = h[1]; c = h[2]; d = h[3]; e = h[4]; f = h[5]; g = h[6]; hh = h[7];
    for (i = 0; i < 64; i++) {
        t1 = hh + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + sha_k[i] + w[i];
        t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        hh = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
}

void
qp_sha256(const void *data, size_t n, uint8_t out[32])
{
    uint32_t       h[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                            0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
    const uint8_t *p = data;
    uint8_t        last[128];
    size_t         i, rest = n % 64, tail;
    uint64_t       bits = (uint64_t) n * 8;

    for (i = 0; i + 64 <= n; i += 64) {
        sha_block(h, p + i);
    }
    memset(last, 0, sizeof(last));
    memcpy(last, p + n - rest, rest);
    last[rest] = 0x80;
    tail = rest + 1 + 8 <= 64 ? 64 : 128;
    for (i = 0; i < 8; i++) {
        last[tail - 1 - i] = (uint8_t) (bits >> (8 * i));
    }
    sha_block(h, last);
    if (tail == 128) {
        sha_block(h, last + 64);
    }
    for (i = 0; i < 32; i++) {
        out[i] = (uint8_t) (h[i / 4] >> (24 - 8 * (i % 4)));
    }
}

/* ========================================================== RFC 3339 */

void
qp_rfc3339(const struct timespec *ts, char buf[QP_RFC3339_LEN])
{
    struct tm tm;
    time_t    sec = ts->tv_sec;
    long      ns = ts->tv_nsec;
    int       digits = 9, pos;

    if (gmtime_r(&sec, &tm) == NULL) {
        memset(&tm, 0, sizeof(tm));
        tm.tm_year = 70;
        tm.tm_mday = 1;
    }
    pos = snprintf(buf, QP_RFC3339_LEN, "%04d-%02d-%02dT%02d:%02d:%02d",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                   tm.tm_hour, tm.tm_min, tm.tm_sec);
    if (pos < 0 || pos >= QP_RFC3339_LEN - 12) {
        snprintf(buf, QP_RFC3339_LEN, "1970-01-01T00:00:00Z");
        return;
    }
    /* Go's RFC3339Nano: the fraction without trailing zeros, none at all
     * for whole seconds */
    if (ns > 0 && ns < 1000000000L) {
        while (ns % 10 == 0) {
            ns /= 10;
            digits--;
        }
        pos += snprintf(buf + pos, QP_RFC3339_LEN - pos, ".%0*ld", digits, ns);
    }
    snprintf(buf + pos, QP_RFC3339_LEN - pos, "Z");
}

void
qp_rfc3339_now(char buf[QP_RFC3339_LEN])
{
    struct timespec ts;

    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) {
        ts.tv_sec = time(NULL);
        ts.tv_nsec = 0;
    }
    qp_rfc3339(&ts, buf);
}
