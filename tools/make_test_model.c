/*
 * make_test_model.c - writes deterministic random-weight Qwen3 models as a
 * GGUF v3 file and/or a Hugging Face directory (config.json, safetensors,
 * optional shards, tokenizer files). Both outputs of one run hold the same
 * values, rounded to their types; tensors are generated, written and freed
 * one chunk of rows at a time, so the full 0.6B shape needs little memory.
 */
#include "quant.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PROG "make_test_model"
#define GGUF_ALIGNMENT 32
#define CHUNK_VALUES (1 << 20)      /* values generated per write */
#define DEFAULT_SEED 20250501ull
#define MAX_SHARDS 99

#define TOKEN_ID_BOS 151643         /* <|endoftext|> */
#define TOKEN_ID_EOS 151645         /* <|im_end|> */
#define TOKEN_ID_PAD 151643

/*
 * Weight scales. A random-weight model is useful for tests only if it is not
 * degenerate: different prompts must give different greedy outputs, and the
 * top token should usually beat the runner-up clearly, so that small
 * numerical differences between kernels do not flip the argmax.
 *
 * - Every block input is RMS-normalised, so with projections ~ N(0, 1/in)
 *   (gain 1) each q/k/v/gate/up output has unit variance, and each attention
 *   and MLP block adds O(1) RMS per element to the residual stream.
 * - With tied embeddings the logit of the last input token t is
 *   e_t . norm(x), x = e_t + (what the blocks added). If e_t dominated x, that
 *   logit would stand ~sqrt(hidden) standard deviations above the others and
 *   the model would echo its input (greedy output stuck on one token).
 *   Embeddings are therefore small (EMBED_STD) next to what the blocks add
 *   (RMS ~1-2 after two layers, ~5 after 28), keeping the echo logit near or
 *   below 1 sigma. Measured on the tiny shape (7 prompts x 16 greedy tokens):
 *   EMBED_STD 0.5 gave 78 immediate repeats, 0.25 gave 29, 0.1 gave 3.
 * - output_norm's weight sets the logit scale: logits = E (w * x / rms(x))
 *   have std EMBED_STD * w * sqrt(hidden); w is chosen for a std of
 *   LOGIT_STD. The maximum of 151936 such logits is ~4.5 sigma and leads the
 *   runner-up by ~sigma / sqrt(2 ln V) ~ 2 nats on average. Measured on the
 *   tiny shape: mean top probability 0.69, and 71% of steps have a top
 *   probability > 0.3 and > 2x the runner-up.
 * - q_norm and k_norm ~ QK_NORM_MEAN: q and k are RMS-normalised per head, so
 *   q.k / sqrt(head_dim) has std ~ QK_NORM_MEAN^2 ~ 3: attention is focused
 *   but not one-hot, and depends on the context.
 * - input/post-attention norms 1 +- NORM_NOISE (relative), not all-ones, so a
 *   loader that skipped them would be caught.
 */
#define EMBED_STD     0.1
#define PROJ_GAIN     1.0
#define LOGIT_STD     10.0
#define QK_NORM_MEAN  1.7
#define NORM_NOISE    0.1

/* ------------------------------------------------------------ errors */

static int fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, PROG ": ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return -1;
}

static void *xmalloc(size_t n, const char *what)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        fail("out of memory allocating %zu bytes for %s", n, what);
    return p;
}

/* snprintf that treats truncation as an error. */
static int fmt_path(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= len)
        return fail("path too long: %s...", buf);
    return 0;
}

/* ------------------------------------------------------------ shapes */

typedef struct {
    const char *name;
    int n_layers, hidden, inter, n_heads, n_kv_heads, head_dim, vocab, max_pos;
    double rope_theta, rms_eps;
} shape;

static const shape SHAPES[] = {
    /* head_dim deliberately != hidden / heads, as in the real model. */
    { "tiny",  2,   64,  192,  4, 2,  32, 151936, 40960, 1e6, 1e-6 },
    /* Smallest shape whose rows are whole 256-value K-quant blocks, so a
     * q4_k_m file really holds Q4_K and Q6_K tensors. */
    { "small", 2,  256,  768,  4, 2, 128, 151936, 40960, 1e6, 1e-6 },
    /* A few KB without a tokenizer: seeds for the loader fuzzers (tests/fuzz). */
    { "micro", 1,   32,   32,  2, 1,  16,    288,    64, 1e6, 1e-6 },
    /* Qwen3-0.6B. */
    { "full", 28, 1024, 3072, 16, 8, 128, 151936, 40960, 1e6, 1e-6 },
};

/* ------------------------------------------------------ output types */

typedef struct {
    const char *name;
    int tensor_type;   /* for 2-D weights (q4_k_m: the base type) */
    int file_type;     /* llama.cpp's general.file_type */
    int mixed;         /* q4_k_m mix */
} gguf_kind;

static const gguf_kind GGUF_KINDS[] = {
    { "f32",    QWEN_TYPE_F32,  0,  0 },
    { "f16",    QWEN_TYPE_F16,  1,  0 },
    { "bf16",   QWEN_TYPE_BF16, 32, 0 },
    { "q8_0",   QWEN_TYPE_Q8_0, 7,  0 },
    { "q4_k_m", QWEN_TYPE_Q4_K, 15, 1 },
};

typedef struct {
    const char *name, *st_name, *torch_name;
    int type;
} hf_dtype;

static const hf_dtype HF_DTYPES[] = {
    { "f32",  "F32",  "float32",  QWEN_TYPE_F32 },
    { "f16",  "F16",  "float16",  QWEN_TYPE_F16 },
    { "bf16", "BF16", "bfloat16", QWEN_TYPE_BF16 },
};

/* ------------------------------------------------------------ tensors */

enum init_kind { INIT_NORMAL, INIT_NEAR };

typedef struct {
    char hf_name[96];
    char gguf_name[64];
    int layer;              /* -1 for global tensors */
    int64_t ne0, ne1;       /* ne0 contiguous (input features); ne1 rows */
    int n_dims;
    enum init_kind init;
    double mean, std;       /* INIT_NEAR: mean * (1 + std * N(0,1)) */
    int gguf_type;
    int roundtrip_type;     /* --dequantized: quantize to this and back */
    uint64_t gguf_offset, gguf_bytes;
    int shard;
    uint64_t hf_offset, hf_bytes;
} tensor;

