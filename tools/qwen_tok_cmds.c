/*
 * qwen_tok_cmds.c - the CLI's tokenizer subcommands: tokenize (ids of a
 * file's exact bytes as a JSON array, or encode throughput with --bench),
 * detokenize (text of comma-separated ids) and template (the Qwen3 chat
 * prompt for a JSON conversation). -m takes a model (.gguf or HF dir) or a
 * directory holding just the tokenizer files.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "qwen.h"
#include "qwen_cmds.h"

typedef struct {
    qwen_model           *model;   /* when -m named a loadable model */
    qwen_tokenizer       *own;     /* when -m named a tokenizer directory */
    const qwen_tokenizer *tok;
} tok_handle;

static int
is_dir_with(const char *dir, const char *file)
{
    char path[4096];
    struct stat st;
    if ((size_t) snprintf(path, sizeof path, "%s/%s", dir, file) >= sizeof path) return 0;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The tokenizer of a model, or of a tokenizer-only directory. */
static int
open_tokenizer(const char *cmd, const char *path, tok_handle *h)
{
    char err[QWEN_ERR_LEN] = "", err2[QWEN_ERR_LEN] = "";

    memset(h, 0, sizeof *h);
    if ((h->model = qwen_model_load(path, err, sizeof err)) != NULL) {
        h->tok = qwen_model_tokenizer(h->model);
        if (h->tok == NULL) {
            fprintf(stderr, "%s: %s: the model files hold no tokenizer\n", cmd, path);
            qwen_model_free(h->model);
            h->model = NULL;
            return -1;
        }
        return 0;
    }
    if (is_dir_with(path, "tokenizer.json")) {
        if ((h->own = qwen_tokenizer_load_hf(path, err2, sizeof err2)) == NULL) {
            fprintf(stderr, "%s: %s\n", cmd, err2);
            return -1;
        }
        h->tok = h->own;
        return 0;
    }
    if (err[0]) fprintf(stderr, "%s: %s\n", cmd, err);
    else fprintf(stderr, "%s: %s: no tokenizer.json there\n", cmd, path);
    return -1;
}

static void
close_tokenizer(tok_handle *h)
{
    qwen_tokenizer_free(h->own);
    if (h->model) qwen_model_free(h->model);
    memset(h, 0, sizeof *h);
}

/* Whole file ("-" is stdin), exact bytes; NUL-terminated for convenience. */
static char *
read_all(const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    char *buf = NULL, *p;
    size_t cap = 0, n = 0, got;

    if (f == NULL) return NULL;
    for (;;) {
        if (cap - n < 65536) {
            cap = cap ? cap * 2 : 65536 * 2;
            p = realloc(buf, cap + 1);
            if (p == NULL) {
                free(buf);
                buf = NULL;
                errno = ENOMEM;
                break;
            }
            buf = p;
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) {
                free(buf);
                buf = NULL;
                errno = EIO;
            }
            break;
        }
    }
    if (f != stdin) fclose(f);
    if (buf) {
        buf[n] = '\0';
        *len = n;
    }
    return buf;
}

static int
usage(const char *cmd, const char *text)
{
    fprintf(stderr, "usage: qwen %s %s\n", cmd, text);
    return 2;
}

