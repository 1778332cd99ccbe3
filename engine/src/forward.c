/*
 * forward.c - the Qwen3 forward pass over a batch of tokens that may mix
 * sequences: embedding; per layer RMSNorm, q/k/v projections, per-head
 * RMSNorm on q and k, NEOX RoPE (pairs i, i + head_dim/2), grouped-query
 * attention over the KV cache (in the context's format: qwen_kv_format),
 * output projection and residual add, RMSNorm, SwiGLU MLP and residual add;
 * then, for the tokens whose logits are wanted, the final RMSNorm and the
 * (tied) output projection.
 * Matmuls run as one parallel job over weight rows, each weight row reused
 * for every token of the batch while it is in cache.
 */
#include "model.h"
#include "elementwise.h"
#include "errors.h"
#include "forward.h"
#include "kernels/kernels.h"
#include "kv_cache.h"
#include "repack.h"
#include "threadpool.h"

#include <math.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct qwen_ctx {
    const qwen_model   *model;
    const qwen_kernels *kern;
    qwen_pool          *pool;
    int                 n_seqs;
    int                 n_ctx;
    int                 n_batch;
    qwen_kv_format      kvf;       /* the KV cache's format, from kern */

    /* blocks of QWEN_KV_BLOCK positions, each sequence's through its table
     * (kv_cache.h); within a block one (layer, KV head) region holds its
     * positions in the layout of kvf */
    qwen_kv_cache      *kv;
    float              *rope_cos;  /* [n_ctx][head_dim / 2] */
    float              *rope_sin;

    /* scratch, n_batch rows each */
    float              *x;         /* residual stream [hidden] */
    float              *xn;        /* normed input [max(hidden, inter)] */
    float              *q;         /* [q_dim] */
    float              *k;         /* [kv_dim] */
    float              *v;         /* [kv_dim] */
    float              *att;       /* attention output [q_dim] */
    float              *gate;      /* [inter] */
    float              *up;        /* [inter] */
    float              *proj;      /* projection output [hidden] */
    void               *act;       /* generated tokens' activations, weights' format */
    void               *gemm_act;  /* the same in packed_gemm's order (packed_gemm_act) */
    void               *xb;        /* prompt tokens' activations (qwen_gemm_act) */
    char               *gemm_scratch;   /* per thread */
    size_t              gemm_scratch_bytes;
    float              *scores;    /* per thread [att_tokens x group x n_ctx] */
    int                 att_tokens;    /* most tokens an attention call takes */

    /* this forward call: which tokens take the prefill GEMM */
    int32_t            *idx_prompt;
    int32_t            *idx_gen;
    int32_t            *idx_all;       /* 0, 1, 2 ... */
    int32_t            *att_first;     /* the first token of each attention run */
    int                 n_att_runs;
    qwen_batch_entry   *kept;          /* the tokens whose logits are wanted */
    int                 n_prompt_tok;
    int                 n_gen_tok;
};

static int gemm_suits(const qwen_kernels *k, const qwen_tensor **w, int n_targets);

/*
 * The KV format (QWEN_KV_*) a context of m with kernels k gets for name:
 * auto is f32 for F32 weights (the exact reference), f16 for F16 ones,
 * and for BF16 and quantized weights bf16 where the table has it (the
 * precision HF runs Qwen3's attention in), else f16. -1: unknown name.
 */
static int
kv_format_pick(const qwen_model *m, const qwen_kernels *k, const char *name)
{
    int wt = m->layers[0].wq.type;

    if (name != NULL && strcmp(name, "auto") != 0) {
        return qwen_kv_format_id(name);
    }
    if (wt == QWEN_TYPE_F32) {
        return QWEN_KV_F32;
    }
    if (wt != QWEN_TYPE_F16 && k->kv_store[QWEN_KV_BF16] != NULL) {
        return QWEN_KV_BF16;
    }
    return QWEN_KV_F16;
}

const char *
qwen_kv_format_pick(const qwen_model *m, const qwen_ctx_params *p)
{
    const qwen_kernels *k = p->kernels ? qwen_kernels_by_name(p->kernels) : qwen_kernels_best();
    qwen_kv_format      f;

    if (k == NULL
        || qwen_kv_format_of(k, kv_format_pick(m, k, p->kv_format), m->cfg.head_dim, &f) != 0)
    {
        return NULL;
    }
    return f.name;
}

size_t
qwen_kv_block_bytes(const qwen_model *m, const qwen_ctx_params *p)
{
    const qwen_config  *c = &m->cfg;
    const qwen_kernels *k = p->kernels ? qwen_kernels_by_name(p->kernels) : qwen_kernels_best();
    int                 id = kv_format_pick(m, k ? k : qwen_kernels_ref(), p->kv_format);

    return (size_t) 2 * c->n_layers * QWEN_KV_BLOCK * (size_t) c->n_kv_heads
           * qwen_kv_pos_bytes(id, c->head_dim);
}

size_t
qwen_kv_cache_bytes(const qwen_model *m, const qwen_ctx_params *p)
{
    if (p->n_seqs < 1 || p->n_ctx < 1) {
        return 0;
    }
    return qwen_kv_block_bytes(m, p) * (size_t) p->n_seqs * qwen_kv_blocks_for(p->n_ctx);
}

static size_t
max_act_row_bytes(const qwen_model *m, int64_t n)
{
    static const int types[] = { QWEN_TYPE_F32, QWEN_TYPE_Q8_0, QWEN_TYPE_Q8_K };
    size_t           best = 0, b;
    size_t           i;

    (void) m;
    for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        b = qwen_row_bytes(types[i], n);
        best = b > best ? b : best;
    }
    return best;
}

/* The packed GEMMs' own activation layouts (packed_gemm_act), largest */
static size_t
max_gemm_act_bytes(const qwen_kernels *k, int64_t n, int n_tok)
{
    static const int types[] = { QWEN_TYPE_Q8_0, QWEN_TYPE_Q8_K };
    size_t           best = 0, b;
    size_t           i;

    for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (k->packed_gemm_act[types[i]] != NULL) {
            b = k->packed_gemm_act_bytes(types[i], n, n_tok);
            best = b > best ? b : best;
        }
    }
    return best;
}

qwen_ctx_params
qwen_ctx_default_params(void)
{
    return (qwen_ctx_params) { .n_threads = 1, .n_seqs = 1, .n_ctx = 4096, .n_batch = 256 };
}

