/*
 * test_tokenizer.c - the Qwen3 tokenizer against the reference: every corpus
 * string must encode to the ids the independent JS tokenizer gives and
 * decode back to its NFC form; plus the GGUF builder path, the streaming
 * detokenizer, invalid UTF-8, malformed tokenizer files, concurrency, the
 * NFC fast path. (Encode throughput is measured by make bench.)
 * Needs QWEN_TOKENIZER_DIR (tokenizer.json dir) and QWEN_TOKENIZER_REFS
 * (build/tokenizer, made by `make tokenizer-refs`).
 */
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <utf8proc.h>

#include "qwen.h"
#include "test.h"
#include "test_json.h"
#include "tokenizer_priv.h"
#include "unicode.h"

static const char *tok_dir, *refs_dir;

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void
show_ids(const char *label, const int32_t *ids, size_t n)
{
    size_t i;
    fprintf(stderr, "  %s (%zu):", label, n);
    for (i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, i < n ? " ...\n" : "\n");
}

/* ------------------------------------------------- corpus vs reference */

typedef struct {
    const qwen_tokenizer *tok;
    json_t *corpus, *refs;
    int mismatches;   /* filled by the thread */
} corpus_job;

static int
ids_equal_ref(const qwen_tokens *t, json_t *ref_ids)
{
    size_t i;
    if (t->n != json_array_size(ref_ids)) return 0;
    for (i = 0; i < t->n; i++)
        if (t->ids[i] != json_integer_value(json_array_get(ref_ids, i))) return 0;
    return 1;
}

static void
test_corpus(const qwen_tokenizer *tok, json_t *corpus, json_t *refs, const char *what)
{
    size_t i, n_ok = 0, n_dec_ok = 0, n_stream_ok = 0;
    char err[QWEN_ERR_LEN];
    int shown = 0;

    CHECK(json_array_size(corpus) >= 300, "corpus has only %zu strings",
          json_array_size(corpus));
    CHECK(json_array_size(corpus) == json_array_size(refs),
          "corpus (%zu) and refs (%zu) differ in length: rerun make tokenizer-refs",
          json_array_size(corpus), json_array_size(refs));
    for (i = 0; i < json_array_size(corpus) && i < json_array_size(refs); i++) {
        json_t *s = json_array_get(corpus, i);
        json_t *r = json_array_get(refs, i);
        json_t *rids = json_object_get(r, "ids");
        const char *nfc = json_string_value(json_object_get(r, "nfc"));
        size_t nfc_len = json_string_length(json_object_get(r, "nfc"));
        qwen_tokens t = { 0 };
        char *dec;
        size_t dec_len, j;
        int rc = qwen_tokenize(tok, json_string_value(s), json_string_length(s),
                               &t, err, sizeof err);
        if (rc != 0) {
            CHECK(rc == 0, "%s: corpus[%zu] failed to encode: %s", what, i, err);
            continue;
        }
        if (ids_equal_ref(&t, rids)) {
            n_ok++;
        } else if (shown++ < 8) {
            fprintf(stderr, "%s: corpus[%zu] ids differ for \"%.80s\"\n", what, i,
                    json_string_value(s));
            show_ids("got", t.ids, t.n);
            {
                int32_t tmp[64];
                size_t k;
                for (k = 0; k < json_array_size(rids) && k < 64; k++)
                    tmp[k] = (int32_t) json_integer_value(json_array_get(rids, k));
                show_ids("ref", tmp, json_array_size(rids));
            }
        }
        dec = qwen_detokenize(tok, t.ids, t.n, &dec_len);
        if (dec && dec_len == nfc_len && memcmp(dec, nfc, nfc_len) == 0) n_dec_ok++;
        else if (shown++ < 8)
            fprintf(stderr, "%s: corpus[%zu] decode differs from NFC text\n", what, i);

        /* streaming, one token at a time, must give the same text */
        if (dec) {
            qwen_detok st;
            char *acc = malloc(dec_len * 3 + 64), piece[1024];
            size_t acc_len = 0;
            int ok = acc != NULL;
            memset(&st, 0, sizeof st);
            for (j = 0; ok && j < t.n; j++) {
                long w = qwen_detok_push(tok, &st, t.ids[j], piece, sizeof piece);
                if (w < 0 || acc_len + (size_t) w > dec_len * 3 + 64) { ok = 0; break; }
                memcpy(acc + acc_len, piece, (size_t) w);
                acc_len += (size_t) w;
            }
            if (ok && st.n_pending == 0 && acc_len == dec_len &&
                memcmp(acc, dec, dec_len) == 0)
                n_stream_ok++;
            else if (shown++ < 8)
                fprintf(stderr, "%s: corpus[%zu] streaming decode differs\n", what, i);
            free(acc);
        }
        free(dec);
        qwen_tokens_free(&t);
    }
    CHECK(n_ok == json_array_size(corpus), "%s: %zu of %zu corpus strings encode "
          "like the reference", what, n_ok, json_array_size(corpus));
    CHECK(n_dec_ok == json_array_size(corpus), "%s: %zu of %zu decode to the NFC "
          "text", what, n_dec_ok, json_array_size(corpus));
    CHECK(n_stream_ok == json_array_size(corpus), "%s: %zu of %zu stream-decode "
          "to the same text", what, n_stream_ok, json_array_size(corpus));
    printf("%s: %zu/%zu encode exactly, %zu decode to NFC, %zu stream\n", what,
           n_ok, json_array_size(corpus), n_dec_ok, n_stream_ok);
}

