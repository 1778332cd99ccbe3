/*
 * kernels.h - the compute kernels the forward pass calls, as a table of
 * function pointers chosen once per context from the CPU's features.
 * scalar.c is the portable scalar truth every ISA version is tested
 * against; x86/ and arm/ hold the SIMD versions with their own flags.
 */
#ifndef QWEN_KERNELS_H
#define QWEN_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include "quant.h"

/* Dot product of one weight row (n elements of its type) with one
 * activation row already converted to the type's activation format. */
typedef float (*qwen_vec_dot_fn)(int64_t n, const void *w, const void *act);

/* The same for 4 activation rows at once (act, act + stride, ...): the
 * weight row is unpacked once and reused, which is what makes prefill and
 * batched decode cheaper per token than single decode. */
typedef void (*qwen_vec_dot4_fn)(int64_t n, const void *w, const void *act,
                                 size_t act_stride, float *out4);

/* Two weight rows (w, w + w_stride) against 4 activation rows: out8[r * 4
 * + t]. For ISAs whose integer matrix multiply takes a 2 x 2 tile of rows
 * and tokens (arm64 i8mm's SMMLA). Each result must be bit-identical to
 * vec_dot of the same row and token, so a token's result never depends on
 * which rows or tokens shared its call (batch invariance). */
typedef void (*qwen_vec_dot2x4_fn)(int64_t n, const void *w, size_t w_stride,
                                   const void *act, size_t act_stride, float *out8);

/*
 * Why not OpenBLAS: measured here (Zen 4, one thread, M=200 tokens, K=1024)
 * Debian's OpenBLAS sgemm reaches ~85 GFLOPS (~42 GMAC/s) and its build has
 * no sbgemm; the BF16 GEMM below runs at ~100 GMAC/s and needs no F32 copy
 * of the weights. Revisit on arm64 hardware, where the default tables have
 * no GEMM.
 *
 * Batched prefill (optional): rows [r0, r1) of a weight against n_tok
 * activation rows xb ([n_tok][K]) rounded to BF16: BF16 values, or where
 * the table has gemm_act_f32 the same values in F32 (qwen_gemm_act makes
 * either); the result for activation row t goes to
 * out[idx[t] * out_stride + r]. Weights are repacked to BF16 panels once
 * per call and reused for every token; each token's result depends only on
 * its own activations. packed: w is the weight's packed groups (repack.h,
 * row_bytes unused; whole groups are the fast case), whose rows give the
 * same panels as the file's: the same bits. scratch:
 * qwen_gemm_scratch_bytes(table, K) per thread.
 */
typedef void (*qwen_gemm_fn)(int type, const void *w, int packed, size_t row_bytes, int64_t K,
                             int64_t r0, int64_t r1, const void *xb, int n_tok,
                             const int32_t *idx, float *out, size_t out_stride,
                             void *scratch);

#define QWEN_GEMM_PANEL_ROWS 32

/*
 * Packed weights (repack.h): one group of QWEN_PACK_ROWS rows of n columns
 * against nt (1 .. 4) activation rows (act, act + act_stride, ...):
 * out[t * QWEN_PACK_ROWS + r]. Prompt tokens and generated ones alike, so
 * a (row, token) result must be the same bits for every nt: it depends on
 * nothing else sharing the call (batch invariance).
 */
typedef void (*qwen_packed_dot_fn)(int64_t n, const void *w, const void *act,
                                   size_t act_stride, int nt, float *out);
/* Consecutive packed groups (group_bytes apart; the table's
 * packed_dot_multi_groups of them, at most QWEN_PACK_MULTI_MAX) against one
 * activation row: out[g * QWEN_PACK_ROWS + r], the same bits as packed_dot
 * with nt = 1 on each group. */
typedef void (*qwen_packed_multi_fn)(int64_t n, const void *w, size_t group_bytes,
                                     const void *act, float *out);
#define QWEN_PACK_MULTI_MAX 4
/* One packed group (QWEN_PACK_ROWS rows; packed_gemm_groups consecutive
 * groups where the table says so) against n_tok activation rows (act + t *
 * act_stride): out[idx[t] * out_stride + r], the same bits as packed_dot.
 * For kernels that restage the groups' weights once per call and then
 * stream every token past them (arm64 SMMLA, AVX-512 VNNI, AVX2's Q8_0 in
 * 16-bit integers). */
typedef void (*qwen_packed_gemm_fn)(int64_t n, const void *w, const void *act,
                                    size_t act_stride, int n_tok, float *out,
                                    size_t out_stride, const int32_t *idx);
