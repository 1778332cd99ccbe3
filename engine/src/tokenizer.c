/*
 * tokenizer.c - Qwen3's byte-level BPE tokenizer, exact to Hugging Face:
 * added tokens matched first (leftmost, longest) and never split; NFC on
 * the text between them; the pre-split regex (PCRE2, UTF+UCP, JIT); GPT-2
 * byte-level mapping; BPE by merge rank from a hash table. Also decoding
 * and the streaming detokenizer. Read-only after build: one tokenizer may
 * serve many threads; each call owns its PCRE2 match data and scratch.
 */
#define PCRE2_CODE_UNIT_WIDTH 8

#include <pcre2.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qwen.h"
#include "tokenizer_priv.h"
#include "unicode.h"

const char qwen_pre_pattern_qwen2[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|"
    " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

enum {
    TOKF_ADDED  = 1,   /* matched in raw text before splitting */
    TOKF_UNUSED = 2,   /* no text (padding ids) */
    TOKF_EOG    = 4
};

/* Pieces up to this many bytes use the quadratic merge loop (fast for the
 * short words that dominate); longer ones a heap. */
#define BPE_SMALL 64

typedef struct {
    uint64_t key;      /* left id << 32 | right id; UINT64_MAX when empty */
    int32_t  rank;
    int32_t  id;       /* token the pair merges into */
} merge_slot;

struct qwen_tokenizer {
    int32_t     n_tokens;
    uint32_t   *off;          /* n_tokens + 1 offsets of token bytes in blob */
    char       *blob;
    uint8_t    *flags;

    int32_t     byte_id[256]; /* token of each single byte */

    int32_t    *vocab_slots;  /* hash of normal tokens' bytes -> id, -1 empty */
    uint32_t    vocab_mask;

    merge_slot *merge_slots;
    uint32_t    merge_mask;
    size_t      n_merges;

    int32_t    *added;        /* added token ids grouped by first byte,
                                 longest first within a group */
    size_t      n_added;
    uint32_t    added_start[257]; /* group of byte b: added[start[b]..start[b+1]) */

    pcre2_code *re;
    int         nfc;
    int         ignore_merges;
    int32_t     eos_id, bos_id, pad_id;
    char       *pattern;
    char       *pre;
    char       *chat_template;

    void       *attached;     /* qwen_tokenizer_attachment's table */
    void      (*attached_free)(void *);
};

static pthread_mutex_t attach_lock = PTHREAD_MUTEX_INITIALIZER;

/* ------------------------------------------------------------ hashing */

static uint64_t
hash_bytes(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;   /* FNV-1a */
    size_t i;
    for (i = 0; i < n; i++) {
        h ^= (unsigned char) s[i];
        h *= 0x100000001b3ULL;
    }
    return h ^ (h >> 29);
}

static uint32_t
hash_pair(uint64_t key)
{
    key *= 0x9E3779B97F4A7C15ULL;
    return (uint32_t) (key >> 32);
}

static uint32_t
pow2_at_least(size_t n)
{
    uint32_t c = 16;
    while (c < n && c < 0x80000000u) c <<= 1;
    return c;
}

static const char *
tok_data(const qwen_tokenizer *t, int32_t id, size_t *len)
{
    *len = t->off[id + 1] - t->off[id];
    return t->blob + t->off[id];
}

static int32_t
vocab_find(const qwen_tokenizer *t, const char *s, size_t n)
{
    uint32_t i = (uint32_t) hash_bytes(s, n) & t->vocab_mask;
    for (;;) {
        int32_t id = t->vocab_slots[i];
        size_t len;
        const char *p;
        if (id < 0) return -1;
        p = tok_data(t, id, &len);
        if (len == n && memcmp(p, s, n) == 0) return id;
        i = (i + 1) & t->vocab_mask;
    }
}

/* Insert id unless a token with the same bytes is there; returns the id
 * that holds the key. */
static int32_t
vocab_insert(qwen_tokenizer *t, int32_t id)
{
    size_t n;
    const char *s = tok_data(t, id, &n);
    uint32_t i = (uint32_t) hash_bytes(s, n) & t->vocab_mask;
    for (;;) {
        int32_t cur = t->vocab_slots[i];
        size_t len;
        const char *p;
        if (cur < 0) {
            t->vocab_slots[i] = id;
            return id;
        }
        p = tok_data(t, cur, &len);
        if (len == n && memcmp(p, s, n) == 0) return cur;
        i = (i + 1) & t->vocab_mask;
    }
}

static const merge_slot *
merge_find(const qwen_tokenizer *t, int32_t a, int32_t b)
{
    uint64_t key = ((uint64_t) (uint32_t) a << 32) | (uint32_t) b;
    uint32_t i = hash_pair(key) & t->merge_mask;
    for (;;) {
        const merge_slot *s = &t->merge_slots[i];
        if (s->key == key) return s;
        if (s->key == UINT64_MAX) return NULL;
        i = (i + 1) & t->merge_mask;
    }
}

/* Hugging Face builds its merge map by collecting into a hash map, so a
 * repeated pair keeps its last rank; we do the same. */
static void
merge_insert(qwen_tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t id)
{
    uint64_t key = ((uint64_t) (uint32_t) a << 32) | (uint32_t) b;
    uint32_t i = hash_pair(key) & t->merge_mask;
    for (;;) {
        merge_slot *s = &t->merge_slots[i];
        if (s->key == UINT64_MAX || s->key == key) {
            s->key = key;
            s->rank = rank;
            s->id = id;
            return;
        }
        i = (i + 1) & t->merge_mask;
    }
}

/* ------------------------------------------------------------- build */

/* Quote a token for an error message: printable ASCII kept, the rest \xNN,
 * cut at about 40 bytes. */
static const char *
quote_token(const char *s, size_t n, char *buf, size_t cap)
{
    size_t i, o = 0;
    for (i = 0; i < n && o + 6 < cap && i < 40; i++) {
        unsigned char c = (unsigned char) s[i];
        if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') buf[o++] = (char) c;
        else o += (size_t) snprintf(buf + o, cap - o, "\\x%02x", c);
    }
    if (i < n && o + 4 < cap) { memcpy(buf + o, "...", 3); o += 3; }
    buf[o] = '\0';
    return buf;
}

/* Byte-level token string -> raw bytes (out must hold n bytes); -1 if the
 * string is not valid UTF-8 or uses a character outside the alphabet. */
static long
byte_level_decode(const char *s, size_t n, char *out)
{
    size_t i = 0, step;
    long o = 0;
    uint32_t cp;
    while (i < n) {
        int b;
        if (qwen_utf8_step((const unsigned char *) s + i, n - i, &step, &cp) != UTF8_VALID)
            return -1;
        b = qwen_byte_level_byte(cp);
        if (b < 0) return -1;
        out[o++] = (char) b;
        i += step;
    }
    return o;
}

void
qwen_tokenizer_free(qwen_tokenizer *t)
{
    if (t == NULL) return;
    if (t->attached != NULL) t->attached_free(t->attached);
    free(t->off);
    free(t->blob);
    free(t->flags);
    free(t->vocab_slots);
    free(t->merge_slots);
    free(t->added);
    if (t->re) pcre2_code_free(t->re);
    free(t->pattern);
    free(t->pre);
    free(t->chat_template);
    free(t);
}

void *
qwen_tokenizer_attachment(const qwen_tokenizer *t, void *(*build)(const qwen_tokenizer *),
                          void (*destroy)(void *))
{
    qwen_tokenizer *m = (qwen_tokenizer *) t;   /* a cache: not the tokenizer's meaning */
    void           *a;

    pthread_mutex_lock(&attach_lock);
    if (m->attached == NULL && (m->attached = build(t)) != NULL) {
        m->attached_free = destroy;
    }
    a = m->attached;
    pthread_mutex_unlock(&attach_lock);
    return a;
}

static char *
dup_str(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p == NULL) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* Group added tokens by first byte, longest first within a group, so the
 * scan in qwen_tokenize takes the leftmost longest match. */
static int
build_added(qwen_tokenizer *t, char *err, size_t err_len, const char *src)
{
    size_t i, n = 0;
    uint32_t count[256] = {0};

    for (i = 0; i < (size_t) t->n_tokens; i++)
        if (t->flags[i] & TOKF_ADDED) n++;
    t->n_added = n;
    if (n == 0) return 0;
    t->added = malloc(n * sizeof *t->added);
    if (t->added == NULL) {
        snprintf(err, err_len, "%s: out of memory for added tokens", src);
        return -1;
    }
    for (i = 0; i < (size_t) t->n_tokens; i++) {
        size_t len;
        const char *s;
        if (!(t->flags[i] & TOKF_ADDED)) continue;
        s = tok_data(t, (int32_t) i, &len);
        count[(unsigned char) s[0]]++;
    }
    t->added_start[0] = 0;
    for (i = 0; i < 256; i++) t->added_start[i + 1] = t->added_start[i] + count[i];
    memset(count, 0, sizeof count);
    for (i = 0; i < (size_t) t->n_tokens; i++) {
        size_t len, k;
        const char *s;
        unsigned char b;
        if (!(t->flags[i] & TOKF_ADDED)) continue;
        s = tok_data(t, (int32_t) i, &len);
        b = (unsigned char) s[0];
        /* insertion into the byte's group, kept longest first; groups
         * are tiny (Qwen3: 26 tokens, all starting with '<') */
        k = t->added_start[b] + count[b]++;
        while (k > t->added_start[b]) {
            size_t plen;
            tok_data(t, t->added[k - 1], &plen);
            if (plen >= len) break;
            t->added[k] = t->added[k - 1];
            k--;
        }
        t->added[k] = (int32_t) i;
    }
    return 0;
}

int
qwen_tokenizer_build_ex(const qwen_vocab_arrays *v, const tok_build_opts *o,
                   qwen_tokenizer **out, char *err, size_t err_len)
{
    const char *src = o->source ? o->source : "tokenizer";
    qwen_tokenizer *t;
    size_t i, total = 0, n_normal = 0;
    char q1[200], q2[200];
    char *tmp = NULL;
    int errcode;
    PCRE2_SIZE erroff;
    const char *pattern = o->pattern;

    *out = NULL;
    if (v->n_tokens == 0 || v->tokens == NULL) {
        snprintf(err, err_len, "%s: the vocabulary is empty", src);
        return -1;
    }
    if (v->n_tokens > 0x7FFFFFF0u) {
        snprintf(err, err_len, "%s: %zu tokens is too many", src, v->n_tokens);
        return -1;
    }
    if (v->n_merges > 0 && v->merges == NULL) {
        snprintf(err, err_len, "%s: merges missing", src);
        return -1;
    }
    if (pattern == NULL) {
        if (v->pre.len == 5 && memcmp(v->pre.ptr, "qwen2", 5) == 0) {
            pattern = qwen_pre_pattern_qwen2;
        } else {
            snprintf(err, err_len, "%s: unsupported pre-tokenizer \"%.*s\" "
                     "(this engine implements \"qwen2\")", src,
                     (int) (v->pre.len > 64 ? 64 : v->pre.len),
                     v->pre.ptr ? v->pre.ptr : "");
            return -1;
        }
    }

    t = calloc(1, sizeof *t);
    if (t == NULL) goto oom;
    t->n_tokens = (int32_t) v->n_tokens;
    t->nfc = o->nfc;
    t->ignore_merges = o->ignore_merges;
    t->off = malloc((v->n_tokens + 1) * sizeof *t->off);
    t->flags = calloc(v->n_tokens, 1);
    if (t->off == NULL || t->flags == NULL) goto oom;

    /* token bytes: byte-level strings shrink when decoded, raw ones not */
    for (i = 0; i < v->n_tokens; i++) {
        if (v->tokens[i].len > 0 && v->tokens[i].ptr == NULL) {
            snprintf(err, err_len, "%s: token %zu has no text", src, i);
            goto fail;
        }
        total += v->tokens[i].len;
        if (total > 0xFFFFFFF0u) {
            snprintf(err, err_len, "%s: token texts exceed 4 GiB", src);
            goto fail;
        }
    }
    t->blob = malloc(total ? total : 1);
    if (t->blob == NULL) goto oom;
    total = 0;
    for (i = 0; i < v->n_tokens; i++) {
        int32_t type = v->token_types ? v->token_types[i] : TOKTYPE_NORMAL;
        const qwen_str *s = &v->tokens[i];
        t->off[i] = (uint32_t) total;
        if (type == TOKTYPE_UNUSED) {
            t->flags[i] = TOKF_UNUSED;
        } else if (type == TOKTYPE_CONTROL || type == TOKTYPE_USER_DEFINED) {
            size_t bad;
            if (s->len == 0) {
                snprintf(err, err_len, "%s: added token %zu is empty", src, i);
                goto fail;
            }
            if (qwen_utf8_validate(s->ptr, s->len, &bad) != 0) {
                snprintf(err, err_len, "%s: added token %zu (\"%s\") is not "
                         "valid UTF-8", src, i,
                         quote_token(s->ptr, s->len, q1, sizeof q1));
                goto fail;
            }
            t->flags[i] = TOKF_ADDED;
            memcpy(t->blob + total, s->ptr, s->len);
            total += s->len;
        } else {
            long n = byte_level_decode(s->ptr, s->len, t->blob + total);
            if (n <= 0) {
                snprintf(err, err_len, "%s: token %zu (\"%s\") is %s", src, i,
                         quote_token(s->ptr, s->len, q1, sizeof q1),
                         n == 0 ? "empty" : "not a byte-level BPE string");
                goto fail;
            }
            total += (size_t) n;
            n_normal++;
        }
    }
    t->off[v->n_tokens] = (uint32_t) total;

    /* vocabulary hash over normal tokens (the BPE model's own vocab) */
    t->vocab_mask = pow2_at_least(n_normal * 2 + 1) - 1;
    t->vocab_slots = malloc(((size_t) t->vocab_mask + 1) * sizeof *t->vocab_slots);
    if (t->vocab_slots == NULL) goto oom;
    memset(t->vocab_slots, 0xFF, ((size_t) t->vocab_mask + 1) * sizeof *t->vocab_slots);
    for (i = 0; i < 256; i++) t->byte_id[i] = -1;
    for (i = 0; i < v->n_tokens; i++) {
        size_t len;
        const char *p;
        if (t->flags[i] & (TOKF_ADDED | TOKF_UNUSED)) continue;
        vocab_insert(t, (int32_t) i);   /* duplicates: the first id wins */
        p = tok_data(t, (int32_t) i, &len);
        if (len == 1 && t->byte_id[(unsigned char) p[0]] < 0)
            t->byte_id[(unsigned char) p[0]] = (int32_t) i;
    }
    for (i = 0; i < 256; i++) {
        if (t->byte_id[i] < 0) {
            char ch[8];
            size_t n = qwen_utf8_encode(qwen_byte_level_cp((unsigned char) i), ch);
            snprintf(err, err_len, "%s: the vocabulary lacks the token for "
                     "byte 0x%02zx (\"%.*s\"); not a byte-level BPE vocabulary",
                     src, i, (int) n, ch);
            goto fail;
        }
    }

    /* merges: pair of token ids -> (rank, merged id) */
    t->n_merges = v->n_merges;
    t->merge_mask = pow2_at_least(v->n_merges * 2 + 1) - 1;
    t->merge_slots = malloc(((size_t) t->merge_mask + 1) * sizeof *t->merge_slots);
    if (t->merge_slots == NULL) goto oom;
    for (i = 0; i <= t->merge_mask; i++) t->merge_slots[i].key = UINT64_MAX;
    {
        size_t cap = 256;
        tmp = malloc(cap);
        if (tmp == NULL) goto oom;
        for (i = 0; i < v->n_merges; i++) {
            const qwen_str *m = &v->merges[i];
            const char *sp;
            size_t la, lb;
            long na, nb;
            int32_t a, b, ab;

            if (m->ptr == NULL || m->len == 0) {
                snprintf(err, err_len, "%s: merge %zu is empty", src, i);
                goto fail;
            }
            sp = memchr(m->ptr, ' ', m->len);
            if (sp == NULL || sp == m->ptr || sp == m->ptr + m->len - 1 ||
                memchr(sp + 1, ' ', (size_t) (m->ptr + m->len - sp - 1))) {
                snprintf(err, err_len, "%s: merge %zu (\"%s\") is not two "
                         "tokens separated by one space", src, i,
                         quote_token(m->ptr, m->len, q1, sizeof q1));
                goto fail;
            }
            la = (size_t) (sp - m->ptr);
            lb = m->len - la - 1;
            if (la + lb > cap) {
                char *p;
                while (cap < la + lb) cap *= 2;
                p = realloc(tmp, cap);
                if (p == NULL) goto oom;
                tmp = p;
            }
            na = byte_level_decode(m->ptr, la, tmp);
            nb = na < 0 ? -1 : byte_level_decode(sp + 1, lb, tmp + na);
            a = na < 0 ? -1 : vocab_find(t, tmp, (size_t) na);
            b = nb < 0 ? -1 : vocab_find(t, tmp + na, (size_t) nb);
            if (a < 0 || b < 0) {
                snprintf(err, err_len, "%s: merge %zu refers to token \"%s\" "
                         "which is not in the vocabulary", src, i,
                         a < 0 ? quote_token(m->ptr, la, q1, sizeof q1)
                               : quote_token(sp + 1, lb, q2, sizeof q2));
                goto fail;
            }
            ab = vocab_find(t, tmp, (size_t) (na + nb));
            if (ab < 0) {
                snprintf(err, err_len, "%s: merge %zu (\"%s\") makes a token "
                         "that is not in the vocabulary", src, i,
                         quote_token(m->ptr, m->len, q1, sizeof q1));
                goto fail;
            }
            merge_insert(t, a, b, (int32_t) i, ab);
        }
        free(tmp);
        tmp = NULL;
    }

    if (build_added(t, err, err_len, src) != 0) goto fail;

    /* special ids and end of generation */
    t->eos_id = v->eos_id;
    t->bos_id = v->bos_id;
    t->pad_id = v->pad_id;
    {
        const int32_t ids[3] = { v->eos_id, v->bos_id, v->pad_id };
        const char *names[3] = { "eos", "bos", "padding" };
        for (i = 0; i < 3; i++) {
            if (ids[i] < -1 || ids[i] >= t->n_tokens) {
                snprintf(err, err_len, "%s: %s token id %d is outside the "
                         "vocabulary (%d tokens)", src, names[i], ids[i],
                         t->n_tokens);
                goto fail;
            }
        }
    }
    if (v->eos_id >= 0) t->flags[v->eos_id] |= TOKF_EOG;
    for (i = 0; i < o->n_extra_eog; i++) {
        int32_t id = o->extra_eog[i];
        if (id < 0 || id >= t->n_tokens) {
            snprintf(err, err_len, "%s: end-of-generation id %d is outside "
                     "the vocabulary (%d tokens)", src, id, t->n_tokens);
            goto fail;
        }
        t->flags[id] |= TOKF_EOG;
    }
    /* Qwen's chat format ends turns with <|im_end|> and documents with
     * <|endoftext|>; both stop generation whatever eos the files name. */
    for (i = 0; i < t->n_added; i++) {
        size_t len;
        const char *s = tok_data(t, t->added[i], &len);
        if ((len == 10 && memcmp(s, "<|im_end|>", 10) == 0) ||
            (len == 13 && memcmp(s, "<|endoftext|>", 13) == 0))
            t->flags[t->added[i]] |= TOKF_EOG;
    }

    t->pattern = dup_str(pattern, strlen(pattern));
    t->pre = dup_str(v->pre.ptr ? v->pre.ptr : "", v->pre.ptr ? v->pre.len : 0);
    t->chat_template = dup_str(v->chat_template.ptr ? v->chat_template.ptr : "",
                               v->chat_template.ptr ? v->chat_template.len : 0);
    if (t->pattern == NULL || t->pre == NULL || t->chat_template == NULL) goto oom;

    t->re = pcre2_compile((PCRE2_SPTR) pattern, PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_UCP, &errcode, &erroff, NULL);
    if (t->re == NULL) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(errcode, msg, sizeof msg);
        snprintf(err, err_len, "%s: pre-tokenizer regex does not compile at "
                 "offset %zu: %s", src, (size_t) erroff, (const char *) msg);
        goto fail;
    }
    /* JIT is an optimisation: without it pcre2_match interprets */
    (void) pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE);

    *out = t;
    return 0;