qwen_ctx *
qwen_ctx_new(const qwen_model *m, const qwen_ctx_params *p, char *err, size_t err_len)
{
    return qwen_ctx_new_cached(m, p, 0, 0, err, err_len);
}

qwen_ctx *
qwen_ctx_new_cached(const qwen_model *m, const qwen_ctx_params *p, int extra_blocks,
                    int prefix_index, char *err, size_t err_len)
{
    const qwen_config *c = &m->cfg;
    qwen_ctx          *ctx;
    int64_t            q_dim = (int64_t) c->n_heads * c->head_dim;
    int64_t            kv_dim = (int64_t) c->n_kv_heads * c->head_dim;
    int64_t            wide, half = c->head_dim / 2;
    size_t             nb, gemm_act_bytes;
    int                pos, i, n_threads, id;

    if (p->n_seqs < 1 || p->n_ctx < 1 || p->n_batch < 1 || p->n_threads < 1
        || p->n_threads > 256)
    {
        qwen_fail(err, err_len, "context parameters must be positive (threads %d, sequences %d, "
             "context %d, batch %d)", p->n_threads, p->n_seqs, p->n_ctx, p->n_batch);
        return NULL;
    }
    if (p->n_ctx > c->max_position_embeddings) {
        qwen_fail(err, err_len, "context of %d tokens exceeds the model's maximum of %d",
             p->n_ctx, c->max_position_embeddings);
        return NULL;
    }
    ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        qwen_fail(err, err_len, "out of memory");
        return NULL;
    }
    ctx->model = m;
    ctx->kern = p->kernels ? qwen_kernels_by_name(p->kernels) : qwen_kernels_best();
    if (ctx->kern == NULL) {
        qwen_fail(err, err_len, "kernels \"%s\" are unknown or not supported by this CPU",
             p->kernels);
        free(ctx);
        return NULL;
    }
    ctx->n_seqs = p->n_seqs;
    ctx->n_ctx = p->n_ctx;
    ctx->n_batch = p->n_batch;
    id = kv_format_pick(m, ctx->kern, p->kv_format);
    if (qwen_kv_format_of(ctx->kern, id, c->head_dim, &ctx->kvf) != 0) {
        char have[64] = "";
        int  f;

        for (f = 0; f < QWEN_KV_FORMAT_COUNT; f++) {
            if (ctx->kern->kv_store[f] != NULL) {
                snprintf(have + strlen(have), sizeof(have) - strlen(have), "%s%s",
                         have[0] ? ", " : "", qwen_kv_format_name(f));
            }
        }
        if (id < 0) {
            qwen_fail(err, err_len, "unknown KV cache format \"%s\" (auto, %s)", p->kv_format,
                      have);
        } else {
            qwen_fail(err, err_len, "KV cache format \"%s\" is not supported by the %s "
                      "kernels for heads of %d dimensions (%s)", qwen_kv_format_name(id),
                      ctx->kern->name, c->head_dim, have);
        }
        free(ctx);
        return NULL;
    }
    n_threads = p->n_threads;

    nb = (size_t) p->n_batch;
    wide = c->intermediate_size > c->hidden_size ? c->intermediate_size : c->hidden_size;
    wide = wide > q_dim ? wide : q_dim;

    ctx->kv = qwen_kv_cache_new(c->n_layers, c->n_kv_heads, ctx->kvf.pos_bytes,
                                p->n_seqs, p->n_ctx, extra_blocks, prefix_index, err, err_len);
    if (ctx->kv == NULL) {
        free(ctx);
        return NULL;
    }
    ctx->rope_cos = malloc((size_t) p->n_ctx * half * sizeof(float));
    ctx->rope_sin = malloc((size_t) p->n_ctx * half * sizeof(float));
    ctx->x = malloc(nb * c->hidden_size * sizeof(float));
    ctx->xn = malloc(nb * wide * sizeof(float));
    ctx->q = malloc(nb * q_dim * sizeof(float));
    ctx->k = malloc(nb * kv_dim * sizeof(float));
    ctx->v = malloc(nb * kv_dim * sizeof(float));
    ctx->att = malloc(nb * q_dim * sizeof(float));
    ctx->gate = malloc(nb * c->intermediate_size * sizeof(float));
    ctx->up = malloc(nb * c->intermediate_size * sizeof(float));
    ctx->proj = malloc(nb * c->hidden_size * sizeof(float));
    ctx->act = malloc(nb * max_act_row_bytes(m, wide));
    ctx->gemm_act = NULL;
    gemm_act_bytes = max_gemm_act_bytes(ctx->kern, wide, (int) nb);
    if (gemm_act_bytes > 0) {
        ctx->gemm_act = malloc(gemm_act_bytes);
    }
    ctx->att_tokens = ctx->kvf.attention_tokens != NULL ? QWEN_KV_ATT_TOKENS : 1;
    ctx->scores = malloc((size_t) n_threads * ctx->att_tokens * (c->n_heads / c->n_kv_heads)
                         * qwen_kv_rows(p->n_ctx) * sizeof(float));
    ctx->idx_prompt = malloc(nb * sizeof(int32_t));
    ctx->idx_gen = malloc(nb * sizeof(int32_t));
    ctx->idx_all = malloc(nb * sizeof(int32_t));
    ctx->att_first = malloc((nb + 1) * sizeof(int32_t));
    ctx->kept = malloc(nb * sizeof(qwen_batch_entry));
    if (ctx->kern->gemm != NULL) {
        ctx->xb = malloc(nb * wide * qwen_gemm_act_bytes(ctx->kern));
        ctx->gemm_scratch_bytes = qwen_gemm_scratch_bytes(ctx->kern, wide);
        ctx->gemm_scratch = aligned_alloc(64, (size_t) n_threads * ctx->gemm_scratch_bytes);
    }
    ctx->pool = qwen_pool_new(n_threads);
    if (!ctx->rope_cos || !ctx->rope_sin || !ctx->x
        || !ctx->xn || !ctx->q || !ctx->k || !ctx->v || !ctx->att || !ctx->gate || !ctx->up
        || !ctx->proj || !ctx->act || !ctx->scores || !ctx->pool || !ctx->idx_prompt
        || !ctx->idx_gen || !ctx->idx_all || !ctx->att_first || !ctx->kept || (gemm_act_bytes > 0 && !ctx->gemm_act)
        || (ctx->kern->gemm != NULL && (!ctx->xb || !ctx->gemm_scratch)))
    {
        qwen_fail(err, err_len, "cannot allocate the context's scratch for batches of %d "
                  "tokens", p->n_batch);
        qwen_ctx_free(ctx);
        return NULL;
    }
    for (i = 0; i < p->n_batch; i++) {
        ctx->idx_all[i] = i;
    }
    /* cached RoPE table, computed in double so long positions stay exact */
    for (pos = 0; pos < p->n_ctx; pos++) {
        for (i = 0; i < half; i++) {
            double freq = pow((double) c->rope_theta, -2.0 * i / (double) c->head_dim);
            double ang = (double) pos * freq;
            ctx->rope_cos[(size_t) pos * half + i] = (float) cos(ang);
            ctx->rope_sin[(size_t) pos * half + i] = (float) sin(ang);
        }
    }
    return ctx;
}