/* Activations of n_tok tokens (act + t * act_stride, from a token that
 * starts a group of packed_gemm_act_tokens) rearranged into the order a
 * table's packed_gemm reads them, once per matmul (packed_gemm_act):
 * written to out, whose bytes for the first t tokens (t a whole number of
 * groups) are packed_gemm_act_bytes(act type, n, t). A last group short
 * of tokens repeats its last one. */
typedef void (*qwen_act_prep_fn)(int64_t n, const void *act, size_t act_stride, int n_tok,
                                 void *out);
/* Fewest tokens for which forward.c calls a packed_gemm. */
#define QWEN_PACKED_GEMM_MIN_TOKENS 8
/* A packed_dot entry point from a kernel template taking NT = 1 .. 4 as a
 * constant (each ISA's templates: x86/x86.h, arm/packed.h). */
#define QWEN_PACKED_DOT_ENTRY(NAME, TMPL)                                          \
static void                                                                        \
NAME(int64_t n, const void *w, const void *act, size_t stride, int nt, float *out)  \
{                                                                                  \
    switch (nt) {                                                                  \
    case 1: TMPL(n, w, act, stride, out, 1); break;                                \
    case 2: TMPL(n, w, act, stride, out, 2); break;                                \
    case 3: TMPL(n, w, act, stride, out, 3); break;                                \
    default: TMPL(n, w, act, stride, out, 4); break;                               \
    }                                                                              \
}
/* The scalar truth of each packed layout (the SIMD versions give its bits). */
void qwen_packed_dot_ref(int type, int64_t n, const void *w, const void *act,
                         size_t act_stride, int nt, float *out);

/*
 * The KV cache is a pool of blocks of QWEN_KV_BLOCK positions
 * (kv_cache.h); a sequence's positions lie in the blocks its table names.
 * A view is what attention reads for one (layer, KV head): position t is
 * position t % QWEN_KV_BLOCK of the region at k (or v) + blocks[t /
 * QWEN_KV_BLOCK] * stride bytes, in the layout of the cache's format.
 */
#define QWEN_KV_BLOCK 32

typedef struct {
    const void    *k, *v;       /* the (layer, KV head) region of block 0 */
    const int32_t *blocks;      /* the sequence's blocks, in position order */
    size_t         stride;      /* bytes from one block to the next */
} qwen_kv_view;

/* The K (or V) region of the block holding position t. */
static inline const void *
qwen_kv_block_k(const qwen_kv_view *kv, int t)
{
    return (const char *) kv->k + (size_t) kv->blocks[t / QWEN_KV_BLOCK] * kv->stride;
}
static inline const void *
qwen_kv_block_v(const qwen_kv_view *kv, int t)
{
    return (const char *) kv->v + (size_t) kv->blocks[t / QWEN_KV_BLOCK] * kv->stride;
}
/* Position t's row of hd values in the row formats (f16, f32). */
static inline const qwen_f16 *
qwen_kv_row_k(const qwen_kv_view *kv, int t, int hd)
{
    return (const qwen_f16 *) qwen_kv_block_k(kv, t) + (size_t) (t % QWEN_KV_BLOCK) * hd;
}
static inline const qwen_f16 *
qwen_kv_row_v(const qwen_kv_view *kv, int t, int hd)
{
    return (const qwen_f16 *) qwen_kv_block_v(kv, t) + (size_t) (t % QWEN_KV_BLOCK) * hd;
}
static inline const float *
qwen_kv_row_k_f32(const qwen_kv_view *kv, int t, int hd)
{
    return (const float *) qwen_kv_block_k(kv, t) + (size_t) (t % QWEN_KV_BLOCK) * hd;
}
static inline const float *
qwen_kv_row_v_f32(const qwen_kv_view *kv, int t, int hd)
{
    return (const float *) qwen_kv_block_v(kv, t) + (size_t) (t % QWEN_KV_BLOCK) * hd;
}

/*
 * KV cache formats. A kernel table stores and attends over each format it
 * has (kv_store / kv_attention below, NULL where it lacks one); a context
 * takes one format for its whole cache (qwen_kv_format).
 *   f32   rows [pos][hd] of float: the exact reference (F32 weights)
 *   f16   rows [pos][hd] of IEEE half
 *   bf16  the tiled BF16 layout below (AVX-512 BF16 only)
 *   q8_0  8-bit values with one f16 scale per 32 (layout below): half of
 *         f16's bytes
 */
enum {
    QWEN_KV_F32,
    QWEN_KV_F16,
    QWEN_KV_BF16,
    QWEN_KV_Q8_0,
    QWEN_KV_FORMAT_COUNT
};