/* llama.cpp's rule for which layers of a *_M mix get more bits. */
static int use_more_bits(int i, int n)
{
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

/* GGUF type of a 2-D weight under the chosen kind. */
static int gguf_matrix_type(const gguf_kind *k, const tensor *t, int n_layers,
                            int *fell_back)
{
    int type = k->tensor_type;
    if (k->mixed) {
        /* As llama.cpp's Q4_K_M: the (tied) output embedding and, in the
         * "more bits" layers, attn_v and ffn_down are Q6_K. */
        if (strcmp(t->gguf_name, "token_embd.weight") == 0)
            type = QWEN_TYPE_Q6_K;
        else if ((strstr(t->gguf_name, ".attn_v.") || strstr(t->gguf_name, ".ffn_down."))
                 && use_more_bits(t->layer, n_layers))
            type = QWEN_TYPE_Q6_K;
    }
    if (t->ne0 % qwen_type_block_size(type) != 0) {
        /* Rows shorter than a K-quant block: llama.cpp falls back to a
         * 32-block type (Q5_0 for Q4_K, Q8_0 for Q6_K); Q5_0 is not a type
         * this engine supports, so both become Q8_0. */
        type = QWEN_TYPE_Q8_0;
        *fell_back = 1;
    }
    return type;
}

typedef struct {
    tensor *t;
    int n;
} plan;

static int plan_add(plan *p, int cap, const char *hf, const char *gg, int layer,
                    int64_t rows, int64_t cols, enum init_kind init,
                    double mean, double std)
{
    if (p->n >= cap)
        return fail("internal: tensor plan overflow");
    tensor *t = &p->t[p->n++];
    memset(t, 0, sizeof *t);
    if (layer >= 0) {
        snprintf(t->hf_name, sizeof t->hf_name, "model.layers.%d.%s", layer, hf);
        snprintf(t->gguf_name, sizeof t->gguf_name, "blk.%d.%s", layer, gg);
    } else {
        snprintf(t->hf_name, sizeof t->hf_name, "%s", hf);
        snprintf(t->gguf_name, sizeof t->gguf_name, "%s", gg);
    }
    t->layer = layer;
    t->n_dims = rows > 0 ? 2 : 1;
    t->ne0 = cols;
    t->ne1 = rows > 0 ? rows : 1;
    t->init = init;
    t->mean = mean;
    t->std = std;
    return 0;
}

/* Every tensor of the model, in the order written. */
static int make_plan(const shape *s, plan *p)
{
    int cap = 2 + 11 * s->n_layers;
    p->t = xmalloc((size_t)cap * sizeof *p->t, "tensor plan");
    p->n = 0;
    if (!p->t)
        return -1;
    int64_t q_dim = (int64_t)s->n_heads * s->head_dim;
    int64_t kv_dim = (int64_t)s->n_kv_heads * s->head_dim;
    double out_norm = LOGIT_STD / (EMBED_STD * sqrt((double)s->hidden));
    int rc = 0;

#define MATRIX(hf, gg, layer, rows, cols) \
    rc |= plan_add(p, cap, hf, gg, layer, rows, cols, INIT_NORMAL, 0.0, \
                   PROJ_GAIN / sqrt((double)(cols)))
#define VECTOR(hf, gg, layer, len, mean) \
    rc |= plan_add(p, cap, hf, gg, layer, 0, len, INIT_NEAR, mean, NORM_NOISE)

    rc |= plan_add(p, cap, "model.embed_tokens.weight", "token_embd.weight", -1,
                   s->vocab, s->hidden, INIT_NORMAL, 0.0, EMBED_STD);
    for (int i = 0; i < s->n_layers; i++) {
        VECTOR("input_layernorm.weight", "attn_norm.weight", i, s->hidden, 1.0);
        MATRIX("self_attn.q_proj.weight", "attn_q.weight", i, q_dim, s->hidden);
        MATRIX("self_attn.k_proj.weight", "attn_k.weight", i, kv_dim, s->hidden);
        MATRIX("self_attn.v_proj.weight", "attn_v.weight", i, kv_dim, s->hidden);
        MATRIX("self_attn.o_proj.weight", "attn_output.weight", i, s->hidden, q_dim);
        VECTOR("self_attn.q_norm.weight", "attn_q_norm.weight", i, s->head_dim, QK_NORM_MEAN);
        VECTOR("self_attn.k_norm.weight", "attn_k_norm.weight", i, s->head_dim, QK_NORM_MEAN);
        VECTOR("post_attention_layernorm.weight", "ffn_norm.weight", i, s->hidden, 1.0);
        MATRIX("mlp.gate_proj.weight", "ffn_gate.weight", i, s->inter, s->hidden);
        MATRIX("mlp.up_proj.weight", "ffn_up.weight", i, s->inter, s->hidden);
        MATRIX("mlp.down_proj.weight", "ffn_down.weight", i, s->hidden, s->inter);
    }
    VECTOR("model.norm.weight", "output_norm.weight", -1, s->hidden, out_norm);
#undef MATRIX
#undef VECTOR
    return rc ? -1 : 0;
}

/* ---------------------------------------------------------- generator */

/* splitmix64: tiny state, good statistics, identical on every machine. */
static inline uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Each tensor's stream is seeded from its name, so a tensor's values do not
 * depend on the shape of the rest of the model or on the write order. */
static uint64_t tensor_seed(uint64_t seed, const char *name)
{
    uint64_t h = 0xcbf29ce484222325ull;                  /* FNV-1a */
    for (const unsigned char *c = (const unsigned char *)name; *c; c++)
        h = (h ^ *c) * 0x100000001b3ull;
    uint64_t s = seed ^ h;
    return splitmix64(&s);
}

/* Sum of four 16-bit uniforms from one draw, centred and doubled so it is an
 * integer: mean 0, std NORMAL_INT_STD, range +-3.46 std. Close enough to a
 * Gaussian for weights, and fast (one 64-bit draw per value). */
#define NORMAL_INT_STD (4.0 * sqrt((65536.0 * 65536.0 - 1.0) / 12.0))

static inline int32_t normal_int(uint64_t *state)
{
    uint64_t r = splitmix64(state);
    int32_t sum = (int32_t)(r & 0xffff) + (int32_t)((r >> 16) & 0xffff)
                + (int32_t)((r >> 32) & 0xffff) + (int32_t)(r >> 48);
    return 2 * sum - 4 * 65535;
}

typedef struct {
    uint64_t state;
    float step;        /* value = (float)(k + offset) * step */
    int32_t offset;
    int round_bf16;
} value_gen;

/*
 * Every value is one integer times one float constant: a single rounding,
 * so no compiler contraction (FMA) or libm difference can change a bit
 * between machines. Vector weights (norms) are rounded to bfloat16's grid,
 * so an F32 norm in a bf16 GGUF equals the BF16 norm in the bf16 HF dir.
 */
static void gen_init(value_gen *g, const tensor *t, uint64_t seed)
{
    g->state = tensor_seed(seed, t->hf_name);
    if (t->init == INIT_NORMAL) {
        g->step = (float)(t->std / NORMAL_INT_STD);
        g->offset = 0;
        g->round_bf16 = 0;
    } else {
        g->step = (float)(t->mean * t->std / NORMAL_INT_STD);
        g->offset = (int32_t)lround(1.0 / t->std * NORMAL_INT_STD);
        g->round_bf16 = 1;
    }
}

static void gen_values(value_gen *g, float *out, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        float v = (float)(normal_int(&g->state) + g->offset) * g->step;
        out[i] = g->round_bf16 ? qwen_bf16_to_f32(qwen_f32_to_bf16(v)) : v;
    }
}