const char *
qwen_ctx_kv_format(const qwen_ctx *ctx)
{
    return ctx->kvf.name;
}

qwen_kv_cache *
qwen_ctx_kv_cache(qwen_ctx *ctx)
{
    return ctx->kv;
}

/* A prompt token and a generated one compute the same K and V exactly
 * when every matmul takes the dot kernels for both, i.e. when the table
 * has no prefill GEMM or the weights do not suit it (gemm_suits). */
int
qwen_ctx_prompt_exact(const qwen_ctx *ctx)
{
    const qwen_layer *L = &ctx->model->layers[0];
    const qwen_tensor *w[7] = { &L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up,
                                &L->w_down };
    int                t;

    if (ctx->kern->gemm == NULL) {
        return 1;
    }
    for (t = 0; t < 7; t++) {
        if (gemm_suits(ctx->kern, &w[t], 1)) {
            return 0;
        }
    }
    return 1;
}

void
qwen_ctx_free(qwen_ctx *ctx)
{
    if (ctx == NULL) {
        return;
    }
    qwen_pool_free(ctx->pool);
    qwen_kv_cache_free(ctx->kv);
    free(ctx->rope_cos);
    free(ctx->rope_sin);
    free(ctx->x);
    free(ctx->xn);
    free(ctx->q);
    free(ctx->k);
    free(ctx->v);
    free(ctx->att);
    free(ctx->gate);
    free(ctx->up);
    free(ctx->proj);
    free(ctx->act);
    free(ctx->gemm_act);
    free(ctx->xb);
    free(ctx->gemm_scratch);
    free(ctx->idx_prompt);
    free(ctx->att_first);
    free(ctx->idx_gen);
    free(ctx->idx_all);
    free(ctx->kept);
    free(ctx->scores);
    free(ctx);
}

/* The table's RMS norm and SwiGLU where it has them (elementwise.c's
 * bits on wider vectors), else elementwise.c's */
static void
rmsnorm(const qwen_ctx *ctx, float *out, const float *x, const float *w, int64_t n, float eps)
{
    (ctx->kern->rmsnorm != NULL ? ctx->kern->rmsnorm : qwen_rmsnorm)(out, x, w, n, eps);
}

static void
swiglu(const qwen_ctx *ctx, float *g, const float *u, int64_t n)
{
    (ctx->kern->swiglu != NULL ? ctx->kern->swiglu : qwen_swiglu)(g, u, n);
}

/* ------------------------------------------------------------ matmul */

#define MM_MAX_TARGETS 3
#define MM_MAX_SLOTS   64

/* A thread's share of a job's rows in chunks: front (next for its owner)
 * in the high half, back (one past the last left) in the low half; one
 * cache line each. */
typedef struct {
    _Alignas(64) _Atomic uint64_t fb;
} mm_slot;

typedef struct {
    qwen_ctx           *ctx;
    /* generated tokens: converted activations, compact, and their rows */
    int                 n_gen;
    const int32_t      *idx_gen;
    const void         *act;
    size_t              act_stride;
    /* the same tokens in the order the packed GEMM reads (NULL: act) */
    const void         *gemm_act;
    size_t              gemm_act_stride;
    /* prompt tokens: activations for the GEMM (qwen_gemm_act) */
    int                 n_prompt;
    const int32_t      *idx_prompt;
    const void         *xb;
    int                 n_targets;
    const qwen_tensor  *w[MM_MAX_TARGETS];
    float              *out[MM_MAX_TARGETS];   /* [token][rows] */
    int64_t             total_rows;
    int64_t             rows_unit;     /* threads split rows in these */
    int64_t             chunk_rows;    /* > 0: threads claim chunks this big */
    mm_slot             slots[MM_MAX_SLOTS];   /* per thread, when chunked */
} mm_job;

/* A matmul's chunk: about MM_CHUNKS_PER_THREAD chunks a thread, each a
 * multiple of MM_CHUNK_ALIGN rows (whole packed groups, whole calls of a
 * multi-group dot or a packed GEMM, whole panels of the prompt GEMM), so a
 * chunk never splits what a kernel does in one call. */
#define MM_CHUNKS_PER_THREAD 32
#define MM_CHUNK_ALIGN       64
#if MM_CHUNK_ALIGN % (QWEN_PACK_MULTI_MAX * QWEN_PACK_ROWS) != 0
#error "a chunk must hold whole calls of a multi-group dot"
#endif
#if MM_CHUNK_ALIGN % QWEN_GEMM_PANEL_ROWS != 0
#error "a chunk must hold whole panels of the prompt GEMM"
#endif

static int64_t
mm_chunk_rows(int64_t total_rows, int nth)
{
    int64_t rows = total_rows / ((int64_t) nth * MM_CHUNKS_PER_THREAD);

    rows = (rows + MM_CHUNK_ALIGN - 1) / MM_CHUNK_ALIGN * MM_CHUNK_ALIGN;
    return rows > MM_CHUNK_ALIGN ? rows : MM_CHUNK_ALIGN;
}

static int
packed_gemm_min_tokens(const qwen_kernels *k, int type)
{
    return k->packed_gemm_min_tokens[type] > 0 ? k->packed_gemm_min_tokens[type]
                                               : QWEN_PACKED_GEMM_MIN_TOKENS;
}

/* Rows [lo, hi) of a packed weight (whole groups) for the dot tokens: each
 * group against the tokens four at a time, while it is in cache; one token
 * takes several groups a call where the table has a multi-group dot. */