/* Heads up to this many dimensions for q8_0 (its kernels keep a
 * quantized query per head on the stack). */
#define QWEN_KV_MAX_HD 512

/* Writes position t (0 .. QWEN_KV_BLOCK-1) of one block's (layer, KV head)
 * region: k and v are hd floats. */
typedef void (*qwen_kv_store_fn)(int hd, const float *k, const float *v, void *kc, void *vc,
                                 int t);
/*
 * Attention of n_q query heads sharing one KV head, over positions
 * 0 .. n_pos-1 of kv: out[h] = softmax(scale * q[h] . K^T) V. q and out
 * are n_q x hd; scratch holds n_q * qwen_kv_rows(n_pos) floats. Nothing
 * past position n_pos - 1 of the last block may change the result (it may
 * hold anything, NaN included).
 */
typedef void (*qwen_kv_attention_fn)(int hd, int n_q, const float *q, const qwen_kv_view *kv,
                                     int n_pos, float scale, float *scratch, float *out);
/*
 * Optional: the attention of m (1 .. QWEN_KV_ATT_TOKENS) tokens of one
 * sequence at consecutive positions, token j over positions 0 .. n_pos + j
 * - 1 (a prompt's tokens, or a draft's): each token's out bit for bit what
 * qwen_kv_attention_fn gives it alone, with the K and V rows the tokens
 * share read and converted once for all of them. Token j's n_q x hd
 * queries at q + j * q_stride and output at out + j * out_stride (floats);
 * scratch holds m * n_q * qwen_kv_rows(n_pos + m - 1) floats.
 */
#define QWEN_KV_ATT_TOKENS 4
typedef void (*qwen_kv_attention_tokens_fn)(int hd, int n_q, int m, const float *q,
                                            size_t q_stride, const qwen_kv_view *kv, int n_pos,
                                            float scale, float *scratch, float *out,
                                            size_t out_stride);

/* One format of one table, as a context uses it. */
typedef struct {
    int                  id;          /* QWEN_KV_F32 ... */
    const char          *name;        /* "f32", "f16", "bf16", "q8_0" */
    size_t               pos_bytes;   /* one position of one KV head in K (as in V) */
    qwen_kv_store_fn     store;
    qwen_kv_attention_fn attention;
    qwen_kv_attention_tokens_fn attention_tokens;   /* NULL: attention per token */
} qwen_kv_format;