/* The reference's own decode must agree with NFC too (a check on the
 * reference data, so a broken reference cannot pass silently). */
static void
test_refs_sane(json_t *refs)
{
    size_t i, bad = 0;
    for (i = 0; i < json_array_size(refs); i++) {
        json_t *r = json_array_get(refs, i);
        if (!json_equal(json_object_get(r, "nfc"), json_object_get(r, "decoded"))) bad++;
    }
    CHECK(bad == 0, "%zu reference entries do not round-trip in JS", bad);
}

static void *
corpus_thread(void *arg)
{
    corpus_job *job = arg;
    char err[QWEN_ERR_LEN];
    size_t i;
    int round;
    for (round = 0; round < 3; round++) {
        for (i = 0; i < json_array_size(job->corpus); i++) {
            json_t *s = json_array_get(job->corpus, i);
            qwen_tokens t = { 0 };
            if (qwen_tokenize(job->tok, json_string_value(s), json_string_length(s),
                              &t, err, sizeof err) != 0 ||
                !ids_equal_ref(&t, json_object_get(json_array_get(job->refs, i), "ids")))
                job->mismatches++;
            qwen_tokens_free(&t);
        }
    }
    return NULL;
}

static void
test_threads(const qwen_tokenizer *tok, json_t *corpus, json_t *refs)
{
    pthread_t th[3];
    corpus_job jobs[3];
    int i, total = 0;
    for (i = 0; i < 3; i++) {
        jobs[i].tok = tok;
        jobs[i].corpus = corpus;
        jobs[i].refs = refs;
        jobs[i].mismatches = 0;
        CHECK(pthread_create(&th[i], NULL, corpus_thread, &jobs[i]) == 0, "thread");
    }
    for (i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        total += jobs[i].mismatches;
    }
    CHECK(total == 0, "%d mismatches encoding from 3 threads at once", total);
}

/* ------------------------------------------------ GGUF builder path */

/* Build the tokenizer the way the GGUF loader will: token strings in
 * byte-level form padded to the model's 151936 rows with unused entries,
 * types 1/3/4/5, "a b" merges, pre "qwen2". */
