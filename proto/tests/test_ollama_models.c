/*
 * test_ollama_models.c - the Ollama listing endpoints for the served model:
 * qp_model_info from the tiny test model (and the other test models: a
 * quantized GGUF, a Hugging Face directory), GET /api/tags, GET /api/ps,
 * POST /api/show, GET /api/version, the 501 for model management, and the
 * listed names being accepted in requests.
 */
#include <sys/stat.h>

#include "proto_test.h"

#define MSG "\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]"

static void
check_details(int line, const json_t *d, const qp_model_info *info)
{
    CHECK(streq(jstr(d, "format"), info->format) && streq(jstr(d, "family"), "qwen3")
          && streq(jstr(d, "families.0"), "qwen3")
          && streq(jstr(d, "quantization_level"), info->quantization)
          && jstr(d, "parameter_size") != NULL, "line %d: details", line);
}

static void
test_listings(void)
{
    qp_model_info      info;
    qp_buf             out = { 0 };
    qp_error           err;
    json_t            *o, *m;
    char               path[4200];
    struct stat        st;
    const char        *digest, *dir = test_models_dir();
    size_t             i;
    uint64_t           want_params;
    const qwen_config *c;

    snprintf(path, sizeof(path), "%s/tiny-f32.gguf", dir);
    CHECK(qp_model_info_from_model(model, path, &info) == 0, "model info");
    CHECK(stat(path, &st) == 0 && info.size_bytes == (uint64_t) st.st_size
          && info.modified == st.st_mtime, "size and mtime from the file");
    CHECK(streq(info.format, "gguf") && streq(info.quantization, "F32"),
          "format %s quantization %s", info.format, info.quantization);
    c = qwen_model_config(model);
    want_params = (uint64_t) c->vocab_size * c->hidden_size * (c->tie_word_embeddings ? 1 : 2)
                  + (uint64_t) c->n_layers * ((uint64_t) c->hidden_size * c->n_heads * c->head_dim * 2
                                              + (uint64_t) c->hidden_size * c->n_kv_heads * c->head_dim * 2
                                              + 2ull * c->head_dim
                                              + 3ull * c->hidden_size * c->intermediate_size
                                              + 2ull * c->hidden_size)
                  + c->hidden_size;
    CHECK(info.n_params == want_params, "n_params %llu", (unsigned long long) info.n_params);
    for (i = 0; i < 64 && isxdigit((unsigned char) info.digest[i]); i++) {
    }
    CHECK(i == 64 && info.digest[64] == '\0', "digest is 64 hex digits: %s", info.digest);
    {
        qp_model_info again;

        qp_model_info_from_model(model, path, &again);
        CHECK(streq(again.digest, info.digest), "digest is stable");
    }

    /* tags */
    CHECK(qp_ollama_tags(&cfg, &info, &out) == 0, "tags");
    o = load(out.data, out.len);
    m = jget(o, "models.0");
    CHECK(json_array_size(jget(o, "models")) == 1, "one model");
    CHECK(streq(jstr(m, "name"), "qwen3:0.6b") && streq(jstr(m, "model"), "qwen3:0.6b"),
          "listed name %s", jstr(m, "name"));
    CHECK(jint(m, "size") == (long long) info.size_bytes, "size");
    digest = jstr(m, "digest");
    CHECK(streq(digest, info.digest), "digest");
    CHECK(is_rfc3339_utc(jstr(m, "modified_at")), "modified_at %s", jstr(m, "modified_at"));
    check_details(__LINE__, jget(m, "details"), &info);
    json_decref(o);
    qp_buf_reset(&out);

    /* the listed names are accepted in requests */
    cfg.model_name = "mine";
    CHECK(qp_ollama_model_name(&cfg, &out) == 0 && streq(out.data, "mine:latest"), "mine:latest");
    qp_buf_reset(&out);
    {
        qp_request *req = parse(OCHAT, "{\"model\":\"mine:latest\"," MSG "}", &err);

        CHECK(req != NULL, "listed name accepted");
        qp_request_free(req);
    }
    cfg.model_name = "qwen3:0.6b-q4";
    CHECK(qp_ollama_model_name(&cfg, &out) == 0 && streq(out.data, "qwen3:0.6b-q4"), "tagged name");
    qp_buf_reset(&out);
    cfg.model_name = "qwen3";

    /* ps */
    info.kv_cache_bytes = 1000;
    CHECK(qp_ollama_ps(&cfg, &info, &out) == 0, "ps");
    o = load(out.data, out.len);
    m = jget(o, "models.0");
    CHECK(streq(jstr(m, "name"), "qwen3:0.6b") && jint(m, "size") == (long long) info.size_bytes + 1000
          && jint(m, "size_vram") == 0 && streq(jstr(m, "digest"), info.digest)
          && jint(m, "context_length") == cfg.n_ctx, "ps entry");
    CHECK(streq(jstr(m, "expires_at"), "9999-12-31T23:59:59Z"), "far future");
    check_details(__LINE__, jget(m, "details"), &info);
    json_decref(o);
    qp_buf_reset(&out);

    /* show */
    CHECK(qp_ollama_show(&cfg, &info, "{\"model\":\"qwen3:0.6b\"}", 22, &out, &err) == 0, "show");
    o = load(out.data, out.len);
    CHECK(jstr(o, "modelfile") != NULL && strstr(jstr(o, "modelfile"), "FROM ") != NULL
          && strstr(jstr(o, "modelfile"), "PARAMETER temperature") != NULL, "modelfile");
    CHECK(jstr(o, "parameters") != NULL && strstr(jstr(o, "parameters"), "num_ctx") != NULL,
          "parameters");
    CHECK(jstr(o, "template") != NULL && strstr(jstr(o, "template"), "<|im_start|>") != NULL,
          "template");
    check_details(__LINE__, jget(o, "details"), &info);
    m = jget(o, "model_info");
    CHECK(streq(json_string_value(json_object_get(m, "general.architecture")), "qwen3"),
          "architecture");
    CHECK(json_integer_value(json_object_get(m, "qwen3.context_length")) == c->max_position_embeddings
          && json_integer_value(json_object_get(m, "qwen3.embedding_length")) == c->hidden_size
          && json_integer_value(json_object_get(m, "qwen3.block_count")) == c->n_layers
          && json_integer_value(json_object_get(m, "qwen3.attention.head_count_kv")) == c->n_kv_heads
          && json_integer_value(json_object_get(m, "general.parameter_count"))
             == (json_int_t) info.n_params, "model_info numbers");
    CHECK(json_is_number(json_object_get(m, "qwen3.rope.freq_base")), "rope base");
    CHECK(streq(jstr(o, "capabilities.0"), "completion") && streq(jstr(o, "capabilities.1"), "tools")
          && streq(jstr(o, "capabilities.2"), "thinking"), "capabilities");
    json_decref(o);
    qp_buf_reset(&out);
    CHECK(qp_ollama_show(&cfg, &info, "{\"name\":\"qwen3\"}", 16, &out, &err) == 0, "show by name");
    qp_buf_reset(&out);
    CHECK(qp_ollama_show(&cfg, &info, "{\"model\":\"llama3\"}", 18, &out, &err) != 0
          && err.status == 404 && streq(err.body, "{\"error\":\"model 'llama3' not found\"}"),
          "show 404: %s", err.body);
    CHECK(qp_ollama_show(&cfg, &info, "{", 1, &out, &err) != 0 && err.status == 400
          && strstr(err.body, "\"error\":\"") != NULL, "show bad JSON %s", err.body);
    CHECK(qp_ollama_show(&cfg, &info, "{\"model\":1}", 11, &out, &err) != 0 && err.status == 400,
          "show model type");

    /* version, unsupported */
    CHECK(qp_ollama_version(&out) == 0, "version");
    o = load(out.data, out.len);
    CHECK(streq(jstr(o, "version"), QP_OLLAMA_VERSION), "version string");
    json_decref(o);
    qp_ollama_unsupported(&err);
    o = load(err.body, strlen(err.body));
    CHECK(err.status == 501 && strstr(jstr(o, "error"), "model management is not supported") != NULL
          && strstr(jstr(o, "error"), "qwen_model") != NULL, "501 body %s", err.body);
    json_decref(o);
    CHECK(streq(QP_OLLAMA_ROOT_TEXT, "Ollama is running"), "root text");
    qp_buf_free(&out);

    /* other files: quantized GGUF, Hugging Face directory */
    {
        static const struct {
            const char *file, *format, *quant;
        } other[] = {
            { "small-q4_k_m.gguf", "gguf", "Q4_K_M" },
            { "tiny-bf16-hf", "safetensors", "BF16" },
            { "tiny-q8_0.gguf", "gguf", "Q8_0" },
            { "full-q4_k_m.gguf", "gguf", "Q4_K_M" },   /* optional: make bench-models */
        };
        for (i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
            qwen_model *mm;

            snprintf(path, sizeof(path), "%s/%s", dir, other[i].file);
            if ((i == 3 && stat(path, &st) != 0) || (mm = test_load_model(other[i].file)) == NULL) {
                continue;
            }
            CHECK(qp_model_info_from_model(mm, path, &info) == 0, "info %s", other[i].file);
            CHECK(streq(info.format, other[i].format) && streq(info.quantization, other[i].quant),
                  "%s: format %s quantization %s (%s)", other[i].file, info.format,
                  info.quantization, info.weights);
            CHECK(info.size_bytes > 0, "%s: size", other[i].file);
            if (i == 3) {
                qp_buf po = { 0 };
                json_t *pj;

                /* Qwen3-0.6B's shapes: 596,049,920 parameters */
                CHECK(info.n_params == 596049920ull, "Qwen3-0.6B parameters %llu",
                      (unsigned long long) info.n_params);
                qp_ollama_tags(&cfg, &info, &po);
                pj = load(po.data, po.len);
                CHECK(streq(jstr(pj, "models.0.details.parameter_size"), "596.05M"),
                      "parameter_size %s", jstr(pj, "models.0.details.parameter_size"));
                json_decref(pj);
                qp_buf_free(&po);
            }
            qwen_model_free(mm);
        }
    }
    CHECK(qp_model_info_from_model(model, "/nonexistent/x.gguf", &info) == -1
          && info.size_bytes == qwen_model_weight_bytes(model), "missing path: weights size");
}

int
main(void)
{
    if (test_model_load() == 0) {
        test_listings();
        test_model_free();
    }
    TEST_MAIN_END();
}