static void
mm_packed(const mm_job *job, const qwen_kernels *k, const qwen_tensor *w, float *out,
          int64_t lo, int64_t hi)
{
    qwen_packed_dot_fn   pdot = k->packed_dot[w->type];
    qwen_packed_multi_fn multi = job->n_gen == 1 ? k->packed_dot_multi[w->type] : NULL;
    int64_t              multi_rows = (int64_t) k->packed_dot_multi_groups[w->type]
                                      * QWEN_PACK_ROWS;
    size_t               gb = qwen_packed_group_bytes(w->type, w->n_cols);
    float                res[QWEN_PACK_MULTI_MAX * QWEN_PACK_ROWS];
    const char          *grp;
    int64_t              r;
    int                  g, i, nt;

    if (k->packed_gemm[w->type] != NULL && job->n_gen >= packed_gemm_min_tokens(k, w->type)) {
        int64_t     step = (int64_t) (k->packed_gemm_groups > 1 ? k->packed_gemm_groups : 1)
                           * QWEN_PACK_ROWS;
        /* matmul made the GEMM's own layout whenever the table has one
         * (the same token count and a target with a packed GEMM: this) */
        const void *act = job->gemm_act != NULL ? job->gemm_act : job->act;
        size_t      stride = job->gemm_act != NULL ? job->gemm_act_stride : job->act_stride;

        for (r = lo; r + step <= hi; r += step) {
            grp = (const char *) w->packed + (size_t) (r / QWEN_PACK_ROWS) * gb;
            k->packed_gemm[w->type](w->n_cols, grp, act, stride, job->n_gen, out + r,
                                    (size_t) w->n_rows, job->idx_gen);
        }
        /* a last group short of a call's: the dot kernel (the same bits) */
        lo = r;
    }
    for (r = lo; r < hi; r += QWEN_PACK_ROWS) {
        grp = (const char *) w->packed + (size_t) (r / QWEN_PACK_ROWS) * gb;
        if (multi != NULL && r + multi_rows <= hi) {
            multi(w->n_cols, grp, gb, job->act, res);
            memcpy(out + (size_t) job->idx_gen[0] * w->n_rows + r, res,
                   sizeof(float) * (size_t) multi_rows);
            r += multi_rows - QWEN_PACK_ROWS;
            continue;
        }
        for (g = 0; g < job->n_gen; g += 4) {
            nt = job->n_gen - g < 4 ? job->n_gen - g : 4;
            pdot(w->n_cols, grp, (const char *) job->act + (size_t) g * job->act_stride,
                 job->act_stride, nt, res);
            for (i = 0; i < nt; i++) {
                memcpy(out + (size_t) job->idx_gen[g + i] * w->n_rows + r,
                       res + i * QWEN_PACK_ROWS, sizeof(float) * QWEN_PACK_ROWS);
            }
        }
    }
}

/* Rows [r0, r1) of the job's targets taken end to end, so fused q/k/v or
 * gate/up projections cost one barrier and keep every thread busy. */
static void
mm_rows(mm_job *job, int ith, int64_t r0, int64_t r1)
{
    const qwen_kernels *k = job->ctx->kern;
    int64_t             base = 0, r, lo, hi;
    int                 t, g, i;
    const qwen_tensor  *w;
    qwen_vec_dot_fn     dot;
    qwen_vec_dot4_fn    dot4;
    qwen_vec_dot2x4_fn  dot2x4;
    float               res[8], *out;
    const char         *row, *act;

    for (t = 0; t < job->n_targets; t++, base += w->n_rows) {
        w = job->w[t];
        out = job->out[t];
        lo = r0 > base ? r0 - base : 0;
        hi = r1 - base < w->n_rows ? r1 - base : w->n_rows;
        if (lo >= hi) {
            continue;
        }
        if (job->n_prompt > 0) {
            /* the packed copy when there is one: the file's pages of a
             * packed weight stay out of memory */
            k->gemm(w->type, w->packed != NULL ? w->packed : w->data, w->packed != NULL,
                    w->row_bytes, w->n_cols, lo, hi, job->xb,
                    job->n_prompt, job->idx_prompt, out, (size_t) w->n_rows,
                    job->ctx->gemm_scratch + (size_t) ith * job->ctx->gemm_scratch_bytes);
        }
        if (job->n_gen == 0) {
            continue;
        }
        if (w->packed != NULL && k->packed_dot[w->type] != NULL) {
            mm_packed(job, k, w, out, lo, hi);
            continue;
        }
        dot = k->vec_dot[w->type];
        dot4 = k->vec_dot4[w->type];
        dot2x4 = k->vec_dot2x4[w->type];
        r = lo;
        if (dot2x4 != NULL && job->n_gen >= 4 && job->n_gen >= k->dot2x4_min_tokens) {
            /* row pairs x token quads; leftover tokens of each pair below */
            for (; r + 2 <= hi; r += 2) {
                row = (const char *) w->data + (size_t) r * w->row_bytes;
                for (g = 0; g + 4 <= job->n_gen; g += 4) {
                    act = (const char *) job->act + (size_t) g * job->act_stride;
                    dot2x4(w->n_cols, row, w->row_bytes, act, job->act_stride, res);
                    for (i = 0; i < 8; i++) {
                        out[(size_t) job->idx_gen[g + i % 4] * w->n_rows + r + i / 4] = res[i];
                    }
                }
                for (; g < job->n_gen; g++) {
                    act = (const char *) job->act + (size_t) g * job->act_stride;
                    for (i = 0; i < 2; i++) {
                        out[(size_t) job->idx_gen[g] * w->n_rows + r + i] =
                            dot(w->n_cols, row + (size_t) i * w->row_bytes, act);
                    }
                }
            }
        }
        for (; r < hi; r++) {
            row = (const char *) w->data + (size_t) r * w->row_bytes;
            g = 0;
            if (dot4 != NULL) {
                for (; g + 4 <= job->n_gen; g += 4) {
                    act = (const char *) job->act + (size_t) g * job->act_stride;
                    dot4(w->n_cols, row, act, job->act_stride, res);
                    for (i = 0; i < 4; i++) {
                        out[(size_t) job->idx_gen[g + i] * w->n_rows + r] = res[i];
                    }
                }
            }
            for (; g < job->n_gen; g++) {
                act = (const char *) job->act + (size_t) g * job->act_stride;
                out[(size_t) job->idx_gen[g] * w->n_rows + r] = dot(w->n_cols, row, act);
            }
        }
    }
}

/* Claim a chunk of one thread's share: its owner from the front, a thread
 * that finished its own from the back. front and back share one word
 * so a claim is one compare-and-swap; returns the chunk or -1. */