static qwen_tokenizer *
build_like_gguf(char *err, size_t err_len)
{
    json_t *root = test_load_json(tok_dir, "tokenizer.json");
    json_t *vocab, *merges, *added, *val;
    const char *key;
    size_t n = 151936, i;
    qwen_str *tokens = calloc(n, sizeof *tokens), *mstr = NULL;
    int32_t *types = malloc(n * sizeof *types);
    char **pads = calloc(n, sizeof *pads), *arena = NULL;
    qwen_vocab_arrays va;
    qwen_tokenizer *tok = NULL;
    size_t off = 0;

    if (!root || !tokens || !types || !pads) goto done;
    vocab = json_object_get(json_object_get(root, "model"), "vocab");
    merges = json_object_get(json_object_get(root, "model"), "merges");
    added = json_object_get(root, "added_tokens");
    for (i = 0; i < n; i++) types[i] = TOKTYPE_UNUSED;
    json_object_foreach(vocab, key, val) {
        json_int_t id = json_integer_value(val);
        tokens[id].ptr = key;
        tokens[id].len = strlen(key);
        types[id] = TOKTYPE_NORMAL;
    }
    for (i = 0; i < json_array_size(added); i++) {
        json_t *a = json_array_get(added, i);
        json_int_t id = json_integer_value(json_object_get(a, "id"));
        tokens[id].ptr = json_string_value(json_object_get(a, "content"));
        tokens[id].len = strlen(tokens[id].ptr);
        types[id] = json_is_true(json_object_get(a, "special")) ? TOKTYPE_CONTROL
                                                               : TOKTYPE_USER_DEFINED;
    }
    for (i = 0; i < n; i++) {
        if (types[i] != TOKTYPE_UNUSED) continue;
        pads[i] = malloc(24);
        if (!pads[i]) goto done;
        snprintf(pads[i], 24, "[PAD%zu]", i);
        tokens[i].ptr = pads[i];
        tokens[i].len = strlen(pads[i]);
    }
    mstr = malloc(json_array_size(merges) * sizeof *mstr);
    for (i = 0; i < json_array_size(merges); i++) {
        json_t *m = json_array_get(merges, i);
        off += json_string_length(json_array_get(m, 0)) +
               json_string_length(json_array_get(m, 1)) + 2;
    }
    arena = malloc(off + 1);
    if (!mstr || !arena) goto done;
    off = 0;
    for (i = 0; i < json_array_size(merges); i++) {
        json_t *m = json_array_get(merges, i);
        const char *a = json_string_value(json_array_get(m, 0));
        const char *b = json_string_value(json_array_get(m, 1));
        int w = sprintf(arena + off, "%s %s", a, b);
        mstr[i].ptr = arena + off;
        mstr[i].len = (size_t) w;
        off += (size_t) w + 1;
    }
    memset(&va, 0, sizeof va);
    va.tokens = tokens;
    va.n_tokens = n;
    va.token_types = types;
    va.merges = mstr;
    va.n_merges = json_array_size(merges);
    va.pre.ptr = "qwen2";
    va.pre.len = 5;
    va.eos_id = 151645;
    va.bos_id = 151643;
    va.pad_id = 151643;
    va.chat_template.ptr = "{{ x }}";
    va.chat_template.len = 7;
    if (qwen_tokenizer_build(&va, &tok, err, err_len) != 0) tok = NULL;
done:
    if (pads) for (i = 0; i < n; i++) free(pads[i]);
    free(pads);
    free(tokens);
    free(types);
    free(mstr);
    free(arena);
    json_decref(root);
    return tok;
}

static void
test_gguf_path(json_t *corpus, json_t *refs)
{
    char err[QWEN_ERR_LEN] = "";
    qwen_tokenizer *tok = build_like_gguf(err, sizeof err);
    CHECK(tok != NULL, "GGUF-style build failed: %s", err);
    if (!tok) return;
    CHECK(qwen_tokenizer_vocab_size(tok) == 151936, "vocab %d",
          qwen_tokenizer_vocab_size(tok));
    CHECK(qwen_token_bytes(tok, 151700, NULL) == NULL, "padding id has bytes");
    CHECK(qwen_token_bytes(tok, 151935, NULL) == NULL, "last padding id has bytes");
    CHECK(qwen_token_is_eog(tok, 151645) && qwen_token_is_eog(tok, 151643),
          "im_end/endoftext not EOG");
    test_corpus(tok, corpus, refs, "gguf-path");
    {
        qwen_vocab_arrays bad;
        qwen_str t1[2] = { { "a", 1 }, { "b", 1 } };
        qwen_tokenizer *x = NULL;
        memset(&bad, 0, sizeof bad);
        bad.tokens = t1;
        bad.n_tokens = 2;
        bad.pre.ptr = "llama3";
        bad.pre.len = 6;
        bad.eos_id = bad.bos_id = bad.pad_id = -1;
        CHECK(qwen_tokenizer_build(&bad, &x, err, sizeof err) == -1 && x == NULL &&
              strstr(err, "pre-tokenizer"), "unsupported pre accepted: %s", err);
        bad.pre.ptr = "qwen2";
        bad.pre.len = 5;
        CHECK(qwen_tokenizer_build(&bad, &x, err, sizeof err) == -1 && x == NULL &&
              strstr(err, "byte 0x"), "vocab without byte tokens accepted: %s", err);
    }
    qwen_tokenizer_free(tok);
}

/* --------------------------------------------------- API details */

