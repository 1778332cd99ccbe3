/*
 * unicode.c - UTF-8 stepping and validation (Unicode table 3-7), the GPT-2
 * byte-level alphabet, and NFC through utf8proc with a fast path that skips
 * text which cannot change under NFC (ASCII, Latin-1, most CJK and emoji).
 */
#include "unicode.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

utf8_step_result
qwen_utf8_step(const unsigned char *s, size_t n, size_t *n_bytes, uint32_t *cp)
{
    unsigned char b0 = s[0];
    size_t need, i;
    unsigned char lo = 0x80, hi = 0xBF;   /* allowed range of the 2nd byte */
    uint32_t c;

    if (b0 < 0x80) {
        *n_bytes = 1;
        *cp = b0;
        return UTF8_VALID;
    }
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        need = 2; c = b0 & 0x1F;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        need = 3; c = b0 & 0x0F;
        if (b0 == 0xE0) lo = 0xA0;        /* no overlongs */
        if (b0 == 0xED) hi = 0x9F;        /* no surrogates */
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        need = 4; c = b0 & 0x07;
        if (b0 == 0xF0) lo = 0x90;
        if (b0 == 0xF4) hi = 0x8F;        /* <= U+10FFFF */
    } else {
        *n_bytes = 1;
        return UTF8_INVALID;
    }
    for (i = 1; i < need; i++) {
        unsigned char lo_i = i == 1 ? lo : 0x80, hi_i = i == 1 ? hi : 0xBF;
        if (i >= n) {
            *n_bytes = i;
            return UTF8_INCOMPLETE;
        }
        if (s[i] < lo_i || s[i] > hi_i) {
            *n_bytes = i;
            return UTF8_INVALID;
        }
        c = (c << 6) | (s[i] & 0x3F);
    }
    *n_bytes = need;
    *cp = c;
    return UTF8_VALID;
}

int
qwen_utf8_validate(const char *str, size_t n, size_t *bad_offset)
{
    const unsigned char *s = (const unsigned char *) str;
    size_t i = 0, step;
    uint32_t cp;

    while (i < n) {
        /* ASCII fast path, eight bytes at a time */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ULL) break;
            i += 8;
        }
        if (i >= n) break;
        if (s[i] < 0x80) { i++; continue; }
        if (qwen_utf8_step(s + i, n - i, &step, &cp) != UTF8_VALID) {
            if (bad_offset) *bad_offset = i;
            return -1;
        }
        i += step;
    }
    return 0;
}

size_t
qwen_utf8_encode(uint32_t cp, char *out)
{
    unsigned char *o = (unsigned char *) out;
    if (cp < 0x80) { o[0] = (unsigned char) cp; return 1; }
    if (cp < 0x800) {
        o[0] = 0xC0 | (cp >> 6);
        o[1] = 0x80 | (cp & 0x3F);
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = 0xE0 | (cp >> 12);
        o[1] = 0x80 | ((cp >> 6) & 0x3F);
        o[2] = 0x80 | (cp & 0x3F);
        return 3;
    }
    o[0] = 0xF0 | (cp >> 18);
    o[1] = 0x80 | ((cp >> 12) & 0x3F);
    o[2] = 0x80 | ((cp >> 6) & 0x3F);
    o[3] = 0x80 | (cp & 0x3F);
    return 4;
}

/*
 * bytes_to_unicode keeps the printable bytes 33..126, 161..172, 174..255
 * as themselves and moves the other 68 bytes, in order, to 256..323.
 */
uint32_t
qwen_byte_level_cp(unsigned char b)
{
    if (b <= 32) return 256 + b;
    if (b >= 127 && b <= 160) return b + 162;   /* 256 + 33 + (b - 127) */
    if (b == 173) return 323;
    return b;
}

int
qwen_byte_level_byte(uint32_t cp)
{
    if (cp < 256) {
        if (cp <= 32 || (cp >= 127 && cp <= 160) || cp == 173) return -1;
        return (int) cp;
    }
    if (cp <= 288) return (int) (cp - 256);
    if (cp <= 322) return (int) (cp - 162);
    if (cp == 323) return 173;
    return -1;
}

