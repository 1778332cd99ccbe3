/*
 * model.c - loads a Qwen3 model from a GGUF file or a Hugging Face directory
 * into a qwen_model: maps the files read-only, reads the hyper-parameters,
 * binds every weight by name and checks its type and shape against them.
 * Weights stay in the mapped pages; only norms (tiny) are converted to f32,
 * into anonymous memory written once, which forked processes share.
 */
#include "model.h"
#include "errors.h"
#include "gguf.h"
#include "kernels/kernels.h"
#include "repack.h"
#include "threadpool.h"
#include "safetensors.h"
#include "tokenizer_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_SHARDS 32

/* A tensor as a file describes it, before binding: dims in GGUF order
 * (dims[0] is the contiguous one). */
typedef struct {
    int         type;
    int         n_dims;
    int64_t     dims[4];
    const void *data;
    size_t      n_bytes;
} raw_tensor;

typedef struct {
    int        is_gguf;
    gguf_file  gguf;
    st_file    st[MAX_SHARDS];
    int        n_st;
} source;

static int
map_file(qwen_model *m, const char *path, const void **base, size_t *size,
         char *err, size_t err_len)
{
    int         fd;
    struct stat st;
    void       *p;

    if (m->n_maps >= QWEN_MAX_MAPS) {
        return qwen_fail(err, err_len, "%s: too many files", path);
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return qwen_fail(err, err_len, "%s: cannot open: %s", path, strerror(errno));
    }
    if (fstat(fd, &st) != 0) {
        close(fd);
        return qwen_fail(err, err_len, "%s: cannot stat: %s", path, strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return qwen_fail(err, err_len, "%s: not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return qwen_fail(err, err_len, "%s: file is empty", path);
    }
    /* read-only shared mapping: every process using the model shares the
     * page cache copy of the weights; populated now, so the first request
     * does not wait for the disk (no cold start) */
    p = mmap(NULL, (size_t) st.st_size, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        return qwen_fail(err, err_len, "%s: mmap failed: %s", path, strerror(errno));
    }
    m->maps[m->n_maps].addr = p;
    m->maps[m->n_maps].len = (size_t) st.st_size;
    m->n_maps++;
    *base = p;
    *size = (size_t) st.st_size;
    return 0;
}

/*
 * Anonymous memory for what the load writes once and nobody writes after
 * (repacked weights, converted norms), released with the model. Private,
 * so transparent huge pages can back it: MAP_SHARED anonymous memory is
 * shmem, which gets them only where the host enabled shmem THP (rarely:
 * not on this VM), and decode streams these bytes, where 4 KiB pages cost
 * TLB misses (BENCHMARKS.md: "Weights on huge pages"). Processes forked
 * after the load (nginx workers) still share one copy: nothing writes the
 * pages, so copy-on-write never copies them. Regions of 2 MiB or more
 * start on a 2 MiB boundary, so every huge page of them can be one.
 */
#define QWEN_HUGE_PAGE ((size_t) 2 << 20)

static void *
anon_alloc(qwen_model *m, size_t n, char *err, size_t err_len)
{
    size_t len = n ? n : 1, pad = len >= QWEN_HUGE_PAGE ? QWEN_HUGE_PAGE : 0;
    char  *p, *start;

    if (m->n_maps >= QWEN_MAX_MAPS) {
        qwen_fail(err, err_len, "too many mappings");
        return NULL;
    }
    p = mmap(NULL, len + pad, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        qwen_fail(err, err_len, "cannot allocate %zu bytes of memory: %s", n, strerror(errno));
        return NULL;
    }
    start = p;
    if (pad) {
        size_t page = (size_t) sysconf(_SC_PAGESIZE);
        char  *end;

        /* the slack around the aligned region goes back: kept, it was
         * sealed with the rest and every worker's qwen_model_map_in read
         * its zero pages in (t/pss.t saw 2 MiB more per worker) */
        start = (char *) (((uintptr_t) p + pad - 1) & ~(uintptr_t) (pad - 1));
        len = (len + page - 1) & ~(page - 1);
        end = start + len;
        if (start > p) {
            (void) munmap(p, (size_t) (start - p));
        }
        if (p + len + pad > end) {
            (void) munmap(end, (size_t) (p + len + pad - end));
        }
#ifdef MADV_HUGEPAGE
        (void) madvise(start, len, MADV_HUGEPAGE);   /* a hint: 4 KiB pages work too */
#endif
    }
    m->maps[m->n_maps].addr = start;
    m->maps[m->n_maps].len = len;
    m->maps[m->n_maps].anon = 1;
    m->n_maps++;
    return start;
}

/*
 * A process forked after the load (an nginx worker) shares the repacked
 * weights; when they were shared memory, fork gave it none of their pages
 * in its page tables and its first forward pass took a fault per 4 KiB
 * page (a first request's time to first token was 0.4 s longer than the
 * next ones' on this VM, for a 4-token prompt). Private memory's page
 * tables are copied by fork, but a hypervisor may still map a process's
 * pages on first access: fault them in now, read-only (no copy-on-write
 * copy): MADV_POPULATE_READ where the kernel has it (5.14), then a read
 * per page. The file's own mapping is left alone: a packed tensor's file
 * pages are never read.
 */
void
qwen_model_map_in(const qwen_model *m)
{
    volatile const char *p;
    size_t               off;
    int                  i;

    for (i = 0; i < m->n_maps; i++) {
        if (!m->maps[i].anon) {
            continue;
        }
#ifdef MADV_POPULATE_READ
        (void) madvise(m->maps[i].addr, m->maps[i].len, MADV_POPULATE_READ);
#endif
        /* and a read per page: under a hypervisor that maps a process's
         * pages on their first access (seen here: the populated pages
         * still cost the first request 0.4 s), that cost is paid now */
        p = m->maps[i].addr;
        for (off = 0; off < m->maps[i].len; off += 4096) {
            (void) p[off];
        }
    }
}

/* ------------------------------------------------------------ lookup */

static int
find_raw(const source *src, const char *gguf_name, const char *hf_name, raw_tensor *out)
{
    const gguf_tensor *g;
    const st_tensor   *s;
    int                i, j;

    if (src->is_gguf) {
        g = qwen_gguf_find_tensor(&src->gguf, gguf_name);
        if (g == NULL) {
            return -1;
        }
        out->type = (int) g->type;
        out->n_dims = (int) g->n_dims;
        for (j = 0; j < 4; j++) {
            out->dims[j] = (int64_t) g->ne[j];
        }
        out->data = g->data;
        out->n_bytes = g->n_bytes;
        return 0;
    }
    for (i = 0; i < src->n_st; i++) {
        s = qwen_st_find(&src->st[i], hf_name);
        if (s == NULL) {
            continue;
        }
        out->type = s->type;
        out->n_dims = s->n_dims;
        for (j = 0; j < 4; j++) {
            out->dims[j] = 1;
        }
        /* PyTorch shapes list the outermost dimension first */
        for (j = 0; j < s->n_dims; j++) {
            out->dims[j] = s->shape[s->n_dims - 1 - j];
        }
        out->data = s->data;
        out->n_bytes = s->n_bytes;
        return 0;
    }
    return -1;
}

static const char *
src_path(const source *src)
{
    return src->is_gguf ? src->gguf.path : (src->n_st ? src->st[0].path : "model");
}

static int
bind_matrix(qwen_model *m, const source *src, const char *gname, const char *hname,
            int64_t rows, int64_t cols, qwen_tensor *t, char *err, size_t err_len)
{
    raw_tensor  r;
    const char *name = src->is_gguf ? gname : hname;
    size_t      align;
    void       *copy;

    if (find_raw(src, gname, hname, &r) != 0) {
        return qwen_fail(err, err_len, "%s: missing tensor %s", src_path(src), name);
    }
    if (r.n_dims != 2 || r.dims[0] != cols || r.dims[1] != rows) {
        return qwen_fail(err, err_len, "%s: tensor %s has shape [%lld, %lld] (rows, columns) "
                    "but the config needs [%lld, %lld]", src_path(src), name,
                    (long long) (r.n_dims >= 2 ? r.dims[1] : 1), (long long) r.dims[0],
                    (long long) rows, (long long) cols);
    }
    t->type = r.type;
    t->n_rows = rows;
    t->n_cols = cols;
    t->row_bytes = qwen_row_bytes(r.type, cols);
    t->data = r.data;
    /* kernels load whole elements; safetensors offsets are not always aligned */
    align = r.type == QWEN_TYPE_F32 ? 4 : 2;
    if (((uintptr_t) r.data) % align != 0) {
        copy = anon_alloc(m, r.n_bytes, err, err_len);
        if (copy == NULL) {
            return -1;
        }
        memcpy(copy, r.data, r.n_bytes);
        t->data = copy;
    }
    return 0;
}

static int
bind_vector(qwen_model *m, const source *src, const char *gname, const char *hname,
            int64_t n, const float **out, char *err, size_t err_len)
{
    raw_tensor  r;
    const char *name = src->is_gguf ? gname : hname;
    float      *dst;
    int64_t     bs;

    if (find_raw(src, gname, hname, &r) != 0) {
        return qwen_fail(err, err_len, "%s: missing tensor %s", src_path(src), name);
    }
    if (r.n_dims != 1 || r.dims[0] != n) {
        return qwen_fail(err, err_len, "%s: tensor %s has %d dims and %lld elements, "
                    "the config needs a vector of %lld", src_path(src), name, r.n_dims,
                    (long long) r.dims[0], (long long) n);
    }
    bs = qwen_type_block_size(r.type);
    if (bs <= 0 || n % bs != 0) {
        return qwen_fail(err, err_len, "%s: tensor %s: type %s cannot hold %lld elements",
                    src_path(src), name, qwen_type_name(r.type), (long long) n);
    }
    if (m->shared_used + (size_t) n * sizeof(float) > m->shared_len) {
        return qwen_fail(err, err_len, "internal: norm arena too small");
    }
    dst = (float *) ((char *) m->shared + m->shared_used);
    m->shared_used += (size_t) n * sizeof(float);
    qwen_dequantize_row(r.type, r.data, dst, n);
    *out = dst;
    return 0;
}

static int
bind_weights(qwen_model *m, const source *src, char *err, size_t err_len)
{
    const qwen_config *c = &m->cfg;
    int64_t            q_dim = (int64_t) c->n_heads * c->head_dim;
    int64_t            kv_dim = (int64_t) c->n_kv_heads * c->head_dim;
    char               g[96], h[96];
    int                i, n_types[QWEN_TYPE_COUNT] = {0}, t, best, pos;
    qwen_layer        *L;
    raw_tensor         r;

    m->shared_len = ((size_t) c->n_layers * (2 * c->hidden_size + 2 * c->head_dim)
                     + c->hidden_size) * sizeof(float);
    m->shared = anon_alloc(m, m->shared_len, err, err_len);
    if (m->shared == NULL) {
        return -1;
    }
    m->layers = calloc((size_t) c->n_layers, sizeof(qwen_layer));
    if (m->layers == NULL) {
        return qwen_fail(err, err_len, "out of memory");
    }

    if (bind_matrix(m, src, "token_embd.weight", "model.embed_tokens.weight",
                    c->vocab_size, c->hidden_size, &m->tok_embd, err, err_len) != 0
        || bind_vector(m, src, "output_norm.weight", "model.norm.weight",
                       c->hidden_size, &m->output_norm, err, err_len) != 0)
    {
        return -1;
    }
    if (find_raw(src, "output.weight", "lm_head.weight", &r) == 0 && !c->tie_word_embeddings) {
        if (bind_matrix(m, src, "output.weight", "lm_head.weight", c->vocab_size,
                        c->hidden_size, &m->output, err, err_len) != 0)
        {
            return -1;
        }
    } else if (!c->tie_word_embeddings) {
        return qwen_fail(err, err_len, "%s: tie_word_embeddings is false but there is no "
                    "output projection (%s)", src_path(src),
                    src->is_gguf ? "output.weight" : "lm_head.weight");
    } else {
        m->output = m->tok_embd;
    }

#define NAMES(gs, hs) (snprintf(g, sizeof(g), "blk.%d." gs, i), \
                       snprintf(h, sizeof(h), "model.layers.%d." hs, i), 0)
#define MATRIX(field, gs, hs, rows, cols)                                        \
    if (NAMES(gs, hs) || bind_matrix(m, src, g, h, rows, cols, &L->field,        \
                                     err, err_len) != 0) return -1
#define VECTOR(field, gs, hs, n)                                                 \
    if (NAMES(gs, hs) || bind_vector(m, src, g, h, n, &L->field, err, err_len) != 0) \
        return -1

    for (i = 0; i < c->n_layers; i++) {
        L = &m->layers[i];
        VECTOR(attn_norm, "attn_norm.weight", "input_layernorm.weight", c->hidden_size);
        VECTOR(q_norm, "attn_q_norm.weight", "self_attn.q_norm.weight", c->head_dim);
        VECTOR(k_norm, "attn_k_norm.weight", "self_attn.k_norm.weight", c->head_dim);
        VECTOR(ffn_norm, "ffn_norm.weight", "post_attention_layernorm.weight", c->hidden_size);
        MATRIX(wq, "attn_q.weight", "self_attn.q_proj.weight", q_dim, c->hidden_size);
        MATRIX(wk, "attn_k.weight", "self_attn.k_proj.weight", kv_dim, c->hidden_size);
        MATRIX(wv, "attn_v.weight", "self_attn.v_proj.weight", kv_dim, c->hidden_size);
        MATRIX(wo, "attn_output.weight", "self_attn.o_proj.weight", c->hidden_size, q_dim);
        MATRIX(w_gate, "ffn_gate.weight", "mlp.gate_proj.weight", c->intermediate_size,
               c->hidden_size);
        MATRIX(w_up, "ffn_up.weight", "mlp.up_proj.weight", c->intermediate_size,
               c->hidden_size);
        MATRIX(w_down, "ffn_down.weight", "mlp.down_proj.weight", c->hidden_size,
               c->intermediate_size);
        n_types[L->wq.type]++;  n_types[L->wk.type]++;  n_types[L->wv.type]++;
        n_types[L->wo.type]++;  n_types[L->w_gate.type]++;  n_types[L->w_up.type]++;
        n_types[L->w_down.type]++;
    }
#undef MATRIX
#undef VECTOR
#undef NAMES

    /* describe: the dominant type, then the others present */
    n_types[m->tok_embd.type]++;
    best = 0;
    for (t = 0; t < QWEN_TYPE_COUNT; t++) {
        if (n_types[t] > n_types[best]) {
            best = t;
        }
    }
    pos = snprintf(m->describe, sizeof(m->describe), "%s", qwen_type_name(best));
    for (t = 0; t < QWEN_TYPE_COUNT; t++) {
        if (t != best && n_types[t] > 0 && pos < (int) sizeof(m->describe)) {
            pos += snprintf(m->describe + pos, sizeof(m->describe) - pos, " + %s",
                            qwen_type_name(t));
        }
    }
    return 0;
}

/* Hyper-parameters must be sane before any size is computed from them. */
static int
check_config(const qwen_config *c, const char *path, char *err, size_t err_len)
{
#define RANGE(v, lo, hi) \
    if ((v) < (lo) || (v) > (hi)) \
        return qwen_fail(err, err_len, "%s: %s = %d is out of range [%d, %d]", path, #v, \
                    (int) (v), (int) (lo), (int) (hi))
    RANGE(c->vocab_size, 1, 1 << 22);
    RANGE(c->hidden_size, 8, 1 << 16);
    RANGE(c->intermediate_size, 8, 1 << 18);
    RANGE(c->n_layers, 1, 1024);
    RANGE(c->n_heads, 1, 1024);
    RANGE(c->n_kv_heads, 1, 1024);
    RANGE(c->head_dim, 2, 1024);
    RANGE(c->max_position_embeddings, 1, 1 << 24);
#undef RANGE
    if (c->n_heads % c->n_kv_heads != 0) {
        return qwen_fail(err, err_len, "%s: num_attention_heads %d is not a multiple of "
                    "num_key_value_heads %d", path, c->n_heads, c->n_kv_heads);
    }
    if (c->head_dim % 2 != 0) {
        return qwen_fail(err, err_len, "%s: head_dim %d must be even for RoPE", path, c->head_dim);
    }
    if (!(c->rope_theta > 0.0f) || !(c->rms_norm_eps > 0.0f) || c->rms_norm_eps > 1.0f) {
        return qwen_fail(err, err_len, "%s: rope_theta and rms_norm_eps must be positive", path);
    }
    return 0;
}

/* ------------------------------------------------------------- GGUF */

static int
gguf_str_is(const gguf_kv *kv, const char *s)
{
    gguf_str v;

    if (kv == NULL || kv->type != GGUF_STRING) {
        return 0;
    }
    memcpy(&v.len, kv->data, 8);
    v.ptr = (const char *) kv->data + 8;
    return v.len == strlen(s) && memcmp(v.ptr, s, v.len) == 0;
}

static int
gguf_tokenizer(qwen_model *m, const gguf_file *f, char *err, size_t err_len)
{
    const gguf_kv     *tokens = qwen_gguf_find_kv(f, "tokenizer.ggml.tokens");
    const gguf_kv     *types = qwen_gguf_find_kv(f, "tokenizer.ggml.token_type");
    const gguf_kv     *merges = qwen_gguf_find_kv(f, "tokenizer.ggml.merges");
    const gguf_kv     *pre = qwen_gguf_find_kv(f, "tokenizer.ggml.pre");
    const gguf_kv     *tmpl = qwen_gguf_find_kv(f, "tokenizer.chat_template");
    qwen_vocab_arrays  v;
    qwen_str          *tok_strs = NULL, *merge_strs = NULL;
    int32_t           *tok_types = NULL;
    const void        *cur;
    gguf_str           s;
    uint32_t           id;
    uint64_t           i;
    int                rc = -1;
    char               sub[QWEN_ERR_LEN];

    if (tokens == NULL) {
        return 0;   /* a weights-only GGUF: the engine works on token ids */
    }
    memset(&v, 0, sizeof(v));
    if (tokens->type != GGUF_ARRAY || tokens->arr_type != GGUF_STRING) {
        return qwen_fail(err, err_len, "%s: tokenizer.ggml.tokens is not a string array", f->path);
    }
    if (merges != NULL && (merges->type != GGUF_ARRAY || merges->arr_type != GGUF_STRING)) {
        return qwen_fail(err, err_len, "%s: tokenizer.ggml.merges is not a string array", f->path);
    }
    if (types != NULL && (types->type != GGUF_ARRAY || types->arr_type != GGUF_INT32
                          || types->arr_count != tokens->arr_count))
    {
        return qwen_fail(err, err_len, "%s: tokenizer.ggml.token_type is not an int32 array "
                    "as long as the token list", f->path);
    }
    if (!gguf_str_is(qwen_gguf_find_kv(f, "tokenizer.ggml.model"), "gpt2")) {
        return qwen_fail(err, err_len, "%s: tokenizer.ggml.model is not \"gpt2\" "
                    "(byte-level BPE); other tokenizers are not supported", f->path);
    }
    tok_strs = malloc((tokens->arr_count + 1) * sizeof(qwen_str));
    merge_strs = malloc(((merges ? merges->arr_count : 0) + 1) * sizeof(qwen_str));
    if (tok_strs == NULL || merge_strs == NULL) {
        qwen_fail(err, err_len, "out of memory reading the vocabulary");
        goto done;
    }
    cur = tokens->data;
    for (i = 0; i < tokens->arr_count; i++) {
        s = qwen_gguf_array_next_str(&cur);
        tok_strs[i].ptr = s.ptr;
        tok_strs[i].len = s.len;
    }
    if (merges != NULL) {
        cur = merges->data;
        for (i = 0; i < merges->arr_count; i++) {
            s = qwen_gguf_array_next_str(&cur);
            merge_strs[i].ptr = s.ptr;
            merge_strs[i].len = s.len;
        }
    }
    v.tokens = tok_strs;
    v.n_tokens = tokens->arr_count;
    if (types != NULL) {
        /* GGUF metadata arrays are not aligned: copy before reading int32s */
        tok_types = malloc((types->arr_count + 1) * sizeof(int32_t));
        if (tok_types == NULL) {
            qwen_fail(err, err_len, "out of memory reading the token types");
            goto done;
        }
        memcpy(tok_types, types->data, types->arr_count * sizeof(int32_t));
    }
    v.token_types = tok_types;
    v.merges = merge_strs;
    v.n_merges = merges ? merges->arr_count : 0;
    if (pre != NULL && pre->type == GGUF_STRING) {
        memcpy(&v.pre.len, pre->data, 8);
        v.pre.ptr = (const char *) pre->data + 8;
    }
    if (tmpl != NULL && tmpl->type == GGUF_STRING) {
        memcpy(&v.chat_template.len, tmpl->data, 8);
        v.chat_template.ptr = (const char *) tmpl->data + 8;
    }
    v.eos_id = v.bos_id = v.pad_id = -1;
    if (qwen_gguf_find_kv(f, "tokenizer.ggml.eos_token_id")
        && qwen_gguf_get_u32(f, "tokenizer.ggml.eos_token_id", &id, sub, sizeof(sub)) == 0)
    {
        v.eos_id = (int32_t) id;
    }
    if (qwen_gguf_find_kv(f, "tokenizer.ggml.bos_token_id")
        && qwen_gguf_get_u32(f, "tokenizer.ggml.bos_token_id", &id, sub, sizeof(sub)) == 0)
    {
        v.bos_id = (int32_t) id;
    }
    if (qwen_gguf_find_kv(f, "tokenizer.ggml.padding_token_id")
        && qwen_gguf_get_u32(f, "tokenizer.ggml.padding_token_id", &id, sub, sizeof(sub)) == 0)
    {
        v.pad_id = (int32_t) id;
    }
    if (qwen_tokenizer_build(&v, &m->tokenizer, sub, sizeof(sub)) != 0) {
        qwen_fail(err, err_len, "%s: tokenizer metadata: %s", f->path, sub);
        goto done;
    }
    rc = 0;
done:
    free(tok_strs);
    free(merge_strs);
    free(tok_types);
    return rc;
}

static int
load_gguf(qwen_model *m, const char *path, source *src, char *err, size_t err_len)
{
    const void *base;
    size_t      size;
    uint32_t    u;
    qwen_config *c = &m->cfg;
    const gguf_kv *arch;

    if (map_file(m, path, &base, &size, err, err_len) != 0) {
        return -1;
    }
    src->is_gguf = 1;
    if (qwen_gguf_parse(&src->gguf, path, base, size, err, err_len) != 0) {
        return -1;
    }
    arch = qwen_gguf_find_kv(&src->gguf, "general.architecture");
    if (!gguf_str_is(arch, "qwen3")) {
        return qwen_fail(err, err_len, "%s: general.architecture is not \"qwen3\"", path);
    }
#define U32(key, field)                                                      \
    if (qwen_gguf_get_u32(&src->gguf, key, &u, err, err_len) != 0) return -1;     \
    if (u > (1u << 30)) return qwen_fail(err, err_len, "%s: %s is absurd (%u)", path, key, u); \
    field = (int) u
    U32("qwen3.embedding_length", c->hidden_size);
    U32("qwen3.feed_forward_length", c->intermediate_size);
    U32("qwen3.block_count", c->n_layers);
    U32("qwen3.attention.head_count", c->n_heads);
    U32("qwen3.attention.head_count_kv", c->n_kv_heads);
    U32("qwen3.context_length", c->max_position_embeddings);
    if (qwen_gguf_find_kv(&src->gguf, "qwen3.attention.key_length")) {
        U32("qwen3.attention.key_length", c->head_dim);
    } else {
        c->head_dim = c->n_heads ? c->hidden_size / c->n_heads : 0;
    }
#undef U32
    if (qwen_gguf_get_f32(&src->gguf, "qwen3.rope.freq_base", &c->rope_theta, err, err_len) != 0
        || qwen_gguf_get_f32(&src->gguf, "qwen3.attention.layer_norm_rms_epsilon",
                        &c->rms_norm_eps, err, err_len) != 0)
    {
        return -1;
    }
    {
        const gguf_tensor *e = qwen_gguf_find_tensor(&src->gguf, "token_embd.weight");
        if (e == NULL) {
            return qwen_fail(err, err_len, "%s: missing tensor token_embd.weight", path);
        }
        if (e->n_dims != 2 || e->ne[1] > (1u << 22)) {
            return qwen_fail(err, err_len, "%s: token_embd.weight has an invalid shape", path);
        }
        c->vocab_size = (int) e->ne[1];
    }
    c->tie_word_embeddings = qwen_gguf_find_tensor(&src->gguf, "output.weight") == NULL;
    if (check_config(c, path, err, err_len) != 0) {
        return -1;
    }
    if (bind_weights(m, src, err, err_len) != 0) {
        return -1;
    }
    return gguf_tokenizer(m, &src->gguf, err, err_len);
}

/* ---------------------------------------------------- Hugging Face dir */

static int
json_int(json_t *root, const char *key, int *out, int required, const char *path,
         char *err, size_t err_len)
{
    json_t *v = json_object_get(root, key);

    if (v == NULL || json_is_null(v)) {
        if (required) {
            return qwen_fail(err, err_len, "%s: missing field \"%s\"", path, key);
        }
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0
        || json_integer_value(v) > (1 << 30))
    {
        return qwen_fail(err, err_len, "%s: field \"%s\" must be a non-negative integer",
                    path, key);
    }
    *out = (int) json_integer_value(v);
    return 0;
}

static int
json_num(json_t *root, const char *key, float *out, const char *path,
         char *err, size_t err_len)
{
    json_t *v = json_object_get(root, key);

    if (v == NULL) {
        return 0;
    }
    if (!json_is_number(v)) {
        return qwen_fail(err, err_len, "%s: field \"%s\" must be a number", path, key);
    }
    *out = (float) json_number_value(v);
    return 0;
}

static int
read_hf_config(qwen_config *c, const char *dir, char *err, size_t err_len)
{
    char         path[4096];
    json_t      *root, *v, *arch;
    json_error_t jerr;
    int          rc = -1;

    snprintf(path, sizeof(path), "%s/config.json", dir);
    root = json_load_file(path, 0, &jerr);
    if (root == NULL) {
        return qwen_fail(err, err_len, "%s: %s (line %d)", path, jerr.text, jerr.line);
    }
    if (!json_is_object(root)) {
        qwen_fail(err, err_len, "%s: not a JSON object", path);
        goto done;
    }
    v = json_object_get(root, "model_type");
    arch = json_array_get(json_object_get(root, "architectures"), 0);
    if (!(json_is_string(v) && strcmp(json_string_value(v), "qwen3") == 0)
        && !(json_is_string(arch) && strcmp(json_string_value(arch), "Qwen3ForCausalLM") == 0))
    {
        qwen_fail(err, err_len, "%s: not a Qwen3 model (model_type must be \"qwen3\")", path);
        goto done;
    }
    c->rope_theta = 1000000.0f;
    c->rms_norm_eps = 1e-6f;
    c->max_position_embeddings = 40960;
    c->tie_word_embeddings = 1;
    if (json_int(root, "hidden_size", &c->hidden_size, 1, path, err, err_len) != 0
        || json_int(root, "intermediate_size", &c->intermediate_size, 1, path, err, err_len)
        || json_int(root, "num_hidden_layers", &c->n_layers, 1, path, err, err_len)
        || json_int(root, "num_attention_heads", &c->n_heads, 1, path, err, err_len)
        || json_int(root, "num_key_value_heads", &c->n_kv_heads, 1, path, err, err_len)
        || json_int(root, "vocab_size", &c->vocab_size, 1, path, err, err_len)
        || json_int(root, "max_position_embeddings", &c->max_position_embeddings, 0, path,
                    err, err_len)
        || json_num(root, "rope_theta", &c->rope_theta, path, err, err_len)
        || json_num(root, "rms_norm_eps", &c->rms_norm_eps, path, err, err_len))
    {
        goto done;
    }
    c->head_dim = c->n_heads ? c->hidden_size / c->n_heads : 0;
    if (json_int(root, "head_dim", &c->head_dim, 0, path, err, err_len) != 0) {
        goto done;
    }
    v = json_object_get(root, "tie_word_embeddings");
    if (v != NULL) {
        if (!json_is_boolean(v)) {
            qwen_fail(err, err_len, "%s: field \"tie_word_embeddings\" must be a boolean", path);
            goto done;
        }
        c->tie_word_embeddings = json_is_true(v);
    }
    rc = check_config(c, path, err, err_len);
done:
    json_decref(root);
    return rc;
}

/* Shard file names from model.safetensors.index.json, deduplicated. */
static int
read_hf_index(const char *dir, char names[][256], int *n, char *err, size_t err_len)
{
    char         path[4096];
    json_t      *root, *map, *v;
    json_error_t jerr;
    const char  *key, *file;
    int          i, seen;

    snprintf(path, sizeof(path), "%s/model.safetensors.index.json", dir);
    root = json_load_file(path, 0, &jerr);
    if (root == NULL) {
        return qwen_fail(err, err_len, "%s: %s (line %d)", path, jerr.text, jerr.line);
    }
    map = json_object_get(root, "weight_map");
    if (!json_is_object(map)) {
        json_decref(root);
        return qwen_fail(err, err_len, "%s: missing object \"weight_map\"", path);
    }
    *n = 0;
    json_object_foreach(map, key, v) {
        file = json_string_value(v);
        if (file == NULL || strchr(file, '/') != NULL || strlen(file) >= 256
            || file[0] == '.')
        {
            qwen_fail(err, err_len, "%s: weight_map entry for %s is not a plain file name",
                 path, key);
            json_decref(root);
            return -1;
        }
        seen = 0;
        for (i = 0; i < *n; i++) {
            seen |= strcmp(names[i], file) == 0;
        }
        if (!seen) {
            if (*n >= MAX_SHARDS) {
                json_decref(root);
                return qwen_fail(err, err_len, "%s: more than %d shards", path, MAX_SHARDS);
            }
            strcpy(names[(*n)++], file);
        }
    }
    json_decref(root);
    if (*n == 0) {
        return qwen_fail(err, err_len, "%s: weight_map is empty", path);
    }
    return 0;
}

static int
file_exists(const char *dir, const char *name)
{
    char        path[4096];
    struct stat st;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return stat(path, &st) == 0;
}

static int
load_hf(qwen_model *m, const char *dir, source *src, char *err, size_t err_len)
{
    char        names[MAX_SHARDS][256];
    char       *paths[MAX_SHARDS] = {0};
    int         n = 0, i, rc = -1;
    const void *base;
    size_t      size;
    char        sub[QWEN_ERR_LEN];

    if (read_hf_config(&m->cfg, dir, err, err_len) != 0) {
        return -1;
    }
    if (file_exists(dir, "model.safetensors")) {
        strcpy(names[0], "model.safetensors");
        n = 1;
    } else if (file_exists(dir, "model.safetensors.index.json")) {
        if (read_hf_index(dir, names, &n, err, err_len) != 0) {
            return -1;
        }
    } else {
        return qwen_fail(err, err_len, "%s: no model.safetensors or "
                    "model.safetensors.index.json", dir);
    }
    for (i = 0; i < n; i++) {
        /* the path strings live as long as the model: error messages name them */
        paths[i] = malloc(strlen(dir) + strlen(names[i]) + 2);
        if (paths[i] == NULL) {
            qwen_fail(err, err_len, "out of memory");
            goto done;
        }
        sprintf(paths[i], "%s/%s", dir, names[i]);
        if (map_file(m, paths[i], &base, &size, err, err_len) != 0
            || qwen_st_parse(&src->st[i], paths[i], base, size, err, err_len) != 0)
        {
            goto done;
        }
        src->n_st++;
    }
    if (bind_weights(m, src, err, err_len) != 0) {
        goto done;
    }
    if (file_exists(dir, "tokenizer.json")) {
        m->tokenizer = qwen_tokenizer_load_hf(dir, sub, sizeof(sub));
        if (m->tokenizer == NULL) {
            qwen_fail(err, err_len, "%s", sub);
            goto done;
        }
    }
    rc = 0;
done:
    for (i = 0; i < src->n_st; i++) {
        qwen_st_release(&src->st[i]);
    }
    src->n_st = 0;
    for (i = 0; i < n; i++) {
        free(paths[i]);
    }
    return rc;
}

/* ------------------------------------------------------------- public */

/* The packing of every tensor with a packed destination, its row groups
 * split over the threads. */
typedef struct {
    qwen_tensor **ts;
    int           n;
} pack_job;

static void
pack_task(void *arg, int ith, int nth)
{
    pack_job *job = arg;
    int       i;

    for (i = 0; i < job->n; i++) {
        qwen_tensor *t = job->ts[i];
        size_t       gb;
        int64_t      g, ng = t->n_rows / QWEN_PACK_ROWS;

        if (t->packed == NULL) {
            continue;
        }
        gb = qwen_packed_group_bytes(t->type, t->n_cols);
        for (g = ng * ith / nth; g < ng * (ith + 1) / nth; g++) {
            qwen_pack_group(t->type, (const char *) t->data
                            + (size_t) g * QWEN_PACK_ROWS * t->row_bytes, t->row_bytes,
                            t->n_cols, (char *) t->packed + (size_t) g * gb);
        }
    }
}

/*
 * Repack the weights the kernel table reads packed (repack.h: the named
 * one, else the best this CPU runs), once, into anonymous memory on huge
 * pages (anon_alloc): every worker forked after the load, and every
 * reload's, reads this one copy. The file pages of a packed tensor
 * are then dropped from this process's mapping (they stay in the page
 * cache), so a worker does not have the weights resident twice; they come
 * back only where something still reads the file's rows (the embedding
 * lookup, a table without packed kernels). QWEN_REPACK=0 keeps the file's
 * layout (for comparisons).
 */
static int
repack_weights(qwen_model *m, const char *kernels, char *err, size_t err_len)
{
    const qwen_kernels *named = kernels != NULL ? qwen_kernels_by_name(kernels) : NULL;
    const qwen_kernels *k = named != NULL ? named : qwen_kernels_best();
    const char         *env = getenv("QWEN_REPACK");
    qwen_tensor        *ts[8 * 1024];
    size_t              total = 0, off = 0, page = (size_t) sysconf(_SC_PAGESIZE);
    int                 n = 0, i;
    char               *dst;
    qwen_layer         *L;

    if (env != NULL && strcmp(env, "0") == 0) {
        return 0;
    }
    for (i = 0; i < m->cfg.n_layers && n + 8 <= (int) (sizeof(ts) / sizeof(ts[0])); i++) {
        L = &m->layers[i];
        ts[n++] = &L->wq;
        ts[n++] = &L->wk;
        ts[n++] = &L->wv;
        ts[n++] = &L->wo;
        ts[n++] = &L->w_gate;
        ts[n++] = &L->w_up;
        ts[n++] = &L->w_down;
    }
    ts[n++] = &m->output;
    for (i = 0; i < n; i++) {
        if (k->packed_dot[ts[i]->type] != NULL
            && qwen_packable(ts[i]->type, ts[i]->n_rows, ts[i]->n_cols))
        {
            total += qwen_packed_group_bytes(ts[i]->type, ts[i]->n_cols)
                     * (size_t) (ts[i]->n_rows / QWEN_PACK_ROWS);
        }
    }
    if (total == 0) {
        return 0;
    }
    dst = anon_alloc(m, total, err, err_len);
    if (dst == NULL) {
        return -1;
    }
    m->packed_bytes = total;
    for (i = 0; i < n; i++) {
        qwen_tensor *t = ts[i];

        if (k->packed_dot[t->type] == NULL || !qwen_packable(t->type, t->n_rows, t->n_cols)) {
            continue;
        }
        t->packed = dst + off;
        off += qwen_packed_group_bytes(t->type, t->n_cols) * (size_t) (t->n_rows / QWEN_PACK_ROWS);
    }
    /* on every core: the pool's threads end with it, before any fork.
     * QWEN_PACK_THREADS=N sets how many (1: no pool at all, so nothing
     * spins while waiting: exact instruction counts under qemu) */
    {
        pack_job    job = { ts, n };
        const char *pt = getenv("QWEN_PACK_THREADS");
        long        cpus = pt != NULL ? atol(pt) : 0;
        qwen_pool  *pool;

        if (cpus < 1) {
            cpus = sysconf(_SC_NPROCESSORS_ONLN);
        }
        pool = cpus > 1 ? qwen_pool_new(cpus > 8 ? 8 : (int) cpus) : NULL;

        if (pool != NULL) {
            qwen_pool_run(pool, pack_task, &job);
            qwen_pool_free(pool);
        } else {
            pack_task(&job, 0, 1);
        }
    }
    for (i = 0; i < n; i++) {
        qwen_tensor *t = ts[i];
        uintptr_t    lo, hi;

        if (t->packed == NULL) {
            continue;
        }
        /* the whole pages of the file's copy leave this process's mapping */
        lo = ((uintptr_t) t->data + page - 1) & ~(uintptr_t) (page - 1);
        hi = ((uintptr_t) t->data + t->row_bytes * (size_t) t->n_rows) & ~(uintptr_t) (page - 1);
        if (hi > lo) {
            (void) madvise((void *) lo, hi - lo, MADV_DONTNEED);
        }
    }
    return 0;
}

/* What the load wrote is read-only from here on: a stray write faults
 * where it happens instead of quietly copying a page in one worker. */
static void
seal(qwen_model *m)
{
    int i;

    for (i = 0; i < m->n_maps; i++) {
        if (m->maps[i].anon) {
            (void) mprotect(m->maps[i].addr, m->maps[i].len, PROT_READ);
        }
    }
}

qwen_model *
qwen_model_load(const char *path, char *err, size_t err_len)
{
    return qwen_model_load_for(path, NULL, err, err_len);
}

qwen_model *
qwen_model_load_for(const char *path, const char *kernels, char *err, size_t err_len)
{
    qwen_model *m;
    source      src;
    struct stat st;
    int         rc;

    if (stat(path, &st) != 0) {
        qwen_fail(err, err_len, "%s: %s", path, strerror(errno));
        return NULL;
    }
    m = calloc(1, sizeof(*m));
    if (m == NULL) {
        qwen_fail(err, err_len, "out of memory");
        return NULL;
    }
    memset(&src, 0, sizeof(src));
    if (S_ISDIR(st.st_mode)) {
        rc = load_hf(m, path, &src, err, err_len);
    } else {
        rc = load_gguf(m, path, &src, err, err_len);
        qwen_gguf_release(&src.gguf);
    }
    if (rc == 0) {
        rc = repack_weights(m, kernels, err, err_len);
    }
    if (rc != 0) {
        qwen_model_free(m);
        return NULL;
    }
    seal(m);
    return m;
}

void
qwen_model_free(qwen_model *m)
{
    int i;

    if (m == NULL) {
        return;
    }
    if (m->tokenizer != NULL) {
        qwen_tokenizer_free(m->tokenizer);
    }
    for (i = 0; i < m->n_maps; i++) {
        munmap(m->maps[i].addr, m->maps[i].len);
    }
    free(m->layers);
    free(m);
}

const qwen_config *
qwen_model_config(const qwen_model *m)
{
    return &m->cfg;
}

const qwen_tokenizer *
qwen_model_tokenizer(const qwen_model *m)
{
    return m->tokenizer;
}

const char *
qwen_model_describe(const qwen_model *m)
{
    return m->describe;
}

size_t
qwen_model_packed_bytes(const qwen_model *m)
{
    return m->packed_bytes;
}

size_t
qwen_model_weight_bytes(const qwen_model *m)
{
    size_t total = 0;
    int    i;
    const qwen_layer *L;

    for (i = 0; i < m->cfg.n_layers; i++) {
        L = &m->layers[i];
        total += L->wq.row_bytes * L->wq.n_rows + L->wk.row_bytes * L->wk.n_rows
                 + L->wv.row_bytes * L->wv.n_rows + L->wo.row_bytes * L->wo.n_rows
                 + L->w_gate.row_bytes * L->w_gate.n_rows
                 + L->w_up.row_bytes * L->w_up.n_rows
                 + L->w_down.row_bytes * L->w_down.n_rows;
    }
    /* the embedding lookup reads one row; the output projection all of them */
    total += m->output.row_bytes * m->output.n_rows;
    return total;
}