/* ------------------------------------------------------ output files */

/* A file written under a temporary name and renamed once complete, so an
 * interrupted run never leaves a plausible-looking truncated model. */
typedef struct {
    FILE *f;
    char path[PATH_MAX];
    char tmp[PATH_MAX];
    uint64_t pos;
} ofile;

static int of_open(ofile *o, const char *path)
{
    memset(o, 0, sizeof *o);
    if (fmt_path(o->path, sizeof o->path, "%s", path) != 0
        || fmt_path(o->tmp, sizeof o->tmp, "%s.tmp", path) != 0)
        return -1;
    o->f = fopen(o->tmp, "wb");
    if (!o->f)
        return fail("%s: cannot create: %s", o->tmp, strerror(errno));
    return 0;
}

static int of_write(ofile *o, const void *p, size_t n)
{
    if (n && fwrite(p, 1, n, o->f) != n)
        return fail("%s: write failed at offset %llu: %s", o->tmp,
                    (unsigned long long)o->pos, strerror(errno));
    o->pos += n;
    return 0;
}

static int of_pad(ofile *o, uint64_t align, char fill)
{
    static const char zeros[64];
    char spaces[64];
    memset(spaces, ' ', sizeof spaces);
    uint64_t n = (align - o->pos % align) % align;
    return of_write(o, fill == ' ' ? spaces : zeros, (size_t)n);
}

/* Close, check the size the plan promised, and move into place. */
static int of_finish(ofile *o, uint64_t expect_size)
{
    FILE *f = o->f;
    o->f = NULL;
    if (fclose(f) != 0) {
        fail("%s: close failed: %s", o->tmp, strerror(errno));
        unlink(o->tmp);
        return -1;
    }
    if (o->pos != expect_size) {
        fail("%s: internal: wrote %llu bytes, planned %llu", o->tmp,
             (unsigned long long)o->pos, (unsigned long long)expect_size);
        unlink(o->tmp);
        return -1;
    }
    if (rename(o->tmp, o->path) != 0) {
        fail("%s: cannot rename to %s: %s", o->tmp, o->path, strerror(errno));
        unlink(o->tmp);
        return -1;
    }
    return 0;
}

static void of_abort(ofile *o)
{
    if (o->f) {
        fclose(o->f);
        o->f = NULL;
        unlink(o->tmp);
    }
}

static int write_text_file(const char *path, const char *text)
{
    ofile o;
    if (of_open(&o, path) != 0)
        return -1;
    size_t n = strlen(text);
    if (of_write(&o, text, n) != 0) {
        of_abort(&o);
        return -1;
    }
    return of_finish(&o, n);
}

static int copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb");
    if (!in)
        return fail("%s: cannot open: %s", from, strerror(errno));
    ofile o;
    if (of_open(&o, to) != 0) {
        fclose(in);
        return -1;
    }
    char buf[1 << 16];
    size_t n;
    int rc = 0;
    while (rc == 0 && (n = fread(buf, 1, sizeof buf, in)) > 0)
        rc = of_write(&o, buf, n);
    if (rc == 0 && ferror(in))
        rc = fail("%s: read failed: %s", from, strerror(errno));
    fclose(in);
    if (rc != 0) {
        of_abort(&o);
        return -1;
    }
    return of_finish(&o, o.pos);
}

/* ------------------------------------------------- growable byte buffer */

typedef struct {
    unsigned char *p;
    size_t len, cap;
    int oom;
} buf;

static void buf_add(buf *b, const void *data, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        unsigned char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void buf_printf(buf *b, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp)
        b->oom = 1;     /* never with our short fragments; fail loudly */
    else
        buf_add(b, tmp, (size_t)n);
}

/* GGUF scalars are little endian; write them byte by byte so the output
 * does not depend on the host's byte order. */
static void buf_le(buf *b, uint64_t v, int bytes)
{
    unsigned char c[8];
    for (int i = 0; i < bytes; i++)
        c[i] = (unsigned char)(v >> (8 * i));
    buf_add(b, c, (size_t)bytes);
}

/* ------------------------------------------------------- GGUF metadata */

enum {
    GGUF_UINT8 = 0, GGUF_INT8, GGUF_UINT16, GGUF_INT16, GGUF_UINT32, GGUF_INT32,
    GGUF_FLOAT32, GGUF_BOOL, GGUF_STRING, GGUF_ARRAY, GGUF_UINT64, GGUF_INT64,
    GGUF_FLOAT64
};

typedef struct {
    buf b;
    uint64_t count;
} gguf_kv;

static void gguf_str(buf *b, const char *s, size_t n)
{
    buf_le(b, n, 8);
    buf_add(b, s, n);
}

static void kv_key(gguf_kv *kv, const char *key, int type)
{
    gguf_str(&kv->b, key, strlen(key));
    buf_le(&kv->b, (uint32_t)type, 4);
    kv->count++;
}

static void kv_u32(gguf_kv *kv, const char *key, uint32_t v)
{
    kv_key(kv, key, GGUF_UINT32);
    buf_le(&kv->b, v, 4);
}

static void kv_f32(gguf_kv *kv, const char *key, float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    kv_key(kv, key, GGUF_FLOAT32);
    buf_le(&kv->b, u, 4);
}

static void kv_bool(gguf_kv *kv, const char *key, int v)
{
    kv_key(kv, key, GGUF_BOOL);
    buf_le(&kv->b, v ? 1 : 0, 1);
}