oom:
    snprintf(err, err_len, "%s: out of memory building the tokenizer", src);
fail:
    free(tmp);
    qwen_tokenizer_free(t);
    return -1;
}

int
qwen_tokenizer_build(const qwen_vocab_arrays *v, qwen_tokenizer **out,
                     char *err, size_t err_len)
{
    tok_build_opts o;
    memset(&o, 0, sizeof o);
    o.source = "GGUF tokenizer.ggml metadata";
    o.nfc = 1;   /* the qwen2 pre-tokenizer comes with an NFC normalizer */
    return qwen_tokenizer_build_ex(v, &o, out, err, err_len);
}

/* ------------------------------------------------------------ encode */

void
qwen_tokens_free(qwen_tokens *t)
{
    if (t == NULL) return;
    free(t->ids);
    t->ids = NULL;
    t->n = t->cap = 0;
}

static int
tokens_reserve(qwen_tokens *t, size_t extra)
{
    size_t cap;
    int32_t *p;
    if (t->n + extra <= t->cap) return 0;
    cap = t->cap ? t->cap : 64;
    while (cap < t->n + extra) {
        if (cap > ((size_t) -1) / 8) return -1;
        cap *= 2;
    }
    p = realloc(t->ids, cap * sizeof *p);
    if (p == NULL) return -1;
    t->ids = p;
    t->cap = cap;
    return 0;
}

