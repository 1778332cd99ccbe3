/*
 * unicode.h - UTF-8 validation and stepping, GPT-2 byte-level mapping, and
 * the NFC normalization entry point used by the tokenizer. Pure functions
 * and constant tables only: no state, safe from any thread.
 */
#ifndef QWEN_UNICODE_H
#define QWEN_UNICODE_H

#include <stddef.h>
#include <stdint.h>

/* Result of looking at the UTF-8 sequence that starts a buffer. */
typedef enum {
    UTF8_VALID,       /* a complete, well-formed character */
    UTF8_INCOMPLETE,  /* every byte so far is valid but the buffer ends early */
    UTF8_INVALID      /* ill-formed: *n_bytes is the maximal subpart to drop */
} utf8_step_result;

/*
 * Classify the sequence at s[0..n) (n >= 1) per Unicode table 3-7. On
 * UTF8_VALID *n_bytes is its length and *cp the code point; on
 * UTF8_INVALID *n_bytes is how many bytes one U+FFFD replaces (the
 * "maximal subpart" rule that Rust's from_utf8_lossy follows too).
 */
utf8_step_result qwen_utf8_step(const unsigned char *s, size_t n, size_t *n_bytes,
                           uint32_t *cp);

/* 0 if s[0..n) is valid UTF-8; else -1 with the offset of the bad byte. */
int qwen_utf8_validate(const char *s, size_t n, size_t *bad_offset);

/* Encode cp (<= 0x10FFFF) into out (>= 4 bytes); returns bytes written. */
size_t qwen_utf8_encode(uint32_t cp, char *out);

/*
 * GPT-2 bytes_to_unicode: byte b is written in token strings as code point
 * byte_to_cp(b); cp_to_byte is its inverse (-1 for code points outside the
 * 256-character alphabet).
 */
uint32_t qwen_byte_level_cp(unsigned char b);
int      qwen_byte_level_byte(uint32_t cp);

/*
 * NFC of s[0..n). Returns 0 and sets *out to NULL when s is already in NFC
 * by a cheap check (the common case), or to a malloc'ed normalized copy of
 * *out_len bytes. -1 on allocation failure or invalid input.
 */
int qwen_unicode_nfc(const char *s, size_t n, char **out, size_t *out_len);

/* 1 if cp is on the fast path's list of code points NFC never changes. */
int qwen_unicode_nfc_inert_cp(uint32_t cp);

#endif