static void kv_string(gguf_kv *kv, const char *key, const char *v)
{
    kv_key(kv, key, GGUF_STRING);
    gguf_str(&kv->b, v, strlen(v));
}

static void kv_array_header(gguf_kv *kv, const char *key, int elem_type, uint64_t n)
{
    kv_key(kv, key, GGUF_ARRAY);
    buf_le(&kv->b, (uint32_t)elem_type, 4);
    buf_le(&kv->b, n, 8);
}

/* ------------------------------------------------------------ tokenizer */

typedef struct {
    char **tokens;       /* vocab entries; [PAD{id}] fillers included */
    int32_t *types;
    int n_tokens;
    char **merges;       /* "left right" */
    size_t n_merges;
    char *chat_template; /* NULL when tokenizer_config.json has none */
} tokenizer_meta;

enum { TOKEN_NORMAL = 1, TOKEN_CONTROL = 3, TOKEN_USER_DEFINED = 4, TOKEN_UNUSED = 5 };

static void tokenizer_meta_free(tokenizer_meta *m)
{
    if (m->tokens)
        for (int i = 0; i < m->n_tokens; i++)
            free(m->tokens[i]);
    free(m->tokens);
    free(m->types);
    if (m->merges)
        for (size_t i = 0; i < m->n_merges; i++)
            free(m->merges[i]);
    free(m->merges);
    free(m->chat_template);
    memset(m, 0, sizeof *m);
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = xmalloc(n, "token string");
    if (p)
        memcpy(p, s, n);
    return p;
}

/* As llama.cpp's converter: added tokens spelled like <|...|> are control
 * tokens even when tokenizer.json does not mark them special. */
static int looks_special(const char *s)
{
    size_t n = strlen(s);
    return n >= 4 && strncmp(s, "<|", 2) == 0 && strcmp(s + n - 2, "|>") == 0;
}

static int set_token(tokenizer_meta *m, const char *path, json_int_t id,
                     const char *text, int type, int allow_override)
{
    if (id < 0 || id >= m->n_tokens)
        return fail("%s: token id %lld outside the vocabulary (0..%d)", path,
                    (long long)id, m->n_tokens - 1);
    if (m->tokens[id]) {
        if (!allow_override || strcmp(m->tokens[id], text) != 0)
            return fail("%s: token id %lld given twice (\"%s\", \"%s\")", path,
                        (long long)id, m->tokens[id], text);
        free(m->tokens[id]);
    }
    m->tokens[id] = xstrdup(text);
    if (!m->tokens[id])
        return -1;
    m->types[id] = type;
    return 0;
}

static int json_fail(const char *path, const json_error_t *e)
{
    if (e->line > 0)
        return fail("%s:%d: %s", path, e->line, e->text);
    return fail("%s: %s", path, e->text);
}

static int load_tokenizer(const char *dir, int vocab_size, tokenizer_meta *m)
{
    char path[PATH_MAX];
    json_error_t jerr;
    int rc = -1;
    json_t *root = NULL, *cfg = NULL;

    memset(m, 0, sizeof *m);
    if (fmt_path(path, sizeof path, "%s/tokenizer.json", dir) != 0)
        return -1;
    root = json_load_file(path, 0, &jerr);
    if (!root)
        return json_fail(path, &jerr);

    json_t *model = json_object_get(root, "model");
    json_t *vocab = json_object_get(model, "vocab");
    json_t *merges = json_object_get(model, "merges");
    json_t *added = json_object_get(root, "added_tokens");
    if (!json_is_object(vocab) || !json_is_array(merges)) {
        fail("%s: no model.vocab object or model.merges array", path);
        goto out;
    }
    if (added && !json_is_array(added)) {
        fail("%s: added_tokens is not an array", path);
        goto out;
    }

    m->n_tokens = vocab_size;
    m->tokens = calloc((size_t)vocab_size, sizeof *m->tokens);
    m->types = calloc((size_t)vocab_size, sizeof *m->types);
    if (!m->tokens || !m->types) {
        fail("out of memory for %d tokens", vocab_size);
        goto out;
    }

    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val) {
        if (!json_is_integer(val)) {
            fail("%s: vocab entry \"%s\" has no integer id", path, key);
            goto out;
        }
        if (set_token(m, path, json_integer_value(val), key, TOKEN_NORMAL, 0) != 0)
            goto out;
    }
    size_t i;
    json_array_foreach(added, i, val) {
        json_t *id = json_object_get(val, "id");
        json_t *content = json_object_get(val, "content");
        json_t *special = json_object_get(val, "special");
        if (!json_is_integer(id) || !json_is_string(content)) {
            fail("%s: added_tokens[%zu] lacks id or content", path, i);
            goto out;
        }
        const char *text = json_string_value(content);
        int type = json_is_true(special) || looks_special(text)
                   ? TOKEN_CONTROL : TOKEN_USER_DEFINED;
        /* An added token may repeat a vocab entry: it then takes its type. */
        if (set_token(m, path, json_integer_value(id), text, type, 1) != 0)
            goto out;
    }
    /* Ids the tokenizer never uses (the embedding is padded to 151936). */
    for (int id = 0; id < vocab_size; id++) {
        if (!m->tokens[id]) {
            char pad[32];
            snprintf(pad, sizeof pad, "[PAD%d]", id);
            m->tokens[id] = xstrdup(pad);
            if (!m->tokens[id])
                goto out;
            m->types[id] = TOKEN_UNUSED;
        }
    }

    /* Merges: ["a", "b"] pairs in current tokenizer.json, "a b" in older. */
    m->n_merges = json_array_size(merges);
    m->merges = calloc(m->n_merges ? m->n_merges : 1, sizeof *m->merges);
    if (!m->merges) {
        fail("out of memory for %zu merges", m->n_merges);
        goto out;
    }
    json_array_foreach(merges, i, val) {
        if (json_is_string(val)) {
            m->merges[i] = xstrdup(json_string_value(val));
        } else if (json_is_array(val) && json_array_size(val) == 2
                   && json_is_string(json_array_get(val, 0))
                   && json_is_string(json_array_get(val, 1))) {
            const char *a = json_string_value(json_array_get(val, 0));
            const char *b = json_string_value(json_array_get(val, 1));
            size_t la = strlen(a), lb = strlen(b);
            m->merges[i] = xmalloc(la + lb + 2, "merge");
            if (m->merges[i]) {
                memcpy(m->merges[i], a, la);
                m->merges[i][la] = ' ';
                memcpy(m->merges[i] + la + 1, b, lb + 1);
            }
        } else {
            fail("%s: model.merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]", path, i);
            goto out;
        }
        if (!m->merges[i])
            goto out;
    }

    if (fmt_path(path, sizeof path, "%s/tokenizer_config.json", dir) != 0)
        goto out;
    cfg = json_load_file(path, 0, &jerr);
    if (!cfg) {
        json_fail(path, &jerr);
        goto out;
    }
    json_t *tmpl = json_object_get(cfg, "chat_template");
    if (json_is_string(tmpl)) {
        m->chat_template = xstrdup(json_string_value(tmpl));
        if (!m->chat_template)
            goto out;
    } else {
        fprintf(stderr, PROG ": note: %s has no chat_template string\n", path);
    }
    rc = 0;