static void
test_api(const qwen_tokenizer *tok)
{
    char err[QWEN_ERR_LEN];
    size_t len;
    const char *p;
    qwen_tokens t = { 0 };

    CHECK(qwen_tokenizer_vocab_size(tok) == 151669, "vocab %d",
          qwen_tokenizer_vocab_size(tok));
    CHECK(qwen_token_id(tok, "<|im_end|>", 10) == 151645, "im_end id");
    CHECK(qwen_token_id(tok, "<|im_start|>", 12) == 151644, "im_start id");
    CHECK(qwen_token_id(tok, "<think>", 7) == 151667, "think id");
    CHECK(qwen_token_id(tok, "</think>", 8) == 151668, "/think id");
    CHECK(qwen_token_id(tok, "<tool_call>", 11) == 151657, "tool_call id");
    CHECK(qwen_token_id(tok, " hello", 6) == 23811, "' hello' id %d",
          qwen_token_id(tok, " hello", 6));
    CHECK(qwen_token_id(tok, "no such token at all", 20) == -1, "bogus token found");
    CHECK(qwen_token_is_eog(tok, 151645) && qwen_token_is_eog(tok, 151643),
          "im_end/endoftext must be EOG");
    CHECK(!qwen_token_is_eog(tok, 151644) && !qwen_token_is_eog(tok, 0) &&
          !qwen_token_is_eog(tok, -5) && !qwen_token_is_eog(tok, 999999), "EOG false positives");
    p = qwen_token_bytes(tok, 151645, &len);
    CHECK(p && len == 10 && memcmp(p, "<|im_end|>", 10) == 0, "im_end bytes");
    p = qwen_token_bytes(tok, 220, &len);
    CHECK(p && len == 1 && p[0] == ' ', "token 220 is a space");
    CHECK(qwen_token_bytes(tok, 151669, &len) == NULL && len == 0, "id past vocab");
    CHECK(qwen_token_bytes(tok, 151935, &len) == NULL, "model-only id");
    CHECK(qwen_token_bytes(tok, -1, &len) == NULL, "negative id");
    CHECK(qwen_token_bytes(tok, INT32_MAX, &len) == NULL, "huge id");

    /* appends to what is there */
    CHECK(qwen_tokenize(tok, "Hello", 5, &t, err, sizeof err) == 0, "%s", err);
    CHECK(qwen_tokenize(tok, " world", 6, &t, err, sizeof err) == 0, "%s", err);
    CHECK(t.n == 2 && t.ids[0] == 9707 && t.ids[1] == 1879, "append: n=%zu", t.n);
    CHECK(qwen_tokenize(tok, "", 0, &t, err, sizeof err) == 0 && t.n == 2, "empty");
    CHECK(qwen_tokenize(tok, NULL, 0, &t, err, sizeof err) == 0 && t.n == 2, "NULL empty");
    qwen_tokens_free(&t);
    CHECK(t.ids == NULL && t.n == 0, "free resets");

    /* decode of unknown ids skips them, like HF */
    {
        int32_t ids[4] = { 9707, 151700, -3, 1879 };
        char *s = qwen_detokenize(tok, ids, 4, &len);
        CHECK(s && len == 11 && strcmp(s, "Hello world") == 0, "skip unknown ids: %s", s);
        free(s);
        s = qwen_detokenize(tok, NULL, 0, &len);
        CHECK(s && len == 0 && s[0] == '\0', "empty decode");
        free(s);
    }
}

static void
test_invalid_utf8(const qwen_tokenizer *tok)
{
    static const struct { const char *s; size_t n; size_t off; } cases[] = {
        { "\xff", 1, 0 },
        { "abc\xc3", 4, 3 },             /* truncated 2-byte */
        { "\xc0\xaf", 2, 0 },            /* overlong */
        { "ok \xe0\x80\xaf", 6, 3 },     /* overlong 3-byte */
        { "\xed\xa0\x80", 3, 0 },        /* surrogate */
        { "\xf4\x90\x80\x80", 4, 0 },    /* above U+10FFFF */
        { "a\x80" "b", 3, 1 },           /* stray continuation */
        { "<|im_end|>\xfe", 11, 10 },    /* after an added token */
        { "\xe4\xbd\xa0\xe5\xa5", 5, 3 },/* 你 then half of 好 */
    };
    size_t i;
    char err[QWEN_ERR_LEN];
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        qwen_tokens t = { 0 };
        char want[64];
        int rc;
        err[0] = '\0';
        if (qwen_tokenize(tok, "x", 1, &t, err, sizeof err) != 0) break;
        rc = qwen_tokenize(tok, cases[i].s, cases[i].n, &t, err, sizeof err);
        snprintf(want, sizeof want, "at byte %zu", cases[i].off);
        CHECK(rc == -1 && strstr(err, "invalid UTF-8") && strstr(err, want),
              "invalid UTF-8 case %zu: rc=%d err=%s", i, rc, err);
        CHECK(t.n == 1, "failed call left %zu ids (must keep the 1 from before)", t.n);
        qwen_tokens_free(&t);
    }
}