/* Heap entries are rank << 32 | position: one integer compare orders by
 * rank, then leftmost position, which is Hugging Face's merge order. */
static void
heap_sift_down(uint64_t *h, size_t n, size_t i)
{
    uint64_t v = h[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && h[c + 1] < h[c]) c++;
        if (h[c] >= v) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = v;
}

static void
heap_push(uint64_t *h, size_t *n, uint64_t v)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p] <= v) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

#define HEAP_ENT(rank, pos) (((uint64_t) (uint32_t) (rank) << 32) | (uint32_t) (pos))

/* BPE for long pieces: linked symbols and a heap of candidate merges. */
static int
bpe_long(const qwen_tokenizer *t, const unsigned char *p, size_t n,
         qwen_tokens *out)
{
    int32_t *id = malloc(n * sizeof *id);
    int32_t *prev = malloc(n * sizeof *prev);
    int32_t *next = malloc(n * sizeof *next);
    uint64_t *heap = malloc(3 * n * sizeof *heap);   /* n + 2 per merge */
    size_t nh = 0, i;
    int rc = -1;

    if (id == NULL || prev == NULL || next == NULL || heap == NULL) goto done;
    for (i = 0; i < n; i++) {
        id[i] = t->byte_id[p[i]];
        prev[i] = (int32_t) i - 1;
        next[i] = i + 1 < n ? (int32_t) i + 1 : -1;
    }
    for (i = 0; i + 1 < n; i++) {
        const merge_slot *m = merge_find(t, id[i], id[i + 1]);
        if (m) heap[nh++] = HEAP_ENT(m->rank, i);
    }
    for (i = nh / 2; i-- > 0; ) heap_sift_down(heap, nh, i);
    while (nh > 0) {
        uint64_t e = heap[0];
        int32_t a = (int32_t) (uint32_t) e, rank = (int32_t) (e >> 32), b;
        const merge_slot *m;
        heap[0] = heap[--nh];
        if (nh) heap_sift_down(heap, nh, 0);
        if (id[a] < 0 || (b = next[a]) < 0) continue;
        m = merge_find(t, id[a], id[b]);
        if (m == NULL || m->rank != rank) continue;   /* stale entry */
        id[a] = m->id;
        id[b] = -1;
        next[a] = next[b];
        if (next[b] >= 0) prev[next[b]] = a;
        if (prev[a] >= 0 && (m = merge_find(t, id[prev[a]], id[a])))
            heap_push(heap, &nh, HEAP_ENT(m->rank, prev[a]));
        if (next[a] >= 0 && (m = merge_find(t, id[a], id[next[a]])))
            heap_push(heap, &nh, HEAP_ENT(m->rank, a));
    }
    for (i = 0; i < n; i++)
        if (id[i] >= 0) out->ids[out->n++] = id[i];
    rc = 0;
done:
    free(id);
    free(prev);
    free(next);
    free(heap);
    return rc;
}