int
qwen_cmd_tokenize(int argc, char **argv)
{
    const char *model = NULL, *file = NULL, *text = NULL;
    int bench = 0, i, rc = 1;
    char *data = NULL, err[QWEN_ERR_LEN];
    size_t len = 0, k;
    tok_handle h;
    qwen_tokens t = { 0 };
    static const char *use = "-m MODEL (--text-file FILE | --text STRING) [--bench]";

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-m") == 0 && i + 1 < argc) model = argv[++i];
        else if (strcmp(argv[i], "--text-file") == 0 && i + 1 < argc) file = argv[++i];
        else if (strcmp(argv[i], "--text") == 0 && i + 1 < argc) text = argv[++i];
        else if (strcmp(argv[i], "--bench") == 0) bench = 1;
        else return usage(argv[0], use);
    }
    if (model == NULL || (file == NULL) == (text == NULL)) return usage(argv[0], use);
    if (file) {
        data = read_all(file, &len);
        if (data == NULL) {
            fprintf(stderr, "%s: %s: %s\n", argv[0], file, strerror(errno));
            return 1;
        }
    } else {
        len = strlen(text);
    }
    {
        double t0 = qwen_cli_now_s();
        if (open_tokenizer(argv[0], model, &h) != 0) {
            free(data);
            return 1;
        }
        if (bench) printf("tokenizer loaded in %.2f s\n", qwen_cli_now_s() - t0);
    }
    if (!bench) {
        if (qwen_tokenize(h.tok, data ? data : text, len, &t, err, sizeof err) != 0) {
            fprintf(stderr, "%s: %s: %s\n", argv[0], file ? file : "--text", err);
            goto done;
        }
        putchar('[');
        for (k = 0; k < t.n; k++) printf(k ? ",%d" : "%d", t.ids[k]);
        printf("]\n");
        rc = 0;
    } else {
        /* repeat for at least a second; report the mean and the best run */
        double start = qwen_cli_now_s(), best = 0, total = 0;
        int runs = 0;
        do {
            double t0 = qwen_cli_now_s(), dt;
            t.n = 0;
            if (qwen_tokenize(h.tok, data ? data : text, len, &t, err, sizeof err) != 0) {
                fprintf(stderr, "%s: %s\n", argv[0], err);
                goto done;
            }
            dt = qwen_cli_now_s() - t0;
            total += dt;
            if (runs == 0 || dt < best) best = dt;
            runs++;
        } while (qwen_cli_now_s() - start < 1.0 && runs < 10000);
        printf("encode: %.1f MB/s mean, %.1f MB/s best (%zu bytes -> %zu tokens, %d runs)\n",
               len / (total / runs) / 1e6, best > 0 ? len / best / 1e6 : 0.0, len, t.n, runs);
        rc = 0;
    }
done:
    qwen_tokens_free(&t);
    close_tokenizer(&h);
    free(data);
    return rc;
}

/* "1,2,3", also "[1, 2, 3]" or space separated. */
static int
parse_ids(const char *s, int32_t **ids, size_t *n)
{
    size_t cap = 64;
    *n = 0;
    *ids = malloc(cap * sizeof **ids);
    if (*ids == NULL) return -1;
    while (*s) {
        char *end;
        long v;
        if (*s == ',' || *s == ' ' || *s == '[' || *s == ']' || *s == '\n' || *s == '\t') {
            s++;
            continue;
        }
        errno = 0;
        v = strtol(s, &end, 10);
        if (end == s || errno || v < INT32_MIN || v > INT32_MAX) return -1;
        if (*n == cap) {
            int32_t *p = realloc(*ids, cap * 2 * sizeof *p);
            if (p == NULL) return -1;
            *ids = p;
            cap *= 2;
        }
        (*ids)[(*n)++] = (int32_t) v;
        s = end;
    }
    return 0;
}

int
qwen_cmd_detokenize(int argc, char **argv)
{
    const char *model = NULL, *list = NULL;
    int32_t *ids = NULL;
    size_t n = 0, k, len;
    tok_handle h;
    char *text;
    int i, rc = 1;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-m") == 0 && i + 1 < argc) model = argv[++i];
        else if (strcmp(argv[i], "--ids") == 0 && i + 1 < argc) list = argv[++i];
        else return usage(argv[0], "-m MODEL --ids 1,2,3");
    }
    if (model == NULL || list == NULL) return usage(argv[0], "-m MODEL --ids 1,2,3");
    if (parse_ids(list, &ids, &n) != 0) {
        fprintf(stderr, "%s: --ids: expected comma-separated token ids\n", argv[0]);
        free(ids);
        return 2;
    }
    if (open_tokenizer(argv[0], model, &h) != 0) {
        free(ids);
        return 1;
    }
    for (k = 0; k < n; k++) {
        if (qwen_token_bytes(h.tok, ids[k], NULL) == NULL) {
            fprintf(stderr, "%s: id %d is not a token of this vocabulary (%d ids)\n",
                    argv[0], ids[k], qwen_tokenizer_vocab_size(h.tok));
            goto done;
        }
    }
    text = qwen_detokenize(h.tok, ids, n, &len);
    if (text == NULL) {
        fprintf(stderr, "%s: out of memory\n", argv[0]);
        goto done;
    }
    fwrite(text, 1, len, stdout);
    free(text);
    rc = 0;
done:
    close_tokenizer(&h);
    free(ids);
    return rc;
}