static void
test_stream(const qwen_tokenizer *tok)
{
    /* the four byte tokens of U+1F600, pushed one at a time */
    const unsigned char emoji[4] = { 0xF0, 0x9F, 0x98, 0x80 };
    int32_t ids[4];
    qwen_detok st;
    char out[64];
    long w;
    int i;

    for (i = 0; i < 4; i++) ids[i] = qwen_token_id(tok, (const char *) emoji + i, 1);
    CHECK(ids[0] >= 0 && ids[1] >= 0 && ids[2] >= 0 && ids[3] >= 0, "byte tokens");
    memset(&st, 0, sizeof st);
    for (i = 0; i < 3; i++) {
        w = qwen_detok_push(tok, &st, ids[i], out, sizeof out);
        CHECK(w == 0 && st.n_pending == (size_t) i + 1, "partial emoji byte %d: w=%ld", i, w);
    }
    /* too small a buffer fails and keeps the state */
    w = qwen_detok_push(tok, &st, ids[3], out, 2);
    CHECK(w == -1 && st.n_pending == 3, "small cap: w=%ld pending=%zu", w, st.n_pending);
    w = qwen_detok_push(tok, &st, ids[3], out, sizeof out);
    CHECK(w == 4 && memcmp(out, emoji, 4) == 0 && st.n_pending == 0, "emoji: w=%ld", w);

    /* 你 split as E4 | BD A0 with the next char glued on */
    {
        int32_t e4 = qwen_token_id(tok, "\xe4", 1);
        int32_t bd = qwen_token_id(tok, "\xbd", 1), a0 = qwen_token_id(tok, "\xa0", 1);
        memset(&st, 0, sizeof st);
        CHECK(qwen_detok_push(tok, &st, e4, out, sizeof out) == 0, "E4");
        CHECK(qwen_detok_push(tok, &st, bd, out, sizeof out) == 0, "BD");
        w = qwen_detok_push(tok, &st, a0, out, sizeof out);
        CHECK(w == 3 && memcmp(out, "\xe4\xbd\xa0", 3) == 0, "ni: %ld", w);
    }
    /* an ill-formed sequence becomes U+FFFD, then text continues */
    {
        int32_t f0 = qwen_token_id(tok, "\xf0", 1), ff = qwen_token_id(tok, "\xff", 1);
        int32_t a = qwen_token_id(tok, "a", 1);
        memset(&st, 0, sizeof st);
        CHECK(qwen_detok_push(tok, &st, f0, out, sizeof out) == 0, "F0 held");
        w = qwen_detok_push(tok, &st, a, out, sizeof out);
        CHECK(w == 4 && memcmp(out, "\xef\xbf\xbd" "a", 4) == 0, "F0 a -> FFFD a: %ld", w);
        w = qwen_detok_push(tok, &st, ff, out, sizeof out);
        CHECK(w == 3 && memcmp(out, "\xef\xbf\xbd", 3) == 0 && st.n_pending == 0,
              "FF -> FFFD: %ld", w);
        w = qwen_detok_push(tok, &st, 151700, out, sizeof out);
        CHECK(w == 0, "unknown id decodes to nothing: %ld", w);
        w = qwen_detok_push(tok, &st, 151645, out, sizeof out);
        CHECK(w == 10 && memcmp(out, "<|im_end|>", 10) == 0, "special token text");
    }
    /* whole-sequence decode of a lone lead byte: U+FFFD, like from_utf8_lossy */
    {
        int32_t ids2[2] = { qwen_token_id(tok, "a", 1), qwen_token_id(tok, "\xe4", 1) };
        size_t len;
        char *s = qwen_detokenize(tok, ids2, 2, &len);
        CHECK(s && len == 4 && memcmp(s, "a\xef\xbf\xbd", 4) == 0, "lossy tail");
        free(s);
    }
}

/* ----------------------------------------------- malformed tokenizer dirs */

static char tmp_root[256];

static void
write_file(const char *dir, const char *name, const char *data, size_t n)
{
    char path[512];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "wb");
    if (f) {
        fwrite(data, 1, n, f);
        fclose(f);
    }
}

static void
remove_file(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unlink(path);
}

/* A small byte-level tokenizer.json: the 256 byte tokens plus a few merges.
 * merges_json replaces the merge list when given. */