/* Byte-level BPE of one pre-tokenized piece; ids appended to out. */
static int
bpe_piece(const qwen_tokenizer *t, const unsigned char *p, size_t n,
          qwen_tokens *out)
{
    int32_t id[BPE_SMALL], rank[BPE_SMALL], into[BPE_SMALL];
    size_t m, i;

    if (tokens_reserve(out, n) != 0) return -1;
    if (n == 1) {
        out->ids[out->n++] = t->byte_id[p[0]];
        return 0;
    }
    if (t->ignore_merges) {
        int32_t whole = vocab_find(t, (const char *) p, n);
        if (whole >= 0) {
            out->ids[out->n++] = whole;
            return 0;
        }
    }
    if (n > BPE_SMALL) return bpe_long(t, p, n, out);

    /* rank[i]/into[i]: the merge of symbols i and i+1, INT32_MAX if none */
    m = n;
    for (i = 0; i < n; i++) id[i] = t->byte_id[p[i]];
    for (i = 0; i + 1 < m; i++) {
        const merge_slot *s = merge_find(t, id[i], id[i + 1]);
        rank[i] = s ? s->rank : INT32_MAX;
        into[i] = s ? s->id : -1;
    }
    for (;;) {
        size_t best = 0;
        int32_t best_rank = INT32_MAX;
        const merge_slot *s;
        for (i = 0; i + 1 < m; i++) {
            if (rank[i] < best_rank) { best_rank = rank[i]; best = i; }
        }
        if (best_rank == INT32_MAX) break;
        id[best] = into[best];
        m--;
        memmove(&id[best + 1], &id[best + 2], (m - best - 1) * sizeof *id);
        memmove(&rank[best + 1], &rank[best + 2], (m > best + 2 ? m - best - 2 : 0) * sizeof *rank);
        memmove(&into[best + 1], &into[best + 2], (m > best + 2 ? m - best - 2 : 0) * sizeof *into);
        if (best > 0) {
            s = merge_find(t, id[best - 1], id[best]);
            rank[best - 1] = s ? s->rank : INT32_MAX;
            into[best - 1] = s ? s->id : -1;
        }
        if (best + 1 < m) {
            s = merge_find(t, id[best], id[best + 1]);
            rank[best] = s ? s->rank : INT32_MAX;
            into[best] = s ? s->id : -1;
        }
    }
    memcpy(out->ids + out->n, id, m * sizeof *id);
    out->n += m;
    return 0;
}