typedef struct {
    const char      *name;
    qwen_vec_dot_fn  vec_dot[QWEN_TYPE_COUNT];
    qwen_vec_dot4_fn vec_dot4[QWEN_TYPE_COUNT];   /* NULL: 4 x vec_dot */
    qwen_vec_dot2x4_fn vec_dot2x4[QWEN_TYPE_COUNT];   /* NULL: vec_dot4 per row */
    /* tokens in a matmul from which vec_dot2x4 pays: SMMLA's tile always
     * (4); on x86 it saves activation loads, which only count once they
     * stream from L2 (0 is taken as 4) */
    int              dot2x4_min_tokens;
    /* activation conversion (F32 rows to Q8_0 / Q8_K / BF16 ...) */
    void  (*quantize_act)(int act_type, const float *x, void *y, int64_t n);
    /* the f16 helpers qwen_attention_generic is built from */
    float (*dot_f32_f16)(int64_t n, const float *x, const qwen_f16 *y);
    void  (*axpy_f16)(int64_t n, float a, const qwen_f16 *x, float *y);
    void  (*f32_to_f16)(const float *x, qwen_f16 *y, int64_t n);
    /* the KV cache formats this table has, by QWEN_KV_* (NULL: not this
     * one); f32, f16 and q8_0 on every table */
    qwen_kv_store_fn     kv_store[QWEN_KV_FORMAT_COUNT];
    qwen_kv_attention_fn kv_attention[QWEN_KV_FORMAT_COUNT];
    /* optional, by format: several tokens of a sequence at once */
    qwen_kv_attention_tokens_fn kv_attention_tokens[QWEN_KV_FORMAT_COUNT];
    /* prompt tokens: NULL when this table has no GEMM (vec_dot is used) */
    qwen_gemm_fn gemm;
    /* optional: the gemm reads its activations as F32 holding BF16 values,
     * made by this from F32 (an FMA table broadcasts them as they are, not
     * widened again for every panel; its scratch also holds the panel
     * widened to F32); NULL: BF16 from f32_to_bf16 */
    void (*gemm_act_f32)(const float *x, float *y, int64_t n);
    /* optional: elementwise.h's SwiGLU and RMS norm on wider vectors, the
     * same float operations per element (their bits); NULL: elementwise.c */
    void (*swiglu)(float *g, const float *u, int64_t n);
    void (*rmsnorm)(float *out, const float *x, const float *w, int64_t n, float eps);
    /* packed weights (repack.h) this table reads, by weight type (NULL:
     * it reads the file's rows); the model is packed at load for the
     * types of the table its contexts will use (qwen_model_load_for) */
    qwen_packed_dot_fn packed_dot[QWEN_TYPE_COUNT];
    /* optional, one token (decode) against packed_dot_multi_groups[type]
     * (2 .. QWEN_PACK_MULTI_MAX) consecutive packed groups: the activation's
     * loads and the loop serve that many groups, whose chains are in flight
     * together (one group's wait on the latency of their adds) */
    qwen_packed_multi_fn packed_dot_multi[QWEN_TYPE_COUNT];
    int                  packed_dot_multi_groups[QWEN_TYPE_COUNT];
    /* optional, prompt tokens: one packed group against n_tok >= 8 tokens
     * in one call (qwen_packed_gemm_fn) */
    qwen_packed_gemm_fn packed_gemm[QWEN_TYPE_COUNT];
    /* consecutive groups one packed_gemm call takes: 1 (0 is taken as 1)
     * or 2 (16 rows: one 512-bit vector of 4 columns) */
    int                 packed_gemm_groups;
    /* by weight type, the fewest tokens for which packed_gemm beats the
     * dot kernels (0: the QWEN_PACKED_GEMM_MIN_TOKENS default) */
    int                 packed_gemm_min_tokens[QWEN_TYPE_COUNT];
    /* optional, by activation type: the layout every packed_gemm reading
     * that type takes (NULL: the rows quantize_act wrote). forward.c then
     * makes it once per matmul and passes it to packed_gemm, with the
     * bytes of a group of packed_gemm_act_tokens tokens as act_stride.
     * arm64 i8mm zips Q8_0 token pairs into SMMLA's operand here instead
     * of once per row group; SDOT takes 4 tokens' blocks side by side. */
    qwen_act_prep_fn    packed_gemm_act[QWEN_TYPE_COUNT];
    size_t            (*packed_gemm_act_bytes)(int act_type, int64_t n, int n_tok);
    int                 packed_gemm_act_tokens;
    void  (*f32_to_bf16)(const float *x, qwen_bf16 *y, int64_t n);
} qwen_kernels;

/* bytes of one thread's scratch for table k's gemm on rows of K columns */
size_t qwen_gemm_scratch_bytes(const qwen_kernels *k, int64_t K);
/* The activations table k's gemm reads (BF16, or F32 holding BF16 values
 * where it has gemm_act_f32): bytes of one, and n of them made from F32. */
size_t qwen_gemm_act_bytes(const qwen_kernels *k);
void   qwen_gemm_act(const qwen_kernels *k, const float *x, void *y, int64_t n);

/* The activation format a weight type's dot product consumes. */
int    qwen_act_type(int weight_type);
/* Bytes of one activation row of n elements for a weight type. */
size_t qwen_act_row_bytes(int weight_type, int64_t n);

const qwen_kernels *qwen_kernels_ref(void);
/* Attention from a table's dot_f32_f16 and axpy_f16 (the reference). */
/* attention_tokens one token at a time through a single-token kernel: the
 * runs a table's own version does not take (its bits by definition) */
void qwen_attention_each(qwen_kv_attention_fn attention, int hd, int n_q, int m, const float *q,
                         size_t q_stride, const qwen_kv_view *kv, int n_pos, float scale,
                         float *scratch, float *out, size_t out_stride);
void qwen_attention_generic(const qwen_kernels *k, int hd, int n_q, const float *q,
                            const qwen_kv_view *kv, int n_pos, float scale, float *scratch,
                            float *out);
/*
 * The BF16 KV layout for vdpbf16ps / BFDOT: K in blocks of 16 positions as
 * [hd/2][16 positions][2 dims] (one vector holds a dimension pair of 16
 * positions, so q . K needs no horizontal sums), V in pairs of positions as
 * [hd][2 positions] (one vector holds 16 dimensions of two positions).
 * A block's region holds QWEN_KV_BLOCK (two K tiles) of these positions;
 * scores are kept for positions rounded up to a multiple of 32
 * (qwen_kv_rows).
 */
static inline int
qwen_kv_rows(int n_pos)
{
    return (n_pos + 31) & ~31;
}
static inline size_t
qwen_kv_bf16_k_index(int hd, int pos, int i)
{
    return (size_t) (pos / 16) * 16 * hd + (size_t) (i / 2) * 32 + (pos % 16) * 2 + (i % 2);
}
static inline size_t
qwen_kv_bf16_v_index(int hd, int pos, int i)
{
    return (size_t) (pos / 2) * 2 * hd + (size_t) i * 2 + (pos % 2);
}
/* Scalar truth for that layout (q and probabilities rounded to BF16 as
 * the SIMD versions round them). */