static char *
small_tokenizer_json(const char *merges_json, int string_merges)
{
    json_t *root = json_object(), *model = json_object(), *vocab = json_object();
    json_t *merges, *pre, *seq, *split, *bl, *added = json_array();
    json_error_t je;
    char *out;
    int b, id = 0;
    static const char *extra[] = { "he", "ll", "hell", "hello", "\xc4\xa0w" };
    static const char *pairs[][2] = { { "h", "e" }, { "l", "l" }, { "he", "ll" },
                                      { "hell", "o" }, { "\xc4\xa0", "w" } };
    size_t i;

    for (b = 0; b < 256; b++) {
        char ch[8];
        size_t n = qwen_utf8_encode(qwen_byte_level_cp((unsigned char) b), ch);
        ch[n] = '\0';
        json_object_set_new(vocab, ch, json_integer(id++));
    }
    for (i = 0; i < 5; i++) json_object_set_new(vocab, extra[i], json_integer(id++));
    if (merges_json) {
        merges = json_loads(merges_json, JSON_DECODE_ANY, &je);
    } else {
        merges = json_array();
        for (i = 0; i < 5; i++) {
            if (string_merges) {
                char m[32];
                snprintf(m, sizeof m, "%s %s", pairs[i][0], pairs[i][1]);
                json_array_append_new(merges, json_string(m));
            } else {
                json_array_append_new(merges, json_pack("[s, s]", pairs[i][0], pairs[i][1]));
            }
        }
    }
    json_array_append_new(added, json_pack("{s:i, s:s, s:b}", "id", id, "content",
                                           "<|end|>", "special", 1));
    json_object_set_new(model, "type", json_string("BPE"));
    json_object_set_new(model, "vocab", vocab);
    json_object_set_new(model, "merges", merges);
    split = json_pack("{s:s, s:{s:s}, s:s, s:b}", "type", "Split", "pattern", "Regex",
                      qwen_pre_pattern_qwen2, "behavior", "Isolated", "invert", 0);
    bl = json_pack("{s:s, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0,
                   "use_regex", 0);
    seq = json_array();
    json_array_append_new(seq, split);
    json_array_append_new(seq, bl);
    pre = json_pack("{s:s, s:o}", "type", "Sequence", "pretokenizers", seq);
    json_object_set_new(root, "added_tokens", added);
    json_object_set_new(root, "normalizer", json_pack("{s:s}", "type", "NFC"));
    json_object_set_new(root, "pre_tokenizer", pre);
    json_object_set_new(root, "model", model);
    out = json_dumps(root, 0);
    json_decref(root);
    return out;
}

static void
expect_load_error(const char *label, const char *want)
{
    char err[QWEN_ERR_LEN] = "";
    qwen_tokenizer *t = qwen_tokenizer_load_hf(tmp_root, err, sizeof err);
    CHECK(t == NULL && strstr(err, want) != NULL,
          "%s: loaded=%d, error \"%s\" should mention \"%s\"", label, t != NULL, err, want);
    if (t == NULL && strstr(err, want)) printf("  %-28s -> %s\n", label, err);
    qwen_tokenizer_free(t);
}

static void
put_tokenizer(const char *json)
{
    write_file(tmp_root, "tokenizer.json", json, strlen(json));
}