static int64_t
mm_claim(mm_slot *slot, int from_back)
{
    uint64_t fb = atomic_load_explicit(&slot->fb, memory_order_relaxed), nfb;
    uint32_t front, back;

    for ( ;; ) {
        front = (uint32_t) (fb >> 32);
        back = (uint32_t) fb;
        if (front >= back) {
            return -1;
        }
        nfb = from_back ? fb - 1 : fb + ((uint64_t) 1 << 32);
        if (atomic_compare_exchange_weak_explicit(&slot->fb, &fb, nfb, memory_order_relaxed,
                                                  memory_order_relaxed))
        {
            return from_back ? back - 1 : front;
        }
    }
}

/* The first shares of `units` items: thread t's slot [units * t / nth,
 * units * (t + 1) / nth), claimed front to back by its owner and from the
 * back by the others (mm_claim) */
static void
mm_share(mm_slot *slots, int64_t units, int nth)
{
    int t;

    for (t = 0; t < nth && t < MM_MAX_SLOTS; t++) {
        atomic_init(&slots[t].fb, (uint64_t) (units * t / nth) << 32
                                  | (uint64_t) (units * (t + 1) / nth));
    }
}

/* Each thread owns an even share of the rows and walks it front to back in
 * chunks, then takes chunks from the back of the others' shares, so a
 * thread whose rows go slower (its core busier or slower, its pages further
 * away) is helped instead of waited for, while the threads' streams stay far
 * apart in memory (interleaved chunks measured slower). Prompt tokens too:
 * with even shares the main thread waited out 7% of an avx512 BF16 prefill
 * (2 threads, Zen 5). Which thread computes a row never changes its bits. */
static void
mm_task(void *arg, int ith, int nth)
{
    mm_job  *job = arg;
    int64_t  unit = job->rows_unit, c, r0;
    int      o;

    if (job->chunk_rows == 0) {
        mm_rows(job, ith, job->total_rows / unit * ith / nth * unit,
                job->total_rows / unit * (ith + 1) / nth * unit);
        return;
    }
    for (o = 0; o < nth; o++) {
        mm_slot *slot = &job->slots[(ith + o) % nth];

        while ((c = mm_claim(slot, o != 0)) >= 0) {
            r0 = c * job->chunk_rows;
            mm_rows(job, ith, r0, r0 + job->chunk_rows < job->total_rows
                                  ? r0 + job->chunk_rows : job->total_rows);
        }
    }
}

/* Activations into the formats the kernels read: the GEMM's rows for the
 * prompt tokens (qwen_gemm_act), the weights' activation format for the others; split over
 * tokens. */
typedef struct {
    qwen_ctx    *ctx;
    mm_job      *job;
    const float *x;
    int64_t      cols;
    int          act_type;
    /* also the packed GEMM's layout (then threads split at token groups) */
    qwen_act_prep_fn prep;
} conv_job;

static void
conv_range(const conv_job *cj, int lo, int hi)
{
    mm_job      *job = cj->job;
    const float *xi;
    int          i, g;

    for (i = lo; i < hi; i++) {
        if (i < job->n_prompt) {
            qwen_gemm_act(cj->ctx->kern, cj->x + (size_t) job->idx_prompt[i] * cj->cols,
                          (char *) cj->ctx->xb
                          + (size_t) i * cj->cols * qwen_gemm_act_bytes(cj->ctx->kern),
                          cj->cols);
            continue;
        }
        g = i - job->n_prompt;
        xi = cj->x + (size_t) job->idx_gen[g] * cj->cols;
        if (cj->act_type == QWEN_TYPE_F32) {
            memcpy((char *) cj->ctx->act + g * job->act_stride, xi, job->act_stride);
        } else {
            cj->ctx->kern->quantize_act(cj->act_type, xi,
                                        (char *) cj->ctx->act + g * job->act_stride, cj->cols);
        }
    }
}

static void
conv_task(void *arg, int ith, int nth)
{
    conv_job *cj = arg;
    mm_job   *job = cj->job;
    int       np = job->n_prompt, ng = job->n_gen, lo, hi;
    int       G = cj->ctx->kern->packed_gemm_act_tokens;

    if (cj->prep == NULL) {
        conv_range(cj, (np + ng) * ith / nth, (np + ng) * (ith + 1) / nth);
        return;
    }
    /* the generated tokens in whole groups per thread (the prep writes
     * groups of G tokens), then rearranged for the packed GEMM */
    conv_range(cj, np * ith / nth, np * (ith + 1) / nth);
    lo = ng / G * ith / nth * G;
    hi = ith == nth - 1 ? ng : ng / G * (ith + 1) / nth * G;
    conv_range(cj, np + lo, np + hi);
    if (hi > lo) {
        cj->prep(cj->cols, (const char *) cj->ctx->act + (size_t) lo * job->act_stride,
                 job->act_stride, hi - lo,
                 (char *) cj->ctx->gemm_act
                 + cj->ctx->kern->packed_gemm_act_bytes(cj->act_type, cj->cols, lo));
    }
}

/* Whether some target goes through a packed GEMM with n_gen dot tokens
 * (mm_packed) */
static int
takes_packed_gemm(const qwen_kernels *k, const qwen_tensor **w, int n_targets, int n_gen)
{
    int t;

    for (t = 0; t < n_targets; t++) {
        if (w[t]->packed != NULL && k->packed_gemm[w[t]->type] != NULL
            && n_gen >= packed_gemm_min_tokens(k, w[t]->type))
        {
            return 1;
        }
    }
    return 0;
}

/* The BF16 GEMM keeps what these weights hold: BF16 exactly, quantized
 * values within their own rounding. F32 and F16 weights, chosen for
 * precision, stay on the dot kernels. */
static int
gemm_suits(const qwen_kernels *k, const qwen_tensor **w, int n_targets)
{
    int t, type, packed = 1;

    /* packed weights with a packed GEMM: prompt tokens take it instead
     * (one copy of the weights, and the dot kernels' bits) */
    for (t = 0; t < n_targets; t++) {
        packed &= w[t]->packed != NULL && k->packed_gemm[w[t]->type] != NULL;
    }
    if (packed) {
        return 0;
    }
    for (t = 0; t < n_targets; t++) {
        type = w[t]->type;
        if (type != QWEN_TYPE_BF16 && type != QWEN_TYPE_Q8_0 && type != QWEN_TYPE_Q4_K
            && type != QWEN_TYPE_Q6_K)
        {
            return 0;
        }
    }
    return 1;
}