void qwen_kv_store_bf16_ref(int hd, const float *k, const float *v, void *kc, void *vc,
                            int t);
void qwen_attention_bf16_ref(int hd, int n_q, const float *q, const qwen_kv_view *kv,
                             int n_pos, float scale, float *scratch, float *out);

/*
 * The Q8_0 KV layout. A block's (layer, KV head) region holds, for K and
 * for V alike, QWEN_KV_BLOCK * hd int8 values and then QWEN_KV_BLOCK * hd /
 * 32 f16 scales: value = scale * int8, one scale per 32 consecutive
 * dimensions of a position (absmax / 127, as the weights' Q8_0 blocks).
 * K's values are in groups of 4 dimensions, [hd/4][QWEN_KV_BLOCK
 * positions][4]: a 32-bit lane holds 4 dimensions of one position, so
 * q . K is integer dot products of a broadcast group of the (quantized)
 * query against 8 or 16 positions at once, with no horizontal sums. V's
 * values are rows, [QWEN_KV_BLOCK positions][hd]. The scales of both are
 * [hd/32][QWEN_KV_BLOCK positions]. hd must be a multiple of 32.
 */
static inline size_t
qwen_kv_q8_0_k_index(int pos, int i)
{
    return (size_t) (i / 4) * (QWEN_KV_BLOCK * 4) + (size_t) pos * 4 + (i % 4);
}
static inline size_t
qwen_kv_q8_0_v_index(int hd, int pos, int i)
{
    return (size_t) pos * hd + i;
}
/* the scales of a region: scale of dimension i at position pos is
 * [(i / 32) * QWEN_KV_BLOCK + pos] */
static inline const qwen_f16 *
qwen_kv_q8_0_scales(const void *region, int hd)
{
    return (const qwen_f16 *) ((const int8_t *) region + (size_t) QWEN_KV_BLOCK * hd);
}
/* The query as the q8_0 kernels use it: per 32 dimensions int8 values and
 * a float scale (absmax / 127), quantized by this one function on every
 * table so q . K is the same integers everywhere. */
void qwen_kv_quantize_q(int hd, const float *q, int8_t *qs, float *d);
/* Scalar truth of the q8_0 format: scores as sum over 32-dimension blocks
 * of fmaf(integer dot, K scale * q scale, acc), in block order (the SIMD
 * versions give these scores bit for bit), V dequantized to float. */
void qwen_kv_store_q8_0_ref(int hd, const float *k, const float *v, void *kc, void *vc, int t);
void qwen_attention_q8_0_ref(int hd, int n_q, const float *q, const qwen_kv_view *kv,
                             int n_pos, float scale, float *scratch, float *out);
/* Scalar truth of the row formats. */
void qwen_kv_store_f32(int hd, const float *k, const float *v, void *kc, void *vc, int t);
void qwen_attention_f32_ref(int hd, int n_q, const float *q, const qwen_kv_view *kv,
                            int n_pos, float scale, float *scratch, float *out);

/* "f32", "f16", "bf16", "q8_0" to QWEN_KV_* and back; -1 / NULL when
 * unknown. */
int         qwen_kv_format_id(const char *name);
const char *qwen_kv_format_name(int id);
/* Bytes of one position of one KV head in K (as in V). */
size_t      qwen_kv_pos_bytes(int id, int hd);
/* Format id of table k for heads of hd dimensions into *out: 0, or -1 when
 * the table lacks it or hd does not suit its layout. */
int         qwen_kv_format_of(const qwen_kernels *k, int id, int hd, qwen_kv_format *out);
/* The scalar truth of a format (bf16 included, which the scalar table
 * does not offer): 0, or -1 as above. */
int         qwen_kv_format_ref(int id, int hd, qwen_kv_format *out);
/* Position t (0 .. QWEN_KV_BLOCK-1) of a region as floats, as the format
 * holds it (for tests). */
void        qwen_kv_read(int id, int hd, const void *kc, const void *vc, int t, float *k,
                         float *v);

/* The best table for this CPU (x86: AVX-512 > AVX2 > scalar; arm64: i8mm >
 * dotprod > NEON). */
const qwen_kernels *qwen_kernels_best(void);
/* A table by name ("scalar", "avx2", ...), NULL if this CPU can't run it. */
const qwen_kernels *qwen_kernels_by_name(const char *name);

#endif