out:
    json_decref(root);
    json_decref(cfg);
    if (rc != 0)
        tokenizer_meta_free(m);
    return rc;
}

/* ----------------------------------------------------------- GGUF file */

typedef struct {
    ofile o;
    uint64_t data_start;     /* file offset of the data section */
    uint64_t size;           /* planned file size */
} gguf_out;

static void gguf_metadata(gguf_kv *kv, const shape *s, const gguf_kind *k,
                          int dequantized, const tokenizer_meta *tok)
{
    char name[128];
    if (dequantized)
        snprintf(name, sizeof name, "Qwen3 test model %s (random weights, %s "
                 "dequantized to F32)", s->name, k->name);
    else
        snprintf(name, sizeof name, "Qwen3 test model %s (random weights)", s->name);
    kv_string(kv, "general.architecture", "qwen3");
    kv_string(kv, "general.type", "model");
    kv_string(kv, "general.name", name);
    kv_u32(kv, "general.alignment", GGUF_ALIGNMENT);
    kv_u32(kv, "qwen3.block_count", (uint32_t)s->n_layers);
    kv_u32(kv, "qwen3.context_length", (uint32_t)s->max_pos);
    kv_u32(kv, "qwen3.embedding_length", (uint32_t)s->hidden);
    kv_u32(kv, "qwen3.feed_forward_length", (uint32_t)s->inter);
    kv_u32(kv, "qwen3.attention.head_count", (uint32_t)s->n_heads);
    kv_u32(kv, "qwen3.attention.head_count_kv", (uint32_t)s->n_kv_heads);
    kv_f32(kv, "qwen3.rope.freq_base", (float)s->rope_theta);
    kv_f32(kv, "qwen3.attention.layer_norm_rms_epsilon", (float)s->rms_eps);
    kv_u32(kv, "qwen3.attention.key_length", (uint32_t)s->head_dim);
    kv_u32(kv, "qwen3.attention.value_length", (uint32_t)s->head_dim);
    kv_u32(kv, "general.file_type", dequantized ? 0 : (uint32_t)k->file_type);
    kv_u32(kv, "general.quantization_version", 2);
    if (!tok)
        return;
    kv_string(kv, "tokenizer.ggml.model", "gpt2");
    kv_string(kv, "tokenizer.ggml.pre", "qwen2");
    kv_array_header(kv, "tokenizer.ggml.tokens", GGUF_STRING, (uint64_t)tok->n_tokens);
    for (int i = 0; i < tok->n_tokens; i++)
        gguf_str(&kv->b, tok->tokens[i], strlen(tok->tokens[i]));
    kv_array_header(kv, "tokenizer.ggml.token_type", GGUF_INT32, (uint64_t)tok->n_tokens);
    for (int i = 0; i < tok->n_tokens; i++)
        buf_le(&kv->b, (uint32_t)tok->types[i], 4);
    kv_array_header(kv, "tokenizer.ggml.merges", GGUF_STRING, tok->n_merges);
    for (size_t i = 0; i < tok->n_merges; i++)
        gguf_str(&kv->b, tok->merges[i], strlen(tok->merges[i]));
    kv_u32(kv, "tokenizer.ggml.eos_token_id", TOKEN_ID_EOS);
    kv_u32(kv, "tokenizer.ggml.padding_token_id", TOKEN_ID_PAD);
    kv_u32(kv, "tokenizer.ggml.bos_token_id", TOKEN_ID_BOS);
    kv_bool(kv, "tokenizer.ggml.add_bos_token", 0);
    if (tok->chat_template)
        kv_string(kv, "tokenizer.chat_template", tok->chat_template);
}

/* Plans offsets, then writes everything up to the data section. */
static int gguf_begin(gguf_out *g, const char *path, plan *p, const shape *s,
                      const gguf_kind *k, int dequantized, const tokenizer_meta *tok)
{
    gguf_kv kv = { { NULL, 0, 0, 0 }, 0 };
    buf head = { NULL, 0, 0, 0 };
    int rc = -1;

    gguf_metadata(&kv, s, k, dequantized, tok);

    buf_add(&head, "GGUF", 4);
    buf_le(&head, 3, 4);
    buf_le(&head, (uint64_t)p->n, 8);
    buf_le(&head, kv.count, 8);
    buf_add(&head, kv.b.p, kv.b.len);
    uint64_t off = 0;
    for (int i = 0; i < p->n; i++) {
        tensor *t = &p->t[i];
        t->gguf_offset = off;
        t->gguf_bytes = qwen_row_bytes(t->gguf_type, t->ne0) * (uint64_t)t->ne1;
        off += (t->gguf_bytes + GGUF_ALIGNMENT - 1) / GGUF_ALIGNMENT * GGUF_ALIGNMENT;
        gguf_str(&head, t->gguf_name, strlen(t->gguf_name));
        buf_le(&head, (uint32_t)t->n_dims, 4);
        buf_le(&head, (uint64_t)t->ne0, 8);
        if (t->n_dims == 2)
            buf_le(&head, (uint64_t)t->ne1, 8);
        buf_le(&head, (uint32_t)t->gguf_type, 4);
        buf_le(&head, t->gguf_offset, 8);
    }
    if (kv.b.oom || head.oom) {
        fail("out of memory building the GGUF header");
        goto out;
    }
    g->data_start = (head.len + GGUF_ALIGNMENT - 1) / GGUF_ALIGNMENT * GGUF_ALIGNMENT;
    g->size = g->data_start + off;
    if (of_open(&g->o, path) != 0)
        goto out;
    if (of_write(&g->o, head.p, head.len) != 0 || of_pad(&g->o, GGUF_ALIGNMENT, 0) != 0) {
        of_abort(&g->o);
        goto out;
    }
    rc = 0;
out:
    free(kv.b.p);
    free(head.p);
    return rc;
}