/* out_t[tok][rows_t] = x[tok][cols] . W_t^T for up to three weights sharing
 * one input. Prompt tokens (when the kernels have a GEMM) go through it in
 * BF16; the others through the dot kernels with activations converted once
 * for all weights. */
static void
matmul(qwen_ctx *ctx, const float *x, int n_tok, int n_targets, const qwen_tensor **w,
       float **out)
{
    mm_job  job;
    int     t, nth, act_type = qwen_act_type(w[0]->type), all_gen;
    int64_t cols = w[0]->n_cols;

    for (t = 1; t < n_targets; t++) {
        if (qwen_act_type(w[t]->type) != act_type) {
            /* mixed activation formats: one job per weight */
            for (t = 0; t < n_targets; t++) {
                matmul(ctx, x, n_tok, 1, &w[t], &out[t]);
            }
            return;
        }
    }
    memset(&job, 0, offsetof(mm_job, slots));
    job.ctx = ctx;
    if (ctx->n_prompt_tok > 0 && gemm_suits(ctx->kern, w, n_targets)) {
        job.n_prompt = ctx->n_prompt_tok;
        job.idx_prompt = ctx->idx_prompt;
        job.n_gen = ctx->n_gen_tok;
        job.idx_gen = ctx->idx_gen;
    } else {
        job.n_gen = n_tok;
        job.idx_gen = ctx->idx_all;
    }
    all_gen = job.n_gen == n_tok;   /* then idx_gen is 0 .. n_tok - 1 */
    job.xb = ctx->xb;
    job.act = ctx->act;
    job.act_stride = qwen_row_bytes(act_type, cols);
    if (act_type == QWEN_TYPE_F32 && all_gen) {
        job.act = x;    /* already in place, no copy */
        job.act_stride = (size_t) cols * sizeof(float);
    } else {
        conv_job cj = { ctx, &job, x, cols, act_type, NULL };

        if (ctx->kern->packed_gemm_act[act_type] != NULL
            && takes_packed_gemm(ctx->kern, w, n_targets, job.n_gen))
        {
            cj.prep = ctx->kern->packed_gemm_act[act_type];
            job.gemm_act = ctx->gemm_act;
            job.gemm_act_stride = ctx->kern->packed_gemm_act_bytes(
                act_type, cols, ctx->kern->packed_gemm_act_tokens);
        }
        if (job.n_prompt + job.n_gen >= 2) {
            qwen_pool_run(ctx->pool, conv_task, &cj);
        } else {
            conv_task(&cj, 0, 1);
        }
    }
    job.n_targets = n_targets;
    job.rows_unit = QWEN_PACK_ROWS;
    for (t = 0; t < n_targets; t++) {
        job.w[t] = w[t];
        job.out[t] = out[t];
        job.total_rows += w[t]->n_rows;
        if (w[t]->n_rows % QWEN_PACK_ROWS != 0) {
            job.rows_unit = 1;
        }
    }
    nth = qwen_pool_size(ctx->pool);
    if (nth > 1 && nth <= MM_MAX_SLOTS) {
        int64_t chunks;

        job.chunk_rows = mm_chunk_rows(job.total_rows, nth);
        chunks = (job.total_rows + job.chunk_rows - 1) / job.chunk_rows;
        mm_share(job.slots, chunks, nth);
    }
    qwen_pool_run(ctx->pool, mm_task, &job);
}

/* Which tokens of the next matmuls take the GEMM: prompt tokens, when the
 * kernels have one; everything else goes through the dot kernels. */
static void
plan_tokens(qwen_ctx *ctx, const qwen_batch_entry *batch, int n, int use_prompt_flag)
{
    int i;

    ctx->n_prompt_tok = 0;
    ctx->n_gen_tok = 0;
    for (i = 0; i < n; i++) {
        if (use_prompt_flag && batch[i].prompt && ctx->kern->gemm != NULL) {
            ctx->idx_prompt[ctx->n_prompt_tok++] = i;
        } else {
            ctx->idx_gen[ctx->n_gen_tok++] = i;
        }
    }
}

/* ------------------------------------------------------------ attention */

typedef struct {
    qwen_ctx               *ctx;
    const qwen_batch_entry *batch;
    int                     layer;
    mm_slot                 slots[MM_MAX_SLOTS];   /* per thread: its items, head-major */
} att_job;

/*
 * Runs of the batch that one attention call can take: consecutive entries
 * of one sequence at consecutive positions (a prompt's tokens, a draft's),
 * up to ctx->att_tokens; every other token is a run of its own. A run's
 * tokens share the K and V rows they read, and each gets the bits it
 * would get alone, so how the batch is cut changes nothing but the time.
 */
static void
plan_attention(qwen_ctx *ctx, const qwen_batch_entry *batch, int n)
{
    int i, len = 0;

    ctx->n_att_runs = 0;
    for (i = 0; i < n; i++) {
        if (len > 0 && len < ctx->att_tokens && batch[i].seq == batch[i - 1].seq
            && batch[i].pos == batch[i - 1].pos + 1)
        {
            len++;
            continue;
        }
        ctx->att_first[ctx->n_att_runs++] = i;
        len = 1;
    }
    ctx->att_first[ctx->n_att_runs] = n;
}

/* One item per (run, KV head): the query heads of a GQA group, and the
 * tokens of a run, share the K and V rows they read. */
static void
att_item(const att_job *job, float *scratch, int run, int g)
{
    qwen_ctx          *ctx = job->ctx;
    const qwen_config *c = &ctx->model->cfg;
    int                hd = c->head_dim, group = c->n_heads / c->n_kv_heads;
    int64_t            q_dim = (int64_t) c->n_heads * hd;
    int                tok = ctx->att_first[run], len = ctx->att_first[run + 1] - tok;
    int                n_pos = job->batch[tok].pos + 1;
    size_t             qoff = (size_t) tok * q_dim + (size_t) g * group * hd;
    float              scale = 1.0f / sqrtf((float) hd);
    qwen_kv_view       view;

    qwen_kv_view_of(ctx->kv, job->batch[tok].seq, job->layer, g, &view);
    if (len > 1) {
        ctx->kvf.attention_tokens(hd, group, len, ctx->q + qoff, (size_t) q_dim, &view, n_pos,
                                  scale, scratch, ctx->att + qoff, (size_t) q_dim);
    } else {
        ctx->kvf.attention(hd, group, ctx->q + qoff, &view, n_pos, scale, scratch,
                           ctx->att + qoff);
    }
}

