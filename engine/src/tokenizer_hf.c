/*
 * tokenizer_hf.c - loads a tokenizer from a Hugging Face directory:
 * tokenizer.json (BPE vocab, merges in either format, added tokens,
 * normalizer and pre-tokenizer), tokenizer_config.json (extra added tokens,
 * eos/bos/pad, chat template) and generation_config.json (eos ids). Checks
 * every field it reads and hands arrays to the same builder GGUF uses.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "qwen.h"
#include "tokenizer_priv.h"

#define MAX_TOKEN_ID (1 << 24)   /* sanity bound on ids in the files */

typedef struct {
    qwen_str *tokens;
    int32_t  *types;
    size_t    n;
} token_table;

static int
file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Load JSON; *root NULL (and 0 returned) if optional and absent. */
static int
load_json(const char *path, int optional, json_t **root, char *err, size_t err_len)
{
    json_error_t je;
    *root = NULL;
    if (optional && !file_exists(path)) return 0;
    *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (*root == NULL) {
        if (!file_exists(path))
            snprintf(err, err_len, "%s: cannot open: %s", path, strerror(errno));
        else
            snprintf(err, err_len, "%s: invalid JSON at line %d, column %d: %s",
                     path, je.line, je.column, je.text);
        return -1;
    }
    if (!json_is_object(*root)) {
        snprintf(err, err_len, "%s: top level is not a JSON object", path);
        json_decref(*root);
        *root = NULL;
        return -1;
    }
    return 0;
}

/* Set token id to text; the same text under another id is an error in
 * the caller's terms, a different text under the same id is reported. */
static int
table_set(token_table *t, json_int_t id, const char *text, size_t len,
          int32_t type, const char *path, const char *what,
          char *err, size_t err_len)
{
    if (id < 0 || id >= MAX_TOKEN_ID || (size_t) id >= t->n) {
        snprintf(err, err_len, "%s: %s: token id %lld is out of range",
                 path, what, (long long) id);
        return -1;
    }
    if (t->types[id] != TOKTYPE_UNUSED && type == TOKTYPE_NORMAL) {
        snprintf(err, err_len, "%s: %s: id %lld is used by two tokens",
                 path, what, (long long) id);
        return -1;
    }
    t->tokens[id].ptr = text;
    t->tokens[id].len = len;
    t->types[id] = type;
    return 0;
}

/* Largest id in vocab and the added token lists. */
static int
scan_max_id(json_t *vocab, json_t *added, json_t *added_dec, json_int_t *max_id,
            const char *path, const char *cfg_path, char *err, size_t err_len)
{
    const char *key;
    json_t *val;
    size_t i;

    *max_id = -1;
    json_object_foreach(vocab, key, val) {
        json_int_t id;
        if (!json_is_integer(val)) {
            snprintf(err, err_len, "%s: model.vocab[\"%.60s\"] is not an integer id",
                     path, key);
            return -1;
        }
        id = json_integer_value(val);
        if (id < 0 || id >= MAX_TOKEN_ID) {
            snprintf(err, err_len, "%s: model.vocab[\"%.60s\"] = %lld is out of range",
                     path, key, (long long) id);
            return -1;
        }
        if (id > *max_id) *max_id = id;
    }
    for (i = 0; added && i < json_array_size(added); i++) {
        json_t *a = json_array_get(added, i), *id = json_object_get(a, "id");
        if (!json_is_object(a) || !json_is_integer(id) ||
            !json_is_string(json_object_get(a, "content"))) {
            snprintf(err, err_len, "%s: added_tokens[%zu] needs an integer \"id\" "
                     "and a string \"content\"", path, i);
            return -1;
        }
        if (json_integer_value(id) < 0 || json_integer_value(id) >= MAX_TOKEN_ID) {
            snprintf(err, err_len, "%s: added_tokens[%zu]: id %lld is out of range",
                     path, i, (long long) json_integer_value(id));
            return -1;
        }
        if (json_integer_value(id) > *max_id) *max_id = json_integer_value(id);
    }
    if (added_dec) {
        json_object_foreach(added_dec, key, val) {
            char *end;
            long id;
            errno = 0;
            id = strtol(key, &end, 10);
            if (*key == '\0' || *end != '\0' || errno || id < 0 || id >= MAX_TOKEN_ID ||
                !json_is_object(val) ||
                !json_is_string(json_object_get(val, "content"))) {
                snprintf(err, err_len, "%s: added_tokens_decoder[\"%.40s\"] needs "
                         "a numeric id and a string \"content\"", cfg_path, key);
                return -1;
            }
            if (id > *max_id) *max_id = id;
        }
    }
    return 0;
}