/*
 * A per-call cache of piece -> ids. Long inputs repeat their words a lot;
 * the cache lives in one qwen_tokenize call, so threads share nothing.
 */
#define CACHE_MAX_PIECE 48

typedef struct {
    uint64_t h;        /* 0: empty slot */
    uint32_t key_off;  /* piece bytes in keys */
    uint32_t ids_off;  /* its ids in ids */
    uint16_t key_len;
    uint16_t n_ids;
} cache_slot;

typedef struct {
    cache_slot *slots;
    uint32_t    mask, count, max_count;
    char       *keys;
    int32_t    *ids;
    size_t      keys_len, ids_len;   /* pools sized for max_count pieces */
} piece_cache;

typedef struct {
    const qwen_tokenizer *t;
    pcre2_match_data     *md;
    pcre2_match_context  *mc;
    piece_cache          *cache;   /* NULL for short inputs */
    qwen_tokens          *out;
    char                 *err;
    size_t                err_len;
} enc_ctx;

static void
cache_free(piece_cache *c)
{
    free(c->slots);
    free(c->keys);
    free(c->ids);
}

/* Leaves the cache disabled (slots NULL) if memory is short: it only
 * saves time. */
static void
cache_init(piece_cache *c, size_t text_len)
{
    uint32_t slots = pow2_at_least(text_len / 16);
    memset(c, 0, sizeof *c);
    if (slots < 1024) slots = 1024;
    if (slots > 65536) slots = 65536;
    c->max_count = slots / 2;
    c->mask = slots - 1;
    c->slots = calloc(slots, sizeof *c->slots);
    c->keys = malloc((size_t) c->max_count * CACHE_MAX_PIECE);
    c->ids = malloc((size_t) c->max_count * CACHE_MAX_PIECE * sizeof *c->ids);
    if (c->slots == NULL || c->keys == NULL || c->ids == NULL) {
        cache_free(c);
        memset(c, 0, sizeof *c);
    }
}

