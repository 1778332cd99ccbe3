/*
 * ollama_models.c - Ollama's model endpoints for the one served model:
 * GET /api/tags, POST /api/show, GET /api/ps, GET /api/version, and the 501
 * for model management (pull/push/create/copy/delete: the model is fixed
 * by nginx.conf). Model facts come from qp_model_info, filled once from
 * the loaded model; the digest is a SHA-256 (util.c) of the file's identity.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "request.h"

/* ========================================================= model facts */

/* Parameters from the shapes: embeddings, per layer attention (q, k, v, o
 * and the q/k norms), the SwiGLU MLP and two norms, the final norm, and a
 * separate output matrix unless it is tied to the embeddings. */
static uint64_t
param_count(const qwen_config *c)
{
    uint64_t h = (uint64_t) c->hidden_size, v = (uint64_t) c->vocab_size;
    uint64_t q = (uint64_t) c->n_heads * (uint64_t) c->head_dim;
    uint64_t kv = (uint64_t) c->n_kv_heads * (uint64_t) c->head_dim;
    uint64_t layer = h * q + 2 * h * kv + q * h + 2 * (uint64_t) c->head_dim
                     + 3 * h * (uint64_t) c->intermediate_size + 2 * h;

    return v * h + (uint64_t) c->n_layers * layer + h + (c->tie_word_embeddings ? 0 : v * h);
}

/* Ollama's quantization_level names the file type: a Q4_K model with Q6_K
 * tensors is llama.cpp's Q4_K_M mix. */
static void
quantization_of(const char *describe, char *out, size_t cap)
{
    size_t n = strcspn(describe, " ");

    if (n == 4 && strncmp(describe, "Q4_K", 4) == 0) {
        snprintf(out, cap, "%s", strstr(describe, "Q6_K") ? "Q4_K_M" : "Q4_K_S");
    } else if (n == 4 && strncmp(describe, "Q5_K", 4) == 0) {
        snprintf(out, cap, "%s", strstr(describe, "Q6_K") ? "Q5_K_M" : "Q5_K_S");
    } else {
        snprintf(out, cap, "%.*s", (int) (n < cap ? n : cap - 1), describe);
    }
}

/* Bytes of a Hugging Face directory's weight files. */
static uint64_t
dir_weight_bytes(const char *path)
{
    DIR           *d = opendir(path);
    struct dirent *e;
    struct stat    st;
    char           file[4096];
    uint64_t       total = 0;
    size_t         len;

    if (d == NULL) {
        return 0;
    }
    while ((e = readdir(d)) != NULL) {
        len = strlen(e->d_name);
        if (len < 12 || strcmp(e->d_name + len - 12, ".safetensors") != 0) {
            continue;
        }
        if (snprintf(file, sizeof(file), "%s/%s", path, e->d_name) < (int) sizeof(file)
            && stat(file, &st) == 0 && S_ISREG(st.st_mode))
        {
            total += (uint64_t) st.st_size;
        }
    }
    closedir(d);
    return total;
}

int
qp_model_info_from_model(const qwen_model *model, const char *path, qp_model_info *info)
{
    struct stat st;
    char        id[700];
    uint8_t     hash[32];
    int         i, rc = 0, n;
    size_t      plen;

    memset(info, 0, sizeof(*info));
    info->config = *qwen_model_config(model);
    snprintf(info->weights, sizeof(info->weights), "%s", qwen_model_describe(model));
    quantization_of(info->weights, info->quantization, sizeof(info->quantization));
    info->n_params = param_count(&info->config);
    snprintf(info->path, sizeof(info->path), "%s", path ? path : "");
    plen = path ? strlen(path) : 0;
    snprintf(info->format, sizeof(info->format), "%s",
             plen >= 5 && strcmp(path + plen - 5, ".gguf") == 0 ? "gguf" : "safetensors");
    if (path != NULL && stat(path, &st) == 0) {
        info->modified = st.st_mtime;
        if (S_ISDIR(st.st_mode)) {
            snprintf(info->format, sizeof(info->format), "safetensors");
            info->size_bytes = dir_weight_bytes(path);
        } else {
            snprintf(info->format, sizeof(info->format), "gguf");
            info->size_bytes = (uint64_t) st.st_size;
        }
    } else {
        rc = -1;
    }
    if (info->size_bytes == 0) {
        info->size_bytes = qwen_model_weight_bytes(model);
    }
    n = snprintf(id, sizeof(id), "%s\n%llu\n%lld\n%s", info->path,
                 (unsigned long long) info->size_bytes, (long long) info->modified,
                 info->weights);
    qp_sha256(id, n < (int) sizeof(id) ? (size_t) n : sizeof(id) - 1, hash);
    for (i = 0; i < 32; i++) {
        snprintf(info->digest + 2 * i, 3, "%02x", hash[i]);
    }
    return rc;
}

/* ============================================================== bodies */