/* Check the normalizer and pre-tokenizer are ones this engine implements
 * and pull out the split regex. */
static int
read_pipeline(json_t *root, const char *path, int *nfc, const char **pattern,
              char *err, size_t err_len)
{
    json_t *norm = json_object_get(root, "normalizer");
    json_t *pre = json_object_get(root, "pre_tokenizer");
    json_t *list;
    size_t i, n;
    int n_split = 0, n_bytelevel = 0;

    *nfc = 0;
    *pattern = NULL;
    if (norm && !json_is_null(norm)) {
        const char *type = json_string_value(json_object_get(norm, "type"));
        if (type == NULL || strcmp(type, "NFC") != 0) {
            snprintf(err, err_len, "%s: normalizer \"%s\" is not supported (NFC or "
                     "none)", path, type ? type : "?");
            return -1;
        }
        *nfc = 1;
    }
    if (!json_is_object(pre)) {
        snprintf(err, err_len, "%s: pre_tokenizer missing or not an object", path);
        return -1;
    }
    list = json_object_get(pre, "pretokenizers");
    if (json_is_array(list) && json_is_string(json_object_get(pre, "type")) &&
        strcmp(json_string_value(json_object_get(pre, "type")), "Sequence") == 0) {
        n = json_array_size(list);
    } else {
        list = NULL;
        n = 1;
    }
    for (i = 0; i < n; i++) {
        json_t *p = list ? json_array_get(list, i) : pre;
        const char *type = json_string_value(json_object_get(p, "type"));
        if (type && strcmp(type, "Split") == 0) {
            json_t *pat = json_object_get(json_object_get(p, "pattern"), "Regex");
            const char *beh = json_string_value(json_object_get(p, "behavior"));
            if (!json_is_string(pat)) {
                snprintf(err, err_len, "%s: pre_tokenizer Split needs a "
                         "pattern.Regex string", path);
                return -1;
            }
            if (beh == NULL || strcmp(beh, "Isolated") != 0 ||
                json_is_true(json_object_get(p, "invert"))) {
                snprintf(err, err_len, "%s: pre_tokenizer Split: only behavior "
                         "Isolated without invert is supported", path);
                return -1;
            }
            *pattern = json_string_value(pat);
            n_split++;
        } else if (type && strcmp(type, "ByteLevel") == 0) {
            if (json_is_true(json_object_get(p, "use_regex")) ||
                json_is_true(json_object_get(p, "add_prefix_space"))) {
                snprintf(err, err_len, "%s: pre_tokenizer ByteLevel with use_regex "
                         "or add_prefix_space is not supported", path);
                return -1;
            }
            n_bytelevel++;
        } else {
            snprintf(err, err_len, "%s: pre_tokenizer \"%s\" is not supported "
                     "(Split + ByteLevel)", path, type ? type : "?");
            return -1;
        }
    }
    if (n_split != 1 || n_bytelevel != 1) {
        snprintf(err, err_len, "%s: pre_tokenizer must be one Split regex and "
                 "one ByteLevel step", path);
        return -1;
    }
    return 0;
}

/* Token text of eos/bos/pad entries: a string or {"content": ...}. */
static const char *
special_text(json_t *v)
{
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_object(v)) return json_string_value(json_object_get(v, "content"));
    return NULL;
}

static int32_t
find_token(const token_table *t, json_t *vocab, const char *text)
{
    size_t i, len;
    json_t *v;
    if (text == NULL) return -1;
    len = strlen(text);
    for (i = 0; i < t->n; i++)
        if ((t->types[i] == TOKTYPE_CONTROL || t->types[i] == TOKTYPE_USER_DEFINED) &&
            t->tokens[i].len == len && memcmp(t->tokens[i].ptr, text, len) == 0)
            return (int32_t) i;
    v = json_object_get(vocab, text);   /* byte-level form */
    return json_is_integer(v) ? (int32_t) json_integer_value(v) : -1;
}

