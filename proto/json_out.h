/*
 * json_out.h - private: a small JSON writer over qp_buf. Strings are escaped
 * for any input bytes (invalid UTF-8 becomes U+FFFD, control characters
 * \u00XX), numbers print the shortest text that reads back to the same
 * value, and jansson values can be re-serialised with either separator style.
 */
#ifndef QP_JSON_OUT_H
#define QP_JSON_OUT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "qwen_proto.h"

/* Length of the valid UTF-8 sequence at s (1..4), 0 if invalid/truncated. */
size_t qp_utf8_seq(const unsigned char *s, size_t n);
/* Unicode code points in s, an invalid byte counting as one. */
size_t qp_utf8_count(const char *s, size_t n);
/* Longest prefix of s (at most max bytes) that ends on a character boundary. */
size_t qp_utf8_cut(const char *s, size_t n, size_t max);

int qp_json_str(qp_buf *b, const char *s, size_t n);   /* "..." */
int qp_json_cstr(qp_buf *b, const char *s);            /* NULL -> null */
int qp_json_float(qp_buf *b, float v);                 /* non-finite -> -9999.0 */
int qp_json_double(qp_buf *b, double v);               /* non-finite -> null */
int qp_json_raw(qp_buf *b, const char *s);             /* literal text */

/* Serialise a jansson value. spaced: Python json.dumps separators ", " and
 * ": " (what Qwen's template and OpenAI-style servers print); else compact. */
int qp_json_value(qp_buf *b, const json_t *v, int spaced);

#endif