static void
test_small_and_malformed(void)
{
    char err[QWEN_ERR_LEN];
    char *js, *real = NULL;
    qwen_tokenizer *t = NULL;
    qwen_tokens ids = { 0 };
    FILE *f;
    char path[4096];
    size_t n;

    snprintf(tmp_root, sizeof tmp_root, "/tmp/qwen_tok_test_XXXXXX");
    if (mkdtemp(tmp_root) == NULL) {
        CHECK(0, "mkdtemp failed");
        return;
    }
    printf("malformed tokenizer files:\n");
    expect_load_error("missing directory", "cannot open");

    /* a working small tokenizer, merges as pairs and as "a b" strings */
    for (int form = 0; form < 2; form++) {
        js = small_tokenizer_json(NULL, form);
        put_tokenizer(js);
        free(js);
        CHECK((t = qwen_tokenizer_load_hf(tmp_root, err, sizeof err)) != NULL,
              "small tokenizer (form %d): %s", form, err);
        if (t) {
            /* hellhe: h e l l h e -> he l l he -> he ll he -> hell he */
            CHECK(qwen_tokenize(t, "hellhe hello w<|end|>", 21, &ids, err, sizeof err) == 0,
                  "%s", err);
            /* hellhe | ' hello' -> ' ' hello | ' w' -> 'Ġw' | <|end|> */
            CHECK(ids.n == 6 && ids.ids[0] == 258 && ids.ids[1] == 256 &&
                  ids.ids[2] == 32 && ids.ids[3] == 259 && ids.ids[4] == 260 &&
                  ids.ids[5] == 261, "small encode form %d", form);
            if (ids.n != 6) show_ids("small", ids.ids, ids.n);
            CHECK(qwen_token_is_eog(t, 261) == 0, "no eos configured");
            qwen_tokens_free(&ids);
            qwen_tokenizer_free(t);
            t = NULL;
        }
    }

    put_tokenizer("[]");
    expect_load_error("top level array", "not a JSON object");

    /* the real file cut short */
    snprintf(path, sizeof path, "%s/tokenizer.json", tok_dir);
    f = fopen(path, "rb");
    if (f) {
        real = malloc(100000);
        n = real ? fread(real, 1, 100000, f) : 0;
        fclose(f);
        if (real) write_file(tmp_root, "tokenizer.json", real, n);
        expect_load_error("truncated tokenizer.json", "invalid JSON");
        free(real);
    }
    put_tokenizer("{\"model\": {\"type\": \"BPE\", \"merges\": []}}");
    expect_load_error("no model.vocab", "model.vocab");
    put_tokenizer("{\"model\": {\"type\": \"BPE\", \"vocab\": [1, 2], \"merges\": []}}");
    expect_load_error("vocab is an array", "model.vocab");
    put_tokenizer("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}");
    expect_load_error("not BPE", "BPE");
    put_tokenizer("{\"model\": \"BPE\"}");
    expect_load_error("model is a string", "\"model\"");

    js = small_tokenizer_json("[[\"h\", \"e\"], [\"zz\", \"q\"]]", 0);
    put_tokenizer(js);
    free(js);
    expect_load_error("merge of unknown token", "merge 1 refers to token \"zz\"");
    js = small_tokenizer_json("[\"h e\", \"e x\"]", 1);
    put_tokenizer(js);
    free(js);
    expect_load_error("merge result not in vocab", "merge 1 (\"e x\") makes a token");
    js = small_tokenizer_json("[[\"h\", 5]]", 0);
    put_tokenizer(js);
    free(js);
    expect_load_error("merge with a number", "model.merges[0]");
    js = small_tokenizer_json("[\"he\"]", 1);
    put_tokenizer(js);
    free(js);
    expect_load_error("merge without a space", "two tokens");
    js = small_tokenizer_json("{\"a\": 1}", 0);
    put_tokenizer(js);
    free(js);
    expect_load_error("merges is an object", "model.merges");

    /* wrong types in added tokens and the pipeline */
    js = small_tokenizer_json(NULL, 0);
    {
        json_error_t je;
        json_t *root = json_loads(js, 0, &je), *copy;
        char *s;
        free(js);

        copy = json_deep_copy(root);
        json_object_set_new(copy, "added_tokens", json_pack("[{s:s, s:s}]", "id", "x",
                                                            "content", "<x>"));
        s = json_dumps(copy, 0);
        put_tokenizer(s);
        free(s);
        json_decref(copy);
        expect_load_error("added token id a string", "added_tokens[0]");

        copy = json_deep_copy(root);
        json_object_set_new(copy, "normalizer", json_pack("{s:s}", "type", "NFKC"));
        s = json_dumps(copy, 0);
        put_tokenizer(s);
        free(s);
        json_decref(copy);
        expect_load_error("NFKC normalizer", "normalizer \"NFKC\"");

        copy = json_deep_copy(root);
        json_object_del(copy, "pre_tokenizer");
        s = json_dumps(copy, 0);
        put_tokenizer(s);
        free(s);
        json_decref(copy);
        expect_load_error("no pre_tokenizer", "pre_tokenizer");

        copy = json_deep_copy(root);
        json_object_set_new(json_array_get(json_object_get(json_object_get(copy,
            "pre_tokenizer"), "pretokenizers"), 0), "pattern",
            json_pack("{s:s}", "Regex", "(unclosed"));
        s = json_dumps(copy, 0);
        put_tokenizer(s);
        free(s);
        json_decref(copy);
        expect_load_error("regex does not compile", "does not compile");

        copy = json_deep_copy(root);
        json_object_set_new(json_object_get(json_object_get(copy, "model"), "vocab"),
                            "dup", json_integer(3));
        s = json_dumps(copy, 0);
        put_tokenizer(s);
        free(s);
        json_decref(copy);
        expect_load_error("two tokens on one id", "used by two tokens");

        copy = json_deep_copy(root);
        json_object_set_new(json_object_get(json_object_get(copy, "model"), "vocab"),
                            "neg", json_integer(-4));
        s = json_dumps(copy, 0);
        put_tokenizer(s);
        free(s);
        json_decref(copy);
        expect_load_error("negative id", "out of range");

        /* the good file with broken companions */
        s = json_dumps(root, 0);
        put_tokenizer(s);
        free(s);
        write_file(tmp_root, "tokenizer_config.json", "{\"eos_token\": 12", 16);
        expect_load_error("truncated tokenizer_config", "tokenizer_config.json: invalid JSON");
        write_file(tmp_root, "tokenizer_config.json", "{\"eos_token\": \"<nope>\"}", 23);
        expect_load_error("eos not a token", "eos_token \"<nope>\" is not a token");
        write_file(tmp_root, "tokenizer_config.json", "{\"chat_template\": 5}", 20);
        expect_load_error("chat_template a number", "chat_template");
        write_file(tmp_root, "tokenizer_config.json", "{\"eos_token\": \"<|end|>\"}", 24);
        write_file(tmp_root, "generation_config.json", "{\"eos_token_id\": [261, 99999]}", 30);
        expect_load_error("eos id out of range", "eos_token_id 99999");
        write_file(tmp_root, "generation_config.json", "{\"eos_token_id\": [261]}", 23);
        CHECK((t = qwen_tokenizer_load_hf(tmp_root, err, sizeof err)) != NULL, "%s", err);
        if (t) {
            CHECK(qwen_token_is_eog(t, 261), "eos from config");
            qwen_tokenizer_free(t);
            t = NULL;
        }
        json_decref(root);
    }
    remove_file(tmp_root, "tokenizer.json");
    remove_file(tmp_root, "tokenizer_config.json");
    remove_file(tmp_root, "generation_config.json");
    rmdir(tmp_root);
}