/* --------------------------------------------------------- HF directory */

typedef struct {
    const hf_dtype *dt;
    int n_shards;
    ofile files[MAX_SHARDS];
    uint64_t sizes[MAX_SHARDS];
    char names[MAX_SHARDS][64];
    int open_count;
} hf_out;

/* Split tensors into n contiguous shards of about equal bytes, none empty. */
static int hf_assign_shards(plan *p, int n)
{
    if (n > p->n)
        return fail("--shards %d: the model has only %d tensors", n, p->n);
    uint64_t total = 0;
    for (int i = 0; i < p->n; i++)
        total += p->t[i].hf_bytes;
    uint64_t target = (total + (uint64_t)n - 1) / (uint64_t)n;
    int shard = 0, in_shard = 0;
    uint64_t bytes = 0;
    for (int i = 0; i < p->n; i++) {
        int must_move = p->n - i <= n - 1 - shard;   /* keep later shards fed */
        if (in_shard > 0 && shard < n - 1 && (bytes >= target || must_move)) {
            shard++;
            in_shard = 0;
            bytes = 0;
        }
        p->t[i].shard = shard;
        p->t[i].hf_offset = bytes;
        bytes += p->t[i].hf_bytes;
        in_shard++;
    }
    return 0;
}

static int hf_begin(hf_out *h, const char *dir, plan *p, const hf_dtype *dt, int n_shards)
{
    memset(h, 0, sizeof *h);
    h->dt = dt;
    h->n_shards = n_shards;
    size_t esize = qwen_type_block_bytes(dt->type);
    for (int i = 0; i < p->n; i++)
        p->t[i].hf_bytes = (uint64_t)p->t[i].ne0 * (uint64_t)p->t[i].ne1 * esize;
    if (hf_assign_shards(p, n_shards) != 0)
        return -1;

    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return fail("%s: cannot create directory: %s", dir, strerror(errno));
    /* A loader prefers model.safetensors over an index: when the layout
     * changes between runs, the file of the other layout must go. */
    char stale[PATH_MAX];
    if (fmt_path(stale, sizeof stale, "%s/%s", dir, n_shards == 1
                 ? "model.safetensors.index.json" : "model.safetensors") != 0)
        return -1;
    if (unlink(stale) != 0 && errno != ENOENT)
        return fail("%s: cannot remove stale file: %s", stale, strerror(errno));

    for (int s = 0; s < n_shards; s++) {
        if (n_shards == 1)
            snprintf(h->names[s], sizeof h->names[s], "model.safetensors");
        else
            snprintf(h->names[s], sizeof h->names[s],
                     "model-%05d-of-%05d.safetensors", s + 1, n_shards);

        /* Header: JSON with __metadata__ first, padded with spaces so the
         * data starts 8-byte aligned; then the data, in plan order. */
        buf j = { NULL, 0, 0, 0 };
        buf_printf(&j, "{\"__metadata__\":{\"format\":\"pt\"}");
        uint64_t data_size = 0;
        for (int i = 0; i < p->n; i++) {
            const tensor *t = &p->t[i];
            if (t->shard != s)
                continue;
            if (t->n_dims == 2)
                buf_printf(&j, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld,%lld],",
                           t->hf_name, dt->st_name, (long long)t->ne1, (long long)t->ne0);
            else
                buf_printf(&j, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld],",
                           t->hf_name, dt->st_name, (long long)t->ne0);
            buf_printf(&j, "\"data_offsets\":[%llu,%llu]}",
                       (unsigned long long)t->hf_offset,
                       (unsigned long long)(t->hf_offset + t->hf_bytes));
            data_size = t->hf_offset + t->hf_bytes;
        }
        buf_printf(&j, "}");
        while (!j.oom && (8 + j.len) % 8 != 0)
            buf_add(&j, " ", 1);
        if (j.oom) {
            free(j.p);
            return fail("out of memory building a safetensors header");
        }
        char path[PATH_MAX];
        int rc = fmt_path(path, sizeof path, "%s/%s", dir, h->names[s]);
        if (rc == 0)
            rc = of_open(&h->files[s], path);
        if (rc == 0) {
            h->open_count = s + 1;
            buf len8 = { NULL, 0, 0, 0 };
            buf_le(&len8, j.len, 8);
            rc = len8.oom ? fail("out of memory") : 0;
            if (rc == 0)
                rc = of_write(&h->files[s], len8.p, 8);
            if (rc == 0)
                rc = of_write(&h->files[s], j.p, j.len);
            free(len8.p);
        }
        h->sizes[s] = 8 + j.len + data_size;
        free(j.p);
        if (rc != 0)
            return -1;
    }
    return 0;
}

static int hf_write_config(const char *dir, const shape *s, const hf_dtype *dt)
{
    char path[PATH_MAX], text[4096];
    int n = snprintf(text, sizeof text,
        "{\n"
        "  \"architectures\": [\"Qwen3ForCausalLM\"],\n"
        "  \"attention_bias\": false,\n"
        "  \"attention_dropout\": 0.0,\n"
        "  \"bos_token_id\": %d,\n"
        "  \"eos_token_id\": %d,\n"
        "  \"head_dim\": %d,\n"
        "  \"hidden_act\": \"silu\",\n"
        "  \"hidden_size\": %d,\n"
        "  \"initializer_range\": 0.02,\n"
        "  \"intermediate_size\": %d,\n"
        "  \"max_position_embeddings\": %d,\n"
        "  \"max_window_layers\": %d,\n"
        "  \"model_type\": \"qwen3\",\n"
        "  \"num_attention_heads\": %d,\n"
        "  \"num_hidden_layers\": %d,\n"
        "  \"num_key_value_heads\": %d,\n"
        "  \"rms_norm_eps\": %g,\n"
        "  \"rope_scaling\": null,\n"
        "  \"rope_theta\": %.0f,\n"
        "  \"sliding_window\": null,\n"
        "  \"tie_word_embeddings\": true,\n"
        "  \"torch_dtype\": \"%s\",\n"
        "  \"transformers_version\": \"4.51.0\",\n"
        "  \"use_cache\": true,\n"
        "  \"use_sliding_window\": false,\n"
        "  \"vocab_size\": %d\n"
        "}\n",
        TOKEN_ID_BOS, TOKEN_ID_EOS, s->head_dim, s->hidden, s->inter, s->max_pos,
        s->n_layers, s->n_heads, s->n_layers, s->n_kv_heads, s->rms_eps,
        s->rope_theta, dt->torch_name, s->vocab);
    if (n < 0 || (size_t)n >= sizeof text)
        return fail("internal: config.json text too long");
    if (fmt_path(path, sizeof path, "%s/config.json", dir) != 0
        || write_text_file(path, text) != 0)
        return -1;

    n = snprintf(text, sizeof text,
        "{\n"
        "  \"bos_token_id\": %d,\n"
        "  \"do_sample\": true,\n"
        "  \"eos_token_id\": [%d, %d],\n"
        "  \"pad_token_id\": %d,\n"
        "  \"temperature\": 0.6,\n"
        "  \"top_k\": 20,\n"
        "  \"top_p\": 0.95,\n"
        "  \"transformers_version\": \"4.51.0\"\n"
        "}\n",
        TOKEN_ID_BOS, TOKEN_ID_EOS, TOKEN_ID_BOS, TOKEN_ID_PAD);
    if (n < 0 || (size_t)n >= sizeof text)
        return fail("internal: generation_config.json text too long");
    if (fmt_path(path, sizeof path, "%s/generation_config.json", dir) != 0
        || write_text_file(path, text) != 0)
        return -1;
    return 0;
}

