/*
 * json_py.c - Python-style printing of jansson values (json.dumps with
 * ensure_ascii=False, str()/repr(), repr(float)) for the chat template,
 * and the small growable buffer it writes into.
 */
#include "json_py.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "unicode.h"

void
qwen_jp_buf_append(jp_buf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        char *p;
        while (cap < b->len + n + 1) {
            if (cap > ((size_t) -1) / 2) { b->oom = 1; return; }
            cap *= 2;
        }
        p = realloc(b->data, cap);
        if (p == NULL) { b->oom = 1; return; }
        b->data = p;
        b->cap = cap;
    }
    if (n) memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void
qwen_jp_buf_puts(jp_buf *b, const char *s)
{
    qwen_jp_buf_append(b, s, strlen(s));
}

void
qwen_jp_buf_free(jp_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->oom = 0;
}

void
qwen_json_py_float_repr(double d, char *out, size_t cap)
{
    char tmp[40], digits[24];
    int prec, exp10, nd = 0, decpt, pos = 0, i;
    const char *p;
    char *o = out;
    size_t left = cap;

#define PUT(c) do { if (left > 1) { *o++ = (c); left--; } } while (0)
    if (cap == 0) return;
    if (isnan(d)) { snprintf(out, cap, "NaN"); return; }
    if (isinf(d)) { snprintf(out, cap, d < 0 ? "-Infinity" : "Infinity"); return; }
    if (signbit(d)) { PUT('-'); d = -d; }
    if (d == 0) {
        PUT('0'); PUT('.'); PUT('0');
        *o = '\0';
        return;
    }
    /* shortest precision whose correctly rounded output reads back as d */
    for (prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, d);
        if (strtod(tmp, NULL) == d) break;
    }
    for (p = tmp; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9') digits[nd++] = *p;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    exp10 = *p == 'e' ? atoi(p + 1) : 0;
    decpt = exp10 + 1;   /* value = 0.DIGITS * 10^decpt */

    if (decpt <= -4 || decpt > 16) {          /* Python's repr switch */
        PUT(digits[0]);
        if (nd > 1) {
            PUT('.');
            for (i = 1; i < nd; i++) PUT(digits[i]);
        }
        snprintf(tmp, sizeof tmp, "e%c%02d", exp10 < 0 ? '-' : '+',
                 exp10 < 0 ? -exp10 : exp10);
        for (p = tmp; *p; p++) PUT(*p);
    } else if (decpt <= 0) {
        PUT('0'); PUT('.');
        for (i = 0; i < -decpt; i++) PUT('0');
        for (i = 0; i < nd; i++) PUT(digits[i]);
    } else {
        for (i = 0; i < decpt; i++) PUT(i < nd ? digits[i] : '0');
        PUT('.');
        if (decpt >= nd) PUT('0');
        for (pos = decpt; pos < nd; pos++) PUT(digits[pos]);
    }
    *o = '\0';
#undef PUT
}

/* json.dumps string: escapes ", \, and control characters only. */
static void
dump_string(const char *s, size_t n, jp_buf *out)
{
    size_t i, run = 0;
    char esc[8];

    qwen_jp_buf_append(out, "\"", 1);
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char) s[i];
        const char *rep = NULL;
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        switch (c) {
        case '"':  rep = "\\\""; break;
        case '\\': rep = "\\\\"; break;
        case '\n': rep = "\\n"; break;
        case '\r': rep = "\\r"; break;
        case '\t': rep = "\\t"; break;
        case '\b': rep = "\\b"; break;
        case '\f': rep = "\\f"; break;
        default:
            snprintf(esc, sizeof esc, "\\u%04x", c);
            rep = esc;
        }
        qwen_jp_buf_append(out, s + run, i - run);
        qwen_jp_buf_puts(out, rep);
        run = i + 1;
    }
    qwen_jp_buf_append(out, s + run, n - run);
    qwen_jp_buf_append(out, "\"", 1);
}

/* str.isprintable(): not Other (Cc Cf Cs Co Cn) and not a separator
 * other than the ASCII space. */
static int
py_printable(uint32_t cp)
{
    utf8proc_category_t c;
    if (cp == ' ') return 1;
    c = utf8proc_category((utf8proc_int32_t) cp);
    return !(c == UTF8PROC_CATEGORY_CC || c == UTF8PROC_CATEGORY_CF ||
             c == UTF8PROC_CATEGORY_CS || c == UTF8PROC_CATEGORY_CO ||
             c == UTF8PROC_CATEGORY_CN || c == UTF8PROC_CATEGORY_ZL ||
             c == UTF8PROC_CATEGORY_ZP || c == UTF8PROC_CATEGORY_ZS);
}