/* ----------------------------------------------------- NFC fast path */

static void
test_nfc_fast_path(void)
{
    utf8proc_int32_t cp, d[32];
    size_t bad = 0, bad_second = 0;
    int last;

    for (cp = 0; cp <= 0x10FFFF; cp++) {
        utf8proc_ssize_t n, i;
        if (cp >= 0xD800 && cp <= 0xDFFF) continue;
        last = 0;
        n = utf8proc_decompose_char(cp, d, 32, UTF8PROC_DECOMPOSE, &last);
        /* no code point on the list may appear after the first place of
         * any canonical decomposition: then it never composes as second */
        for (i = 1; i < n && i < 32; i++)
            if (qwen_unicode_nfc_inert_cp((uint32_t) d[i])) bad_second++;
        if (qwen_unicode_nfc_inert_cp((uint32_t) cp)) {
            char in[4], *out = NULL;
            size_t l = qwen_utf8_encode((uint32_t) cp, in);
            utf8proc_uint8_t *mapped = NULL;
            utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *) in,
                                              (utf8proc_ssize_t) l, &mapped,
                                              UTF8PROC_STABLE | UTF8PROC_COMPOSE);
            if (r != (utf8proc_ssize_t) l || memcmp(mapped, in, l) != 0 ||
                utf8proc_get_property(cp)->combining_class != 0 ||
                (n > 0 && utf8proc_get_property(d[0])->combining_class != 0))
                bad++;
            free(mapped);
            (void) out;
        }
    }
    CHECK(bad == 0, "%zu code points on the NFC-inert list change under NFC", bad);
    CHECK(bad_second == 0, "%zu NFC-inert code points can compose as second", bad_second);
}

int
main(void)
{
    char err[QWEN_ERR_LEN];
    qwen_tokenizer *tok = NULL;
    json_t *corpus = NULL, *refs = NULL;
    double t0;

    tok_dir = getenv("QWEN_TOKENIZER_DIR");
    refs_dir = getenv("QWEN_TOKENIZER_REFS");
    if (!tok_dir || !*tok_dir || !refs_dir || !*refs_dir) {
        CHECK(0, "QWEN_TOKENIZER_DIR and QWEN_TOKENIZER_REFS must be set "
                 "(run `make test-tokenizer`, which builds the references)");
        TEST_MAIN_END();
    }
    t0 = now_s();
    CHECK((tok = qwen_tokenizer_load_hf(tok_dir, err, sizeof err)) != NULL,
          "loading %s: %s", tok_dir, err);
    if (!tok) TEST_MAIN_END();
    printf("loaded tokenizer in %.2f s\n", now_s() - t0);
    corpus = test_load_json(refs_dir, "corpus.json");
    refs = test_load_json(refs_dir, "encode_ref.json");
    CHECK(corpus && refs && json_is_array(corpus) && json_is_array(refs),
          "reference files missing in %s (make tokenizer-refs)", refs_dir);

    test_api(tok);
    test_invalid_utf8(tok);
    test_stream(tok);
    test_nfc_fast_path();
    test_small_and_malformed();
    if (corpus && refs) {
        test_refs_sane(refs);
        test_corpus(tok, corpus, refs, "hf-dir");
        test_threads(tok, corpus, refs);
        test_gguf_path(corpus, refs);
    }
    json_decref(corpus);
    json_decref(refs);
    qwen_tokenizer_free(tok);
    TEST_MAIN_END();
}