/* Each thread owns a contiguous range of the KV heads, of every run
 * (items head-major): a head's regions of the cache lie next to the
 * following head's in every block, and two threads reading neighbouring
 * heads at once (every other head each) read slower (decode after an
 * 800-token prompt, 2 threads: 0 to +10%, alternating). A thread that is
 * done takes items from the back of the others' ranges, as matmuls do (the
 * main thread waited out 6% of a 64-token prompt after 700 positions, avx2
 * Q4_K_M, Zen 5, one core slower than the other). More threads than slots:
 * items in turn. Who computes an item never changes its bits. */
static void
att_task(void *arg, int ith, int nth)
{
    att_job  *job = arg;
    qwen_ctx *ctx = job->ctx;
    int       nkv = ctx->model->cfg.n_kv_heads;
    int       group = ctx->model->cfg.n_heads / nkv;
    int       runs = ctx->n_att_runs;
    float    *scratch = ctx->scores + (size_t) ith * ctx->att_tokens * group
                                      * qwen_kv_rows(ctx->n_ctx);
    int64_t   c;
    int       item, o;

    if (nth > MM_MAX_SLOTS) {
        for (item = ith; item < runs * nkv; item += nth) {
            att_item(job, scratch, item % runs, item / runs);
        }
        return;
    }
    for (o = 0; o < nth; o++) {
        mm_slot *slot = &job->slots[(ith + o) % nth];

        while ((c = mm_claim(slot, o != 0)) >= 0) {
            att_item(job, scratch, (int) (c % runs), (int) (c / runs));
        }
    }
}

/* ------------------------------------------------- per-token stages */

enum tok_stage {
    STAGE_EMBED,        /* x = embedding of the token */
    STAGE_ATTN_NORM,    /* xn = attn_norm(x) */
    STAGE_QK,           /* per-head norm and RoPE of q and k; k, v into the cache */
    STAGE_RESIDUAL,     /* x += proj (the block's output projection) */
    STAGE_FFN_NORM,     /* xn = ffn_norm(x) */
    STAGE_SWIGLU        /* gate = silu(gate) * up */
};

typedef struct {
    qwen_ctx               *ctx;
    const qwen_batch_entry *batch;
    int                     n_tok;
    int                     layer;
    enum tok_stage          stage;
} tok_job;

static void
tok_stage(const tok_job *job, int i)
{
    qwen_ctx          *ctx = job->ctx;
    const qwen_model  *m = ctx->model;
    const qwen_config *c = &m->cfg;
    const qwen_layer  *L = &m->layers[job->layer];
    int64_t            hidden = c->hidden_size, inter = c->intermediate_size;
    int                hd = c->head_dim, half = hd / 2, h;
    int64_t            q_dim = (int64_t) c->n_heads * hd, kv_dim = (int64_t) c->n_kv_heads * hd;
    float             *x = ctx->x + (size_t) i * hidden, *xn = ctx->xn + (size_t) i * hidden;
    const float       *proj = ctx->proj + (size_t) i * hidden;
    const qwen_batch_entry *e = &job->batch[i];

    switch (job->stage) {
    case STAGE_EMBED:
        qwen_dequantize_row(m->tok_embd.type,
                            (const char *) m->tok_embd.data
                            + (size_t) e->token * m->tok_embd.row_bytes, x, hidden);
        break;
    case STAGE_ATTN_NORM:
        rmsnorm(ctx, xn, x, L->attn_norm, hidden, c->rms_norm_eps);
        break;
    case STAGE_FFN_NORM:
        rmsnorm(ctx, xn, x, L->ffn_norm, hidden, c->rms_norm_eps);
        break;
    case STAGE_RESIDUAL:
        qwen_add(x, proj, hidden);
        break;
    case STAGE_QK: {
        const float *cs = ctx->rope_cos + (size_t) e->pos * half;
        const float *sn = ctx->rope_sin + (size_t) e->pos * half;
        const float *vh;
        void        *kc, *vc;

        for (h = 0; h < c->n_heads; h++) {
            float *qh = ctx->q + (size_t) i * q_dim + (size_t) h * hd;
            rmsnorm(ctx, qh, qh, L->q_norm, hd, c->rms_norm_eps);
            qwen_rope(qh, cs, sn, half);
        }
        /* k and v go to the cache before attention runs: later tokens of
         * this batch in the same sequence attend to them */
        for (h = 0; h < c->n_kv_heads; h++) {
            float *kh = ctx->k + (size_t) i * kv_dim + (size_t) h * hd;
            rmsnorm(ctx, kh, kh, L->k_norm, hd, c->rms_norm_eps);
            qwen_rope(kh, cs, sn, half);
            vh = ctx->v + (size_t) i * kv_dim + (size_t) h * hd;
            qwen_kv_region(ctx->kv, e->seq, job->layer, h, e->pos, &kc, &vc);
            ctx->kvf.store(hd, kh, vh, kc, vc, e->pos % QWEN_KV_BLOCK);
        }
        break;
    }
    case STAGE_SWIGLU: {
        float       *g = ctx->gate + (size_t) i * inter;
        const float *u = ctx->up + (size_t) i * inter;

        swiglu(ctx, g, u, inter);
        break;
    }
    }
}

static void
tok_task(void *arg, int ith, int nth)
{
    const tok_job *job = arg;
    int            i, end = job->n_tok * (ith + 1) / nth;

    for (i = job->n_tok * ith / nth; i < end; i++) {
        tok_stage(job, i);
    }
}

/* A stage for every token: over the pool when there are several (prefill,
 * batched decode), inline for one, where a barrier would cost more. */
static void
for_tokens(qwen_ctx *ctx, const qwen_batch_entry *batch, int n, int layer, enum tok_stage st)
{
    tok_job job = { ctx, batch, n, layer, st };

    if (n >= 2) {
        qwen_pool_run(ctx->pool, tok_task, &job);
    } else {
        tok_stage(&job, 0);
    }
}

/* --------------------------------------------------------------- forward */

/* The tokens whose logits are wanted, moved to the first rows of x and att
 * (in batch order) and their entries into ctx->kept; returns how many. */