static int
bpe_cached(enc_ctx *x, const unsigned char *p, size_t n)
{
    piece_cache *c = x->cache;
    uint64_t h;
    uint32_t i;
    size_t n0;

    if (c == NULL || n > CACHE_MAX_PIECE) return bpe_piece(x->t, p, n, x->out);
    h = hash_bytes((const char *) p, n) | 1;
    for (i = (uint32_t) h & c->mask; c->slots[i].h != 0; i = (i + 1) & c->mask) {
        cache_slot *e = &c->slots[i];
        if (e->h == h && e->key_len == n && memcmp(c->keys + e->key_off, p, n) == 0) {
            if (tokens_reserve(x->out, e->n_ids) != 0) return -1;
            memcpy(x->out->ids + x->out->n, c->ids + e->ids_off,
                   e->n_ids * sizeof *c->ids);
            x->out->n += e->n_ids;
            return 0;
        }
    }
    n0 = x->out->n;
    if (bpe_piece(x->t, p, n, x->out) != 0) return -1;
    if (c->count < c->max_count) {
        cache_slot *e = &c->slots[i];
        size_t k = x->out->n - n0;   /* <= n <= CACHE_MAX_PIECE */
        e->h = h;
        e->key_off = (uint32_t) c->keys_len;
        e->ids_off = (uint32_t) c->ids_len;
        e->key_len = (uint16_t) n;
        e->n_ids = (uint16_t) k;
        memcpy(c->keys + c->keys_len, p, n);
        memcpy(c->ids + c->ids_len, x->out->ids + n0, k * sizeof *c->ids);
        c->keys_len += n;
        c->ids_len += k;
        c->count++;
    }
    return 0;
}