int
qp_ollama_model_name(const qp_config *cfg, qp_buf *out)
{
    const char *name = cfg->model_name ? cfg->model_name : "qwen3";

    if (strcmp(name, "qwen3") == 0) {
        return qp_json_raw(out, "qwen3:0.6b");
    }
    if (strchr(name, ':') != NULL) {
        return qp_json_raw(out, name);
    }
    return qp_buf_printf(out, "%s:latest", name);
}

static int
name_json(const qp_config *cfg, qp_buf *out)
{
    qp_buf name = { 0 };
    int    rc;

    rc = qp_ollama_model_name(cfg, &name) != 0
         || qp_json_str(out, name.data ? name.data : "", name.len) != 0 ? -1 : 0;
    qp_buf_free(&name);
    return rc;
}

/* Go's format.HumanNumber, as Ollama prints parameter_size ("596.05M"). */
static int
human_number(uint64_t n, qp_buf *out)
{
    double v;

    if (n >= 1000000000ull) {
        v = (double) n / 1e9;
        return qp_buf_printf(out, v == (double) (uint64_t) v ? "%.0fB" : "%.1fB", v);
    }
    if (n >= 1000000ull) {
        v = (double) n / 1e6;
        return qp_buf_printf(out, v == (double) (uint64_t) v ? "%.0fM" : "%.2fM", v);
    }
    if (n >= 1000ull) {
        return qp_buf_printf(out, "%.0fK", (double) n / 1e3);
    }
    return qp_buf_printf(out, "%llu", (unsigned long long) n);
}

static int
details_json(const qp_model_info *info, qp_buf *out)
{
    return qp_json_raw(out, "{\"parent_model\":\"\",\"format\":") != 0
           || qp_json_cstr(out, info->format) != 0
           || qp_json_raw(out, ",\"family\":\"qwen3\",\"families\":[\"qwen3\"],"
                          "\"parameter_size\":\"") != 0
           || human_number(info->n_params, out) != 0
           || qp_json_raw(out, "\",\"quantization_level\":") != 0
           || qp_json_cstr(out, info->quantization) != 0
           || qp_json_raw(out, "}") != 0 ? -1 : 0;
}

static int
time_json(time_t t, qp_buf *out)
{
    struct timespec ts = { t, 0 };
    char            buf[QP_RFC3339_LEN];

    qp_rfc3339(&ts, buf);
    return qp_buf_printf(out, "\"%s\"", buf);
}

/* "name","model","size","digest","details" shared by tags and ps */
static int
model_entry(const qp_config *cfg, const qp_model_info *info, uint64_t size, qp_buf *out)
{
    return qp_json_raw(out, "{\"name\":") != 0 || name_json(cfg, out) != 0
           || qp_json_raw(out, ",\"model\":") != 0 || name_json(cfg, out) != 0
           || qp_buf_printf(out, ",\"size\":%llu,\"digest\":\"%s\",\"details\":",
                            (unsigned long long) size, info->digest) != 0
           || details_json(info, out) != 0 ? -1 : 0;
}

int
qp_ollama_tags(const qp_config *cfg, const qp_model_info *info, qp_buf *out)
{
    return qp_json_raw(out, "{\"models\":[") != 0
           || model_entry(cfg, info, info->size_bytes, out) != 0
           || qp_json_raw(out, ",\"modified_at\":") != 0
           || time_json(info->modified, out) != 0
           || qp_json_raw(out, "}]}") != 0 ? -1 : 0;
}

int
qp_ollama_ps(const qp_config *cfg, const qp_model_info *info, qp_buf *out)
{
    /* resident for good: keep_alive never unloads it */
    return qp_json_raw(out, "{\"models\":[") != 0
           || model_entry(cfg, info, info->size_bytes + info->kv_cache_bytes, out) != 0
           || qp_buf_printf(out, ",\"expires_at\":\"9999-12-31T23:59:59Z\",\"size_vram\":0,"
                            "\"context_length\":%d}]}", cfg->n_ctx) != 0 ? -1 : 0;
}

int
qp_ollama_version(qp_buf *out)
{
    return qp_json_raw(out, "{\"version\":\"" QP_OLLAMA_VERSION "\"}");
}

void
qp_ollama_unsupported(qp_error *err)
{
    qp_fail(err, &qp_ollama_errors, 501, NULL, NULL, NULL,
            "model management is not supported: the model is set in nginx.conf "
            "(qwen_model)");
}

/* -------------------------------------------------------------- show */

/* Shown for information: prompts are rendered by Qwen3's own chat
 * template (engine/src/chat_template.c), of which this is the gist. */
static const char show_template[] =
    "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
    "<|im_start|>assistant\n";

/* Ollama's "parameters": one "name<padding>value" line each. */
static int
parameters_text(const qp_config *cfg, qp_buf *b)
{
    const qwen_sampling_params *s = &cfg->sampling;

    return qp_buf_printf(b, "%-30s %g\n%-30s %d\n%-30s %g\n%-30s %g\n%-30s %g\n"
                         "%-30s %d\n%-30s \"<|im_start|>\"\n%-30s \"<|im_end|>\"",
                         "temperature", (double) s->temperature, "top_k", s->top_k,
                         "top_p", (double) s->top_p, "min_p", (double) s->min_p,
                         "repeat_penalty", (double) s->repetition_penalty,
                         "num_ctx", cfg->n_ctx, "stop", "stop");
}

