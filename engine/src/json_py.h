/*
 * json_py.h - JSON values printed the way Python prints them, so the C chat
 * template matches Hugging Face's Jinja output byte for byte: json.dumps
 * (ensure_ascii=False, ", " and ": " separators, keys in given order),
 * str()/repr() as Jinja's {{ }} prints, and repr(float). Plus a growable
 * byte buffer used by the template renderer.
 */
#ifndef QWEN_JSON_PY_H
#define QWEN_JSON_PY_H

#include <stddef.h>
#include <jansson.h>

/* Growable buffer; after a failed allocation every append is a no-op and
 * oom stays set, so callers check once at the end. data is NUL-terminated. */
typedef struct {
    char   *data;
    size_t  len;
    size_t  cap;
    int     oom;
} jp_buf;

void qwen_jp_buf_append(jp_buf *b, const char *s, size_t n);
void qwen_jp_buf_puts(jp_buf *b, const char *s);
void qwen_jp_buf_free(jp_buf *b);

/* Python json.dumps(v, ensure_ascii=False). -1 on allocation failure or a
 * value JSON cannot hold (NaN, infinity). */
int qwen_json_py_dumps(const json_t *v, jp_buf *out);

/* Python str(v) for a JSON value: strings raw, None/True/False, lists and
 * dicts in repr form. This is what Jinja's {{ v }} prints. */
int qwen_json_py_str(const json_t *v, jp_buf *out);

/* repr(float) (shortest round-trip digits, Python's fixed/exponent choice).
 * Writes a NUL-terminated string; 32 bytes is always enough. */
void qwen_json_py_float_repr(double d, char *out, size_t cap);

#endif