/* Split one normalized segment with the regex and BPE each piece. The
 * regex matches every character for Qwen2's pattern; text between matches
 * (possible with other patterns) becomes a piece of its own, as HF's
 * Isolated split behaviour does. */
static int
encode_segment(enc_ctx *x, const char *s, size_t n)
{
    size_t off = 0;
    const unsigned char *u = (const unsigned char *) s;

    while (off < n) {
        int rc = pcre2_match(x->t->re, (PCRE2_SPTR) s, n, off,
                             PCRE2_NO_UTF_CHECK, x->md, x->mc);
        PCRE2_SIZE *ov, ms, me;
        if (rc == PCRE2_ERROR_NOMATCH) {
            if (bpe_cached(x, u + off, n - off) != 0) goto oom;
            break;
        }
        if (rc < 0) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof msg);
            snprintf(x->err, x->err_len, "tokenize: pre-tokenizer regex failed "
                     "at byte %zu: %s", off, (const char *) msg);
            return -1;
        }
        ov = pcre2_get_ovector_pointer(x->md);
        ms = ov[0];
        me = ov[1];
        if (me == ms) {
            /* an empty match: step over one character, which joins the
             * text before the next match */
            size_t step;
            uint32_t cp;
            if (ms >= n) break;
            qwen_utf8_step(u + ms, n - ms, &step, &cp);
            off = ms + step;
            continue;
        }
        if (ms > off && bpe_cached(x, u + off, ms - off) != 0) goto oom;
        if (bpe_cached(x, u + ms, me - ms) != 0) goto oom;
        off = me;
    }
    return 0;
oom:
    snprintf(x->err, x->err_len, "tokenize: out of memory");
    return -1;
}

/* Text between added tokens: NFC, then split and BPE. */
static int
encode_text(enc_ctx *x, const char *s, size_t n)
{
    char *norm = NULL;
    size_t norm_len = n;
    int rc;

    if (n == 0) return 0;
    if (x->t->nfc && qwen_unicode_nfc(s, n, &norm, &norm_len) != 0) {
        snprintf(x->err, x->err_len, "tokenize: NFC normalization failed "
                 "(out of memory)");
        return -1;
    }
    rc = encode_segment(x, norm ? norm : s, norm_len);
    free(norm);
    return rc;
}

int
qwen_tokenize(const qwen_tokenizer *t, const char *text, size_t len,
              qwen_tokens *out, char *err, size_t err_len)
{
    enc_ctx x;
    piece_cache cache;
    size_t bad, i, seg = 0, n0;
    int rc = -1;

    memset(&cache, 0, sizeof cache);
    if (t == NULL || out == NULL || (text == NULL && len > 0)) {
        snprintf(err, err_len, "tokenize: NULL tokenizer, output or text");
        return -1;
    }
    if (qwen_utf8_validate(text, len, &bad) != 0) {
        snprintf(err, err_len, "tokenize: invalid UTF-8 at byte %zu of %zu "
                 "(byte 0x%02x)", bad, len, (unsigned char) text[bad]);
        return -1;
    }
    n0 = out->n;
    x.t = t;
    x.out = out;
    x.err = err;
    x.err_len = err_len;
    x.cache = NULL;
    x.md = pcre2_match_data_create_from_pattern(t->re, NULL);
    x.mc = pcre2_match_context_create(NULL);
    if (x.md == NULL || x.mc == NULL) {
        snprintf(err, err_len, "tokenize: out of memory");
        goto done;
    }
    /* The Qwen2 pattern is linear, but the default limit of ten million
     * steps stops it on whitespace runs of a few megabytes. */
    pcre2_set_match_limit(x.mc, UINT32_MAX);
    if (len >= 4096) {
        cache_init(&cache, len);
        if (cache.slots) x.cache = &cache;
    }

    for (i = 0; i < len; ) {
        unsigned char c = (unsigned char) text[i];
        uint32_t k, end;
        int32_t hit = -1;
        size_t hit_len = 0;

        end = t->added_start[c + 1];
        for (k = t->added_start[c]; k < end; k++) {   /* longest first */
            size_t alen;
            const char *a = tok_data(t, t->added[k], &alen);
            if (alen <= len - i && memcmp(a, text + i, alen) == 0) {
                hit = t->added[k];
                hit_len = alen;
                break;
            }
        }
        if (hit < 0) { i++; continue; }
        if (encode_text(&x, text + seg, i - seg) != 0) goto done;
        if (tokens_reserve(out, 1) != 0) {
            snprintf(err, err_len, "tokenize: out of memory");
            goto done;
        }
        out->ids[out->n++] = hit;
        i += hit_len;
        seg = i;
    }
    if (encode_text(&x, text + seg, len - seg) != 0) goto done;
    rc = 0;
done:
    if (rc != 0) out->n = n0;
    cache_free(&cache);
    pcre2_match_data_free(x.md);
    pcre2_match_context_free(x.mc);
    return rc;
}

/* ------------------------------------------------------------ decode */