static int hf_write_index(const char *dir, const hf_out *h, const plan *p)
{
    buf j = { NULL, 0, 0, 0 };
    uint64_t total = 0;
    for (int i = 0; i < p->n; i++)
        total += p->t[i].hf_bytes;
    buf_printf(&j, "{\n  \"metadata\": {\n    \"total_size\": %llu\n  },\n"
               "  \"weight_map\": {\n", (unsigned long long)total);
    for (int i = 0; i < p->n; i++)
        buf_printf(&j, "    \"%s\": \"%s\"%s\n", p->t[i].hf_name,
                   h->names[p->t[i].shard], i + 1 < p->n ? "," : "");
    buf_printf(&j, "  }\n}\n");
    buf_add(&j, "", 1);
    char path[PATH_MAX];
    int rc = j.oom ? fail("out of memory building the safetensors index") : 0;
    if (rc == 0)
        rc = fmt_path(path, sizeof path, "%s/model.safetensors.index.json", dir);
    if (rc == 0)
        rc = write_text_file(path, (const char *)j.p);
    free(j.p);
    return rc;
}

/* ----------------------------------------------------------------- main */

static void usage(FILE *f)
{
    fprintf(f,
        "usage: " PROG " [--shape micro|tiny|small|full] [--seed S] [--tokenizer DIR]\n"
        "                [--gguf OUT.gguf --type f32|f16|bf16|q8_0|q4_k_m]\n"
        "                [--hf OUTDIR --dtype f32|f16|bf16 [--shards N]]\n"
        "                [--dequantized]\n"
        "Writes a random-weight Qwen3 model; both outputs of one run hold the\n"
        "same values. --tokenizer DIR holds tokenizer.json and\n"
        "tokenizer_config.json (copied to the HF dir, turned into GGUF metadata).\n"
        "--dequantized writes the GGUF as F32 holding the weights of --type\n"
        "after quantizing and dequantizing them: the exact reference for a\n"
        "quantized model's kernels (only activation rounding differs).\n");
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || end == s || *end || s[0] == '-')
        return -1;
    *out = v;
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    const char *shape_name = "tiny", *gguf_path = NULL, *gguf_type = NULL;
    const char *hf_dir = NULL, *hf_dt = NULL, *tok_dir = NULL;
    uint64_t seed = DEFAULT_SEED, shards = 1;
    int dequantized = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--dequantized") == 0) {
            dequantized = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fail("%s needs a value", a);
            usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        if (strcmp(a, "--shape") == 0) shape_name = v;
        else if (strcmp(a, "--gguf") == 0) gguf_path = v;
        else if (strcmp(a, "--type") == 0) gguf_type = v;
        else if (strcmp(a, "--hf") == 0) hf_dir = v;
        else if (strcmp(a, "--dtype") == 0) hf_dt = v;
        else if (strcmp(a, "--tokenizer") == 0) tok_dir = v;
        else if (strcmp(a, "--seed") == 0) {
            if (parse_u64(v, &seed) != 0) {
                fail("--seed %s: not an unsigned integer", v);
                return 2;
            }
        } else if (strcmp(a, "--shards") == 0) {
            if (parse_u64(v, &shards) != 0 || shards < 1 || shards > MAX_SHARDS) {
                fail("--shards %s: want 1..%d", v, MAX_SHARDS);
                return 2;
            }
        } else {
            fail("unknown option %s", a);
            usage(stderr);
            return 2;
        }
    }

    const shape *s = NULL;
    for (size_t i = 0; i < sizeof SHAPES / sizeof SHAPES[0]; i++)
        if (strcmp(shape_name, SHAPES[i].name) == 0)
            s = &SHAPES[i];
    const gguf_kind *gk = NULL;
    for (size_t i = 0; gguf_type && i < sizeof GGUF_KINDS / sizeof GGUF_KINDS[0]; i++)
        if (strcmp(gguf_type, GGUF_KINDS[i].name) == 0)
            gk = &GGUF_KINDS[i];
    const hf_dtype *hd = NULL;
    for (size_t i = 0; hf_dt && i < sizeof HF_DTYPES / sizeof HF_DTYPES[0]; i++)
        if (strcmp(hf_dt, HF_DTYPES[i].name) == 0)
            hd = &HF_DTYPES[i];
    if (!s) {
        fail("--shape %s: want tiny, small or full", shape_name);
        return 2;
    }
    if (!gguf_path && !hf_dir) {
        fail("nothing to do: give --gguf and/or --hf");
        usage(stderr);
        return 2;
    }
    if (gguf_path && !gk) {
        fail("--gguf needs --type f32|f16|bf16|q8_0|q4_k_m (got %s)",
             gguf_type ? gguf_type : "none");
        return 2;
    }
    if (hf_dir && !hd) {
        fail("--hf needs --dtype f32|f16|bf16 (got %s)", hf_dt ? hf_dt : "none");
        return 2;
    }
    if (dequantized && (!gguf_path || hf_dir)) {
        fail("--dequantized applies to a --gguf output alone");
        return 2;
    }
    if (!hf_dir && shards != 1) {
        fail("--shards applies to --hf only");
        return 2;
    }

    double t0 = now_s();
    int rc = 1;
    plan p = { NULL, 0 };
    tokenizer_meta tok;
    int have_tok = 0;
    gguf_out g;
    hf_out h;
    int gguf_open = 0, hf_open = 0;
    float *vals = NULL;
    void *qbuf = NULL;
    memset(&tok, 0, sizeof tok);
    memset(&h, 0, sizeof h);

    if (make_plan(s, &p) != 0)
        goto out;
    int fell_back = 0;
    for (int i = 0; i < p.n; i++) {
        tensor *t = &p.t[i];
        t->gguf_type = QWEN_TYPE_F32;           /* norms are always F32 */
        if (gk && t->n_dims == 2)
            t->gguf_type = gguf_matrix_type(gk, t, s->n_layers, &fell_back);
        if (qwen_row_bytes(t->gguf_type, t->ne0) == 0) {
            fail("%s: %lld values per row do not fit %s blocks", t->gguf_name,
                 (long long)t->ne0, gk ? gk->name : "f32");
            goto out;
        }
        t->roundtrip_type = -1;
        if (dequantized && t->gguf_type != QWEN_TYPE_F32) {
            t->roundtrip_type = t->gguf_type;
            t->gguf_type = QWEN_TYPE_F32;
        }
    }
    if (fell_back)
        fprintf(stderr, PROG ": note: shape %s has rows shorter than a 256-value "
                "K-quant block; those tensors are Q8_0\n", s->name);

    if (tok_dir) {
        if (load_tokenizer(tok_dir, s->vocab, &tok) != 0)
            goto out;
        have_tok = 1;
    }
    if (gguf_path) {
        if (gguf_begin(&g, gguf_path, &p, s, gk, dequantized, have_tok ? &tok : NULL) != 0)
            goto out;
        gguf_open = 1;
    }
    if (hf_dir) {
        hf_open = 1;
        if (hf_begin(&h, hf_dir, &p, hd, (int)shards) != 0)
            goto out;
    }

    /* Chunk buffers: the f32 values and their encoding (at most 4 bytes per
     * value for every type written). */
    vals = xmalloc((size_t)CHUNK_VALUES * sizeof(float), "value chunk");
    qbuf = xmalloc((size_t)CHUNK_VALUES * sizeof(float), "encoded chunk");
    if (!vals || !qbuf)
        goto out;

    for (int i = 0; i < p.n; i++) {
        const tensor *t = &p.t[i];
        value_gen gen;
        gen_init(&gen, t, seed);
        int64_t rows_per_chunk = CHUNK_VALUES / t->ne0;
        if (rows_per_chunk < 1) {
            fail("%s: a row of %lld values exceeds the chunk", t->gguf_name,
                 (long long)t->ne0);
            goto out;
        }
        for (int64_t r = 0; r < t->ne1; r += rows_per_chunk) {
            int64_t rows = t->ne1 - r < rows_per_chunk ? t->ne1 - r : rows_per_chunk;
            int64_t n = rows * t->ne0;
            gen_values(&gen, vals, n);
            /* Row by row: qbuf holds one encoded row at a time here. */
            for (int64_t k = 0; t->roundtrip_type >= 0 && k < rows; k++) {
                qwen_quantize_row(t->roundtrip_type, vals + k * t->ne0, qbuf, t->ne0);
                qwen_dequantize_row(t->roundtrip_type, qbuf, vals + k * t->ne0, t->ne0);
            }
            if (gguf_open) {
                size_t bytes = qwen_row_bytes(t->gguf_type, t->ne0) * (size_t)rows;
                for (int64_t k = 0; k < rows; k++)
                    qwen_quantize_row(t->gguf_type, vals + k * t->ne0,
                                      (char *)qbuf + k * qwen_row_bytes(t->gguf_type, t->ne0),
                                      t->ne0);
                if (of_write(&g.o, qbuf, bytes) != 0)
                    goto out;
            }
            if (hf_open) {
                qwen_quantize_row(hd->type, vals, qbuf, n);
                if (of_write(&h.files[t->shard], qbuf,
                             (size_t)n * qwen_type_block_bytes(hd->type)) != 0)
                    goto out;
            }
        }
        if (gguf_open && of_pad(&g.o, GGUF_ALIGNMENT, 0) != 0)
            goto out;
    }

    if (gguf_open) {
        gguf_open = 0;
        if (of_finish(&g.o, g.size) != 0)
            goto out;
        printf("%s: %s %s%s, %.1f MiB\n", gguf_path, s->name, gk->name,
               dequantized ? " dequantized to f32" : "", g.size / 1048576.0);
    }
    if (hf_open) {
        uint64_t total = 0;
        for (int k = 0; k < h.n_shards; k++) {
            ofile *o = &h.files[k];
            if (of_finish(o, h.sizes[k]) != 0) {
                for (int j = k + 1; j < h.n_shards; j++)
                    of_abort(&h.files[j]);
                hf_open = 0;
                goto out;
            }
            total += h.sizes[k];
        }
        hf_open = 0;
        if (hf_write_config(hf_dir, s, hd) != 0)
            goto out;
        if (h.n_shards > 1 && hf_write_index(hf_dir, &h, &p) != 0)
            goto out;
        if (tok_dir) {
            const char *files[] = { "tokenizer.json", "tokenizer_config.json" };
            for (int k = 0; k < 2; k++) {
                char from[PATH_MAX], to[PATH_MAX];
                if (fmt_path(from, sizeof from, "%s/%s", tok_dir, files[k]) != 0
                    || fmt_path(to, sizeof to, "%s/%s", hf_dir, files[k]) != 0
                    || copy_file(from, to) != 0)
                    goto out;
            }
        }
        printf("%s: %s %s, %d shard%s, %.1f MiB\n", hf_dir, s->name, hd->name,
               h.n_shards, h.n_shards > 1 ? "s" : "", total / 1048576.0);
    }
    printf("generated in %.1f s (seed %llu)\n", now_s() - t0, (unsigned long long)seed);
    rc = 0;
out:
    if (gguf_open)
        of_abort(&g.o);
    if (hf_open)
        for (int k = 0; k < h.open_count; k++)
            of_abort(&h.files[k]);
    free(vals);
    free(qbuf);
    free(p.t);
    if (have_tok)
        tokenizer_meta_free(&tok);
    return rc;
}
