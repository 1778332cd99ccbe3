/*
 * fuzz_tokenizer.c - the tokenizer on arbitrary input. The first byte
 * picks the mode:
 *   0  encode the rest as text; when it encodes, decoding the ids gives
 *      back its NFC form (the Qwen3 normalizer), byte for byte
 *   1  decode the rest as int32 ids (unknown and negative ones too), whole
 *      and streaming: the streamed text, emitted through output buffers of
 *      fuzzer-chosen sizes, is a prefix of the whole decode
 *   2  look the rest up as a token string; a hit has bytes
 */
#include <utf8proc.h>

#include "fuzz_common.h"

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void) argc; (void) argv;
    (void) fuzz_tokenizer();
    return 0;
}

static void
encode(const qwen_tokenizer *tok, const uint8_t *text, size_t len)
{
    qwen_tokens   ids = { 0 };
    char          err[QWEN_ERR_LEN];
    char         *dec;
    size_t        dlen;
    utf8proc_uint8_t *nfc = NULL;
    utf8proc_ssize_t  nlen;
    char         *copy = malloc(len ? len : 1);

    if (copy == NULL) {
        return;
    }
    memcpy(copy, text, len);
    err[0] = '\0';
    if (qwen_tokenize(tok, copy, len, &ids, err, sizeof(err)) != 0) {
        FUZZ_CHECK(err[0] != '\0', "tokenize failed without a message");
        free(copy);
        qwen_tokens_free(&ids);
        return;
    }
    dec = qwen_detokenize(tok, ids.ids, ids.n, &dlen);
    FUZZ_CHECK(dec != NULL, "detokenize of encoded ids failed");
    nlen = utf8proc_map((const utf8proc_uint8_t *) copy, (utf8proc_ssize_t) len, &nfc,
                        UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    if (nlen >= 0) {
        FUZZ_CHECK((size_t) nlen == dlen && memcmp(nfc, dec, dlen) == 0,
                   "round trip: %zu bytes in, NFC %zd, decoded %zu", len, nlen, dlen);
    }
    free(nfc);
    free(dec);
    free(copy);
    qwen_tokens_free(&ids);
}

static void
decode(const qwen_tokenizer *tok, const uint8_t *data, size_t size)
{
    size_t      n = size / 4, i, whole_len, stream_len = 0;
    int32_t    *ids = malloc((n ? n : 1) * sizeof(*ids));
    char       *whole, *stream, small[16], *big = malloc(1 << 16);
    qwen_detok  st = { 0 };
    long        w;

    if (ids == NULL || big == NULL) {
        free(ids);
        free(big);
        return;
    }
    memcpy(ids, data, n * 4);
    whole = qwen_detokenize(tok, ids, n, &whole_len);
    FUZZ_CHECK(whole != NULL, "detokenize failed");
    stream = malloc(whole_len + 1);
    FUZZ_CHECK(stream != NULL, "no memory");
    for (i = 0; i < n; i++) {
        size_t cap = data[i * 4] % sizeof(small);     /* often too small */

        w = qwen_detok_push(tok, &st, ids[i], small, cap);
        if (w < 0) {
            w = qwen_detok_push(tok, &st, ids[i], big, 1 << 16);
            FUZZ_CHECK(w >= 0, "streaming decode failed with 64 KiB of room");
            FUZZ_CHECK(stream_len + (size_t) w <= whole_len, "streamed past the whole text");
            memcpy(stream + stream_len, big, (size_t) w);
        } else {
            FUZZ_CHECK((size_t) w <= cap, "wrote %ld into %zu bytes", w, cap);
            FUZZ_CHECK(stream_len + (size_t) w <= whole_len, "streamed past the whole text");
            memcpy(stream + stream_len, small, (size_t) w);
        }
        stream_len += (size_t) w;
    }
    FUZZ_CHECK(memcmp(stream, whole, stream_len) == 0, "streamed text differs from the whole");
    FUZZ_CHECK(whole_len - stream_len <= 9, "%zu bytes held back", whole_len - stream_len);
    free(stream);
    free(whole);
    free(ids);
    free(big);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const qwen_tokenizer *tok = fuzz_tokenizer();

    if (size < 1) {
        return 0;
    }
    switch (data[0] % 3) {
    case 0:
        encode(tok, data + 1, size - 1);
        break;
    case 1:
        decode(tok, data + 1, size - 1);
        break;
    default: {
        int32_t     id = qwen_token_id(tok, (const char *) data + 1, size - 1);
        size_t      n;
        const char *b;

        if (id >= 0) {
            b = qwen_token_bytes(tok, id, &n);
            FUZZ_CHECK(b != NULL, "token %d found but has no bytes", (int) id);
        }
        break;
    }
    }
    return 0;
}