static int
keep_logit_rows(qwen_ctx *ctx, const qwen_batch_entry *batch, int n)
{
    const qwen_config *c = &ctx->model->cfg;
    size_t             hidden = (size_t) c->hidden_size;
    size_t             q_dim = (size_t) c->n_heads * (size_t) c->head_dim;
    int                i, k = 0;

    for (i = 0; i < n; i++) {
        if (!batch[i].want_logits) {
            continue;
        }
        if (k != i) {
            memcpy(ctx->x + (size_t) k * hidden, ctx->x + (size_t) i * hidden,
                   hidden * sizeof(float));
            memcpy(ctx->att + (size_t) k * q_dim, ctx->att + (size_t) i * q_dim,
                   q_dim * sizeof(float));
        }
        ctx->kept[k++] = batch[i];
    }
    return k;
}

int
qwen_forward(qwen_ctx *ctx, const qwen_batch_entry *batch, int n, float *logits,
             char *err, size_t err_len)
{
    const qwen_model  *m = ctx->model;
    const qwen_config *c = &m->cfg;
    int64_t            hidden = c->hidden_size;
    int                i, l, n_out;
    const qwen_layer  *L;
    const qwen_tensor *w[3];
    float             *out[3];
    att_job            aj;

    if (n < 1 || n > ctx->n_batch) {
        return qwen_fail(err, err_len, "batch of %d tokens (allowed 1 to %d)", n, ctx->n_batch);
    }
    for (i = 0; i < n; i++) {
        if (batch[i].token < 0 || batch[i].token >= c->vocab_size) {
            return qwen_fail(err, err_len, "token id %d is outside the vocabulary (0 to %d)",
                        batch[i].token, c->vocab_size - 1);
        }
        if (batch[i].seq < 0 || batch[i].seq >= ctx->n_seqs) {
            return qwen_fail(err, err_len, "sequence %d does not exist (0 to %d)", batch[i].seq,
                        ctx->n_seqs - 1);
        }
        if (batch[i].pos < 0 || batch[i].pos >= ctx->n_ctx) {
            return qwen_fail(err, err_len, "position %d is outside the context of %d tokens",
                        batch[i].pos, ctx->n_ctx);
        }
    }
    if (logits == NULL) {
        for (i = 0; i < n; i++) {
            if (batch[i].want_logits) {
                return qwen_fail(err, err_len, "logits were requested but no buffer was given");
            }
        }
    }
    /* every position written has a block of its own (a fresh one, where
     * the sequence has none there yet) */
    for (i = 0; i < n; i++) {
        if (qwen_kv_prepare_write(ctx->kv, batch[i].seq, batch[i].pos, err, err_len) != 0) {
            return -1;
        }
    }

    for_tokens(ctx, batch, n, 0, STAGE_EMBED);
    plan_tokens(ctx, batch, n, 1);
    plan_attention(ctx, batch, n);
    for (l = 0; l < c->n_layers; l++) {
        L = &m->layers[l];

        /* attention block */
        for_tokens(ctx, batch, n, l, STAGE_ATTN_NORM);
        w[0] = &L->wq; w[1] = &L->wk; w[2] = &L->wv;
        out[0] = ctx->q; out[1] = ctx->k; out[2] = ctx->v;
        matmul(ctx, ctx->xn, n, 3, w, out);
        for_tokens(ctx, batch, n, l, STAGE_QK);

        aj.ctx = ctx;
        aj.batch = batch;
        aj.layer = l;
        /* thread t first the heads from nkv * t / nth on, of every run */
        mm_share(aj.slots, (int64_t) ctx->n_att_runs * c->n_kv_heads, qwen_pool_size(ctx->pool));
        qwen_pool_run(ctx->pool, att_task, &aj);

        /* the last layer's K and V are stored: what follows attention
         * matters only for the tokens whose logits are wanted (usually the
         * last prompt token, or none in a chunk mid-prompt) */
        if (l == c->n_layers - 1) {
            n = keep_logit_rows(ctx, batch, n);
            if (n == 0) {
                return 0;
            }
            batch = ctx->kept;
            plan_tokens(ctx, batch, n, 1);
        }

        w[0] = &L->wo;
        out[0] = ctx->proj;
        matmul(ctx, ctx->att, n, 1, w, out);
        for_tokens(ctx, batch, n, l, STAGE_RESIDUAL);

        /* MLP block */
        for_tokens(ctx, batch, n, l, STAGE_FFN_NORM);
        w[0] = &L->w_gate; w[1] = &L->w_up;
        out[0] = ctx->gate; out[1] = ctx->up;
        matmul(ctx, ctx->xn, n, 2, w, out);
        for_tokens(ctx, batch, n, l, STAGE_SWIGLU);
        w[0] = &L->w_down;
        out[0] = ctx->proj;
        matmul(ctx, ctx->gate, n, 1, w, out);
        for_tokens(ctx, batch, n, l, STAGE_RESIDUAL);
    }

    /* final norm and output projection, only for the rows asked for */
    n_out = 0;
    for (i = 0; i < n; i++) {
        if (batch[i].want_logits) {
            rmsnorm(ctx, ctx->xn + (size_t) n_out * hidden, ctx->x + (size_t) i * hidden,
                    m->output_norm, hidden, c->rms_norm_eps);
            n_out++;
        }
    }
    if (n_out > 0) {
        /* the output projection runs for a few rows: always the dot kernels */
        plan_tokens(ctx, batch, n_out, 0);
        w[0] = &m->output;
        out[0] = logits;
        matmul(ctx, ctx->xn, n_out, 1, w, out);
    }
    return 0;
}

/* The first index of the largest logit (NaNs never win). A max over 8
 * lanes the compiler vectorizes, then a scan for its first occurrence:
 * 10x the plain loop, whose every step waits on the last comparison. */
int32_t
qwen_argmax(const float *logits, int n)
{
    float m[8], best = -INFINITY;
    int   i, l;

    for (l = 0; l < 8; l++) {
        m[l] = -INFINITY;
    }
    for (i = 0; i + 8 <= n; i += 8) {
        for (l = 0; l < 8; l++) {
            m[l] = logits[i + l] > m[l] ? logits[i + l] : m[l];
        }
    }
    for (; i < n; i++) {
        best = logits[i] > best ? logits[i] : best;
    }
    for (l = 0; l < 8; l++) {
        best = m[l] > best ? m[l] : best;
    }
    for (i = 0; i < n; i++) {
        if (logits[i] == best) {
            return i;
        }
    }
    return 0;
}