/*
 * Code points that are NFC_QC=Yes, have combining class 0 and are never the
 * second half of a canonical composition: a run of them (and of code points
 * below U+0300) is unchanged by NFC. Deliberately narrow; anything else goes
 * through utf8proc. test_tokenizer checks this list against utf8proc.
 */
static int
nfc_inert(uint32_t cp)
{
    if (cp < 0x300) return 1;
    if (cp >= 0x4E00 && cp <= 0x9FFF) return 1;    /* CJK unified ideographs */
    if (cp >= 0x3000 && cp <= 0x3029) return 1;    /* CJK symbols, punctuation */
    if (cp >= 0x3041 && cp <= 0x3096) return 1;    /* hiragana */
    if (cp >= 0x30A1 && cp <= 0x30FA) return 1;    /* katakana */
    if (cp >= 0xAC00 && cp <= 0xD7A3) return 1;    /* hangul syllables */
    if (cp >= 0xFF01 && cp <= 0xFF5E) return 1;    /* fullwidth ASCII */
    if (cp >= 0x1F300 && cp <= 0x1FAFF) return 1;  /* emoji pictographs */
    return 0;
}

int
qwen_unicode_nfc_inert_cp(uint32_t cp)
{
    return nfc_inert(cp);
}

/*
 * NFC only where it can change anything. An inert code point is a starter
 * that never composes as second and is its own NFC, so the text splits
 * into independent parts right before one: inert runs are copied, and each
 * region from the last inert code point before a non-inert one (which may
 * compose with it) up to the next inert code point goes through utf8proc.
 */
int
qwen_unicode_nfc(const char *str, size_t n, char **out, size_t *out_len)
{
    const unsigned char *s = (const unsigned char *) str;
    size_t i = 0, step, last_inert = 0, copied = 0, len = 0, cap = 0;
    uint32_t cp;
    char *buf = NULL;

    *out = NULL;
    *out_len = n;
    while (i < n) {
        size_t r_start, r_end;
        utf8proc_uint8_t *dst = NULL;
        utf8proc_ssize_t r;

        /* bytes below 0xCC never start a code point >= U+0300 (and
         * continuation bytes are not where a character starts) */
        if (s[i] < 0xCC) {
            if ((s[i] & 0xC0) != 0x80) last_inert = i;
            i++;
            continue;
        }
        if (qwen_utf8_step(s + i, n - i, &step, &cp) != UTF8_VALID) goto fail;
        if (nfc_inert(cp)) { last_inert = i; i += step; continue; }

        /* a region that needs NFC: [r_start, r_end) */
        r_start = last_inert < copied ? copied : last_inert;
        r_end = i + step;
        while (r_end < n) {
            if (s[r_end] < 0xCC) break;
            if (qwen_utf8_step(s + r_end, n - r_end, &step, &cp) != UTF8_VALID) goto fail;
            if (nfc_inert(cp)) break;
            r_end += step;
        }
        r = utf8proc_map(s + r_start, (utf8proc_ssize_t) (r_end - r_start), &dst,
                         UTF8PROC_STABLE | UTF8PROC_COMPOSE);
        if (r < 0) goto fail;
        /* NFC can grow text (up to 3x), so size for the worst case */
        if (buf == NULL || len + (r_start - copied) + (size_t) r + (n - r_end) > cap) {
            size_t need = len + (r_start - copied) + (size_t) r + (n - r_end);
            char *p;
            cap = need + need / 2 + 64;
            p = realloc(buf, cap);
            if (p == NULL) { free(dst); goto fail; }
            buf = p;
        }
        memcpy(buf + len, s + copied, r_start - copied);
        len += r_start - copied;
        memcpy(buf + len, dst, (size_t) r);
        len += (size_t) r;
        free(dst);
        copied = i = r_end;
        last_inert = r_end;
    }
    if (buf == NULL) return 0;   /* nothing to change */
    memcpy(buf + len, s + copied, n - copied);
    len += n - copied;
    *out = buf;
    *out_len = len;
    return 0;
fail:
    free(buf);
    return -1;
}