static int
show_text_fields(const qp_config *cfg, const qp_model_info *info, qp_buf *out)
{
    qp_buf params = { 0 }, mf = { 0 };
    int    rc = -1;

    if (parameters_text(cfg, &params) != 0
        || qp_buf_printf(&mf, "# Modelfile generated by ngx_http_qwen_module\n"
                         "# (informational: the model is set in nginx.conf)\nFROM %s\n"
                         "TEMPLATE \"\"\"%s\"\"\"\n", info->path, show_template) != 0)
    {
        goto done;
    }
    {
        /* PARAMETER lines from the parameters text */
        const char *p = params.data;

        while (p != NULL && *p) {
            const char *nl = strchr(p, '\n');
            size_t      len = nl ? (size_t) (nl - p) : strlen(p);

            if (qp_buf_printf(&mf, "PARAMETER %.*s\n", (int) len, p) != 0) {
                goto done;
            }
            p = nl ? nl + 1 : NULL;
        }
    }
    rc = qp_json_raw(out, "\"license\":\"Apache License 2.0\",\"modelfile\":") != 0
         || qp_json_str(out, mf.data, mf.len) != 0
         || qp_json_raw(out, ",\"parameters\":") != 0
         || qp_json_str(out, params.data, params.len) != 0
         || qp_json_raw(out, ",\"template\":") != 0
         || qp_json_cstr(out, show_template) != 0 ? -1 : 0;
done:
    qp_buf_free(&params);
    qp_buf_free(&mf);
    return rc;
}

static int
model_info_json(const qp_model_info *info, qp_buf *out)
{
    const qwen_config *c = &info->config;

    return qp_buf_printf(out, "{\"general.architecture\":\"qwen3\","
                         "\"general.basename\":\"Qwen3\","
                         "\"general.parameter_count\":%llu,",
                         (unsigned long long) info->n_params) != 0
           || qp_buf_printf(out, "\"qwen3.attention.head_count\":%d,"
                            "\"qwen3.attention.head_count_kv\":%d,"
                            "\"qwen3.attention.key_length\":%d,"
                            "\"qwen3.attention.value_length\":%d,",
                            c->n_heads, c->n_kv_heads, c->head_dim, c->head_dim) != 0
           || qp_json_raw(out, "\"qwen3.attention.layer_norm_rms_epsilon\":") != 0
           || qp_json_float(out, c->rms_norm_eps) != 0
           || qp_buf_printf(out, ",\"qwen3.block_count\":%d,\"qwen3.context_length\":%d,"
                            "\"qwen3.embedding_length\":%d,\"qwen3.feed_forward_length\":%d,"
                            "\"qwen3.rope.freq_base\":", c->n_layers,
                            c->max_position_embeddings, c->hidden_size,
                            c->intermediate_size) != 0
           || qp_json_float(out, c->rope_theta) != 0
           || qp_buf_printf(out, ",\"qwen3.vocab_size\":%d,\"tokenizer.ggml.model\":\"gpt2\","
                            "\"tokenizer.ggml.pre\":\"qwen2\"}", c->vocab_size) != 0 ? -1 : 0;
}

int
qp_ollama_show(const qp_config *cfg, const qp_model_info *info, const char *body,
               size_t len, qp_buf *out, qp_error *err)
{
    json_t       *root;
    const json_t *name = NULL;
    int           rc;

    root = qp_load_object(body, len, &qp_ollama_errors, err);
    if (root == NULL) {
        return -1;
    }
    rc = qp_get_string(root, "model", "model", &name, &qp_ollama_errors, err);
    if (rc == 0) {
        rc = qp_get_string(root, "name", "name", &name, &qp_ollama_errors, err);
    }
    if (rc < 0) {
        json_decref(root);
        return -1;
    }
    if (rc == 1 && json_string_length(name) > 0
        && !qp_model_matches(cfg, json_string_value(name), json_string_length(name)))
    {
        qp_fail(err, &qp_ollama_errors, 404, NULL, "model", NULL, "model '%.200s' not found",
                json_string_value(name));
        json_decref(root);
        return -1;
    }
    json_decref(root);
    if (qp_json_raw(out, "{") != 0
        || show_text_fields(cfg, info, out) != 0
        || qp_json_raw(out, ",\"details\":") != 0 || details_json(info, out) != 0
        || qp_json_raw(out, ",\"model_info\":") != 0 || model_info_json(info, out) != 0
        || qp_json_raw(out, ",\"capabilities\":[\"completion\",\"tools\",\"thinking\"],"
                       "\"modified_at\":") != 0
        || time_json(info->modified, out) != 0
        || qp_json_raw(out, "}") != 0)
    {
        return qp_fail(err, &qp_ollama_errors, 500, NULL, NULL, NULL, "out of memory");
    }
    return 0;
}