/* repr(str): single quotes unless the text has ' and no ". */
static void
repr_string(const char *str, size_t n, jp_buf *out)
{
    const unsigned char *s = (const unsigned char *) str;
    char quote = '\'', esc[16];
    size_t i, step;
    uint32_t cp;

    if (memchr(s, '\'', n) && !memchr(s, '"', n)) quote = '"';
    qwen_jp_buf_append(out, &quote, 1);
    for (i = 0; i < n; i += step) {
        if (qwen_utf8_step(s + i, n - i, &step, &cp) != UTF8_VALID) {
            /* not reachable for jansson strings (always valid UTF-8) */
            snprintf(esc, sizeof esc, "\\x%02x", s[i]);
            qwen_jp_buf_puts(out, esc);
            step = 1;
            continue;
        }
        if (cp == (uint32_t) quote || cp == '\\') {
            esc[0] = '\\'; esc[1] = (char) cp;
            qwen_jp_buf_append(out, esc, 2);
        } else if (cp == '\n') {
            qwen_jp_buf_puts(out, "\\n");
        } else if (cp == '\r') {
            qwen_jp_buf_puts(out, "\\r");
        } else if (cp == '\t') {
            qwen_jp_buf_puts(out, "\\t");
        } else if (cp < 0x80 ? (cp < 0x20 || cp == 0x7F) : !py_printable(cp)) {
            if (cp < 0x100)        snprintf(esc, sizeof esc, "\\x%02x", cp);
            else if (cp < 0x10000) snprintf(esc, sizeof esc, "\\u%04x", cp);
            else                   snprintf(esc, sizeof esc, "\\U%08x", cp);
            qwen_jp_buf_puts(out, esc);
        } else {
            qwen_jp_buf_append(out, (const char *) s + i, step);
        }
    }
    qwen_jp_buf_append(out, &quote, 1);
}

/* What tells json.dumps from repr(): how strings and the three constants
 * are written, and whether NaN and infinity are refused. */
typedef struct {
    void        (*string)(const char *s, size_t n, jp_buf *out);
    const char   *t, *f, *null;
    int           finite_only;
} py_style;

static const py_style py_dumps_style = { dump_string, "true", "false", "null", 1 };
static const py_style py_repr_style = { repr_string, "True", "False", "None", 0 };

/* The one tree walk: objects in insertion order (jansson keeps it, as
 * Python dicts do), ", " and ": " separators. */
static int
py_write(const json_t *v, const py_style *st, jp_buf *out)
{
    size_t i;
    const char *key;
    json_t *val;
    int first = 1;
    char num[40];

    switch (json_typeof(v)) {
    case JSON_OBJECT:
        qwen_jp_buf_append(out, "{", 1);
        json_object_foreach((json_t *) v, key, val) {
            if (!first) qwen_jp_buf_append(out, ", ", 2);
            first = 0;
            st->string(key, strlen(key), out);
            qwen_jp_buf_append(out, ": ", 2);
            if (py_write(val, st, out) != 0) return -1;
        }
        qwen_jp_buf_append(out, "}", 1);
        break;
    case JSON_ARRAY:
        qwen_jp_buf_append(out, "[", 1);
        for (i = 0; i < json_array_size(v); i++) {
            if (i) qwen_jp_buf_append(out, ", ", 2);
            if (py_write(json_array_get(v, i), st, out) != 0) return -1;
        }
        qwen_jp_buf_append(out, "]", 1);
        break;
    case JSON_STRING:
        st->string(json_string_value(v), json_string_length(v), out);
        break;
    case JSON_INTEGER:
        snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        qwen_jp_buf_puts(out, num);
        break;
    case JSON_REAL:
        if (st->finite_only && !isfinite(json_real_value(v))) return -1;
        qwen_json_py_float_repr(json_real_value(v), num, sizeof num);
        qwen_jp_buf_puts(out, num);
        break;
    case JSON_TRUE:  qwen_jp_buf_puts(out, st->t); break;
    case JSON_FALSE: qwen_jp_buf_puts(out, st->f); break;
    case JSON_NULL:  qwen_jp_buf_puts(out, st->null); break;
    }
    return out->oom ? -1 : 0;
}

int
qwen_json_py_dumps(const json_t *v, jp_buf *out)
{
    return py_write(v, &py_dumps_style, out);
}

int
qwen_json_py_str(const json_t *v, jp_buf *out)
{
    if (json_is_string(v)) {
        qwen_jp_buf_append(out, json_string_value(v), json_string_length(v));
        return out->oom ? -1 : 0;
    }
    return py_write(v, &py_repr_style, out);
}
