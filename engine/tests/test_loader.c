/*
 * test_loader.c - hostile and broken model files: every corruption must
 * come back as its own clear error naming the file and the field, never a
 * crash or an out-of-bounds read (make test runs this under AddressSanitizer
 * too). Starts from the generated tiny model and damages copies of it.
 */
#define _GNU_SOURCE
#include "test.h"
#include "qwen.h"
#include "gguf.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *models_dir;
static char        tmp_dir[1024];

static unsigned char *
read_all(const char *path, size_t *len)
{
    FILE          *f = fopen(path, "rb");
    unsigned char *buf;
    long           n;

    if (f == NULL) {
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t) n + 1);
    if (buf != NULL && fread(buf, 1, (size_t) n, f) != (size_t) n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = (size_t) n;
    return buf;
}

static int
write_all(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    int   ok;

    if (f == NULL) {
        return -1;
    }
    ok = fwrite(buf, 1, len, f) == len;
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* Load path; it must fail with an error containing want and the path. */
static void
expect_fail(const char *path, const char *want, const char *what)
{
    char        err[QWEN_ERR_LEN] = "";
    qwen_model *m = qwen_model_load(path, err, sizeof(err));

    CHECK(m == NULL, "%s: loaded although broken", what);
    CHECK(strstr(err, want) != NULL, "%s: error '%s' does not say '%s'", what, err, want);
    if (m != NULL) {
        qwen_model_free(m);
    }
}

static void
gguf_case(const unsigned char *orig, size_t len, const char *what, const char *want,
          void (*damage)(unsigned char *buf, size_t *len))
{
    char           path[2048];
    unsigned char *buf = malloc(len);
    size_t         n = len;

    memcpy(buf, orig, len);
    damage(buf, &n);
    snprintf(path, sizeof(path), "%s/broken.gguf", tmp_dir);
    if (write_all(path, buf, n) != 0) {
        CHECK(0, "cannot write %s", path);
    } else {
        expect_fail(path, want, what);
        expect_fail(path, path, what);   /* the message names the file */
    }
    unlink(path);
    free(buf);
}

/* Find the tensor info of name: returns the offset of its n_dims field. */
static size_t
tensor_info(const unsigned char *buf, size_t len, const char *name)
{
    size_t   nl = strlen(name), i;
    uint64_t sl;

    for (i = 8; i + nl < len; i++) {
        memcpy(&sl, buf + i - 8, 8);
        if (sl == nl && memcmp(buf + i, name, nl) == 0) {
            return i + nl;
        }
    }
    return 0;
}

static const char *g_name = "blk.0.attn_q.weight";

static void dmg_magic(unsigned char *b, size_t *n) { (void) n; b[0] = 'X'; }
static void dmg_version(unsigned char *b, size_t *n) { uint32_t v = 7; (void) n; memcpy(b + 4, &v, 4); }
static void dmg_count(unsigned char *b, size_t *n) { uint64_t v = 1ull << 40; (void) n; memcpy(b + 8, &v, 8); }
static void dmg_kv_count(unsigned char *b, size_t *n) { uint64_t v = 1ull << 50; (void) n; memcpy(b + 16, &v, 8); }
static void dmg_empty(unsigned char *b, size_t *n) { (void) b; *n = 0; }
static void dmg_short(unsigned char *b, size_t *n) { (void) b; *n = 3; }
static void dmg_truncated_data(unsigned char *b, size_t *n) { (void) b; *n -= 1000; }

static void
dmg_dim(unsigned char *b, size_t *n)
{
    size_t   at = tensor_info(b, *n, g_name);
    uint64_t v = 1ull << 50;

    memcpy(b + at + 4, &v, 8);
}

static void
dmg_ndims(unsigned char *b, size_t *n)
{
    uint32_t v = 9;

    memcpy(b + tensor_info(b, *n, g_name), &v, 4);
}

static void
dmg_type(unsigned char *b, size_t *n)
{
    size_t   at = tensor_info(b, *n, g_name);
    uint32_t dims, t = 2;    /* Q4_0: a real GGML type we do not load */

    memcpy(&dims, b + at, 4);
    memcpy(b + at + 4 + 8 * dims, &t, 4);
}

static void
dmg_offset(unsigned char *b, size_t *n)
{
    size_t   at = tensor_info(b, *n, g_name);
    uint32_t dims;
    uint64_t off = 1ull << 40;

    memcpy(&dims, b + at, 4);
    memcpy(b + at + 8 + 8 * dims, &off, 8);
}

static void
dmg_misaligned(unsigned char *b, size_t *n)
{
    size_t   at = tensor_info(b, *n, g_name);
    uint32_t dims;
    uint64_t off;

    memcpy(&dims, b + at, 4);
    memcpy(&off, b + at + 8 + 8 * dims, 8);
    off += 4;
    memcpy(b + at + 8 + 8 * dims, &off, 8);
}

static void
dmg_shape(unsigned char *b, size_t *n)
{
    size_t   at = tensor_info(b, *n, g_name);
    uint64_t rows;

    memcpy(&rows, b + at + 12, 8);
    rows /= 2;
    memcpy(b + at + 12, &rows, 8);
}

static void
dmg_missing(unsigned char *b, size_t *n)
{
    size_t at = tensor_info(b, *n, "blk.1.ffn_up.weight");

    memcpy(b + at - 9, "XX", 2);    /* "blk.1.ffn_XX.weight" */
}

static void
dmg_arch(unsigned char *b, size_t *n)
{
    size_t at = tensor_info(b, *n, "general.architecture");

    /* value: u32 type, u64 length, then the string */
    memcpy(b + at + 12, "llama", 5);
}

static void
test_gguf_damage(void)
{
    char           path[2048];
    unsigned char *orig;
    size_t         len;

    snprintf(path, sizeof(path), "%s/tiny-f32.gguf", models_dir);
    orig = read_all(path, &len);
    if (orig == NULL) {
        CHECK(0, "cannot read %s", path);
        return;
    }
    CHECK(tensor_info(orig, len, g_name) != 0, "tensor %s not found in the file", g_name);
    gguf_case(orig, len, "wrong magic", "wrong magic", dmg_magic);
    gguf_case(orig, len, "version 7", "unsupported GGUF version 7", dmg_version);
    gguf_case(orig, len, "2^40 tensors", "absurd counts", dmg_count);
    gguf_case(orig, len, "2^50 keys", "absurd counts", dmg_kv_count);
    gguf_case(orig, len, "empty file", "empty", dmg_empty);
    gguf_case(orig, len, "3-byte file", "wrong magic", dmg_short);
    gguf_case(orig, len, "data cut short", "runs past the end", dmg_truncated_data);
    gguf_case(orig, len, "absurd dimension", "absurd dimension", dmg_dim);
    gguf_case(orig, len, "9 dimensions", "9 dimensions", dmg_ndims);
    gguf_case(orig, len, "Q4_0 tensor", "unsupported type 2 (Q4_0)", dmg_type);
    gguf_case(orig, len, "offset past the end", "runs past the end", dmg_offset);
    gguf_case(orig, len, "misaligned offset", "not aligned", dmg_misaligned);
    gguf_case(orig, len, "wrong shape", "blk.0.attn_q.weight has shape", dmg_shape);
    gguf_case(orig, len, "missing tensor", "missing tensor blk.1.ffn_up.weight", dmg_missing);
    gguf_case(orig, len, "llama architecture", "architecture is not \"qwen3\"", dmg_arch);
    free(orig);
}

/* Every prefix of the header must parse to an error, never read past it:
 * each prefix gets its own exact-size allocation so ASan sees overruns. */
static void
test_gguf_truncation_sweep(void)
{
    char           path[2048], err[QWEN_ERR_LEN];
    unsigned char *orig, *copy;
    size_t         len, cut, step, hdr, failures = 0, tried = 0;
    gguf_file      f;

    snprintf(path, sizeof(path), "%s/tiny-f32.gguf", models_dir);
    orig = read_all(path, &len);
    if (orig == NULL) {
        CHECK(0, "cannot read %s", path);
        return;
    }
    if (qwen_gguf_parse(&f, path, orig, len, err, sizeof(err)) != 0) {
        CHECK(0, "the intact file must parse: %s", err);
        free(orig);
        return;
    }
    hdr = f.data_offset;
    qwen_gguf_release(&f);
    step = hdr / 400 + 1;
    for (cut = 0; cut < hdr; cut += (cut < 256 ? 1 : step)) {
        copy = malloc(cut ? cut : 1);
        memcpy(copy, orig, cut);
        tried++;
        if (qwen_gguf_parse(&f, path, copy, cut, err, sizeof(err)) == 0) {
            failures++;
            qwen_gguf_release(&f);
        }
        free(copy);
    }
    CHECK(failures == 0, "%zu of %zu header prefixes parsed as valid", failures, tried);
    free(orig);
}

/* -------------------------------------------------------- Hugging Face */

static void
hf_dir_with(const char *config, const unsigned char *st, size_t st_len, char *dir)
{
    char path[4096];

    snprintf(dir, 2048, "%s/hf", tmp_dir);
    mkdir(dir, 0700);
    snprintf(path, sizeof(path), "%s/config.json", dir);
    if (config != NULL) {
        CHECK(write_all(path, config, strlen(config)) == 0, "write config");
    } else {
        unlink(path);
    }
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    if (st != NULL) {
        CHECK(write_all(path, st, st_len) == 0, "write safetensors");
    } else {
        unlink(path);
    }
}

static void
hf_cleanup(const char *dir)
{
    char path[4096];

    snprintf(path, sizeof(path), "%s/config.json", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/model.safetensors.index.json", dir);
    unlink(path);
    rmdir(dir);
}

static char *
replace_once(const char *s, const char *from, const char *to)
{
    const char *at = strstr(s, from);
    char       *out;

    if (at == NULL) {
        return NULL;
    }
    out = malloc(strlen(s) + strlen(to) + 1);
    memcpy(out, s, (size_t) (at - s));
    strcpy(out + (at - s), to);
    strcat(out, at + strlen(from));
    return out;
}

static void
test_hf_damage(void)
{
    char           src[2048], path[4096], dir[2048], *cfg, *bad;
    unsigned char *st, *copy;
    size_t         cfg_len, st_len;
    uint64_t       hlen;
    char          *hdr, *p;

    snprintf(src, sizeof(src), "%s/tiny-f32-hf", models_dir);
    snprintf(path, sizeof(path), "%s/config.json", src);
    cfg = (char *) read_all(path, &cfg_len);
    snprintf(path, sizeof(path), "%s/model.safetensors", src);
    st = read_all(path, &st_len);
    if (cfg == NULL || st == NULL) {
        CHECK(0, "cannot read %s", src);
        free(cfg);
        free(st);
        return;
    }
    cfg[cfg_len] = '\0';

    hf_dir_with(NULL, st, st_len, dir);
    expect_fail(dir, "config.json", "missing config.json");
    hf_dir_with("{\"model_type\": \"qwen3\",", st, st_len, dir);
    expect_fail(dir, "config.json", "truncated config.json");

    bad = replace_once(cfg, "\"hidden_size\"", "\"hidden_sizeX\"");
    hf_dir_with(bad, st, st_len, dir);
    expect_fail(dir, "missing field \"hidden_size\"", "config without hidden_size");
    free(bad);
    bad = replace_once(cfg, "\"num_hidden_layers\": 2", "\"num_hidden_layers\": \"2\"");
    if (bad == NULL) bad = replace_once(cfg, "\"num_hidden_layers\":2", "\"num_hidden_layers\":\"2\"");
    CHECK(bad != NULL, "config.json has no num_hidden_layers 2");
    if (bad) {
        hf_dir_with(bad, st, st_len, dir);
        expect_fail(dir, "\"num_hidden_layers\" must be", "layers as a string");
        free(bad);
    }
    bad = replace_once(cfg, "\"qwen3\"", "\"llama\"");
    if (bad) {
        char *bad2 = replace_once(bad, "Qwen3ForCausalLM", "LlamaForCausalLM");
        hf_dir_with(bad2 ? bad2 : bad, st, st_len, dir);
        expect_fail(dir, "not a Qwen3 model", "llama config");
        free(bad2);
        free(bad);
    }
    bad = replace_once(cfg, "\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3");
    if (bad == NULL) bad = replace_once(cfg, "\"num_hidden_layers\":2", "\"num_hidden_layers\":3");
    if (bad) {
        hf_dir_with(bad, st, st_len, dir);
        expect_fail(dir, "missing tensor model.layers.2.", "config with more layers than tensors");
        free(bad);
    }

    /* safetensors damage */
    hf_dir_with(cfg, NULL, 0, dir);
    expect_fail(dir, "no model.safetensors", "no weights file");

    copy = malloc(st_len);
    memcpy(&hlen, st, 8);
    hdr = (char *) copy + 8;

    memcpy(copy, st, st_len);
    hlen = 1ull << 40;
    memcpy(copy, &hlen, 8);
    hf_dir_with(cfg, copy, st_len, dir);
    expect_fail(dir, "header length", "huge header length");

    memcpy(copy, st, st_len);
    copy[8] = '[';
    hf_dir_with(cfg, copy, st_len, dir);
    expect_fail(dir, "not valid JSON", "broken header JSON");

    memcpy(copy, st, st_len);
    hf_dir_with(cfg, copy, st_len - 4096, dir);
    expect_fail(dir, "runs past the end", "truncated safetensors");

    memcpy(copy, st, st_len);
    memcpy(&hlen, st, 8);
    p = memmem(hdr, hlen, "\"F32\"", 5);
    CHECK(p != NULL, "no F32 dtype in header");
    if (p) {
        memcpy(p, "\"I32\"", 5);
        hf_dir_with(cfg, copy, st_len, dir);
        expect_fail(dir, "unsupported dtype I32", "I32 dtype");
    }

    memcpy(copy, st, st_len);
    p = memmem(hdr, hlen, "model.layers.1.mlp.up_proj.weight", 33);
    CHECK(p != NULL, "no up_proj in header");
    if (p) {
        memcpy(p + 19, "XX", 2);  /* "model.layers.1.mlp.XX_proj.weight" */
        hf_dir_with(cfg, copy, st_len, dir);
        expect_fail(dir, "missing tensor model.layers.1.mlp.up_proj.weight", "missing tensor");
    }

    /* a shard index pointing outside the directory */
    hf_dir_with(cfg, NULL, 0, dir);
    snprintf(path, sizeof(path), "%s/model.safetensors.index.json", dir);
    {
        const char *idx = "{\"metadata\":{},\"weight_map\":{\"model.norm.weight\":"
                          "\"../../etc/passwd\"}}";
        CHECK(write_all(path, idx, strlen(idx)) == 0, "write index");
    }
    expect_fail(dir, "not a plain file name", "index escaping the directory");

    hf_cleanup(dir);
    free(copy);
    free(cfg);
    free(st);
}

static void
test_good_loads(void)
{
    static const char *names[] = {
        "tiny-f32.gguf", "tiny-f32-hf", "tiny-f32-hf-sharded", "tiny-bf16.gguf",
        "tiny-bf16-hf", "tiny-q8_0.gguf", "tiny-q4_k_m.gguf"
    };
    char        path[2048], err[QWEN_ERR_LEN];
    qwen_model *m;
    size_t      i;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", models_dir, names[i]);
        if ((m = qwen_model_load(path, err, sizeof(err))) == NULL) {
            CHECK(0, "%s: %s", names[i], err);
            continue;
        }
        CHECK(qwen_model_config(m)->n_layers == 2 && qwen_model_config(m)->head_dim == 32
              && qwen_model_config(m)->hidden_size == 64
              && qwen_model_config(m)->vocab_size == 151936,
              "%s: wrong config", names[i]);
        CHECK(qwen_model_tokenizer(m) != NULL, "%s: no tokenizer loaded", names[i]);
        qwen_model_free(m);
    }
    snprintf(path, sizeof(path), "%s/no-such-model.gguf", models_dir);
    expect_fail(path, "No such file", "missing file");
}

int
main(void)
{
    const char *t = getenv("TMPDIR");

    models_dir = test_models_dir();
    if (models_dir == NULL) {
        TEST_MAIN_END();
    }
    snprintf(tmp_dir, sizeof(tmp_dir), "%s/qwen-loader-XXXXXX", t ? t : "/tmp");
    if (mkdtemp(tmp_dir) == NULL) {
        CHECK(0, "mkdtemp failed");
        TEST_MAIN_END();
    }
    test_good_loads();
    test_gguf_damage();
    test_gguf_truncation_sweep();
    test_hf_damage();
    rmdir(tmp_dir);
    TEST_MAIN_END();
}