const char *
qwen_token_bytes(const qwen_tokenizer *t, int32_t id, size_t *len)
{
    if (t == NULL || id < 0 || id >= t->n_tokens || (t->flags[id] & TOKF_UNUSED)) {
        if (len) *len = 0;
        return NULL;
    }
    {
        size_t n;
        const char *p = tok_data(t, id, &n);
        if (len) *len = n;
        return p;
    }
}

int
qwen_tokenizer_vocab_size(const qwen_tokenizer *t)
{
    return t ? t->n_tokens : 0;
}

/* Exact token text as it appears in decoded output; added tokens first. */
int32_t
qwen_token_id(const qwen_tokenizer *t, const char *text, size_t len)
{
    size_t k;
    if (t == NULL || text == NULL || len == 0) return -1;
    for (k = t->added_start[(unsigned char) text[0]];
         k < t->added_start[(unsigned char) text[0] + 1]; k++) {
        size_t alen;
        const char *a = tok_data(t, t->added[k], &alen);
        if (alen == len && memcmp(a, text, len) == 0) return t->added[k];
    }
    return vocab_find(t, text, len);
}

int
qwen_token_is_eog(const qwen_tokenizer *t, int32_t id)
{
    if (t == NULL || id < 0 || id >= t->n_tokens) return 0;
    return (t->flags[id] & TOKF_EOG) != 0;
}

static const char REPLACEMENT[3] = { (char) 0xEF, (char) 0xBF, (char) 0xBD };

/*
 * Copy complete characters of s[0..n) to out, ill-formed bytes as U+FFFD.
 * If final is 0, an incomplete sequence at the end is not copied: its
 * length goes to *held. out needs 3 * n bytes at most.
 */
static size_t
utf8_copy_lossy(const unsigned char *s, size_t n, char *out, int final,
                size_t *held)
{
    size_t i = 0, o = 0, step;
    uint32_t cp;
    *held = 0;
    while (i < n) {
        if (s[i] < 0x80) { out[o++] = (char) s[i++]; continue; }
        switch (qwen_utf8_step(s + i, n - i, &step, &cp)) {
        case UTF8_VALID:
            memcpy(out + o, s + i, step);
            o += step;
            break;
        case UTF8_INCOMPLETE:
            if (!final) {
                *held = n - i;
                return o;
            }
            /* at the end of the text it is ill-formed */
            /* fall through */
        case UTF8_INVALID:
            memcpy(out + o, REPLACEMENT, 3);
            o += 3;
            break;
        }
        i += step;
    }
    return o;
}

long
qwen_detok_push(const qwen_tokenizer *t, qwen_detok *st, int32_t id,
                char *out, size_t cap)
{
    const char *p;
    size_t n, total, held, w;
    unsigned char stackbuf[256], *buf;

    if (t == NULL || st == NULL || (out == NULL && cap > 0)) return -1;
    if (st->n_pending > 3) st->n_pending = 0;   /* never stored; be safe */
    p = qwen_token_bytes(t, id, &n);
    if (p == NULL) return 0;   /* unused or unknown ids decode to nothing */

    total = st->n_pending + n;
    buf = total <= sizeof stackbuf ? stackbuf : malloc(total);
    if (buf == NULL) return -1;
    memcpy(buf, st->pending, st->n_pending);
    memcpy(buf + st->n_pending, p, n);

    /* a dry run tells whether out is big enough before any state changes */
    if (cap < 3 * total) {
        char *tmp = malloc(3 * total + 1);
        if (tmp == NULL) { if (buf != stackbuf) free(buf); return -1; }
        w = utf8_copy_lossy(buf, total, tmp, 0, &held);
        if (w > cap) {
            free(tmp);
            if (buf != stackbuf) free(buf);
            return -1;
        }
        memcpy(out, tmp, w);
        free(tmp);
    } else {
        w = utf8_copy_lossy(buf, total, out, 0, &held);
    }
    memcpy(st->pending, buf + total - held, held);
    st->n_pending = held;
    if (buf != stackbuf) free(buf);
    return (long) w;
}

char *
qwen_detokenize(const qwen_tokenizer *t, const int32_t *ids, size_t n,
                size_t *len)
{
    size_t i, total = 0, held, w;
    unsigned char *raw;
    char *out;

    if (len) *len = 0;
    if (t == NULL || (ids == NULL && n > 0)) return NULL;
    for (i = 0; i < n; i++) {
        size_t l;
        if (qwen_token_bytes(t, ids[i], &l)) total += l;
    }
    raw = malloc(total ? total : 1);
    if (raw == NULL) return NULL;
    total = 0;
    for (i = 0; i < n; i++) {
        size_t l;
        const char *p = qwen_token_bytes(t, ids[i], &l);
        if (p) {
            memcpy(raw + total, p, l);
            total += l;
        }
    }
    /* Like HF (String::from_utf8_lossy): ill-formed bytes become U+FFFD. */
    out = malloc(3 * total + 1);
    if (out == NULL) {
        free(raw);
        return NULL;
    }
    w = utf8_copy_lossy(raw, total, out, 1, &held);
    out[w] = '\0';
    free(raw);
    if (len) *len = w;
    return out;
}
