/*
 * util.h - private: the bottom of proto/, helpers that know no protocol.
 * util.c: qp_buf growth, growing arrays, SHA-256, RFC 3339 timestamps;
 * util_json.c: UTF-8 scanning and a JSON writer over qp_buf. Everything
 * else in proto/ may include this; it includes only the public header.
 */
#ifndef QP_UTIL_H
#define QP_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

#include "qwen_proto.h"

/* ---------------------------------------------------------- buffers */

int qp_buf_reserve(qp_buf *b, size_t extra);   /* room for extra bytes + NUL */

/* Room for one more element in items (n used, *cap allocated, size bytes
 * each), doubling from first: the array, moved perhaps, or NULL out of
 * memory (items is then still valid and *cap unchanged). */
void *qp_grow(void *items, size_t n, size_t *cap, size_t size, size_t first);

/* -------------------------------------------------------------- UTF-8 */

/* Length of the valid UTF-8 sequence at s (1..4), 0 if invalid/truncated. */
size_t qp_utf8_seq(const unsigned char *s, size_t n);
/* Unicode code points in s, an invalid byte counting as one. */
size_t qp_utf8_count(const char *s, size_t n);
/* Longest prefix of s (at most max bytes) that ends on a character boundary. */
size_t qp_utf8_cut(const char *s, size_t n, size_t max);

/* --------------------------------------------------------------- JSON
 * Strings are escaped for any input bytes (invalid UTF-8 becomes U+FFFD,
 * control characters \u00XX), numbers print the shortest text that reads
 * back to the same value. */

int qp_json_str(qp_buf *b, const char *s, size_t n);   /* "..." */
int qp_json_cstr(qp_buf *b, const char *s);            /* NULL -> null */
int qp_json_float(qp_buf *b, float v);                 /* non-finite -> -9999.0 */
int qp_json_double(qp_buf *b, double v);               /* non-finite -> null */
int qp_json_raw(qp_buf *b, const char *s);             /* literal text */

/* Serialise a jansson value. spaced: Python json.dumps separators ", " and
 * ": " (what Qwen's template and OpenAI-style servers print); else compact. */
int qp_json_value(qp_buf *b, const json_t *v, int spaced);

/* ------------------------------------------------------ hash and time */

/* SHA-256 (FIPS 180-4) of n bytes: the stable model digest. */
void qp_sha256(const void *data, size_t n, uint8_t out[32]);

/* Go's time.RFC3339Nano in UTC ("2006-01-02T15:04:05.999999999Z", trailing
 * zeros of the fraction dropped), the form Ollama's timestamps have. */
#define QP_RFC3339_LEN 40
void qp_rfc3339(const struct timespec *ts, char buf[QP_RFC3339_LEN]);
void qp_rfc3339_now(char buf[QP_RFC3339_LEN]);

#endif
