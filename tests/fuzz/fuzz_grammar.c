/*
 * fuzz_grammar.c - the JSON-schema compiler and the constrained-decoding
 * automaton, through the public qwen_grammar_* API only. Input: a schema
 * (the bytes before the first NUL; an empty one is JSON mode), then a
 * program of operations on one automaton state:
 *   op 0  a token id from 3 bytes (out-of-vocabulary ids too): allows()
 *         and accept() must agree
 *   op 1  a run of raw bytes through accept_bytes
 *   op 2  the first allowed token from an id (3 bytes) on: it must be
 *         accepted; drives the state deep into valid JSON
 *   op 3  an end-of-generation token: allowed exactly when complete()
 *   op 4  the candidate list: when there is one, exactly the tokens
 *         allows() takes, each once
 *   op 5  a token budget (1 byte: 0..254, 255 none), as the scheduler sets
 * The tokenizer is the micro seed GGUF's 288 tokens (every byte has one):
 * compiling classifies every token, ~40 ms for the real 151,936 under ASan,
 * which would leave the fuzzer ~25 inputs a second. QWEN_FUZZ_MODEL=PATH
 * fuzzes against another model's vocabulary.
 */
#include "fuzz_common.h"

static int32_t vocab, eog = -1, *ids;
static uint8_t *seen;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const qwen_tokenizer *tok = fuzz_tokenizer_of(1);
    int32_t               i;

    (void) argc; (void) argv;
    vocab = qwen_tokenizer_vocab_size(tok);
    ids = malloc((size_t) (vocab + 1) * sizeof(int32_t));
    seen = calloc((size_t) vocab + 1, 1);
    FUZZ_CHECK(ids != NULL && seen != NULL, "out of memory");
    for (i = 0; i < vocab && eog < 0; i++) {
        if (qwen_token_is_eog(tok, i)) {
            eog = i;
        }
    }
    return 0;
}

static int32_t
id3(const uint8_t *p, int32_t mod)
{
    return (int32_t) (((uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16)
                      % (uint32_t) mod);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const qwen_tokenizer *tok = fuzz_tokenizer_of(1);
    const uint8_t        *nul = memchr(data, 0, size);
    size_t                slen = nul ? (size_t) (nul - data) : size, i;
    char                  err[QWEN_ERR_LEN], *schema;
    qwen_grammar         *g;
    qwen_grammar_state   *st;
    int32_t               t, k;
    int                   ops = 0, allowed;

    schema = malloc(slen + 1);
    if (schema == NULL) {
        return 0;
    }
    memcpy(schema, data, slen);
    schema[slen] = '\0';
    err[0] = '\0';
    g = qwen_grammar_new_json(tok, slen ? schema : NULL, err, sizeof(err));
    free(schema);
    if (g == NULL) {
        FUZZ_CHECK(err[0] != '\0', "a refused schema without a message");
        return 0;
    }
    st = qwen_grammar_state_new(g);
    FUZZ_CHECK(st != NULL, "qwen_grammar_state_new");
    i = nul ? slen + 1 : size;
    while (i < size && ops++ < 256) {
        uint8_t op = data[i++] % 6;

        switch (op) {
        case 0:
            if (i + 3 > size) {
                i = size;
                break;
            }
            t = id3(data + i, vocab + 64) - 32;     /* -32 .. vocab + 31 */
            i += 3;
            allowed = qwen_grammar_allows(st, t);
            FUZZ_CHECK((qwen_grammar_accept(st, t) == 0) == (allowed != 0),
                       "allows(%d) = %d but accept disagrees", (int) t, allowed);
            break;
        case 1: {
            size_t n = i < size ? data[i++] % 24 : 0;

            if (n > size - i) {
                n = size - i;
            }
            (void) qwen_grammar_accept_bytes(st, (const char *) data + i, n);
            i += n;
            break;
        }
        case 2:
            if (i + 3 > size) {
                i = size;
                break;
            }
            t = id3(data + i, vocab);
            i += 3;
            for (k = 0; k < 4096; k++, t = (t + 1) % vocab) {
                if (qwen_grammar_allows(st, t)) {
                    FUZZ_CHECK(qwen_grammar_accept(st, t) == 0, "allowed %d refused", (int) t);
                    break;
                }
            }
            break;
        case 4: {
            int32_t n = qwen_grammar_candidates(st, ids, vocab), a = 0;

            if (n < 0) {
                break;
            }
            for (k = 0; k < n; k++) {
                FUZZ_CHECK(ids[k] >= 0 && ids[k] < vocab && !seen[ids[k]],
                           "candidate %d out of range or listed twice", (int) ids[k]);
                seen[ids[k]] = 1;
            }
            for (t = 0; t < vocab; t++) {
                allowed = qwen_grammar_allows(st, t);
                a += allowed;
                FUZZ_CHECK(allowed == seen[t], "token %d: allowed %d, listed %d", (int) t,
                           allowed, seen[t]);
            }
            for (k = 0; k < n; k++) {
                seen[ids[k]] = 0;
            }
            FUZZ_CHECK(a == n, "%d listed, %d allowed", (int) n, (int) a);
            break;
        }
        case 5:
            if (i < size) {
                qwen_grammar_set_budget(st, data[i] == 255 ? 0x7fffffff : data[i]);
                i++;
            }
            break;
        default:
            if (eog >= 0) {
                FUZZ_CHECK((qwen_grammar_allows(st, eog) != 0)
                           == (qwen_grammar_complete(st) != 0),
                           "end of generation allowed %d, complete %d",
                           qwen_grammar_allows(st, eog), qwen_grammar_complete(st));
            }
            break;
        }
    }
    qwen_grammar_state_free(st);
    qwen_grammar_free(g);
    return 0;
}