/* A string field of a message; JSON null and absence are NULL. */
static int
msg_string(json_t *m, const char *key, const char **out, size_t i, const char *cmd)
{
    json_t *v = json_object_get(m, key);
    *out = NULL;
    if (v == NULL || json_is_null(v)) return 0;
    if (!json_is_string(v)) {
        fprintf(stderr, "%s: message %zu: \"%s\" must be a string\n", cmd, i, key);
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

int
qwen_cmd_template(int argc, char **argv)
{
    const char *msgs_file = NULL, *tools_file = NULL;
    int think = 1, gen = 1, i, rc = 1;
    json_t *root = NULL, *msgs, *tools = NULL;
    json_error_t je;
    qwen_chat_message *m = NULL;
    char **calls = NULL, *tools_s = NULL, *out = NULL, err[QWEN_ERR_LEN];
    size_t n = 0, k, out_len;
    static const char *use = "[-m MODEL] --messages FILE.json [--tools FILE.json] "
                             "[--no-think] [--no-generation-prompt]";

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-m") == 0 && i + 1 < argc) i++;   /* not needed */
        else if (strcmp(argv[i], "--messages") == 0 && i + 1 < argc) msgs_file = argv[++i];
        else if (strcmp(argv[i], "--tools") == 0 && i + 1 < argc) tools_file = argv[++i];
        else if (strcmp(argv[i], "--no-think") == 0) think = 0;
        else if (strcmp(argv[i], "--no-generation-prompt") == 0) gen = 0;
        else return usage(argv[0], use);
    }
    if (msgs_file == NULL) return usage(argv[0], use);

    root = json_load_file(msgs_file, JSON_DECODE_ANY, &je);
    if (root == NULL) {
        fprintf(stderr, "%s: %s: line %d, column %d: %s\n", argv[0], msgs_file,
                je.line, je.column, je.text);
        return 1;
    }
    /* a list of messages, or {"messages": [...], "tools": [...]} */
    msgs = json_is_object(root) ? json_object_get(root, "messages") : root;
    if (!json_is_array(msgs)) {
        fprintf(stderr, "%s: %s: expected an array of messages or an object with "
                "\"messages\"\n", argv[0], msgs_file);
        goto done;
    }
    if (tools_file) {
        tools = json_load_file(tools_file, JSON_DECODE_ANY, &je);
        if (tools == NULL) {
            fprintf(stderr, "%s: %s: line %d, column %d: %s\n", argv[0], tools_file,
                    je.line, je.column, je.text);
            goto done;
        }
    } else if (json_is_object(root) && json_object_get(root, "tools")) {
        tools = json_incref(json_object_get(root, "tools"));
    }
    if (tools && (tools_s = json_dumps(tools, JSON_ENCODE_ANY)) == NULL) goto oom;

    n = json_array_size(msgs);
    m = calloc(n ? n : 1, sizeof *m);
    calls = calloc(n ? n : 1, sizeof *calls);
    if (m == NULL || calls == NULL) goto oom;
    for (k = 0; k < n; k++) {
        json_t *jm = json_array_get(msgs, k), *tc;
        if (!json_is_object(jm)) {
            fprintf(stderr, "%s: message %zu is not an object\n", argv[0], k);
            goto done;
        }
        if (msg_string(jm, "role", &m[k].role, k, argv[0]) != 0 ||
            msg_string(jm, "content", &m[k].content, k, argv[0]) != 0 ||
            msg_string(jm, "reasoning_content", &m[k].reasoning_content, k, argv[0]) != 0)
            goto done;
        tc = json_object_get(jm, "tool_calls");
        if (tc && !json_is_null(tc)) {
            if ((calls[k] = json_dumps(tc, JSON_ENCODE_ANY)) == NULL) goto oom;
            m[k].tool_calls_json = calls[k];
        }
    }
    if (qwen_chat_render(m, n, tools_s, gen, think, &out, &out_len, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", argv[0], err);
        goto done;
    }
    fwrite(out, 1, out_len, stdout);
    rc = 0;
    goto done;
oom:
    fprintf(stderr, "%s: out of memory\n", argv[0]);
done:
    free(out);
    free(tools_s);
    if (calls) for (k = 0; k < n; k++) free(calls[k]);
    free(calls);
    free(m);
    json_decref(tools);
    json_decref(root);
    return rc;
}
