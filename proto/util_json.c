/*
 * util_json.c - UTF-8 scanning and JSON text output for every formatter.
 * Written by hand rather than through json_dumps so strings from the model
 * (which may hold broken UTF-8 at a token boundary) are escaped safely and
 * reals print in their shortest round-trip form instead of 17 digits.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

size_t
qp_utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t        len, i;
    uint32_t      cp;

    if (c < 0x80) {
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2; cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3; cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4; cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len) {
        return 0;
    }
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    /* overlong forms, surrogates, beyond U+10FFFF */
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000)
        || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
    {
        return 0;
    }
    return len;
}

size_t
qp_utf8_count(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *) s;
    size_t               i = 0, count = 0, k;

    while (i < n) {
        k = qp_utf8_seq(p + i, n - i);
        i += k ? k : 1;
        count++;
    }
    return count;
}

size_t
qp_utf8_cut(const char *s, size_t n, size_t max)
{
    const unsigned char *p = (const unsigned char *) s;
    size_t               i = 0, k;

    while (i < n) {
        k = qp_utf8_seq(p + i, n - i);
        k = k ? k : 1;
        if (i + k > max) {
            break;
        }
        i += k;
    }
    return i;
}

int
qp_json_raw(qp_buf *b, const char *s)
{
    return qp_buf_append(b, s, strlen(s));
}

int
qp_json_str(qp_buf *b, const char *s, size_t n)
{
    static const char    hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *) s;
    size_t               i = 0, run = 0, k;
    char                 esc[6];

    if (qp_buf_append(b, "\"", 1) != 0) {
        return -1;
    }
    /* Copy runs of safe bytes in one append; stop at anything to escape. */
    while (i < n) {
        unsigned char c = p[i];
        const char   *rep = NULL;
        size_t        rep_len = 2;

        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            i++; run++;
            continue;
        }
        if (c >= 0x80) {
            k = qp_utf8_seq(p + i, n - i);
            if (k > 0) {
                i += k; run += k;
                continue;
            }
        }
        if (run > 0 && qp_buf_append(b, p + i - run, run) != 0) {
            return -1;
        }
        run = 0;
        switch (c) {
        case '"':  rep = "\\\""; break;
        case '\\': rep = "\\\\"; break;
        case '\n': rep = "\\n"; break;
        case '\r': rep = "\\r"; break;
        case '\t': rep = "\\t"; break;
        case '\b': rep = "\\b"; break;
        case '\f': rep = "\\f"; break;
        default:
            if (c < 0x20) {
                memcpy(esc, "\\u00", 4);
                esc[4] = hex[c >> 4];
                esc[5] = hex[c & 15];
                rep = esc;
                rep_len = 6;
            } else {
                rep = "\\ufffd";    /* a byte that starts no valid character */
                rep_len = 6;
            }
        }
        if (qp_buf_append(b, rep, rep_len) != 0) {
            return -1;
        }
        i++;
    }
    if (run > 0 && qp_buf_append(b, p + i - run, run) != 0) {
        return -1;
    }
    return qp_buf_append(b, "\"", 1);
}

int
qp_json_cstr(qp_buf *b, const char *s)
{
    return s ? qp_json_str(b, s, strlen(s)) : qp_json_raw(b, "null");
}

/* Make C's %g output valid JSON that still reads as a real ("1" -> "1.0"). */
static int
append_real(qp_buf *b, const char *txt)
{
    if (qp_json_raw(b, txt) != 0) {
        return -1;
    }
    if (strpbrk(txt, ".eE") == NULL) {
        return qp_json_raw(b, ".0");
    }
    return 0;
}

int
qp_json_float(qp_buf *b, float v)
{
    char txt[32];
    int  prec;

    if (!isfinite(v)) {
        /* log(0): JSON has no -inf; OpenAI-style servers report -9999.0 */
        return qp_json_raw(b, "-9999.0");
    }
    for (prec = 6; prec < 9; prec++) {
        snprintf(txt, sizeof(txt), "%.*g", prec, (double) v);
        if (strtof(txt, NULL) == v) {
            break;
        }
    }
    if (prec == 9) {
        snprintf(txt, sizeof(txt), "%.9g", (double) v);
    }
    return append_real(b, txt);
}

int
qp_json_double(qp_buf *b, double v)
{
    char txt[40];
    int  prec;

    if (!isfinite(v)) {
        return qp_json_raw(b, "null");
    }
    for (prec = 15; prec < 17; prec++) {
        snprintf(txt, sizeof(txt), "%.*g", prec, v);
        if (strtod(txt, NULL) == v) {
            break;
        }
    }
    if (prec == 17) {
        snprintf(txt, sizeof(txt), "%.17g", v);
    }
    return append_real(b, txt);
}

int
qp_json_value(qp_buf *b, const json_t *v, int spaced)
{
    const char *comma = spaced ? ", " : ",";
    const char *colon = spaced ? ": " : ":";
    size_t      i;

    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        json_t     *val;
        int         first = 1;

        if (qp_json_raw(b, "{") != 0) {
            return -1;
        }
        /* jansson >= 2.8 iterates in insertion order: keys keep their order */
        json_object_foreach((json_t *) v, key, val) {
            if ((!first && qp_json_raw(b, comma) != 0)
                || qp_json_str(b, key, strlen(key)) != 0
                || qp_json_raw(b, colon) != 0
                || qp_json_value(b, val, spaced) != 0)
            {
                return -1;
            }
            first = 0;
        }
        return qp_json_raw(b, "}");
    }
    case JSON_ARRAY:
        if (qp_json_raw(b, "[") != 0) {
            return -1;
        }
        for (i = 0; i < json_array_size(v); i++) {
            if ((i > 0 && qp_json_raw(b, comma) != 0)
                || qp_json_value(b, json_array_get(v, i), spaced) != 0)
            {
                return -1;
            }
        }
        return qp_json_raw(b, "]");
    case JSON_STRING:
        return qp_json_str(b, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        return qp_buf_printf(b, "%lld", (long long) json_integer_value(v));
    case JSON_REAL:
        return qp_json_double(b, json_real_value(v));
    case JSON_TRUE:
        return qp_json_raw(b, "true");
    case JSON_FALSE:
        return qp_json_raw(b, "false");
    case JSON_NULL:
    default:
        return qp_json_raw(b, "null");
    }
}