static char *
read_text_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;
    if (f == NULL) return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t) n + 1)) != NULL) {
        if (fread(buf, 1, (size_t) n, f) != (size_t) n) {
            free(buf);
            buf = NULL;
        } else {
            buf[n] = '\0';
            *len = (size_t) n;
        }
    }
    fclose(f);
    return buf;
}

qwen_tokenizer *
qwen_tokenizer_load_hf(const char *dir, char *err, size_t err_len)
{
    qwen_tokenizer *tok = NULL;

    char path[4096], cfg_path[4096], gen_path[4096], jinja_path[4096];
    json_t *root = NULL, *cfg = NULL, *gen = NULL;
    json_t *model, *vocab, *merges, *added, *added_dec = NULL;
    token_table tt = { NULL, NULL, 0 };
    qwen_str *mstr = NULL;
    char *marena = NULL, *jinja = NULL;
    size_t i, arena_len = 0, jinja_len = 0;
    json_int_t max_id;
    qwen_vocab_arrays va;
    tok_build_opts opts;
    int32_t eog[16];
    size_t n_eog = 0;
    const char *key, *pattern;
    json_t *val;
    int nfc, rc = -1;

    if (dir == NULL) {
        snprintf(err, err_len, "tokenizer: no directory given");
        return NULL;
    }
    if ((size_t) snprintf(path, sizeof path, "%s/tokenizer.json", dir) >= sizeof path ||
        (size_t) snprintf(cfg_path, sizeof cfg_path, "%s/tokenizer_config.json", dir) >= sizeof cfg_path ||
        (size_t) snprintf(gen_path, sizeof gen_path, "%s/generation_config.json", dir) >= sizeof gen_path ||
        (size_t) snprintf(jinja_path, sizeof jinja_path, "%s/chat_template.jinja", dir) >= sizeof jinja_path) {
        snprintf(err, err_len, "tokenizer: directory path too long");
        return NULL;
    }
    if (load_json(path, 0, &root, err, err_len) != 0) goto done;
    if (load_json(cfg_path, 1, &cfg, err, err_len) != 0) goto done;
    if (load_json(gen_path, 1, &gen, err, err_len) != 0) goto done;

    model = json_object_get(root, "model");
    if (!json_is_object(model)) {
        snprintf(err, err_len, "%s: \"model\" missing or not an object", path);
        goto done;
    }
    if (json_object_get(model, "type") &&
        (!json_is_string(json_object_get(model, "type")) ||
         strcmp(json_string_value(json_object_get(model, "type")), "BPE") != 0)) {
        snprintf(err, err_len, "%s: model.type is not \"BPE\"", path);
        goto done;
    }
    if (json_is_true(json_object_get(model, "byte_fallback"))) {
        snprintf(err, err_len, "%s: model.byte_fallback is not supported", path);
        goto done;
    }
    {
        const char *cs = json_string_value(json_object_get(model, "continuing_subword_prefix"));
        const char *ew = json_string_value(json_object_get(model, "end_of_word_suffix"));
        if ((cs && *cs) || (ew && *ew)) {
            snprintf(err, err_len, "%s: BPE subword prefixes/suffixes are not "
                     "supported", path);
            goto done;
        }
    }
    vocab = json_object_get(model, "vocab");
    if (!json_is_object(vocab) || json_object_size(vocab) == 0) {
        snprintf(err, err_len, "%s: model.vocab missing, empty or not an object", path);
        goto done;
    }
    merges = json_object_get(model, "merges");
    if (!json_is_array(merges)) {
        snprintf(err, err_len, "%s: model.merges missing or not an array", path);
        goto done;
    }
    added = json_object_get(root, "added_tokens");
    if (added && !json_is_null(added) && !json_is_array(added)) {
        snprintf(err, err_len, "%s: added_tokens is not an array", path);
        goto done;
    }
    if (json_is_null(added)) added = NULL;
    if (cfg) {
        added_dec = json_object_get(cfg, "added_tokens_decoder");
        if (added_dec && !json_is_object(added_dec)) {
            snprintf(err, err_len, "%s: added_tokens_decoder is not an object", cfg_path);
            goto done;
        }
    }
    if (read_pipeline(root, path, &nfc, &pattern, err, err_len) != 0) goto done;
    if (scan_max_id(vocab, added, added_dec, &max_id, path, cfg_path, err, err_len) != 0)
        goto done;

    /* the token table: gaps between ids stay unused */
    tt.n = (size_t) max_id + 1;
    tt.tokens = calloc(tt.n, sizeof *tt.tokens);
    tt.types = malloc(tt.n * sizeof *tt.types);
    if (tt.tokens == NULL || tt.types == NULL) goto oom;
    for (i = 0; i < tt.n; i++) tt.types[i] = TOKTYPE_UNUSED;
    json_object_foreach(vocab, key, val) {
        if (table_set(&tt, json_integer_value(val), key, strlen(key), TOKTYPE_NORMAL,
                      path, "model.vocab", err, err_len) != 0)
            goto done;
    }
    /* added tokens take their id over, like HF's added vocabulary */
    for (i = 0; added && i < json_array_size(added); i++) {
        json_t *a = json_array_get(added, i);
        json_t *c = json_object_get(a, "content");
        int special = json_is_true(json_object_get(a, "special"));
        if (json_string_length(c) == 0) {
            snprintf(err, err_len, "%s: added_tokens[%zu] has empty content", path, i);
            goto done;
        }
        if (table_set(&tt, json_integer_value(json_object_get(a, "id")),
                      json_string_value(c), json_string_length(c),
                      special ? TOKTYPE_CONTROL : TOKTYPE_USER_DEFINED,
                      path, "added_tokens", err, err_len) != 0)
            goto done;
    }
    if (added_dec) {
        json_object_foreach(added_dec, key, val) {
            long id = strtol(key, NULL, 10);
            json_t *c = json_object_get(val, "content");
            if (tt.types[id] == TOKTYPE_CONTROL || tt.types[id] == TOKTYPE_USER_DEFINED)
                continue;   /* tokenizer.json already has it */
            if (json_string_length(c) == 0) {
                snprintf(err, err_len, "%s: added_tokens_decoder[\"%s\"] has empty "
                         "content", cfg_path, key);
                goto done;
            }
            tt.tokens[id].ptr = json_string_value(c);
            tt.tokens[id].len = json_string_length(c);
            tt.types[id] = json_is_true(json_object_get(val, "special"))
                           ? TOKTYPE_CONTROL : TOKTYPE_USER_DEFINED;
        }
    }

    /* merges: "a b" strings (old format) or ["a", "b"] pairs (new) */
    mstr = malloc((json_array_size(merges) + 1) * sizeof *mstr);
    if (mstr == NULL) goto oom;
    for (i = 0; i < json_array_size(merges); i++) {
        json_t *m = json_array_get(merges, i);
        if (json_is_array(m)) {
            if (json_array_size(m) != 2 || !json_is_string(json_array_get(m, 0)) ||
                !json_is_string(json_array_get(m, 1))) {
                snprintf(err, err_len, "%s: model.merges[%zu] is not a pair of "
                         "strings", path, i);
                goto done;
            }
            arena_len += json_string_length(json_array_get(m, 0)) +
                         json_string_length(json_array_get(m, 1)) + 1;
        } else if (!json_is_string(m)) {
            snprintf(err, err_len, "%s: model.merges[%zu] is neither a string nor a "
                     "pair of strings", path, i);
            goto done;
        }
    }
    marena = malloc(arena_len + 1);
    if (marena == NULL) goto oom;
    arena_len = 0;
    for (i = 0; i < json_array_size(merges); i++) {
        json_t *m = json_array_get(merges, i);
        if (json_is_string(m)) {
            mstr[i].ptr = json_string_value(m);
            mstr[i].len = json_string_length(m);
        } else {
            json_t *a = json_array_get(m, 0), *b = json_array_get(m, 1);
            size_t la = json_string_length(a), lb = json_string_length(b);
            if (memchr(json_string_value(a), ' ', la) || memchr(json_string_value(b), ' ', lb)) {
                snprintf(err, err_len, "%s: model.merges[%zu] has a token with a "
                         "space, which byte-level BPE never has", path, i);
                goto done;
            }
            mstr[i].ptr = marena + arena_len;
            memcpy(marena + arena_len, json_string_value(a), la);
            marena[arena_len + la] = ' ';
            memcpy(marena + arena_len + la + 1, json_string_value(b), lb);
            mstr[i].len = la + lb + 1;
            arena_len += la + lb + 1;
        }
    }

    memset(&va, 0, sizeof va);
    va.tokens = tt.tokens;
    va.n_tokens = tt.n;
    va.token_types = tt.types;
    va.merges = mstr;
    va.n_merges = json_array_size(merges);
    va.eos_id = va.bos_id = va.pad_id = -1;
    va.pre.ptr = strcmp(pattern, qwen_pre_pattern_qwen2) == 0 ? "qwen2" : "custom";
    va.pre.len = strlen(va.pre.ptr);

    if (cfg) {
        json_t *ct = json_object_get(cfg, "chat_template");
        const char *names[3] = { "eos_token", "bos_token", "pad_token" };
        int32_t *dst[3] = { &va.eos_id, &va.bos_id, &va.pad_id };
        for (i = 0; i < 3; i++) {
            json_t *v = json_object_get(cfg, names[i]);
            const char *text = special_text(v);
            if (v == NULL || json_is_null(v)) continue;
            if (text == NULL) {
                snprintf(err, err_len, "%s: %s is neither a string nor an object "
                         "with \"content\"", cfg_path, names[i]);
                goto done;
            }
            *dst[i] = find_token(&tt, vocab, text);
            if (*dst[i] < 0) {
                snprintf(err, err_len, "%s: %s \"%.60s\" is not a token", cfg_path,
                         names[i], text);
                goto done;
            }
        }
        if (json_is_string(ct)) {
            va.chat_template.ptr = json_string_value(ct);
            va.chat_template.len = json_string_length(ct);
        } else if (json_is_array(ct)) {
            /* named templates: [{"name": "default", "template": "..."}] */
            for (i = 0; i < json_array_size(ct); i++) {
                json_t *e = json_array_get(ct, i);
                const char *name = json_string_value(json_object_get(e, "name"));
                json_t *tpl = json_object_get(e, "template");
                if (name && strcmp(name, "default") == 0 && json_is_string(tpl)) {
                    va.chat_template.ptr = json_string_value(tpl);
                    va.chat_template.len = json_string_length(tpl);
                }
            }
        } else if (ct && !json_is_null(ct)) {
            snprintf(err, err_len, "%s: chat_template is not a string", cfg_path);
            goto done;
        }
    }
    if (va.chat_template.ptr == NULL && file_exists(jinja_path)) {
        jinja = read_text_file(jinja_path, &jinja_len);
        if (jinja == NULL) {
            snprintf(err, err_len, "%s: cannot read: %s", jinja_path, strerror(errno));
            goto done;
        }
        va.chat_template.ptr = jinja;
        va.chat_template.len = jinja_len;
    }
    if (gen) {
        json_t *e = json_object_get(gen, "eos_token_id");
        if (json_is_integer(e)) {
            eog[n_eog++] = (int32_t) json_integer_value(e);
        } else if (json_is_array(e)) {
            for (i = 0; i < json_array_size(e); i++) {
                json_t *x = json_array_get(e, i);
                if (!json_is_integer(x) || n_eog == sizeof eog / sizeof eog[0]) {
                    snprintf(err, err_len, "%s: eos_token_id must be up to 16 "
                             "integer ids", gen_path);
                    goto done;
                }
                eog[n_eog++] = (int32_t) json_integer_value(x);
            }
        } else if (e && !json_is_null(e)) {
            snprintf(err, err_len, "%s: eos_token_id is not an id or a list of ids",
                     gen_path);
            goto done;
        }
        for (i = 0; i < n_eog; i++) {
            if (eog[i] < 0 || (size_t) eog[i] >= tt.n) {
                snprintf(err, err_len, "%s: eos_token_id %d is not a token id",
                         gen_path, eog[i]);
                goto done;
            }
        }
    }

    memset(&opts, 0, sizeof opts);
    opts.source = path;
    opts.pattern = pattern;
    opts.nfc = nfc;
    opts.ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    opts.extra_eog = eog;
    opts.n_extra_eog = n_eog;
    rc = qwen_tokenizer_build_ex(&va, &opts, &tok, err, err_len);
    goto done;

oom:
    snprintf(err, err_len, "%s: out of memory", path);
done:
    free(tt.tokens);
    free(tt.types);
    free(mstr);
    free(marena);
    free(jinja);
    json_decref(root);
    json_decref(cfg);
    json_decref(gen);
    return rc == 0 ? tok : NULL;
}
